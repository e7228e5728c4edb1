//! Metrics from log-likelihoods: acc, acc_norm, mc2, standard errors, groups, paired tests.
//!
//! Each formula follows lm-evaluation-harness 0.4 step by step, in the same
//! order of floating-point operations where that is practical, so that
//! scores agree with it to the last digit or nearly so:
//! per question, `acc` and `acc_norm` (argmax of the log-likelihoods, raw
//! and divided by each choice's length in characters) and truthfulqa's mc2;
//! per task, the mean and its standard error; for mmlu, the size-weighted
//! subject → category → mmlu aggregation with pooled standard errors.

use serde::{Deserialize, Serialize};

use super::tasks::{mmlu_category, Task, MMLU_CATEGORIES, MMLU_SUBJECTS};
use super::{Gold, McDoc};
use crate::stats::{mean_stderr, pooled_sample_stderr, weighted_mean};

/// How one question was answered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DocOutcome {
    /// The choice with the highest log-likelihood (the first on ties).
    pub pred: usize,
    /// The choice with the highest log-likelihood per character.
    pub pred_norm: usize,
    /// 1 or 0; for truthfulqa_mc2 questions the mc2 score in [0, 1].
    pub acc: f64,
    /// 1 or 0; always 0 for truthfulqa_mc2 questions (not a metric there).
    pub acc_norm: f64,
}

/// numpy's `argmax`: the first maximum, or the first NaN if there is one.
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x.is_nan() {
            return i;
        }
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// numpy's sum of a contiguous float64 array: pairwise summation with
/// eight accumulators, which gives the same bits as `np.sum`.
pub fn numpy_sum(xs: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = xs.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in xs {
            res += x;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&xs[..8]);
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += xs[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &xs[whole..] {
            res += x;
        }
        res
    } else {
        let half = n / 2;
        let half = half - half % 8;
        numpy_sum(&xs[..half]) + numpy_sum(&xs[half..])
    }
}

/// truthfulqa's mc2: the probability mass of the true answers (the first
/// `n_true` choices) after normalising the choices' probabilities to sum to 1.
pub fn mc2(lls: &[f64], n_true: usize) -> f64 {
    let probs: Vec<f64> = lls.iter().map(|ll| ll.exp()).collect();
    let total = numpy_sum(&probs);
    let normed: Vec<f64> = probs.iter().map(|p| p / total).collect();
    numpy_sum(&normed[..n_true.min(normed.len())])
}

/// Scores one question from its choices' log-likelihoods (`lls[k]` for
/// `doc.choices[k]`).
///
/// # Panics
/// If `lls` and `doc.choices` differ in length.
pub fn score_doc(doc: &McDoc, lls: &[f64]) -> DocOutcome {
    assert_eq!(
        lls.len(),
        doc.choices.len(),
        "one log-likelihood per choice"
    );
    let pred = argmax(lls);
    // lm-eval divides by the choice's length in characters (Python `len`,
    // i.e. code points), without the delimiter.
    let per_char: Vec<f64> = lls
        .iter()
        .zip(&doc.choices)
        .map(|(ll, c)| ll / c.chars().count() as f64)
        .collect();
    let pred_norm = argmax(&per_char);
    let hit = |p: usize, gold: usize| if p == gold { 1.0 } else { 0.0 };
    match doc.gold {
        Gold::Index(gold) => DocOutcome {
            pred,
            pred_norm,
            acc: hit(pred, gold),
            acc_norm: hit(pred_norm, gold),
        },
        Gold::TrueFirst(n_true) => DocOutcome {
            pred,
            pred_norm,
            acc: mc2(lls, n_true),
            acc_norm: 0.0,
        },
    }
}

/// One metric's value and standard error (`None` where lm-eval prints "N/A").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub name: String,
    pub value: f64,
    pub stderr: Option<f64>,
}

/// A task's metrics over `n` questions, and its parts' for grouped tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMetrics {
    pub task: String,
    pub n: usize,
    pub metrics: Vec<MetricValue>,
    /// mmlu: the categories (`mmlu_humanities`, `mmlu_other`,
    /// `mmlu_social_sciences`, `mmlu_stem`, those with questions), then the
    /// subjects (`mmlu_abstract_algebra`, ...) in order of first appearance,
    /// named as lm-eval names them; each with its question count.
    pub subtasks: Vec<(String, usize, Vec<MetricValue>)>,
}

