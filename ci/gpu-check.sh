#!/usr/bin/env bash
# Device check for a GPU machine: given a prebuilt servegate binary (built
# with `--features cuda`), print the GPU probe, then run one short scenario
# against the embedded engine with the memory monitor on. About a minute.
#
#   ci/gpu-check.sh path/to/servegate [OUTPUT_DIR]
set -euo pipefail

bin=$(readlink -f "${1:?usage: ci/gpu-check.sh path/to/servegate [OUTPUT_DIR]}")
out=$(mkdir -p "${2:-gpu-check-out}" && readlink -f "${2:-gpu-check-out}")
project=$(mktemp -d)
trap 'rm -rf "$project"' EXIT

echo "== servegate gpu"
"$bin" gpu
"$bin" gpu --json > "$out/gpu.json"
if command -v nvidia-smi >/dev/null; then
    # The same facts from the driver's own tool, to compare with the probe.
    echo "== nvidia-smi --query-gpu"
    nvidia-smi --query-gpu=index,name,memory.total,memory.used,clocks.max.memory --format=csv
fi

# A one-case project: two embedded engines, a GPU-only case that also gates
# on device memory (both engines use none of their own, so the ratio is 1).
mkdir -p "$project/scenarios" "$project/prompts"
cat > "$project/prompts/short.txt" <<'TXT'
Explain in one paragraph why rivers bend as they cross flat land.
Describe a railway signal box to a new apprentice.
TXT
cat > "$project/servegate.toml" <<'TOML'
model = "servegate-sim"
model_weights_bytes = 16000000000
[targets.candidate]
sim = { profile = "engine" }
[targets.baseline]
sim = { profile = "engine" }
TOML
cat > "$project/scenarios/gpu_smoke.toml" <<'TOML'
description = "GPU smoke check: probe, memory monitor, roofline"
requires_gpu = true
[workload]
max_tokens = 32
concurrency = 8
num_requests = 32
warmup = 2
[gate]
throughput_total = { min_ratio = 0.8 }
gpu_mem_peak = { max_ratio = 1.05 }
error_rate = { max = 0.0 }
TOML

echo "== servegate list --reasons"
"$bin" --root "$project" list --reasons
echo "== servegate run (memory monitor on)"
timeout 150 "$bin" --root "$project" run --output "$out/results.json" &
run=$!
if command -v nvidia-smi >/dev/null; then
    # servegate's own process must hold no device memory (it makes no CUDA
    # context): nvidia-smi lists the processes that do.
    sleep 5
    echo "== nvidia-smi --query-compute-apps while the run measures (servegate is pid $run)"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
fi
wait "$run"
echo "== GPU memory and roofline from the results"
python3 - "$out/results.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
for case in r["cases"]:
    for side in ("candidate", "baseline"):
        for m in case[side].get("gpu_memory", []):
            print(f"{case['name']} {side}: gpu_mem_peak counts {case[side].get('gpu_mem_peak_source')}")
            print(f"{case['name']} {side}: GPU {m['device']} peak {m['peak_used_bytes']/2**30:.2f} GiB, mean {m['mean_used_bytes']/2**30:.2f} GiB over {m['samples']} samples")
    if case.get("roofline"):
        rl = case["roofline"]
        print(f"{case['name']}: roofline on {rl['device']}: {rl['ideal_tokens_per_s']:.1f} tok/s per sequence at batch 1 "
              f"for {rl['weight_bytes']/1e9:.1f} GB of weights; measured {rl['measured_tokens_per_s']:.1f} ({rl['fraction']:.1%})")
PY
