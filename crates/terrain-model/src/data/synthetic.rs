//! Synthetic tasks: the three 2-D binary classification problems of the SoftAD paper
//! (Holland & Nakatani, 2024, "Criterion collapse and loss distribution control"; code
//! `feedbackward/bdd-flood`, which follows Ishida et al., 2020, on flooding), and a
//! teacher-student regression.
//!
//! The classification generators follow bdd-flood's `setup/data.py` (the settings),
//! `setup/gaussian.py`, `setup/sinusoid.py` and `setup/spiral.py` (the generators), as run by
//! `run_synthetic.py` (dimension 2, `n_tr = 100`, label noise 0 or 0.05):
//!
//! - **gaussian**: two Gaussians in 2-D, class 0 with mean `0`, class 1 with mean `1·𝟙`, both
//!   with covariance `I/10`, half of the rows each. Label noise is applied per class:
//!   `floor(n_c · noise)` rows of each class, chosen without replacement, get the other label.
//! - **sinusoid**: `x ~ N(0, I₂)`, label `1` where `⟨w₀, x⟩ + sin⟨w₁, x⟩ > 0` with
//!   `w₀ = (1, 1)`, `w₁ = (-1, 1)` (bdd-flood's `(1 + sign(·)) // 2`, so 0 on the boundary),
//!   else `0`. `floor(n · noise)` rows get the other label.
//! - **spiral**: two interleaved spirals. With `r` evenly spaced on `[0, 4π]` (`linspace`, one
//!   value per row of the class), class 1 is `r (cos r, sin r) + ε` and class 0
//!   `(r + π)(cos r, sin r) + ε`, `ε ~ N(0, I₂)` (bdd-flood's `tau = 1`, the "noise level" of
//!   Ishida et al.'s demos). `floor(n · noise)` rows get the other label.
//!
//! Differences from bdd-flood: random numbers come from terrain's seeded ChaCha8 generator
//! (not NumPy's), so values differ from the Python run while the distributions are the same;
//! an odd `n` gives the extra row to the second class instead of dropping it (bdd-flood uses
//! `n // 2` per class); and the rows are shuffled once (from the same seed) so that any prefix is
//! a random sample, where bdd-flood keeps class blocks and relies on its data loader to shuffle.
//!
//! **teacher-student** (`teacher`) is terrain's own: `x ~ N(0, I_d)`, a random one-hidden-layer
//! tanh teacher `y = w₂ᵀ tanh(W₁ x + b₁) + σ ε` with `W₁ ~ N(0, 1/d)` (`[h, d]`),
//! `b₁ ~ N(0, 0.1²)`, `w₂ ~ N(0, 1/h)` and `ε ~ N(0, 1)`; a regression with one output.
//! The teacher is drawn from the same seed as the data, so generate once and
//! [`Dataset::split`] for train and test.
//!
//! Source strings (see [`parse`]): `synthetic:gaussian`, `synthetic:spiral:n=500,noise=0.05`,
//! `synthetic:teacher:n=200,d=5,hidden=8,noise=0.2`.

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_distr::{Distribution, StandardNormal};

use super::{Dataset, Targets, Task};
use crate::error::{Error, Result};

/// The synthetic kinds' names, as written in source strings.
pub const KINDS: &[&str] = &["gaussian", "sinusoid", "spiral", "teacher"];

/// Which synthetic task to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyntheticKind {
    /// Two Gaussians in 2-D (means 0 and 𝟙, covariance I/10), 2 classes.
    #[default]
    Gaussian,
    /// A sinusoidal decision boundary in 2-D, 2 classes.
    Sinusoid,
    /// Two interleaved noisy spirals in 2-D, 2 classes.
    Spiral,
    /// Regression onto a random one-hidden-layer tanh teacher network.
    #[serde(rename = "teacher")]
    TeacherStudent,
}

