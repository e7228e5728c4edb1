//! Runs one case end to end: targets up, workload against each, gate checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::bench::{self, BenchResult, BenchSpec};
use crate::config::{self, CaseKind, WorkloadConfig};
use crate::discover::{Case, Project};
use crate::gate::{self, GateRow};
use crate::metrics::{RequestRecord, Summary};
use crate::target::RunningTarget;
use crate::tokenizer::Tokenizer;
use crate::workload;

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
    /// of the case; with `runs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_offsets_s: Vec<f64>,
    /// Failure reasons and how often each occurred.
    pub errors: BTreeMap<String, usize>,
    /// Every request's record, phase after phase (phase k holds
    /// `runs[k].completed + runs[k].failed` records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RequestRecord>,
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
    pub config: Option<config::CaseConfig>,
    pub candidate: TargetReport,
    pub baseline: TargetReport,
    pub gate: Vec<GateRow>,
    pub passed: bool,
}

/// Options that do not change what is measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Keep every request's record in the report.
    pub keep_records: bool,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a terminal.
pub fn progress_bar(label: &str, len: u32) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// The configured tokenizer, if any.
pub fn load_tokenizer(
    project: &Project,
    c: &config::CaseConfig,
) -> anyhow::Result<Option<Tokenizer>> {
    c.tokenizer
        .as_ref()
        .map(|p| {
            Tokenizer::from_file(&config::resolve(&project.root, p)).map_err(anyhow::Error::msg)
        })
        .transpose()
}

