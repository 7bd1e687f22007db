//! The spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ), as
//! PyHessian's `hessian.density(iter, n_v)` followed by its `density_generate` (Gaussian
//! broadening onto a grid).
//!
//! Each run starts Lanczos (full reorthogonalisation) from a normalised Rademacher vector `v`;
//! the eigenvalues `θ_i` of the tridiagonal `T` are the quadrature nodes and the squared first
//! components of its eigenvectors the weights, so that `Σ_i w_i f(θ_i) ≈ vᵀf(H)v` (exact for
//! polynomials of degree below `2·iterations`). The weights sum to 1 and `Σ w_i θ_i = vᵀHv`, whose
//! expectation is `tr(H)/p`.
//!
//! ```
//! use candle_core::{DType, Device};
//! use terrain_curvature::{DenseOperator, density::{SlqConfig, slq}};
//!
//! # fn main() -> terrain_curvature::Result<()> {
//! let a = [1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 3.0];
//! let op = DenseOperator::from_rows(&a, 3, DType::F64, &Device::Cpu)?;
//! let d = slq(&op, &SlqConfig { bins: 500, ..Default::default() })?;
//! // Three steps span the whole space: the nodes are the eigenvalues, each with weight 1/3.
//! assert!((d.runs[0].nodes[2] - 3.0).abs() < 1e-12);
//! assert!((d.runs[0].weights[0] - 1.0 / 3.0).abs() < 1e-12);
//! let dx = d.grid[1] - d.grid[0];
//! assert!((d.density.iter().sum::<f64>() * dx - 1.0).abs() < 1e-12);
//! # Ok(())
//! # }
//! ```

use candle_core::Tensor;
use terrain_model::{progress::Progress, rng};

use crate::eigen::{finite, lanczos_lockstep};
use crate::linalg;
use crate::vector::{self, Probe};
use crate::{Error, LinearOperator, MemoryEstimate, Result};

/// Settings of [`slq`]; the defaults are PyHessian's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlqConfig {
    /// Lanczos steps per run (capped at the operator's dimension). Default 100.
    pub iterations: usize,
    /// Independent runs (start vectors) averaged: PyHessian's `n_v`. Default 1.
    pub runs: usize,
    /// Seed of the Rademacher start vectors (run `r` uses stream `r`). Default 0.
    pub seed: u64,
    /// Grid points of the broadened density: PyHessian's `num_bins`. Default 10000.
    pub bins: usize,
    /// Gaussian variance per unit of spectral range: the kernel variance is
    /// `sigma_squared · max(1, λmax − λmin)` (PyHessian's `sigma_squared`). Default 1e-5.
    pub sigma_squared: f64,
    /// Absolute padding of the grid beyond the mean extreme nodes (PyHessian's `overhead`).
    /// Default 0.01.
    pub overhead: f64,
    /// Where progress goes (not serialised; never changes a result). Default hidden.
    #[serde(skip)]
    pub progress: Progress,
}

impl Default for SlqConfig {
    fn default() -> Self {
        SlqConfig {
            iterations: 100,
            runs: 1,
            seed: 0,
            bins: 10_000,
            sigma_squared: 1e-5,
            overhead: 0.01,
            progress: Progress::hidden(),
        }
    }
}

impl SlqConfig {
    /// The memory the runs kept at once need on an operator of `dim` values of `dtype` (up to
    /// eight runs go in lockstep, each with its Lanczos basis).
    pub fn memory(&self, dim: usize, dtype: candle_core::DType) -> MemoryEstimate {
        MemoryEstimate::vectors(
            "the Lanczos bases of the density runs kept at once",
            self.iterations
                .min(dim)
                .saturating_add(3)
                .saturating_mul(self.runs.clamp(1, LOCKSTEP)),
            dim,
            dtype,
        )
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        terrain_model::config::count("iterations", self.iterations)?;
        terrain_model::config::count("runs", self.runs)?;
        check_broadening(self.bins, self.sigma_squared, self.overhead)
    }
}

