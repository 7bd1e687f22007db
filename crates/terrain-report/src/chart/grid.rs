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