pub(crate) fn load_prompts(
    project: &Project,
    case: &Case,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<workload::Prompt>, String> {
    let c = &case.config;
    let dir = config::resolve(&project.root, &c.prompts_dir);
    workload::load_prompts(&project.root, &dir, &c.workload.prompts, tokenizer)
}

/// Runs a case. `Err` means the case could not be measured at all (a target
/// would not start, the prompt set is missing); a gate failure is an `Ok`
/// report with `passed == false`.
pub fn run_case(project: &Project, case: &Case, options: RunOptions) -> anyhow::Result<CaseReport> {
    if case.kind == CaseKind::Suite {
        anyhow::bail!("{}: quality evaluation not implemented yet", case.name);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_scenario(project, case, options))
}

async fn run_scenario(
    project: &Project,
    case: &Case,
    options: RunOptions,
) -> anyhow::Result<CaseReport> {
    let c = &case.config;
    let tokenizer = load_tokenizer(project, c)?;
    let prompts = load_prompts(project, case, tokenizer.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: {e}", case.name))?;
    let mut spec = BenchSpec {
        model: c.model.clone(),
        workload: c.workload.clone(),
        prompts: std::sync::Arc::new(prompts),
        tokenizer,
        progress: None,
    };
    // `repeats` = 1, or targets that must not be up together: one target at
    // a time, the candidate stopped before the baseline starts, each measured
    // `repeats` times. More repeats with targets that can both be up: both
    // stay up and are measured in turn (A B A B …), so slow drift of the
    // machine hits both alike.
    let names = [&c.candidate, &c.baseline];
    let repeats = c.repeats.max(1) as usize;
    let mut phases: [Vec<(f64, BenchResult)>; 2] = Default::default();
    let case_start = std::time::Instant::now();
    let mut meta: Vec<(String, String, String)> = Vec::new();
    if repeats == 1 || !both_can_be_up(c) {
        for (k, name) in names.iter().enumerate() {
            let target = RunningTarget::start(name, &c.targets[*name], &c.model).await?;
            for round in 0..repeats {
                let label = phase_label(name, round, repeats);
                phases[k].push(measure(&target, &mut spec, options, &label, case_start).await);
            }
            meta.push((
                target.name.clone(),
                target.url.clone(),
                target.model.clone(),
            ));
        }
    } else {
        let mut targets = Vec::new();
        for name in names {
            targets.push(RunningTarget::start(name, &c.targets[name], &c.model).await?);
        }
        for round in 0..repeats {
            for (k, target) in targets.iter().enumerate() {
                let label = phase_label(names[k], round, repeats);
                phases[k].push(measure(target, &mut spec, options, &label, case_start).await);
            }
        }
        meta.extend(
            targets
                .iter()
                .map(|t| (t.name.clone(), t.url.clone(), t.model.clone())),
        );
    }
    let [candidate_phases, baseline_phases] = phases;
    let slo = c.workload.slo.as_ref();
    let candidate = target_report(&meta[0], candidate_phases, slo);
    let baseline = target_report(&meta[1], baseline_phases, slo);
    let (cr, br) = (candidate.record_runs(), baseline.record_runs());
    let rows = gate::evaluate_samples(
        &c.gate,
        &gate::Sample {
            summary: &candidate.summary,
            runs: &cr,
            slo,
        },
        &gate::Sample {
            summary: &baseline.summary,
            runs: &br,
            slo,
        },
        &gate::bootstrap::Options::default(),
    );
    let keep = |mut t: TargetReport| {
        if !options.keep_records {
            t.records = Vec::new();
        }
        t
    };
    Ok(CaseReport {
        name: case.name.clone(),
        file: case.file.clone(),
        description: c.description.clone(),
        workload: c.workload.clone(),
        config: Some(c.clone()),
        passed: gate::all_pass(&rows),
        candidate: keep(candidate),
        baseline: keep(baseline),
        gate: rows,
    })
}

/// Whether candidate and baseline may run at the same time (both idle but
/// up while the other is measured). Embedded engines and already running
/// servers always can.
fn both_can_be_up(_config: &config::CaseConfig) -> bool {
    true
}

/// The progress bar's label of a phase: `candidate`, or `candidate 2/3`.
fn phase_label(name: &str, round: usize, repeats: usize) -> String {
    if repeats == 1 {
        name.to_string()
    } else {
        format!("{name} {}/{repeats}", round + 1)
    }
}

/// One phase (warm-up, then measured requests) against a running target,
/// and when it began, in seconds since `since`.
async fn measure(
    target: &RunningTarget,
    spec: &mut BenchSpec,
    options: RunOptions,
    label: &str,
    since: std::time::Instant,
) -> (f64, BenchResult) {
    spec.model = target.model.clone();
    spec.progress = options
        .progress
        .then(|| progress_bar(label, spec.workload.num_requests));
    let began = since.elapsed().as_secs_f64();
    let result = bench::run(&target.client, spec).await;
    if let Some(p) = spec.progress.take() {
        p.finish_and_clear();
    }
    (began, result)
}

fn target_report(
    (name, url, model): &(String, String, String),
    phases: Vec<(f64, BenchResult)>,
    slo: Option<&config::Slo>,
) -> TargetReport {
    let (offsets, phases): (Vec<f64>, Vec<BenchResult>) = phases.into_iter().unzip();
    let mut errors = BTreeMap::new();
    for reason in phases
        .iter()
        .flat_map(|p| &p.records)
        .filter_map(|r| r.error.as_ref())
    {
        *errors.entry(reason.clone()).or_insert(0) += 1;
    }
    let runs: Vec<&[RequestRecord]> = phases.iter().map(|p| p.records.as_slice()).collect();
    let summary = match phases.as_slice() {
        [one] => one.summary.clone(),
        _ => Summary::from_runs(&runs, slo),
    };
    let per_run: Vec<Summary> = if phases.len() > 1 {
        phases.iter().map(|p| p.summary.clone()).collect()
    } else {
        Vec::new()
    };
    TargetReport {
        target: name.clone(),
        url: url.clone(),
        model: model.clone(),
        summary,
        runs: per_run,
        run_offsets_s: if phases.len() > 1 {
            offsets
        } else {
            Vec::new()
        },
        errors,
        records: phases.into_iter().flat_map(|p| p.records).collect(),
    }
}

/// Checks what a case needs from disk (its prompt set) without running it.
pub fn check_case(project: &Project, case: &Case) -> Result<(), config::ConfigError> {
    if case.kind != CaseKind::Scenario {
        return Ok(());
    }
    let c = &case.config;
    let tokenizer = load_tokenizer(project, c).map_err(|e| config::ConfigError {
        origin: config::Origin::File(case.file.clone()),
        line: None,
        key: Some("tokenizer".into()),
        message: format!("{e:#}"),
    })?;
    load_prompts(project, case, tokenizer.as_ref()).map_err(|message| {
        let path = ["workload".to_string(), "prompts".to_string()];
        let line = std::fs::read_to_string(&case.file).ok().and_then(|src| {
            config::key_line(&src, &["matrix".into(), "prompts".into()])
                .or_else(|| config::key_line(&src, &path))
        });
        config::ConfigError {
            origin: config::Origin::File(case.file.clone()),
            line,
            key: Some("workload.prompts".into()),
            message: format!("{} ({message})", case.name),
        }
    })?;
    Ok(())
}
