//! Curvature propagation (Martens, Sutskever & Swersky, 2012) and Becker–LeCun diagonals on the
//! layer description: the forward pass that keeps what the backward sweep needs, and the sweep
//! itself: the gradient `g` and, beside it, the curvature-propagation vectors (or the
//! Becker–LeCun diagonals), layer by layer. The factorisations and the estimators built on these
//! samples are documented in terrain-curvature's `propagation` module.
//!
//! Layouts. Per-row tensors are `[N, feat...]`. Curvature-propagation vectors carry `R = 2K`
//! replicas after the row axis, `[N, R, feat...]`: replicas `0..K` are the real parts (S-variant)
//! or `T` (T/U variant) of `K` independent samples, replicas `K..2K` the imaginary parts or `U`.
//! Until the first injection below the loss (whose factor is real and symmetric), the imaginary
//! parts are zero and `U = T`, so the sweep carries only `R = K` replicas ("single") and doubles
//! them where an injection needs both halves: a ReLU network's whole sweep stays single.
//! Keeping the row axis first makes every linear map one matmul or convolution over `N·R` rows,
//! and every parameter accumulation one matmul contracting over `N`. Parameter accumulators are
//! `[R, param shape...]` (Becker–LeCun: the parameter's shape).

use std::collections::HashMap;
use std::f64::consts::FRAC_1_SQRT_2;

use candle_core::{D, DType, Device, Tensor, TensorId, Var};

use super::common::{
    ce_targets, channel_shape, derivatives, detached, kernel_grad, mse_targets, out_padding,
    sum_but,
};
use super::{Curvature, Request};
use crate::{
    Activation, Error, Result,
    data::Targets,
    layers::{self, BatchNorm, Conv2d, Linear},
    loss::LossKind,
    network::{Layer, Network},
};

/// A source of noise tensors `[N, K, feat...]` for the injection points of a sweep: `N` rows,
/// `K` independent samples (the sweep's width) and the per-row feature shape of the node. A
/// sweep draws in a fixed order (batches in order, the loss node first, then the layers
/// backwards), so a seeded source fixes every number.
pub trait Noise {
    /// The noise of one injection point with `rows` rows, `k` samples and per-row shape `feat`.
    fn draw(
        &mut self,
        rows: usize,
        k: usize,
        feat: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor>;
}

/// What a sweep propagates beside the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Complex S-variant with `K` samples: replicas are `[Re; Im]`.
    S(usize),
    /// Real T/U variant with `K` samples: replicas are `[T; U]`.
    Tu(usize),
    /// Becker–LeCun: the diagonal of the Hessian with respect to each node, off-diagonals dropped.
    Bl,
}

impl Mode {
    /// Samples per sweep (0 for Becker–LeCun).
    pub fn k(self) -> usize {
        match self {
            Mode::S(k) | Mode::Tu(k) => k,
            Mode::Bl => 0,
        }
    }

    /// Whether this is curvature propagation (not Becker–LeCun).
    pub fn is_cp(self) -> bool {
        !matches!(self, Mode::Bl)
    }
}

/// What flows backwards through a node's output: the gradient `g` `[N, feat...]` and the
/// propagated curvature quantity `c` (`[N, R, feat...]` for CP, `[N, feat...]` for Becker–LeCun).
#[derive(Clone)]
struct Flow {
    g: Tensor,
    c: Tensor,
}

impl Flow {
    /// Fan-out: flows into one node from several consumers add up.
    fn add(self, other: Flow, mode: Mode) -> Result<Flow> {
        let (a, b) = match (self.c.dim(1)?, other.c.dim(1)?) {
            (x, y) if mode.is_cp() && x < y => (dual(&self.c, mode, 1)?, other.c),
            (x, y) if mode.is_cp() && x > y => (self.c, dual(&other.c, mode, 1)?),
            _ => (self.c, other.c),
        };
        Ok(Flow {
            g: self.g.add(&other.g)?,
            c: a.add(&b)?,
        })
    }
}

/// A single-replica CP tensor (`K` replicas along `axis`) as both halves: S `[t; 0]` (zero
/// imaginary part), T/U `[t; t]` (`U = T`). Dual tensors are returned as they are.
pub fn dual(t: &Tensor, mode: Mode, axis: usize) -> Result<Tensor> {
    if t.dim(axis)? == 2 * mode.k() {
        return Ok(t.clone());
    }
    Ok(match mode {
        Mode::S(_) => Tensor::cat(&[t, &t.zeros_like()?], axis)?,
        _ => Tensor::cat(&[t, t], axis)?,
    })
}

