//! Metric tables: one row per trained configuration (the schema of the MD tree paper's public
//! tables), read through polars from CSV or parquet, with every value checked where it is used.
//!
//! Columns are read on demand: [`MetricTable::numbers`] returns a column as `f64`, refusing a
//! missing column (naming the columns there are), text that is not a number and NaN or infinite
//! values (naming the row and, for CSV, the line); [`MetricTable::texts`] returns a label column.
//!
//! ```no_run
//! use terrain_diagnose::table::MetricTable;
//!
//! let t = MetricTable::read("dataframe_normal_public.csv".as_ref()).unwrap();
//! let train_error = t.numbers("train_error").unwrap();
//! assert_eq!(train_error.len(), t.n_rows());
//! ```

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{Error, Result};

/// A table of metrics, as read from one file.
#[derive(Debug, Clone)]
pub struct MetricTable {
    path: PathBuf,
    frame: DataFrame,
}

impl MetricTable {
    /// Reads a CSV (with a header line) or parquet file, chosen by the extension (`.csv`,
    /// `.parquet`/`.pq`; anything else is read as CSV).
    pub fn read(path: &Path) -> Result<MetricTable> {
        if !path.is_file() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                reason: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let bad = |e: PolarsError| Error::Table {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let frame = if ext == "parquet" || ext == "pq" {
            let file = std::fs::File::open(path).map_err(|reason| Error::Io {
                path: path.to_path_buf(),
                reason,
            })?;
            ParquetReader::new(file).finish().map_err(bad)?
        } else {
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .map_err(bad)?
                .finish()
                .map_err(bad)?
        };
        Ok(MetricTable {
            path: path.to_path_buf(),
            frame,
        })
    }

    /// The file the table was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of data rows.
    pub fn n_rows(&self) -> usize {
        self.frame.height()
    }

    /// The column names, in file order.
    pub fn column_names(&self) -> Vec<String> {
        self.frame
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Whether the table has `column`.
    pub fn has(&self, column: &str) -> bool {
        self.frame.column(column).is_ok()
    }

    fn column(&self, name: &str) -> Result<&Column> {
        self.frame
            .column(name)
            .map_err(|_| self.missing_column(name, ""))
    }

    /// The error for a missing `column`, listing the columns there are (and saying so when the
    /// file looks like it is not comma-separated); `note` follows "is missing".
    pub(crate) fn missing_column(&self, column: &str, note: &str) -> Error {
        let names = self.column_names();
        let mut available = names
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() == 1 && names[0].contains([';', '\t', '|']) {
            available.push_str("; one column only: is the file comma-separated?");
        }
        Error::MissingColumn {
            path: self.path.clone(),
            column: column.to_string(),
            note: note.to_string(),
            available,
        }
    }

    fn non_finite(&self, column: &str, row: usize, value: impl ToString) -> Error {
        Error::NonFinite {
            path: self.path.clone(),
            column: column.to_string(),
            row: row + 1,
            line: row + 2,
            value: value.to_string(),
        }
    }

    /// A numeric column as `f64`, every value finite. Text columns are parsed value by value,
    /// so an error names the first row that is not a number.
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>> {
        let col = self.column(name)?;
        let dtype = col.dtype().clone();
        let mut out = Vec::with_capacity(col.len());
        if dtype.is_primitive_numeric() || dtype == DataType::Boolean || dtype == DataType::Null {
            let cast = col
                .cast(&DataType::Float64)
                .map_err(|e| self.type_error(name, &dtype, e))?;
            let ca = cast.f64().map_err(|e| self.type_error(name, &dtype, e))?;
            for (row, v) in ca.iter().enumerate() {
                match v {
                    Some(v) if v.is_finite() => out.push(v),
                    Some(v) => return Err(self.non_finite(name, row, v)),
                    None => return Err(self.non_finite(name, row, "(empty)")),
                }
            }
        } else if dtype == DataType::String {
            let ca = col.str().map_err(|e| self.type_error(name, &dtype, e))?;
            for (row, v) in ca.iter().enumerate() {
                let text = v.unwrap_or("");
                match text.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() => out.push(v),
                    _ if text.is_empty() => return Err(self.non_finite(name, row, "(empty)")),
                    _ => return Err(self.non_finite(name, row, format!("`{text}`"))),
                }
            }
        } else {
            return Err(Error::ColumnType {
                path: self.path.clone(),
                column: name.to_string(),
                found: dtype.to_string(),
                expected: "numbers".into(),
            });
        }
        Ok(out)
    }

    fn type_error(&self, name: &str, dtype: &DataType, e: PolarsError) -> Error {
        Error::ColumnType {
            path: self.path.clone(),
            column: name.to_string(),
            found: dtype.to_string(),
            expected: format!("numbers ({e})"),
        }
    }

    /// A text column (labels), empty cells as empty strings.
    pub fn texts(&self, name: &str) -> Result<Vec<String>> {
        let col = self.column(name)?;
        let cast = col.cast(&DataType::String).map_err(|e| Error::ColumnType {
            path: self.path.clone(),
            column: name.to_string(),
            found: col.dtype().to_string(),
            expected: format!("text ({e})"),
        })?;
        let ca = cast.str().map_err(|e| Error::ColumnType {
            path: self.path.clone(),
            column: name.to_string(),
            found: col.dtype().to_string(),
            expected: format!("text ({e})"),
        })?;
        Ok(ca.iter().map(|v| v.unwrap_or("").to_string()).collect())
    }
}

/// File names of the paper's public tables: (clean collection, noisy collection). The
/// repository ships them in `crates/terrain-diagnose/data/mdtree/`; callers name the folder.
pub const PAPER_TABLES: (&str, &str) =
    ("dataframe_normal_public.csv", "dataframe_noise_public.csv");
