//! Objectives that transform the per-example losses ℓ_1..ℓ_n of a mini-batch into one number F:
//! ERM, flooding, iFlood, SoftAD, tilted ERM, CVaR, χ²-DRO and soft-flooded CVaR (COCE).
//!
//! Each is a [`LossTransform`]: its value F(ℓ) and its weights ∂F/∂ℓ_i, both in f64 on the host.
//! [`PerExample`] turns one into a trainer [`Objective`]: the weights are computed from the
//! detached losses and the gradient is that of Σ_i w_i ℓ_i(w), which by the chain rule is ∇F
//! exactly (for the transforms with an inner maximisation — CVaR's order statistics, DRO's worst
//! distribution, COCE's quantile — by Danskin's theorem, the maximiser held fixed).
//!
//! Where F has a kink (|·| at 0, ties in CVaR's order), the weights take one subgradient and say
//! which: sign(0) = 0 for flooding and iFlood; CVaR and COCE break ties by row order.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use terrain_model::{
    Error, Model, Result, config,
    data::Batch,
    loss::LossKind,
    train::{Objective, StepOutput, reduced_gradient},
};

/// A map from a batch's per-example losses to the objective's value, with its weights.
pub trait LossTransform {
    /// Short name with the hyperparameters, e.g. `softad:theta=0.5,sigma=1` (parses back through
    /// [`ObjectiveSpec`](crate::ObjectiveSpec)).
    fn name(&self) -> String;
    /// F(ℓ_1, ..., ℓ_n). `losses` is not empty.
    fn value(&self, losses: &[f64]) -> f64;
    /// ∂F/∂ℓ_i for every i (a subgradient at kinks, see the module docs).
    fn weights(&self, losses: &[f64]) -> Vec<f64>;
    /// The per-example loss level the objective aims at, if it has one.
    fn threshold(&self) -> Option<f64> {
        None
    }
}

/// The sign with sign(0) = 0 (the subgradient flooding and iFlood take at the kink).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The pseudo-Huber dispersion ρ(x) = √(x² + 1) − 1 of SoftAD.
pub fn rho(x: f64) -> f64 {
    x.hypot(1.0) - 1.0
}

/// ρ′(x) = x / √(1 + x²), in (−1, 1).
pub fn rho_prime(x: f64) -> f64 {
    x / x.hypot(1.0)
}

/// Empirical risk minimisation: F = mean ℓ_i.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Erm;

impl LossTransform for Erm {
    fn name(&self) -> String {
        "erm".into()
    }
    fn value(&self, losses: &[f64]) -> f64 {
        mean(losses)
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        vec![1.0 / losses.len() as f64; losses.len()]
    }
}

/// Flooding (Ishida et al. 2020) on the batch mean: F = |mean ℓ − b| + b.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Flood {
    /// The flood level b ≥ 0.
    pub level: f64,
}

impl Flood {
    /// Flooding at level `level` (finite, ≥ 0).
    pub fn new(level: f64) -> Result<Self> {
        config::non_negative("flood_level", level)?;
        Ok(Flood { level })
    }
}

impl LossTransform for Flood {
    fn name(&self) -> String {
        format!("flood:level={}", self.level)
    }
    fn value(&self, losses: &[f64]) -> f64 {
        (mean(losses) - self.level).abs() + self.level
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        let s = sign(mean(losses) - self.level) / losses.len() as f64;
        vec![s; losses.len()]
    }
    fn threshold(&self) -> Option<f64> {
        Some(self.level)
    }
}

/// iFlood (Xie et al. 2022), pointwise: F = mean_i |ℓ_i − θ| + θ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IFlood {
    /// The threshold θ ≥ 0.
    pub theta: f64,
}

impl IFlood {
    /// iFlood at threshold `theta` (finite, ≥ 0).
    pub fn new(theta: f64) -> Result<Self> {
        config::non_negative("theta", theta)?;
        Ok(IFlood { theta })
    }
}

impl LossTransform for IFlood {
    fn name(&self) -> String {
        format!("iflood:theta={}", self.theta)
    }
    fn value(&self, losses: &[f64]) -> f64 {
        losses.iter().map(|l| (l - self.theta).abs()).sum::<f64>() / losses.len() as f64
            + self.theta
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        let n = losses.len() as f64;
        losses.iter().map(|l| sign(l - self.theta) / n).collect()
    }
    fn threshold(&self) -> Option<f64> {
        Some(self.theta)
    }
}

