//! Regressions across the history of saved runs (`servegate history`): one
//! series per case and gated metric, oldest run first; change points in it
//! by E-divisive means, and flags by a rolling-baseline threshold (both in
//! `changepoint`); which of them make "a regression in the latest runs";
//! and the console table, Markdown and JSON that say so. Pure: callers read
//! the runs and write the outputs.
//!
//! Which series: a gate row with a ratio limit is followed as its ratio
//! candidate / baseline (both sides measured back to back on the same
//! machine, so a slower or faster runner cancels out); a row with only
//! absolute limits (`min`, `max`) as the candidate's value, since that is
//! what its gate checks. `SeriesChoice` can ask for one kind, or both, for
//! every row.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use comfy_table::{CellAlignment, Table};

use super::console::{num, table};
use super::RunResults;
use crate::changepoint::{self, e_divisive, mean_change, threshold_flags};
use crate::metrics::MetricName;

/// What is followed of one gate row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// candidate / baseline.
    Ratio,
    /// The candidate's value.
    Candidate,
}

impl SeriesKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Ratio => "ratio",
            SeriesKind::Candidate => "candidate",
        }
    }
}

/// Which series to follow for each gate row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesChoice {
    /// The ratio for rows with a ratio limit, else the candidate's value.
    Gated,
    Ratio,
    Candidate,
    Both,
}

impl SeriesChoice {
    pub fn name(self) -> &'static str {
        match self {
            SeriesChoice::Gated => "gated",
            SeriesChoice::Ratio => "ratio",
            SeriesChoice::Candidate => "candidate",
            SeriesChoice::Both => "both",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            SeriesChoice::Gated => "the ratio candidate / baseline for gates with a ratio limit, the candidate's value for gates with absolute limits",
            SeriesChoice::Ratio => "the ratio candidate / baseline of every gated metric",
            SeriesChoice::Candidate => "the candidate's value of every gated metric",
            SeriesChoice::Both => "the ratio candidate / baseline and the candidate's value of every gated metric",
        }
    }
}

/// One metric of one case over the runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub case: String,
    pub metric: String,
    pub kind: SeriesKind,
    pub higher_is_better: bool,
    pub unit: String,
    /// (run index, value) for the runs that measured it, oldest first.
    pub points: Vec<(usize, f64)>,
}

/// The series of every case and gated metric, in order of first appearance.
/// A run without the case, or whose value is unmeasured (NaN), has no point.
pub fn series<'a>(
    runs: impl IntoIterator<Item = &'a RunResults>,
    choice: SeriesChoice,
) -> Vec<Series> {
    // (case, metric) → (has a ratio limit in the latest run holding it, points of ratios, points of values)
    type Acc = (bool, Vec<(usize, f64)>, Vec<(usize, f64)>, String);
    let mut order: Vec<(String, String)> = Vec::new();
    let mut acc: HashMap<(String, String), Acc> = HashMap::new();
    for (i, run) in runs.into_iter().enumerate() {
        for case in &run.cases {
            for row in &case.gate {
                let key = (case.name.clone(), row.metric.clone());
                let entry = acc.entry(key).or_insert_with_key(|k| {
                    order.push(k.clone());
                    (false, Vec::new(), Vec::new(), row.unit.clone())
                });
                entry.0 = row.limit.contains("ratio");
                if row.ratio.is_finite() {
                    entry.1.push((i, row.ratio));
                }
                if row.candidate.is_finite() {
                    entry.2.push((i, row.candidate));
                }
            }
        }
    }
    let mut out = Vec::new();
    for key in order {
        let (ratio_limit, ratios, values, unit) = acc.remove(&key).expect("every key was added");
        let kinds: &[SeriesKind] = match choice {
            SeriesChoice::Gated if ratio_limit => &[SeriesKind::Ratio],
            SeriesChoice::Gated | SeriesChoice::Candidate => &[SeriesKind::Candidate],
            SeriesChoice::Ratio => &[SeriesKind::Ratio],
            SeriesChoice::Both => &[SeriesKind::Ratio, SeriesKind::Candidate],
        };
        let higher_is_better = MetricName::parse(&key.1).is_some_and(|m| m.higher_is_better());
        for &kind in kinds {
            let (points, unit) = match kind {
                SeriesKind::Ratio => (ratios.clone(), String::new()),
                SeriesKind::Candidate => (values.clone(), unit.clone()),
            };
            out.push(Series {
                case: key.0.clone(),
                metric: key.1.clone(),
                kind,
                higher_is_better,
                unit,
                points,
            });
        }
    }
    out
}

