//! Heatmaps of a z grid with a colour bar, contour lines and marked points.

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    Axis, Chart, Size,
    axis::ticks,
    common::{self, rel},
    describe,
};
use crate::{
    Error, Result,
    style::{self, ColorScale, INK},
};

/// A labelled point on a heatmap (a checkpoint "A", the minimum).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mark {
    /// x coordinate.
    pub x: f64,
    /// y coordinate.
    pub y: f64,
    /// Text next to the marker (may be empty).
    pub label: String,
}

impl Mark {
    /// A mark at `(x, y)` labelled `label`.
    pub fn new(x: f64, y: f64, label: impl Into<String>) -> Self {
        Mark {
            x,
            y,
            label: label.into(),
        }
    }
}

/// A heatmap: `z[j][i]` is the value at `(x[i], y[j])` (rows run over y), drawn as coloured
/// cells with a colour bar, optional contour lines and marked points. For 2-D loss surfaces
/// and hyperparameter landscapes.
///
/// `x` and `y` must be finite and strictly increasing (spacing may be irregular). Cells with a
/// non-finite value (or `<= 0` on a log colour scale) are drawn grey.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// Title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Label of the colour bar (what z is, with units).
    pub z_label: String,
    /// Cell centres along x.
    pub x: Vec<f64>,
    /// Cell centres along y.
    pub y: Vec<f64>,
    /// The grid, `z[j][i]` at `(x[i], y[j])`.
    pub z: Vec<Vec<f64>>,
    /// Logarithmic (base 10) colour scale.
    pub log_z: bool,
    /// Contour levels (in z units). `None`: no contours; `Some(vec![])`: about 8 automatic
    /// levels.
    pub contours: Option<Vec<f64>>,
    /// Write the level next to contour lines.
    pub label_contours: bool,
    /// Points to mark.
    pub marks: Vec<Mark>,
    /// Picture size; `None`: 760 × 620.
    pub size: Option<Size>,
}

impl Default for Heatmap {
    fn default() -> Self {
        Heatmap {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            z_label: String::new(),
            x: Vec::new(),
            y: Vec::new(),
            z: Vec::new(),
            log_z: false,
            contours: Some(Vec::new()),
            label_contours: true,
            marks: Vec::new(),
            size: None,
        }
    }
}

/// Checks a z grid over x and y: lengths agree, coordinates finite and increasing.
pub(crate) fn check_grid(chart: &str, x: &[f64], y: &[f64], z: &[Vec<f64>]) -> Result<()> {
    let bad = |reason: String| Error::InvalidChart {
        chart: chart.to_string(),
        reason,
    };
    for (name, c) in [("x", x), ("y", y)] {
        if c.is_empty() {
            return Err(Error::NothingToDraw {
                chart: chart.to_string(),
                reason: format!("no {name} coordinates"),
            });
        }
        if let Some(i) = c.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("{name}[{i}] = {} is not finite", c[i])));
        }
        if let Some(i) = c.windows(2).position(|w| w[1] <= w[0]) {
            return Err(bad(format!(
                "{name} must increase strictly, but {name}[{}] = {} follows {name}[{i}] = {}",
                i + 1,
                c[i + 1],
                c[i]
            )));
        }
    }
    if z.len() != y.len() {
        return Err(bad(format!(
            "z has {} rows but y has {} values",
            z.len(),
            y.len()
        )));
    }
    if let Some(j) = z.iter().position(|r| r.len() != x.len()) {
        return Err(bad(format!(
            "z row {j} has {} values but x has {}",
            z[j].len(),
            x.len()
        )));
    }
    Ok(())
}

/// Cell edges around centres `c`: midpoints, with the outer edges half a step out.
fn edges(c: &[f64]) -> Vec<f64> {
    if c.len() == 1 {
        return vec![c[0] - 0.5, c[0] + 0.5];
    }
    let mut e = Vec::with_capacity(c.len() + 1);
    e.push(c[0] - (c[1] - c[0]) / 2.0);
    e.extend(c.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    let n = c.len();
    e.push(c[n - 1] + (c[n - 1] - c[n - 2]) / 2.0);
    e
}

/// About 8 round levels strictly inside the data range (in z units).
pub(crate) fn auto_levels(scale: &ColorScale) -> Vec<f64> {
    if scale.hi <= scale.lo {
        return Vec::new();
    }
    if scale.log {
        // 1, 2, 5 × 10^k inside the range; only powers of ten when that gives too many.
        let (a, b) = (scale.lo.floor() as i64, scale.hi.ceil() as i64);
        let inside = |v: &f64| v.log10() > scale.lo && v.log10() < scale.hi;
        let mut levels: Vec<f64> = (a..=b)
            .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k as i32)))
            .filter(inside)
            .collect();
        if levels.len() > 10 {
            levels = (a..=b)
                .map(|k| 10f64.powi(k as i32))
                .filter(inside)
                .collect();
        }
        return levels;
    }
    ticks(scale.lo, scale.hi, 9)
        .into_iter()
        .filter(|&u| u > scale.lo && u < scale.hi)
        .map(|u| if scale.log { 10f64.powf(u) } else { u })
        .collect()
}

