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
    use crate::report::regressions::{
        self as reg, commits, direction, interval, percent, run_label, runs_text, value, Params,
    };
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
        "<p class=\"note\">As <code>servegate history</code> finds them with its defaults: change points by E-divisive means \
         (significance {}, {} permutations, at least {} runs on each side) and runs worse than the median of up to {} runs \
         before by more than {}% for {} runs in a row; {} series analysed (ratios for gates with a ratio limit, \
         the candidate's value for absolute limits).</p>",
        params.changepoint.significance,
        params.changepoint.permutations,
        params.changepoint.min_size,
        params.threshold.window,
        params.threshold.tolerance * 100.0,
        params.threshold.consecutive,
        report.series_analysed
    );
    if report.regressions.is_empty() {
        html.push_str("<p class=\"pass\">No regression in the latest runs.</p>\n");
    } else {
        html.push_str("<p class=\"fail\">Regressions in the latest runs:</p>\n<ul>\n");
        for r in &report.regressions {
            let _ = writeln!(
                html,
                "<li>{} {} ({}): {} since run {}, {}, commits {}</li>",
                esc(&r.case),
                esc(&r.metric),
                r.series.as_str(),
                esc(&r.method),
                esc(&run_label(&report.runs, r.since_run)),
                percent(r.change),
                esc(&commits(&r.commit_before, &r.commit_after))
            );
        }
        html.push_str("</ul>\n");
    }
    if report.change_points.is_empty() {
        let _ = writeln!(
            html,
            "<p>No change point in {} series.</p>",
            report.series_analysed
        );
    } else {
        html.push_str("<table class=\"text\"><thead><tr><th>case</th><th>metric</th><th>series</th><th>from run</th><th>commits</th><th>before</th><th>after</th><th>change</th><th>interval</th><th>p</th><th>kind</th></tr></thead><tbody>\n");
        for c in &report.change_points {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td class=\"{}\">{}</td></tr>",
                esc(&c.case),
                esc(&c.metric),
                c.series.as_str(),
                esc(&run_label(&report.runs, c.run)),
                esc(&commits(&c.commit_before, &c.commit_after)),
                esc(&value(c.mean_before, c.series, &c.unit)),
                esc(&value(c.mean_after, c.series, &c.unit)),
                percent(c.change),
                interval(&c.interval),
                c.p_value,
                if c.fails { "fail" } else { "text" },
                direction(c.direction)
            );
        }
        html.push_str("</tbody></table>\n");
    }
    if !report.threshold_flags.is_empty() {
        html.push_str("<table class=\"text\"><thead><tr><th>case</th><th>metric</th><th>series</th><th>bad runs</th><th>flagged at</th><th>commits</th><th>baseline</th><th>worst</th><th>change</th></tr></thead><tbody>\n");
        for f in &report.threshold_flags {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.case),
                esc(&f.metric),
                f.series.as_str(),
                runs_text(f.first_run, f.last_run),
                esc(&run_label(&report.runs, f.flagged_run)),
                esc(&commits(&f.commit_before, &f.commit_after)),
                esc(&value(f.baseline, f.series, &f.unit)),
                esc(&value(f.worst, f.series, &f.unit)),
                percent(f.worst_change)
            );
        }
        html.push_str("</tbody></table>\n");
    }
    html
}
