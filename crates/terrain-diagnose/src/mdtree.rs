//! The MD tree: fixed-shape diagnostic trees whose thresholds are learned (methods.md §2.5,
//! the authors' `method/md_tree.py`).
//!
//! Each [`TreeKind`] fixes the features (one per threshold slot, in order), the tree's shape,
//! the initial thresholds and their bounds. [`MdTree::fit`] fits the thresholds one slot at a
//! time, in order, in a single pass, each by [`crate::brent::minimize_bounded`] (scipy's
//! bounded `minimize_scalar`, xatol 1e-5, 500 evaluations) on −(training accuracy) with the
//! other thresholds held at their current values; every comparison is `value <= threshold`.
//! `train_error` is in percent while its bound is [0, 1], as in the authors' code.
//!
//! ```
//! use terrain_diagnose::mdtree::{MdTree, TreeKind};
//! use terrain_diagnose::brent::BrentConfig;
//!
//! // (train_error %, mode_connectivity_peak, hessian_t) -> 0 = large, 1 = small.
//! let x = vec![
//!     vec![0.05, -40.0, 8.0], // interpolating: small
//!     vec![5.0, -1.0, 5.0],   // well connected: large
//!     vec![5.0, -20.0, 5.0],  // poorly connected, flat: large
//!     vec![5.0, -20.0, 8.5],  // poorly connected, sharp: small
//! ];
//! let y = vec![1, 0, 0, 1];
//! let fit = MdTree::fit(TreeKind::Temp, &x, &y, &BrentConfig::default()).unwrap();
//! assert_eq!(fit.train_accuracy, 1.0);
//! assert_eq!(fit.tree.predict(&[0.01, -50.0, 4.0]).unwrap(), 1);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::brent::{BrentConfig, minimize_bounded};
use crate::question::Question;
use crate::{Error, Result};

/// The fixed tree shapes of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TreeKind {
    /// `MDtree_temp`: (train_error, mode_connectivity_peak, hessian_t) for Q1.
    Temp,
    /// `MDtree_temp_cka`: (train_error, mode_connectivity_peak, CKA) for Q1, leaves swapped.
    TempCka,
    /// `MDtree_width`: (train_error, mode_connectivity_peak, mode_connectivity_peak) for Q2 width.
    Width,
    /// `MDtree_data`: (train_error, mc_peak, hessian_t, mc_peak, hessian_t, hessian_t) for Q2
    /// data, on models of width ≥ 32.
    Data,
}

/// A node of a fixed tree shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// A leaf predicting class `class` of the tree's question.
    Leaf {
        /// Index into [`Question::classes`].
        class: usize,
    },
    /// `x[slot] <= thresholds[slot]` goes left.
    Split {
        /// The threshold slot (and feature index).
        slot: usize,
        /// The subtree when the feature is at most the threshold.
        left: Box<Node>,
        /// The subtree when the feature is above the threshold.
        right: Box<Node>,
    },
}

fn leaf(class: usize) -> Node {
    Node::Leaf { class }
}

fn split(slot: usize, left: Node, right: Node) -> Node {
    Node::Split {
        slot,
        left: Box::new(left),
        right: Box::new(right),
    }
}

const MC: &str = "mode_connectivity_peak";

impl TreeKind {
    /// Every kind.
    pub const ALL: [TreeKind; 4] = [
        TreeKind::Temp,
        TreeKind::TempCka,
        TreeKind::Width,
        TreeKind::Data,
    ];

