//! One self-contained HTML page with charts drawn as inline SVG (plotters'
//! SVG backend: text stays text, no font files, nothing fetched), so the
//! file opens offline in any browser.
//!
//! Sections: the verdict of every case; the ratio of every gated metric per
//! case with its confidence interval; throughput and TTFT against
//! concurrency; latency CDFs per target; quality per task; with several
//! runs, each metric's history; and the gate tables.

use std::fmt::Write;

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::console::{case_verdict, num, ratio_text, ratios};
use super::history;
use super::markdown::html_escape as esc;
use super::{RunResults, TaskScore};
use crate::config::Limit;
use crate::gate::{Interval, Verdict};
use crate::metrics::Series;
use crate::results::{CaseReport, TargetReport};

type DrawResult = Result<(), Box<dyn std::error::Error>>;
type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
/// Value against value: a concurrency chart.
type XyChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
/// A ratio against a row per case.
type RatioChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, SegmentedCoord<RangedCoordi32>>>;
/// A value against a slot per run.
type HistoryChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordi32>, RangedCoordf64>>;

const CANDIDATE: RGBColor = RGBColor(31, 119, 180);
const BASELINE: RGBColor = RGBColor(255, 127, 14);
const PASS: RGBColor = RGBColor(44, 160, 44);
const FAIL: RGBColor = RGBColor(214, 39, 40);
const INCONCLUSIVE: RGBColor = RGBColor(230, 160, 0);
const GREY: RGBColor = RGBColor(120, 120, 120);
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const FONT: &str = "sans-serif";

fn verdict_color(v: Verdict) -> RGBColor {
    match v {
        Verdict::Pass => PASS,
        Verdict::Inconclusive => INCONCLUSIVE,
        Verdict::Fail => FAIL,
    }
}

/// Draws into an SVG string; a drawing error becomes a visible message.
fn svg(size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.into())
            .and_then(|_| draw(&root))
            .and_then(|_| root.present().map_err(|e| e.into()))
    };
    match result {
        Ok(()) => out,
        Err(e) => format!(
            "<p class=\"error\">chart could not be drawn: {}</p>",
            esc(&e.to_string())
        ),
    }
}

fn figure(kind: &str, id: &str, caption: &str, svg: String) -> String {
    format!(
        "<figure class=\"chart\" data-chart=\"{kind}\" id=\"{}\">{svg}<figcaption>{}</figcaption></figure>\n",
        esc(id),
        esc(caption)
    )
}

/// The last `::` segment of a case name (`scenario::grid::short_mt64_c1` → `short_mt64_c1`),
/// or the whole name for a single-case file.
fn short(name: &str) -> String {
    let parts: Vec<&str> = name.split("::").collect();
    match parts.as_slice() {
        [_, file, point] => format!("{file}::{point}"),
        [_, file] => file.to_string(),
        _ => name.to_string(),
    }
}

/// `(lo, hi)` padded by 8% (and never empty).
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let span = (hi - lo).abs().max(hi.abs() * 0.02).max(1e-9);
    (lo - span * 0.08, hi + span * 0.08)
}

/// Smallest and largest of `values`; infinite bounds when there are none.
fn extent(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
}

/// Each name once, in the order first seen (charts follow the results' order).
fn first_seen<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// The title and margins every full-size chart shares; the caller sizes the
/// label areas and builds the coordinates.
fn chart_builder<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    x_label_area: u32,
    y_label_area: u32,
) -> ChartBuilder<'a, 'a, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, (FONT, 16))
        .margin(10)
        .x_label_area_size(x_label_area)
        .y_label_area_size(y_label_area);
    builder
}

/// The legend box, drawn the same in every chart that has one: see-through
/// white with a grey border, so a line behind it still shows.
fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    position: SeriesLabelPosition,
    font_size: i32,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((FONT, font_size))
        .draw()?;
    Ok(())
}

/// A legend entry's sample: a short line `length` pixels long.
fn legend_line(color: RGBColor, length: i32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + length, y)], color.stroke_width(2))
}