fn check_broadening(bins: usize, sigma_squared: f64, overhead: f64) -> Result<()> {
    if bins < 2 {
        return Err(Error::config("bins", bins, "must be at least 2"));
    }
    if !(sigma_squared.is_finite() && sigma_squared > 0.0) {
        return Err(Error::config(
            "sigma_squared",
            sigma_squared,
            "must be finite and positive",
        ));
    }
    if !(overhead.is_finite() && overhead >= 0.0) {
        return Err(Error::config(
            "overhead",
            overhead,
            "must be finite and non-negative",
        ));
    }
    Ok(())
}

/// One SLQ run: a Gauss quadrature rule for the spectral measure seen from one start vector.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Quadrature {
    /// The nodes: Ritz values of `T`, ascending.
    pub nodes: Vec<f64>,
    /// The weights: squared first components of `T`'s eigenvectors (they sum to 1).
    pub weights: Vec<f64>,
    /// Lanczos steps taken (fewer than asked at an invariant subspace or the dimension).
    pub iterations: usize,
}

impl Quadrature {
    /// `Σ w_i θ_i^k`: the quadrature estimate of `vᵀHᵏv` for the unit start vector `v`.
    pub fn moment(&self, k: i32) -> f64 {
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(t, w)| w * t.powi(k))
            .sum()
    }
}

/// A spectral density estimate: the quadrature runs and their Gaussian-broadened average.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpectralDensity {
    /// One quadrature rule per run.
    pub runs: Vec<Quadrature>,
    /// The evenly spaced grid of eigenvalues.
    pub grid: Vec<f64>,
    /// The density on the grid, normalised so that `Σ density · Δx = 1`.
    pub density: Vec<f64>,
    /// The Gaussian kernel variance used.
    pub sigma_squared: f64,
    /// Operator products spent.
    pub matvecs: usize,
}

impl SpectralDensity {
    /// `Σ w_i θ_i^k` averaged over runs: an estimate of `tr(Hᵏ)/p`.
    pub fn moment(&self, k: i32) -> f64 {
        self.runs.iter().map(|r| r.moment(k)).sum::<f64>() / self.runs.len() as f64
    }

    /// The trace estimate `p · moment(1)` (Hutchinson with normalised Rademacher probes).
    pub fn trace_estimate(&self, dim: usize) -> f64 {
        dim as f64 * self.moment(1)
    }

    /// The smallest and largest node over all runs.
    pub fn node_range(&self) -> (f64, f64) {
        self.runs
            .iter()
            .flat_map(|r| r.nodes.iter().copied())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                (lo.min(t), hi.max(t))
            })
    }
}

/// How many density runs go in lockstep (each keeps its Lanczos basis: memory grows with it).
const LOCKSTEP: usize = 8;

/// Stochastic Lanczos quadrature plus Gaussian broadening onto a grid ([`broaden`]).
///
/// Progress goes to `config.progress`: at most `runs · min(iterations, dim)` products.
pub fn slq(op: &(impl LinearOperator + ?Sized), config: &SlqConfig) -> Result<SpectralDensity> {
    config.check()?;
    config.memory(op.dim(), op.dtype()).check()?;
    let bar = &config.progress;
    bar.start(
        "spectral density",
        Some((config.runs * config.iterations.min(op.dim())) as u64),
    );
    let progress = &mut |n: usize| bar.set_position(n as u64);
    MemoryEstimate::vectors("the density grid", 2, config.bins, candle_core::DType::F64).check()?;
    // The runs go in lockstep, their products handed to the operator together.
    let starts: Vec<Tensor> = (0..config.runs)
        .map(|r| {
            let v = vector::random(
                op.dim(),
                Probe::Rademacher,
                rng::stream_seed(config.seed, r as u64),
                op.dtype(),
                op.device(),
            )?;
            Ok(vector::normalize(&v)?.0)
        })
        .collect::<Result<_>>()?;
    let mut runs = Vec::with_capacity(config.runs);
    let mut matvecs = 0;
    for chunk in starts.chunks(LOCKSTEP) {
        let done = matvecs;
        for run in lanczos_lockstep(op, chunk, config.iterations, &mut |n| progress(done + n))? {
            matvecs += run.matvecs;
            let t = linalg::tridiagonal_eigen(&run.alpha, &run.beta)?;
            let weights = (0..t.n).map(|j| t.component(0, j).powi(2)).collect();
            runs.push(Quadrature {
                nodes: t.values,
                weights,
                iterations: run.alpha.len(),
            });
        }
    }
    bar.finish();
    let (grid, density, sigma_squared) =
        broaden(&runs, config.bins, config.sigma_squared, config.overhead)?;
    Ok(SpectralDensity {
        runs,
        grid,
        density,
        sigma_squared,
        matvecs,
    })
}

