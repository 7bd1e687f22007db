//! The diagonal of the Hessian: exact (one Hessian-vector product per parameter), Hutchinson
//! (`v ⊙ Hv`), Becker–LeCun (deterministic diagonal back-propagation) and curvature propagation
//! (S and T/U variants, see [`crate::propagation`]), each with its uncertainty and a per-parameter
//! summary.
//!
//! ```
//! use terrain_curvature::{HessianConfig, HessianOperator};
//! use terrain_curvature::diagonal::{estimate_diagonal, DiagonalConfig, DiagonalMethod};
//! use terrain_model::{Model, data, loss::LossKind};
//! use candle_core::{DType, Device};
//!
//! # fn main() -> terrain_curvature::Result<()> {
//! let data = data::builtin::load("iris")?;
//! let model = Model::new("mlp:4-8-3:tanh".parse()?, DType::F64, &Device::Cpu, 0)?;
//! let h = HessianOperator::new(&model, &data, HessianConfig::new(LossKind::Ce))?;
//! let d = estimate_diagonal(&h, "cp".parse()?, &DiagonalConfig::new(32))?;
//! for p in &d.params {
//!     println!("{:>10} {:>5} mean {:+.3e} ± {:.1e}", p.name, p.numel, p.mean, p.sum_stderr.unwrap() / p.numel as f64);
//! }
//! # Ok(())
//! # }
//! ```

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use terrain_model::{progress::Progress, rng};

use crate::{
    Error, HessianOperator, HvpMethod, LinearOperator, Result,
    propagation::{self, Coverage, CpVariant},
    vector::{self, Probe},
};

/// How to obtain the diagonal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DiagonalMethod {
    /// Exact: one backward sweep ([`exact_diagonal_sweep`]) on an R-op operator, else one
    /// Hessian-vector product per parameter (small models; see [`DiagonalConfig::exact_limit`]).
    #[serde(rename = "exact")]
    Exact,
    /// Hutchinson/Bekas: the mean of `v ⊙ Hv` over random probes `v`. Variance per sample
    /// `Σ_{k≠i} H_ik²` with Rademacher probes.
    #[serde(rename = "hutchinson")]
    Hutchinson,
    /// Becker–LeCun: deterministic back-propagation of diagonals only (biased; no variance).
    #[serde(rename = "becker-lecun")]
    BeckerLeCun,
    /// Curvature propagation, S-variant (complex factors, real and imaginary parts carried apart).
    #[serde(rename = "cp")]
    CurvaturePropagation,
    /// Curvature propagation, real T/U variant.
    #[serde(rename = "cp-tu")]
    CurvaturePropagationTU,
}

impl DiagonalMethod {
    /// Every method, in documentation order.
    pub const ALL: [DiagonalMethod; 5] = [
        DiagonalMethod::Exact,
        DiagonalMethod::Hutchinson,
        DiagonalMethod::BeckerLeCun,
        DiagonalMethod::CurvaturePropagation,
        DiagonalMethod::CurvaturePropagationTU,
    ];

    /// The name used in specs, JSON and the command line.
    pub fn name(self) -> &'static str {
        match self {
            DiagonalMethod::Exact => "exact",
            DiagonalMethod::Hutchinson => "hutchinson",
            DiagonalMethod::BeckerLeCun => "becker-lecun",
            DiagonalMethod::CurvaturePropagation => "cp",
            DiagonalMethod::CurvaturePropagationTU => "cp-tu",
        }
    }

    /// Whether the method draws random samples (and so reports standard errors).
    pub fn is_stochastic(self) -> bool {
        matches!(
            self,
            DiagonalMethod::Hutchinson
                | DiagonalMethod::CurvaturePropagation
                | DiagonalMethod::CurvaturePropagationTU
        )
    }
}

impl fmt::Display for DiagonalMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DiagonalMethod {
    type Err = Error;