/// Orders runs by start time, then commit, then file: the order `history`
/// reads them in. Every run must have a start time (`started_at` in RFC 3339).
pub fn order_runs(runs: &mut [(String, RunResults)]) {
    runs.sort_by_cached_key(|(file, r)| {
        let started = chrono::DateTime::parse_from_rfc3339(&r.started_at).ok();
        let commit = r
            .environment
            .as_ref()
            .and_then(|e| e.git_commit.clone())
            .unwrap_or_default();
        (started.is_none(), started, commit, file.clone())
    });
}

/// How the analysis is done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub changepoint: changepoint::Options,
    pub threshold: changepoint::ThresholdOptions,
    pub series: SeriesChoice,
    /// Level of the change intervals.
    pub level: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            changepoint: changepoint::Options::default(),
            threshold: changepoint::ThresholdOptions::default(),
            series: SeriesChoice::Gated,
            level: 0.95,
        }
    }
}

impl Params {
    /// Fewest runs in which anything can be found: the fewer of what a
    /// change point and a threshold flag need.
    pub fn min_runs(&self) -> usize {
        self.changepoint
            .min_points()
            .min(self.threshold.min_points())
    }

    /// Why `n` runs are too few, when they are.
    pub fn too_few(&self, n: usize) -> Option<String> {
        (n < self.min_runs()).then(|| {
            format!(
                "{n} complete run{} cannot show a regression: a change point needs {} runs on each side, \
                 a threshold flag {} runs of baseline and {} consecutive runs, so at least {} runs are needed",
                if n == 1 { "" } else { "s" },
                self.changepoint.min_size,
                self.threshold.min_baseline(),
                self.threshold.consecutive,
                self.min_runs()
            )
        })
    }
}

/// Better or worse, by the metric's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Regression,
    Improvement,
}

/// One run of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// 1-based position in the history, oldest first.
    pub run: usize,
    pub file: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A change point of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeReport {
    pub case: String,
    pub metric: String,
    pub series: SeriesKind,
    pub unit: String,
    pub direction: Direction,
    /// The first run of the new level (1-based).
    pub run: usize,
    pub started_at: String,
    /// The commit of the last run before the change, and of its first run.
    pub commit_before: Option<String>,
    pub commit_after: Option<String>,
    /// Means of the segments before and after (each bounded by the
    /// neighbouring change points), and how many runs each holds.
    pub mean_before: f64,
    pub mean_after: f64,
    pub runs_before: usize,
    pub runs_after: usize,
    /// mean_after / mean_before − 1 (null from a mean of 0).
    pub change: f64,
    /// t-style interval of `change` at `level`.
    pub interval: [f64; 2],
    pub level: f64,
    pub p_value: f64,
    /// The last run of the new level (1-based).
    pub last_run: usize,
    /// The new level lasts to the latest run: no later change point, and
    /// the latest run measured this series.
    pub reaches_latest: bool,
    /// A regression in the latest runs (see `change_fails`).
    pub fails: bool,
}

/// A threshold flag of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagReport {
    pub case: String,
    pub metric: String,
    pub series: SeriesKind,
    pub unit: String,
    /// First bad run, the run flagged (the `consecutive`-th bad one), last bad run (1-based).
    pub first_run: usize,
    pub flagged_run: usize,
    pub last_run: usize,
    pub started_at: String,
    pub commit_before: Option<String>,
    pub commit_after: Option<String>,
    /// The median the streak was judged against, the worst value, and how
    /// much worse that is.
    pub baseline: f64,
    pub worst: f64,
    pub worst_change: f64,
    /// The streak includes the latest run.
    pub reaches_latest: bool,
}

/// A regression in the latest runs: what `--fail-on-regression` fails on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    pub case: String,
    pub metric: String,
    pub series: SeriesKind,
    /// `change point` or `threshold`.
    pub method: String,
    /// The first run of the regression (1-based).
    pub since_run: usize,
    pub started_at: String,
    pub commit_before: Option<String>,
    pub commit_after: Option<String>,
    pub change: f64,
}

