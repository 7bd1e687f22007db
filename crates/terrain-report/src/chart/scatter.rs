//! Scatter charts with categorical or continuous colour and text labels.

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    Axis, Chart, Size,
    common::{self, rel},
    describe,
};
use crate::{
    Error, Result,
    style::{self, ColorScale},
};

/// One point of a scatter chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScatterPoint {
    /// x coordinate.
    pub x: f64,
    /// y coordinate.
    pub y: f64,
    /// Category (coloured from the palette, listed in the legend).
    pub category: Option<String>,
    /// Continuous value (coloured by viridis, with a colour bar). A chart uses categories or
    /// values, not both.
    pub value: Option<f64>,
    /// Text written next to the point.
    pub label: Option<String>,
}

impl ScatterPoint {
    /// A plain point at `(x, y)`.
    pub fn new(x: f64, y: f64) -> Self {
        ScatterPoint {
            x,
            y,
            ..Default::default()
        }
    }
}

/// Points in the plane, optionally coloured by category (with a legend) or by a continuous value
/// (with a colour bar), optionally labelled. For landscape embeddings. Points with a non-finite
/// coordinate are skipped; a point with a non-finite value is drawn grey.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScatterChart {
    /// Title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Label of the colour bar (for continuous values).
    pub value_label: String,
    /// Logarithmic colour scale for continuous values.
    pub log_value: bool,
    /// The points.
    pub points: Vec<ScatterPoint>,
    /// Picture size; `None`: 760 × 600.
    pub size: Option<Size>,
}

impl Chart for ScatterChart {
    fn describe(&self) -> String {
        describe("scatter chart", &self.title)
    }

    fn size(&self) -> Result<Size> {
        Ok(self.size.unwrap_or(Size::new(760, 600)))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let chart = self.describe();
        let pts: Vec<&ScatterPoint> = self
            .points
            .iter()
            .filter(|p| p.x.is_finite() && p.y.is_finite())
            .collect();
        let (Some(xa), Some(ya)) = (
            Axis::fit(pts.iter().map(|p| p.x), false, 0.06, 8),
            Axis::fit(pts.iter().map(|p| p.y), false, 0.06, 8),
        ) else {
            return Err(Error::NothingToDraw {
                chart,
                reason: "no point with finite coordinates".into(),
            });
        };
        let has_values = self.points.iter().any(|p| p.value.is_some());
        if has_values && self.points.iter().any(|p| p.category.is_some()) {
            return Err(Error::InvalidChart {
                chart,
                reason: "points have both categories and continuous values; use one".into(),
            });
        }
        let scale = if has_values {
            Some(
                ColorScale::fit(pts.iter().filter_map(|p| p.value), self.log_value).ok_or_else(
                    || Error::NothingToDraw {
                        chart: chart.clone(),
                        reason: "no drawable value for the colour scale".into(),
                    },
                )?,
            )
        } else {
            None
        };
        let mut cats: Vec<&str> = Vec::new();
        for p in &pts {
            if let Some(c) = &p.category
                && !cats.contains(&c.as_str())
            {
                cats.push(c);
            }
        }
        let map = |reason: String| Error::Draw {
            chart: chart.clone(),
            reason,
        };
        let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
        area.fill(&WHITE).map_err(m)?;
        let entries: Vec<common::LegendEntry> = cats
            .iter()
            .enumerate()
            .map(|(k, c)| common::LegendEntry {
                name: c.to_string(),
                color: style::series_color(k),
                marker: common::Marker::Dot,
            })
            .collect();
        let area = common::header(area, &self.title, style::TITLE_SIZE, &entries, &map)?;
        let (w, _) = area.dim_in_pixel();
        let (main, bar) = if scale.is_some() {
            let (a, b) = area.split_horizontally(w.saturating_sub(130));
            (a, Some(b))
        } else {
            (area.clone(), None)
        };
        let mut c = ChartBuilder::on(&main)
            .margin(12)
            .margin_top(4)
            .margin_right(20)
            .x_label_area_size(52)
            .y_label_area_size(78)
            .build_cartesian_2d(xa, ya)
            .map_err(m)?;
        common::house_mesh(
            c.configure_mesh()
                .x_labels(8)
                .y_labels(8)
                .x_desc(&self.x_label)
                .y_desc(&self.y_label),
        )
        .draw()
        .map_err(m)?;
        let color_of = |p: &ScatterPoint| match (&scale, &p.category) {
            (Some(s), _) => p.value.map(|v| s.color(v)).unwrap_or(style::MISSING),
            (None, Some(cat)) => {
                style::series_color(cats.iter().position(|c| c == cat).unwrap_or(0))
            }
            (None, None) => style::series_color(0),
        };
        if cats.is_empty() {
            c.draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.x, p.y), 5, color_of(p).filled())),
            )
            .map_err(m)?;
        } else {
            for cat in &cats {
                c.draw_series(
                    pts.iter()
                        .filter(|p| p.category.as_deref() == Some(cat))
                        .map(|p| Circle::new((p.x, p.y), 5, color_of(p).filled())),
                )
                .map_err(m)?;
            }
            // Uncategorised points in a category chart: grey.
            c.draw_series(
                pts.iter()
                    .filter(|p| p.category.is_none())
                    .map(|p| Circle::new((p.x, p.y), 5, style::MISSING.filled())),
            )
            .map_err(m)?;
        }
        for p in &pts {
            if let Some(l) = p.label.as_deref().filter(|l| !l.is_empty()) {
                let px = rel(&main, c.backend_coord(&(p.x, p.y)));
                common::boxed_text(
                    &main,
                    l,
                    (px.0 + 7, px.1 - 5),
                    style::TICK_SIZE - 1.0,
                    Pos::new(HPos::Left, VPos::Bottom),
                    &map,
                )?;
            }
        }
        if let (Some(s), Some(bar)) = (scale, bar) {
            common::colorbar(&bar, &s, &self.value_label, 4, 12 + 52, &map)?;
        }
        Ok(())
    }
}