/// One recorded layer application (values needed by the backward sweep).
enum Rec<'m> {
    /// `y = x Wᵀ + b`.
    Linear {
        layer: &'m Linear,
        w: Tensor,
        x: Tensor,
        live_in: bool,
    },
    /// `y = conv(x, W) + b`.
    Conv {
        layer: &'m Conv2d,
        w: Tensor,
        x: Tensor,
        live_in: bool,
    },
    /// Eval-mode BatchNorm `y = γ·x̂ + β`, `x̂ = (x − μ)·r`, `r = 1/√(σ² + ε)` (running stats).
    Norm {
        layer: &'m BatchNorm,
        xhat: Tensor,
        /// `r` shaped to broadcast over a row's features (`[C]` or `[C, 1, 1]`).
        r: Tensor,
        /// `γ·r`, same shape.
        scale: Tensor,
        live_in: bool,
    },
    /// `a = φ(z)`.
    Act { act: Activation, z: Tensor },
    /// 2×2 max pool with stride 2: the one-hot mask of each window's winner.
    MaxPool { mask: Tensor },
    /// `[N, C, H, W] -> [N, C·H·W]`.
    Flatten { dims: Vec<usize> },
    /// Global average pool `[N, C, H, W] -> [N, C]`.
    AvgPool { dims: Vec<usize> },
}

/// A step of the forward tape: one layer, or a residual block (two branches meeting in a sum).
enum Step<'m> {
    One(Rec<'m>),
    Block {
        main: Vec<Step<'m>>,
        /// Empty for an identity skip.
        skip: Vec<Step<'m>>,
        live_in: bool,
    },
}

/// The forward pass in evaluation mode, recording each layer. A node is *live* when it depends on
/// a selected parameter; backward stops where inputs stop being live (the data, or unselected
/// early layers), and bilinear nodes with a dead input inject nothing: their local curvature does
/// not reach the selected parameters' Hessian.
struct Forward<'a> {
    slots: &'a HashMap<TensorId, usize>,
}

impl<'a> Forward<'a> {
    fn selected(&self, v: &Var) -> bool {
        self.slots.contains_key(&v.as_tensor().id())
    }

    fn selected_opt(&self, v: &Option<Var>) -> bool {
        v.as_ref().is_some_and(|v| self.selected(v))
    }

