//! How the training configurations are sampled (methods.md §2.6, the authors'
//! `method/method_utils.py::sample_train_set`), drawing exactly what their code draws.
//!
//! Compact forms (`FromStr` + `Display`, round-trip):
//! - `random:K`: K random (data, width) cells, each with all its batch sizes (dataset transfer);
//!   the cells are `[(d, w) for d in data_list for w in width_list]` with both lists the sorted
//!   distinct values of the candidate rows, and the draw is `np.random.seed(seed);
//!   np.random.choice(range(len(cells)), K, replace=False)`;
//! - `random-data:K` / `random-width:K`: K random data fractions or widths,
//!   `np.random.choice(list, K, replace=False)`;
//! - `data-limit:K`: rows with `data <= K` (data in tenths of the training set, so K·10 %);
//! - `width-limit:W`: rows with `width <= W`;
//! - `all`: every row.
//!
//! Selected rows keep table order.
//!
//! ```
//! use terrain_diagnose::sample::Sampling;
//!
//! let s: Sampling = "random:8".parse().unwrap();
//! assert_eq!(s.to_string(), "random:8");
//! // 2 data fractions x 2 widths, one row per cell.
//! let data = [1.0, 1.0, 2.0, 2.0];
//! let width = [2.0, 3.0, 2.0, 3.0];
//! assert_eq!("data-limit:1".parse::<Sampling>().unwrap().select(&data, &width, 42).unwrap(), vec![0, 1]);
//! assert_eq!(s.select(&data, &width, 42).unwrap_err(), "asks for 8 of 4 (data, width) cells");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::numpy_rng::Mt19937;

/// A sampling of training rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Sampling {
    /// K random (data, width) cells with all their batch sizes.
    Random(usize),
    /// Rows with `data <= K`.
    DataLimit(f64),
    /// Rows with `width <= W`.
    WidthLimit(f64),
    /// K random data fractions.
    RandomData(usize),
    /// K random widths.
    RandomWidth(usize),
    /// Every row.
    All,
}

/// Sorted distinct values.
fn distinct(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

fn choose(mt: &mut Mt19937, n: usize, k: usize, what: &str) -> Result<Vec<usize>, String> {
    mt.choice_without_replacement(n, k)
        .ok_or_else(|| format!("asks for {k} of {n} {what}"))
}

impl Sampling {
    /// Whether the sampling draws at random (so the seed matters).
    pub fn is_random(self) -> bool {
        matches!(
            self,
            Sampling::Random(_) | Sampling::RandomData(_) | Sampling::RandomWidth(_)
        )
    }

    /// The indices (into the given rows, ascending) that the sampling keeps, for the rows'
    /// `data` and `width` values and `seed`. The error says why nothing can be drawn (more
    /// cells asked for than exist); an empty selection is returned as it is.
    pub fn select(self, data: &[f64], width: &[f64], seed: u32) -> Result<Vec<usize>, String> {
        let n = data.len().min(width.len());
        let rows = 0..n;
        let keep: Vec<usize> = match self {
            Sampling::All => rows.collect(),
            Sampling::DataLimit(k) => rows.filter(|&i| data[i] <= k).collect(),
            Sampling::WidthLimit(w) => rows.filter(|&i| width[i] <= w).collect(),
            Sampling::Random(k) => {
                let dl = distinct(&data[..n]);
                let wl = distinct(&width[..n]);
                let mut mt = Mt19937::new(seed);
                let picked = choose(&mut mt, dl.len() * wl.len(), k, "(data, width) cells")?;
                let cells: Vec<(f64, f64)> = picked
                    .iter()
                    .map(|&c| (dl[c / wl.len()], wl[c % wl.len()]))
                    .collect();
                rows.filter(|&i| cells.contains(&(data[i], width[i])))
                    .collect()
            }
            Sampling::RandomData(k) => {
                let dl = distinct(&data[..n]);
                let mut mt = Mt19937::new(seed);
                let picked: Vec<f64> = choose(&mut mt, dl.len(), k, "data fractions")?
                    .into_iter()
                    .map(|i| dl[i])
                    .collect();
                rows.filter(|&i| picked.contains(&data[i])).collect()
            }
            Sampling::RandomWidth(k) => {
                let wl = distinct(&width[..n]);
                let mut mt = Mt19937::new(seed);
                let picked: Vec<f64> = choose(&mut mt, wl.len(), k, "widths")?
                    .into_iter()
                    .map(|i| wl[i])
                    .collect();
                rows.filter(|&i| picked.contains(&width[i])).collect()
            }
        };
        Ok(keep)
    }

    /// Checks the sampling: counts ≥ 1, limits finite.
    pub fn check(&self) -> terrain_model::Result<()> {
        match *self {
            Sampling::Random(k) | Sampling::RandomData(k) | Sampling::RandomWidth(k) => {
                terrain_model::config::count("sample", k)
            }
            Sampling::DataLimit(v) | Sampling::WidthLimit(v) => {
                if v.is_finite() {
                    Ok(())
                } else {
                    Err(terrain_model::Error::config(
                        "sample",
                        self,
                        "the limit must be a finite number",
                    ))
                }
            }
            Sampling::All => Ok(()),
        }
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sampling::Random(k) => write!(f, "random:{k}"),
            Sampling::DataLimit(k) => write!(f, "data-limit:{k}"),
            Sampling::WidthLimit(w) => write!(f, "width-limit:{w}"),
            Sampling::RandomData(k) => write!(f, "random-data:{k}"),
            Sampling::RandomWidth(k) => write!(f, "random-width:{k}"),
            Sampling::All => write!(f, "all"),
        }
    }
}

