//! The quality section: candidate and baseline scores grouped by suite and
//! task (a bar pair per metric, standard errors as whiskers, a legend),
//! then each suite's verdict table and the items that flipped.

use std::fmt::Write;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::{
    short, text_width, wrap, Area, Chart, DrawResult, BASELINE, CANDIDATE, DESC_SIZE, FONT, GREY,
};
use super::verdict_html;
use crate::gate::Verdict;
use crate::report::markdown::html_escape as esc;
use crate::results::{RunResults, SuiteReport, TaskScore};

type BarChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Pixels per metric (a candidate and a baseline bar).
const PAIR_PX: f64 = 64.0;
/// Room between two groups, in metrics.
const GAP: f64 = 0.4;
/// Metrics one chart holds at most before the rest go to the next chart.
const PAIRS_PER_CHART: f64 = 16.0;
/// Narrowest chart, in metrics: room for the title and the legend.
const MIN_PAIRS: f64 = 6.6;
/// Font size of the metric and group labels under the axis.
const TICK_SIZE: i32 = 11;
const LINE_PX: i32 = 13;

/// One suite's task: its metrics' scores, and its label under the axis.
struct Group<'a> {
    label: String,
    scores: Vec<&'a TaskScore>,
}

/// The quality heading, charts and suite tables; nothing without suites
/// or scores.
pub fn quality_section(run: &RunResults) -> String {
    let charts = quality_charts(run);
    if charts.is_empty() && run.suites.is_empty() {
        return String::new();
    }
    let mut html = String::from("<h2 id=\"quality\">Quality</h2>\n");
    if !charts.is_empty() {
        let _ = writeln!(html, "<div class=\"charts\">\n{charts}</div>");
    }
    for suite in &run.suites {
        html.push_str(&suite_html(suite));
    }
    html
}

/// The scores grouped by suite and task, in the order first seen; a task
/// found in several suites names its suite.
fn groups(scores: &[TaskScore]) -> Vec<Group<'_>> {
    let scores: Vec<&TaskScore> = scores
        .iter()
        .filter(|s| s.candidate.is_finite() || s.baseline.is_finite())
        .collect();
    let mut out: Vec<(String, String, Vec<&TaskScore>)> = Vec::new();
    for s in &scores {
        match out.iter_mut().find(|g| g.0 == s.case && g.1 == s.task) {
            Some(g) => g.2.push(s),
            None => out.push((s.case.clone(), s.task.clone(), vec![s])),
        }
    }
    let suites_of = |task: &str| out.iter().filter(|g| g.1 == task).count();
    out.iter()
        .map(|(suite, task, scores)| Group {
            label: if suites_of(task) > 1 {
                format!("{task} ({})", short(suite))
            } else {
                task.clone()
            },
            scores: scores.clone(),
        })
        .collect()
}

/// Groups split into as few charts as hold at most `PAIRS_PER_CHART`
/// metrics each, filled as evenly as that many charts allow.
fn chunks<'a>(groups: Vec<Group<'a>>) -> Vec<Vec<Group<'a>>> {
    let sizes: Vec<f64> = groups.iter().map(|g| g.scores.len() as f64 + GAP).collect();
    let charts = pack(&sizes, PAIRS_PER_CHART).last().map_or(0, |c| c + 1);
    // The smallest capacity that needs no more charts than the largest does.
    let even = (1..)
        .map(|k| PAIRS_PER_CHART * k as f64 / 40.0)
        .take_while(|cap| *cap < PAIRS_PER_CHART)
        .find(|cap| pack(&sizes, *cap).last().map_or(0, |c| c + 1) <= charts)
        .unwrap_or(PAIRS_PER_CHART);
    let mut out: Vec<Vec<Group>> = Vec::new();
    for (g, chart) in groups.into_iter().zip(pack(&sizes, even)) {
        if out.len() <= chart {
            out.push(Vec::new());
        }
        out[chart].push(g);
    }
    out
}

/// The chart of each group, filling each chart up to `capacity` in order
/// (a group larger than that gets a chart of its own).
fn pack(sizes: &[f64], capacity: f64) -> Vec<usize> {
    let mut chart = 0;
    let mut filled = 0.0;
    sizes
        .iter()
        .map(|&n| {
            if filled > 0.0 && filled + n > capacity {
                chart += 1;
                filled = 0.0;
            }
            filled += n;
            chart
        })
        .collect()
}

/// The quality charts of a run: one per chunk of tasks.
pub fn quality_charts(run: &RunResults) -> String {
    let reference = if run.suites.iter().any(|s| s.baseline.is_none()) {
        if run.suites.iter().all(|s| s.baseline.is_none()) {
            "expected"
        } else {
            "baseline or expected"
        }
    } else {
        "baseline"
    };
    let parts = chunks(groups(&run.quality));
    let count = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let title = if count > 1 {
                format!("quality per task ({} of {count})", i + 1)
            } else {
                "quality per task".into()
            };
            quality_chart(part, title, i, reference)
        })
        .collect()
}

