//! The page's structure from fixtures: sections present only with
//! something in them, the per-case tables, the distributions (or the
//! sentence saying there are none), and the quality chart's groups.

use super::*;
use crate::report::fixtures;
use crate::results::TaskScore;

/// The text between `<h2`/`<h3` headings, for each heading: none may be empty.
fn assert_no_empty_section(html: &str) {
    let body = &html[html.find("<body>").unwrap()..];
    let at = |tag: &str| body.match_indices(tag).map(|(i, _)| i).collect::<Vec<_>>();
    let (h2, h3) = (at("<h2"), at("<h3"));
    let mut headings: Vec<(usize, bool)> = h2.iter().map(|&i| (i, true)).collect();
    headings.extend(h3.iter().map(|&i| (i, false)));
    for &(start, top) in &headings {
        // An h2 runs to the next h2; an h3 to the next heading.
        let end = headings
            .iter()
            .filter(|&&(i, t)| i > start && (t || !top))
            .map(|&(i, _)| i)
            .min()
            .unwrap_or(body.len());
        let heading_end = body[start..].find("</h").unwrap() + start;
        let rest = &body[heading_end..end];
        assert!(
            !strip_tags(rest).trim().is_empty() || rest.contains("<svg"),
            "empty section after {}",
            &body[start..heading_end]
        );
    }
    assert!(!html.contains("<tbody>\n</tbody>") && !html.contains("<tbody></tbody>"));
    assert!(!html.contains("<div class=\"charts\">\n</div>"));
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in s.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out.replace("</h2>", "").replace("</h3>", "")
}

/// Every figure declares a title and both axis labels, and draws each as SVG text.
fn assert_charts_labelled(html: &str) {
    for fig in html.split("<figure").skip(1) {
        let attr = |name: &str| -> String {
            let at = fig
                .find(&format!("{name}=\""))
                .unwrap_or_else(|| panic!("no {name}"));
            let rest = &fig[at + name.len() + 2..];
            rest[..rest.find('"').unwrap()].to_string()
        };
        for name in ["data-title", "data-x-label", "data-y-label"] {
            let want = attr(name);
            assert!(!want.is_empty(), "{name} empty");
            assert!(
                fig.contains(&format!("\n{want}\n</text>")),
                "{name} {want:?} not drawn"
            );
        }
    }
}

fn scores() -> Vec<TaskScore> {
    let score = |case: &str, task: &str, metric: &str, c: f64, b: f64, se: Option<f64>| TaskScore {
        case: case.into(),
        task: task.into(),
        metric: metric.into(),
        candidate: c,
        baseline: b,
        candidate_stderr: se,
        baseline_stderr: se,
    };
    vec![
        score("suite::quick", "hellaswag", "acc", 0.41, 0.42, Some(0.01)),
        score(
            "suite::quick",
            "hellaswag",
            "acc_norm",
            0.45,
            0.46,
            Some(0.01),
        ),
        score(
            "suite::standard",
            "hellaswag",
            "acc",
            0.41,
            0.42,
            Some(0.01),
        ),
        score(
            "suite::standard",
            "truthfulqa_mc2",
            "acc",
            0.6,
            0.6,
            Some(0.02),
        ),
        score("suite::standard", "arc_easy", "acc", 0.6, 0.6, None),
    ]
}

#[test]
fn quality_groups_tasks_by_suite_with_a_legend_and_error_bars() {
    let mut run = fixtures::run(&[]);
    run.quality = scores();
    let svg = quality_charts(&run);
    // One group per suite and task; a task in two suites names its suite.
    for label in [
        "hellaswag (quick)",
        // Wrapped under its one metric.
        "(standard)",
        "truthfulqa_mc2",
        "arc_easy",
    ] {
        assert!(
            svg.contains(&format!("\n{label}\n</text>")),
            "{label}: {svg}"
        );
    }
    assert!(
        !svg.contains("\narc_easy (standard)\n"),
        "a task in one suite is not renamed"
    );
    // Each metric named under its bars.
    assert_eq!(svg.matches("\nacc_norm\n</text>").count(), 1);
    // The legend: both sides and the whisker.
    for entry in ["candidate", "baseline", "± one standard error"] {
        assert!(
            svg.contains(&format!("\n{entry}\n</text>")),
            "legend {entry}"
        );
    }
    // Ten bars (five metrics, two sides), a band per group, the background
    // and the legend's two swatches.
    assert_eq!(svg.matches("<rect").count(), 10 + 4 + 1 + 2, "{svg}");
    // Whiskers: four metrics with a standard error, two sides, and the legend's.
    assert!(svg.matches("<line").count() + svg.matches("<polyline").count() >= 8 * 3 + 3);
    assert_charts_labelled(&svg);
    run.quality.clear();
    assert!(quality_charts(&run).is_empty(), "nothing empty is drawn");
}

