//! Candidate-versus-baseline verdicts. Pure: summaries and records in, rows out.
//!
//! Every gated metric gets the ratio candidate / baseline and, when the
//! per-request records are at hand, a bootstrap confidence interval of that
//! ratio (`bootstrap`). The verdict rule:
//! - a ratio limit without `confidence` holds when the measured ratio is
//!   within it;
//! - with `confidence = c`, the interval at level `c` decides: the limit
//!   holds when the whole interval is within it, fails when the whole
//!   interval is beyond it, and is `inconclusive` (visible, not a failure)
//!   when the interval straddles it; without records the measured ratio decides;
//! - absolute limits (`min`, `max`) are properties of the candidate alone and
//!   are checked on its measured value;
//! - a metric that either side could not measure fails, and so does every
//!   metric of a side with no completed request, and a ratio with a zero
//!   baseline (undefined): a gate never passes on missing data;
//! - a gate row takes the worst verdict of its limits (fail, then
//!   inconclusive, then pass).

pub mod bootstrap;
pub mod quality;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{Limit, Slo};
use crate::metrics::{MetricKey, RequestRecord, Summary};
use crate::stats::null_as_nan;

/// The interval level shown for gates that set no `confidence`.
pub const DEFAULT_LEVEL: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// The confidence interval straddles the limit: not a failure, but shown.
    Inconclusive,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Fail => "FAIL",
        })
    }
}

/// A confidence interval of a ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// One gate entry checked. A value that could not be measured (NaN) or an
/// infinite ratio is written as JSON `null` and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    pub metric: String,
    pub unit: String,
    #[serde(deserialize_with = "null_as_nan")]
    pub candidate: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub baseline: f64,
    /// candidate / baseline.
    #[serde(deserialize_with = "null_as_nan")]
    pub ratio: f64,
    /// Bootstrap interval of the ratio (absent without per-request records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// The limit as written, e.g. `ratio >= 0.95`.
    pub limit: String,
    /// The gate's `confidence`, when its verdict is decided on the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    pub verdict: Verdict,
    /// Why the row could not be measured, when it could not (it then fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<String>,
}

impl GateRow {
    /// The limit as written, with its confidence level when it has one.
    pub fn limit_with_confidence(&self) -> String {
        match self.confidence {
            Some(c) => format!("{} @ {:.0}%", self.limit, c * 100.0),
            None => self.limit.clone(),
        }
    }

    /// The ratio's interval, `[lo, hi] (level%)`, or a dash without one.
    pub fn interval_text(&self) -> String {
        match &self.interval {
            Some(i) => format!("[{:.3}, {:.3}] ({:.0}%)", i.lo, i.hi, i.level * 100.0),
            None => "—".into(),
        }
    }
}

/// candidate / baseline; NaN when either is unmeasured or the baseline is
/// 0 (no ratio of anything to nothing is a measurement).
pub fn ratio(candidate: f64, baseline: f64) -> f64 {
    if baseline == 0.0 || !baseline.is_finite() || !candidate.is_finite() {
        f64::NAN
    } else {
        candidate / baseline
    }
}

/// What was measured on one target: its summary and, when kept, the records
/// of each measured phase (one slice per repeat).
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub summary: &'a Summary,
    pub runs: &'a [&'a [RequestRecord]],
    pub slo: Option<&'a Slo>,
}

impl<'a> Sample<'a> {
    /// A sample known only by its summary: no interval can be computed.
    pub fn summary_only(summary: &'a Summary) -> Self {
        Self {
            summary,
            runs: &[],
            slo: None,
        }
    }
}

