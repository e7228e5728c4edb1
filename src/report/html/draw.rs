//! What every chart shares: colours, the SVG canvas, the figure around it
//! (title and axis labels declared as attributes, so a browser check can
//! find them drawn), the title and margins, the legend, and axis ranges.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::markdown::html_escape as esc;

pub type DrawResult = Result<(), Box<dyn std::error::Error>>;
pub type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

pub const CANDIDATE: RGBColor = RGBColor(31, 119, 180);
pub const BASELINE: RGBColor = RGBColor(255, 127, 14);
pub const PASS: RGBColor = RGBColor(44, 160, 44);
pub const FAIL: RGBColor = RGBColor(214, 39, 40);
pub const INCONCLUSIVE: RGBColor = RGBColor(230, 160, 0);
pub const GREY: RGBColor = RGBColor(120, 120, 120);
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
pub const FONT: &str = "sans-serif";
/// Tick labels and axis descriptions.
pub const LABEL_SIZE: i32 = 11;
pub const DESC_SIZE: i32 = 12;

/// A chart's words: its title and axis labels are drawn in the SVG and
/// repeated on the figure (`data-title`, `data-x-label`, `data-y-label`).
pub struct Chart {
    /// `data-chart`: ratio, concurrency, cdf, tokens, timeline, quality, history.
    pub kind: &'static str,
    pub id: String,
    pub title: String,
    pub x: String,
    pub y: String,
    pub caption: String,
}

impl Chart {
    /// The chart drawn at `size` by `draw`, inside its figure.
    pub fn render(&self, size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> String {
        let svg = svg(size, draw);
        format!(
            "<figure class=\"chart\" data-chart=\"{}\" id=\"{}\" data-title=\"{}\" data-x-label=\"{}\" data-y-label=\"{}\">{svg}<figcaption>{}</figcaption></figure>\n",
            self.kind,
            esc(&self.id),
            esc(&self.title),
            esc(&self.x),
            esc(&self.y),
            esc(&self.caption)
        )
    }

    /// The title and margins of this chart, with label areas of the given
    /// sizes; the caller builds the coordinates.
    pub fn builder<'a, 'b>(
        &self,
        root: &'a Area<'b>,
        x_label_area: u32,
        y_label_area: u32,
    ) -> ChartBuilder<'a, 'a, SVGBackend<'b>> {
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, (FONT, 15))
            .margin(10)
            .margin_right(18)
            .x_label_area_size(x_label_area)
            .y_label_area_size(y_label_area);
        builder
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

/// The legend box, drawn the same in every chart that has one: see-through
/// white with a grey border, so a line behind it still shows.
pub fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((FONT, LABEL_SIZE))
        .draw()?;
    Ok(())
}

/// A legend entry's sample: a short line `length` pixels long.
pub fn legend_line(color: RGBColor, length: i32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + length, y)], color.stroke_width(2))
}

/// The last `::` segments of a case name (`scenario::grid::short_mt64_c1` →
/// `grid::short_mt64_c1`), or the whole name for a single-case file.
pub fn short(name: &str) -> String {
    let parts: Vec<&str> = name.split("::").collect();
    match parts.as_slice() {
        [_, file, point] => format!("{file}::{point}"),
        [_, file] => file.to_string(),
        _ => name.to_string(),
    }
}

/// `(lo, hi)` padded by 8% (and never empty).
pub fn padded(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let span = (hi - lo).abs().max(hi.abs() * 0.02).max(1e-9);
    (lo - span * 0.08, hi + span * 0.08)
}

/// Smallest and largest of `values`; infinite bounds when there are none.
pub fn extent(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
}

/// Each name once, in the order first seen (charts follow the results' order).
pub fn first_seen<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Labels the centre of segment `i` with `names[i]` and every other tick
/// with nothing, so each row or run is named once.
pub fn segment_labels(names: Vec<String>) -> impl Fn(&SegmentValue<i32>) -> String {
    move |v| match v {
        SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// How wide `text` is drawn at `size` (plotters' size), roughly: the same
/// estimate plotters lays out with, plus a margin for wide glyphs.
pub fn text_width(text: &str, size: i32) -> f64 {
    text.chars().count() as f64 * size as f64 / 1.24 * 0.62
}

/// A tick label: at most four decimals, trailing zeros dropped (`0.4`, `21`, `1.95`).
pub fn tick(x: &f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// `text` broken at spaces (and inside words longer than a line, after a
/// `_`, `-`, `,`, `:`, `.` or `/` where there is one) into lines of at most
/// `width` pixels at `size`.
pub fn wrap(text: &str, width: f64, size: i32) -> Vec<String> {
    let per_line = ((width / text_width("x", size)).floor() as usize).max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        for piece in word_pieces(word, per_line) {
            if line.is_empty() {
                line = piece;
            } else if line.chars().count() + 1 + piece.chars().count() <= per_line {
                line = format!("{line} {piece}");
            } else {
                lines.push(std::mem::replace(&mut line, piece));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A word cut into pieces of at most `per_line` characters, each ending
/// after a separator when one lies in its second half.
fn word_pieces(word: &str, per_line: usize) -> Vec<String> {
    let mut rest: Vec<char> = word.chars().collect();
    let mut out = Vec::new();
    while rest.len() > per_line {
        let window = &rest[..per_line];
        let cut = window
            .iter()
            .rposition(|c| "_-,:./".contains(*c))
            .filter(|&i| i + 1 >= per_line / 2)
            .map_or(per_line, |i| i + 1);
        out.push(rest[..cut].iter().collect());
        rest.drain(..cut);
    }
    out.push(rest.into_iter().collect());
    out
}

/// A log2 axis drawn on linear coordinates: `x` ↦ log2(x), ticks labelled
/// with the power of two they stand for.
pub fn log2_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = extent(values.into_iter().filter(|v| *v > 0.0).map(f64::log2));
    if !lo.is_finite() {
        return (-0.5, 0.5);
    }
    (lo - 0.3, hi + 0.3)
}

/// The label of a tick on a log2 axis: `2^k` written out at whole `k`, nothing between.
pub fn log2_tick(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        let v = 2f64.powi(x.round() as i32);
        if v >= 1.0 {
            format!("{v:.0}")
        } else {
            format!("{v}")
        }
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_line_within_its_width() {
        let lines = wrap("truthfulqa_mc2 acc (suite::standard)", 90.0, 11);
        assert!(lines.len() >= 2, "{lines:?}");
        for l in &lines {
            assert!(text_width(l, 11) <= 90.0, "{l:?}");
        }
        assert_eq!(
            lines.join(" ").replace(' ', ""),
            "truthfulqa_mc2acc(suite::standard)"
        );
        assert_eq!(wrap("", 90.0, 11), Vec::<String>::new());
        // Long words break after a separator where there is one.
        assert_eq!(
            wrap("exact_match,strict-match", 56.0, 11),
            ["exact_", "match,", "strict-", "match"]
        );
    }

    #[test]
    fn log2_ticks_name_powers_of_two() {
        assert_eq!(log2_tick(&0.0), "1");
        assert_eq!(log2_tick(&3.0), "8");
        assert_eq!(log2_tick(&1.5), "");
        assert_eq!(tick(&0.4), "0.4");
        assert_eq!(tick(&21.0), "21");
        assert_eq!(tick(&1.95), "1.95");
        assert_eq!(tick(&-0.00001), "0");
        let (lo, hi) = log2_range([1.0, 2.0, 64.0]);
        assert!(lo < 0.0 && hi > 6.0);
    }
}
