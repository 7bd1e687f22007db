//! The matrix-free operator trait every solver takes, a dense matrix implementing it, and
//! combinators that build new operators from old ones without forming any matrix:
//! [`OperatorExt::scaled`] (`αA`), [`OperatorExt::shifted`] (`A + σI`),
//! [`OperatorExt::negated`] (`−A`: the smallest eigenvalues of `A` are the largest of `−A`, see
//! [`crate::eigen::lanczos_smallest`]) and [`OperatorExt::plus`] (`A + B`).
//!
//! ```
//! use candle_core::{DType, Device};
//! use terrain_curvature::{DenseOperator, LinearOperator, OperatorExt, eigen, LanczosConfig};
//!
//! let a = DenseOperator::from_rows(&[2.0, 0.0, 0.0, -3.0], 2, DType::F64, &Device::Cpu)?;
//! let top = eigen::lanczos(&(&a).negated(), &LanczosConfig::default())?;
//! assert!((top.values()[0] - 3.0).abs() < 1e-9); // −(−3): the smallest eigenvalue of a
//! let b = a.shifted(1.0).scaled(2.0); // 2(A + I)
//! let v = candle_core::Tensor::new(&[1.0f64, 1.0], &Device::Cpu)?;
//! assert_eq!(b.apply(&v)?.to_vec1::<f64>()?, [6.0, -4.0]);
//! # Ok::<(), terrain_curvature::Error>(())
//! ```

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

    /// `A v` for several vectors at once. The default applies them one by one; operators that
    /// can share work between vectors (one forward pass per batch for all of them) override it.
    /// Block methods (Hutch++'s sketch, several density runs) call this.
    fn apply_many(&self, vs: &[Tensor]) -> Result<Vec<Tensor>> {
        vs.iter().map(|v| self.apply(v)).collect()
    }

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
    fn apply_many(&self, vs: &[Tensor]) -> Result<Vec<Tensor>> {
        (**self).apply_many(vs)
    }
}

/// `α A`.
#[derive(Debug, Clone)]
pub struct Scaled<A> {
    op: A,
    alpha: f64,
}

/// `A + σ I`.
#[derive(Debug, Clone)]
pub struct Shifted<A> {
    op: A,
    shift: f64,
}

/// `A + B` (same dimension, dtype and device).
#[derive(Debug, Clone)]
pub struct Sum<A, B> {
    a: A,
    b: B,
}

/// Combinators on every operator (by value or by reference: `(&h).negated()`).
pub trait OperatorExt: LinearOperator + Sized {
    /// `α A`.
    fn scaled(self, alpha: f64) -> Scaled<Self> {
        Scaled { op: self, alpha }
    }
    /// `A + σ I`.
    fn shifted(self, shift: f64) -> Shifted<Self> {
        Shifted { op: self, shift }
    }
    /// `−A`.
    fn negated(self) -> Scaled<Self> {
        self.scaled(-1.0)
    }
    /// `A + B`; fails when the dimensions, dtypes or devices differ.
    fn plus<B: LinearOperator>(self, b: B) -> Result<Sum<Self, B>> {
        if self.dim() != b.dim() {
            return Err(Error::DimensionMismatch {
                context: "sum of operators".into(),
                expected: self.dim(),
                found: b.dim(),
            });
        }
        if self.dtype() != b.dtype() || !self.device().same_device(b.device()) {
            return Err(Error::config(
                "operator",
                format!("{:?} + {:?}", self.dtype(), b.dtype()),
                "a sum needs both operators on the same dtype and device",
            ));
        }
        Ok(Sum { a: self, b })
    }
}

impl<T: LinearOperator> OperatorExt for T {}

impl<A: LinearOperator> LinearOperator for Scaled<A> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn dtype(&self) -> DType {
        self.op.dtype()
    }
    fn device(&self) -> &Device {
        self.op.device()
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        Ok(self.op.apply(v)?.affine(self.alpha, 0.0)?)
    }
    fn apply_many(&self, vs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.op
            .apply_many(vs)?
            .into_iter()
            .map(|t| Ok(t.affine(self.alpha, 0.0)?))
            .collect()
    }
}

impl<A: LinearOperator> LinearOperator for Shifted<A> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn dtype(&self) -> DType {
        self.op.dtype()
    }
    fn device(&self) -> &Device {
        self.op.device()
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        Ok(self.op.apply(v)?.add(&v.affine(self.shift, 0.0)?)?)
    }
    fn apply_many(&self, vs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.op
            .apply_many(vs)?
            .into_iter()
            .zip(vs)
            .map(|(t, v)| Ok(t.add(&v.affine(self.shift, 0.0)?)?))
            .collect()
    }
}

impl<A: LinearOperator, B: LinearOperator> LinearOperator for Sum<A, B> {
    fn dim(&self) -> usize {
        self.a.dim()
    }
    fn dtype(&self) -> DType {
        self.a.dtype()
    }
    fn device(&self) -> &Device {
        self.a.device()
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        Ok(self.a.apply(v)?.add(&self.b.apply(v)?)?)
    }
    fn apply_many(&self, vs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.a
            .apply_many(vs)?
            .into_iter()
            .zip(self.b.apply_many(vs)?)
            .map(|(x, y)| Ok(x.add(&y)?))
            .collect()
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
