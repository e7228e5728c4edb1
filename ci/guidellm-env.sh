#!/usr/bin/env bash
# Prints the path of a virtual environment holding guidellm (a Python
# benchmark client for OpenAI-compatible servers), creating it on first use
# in the user's cache, outside the checkout and keyed by the pinned version.
#
# usage: ci/guidellm-env.sh        (GUIDELLM_VENV overrides the folder)
set -euo pipefail
GUIDELLM=0.8.1
VENV=${GUIDELLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/servegate/guidellm-$GUIDELLM-venv}
if [ ! -f "$VENV/.complete" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "guidellm==$GUIDELLM" >&2
  touch "$VENV/.complete"
fi
echo "$VENV"
