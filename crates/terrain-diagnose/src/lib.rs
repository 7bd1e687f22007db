//! # terrain-diagnose
//!
//! The MD tree (Zhou et al., ICML 2024): metric tables of trained configurations in, fitted
//! diagnostic trees and diagnoses out. It predicts why a trained model falls short (temperature
//! too high or too low; model too small or too little data versus the optimizer) from its
//! loss-landscape metrics, without retraining it.
//!
//! - [`table`]: metric tables (CSV or parquet, the schema of the paper's public tables) read
//!   through polars, every used value checked;
//! - [`question`]: the questions and their labels from the room-for-improvement columns;
//! - [`mdtree`]: the fixed-shape trees and their threshold fit (one bounded Brent search per
//!   threshold, [`brent`], with scipy's exact semantics);
//! - [`cart`]: the CART baselines with scikit-learn's semantics, split order included;
//! - [`sample`]: the paper's samplings of the training configurations, drawn with numpy's
//!   legacy stream ([`numpy_rng`]) so they pick what the authors' code picks;
//! - [`evaluate`](mod@evaluate): the evaluation protocol (fit on one table, test on another, mean over seeds);
//! - [`diagnosis`]: fitted trees with their provenance, and the diagnosis of one model from its
//!   feature row, with the evidence (each decision, the leaf's label and what to change).
//!
//! ```
//! use terrain_diagnose::brent::BrentConfig;
//! use terrain_diagnose::mdtree::{MdTree, TreeKind};
//! use terrain_diagnose::question::Question;
//!
//! // Width question: (train_error %, mc_peak, mc_peak) -> 0 = batch, 1 = width.
//! let x = vec![
//!     vec![0.1, -25.0, -25.0], // interpolating, poorly connected: too narrow
//!     vec![0.1, -2.0, -2.0],   // interpolating, well connected: the batch size
//!     vec![3.0, -25.0, -25.0], // not interpolating, poorly connected: too narrow
//!     vec![3.0, -1.0, -1.0],   // not interpolating, well connected: the batch size
//! ];
//! let y = vec![1, 0, 1, 0];
//! let fit = MdTree::fit(TreeKind::Width, &x, &y, &BrentConfig::default()).unwrap();
//! assert_eq!(fit.train_accuracy, 1.0);
//! let (decisions, class) = fit.tree.explain(&[2.0, -28.0, -28.0]).unwrap();
//! assert_eq!(Question::Width.classes()[class], "width");
//! assert!(decisions.iter().all(|d| d.at_most == (d.value <= d.threshold)));
//! ```
#![warn(missing_docs)]

pub mod brent;
pub mod cart;
pub mod diagnosis;
pub mod error;
pub mod evaluate;
pub mod mdtree;
pub mod numpy_rng;
pub mod question;
pub mod sample;
pub mod table;

pub use diagnosis::{Diagnosis, FeatureRow, FittedTree};
pub use error::{Error, Result};
pub use evaluate::{EvalConfig, Evaluation, Method, evaluate};
pub use mdtree::{Bounds, MdTree, TreeKind};
pub use question::Question;
pub use sample::Sampling;
pub use table::MetricTable;
