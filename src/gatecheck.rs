//! `servegate gate-check`: how often the gate of a case is wrong.
//!
//! Three embedded engines are started with the case's baseline engine
//! settings: the baseline B, an identical candidate A, and a candidate S
//! slowed by `slowdown`. Each trial measures B, A and S once each with the
//! case's workload (warm-up included), then applies the case's gate to A
//! against B (an A/A comparison: any failing gate is a false failure) and to
//! S against B (any failing gate is a detection). Trials of several cases
//! take turns. A trial is exactly what a case run does, minus starting the
//! servers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Client;
use crate::config::{Limit, SimSpec};
use crate::discover::{Case, Project};
use crate::gate::{self, GateRow, Verdict};
use crate::loadgen::{self, BenchSpec};
use crate::metrics::{MetricKey, RequestRecord};
use crate::sim::SimServer;
use crate::stats::{lower_bound_95, trials_to_bound, upper_bound_95};

#[derive(Debug, Clone)]
pub struct GateCheckOptions {
    /// A/A trials, and as many slowed trials.
    pub trials: u32,
    /// How much slower the slowed candidate is (1.1: every time × 1.1).
    pub slowdown: f64,
}

impl Default for GateCheckOptions {
    fn default() -> Self {
        Self {
            trials: 100,
            slowdown: 1.1,
        }
    }
}

/// Counts for one kind of comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub trials: u32,
    /// Trials where at least one gate failed.
    pub failed: u32,
    /// Trials with no failed gate but at least one inconclusive one.
    pub inconclusive: u32,
    /// Trials that would have failed had the measured ratio decided every
    /// ratio limit (the gate without `confidence`), for comparison.
    pub failed_by_point: u32,
    /// Per gate metric: failures, inconclusives, and the sum of measured ratios.
    pub per_metric: BTreeMap<String, MetricTally>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricTally {
    pub failed: u32,
    pub inconclusive: u32,
    pub ratio_sum: f64,
    /// Smallest and largest measured ratio.
    pub ratio_min: f64,
    pub ratio_max: f64,
}

impl Tally {
    fn add(&mut self, rows: &[GateRow], gate_config: &BTreeMap<MetricKey, Limit>) {
        self.trials += 1;
        let point_fails = rows.iter().any(|r| {
            let limit = gate_config.get(r.metric.as_str()).map(|l| Limit {
                confidence: None,
                ..*l
            });
            limit.is_some_and(|l| gate::verdict(&l, r.candidate, r.ratio, None) == Verdict::Fail)
        });
        if point_fails {
            self.failed_by_point += 1;
        }
        let worst = rows
            .iter()
            .map(|r| r.verdict)
            .max()
            .unwrap_or(Verdict::Pass);
        match worst {
            Verdict::Fail => self.failed += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
            Verdict::Pass => {}
        }
        for r in rows {
            let m = self
                .per_metric
                .entry(r.metric.clone())
                .or_insert(MetricTally {
                    ratio_min: f64::INFINITY,
                    ratio_max: f64::NEG_INFINITY,
                    ..Default::default()
                });
            match r.verdict {
                Verdict::Fail => m.failed += 1,
                Verdict::Inconclusive => m.inconclusive += 1,
                Verdict::Pass => {}
            }
            m.ratio_sum += r.ratio;
            m.ratio_min = m.ratio_min.min(r.ratio);
            m.ratio_max = m.ratio_max.max(r.ratio);
        }
    }

    pub fn failure_rate(&self) -> f64 {
        if self.trials == 0 {
            0.0
        } else {
            self.failed as f64 / self.trials as f64
        }
    }
}

/// The outcome of a gate check.
#[derive(Debug, Clone, Serialize)]
pub struct GateCheckReport {
    pub cases: Vec<String>,
    pub slowdown: f64,
    /// A/A: failures are false failures.
    pub same: Tally,
    /// Slowed candidate: failures are detections.
    pub slowed: Tally,
    /// The gate of the first case, as written.
    pub limits: BTreeMap<String, String>,
    pub elapsed_s: f64,
}

