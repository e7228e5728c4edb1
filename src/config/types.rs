//! The configuration schema shared by `servegate.toml` and every case file.
//!
//! A case file is merged over `servegate.toml`, so both use one schema; every
//! struct denies unknown keys so that a typo is an error, not a silent default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::metrics::MetricKey;
pub use crate::metrics::Slo;
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
    /// Size of the model's weights in bytes, for the decode roofline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_weights_bytes: Option<u64>,
    /// A folder of `*.safetensors` files whose headers give the weights' size
    /// (used when `model_weights_bytes` is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// Named knob sets for embedded engines (`sim = { profile = "NAME" }`).
    #[serde(default)]
    pub sim_profiles: BTreeMap<String, SimSpec>,
    /// Servers that cases may name as candidate or baseline.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSpec>,
    /// Name of the target under test.
    #[serde(default = "default_candidate")]
    pub candidate: String,
    /// The reference: a target's name, or `{ results = "path" }` to compare
    /// with a case recorded by an earlier `servegate run`.
    #[serde(default)]
    pub baseline: Baseline,
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
    /// Scenarios: limits keyed by metric name (see `metrics::MetricName`).
    /// Suites: accuracy tolerances (`max_drop`, `expected`, …).
    #[serde(default)]
    pub gate: GateConfig,
    /// Measured phases per target. With more than one, candidate and baseline
    /// are both kept up and measured in turn (A B A B …) so that drift of the
    /// machine cancels out; every phase has its own warm-up.
    #[serde(default = "default_repeats")]
    pub repeats: u32,
    /// The targets' Prometheus `/metrics`, scraped while measured requests
    /// run (scenarios).
    #[serde(default)]
    pub server_metrics: ServerMetricsConfig,
    /// Quality tasks (suites only).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Number of documents per task (suites only; per subject for mmlu).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Few-shot examples per question (suites only; mmlu takes them from its dev records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_fewshot: Option<u32>,
    /// Where a suite's records are: a folder holding `<task>.jsonl` or
    /// `<task>.parquet`, or one file per task (`{ hellaswag = "hs.jsonl" }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataPaths>,
    /// A folder of task records used when a suite names no `data`
    /// (`--data-dir`, `SERVEGATE_DATA_DIR`); then the Hugging Face cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// How a suite's requests are sent and its inputs sized.
    #[serde(default)]
    pub scoring: ScoringConfig,
    /// Multiple-choice tasks over the user's own records, by task name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mc_tasks: BTreeMap<String, McTaskSpec>,
    /// Generative tasks over the user's own records, by task name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gen_tasks: BTreeMap<String, GenTaskSpec>,
    /// Where generative tasks send their prompts: `completions` (the prompt
    /// as text, lm-eval's `local-completions`) or `chat` (as messages,
    /// lm-eval's `local-chat-completions` with `--apply_chat_template`).
    #[serde(default, skip_serializing_if = "Endpoint::is_default")]
    pub endpoint: Endpoint,
    /// Chat: each few-shot example as its own user and assistant turns
    /// (lm-eval's `--fewshot_as_multiturn`, on by default with its chat
    /// template since 0.4.10); `false` sends one user message.
    #[serde(default = "yes")]
    pub fewshot_as_multiturn: bool,
    /// How prompts go to `/v1/completions`: `tokens` (token ids, as
    /// lm-eval sends them by default), `text` (tokenised here to know where
    /// each continuation starts, sent as text, as lm-eval's
    /// `tokenized_requests=False`), or `auto`: text for a server that the
    /// probe finds refusing token-id prompts (llama.cpp), else tokens.
    #[serde(default, skip_serializing_if = "PromptFormat::is_auto")]
    pub prompt_format: PromptFormat,
}

/// How a suite's prompts are sent (see `CaseConfig::prompt_format`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    #[default]
    Auto,
    Tokens,
    Text,
}

