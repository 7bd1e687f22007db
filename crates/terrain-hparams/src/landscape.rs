//! A hyperparameter landscape: configurations on an ordinal grid, their objective (minimised),
//! and the neighbourhood graph between them (landscape-metrics.md: grid index, neighbours).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    table::{RawTable, Value},
};

/// `COLUMN=VALUE`: keep the rows whose cell in `column` is `value` (numbers compare as numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The column.
    pub column: String,
    /// The value, as written.
    pub value: String,
}

impl std::str::FromStr for Filter {
    type Err = terrain_model::Error;
    fn from_str(s: &str) -> terrain_model::Result<Self> {
        match s.split_once('=') {
            Some((c, v)) if !c.trim().is_empty() => Ok(Filter {
                column: c.trim().to_string(),
                value: v.trim().to_string(),
            }),
            _ => Err(terrain_model::Error::config(
                "filter",
                s,
                "expected COLUMN=VALUE",
            )),
        }
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.column, self.value)
    }
}

/// Which part of a table is a landscape: the objective column, the hyperparameter columns and
/// the row filters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Selection {
    /// The objective column (minimised).
    pub objective: String,
    /// The hyperparameter columns; `None`: every column but the objective, the filtered
    /// columns and `exclude`.
    pub hyperparameters: Option<Vec<String>>,
    /// Row filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Columns never taken as hyperparameters by default (e.g. the column slices are compared by).
    pub exclude: Vec<String>,
}

impl Selection {
    /// The objective `objective`, every other column a hyperparameter, every row.
    pub fn new(objective: impl Into<String>) -> Self {
        Selection {
            objective: objective.into(),
            ..Default::default()
        }
    }
}

/// Configurations on an ordinal grid with their objective ("error"), and the neighbour graph.
#[derive(Debug, Clone)]
pub struct Landscape {
    /// Where it came from (file, slice), for errors and reports.
    pub source: String,
    /// Hyperparameter names.
    pub names: Vec<String>,
    /// Each hyperparameter's distinct values, ascending (numbers by value, text by bytes, empty
    /// cells first): its grid levels.
    pub levels: Vec<Vec<Value>>,
    /// Each row's grid-index vector (`index[row][hp]`).
    pub index: Vec<Vec<usize>>,
    /// Each row's objective.
    pub error: Vec<f64>,
    /// Each row's row number in the table it came from (before filtering).
    pub table_rows: Vec<usize>,
    neighbours: Vec<Vec<usize>>,
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a, b) {
        (Value::Null, Value::Null) => Equal,
        (Value::Null, _) => Less,
        (_, Value::Null) => Greater,
        (Value::Num(x), Value::Num(y)) => x.total_cmp(y),
        (Value::Num(_), Value::Text(_)) => Less,
        (Value::Text(_), Value::Num(_)) => Greater,
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
    }
}