/// One scored part of a group: its acc, standard error and size.
struct Part {
    value: f64,
    stderr: Option<f64>,
    size: usize,
}

/// lm-eval's size-weighted group aggregation over leaf tasks; the group's
/// error is "N/A" when any member's is.
fn aggregate(parts: &[&Part]) -> Part {
    let values: Vec<f64> = parts.iter().map(|p| p.value).collect();
    let sizes: Vec<usize> = parts.iter().map(|p| p.size).collect();
    let stderrs: Option<Vec<f64>> = parts.iter().map(|p| p.stderr).collect();
    Part {
        value: weighted_mean(&values, &sizes),
        stderr: stderrs.map(|se| pooled_sample_stderr(&se, &sizes)),
        size: sizes.iter().sum(),
    }
}

fn acc_only(p: &Part) -> Vec<MetricValue> {
    vec![MetricValue {
        name: "acc".to_string(),
        value: p.value,
        stderr: p.stderr,
    }]
}

/// Metrics over a task's questions (`outcomes[i]` scores `docs[i]`).
///
/// mmlu follows lm-eval's groups: each subject's acc, then each category
/// and mmlu itself as the size-weighted mean over their subjects with the
/// pooled standard error (lm-eval aggregates a group over its leaf tasks,
/// so mmlu pools the subjects, not the categories). A subject missing from
/// mmlu's table (possible only for questions not built by
/// [`Task::docs`](super::tasks::Task::docs), which rejects them) counts
/// under `other`.
///
/// # Panics
/// If `docs` and `outcomes` differ in length.
pub fn task_metrics(task: &Task, docs: &[McDoc], outcomes: &[DocOutcome]) -> TaskMetrics {
    assert_eq!(docs.len(), outcomes.len(), "one outcome per question");
    if matches!(task, Task::Mmlu) {
        return mmlu_metrics(task, docs, outcomes);
    }
    let metrics = task
        .metrics()
        .iter()
        .map(|&name| {
            let xs: Vec<f64> = outcomes
                .iter()
                .map(|o| {
                    if name == "acc_norm" {
                        o.acc_norm
                    } else {
                        o.acc
                    }
                })
                .collect();
            let (value, stderr) = mean_stderr(&xs);
            MetricValue {
                name: name.to_string(),
                value,
                stderr,
            }
        })
        .collect();
    TaskMetrics {
        task: task.name().to_string(),
        n: docs.len(),
        metrics,
        subtasks: Vec::new(),
    }
}

/// One subject's or category's entry in [`TaskMetrics::subtasks`].
type Subtask = (String, usize, Vec<MetricValue>);

fn mmlu_metrics(task: &Task, docs: &[McDoc], outcomes: &[DocOutcome]) -> TaskMetrics {
    let (order, parts) = subjects(docs, outcomes);
    let leaves = category_leaves(&order);
    // mmlu pools its leaf subjects, not its categories.
    let all: Vec<&Part> = leaves
        .iter()
        .flat_map(|(_, members)| members.iter().map(|&i| &parts[i]))
        .collect();
    let mut subtasks = category_subtasks(&leaves, &parts);
    for (subject, part) in order.iter().zip(&parts) {
        subtasks.push((format!("mmlu_{subject}"), part.size, acc_only(part)));
    }
    let (metrics, n) = if all.is_empty() {
        (
            acc_only(&Part {
                value: f64::NAN,
                stderr: None,
                size: 0,
            }),
            0,
        )
    } else {
        let top = aggregate(&all);
        (acc_only(&top), top.size)
    };
    TaskMetrics {
        task: task.name().to_string(),
        n,
        metrics,
        subtasks,
    }
}

/// The subjects in order of first appearance, and each one's acc.
fn subjects<'a>(docs: &'a [McDoc], outcomes: &[DocOutcome]) -> (Vec<&'a str>, Vec<Part>) {
    let mut order: Vec<&str> = Vec::new();
    let mut accs: Vec<Vec<f64>> = Vec::new();
    for (doc, out) in docs.iter().zip(outcomes) {
        let subject = doc.subject.as_deref().unwrap_or("");
        let at = match order.iter().position(|s| *s == subject) {
            Some(at) => at,
            None => {
                order.push(subject);
                accs.push(Vec::new());
                order.len() - 1
            }
        };
        accs[at].push(out.acc);
    }
    let parts = accs
        .iter()
        .map(|xs| {
            let (value, stderr) = mean_stderr(xs);
            Part {
                value,
                stderr,
                size: xs.len(),
            }
        })
        .collect();
    (order, parts)
}

