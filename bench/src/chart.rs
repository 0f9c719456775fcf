//! Line charts as inline SVG for the HTML report: axes, ticks, shaded
//! bands and one `<path>` per series. No scripts, fonts or stylesheets, so a
//! report stays readable offline and from a CI artifact.
//!
//! The output is well-formed XML (every element closed, every attribute
//! quoted, every text escaped), so it can be embedded in HTML or saved as
//! an `.svg` file as it is.

use std::fmt::Write;

use crate::html::escape;

/// Size of every chart in SVG user units (pixels at 100% zoom).
const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 340.0;
const MARGIN_LEFT: f64 = 78.0;
const MARGIN_RIGHT: f64 = 40.0;
const MARGIN_TOP: f64 = 36.0;
const MARGIN_BOTTOM: f64 = 52.0;

/// Colours picked to stay apart for the colour-blind (Okabe–Ito).
pub const BLUE: &str = "#0072b2";
pub const ORANGE: &str = "#e69f00";
pub const GREEN: &str = "#009e73";
pub const VERMILLION: &str = "#d55e00";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithmic; values at or below zero are drawn at the axis minimum.
    Log10,
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    pub min: f64,
    pub max: f64,
    /// (position in axis units, label).
    pub ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis from 0 to a round number at or above `max`, with about five ticks.
    pub fn linear_from_zero(label: &str, max: f64, format: fn(f64) -> String) -> Self {
        let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
        let step = nice_step(max / 5.0);
        let top = (max / step).ceil() * step;
        let count = (top / step).round() as usize;
        let ticks = (0..=count).map(|i| i as f64 * step).map(|v| (v, format(v))).collect();
        Self { label: label.into(), scale: Scale::Linear, min: 0.0, max: top, ticks }
    }

    /// A logarithmic axis covering `min..=max`, ticks at 1, 2 and 5 times powers of ten.
    pub fn log10(label: &str, min: f64, max: f64, format: fn(f64) -> String) -> Self {
        let min = if min.is_finite() && min > 0.0 { min } else { 1.0 };
        let max = if max.is_finite() && max > min { max } else { min * 10.0 };
        let candidates = |exponent: i32| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(exponent));
        let low_exponent = min.log10().floor() as i32;
        let high_exponent = max.log10().ceil() as i32;
        let low = candidates(low_exponent).into_iter().rev().find(|v| *v <= min).unwrap_or(10f64.powi(low_exponent));
        let high = (low_exponent..=high_exponent)
            .flat_map(candidates)
            .find(|v| *v >= max)
            .unwrap_or(10f64.powi(high_exponent));
        let ticks = (low_exponent..=high_exponent)
            .flat_map(candidates)
            .filter(|v| *v >= low && *v <= high)
            .map(|v| (v, format(v)))
            .collect();
        Self { label: label.into(), scale: Scale::Log10, min: low, max: high, ticks }
    }

    /// Where `value` falls on the axis, 0.0 (min) to 1.0 (max), clamped.
    fn fraction(&self, value: f64) -> f64 {
        let fraction = match self.scale {
            Scale::Linear => (value - self.min) / (self.max - self.min),
            Scale::Log10 => {
                let value = value.max(self.min);
                (value.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
            }
        };
        if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// 1, 2 or 5 times a power of ten, the smallest at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 { raw } else { 1.0 };
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|step| *step >= raw * (1.0 - 1e-9)).unwrap_or(raw)
}

#[derive(Debug, Clone)]
pub struct Series {
    /// `id` of the series' `<path>`; stable, so tests and readers can find it.
    pub id: String,
    pub name: String,
    pub colour: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Points marked with a dot and a hover title (e.g. the p99 of a curve).
    pub markers: Vec<(f64, f64, String)>,
}

/// A band across the full height between two x values (e.g. the warm-up).
#[derive(Debug, Clone)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct LineChart {
    /// `id` of the `<svg>` element.
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub bands: Vec<Band>,
}

