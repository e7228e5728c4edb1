//! The ratio of every gated metric per case, with its confidence interval:
//! one forest plot per metric.

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;

use super::draw::{
    extent, first_seen, padded, segment_labels, short, Area, Chart, DrawResult, DESC_SIZE, FAIL,
    FONT, GREY, INCONCLUSIVE, LABEL_SIZE, PASS,
};
use crate::config::Limit;
use crate::gate::{Interval, Verdict};
use crate::results::CaseReport;

/// A ratio against a row per case.
type RatioChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, SegmentedCoord<RangedCoordi32>>>;

/// One case's point in a ratio chart.
struct RatioRow {
    case: String,
    ratio: f64,
    interval: Option<Interval>,
    verdict: Verdict,
    limit: Option<Limit>,
}

pub fn verdict_color(v: Verdict) -> RGBColor {
    match v {
        Verdict::Pass => PASS,
        Verdict::Inconclusive => INCONCLUSIVE,
        Verdict::Fail => FAIL,
    }
}

/// One forest plot per gated ratio metric: a row per case, the measured
/// ratio with its interval, the limit(s) and 1.0 marked.
pub fn ratio_charts(cases: &[&CaseReport]) -> String {
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
    let height = 130 + 26 * rows.len() as u32;
    let level = rows
        .iter()
        .find_map(|r| r.interval.map(|i| i.level))
        .unwrap_or(crate::gate::DEFAULT_LEVEL);
    let chart = Chart {
        kind: "ratio",
        id: format!("ratio-{metric}"),
        title: format!(
            "{metric}: candidate / baseline, {:.0}% interval",
            level * 100.0
        ),
        x: format!("{metric} ratio (candidate / baseline)"),
        y: "case".into(),
        caption: format!("{metric}: dot = measured ratio (green pass, red fail, amber inconclusive), bar = interval, red line = limit, dashed = 1.0"),
    };
    chart.render((640, height), |root| {
        draw_ratio_chart(root, &chart, x_range, rows, &limits)
    })
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
    spec: &Chart,
    (x0, x1): (f64, f64),
    rows: &[RatioRow],
    limits: &[f64],
) -> DrawResult {
    let n = rows.len() as i32;
    let mut chart = spec
        .builder(root, 45, 210)
        .build_cartesian_2d(x0..x1, (0..n).into_segmented())?;
    // The first case on top.
    let label = segment_labels(rows.iter().rev().map(|r| r.case.clone()).collect());
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(rows.len())
        .y_label_formatter(&label)
        .x_labels(6)
        .x_label_formatter(&|x| format!("{x:.3}"))
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        .x_desc(&spec.x)
        .y_desc(&spec.y)
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
