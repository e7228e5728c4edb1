#!/usr/bin/env python3
"""Compare, item by item, the answers servegate and lm-evaluation-harness
generated and extracted for a generative task.

usage: compare_samples.py SERVEGATE_RESULTS.json LM_EVAL_SAMPLES.jsonl

SERVEGATE_RESULTS is a `servegate run` results file holding one suite; its
samples file (named in it) has one line per item and side. The lm-eval file
is what `--log_samples` writes for the task: per document, its `resps` (the
generated text) and, per filter, `filtered_resps` (the extracted answer).
For every document of the candidate side: the generated text and each
filter's answer must be equal. Exits 1 on any difference, showing the first.
"""
import json
import sys


def main():
    results = json.load(open(sys.argv[1]))["suites"][0]
    ours = {}
    with open(results["samples"]) as f:
        for line in f:
            s = json.loads(line)
            if s["side"] == "candidate" and "generated" in s:
                ours[s["doc_id"]] = s
    theirs = {}
    with open(sys.argv[2]) as f:
        for line in f:
            s = json.loads(line)
            theirs.setdefault(s["doc_id"], {})[s["filter"]] = s
    if not ours or set(ours) != set(theirs):
        print(f"samples: documents differ (servegate {len(ours)}, lm-eval {len(theirs)})")
        sys.exit(1)
    compared, diffs = 0, []
    for doc_id in sorted(ours):
        mine = ours[doc_id]
        for filt, s in theirs[doc_id].items():
            pairs = [("generated", mine["generated"], s["resps"][0][0]),
                     (f"{filt} answer", mine["filtered"].get(filt), s["filtered_resps"][0]),
                     (f"{filt} exact_match", mine["exact_match"].get(filt), s["exact_match"])]
            for label, a, b in pairs:
                compared += 1
                if a != b:
                    diffs.append(f"  doc {doc_id} {label}: servegate {a!r}, lm-eval {b!r}")
    distinct = len({s["generated"] for s in ours.values()})
    print(f"samples: {len(ours)} documents, {distinct} distinct generations, "
          f"{compared} values compared, {len(diffs)} different")
    print("\n".join(diffs[:5]))
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
