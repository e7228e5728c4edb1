//! Runs cases end to end: targets up, workload against each, gate checked.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Client, Dialect};
use crate::config::{self, Baseline, CaseKind, RecordedBaseline, RecordedRole};
use crate::discover::{Case, Project};
use crate::gate;
use crate::loadgen::{self, BenchResult, BenchSpec};
use crate::metrics::{RequestRecord, Summary};
pub use crate::results::{CaseReport, ProbeRecord, TargetReport};
use crate::scrape::Scraper;
use crate::server::pool::{self, Pool, TargetKey};
use crate::server::TargetEnv;
use crate::server_metrics::ServerSeries;
use crate::server_tokenizer::ServerTokenizer;
use crate::tokenizer::{Codec, Tokenizer};
use crate::workload;

/// Options that do not change what is measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Keep every request's record in the report.
    pub keep_records: bool,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// The configured tokenizer, if any.
pub fn load_tokenizer(c: &config::CaseConfig) -> anyhow::Result<Option<Tokenizer>> {
    c.tokenizer
        .as_ref()
        .map(|p| Tokenizer::from_file(p).map_err(anyhow::Error::msg))
        .transpose()
}

pub(crate) fn load_prompts(
    project: &Project,
    case: &Case,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<workload::Prompt>, String> {
    let c = &case.config;
    let w = &c.workload;
    // Generated datasets are made through `tokenizer`, else the candidate's
    // own: the embedded engine's, or a running server's `/tokenize`.
    let engine;
    let server;
    let candidate = c.targets.get(&c.candidate);
    let dataset_tokenizer: Option<&dyn Codec> = match tokenizer {
        Some(t) => Some(t),
        None if w.prompts.is_generated() => match candidate {
            Some(t) if t.sim.is_some() => {
                engine = Tokenizer::engine();
                Some(&engine)
            }
            Some(t) if t.url.is_some() => {
                server = candidate_tokenizer(c, t)?;
                Some(&server)
            }
            _ => None,
        },
        None => None,
    };
    workload::load_prompts(
        &project.root,
        &c.prompts_dir,
        &w.prompts,
        dataset_tokenizer,
        (w.warmup + w.num_requests) as usize,
        w.seed,
    )
}

/// The tokenizer of a candidate given by `url`, through its `/tokenize`.
fn candidate_tokenizer(
    c: &config::CaseConfig,
    target: &config::TargetSpec,
) -> Result<ServerTokenizer, String> {
    let url = target.url.as_deref().unwrap_or_default();
    let key = crate::server::api_key(&c.candidate, target).map_err(|e| e.to_string())?;
    let client = Client::new(url, key).map_err(|e| format!("{url}: {e}"))?;
    let model = target.model.clone().unwrap_or_else(|| c.model.clone());
    ServerTokenizer::connect(client, &model)
        .map_err(|e| format!("{e}; set `tokenizer` to the model's tokenizer.json"))
}

/// Runs a case. `Err` means the case could not be measured at all (a target
/// would not start or died, the prompt set is missing); a gate failure is an
/// `Ok` report with `passed == false`.
pub fn run_case(project: &Project, case: &Case, options: RunOptions) -> anyhow::Result<CaseReport> {
    run_cases(project, &[case], options, &mut |_| {})
        .pop()
        .expect("one result per case")
}

/// Runs cases together, one result per case in the same order. Each target
/// starts once for all the cases that use it (in order of first use) and is
/// stopped before an exclusive target starts; `progress` hears what runs.
pub fn run_cases(
    project: &Project,
    cases: &[&Case],
    options: RunOptions,
    progress: &mut dyn FnMut(&str),
) -> Vec<anyhow::Result<CaseReport>> {
    run_cases_reporting(project, cases, options, progress, &mut |_, _| {})
}

/// `run_cases`, telling `finished` about each case (its index and result)
/// as soon as it is decided, so results can be shown and saved as the run
/// goes rather than at its end.
pub fn run_cases_reporting(
    project: &Project,
    cases: &[&Case],
    options: RunOptions,
    progress: &mut dyn FnMut(&str),
    finished: &mut dyn FnMut(usize, &anyhow::Result<CaseReport>),
) -> Vec<anyhow::Result<CaseReport>> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return (0..cases.len())
                .map(|i| {
                    let r = Err(anyhow::anyhow!("{e}"));
                    finished(i, &r);
                    r
                })
                .collect()
        }
    };
    runtime.block_on(run_scenarios(project, cases, options, progress, finished))
}

