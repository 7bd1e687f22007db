//! The one error type of terrain-model, with the offending name, shape, path or value in each variant.

use std::path::PathBuf;

/// Everything that can go wrong in terrain-model. Each variant names its culprit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// Something would need more memory than the process can allocate.
    #[error("{what} would need {needed}, but only {available} is available")]
    OutOfMemory {
        /// What the memory is for.
        what: String,
        /// Bytes needed, for people.
        needed: String,
        /// Bytes available, for people.
        available: String,
    },

    /// A training-state file was written by a run with other settings, so continuing from it
    /// would silently mix two runs.
    #[error("{path}: cannot resume: {settings}; delete the state file to start over")]
    ResumeMismatch {
        /// The state file.
        path: PathBuf,
        /// The settings that differ, each with its saved and current value.
        settings: String,
    },

    /// The worker threads could not be configured as asked.
    #[error(transparent)]
    Threads(#[from] crate::threads::ThreadsError),

    /// A file could not be read or written. The operating system's reason is part of the
    /// message (and deliberately not a `source`, so that error chains do not print it twice).
    #[error("{path}: {reason}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the operating system said.
        reason: std::io::Error,
    },

    /// A safetensors file is truncated, corrupt or not safetensors at all.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file at fault.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// A tensor the architecture needs is absent from a checkpoint or data file.
    #[error("{path}: tensor `{name}` is missing (the file has: {available})")]
    MissingTensor {
        /// The file at fault.
        path: PathBuf,
        /// The tensor that was looked for.
        name: String,
        /// A short list of the tensors the file does have.
        available: String,
    },

    /// A Hugging Face Hub data set was asked for but has not been downloaded.
    #[error("hub data set `{name}` is not downloaded yet (looked for {path})")]
    NotFetched {
        /// The data set.
        name: String,
        /// The file looked for.
        path: PathBuf,
    },

    /// A tensor has a shape other than the one required.
    #[error("{context}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Where the tensor came from (a file path or a description).
        context: String,
        /// The tensor at fault.
        name: String,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was found.
        found: Vec<usize>,
    },

    /// A tensor has a dtype that cannot be used here.
    #[error("{context}: tensor `{name}` has dtype {found}, expected {expected}")]
    DtypeMismatch {
        /// Where the tensor came from.
        context: String,
        /// The tensor at fault.
        name: String,
        /// The dtype(s) accepted.
        expected: String,
        /// The dtype found.
        found: String,
    },

    /// A tensor holds NaN or infinite values.
    #[error("{context}: tensor `{name}` holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// Where the tensor came from.
        context: String,
        /// The tensor at fault.
        name: String,
        /// The first offending value.
        value: f64,
        /// Its flat (row-major) index.
        index: usize,
    },

    /// A checkpoint holds tensors the architecture does not use.
    #[error("{path}: tensor `{name}` is not a parameter of architecture {arch}")]
    UnexpectedTensor {
        /// The file at fault.
        path: PathBuf,
        /// The stray tensor.
        name: String,
        /// The architecture, in its compact form.
        arch: String,
    },

    /// A checkpoint carries no architecture spec and none was given.
    #[error(
        "{path}: no architecture in the file's metadata; give one (for example mlp:64-32-10:relu)"
    )]
    MissingArchitecture {
        /// The file at fault.
        path: PathBuf,
    },

    /// An architecture spec could not be parsed or is inconsistent.
    #[error("invalid architecture spec `{spec}`: {reason}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A dataset is empty.
    #[error("dataset `{name}` is empty")]
    EmptyDataset {
        /// The dataset at fault.
        name: String,
    },

    /// A class label is outside `0..classes`.
    #[error("dataset `{name}`: label {label} at row {row} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The dataset at fault.
        name: String,
        /// The offending label.
        label: i64,
        /// Its row.
        row: usize,
        /// The number of classes.
        classes: usize,
    },

    /// A dataset is inconsistent or unknown (shape, size, name).
    #[error("dataset `{name}`: {reason}")]
    Dataset {
        /// The dataset (or source) at fault.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A dataset's inputs or targets do not fit the model.
    #[error("data of shape {data:?} does not fit architecture {arch}: {reason}")]
    DataModelMismatch {
        /// The architecture, compact form.
        arch: String,
        /// The per-sample input shape of the data.
        data: Vec<usize>,
        /// What does not fit.
        reason: String,
    },

    /// A configuration value is out of its valid range.
    #[error("invalid {field} = {value}: {reason}")]
    InvalidConfig {
        /// The parameter at fault.
        field: String,
        /// Its value, as text.
        value: String,
        /// Why it is invalid.
        reason: String,
    },

    /// The loss does not reach some parameters: an operation in the model has no backward pass
    /// in candle, or a layer is disconnected.
    #[error(
        "the gradient of the loss does not reach {names}: an operation in the model has no backward pass in candle, or the parameters are not used by the forward pass"
    )]
    NoGradient {
        /// The parameters without a gradient.
        names: String,
    },

    /// An objective's per-row weights do not fit the batch they weigh.
    #[error("the objective's per-row loss weights do not fit the batch: {reason}")]
    RowWeights {
        /// What is wrong with them.
        reason: String,
    },

    /// The loss is NaN or infinite, so no derivative of it can be measured.
    #[error(
        "{context}: the loss is not finite ({value}) on batch {batch}; check the weights and the data (NaN inputs, exploding logits)"
    )]
    NonFiniteLoss {
        /// What was being computed.
        context: String,
        /// The batch at fault (0-based).
        batch: usize,
        /// The value found.
        value: f64,
    },

    /// A method does not handle a layer, setting or size.
    #[error("{method} does not support {what}")]
    Unsupported {
        /// The method.
        method: String,
        /// What it does not support.
        what: String,
    },

    /// A vector has the wrong length for what it multiplies.
    #[error("{context}: vector has {found} entries, the operator acts on {expected}")]
    DimensionMismatch {
        /// What was being computed.
        context: String,
        /// The dimension expected.
        expected: usize,
        /// The vector's length.
        found: usize,
    },

    /// A loss or gradient became NaN or infinite during training or evaluation.
    #[error("non-finite {what} ({value}) at epoch {epoch}, step {step}")]
    Diverged {
        /// What became non-finite ("loss", "gradient of `0.weight`", ...).
        what: String,
        /// The offending value.
        value: f64,
        /// Epoch (1-based).
        epoch: usize,
        /// Optimiser step within the epoch (1-based).
        step: usize,
    },

    /// The training loss grew by orders of magnitude: the run diverged, although every number
    /// stayed finite.
    #[error(
        "training diverged: the mean training loss grew from {first} (first step) to {last} in epoch {epoch}; lower the learning rate, standardise the inputs and (for regression) the targets, or use Adam"
    )]
    Divergence {
        /// The loss of the first step.
        first: f64,
        /// The mean loss of the epoch that gave up.
        last: f64,
        /// That epoch (1-based).
        epoch: usize,
    },

    /// Second-order autodiff is not in effect on this thread.
    #[error(
        "second-order autodiff is off on this thread: d²(x⁴)/dx² at x=2 gave {got}, expected 48. \
         Set CANDLE_GRAD_DO_NOT_DETACH=1 in the environment before the process starts \
         (terrain's .cargo/config.toml does this for cargo run/test)"
    )]
    SecondOrderDisabled {
        /// What the self-check computed.
        got: f64,
    },

    /// A device could not be parsed or opened.
    #[error("device `{spec}`: {reason}")]
    Device {
        /// The device as given.
        spec: String,
        /// What went wrong.
        reason: String,
    },

    /// Fetching or decoding a Hugging Face Hub dataset failed.
    #[error("hub dataset `{name}`: {reason}")]
    Hub {
        /// The dataset at fault.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result with terrain-model's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            reason: source,
        }
    }

    /// An [`Error::InvalidConfig`]: the one invalid-configuration error of every terrain crate.
    pub fn config(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Dataset`].
    pub fn dataset(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Dataset {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// Compares the settings a state file was written with (`saved`) against the current run's
/// (`now`): [`Error::ResumeMismatch`] for `path` naming every setting that differs, with both
/// values ("unset" where one side lacks it), or `None` when they agree.
pub fn resume_mismatch(
    path: &std::path::Path,
    saved: &std::collections::BTreeMap<String, String>,
    now: &std::collections::BTreeMap<String, String>,
) -> Option<Error> {
    let show = |v: Option<&String>| v.map_or("unset".to_string(), Clone::clone);
    let keys: std::collections::BTreeSet<&String> = saved.keys().chain(now.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| saved.get(*k) != now.get(*k))
        .map(|k| {
            format!(
                "{k} (saved {}, now {})",
                show(saved.get(k)),
                show(now.get(k))
            )
        })
        .collect();
    (!differ.is_empty()).then(|| Error::ResumeMismatch {
        path: path.to_path_buf(),
        settings: differ.join("; "),
    })
}

/// A short list of names for error messages: the first few, then how many more.
pub fn name_list<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 8;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    if names.is_empty() {
        s.push_str("none");
    }
    s
}
