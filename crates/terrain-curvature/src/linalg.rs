//! Dense symmetric eigendecomposition in plain Rust (f64, no LAPACK): Householder reduction to
//! tridiagonal form followed by the implicit QL algorithm with Wilkinson-type shifts — the EISPACK
//! `tred2`/`tql2` pair as published in JAMA.
//!
//! Used for dense Hessians of small models ([`crate::DenseHessian::eigen`]) and for the small
//! tridiagonal matrices that Lanczos produces ([`tridiagonal_eigen`]).
//!
//! All matrices are stored column-major internally, so every inner loop (Householder updates,
//! Givens rotations in QL) runs over contiguous memory; a 3000 × 3000 matrix takes seconds to tens
//! of seconds in an optimised build (`O(n³)`, about `9 n³` flops in all).

use crate::{Error, Result};

/// Eigenvalues and orthonormal eigenvectors of a real symmetric `n × n` matrix.
///
/// `values` are in ascending order. `vectors` holds the eigenvectors one after another:
/// `vectors[j * n .. (j + 1) * n]` is the unit eigenvector of `values[j]` (that is, the matrix
/// `V` of `A V = V Λ` stored column-major). Eigenvector signs are arbitrary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SymmetricEigen {
    /// The dimension `n`.
    pub n: usize,
    /// The eigenvalues, ascending.
    pub values: Vec<f64>,
    /// The eigenvectors, `n` blocks of `n` values (block `j` belongs to `values[j]`).
    pub vectors: Vec<f64>,
}

impl SymmetricEigen {
    /// The unit eigenvector of `values[j]`.
    pub fn vector(&self, j: usize) -> &[f64] {
        &self.vectors[j * self.n..(j + 1) * self.n]
    }

    /// Component `i` of eigenvector `j` (the entry `V[i, j]`).
    pub fn component(&self, i: usize, j: usize) -> f64 {
        self.vectors[j * self.n + i]
    }

    /// The largest eigenvalue (`None` for `n = 0`).
    pub fn max(&self) -> Option<f64> {
        self.values.last().copied()
    }

    /// The smallest eigenvalue (`None` for `n = 0`).
    pub fn min(&self) -> Option<f64> {
        self.values.first().copied()
    }

    /// The indices of the `k` largest eigenvalues, largest first.
    pub fn top_indices(&self, k: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.n).rev().take(k)
    }
}

/// Relative asymmetry `|a_ij − a_ji|` above which [`symmetric_eigen`] rejects a matrix, as a
/// multiple of the largest absolute entry.
pub const SYMMETRY_TOLERANCE: f64 = 1e-8;

/// QL iterations allowed per eigenvalue before giving up (normally 1–3 are needed).
const MAX_QL_ITERATIONS: usize = 60;

fn check_finite(values: &[f64], context: &str, name: &str) -> Result<()> {
    if let Some(&bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            context: context.to_string(),
            name: name.to_string(),
            value: bad,
        });
    }
    Ok(())
}

/// Eigenvalues (ascending) and eigenvectors of the symmetric `n × n` matrix `a` (row-major, which
/// for a symmetric matrix is the same as column-major).
///
/// Only the lower triangle is used by the algorithm, but the matrix is checked for symmetry: an
/// entry differing from its transpose by more than [`SYMMETRY_TOLERANCE`] times the largest
/// absolute entry is an invalid-configuration error ([`Error::config`]). A non-finite entry is an [`Error::NonFinite`], a
/// length other than `n²` an [`Error::DimensionMismatch`].
///
/// ```
/// let a = [2.0, 1.0, 1.0, 2.0];
/// let e = terrain_curvature::linalg::symmetric_eigen(&a, 2).unwrap();
/// assert!((e.values[0] - 1.0).abs() < 1e-14 && (e.values[1] - 3.0).abs() < 1e-14);
/// ```
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<SymmetricEigen> {
    const CONTEXT: &str = "symmetric eigendecomposition";
    if a.len() != n * n {
        return Err(Error::DimensionMismatch {
            context: format!("{CONTEXT} of a {n}×{n} matrix"),
            expected: n * n,
            found: a.len(),
        });
    }
    check_finite(a, CONTEXT, "matrix entry")?;
    let amax = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for i in 0..n {
        for j in 0..i {
            let d = (a[i * n + j] - a[j * n + i]).abs();
            if d > SYMMETRY_TOLERANCE * amax {
                return Err(Error::config(
                    "matrix",
                    format!(
                        "a[{i},{j}] = {} but a[{j},{i}] = {}",
                        a[i * n + j],
                        a[j * n + i]
                    ),
                    "the matrix must be symmetric",
                ));
            }
        }
    }
    if n == 0 {
        return Ok(SymmetricEigen {
            n,
            values: Vec::new(),
            vectors: Vec::new(),
        });
    }
    // Column-major working copy: v[c * n + r] = V(r, c); a symmetric row-major matrix is its own
    // column-major storage.
    let mut v = a.to_vec();
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tred2(n, &mut v, &mut d, &mut e);
    // tred2 leaves the subdiagonal in e[1..n]; tql2 wants it in e[0..n-1].
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    tql2(n, &mut v, &mut d, &mut e)?;
    check_finite(&d, CONTEXT, "eigenvalue")?;
    Ok(SymmetricEigen {
        n,
        values: d,
        vectors: v,
    })
}