/// Labels the centre of segment `i` with `names[i]` and every other tick
/// with nothing, so each row or run is named once.
fn segment_labels(names: Vec<String>) -> impl Fn(&SegmentValue<i32>) -> String {
    move |v| match v {
        SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// One case's point in a ratio chart.
struct RatioRow {
    case: String,
    ratio: f64,
    interval: Option<Interval>,
    verdict: Verdict,
    limit: Option<Limit>,
}

/// One workload's points against concurrency: (concurrency, candidate, baseline).
struct Group {
    key: String,
    points: Vec<(f64, f64, f64)>,
}

/// One forest plot per gated ratio metric: a row per case, the measured
/// ratio with its interval, the limit(s) and 1.0 marked.
fn ratio_charts(cases: &[&CaseReport]) -> String {
    let mut out = String::new();
    for metric in ratio_metrics(cases) {
        let rows = ratio_rows(cases, &metric);
        // A metric no case measured has nothing to draw.
        if !rows.is_empty() {
            out.push_str(&ratio_chart(&metric, &rows));
        }
    }
    out
}

/// The metrics some case gates on a ratio.
fn ratio_metrics(cases: &[&CaseReport]) -> Vec<String> {
    // Only ratio limits compare with the baseline; an absolute limit
    // (`error_rate = { max = 0.0 }`) has no ratio worth drawing.
    first_seen(cases.iter().flat_map(|c| {
        c.gate
            .iter()
            .filter(|r| r.limit.contains("ratio"))
            .map(|r| &r.metric)
    }))
}

/// Each case's measured ratio of `metric`, with the limit its gate sets.
fn ratio_rows(cases: &[&CaseReport], metric: &str) -> Vec<RatioRow> {
    cases
        .iter()
        .filter_map(|c| {
            let r = c.gate.iter().find(|r| r.metric == metric)?;
            let limit = c
                .config
                .as_ref()
                .and_then(|cfg| cfg.gate.get(metric).copied());
            Some(RatioRow {
                case: short(&c.name),
                ratio: r.ratio,
                interval: r.interval,
                verdict: r.verdict,
                limit,
            })
        })
        .filter(|r| r.ratio.is_finite())
        .collect()
}

/// The forest plot of one metric.
fn ratio_chart(metric: &str, rows: &[RatioRow]) -> String {
    let limits: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.limit)
        .flat_map(|l| [l.min_ratio, l.max_ratio])
        .flatten()
        .collect();
    let x_range = ratio_axis(rows, &limits);
    let height = 110 + 26 * rows.len() as u32;
    let level = rows
        .iter()
        .find_map(|r| r.interval.map(|i| i.level))
        .unwrap_or(crate::gate::DEFAULT_LEVEL);
    let title = format!(
        "{metric}: candidate / baseline, {:.0}% interval",
        level * 100.0
    );
    let chart = svg((640, height), |root| {
        draw_ratio_chart(root, &title, x_range, rows, &limits)
    });
    figure(
        "ratio",
        &format!("ratio-{metric}"),
        &format!("{metric}: dot = measured ratio (green pass, red fail, amber inconclusive), bar = interval, red line = limit, dashed = 1.0"),
        chart,
    )
}

/// The ratio axis: every ratio, interval end and limit, and 1.0, in view.
fn ratio_axis(rows: &[RatioRow], limits: &[f64]) -> (f64, f64) {
    let values = rows
        .iter()
        .flat_map(|row| {
            let r = row.ratio;
            let (lo, hi) = row.interval.map(|i| (i.lo, i.hi)).unwrap_or((r, r));
            [r, lo, hi]
        })
        .chain(limits.iter().copied())
        .chain([1.0])
        .filter(|v| v.is_finite());
    let (lo, hi) = extent(values);
    padded(lo, hi)
}

fn draw_ratio_chart(
    root: &Area,
    title: &str,
    (x0, x1): (f64, f64),
    rows: &[RatioRow],
    limits: &[f64],
) -> DrawResult {
    let n = rows.len() as i32;
    let mut chart =
        chart_builder(root, title, 30, 190).build_cartesian_2d(x0..x1, (0..n).into_segmented())?;
    // The first case on top.
    let label = segment_labels(rows.iter().rev().map(|r| r.case.clone()).collect());
    chart
        .configure_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&label)
        .x_label_formatter(&|x| format!("{x:.3}"))
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .x_desc("ratio")
        .disable_y_mesh()
        .draw()?;
    draw_ratio_marks(&mut chart, limits)?;
    for (i, row) in rows.iter().enumerate() {
        draw_ratio_row(&mut chart, SegmentValue::CenterOf(n - 1 - i as i32), row)?;
    }
    Ok(())
}

