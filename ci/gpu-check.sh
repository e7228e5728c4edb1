#!/usr/bin/env bash
# Device check for a GPU machine: given a prebuilt servegate binary (built
# with `--features cuda`), print the GPU probe beside nvidia-smi's, run one
# short scenario against the embedded engine with the memory monitor on
# (listing the processes holding device memory: servegate must not be one),
# then the engine in `cuda` mode at two model sizes as two exclusive
# targets, with TPOT against the roofline. A few minutes.
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

# The embedded engine in `cuda` mode at two model sizes, as two exclusive
# targets (each a process of its own): decode at batch 1 reads every weight
# once per token, so TPOT should sit near weights / peak bandwidth.
cuda_project=$(mktemp -d)
trap 'rm -rf "$project" "$cuda_project"' EXIT
mkdir -p "$cuda_project/scenarios"
cp -r "$project/prompts" "$cuda_project/"
cat > "$cuda_project/servegate.toml" <<'TOML'
model = "servegate-sim"
candidate = "small"
baseline = "large"
[targets.small]
sim = { profile = "engine", cuda = true, model_weights_bytes = 4000000000, tpot_ms = 0.01, ttft_ms = 0 }
[targets.large]
sim = { profile = "engine", cuda = true, model_weights_bytes = 16000000000, tpot_ms = 0.01, ttft_ms = 0 }
TOML
cat > "$cuda_project/scenarios/cuda_roofline.toml" <<'TOML'
description = "cuda-mode engines: decode step time against the roofline"
requires_gpu = true
[workload]
max_tokens = 64
concurrency = 1
num_requests = 8
warmup = 1
[gate]
error_rate = { max = 0.0 }
TOML
echo "== cuda-mode engines (4 GB and 16 GB of weights), exclusive, one after the other"
timeout 300 "$bin" --root "$cuda_project" run --output "$out/cuda-results.json" &
run=$!
if command -v nvidia-smi >/dev/null; then
    sleep 8
    echo "== nvidia-smi --query-compute-apps (servegate is pid $run and must not be listed)"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv
fi
wait "$run" || true
python3 - "$out/cuda-results.json" "$out/gpu.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
probe = json.load(open(sys.argv[2]))
bw = probe["devices"][0]["peak_bandwidth_bytes_per_s"]
sizes = {"small": 4e9, "large": 16e9}
for case in r["cases"]:
    for side in ("candidate", "baseline"):
        t = case[side]
        weights = sizes[t["target"]]
        tpot = t["summary"]["tpot_ms"]["p50"]
        ideal = weights / bw * 1e3
        peak = t["summary"].get("gpu_mem_peak_bytes")
        print(f"{t['target']}: {weights/1e9:.0f} GB, TPOT p50 {tpot:.3f} ms, roofline {ideal:.3f} ms "
              f"({ideal/tpot:.0%} of peak bandwidth); gpu_mem_peak {peak and peak/2**30:.2f} GiB "
              f"({t.get('gpu_mem_peak_source')})")
PY
