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
//! [`Bounds`] chooses each slot's search interval and initial threshold: `paper` (the
//! published ones, for the paper's tables) or `data` (from the training rows' feature values,
//! for tables at another scale; see [`Bounds::Data`] for the exact rule).
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

/// The fixed tree shapes of the paper, and single-checkpoint shapes of ours.
///
/// The paper's four shapes read `mode_connectivity_peak` (and `temp-cka` CKA), which compare
/// two trained seeds of one configuration. The three `*-single` shapes read only features of
/// one model (train_error, hessian_t, hessian_e), so one checkpoint can be diagnosed. They keep
/// the paper's first split (interpolating or not, train_error in percent, bound [0, 1]) and
/// replace the connectivity tests by curvature tests, following the loss-landscape taxonomy
/// the paper builds on (methods.md §2): a too-low temperature (large batch) ends in a sharp,
/// poorly connected region, a too-high one (small batch) in a flat one; a model that is too
/// narrow sits in a sharper region than one limited by its optimizer; models limited by their
/// data amount are flatter than ones limited by the batch size (the paper's data tree sends
/// `hessian_t <= t` to `data`). Their paper-scale bounds span the public tables' values
/// (hessian_t [4, 9] as in the paper, hessian_e [1, 7]).
///
/// - `temp-single` (train_error, hessian_t, hessian_e): `te <= t0` → small (interpolating);
///   else `hessian_t <= t1` → large (flat: noise-dominated, the temperature is too high);
///   else `hessian_e <= t2` → large, else small (sharp bulk and sharp top direction: the
///   temperature is too low). The paper's temp tree with "poorly connected" read as "sharp".
/// - `width-single` (train_error, hessian_e, hessian_e): in each train_error regime,
///   `hessian_e <= t` → batch, else width (the paper's width tree with "poorly connected"
///   read as "a sharp top direction").
/// - `data-single` (train_error, hessian_t, hessian_t), width ≥ 32 as the data tree: in each
///   train_error regime, `hessian_t <= t` → data, else batch.
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
    /// `temp-single`: (train_error, hessian_t, hessian_e) for Q1, from one checkpoint.
    TempSingle,
    /// `width-single`: (train_error, hessian_e, hessian_e) for Q2 width, from one checkpoint.
    WidthSingle,
    /// `data-single`: (train_error, hessian_t, hessian_t) for Q2 data (width ≥ 32), from one
    /// checkpoint.
    DataSingle,
}

/// How [`MdTree::fit_with`] chooses each slot's search interval and initial threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bounds {
    /// The published bounds and initial thresholds ([`TreeKind::bounds`],
    /// [`TreeKind::initial`]); what the paper's numbers need.
    #[default]
    Paper,
    /// From the training rows: slot `k` (feature column `f`) searches
    /// `[min − r/100, max + r/100]`, `min`, `max` of `f` over the training rows and
    /// `r = max − min` (`[v − 1, v + 1]` when every row has the value `v`), and starts at the
    /// median of `f` over those rows. Why: the published bounds are in the units of ResNet-18
    /// on CIFAR-10 (hessian_t in [4, 9], train_error in [0, 1] %); on another model family a
    /// bound can miss every value (an MLP's hessian_t of 2–3 is below 4, so every row goes one
    /// way and the split is dead). The margins make both "every row `<=`" and "every row `>`"
    /// reachable, so the interval holds every distinct split, and Brent's first two probes
    /// (at 0.382 and 0.618 of the interval) land on both sides of a constant column; the
    /// median starts a slot that is not fitted yet at a split that sends rows both ways.
    /// Brent's settings and the single ordered pass are unchanged. Brent searches a step
    /// function locally, as in the paper: it can stop on a plateau short of the best split.
    Data,
}

