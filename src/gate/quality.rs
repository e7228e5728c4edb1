//! Accuracy verdicts of a quality suite. Pure: scores in, rows out.
//!
//! Every metric of every task is compared with the baseline's (or with a
//! recorded `expected` value). The rule is the old script's: the candidate
//! may fall at most `max_drop` below (default 0.02, on a 0–1 scale); a rise
//! beyond the tolerance is `BETTER` and passes unless `two_sided` is set.
//! Against `expected` values `rtol` may replace the absolute tolerance:
//! `measured >= expected * (1 - rtol)` passes, as vLLM's accuracy CI does.
//!
//! The paired analysis counts, item by item, the questions one side got
//! right and the other wrong, with an exact McNemar test of whether the
//! flips lean one way more than chance would.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::QualityGate;
use crate::stats::paired_stderr;

/// The tolerance when a suite sets none (the old script's default).
pub const DEFAULT_MAX_DROP: f64 = 0.02;

/// Differences this small are rounding, not change.
const EPS: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Ok,
    Degraded,
    Better,
    /// A side scored nothing for this metric (no item, no task, no value):
    /// a failure, since a gate never passes on missing data.
    Unmeasured,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Degraded => "DEGRADED",
            Status::Better => "BETTER",
            Status::Unmeasured => "UNMEASURED",
        })
    }
}

/// One metric of one task, on one side.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricScores {
    pub name: String,
    pub value: f64,
    pub stderr: Option<f64>,
    /// The metric's value on each item, in item order (its mean is `value`).
    pub per_item: Vec<f64>,
}

/// One task scored on one side.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskScores {
    pub task: String,
    /// The metric `expected = { task = … }` refers to.
    pub primary: String,
    pub metrics: Vec<MetricScores>,
    /// Per item: whether the primary metric's choice was right.
    pub correct: Vec<bool>,
    /// Per item: the choice the primary metric picked (multiple choice).
    pub picks: Vec<usize>,
    /// Per item: the answers the filters extracted, in filter order
    /// (generative tasks).
    pub answers: Vec<String>,
}

/// One gated metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityRow {
    pub task: String,
    pub metric: String,
    pub candidate: f64,
    /// The baseline's value, or the expected one.
    pub reference: f64,
    /// `baseline` or `expected`.
    pub reference_kind: String,
    /// candidate − reference.
    pub diff: f64,
    /// Standard error of `diff`: of the per-item differences when both sides
    /// scored the same items, else the candidate's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<f64>,
    /// The tolerance as written, e.g. `drop <= 0.02`.
    pub limit: String,
    pub status: Status,
    pub passed: bool,
    /// Why the row could not be measured, when it could not (it then fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<String>,
}

/// Items that flipped between the two sides, for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub task: String,
    pub items: usize,
    /// Right on the candidate only.
    pub candidate_only: u64,
    /// Right on the baseline only.
    pub baseline_only: u64,
    /// Exact two-sided McNemar p-value of the flips.
    pub p_value: f64,
    /// Indices of the items that flipped, in item order.
    pub flipped: Vec<usize>,
}

/// The rows of a suite compared with a live baseline.
pub fn compare(
    gate: &QualityGate,
    candidate: &[TaskScores],
    baseline: &[TaskScores],
) -> Vec<QualityRow> {
    let mut rows = Vec::new();
    for c in candidate {
        let Some(b) = baseline.iter().find(|b| b.task == c.task) else {
            rows.push(missing(
                gate,
                &c.task,
                &c.primary,
                "baseline: task not scored",
            ));
            continue;
        };
        for m in &c.metrics {
            let Some(bm) = b.metrics.iter().find(|x| x.name == m.name) else {
                rows.push(missing(
                    gate,
                    &c.task,
                    &m.name,
                    "baseline: metric not scored",
                ));
                continue;
            };
            let stderr = paired_stderr(&m.per_item, &bm.per_item).or(m.stderr);
            let mut r = row(gate, &c.task, m, bm.value, "baseline", stderr);
            if !bm.value.is_finite() {
                r.status = Status::Unmeasured;
                r.passed = false;
                r.unmeasured = Some("baseline: no item scored".into());
            }
            rows.push(r);
        }
    }
    for b in baseline {
        if !candidate.iter().any(|c| c.task == b.task) {
            rows.push(missing(
                gate,
                &b.task,
                &b.primary,
                "candidate: task not scored",
            ));
        }
    }
    rows
}

