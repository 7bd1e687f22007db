//! Mode connectivity: loss and error along a path between two trained models — the straight
//! line, or a quadratic Bezier curve whose middle point is trained (Garipov et al. 2018) — and
//! the summaries of Yang et al. 2021 (`mc`) and the MD tree (`mc_peak`).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Tensor, Var};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use terrain_model::{
    Model,
    data::{Dataset, Task},
    loss::{self, LossKind},
    params::ParamVec,
    progress::Progress,
};

use crate::{Error, Result, direction, surface::Evaluator};

/// The path between the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `(1−t)·A + t·B`, no training.
    Linear,
    /// `(1−t)²·A + 2t(1−t)·θ + t²·B` with a trained middle point θ.
    Bezier,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linear" => Ok(Method::Linear),
            "bezier" => Ok(Method::Bezier),
            _ => Err(Error::config("method", s, "expected linear or bezier")),
        }
    }
}

impl std::fmt::Display for Method {
    /// `linear` or `bezier`, which parse back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Linear => "linear",
            Method::Bezier => "bezier",
        })
    }
}

/// Settings of the Bezier curve's training (the MD tree's, after Garipov et al.).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurveTraining {
    /// Passes over the training data. Default 50 (the MD tree's for the full data set).
    pub epochs: usize,
    /// Base learning rate. Default 0.01.
    pub lr: f64,
    /// SGD momentum. Default 0.9.
    pub momentum: f64,
    /// L2 regulariser `½·wd·‖w(t)‖²` on the curve's weights at the sampled `t`. Default 5e-4.
    pub weight_decay: f64,
    /// Rows per step. Default 128.
    pub batch_size: usize,
    /// Seed of the shuffling and of the `t` drawn per step. Default 0.
    pub seed: u64,
    /// Where progress goes (never changes a result).
    #[serde(skip)]
    pub progress: Progress,
}

impl Default for CurveTraining {
    fn default() -> Self {
        CurveTraining {
            epochs: 50,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
            batch_size: 128,
            seed: 0,
            progress: Progress::hidden(),
        }
    }
}

impl CurveTraining {
    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        terrain_model::config::count("epochs", self.epochs)?;
        terrain_model::config::positive("lr", self.lr)?;
        terrain_model::config::unit_interval("momentum", self.momentum)?;
        terrain_model::config::non_negative("weight_decay", self.weight_decay)?;
        terrain_model::config::at_least("batch_size", self.batch_size, 1)?;
        Ok(())
    }

    /// Garipov et al.'s curve schedule at epoch `epoch` (1-based) of `epochs`: the base rate for
    /// the first half, then a linear decay to 1% at 90%, then 1%.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let alpha = epoch as f64 / self.epochs as f64;
        let factor = if alpha <= 0.5 {
            1.0
        } else if alpha <= 0.9 {
            1.0 - (alpha - 0.5) / 0.4 * 0.99
        } else {
            0.01
        };
        self.lr * factor
    }
}

/// Settings of [`connect`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectConfig {
    /// The path.
    pub method: Method,
    /// Evaluated points, evenly spaced in `[0, 1]` (at least 2). Default 5.
    pub points: usize,
    /// The loss.
    pub loss: LossKind,
    /// Rows per forward pass (evaluation and BatchNorm statistics). Default 512.
    pub batch_size: usize,
    /// Bezier training.
    pub training: CurveTraining,
}

impl ConnectConfig {
    /// A path of `method` with `loss` and the defaults.
    pub fn new(method: Method, loss: LossKind) -> Self {
        ConnectConfig {
            method,
            points: 5,
            loss,
            batch_size: 512,
            training: CurveTraining::default(),
        }
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        terrain_model::config::at_least("points", self.points, 2)?;
        terrain_model::config::count("points", self.points)?;
        terrain_model::config::at_least("batch_size", self.batch_size, 1)?;
        if self.method == Method::Bezier {
            self.training.check()?;
        }
        Ok(())
    }
}

