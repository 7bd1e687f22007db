//! [`HessianOperator`]: exact Hessian-vector products of a model's loss over a data set (by
//! terrain-model's differentiation engine, [`terrain_model::engine`], or by double backward:
//! [`HvpMethod`]), a
//! Gauss–Newton product, and a finite-difference product used as a test oracle.
//!
//! The loss is the mean over all rows of the data (the same number whatever the batch size);
//! products are summed over batches, and each batch's autodiff graph is dropped before the next
//! batch is touched. BatchNorm layers run in evaluation mode (running statistics), as in PyHessian.

use candle_core::{DType, Device, Tensor, Var};
use terrain_model::{
    Model,
    data::{Batch, Dataset},
    engine::{self, Backend, Product, Request},
    loss::{self, LossKind},
};

use crate::{Error, LinearOperator, Result, vector};

pub use terrain_model::engine::Curvature;

/// How [`HessianOperator`] computes its products and the gradient.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum HvpMethod {
    /// The differentiation engine ([`terrain_model::engine`]): Pearlmutter's
    /// R-operator for Hessian products, the same sweep for the gradient and Gauss–Newton products,
    /// and one forward pass per batch shared by several vectors ([`LinearOperator::apply_many`]).
    #[default]
    Rop,
    /// candle autodiff: double backward for Hessian products, the double-VJP trick for
    /// Gauss–Newton products, one backward pass for the gradient. The generic fallback and the
    /// tests' oracle.
    DoubleBackward,
}

impl std::fmt::Display for HvpMethod {
    /// `rop` or `double-backward`, which parse back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HvpMethod::Rop => "rop",
            HvpMethod::DoubleBackward => "double-backward",
        })
    }
}

impl std::str::FromStr for HvpMethod {
    type Err = Error;

    /// `rop` (also `r-op`, `pearlmutter`) or `double-backward` (also `autodiff`).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rop" | "r-op" | "pearlmutter" => Ok(HvpMethod::Rop),
            "double-backward" | "autodiff" => Ok(HvpMethod::DoubleBackward),
            _ => Err(Error::config("hvp", s, "expected rop or double-backward")),
        }
    }
}

/// Selects parameters by name. A pattern matches a name when it is equal to it, when it is a
/// dotted prefix of it (`layer1` matches `layer1.0.conv1.weight`), or as a glob where `*` stands
/// for any run of characters (`*.weight`, `0.*`). An empty filter selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ParamFilter {
    patterns: Vec<String>,
}

impl ParamFilter {
    /// Selects every parameter.
    pub fn all() -> Self {
        Self::default()
    }

    /// Selects the parameters matching any of `patterns`.
    pub fn new<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        ParamFilter {
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }

    /// The patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.is_empty()
            || self
                .patterns
                .iter()
                .any(|p| glob(p, name) || glob(&format!("{p}.*"), name))
    }

    /// Indices of the selected names; a pattern that selects nothing is an error naming it.
    pub fn select(&self, names: &[String]) -> Result<Vec<usize>> {
        for p in &self.patterns {
            if !names
                .iter()
                .any(|n| glob(p, n) || glob(&format!("{p}.*"), n))
            {
                return Err(Error::NoParameterMatches {
                    pattern: p.clone(),
                    available: terrain_model::error::name_list(names),
                });
            }
        }
        Ok((0..names.len())
            .filter(|&i| self.matches(&names[i]))
            .collect())
    }
}

/// `*`-glob match of a whole string.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Settings of a [`HessianOperator`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HessianConfig {
    /// The loss whose curvature is measured.
    pub loss: LossKind,
    /// Rows per batch (products are summed over batches; memory grows with this).
    pub batch_size: usize,
    /// Use only a random `samples`-row subset of the data, stratified by class and drawn from
    /// `sample_seed` (`None`: all rows).
    pub samples: Option<usize>,
    /// Seed of the `samples` subset.
    pub sample_seed: u64,
    /// Which parameters span the space (a block of the Hessian).
    pub filter: ParamFilter,
    /// Exact Hessian or Gauss–Newton.
    pub curvature: Curvature,
    /// How products and the gradient are computed (default: the R-op sweep).
    #[serde(default)]
    pub hvp: HvpMethod,
}

