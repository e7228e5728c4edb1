//! With several runs: each followed metric across the runs, a line per case.

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;

use super::draw::{
    draw_legend, extent, first_seen, legend_line, padded, segment_labels, short, text_width, tick,
    Area, Chart, DrawResult, DESC_SIZE, FONT, LABEL_SIZE, PALETTE,
};
use crate::report::history::{self, Trend};
use crate::results::RunResults;

/// A value against a slot per run.
type HistoryChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordi32>, RangedCoordf64>>;

const WIDTH: u32 = 640;

/// One chart per followed metric: its value in each run, a line per case.
pub fn history_charts(runs: &[RunResults]) -> String {
    let trends = history::trends(runs);
    let labels: Vec<String> = runs.iter().enumerate().map(|(i, r)| r.label(i)).collect();
    let mut out = String::new();
    for metric in first_seen(trends.iter().map(|t| &t.metric)) {
        let lines: Vec<&Trend> = trends.iter().filter(|t| t.metric == metric).collect();
        out.push_str(&history_chart(&metric, &lines, &labels));
    }
    out
}

/// One metric across the runs (`labels`, one per run); nothing when no run
/// measured it.
fn history_chart(metric: &str, lines: &[&Trend], labels: &[String]) -> String {
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
    let chart = Chart {
        kind: "history",
        id: format!("history-{metric}"),
        title: format!("history: {metric}"),
        x: "run (oldest first)".into(),
        y: if unit.is_empty() {
            metric.to_string()
        } else {
            format!("{metric} ({unit})")
        },
        caption: format!(
            "{metric} in each run, oldest first ({} to {}), one line per case",
            labels.first().cloned().unwrap_or_default(),
            labels.last().cloned().unwrap_or_default()
        ),
    };
    chart.render((WIDTH, 360), |root| {
        draw_history_chart(root, &chart, lines, labels, y_range)
    })
}

/// Slots along the axis: one per run, and empty ones on the right for the legend.
fn slots(runs: usize) -> i32 {
    let n = runs as i32;
    n + (n * 3 / 5).max(1)
}

/// The runs' names along the axis: their dates when they fit under their
/// slots, else their numbers.
fn run_names(labels: &[String]) -> Vec<String> {
    let slot = (WIDTH as f64 - 110.0) / slots(labels.len()) as f64;
    let widest = labels
        .iter()
        .map(|l| text_width(l, LABEL_SIZE))
        .fold(0.0, f64::max);
    if widest < slot - 8.0 {
        labels.to_vec()
    } else {
        (1..=labels.len()).map(|i| format!("#{i}")).collect()
    }
}

fn draw_history_chart(
    root: &Area,
    spec: &Chart,
    lines: &[&Trend],
    labels: &[String],
    (y0, y1): (f64, f64),
) -> DrawResult {
    let slots = slots(labels.len());
    let mut chart = spec
        .builder(root, 45, 70)
        .build_cartesian_2d((0..slots).into_segmented(), y0..y1)?;
    let label = segment_labels(run_names(labels));
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(slots as usize)
        .x_label_formatter(&label)
        .disable_x_mesh()
        .x_desc(&spec.x)
        .y_desc(&spec.y)
        .y_label_formatter(&tick)
        .label_style((FONT, LABEL_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        .draw()?;
    for (k, t) in lines.iter().enumerate() {
        draw_trend(&mut chart, PALETTE[k % PALETTE.len()], t)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// One case's line through the runs that measured it, a dot per run.
fn draw_trend(chart: &mut HistoryChart, color: RGBColor, t: &Trend) -> DrawResult {
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

/// What `servegate history` finds in these runs (default settings): the
/// regressions in the latest runs, the change points and the threshold
/// flags, as tables; with too few runs, one sentence says how many are
/// needed.
pub fn regressions_html(runs: &[RunResults]) -> String {
    use crate::report::markdown::html_escape as esc;
    use crate::report::regressions::{self as reg, Params};
    use std::fmt::Write;

    let params = Params::default();
    let mut html = String::from("<h3 id=\"regressions\">Regressions across runs</h3>\n");
    if let Some(why) = params.too_few(runs.len()) {
        let _ = writeln!(html, "<p class=\"note\">{}.</p>", esc(&why));
        return html;
    }
    let named: Vec<(String, &RunResults)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.label(i), r))
        .collect();
    let report = reg::analyse(&named, Vec::new(), &params);
    let _ = writeln!(
        html,
        "<p class=\"note\">As <code>servegate history</code> finds them with its defaults; {} series analysed.</p>",
        report.series_analysed
    );
    if report.regressions.is_empty() {
        html.push_str("<p class=\"pass\">No regression in the latest runs.</p>\n");
    } else {
        html.push_str("<p class=\"fail\">Regressions in the latest runs:</p>\n<ul>\n");
        for line in report.regression_lines() {
            let _ = writeln!(html, "<li>{}</li>", esc(&line));
        }
        html.push_str("</ul>\n");
    }
    // `marked`: the column drawn red on a row that fails.
    let table = |title: String,
                 header: &[&str],
                 marked: usize,
                 rows: Vec<(Vec<String>, bool)>,
                 none: String| {
        let mut out = format!("<p>{}</p>\n", esc(&title));
        if rows.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", esc(&none));
            return out;
        }
        out.push_str("<table class=\"text\"><thead><tr>");
        for h in header {
            let _ = write!(out, "<th>{}</th>", esc(h));
        }
        out.push_str("</tr></thead><tbody>\n");
        for (cells, fails) in rows {
            out.push_str("<tr>");
            for (i, c) in cells.iter().enumerate() {
                let class = if fails && i == marked {
                    " class=\"fail\""
                } else {
                    ""
                };
                let _ = write!(out, "<td{class}>{}</td>", esc(c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
        out
    };
    html.push_str(&table(
        report.changepoint_title(),
        &[
            "case", "metric", "series", "from run", "commits", "kind", "before", "after", "change",
            "interval", "p", "lasts to",
        ],
        5,
        report
            .change_points
            .iter()
            .map(|c| (report.change_row(c), c.fails))
            .collect(),
        report.none_changed(),
    ));
    html.push_str(&table(
        report.threshold_title(),
        &[
            "case",
            "metric",
            "series",
            "bad runs",
            "flagged at",
            "commits",
            "baseline",
            "worst",
            "change",
        ],
        8,
        report
            .threshold_flags
            .iter()
            .map(|f| (report.flag_row(f), f.reaches_latest))
            .collect(),
        report.none_flagged(),
    ));
    html
}
