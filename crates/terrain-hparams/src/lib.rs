//! Hyperparameter loss landscapes (Huang & Li, KDD 2025): configurations on an ordinal grid,
//! their objective, and the fitness-landscape metrics that say whether the landscape is smooth,
//! neutral and nearly unimodal, and whether two landscapes (fidelities, data sets) agree.
//!
//! - [`table`]: configuration tables from CSV or parquet (a sweep's, Optuna's, HPOBench's);
//! - [`Landscape`]: the grid, the objective and the neighbour graph ([`Selection`] picks the
//!   objective, hyperparameters and row filters out of a table);
//! - [`metrics`]: every metric of landscape-metrics.md ([`analyze`]);
//! - [`similarity`]: Spearman and top-10% similarity of two landscapes;
//! - [`embed`]: what the pictures show (slices over pairs of hyperparameters, a 2-D embedding);
//! - [`problems`]: NK landscapes with known structure;
//! - [`space`] and [`sweep`]: search spaces in TOML and the one experiment runner of terrain
//!   (enumerate, train through [`terrain_model::run::RunSpec`], shard, resume, merge).
//!
//! ```
//! use terrain_hparams::{Landscape, MetricsConfig, analyze, table::{RawTable, Value}};
//!
//! // A bowl on a 5 × 5 grid: error = Manhattan distance to (2, 2).
//! let mut csv = String::from("lr,width,error\n");
//! for i in 0..5i32 {
//!     for j in 0..5i32 {
//!         csv += &format!("{},{},{}\n", 0.001 * 10f64.powi(i), 16 << j, (i - 2).abs() + (j - 2).abs());
//!     }
//! }
//! let table = RawTable::from_csv("bowl.csv", &csv)?;
//! let l = Landscape::from_table(&table, &terrain_hparams::Selection::new("error"))?;
//! let m = analyze(&l, &MetricsConfig::default())?;
//! assert_eq!(m.n_local_optima, 1);
//! assert_eq!(m.global_optimum.values["width"], 64.0);
//! assert!((m.fdc_pearson.unwrap() - 1.0).abs() < 1e-12);
//! # Ok::<(), terrain_hparams::Error>(())
//! ```

#![warn(missing_docs)]

pub mod embed;
mod error;
pub mod landscape;
pub mod metrics;
pub mod problems;
pub mod similarity;
pub mod space;
pub mod stats;
pub mod sweep;
pub mod table;

pub use error::{Error, Result};
pub use landscape::{Filter, Landscape, Selection};
pub use metrics::{Metrics, MetricsConfig, analyze};
pub use similarity::{Similarity, similarity};
