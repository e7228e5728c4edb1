//! Total throughput and TTFT p50 against concurrency, on a log2 axis: a
//! line per workload, candidate solid and baseline dashed.

use std::fmt::Write;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::draw::{
    draw_legend, extent, legend_line, log2_range, log2_tick, padded, tick, Area, Chart, DrawResult,
    DESC_SIZE, FONT, GREY, LABEL_SIZE, PALETTE,
};
use crate::metrics::{MetricName, Series};
use crate::results::{CaseReport, TargetReport};
use crate::stats::Stat;

/// Value against value.
type XyChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One workload's points against concurrency: (log2 concurrency, candidate, baseline).
struct Group {
    key: String,
    points: Vec<(f64, f64, f64)>,
}

/// Total throughput and TTFT p50 against concurrency.
pub fn concurrency_charts(cases: &[&CaseReport]) -> String {
    let ttft = MetricName::Dist(Series::Ttft, Stat::P50);
    concurrency_chart(
        cases,
        ("throughput_total", "output throughput (tok/s)"),
        |t| t.summary.throughput_total,
    ) + &concurrency_chart(cases, ("ttft_p50", "TTFT p50 (ms)"), |t| {
        t.summary.metric(ttft)
    })
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
/// one colour per workload; nothing when nothing was measured.
fn concurrency_chart(
    cases: &[&CaseReport],
    (metric, y_desc): (&str, &str),
    pick: impl Fn(&TargetReport) -> f64,
) -> String {
    let groups = concurrency_groups(cases, pick);
    let finite: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.points.iter().flat_map(|p| [p.1, p.2]))
        .filter(|v| v.is_finite())
        .collect();
    if finite.is_empty() {
        return String::new();
    }
    let (_, ymax) = extent(finite);
    let (_, y1) = padded(0.0, ymax);
    let x = log2_range(
        groups
            .iter()
            .flat_map(|g| g.points.iter().map(|p| 2f64.powf(p.0))),
    );
    let chart = Chart {
        kind: "concurrency",
        id: format!("concurrency-{metric}"),
        title: format!("{metric} vs concurrency"),
        x: "concurrency (requests in flight, log2 scale)".into(),
        y: y_desc.into(),
        caption: format!("{metric} against concurrency: solid = candidate, dashed = baseline, one colour per prompt set and output length"),
    };
    chart.render((640, 380), |root| {
        draw_concurrency_chart(root, &chart, &groups, x, y1)
    })
}

/// The cases' (log2 concurrency, candidate, baseline) points, one group per
/// workload in the order first seen, each by rising concurrency.
fn concurrency_groups(cases: &[&CaseReport], pick: impl Fn(&TargetReport) -> f64) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for c in cases.iter().filter(|c| c.workload.concurrency >= 1) {
        let key = group_key(c);
        let point = (
            (c.workload.concurrency as f64).log2(),
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
    spec: &Chart,
    groups: &[Group],
    (x0, x1): (f64, f64),
    y1: f64,
) -> DrawResult {
    let mut chart = spec
        .builder(root, 45, 70)
        .build_cartesian_2d(x0..x1, 0.0..y1)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(&spec.x)
        .y_desc(&spec.y)
        .y_label_formatter(&tick)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        // Ticks at whole powers of two only (a tick per power when they are few).
        .x_labels(((x1 - x0).ceil() as usize * 2).max(4))
        .x_label_formatter(&log2_tick)
        .draw()?;
    for (k, group) in groups.iter().enumerate() {
        draw_group(&mut chart, PALETTE[k % PALETTE.len()], group)?;
    }
    // Which line is which target, in grey, after the workloads' colours.
    for (label, width) in [("candidate: solid", 2), ("baseline: dashed", 1)] {
        chart
            .draw_series(LineSeries::new(Vec::<(f64, f64)>::new(), GREY))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], GREY.stroke_width(width))
            });
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
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
