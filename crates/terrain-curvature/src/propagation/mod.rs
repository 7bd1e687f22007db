//! Curvature propagation (Martens, Sutskever & Swersky 2012, "Estimating the Hessian by
//! back-propagating curvature") and the Becker–LeCun diagonal, for the Hessian of the mean loss over
//! a [`HessianOperator`]'s data with respect to its selected parameters (BatchNorm in eval mode).
//!
//! # How it works
//!
//! The network is a graph whose nodes are *per row*: row `n`'s linear layer, activation, ... are
//! separate nodes, and the parameters are graph inputs shared by all rows. With `M_i` the local
//! curvature of node `i` (its output's Hessian with respect to its inputs, weighted by the
//! back-propagated gradient) and `𝒥_i` the Jacobian of its inputs with respect to the parameters,
//! `H = Σ_i 𝒥_iᵀ M_i 𝒥_i`. Factor `M_i = F_i G_iᵀ`; then
//! `H = E[(Σ_i 𝒥_iᵀ F_i v_i)(Σ_i 𝒥_iᵀ G_i v_i)ᵀ]` for independent noise `v_i` with
//! `E[v vᵀ] = I`, and both sums come out of **one backward sweep** that carries them beside the
//! gradient: at each node `s_x = J_iᵀ s_y + F_i v_i`, summed over fan-out like gradients, with
//! fresh noise per row and node; parameters accumulate over rows (and batches) like gradients.
//!
//! - **S-variant** ([`CpVariant::S`]): `G = F`, complex where `M_i` is indefinite; real and imaginary
//!   parts are carried separately and the diagonal estimate is `s_re² − s_im²` (the real part of
//!   `(Sv)⊙(Sv)`). Its variance per entry is `2‖A‖²_F + (κ − 3) Σ_k A_kk²` with
//!   `A = Re(S_i· S_i·ᵀ)` and `κ = E v⁴` ([`CurvatureFactor::variance`]); for a real `S` and
//!   Rademacher noise this is §4.5's `2(H_ii² − Σ_k S_ik⁴)`.
//! - **T/U variant** ([`CpVariant::Tu`]): real `F ≠ G`, estimate `T ⊙ U`.
//! - **Becker–LeCun** ([`becker_lecun`]): deterministic; propagates only the diagonal of each
//!   node's Hessian (`h_x = diag(Jᵀ diag(h_y) J) + diag(M)`), dropping off-diagonal couplings, so it
//!   is biased, except where no coupling reaches the diagonal (a linear model; one hidden layer
//!   under MSE, whose output Hessian is diagonal).
//!
//! # Local factors
//!
//! With `g` the gradient at a node's output and `w = 1/rows` (the loss is a mean over all rows):
//!
//! | node | local `M` | S-variant factor `F` (`M = F Fᵀ`) | T/U factors (`M = F Gᵀ`) |
//! |---|---|---|---|
//! | softmax CE on logits `z` | `w·(diag p − p pᵀ)` (PSD; times `Σ_k y_k` for soft targets) | real: `√w (diag √p − p √pᵀ)` | `F = G` = that factor |
//! | MSE, `O` outputs | `(2w/O) I` | `√(2w/O) I` | `F = G` |
//! | activation `a = φ(z)` | `diag(m)`, `m = g ⊙ φ''(z)` | `diag(√m⁺) + i diag(√m⁻)` | `F = diag(sign(m)·√abs(m))`, `G = diag(√abs(m))` |
//! | linear/conv `y = B(W, x)` | `[[0, K], [Kᵀ, 0]]` over `(W, x)` | `(1/√2)[[σK, iσK], [I/σ, −iI/σ]]`, noise `(a, b)` on the `x` side | `F = [[σK, 0], [0, I/σ]]`, `G = [[0, σK], [I/σ, 0]]` |
//! | BatchNorm (eval) `y = γ x̂ + β` | `[[0, C], [Cᵀ, 0]]` over `(γ, x)` | `(1/√2)[[σI, iσI], [Cᵀ/σ, −iCᵀ/σ]]`, noise `(a, b)` on the `γ` side | `F = [[σI, 0], [0, Cᵀ/σ]]`, `G = [[0, σI], [Cᵀ/σ, 0]]` |
//!
//! One can check `F Fᵀ = M` (plain transpose, not conjugate) and `F Gᵀ = M` in each case. For a
//! linear layer `K_(o,j),j' = g_o δ_jj'`, so the noise `(a, b) ∈ R^in` per row enters as
//! `s_W += (σ/√2) g ⊗ (a + i b)`, `s_x += (1/(σ√2))(a − i b)` (T/U: `T_W += σ g ⊗ a`,
//! `T_x += b/σ`, `U_W += σ g ⊗ b`, `U_x += a/σ`). A convolution is the same bilinear structure,
//! `K u` being the kernel gradient for input `u` and output gradient `g`, with noise of the input's
//! shape. For BatchNorm `C_c,(c,pos) = g_(c,pos)/√(σ²_c + ε)` (running variance), and the noise
//! lives on the smaller `γ` side, one pair per row and channel. The per-row scale `σ > 0` leaves
//! the factor exact; it balances the two blocks' Frobenius norms (`σ = ‖g_n‖^(-1/2)` for a linear
//! layer): unbalanced, the identity block is O(1) while `K ∝ g` is O(1/rows), and the variance was
//! thousands of times larger.
//!
//! Linear nodes (biases, `β`, average pooling, the residual sum, flattening) and piecewise-linear
//! ones (ReLU, whose `φ''` is 0, and 2×2 max pooling, routed to the maximum like the gradient) have
//! `M = 0`: they only transport `s`. A bilinear node whose input does not depend on a selected
//! parameter (the first layer's input is data), or whose parameter is not selected, has
//! `𝒥ᵀ M 𝒥 = 0` and injects nothing; the sweep stops where inputs stop depending on selected
//! parameters.
//!
//! # Coverage: the diagonal needs no bilinear noise
//!
//! A bilinear node's term `𝒥ᵀ M 𝒥` only fills the blocks (its parameter, parameters upstream of
//! its input) and their transposes: a parameter is never upstream of its own layer's input, so the
//! term has a zero diagonal. [`Coverage::Diagonal`] (the default for diagonal estimates) therefore
//! skips those injections: the diagonal's expectation is unchanged, its variance falls by one to
//! two orders of magnitude (then below Hutchinson's on the test networks), and the sweep is
//! cheaper. [`Coverage::Full`] keeps them: `(Sv)(Sv)ᵀ` is then an unbiased estimate of every entry
//! of `H`, as in the paper. Without bilinear noise the S and T/U estimates coincide (every noise
//! column of the S-factor is purely real or purely imaginary, and `T·v`, `U·v` are `(x ∓ y)·v`), so
//! they differ only under full coverage.
//!
//! # Cost
//!
//! One forward pass and one backward sweep per batch carry the node gradients and `K` samples at
//! once (`samples_per_sweep`): each linear map is one matmul or transposed convolution over `N·2K`
//! rows, each parameter accumulation one matmul (kernel gradient) contracting over the rows.
//! Until the first injection below the loss the imaginary parts are zero (and `U = T`), so only `K`
//! copies are carried there — in a ReLU network with diagonal coverage, all the way down. Measured
//! (release, f32, batch 256, 2-core CPU): one sample costs 1.4–1.6× a candle gradient on
//! `mlp:784-256-256-10` (ReLU/tanh) and 1.0–1.6× on `cnn:1x28x28-16-32-10`; with 8 samples per
//! sweep, 0.7–0.9× and 0.7–1.5× per sample.

