//! A Markdown summary of a run, fit for a CI job summary
//! (`$GITHUB_STEP_SUMMARY`) or a pull-request comment.

use std::fmt::Write;

use super::console::{
    case_verdict, message_lines, num, ratio_text, ratios, unmeasured_note, GateCells,
};
use super::RunResults;
use crate::gate::{GateRow, Verdict};
use crate::results::{CaseReport, TargetReport};

/// Escapes text for a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn verdict_md(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅ pass",
        Verdict::Inconclusive => "⚠️ inconclusive",
        Verdict::Fail => "❌ **FAIL**",
    }
}

fn gate_rows_md(out: &mut String, rows: &[GateRow]) {
    out.push_str("| metric | candidate | baseline | ratio | interval | limit | verdict |\n");
    out.push_str("|---|--:|--:|--:|--:|---|---|\n");
    for r in rows {
        let c = GateCells::of(r);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            cell(&c.metric),
            c.candidate,
            c.baseline,
            c.ratio,
            r.interval_text(),
            cell(&c.limit),
            verdict_md(r.verdict)
        );
    }
}

/// The summary of one run.
pub fn run_summary(results: &RunResults) -> String {
    let mut out = String::new();
    headline(&mut out, results);
    if !results.cases.is_empty() {
        ratio_table(&mut out, &results.cases);
    }
    for c in &results.cases {
        case_details(&mut out, c);
    }
    if !results.suites.is_empty() {
        out.push_str("### Quality\n");
        for s in &results.suites {
            out.push_str(&super::quality::markdown(s));
        }
        out.push('\n');
    }
    let ignored = results.ignored.iter().map(|i| (&i.name, &i.reason));
    list_section(&mut out, "Ignored", ignored);
    let not_run = results.errors.iter().map(|e| (&e.name, &e.error));
    list_section(&mut out, "Could not run", not_run);
    if let Some(env) = &results.environment {
        let _ = writeln!(out, "<sub>{}</sub>", html_escape(&env.one_line()));
    }
    out
}

/// The verdict as a heading, the counts, and a warning when the run was cut short.
fn headline(out: &mut String, results: &RunResults) {
    let (passed, failed, inconclusive, errors) = results.counts();
    let _ = writeln!(
        out,
        "## servegate: {}\n",
        if results.passed {
            "✅ passed"
        } else {
            "❌ failed"
        }
    );
    let mut line = format!("{passed} passed, {failed} failed");
    if inconclusive > 0 {
        let _ = write!(line, " ({inconclusive} of the passed inconclusive)");
    }
    if errors > 0 {
        let _ = write!(line, ", {errors} could not run");
    }
    if !results.ignored.is_empty() {
        let _ = write!(line, ", {} ignored", results.ignored.len());
    }
    let _ = writeln!(out, "{line}.\n");
    if !results.complete {
        out.push_str(
            "⚠️ **Incomplete run**: it was interrupted; only the cases below finished.\n\n",
        );
    }
}

/// A row of headline ratios and the verdict per case.
fn ratio_table(out: &mut String, cases: &[CaseReport]) {
    out.push_str("Candidate / baseline ratios (TTFT and latency: lower is better; throughput: higher is better).\n\n");
    out.push_str("| case | TTFT | Thr/req | ThrTot | Latency | verdict |\n");
    out.push_str("|---|--:|--:|--:|--:|---|\n");
    for c in cases {
        let [ttft, per_req, total, latency] = ratios(&c.candidate.summary, &c.baseline.summary);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            cell(&c.name),
            ratio_text(ttft),
            ratio_text(per_req),
            ratio_text(total),
            ratio_text(latency),
            verdict_md(case_verdict(&c.gate))
        );
    }
    out.push('\n');
}

/// One case's gate in a `<details>` block: shown open when it failed or was
/// inconclusive, so a reader sees those first; folded when it passed.
fn case_details(out: &mut String, c: &CaseReport) {
    let verdict = case_verdict(&c.gate);
    let open = if verdict == Verdict::Pass {
        ""
    } else {
        " open"
    };
    let _ = writeln!(
        out,
        "<details{open}><summary><code>{}</code> — {}</summary>\n",
        html_escape(&c.name),
        verdict_md(verdict)
    );
    if let Some(d) = &c.description {
        let _ = writeln!(out, "{}\n", cell(d));
    }
    gate_rows_md(out, &c.gate);
    if let Some(note) = unmeasured_note(&c.gate) {
        for line in note.lines() {
            let _ = writeln!(out, "\n**{}**", cell(line));
        }
    }
    for (role, tr) in [("candidate", &c.candidate), ("baseline", &c.baseline)] {
        target_notes(out, role, tr);
    }
    out.push_str("\n</details>\n\n");
}

