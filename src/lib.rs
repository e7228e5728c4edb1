//! servegate: a declarative performance-and-quality gate for OpenAI-compatible
//! LLM inference servers.
//!
//! Each TOML file under `scenarios/` or `suites/` is a case. A case names a
//! candidate and a baseline target, drives the same workload against both and
//! passes only when the gate's tolerances hold. The same cases run as tests
//! (`tests/gate.rs`, through libtest-mimic) and from the `servegate` CLI.

pub mod calibrate;
pub mod changepoint;
pub mod client;
pub mod config;
pub mod conversation;
pub mod discover;
pub mod environment;
pub mod events;
pub mod files;
pub mod gate;
pub mod gatecheck;
pub mod gpu;
pub mod grid;
pub mod harness;
pub mod lag;
pub mod loadgen;
pub mod metrics;
pub mod open_files;
pub mod probe;
pub mod pyregex;
pub mod quality;
pub mod report;
pub mod results;
pub mod run;
pub mod scrape;
pub mod server;
pub mod server_metrics;
pub mod server_tokenizer;
pub mod sim;
pub mod stats;
pub mod steady;
pub mod sweep;
pub mod tokenizer;
pub mod workload;
