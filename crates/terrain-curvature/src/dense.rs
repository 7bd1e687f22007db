//! Dense Hessians of small models, built column by column from an operator: the oracle every
//! estimator is tested against, and a direct answer for models with up to a few thousand parameters.

use candle_core::Tensor;

use crate::{Error, LinearOperator, Result, vector};

/// The largest dimension [`DenseHessian::compute`] accepts by default (a 4096² f64 matrix is 128 MiB).
pub const DEFAULT_DENSE_LIMIT: usize = 4096;

/// A dense symmetric matrix, row-major f64.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseHessian {
    dim: usize,
    values: Vec<f64>,
}

impl DenseHessian {
    /// Builds the matrix from `p` products with unit vectors, then symmetrises it
    /// (`(A + Aᵀ)/2`; autodiff Hessians are symmetric to rounding). Fails when `p > limit`.
    pub fn compute(op: &impl LinearOperator, limit: usize) -> Result<Self> {
        let p = op.dim();
        if p > limit {
            return Err(Error::TooLargeForDense {
                dim: p,
                bytes: p.saturating_mul(p).saturating_mul(8),
                limit,
            });
        }
        let mut values = vec![0.0; p * p];
        let mut e = vec![0.0; p];
        for j in 0..p {
            e[j] = 1.0;
            let col =
                vector::to_vec(&op.apply(&vector::from_slice(&e, op.dtype(), op.device())?)?)?;
            e[j] = 0.0;
            for (i, c) in col.into_iter().enumerate() {
                values[i * p + j] = c;
            }
        }
        for i in 0..p {
            for j in i + 1..p {
                let m = 0.5 * (values[i * p + j] + values[j * p + i]);
                values[i * p + j] = m;
                values[j * p + i] = m;
            }
        }
        Ok(DenseHessian { dim: p, values })
    }

    /// Wraps a row-major `p × p` matrix.
    pub fn from_rows(values: Vec<f64>, dim: usize) -> Result<Self> {
        if values.len() != dim * dim {
            return Err(Error::config(
                "matrix",
                values.len(),
                format!("expected {dim}×{dim} values"),
            ));
        }
        Ok(DenseHessian { dim, values })
    }

    /// The dimension `p`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.dim + j]
    }

    /// The row-major values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The diagonal.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.dim).map(|i| self.get(i, i)).collect()
    }

    /// The trace.
    pub fn trace(&self) -> f64 {
        self.diagonal().iter().sum()
    }

    /// Eigenvalues (ascending) and orthonormal eigenvectors, by Householder tridiagonalisation and
    /// implicit QL in f64 ([`crate::linalg::symmetric_eigen`]; `O(p³)`, seconds for `p` in the
    /// low thousands in an optimised build).
    pub fn eigen(&self) -> Result<crate::linalg::SymmetricEigen> {
        crate::linalg::symmetric_eigen(&self.values, self.dim)
    }

    /// The matrix as a `[p, p]` tensor of `like`'s dtype and device.
    pub fn to_tensor(&self, like: &Tensor) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.values,
            (self.dim, self.dim),
            &candle_core::Device::Cpu,
        )?
        .to_dtype(like.dtype())?
        .to_device(like.device())?)
    }
}