    /// The compact name (`temp`, `temp-cka`, `width`, `data`).
    pub fn name(self) -> &'static str {
        match self {
            TreeKind::Temp => "temp",
            TreeKind::TempCka => "temp-cka",
            TreeKind::Width => "width",
            TreeKind::Data => "data",
        }
    }

    /// The question the tree answers.
    pub fn question(self) -> Question {
        match self {
            TreeKind::Temp | TreeKind::TempCka => Question::Temp,
            TreeKind::Width => Question::Width,
            TreeKind::Data => Question::Data,
        }
    }

    /// The feature (table column) of each threshold slot.
    pub fn features(self) -> &'static [&'static str] {
        match self {
            TreeKind::Temp => &["train_error", MC, "hessian_t"],
            TreeKind::TempCka => &["train_error", MC, "CKA"],
            TreeKind::Width => &["train_error", MC, MC],
            TreeKind::Data => &["train_error", MC, "hessian_t", MC, "hessian_t", "hessian_t"],
        }
    }

    /// The initial thresholds.
    pub fn initial(self) -> &'static [f64] {
        match self {
            TreeKind::Temp => &[0.5, -10.0, 7.0],
            TreeKind::TempCka => &[0.5, -10.0, 0.5],
            TreeKind::Width => &[0.5, -10.0, -10.0],
            TreeKind::Data => &[0.5, -10.0, 7.0, -10.0, 7.0, 7.0],
        }
    }

    /// The bounds of each threshold's search.
    pub fn bounds(self) -> &'static [(f64, f64)] {
        match self {
            TreeKind::Temp => &[(0.0, 1.0), (-30.0, 0.0), (4.0, 9.0)],
            TreeKind::TempCka => &[(0.0, 1.0), (-30.0, 0.0), (0.2, 0.8)],
            TreeKind::Width => &[(0.0, 1.0), (-30.0, 0.0), (-30.0, 0.0)],
            TreeKind::Data => &[
                (0.0, 1.0),
                (-30.0, 0.0),
                (4.0, 9.0),
                (-30.0, 0.0),
                (4.0, 9.0),
                (4.0, 9.0),
            ],
        }
    }

    /// The tree's shape (methods.md §2.5).
    pub fn shape(self) -> Node {
        match self {
            // Classes: 0 = large, 1 = small.
            TreeKind::Temp => split(0, leaf(1), split(1, split(2, leaf(0), leaf(1)), leaf(0))),
            TreeKind::TempCka => split(0, leaf(1), split(1, split(2, leaf(1), leaf(0)), leaf(0))),
            // Classes: 0 = batch, 1 = width.
            TreeKind::Width => split(0, split(1, leaf(1), leaf(0)), split(2, leaf(1), leaf(0))),
            // Classes: 0 = batch, 1 = data.
            TreeKind::Data => split(
                0,
                split(1, split(4, leaf(1), leaf(0)), split(2, leaf(1), leaf(0))),
                split(3, leaf(0), split(5, leaf(1), leaf(0))),
            ),
        }
    }

    /// What a branch of threshold slot `slot` means: the left one (`value <= threshold`) when
    /// `at_most`, else the right one.
    pub fn branch_meaning(self, slot: usize, at_most: bool) -> &'static str {
        let (left, right) = match self.features().get(slot).copied() {
            Some("train_error") => (
                "interpolating: the training data are (nearly) fitted",
                "not interpolating: the training error is above the threshold",
            ),
            Some(MC) => (
                "poorly connected: a high error barrier between seeds",
                "well connected: a low error barrier between seeds",
            ),
            Some("hessian_t") => (
                "locally flat: a small Hessian trace",
                "locally sharp: a large Hessian trace",
            ),
            Some("CKA") => (
                "dissimilar seeds: low CKA between their outputs",
                "similar seeds: high CKA between their outputs",
            ),
            _ => ("", ""),
        };
        if at_most { left } else { right }
    }
}

impl fmt::Display for TreeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TreeKind {
    type Err = terrain_model::Error;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        TreeKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                terrain_model::Error::config(
                    "tree",
                    &s,
                    "must be one of `temp`, `temp-cka`, `width`, `data`",
                )
            })
    }
}

/// A fitted MD tree: its kind and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MdTree {
    /// The shape.
    pub kind: TreeKind,
    /// One threshold per slot of [`TreeKind::features`].
    pub thresholds: Vec<f64>,
}

/// The result of [`MdTree::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MdFit {
    /// The fitted tree.
    pub tree: MdTree,
    /// Its accuracy on the training rows, in [0, 1].
    pub train_accuracy: f64,
    /// Objective evaluations of each slot's search.
    pub evaluations: Vec<usize>,
}