    fn linear<'m>(&self, l: &'m Linear, x: Tensor, live: &mut bool) -> Result<(Tensor, Rec<'m>)> {
        let w = detached(&l.weight);
        let mut y = x.matmul(&w.t()?)?;
        if let Some(b) = &l.bias {
            y = y.broadcast_add(&detached(b))?;
        }
        let live_in = *live;
        *live |= self.selected(&l.weight) || self.selected_opt(&l.bias);
        Ok((
            y,
            Rec::Linear {
                layer: l,
                w,
                x,
                live_in,
            },
        ))
    }

    fn conv<'m>(&self, c: &'m Conv2d, x: Tensor, live: &mut bool) -> Result<(Tensor, Rec<'m>)> {
        let w = detached(&c.weight);
        let mut y = x.conv2d(&w, c.padding, c.stride, 1, 1)?;
        if let Some(b) = &c.bias {
            y = y.broadcast_add(&detached(b).reshape((1, (), 1, 1))?)?;
        }
        let live_in = *live;
        *live |= self.selected(&c.weight) || self.selected_opt(&c.bias);
        Ok((
            y,
            Rec::Conv {
                layer: c,
                w,
                x,
                live_in,
            },
        ))
    }

    fn norm<'m>(&self, bn: &'m BatchNorm, x: Tensor, live: &mut bool) -> Result<(Tensor, Rec<'m>)> {
        let rank = x.rank() - 1;
        let mean = channel_shape(&detached(&bn.running_mean), rank)?;
        let r = channel_shape(
            &(detached(&bn.running_var) + bn.eps)?.sqrt()?.recip()?,
            rank,
        )?;
        let gamma = channel_shape(&detached(&bn.weight), rank)?;
        let beta = channel_shape(&detached(&bn.bias), rank)?;
        let xhat = x.broadcast_sub(&mean)?.broadcast_mul(&r)?;
        let y = xhat.broadcast_mul(&gamma)?.broadcast_add(&beta)?;
        let scale = gamma.mul(&r)?;
        let live_in = *live;
        *live |= self.selected(&bn.weight) || self.selected(&bn.bias);
        Ok((
            y,
            Rec::Norm {
                layer: bn,
                xhat,
                r,
                scale,
                live_in,
            },
        ))
    }

    fn act<'m>(&self, act: Activation, z: Tensor) -> Result<(Tensor, Rec<'m>)> {
        Ok((layers::activate(&z, act)?, Rec::Act { act, z }))
    }

    /// The whole network (terrain-model's layer description); returns the tape and the outputs.
    fn network<'m>(&self, net: &'m Network, x: &Tensor) -> Result<(Vec<Step<'m>>, Tensor)> {
        let mut live = false;
        self.layers(&net.layers, x.clone(), &mut live)
    }

    /// A sequence of layers; `live` says whether the input depends on a selected parameter, and
    /// is updated to whether the output does.
    fn layers<'m>(
        &self,
        layers: &'m [Layer],
        mut h: Tensor,
        live: &mut bool,
    ) -> Result<(Vec<Step<'m>>, Tensor)> {
        let mut steps = Vec::with_capacity(layers.len());
        for layer in layers {
            let (y, step) = match layer {
                Layer::Linear(lin) => {
                    let (y, rec) = self.linear(lin, h, live)?;
                    (y, Step::One(rec))
                }
                Layer::Conv2d(c) => {
                    let (y, rec) = self.conv(c, h, live)?;
                    (y, Step::One(rec))
                }
                Layer::BatchNorm(bn) => {
                    let (y, rec) = self.norm(bn, h, live)?;
                    (y, Step::One(rec))
                }
                Layer::Activation(a) => {
                    let (y, rec) = self.act(*a, h)?;
                    (y, Step::One(rec))
                }
                Layer::MaxPool2x2 => {
                    let y = layers::max_pool2x2(&h)?;
                    let rec = Rec::MaxPool {
                        mask: layers::max_pool2x2_mask(&h)?,
                    };
                    (y, Step::One(rec))
                }
                Layer::Flatten => {
                    let dims = h.dims().to_vec();
                    (h.flatten_from(1)?, Step::One(Rec::Flatten { dims }))
                }
                Layer::GlobalAvgPool => {
                    let dims = h.dims().to_vec();
                    (
                        layers::global_avg_pool(&h)?,
                        Step::One(Rec::AvgPool { dims }),
                    )
                }
                Layer::Residual(r) => {
                    let live_in = *live;
                    let mut live_main = live_in;
                    let (main, out) = self.layers(&r.main, h.clone(), &mut live_main)?;
                    let mut live_skip = live_in;
                    let (skip, s) = self.layers(&r.shortcut, h, &mut live_skip)?;
                    *live = live_main || live_skip;
                    (
                        out.add(&s)?,
                        Step::Block {
                            main,
                            skip,
                            live_in,
                        },
                    )
                }
            };
            steps.push(step);
            h = y;
        }
        Ok((steps, h))
    }
}

/// The backward sweep's state: mode, noise, and per-parameter accumulators.
pub(crate) struct Sweep<'s> {
    mode: Mode,
    /// Whether bilinear nodes inject their parameter–input cross curvature (needed for an
    /// estimate of the whole Hessian; it has no diagonal, so diagonal estimates skip it).
    cross: bool,
    noise: &'s mut dyn Noise,
    slots: HashMap<TensorId, usize>,
    acc: Vec<Option<Tensor>>,
    dtype: DType,
    device: Device,
}

impl<'s> Sweep<'s> {
    fn slot(&self, v: &Var) -> Option<usize> {
        self.slots.get(&v.as_tensor().id()).copied()
    }

    fn slot_opt(&self, v: &Option<Var>) -> Option<usize> {
        v.as_ref().and_then(|v| self.slot(v))
    }

    fn add(&mut self, slot: usize, t: Tensor) -> Result<()> {
        let a = match self.acc[slot].take() {
            None => t,
            Some(a) if self.mode.is_cp() && a.dim(0)? != t.dim(0)? => {
                dual(&a, self.mode, 0)?.add(&dual(&t, self.mode, 0)?)?
            }
            Some(a) => a.add(&t)?,
        };
        self.acc[slot] = Some(a);
        Ok(())
    }

    /// `[N, K, feat...]` noise.
    fn draw(&mut self, rows: usize, feat: &[usize]) -> Result<Tensor> {
        self.noise
            .draw(rows, self.mode.k(), feat, self.dtype, &self.device)
    }

