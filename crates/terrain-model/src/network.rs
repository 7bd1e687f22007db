//! One description of a network's layers, and its forward interpreter.
//!
//! [`ArchSpec::network`](crate::ArchSpec::network) turns an architecture into a [`Network`] of
//! [`Layer`]s whose tensors are [`TensorSlot`]s: each tensor's name, shape, role and
//! initialisation is declared there, once. A [`Model`](crate::Model) binds the same description to
//! its `Var`s ([`Network::try_map`]); the forward pass ([`Network::forward`]), the curvature sweeps
//! of terrain-curvature and per-layer probes (hidden activations for CKA, through
//! [`Network::forward_inspect`]) are interpreters of this one structure, so a new layer type is
//! added in one enum and every interpreter is told by the compiler.
//!
//! ```
//! use terrain_model::{ArchSpec, network::Layer};
//!
//! let spec: ArchSpec = "cnn:1x8x8-4-10:relu".parse()?;
//! let net = spec.network();
//! let kinds: Vec<&str> = net.layers.iter().map(Layer::kind).collect();
//! assert_eq!(kinds, ["conv2d", "activation", "max_pool2x2", "flatten", "linear"]);
//! let names: Vec<&str> = net.tensors().iter().map(|s| s.name.as_str()).collect();
//! assert_eq!(names, ["conv0.weight", "conv0.bias", "fc.weight", "fc.bias"]);
//! # Ok::<(), terrain_model::Error>(())
//! ```

use candle_core::{Tensor, Var};

use crate::{
    Activation, Result,
    layers::{self, BatchNorm, Conv2d, Linear, NormMode},
    spec::TensorSlot,
};

/// One step of a network. `P` stands for a tensor: a [`TensorSlot`] in an architecture's
/// description, a [`Var`] in a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer<P = Var> {
    /// `y = x Wᵀ + b` on `[N, in]`.
    Linear(Linear<P>),
    /// A 2-D convolution on `[N, C, H, W]`.
    Conv2d(Conv2d<P>),
    /// Batch normalisation over axis 1.
    BatchNorm(BatchNorm<P>),
    /// An elementwise activation.
    Activation(Activation),
    /// 2×2 max pooling with stride 2.
    MaxPool2x2,
    /// `[N, C, H, W] -> [N, C·H·W]`.
    Flatten,
    /// Global average pooling `[N, C, H, W] -> [N, C]`.
    GlobalAvgPool,
    /// `y = main(x) + shortcut(x)` (a ResNet block before its final activation).
    Residual(Residual<P>),
}

/// Two branches applied to the same input and summed.
#[derive(Debug, Clone, PartialEq)]
pub struct Residual<P = Var> {
    /// The main branch.
    pub main: Vec<Layer<P>>,
    /// The skip branch; empty for the identity.
    pub shortcut: Vec<Layer<P>>,
}

/// A network: its layers in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Network<P = Var> {
    /// The layers, applied in order.
    pub layers: Vec<Layer<P>>,
}

impl<P> Layer<P> {
    /// A short lowercase name of the layer type (`linear`, `conv2d`, `batch_norm`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Linear(_) => "linear",
            Layer::Conv2d(_) => "conv2d",
            Layer::BatchNorm(_) => "batch_norm",
            Layer::Activation(_) => "activation",
            Layer::MaxPool2x2 => "max_pool2x2",
            Layer::Flatten => "flatten",
            Layer::GlobalAvgPool => "global_avg_pool",
            Layer::Residual(_) => "residual",
        }
    }

    /// This layer's own tensors (not those of nested layers), in declaration order.
    pub fn own_tensors(&self) -> Vec<&P> {
        match self {
            Layer::Linear(l) => std::iter::once(&l.weight).chain(&l.bias).collect(),
            Layer::Conv2d(c) => std::iter::once(&c.weight).chain(&c.bias).collect(),
            Layer::BatchNorm(b) => vec![&b.weight, &b.bias, &b.running_mean, &b.running_var],
            _ => Vec::new(),
        }
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a P>) {
        match self {
            Layer::Residual(r) => {
                for l in r.main.iter().chain(&r.shortcut) {
                    l.collect(out);
                }
            }
            other => out.extend(other.own_tensors()),
        }
    }

    /// The same layer with every tensor mapped by `f` (in declaration order).
    pub fn try_map<Q, E>(
        &self,
        f: &mut impl FnMut(&P) -> std::result::Result<Q, E>,
    ) -> std::result::Result<Layer<Q>, E> {
        Ok(match self {
            Layer::Linear(l) => Layer::Linear(Linear {
                weight: f(&l.weight)?,
                bias: l.bias.as_ref().map(&mut *f).transpose()?,
            }),
            Layer::Conv2d(c) => Layer::Conv2d(Conv2d {
                weight: f(&c.weight)?,
                bias: c.bias.as_ref().map(&mut *f).transpose()?,
                padding: c.padding,
                stride: c.stride,
            }),
            Layer::BatchNorm(b) => Layer::BatchNorm(BatchNorm {
                weight: f(&b.weight)?,
                bias: f(&b.bias)?,
                running_mean: f(&b.running_mean)?,
                running_var: f(&b.running_var)?,
                eps: b.eps,
                momentum: b.momentum,
            }),
            Layer::Activation(a) => Layer::Activation(*a),
            Layer::MaxPool2x2 => Layer::MaxPool2x2,
            Layer::Flatten => Layer::Flatten,
            Layer::GlobalAvgPool => Layer::GlobalAvgPool,
            Layer::Residual(r) => Layer::Residual(Residual {
                main: map_all(&r.main, f)?,
                shortcut: map_all(&r.shortcut, f)?,
            }),
        })
    }
}

