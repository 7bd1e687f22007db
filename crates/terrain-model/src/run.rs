//! The training recipe as a library: one serde [`RunSpec`] describes a whole run (data
//! preparation → training → evaluation → checkpoint with metadata), and [`RunSpec::run`] carries
//! it out. `terrain train` maps its flags onto a `RunSpec`; hyperparameter sweeps and model zoos
//! call the same function, so every model terrain trains is trained the same way.
//!
//! Randomness comes from named seed streams ([`Seeds`]), all derived from one base seed by
//! default, so changing the subset does not change the split, and changing the initialisation
//! seed does not change which rows were held out.
//!
//! ```
//! use terrain_model::{ArchSpec, run::{RunOptions, RunSpec}};
//!
//! let mut spec = RunSpec::new("mlp:64-16-10:tanh".parse::<ArchSpec>()?, "digits", 7);
//! spec.training.epochs = 2;
//! let out = spec.run(&RunOptions::default())?;
//! assert_eq!(out.report.epochs.len(), 2);
//! assert!(out.test.unwrap().error.unwrap() < 0.5);
//! # Ok::<(), terrain_model::Error>(())
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::{
    ArchSpec, Error, Model, Result, checkpoint, config,
    data::{self, Dataset, Standardizer},
    device::FloatType,
    loss::{self, Evaluation, LossKind},
    progress::Progress,
    rng::stream_seed,
    train::{EvalSets, Objective, TrainConfig, TrainEvent, TrainReport, Trainer},
};

/// The named seed streams of a run. [`Seeds::derive`] makes them all from one base seed; each
/// can then be changed alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeds {
    /// Generating synthetic data sets.
    pub data: u64,
    /// The train/test split of `holdout`.
    pub split: u64,
    /// Choosing the `subset` of training rows.
    pub subset: u64,
    /// Choosing and relabelling the `label_noise` rows.
    pub label_noise: u64,
    /// The network's initial weights.
    pub init: u64,
}

/// Stream numbers of the named seeds (shuffling is stream 5, see [`RunSpec::new`]).
const STREAMS: [u64; 6] = [0, 1, 2, 3, 4, 5];

impl Seeds {
    /// Every stream derived from `seed` (well mixed, independent of each other).
    pub fn derive(seed: u64) -> Self {
        Seeds {
            data: stream_seed(seed, STREAMS[0]),
            split: stream_seed(seed, STREAMS[1]),
            subset: stream_seed(seed, STREAMS[2]),
            label_noise: stream_seed(seed, STREAMS[3]),
            init: stream_seed(seed, STREAMS[4]),
        }
    }

    /// The shuffling seed [`RunSpec::new`] derives from `seed` (stored in `training.seed`).
    pub fn shuffle(seed: u64) -> u64 {
        stream_seed(seed, STREAMS[5])
    }
}

/// Where a run's data come from and how they are prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Training data source (see [`data::load`]): a built-in name, `synthetic:...`, a
    /// `.safetensors` file or a fetched hub set.
    pub source: String,
    /// Separate test data; without it, `holdout` of `source` is kept apart for testing.
    #[serde(default)]
    pub test_source: Option<String>,
    /// Fraction of `source` held out for testing when there is no `test_source`, in `[0, 1)`
    /// (0 keeps none). Stratified by class.
    pub holdout: f64,
    /// Fraction of the training rows used, in `(0, 1]` (the MD tree's data-size axis).
    pub subset: f64,
    /// Fraction of training labels replaced by a different random class, in `[0, 1]`.
    pub label_noise: f64,
    /// Standardisation with the training rows' per-feature mean and standard deviation.
    #[serde(default)]
    pub standardize: Standardize,
    /// Separate validation data (for model selection), evaluated after every epoch like the test
    /// rows; label noise is not applied to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_source: Option<String>,
    /// Fraction of the training rows (after the test split, before `subset`) kept apart for
    /// validation when there is no `validation_source`, in `[0, 1)` (0 keeps none). Stratified by
    /// class, drawn from its own stream of `seeds.split`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Which standardisation a run applies, fitted on the training rows and recorded in the