    /// Parses a name (case-insensitive): `exact`, `hutchinson`, `becker-lecun` (also `bl`), `cp`
    /// (also `cp-s`) or `cp-tu`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let m = match lower.as_str() {
            "exact" => DiagonalMethod::Exact,
            "hutchinson" => DiagonalMethod::Hutchinson,
            "becker-lecun" | "bl" => DiagonalMethod::BeckerLeCun,
            "cp" | "cp-s" => DiagonalMethod::CurvaturePropagation,
            "cp-tu" => DiagonalMethod::CurvaturePropagationTU,
            _ => {
                return Err(Error::config(
                    "diagonal method",
                    s,
                    "expected one of exact, hutchinson, becker-lecun, cp, cp-tu",
                ));
            }
        };
        Ok(m)
    }
}

/// Settings of [`estimate_diagonal`]. Fields missing from JSON take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiagonalConfig {
    /// Random samples (Hutchinson, curvature propagation); ignored by deterministic methods.
    pub samples: usize,
    /// Seed of the noise.
    pub seed: u64,
    /// Distribution of the noise: Rademacher (the lowest variance for diagonals) or Gaussian.
    pub probe: Probe,
    /// Curvature-propagation samples computed together in one sweep, sharing the forward pass and
    /// the gradient. A sweep holds up to `2 × samples_per_sweep` copies of the largest activation
    /// of a batch (ReLU networks: one copy per sample), so memory grows with it. The numbers depend
    /// on it (with the seed).
    pub samples_per_sweep: usize,
    /// What curvature propagation's noise covers: [`Coverage::Diagonal`] (the default, far lower
    /// variance) or [`Coverage::Full`] (the paper's estimator of the whole Hessian).
    pub coverage: Coverage,
    /// The largest dimension for which [`DiagonalMethod::Exact`] runs by products (one
    /// Hessian-vector product per parameter, on a [`HvpMethod::DoubleBackward`] operator). An
    /// [`HvpMethod::Rop`] operator's exact diagonal takes one sweep ([`exact_diagonal_sweep`]) and
    /// ignores it.
    pub exact_limit: usize,
    /// Where progress goes (not serialised; never changes a result). Default hidden.
    #[serde(skip)]
    pub progress: Progress,
}

impl Default for DiagonalConfig {
    fn default() -> Self {
        DiagonalConfig {
            samples: 16,
            seed: 0,
            probe: Probe::Rademacher,
            samples_per_sweep: 4,
            coverage: Coverage::Diagonal,
            exact_limit: crate::dense::DEFAULT_DENSE_LIMIT,
            progress: Progress::hidden(),
        }
    }
}

impl DiagonalConfig {
    /// Defaults with `samples` samples: seed 0, Rademacher noise, 4 samples per sweep, diagonal
    /// coverage, exact up to 4096 parameters.
    pub fn new(samples: usize) -> Self {
        DiagonalConfig {
            samples,
            ..Self::default()
        }
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        terrain_model::config::count("samples", self.samples)?;
        // Each sweep holds 2 × samples_per_sweep copies of a batch's activations.
        if !(1..=1024).contains(&self.samples_per_sweep) {
            return Err(Error::config(
                "samples_per_sweep",
                self.samples_per_sweep,
                "must be between 1 and 1024 (a sweep holds two copies of a batch's activations per sample)",
            ));
        }
        Ok(())
    }
}

/// Running sums of random diagonal estimates: per entry, and per parameter block (the sum of a
/// block's entries, whose spread gives the standard error of a block's trace).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagonalMoments {
    count: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    blocks: Vec<(usize, usize)>,
    block_sum: Vec<f64>,
    block_sum_sq: Vec<f64>,
}

impl DiagonalMoments {
    /// Empty sums over blocks `(offset, length)` that tile `0..dim` in order.
    pub fn new(blocks: Vec<(usize, usize)>) -> Self {
        let dim = blocks.last().map_or(0, |(o, l)| o + l);
        let nb = blocks.len();
        DiagonalMoments {
            count: 0,
            sum: vec![0.0; dim],
            sum_sq: vec![0.0; dim],
            blocks,
            block_sum: vec![0.0; nb],
            block_sum_sq: vec![0.0; nb],
        }
    }