/// One decision on the path through a tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The threshold slot.
    pub slot: usize,
    /// The feature (table column) compared.
    pub feature: String,
    /// The feature's value.
    pub value: f64,
    /// The threshold.
    pub threshold: f64,
    /// Whether `value <= threshold` (the left branch).
    pub at_most: bool,
}

fn walk(node: &Node, row: &[f64], thresholds: &[f64], path: &mut Vec<(usize, bool)>) -> usize {
    match node {
        Node::Leaf { class } => *class,
        Node::Split { slot, left, right } => {
            let at_most = row[*slot] <= thresholds[*slot];
            path.push((*slot, at_most));
            walk(if at_most { left } else { right }, row, thresholds, path)
        }
    }
}

fn accuracy(shape: &Node, x: &[Vec<f64>], y: &[usize], thresholds: &[f64]) -> f64 {
    let mut path = Vec::new();
    let correct = x
        .iter()
        .zip(y)
        .filter(|(row, c)| {
            path.clear();
            walk(shape, row, thresholds, &mut path) == **c
        })
        .count();
    correct as f64 / y.len() as f64
}

impl MdTree {
    /// A tree of `kind` with its initial thresholds.
    pub fn initial(kind: TreeKind) -> MdTree {
        MdTree {
            kind,
            thresholds: kind.initial().to_vec(),
        }
    }

