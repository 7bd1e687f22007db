//! The error type of terrain-hparams: every variant names its culprit (file, column, row, shard).

use std::path::PathBuf;

/// Everything that can go wrong while reading, analysing or sweeping hyperparameter landscapes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from terrain-model (invalid settings, training, data).
    #[error(transparent)]
    Model(#[from] terrain_model::Error),

    /// An error from terrain-report (writing a table).
    #[error(transparent)]
    Report(#[from] terrain_report::Error),

    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the operating system said.
        reason: std::io::Error,
    },

    /// A table file is not valid CSV or parquet.
    #[error("{source_name}: {reason}")]
    Format {
        /// The file (or table) at fault.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A column that is needed is not in the table.
    #[error("{source_name}: no column `{column}` (the table has: {available})")]
    MissingColumn {
        /// The file (or table) at fault.
        source_name: String,
        /// The column asked for.
        column: String,
        /// The columns the table has.
        available: String,
    },

    /// A cell that must be a number is not one (or is NaN or infinite).
    #[error("{source_name}: column `{column}`, row {row}: {reason} (found `{value}`)")]
    BadCell {
        /// The file (or table) at fault.
        source_name: String,
        /// The column at fault.
        column: String,
        /// The row at fault (0-based, in file order).
        row: usize,
        /// The cell as found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Two rows hold the same configuration, so the landscape would have two heights at one point.
    #[error(
        "{source_name}: rows {first} and {second} are the same configuration ({values}); keep one, or select a slice of the table with a filter"
    )]
    DuplicateConfiguration {
        /// The file (or table) at fault.
        source_name: String,
        /// The earlier row (0-based, in file order).
        first: usize,
        /// The later row.
        second: usize,
        /// The configuration, `name=value` pairs.
        values: String,
    },

    /// A selection leaves nothing to analyse.
    #[error("{source_name}: {reason}")]
    Empty {
        /// The file (or table) at fault.
        source_name: String,
        /// What is empty and why.
        reason: String,
    },

    /// Two landscapes to compare share no configuration (or do not have the same hyperparameters).
    #[error("cannot compare {first} with {second}: {reason}")]
    NotComparable {
        /// The first landscape.
        first: String,
        /// The second landscape.
        second: String,
        /// Why not.
        reason: String,
    },

    /// A search-space file is malformed.
    #[error("{path}: {reason}")]
    Space {
        /// The space file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A sweep directory is inconsistent: shards missing, duplicated, or from another space.
    #[error("{path}: {reason}")]
    Sweep {
        /// The directory or file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Result with terrain-hparams' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, reason: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            reason,
        }
    }
}
