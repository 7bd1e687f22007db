//! A tiny rasteriser for the charts of [`crate::plot`]: the same panels as a PNG image, for
//! viewers and reports that take no SVG. Lines are anti-aliased; text is the public-domain 8×8
//! bitmap font of `font8x8`, scaled up by whole pixels. Ranges, ticks and the handling of
//! non-finite points (and of `y <= 0` on log axes) come from [`crate::plot::Axes`], so the PNG
//! and the SVG of a chart agree.

use std::path::Path;

use anyhow::{Context, Result};
use font8x8::legacy::BASIC_LEGACY;

use crate::plot::{Axes, COLORS, Panel};

/// Size of one panel in pixels; panels are stacked vertically.
const PANEL_W: usize = 1040;
const PANEL_H: usize = 680;
/// Width of a data line in pixels.
const LINE_W: f64 = 3.0;
/// Side of one font pixel for tick labels, axis labels and the legend (8×8 glyphs → 16 px).
const TEXT_SCALE: usize = 2;
/// Preferred font pixel side of titles; smaller when a title would not fit.
const TITLE_SCALE: usize = 3;

const WHITE: [u8; 3] = [0xff; 3];
const INK: [u8; 3] = [0x11; 3];
const FRAME: [u8; 3] = [0x44; 3];
const GRID: [u8; 3] = [0xdd; 3];