/// Marching squares: the segments of the level set `z = level` (in scale units) of the grid,
/// in data coordinates. Cells with a non-finite corner are skipped.
pub(crate) fn contour_segments(
    x: &[f64],
    y: &[f64],
    u: &[Vec<Option<f64>>],
    level: f64,
) -> Vec<[(f64, f64); 2]> {
    let mut out = Vec::new();
    for j in 0..y.len().saturating_sub(1) {
        for i in 0..x.len().saturating_sub(1) {
            // Corners counter-clockwise from bottom-left.
            let c = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
            let v: Vec<f64> = match c.iter().map(|&(a, b)| u[b][a]).collect::<Option<Vec<_>>>() {
                Some(v) => v,
                None => continue,
            };
            let p: Vec<(f64, f64)> = c.iter().map(|&(a, b)| (x[a], y[b])).collect();
            // Crossing points on each edge k (corner k to corner k+1).
            let cross = |k: usize| -> Option<(f64, f64)> {
                let (a, b) = (v[k], v[(k + 1) % 4]);
                if (a < level) == (b < level) {
                    return None;
                }
                let t = (level - a) / (b - a);
                let (pa, pb) = (p[k], p[(k + 1) % 4]);
                Some((pa.0 + t * (pb.0 - pa.0), pa.1 + t * (pb.1 - pa.1)))
            };
            let pts: Vec<(f64, f64)> = (0..4).filter_map(cross).collect();
            match pts.len() {
                2 => out.push([pts[0], pts[1]]),
                4 => {
                    // Saddle: decide by the centre value.
                    let centre = v.iter().sum::<f64>() / 4.0;
                    let e: Vec<Option<(f64, f64)>> = (0..4).map(cross).collect();
                    let e = |k: usize| e[k].expect("four crossings");
                    if (centre < level) == (v[0] < level) {
                        out.push([e(0), e(1)]);
                        out.push([e(2), e(3)]);
                    } else {
                        out.push([e(3), e(0)]);
                        out.push([e(1), e(2)]);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

impl Chart for Heatmap {
    fn describe(&self) -> String {
        describe("heatmap", &self.title)
    }

    fn size(&self) -> Result<Size> {
        Ok(self.size.unwrap_or(Size::new(760, 620)))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let chart = self.describe();
        check_grid(&chart, &self.x, &self.y, &self.z)?;
        let scale =
            ColorScale::fit(self.z.iter().flatten().copied(), self.log_z).ok_or_else(|| {
                Error::NothingToDraw {
                    chart: chart.clone(),
                    reason: if self.log_z {
                        "no finite, positive z value for a log colour scale".into()
                    } else {
                        "no finite z value".into()
                    },
                }
            })?;
        let map = |reason: String| Error::Draw {
            chart: chart.clone(),
            reason,
        };
        let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
        area.fill(&WHITE).map_err(m)?;
        let area = common::titled(area, &self.title, &map)?;
        let (w, _) = area.dim_in_pixel();
        let (main, bar) = area.split_horizontally(w.saturating_sub(130));
        let (ex, ey) = (edges(&self.x), edges(&self.y));
        let (top, bottom) = (12u32, 12 + 52u32);
        let xa = Axis::fixed(ex[0], ex[ex.len() - 1], false, 8);
        let ya = Axis::fixed(ey[0], ey[ey.len() - 1], false, 8);
        let mut c = ChartBuilder::on(&main)
            .margin_top(top)
            .margin_bottom(12)
            .margin_left(12)
            .margin_right(8)
            .x_label_area_size(52)
            .y_label_area_size(78)
            .build_cartesian_2d(xa, ya)
            .map_err(m)?;
        c.configure_mesh()
            .disable_mesh()
            .x_labels(8)
            .y_labels(8)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style(common::text(style::LABEL_SIZE, INK))
            .label_style(common::text(style::TICK_SIZE, INK))
            .axis_style(INK)
            .draw()
            .map_err(m)?;
        c.draw_series(self.z.iter().enumerate().flat_map(|(j, row)| {
            let (ex, ey) = (&ex, &ey);
            row.iter().enumerate().map(move |(i, &v)| {
                Rectangle::new(
                    [(ex[i], ey[j]), (ex[i + 1], ey[j + 1])],
                    scale.color(v).filled(),
                )
            })
        }))
        .map_err(m)?;

        // Contours.
        if let Some(levels) = &self.contours {
            let levels = if levels.is_empty() {
                auto_levels(&scale)
            } else {
                levels.clone()
            };
            let u: Vec<Vec<Option<f64>>> = self
                .z
                .iter()
                .map(|r| r.iter().map(|&v| scale.unit(v)).collect())
                .collect();
            let step = if levels.len() >= 2 {
                (levels[1] - levels[0]).abs()
            } else {
                levels.first().map(|l| l.abs()).unwrap_or(1.0)
            };
            // Label positions: per level, the segment midpoint farthest (in pixels) from the
            // labels and marks already placed, so labels do not pile up.
            let mut taken: Vec<(i32, i32)> = self
                .marks
                .iter()
                .filter(|k| k.x.is_finite() && k.y.is_finite())
                .map(|k| c.backend_coord(&(k.x, k.y)))
                .collect();
            let mut labels = Vec::new();
            for &level in &levels {
                let Some(lu) = scale.unit(level) else {
                    continue;
                };
                let segs = contour_segments(&self.x, &self.y, &u, lu);
                if segs.is_empty() {
                    continue;
                }
                let dark = scale.t(level).is_some_and(|t| t > 0.6);
                let color = if dark {
                    RGBColor(0x30, 0x30, 0x30)
                } else {
                    WHITE
                };
                c.draw_series(
                    segs.iter().map(|s| {
                        PathElement::new(vec![s[0], s[1]], color.mix(0.85).stroke_width(1))
                    }),
                )
                .map_err(m)?;
                if self.label_contours {
                    let best = segs
                        .iter()
                        .map(|s| {
                            let mid = ((s[0].0 + s[1].0) / 2.0, (s[0].1 + s[1].1) / 2.0);
                            let px = c.backend_coord(&mid);
                            let d = taken
                                .iter()
                                .map(|t| {
                                    let (dx, dy) = ((t.0 - px.0) as f64, (t.1 - px.1) as f64);
                                    dx * dx + dy * dy
                                })
                                .fold(f64::INFINITY, f64::min);
                            (d, mid, px)
                        })
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .expect("non-empty");
                    taken.push(best.2);
                    let text = if self.log_z {
                        style::number_label(level, level.abs())
                    } else {
                        style::number_label(level, step)
                    };
                    labels.push((best.1, text));
                }
            }
            for (p, text) in labels {
                let px = rel(&main, c.backend_coord(&p));
                common::boxed_text(
                    &main,
                    &text,
                    px,
                    style::TICK_SIZE - 2.0,
                    Pos::new(HPos::Center, VPos::Center),
                    &map,
                )?;
            }
        }

        // Marks.
        for mk in &self.marks {
            if !(mk.x.is_finite() && mk.y.is_finite()) {
                continue;
            }
            c.draw_series([
                Circle::new((mk.x, mk.y), 6, WHITE.filled()),
                Circle::new((mk.x, mk.y), 4, RGBColor(0xD5, 0x5E, 0x00).filled()),
            ])
            .map_err(m)?;
            if !mk.label.is_empty() {
                let (px, py) = rel(&main, c.backend_coord(&(mk.x, mk.y)));
                common::boxed_text(
                    &main,
                    &mk.label,
                    (px + 9, py - 9),
                    style::TICK_SIZE,
                    Pos::new(HPos::Left, VPos::Bottom),
                    &map,
                )?;
            }
        }
        common::colorbar(&bar, &scale, &self.z_label, top, bottom, &map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marching_squares_finds_a_circle() {
        let c: Vec<f64> = (0..21).map(|i| -1.0 + i as f64 / 10.0).collect();
        let u: Vec<Vec<Option<f64>>> = c
            .iter()
            .map(|&y| c.iter().map(|&x| Some(x * x + y * y)).collect())
            .collect();
        let segs = contour_segments(&c, &c, &u, 0.25);
        assert!(segs.len() > 8);
        for s in &segs {
            for p in s {
                let r = (p.0 * p.0 + p.1 * p.1).sqrt();
                assert!((r - 0.5).abs() < 0.03, "{r}");
            }
        }
    }

    #[test]
    fn edges_surround_centres() {
        assert_eq!(edges(&[0.0, 1.0, 3.0]), [-0.5, 0.5, 2.0, 4.0]);
        assert_eq!(edges(&[2.0]), [1.5, 2.5]);
    }
}
