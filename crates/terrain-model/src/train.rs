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
    Error, Model, Result, checkpoint, config,
    data::{Batch, Dataset, mixup},
    engine,
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
    /// Checks every hyperparameter's range (NaN fails).
    pub fn check(&self) -> Result<()> {
        match *self {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => {
                config::unit_interval("momentum", momentum)?;
                config::non_negative("weight_decay", weight_decay)
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                config::unit_interval("beta1", beta1)?;
                config::unit_interval("beta2", beta2)?;
                config::positive("eps", eps)?;
                config::non_negative("weight_decay", weight_decay)
            }
        }
    }

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

/// Parses `key=value,key=value` into `(key, f64)` pairs for the compact forms below.
fn parse_params<'a>(what: &'static str, s: &'a str, list: &'a str) -> Result<Vec<(&'a str, f64)>> {
    list.split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| Error::config(what, s, format!("`{kv}` is not key=value")))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| Error::config(what, s, format!("`{}` is not a number", v.trim())))?;
            Ok((k.trim(), v))
        })
        .collect()
}

impl std::str::FromStr for Optimizer {
    type Err = Error;

    /// `sgd`, `sgd:momentum=0.9,weight_decay=5e-4`, `adam` or
    /// `adam:beta1=0.9,beta2=0.999,eps=1e-8,weight_decay=0`; unnamed settings keep the defaults
    /// of [`Optimizer::sgd`] and [`Optimizer::adam`]. The result is checked.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, rest) = s.trim().split_once(':').unwrap_or((s.trim(), ""));
        let mut opt = match kind.to_ascii_lowercase().as_str() {
            "sgd" => Optimizer::sgd(),
            "adam" => Optimizer::adam(),
            _ => {
                return Err(Error::config(
                    "optimizer",
                    s,
                    "expected sgd or adam, optionally with :key=value,... settings",
                ));
            }
        };
        for (k, v) in parse_params("optimizer", s, rest)? {
            let slot = match (&mut opt, k) {
                (Optimizer::Sgd { momentum, .. }, "momentum") => momentum,
                (Optimizer::Sgd { weight_decay, .. }, "weight_decay")
                | (Optimizer::Adam { weight_decay, .. }, "weight_decay") => weight_decay,
                (Optimizer::Adam { beta1, .. }, "beta1") => beta1,
                (Optimizer::Adam { beta2, .. }, "beta2") => beta2,
                (Optimizer::Adam { eps, .. }, "eps") => eps,
                _ => {
                    return Err(Error::config(
                        "optimizer",
                        s,
                        format!(
                            "`{k}` is not a setting of {kind} (sgd: momentum, weight_decay; adam: beta1, beta2, eps, weight_decay)"
                        ),
                    ));
                }
            };
            *slot = v;
        }
        opt.check()?;
        Ok(opt)
    }
}

impl std::fmt::Display for Optimizer {
    /// The full compact form, which parses back to the same optimiser.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => write!(f, "sgd:momentum={momentum},weight_decay={weight_decay}"),
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => write!(
                f,
                "adam:beta1={beta1},beta2={beta2},eps={eps},weight_decay={weight_decay}"
            ),
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
    /// Checks the schedule (NaN fails).
    pub fn check(&self) -> Result<()> {
        match self {
            LrDecay::None => Ok(()),
            LrDecay::Step { every, gamma } => {
                config::at_least("lr_decay every", *every, 1)?;
                config::positive("lr_decay gamma", *gamma)
            }
            LrDecay::MultiStep { milestones, gamma } => {
                if milestones.is_empty() {
                    return Err(Error::config(
                        "lr_decay milestones",
                        "[]",
                        "needs at least one epoch",
                    ));
                }
                config::positive("lr_decay gamma", *gamma)
            }
        }
    }

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

impl std::str::FromStr for LrDecay {
    type Err = Error;

    /// `none`, `step:EVERY:GAMMA` or `multistep:E1,E2,...:GAMMA`; the result is checked.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::config("lr_decay", s, reason);
        let parts: Vec<&str> = s.trim().split(':').collect();
        let gamma = |g: &str| -> Result<f64> {
            g.trim()
                .parse()
                .map_err(|_| bad(format!("gamma `{g}` is not a number")))
        };
        let decay = match parts.as_slice() {
            ["none"] => LrDecay::None,
            ["step", every, g] => LrDecay::Step {
                every: every
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("`{every}` is not a whole number of epochs")))?,
                gamma: gamma(g)?,
            },
            ["multistep", ms, g] => LrDecay::MultiStep {
                milestones: ms
                    .split(',')
                    .map(|m| {
                        m.trim()
                            .parse::<usize>()
                            .map_err(|_| bad(format!("milestone `{m}` is not a whole number")))
                    })
                    .collect::<Result<_>>()?,
                gamma: gamma(g)?,
            },
            _ => {
                return Err(bad(
                    "expected none, step:EVERY:GAMMA or multistep:E1,E2,...:GAMMA".into(),
                ));
            }
        };
        decay.check()?;
        Ok(decay)
    }
}