impl std::fmt::Display for SyntheticKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl SyntheticKind {
    /// The name used in source strings (`gaussian`, `sinusoid`, `spiral`, `teacher`).
    pub fn name(&self) -> &'static str {
        match self {
            SyntheticKind::Gaussian => "gaussian",
            SyntheticKind::Sinusoid => "sinusoid",
            SyntheticKind::Spiral => "spiral",
            SyntheticKind::TeacherStudent => "teacher",
        }
    }

    /// Whether the kind is a classification task.
    pub fn is_classification(&self) -> bool {
        !matches!(self, SyntheticKind::TeacherStudent)
    }
}

impl std::str::FromStr for SyntheticKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match super::normalise_name(s).as_str() {
            "gaussian" | "gaussians" => Ok(SyntheticKind::Gaussian),
            "sinusoid" | "sine" => Ok(SyntheticKind::Sinusoid),
            "spiral" | "spirals" => Ok(SyntheticKind::Spiral),
            "teacher" | "teacher-student" => Ok(SyntheticKind::TeacherStudent),
            other => Err(Error::dataset(
                format!("synthetic:{other}"),
                format!(
                    "unknown synthetic kind `{other}`; known: {}",
                    KINDS.join(", ")
                ),
            )),
        }
    }
}

/// Settings of a synthetic dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SyntheticConfig {
    /// Which task.
    pub kind: SyntheticKind,
    /// Rows.
    pub n: usize,
    /// Fraction of labels flipped (classification kinds; bdd-flood's `label_noise`), in [0, 1].
    pub label_noise: f64,
    /// Seed of everything random.
    pub seed: u64,
    /// Teacher-student: input dimension.
    pub input_dim: usize,
    /// Teacher-student: hidden units of the teacher.
    pub teacher_hidden: usize,
    /// Teacher-student: standard deviation of the Gaussian noise added to the targets.
    pub noise_std: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            kind: SyntheticKind::Gaussian,
            n: 100,
            label_noise: 0.0,
            seed: 0,
            input_dim: 10,
            teacher_hidden: 16,
            noise_std: 0.1,
        }
    }
}

impl SyntheticConfig {
    /// The canonical source string of this configuration (also the generated dataset's name),
    /// which [`parse`] reads back into the same configuration.
    pub fn source(&self) -> String {
        match self.kind {
            SyntheticKind::TeacherStudent => format!(
                "synthetic:teacher:n={},d={},hidden={},noise={},seed={}",
                self.n, self.input_dim, self.teacher_hidden, self.noise_std, self.seed
            ),
            k => format!(
                "synthetic:{}:n={},noise={},seed={}",
                k.name(),
                self.n,
                self.label_noise,
                self.seed
            ),
        }
    }

    /// Checks the settings: `n ≥ 1`; label noise in [0, 1] (and 0 for teacher-student);
    /// teacher-student dimensions ≥ 1 and a finite `noise_std ≥ 0`.
    pub fn check(&self) -> Result<()> {
        if self.n == 0 {
            return Err(Error::config(
                "n",
                0,
                "a synthetic dataset needs at least 1 row",
            ));
        }
        if !(self.label_noise.is_finite() && (0.0..=1.0).contains(&self.label_noise)) {
            return Err(Error::config(
                "label_noise",
                self.label_noise,
                "must lie in [0, 1]",
            ));
        }
        if self.kind == SyntheticKind::TeacherStudent {
            if self.label_noise != 0.0 {
                return Err(Error::config(
                    "label_noise",
                    self.label_noise,
                    "teacher-student is a regression; use noise_std for target noise",
                ));
            }
            if self.input_dim == 0 {
                return Err(Error::config("input_dim", 0, "must be at least 1"));
            }
            if self.teacher_hidden == 0 {
                return Err(Error::config("teacher_hidden", 0, "must be at least 1"));
            }
            if !(self.noise_std.is_finite() && self.noise_std >= 0.0) {
                return Err(Error::config(
                    "noise_std",
                    self.noise_std,
                    "must be finite and >= 0",
                ));
            }
        }
        // Inputs and targets in f32, plus the f64 draws they come from.
        let features = if self.kind == SyntheticKind::TeacherStudent {
            self.input_dim.saturating_add(1)
        } else {
            3
        };
        let bytes = (self.n as u64)
            .saturating_mul(features as u64)
            .saturating_mul(12);
        crate::device::check_memory(
            &format!("synthetic:{} with n={}", self.kind.name(), self.n),
            bytes,
        )
    }
}