    /// Adds one sample (a whole diagonal estimate).
    pub fn add(&mut self, sample: &[f64]) -> Result<()> {
        if sample.len() != self.sum.len() {
            return Err(Error::DimensionMismatch {
                context: "adding a diagonal sample".into(),
                expected: self.sum.len(),
                found: sample.len(),
            });
        }
        for (i, &x) in sample.iter().enumerate() {
            self.sum[i] += x;
            self.sum_sq[i] += x * x;
        }
        for (b, &(o, l)) in self.blocks.iter().enumerate() {
            let s: f64 = sample[o..o + l].iter().sum();
            self.block_sum[b] += s;
            self.block_sum_sq[b] += s * s;
        }
        self.count += 1;
        Ok(())
    }

    /// Adds block `block`'s part of several samples at once: entrywise sums and sums of squares,
    /// and each sample's block total. Call [`DiagonalMoments::add_count`] once per batch.
    pub(crate) fn add_block(&mut self, block: usize, sum: &[f64], sum_sq: &[f64], totals: &[f64]) {
        let (o, l) = self.blocks[block];
        for i in 0..l {
            self.sum[o + i] += sum[i];
            self.sum_sq[o + i] += sum_sq[i];
        }
        for &t in totals {
            self.block_sum[block] += t;
            self.block_sum_sq[block] += t * t;
        }
    }

    /// Records that `k` samples were added block by block.
    pub(crate) fn add_count(&mut self, k: usize) {
        self.count += k;
    }

    /// The number of samples.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The mean estimate per entry.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.count.max(1) as f64;
        self.sum.iter().map(|s| s / n).collect()
    }

    fn stderr_of(sum: &[f64], sum_sq: &[f64], n: usize) -> Option<Vec<f64>> {
        if n < 2 {
            return None;
        }
        let nf = n as f64;
        Some(
            sum.iter()
                .zip(sum_sq)
                .map(|(s, q)| {
                    let var = (q - s * s / nf) / (nf - 1.0);
                    (var.max(0.0) / nf).sqrt()
                })
                .collect(),
        )
    }

    /// The standard error of each entry's mean (sample standard deviation / √samples); `None` with
    /// fewer than two samples.
    pub fn stderr(&self) -> Option<Vec<f64>> {
        Self::stderr_of(&self.sum, &self.sum_sq, self.count)
    }

    /// The standard error of each block's mean sum (the block's trace); `None` with fewer than two
    /// samples.
    pub fn block_stderr(&self) -> Option<Vec<f64>> {
        Self::stderr_of(&self.block_sum, &self.block_sum_sq, self.count)
    }
}

/// A parameter's share of a diagonal: what one prints per layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamDiagonal {
    /// Parameter name.
    pub name: String,
    /// Offset of its entries in the flat diagonal.
    pub offset: usize,
    /// Number of entries.
    pub numel: usize,
    /// Mean entry.
    pub mean: f64,
    /// Smallest entry.
    pub min: f64,
    /// Largest entry.
    pub max: f64,
    /// Sum of the entries (this block's trace).
    pub sum: f64,
    /// Standard error of `sum` (random methods with at least two samples).
    pub sum_stderr: Option<f64>,
}

/// A Hessian diagonal with its uncertainty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagonalEstimate {
    /// How it was obtained.
    pub method: DiagonalMethod,
    /// The diagonal, flat in the operator's layout.
    pub values: Vec<f64>,
    /// Standard error of each entry (`None` for deterministic methods, or one sample).
    pub stderr: Option<Vec<f64>>,
    /// Random samples averaged (0 for deterministic methods).
    pub samples: usize,
    /// Per-parameter summary, in layout order.
    pub params: Vec<ParamDiagonal>,
}

