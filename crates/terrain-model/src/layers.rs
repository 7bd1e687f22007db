//! Twice-differentiable layers, written with candle primitives whose backward passes are
//! themselves differentiable.
//!
//! Deliberately avoided (candle 0.11 bugs or missing backward, see ARCHITECTURE.md): `max_pool2d`
//! (gradient scaled by 1/k²), `upsample_nearest2d` (backward overwrites), `nn::LayerNorm`,
//! `nn::RmsNorm` and `ops::softmax_last_dim` (no backward at all). Max pooling here is a reshape
//! followed by `max` over the window axes; BatchNorm is written out elementwise.

use candle_core::{D, Tensor, Var};

#[cfg(doc)]
use crate::spec::TensorSlot;
use crate::{Activation, Result};

/// Applies an activation elementwise.
pub fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::Relu => x.relu()?,
        Activation::Tanh => x.tanh()?,
        Activation::Gelu => {
            // 0.5·x·(1 + erf(x/√2)); candle's erf backward is exact, unlike its fused gelu kernels
            // whose backward uses 6-digit constants.
            let e = (x * std::f64::consts::FRAC_1_SQRT_2)?.erf()?;
            ((x * 0.5)? * (e + 1.0)?)?
        }
        Activation::Silu => x.silu()?,
        Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
        Activation::Softplus => {
            // max(x,0) + log(1 + exp(-|x|)): no overflow for large |x|.
            (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?
        }
    })
}

/// A fully connected layer `y = x Wᵀ + b` with PyTorch's `[out, in]` weight layout.
///
/// `P` is what stands for a tensor: a [`TensorSlot`] in an architecture's description (name,
/// shape, initialisation), a [`Var`] in a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear<P = Var> {
    /// Weight `[out, in]`.
    pub weight: P,
    /// Optional bias `[out]`.
    pub bias: Option<P>,
}

impl Linear {
    /// Applies the layer to `x` of shape `[N, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.as_tensor().t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b.as_tensor())?,
            None => y,
        })
    }
}

/// A 2-D convolution with PyTorch's `[out, in, k, k]` weight layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d<P = Var> {
    /// Kernel `[out, in, k, k]`.
    pub weight: P,
    /// Optional bias `[out]`.
    pub bias: Option<P>,
    /// Zero padding on each side.
    pub padding: usize,
    /// Stride.
    pub stride: usize,
}

impl Conv2d {
    /// Applies the convolution to `x` of shape `[N, C, H, W]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(self.weight.as_tensor(), self.padding, self.stride, 1, 1)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(&b.as_tensor().reshape((1, (), 1, 1))?)?,
            None => y,
        })
    }
}

/// Which statistics a BatchNorm layer normalises with, and whether it updates its running ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormMode {
    /// Evaluation mode: the running statistics.
    Eval,
    /// Training mode: batch statistics, running statistics untouched (SAM's second pass, finite
    /// differences).
    Batch,
    /// Training mode: batch statistics, and the running statistics updated with the layer's own
    /// momentum.
    Update,
    /// Training mode: batch statistics, and the running statistics updated with this momentum
    /// instead of the layer's (a cumulative average when recomputing statistics).
    UpdateWith(f64),
}

impl NormMode {
    /// The mode of `forward_with(x, train, update_stats)`.
    pub fn from_flags(train: bool, update_stats: bool) -> Self {
        match (train, update_stats) {
            (false, _) => NormMode::Eval,
            (true, false) => NormMode::Batch,
            (true, true) => NormMode::Update,
        }
    }

    /// Whether batch statistics are used.
    pub fn is_train(self) -> bool {
        !matches!(self, NormMode::Eval)
    }
}

/// Batch normalisation over the channel axis (axis 1) of `[N, C]` or `[N, C, H, W]` inputs,
/// with PyTorch's semantics: biased batch variance to normalise, unbiased variance and
/// `momentum` (PyTorch's default 0.1, set by the architecture spec) for the running statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm<P = Var> {
    /// Scale γ `[C]`.
    pub weight: P,
    /// Shift β `[C]`.
    pub bias: P,
    /// Running mean `[C]` (buffer).
    pub running_mean: P,
    /// Running variance `[C]` (buffer).
    pub running_var: P,
    /// Added to the variance.
    pub eps: f64,
    /// Running-statistics momentum: `running ← (1 − m)·running + m·batch`.
    pub momentum: f64,
}