/// checkpoint (so evaluation and curvature apply the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Standardize {
    /// Inputs stored as one feature vector per row (every built-in set, the digits included;
    /// `[C, H, W]` images are left alone) and the
    /// targets of regression: unstandardised regression diverges at ordinary learning rates
    /// (Boston house prices) and unstandardised tabular classification can stick at the majority
    /// class (breast cancer).
    #[default]
    Auto,
    /// Inputs always, and regression targets.
    On,
    /// Nothing.
    Off,
}

impl std::fmt::Display for Standardize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Standardize::Auto => "auto",
            Standardize::On => "on",
            Standardize::Off => "off",
        })
    }
}

impl std::str::FromStr for Standardize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Standardize::Auto),
            "on" | "true" | "yes" => Ok(Standardize::On),
            "off" | "false" | "no" => Ok(Standardize::Off),
            _ => Err(Error::config("standardize", s, "expected auto, on or off")),
        }
    }
}

impl DataSpec {
    /// `source` with a 20% holdout and nothing else changed.
    pub fn new(source: impl Into<String>) -> Self {
        DataSpec {
            source: source.into(),
            test_source: None,
            holdout: 0.2,
            subset: 1.0,
            label_noise: 0.0,
            standardize: Standardize::Auto,
            validation_source: None,
            validation: 0.0,
        }
    }
}

impl DataSpec {
    /// Checks every field's range.
    pub fn check(&self) -> Result<()> {
        if self.source.trim().is_empty() {
            return Err(Error::config("data", "\"\"", "names no data set"));
        }
        config::unit_interval("holdout", self.holdout)?;
        config::unit_interval("validation", self.validation)?;
        if self.validation > 0.0 && self.validation_source.is_some() {
            return Err(Error::config(
                "validation",
                self.validation,
                "a validation fraction and a separate validation source exclude each other",
            ));
        }
        config::fraction("subset", self.subset)?;
        config::probability("label_noise", self.label_noise)
    }
}

/// Data ready for training: the training rows, the test rows and the standardisation applied.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training rows (subset, label noise and standardisation applied).
    pub train: Dataset,
    /// Test rows (standardised like the training rows), if any.
    pub test: Option<Dataset>,
    /// Validation rows (standardised like the training rows), if any.
    pub validation: Option<Dataset>,
    /// The input standardisation fitted on the training rows, if any.
    pub standardizer: Option<Standardizer>,
    /// The regression-target standardisation fitted on the training rows, if any.
    pub target_standardizer: Option<Standardizer>,
}

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The network.
    pub arch: ArchSpec,
    /// Its floating-point type.
    #[serde(default)]
    pub dtype: FloatType,
    /// The data and their preparation.
    pub data: DataSpec,
    /// Optimisation. `training.seed` drives shuffling (and mixup).
    pub training: TrainConfig,
    /// The other seed streams.
    pub seeds: Seeds,
    /// Start from this checkpoint's weights (parameters and BatchNorm statistics) instead of a
    /// random initialisation from `seeds.init`; its architecture must be `arch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
}

