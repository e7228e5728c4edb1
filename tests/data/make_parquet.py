"""Writes the Parquet files the unit tests of src/quality/data.rs read.

Run from the repository root with a Python that has pyarrow:

    python tests/data/make_parquet.py

arc_easy.parquet holds the first 8 records of datasets/arc_easy.jsonl with the
Hub's column types (choices as struct<text: list<string>, label: list<string>>).
types.parquet holds two rows of assorted column types, including a pandas
index column that readers should leave out.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq

strings = pa.list_(pa.string())

with open("datasets/arc_easy.jsonl", encoding="utf-8") as f:
    arc = [json.loads(line) for line in f if line.strip()][:8]

arc_schema = pa.schema(
    [
        ("id", pa.string()),
        ("question", pa.string()),
        ("choices", pa.struct([("text", strings), ("label", strings)])),
        ("answerKey", pa.string()),
    ]
)
pq.write_table(
    pa.Table.from_pylist(arc, schema=arc_schema),
    "tests/data/arc_easy.parquet",
    compression="snappy",
)

types_schema = pa.schema(
    [
        ("ind", pa.int64()),
        ("label", pa.string()),
        ("endings", strings),
        ("score", pa.float32()),
        ("weight", pa.float64()),
        ("flag", pa.bool_()),
        ("note", pa.string()),
        ("labels", pa.list_(pa.int32())),
        ("nested", pa.struct([("text", strings), ("label", strings)])),
        ("__index_level_0__", pa.int64()),
    ]
)
types_rows = [
    {
        "ind": 4,
        "label": "2",
        "endings": ["a", "b"],
        "score": 0.1,
        "weight": 2.5,
        "flag": True,
        "note": None,
        "labels": [1, 0, 0],
        "nested": {"text": ["x"], "label": ["A"]},
        "__index_level_0__": 0,
    },
    {
        "ind": 5,
        "label": "0",
        "endings": [],
        "score": -1.5,
        "weight": 0.0,
        "flag": False,
        "note": "n",
        "labels": [],
        "nested": {"text": [], "label": []},
        "__index_level_0__": 1,
    },
]
pq.write_table(
    pa.Table.from_pylist(types_rows, schema=types_schema),
    "tests/data/types.parquet",
    compression="snappy",
)