/// Each group's first x and its metrics' x, in metric widths: the layout
/// the bars and labels share; the last value is the whole width.
fn layout(groups: &[Group]) -> (Vec<f64>, f64) {
    let mut starts = Vec::new();
    let mut x = GAP / 2.0;
    for g in groups {
        starts.push(x);
        x += g.scores.len() as f64 + GAP;
    }
    (starts, x - GAP / 2.0)
}

/// The label lines of a group, wrapped to its width.
fn label_lines(g: &Group) -> Vec<String> {
    let width = (g.scores.len() as f64 + GAP) * PAIR_PX - 10.0;
    wrap(&g.label, width, TICK_SIZE)
}

/// A metric's name under its pair of bars, wrapped to the pair's width.
fn metric_lines(metric: &str) -> Vec<String> {
    wrap(metric, PAIR_PX - 8.0, TICK_SIZE)
}

/// Label lines under the axis: the most any metric needs, and the most any group needs.
fn label_rows(groups: &[Group]) -> (usize, usize) {
    let metrics = groups
        .iter()
        .flat_map(|g| &g.scores)
        .map(|s| metric_lines(&s.metric).len())
        .max()
        .unwrap_or(1);
    let labels = groups
        .iter()
        .map(|g| label_lines(g).len())
        .max()
        .unwrap_or(1);
    (metrics, labels)
}

fn quality_chart(groups: &[Group], title: String, index: usize, reference: &str) -> String {
    // A narrow chart keeps its bars' width: the groups sit in its middle.
    let units = layout(groups).1.max(MIN_PAIRS);
    let (metric_rows, label_rows) = label_rows(groups);
    let x_area = 16 + LINE_PX as u32 * (metric_rows + label_rows) as u32 + 30;
    let width = (units * PAIR_PX) as u32 + 95;
    let chart = Chart {
        kind: "quality",
        id: format!("quality-chart-{}", index + 1),
        title,
        x: "task and metric".into(),
        y: "score (fraction, 0 to 1)".into(),
        caption: format!("score per suite, task and metric: blue = candidate, orange = {reference}, whiskers = ± one standard error"),
    };
    let height = 330 + x_area;
    chart.render((width, height), |root| {
        draw_quality(
            root,
            &chart,
            groups,
            (units, x_area, metric_rows),
            reference,
        )
    })
}

fn draw_quality(
    root: &Area,
    spec: &Chart,
    groups: &[Group],
    (units, x_area, metric_rows): (f64, u32, usize),
    reference: &str,
) -> DrawResult {
    let ymax = groups
        .iter()
        .flat_map(|g| &g.scores)
        .flat_map(|s| {
            [
                s.candidate + s.candidate_stderr.unwrap_or(0.0),
                s.baseline + s.baseline_stderr.unwrap_or(0.0),
            ]
        })
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let mut chart = spec
        .builder(root, x_area, 60)
        .margin_top(34)
        .build_cartesian_2d(0.0..units, 0.0..ymax * 1.05)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .x_desc(&spec.x)
        .y_desc(&spec.y)
        .label_style((FONT, TICK_SIZE))
        .axis_desc_style((FONT, DESC_SIZE))
        .draw()?;
    let (starts, used) = layout(groups);
    let shift = (units - used) / 2.0;
    for (g, x0) in groups.iter().zip(starts.iter().map(|x| x + shift)) {
        draw_group(&mut chart, g, x0)?;
        draw_group_labels(root, &chart, g, x0, metric_rows)?;
    }
    draw_quality_legend(root, &chart, reference)
}

/// A group's bars: per metric, candidate then baseline, each with its
/// standard error; a pale band behind the group.
fn draw_group(chart: &mut BarChart, g: &Group, x0: f64) -> DrawResult {
    let band = BLACK.mix(0.045).filled();
    let x_end = x0 + g.scores.len() as f64 + GAP;
    let top = chart.y_range().end;
    chart.draw_series(std::iter::once(Rectangle::new(
        [
            (x0 - GAP / 2.0 + 0.04, 0.0),
            (x_end - GAP / 2.0 - 0.04, top),
        ],
        band,
    )))?;
    for (k, s) in g.scores.iter().enumerate() {
        let x = x0 + GAP / 2.0 + k as f64;
        for (offset, value, stderr, color) in [
            (0.1, s.candidate, s.candidate_stderr, CANDIDATE),
            (0.5, s.baseline, s.baseline_stderr, BASELINE),
        ] {
            if !value.is_finite() {
                continue;
            }
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x + offset, 0.0), (x + offset + 0.38, value)],
                color.filled(),
            )))?;
            if let Some(e) = stderr.filter(|e| e.is_finite() && *e > 0.0) {
                chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                    x + offset + 0.19,
                    (value - e).max(0.0),
                    value,
                    value + e,
                    BLACK.stroke_width(1),
                    8,
                )))?;
            }
        }
    }
    Ok(())
}