/// How a run is carried out (none of it changes the numbers).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Compute device (default: CPU).
    pub device: Option<Device>,
    /// Directory of fetched hub data sets (default: [`data::data_dir`]).
    pub data_dir: Option<PathBuf>,
    /// Write the trained model here, with its [`checkpoint::TrainingRecord`] as metadata.
    pub checkpoint: Option<PathBuf>,
    /// Save the full training state here after every epoch and continue from it if it exists
    /// (see [`Trainer::fit_resumable`]); removed once the checkpoint is written.
    pub state: Option<PathBuf>,
    /// Where training progress goes.
    pub progress: Progress,
    /// Skip the end-of-epoch pass over the training rows (their loss, error and loss
    /// concentration in each [`crate::train::EpochReport`]), saving one forward pass over the
    /// training rows per epoch; validation and test rows are still evaluated.
    pub skip_epoch_train_evaluation: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The trained model.
    pub model: Model,
    /// Per-epoch reports of the epochs run in this call.
    pub report: TrainReport,
    /// Loss and error on the training rows after training.
    pub train: Evaluation,
    /// Loss and error on the test rows, if there are any.
    pub test: Option<Evaluation>,
    /// Number of training rows.
    pub train_rows: usize,
    /// Number of test rows.
    pub test_rows: Option<usize>,
    /// Loss and error on the validation rows, if there are any.
    pub validation: Option<Evaluation>,
    /// Number of validation rows.
    pub validation_rows: Option<usize>,
    /// The input standardisation applied, if any.
    pub standardizer: Option<Standardizer>,
    /// The regression-target standardisation applied, if any.
    pub target_standardizer: Option<Standardizer>,
    /// The epoch a resumed run continued after (`None`: started from scratch).
    pub resumed_after: Option<usize>,
    /// Wall time of training and evaluation, in seconds.
    pub seconds: f64,
}

impl RunSpec {
    /// A run of `arch` on `source` with default training settings and every seed derived from
    /// `seed`.
    pub fn new(arch: ArchSpec, source: impl Into<String>, seed: u64) -> Self {
        RunSpec {
            arch,
            dtype: FloatType::F32,
            data: DataSpec::new(source),
            training: TrainConfig {
                seed: Seeds::shuffle(seed),
                ..TrainConfig::default()
            },
            seeds: Seeds::derive(seed),
            init: None,
        }
    }

    /// The loss the run trains with: the configured one, else the task's natural loss.
    pub fn loss_for(&self, data: &Dataset) -> LossKind {
        self.training
            .loss
            .unwrap_or_else(|| LossKind::for_task(data.task))
    }

    /// Loads and prepares the data: split (or the separate test set), subset, label noise,
    /// standardisation, each drawn from its own seed stream.
    pub fn prepare_data(&self, data_dir: Option<&Path>) -> Result<PreparedData> {
        self.data.check()?;
        let load = |source: &str| {
            data::load(
                source,
                &data::LoadOptions {
                    data_dir: data_dir.map(Path::to_path_buf),
                    seed: self.seeds.data,
                },
            )
        };
        let d = &self.data;
        let full = load(&d.source)?;
        let (mut train, mut test) = match &d.test_source {
            Some(src) => (full, Some(load(src)?)),
            None if d.holdout > 0.0 => {
                let (tr, te) = full.split(1.0 - d.holdout, self.seeds.split)?;
                (tr, Some(te))
            }
            None => (full, None),
        };
        let mut validation = match &d.validation_source {
            Some(src) => Some(load(src)?),
            None if d.validation > 0.0 => {
                let (tr, va) = train.split(1.0 - d.validation, stream_seed(self.seeds.split, 1))?;
                train = tr;
                Some(va)
            }
            None => None,
        };
        if d.subset < 1.0 {
            train = train.subset_fraction(d.subset, self.seeds.subset)?;
        }
        if d.label_noise > 0.0 {
            train = train.with_label_noise(d.label_noise, self.seeds.label_noise)?;
        }
        let regression = matches!(train.y, data::Targets::Values(_));
        let (inputs, targets) = match d.standardize {
            Standardize::Off => (false, false),
            Standardize::On => (true, regression),
            Standardize::Auto => (train.input_shape().len() == 1, regression),
        };
        let standardizer = if inputs {
            let s = train.standardizer()?;
            train = s.apply(&train)?;
            test = test.map(|t| s.apply(&t)).transpose()?;
            validation = validation.map(|t| s.apply(&t)).transpose()?;
            Some(s)
        } else {
            None
        };
        let target_standardizer = match train.target_standardizer()? {
            Some(s) if targets => {
                train = s.apply_targets(&train)?;
                test = test.map(|t| s.apply_targets(&t)).transpose()?;
                validation = validation.map(|t| s.apply_targets(&t)).transpose()?;
                Some(s)
            }
            _ => None,
        };
        Ok(PreparedData {
            train,
            test,
            validation,
            standardizer,
            target_standardizer,
        })
    }