impl Bounds {
    /// The compact name (`paper`, `data`).
    pub fn name(self) -> &'static str {
        match self {
            Bounds::Paper => "paper",
            Bounds::Data => "data",
        }
    }

    /// The search interval and initial threshold of each slot of `kind` on rows `x`
    /// (features in [`TreeKind::features`] order; `x` must not be empty for `data`).
    pub fn resolve(self, kind: TreeKind, x: &[Vec<f64>]) -> (Vec<(f64, f64)>, Vec<f64>) {
        match self {
            Bounds::Paper => (kind.bounds().to_vec(), kind.initial().to_vec()),
            Bounds::Data => (0..kind.features().len())
                .map(|k| {
                    let mut col: Vec<f64> = x.iter().map(|r| r[k]).collect();
                    col.sort_by(f64::total_cmp);
                    let (lo, hi) = (col[0], col[col.len() - 1]);
                    let n = col.len();
                    let median = if n % 2 == 1 {
                        col[n / 2]
                    } else {
                        0.5 * (col[n / 2 - 1] + col[n / 2])
                    };
                    let r = hi - lo;
                    let margin = if r > 0.0 { r / 100.0 } else { 1.0 };
                    ((lo - margin, hi + margin), median)
                })
                .unzip(),
        }
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bounds {
    type Err = terrain_model::Error;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "paper" => Ok(Bounds::Paper),
            "data" => Ok(Bounds::Data),
            _ => Err(terrain_model::Error::config(
                "bounds",
                s,
                "must be `paper` or `data`",
            )),
        }
    }
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

/// Features that compare two trained seeds of one configuration.
pub const PAIR_FEATURES: [&str; 3] = ["mode_connectivity", "mode_connectivity_peak", "CKA"];

impl TreeKind {
    /// Every kind.
    pub const ALL: [TreeKind; 7] = [
        TreeKind::Temp,
        TreeKind::TempCka,
        TreeKind::Width,
        TreeKind::Data,
        TreeKind::TempSingle,
        TreeKind::WidthSingle,
        TreeKind::DataSingle,
    ];