/// Leaf subjects (indices into `order`) per category, in lm-eval's order:
/// table order, and subjects unknown to the table at the end of `other`.
fn category_leaves(order: &[&str]) -> Vec<(&'static str, Vec<usize>)> {
    let mut leaves: Vec<(&str, Vec<usize>)> = MMLU_CATEGORIES
        .iter()
        .map(|&cat| {
            let members = MMLU_SUBJECTS
                .iter()
                .filter(|(_, c)| *c == cat)
                .filter_map(|(s, _)| order.iter().position(|o| o == s))
                .collect();
            (cat, members)
        })
        .collect();
    for (at, subject) in order.iter().enumerate() {
        if mmlu_category(subject).is_none() {
            if let Some((_, members)) = leaves.iter_mut().find(|(c, _)| *c == "other") {
                members.push(at);
            }
        }
    }
    leaves
}

/// The categories with questions, by name, each aggregated over its subjects.
fn category_subtasks(leaves: &[(&str, Vec<usize>)], parts: &[Part]) -> Vec<Subtask> {
    let mut by_name: Vec<(&str, &Vec<usize>)> = leaves
        .iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(c, m)| (*c, m))
        .collect();
    by_name.sort_by_key(|(c, _)| *c);
    by_name
        .into_iter()
        .map(|(cat, members)| {
            let group: Vec<&Part> = members.iter().map(|&i| &parts[i]).collect();
            let agg = aggregate(&group);
            (format!("mmlu_{cat}"), agg.size, acc_only(&agg))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(choices: &[&str], gold: Gold, subject: Option<&str>) -> McDoc {
        McDoc {
            index: 0,
            context: "Q".into(),
            choices: choices.iter().map(|c| c.to_string()).collect(),
            delimiter: " ".into(),
            gold,
            subject: subject.map(str::to_string),
        }
    }

    #[test]
    fn ties_pick_the_first() {
        let d = doc(&["a", "b", "c"], Gold::Index(1), None);
        let out = score_doc(&d, &[-1.0, -1.0, -2.0]);
        assert_eq!(out.pred, 0);
        assert_eq!(out.pred_norm, 0);
        assert_eq!(out.acc, 0.0);
        assert_eq!(argmax(&[1.0, f64::NAN, 3.0]), 1);
        assert_eq!(argmax(&[f64::NEG_INFINITY, f64::NEG_INFINITY]), 0);
    }

    #[test]
    fn acc_norm_divides_by_code_points() {
        // "éé" is 2 characters (4 bytes), "abc" 3: per character -1.0 vs -0.9
        // picks "abc", per byte (-0.5 vs -0.9) would pick "éé"; raw picks "éé".
        let d = doc(&["éé", "abc"], Gold::Index(1), None);
        let out = score_doc(&d, &[-2.0, -2.7]);
        assert_eq!((out.pred, out.pred_norm), (0, 1));
        assert_eq!((out.acc, out.acc_norm), (0.0, 1.0));
        // "a–b" is 3 characters (5 bytes): -3.3/3 = -1.1 beats -4.8/4 = -1.2.
        let d = doc(&["a–b", "abcd"], Gold::Index(0), None);
        let out = score_doc(&d, &[-3.3, -4.8]);
        assert_eq!((out.pred, out.pred_norm), (0, 0));
        assert_eq!((out.acc, out.acc_norm), (1.0, 1.0));
        let out = score_doc(&d, &[-3.9, -4.4]);
        assert_eq!((out.pred, out.pred_norm), (0, 1));
        assert_eq!((out.acc, out.acc_norm), (1.0, 0.0));
    }

    #[test]
    fn mc2_is_true_probability_mass() {
        // e^-1 / (e^-1 + e^-2 + e^-3) = 1 / (1 + e^-1 + e^-2) = 0.66524095577482...
        let d = doc(&["t", "f1", "f2"], Gold::TrueFirst(1), None);
        let out = score_doc(&d, &[-1.0, -2.0, -3.0]);
        assert!(
            (out.acc - 0.665_240_955_774_821_9).abs() < 1e-15,
            "{}",
            out.acc
        );
        assert_eq!(out.pred, 0);
        assert_eq!(out.acc_norm, 0.0);
        // Equal likelihoods: 2 of 4.
        assert_eq!(mc2(&[-0.5; 4], 2), 0.5);
        assert_eq!(mc2(&[-0.5; 4], 0), 0.0);
    }

    #[test]
    fn numpy_pairwise_sum() {
        // np.sum([0.1] * 10) is exactly 1.0, unlike a left-to-right sum.
        assert_eq!(numpy_sum(&[0.1; 10]), 1.0);
        assert_eq!(numpy_sum(&[1.0; 300]), 300.0);
        assert_eq!(numpy_sum(&[]), 0.0);
    }

    #[test]
    fn plain_task_metrics() {
        let docs = vec![doc(&["a", "b"], Gold::Index(0), None); 4];
        let outs =
            [(1.0, 0.0), (0.0, 0.0), (1.0, 1.0), (1.0, 1.0)].map(|(acc, acc_norm)| DocOutcome {
                pred: 0,
                pred_norm: 0,
                acc,
                acc_norm,
            });
        let m = task_metrics(&Task::ArcEasy, &docs, &outs);
        assert_eq!(m.task, "arc_easy");
        assert_eq!(m.n, 4);
        assert_eq!(m.metrics.len(), 2);
        assert_eq!(m.metrics[0].name, "acc");
        assert_eq!(
            (m.metrics[0].value, m.metrics[0].stderr),
            (0.75, Some(0.25))
        );
        assert_eq!(m.metrics[1].name, "acc_norm");
        assert_eq!(m.metrics[1].value, 0.5);
        assert!(m.subtasks.is_empty());
    }

    fn mmlu_run(accs: &[(&str, f64)]) -> TaskMetrics {
        let docs: Vec<McDoc> = accs
            .iter()
            .map(|(s, _)| doc(&["A", "B", "C", "D"], Gold::Index(0), Some(s)))
            .collect();
        let outs: Vec<DocOutcome> = accs
            .iter()
            .map(|&(_, acc)| DocOutcome {
                pred: 0,
                pred_norm: 0,
                acc,
                acc_norm: 0.0,
            })
            .collect();
        task_metrics(&Task::Mmlu, &docs, &outs)
    }

    #[test]
    fn mmlu_groups() {
        let m = mmlu_run(&[
            ("formal_logic", 1.0),
            ("abstract_algebra", 1.0),
            ("abstract_algebra", 0.0),
            ("formal_logic", 0.0),
            ("abstract_algebra", 1.0),
            ("abstract_algebra", 1.0),
        ]);
        // abstract_algebra (stem): 0.75 ± 0.25 over 4; formal_logic
        // (humanities): 0.5 ± 0.5 over 2. mmlu: 4/6, pooled
        // √((3·0.25²·4 + 1·0.5²·2) / (6 − 2) / 6) = √(1.25 / 24).
        assert_eq!(m.n, 6);
        assert_eq!(m.metrics[0].name, "acc");
        assert_eq!(m.metrics[0].value, 4.0 / 6.0);
        let se = m.metrics[0].stderr.unwrap();
        assert!((se - 0.228_217_732_293_819_23).abs() < 1e-15, "{se}");
        let names: Vec<(&str, usize)> = m
            .subtasks
            .iter()
            .map(|(n, k, _)| (n.as_str(), *k))
            .collect();
        assert_eq!(
            names,
            [
                ("mmlu_humanities", 2),
                ("mmlu_stem", 4),
                ("mmlu_formal_logic", 2),
                ("mmlu_abstract_algebra", 4),
            ]
        );
        let stem = &m.subtasks[1].2[0];
        assert_eq!((stem.value, stem.stderr), (0.75, Some(0.25)));
        let logic = &m.subtasks[2].2[0];
        assert_eq!(logic.value, 0.5);
        assert!((logic.stderr.unwrap() - 0.5).abs() < 1e-15);

        // A subject with one question has no stderr, and neither do its groups.
        let m = mmlu_run(&[("anatomy", 1.0), ("virology", 0.0), ("virology", 1.0)]);
        assert_eq!(m.metrics[0].value, 2.0 / 3.0);
        assert_eq!(m.metrics[0].stderr, None);
        assert_eq!(m.subtasks[0].0, "mmlu_other");
        assert!(m.subtasks[0].2[0].stderr.is_some());
        assert_eq!(m.subtasks[1].0, "mmlu_stem");
        assert_eq!(m.subtasks[1].2[0].stderr, None);
    }
}
