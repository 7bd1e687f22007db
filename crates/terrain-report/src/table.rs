//! Tables: one way to show a result on a terminal, as JSON, as CSV or as parquet.
//!
//! Two entry points:
//! - [`render_value`] / [`print_value`] show any JSON object (a command's whole result) in a
//!   [`Format`]: scalars as `key  value` rows, nested objects as `key.inner` rows, arrays of
//!   objects as titled tables;
//! - [`Table`] is a typed table (named columns, rows of [`Cell`]s), built from any slice of
//!   serialisable rows with [`Table::from_rows`], and rendered as an aligned terminal table, CSV,
//!   JSON, or (feature `parquet`) a parquet file.
//!
//! CSV is written by hand (RFC 4180: fields with a comma, quote, CR or LF are quoted, quotes
//! doubled, CRLF-free `\n` line ends): a few lines, no dependency, and reading CSV is not needed.

use std::{fmt, path::Path, str::FromStr};

use serde::Serialize;
use serde_json::{Map, Number, Value};

use crate::{Error, Result, fsutil};

/// How a command prints its result (the CLI's `--format`): parse with [`FromStr`]
/// (`table`, `json`, `csv`, any case) and show with [`Display`](fmt::Display), so clap takes it
/// through `value_parser`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Format {
    /// Human-readable aligned tables.
    #[default]
    Table,
    /// One pretty-printed JSON document.
    Json,
    /// Comma-separated values (RFC 4180).
    Csv,
}

impl Format {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Format; 3] = [Format::Table, Format::Json, Format::Csv];

    /// The format's name as parsed and printed.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownFormat {
                given: s.to_string(),
            })
    }
}

/// A float with four decimals, switching to scientific notation (`1.2340e-5`) for magnitudes
/// below 1e-3 or from 1e6 on; NaN and infinities as `NaN`, `inf`, `-inf`.
pub fn format_float(f: f64) -> String {
    if !f.is_finite() {
        return format!("{f}");
    }
    if f == 0.0 || (1e-3..1e6).contains(&f.abs()) {
        format!("{f:.4}")
    } else {
        format!("{f:.4e}")
    }
}

/// One table cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value (shown as `-` on a terminal, empty in CSV, `null` in JSON).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Str(String),
}

