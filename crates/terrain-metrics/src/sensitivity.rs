//! Input-feature sensitivity after Faroz 2024: per-feature means of the first, second and third
//! derivatives of the per-sample loss along each input feature, compared with each feature's
//! Spearman correlation with the target, across retrainings.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use terrain_curvature::input::{InputDerivativeConfig, input_derivatives};
use terrain_model::{
    Model,
    data::{Dataset, Targets},
    loss::LossKind,
    run::{PreparedData, RunSpec},
    train::Trainer,
};

use crate::{Error, Result};

/// Per-feature summaries of one model's input derivatives (arrays over features).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSensitivity {
    /// Mean over rows of `∂ℓ/∂x_j`.
    pub mean_d1: Vec<f64>,
    /// Mean over rows of `∂²ℓ/∂x_j²`.
    pub mean_d2: Vec<f64>,
    /// Mean over rows of `∂³ℓ/∂x_j³`.
    pub mean_d3: Vec<f64>,
    /// Mean over rows of `|∂ℓ/∂x_j|`.
    pub mean_abs_d1: Vec<f64>,
    /// Mean over rows of `|∂²ℓ/∂x_j²|`.
    pub mean_abs_d2: Vec<f64>,
    /// Mean over rows of `|∂³ℓ/∂x_j³|`.
    pub mean_abs_d3: Vec<f64>,
}

fn column_means(t: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let t = t.to_dtype(DType::F64)?;
    Ok((
        t.mean(0)?.to_vec1::<f64>()?,
        t.abs()?.mean(0)?.to_vec1::<f64>()?,
    ))
}

/// The per-feature derivative summaries of `model` on every row of `data`.
pub fn sensitivity(
    model: &Model,
    data: &Dataset,
    loss: LossKind,
    batch_size: usize,
) -> Result<FeatureSensitivity> {
    let d = input_derivatives(
        model,
        data,
        &InputDerivativeConfig {
            batch_size,
            ..InputDerivativeConfig::new(loss)
        },
    )?;
    let (mean_d1, mean_abs_d1) = column_means(&d.d1)?;
    let missing = || {
        Error::config(
            "order",
            3,
            "the input derivatives came back without orders 2 and 3",
        )
    };
    let (mean_d2, mean_abs_d2) = column_means(d.d2.as_ref().ok_or_else(missing)?)?;
    let (mean_d3, mean_abs_d3) = column_means(d.d3.as_ref().ok_or_else(missing)?)?;
    Ok(FeatureSensitivity {
        mean_d1,
        mean_d2,
        mean_d3,
        mean_abs_d1,
        mean_abs_d2,
        mean_abs_d3,
    })
}

/// Ranks (1-based, ties get their average rank).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut k = 0;
    while k < idx.len() {
        let mut e = k;
        while e + 1 < idx.len() && v[idx[e + 1]] == v[idx[k]] {
            e += 1;
        }
        let avg = (k + e) as f64 / 2.0 + 1.0;
        for &i in &idx[k..=e] {
            r[i] = avg;
        }
        k = e + 1;
    }
    r
}

/// Pearson correlation (NaN when either side is constant or the lengths differ).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.len() < 2 {
        return f64::NAN;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman's rank correlation: Pearson on average ranks.
///
/// ```
/// use terrain_metrics::sensitivity::spearman;
/// assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 40.0, 90.0]), 1.0);
/// assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
/// ```
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Kendall's coefficient of concordance W of `m` rankings (rows) of `n` items, with the tie
/// correction: 1 when all rankings agree, near 0 when unrelated.
pub fn kendall_w(scores: &[Vec<f64>]) -> f64 {
    let m = scores.len();
    let n = scores.first().map_or(0, Vec::len);
    if m < 2 || n < 2 {
        return f64::NAN;
    }
    let rs: Vec<Vec<f64>> = scores.iter().map(|s| ranks(s)).collect();
    let totals: Vec<f64> = (0..n).map(|j| rs.iter().map(|r| r[j]).sum()).collect();
    let mean = totals.iter().sum::<f64>() / n as f64;
    let s: f64 = totals.iter().map(|t| (t - mean) * (t - mean)).sum();
    // Tie correction: Σ over rankings and tie groups of (t³ − t).
    let mut ties = 0.0;
    for r in &rs {
        let mut sorted = r.clone();
        sorted.sort_by(f64::total_cmp);
        let mut k = 0;
        while k < n {
            let mut e = k;
            while e + 1 < n && sorted[e + 1] == sorted[k] {
                e += 1;
            }
            let t = (e - k + 1) as f64;
            ties += t * t * t - t;
            k = e + 1;
        }
    }
    let (m, n) = (m as f64, n as f64);
    12.0 * s / (m * m * (n * n * n - n) - m * ties)
}

/// Mean Spearman correlation over unordered pairs of rankings.
pub fn mean_pairwise_spearman(scores: &[Vec<f64>]) -> f64 {
    let mut s = Vec::new();
    for i in 0..scores.len() {
        for j in i + 1..scores.len() {
            s.push(spearman(&scores[i], &scores[j]));
        }
    }
    s.iter().sum::<f64>() / s.len() as f64
}