/// The verdict of one gate entry. `candidate` is the candidate's value,
/// `ratio` the measured ratio, `interval` the ratio's interval if known.
pub fn verdict(limit: &Limit, candidate: f64, ratio: f64, interval: Option<&Interval>) -> Verdict {
    if !candidate.is_finite() {
        return Verdict::Fail;
    }
    let interval =
        interval.filter(|i| limit.confidence.is_some() && i.lo.is_finite() && i.hi.is_finite());
    let mut worst = Verdict::Pass;
    let point = |ok: bool| if ok { Verdict::Pass } else { Verdict::Fail };
    if let Some(min) = limit.min_ratio {
        worst = worst.max(match interval {
            Some(i) if i.lo >= min => Verdict::Pass,
            Some(i) if i.hi < min => Verdict::Fail,
            Some(_) => Verdict::Inconclusive,
            None => point(ratio >= min),
        });
    }
    if let Some(max) = limit.max_ratio {
        worst = worst.max(match interval {
            Some(i) if i.hi <= max => Verdict::Pass,
            Some(i) if i.lo > max => Verdict::Fail,
            Some(_) => Verdict::Inconclusive,
            None => point(ratio <= max),
        });
    }
    if let Some(min) = limit.min {
        worst = worst.max(point(candidate >= min));
    }
    if let Some(max) = limit.max {
        worst = worst.max(point(candidate <= max));
    }
    worst
}

/// The limit as written in tables: `ratio >= 0.95, <= 2`.
pub fn limit_text(limit: &Limit) -> String {
    let mut parts = Vec::new();
    if let Some(min) = limit.min_ratio {
        parts.push(format!("ratio >= {min}"));
    }
    if let Some(max) = limit.max_ratio {
        parts.push(format!("ratio <= {max}"));
    }
    if let Some(min) = limit.min {
        parts.push(format!(">= {min}"));
    }
    if let Some(max) = limit.max {
        parts.push(format!("<= {max}"));
    }
    parts.join(", ")
}

/// Checks every gate entry on summaries alone (no intervals).
pub fn evaluate(
    gate: &BTreeMap<MetricKey, Limit>,
    candidate: &Summary,
    baseline: &Summary,
) -> Vec<GateRow> {
    evaluate_samples(
        gate,
        &Sample::summary_only(candidate),
        &Sample::summary_only(baseline),
        &bootstrap::Options::default(),
    )
}

/// Checks every gate entry, with bootstrap intervals from the records.
pub fn evaluate_samples(
    gate: &BTreeMap<MetricKey, Limit>,
    candidate: &Sample<'_>,
    baseline: &Sample<'_>,
    options: &bootstrap::Options,
) -> Vec<GateRow> {
    // A side without a completed request measured nothing, whatever its
    // summary's numbers say: every row of the case fails, saying why.
    let side_unmeasured = [("candidate", candidate), ("baseline", baseline)]
        .iter()
        .filter_map(|(role, s)| s.summary.unmeasured().map(|why| format!("{role}: {why}")))
        .collect::<Vec<_>>();
    gate.iter()
        .map(|(key, limit)| {
            let (metric, name) = (key.metric(), key.as_str());
            let (c, b) = (
                candidate.summary.metric(metric),
                baseline.summary.metric(metric),
            );
            let r = ratio(c, b);
            let unmeasured = if !side_unmeasured.is_empty() {
                Some(side_unmeasured.join("; "))
            } else {
                unmeasured_reason(limit, c, b)
            };
            let level = limit.confidence.unwrap_or(DEFAULT_LEVEL);
            // Device memory and server metrics are sampled, not per
            // request: there are no records to resample, so no interval.
            let resampled = Some(metric).filter(|m| m.per_request());
            let interval = resampled.and_then(|m| {
                bootstrap::ratio_interval(
                    m,
                    name,
                    (candidate.runs, candidate.slo),
                    (baseline.runs, baseline.slo),
                    level,
                    options,
                )
                .map(|(lo, hi)| Interval { lo, hi, level })
            });
            let verdict = if unmeasured.is_none() {
                verdict(limit, c, r, interval.as_ref())
            } else {
                Verdict::Fail
            };
            // No ratio is shown where the values behind it were not measured.
            let (r, interval) = if unmeasured.is_some() {
                (f64::NAN, None)
            } else {
                (r, interval)
            };
            GateRow {
                metric: name.to_string(),
                unit: metric.unit().to_string(),
                candidate: c,
                baseline: b,
                ratio: r,
                interval,
                limit: limit_text(limit),
                confidence: limit.confidence,
                verdict,
                unmeasured,
            }
        })
        .collect()
}

