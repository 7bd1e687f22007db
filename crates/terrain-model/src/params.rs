//! [`ParamVec`]: a named list of tensors shaped like a model's parameters — weights, gradients,
//! directions in weight space — with the vector-space operations every landscape method needs.

use candle_core::{DType, Device, Tensor};
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};

use crate::{Error, Model, Result, rng};

/// Euclidean norm of a list of tensors taken as one vector: the global L2 norm of a model's
/// parameters or of a gradient. On the CPU in f32/f64 the squares are summed on the host in f64;
/// elsewhere each tensor's sum of squares is taken in its own dtype, the sum over tensors in f64.
pub fn tensors_norm(tensors: &[Tensor]) -> Result<f64> {
    let mut s = 0.0;
    for t in tensors {
        s += match host_sum_of_squares(t) {
            Some(v) => v,
            None => t
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?,
        };
    }
    Ok(s.sqrt())
}

/// The sum of squares of a contiguous f32/f64 CPU tensor, read in candle's storage and summed in
/// f64 (no copy, no candle kernels and their thread pool for one number); `None` otherwise.
fn host_sum_of_squares(t: &Tensor) -> Option<f64> {
    host_dot(t, t)
}

/// `⟨a, b⟩` of two contiguous CPU tensors of one float dtype (f32 or f64) and one shape,
/// read in place in candle's storage and summed in f64: no copy, and no candle kernels (whose
/// barrier pool spins a core after each) for one number. `None` for anything else (another
/// device or dtype, a strided view, other shapes), where candle's ops must do it (or refuse).
pub fn host_dot(a: &Tensor, b: &Tensor) -> Option<f64> {
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        return None;
    }
    let (sa, la) = a.storage_and_layout();
    let ra = la.contiguous_offsets()?;
    let same = a.id() == b.id();
    // `a·a` takes one read lock: a second on the same storage could wait behind a writer.
    let sb = if same {
        None
    } else {
        Some(b.storage_and_layout())
    };
    let rb = match &sb {
        Some((_, lb)) => lb.contiguous_offsets()?,
        None => ra,
    };
    let storage_b = sb.as_ref().map_or(&*sa, |(s, _)| &**s);
    match (&*sa, storage_b) {
        (candle_core::Storage::Cpu(x), candle_core::Storage::Cpu(y)) => match (x, y) {
            (candle_core::CpuStorage::F32(x), candle_core::CpuStorage::F32(y)) => {
                Some(dot_f64(&x[ra.0..ra.1], &y[rb.0..rb.1]))
            }
            (candle_core::CpuStorage::F64(x), candle_core::CpuStorage::F64(y)) => {
                Some(dot_f64(&x[ra.0..ra.1], &y[rb.0..rb.1]))
            }
            _ => None,
        },
        _ => None,
    }
}