impl BatchNorm {
    /// Normalises `x` in `mode` (see [`NormMode`]).
    pub fn forward(&self, x: &Tensor, mode: NormMode) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        let bshape: Vec<usize> = (0..x.rank()).map(|i| if i == 1 { c } else { 1 }).collect();
        let axes: Vec<usize> = (0..x.rank()).filter(|&i| i != 1).collect();
        let (mean, var) = if mode.is_train() {
            let n = x.elem_count() / c;
            let mean = x.mean_keepdim(axes.as_slice())?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(axes.as_slice())?;
            let momentum = match mode {
                NormMode::Update => Some(self.momentum),
                NormMode::UpdateWith(m) => Some(m),
                _ => None,
            };
            if let Some(m) = momentum {
                self.update_running(
                    &mean.detach().flatten_all()?,
                    &var.detach().flatten_all()?,
                    n,
                    m,
                )?;
            }
            (mean, var)
        } else {
            (
                self.running_mean.as_tensor().reshape(bshape.as_slice())?,
                self.running_var.as_tensor().reshape(bshape.as_slice())?,
            )
        };
        let xhat = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let w = self.weight.as_tensor().reshape(bshape.as_slice())?;
        let b = self.bias.as_tensor().reshape(bshape.as_slice())?;
        Ok(xhat.broadcast_mul(&w)?.broadcast_add(&b)?)
    }
}

impl BatchNorm {
    /// PyTorch's running-statistics update from one batch's statistics: `running ← (1 − m)·running
    /// + m·batch`, with the unbiased variance `var · n/(n − 1)` for the biased batch variance `var`
    /// over `n` values per channel (`mean` and `var` `[C]`).
    pub fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize, m: f64) -> Result<()> {
        let unbiased = (var * (n as f64 / (n.max(2) - 1) as f64))?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }
}

/// 2×2 max pooling with stride 2 on `[N, C, H, W]` (H, W even), PyTorch's `max_pool2d(x, 2)`:
/// each window's value is its maximum, and its derivative flows to one element, the window's
/// first maximum in row-major order ([`max_pool2x2_mask`]), also where several elements tie
/// (a flat region of an image: a convolution over a blank patch outputs its bias four times).
/// Written as the input times that mask (held constant), summed over each window, so the first
/// and second derivatives are PyTorch's; candle's `max` backward would give every tied
/// maximum the whole derivative, and its `max_pool2d` backward scales it by 1/k².
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let mask = max_pool2x2_mask(x)?;
    Ok(x.mul(&mask)?
        .reshape((n, c, h / 2, 2, w / 2, 2))?
        .sum(5)?
        .sum(3)?)
}

/// The one-hot mask of each 2×2 window's winner in [`max_pool2x2`], shaped like `x`
/// (`[..., H, W]`, H and W even): 1 at the first maximum of the window in row-major order
/// (top left, top right, bottom left, bottom right), 0 elsewhere, as PyTorch's max pooling
/// records its indices. A constant: it carries no derivative.
pub fn max_pool2x2_mask(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let r = dims.len();
    if r < 2 || !dims[r - 2].is_multiple_of(2) || !dims[r - 1].is_multiple_of(2) {
        return Err(candle_core::Error::Msg(format!(
            "2x2 max pooling needs an even height and width, got shape {dims:?}"
        ))
        .into());
    }
    let (h2, w2) = (dims[r - 2] / 2, dims[r - 1] / 2);
    let mut six = dims[..r - 2].to_vec();
    six.extend([h2, 2, w2, 2]);
    let x6 = x.detach().reshape(six.as_slice())?;
    let corner =
        |i: usize, j: usize| -> Result<Tensor> { Ok(x6.narrow(r - 1, i, 1)?.narrow(r + 1, j, 1)?) };
    let (a, b, d, e) = (corner(0, 0)?, corner(0, 1)?, corner(1, 0)?, corner(1, 1)?);
    let top = a.maximum(&b)?.maximum(&d)?.maximum(&e)?;
    let is_max = |t: &Tensor| -> Result<Tensor> { Ok(t.eq(&top)?.to_dtype(x.dtype())?) };
    // Each corner wins when it is a maximum and no earlier corner won.
    let ma = is_max(&a)?;
    let mb = is_max(&b)?.mul(&ma.affine(-1.0, 1.0)?)?;
    let taken = ma.add(&mb)?;
    let md = is_max(&d)?.mul(&taken.affine(-1.0, 1.0)?)?;
    let me = taken.add(&md)?.affine(-1.0, 1.0)?;
    let top_row = Tensor::cat(&[&ma, &mb], r + 1)?;
    let bottom_row = Tensor::cat(&[&md, &me], r + 1)?;
    Ok(Tensor::cat(&[&top_row, &bottom_row], r - 1)?.reshape(dims.as_slice())?)
}

/// Global average pooling `[N, C, H, W] -> [N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean(D::Minus1)?.mean(D::Minus1)?)
}