impl DiagonalEstimate {
    /// Builds an estimate and its per-parameter summary from a flat diagonal. `layout` is
    /// [`HessianOperator::layout`]; `block_stderr` (one per parameter) fills
    /// [`ParamDiagonal::sum_stderr`].
    pub fn from_values(
        method: DiagonalMethod,
        layout: &[(String, usize, usize)],
        values: Vec<f64>,
        stderr: Option<Vec<f64>>,
        samples: usize,
        block_stderr: Option<Vec<f64>>,
    ) -> Self {
        let params = layout
            .iter()
            .enumerate()
            .map(|(b, (name, offset, numel))| {
                let v = &values[*offset..offset + numel];
                let sum: f64 = v.iter().sum();
                ParamDiagonal {
                    name: name.clone(),
                    offset: *offset,
                    numel: *numel,
                    mean: sum / (*numel).max(1) as f64,
                    min: v.iter().copied().fold(f64::INFINITY, f64::min),
                    max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    sum,
                    sum_stderr: block_stderr.as_ref().map(|s| s[b]),
                }
            })
            .collect();
        DiagonalEstimate {
            method,
            values,
            stderr,
            samples,
            params,
        }
    }

    /// The entries of parameter `name`, if it is in the estimate.
    pub fn param(&self, name: &str) -> Option<&[f64]> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| &self.values[p.offset..p.offset + p.numel])
    }

    /// The trace (sum of the diagonal).
    pub fn trace(&self) -> f64 {
        self.values.iter().sum()
    }
}

fn from_moments(
    method: DiagonalMethod,
    layout: &[(String, usize, usize)],
    m: &DiagonalMoments,
) -> DiagonalEstimate {
    DiagonalEstimate::from_values(
        method,
        layout,
        m.mean(),
        m.stderr(),
        m.count(),
        m.block_stderr(),
    )
}

/// The exact diagonal from one product `H e_j` per parameter. Fails when the operator's dimension
/// exceeds `limit`.
pub fn exact_diagonal(op: &impl LinearOperator, limit: usize) -> Result<Vec<f64>> {
    exact_diagonal_reporting(op, limit, &Progress::hidden())
}

fn exact_diagonal_reporting(
    op: &impl LinearOperator,
    limit: usize,
    progress: &Progress,
) -> Result<Vec<f64>> {
    let p = op.dim();
    if p > limit {
        return Err(Error::config(
            "exact_limit",
            limit,
            format!(
                "the exact diagonal costs one Hessian-vector product per parameter and this operator has \
                 {p} parameters; raise the limit, select fewer parameters, or use an estimator \
                 (cp, cp-tu, hutchinson, becker-lecun)"
            ),
        ));
    }
    let mut e = vec![0.0; p];
    let mut out = Vec::with_capacity(p);
    for start in (0..p).step_by(16) {
        let end = (start + 16).min(p);
        let vs: Vec<candle_core::Tensor> = (start..end)
            .map(|j| {
                e[j] = 1.0;
                let v = vector::from_slice(&e, op.dtype(), op.device());
                e[j] = 0.0;
                v
            })
            .collect::<Result<_>>()?;
        for (j, hv) in (start..end).zip(op.apply_many(&vs)?) {
            progress.inc(1);
            out.push(
                hv.narrow(0, j, 1)?
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec1::<f64>()?[0],
            );
        }
    }
    Ok(out)
}

/// Hutchinson's diagonal: `samples` products with probes from `seed` (probe `i` uses the stream
/// `stream_seed(seed, i)`), averaged as `v ⊙ Hv`.
pub fn hutchinson_diagonal(
    op: &impl LinearOperator,
    blocks: Vec<(usize, usize)>,
    config: &DiagonalConfig,
) -> Result<DiagonalMoments> {
    config.check()?;
    let mut m = DiagonalMoments::new(blocks);
    // Probes go to the operator in blocks (`apply_many`: a shared forward pass where it can).
    for start in (0..config.samples).step_by(8) {
        let vs: Vec<candle_core::Tensor> = (start..(start + 8).min(config.samples))
            .map(|i| {
                vector::random(
                    op.dim(),
                    config.probe,
                    rng::stream_seed(config.seed, i as u64),
                    op.dtype(),
                    op.device(),
                )
            })
            .collect::<Result<_>>()?;
        for (v, hv) in vs.iter().zip(op.apply_many(&vs)?) {
            m.add(&vector::to_vec(&v.mul(&hv)?)?)?;
            config.progress.inc(1);
        }
    }
    Ok(m)
}

