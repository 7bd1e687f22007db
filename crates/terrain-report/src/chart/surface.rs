//! 3-D surfaces of a z grid, coloured by height.

use plotters::{
    coord::{Shift, ranged1d::ValueFormatter},
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{Axis, Chart, Size, common, describe, heatmap::check_grid};
use crate::{
    Error, Result,
    style::{self, ColorScale, INK},
};

/// A z grid over x and y drawn as a 3-D surface coloured by z (viridis, with a colour bar):
/// `z[j][i]` is the height at `(x[i], y[j])`, as in [`super::Heatmap`]. For loss landscapes.
/// Cells with a non-finite corner are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Surface3d {
    /// Title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Label of the height (and the colour bar), with units.
    pub z_label: String,
    /// Grid coordinates along x (finite, strictly increasing).
    pub x: Vec<f64>,
    /// Grid coordinates along y (finite, strictly increasing).
    pub y: Vec<f64>,
    /// Heights, `z[j][i]` at `(x[i], y[j])`.
    pub z: Vec<Vec<f64>>,
    /// Rotation about the vertical axis, in radians (default 0.6).
    pub yaw: f64,
    /// Elevation of the view, in radians (default 0.45).
    pub pitch: f64,
    /// Picture size; `None`: 860 × 660.
    pub size: Option<Size>,
}

impl Default for Surface3d {
    fn default() -> Self {
        Surface3d {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            z_label: String::new(),
            x: Vec::new(),
            y: Vec::new(),
            z: Vec::new(),
            yaw: 0.6,
            pitch: 0.45,
            size: None,
        }
    }
}

impl Chart for Surface3d {
    fn describe(&self) -> String {
        describe("3-D surface", &self.title)
    }