/// The vertical lines across all rows: 1.0 (no change) dashed, each limit red.
fn draw_ratio_marks(chart: &mut RatioChart, limits: &[f64]) -> DrawResult {
    let top = SegmentValue::Last;
    let bottom = SegmentValue::Exact(0);
    chart.draw_series(DashedLineSeries::new(
        [(1.0, bottom.clone()), (1.0, top.clone())],
        4,
        4,
        GREY.stroke_width(1),
    ))?;
    for l in limits {
        chart.draw_series(LineSeries::new(
            [(*l, bottom.clone()), (*l, top.clone())],
            FAIL.stroke_width(2),
        ))?;
    }
    Ok(())
}

/// One case's row: its interval as a bar, its ratio as a dot, in the
/// colour of its verdict.
fn draw_ratio_row(chart: &mut RatioChart, y: SegmentValue<i32>, row: &RatioRow) -> DrawResult {
    let color = verdict_color(row.verdict);
    let ratio = row.ratio;
    if let Some(iv) = row.interval {
        chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
            y.clone(),
            iv.lo,
            ratio,
            iv.hi,
            color.stroke_width(2),
            8,
        )))?;
    }
    chart.draw_series(std::iter::once(Circle::new((ratio, y), 5, color.filled())))?;
    Ok(())
}

/// The workload minus concurrency, as a series label: `short, 64 tokens`.
fn group_key(c: &CaseReport) -> String {
    let w = &c.workload;
    let mut key = format!("{}, {} tokens", w.prompts.label(), w.max_tokens);
    if let Some(rate) = w.rate {
        let _ = write!(key, ", {rate} req/s");
    }
    key
}

/// `metric` of candidate (solid) and baseline (dashed) against concurrency,
/// one colour per workload.
fn concurrency_chart(
    cases: &[&CaseReport],
    metric: &str,
    y_desc: &str,
    pick: impl Fn(&TargetReport) -> f64,
) -> String {
    let groups = concurrency_groups(cases, pick);
    let finite: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.points.iter().flat_map(|p| [p.1, p.2]))
        .filter(|v| v.is_finite())
        .collect();
    // Nothing measured draws nothing (the gate section says why).
    if finite.is_empty() {
        return String::new();
    }
    let (ymin, ymax) = extent(finite);
    let (_, y1) = padded(ymin.min(0.0), ymax);
    let cmax = groups
        .iter()
        .flat_map(|g| g.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let title = format!("{metric} vs concurrency");
    let chart = svg((640, 360), |root| {
        draw_concurrency_chart(root, &title, y_desc, &groups, (cmax * 1.1 + 0.5, y1))
    });
    figure(
        "concurrency",
        &format!("concurrency-{metric}"),
        &format!("{metric} against concurrency: solid = candidate, dashed = baseline, one colour per prompt set and output length"),
        chart,
    )
}

/// The cases' (concurrency, candidate, baseline) points, one group per
/// workload in the order first seen, each by rising concurrency.
fn concurrency_groups(cases: &[&CaseReport], pick: impl Fn(&TargetReport) -> f64) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for c in cases {
        let key = group_key(c);
        let point = (
            c.workload.concurrency as f64,
            pick(&c.candidate),
            pick(&c.baseline),
        );
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => g.points.push(point),
            None => groups.push(Group {
                key,
                points: vec![point],
            }),
        }
    }
    for g in &mut groups {
        g.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    groups
}

fn draw_concurrency_chart(
    root: &Area,
    title: &str,
    y_desc: &str,
    groups: &[Group],
    (x1, y1): (f64, f64),
) -> DrawResult {
    let mut chart = chart_builder(root, title, 35, 60).build_cartesian_2d(0.0..x1, 0.0..y1)?;
    chart
        .configure_mesh()
        .x_desc("concurrency")
        .y_desc(y_desc)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        // Concurrency is a whole number: label whole ticks only.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .draw()?;
    for (k, group) in groups.iter().enumerate() {
        draw_group(&mut chart, PALETTE[k % PALETTE.len()], group)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 12)
}

