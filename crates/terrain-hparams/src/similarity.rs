//! Similarity of two landscapes over the configurations they share (landscape-metrics.md):
//! Spearman correlation over all of them and over the top 10%, top-10% overlap and Jaccard index.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Landscape, Result, stats, table::RawTable};

/// How alike two landscapes are. "First" and "second" are the two landscapes in the order given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    /// The first landscape.
    pub first: String,
    /// The second landscape.
    pub second: String,
    /// Configurations in both (the rows compared, in the first landscape's order).
    pub n_shared: usize,
    /// Configurations only in the first.
    pub n_only_first: usize,
    /// Configurations only in the second.
    pub n_only_second: usize,
    /// k = ceil(n_shared / 10): the size of each top-10% set.
    pub top10_k: usize,
    /// Spearman correlation of the two errors over all shared rows.
    pub spearman_all: Option<f64>,
    /// The same over the first landscape's top 10% (ranks within that subset).
    pub spearman_top10_first: Option<f64>,
    /// The same over the union of both top-10% sets.
    pub spearman_top10_union: Option<f64>,
    /// |T_first ∩ T_second| / k.
    pub top10_overlap: f64,
    /// |T_first ∩ T_second| / |T_first ∪ T_second|.
    pub top10_jaccard: f64,
}

/// The similarity of two error vectors over the same rows in the same order.
pub fn similarity_of(first: &str, second: &str, a: &[f64], b: &[f64]) -> Similarity {
    let n = a.len().min(b.len());
    let k = n.div_ceil(10);
    let top = |x: &[f64]| -> Vec<usize> {
        let mut o: Vec<usize> = (0..n).collect();
        o.sort_by(|&i, &j| x[i].total_cmp(&x[j]).then(i.cmp(&j)));
        o.truncate(k);
        o.sort_unstable();
        o
    };
    let (ta, tb) = (top(a), top(b));
    let inter = ta.iter().filter(|i| tb.binary_search(i).is_ok()).count();
    let mut union = ta.clone();
    union.extend(tb.iter().filter(|i| ta.binary_search(i).is_err()));
    union.sort_unstable();
    let sub = |rows: &[usize]| {
        let x: Vec<f64> = rows.iter().map(|&i| a[i]).collect();
        let y: Vec<f64> = rows.iter().map(|&i| b[i]).collect();
        stats::spearman(&x, &y)
    };
    Similarity {
        first: first.into(),
        second: second.into(),
        n_shared: n,
        n_only_first: 0,
        n_only_second: 0,
        top10_k: k,
        spearman_all: stats::spearman(&a[..n], &b[..n]),
        spearman_top10_first: sub(&ta),
        spearman_top10_union: sub(&union),
        top10_overlap: if k == 0 { 0.0 } else { inter as f64 / k as f64 },
        top10_jaccard: if union.is_empty() {
            0.0
        } else {
            inter as f64 / union.len() as f64
        },
    }
}

/// The similarity of two landscapes over the configurations they share, matched by their
/// hyperparameter values (the hyperparameter names must be the same, in any order).
pub fn similarity(first: &Landscape, second: &Landscape) -> Result<Similarity> {
    let not = |reason: String| Error::NotComparable {
        first: first.source.clone(),
        second: second.source.clone(),
        reason,
    };
    let mut a_names = first.names.clone();
    let mut b_names = second.names.clone();
    a_names.sort();
    b_names.sort();
    if a_names != b_names {
        return Err(not(format!(
            "the hyperparameters differ ({} versus {})",
            first.names.join(", "),
            second.names.join(", ")
        )));
    }
    let order: Vec<usize> = first
        .names
        .iter()
        .map(|n| {
            second
                .names
                .iter()
                .position(|m| m == n)
                .expect("same names")
        })
        .collect();
    let key_a = |r: usize| -> Vec<String> {
        (0..first.names.len())
            .map(|j| first.value(r, j).to_string())
            .collect()
    };
    let key_b = |r: usize| -> Vec<String> {
        order
            .iter()
            .map(|&j| second.value(r, j).to_string())
            .collect()
    };
    let in_b: HashMap<Vec<String>, usize> = (0..second.len()).map(|r| (key_b(r), r)).collect();
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for r in 0..first.len() {
        if let Some(&s) = in_b.get(&key_a(r)) {
            ea.push(first.error[r]);
            eb.push(second.error[s]);
        }
    }
    if ea.is_empty() {
        return Err(not("they share no configuration".into()));
    }
    let mut s = similarity_of(&first.source, &second.source, &ea, &eb);
    s.n_only_first = first.len() - ea.len();
    s.n_only_second = second.len() - ea.len();
    Ok(s)
}

/// One landscape per distinct value of `column` (ascending), the column itself not a
/// hyperparameter, each named `column=value`.
pub fn slices(
    table: &RawTable,
    sel: &crate::Selection,
    column: &str,
) -> Result<Vec<(String, Landscape)>> {
    let c = table.column(column)?;
    let mut sel = sel.clone();
    sel.exclude.push(column.into());
    if let Some(h) = &mut sel.hyperparameters {
        h.retain(|n| n != column);
    }
    let mut values = table.cells[c].clone();
    values.sort_by_key(ToString::to_string);
    values.dedup();
    if let Some(v) = values.first()
        && matches!(v, crate::table::Value::Num(_))
    {
        values.sort_by(|a, b| match (a, b) {
            (crate::table::Value::Num(x), crate::table::Value::Num(y)) => x.total_cmp(y),
            _ => a.to_string().cmp(&b.to_string()),
        });
    }
    if values.len() < 2 {
        return Err(Error::Empty {
            source_name: table.source.clone(),
            reason: format!(
                "column `{column}` has {} distinct value(s); comparing needs at least two",
                values.len()
            ),
        });
    }
    values
        .into_iter()
        .map(|v| {
            let mut s = sel.clone();
            s.filters.push(crate::Filter {
                column: column.into(),
                value: v.to_string(),
            });
            let name = format!("{column}={v}");
            Landscape::from_table(table, &s).map(|l| (name, l))
        })
        .collect()
}

/// Similarities of every pair of slices (first before second in the slice order).
pub fn pairwise(slices: &[(String, Landscape)]) -> Result<Vec<Similarity>> {
    let mut out = Vec::new();
    for i in 0..slices.len() {
        for j in i + 1..slices.len() {
            let mut s = similarity(&slices[i].1, &slices[j].1)?;
            s.first = slices[i].0.clone();
            s.second = slices[j].0.clone();
            out.push(s);
        }
    }
    Ok(out)
}