    fn size(&self) -> Result<Size> {
        Ok(self.size.unwrap_or(Size::new(860, 660)))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let chart = self.describe();
        check_grid(&chart, &self.x, &self.y, &self.z)?;
        let scale = ColorScale::fit(self.z.iter().flatten().copied(), false).ok_or_else(|| {
            Error::NothingToDraw {
                chart: chart.clone(),
                reason: "no finite z value".into(),
            }
        })?;
        if self.x.len() < 2 || self.y.len() < 2 {
            return Err(Error::NothingToDraw {
                chart,
                reason: "a surface needs at least 2 × 2 grid points".into(),
            });
        }
        let (yaw, pitch) = (
            if self.yaw.is_finite() { self.yaw } else { 0.6 },
            if self.pitch.is_finite() {
                self.pitch
            } else {
                0.45
            },
        );
        let map = |reason: String| Error::Draw {
            chart: chart.clone(),
            reason,
        };
        let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
        area.fill(&WHITE).map_err(m)?;
        let area = common::titled(area, &self.title, &map)?;
        let (w, _) = area.dim_in_pixel();
        let (main, bar) = area.split_horizontally(w.saturating_sub(130));
        let (x0, x1) = (self.x[0], self.x[self.x.len() - 1]);
        let (y0, y1) = (self.y[0], self.y[self.y.len() - 1]);
        let (z0, z1) = super::axis::padded(scale.lo, scale.hi, false, 0.02);
        // plotters' 3-D y axis is vertical: it carries z; its z axis carries our y.
        let (ax, az, ay) = (
            Axis::fixed(x0, x1, false, 5),
            Axis::fixed(z0, z1, false, 5),
            Axis::fixed(y0, y1, false, 5),
        );
        let (fx, fz, fy) = (ax.clone(), az.clone(), ay.clone());
        let (fx, fz, fy) = (
            move |v: &f64| fx.format_ext(v),
            move |v: &f64| fz.format_ext(v),
            move |v: &f64| fy.format_ext(v),
        );
        let mut c = ChartBuilder::on(&main)
            .margin(24)
            .build_cartesian_3d(ax, az, ay)
            .map_err(m)?;
        c.with_projection(|mut p| {
            p.yaw = yaw;
            p.pitch = pitch;
            p.scale = 0.78;
            p.into_matrix()
        });
        c.configure_axes()
            .light_grid_style(TRANSPARENT)
            .bold_grid_style(style::GRID)
            .max_light_lines(0)
            .label_style(common::text(style::TICK_SIZE - 1.0, INK))
            .axis_panel_style(RGBColor(0xF4, 0xF4, 0xF4).mix(0.9))
            .x_labels(5)
            .y_labels(5)
            .z_labels(5)
            .x_formatter(&fx)
            .y_formatter(&fz)
            .z_formatter(&fy)
            .draw()
            .map_err(m)?;
        // Cells, far to near.
        let mut cells = Vec::new();
        for j in 0..self.y.len() - 1 {
            for i in 0..self.x.len() - 1 {
                let corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
                let v: Vec<f64> = corners.iter().map(|&(a, b)| self.z[b][a]).collect();
                if v.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                let pts: Vec<(f64, f64, f64)> = corners
                    .iter()
                    .zip(&v)
                    .map(|(&(a, b), &z)| (self.x[a], z, self.y[b]))
                    .collect();
                let mean = v.iter().sum::<f64>() / 4.0;
                let (cx, cy) = (
                    (self.x[i] + self.x[i + 1]) / 2.0,
                    (self.y[j] + self.y[j + 1]) / 2.0,
                );
                let depth = c.as_coord_spec().projected_depth(&cx, &mean, &cy);
                cells.push((depth, pts, mean));
            }
        }
        cells.sort_by_key(|c| std::cmp::Reverse(c.0));
        let edge = RGBColor(0x20, 0x20, 0x20).mix(0.25);
        c.draw_series(cells.iter().flat_map(|(_, pts, mean)| {
            let color = scale.color(*mean);
            let mut outline = pts.clone();
            outline.push(pts[0]);
            [
                Polygon::new(pts.clone(), color.filled()).into_dyn(),
                PathElement::new(outline, edge.stroke_width(1)).into_dyn(),
            ]
        }))
        .map_err(m)?;
        // Axis titles beside the front (lowest on screen) edge of each axis, pushed outwards
        // from the centre of the floor.
        let spec = c.as_coord_spec();
        let centre = spec.translate(&((x0 + x1) / 2.0, z0, (y0 + y1) / 2.0));
        let (xm, ym) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let front = |a: (f64, f64, f64), b: (f64, f64, f64)| {
            let (pa, pb) = (spec.translate(&a), spec.translate(&b));
            if pa.1 >= pb.1 { pa } else { pb }
        };
        let px = front((xm, z0, y0), (xm, z0, y1));
        let py = front((x0, z0, ym), (x1, z0, ym));
        let out = |p: (i32, i32), by: f64| {
            let (dx, dy) = ((p.0 - centre.0) as f64, (p.1 - centre.1) as f64);
            let n = (dx * dx + dy * dy).sqrt().max(1.0);
            (p.0 + (dx / n * by) as i32, p.1 + (dy / n * by) as i32)
        };
        let top = spec.translate(&(x0, z1, y0));
        let top2 = spec.translate(&(x0, z1, y1));
        let top2 = spec.translate(&(x1, z1, y0)).min(top2).min(top);
        let texts = [
            (&self.x_label, out(px, 80.0)),
            (&self.y_label, out(py, 80.0)),
            (&self.z_label, (top2.0, top2.1 - 22)),
        ];
        for (t, p) in texts {
            if t.is_empty() {
                continue;
            }
            let p = common::rel(&main, p);
            common::boxed_text(
                &main,
                t,
                p,
                style::LABEL_SIZE,
                Pos::new(HPos::Center, VPos::Center),
                &map,
            )?;
        }
        common::colorbar(&bar, &scale, &self.z_label, 40, 60, &map)
    }
}