/// Eigenvalues (ascending) and eigenvectors of the symmetric tridiagonal matrix with diagonal
/// `alpha` (length `n`) and off-diagonal `beta` (length `n − 1`: `beta[i]` couples `i` and `i + 1`).
///
/// This is the form Lanczos produces; for stochastic Lanczos quadrature the first components of
/// the eigenvectors ([`SymmetricEigen::component`]`(0, j)`) give the quadrature weights, and the
/// last ones the Ritz residual estimates. Zero entries in `beta` (a split matrix) are fine.
///
/// ```
/// // The 1-D discrete Laplacian has eigenvalues 2 − 2 cos(kπ/(n+1)).
/// let n = 5;
/// let e = terrain_curvature::linalg::tridiagonal_eigen(&vec![2.0; n], &vec![-1.0; n - 1]).unwrap();
/// let exact = 2.0 - 2.0 * (std::f64::consts::PI / (n as f64 + 1.0)).cos();
/// assert!((e.values[0] - exact).abs() < 1e-14);
/// ```
pub fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> Result<SymmetricEigen> {
    const CONTEXT: &str = "tridiagonal eigendecomposition";
    let n = alpha.len();
    if beta.len() + 1 != n.max(1) {
        return Err(Error::DimensionMismatch {
            context: format!("{CONTEXT}: off-diagonal of a {n}×{n} tridiagonal matrix"),
            expected: n.saturating_sub(1),
            found: beta.len(),
        });
    }
    check_finite(alpha, CONTEXT, "diagonal entry")?;
    check_finite(beta, CONTEXT, "off-diagonal entry")?;
    if n == 0 {
        return Ok(SymmetricEigen {
            n,
            values: Vec::new(),
            vectors: Vec::new(),
        });
    }
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let mut d = alpha.to_vec();
    let mut e = beta.to_vec();
    e.push(0.0);
    tql2(n, &mut v, &mut d, &mut e)?;
    check_finite(&d, CONTEXT, "eigenvalue")?;
    Ok(SymmetricEigen {
        n,
        values: d,
        vectors: v,
    })
}

