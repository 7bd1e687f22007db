//! The differentiation engine: every derivative terrain computes, by hand-written sweeps over the
//! network's one layer description ([`Network`](crate::network::Network)), with no autodiff graph.
//!
//! The caller says what to differentiate (a [`Request`]: a model, which of its parameters, the
//! batches and the loss) and what to compute (a [`Product`]: the loss alone, the gradient, exact
//! Hessian-vector products, Gauss–Newton products or the exact Hessian diagonal); [`run`] sweeps
//! every batch forward (values and tangents) and backward (adjoints and second-order adjoints) and
//! sums. Curvature-propagation samples and Becker–LeCun diagonals come from the same layer
//! description ([`propagation`]). Training takes its gradient from [`weighted_gradient`] and
//! evaluation its forward pass from [`logits`], directly: there is no hook to install and no
//! environment switch.
//!
//! The sweeps run on a [`Backend`]: on the CPU in f32/f64, plain host buffers with direct `gemm`
//! products (module `host`); elsewhere (CUDA, other dtypes) candle tensors (module `tensor`), which
//! is also the host sweep's reference in the tests. The per-layer formulas are documented in the
//! `tensor` module; `host` and `tensor` must agree to ≤ 1e-12 in f64 (tested), and both agree with
//! PyTorch's numbers (committed fixtures).
//!
//! ```
//! use candle_core::{DType, Device};
//! use terrain_model::{Model, data::{self, Batch}, engine, loss::LossKind};
//!
//! let iris = data::builtin::load("iris")?;
//! let model = Model::new("mlp:4-8-3:tanh".parse()?, DType::F64, &Device::Cpu, 0)?;
//! let batch = Batch { x: model.prepare_input(&iris.x)?, y: iris.y.clone() };
//! let (loss, grads) = engine::loss_and_gradient(&model, &batch, LossKind::Ce)?;
//! assert!(loss > 0.0);
//! assert_eq!(grads.len(), model.params().len());
//! # Ok::<(), terrain_model::Error>(())
//! ```

use candle_core::Tensor;

use crate::{Error, Model, Result, data::Batch, loss::LossKind};

mod common;
mod host;
mod im2col;
pub mod propagation;
mod tensor;

pub use common::{flatten_blocks, split_blocks};

/// Which implementation runs a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// On the CPU in f32/f64, host buffers with direct matrix products; elsewhere candle
    /// tensors.
    #[default]
    Auto,
    /// Always candle tensors (every device and dtype; the host backend's reference in tests).
    Tensor,
}

/// Which curvature matrix products and diagonals are of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Curvature {
    /// The exact Hessian ∇²L.
    #[default]
    Hessian,
    /// The generalised Gauss–Newton matrix Jᵀ ∇²ℓ J (positive semi-definite for CE and MSE).
    GaussNewton,
}

/// What a sweep computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// The loss only: a forward pass, no derivatives.
    Loss,
    /// The loss and its gradient only.
    Gradient,
    /// The gradient and exact Hessian-vector products.
    Hessian,
    /// Gauss–Newton products (and no gradient).
    GaussNewton,
    /// The exact Hessian (or Gauss–Newton) diagonal (BackPACK's `DiagHessian`/`DiagGGN`),
    /// beside the gradient.
    Diagonal,
}

/// What to differentiate: a model's mean loss over batches, with respect to some of its
/// parameters.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The model (BatchNorm in evaluation mode: its running statistics).
    pub model: &'a Model,
    /// Indices into [`Model::params`] of the parameters differentiated, in order.
    pub selected: &'a [usize],
    /// The shapes of the selected parameters.
    pub shapes: &'a [Vec<usize>],
    /// The batches, inputs shaped as the model expects ([`Model::prepare_input`]) on its device.
    pub batches: &'a [Batch],
    /// The rows of all batches together (the loss is their mean).
    pub rows: usize,
    /// The loss.
    pub loss: LossKind,
    /// The curvature of products and diagonals.
    pub curvature: Curvature,
    /// Which implementation runs the sweeps.
    pub backend: Backend,
}

/// What a sweep returns, per selected parameter (the request's order).
#[derive(Debug)]
pub struct Output {
    /// The mean loss over the request's rows.
    pub loss: f64,
    /// The gradient as one flat vector (the selected parameters in order); `None` for
    /// [`Product::Loss`] and [`Product::GaussNewton`], and from the host backend beside any
    /// products and beside the diagonal.
    pub grad: Option<Tensor>,
    /// One product per direction, each a flat vector (the selected parameters in order).
    pub products: Vec<Tensor>,
    /// The exact diagonal per selected parameter ([`Product::Diagonal`]; else empty).
    pub diagonal: Vec<Tensor>,
}

