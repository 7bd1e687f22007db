//! Sharpness and the basics of a trained model: loss and error, parameter and gradient norms,
//! the Hessian's top eigenvalue and trace with PyHessian's settings on a 200-row mini-batch (as
//! the MD tree measures them), and ε-sharpness, the largest loss increase within a ρ-ball
//! (one SAM-style step, and projected gradient ascent).

use serde::{Deserialize, Serialize};
use terrain_curvature::{
    HessianConfig, HessianOperator, HutchinsonConfig, PowerConfig, eigen, trace,
};
use terrain_model::{Model, data::Dataset, loss::LossKind, params::ParamVec};

use crate::{Result, surface::Evaluator};

/// Settings of [`epsilon_sharpness`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharpnessConfig {
    /// Radius of the ball (SAM's default 0.05).
    pub rho: f64,
    /// Steps of projected gradient ascent (each of length `2ρ/steps` along the normalised
    /// gradient, then projected onto the ball). Default 10.
    pub steps: usize,
    /// Rows per batch.
    pub batch_size: usize,
}

impl Default for SharpnessConfig {
    fn default() -> Self {
        SharpnessConfig {
            rho: 0.05,
            steps: 10,
            batch_size: 512,
        }
    }
}

impl SharpnessConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        terrain_model::config::positive("rho", self.rho)?;
        terrain_model::config::at_least("steps", self.steps, 1)?;
        terrain_model::config::count("steps", self.steps)?;
        terrain_model::config::at_least("batch_size", self.batch_size, 1)?;
        Ok(())
    }
}

/// ε-sharpness of a model on a data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sharpness {
    /// The ball's radius.
    pub rho: f64,
    /// The loss at the weights.
    pub loss: f64,
    /// `L(θ + ρ·g/‖g‖) − L(θ)`: one SAM-style step.
    pub one_step: f64,
    /// The largest `L(θ + δ) − L(θ)` over the iterates of projected gradient ascent with
    /// `‖δ‖ ≤ ρ` (and the one-step point).
    pub multi_step: f64,
    /// `‖δ‖` of the maximiser found.
    pub multi_step_radius: f64,
}

fn op<'m>(
    model: &'m Model,
    data: &Dataset,
    loss: LossKind,
    batch_size: usize,
) -> Result<HessianOperator<'m>> {
    Ok(HessianOperator::new(
        model,
        data,
        HessianConfig {
            batch_size,
            ..HessianConfig::new(loss)
        },
    )?)
}

/// The loss gradient at the model's current weights as a [`ParamVec`].
fn gradient(op: &HessianOperator<'_>, like: &ParamVec) -> Result<ParamVec> {
    let (_, g) = op.loss_and_gradient()?;
    Ok(ParamVec {
        names: like.names.clone(),
        tensors: op.split(&g)?,
    })
}

/// ε-sharpness of `model` on `data` (BatchNorm in eval mode). The model is left as it was.
pub fn epsilon_sharpness(
    model: &Model,
    data: &Dataset,
    loss: LossKind,
    config: &SharpnessConfig,
) -> Result<Sharpness> {
    config.check()?;
    let eval = Evaluator::new(model, data, loss, config.batch_size)?;
    let hop = op(model, data, loss, config.batch_size)?;
    let theta = ParamVec::from_model(model)?;
    let result = (|| -> Result<Sharpness> {
        let (l0, _) = eval.evaluate(model)?;
        let g = gradient(&hop, &theta)?;
        let gn = g.norm()?;
        let step = g.scale(config.rho / (gn + 1e-12))?;
        theta.add(&step)?.assign_to(model)?;
        let one = eval.evaluate(model)?.0 - l0;
        let (mut best, mut best_r) = (one, step.norm()?);
        let mut delta = step.scale(0.0)?;
        let alpha = 2.0 * config.rho / config.steps as f64;
        for _ in 0..config.steps {
            theta.add(&delta)?.assign_to(model)?;
            let g = gradient(&hop, &theta)?;
            let gn = g.norm()?;
            delta = delta.axpy(alpha / (gn + 1e-12), &g)?;
            let r = delta.norm()?;
            if r > config.rho {
                delta = delta.scale(config.rho / r)?;
            }
            theta.add(&delta)?.assign_to(model)?;
            let inc = eval.evaluate(model)?.0 - l0;
            if inc > best {
                best = inc;
                best_r = delta.norm()?;
            }
        }
        Ok(Sharpness {
            rho: config.rho,
            loss: l0,
            one_step: one,
            multi_step: best,
            multi_step_radius: best_r,
        })
    })();
    theta.assign_to(model)?;
    result
}