impl HessianConfig {
    /// Defaults for `loss`: batch 256, all rows, all parameters, exact Hessian.
    pub fn new(loss: LossKind) -> Self {
        HessianConfig {
            loss,
            batch_size: 256,
            samples: None,
            sample_seed: 0,
            filter: ParamFilter::all(),
            curvature: Curvature::Hessian,
            hvp: HvpMethod::Rop,
        }
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be at least 1"));
        }
        if self.samples == Some(0) {
            return Err(Error::config("samples", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// The Hessian (or Gauss–Newton matrix) of a model's mean loss over a data set, as a matrix-free
/// operator on the selected parameters (flattened in model order).
///
/// ```
/// use terrain_curvature::{HessianConfig, HessianOperator, LinearOperator};
/// use terrain_model::{Model, data, loss::LossKind};
/// use candle_core::{DType, Device};
///
/// # fn main() -> terrain_curvature::Result<()> {
/// terrain_model::autodiff::ensure_second_order()?;
/// let data = data::builtin::load("iris")?;
/// let model = Model::new("mlp:4-8-3:tanh".parse()?, DType::F64, &Device::Cpu, 0)?;
/// let h = HessianOperator::new(&model, &data, HessianConfig::new(LossKind::Ce))?;
/// let v = terrain_curvature::vector::random(h.dim(), terrain_curvature::vector::Probe::Rademacher, 0, h.dtype(), h.device())?;
/// let hv = h.apply(&v)?;
/// assert_eq!(hv.dims(), &[h.dim()]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct HessianOperator<'m> {
    model: &'m Model,
    batches: Vec<Batch>,
    rows: usize,
    loss: LossKind,
    curvature: Curvature,
    hvp: HvpMethod,
    backend: Backend,
    selected: Vec<usize>,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    dim: usize,
}

impl<'m> HessianOperator<'m> {
    /// Builds the operator: checks the data against the model, the filter and, where products
    /// run by candle's double backward ([`HvpMethod::DoubleBackward`]), the second-order
    /// autodiff flag; moves the batches to the model's device and dtype once.
    pub fn new(model: &'m Model, data: &Dataset, config: HessianConfig) -> Result<Self> {
        config.check()?;
        if config.hvp == HvpMethod::DoubleBackward {
            terrain_model::autodiff::ensure_second_order()?;
        }
        loss::check_fits(model, data)?;
        let data = match config.samples {
            Some(n) if n < data.len() => data.sample_rows(n, config.sample_seed)?,
            _ => data.clone(),
        };
        if data.is_empty() {
            return Err(terrain_model::Error::EmptyDataset {
                name: data.name.clone(),
            }
            .into());
        }
        let all_names: Vec<String> = model.params().iter().map(|p| p.name.clone()).collect();
        let selected = config.filter.select(&all_names)?;
        let names: Vec<String> = selected.iter().map(|&i| all_names[i].clone()).collect();
        let shapes: Vec<Vec<usize>> = selected
            .iter()
            .map(|&i| model.params()[i].var.dims().to_vec())
            .collect();
        let dim = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
        let mut batches = Vec::new();
        for b in data.batches(config.batch_size, None, false)? {
            let b = b?;
            batches.push(Batch {
                x: model.prepare_input(&b.x)?,
                y: b.y.to_device(model.device())?.to_dtype(model.dtype())?,
            });
        }
        Ok(HessianOperator {
            model,
            batches,
            rows: data.len(),
            loss: config.loss,
            curvature: config.curvature,
            hvp: config.hvp,
            backend: Backend::Auto,
            selected,
            names,
            shapes,
            dim,
        })
    }

    /// The same operator with the engine's sweeps ([`HvpMethod::Rop`]) run on `backend`
    /// (default [`Backend::Auto`]: host buffers on the CPU).
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Which backend runs the engine's sweeps.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What the engine differentiates for this operator.
    pub fn request(&self) -> Request<'_> {
        Request {
            model: self.model,
            selected: &self.selected,
            shapes: &self.shapes,
            batches: &self.batches,
            rows: self.rows,
            loss: self.loss,
            curvature: self.curvature,
            backend: self.backend,
        }
    }

    /// One engine sweep over the operator's batches.
    fn sweep(&self, product: Product, dirs: &[Tensor]) -> Result<engine::Output> {
        Ok(engine::run(&self.request(), product, dirs)?)
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// The loss kind.
    pub fn loss_kind(&self) -> LossKind {
        self.loss
    }

    /// Which curvature matrix this operator multiplies by.
    pub fn curvature(&self) -> Curvature {
        self.curvature
    }

    /// How products and the gradient are computed.
    pub fn hvp_method(&self) -> HvpMethod {
        self.hvp
    }

    /// Number of data rows the loss averages over.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The batches (inputs already shaped for the model, on its device).
    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    /// Names of the selected parameters, in the order of the flat vectors.
    pub fn param_names(&self) -> &[String] {
        &self.names
    }

    /// Shapes of the selected parameters.
    pub fn param_shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// Indices of the selected parameters in [`Model::params`].
    pub fn selected(&self) -> &[usize] {
        &self.selected
    }

    /// The selected parameters' variables.
    pub fn vars(&self) -> Vec<&'m Var> {
        self.selected
            .iter()
            .map(|&i| &self.model.params()[i].var)
            .collect()
    }

    /// For each selected parameter, `(name, offset, length)` in the flat vector.
    pub fn layout(&self) -> Vec<(String, usize, usize)> {
        let mut off = 0;
        self.names
            .iter()
            .zip(&self.shapes)
            .map(|(n, s)| {
                let len: usize = s.iter().product();
                let r = (n.clone(), off, len);
                off += len;
                r
            })
            .collect()
    }

    /// Splits a flat vector into per-parameter tensors.
    pub fn split(&self, v: &Tensor) -> Result<Vec<Tensor>> {
        self.check_vector(v, "splitting a parameter-space vector")?;
        split_blocks(v, &self.shapes)
    }

    /// Concatenates per-parameter tensors into a flat vector.
    pub fn flatten(&self, parts: &[Tensor]) -> Result<Tensor> {
        flatten_blocks(parts)
    }

    /// The current values of the selected parameters as a flat vector.
    pub fn current_params(&self) -> Result<Tensor> {
        let parts: Vec<Tensor> = self.vars().iter().map(|v| v.as_tensor().clone()).collect();
        self.flatten(&parts)
    }

    /// Weight of batch `b`'s mean loss in the full-data mean.
    fn batch_weight(&self, b: &Batch) -> f64 {
        b.len() as f64 / self.rows as f64
    }

    /// The weighted mean loss of batch `bi` (attached to the graph), checked to be finite.
    fn batch_loss(&self, bi: usize, context: &str) -> Result<Tensor> {
        let b = &self.batches[bi];
        let out = self.model.forward_t(&b.x, false)?;
        let l = loss::mean(&out, &b.y, self.loss)?.affine(self.batch_weight(b), 0.0)?;
        let value = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss {
                context: context.to_string(),
                batch: bi,
                value,
            });
        }
        Ok(l)
    }

