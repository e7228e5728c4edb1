//! Quality suites in reports: the verdict table, the paired analysis, and
//! the per-task scores the HTML chart draws.

use comfy_table::{Cell, Color};

use super::console::{num, table};
use crate::gate::quality::Status;
pub use crate::results::task_scores;
use crate::results::SuiteReport;

/// A status cell, coloured on a terminal.
fn status_cell(s: Status, passed: bool) -> Cell {
    let cell = Cell::new(s.to_string());
    match (s, passed) {
        (_, false) => cell.fg(Color::Red),
        (Status::Better, true) => cell.fg(Color::Cyan),
        _ => cell.fg(Color::Green),
    }
}

/// A score to four decimals, or `—` when there is none.
fn score(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "—".into()
    }
}

fn diff_text(v: f64) -> String {
    if v.is_finite() {
        format!("{v:+.4}")
    } else {
        "—".into()
    }
}

fn stderr_text(s: Option<f64>) -> String {
    s.map(|v| format!("±{v:.4}")).unwrap_or_else(|| "—".into())
}

/// task, metric, candidate, baseline (or expected), diff, stderr, limit, status.
pub fn verdict_table(r: &SuiteReport) -> String {
    let reference = if r.baseline.is_some() {
        "baseline"
    } else {
        "expected"
    };
    let mut t = table(&[
        "task",
        "metric",
        "candidate",
        reference,
        "diff",
        "stderr",
        "limit",
        "status",
    ]);
    for row in &r.rows {
        t.add_row(vec![
            Cell::new(&row.task),
            Cell::new(&row.metric),
            Cell::new(score(row.candidate)),
            Cell::new(score(row.reference)),
            Cell::new(diff_text(row.diff)),
            Cell::new(stderr_text(row.stderr)),
            Cell::new(&row.limit),
            status_cell(row.status, row.passed),
        ]);
    }
    t.to_string()
}

/// One line per task: items that flipped each way and the McNemar p-value.
pub fn paired_lines(r: &SuiteReport) -> Vec<String> {
    r.paired
        .iter()
        .map(|p| {
            let p = &p.paired;
            format!(
                "{}: {} of {} items answered differently; right on the candidate only {}, on the baseline only {} (exact McNemar p = {})",
                p.task,
                p.flipped.len(),
                p.items,
                p.candidate_only,
                p.baseline_only,
                num(p.p_value)
            )
        })
        .collect()
}

/// Why rows could not be measured, one line per row that could not.
pub fn unmeasured_lines(r: &SuiteReport) -> Vec<String> {
    r.rows
        .iter()
        .filter_map(|row| {
            let why = row.unmeasured.as_ref()?;
            Some(format!("not measured ({} {}): {why}", row.task, row.metric))
        })
        .collect()
}

/// Requests, time and data of each side, for the console.
pub fn sides_lines(r: &SuiteReport) -> Vec<String> {
    let mut out = vec![format!("tokenizer: {}", r.tokenizer)];
    for t in &r.tasks {
        out.push(format!("{}: {} items from {}", t.task, t.items, t.source));
    }
    for s in std::iter::once(&r.candidate).chain(r.baseline.as_ref()) {
        let mut line = format!(
            "{} ({}): {} requests in {:.1} s",
            s.target, s.url, s.requests, s.seconds
        );
        if let Some(format) = &s.prompt_format {
            line.push_str(&format!("; prompts as {format}"));
        }
        out.push(line);
    }
    out
}

/// Everything the console shows of a suite.
pub fn suite_text(r: &SuiteReport) -> String {
    let mut out = String::new();
    for line in sides_lines(r) {
        out.push_str(&line);
        out.push('\n');
    }
    // Without a baseline or expected values there is no verdict to show.
    if !r.rows.is_empty() {
        out.push_str(&verdict_table(r));
        out.push('\n');
    }
    for line in unmeasured_lines(r) {
        out.push_str(&line);
        out.push('\n');
    }
    for line in paired_lines(r) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The failure message of a suite's trial: what degraded, and a few of the
/// items that flipped (all of them are in the results file).
pub fn failure_message(r: &SuiteReport) -> String {
    let mut out = format!("{} failed its accuracy gate\n{}", r.name, suite_text(r));
    for p in &r.paired {
        for item in p.flipped_items.iter().filter(|i| i.baseline_right).take(3) {
            out.push_str(&format!(
                "\n{} item {}: baseline chose {:?} (right), candidate chose {:?}\n  {}\n",
                p.paired.task,
                item.index,
                item.baseline,
                item.candidate,
                item.question.replace('\n', "\n  ")
            ));
        }
    }
    out
}

/// A suite's section of the Markdown summary.
pub fn markdown(r: &SuiteReport) -> String {
    let reference = if r.baseline.is_some() {
        "baseline"
    } else {
        "expected"
    };
    let mut out = format!("\n### {} {}\n", if r.passed { "✅" } else { "❌" }, r.name);
    if !r.rows.is_empty() {
        out.push_str(&format!(
            "\n| task | metric | candidate | {reference} | diff | stderr | limit | status |\n|---|---|---:|---:|---:|---:|---|---|\n"
        ));
    }
    for row in &r.rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.task,
            row.metric,
            score(row.candidate),
            score(row.reference),
            diff_text(row.diff),
            stderr_text(row.stderr),
            row.limit.replace('|', "\\|"),
            row.status
        ));
    }
    for line in unmeasured_lines(r).into_iter().chain(paired_lines(r)) {
        out.push_str(&format!("\n- {line}"));
    }
    out.push('\n');
    out
}
