#!/usr/bin/env bash
# Assembles the embedded engine's hand-written PTX (src/sim/cuda/kernels.ptx)
# with NVIDIA's ptxas, for the oldest target it declares and a current one,
# so a syntax or register error shows here rather than on a GPU machine.
# ptxas comes from PyPI's nvidia-cuda-nvcc-cu12 wheel (pinned), installed
# once into the user's cache, outside the checkout; no GPU is needed.
#
# usage: ci/ptxas-check.sh        (PTXAS_DIR overrides the folder)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${PTXAS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/servegate/cuda-nvcc-12.9.86}
PTXAS="$DIR/nvidia/cuda_nvcc/bin/ptxas"
if [ ! -x "$PTXAS" ]; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check --no-deps --target "$DIR" "nvidia-cuda-nvcc-cu12==12.9.86" >&2
  chmod +x "$PTXAS"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for arch in sm_52 sm_90; do
  "$PTXAS" -arch="$arch" src/sim/cuda/kernels.ptx -o "$out/kernels-$arch.cubin"
  echo "ptxas $arch: ok ($(wc -c < "$out/kernels-$arch.cubin") bytes)"
done