/// Parses a source string `synthetic:KIND[:key=value,...]` with KIND one of [`KINDS`]
/// (also `teacher-student`). Keys:
/// - `n`: rows (default 100);
/// - `noise`: the kind's noise — the label-flip fraction for gaussian/sinusoid/spiral, the
///   target noise standard deviation for teacher (same as `label_noise` / `noise_std`);
/// - `label_noise`, `noise_std`: explicit forms;
/// - `seed`: overrides the `seed` argument;
/// - teacher only: `d` (or `dim`, `input_dim`, default 10), `hidden` (or `h`,
///   `teacher_hidden`, default 16).
///
/// Unknown kinds and keys, keys that do not apply to the kind, and bad values are
/// [`Error::Dataset`] errors naming them.
pub fn parse(source: &str, seed: u64) -> Result<SyntheticConfig> {
    let src = source.trim();
    let bad = |reason: String| Error::dataset(src, reason);
    let mut parts = src.splitn(3, ':');
    let head = parts.next().unwrap_or_default();
    if !head.eq_ignore_ascii_case("synthetic") {
        return Err(bad("a synthetic source starts with `synthetic:`".into()));
    }
    let kind_str = parts.next().unwrap_or_default();
    if kind_str.trim().is_empty() {
        return Err(bad(format!(
            "no synthetic kind given; write synthetic:KIND with KIND one of {}",
            KINDS.join(", ")
        )));
    }
    let kind: SyntheticKind = kind_str.parse().map_err(|_| {
        bad(format!(
            "unknown synthetic kind `{kind_str}`; known: {}",
            KINDS.join(", ")
        ))
    })?;
    let mut cfg = SyntheticConfig {
        kind,
        seed,
        ..SyntheticConfig::default()
    };
    let params = parts.next().unwrap_or_default();
    for item in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("`{item}` is not key=value")))?;
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let uint = || {
            value.parse::<usize>().map_err(|_| {
                bad(format!(
                    "key `{key}`: `{value}` is not a non-negative integer"
                ))
            })
        };
        let float = || {
            value
                .parse::<f64>()
                .map_err(|_| bad(format!("key `{key}`: `{value}` is not a number")))
        };
        let teacher = kind == SyntheticKind::TeacherStudent;
        let teacher_only = || {
            bad(format!(
                "key `{key}` applies only to synthetic:teacher, not to {}",
                kind.name()
            ))
        };
        match key.as_str() {
            "n" => cfg.n = uint()?,
            "seed" => {
                cfg.seed = value
                    .parse()
                    .map_err(|_| bad(format!("key `seed`: `{value}` is not a u64")))?
            }
            "noise" if teacher => cfg.noise_std = float()?,
            "noise" | "label_noise" | "label-noise" => {
                if teacher {
                    return Err(bad(
                        "key `label_noise` does not apply to the teacher-student regression (use noise_std)"
                            .into(),
                    ));
                }
                cfg.label_noise = float()?;
                if !(0.0..=1.0).contains(&cfg.label_noise) {
                    return Err(bad(format!(
                        "key `{key}`: {value} must lie in [0, 1] (a fraction of labels)"
                    )));
                }
            }
            "noise_std" | "noise-std" if teacher => cfg.noise_std = float()?,
            "d" | "dim" | "input_dim" | "input-dim" if teacher => cfg.input_dim = uint()?,
            "h" | "hidden" | "teacher_hidden" | "teacher-hidden" if teacher => {
                cfg.teacher_hidden = uint()?
            }
            "noise_std" | "noise-std" | "d" | "dim" | "input_dim" | "input-dim" | "h"
            | "hidden" | "teacher_hidden" | "teacher-hidden" => return Err(teacher_only()),
            other => {
                let known = if teacher {
                    "n, noise, noise_std, d, hidden, seed"
                } else {
                    "n, noise, label_noise, seed"
                };
                return Err(bad(format!(
                    "unknown key `{other}` for synthetic:{}; known keys: {known}",
                    kind.name()
                )));
            }
        }
    }
    cfg.check()?;
    Ok(cfg)
}

