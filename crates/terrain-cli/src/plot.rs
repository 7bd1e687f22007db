//! Dependency-free SVG line charts (training curves, spectra). SVG is text, so no plotting crate
//! is needed; browsers, image viewers and documents all show it. [`crate::raster`] draws the same
//! charts as PNG; both take their ranges, ticks and point handling from [`Axes`].

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y)`; non-finite points (and, on a log y axis, points with `y <= 0`) are
    /// skipped, and the line is broken there.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Every point in axis units (`log10 y` on a log y axis), `None` where it cannot be drawn:
    /// a non-finite coordinate, or `y <= 0` on a log axis. The one place points are filtered.
    fn axis_points(&self, log_y: bool) -> impl Iterator<Item = Option<(f64, f64)>> + '_ {
        self.points.iter().map(move |&(x, y)| {
            let y = match log_y {
                true if y > 0.0 => y.log10(),
                true => f64::NAN,
                false => y,
            };
            (x.is_finite() && y.is_finite()).then_some((x, y))
        })
    }
}

/// A chart panel: title, axis labels and its lines.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Logarithmic (base 10) vertical axis, as for spectral densities; points with `y <= 0`
    /// are skipped.
    pub log_y: bool,
}

/// Line colours (RGB), cycled over a panel's series.
pub(crate) const COLORS: [[u8; 3]; 6] = [
    [0x1f, 0x77, 0xb4],
    [0xd6, 0x27, 0x28],
    [0x2c, 0xa0, 0x2c],
    [0xff, 0x7f, 0x0e],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
];
const PANEL_W: f64 = 520.0;
const PANEL_H: f64 = 340.0;
const MARGIN: (f64, f64, f64, f64) = (70.0, 20.0, 40.0, 50.0); // left, right, top, bottom

/// About `n` round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Ticks of a log axis whose range `[lo, hi]` is in decades (`log10` units): powers of ten
/// every 1, 2, 5, 10, ... decades (the round steps of [`ticks`]) when the range holds at least
/// two, otherwise round values placed at their logarithms.
fn log_ticks(lo: f64, hi: f64, n: usize) -> Vec<Tick> {
    let decade = |k: f64| Tick {
        at: k,
        label: decade_label(k as i64),
    };
    let round = ticks(lo, hi, n);
    if round.len() >= 2 && round[1] - round[0] > 0.999 {
        return round.into_iter().map(|k| decade(k.round())).collect();
    }
    let (first, last) = ((lo - 1e-9).ceil(), (hi + 1e-9).floor());
    if last > first {
        let count = (last - first) as usize + 1;
        return (0..count).map(|i| decade(first + i as f64)).collect();
    }
    ticks(10f64.powf(lo), 10f64.powf(hi), n)
        .into_iter()
        .filter(|&v| v > 0.0)
        .map(|v| Tick {
            at: v.log10(),
            label: label(v),
        })
        .collect()
}

fn label(v: f64) -> String {
    if v == 0.0 || (1e-2..1e4).contains(&v.abs()) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// `10^k` as a short label: plain from 0.01 to 1000, `1e<k>` beyond.
fn decade_label(k: i64) -> String {
    if (-2..=3).contains(&k) {
        label(10f64.powi(k as i32))
    } else {
        format!("1e{k}")
    }
}

/// A tick on an axis.
pub(crate) struct Tick {
    /// Position in axis units (`log10` of the value on a log axis).
    pub(crate) at: f64,
    /// The value as text.
    pub(crate) label: String,
}

/// Ranges and ticks of one panel in axis units (`log10 y` on a log y axis), shared by the SVG
/// and PNG renderers. Positions come out as fractions of the plot area, `(0, 0)` bottom left,
/// so each renderer only maps them onto its own pixels.
pub(crate) struct Axes {
    x: (f64, f64),
    y: (f64, f64),
    log_y: bool,
    /// Ticks of the horizontal axis.
    pub(crate) x_ticks: Vec<Tick>,
    /// Ticks of the vertical axis.
    pub(crate) y_ticks: Vec<Tick>,
}

impl Axes {
    /// The axes of `p`, or `None` when it has no point that can be drawn.
    pub(crate) fn new(p: &Panel) -> Option<Self> {
        let (mut x0, mut x1, mut y0, mut y1) = p
            .series
            .iter()
            .flat_map(|s| s.axis_points(p.log_y).flatten())
            .fold(
                (
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ),
                |(a, b, c, d), (x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
            );
        if x0 > x1 {
            return None;
        }
        if x1 <= x0 {
            x0 -= 0.5;
            x1 += 0.5;
        }
        if p.log_y {
            let pad = if y1 > y0 { 0.05 * (y1 - y0) } else { 0.5 };
            (y0, y1) = (y0 - pad, y1 + pad);
        } else {
            // A flat line sits mid-panel, with room for ticks that tell its value.
            let pad = match y1 - y0 {
                d if d > 0.0 => 0.05 * d,
                _ if y0 == 0.0 => 1.0,
                _ => 0.5 * y0.abs(),
            };
            y0 = if y0 >= 0.0 {
                (y0 - pad).max(0.0)
            } else {
                y0 - pad
            };
            y1 += pad;
        }
        let x_ticks = ticks(x0, x1, 8)
            .into_iter()
            .map(|t| Tick {
                at: t,
                label: label(t),
            })
            .collect();
        let y_ticks = if p.log_y {
            log_ticks(y0, y1, 6)
        } else {
            ticks(y0, y1, 6)
                .into_iter()
                .map(|t| Tick {
                    at: t,
                    label: label(t),
                })
                .collect()
        };
        Some(Self {
            x: (x0, x1),
            y: (y0, y1),
            log_y: p.log_y,
            x_ticks,
            y_ticks,
        })
    }

    /// Horizontal position of `x` (axis units) as a fraction of the plot width, from the left.
    pub(crate) fn fx(&self, x: f64) -> f64 {
        (x - self.x.0) / (self.x.1 - self.x.0)
    }

    /// Vertical position of `y` (axis units) as a fraction of the plot height, from the bottom.
    pub(crate) fn fy(&self, y: f64) -> f64 {
        (y - self.y.0) / (self.y.1 - self.y.0)
    }

    /// The drawable points of `s` as plot-area fractions `(fx, fy)`, split into runs at points
    /// that cannot be drawn (each run is one unbroken line).
    pub(crate) fn runs(&self, s: &Series) -> Vec<Vec<(f64, f64)>> {
        let mut runs = vec![Vec::new()];
        for pt in s.axis_points(self.log_y) {
            match pt {
                Some((x, y)) => runs.last_mut().unwrap().push((self.fx(x), self.fy(y))),
                None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                None => {}
            }
        }
        runs.retain(|r| !r.is_empty());
        runs
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn panel_svg(out: &mut String, p: &Panel, ox: f64, oy: f64) {
    let (ml, mr, mt, mb) = MARGIN;
    let (w, h) = (PANEL_W - ml - mr, PANEL_H - mt - mb);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="15" text-anchor="middle" font-weight="bold">{}</text>"#,
        ox + ml + w / 2.0,
        oy + 24.0,
        escape(&p.title)
    );
    let Some(axes) = Axes::new(p) else {
        return;
    };
    let sx = |fx: f64| ox + ml + fx * w;
    let sy = |fy: f64| oy + mt + h - fy * h;
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" fill="none" stroke="#444"/>"##,
        ox + ml,
        oy + mt
    );
    for t in &axes.y_ticks {
        let y = sy(axes.fy(t.at));
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            ox + ml,
            ox + ml + w,
            ox + ml - 6.0,
            y + 4.0,
            t.label
        );
    }
    for t in &axes.x_ticks {
        let x = sx(axes.fx(t.at));
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            oy + mt + h,
            oy + mt + h + 5.0,
            oy + mt + h + 18.0,
            t.label
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        ox + ml + w / 2.0,
        oy + PANEL_H - 10.0,
        escape(&p.x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"#,
        ox + 16.0,
        oy + mt + h / 2.0,
        ox + 16.0,
        oy + mt + h / 2.0,
        escape(&p.y_label)
    );
    for (i, s) in p.series.iter().enumerate() {
        let color = hex(COLORS[i % COLORS.len()]);
        for run in axes.runs(s) {
            let path: Vec<String> = run
                .iter()
                .map(|&(fx, fy)| format!("{:.1},{:.1}", sx(fx), sy(fy)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = oy + mt + 14.0 + 16.0 * i as f64;
        let lx = ox + ml + w - 150.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
}

/// Panels side by side in one SVG document.
pub fn svg(panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len().max(1) as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{PANEL_H:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, p) in panels.iter().enumerate() {
        panel_svg(&mut out, p, PANEL_W * i as f64, 0.0);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1.0, 5);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), want.len());
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
        let t = ticks(3.0, 97.0, 6);
        assert!(t.first().unwrap() >= &3.0 && t.last().unwrap() <= &97.0 && t.len() >= 4);
    }

    #[test]
    fn svg_has_one_polyline_per_series_and_escapes_text() {
        let p = Panel {
            title: "loss <train & test>".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![
                Series {
                    name: "train".into(),
                    points: vec![(1.0, 2.0), (2.0, 1.0), (3.0, f64::NAN)],
                },
                Series {
                    name: "test".into(),
                    points: vec![(1.0, 2.5), (2.0, 1.5)],
                },
            ],
            log_y: false,
        };
        let s = svg(&[p]);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("loss &lt;train &amp; test&gt;"));
        assert!(!s.contains("NaN"));
    }

    #[test]
    fn log_ticks_are_decades_or_round_values() {
        let t = log_ticks(-8.3, 1.2, 6);
        let labels: Vec<&str> = t.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["1e-8", "1e-6", "1e-4", "0.01", "1"], "{labels:?}");
        assert!(t.iter().all(|t| t.at.fract() == 0.0));
        let t = log_ticks(-83.0, 1.0, 6);
        let at: Vec<f64> = t.iter().map(|t| t.at).collect();
        assert_eq!(at, [-80.0, -60.0, -40.0, -20.0, 0.0]);
        assert_eq!(t[0].label, "1e-80");
        // Two or three decades: every one.
        let t = log_ticks(-2.6, 0.2, 6);
        let labels: Vec<&str> = t.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0.01", "0.1", "1"]);
        // Less than two decades: round values at their logarithms.
        let t = log_ticks(-0.1, 0.2, 6);
        assert!(t.len() >= 3, "{}", t.len());
        assert!(t.iter().all(|t| (-0.1..=0.2).contains(&t.at)));
        assert!(t.iter().any(|t| t.label == "1" && t.at == 0.0));
    }

    #[test]
    fn log_axis_skips_nonpositive_and_breaks_the_line_there() {
        let p = Panel {
            series: vec![Series {
                name: "density".into(),
                points: vec![
                    (0.0, 1e-3),
                    (1.0, 1e-1),
                    (2.0, 0.0),
                    (3.0, -1.0),
                    (4.0, 1.0),
                    (5.0, f64::INFINITY),
                ],
            }],
            log_y: true,
            ..Panel::default()
        };
        let axes = Axes::new(&p).unwrap();
        let runs = axes.runs(&p.series[0]);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        // log10 range [-3, 0] plus 5% padding each side.
        assert!((axes.y.0 + 3.15).abs() < 1e-9 && (axes.y.1 - 0.15).abs() < 1e-9);
        assert!((axes.fy(-3.0) - 0.15 / 3.3).abs() < 1e-9);
        let s = svg(&[p]);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains(">1e-3</text>") && s.contains(">1</text>"), "{s}");
        assert!(!s.contains("NaN") && !s.contains("inf"));
    }

    #[test]
    fn panels_without_drawable_points_have_no_axes() {
        let mut p = Panel {
            title: "empty".into(),
            series: vec![Series::default()],
            ..Panel::default()
        };
        assert!(Axes::new(&p).is_none());
        p.series[0].points = vec![(1.0, 0.0), (2.0, -1.0)];
        assert!(Axes::new(&p).is_some());
        p.log_y = true;
        assert!(Axes::new(&p).is_none());
        assert!(svg(&[p]).contains("empty"));
    }

    #[test]
    fn a_flat_line_gets_a_readable_range() {
        let p = Panel {
            series: vec![Series {
                name: String::new(),
                points: vec![(0.0, 2e-6), (1.0, 2e-6)],
            }],
            ..Panel::default()
        };
        let axes = Axes::new(&p).unwrap();
        assert!((axes.y.0 - 1e-6).abs() < 1e-18 && (axes.y.1 - 3e-6).abs() < 1e-18);
        let labels: Vec<&str> = axes.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert!(labels.contains(&"2.0e-6"), "{labels:?}");
    }
}
