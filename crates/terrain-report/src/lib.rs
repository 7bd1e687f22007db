//! Everything a terrain job shows a person: pictures, tables and progress bars.
//!
//! - [`chart`]: line charts, heatmaps with contours, grouped bar charts, 3-D surfaces, tree
//!   diagrams and scatter charts: plain data structs that draw to PNG or SVG through one drawing
//!   routine each ([`chart::Chart`]), with text in an embedded font (DejaVu Sans), so a headless
//!   machine without fonts renders exactly what a desktop does;
//! - [`table`]: a result as an aligned terminal table, JSON, CSV or (feature `parquet`) a
//!   parquet file, and the CLI's `--format`;
//! - [`record`]: typed results in a JSON envelope with a kind and a schema version, so what one
//!   job writes another reads back (or refuses, naming the file and both versions);
//! - [`progress`]: an indicatif progress bar as a [`terrain_model::progress::ProgressSink`],
//!   silent when stderr is not a terminal.
//!
//! Bad input never panics: empty or non-finite data is skipped or reported as an [`Error`]
//! that names the chart, file, row or column.
//!
//! ```
//! use terrain_report::chart::{Chart, LineChart, Panel, Series};
//!
//! let chart = LineChart::single(Panel {
//!     title: "Training loss".into(),
//!     x_label: "epoch".into(),
//!     y_label: "loss (nats)".into(),
//!     series: vec![
//!         Series::new("train", vec![(0.0, 2.3), (1.0, 0.9), (2.0, 0.4)]),
//!         Series::new("test", vec![(0.0, 2.3), (1.0, 1.1), (2.0, f64::NAN)]),
//!     ],
//!     log_y: true,
//!     ..Default::default()
//! });
//! let dir = tempfile::tempdir().unwrap();
//! chart.save(&dir.path().join("loss.png")).unwrap();
//! chart.save(&dir.path().join("loss.svg")).unwrap();
//! assert!(chart.save(&dir.path().join("loss.jpg")).is_err());
//! assert!(chart.to_svg().unwrap().contains("Training loss"));
//! ```

#![warn(missing_docs)]

pub mod chart;
mod error;
mod fsutil;
pub mod progress;
pub mod record;
pub mod style;
pub mod table;

pub use chart::Chart;
pub use error::{Error, Result};
pub use table::{Cell, Format, Table};
