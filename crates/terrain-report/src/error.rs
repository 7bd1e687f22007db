//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while drawing, writing or reading a report; every variant names
/// its culprit (the file, the chart, the row or column).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A picture file name whose extension is neither `.png` nor `.svg`.
    #[error("{path}: unsupported picture format; the file name must end in .png or .svg")]
    UnsupportedPictureFormat {
        /// The file asked for.
        path: PathBuf,
    },
    /// A table file name whose extension this build cannot write.
    #[error("{path}: unsupported table format; the file name must end in {accepted}")]
    UnsupportedTableFormat {
        /// The file asked for.
        path: PathBuf,
        /// The accepted extensions, e.g. `.csv, .json or .parquet`.
        accepted: &'static str,
    },
    /// A chart with no drawable data (every value empty, NaN, infinite, or not positive on a
    /// log axis).
    #[error("{chart}: nothing to draw: {reason}")]
    NothingToDraw {
        /// The chart, e.g. `line chart "training curves"`.
        chart: String,
        /// What was missing.
        reason: String,
    },
    /// Chart data that cannot describe a chart (mismatched lengths, unordered coordinates, a
    /// zero or huge pixel size).
    #[error("{chart}: invalid data: {reason}")]
    InvalidChart {
        /// The chart, e.g. `heatmap "loss surface"`.
        chart: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The drawing library failed while drawing or encoding a chart.
    #[error("{chart}: drawing failed: {reason}")]
    Draw {
        /// The chart.
        chart: String,
        /// The drawing library's message.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// `reading` or `writing`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document that does not parse or does not match the expected type.
    #[error("{path}: {reason}")]
    Json {
        /// The file (or `<string>` for in-memory text).
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A document of another kind than the one asked for.
    #[error(
        "{path}: expected a {expected:?} document, found a {found:?} document \
         (was it written by another command?)"
    )]
    KindMismatch {
        /// The file.
        path: PathBuf,
        /// The kind the reader expects.
        expected: String,
        /// The kind in the file.
        found: String,
    },
    /// A document written with another schema version than the reader's.
    #[error(
        "{path}: {kind:?} document has schema version {found}, this build reads version \
         {expected}; rerun the command that wrote it with this build"
    )]
    SchemaVersionMismatch {
        /// The file.
        path: PathBuf,
        /// The document kind.
        kind: String,
        /// The version the reader understands.
        expected: u32,
        /// The version in the file.
        found: u32,
    },
    /// Data that does not make a table (a row that is not an object, a nested array, a row of
    /// the wrong length).
    #[error("table: row {row}{}: {reason}", column.as_ref().map(|c| format!(", column {c:?}")).unwrap_or_default())]
    Table {
        /// The offending row (0-based).
        row: usize,
        /// The offending column, when one is to blame.
        column: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Writing or reading a parquet file failed.
    #[error("parquet {path}: {reason}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// polars' message.
        reason: String,
    },
    /// An output format name that is not `table`, `json` or `csv`.
    #[error("unknown output format {given:?}: expected table, json or csv")]
    UnknownFormat {
        /// What was given.
        given: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
