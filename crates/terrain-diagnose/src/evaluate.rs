//! The evaluation protocol of the MD tree paper (methods.md §2.6): fit a diagnoser on sampled
//! configurations of one table (the clean collection), test it on every configuration of
//! another (the noisy collection), and average the accuracy over seeds.
//!
//! Per seed: the training table's rows minus `optimal` (and, for the data question, minus
//! models narrower than 32) are sampled by [`Sampling`]; the method is fitted on them; the
//! accuracy is measured on the test table's rows minus `optimal` (and the same width filter).
//!
//! Methods ([`Method`]):
//! - `mdtree` / `mdtree-cka`: the fixed-shape MD tree of the question ([`TreeKind`]);
//! - `mdtree-single`: the question's single-checkpoint tree (no mode connectivity, no CKA);
//! - `hyper-dt`: CART on hyperparameters: (log_data_amount, log_para_amount) for `temp`,
//!   log_data_amount for `width`, log_para_amount for `data` (the authors' scripts);
//! - `valid-dt`: CART on (train_error, train_loss, test_loss, test_error).
//!
//! CART trees use `random_state` = the sampling seed unless a fixed one is set (the
//! published Valid+DT figures match the per-seed state; the authors' script as written passes
//! 42 to every tree).
//!
//! ```no_run
//! use terrain_diagnose::evaluate::{evaluate, EvalConfig, Method};
//! use terrain_diagnose::question::Question;
//! use terrain_diagnose::table::MetricTable;
//!
//! let clean = MetricTable::read("dataframe_normal_public.csv".as_ref()).unwrap();
//! let noisy = MetricTable::read("dataframe_noise_public.csv".as_ref()).unwrap();
//! let cfg = EvalConfig::new(Question::Temp, Method::MdTree, "random:8".parse().unwrap());
//! let e = evaluate(&clean, &noisy, &cfg).unwrap();
//! println!("{:.2} % over {} test configurations", e.accuracy, e.n_test);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::brent::BrentConfig;
use crate::cart::{Cart, CartConfig};
use crate::mdtree::{Bounds, MdTree, TreeKind};
use crate::question::{Label, Question};
use crate::sample::Sampling;
use crate::table::MetricTable;
use crate::{Error, Result};

/// The paper's seeds.
pub const PAPER_SEEDS: [u32; 5] = [42, 90, 38, 18, 72];

/// A diagnosis method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The MD tree of the question.
    #[serde(rename = "mdtree")]
    MdTree,
    /// The MD tree with CKA instead of the Hessian trace (temperature question only).
    #[serde(rename = "mdtree-cka")]
    MdTreeCka,
    /// The single-checkpoint tree of the question (`temp-single`, `width-single`,
    /// `data-single`: train_error and Hessian features only).
    #[serde(rename = "mdtree-single")]
    MdTreeSingle,
    /// CART on hyperparameters ("Hyper + DT").
    HyperDt,
    /// CART on validation metrics ("Valid + DT").
    ValidDt,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 5] = [
        Method::MdTree,
        Method::MdTreeCka,
        Method::MdTreeSingle,
        Method::HyperDt,
        Method::ValidDt,
    ];

    /// The compact name.
    pub fn name(self) -> &'static str {
        match self {
            Method::MdTree => "mdtree",
            Method::MdTreeCka => "mdtree-cka",
            Method::MdTreeSingle => "mdtree-single",
            Method::HyperDt => "hyper-dt",
            Method::ValidDt => "valid-dt",
        }
    }

    /// The MD tree shape this method fits for `question`, if it is an MD tree.
    pub fn tree_kind(self, question: Question) -> Option<TreeKind> {
        match (self, question) {
            (Method::MdTree, Question::Temp) => Some(TreeKind::Temp),
            (Method::MdTree, Question::Width) => Some(TreeKind::Width),
            (Method::MdTree, Question::Data) => Some(TreeKind::Data),
            (Method::MdTreeCka, Question::Temp) => Some(TreeKind::TempCka),
            (Method::MdTreeSingle, q) => Some(TreeKind::single(q)),
            _ => None,
        }
    }

    /// The table columns this method reads for `question`, in order.
    pub fn features(self, question: Question) -> Vec<&'static str> {
        match self {
            Method::MdTree | Method::MdTreeCka | Method::MdTreeSingle => self
                .tree_kind(question)
                .map(|k| k.features().to_vec())
                .unwrap_or_default(),
            Method::HyperDt => match question {
                Question::Temp => vec!["log_data_amount", "log_para_amount"],
                Question::Width => vec!["log_data_amount"],
                Question::Data => vec!["log_para_amount"],
            },
            Method::ValidDt => vec!["train_error", "train_loss", "test_loss", "test_error"],
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = terrain_model::Error;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        Method::ALL
            .into_iter()
            .find(|m| m.name() == t)
            .ok_or_else(|| {
                terrain_model::Error::config(
                    "method",
                    s,
                    "must be one of `mdtree`, `mdtree-cka`, `mdtree-single`, `hyper-dt`, \
                     `valid-dt`",
                )
            })
    }
}

