//! Configuration tables as read from CSV or parquet files: named columns of numbers, text or
//! empty cells, in file order. A sweep writes such tables; so do Optuna (`trials_dataframe()`),
//! HPOBench and most other tools.

use std::path::Path;

use crate::{Error, Result};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An empty cell (a CSV field with nothing in it, a parquet null).
    Null,
    /// A number (every cell of a numeric column).
    Num(f64),
    /// Text (every non-empty cell of a column in which some cell is not a number).
    Text(String),
}

impl Value {
    /// The cell as JSON: a number, a string or null.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Num(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => {
                serde_json::Value::Number((*x as i64).into())
            }
            Value::Num(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(x.to_string())),
            Value::Text(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// Whether the cell holds `text` as written on a command line: numbers compare as numbers
    /// (`0.1` matches `1e-1`), text exactly, an empty cell matches the empty string.
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Value::Null => text.is_empty(),
            Value::Num(x) => text.trim().parse::<f64>().is_ok_and(|y| y == *x),
            Value::Text(s) => s == text,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Num(x) => write!(f, "{x}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// A table: named columns of equal length, rows in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTable {
    /// Where the table came from (a path, or a name for tables made in memory), for errors.
    pub source: String,
    /// Column names, in file order.
    pub columns: Vec<String>,
    /// The cells, column by column (`cells[column][row]`).
    pub cells: Vec<Vec<Value>>,
}

impl RawTable {
    /// A table from columns of cells (all of one length).
    pub fn new(
        source: impl Into<String>,
        columns: Vec<String>,
        cells: Vec<Vec<Value>>,
    ) -> Result<Self> {
        let source = source.into();
        if columns.len() != cells.len() {
            return Err(Error::Format {
                source_name: source,
                reason: format!("{} column names for {} columns", columns.len(), cells.len()),
            });
        }
        if let Some(j) = cells.iter().position(|c| c.len() != cells[0].len()) {
            return Err(Error::Format {
                source_name: source,
                reason: format!(
                    "column `{}` has {} rows, column `{}` {}",
                    columns[j],
                    cells[j].len(),
                    columns[0],
                    cells[0].len()
                ),
            });
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = columns.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(Error::Format {
                source_name: source,
                reason: format!("two columns are named `{dup}`"),
            });
        }
        Ok(RawTable {
            source,
            columns,
            cells,
        })
    }

    /// Reads a `.csv` or `.parquet` file (by extension; anything else is read as CSV).
    pub fn read(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq") => {
                Self::read_parquet(path)
            }
            _ => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                Self::from_csv(&path.display().to_string(), &text)
            }
        }
    }

    /// Parses CSV text (RFC 4180: a header line, commas, fields optionally in double quotes with
    /// `""` for a quote, LF or CRLF line ends). A column whose non-empty cells all parse as
    /// numbers is numeric; any other column is text. Empty cells are [`Value::Null`].
    pub fn from_csv(source: &str, text: &str) -> Result<Self> {
        let records = parse_csv(source, text)?;
        let mut it = records.into_iter();
        let Some((_, header)) = it.next() else {
            return Err(Error::Empty {
                source_name: source.into(),
                reason: "the file is empty (no header line)".into(),
            });
        };
        let columns: Vec<String> = header.into_iter().map(|h| h.trim().to_string()).collect();
        let mut text_cells: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
        for (line, rec) in it {
            if rec.len() == 1 && rec[0].is_empty() {
                continue; // a blank line
            }
            if rec.len() != columns.len() {
                return Err(Error::Format {
                    source_name: source.into(),
                    reason: format!(
                        "line {line} has {} fields, the header {}",
                        rec.len(),
                        columns.len()
                    ),
                });
            }
            for (j, f) in rec.into_iter().enumerate() {
                text_cells[j].push(f);
            }
        }
        let cells = text_cells
            .into_iter()
            .map(|col| {
                let numeric = col
                    .iter()
                    .all(|s| s.trim().is_empty() || s.trim().parse::<f64>().is_ok());
                col.into_iter()
                    .map(|s| {
                        if s.trim().is_empty() {
                            Value::Null
                        } else if numeric {
                            Value::Num(s.trim().parse().expect("checked numeric"))
                        } else {
                            Value::Text(s)
                        }
                    })
                    .collect()
            })
            .collect();
        Self::new(source, columns, cells)
    }

    /// Reads a parquet file through polars: numeric columns become numbers, every other column
    /// text (booleans `true`/`false`), nulls [`Value::Null`].
    pub fn read_parquet(path: &Path) -> Result<Self> {
        use polars::prelude::*;
        let source = path.display().to_string();
        let err = |e: PolarsError| Error::Format {
            source_name: source.clone(),
            reason: format!("not a readable parquet file: {e}"),
        };
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let df = ParquetReader::new(file).finish().map_err(err)?;
        let mut columns = Vec::new();
        let mut cells = Vec::new();
        for col in df.columns() {
            columns.push(col.name().to_string());
            let s = col.as_materialized_series();
            let values: Vec<Value> = if s.dtype().is_primitive_numeric() {
                let c = s.cast(&DataType::Float64).map_err(err)?;
                c.f64()
                    .map_err(err)?
                    .iter()
                    .map(|v| v.map_or(Value::Null, Value::Num))
                    .collect()
            } else {
                let c = s.cast(&DataType::String).map_err(err)?;
                c.str()
                    .map_err(err)?
                    .iter()
                    .map(|v| v.map_or(Value::Null, |t| Value::Text(t.to_string())))
                    .collect()
            };
            cells.push(values);
        }
        Self::new(source, columns, cells)
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.cells.first().map_or(0, Vec::len)
    }

    /// The index of column `name`, or an error naming the columns there are.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::MissingColumn {
                source_name: self.source.clone(),
                column: name.into(),
                available: terrain_model::error::name_list(&self.columns),
            })
    }
}

/// CSV records with the 1-based line each starts on.
fn parse_csv(source: &str, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut rec = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut start_line) = (1, 1);
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => rec.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                rec.push(std::mem::take(&mut field));
                out.push((start_line, std::mem::take(&mut rec)));
                line += 1;
                start_line = line;
                any = false;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(Error::Format {
            source_name: source.into(),
            reason: format!("line {start_line}: a quoted field is never closed"),
        });
    }
    if any {
        rec.push(field);
        out.push((start_line, rec));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_numbers_and_empty_cells() {
        let t =
            RawTable::from_csv("t.csv", "a,\"b,c\",d\r\n1,\"x \"\"y\"\"\",\n2.5,z,3\n").unwrap();
        assert_eq!(t.columns, ["a", "b,c", "d"]);
        assert_eq!(t.cells[0], [Value::Num(1.0), Value::Num(2.5)]);
        assert_eq!(
            t.cells[1],
            [Value::Text("x \"y\"".into()), Value::Text("z".into())]
        );
        assert_eq!(t.cells[2], [Value::Null, Value::Num(3.0)]);
        assert!(Value::Num(0.1).matches("1e-1"));
        assert!(!Value::Text("0.1".into()).matches("1e-1"));
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = RawTable::from_csv("t.csv", "a,b\n1,2\n3\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = RawTable::from_csv("t.csv", "a,b\n1,\"2\n").unwrap_err();
        assert!(e.to_string().contains("never closed"), "{e}");
        let e = RawTable::from_csv("t.csv", "a,a\n1,2\n").unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
    }
}
