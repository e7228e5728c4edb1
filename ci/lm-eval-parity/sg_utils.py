"""Helpers for the servegate parity lm-eval tasks (copied next to the generated YAMLs).

mmlu: the data is one JSONL holding every subject, so each per-subject task filters it with
`process_docs: !function sg_utils.mmlu_<subject>`; the functions are made here for every
subject of lm-eval's built-in mmlu (and, through __getattr__, for any other name).
"""
import os

import datasets

import lm_eval

_MMLU_DEFAULT = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "mmlu", "default")


def _subject_filter(subject):
    def process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
        return dataset.filter(lambda doc: doc["subject"] == subject)

    process_docs.__name__ = f"mmlu_{subject}"
    return process_docs


def _builtin_subjects():
    out = []
    for f in sorted(os.listdir(_MMLU_DEFAULT)):
        if f.startswith("mmlu_") and f.endswith(".yaml"):
            out.append(f[len("mmlu_"):-len(".yaml")])
    return out


for _s in _builtin_subjects():
    globals()[f"mmlu_{_s}"] = _subject_filter(_s)


def __getattr__(name):
    if name.startswith("mmlu_"):
        return _subject_filter(name[len("mmlu_"):])
    raise AttributeError(name)
