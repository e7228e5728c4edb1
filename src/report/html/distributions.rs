//! Per case, from the kept records: the CDFs of TTFT, ITL, TPOT and E2E
//! latency of both targets, the input and output token counts, and a
//! timeline of every request (sent, first token, last token), where a
//! stall or a burst shows. Without records, one sentence says so.

use plotters::prelude::*;

use super::draw::{
    draw_legend, extent, padded, tick, Area, Chart, DrawResult, BASELINE, CANDIDATE, DESC_SIZE,
    FAIL, FONT, LABEL_SIZE,
};
use crate::files::file_stem;
use crate::metrics::{RequestRecord, Series};
use crate::results::{CaseReport, TargetReport};

/// Chart size: three fit side by side.
const SIZE: (u32, u32) = (420, 300);
/// Points a CDF line is drawn through at most.
const CDF_POINTS: usize = 400;
/// Requests a timeline draws at most (evenly picked beyond that).
const TIMELINE_REQUESTS: usize = 1500;

/// The sentence shown instead of charts when neither target kept records.
pub const NO_RECORDS: &str = "No per-request records were kept for this case (run with --save-detailed to keep them), so no distributions, token counts or timeline are drawn.";

/// The distribution charts of one case, or the sentence saying why there are none.
pub fn distributions(case: &CaseReport) -> String {
    if case.candidate.records.is_empty() && case.baseline.records.is_empty() {
        return format!("<p class=\"note no-records\">{NO_RECORDS}</p>\n");
    }
    let mut charts = String::new();
    for (series, name, unit) in [
        (Series::Ttft, "TTFT", "requests"),
        (Series::Itl, "ITL", "token gaps"),
        (Series::Tpot, "TPOT", "requests"),
        (Series::E2e, "E2E latency", "requests"),
    ] {
        charts.push_str(&cdf_chart(case, series, name, unit));
    }
    charts.push_str(&token_chart(case));
    charts.push_str(&timeline_charts(case));
    format!("<div class=\"charts\">\n{charts}</div>\n")
}

/// Sorted values as CDF points (value, fraction at or below), thinned to
/// `CDF_POINTS` order statistics.
fn cdf_of(mut values: Vec<f64>) -> Vec<(f64, f64)> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let step = n.div_ceil(CDF_POINTS).max(1);
    let mut points: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (values[i], (i + 1) as f64 / n as f64))
        .collect();
    if n > 0 && points.last().is_some_and(|p| p.1 < 1.0) {
        points.push((values[n - 1], 1.0));
    }
    points
}

/// A side's CDF of `series`: from its records (exact), else joined through
/// the summary's percentiles.
fn cdf_points(t: &TargetReport, series: Series) -> (Vec<(f64, f64)>, bool) {
    if !t.records.is_empty() {
        let mut values = Vec::new();
        for r in &t.records {
            series.per_request(r, &mut values);
        }
        return (cdf_of(values), true);
    }
    let d = t.summary.distribution(series);
    if d.count == 0 {
        return (Vec::new(), false);
    }
    let points = [
        (d.min, 0.0),
        (d.p50, 0.5),
        (d.p90, 0.9),
        (d.p95, 0.95),
        (d.p99, 0.99),
        (d.max, 1.0),
    ];
    (
        points.into_iter().filter(|p| p.0.is_finite()).collect(),
        false,
    )
}

/// A step function through CDF points (exact ones), or the points joined.
fn steps(points: &[(f64, f64)], exact: bool) -> Vec<(f64, f64)> {
    if !exact {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(points.len() * 2);
    let mut prev = 0.0;
    for &(x, y) in points {
        out.push((x, prev));
        out.push((x, y));
        prev = y;
    }
    out
}

/// One series' CDF, candidate against baseline; nothing when neither side
/// has a value (TPOT of one-token answers, say).
fn cdf_chart(case: &CaseReport, series: Series, name: &str, unit: &str) -> String {
    let (cand, exact_c) = cdf_points(&case.candidate, series);
    let (base, exact_b) = cdf_points(&case.baseline, series);
    if cand.is_empty() && base.is_empty() {
        return String::new();
    }
    let joined = match (exact_c, exact_b) {
        (true, true) => "",
        _ => "; a side without saved records is drawn through its percentiles",
    };
    let chart = Chart {
        kind: "cdf",
        id: format!("cdf-{}-{}", file_stem(&case.name), series_id(series)),
        title: format!("{name} distribution"),
        x: format!("{name} (ms)"),
        y: format!("fraction of {unit}"),
        caption: format!(
            "{}: {name} of every request, cumulative; blue = candidate ({}), orange = baseline ({}){joined}",
            case.name, case.candidate.target, case.baseline.target
        ),
    };
    let lines = [
        Line::new("candidate", CANDIDATE, steps(&cand, exact_c)),
        Line::new("baseline", BASELINE, steps(&base, exact_b)),
    ];
    chart.render(SIZE, |root| {
        draw_lines(root, &chart, &lines, SeriesLabelPosition::LowerRight)
    })
}

fn series_id(series: Series) -> &'static str {
    match series {
        Series::Ttft => "ttft",
        Series::Itl => "itl",
        Series::Tpot => "tpot",
        Series::E2e => "e2e",
        Series::Queue => "queue",
        Series::Throughput => "throughput",
        Series::LaterTurnTtft => "later_turn_ttft",
    }
}