    /// The compact name (`temp`, `temp-cka`, `width`, `data`, `temp-single`, `width-single`,
    /// `data-single`).
    pub fn name(self) -> &'static str {
        match self {
            TreeKind::Temp => "temp",
            TreeKind::TempCka => "temp-cka",
            TreeKind::Width => "width",
            TreeKind::Data => "data",
            TreeKind::TempSingle => "temp-single",
            TreeKind::WidthSingle => "width-single",
            TreeKind::DataSingle => "data-single",
        }
    }

    /// The question the tree answers.
    pub fn question(self) -> Question {
        match self {
            TreeKind::Temp | TreeKind::TempCka | TreeKind::TempSingle => Question::Temp,
            TreeKind::Width | TreeKind::WidthSingle => Question::Width,
            TreeKind::Data | TreeKind::DataSingle => Question::Data,
        }
    }

    /// The single-checkpoint shape of `question`.
    pub fn single(question: Question) -> TreeKind {
        match question {
            Question::Temp => TreeKind::TempSingle,
            Question::Width => TreeKind::WidthSingle,
            Question::Data => TreeKind::DataSingle,
        }
    }

    /// The first feature that needs two or more seeds of one configuration
    /// ([`PAIR_FEATURES`]), if the tree reads one.
    pub fn pair_feature(self) -> Option<&'static str> {
        self.features()
            .iter()
            .copied()
            .find(|f| PAIR_FEATURES.contains(f))
    }

    /// The feature (table column) of each threshold slot.
    pub fn features(self) -> &'static [&'static str] {
        match self {
            TreeKind::Temp => &["train_error", MC, "hessian_t"],
            TreeKind::TempCka => &["train_error", MC, "CKA"],
            TreeKind::Width => &["train_error", MC, MC],
            TreeKind::Data => &["train_error", MC, "hessian_t", MC, "hessian_t", "hessian_t"],
            TreeKind::TempSingle => &["train_error", "hessian_t", "hessian_e"],
            TreeKind::WidthSingle => &["train_error", "hessian_e", "hessian_e"],
            TreeKind::DataSingle => &["train_error", "hessian_t", "hessian_t"],
        }
    }

    /// The initial thresholds.
    pub fn initial(self) -> &'static [f64] {
        match self {
            TreeKind::Temp => &[0.5, -10.0, 7.0],
            TreeKind::TempCka => &[0.5, -10.0, 0.5],
            TreeKind::Width => &[0.5, -10.0, -10.0],
            TreeKind::Data => &[0.5, -10.0, 7.0, -10.0, 7.0, 7.0],
            TreeKind::TempSingle => &[0.5, 7.0, 4.5],
            TreeKind::WidthSingle => &[0.5, 4.0, 4.0],
            TreeKind::DataSingle => &[0.5, 7.0, 7.0],
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
            TreeKind::TempSingle => &[(0.0, 1.0), (4.0, 9.0), (1.0, 7.0)],
            TreeKind::WidthSingle => &[(0.0, 1.0), (1.0, 7.0), (1.0, 7.0)],
            TreeKind::DataSingle => &[(0.0, 1.0), (4.0, 9.0), (4.0, 9.0)],
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
            // Classes: 0 = large, 1 = small.
            TreeKind::TempSingle => {
                split(0, leaf(1), split(1, leaf(0), split(2, leaf(0), leaf(1))))
            }
            // Classes: 0 = batch, 1 = width.
            TreeKind::WidthSingle => {
                split(0, split(1, leaf(0), leaf(1)), split(2, leaf(0), leaf(1)))
            }
            // Classes: 0 = batch, 1 = data.
            TreeKind::DataSingle => {
                split(0, split(1, leaf(1), leaf(0)), split(2, leaf(1), leaf(0)))
            }
        }
    }

    /// What a branch of threshold slot `slot` means: the left one (`value <= threshold`) when
    /// `at_most`, else the right one.
    pub fn branch_meaning(self, slot: usize, at_most: bool) -> &'static str {
        let (left, right) = match self.features().get(slot).copied() {
            Some("train_error") => (
                "fitted: the training error is at most the threshold (the tree's interpolation test)",
                "not fitted: the training error is above the threshold",
            ),
            Some(MC) => (
                "poorly connected: a high error barrier between seeds",
                "well connected: a low error barrier between seeds",
            ),
            Some("hessian_t") => (
                "locally flat: a small Hessian trace",
                "locally sharp: a large Hessian trace",
            ),
            Some("hessian_e") => (
                "flat top direction: a small top Hessian eigenvalue",
                "sharp top direction: a large top Hessian eigenvalue",
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
                    "must be one of `temp`, `temp-cka`, `width`, `data`, `temp-single`, \
                     `width-single`, `data-single`",
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
    /// The bounds rule used.
    pub bounds: Bounds,
    /// Each slot's search interval.
    pub intervals: Vec<(f64, f64)>,
    /// Each slot's initial threshold.
    pub initial: Vec<f64>,
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
        Self::fit_with(kind, x, y, brent, Bounds::Paper)
    }

    /// [`MdTree::fit`] with the search intervals and initial thresholds of `bounds`.
    pub fn fit_with(
        kind: TreeKind,
        x: &[Vec<f64>],
        y: &[usize],
        brent: &BrentConfig,
        bounds: Bounds,
    ) -> Result<MdFit> {
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
        let (intervals, initial) = bounds.resolve(kind, x);
        let mut thresholds = initial.clone();
        let mut evaluations = Vec::new();
        for (slot, &interval) in intervals.iter().enumerate() {
            let mut t = thresholds.clone();
            let r = minimize_bounded(
                |v| {
                    t[slot] = v;
                    -accuracy(&shape, x, y, &t)
                },
                interval,
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
            bounds,
            intervals,
            initial,
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
