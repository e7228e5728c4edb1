//! Console tables. Colour (verdicts) is drawn only when stdout is a
//! terminal and `NO_COLOR` is unset; piped output and test captures stay plain.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use crate::gate::{self, GateRow, Interval, Verdict};
use crate::metrics::Summary;
use crate::results::{CaseReport, TargetReport};

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

/// A value and its unit; an unmeasured value has none.
fn with_unit(v: f64, unit: &str) -> String {
    if v.is_nan() {
        num(v)
    } else {
        format!("{}{unit}", num(v))
    }
}

/// A ratio to three decimals, or `—` when there is none to show.
pub fn ratio_text(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.3}")
    } else {
        "—".into()
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
        let c = GateCells::of(r);
        t.add_row(vec![
            Cell::new(c.metric).set_alignment(CellAlignment::Left),
            Cell::new(c.candidate),
            Cell::new(c.baseline),
            Cell::new(c.ratio),
            Cell::new(c.interval),
            Cell::new(c.limit),
            verdict_cell(r.verdict),
        ]);
    }
    t.to_string()
}

/// A gate row's texts, the same in every output (the console, Markdown);
/// each output only dresses the verdict its own way.
pub struct GateCells {
    pub metric: String,
    pub candidate: String,
    pub baseline: String,
    pub ratio: String,
    pub interval: String,
    pub limit: String,
}

impl GateCells {
    pub fn of(r: &GateRow) -> Self {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", r.unit)
        };
        Self {
            metric: r.metric.clone(),
            candidate: with_unit(r.candidate, &unit),
            baseline: with_unit(r.baseline, &unit),
            ratio: ratio_text(r.ratio),
            interval: interval_text(r.interval.as_ref()),
            limit: r.limit_with_confidence(),
        }
    }
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
            Cell::new(ratio_text(ttft)),
            Cell::new(ratio_text(per_req)),
            Cell::new(ratio_text(total)),
            Cell::new(ratio_text(latency)),
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
    if let Some(note) = unmeasured_note(&report.gate) {
        msg.push('\n');
        msg.push_str(&note);
    }
    for (role, tr) in [
        ("candidate", &report.candidate),
        ("baseline", &report.baseline),
    ] {
        if let Some(lines) = error_lines(role, tr) {
            msg.push('\n');
            msg.push_str(&lines);
        }
        if let Some(note) = probe_note(role, tr) {
            msg.push('\n');
            msg.push_str(&note);
        }
        if let Some(line) = server_metrics_line(role, tr) {
            msg.push('\n');
            msg.push_str(&line);
        }
    }
    msg
}

/// What the console says of each side of a case below its tables: failed
/// requests, a client that fell behind, how requests were shaped, the
/// server's metrics, a sweep, the steady-state window. Shared by `run` and
/// `report`, so a saved run reads as it did live.
pub fn side_sections(r: &CaseReport) -> Vec<String> {
    let mut out = Vec::new();
    for (role, t) in [("candidate", &r.candidate), ("baseline", &r.baseline)] {
        let label = format!("{role} `{}`", t.target);
        out.extend(error_lines(role, t));
        out.extend(client_lag_warning(&label, &t.summary));
        out.extend(probe_note(role, t));
        out.extend(server_metrics_line(role, t));
        out.extend(sweep_table(role, t));
        out.extend(turns_table(role, t));
        out.extend(steady_line(role, t, r.workload.steady_state));
    }
    out
}

/// Which window a target was measured in, with `steady_state`.
pub fn steady_line(role: &str, tr: &TargetReport, asked: bool) -> Option<String> {
    if !asked {
        return None;
    }
    let label = format!("{role} `{}` steady state", tr.target);
    if tr.steady_windows.is_empty() {
        return Some(format!(
            "{label}: the target in flight was never reached; every request counts"
        ));
    }
    let parts: Vec<String> = tr
        .steady_windows
        .iter()
        .map(|w| {
            format!(
                "{:.2}–{:.2} s at {} in flight, {} of {} requests",
                w.start_s, w.end_s, w.target, w.kept, w.of
            )
        })
        .collect();
    Some(format!("{label}: {}", parts.join("; ")))
}

/// A sweep's loads, one row each, with the highest rate meeting the
/// objectives; nothing without a sweep.
pub fn sweep_table(role: &str, tr: &TargetReport) -> Option<String> {
    if tr.sweep.is_empty() {
        return None;
    }
    let mut t = table(&[
        "load",
        "req/s",
        "ok",
        "TTFT p50",
        "TPOT p50",
        "E2E p99",
        "within SLO",
        "meets",
    ]);
    for p in &tr.sweep {
        let s = &p.summary;
        t.add_row(vec![
            p.kind.clone(),
            num(p.rate),
            format!("{}/{}", s.completed, s.completed + s.failed),
            num(s.ttft_ms.p50),
            num(s.tpot_ms.p50),
            num(s.e2e_ms.p99),
            format!("{:.0}%", p.within_slo * 100.0),
            if p.meets { "yes" } else { "no" }.to_string(),
        ]);
    }
    let best = tr.summary.max_rate_within_slo.map_or_else(
        || "not measured".to_string(),
        |r| format!("{} req/s", num(r)),
    );
    Some(format!(
        "sweep, {role} `{}`:\n{t}\nhighest rate within the objectives: {best}",
        tr.target
    ))
}