#[test]
fn many_tasks_spread_over_several_quality_charts() {
    let mut run = fixtures::run(&[]);
    run.quality = (0..30)
        .map(|i| TaskScore {
            case: "suite::big".into(),
            task: format!("task_with_a_long_name_{i}"),
            metric: "exact_match,strict-match".into(),
            candidate: 0.5,
            baseline: 0.5,
            candidate_stderr: None,
            baseline_stderr: None,
        })
        .collect();
    let html = quality_charts(&run);
    // 30 metrics of 1.4 widths each fill three charts, ten a chart.
    assert_eq!(html.matches("data-chart=\"quality\"").count(), 3);
    for part in html.split("<figure").skip(1) {
        assert_eq!(part.matches(">\ntask_with_a_\n</text>").count(), 10);
    }
    assert!(html.contains("quality per task (1 of "));
    // Long names are wrapped, never drawn wider than their group.
    assert!(!html.contains("\ntask_with_a_long_name_0\n"));
    assert!(!html.contains("\nexact_match,strict-match\n"));
}

#[test]
fn each_case_shows_workload_targets_metrics_errors_and_distributions() {
    let mut run = fixtures::run(&[("scenario::grid::c1", 1.0)]);
    let case = &mut run.cases[0];
    let config = case.config.as_mut().unwrap();
    config.targets.insert(
        "candidate".into(),
        toml::from_str("command = [\"./engine\", \"--port\", \"{port}\"]").unwrap(),
    );
    config.targets.insert(
        "baseline".into(),
        toml::from_str("url = \"http://10.0.0.2:8000\"").unwrap(),
    );
    case.candidate.errors.insert("HTTP 500: boom".into(), 2);
    case.candidate
        .summary
        .errors_by_kind
        .insert("http_5xx".into(), 2);
    let html = render(&[run]);
    for needle in [
        "<table class=\"workload\">",
        "<td>concurrency 1</td>",
        "command: ./engine --port {port}",
        "URL: http://10.0.0.2:8000",
        "<th colspan=\"3\">TTFT (ms)</th>",
        "<th colspan=\"3\">E2E latency (ms)</th>",
        "output tok/s",
        "req/s",
        "<table class=\"errors\">",
        "http_5xx × 2",
        "HTTP 500: boom × 2",
        "<table class=\"gate\">",
        "id=\"cdf-scenario__grid__c1-ttft\"",
        "id=\"cdf-scenario__grid__c1-itl\"",
        "id=\"cdf-scenario__grid__c1-tpot\"",
        "id=\"cdf-scenario__grid__c1-e2e\"",
        "id=\"tokens-scenario__grid__c1\"",
        "id=\"timeline-scenario__grid__c1-candidate\"",
        "id=\"timeline-scenario__grid__c1-baseline\"",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(!html.contains(NO_RECORDS));
    assert_charts_labelled(&html);
    assert_no_empty_section(&html);
}

#[test]
fn failing_case_is_drawn_red_and_marked() {
    let run = fixtures::run(&[("scenario::same", 1.0), ("scenario::slow", 1.25)]);
    let html = render(&[run]);
    assert!(html.contains("<span class=\"banner fail\">FAILED</span>"));
    assert!(html.contains("<span class=\"verdict fail\">FAIL</span>"));
    // The failing case's ratio dot and interval bar in red, the other in green.
    let ratio_chart = html
        .split("<figure")
        .find(|f| f.contains("id=\"ratio-throughput_total\""))
        .unwrap();
    assert!(ratio_chart.contains("#D62728") || ratio_chart.contains("#d62728"));
    assert!(ratio_chart.contains("#2CA02C") || ratio_chart.contains("#2ca02c"));
    assert!(!html.contains("chart could not be drawn"));
}

#[test]
fn without_records_one_sentence_replaces_the_distributions() {
    // One side without records: its CDF joins its percentiles, and says so.
    let mut run = fixtures::run(&[("scenario::x", 1.0)]);
    run.cases[0].candidate.records.clear();
    run.errors.clear();
    run.passed = true;
    let html = render(&[run.clone()]);
    assert!(html.contains("<span class=\"banner pass\">PASSED</span>"));
    assert!(html.contains("drawn through its percentiles"));
    assert!(html.contains("id=\"timeline-scenario__x-baseline\""));
    assert!(!html.contains("id=\"timeline-scenario__x-candidate\""));
    // Neither side: the sentence, and no distribution chart at all.
    run.cases[0].baseline.records.clear();
    let html = render(&[run]);
    assert_eq!(html.matches(NO_RECORDS).count(), 1);
    for kind in ["cdf", "tokens", "timeline"] {
        assert!(!html.contains(&format!("data-chart=\"{kind}\"")), "{kind}");
    }
    assert_no_empty_section(&html);
}

#[test]
fn suites_only_and_scenarios_only_pages_have_no_empty_section() {
    let mut suites_only = fixtures::run(&[]);
    suites_only.errors.clear();
    suites_only.ignored.clear();
    suites_only.quality = scores();
    let html = render(&[suites_only]);
    assert!(html.contains("id=\"quality\""));
    for absent in [
        "id=\"summary\"",
        "id=\"ratios\"",
        "id=\"concurrency\"",
        "id=\"cases\"",
    ] {
        assert!(!html.contains(absent), "{absent}");
    }
    assert_no_empty_section(&html);

    let scenarios_only = fixtures::run(&[("scenario::a", 1.0)]);
    let html = render(&[scenarios_only]);
    assert!(!html.contains("id=\"quality\""));
    assert!(html.contains("id=\"ratios\"") && html.contains("id=\"cases\""));
    assert_no_empty_section(&html);
    assert_charts_labelled(&html);

    let html = render(&[fixtures::run(&[])]);
    assert!(!html.contains("<h2"), "nothing to show, no section: {html}");
}

/// Runs a day apart whose throughput ratio is `ratio(i)`.
fn nightly(n: usize, ratio: impl Fn(usize) -> f64) -> Vec<RunResults> {
    let template = fixtures::run(&[("scenario::a", 1.0)]);
    (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.started_at = format!("2025-01-{:02}T03:00:00+00:00", i + 1);
            for row in &mut r.cases[0].gate {
                if row.metric == "throughput_total" {
                    row.ratio = ratio(i);
                    row.candidate = 100.0 * ratio(i);
                }
            }
            r
        })
        .collect()
}

