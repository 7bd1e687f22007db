//! The one look of every chart: font, palette, colour map and number labels.
//!
//! Text is drawn with DejaVu Sans embedded in the crate (no system fonts are looked up, so a
//! headless machine renders exactly what a desktop does). Lines and categories take the
//! Okabe–Ito colour-blind-safe palette; continuous values take viridis.

use std::sync::Once;

use plotters::style::{FontStyle, RGBColor, register_font};

/// The font family name under which the embedded font is registered (and which SVG files
/// name, so an SVG viewer substitutes its own sans-serif).
pub const FONT: &str = "sans-serif";

pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Registers the embedded font with plotters (once per process). Every drawing entry point
/// calls it; calling it again is free.
pub(crate) fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The font is a valid TTF compiled into the crate; a failure here would show as
            // a drawing error naming the chart, never a panic.
            let _ = register_font(FONT, style, FONT_BYTES);
        }
    });
}

/// Title font size in pixels.
pub const TITLE_SIZE: f64 = 22.0;
/// Axis-label font size in pixels.
pub const LABEL_SIZE: f64 = 17.0;
/// Tick-label and legend font size in pixels.
pub const TICK_SIZE: f64 = 14.0;

/// The Okabe–Ito palette (without its yellow, too pale on white, and black, kept for text),
/// in the order series take it.
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x59, 0x59, 0x59), // dark grey
];

/// The colour of the `i`-th series or category (cycling through [`PALETTE`]).
pub fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Colour of text and axes.
pub const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// Colour of grid lines.
pub const GRID: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);
/// Colour of cells with no drawable value (NaN, or not positive on a log colour scale).
pub const MISSING: RGBColor = RGBColor(0xD0, 0xD0, 0xD0);

const VIRIDIS: [(u8, u8, u8); 10] = [
    (0x44, 0x01, 0x54),
    (0x48, 0x28, 0x78),
    (0x3E, 0x4A, 0x89),
    (0x31, 0x68, 0x8E),
    (0x26, 0x82, 0x8E),
    (0x1F, 0x9E, 0x89),
    (0x35, 0xB7, 0x79),
    (0x6D, 0xCD, 0x59),
    (0xB4, 0xDE, 0x2C),
    (0xFD, 0xE7, 0x25),
];

/// The viridis colour at `t` in `[0, 1]` (clamped; NaN gives the low end).
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A number as a short label: integers plainly, otherwise as many decimals as `step` (the
/// distance between neighbouring labels) needs, scientific notation for tiny or huge values.
pub fn number_label(v: f64, step: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let step = if step.is_finite() && step > 0.0 {
        step.abs()
    } else {
        v.abs().max(1e-300)
    };
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    let mag = v.abs().max(step);
    if !(1e-3..1e5).contains(&mag) {
        // Enough mantissa digits to tell neighbours apart.
        let digits = ((mag / step).log10().ceil().max(0.0) as usize).min(4);
        let s = format!("{v:.digits$e}");
        return trim_mantissa(&s);
    }
    // The fewest decimals that write the step exactly (0.25 needs two, 0.2 one, 5 none), so
    // neighbouring labels never print alike.
    let decimals = (0..=6usize)
        .find(|&d| {
            let scaled = step * 10f64.powi(d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(6);
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod label_tests {
    use super::number_label;

    #[test]
    fn labels_have_the_decimals_their_step_needs() {
        let at = |step: f64| -> Vec<String> {
            (0..5)
                .map(|i| number_label(i as f64 * step, step))
                .collect()
        };
        assert_eq!(at(0.25), ["0", "0.25", "0.50", "0.75", "1.00"]);
        assert_eq!(at(0.2), ["0", "0.2", "0.4", "0.6", "0.8"]);
        assert_eq!(at(5.0), ["0", "5", "10", "15", "20"]);
        assert_eq!(at(2.5), ["0", "2.5", "5.0", "7.5", "10.0"]);
    }
}

fn trim_mantissa(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => s.to_string(),
    }
}

/// `10^k` as a short label: plainly from 0.001 to 10000, `1e<k>` beyond.
pub(crate) fn decade_label(k: i64) -> String {
    if (-3..=4).contains(&k) {
        let v = 10f64.powi(k as i32);
        number_label(v, v)
    } else {
        format!("1e{k}")
    }
}

/// A continuous colour scale from data values to viridis, linear or logarithmic.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColorScale {
    /// Low end, in scale units (log10 for a log scale).
    pub lo: f64,
    /// High end, in scale units.
    pub hi: f64,
    /// Logarithmic (base 10).
    pub log: bool,
}

impl ColorScale {
    /// The scale covering every drawable value, or `None` if there is none.
    pub fn fit(values: impl Iterator<Item = f64>, log: bool) -> Option<Self> {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            if let Some(u) = to_scale(v, log) {
                lo = lo.min(u);
                hi = hi.max(u);
            }
        }
        (lo <= hi).then_some(ColorScale { lo, hi, log })
    }

    /// `v` in scale units, if drawable.
    pub fn unit(&self, v: f64) -> Option<f64> {
        to_scale(v, self.log)
    }

    /// Position of `v` in `[0, 1]` (constant data maps to the middle).
    pub fn t(&self, v: f64) -> Option<f64> {
        let u = self.unit(v)?;
        Some(if self.hi > self.lo {
            (u - self.lo) / (self.hi - self.lo)
        } else {
            0.5
        })
    }

    /// The colour of `v`, or [`MISSING`].
    pub fn color(&self, v: f64) -> RGBColor {
        self.t(v).map(viridis).unwrap_or(MISSING)
    }
}

/// A value in axis units: itself, or its log10 on a log axis; `None` where it cannot be drawn.
pub(crate) fn to_scale(v: f64, log: bool) -> Option<f64> {
    let u = if log {
        if v > 0.0 { v.log10() } else { f64::NAN }
    } else {
        v
    };
    u.is_finite().then_some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short() {
        assert_eq!(number_label(0.30000000000000004, 0.1), "0.3");
        assert_eq!(number_label(2.0, 0.5), "2.0");
        assert_eq!(number_label(200.0, 50.0), "200");
        assert_eq!(number_label(-1e-17, 0.1), "0");
        assert_eq!(number_label(1.5e-5, 5e-6), "1.5e-5");
        assert_eq!(number_label(2e6, 1e6), "2e6");
        assert_eq!(decade_label(-6), "1e-6");
        assert_eq!(decade_label(-2), "0.01");
        assert_eq!(decade_label(3), "1000");
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), RGBColor(0x44, 0x01, 0x54));
        assert_eq!(viridis(1.0), RGBColor(0xFD, 0xE7, 0x25));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
    }
}