impl std::fmt::Display for LrDecay {
    /// The compact form, which parses back to the same schedule.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LrDecay::None => f.write_str("none"),
            LrDecay::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            LrDecay::MultiStep { milestones, gamma } => {
                let ms: Vec<String> = milestones.iter().map(usize::to_string).collect();
                write!(f, "multistep:{}:{gamma}", ms.join(","))
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
    /// Checks every field's range (NaN fails every check).
    pub fn check(&self) -> Result<()> {
        config::count("epochs", self.epochs)?;
        config::positive("lr", self.lr)?;
        config::at_least("batch_size", self.batch_size, 1)?;
        self.optimizer.check()?;
        self.lr_decay.check()?;
        if let Some(a) = self.mixup_alpha {
            config::positive("mixup_alpha", a)?;
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
    /// What computed the gradient.
    pub source: GradientSource,
}

/// What computed a training step's gradient ([`reduced_gradient`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradientSource {
    /// The differentiation engine's backward sweep ([`engine::weighted_gradient`]).
    Engine,
    /// candle's autodiff of the whole forward pass ([`autodiff_reduced_gradient`]).
    Autodiff,
}

/// A per-batch training objective: given the model and a batch, produce the gradient to step on.
/// ERM differentiates the mean loss; robust objectives reweight per-sample losses, or (SAM)
/// evaluate the gradient at perturbed weights.
pub trait Objective {
    /// Short name for logs and reports.
    fn name(&self) -> String;
    /// Computes the batch loss and the gradient (model in training mode).
    fn step(&mut self, model: &Model, batch: &Batch, loss: LossKind) -> Result<StepOutput>;
    /// The per-example loss level the objective aims at (θ of flooding, iFlood, SoftAD), if it
    /// has one: the per-epoch [`LossConcentration`] reports the fraction of training rows above it.
    fn threshold(&self) -> Option<f64> {
        None
    }
}

/// Forward pass in training mode, per-sample losses, a reduction to a scalar, and its gradient.
/// Returns the plain mean loss and the gradient of `reduce(per_sample_losses)`.
/// BatchNorm normalises by the batch's statistics; `update_stats` says whether its running
/// statistics take them in (PyTorch's momentum rule; SAM's second pass leaves them alone).
///
/// The gradient of any reduction `R(ℓ_1, …, ℓ_N)` of the per-example losses is
/// `Σ_i (∂R/∂ℓ_i) ∇ℓ_i`, so the differentiation engine ([`engine::weighted_gradient`]) computes
/// it: it runs the forward pass, takes the per-row weights `∂R/∂ℓ_i` by autodiff of `reduce`
/// alone on the per-example losses, and back-propagates `Σ_i w_i ℓ_i`. Where the engine's host
/// backend does not run (devices, dtypes), candle's autodiff of the whole forward pass
/// ([`autodiff_reduced_gradient`]). Both give the same gradient (tested).
pub fn reduced_gradient(
    model: &Model,
    batch: &Batch,
    loss: LossKind,
    update_stats: bool,
    reduce: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<StepOutput> {
    let mut reduce = Some(reduce);
    let mut mean = f64::NAN;
    let mut row_weights = |logits: &Tensor| -> Result<Tensor> {
        let losses = loss::per_sample(logits, &batch.y, loss)?;
        mean = losses
            .mean_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        let leaf = candle_core::Var::from_tensor(&losses)?;
        let reduce = reduce.take().ok_or_else(|| Error::RowWeights {
            reason: "asked for twice in one step".into(),
        })?;
        let store = reduce(leaf.as_tensor())?.backward()?;
        // A reduction that does not reach the losses reaches no parameter: an error, as on
        // autodiff's road, not a zero gradient.
        match store.get(leaf.as_tensor()) {
            Some(w) => Ok(w.detach()),
            None => Err(Error::NoGradient {
                names: crate::error::name_list(
                    &model
                        .params()
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>(),
                ),
            }),
        }
    };
    let batch_norms = model.network().batch_norms();
    let batch_stats = !batch_norms.is_empty();
    if let Some(out) = engine::weighted_gradient(model, batch, loss, batch_stats, &mut row_weights)?
    {
        if update_stats {
            for (bn, s) in batch_norms.iter().zip(&out.batch_norm) {
                let (dtype, dev) = (model.dtype(), model.device());
                let mean = Tensor::new(s.mean.as_slice(), dev)?.to_dtype(dtype)?;
                let var = Tensor::new(s.var.as_slice(), dev)?.to_dtype(dtype)?;
                bn.update_running(&mean, &var, s.count, bn.momentum)?;
            }
        }
        return Ok(StepOutput {
            loss: mean,
            grads: out.grads,
            source: GradientSource::Engine,
        });
    }
    match reduce {
        Some(r) => autodiff_reduced_gradient(model, batch, loss, update_stats, r),
        None => Err(Error::RowWeights {
            reason: "the engine declined the batch after asking for them".into(),
        }),
    }
}

/// [`reduced_gradient`] by candle's autodiff of the whole forward pass (BatchNorm in training
/// mode, running statistics updated when `update_stats`): the engine's reference in tests, and
/// the road for what the engine does not run.
pub fn autodiff_reduced_gradient(
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
    // A parameter the loss does not reach has no gradient: that is an op without a backward
    // pass (or a disconnected layer), and an error, as in the curvature code, not a silent zero.
    let missing: Vec<&str> = model
        .params()
        .iter()
        .filter(|p| store.get(p.var.as_tensor()).is_none())
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::NoGradient {
            names: crate::error::name_list(&missing),
        });
    }
    let grads = model
        .params()
        .iter()
        .filter_map(|p| store.get(p.var.as_tensor()).map(Tensor::detach))
        .collect();
    Ok(StepOutput {
        loss: mean,
        grads,
        source: GradientSource::Autodiff,
    })
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

/// How concentrated the per-example losses of a data set are (the SoftAD papers' "loss
/// concentration"): their mean, population standard deviation, 90th and 99th percentiles
/// (linear interpolation between order statistics, NumPy's default), maximum, and the fraction
/// strictly above the objective's threshold when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConcentration {
    /// Mean per-example loss.
    pub mean: f64,
    /// Population standard deviation (divisor n) of the per-example losses.
    pub sd: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest per-example loss.
    pub max: f64,
    /// The objective's threshold θ, if it has one.
    pub threshold: Option<f64>,
    /// Fraction of examples whose loss is strictly above `threshold`.
    pub above_threshold: Option<f64>,
}

impl LossConcentration {
    /// The concentration of `losses` (`None` when there are none or any is not finite).
    pub fn of(losses: &[f64], threshold: Option<f64>) -> Option<Self> {
        if losses.is_empty() || losses.iter().any(|l| !l.is_finite()) {
            return None;
        }
        let n = losses.len() as f64;
        let mean = losses.iter().sum::<f64>() / n;
        let sd = (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
        let mut sorted = losses.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(LossConcentration {
            mean,
            sd,
            p90: percentile(&sorted, 0.9),
            p99: percentile(&sorted, 0.99),
            max: sorted[sorted.len() - 1],
            threshold,
            above_threshold: threshold
                .map(|t| losses.iter().filter(|&&l| l > t).count() as f64 / n),
        })
    }
}

/// The `q`-quantile of ascending `sorted` values, interpolating linearly between order statistics
/// (NumPy's `linear` method). `sorted` must not be empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Per-epoch summary. Besides the running mean of the batch losses, every epoch ends with a full
/// pass in evaluation mode over the training rows and over the validation and test rows given to
/// [`Trainer::fit_eval`] (the metrics the SoftAD code logs every epoch), plus the parameter and
/// gradient norms and the training rows' loss concentration. Records written before these fields
/// existed read them as absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean of the batch losses over the epoch (training mode, weights changing during the epoch).
    pub train_loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Validation loss/error after the epoch, when validation data was given.
    pub validation: Option<loss::Evaluation>,
    /// Wall time of the epoch in seconds (training and the end-of-epoch evaluations; 0 when read
    /// from a checkpoint, which leaves it out).
    #[serde(default)]
    pub seconds: f64,
    /// Loss and error on all training rows after the epoch (evaluation mode).
    #[serde(default)]
    pub train: Option<loss::Evaluation>,
    /// Loss and error on the test rows after the epoch, when test data was given.
    #[serde(default)]
    pub test: Option<loss::Evaluation>,
    /// Euclidean norm of all parameters after the epoch (BatchNorm running statistics excluded).
    #[serde(default)]
    pub param_norm: f64,
    /// Mean over the epoch's steps of the Euclidean norm of the gradient the optimiser stepped
    /// on (the objective's gradient, before weight decay).
    #[serde(default)]
    pub grad_norm: f64,
    /// Concentration of the training rows' per-example losses after the epoch.
    #[serde(default)]
    pub concentration: Option<LossConcentration>,
}

/// The data evaluated after every epoch (see [`EpochReport`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalSets<'a> {
    /// Validation rows (model selection).
    pub validation: Option<&'a Dataset>,
    /// Test rows.
    pub test: Option<&'a Dataset>,
}