impl PromptFormat {
    fn is_auto(&self) -> bool {
        *self == PromptFormat::Auto
    }
}

/// A generative task over user records (`[gen_tasks.NAME]`), with lm-eval's
/// `generate_until` semantics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenTaskSpec {
    /// A JSONL or Parquet file of records, as for `[mc_tasks]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The question (`{field}` as in `[mc_tasks]`).
    pub template: String,
    /// The reference answer, also a template (e.g. `"{answer}"`): what a
    /// few-shot example shows after its question, and what exact_match
    /// compares with.
    pub target: String,
    /// Put before the prompt (as the system message on the chat endpoint).
    #[serde(default)]
    pub description: String,
    /// Between an example's question and its answer.
    #[serde(default = "space")]
    pub target_delimiter: String,
    /// After each few-shot example.
    #[serde(default = "fewshot_delimiter")]
    pub fewshot_delimiter: String,
    /// Generation stops at the first of these (not included in the output).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Most tokens generated per question.
    #[serde(default = "default_max_gen_tokens")]
    pub max_tokens: u32,
    /// Answer extractors, each a gated `exact_match,<name>` metric; none
    /// means the whole output (`exact_match,none`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterSpec>,
    /// How answers and targets are compared.
    #[serde(default)]
    pub exact_match: ExactMatchSpec,
    /// How few-shot examples are picked from `<name>_dev.jsonl`.
    #[serde(default, skip_serializing_if = "FewshotSampler::is_default")]
    pub fewshot_sampler: FewshotSampler,
}

/// lm-eval's `regex` filter followed by `take_first`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    pub name: String,
    /// A Python-syntax pattern; its one group (or first non-empty group) is the answer.
    pub regex: String,
    /// Which match: 0 the first, -1 the last.
    #[serde(default)]
    pub group_select: i64,
    /// The answer when nothing matches.
    #[serde(default = "invalid_answer")]
    pub fallback: String,
}

/// lm-eval's `exact_match` options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ExactMatchSpec {
    #[serde(default)]
    pub ignore_case: bool,
    /// Removes ASCII punctuation before comparing.
    #[serde(default)]
    pub ignore_punctuation: bool,
    /// Python-syntax patterns removed, in order, from both sides.
    #[serde(default)]
    pub regexes_to_ignore: Vec<String>,
}

fn fewshot_delimiter() -> String {
    "\n\n".into()
}
fn default_max_gen_tokens() -> u32 {
    256
}
fn invalid_answer() -> String {
    "[invalid]".into()
}

/// How a suite scores (`[scoring]`); the defaults are lm-evaluation-harness's
/// except `concurrency` (it sends one request at a time by default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    /// Requests in flight at once.
    #[serde(default = "default_scoring_concurrency")]
    pub concurrency: u32,
    /// Tries after the first on 429, 5xx, timeouts and connection errors.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Per-request limit in seconds.
    #[serde(default = "default_request_timeout_s")]
    pub timeout_s: f64,
    /// The model's length: inputs keep their last `max_length - 1` tokens.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Let the tokenizer add its special tokens (BOS) to every input.
    #[serde(default)]
    pub add_bos_token: bool,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            concurrency: default_scoring_concurrency(),
            max_retries: default_max_retries(),
            timeout_s: default_request_timeout_s(),
            max_length: default_max_length(),
            add_bos_token: false,
        }
    }
}

fn default_scoring_concurrency() -> u32 {
    8
}
fn default_max_retries() -> u32 {
    3
}
fn default_max_length() -> usize {
    2048
}

/// A suite's `data`: a folder, or a file per task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum DataPaths {
    Folder(PathBuf),
    Files(BTreeMap<String, PathBuf>),
}