/// A series with too few measured runs to analyse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShortSeries {
    pub case: String,
    pub metric: String,
    pub series: SeriesKind,
    pub runs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameters {
    pub series: String,
    pub significance: f64,
    pub permutations: usize,
    pub min_segment: usize,
    pub seed: u64,
    pub window: usize,
    pub tolerance: f64,
    pub consecutive: usize,
    pub level: f64,
}

/// Everything `history` found, as printed and as written to `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryReport {
    pub runs: Vec<RunInfo>,
    /// Runs left out, each with the reason.
    pub skipped: Vec<String>,
    pub parameters: Parameters,
    pub series_analysed: usize,
    pub too_short: Vec<ShortSeries>,
    pub change_points: Vec<ChangeReport>,
    pub threshold_flags: Vec<FlagReport>,
    pub regressions: Vec<Regression>,
}

impl HistoryReport {
    pub fn has_regression(&self) -> bool {
        !self.regressions.is_empty()
    }
}

/// A change point fails the gate when it is a regression that lasts to the
/// latest run and is larger than the tolerance (a mean of 0 that grew, or
/// fell, is larger than any tolerance).
fn change_fails(c: &ChangeReport, tolerance: f64) -> bool {
    c.reaches_latest
        && c.direction == Direction::Regression
        && (!c.change.is_finite() || c.change.abs() > tolerance)
}

/// Analyses `runs` (oldest first, each with the file it came from; owned
/// or borrowed, so the HTML page can analyse the runs it already holds).
pub fn analyse<R: std::borrow::Borrow<RunResults>>(
    runs: &[(String, R)],
    skipped: Vec<String>,
    params: &Params,
) -> HistoryReport {
    let info: Vec<RunInfo> = runs
        .iter()
        .enumerate()
        .map(|(i, (file, r))| {
            let r = r.borrow();
            RunInfo {
                run: i + 1,
                file: file.clone(),
                started_at: r.started_at.clone(),
                commit: r.environment.as_ref().and_then(|e| e.git_commit.clone()),
            }
        })
        .collect();
    let all = series(runs.iter().map(|(_, r)| r.borrow()), params.series);
    let latest = runs.len().saturating_sub(1);
    let min_points = params.min_runs();
    let (long, short): (Vec<Series>, Vec<Series>) =
        all.into_iter().partition(|s| s.points.len() >= min_points);
    let found = par_map(&long, |s| analyse_series(s, &info, latest, params));
    let mut report = HistoryReport {
        runs: info,
        skipped,
        parameters: Parameters {
            series: params.series.name().to_string(),
            significance: params.changepoint.significance,
            permutations: params.changepoint.permutations,
            min_segment: params.changepoint.min_size,
            seed: params.changepoint.seed,
            window: params.threshold.window,
            tolerance: params.threshold.tolerance,
            consecutive: params.threshold.consecutive,
            level: params.level,
        },
        series_analysed: long.len(),
        too_short: short
            .iter()
            .map(|s| ShortSeries {
                case: s.case.clone(),
                metric: s.metric.clone(),
                series: s.kind,
                runs: s.points.len(),
            })
            .collect(),
        change_points: Vec::new(),
        threshold_flags: Vec::new(),
        regressions: Vec::new(),
    };
    for (changes, flags) in found {
        report.change_points.extend(changes);
        report.threshold_flags.extend(flags);
    }
    let tolerance = params.threshold.tolerance;
    for c in &mut report.change_points {
        c.fails = change_fails(c, tolerance);
    }
    for c in report.change_points.iter().filter(|c| c.fails) {
        report.regressions.push(Regression {
            case: c.case.clone(),
            metric: c.metric.clone(),
            series: c.series,
            method: "change point".into(),
            since_run: c.run,
            started_at: c.started_at.clone(),
            commit_before: c.commit_before.clone(),
            commit_after: c.commit_after.clone(),
            change: c.change,
        });
    }
    for f in report.threshold_flags.iter().filter(|f| f.reaches_latest) {
        report.regressions.push(Regression {
            case: f.case.clone(),
            metric: f.metric.clone(),
            series: f.series,
            method: "threshold".into(),
            since_run: f.first_run,
            started_at: f.started_at.clone(),
            commit_before: f.commit_before.clone(),
            commit_after: f.commit_after.clone(),
            change: f.worst_change,
        });
    }
    report
}