/// A row for a metric one side has no value for: it fails, saying why.
fn missing(gate: &QualityGate, task: &str, metric: &str, why: &str) -> QualityRow {
    let nothing = MetricScores {
        name: metric.to_string(),
        value: f64::NAN,
        stderr: None,
        per_item: Vec::new(),
    };
    let mut r = row(gate, task, &nothing, f64::NAN, "baseline", None);
    r.unmeasured = Some(why.to_string());
    r
}

/// The rows of a suite compared with recorded values. `expected` keys are
/// `task` (its primary metric) or `task.metric`; metrics without one are not gated.
pub fn against_expected(gate: &QualityGate, candidate: &[TaskScores]) -> Vec<QualityRow> {
    let mut rows = Vec::new();
    for c in candidate {
        for m in &c.metrics {
            let dotted = format!("{}.{}", c.task, m.name);
            let value = gate.expected.get(&dotted).or_else(|| {
                (m.name == c.primary)
                    .then(|| gate.expected.get(&c.task))
                    .flatten()
            });
            if let Some(&expected) = value {
                rows.push(row(gate, &c.task, m, expected, "expected", m.stderr));
            }
        }
    }
    rows
}

fn row(
    gate: &QualityGate,
    task: &str,
    m: &MetricScores,
    reference: f64,
    kind: &str,
    stderr: Option<f64>,
) -> QualityRow {
    let two_sided = gate.two_sided.unwrap_or(false);
    let diff = m.value - reference;
    let (low, high, limit) = match gate.rtol.filter(|_| kind == "expected") {
        Some(rtol) => (
            reference * (1.0 - rtol),
            reference * (1.0 + rtol),
            if two_sided {
                format!("within ±{rtol} relative")
            } else {
                format!(">= expected × (1 − {rtol})")
            },
        ),
        None => {
            let tol = gate.max_drop.unwrap_or(DEFAULT_MAX_DROP);
            (
                reference - tol,
                reference + tol,
                if two_sided {
                    format!("|diff| <= {tol}")
                } else {
                    format!("drop <= {tol}")
                },
            )
        }
    };
    // The mean of no item is NaN: nothing was scored.
    let unmeasured = if !m.value.is_finite() {
        Some("candidate: no item scored".to_string())
    } else if !reference.is_finite() {
        Some(format!("{kind}: no value"))
    } else {
        None
    };
    let status = if unmeasured.is_some() {
        Status::Unmeasured
    } else if m.value < low - EPS {
        Status::Degraded
    } else if m.value > high + EPS {
        Status::Better
    } else {
        Status::Ok
    };
    let passed = match status {
        Status::Ok => true,
        Status::Better => !two_sided,
        Status::Degraded | Status::Unmeasured => false,
    };
    QualityRow {
        task: task.to_string(),
        metric: m.name.clone(),
        candidate: m.value,
        reference,
        reference_kind: kind.to_string(),
        diff,
        stderr,
        limit,
        status,
        passed,
        unmeasured,
    }
}