    /// Runs the recipe with a plain ERM objective (see [`RunSpec::run_with`]).
    pub fn run(&self, options: &RunOptions) -> Result<RunOutcome> {
        self.run_with(options, None)
    }

    /// Runs the recipe: prepares the data, initialises the model from `seeds.init`, trains it
    /// with `objective` (ERM when `None`), evaluates it on the training and test rows, and writes
    /// the checkpoint if asked.
    pub fn run_with(
        &self,
        options: &RunOptions,
        objective: Option<Box<dyn Objective>>,
    ) -> Result<RunOutcome> {
        self.run_observed(options, objective, &mut |_| {})
    }

    /// [`RunSpec::run_with`], calling `on_event` after every step and epoch.
    pub fn run_observed(
        &self,
        options: &RunOptions,
        objective: Option<Box<dyn Objective>>,
        on_event: &mut dyn FnMut(TrainEvent<'_>),
    ) -> Result<RunOutcome> {
        self.check()?;
        self.check_outputs(options)?;
        let device = options.device.clone().unwrap_or(Device::Cpu);
        let started = Instant::now();
        let prepared = self.prepare_data(options.data_dir.as_deref())?;
        let (train, test) = (&prepared.train, prepared.test.as_ref());
        let validation = prepared.validation.as_ref();
        let model = self.initial_model(&device)?;
        loss::check_fits(&model, train)?;
        for d in [test, validation].into_iter().flatten() {
            loss::check_fits(&model, d)?;
        }
        let mut trainer = Trainer::new(self.training.clone())?
            .with_train_evaluation(!options.skip_epoch_train_evaluation);
        if options.state.is_some() {
            // Only a state file compares fingerprints: hash the data only then.
            trainer = trainer.with_fingerprint(self.fingerprint(&prepared)?);
        }
        if let Some(o) = objective {
            trainer = trainer.with_objective(o);
        }
        let steps_per_epoch = train.num_batches(self.training.batch_size, self.training.drop_last);
        let progress = &options.progress;
        progress.start(
            "train",
            Some((steps_per_epoch as u64).saturating_mul(self.training.epochs as u64)),
        );
        let mut resumed_after = None;
        let report = trainer.fit_eval(
            &model,
            train,
            EvalSets { validation, test },
            options.state.as_deref(),
            &mut |event| {
                match &event {
                    TrainEvent::Resumed { epochs_done } => {
                        resumed_after = Some(*epochs_done);
                        progress.set_position(
                            (*epochs_done as u64).saturating_mul(steps_per_epoch as u64),
                        );
                        progress.set_message(&format!("resumed after epoch {epochs_done}"));
                    }
                    TrainEvent::Step { loss, .. } => {
                        progress.inc(1);
                        progress.set_message(&format!("loss {loss:.4}"));
                    }
                    TrainEvent::Epoch(_) => {}
                }
                on_event(event);
            },
        )?;
        progress.finish();
        let kind = self.loss_for(train);
        let eval_batch = self.training.batch_size.max(512);
        let train_eval = loss::evaluate_with(&model, train, eval_batch, kind)?;
        let test_eval = test
            .map(|t| loss::evaluate_with(&model, t, eval_batch, kind))
            .transpose()?;
        let validation_eval = validation
            .map(|t| loss::evaluate_with(&model, t, eval_batch, kind))
            .transpose()?;
        let outcome = RunOutcome {
            model,
            report,
            train: train_eval,
            test: test_eval,
            validation: validation_eval,
            train_rows: train.len(),
            test_rows: test.map(Dataset::len),
            validation_rows: validation.map(Dataset::len),
            standardizer: prepared.standardizer,
            target_standardizer: prepared.target_standardizer,
            resumed_after,
            seconds: started.elapsed().as_secs_f64(),
        };
        if let Some(path) = &options.checkpoint {
            checkpoint::save(&outcome.model, path, &outcome.record(self).to_metadata()?)?;
            if let Some(state) = &options.state {
                // The checkpoint holds everything now; a stale state would only confuse a rerun.
                std::fs::remove_file(state).ok();
            }
        }
        Ok(outcome)
    }
}

impl RunOutcome {
    /// What a checkpoint of this run records about it.
    pub fn record(&self, spec: &RunSpec) -> checkpoint::TrainingRecord {
        checkpoint::TrainingRecord {
            run: Some(spec.clone()),
            standardizer: self.standardizer.clone(),
            target_standardizer: self.target_standardizer.clone(),
            train: Some(self.train),
            test: self.test,
            train_rows: Some(self.train_rows),
            test_rows: self.test_rows,
            validation: self.validation,
            validation_rows: self.validation_rows,
            objective: Some(self.report.objective.clone()),
            epochs: self.report.history.clone(),
        }
    }
}

impl RunSpec {
    /// Every setting of the recipe but the training configuration (the trainer adds that), flattened
    /// (`data.holdout`, `seeds.split`, ...), plus the content hashes of the prepared training and
    /// test rows: what a resumed run must match.
    fn fingerprint(&self, prepared: &PreparedData) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut value = serde_json::to_value(self)
            .map_err(|e| Error::config("run", "recipe", e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            obj.remove("training");
            // The compact form names the architecture as people write it.
            obj.insert(
                "arch".into(),
                serde_json::Value::String(self.arch.to_string()),
            );
        }
        crate::train::flatten_settings("", &value, &mut out);
        out.insert(
            "data.train_rows_hash".into(),
            format!("{:016x}", prepared.train.content_hash()?),
        );
        if let Some(t) = &prepared.test {
            out.insert(
                "data.test_rows_hash".into(),
                format!("{:016x}", t.content_hash()?),
            );
        }
        Ok(out)
    }