/// What a case needs before any server starts.
struct Prepared {
    prompts: std::sync::Arc<Vec<workload::Prompt>>,
    tokenizer: Option<Tokenizer>,
    keys: [Option<TargetKey>; 2],
    recorded: Option<TargetReport>,
}

fn prepare(project: &Project, case: &Case) -> anyhow::Result<Prepared> {
    if case.kind == CaseKind::Suite {
        anyhow::bail!(
            "{} is a quality suite: run it through run::suite::run_suites",
            case.name
        );
    }
    let c = &case.config;
    let tokenizer = load_tokenizer(c)?;
    let prompts = load_prompts(project, case, tokenizer.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: {e}", case.name))?;
    let key = |name: &str| {
        let spec = c.targets[name].clone();
        TargetKey {
            name: name.to_string(),
            model: spec.model.clone().unwrap_or_else(|| c.model.clone()),
            spec,
        }
    };
    let (baseline, recorded) = match &c.baseline {
        Baseline::Target(name) => (Some(key(name)), None),
        Baseline::Recorded(r) => (None, Some(recorded_baseline(project, case, r)?)),
    };
    Ok(Prepared {
        prompts: std::sync::Arc::new(prompts),
        tokenizer,
        keys: [Some(key(&c.candidate)), baseline],
        recorded,
    })
}

/// Longest wait for one probe request: the probe asks a dozen tiny
/// questions, and a server that hangs on one should not stall the run.
const PROBE_TIMEOUT_S: f64 = 30.0;

/// The state of one run of scenarios: what each case needs, what each side
/// measured, and what each case concluded.
struct Scenarios<'a> {
    project: &'a Project,
    cases: &'a [&'a Case],
    options: RunOptions,
    prepared: Vec<anyhow::Result<Prepared>>,
    measured: Vec<[Option<TargetReport>; 2]>,
    results: Vec<Option<anyhow::Result<CaseReport>>>,
    pool: Pool,
    started: std::time::Instant,
}

/// A started target as a job uses it.
struct Side {
    /// 0 for the candidate, 1 for the baseline.
    slot: usize,
    name: String,
    url: String,
    model: String,
    log: Option<std::path::PathBuf>,
    client: Client,
    /// The optional request fields it takes, and the probe behind them.
    dialect: Dialect,
    probe: ProbeRecord,
    /// Its `/metrics` is scraped while measured requests run.
    scrape: bool,
    /// The process group of a server servegate started, whose own device
    /// memory is then followed.
    pgid: Option<i32>,
}

async fn run_scenarios(
    project: &Project,
    cases: &[&Case],
    options: RunOptions,
    progress: &mut dyn FnMut(&str),
    finished: &mut dyn FnMut(usize, &anyhow::Result<CaseReport>),
) -> Vec<anyhow::Result<CaseReport>> {
    let prepared: Vec<anyhow::Result<Prepared>> =
        cases.iter().map(|case| prepare(project, case)).collect();
    let needs: Vec<[Option<TargetKey>; 2]> = prepared
        .iter()
        .map(|p| p.as_ref().map(|p| p.keys.clone()).unwrap_or_default())
        .collect();
    let mut run = Scenarios {
        project,
        cases,
        options,
        prepared,
        measured: vec![Default::default(); cases.len()],
        results: cases.iter().map(|_| None).collect(),
        pool: Pool::new(),
        started: std::time::Instant::now(),
    };
    for (i, side) in pool::schedule(&needs) {
        run.job(i, side, progress).await;
        // Each case is decided as soon as both its sides are measured.
        run.finish_ready(finished);
    }
    run.pool.stop_all();
    // Cases whose preparation failed, or never measured, end here.
    run.finish_ready(finished);
    for (j, result) in run.results.iter_mut().enumerate() {
        if result.is_none() {
            let r = Err(anyhow::anyhow!("{}: not measured", cases[j].name));
            finished(j, &r);
            *result = Some(r);
        }
    }
    run.results
        .into_iter()
        .map(|r| r.expect("every case finished"))
        .collect()
}