/// The targets a gate must meet: under 1% false failures, over 95% detections.
pub const MAX_FALSE_FAILURES: f64 = 0.01;
pub const MIN_DETECTIONS: f64 = 0.95;

/// What the trials show about the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetsShown {
    /// Both 95% bounds are within the targets.
    Met,
    /// The rates seen are within the targets, but too few trials were run
    /// for the bounds to show it (100 A/A trials bound false failures below
    /// 3% at best; under 1% needs at least 299).
    TooFewTrials,
    /// A rate seen misses its target.
    NotMet,
}

impl GateCheckReport {
    /// Whether the trials show the targets met: decided on the one-sided 95%
    /// bounds of both rates, never on the rates seen alone.
    pub fn targets(&self) -> TargetsShown {
        let false_bound = upper_bound_95(self.same.failed, self.same.trials);
        let detect_bound = lower_bound_95(self.slowed.failed, self.slowed.trials);
        if false_bound < MAX_FALSE_FAILURES && detect_bound > MIN_DETECTIONS {
            TargetsShown::Met
        } else if self.same.trials > 0
            && self.slowed.trials > 0
            && self.same.failure_rate() < MAX_FALSE_FAILURES
            && self.slowed.failure_rate() > MIN_DETECTIONS
        {
            TargetsShown::TooFewTrials
        } else {
            TargetsShown::NotMet
        }
    }

    pub fn meets_targets(&self) -> bool {
        self.targets() == TargetsShown::Met
    }
}

/// The engine settings a case's gate is checked with: its baseline's, when
/// that is an embedded engine, else the embedded engine's defaults.
fn engine_of(case: &Case) -> SimSpec {
    let c = &case.config;
    c.baseline
        .target()
        .and_then(|name| c.targets.get(name))
        .and_then(|t| t.sim.clone())
        .unwrap_or_default()
}

struct Engines {
    _servers: Vec<SimServer>,
    clients: [Client; 3],
}

fn start_engines(case: &Case, slowdown: f64) -> anyhow::Result<Engines> {
    let base = engine_of(case);
    let slow = SimSpec {
        slowdown: Some(base.slowdown.unwrap_or(1.0) * slowdown),
        ..base.clone()
    };
    let model = &case.config.model;
    let servers = vec![
        SimServer::start_local(&base, model)?,
        SimServer::start_local(&base, model)?,
        SimServer::start_local(&slow, model)?,
    ];
    let client = |s: &SimServer| Client::new(&s.url(), None);
    let clients = [
        client(&servers[0])?,
        client(&servers[1])?,
        client(&servers[2])?,
    ];
    Ok(Engines {
        _servers: servers,
        clients,
    })
}

fn evaluate(case: &Case, candidate: &[RequestRecord], baseline: &[RequestRecord]) -> Vec<GateRow> {
    let slo = case.config.workload.slo.as_ref();
    let (c, b) = (
        crate::metrics::Summary::from_records(candidate, slo),
        crate::metrics::Summary::from_records(baseline, slo),
    );
    let (cr, br): (Vec<&[RequestRecord]>, Vec<&[RequestRecord]>) =
        (vec![candidate], vec![baseline]);
    gate::evaluate_samples(
        &case.config.gate.limits,
        &gate::Sample {
            summary: &c,
            runs: &cr,
            slo,
        },
        &gate::Sample {
            summary: &b,
            runs: &br,
            slo,
        },
        &gate::bootstrap::Options::default(),
    )
}

