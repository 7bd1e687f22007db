//! Hand-written derivatives on terrain-model's layer description ([`Network`]): the loss gradient,
//! exact Hessian-vector products by Pearlmutter's R-operator, and Gauss–Newton products, for `k`
//! directions sharing one forward pass per batch.
//!
//! # How it works
//!
//! With `R{·}` the directional derivative along a parameter direction `v`, one forward pass
//! carries each node's value `x` and its tangent `ẋ = R{x}` (`J v` at that node), and one backward
//! pass carries the adjoint `g = ∂L/∂x` and the second-order adjoint `ġ = R{g}`; a parameter's
//! gradient is its accumulated `g`-product and its row of `H v` the accumulated `ġ`-product.
//! Per layer (`V`, `v_b`, `v_γ`, `v_β` the direction's blocks; zero for unselected parameters):
//!
//! | node | tangent | adjoint into the input | second-order adjoint | `H v` block |
//! |---|---|---|---|---|
//! | linear `y = x Wᵀ + b` | `ẋ Wᵀ + x Vᵀ + v_b` | `g W` | `ġ W + g V` | `ġᵀ x + gᵀ ẋ`, `Σ ġ` |
//! | convolution | `conv(ẋ, W) + conv(x, V) + v_b` | `convᵀ(g, W)` | `convᵀ(ġ, W) + convᵀ(g, V)` | `K(x, ġ) + K(ẋ, g)` |
//! | BatchNorm (eval) `y = γ x̂ + β` | `γ r ẋ + v_γ x̂ + v_β` | `γ r g` | `γ r ġ + r v_γ g` | `Σ ġ x̂ + Σ r g ẋ`, `Σ ġ` |
//! | activation `a = φ(z)` | `φ' ż` | `φ' g` | `φ' ġ + φ'' g ż` | |
//! | max pool, flatten, average pool, residual sum | linear: the tangent and both adjoints take the same map | | | |
//! | softmax CE | | `w(m p − t)` | `w m (p ⊙ ż − p (pᵀ ż))` | |
//! | MSE, `O` outputs | | `(2w/O)(z − t)` | `(2w/O) ż` | |
//!
//! (`K(a, b)` the kernel gradient, `r = 1/√(σ² + ε)` from the running variance, `w = 1/rows`,
//! `m = Σ_k t_k` the target mass: 1 for hard labels.) The Gauss–Newton product `Jᵀ ∇²ℓ J v` is the
//! same sweep without the terms that carry `g` into `ġ` (`g V`, `gᵀ ẋ`, `φ'' g ż`, `r v_γ g`):
//! the tangent at the logits is `J v`, the loss node's `ġ` is `∇²ℓ J v`, and the rest is `Jᵀ`.
//!
//! Tangents of `k` directions are `[k, N, feat...]`: each layer's map by its own weight is one
//! matrix product (or convolution) over `k·N` rows, the map by the `k` direction blocks one matrix
//! product against the stacked blocks. The forward values, activation derivatives and pooling
//! masks are computed once per batch for all `k`.

use std::collections::HashMap;

use candle_core::{D, DType, Tensor, TensorId, Var};

use super::common::{
    ce_targets, channel_shape, derivatives, detached, flatten_blocks, mse_targets, split_blocks,
    sum_but,
};
use super::im2col::Geom;
use super::{Curvature, Output, Product, Request};
use crate::{
    Activation, Error, Result,
    data::{Batch, Targets},
    layers::{self, BatchNorm, Conv2d, Linear},
    loss::{self, LossKind},
    network::{Layer, Network},
};

/// A signed symmetric factor of a curvature term at a node's output: the term is
/// `sign · Σ_n S_n S_nᵀ` with `S` `[N, C, feat...]` (`C` columns per row).
#[derive(Clone)]
struct Factor {
    sign: f64,
    s: Tensor,
}

/// The most elements a nonlinearity's residual factor (`rows × features²`) may have.
const MAX_RESIDUAL_FACTOR: usize = 1 << 27;

/// `a + b` where `a` may be absent.
fn add_opt(a: Option<Tensor>, b: Tensor) -> Result<Tensor> {
    Ok(match a {
        Some(a) => a.add(&b)?,
        None => b,
    })
}

/// `a + b` where either may be absent.
fn sum_opt(a: Option<Tensor>, b: Option<Tensor>) -> Result<Option<Tensor>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(a.add(&b)?),
        (a, b) => a.or(b),
    })
}

/// `[k, N, rest...]` -> `[k·N, rest...]`.
fn merge(t: &Tensor) -> Result<Tensor> {
    let d = t.dims();
    let mut s = vec![d[0] * d[1]];
    s.extend_from_slice(&d[2..]);
    Ok(t.reshape(s)?)
}

/// `[k·N, rest...]` -> `[k, N, rest...]`.
fn unmerge(t: &Tensor, k: usize) -> Result<Tensor> {
    let d = t.dims();
    let mut s = vec![k, d[0] / k];
    s.extend_from_slice(&d[1..]);
    Ok(t.reshape(s)?)
}

/// A per-direction channel vector `[k, C]` shaped to broadcast over `[k, N, C, rest...]` of rank
/// `rank`.
fn dir_channels(t: &Tensor, rank: usize) -> Result<Tensor> {
    let (k, c) = t.dims2()?;
    let mut s = vec![k, 1, c];
    s.resize(rank, 1);
    Ok(t.reshape(s)?)
}

