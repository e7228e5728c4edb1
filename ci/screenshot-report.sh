#!/usr/bin/env bash
# Renders servegate's HTML report in headless Chromium and writes a PNG, to
# check by eye that the page and its charts display offline.
#
#   ci/screenshot-report.sh [OUT_DIR] [CASE_FILTER]
#
# Runs the matching cases (default: the three short_mt64 grid points) with
# per-request records, renders the report, and screenshots it into OUT_DIR
# (default: results/screenshot). Without a `chromium` (or `chromium-browser`,
# `google-chrome`) on PATH it renders the HTML and skips the screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-results/screenshot}
filter=${2:-grid::short_mt64}
mkdir -p "$out"
out=$(cd "$out" && pwd)

cargo build --quiet --bin servegate
bin=target/debug/servegate

"$bin" run "$filter" --save-detailed --output "$out/run.json" >"$out/run.log" || {
    echo "note: a gate did not pass (see $out/run.log); rendering anyway"
}
"$bin" report "$out/run.json" --html "$out/report.html" --markdown "$out/summary.md" >/dev/null
echo "report: $out/report.html"

browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then
        browser=$b
        break
    fi
done
if [ -z "$browser" ]; then
    echo "skipped: no chromium on PATH (apt-get install chromium)"
    exit 0
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$out/report.png" --window-size=1400,2400 \
    "file://$out/report.html" >/dev/null 2>&1
test -s "$out/report.png"
echo "screenshot: $out/report.png"