impl Scenarios<'_> {
    /// Measures side `side` of case `i` (and, when both targets may be up
    /// together, the other side with it).
    async fn job(&mut self, i: usize, side: usize, progress: &mut dyn FnMut(&str)) {
        let Ok(p) = &self.prepared[i] else { return };
        if self.measured[i][side].is_some() {
            return; // measured already, interleaved with the other side
        }
        // When the two targets may be up together, both stay up and are
        // measured back to back (A B, or A B A B … with repeats), so drift of
        // a shared machine between the two measurements stays small and hits
        // both alike. Exclusive targets measure every case on one side first.
        let sides: Vec<usize> = match &p.keys {
            [Some(a), Some(b)] if side == 0 && !a.spec.is_exclusive() && !b.spec.is_exclusive() => {
                vec![0, 1]
            }
            _ => vec![side],
        };
        let targets = match self.acquire(i, &sides, progress).await {
            Ok(t) => t,
            Err(e) => {
                self.prepared[i] = Err(e);
                return;
            }
        };
        let (phases, gpu_memory) = self.measure(i, &targets).await;
        let mut lost = None;
        for ((k, side), phases) in targets.into_iter().enumerate().zip(phases) {
            let own = gpu_memory
                .as_ref()
                .and_then(|w| w.group_peaks.get(k).copied().flatten());
            let devices = gpu_memory.as_ref().map_or(&[][..], |w| &w.devices[..]);
            if let Some(e) = self.keep_side(i, side, phases, devices, own).await {
                lost = Some(e);
            }
        }
        if let Some(e) = lost {
            self.prepared[i] = Err(e);
        }
    }

    /// Starts (or reuses) the targets of case `i` on `sides`.
    async fn acquire(
        &mut self,
        i: usize,
        sides: &[usize],
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Vec<Side>> {
        let case = self.cases[i];
        let env = TargetEnv::new(&self.project.root, &case.config.results_dir);
        let p = self.prepared[i].as_ref().expect("prepared");
        let mut targets = Vec::new();
        for &k in sides {
            let key = p.keys[k].as_ref().expect("scheduled jobs have a target");
            let role = ["candidate", "baseline"][k];
            progress(&format!("{}: {role} `{}`", case.name, key.name));
            let t = self
                .pool
                .acquire(key, &env)
                .await
                .map_err(|e| e.context(role))?;
            let timeout = case.config.workload.request_timeout_s.min(PROBE_TIMEOUT_S);
            let found = t.probe(Duration::from_secs_f64(timeout)).await;
            let (dialect, choices) = crate::probe::dialect(&found);
            let scrape = case.config.server_metrics.scrape
                && found.supports(crate::probe::METRICS) == crate::probe::Support::Yes;
            targets.push(Side {
                slot: k,
                name: t.name.clone(),
                url: t.url.clone(),
                model: t.model.clone(),
                log: t.log.clone(),
                client: t.client.clone(),
                dialect,
                probe: crate::probe::record(&found, choices),
                scrape,
                pgid: t.process_group(),
            });
        }
        Ok(targets)
    }

    /// Every phase of case `i` on `targets`, in turn, with the device
    /// memory watched while they run.
    async fn measure(
        &self,
        i: usize,
        targets: &[Side],
    ) -> (Vec<Vec<(f64, BenchResult)>>, Option<crate::gpu::Watched>) {
        let c = &self.cases[i].config;
        let p = self.prepared[i].as_ref().expect("prepared");
        let repeats = c.repeats.max(1) as usize;
        let mut phases: Vec<Vec<(f64, BenchResult)>> = vec![Vec::new(); targets.len()];
        // Each side's own server, where servegate started it (`-1`, a group
        // no process is in, stands for a side it did not).
        let groups = targets.iter().map(|t| t.pgid.unwrap_or(-1)).collect();
        let monitor = crate::gpu::MemoryMonitor::start(
            Duration::from_millis(100),
            groups,
            crate::server::process::group_of,
        );
        for round in 0..repeats {
            for (slot, side) in targets.iter().enumerate() {
                let role = ["candidate", "baseline"][side.slot];
                let label = if repeats == 1 {
                    role.to_string()
                } else {
                    format!("{role} {}/{repeats}", round + 1)
                };
                let spec = BenchSpec {
                    model: side.model.clone(),
                    workload: c.workload.clone(),
                    prompts: p.prompts.clone(),
                    tokenizer: p.tokenizer.clone(),
                    progress: self.options.progress.then(|| {
                        crate::run::progress::progress_bar(&label, c.workload.num_requests)
                    }),
                    dialect: side.dialect,
                    measuring: side
                        .scrape
                        .then(|| Arc::new(loadgen::PhaseStart::default())),
                };
                let scraper = spec.measuring.clone().map(|measuring| {
                    let mut names = crate::server_metrics::default_names();
                    names.extend(c.server_metrics.names.iter().cloned());
                    let interval = Duration::from_secs_f64(c.server_metrics.interval_s);
                    Scraper::start(side.client.clone(), names, interval, measuring)
                });
                let began = self.started.elapsed().as_secs_f64();
                let mut result = match (&c.workload.sweep, &c.workload.slo) {
                    (Some(sweep), Some(slo)) => {
                        crate::sweep::run(&side.client, &spec, sweep, slo).await
                    }
                    _ => loadgen::run(&side.client, &spec).await,
                };
                if let Some(scraper) = scraper {
                    result.server = Some(scraper.finish().await);
                }
                if let Some(bar) = &spec.progress {
                    bar.finish_and_clear();
                }
                phases[slot].push((began, result));
            }
        }
        (phases, monitor.map(|m| m.finish()))
    }

    /// Folds one side's phases into its report and keeps it; says why the
    /// case is lost when a worker panicked or the target died under it.
    async fn keep_side(
        &mut self,
        i: usize,
        side: Side,
        phases: Vec<(f64, BenchResult)>,
        gpu_memory: &[crate::gpu::MemoryStats],
        own_gpu_peak: Option<u64>,
    ) -> Option<anyhow::Error> {
        let c = &self.cases[i].config;
        let k = side.slot;
        let key = self.prepared[i].as_ref().expect("prepared").keys[k]
            .clone()
            .expect("scheduled jobs have a target");
        let mut report = target_report(
            (side.name, side.url, side.model),
            phases,
            c.workload.slo.as_ref(),
        );
        report.log = side.log;
        report.probe = Some(side.probe);
        if !gpu_memory.is_empty() {
            // The server's own memory where NVML tells it per process; else
            // what the devices held.
            let devices: u64 = gpu_memory.iter().map(|m| m.peak_used_bytes).sum();
            let peak = own_gpu_peak.unwrap_or(devices);
            report.summary.gpu_mem_peak_bytes = Some(peak as f64);
            report.gpu_mem_peak_source = Some(
                if own_gpu_peak.is_some() {
                    "the server's processes (NVML)"
                } else {
                    "every process on the devices"
                }
                .to_string(),
            );
            report.gpu_memory = gpu_memory.to_vec();
        }
        let mut lost = None;
        // A panic inside servegate is a bug of ours, never a verdict on
        // the server: the case fails with the message.
        if let Some(panic) = report
            .records
            .iter()
            .find(|r| r.error_kind == Some(crate::metrics::ErrorKind::Panic))
        {
            lost = Some(anyhow::anyhow!(
                "{}",
                panic.error.clone().unwrap_or_default()
            ));
        }
        let failed: usize = report.errors.values().sum();
        let settle = Duration::from_millis(if failed > 0 { 500 } else { 0 });
        if let Some(how) = self.pool.take_exited(&key, settle).await {
            let role = ["candidate", "baseline"][k];
            lost = Some(anyhow::anyhow!(
                "{role} target `{}` {how}\n{failed} of {} measured requests lost",
                key.name,
                c.workload.num_requests as usize * c.repeats.max(1) as usize,
            ));
        }
        self.measured[i][k] = Some(report);
        lost
    }

    /// Decides every case that can be decided now.
    fn finish_ready(&mut self, finished: &mut dyn FnMut(usize, &anyhow::Result<CaseReport>)) {
        for i in 0..self.cases.len() {
            self.try_finish(i, finished);
        }
    }

    /// Decides case `i` when it can be: its preparation or a target failed,
    /// or both sides are measured (or recorded). Tells `finished` once.
    fn try_finish(
        &mut self,
        i: usize,
        finished: &mut dyn FnMut(usize, &anyhow::Result<CaseReport>),
    ) {
        if self.results[i].is_some() {
            return;
        }
        let measured = &self.measured[i];
        let ready = match &self.prepared[i] {
            Err(_) => true,
            Ok(p) => measured[0].is_some() && (measured[1].is_some() || p.recorded.is_some()),
        };
        if !ready {
            return;
        }
        let finished_marker = Err(anyhow::anyhow!("finished"));
        let outcome = match std::mem::replace(&mut self.prepared[i], finished_marker) {
            Err(e) => Err(e),
            Ok(p) => {
                let [candidate, baseline] = std::mem::take(&mut self.measured[i]);
                Ok(conclude(
                    self.cases[i],
                    self.options,
                    candidate.expect("candidate measured"),
                    baseline
                        .or(p.recorded)
                        .expect("baseline measured or recorded"),
                ))
            }
        };
        finished(i, &outcome);
        self.results[i] = Some(outcome);
    }
}

