//! The output schema: what a run, a case, a target side and a suite
//! measured, the way `config/types.rs` holds the input schema. It owns the
//! counting (passed, failed, inconclusive, ignored) and is read back by
//! `report`; it depends on nothing that produces or prints results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{CaseConfig, WorkloadConfig};
use crate::environment::Environment;
use crate::gate::quality::{Paired, QualityRow};
use crate::gate::{GateRow, Verdict};
use crate::metrics::{RequestRecord, Summary};
use crate::quality::score::MetricValue;

/// The measurements of one target within a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    pub target: String,
    pub url: String,
    pub model: String,
    /// All measured phases together (see `Summary::from_runs`).
    pub summary: Summary,
    /// Each measured phase's own summary, in the order measured, when the
    /// case has `repeats` > 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<Summary>,
    /// When each phase (its warm-up first) began, in seconds from the start
    /// of the run; with `runs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_offsets_s: Vec<f64>,
    /// Failure reasons and how often each occurred.
    pub errors: BTreeMap<String, usize>,
    /// Every request's record, phase after phase (phase k holds
    /// `runs[k].completed + runs[k].failed` records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RequestRecord>,
    /// The server's log, for targets servegate started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// Set when this side was read from an earlier run's results file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_from: Option<PathBuf>,
    /// Device memory while this target was measured (empty without a GPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_memory: Vec<crate::gpu::MemoryStats>,
    /// What `summary.gpu_mem_peak_bytes` counts: the server's own processes
    /// (NVML per process), or everything on the devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_mem_peak_source: Option<String>,
    /// What the probe found on the server and how requests were shaped
    /// from it (absent for recorded sides from older results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeRecord>,
    /// The server's `/metrics` during each measured phase, in the order
    /// measured (empty when it exports none or scraping is off).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_metrics: Vec<crate::server_metrics::ServerSeries>,
    /// With a sweep: each load of each phase, in the order run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<crate::metrics::SweepPoint>,
    /// With `steady_state`: the window each phase was measured in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steady_windows: Vec<crate::steady::Window>,
}

/// The probe as the results keep it: what each feature did and what was
/// decided from it, so a reader knows how each number was obtained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub found: Vec<FoundFeature>,
    pub choices: Vec<String>,
}

/// The probe's choice on a server that streams as vLLM does: nothing to
/// point out to a reader.
pub const USUAL_STREAMS: &str =
    "streams: usage asked on every event; token counts per event from it";

