//! One case in detail: its verdict and description, the workload, the
//! targets as configured, every target's absolute metrics, the failed
//! requests, the gate table, and the distributions from its records.

use std::fmt::Write;

use super::distributions::distributions;
use super::verdict_html;
use crate::config::{CaseConfig, TargetSpec};
use crate::report::console::{case_verdict, message_lines, num, unmeasured_note, GateCells};
use crate::report::markdown::html_escape as esc;
use crate::results::{CaseReport, TargetReport};
use crate::stats::Distribution;

/// The whole of one case.
pub fn case_html(c: &CaseReport) -> String {
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<section class=\"case\" id=\"case-{}\">\n<h3>{} — {}</h3>",
        esc(&crate::files::file_stem(&c.name)),
        esc(&c.name),
        verdict_html(case_verdict(&c.gate))
    );
    if let Some(d) = &c.description {
        let _ = writeln!(html, "<p>{}</p>", esc(d));
    }
    html.push_str(&workload_html(c));
    html.push_str(&targets_html(c));
    html.push_str(&metrics_html(c));
    html.push_str(&turns_html(c));
    html.push_str(&errors_html(c));
    html.push_str(&gate_html(c));
    html.push_str(&distributions(c));
    html.push_str("</section>\n");
    html
}

/// The sides of a case, named.
fn sides(c: &CaseReport) -> [(&'static str, &TargetReport); 2] {
    [("candidate", &c.candidate), ("baseline", &c.baseline)]
}

/// What was sent: prompts, output length, load, request counts.
fn workload_html(c: &CaseReport) -> String {
    let w = &c.workload;
    let load = match w.rate {
        Some(rate) => {
            let cap = w
                .max_concurrency
                .map(|m| format!(", at most {m} in flight"))
                .unwrap_or_default();
            format!("{rate} req/s (burstiness {}){cap}", w.burstiness)
        }
        None => format!("concurrency {}", w.concurrency),
    };
    let repeats = c.config.as_ref().map(|cfg| cfg.repeats).unwrap_or(1);
    format!(
        "<table class=\"workload\"><thead><tr><th>prompts</th><th>max_tokens</th><th>load</th><th>num_requests</th><th>warmup</th><th>repeats</th></tr></thead><tbody>\n<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{repeats}</td></tr>\n</tbody></table>\n",
        esc(&w.prompts.label()),
        w.max_tokens,
        esc(&load),
        w.num_requests,
        w.warmup
    )
}

/// How a target was reached, from the case's configuration.
fn started_as(config: Option<&CaseConfig>, t: &TargetReport) -> String {
    if let Some(path) = &t.recorded_from {
        return format!("recorded in {}", path.display());
    }
    let spec: Option<&TargetSpec> = config.and_then(|cfg| cfg.targets.get(&t.target));
    match spec {
        Some(TargetSpec {
            command: Some(argv),
            ..
        }) => format!("command: {}", argv.join(" ")),
        Some(TargetSpec { url: Some(url), .. }) => format!("URL: {url}"),
        Some(TargetSpec { sim: Some(sim), .. }) => {
            let knobs = serde_json::to_value(sim)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            let knobs: Vec<String> = knobs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!("embedded engine ({})", knobs.join(", "))
        }
        _ => "—".into(),
    }
}

/// The targets as configured: name, how started, model, address.
fn targets_html(c: &CaseReport) -> String {
    let mut html = String::from("<table class=\"targets text\"><thead><tr><th>side</th><th>target</th><th>started as</th><th>model</th><th>URL</th><th>requests shaped</th></tr></thead><tbody>\n");
    for (role, t) in sides(c) {
        let shaped = t
            .probe
            .as_ref()
            .map_or_else(|| "—".to_string(), |p| p.choices.join("; "));
        let _ = writeln!(
            html,
            "<tr><td>{role}</td><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            esc(&t.target),
            esc(&started_as(c.config.as_ref(), t)),
            esc(&t.model),
            esc(&t.url),
            esc(&shaped)
        );
    }
    html.push_str("</tbody></table>\n");
    for (role, t) in sides(c) {
        if let Some(line) = super::super::console::server_metrics_line(role, t) {
            let _ = writeln!(html, "<p class=\"note\">{}</p>", esc(&line));
        }
    }
    html
}

/// With conversations: each side's figures per turn position; nothing otherwise.
fn turns_html(c: &CaseReport) -> String {
    let mut html = String::new();
    for (role, t) in sides(c) {
        let Some(sessions) = &t.summary.sessions else {
            continue;
        };
        let _ = writeln!(
            html,
            "<p class=\"note\">{role} `{}`: {} of {} sessions completed every turn</p>\n<table class=\"metrics\"><thead><tr><th>turn</th><th>ok</th><th>prompt tokens</th><th>TTFT p50</th><th>TTFT p99</th><th>E2E p50</th></tr></thead><tbody>",
            esc(&t.target),
            sessions.completed,
            sessions.sessions
        );
        for turn in &t.summary.turns {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                turn.turn + 1,
                turn.completed,
                turn.sent,
                num(turn.input_tokens_mean),
                num(turn.ttft_ms.p50),
                num(turn.ttft_ms.p99),
                num(turn.e2e_ms.p50)
            );
        }
        html.push_str("</tbody></table>\n");
    }
    html
}

