#!/usr/bin/env python3
"""Compare servegate's suite results with lm-evaluation-harness's, metric by metric.

usage: compare.py SERVEGATE_RESULTS.json LM_EVAL_RESULTS.json [--known-different TASK …]

SERVEGATE_RESULTS is a `servegate run` results file holding one suite; the
lm-eval file is the results JSON written by `lm_eval --output_path`, with the
tasks named `sg_<task>` (see gen_tasks.py). Every metric and standard error
must be equal to the last bit; exits 1 on any difference, except in the
tasks named after --known-different (shown, not counted), for a difference
whose cause is known and explained by the caller.
"""
import json
import sys


def main():
    ours = json.load(open(sys.argv[1]))["suites"][0]
    theirs = json.load(open(sys.argv[2]))["results"]
    known = set(sys.argv[sys.argv.index("--known-different") + 1:]) if "--known-different" in sys.argv else set()
    rows, diffs = [], 0
    for task in ours["candidate"]["tasks"]:
        parts = [(task["task"], task["metrics"])]
        parts += [(s["name"], s["metrics"]) for s in task.get("subtasks", [])]
        for name, metrics in parts:
            ref = theirs.get("sg_" + name)
            if ref is None:
                print(f"{name}: not in lm-eval's results")
                diffs += 1
                continue
            for m in metrics:
                # lm-eval keys a metric `<metric>,<filter>`: `none` unless
                # the task filters its answers (gsm8k's strict-match, …).
                metric, _, filt = m["name"].partition(",")
                filt = filt or "none"
                pairs = [
                    (m["name"], m["value"], ref.get(f"{metric},{filt}")),
                    (m["name"] + " stderr", m["stderr"], ref.get(f"{metric}_stderr,{filt}")),
                ]
                for label, a, b in pairs:
                    b = None if b == "N/A" else b
                    same = a == b
                    excused = not same and task["task"] in known
                    diffs += not same and not excused
                    verdict = "same" if same else "different (known)" if excused else "DIFFERENT"
                    rows.append(f"{name:30} {label:36} {a!r:24} {b!r:24} {verdict}")
    print(f"{'task':30} {'metric':36} {'servegate':24} {'lm-eval':24}")
    print("\n".join(rows))
    print(f"{len(rows)} values compared, {diffs} different")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
