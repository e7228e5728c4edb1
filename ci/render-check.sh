#!/usr/bin/env bash
# The HTML report checked in a real browser. Builds servegate, measures a
# small project of its own (scenarios at three concurrency levels and two
# prompt sets, the quick and standard quality suites, a candidate whose
# log-probabilities are perturbed so that items flip and one that fails a
# few requests) twice — once without and once with per-request records —
# renders four pages (both runs with history; the run without records;
# the run with records alone; that run with many long quality labels added) and loads each in headless Chromium with
# ci/render-check/check.js, which asserts on the rendered page: no
# JavaScript or console error, every chart an inline SVG with its title and
# both axis labels drawn as visible text inside it, no two text labels of a
# chart overlapping (the quality chart's above all), no empty section,
# table or chart group, and the sections each page must have. Then a
# 1400×2400 screenshot of the full page: OUT_DIR/report.png.
#
#   ci/render-check.sh [--self-test] [OUT_DIR]      (default OUT_DIR: target/render-check)
#
# --self-test also breaks copies of the page on purpose (two quality labels
# drawn over each other, an axis label removed, an empty section) and
# fails unless the check catches each.
#
# Chromium: `chromium` (or `chromium-browser`, `google-chrome`) on PATH,
# else Debian's `chromium` package is installed with apt-get. Without apt
# the check is skipped with a message, except in CI (CI set), where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

self_test=false
if [ "${1:-}" = "--self-test" ]; then
    self_test=true
    shift
fi
out=${1:-target/render-check}
in_ci() { [ -n "${CI:-}" ] && [ "${CI:-}" != "false" ] && [ "${CI:-}" != "0" ]; }

find_browser() {
    for b in chromium chromium-browser google-chrome; do
        if command -v "$b" >/dev/null 2>&1; then
            echo "$b"
            return 0
        fi
    done
    return 1
}

browser=$(find_browser || true)
if [ -z "$browser" ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        fi
        echo "render-check: installing Debian's chromium package"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y chromium >/dev/null ||
            { $sudo apt-get update >/dev/null && $sudo apt-get install -y chromium >/dev/null; }
        browser=$(find_browser) || {
            echo "render-check: FAILED: chromium installed, but no chromium on PATH" >&2
            exit 1
        }
    elif in_ci; then
        echo "render-check: FAILED: no chromium and no apt-get to install it, in CI" >&2
        exit 1
    else
        echo "render-check: skipped: no chromium on PATH and no apt-get to install it (not in CI)"
        exit 0
    fi
fi
command -v python3 >/dev/null 2>&1 || { echo "render-check: needs python3" >&2; exit 1; }

cargo build --quiet --bin servegate
bin=$PWD/target/debug/servegate
mkdir -p "$out"
out=$(cd "$out" && pwd)
project=$out/project
rm -rf "$project" "$out"/*.html "$out"/*.json "$out"/*.log "$out/report.png"
mkdir -p "$project/scenarios" "$project/suites"
cp -r prompts datasets "$project/"
cp suites/quick.toml suites/standard.toml "$project/suites/"
cat >"$project/servegate.toml" <<'TOML'
# The render check's project: the embedded engine on both sides; the
# candidate's log-probabilities carry noise, so some quality items flip.
model = "servegate-sim"
[targets.candidate]
sim = { ttft_ms = 20.0, tpot_ms = 2.0, logprob_noise = 0.3, seed = 7 }
[targets.baseline]
sim = { ttft_ms = 20.0, tpot_ms = 2.0 }
[workload]
warmup = 2
num_requests = 12
max_tokens = 32
ignore_eos = true
TOML
cat >"$project/scenarios/grid.toml" <<'TOML'
description = "two prompt sets at three concurrency levels"
[matrix]
prompts = ["short", "medium"]
concurrency = [1, 2, 4]
[gate]
throughput_total = { min_ratio = 0.9, confidence = 0.95 }
ttft_p50 = { max_ratio = 1.25, confidence = 0.95 }
error_rate = { max = 0.0 }
TOML
cat >"$project/scenarios/faults.toml" <<'TOML'
description = "a candidate that answers a few requests with HTTP 500"
[targets.candidate]
sim = { ttft_ms = 20.0, tpot_ms = 2.0, error_rate = 0.15, seed = 3 }
[workload]
concurrency = 2
num_requests = 20
[gate]
throughput_total = { min_ratio = 0.5 }
error_rate = { max = 0.0 }
TOML

# Gates may fail (the faults case does, on purpose): the results file is what matters.
"$bin" --root "$project" run --output "$out/run-1.json" >"$out/run-1.log" 2>&1 || true
"$bin" --root "$project" run --save-detailed --output "$out/run-2.json" >"$out/run-2.log" 2>&1 || true
for f in run-1 run-2; do
    test -s "$out/$f.json" || { echo "render-check: $f wrote no results (see $out/$f.log)" >&2; exit 1; }
done
"$bin" --root "$project" report "$out/run-1.json" "$out/run-2.json" --html "$out/report.html" >/dev/null
"$bin" --root "$project" report "$out/run-1.json" --html "$out/no-records.html" >/dev/null
"$bin" --root "$project" report "$out/run-2.json" --html "$out/one-run.html" >/dev/null
# Quality labels under stress: the run's scores plus many tasks with long
# names, long metric names and tasks found in several suites.
python3 - "$out/run-2.json" "$out/long-labels.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
scores = run["quality"]
metrics = ["acc", "acc_norm", "exact_match,strict-match", "pass@1"]
run["quality"] = scores + [
    dict(scores[i % len(scores)],
         case="suite::a_suite_with_a_long_name_%d" % (i % 3),
         task="hellaswag" if i % 5 == 0 else "a_task_with_quite_a_long_name_%d" % (i // 2),
         metric=metrics[i % len(metrics)])
    for i in range(24)
]
json.dump(run, open(sys.argv[2], "w"))
PY
"$bin" --root "$project" report "$out/long-labels.json" --html "$out/long-labels.html" >/dev/null

check=ci/render-check/check.py
all='["ratio","concurrency","quality","cdf","tokens","timeline"]'
failed=0
python3 "$check" "$browser" "$out/report.html" --expect \
    "{\"kinds\": $all, \"ids\": [\"ratios\",\"concurrency\",\"quality\",\"history\",\"cases\"], \"texts\": [\"answered differently\", \"failed\"]}" ||
    failed=1
python3 "$check" "$browser" "$out/no-records.html" --expect \
    '{"kinds": ["ratio","concurrency","quality"], "no_kinds": ["cdf","tokens","timeline","history"], "texts": ["No per-request records were kept"]}' ||
    failed=1
python3 "$check" "$browser" "$out/one-run.html" --expect \
    "{\"kinds\": $all, \"no_kinds\": [\"history\"]}" || failed=1
python3 "$check" "$browser" "$out/long-labels.html" --expect '{"kinds": ["quality"]}' || failed=1
if $self_test; then
    for broken in overlap no-label empty; do
        python3 "$check" "$browser" "$out/report.html" --mutate "$broken" --want-fail || failed=1
    done
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$out/report.png" --window-size=1400,2400 \
    "file://$out/report.html" >/dev/null 2>&1
test -s "$out/report.png"
echo "render-check: page $out/report.html, screenshot $out/report.png"
if [ "$failed" != 0 ]; then
    echo "render-check: FAILED" >&2
    exit 1
fi
echo "render-check: ok"