    /// Per-row factor `f` `[N, feat...]` broadcast against the propagated quantity.
    fn per_row(&self, f: &Tensor) -> Result<Tensor> {
        Ok(if self.mode.is_cp() {
            f.unsqueeze(1)?
        } else {
            f.clone()
        })
    }

    /// The injection `F v` of an elementwise node with local curvature `m = g ⊙ φ''(z)`:
    /// S: `(√m⁺ + i√m⁻) v`; T/U: `T = sign(m)√|m| v`, `U = √|m| v`. Returns `[N, R, feat...]`.
    fn diagonal_injection(&mut self, m: &Tensor) -> Result<Tensor> {
        let dims = m.dims().to_vec();
        let v = self.draw(dims[0], &dims[1..])?;
        let (f1, f2) = match self.mode {
            Mode::S(_) => (m.relu()?.sqrt()?, m.neg()?.relu()?.sqrt()?),
            _ => {
                let a = m.abs()?.sqrt()?;
                (a.mul(&m.sign()?)?, a)
            }
        };
        Ok(Tensor::cat(
            &[
                v.broadcast_mul(&f1.unsqueeze(1)?)?,
                v.broadcast_mul(&f2.unsqueeze(1)?)?,
            ],
            1,
        )?)
    }

    /// The noise of a bilinear node `y = B(P, x)` (parameter `P` shared by all rows), drawn on the
    /// side `feat` (`[N, feat...]` per row, twice: `a` and `b`). Returns `(p_side, x_side)`, both
    /// `[N, R, feat...]`: S: `(σ_p [a; b]/√2, σ_x [a; −b]/√2)`; T/U: `(σ_p [a; b], σ_x [b; a])`,
    /// to be mapped by the node's blocks (see the parent module), with per-row scales
    /// `σ_p σ_x = 1` chosen below.
    ///
    /// `nu` `[N]` is, per row, `‖structural block‖_F / ‖identity block‖_F` of the local factor
    /// (`K` against `I` for linear and convolution, `Cᵀ` against `I` for BatchNorm). Any positive
    /// per-row scale gives an exact factor; scaling the identity block by `√ν` and the structural
    /// one by `1/√ν` gives both the same norm, which keeps either side's noise from swamping the
    /// other (unscaled, the identity block is O(1) while `K ∝ g` is O(1/N), and the estimator's
    /// variance was thousands of times larger). Rows with `ν = 0` have `M = 0` and inject nothing.
    fn bilinear_noise(
        &mut self,
        rows: usize,
        feat: &[usize],
        nu: &Tensor,
        structural_on_param: bool,
    ) -> Result<(Tensor, Tensor)> {
        let a = self.draw(rows, feat)?;
        let b = self.draw(rows, feat)?;
        let (p, x) = match self.mode {
            Mode::S(_) => (
                Tensor::cat(&[&a, &b], 1)?.affine(FRAC_1_SQRT_2, 0.0)?,
                Tensor::cat(&[&a, &b.neg()?], 1)?.affine(FRAC_1_SQRT_2, 0.0)?,
            ),
            _ => (Tensor::cat(&[&a, &b], 1)?, Tensor::cat(&[&b, &a], 1)?),
        };
        // √ν and 1/√ν (0 where ν = 0), shaped [N, 1, 1...].
        let positive = nu.gt(&nu.zeros_like()?)?.to_dtype(nu.dtype())?;
        let root = nu.sqrt()?;
        let inv_root = root
            .add(&positive.affine(-1.0, 1.0)?)?
            .recip()?
            .mul(&positive)?;
        let mut shape = vec![rows];
        shape.resize(feat.len() + 2, 1);
        let (root, inv_root) = (
            root.reshape(shape.as_slice())?,
            inv_root.reshape(shape.as_slice())?,
        );
        let (sp, sx) = if structural_on_param {
            (inv_root, root)
        } else {
            (root, inv_root)
        };
        Ok((p.broadcast_mul(&sp)?, x.broadcast_mul(&sx)?))
    }