/// Loss and error along the path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Connectivity {
    /// The path.
    pub method: Method,
    /// The evaluated `t`.
    pub t: Vec<f64>,
    /// Mean loss at each `t`.
    pub loss: Vec<f64>,
    /// Error in percent at each `t` (classification only).
    pub error: Option<Vec<f64>>,
    /// Yang et al.'s `mc` on the errors (classification) or else the losses.
    pub mc: f64,
    /// The MD tree's `mode_connectivity_peak`: minus the largest interior error (or loss).
    pub mc_peak: f64,
    /// The trained middle point's final training loss (Bezier only).
    pub curve_train_loss: Option<f64>,
    /// Epochs of curve training a saved state had done when this run continued from it (`None`:
    /// a fresh run, or no training).
    #[serde(default)]
    pub resumed_at_epoch: Option<usize>,
}

/// Yang et al.'s mode connectivity of values `e` along a path: `(e₀+e_last)/2 − e_u` with
/// `u = argmax_t |e_t − (e₀+e_last)/2|` (the first on ties). Negative: a barrier.
///
/// ```
/// use terrain_metrics::connect::{mc, mc_peak};
/// let e = [2.0, 10.0, 30.0, 12.0, 4.0];
/// assert_eq!(mc(&e), 3.0 - 30.0);
/// assert_eq!(mc_peak(&e), -30.0);
/// ```
pub fn mc(e: &[f64]) -> f64 {
    let Some((&first, &last)) = e.first().zip(e.last()) else {
        return f64::NAN;
    };
    let mid = (first + last) / 2.0;
    let mut u = 0;
    for (k, v) in e.iter().enumerate() {
        if (v - mid).abs() > (e[u] - mid).abs() {
            u = k;
        }
    }
    mid - e[u]
}

/// The MD tree's `mode_connectivity_peak`: `−max` of the interior values (all but the ends).
pub fn mc_peak(e: &[f64]) -> f64 {
    if e.len() < 3 {
        return f64::NAN;
    }
    -e[1..e.len() - 1]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
}

/// The point of a path at `t`: linear `(1−t)a + tb`, or Bezier with middle `mid`.
pub fn path_point(a: &ParamVec, b: &ParamVec, mid: Option<&ParamVec>, t: f64) -> Result<ParamVec> {
    Ok(match mid {
        None => a.scale(1.0 - t)?.axpy(t, b)?,
        Some(m) => a
            .scale((1.0 - t) * (1.0 - t))?
            .axpy(2.0 * t * (1.0 - t), m)?
            .axpy(t * t, b)?,
    })
}

/// Trains the middle point of a quadratic Bezier curve between `a` and `b` (endpoints fixed, the
/// middle starting at the linear midpoint) on `train`: per step a `t ~ U(0, 1)`, the loss of the
/// curve's weights at `t` in training mode (batch statistics) plus `½·wd·‖w(t)‖²`, SGD with
/// momentum on the middle point, whose gradient is `2t(1−t)` times the weights' gradient.
/// `work` is a model of the same architecture used for the forward passes. Returns the middle
/// point and the last epoch's mean training loss.
pub fn train_bezier(
    work: &Model,
    a: &ParamVec,
    b: &ParamVec,
    train: &Dataset,
    loss_kind: LossKind,
    cfg: &CurveTraining,
) -> Result<(ParamVec, f64)> {
    let (mid, last, _) = train_bezier_resumable(work, a, b, train, loss_kind, cfg, None)?;
    Ok((mid, last))
}

