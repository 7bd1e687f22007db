//! What the pictures of a landscape show: objective slices over pairs of hyperparameters (the
//! others at the global optimum's values) and a 2-D embedding of the configurations.
//!
//! The embedding is deliberately simple (the paper uses HOPE + UMAP, whose settings it does not
//! report): principal component analysis of the grid-index vectors, each hyperparameter scaled
//! to [0, 1] by its number of levels. With two hyperparameters it is the grid itself, turned; with
//! more, the plane that spreads the grid most. It is deterministic and needs no seed.

use serde::{Deserialize, Serialize};

use crate::Landscape;

/// The objective over two hyperparameters with every other at the global optimum's level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// The hyperparameter along x (index into the landscape's names).
    pub x: usize,
    /// The hyperparameter along y.
    pub y: usize,
    /// `z[j][i]`: the error at level i of x and level j of y (NaN where no row has them).
    pub z: Vec<Vec<f64>>,
}

/// The slice through row `at` over hyperparameters `x` and `y`.
pub fn slice(l: &Landscape, x: usize, y: usize, at: usize) -> Slice {
    let (nx, ny) = (l.levels[x].len(), l.levels[y].len());
    let mut z = vec![vec![f64::NAN; nx]; ny];
    let base = &l.index[at];
    for r in 0..l.len() {
        let ix = &l.index[r];
        let same = (0..ix.len()).all(|k| k == x || k == y || ix[k] == base[k]);
        if same {
            z[ix[y]][ix[x]] = l.error[r];
        }
    }
    Slice { x, y, z }
}

/// Every slice through row `at`, one per pair of hyperparameters with at least two levels each.
pub fn slices_through(l: &Landscape, at: usize) -> Vec<Slice> {
    let d = l.names.len();
    let mut out = Vec::new();
    for x in 0..d {
        for y in x + 1..d {
            if l.levels[x].len() > 1 && l.levels[y].len() > 1 {
                out.push(slice(l, x, y, at));
            }
        }
    }
    out
}

/// 2-D coordinates of every row: the first two principal components of the scaled grid-index
/// vectors (a single hyperparameter gives y = 0).
pub fn pca_embedding(l: &Landscape) -> Vec<(f64, f64)> {
    let d = l.names.len();
    let n = l.len();
    let scaled: Vec<Vec<f64>> = l
        .index
        .iter()
        .map(|ix| {
            (0..d)
                .map(|j| {
                    let m = l.levels[j].len().saturating_sub(1).max(1);
                    ix[j] as f64 / m as f64
                })
                .collect()
        })
        .collect();
    let mean: Vec<f64> = (0..d)
        .map(|j| scaled.iter().map(|v| v[j]).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![vec![0.0; d]; d];
    for v in &scaled {
        for a in 0..d {
            for b in 0..d {
                cov[a][b] += (v[a] - mean[a]) * (v[b] - mean[b]);
            }
        }
    }
    let (vals, vecs) = jacobi_eigen(cov);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]).then(a.cmp(&b)));
    let axis = |k: usize| -> Option<Vec<f64>> {
        order.get(k).map(|&c| (0..d).map(|r| vecs[r][c]).collect())
    };
    let (a1, a2) = (axis(0), axis(1));
    let proj = |v: &[f64], a: &Option<Vec<f64>>| -> f64 {
        a.as_ref()
            .map_or(0.0, |a| (0..d).map(|j| (v[j] - mean[j]) * a[j]).sum())
    };
    scaled
        .iter()
        .map(|v| (proj(v, &a1), proj(v, &a2)))
        .collect()
}

/// Eigenvalues and eigenvectors (columns) of a small symmetric matrix by cyclic Jacobi rotations.
fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let d = a.len();
    let mut v = vec![vec![0.0; d]; d];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i][i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises_a_known_matrix() {
        // [[2,1],[1,2]] has eigenvalues 1 and 3.
        let (mut vals, vecs) = jacobi_eigen(vec![vec![2.0, 1.0], vec![1.0, 2.0]]);
        let v0 = (vecs[0][0], vecs[1][0]);
        assert!((2.0 * v0.0 + v0.1 - vals[0] * v0.0).abs() < 1e-12);
        vals.sort_by(f64::total_cmp);
        assert!((vals[0] - 1.0).abs() < 1e-12 && (vals[1] - 3.0).abs() < 1e-12);
    }
}