/// Runs the check over `cases` (trials take turns among them). `progress`
/// is called after each trial with (done, total).
pub fn run(
    project: &Project,
    cases: &[Case],
    options: &GateCheckOptions,
    mut progress: impl FnMut(u32, u32),
) -> anyhow::Result<GateCheckReport> {
    anyhow::ensure!(!cases.is_empty(), "no case to check");
    anyhow::ensure!(
        options.slowdown.is_finite() && options.slowdown > 0.0,
        "slowdown must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut prepared = Vec::new();
    for case in cases {
        let c = &case.config;
        let tokenizer = crate::run::scenario::load_tokenizer(c)?;
        let prompts = crate::run::scenario::load_prompts(project, case, tokenizer.as_ref())
            .map_err(|e| anyhow::anyhow!("{}: {e}", case.name))?;
        let spec = BenchSpec {
            model: c.model.clone(),
            workload: c.workload.clone(),
            prompts: Arc::new(prompts),
            tokenizer,
            progress: None,
            dialect: Default::default(),
            measuring: None,
        };
        let engines = start_engines(case, options.slowdown)?;
        runtime.block_on(async {
            for client in &engines.clients {
                client
                    .wait_ready("/v1/models", Duration::from_secs(10))
                    .await
                    .map_err(anyhow::Error::msg)?;
            }
            anyhow::Ok(())
        })?;
        prepared.push((case, spec, engines));
    }
    let mut same = Tally::default();
    let mut slowed = Tally::default();
    for trial in 0..options.trials {
        let (case, spec, engines) = &prepared[trial as usize % prepared.len()];
        let [b, a, s] = runtime.block_on(async {
            let mut out: [Vec<RequestRecord>; 3] = Default::default();
            for (k, client) in engines.clients.iter().enumerate() {
                out[k] = loadgen::run(client, spec).await.records;
            }
            out
        });
        same.add(&evaluate(case, &a, &b), &case.config.gate.limits);
        slowed.add(&evaluate(case, &s, &b), &case.config.gate.limits);
        progress(trial + 1, options.trials);
    }
    let limits = cases[0]
        .config
        .gate
        .iter()
        .map(|(name, limit)| {
            let mut text = gate::limit_text(limit);
            if let Some(level) = limit.confidence {
                text.push_str(&format!(" @ {:.0}%", level * 100.0));
            }
            (name.to_string(), text)
        })
        .collect();
    Ok(GateCheckReport {
        cases: cases.iter().map(|c| c.name.clone()).collect(),
        slowdown: options.slowdown,
        same,
        slowed,
        limits,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The figures as a table.
pub fn table(report: &GateCheckReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "gate-check: {} ({} trials each way, slowed candidate × {} = {} throughput, {:.0} s)\n",
        report.cases.join(", "),
        report.same.trials,
        report.slowdown,
        pct(1.0 / report.slowdown - 1.0),
        report.elapsed_s
    ));
    out.push_str(&rates_table(report));
    out.push('\n');
    out.push_str(&per_gate_table(report));
    out.push_str(&format!(
        "\ntargets (< 1% false failures, > 95% detections): {}\n",
        targets_text(report)
    ));
    out
}

/// A fraction as a percentage with one decimal.
fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// How often each comparison failed, with the 95% bound that counts
/// against its target: an upper bound on false failures, a lower bound on
/// detections.
fn rates_table(report: &GateCheckReport) -> String {
    let mut t = crate::report::console::table(&[
        "comparison",
        "trials",
        "failed",
        "inconclusive",
        "rate",
        "95% bound",
        "failed by measured ratio alone",
    ]);
    let same = &report.same;
    let slowed = &report.slowed;
    t.add_row(vec![
        "A/A: false failures".to_string(),
        same.trials.to_string(),
        same.failed.to_string(),
        same.inconclusive.to_string(),
        pct(same.failure_rate()),
        format!("< {}", pct(upper_bound_95(same.failed, same.trials))),
        same.failed_by_point.to_string(),
    ]);
    t.add_row(vec![
        "slowed: detections".to_string(),
        slowed.trials.to_string(),
        slowed.failed.to_string(),
        slowed.inconclusive.to_string(),
        pct(slowed.failure_rate()),
        format!("> {}", pct(lower_bound_95(slowed.failed, slowed.trials))),
        slowed.failed_by_point.to_string(),
    ]);
    t.to_string()
}

/// Each gate metric side by side in both comparisons: which gate fails or
/// hesitates, and the ratios it saw.
fn per_gate_table(report: &GateCheckReport) -> String {
    let mut t = crate::report::console::table(&[
        "gate",
        "limit",
        "A/A fail",
        "A/A inconcl.",
        "A/A ratio (min–max)",
        "slowed fail",
        "slowed inconcl.",
        "slowed ratio (min–max)",
    ]);
    let (same, slowed) = (&report.same, &report.slowed);
    for (metric, a) in &same.per_metric {
        let s = slowed.per_metric.get(metric).cloned().unwrap_or_default();
        t.add_row(vec![
            metric.clone(),
            report.limits.get(metric).cloned().unwrap_or_default(),
            a.failed.to_string(),
            a.inconclusive.to_string(),
            ratio_range(a, same.trials),
            s.failed.to_string(),
            s.inconclusive.to_string(),
            ratio_range(&s, slowed.trials),
        ]);
    }
    t.to_string()
}

/// The mean measured ratio over `trials`, and its smallest and largest.
fn ratio_range(m: &MetricTally, trials: u32) -> String {
    if trials == 0 {
        "n/a".to_string()
    } else {
        format!(
            "{:.3} ({:.3}–{:.3})",
            m.ratio_sum / trials as f64,
            m.ratio_min,
            m.ratio_max
        )
    }
}

/// Whether the targets were shown met, and when the rates look fine but
/// the bounds do not yet, how many trials it would take.
fn targets_text(report: &GateCheckReport) -> String {
    match report.targets() {
        TargetsShown::Met => "met (both 95% bounds within them)".to_string(),
        TargetsShown::TooFewTrials => format!(
            "not shown: the rates seen are within them, but the 95% bounds are not \
             (false failures < {}, detections > {}); with no false failure, \
             bounding false failures under 1% takes at least {} A/A trials",
            pct(upper_bound_95(report.same.failed, report.same.trials)),
            pct(lower_bound_95(report.slowed.failed, report.slowed.trials)),
            trials_to_bound(MAX_FALSE_FAILURES)
        ),
        TargetsShown::NotMet => "NOT met".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(same: (u32, u32), slowed: (u32, u32)) -> GateCheckReport {
        let tally = |(failed, trials)| Tally {
            trials,
            failed,
            ..Default::default()
        };
        GateCheckReport {
            cases: vec!["c".into()],
            slowdown: 1.1,
            same: tally(same),
            slowed: tally(slowed),
            limits: BTreeMap::new(),
            elapsed_s: 0.0,
        }
    }

    /// Perfect rates from 3 trials prove nothing: the bounds decide.
    #[test]
    fn targets_are_met_only_when_the_bounds_show_it() {
        assert_eq!(report((0, 3), (3, 3)).targets(), TargetsShown::TooFewTrials);
        assert_eq!(
            report((0, 100), (100, 100)).targets(),
            TargetsShown::TooFewTrials
        );
        assert!(!report((0, 100), (100, 100)).meets_targets());
        assert_eq!(report((0, 300), (300, 300)).targets(), TargetsShown::Met);
        // One false failure in 300: the rate seen is within 1%, its bound is not.
        assert_eq!(
            report((1, 300), (300, 300)).targets(),
            TargetsShown::TooFewTrials
        );
        assert_eq!(report((5, 300), (300, 300)).targets(), TargetsShown::NotMet);
        assert_eq!(report((0, 300), (280, 300)).targets(), TargetsShown::NotMet);
        assert_eq!(report((0, 0), (0, 0)).targets(), TargetsShown::NotMet);
        let text = table(&report((0, 3), (3, 3)));
        assert!(text.contains("not shown"), "{text}");
        assert!(!text.contains(": met"), "{text}");
    }
}
