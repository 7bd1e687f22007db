//! Sharpness-aware minimisation: SAM (Foret et al. 2021, as in davda54/sam) and adaptive SAM
//! (Kwon et al. 2021).
//!
//! One step: the gradient g of the batch's mean loss at w (BatchNorm in training mode, running
//! statistics updated as in a plain step), the ascent ε, the gradient of the mean loss at w + ε
//! (BatchNorm still normalising with batch statistics, its running statistics left untouched),
//! then the weights put back to w exactly, so the base optimiser steps from w.
//!
//! - SAM: ε = ρ·g/(‖g‖₂ + 1e-12), ‖·‖₂ the global norm over all parameters.
//! - ASAM: ε = ρ·T²g/(‖T g‖₂ + 1e-12) with T = diag(|w|) element-wise (davda54's `adaptive=True`,
//!   Kwon et al.'s scale-invariant ball ‖T⁻¹ε‖ ≤ ρ without their η offset).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use terrain_model::{
    Model, Result, config,
    data::Batch,
    loss::LossKind,
    params::tensors_norm,
    train::{Objective, StepOutput, reduced_gradient},
};

/// SAM or adaptive SAM, radius `rho`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sam {
    /// Neighbourhood radius ρ ≥ 0 (ρ = 0 is ERM at twice the cost).
    pub rho: f64,
    /// Adaptive (ASAM): scale the ascent element-wise by |w|.
    pub adaptive: bool,
}

impl Sam {
    /// SAM with radius `rho` (finite, ≥ 0; the usual default 0.05).
    pub fn new(rho: f64) -> Result<Self> {
        config::non_negative("rho", rho)?;
        Ok(Sam {
            rho,
            adaptive: false,
        })
    }

    /// Adaptive SAM with radius `rho` (finite, ≥ 0; default 0.5).
    pub fn adaptive(rho: f64) -> Result<Self> {
        config::non_negative("rho", rho)?;
        Ok(Sam {
            rho,
            adaptive: true,
        })
    }

    /// The ascent ε for gradient `grads` at weights `weights` (one tensor per parameter).
    pub fn perturbation(&self, weights: &[Tensor], grads: &[Tensor]) -> Result<Vec<Tensor>> {
        if self.adaptive {
            let tg: Vec<Tensor> = weights
                .iter()
                .zip(grads)
                .map(|(w, g)| Ok((w.abs()? * g)?))
                .collect::<Result<_>>()?;
            let scale = self.rho / (tensors_norm(&tg)? + 1e-12);
            weights
                .iter()
                .zip(&tg)
                .map(|(w, t)| Ok(((w.abs()? * t)? * scale)?))
                .collect()
        } else {
            let scale = self.rho / (tensors_norm(grads)? + 1e-12);
            grads.iter().map(|g| Ok((g * scale)?)).collect()
        }
    }
}

impl Objective for Sam {
    fn name(&self) -> String {
        if self.adaptive {
            format!("asam:rho={}", self.rho)
        } else {
            format!("sam:rho={}", self.rho)
        }
    }

    fn step(&mut self, model: &Model, batch: &Batch, loss: LossKind) -> Result<StepOutput> {
        let first = reduced_gradient(model, batch, loss, true, |l| Ok(l.mean_all()?))?;
        let weights: Vec<Tensor> = model
            .params()
            .iter()
            .map(|p| p.var.as_tensor().copy())
            .collect::<candle_core::Result<_>>()?;
        let eps = self.perturbation(&weights, &first.grads)?;
        for ((p, w), e) in model.params().iter().zip(&weights).zip(&eps) {
            p.var.set(&(w + e.to_dtype(w.dtype())?)?)?;
        }
        let second = reduced_gradient(model, batch, loss, false, |l| Ok(l.mean_all()?));
        // Back to w whatever the second pass did.
        for (p, w) in model.params().iter().zip(&weights) {
            p.var.set(w)?;
        }
        let second = second?;
        Ok(StepOutput {
            loss: first.loss,
            grads: second.grads,
            source: second.source,
        })
    }
}
