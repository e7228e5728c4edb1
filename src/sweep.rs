//! A rate sweep, as guidellm runs one: the synchronous rate (one request at
//! a time), the saturated rate (a closed loop at `workload.concurrency`),
//! then constant rates evenly spaced between them; the highest rate whose
//! requests meet `workload.slo` is the figure a gate can check
//! (`max_rate_within_slo`).

use crate::client::Client;
use crate::config::SweepConfig;
use crate::loadgen::{self, BenchResult, BenchSpec};
pub use crate::metrics::SweepPoint;
use crate::metrics::{RequestRecord, Slo};

/// `k` rates evenly spaced strictly between `low` and `high`.
pub fn constant_rates(low: f64, high: f64, k: u32) -> Vec<f64> {
    (1..=k)
        .map(|i| low + (high - low) * i as f64 / (k + 1) as f64)
        .collect()
}

/// The rate at which a saturated closed loop completes requests, from
/// their end times: the completions after the first instant one ended,
/// over the time from it to the last. Counting from the phase's start
/// would charge the rate with the first requests' whole latency (ramp-up),
/// which a short phase cannot amortise.
pub fn completion_rate(ends: impl IntoIterator<Item = f64>) -> f64 {
    let ends: Vec<f64> = ends.into_iter().collect();
    let first = ends.iter().copied().fold(f64::INFINITY, f64::min);
    let last = ends.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let after = ends.iter().filter(|&&e| e > first).count();
    if after > 0 && last > first {
        after as f64 / (last - first)
    } else {
        f64::NAN
    }
}

/// Share of `records` (failed ones included) meeting every objective;
/// NaN without a request.
pub fn within_slo(records: &[RequestRecord], slo: &Slo) -> f64 {
    if records.is_empty() {
        return f64::NAN;
    }
    records.iter().filter(|r| r.meets(slo)).count() as f64 / records.len() as f64
}

/// The highest rate among the points that met the objectives; 0 when none
/// did; `None` when the synchronous load completed nothing (nothing was
/// measured, so nothing can be said).
pub fn max_rate_within_slo(points: &[SweepPoint]) -> Option<f64> {
    let synchronous = points.first()?;
    if synchronous.summary.completed == 0 {
        return None;
    }
    Some(
        points
            .iter()
            .filter(|p| p.meets && p.rate.is_finite())
            .map(|p| p.rate)
            .fold(0.0, f64::max),
    )
}

fn point(
    kind: &str,
    rate: f64,
    result: &BenchResult,
    slo: &Slo,
    sweep: &SweepConfig,
) -> SweepPoint {
    let within = within_slo(&result.records, slo);
    SweepPoint {
        kind: kind.into(),
        rate,
        within_slo: within,
        meets: within >= sweep.meet,
        summary: result.summary.clone(),
    }
}

/// Runs the sweep: the warm-up before the synchronous load only. Returns
/// the saturated load's result (what the other gates compare), carrying
/// every point and the figure.
pub async fn run(client: &Client, spec: &BenchSpec, sweep: &SweepConfig, slo: &Slo) -> BenchResult {
    let w = &spec.workload;
    let with = |concurrency: u32, rate: Option<f64>, warmup: u32| BenchSpec {
        workload: crate::config::WorkloadConfig {
            concurrency,
            rate,
            warmup,
            ..w.clone()
        },
        ..spec.clone()
    };
    let synchronous = loadgen::run(client, &with(1, None, w.warmup)).await;
    let saturated = loadgen::run(client, &with(w.concurrency, None, 0)).await;
    let mut points = vec![
        point(
            "synchronous",
            synchronous.summary.request_throughput,
            &synchronous,
            slo,
            sweep,
        ),
        point(
            "saturated",
            completion_rate(saturated.records.iter().filter(|r| r.ok()).map(|r| r.end_s)),
            &saturated,
            slo,
            sweep,
        ),
    ];
    let (low, high) = (points[0].rate, points[1].rate);
    if low.is_finite() && high.is_finite() && high > low {
        for rate in constant_rates(low, high, sweep.rates) {
            let result = loadgen::run(client, &with(w.concurrency, Some(rate), 0)).await;
            points.push(point("constant", rate, &result, slo, sweep));
        }
    }
    let mut result = saturated;
    result.summary.max_rate_within_slo = max_rate_within_slo(&points);
    result.sweep = points;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Summary;

    fn at(kind: &str, rate: f64, meets: bool, completed: usize) -> SweepPoint {
        SweepPoint {
            kind: kind.into(),
            rate,
            within_slo: if meets { 1.0 } else { 0.0 },
            meets,
            summary: Summary {
                completed,
                ..Summary::default()
            },
        }
    }

    #[test]
    fn a_closed_loop_rate_counts_from_the_first_completion() {
        // Four at a time every 100 ms, the first after a long ramp: 40 a second.
        let ends = (0..5).flat_map(|k| std::iter::repeat_n(1.0 + k as f64 * 0.1, 4));
        let rate = completion_rate(ends);
        assert!((rate - 40.0).abs() < 1e-6, "{rate}");
        assert!(completion_rate([1.0, 1.0]).is_nan());
        assert!(completion_rate([]).is_nan());
    }

    #[test]
    fn rates_lie_strictly_between() {
        assert_eq!(constant_rates(10.0, 40.0, 2), [20.0, 30.0]);
        assert!(constant_rates(10.0, 40.0, 0).is_empty());
    }

    #[test]
    fn the_highest_rate_meeting_the_objectives_counts() {
        let points = [
            at("synchronous", 10.0, true, 5),
            at("saturated", 40.0, false, 5),
            at("constant", 20.0, true, 5),
            at("constant", 30.0, false, 5),
        ];
        assert_eq!(max_rate_within_slo(&points), Some(20.0));
        // None met them: a measured 0.
        let none = [
            at("synchronous", 10.0, false, 5),
            at("saturated", 40.0, false, 5),
        ];
        assert_eq!(max_rate_within_slo(&none), Some(0.0));
        // Nothing completed: nothing measured.
        assert_eq!(
            max_rate_within_slo(&[at("synchronous", f64::NAN, false, 0)]),
            None
        );
        assert_eq!(max_rate_within_slo(&[]), None);
    }
}