/// One workload: candidate as a solid line with dots (named in the legend),
/// baseline as a dashed line with rings; unmeasured points are left out.
fn draw_group(chart: &mut XyChart, color: RGBColor, group: &Group) -> DrawResult {
    let finite = |value: fn(&(f64, f64, f64)) -> f64| -> Vec<(f64, f64)> {
        group
            .points
            .iter()
            .map(|p| (p.0, value(p)))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let cand = finite(|p| p.1);
    let base = finite(|p| p.2);
    chart
        .draw_series(LineSeries::new(cand.clone(), color.stroke_width(2)))?
        .label(group.key.clone())
        .legend(legend_line(color, 20));
    chart.draw_series(cand.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    chart.draw_series(DashedLineSeries::new(
        base.clone(),
        5,
        4,
        color.stroke_width(1),
    ))?;
    chart.draw_series(
        base.iter()
            .map(|&p| Circle::new(p, 3, color.stroke_width(1))),
    )?;
    Ok(())
}

/// Empirical CDF points of a series from records, else from the summary's
/// percentiles (min, p50, p90, p95, p99, max).
fn cdf_points(t: &TargetReport, series: Series) -> (Vec<(f64, f64)>, bool) {
    if !t.records.is_empty() {
        let mut values = Vec::new();
        for r in &t.records {
            series.per_request(r, &mut values);
        }
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let points = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, (i + 1) as f64 / n))
            .collect();
        return (points, true);
    }
    let d = t.summary.distribution(series);
    if d.count == 0 {
        return (Vec::new(), false);
    }
    (
        vec![
            (d.min, 0.0),
            (d.p50, 0.5),
            (d.p90, 0.9),
            (d.p95, 0.95),
            (d.p99, 0.99),
            (d.max, 1.0),
        ],
        false,
    )
}

/// Step function through sorted CDF points.
fn steps(points: &[(f64, f64)], exact: bool) -> Vec<(f64, f64)> {
    if !exact {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    let mut prev = 0.0;
    for &(x, y) in points {
        out.push((x, prev));
        out.push((x, y));
        prev = y;
    }
    out
}

/// One CDF panel: candidate and baseline of one series.
fn cdf_panel(area: &Area, case: &CaseReport, series: Series, label: &str) -> DrawResult {
    let (cand, exact_c) = cdf_points(&case.candidate, series);
    let (base, exact_b) = cdf_points(&case.baseline, series);
    let xs: Vec<f64> = cand
        .iter()
        .chain(&base)
        .map(|p| p.0)
        .filter(|x| x.is_finite())
        .collect();
    if xs.is_empty() {
        area.titled(&format!("{label}: no successful request"), (FONT, 13))?;
        return Ok(());
    }
    let (lo, hi) = extent(xs);
    let (x0, x1) = padded(lo, hi);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{label} CDF"), (FONT, 13))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(36)
        .build_cartesian_2d(x0.max(0.0)..x1, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc(format!("{label} (ms)"))
        .x_labels(5)
        .y_labels(5)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 11))
        .x_label_formatter(&|x| num(*x))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            steps(&cand, exact_c),
            CANDIDATE.stroke_width(2),
        ))?
        .label("candidate")
        .legend(legend_line(CANDIDATE, 16));
    chart
        .draw_series(LineSeries::new(
            steps(&base, exact_b),
            BASELINE.stroke_width(2),
        ))?
        .label("baseline")
        .legend(legend_line(BASELINE, 16));
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 11)
}

/// TTFT and E2E latency CDFs of one case, candidate against baseline.
fn cdf_chart(case: &CaseReport) -> String {
    let exact = !case.candidate.records.is_empty() && !case.baseline.records.is_empty();
    let id = format!("cdf-{}", crate::files::file_stem(&case.name));
    let caption = format!(
        "{}: TTFT and end-to-end latency of every request, cumulative; blue = candidate ({}), orange = baseline ({}){}",
        case.name,
        case.candidate.target,
        case.baseline.target,
        if exact {
            ""
        } else {
            "; without saved records (--save-detailed) the curve joins the percentiles"
        }
    );
    let title = short(&case.name);
    let chart = svg((640, 270), |root| {
        let root = root.titled(&title, (FONT, 14))?;
        let panels = root.split_evenly((1, 2));
        cdf_panel(&panels[0], case, Series::Ttft, "TTFT")?;
        cdf_panel(&panels[1], case, Series::E2e, "E2E latency")?;
        Ok(())
    });
    figure("cdf", &id, &caption, chart)
}