/// Soft ascent-descent (Holland & Nakatani 2024): F = θ + σ²·mean_i ρ((ℓ_i − θ)/σ) with
/// ρ(x) = √(x² + 1) − 1, so ∂F/∂ℓ_i = σ·ρ′((ℓ_i − θ)/σ)/n. (bdd-flood adds 1e-12 to σ; here σ > 0
/// is required instead.)
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SoftAd {
    /// The threshold θ ≥ 0.
    pub theta: f64,
    /// The scale σ > 0 (default 1).
    pub sigma: f64,
}

impl SoftAd {
    /// SoftAD at threshold `theta` (finite, ≥ 0) and scale `sigma` (finite, > 0).
    pub fn new(theta: f64, sigma: f64) -> Result<Self> {
        config::non_negative("theta", theta)?;
        config::positive("sigma", sigma)?;
        Ok(SoftAd { theta, sigma })
    }
}

impl LossTransform for SoftAd {
    fn name(&self) -> String {
        format!("softad:theta={},sigma={}", self.theta, self.sigma)
    }
    fn value(&self, losses: &[f64]) -> f64 {
        let s = self.sigma;
        self.theta
            + s * s
                * losses
                    .iter()
                    .map(|l| rho((l - self.theta) / s))
                    .sum::<f64>()
                / losses.len() as f64
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        let n = losses.len() as f64;
        losses
            .iter()
            .map(|l| self.sigma * rho_prime((l - self.theta) / self.sigma) / n)
            .collect()
    }
    fn threshold(&self) -> Option<f64> {
        Some(self.theta)
    }
}

/// Tilted ERM (Li et al. 2021): F = (1/t)·log mean_i exp(t·ℓ_i), t ≠ 0 (t > 0 emphasises the
/// large losses, t < 0 the small ones). The weights are softmax(t·ℓ)_i; both are computed with the
/// largest exponent subtracted, so large t·ℓ does not overflow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tilted {
    /// The tilt t (finite, ≠ 0).
    pub t: f64,
}

impl Tilted {
    /// Tilted ERM with tilt `t` (finite, nonzero).
    pub fn new(t: f64) -> Result<Self> {
        if !t.is_finite() || t == 0.0 {
            return Err(Error::config(
                "tilt",
                t,
                "must be a finite nonzero number (t → 0 is ERM)",
            ));
        }
        Ok(Tilted { t })
    }
}

impl LossTransform for Tilted {
    fn name(&self) -> String {
        format!("tilted:t={}", self.t)
    }
    fn value(&self, losses: &[f64]) -> f64 {
        let z: Vec<f64> = losses.iter().map(|l| self.t * l).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // log mean exp(z − m) = log1p(mean expm1(z − m)): accurate also for t → 0.
        let s = z.iter().map(|zi| (zi - m).exp_m1()).sum::<f64>() / z.len() as f64;
        m / self.t + s.ln_1p() / self.t
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        let z: Vec<f64> = losses.iter().map(|l| self.t * l).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|zi| (zi - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|ei| ei / s).collect()
    }
}

/// Row indices ordered by decreasing loss, ties by row order.
fn descending(losses: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..losses.len()).collect();
    idx.sort_by(|&a, &b| losses[b].total_cmp(&losses[a]).then(a.cmp(&b)));
    idx
}

/// The number of examples CVaR at level α averages over a batch of `n`: k = ⌈(1 − α)·n⌉, at
/// least 1. (1 − α)·n within 1e-9 of a whole number counts as that number, so α = 0.7 with
/// n = 10 gives 3 despite 1 − 0.7 = 0.30000000000000004 in binary.
pub fn cvar_k(alpha: f64, n: usize) -> usize {
    let x = (1.0 - alpha) * n as f64;
    ((x - 1e-9).ceil() as usize).clamp(1, n.max(1))
}

/// Conditional value at risk: F = mean of the k = ⌈(1 − α)·n⌉ largest ℓ_i, α ∈ (0, 1); its
/// gradient is the mean gradient of those k examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cvar {
    /// The level α ∈ (0, 1): the top 1 − α fraction is averaged.
    pub alpha: f64,
}

fn open_unit(name: &str, value: f64) -> Result<()> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(Error::config(
            name,
            value,
            "must lie in the open interval (0, 1)",
        ))
    }
}

impl Cvar {
    /// CVaR at level `alpha` ∈ (0, 1).
    pub fn new(alpha: f64) -> Result<Self> {
        open_unit("cvar_alpha", alpha)?;
        Ok(Cvar { alpha })
    }
}

