//! Top eigenvalues of a symmetric operator: power iteration with deflation (PyHessian's method and
//! defaults) and Lanczos with full reorthogonalisation.
//!
//! Both report, for every eigenpair, the value, the residual `‖Hv − λv‖` computed explicitly with
//! one extra product, the iterations spent and the (unit) vector.
//!
//! ```
//! use candle_core::{DType, Device};
//! use terrain_curvature::{DenseOperator, eigen::{LanczosConfig, lanczos}};
//!
//! # fn main() -> terrain_curvature::Result<()> {
//! let a = [4.0, 1.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, -5.0];
//! let op = DenseOperator::from_rows(&a, 3, DType::F64, &Device::Cpu)?;
//! let top = lanczos(&op, &LanczosConfig { top_k: 2, ..Default::default() })?;
//! let exact = 3.5 + 5f64.sqrt() / 2.0;
//! assert!((top.pairs[0].value - exact).abs() < 1e-12);
//! assert!(top.pairs[0].residual < 1e-12);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use terrain_model::{progress::Progress, rng};

use crate::linalg::{self, SymmetricEigen};
use crate::resume::{LanczosSnapshot, NoState, PowerSnapshot, PowerStep, SolverState, StateStore};
use crate::vector::{self, Probe};
use crate::{Error, LinearOperator, MemoryEstimate, Result};

/// Which algorithm produced an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EigenMethod {
    /// Power iteration with Gram–Schmidt deflation ([`power_iteration`]).
    Power,
    /// Lanczos with full reorthogonalisation ([`lanczos`]).
    Lanczos,
}

/// One eigenpair estimate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EigenPair {
    /// The eigenvalue: the Rayleigh quotient `vᵀHv` of the returned unit vector.
    pub value: f64,
    /// `‖Hv − λv‖`, computed explicitly with one extra product (for a unit `v`, some eigenvalue of
    /// `H` lies within this distance of `value`).
    pub residual: f64,
    /// Iterations spent: power steps for this vector, or Lanczos steps (shared by all pairs).
    pub iterations: usize,
    /// Whether the method's stopping rule was met (rather than the iteration limit).
    pub converged: bool,
    /// The unit eigenvector, a flat tensor on the operator's device and dtype (not serialised).
    #[serde(skip)]
    pub vector: Tensor,
}

/// The top eigenpairs of an operator, largest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopEigen {
    /// The algorithm used.
    pub method: EigenMethod,
    /// The eigenpairs: for Lanczos in descending order of value; for power iteration in the order
    /// found (descending magnitude).
    pub pairs: Vec<EigenPair>,
    /// Operator products spent in all, residual checks included (those of a resumed run before
    /// it was interrupted too).
    pub matvecs: usize,
    /// Products already done by the saved state the run continued from (`None`: a fresh run).
    pub resumed_at: Option<usize>,
}

impl TopEigen {
    /// The eigenvalues, in the order of [`TopEigen::pairs`].
    pub fn values(&self) -> Vec<f64> {
        self.pairs.iter().map(|p| p.value).collect()
    }
}

/// Settings of [`power_iteration`]; the defaults are PyHessian's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerConfig {
    /// How many eigenpairs (found one after another with deflation). Default 1.
    pub top_k: usize,
    /// Power steps allowed per eigenpair. Default 100.
    pub max_iter: usize,
    /// Stop when `|λ_k − λ_{k−1}| / (|λ_{k−1}| + 1e-6) < tol`. Default 1e-3.
    pub tol: f64,
    /// Seed of the Gaussian start vectors (eigenpair `i` uses stream `i`). Default 0.
    pub seed: u64,
    /// Where progress goes (not serialised; never changes a result). Default hidden.
    #[serde(skip)]
    pub progress: Progress,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            top_k: 1,
            max_iter: 100,
            tol: 1e-3,
            seed: 0,
            progress: Progress::hidden(),
        }
    }
}

impl PowerConfig {
    /// The memory power iteration needs on an operator of `dim` values of `dtype`: the
    /// eigenvectors found plus three working vectors.
    pub fn memory(&self, dim: usize, dtype: DType) -> MemoryEstimate {
        MemoryEstimate::vectors("power iteration", self.top_k.saturating_add(3), dim, dtype)
    }