/// Under the axis: each metric's name below its pair, then the group's
/// label below every metric's, each wrapped to its width.
fn draw_group_labels(
    root: &Area,
    chart: &BarChart,
    g: &Group,
    x0: f64,
    metric_rows: usize,
) -> DrawResult {
    let style = TextStyle::from((FONT, TICK_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let lines = |root: &Area, text: Vec<String>, (x, y): (i32, i32), style: &TextStyle| {
        text.into_iter().enumerate().try_for_each(|(i, line)| {
            root.draw(&Text::new(line, (x, y + i as i32 * LINE_PX), style.clone()))
        })
    };
    for (k, s) in g.scores.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(x0 + GAP / 2.0 + k as f64 + 0.5, 0.0));
        lines(
            root,
            metric_lines(&s.metric),
            (px, py + 6),
            &style.color(&GREY),
        )?;
    }
    let centre = x0 + (g.scores.len() as f64) / 2.0 + GAP / 2.0;
    let (px, py) = chart.backend_coord(&(centre, 0.0));
    let below = py + 12 + metric_rows as i32 * LINE_PX;
    lines(root, label_lines(g), (px, below), &style)?;
    Ok(())
}

/// The legend above the plot: candidate and reference bars, the whisker.
fn draw_quality_legend(root: &Area, chart: &BarChart, reference: &str) -> DrawResult {
    // In the top margin, above the title.
    let (x_range, _) = chart.plotting_area().get_pixel_range();
    let y = 18;
    let mut x = x_range.start;
    let style = TextStyle::from((FONT, TICK_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (label, color) in [("candidate", CANDIDATE), (reference, BASELINE)] {
        root.draw(&Rectangle::new(
            [(x, y - 5), (x + 10, y + 5)],
            color.filled(),
        ))?;
        root.draw(&Text::new(label.to_string(), (x + 15, y), style.clone()))?;
        x += 15 + text_width(label, TICK_SIZE) as i32 + 22;
    }
    root.draw(&PathElement::new(
        vec![(x + 5, y - 6), (x + 5, y + 6)],
        BLACK,
    ))?;
    for dy in [-6, 6] {
        root.draw(&PathElement::new(
            vec![(x + 1, y + dy), (x + 9, y + dy)],
            BLACK,
        ))?;
    }
    root.draw(&Text::new("± one standard error", (x + 15, y), style))?;
    Ok(())
}

/// A suite's verdict table, its paired analysis and the items that flipped.
pub fn suite_html(r: &SuiteReport) -> String {
    let mut html = String::new();
    let reference = if r.baseline.is_some() {
        "baseline"
    } else {
        "expected"
    };
    let _ = writeln!(
        html,
        "<h3 id=\"suite-{}\">{} — {}</h3>",
        esc(&crate::files::file_stem(&r.name)),
        esc(&r.name),
        verdict_html(if r.passed {
            Verdict::Pass
        } else {
            Verdict::Fail
        })
    );
    if let Some(d) = &r.description {
        let _ = writeln!(html, "<p>{}</p>", esc(d));
    }
    if !r.rows.is_empty() {
        let _ = writeln!(html, "<table class=\"suite\"><thead><tr><th>task</th><th>metric</th><th>candidate</th><th>{reference}</th><th>diff</th><th>stderr</th><th>limit</th><th>status</th></tr></thead><tbody>");
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
    }
    for line in crate::report::quality::paired_lines(r) {
        let _ = writeln!(html, "<p class=\"env\">{}</p>", esc(&line));
    }
    for p in r.paired.iter().filter(|p| !p.flipped_items.is_empty()) {
        html.push_str(&flipped_html(&p.paired.task, &p.flipped_items));
    }
    html
}

/// The items of one task the two targets answered differently, with their
/// text; open when there are few.
fn flipped_html(task: &str, items: &[crate::results::FlippedItem]) -> String {
    let mut html = String::new();
    let _ = writeln!(
        html,
        "<details class=\"flipped\"{}><summary>{}: {} item{} answered differently</summary><table class=\"text\"><thead><tr><th>item</th><th>question (end)</th><th>right answer</th><th>candidate</th><th>baseline</th></tr></thead><tbody>",
        if items.len() <= 10 { " open" } else { "" },
        esc(task),
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    );
    for item in items {
        let mark =
            |text: &str, right: bool| format!("{}{}", esc(text), if right { " ✓" } else { " ✗" });
        let subject = item
            .subject
            .as_deref()
            .map(|s| format!(" <span class=\"env\">({})</span>", esc(s)))
            .unwrap_or_default();
        let _ = writeln!(
            html,
            "<tr><td>{}{subject}</td><td><pre>{}</pre></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            item.index,
            esc(&item.question),
            esc(&item.gold),
            mark(&item.candidate, item.candidate_right),
            mark(&item.baseline, item.baseline_right)
        );
    }
    html.push_str("</tbody></table></details>\n");
    html
}
