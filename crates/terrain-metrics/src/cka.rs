//! Linear CKA (Kornblith et al. 2019) between the outputs of models of one architecture, on the
//! same mixup-augmented inputs (the MD tree's similarity between seeds).

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use terrain_model::{
    Model,
    data::{self, Batch, Dataset, Task},
};

use crate::{Error, Result, direction};

/// Which outputs are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outputs {
    /// Class probabilities (the MD tree's choice).
    Softmax,
    /// Raw network outputs.
    Logits,
}

impl std::str::FromStr for Outputs {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "softmax" => Ok(Outputs::Softmax),
            "logits" => Ok(Outputs::Logits),
            _ => Err(Error::config("outputs", s, "expected softmax or logits")),
        }
    }
}

impl std::fmt::Display for Outputs {
    /// `softmax` or `logits`, which parse back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outputs::Softmax => "softmax",
            Outputs::Logits => "logits",
        })
    }
}

/// Settings of [`cka_models`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CkaConfig {
    /// Which outputs. Default softmax.
    pub outputs: Outputs,
    /// Mixup α of the inputs (`0`: plain inputs). Default 16.
    pub mixup_alpha: f64,
    /// Rows used (all rows when at least the data size). Default 768 (6 batches of 128).
    pub samples: usize,
    /// Rows per mixup batch (one λ and partner permutation per batch). Default 128.
    pub batch_size: usize,
    /// Seed of the row sample and the mixup draws. Default 0.
    pub seed: u64,
}

impl Default for CkaConfig {
    fn default() -> Self {
        CkaConfig {
            outputs: Outputs::Softmax,
            mixup_alpha: 16.0,
            samples: 768,
            batch_size: 128,
            seed: 0,
        }
    }
}

impl CkaConfig {
    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        terrain_model::config::non_negative("mixup_alpha", self.mixup_alpha)?;
        terrain_model::config::at_least("samples", self.samples, 1)?;
        terrain_model::config::count("samples", self.samples)?;
        terrain_model::config::at_least("batch_size", self.batch_size, 1)?;
        Ok(())
    }
}

/// Linear CKA with biased centring between `x` `[n, p]` and `y` `[n, q]` (row-major):
/// `‖Yᶜᵀ Xᶜ‖²_F / (‖Xᶜᵀ Xᶜ‖_F ‖Yᶜᵀ Yᶜ‖_F)` with column-centred `Xᶜ`, `Yᶜ`, which equals
/// `⟨HKH, HLH⟩_F / (‖HKH‖_F ‖HLH‖_F)` for `K = XXᵀ`, `L = YYᵀ`. NaN when either side is constant.
///
/// ```
/// use terrain_metrics::cka::linear_cka;
/// let x = [1.0, 2.0, 3.0, 5.0, 0.0, 1.0];
/// assert!((linear_cka(&x, 2, &x, 2) - 1.0).abs() < 1e-12);
/// ```
pub fn linear_cka(x: &[f64], p: usize, y: &[f64], q: usize) -> f64 {
    let n = x.len().checked_div(p).unwrap_or(0);
    if n == 0 || q == 0 || y.len() != n * q {
        return f64::NAN;
    }
    let centre = |m: &[f64], k: usize| -> Vec<f64> {
        let mut c = m.to_vec();
        for j in 0..k {
            let mean = (0..n).map(|i| m[i * k + j]).sum::<f64>() / n as f64;
            for i in 0..n {
                c[i * k + j] -= mean;
            }
        }
        c
    };
    let (xc, yc) = (centre(x, p), centre(y, q));
    // ‖AᵀB‖²_F for column-centred A [n, a], B [n, b].
    let cross = |a: &[f64], ka: usize, b: &[f64], kb: usize| -> f64 {
        let mut s = 0.0;
        for u in 0..ka {
            for v in 0..kb {
                let d: f64 = (0..n).map(|i| a[i * ka + u] * b[i * kb + v]).sum();
                s += d * d;
            }
        }
        s
    };
    let xy = cross(&yc, q, &xc, p);
    let xx = cross(&xc, p, &xc, p).sqrt();
    let yy = cross(&yc, q, &yc, q).sqrt();
    xy / (xx * yy)
}