    /// Checks the settings (the bound `top_k ≤ dim` is checked against the operator).
    pub fn check(&self) -> Result<()> {
        check_top_k(self.top_k)?;
        terrain_model::config::count("max_iter", self.max_iter)?;
        check_tol(self.tol)
    }

    /// The settings a saved state of this solver must match on `op` (see [`crate::resume`]).
    pub fn state_settings(&self, op: &(impl LinearOperator + ?Sized)) -> BTreeMap<String, String> {
        solver_settings(
            "power",
            [self.top_k, self.max_iter],
            self.tol,
            self.seed,
            op,
        )
    }
}

/// Settings of [`lanczos`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LanczosConfig {
    /// How many of the largest (algebraic) eigenvalues. Default 1.
    pub top_k: usize,
    /// Lanczos steps allowed (each one product; the basis of that many vectors is kept). Capped at
    /// the operator's dimension, where Lanczos is exact. Beyond 100 steps convergence is checked
    /// every 10 steps. Default 100.
    pub max_iter: usize,
    /// Stop when the Ritz residual estimate of each of the top `k` Ritz pairs is at most
    /// `tol · |θ|`. The eigenvalue error is then about `(tol·|θ|)² / gap`. Default 1e-5.
    pub tol: f64,
    /// Seed of the Gaussian start vector (and of restart vectors after an invariant subspace).
    /// Default 0.
    pub seed: u64,
    /// Where progress goes (not serialised; never changes a result). Default hidden.
    #[serde(skip)]
    pub progress: Progress,
}

impl Default for LanczosConfig {
    fn default() -> Self {
        LanczosConfig {
            top_k: 1,
            max_iter: 100,
            tol: 1e-5,
            seed: 0,
            progress: Progress::hidden(),
        }
    }
}

impl LanczosConfig {
    /// The memory Lanczos needs on an operator of `dim` values of `dtype`: the basis of
    /// `min(max_iter, dim)` vectors plus three working vectors.
    pub fn memory(&self, dim: usize, dtype: DType) -> MemoryEstimate {
        MemoryEstimate::vectors(
            "the Lanczos basis",
            self.max_iter.min(dim).saturating_add(3),
            dim,
            dtype,
        )
    }

    /// Checks the settings (the bound `top_k ≤ dim` is checked against the operator).
    pub fn check(&self) -> Result<()> {
        check_top_k(self.top_k)?;
        terrain_model::config::count("max_iter", self.max_iter)?;
        if self.max_iter < self.top_k {
            return Err(Error::config(
                "max_iter",
                self.max_iter,
                format!("Lanczos needs at least top_k = {} steps", self.top_k),
            ));
        }
        check_tol(self.tol)
    }

    /// The settings a saved state of this solver must match on `op` (see [`crate::resume`]).
    pub fn state_settings(&self, op: &(impl LinearOperator + ?Sized)) -> BTreeMap<String, String> {
        solver_settings(
            "lanczos",
            [self.top_k, self.max_iter],
            self.tol,
            self.seed,
            op,
        )
    }
}

fn solver_settings(
    solver: &str,
    [top_k, max_iter]: [usize; 2],
    tol: f64,
    seed: u64,
    op: &(impl LinearOperator + ?Sized),
) -> BTreeMap<String, String> {
    [
        ("solver", solver.to_string()),
        ("top_k", top_k.to_string()),
        ("max_iter", max_iter.to_string()),
        ("tol", tol.to_string()),
        ("seed", seed.to_string()),
        ("dim", op.dim().to_string()),
        ("dtype", format!("{:?}", op.dtype()).to_lowercase()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn check_top_k(k: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::config("top_k", 0, "must be at least 1"));
    }
    Ok(())
}

pub(crate) fn check_tol(tol: f64) -> Result<()> {
    if !tol.is_finite() || tol < 0.0 {
        return Err(Error::config("tol", tol, "must be finite and non-negative"));
    }
    Ok(())
}

fn check_dim(k: usize, dim: usize) -> Result<()> {
    if k > dim {
        return Err(Error::TopKTooLarge { k, dim });
    }
    Ok(())
}

pub(crate) fn finite(value: f64, context: &str, name: &str) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::NonFinite {
            context: context.to_string(),
            name: name.to_string(),
            value,
        })
    }
}

