//! One self-contained HTML page with charts drawn as inline SVG (plotters'
//! SVG backend: text stays text, no font files, nothing fetched), so the
//! file opens offline in any browser. Pure: results in, HTML out.
//!
//! Sections, each only when it has something to show: the verdict of every
//! case; the ratio of every gated metric per case with its confidence
//! interval; throughput and TTFT against concurrency; quality per suite and
//! task; with several runs, each metric's history and the regressions
//! `servegate history` finds in them; then every case in
//! detail (workload, targets, absolute metrics, failures, gate table and
//! the distributions from its records).

mod case;
mod concurrency;
mod distributions;
mod draw;
mod history;
mod quality;
mod ratio;

use std::fmt::Write;

use crate::gate::Verdict;
use crate::report::console::{case_verdict, ratio_text, ratios};
use crate::report::markdown::html_escape as esc;
use crate::results::{CaseReport, RunResults};

pub use distributions::NO_RECORDS;
pub use quality::quality_charts;

/// The whole page for one or more runs (oldest first; the last is shown in
/// detail, all of them in the history).
pub fn render(runs: &[RunResults]) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>servegate report</title><style>{STYLE}</style></head><body>\n<h1>servegate report</h1>\n"
    );
    let Some(latest) = runs.last() else {
        html.push_str("<p>No results.</p></body></html>\n");
        return html;
    };
    html.push_str(&run_header(runs, latest));
    let cases: Vec<&CaseReport> = latest.cases.iter().collect();
    // Each section is written only when it has something to show: a run of
    // suites alone has no performance section, one of scenarios no quality one.
    html.push_str(&cases_table_html(&cases));
    html.push_str(&not_run_html(latest));
    charts_section(
        &mut html,
        ("ratios", "Ratios with their intervals"),
        &ratio::ratio_charts(&cases),
    );
    charts_section(
        &mut html,
        ("concurrency", "Throughput and TTFT against concurrency"),
        &concurrency::concurrency_charts(&cases),
    );
    html.push_str(&quality::quality_section(latest));
    if runs.len() > 1 {
        // The section is there even without charts: the regressions
        // analysis always has something to say (if only "too few runs").
        html.push_str("<h2 id=\"history\">History</h2>\n");
        let charts = history::history_charts(runs);
        if !charts.trim().is_empty() {
            let _ = write!(html, "<div class=\"charts\">\n{charts}</div>\n");
        }
        html.push_str(&history::regressions_html(runs));
    }
    if !cases.is_empty() {
        html.push_str("<h2 id=\"cases\">Cases in detail</h2>\n");
    }
    for c in &cases {
        html.push_str(&case::case_html(c));
    }
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1360px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { margin: 28px 0 6px; }
.env, .note { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child, td.text, table.text td { text-align: left; }
thead th { background: #f4f4f4; text-align: center; }
pre { margin: 0; white-space: pre-wrap; font-size: 12px; }
td pre { max-width: 640px; }
.verdict { font-weight: 600; } .pass { color: #2c8a2c; } .fail { color: #c62828; } .inconclusive { color: #b07800; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure.chart { margin: 0; border: 1px solid #e4e4e4; padding: 6px; background: #fff; width: min-content; }
figure.chart figcaption { font-size: 12px; color: #555; }
section.case { border-top: 1px solid #eee; margin-top: 12px; }
details.flipped { margin: 6px 0 14px; } details.flipped summary { cursor: pointer; font-size: 14px; }
.banner { display: inline-block; padding: 6px 14px; border-radius: 4px; color: #fff; font-weight: 600; }
.banner.pass { background: #2c8a2c; } .banner.fail { background: #c62828; }
"#;

/// A heading and its charts, only when there are charts.
fn charts_section(html: &mut String, (id, title): (&str, &str), charts: &str) {
    if charts.trim().is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<h2 id=\"{id}\">{title}</h2>\n<div class=\"charts\">\n{charts}</div>\n"
    );
}

fn verdict_html(v: Verdict) -> String {
    let class = match v {
        Verdict::Pass => "pass",
        Verdict::Inconclusive => "inconclusive",
        Verdict::Fail => "fail",
    };
    format!("<span class=\"verdict {class}\">{v}</span>")
}

/// The latest run's outcome as a banner, with its environment and how
/// many runs the page covers.
fn run_header(runs: &[RunResults], latest: &RunResults) -> String {
    let mut html = String::new();
    let (passed, failed, inconclusive, errors) = latest.counts();
    let _ = writeln!(
        html,
        "<p><span class=\"banner {}\">{}</span> {passed} passed, {failed} failed{}{} — {}</p>",
        if latest.passed { "pass" } else { "fail" },
        if latest.passed { "PASSED" } else { "FAILED" },
        if inconclusive > 0 {
            format!(" ({inconclusive} inconclusive)")
        } else {
            String::new()
        },
        if errors > 0 {
            format!(", {errors} could not run")
        } else {
            String::new()
        },
        esc(&latest.label(runs.len() - 1))
    );
    if let Some(env) = &latest.environment {
        let _ = writeln!(html, "<p class=\"env\">{}</p>", esc(&env.one_line()));
    }
    if runs.len() > 1 {
        let _ = writeln!(html, "<p class=\"env\">{} runs; details below are of the latest, the history section covers all.</p>", runs.len());
    }
    html
}

/// A row of headline ratios per case, linked to its details; nothing
/// without cases.
fn cases_table_html(cases: &[&CaseReport]) -> String {
    if cases.is_empty() {
        return String::new();
    }
    let mut html = String::from("<h2 id=\"summary\">Cases</h2>\n<table><thead><tr><th>case</th><th>TTFT</th><th>Thr/req</th><th>ThrTot</th><th>Latency</th><th>verdict</th></tr></thead><tbody>\n");
    for c in cases {
        let [ttft, per_req, total, latency] = ratios(&c.candidate.summary, &c.baseline.summary);
        let _ = writeln!(
            html,
            "<tr><td><a href=\"#case-{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&crate::files::file_stem(&c.name)),
            esc(&c.name),
            ratio_text(ttft),
            ratio_text(per_req),
            ratio_text(total),
            ratio_text(latency),
            verdict_html(case_verdict(&c.gate))
        );
    }
    html.push_str("</tbody></table>\n<p class=\"env\">Ratios are candidate / baseline: TTFT p50, mean per-request throughput, total throughput, E2E latency p50.</p>\n");
    html
}

/// A line per case that could not run or was ignored, with why.
fn not_run_html(run: &RunResults) -> String {
    let mut html = String::new();
    for e in &run.errors {
        let _ = writeln!(
            html,
            "<p class=\"fail\">{}: {}</p>",
            esc(&e.name),
            esc(&e.error)
        );
    }
    for i in &run.ignored {
        let _ = writeln!(
            html,
            "<p class=\"env\">{}: ignored ({})</p>",
            esc(&i.name),
            esc(&i.reason)
        );
    }
    html
}

#[cfg(test)]
mod tests;