mod noise;

use candle_core::{DType, Tensor};
use terrain_model::rng;

use crate::{
    DiagonalConfig, DiagonalMoments, Error, HessianOperator, LinearOperator, Result, vector::Probe,
};
use noise::{OneHotNoise, RandomNoise};
use terrain_model::engine::propagation::{self as sweep, Mode};

/// Which curvature the sweep's noise covers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// The diagonal only: bilinear nodes (linear, convolution, BatchNorm's γ) inject nothing.
    /// Their curvature fills only the off-diagonal blocks (parameter, upstream parameter), so the
    /// diagonal's expectation is unchanged while its variance drops by orders of magnitude.
    #[default]
    Diagonal,
    /// The whole Hessian, as in Martens et al.: `(Sv)(Sv)ᵀ` is an unbiased estimate of every entry.
    Full,
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Coverage::Diagonal => "diagonal",
            Coverage::Full => "full",
        })
    }
}

impl std::str::FromStr for Coverage {
    type Err = crate::Error;

    /// `diagonal` or `full`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "diagonal" | "diag" => Ok(Coverage::Diagonal),
            "full" => Ok(Coverage::Full),
            _ => Err(crate::Error::config(
                "coverage",
                s,
                "expected diagonal or full",
            )),
        }
    }
}

/// Which curvature-propagation estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpVariant {
    /// Symmetric factors `M = F Fᵀ`, complex where `M` is indefinite; estimate `Re(s)² − Im(s)²`.
    S,
    /// Real factors `M = F Gᵀ`; estimate `T ⊙ U`.
    Tu,
}

impl CpVariant {
    fn mode(self, k: usize) -> Mode {
        match self {
            CpVariant::S => Mode::S(k),
            CpVariant::Tu => Mode::Tu(k),
        }
    }
}