impl Cell {
    fn is_numeric(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Float(_))
    }

    /// The cell on a terminal: floats through [`format_float`], null as `-`.
    pub fn display(&self) -> String {
        match self {
            Cell::Null => "-".into(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => format_float(*f),
            Cell::Str(s) => s.clone(),
        }
    }

    /// The cell in a CSV field (unquoted): floats at full precision, null empty.
    fn csv(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => format!("{f}"),
            Cell::Str(s) => s.clone(),
        }
    }

    /// The cell as JSON (non-finite floats become `null`, as JSON has no NaN).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f) => Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Cell::Str(s) => Value::String(s.clone()),
        }
    }

    fn from_json(v: &Value) -> Option<Cell> {
        Some(match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) if !n.is_f64() => Cell::Int(i),
                (_, Some(f)) => Cell::Float(f),
                _ => Cell::Str(n.to_string()),
            },
            Value::String(s) => Cell::Str(s.clone()),
            _ => return None,
        })
    }
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Float(v)
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}
impl From<usize> for Cell {
    fn from(v: usize) -> Self {
        i64::try_from(v)
            .map(Cell::Int)
            .unwrap_or(Cell::Float(v as f64))
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Bool(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Str(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Str(v)
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Cell::Null)
    }
}

/// A typed table: named columns and rows of cells, every row as long as `columns`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with `columns`.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Self {
        Table {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; an error if its length differs from the number of columns.
    pub fn push(&mut self, row: Vec<Cell>) -> Result<()> {
        if row.len() != self.columns.len() {
            return Err(Error::Table {
                row: self.rows.len(),
                column: None,
                reason: format!("{} cells for {} columns", row.len(), self.columns.len()),
            });
        }
        self.rows.push(row);
        Ok(())
    }

    /// A table from rows that serialise to flat objects (structs of scalars, `Option`s of
    /// scalars, maps): one column per field, in order of first appearance; a field missing from
    /// a row is null. Nested objects become `outer.inner` columns; an array in a field is an
    /// error naming the row and field.
    pub fn from_rows<T: Serialize>(rows: &[T]) -> Result<Table> {
        let values = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                serde_json::to_value(r).map_err(|e| Error::Table {
                    row: i,
                    column: None,
                    reason: format!("does not serialise: {e}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Table::from_json_rows(&values)
    }

    /// A table from JSON objects (as [`Table::from_rows`]).
    pub fn from_json_rows(rows: &[Value]) -> Result<Table> {
        let mut flat: Vec<Vec<(String, Cell)>> = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let Value::Object(map) = r else {
                return Err(Error::Table {
                    row: i,
                    column: None,
                    reason: format!("expected an object, found {}", kind(r)),
                });
            };
            let mut out = Vec::new();
            flatten(map, "", i, &mut out)?;
            flat.push(out);
        }
        let mut columns: Vec<String> = Vec::new();
        for r in &flat {
            for (k, _) in r {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        let rows = flat
            .into_iter()
            .map(|r| {
                let mut row = vec![Cell::Null; columns.len()];
                for (k, c) in r {
                    if let Some(j) = columns.iter().position(|x| *x == k) {
                        row[j] = c;
                    }
                }
                row
            })
            .collect();
        Ok(Table { columns, rows })
    }

    /// Checks that every row has one cell per column (rows built with [`Table::push`] do; the
    /// fields are public, so a table built by hand may not). Renderers tolerate ragged rows;
    /// parquet needs them rectangular.
    pub fn check(&self) -> Result<()> {
        match self.rows.iter().position(|r| r.len() != self.columns.len()) {
            None => Ok(()),
            Some(i) => Err(Error::Table {
                row: i,
                column: None,
                reason: format!(
                    "{} cells for {} columns",
                    self.rows[i].len(),
                    self.columns.len()
                ),
            }),
        }
    }

    /// Whether every non-null cell of column `j` is a number (such columns are right-aligned).
    fn numeric(&self, j: usize) -> bool {
        let mut any = false;
        for r in &self.rows {
            match r.get(j).unwrap_or(&Cell::Null) {
                Cell::Null => {}
                c if c.is_numeric() => any = true,
                _ => return false,
            }
        }
        any
    }

    /// The table aligned for a terminal: a header, numeric columns right-aligned, two spaces
    /// between columns, one row per line.
    pub fn to_terminal(&self) -> String {
        let mut lines = vec![self.columns.clone()];
        lines.extend(
            self.rows
                .iter()
                .map(|r| r.iter().map(Cell::display).collect::<Vec<_>>()),
        );
        let right: Vec<bool> = (0..self.columns.len()).map(|j| self.numeric(j)).collect();
        align(&lines, &right)
    }

    /// The table as CSV (RFC 4180 quoting; a header line, then one line per row).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, fields: Vec<String>| {
            let f: Vec<String> = fields.iter().map(|s| csv_field(s)).collect();
            out.push_str(&f.join(","));
            out.push('\n');
        };
        line(&mut out, self.columns.clone());
        for r in &self.rows {
            line(&mut out, r.iter().map(Cell::csv).collect());
        }
        out
    }

    /// The table as a JSON array of row objects.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    Value::Object(
                        self.columns
                            .iter()
                            .cloned()
                            .zip(r.iter().map(Cell::to_json))
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// The table in `format` (JSON pretty-printed).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.to_terminal(),
            Format::Csv => self.to_csv(),
            Format::Json => pretty(&self.to_json()),
        }
    }

    /// Writes the table to `path` after its extension: `.csv`, `.json`, or (feature
    /// `parquet`) `.parquet`; atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => fsutil::write_atomic(path, self.to_csv().as_bytes()),
            Some("json") => fsutil::write_atomic(path, pretty(&self.to_json()).as_bytes()),
            #[cfg(feature = "parquet")]
            Some("parquet") => self.write_parquet(path),
            _ => Err(Error::UnsupportedTableFormat {
                path: path.to_path_buf(),
                accepted: if cfg!(feature = "parquet") {
                    ".csv, .json or .parquet"
                } else {
                    ".csv or .json (.parquet needs terrain-report's `parquet` feature)"
                },
            }),
        }
    }
}

