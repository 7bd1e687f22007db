//! What the pictures of a landscape show: objective slices over pairs of hyperparameters (the
//! others at the global optimum's values) and a 2-D embedding of the configurations.
//!
//! The embedding is deliberately simple (the paper uses HOPE + UMAP, whose settings it does not
//! report): dimensional stacking of the grid indices (see [`stacked_embedding`]). It is exact
//! (no two configurations share a place), deterministic and needs no seed.

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

/// 2-D coordinates of every row by dimensional stacking (LeBlanc, Ward & Wittels 1990): the
/// first hyperparameter's level runs along x and the second's along y inside a block; the third
/// shifts the block along x, the fourth along y, and so on, with a gap of one level between
/// blocks. Every configuration gets its own place, and neighbours in the first two hyperparameters
/// are adjacent. Returns the coordinates and, per axis, the hyperparameters stacked on it
/// (innermost first).
pub fn stacked_embedding(l: &Landscape) -> (Vec<(f64, f64)>, [Vec<usize>; 2]) {
    let d = l.names.len();
    let axes: [Vec<usize>; 2] = [(0..d).step_by(2).collect(), (1..d).step_by(2).collect()];
    let coord = |r: usize, hps: &[usize]| -> f64 {
        let (mut x, mut scale) = (0.0, 1.0);
        for &j in hps {
            x += scale * l.index[r][j] as f64;
            scale *= l.levels[j].len() as f64 + 1.0;
        }
        x
    };
    let xy = (0..l.len())
        .map(|r| (coord(r, &axes[0]), coord(r, &axes[1])))
        .collect();
    (xy, axes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Value;

    #[test]
    fn stacking_places_every_configuration_apart() {
        // 3 × 2 × 2 grid: x = i0 + 4·i2, y = i1.
        let mut cols = vec![Vec::new(); 3];
        let mut err = Vec::new();
        for a in 0..3 {
            for b in 0..2 {
                for c in 0..2 {
                    for (j, v) in [a, b, c].into_iter().enumerate() {
                        cols[j].push(Value::Num(v as f64));
                    }
                    err.push((a + b + c) as f64);
                }
            }
        }
        let names = vec!["a".into(), "b".into(), "c".into()];
        let l = Landscape::new("t", names, cols, err, None).unwrap();
        let (xy, axes) = stacked_embedding(&l);
        assert_eq!(axes, [vec![0, 2], vec![1]]);
        // Row of (a, b, c) = (2, 1, 1) is 4·2 + 2·1 + 1 = 11.
        assert_eq!(xy[11], (2.0 + 4.0, 1.0));
        let mut seen = xy.clone();
        seen.sort_by(|p, q| p.partial_cmp(q).unwrap());
        seen.dedup();
        assert_eq!(seen.len(), 12);
        // The slice through row 0 over (a, b) holds the errors a + b.
        let s = slice(&l, 0, 1, 0);
        assert_eq!(s.z, vec![vec![0.0, 1.0, 2.0], vec![1.0, 2.0, 3.0]]);
    }
}