/// Householder reduction of the symmetric matrix in `v` (column-major) to tridiagonal form, with
/// the orthogonal transformation accumulated in `v`: on return `d` is the diagonal, `e[1..n]` the
/// subdiagonal (`e[0] = 0`). EISPACK `tred2` as in JAMA, with every index pair transposed so that
/// the inner loops walk down columns.
fn tred2(n: usize, v: &mut [f64], d: &mut [f64], e: &mut [f64]) {
    // V(r, c) = v[c * n + r]; JAMA's V[k][j] with k ≥ j is column j, row k.
    for j in 0..n {
        d[j] = v[j * n + n - 1];
    }
    for i in (1..n).rev() {
        let mut scale = 0.0;
        let mut h = 0.0;
        for dk in &d[..i] {
            scale += dk.abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[j * n + i - 1];
                v[j * n + i] = 0.0;
                v[i * n + j] = 0.0;
            }
        } else {
            for dk in &mut d[..i] {
                *dk /= scale;
                h += *dk * *dk;
            }
            let f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            // Apply the similarity transformation to the remaining columns.
            for j in 0..i {
                let f = d[j];
                v[i * n + j] = f;
                let col = &v[j * n..j * n + i];
                let below = &col[j + 1..i];
                for (ek, &vkj) in e[j + 1..i].iter_mut().zip(below) {
                    *ek += vkj * f;
                }
                e[j] = e[j] + col[j] * f + dot(below, &d[j + 1..i]);
            }
            let mut f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let f = d[j];
                let g = e[j];
                let col = &mut v[j * n + j..j * n + i];
                for ((vkj, ek), dk) in col.iter_mut().zip(&e[j..i]).zip(&d[j..i]) {
                    *vkj -= f * ek + g * dk;
                }
                d[j] = v[j * n + i - 1];
                v[j * n + i] = 0.0;
            }
        }
        d[i] = h;
    }
    // Accumulate the transformations.
    for i in 0..n.saturating_sub(1) {
        v[i * n + n - 1] = v[i * n + i];
        v[i * n + i] = 1.0;
        let h = d[i + 1];
        let (left, right) = v.split_at_mut((i + 1) * n);
        let next = &mut right[..i + 1]; // V(0..=i, i+1)
        if h != 0.0 {
            for (dk, vk) in d[..=i].iter_mut().zip(next.iter()) {
                *dk = vk / h;
            }
            for j in 0..=i {
                let col = &mut left[j * n..j * n + i + 1];
                let g = dot(next, col);
                for (vkj, dk) in col.iter_mut().zip(&d[..=i]) {
                    *vkj -= g * dk;
                }
            }
        }
        next.fill(0.0);
    }
    for j in 0..n {
        d[j] = v[j * n + n - 1];
        v[j * n + n - 1] = 0.0;
    }
    v[n * n - 1] = 1.0;
    e[0] = 0.0;
}

