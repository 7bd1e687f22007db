//! Training: SGD (momentum, weight decay) and Adam, step learning-rate decay, seeded shuffling,
//! and a pluggable per-batch [`Objective`] (ERM here; flooding, SoftAD, SAM and friends plug in
//! from terrain-robust). Same seed, same numbers on the CPU.
//!
//! A [`Trainer`] can save its full state (weights, optimiser buffers, epoch) after every epoch
//! and resume from it, giving exactly the numbers an uninterrupted run would have.

use std::{collections::BTreeMap, path::Path, time::Instant};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{
    Error, Model, Result, checkpoint,
    data::{Batch, Dataset, mixup},
    loss::{self, LossKind},
};

/// The optimiser and its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Optimizer {
    /// Stochastic gradient descent with heavy-ball momentum and L2 weight decay (PyTorch's `SGD`).
    Sgd {
        /// Momentum coefficient (0 for none).
        momentum: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
    /// Adam (PyTorch's `Adam`: weight decay is an L2 term added to the gradient).
    Adam {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator guard.
        eps: f64,
        /// L2 penalty added to the gradient.
        weight_decay: f64,
    },
}

impl Optimizer {
    /// SGD with momentum 0.9 and no weight decay.
    pub fn sgd() -> Self {
        Optimizer::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }

    /// Adam with the usual (0.9, 0.999, 1e-8) and no weight decay.
    pub fn adam() -> Self {
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LrDecay {
    /// Constant learning rate.
    #[default]
    None,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Period in epochs.
        every: usize,
        /// Factor.
        gamma: f64,
    },
    /// Multiply by `gamma` after each listed epoch (the MD-tree papers decay ×0.1 at 75%).
    MultiStep {
        /// Epochs (1-based) after which the rate drops.
        milestones: Vec<usize>,
        /// Factor.
        gamma: f64,
    },
}

impl LrDecay {
    /// The learning rate in effect during `epoch` (1-based).
    pub fn lr_at(&self, base: f64, epoch: usize) -> f64 {
        let done = epoch.saturating_sub(1);
        match self {
            LrDecay::None => base,
            LrDecay::Step { every, gamma } => base * gamma.powi((done / every.max(&1)) as i32),
            LrDecay::MultiStep { milestones, gamma } => {
                base * gamma.powi(milestones.iter().filter(|&&m| m <= done).count() as i32)
            }
        }
    }
}

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Learning-rate schedule.
    pub lr_decay: LrDecay,
    /// Seed for shuffling (and mixup).
    pub seed: u64,
    /// Drop the last incomplete batch of each epoch (as the MD-tree training code does).
    pub drop_last: bool,
    /// Loss; `None` picks the task's natural loss.
    pub loss: Option<LossKind>,
    /// Mixup with Beta(α, α) mixing, when set.
    pub mixup_alpha: Option<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            lr: 0.05,
            batch_size: 64,
            optimizer: Optimizer::sgd(),
            lr_decay: LrDecay::None,
            seed: 0,
            drop_last: false,
            loss: None,
            mixup_alpha: None,
        }
    }
}

impl TrainConfig {
    /// Checks every field's range.
    pub fn check(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("epochs", self.epochs, "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("lr", self.lr, "must be a positive number"));
        }
        if self.batch_size == 0 {
            return Err(Error::config(
                "batch_size",
                self.batch_size,
                "must be at least 1",
            ));
        }
        let unit = |field, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(field, v, "must be in [0, 1)"))
            }
        };
        let nonneg = |field, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(Error::config(field, v, "must be ≥ 0"))
            }
        };
        match self.optimizer {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => {
                unit("momentum", momentum)?;
                nonneg("weight_decay", weight_decay)?;
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                if eps <= 0.0 {
                    return Err(Error::config("eps", eps, "must be > 0"));
                }
                nonneg("weight_decay", weight_decay)?;
            }
        }
        match &self.lr_decay {
            LrDecay::Step { every, gamma } if *every == 0 || *gamma <= 0.0 => {
                return Err(Error::config(
                    "lr_decay",
                    format!("step every {every}, gamma {gamma}"),
                    "needs every ≥ 1 and gamma > 0",
                ));
            }
            LrDecay::MultiStep { gamma, .. } if *gamma <= 0.0 => {
                return Err(Error::config("lr_decay", gamma, "gamma must be > 0"));
            }
            _ => {}
        }
        if let Some(a) = self.mixup_alpha
            && !(a > 0.0 && a.is_finite())
        {
            return Err(Error::config("mixup_alpha", a, "must be > 0"));
        }
        Ok(())
    }
}