/// Machine epsilon of a dtype (f32's for anything unusual).
pub(crate) fn dtype_eps(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        DType::F16 => 9.765625e-4,
        DType::BF16 => 7.8125e-3,
        _ => f32::EPSILON as f64,
    }
}

/// Unit vector `v`, its product `Hv`, the Rayleigh quotient and `‖Hv − λv‖`.
fn rayleigh(op: &(impl LinearOperator + ?Sized), v: &Tensor, context: &str) -> Result<(f64, f64)> {
    let hv = op.apply(v)?;
    let value = finite(vector::dot(&hv, v)?, context, "Rayleigh quotient")?;
    let residual = finite(
        vector::norm(&vector::axpy(&hv, -value, v)?)?,
        context,
        "residual",
    )?;
    Ok((value, residual))
}

/// Top eigenpairs by power iteration with Gram–Schmidt deflation, as PyHessian's
/// `hessian.eigenvalues(maxIter, tol, top_n)`.
///
/// For each eigenpair: `v ~ N(0, I)` normalised; then up to `max_iter` times: orthogonalise `v`
/// against the eigenvectors already found and normalise, `λ = vᵀHv`, `v ← Hv/‖Hv‖`, and stop once
/// `|λ − λ_prev| / (|λ_prev| + 1e-6) < tol`. The reported value is the Rayleigh quotient of the
/// final (deflated, unit) vector, computed with one extra product that also gives the residual; it
/// differs from PyHessian's last iterate by about `tol·|λ|` at most.
///
/// Power iteration converges to the eigenvalue of largest **magnitude** (negative ones included),
/// at a rate set by the ratio of the two largest magnitudes; with `tol = 1e-3` the value is
/// typically accurate to a few `tol` in relative terms, the vector much less so.
///
/// Progress goes to `config.progress`: at most `top_k · (max_iter + 1)` products.
pub fn power_iteration(
    op: &(impl LinearOperator + ?Sized),
    config: &PowerConfig,
) -> Result<TopEigen> {
    power_iteration_with_state(op, config, &mut NoState)
}

/// [`power_iteration`] that continues from the state in `store` (when it holds one for these
/// settings) and gives it the state after every power step and every eigenpair found: the
/// eigenpairs found, the current vector, its iteration count and previous estimate. A resumed
/// run gives exactly (bitwise, on the same device) the eigenpairs of an uninterrupted one; its
/// progress starts at the products already done.
pub fn power_iteration_with_state(
    op: &(impl LinearOperator + ?Sized),
    config: &PowerConfig,
    store: &mut dyn StateStore,
) -> Result<TopEigen> {
    const CONTEXT: &str = "power iteration";
    config.check()?;
    check_dim(config.top_k, op.dim())?;
    config.memory(op.dim(), op.dtype()).check()?;
    let settings = config.state_settings(op);
    let saved = match store.load(&settings)? {
        Some(state) => match state.onto_operator(op)? {
            SolverState::Power(s) if s.found.len() <= config.top_k => Some(s),
            other => {
                return Err(Error::config(
                    "state",
                    other.kind(),
                    "is not a power-iteration state for these settings",
                ));
            }
        },
        None => None,
    };
    let resumed_at = saved.as_ref().map(|s| s.matvecs);
    let progress = &config.progress;
    progress.start(
        "eigenvalues (power)",
        Some((config.top_k * (config.max_iter + 1)) as u64),
    );
    let progress = |n: usize| progress.set_position(n as u64);
    let (mut pairs, mut current, mut matvecs) = match saved {
        Some(s) => (s.found, s.current, s.matvecs),
        None => (Vec::new(), None, 0),
    };
    progress(matvecs);
    let mut save = |pairs: &[EigenPair], current: Option<PowerStep>, matvecs: usize| {
        let state = SolverState::Power(PowerSnapshot {
            found: pairs.to_vec(),
            current,
            matvecs,
        });
        store.save(&settings, &state)
    };
    for k in pairs.len()..config.top_k {
        let found: Vec<Tensor> = pairs.iter().map(|p: &EigenPair| p.vector.clone()).collect();
        let (mut v, mut eigenvalue, mut iterations) = match current.take() {
            Some(step) => (step.vector, step.eigenvalue, step.iterations),
            None => {
                let start = vector::random(
                    op.dim(),
                    Probe::Gaussian,
                    rng::stream_seed(config.seed, k as u64),
                    op.dtype(),
                    op.device(),
                )?;
                (vector::normalize(&start)?.0, None, 0)
            }
        };
        let mut converged = false;
        while iterations < config.max_iter {
            v = vector::normalize(&vector::orthogonalize(&v, &found)?)?.0;
            let hv = op.apply(&v)?;
            matvecs += 1;
            progress(matvecs);
            iterations += 1;
            let current = finite(vector::dot(&hv, &v)?, CONTEXT, "vᵀHv")?;
            let (next, n) = vector::normalize(&hv)?;
            if n > 0.0 {
                v = next;
            }
            if let Some(prev) = eigenvalue
                && (prev - current).abs() / (prev.abs() + 1e-6) < config.tol
            {
                converged = true;
                break;
            }
            eigenvalue = Some(current);
            let step = PowerStep {
                vector: v.clone(),
                eigenvalue,
                iterations,
            };
            save(&pairs, Some(step), matvecs)?;
        }
        let v = vector::normalize(&vector::orthogonalize(&v, &found)?)?.0;
        let (value, residual) = rayleigh(op, &v, CONTEXT)?;
        matvecs += 1;
        progress(matvecs);
        pairs.push(EigenPair {
            value,
            residual,
            iterations,
            converged,
            vector: v,
        });
        save(&pairs, None, matvecs)?;
    }
    config.progress.finish();
    Ok(TopEigen {
        method: EigenMethod::Power,
        pairs,
        matvecs,
        resumed_at,
    })
}