/// `Σ a_i b_i` with four independent partial sums (so the loop vectorises).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Implicit QL with shifts on the symmetric tridiagonal matrix (`d` diagonal, `e[i]` coupling `i`
/// and `i + 1`, `e[n−1] = 0`), rotating the columns of `v` (column-major) along. On return `d`
/// holds the eigenvalues ascending and `v` the matching eigenvectors. EISPACK `tql2` as in JAMA.
fn tql2(n: usize, v: &mut [f64], d: &mut [f64], e: &mut [f64]) -> Result<()> {
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    let flush_at = ROTATION_BATCH * n.max(1);
    let mut rotations: Vec<Rotation> = Vec::with_capacity(flush_at + n);
    let mut panels = to_panels(v, n);
    for l in 0..n {
        // Find a small subdiagonal element.
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        // If m == l, d[l] is an eigenvalue; otherwise iterate.
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                if iter > MAX_QL_ITERATIONS {
                    return Err(Error::Unsupported {
                        method: "symmetric eigendecomposition (implicit QL)".to_string(),
                        what: format!(
                            "this matrix: eigenvalue {l} did not converge in {MAX_QL_ITERATIONS} iterations"
                        ),
                    });
                }
                // Compute the implicit shift.
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in &mut d[l + 2..n] {
                    *di -= h;
                }
                f += h;
                // Implicit QL transformation.
                p = d[m];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    // The rotation of columns i and i + 1 of V is deferred: the recurrence on
                    // (d, e) never reads V.
                    rotations.push(Rotation { col: i, c, s });
                }
                if rotations.len() >= flush_at {
                    apply_rotations(n, &mut panels, &rotations);
                    rotations.clear();
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 || !e[l].is_finite() {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    apply_rotations(n, &mut panels, &rotations);
    from_panels(&panels, v, n);
    // Sort eigenvalues and eigenvectors ascending (selection sort: n swaps at most).
    for i in 0..n.saturating_sub(1) {
        let mut k = i;
        let mut p = d[i];
        for (j, &dj) in d.iter().enumerate().skip(i + 1) {
            if dj < p {
                k = j;
                p = dj;
            }
        }
        if k != i {
            d[k] = d[i];
            d[i] = p;
            let (left, right) = v.split_at_mut(k * n);
            left[i * n..(i + 1) * n].swap_with_slice(&mut right[..n]);
        }
    }
    Ok(())
}

/// A Givens rotation of columns `col` and `col + 1`.
#[derive(Clone, Copy)]
struct Rotation {
    col: usize,
    c: f64,
    s: f64,
}

/// Rotations are buffered and applied in batches of this many times `n`: each batch then streams
/// `V` through the cache once instead of once per QL sweep.
const ROTATION_BATCH: usize = 32;

/// Rows per panel when applying a batch of rotations (a panel of 3000 columns, 768 KiB, fits in
/// L2).
const ROW_BLOCK: usize = 32;

/// Matrices from this dimension on apply rotations on several threads (disjoint row ranges).
const PARALLEL_FROM: usize = 384;

/// `V` (column-major `n × n`) cut into panels of [`ROW_BLOCK`] rows, each panel column-major
/// (`rows × n`) and contiguous: a rotation of two columns touches two short contiguous segments
/// per panel, and panels can be handed to threads as disjoint slices.
fn to_panels(v: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for (p, panel) in out.chunks_mut(ROW_BLOCK * n).enumerate() {
        let (r0, rows) = (p * ROW_BLOCK, panel.len() / n);
        for c in 0..n {
            panel[c * rows..(c + 1) * rows].copy_from_slice(&v[c * n + r0..c * n + r0 + rows]);
        }
    }
    out
}

/// The inverse of [`to_panels`].
fn from_panels(panels: &[f64], v: &mut [f64], n: usize) {
    for (p, panel) in panels.chunks(ROW_BLOCK * n).enumerate() {
        let (r0, rows) = (p * ROW_BLOCK, panel.len() / n);
        for c in 0..n {
            v[c * n + r0..c * n + r0 + rows].copy_from_slice(&panel[c * rows..(c + 1) * rows]);
        }
    }
}

/// Applies `rotations`, in order, to the columns of `V` held as [`to_panels`] panels. Rows are
/// independent, so for large `n` the panels are split over threads.
fn apply_rotations(n: usize, panels: &mut [f64], rotations: &[Rotation]) {
    if rotations.is_empty() {
        return;
    }
    let count = n.div_ceil(ROW_BLOCK);
    let threads = if n >= PARALLEL_FROM {
        std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1)
            .min(count)
    } else {
        1
    };
    if threads <= 1 {
        for panel in panels.chunks_mut(ROW_BLOCK * n) {
            rotate_panel(n, panel, rotations);
        }
        return;
    }
    let per = count.div_ceil(threads);
    std::thread::scope(|scope| {
        for group in panels.chunks_mut(per * ROW_BLOCK * n) {
            scope.spawn(move || {
                for panel in group.chunks_mut(ROW_BLOCK * n) {
                    rotate_panel(n, panel, rotations);
                }
            });
        }
    });
}

/// Applies `rotations` to one panel (`rows × n`, column-major).
fn rotate_panel(n: usize, panel: &mut [f64], rotations: &[Rotation]) {
    let rows = panel.len() / n;
    for r in rotations {
        let (left, right) = panel.split_at_mut((r.col + 1) * rows);
        let a = &mut left[r.col * rows..];
        let b = &mut right[..rows];
        let (c, s) = (r.c, r.s);
        for (x, y) in a.iter_mut().zip(b.iter_mut()) {
            let hy = *y;
            *y = s * *x + c * hy;
            *x = c * *x - s * hy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_by_two() {
        let e = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!((e.values[0] - 1.0).abs() < 1e-14);
        assert!((e.values[1] - 3.0).abs() < 1e-14);
        let v = e.vector(1);
        assert!((v[0].abs() - 0.5f64.sqrt()).abs() < 1e-14);
        assert!((v[0] - v[1]).abs() < 1e-14);
    }

    #[test]
    fn one_and_zero() {
        let e = symmetric_eigen(&[-4.0], 1).unwrap();
        assert_eq!(e.values, vec![-4.0]);
        assert_eq!(e.vectors, vec![1.0]);
        assert_eq!(symmetric_eigen(&[], 0).unwrap().n, 0);
        let t = tridiagonal_eigen(&[3.0], &[]).unwrap();
        assert_eq!(t.values, vec![3.0]);
    }

    #[test]
    fn diagonal_matrix_is_sorted() {
        let a = [3.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 2.0];
        let e = symmetric_eigen(&a, 3).unwrap();
        assert_eq!(e.values, vec![-1.0, 2.0, 3.0]);
        assert_eq!(e.vector(0), &[0.0, 1.0, 0.0]);
    }
}
