#!/usr/bin/env bash
# Compatibility check against a real third-party server: llama-cpp-python's
# OpenAI-compatible server (llama.cpp underneath) running a tiny model built
# here (random weights, a byte-level BPE tokenizer trained on the project's
# text: no weights are downloaded). It checks, in order:
#   1. `servegate probe` tells what that server really does (completions and
#      chat, streamed too; echoed prompt log-probabilities; token-id prompts
#      and lists of prompts refused; /extras/tokenize; no /metrics);
#   2. `servegate bench` and a scenario with `url` targets measure it;
#   3. a suite (arc_easy, hellaswag, truthfulqa_mc2, gsm8k) with
#      `prompt_format` detected as text scores exactly as lm-evaluation-
#      harness's `local-completions` with `tokenized_requests=False` does on
#      the same server: every metric and standard error equal, and for gsm8k
#      every generated text and filtered answer; then gsm8k through the chat
#      endpoint against `local-chat-completions`. The model's output depends
#      on the whole prompt, so a wrong few-shot context would show.
# The server answers one request at a time, and by default cuts a running
# stream when another arrives; it is started with --interrupt_requests false.
#
# usage: ci/llama-cpp-check.sh [LIMIT]   (LIMIT: documents per task, default 12)
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
LIMIT=${1:-12}
LLAMA=$(ci/llama-cpp-env.sh)
LMEVAL=$(ci/lm-eval-env.sh)
cargo build -q
BIN=$PWD/target/debug/servegate
WORK=$(mktemp -d)
SERVER=
cleanup() {
  stop_pid "$SERVER"
  [ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

"$LLAMA/bin/python" ci/llama-cpp/make_model.py "$WORK/model" \
  src/sim/data/corpus.txt prompts/long.txt prompts/medium.txt datasets/gsm8k_train.jsonl >/dev/null
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
"$LLAMA/bin/python" -m llama_cpp.server --model "$WORK/model/model.gguf" --model_alias tiny \
  --host 127.0.0.1 --port "$PORT" --n_ctx 4096 --n_batch 1 --interrupt_requests false >"$WORK/server.log" 2>&1 &
SERVER=$!
wait_ready "$URL" "$SERVER" "$WORK/server.log" 40
echo "llama-cpp-python server at $URL (a $(du -k "$WORK/model/model.gguf" | cut -f1) kB model)"

# 1. The probe.
"$BIN" probe "$URL" --json >"$WORK/probe.json"
python3 - "$WORK/probe.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
seen = {f["feature"]: f for f in p["findings"]}
want = {
    "/v1/completions": "yes", "/v1/chat/completions": "yes",
    "/v1/completions, streamed": "yes", "/v1/chat/completions, streamed": "yes",
    "prompt log-probabilities (echo + logprobs)": "yes",
    "token-id prompts": "no", "several prompts in one request": "no",
    "tokenize endpoint": "yes", "Prometheus /metrics": "no",
}
bad = [f"{k}: {seen.get(k, {}).get('support')} (want {v})" for k, v in want.items()
       if seen.get(k, {}).get("support") != v]
assert "/extras/tokenize" in seen["tokenize endpoint"]["detail"], seen["tokenize endpoint"]
assert p["models"] == ["tiny"], p["models"]
print("probe: " + ("as expected" if not bad else "UNEXPECTED: " + "; ".join(bad)))
sys.exit(1 if bad else 0)
PY

# 2. bench and a scenario with url targets.
"$BIN" bench --base-url "$URL" --num-requests 4 --warmup 1 --concurrency 1 2 \
  --max-tokens 16 --prompt-length short --output "$WORK/bench.json" >"$WORK/bench.log" 2>&1 ||
  { tail -20 "$WORK/bench.log"; exit 1; }
python3 - "$WORK/bench.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
s = f["scenarios"]
assert len(s) == 2 and all(x["total_tokens"] > 0 and x["ttft_p50_ms"] > 0 for x in s), s
print("bench: " + ", ".join(f"{x['name']} {x['throughput_total_tps']:.0f} tok/s" for x in s))
# No usage in its streams: the probe says so and tokens come from the events.
choices = f["probe"]["choices"]
assert any("counted from the events" in c for c in choices), choices
assert all(x["token_source"] == "events" for x in s), [x["token_source"] for x in s]
found = {x["feature"]: x["support"] for x in f["probe"]["found"]}
print(f"bench: requests shaped as: {'; '.join(choices)} (ignore_eos taken: {found['ignore_eos taken (vLLM extension)']})")
PY
mkdir -p "$WORK/project/scenarios" "$WORK/project/suites"
cat >"$WORK/project/servegate.toml" <<TOML
model = "tiny"
[targets.candidate]
url = "$URL"
[targets.baseline]
url = "$URL"
TOML
cat >"$WORK/project/scenarios/llama.toml" <<'TOML'
description = "the same llama.cpp server on both sides"
[workload]
prompts = "short"
max_tokens = 16
concurrency = 2
num_requests = 8
warmup = 2
[gate]
error_rate = { max = 0.0 }
TOML
cp -r prompts "$WORK/project/"
"$BIN" --root "$WORK/project" run scenario::llama --output "$WORK/scenario.json" >"$WORK/scenario.log" 2>&1 ||
  { tail -30 "$WORK/scenario.log"; exit 1; }
echo "scenario: $(grep -m1 'passed,' "$WORK/scenario.log")"
python3 - "$WORK/scenario.json" <<'PY'
import json, sys
case = json.load(open(sys.argv[1]))["cases"][0]
for side in ("candidate", "baseline"):
    assert any("counted from the events" in c for c in case[side]["probe"]["choices"]), case[side]
print("scenario: the probe is in the results for both sides")
PY

# 3. Quality against lm-eval on the same server.
TASKS_DIR=$WORK/tasks
"$LMEVAL/bin/python" ci/lm-eval-parity/gen_tasks.py datasets "$TASKS_DIR" >/dev/null
run_lm_eval() {
  local name=$1 model=$2 args=$3
  shift 3
  HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    HF_HOME="$WORK/hf" HF_DATASETS_CACHE="$WORK/hf-datasets" TOKENIZERS_PARALLELISM=false \
    "$LMEVAL/bin/lm_eval" --model "$model" --model_args "$args" --include_path "$TASKS_DIR" \
    --limit "$LIMIT" --log_samples --output_path "$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 ||
    { tail -40 "$WORK/$name.log"; exit 1; }
}
suite() {
  cat >"$WORK/project/suites/$1.toml" <<TOML
tasks = $2
data = "$PWD/datasets"
tokenizer = "$WORK/model/tokenizer.json"
limit = $LIMIT
$3
[scoring]
concurrency = 1
[gate]
max_drop = 0.0
TOML
}
t0=$(date +%s.%N)
run_lm_eval lm-eval local-completions \
  "model=tiny,base_url=$URL/v1/completions,tokenizer=$WORK/model,tokenizer_backend=huggingface,tokenized_requests=False,num_concurrent=1,max_retries=3" \
  --tasks sg_arc_easy,sg_hellaswag,sg_truthfulqa_mc2,sg_gsm8k
t1=$(date +%s.%N)
suite text '["arc_easy", "hellaswag", "truthfulqa_mc2", "gsm8k"]' ''
"$BIN" --root "$WORK/project" run suite::text --output "$WORK/servegate.json" >"$WORK/servegate.log" 2>&1 ||
  { tail -30 "$WORK/servegate.log"; exit 1; }
t2=$(date +%s.%N)
grep -m1 "prompts as" "$WORK/servegate.log"
# The model's GGUF asks for BOS: llama-cpp-python then counts it in
# usage.prompt_tokens but echoes the prompt's tokens without it, followed by
# the generated one, the layout lm-eval reads (`token_logprobs[ctxlen:-1]`)
# and servegate aligns with its own tokens. (Without BOS this server's echoed
# log-probabilities come one token short.) Asserted here:
python3 - "$URL" <<'PY'
import json, sys, urllib.request
body = {"prompt": "The river runs to the sea", "max_tokens": 1, "temperature": 0,
        "echo": True, "logprobs": 1}
req = urllib.request.Request(sys.argv[1] + "/v1/completions", json.dumps(body).encode(),
                             {"content-type": "application/json"})
answer = json.load(urllib.request.urlopen(req))
n = answer["usage"]["prompt_tokens"]
got = len(answer["choices"][0]["logprobs"]["token_logprobs"])
assert got == n, f"{got} entries for {n} prompt tokens (BOS included) and 1 generated"
print(f"echo: {n - 1} prompt tokens and the generated one; usage counts BOS too ({n})")
PY
python3 ci/lm-eval-parity/compare.py "$WORK/servegate.json" "$WORK"/lm-eval/*/results_*.json
python3 ci/lm-eval-parity/compare_samples.py "$WORK/servegate.json" "$WORK"/lm-eval/*/samples_sg_gsm8k_*.jsonl

t3=$(date +%s.%N)
run_lm_eval lm-eval-chat local-chat-completions \
  "model=tiny,base_url=$URL/v1/chat/completions,num_concurrent=1,max_retries=3" \
  --tasks sg_gsm8k --apply_chat_template
t4=$(date +%s.%N)
suite chat '["gsm8k"]' 'endpoint = "chat"'
"$BIN" --root "$WORK/project" run suite::chat --output "$WORK/servegate-chat.json" >"$WORK/servegate-chat.log" 2>&1 ||
  { tail -30 "$WORK/servegate-chat.log"; exit 1; }
t5=$(date +%s.%N)
echo "gsm8k through /v1/chat/completions:"
python3 ci/lm-eval-parity/compare.py "$WORK/servegate-chat.json" "$WORK"/lm-eval-chat/*/results_*.json
python3 ci/lm-eval-parity/compare_samples.py "$WORK/servegate-chat.json" "$WORK"/lm-eval-chat/*/samples_sg_gsm8k_*.jsonl
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'PY'
import sys
t = list(map(float, sys.argv[1:]))
print(f"completions: lm-eval {t[1] - t[0]:.1f} s, servegate {t[2] - t[1]:.1f} s; "
      f"chat: lm-eval {t[4] - t[3]:.1f} s, servegate {t[5] - t[4]:.1f} s (wall, process included)")
PY