/// A case's report from both sides' measurements: the gate applied.
fn conclude(
    case: &Case,
    options: RunOptions,
    candidate: TargetReport,
    baseline: TargetReport,
) -> CaseReport {
    let c = &case.config;
    let slo = c.workload.slo.as_ref();
    let (cr, br) = (candidate.record_runs(), baseline.record_runs());
    let rows = gate::evaluate_samples(
        &c.gate.limits,
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
    let roofline = roofline(c, &candidate.summary);
    let keep = |mut t: TargetReport| {
        if !options.keep_records {
            t.records = Vec::new();
        }
        t
    };
    CaseReport {
        roofline,
        name: case.name.clone(),
        file: case.file.clone(),
        description: c.description.clone(),
        workload: c.workload.clone(),
        config: Some(c.clone()),
        passed: gate::all_pass(&rows),
        candidate: keep(candidate),
        baseline: keep(baseline),
        gate: rows,
    }
}

/// Folds a target's measured phases into its report.
fn target_report(
    (name, url, model): (String, String, String),
    phases: Vec<(f64, BenchResult)>,
    slo: Option<&config::Slo>,
) -> TargetReport {
    let (offsets, mut phases): (Vec<f64>, Vec<BenchResult>) = phases.into_iter().unzip();
    let series: Vec<ServerSeries> = phases.iter_mut().filter_map(|p| p.server.take()).collect();
    let sweep: Vec<crate::metrics::SweepPoint> = phases
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.sweep))
        .collect();
    let steady_windows: Vec<crate::steady::Window> =
        phases.iter().filter_map(|p| p.steady).collect();
    // Over repeats, the sweep's figure is the phases' mean.
    let max_rates: Vec<f64> = phases
        .iter()
        .filter_map(|p| p.summary.max_rate_within_slo)
        .collect();
    for (phase, s) in phases.iter_mut().zip(&series) {
        phase.summary.server = crate::server_metrics::summarise(&[s]);
    }
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
        _ => Summary {
            // The latest the client ran in any phase.
            client_lag: phases
                .iter()
                .filter_map(|p| p.summary.client_lag)
                .max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms)),
            ..Summary::from_runs(&runs, slo)
        },
    };
    let mut summary = summary;
    summary.server = crate::server_metrics::summarise(&series.iter().collect::<Vec<_>>());
    summary.max_rate_within_slo =
        (!max_rates.is_empty()).then(|| max_rates.iter().sum::<f64>() / max_rates.len() as f64);
    let repeated = phases.len() > 1;
    TargetReport {
        target: name,
        url,
        model,
        summary,
        runs: if repeated {
            phases.iter().map(|p| p.summary.clone()).collect()
        } else {
            Vec::new()
        },
        run_offsets_s: if repeated { offsets } else { Vec::new() },
        errors,
        records: phases.into_iter().flat_map(|p| p.records).collect(),
        log: None,
        recorded_from: None,
        gpu_memory: Vec::new(),
        gpu_mem_peak_source: None,
        probe: None,
        server_metrics: series,
        sweep,
        steady_windows,
    }
}