/// The top `k` eigenpairs (largest algebraic eigenvalues) by Lanczos with full
/// reorthogonalisation from a seeded Gaussian start.
///
/// Every step costs one product and an orthogonalisation against the whole basis (modified
/// Gram–Schmidt, twice), so the basis stays orthonormal to rounding and no spurious copies appear. The
/// iteration stops when the Ritz residual estimates `|β_m s_{m,i}|` of the top `k` Ritz pairs are
/// at most `tol·|θ_i|` (with `|θ_i|` floored at `√ε·‖T‖`, so zero eigenvalues can converge), at
/// `max_iter` steps, or at the operator's dimension (then the result is exact to rounding).
///
/// When the Krylov space becomes invariant (`β ≈ 0`: the start vector sees only part of the
/// spectrum, as with repeated eigenvalues or a low-rank operator), Lanczos restarts from a random
/// vector orthogonal to the basis (`T` splits into blocks); it stops once a restart block's
/// largest Ritz value is no larger than the k-th largest overall (within the tolerance). A restart
/// block must also have its largest Ritz value converged before the tolerance rule may stop the
/// run. This finds repeated eigenvalues that a single Krylov space misses in exact arithmetic;
/// near-repeated ones (a cluster narrower than `tol`) may still come out with fewer copies, with
/// honest residuals.
///
/// Progress goes to `config.progress`: at most `min(max_iter, dim) + top_k` products (the steps,
/// then one product per pair for its residual).
pub fn lanczos(op: &(impl LinearOperator + ?Sized), config: &LanczosConfig) -> Result<TopEigen> {
    lanczos_with_state(op, config, &mut NoState)
}

