#!/usr/bin/env bash
# Prints the path of a virtual environment holding lm-evaluation-harness
# (pinned, with its API extras), creating it on first use. It lives in the
# user's cache, outside the checkout and keyed by the pinned version, so
# clean clones reuse it.
#
# usage: ci/lm-eval-env.sh        (LMEVAL_VENV overrides the folder)
set -euo pipefail
VENV=${LMEVAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/servegate/lm-eval-0.4.13-venv}
if [ ! -x "$VENV/bin/lm_eval" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "lm-eval[api]==0.4.13" "transformers==5.24.0" >&2
fi
echo "$VENV"
