//! The diagnosis questions and their labels, from the room-for-improvement (RFI) columns
//! (methods.md §2.4).
//!
//! - [`Question::Temp`] (`bs_failure`): is the temperature too small (`small`: lower the batch
//!   size) or too large (`large`)? `small` when `rfi_inc_temp > rfi_dec_temp`, `large` when less,
//!   `optimal` when equal.
//! - [`Question::Width`] (`width_vs_batch`): `width` when `rfi_width > max(rfi_inc_temp,
//!   rfi_dec_temp)`, `batch` when less, else `optimal`.
//! - [`Question::Data`] (`data_vs_batch`): the same with `rfi_data`.
//!
//! `optimal` rows have nothing to diagnose and are dropped. A table's label column is used
//! when present (its values are checked); without it the label is derived from the RFI columns.
//!
//! ```
//! use terrain_diagnose::question::{Label, Question};
//!
//! assert_eq!(Question::Temp.label_from_rfi(3.0, 1.0, 0.0, 0.0), Label::Class(1)); // small
//! assert_eq!(Question::Temp.classes()[1], "small");
//! assert_eq!(Question::Width.label_from_rfi(1.0, 1.0, 1.0, 0.0), Label::Optimal);
//! assert_eq!("data".parse::<Question>().unwrap(), Question::Data);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::table::MetricTable;
use crate::{Error, Result};

/// A diagnosis question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Question {
    /// Q1: temperature (batch size) too small or too large (`bs_failure`).
    Temp,
    /// Q2: model width or temperature (`width_vs_batch`).
    Width,
    /// Q2: data amount or temperature (`data_vs_batch`).
    Data,
}

/// A row's label for a question: a class index into [`Question::classes`], or `optimal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// A failure source: the index into [`Question::classes`].
    Class(usize),
    /// Nothing to improve in either direction (dropped from fits and tests).
    Optimal,
}

impl Question {
    /// Every question.
    pub const ALL: [Question; 3] = [Question::Temp, Question::Width, Question::Data];

    /// The compact name (`temp`, `width`, `data`).
    pub fn name(self) -> &'static str {
        match self {
            Question::Temp => "temp",
            Question::Width => "width",
            Question::Data => "data",
        }
    }

    /// The label column of the paper's tables.
    pub fn label_column(self) -> &'static str {
        match self {
            Question::Temp => "bs_failure",
            Question::Width => "width_vs_batch",
            Question::Data => "data_vs_batch",
        }
    }

    /// The two classes, sorted as scikit-learn sorts them (`np.unique`): the class index of a
    /// [`Label::Class`].
    pub fn classes(self) -> [&'static str; 2] {
        match self {
            Question::Temp => ["large", "small"],
            Question::Width => ["batch", "width"],
            Question::Data => ["batch", "data"],
        }
    }

    /// What a class means and what to change.
    pub fn advice(self, class: usize) -> &'static str {
        match (self, class) {
            (Question::Temp, 0) => {
                "temperature too high: raise the batch size or lower the learning rate"
            }
            (Question::Temp, _) => {
                "temperature too low: lower the batch size or raise the learning rate"
            }
            (Question::Width, 0) | (Question::Data, 0) => {
                "the temperature is the main failure source: tune the batch size first"
            }
            (Question::Width, _) => "the model is too small: make it wider",
            (Question::Data, _) => "there is too little data: train on more data",
        }
    }

    /// The RFI column of the load-like knob this question weighs against temperature.
    pub fn rfi_column(self) -> Option<&'static str> {
        match self {
            Question::Temp => None,
            Question::Width => Some("rfi_width"),
            Question::Data => Some("rfi_data"),
        }
    }

    /// The label from room-for-improvement values (methods.md §2.4).
    pub fn label_from_rfi(self, inc_temp: f64, dec_temp: f64, width: f64, data: f64) -> Label {
        let ord = |a: f64, b: f64, hi: usize, lo: usize| {
            if a > b {
                Label::Class(hi)
            } else if a < b {
                Label::Class(lo)
            } else {
                Label::Optimal
            }
        };
        match self {
            Question::Temp => ord(inc_temp, dec_temp, 1, 0),
            Question::Width => ord(width, inc_temp.max(dec_temp), 1, 0),
            Question::Data => ord(data, inc_temp.max(dec_temp), 1, 0),
        }
    }

    /// The labels of every row of `table`: from its label column when present (values checked:
    /// one of the two classes or `optimal`), else from its RFI columns.
    pub fn labels(self, table: &MetricTable) -> Result<Vec<Label>> {
        let column = self.label_column();
        let classes = self.classes();
        if table.has(column) {
            let texts = table.texts(column)?;
            return texts
                .iter()
                .enumerate()
                .map(|(row, t)| {
                    if t == "optimal" {
                        Ok(Label::Optimal)
                    } else if let Some(k) = classes.iter().position(|c| c == t) {
                        Ok(Label::Class(k))
                    } else {
                        Err(Error::UnknownLabel {
                            path: table.path().to_path_buf(),
                            column: column.into(),
                            row: row + 1,
                            line: row + 2,
                            value: t.clone(),
                            expected: format!("`{}`, `{}`, `optimal`", classes[0], classes[1]),
                        })
                    }
                })
                .collect();
        }
        if !table.has("rfi_inc_temp") {
            return Err(table.missing_column(
                column,
                ", and so are the `rfi_inc_temp` and `rfi_dec_temp` columns it can be derived from",
            ));
        }
        let inc = table.numbers("rfi_inc_temp")?;
        let dec = table.numbers("rfi_dec_temp")?;
        let other = match self.rfi_column() {
            Some(c) => table.numbers(c)?,
            None => vec![0.0; inc.len()],
        };
        Ok((0..inc.len())
            .map(|i| self.label_from_rfi(inc[i], dec[i], other[i], other[i]))
            .collect())
    }
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Question {
    type Err = terrain_model::Error;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Question::ALL
            .into_iter()
            .find(|q| q.name() == s || q.label_column() == s)
            .ok_or_else(|| {
                terrain_model::Error::config(
                    "question",
                    &s,
                    "must be `temp` (bs_failure), `width` (width_vs_batch) or `data` (data_vs_batch)",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for q in Question::ALL {
            assert_eq!(q.to_string().parse::<Question>().unwrap(), q);
            assert_eq!(q.label_column().parse::<Question>().unwrap(), q);
        }
        assert!("depth".parse::<Question>().is_err());
    }

    #[test]
    fn labels_follow_the_rfi_rules() {
        use Label::*;
        let t = Question::Temp;
        assert_eq!(t.label_from_rfi(0.0, 2.0, 0.0, 0.0), Class(0));
        assert_eq!(t.label_from_rfi(1.0, 1.0, 9.0, 9.0), Optimal);
        let w = Question::Width;
        assert_eq!(w.label_from_rfi(1.0, 3.0, 4.0, 0.0), Class(1));
        assert_eq!(w.label_from_rfi(1.0, 3.0, 2.0, 0.0), Class(0));
        let d = Question::Data;
        assert_eq!(d.label_from_rfi(1.0, 3.0, 0.0, 3.0), Optimal);
    }
}
