//! A CART classification tree with scikit-learn's `DecisionTreeClassifier(criterion='gini',
//! max_depth=D, random_state=S)` semantics (best splitter, depth-first builder, scikit-learn
//! 1.9): the baselines "Hyper + DT" and "Valid + DT" of the MD tree paper.
//!
//! What is copied from scikit-learn so that the same inputs give the same tree:
//! - inputs are rounded to `f32` (scikit-learn's `DTYPE`); thresholds are `f64` midpoints
//!   `a/2 + b/2` of neighbouring distinct `f32` values, and values closer than `1e-7` (added in
//!   `f32`) count as equal; a sample goes left when `x <= threshold`;
//! - the split maximises the proxy improvement `−n_R·gini_R − n_L·gini_L`, the first strictly
//!   better candidate winning, scanning features in the splitter's random order: a Fisher–Yates
//!   draw over the features with scikit-learn's constant-feature bookkeeping and its `rand_r`
//!   generator, seeded by `RandomState(random_state).randint(0, 2**31 − 1)` (through
//!   [`crate::numpy_rng`]), so exact ties between features are broken as scikit-learn breaks them;
//! - a node is a leaf at `max_depth`, below 2 samples, when pure (Gini ≤ machine epsilon) or
//!   when no feature can split it; leaves predict the class with the most samples, the first
//!   class (in sorted order) on ties.
//!
//! ```
//! use terrain_diagnose::cart::{Cart, CartConfig};
//!
//! let x = vec![vec![0.0, 5.0], vec![1.0, 5.0], vec![2.0, 5.0], vec![3.0, 5.0]];
//! let y = vec![0, 0, 1, 1];
//! let tree = Cart::fit(&x, &y, 2, &CartConfig::default()).unwrap();
//! assert_eq!(tree.predict(&[0.4, 5.0]).unwrap(), 0);
//! assert_eq!(tree.predict(&[2.6, 5.0]).unwrap(), 1);
//! assert!(tree.predict(&[0.4]).is_err());
//! ```

use serde::{Deserialize, Serialize};

use crate::numpy_rng::Mt19937;
use crate::{Error, Result};

/// scikit-learn's `RAND_R_MAX`.
const RAND_R_MAX: u32 = 0x7fff_ffff;
/// scikit-learn's `FEATURE_THRESHOLD` (an `f32`).
const FEATURE_THRESHOLD: f32 = 1e-7;

/// Settings of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartConfig {
    /// The deepest a leaf may sit (scikit-learn `max_depth`; the paper's baselines use 4).
    pub max_depth: usize,
    /// Seed of the splitter's feature order (scikit-learn `random_state`).
    pub random_state: u32,
}

impl Default for CartConfig {
    fn default() -> Self {
        CartConfig {
            max_depth: 4,
            random_state: 0,
        }
    }
}

impl CartConfig {
    /// Checks the settings: `max_depth` between 1 and 64.
    pub fn check(&self) -> terrain_model::Result<()> {
        if (1..=64).contains(&self.max_depth) {
            Ok(())
        } else {
            Err(terrain_model::Error::config(
                "max_depth",
                self.max_depth,
                "must be between 1 and 64",
            ))
        }
    }
}

/// One node of a fitted tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CartNode {
    /// A leaf: the predicted class and the training samples of each class.
    Leaf {
        /// The predicted class index.
        class: usize,
        /// Training samples per class that reached the leaf.
        counts: Vec<usize>,
    },
    /// A split: `x[feature] <= threshold` goes to `left`.
    Split {
        /// The feature index.
        feature: usize,
        /// The threshold.
        threshold: f64,
        /// The subtree for `x[feature] <= threshold`.
        left: Box<CartNode>,
        /// The subtree for `x[feature] > threshold`.
        right: Box<CartNode>,
    },
}

/// A fitted classification tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    /// The root node.
    pub root: CartNode,
    /// The number of features the tree was fitted on.
    pub n_features: usize,
    /// The number of classes.
    pub n_classes: usize,
}

/// scikit-learn's `our_rand_r`: xorshift on 32 bits, reduced below 2³¹.
fn rand_r(state: &mut u32) -> u32 {
    if *state == 0 {
        *state = 1;
    }
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state % (RAND_R_MAX + 1)
}

/// scikit-learn's `rand_int(low, high)`: an integer in `low..high`.
fn rand_int(low: usize, high: usize, state: &mut u32) -> usize {
    low + (rand_r(state) as usize) % (high - low)
}

struct Builder<'a> {
    x: Vec<Vec<f32>>,
    y: &'a [usize],
    n_classes: usize,
    samples: Vec<usize>,
    features: Vec<usize>,
    constant_features: Vec<usize>,
    rand_state: u32,
    max_depth: usize,
}

struct Split {
    feature: usize,
    threshold: f64,
    pos: usize,
    impurity_left: f64,
    impurity_right: f64,
}

fn gini(counts: &[f64], n: f64) -> f64 {
    let sq: f64 = counts.iter().map(|c| c * c).sum();
    1.0 - sq / (n * n)
}

