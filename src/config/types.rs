//! The configuration schema shared by `servegate.toml` and every case file.
//!
//! A case file is merged over `servegate.toml`, so both use one schema; every
//! struct denies unknown keys so that a typo is an error, not a silent default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One fully merged case configuration (defaults, project file, case file, environment).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaseConfig {
    /// One line saying what the case checks.
    #[serde(default)]
    pub description: Option<String>,
    /// Model name sent in every request and substituted for `{model}`.
    #[serde(default = "default_model")]
    pub model: String,
    /// Where run results and server logs are written, relative to the project root.
    #[serde(default = "default_results_dir")]
    pub results_dir: PathBuf,
    /// Where prompt sets live, relative to the project root.
    #[serde(default = "default_prompts_dir")]
    pub prompts_dir: PathBuf,
    /// A Hugging Face `tokenizer.json` for the model: counts tokens when a
    /// server sends no usage, and builds synthetic prompts of exact length.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Servers that cases may name as candidate or baseline.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSpec>,
    /// Name of the target under test.
    #[serde(default = "default_candidate")]
    pub candidate: String,
    /// Name of the reference target.
    #[serde(default = "default_baseline")]
    pub baseline: String,
    /// The case needs a GPU; without one it is listed as ignored.
    #[serde(default)]
    pub requires_gpu: bool,
    /// Files (relative to the project root) the case needs; when one is absent
    /// the case is listed as ignored rather than failed.
    #[serde(default)]
    pub requires_files: Vec<PathBuf>,
    #[serde(default)]
    pub workload: WorkloadConfig,
    /// Matrix axes: one trial per combination of values.
    #[serde(default)]
    pub matrix: MatrixConfig,
    /// Gate entries keyed by metric name (see `metrics::MetricName`).
    #[serde(default)]
    pub gate: BTreeMap<String, Limit>,
    /// Measured phases per target. With more than one, candidate and baseline
    /// are both kept up and measured in turn (A B A B …) so that drift of the
    /// machine cancels out; every phase has its own warm-up.
    #[serde(default = "default_repeats")]
    pub repeats: u32,
    /// Quality tasks (suites only).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Number of documents per task (suites only).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// How to reach one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// An already running server, e.g. `http://127.0.0.1:8000`.
    #[serde(default)]
    pub url: Option<String>,
    /// The embedded simulated engine.
    #[serde(default)]
    pub sim: Option<SimSpec>,
    /// Model name for this target, when it differs from the project's.
    #[serde(default)]
    pub model: Option<String>,
    /// Name of an environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Path polled until it answers 200 before the target is used.
    #[serde(default = "default_ready_path")]
    pub ready: String,
    /// How long readiness may take.
    #[serde(default = "default_ready_timeout_s")]
    pub ready_timeout_s: f64,
}

/// Knobs of the embedded engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// Time to first token, in milliseconds.
    #[serde(default = "default_sim_ttft_ms")]
    pub ttft_ms: f64,
    /// Time per output token after the first, in milliseconds.
    #[serde(default = "default_sim_tpot_ms")]
    pub tpot_ms: f64,
    /// Multiplies every time: 1.3 models an engine 30% slower.
    #[serde(default = "one")]
    pub slowdown: f64,
    /// Report `usage`; `false` models a server that sends none.
    #[serde(default = "yes")]
    pub usage: bool,
}

impl Default for SimSpec {
    fn default() -> Self {
        Self {
            ttft_ms: default_sim_ttft_ms(),
            tpot_ms: default_sim_tpot_ms(),
            slowdown: 1.0,
            usage: true,
        }
    }
}

/// Where a workload's prompts come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PromptSource {
    /// A named set under `prompts_dir`.
    Set(String),
    /// Generated prompts of an exact token length (needs `tokenizer`).
    Synthetic { synthetic: SyntheticPrompts },
    /// The first human turn of each conversation in a ShareGPT-format JSON file.
    ShareGpt { sharegpt: PathBuf },
}

impl PromptSource {
    /// Short label used in matrix point names and tables.
    pub fn label(&self) -> String {
        match self {
            PromptSource::Set(name) => name.clone(),
            PromptSource::Synthetic { synthetic } => format!("in{}", synthetic.input_tokens),
            PromptSource::ShareGpt { .. } => "sharegpt".to_string(),
        }
    }
}