impl ProbeRecord {
    /// The choices a reader should know about: every one but the usual
    /// vLLM-style streaming.
    pub fn unusual(&self) -> Vec<&str> {
        self.choices
            .iter()
            .map(String::as_str)
            .filter(|c| *c != USUAL_STREAMS)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundFeature {
    pub feature: String,
    /// `yes`, `no` or `?`.
    pub support: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl TargetReport {
    /// The kept records split by measured phase (empty without records).
    pub fn record_runs(&self) -> Vec<&[RequestRecord]> {
        if self.records.is_empty() {
            return Vec::new();
        }
        if self.runs.is_empty() {
            return vec![&self.records];
        }
        let mut out = Vec::new();
        let mut rest: &[RequestRecord] = &self.records;
        for run in &self.runs {
            let n = (run.completed + run.failed).min(rest.len());
            let (head, tail) = rest.split_at(n);
            out.push(head);
            rest = tail;
        }
        out
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    pub name: String,
    pub file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub workload: WorkloadConfig,
    /// The case's configuration as resolved (all layers merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<CaseConfig>,
    pub candidate: TargetReport,
    pub baseline: TargetReport,
    pub gate: Vec<GateRow>,
    pub passed: bool,
    /// What memory bandwidth allows for decode, against the candidate's rate
    /// (with a GPU and a known weight size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline: Option<crate::gpu::Roofline>,
}

/// The outcome of one suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub name: String,
    pub file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The suite's configuration as resolved (all layers merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<CaseConfig>,
    /// Which tokenizer split contexts and continuations.
    pub tokenizer: String,
    /// Where each task's records came from, and how many items were scored.
    pub tasks: Vec<TaskSource>,
    pub candidate: SideReport,
    /// Absent when the suite compares with `expected` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<SideReport>,
    pub rows: Vec<QualityRow>,
    /// Items that flipped between candidate and baseline, per task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paired: Vec<PairedReport>,
    /// Every item of both sides, a JSON line each (see [`SampleLine`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<PathBuf>,
    pub passed: bool,
}

impl SuiteReport {
    /// Both sides' items as the lines of a samples file.
    pub fn sample_lines(&self) -> String {
        let mut out = String::new();
        let sides = [
            ("candidate", Some(&self.candidate)),
            ("baseline", self.baseline.as_ref()),
        ];
        for (side, report) in sides {
            let Some(report) = report else { continue };
            for item in &report.samples {
                let line = SampleLine {
                    side: side.to_string(),
                    target: report.target.clone(),
                    item: item.clone(),
                };
                out.push_str(&serde_json::to_string(&line).expect("a sample serialises"));
                out.push('\n');
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSource {
    pub task: String,
    pub source: String,
    pub items: usize,
}

/// One target's scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideReport {
    pub target: String,
    pub url: String,
    pub model: String,
    pub tasks: Vec<TaskResult>,
    /// Requests sent (identical requests are sent once).
    pub requests: usize,
    pub seconds: f64,
    /// How prompts were sent (token ids or text) and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_format: Option<String>,
    /// What the probe found on the server (absent when the suite named
    /// its prompt format and no probe ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// Every item as scored; written to the suite's samples file, not to
    /// the results (which stay small).
    #[serde(skip)]
    pub samples: Vec<ItemSample>,
}

/// One scored item, lm-eval's `--log_samples` for a multiple-choice task:
/// the context every choice continues (few-shot examples included), the
/// continuations, their log-likelihoods, the right choices and the picks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemSample {
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The item's position in the task's records (per subject for mmlu), as lm-eval's `doc_id`.
    pub doc_id: usize,
    /// The text before the answer: the context every choice continues, or
    /// the prompt a generation continues.
    pub context: String,
    #[serde(flatten)]
    pub scores: ItemScores,
}

/// How an item was scored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ItemScores {
    /// Multiple choice, through log-likelihoods.
    Choice {
        /// The text scored after the context, one per choice.
        continuations: Vec<String>,
        loglikelihoods: Vec<f64>,
        /// The right choices (several for truthfulqa_mc2's true answers).
        gold: Vec<usize>,
        pred: usize,
        pred_norm: usize,
        acc: f64,
        acc_norm: f64,
    },
    /// Generated text, through answer filters and exact_match.
    Generated {
        /// The chat messages sent, when the task went to the chat endpoint.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        messages: Option<Vec<serde_json::Value>>,
        generated: String,
        /// The reference answer (lm-eval's `target`).
        reference: String,
        /// Per filter: the answer it extracted.
        filtered: BTreeMap<String, String>,
        /// Per filter: 1 when the answer matched the target.
        exact_match: BTreeMap<String, f64>,
    },
}

/// A line of a suite's samples file: an item on one side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SampleLine {
    /// `candidate` or `baseline`.
    pub side: String,
    pub target: String,
    #[serde(flatten)]
    pub item: ItemSample,
}

impl SideReport {
    /// The tasks that scored no item or a metric without a value.
    pub fn unscored(&self) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|t| t.items == 0 || t.metrics.iter().any(|m| !m.value.is_finite()))
            .map(|t| t.task.as_str())
            .collect()
    }
}

/// One task's metrics on one target, as lm-evaluation-harness reports them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: String,
    pub items: usize,
    pub metrics: Vec<MetricValue>,
    /// mmlu: per subject (and per category).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtasks: Vec<SubtaskResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtaskResult {
    pub name: String,
    pub items: usize,
    pub metrics: Vec<MetricValue>,
}

/// The paired analysis of one task, with the items that flipped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairedReport {
    #[serde(flatten)]
    pub paired: Paired,
    pub flipped_items: Vec<FlippedItem>,
}

/// One item the two targets answered differently.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlippedItem {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The end of the question as sent (few-shot examples left out).
    pub question: String,
    pub gold: String,
    pub candidate: String,
    pub baseline: String,
    pub candidate_right: bool,
    pub baseline_right: bool,
}

/// One run's results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    pub servegate_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub passed: bool,
    /// False while the run is going on (the file is rewritten after each
    /// case), and so in the file of a run that was interrupted.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
    /// Where and on what the run happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    pub cases: Vec<CaseReport>,
    /// Cases that could not be measured, with the reason.
    #[serde(default)]
    pub errors: Vec<CaseError>,
    /// Cases listed but not run on this machine, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredCase>,
    /// Quality suites, each with its items that flipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suites: Vec<SuiteReport>,
    /// Quality scores per task and metric (from `suites`, for charts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<TaskScore>,
}