/// [`train_bezier`] that keeps its state in the safetensors file `state` after every epoch (the
/// middle point, the momentum buffer, the epochs done, the position of the generator that draws
/// `t`, the last epoch's loss; written atomically: a temporary file renamed into place) and, when
/// the file exists, continues from it, so a killed run ends exactly as an uninterrupted one
/// (written by [`terrain_curvature::resume::write_atomic`], flushed to disk before the rename). A
/// state written for other endpoints, data or settings is refused, naming each setting with its
/// saved and current value. Returns also the epochs a resumed run found done.
pub fn train_bezier_resumable(
    work: &Model,
    a: &ParamVec,
    b: &ParamVec,
    train: &Dataset,
    loss_kind: LossKind,
    cfg: &CurveTraining,
    state: Option<&Path>,
) -> Result<(ParamVec, f64, Option<usize>)> {
    cfg.check()?;
    loss::check_fits(work, train)?;
    let mut mid = a.scale(0.5)?.axpy(0.5, b)?;
    let mut velocity = mid.scale(0.0)?;
    let mut rng = terrain_model::rng::rng_stream(cfg.seed, 1);
    let mut last = f64::NAN;
    let mut done = 0;
    let settings = match state {
        Some(_) => curve_settings(work, a, b, train, loss_kind, cfg)?,
        None => BTreeMap::new(),
    };
    let mut resumed_at = None;
    if let Some(path) = state.filter(|p| p.exists()) {
        let saved = CurveState::read(path, &settings, &mid)?;
        mid = saved.mid;
        velocity = saved.velocity;
        rng.set_word_pos(saved.word_pos);
        last = saved.last;
        done = saved.epochs;
        resumed_at = Some(done);
        tracing::info!(path = %path.display(), epochs = done, "resuming curve training");
    }
    let vars: Vec<Var> = work.params().iter().map(|p| p.var.clone()).collect();
    let steps = train.num_batches(cfg.batch_size, true).max(1) as u64;
    cfg.progress.start("curve", Some(steps * cfg.epochs as u64));
    cfg.progress.set_position(steps * done as u64);
    for epoch in done + 1..=cfg.epochs {
        let lr = cfg.lr_at(epoch);
        let shuffle = terrain_model::rng::stream_seed(cfg.seed, epoch as u64 + 1);
        let drop_last = train.len() > cfg.batch_size;
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in train.batches(cfg.batch_size, Some(shuffle), drop_last)? {
            let batch = batch?;
            let t: f64 = rng.random::<f64>();
            let w = path_point(a, b, Some(&mid), t)?;
            w.assign_to(work)?;
            let out = work.forward_with(&batch.x, true, false)?;
            let l = loss::mean(&out, &batch.y, loss_kind)?;
            let l2 = vars
                .iter()
                .map(|v| v.as_tensor().sqr()?.sum_all())
                .collect::<candle_core::Result<Vec<Tensor>>>()?;
            let reg = Tensor::stack(&l2, 0)?
                .sum_all()?
                .affine(0.5 * cfg.weight_decay, 0.0)?;
            let total = (&l + reg.to_dtype(l.dtype())?)?;
            let value = l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("curve training loss (epoch {epoch})"),
                    value,
                });
            }
            sum += value;
            n += 1;
            let grads = total.backward()?;
            let scale = 2.0 * t * (1.0 - t);
            let tensors = vars
                .iter()
                .map(|v| match grads.get(v) {
                    Some(g) => Ok((g.detach() * scale)?),
                    None => Ok(v.zeros_like()?),
                })
                .collect::<Result<Vec<Tensor>>>()?;
            let g = ParamVec {
                names: mid.names.clone(),
                tensors,
            };
            velocity = velocity.scale(cfg.momentum)?.add(&g)?;
            mid = mid.axpy(-lr, &velocity)?;
            cfg.progress.inc(1);
        }
        last = sum / n.max(1) as f64;
        if let Some(path) = state {
            CurveState {
                mid: mid.clone(),
                velocity: velocity.clone(),
                word_pos: rng.get_word_pos(),
                last,
                epochs: epoch,
            }
            .write(path, &settings)?;
        }
    }
    cfg.progress.finish();
    Ok((mid, last, resumed_at))
}

/// Everything that shapes a curve's training, for its state file: the architecture, dtype and
/// device, the endpoints' and data's fingerprints, the loss and every training setting.
fn curve_settings(
    work: &Model,
    a: &ParamVec,
    b: &ParamVec,
    train: &Dataset,
    loss_kind: LossKind,
    cfg: &CurveTraining,
) -> Result<BTreeMap<String, String>> {
    let mut s = BTreeMap::new();
    s.insert("arch".to_string(), work.spec().to_string());
    s.insert("dtype".into(), format!("{:?}", work.dtype()));
    s.insert("device".into(), format!("{:?}", work.device().location()));
    s.insert(
        "endpoint a".into(),
        format!("{:016x}", direction::fingerprint(a)?),
    );
    s.insert(
        "endpoint b".into(),
        format!("{:016x}", direction::fingerprint(b)?),
    );
    s.insert(
        "data".into(),
        format!(
            "{} ({} rows, hash {:016x})",
            train.name,
            train.len(),
            train.content_hash()?
        ),
    );
    s.insert("loss".into(), loss_kind.to_string());
    s.insert("epochs".into(), cfg.epochs.to_string());
    s.insert("lr".into(), cfg.lr.to_string());
    s.insert("momentum".into(), cfg.momentum.to_string());
    s.insert("weight_decay".into(), cfg.weight_decay.to_string());
    s.insert("batch_size".into(), cfg.batch_size.to_string());
    s.insert("seed".into(), cfg.seed.to_string());
    Ok(s)
}

