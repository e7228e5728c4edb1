//! Finding and reading task records: JSONL, Parquet, the Hugging Face cache.
