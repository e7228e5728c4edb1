#!/usr/bin/env bash
# The gate spread over machines, checked on one: the shipped project's gate
# trials run as three nextest partitions (separate processes, each with its
# own results folder), `servegate merge` makes one verdict, one results file,
# one summary, one HTML page and one JUnit file of them, and that verdict
# equals an unpartitioned run case for case (names and verdicts). Then the
# gate is archived once and run from the archive in another folder, as a GPU
# runner without a toolchain would, and an archive pointed at a folder
# without a project fails instead of running nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/partition-check
rm -rf "$out"
mkdir -p "$out"
cargo build --release --quiet
servegate=target/release/servegate

echo "== unpartitioned"
SERVEGATE_RESULTS_DIR="$out/all" cargo nextest run --test gate --no-fail-fast --no-tests=pass >"$out/all.log" 2>&1 || true
"$servegate" merge "$out/all/cases" --output "$out/all.json" >/dev/null || true

for k in 1 2 3; do
    echo "== partition hash:$k/3"
    SERVEGATE_RESULTS_DIR="$out/part-$k" cargo nextest run --test gate --no-fail-fast \
        --no-tests=pass --partition "hash:$k/3" >"$out/part-$k.log" 2>&1 || true
    mkdir -p "$out/part-$k/cases"
done

echo "== merge"
set +e
"$servegate" merge "$out"/part-{1,2,3}/cases --output "$out/merged.json" \
    --markdown "$out/summary.md" --html "$out/report.html" --junit "$out/junit.xml"
merge_status=$?
set -e
python3 - "$out/all.json" "$out/merged.json" <<'PY'
import json, sys
def cases(path):
    d = json.load(open(path))
    rows = [(c["name"], c["passed"]) for c in d["cases"]]
    rows += [(s["name"], s["passed"]) for s in d.get("suites", [])]
    return sorted(rows), d["passed"]
whole, whole_passed = cases(sys.argv[1])
merged, merged_passed = cases(sys.argv[2])
if whole != merged or whole_passed != merged_passed:
    print("merged partitions differ from the unpartitioned run:")
    print("  unpartitioned:", whole, whole_passed)
    print("  merged:       ", merged, merged_passed)
    sys.exit(1)
print(f"merged = unpartitioned: {len(merged)} cases, passed = {merged_passed}")
PY
if [ "$merge_status" -ne 0 ]; then
    echo "merge failed with status $merge_status"
    exit 1
fi
# Dropping a part must fail the merge, naming what is missing.
if "$servegate" merge "$out"/part-{1,2}/cases >"$out/missing.log" 2>&1; then
    echo "a merge without part 3 passed"
    exit 1
fi
grep -q "in no part" "$out/missing.log" || { cat "$out/missing.log"; exit 1; }

echo "== archive, run from another folder"
cargo nextest archive --test gate --archive-file "$out/gate.tar.zst" >/dev/null 2>&1
elsewhere="$out/elsewhere"
mkdir -p "$elsewhere"
# The checkout a runner has: the project and the manifest nextest checks for.
cp -r Cargo.toml servegate.toml scenarios suites prompts datasets "$elsewhere/"
cargo nextest run --archive-file "$out/gate.tar.zst" --workspace-remap "$elsewhere" \
    -E 'test(=scenario::batching)' >"$out/archive.log" 2>&1 || { cat "$out/archive.log"; exit 1; }
test -f "$elsewhere/results/cases/scenario__batching.json" || {
    echo "the archived gate did not write its case file in $elsewhere"
    exit 1
}
echo "archived gate ran from $elsewhere"
mkdir -p "$out/no-project"
cp Cargo.toml "$out/no-project/"
if cargo nextest run --archive-file "$out/gate.tar.zst" --workspace-remap "$out/no-project" \
    >"$out/no-project.log" 2>&1; then
    echo "an archive without a project passed"
    exit 1
fi
grep -q "has no servegate.toml" "$out/no-project.log" || { cat "$out/no-project.log"; exit 1; }
echo "an archive without a project fails: $(grep -m1 'has no servegate.toml' "$out/no-project.log")"