impl Landscape {
    /// A landscape from hyperparameter columns (`columns[hp][row]`) and the objective per row.
    /// Refuses non-finite objectives and NaN hyperparameter values (naming the row) and two rows
    /// with the same configuration (naming both).
    pub fn new(
        source: impl Into<String>,
        names: Vec<String>,
        columns: Vec<Vec<Value>>,
        error: Vec<f64>,
        table_rows: Option<Vec<usize>>,
    ) -> Result<Self> {
        let source = source.into();
        let n = error.len();
        let table_rows = table_rows.unwrap_or_else(|| (0..n).collect());
        if columns.len() != names.len()
            || columns.iter().any(|c| c.len() != n)
            || table_rows.len() != n
        {
            return Err(Error::Format {
                source_name: source,
                reason: "hyperparameter columns, objective and row numbers differ in length".into(),
            });
        }
        if n == 0 {
            return Err(Error::Empty {
                source_name: source,
                reason: "no configurations to analyse".into(),
            });
        }
        if let Some(r) = error.iter().position(|e| !e.is_finite()) {
            return Err(Error::BadCell {
                source_name: source,
                column: "objective".into(),
                row: table_rows[r],
                value: error[r].to_string(),
                reason: "the objective must be a finite number".into(),
            });
        }
        let mut levels = Vec::with_capacity(names.len());
        let mut index = vec![vec![0usize; names.len()]; n];
        for (j, col) in columns.iter().enumerate() {
            if let Some(r) = col
                .iter()
                .position(|v| matches!(v, Value::Num(x) if !x.is_finite()))
            {
                return Err(Error::BadCell {
                    source_name: source,
                    column: names[j].clone(),
                    row: table_rows[r],
                    value: col[r].to_string(),
                    reason: "a hyperparameter value must not be NaN or infinite".into(),
                });
            }
            let mut lv: Vec<Value> = col.clone();
            lv.sort_by(cmp_values);
            lv.dedup_by(|a, b| cmp_values(a, b).is_eq());
            for (r, v) in col.iter().enumerate() {
                index[r][j] = lv
                    .binary_search_by(|x| cmp_values(x, v))
                    .expect("every value is a level");
            }
            levels.push(lv);
        }
        let mut at: HashMap<&[usize], usize> = HashMap::with_capacity(n);
        for (r, ix) in index.iter().enumerate() {
            if let Some(&first) = at.get(ix.as_slice()) {
                let values = names
                    .iter()
                    .zip(&columns)
                    .map(|(name, c)| format!("{name}={}", c[r]))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::DuplicateConfiguration {
                    source_name: source,
                    first: table_rows[first],
                    second: table_rows[r],
                    values,
                });
            }
            at.insert(ix, r);
        }
        let mut neighbours = vec![Vec::new(); n];
        let mut probe = vec![0usize; names.len()];
        for (r, ix) in index.iter().enumerate() {
            for j in 0..names.len() {
                // Only the +1 direction: each unordered pair is found once.
                probe.copy_from_slice(ix);
                probe[j] += 1;
                if let Some(&s) = at.get(probe.as_slice()) {
                    neighbours[r].push(s);
                    neighbours[s].push(r);
                }
            }
        }
        for nb in &mut neighbours {
            nb.sort_unstable();
        }
        Ok(Landscape {
            source,
            names,
            levels,
            index,
            error,
            table_rows,
            neighbours,
        })
    }

    /// The landscape a [`Selection`] picks out of a table.
    pub fn from_table(table: &RawTable, sel: &Selection) -> Result<Self> {
        let obj = table.column(&sel.objective)?;
        let mut rows: Vec<usize> = (0..table.n_rows()).collect();
        for f in &sel.filters {
            let c = table.column(&f.column)?;
            rows.retain(|&r| table.cells[c][r].matches(&f.value));
        }
        let names: Vec<String> = match &sel.hyperparameters {
            Some(h) => {
                for name in h {
                    table.column(name)?;
                    if *name == sel.objective {
                        return Err(Error::Format {
                            source_name: table.source.clone(),
                            reason: format!(
                                "`{name}` is the objective; it cannot also be a hyperparameter"
                            ),
                        });
                    }
                }
                h.clone()
            }
            None => table
                .columns
                .iter()
                .filter(|c| {
                    **c != sel.objective
                        && !sel.filters.iter().any(|f| f.column == **c)
                        && !sel.exclude.contains(c)
                })
                .cloned()
                .collect(),
        };
        let source = if sel.filters.is_empty() {
            table.source.clone()
        } else {
            let f: Vec<String> = sel.filters.iter().map(Filter::to_string).collect();
            format!("{} [{}]", table.source, f.join(", "))
        };
        if rows.is_empty() {
            return Err(Error::Empty {
                source_name: source,
                reason: if sel.filters.is_empty() {
                    "the table has no rows".into()
                } else {
                    "no row passes the filters".into()
                },
            });
        }
        if names.is_empty() {
            return Err(Error::Empty {
                source_name: source,
                reason: format!(
                    "no hyperparameter columns besides the objective `{}`",
                    sel.objective
                ),
            });
        }
        let mut error = Vec::with_capacity(rows.len());
        for &r in &rows {
            match &table.cells[obj][r] {
                Value::Num(x) if x.is_finite() => error.push(*x),
                // A text column (some other cell is not a number): this cell may still be one.
                Value::Text(t) if t.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
                    error.push(t.trim().parse().expect("checked"))
                }
                v => {
                    return Err(Error::BadCell {
                        source_name: table.source.clone(),
                        column: sel.objective.clone(),
                        row: r,
                        value: v.to_string(),
                        reason: match v {
                            Value::Num(_) => "the objective must be a finite number (NaN or infinite found; drop or filter failed configurations)",
                            Value::Null => "the objective is empty (drop or filter failed configurations)",
                            Value::Text(t) if t.trim().parse::<f64>().is_ok() => "the objective must be a finite number (NaN or infinite found; drop or filter failed configurations)",
                            Value::Text(_) => "the objective must be a number",
                        }
                        .into(),
                    });
                }
            }
        }
        let columns = names
            .iter()
            .map(|name| {
                let c = table.column(name).expect("checked above");
                rows.iter().map(|&r| table.cells[c][r].clone()).collect()
            })
            .collect();
        Landscape::new(source, names, columns, error, Some(rows))
    }

    /// Number of configurations.
    pub fn len(&self) -> usize {
        self.error.len()
    }

    /// Whether there are none (never, for a constructed landscape).
    pub fn is_empty(&self) -> bool {
        self.error.is_empty()
    }

    /// The neighbours of `row` (grid-index vectors at Manhattan distance 1), ascending.
    pub fn neighbours(&self, row: usize) -> &[usize] {
        &self.neighbours[row]
    }

    /// The value of hyperparameter `hp` at `row`.
    pub fn value(&self, row: usize, hp: usize) -> &Value {
        &self.levels[hp][self.index[row][hp]]
    }

    /// Manhattan distance between two rows' grid-index vectors.
    pub fn distance(&self, a: usize, b: usize) -> usize {
        self.index[a]
            .iter()
            .zip(&self.index[b])
            .map(|(x, y)| x.abs_diff(*y))
            .sum()
    }

    /// The row of the configuration with exactly these values (in `names` order), if present.
    pub fn find(&self, values: &[String]) -> Option<usize> {
        (0..self.len())
            .find(|&r| (0..self.names.len()).all(|j| self.value(r, j).to_string() == values[j]))
    }
}