/// Writes `panels`, stacked vertically, as an RGB PNG image to `path`.
///
/// Each panel is 1040×680 pixels (an empty slice gives one blank panel). Panels without any
/// drawable point show their title and an empty frame.
pub fn png(panels: &[Panel], path: &Path) -> Result<()> {
    let bytes = png_bytes(panels)?;
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// `panels`, stacked vertically, encoded as an RGB PNG image in memory (see [`png()`]).
pub fn png_bytes(panels: &[Panel]) -> Result<Vec<u8>> {
    let canvas = render(panels);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, canvas.width as u32, canvas.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("cannot encode PNG")?;
    writer
        .write_image_data(&canvas.rgb)
        .context("cannot encode PNG")?;
    writer.finish().context("cannot encode PNG")?;
    Ok(out)
}

/// An RGB image, 8 bits a channel, rows top to bottom.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

/// Horizontal alignment of text on its anchor point.
#[derive(Clone, Copy)]
enum Align {
    Start,
    Middle,
    End,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            rgb: vec![0xff; width * height * 3],
        }
    }

    /// Mixes colour `c` into pixel `(x, y)` with opacity `a`; pixels off the canvas are ignored.
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f64) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height || a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let i = (y as usize * self.width + x as usize) * 3;
        for (p, &c) in self.rgb[i..i + 3].iter_mut().zip(&c) {
            *p = (f64::from(*p) + (f64::from(c) - f64::from(*p)) * a).round() as u8;
        }
    }

    /// Fills the pixels `x0..x1` × `y0..y1`.
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.blend(x, y, c, 1.0);
            }
        }
    }

    /// An outline `t` pixels thick just inside the rectangle `x0..x1` × `y0..y1`.
    fn outline(&mut self, (x0, y0, x1, y1): (i64, i64, i64, i64), t: i64, c: [u8; 3]) {
        self.fill(x0, y0, x1, y0 + t, c);
        self.fill(x0, y1 - t, x1, y1, c);
        self.fill(x0, y0, x0 + t, y1, c);
        self.fill(x1 - t, y0, x1, y1, c);
    }

    /// An anti-aliased polyline `width` pixels wide through `pts` (pixel coordinates, pixel
    /// centres at `+0.5`); a single point becomes a dot. Coverage is the maximum over the
    /// segments, so joints are not darkened.
    fn stroke(&mut self, pts: &[(f64, f64)], width: f64, c: [u8; 3]) {
        let Some(&first) = pts.first() else {
            return;
        };
        let r = width / 2.0;
        let reach = r + 1.0;
        let (mut bx0, mut by0, mut bx1, mut by1) = (first.0, first.1, first.0, first.1);
        for &(x, y) in pts {
            (bx0, by0, bx1, by1) = (bx0.min(x), by0.min(y), bx1.max(x), by1.max(y));
        }
        let clip_x = |v: f64| v.clamp(0.0, self.width as f64) as i64;
        let clip_y = |v: f64| v.clamp(0.0, self.height as f64) as i64;
        let (ox, oy) = (clip_x(bx0 - reach), clip_y(by0 - reach));
        let (mw, mh) = (
            (clip_x(bx1 + reach + 1.0) - ox) as usize,
            (clip_y(by1 + reach + 1.0) - oy) as usize,
        );
        if mw == 0 || mh == 0 {
            return;
        }
        let mut cover = vec![0f32; mw * mh];
        let segments: Vec<_> = if pts.len() == 1 {
            vec![(first, first)]
        } else {
            pts.windows(2).map(|w| (w[0], w[1])).collect()
        };
        for (a, b) in segments {
            let x0 = (clip_x(a.0.min(b.0) - reach) - ox) as usize;
            let x1 = (clip_x(a.0.max(b.0) + reach + 1.0) - ox) as usize;
            let y0 = (clip_y(a.1.min(b.1) - reach) - oy) as usize;
            let y1 = (clip_y(a.1.max(b.1) + reach + 1.0) - oy) as usize;
            for my in y0..y1 {
                for mx in x0..x1 {
                    let p = ((ox + mx as i64) as f64 + 0.5, (oy + my as i64) as f64 + 0.5);
                    let cov = (r + 0.5 - dist_to_segment(p, a, b)).clamp(0.0, 1.0) as f32;
                    let m = &mut cover[my * mw + mx];
                    *m = m.max(cov);
                }
            }
        }
        for my in 0..mh {
            for mx in 0..mw {
                let a = f64::from(cover[my * mw + mx]);
                self.blend(ox + mx as i64, oy + my as i64, c, a);
            }
        }
    }

    /// `s` with its top edge at `y`, aligned on `x`, in font pixels `scale` wide.
    fn text(&mut self, s: &str, x: i64, y: i64, scale: usize, align: Align, c: [u8; 3]) {
        let w = text_width(s, scale) as i64;
        let x = match align {
            Align::Start => x,
            Align::Middle => x - w / 2,
            Align::End => x - w,
        };
        let sc = scale as i64;
        for (i, ch) in s.chars().enumerate() {
            for (row, col) in glyph_pixels(ch) {
                let gx = x + (i as i64 * 8 + col) * sc;
                self.fill(gx, y + row * sc, gx + sc, y + (row + 1) * sc, c);
            }
        }
    }

    /// `s` turned a quarter left (reading upwards), centred on `(cx, cy)`.
    fn text_up(&mut self, s: &str, cx: i64, cy: i64, scale: usize, c: [u8; 3]) {
        let sc = scale as i64;
        let (left, bottom) = (cx - 4 * sc, cy + text_width(s, scale) as i64 / 2);
        for (i, ch) in s.chars().enumerate() {
            for (row, col) in glyph_pixels(ch) {
                let gx = left + row * sc;
                let gy = bottom - (i as i64 * 8 + col + 1) * sc;
                self.fill(gx, gy, gx + sc, gy + sc, c);
            }
        }
    }
}

/// Distance from `p` to the segment `a`–`b`.
fn dist_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (p.0 - a.0 - t * dx).hypot(p.1 - a.1 - t * dy)
}

/// The set pixels `(row, column)` of the 8×8 glyph of `ch`; characters outside ASCII show `?`.
fn glyph_pixels(ch: char) -> impl Iterator<Item = (i64, i64)> {
    let glyph = BASIC_LEGACY[if ch.is_ascii() {
        ch as usize
    } else {
        '?' as usize
    }];
    (0..8).flat_map(move |row| {
        (0..8)
            .filter(move |col| glyph[row] >> col & 1 == 1)
            .map(move |col| (row as i64, col as i64))
    })
}

/// Width in pixels of `s` in font pixels `scale` wide.
fn text_width(s: &str, scale: usize) -> usize {
    s.chars().count() * 8 * scale
}

/// The largest scale, at most `max`, at which `s` fits in `width` pixels (at least 1).
fn fit_scale(s: &str, width: usize, max: usize) -> usize {
    (1..=max)
        .rev()
        .find(|&k| text_width(s, k) <= width)
        .unwrap_or(1)
}