/// [`lanczos`] that continues from the state in `store` (when it holds one for these settings)
/// and gives it the state after every step that does not end the run: the basis, `α`, `β`, the
/// next vector and the restart bookkeeping. A resumed run gives exactly (bitwise, on the same
/// device) the eigenpairs of an uninterrupted one; its progress starts at the steps already done.
/// The state after `m` steps holds `m + 1` vectors of the operator's dimension.
pub fn lanczos_with_state(
    op: &(impl LinearOperator + ?Sized),
    config: &LanczosConfig,
    store: &mut dyn StateStore,
) -> Result<TopEigen> {
    const CONTEXT: &str = "Lanczos";
    config.check()?;
    let k = config.top_k;
    check_dim(k, op.dim())?;
    config.memory(op.dim(), op.dtype()).check()?;
    let settings = config.state_settings(op);
    let saved = match store.load(&settings)? {
        Some(state) => match state.onto_operator(op)? {
            SolverState::Lanczos(s) if s.alpha.len() < config.max_iter.min(op.dim()) => Some(s),
            other => {
                return Err(Error::config(
                    "state",
                    other.kind(),
                    "is not a Lanczos state for these settings",
                ));
            }
        },
        None => None,
    };
    let resumed_at = saved.as_ref().map(|s| s.matvecs);
    let bar = &config.progress;
    bar.start(
        "eigenvalues (Lanczos)",
        Some((config.max_iter.min(op.dim()) + k) as u64),
    );
    let progress = &mut |n: usize| bar.set_position(n as u64);
    let start = vector::random(
        op.dim(),
        Probe::Gaussian,
        config.seed,
        op.dtype(),
        op.device(),
    )?;
    let start = vector::normalize(&start)?.0;
    let eps = dtype_eps(op.dtype());
    let floor = eps.sqrt();
    // Whether each of the top `count` Ritz pairs of `t` meets the tolerance.
    let converged_pairs = |t: &SymmetricEigen, count: usize, next_beta: f64, scale: f64| {
        let m = t.n;
        t.top_indices(count)
            .map(|i| {
                let theta = t.values[i];
                (next_beta * t.component(m - 1, i)).abs()
                    <= config.tol * theta.abs().max(floor * scale)
            })
            .collect::<Vec<bool>>()
    };
    let mut save =
        |snapshot: LanczosSnapshot| store.save(&settings, &SolverState::Lanczos(snapshot));
    let run = lanczos_run(
        op,
        &start,
        config.max_iter,
        Some(config.seed),
        Resume {
            from: saved,
            save: &mut save,
        },
        &mut |state| {
            let m = state.alpha.len();
            if m < k || (!state.invariant && m > 100 && m % 10 != 0) {
                return Ok(false);
            }
            let t = linalg::tridiagonal_eigen(state.alpha, state.beta)?;
            let b0 = state.block_start;
            let block = (b0 > 0)
                .then(|| linalg::tridiagonal_eigen(&state.alpha[b0..], &state.beta[b0..]))
                .transpose()?;
            if state.invariant {
                // The Krylov space is exhausted. A first block says nothing about its orthogonal
                // complement: restart. A restart block that brought nothing into the top k (its
                // largest value is at most the k-th) ends the search.
                // (Ties within the tolerance or rounding count as nothing new.)
                let kth = t.values[m - k];
                let slack = config.tol * kth.abs() + 100.0 * eps * state.scale;
                return Ok(match &block {
                    None => false,
                    Some(b) => b.values[b.n - 1] <= kth + slack,
                });
            }
            // The top k have converged, and so has the largest Ritz value of the current block
            // (after a restart it may still be climbing into the top k).
            let block_done =
                block.is_none_or(|b| converged_pairs(&b, 1, state.next_beta, state.scale)[0]);
            Ok(block_done
                && converged_pairs(&t, k, state.next_beta, state.scale)
                    .iter()
                    .all(|&c| c))
        },
        progress,
    )?;
    let t = linalg::tridiagonal_eigen(&run.alpha, &run.beta)?;
    let flags = converged_pairs(&t, k, run.next_beta, run.scale);
    let mut matvecs = run.matvecs;
    let mut pairs = Vec::with_capacity(k);
    for (i, conv) in t.top_indices(k).zip(flags) {
        let s = t.vector(i);
        let mut y = run.basis[0].affine(s[0], 0.0)?;
        for (q, &c) in run.basis.iter().zip(s).skip(1) {
            y = vector::axpy(&y, c, q)?;
        }
        let y = vector::normalize(&y)?.0;
        let (value, residual) = rayleigh(op, &y, CONTEXT)?;
        matvecs += 1;
        progress(matvecs);
        pairs.push(EigenPair {
            value,
            residual,
            iterations: run.alpha.len(),
            converged: conv,
            vector: y,
        });
    }
    bar.finish();
    Ok(TopEigen {
        method: EigenMethod::Lanczos,
        pairs,
        matvecs,
        resumed_at,
    })
}

/// The `k` smallest (algebraic) eigenpairs by [`lanczos`] on the negated operator: the most
/// negative curvature directions. Values come back in increasing order, with their residuals
/// (unchanged by negation).
pub fn lanczos_smallest(
    op: &(impl LinearOperator + ?Sized),
    config: &LanczosConfig,
) -> Result<TopEigen> {
    use crate::OperatorExt;
    let mut r = lanczos(&op.negated(), config)?;
    for p in &mut r.pairs {
        p.value = -p.value;
    }
    Ok(r)
}