/// Settings of [`basics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasicsConfig {
    /// Rows of the Hessian's mini-batch (a stratified random sample; all rows when the data has
    /// no more). Default 200, as the MD tree.
    pub hessian_samples: usize,
    /// Seed of that sample and of the probes. Default 0.
    pub seed: u64,
    /// Power iteration for the top eigenvalue (PyHessian's defaults).
    pub power: PowerConfig,
    /// Hutchinson for the trace (PyHessian's stopping rule by default).
    pub trace: HutchinsonConfig,
    /// Rows per batch for losses and gradients.
    pub batch_size: usize,
}

impl Default for BasicsConfig {
    fn default() -> Self {
        BasicsConfig {
            hessian_samples: 200,
            seed: 0,
            power: PowerConfig::default(),
            trace: HutchinsonConfig::pyhessian(),
            batch_size: 512,
        }
    }
}

impl BasicsConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        terrain_model::config::at_least("hessian_samples", self.hessian_samples, 1)?;
        terrain_model::config::at_least("batch_size", self.batch_size, 1)?;
        self.power.check()?;
        self.trace.check()?;
        Ok(())
    }
}

/// The basic measurements of one model on its training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Basics {
    /// Mean loss.
    pub loss: f64,
    /// Error in percent (classification only).
    pub error: Option<f64>,
    /// `‖θ‖₂` over all parameters.
    pub param_norm: f64,
    /// `‖∇L‖₂` over all rows.
    pub grad_norm: f64,
    /// The Hessian's top eigenvalue (power iteration) on the mini-batch.
    pub hessian_top_eigenvalue: f64,
    /// The Hessian's trace (Hutchinson) on the mini-batch.
    pub hessian_trace: f64,
    /// The trace estimate's standard error.
    pub hessian_trace_std_error: f64,
    /// Rows of the Hessian's mini-batch.
    pub hessian_rows: usize,
}

/// Loss, error, norms, and the Hessian's top eigenvalue and trace of `model` on `train`.
pub fn basics(
    model: &Model,
    train: &Dataset,
    loss: LossKind,
    config: &BasicsConfig,
) -> Result<Basics> {
    config.check()?;
    let eval = Evaluator::new(model, train, loss, config.batch_size)?;
    let (l, e) = eval.evaluate(model)?;
    let theta = ParamVec::from_model(model)?;
    let full = op(model, train, loss, config.batch_size)?;
    let grad_norm = gradient(&full, &theta)?.norm()?;
    let mini = HessianOperator::new(
        model,
        train,
        HessianConfig {
            batch_size: config.batch_size,
            samples: (config.hessian_samples < train.len()).then_some(config.hessian_samples),
            sample_seed: config.seed,
            ..HessianConfig::new(loss)
        },
    )?;
    let top = eigen::power_iteration(
        &mini,
        &PowerConfig {
            seed: config.seed,
            ..config.power.clone()
        },
    )?;
    let tr = trace::hutchinson(
        &mini,
        &HutchinsonConfig {
            seed: config.seed,
            ..config.trace.clone()
        },
    )?;
    Ok(Basics {
        loss: l,
        error: e.map(|e| 100.0 * e),
        param_norm: theta.norm()?,
        grad_norm,
        hessian_top_eigenvalue: top.pairs.first().map_or(f64::NAN, |p| p.value),
        hessian_trace: tr.value,
        hessian_trace_std_error: tr.std_error,
        hessian_rows: mini.rows(),
    })
}