/// Candidate and baseline score per task, with standard errors; nothing
/// when there are no quality results.
pub fn quality_chart(scores: &[TaskScore]) -> String {
    let title = "quality per task";
    let caption =
        "accuracy per task: blue = candidate, orange = baseline, whiskers = ± standard error";
    if scores.is_empty() {
        return String::new();
    }
    let n = scores.len() as i32;
    let ymax = scores
        .iter()
        .flat_map(|s| {
            [
                s.candidate + s.candidate_stderr.unwrap_or(0.0),
                s.baseline + s.baseline_stderr.unwrap_or(0.0),
            ]
        })
        .fold(0.0, f64::max)
        .max(0.05);
    let names: Vec<String> = scores
        .iter()
        .map(|s| format!("{} {}", s.task, s.metric))
        .collect();
    let chart = svg((640, 360), |root| {
        let mut chart = chart_builder(root, title, 40, 50)
            .build_cartesian_2d(0.0..n as f64, 0.0..ymax * 1.15)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(scores.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.26 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("score")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()?;
        for (i, s) in scores.iter().enumerate() {
            let x = i as f64;
            for (offset, value, stderr, color) in [
                (0.15, s.candidate, s.candidate_stderr, CANDIDATE),
                (0.5, s.baseline, s.baseline_stderr, BASELINE),
            ] {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x + offset, 0.0), (x + offset + 0.33, value)],
                    color.filled(),
                )))?;
                if let Some(e) = stderr {
                    chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                        x + offset + 0.165,
                        value - e,
                        value,
                        value + e,
                        BLACK.stroke_width(1),
                        6,
                    )))?;
                }
            }
        }
        Ok(())
    });
    figure("quality", "quality-chart", caption, chart)
}

/// One chart per followed metric: its value in each run, a line per case.
fn history_charts(runs: &[RunResults]) -> String {
    let trends = history::trends(runs);
    let labels: Vec<String> = runs.iter().enumerate().map(|(i, r)| r.label(i)).collect();
    let mut out = String::new();
    for metric in first_seen(trends.iter().map(|t| &t.metric)) {
        let lines: Vec<&history::Trend> = trends.iter().filter(|t| t.metric == metric).collect();
        out.push_str(&history_chart(&metric, &lines, &labels));
    }
    out
}

/// One metric across the runs (`labels`, one per run); nothing when no run
/// measured it.
fn history_chart(metric: &str, lines: &[&history::Trend], labels: &[String]) -> String {
    let values: Vec<f64> = lines
        .iter()
        .flat_map(|t| t.values.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return String::new();
    }
    let (lo, hi) = extent(values);
    let y_range = padded(lo, hi);
    let unit = lines.first().map(|t| t.unit.clone()).unwrap_or_default();
    let title = format!("history: {metric}");
    let chart = svg((640, 340), |root| {
        draw_history_chart(root, &title, &unit, lines, labels, y_range)
    });
    figure(
        "history",
        &format!("history-{metric}"),
        &format!(
            "{metric} in each run, oldest first ({} to {}), one line per case",
            labels.first().cloned().unwrap_or_default(),
            labels.last().cloned().unwrap_or_default()
        ),
        chart,
    )
}

/// The runs' names along the axis: dates fit under a few runs; more runs
/// are numbered.
fn run_names(labels: &[String]) -> Vec<String> {
    if labels.len() <= 4 {
        labels.to_vec()
    } else {
        (1..=labels.len()).map(|i| format!("#{i}")).collect()
    }
}

fn draw_history_chart(
    root: &Area,
    title: &str,
    unit: &str,
    lines: &[&history::Trend],
    labels: &[String],
    (y0, y1): (f64, f64),
) -> DrawResult {
    let n = labels.len() as i32;
    // Empty slots on the right leave room for the legend.
    let slots = n + (n * 3 / 5).max(1);
    let mut chart = chart_builder(root, title, 35, 60)
        .build_cartesian_2d((0..slots).into_segmented(), y0..y1)?;
    let label = segment_labels(run_names(labels));
    chart
        .configure_mesh()
        .x_labels(slots as usize)
        .x_label_formatter(&label)
        .disable_x_mesh()
        .y_desc(unit)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()?;
    for (k, t) in lines.iter().enumerate() {
        draw_trend(&mut chart, PALETTE[k % PALETTE.len()], t)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 11)
}

