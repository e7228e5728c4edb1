//! Candidate-versus-baseline verdicts. Pure: summaries in, rows out.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Limit;
use crate::metrics::{MetricName, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
        })
    }
}

/// One gate entry checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    pub metric: String,
    pub unit: String,
    pub candidate: f64,
    pub baseline: f64,
    /// candidate / baseline.
    pub ratio: f64,
    /// The limit as written, e.g. `ratio >= 0.95`.
    pub limit: String,
    pub verdict: Verdict,
}

/// candidate / baseline, with 0/0 read as "equal".
pub fn ratio(candidate: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        if candidate == 0.0 {
            1.0
        } else {
            f64::INFINITY * candidate.signum()
        }
    } else {
        candidate / baseline
    }
}

/// Checks every gate entry. Unknown metric names were rejected when the
/// configuration was validated; one slipping through fails loudly here.
pub fn evaluate(
    gate: &BTreeMap<String, Limit>,
    candidate: &Summary,
    baseline: &Summary,
) -> Vec<GateRow> {
    gate.iter()
        .map(|(name, limit)| {
            let metric = MetricName::parse(name);
            let (c, b) = match metric {
                Some(m) => (candidate.metric(m), baseline.metric(m)),
                None => (f64::NAN, f64::NAN),
            };
            let r = ratio(c, b);
            let mut ok = metric.is_some() && c.is_finite();
            let mut parts = Vec::new();
            if let Some(min) = limit.min_ratio {
                ok &= r >= min;
                parts.push(format!("ratio >= {min}"));
            }
            if let Some(max) = limit.max_ratio {
                ok &= r <= max;
                parts.push(format!("ratio <= {max}"));
            }
            if let Some(min) = limit.min {
                ok &= c >= min;
                parts.push(format!(">= {min}"));
            }
            if let Some(max) = limit.max {
                ok &= c <= max;
                parts.push(format!("<= {max}"));
            }
            GateRow {
                metric: name.clone(),
                unit: metric.map(|m| m.unit()).unwrap_or("").to_string(),
                candidate: c,
                baseline: b,
                ratio: r,
                limit: parts.join(", "),
                verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            }
        })
        .collect()
}

pub fn all_pass(rows: &[GateRow]) -> bool {
    rows.iter().all(|r| r.verdict == Verdict::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(tput: f64, ttft_p50: f64, errors: f64) -> Summary {
        let mut s = Summary {
            throughput_total: tput,
            error_rate: errors,
            ..Default::default()
        };
        s.ttft_ms.p50 = ttft_p50;
        s
    }

    fn gate(entries: &[(&str, Limit)]) -> BTreeMap<String, Limit> {
        entries.iter().map(|(k, v)| (k.to_string(), *v)).collect()
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
        assert_eq!(ratio(0.0, 0.0), 1.0);
        assert!(ratio(1.0, 0.0).is_infinite());
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
}