fn complete_by_default() -> bool {
    true
}

/// A case this machine could not run (`requires_gpu`, `requires_files`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IgnoredCase {
    pub name: String,
    pub reason: String,
}

/// Orders runs by their start time, oldest first; runs without one (case
/// files combined) keep their order after the others.
pub fn sort_by_start(runs: &mut [RunResults]) {
    runs.sort_by_key(|r| {
        let started = chrono::DateTime::parse_from_rfc3339(&r.started_at).ok();
        (started.is_none(), started)
    });
}

/// One quality task's score on candidate and baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub case: String,
    pub task: String,
    /// `acc`, `acc_norm`, …
    pub metric: String,
    pub candidate: f64,
    pub baseline: f64,
    /// Standard errors, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_stderr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_stderr: Option<f64>,
}

impl RunResults {
    /// A results file holding one case report (as the gate trials write them
    /// under `<results_dir>/cases/`).
    pub fn from_case(case: CaseReport) -> Self {
        Self {
            passed: case.passed,
            cases: vec![case],
            ..Self::from_case_list()
        }
    }

    /// A results file holding one suite report (as the suite trials write them).
    pub fn from_suite(suite: SuiteReport) -> Self {
        let suites = vec![suite];
        Self {
            passed: suites[0].passed,
            quality: task_scores(&suites),
            suites,
            ..Self::from_case_list()
        }
    }

    /// Whether this holds one case or suite report read from its own file (no run around it).
    pub fn is_single_case(&self) -> bool {
        self.started_at.is_empty()
            && self.cases.len() + self.suites.len() == 1
            && self.environment.is_none()
    }

    /// One run made of single-case files (the gate trials' `cases/*.json`).
    pub fn combine(parts: Vec<RunResults>) -> Self {
        let (mut cases, mut suites) = (Vec::new(), Vec::new());
        for p in parts {
            cases.extend(p.cases);
            suites.extend(p.suites);
        }
        Self {
            passed: cases.iter().all(|c: &CaseReport| c.passed) && suites.iter().all(|s| s.passed),
            quality: task_scores(&suites),
            cases,
            suites,
            ..Self::from_case_list()
        }
    }

    fn from_case_list() -> Self {
        Self {
            servegate_version: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            passed: true,
            complete: true,
            environment: None,
            cases: Vec::new(),
            errors: Vec::new(),
            ignored: Vec::new(),
            suites: Vec::new(),
            quality: Vec::new(),
        }
    }