#[cfg(feature = "parquet")]
mod parquet_io {
    use std::path::Path;

    use polars::prelude::*;

    use super::{Cell, Table};
    use crate::{Error, Result, fsutil};

    impl Table {
        /// The table as a polars `DataFrame`: a column of integers (and nulls) is `Int64`, of
        /// numbers `Float64`, of booleans `Boolean`, anything else `String` (cells shown as on
        /// a terminal, nulls kept).
        pub fn to_dataframe(&self) -> Result<DataFrame> {
            self.check()?;
            let n = self.rows.len();
            let cols: Vec<Column> = self
                .columns
                .iter()
                .enumerate()
                .map(|(j, name)| {
                    let cells = self.rows.iter().map(|r| &r[j]);
                    let all = |f: fn(&Cell) -> bool| {
                        self.rows
                            .iter()
                            .all(|r| matches!(r[j], Cell::Null) || f(&r[j]))
                    };
                    let name = PlSmallStr::from(name.as_str());
                    if all(|c| matches!(c, Cell::Int(_))) {
                        let v: Vec<Option<i64>> = cells
                            .map(|c| match c {
                                Cell::Int(i) => Some(*i),
                                _ => None,
                            })
                            .collect();
                        Column::new(name, v)
                    } else if all(|c| matches!(c, Cell::Int(_) | Cell::Float(_))) {
                        let v: Vec<Option<f64>> = cells
                            .map(|c| match c {
                                Cell::Int(i) => Some(*i as f64),
                                Cell::Float(f) => Some(*f),
                                _ => None,
                            })
                            .collect();
                        Column::new(name, v)
                    } else if all(|c| matches!(c, Cell::Bool(_))) {
                        let v: Vec<Option<bool>> = cells
                            .map(|c| match c {
                                Cell::Bool(b) => Some(*b),
                                _ => None,
                            })
                            .collect();
                        Column::new(name, v)
                    } else {
                        let v: Vec<Option<String>> = cells
                            .map(|c| match c {
                                Cell::Null => None,
                                Cell::Str(s) => Some(s.clone()),
                                c => Some(c.csv()),
                            })
                            .collect();
                        Column::new(name, v)
                    }
                })
                .collect();
            DataFrame::new(n, cols).map_err(|e| Error::Parquet {
                path: "<memory>".into(),
                reason: e.to_string(),
            })
        }

        /// Writes the table as a parquet file (atomically).
        pub fn write_parquet(&self, path: &Path) -> Result<()> {
            let err = |e: PolarsError| Error::Parquet {
                path: path.to_path_buf(),
                reason: e.to_string(),
            };
            let mut df = self.to_dataframe().map_err(|e| match e {
                Error::Parquet { reason, .. } => Error::Parquet {
                    path: path.to_path_buf(),
                    reason,
                },
                e => e,
            })?;
            let mut buf = Vec::new();
            ParquetWriter::new(&mut buf).finish(&mut df).map_err(err)?;
            fsutil::write_atomic(path, &buf)
        }
    }
}

