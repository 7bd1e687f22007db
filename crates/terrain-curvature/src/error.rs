//! The error type of terrain-curvature: every variant names its culprit.

/// Everything that can go wrong while measuring curvature.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from terrain-model (checkpoint, data, shapes, autodiff flag...). The engine's
    /// non-finite loss, unsupported layer and dimension errors become this crate's own variants
    /// ([`From`]), so callers match one variant whichever crate found it.
    #[error(transparent)]
    Model(terrain_model::Error),

    /// A tensor operation failed inside candle.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// The loss (or a derivative of it) is NaN or infinite, so no curvature can be measured.
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

    /// A derivative or curvature quantity came out NaN or infinite.
    #[error("{context}: `{name}` is not finite ({value})")]
    NonFinite {
        /// What was being computed.
        context: String,
        /// The quantity at fault.
        name: String,
        /// The value found.
        value: f64,
    },

    /// Autodiff found no path from the loss (or from its gradient) to some parameters: an operation
    /// in the graph has no backward pass, or no differentiable backward pass.
    #[error(
        "{order} derivative of the loss does not reach {names}: an operation in the model has no {order} derivative in candle (ops built with `apply_op*_no_bwd`, such as candle's fused softmax_last_dim, LayerNorm and RmsNorm, or a custom op whose backward is not differentiable)"
    )]
    NoDerivative {
        /// "first" or "second".
        order: &'static str,
        /// The parameters the derivative did not reach.
        names: String,
    },

    /// More eigenvalues were asked for than the operator has dimensions.
    #[error(
        "asked for the top {k} eigenvalues of a {dim}-dimensional Hessian; k must be between 1 and {dim}"
    )]
    TopKTooLarge {
        /// The number asked for.
        k: usize,
        /// The operator's dimension.
        dim: usize,
    },

    /// A parameter filter matched no parameter.
    #[error("parameter filter `{pattern}` matches no parameter (the model has: {available})")]
    NoParameterMatches {
        /// The pattern given.
        pattern: String,
        /// A short list of the parameter names.
        available: String,
    },

    /// A dense Hessian was asked for a model too large to hold one.
    #[error(
        "a dense Hessian of {dim} parameters needs {bytes} bytes; the limit is {limit} parameters (use the matrix-free estimators of eigenvalues, trace and diagonal instead)"
    )]
    TooLargeForDense {
        /// Number of parameters.
        dim: usize,
        /// Memory a dense matrix would need.
        bytes: usize,
        /// The largest dimension accepted.
        limit: usize,
    },

    /// A vector has the wrong length or dtype for an operator.
    #[error("{context}: vector has {found} entries, the operator acts on {expected}")]
    DimensionMismatch {
        /// What was being computed.
        context: String,
        /// The operator's dimension.
        expected: usize,
        /// The vector's length.
        found: usize,
    },

    /// A solver would need more memory than the process can allocate.
    #[error(
        "{what} needs {needed}, but only {available} is available; use fewer steps or vectors, a parameter block (a filter), or a machine with more memory"
    )]
    InsufficientMemory {
        /// What the memory is for.
        what: String,
        /// Bytes needed, for people.
        needed: String,
        /// Bytes available, for people.
        available: String,
    },

    /// The model has a layer the requested method does not handle.
    #[error("{method} does not support {what}")]
    Unsupported {
        /// The method.
        method: String,
        /// What it does not support.
        what: String,
    },

    /// A solver state file holds something a solver cannot continue from.
    #[error("{path}: {reason}")]
    StateFile {
        /// The state file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A solver's state store stopped it after an iteration (the state it was given is the one
    /// to continue from).
    #[error("{solver} stopped by its state store after {matvecs} products")]
    Interrupted {
        /// The solver.
        solver: String,
        /// Products done when it stopped.
        matvecs: usize,
    },
}

impl Error {
    /// An invalid setting: terrain-model's one invalid-configuration error
    /// ([`terrain_model::Error::InvalidConfig`]), wrapped.
    pub fn config(name: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::Model(terrain_model::Error::config(name, value, reason))
    }

    /// Whether this is an invalid-configuration error (of any terrain crate).
    pub fn is_invalid_config(&self) -> bool {
        matches!(
            self,
            Error::Model(terrain_model::Error::InvalidConfig { .. })
        )
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl From<terrain_model::Error> for Error {
    fn from(e: terrain_model::Error) -> Self {
        match e {
            terrain_model::Error::NonFiniteLoss {
                context,
                batch,
                value,
            } => Error::NonFiniteLoss {
                context,
                batch,
                value,
            },
            terrain_model::Error::Unsupported { method, what } => {
                Error::Unsupported { method, what }
            }
            terrain_model::Error::DimensionMismatch {
                context,
                expected,
                found,
            } => Error::DimensionMismatch {
                context,
                expected,
                found,
            },
            e => Error::Model(e),
        }
    }
}