/// The paired analysis of each task both sides scored.
pub fn paired(candidate: &[TaskScores], baseline: &[TaskScores]) -> Vec<Paired> {
    candidate
        .iter()
        .filter_map(|c| {
            let b = baseline.iter().find(|b| b.task == c.task)?;
            let n = c.correct.len().min(b.correct.len());
            let mut flipped = Vec::new();
            let (mut c_only, mut b_only) = (0, 0);
            for i in 0..n {
                match (c.correct[i], b.correct[i]) {
                    (true, false) => c_only += 1,
                    (false, true) => b_only += 1,
                    _ => {}
                }
                if c.correct[i] != b.correct[i]
                    || c.picks.get(i) != b.picks.get(i)
                    || c.answers.get(i) != b.answers.get(i)
                {
                    flipped.push(i);
                }
            }
            Some(Paired {
                task: c.task.clone(),
                items: n,
                candidate_only: c_only,
                baseline_only: b_only,
                p_value: crate::stats::mcnemar_exact(c_only, b_only),
                flipped,
            })
        })
        .collect()
}

/// Whether every row passed; no row at all is nothing measured, not a pass.
pub fn all_pass(rows: &[QualityRow]) -> bool {
    !rows.is_empty() && rows.iter().all(|r| r.passed)
}