/// Per-sample diagonal estimates from one sweep's accumulator `[R, shape...]` (`R = 2K`, or `K`
/// when the imaginary part is zero / `U = T`): `[K, numel]` in f64.
fn estimates(acc: &Tensor, variant: CpVariant, k: usize) -> Result<Tensor> {
    let r = acc.dim(0)?;
    let a = acc
        .reshape((r, acc.elem_count() / r))?
        .to_dtype(DType::F64)?;
    if r == k {
        return Ok(a.sqr()?);
    }
    let (p, q) = (a.narrow(0, 0, k)?, a.narrow(0, k, k)?);
    Ok(match variant {
        CpVariant::S => p.sqr()?.sub(&q.sqr()?)?,
        CpVariant::Tu => p.mul(&q)?,
    })
}

/// Monte-Carlo estimates of the Hessian diagonal by curvature propagation: `config.samples`
/// samples, `config.samples_per_sweep` at a time sharing one forward pass and gradient, noise
/// distributed as `config.probe` from `config.seed` (the same seed and sweep width give the same
/// numbers). Unbiased for the exact Hessian of the mean loss over the operator's data (BatchNorm in
/// eval mode).
///
/// Fails with [`Error::Unsupported`] for a Gauss–Newton operator.
pub fn curvature_propagation(
    op: &HessianOperator<'_>,
    variant: CpVariant,
    config: &DiagonalConfig,
) -> Result<DiagonalMoments> {
    config.check()?;
    let cross = config.coverage == Coverage::Full;
    let layout = op.layout();
    let blocks: Vec<(usize, usize)> = layout.iter().map(|(_, o, l)| (*o, *l)).collect();
    let mut moments = DiagonalMoments::new(blocks.clone());
    // Sums over samples stay on the device (f64) until the end; sums over the sample axis are
    // matmuls with a ones vector (a reduction over a non-contiguous axis is many times slower).
    let (dtype, dev) = (DType::F64, op.device());
    let mut sums: Vec<Option<(Tensor, Tensor)>> = vec![None; blocks.len()];
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); blocks.len()];
    let mut done = 0;
    let mut sweep_index = 0u64;
    while done < config.samples {
        let k = config.samples_per_sweep.min(config.samples - done);
        let mut noise = RandomNoise::new(
            rng::rng(rng::stream_seed(config.seed, sweep_index)),
            config.probe,
        );
        let acc = sweep::run(&op.request(), variant.mode(k), cross, &mut noise)?;
        let ones_k = Tensor::ones((1, k), dtype, dev)?;
        for (block, a) in acc.iter().enumerate() {
            let est = estimates(a, variant, k)?;
            let ones_p = Tensor::ones((est.dim(1)?, 1), dtype, dev)?;
            totals[block].extend(est.matmul(&ones_p)?.flatten_all()?.to_vec1::<f64>()?);
            let (s, q) = (ones_k.matmul(&est)?, ones_k.matmul(&est.sqr()?)?);
            sums[block] = Some(match sums[block].take() {
                None => (s, q),
                Some((s0, q0)) => (s0.add(&s)?, q0.add(&q)?),
            });
        }
        done += k;
        sweep_index += 1;
        config.progress.set_position(done as u64);
    }
    for (block, st) in sums.into_iter().enumerate() {
        let (s, q) = st.expect("at least one sweep ran");
        let (s, q) = (
            s.flatten_all()?.to_vec1::<f64>()?,
            q.flatten_all()?.to_vec1::<f64>()?,
        );
        moments.add_block(block, &s, &q, &totals[block]);
    }
    moments.add_count(done);
    Ok(moments)
}

