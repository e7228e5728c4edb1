#!/usr/bin/env bash
# Parity check: lm-evaluation-harness (`local-completions` with a Hugging Face
# tokenizer) and servegate score the sample records in datasets/ against the
# same embedded engine; every metric and standard error must be equal. Then
# the same with FEWSHOT examples per question (hellaswag and ARC from their
# *_train.jsonl, mmlu from mmlu_dev.jsonl; truthfulqa_mc2 stays 0-shot as in
# lm-eval), each program against its own engine that logs every prompt it
# receives: the two sets of prompts (token ids) must be equal, so every
# few-shot context is lm-eval's, and so must the scores. Last, gsm8k
# (generated answers) on datasets/gsm8k.jsonl 0-shot and 5-shot through
# /v1/completions, and 5-shot through /v1/chat/completions with the examples
# in one user message and as turns: the requests (prompt, length, stop
# strings, temperature, seed), per item the generated text and both filtered
# answers, and both exact_match values must be equal. The engine runs with
# log-probability noise there, so its greedy output depends on the whole
# prompt and a wrong few-shot context would show.
#
# usage: ci/lm-eval-parity.sh [LOGPROB_NOISE] [FEWSHOT]
#   LOGPROB_NOISE (default 0.5) perturbs the engine so scores are not at the ceiling.
#   FEWSHOT (default 2) examples per question in the second comparison.
#   LMEVAL_VENV   where lm-eval is installed (default: a folder of the user's cache,
#                 outside the checkout, so clean clones reuse it; created
#                 with pip from PyPI on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
NOISE=${1:-0.5}
SHOTS=${2:-2}
VENV=$(ci/lm-eval-env.sh)
cargo build -q
BIN=$PWD/target/debug/servegate
WORK=$(mktemp -d)
SIM=
stop_sim() {
  stop_pid "$SIM"
  SIM=
}
cleanup() {
  stop_sim
  [ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

# start_sim [PROMPT_LOG]: a fresh engine on a free port (PORT).
start_sim() {
  PORT=$(free_port)
  "$BIN" sim --port "$PORT" --ttft-ms 1 --itl-ms 1 --logprob-noise "$NOISE" ${1:+--log-prompts "$1"} >>"$WORK/sim.log" 2>&1 &
  SIM=$!
  wait_ready "http://127.0.0.1:$PORT" "$SIM" "$WORK/sim.log"
}

# servegate_project DIR SUITE_EXTRA: a project whose targets are the engine on PORT.
servegate_project() {
  mkdir -p "$1/suites"
  cat >"$1/servegate.toml" <<TOML
model = "servegate-sim"
[targets.candidate]
url = "http://127.0.0.1:$PORT"
[targets.baseline]
url = "http://127.0.0.1:$PORT"
TOML
}

start_sim

# The engine's tokenizer as a Hugging Face tokenizer folder.
mkdir "$WORK/tok"
cp src/sim/data/tokenizer.json ci/lm-eval-parity/tok/*.json "$WORK/tok/"

ALL_TASKS=$("$VENV/bin/python" ci/lm-eval-parity/gen_tasks.py datasets "$WORK/tasks")
TASKS=$(echo "$ALL_TASKS" | tr ',' '\n' | grep -v '^sg_gsm8k$' | paste -sd, -)
echo "lm-eval tasks: $TASKS"
# run_lm_eval NAME TASKS [ARGS…]: lm-eval against the engine on PORT,
# offline, results under $WORK/NAME, its log in $WORK/NAME.log.
# LMEVAL_MODEL=chat uses local-chat-completions (no tokenizer) instead.
run_lm_eval() {
  local name=$1 tasks=$2 model=local-completions
  local args="model=servegate-sim,base_url=http://127.0.0.1:$PORT/v1/completions,tokenizer=$WORK/tok,tokenizer_backend=huggingface,num_concurrent=1,max_retries=3"
  if [ "${LMEVAL_MODEL:-}" = chat ]; then
    model=local-chat-completions
    args="model=servegate-sim,base_url=http://127.0.0.1:$PORT/v1/chat/completions,num_concurrent=1,max_retries=3"
  fi
  shift 2
  HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    HF_HOME="$WORK/hf" HF_DATASETS_CACHE="$WORK/hf-datasets" TOKENIZERS_PARALLELISM=false \
    "$VENV/bin/lm_eval" --model "$model" --model_args "$args" \
    --tasks "$tasks" --include_path "$WORK/tasks" --output_path "$WORK/$name" "$@" >"$WORK/$name.log" 2>&1 ||
    { tail -40 "$WORK/$name.log"; exit 1; }
}
t0=$(date +%s.%N)
run_lm_eval lm-eval "$TASKS"
t1=$(date +%s.%N)

# servegate: the standard suite against the same server, one request at a time like lm-eval.
servegate_project "$WORK/sg"
# Token-id prompts, as lm-eval sends them by default (no probe requests in
# the engine's prompt log).
sed "s|^data = .*|data = \"$PWD/datasets\"\ntokenizer = \"$PWD/src/sim/data/tokenizer.json\"\nprompt_format = \"tokens\"\n[scoring]\nconcurrency = 1|" \
  suites/standard.toml >"$WORK/sg/suites/standard.toml"
t2=$(date +%s.%N)
"$BIN" --root "$WORK/sg" run --output "$WORK/servegate.json" >"$WORK/servegate.log" 2>&1 ||
  { tail -40 "$WORK/servegate.log"; exit 1; }
t3=$(date +%s.%N)

python3 ci/lm-eval-parity/compare.py "$WORK/servegate.json" "$WORK"/lm-eval/*/results_*.json
python3 - "$WORK/servegate.json" "$t0" "$t1" "$t2" "$t3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["suites"][0]
t0, t1, t2, t3 = map(float, sys.argv[2:])
print(f"lm-eval: {t1 - t0:.1f} s wall (process); servegate run: {t3 - t2:.1f} s wall, "
      f"candidate scored in {r['candidate']['seconds']:.2f} s ({r['candidate']['requests']} requests)")
PY

# Few-shot: each program against its own engine, which logs the prompts.
LMEVAL_FS_TASKS=$(echo "$TASKS" | tr ',' '\n' | grep -v '^sg_faq$' | paste -sd, -)
stop_sim
start_sim "$WORK/prompts-lm-eval.jsonl"
t0=$(date +%s.%N)
run_lm_eval lm-eval-fewshot "$LMEVAL_FS_TASKS" --num_fewshot "$SHOTS"
t1=$(date +%s.%N)
stop_sim
start_sim "$WORK/prompts-servegate.jsonl"
servegate_project "$WORK/sg-fewshot"
cat >"$WORK/sg-fewshot/suites/fewshot.toml" <<TOML
description = "every built-in task, $SHOTS-shot"
tasks = ["hellaswag", "arc_easy", "arc_challenge", "truthfulqa_mc2", "mmlu"]
data = "$PWD/datasets"
tokenizer = "$PWD/src/sim/data/tokenizer.json"
num_fewshot = $SHOTS
prompt_format = "tokens"
[scoring]
concurrency = 1
TOML
t2=$(date +%s.%N)
"$BIN" --root "$WORK/sg-fewshot" run --output "$WORK/servegate-fewshot.json" >"$WORK/servegate-fewshot.log" 2>&1 ||
  { tail -40 "$WORK/servegate-fewshot.log"; exit 1; }
t3=$(date +%s.%N)
stop_sim
echo "few-shot ($SHOTS per question):"
python3 ci/lm-eval-parity/compare.py "$WORK/servegate-fewshot.json" "$WORK"/lm-eval-fewshot/*/results_*.json
python3 ci/lm-eval-parity/compare_prompts.py "$WORK/prompts-lm-eval.jsonl" "$WORK/prompts-servegate.jsonl"
python3 - "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
t0, t1, t2, t3 = map(float, sys.argv[1:])
print(f"few-shot: lm-eval {t1 - t0:.1f} s wall (process); servegate run {t3 - t2:.1f} s wall")
PY

# gsm8k: generated answers. Each program against its own noisy engine,
# which logs every request.
NOISE=0.5
# gsm8k_parity NAME SHOTS ENDPOINT MULTITURN
gsm8k_parity() {
  local name=$1 shots=$2 endpoint=$3 multiturn=$4 extra=()
  [ "$endpoint" = chat ] && extra+=(--apply_chat_template)
  [ "$endpoint" = chat ] && extra+=(--fewshot_as_multiturn "$multiturn")
  stop_sim
  start_sim "$WORK/requests-lm-eval-$name.jsonl"
  local t0 t1 t2 t3
  t0=$(date +%s.%N)
  LMEVAL_MODEL=$endpoint run_lm_eval "lm-eval-$name" sg_gsm8k --num_fewshot "$shots" --log_samples "${extra[@]}"
  t1=$(date +%s.%N)
  stop_sim
  start_sim "$WORK/requests-servegate-$name.jsonl"
  servegate_project "$WORK/sg-$name"
  cat >"$WORK/sg-$name/suites/gsm8k.toml" <<TOML
description = "gsm8k, $shots-shot, $endpoint"
tasks = ["gsm8k"]
data = "$PWD/datasets"
tokenizer = "$WORK/tok/tokenizer.json"
num_fewshot = $shots
endpoint = "$endpoint"
fewshot_as_multiturn = $multiturn
prompt_format = "tokens"
[scoring]
concurrency = 1
TOML
  t2=$(date +%s.%N)
  "$BIN" --root "$WORK/sg-$name" run --output "$WORK/servegate-$name.json" >"$WORK/servegate-$name.log" 2>&1 ||
    { tail -40 "$WORK/servegate-$name.log"; exit 1; }
  t3=$(date +%s.%N)
  stop_sim
  echo "gsm8k, $name:"
  python3 ci/lm-eval-parity/compare.py "$WORK/servegate-$name.json" "$WORK"/lm-eval-$name/*/results_*.json
  python3 ci/lm-eval-parity/compare_prompts.py "$WORK/requests-lm-eval-$name.jsonl" "$WORK/requests-servegate-$name.jsonl"
  python3 ci/lm-eval-parity/compare_samples.py "$WORK/servegate-$name.json" "$WORK"/lm-eval-$name/*/samples_sg_gsm8k_*.jsonl
  python3 - "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
t0, t1, t2, t3 = map(float, sys.argv[1:])
print(f"  lm-eval {t1 - t0:.1f} s wall (process); servegate run {t3 - t2:.1f} s wall")
PY
}
gsm8k_parity 0shot 0 completions false
gsm8k_parity 5shot 5 completions false
gsm8k_parity chat-5shot 5 chat false
gsm8k_parity chat-multiturn-5shot 5 chat true