impl LineChart {
    /// The chart as one `<svg>` element.
    pub fn to_svg(&self) -> String {
        let plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
        let plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
        let px = |x: f64| MARGIN_LEFT + self.x.fraction(x) * plot_width;
        let py = |y: f64| MARGIN_TOP + (1.0 - self.y.fraction(y)) * plot_height;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" id="{}" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12" role="img">"#,
            escape(&self.id)
        );
        let _ = write!(svg, "<title>{}</title>", escape(&self.title));
        let _ = write!(
            svg,
            r##"<text x="{MARGIN_LEFT}" y="20" font-size="14" font-weight="bold" fill="#222">{}</text>"##,
            escape(&self.title)
        );
        for band in &self.bands {
            let (left, right) = (px(band.from), px(band.to));
            if right > left {
                let _ = write!(
                    svg,
                    r##"<rect class="band" x="{left:.1}" y="{MARGIN_TOP}" width="{:.1}" height="{plot_height}" fill="#888" fill-opacity="0.15"><title>{}</title></rect>"##,
                    right - left,
                    escape(&band.label)
                );
                let _ = write!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}" fill="#666">{}</text>"##,
                    left + 4.0,
                    MARGIN_TOP + 14.0,
                    escape(&band.label)
                );
            }
        }
        for (value, label) in &self.y.ticks {
            let y = py(*value);
            let _ = write!(
                svg,
                r##"<line x1="{MARGIN_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                WIDTH - MARGIN_RIGHT,
                MARGIN_LEFT - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        for (value, label) in &self.x.ticks {
            let x = px(*value);
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{MARGIN_TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                MARGIN_TOP + plot_height,
                MARGIN_TOP + plot_height + 18.0,
                escape(label)
            );
        }
        let _ = write!(
            svg,
            r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#999"/>"##
        );
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222">{}</text>"##,
            MARGIN_LEFT + plot_width / 2.0,
            HEIGHT - 10.0,
            escape(&self.x.label)
        );
        let _ = write!(
            svg,
            r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#222">{}</text>"##,
            MARGIN_TOP + plot_height / 2.0,
            escape(&self.y.label)
        );
        for series in &self.series {
            if series.points.is_empty() {
                continue;
            }
            let mut d = String::new();
            for (i, (x, y)) in series.points.iter().enumerate() {
                let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, px(*x), py(*y));
            }
            let _ = write!(
                svg,
                r#"<path id="{}" d="{d}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"><title>{}</title></path>"#,
                escape(&series.id),
                series.colour,
                escape(&series.name)
            );
            for (x, y, label) in &series.markers {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}</title></circle>"#,
                    px(*x),
                    py(*y),
                    series.colour,
                    escape(label)
                );
            }
        }
        let mut legend_x = WIDTH - MARGIN_RIGHT;
        for series in self.series.iter().rev() {
            // Legend entries right-aligned above the plot; 8 px per character is
            // generous for a 12 px sans-serif, so entries never overlap.
            legend_x -= 32.0 + 8.0 * series.name.chars().count() as f64;
            let _ = write!(
                svg,
                r##"<line x1="{legend_x:.1}" y1="16" x2="{:.1}" y2="16" stroke="{}" stroke-width="3"/><text x="{:.1}" y="20" fill="#222">{}</text>"##,
                legend_x + 16.0,
                series.colour,
                legend_x + 20.0,
                escape(&series.name)
            );
        }
        if self.series.iter().all(|s| s.points.is_empty()) {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no samples</text>"##,
                MARGIN_LEFT + plot_width / 2.0,
                MARGIN_TOP + plot_height / 2.0
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(v: f64) -> String {
        format!("{v}")
    }

    #[test]
    fn linear_axis_ends_on_a_round_number_above_the_maximum() {
        let axis = Axis::linear_from_zero("rate", 9_300.0, plain);
        assert_eq!(axis.max, 10_000.0);
        assert_eq!(axis.ticks.first().unwrap().0, 0.0);
        assert_eq!(axis.ticks.last().unwrap().0, 10_000.0);
        assert_eq!(axis.ticks.len(), 6);
    }

    #[test]
    fn log_axis_covers_the_range_with_one_two_five_ticks() {
        let axis = Axis::log10("latency", 130.0, 42_000.0, plain);
        assert_eq!(axis.min, 100.0);
        assert_eq!(axis.max, 50_000.0);
        let ticks: Vec<f64> = axis.ticks.iter().map(|t| t.0).collect();
        assert_eq!(ticks, [100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0, 50_000.0]);
        assert_eq!(axis.fraction(100.0), 0.0);
        assert_eq!(axis.fraction(50_000.0), 1.0);
        assert_eq!(axis.fraction(0.0), 0.0);
    }

    #[test]
    fn degenerate_ranges_still_make_an_axis() {
        let flat = Axis::log10("latency", 7.0, 7.0, plain);
        assert!(flat.max > flat.min);
        let empty = Axis::linear_from_zero("rate", 0.0, plain);
        assert!(empty.max > 0.0);
    }
}