/// `f` over `items` on the machine's cores, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an analysis thread panicked"))
            .collect()
    })
}

/// A seed of its own for each series, so that results do not depend on
/// which thread analysed which series, nor on the other series (FNV-1a).
fn series_seed(base: u64, s: &Series) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ base;
    for b in s
        .case
        .bytes()
        .chain([0])
        .chain(s.metric.bytes())
        .chain([0])
        .chain(s.kind.as_str().bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn analyse_series(
    s: &Series,
    runs: &[RunInfo],
    latest: usize,
    params: &Params,
) -> (Vec<ChangeReport>, Vec<FlagReport>) {
    let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
    let run_of = |point: usize| s.points[point].0;
    let commit = |point: usize| runs[run_of(point)].commit.clone();
    let ends_latest = run_of(values.len() - 1) == latest;
    let worse = |before: f64, after: f64| {
        if s.higher_is_better {
            after < before
        } else {
            after > before
        }
    };
    let options = changepoint::Options {
        seed: series_seed(params.changepoint.seed, s),
        ..params.changepoint
    };
    let cps = e_divisive(&values, &options);
    let mut bounds = vec![0];
    bounds.extend(cps.iter().map(|c| c.index));
    bounds.push(values.len());
    let changes = cps
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let (before, after) = (
                &values[bounds[j]..bounds[j + 1]],
                &values[bounds[j + 1]..bounds[j + 2]],
            );
            let m = mean_change(before, after, params.level);
            ChangeReport {
                case: s.case.clone(),
                metric: s.metric.clone(),
                series: s.kind,
                unit: s.unit.clone(),
                direction: if worse(m.before, m.after) {
                    Direction::Regression
                } else {
                    Direction::Improvement
                },
                run: run_of(c.index) + 1,
                started_at: runs[run_of(c.index)].started_at.clone(),
                commit_before: commit(c.index - 1),
                commit_after: commit(c.index),
                mean_before: m.before,
                mean_after: m.after,
                runs_before: before.len(),
                runs_after: after.len(),
                change: m.relative,
                interval: [m.lo, m.hi],
                level: params.level,
                p_value: c.p_value,
                last_run: run_of(bounds[j + 2] - 1) + 1,
                reaches_latest: j + 1 == cps.len() && ends_latest,
                fails: false,
            }
        })
        .collect();
    let flags = threshold_flags(&values, s.higher_is_better, &params.threshold)
        .into_iter()
        .map(|f| FlagReport {
            case: s.case.clone(),
            metric: s.metric.clone(),
            series: s.kind,
            unit: s.unit.clone(),
            first_run: run_of(f.start) + 1,
            flagged_run: run_of(f.flagged_at) + 1,
            last_run: run_of(f.end) + 1,
            started_at: runs[run_of(f.start)].started_at.clone(),
            commit_before: f.start.checked_sub(1).and_then(commit),
            commit_after: commit(f.start),
            baseline: f.baseline,
            worst: f.worst,
            worst_change: if f.baseline != 0.0 {
                f.worst / f.baseline - 1.0
            } else {
                f64::NAN
            },
            reaches_latest: f.end == values.len() - 1 && ends_latest,
        })
        .collect();
    (changes, flags)
}

/// A run's start, `2025-01-05 03:00:00`, when it has one that reads.
fn start_text(runs: &[RunInfo], run: usize) -> Option<String> {
    let r = runs.get(run.checked_sub(1)?)?;
    let t = chrono::DateTime::parse_from_rfc3339(&r.started_at).ok()?;
    Some(t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// `5 (2025-01-05 03:00:00)`: a run's number and start.
fn run_label(runs: &[RunInfo], run: usize) -> String {
    match start_text(runs, run) {
        Some(t) => format!("{run} ({t})"),
        None => run.to_string(),
    }
}

/// `0123456789..abcdef0123`: the last commit before and the first after.
fn commits(before: &Option<String>, after: &Option<String>) -> String {
    let short = |c: &Option<String>| match c {
        Some(c) => c.chars().take(10).collect::<String>(),
        None => "?".into(),
    };
    match (before, after) {
        (None, None) => "—".into(),
        (b, a) if b == a => format!("{} (same)", short(a)),
        (b, a) => format!("{}..{}", short(b), short(a)),
    }
}

fn percent(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.1}%", x * 100.0)
    } else {
        "—".into()
    }
}