/// The Becker–LeCun (1989) diagonal (Kingma–LeCun "approx-BP"): back-propagates only the diagonal
/// of each node's Hessian. Deterministic and biased (it drops off-diagonal couplings); exact for a
/// single linear layer into the loss. Flat, in the operator's layout.
///
/// Fails with [`Error::Unsupported`] for a Gauss–Newton operator.
pub fn becker_lecun(op: &HessianOperator<'_>) -> Result<Vec<f64>> {
    let mut none = OneHotNoise::new(0);
    let acc = sweep::run(&op.request(), Mode::Bl, false, &mut none)?;
    let mut out = Vec::with_capacity(op.dim());
    for a in acc {
        out.extend(a.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// The exact curvature-propagation factor of a small model: `H = Re(S Sᵀ)` (S-variant) or
/// `H = T Uᵀ` (T/U variant), one column per scalar of noise a sweep draws. A test oracle (the
/// variance of each estimator follows from it) and an exact, if costly, diagonal.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvatureFactor {
    variant: CpVariant,
    dim: usize,
    columns: usize,
    first: Vec<f64>,
    second: Vec<f64>,
}

impl CurvatureFactor {
    /// The variant.
    pub fn variant(&self) -> CpVariant {
        self.variant
    }

    /// Rows: the operator's dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Columns: the scalars of noise per sample.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// `Re S` (S-variant) or `T` (T/U), row-major `dim × columns`.
    pub fn first(&self) -> &[f64] {
        &self.first
    }

    /// `Im S` (S-variant) or `U` (T/U), row-major `dim × columns`.
    pub fn second(&self) -> &[f64] {
        &self.second
    }

    fn rows(&self, i: usize) -> (&[f64], &[f64]) {
        let r = i * self.columns..(i + 1) * self.columns;
        (&self.first[r.clone()], &self.second[r])
    }

    /// Hessian entry `(i, j)` from the factor: `Σ_k Re(S_ik S_jk)` or `Σ_k T_ik U_jk`.
    pub fn entry(&self, i: usize, j: usize) -> f64 {
        let ((xi, yi), (xj, yj)) = (self.rows(i), self.rows(j));
        match self.variant {
            CpVariant::S => dot(xi, xj) - dot(yi, yj),
            CpVariant::Tu => dot(xi, yj),
        }
    }

    /// The Hessian diagonal from the factor.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.dim).map(|i| self.entry(i, i)).collect()
    }

    /// The variance of one sample's estimate of `H_ii` with noise `probe`. The estimate is the
    /// quadratic form `vᵀ A v` with `A = x xᵀ − y yᵀ` (S: `x + i y` is row `i` of `S`) or
    /// `A = (t uᵀ + u tᵀ)/2` (T/U), so `Var = 2‖A‖²_F + (κ − 3) Σ_k A_kk²` with `κ = E v⁴`
    /// (1 for Rademacher, 3 for Gaussian).
    pub fn variance(&self, i: usize, probe: Probe) -> f64 {
        let (x, y) = self.rows(i);
        let (frob, diag_sq) = match self.variant {
            CpVariant::S => {
                let (xx, yy, xy) = (dot(x, x), dot(y, y), dot(x, y));
                let d: f64 = x.iter().zip(y).map(|(a, b)| (a * a - b * b).powi(2)).sum();
                (xx * xx + yy * yy - 2.0 * xy * xy, d)
            }
            CpVariant::Tu => {
                let (tt, uu, tu) = (dot(x, x), dot(y, y), dot(x, y));
                let d: f64 = x.iter().zip(y).map(|(a, b)| (a * b).powi(2)).sum();
                (0.5 * (tt * uu + tu * tu), d)
            }
        };
        let kappa = match probe {
            Probe::Rademacher => 1.0,
            Probe::Gaussian => 3.0,
        };
        2.0 * frob + (kappa - 3.0) * diag_sq
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Builds the exact factor of [`CurvatureFactor`] by sweeping unit noise vectors, `chunk` columns
/// per sweep. Fails when the factor would have more than `max_columns` columns (it needs
/// `dim × columns` values twice and `columns / chunk` sweeps): a tool for tiny models.
pub fn curvature_factor(
    op: &HessianOperator<'_>,
    variant: CpVariant,
    coverage: Coverage,
    max_columns: usize,
) -> Result<CurvatureFactor> {
    let cross = coverage == Coverage::Full;
    const CHUNK: usize = 64;
    // A one-column sweep counts the columns.
    let mut count = OneHotNoise::new(usize::MAX);
    sweep::run(&op.request(), variant.mode(1), cross, &mut count)?;
    let columns = count.columns();
    if columns > max_columns {
        return Err(Error::config(
            "max_columns",
            max_columns,
            format!(
                "the exact curvature-propagation factor of this model and data has {columns} columns; \
                 use fewer rows or parameters, or raise the limit"
            ),
        ));
    }
    let dim = op.dim();
    let mut first = vec![0.0; dim * columns];
    let mut second = vec![0.0; dim * columns];
    let mut start = 0;
    while start < columns {
        let k = CHUNK.min(columns - start);
        let mut noise = OneHotNoise::new(start);
        let acc = sweep::run(&op.request(), variant.mode(k), cross, &mut noise)?;
        let mut row0 = 0;
        for a in acc {
            let a = sweep::dual(&a, variant.mode(k), 0)?;
            let numel = a.elem_count() / (2 * k);
            let v = a
                .reshape((2 * k, numel))?
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?;
            for j in 0..k {
                for i in 0..numel {
                    first[(row0 + i) * columns + start + j] = v[j][i];
                    second[(row0 + i) * columns + start + j] = v[k + j][i];
                }
            }
            row0 += numel;
        }
        start += k;
    }
    Ok(CurvatureFactor {
        variant,
        dim,
        columns,
        first,
        second,
    })
}