    /// First derivatives of `l` with respect to the selected parameters, attached to the graph.
    fn attached_grads(&self, l: &Tensor) -> Result<Vec<Tensor>> {
        attached_grads(l, &self.vars(), &self.names)
    }

    /// The mean loss over the data and its gradient (flat), batch by batch: by the hand-written
    /// backward sweep ([`HvpMethod::Rop`]) or candle autodiff ([`HvpMethod::DoubleBackward`]).
    pub fn loss_and_gradient(&self) -> Result<(f64, Tensor)> {
        if self.hvp == HvpMethod::Rop {
            let out = self.sweep(Product::Gradient, &[])?;
            return Ok((out.loss, out.gradient()?));
        }
        let mut total = 0.0;
        let mut acc: Option<Vec<Tensor>> = None;
        for bi in 0..self.batches.len() {
            let l = self.batch_loss(bi, "gradient")?;
            total += l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let g: Vec<Tensor> = self
                .attached_grads(&l)?
                .into_iter()
                .map(|t| t.detach())
                .collect();
            acc = Some(match acc {
                None => g,
                Some(a) => a
                    .iter()
                    .zip(&g)
                    .map(|(x, y)| x.add(y))
                    .collect::<candle_core::Result<_>>()?,
            });
        }
        let g = self.flatten(&acc.unwrap_or_default())?;
        Ok((total, g))
    }