impl FromStr for Sampling {
    type Err = terrain_model::Error;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        let bad = |why: &str| terrain_model::Error::config("sample", s, why);
        const FORMS: &str = "must be `random:K`, `data-limit:K`, `width-limit:W`, `random-data:K`, `random-width:K` or `all`";
        if t == "all" {
            return Ok(Sampling::All);
        }
        let (kind, value) = t.split_once(':').ok_or_else(|| bad(FORMS))?;
        let count = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|&k| k >= 1)
                .ok_or_else(|| bad("the count must be a whole number ≥ 1"))
        };
        let limit = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad("the limit must be a finite number"))
        };
        let sampling = match kind {
            "random" => Sampling::Random(count()?),
            "random-data" => Sampling::RandomData(count()?),
            "random-width" => Sampling::RandomWidth(count()?),
            "data-limit" => Sampling::DataLimit(limit()?),
            "width-limit" => Sampling::WidthLimit(limit()?),
            _ => return Err(bad(FORMS)),
        };
        Ok(sampling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_round_trip() {
        for s in [
            "random:8",
            "data-limit:1",
            "width-limit:2.5",
            "random-data:3",
            "random-width:1",
            "all",
        ] {
            let parsed: Sampling = s.parse().unwrap();
            assert_eq!(parsed.to_string(), s);
            assert_eq!(parsed.to_string().parse::<Sampling>().unwrap(), parsed);
        }
        assert_eq!(
            "data_limit:1".parse::<Sampling>().unwrap(),
            Sampling::DataLimit(1.0)
        );
        for bad in [
            "random",
            "random:0",
            "random:-1",
            "random:x",
            "width-limit:nan",
            "fancy:3",
            "",
        ] {
            assert!(bad.parse::<Sampling>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_keep_table_order() {
        let data = [3.0, 1.0, 2.0, 1.0];
        let width = [8.0, 2.0, 2.0, 8.0];
        assert_eq!(
            Sampling::DataLimit(2.0).select(&data, &width, 0).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            Sampling::WidthLimit(2.0).select(&data, &width, 0).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            Sampling::All.select(&data, &width, 0).unwrap(),
            vec![0, 1, 2, 3]
        );
        assert!(
            Sampling::DataLimit(0.5)
                .select(&data, &width, 0)
                .unwrap()
                .is_empty()
        );
    }
}