    /// The flow into the logits `z` `[N, O]` from the loss node `weight · Σ_n ℓ(z_n, y_n)`.
    fn loss(&mut self, z: &Tensor, y: &Targets, kind: LossKind, weight: f64) -> Result<Flow> {
        let (n, o) = z.dims2()?;
        let dtype = z.dtype();
        match kind {
            LossKind::Ce => {
                let (t, mass) = ce_targets(y, z)?;
                let p = candle_nn::ops::softmax(z, D::Minus1)?;
                // ∇ = weight·(mass·p − t); ∇² = weight·mass·(diag p − p pᵀ).
                let scaled_p = match &mass {
                    Some(m) => p.broadcast_mul(m)?,
                    None => p.clone(),
                };
                let g = scaled_p.sub(&t)?.affine(weight, 0.0)?;
                let c = match self.mode {
                    Mode::Bl => {
                        let h = p.mul(&p.affine(-1.0, 1.0)?)?.affine(weight, 0.0)?;
                        match &mass {
                            Some(m) => h.broadcast_mul(m)?,
                            None => h,
                        }
                    }
                    _ => {
                        // F = diag(√p) − p √pᵀ, F Fᵀ = diag p − p pᵀ (Σ p = 1).
                        let v = self.draw(n, &[o])?;
                        let sp = p.sqrt()?.unsqueeze(1)?;
                        let t1 = v.broadcast_mul(&sp)?;
                        let dot = t1.sum_keepdim(2)?;
                        let mut fv = t1.sub(&dot.broadcast_mul(&p.unsqueeze(1)?)?)?;
                        fv = match &mass {
                            Some(m) => {
                                fv.broadcast_mul(&m.affine(weight, 0.0)?.sqrt()?.unsqueeze(1)?)?
                            }
                            None => fv.affine(weight.sqrt(), 0.0)?,
                        };
                        // Real and symmetric: a single injection (see the module docs).
                        fv
                    }
                };
                Ok(Flow { g, c })
            }
            LossKind::Mse => {
                let t = mse_targets(y, z)?;
                // ℓ = mean over outputs of (z − t)²: ∇ = 2(z − t)/O, ∇² = (2/O) I.
                let curv = 2.0 * weight / o as f64;
                let g = z.sub(&t)?.affine(curv, 0.0)?;
                let c = match self.mode {
                    Mode::Bl => Tensor::full(curv, (n, o), z.device())?.to_dtype(dtype)?,
                    _ => {
                        let v = self.draw(n, &[o])?;
                        let fv = v.affine(curv.sqrt(), 0.0)?;
                        // Real and symmetric: a single injection (see the module docs).
                        fv
                    }
                };
                Ok(Flow { g, c })
            }
        }
    }