impl Builder<'_> {
    fn counts(&self, start: usize, end: usize) -> Vec<f64> {
        let mut c = vec![0.0; self.n_classes];
        for &s in &self.samples[start..end] {
            c[self.y[s]] += 1.0;
        }
        c
    }

    /// `node_split_best`: the best split of `samples[start..end]`, updating the count of
    /// known constant features.
    fn split(&mut self, start: usize, end: usize, n_constant: &mut usize) -> Option<Split> {
        let n_features = self.features.len();
        let max_features = n_features;
        let mut f_i = n_features;
        let mut n_visited = 0usize;
        let mut n_found_constants = 0usize;
        let mut n_drawn_constants = 0usize;
        let n_known_constants = *n_constant;
        let mut n_total_constants = n_known_constants;
        let total = self.counts(start, end);
        let n_node = (end - start) as f64;

        let mut best: Option<(f64, Split)> = None;
        let mut values: Vec<(f32, usize)> = Vec::with_capacity(end - start);

        while f_i > n_total_constants
            && (n_visited < max_features || n_visited <= n_found_constants + n_drawn_constants)
        {
            n_visited += 1;
            let mut f_j = rand_int(
                n_drawn_constants,
                f_i - n_found_constants,
                &mut self.rand_state,
            );
            if f_j < n_known_constants {
                self.features.swap(n_drawn_constants, f_j);
                n_drawn_constants += 1;
                continue;
            }
            f_j += n_found_constants;
            let feature = self.features[f_j];
            values.clear();
            values.extend(
                self.samples[start..end]
                    .iter()
                    .map(|&s| (self.x[s][feature], s)),
            );
            values.sort_by(|a, b| a.0.total_cmp(&b.0));
            if values[values.len() - 1].0 <= values[0].0 + FEATURE_THRESHOLD {
                self.features.swap(f_j, n_total_constants);
                n_found_constants += 1;
                n_total_constants += 1;
                continue;
            }
            f_i -= 1;
            self.features.swap(f_i, f_j);

            // Scan the split positions in sorted order.
            let mut left = vec![0.0; self.n_classes];
            let mut p = 0usize;
            let mut filled = 0usize;
            let n = values.len();
            while p < n {
                // next_p
                p += 1;
                while p < n && values[p].0 <= values[p - 1].0 + FEATURE_THRESHOLD {
                    p += 1;
                }
                let p_prev = p - 1;
                if p == n {
                    continue;
                }
                // Counts left of p (samples values[..p]); integer counts, so exact.
                for v in &values[filled..p] {
                    left[self.y[v.1]] += 1.0;
                }
                filled = p;
                let right: Vec<f64> = total.iter().zip(&left).map(|(t, l)| t - l).collect();
                let n_left = p as f64;
                let n_right = n_node - n_left;
                let imp_left = gini(&left, n_left);
                let imp_right = gini(&right, n_right);
                let proxy = -n_right * imp_right - n_left * imp_left;
                if best.as_ref().is_none_or(|(b, _)| proxy > *b) {
                    let threshold =
                        f64::from(values[p_prev].0) / 2.0 + f64::from(values[p].0) / 2.0;
                    best = Some((
                        proxy,
                        Split {
                            feature,
                            threshold,
                            pos: start + p,
                            impurity_left: imp_left,
                            impurity_right: imp_right,
                        },
                    ));
                }
            }
        }

        let best = best.map(|(_, s)| s);
        if let Some(s) = &best {
            // Partition samples[start..end] on the chosen split (left block first).
            let (mut l, mut r): (Vec<usize>, Vec<usize>) = self.samples[start..end]
                .iter()
                .partition(|&&i| f64::from(self.x[i][s.feature]) <= s.threshold);
            l.append(&mut r);
            self.samples[start..end].copy_from_slice(&l);
        }
        // Keep the known constants in their original order for siblings and children.
        self.features[..n_known_constants]
            .copy_from_slice(&self.constant_features[..n_known_constants]);
        let newly: Vec<usize> =
            self.features[n_known_constants..n_known_constants + n_found_constants].to_vec();
        self.constant_features[n_known_constants..n_known_constants + n_found_constants]
            .copy_from_slice(&newly);
        *n_constant = n_total_constants;
        best
    }

    fn leaf(&self, start: usize, end: usize) -> CartNode {
        let counts: Vec<usize> = self
            .counts(start, end)
            .iter()
            .map(|&c| c as usize)
            .collect();
        let mut class = 0;
        for (k, &c) in counts.iter().enumerate() {
            if c > counts[class] {
                class = k;
            }
        }
        CartNode::Leaf { class, counts }
    }

    /// The depth-first builder: the left child is built before the right one (the order in
    /// which scikit-learn's stack pops them, which fixes the splitter's random draws).
    fn build(
        &mut self,
        start: usize,
        end: usize,
        depth: usize,
        impurity: f64,
        n_constant: usize,
    ) -> CartNode {
        let n_node = end - start;
        let mut is_leaf = depth >= self.max_depth || n_node < 2;
        is_leaf = is_leaf || impurity <= f64::EPSILON;
        if is_leaf {
            return self.leaf(start, end);
        }
        let mut n_constant = n_constant;
        let Some(split) = self.split(start, end, &mut n_constant) else {
            return self.leaf(start, end);
        };
        if split.pos >= end {
            return self.leaf(start, end);
        }
        let left = self.build(start, split.pos, depth + 1, split.impurity_left, n_constant);
        let right = self.build(split.pos, end, depth + 1, split.impurity_right, n_constant);
        CartNode::Split {
            feature: split.feature,
            threshold: split.threshold,
            left: Box::new(left),
            right: Box::new(right),
        }
    }
}