/// One case's line through the runs that measured it, a dot per run.
fn draw_trend(chart: &mut HistoryChart, color: RGBColor, t: &history::Trend) -> DrawResult {
    let points: Vec<(SegmentValue<i32>, f64)> = t
        .values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            v.filter(|v| v.is_finite())
                .map(|v| (SegmentValue::CenterOf(i as i32), v))
        })
        .collect();
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
        .label(short(&t.case))
        .legend(legend_line(color, 16));
    chart.draw_series(
        points
            .into_iter()
            .map(|p| Circle::new(p, 3, color.filled())),
    )?;
    Ok(())
}

/// A suite's verdict table and the items that flipped.
fn suite_html(r: &crate::results::SuiteReport) -> String {
    let mut html = String::new();
    let reference = if r.baseline.is_some() {
        "baseline"
    } else {
        "expected"
    };
    let _ = writeln!(
        html,
        "<h3>{} — {}</h3>\n<table><thead><tr><th>task</th><th>metric</th><th>candidate</th><th>{reference}</th><th>diff</th><th>stderr</th><th>limit</th><th>status</th></tr></thead><tbody>",
        esc(&r.name),
        verdict_html(if r.passed { Verdict::Pass } else { Verdict::Fail })
    );
    for row in &r.rows {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:+.4}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&row.task),
            esc(&row.metric),
            row.candidate,
            row.reference,
            row.diff,
            row.stderr.map(|s| format!("±{s:.4}")).unwrap_or_else(|| "—".into()),
            esc(&row.limit),
            if row.passed { "pass" } else { "fail" },
            row.status
        );
    }
    html.push_str("</tbody></table>\n");
    for line in super::quality::paired_lines(r) {
        let _ = writeln!(html, "<p class=\"env\">{}</p>", esc(&line));
    }
    for p in r.paired.iter().filter(|p| !p.flipped_items.is_empty()) {
        let _ = writeln!(
            html,
            "<details><summary>{}: {} items answered differently</summary><table><thead><tr><th>item</th><th>question</th><th>right answer</th><th>candidate</th><th>baseline</th></tr></thead><tbody>",
            esc(&p.paired.task),
            p.flipped_items.len()
        );
        for item in &p.flipped_items {
            let mark =
                |text: &str, right: bool| format!("{}{}", esc(text), if right { " ✓" } else { "" });
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td><pre>{}</pre></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                item.index,
                esc(&item.question),
                esc(&item.gold),
                mark(&item.candidate, item.candidate_right),
                mark(&item.baseline, item.baseline_right)
            );
        }
        html.push_str("</tbody></table></details>\n");
    }
    html
}

fn verdict_html(v: Verdict) -> String {
    let class = match v {
        Verdict::Pass => "pass",
        Verdict::Inconclusive => "inconclusive",
        Verdict::Fail => "fail",
    };
    format!("<span class=\"verdict {class}\">{v}</span>")
}