fn normal(rng: &mut crate::rng::Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// Flips `floor(len * noise)` labels among `rows`, chosen without replacement (binary labels).
fn flip_labels(
    rng: &mut crate::rng::Rng,
    labels: &mut [u32],
    rows: std::ops::Range<usize>,
    noise: f64,
) {
    let len = rows.len();
    let m = (len as f64 * noise).floor() as usize;
    if m == 0 {
        return;
    }
    let chosen = rand::seq::index::sample(rng, len, m);
    for i in chosen.iter() {
        let r = rows.start + i;
        labels[r] = 1 - labels[r];
    }
}

/// Generates the dataset `cfg` describes (see the module documentation). Same configuration,
/// same data.
pub fn generate(cfg: &SyntheticConfig) -> Result<Dataset> {
    cfg.check()?;
    let mut rng = crate::rng::rng(cfg.seed);
    let n = cfg.n;
    let half = n / 2;
    let (dim, x, y) = match cfg.kind {
        SyntheticKind::Gaussian => {
            let sd = 0.1f64.sqrt();
            let mut x = Vec::with_capacity(n * 2);
            let mut labels = Vec::with_capacity(n);
            for (class, size) in [(0u32, half), (1u32, n - half)] {
                let mean = class as f64;
                let start = labels.len();
                for _ in 0..size * 2 {
                    x.push(mean + sd * normal(&mut rng));
                }
                labels.extend(std::iter::repeat_n(class, size));
                flip_labels(&mut rng, &mut labels, start..start + size, cfg.label_noise);
            }
            (2, x, Ok(labels))
        }
        SyntheticKind::Sinusoid => {
            let mut x = Vec::with_capacity(n * 2);
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                let (a, b) = (normal(&mut rng), normal(&mut rng));
                // w0 = (1, 1), w1 = (-1, 1): label = (1 + sign(<w0,x> + sin<w1,x>)) // 2.
                let s = (a + b) + (b - a).sin();
                labels.push(u32::from(s > 0.0));
                x.extend([a, b]);
            }
            flip_labels(&mut rng, &mut labels, 0..n, cfg.label_noise);
            (2, x, Ok(labels))
        }
        SyntheticKind::Spiral => {
            let (n_pos, n_neg) = (half, n - half);
            let linspace = |num: usize, i: usize| {
                if num <= 1 {
                    0.0
                } else {
                    4.0 * std::f64::consts::PI * i as f64 / (num - 1) as f64
                }
            };
            let mut x = Vec::with_capacity(n * 2);
            let noise = |rng: &mut crate::rng::Rng, count: usize| {
                (0..count)
                    .map(|_| [normal(rng), normal(rng)])
                    .collect::<Vec<_>>()
            };
            let noise_pos = noise(&mut rng, n_pos);
            let noise_neg = noise(&mut rng, n_neg);
            for (i, e) in noise_pos.iter().enumerate() {
                let r = linspace(n_pos, i);
                x.extend([r * r.cos() + e[0], r * r.sin() + e[1]]);
            }
            for (i, e) in noise_neg.iter().enumerate() {
                let r = linspace(n_neg, i);
                let rad = r + std::f64::consts::PI;
                x.extend([rad * r.cos() + e[0], rad * r.sin() + e[1]]);
            }
            let mut labels: Vec<u32> = std::iter::repeat_n(1, n_pos)
                .chain(std::iter::repeat_n(0, n_neg))
                .collect();
            flip_labels(&mut rng, &mut labels, 0..n, cfg.label_noise);
            (2, x, Ok(labels))
        }
        SyntheticKind::TeacherStudent => {
            let (d, h) = (cfg.input_dim, cfg.teacher_hidden);
            let w1: Vec<f64> = (0..h * d)
                .map(|_| normal(&mut rng) / (d as f64).sqrt())
                .collect();
            let b1: Vec<f64> = (0..h).map(|_| 0.1 * normal(&mut rng)).collect();
            let w2: Vec<f64> = (0..h)
                .map(|_| normal(&mut rng) / (h as f64).sqrt())
                .collect();
            let mut x = Vec::with_capacity(n * d);
            let mut targets = Vec::with_capacity(n);
            for _ in 0..n {
                let row: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
                let mut out = 0.0;
                for j in 0..h {
                    let pre: f64 = b1[j]
                        + w1[j * d..(j + 1) * d]
                            .iter()
                            .zip(&row)
                            .map(|(w, v)| w * v)
                            .sum::<f64>();
                    out += w2[j] * pre.tanh();
                }
                targets.push(out + cfg.noise_std * normal(&mut rng));
                x.extend(row);
            }
            (d, x, Err(targets))
        }
    };
    // One shuffle of the rows, so that any prefix is a random sample.
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let xs: Vec<f32> = order
        .iter()
        .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().map(|&v| v as f32))
        .collect();
    let x = Tensor::from_vec(xs, (n, dim), &Device::Cpu)?;
    let (targets, task) = match y {
        Ok(labels) => {
            let ys: Vec<u32> = order.iter().map(|&i| labels[i]).collect();
            (
                Targets::Classes(Tensor::from_vec(ys, n, &Device::Cpu)?),
                Task::Classification { classes: 2 },
            )
        }
        Err(values) => {
            let ys: Vec<f32> = order.iter().map(|&i| values[i] as f32).collect();
            (
                Targets::Values(Tensor::from_vec(ys, (n, 1), &Device::Cpu)?),
                Task::Regression { outputs: 1 },
            )
        }
    };
    let names = (1..=dim).map(|i| format!("x{i}")).collect();
    Dataset::new(cfg.source(), x, targets, task)?.with_feature_names(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_kinds_and_keys() {
        let c = parse("synthetic:gaussian", 7).unwrap();
        assert_eq!(
            (c.kind, c.n, c.seed, c.label_noise),
            (SyntheticKind::Gaussian, 100, 7, 0.0)
        );
        let c = parse("synthetic:spiral:n=500,noise=0.05", 0).unwrap();
        assert_eq!(
            (c.kind, c.n, c.label_noise),
            (SyntheticKind::Spiral, 500, 0.05)
        );
        let c = parse("synthetic:teacher:n=200,d=5", 0).unwrap();
        assert_eq!(
            (c.kind, c.n, c.input_dim, c.teacher_hidden),
            (SyntheticKind::TeacherStudent, 200, 5, 16)
        );
        let c = parse("Synthetic:Teacher-Student:noise=0.3,hidden=4,seed=9", 0).unwrap();
        assert_eq!((c.noise_std, c.teacher_hidden, c.seed), (0.3, 4, 9));
        // The canonical source parses back to the same configuration.
        for c in [
            parse("synthetic:sinusoid:n=33,noise=0.1,seed=5", 0).unwrap(),
            parse("synthetic:teacher:d=3", 2).unwrap(),
        ] {
            assert_eq!(parse(&c.source(), 0).unwrap(), c);
        }
    }

    #[test]
    fn parse_rejects_unknown_kinds_keys_and_values() {
        let msg = |s: &str| parse(s, 0).unwrap_err().to_string();
        assert!(msg("synthetic:moons").contains("`moons`"));
        assert!(msg("synthetic:spiral:n=10,colour=red").contains("`colour`"));
        assert!(msg("synthetic:spiral:d=3").contains("`d`"));
        assert!(msg("synthetic:spiral:n=ten").contains("`ten`"));
        // The key as the user typed it, not the field behind it.
        assert!(msg("synthetic:spiral:noise=1.5").contains("`noise`"));
        assert!(msg("synthetic:spiral:label_noise=1.5").contains("`label_noise`"));
        assert!(msg("synthetic:gaussian:n=0").contains("n"));
        assert!(msg("synthetic").contains("KIND"));
        assert!(msg("synthetic:spiral:n").contains("key=value"));
    }

    #[test]
    fn flip_labels_flips_floor_count() {
        let mut rng = crate::rng::rng(0);
        let mut labels = vec![0u32; 10];
        flip_labels(&mut rng, &mut labels, 0..10, 0.25);
        assert_eq!(labels.iter().sum::<u32>(), 2);
    }
}