/// Flattens an object into `(dotted key, cell)` pairs.
fn flatten(
    map: &Map<String, Value>,
    prefix: &str,
    row: usize,
    out: &mut Vec<(String, Cell)>,
) -> Result<()> {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten(inner, &key, row, out)?,
            Value::Array(_) => {
                return Err(Error::Table {
                    row,
                    column: Some(key),
                    reason: "an array cannot be a table cell; rows must serialise to flat objects"
                        .into(),
                });
            }
            v => out.push((key, Cell::from_json(v).expect("scalar"))),
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Quotes a CSV field when it holds a comma, a quote, CR or LF (RFC 4180), doubling quotes.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// Aligns `lines` in columns two spaces apart (`right[j]`: right-align column j), trimming
/// trailing spaces.
fn align(lines: &[Vec<String>], right: &[bool]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in lines {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if right.get(i).copied().unwrap_or(false) {
                    format!("{s:>w$}", w = widths[i])
                } else {
                    format!("{s:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format_float(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A JSON value for a terminal: an object's scalars as `key  value` rows, nested objects as
/// `key.inner  value` rows, arrays of scalars joined by `, `, and arrays of objects as a titled
/// table (`name:` then a header and rows, numeric columns right-aligned). Floats have four
/// decimals (scientific when tiny or huge); null is `-`.
pub fn render_table(value: &Value) -> String {
    let Value::Object(map) = value else {
        if let Value::Array(items) = value
            && !items.is_empty()
            && items.iter().all(Value::is_object)
            && let Ok(t) = Table::from_json_rows(items)
        {
            return t.to_terminal();
        }
        return format!("{}\n", scalar(value));
    };
    let mut kv = Vec::new();
    let mut sections = Vec::new();
    fn rows(
        prefix: &str,
        map: &Map<String, Value>,
        kv: &mut Vec<Vec<String>>,
        sections: &mut Vec<(String, Vec<Value>)>,
    ) {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                    sections.push((key, items.clone()))
                }
                Value::Object(inner) => rows(&key, inner, kv, sections),
                Value::Array(items) => kv.push(vec![
                    key,
                    items.iter().map(scalar).collect::<Vec<_>>().join(", "),
                ]),
                _ => kv.push(vec![key, scalar(v)]),
            }
        }
    }
    rows("", map, &mut kv, &mut sections);
    let mut out = align(&kv, &[false, false]);
    for (name, items) in sections {
        out.push_str(&format!("\n{name}:\n"));
        match Table::from_json_rows(&items) {
            Ok(t) => out.push_str(&t.to_terminal()),
            // Rows with arrays inside: one compact JSON line each.
            Err(_) => {
                for it in &items {
                    out.push_str(&format!("  {it}\n"));
                }
            }
        }
    }
    out
}

/// A JSON value as CSV: an array of objects (or an object holding exactly one such array and
/// nothing else) as a table; any other object as `key,value` rows (nested keys dotted, arrays of
/// objects as `key[i].field`).
pub fn render_csv(value: &Value) -> String {
    let rows_of = |v: &Value| match v {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            Table::from_json_rows(items).ok()
        }
        _ => None,
    };
    if let Some(t) = rows_of(value) {
        return t.to_csv();
    }
    if let Value::Object(map) = value
        && map.len() == 1
        && let Some(t) = map.values().next().and_then(rows_of)
    {
        return t.to_csv();
    }
    fn walk(prefix: &str, v: &Value, out: &mut Table) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            Value::Array(items) => out.rows.push(vec![
                Cell::Str(prefix.to_string()),
                Cell::Str(
                    items
                        .iter()
                        .map(|v| Cell::from_json(v).map(|c| c.csv()).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(";"),
                ),
            ]),
            v => out.rows.push(vec![
                Cell::Str(prefix.to_string()),
                Cell::from_json(v).unwrap_or(Cell::Null),
            ]),
        }
    }
    let mut t = Table::new(["key", "value"]);
    walk("", value, &mut t);
    t.to_csv()
}

/// `value` (a command's result) in `format`.
pub fn render_value(format: Format, value: &Value) -> String {
    match format {
        Format::Table => render_table(value),
        Format::Json => pretty(value),
        Format::Csv => render_csv(value),
    }
}

/// Prints `value` to stdout in `format` (what the CLI's `output::print` does today).
pub fn print_value(format: Format, value: &Value) {
    print!("{}", render_value(format, value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_parse_and_print() {
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
        assert_eq!("JSON".parse::<Format>().unwrap(), Format::Json);
        let e = "yaml".parse::<Format>().unwrap_err().to_string();
        assert!(
            e.contains("yaml") && e.contains("table, json or csv"),
            "{e}"
        );
    }

    #[test]
    fn value_table_matches_the_cli() {
        let v = json!({
            "model": "mlp",
            "loss": 0.123456,
            "tiny": 1.5e-7,
            "missing": null,
            "steps": 12,
            "opt": {"lr": 0.1},
            "top": [3.0, 2.5],
            "eigen": [{"k": 1, "value": 10.5}, {"k": 2, "value": 3.25}],
        });
        let t = render_table(&v);
        assert_eq!(
            t,
            "model    mlp\nloss     0.1235\ntiny     1.5000e-7\nmissing  -\nsteps    12\nopt.lr   0.1000\ntop      3.0000, 2.5000\n\neigen:\nk    value\n1  10.5000\n2   3.2500\n"
        );
    }
}