/// What a Lanczos run leaves: `T = tridiag(beta, alpha, beta)`, the orthonormal basis `Q` with
/// `H Q = Q T + next_beta · q_{m+1} e_mᵀ`.
pub(crate) struct LanczosRun {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub basis: Vec<Tensor>,
    /// The norm of the residual vector after the last step (0 at an invariant subspace).
    pub next_beta: f64,
    /// The largest |α| or β seen: an estimate of ‖T‖ ≤ ‖H‖.
    pub scale: f64,
    pub matvecs: usize,
}

/// Where a Lanczos run stands after a step, for its stopping rule.
pub(crate) struct LanczosState<'a> {
    /// Diagonal of `T` so far.
    pub alpha: &'a [f64],
    /// Off-diagonal of `T` so far (`alpha.len() − 1` entries; 0 where a restart split `T`).
    pub beta: &'a [f64],
    /// The norm of the new residual vector (0 at an invariant subspace).
    pub next_beta: f64,
    /// The largest |α| or β seen: an estimate of ‖T‖ ≤ ‖H‖.
    pub scale: f64,
    /// The step at which the current block (the last restart) began; 0 before any restart.
    pub block_start: usize,
    /// Whether this step ended in an invariant subspace (`β` at rounding level).
    pub invariant: bool,
}

/// A stopping rule for [`lanczos_run`].
pub(crate) type StopRule<'a> = dyn FnMut(&LanczosState) -> Result<bool> + 'a;

/// Where a [`lanczos_run`] starts (a saved state, or its start vector) and where its state goes
/// after every step that does not end it.
pub(crate) struct Resume<'a> {
    pub from: Option<LanczosSnapshot>,
    pub save: &'a mut dyn FnMut(LanczosSnapshot) -> Result<()>,
}

/// Lanczos with full reorthogonalisation from the unit vector `start`, for at most
/// `min(max_steps, dim)` steps. After each step `stop` may end the run. On an invariant subspace
/// (`β` at rounding level) that `stop` does not end, the run ends when `restart_seed` is `None`,
/// and otherwise continues from a random vector orthogonal to the basis (`T` then splits, with a
/// zero in `beta`). With a saved state in `resume`, the run continues from it instead of `start`.
pub(crate) fn lanczos_run(
    op: &(impl LinearOperator + ?Sized),
    start: &Tensor,
    max_steps: usize,
    restart_seed: Option<u64>,
    resume: Resume<'_>,
    stop: &mut StopRule<'_>,
    progress: &mut dyn FnMut(usize),
) -> Result<LanczosRun> {
    const CONTEXT: &str = "Lanczos";
    op.check_vector(start, CONTEXT)?;
    let dim = op.dim();
    let steps = max_steps.min(dim);
    let breakdown = 10.0 * dtype_eps(op.dtype()) * (dim as f64).sqrt();
    let mut run = LanczosRun {
        alpha: Vec::with_capacity(steps),
        beta: Vec::with_capacity(steps),
        basis: Vec::with_capacity(steps),
        next_beta: 0.0,
        scale: 0.0,
        matvecs: 0,
    };
    let mut block_start = 0;
    let mut q = start.clone();
    if let Some(s) = resume.from {
        op.check_vector(&s.next, CONTEXT)?;
        run.alpha = s.alpha;
        run.beta = s.beta;
        run.basis = s.basis;
        run.scale = s.scale;
        run.matvecs = s.matvecs;
        block_start = s.block_start;
        q = s.next;
        progress(run.matvecs);
    }
    while run.alpha.len() < steps {
        let mut w = op.apply(&q)?;
        run.matvecs += 1;
        progress(run.matvecs);
        let a = finite(vector::dot(&w, &q)?, CONTEXT, "α = qᵀHq")?;
        run.alpha.push(a);
        w = vector::axpy(&w, -a, &q)?;
        if let (Some(&b), Some(prev)) = (run.beta.last(), run.basis.last()) {
            w = vector::axpy(&w, -b, prev)?;
        }
        run.basis.push(q);
        w = vector::orthogonalize(&w, &run.basis)?;
        let b = finite(vector::norm(&w)?, CONTEXT, "β = ‖r‖")?;
        run.scale = run.scale.max(a.abs()).max(b);
        let invariant = b <= breakdown * run.scale;
        run.next_beta = if invariant { 0.0 } else { b };
        let m = run.alpha.len();
        if m == steps {
            break;
        }
        let state = LanczosState {
            alpha: &run.alpha,
            beta: &run.beta,
            next_beta: run.next_beta,
            scale: run.scale,
            block_start,
            invariant,
        };
        if stop(&state)? {
            break;
        }
        if invariant {
            let Some(seed) = restart_seed else { break };
            let r = vector::random(
                dim,
                Probe::Gaussian,
                rng::stream_seed(seed, m as u64),
                op.dtype(),
                op.device(),
            )?;
            let r = vector::normalize(&r)?.0;
            let (r, n) = vector::normalize(&vector::orthogonalize(&r, &run.basis)?)?;
            if n <= breakdown {
                break;
            }
            run.beta.push(0.0);
            block_start = m;
            q = r;
        } else {
            run.beta.push(b);
            q = w.affine(1.0 / b, 0.0)?;
        }
        (resume.save)(LanczosSnapshot {
            alpha: run.alpha.clone(),
            beta: run.beta.clone(),
            basis: run.basis.clone(),
            next: q.clone(),
            scale: run.scale,
            block_start,
            matvecs: run.matvecs,
        })?;
    }
    Ok(run)
}