fn interval(i: &[f64; 2]) -> String {
    if i[0].is_finite() && i[1].is_finite() {
        format!("[{}, {}]", percent(i[0]), percent(i[1]))
    } else {
        "—".into()
    }
}

fn value(v: f64, kind: SeriesKind, unit: &str) -> String {
    match kind {
        SeriesKind::Ratio if v.is_finite() => format!("{v:.3}"),
        _ if unit.is_empty() || !v.is_finite() => num(v),
        _ => format!("{} {unit}", num(v)),
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Regression => "regression",
        Direction::Improvement => "improvement",
    }
}

fn runs_text(first: usize, last: usize) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}–{last}")
    }
}

impl HistoryReport {
    fn span(&self) -> String {
        let n = self.runs.len();
        match n {
            0 => "no run".into(),
            1 => format!("1 run ({})", run_label(&self.runs, 1)),
            _ => format!(
                "{n} runs, from run {} to run {}",
                run_label(&self.runs, 1),
                run_label(&self.runs, n)
            ),
        }
    }

    pub(crate) fn changepoint_title(&self) -> String {
        let p = &self.parameters;
        format!(
            "Change points (E-divisive means; significance {}, {} permutations, at least {} runs on each side)",
            p.significance, p.permutations, p.min_segment
        )
    }

    pub(crate) fn threshold_title(&self) -> String {
        let p = &self.parameters;
        format!(
            "Threshold flags (worse than the median of up to {} runs before by more than {}% for {} consecutive runs)",
            p.window,
            p.tolerance * 100.0,
            p.consecutive
        )
    }

    pub(crate) fn none_changed(&self) -> String {
        format!("No change point in {} series.", self.series_analysed)
    }

    pub(crate) fn none_flagged(&self) -> String {
        let p = &self.parameters;
        format!(
            "No series was worse than its baseline by more than {}% for {} consecutive runs.",
            p.tolerance * 100.0,
            p.consecutive
        )
    }

    fn short_note(&self) -> Option<String> {
        if self.too_short.is_empty() {
            return None;
        }
        let shown: Vec<String> = self
            .too_short
            .iter()
            .take(6)
            .map(|s| {
                format!(
                    "{} {} ({}, {} runs)",
                    s.case,
                    s.metric,
                    s.series.as_str(),
                    s.runs
                )
            })
            .collect();
        let more = self.too_short.len().saturating_sub(shown.len());
        Some(format!(
            "{} series had too few measured runs to analyse: {}{}",
            self.too_short.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ))
    }

    pub(crate) fn regression_lines(&self) -> Vec<String> {
        self.regressions
            .iter()
            .map(|r| {
                let commits = match (&r.commit_before, &r.commit_after) {
                    (None, None) => String::new(),
                    (b, a) => format!(", commits {}", commits(b, a)),
                };
                format!(
                    "{} {} ({}): {} since run {}{commits}, {}",
                    r.case,
                    r.metric,
                    r.series.as_str(),
                    r.method,
                    run_label(&self.runs, r.since_run),
                    percent(r.change)
                )
            })
            .collect()
    }
}

impl HistoryReport {
    /// A change point's cells, as every output shows them: case, metric,
    /// series, from run, commits, direction, before, after, change,
    /// interval, p, lasts to.
    pub(crate) fn change_row(&self, c: &ChangeReport) -> Vec<String> {
        vec![
            c.case.clone(),
            c.metric.clone(),
            c.series.as_str().to_string(),
            run_label(&self.runs, c.run),
            commits(&c.commit_before, &c.commit_after),
            direction(c.direction).to_string(),
            value(c.mean_before, c.series, &c.unit),
            value(c.mean_after, c.series, &c.unit),
            percent(c.change),
            interval(&c.interval),
            format!("{:.3}", c.p_value),
            if c.reaches_latest {
                "latest".to_string()
            } else {
                format!("run {}", c.last_run)
            },
        ]
    }

    /// A threshold flag's cells: case, metric, series, bad runs, flagged
    /// at, commits, baseline, worst, change.
    pub(crate) fn flag_row(&self, f: &FlagReport) -> Vec<String> {
        vec![
            f.case.clone(),
            f.metric.clone(),
            f.series.as_str().to_string(),
            runs_text(f.first_run, f.last_run),
            run_label(&self.runs, f.flagged_run),
            commits(&f.commit_before, &f.commit_after),
            value(f.baseline, f.series, &f.unit),
            value(f.worst, f.series, &f.unit),
            percent(f.worst_change),
        ]
    }
}

