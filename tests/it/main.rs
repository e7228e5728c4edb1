//! servegate's own integration tests, in one binary (`it`): one module per
//! area, helpers shared in `common`. A test's name is `MODULE::NAME`, e.g.
//! `load::goodput_counts_requests_within_slo`; one module runs with
//! `cargo nextest run -E 'binary(it) & test(/^load::/)'`.
//!
//! Two test binaries stay apart, both libtest-mimic harnesses
//! (`harness = false`) that make their tests at run time: `tests/gate.rs` (a
//! test per case file) and `tests/readme.rs` (a test per README example).

mod common;

mod bench_flags;
mod config_layers;
mod generative;
mod history;
mod hostile;
mod load;
mod merge;
mod module_graph;
mod pipeline;
mod quality;
mod reports;
mod robust_config;
mod robust_process;
mod sim;
mod targets;
mod trust;
mod workloads;
