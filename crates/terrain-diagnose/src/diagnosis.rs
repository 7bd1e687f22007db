//! Fitted trees as files, and the diagnosis of one model from its feature row.
//!
//! A [`FittedTree`] is an MD tree with where it came from (table, sampling, seed, training
//! accuracy) and the features it reads, so a tree written for other features is refused when
//! read back or applied. [`FittedTree::diagnose`] takes one model's metrics as a
//! [`FeatureRow`] (metric name → value, as a table row or as measured from checkpoints) and
//! returns the [`Diagnosis`] with its evidence: each decision on the path (metric, value,
//! threshold, direction and what it means), the leaf's label and what to change.
//!
//! ```
//! use std::collections::BTreeMap;
//! use terrain_diagnose::diagnosis::FittedTree;
//! use terrain_diagnose::mdtree::{MdTree, TreeKind};
//!
//! let tree = FittedTree::new(MdTree::initial(TreeKind::Temp));
//! let row: BTreeMap<String, f64> = [
//!     ("train_error".to_string(), 4.2),
//!     ("mode_connectivity_peak".to_string(), -1.5),
//!     ("hessian_t".to_string(), 6.0),
//! ]
//! .into();
//! let d = tree.diagnose(&row).unwrap();
//! assert_eq!(d.label, "large");
//! assert!(d.advice.contains("raise the batch size"));
//! assert_eq!(d.evidence.len(), 2); // train_error > 0.5, then well connected
//! assert_eq!(d.evidence[0].direction, ">");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::brent::BrentConfig;
use crate::evaluate::prepare;
use crate::mdtree::{Bounds, MdTree, Node, TreeKind};
use crate::question::Question;
use crate::sample::Sampling;
use crate::table::MetricTable;
use crate::{Error, Result};

/// One model's metrics: feature (table column) name → value.
pub type FeatureRow = BTreeMap<String, f64>;

/// An MD tree with its provenance and the features it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedTree {
    /// The question it answers.
    pub question: Question,
    /// The shape.
    pub kind: TreeKind,
    /// The feature of each threshold slot (must be the kind's).
    pub features: Vec<String>,
    /// One threshold per slot.
    pub thresholds: Vec<f64>,
    /// Accuracy on the rows it was fitted on, in percent (`None` for untrained thresholds).
    pub train_accuracy: Option<f64>,
    /// How many rows it was fitted on.
    pub n_train: usize,
    /// The table it was fitted on.
    pub table: Option<String>,
    /// The sampling of that table, in its compact form.
    pub sample: Option<String>,
    /// The sampling seed.
    pub seed: Option<u32>,
    /// The bounds rule of the fit (`paper` or `data`; files without it are `paper`).
    #[serde(default)]
    pub bounds: Bounds,
    /// Each slot's search interval `[lo, hi]` in the fit (empty for untrained thresholds).
    #[serde(default)]
    pub intervals: Vec<(f64, f64)>,
}

/// One decision on the path through the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The metric compared.
    pub metric: String,
    /// Its value for this model.
    pub value: f64,
    /// The threshold.
    pub threshold: f64,
    /// `<=` (the left branch) or `>`.
    pub direction: String,
    /// What the branch taken means.
    pub meaning: String,
}

/// The diagnosis of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The question.
    pub question: Question,
    /// The tree used.
    pub tree: TreeKind,
    /// The leaf's label (`small`/`large`, `width`/`batch`, `data`/`batch`).
    pub label: String,
    /// What to change.
    pub advice: String,
    /// The decisions, root first.
    pub evidence: Vec<Evidence>,
}

impl FittedTree {
    /// A tree with no provenance (e.g. initial thresholds).
    pub fn new(tree: MdTree) -> FittedTree {
        FittedTree {
            question: tree.kind.question(),
            kind: tree.kind,
            features: tree.kind.features().iter().map(|s| s.to_string()).collect(),
            thresholds: tree.thresholds,
            train_accuracy: None,
            n_train: 0,
            table: None,
            sample: None,
            seed: None,
            bounds: Bounds::Paper,
            intervals: Vec::new(),
        }
    }

    /// Fits a `kind` tree on the rows of `table` that `sampling` keeps for `seed` (minus
    /// `optimal` rows and models narrower than `min_width`), with the paper's bounds.
    pub fn fit(
        table: &MetricTable,
        kind: TreeKind,
        sampling: Sampling,
        seed: u32,
        min_width: Option<f64>,
        brent: &BrentConfig,
    ) -> Result<FittedTree> {
        Self::fit_with(table, kind, sampling, seed, min_width, brent, Bounds::Paper)
    }