/// Settings of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// The question.
    pub question: Question,
    /// The method.
    pub method: Method,
    /// How the training rows are sampled.
    pub sampling: Sampling,
    /// The seeds (one fit per seed; the accuracy is their mean).
    pub seeds: Vec<u32>,
    /// Keep only models at least this wide (both tables); `new` sets 32 for the data question.
    pub min_width: Option<f64>,
    /// CART `random_state`: `None` uses each sampling seed.
    pub dt_random_state: Option<u32>,
    /// CART depth (4 in the paper).
    pub max_depth: usize,
    /// The threshold search of the MD tree.
    pub brent: BrentConfig,
    /// The MD tree's search intervals and initial thresholds (`paper` in `new`).
    #[serde(default)]
    pub bounds: Bounds,
}

impl EvalConfig {
    /// The paper's settings for `question`, `method` and `sampling`: seeds 42, 90, 38, 18, 72;
    /// width ≥ 32 for the data question; depth-4 CART seeded per seed.
    pub fn new(question: Question, method: Method, sampling: Sampling) -> EvalConfig {
        EvalConfig {
            question,
            method,
            sampling,
            seeds: PAPER_SEEDS.to_vec(),
            min_width: (question == Question::Data).then_some(32.0),
            dt_random_state: None,
            max_depth: 4,
            brent: BrentConfig::default(),
            bounds: Bounds::Paper,
        }
    }

    /// Checks the settings, naming the field at fault.
    pub fn check(&self) -> terrain_model::Result<()> {
        if self.method == Method::MdTreeCka && self.question != Question::Temp {
            return Err(terrain_model::Error::config(
                "method",
                self.method,
                format!("answers the `temp` question only, not `{}`", self.question),
            ));
        }
        if self.seeds.is_empty() {
            return Err(terrain_model::Error::config(
                "seeds",
                "[]",
                "needs at least one seed",
            ));
        }
        if let Some(w) = self.min_width
            && !w.is_finite()
        {
            return Err(terrain_model::Error::config(
                "min_width",
                w,
                "must be a finite number",
            ));
        }
        self.sampling.check()?;
        CartConfig {
            max_depth: self.max_depth,
            random_state: 0,
        }
        .check()?;
        self.brent.check()
    }
}

/// The result of [`evaluate`] (the JSON of `diagnose evaluate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean test accuracy over the seeds, in percent.
    pub accuracy: f64,
    /// Test accuracy of each seed, in percent.
    pub per_seed: Vec<f64>,
    /// The number of test configurations (rows of the test table that were scored).
    pub n_test: usize,
    /// Training configurations of each seed.
    pub n_train: Vec<usize>,
    /// Fitted MD tree thresholds of each seed (empty for CART methods).
    pub thresholds: Vec<Vec<f64>>,
    /// Training accuracy of each seed, in percent.
    pub train_accuracy: Vec<f64>,
    /// The seeds.
    pub seeds: Vec<u32>,
    /// The question.
    pub question: Question,
    /// The method.
    pub method: Method,
    /// The sampling, in its compact form.
    pub sample: String,
    /// The features the method read, in order.
    pub features: Vec<String>,
    /// The MD tree's bounds rule (`paper` or `data`).
    pub bounds: Bounds,
}

/// The rows of a table a question and method can use: features, labels, data and width.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Table row of each kept row (0-based).
    pub rows: Vec<usize>,
    /// Features of each kept row, in the method's order.
    pub x: Vec<Vec<f64>>,
    /// Class index of each kept row.
    pub y: Vec<usize>,
    /// The `data` column of each kept row.
    pub data: Vec<f64>,
    /// The `width` column of each kept row.
    pub width: Vec<f64>,
}

/// Reads the rows of `table` that `question` can score (not `optimal`, at least `min_width`
/// wide) with the given feature columns.
pub fn prepare(
    table: &MetricTable,
    question: Question,
    features: &[&str],
    min_width: Option<f64>,
) -> Result<Prepared> {
    let labels = question.labels(table)?;
    let width = table.numbers("width")?;
    let data = table.numbers("data")?;
    let cols: Vec<Vec<f64>> = features
        .iter()
        .map(|f| table.numbers(f))
        .collect::<Result<_>>()?;
    let mut p = Prepared {
        rows: Vec::new(),
        x: Vec::new(),
        y: Vec::new(),
        data: Vec::new(),
        width: Vec::new(),
    };
    for (i, label) in labels.iter().enumerate() {
        let Label::Class(c) = *label else { continue };
        if min_width.is_some_and(|w| width[i] < w) {
            continue;
        }
        p.rows.push(i);
        p.x.push(cols.iter().map(|c| c[i]).collect());
        p.y.push(c);
        p.data.push(data[i]);
        p.width.push(width[i]);
    }
    Ok(p)
}

