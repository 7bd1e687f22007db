//! The matrix-free operator trait every solver takes, and a dense matrix implementing it.

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// A symmetric linear operator `v ↦ A v` on flat vectors (1-D tensors of length [`dim`]).
///
/// Solvers (power iteration, Lanczos, Hutchinson, Hutch++, stochastic Lanczos quadrature) only see
/// this trait, so they work the same on an exact Hessian, a Gauss–Newton matrix, a finite-difference
/// product or a dense test matrix.
///
/// [`dim`]: LinearOperator::dim
pub trait LinearOperator {
    /// The dimension `p` of the space the operator acts on.
    fn dim(&self) -> usize;
    /// The dtype of the vectors the operator takes and returns.
    fn dtype(&self) -> DType;
    /// The device of those vectors.
    fn device(&self) -> &Device;
    /// `A v` for a 1-D `v` of length [`LinearOperator::dim`].
    fn apply(&self, v: &Tensor) -> Result<Tensor>;

    /// Checks that `v` is a vector this operator can take.
    fn check_vector(&self, v: &Tensor, context: &str) -> Result<()> {
        if v.rank() != 1 || v.elem_count() != self.dim() {
            return Err(Error::DimensionMismatch {
                context: context.to_string(),
                expected: self.dim(),
                found: v.elem_count(),
            });
        }
        Ok(())
    }
}

impl<T: LinearOperator + ?Sized> LinearOperator for &T {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn dtype(&self) -> DType {
        (**self).dtype()
    }
    fn device(&self) -> &Device {
        (**self).device()
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        (**self).apply(v)
    }
}

/// A dense symmetric matrix as an operator (tests, and small Hessians computed once).
#[derive(Debug, Clone)]
pub struct DenseOperator {
    matrix: Tensor,
    device: Device,
}

impl DenseOperator {
    /// Wraps a square `[p, p]` matrix (symmetry is the caller's promise).
    pub fn new(matrix: Tensor) -> Result<Self> {
        let (r, c) = matrix.dims2()?;
        if r != c {
            return Err(Error::config(
                "matrix",
                format!("{r}x{c}"),
                "a linear operator here must be square",
            ));
        }
        let device = matrix.device().clone();
        Ok(DenseOperator { matrix, device })
    }

    /// A `p × p` row-major f64 matrix as an operator of `dtype` on `device`.
    pub fn from_rows(values: &[f64], p: usize, dtype: DType, device: &Device) -> Result<Self> {
        if values.len() != p * p {
            return Err(Error::config(
                "matrix",
                values.len(),
                format!("expected {p}×{p} = {} values", p * p),
            ));
        }
        let m = Tensor::from_slice(values, (p, p), &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?;
        Self::new(m)
    }

    /// The matrix.
    pub fn matrix(&self) -> &Tensor {
        &self.matrix
    }
}

impl LinearOperator for DenseOperator {
    fn dim(&self) -> usize {
        self.matrix.dims()[0]
    }
    fn dtype(&self) -> DType {
        self.matrix.dtype()
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        self.check_vector(v, "dense operator")?;
        Ok(self.matrix.matmul(&v.unsqueeze(1)?)?.squeeze(1)?)
    }
}