/// What may make a target's figures doubtful: the client falling behind,
/// and the requests that failed, grouped by message.
fn target_notes(out: &mut String, role: &str, tr: &TargetReport) {
    let label = format!("{role} `{}`", tr.target);
    if let Some(w) = super::console::client_lag_warning(&label, &tr.summary) {
        let _ = writeln!(out, "\n⚠️ {}", cell(&w));
    }
    if let Some(note) = super::console::probe_note(role, tr) {
        let _ = writeln!(out, "\n{}", cell(&note));
    }
    if let Some(line) = super::console::server_metrics_line(role, tr) {
        let _ = writeln!(out, "\n{}", cell(&line));
    }
    if let Some(line) = super::console::steady_line(role, tr, !tr.steady_windows.is_empty()) {
        let _ = writeln!(out, "\n{}", cell(&line));
    }
    if let Some(sessions) = &tr.summary.sessions {
        let _ = writeln!(
            out,
            "\n{label}, per turn ({} of {} sessions completed every turn):\n\n| turn | ok | prompt tok | TTFT p50 | TTFT p99 | E2E p50 |\n|---:|---:|---:|---:|---:|---:|",
            sessions.completed, sessions.sessions
        );
        for t in &tr.summary.turns {
            let _ = writeln!(
                out,
                "| {} | {}/{} | {} | {} | {} | {} |",
                t.turn + 1,
                t.completed,
                t.sent,
                num(t.input_tokens_mean),
                num(t.ttft_ms.p50),
                num(t.ttft_ms.p99),
                num(t.e2e_ms.p50)
            );
        }
    }
    let failed: usize = tr.errors.values().sum();
    if failed == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "\n{role} `{}`: {failed} failed request{}",
        cell(&tr.target),
        if failed == 1 { "" } else { "s" }
    );
    for line in message_lines(&tr.errors, "")
        .lines()
        .filter(|l| !l.is_empty())
    {
        let _ = writeln!(out, "- {}", cell(line));
    }
}

/// A titled list of `name: text` items; nothing when there are none.
fn list_section<'a>(
    out: &mut String,
    title: &str,
    items: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) {
    if items.len() == 0 {
        return;
    }
    let _ = writeln!(out, "### {title}\n");
    for (name, text) in items {
        let _ = writeln!(out, "- `{}`: {}", cell(name), cell(text));
    }
    out.push('\n');
}

pub(crate) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn summary_shows_verdicts_ratios_intervals_and_environment() {
        let run = fixtures::run(&[("scenario::same", 1.0), ("scenario::slow", 1.25)]);
        let md = run_summary(&run);
        assert!(md.starts_with("## servegate: ❌ failed"), "{md}");
        assert!(
            md.contains("1 passed, 1 failed, 1 could not run, 1 ignored."),
            "{md}"
        );
        assert!(md.contains("- `scenario::gpu`: requires a GPU"), "{md}");
        assert!(md.contains("| `scenario::slow` | "), "{md}");
        // The slow case fails on throughput with an interval wholly below 0.95.
        let row = md
            .lines()
            .find(|l| l.starts_with("| `throughput_total` |") && l.contains("FAIL"))
            .expect(&md);
        assert!(row.contains("0.800") && row.contains("(95%)"), "{row}");
        assert!(row.contains("ratio >= 0.95 @ 95%"), "{row}");
        // Failed cases open, passing ones folded; table cells escaped.
        assert!(md.contains("<details open><summary><code>scenario::slow</code>"));
        assert!(md.contains("<details><summary><code>scenario::same</code>"));
        assert!(md.contains("a \\| piped <description>"), "{md}");
        assert!(md.contains("- `suite::q`: not implemented"));
        assert!(md.contains("commit 0123456789 (modified)"), "{md}");
    }
}