    /// Counts over cases and suites: (passed, failed, inconclusive cases
    /// among the passed, errors).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let failed = self.cases.iter().filter(|c| !c.passed).count()
            + self.suites.iter().filter(|s| !s.passed).count();
        let inconclusive = self
            .cases
            .iter()
            .filter(|c| {
                c.passed && c.gate.iter().map(|r| r.verdict).max() == Some(Verdict::Inconclusive)
            })
            .count();
        (
            self.cases.len() + self.suites.len() - failed,
            failed,
            inconclusive,
            self.errors.len(),
        )
    }

    /// One line per case that failed or could not run, saying why, for the
    /// end of a run (as a test runner lists its failures last).
    pub fn failure_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in self.cases.iter().filter(|c| !c.passed) {
            let why: Vec<String> = c
                .gate
                .iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .map(|r| match &r.unmeasured {
                    Some(reason) => format!("{} unmeasured ({reason})", r.metric),
                    None if r.ratio.is_finite() => {
                        format!(
                            "{} ratio {:.3} ({})",
                            r.metric,
                            r.ratio,
                            r.limit_with_confidence()
                        )
                    }
                    None => format!("{} {} ({})", r.metric, r.candidate, r.limit),
                })
                .collect();
            lines.push(format!("{}: {}", c.name, reasons(why)));
        }
        for s in self.suites.iter().filter(|s| !s.passed) {
            let why: Vec<String> = s
                .rows
                .iter()
                .filter(|r| !r.passed)
                .map(|r| match &r.unmeasured {
                    Some(reason) => format!("{} {} unmeasured ({reason})", r.task, r.metric),
                    None => format!("{} {} {:+.4} ({})", r.task, r.metric, r.diff, r.limit),
                })
                .collect();
            lines.push(format!("{}: {}", s.name, reasons(why)));
        }
        for e in &self.errors {
            let first = e.error.lines().next().unwrap_or_default();
            lines.push(format!("{}: error: {first}", e.name));
        }
        lines
    }

    /// A short label for tables and chart axes: the start time, else `run N`.
    pub fn label(&self, index: usize) -> String {
        match chrono::DateTime::parse_from_rfc3339(&self.started_at) {
            Ok(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            Err(_) => format!("run {}", index + 1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseError {
    pub name: String,
    pub error: String,
}

/// Merges the parts of a partitioned run (each part's results file, or the
/// case files its trials wrote) into one run. Every case of `expected` (the
/// cases the project runs on this kind of machine) must appear in exactly
/// one part: a case found twice, or in no part (a partition that did not
/// run or did not finish), is a problem, and problems are all returned.
pub fn merge_parts(
    parts: Vec<(String, RunResults)>,
    expected: &[String],
) -> Result<RunResults, Vec<String>> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (label, part) in &parts {
        let names = part
            .cases
            .iter()
            .map(|c| &c.name)
            .chain(part.suites.iter().map(|s| &s.name))
            .chain(part.errors.iter().map(|e| &e.name));
        for name in names {
            if let Some(first) = seen.insert(name.clone(), label.clone()) {
                problems.push(format!("{name} is in two parts: {first} and {label}"));
            }
        }
    }
    let ignored: Vec<&str> = parts
        .iter()
        .flat_map(|(_, p)| p.ignored.iter().map(|i| i.name.as_str()))
        .collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|name| !seen.contains_key(*name) && !ignored.contains(name))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} case(s) in no part (a part missing, or a trial that ended before it measured): {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let started = parts
        .iter()
        .map(|(_, p)| p.started_at.clone())
        .filter(|s| !s.is_empty())
        .min();
    let finished = parts.iter().map(|(_, p)| p.finished_at.clone()).max();
    let mut merged = RunResults::from_case_list();
    merged.complete = parts.iter().all(|(_, p)| p.complete);
    for (_, p) in parts {
        merged.environment = merged.environment.or(p.environment);
        merged.cases.extend(p.cases);
        merged.suites.extend(p.suites);
        merged.errors.extend(p.errors);
        merged.ignored.extend(p.ignored);
    }
    merged.servegate_version = env!("CARGO_PKG_VERSION").to_string();
    let now = chrono::Local::now().to_rfc3339();
    merged.started_at = started.unwrap_or_else(|| now.clone());
    merged.finished_at = finished.filter(|f| !f.is_empty()).unwrap_or(now);
    merged.ignored.sort_by(|a, b| a.name.cmp(&b.name));
    merged.ignored.dedup_by(|a, b| a.name == b.name);
    merged.quality = task_scores(&merged.suites);
    let (_, failed, _, errors) = merged.counts();
    merged.passed = failed + errors == 0;
    Ok(merged)
}

fn reasons(why: Vec<String>) -> String {
    if why.is_empty() {
        "failed (see its table above)".into()
    } else {
        why.join("; ")
    }
}

/// The scores the HTML quality chart draws: each task's main metric.
pub fn task_scores(suites: &[SuiteReport]) -> Vec<TaskScore> {
    let mut out = Vec::new();
    for s in suites {
        for row in &s.rows {
            let side_stderr = |side: Option<&SideReport>| {
                side.and_then(|side| {
                    side.tasks
                        .iter()
                        .find(|t| t.task == row.task)?
                        .metrics
                        .iter()
                        .find(|m| m.name == row.metric)?
                        .stderr
                })
            };
            out.push(TaskScore {
                case: s.name.clone(),
                task: row.task.clone(),
                metric: row.metric.clone(),
                candidate: row.candidate,
                baseline: row.reference,
                candidate_stderr: side_stderr(Some(&s.candidate)),
                baseline_stderr: side_stderr(s.baseline.as_ref()),
            });
        }
    }
    out
}

/// Reads a results file: a `servegate run` results file, or one case report.
pub fn read(path: &Path) -> anyhow::Result<RunResults> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))?;
    let parsed = if value.get("cases").is_some() {
        serde_json::from_value::<RunResults>(value)
    } else if value.get("gate").is_some() && value.get("candidate").is_some() {
        serde_json::from_value::<CaseReport>(value).map(RunResults::from_case)
    } else if value.get("rows").is_some() && value.get("candidate").is_some() {
        serde_json::from_value::<SuiteReport>(value).map(RunResults::from_suite)
    } else {
        anyhow::bail!(
            "{}: not a servegate results file (no `cases`)",
            path.display()
        );
    };
    parsed.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