fn gate_table_html(c: &CaseReport) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>metric</th><th>candidate</th><th>baseline</th><th>ratio</th><th>interval</th><th>limit</th><th>verdict</th></tr></thead><tbody>\n",
    );
    for r in &c.gate {
        let interval = r.interval_text();
        let limit = r.limit_with_confidence();
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{} {}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.metric),
            num(r.candidate),
            esc(&r.unit),
            num(r.baseline),
            esc(&r.unit),
            ratio_text(r.ratio),
            interval,
            esc(&limit),
            verdict_html(r.verdict)
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1360px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.env { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f4f4f4; }
.verdict { font-weight: 600; } .pass { color: #2c8a2c; } .fail { color: #c62828; } .inconclusive { color: #b07800; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure.chart { margin: 0; border: 1px solid #e4e4e4; padding: 6px; background: #fff; width: min-content; }
figure.chart figcaption { font-size: 12px; color: #555; }
.banner { display: inline-block; padding: 6px 14px; border-radius: 4px; color: #fff; font-weight: 600; }
.banner.pass { background: #2c8a2c; } .banner.fail { background: #c62828; }
"#;

/// A heading and its charts, only when there are charts.
fn charts_section(html: &mut String, id: &str, title: &str, charts: &str) {
    if charts.trim().is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<h2 id=\"{id}\">{title}</h2>\n<div class=\"charts\">\n{charts}</div>\n"
    );
}

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
        "ratios",
        "Ratios with their intervals",
        &ratio_charts(&cases),
    );
    charts_section(
        &mut html,
        "concurrency",
        "Throughput and TTFT against concurrency",
        &concurrency_charts(&cases),
    );
    if !latest.suites.is_empty() || !latest.quality.is_empty() {
        quality_section(&mut html, latest);
    }
    if runs.len() > 1 {
        charts_section(&mut html, "history", "History", &history_charts(runs));
    }
    let cdfs: String = cases.iter().map(|c| cdf_chart(c)).collect();
    charts_section(&mut html, "cdf", "Latency distributions", &cdfs);
    if !cases.is_empty() {
        html.push_str("<h2 id=\"gates\">Gates</h2>\n");
    }
    for c in &cases {
        html.push_str(&case_gates_html(c));
    }
    html.push_str("</body></html>\n");
    html
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

/// A row of headline ratios per case, linked to its gate table; nothing
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

/// Total throughput and TTFT p50 against concurrency.
fn concurrency_charts(cases: &[&CaseReport]) -> String {
    concurrency_chart(cases, "throughput_total", "output tok/s", |t| {
        t.summary.throughput_total
    }) + &concurrency_chart(cases, "ttft_p50", "TTFT p50 (ms)", |t| {
        t.summary.metric(crate::metrics::MetricName::Dist(
            Series::Ttft,
            crate::stats::Stat::P50,
        ))
    })
}

/// The quality chart and each suite's table.
fn quality_section(html: &mut String, run: &RunResults) {
    charts_section(html, "quality", "Quality", &quality_chart(&run.quality));
    for suite in &run.suites {
        html.push_str(&suite_html(suite));
    }
}

/// One case's gate: its verdict, description, table, what was not
/// measured, and the requests that failed.
fn case_gates_html(c: &CaseReport) -> String {
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<h3 id=\"case-{}\">{} — {}</h3>",
        esc(&crate::files::file_stem(&c.name)),
        esc(&c.name),
        verdict_html(case_verdict(&c.gate))
    );
    if let Some(d) = &c.description {
        let _ = writeln!(html, "<p>{}</p>", esc(d));
    }
    html.push_str(&gate_table_html(c));
    if let Some(note) = super::console::unmeasured_note(&c.gate) {
        for line in note.lines() {
            let _ = writeln!(
                html,
                "<p class=\"unmeasured\"><strong>{}</strong></p>",
                esc(line)
            );
        }
    }
    for (role, t) in [("candidate", &c.candidate), ("baseline", &c.baseline)] {
        if let Some(lines) = super::console::error_lines(role, t) {
            let _ = writeln!(html, "<pre class=\"errors\">{}</pre>", esc(&lines));
        }
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn quality_chart_draws_bars_when_there_are_scores() {
        let scores = vec![
            TaskScore {
                case: "suite::hs".into(),
                task: "hellaswag".into(),
                metric: "acc_norm".into(),
                candidate: 0.41,
                baseline: 0.42,
                candidate_stderr: Some(0.01),
                baseline_stderr: Some(0.01),
            },
            TaskScore {
                case: "suite::arc".into(),
                task: "arc_easy".into(),
                metric: "acc".into(),
                candidate: 0.6,
                baseline: 0.6,
                candidate_stderr: None,
                baseline_stderr: None,
            },
        ];
        let svg = quality_chart(&scores);
        assert!(!svg.contains("no quality results"));
        assert!(svg.contains("hellaswag acc_norm"), "{svg}");
        // Four bars (filled rectangles) besides the background.
        assert!(svg.matches("<rect").count() >= 5, "{svg}");
        assert!(quality_chart(&[]).is_empty(), "nothing empty is drawn");
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
        // Without records the CDFs join percentiles, and say so.
        let mut run = fixtures::run(&[("scenario::x", 1.0)]);
        run.cases[0].candidate.records.clear();
        run.errors.clear();
        run.passed = true;
        let html = render(&[run]);
        assert!(html.contains("<span class=\"banner pass\">PASSED</span>"));
        assert!(html.contains("the curve joins the percentiles"));
        assert!(!html.contains("chart could not be drawn"));
    }
}