/// A conversation workload's figures per turn position and per session;
/// nothing when requests did not come in sessions.
pub fn turns_table(role: &str, tr: &TargetReport) -> Option<String> {
    let s = &tr.summary;
    let sessions = s.sessions.as_ref()?;
    let mut t = table(&[
        "turn",
        "ok",
        "prompt tok",
        "TTFT p50",
        "TTFT p99",
        "E2E p50",
    ]);
    for turn in &s.turns {
        t.add_row(vec![
            (turn.turn + 1).to_string(),
            format!("{}/{}", turn.completed, turn.sent),
            num(turn.input_tokens_mean),
            num(turn.ttft_ms.p50),
            num(turn.ttft_ms.p99),
            num(turn.e2e_ms.p50),
        ]);
    }
    Some(format!(
        "turns, {role} `{}`:\n{t}\nsessions: {} of {} completed every turn; {} turns each (mean); {} s long (p50, think time included)",
        tr.target,
        sessions.completed,
        sessions.sessions,
        num(sessions.turns.mean),
        num(sessions.duration_ms.p50 / 1000.0),
    ))
}

/// How the probe shaped requests to a target, when that differs from the
/// usual vLLM style (a server without usage in streams, an option refused).
pub fn probe_note(role: &str, tr: &TargetReport) -> Option<String> {
    let unusual = tr.probe.as_ref()?.unusual();
    (!unusual.is_empty()).then(|| format!("{role} `{}`: {}", tr.target, unusual.join("; ")))
}

/// What the server's own `/metrics` said while the target was measured:
/// its figures, or why scraping gave none.
pub fn server_metrics_line(role: &str, tr: &TargetReport) -> Option<String> {
    let s = &tr.summary.server;
    let label = format!("{role} `{}` /metrics", tr.target);
    if s.is_empty() {
        let failed: usize = tr.server_metrics.iter().map(|p| p.failed).sum();
        let last = tr
            .server_metrics
            .iter()
            .rev()
            .find_map(|p| p.last_error.as_ref())?;
        return Some(format!("{label}: {failed} scrapes failed ({last})"));
    }
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let mut parts = Vec::new();
    for (key, what) in [("running", "running"), ("waiting", "waiting")] {
        if let (Some(peak), Some(mean)) =
            (s.get(&format!("{key}_peak")), s.get(&format!("{key}_mean")))
        {
            parts.push(format!("{what} peak {peak} (mean {mean:.1})"));
        }
    }
    if let (Some(peak), Some(mean)) = (s.get("kv_cache_usage_peak"), s.get("kv_cache_usage_mean")) {
        parts.push(format!(
            "KV cache peak {} (mean {})",
            pct(*peak),
            pct(*mean)
        ));
    }
    if let Some(rate) = s.get("prefix_cache_hit_rate") {
        parts.push(format!("prefix-cache hit rate {}", pct(*rate)));
    }
    if let Some(n) = s.get("preemptions") {
        parts.push(format!("{n} preemptions"));
    }
    Some(format!("{label}: {}", parts.join(", ")))
}

/// A warning when the client itself could not keep up while measuring a
/// target: its timestamps, not the server, set the figures.
pub fn client_lag_warning(label: &str, summary: &Summary) -> Option<String> {
    let lag = summary.client_lag.filter(|l| l.saturated)?;
    Some(format!(
        "warning: servegate could not keep up while measuring {label}: its timer ran late by \
         {:.1} ms at p99 ({:.1} ms at most) against an ITL p50 of {}; TTFT reads high and token \
         gaps bunch up (fewer streams per client, or a faster machine for the client)",
        lag.p99_ms,
        lag.max_ms,
        with_unit(summary.itl_ms.p50, " ms")
    ))
}

/// Why gate rows could not be measured (each distinct reason once), if any did not.
pub fn unmeasured_note(rows: &[GateRow]) -> Option<String> {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in rows {
        if let Some(why) = &r.unmeasured {
            match reasons.iter_mut().find(|(w, _)| w == why) {
                Some((_, metrics)) => metrics.push(&r.metric),
                None => reasons.push((why, vec![&r.metric])),
            }
        }
    }
    (!reasons.is_empty()).then(|| {
        reasons
            .iter()
            .map(|(why, metrics)| format!("not measured ({}): {why}", metrics.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    })
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

/// How many distinct failure messages a listing quotes before summing up the rest.
pub const ERROR_MESSAGES_SHOWN: usize = 5;

/// The failed requests of one target: how many, of which kinds, and the
/// most frequent distinct messages with their counts (`None` without failures).
pub fn error_lines(role: &str, tr: &TargetReport) -> Option<String> {
    let failed: usize = tr.errors.values().sum();
    if failed == 0 {
        return None;
    }
    let kinds: Vec<String> = tr
        .summary
        .errors_by_kind
        .iter()
        .map(|(kind, n)| format!("{kind} × {n}"))
        .collect();
    let kinds = if kinds.is_empty() {
        String::new()
    } else {
        format!(" ({})", kinds.join(", "))
    };
    let mut out = format!(
        "{role} `{}` ({}): {failed} failed request{}{kinds}",
        tr.target,
        tr.url,
        if failed == 1 { "" } else { "s" }
    );
    out.push_str(&message_lines(&tr.errors, "  "));
    Some(out)
}

/// Distinct messages with counts, most frequent first, at most
/// `ERROR_MESSAGES_SHOWN` of them, each line starting with `indent`.
pub fn message_lines(errors: &std::collections::BTreeMap<String, usize>, indent: &str) -> String {
    let mut by_count: Vec<(&String, &usize)> = errors.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut out = String::new();
    for (message, count) in by_count.iter().take(ERROR_MESSAGES_SHOWN) {
        out.push_str(&format!("\n{indent}{message} × {count}"));
    }
    if by_count.len() > ERROR_MESSAGES_SHOWN {
        let rest = &by_count[ERROR_MESSAGES_SHOWN..];
        let requests: usize = rest.iter().map(|(_, n)| **n).sum();
        out.push_str(&format!(
            "\n{indent}… and {} more distinct message{} ({requests} request{})",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" },
            if requests == 1 { "" } else { "s" }
        ));
    }
    out
}
