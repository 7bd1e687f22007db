//! The error type of terrain-diagnose: every variant names its culprit (file, column, row,
//! value, sampling).

use std::path::PathBuf;

/// Everything that can go wrong while reading metric tables, fitting and applying diagnostic
/// trees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from terrain-model; invalid settings are its `InvalidConfig`.
    #[error(transparent)]
    Model(#[from] terrain_model::Error),

    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the operating system said.
        reason: std::io::Error,
    },

    /// A table file could not be parsed (not CSV/parquet, or malformed).
    #[error("{path}: cannot read the table: {reason}")]
    Table {
        /// The file at fault.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },

    /// A column the job needs is absent from a table.
    #[error("{path}: column `{column}` is missing{note} (the table has: {available})")]
    MissingColumn {
        /// The table at fault.
        path: PathBuf,
        /// The column looked for.
        column: String,
        /// What else was looked for, if anything (starts with a space or is empty).
        note: String,
        /// The columns the table does have.
        available: String,
    },

    /// A column holds values of the wrong type (text where numbers are needed).
    #[error("{path}: column `{column}` is {found}, expected {expected}")]
    ColumnType {
        /// The table at fault.
        path: PathBuf,
        /// The column.
        column: String,
        /// Its type.
        found: String,
        /// The type needed.
        expected: String,
    },

    /// A metric is NaN, infinite or empty.
    #[error(
        "{path}: column `{column}`, row {row} (line {line}): value {value} is not a finite number"
    )]
    NonFinite {
        /// The table at fault.
        path: PathBuf,
        /// The column.
        column: String,
        /// The data row, counted from 1.
        row: usize,
        /// The line of a CSV file (the header is line 1).
        line: usize,
        /// The value found.
        value: String,
    },

    /// A label is none of the values its question knows.
    #[error(
        "{path}: column `{column}`, row {row} (line {line}): unknown label `{value}` (expected one of {expected})"
    )]
    UnknownLabel {
        /// The table at fault.
        path: PathBuf,
        /// The label column.
        column: String,
        /// The data row, counted from 1.
        row: usize,
        /// The line of a CSV file (the header is line 1).
        line: usize,
        /// The value found.
        value: String,
        /// The values allowed.
        expected: String,
    },

    /// A sampling of the training table keeps no rows, or asks for more cells than exist.
    #[error("{path}: sampling `{sampling}` {reason}")]
    EmptySample {
        /// The training table.
        path: PathBuf,
        /// The sampling, in its compact form.
        sampling: String,
        /// What went wrong.
        reason: String,
    },

    /// A fit was asked for with no training rows.
    #[error("{what}: no training rows")]
    EmptyTraining {
        /// What was being fitted.
        what: String,
    },

    /// Inconsistent inputs to a fit or a prediction.
    #[error("{what}: {reason}")]
    Invalid {
        /// What was being computed.
        what: String,
        /// Why the input is invalid.
        reason: String,
    },

    /// A fitted tree and a feature row (or a tree file and the features it is applied to) do
    /// not match.
    #[error("{origin}: the tree uses features {expected}, but {found}")]
    TreeFeatures {
        /// The tree file or description.
        origin: String,
        /// The features the tree needs.
        expected: String,
        /// What was offered instead.
        found: String,
    },

    /// A record could not be written or read (tree files).
    #[error("{path}: {reason}")]
    Record {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