impl Cart {
    /// Fits a tree on rows `x` (each of the same length) with class indices `y` in
    /// `0..n_classes`.
    pub fn fit(x: &[Vec<f64>], y: &[usize], n_classes: usize, config: &CartConfig) -> Result<Cart> {
        config.check()?;
        if x.is_empty() {
            return Err(Error::EmptyTraining {
                what: "decision tree".into(),
            });
        }
        if x.len() != y.len() {
            return Err(Error::Invalid {
                what: "decision tree".into(),
                reason: format!("{} rows of features but {} labels", x.len(), y.len()),
            });
        }
        let d = x[0].len();
        if d == 0 {
            return Err(Error::Invalid {
                what: "decision tree".into(),
                reason: "no features".into(),
            });
        }
        if let Some((i, _)) = x.iter().enumerate().find(|(_, r)| r.len() != d) {
            return Err(Error::Invalid {
                what: "decision tree".into(),
                reason: format!("row {i} has {} features, row 0 has {d}", x[i].len()),
            });
        }
        if let Some((i, &c)) = y.iter().enumerate().find(|(_, c)| **c >= n_classes) {
            return Err(Error::Invalid {
                what: "decision tree".into(),
                reason: format!("label {c} of row {i} is not below the class count {n_classes}"),
            });
        }
        let xf: Vec<Vec<f32>> = x
            .iter()
            .map(|r| r.iter().map(|&v| v as f32).collect())
            .collect();
        if let Some(i) = xf.iter().position(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(Error::Invalid {
                what: "decision tree".into(),
                reason: format!("row {i} has a feature that is not finite in f32"),
            });
        }
        // Splitter::init: rand_r_state = RandomState(random_state).randint(0, RAND_R_MAX).
        let mut mt = Mt19937::new(config.random_state);
        let rand_state = mt
            .randint(0, i64::from(RAND_R_MAX))
            .expect("0 < RAND_R_MAX") as u32;
        let mut b = Builder {
            x: xf,
            y,
            n_classes,
            samples: (0..y.len()).collect(),
            features: (0..d).collect(),
            constant_features: (0..d).collect(),
            rand_state,
            max_depth: config.max_depth,
        };
        let total = b.counts(0, y.len());
        let impurity = gini(&total, y.len() as f64);
        let root = b.build(0, y.len(), 0, impurity, 0);
        Ok(Cart {
            root,
            n_features: d,
            n_classes,
        })
    }

    /// The class predicted for one row (rounded to `f32` as scikit-learn does); a row of
    /// another length than the tree was fitted on is an error.
    pub fn predict(&self, row: &[f64]) -> Result<usize> {
        if row.len() != self.n_features {
            return Err(Error::Invalid {
                what: "decision tree".into(),
                reason: format!(
                    "the row has {} features, the tree was fitted on {}",
                    row.len(),
                    self.n_features
                ),
            });
        }
        let mut node = &self.root;
        loop {
            match node {
                CartNode::Leaf { class, .. } => return Ok(*class),
                CartNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    let v = f64::from(row[*feature] as f32);
                    node = if v <= *threshold { left } else { right };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rand_r_matches_the_xorshift_by_hand() {
        // One step from 1: 1 ^ 1<<13 = 8193; ^ >>17 = 8193; ^ <<5 = 8193 ^ 262176 = 270369.
        let mut s = 0;
        assert_eq!(rand_r(&mut s), 270_369);
    }

    #[test]
    fn a_constant_feature_never_splits_and_depth_is_bounded() {
        let x: Vec<Vec<f64>> = (0..16).map(|i| vec![1.0, f64::from(i)]).collect();
        let y: Vec<usize> = (0..16).map(|i| i % 2).collect();
        let t = Cart::fit(
            &x,
            &y,
            2,
            &CartConfig {
                max_depth: 2,
                random_state: 3,
            },
        )
        .unwrap();
        fn check(n: &CartNode, depth: usize) -> usize {
            match n {
                CartNode::Leaf { .. } => depth,
                CartNode::Split {
                    feature,
                    left,
                    right,
                    ..
                } => {
                    assert_eq!(*feature, 1);
                    check(left, depth + 1).max(check(right, depth + 1))
                }
            }
        }
        assert!(check(&t.root, 0) <= 2);
    }
}
