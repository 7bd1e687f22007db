//! Several charts side by side in one picture (the panels of a sensitivity heat map next to
//! its correlation bars).

use plotters::{coord::Shift, prelude::*};

use super::{AnyChart, Chart, Size, common, describe};
use crate::{Error, Result};

/// Charts laid out in a grid of `columns` columns, row by row, under an optional title. Each
/// cell is as large as the largest chart.
#[derive(Debug, Clone, Default)]
pub struct ChartGrid {
    /// Title above the grid (may be empty).
    pub title: String,
    /// The charts, row by row.
    pub charts: Vec<AnyChart>,
    /// Charts per row (at least 1).
    pub columns: usize,
}

const TITLE_HEIGHT: u32 = 44;

impl ChartGrid {
    fn layout(&self) -> Result<(usize, usize, Size)> {
        if self.charts.is_empty() {
            return Err(Error::NothingToDraw {
                chart: self.describe(),
                reason: "no charts".into(),
            });
        }
        let cols = self.columns.clamp(1, self.charts.len());
        let rows = self.charts.len().div_ceil(cols);
        let mut cell = Size::new(1, 1);
        for c in &self.charts {
            let s = c.size()?;
            cell = Size::new(cell.width.max(s.width), cell.height.max(s.height));
        }
        Ok((rows, cols, cell))
    }
}

impl Chart for ChartGrid {
    fn describe(&self) -> String {
        describe("chart grid", &self.title)
    }

    fn size(&self) -> Result<Size> {
        let (rows, cols, cell) = self.layout()?;
        let title = if self.title.is_empty() {
            0
        } else {
            TITLE_HEIGHT
        };
        Ok(Size::new(
            cell.width.saturating_mul(cols as u32),
            cell.height
                .saturating_mul(rows as u32)
                .saturating_add(title),
        ))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let (rows, cols, _) = self.layout()?;
        let map = |e: String| Error::Draw {
            chart: self.describe(),
            reason: e,
        };
        area.fill(&WHITE).map_err(|e| map(e.to_string()))?;
        let body = common::titled(area, &self.title, &map)?;
        let cells = body.split_evenly((rows, cols));
        for (c, cell) in self.charts.iter().zip(cells.iter()) {
            c.draw(cell)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{BarChart, BarSeries, LineChart, Panel, Series};

    #[test]
    fn a_grid_lays_charts_out_in_cells_of_the_largest_size() {
        let line = LineChart::single(Panel {
            title: "left panel".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series::new("s", vec![(0.0, 1.0), (1.0, 2.0)])],
            ..Default::default()
        });
        let bars = BarChart {
            title: "right bars".into(),
            categories: vec!["a".into(), "b".into()],
            series: vec![BarSeries::new("v", vec![1.0, 2.0])],
            size: Some(Size::new(300, 900)),
            ..Default::default()
        };
        let (lw, lh) = (line.size().unwrap().width, line.size().unwrap().height);
        let grid = ChartGrid {
            title: "both".into(),
            charts: vec![line.into(), bars.into()],
            columns: 2,
        };
        let s = grid.size().unwrap();
        assert_eq!(s, Size::new(2 * lw.max(300), lh.max(900) + TITLE_HEIGHT));
        let svg = grid.to_svg().unwrap();
        for t in ["both", "left panel", "right bars"] {
            assert!(svg.contains(t), "{t}");
        }
        assert!(!grid.to_png().unwrap().is_empty());
        let empty = ChartGrid::default();
        assert!(matches!(empty.size(), Err(Error::NothingToDraw { .. })));
    }
}