/// Gaussian broadening of quadrature rules onto a grid, as PyHessian's `density_generate`:
/// the grid runs evenly over `[mean_r min θ − overhead, mean_r max θ + overhead]` in `bins`
/// points; the kernel variance is `σ² = sigma_squared · max(1, range)`; the density is the run
/// average of `Σ_i w_i N(x; θ_i, σ²)`, divided by its Riemann sum so that `Σ density · Δx = 1`.
///
/// Returns `(grid, density, σ²)`. When `σ` is below the grid spacing the curve is under-resolved
/// (a warning is logged); raise `bins` or `sigma_squared`.
pub fn broaden(
    runs: &[Quadrature],
    bins: usize,
    sigma_squared: f64,
    overhead: f64,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    const CONTEXT: &str = "spectral density";
    check_broadening(bins, sigma_squared, overhead)?;
    if runs.is_empty()
        || runs
            .iter()
            .any(|r| r.nodes.is_empty() || r.nodes.len() != r.weights.len())
    {
        return Err(Error::config(
            "runs",
            runs.len(),
            "need at least one quadrature rule, each with as many weights as nodes (at least one)",
        ));
    }
    let n_runs = runs.len() as f64;
    let mean_of = |f: fn(f64, f64) -> f64, init: f64| {
        runs.iter()
            .map(|r| r.nodes.iter().copied().fold(init, f))
            .sum::<f64>()
            / n_runs
    };
    let hi = finite(
        mean_of(f64::max, f64::NEG_INFINITY) + overhead,
        CONTEXT,
        "λmax",
    )?;
    let lo = finite(mean_of(f64::min, f64::INFINITY) - overhead, CONTEXT, "λmin")?;
    if hi <= lo {
        return Err(Error::config(
            "overhead",
            overhead,
            "the nodes span a single point; a positive overhead is needed to make a grid",
        ));
    }
    let dx = (hi - lo) / (bins - 1) as f64;
    let grid: Vec<f64> = (0..bins).map(|j| lo + j as f64 * dx).collect();
    let s2 = sigma_squared * (hi - lo).max(1.0);
    if s2.sqrt() < dx {
        tracing::warn!(
            sigma = s2.sqrt(),
            spacing = dx,
            "spectral density kernel narrower than the grid spacing: raise bins or sigma_squared"
        );
    }
    let norm = 1.0 / (2.0 * std::f64::consts::PI * s2).sqrt();
    let mut density = vec![0.0; bins];
    for r in runs {
        for (&t, &w) in r.nodes.iter().zip(&r.weights) {
            for (d, &x) in density.iter_mut().zip(&grid) {
                *d += w * norm * (-(x - t).powi(2) / (2.0 * s2)).exp();
            }
        }
    }
    let total = density.iter().sum::<f64>() * dx;
    if !(total.is_finite() && total > 0.0) {
        return Err(Error::NonFinite {
            context: CONTEXT.to_string(),
            name: "normalisation (the kernel misses every grid point: raise bins or sigma_squared)"
                .to_string(),
            value: total,
        });
    }
    for d in &mut density {
        *d /= total;
    }
    Ok((grid, density, s2))
}