/// The plot area of a panel: pixel edges `left`, `top`, `right`, `bottom`.
#[derive(Clone, Copy, Debug)]
struct Plot {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Plot {
    /// The plot area of a panel whose top edge is at pixel row `oy`, leaving room on the left
    /// for the vertical axis label and the widest tick label.
    fn new(axes: Option<&Axes>, oy: usize) -> Self {
        let widest = axes.map_or(0, |a| {
            a.y_ticks
                .iter()
                .map(|t| text_width(&t.label, TEXT_SCALE))
                .max()
                .unwrap_or(0)
        });
        Self {
            left: (16 + 8 * TEXT_SCALE + 16 + widest + 12) as f64,
            top: (oy + 64) as f64,
            right: (PANEL_W - 40) as f64,
            bottom: (oy + PANEL_H - 80) as f64,
        }
    }

    /// Pixel position of the plot-area fractions `(fx, fy)` (`fy` upwards).
    fn at(&self, (fx, fy): (f64, f64)) -> (f64, f64) {
        (
            self.left + fx * (self.right - self.left),
            self.bottom - fy * (self.bottom - self.top),
        )
    }
}

/// `panels` stacked vertically on one canvas.
fn render(panels: &[Panel]) -> Canvas {
    let mut canvas = Canvas::new(PANEL_W, PANEL_H * panels.len().max(1));
    for (i, p) in panels.iter().enumerate() {
        draw_panel(&mut canvas, p, PANEL_H * i);
    }
    canvas
}

fn draw_panel(c: &mut Canvas, p: &Panel, oy: usize) {
    let axes = Axes::new(p);
    let plot = Plot::new(axes.as_ref(), oy);
    let (l, t, r, b) = (
        plot.left as i64,
        plot.top as i64,
        plot.right as i64,
        plot.bottom as i64,
    );
    let mid_x = (l + r) / 2;
    let oy = oy as i64;

    let scale = fit_scale(&p.title, PANEL_W - 16, TITLE_SCALE);
    let title_x = mid_x
        .max(8 + text_width(&p.title, scale) as i64 / 2)
        .min((PANEL_W - 8) as i64 - text_width(&p.title, scale) as i64 / 2);
    c.text(&p.title, title_x, oy + 20, scale, Align::Middle, INK);
    c.text(
        &p.x_label,
        mid_x,
        oy + PANEL_H as i64 - 28,
        TEXT_SCALE,
        Align::Middle,
        INK,
    );
    c.text_up(
        &p.y_label,
        16 + 4 * TEXT_SCALE as i64,
        (t + b) / 2,
        TEXT_SCALE,
        INK,
    );

    let Some(axes) = axes else {
        c.outline((l, t, r, b), 2, FRAME);
        let y = (t + b) / 2 - 4 * TEXT_SCALE as i64;
        c.text("no data", mid_x, y, TEXT_SCALE, Align::Middle, GRID);
        return;
    };
    let text_h = 8 * TEXT_SCALE as i64;
    for tick in &axes.y_ticks {
        let y = plot.at((0.0, axes.fy(tick.at))).1.floor() as i64;
        c.fill(l, y, r, y + 1, GRID);
        c.fill(l - 8, y - 1, l, y + 1, FRAME);
        c.text(
            &tick.label,
            l - 12,
            y - text_h / 2,
            TEXT_SCALE,
            Align::End,
            INK,
        );
    }
    for tick in &axes.x_ticks {
        let x = plot.at((axes.fx(tick.at), 0.0)).0.floor() as i64;
        c.fill(x - 1, b, x + 1, b + 8, FRAME);
        c.text(&tick.label, x, b + 12, TEXT_SCALE, Align::Middle, INK);
    }
    for (i, s) in p.series.iter().enumerate() {
        for run in axes.runs(s) {
            let pts: Vec<(f64, f64)> = run.into_iter().map(|f| plot.at(f)).collect();
            c.stroke(&pts, LINE_W, COLORS[i % COLORS.len()]);
        }
    }
    c.outline((l - 1, t - 1, r + 1, b + 1), 2, FRAME);
    legend(c, p, plot);
}

/// Names and line colours of the named series, in a box at the top right of the plot area.
fn legend(c: &mut Canvas, p: &Panel, plot: Plot) {
    let rows: Vec<(usize, &str)> = p
        .series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.name.is_empty())
        .map(|(i, s)| (i, s.name.as_str()))
        .collect();
    let Some(widest) = rows.iter().map(|(_, n)| text_width(n, TEXT_SCALE)).max() else {
        return;
    };
    let (sample, row_h) = (32, 8 * TEXT_SCALE as i64 + 8);
    let w = 12 + sample + 8 + widest as i64 + 12;
    let h = 8 + row_h * rows.len() as i64;
    let x1 = plot.right as i64 - 12;
    let (x0, y0) = ((x1 - w).max(plot.left as i64 + 4), plot.top as i64 + 12);
    c.fill(x0, y0, x1, y0 + h, WHITE);
    c.outline((x0, y0, x1, y0 + h), 1, FRAME);
    for (k, &(i, name)) in rows.iter().enumerate() {
        let y = y0 + 8 + row_h * k as i64;
        let line_y = (y + 4 * TEXT_SCALE as i64) as f64;
        let (lx, rx) = ((x0 + 12) as f64, (x0 + 12 + sample) as f64);
        c.stroke(
            &[(lx, line_y), (rx, line_y)],
            LINE_W,
            COLORS[i % COLORS.len()],
        );
        c.text(name, x0 + 12 + sample + 8, y, TEXT_SCALE, Align::Start, INK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::Series;

    /// Decodes a PNG to `(width, height, rgb)`.
    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width as usize, info.height as usize, buf)
    }