/// Several Lanczos runs without restarts or stopping rule (stochastic Lanczos quadrature's), in
/// lockstep: each step's products go to the operator together ([`LinearOperator::apply_many`]), so
/// an operator that shares its forward pass between vectors does it once per step for all runs.
/// Each run is the one [`lanczos_run`] would give from its start (to rounding); a run that reaches
/// an invariant subspace stops while the others go on.
pub(crate) fn lanczos_lockstep(
    op: &(impl LinearOperator + ?Sized),
    starts: &[Tensor],
    max_steps: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<LanczosRun>> {
    const CONTEXT: &str = "Lanczos";
    let dim = op.dim();
    let steps = max_steps.min(dim);
    let breakdown = 10.0 * dtype_eps(op.dtype()) * (dim as f64).sqrt();
    let mut runs: Vec<LanczosRun> = Vec::with_capacity(starts.len());
    for s in starts {
        op.check_vector(s, CONTEXT)?;
        runs.push(LanczosRun {
            alpha: Vec::with_capacity(steps),
            beta: Vec::with_capacity(steps),
            basis: Vec::with_capacity(steps),
            next_beta: 0.0,
            scale: 0.0,
            matvecs: 0,
        });
    }
    let mut current: Vec<Option<Tensor>> = starts.iter().cloned().map(Some).collect();
    let mut total = 0;
    loop {
        let active: Vec<usize> = (0..runs.len())
            .filter(|&r| current[r].is_some() && runs[r].alpha.len() < steps)
            .collect();
        if active.is_empty() {
            break;
        }
        let qs: Vec<Tensor> = active
            .iter()
            .map(|&r| current[r].clone().expect("an active run has a vector"))
            .collect();
        let ws = op.apply_many(&qs)?;
        for ((&r, q), w) in active.iter().zip(qs).zip(ws) {
            let run = &mut runs[r];
            run.matvecs += 1;
            total += 1;
            progress(total);
            let a = finite(vector::dot(&w, &q)?, CONTEXT, "α = qᵀHq")?;
            run.alpha.push(a);
            let mut w = vector::axpy(&w, -a, &q)?;
            if let (Some(&b), Some(prev)) = (run.beta.last(), run.basis.last()) {
                w = vector::axpy(&w, -b, prev)?;
            }
            run.basis.push(q);
            w = vector::orthogonalize(&w, &run.basis)?;
            let b = finite(vector::norm(&w)?, CONTEXT, "β = ‖r‖")?;
            run.scale = run.scale.max(a.abs()).max(b);
            let invariant = b <= breakdown * run.scale;
            run.next_beta = if invariant { 0.0 } else { b };
            if run.alpha.len() == steps || invariant {
                current[r] = None;
            } else {
                run.beta.push(b);
                current[r] = Some(w.affine(1.0 / b, 0.0)?);
            }
        }
    }
    Ok(runs)
}
