//! Bootstrap confidence intervals of candidate/baseline ratios. Pure and
//! seeded: the same records always give the same interval.
//!
//! One replicate of a target's metric resamples its measured phases with
//! replacement (when there are several, `repeats`), then, within each chosen
//! phase, its requests with replacement, and recomputes the metric the way
//! `Summary` does:
//! - distribution metrics (`ttft_p50`, `itl_p95`, `throughput_mean`, …) pool
//!   the values of the chosen requests and take the statistic;
//! - `error_rate` is the failed fraction of the chosen requests;
//! - rates (`throughput_total`, `total_token_throughput`,
//!   `request_throughput`, `goodput`) are a phase's work over its wall time,
//!   and wall time cannot be resampled request by request, so a phase's
//!   replicate is its measured rate scaled by how the chosen requests' work
//!   per second of request time (Σ work / Σ (end − start)) compares with all
//!   of its requests'; phases combine weighted by their durations.
//!
//! A ratio replicate divides independent candidate and baseline replicates;
//! the interval at level `c` is the (1 − c)/2 and (1 + c)/2 percentiles of
//! the ratio replicates (the percentile bootstrap).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Slo;
use crate::metrics::{MetricName, RequestRecord, Series, Summary};
use crate::stats::{percentile_interval, Stat};

/// Resampling settings; the defaults are what gates use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Replicates per interval.
    pub resamples: usize,
    /// Base seed; each metric derives its own stream from it and its name.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            resamples: 2000,
            seed: 0x5e_7e_6a_7e,
        }
    }
}

/// How a metric is computed from requests.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Dist(Series, Stat),
    Rate,
    ErrorRate,
}

/// One measured phase, reduced to what the metric needs from each request.
#[derive(Debug, Clone)]
struct Phase {
    /// Distribution metrics: each request's values.
    values: Vec<Vec<f64>>,
    /// Rates: each request's work (tokens, requests, good requests) and time.
    work: Vec<f64>,
    busy: Vec<f64>,
    /// Error rate: 1 for a failed request.
    failed: Vec<f64>,
    /// The phase's measured rate and wall time.
    rate: f64,
    duration: f64,
    /// Σ work / Σ busy over all requests of the phase.
    efficiency: f64,
    len: usize,
}

/// A target's measured phases, prepared for one metric.
#[derive(Debug, Clone)]
pub struct Prepared {
    kind: Kind,
    phases: Vec<Phase>,
}

fn kind_of(metric: MetricName) -> Kind {
    match metric {
        MetricName::Dist(series, stat) => Kind::Dist(series, stat),
        MetricName::ErrorRate => Kind::ErrorRate,
        MetricName::ThroughputTotal
        | MetricName::TotalTokenThroughput
        | MetricName::RequestThroughput
        | MetricName::Goodput => Kind::Rate,
        // Not a per-request quantity; `evaluate_samples` never resamples it.
        MetricName::GpuMemPeak | MetricName::Server(_) | MetricName::MaxRateWithinSlo => {
            Kind::ErrorRate
        }
    }
}

fn work_of(metric: MetricName, r: &RequestRecord, slo: Option<&Slo>) -> f64 {
    if !r.ok() {
        return 0.0;
    }
    match metric {
        MetricName::ThroughputTotal => r.output_tokens as f64,
        MetricName::TotalTokenThroughput => {
            r.output_tokens.saturating_add(r.input_tokens.unwrap_or(0)) as f64
        }
        MetricName::RequestThroughput => 1.0,
        MetricName::Goodput => match slo {
            Some(slo) if r.meets(slo) => 1.0,
            _ => 0.0,
        },
        _ => 0.0,
    }
}

impl Prepared {
    /// Prepares `runs` (one slice of records per measured phase) for `metric`.
    pub fn new(metric: MetricName, runs: &[&[RequestRecord]], slo: Option<&Slo>) -> Self {
        let kind = kind_of(metric);
        let phases = runs
            .iter()
            .filter(|records| !records.is_empty())
            .map(|records| {
                let summary = Summary::from_records(records, slo);
                let mut phase = Phase {
                    values: Vec::new(),
                    work: Vec::new(),
                    busy: Vec::new(),
                    failed: Vec::new(),
                    rate: 0.0,
                    duration: summary.duration_s,
                    efficiency: 0.0,
                    len: records.len(),
                };
                match kind {
                    Kind::Dist(series, _) => {
                        phase.values = records
                            .iter()
                            .map(|r| {
                                let mut v = Vec::new();
                                series.per_request(r, &mut v);
                                v
                            })
                            .collect();
                    }
                    Kind::ErrorRate => {
                        phase.failed = records
                            .iter()
                            .map(|r| if r.ok() { 0.0 } else { 1.0 })
                            .collect();
                    }
                    Kind::Rate => {
                        phase.rate = summary.metric(metric);
                        phase.work = records.iter().map(|r| work_of(metric, r, slo)).collect();
                        phase.busy = records
                            .iter()
                            .map(|r| (r.end_s - r.start_s).max(0.0))
                            .collect();
                        phase.efficiency =
                            efficiency(phase.work.iter().sum(), phase.busy.iter().sum());
                    }
                }
                phase
            })
            .collect();
        Self { kind, phases }
    }

