#!/usr/bin/env python3
"""Generate lm-eval task YAMLs reading local JSONL files (Hub schemas) from DATA_DIR.

usage: gen_tasks.py DATA_DIR OUT_DIR     (prints the task names to run, comma-separated, on stdout)

Each task `include`s lm-eval's own built-in YAML (absolute path inside the installed lm_eval)
and overrides only the dataset settings (dataset_path json + data_files, splits, task name, tag),
so prompts, choices, targets, process_docs/process_results and metrics are exactly the built-in ones.
  sg_hellaswag       <- hellaswag/hellaswag.yaml              (validation split)
  sg_arc_easy        <- arc/arc_easy.yaml                     (test split)
  sg_arc_challenge   <- arc/arc_challenge.yaml                (test split)
                        hellaswag and ARC: <task>_train.jsonl next to it, if there, is the
                        `train` split their built-in configs draw few-shot examples from
  sg_truthfulqa_mc2  <- truthfulqa/truthfulqa_mc2.yaml        (validation split)
  sg_mmlu (group)    <- mmlu/default/mmlu_<subject>.yaml per subject present in the data (test split,
                        0-shot, filtered on `subject`), grouped like mmlu/default/_mmlu*.yaml
                        (stem/other/social_sciences/humanities, aggregate acc weight_by_size);
                        0-shot by default; if mmlu_dev.jsonl sits next to it, it is the `dev` split
                        the built-in fewshot config (first_n, same subject) draws from with --num_fewshot
  sg_gsm8k           <- gsm8k/gsm8k.yaml                      (test split; gsm8k_train.jsonl beside it,
                        if there, is the `train` split few-shot examples come from)
  sg_faq             generic: Question/Answer prompt, choices = options, target = options.index(answer)
Only tasks whose JSONL exists in DATA_DIR are written.
"""
import json
import os
import shutil
import sys

import yaml

import lm_eval

HERE = os.path.dirname(os.path.abspath(__file__))
BUILTIN = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")
TAG = "sg_parity"

# candidate file names (first existing wins)
FILES = {
    "hellaswag": ["hellaswag.jsonl", "hellaswag_validation.jsonl", "hellaswag_val.jsonl"],
    "arc_easy": ["arc_easy.jsonl", "arc_easy_test.jsonl", "ARC-Easy.jsonl"],
    "arc_challenge": ["arc_challenge.jsonl", "arc_challenge_test.jsonl", "ARC-Challenge.jsonl"],
    "truthfulqa_mc2": ["truthfulqa_mc2.jsonl", "truthfulqa.jsonl", "truthfulqa_mc.jsonl", "truthful_qa.jsonl"],
    "mmlu": ["mmlu.jsonl", "mmlu_test.jsonl"],
    "faq": ["faq.jsonl"],
    "gsm8k": ["gsm8k.jsonl", "gsm8k_test.jsonl"],
}


def find(data_dir, key):
    for name in FILES[key]:
        p = os.path.join(data_dir, name)
        if os.path.isfile(p):
            return os.path.abspath(p)
    return None


def dump(out_dir, name, cfg):
    with open(os.path.join(out_dir, name), "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True, width=1000)


def local(path, split, **extra):
    """dataset overrides: local JSONL as the one split lm-eval evaluates."""
    cfg = {
        "tag": [TAG],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: path}},
        "training_split": None,
        "validation_split": "validation" if split == "validation" else None,
        "test_split": "test" if split == "test" else None,
    }
    cfg.update(extra)
    return cfg


def with_train(cfg, path, name):
    """The `train` split (few-shot pool) from <name>_train.jsonl beside `path`, when there."""
    train = os.path.join(os.path.dirname(path), f"{name}_train.jsonl")
    if os.path.isfile(train):
        cfg["dataset_kwargs"]["data_files"]["train"] = os.path.abspath(train)
        cfg["training_split"] = "train"
    return cfg


