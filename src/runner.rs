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
    pub summary: Summary,
    /// Failure reasons and how often each occurred.
    pub errors: BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RequestRecord>,
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    pub name: String,
    pub file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub workload: WorkloadConfig,
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

fn load_prompts(
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
    // One target at a time: the candidate is stopped before the baseline
    // starts, so the two never share a machine's resources.
    let mut reports = Vec::new();
    for name in [&c.candidate, &c.baseline] {
        let target = RunningTarget::start(name, &c.targets[name], &c.model).await?;
        spec.model = target.model.clone();
        spec.progress = options
            .progress
            .then(|| progress_bar(name, c.workload.num_requests));
        let result = bench::run(&target.client, &spec).await;
        if let Some(p) = &spec.progress {
            p.finish_and_clear();
        }
        reports.push(target_report(&target, result, options));
    }
    let baseline = reports.pop().expect("two targets");
    let candidate = reports.pop().expect("two targets");
    let rows = gate::evaluate(&c.gate, &candidate.summary, &baseline.summary);
    Ok(CaseReport {
        name: case.name.clone(),
        file: case.file.clone(),
        description: c.description.clone(),
        workload: c.workload.clone(),
        passed: gate::all_pass(&rows),
        candidate,
        baseline,
        gate: rows,
    })
}

fn target_report(target: &RunningTarget, result: BenchResult, options: RunOptions) -> TargetReport {
    let mut errors = BTreeMap::new();
    for reason in result.records.iter().filter_map(|r| r.error.as_ref()) {
        *errors.entry(reason.clone()).or_insert(0) += 1;
    }
    TargetReport {
        target: target.name.clone(),
        url: target.url.clone(),
        model: target.model.clone(),
        summary: result.summary,
        errors,
        records: if options.keep_records {
            result.records
        } else {
            Vec::new()
        },
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