    /// The mean loss over the data (no derivatives): by the hand-written forward pass on the
    /// host where it applies ([`HvpMethod::Rop`]: the sweep's layers, no tape kept), else
    /// candle's forward pass.
    pub fn loss(&self) -> Result<f64> {
        if self.hvp == HvpMethod::Rop {
            return Ok(self.sweep(Product::Loss, &[])?.loss);
        }
        let mut total = 0.0;
        for bi in 0..self.batches.len() {
            let l = self.batch_loss(bi, "loss")?.detach();
            total += l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        Ok(total)
    }

    /// Exact Hessian-vector product by double backward, batch by batch.
    fn hvp(&self, v: &Tensor) -> Result<Tensor> {
        let vs = self.split(v)?;
        let parts = double_backward_product(
            self.batches.len(),
            |bi| self.batch_loss(bi, "Hessian-vector product"),
            &self.vars(),
            &self.names,
            &vs,
        )?;
        self.flatten(&parts)
    }

    /// Gauss–Newton product Jᵀ (∇²_z ℓ) J v, with J v computed by the double-VJP trick.
    fn ggn_vp(&self, v: &Tensor) -> Result<Tensor> {
        let vs = self.split(v)?;
        let vars = self.vars();
        let mut acc: Vec<Tensor> = Vec::with_capacity(vars.len());
        for (bi, b) in self.batches.iter().enumerate() {
            let z = self.model.forward_t(&b.x, false)?;
            let u = Var::zeros(z.dims(), z.dtype(), z.device())?;
            // a(u) = Jᵀu, linear in u and attached; d/du ⟨a(u), v⟩ = J v.
            let a = self.attached_grads(&z.mul(u.as_tensor())?.sum_all()?)?;
            let mut av: Option<Tensor> = None;
            for (ai, vi) in a.iter().zip(&vs) {
                let t = ai.mul(vi)?.sum_all()?;
                av = Some(match av {
                    None => t,
                    Some(s) => s.add(&t)?,
                });
            }
            let jv = av
                .ok_or(Error::NoDerivative {
                    order: "first",
                    names: terrain_model::error::name_list(&self.names),
                })?
                .backward()?
                .get(u.as_tensor())
                .cloned()
                .ok_or(Error::NoDerivative {
                    order: "second",
                    names: terrain_model::error::name_list(&self.names),
                })?
                .detach();
            let w = self.batch_weight(b) / b.len() as f64;
            let z_d = z.detach();
            let hjv = match self.loss {
                LossKind::Ce => {
                    let p = candle_nn::ops::softmax(&z_d, candle_core::D::Minus1)?;
                    let pj = p.mul(&jv)?;
                    let s = pj.sum_keepdim(1)?;
                    let h = pj.sub(&p.broadcast_mul(&s)?)?.affine(w, 0.0)?;
                    // Soft targets: ∇²ℓ = (Σ_k q_k)(diag p − p pᵀ).
                    match &b.y {
                        terrain_model::data::Targets::Soft(q) => {
                            h.broadcast_mul(&q.to_dtype(h.dtype())?.sum_keepdim(1)?)?
                        }
                        _ => h,
                    }
                }
                LossKind::Mse => jv.affine(2.0 * w / z.dim(1)? as f64, 0.0)?,
            };
            let out = self
                .attached_grads(&z.mul(&hjv)?.sum_all()?)?
                .into_iter()
                .map(|t| t.detach());
            for (i, t) in out.enumerate() {
                if bi == 0 {
                    acc.push(t);
                } else {
                    acc[i] = acc[i].add(&t)?;
                }
            }
        }
        self.flatten(&acc)
    }

    /// Checks a product for NaN/Inf.
    fn check_product(&self, hv: &Tensor, what: &str) -> Result<()> {
        let n = vector::dot(hv, hv)?;
        if !n.is_finite() {
            return Err(Error::NonFinite {
                context: what.to_string(),
                name: "H·v".to_string(),
                value: n,
            });
        }
        Ok(())
    }
}

impl LinearOperator for HessianOperator<'_> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn dtype(&self) -> DType {
        self.model.dtype()
    }
    fn device(&self) -> &Device {
        self.model.device()
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        let hv = match (self.hvp, self.curvature) {
            (HvpMethod::Rop, _) => return Ok(self.apply_many(std::slice::from_ref(v))?.remove(0)),
            (HvpMethod::DoubleBackward, Curvature::Hessian) => self.hvp(v)?,
            (HvpMethod::DoubleBackward, Curvature::GaussNewton) => self.ggn_vp(v)?,
        };
        self.check_product(&hv, "Hessian-vector product")?;
        Ok(hv)
    }

    /// With [`HvpMethod::Rop`], up to [`HessianOperator::MAX_SHARED`] vectors share each batch's
    /// forward pass and backward sweep.
    fn apply_many(&self, vs: &[Tensor]) -> Result<Vec<Tensor>> {
        if self.hvp != HvpMethod::Rop {
            return vs.iter().map(|v| self.apply(v)).collect();
        }
        let product = match self.curvature {
            Curvature::Hessian => Product::Hessian,
            Curvature::GaussNewton => Product::GaussNewton,
        };
        let mut out = Vec::with_capacity(vs.len());
        for chunk in vs.chunks(Self::MAX_SHARED) {
            for v in chunk {
                self.check_vector(v, "a Hessian-vector product")?;
            }
            for hv in self.sweep(product, chunk)?.products {
                self.check_product(&hv, "Hessian-vector product")?;
                out.push(hv);
            }
        }
        Ok(out)
    }
}