/// Training events, for progress bars and logs.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    /// Training continues from a saved state after this many epochs.
    Resumed {
        /// Epochs already done.
        epochs_done: usize,
    },
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
    /// SGD: momentum buffers; Adam: first moments. Each buffer owns its storage (none is a
    /// clone of another tensor): the host step ([`host_update`]) updates them in place.
    m: Vec<Tensor>,
    /// Adam: second moments (empty for SGD).
    v: Vec<Tensor>,
    /// Reports of every epoch done (restored ones without wall times).
    history: Vec<EpochReport>,
}

/// Trains models with a [`TrainConfig`] and an [`Objective`].
pub struct Trainer {
    config: TrainConfig,
    objective: Box<dyn Objective>,
    /// Settings beyond the training configuration that shape the run (architecture, data and
    /// their preparation, content hashes), compared on resume.
    fingerprint: BTreeMap<String, String>,
    /// Evaluate the training rows after every epoch (loss, error, loss concentration).
    train_evaluation: bool,
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
    /// Every epoch of the run, the ones done before a resume included (restored from the state
    /// file, without wall times).
    pub history: Vec<EpochReport>,
    /// Total optimiser steps, including resumed ones.
    pub steps: usize,
    /// The objective's name.
    pub objective: String,
}

use checkpoint::keys::{STATE_EPOCHS, STATE_HISTORY, STATE_STEPS};