/// The decode roofline of the first GPU, when the weights' size is known.
fn roofline(c: &config::CaseConfig, candidate: &Summary) -> Option<crate::gpu::Roofline> {
    let probe = crate::gpu::probe();
    let device = probe.devices().first()?;
    let weights = match (c.model_weights_bytes, &c.model_dir) {
        (Some(bytes), _) => bytes,
        (None, Some(dir)) => crate::gpu::safetensors_weight_bytes(dir).ok()?,
        (None, None) => return None,
    };
    Some(crate::gpu::Roofline::new(
        device,
        weights,
        candidate.tpot_ms.p50,
    ))
}

/// The baseline side of a case read from an earlier run: the case of the
/// same name in a `RunResults` file, or a single `CaseReport` file. The
/// recorded workload must match the case's. Errors point at `baseline`.
fn recorded_baseline(
    project: &Project,
    case: &Case,
    recorded: &RecordedBaseline,
) -> Result<TargetReport, config::ConfigError> {
    read_recorded(&recorded.results, case, recorded.role).map_err(|message| {
        // The key is written in the case file or in servegate.toml.
        let key = ["baseline".to_string(), "results".to_string()];
        let (origin, line) = [case.file.clone(), project.project_file()]
            .into_iter()
            .find_map(|file| {
                let line = config::key_line(&std::fs::read_to_string(&file).ok()?, &key)?;
                Some((file, Some(line)))
            })
            .unwrap_or((case.file.clone(), None));
        config::ConfigError {
            origin: config::Origin::File(origin),
            line,
            key: Some("baseline.results".into()),
            message: format!("{}: {message}", case.name),
        }
    })
}

