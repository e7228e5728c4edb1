#!/usr/bin/env bash
# A real client against the embedded engine: guidellm (a Python benchmark
# client, pinned, installed into the user's cache on first use) drives it
# through /v1/chat/completions (content parts, as OpenAI's schema allows)
# and /v1/completions; every request must succeed. Then servegate bench
# measures the same engine the same way, and both tools' TTFT and ITL are
# printed beside what the engine was told to do.
#
# usage: ci/guidellm-check.sh [REQUESTS]   (default 20 per endpoint)
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
N=${1:-20}
TTFT_MS=20
ITL_MS=5
GUIDELLM=$(ci/guidellm-env.sh)
cargo build -q
BIN=$PWD/target/debug/servegate
WORK=$(mktemp -d)
SIM=
cleanup() {
  stop_pid "$SIM"
  rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
"$BIN" sim --port "$PORT" --ttft-ms "$TTFT_MS" --itl-ms "$ITL_MS" >"$WORK/sim.log" 2>&1 &
SIM=$!
wait_ready "$URL" "$SIM" "$WORK/sim.log"
# guidellm makes its synthetic prompts with a Hugging Face tokenizer: the
# engine's own, as a tokenizer folder.
mkdir "$WORK/tok"
cp src/sim/data/tokenizer.json ci/lm-eval-parity/tok/*.json "$WORK/tok/"

for route in /v1/chat/completions /v1/completions; do
  name=$(basename "$route")
  (cd "$WORK" && HF_HUB_OFFLINE=1 "$GUIDELLM/bin/guidellm" run \
    --backend "kind=openai_http,target=$URL,model=servegate-sim,request_format=$route" \
    --profile kind=synchronous --constraint "kind=max_requests,count=$N" \
    --data kind=synthetic_text,prompt_tokens=64,output_tokens=32 \
    --tokenizer "kind=hf_auto,model=$WORK/tok" \
    --output "kind=json,path=$WORK/guidellm-$name.json" --disable-console >"$WORK/guidellm-$name.log" 2>&1) ||
    { tail -30 "$WORK/guidellm-$name.log"; exit 1; }
  endpoint=chat
  [ "$name" = completions ] && endpoint=completions
  "$BIN" bench --base-url "$URL" --endpoint "$endpoint" --concurrency 1 --max-tokens 32 \
    --prompt-length short --num-requests "$N" --warmup 2 --output "$WORK/servegate-$name.json" \
    >"$WORK/servegate-$name.log" 2>&1 || { tail -20 "$WORK/servegate-$name.log"; exit 1; }
  python3 - "$route" "$WORK/guidellm-$name.json" "$WORK/servegate-$name.json" "$N" "$TTFT_MS" "$ITL_MS" <<'PY'
import json, sys
route, g, s, n, ttft, itl = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), int(sys.argv[4]), sys.argv[5], sys.argv[6]
b = g["benchmarks"][0]["metrics"]
totals = b["request_totals"]
assert totals["successful"] == n and totals["errored"] == 0 and totals["incomplete"] == 0, totals
p50 = lambda m: b[m]["successful"]["median"]
mine = s["scenarios"][0]
print(f"{route}: guidellm {totals['successful']} of {totals['total']} requests succeeded; "
      f"TTFT p50 guidellm {p50('time_to_first_token_ms'):.2f} ms, servegate {mine['ttft_p50_ms']:.2f} ms; "
      f"ITL p50 guidellm {p50('inter_token_latency_ms'):.2f} ms, servegate {mine['itl_p50_ms']:.2f} ms "
      f"(engine: TTFT {ttft} ms, ITL {itl} ms)")
PY
done
if grep -q "warning: ignoring request fields" "$WORK/sim.log"; then
  grep "warning: ignoring request fields" "$WORK/sim.log"
fi