/// A multiple-choice task over user records (`[mc_tasks.NAME]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McTaskSpec {
    /// A JSONL or Parquet file of records, relative to the project root
    /// (else the suite's `data`, then `data_dir`, as for built-in tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The question: `{field}` is replaced by a record's field (`{a.b}` and
    /// `{list.0}` reach into nested values); `{{` and `}}` are literal braces.
    pub template: String,
    /// The name of the field holding the list of choices, or the choices themselves.
    pub choices: ChoiceSource,
    /// The field holding the right answer: a choice's index, or its text.
    pub answer: String,
    /// Put between the question and a choice.
    #[serde(default = "space")]
    pub delimiter: String,
    /// Put before every question (and before few-shot examples).
    #[serde(default)]
    pub description: String,
    /// How few-shot examples are picked from `<name>_dev.jsonl`.
    #[serde(default, skip_serializing_if = "FewshotSampler::is_default")]
    pub fewshot_sampler: FewshotSampler,
}

/// lm-evaluation-harness's few-shot samplers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FewshotSampler {
    /// lm-eval's `default`: `random.Random(1234).sample(pool, n)`, one draw
    /// per evaluated record, in record order.
    #[default]
    #[serde(alias = "random")]
    Default,
    /// The first `n` records of the pool, the same for every question.
    FirstN,
}

impl FewshotSampler {
    fn is_default(&self) -> bool {
        *self == FewshotSampler::Default
    }
}

/// Where a generic task's choices come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ChoiceSource {
    /// A field of each record holding a list of strings.
    Field(String),
    /// The same choices for every record (e.g. `["A", "B", "C", "D"]`).
    Fixed(Vec<String>),
}

/// How to reach one server: exactly one of `url`, `command` or `sim`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// An already running server, e.g. `http://127.0.0.1:8000`.
    #[serde(default)]
    pub url: Option<String>,
    /// A server to start: argv, with `{port}` and `{model}` placeholders.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The embedded simulated engine.
    #[serde(default)]
    pub sim: Option<SimSpec>,
    /// Run `command` (and `build`), each a single string, through `/bin/sh -c`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub shell: bool,
    /// Run once before the first start, e.g. `["cargo", "build", "--release"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Vec<String>>,
    /// Extra environment for `command` and `build` (placeholders allowed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working folder of `command` and `build`, relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Fixed loopback port of a `command` whose argv has no `{port}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Grace between SIGTERM and SIGKILL when a `command` is stopped.
    #[serde(default = "default_stop_timeout_s")]
    pub stop_timeout_s: f64,
    /// Never run at the same time as another target (default: true for `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
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

impl TargetSpec {
    /// Whether this target must never run beside another one.
    /// Servers that hold a GPU (a `command`, a `cuda`-mode engine) run alone
    /// unless told otherwise.
    pub fn is_exclusive(&self) -> bool {
        let gpu_engine = self.sim.as_ref().is_some_and(|s| s.cuda == Some(true));
        self.exclusive
            .unwrap_or(self.command.is_some() || gpu_engine)
    }
}

/// What a case compares its candidate with.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Baseline {
    /// A target, by name, measured in the same run.
    Target(String),
    /// A case of the same name in a results file of an earlier run.
    Recorded(RecordedBaseline),
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline::Target(default_baseline())
    }
}

