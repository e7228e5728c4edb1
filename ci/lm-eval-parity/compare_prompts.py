#!/usr/bin/env python3
"""Compare the prompts two clients sent to the embedded engine.

usage: compare_prompts.py LM_EVAL_PROMPTS.jsonl SERVEGATE_PROMPTS.jsonl

Each file is a `servegate sim --log-prompts` log: one JSON line per prompt
received, `{"prompt_ids": [...], "max_tokens": N, "stop": [...],
"temperature": T, "seed": S}`. The sets of distinct requests must be equal
(servegate sends each distinct request once; lm-eval may repeat one), so
every context, few-shot examples included, is the same token for token, and
every generation was asked for with the same length, stop strings,
temperature and seed. Exits 1 otherwise, showing the first requests found on
one side only.
"""
import json
import sys


def prompts(path):
    """Each request as a hashable tuple: its prompt, then its other fields."""
    out = set()
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                ids = tuple(r.pop("prompt_ids"))
                out.add((ids, json.dumps(r, sort_keys=True)))
    return out


def main():
    theirs, ours = prompts(sys.argv[1]), prompts(sys.argv[2])
    if not theirs or not ours:
        print(f"prompts: an empty log (lm-eval {len(theirs)}, servegate {len(ours)})")
        sys.exit(1)
    only_theirs, only_ours = theirs - ours, ours - theirs
    print(f"prompts: {len(theirs)} distinct from lm-eval, {len(ours)} from servegate, "
          f"{len(only_theirs)} only in lm-eval's, {len(only_ours)} only in servegate's")
    for label, extra in (("only lm-eval sent", only_theirs), ("only servegate sent", only_ours)):
        for p, rest in sorted(extra)[:3]:
            print(f"  {label}: {len(p)} tokens, starting {list(p[:12])}, with {rest}")
    sys.exit(1 if only_theirs or only_ours else 0)


if __name__ == "__main__":
    main()