impl HessianOperator<'_> {
    /// The most vectors one R-op sweep carries at once (memory grows with it: each carries a
    /// tangent of every layer's activations).
    pub const MAX_SHARED: usize = 8;
}

/// A flat vector's per-parameter blocks of `shapes` (views, no copy).
pub(crate) fn split_blocks(v: &Tensor, shapes: &[Vec<usize>]) -> Result<Vec<Tensor>> {
    Ok(engine::split_blocks(v, shapes)?)
}

/// Per-parameter tensors concatenated into one flat vector.
pub(crate) fn flatten_blocks(parts: &[Tensor]) -> Result<Tensor> {
    Ok(engine::flatten_blocks(parts)?)
}

/// First derivatives of scalar `l` with respect to `vars`, attached to the graph. A variable
/// autodiff does not reach is an error naming it (an op without backward on the path).
fn attached_grads(l: &Tensor, vars: &[&Var], names: &[String]) -> Result<Vec<Tensor>> {
    let store = l.backward()?;
    let mut missing = Vec::new();
    let grads: Vec<Tensor> = vars
        .iter()
        .zip(names)
        .map(|(v, n)| match store.get(v.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => {
                missing.push(n.clone());
                Ok(v.zeros_like()?)
            }
        })
        .collect::<Result<_>>()?;
    if !missing.is_empty() {
        return Err(Error::NoDerivative {
            order: "first",
            names: terrain_model::error::name_list(&missing),
        });
    }
    Ok(grads)
}

/// `Σ_b ∇²L_b · v` by double backward, one batch at a time: each batch's graph is dropped before
/// the next is built. `batch_loss(b)` must return batch `b`'s (weighted) scalar loss. When the
/// second backward reaches none of `vars`, the graph has an op without a differentiable backward
/// (or the autodiff flag is off), which is an error rather than a silent zero.
fn double_backward_product(
    batches: usize,
    batch_loss: impl Fn(usize) -> Result<Tensor>,
    vars: &[&Var],
    names: &[String],
    v: &[Tensor],
) -> Result<Vec<Tensor>> {
    let mut acc: Vec<Tensor> = Vec::with_capacity(vars.len());
    for bi in 0..batches {
        let l = batch_loss(bi)?;
        let g = attached_grads(&l, vars, names)?;
        let mut gv: Option<Tensor> = None;
        for (gi, vi) in g.iter().zip(v) {
            let t = gi.mul(vi)?.sum_all()?;
            gv = Some(match gv {
                None => t,
                Some(s) => s.add(&t)?,
            });
        }
        let Some(gv) = gv else {
            return Err(Error::config("parameters", 0, "no parameter is selected"));
        };
        let store = gv.backward()?;
        let mut reached = false;
        for (i, var) in vars.iter().enumerate() {
            let hv = match store.get(var.as_tensor()) {
                Some(t) => {
                    reached = true;
                    t.detach()
                }
                None => var.zeros_like()?,
            };
            if bi == 0 {
                acc.push(hv);
            } else {
                acc[i] = acc[i].add(&hv)?;
            }
        }
        if !reached {
            return Err(Error::NoDerivative {
                order: "second",
                names: terrain_model::error::name_list(names),
            });
        }
    }
    Ok(acc)
}

/// The Hessian of any scalar function of candle [`Var`]s, summed over batches: for models that
/// are not terrain architectures. `loss(b)` returns batch `b`'s contribution (the products are
/// summed over `b`).
pub struct FnHessian<'f> {
    vars: Vec<Var>,
    names: Vec<String>,
    batches: usize,
    loss: Box<dyn Fn(usize) -> Result<Tensor> + 'f>,
    dim: usize,
    dtype: DType,
    device: Device,
}