    /// [`FittedTree::fit`] with the search intervals and initial thresholds of `bounds`.
    pub fn fit_with(
        table: &MetricTable,
        kind: TreeKind,
        sampling: Sampling,
        seed: u32,
        min_width: Option<f64>,
        brent: &BrentConfig,
        bounds: Bounds,
    ) -> Result<FittedTree> {
        sampling.check()?;
        let p = prepare(table, kind.question(), kind.features(), min_width)?;
        let empty = |reason: String| Error::EmptySample {
            path: table.path().to_path_buf(),
            sampling: sampling.to_string(),
            reason,
        };
        let keep = sampling.select(&p.data, &p.width, seed).map_err(empty)?;
        if keep.is_empty() {
            return Err(empty(format!(
                "keeps no rows of the {} candidate rows (seed {seed})",
                p.y.len()
            )));
        }
        let x: Vec<Vec<f64>> = keep.iter().map(|&i| p.x[i].clone()).collect();
        let y: Vec<usize> = keep.iter().map(|&i| p.y[i]).collect();
        let fit = MdTree::fit_with(kind, &x, &y, brent, bounds)?;
        let mut out = FittedTree::new(fit.tree);
        out.bounds = fit.bounds;
        out.intervals = fit.intervals;
        out.train_accuracy = Some(100.0 * fit.train_accuracy);
        out.n_train = keep.len();
        out.table = Some(table.path().display().to_string());
        out.sample = Some(sampling.to_string());
        out.seed = sampling.is_random().then_some(seed);
        Ok(out)
    }

    /// The feature row of data row `row` (0-based) of `table`: this tree's features.
    pub fn table_row(&self, table: &MetricTable, row: usize) -> Result<FeatureRow> {
        if row >= table.n_rows() {
            return Err(Error::Invalid {
                what: table.path().display().to_string(),
                reason: format!(
                    "there is no row {} (the table has {})",
                    row + 1,
                    table.n_rows()
                ),
            });
        }
        let mut out = FeatureRow::new();
        for f in &self.features {
            if !out.contains_key(f) {
                out.insert(f.clone(), table.numbers(f)?[row]);
            }
        }
        Ok(out)
    }

    /// The MD tree.
    pub fn tree(&self) -> MdTree {
        MdTree {
            kind: self.kind,
            thresholds: self.thresholds.clone(),
        }
    }

    /// Checks that the features, question and thresholds are those of the tree's kind;
    /// `origin` (a file name) goes into the error.
    pub fn check(&self, origin: &str) -> Result<()> {
        let want: Vec<&str> = self.kind.features().to_vec();
        if self
            .features
            .iter()
            .map(String::as_str)
            .ne(want.iter().copied())
        {
            return Err(Error::TreeFeatures {
                origin: origin.to_string(),
                expected: want.join(", "),
                found: format!("the file lists {}", self.features.join(", ")),
            });
        }
        if self.question != self.kind.question() {
            return Err(Error::Invalid {
                what: origin.to_string(),
                reason: format!(
                    "a `{}` tree answers `{}`, not `{}`",
                    self.kind,
                    self.kind.question(),
                    self.question
                ),
            });
        }
        if self.thresholds.len() != want.len() || self.thresholds.iter().any(|t| !t.is_finite()) {
            return Err(Error::Invalid {
                what: origin.to_string(),
                reason: format!(
                    "a `{}` tree needs {} finite thresholds, the file has {:?}",
                    self.kind,
                    want.len(),
                    self.thresholds
                ),
            });
        }
        Ok(())
    }

    /// The features of `row` in this tree's slot order; a missing or non-finite one is an
    /// error naming what the tree needs and what the row has.
    pub fn row_values(&self, row: &FeatureRow) -> Result<Vec<f64>> {
        let origin = format!("the `{}` tree", self.kind);
        self.check(&origin)?;
        let mut out = Vec::with_capacity(self.features.len());
        for f in &self.features {
            match row.get(f) {
                Some(v) if v.is_finite() => out.push(*v),
                Some(v) => {
                    return Err(Error::Invalid {
                        what: origin,
                        reason: format!("feature `{f}` is {v}, not a finite number"),
                    });
                }
                None => {
                    return Err(Error::TreeFeatures {
                        origin,
                        expected: self.features.join(", "),
                        found: format!(
                            "the row has {}",
                            if row.is_empty() {
                                "no features".to_string()
                            } else {
                                row.keys().cloned().collect::<Vec<_>>().join(", ")
                            }
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The diagnosis of one model from its feature row.
    pub fn diagnose(&self, row: &FeatureRow) -> Result<Diagnosis> {
        let values = self.row_values(row)?;
        let (decisions, class) = self.tree().explain(&values)?;
        let evidence = decisions
            .into_iter()
            .map(|d| Evidence {
                meaning: self.kind.branch_meaning(d.slot, d.at_most).to_string(),
                metric: d.feature,
                value: d.value,
                threshold: d.threshold,
                direction: if d.at_most { "<=" } else { ">" }.into(),
            })
            .collect();
        Ok(Diagnosis {
            question: self.question,
            tree: self.kind,
            label: self.question.classes()[class].to_string(),
            advice: self.question.advice(class).to_string(),
            evidence,
        })
    }

    /// The tree's shape, for drawing.
    pub fn shape(&self) -> Node {
        self.kind.shape()
    }
}
