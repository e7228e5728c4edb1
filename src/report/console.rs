//! Console tables. Colour (verdicts) is drawn only when stdout is a
//! terminal and `NO_COLOR` is unset; piped output and test captures stay plain.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use crate::gate::{self, GateRow, Interval, Verdict};
use crate::metrics::Summary;
use crate::runner::{CaseReport, TargetReport};

/// A table with the project's look; columns after the first are right-aligned.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    if std::env::var_os("NO_COLOR").is_some() {
        t.force_no_tty();
    }
    t.set_header(header.iter().map(Cell::new));
    for i in 1..header.len() {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// A number with as many decimals as its size deserves.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "n/a".into()
        } else {
            "inf".into()
        };
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// `[0.981, 1.012]`, or `—` without an interval.
pub fn interval_text(interval: Option<&Interval>) -> String {
    match interval {
        Some(i) => format!("[{:.3}, {:.3}]", i.lo, i.hi),
        None => "—".into(),
    }
}

/// A verdict cell, coloured on a terminal.
pub fn verdict_cell(v: Verdict) -> Cell {
    let cell = Cell::new(v.to_string());
    match v {
        Verdict::Pass => cell.fg(Color::Green),
        Verdict::Inconclusive => cell.fg(Color::Yellow),
        Verdict::Fail => cell.fg(Color::Red),
    }
}

/// The worst verdict of a case's gate rows.
pub fn case_verdict(rows: &[GateRow]) -> Verdict {
    rows.iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Pass)
}

/// metric, candidate, baseline, ratio, its interval, limit, verdict: the
/// failure message of a trial.
pub fn gate_table(rows: &[GateRow]) -> String {
    let level = rows
        .iter()
        .find_map(|r| r.interval.map(|i| i.level))
        .unwrap_or(gate::DEFAULT_LEVEL);
    let ci = format!("{:.0}% CI", level * 100.0);
    let mut t = table(&[
        "metric",
        "candidate",
        "baseline",
        "ratio",
        &ci,
        "limit",
        "verdict",
    ]);
    for r in rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", r.unit)
        };
        let limit = r.limit_with_confidence();
        t.add_row(vec![
            Cell::new(&r.metric).set_alignment(CellAlignment::Left),
            Cell::new(format!("{}{unit}", num(r.candidate))),
            Cell::new(format!("{}{unit}", num(r.baseline))),
            Cell::new(format!("{:.3}", r.ratio)),
            Cell::new(interval_text(r.interval.as_ref())),
            Cell::new(limit),
            verdict_cell(r.verdict),
        ]);
    }
    t.to_string()
}

/// Per-target metrics of one case, in the old comparison script's terms.
pub fn target_table(report: &CaseReport) -> String {
    let mut t = table(&[
        "target",
        "ok",
        "err",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p95",
        "TPOT p50",
        "E2E p50",
        "E2E p99",
        "tok/s/req",
        "tok/s total",
        "req/s",
    ]);
    for (role, tr) in [
        ("candidate", &report.candidate),
        ("baseline", &report.baseline),
    ] {
        let s = &tr.summary;
        let runs = if tr.runs.len() > 1 {
            format!(", {} runs", tr.runs.len())
        } else {
            String::new()
        };
        t.add_row(vec![
            format!("{role} ({}{runs})", tr.target),
            s.completed.to_string(),
            s.failed.to_string(),
            num(s.ttft_ms.p50),
            num(s.ttft_ms.p99),
            num(s.itl_ms.p50),
            num(s.itl_ms.p95),
            num(s.tpot_ms.p50),
            num(s.e2e_ms.p50),
            num(s.e2e_ms.p99),
            num(s.throughput_tps.mean),
            num(s.throughput_total),
            num(s.request_throughput),
        ]);
    }
    t.to_string()
}

/// The four ratios of the old comparison script: TTFT p50, per-request
/// throughput (mean), total throughput, latency p50 — `a / b`.
pub fn ratios(a: &Summary, b: &Summary) -> [f64; 4] {
    [
        gate::ratio(a.ttft_ms.p50, b.ttft_ms.p50),
        gate::ratio(a.throughput_tps.mean, b.throughput_tps.mean),
        gate::ratio(a.throughput_total, b.throughput_total),
        gate::ratio(a.e2e_ms.p50, b.e2e_ms.p50),
    ]
}

/// Ratio table across cases (candidate / baseline): TTFT p50, per-request
/// throughput, total throughput, latency p50, as the old script printed,
/// with each case's verdict.
pub fn comparison_table(reports: &[CaseReport]) -> String {
    let mut t = table(&["case", "TTFT", "Thr/req", "ThrTot", "Latency", "gate"]);
    for r in reports {
        let [ttft, per_req, total, latency] = ratios(&r.candidate.summary, &r.baseline.summary);
        t.add_row(vec![
            Cell::new(&r.name),
            Cell::new(format!("{ttft:.3}")),
            Cell::new(format!("{per_req:.3}")),
            Cell::new(format!("{total:.3}")),
            Cell::new(format!("{latency:.3}")),
            verdict_cell(case_verdict(&r.gate)),
        ]);
    }
    t.to_string()
}

/// The message a failed trial shows: what failed, then the full gate table.
pub fn failure_message(report: &CaseReport) -> String {
    let failed: Vec<&str> = report
        .gate
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.metric.as_str())
        .collect();
    let mut msg = format!(
        "{}: gate failed on {}\n{}",
        report.name,
        failed.join(", "),
        gate_table(&report.gate)
    );
    for tr in [&report.candidate, &report.baseline] {
        msg.push_str(&error_lines(tr));
    }
    msg
}

/// A note naming the inconclusive gates of a case, if any.
pub fn inconclusive_note(report: &CaseReport) -> Option<String> {
    let names: Vec<&str> = report
        .gate
        .iter()
        .filter(|r| r.verdict == Verdict::Inconclusive)
        .map(|r| r.metric.as_str())
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "{}: inconclusive on {} (the interval straddles the limit; not a failure — more requests or `repeats` narrow it)",
            report.name,
            names.join(", ")
        )
    })
}

fn error_lines(tr: &TargetReport) -> String {
    tr.errors
        .iter()
        .map(|(reason, count)| format!("\n{} ({}): {count} × {reason}", tr.target, tr.url))
        .collect()
}