    fn check_rows(kind: TreeKind, x: &[Vec<f64>], what: &str) -> Result<()> {
        let d = kind.features().len();
        if let Some((i, r)) = x.iter().enumerate().find(|(_, r)| r.len() != d) {
            return Err(Error::Invalid {
                what: what.into(),
                reason: format!(
                    "row {i} has {} features, the `{kind}` tree needs {d}",
                    r.len()
                ),
            });
        }
        if let Some(i) = x.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(Error::Invalid {
                what: what.into(),
                reason: format!("row {i} has a feature that is not finite"),
            });
        }
        Ok(())
    }

    /// Fits the thresholds on rows `x` (features in [`TreeKind::features`] order) with classes
    /// `y` (indices into the question's classes): one bounded Brent search per slot, in order,
    /// in one pass.
    pub fn fit(kind: TreeKind, x: &[Vec<f64>], y: &[usize], brent: &BrentConfig) -> Result<MdFit> {
        let what = format!("MD tree `{kind}`");
        if x.is_empty() {
            return Err(Error::EmptyTraining { what });
        }
        if x.len() != y.len() {
            return Err(Error::Invalid {
                what,
                reason: format!("{} rows of features but {} labels", x.len(), y.len()),
            });
        }
        Self::check_rows(kind, x, &what)?;
        let shape = kind.shape();
        let mut thresholds = kind.initial().to_vec();
        let mut evaluations = Vec::new();
        for (slot, &bounds) in kind.bounds().iter().enumerate() {
            let mut t = thresholds.clone();
            let r = minimize_bounded(
                |v| {
                    t[slot] = v;
                    -accuracy(&shape, x, y, &t)
                },
                bounds,
                brent,
            )?;
            thresholds[slot] = r.x;
            evaluations.push(r.nfev);
        }
        let train_accuracy = accuracy(&shape, x, y, &thresholds);
        Ok(MdFit {
            tree: MdTree { kind, thresholds },
            train_accuracy,
            evaluations,
        })
    }

    fn check(&self) -> Result<()> {
        let d = self.kind.features().len();
        if self.thresholds.len() != d || self.thresholds.iter().any(|t| !t.is_finite()) {
            return Err(Error::Invalid {
                what: format!("MD tree `{}`", self.kind),
                reason: format!("needs {d} finite thresholds, has {:?}", self.thresholds),
            });
        }
        Ok(())
    }

    /// The class predicted for one row (features in [`TreeKind::features`] order).
    pub fn predict(&self, row: &[f64]) -> Result<usize> {
        Ok(self.explain(row)?.1)
    }

    /// The decisions taken for one row and the class of the leaf reached.
    pub fn explain(&self, row: &[f64]) -> Result<(Vec<Decision>, usize)> {
        self.check()?;
        let features = self.kind.features();
        if row.len() != features.len() {
            return Err(Error::TreeFeatures {
                origin: format!("MD tree `{}`", self.kind),
                expected: features.join(", "),
                found: format!("the row has {} values", row.len()),
            });
        }
        let mut path = Vec::new();
        let class = walk(&self.kind.shape(), row, &self.thresholds, &mut path);
        let decisions = path
            .into_iter()
            .map(|(slot, at_most)| Decision {
                slot,
                feature: features[slot].to_string(),
                value: row[slot],
                threshold: self.thresholds[slot],
                at_most,
            })
            .collect();
        Ok((decisions, class))
    }

    /// Accuracy on rows `x` with classes `y`, in [0, 1].
    pub fn accuracy(&self, x: &[Vec<f64>], y: &[usize]) -> Result<f64> {
        self.check()?;
        Self::check_rows(self.kind, x, &format!("MD tree `{}`", self.kind))?;
        if y.is_empty() || x.len() != y.len() {
            return Err(Error::Invalid {
                what: format!("MD tree `{}`", self.kind),
                reason: format!("{} rows and {} labels", x.len(), y.len()),
            });
        }
        Ok(accuracy(&self.kind.shape(), x, y, &self.thresholds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_are_consistent() {
        for k in TreeKind::ALL {
            assert_eq!(k.to_string().parse::<TreeKind>().unwrap(), k);
            let d = k.features().len();
            assert_eq!(k.initial().len(), d);
            assert_eq!(k.bounds().len(), d);
            // Every slot appears in the shape exactly once.
            fn slots(n: &Node, out: &mut Vec<usize>) {
                if let Node::Split { slot, left, right } = n {
                    out.push(*slot);
                    slots(left, out);
                    slots(right, out);
                }
            }
            let mut s = Vec::new();
            slots(&k.shape(), &mut s);
            s.sort();
            assert_eq!(s, (0..d).collect::<Vec<_>>(), "{k}");
        }
    }

    #[test]
    fn the_temp_tree_is_the_papers_predictor() {
        // predictor_temp by hand at the initial thresholds (0.5, -10, 7); `<=` everywhere.
        let t = MdTree::initial(TreeKind::Temp);
        assert_eq!(t.predict(&[0.5, 0.0, 0.0]).unwrap(), 1); // te <= t0: small
        assert_eq!(t.predict(&[0.6, -10.0, 7.0]).unwrap(), 0); // poorly connected, flat: large
        assert_eq!(t.predict(&[0.6, -10.0, 7.1]).unwrap(), 1); // poorly connected, sharp: small
        assert_eq!(t.predict(&[0.6, -9.9, 9.0]).unwrap(), 0); // well connected: large
        let c = MdTree::initial(TreeKind::TempCka);
        assert_eq!(c.predict(&[0.6, -10.0, 0.5]).unwrap(), 1);
        assert_eq!(c.predict(&[0.6, -10.0, 0.6]).unwrap(), 0);
        assert!(t.predict(&[0.6, -10.0]).is_err());
    }

    #[test]
    fn the_data_tree_is_the_papers_predictor() {
        let t = MdTree::initial(TreeKind::Data); // (0.5, -10, 7, -10, 7, 7)
        // interpolating, poorly connected: slot 4 decides.
        assert_eq!(t.predict(&[0.1, -20.0, 9.0, 0.0, 6.0, 9.0]).unwrap(), 1);
        assert_eq!(t.predict(&[0.1, -20.0, 1.0, 0.0, 8.0, 1.0]).unwrap(), 0);
        // interpolating, connected: slot 2 decides.
        assert_eq!(t.predict(&[0.1, -5.0, 6.0, -50.0, 9.0, 9.0]).unwrap(), 1);
        // not interpolating, poorly connected (slot 3): batch.
        assert_eq!(t.predict(&[1.0, 0.0, 0.0, -11.0, 0.0, 0.0]).unwrap(), 0);
        // not interpolating, connected: slot 5 decides.
        assert_eq!(t.predict(&[1.0, -50.0, 9.0, -9.0, 9.0, 6.5]).unwrap(), 1);
    }
}
