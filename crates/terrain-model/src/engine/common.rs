//! What the sweeps share: activation derivatives, the loss nodes' targets, the convolution's
//! kernel-gradient formulation on candle tensors, reductions, and flat-vector blocks.

use std::f64::consts::FRAC_1_SQRT_2;

use candle_core::{DType, Tensor, Var};

use crate::{Activation, Error, Result, data::Targets, layers::Conv2d};

/// A flat vector cut into blocks of `shapes` (in order).
pub fn split_blocks(v: &Tensor, shapes: &[Vec<usize>]) -> Result<Vec<Tensor>> {
    let mut off = 0;
    shapes
        .iter()
        .map(|s| {
            let len: usize = s.iter().product();
            let t = v.narrow(0, off, len)?.reshape(s.as_slice())?;
            off += len;
            Ok(t)
        })
        .collect()
}

/// Tensors concatenated into one flat vector.
pub fn flatten_blocks(parts: &[Tensor]) -> Result<Tensor> {
    let flat: Vec<Tensor> = parts
        .iter()
        .map(|t| t.flatten_all())
        .collect::<candle_core::Result<_>>()?;
    Ok(Tensor::cat(&flat, 0)?)
}

/// A variable's value, cut from the autodiff graph.
pub(crate) fn detached(v: &Var) -> Tensor {
    v.as_tensor().detach()
}

/// A per-channel vector `[C]` shaped to broadcast over a row `[C, ...]` of rank `rank`.
pub(crate) fn channel_shape(t: &Tensor, rank: usize) -> Result<Tensor> {
    let c = t.dim(0)?;
    let mut s = vec![c];
    s.resize(rank, 1);
    Ok(t.reshape(s)?)
}

/// `φ'(z)` and `φ''(z)` (`None` where `φ''` vanishes almost everywhere: ReLU). ReLU's derivative at
/// 0 is 1, as in candle's backward pass.
pub(crate) fn derivatives(act: Activation, z: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    let one_minus = |t: &Tensor| t.affine(-1.0, 1.0);
    Ok(match act {
        Activation::Relu => (z.ge(&z.zeros_like()?)?.to_dtype(z.dtype())?, None),
        Activation::Tanh => {
            let t = z.tanh()?;
            let d1 = one_minus(&t.sqr()?)?;
            let d2 = t.mul(&d1)?.affine(-2.0, 0.0)?;
            (d1, Some(d2))
        }
        Activation::Sigmoid => {
            let s = candle_nn::ops::sigmoid(z)?;
            let d1 = s.mul(&one_minus(&s)?)?;
            let d2 = d1.mul(&s.affine(-2.0, 1.0)?)?;
            (d1, Some(d2))
        }
        Activation::Softplus => {
            let s = candle_nn::ops::sigmoid(z)?;
            let d2 = s.mul(&one_minus(&s)?)?;
            (s, Some(d2))
        }
        Activation::Silu => {
            let s = candle_nn::ops::sigmoid(z)?;
            let s1 = s.mul(&one_minus(&s)?)?;
            let d1 = s.add(&z.mul(&s1)?)?;
            let d2 = s1.mul(&z.mul(&s.affine(-2.0, 1.0)?)?.affine(1.0, 2.0)?)?;
            (d1, Some(d2))
        }
        Activation::Gelu => {
            let cdf = (z * FRAC_1_SQRT_2)?.erf()?.affine(0.5, 0.5)?;
            let pdf = z
                .sqr()?
                .affine(-0.5, 0.0)?
                .exp()?
                .affine(1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
            let d1 = cdf.add(&z.mul(&pdf)?)?;
            let d2 = pdf.mul(&z.sqr()?.affine(-1.0, 2.0)?)?;
            (d1, Some(d2))
        }
    })
}

/// The output padding `conv_transpose2d` needs to give back an input of height `h_in` (as
/// candle's own conv2d backward computes it).
pub(crate) fn out_padding(c: &Conv2d, k: usize, h_in: usize, h_out: usize) -> usize {
    let size = (h_out - 1) * c.stride + k - 2 * c.padding;
    h_in - size
}

/// `Σ_n Σ_pos a[n, :, pos + offset] ⊗ b[n, :, pos]`, the kernel gradient of a convolution, for
/// `a_t = a` with batch and channel swapped (`[Ca, N, H, W]`) and `b_t` likewise (`[Cb, N, H', W']`):
/// returns `[Ca, Cb, k, k]` (candle's own formulation of the conv2d kernel gradient).
pub(crate) fn kernel_grad(a_t: &Tensor, b_t: &Tensor, c: &Conv2d, k: usize) -> Result<Tensor> {
    let t = a_t.conv2d(&b_t.contiguous()?, c.padding, 1, c.stride, 1)?;
    let (_, _, kh, kw) = t.dims4()?;
    Ok(if kh != k || kw != k {
        t.narrow(2, 0, k)?.narrow(3, 0, k)?
    } else {
        t
    })
}

/// Sum of `t` over every axis not in `keep`.
pub(crate) fn sum_but(t: &Tensor, keep: &[usize]) -> Result<Tensor> {
    let axes: Vec<usize> = (0..t.rank()).filter(|a| !keep.contains(a)).collect();
    Ok(t.sum(axes.as_slice())?)
}

/// Labels `[N]` as one-hot rows `[N, O]` in the dtype and on the device of the logits `z`.
fn one_hot_like(labels: &Tensor, z: &Tensor) -> Result<Tensor> {
    let (_, o) = z.dims2()?;
    Ok(
        candle_nn::encoding::one_hot(labels.to_dtype(DType::U32)?, o, 1f64, 0f64)?
            .to_dtype(z.dtype())?
            .to_device(z.device())?,
    )
}

/// Cross-entropy targets for the logits `z` `[N, O]`: the target rows `t` and, for soft targets,
/// their per-row mass `Σ_o q` (`None` for class labels, whose mass is 1). Real-valued targets
/// are an error.
pub(crate) fn ce_targets(y: &Targets, z: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    match y {
        Targets::Classes(l) => Ok((one_hot_like(l, z)?, None)),
        Targets::Soft(q) => {
            let q = q.to_dtype(z.dtype())?;
            let mass = q.sum_keepdim(1)?;
            Ok((q, Some(mass)))
        }
        Targets::Values(_) => Err(ce_needs_labels()),
    }
}

/// The error of cross-entropy on real-valued targets.
pub(crate) fn ce_needs_labels() -> Error {
    Error::config(
        "loss",
        "ce",
        "cross-entropy needs class labels; this data set has real-valued targets (use mse)",
    )
}

/// Mean-squared-error targets for the logits `z` `[N, O]` (class labels one-hot).
pub(crate) fn mse_targets(y: &Targets, z: &Tensor) -> Result<Tensor> {
    match y {
        Targets::Classes(l) => one_hot_like(l, z),
        Targets::Soft(t) | Targets::Values(t) => Ok(t.to_dtype(z.dtype())?),
    }
}