/// What an objective computed for one batch.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The plain mean loss of the batch (for logging), before any reweighting.
    pub loss: f64,
    /// The objective's gradient, one tensor per model parameter in parameter order.
    pub grads: Vec<Tensor>,
}

/// A per-batch training objective: given the model and a batch, produce the gradient to step on.
/// ERM differentiates the mean loss; robust objectives reweight per-sample losses, or (SAM)
/// evaluate the gradient at perturbed weights.
pub trait Objective {
    /// Short name for logs and reports.
    fn name(&self) -> String;
    /// Computes the batch loss and the gradient (model in training mode).
    fn step(&mut self, model: &Model, batch: &Batch, loss: LossKind) -> Result<StepOutput>;
}

/// Forward pass in training mode, per-sample losses, a reduction to a scalar, and its gradient.
/// Returns the plain mean loss and the gradient of `reduce(per_sample_losses)`.
/// `update_stats` controls BatchNorm running-statistics updates.
pub fn reduced_gradient(
    model: &Model,
    batch: &Batch,
    loss: LossKind,
    update_stats: bool,
    reduce: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<StepOutput> {
    let out = model.forward_with(&batch.x, true, update_stats)?;
    let losses = loss::per_sample(&out, &batch.y, loss)?;
    let mean = losses
        .mean_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    let objective = reduce(&losses)?;
    let store = objective.backward()?;
    let grads = model
        .params()
        .iter()
        .map(|p| match store.get(p.var.as_tensor()) {
            Some(g) => Ok(g.detach()),
            None => Ok(p.var.zeros_like()?),
        })
        .collect::<Result<_>>()?;
    Ok(StepOutput { loss: mean, grads })
}

/// Empirical risk minimisation: the gradient of the mean loss.
#[derive(Debug, Clone, Copy, Default)]
pub struct Erm;

impl Objective for Erm {
    fn name(&self) -> String {
        "erm".into()
    }
    fn step(&mut self, model: &Model, batch: &Batch, loss: LossKind) -> Result<StepOutput> {
        reduced_gradient(model, batch, loss, true, |l| Ok(l.mean_all()?))
    }
}

/// Per-epoch summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean of the batch losses over the epoch.
    pub train_loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Validation loss/error, when validation data was given.
    pub validation: Option<loss::Evaluation>,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
}

/// Progress events, for progress bars and logs.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// One optimiser step finished.
    Step {
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// The batch loss.
        loss: f64,
    },
    /// One epoch finished.
    Epoch(&'a EpochReport),
}

/// The trainer's mutable state: optimiser buffers and the number of epochs done.
#[derive(Debug, Clone)]
struct OptState {
    epochs_done: usize,
    steps: usize,
    /// SGD: momentum buffers; Adam: first moments.
    m: Vec<Tensor>,
    /// Adam: second moments (empty for SGD).
    v: Vec<Tensor>,
}

/// Trains models with a [`TrainConfig`] and an [`Objective`].
pub struct Trainer {
    config: TrainConfig,
    objective: Box<dyn Objective>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("objective", &self.objective.name())
            .finish()
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// One entry per epoch run in this call (resumed epochs are not repeated).
    pub epochs: Vec<EpochReport>,
    /// Total optimiser steps, including resumed ones.
    pub steps: usize,
    /// The objective's name.
    pub objective: String,
}

const STATE_EPOCHS: &str = "terrain.train.epochs_done";
const STATE_STEPS: &str = "terrain.train.steps";
const STATE_CONFIG: &str = "terrain.train.config";

impl Trainer {
    /// A trainer with the ERM objective; the configuration is checked.
    pub fn new(config: TrainConfig) -> Result<Self> {
        config.check()?;
        Ok(Trainer {
            config,
            objective: Box::new(Erm),
        })
    }