/// One ordered pair's CKA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CkaPair {
    /// Index of the first model.
    pub a: usize,
    /// Index of the second model.
    pub b: usize,
    /// Their CKA.
    pub cka: f64,
}

/// CKA between every ordered pair of models and its mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CkaResult {
    /// The mean over ordered pairs.
    pub cka: f64,
    /// Every ordered pair `(i, j)`, `i ≠ j`.
    pub pairs: Vec<CkaPair>,
    /// Rows compared.
    pub samples: usize,
}

/// The inputs CKA compares the models on: `samples` rows of `data` (all when that is at least its
/// size; else a stratified sample), mixed up batch by batch with `mixup_alpha` (`0`: as they are).
pub fn inputs(data: &Dataset, config: &CkaConfig) -> Result<Tensor> {
    config.check()?;
    let rows = if config.samples >= data.len() {
        data.clone()
    } else {
        data.sample_rows(config.samples, config.seed)?
    };
    if config.mixup_alpha == 0.0 {
        return Ok(rows.x.clone());
    }
    let classes = rows.classes().unwrap_or(1);
    let mut parts = Vec::new();
    for (k, b) in rows.batches(config.batch_size, None, false)?.enumerate() {
        let b: Batch = b?;
        let seed = terrain_model::rng::stream_seed(config.seed, k as u64 + 1);
        parts.push(data::mixup(&b, config.mixup_alpha, classes, seed)?.x);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// A model's outputs on `x` (eval mode) as an f64 row-major matrix and its width.
pub fn outputs(model: &Model, x: &Tensor, which: Outputs) -> Result<(Vec<f64>, usize)> {
    let out = model.forward_eval(x)?;
    let out = match which {
        Outputs::Logits => out,
        Outputs::Softmax => candle_nn_softmax(&out)?,
    };
    let q = out.dim(1)?;
    Ok((
        out.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
        q,
    ))
}

fn candle_nn_softmax(t: &Tensor) -> Result<Tensor> {
    let max = t.max_keepdim(1)?;
    let e = t.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(1)?)?)
}

/// Linear CKA between the outputs of every ordered pair of `models` (at least two, one
/// architecture; `names` name them in errors) on the same inputs from `data`.
pub fn cka_models(
    models: &[&Model],
    names: &[String],
    data: &Dataset,
    config: &CkaConfig,
) -> Result<CkaResult> {
    config.check()?;
    if models.len() < 2 {
        return Err(Error::TooFewModels {
            what: "CKA".into(),
            needed: 2,
            given: models.len(),
        });
    }
    for (k, m) in models.iter().enumerate().skip(1) {
        direction::same_architecture("CKA", models[0], m, &names[0], &names[k])?;
    }
    if config.outputs == Outputs::Softmax && matches!(data.task, Task::Regression { .. }) {
        return Err(Error::NotClassification {
            what: "CKA on softmax outputs".into(),
            data: data.name.clone(),
            reason:
                "a regression model has no class probabilities; compare its raw outputs (logits)"
                    .into(),
        });
    }
    terrain_model::loss::check_fits(models[0], data)?;
    let x = inputs(data, config)?;
    let outs = models
        .iter()
        .map(|m| outputs(m, &x, config.outputs))
        .collect::<Result<Vec<_>>>()?;
    let mut pairs = Vec::new();
    for i in 0..models.len() {
        for j in 0..models.len() {
            if i != j {
                let v = linear_cka(&outs[i].0, outs[i].1, &outs[j].0, outs[j].1);
                pairs.push(CkaPair { a: i, b: j, cka: v });
            }
        }
    }
    let cka = pairs.iter().map(|p| p.cka).sum::<f64>() / pairs.len() as f64;
    Ok(CkaResult {
        cka,
        pairs,
        samples: x.dim(0)?,
    })
}