    /// Whether there is anything to resample.
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }

    /// The metric on the data as measured (no resampling); equals
    /// `Summary::from_runs(..).metric(..)`.
    pub fn observed(&self) -> f64 {
        let identity: Vec<(usize, Vec<usize>)> = self
            .phases
            .iter()
            .enumerate()
            .map(|(k, p)| (k, (0..p.len).collect()))
            .collect();
        self.compute(&identity, &mut Vec::new())
    }

    /// One bootstrap replicate.
    pub fn replicate(&self, rng: &mut StdRng, scratch: &mut Vec<f64>) -> f64 {
        let n = self.phases.len();
        let chosen: Vec<(usize, Vec<usize>)> = (0..n)
            .map(|_| {
                let k = if n == 1 { 0 } else { rng.random_range(0..n) };
                let len = self.phases[k].len;
                (k, (0..len).map(|_| rng.random_range(0..len)).collect())
            })
            .collect();
        self.compute(&chosen, scratch)
    }

    fn compute(&self, chosen: &[(usize, Vec<usize>)], scratch: &mut Vec<f64>) -> f64 {
        match self.kind {
            Kind::Dist(_, stat) => {
                scratch.clear();
                for (k, idx) in chosen {
                    for &i in idx {
                        scratch.extend_from_slice(&self.phases[*k].values[i]);
                    }
                }
                statistic(scratch, stat)
            }
            Kind::ErrorRate => {
                let (mut failed, mut total) = (0.0, 0usize);
                for (k, idx) in chosen {
                    failed += idx.iter().map(|&i| self.phases[*k].failed[i]).sum::<f64>();
                    total += idx.len();
                }
                if total == 0 {
                    0.0
                } else {
                    failed / total as f64
                }
            }
            Kind::Rate => {
                let (mut weighted, mut duration) = (0.0, 0.0);
                for (k, idx) in chosen {
                    let p = &self.phases[*k];
                    let work: f64 = idx.iter().map(|&i| p.work[i]).sum();
                    let busy: f64 = idx.iter().map(|&i| p.busy[i]).sum();
                    let scale = if p.efficiency > 0.0 && busy > 0.0 {
                        efficiency(work, busy) / p.efficiency
                    } else {
                        1.0
                    };
                    weighted += p.rate * scale * p.duration;
                    duration += p.duration;
                }
                if duration > 0.0 {
                    weighted / duration
                } else if chosen.len() == 1 {
                    // A phase of zero duration: its rate (0) as measured.
                    self.phases[chosen[0].0].rate
                } else {
                    0.0
                }
            }
        }
    }
}

fn efficiency(work: f64, busy: f64) -> f64 {
    if busy > 0.0 {
        work / busy
    } else {
        0.0
    }
}

/// The statistic of unsorted values, as `Distribution::of` computes it; NaN
/// for no values. Reorders `values`.
fn statistic(values: &mut [f64], stat: Stat) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let q = match stat {
        Stat::Mean => return mean,
        Stat::Stddev => {
            return (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
        }
        Stat::P50 => 50.0,
        Stat::P90 => 90.0,
        Stat::P95 => 95.0,
        Stat::P99 => 99.0,
    };
    if n == 1 {
        return values[0];
    }
    let rank = q / 100.0 * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let (_, &mut at_lo, rest) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let at_hi = if lo + 1 < n {
        rest.iter().copied().fold(f64::INFINITY, f64::min)
    } else {
        at_lo
    };
    at_lo + (at_hi - at_lo) * (rank - lo as f64)
}

/// A stable 64-bit hash (FNV-1a), so a metric's stream never depends on the
/// standard library's hasher.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sorted finite ratio replicates of `candidate` over `baseline`, or `None`
/// when either side has no records or most replicates are undefined.
pub fn ratio_replicates(
    metric_name: &str,
    candidate: &Prepared,
    baseline: &Prepared,
    options: &Options,
) -> Option<Vec<f64>> {
    if candidate.is_empty() || baseline.is_empty() || options.resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(options.seed ^ fnv1a(metric_name));
    let mut scratch = Vec::new();
    let mut out: Vec<f64> = (0..options.resamples)
        .map(|_| {
            let c = candidate.replicate(&mut rng, &mut scratch);
            let b = baseline.replicate(&mut rng, &mut scratch);
            super::ratio(c, b)
        })
        .filter(|r| r.is_finite())
        .collect();
    if out.len() * 2 < options.resamples {
        return None;
    }
    out.sort_by(f64::total_cmp);
    Some(out)
}

