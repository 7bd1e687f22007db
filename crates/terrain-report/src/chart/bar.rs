//! Grouped bar charts with optional error bars.

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{Axis, Chart, Size, axis::min_max, common, describe};
use crate::{
    Error, Result,
    style::{self, INK},
};

/// One named group of bars: a value per category, optionally ± an error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarSeries {
    /// Legend label (the legend is shown when there is more than one series).
    pub name: String,
    /// One value per category; a non-finite value draws no bar.
    pub values: Vec<f64>,
    /// Error-bar half widths (± one standard error), one per category; empty for none. A
    /// non-finite or negative error draws no error bar.
    pub errors: Vec<f64>,
}

impl BarSeries {
    /// A series named `name` with `values` and no error bars.
    pub fn new(name: impl Into<String>, values: Vec<f64>) -> Self {
        BarSeries {
            name: name.into(),
            values,
            errors: Vec::new(),
        }
    }

    /// With error-bar half widths `errors`.
    pub fn with_errors(mut self, errors: Vec<f64>) -> Self {
        self.errors = errors;
        self
    }
}

/// Bars per category, one per series side by side (grouped), with optional error bars. For
/// input-feature sensitivity. `horizontal` puts categories on the vertical axis, first at the
/// top: readable for many or long category names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Label of the category axis.
    pub category_label: String,
    /// Label of the value axis (with units).
    pub value_label: String,
    /// Category names.
    pub categories: Vec<String>,
    /// The series; each has one value per category.
    pub series: Vec<BarSeries>,
    /// Categories on the vertical axis, bars running left to right.
    pub horizontal: bool,
    /// Picture size; `None`: 800 × 480 vertical, or 800 × (120 + 34 per category) horizontal.
    pub size: Option<Size>,
}

impl Chart for BarChart {
    fn describe(&self) -> String {
        describe("bar chart", &self.title)
    }