/// p50, p90 and p99 cells of a distribution.
fn percentile_cells(d: &Distribution) -> String {
    [d.p50, d.p90, d.p99]
        .iter()
        .map(|v| format!("<td>{}</td>", num(*v)))
        .collect()
}

/// Every target's absolute metrics: latency percentiles, throughput, requests.
fn metrics_html(c: &CaseReport) -> String {
    let mut html = String::from(
        "<table class=\"metrics\"><thead><tr><th rowspan=\"2\">target</th><th colspan=\"3\">TTFT (ms)</th><th colspan=\"3\">ITL (ms)</th><th colspan=\"3\">TPOT (ms)</th><th colspan=\"3\">E2E latency (ms)</th><th rowspan=\"2\">output tok/s</th><th rowspan=\"2\">tok/s per request</th><th rowspan=\"2\">req/s</th><th rowspan=\"2\">ok</th><th rowspan=\"2\">failed</th></tr>\n<tr>",
    );
    for _ in 0..4 {
        html.push_str("<th>p50</th><th>p90</th><th>p99</th>");
    }
    html.push_str("</tr></thead><tbody>\n");
    for (role, t) in sides(c) {
        let s = &t.summary;
        let runs = if t.runs.len() > 1 {
            format!(", {} runs", t.runs.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            html,
            "<tr><td>{role} ({}{runs})</td>{}{}{}{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&t.target),
            percentile_cells(&s.ttft_ms),
            percentile_cells(&s.itl_ms),
            percentile_cells(&s.tpot_ms),
            percentile_cells(&s.e2e_ms),
            num(s.throughput_total),
            num(s.throughput_tps.mean),
            num(s.request_throughput),
            s.completed,
            if s.failed > 0 { "fail" } else { "" },
            s.failed
        );
    }
    html.push_str("</tbody></table>\n");
    html
}

/// The failed requests of each side: how many, of which kinds, and the
/// most frequent messages; nothing when none failed.
fn errors_html(c: &CaseReport) -> String {
    let failing: Vec<(&str, &TargetReport)> = sides(c)
        .into_iter()
        .filter(|(_, t)| t.errors.values().sum::<usize>() > 0)
        .collect();
    if failing.is_empty() {
        return String::new();
    }
    let mut html = String::from("<table class=\"errors\"><thead><tr><th>target</th><th>failed</th><th>by kind</th><th>messages (most frequent first)</th></tr></thead><tbody>\n");
    for (role, t) in failing {
        let kinds: Vec<String> = t
            .summary
            .errors_by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} × {n}"))
            .collect();
        let _ = writeln!(
            html,
            "<tr><td>{role} ({})</td><td>{}</td><td>{}</td><td class=\"text\"><pre>{}</pre></td></tr>",
            esc(&t.target),
            t.errors.values().sum::<usize>(),
            esc(&kinds.join(", ")),
            esc(message_lines(&t.errors, "").trim_start())
        );
    }
    html.push_str("</tbody></table>\n");
    html
}

/// The gate table, and why some of its metrics were not measured.
fn gate_html(c: &CaseReport) -> String {
    if c.gate.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<table class=\"gate\"><thead><tr><th>gate metric</th><th>candidate</th><th>baseline</th><th>ratio</th><th>interval</th><th>limit</th><th>verdict</th></tr></thead><tbody>\n",
    );
    // The same cell texts as the console and Markdown tables.
    for r in &c.gate {
        let cells = GateCells::of(r);
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&cells.metric),
            esc(&cells.candidate),
            esc(&cells.baseline),
            esc(&cells.ratio),
            esc(&cells.interval),
            esc(&cells.limit),
            verdict_html(r.verdict)
        );
    }
    html.push_str("</tbody></table>\n");
    if let Some(note) = unmeasured_note(&c.gate) {
        for line in note.lines() {
            let _ = writeln!(
                html,
                "<p class=\"unmeasured\"><strong>{}</strong></p>",
                esc(line)
            );
        }
    }
    html
}