const STATE_VERSION: &str = "terrain.curve_state.version";
const STATE_SETTINGS: &str = "terrain.curve_state.settings";
const STATE_EPOCHS: &str = "terrain.curve_state.epochs";
const STATE_WORD_POS: &str = "terrain.curve_state.rng_word_pos";
const STATE_LAST: &str = "terrain.curve_state.last_loss";

/// Curve training after an epoch.
struct CurveState {
    mid: ParamVec,
    velocity: ParamVec,
    word_pos: u128,
    last: f64,
    epochs: usize,
}

impl CurveState {
    fn write(&self, path: &Path, settings: &BTreeMap<String, String>) -> Result<()> {
        let mut tensors = Vec::new();
        for (prefix, v) in [("mid", &self.mid), ("velocity", &self.velocity)] {
            for (name, t) in v.names.iter().zip(&v.tensors) {
                tensors.push((format!("{prefix}.{name}"), t.clone()));
            }
        }
        let mut meta = BTreeMap::new();
        meta.insert(STATE_VERSION.to_string(), "1".to_string());
        meta.insert(
            STATE_SETTINGS.to_string(),
            serde_json::to_string(settings).expect("maps serialise"),
        );
        meta.insert(STATE_EPOCHS.to_string(), self.epochs.to_string());
        meta.insert(STATE_WORD_POS.to_string(), self.word_pos.to_string());
        // Rust's shortest round-trip form: parses back to the same bits.
        meta.insert(STATE_LAST.to_string(), self.last.to_string());
        Ok(terrain_curvature::resume::write_atomic(
            path, &tensors, &meta,
        )?)
    }