impl Baseline {
    /// The target's name, when the baseline is measured live.
    pub fn target(&self) -> Option<&str> {
        match self {
            Baseline::Target(name) => Some(name),
            Baseline::Recorded(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Baseline {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Baseline;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a target name or a table { results = \"path/to/results.json\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Baseline, E> {
                Ok(Baseline::Target(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Baseline, A::Error> {
                RecordedBaseline::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Baseline::Recorded)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A baseline read from a results file instead of measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordedBaseline {
    /// A results file written by `servegate run` (`RunResults`), or one case's
    /// report (`<results_dir>/cases/NAME.json`), relative to the project root.
    pub results: PathBuf,
    /// Which side of the recorded case to compare with.
    #[serde(default)]
    pub role: RecordedRole,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecordedRole {
    /// The recorded run's candidate (the usual choice: an earlier build).
    #[default]
    Candidate,
    Baseline,
}

/// Knobs of the embedded engine. Every knob is optional: unset knobs come
/// from the named `profile` (built in, or from `[sim_profiles.NAME]`), then
/// from the engine's defaults (see `sim::SimParams`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SimSpec {
    /// A named profile: `constant`, `engine`, or one from `[sim_profiles]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `constant`: every stream on its own fixed timing; `engine`: a continuous-batching scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SimMode>,
    /// Constant mode: time to first token, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Constant mode: time per output token after the first, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    /// Engine mode: most sequences in one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_seqs: Option<u32>,
    /// Engine mode: most prompt tokens prefilled in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_tokens: Option<u32>,
    /// Engine mode: KV cache capacity in tokens; a request reserves prompt + max_tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_capacity_tokens: Option<u32>,
    /// Engine mode: fixed cost of one step, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_base_ms: Option<f64>,
    /// Engine mode: added step cost per running sequence, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_per_seq_ms: Option<f64>,
    /// Engine mode: added step cost per prompt token prefilled, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_ms_per_token: Option<f64>,
    /// Multiplies every time: 1.3 models an engine 30% slower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowdown: Option<f64>,
    /// Standard deviation of seeded noise added to every log-probability (a numerics bug).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_noise: Option<f64>,
    /// Seed of sampling, noise and faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Report `usage`; `false` models a server that sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<bool>,
    /// Fault: fraction of requests answered with HTTP 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Fault: fraction of streams cut half way, without `[DONE]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_rate: Option<f64>,
    /// Fault: every stream pauses this long half way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<f64>,
    /// Fault: not ready (503) for this long after start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_delay_ms: Option<f64>,
    /// Engine mode: prompt blocks (16 tokens) already computed for an
    /// earlier request are not prefilled again (vLLM's prefix caching).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_caching: Option<bool>,
    /// Fault: a standalone engine (`servegate sim`) exits after this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_after: Option<u64>,
    /// Engine mode on a GPU (the `cuda` build): each step runs real kernels
    /// that read the model's weights and the batch's KV cache from device
    /// memory, so step times are what the GPU takes. Runs as a server
    /// process of its own, never inside servegate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<bool>,
    /// `cuda` mode: bytes of weights a decode step reads (default 2 GB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_weights_bytes: Option<u64>,
    /// `cuda` mode: KV-cache bytes per token of context a step reads (default 128 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_bytes_per_token: Option<u64>,
}

impl SimSpec {
    /// Constant timing with the given TTFT and time per token.
    pub fn constant(ttft_ms: f64, tpot_ms: f64) -> Self {
        Self {
            ttft_ms: Some(ttft_ms),
            tpot_ms: Some(tpot_ms),
            ..Self::default()
        }
    }

    /// Each knob set here wins over the same knob in `under`.
    pub fn over(&self, under: &SimSpec) -> SimSpec {
        macro_rules! pick {
            ($($f:ident),*) => { SimSpec { $($f: self.$f.clone().or_else(|| under.$f.clone()),)* } };
        }
        pick!(
            profile,
            mode,
            ttft_ms,
            tpot_ms,
            max_num_seqs,
            max_batch_tokens,
            kv_capacity_tokens,
            step_base_ms,
            step_per_seq_ms,
            prefill_ms_per_token,
            slowdown,
            logprob_noise,
            seed,
            usage,
            error_rate,
            drop_rate,
            stall_ms,
            startup_delay_ms,
            prefix_caching,
            crash_after,
            cuda,
            model_weights_bytes,
            kv_bytes_per_token
        )
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SimMode {
    Constant,
    Engine,
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
    /// vLLM's `random` dataset: token-exact lengths drawn per request.
    Random { random: RandomPrompts },
    /// vLLM's `prefix_repetition` dataset: shared prefixes, unique suffixes.
    PrefixRepetition {
        prefix_repetition: PrefixRepetitionPrompts,
    },
    /// A JSON-lines file: `{"prompt": "…", "output_tokens": N}` per line
    /// (`output_tokens` optional), vLLM's `custom` dataset.
    Custom { custom: PathBuf },
    /// A request trace replayed at its own pace: BurstGPT's CSV columns.
    Trace { trace: TracePrompts },
    /// Multi-turn sessions, each turn sent with the whole history so far.
    Conversations { conversations: ConversationPrompts },
}

/// Multi-turn sessions: every human turn of a ShareGPT-format file
/// (`sharegpt`), or made (`turns` user messages of `input_tokens` tokens
/// each). Each turn is sent with the conversation so far, the server's own
/// answers included, `think_time_s` after the previous answer ended. With
/// conversations, `num_requests` and `warmup` count sessions, and
/// `concurrency` is the number of sessions in flight.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConversationPrompts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharegpt: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// Tokens to generate per turn (the workload's `max_tokens` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u32>,
    /// With `sharegpt`: the most turns sent from one conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    #[serde(default)]
    pub think_time_s: f64,
}

/// A trace file (`Timestamp`, `Request tokens`, `Response tokens`
/// columns, as BurstGPT writes them); each row one request, sent at its
/// timestamp (gaps multiplied by `time_scale`) with a prompt and an output
/// length of its token counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracePrompts {
    pub path: PathBuf,
    #[serde(default = "one")]
    pub time_scale: f64,
}

/// Input and output lengths in tokens with `vllm bench serve`'s meaning:
/// each drawn uniformly from `len × [1 − range_ratio, 1 + range_ratio]`,
/// after a fixed `prefix_len`-token prefix shared by every request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RandomPrompts {
    pub input_len: u32,
    pub output_len: u32,
    #[serde(default)]
    pub range_ratio: f64,
    #[serde(default)]
    pub prefix_len: u32,
}

/// `num_prefixes` prefixes of `prefix_len` tokens, each followed by
/// unique `suffix_len`-token suffixes; requests take them in a shuffled
/// order, so requests sharing a prefix are spread over the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrefixRepetitionPrompts {
    pub num_prefixes: u32,
    pub prefix_len: u32,
    pub suffix_len: u32,
    pub output_len: u32,
}

impl PromptSource {
    /// Made token-exact from a tokenizer, one prompt per request.
    pub fn is_generated(&self) -> bool {
        matches!(
            self,
            PromptSource::Synthetic { .. }
                | PromptSource::Random { .. }
                | PromptSource::PrefixRepetition { .. }
                | PromptSource::Trace { .. }
        ) || matches!(self, PromptSource::Conversations { conversations: c } if c.sharegpt.is_none())
    }

    /// The conversation settings, when requests come in sessions.
    pub fn conversations(&self) -> Option<&ConversationPrompts> {
        match self {
            PromptSource::Conversations { conversations } => Some(conversations),
            _ => None,
        }
    }

    /// Short label used in matrix point names and tables.
    pub fn label(&self) -> String {
        match self {
            PromptSource::Set(name) => name.clone(),
            PromptSource::Synthetic { synthetic } => format!("in{}", synthetic.input_tokens),
            PromptSource::ShareGpt { sharegpt } => file_label("sharegpt", sharegpt),
            PromptSource::Random { random: r } => {
                format!("random_in{}_out{}", r.input_len, r.output_len)
            }
            PromptSource::PrefixRepetition {
                prefix_repetition: p,
            } => format!(
                "prefix{}x{}_sfx{}_out{}",
                p.num_prefixes, p.prefix_len, p.suffix_len, p.output_len
            ),
            PromptSource::Custom { custom } => file_label("custom", custom),
            PromptSource::Trace { trace } => file_label("trace", &trace.path),
            PromptSource::Conversations { conversations: c } => {
                match (&c.sharegpt, c.turns, c.input_tokens) {
                    (Some(file), _, _) => file_label("conv", file),
                    (None, Some(turns), Some(tokens)) => format!("conv{turns}x{tokens}"),
                    _ => "conversations".to_string(),
                }
            }
        }
    }
}

/// `kind_stem` for a file-backed source, so two files on a matrix axis get
/// two names; characters a test name should not hold become `_`.
fn file_label(kind: &str, path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem: String = stem
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}_{stem}")
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

/// Which OpenAI endpoint a workload (or a suite's generative tasks) drives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/v1/completions` with a text prompt.
    #[default]
    Completions,
    /// `/v1/chat/completions` with the prompt as one user message.
    Chat,
}

impl Endpoint {
    fn is_default(&self) -> bool {
        *self == Endpoint::Completions
    }
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
    /// Measure only the plateau where the requests in flight are at
    /// `concurrency` (or, open loop, `max_concurrency`): see `steady`.
    #[serde(default)]
    pub steady_state: bool,
    /// A rate sweep instead of one load (see `sweep`); needs `slo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepConfig>,
    /// Before measuring, open as many keep-alive connections as requests
    /// will be in flight, so measured requests pay no connection setup (as
    /// behind a gateway that keeps its connections to the engine); `false`
    /// (`--cold-connections`) leaves it to the warm-up requests.
    #[serde(default = "yes")]
    pub warm_connections: bool,
}

/// A sweep: synchronous, saturated (at `concurrency`), then `rates`
/// constant rates between them; a rate meets the objectives when at least
/// `meet` of its requests do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    #[serde(default = "default_sweep_rates")]
    pub rates: u32,
    #[serde(default = "default_sweep_meet")]
    pub meet: f64,
}

fn default_sweep_rates() -> u32 {
    4
}

fn default_sweep_meet() -> f64 {
    0.95
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
            steady_state: false,
            sweep: None,
            warm_connections: true,
        }
    }
}

/// Scraping of the targets' `/metrics` during each measured phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerMetricsConfig {
    /// Scrape targets whose `/metrics` the probe found; `false` never scrapes.
    #[serde(default = "yes")]
    pub scrape: bool,
    /// Seconds between scrapes.
    #[serde(default = "default_scrape_interval_s")]
    pub interval_s: f64,
    /// Metric names whose series are kept besides the known ones.
    #[serde(default)]
    pub names: Vec<String>,
}

impl Default for ServerMetricsConfig {
    fn default() -> Self {
        Self {
            scrape: true,
            interval_s: default_scrape_interval_s(),
            names: Vec::new(),
        }
    }
}

fn default_scrape_interval_s() -> f64 {
    0.5
}

/// Matrix axes. Each present axis overrides the workload key of the same name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    /// Prompt sources, each as `workload.prompts` takes it: set names, or
    /// tables such as `{ random = { … } }`.
    #[serde(default)]
    pub prompts: Option<Vec<PromptSource>>,
    #[serde(default)]
    pub max_tokens: Option<Vec<u32>>,
    #[serde(default)]
    pub concurrency: Option<Vec<u32>>,
    #[serde(default)]
    pub num_requests: Option<Vec<u32>>,
    /// Open-loop rates in requests per second, or `"inf"`: every request
    /// at once, up to `max_concurrency` (vLLM's `--request-rate inf`).
    #[serde(default)]
    pub request_rate: Option<Vec<RequestRate>>,
    /// Caps on requests in flight (with a rate, or `inf`).
    #[serde(default)]
    pub max_concurrency: Option<Vec<u32>>,
}

