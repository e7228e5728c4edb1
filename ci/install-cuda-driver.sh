#!/usr/bin/env bash
# Installs Debian's CUDA driver library (libcuda1, from contrib/non-free) when
# missing, and lays out target/cuda-driver/lib64/libcuda.so for cust's build
# script (CUDA_LIBRARY_PATH). Needs root on Debian bookworm.
set -euo pipefail
cd "$(dirname "$0")/.."

lib=$(ls /usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so 2>/dev/null || ls /usr/lib/x86_64-linux-gnu/libcuda.so.1 2>/dev/null || true)
if [ -z "$lib" ]; then
    if [ ! -f /etc/apt/sources.list.d/servegate-non-free.sources ]; then
        cat > /etc/apt/sources.list.d/servegate-non-free.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcuda1 >/dev/null
    lib=$(ls /usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so 2>/dev/null || ls /usr/lib/x86_64-linux-gnu/libcuda.so.1)
fi
mkdir -p target/cuda-driver/lib64
ln -sf "$lib" target/cuda-driver/lib64/libcuda.so
echo "libcuda: $lib"