fn map_all<P, Q, E>(
    layers: &[Layer<P>],
    f: &mut impl FnMut(&P) -> std::result::Result<Q, E>,
) -> std::result::Result<Vec<Layer<Q>>, E> {
    layers.iter().map(|l| l.try_map(f)).collect()
}

impl<P> Network<P> {
    /// Every tensor of the network in declaration order (the order of parameter vectors and
    /// checkpoints).
    pub fn tensors(&self) -> Vec<&P> {
        let mut out = Vec::new();
        for l in &self.layers {
            l.collect(&mut out);
        }
        out
    }

    /// The same network with every tensor mapped by `f`, in declaration order.
    pub fn try_map<Q, E>(
        &self,
        mut f: impl FnMut(&P) -> std::result::Result<Q, E>,
    ) -> std::result::Result<Network<Q>, E> {
        Ok(Network {
            layers: map_all(&self.layers, &mut f)?,
        })
    }

    /// Every BatchNorm layer, in order (nested ones included).
    pub fn batch_norms(&self) -> Vec<&BatchNorm<P>> {
        fn walk<'a, P>(layers: &'a [Layer<P>], out: &mut Vec<&'a BatchNorm<P>>) {
            for l in layers {
                match l {
                    Layer::BatchNorm(b) => out.push(b),
                    Layer::Residual(r) => {
                        walk(&r.main, out);
                        walk(&r.shortcut, out);
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.layers, &mut out);
        out
    }
}

impl Network<TensorSlot> {
    /// The tensors as owned slots, in declaration order.
    pub fn slots(&self) -> Vec<TensorSlot> {
        self.tensors().into_iter().cloned().collect()
    }
}

impl Layer {
    /// Applies the layer to `x` (BatchNorm in `mode`).
    pub fn forward(&self, x: &Tensor, mode: NormMode) -> Result<Tensor> {
        match self {
            Layer::Linear(l) => l.forward(x),
            Layer::Conv2d(c) => c.forward(x),
            Layer::BatchNorm(b) => b.forward(x, mode),
            Layer::Activation(a) => layers::activate(x, *a),
            Layer::MaxPool2x2 => layers::max_pool2x2(x),
            Layer::Flatten => Ok(x.flatten_from(1)?),
            Layer::GlobalAvgPool => layers::global_avg_pool(x),
            Layer::Residual(r) => {
                let main = forward_all(&r.main, x, mode)?;
                let skip = forward_all(&r.shortcut, x, mode)?;
                Ok(main.add(&skip)?)
            }
        }
    }
}

fn forward_all(layers: &[Layer], x: &Tensor, mode: NormMode) -> Result<Tensor> {
    let mut h = x.clone();
    for l in layers {
        h = l.forward(&h, mode)?;
    }
    Ok(h)
}

impl Network {
    /// The forward pass on inputs already shaped as the first layer expects
    /// ([`Model::prepare_input`](crate::Model::prepare_input) does that).
    pub fn forward(&self, x: &Tensor, mode: NormMode) -> Result<Tensor> {
        forward_all(&self.layers, x, mode)
    }

    /// The forward pass, calling `inspect(index, layer, output)` after each top-level layer (the
    /// hidden representations of per-layer probes such as CKA).
    pub fn forward_inspect(
        &self,
        x: &Tensor,
        mode: NormMode,
        inspect: &mut dyn FnMut(usize, &Layer, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h, mode)?;
            inspect(i, l, &h)?;
        }
        Ok(h)
    }
}