/// The project's table, its first `text` columns aligned left.
fn text_table(header: &[&str], text: usize) -> Table {
    let mut t = table(header);
    for i in 1..text {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Left);
        }
    }
    t
}

/// The console report: runs, change points, threshold flags, the verdict.
pub fn console_text(r: &HistoryReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "History: {}", r.span());
    for s in &r.skipped {
        let _ = writeln!(out, "skipped: {s}");
    }
    let _ = writeln!(
        out,
        "{} series analysed: {}.",
        r.series_analysed,
        series_words(&r.parameters.series)
    );
    if let Some(note) = r.short_note() {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(out, "\n{}", r.changepoint_title());
    if r.change_points.is_empty() {
        let _ = writeln!(out, "{}", r.none_changed());
    } else {
        let level = format!("{:.0}% interval", r.parameters.level * 100.0);
        let mut t = text_table(
            &[
                "case",
                "metric",
                "series",
                "from run",
                "commits",
                "direction",
                "before",
                "after",
                "change",
                &level,
                "p",
                "lasts to",
                "gate",
            ],
            6,
        );
        for c in &r.change_points {
            let mut row = r.change_row(c);
            row.push(if c.fails { "FAIL" } else { "" }.to_string());
            t.add_row(row);
        }
        let _ = writeln!(out, "{t}");
    }
    let _ = writeln!(out, "\n{}", r.threshold_title());
    if r.threshold_flags.is_empty() {
        let _ = writeln!(out, "{}", r.none_flagged());
    } else {
        let mut t = text_table(
            &[
                "case",
                "metric",
                "series",
                "bad runs",
                "flagged at",
                "commits",
                "baseline",
                "worst",
                "change",
                "gate",
            ],
            6,
        );
        for f in &r.threshold_flags {
            let mut row = r.flag_row(f);
            row.push(if f.reaches_latest { "FAIL" } else { "" }.to_string());
            t.add_row(row);
        }
        let _ = writeln!(out, "{t}");
    }
    out.push('\n');
    if r.has_regression() {
        let _ = writeln!(out, "Regression in the latest runs:");
        for line in r.regression_lines() {
            let _ = writeln!(out, "  {line}");
        }
    } else {
        let _ = writeln!(out, "No regression in the latest runs.");
    }
    out
}

fn series_words(name: &str) -> &'static str {
    [
        SeriesChoice::Gated,
        SeriesChoice::Ratio,
        SeriesChoice::Candidate,
        SeriesChoice::Both,
    ]
    .into_iter()
    .find(|c| c.name() == name)
    .unwrap_or(SeriesChoice::Gated)
    .describe()
}

/// A row's cells for a Markdown table: escaped, the columns `code` (case,
/// metric, commits) as code.
fn markdown_row(cells: Vec<String>, code: &[usize]) -> Vec<String> {
    cells
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            if code.contains(&i) {
                format!("`{}`", cell(&c))
            } else {
                cell(&c)
            }
        })
        .collect()
}