#[test]
fn history_section_names_the_regressions_servegate_history_finds() {
    let wobble = |i: usize| 1.0 + 0.01 * [0.3, -0.8, 0.5, -0.2, 0.9, -0.6][i % 6];
    // 20% slower from run 7 on: a change point and a threshold flag there.
    let slowed = render(&nightly(12, |i| {
        if i >= 6 {
            0.8 * wobble(i)
        } else {
            wobble(i)
        }
    }));
    let section = &slowed[slowed.find("id=\"regressions\"").unwrap()..];
    assert!(
        section.contains("Regressions in the latest runs"),
        "{section}"
    );
    assert!(
        section.contains("scenario::a throughput_total (ratio): change point since run 7 (2025-01-07 03:00:00), commits 0123456789 (same), -20."),
        "{section}"
    );
    assert!(
        section.contains("<td class=\"fail\">regression</td>"),
        "{section}"
    );
    assert_no_empty_section(&slowed);

    let steady = render(&nightly(8, wobble));
    let section = &steady[steady.find("id=\"regressions\"").unwrap()..];
    assert!(
        section.contains("No regression in the latest runs."),
        "{section}"
    );
    assert!(
        section.contains("No change point in 2 series."),
        "{section}"
    );

    // Two runs: history charts, and a sentence on how many runs the analysis needs.
    let two = render(&nightly(2, wobble));
    assert!(
        two.contains("2 complete runs cannot show a regression"),
        "{two}"
    );
    assert_no_empty_section(&two);
    // One run: no history section at all.
    assert!(!render(&nightly(1, wobble)).contains("id=\"history\""));
}