    /// Backward through a tape: returns the flow into its input (`None` when the input is not
    /// live).
    fn backward(&mut self, steps: &[Step<'_>], mut flow: Flow) -> Result<Option<Flow>> {
        for step in steps.iter().rev() {
            let next = match step {
                Step::One(rec) => self.back(rec, flow)?,
                Step::Block {
                    main,
                    skip,
                    live_in,
                } => {
                    let from_main = self.backward(main, flow.clone())?;
                    let from_skip = if skip.is_empty() {
                        Some(flow)
                    } else {
                        self.backward(skip, flow)?
                    };
                    if *live_in {
                        match (from_main, from_skip) {
                            (Some(a), Some(b)) => Some(a.add(b, self.mode)?),
                            (a, b) => a.or(b),
                        }
                    } else {
                        None
                    }
                }
            };
            match next {
                Some(f) => flow = f,
                None => return Ok(None),
            }
        }
        Ok(Some(flow))
    }

    /// Backward through one layer: accumulates its parameters' quantities and returns the flow
    /// into its input (`None` when the input is not live).
    fn back(&mut self, rec: &Rec<'_>, flow: Flow) -> Result<Option<Flow>> {
        match rec {
            Rec::Linear {
                layer,
                w,
                x,
                live_in,
            } => self.back_linear(layer, w, x, *live_in, flow),
            Rec::Conv {
                layer,
                w,
                x,
                live_in,
            } => self.back_conv(layer, w, x, *live_in, flow),
            Rec::Norm {
                layer,
                xhat,
                r,
                scale,
                live_in,
            } => self.back_norm(layer, xhat, r, scale, *live_in, flow),
            Rec::Act { act, z } => {
                let (d1, d2) = derivatives(*act, z)?;
                let g = flow.g.mul(&d1)?;
                let c = match self.mode {
                    Mode::Bl => {
                        let h = flow.c.mul(&d1.sqr()?)?;
                        match &d2 {
                            Some(d2) => h.add(&flow.g.mul(d2)?)?,
                            None => h,
                        }
                    }
                    _ => {
                        let c = flow.c.broadcast_mul(&d1.unsqueeze(1)?)?;
                        match &d2 {
                            Some(d2) => dual(&c, self.mode, 1)?
                                .add(&self.diagonal_injection(&flow.g.mul(d2)?)?)?,
                            None => c,
                        }
                    }
                };
                Ok(Some(Flow { g, c }))
            }
            Rec::MaxPool { mask } => {
                // Piecewise linear: route to the window's first maximum in row-major order, like
                // the gradient (PyTorch's rule, `layers::max_pool2x2_mask`).
                let (h, w) = (mask.dim(2)?, mask.dim(3)?);
                let up = |t: &Tensor| -> Result<Tensor> {
                    let d = t.dims().to_vec();
                    let lead = &d[..d.len() - 2];
                    let mut s6 = lead.to_vec();
                    s6.extend([h / 2, 1, w / 2, 1]);
                    let mut b6 = lead.to_vec();
                    b6.extend([h / 2, 2, w / 2, 2]);
                    let mut out = lead.to_vec();
                    out.extend([h, w]);
                    Ok(t.reshape(s6)?
                        .broadcast_as(b6)?
                        .contiguous()?
                        .reshape(out)?)
                };
                let g = up(&flow.g)?.mul(mask)?;
                let c = up(&flow.c)?.broadcast_mul(&self.per_row(mask)?)?;
                Ok(Some(Flow { g, c }))
            }
            Rec::Flatten { dims } => {
                let g = flow.g.reshape(dims.as_slice())?;
                let c = if self.mode.is_cp() {
                    let mut d = vec![dims[0], flow.c.dim(1)?];
                    d.extend_from_slice(&dims[1..]);
                    flow.c.reshape(d)?
                } else {
                    flow.c.reshape(dims.as_slice())?
                };
                Ok(Some(Flow { g, c }))
            }
            Rec::AvgPool { dims } => {
                let (h, w) = (dims[2], dims[3]);
                let area = (h * w) as f64;
                let spread = |t: &Tensor, scale: f64| -> Result<Tensor> {
                    let mut d = t.dims().to_vec();
                    d.extend([1, 1]);
                    let mut b = t.dims().to_vec();
                    b.extend([h, w]);
                    Ok(t.reshape(d)?.broadcast_as(b)?.affine(scale, 0.0)?)
                };
                let g = spread(&flow.g, 1.0 / area)?;
                // Linear node: Becker–LeCun gets Jᵀ-squared, i.e. 1/area².
                let c = match self.mode {
                    Mode::Bl => spread(&flow.c, 1.0 / (area * area))?,
                    _ => spread(&flow.c, 1.0 / area)?,
                };
                Ok(Some(Flow { g, c }))
            }
        }
    }

    fn back_linear(
        &mut self,
        layer: &Linear,
        w: &Tensor,
        x: &Tensor,
        live_in: bool,
        flow: Flow,
    ) -> Result<Option<Flow>> {
        let w_slot = self.slot(&layer.weight);
        let b_slot = self.slot_opt(&layer.bias);
        let Flow { g, c } = flow;
        let (n, inp) = x.dims2()?;
        let out = g.dim(1)?;
        if self.mode == Mode::Bl {
            if let Some(s) = w_slot {
                self.add(s, c.t()?.matmul(&x.sqr()?)?)?;
            }
            if let Some(s) = b_slot {
                self.add(s, c.sum(0)?)?;
            }
            if !live_in {
                return Ok(None);
            }
            return Ok(Some(Flow {
                g: g.matmul(w)?,
                c: c.matmul(&w.sqr()?)?,
            }));
        }
        let inject = w_slot.is_some() && live_in && self.cross;
        let c = if inject { dual(&c, self.mode, 1)? } else { c };
        let r = c.dim(1)?;
        let mut x_noise = None;
        if let Some(s) = w_slot {
            // Jᵀ: Σ_n s_n ⊗ x_n for each replica.
            let mut sw = c
                .reshape((n, r * out))?
                .t()?
                .matmul(x)?
                .reshape((r, out, inp))?;
            if inject {
                // M = [[0, K], [Kᵀ, 0]], K_(o,j),j' = g_o δ_jj': noise on the x side.
                // ‖K_n‖_F / ‖I‖_F = |g_n|.
                let nu = g.sqr()?.sum(1)?.sqrt()?;
                let (p_side, x_side) = self.bilinear_noise(n, &[inp], &nu, true)?;
                let t = p_side
                    .reshape((n, r * inp))?
                    .t()?
                    .matmul(&g)?
                    .reshape((r, inp, out))?
                    .transpose(1, 2)?;
                sw = sw.add(&t)?;
                x_noise = Some(x_side);
            }
            self.add(s, sw)?;
        }
        if let Some(s) = b_slot {
            self.add(s, c.sum(0)?)?;
        }
        if !live_in {
            return Ok(None);
        }
        let mut cx = c.reshape((n * r, out))?.matmul(w)?.reshape((n, r, inp))?;
        if let Some(xn) = x_noise {
            cx = cx.add(&xn)?;
        }
        Ok(Some(Flow {
            g: g.matmul(w)?,
            c: cx,
        }))
    }

    fn back_conv(
        &mut self,
        layer: &Conv2d,
        w: &Tensor,
        x: &Tensor,
        live_in: bool,
        flow: Flow,
    ) -> Result<Option<Flow>> {
        let w_slot = self.slot(&layer.weight);
        let b_slot = self.slot_opt(&layer.bias);
        let Flow { g, c } = flow;
        let (n, inp, h, wd) = x.dims4()?;
        let (_, out, ho, wo) = g.dims4()?;
        let k = w.dim(2)?;
        let op = out_padding(layer, k, h, ho);
        if out_padding(layer, w.dim(3)?, wd, wo) != op {
            return Err(Error::Unsupported {
                method: "curvature propagation".into(),
                what: format!(
                    "a convolution whose transpose needs different output paddings along height and width (input {h}x{wd}, output {ho}x{wo})"
                ),
            });
        }
        let transpose = |t: &Tensor, kernel: &Tensor| -> Result<Tensor> {
            Ok(t.conv_transpose2d(kernel, layer.padding, op, layer.stride, 1)?)
        };
        if self.mode == Mode::Bl {
            if let Some(s) = w_slot {
                let t = kernel_grad(&x.sqr()?.transpose(0, 1)?, &c.transpose(0, 1)?, layer, k)?;
                self.add(s, t.transpose(0, 1)?)?;
            }
            if let Some(s) = b_slot {
                self.add(s, sum_but(&c, &[1])?)?;
            }
            if !live_in {
                return Ok(None);
            }
            return Ok(Some(Flow {
                g: transpose(&g, w)?,
                c: transpose(&c, &w.sqr()?)?,
            }));
        }
        let inject = w_slot.is_some() && live_in && self.cross;
        let c = if inject { dual(&c, self.mode, 1)? } else { c };
        let r = c.dim(1)?;
        let mut x_noise = None;
        if let Some(s) = w_slot {
            let kern = c.reshape((n, r * out, ho, wo))?.transpose(0, 1)?;
            let mut sw = kernel_grad(&x.transpose(0, 1)?, &kern, layer, k)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((r, out, inp, k, k))?;
            if inject {
                // ‖K_n‖_F / ‖I‖_F ≈ k·|g_n| / √(H·W) (exact up to the padding's border).
                let nu = g
                    .sqr()?
                    .sum((1, 2, 3))?
                    .sqrt()?
                    .affine(k as f64 / ((h * wd) as f64).sqrt(), 0.0)?;
                let (p_side, x_side) = self.bilinear_noise(n, &[inp, h, wd], &nu, true)?;
                let a_t = p_side.reshape((n, r * inp, h, wd))?.transpose(0, 1)?;
                let t = kernel_grad(&a_t, &g.transpose(0, 1)?, layer, k)?
                    .reshape((r, inp, out, k, k))?
                    .transpose(1, 2)?;
                sw = sw.add(&t)?;
                x_noise = Some(x_side);
            }
            self.add(s, sw)?;
        }
        if let Some(s) = b_slot {
            self.add(s, sum_but(&c, &[1, 2])?)?;
        }
        if !live_in {
            return Ok(None);
        }
        let mut cx =
            transpose(&c.reshape((n * r, out, ho, wo))?, w)?.reshape((n, r, inp, h, wd))?;
        if let Some(xn) = x_noise {
            cx = cx.add(&xn)?;
        }
        Ok(Some(Flow {
            g: transpose(&g, w)?,
            c: cx,
        }))
    }

    fn back_norm(
        &mut self,
        layer: &BatchNorm,
        xhat: &Tensor,
        r: &Tensor,
        scale: &Tensor,
        live_in: bool,
        flow: Flow,
    ) -> Result<Option<Flow>> {
        let gamma_slot = self.slot(&layer.weight);
        let beta_slot = self.slot(&layer.bias);
        let Flow { g, c } = flow;
        let n = xhat.dim(0)?;
        let ch = xhat.dim(1)?;
        if self.mode == Mode::Bl {
            if let Some(s) = gamma_slot {
                self.add(s, sum_but(&c.mul(&xhat.sqr()?)?, &[1])?)?;
            }
            if let Some(s) = beta_slot {
                self.add(s, sum_but(&c, &[1])?)?;
            }
            if !live_in {
                return Ok(None);
            }
            return Ok(Some(Flow {
                g: g.broadcast_mul(scale)?,
                c: c.broadcast_mul(&scale.sqr()?)?,
            }));
        }
        let inject = gamma_slot.is_some() && live_in && self.cross;
        let c = if inject { dual(&c, self.mode, 1)? } else { c };
        let mut x_part = None;
        if let Some(s) = gamma_slot {
            let mut sg = sum_but(&c.broadcast_mul(&xhat.unsqueeze(1)?)?, &[1, 2])?;
            if inject {
                // M = [[0, C], [Cᵀ, 0]] over (γ, x), C_c,(c,pos) = g_(c,pos) r_c: noise on the γ side.
                // ‖C_n‖_F / ‖I‖_F = |g_n ⊙ r| / √channels.
                let gr = g.broadcast_mul(r)?;
                let nu = sum_but(&gr.sqr()?, &[0])?
                    .sqrt()?
                    .affine(1.0 / (ch as f64).sqrt(), 0.0)?;
                let (p_side, x_side) = self.bilinear_noise(n, &[ch], &nu, false)?;
                sg = sg.add(&p_side.sum(0)?)?;
                // Cᵀ u: (g ⊙ r) times u broadcast over positions.
                let mut d = x_side.dims().to_vec();
                d.resize(xhat.rank() + 1, 1);
                x_part = Some(x_side.reshape(d)?.broadcast_mul(&gr.unsqueeze(1)?)?);
            }
            self.add(s, sg)?;
        }
        if let Some(s) = beta_slot {
            self.add(s, sum_but(&c, &[1, 2])?)?;
        }
        if !live_in {
            return Ok(None);
        }
        let mut cx = c.broadcast_mul(scale)?;
        if let Some(xp) = x_part {
            cx = cx.add(&xp)?;
        }
        Ok(Some(Flow {
            g: g.broadcast_mul(scale)?,
            c: cx,
        }))
    }
}

/// Runs one sweep over all the operator's batches and returns the accumulators, one per selected
/// parameter: `[2K, shape...]` for CP (first `K` real parts or `T`, then imaginary parts or `U`)
/// or `[K, shape...]` where the sweep stayed single (zero imaginary part, `U = T`), the
/// parameter's shape for Becker–LeCun.
/// `cross`: whether bilinear nodes inject their cross curvature (see [`Sweep`]).
pub fn run(
    op: &Request<'_>,
    mode: Mode,
    cross: bool,
    noise: &mut dyn Noise,
) -> Result<Vec<Tensor>> {
    let method = match mode {
        Mode::S(_) => "curvature propagation (cp)",
        Mode::Tu(_) => "curvature propagation (cp-tu)",
        Mode::Bl => "Becker–LeCun",
    };
    if op.curvature != Curvature::Hessian {
        return Err(Error::Unsupported {
            method: method.into(),
            what: "the Gauss–Newton matrix: it propagates the exact Hessian's curvature; \
                   build the operator with Curvature::Hessian, or use the exact or hutchinson \
                   diagonal for the Gauss–Newton matrix"
                .into(),
        });
    }
    let model = op.model;
    let slots: HashMap<TensorId, usize> = op
        .selected
        .iter()
        .enumerate()
        .map(|(j, &i)| (model.params()[i].var.as_tensor().id(), j))
        .collect();
    let weight = 1.0 / op.rows as f64;
    let mut sweep = Sweep {
        mode,
        cross,
        noise,
        slots,
        acc: vec![None; op.selected.len()],
        dtype: model.dtype(),
        device: model.device().clone(),
    };
    for batch in op.batches {
        let (steps, z) = Forward {
            slots: &sweep.slots,
        }
        .network(model.network(), &batch.x)?;
        let flow = sweep.loss(&z, &batch.y, op.loss, weight)?;
        sweep.backward(&steps, flow)?;
    }
    let r = 2 * mode.k();
    sweep
        .acc
        .into_iter()
        .zip(op.shapes)
        .map(|(a, shape)| match a {
            Some(a) => Ok(a),
            None => {
                let mut s = if mode.is_cp() { vec![r] } else { vec![] };
                s.extend_from_slice(shape);
                Ok(Tensor::zeros(s, model.dtype(), model.device())?)
            }
        })
        .collect()
}
