//! Per-sample derivatives of the loss with respect to the input features: first, second and third
//! diagonal derivatives `∂ℓ_n/∂x_{n,i}`, `∂²ℓ_n/∂x_{n,i}²`, `∂³ℓ_n/∂x_{n,i}³` (Faroz 2024's
//! sensitivity analysis uses them).
//!
//! Rows are independent (BatchNorm runs in evaluation mode), so one backward pass of `Σ_n ℓ_n`
//! yields every row's gradient; each further order costs one backward pass per feature. The
//! cost is `1 + (order − 1)·d` backward passes per batch for `d` features.

use candle_core::{DType, Device, Tensor, Var};
use terrain_model::{
    Model,
    data::{Dataset, Targets},
    loss::{self, LossKind},
};

use crate::{Error, Result};

/// Settings of [`input_derivatives`].
#[derive(Debug, Clone)]
pub struct InputDerivativeConfig {
    /// The loss differentiated.
    pub loss: LossKind,
    /// Highest order: 1, 2 or 3.
    pub order: usize,
    /// Rows per batch.
    pub batch_size: usize,
    /// Flat feature indices to differentiate along (`None`: all features). First derivatives are
    /// always computed for every feature; the selection limits the costly higher orders.
    pub features: Option<Vec<usize>>,
}

impl InputDerivativeConfig {
    /// All three orders for every feature, batch 256.
    pub fn new(loss: LossKind) -> Self {
        InputDerivativeConfig {
            loss,
            order: 3,
            batch_size: 256,
            features: None,
        }
    }