fn subset<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| v[i].clone()).collect()
}

/// Fits `config.method` on sampled rows of `train` for each seed and scores it on `test`.
pub fn evaluate(
    train: &MetricTable,
    test: &MetricTable,
    config: &EvalConfig,
) -> Result<Evaluation> {
    config.check()?;
    let q = config.question;
    let features = config.method.features(q);
    let tr = prepare(train, q, &features, config.min_width)?;
    let te = prepare(test, q, &features, config.min_width)?;
    if te.y.is_empty() {
        return Err(Error::EmptySample {
            path: test.path().to_path_buf(),
            sampling: "all".into(),
            reason: format!(
                "keeps no rows: the test table has no `{q}` rows{} that are not `optimal`",
                config
                    .min_width
                    .map(|w| format!(" of width ≥ {w}"))
                    .unwrap_or_default()
            ),
        });
    }
    let mut out = Evaluation {
        accuracy: 0.0,
        per_seed: Vec::new(),
        n_test: te.y.len(),
        n_train: Vec::new(),
        thresholds: Vec::new(),
        train_accuracy: Vec::new(),
        seeds: config.seeds.clone(),
        question: q,
        method: config.method,
        sample: config.sampling.to_string(),
        features: features.iter().map(|s| s.to_string()).collect(),
        bounds: config.bounds,
    };
    let empty = |reason: String| Error::EmptySample {
        path: train.path().to_path_buf(),
        sampling: config.sampling.to_string(),
        reason,
    };
    for &seed in &config.seeds {
        let keep = config
            .sampling
            .select(&tr.data, &tr.width, seed)
            .map_err(empty)?;
        if keep.is_empty() {
            return Err(empty(format!(
                "keeps no rows of the {} candidate rows (seed {seed})",
                tr.y.len()
            )));
        }
        let x = subset(&tr.x, &keep);
        let y = subset(&tr.y, &keep);
        let (test_correct, train_acc, thresholds) = if let Some(kind) = config.method.tree_kind(q) {
            let fit = MdTree::fit_with(kind, &x, &y, &config.brent, config.bounds)?;
            let correct =
                te.x.iter()
                    .zip(&te.y)
                    .map(|(r, c)| fit.tree.predict(r).map(|p| usize::from(p == *c)))
                    .sum::<Result<usize>>()?;
            (correct, fit.train_accuracy, fit.tree.thresholds)
        } else {
            let cart = Cart::fit(
                &x,
                &y,
                2,
                &CartConfig {
                    max_depth: config.max_depth,
                    random_state: config.dt_random_state.unwrap_or(seed),
                },
            )?;
            let count = |rows: &[Vec<f64>], labels: &[usize]| {
                rows.iter()
                    .zip(labels)
                    .map(|(r, c)| cart.predict(r).map(|p| usize::from(p == *c)))
                    .sum::<Result<usize>>()
            };
            let correct = count(&te.x, &te.y)?;
            let train_correct = count(&x, &y)?;
            (correct, train_correct as f64 / y.len() as f64, Vec::new())
        };
        out.per_seed
            .push(100.0 * test_correct as f64 / te.y.len() as f64);
        out.train_accuracy.push(100.0 * train_acc);
        out.n_train.push(keep.len());
        out.thresholds.push(thresholds);
    }
    out.accuracy = out.per_seed.iter().sum::<f64>() / out.per_seed.len() as f64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip_in_text_and_serde() {
        for m in Method::ALL {
            assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert!("forest".parse::<Method>().is_err());
    }

    #[test]
    fn the_config_checks_its_fields() {
        let ok = EvalConfig::new(Question::Temp, Method::MdTree, Sampling::All);
        assert!(ok.check().is_ok());
        assert_eq!(
            EvalConfig::new(Question::Data, Method::ValidDt, Sampling::All).min_width,
            Some(32.0)
        );
        let mut bad = ok.clone();
        bad.max_depth = 0;
        assert!(bad.check().unwrap_err().to_string().contains("max_depth"));
        let mut bad = ok.clone();
        bad.min_width = Some(f64::NAN);
        assert!(bad.check().unwrap_err().to_string().contains("min_width"));
        let mut bad = ok;
        bad.sampling = Sampling::Random(0);
        assert!(bad.check().unwrap_err().to_string().contains("sample"));
    }
}