/// 2×2 windows spread back: `[lead..., H/2, W/2]` -> `[lead..., H, W]`.
fn up2(t: &Tensor) -> Result<Tensor> {
    let d = t.dims().to_vec();
    let r = d.len();
    let (h2, w2) = (d[r - 2], d[r - 1]);
    let lead = &d[..r - 2];
    let mut s6 = lead.to_vec();
    s6.extend([h2, 1, w2, 1]);
    let mut b6 = lead.to_vec();
    b6.extend([h2, 2, w2, 2]);
    let mut out = lead.to_vec();
    out.extend([2 * h2, 2 * w2]);
    Ok(t.reshape(s6)?
        .broadcast_as(b6)?
        .contiguous()?
        .reshape(out)?)
}

/// One recorded layer application.
enum Rec<'m> {
    Linear {
        layer: &'m Linear,
        w: Tensor,
        x: Tensor,
        dx: Option<Tensor>,
        live_in: bool,
    },
    Conv {
        layer: &'m Conv2d,
        w: Tensor,
        x: Tensor,
        dx: Option<Tensor>,
        live_in: bool,
    },
    Norm {
        layer: &'m BatchNorm,
        xhat: Tensor,
        r: Tensor,
        scale: Tensor,
        dx: Option<Tensor>,
        live_in: bool,
    },
    Act {
        d1: Tensor,
        d2: Option<Tensor>,
        dz: Option<Tensor>,
    },
    MaxPool {
        mask: Tensor,
    },
    Flatten {
        dims: Vec<usize>,
    },
    AvgPool {
        dims: Vec<usize>,
    },
}

enum Step<'m> {
    One(Rec<'m>),
    Block {
        main: Vec<Step<'m>>,
        skip: Vec<Step<'m>>,
        live_in: bool,
    },
}

/// The adjoints flowing back through a node's output: `g` `[N, feat...]` and `ġ` `[k, N, feat...]`.
///
/// For the exact diagonal, `factors` are the curvature terms' symmetric factors at this node
/// (the loss Hessian's first, then each nonlinearity's residual, in the order they were met).
#[derive(Clone)]
struct Flow {
    g: Option<Tensor>,
    dg: Option<Tensor>,
    factors: Vec<Factor>,
}

impl Flow {
    /// Fan-out: the adjoints and the factors that both branches carried add up (a factor met
    /// inside only one branch is kept as it is).
    fn add(self, other: Flow, shared: usize) -> Result<Flow> {
        let mut factors = Vec::with_capacity(self.factors.len() + other.factors.len());
        let (mut a, mut b) = (self.factors.into_iter(), other.factors.into_iter());
        for _ in 0..shared {
            match (a.next(), b.next()) {
                (Some(x), Some(y)) => factors.push(Factor {
                    sign: x.sign,
                    s: x.s.add(&y.s)?,
                }),
                (x, y) => factors.extend(x.or(y)),
            }
        }
        factors.extend(a);
        factors.extend(b);
        Ok(Flow {
            g: sum_opt(self.g, other.g)?,
            dg: sum_opt(self.dg, other.dg)?,
            factors,
        })
    }