    fn size(&self) -> Result<Size> {
        Ok(self.size.unwrap_or_else(|| {
            if self.horizontal {
                let per = 22 + 12 * self.series.len().clamp(1, 6) as u32;
                Size::new(
                    800,
                    (150 + per * self.categories.len() as u32).clamp(300, 4000),
                )
            } else {
                Size::new(800, 480)
            }
        }))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let chart = self.describe();
        let n = self.categories.len();
        for s in &self.series {
            let bad = |what: &str, len: usize| Error::InvalidChart {
                chart: chart.clone(),
                reason: format!("series {:?} has {len} {what} for {n} categories", s.name),
            };
            if s.values.len() != n {
                return Err(bad("values", s.values.len()));
            }
            if !s.errors.is_empty() && s.errors.len() != n {
                return Err(bad("errors", s.errors.len()));
            }
        }
        let err = |s: &BarSeries, i: usize| {
            s.errors
                .get(i)
                .copied()
                .filter(|e| e.is_finite() && *e >= 0.0)
        };
        // The value range: zero, every finite bar and the ends of its error bar.
        let extent = self.series.iter().flat_map(|s| {
            s.values.iter().enumerate().flat_map(move |(i, &v)| {
                let e = if v.is_finite() {
                    err(s, i).unwrap_or(0.0)
                } else {
                    0.0
                };
                [v - e, v + e]
            })
        });
        let Some((lo, hi)) = min_max(extent) else {
            return Err(Error::NothingToDraw {
                chart,
                reason: if n == 0 || self.series.is_empty() {
                    "no categories or no series".into()
                } else {
                    "no finite value".into()
                },
            });
        };
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let (span, pad) = (hi - lo, 0.06);
        let (lo, hi) = if span > 0.0 {
            (
                if lo < 0.0 { lo - pad * span } else { 0.0 },
                if hi > 0.0 { hi + pad * span } else { 0.0 },
            )
        } else {
            (-1.0, 1.0)
        };
        let map = |reason: String| Error::Draw {
            chart: chart.clone(),
            reason,
        };
        let m = |e: DrawingAreaErrorKind<DB::ErrorType>| map(e.to_string());
        area.fill(&WHITE).map_err(m)?;
        let legend = self.series.len() > 1;
        let entries: Vec<common::LegendEntry> = if legend {
            self.series
                .iter()
                .enumerate()
                .map(|(j, s)| common::LegendEntry {
                    name: s.name.clone(),
                    color: style::series_color(j),
                    marker: common::Marker::Square,
                })
                .collect()
        } else {
            Vec::new()
        };
        let area = common::header(area, &self.title, style::TITLE_SIZE, &entries, &map)?;
        let value_axis = Axis::fixed(lo, hi, false, 7);
        let cat_axis = Axis::categories(&self.categories, self.horizontal);
        let longest = self
            .categories
            .iter()
            .map(|c| common::text_size(c, style::TICK_SIZE).0)
            .max()
            .unwrap_or(0);
        let mut b = ChartBuilder::on(&area);
        b.margin(12).margin_top(4).margin_right(28);
        let ns = self.series.len().max(1) as f64;
        let group = 0.8;
        let w = group / ns;
        // Bar i of series j spans [pos - group/2 + j w, + w] along the category axis.
        let slot = |i: usize, j: usize| {
            // Horizontal: the first series on top within its group.
            let j = if self.horizontal {
                self.series.len() - 1 - j
            } else {
                j
            };
            let p = Axis::category_pos(i, n, self.horizontal) - group / 2.0 + j as f64 * w;
            (p + 0.08 * w, p + 0.92 * w)
        };
        macro_rules! finish {
            ($c:expr, $rect:expr, $ebar:expr) => {{
                let mut c = $c;
                for (j, s) in self.series.iter().enumerate() {
                    let color = style::series_color(j);
                    c.draw_series(
                        s.values
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| v.is_finite())
                            .map(|(i, &v)| {
                                let (a, bb) = slot(i, j);
                                Rectangle::new($rect(a, bb, v), color.filled())
                            }),
                    )
                    .map_err(m)?;
                    c.draw_series(
                        s.values
                            .iter()
                            .enumerate()
                            .filter_map(|(i, &v)| {
                                let e = err(s, i)?;
                                v.is_finite().then_some((i, v, e))
                            })
                            .flat_map(|(i, v, e)| {
                                let (a, bb) = slot(i, j);
                                let mid = (a + bb) / 2.0;
                                let cap = (bb - a) * 0.3;
                                $ebar(mid, cap, v, e)
                            }),
                    )
                    .map_err(m)?;
                }
                c
            }};
        }
        let ink = INK.stroke_width(1);
        if self.horizontal {
            let c = b
                .x_label_area_size(52)
                .y_label_area_size((longest + 30).clamp(60, 400))
                .build_cartesian_2d(value_axis, cat_axis)
                .map_err(m)?;
            let mut c = c;
            common::house_mesh(
                c.configure_mesh()
                    .disable_y_mesh()
                    .x_labels(7)
                    .y_labels(n.max(1))
                    .x_desc(&self.value_label)
                    .y_desc(&self.category_label),
            )
            .draw()
            .map_err(m)?;
            let _ = finish!(
                c,
                |a: f64, bb: f64, v: f64| [(0.0, a), (v, bb)],
                |mid: f64, cap: f64, v: f64, e: f64| [
                    PathElement::new(vec![(v - e, mid), (v + e, mid)], ink),
                    PathElement::new(vec![(v - e, mid - cap), (v - e, mid + cap)], ink),
                    PathElement::new(vec![(v + e, mid - cap), (v + e, mid + cap)], ink),
                ]
            );
        } else {
            // Category names wrapped to the width of their slot, drawn by hand below the axis.
            let (aw, _) = area.dim_in_pixel();
            let slot_px = ((aw as f64 - 130.0) / n.max(1) as f64 - 6.0).max(30.0);
            let wrapped: Vec<Vec<String>> = self
                .categories
                .iter()
                .map(|c| wrap(c, slot_px, style::TICK_SIZE))
                .collect();
            let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1) as u32;
            let names_h = 10 + lines * (style::TICK_SIZE as u32 + 3);
            let mut c = b
                .x_label_area_size(
                    names_h
                        + if self.category_label.is_empty() {
                            6
                        } else {
                            30
                        },
                )
                .y_label_area_size(78)
                .build_cartesian_2d(cat_axis, value_axis)
                .map_err(m)?;
            common::house_mesh(
                c.configure_mesh()
                    .disable_x_mesh()
                    .x_labels(n.max(1))
                    .x_label_formatter(&|_| String::new())
                    .y_labels(7)
                    .x_desc(&self.category_label)
                    .y_desc(&self.value_label),
            )
            .draw()
            .map_err(m)?;
            let c = finish!(
                c,
                |a: f64, bb: f64, v: f64| [(a, 0.0), (bb, v)],
                |mid: f64, cap: f64, v: f64, e: f64| [
                    PathElement::new(vec![(mid, v - e), (mid, v + e)], ink),
                    PathElement::new(vec![(mid - cap, v - e), (mid + cap, v - e)], ink),
                    PathElement::new(vec![(mid - cap, v + e), (mid + cap, v + e)], ink),
                ]
            );
            let pa = c.plotting_area();
            let bottom = pa.get_pixel_range().1.end;
            for (i, lines) in wrapped.iter().enumerate() {
                let (px, _) = c.backend_coord(&(i as f64, lo));
                for (k, line) in lines.iter().enumerate() {
                    let (x, y) = common::rel(
                        &area,
                        (px, bottom + 8 + k as i32 * (style::TICK_SIZE as i32 + 3)),
                    );
                    area.draw(&Text::new(
                        line.clone(),
                        (x, y),
                        common::text(style::TICK_SIZE, INK).pos(Pos::new(HPos::Center, VPos::Top)),
                    ))
                    .map_err(m)?;
                }
            }
        }
        Ok(())
    }
}

/// `s` broken at spaces into lines at most `width` pixels wide (a longer word stays whole).
fn wrap(s: &str, width: f64, size: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split_whitespace() {
        match lines.last_mut() {
            Some(l) if (common::text_size(&format!("{l} {word}"), size).0 as f64) <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}