impl LossTransform for Cvar {
    fn name(&self) -> String {
        format!("cvar:alpha={}", self.alpha)
    }
    fn value(&self, losses: &[f64]) -> f64 {
        let k = cvar_k(self.alpha, losses.len());
        descending(losses)[..k]
            .iter()
            .map(|&i| losses[i])
            .sum::<f64>()
            / k as f64
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        let k = cvar_k(self.alpha, losses.len());
        let mut w = vec![0.0; losses.len()];
        for &i in &descending(losses)[..k] {
            w[i] = 1.0 / k as f64;
        }
        w
    }
}

/// χ²-constrained distributionally robust optimisation (Levy, Carmon, Duchi & Sidford 2020):
/// F = max Σ_i q_i ℓ_i over distributions q on the batch with ½·mean_i (n·q_i − 1)² ≤ r. The
/// maximiser is q_i ∝ (ℓ_i − η)₊ with η found by bisection so that the constraint holds with
/// equality (their `best_response`: bracket [−max ℓ/(√(2r+1) − 1), max ℓ], f64 bisection to
/// machine precision); when even the point
/// mass on the largest loss satisfies it, q is that point mass (spread over ties). The weights
/// are q (Danskin), F = Σ q_i ℓ_i. r = 0 is ERM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dro {
    /// The radius r ≥ 0 of the χ² ball.
    pub radius: f64,
}

impl Dro {
    /// χ²-DRO with radius `radius` (finite, ≥ 0).
    pub fn new(radius: f64) -> Result<Self> {
        config::non_negative("dro_radius", radius)?;
        Ok(Dro { radius })
    }

    /// The worst-case distribution q over the batch and the η of q ∝ (ℓ − η)₊ (`None` when q is
    /// uniform because r = 0 or all losses are equal).
    pub fn best_response(&self, losses: &[f64]) -> (Vec<f64>, Option<f64>) {
        let n = losses.len();
        let uniform = vec![1.0 / n as f64; n];
        let max = losses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = losses.iter().copied().fold(f64::INFINITY, f64::min);
        if self.radius == 0.0 || max - min <= 1e-12 * max.abs().max(1.0) {
            return (uniform, None);
        }
        let q_at = |eta: f64| -> Vec<f64> {
            let p: Vec<f64> = losses.iter().map(|l| (l - eta).max(0.0)).collect();
            let s: f64 = p.iter().sum();
            p.iter().map(|pi| pi / s).collect()
        };
        let divergence = |q: &[f64]| {
            q.iter()
                .map(|qi| (n as f64 * qi - 1.0).powi(2))
                .sum::<f64>()
                / (2.0 * n as f64)
        };
        // The point mass on the largest losses: the most divergent q with this support.
        let ties = losses.iter().filter(|&&l| l == max).count();
        let top: Vec<f64> = losses
            .iter()
            .map(|&l| if l == max { 1.0 / ties as f64 } else { 0.0 })
            .collect();
        if divergence(&top) <= self.radius {
            return (top, Some(max));
        }
        // The divergence grows with η. Levy et al.'s lower end, moved down until feasible (it
        // always is for non-negative losses).
        let mut lo = -max.abs() / ((2.0 * self.radius + 1.0).sqrt() - 1.0);
        while divergence(&q_at(lo)) > self.radius {
            lo -= (max - lo).max(1.0);
        }
        let mut hi = max;
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if divergence(&q_at(mid)) > self.radius {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        (q_at(lo), Some(lo))
    }
}

impl LossTransform for Dro {
    fn name(&self) -> String {
        format!("dro:radius={}", self.radius)
    }
    fn value(&self, losses: &[f64]) -> f64 {
        let (q, _) = self.best_response(losses);
        q.iter().zip(losses).map(|(q, l)| q * l).sum()
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        self.best_response(losses).0
    }
}

/// Soft-flooded CVaR, "concentrated OCE" (Holland & Hamada, arXiv 2408.03619; addro's
/// `SoftFloodedCVaR`): F = ρ(C − τ) + τ with ρ(x) = √(x² + 1) − 1 and C the CVaR dual value
/// θ_c + mean_i (ℓ_i − θ_c)₊/(1 − α).
///
/// Which θ_c: with `theta_c = None` (the default, the objective the paper describes) θ_c
/// minimises the dual, so C is the exact CVaR_α of the batch — the mean of the top (1 − α)·n
/// losses, the boundary example counted with the fractional weight that makes up (1 − α)·n. With
/// `theta_c = Some(c)` θ_c is held at c; `Some(0.0)` reproduces the released addro runs, where
/// θ_c is a parameter the optimiser never receives and stays 0, so C = mean ℓ/(1 − α)
/// (methods.md §5.2's caveat). ∂F/∂ℓ_i = ρ′(C − τ)·∂C/∂ℓ_i.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coce {
    /// The flood level τ ≥ 0 of the outer ρ.
    pub tau: f64,
    /// The CVaR level α ∈ (0, 1) (addro uses 0.5).
    pub alpha: f64,
    /// A fixed θ_c, or `None` to minimise over it (exact CVaR).
    pub theta_c: Option<f64>,
}