def main():
    data_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if f.endswith(".yaml"):
            os.remove(os.path.join(out_dir, f))
    shutil.copy(os.path.join(HERE, "sg_utils.py"), os.path.join(out_dir, "sg_utils.py"))
    tasks = []

    if p := find(data_dir, "hellaswag"):
        dump(out_dir, "sg_hellaswag.yaml", {"include": f"{BUILTIN}/hellaswag/hellaswag.yaml",
                                            "task": "sg_hellaswag",
                                            **with_train(local(p, "validation"), p, "hellaswag")})
        tasks.append("sg_hellaswag")
    for name in ("arc_easy", "arc_challenge"):
        if p := find(data_dir, name):
            dump(out_dir, f"sg_{name}.yaml", {"include": f"{BUILTIN}/arc/{name}.yaml",
                                               "task": f"sg_{name}",
                                               **with_train(local(p, "test"), p, name)})
            tasks.append(f"sg_{name}")
    if p := find(data_dir, "truthfulqa_mc2"):
        dump(out_dir, "sg_truthfulqa_mc2.yaml", {"include": f"{BUILTIN}/truthfulqa/truthfulqa_mc2.yaml",
                                                 "task": "sg_truthfulqa_mc2", **local(p, "validation")})
        tasks.append("sg_truthfulqa_mc2")
    if p := find(data_dir, "mmlu"):
        subjects = []
        with open(p) as f:
            for line in f:
                if line.strip():
                    s = json.loads(line)["subject"]
                    if s not in subjects:
                        subjects.append(s)
        mdir = f"{BUILTIN}/mmlu/default"
        dev = os.path.join(os.path.dirname(p), "mmlu_dev.jsonl")
        dev = dev if os.path.isfile(dev) else None
        cats = {}  # category tag (e.g. mmlu_stem_tasks) -> subjects
        for s in sorted(subjects):
            b = f"{mdir}/mmlu_{s}.yaml"
            if dev:  # few-shot examples from mmlu_dev.jsonl: keep the built-in fewshot_split dev / first_n
                over = local(p, "test", process_docs=f"!function sg_utils.mmlu_{s}")
                over["dataset_kwargs"]["data_files"]["dev"] = dev
            else:
                over = local(p, "test", fewshot_split=None, fewshot_config=None,
                             process_docs=f"!function sg_utils.mmlu_{s}")
            if os.path.isfile(b):
                cat = yaml.safe_load(open(b))["tag"]
                cfg = {"include": b, "task": f"sg_mmlu_{s}", **over}
            else:  # subject unknown to lm-eval: same template, same description rule
                print(f"warning: mmlu subject {s!r} not in lm-eval's mmlu; filed under 'other'", file=sys.stderr)
                cat = "mmlu_other_tasks"
                cfg = {"include": f"{mdir}/_default_template_yaml", "task": f"sg_mmlu_{s}", "task_alias": s,
                       "description": f"The following are multiple choice questions (with answers) about {s.replace('_', ' ')}.\n\n",
                       **over}
            cfg["tag"] = [f"sg_{cat}"]
            cats.setdefault(cat, []).append(s)
            dump(out_dir, f"sg_mmlu_{s}.yaml", cfg)
        groups = []
        for gfile, cat in (("_mmlu_stem.yaml", "mmlu_stem_tasks"), ("_mmlu_other.yaml", "mmlu_other_tasks"),
                           ("_mmlu_social_sciences.yaml", "mmlu_social_sciences_tasks"),
                           ("_mmlu_humanities.yaml", "mmlu_humanities_tasks")):
            if cat not in cats:
                continue
            g = yaml.safe_load(open(f"{mdir}/{gfile}"))
            g["group"] = "sg_" + g["group"]
            g["task"] = [f"sg_{cat}"]
            dump(out_dir, f"sg{gfile}", g)
            groups.append(g["group"])
        top = yaml.safe_load(open(f"{mdir}/_mmlu.yaml"))
        top["group"] = "sg_mmlu"
        top["task"] = groups
        dump(out_dir, "sg_mmlu.yaml", top)
        tasks.append("sg_mmlu")
    if p := find(data_dir, "gsm8k"):
        dump(out_dir, "sg_gsm8k.yaml", {"include": f"{BUILTIN}/gsm8k/gsm8k.yaml",
                                        "task": "sg_gsm8k",
                                        **with_train(local(p, "test"), p, "gsm8k")})
        tasks.append("sg_gsm8k")
    if p := find(data_dir, "faq"):
        dump(out_dir, "sg_faq.yaml", {
            "task": "sg_faq", **local(p, "test"),
            "output_type": "multiple_choice",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_choice": "{{options}}",
            "doc_to_target": "{{options.index(answer)}}",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0},
        })
        tasks.append("sg_faq")
    # the `!function` strings must be YAML tags, not quoted strings
    for f in os.listdir(out_dir):
        if f.endswith(".yaml"):
            fp = os.path.join(out_dir, f)
            txt = open(fp).read().replace("'!function sg_utils.", "!function sg_utils.")
            txt = "\n".join(l[:-1] if "!function sg_utils." in l and l.endswith("'") else l for l in txt.split("\n"))
            open(fp, "w").write(txt)
    print(",".join(tasks))


if __name__ == "__main__":
    main()