    /// A linear map applied alike to `g` (`[N, ...]`), `ġ` (`[k, N, ...]`) and the factors
    /// (`[N, C, ...]`): `f` must accept any number of leading axes.
    fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Flow> {
        Ok(Flow {
            g: self.g.as_ref().map(&f).transpose()?,
            dg: self.dg.as_ref().map(&f).transpose()?,
            factors: self
                .factors
                .iter()
                .map(|x| {
                    Ok(Factor {
                        sign: x.sign,
                        s: f(&x.s)?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }
}

struct Sweep {
    product: Product,
    k: usize,
    slots: HashMap<TensorId, usize>,
    /// Per selected parameter: the `k` direction blocks stacked, `[k, shape...]`.
    dirs: Vec<Option<Tensor>>,
    grad: Vec<Option<Tensor>>,
    prod: Vec<Option<Tensor>>,
    diag: Vec<Option<Tensor>>,
    /// Whether the exact diagonal includes the nonlinearities' residual terms (the Hessian's) or
    /// not (the Gauss–Newton matrix's).
    diag_residuals: bool,
}

impl Sweep {
    fn slot(&self, v: &Var) -> Option<usize> {
        self.slots.get(&v.as_tensor().id()).copied()
    }

    fn slot_opt(&self, v: &Option<Var>) -> Option<usize> {
        v.as_ref().and_then(|v| self.slot(v))
    }

    fn selected(&self, v: &Var) -> bool {
        self.slot(v).is_some()
    }

    fn dir(&self, v: &Var) -> Option<&Tensor> {
        self.slot(v).and_then(|s| self.dirs[s].as_ref())
    }

    fn dir_opt(&self, v: &Option<Var>) -> Option<&Tensor> {
        v.as_ref().and_then(|v| self.dir(v))
    }

    /// Whether the Hessian's residual terms (those carrying `g` into `ġ`) are included.
    fn residual(&self) -> bool {
        self.product == Product::Hessian
    }

    fn add_grad(&mut self, slot: Option<usize>, t: impl FnOnce() -> Result<Tensor>) -> Result<()> {
        if let Some(s) = slot {
            let t = t()?;
            self.grad[s] = Some(add_opt(self.grad[s].take(), t)?);
        }
        Ok(())
    }

    fn add_prod(&mut self, slot: Option<usize>, t: Tensor) -> Result<()> {
        if let Some(s) = slot {
            self.prod[s] = Some(add_opt(self.prod[s].take(), t)?);
        }
        Ok(())
    }

    /// Adds `Σ_factors sign · per_factor(S)` to a parameter's diagonal.
    fn add_diag(
        &mut self,
        slot: Option<usize>,
        factors: &[Factor],
        per_factor: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        if let Some(s) = slot {
            for f in factors {
                let t = per_factor(&f.s)?.affine(f.sign, 0.0)?;
                self.diag[s] = Some(add_opt(self.diag[s].take(), t)?);
            }
        }
        Ok(())
    }

    /// Factors through a node's input Jacobian `f` (which takes `[N·C, feat...]`).
    fn map_factors(
        factors: &[Factor],
        f: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Vec<Factor>> {
        factors
            .iter()
            .map(|x| {
                let (n, c) = (x.s.dim(0)?, x.s.dim(1)?);
                let y = f(&merge(&x.s)?)?;
                let mut shape = vec![n, c];
                shape.extend_from_slice(&y.dims()[1..]);
                Ok(Factor {
                    sign: x.sign,
                    s: y.reshape(shape)?,
                })
            })
            .collect()
    }

    // ----- forward -----

    fn linear<'m>(
        &self,
        l: &'m Linear,
        x: Tensor,
        dx: Option<Tensor>,
        live: &mut bool,
    ) -> Result<(Tensor, Option<Tensor>, Rec<'m>)> {
        let w = detached(&l.weight);
        let (n, inp) = x.dims2()?;
        let out = w.dim(0)?;
        let mut y = x.matmul(&w.t()?)?;
        if let Some(b) = &l.bias {
            y = y.broadcast_add(&detached(b))?;
        }
        let mut dy = match &dx {
            Some(d) => Some(
                d.reshape((self.k * n, inp))?
                    .matmul(&w.t()?)?
                    .reshape((self.k, n, out))?,
            ),
            None => None,
        };
        if let Some(vw) = self.dir(&l.weight) {
            // x V_iᵀ for every direction: one product against the stacked blocks.
            let t = x
                .matmul(&vw.reshape((self.k * out, inp))?.t()?)?
                .reshape((n, self.k, out))?
                .transpose(0, 1)?;
            dy = Some(add_opt(dy, t)?);
        }
        if let Some(vb) = self.dir_opt(&l.bias) {
            let t = vb.unsqueeze(1)?.broadcast_as((self.k, n, out))?;
            dy = Some(add_opt(dy, t)?);
        }
        let live_in = *live;
        *live |= self.selected(&l.weight) || self.slot_opt(&l.bias).is_some();
        Ok((
            y,
            dy,
            Rec::Linear {
                layer: l,
                w,
                x,
                dx,
                live_in,
            },
        ))
    }

    fn conv<'m>(
        &self,
        c: &'m Conv2d,
        x: Tensor,
        dx: Option<Tensor>,
        live: &mut bool,
    ) -> Result<(Tensor, Option<Tensor>, Rec<'m>)> {
        let w = detached(&c.weight);
        let geom = Geom::new(w.dims(), x.dims(), c.padding, c.stride);
        let (n, out, q, k) = (x.dim(0)?, w.dim(0)?, geom.patch(), self.k);
        // The maps by the layer's own kernel are candle's (fast) forward convolution; the maps
        // by the k direction kernels one product against their stack.
        let conv = |t: &Tensor| -> Result<Tensor> { Ok(t.conv2d(&w, c.padding, c.stride, 1, 1)?) };
        let mut y = conv(&x)?;
        if let Some(b) = &c.bias {
            y = y.broadcast_add(&detached(b).reshape((out, 1, 1))?)?;
        }
        let mut dy = match &dx {
            Some(d) => Some(unmerge(&conv(&merge(d)?)?, k)?),
            None => None,
        };
        if let Some(vw) = self.dir(&c.weight) {
            // cols(x) V_iᵀ for every direction: one product against the stacked blocks.
            let t = geom
                .im2col(&x)?
                .matmul(&geom.kernel_rows(vw)?.reshape((k * out, q))?.t()?)?
                .reshape((n, geom.ho, geom.wo, k, out))?
                .permute((3, 0, 4, 1, 2))?
                .contiguous()?;
            dy = Some(add_opt(dy, t)?);
        }
        if let Some(vb) = self.dir_opt(&c.bias) {
            let t = dir_channels(vb, 5)?;
            dy = Some(match dy {
                Some(d) => d.broadcast_add(&t)?,
                None => t
                    .broadcast_as((k, n, out, geom.ho, geom.wo))?
                    .contiguous()?,
            });
        }
        let live_in = *live;
        *live |= self.selected(&c.weight) || self.slot_opt(&c.bias).is_some();
        Ok((
            y,
            dy,
            Rec::Conv {
                layer: c,
                w,
                x,
                dx,
                live_in,
            },
        ))
    }

    fn norm<'m>(
        &self,
        bn: &'m BatchNorm,
        x: Tensor,
        dx: Option<Tensor>,
        live: &mut bool,
    ) -> Result<(Tensor, Option<Tensor>, Rec<'m>)> {
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
        let mut dy = match &dx {
            Some(d) => Some(d.broadcast_mul(&scale)?),
            None => None,
        };
        if let Some(vg) = self.dir(&bn.weight) {
            let t = xhat
                .unsqueeze(0)?
                .broadcast_mul(&dir_channels(vg, x.rank() + 1)?)?;
            dy = Some(add_opt(dy, t)?);
        }
        if let Some(vb) = self.dir(&bn.bias) {
            let t = dir_channels(vb, x.rank() + 1)?;
            dy = Some(match dy {
                Some(d) => d.broadcast_add(&t)?,
                None => {
                    let mut s = vec![self.k];
                    s.extend_from_slice(x.dims());
                    t.broadcast_as(s)?.contiguous()?
                }
            });
        }
        let live_in = *live;
        *live |= self.selected(&bn.weight) || self.selected(&bn.bias);
        Ok((
            y,
            dy,
            Rec::Norm {
                layer: bn,
                xhat,
                r,
                scale,
                dx,
                live_in,
            },
        ))
    }

    fn layers<'m>(
        &self,
        layers: &'m [Layer],
        mut h: Tensor,
        mut dh: Option<Tensor>,
        live: &mut bool,
    ) -> Result<(Vec<Step<'m>>, Tensor, Option<Tensor>)> {
        let mut steps = Vec::with_capacity(layers.len());
        for layer in layers {
            let (y, dy, step) = match layer {
                Layer::Linear(l) => {
                    let (y, dy, rec) = self.linear(l, h, dh, live)?;
                    (y, dy, Step::One(rec))
                }
                Layer::Conv2d(c) => {
                    let (y, dy, rec) = self.conv(c, h, dh, live)?;
                    (y, dy, Step::One(rec))
                }
                Layer::BatchNorm(b) => {
                    let (y, dy, rec) = self.norm(b, h, dh, live)?;
                    (y, dy, Step::One(rec))
                }
                Layer::Activation(a) => {
                    let y = layers::activate(&h, *a)?;
                    let (d1, d2) = if self.product == Product::Gradient && self.k == 0 {
                        (first_derivative(*a, &h, &y)?, None)
                    } else {
                        derivatives(*a, &h)?
                    };
                    let dy = match &dh {
                        Some(d) => Some(d.broadcast_mul(&d1)?),
                        None => None,
                    };
                    (y, dy, Step::One(Rec::Act { d1, d2, dz: dh }))
                }
                Layer::MaxPool2x2 => {
                    let y = layers::max_pool2x2(&h)?;
                    // PyTorch's rule: each window's first maximum in row-major order.
                    let mask = layers::max_pool2x2_mask(&h)?;
                    let dy = match &dh {
                        Some(d) => {
                            let (n, c, hh, ww) = h.dims4()?;
                            Some(
                                d.broadcast_mul(&mask)?
                                    .reshape((self.k * n, c, hh / 2, 2, ww / 2, 2))?
                                    .sum((3, 5))?
                                    .reshape((self.k, n, c, hh / 2, ww / 2))?,
                            )
                        }
                        None => None,
                    };
                    (y, dy, Step::One(Rec::MaxPool { mask }))
                }
                Layer::Flatten => {
                    let dims = h.dims().to_vec();
                    let dy = match &dh {
                        Some(d) => Some(d.flatten_from(2)?),
                        None => None,
                    };
                    (h.flatten_from(1)?, dy, Step::One(Rec::Flatten { dims }))
                }
                Layer::GlobalAvgPool => {
                    let dims = h.dims().to_vec();
                    let dy = match &dh {
                        Some(d) => Some(d.mean(D::Minus1)?.mean(D::Minus1)?),
                        None => None,
                    };
                    (
                        layers::global_avg_pool(&h)?,
                        dy,
                        Step::One(Rec::AvgPool { dims }),
                    )
                }
                Layer::Residual(r) => {
                    let live_in = *live;
                    let mut live_main = live_in;
                    let (main, a, da) =
                        self.layers(&r.main, h.clone(), dh.clone(), &mut live_main)?;
                    let mut live_skip = live_in;
                    let (skip, b, db) = self.layers(&r.shortcut, h, dh, &mut live_skip)?;
                    *live = live_main || live_skip;
                    (
                        a.add(&b)?,
                        sum_opt(da, db)?,
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
            dh = dy;
        }
        Ok((steps, h, dh))
    }

    // ----- loss -----

    fn loss(
        &self,
        z: &Tensor,
        dz: Option<&Tensor>,
        y: &Targets,
        kind: LossKind,
        weight: f64,
    ) -> Result<Flow> {
        let (_, o) = z.dims2()?;
        let dtype = z.dtype();
        let want_g = self.product != Product::GaussNewton;
        match kind {
            LossKind::Ce => {
                let (t, mass) = ce_targets(y, z)?;
                let p = candle_nn::ops::softmax_last_dim(z)?;
                let g = if want_g {
                    let sp = match &mass {
                        Some(m) => p.broadcast_mul(m)?,
                        None => p.clone(),
                    };
                    Some(sp.sub(&t)?.affine(weight, 0.0)?)
                } else {
                    None
                };
                let mut factors = Vec::new();
                if self.product == Product::Diagonal {
                    // S[n, c, o] = √(w m) √p_c (δ_co − p_o): S Sᵀ = w m (diag p − p pᵀ).
                    let n = z.dim(0)?;
                    let eye = Tensor::eye(o, dtype, z.device())?.unsqueeze(0)?;
                    let sp = p.sqrt()?.unsqueeze(2)?;
                    let mut f = eye
                        .broadcast_sub(&p.unsqueeze(1)?)?
                        .broadcast_mul(&sp)?
                        .affine(weight.sqrt(), 0.0)?;
                    if let Some(m) = &mass {
                        f = f.broadcast_mul(&m.sqrt()?.reshape((n, 1, 1))?)?;
                    }
                    factors.push(Factor { sign: 1.0, s: f });
                }
                let dg = match dz {
                    Some(dz) => {
                        let pdz = dz.broadcast_mul(&p)?;
                        let s = pdz.sum_keepdim(2)?;
                        let h = pdz.sub(&s.broadcast_mul(&p)?)?.affine(weight, 0.0)?;
                        Some(match &mass {
                            Some(m) => h.broadcast_mul(m)?,
                            None => h,
                        })
                    }
                    None => None,
                };
                Ok(Flow { g, dg, factors })
            }
            LossKind::Mse => {
                let curv = 2.0 * weight / o as f64;
                let g = if want_g {
                    let t = mse_targets(y, z)?;
                    Some(z.sub(&t)?.affine(curv, 0.0)?)
                } else {
                    None
                };
                let dg = match dz {
                    Some(dz) => Some(dz.affine(curv, 0.0)?),
                    None => None,
                };
                let mut factors = Vec::new();
                if self.product == Product::Diagonal {
                    let n = z.dim(0)?;
                    let eye = Tensor::eye(o, dtype, z.device())?.affine(curv.sqrt(), 0.0)?;
                    factors.push(Factor {
                        sign: 1.0,
                        s: eye.unsqueeze(0)?.broadcast_as((n, o, o))?.contiguous()?,
                    });
                }
                Ok(Flow { g, dg, factors })
            }
        }
    }

    // ----- backward -----

    fn backward(&mut self, steps: &[Step<'_>], mut flow: Flow) -> Result<Option<Flow>> {
        for step in steps.iter().rev() {
            let next = match step {
                Step::One(rec) => self.back(rec, flow)?,
                Step::Block {
                    main,
                    skip,
                    live_in,
                } => {
                    let shared = flow.factors.len();
                    let copy = flow.clone();
                    let from_main = self.backward(main, copy)?;
                    let from_skip = if skip.is_empty() {
                        Some(flow)
                    } else {
                        self.backward(skip, flow)?
                    };
                    if *live_in {
                        match (from_main, from_skip) {
                            (Some(a), Some(b)) => Some(a.add(b, shared)?),
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

    fn back(&mut self, rec: &Rec<'_>, flow: Flow) -> Result<Option<Flow>> {
        match rec {
            Rec::Linear {
                layer,
                w,
                x,
                dx,
                live_in,
            } => self.back_linear(layer, w, x, dx.as_ref(), *live_in, flow),
            Rec::Conv {
                layer,
                w,
                x,
                dx,
                live_in,
            } => self.back_conv(layer, w, x, dx.as_ref(), *live_in, flow),
            Rec::Norm {
                layer,
                xhat,
                r,
                scale,
                dx,
                live_in,
            } => self.back_norm(layer, xhat, r, scale, dx.as_ref(), *live_in, flow),
            Rec::Act { d1, d2, dz } => {
                let g = match &flow.g {
                    Some(g) => Some(g.mul(d1)?),
                    None => None,
                };
                let mut dg = match &flow.dg {
                    Some(d) => Some(d.broadcast_mul(d1)?),
                    None => None,
                };
                if self.residual()
                    && let (Some(g), Some(d2), Some(dz)) = (&flow.g, d2, dz)
                {
                    dg = Some(add_opt(dg, dz.broadcast_mul(&g.mul(d2)?)?)?);
                }
                let d1c = d1.unsqueeze(1)?;
                let mut factors = flow
                    .factors
                    .iter()
                    .map(|f| {
                        Ok(Factor {
                            sign: f.sign,
                            s: f.s.broadcast_mul(&d1c)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                if self.product == Product::Diagonal
                    && self.diag_residuals
                    && let (Some(g), Some(d2)) = (&flow.g, d2)
                {
                    factors.extend(residual_factors(&g.mul(d2)?)?);
                }
                Ok(Some(Flow { g, dg, factors }))
            }
            Rec::MaxPool { mask } => {
                let per_column = mask.unsqueeze(1)?;
                let mut out = Flow {
                    factors: Vec::new(),
                    ..flow.clone()
                }
                .map(|t| Ok(up2(t)?.broadcast_mul(mask)?))?;
                out.factors = flow
                    .factors
                    .iter()
                    .map(|f| {
                        Ok(Factor {
                            sign: f.sign,
                            s: up2(&f.s)?.broadcast_mul(&per_column)?,
                        })
                    })
                    .collect::<Result<_>>()?;
                Ok(Some(out))
            }
            Rec::Flatten { dims } => Ok(Some(Flow {
                factors: flow
                    .factors
                    .iter()
                    .map(|f| {
                        let mut s = vec![dims[0], f.s.dim(1)?];
                        s.extend_from_slice(&dims[1..]);
                        Ok(Factor {
                            sign: f.sign,
                            s: f.s.reshape(s)?,
                        })
                    })
                    .collect::<Result<_>>()?,
                g: match &flow.g {
                    Some(g) => Some(g.reshape(dims.as_slice())?),
                    None => None,
                },
                dg: match &flow.dg {
                    Some(d) => {
                        let mut s = vec![self.k];
                        s.extend_from_slice(dims);
                        Some(d.reshape(s)?)
                    }
                    None => None,
                },
            })),
            Rec::AvgPool { dims } => {
                let (h, w) = (dims[2], dims[3]);
                let area = (h * w) as f64;
                Ok(Some(flow.map(|t| {
                    let mut d = t.dims().to_vec();
                    d.extend([1, 1]);
                    let mut b = t.dims().to_vec();
                    b.extend([h, w]);
                    Ok(t.reshape(d)?.broadcast_as(b)?.affine(1.0 / area, 0.0)?)
                })?))
            }
        }
    }

    fn back_linear(
        &mut self,
        layer: &Linear,
        w: &Tensor,
        x: &Tensor,
        dx: Option<&Tensor>,
        live_in: bool,
        flow: Flow,
    ) -> Result<Option<Flow>> {
        let (w_slot, b_slot) = (self.slot(&layer.weight), self.slot_opt(&layer.bias));
        let (n, inp) = x.dims2()?;
        let out = w.dim(0)?;
        let k = self.k;
        if let Some(g) = &flow.g {
            self.add_grad(w_slot, || Ok(g.t()?.matmul(x)?))?;
            self.add_grad(b_slot, || Ok(g.sum(0)?))?;
        }
        if !flow.factors.is_empty() {
            // Σ_n Σ_c S[n,c,o]² x[n,j]² and Σ_n Σ_c S[n,c,o]².
            let x2 = x.sqr()?;
            self.add_diag(w_slot, &flow.factors, |s| {
                Ok(s.sqr()?.sum(1)?.t()?.matmul(&x2)?)
            })?;
            self.add_diag(b_slot, &flow.factors, |s| Ok(s.sqr()?.sum((0, 1))?))?;
        }
        if let Some(dg) = &flow.dg {
            if w_slot.is_some() {
                // ġ_iᵀ x for every direction: one product over N.
                let mut t = dg
                    .transpose(0, 1)?
                    .reshape((n, k * out))?
                    .t()?
                    .matmul(x)?
                    .reshape((k, out, inp))?;
                if self.residual()
                    && let (Some(g), Some(dx)) = (&flow.g, dx)
                {
                    let gx = g
                        .t()?
                        .matmul(&dx.transpose(0, 1)?.reshape((n, k * inp))?)?
                        .reshape((out, k, inp))?
                        .transpose(0, 1)?;
                    t = t.add(&gx)?;
                }
                self.add_prod(w_slot, t)?;
            }
            if b_slot.is_some() {
                self.add_prod(b_slot, dg.sum(1)?)?;
            }
        }
        if !live_in {
            return Ok(None);
        }
        let g_x = match &flow.g {
            Some(g) => Some(g.matmul(w)?),
            None => None,
        };
        let mut dg_x = match &flow.dg {
            Some(dg) => Some(dg.reshape((k * n, out))?.matmul(w)?.reshape((k, n, inp))?),
            None => None,
        };
        if self.residual()
            && let (Some(g), Some(vw)) = (&flow.g, self.dir(&layer.weight))
        {
            let t = g
                .matmul(&vw.transpose(0, 1)?.reshape((out, k * inp))?)?
                .reshape((n, k, inp))?
                .transpose(0, 1)?;
            dg_x = Some(add_opt(dg_x, t)?);
        }
        let factors = Self::map_factors(&flow.factors, |s| Ok(s.matmul(w)?))?;
        Ok(Some(Flow {
            g: g_x,
            dg: dg_x,
            factors,
        }))
    }

    fn back_conv(
        &mut self,
        layer: &Conv2d,
        w: &Tensor,
        x: &Tensor,
        dx: Option<&Tensor>,
        live_in: bool,
        flow: Flow,
    ) -> Result<Option<Flow>> {
        let (w_slot, b_slot) = (self.slot(&layer.weight), self.slot_opt(&layer.bias));
        let geom = Geom::new(w.dims(), x.dims(), layer.padding, layer.stride);
        let (n, out, q, k) = (x.dim(0)?, w.dim(0)?, geom.patch(), self.k);
        let rows_np = n * geom.positions();
        let wm = geom.kernel_rows(w)?;
        // The patches of x, rebuilt here rather than kept from the forward pass (memory).
        let need_cols =
            w_slot.is_some() && (flow.g.is_some() || flow.dg.is_some() || !flow.factors.is_empty());
        let cols = if need_cols {
            Some(geom.im2col(x)?)
        } else {
            None
        };
        let g_rows = match &flow.g {
            Some(g) => Some(geom.rows_of(g)?),
            None => None,
        };
        if let Some(cols) = &cols {
            if !flow.factors.is_empty() {
                // Per row and column the kernel gradient S_ncᵀ cols(x_n), squared and summed: one
                // batched product over the rows.
                let cols_n = cols.reshape((n, geom.positions(), q))?;
                let per_row = |s: &Tensor| -> Result<Tensor> {
                    let c = s.dim(1)?;
                    let sm = s.reshape((n, c * out, geom.positions()))?;
                    Ok(sm
                        .matmul(&cols_n)?
                        .sqr()?
                        .reshape((n * c, out, q))?
                        .sum(0)?)
                    .and_then(|m| geom.kernel_unrows(&m))
                };
                self.add_diag(w_slot, &flow.factors, per_row)?;
            }
            if let Some(gr) = &g_rows {
                self.add_grad(w_slot, || geom.kernel_unrows(&gr.t()?.matmul(cols)?))?;
            }
        }
        if !flow.factors.is_empty() {
            self.add_diag(b_slot, &flow.factors, |s| {
                Ok(s.sum((3, 4))?.sqr()?.sum((0, 1))?)
            })?;
        }
        if let Some(g) = &flow.g {
            self.add_grad(b_slot, || sum_but(g, &[1]))?;
        }
        if let Some(dg) = &flow.dg {
            if let Some(cols) = &cols {
                // ġ_iᵀ cols(x) for every direction: one product over N·P.
                let dgm = dg.permute((0, 2, 1, 3, 4))?.reshape((k * out, rows_np))?;
                let mut t = geom.kernel_unrows(&dgm.matmul(cols)?.reshape((k, out, q))?)?;
                if self.residual()
                    && let (Some(gr), Some(dx)) = (&g_rows, dx)
                {
                    let dcols = geom.im2col(&merge(dx)?)?.reshape((k, rows_np, q))?;
                    let gx = gr.t()?.unsqueeze(0)?.broadcast_matmul(&dcols)?;
                    let gx = geom.kernel_unrows(&gx)?;
                    t = t.add(&gx)?;
                }
                self.add_prod(w_slot, t)?;
            }
            if b_slot.is_some() {
                self.add_prod(b_slot, sum_but(dg, &[0, 2])?)?;
            }
        }
        if !live_in {
            return Ok(None);
        }
        let g_x = match &g_rows {
            Some(gr) => Some(geom.col2im(&gr.matmul(&wm)?, n)?),
            None => None,
        };
        let mut dg_x = match &flow.dg {
            Some(dg) => Some(unmerge(
                &geom.col2im(&geom.rows_of(&merge(dg)?)?.matmul(&wm)?, k * n)?,
                k,
            )?),
            None => None,
        };
        if self.residual()
            && let (Some(gr), Some(vw)) = (&g_rows, self.dir(&layer.weight))
        {
            let vm = geom
                .kernel_rows(vw)?
                .transpose(0, 1)?
                .reshape((out, k * q))?;
            let t = gr
                .matmul(&vm)?
                .reshape((rows_np, k, q))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((k * rows_np, q))?;
            dg_x = Some(add_opt(dg_x, unmerge(&geom.col2im(&t, k * n)?, k)?)?);
        }
        let factors = Self::map_factors(&flow.factors, |s| {
            let b = s.dim(0)?;
            geom.col2im(&geom.rows_of(s)?.matmul(&wm)?, b)
        })?;
        Ok(Some(Flow {
            g: g_x,
            dg: dg_x,
            factors,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn back_norm(
        &mut self,
        layer: &BatchNorm,
        xhat: &Tensor,
        r: &Tensor,
        scale: &Tensor,
        dx: Option<&Tensor>,
        live_in: bool,
        flow: Flow,
    ) -> Result<Option<Flow>> {
        let (gamma_slot, beta_slot) = (self.slot(&layer.weight), self.slot(&layer.bias));
        let rank = xhat.rank() + 1;
        if let Some(g) = &flow.g {
            self.add_grad(gamma_slot, || sum_but(&g.mul(xhat)?, &[1]))?;
            self.add_grad(beta_slot, || sum_but(g, &[1]))?;
        }
        if !flow.factors.is_empty() {
            let xh = xhat.unsqueeze(1)?;
            self.add_diag(gamma_slot, &flow.factors, |s| {
                Ok(sum_but(&s.broadcast_mul(&xh)?, &[0, 1, 2])?
                    .sqr()?
                    .sum((0, 1))?)
            })?;
            self.add_diag(beta_slot, &flow.factors, |s| {
                Ok(sum_but(s, &[0, 1, 2])?.sqr()?.sum((0, 1))?)
            })?;
        }
        if let Some(dg) = &flow.dg {
            if gamma_slot.is_some() {
                let mut t = sum_but(&dg.broadcast_mul(xhat)?, &[0, 2])?;
                if self.residual()
                    && let (Some(g), Some(dx)) = (&flow.g, dx)
                {
                    t = t.add(&sum_but(&dx.broadcast_mul(&g.broadcast_mul(r)?)?, &[0, 2])?)?;
                }
                self.add_prod(gamma_slot, t)?;
            }
            if beta_slot.is_some() {
                self.add_prod(beta_slot, sum_but(dg, &[0, 2])?)?;
            }
        }
        if !live_in {
            return Ok(None);
        }
        let g_x = match &flow.g {
            Some(g) => Some(g.broadcast_mul(scale)?),
            None => None,
        };
        let mut dg_x = match &flow.dg {
            Some(dg) => Some(dg.broadcast_mul(scale)?),
            None => None,
        };
        if self.residual()
            && let (Some(g), Some(vg)) = (&flow.g, self.dir(&layer.weight))
        {
            let t = g
                .broadcast_mul(r)?
                .unsqueeze(0)?
                .broadcast_mul(&dir_channels(vg, rank)?)?;
            dg_x = Some(add_opt(dg_x, t)?);
        }
        let factors = Self::map_factors(&flow.factors, |s| Ok(s.broadcast_mul(scale)?))?;
        Ok(Some(Flow {
            g: g_x,
            dg: dg_x,
            factors,
        }))
    }
}

/// The residual term `diag(m)` of an elementwise node, `m = g ⊙ φ''(z)` `[N, feat...]`, as two
/// signed factors `diag(√m⁺)` and `−diag(√m⁻)`, each `[N, F, feat...]` (`F` the features per row).
fn residual_factors(m: &Tensor) -> Result<Vec<Factor>> {
    let dims = m.dims().to_vec();
    let n = dims[0];
    let f: usize = dims[1..].iter().product();
    check_residual_factor(n, f)?;
    let eye = Tensor::eye(f, m.dtype(), m.device())?;
    let mut eye_shape = vec![1, f];
    eye_shape.extend_from_slice(&dims[1..]);
    let eye = eye.reshape(eye_shape)?;
    let mut row_shape = vec![n, 1];
    row_shape.extend_from_slice(&dims[1..]);
    [(1.0, m.relu()?), (-1.0, m.neg()?.relu()?)]
        .into_iter()
        .map(|(sign, part)| {
            Ok(Factor {
                sign,
                s: eye.broadcast_mul(&part.sqrt()?.reshape(row_shape.as_slice())?)?,
            })
        })
        .collect()
}

/// [`MAX_RESIDUAL_FACTOR`] on a smooth activation's residual factor over `n` rows of `f` features
/// (both sweeps: the same limit and message whether or not the factor is materialised).
pub(super) fn check_residual_factor(n: usize, f: usize) -> Result<()> {
    if n.saturating_mul(f).saturating_mul(f) > MAX_RESIDUAL_FACTOR {
        return Err(Error::Unsupported {
            method: "the exact diagonal in one sweep".into(),
            what: format!(
                "a smooth activation on {f} features per row: its residual factor would hold \
                 {n}×{f}×{f} values; use a smaller batch, ReLU, or the diagonal by products"
            ),
        });
    }
    Ok(())
}

/// `φ'(z)` alone, from the input `z` and output `a = φ(z)` (cheaper than [`derivatives`] where the
/// output gives it away).
fn first_derivative(act: Activation, z: &Tensor, a: &Tensor) -> Result<Tensor> {
    Ok(match act {
        Activation::Relu => z.ge(&z.zeros_like()?)?.to_dtype(z.dtype())?,
        Activation::Tanh => a.sqr()?.affine(-1.0, 1.0)?,
        Activation::Sigmoid => a.mul(&a.affine(-1.0, 1.0)?)?,
        other => derivatives(other, z)?.0,
    })
}

/// One sweep over all the request's batches on candle tensors (see [`super::run`]).
pub(super) fn run(problem: &Request<'_>, product: Product, dirs: &[Tensor]) -> Result<Output> {
    let dirs: Vec<Vec<Tensor>> = dirs
        .iter()
        .map(|v| split_blocks(v, problem.shapes))
        .collect::<Result<_>>()?;
    let model = problem.model;
    let k = if matches!(
        product,
        Product::Loss | Product::Gradient | Product::Diagonal
    ) {
        0
    } else {
        dirs.len()
    };
    let slots: HashMap<TensorId, usize> = problem
        .selected
        .iter()
        .enumerate()
        .map(|(j, &i)| (model.params()[i].var.as_tensor().id(), j))
        .collect();
    let p = problem.selected.len();
    let stacked: Vec<Option<Tensor>> = if k == 0 {
        vec![None; p]
    } else {
        (0..p)
            .map(|j| {
                let parts: Vec<&Tensor> = dirs.iter().map(|d| &d[j]).collect();
                Ok(Some(Tensor::stack(&parts, 0)?))
            })
            .collect::<Result<_>>()?
    };
    let mut sweep = Sweep {
        product,
        k,
        slots,
        dirs: stacked,
        grad: vec![None; p],
        prod: vec![None; p],
        diag: vec![None; p],
        diag_residuals: problem.curvature == Curvature::Hessian,
    };
    let weight = 1.0 / problem.rows as f64;
    let mut total = 0.0;
    for (bi, batch) in problem.batches.iter().enumerate() {
        total += batch_pass(&mut sweep, model.network(), batch, problem.loss, weight, bi)?;
    }
    let shapes = problem.shapes;
    let zeros = |shape: Vec<usize>| -> Result<Tensor> {
        Ok(Tensor::zeros(shape, model.dtype(), model.device())?)
    };
    let grad = if matches!(product, Product::Loss | Product::GaussNewton) {
        None
    } else {
        let blocks: Vec<Tensor> = sweep
            .grad
            .into_iter()
            .zip(shapes)
            .map(|(g, s)| g.map_or_else(|| zeros(s.clone()), Ok))
            .collect::<Result<_>>()?;
        Some(flatten_blocks(&blocks)?)
    };
    let mut blocks: Vec<Vec<Tensor>> = vec![Vec::with_capacity(p); k];
    for (acc, s) in sweep.prod.into_iter().zip(shapes) {
        for (i, out) in blocks.iter_mut().enumerate() {
            out.push(match &acc {
                Some(a) => a.get(i)?,
                None => zeros(s.clone())?,
            });
        }
    }
    let products = blocks
        .iter()
        .map(|b| flatten_blocks(b))
        .collect::<Result<_>>()?;
    let diagonal = if product == Product::Diagonal {
        sweep
            .diag
            .into_iter()
            .zip(shapes)
            .map(|(d, s)| d.map_or_else(|| zeros(s.clone()), Ok))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    Ok(Output {
        loss: total,
        grad,
        products,
        diagonal,
    })
}

fn batch_pass(
    sweep: &mut Sweep,
    net: &Network,
    batch: &Batch,
    kind: LossKind,
    weight: f64,
    bi: usize,
) -> Result<f64> {
    let mut live = false;
    let (steps, z, dz) = sweep.layers(&net.layers, batch.x.clone(), None, &mut live)?;
    let l = loss::mean(&z, &batch.y, kind)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        * batch.len() as f64
        * weight;
    if !l.is_finite() {
        return Err(Error::NonFiniteLoss {
            context: "hand-written sweep".into(),
            batch: bi,
            value: l,
        });
    }
    if sweep.product == Product::Loss {
        return Ok(l);
    }
    // No tangent at the logits (no direction, or none reaching them): the products are zero.
    let flow = sweep.loss(&z, dz.as_ref(), &batch.y, kind, weight)?;
    sweep.backward(&steps, flow)?;
    Ok(l)
}
