//! servegate: a declarative performance-and-quality gate for OpenAI-compatible
//! LLM inference servers.
//!
//! Each TOML file under `scenarios/` or `suites/` is a case. A case names a
//! candidate and a baseline target, drives the same workload against both and
//! passes only when the gate's tolerances hold. The same cases run as tests
//! (`tests/gate.rs`, through libtest-mimic) and from the `servegate` CLI.

pub mod adhoc;
pub mod bench;
pub mod calibrate;
pub mod client;
pub mod config;
pub mod discover;
pub mod environment;
pub mod eval;
pub mod gate;
pub mod gatecheck;
pub mod gpu;
pub mod harness;
pub mod lag;
pub mod metrics;
pub mod open_files;
pub mod quality;
pub mod report;
pub mod results;
pub mod runner;
pub mod sim;
pub mod target;
pub mod tokenizer;
pub mod workload;