/// Per task, the rows' worst status (for summaries).
pub fn task_status(rows: &[QualityRow]) -> BTreeMap<String, Status> {
    let mut out: BTreeMap<String, Status> = BTreeMap::new();
    for r in rows {
        let worse = match (out.get(&r.task), r.status) {
            (Some(Status::Unmeasured), _) | (_, Status::Unmeasured) => Status::Unmeasured,
            (Some(Status::Degraded), _) => Status::Degraded,
            (_, Status::Degraded) => Status::Degraded,
            (Some(Status::Better), _) | (_, Status::Better) => Status::Better,
            _ => Status::Ok,
        };
        out.insert(r.task.clone(), worse);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(task: &str, acc: &[f64]) -> TaskScores {
        let n = acc.len() as f64;
        TaskScores {
            task: task.into(),
            primary: "acc".into(),
            metrics: vec![MetricScores {
                name: "acc".into(),
                value: acc.iter().sum::<f64>() / n,
                stderr: Some(0.1),
                per_item: acc.to_vec(),
            }],
            correct: acc.iter().map(|&x| x == 1.0).collect(),
            picks: acc.iter().map(|&x| if x == 1.0 { 0 } else { 1 }).collect(),
            answers: Vec::new(),
        }
    }

    fn gate(max_drop: Option<f64>, two_sided: bool) -> QualityGate {
        QualityGate {
            max_drop,
            two_sided: Some(two_sided),
            ..Default::default()
        }
    }

    /// Nothing scored on one side, or a task only one side scored, fails
    /// with its reason instead of passing by being left out.
    #[test]
    fn missing_scores_fail_as_unmeasured() {
        let g = gate(Some(0.02), false);
        let empty = scores("t", &[]);
        assert!(empty.metrics[0].value.is_nan());
        let full = scores("t", &[1.0, 0.0]);
        for (c, b, why) in [
            (&empty, &full, "candidate: no item scored"),
            (&full, &empty, "baseline: no item scored"),
        ] {
            let rows = compare(&g, std::slice::from_ref(c), std::slice::from_ref(b));
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].status, Status::Unmeasured, "{rows:?}");
            assert_eq!(rows[0].unmeasured.as_deref(), Some(why));
            assert!(!all_pass(&rows));
        }
        // A task scored on one side only.
        let other = scores("u", &[1.0, 1.0]);
        let rows = compare(
            &g,
            &[full.clone(), other.clone()],
            std::slice::from_ref(&full),
        );
        let u = rows.iter().find(|r| r.task == "u").expect("a row for u");
        assert_eq!(u.status, Status::Unmeasured);
        assert!(!all_pass(&rows));
        let rows = compare(&g, std::slice::from_ref(&full), &[full.clone(), other]);
        assert!(rows.iter().any(|r| r.task == "u" && !r.passed), "{rows:?}");
        // No rows at all is no pass.
        assert!(!all_pass(&[]));
        // Against an expected value, an empty candidate fails too.
        let g = QualityGate {
            expected: [("t".to_string(), 0.5)].into_iter().collect(),
            ..Default::default()
        };
        let rows = against_expected(&g, &[empty]);
        assert_eq!(rows[0].status, Status::Unmeasured);
        assert_eq!(task_status(&rows)["t"], Status::Unmeasured);
    }

    #[test]
    fn a_drop_beyond_the_tolerance_is_degraded() {
        let c = scores("t", &[1.0, 1.0, 0.0, 0.0]); // 0.50
        let b = scores("t", &[1.0, 1.0, 1.0, 0.0]); // 0.75
        let rows = compare(
            &gate(None, false),
            std::slice::from_ref(&c),
            std::slice::from_ref(&b),
        );
        assert_eq!(rows[0].status, Status::Degraded);
        assert!(!rows[0].passed);
        assert!((rows[0].diff + 0.25).abs() < 1e-12);
        // Per-item differences [0, 0, -1, 0]: sd 0.5, stderr 0.25.
        assert!((rows[0].stderr.unwrap() - 0.25).abs() < 1e-12);
        let rows = compare(&gate(Some(0.3), false), &[c], &[b]);
        assert_eq!(rows[0].status, Status::Ok);
    }

    #[test]
    fn exactly_the_tolerance_passes() {
        // 0.60 vs 0.62 is a drop of 0.02 up to rounding.
        let m = |v: f64| MetricScores {
            name: "acc".into(),
            value: v,
            stderr: None,
            per_item: vec![],
        };
        let r = row(&gate(None, false), "t", &m(0.60), 0.62, "baseline", None);
        assert_eq!(r.status, Status::Ok);
        let r = row(&gate(None, false), "t", &m(0.5999), 0.62, "baseline", None);
        assert_eq!(r.status, Status::Degraded);
    }

    #[test]
    fn better_passes_unless_two_sided() {
        let c = scores("t", &[1.0, 1.0, 1.0, 1.0]);
        let b = scores("t", &[1.0, 0.0, 0.0, 0.0]);
        let one = compare(
            &gate(None, false),
            std::slice::from_ref(&c),
            std::slice::from_ref(&b),
        );
        assert_eq!((one[0].status, one[0].passed), (Status::Better, true));
        let two = compare(&gate(None, true), &[c], &[b]);
        assert_eq!((two[0].status, two[0].passed), (Status::Better, false));
    }

    #[test]
    fn expected_values_with_absolute_and_relative_tolerance() {
        let c = scores("hellaswag", &[1.0, 1.0, 1.0, 0.0]); // 0.75
        let mut g = QualityGate {
            expected: [("hellaswag".to_string(), 0.80)].into(),
            ..Default::default()
        };
        // 0.75 < 0.80 - 0.02
        assert_eq!(
            against_expected(&g, std::slice::from_ref(&c))[0].status,
            Status::Degraded
        );
        // 0.75 >= 0.80 × (1 - 0.1) = 0.72
        g.rtol = Some(0.1);
        let rows = against_expected(&g, std::slice::from_ref(&c));
        assert_eq!(rows[0].status, Status::Ok);
        assert_eq!(rows[0].reference_kind, "expected");
        // `task.metric` keys name a metric; other metrics are not gated.
        let g = QualityGate {
            expected: [("hellaswag.acc_norm".to_string(), 0.5)].into(),
            ..Default::default()
        };
        assert!(against_expected(&g, &[c]).is_empty());
    }

    #[test]
    fn flips_are_counted_both_ways() {
        let c = scores("t", &[1.0, 0.0, 1.0, 1.0, 0.0]);
        let b = scores("t", &[1.0, 1.0, 0.0, 0.0, 0.0]);
        let p = paired(&[c], &[b]);
        assert_eq!(p[0].candidate_only, 2);
        assert_eq!(p[0].baseline_only, 1);
        assert_eq!(p[0].flipped, vec![1, 2, 3]);
        assert!((p[0].p_value - 1.0).abs() < 1e-12);
    }
}