impl Output {
    /// The flat gradient of a sweep that computed one ([`Product::Gradient`]).
    pub fn gradient(&self) -> Result<Tensor> {
        self.grad.clone().ok_or_else(|| Error::Unsupported {
            method: "the differentiation engine".into(),
            what: "a gradient from a sweep that computed none".into(),
        })
    }
}

/// One sweep over all the request's batches: the mean loss, and per `product` the gradient
/// and/or the products with each of `dirs` (flat vectors over the selected parameters).
pub fn run(request: &Request<'_>, product: Product, dirs: &[Tensor]) -> Result<Output> {
    if request.backend == Backend::Auto
        && let Some(out) = host::try_run(request, product, dirs)?
    {
        return Ok(out);
    }
    tensor::run(request, product, dirs)
}

/// The mean loss of `model` on one batch and its gradient with respect to every parameter (in
/// [`Model::params`] order), by the backward sweep: what a training step needs, without an
/// autodiff graph. The inputs must be shaped as the model expects ([`Model::prepare_input`]) and
/// lie on its device; BatchNorm runs on its running statistics (evaluation mode).
pub fn loss_and_gradient(
    model: &Model,
    batch: &Batch,
    loss: LossKind,
) -> Result<(f64, Vec<Tensor>)> {
    let selected: Vec<usize> = (0..model.params().len()).collect();
    let shapes: Vec<Vec<usize>> = model
        .params()
        .iter()
        .map(|p| p.var.dims().to_vec())
        .collect();
    let out = run(
        &Request {
            model,
            selected: &selected,
            shapes: &shapes,
            batches: std::slice::from_ref(batch),
            rows: batch.len(),
            loss,
            curvature: Curvature::Hessian,
            backend: Backend::Auto,
        },
        Product::Gradient,
        &[],
    )?;
    let grad = out.gradient()?;
    Ok((out.loss, split_blocks(&grad, &shapes)?))
}

/// The batch statistics of one BatchNorm layer in training mode, over the `count` values of
/// each channel (rows × positions), in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// The mean per channel.
    pub mean: Vec<f64>,
    /// The biased variance per channel (what normalises; the running update takes the unbiased
    /// `var · count / (count − 1)`).
    pub var: Vec<f64>,
    /// Values per channel.
    pub count: usize,
}

/// A training step's gradient and, in training mode, the batch statistics of every BatchNorm
/// layer (in [`Network::batch_norms`](crate::network::Network::batch_norms) order).
#[derive(Debug)]
pub struct WeightedGradient {
    /// One tensor per parameter, in [`Model::params`] order.
    pub grads: Vec<Tensor>,
    /// The batch statistics (empty in evaluation mode or without BatchNorm).
    pub batch_norm: Vec<BatchStats>,
}

/// The gradient of `Σ_r w_r ℓ_r` over one batch with respect to every parameter of `model` (in
/// [`Model::params`] order), `w = row_weights(logits)` (`[N]`): the training step's gradient of
/// any reduction of the per-example losses, by the host backend's sweep. BatchNorm normalises by
/// the batch's statistics when `batch_stats` (training mode; they are returned, and the running
/// statistics are left alone), else by its running ones. `batch.x` is as the data holds it
/// ([`Model::prepare_input`] not yet applied). `None`, decided before `row_weights` is called,
/// off the CPU, for dtypes other than f32/f64 and for inputs of another rank: the caller then
/// differentiates by candle's autodiff.
pub fn weighted_gradient(
    model: &Model,
    batch: &Batch,
    loss: LossKind,
    batch_stats: bool,
    row_weights: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Option<WeightedGradient>> {
    host::weighted_gradient(model, batch, loss, batch_stats, row_weights)
}

/// The network's outputs `[N, O]` for inputs `x` (as the data holds them), BatchNorm in
/// evaluation mode, by the host backend's forward pass keeping no tape; `None` where it does
/// not apply (device, dtype, input rank) and the caller runs candle's forward pass.
pub fn logits(model: &Model, x: &Tensor) -> Result<Option<Tensor>> {
    host::logits(model, x)
}

/// Frees the buffers the host backend keeps between sweeps (up to 1 GiB per float type, the
/// working set of the latest sweeps, so that repeated products do not fault fresh memory in);
/// the next sweep allocates afresh. For a long-running process done with curvature.
pub fn release_host_buffers() {
    host::release_buffers();
}