    /// Refuses outputs that would overwrite an input: the checkpoint or the state file on a data
    /// file of the run, or the two on each other.
    fn check_outputs(&self, options: &RunOptions) -> Result<()> {
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        };
        let inputs: Vec<&Path> = std::iter::once(self.data.source.as_str())
            .chain(self.data.test_source.as_deref())
            .map(Path::new)
            .filter(|p| p.is_file())
            .collect();
        for (what, out) in [
            ("checkpoint", options.checkpoint.as_deref()),
            ("training state", options.state.as_deref()),
        ] {
            let Some(out) = out else { continue };
            if let Some(input) = inputs.iter().find(|i| same(i, out)) {
                return Err(Error::config(
                    what,
                    out.display(),
                    format!(
                        "is the data file {} of this run; writing it would destroy the data",
                        input.display()
                    ),
                ));
            }
        }
        if let (Some(c), Some(s)) = (&options.checkpoint, &options.state)
            && same(c, s)
        {
            return Err(Error::config(
                "training state",
                s.display(),
                "is the checkpoint path; they must differ",
            ));
        }
        Ok(())
    }

    /// The model training starts from: the `init` checkpoint's weights, or a fresh initialisation
    /// from `seeds.init`.
    pub fn initial_model(&self, device: &Device) -> Result<Model> {
        match &self.init {
            None => Model::new(
                self.arch.clone(),
                self.dtype.dtype(),
                device,
                self.seeds.init,
            ),
            Some(path) => Ok(checkpoint::load(
                path,
                &checkpoint::LoadOptions {
                    arch: Some(self.arch.clone()),
                    dtype: Some(self.dtype.dtype()),
                    device: device.clone(),
                },
            )?
            .model),
        }
    }

    /// Checks the architecture, the data preparation and the training configuration.
    pub fn check(&self) -> Result<()> {
        self.arch.validate()?;
        self.data.check()?;
        self.training.check()
    }
}