/// Escapes text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report, for an issue or a CI job summary.
pub fn markdown(r: &HistoryReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## servegate history: {}\n",
        if r.has_regression() {
            "❌ regression in the latest runs"
        } else {
            "✅ no regression in the latest runs"
        }
    );
    let _ = writeln!(
        out,
        "{}; {} series analysed ({}).\n",
        r.span(),
        r.series_analysed,
        series_words(&r.parameters.series)
    );
    for s in &r.skipped {
        let _ = writeln!(out, "- skipped: {}", cell(s));
    }
    if !r.skipped.is_empty() {
        out.push('\n');
    }
    if let Some(note) = r.short_note() {
        let _ = writeln!(out, "{}\n", cell(&note));
    }
    if r.has_regression() {
        out.push_str("### Regressions in the latest runs\n\n");
        for line in r.regression_lines() {
            let _ = writeln!(out, "- {}", cell(&line));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "### {}\n", r.changepoint_title());
    if r.change_points.is_empty() {
        let _ = writeln!(out, "{}\n", r.none_changed());
    } else {
        let _ = writeln!(
            out,
            "| case | metric | series | from run | commits | direction | before | after | change | {:.0}% interval | p | lasts to |",
            r.parameters.level * 100.0
        );
        out.push_str("|---|---|---|---|---|---|--:|--:|--:|--:|--:|---|\n");
        for c in &r.change_points {
            let mut row = markdown_row(r.change_row(c), &[0, 1, 4]);
            if c.fails {
                row[5] = "❌ **regression**".into();
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "### {}\n", r.threshold_title());
    if r.threshold_flags.is_empty() {
        let _ = writeln!(out, "{}\n", r.none_flagged());
    } else {
        out.push_str("| case | metric | series | bad runs | flagged at | commits | baseline | worst | change | gate |\n");
        out.push_str("|---|---|---|---|---|---|--:|--:|--:|---|\n");
        for f in &r.threshold_flags {
            let mut row = markdown_row(r.flag_row(f), &[0, 1, 5]);
            row.push(if f.reaches_latest { "❌ **FAIL**" } else { "" }.into());
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    /// `n` runs of one case, a day apart, each at its own commit, whose
    /// throughput ratio is `ratio(i)` and whose error rate is 0.
    fn history(n: usize, ratio: impl Fn(usize) -> f64) -> Vec<(String, RunResults)> {
        let template = fixtures::run(&[("scenario::a", 1.0)]);
        (0..n)
            .map(|i| {
                let mut r = template.clone();
                r.started_at = format!("2025-01-{:02}T03:00:00+00:00", i + 1);
                r.environment.as_mut().unwrap().git_commit =
                    Some(format!("c{i:02}{}", "0".repeat(37)));
                for row in &mut r.cases[0].gate {
                    if row.metric == "throughput_total" {
                        row.ratio = ratio(i);
                        row.candidate = 100.0 * ratio(i);
                    }
                }
                (format!("run-{i:02}.json"), r)
            })
            .collect()
    }

    /// ±1% around 1, the same every time.
    fn wobble(i: usize) -> f64 {
        1.0 + 0.01 * [0.3, -0.8, 0.5, -0.2, 0.9, -0.6, 0.1, -0.4, 0.7, -0.9][i % 10]
    }

    #[test]
    fn series_follow_ratio_limits_as_ratios_and_absolute_limits_as_values() {
        let mut runs = history(3, |_| 0.9);
        runs[1].1.cases.clear();
        for row in &mut runs[2].1.cases[0].gate {
            row.ratio = f64::NAN;
        }
        let s = series(runs.iter().map(|(_, r)| r), SeriesChoice::Gated);
        let tput = s.iter().find(|s| s.metric == "throughput_total").unwrap();
        assert_eq!(
            (tput.kind, tput.higher_is_better),
            (SeriesKind::Ratio, true)
        );
        // The run without the case and the unmeasured ratio have no point.
        assert_eq!(tput.points, [(0, 0.9)]);
        let errors = s.iter().find(|s| s.metric == "error_rate").unwrap();
        assert_eq!(
            (errors.kind, errors.higher_is_better),
            (SeriesKind::Candidate, false)
        );
        assert_eq!(errors.points.len(), 2);
        let both = series(runs.iter().map(|(_, r)| r), SeriesChoice::Both);
        assert_eq!(both.len(), 4);
    }

    #[test]
    fn a_lasting_drop_is_a_regression_in_the_latest_runs() {
        // Throughput ratio 1.0, then 0.8 from run 7 on.
        let runs = history(12, |i| if i >= 6 { 0.8 * wobble(i) } else { wobble(i) });
        let r = analyse(
            &runs,
            vec!["run-x.json: incomplete".into()],
            &Params::default(),
        );
        assert_eq!(r.series_analysed, 2);
        let c = &r.change_points[..];
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            (c[0].run, c[0].direction, c[0].reaches_latest, c[0].fails),
            (7, Direction::Regression, true, true)
        );
        assert_eq!(c[0].commit_before.as_deref().unwrap()[..3], *"c05");
        assert_eq!(c[0].commit_after.as_deref().unwrap()[..3], *"c06");
        assert!((c[0].change + 0.2).abs() < 0.01, "{:?}", c[0]);
        assert!(c[0].interval[0] < c[0].change && c[0].change < c[0].interval[1]);
        assert!(c[0].p_value <= 0.01);
        let f = &r.threshold_flags[..];
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (
                f[0].first_run,
                f[0].flagged_run,
                f[0].last_run,
                f[0].reaches_latest
            ),
            (7, 9, 12, true)
        );
        assert_eq!(r.regressions.len(), 2);
        let text = console_text(&r);
        assert!(text.contains("7 (2025-01-07 03:00:00)"), "{text}");
        assert!(text.contains("c050000000..c060000000"), "{text}");
        assert!(text.contains("Regression in the latest runs:"), "{text}");
        assert!(
            text.contains("scenario::a throughput_total (ratio): change point since run 7"),
            "{text}"
        );
        assert!(text.contains("skipped: run-x.json: incomplete"), "{text}");
        let md = markdown(&r);
        assert!(
            md.starts_with("## servegate history: ❌ regression"),
            "{md}"
        );
        assert!(
            md.contains("| `scenario::a` | `throughput_total` | ratio | 7 (2025-01-07 03:00:00) |"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["regressions"][0]["since_run"], 7);
        assert_eq!(json["change_points"][0]["direction"], "regression");
        assert_eq!(json["parameters"]["permutations"], 199);
    }

    #[test]
    fn improvements_recoveries_and_small_changes_do_not_fail() {
        // A rise in throughput is an improvement.
        let up = history(12, |i| if i >= 6 { 1.2 * wobble(i) } else { wobble(i) });
        let r = analyse(&up, Vec::new(), &Params::default());
        assert_eq!(r.change_points[0].direction, Direction::Improvement);
        assert!(!r.has_regression(), "{r:?}");
        // A drop that was fixed: its level does not reach the latest run.
        // (A split compares all before with all after, so a dip in the
        // middle needs more runs than a step to stand out: 16 here, not 12.)
        let fixed = history(48, |i| {
            if (16..32).contains(&i) {
                0.8 * wobble(i)
            } else {
                wobble(i)
            }
        });
        let r = analyse(&fixed, Vec::new(), &Params::default());
        let runs: Vec<usize> = r.change_points.iter().map(|c| c.run).collect();
        assert_eq!(runs, [17, 33], "{r:?}");
        assert_eq!(r.change_points[0].last_run, 32);
        assert!(!r.change_points[0].reaches_latest && r.change_points[1].reaches_latest);
        assert_eq!(r.threshold_flags.len(), 1);
        assert!(!r.has_regression(), "{:?}", r.regressions);
        assert!(console_text(&r).contains("No regression in the latest runs."));
        // A lasting 5% drop is a change point, but within the 10% tolerance.
        let small = history(20, |i| if i >= 10 { 0.95 * wobble(i) } else { wobble(i) });
        let r = analyse(&small, Vec::new(), &Params::default());
        assert_eq!(r.change_points.len(), 1);
        assert!(!r.has_regression(), "{:?}", r.regressions);
        assert!(console_text(&r).contains("No series was worse than its baseline"));
    }

    #[test]
    fn flat_history_says_so_in_sentences() {
        let runs = history(10, wobble);
        let r = analyse(&runs, Vec::new(), &Params::default());
        assert!(r.change_points.is_empty() && r.threshold_flags.is_empty());
        let text = console_text(&r);
        assert!(text.contains("No change point in 2 series."), "{text}");
        assert!(!text.contains('┌'), "no empty table: {text}");
        assert!(markdown(&r).contains("✅ no regression"));
    }

    #[test]
    fn runs_order_by_start_then_commit_and_few_runs_are_named() {
        let mut runs = history(3, wobble);
        runs[0].1.started_at = "2025-01-02T03:00:00+00:00".into();
        runs.reverse();
        order_runs(&mut runs);
        let files: Vec<&str> = runs.iter().map(|(f, _)| f.as_str()).collect();
        // run-00 and run-01 start together; run-00's commit c00… sorts first.
        assert_eq!(files, ["run-00.json", "run-01.json", "run-02.json"]);
        let p = Params::default();
        assert_eq!(p.min_runs(), 6);
        assert!(
            p.too_few(5).unwrap().contains("at least 6 runs"),
            "{:?}",
            p.too_few(5)
        );
        assert_eq!(p.too_few(6), None);
        // Series shorter than that are listed, not analysed.
        let r = analyse(&history(4, wobble), Vec::new(), &p);
        assert_eq!((r.series_analysed, r.too_short.len()), (0, 2));
        assert!(console_text(&r).contains("2 series had too few measured runs"));
    }
}
