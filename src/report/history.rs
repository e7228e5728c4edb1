//! History: each metric's trend over several saved runs, oldest first.

use super::console::{num, table};
use super::RunResults;
use crate::metrics::MetricName;

/// Candidate metrics followed in every case, beside the gated ratios.
pub const TRACKED: &[&str] = &["throughput_total", "ttft_p50", "itl_p50", "latency_p50"];

/// One metric of one case across runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub case: String,
    /// `throughput_total` (the candidate's value) or `ratio throughput_total`.
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// One value per run, `None` where the run lacks the case.
    pub values: Vec<Option<f64>>,
}

impl Trend {
    /// (last − first) / first over the runs that have a value.
    pub fn change(&self) -> Option<f64> {
        // Runs that measured nothing (NaN) are skipped, like runs without the case.
        let present: Vec<f64> = self
            .values
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        match (present.first(), present.last()) {
            (Some(&a), Some(&b)) if present.len() > 1 && a != 0.0 && a.is_finite() => {
                Some((b - a) / a)
            }
            _ => None,
        }
    }
}

/// Every case's trends, in order of first appearance.
pub fn trends(runs: &[RunResults]) -> Vec<Trend> {
    let mut cases: Vec<String> = Vec::new();
    for run in runs {
        for c in &run.cases {
            if !cases.contains(&c.name) {
                cases.push(c.name.clone());
            }
        }
    }
    let mut out = Vec::new();
    for case in &cases {
        let reports: Vec<Option<&crate::results::CaseReport>> = runs
            .iter()
            .map(|r| r.cases.iter().find(|c| &c.name == case))
            .collect();
        for name in TRACKED {
            let m = MetricName::parse(name).expect("tracked names parse");
            out.push(Trend {
                case: case.clone(),
                metric: name.to_string(),
                unit: m.unit().to_string(),
                higher_is_better: m.higher_is_better(),
                values: reports
                    .iter()
                    .map(|r| r.map(|c| c.candidate.summary.metric(m)))
                    .collect(),
            });
        }
        let mut gated: Vec<String> = Vec::new();
        for c in reports.iter().flatten() {
            for row in c.gate.iter().filter(|r| r.limit.contains("ratio")) {
                if !gated.contains(&row.metric) {
                    gated.push(row.metric.clone());
                }
            }
        }
        for metric in gated {
            let higher = MetricName::parse(&metric).is_some_and(|m| m.higher_is_better());
            out.push(Trend {
                case: case.clone(),
                metric: format!("ratio {metric}"),
                unit: String::new(),
                higher_is_better: higher,
                values: reports
                    .iter()
                    .map(|r| {
                        r.and_then(|c| c.gate.iter().find(|g| g.metric == metric))
                            .map(|g| g.ratio)
                    })
                    .collect(),
            });
        }
    }
    out
}

/// Most runs shown as columns in the console; older ones are summarised by
/// the change column.
const MAX_COLUMNS: usize = 6;

/// case, metric, one column per run (the latest few), change first → last.
pub fn history_table(runs: &[RunResults]) -> String {
    let skip = runs.len().saturating_sub(MAX_COLUMNS);
    let labels: Vec<String> = runs
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, r)| r.label(i))
        .collect();
    let mut header = vec!["case", "metric"];
    header.extend(labels.iter().map(String::as_str));
    header.push("change");
    let mut t = table(&header);
    for trend in trends(runs) {
        let mut row = vec![trend.case.clone(), trend.metric.clone()];
        row.extend(trend.values.iter().skip(skip).map(|v| match v {
            Some(v) if trend.metric.starts_with("ratio ") && v.is_finite() => format!("{v:.3}"),
            Some(v) => num(*v),
            None => "—".into(),
        }));
        row.push(match trend.change() {
            Some(c) => {
                let better = (c > 0.0) == trend.higher_is_better;
                let word = if c.abs() < 0.005 {
                    ""
                } else if better {
                    " better"
                } else {
                    " worse"
                };
                format!("{:+.1}%{word}", c * 100.0)
            }
            None => "—".into(),
        });
        t.add_row(row);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn trends_follow_each_case_across_runs() {
        let first = fixtures::run(&[("scenario::a", 1.0)]);
        let second = fixtures::run(&[("scenario::a", 1.25), ("scenario::b", 1.0)]);
        let t = trends(&[first.clone(), second.clone()]);
        let tput = t
            .iter()
            .find(|t| t.case == "scenario::a" && t.metric == "throughput_total")
            .unwrap();
        // 25% slower: throughput × 0.8, a 20% drop, and worse.
        assert!((tput.change().unwrap() + 0.2).abs() < 1e-9, "{tput:?}");
        let ratio = t
            .iter()
            .find(|t| t.case == "scenario::a" && t.metric == "ratio throughput_total")
            .unwrap();
        assert!((ratio.values[1].unwrap() - 0.8).abs() < 1e-9);
        // error_rate has only an absolute limit: no ratio trend.
        assert!(!t.iter().any(|t| t.metric == "ratio error_rate"));
        // A case missing from a run has a gap there.
        let b = t
            .iter()
            .find(|t| t.case == "scenario::b" && t.metric == "latency_p50")
            .unwrap();
        assert_eq!(b.values[0], None);
        assert_eq!(b.change(), None);
        let table = history_table(&[first, second]);
        assert!(table.contains("-20.0% worse"), "{table}");
    }
}