impl Coce {
    /// Soft-flooded CVaR at level `tau` (finite, ≥ 0) over CVaR level `alpha` ∈ (0, 1), θ_c
    /// minimised.
    pub fn new(tau: f64, alpha: f64) -> Result<Self> {
        config::non_negative("theta", tau)?;
        open_unit("cvar_alpha", alpha)?;
        Ok(Coce {
            tau,
            alpha,
            theta_c: None,
        })
    }

    /// The same with θ_c held at `c` (finite).
    pub fn with_fixed_theta_c(mut self, c: f64) -> Result<Self> {
        if !c.is_finite() {
            return Err(Error::config("theta_c", c, "must be a finite number"));
        }
        self.theta_c = Some(c);
        Ok(self)
    }

    /// C and ∂C/∂ℓ_i.
    fn inner(&self, losses: &[f64]) -> (f64, Vec<f64>) {
        let n = losses.len();
        let mass = (1.0 - self.alpha) * n as f64;
        let mut w = vec![0.0; n];
        match self.theta_c {
            Some(c) => {
                let mut s = 0.0;
                for (wi, &l) in w.iter_mut().zip(losses) {
                    if l > c {
                        s += l - c;
                        *wi = 1.0 / mass;
                    }
                }
                (c + s / mass, w)
            }
            None => {
                // CVaR_α = (1/mass)·[sum of the ⌊mass⌋ largest + (mass − ⌊mass⌋)·the next one]:
                // the minimum over θ_c of the dual, taken at the order statistic θ_c = ℓ_(k).
                let order = descending(losses);
                let mut left = mass;
                let mut value = 0.0;
                for &i in &order {
                    if left <= 1e-12 {
                        break;
                    }
                    let take = left.min(1.0);
                    w[i] = take / mass;
                    value += take * losses[i];
                    left -= take;
                }
                (value / mass, w)
            }
        }
    }
}

impl LossTransform for Coce {
    fn name(&self) -> String {
        match self.theta_c {
            None => format!("coce:theta={},alpha={}", self.tau, self.alpha),
            Some(c) => format!("coce:theta={},alpha={},theta_c={c}", self.tau, self.alpha),
        }
    }
    fn value(&self, losses: &[f64]) -> f64 {
        rho(self.inner(losses).0 - self.tau) + self.tau
    }
    fn weights(&self, losses: &[f64]) -> Vec<f64> {
        let (c, dc) = self.inner(losses);
        let outer = rho_prime(c - self.tau);
        dc.into_iter().map(|d| outer * d).collect()
    }
    fn threshold(&self) -> Option<f64> {
        Some(self.tau)
    }
}

/// A [`LossTransform`] as a trainer [`Objective`]: one forward pass in training mode, the
/// per-example losses, the weights from their detached values, and the gradient of
/// Σ_i w_i ℓ_i(w) = ∇F. The logged loss is the plain batch mean, as for ERM.
#[derive(Debug, Clone)]
pub struct PerExample<T> {
    /// The transform.
    pub transform: T,
    /// F of the last batch (for logs and tests).
    pub last_value: Option<f64>,
}

impl<T: LossTransform> PerExample<T> {
    /// Wraps `transform`.
    pub fn new(transform: T) -> Self {
        PerExample {
            transform,
            last_value: None,
        }
    }
}

impl<T: LossTransform> Objective for PerExample<T> {
    fn name(&self) -> String {
        self.transform.name()
    }

    fn step(&mut self, model: &Model, batch: &Batch, loss: LossKind) -> Result<StepOutput> {
        let transform = &self.transform;
        let mut value = None;
        let out = reduced_gradient(model, batch, loss, true, |l: &Tensor| {
            let host: Vec<f64> = l.to_dtype(candle_core::DType::F64)?.to_vec1()?;
            if host.is_empty() {
                return Err(Error::config("batch", 0, "has no rows"));
            }
            value = Some(transform.value(&host));
            let w = Tensor::from_vec(transform.weights(&host), host.len(), l.device())?
                .to_dtype(l.dtype())?;
            Ok((l * w)?.sum_all()?)
        })?;
        self.last_value = value;
        Ok(out)
    }

    fn threshold(&self) -> Option<f64> {
        self.transform.threshold()
    }
}
