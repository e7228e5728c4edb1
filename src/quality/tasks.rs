//! Task definitions: how dataset records become questions (lm-evaluation-harness 0.4 formats).