/// `Σ xᵢyᵢ` in f64 over eight running sums (one sum is a chain of dependent additions).
fn dot_f64<T: Copy + Into<f64>>(x: &[T], y: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (cx, cy) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f64 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(&a, &b)| a.into() * b.into())
        .sum();
    for (a8, b8) in cx.zip(cy) {
        for ((s, &a), &b) in acc.iter_mut().zip(a8).zip(b8) {
            *s += a.into() * b.into();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Named tensors with the shapes of a model's parameters, in the model's parameter order.
#[derive(Debug, Clone)]
pub struct ParamVec {
    /// Names, as in the model.
    pub names: Vec<String>,
    /// One tensor per name.
    pub tensors: Vec<Tensor>,
}

/// How [`ParamVec::normalize_like`] rescales a direction (Li et al. 2018, "Visualizing the loss
/// landscape of neural nets").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// Per filter: each output unit/filter (first axis of a weight) of the direction gets the norm
    /// of the same filter of the weights. One-dimensional tensors (biases, BatchNorm scale/shift)
    /// are zeroed, as in Li et al.'s default `ignore='biasbn'`.
    Filter,
    /// Per filter as above, but one-dimensional tensors take the weights' own values
    /// (Li et al.'s `ignore=None`).
    FilterKeepBias,
    /// Per tensor: each tensor gets the norm of the matching weight tensor.
    Layer,
}

impl ParamVec {
    /// A copy of a model's current parameter values.
    pub fn from_model(model: &Model) -> Result<Self> {
        Ok(ParamVec {
            names: model.params().iter().map(|p| p.name.clone()).collect(),
            tensors: model
                .params()
                .iter()
                .map(|p| Ok(p.var.as_tensor().copy()?))
                .collect::<Result<_>>()?,
        })
    }

    /// Zeros shaped like the model's parameters.
    pub fn zeros_like_model(model: &Model) -> Result<Self> {
        Ok(ParamVec {
            names: model.params().iter().map(|p| p.name.clone()).collect(),
            tensors: model
                .params()
                .iter()
                .map(|p| Ok(p.var.zeros_like()?))
                .collect::<Result<_>>()?,
        })
    }

    /// A direction with i.i.d. standard Gaussian entries, from `seed`.
    pub fn random_gaussian(model: &Model, seed: u64) -> Result<Self> {
        let mut r = rng::rng(seed);
        Self::random_with(model, |_| StandardNormal.sample(&mut r))
    }

    /// A direction with i.i.d. Rademacher (±1) entries, from `seed`.
    pub fn random_rademacher(model: &Model, seed: u64) -> Result<Self> {
        let mut r = rng::rng(seed);
        Self::random_with(model, |_| if r.random::<bool>() { 1.0 } else { -1.0 })
    }

    fn random_with(model: &Model, mut draw: impl FnMut(usize) -> f64) -> Result<Self> {
        let names = model.params().iter().map(|p| p.name.clone()).collect();
        let tensors = model
            .params()
            .iter()
            .map(|p| {
                let v: Vec<f64> = (0..p.var.elem_count()).map(&mut draw).collect();
                Ok(Tensor::from_vec(v, p.var.dims(), &Device::Cpu)?
                    .to_dtype(model.dtype())?
                    .to_device(model.device())?)
            })
            .collect::<Result<_>>()?;
        Ok(ParamVec { names, tensors })
    }

    /// Writes these values into the model's parameters (shapes must match).
    pub fn assign_to(&self, model: &Model) -> Result<()> {
        self.check_compatible_model(model)?;
        for (p, t) in model.params().iter().zip(&self.tensors) {
            p.var
                .set(&t.to_dtype(model.dtype())?.to_device(model.device())?)?;
        }
        Ok(())
    }

    fn check_compatible_model(&self, model: &Model) -> Result<()> {
        if self.names.len() != model.params().len() {
            return Err(Error::ShapeMismatch {
                context: "parameter vector".into(),
                name: "(tensor count)".into(),
                expected: vec![model.params().len()],
                found: vec![self.names.len()],
            });
        }
        for ((n, t), p) in self.names.iter().zip(&self.tensors).zip(model.params()) {
            if n != &p.name || t.dims() != p.var.dims() {
                return Err(Error::ShapeMismatch {
                    context: "parameter vector".into(),
                    name: format!("{n} (model has {})", p.name),
                    expected: p.var.dims().to_vec(),
                    found: t.dims().to_vec(),
                });
            }
        }
        Ok(())
    }

    fn check_compatible(&self, other: &ParamVec) -> Result<()> {
        for (i, (a, b)) in self.tensors.iter().zip(&other.tensors).enumerate() {
            if a.dims() != b.dims() || self.names[i] != other.names[i] {
                return Err(Error::ShapeMismatch {
                    context: "parameter vectors".into(),
                    name: format!("{} vs {}", self.names[i], other.names[i]),
                    expected: a.dims().to_vec(),
                    found: b.dims().to_vec(),
                });
            }
        }
        if self.tensors.len() != other.tensors.len() {
            return Err(Error::ShapeMismatch {
                context: "parameter vectors".into(),
                name: "(tensor count)".into(),
                expected: vec![self.tensors.len()],
                found: vec![other.tensors.len()],
            });
        }
        Ok(())
    }

    fn zip_map(
        &self,
        other: &ParamVec,
        f: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Self> {
        self.check_compatible(other)?;
        Ok(ParamVec {
            names: self.names.clone(),
            tensors: self
                .tensors
                .iter()
                .zip(&other.tensors)
                .map(|(a, b)| f(a, b))
                .collect::<candle_core::Result<_>>()?,
        })
    }

    /// Elementwise map.
    pub fn map(&self, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Self> {
        Ok(ParamVec {
            names: self.names.clone(),
            tensors: self
                .tensors
                .iter()
                .map(f)
                .collect::<candle_core::Result<_>>()?,
        })
    }

    /// Number of scalars.
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.elem_count()).sum()
    }

    /// Inner product ⟨self, other⟩ (accumulated in f64).
    pub fn dot(&self, other: &ParamVec) -> Result<f64> {
        self.check_compatible(other)?;
        let mut s = 0.0;
        for (a, b) in self.tensors.iter().zip(&other.tensors) {
            s += (a * b)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        Ok(s)
    }

    /// Euclidean norm.
    pub fn norm(&self) -> Result<f64> {
        Ok(self.dot(self)?.sqrt())
    }

    /// `self + alpha * x` (the BLAS axpy, returning a new vector).
    pub fn axpy(&self, alpha: f64, x: &ParamVec) -> Result<Self> {
        self.zip_map(x, |a, b| a + (b * alpha)?)
    }

    /// `self + other`.
    pub fn add(&self, other: &ParamVec) -> Result<Self> {
        self.zip_map(other, |a, b| a + b)
    }

    /// `self - other`.
    pub fn sub(&self, other: &ParamVec) -> Result<Self> {
        self.zip_map(other, |a, b| a - b)
    }

    /// `alpha * self`.
    pub fn scale(&self, alpha: f64) -> Result<Self> {
        self.map(|t| t * alpha)
    }

    /// Rescales this direction against the weights `weights` (Li et al. filter normalisation).
    pub fn normalize_like(&self, weights: &ParamVec, how: Normalization) -> Result<Self> {
        let ratio = |w: &Tensor, d: &Tensor| -> candle_core::Result<Tensor> {
            w.sqr()?.sum_all()?.sqrt()? / (d.sqr()?.sum_all()?.sqrt()? + 1e-10)?
        };
        self.zip_map(weights, |d, w| match how {
            Normalization::Layer => d.broadcast_mul(&ratio(w, d)?),
            // Li et al.'s `ignore='biasbn'` zeroes 1-D directions; otherwise it copies the weights.
            Normalization::Filter if d.rank() <= 1 => d.zeros_like(),
            Normalization::FilterKeepBias if d.rank() <= 1 => Ok(w.clone()),
            Normalization::Filter | Normalization::FilterKeepBias => {
                // Per filter: norms over all axes but the first.
                let o = d.dim(0)?;
                let d2 = d.reshape((o, ()))?;
                let dn = d2.sqr()?.sum_keepdim(1)?.sqrt()?;
                let wn = w.reshape((o, ()))?.sqr()?.sum_keepdim(1)?.sqrt()?;
                d2.broadcast_mul(&(wn / (dn + 1e-10)?)?)?.reshape(d.dims())
            }
        })
    }

    /// All entries in one f64 vector, in parameter order.
    pub fn flatten(&self) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.numel());
        for t in &self.tensors {
            out.extend(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        }
        Ok(out)
    }

    /// The inverse of [`flatten`](Self::flatten): a vector shaped like `like` holding `values`.
    pub fn unflatten(values: &[f64], like: &ParamVec) -> Result<Self> {
        if values.len() != like.numel() {
            return Err(Error::ShapeMismatch {
                context: "unflatten".into(),
                name: "(flat vector)".into(),
                expected: vec![like.numel()],
                found: vec![values.len()],
            });
        }
        let mut off = 0;
        let mut tensors = Vec::with_capacity(like.tensors.len());
        for t in &like.tensors {
            let n = t.elem_count();
            tensors.push(
                Tensor::from_slice(&values[off..off + n], t.dims(), &Device::Cpu)?
                    .to_dtype(t.dtype())?
                    .to_device(t.device())?,
            );
            off += n;
        }
        Ok(ParamVec {
            names: like.names.clone(),
            tensors,
        })
    }
}