/// `epochs` as JSON with every float as a string of its shortest exact decimal form (serde_json
/// parses float text to within an ulp only, and a resumed run must report the same bits).
fn exact_history_json(epochs: &[EpochReport]) -> String {
    fn encode(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().unwrap_or_default();
                *v = serde_json::Value::String(format!("f64:{x}"));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(encode),
            serde_json::Value::Object(o) => o.values_mut().for_each(encode),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(epochs).expect("reports serialise");
    encode(&mut v);
    v.to_string()
}

/// Reads [`exact_history_json`]'s text back, bit for bit.
fn parse_exact_history(text: &str) -> std::result::Result<Vec<EpochReport>, String> {
    fn decode(v: &mut serde_json::Value) -> std::result::Result<(), String> {
        match v {
            serde_json::Value::String(s) if s.starts_with("f64:") => {
                let x: f64 = s[4..]
                    .parse()
                    .map_err(|_| format!("`{s}` is not a number"))?;
                *v = serde_json::Number::from_f64(x)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| format!("`{s}` is not finite"))?;
            }
            serde_json::Value::Array(a) => a.iter_mut().try_for_each(decode)?,
            serde_json::Value::Object(o) => o.values_mut().try_for_each(decode)?,
            _ => {}
        }
        Ok(())
    }
    let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    decode(&mut v)?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// `epochs` as JSON without their wall times (`seconds`), so that the same run writes the same
/// bytes whether or not it was interrupted.
pub(crate) fn history_json(epochs: &[EpochReport]) -> String {
    let mut v = serde_json::to_value(epochs).expect("reports serialise");
    if let Some(list) = v.as_array_mut() {
        for e in list.iter_mut().filter_map(|e| e.as_object_mut()) {
            e.remove("seconds");
        }
    }
    v.to_string()
}

impl Trainer {
    /// A trainer with the ERM objective; the configuration is checked.
    pub fn new(config: TrainConfig) -> Result<Self> {
        config.check()?;
        Ok(Trainer {
            config,
            objective: Box::new(Erm),
            fingerprint: BTreeMap::new(),
            train_evaluation: true,
        })
    }

    /// Adds settings beyond the training configuration that shape the run (the recipe's
    /// architecture, data source, split, subset, label noise, standardisation, data content
    /// hashes...). A resumed run compares them, with every training setting and the objective,
    /// to those its state file was written with, and refuses to continue when any differs.
    pub fn with_fingerprint(mut self, settings: BTreeMap<String, String>) -> Self {
        self.fingerprint = settings;
        self
    }

    /// Everything a state file must match to be continued: every training setting but the
    /// number of epochs (a run may be extended), the objective, and the extra fingerprint.
    fn full_fingerprint(&self) -> BTreeMap<String, String> {
        let mut out = self.fingerprint.clone();
        let config = serde_json::to_value(&self.config).expect("configs serialise");
        flatten_settings("training", &config, &mut out);
        out.remove("training.epochs");
        out.insert("objective".into(), self.objective.name());
        out
    }

    /// Whether every epoch ends with a pass over the training rows in evaluation mode (on by
    /// default; it fills [`EpochReport::train`] and [`EpochReport::concentration`] and costs one
    /// forward pass over the training rows per epoch). It does not change the weights.
    pub fn with_train_evaluation(mut self, on: bool) -> Self {
        self.train_evaluation = on;
        self
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
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainReport> {
        self.fit_resumable(model, train, validation, None, on_event)
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
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainReport> {
        let sets = EvalSets {
            validation,
            test: None,
        };
        self.fit_eval(model, train, sets, state_path, on_event)
    }

    /// [`fit_resumable`](Self::fit_resumable) evaluating validation and test rows after every
    /// epoch (into [`EpochReport::validation`] and [`EpochReport::test`]).
    pub fn fit_eval(
        &mut self,
        model: &Model,
        train: &Dataset,
        sets: EvalSets<'_>,
        state_path: Option<&Path>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<TrainReport> {
        loss::check_fits(model, train)?;
        for d in [sets.validation, sets.test].into_iter().flatten() {
            loss::check_fits(model, d)?;
        }
        let cfg = self.config.clone();
        let loss_kind = cfg.loss.unwrap_or_else(|| LossKind::for_task(train.task));
        let mut state = match state_path.filter(|p| p.exists()) {
            Some(p) => {
                let state = self.restore(model, p)?;
                on_event(TrainEvent::Resumed {
                    epochs_done: state.epochs_done,
                });
                state
            }
            None => OptState {
                history: Vec::new(),
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
        let mut first_loss: Option<f64> = None;
        for epoch in state.epochs_done + 1..=cfg.epochs {
            let started = Instant::now();
            let lr = cfg.lr_decay.lr_at(cfg.lr, epoch);
            let shuffle_seed = crate::rng::stream_seed(cfg.seed, epoch as u64);
            let mut loss_sum = 0.0;
            let mut grad_norm_sum = 0.0;
            for (i, batch) in train
                .batches(cfg.batch_size, Some(shuffle_seed), cfg.drop_last)?
                .enumerate()
            {
                let mut batch = batch?;
                if let Some(alpha) = cfg.mixup_alpha {
                    // Class labels become soft mixtures; regression targets mix linearly.
                    let k = classes.unwrap_or(0);
                    batch = mixup(&batch, alpha, k, shuffle_seed.wrapping_add(i as u64 + 1))?;
                }
                let out = self.objective.step(model, &batch, loss_kind)?;
                first_loss.get_or_insert(out.loss);
                if !out.loss.is_finite() {
                    return Err(Error::Diverged {
                        what: "training loss".into(),
                        value: out.loss,
                        epoch,
                        step: i + 1,
                    });
                }
                grad_norm_sum += crate::params::tensors_norm(&out.grads)?;
                apply_update(model, &cfg.optimizer, lr, &out.grads, &mut state)?;
                loss_sum += out.loss;
                on_event(TrainEvent::Step {
                    epoch,
                    step: i + 1,
                    steps: steps_per_epoch,
                    loss: out.loss,
                });
            }
            let train_loss = loss_sum / steps_per_epoch as f64;
            // Finite but exploding: 10⁴ times the first step's loss (at least 10⁴) is divergence,
            // not learning; a checkpoint of it would be reported as a success.
            if let Some(first) = first_loss
                && train_loss > DIVERGENCE_FACTOR * first.max(1.0)
            {
                return Err(Error::Divergence {
                    first,
                    last: train_loss,
                    epoch,
                });
            }
            let eval_batch = cfg.batch_size.max(256);
            let evaluate = |d: Option<&Dataset>| {
                d.map(|d| loss::evaluate_with(model, d, eval_batch, loss_kind))
                    .transpose()
            };
            let validation = evaluate(sets.validation)?;
            let test = evaluate(sets.test)?;
            let (train_eval, concentration) = if self.train_evaluation {
                let (e, losses) = loss::evaluate_per_sample(model, train, eval_batch, loss_kind)?;
                (
                    Some(e),
                    LossConcentration::of(&losses, self.objective.threshold()),
                )
            } else {
                (None, None)
            };
            let param_norm = crate::params::tensors_norm(
                &model
                    .params()
                    .iter()
                    .map(|p| p.var.as_tensor().clone())
                    .collect::<Vec<_>>(),
            )?;
            state.epochs_done = epoch;
            let report = EpochReport {
                epoch,
                train_loss,
                lr,
                validation,
                seconds: started.elapsed().as_secs_f64(),
                train: train_eval,
                test,
                param_norm,
                grad_norm: grad_norm_sum / steps_per_epoch as f64,
                concentration,
            };
            state.history.push(report.clone());
            if let Some(p) = state_path {
                self.save_state(model, &state, p)?;
            }
            tracing::debug!(epoch, train_loss, lr, "epoch done");
            on_event(TrainEvent::Epoch(&report));
            reports.push(report);
        }
        Ok(TrainReport {
            history: state.history,
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
        meta.insert(STATE_HISTORY.into(), exact_history_json(&state.history));
        meta.insert(
            checkpoint::keys::STATE_FINGERPRINT.into(),
            serde_json::to_string(&self.full_fingerprint()).expect("maps serialise"),
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
        let saved: BTreeMap<String, String> = raw
            .metadata
            .get(checkpoint::keys::STATE_FINGERPRINT)
            .and_then(|c| serde_json::from_str(c).ok())
            .ok_or_else(|| {
                bad(
                    "not a training-state file of this version of terrain; delete it to start over"
                        .into(),
                )
            })?;
        let now = self.full_fingerprint();
        if let Some(e) = crate::error::resume_mismatch(path, &saved, &now) {
            return Err(e);
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
                    // Its own storage (the host step updates buffers in place).
                    Ok(get(format!("{prefix}{}", p.name))?
                        .to_dtype(model.dtype())?
                        .to_device(model.device())?
                        .copy()?)
                })
                .collect()
        };
        let number = |key: &str| {
            raw.metadata
                .get(key)
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| bad(format!("metadata `{key}` missing")))
        };
        let epochs_done = number(STATE_EPOCHS)?;
        if epochs_done > self.config.epochs {
            return Err(Error::ResumeMismatch {
                path: path.to_path_buf(),
                settings: format!(
                    "training.epochs (the saved state is after epoch {epochs_done}, beyond the {} asked for; ask for at least {epochs_done}, or delete the state to start over)",
                    self.config.epochs
                ),
            });
        }
        let history: Vec<EpochReport> = match raw.metadata.get(STATE_HISTORY) {
            Some(h) => parse_exact_history(h)
                .map_err(|e| bad(format!("metadata `{STATE_HISTORY}` is malformed: {e}")))?,
            None => Vec::new(),
        };
        let state = OptState {
            history,
            epochs_done,
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

/// How many times the first step's loss (floored at 1) an epoch's mean loss may reach before the
/// run counts as diverged.
pub const DIVERGENCE_FACTOR: f64 = 1e4;

/// Flattens a JSON value into `prefix.key.sub = value` text entries (the settings a resumed run
/// compares one by one, so a refusal can name the one that changed).
pub fn flatten_settings(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut BTreeMap<String, String>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_settings(&key, v, out);
            }
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// One optimiser step on every parameter of `model` with `grads` (in [`Model::params`] order).
/// On the CPU in f32/f64 the step runs in plain loops over host copies ([`host_update`]): candle's
/// elementwise kernels would wake its spinning barrier pool a dozen times per parameter per step,
/// which on a small machine takes a core from the next step's gradient. Elsewhere
/// [`tensor_update`] runs the same formulas as candle ops. Both evaluate each formula in the same
/// order, with the same roundings, so they agree to the bit.
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
        let v = state.v.get_mut(i);
        match (w.device().is_cpu(), w.dtype()) {
            (true, DType::F32) => {
                host_update::<f32>(&p.var, opt, lr, t, &grads[i], &mut state.m[i], v)?
            }
            (true, DType::F64) => {
                host_update::<f64>(&p.var, opt, lr, t, &grads[i], &mut state.m[i], v)?
            }
            _ => tensor_update(&p.var, opt, lr, t, &grads[i], &mut state.m[i], v)?,
        }
    }
    Ok(())
}

/// The optimiser's step on one parameter `var` by candle ops (any device and dtype): step `t`
/// (from 1), gradient `g`, first-moment or momentum buffer `m`, Adam's second moments `v`.
fn tensor_update(
    var: &candle_core::Var,
    opt: &Optimizer,
    lr: f64,
    t: i32,
    g: &Tensor,
    m: &mut Tensor,
    v: Option<&mut Tensor>,
) -> Result<()> {
    let w = var.as_tensor();
    let g = g.to_dtype(w.dtype())?;
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
                let buf = if t == 1 { g } else { ((&*m * momentum)? + g)? };
                *m = buf.clone();
                buf
            } else {
                g
            };
            var.set(&(w - (d * lr)?)?)?;
        }
        Optimizer::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let v = v.ok_or_else(|| adam_without_second_moments(var))?;
            let g = if weight_decay > 0.0 {
                (g + (w * weight_decay)?)?
            } else {
                g
            };
            let m1 = ((&*m * beta1)? + (&g * (1.0 - beta1))?)?;
            let v1 = ((&*v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let mhat = (&m1 / (1.0 - beta1.powi(t)))?;
            let vhat = (&v1 / (1.0 - beta2.powi(t)))?;
            let upd = (mhat / (vhat.sqrt()? + eps)?)?;
            var.set(&(w - (upd * lr)?)?)?;
            *m = m1;
            *v = v1;
        }
    }
    Ok(())
}

/// The error for an Adam state without second moments (a state built for SGD).
fn adam_without_second_moments(var: &candle_core::Var) -> Error {
    Error::config(
        "optimizer",
        "adam",
        format!(
            "the optimiser state holds no second moments for the tensor shaped {:?}",
            var.dims()
        ),
    )
}

/// A float the host optimiser step computes in (f32, f64).
trait HostFloat: candle_core::WithDType {
    fn sqrt(self) -> Self;
    /// The values of a CPU storage of this dtype, mutable.
    fn values_mut(s: &mut candle_core::CpuStorage) -> Option<&mut [Self]>;
}

impl HostFloat for f32 {
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn values_mut(s: &mut candle_core::CpuStorage) -> Option<&mut [Self]> {
        match s {
            candle_core::CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl HostFloat for f64 {
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn values_mut(s: &mut candle_core::CpuStorage) -> Option<&mut [Self]> {
        match s {
            candle_core::CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// The contiguous values `[start, end)` a CPU layout covers.
fn contiguous_range(l: &candle_core::Layout) -> candle_core::Result<std::ops::Range<usize>> {
    l.contiguous_offsets()
        .map(|(a, b)| a..b)
        .ok_or_else(|| candle_core::Error::Msg("optimiser step: a strided tensor".into()))
}

/// The values of `dst` (mutable) and of each source, checked to be as many.
fn step_views<'a, T: HostFloat>(
    dst: &'a mut candle_core::CpuStorage,
    dst_l: &candle_core::Layout,
    srcs: &[(&'a candle_core::CpuStorage, &candle_core::Layout)],
) -> candle_core::Result<(&'a mut [T], Vec<&'a [T]>)> {
    let d = contiguous_range(dst_l)?;
    let mut views = Vec::with_capacity(srcs.len());
    for (s, l) in srcs {
        let r = contiguous_range(l)?;
        if r.len() != d.len() {
            candle_core::bail!("optimiser step: {} values against {}", r.len(), d.len());
        }
        views.push(&s.as_slice::<T>()?[r]);
    }
    let values = T::values_mut(dst)
        .ok_or_else(|| candle_core::Error::Msg("optimiser step: another dtype".into()))?;
    Ok((&mut values[d], views))
}

/// An elementwise update of one CPU tensor in place reading one other of its shape: the
/// optimiser's loops run on candle's own storage, without copies or candle kernels.
struct InPlace2<'f, T>(&'f dyn Fn(&mut [T], &[T]));

impl<T: HostFloat> candle_core::InplaceOp2 for InPlace2<'_, T> {
    fn name(&self) -> &'static str {
        "optimiser step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (dst, src) = step_views::<T>(s1, l1, &[(s2, l2)])?;
        (self.0)(dst, src[0]);
        Ok(())
    }
}

/// The loop of an [`InPlace3`]: the destination's values and two sources'.
type Loop3<'f, T> = &'f dyn Fn(&mut [T], &[T], &[T]);

/// [`InPlace2`] reading two other tensors.
struct InPlace3<'f, T>(Loop3<'f, T>);

impl<T: HostFloat> candle_core::InplaceOp3 for InPlace3<'_, T> {
    fn name(&self) -> &'static str {
        "optimiser step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (dst, src) = step_views::<T>(s1, l1, &[(s2, l2), (s3, l3)])?;
        (self.0)(dst, src[0], src[1]);
        Ok(())
    }
}

/// [`tensor_update`] in place, in plain loops over candle's CPU storage of dtype `T` (the
/// parameter, its gradient and the buffers contiguous and of that dtype; anything else goes to
/// [`tensor_update`]). candle's scalar ops are `x·T(a) + T(b)` (`x * s` is `x·T(s) + 0`, `x / s`
/// is `x·T(1/s) + 0`, `x + s` is `x·1 + T(s)`), and each is reproduced here as written, so the
/// two paths round alike.
fn host_update<T: HostFloat>(
    var: &candle_core::Var,
    opt: &Optimizer,
    lr: f64,
    t: i32,
    g: &Tensor,
    m: &mut Tensor,
    v: Option<&mut Tensor>,
) -> Result<()> {
    let w = var.as_tensor();
    let g = g.to_dtype(T::DTYPE)?;
    let plain = |x: &Tensor| x.is_contiguous() && x.dtype() == T::DTYPE && x.dims() == w.dims();
    if !(plain(w) && plain(&g) && plain(m) && v.as_deref().is_none_or(plain)) {
        return tensor_update(var, opt, lr, t, &g, m, v);
    }
    // candle's `affine(x, a, b)`: `x·T(a) + T(b)`.
    let affine = |x: T, a: f64, b: f64| x * T::from_f64(a) + T::from_f64(b);
    // The gradient with its L2 term, `g + w·λ`.
    let decayed = move |g: T, w: T, weight_decay: f64| {
        if weight_decay > 0.0 {
            g + affine(w, weight_decay, 0.0)
        } else {
            g
        }
    };
    match *opt {
        Optimizer::Sgd {
            momentum,
            weight_decay,
        } if momentum > 0.0 => {
            // PyTorch: the first step initialises the buffer with the gradient.
            m.inplace_op3(
                &g,
                w,
                &InPlace3::<T>(&|m, g, w| {
                    for ((m, &g), &w) in m.iter_mut().zip(g).zip(w) {
                        let d = decayed(g, w, weight_decay);
                        *m = if t == 1 {
                            d
                        } else {
                            affine(*m, momentum, 0.0) + d
                        };
                    }
                }),
            )?;
            w.inplace_op2(
                m,
                &InPlace2::<T>(&|w, m| {
                    for (w, &m) in w.iter_mut().zip(m) {
                        *w -= affine(m, lr, 0.0);
                    }
                }),
            )?;
        }
        Optimizer::Sgd { weight_decay, .. } => {
            w.inplace_op2(
                &g,
                &InPlace2::<T>(&|w, g| {
                    for (w, &g) in w.iter_mut().zip(g) {
                        *w -= affine(decayed(g, *w, weight_decay), lr, 0.0);
                    }
                }),
            )?;
        }
        Optimizer::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let v = v.ok_or_else(|| adam_without_second_moments(var))?;
            m.inplace_op3(
                &g,
                w,
                &InPlace3::<T>(&|m, g, w| {
                    for ((m, &g), &w) in m.iter_mut().zip(g).zip(w) {
                        let d = decayed(g, w, weight_decay);
                        *m = affine(*m, beta1, 0.0) + affine(d, 1.0 - beta1, 0.0);
                    }
                }),
            )?;
            v.inplace_op3(
                &g,
                w,
                &InPlace3::<T>(&|v, g, w| {
                    for ((v, &g), &w) in v.iter_mut().zip(g).zip(w) {
                        let d = decayed(g, w, weight_decay);
                        *v = affine(*v, beta2, 0.0) + affine(d * d, 1.0 - beta2, 0.0);
                    }
                }),
            )?;
            let (c1, c2) = (1.0 / (1.0 - beta1.powi(t)), 1.0 / (1.0 - beta2.powi(t)));
            w.inplace_op3(
                m,
                v,
                &InPlace3::<T>(&|w, m, v| {
                    for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
                        let upd = affine(m, c1, 0.0) / affine(affine(v, c2, 0.0).sqrt(), 1.0, eps);
                        *w -= affine(upd, lr, 0.0);
                    }
                }),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host optimiser step and the candle-op step give the same bits, step after step, for
    /// SGD (plain, momentum, weight decay) and Adam (with and without weight decay), in f32 and
    /// f64; and both are the textbook formulas (checked in f64 against a loop written here).
    #[test]
    fn host_and_tensor_optimiser_steps_agree_to_the_bit() {
        let dev = candle_core::Device::Cpu;
        let opts = [
            Optimizer::Sgd {
                momentum: 0.0,
                weight_decay: 0.0,
            },
            Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 5e-4,
            },
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            Optimizer::Adam {
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-6,
                weight_decay: 0.01,
            },
        ];
        for dtype in [DType::F32, DType::F64] {
            for opt in &opts {
                let w0 = crate::rng::normal_tensor(&[7, 5], 1, dtype, &dev).unwrap();
                let (a, b) = (
                    candle_core::Var::from_tensor(&w0).unwrap(),
                    candle_core::Var::from_tensor(&w0).unwrap(),
                );
                // Each buffer its own storage, as the trainer's state holds them: the host
                // step updates them in place.
                let zero = || w0.zeros_like().unwrap();
                let (mut ma, mut va, mut mb, mut vb) = (zero(), zero(), zero(), zero());
                // Independent f64 reference (PyTorch's update rules).
                let mut w = w0
                    .flatten_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let (mut m, mut v) = (vec![0.0; w.len()], vec![0.0; w.len()]);
                for t in 1..=5 {
                    let g = crate::rng::normal_tensor(&[7, 5], 10 + t as u64, dtype, &dev).unwrap();
                    let lr = 0.1 / t as f64;
                    match dtype {
                        DType::F32 => {
                            host_update::<f32>(&a, opt, lr, t, &g, &mut ma, Some(&mut va))
                        }
                        _ => host_update::<f64>(&a, opt, lr, t, &g, &mut ma, Some(&mut va)),
                    }
                    .unwrap();
                    tensor_update(&b, opt, lr, t, &g, &mut mb, Some(&mut vb)).unwrap();
                    let bits = |x: &Tensor| -> Vec<u64> {
                        let x = x.flatten_all().unwrap();
                        match dtype {
                            DType::F32 => x
                                .to_vec1::<f32>()
                                .unwrap()
                                .iter()
                                .map(|v| v.to_bits() as u64)
                                .collect(),
                            _ => x
                                .to_vec1::<f64>()
                                .unwrap()
                                .iter()
                                .map(|v| v.to_bits())
                                .collect(),
                        }
                    };
                    assert_eq!(
                        bits(a.as_tensor()),
                        bits(b.as_tensor()),
                        "{opt} {dtype:?} step {t}: weights"
                    );
                    assert_eq!(
                        bits(&ma),
                        bits(&mb),
                        "{opt} {dtype:?} step {t}: first buffer"
                    );
                    if matches!(opt, Optimizer::Adam { .. }) {
                        assert_eq!(
                            bits(&va),
                            bits(&vb),
                            "{opt} {dtype:?} step {t}: second moments"
                        );
                    }
                    let g = g
                        .flatten_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap();
                    for i in 0..w.len() {
                        match *opt {
                            Optimizer::Sgd {
                                momentum,
                                weight_decay,
                            } => {
                                let d = g[i] + weight_decay * w[i];
                                m[i] = if t == 1 { d } else { momentum * m[i] + d };
                                w[i] -= lr * if momentum > 0.0 { m[i] } else { d };
                            }
                            Optimizer::Adam {
                                beta1,
                                beta2,
                                eps,
                                weight_decay,
                            } => {
                                let d = g[i] + weight_decay * w[i];
                                m[i] = beta1 * m[i] + (1.0 - beta1) * d;
                                v[i] = beta2 * v[i] + (1.0 - beta2) * d * d;
                                let mh = m[i] / (1.0 - beta1.powi(t));
                                let vh = v[i] / (1.0 - beta2.powi(t));
                                w[i] -= lr * mh / (vh.sqrt() + eps);
                            }
                        }
                    }
                    let got = a
                        .as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap();
                    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                    for (x, y) in got.iter().zip(&w) {
                        assert!(
                            (x - y).abs() <= tol * (1.0 + y.abs()),
                            "{opt} {dtype:?} step {t}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn compact_forms_round_trip() {
        for s in ["none", "step:10:0.5", "multistep:75,150:0.1"] {
            let d: LrDecay = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<LrDecay>().unwrap(), d);
        }
        for o in [
            Optimizer::sgd(),
            Optimizer::adam(),
            Optimizer::Sgd {
                momentum: 0.0,
                weight_decay: 5e-4,
            },
        ] {
            assert_eq!(o.to_string().parse::<Optimizer>().unwrap(), o);
        }
        assert_eq!("sgd".parse::<Optimizer>().unwrap(), Optimizer::sgd());
        assert_eq!(
            "adam:weight_decay=0.01".parse::<Optimizer>().unwrap(),
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
            }
        );
    }

    #[test]
    fn bad_compact_forms_and_nan_name_the_problem() {
        for (s, needle) in [
            ("step:0:0.5", "every"),
            ("step:2:nan", "gamma"),
            ("step:x:0.5", "`x`"),
            ("multistep::0.1", "milestone"),
            ("cosine", "expected"),
        ] {
            let e = s.parse::<LrDecay>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
        for (s, needle) in [
            ("rmsprop", "sgd or adam"),
            ("sgd:momentum=nan", "momentum"),
            ("sgd:beta1=0.9", "beta1"),
            ("adam:eps=0", "eps"),
            ("adam:eps=nan", "eps"),
            ("sgd:momentum", "key=value"),
        ] {
            let e = s.parse::<Optimizer>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
        let nan = TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        };
        assert!(nan.check().unwrap_err().to_string().contains("lr"));
    }
}