/// Why a limit cannot be checked on these values: the candidate's value is
/// missing, or a ratio limit lacks the baseline's value or has a zero one.
fn unmeasured_reason(limit: &Limit, candidate: f64, baseline: f64) -> Option<String> {
    if !candidate.is_finite() {
        return Some("candidate: no value measured".into());
    }
    if limit.min_ratio.is_some() || limit.max_ratio.is_some() {
        if !baseline.is_finite() {
            return Some("baseline: no value measured".into());
        }
        if baseline == 0.0 {
            return Some("baseline is 0: the ratio is undefined".into());
        }
    }
    None
}

/// Whether no gate failed (an inconclusive row does not fail a case).
pub fn all_pass(rows: &[GateRow]) -> bool {
    rows.iter().all(|r| r.verdict != Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(tput: f64, ttft_p50: f64, errors: f64) -> Summary {
        let mut s = Summary {
            completed: 10,
            throughput_total: tput,
            error_rate: errors,
            ..Default::default()
        };
        s.ttft_ms.p50 = ttft_p50;
        s.ttft_ms.count = 1;
        s
    }

    fn gate(entries: &[(&str, Limit)]) -> BTreeMap<MetricKey, Limit> {
        entries
            .iter()
            .map(|(k, v)| (MetricKey::parse(k).expect("a known metric"), *v))
            .collect()
    }

    #[test]
    fn ratio_limits_and_absolute_limits() {
        let g = gate(&[
            (
                "throughput_total",
                Limit {
                    min_ratio: Some(0.95),
                    ..Default::default()
                },
            ),
            (
                "ttft_p50",
                Limit {
                    max_ratio: Some(1.10),
                    ..Default::default()
                },
            ),
            (
                "error_rate",
                Limit {
                    max: Some(0.0),
                    ..Default::default()
                },
            ),
        ]);
        let rows = evaluate(&g, &summary(96.0, 21.0, 0.0), &summary(100.0, 20.0, 0.0));
        assert!(all_pass(&rows), "{rows:?}");

        let rows = evaluate(&g, &summary(70.0, 30.0, 0.1), &summary(100.0, 20.0, 0.0));
        let failed: Vec<&str> = rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| r.metric.as_str())
            .collect();
        assert_eq!(failed, vec!["error_rate", "throughput_total", "ttft_p50"]);
        let tput = rows
            .iter()
            .find(|r| r.metric == "throughput_total")
            .unwrap();
        assert!((tput.ratio - 0.7).abs() < 1e-12);
        assert_eq!(tput.limit, "ratio >= 0.95");
    }

    #[test]
    fn zero_baseline_and_missing_candidate_data() {
        // Nothing over nothing, or anything over nothing, is no measurement.
        assert!(ratio(0.0, 0.0).is_nan());
        assert!(ratio(1.0, 0.0).is_nan());
        assert!(ratio(1.0, f64::NAN).is_nan());
        let g = gate(&[(
            "ttft_p50",
            Limit {
                max_ratio: Some(2.0),
                ..Default::default()
            },
        )]);
        let rows = evaluate(&g, &summary(0.0, f64::NAN, 1.0), &summary(1.0, 20.0, 0.0));
        assert_eq!(rows[0].verdict, Verdict::Fail);
    }

    /// The hole this rule closes: both sides failed every request, so every
    /// rate is 0/0. That must fail, naming why, not pass at ratio 1.
    #[test]
    fn a_side_without_completed_requests_fails_every_row() {
        use crate::metrics::{ErrorKind, TokenSource};
        let failed: Vec<RequestRecord> = (0..4)
            .map(|i| RequestRecord {
                start_s: i as f64,
                end_s: i as f64 + 0.1,
                event_times_s: Vec::new(),
                event_tokens: Vec::new(),
                output_tokens: 0,
                token_source: TokenSource::Usage,
                input_tokens: None,
                queue_s: 0.0,
                error: Some("HTTP 404: model `M` does not exist".into()),
                error_kind: Some(ErrorKind::Http4xx),
                turn: None,
            })
            .collect();
        let none = Summary::from_records(&failed, None);
        assert!(none.throughput_total.is_nan() && none.ttft_ms.p50.is_nan());
        assert_eq!(none.error_rate, 1.0);
        let g = gate(&[
            (
                "throughput_total",
                Limit {
                    min_ratio: Some(0.95),
                    ..Default::default()
                },
            ),
            (
                "error_rate",
                Limit {
                    max: Some(1.0),
                    ..Default::default()
                },
            ),
        ]);
        for (c, b) in [
            (&none, &none),
            (&none, &summary(100.0, 20.0, 0.0)),
            (&summary(100.0, 20.0, 0.0), &none),
        ] {
            let rows = evaluate(&g, c, b);
            assert!(rows.iter().all(|r| r.verdict == Verdict::Fail), "{rows:?}");
            assert!(
                rows.iter().all(|r| r
                    .unmeasured
                    .as_deref()
                    .is_some_and(|w| w.contains("0 of 4 requests completed"))),
                "{rows:?}"
            );
            assert!(!all_pass(&rows));
        }
        // Nothing sent at all is no better.
        let empty = Summary::from_records(&[], None);
        assert!(empty.error_rate.is_nan());
        let rows = evaluate(&g, &empty, &summary(100.0, 20.0, 0.0));
        assert!(rows[0]
            .unmeasured
            .as_deref()
            .unwrap()
            .contains("no request was sent"));
    }

    #[test]
    fn a_zero_or_missing_baseline_value_fails_ratio_limits_only() {
        let g = gate(&[
            (
                "throughput_total",
                Limit {
                    min_ratio: Some(0.95),
                    ..Default::default()
                },
            ),
            (
                "error_rate",
                Limit {
                    max: Some(0.0),
                    ..Default::default()
                },
            ),
            (
                "ttft_p50",
                Limit {
                    max_ratio: Some(1.1),
                    ..Default::default()
                },
            ),
        ]);
        // A measured zero baseline throughput: the ratio is undefined.
        let mut b = summary(0.0, f64::NAN, 0.0);
        b.ttft_ms.count = 0;
        let rows = evaluate(&g, &summary(10.0, 20.0, 0.0), &b);
        let by = |m: &str| rows.iter().find(|r| r.metric == m).unwrap();
        assert_eq!(by("throughput_total").verdict, Verdict::Fail);
        assert!(by("throughput_total")
            .unmeasured
            .as_deref()
            .unwrap()
            .contains("undefined"));
        assert!(by("ttft_p50")
            .unmeasured
            .as_deref()
            .unwrap()
            .contains("baseline"));
        // An absolute limit concerns the candidate alone.
        assert_eq!(by("error_rate").verdict, Verdict::Pass);
        assert_eq!(by("error_rate").unmeasured, None);
        // NaN from an empty series on the candidate fails too.
        let mut c = summary(10.0, f64::NAN, 0.0);
        c.ttft_ms.count = 0;
        let rows = evaluate(&g, &c, &summary(10.0, 20.0, 0.0));
        let ttft = rows.iter().find(|r| r.metric == "ttft_p50").unwrap();
        assert_eq!(ttft.verdict, Verdict::Fail);
        assert!(ttft.ratio.is_nan());
    }

    fn with_confidence(min_ratio: Option<f64>, max_ratio: Option<f64>) -> Limit {
        Limit {
            min_ratio,
            max_ratio,
            confidence: Some(0.95),
            ..Default::default()
        }
    }

    fn iv(lo: f64, hi: f64) -> Interval {
        Interval {
            lo,
            hi,
            level: 0.95,
        }
    }

    #[test]
    fn verdict_rule_with_confidence_at_the_edges() {
        let min = with_confidence(Some(0.95), None);
        // Whole interval within: pass, even touching the limit exactly.
        assert_eq!(
            verdict(&min, 1.0, 0.99, Some(&iv(0.97, 1.01))),
            Verdict::Pass
        );
        assert_eq!(
            verdict(&min, 1.0, 0.96, Some(&iv(0.95, 0.97))),
            Verdict::Pass
        );
        // Straddling: inconclusive, whichever side the measured ratio is on.
        assert_eq!(
            verdict(&min, 1.0, 0.96, Some(&iv(0.94, 0.98))),
            Verdict::Inconclusive
        );
        assert_eq!(
            verdict(&min, 1.0, 0.94, Some(&iv(0.92, 0.951))),
            Verdict::Inconclusive
        );
        // Whole interval beyond: fail; an upper end just below the limit is beyond.
        assert_eq!(
            verdict(&min, 1.0, 0.90, Some(&iv(0.88, 0.92))),
            Verdict::Fail
        );
        assert_eq!(
            verdict(&min, 1.0, 0.90, Some(&iv(0.88, 0.949_999))),
            Verdict::Fail
        );
        // A degenerate interval (identical replicates) behaves like the point.
        assert_eq!(
            verdict(&min, 1.0, 0.95, Some(&iv(0.95, 0.95))),
            Verdict::Pass
        );

        let max = with_confidence(None, Some(1.10));
        assert_eq!(
            verdict(&max, 1.0, 1.05, Some(&iv(1.02, 1.10))),
            Verdict::Pass
        );
        assert_eq!(
            verdict(&max, 1.0, 1.09, Some(&iv(1.05, 1.12))),
            Verdict::Inconclusive
        );
        assert_eq!(
            verdict(&max, 1.0, 1.2, Some(&iv(1.100_001, 1.3))),
            Verdict::Fail
        );

        // Both ratio limits: the worst one wins (fail over inconclusive).
        let both = with_confidence(Some(0.9), Some(1.1));
        assert_eq!(
            verdict(&both, 1.0, 1.0, Some(&iv(0.85, 1.05))),
            Verdict::Inconclusive
        );
        assert_eq!(
            verdict(&both, 1.0, 1.0, Some(&iv(0.92, 1.08))),
            Verdict::Pass
        );
    }

    #[test]
    fn verdict_rule_without_confidence_or_interval() {
        // No confidence: the measured ratio decides, the interval is only shown.
        let plain = Limit {
            min_ratio: Some(0.95),
            ..Default::default()
        };
        assert_eq!(
            verdict(&plain, 1.0, 0.96, Some(&iv(0.90, 1.0))),
            Verdict::Pass
        );
        assert_eq!(
            verdict(&plain, 1.0, 0.94, Some(&iv(0.93, 1.2))),
            Verdict::Fail
        );
        // Confidence but no records: the measured ratio decides.
        let min = with_confidence(Some(0.95), None);
        assert_eq!(verdict(&min, 1.0, 0.94, None), Verdict::Fail);
        assert_eq!(verdict(&min, 1.0, 0.96, None), Verdict::Pass);
        // An undefined interval is no interval.
        assert_eq!(
            verdict(&min, 1.0, 0.96, Some(&iv(f64::NAN, f64::NAN))),
            Verdict::Pass
        );
        // A candidate that measured nothing fails whatever the interval.
        assert_eq!(
            verdict(&min, f64::NAN, f64::NAN, Some(&iv(0.99, 1.01))),
            Verdict::Fail
        );
        // Absolute limits are checked on the measured value, not an interval:
        // one error among many still breaks `max = 0`.
        let errors = Limit {
            max: Some(0.0),
            ..Default::default()
        };
        assert_eq!(
            verdict(&errors, 0.01, 1.0, Some(&iv(0.0, 2.0))),
            Verdict::Fail
        );
        assert_eq!(verdict(&errors, 0.0, 1.0, None), Verdict::Pass);
    }

    #[test]
    fn inconclusive_rows_do_not_fail_a_case() {
        let row = |verdict| GateRow {
            metric: "m".into(),
            unit: String::new(),
            candidate: 1.0,
            baseline: 1.0,
            ratio: 1.0,
            interval: None,
            limit: String::new(),
            confidence: None,
            verdict,
            unmeasured: None,
        };
        assert!(all_pass(&[row(Verdict::Pass), row(Verdict::Inconclusive)]));
        assert!(!all_pass(&[row(Verdict::Inconclusive), row(Verdict::Fail)]));
    }

    #[test]
    fn evaluate_samples_uses_the_records() {
        use crate::metrics::TokenSource;
        // Candidate requests take 10% longer than the baseline's, with a
        // little noise: with confidence, throughput_total >= 0.95 fails on
        // the interval; without records it would only see the point.
        let phase = |scale: f64, wobble: f64| -> Vec<RequestRecord> {
            (0..20)
                .map(|i| {
                    let e2e = scale * (0.1 + wobble * ((i * 7 % 5) as f64 - 2.0) / 1000.0);
                    RequestRecord {
                        start_s: i as f64 * e2e,
                        end_s: (i + 1) as f64 * e2e,
                        event_times_s: vec![e2e * 0.2, e2e],
                        event_tokens: Vec::new(),
                        output_tokens: 2,
                        token_source: TokenSource::Usage,
                        input_tokens: None,
                        queue_s: 0.0,
                        error: None,
                        error_kind: None,
                        turn: None,
                    }
                })
                .collect()
        };
        let c = phase(1.1, 1.0);
        let b = phase(1.0, 1.0);
        let (cs, bs) = (
            Summary::from_records(&c, None),
            Summary::from_records(&b, None),
        );
        let (cr, br): (Vec<&[RequestRecord]>, Vec<&[RequestRecord]>) = (vec![&c], vec![&b]);
        let g = gate(&[("throughput_total", with_confidence(Some(0.95), None))]);
        let rows = evaluate_samples(
            &g,
            &Sample {
                summary: &cs,
                runs: &cr,
                slo: None,
            },
            &Sample {
                summary: &bs,
                runs: &br,
                slo: None,
            },
            &bootstrap::Options::default(),
        );
        let i = rows[0].interval.expect("an interval from records");
        assert!(i.contains(rows[0].ratio), "{rows:?}");
        assert!(i.hi < 0.95, "{rows:?}");
        assert_eq!(rows[0].verdict, Verdict::Fail);
        assert_eq!(rows[0].confidence, Some(0.95));
        // Summaries alone: no interval, the point decides.
        let rows = evaluate(&g, &cs, &bs);
        assert_eq!(rows[0].interval, None);
        assert_eq!(rows[0].verdict, Verdict::Fail);
    }

    #[test]
    fn unmeasured_values_survive_a_json_round_trip() {
        let row = GateRow {
            metric: "ttft_p50".into(),
            unit: "ms".into(),
            candidate: f64::NAN,
            baseline: 20.0,
            ratio: f64::NAN,
            interval: None,
            limit: "ratio <= 1.1".into(),
            confidence: None,
            verdict: Verdict::Fail,
            unmeasured: Some("candidate: 0 of 4 requests completed".into()),
        };
        let text = serde_json::to_string(&row).unwrap();
        assert!(text.contains("\"candidate\":null"), "{text}");
        let back: GateRow = serde_json::from_str(&text).unwrap();
        assert!(back.candidate.is_nan() && back.ratio.is_nan());
        assert_eq!(back.unmeasured, row.unmeasured);
        assert_eq!(back.baseline, 20.0);
    }
}