impl Default for PromptSource {
    fn default() -> Self {
        PromptSource::Set(default_prompts())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyntheticPrompts {
    /// Exact prompt length in the tokenizer's tokens.
    pub input_tokens: u32,
    /// How many distinct prompts to build.
    #[serde(default = "default_synthetic_count")]
    pub count: u32,
}

/// Which OpenAI endpoint a workload drives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/v1/completions` with a text prompt.
    #[default]
    Completions,
    /// `/v1/chat/completions` with the prompt as one user message.
    Chat,
}

/// Service-level objectives; a request meeting all that are set counts toward goodput.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
}

/// The load one benchmark applies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    /// A prompt set name (`short` reads `prompts/short.txt`, `short.json`, or
    /// the `short` list of `prompts/prompts.json`), `{ synthetic = { input_tokens = N } }`
    /// or `{ sharegpt = "path.json" }`.
    #[serde(default)]
    pub prompts: PromptSource,
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Stream the response (needed for TTFT and ITL); `false` times whole responses.
    #[serde(default = "yes")]
    pub stream: bool,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Minimum tokens to generate (vLLM's `min_tokens`), for exact output lengths without `ignore_eos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    /// Ask the server to ignore end-of-sequence so every request yields `max_tokens`.
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    #[serde(default)]
    pub temperature: f64,
    /// Requests in flight at once (closed loop). Ignored when `rate` is set.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Closed loop: start the workers evenly spread over this many seconds
    /// instead of all at once, so their requests do not stay in lockstep.
    #[serde(default)]
    pub ramp_up_s: f64,
    /// Open loop: requests per second, arrivals drawn from a gamma process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Gamma shape of inter-arrival times; 1 is Poisson, below 1 burstier.
    #[serde(default = "one")]
    pub burstiness: f64,
    /// Open loop: cap on requests in flight; arrivals beyond it queue in the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Seed of the arrival schedule.
    #[serde(default)]
    pub seed: u64,
    /// Objectives for goodput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// Measured requests.
    #[serde(default = "default_num_requests")]
    pub num_requests: u32,
    /// Requests sent and discarded before measuring.
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    /// Per-request limit; a request past it counts as failed.
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: f64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            prompts: PromptSource::default(),
            endpoint: Endpoint::default(),
            stream: true,
            max_tokens: default_max_tokens(),
            min_tokens: None,
            ignore_eos: true,
            temperature: 0.0,
            concurrency: default_concurrency(),
            ramp_up_s: 0.0,
            rate: None,
            burstiness: 1.0,
            max_concurrency: None,
            seed: 0,
            slo: None,
            num_requests: default_num_requests(),
            warmup: default_warmup(),
            request_timeout_s: default_request_timeout_s(),
        }
    }
}

/// Matrix axes. Each present axis overrides the workload key of the same name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    #[serde(default)]
    pub max_tokens: Option<Vec<u32>>,
    #[serde(default)]
    pub concurrency: Option<Vec<u32>>,
    #[serde(default)]
    pub num_requests: Option<Vec<u32>>,
}

/// One gate entry: ratio limits on candidate/baseline and absolute limits on the candidate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Decide ratio limits on a bootstrap confidence interval of the ratio at
    /// this level (e.g. 0.95): fail only when the whole interval is beyond the
    /// limit, `inconclusive` when it straddles it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

impl Limit {
    pub fn is_empty(&self) -> bool {
        self.min_ratio.is_none()
            && self.max_ratio.is_none()
            && self.min.is_none()
            && self.max.is_none()
    }
}

fn default_repeats() -> u32 {
    1
}
fn default_model() -> String {
    "servegate-sim".to_string()
}
fn default_results_dir() -> PathBuf {
    PathBuf::from("results")
}
fn default_prompts_dir() -> PathBuf {
    PathBuf::from("prompts")
}
fn default_candidate() -> String {
    "candidate".to_string()
}
fn default_baseline() -> String {
    "baseline".to_string()
}
fn default_ready_path() -> String {
    "/v1/models".to_string()
}
fn default_ready_timeout_s() -> f64 {
    30.0
}
fn default_sim_ttft_ms() -> f64 {
    20.0
}
fn default_sim_tpot_ms() -> f64 {
    5.0
}
fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn default_prompts() -> String {
    "short".to_string()
}
fn default_synthetic_count() -> u32 {
    16
}
fn default_max_tokens() -> u32 {
    64
}
fn default_concurrency() -> u32 {
    1
}
fn default_num_requests() -> u32 {
    20
}
fn default_warmup() -> u32 {
    2
}
fn default_request_timeout_s() -> f64 {
    120.0
}