/// The bootstrap interval of the candidate/baseline ratio of `metric` at
/// `level`, or `None` when there are no records to resample.
pub fn ratio_interval(
    metric: MetricName,
    metric_name: &str,
    candidate: (&[&[RequestRecord]], Option<&Slo>),
    baseline: (&[&[RequestRecord]], Option<&Slo>),
    level: f64,
    options: &Options,
) -> Option<(f64, f64)> {
    let c = Prepared::new(metric, candidate.0, candidate.1);
    let b = Prepared::new(metric, baseline.0, baseline.1);
    let replicates = ratio_replicates(metric_name, &c, &b, options)?;
    Some(percentile_interval(&replicates, level))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::TokenSource;
    use crate::stats::Distribution;
    use rand_distr::{Distribution as _, Normal};

    /// A closed-loop phase at concurrency 1 whose requests take `e2e` seconds each.
    fn phase(e2es: &[f64], ttfts: &[f64], tokens: u64) -> Vec<RequestRecord> {
        let mut t = 0.0;
        e2es.iter()
            .zip(ttfts)
            .map(|(&e2e, &ttft)| {
                let step = (e2e - ttft) / (tokens - 1) as f64;
                let events: Vec<f64> = (0..tokens).map(|k| ttft + step * k as f64).collect();
                let r = RequestRecord {
                    start_s: t,
                    end_s: t + e2e,
                    event_times_s: events,
                    event_tokens: Vec::new(),
                    output_tokens: tokens,
                    token_source: TokenSource::Usage,
                    input_tokens: Some(8),
                    queue_s: 0.0,
                    error: None,
                    error_kind: None,
                    turn: None,
                };
                t += e2e;
                r
            })
            .collect()
    }

    /// `n` requests whose times are `scale` × (1 ± noise).
    fn noisy_phase(n: usize, scale: f64, noise: f64, seed: u64) -> Vec<RequestRecord> {
        let mut rng = StdRng::seed_from_u64(seed);
        let normal = Normal::new(1.0, noise).unwrap();
        let e2e: Vec<f64> = (0..n)
            .map(|_| 0.15 * scale * normal.sample(&mut rng).max(0.5))
            .collect();
        let ttft: Vec<f64> = (0..n)
            .map(|_| 0.02 * scale * normal.sample(&mut rng).max(0.5))
            .collect();
        phase(&e2e, &ttft, 16)
    }

    fn interval(metric: &str, c: &[&[RequestRecord]], b: &[&[RequestRecord]]) -> (f64, f64) {
        ratio_interval(
            MetricName::parse(metric).unwrap(),
            metric,
            (c, None),
            (b, None),
            0.95,
            &Options::default(),
        )
        .unwrap()
    }

    #[test]
    fn statistic_matches_distribution() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1usize, 2, 3, 10, 57] {
            let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 100.0).collect();
            let d = Distribution::of(v.iter().copied());
            for stat in [
                Stat::P50,
                Stat::P90,
                Stat::P95,
                Stat::P99,
                Stat::Mean,
                Stat::Stddev,
            ] {
                let got = statistic(&mut v.clone(), stat);
                assert!((got - d.stat(stat)).abs() < 1e-9, "n={n} {stat:?}");
            }
        }
        assert!(statistic(&mut [], Stat::P50).is_nan());
    }

    #[test]
    fn observed_equals_the_summary_for_one_and_several_phases() {
        let a = noisy_phase(12, 1.0, 0.05, 1);
        let b = noisy_phase(9, 1.1, 0.05, 2);
        let one: Vec<&[RequestRecord]> = vec![&a];
        let two: Vec<&[RequestRecord]> = vec![&a, &b];
        for runs in [&one, &two] {
            let summary = Summary::from_runs(runs, None);
            for name in [
                "throughput_total",
                "total_token_throughput",
                "request_throughput",
                "error_rate",
                "ttft_p50",
                "itl_p95",
                "e2e_p99",
                "throughput_mean",
                "tpot_stddev",
            ] {
                let m = MetricName::parse(name).unwrap();
                let observed = Prepared::new(m, runs, None).observed();
                let expect = summary.metric(m);
                assert!(
                    (observed - expect).abs() <= 1e-9 * expect.abs().max(1.0),
                    "{name}: {observed} vs {expect}"
                );
            }
        }
    }

    /// The same requests with every time multiplied by `k`.
    fn scaled(records: &[RequestRecord], k: f64) -> Vec<RequestRecord> {
        records
            .iter()
            .map(|r| RequestRecord {
                start_s: r.start_s * k,
                end_s: r.end_s * k,
                event_times_s: r.event_times_s.iter().map(|t| t * k).collect(),
                ..r.clone()
            })
            .collect()
    }

    #[test]
    fn interval_covers_a_known_ratio() {
        // The candidate is the baseline 10% slower: every time × 1.1, so the
        // throughput ratio is exactly 1/1.1 and every latency ratio 1.1.
        let b = noisy_phase(40, 1.0, 0.05, 12);
        let c = scaled(&b, 1.1);
        let (lo, hi) = interval("throughput_total", &[&c], &[&b]);
        assert!(lo < 1.0 / 1.1 && 1.0 / 1.1 < hi, "[{lo}, {hi}]");
        assert!(
            hi - lo < 0.06,
            "a 5% noise gives a narrow interval: [{lo}, {hi}]"
        );
        assert!(hi < 0.95, "which excludes a 5% drop: [{lo}, {hi}]");
        for metric in ["ttft_p50", "e2e_p90", "itl_mean"] {
            let (lo, hi) = interval(metric, &[&c], &[&b]);
            assert!(lo < 1.1 && 1.1 < hi, "{metric}: [{lo}, {hi}]");
        }
        // Two independent samples of identical engines: the interval covers 1.
        let a = noisy_phase(40, 1.0, 0.05, 13);
        let (lo, hi) = interval("throughput_total", &[&a], &[&b]);
        assert!(lo < 1.0 && 1.0 < hi, "[{lo}, {hi}]");
    }

    #[test]
    fn coverage_over_many_datasets_is_near_the_level() {
        // 200 independent data sets with a true ratio of 1/1.1: a 95%
        // interval should miss it rarely (the percentile bootstrap is a
        // little narrow on small samples, so allow some slack).
        let truth = 1.0 / 1.1;
        let mut missed = 0;
        let options = Options {
            resamples: 400,
            ..Options::default()
        };
        for k in 0..200u64 {
            let c = noisy_phase(24, 1.1, 0.1, 1000 + 2 * k);
            let b = noisy_phase(24, 1.0, 0.1, 1001 + 2 * k);
            let m = MetricName::ThroughputTotal;
            let (lo, hi) = ratio_interval(
                m,
                "throughput_total",
                (&[&c], None),
                (&[&b], None),
                0.95,
                &options,
            )
            .unwrap();
            if !(lo <= truth && truth <= hi) {
                missed += 1;
            }
        }
        assert!(missed <= 20, "missed {missed} of 200");
    }

    #[test]
    fn intervals_are_seeded_and_reproducible() {
        let c = noisy_phase(20, 1.0, 0.1, 21);
        let b = noisy_phase(20, 1.0, 0.1, 22);
        let first = interval("e2e_p90", &[&c], &[&b]);
        let again = interval("e2e_p90", &[&c], &[&b]);
        assert_eq!(first, again);
        // Another seed gives a (slightly) different interval.
        let other = ratio_interval(
            MetricName::parse("e2e_p90").unwrap(),
            "e2e_p90",
            (&[&c], None),
            (&[&b], None),
            0.95,
            &Options {
                seed: 1,
                ..Options::default()
            },
        )
        .unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn repeated_phases_carry_drift_into_the_interval() {
        // Three candidate phases that disagree (machine drift): resampling
        // phases widens the interval compared with pooling them as one.
        let c1 = noisy_phase(12, 0.9, 0.02, 31);
        let c2 = noisy_phase(12, 1.0, 0.02, 32);
        let c3 = noisy_phase(12, 1.1, 0.02, 33);
        let b = noisy_phase(36, 1.0, 0.02, 34);
        let (lo, hi) = interval("ttft_mean", &[&c1, &c2, &c3], &[&b]);
        let mut pooled = c1.clone();
        pooled.extend(c2.iter().cloned());
        pooled.extend(c3.iter().cloned());
        let (plo, phi) = interval("ttft_mean", &[&pooled], &[&b]);
        assert!(
            hi - lo > 1.5 * (phi - plo),
            "[{lo}, {hi}] vs [{plo}, {phi}]"
        );
        assert!(lo < 1.0 && 1.0 < hi);
    }

    #[test]
    fn no_records_no_interval() {
        let b = noisy_phase(5, 1.0, 0.1, 41);
        let none: Vec<&[RequestRecord]> = Vec::new();
        assert_eq!(
            ratio_interval(
                MetricName::ThroughputTotal,
                "throughput_total",
                (&none, None),
                (&[&b], None),
                0.95,
                &Options::default()
            ),
            None
        );
    }
}