impl std::fmt::Debug for FnHessian<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnHessian")
            .field("names", &self.names)
            .field("batches", &self.batches)
            .field("dim", &self.dim)
            .finish()
    }
}

impl<'f> FnHessian<'f> {
    /// Wraps named variables (all of one dtype and device) and a per-batch loss.
    pub fn new(
        vars: Vec<(String, Var)>,
        batches: usize,
        loss: impl Fn(usize) -> Result<Tensor> + 'f,
    ) -> Result<Self> {
        terrain_model::autodiff::ensure_second_order()?;
        let Some((_, first)) = vars.first() else {
            return Err(Error::config("vars", 0, "give at least one variable"));
        };
        if batches == 0 {
            return Err(Error::config("batches", 0, "must be at least 1"));
        }
        let (dtype, device) = (first.dtype(), first.device().clone());
        let dim = vars.iter().map(|(_, v)| v.elem_count()).sum();
        let (names, vars) = vars.into_iter().unzip();
        Ok(FnHessian {
            vars,
            names,
            batches,
            loss: Box::new(loss),
            dim,
            dtype,
            device,
        })
    }
}

impl LinearOperator for FnHessian<'_> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        self.check_vector(v, "Hessian-vector product")?;
        let mut off = 0;
        let vs: Vec<Tensor> = self
            .vars
            .iter()
            .map(|var| {
                let n = var.elem_count();
                let t = v.narrow(0, off, n)?.reshape(var.dims())?;
                off += n;
                Ok(t)
            })
            .collect::<Result<_>>()?;
        let vars: Vec<&Var> = self.vars.iter().collect();
        let parts = double_backward_product(
            self.batches,
            |b| {
                let l = (self.loss)(b)?;
                let value = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if !value.is_finite() {
                    return Err(Error::NonFiniteLoss {
                        context: "Hessian-vector product".into(),
                        batch: b,
                        value,
                    });
                }
                Ok(l)
            },
            &vars,
            &self.names,
            &vs,
        )?;
        let flat: Vec<Tensor> = parts
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&flat, 0)?)
    }
}

/// A central finite-difference Hessian-vector product `(∇L(θ+εv) − ∇L(θ−εv)) / 2ε`: a test oracle
/// for smooth models in f64 (useless across ReLU kinks and in f32). Restores the weights afterwards.
#[derive(Debug)]
pub struct FiniteDifferenceOperator<'a, 'm> {
    hessian: &'a HessianOperator<'m>,
    eps: f64,
}

impl<'a, 'm> FiniteDifferenceOperator<'a, 'm> {
    /// Wraps `hessian` with step `eps` (relative to ‖v‖; 1e-5 suits f64).
    pub fn new(hessian: &'a HessianOperator<'m>, eps: f64) -> Result<Self> {
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::config("eps", eps, "must be positive and finite"));
        }
        Ok(FiniteDifferenceOperator { hessian, eps })
    }

    fn gradient_at(&self, theta: &[Tensor], shift: &[Tensor], alpha: f64) -> Result<Tensor> {
        for ((var, t), s) in self.hessian.vars().iter().zip(theta).zip(shift) {
            var.set(&t.add(&s.affine(alpha, 0.0)?)?)?;
        }
        Ok(self.hessian.loss_and_gradient()?.1)
    }
}

impl LinearOperator for FiniteDifferenceOperator<'_, '_> {
    fn dim(&self) -> usize {
        self.hessian.dim()
    }
    fn dtype(&self) -> DType {
        self.hessian.dtype()
    }
    fn device(&self) -> &Device {
        self.hessian.device()
    }
    fn apply(&self, v: &Tensor) -> Result<Tensor> {
        let (v, n) = vector::normalize(v)?;
        if n == 0.0 {
            return Ok(v);
        }
        let shift = self.hessian.split(&v)?;
        let theta: Vec<Tensor> = self
            .hessian
            .vars()
            .iter()
            .map(|var| var.as_tensor().copy())
            .collect::<candle_core::Result<_>>()?;
        let plus = self.gradient_at(&theta, &shift, self.eps);
        let minus = self.gradient_at(&theta, &shift, -self.eps);
        for (var, t) in self.hessian.vars().iter().zip(&theta) {
            var.set(t)?;
        }
        Ok(plus?.sub(&minus?)?.affine(n / (2.0 * self.eps), 0.0)?)
    }
}