    /// Replaces the objective.
    pub fn with_objective(mut self, objective: Box<dyn Objective>) -> Self {
        self.objective = objective;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Trains `model` in place on `train` (optionally reporting `validation` each epoch).
    pub fn fit(
        &mut self,
        model: &Model,
        train: &Dataset,
        validation: Option<&Dataset>,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<TrainReport> {
        self.fit_resumable(model, train, validation, None, on_progress)
    }

    /// Like [`fit`](Self::fit), but saves the full training state to `state_path` after every
    /// epoch, and, if that file exists when called, restores it first and continues from the
    /// next epoch, so a crashed run loses at most the epoch in progress and ends with the same
    /// weights as an uninterrupted one.
    pub fn fit_resumable(
        &mut self,
        model: &Model,
        train: &Dataset,
        validation: Option<&Dataset>,
        state_path: Option<&Path>,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<TrainReport> {
        loss::check_fits(model, train)?;
        if let Some(v) = validation {
            loss::check_fits(model, v)?;
        }
        let cfg = self.config.clone();
        let loss_kind = cfg.loss.unwrap_or_else(|| LossKind::for_task(train.task));
        let mut state = match state_path.filter(|p| p.exists()) {
            Some(p) => self.restore(model, p)?,
            None => OptState {
                epochs_done: 0,
                steps: 0,
                m: model
                    .params()
                    .iter()
                    .map(|p| p.var.zeros_like())
                    .collect::<candle_core::Result<_>>()?,
                v: match cfg.optimizer {
                    Optimizer::Adam { .. } => model
                        .params()
                        .iter()
                        .map(|p| p.var.zeros_like())
                        .collect::<candle_core::Result<_>>()?,
                    Optimizer::Sgd { .. } => Vec::new(),
                },
            },
        };
        let steps_per_epoch = train.num_batches(cfg.batch_size, cfg.drop_last);
        if steps_per_epoch == 0 {
            return Err(Error::config(
                "batch_size",
                cfg.batch_size,
                format!(
                    "larger than the {} training rows while dropping the last incomplete batch",
                    train.len()
                ),
            ));
        }
        let classes = train.classes();
        let mut reports = Vec::new();
        for epoch in state.epochs_done + 1..=cfg.epochs {
            let started = Instant::now();
            let lr = cfg.lr_decay.lr_at(cfg.lr, epoch);
            let shuffle_seed = crate::rng::stream_seed(cfg.seed, epoch as u64);
            let mut loss_sum = 0.0;
            for (i, batch) in train
                .batches(cfg.batch_size, Some(shuffle_seed), cfg.drop_last)?
                .enumerate()
            {
                let mut batch = batch?;
                if let (Some(alpha), Some(k)) = (cfg.mixup_alpha, classes) {
                    batch = mixup(&batch, alpha, k, shuffle_seed.wrapping_add(i as u64 + 1))?;
                }
                let out = self.objective.step(model, &batch, loss_kind)?;
                if !out.loss.is_finite() {
                    return Err(Error::Diverged {
                        what: "training loss".into(),
                        value: out.loss,
                        epoch,
                        step: i + 1,
                    });
                }
                apply_update(model, &cfg.optimizer, lr, &out.grads, &mut state)?;
                loss_sum += out.loss;
                on_progress(Progress::Step {
                    epoch,
                    step: i + 1,
                    steps: steps_per_epoch,
                    loss: out.loss,
                });
            }
            let train_loss = loss_sum / steps_per_epoch as f64;
            let validation = validation
                .map(|v| loss::evaluate_with(model, v, cfg.batch_size.max(256), loss_kind))
                .transpose()?;
            state.epochs_done = epoch;
            if let Some(p) = state_path {
                self.save_state(model, &state, p)?;
            }
            let report = EpochReport {
                epoch,
                train_loss,
                lr,
                validation,
                seconds: started.elapsed().as_secs_f64(),
            };
            tracing::debug!(epoch, train_loss, lr, "epoch done");
            on_progress(Progress::Epoch(&report));
            reports.push(report);
        }
        Ok(TrainReport {
            epochs: reports,
            steps: state.steps,
            objective: self.objective.name(),
        })
    }

    fn save_state(&self, model: &Model, state: &OptState, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = model
            .params()
            .iter()
            .chain(model.buffers())
            .map(|p| (format!("model.{}", p.name), p.var.as_tensor().clone()))
            .collect();
        for (p, m) in model.params().iter().zip(&state.m) {
            tensors.push((format!("opt.m.{}", p.name), m.clone()));
        }
        for (p, v) in model.params().iter().zip(&state.v) {
            tensors.push((format!("opt.v.{}", p.name), v.clone()));
        }
        let mut meta = BTreeMap::new();
        meta.insert(STATE_EPOCHS.into(), state.epochs_done.to_string());
        meta.insert(STATE_STEPS.into(), state.steps.to_string());
        meta.insert(
            STATE_CONFIG.into(),
            serde_json::to_string(&self.config).expect("configs serialise"),
        );
        meta.insert(
            checkpoint::ARCH_KEY.into(),
            serde_json::to_string(model.spec()).expect("specs serialise"),
        );
        checkpoint::write_file(path, &tensors, &meta)
    }

    fn restore(&self, model: &Model, path: &Path) -> Result<OptState> {
        let raw = checkpoint::read_file(path)?;
        let bad = |reason: String| Error::Safetensors {
            path: path.to_path_buf(),
            reason,
        };
        let saved_config: TrainConfig = raw
            .metadata
            .get(STATE_CONFIG)
            .and_then(|c| serde_json::from_str(c).ok())
            .ok_or_else(|| bad("not a terrain training-state file".into()))?;
        let mut same = saved_config.clone();
        same.epochs = self.config.epochs;
        if same != self.config {
            return Err(bad(format!(
                "it was written by a run with a different configuration ({}); delete it to start over",
                serde_json::to_string(&saved_config).unwrap_or_default()
            )));
        }
        if checkpoint::stored_arch(&raw)?.as_ref() != Some(model.spec()) {
            return Err(bad(format!(
                "it does not hold architecture {}",
                model.spec()
            )));
        }
        let get = |name: String| {
            raw.tensors
                .get(&name)
                .cloned()
                .ok_or_else(|| Error::MissingTensor {
                    path: path.to_path_buf(),
                    name,
                    available: format!("{} tensors", raw.tensors.len()),
                })
        };
        for p in model.params().iter().chain(model.buffers()) {
            let t = get(format!("model.{}", p.name))?;
            p.var
                .set(&t.to_dtype(model.dtype())?.to_device(model.device())?)?;
        }
        let load = |prefix: &str| -> Result<Vec<Tensor>> {
            model
                .params()
                .iter()
                .map(|p| {
                    Ok(get(format!("{prefix}{}", p.name))?
                        .to_dtype(model.dtype())?
                        .to_device(model.device())?)
                })
                .collect()
        };
        let number = |key: &str| {
            raw.metadata
                .get(key)
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| bad(format!("metadata `{key}` missing")))
        };
        let state = OptState {
            epochs_done: number(STATE_EPOCHS)?,
            steps: number(STATE_STEPS)?,
            m: load("opt.m.")?,
            v: match self.config.optimizer {
                Optimizer::Adam { .. } => load("opt.v.")?,
                Optimizer::Sgd { .. } => Vec::new(),
            },
        };
        tracing::info!(path = %path.display(), epochs_done = state.epochs_done, "resuming training");
        Ok(state)
    }
}

fn apply_update(
    model: &Model,
    opt: &Optimizer,
    lr: f64,
    grads: &[Tensor],
    state: &mut OptState,
) -> Result<()> {
    state.steps += 1;
    let t = state.steps as i32;
    for (i, p) in model.params().iter().enumerate() {
        let w = p.var.as_tensor();
        let g = grads[i].to_dtype(w.dtype())?;
        match *opt {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => {
                let g = if weight_decay > 0.0 {
                    (g + (w * weight_decay)?)?
                } else {
                    g
                };
                let d = if momentum > 0.0 {
                    // PyTorch: the first step initialises the buffer with the gradient.
                    let buf = if t == 1 {
                        g
                    } else {
                        ((&state.m[i] * momentum)? + g)?
                    };
                    state.m[i] = buf.clone();
                    buf
                } else {
                    g
                };
                p.var.set(&(w - (d * lr)?)?)?;
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let g = if weight_decay > 0.0 {
                    (g + (w * weight_decay)?)?
                } else {
                    g
                };
                let m = ((&state.m[i] * beta1)? + (&g * (1.0 - beta1))?)?;
                let v = ((&state.v[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                let mhat = (&m / (1.0 - beta1.powi(t)))?;
                let vhat = (&v / (1.0 - beta2.powi(t)))?;
                let upd = (mhat / (vhat.sqrt()? + eps)?)?;
                p.var.set(&(w - (upd * lr)?)?)?;
                state.m[i] = m;
                state.v[i] = v;
            }
        }
    }
    Ok(())
}
