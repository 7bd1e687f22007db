//! Line charts: one or more panels stacked vertically.

use plotters::{coord::Shift, prelude::*};

use super::{Axis, Chart, Size, common, describe};
use crate::{
    Error, Result,
    style::{self, INK, to_scale},
};

/// One line of a panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Legend label (the legend is shown when a panel has more than one series).
    pub name: String,
    /// Points `(x, y)`. A point with a non-finite coordinate (or one `<= 0` on a log axis) is
    /// skipped and the line is broken there.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name` through `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// A panel: title, axis labels (put units in them: "loss (nats)") and lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Logarithmic (base 10) horizontal axis.
    pub log_x: bool,
    /// Logarithmic (base 10) vertical axis (spectral densities, losses over decades).
    pub log_y: bool,
}

impl Panel {
    /// The ranges this panel's axes will cover, `((x_lo, x_hi), (y_lo, y_hi))` in axis units
    /// (log10 on a log axis): every drawable point plus padding. `None` if nothing is drawable.
    pub fn axis_ranges(&self) -> Option<((f64, f64), (f64, f64))> {
        let runs: Vec<_> = self
            .series
            .iter()
            .map(|s| runs(s, self.log_x, self.log_y))
            .collect();
        let (xa, ya) = axes(self, &runs)?;
        Some((xa.bounds(), ya.bounds()))
    }
}

/// The x and y axes of a panel, covering every drawable point with padding.
fn axes(panel: &Panel, runs: &[Runs]) -> Option<(Axis, Axis)> {
    let points = || runs.iter().flatten().flatten();
    Some((
        Axis::fit(points().map(|p| p.0), panel.log_x, 0.03, 8)?,
        Axis::fit(points().map(|p| p.1), panel.log_y, 0.06, 6)?,
    ))
}

/// Line charts: panels stacked vertically sharing a width (training curves: a loss panel over an
/// error panel; a spectral density).
///
/// Each axis covers every drawable point with 4 % padding, so a peak at the edge of the data
/// is never cut.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineChart {
    /// Overall title above all panels (may be empty when the panels have their own).
    pub title: String,
    /// The panels, top to bottom.
    pub panels: Vec<Panel>,
    /// Size of one panel; `None`: 800 × 420.
    pub panel_size: Option<Size>,
}

/// Default size of one panel.
pub const PANEL_SIZE: Size = Size::new(800, 420);

impl LineChart {
    /// A one-panel chart.
    pub fn single(panel: Panel) -> Self {
        LineChart {
            panels: vec![panel],
            ..Default::default()
        }
    }

    fn name(&self) -> String {
        let t = if self.title.is_empty() {
            self.panels.first().map(|p| p.title.as_str()).unwrap_or("")
        } else {
            &self.title
        };
        describe("line chart", t)
    }
}

/// The drawable stretches of one series (in axis units); the line breaks between them.
type Runs = Vec<Vec<(f64, f64)>>;

/// The runs of drawable points of `s` in axis units (the line breaks between runs).
fn runs(s: &Series, log_x: bool, log_y: bool) -> Runs {
    let mut out = vec![Vec::new()];
    for &(x, y) in &s.points {
        match (to_scale(x, log_x), to_scale(y, log_y)) {
            (Some(x), Some(y)) => out.last_mut().expect("non-empty").push((x, y)),
            _ => {
                if !out.last().expect("non-empty").is_empty() {
                    out.push(Vec::new());
                }
            }
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

impl Chart for LineChart {
    fn describe(&self) -> String {
        self.name()
    }

    fn size(&self) -> Result<Size> {
        let p = self.panel_size.unwrap_or(PANEL_SIZE);
        let title = if self.title.is_empty() { 0 } else { 40 };
        Ok(Size::new(
            p.width,
            (p.height as u64 * self.panels.len().max(1) as u64 + title).min(u32::MAX as u64) as u32,
        ))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let chart = self.name();
        let map = |reason: String| Error::Draw {
            chart: chart.clone(),
            reason,
        };
        if self.panels.is_empty() {
            return Err(Error::NothingToDraw {
                chart,
                reason: "no panels".into(),
            });
        }
        let all: Vec<Vec<Runs>> = self
            .panels
            .iter()
            .map(|p| p.series.iter().map(|s| runs(s, p.log_x, p.log_y)).collect())
            .collect();
        if all.iter().flatten().flatten().all(|r| r.is_empty()) {
            return Err(Error::NothingToDraw {
                chart,
                reason: "no series has a finite point (points with NaN or infinite coordinates, \
                         or <= 0 on a log axis, are skipped)"
                    .into(),
            });
        }
        area.fill(&WHITE).map_err(|e| map(e.to_string()))?;
        let area = common::titled(area, &self.title, &map)?;
        let parts = area.split_evenly((self.panels.len(), 1));
        for ((panel, runs), sub) in self.panels.iter().zip(&all).zip(&parts) {
            draw_panel(panel, runs, sub, &map)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    runs: &[Runs],
    area: &DrawingArea<DB, Shift>,
    map: &dyn Fn(String) -> Error,
) -> Result<()> {
    let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
    let Some((xa, ya)) = axes(panel, runs) else {
        // A panel with nothing drawable (others have data): say so in place.
        area.draw(&Text::new(
            format!("{}: no finite data", panel.title),
            (20, 30),
            common::text(style::LABEL_SIZE, INK),
        ))
        .map_err(m)?;
        return Ok(());
    };
    let legend = panel.series.len() > 1;
    let entries: Vec<common::LegendEntry> = if legend {
        panel
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| common::LegendEntry {
                name: s.name.clone(),
                color: style::series_color(i),
                marker: common::Marker::Line,
            })
            .collect()
    } else {
        Vec::new()
    };
    let area = common::header(area, &panel.title, style::LABEL_SIZE + 2.0, &entries, map)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .margin_top(4)
        .margin_right(24)
        .x_label_area_size(52)
        .y_label_area_size(78)
        .build_cartesian_2d(xa, ya)
        .map_err(m)?;
    common::house_mesh(
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_desc(&panel.x_label)
            .y_desc(&panel.y_label),
    )
    .draw()
    .map_err(m)?;
    for (i, rs) in runs.iter().enumerate() {
        let color = style::series_color(i);
        let line = color.stroke_width(2);
        for run in rs {
            if run.len() == 1 {
                chart
                    .draw_series(run.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(m)?;
            } else {
                chart
                    .draw_series(LineSeries::new(run.iter().copied(), line))
                    .map_err(m)?;
            }
        }
    }
    Ok(())
}