/// Spearman's ρ between each input feature and the target (the first target column; class
/// labels as numbers).
pub fn target_correlations(data: &Dataset) -> Result<Vec<f64>> {
    let n = data.len();
    let x = data.x.to_dtype(DType::F64)?.reshape((n, ()))?;
    let y = match &data.y {
        Targets::Values(t) | Targets::Soft(t) => t
            .to_dtype(DType::F64)?
            .reshape((n, ()))?
            .narrow(1, 0, 1)?
            .flatten_all()?,
        Targets::Classes(t) => t.to_dtype(DType::F64)?,
    };
    let y = y.to_vec1::<f64>()?;
    let d = x.dim(1)?;
    let xt = x.t()?.contiguous()?.to_vec2::<f64>()?;
    Ok((0..d).map(|j| spearman(&xt[j], &y)).collect())
}

/// How the second-derivative ranking agrees with `|ρ_s|` across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Per run: Spearman across features between `|mean d2|` and `|ρ_s(x_j, y)|`.
    pub per_run: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their standard deviation (n − 1; NaN for one run).
    pub sd: f64,
    /// The same for the mean `|mean d2|` over runs.
    pub of_mean: f64,
    /// Kendall's W of the runs' `|mean d2|` rankings (NaN for one run).
    pub kendall_w: f64,
    /// Mean pairwise Spearman between the runs' `|mean d2|` rankings (NaN for one run).
    pub mean_pairwise_spearman: f64,
}

/// Mean and standard deviation (n − 1) of each feature over runs.
pub fn mean_sd_over_runs(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let m = rows.len() as f64;
    let d = rows.first().map_or(0, Vec::len);
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / m)
        .collect();
    let sd = (0..d)
        .map(|j| (rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (m - 1.0)).sqrt())
        .collect();
    (mean, sd)
}

/// The agreement between the runs' `|mean d2|` and `|rho|` (the features' target correlations).
pub fn agreement(runs: &[FeatureSensitivity], rho: &[f64]) -> Agreement {
    let abs_rho: Vec<f64> = rho.iter().map(|r| r.abs()).collect();
    let d2: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| r.mean_d2.iter().map(|v| v.abs()).collect())
        .collect();
    let per_run: Vec<f64> = d2.iter().map(|r| spearman(r, &abs_rho)).collect();
    let (m, sd) = mean_sd_over_runs(&per_run.iter().map(|v| vec![*v]).collect::<Vec<_>>());
    let (mean_d2, _) = mean_sd_over_runs(&d2);
    let multi = runs.len() >= 2;
    Agreement {
        mean: m[0],
        sd: if multi { sd[0] } else { f64::NAN },
        of_mean: spearman(&mean_d2, &abs_rho),
        kendall_w: if multi { kendall_w(&d2) } else { f64::NAN },
        mean_pairwise_spearman: if multi {
            mean_pairwise_spearman(&d2)
        } else {
            f64::NAN
        },
        per_run,
    }
}

/// Re-initialises every weight of rank ≥ 2 with Xavier/Glorot uniform
/// (`U(±√(6/(fan_in+fan_out)))`, fans over the receptive field for convolutions) and zeroes the
/// biases, from `seed` (one stream per tensor); BatchNorm scales stay 1.
pub fn xavier_init(model: &Model, seed: u64) -> Result<()> {
    use rand::Rng as _;
    for (k, p) in model.params().iter().enumerate() {
        let dims = p.var.dims().to_vec();
        let t = if dims.len() >= 2 {
            let receptive: usize = dims[2..].iter().product();
            let (fan_out, fan_in) = (dims[0] * receptive, dims[1] * receptive);
            let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
            let mut r = terrain_model::rng::rng_stream(seed, k as u64);
            let v: Vec<f64> = (0..p.var.elem_count())
                .map(|_| r.random_range(-bound..bound))
                .collect();
            Tensor::from_vec(v, dims.as_slice(), &candle_core::Device::Cpu)?
        } else if p
            .var
            .to_dtype(DType::F64)?
            .flatten_all()?
            .min(0)?
            .to_scalar::<f64>()?
            == 1.0
        {
            // A BatchNorm scale (initialised to ones) keeps its initialisation.
            continue;
        } else {
            Tensor::zeros(dims.as_slice(), DType::F64, &candle_core::Device::Cpu)?
        };
        p.var
            .set(&t.to_dtype(model.dtype())?.to_device(model.device())?)?;
    }
    Ok(())
}

/// Trains one model of `spec`'s recipe with Xavier/Glorot initialisation from `spec.seeds.init`
/// (instead of PyTorch's default), through the recipe's data preparation and the shared trainer.
pub fn train_xavier(
    spec: &RunSpec,
    device: &candle_core::Device,
    data_dir: Option<&std::path::Path>,
) -> Result<(Model, PreparedData)> {
    spec.check()?;
    let prepared = spec.prepare_data(data_dir)?;
    let model = Model::new(
        spec.arch.clone(),
        spec.dtype.dtype(),
        device,
        spec.seeds.init,
    )?;
    xavier_init(&model, spec.seeds.init)?;
    let mut trainer = Trainer::new(spec.training.clone())?;
    trainer.fit(&model, &prepared.train, None, &mut |_| {})?;
    Ok((model, prepared))
}