fn read_recorded(path: &Path, case: &Case, role: RecordedRole) -> Result<TargetReport, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let is_case =
        |c: &serde_json::Value| c.get("name").and_then(|n| n.as_str()) == Some(&case.name);
    let saved = match value.get("cases").and_then(|c| c.as_array()) {
        Some(cases) => cases.iter().find(|c| is_case(c)).cloned(),
        None => is_case(&value).then_some(value),
    }
    .ok_or_else(|| {
        format!(
            "{} has no measured case named `{}`",
            path.display(),
            case.name
        )
    })?;
    let now = serde_json::to_value(&case.config.workload).map_err(|e| e.to_string())?;
    if let (Some(now), Some(then)) = (
        now.as_object(),
        saved.get("workload").and_then(|w| w.as_object()),
    ) {
        let differ: Vec<String> = now
            .iter()
            .filter_map(|(k, v)| {
                let old = then.get(k)?;
                (old != v).then(|| format!("workload.{k} = {v} (recorded: {old})"))
            })
            .collect();
        if !differ.is_empty() {
            return Err(format!(
                "the case recorded in {} ran another workload: {}",
                path.display(),
                differ.join(", ")
            ));
        }
    }
    let side = match role {
        RecordedRole::Candidate => "candidate",
        RecordedRole::Baseline => "baseline",
    };
    let mut report: TargetReport = serde_json::from_value(saved[side].clone())
        .map_err(|e| format!("{side} of the case in {}: {e}", path.display()))?;
    report.recorded_from = Some(path.to_path_buf());
    Ok(report)
}

/// Checks what a case needs from disk (its prompt set) without running it.
pub fn check_case(project: &Project, case: &Case) -> Result<(), config::ConfigError> {
    if case.kind != CaseKind::Scenario {
        return Ok(());
    }
    let c = &case.config;
    let tokenizer = load_tokenizer(c)
        .map_err(|e| located(project, case, &["tokenizer"], "tokenizer", format!("{e:#}")))?;
    let w = &c.workload;
    let checked = match &w.prompts {
        // Made when the case runs (a long prompt takes a while to make
        // exact); the tokenizer they need is checked with the configuration.
        config::PromptSource::Trace { trace } => {
            workload::check_trace(&project.root, trace, (w.warmup + w.num_requests) as usize)
        }
        generated if generated.is_generated() => Ok(()),
        _ => load_prompts(project, case, tokenizer.as_ref()).map(drop),
    };
    checked.map_err(|message| {
        located(
            project,
            case,
            &["matrix.prompts", "workload.prompts"],
            "workload.prompts",
            format!("{} ({message})", case.name),
        )
    })?;
    if let Baseline::Recorded(r) = &c.baseline {
        recorded_baseline(project, case, r)?;
    }
    Ok(())
}

/// An error about `key`, pointing at the first of `written` (dotted keys)
/// found in the case file, else in `servegate.toml` (the case file wins
/// over the project's), else at the case file without a line.
fn located(
    project: &Project,
    case: &Case,
    written: &[&str],
    key: &str,
    message: String,
) -> config::ConfigError {
    let (origin, line) = [case.file.clone(), project.project_file()]
        .into_iter()
        .find_map(|file| {
            let src = std::fs::read_to_string(&file).ok()?;
            let line = written.iter().find_map(|k| {
                let path: Vec<String> = k.split('.').map(str::to_string).collect();
                config::written_key_line(&src, &path)
            })?;
            Some((file, Some(line)))
        })
        .unwrap_or((case.file.clone(), None));
    config::ConfigError {
        origin: config::Origin::File(origin),
        line,
        key: Some(key.to_string()),
        message,
    }
}
