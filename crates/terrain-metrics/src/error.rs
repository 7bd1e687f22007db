//! The error type of terrain-metrics: every variant names its culprit.

use std::path::PathBuf;

/// Everything that can go wrong while measuring a landscape.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from terrain-model (checkpoint, data, shapes, invalid settings...).
    #[error(transparent)]
    Model(Box<terrain_model::Error>),

    /// An error from terrain-curvature (Hessian products, eigenvalues, traces, input derivatives).
    #[error(transparent)]
    Curvature(Box<terrain_curvature::Error>),

    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// A results file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the operating system said.
        reason: std::io::Error,
    },

    /// A results file holds something that is not a result line.
    #[error("{path}, line {line}: {reason}")]
    ResultsFile {
        /// The file at fault.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A state file holds something training cannot continue from.
    #[error("{path}: {reason}")]
    StateFile {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A results file was written with other settings, so its points cannot be reused.
    #[error(
        "{path} holds points computed with other settings ({settings}); delete it to start over, or rerun with the saved settings"
    )]
    SettingsMismatch {
        /// The results file.
        path: PathBuf,
        /// Each differing setting with its saved and current value.
        settings: String,
    },

    /// A tensor of a user-given direction does not fit the model.
    #[error("{path}: direction tensor `{name}`: {reason}")]
    Direction {
        /// The direction file.
        path: PathBuf,
        /// The tensor at fault.
        name: String,
        /// Why it does not fit.
        reason: String,
    },

    /// Two models that must share an architecture do not.
    #[error("{what}: {a} has architecture {}, but {b} has {}", archs[0], archs[1])]
    ArchitectureMismatch {
        /// What needs them to agree.
        what: String,
        /// The first model.
        a: String,
        /// The other model.
        b: String,
        /// Their architectures, in that order.
        archs: Box<[String; 2]>,
    },

    /// A metric needs more models than it was given.
    #[error("{what} needs at least {needed} models, got {given}")]
    TooFewModels {
        /// The metric.
        what: String,
        /// How many it needs.
        needed: usize,
        /// How many it got.
        given: usize,
    },

    /// A metric that needs class probabilities was given a regression model or data set.
    #[error("{what} needs a classifier, but data set `{data}` is a regression task: {reason}")]
    NotClassification {
        /// The metric.
        what: String,
        /// The data set.
        data: String,
        /// What to do instead.
        reason: String,
    },

    /// A computed quantity came out NaN or infinite.
    #[error("{what} is not finite ({value})")]
    NonFinite {
        /// The quantity.
        what: String,
        /// The value found.
        value: f64,
    },
}

impl From<terrain_model::Error> for Error {
    fn from(e: terrain_model::Error) -> Self {
        Error::Model(Box::new(e))
    }
}

impl From<terrain_curvature::Error> for Error {
    fn from(e: terrain_curvature::Error) -> Self {
        match e {
            // One way to hold a terrain-model error, however it arrived.
            terrain_curvature::Error::Model(m) => Error::Model(Box::new(m)),
            other => Error::Curvature(Box::new(other)),
        }
    }
}

impl Error {
    /// An invalid setting: terrain-model's one invalid-configuration error.
    pub fn config(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        terrain_model::Error::config(field, value, reason).into()
    }

    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, reason: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// Results of terrain-metrics.
pub type Result<T> = std::result::Result<T, Error>;