/// The exact diagonal of the operator's curvature (Hessian or Gauss–Newton) in one backward sweep
/// per batch, BackPACK's `DiagHessian`/`DiagGGN`: an exact symmetric factor of the loss Hessian
/// (`C` columns per row for `C` outputs) and, for the Hessian, signed factors of each smooth
/// activation's residual term `diag(g ⊙ φ'')` are back-propagated through the layers' input
/// Jacobians; each parameter's diagonal is the sum over rows, columns and factors of its squared
/// Jacobian-transposed factor. No per-parameter products: the cost is that of a few gradients for
/// ReLU networks, plus `features²` per row for each smooth activation (limited; beyond the limit
/// this fails with [`Error::Unsupported`]). Flat, in the operator's layout.
pub fn exact_diagonal_sweep(op: &HessianOperator<'_>) -> Result<Vec<f64>> {
    let out =
        terrain_model::engine::run(&op.request(), terrain_model::engine::Product::Diagonal, &[])?;
    let flat = op.flatten(&out.diagonal)?;
    vector::to_vec(&flat)
}

/// The Hessian diagonal of `op` by `method`. Exact and Hutchinson work for either curvature
/// (Hessian or Gauss–Newton); Becker–LeCun and curvature propagation need the exact Hessian and
/// fail with [`Error::Unsupported`] otherwise.
pub fn estimate_diagonal(
    op: &HessianOperator<'_>,
    method: DiagonalMethod,
    config: &DiagonalConfig,
) -> Result<DiagonalEstimate> {
    config.check()?;
    let layout = op.layout();
    let blocks: Vec<(usize, usize)> = layout.iter().map(|(_, o, l)| (*o, *l)).collect();
    let label = format!("diagonal ({method})");
    // Exact: one product per parameter; stochastic: samples; Becker–LeCun: one sweep.
    let sweep = method == DiagonalMethod::Exact && op.hvp_method() == HvpMethod::Rop;
    let total = match method {
        DiagonalMethod::Exact if sweep => 1,
        DiagonalMethod::Exact => op.dim(),
        DiagonalMethod::BeckerLeCun => 1,
        _ => config.samples,
    };
    config.progress.start(&label, Some(total as u64));
    let estimate = match method {
        DiagonalMethod::Exact if sweep => {
            let v = exact_diagonal_sweep(op)?;
            config.progress.inc(1);
            DiagonalEstimate::from_values(method, &layout, v, None, 0, None)
        }
        DiagonalMethod::Exact => {
            let v = exact_diagonal_reporting(op, config.exact_limit, &config.progress)?;
            DiagonalEstimate::from_values(method, &layout, v, None, 0, None)
        }
        DiagonalMethod::BeckerLeCun => {
            let v = propagation::becker_lecun(op)?;
            config.progress.inc(1);
            DiagonalEstimate::from_values(method, &layout, v, None, 0, None)
        }
        DiagonalMethod::Hutchinson => {
            from_moments(method, &layout, &hutchinson_diagonal(op, blocks, config)?)
        }
        DiagonalMethod::CurvaturePropagation => from_moments(
            method,
            &layout,
            &propagation::curvature_propagation(op, CpVariant::S, config)?,
        ),
        DiagonalMethod::CurvaturePropagationTU => from_moments(
            method,
            &layout,
            &propagation::curvature_propagation(op, CpVariant::Tu, config)?,
        ),
    };
    config.progress.finish();
    check_finite(&estimate)?;
    Ok(estimate)
}

/// Fails with [`Error::NonFinite`] naming the parameter of the first NaN/Inf entry (non-finite
/// weights or data, or an overflow).
fn check_finite(d: &DiagonalEstimate) -> Result<()> {
    if let Some((i, &value)) = d.values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let p = d
            .params
            .iter()
            .find(|p| i >= p.offset && i < p.offset + p.numel)
            .expect("the parameters tile the diagonal");
        return Err(Error::NonFinite {
            context: format!("Hessian diagonal ({})", d.method),
            name: format!("{}[{}]", p.name, i - p.offset),
            value,
        });
    }
    Ok(())
}
