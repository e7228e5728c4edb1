#!/usr/bin/env bash
# Prints the path of a virtual environment holding llama-cpp-python's
# OpenAI-compatible server (plus the `gguf` and `tokenizers` packages the
# compatibility test uses to build its own tiny model), creating it on first
# use. It lives in the user's cache, outside the checkout and keyed by the
# pinned versions, so clean clones reuse it: building llama.cpp from the
# sdist takes about 6 minutes on 2 cores.
#
# usage: ci/llama-cpp-env.sh        (LLAMA_CPP_VENV overrides the folder)
set -euo pipefail
LLAMA_CPP_PYTHON=0.3.36
GGUF=0.19.0
TOKENIZERS=0.23.3
VENV=${LLAMA_CPP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/servegate/llama-cpp-python-$LLAMA_CPP_PYTHON-gguf-$GGUF-venv}
if [ ! -f "$VENV/.complete" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # A portable CPU build: no BLAS, no GPU backends, no tools or tests.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$VENV/bin/pip" install -q "llama-cpp-python[server]==$LLAMA_CPP_PYTHON" \
    "gguf==$GGUF" "tokenizers==$TOKENIZERS" >&2
  touch "$VENV/.complete"
fi
echo "$VENV"