/// One value of the `request_rate` axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestRate {
    PerSecond(f64),
    Inf,
}

impl RequestRate {
    pub fn label(self) -> String {
        match self {
            RequestRate::PerSecond(r) => format!("r{r}"),
            RequestRate::Inf => "rinf".into(),
        }
    }
}

impl Serialize for RequestRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestRate::PerSecond(r) => s.serialize_f64(*r),
            RequestRate::Inf => s.serialize_str("inf"),
        }
    }
}

impl<'de> Deserialize<'de> for RequestRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(r) => Ok(RequestRate::PerSecond(r)),
            Raw::Text(t) if t == "inf" => Ok(RequestRate::Inf),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "`{t}` is not a rate: a number of requests per second, or \"inf\""
            ))),
        }
    }
}

/// The `[gate]` table. Scenarios and suites share the table's name, so one
/// type reads both: the suite keys go to `quality`, every other key is a
/// scenario metric's limit (validation rejects the wrong kind for the case).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GateConfig {
    pub limits: BTreeMap<MetricKey, Limit>,
    pub quality: QualityGate,
    /// Keys that name neither a metric nor a suite tolerance, kept so that
    /// validation can point at their line.
    pub unknown: Vec<String>,
}

/// A suite's tolerances on accuracy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityGate {
    /// Largest allowed drop of the candidate below the baseline (or below
    /// `expected`), in accuracy points on a 0–1 scale. Default 0.02.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drop: Option<f64>,
    /// Fail on a change either way beyond the tolerance, not only on a drop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two_sided: Option<bool>,
    /// Recorded values to compare with instead of a live baseline:
    /// `{ task = value }` (the task's main metric) or `{ "task.metric" = value }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expected: BTreeMap<String, f64>,
    /// Relative tolerance against `expected`: passes when
    /// `measured >= expected * (1 - rtol)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtol: Option<f64>,
}