    fn pixel(img: &(usize, usize, Vec<u8>), x: usize, y: usize) -> [u8; 3] {
        let i = (y * img.0 + x) * 3;
        [img.2[i], img.2[i + 1], img.2[i + 2]]
    }

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }

    fn panel(series: Vec<Series>, log_y: bool) -> Panel {
        Panel {
            title: "spectral density".into(),
            x_label: "eigenvalue".into(),
            y_label: "density".into(),
            series,
            log_y,
        }
    }

    #[test]
    fn png_decodes_to_one_panel_size_per_panel() {
        let p = || panel(vec![series("a", vec![(0.0, 1.0), (1.0, 2.0)])], false);
        for n in 0..3 {
            let panels: Vec<Panel> = (0..n).map(|_| p()).collect();
            let img = decode(&png_bytes(&panels).unwrap());
            assert_eq!((img.0, img.1), (PANEL_W, PANEL_H * n.max(1)));
            assert_eq!(img.2.len(), PANEL_W * PANEL_H * n.max(1) * 3);
        }
    }

    #[test]
    fn png_writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        png(&[panel(vec![series("a", vec![(0.0, 1.0)])], false)], &path).unwrap();
        let img = decode(&std::fs::read(&path).unwrap());
        assert_eq!((img.0, img.1), (PANEL_W, PANEL_H));
        let err = png(&[], &dir.path().join("no/such/dir/x.png")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot write"), "{err:#}");
    }

    #[test]
    fn curve_pixels_lie_on_the_known_lines() {
        // A rising diagonal in the first colour, a flat line at y = 2 in the second, in the
        // second of two stacked panels.
        let rising = series("rising", (0..=10).map(|i| (i as f64, i as f64)).collect());
        let flat = series("flat", vec![(0.0, 2.0), (10.0, 2.0)]);
        let panels = [panel(vec![], false), panel(vec![rising, flat], false)];
        let img = decode(&png_bytes(&panels).unwrap());
        let axes = Axes::new(&panels[1]).unwrap();
        let plot = Plot::new(Some(&axes), PANEL_H);
        let px = |x: f64, y: f64| {
            let (px, py) = plot.at((axes.fx(x), axes.fy(y)));
            (px as usize, py as usize)
        };
        let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(a, b)| a.abs_diff(b) <= 8);
        for k in 1..20 {
            // Away from the legend at the top right.
            let x = 0.35 * k as f64;
            let (cx, cy) = px(x, x);
            assert!(close(pixel(&img, cx, cy), COLORS[0]), "rising at x = {x}");
            let below = pixel(&img, cx, cy + 30);
            assert!(
                close(below, WHITE) || close(below, GRID),
                "rising too thick"
            );
            let (fx, fy) = px(x + 3.0, 2.0);
            assert!(close(pixel(&img, fx, fy), COLORS[1]), "flat at x = {x}");
            assert!(close(pixel(&img, fx, fy - 6), WHITE), "flat line too thick");
        }
        // Independently of the layout code: the fully covered pixels of the first colour go up
        // to the right (rows decrease as columns increase).
        let mut by_column = std::collections::BTreeMap::new();
        for y in PANEL_H..2 * PANEL_H {
            for x in 0..PANEL_W / 2 {
                if pixel(&img, x, y) == COLORS[0] {
                    by_column.entry(x).or_insert(y);
                }
            }
        }
        assert!(by_column.len() > 200, "{}", by_column.len());
        let rows: Vec<usize> = by_column.values().copied().collect();
        assert!(rows.windows(2).all(|w| w[1] <= w[0]), "{rows:?}");
        // The first panel has no data and no curve pixels.
        assert!((0..PANEL_H).all(|y| (0..PANEL_W).all(|x| pixel(&img, x, y) != COLORS[0])));
    }

    #[test]
    fn log_axis_skips_zeros_negatives_and_non_finite_points() {
        let density: Vec<(f64, f64)> = (0..=100)
            .map(|i| {
                let x = i as f64 / 10.0 - 5.0;
                (x, (-x * x).exp())
            })
            .chain([
                (6.0, 0.0),
                (7.0, -1.0),
                (8.0, f64::NAN),
                (f64::INFINITY, 1.0),
            ])
            .collect();
        let p = panel(vec![series("density", density)], true);
        let axes = Axes::new(&p).unwrap();
        assert_eq!(axes.runs(&p.series[0]).len(), 1);
        // The x range ends at the last positive density, not at the skipped points.
        assert!((axes.fx(5.0) - 1.0).abs() < 1e-9);
        let img = decode(&png_bytes(&[p]).unwrap());
        let plot = Plot::new(Some(&axes), 0);
        let (x, y) = plot.at((axes.fx(0.0), axes.fy(0.0)));
        assert_eq!(pixel(&img, x as usize, y as usize), COLORS[0]);
        let (x, y) = plot.at((axes.fx(-3.0), axes.fy(-9.0 / std::f64::consts::LN_10)));
        assert_eq!(pixel(&img, x as usize, y as usize), COLORS[0]);
    }

    #[test]
    fn empty_and_undrawable_panels_do_not_panic() {
        let panels = [
            panel(vec![], false),
            panel(vec![series("", vec![])], false),
            panel(vec![series("nan", vec![(f64::NAN, 1.0)])], false),
            panel(vec![series("zeros", vec![(0.0, 0.0), (1.0, -2.0)])], true),
            panel(vec![series("one point", vec![(3.0, 5.0)])], true),
            Panel::default(),
        ];
        let img = decode(&png_bytes(&panels).unwrap());
        assert_eq!((img.0, img.1), (PANEL_W, PANEL_H * panels.len()));
    }

    #[test]
    fn text_is_drawn_where_it_belongs() {
        let mut c = Canvas::new(100, 40);
        c.text("A", 50, 10, 2, Align::Middle, INK);
        let dark = |c: &Canvas, x: usize, y: usize| c.rgb[(y * c.width + x) * 3] == INK[0];
        let ink: Vec<(usize, usize)> = (0..40)
            .flat_map(|y| (0..100).map(move |x| (x, y)))
            .filter(|&(x, y)| dark(&c, x, y))
            .collect();
        assert!(!ink.is_empty());
        assert!(
            ink.iter()
                .all(|&(x, y)| (42..58).contains(&x) && (10..26).contains(&y))
        );
        let mut c = Canvas::new(40, 100);
        c.text_up("AB", 20, 50, 2, INK);
        let ink = (0..100).flat_map(|y| (0..40).map(move |x| (x, y)));
        assert!(
            ink.filter(|&(x, y)| dark(&c, x, y))
                .all(|(x, y)| { (12..28).contains(&x) && (34..66).contains(&y) })
        );
        // Non-ASCII falls back to `?` rather than panicking.
        c.text("λ²", 0, 0, 1, Align::Start, INK);
    }
}