    /// Reads a state, refusing one of other settings; `like` gives the names, shapes, dtype and
    /// device of the curve's parameters.
    fn read(path: &Path, settings: &BTreeMap<String, String>, like: &ParamVec) -> Result<Self> {
        let raw = terrain_model::checkpoint::read_file(path)?;
        let bad = |reason: String| Error::StateFile {
            path: path.to_path_buf(),
            reason,
        };
        if raw.metadata.get(STATE_VERSION).map(String::as_str) != Some("1") {
            return Err(bad(
                "not a curve-training state file of this version of terrain".into(),
            ));
        }
        let get = |key: &str| {
            raw.metadata
                .get(key)
                .ok_or_else(|| bad(format!("metadata `{key}` is missing")))
        };
        let saved: BTreeMap<String, String> = serde_json::from_str(get(STATE_SETTINGS)?)
            .map_err(|e| bad(format!("metadata `{STATE_SETTINGS}` is malformed: {e}")))?;
        let differ = crate::surface::settings_diff(&saved, settings);
        if !differ.is_empty() {
            return Err(terrain_model::Error::ResumeMismatch {
                path: path.to_path_buf(),
                settings: differ.join("; "),
            }
            .into());
        }
        let parse = |key: &str| -> Result<String> { Ok(get(key)?.clone()) };
        let epochs: usize = parse(STATE_EPOCHS)?
            .parse()
            .map_err(|e| bad(format!("metadata `{STATE_EPOCHS}`: {e}")))?;
        let word_pos: u128 = parse(STATE_WORD_POS)?
            .parse()
            .map_err(|e| bad(format!("metadata `{STATE_WORD_POS}`: {e}")))?;
        let last: f64 = parse(STATE_LAST)?
            .parse()
            .map_err(|e| bad(format!("metadata `{STATE_LAST}`: {e}")))?;
        let load = |prefix: &str| -> Result<ParamVec> {
            let tensors = like
                .names
                .iter()
                .zip(&like.tensors)
                .map(|(name, t)| {
                    let key = format!("{prefix}.{name}");
                    let saved = raw.tensors.get(&key).ok_or_else(|| {
                        Error::from(terrain_model::Error::MissingTensor {
                            path: path.to_path_buf(),
                            name: key.clone(),
                            available: format!("{} tensors", raw.tensors.len()),
                        })
                    })?;
                    if saved.dims() != t.dims() || saved.dtype() != t.dtype() {
                        return Err(bad(format!(
                            "tensor `{key}` is {:?} {:?}, the curve's is {:?} {:?}",
                            saved.dtype(),
                            saved.dims(),
                            t.dtype(),
                            t.dims()
                        )));
                    }
                    Ok(saved.to_device(t.device())?)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ParamVec {
                names: like.names.clone(),
                tensors,
            })
        };
        Ok(CurveState {
            mid: load("mid")?,
            velocity: load("velocity")?,
            word_pos,
            last,
            epochs,
        })
    }
}

/// Loss and error along the path from `a` to `b` on `train` (the training data: errors are
/// training errors, as in Yang et al. and the MD tree). BatchNorm statistics are recomputed on
/// `train` at every evaluated `t`, the ends included, as the curve code does. Neither model is
/// changed.
pub fn connect(
    a: &Model,
    b: &Model,
    train: &Dataset,
    config: &ConnectConfig,
) -> Result<Connectivity> {
    connect_resumable(a, b, train, config, None)
}

/// [`connect`] whose Bezier training keeps its state in `state` after every epoch and continues
/// from it ([`train_bezier_resumable`]); the linear path has nothing to resume and ignores it.
pub fn connect_resumable(
    a: &Model,
    b: &Model,
    train: &Dataset,
    config: &ConnectConfig,
    state: Option<&Path>,
) -> Result<Connectivity> {
    config.check()?;
    direction::same_architecture(
        "mode connectivity",
        a,
        b,
        "the first checkpoint",
        "the second checkpoint",
    )?;
    let work = a.deep_clone()?;
    let pa = ParamVec::from_model(a)?;
    let pb = ParamVec::from_model(b)?.map(|t| t.to_dtype(a.dtype())?.to_device(a.device()))?;
    let (mid, curve_train_loss, resumed_at_epoch) = match config.method {
        Method::Linear => (None, None, None),
        Method::Bezier => {
            let (m, l, at) = train_bezier_resumable(
                &work,
                &pa,
                &pb,
                train,
                config.loss,
                &config.training,
                state,
            )?;
            (Some(m), Some(l), at)
        }
    };
    let eval = Evaluator::new(&work, train, config.loss, config.batch_size)?;
    let has_bn = !work.buffers().is_empty();
    let n = config.points;
    let ts: Vec<f64> = (0..n).map(|k| k as f64 / (n - 1) as f64).collect();
    let (mut losses, mut errors) = (Vec::new(), Vec::new());
    for &t in &ts {
        // Every t, the ends included, as a point of the path (at t = 0 and 1 the path's weights
        // are the checkpoints' own), with BatchNorm statistics recomputed on the training data.
        path_point(&pa, &pb, mid.as_ref(), t)?.assign_to(&work)?;
        if has_bn {
            work.recompute_batch_norm_stats(train, config.batch_size)?;
        }
        let (l, e) = eval.evaluate(&work)?;
        losses.push(l);
        errors.push(e.map(|e| 100.0 * e));
    }
    let classification = matches!(train.task, Task::Classification { .. });
    let error: Option<Vec<f64>> =
        classification.then(|| errors.iter().map(|e| e.unwrap_or(f64::NAN)).collect());
    let summarised = error.as_ref().unwrap_or(&losses);
    Ok(Connectivity {
        method: config.method,
        mc: mc(summarised),
        mc_peak: mc_peak(summarised),
        t: ts,
        loss: losses,
        error,
        curve_train_loss,
        resumed_at_epoch,
    })
}