impl QualityGate {
    /// The keys of `[gate]` that belong to suites.
    pub const KEYS: [&'static str; 4] = ["max_drop", "two_sided", "expected", "rtol"];

    pub fn is_empty(&self) -> bool {
        *self == QualityGate::default()
    }
}

impl std::ops::Deref for GateConfig {
    type Target = BTreeMap<MetricKey, Limit>;
    fn deref(&self) -> &Self::Target {
        &self.limits
    }
}

impl std::ops::DerefMut for GateConfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.limits
    }
}

impl<'a> IntoIterator for &'a GateConfig {
    type Item = (&'a MetricKey, &'a Limit);
    type IntoIter = std::collections::btree_map::Iter<'a, MetricKey, Limit>;
    fn into_iter(self) -> Self::IntoIter {
        self.limits.iter()
    }
}

impl Serialize for GateConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let q = &self.quality;
        let mut map = s.serialize_map(None)?;
        for (k, v) in &self.limits {
            map.serialize_entry(k, v)?;
        }
        if let Some(v) = q.max_drop {
            map.serialize_entry("max_drop", &v)?;
        }
        if let Some(v) = q.two_sided {
            map.serialize_entry("two_sided", &v)?;
        }
        if !q.expected.is_empty() {
            map.serialize_entry("expected", &q.expected)?;
        }
        if let Some(v) = q.rtol {
            map.serialize_entry("rtol", &v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for GateConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = GateConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of metric limits, or a suite's max_drop/expected/rtol")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<GateConfig, A::Error> {
                let mut gate = GateConfig::default();
                let q = &mut gate.quality;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "max_drop" => q.max_drop = Some(map.next_value()?),
                        "two_sided" => q.two_sided = Some(map.next_value()?),
                        "expected" => q.expected = map.next_value()?,
                        "rtol" => q.rtol = Some(map.next_value()?),
                        _ => {
                            let limit = map.next_value()?;
                            match MetricKey::parse(&key) {
                                Some(metric) => {
                                    gate.limits.insert(metric, limit);
                                }
                                None => gate.unknown.push(key),
                            }
                        }
                    }
                }
                Ok(gate)
            }
        }
        d.deserialize_map(Visitor)
    }
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
fn default_stop_timeout_s() -> f64 {
    10.0
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn space() -> String {
    " ".to_string()
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