/// One line of a cumulative chart.
struct Line {
    name: &'static str,
    color: RGBAColor,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

impl Line {
    fn new(name: &'static str, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Line {
            name,
            color: color.to_rgba(),
            points,
            dashed: false,
        }
    }

    fn dashed(self) -> Self {
        Line {
            color: self.color.mix(0.6),
            dashed: true,
            ..self
        }
    }
}

/// Cumulative lines on one chart: the x axis from the smallest value to
/// the largest, the fraction from 0 to 1.
fn draw_lines(
    root: &Area,
    spec: &Chart,
    lines: &[Line],
    legend: SeriesLabelPosition,
) -> DrawResult {
    let (lo, hi) = extent(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
    let (x0, x1) = padded(lo, hi);
    let mut chart = spec
        .builder(root, 45, 55)
        .build_cartesian_2d(x0.max(0.0)..x1, 0.0..1.04)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(&spec.x)
        .y_desc(&spec.y)
        .x_labels(5)
        .y_labels(6)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        .x_label_formatter(&tick)
        .y_label_formatter(&|y| if *y <= 1.0 { tick(y) } else { String::new() })
        .draw()?;
    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let style = line.color.stroke_width(2);
        let points = line.points.clone();
        let series = if line.dashed {
            chart.draw_series(DashedLineSeries::new(points, 5, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(points, style))?
        };
        series
            .label(line.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    draw_legend(&mut chart, legend)
}

/// Input and output tokens per successful request, cumulative: output
/// solid, input dashed; nothing without token counts.
fn token_chart(case: &CaseReport) -> String {
    let ok = |t: &TargetReport| -> Vec<RequestRecord> {
        t.records.iter().filter(|r| r.ok()).cloned().collect()
    };
    let (c, b) = (ok(&case.candidate), ok(&case.baseline));
    let output = |rs: &[RequestRecord]| {
        steps(
            &cdf_of(rs.iter().map(|r| r.output_tokens as f64).collect()),
            true,
        )
    };
    let input = |rs: &[RequestRecord]| {
        let counts = rs.iter().filter_map(|r| r.input_tokens).map(|v| v as f64);
        steps(&cdf_of(counts.collect()), true)
    };
    let lines = [
        Line::new("candidate output", CANDIDATE, output(&c)),
        Line::new("baseline output", BASELINE, output(&b)),
        Line::new("candidate input", CANDIDATE, input(&c)).dashed(),
        Line::new("baseline input", BASELINE, input(&b)).dashed(),
    ];
    if lines.iter().all(|l| l.points.is_empty()) {
        return String::new();
    }
    let chart = Chart {
        kind: "tokens",
        id: format!("tokens-{}", file_stem(&case.name)),
        title: "tokens per request".into(),
        x: "tokens per request (tokens)".into(),
        y: "fraction of requests".into(),
        caption: format!(
            "{}: prompt (input, dashed) and answer (output, solid) length of every successful request, cumulative",
            case.name
        ),
    };
    chart.render(SIZE, |root| {
        draw_lines(root, &chart, &lines, SeriesLabelPosition::UpperLeft)
    })
}

/// A tick label at whole numbers only.
fn whole(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// One request on the timeline: sent, first token (when any), done, failed.
struct Span {
    start: f64,
    first: Option<f64>,
    end: f64,
    failed: bool,
}

/// A side's requests in the order sent, phases (repeats) placed one after
/// another, thinned to `TIMELINE_REQUESTS`: (spans, requests in all).
fn spans(t: &TargetReport) -> (Vec<Span>, usize) {
    let mut out = Vec::new();
    let mut offset = 0.0;
    for phase in t.record_runs() {
        let mut phase_end: f64 = 0.0;
        for r in phase {
            out.push(Span {
                start: offset + r.start_s,
                first: r
                    .ttft_s()
                    .filter(|_| r.ok())
                    .map(|f| offset + r.start_s + f),
                end: offset + r.end_s,
                failed: !r.ok(),
            });
            phase_end = phase_end.max(r.end_s);
        }
        offset += phase_end;
    }
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    let all = out.len();
    let step = all.div_ceil(TIMELINE_REQUESTS).max(1);
    let thinned = out.into_iter().step_by(step).collect();
    (thinned, all)
}

/// One side's timeline: who, and its requests.
struct Side<'a> {
    role: &'static str,
    target: &'a TargetReport,
    color: RGBColor,
    spans: Vec<Span>,
    /// Requests in all, before thinning.
    all: usize,
}

/// A timeline per side that kept records, on a shared time axis.
fn timeline_charts(case: &CaseReport) -> String {
    let sides: Vec<Side> = [
        ("candidate", &case.candidate, CANDIDATE),
        ("baseline", &case.baseline, BASELINE),
    ]
    .into_iter()
    .filter(|s| !s.1.records.is_empty())
    .map(|(role, target, color)| {
        let (spans, all) = spans(target);
        Side {
            role,
            target,
            color,
            spans,
            all,
        }
    })
    .collect();
    let t_max = sides
        .iter()
        .flat_map(|s| s.spans.iter().map(|r| r.end))
        .fold(0.0, f64::max)
        .max(1e-3);
    sides
        .iter()
        .map(|side| timeline_chart(case, side, t_max))
        .collect()
}

fn timeline_chart(case: &CaseReport, side: &Side, t_max: f64) -> String {
    let shown = if side.spans.len() < side.all {
        format!(
            "; {} of {} requests shown, evenly picked",
            side.spans.len(),
            side.all
        )
    } else {
        String::new()
    };
    let phases = if side.target.runs.len() > 1 {
        "; phases one after another"
    } else {
        ""
    };
    let role = side.role;
    let chart = Chart {
        kind: "timeline",
        id: format!("timeline-{}-{role}", file_stem(&case.name)),
        title: format!("{role} requests over time"),
        x: "time since the phase began (s)".into(),
        y: "request (in order sent)".into(),
        caption: format!(
            "{}: {role} ({}), one line per request from send to last token, pale until its first token, red with a cross when it failed{phases}{shown}",
            case.name, side.target.target
        ),
    };
    chart.render(SIZE, |root| {
        draw_timeline(root, &chart, side.color, &side.spans, t_max)
    })
}

fn draw_timeline(
    root: &Area,
    spec: &Chart,
    color: RGBColor,
    spans: &[Span],
    t_max: f64,
) -> DrawResult {
    let n = spans.len().max(1) as f64;
    let mut chart = spec
        .builder(root, 45, 55)
        .build_cartesian_2d(0.0..t_max * 1.02, 0.0..n + 1.0)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(&spec.x)
        .y_desc(&spec.y)
        .x_labels(6)
        .y_labels(6)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        .x_label_formatter(&tick)
        .y_label_formatter(&whole)
        .disable_y_mesh()
        .draw()?;
    let width = (200.0 / n).clamp(1.0, 4.0) as u32;
    let waiting = color.mix(0.3).stroke_width(width);
    let streaming = color.stroke_width(width);
    for (i, s) in spans.iter().enumerate() {
        let y = i as f64 + 1.0;
        let parts = match (s.failed, s.first) {
            (true, _) => vec![((s.start, s.end), FAIL.stroke_width(width))],
            (false, Some(f)) => vec![((s.start, f), waiting), ((f, s.end), streaming)],
            (false, None) => vec![((s.start, s.end), waiting)],
        };
        for ((a, b), style) in parts {
            chart.draw_series(LineSeries::new([(a, y), (b, y)], style))?;
        }
        if s.failed {
            chart.draw_series(std::iter::once(Cross::new(
                (s.end, y),
                4,
                FAIL.stroke_width(2),
            )))?;
        }
    }
    Ok(())
}