    /// Checks the settings against `features` input features.
    pub fn check(&self, features: usize) -> Result<()> {
        if !(1..=3).contains(&self.order) {
            return Err(Error::config("order", self.order, "must be 1, 2 or 3"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be at least 1"));
        }
        if let Some(f) = &self.features {
            if f.is_empty() {
                return Err(Error::config(
                    "features",
                    "[]",
                    "select at least one feature",
                ));
            }
            if let Some(&bad) = f.iter().find(|&&i| i >= features) {
                return Err(Error::config(
                    "features",
                    bad,
                    format!("the data has {features} input features (0..{features})"),
                ));
            }
        }
        Ok(())
    }
}

/// Per-sample input derivatives of the loss, f64 on the CPU.
#[derive(Debug, Clone)]
pub struct InputDerivatives {
    /// `∂ℓ_n/∂x_{n,i}`, `[N, D]` over all `D` features.
    pub d1: Tensor,
    /// `∂²ℓ_n/∂x_{n,i}²`, `[N, F]` over the selected features (order ≥ 2).
    pub d2: Option<Tensor>,
    /// `∂³ℓ_n/∂x_{n,i}³`, `[N, F]` over the selected features (order 3).
    pub d3: Option<Tensor>,
    /// The flat indices of the `F` selected features.
    pub features: Vec<usize>,
}

/// Computes per-sample input derivatives of the loss of `model` on every row of `data`.
///
/// ```
/// use terrain_curvature::input::{InputDerivativeConfig, input_derivatives};
/// use terrain_model::{Model, data, loss::LossKind};
/// use candle_core::{DType, Device};
///
/// # fn main() -> terrain_curvature::Result<()> {
/// terrain_model::autodiff::ensure_second_order()?;
/// let iris = data::builtin::load("iris")?;
/// let model = Model::new("mlp:4-8-3:tanh".parse()?, DType::F64, &Device::Cpu, 0)?;
/// let d = input_derivatives(&model, &iris, &InputDerivativeConfig::new(LossKind::Ce))?;
/// assert_eq!(d.d3.unwrap().dims(), &[150, 4]);
/// # Ok(())
/// # }
/// ```
pub fn input_derivatives(
    model: &Model,
    data: &Dataset,
    config: &InputDerivativeConfig,
) -> Result<InputDerivatives> {
    if data.is_empty() {
        return Err(terrain_model::Error::EmptyDataset {
            name: data.name.clone(),
        }
        .into());
    }
    loss::check_fits(model, data)?;
    input_derivatives_at(model, &data.x, &data.y, config)
}

/// Per-sample input derivatives at explicit inputs `x` `[N, ...]` (any float dtype; converted to
/// the model's) with targets `y`: [`input_derivatives`] without a [`Dataset`], e.g. at perturbed
/// or f64 inputs.
pub fn input_derivatives_at(
    model: &Model,
    x: &Tensor,
    y: &Targets,
    config: &InputDerivativeConfig,
) -> Result<InputDerivatives> {
    terrain_model::autodiff::ensure_second_order()?;
    let rows = x.dims().first().copied().unwrap_or(0);
    if rows == 0 || y.len() != rows {
        return Err(Error::config(
            "inputs",
            format!("{rows} rows, {} targets", y.len()),
            "need at least one row and one target per row",
        ));
    }
    let d: usize = x.dims()[1..].iter().product();
    config.check(d)?;
    let features = config.features.clone().unwrap_or_else(|| (0..d).collect());
    let (mut d1, mut d2, mut d3) = (Vec::new(), Vec::new(), Vec::new());
    for (bi, start) in (0..rows).step_by(config.batch_size).enumerate() {
        let n = config.batch_size.min(rows - start);
        let xb = x
            .narrow(0, start, n)?
            .reshape((n, d))?
            .to_dtype(model.dtype())?
            .to_device(model.device())?;
        let xv = Var::from_tensor(&xb)?;
        let yb = y
            .map(|t| t.narrow(0, start, n))?
            .to_device(model.device())?;
        let out = model.forward_t(xv.as_tensor(), false)?;
        let total = loss::per_sample(&out, &yb, config.loss)?.sum_all()?;
        let value = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss {
                context: "input derivatives".into(),
                batch: bi,
                value,
            });
        }
        let g = grad_wrt(&total, &xv, "first")?;
        d1.push(to_cpu_f64(&g.detach())?);
        if config.order >= 2 {
            let (mut cols2, mut cols3) = (Vec::new(), Vec::new());
            for &i in &features {
                let h = grad_wrt(&g.narrow(1, i, 1)?.sum_all()?, &xv, "second")?;
                let hii = h.narrow(1, i, 1)?;
                if config.order >= 3 {
                    let t = grad_wrt(&hii.sum_all()?, &xv, "third")?;
                    cols3.push(t.narrow(1, i, 1)?.detach());
                }
                cols2.push(hii.detach());
            }
            d2.push(to_cpu_f64(&Tensor::cat(&cols2, 1)?)?);
            if config.order >= 3 {
                d3.push(to_cpu_f64(&Tensor::cat(&cols3, 1)?)?);
            }
        }
    }
    let cat = |parts: Vec<Tensor>| -> Result<Option<Tensor>> {
        if parts.is_empty() {
            Ok(None)
        } else {
            Ok(Some(Tensor::cat(&parts, 0)?))
        }
    };
    let result = InputDerivatives {
        d1: cat(d1)?.expect("at least one row"),
        d2: cat(d2)?,
        d3: cat(d3)?,
        features,
    };
    for (name, t) in [
        ("d1", Some(&result.d1)),
        ("d2", result.d2.as_ref()),
        ("d3", result.d3.as_ref()),
    ] {
        if let Some(t) = t {
            let s = t.sum_all()?.to_scalar::<f64>()?;
            if !s.is_finite() {
                return Err(Error::NonFinite {
                    context: "input derivatives".into(),
                    name: name.into(),
                    value: s,
                });
            }
        }
    }
    Ok(result)
}

/// Gradient of scalar `y` with respect to `x`, attached; missing means an op without (higher) derivative.
fn grad_wrt(y: &Tensor, x: &Var, order: &'static str) -> Result<Tensor> {
    let store = y.backward()?;
    match store.get(x.as_tensor()) {
        Some(g) => Ok(g.clone()),
        // Derivatives of order ≥ 2 may legitimately vanish (piecewise-linear nets): zeros.
        None if order != "first" => Ok(x.zeros_like()?),
        None => Err(Error::NoDerivative {
            order,
            names: "the input".into(),
        }),
    }
}

fn to_cpu_f64(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F64)?.to_device(&Device::Cpu)?)
}
