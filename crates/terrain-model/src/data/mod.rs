//! Datasets: real data shipped inside the crate ([`builtin`]), safetensors files ([`file`](mod@file)),
//! synthetic tasks ([`synthetic`]) and, with the `hub` feature, Hugging Face Hub image sets.
//!
//! A [`Dataset`] holds all of its rows in memory on the CPU: inputs `x` as f32 `[N, ...]` and
//! [`Targets`]. It knows its [`Task`], splits itself (stratified for classification), takes
//! subsets, injects label noise, standardises, and hands out [`Batch`]es, shuffled from a seed.
//! [`load`] resolves a source string (a built-in name, `synthetic:...`, a file, a fetched hub
//! set) into a dataset.
//!
//! ```
//! use terrain_model::data;
//!
//! # fn main() -> terrain_model::Result<()> {
//! let digits = data::load("digits", &data::LoadOptions::default())?;
//! assert_eq!(digits.input_shape(), vec![64]);
//! let (train, test) = digits.split(0.8, 0)?;
//! assert_eq!(train.len() + test.len(), 1797);
//! for batch in train.batches(128, Some(1), false)? {
//!     let batch = batch?;
//!     assert!(batch.len() <= 128);
//! }
//! # Ok(())
//! # }
//! ```

pub mod builtin;
pub mod file;
#[cfg(feature = "hub")]
pub mod hub;
pub mod synthetic;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::Rng as _;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};

/// Names of the Hugging Face Hub image sets that [`load`] finds in the data directory once fetched
/// (`cargo xtask datasets fetch NAME`), each with a `train` and a `test` split.
pub const HUB_NAMES: &[&str] = &["mnist", "fashion-mnist", "cifar10"];

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Task {
    /// Class labels in `0..classes`.
    Classification {
        /// The number of classes.
        classes: usize,
    },
    /// Real-valued targets with `outputs` columns.
    Regression {
        /// The number of target columns.
        outputs: usize,
    },
}

impl Task {
    /// The number of network outputs the task needs: `classes` or `outputs`.
    pub fn output_dim(&self) -> usize {
        match *self {
            Task::Classification { classes } => classes,
            Task::Regression { outputs } => outputs,
        }
    }
}

/// Targets of a dataset or batch. Tensors live on the CPU unless moved.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Class labels, u32 `[N]`.
    Classes(Tensor),
    /// Soft labels, f32 `[N, classes]` whose rows sum to 1 (made by [`mixup`]).
    Soft(Tensor),
    /// Regression targets, f32 `[N, outputs]` (always 2-D; a `[N]` input becomes `[N, 1]`).
    Values(Tensor),
}

impl Targets {
    /// The tensor inside, whatever the variant.
    pub fn tensor(&self) -> &Tensor {
        match self {
            Targets::Classes(t) | Targets::Soft(t) | Targets::Values(t) => t,
        }
    }

    /// The same kind of targets with `f` applied to the tensor (e.g. a row range: `narrow(0, a, n)`).
    pub fn map(&self, f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>) -> Result<Self> {
        Ok(match self {
            Targets::Classes(t) => Targets::Classes(f(t)?),
            Targets::Soft(t) => Targets::Soft(f(t)?),
            Targets::Values(t) => Targets::Values(f(t)?),
        })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.tensor().dims().first().copied().unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows at `idx` (an integer tensor `[M]`, moved to the targets' device if needed).
    pub fn index_select(&self, idx: &Tensor) -> Result<Self> {
        let dev = self.tensor().device();
        let idx = idx.to_device(dev)?;
        self.map(|t| t.index_select(&idx, 0))
    }

    /// The same targets on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        self.map(|t| t.to_device(device))
    }

    /// Float targets (`Soft`, `Values`) converted to `dtype`; class labels are left as they are.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(match self {
            Targets::Classes(t) => Targets::Classes(t.clone()),
            Targets::Soft(t) => Targets::Soft(t.to_dtype(dtype)?),
            Targets::Values(t) => Targets::Values(t.to_dtype(dtype)?),
        })
    }

    /// Class labels as a vector, for `Classes` targets (`None` otherwise).
    pub fn labels(&self) -> Result<Option<Vec<u32>>> {
        match self {
            Targets::Classes(t) => Ok(Some(t.to_dtype(DType::U32)?.to_vec1::<u32>()?)),
            _ => Ok(None),
        }
    }
}

/// A labelled dataset held in memory: inputs `x` (f32 `[N, ...]`, CPU) and targets `y`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// A short name used in messages and metadata (`digits`, `synthetic:spiral:...`, a file stem).
    pub name: String,
    /// Inputs, f32 `[N, ...]` on the CPU.
    pub x: Tensor,
    /// Targets, N rows.
    pub y: Targets,
    /// Classification or regression.
    pub task: Task,
    /// One name per input feature (the per-sample element count), when known.
    pub feature_names: Option<Vec<String>>,
}

/// A mini-batch: inputs and targets of the same rows.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Inputs `[B, ...]`.
    pub x: Tensor,
    /// Targets, B rows.
    pub y: Targets,
}

impl Batch {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Batch> {
        Ok(Batch {
            x: self.x.to_device(device)?,
            y: self.y.to_device(device)?,
        })
    }
}

/// The first non-finite value of a float tensor, with its flat index.
pub(crate) fn first_non_finite(t: &Tensor) -> Result<Option<(usize, f64)>> {
    let flat = t.flatten_all()?;
    if flat.dtype() == DType::F64 {
        let v = flat.to_vec1::<f64>()?;
        Ok(v.iter().position(|a| !a.is_finite()).map(|i| (i, v[i])))
    } else {
        let v = flat.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(v.iter()
            .position(|a| !a.is_finite())
            .map(|i| (i, v[i] as f64)))
    }
}

fn is_float(dtype: DType) -> bool {
    dtype.is_float()
}

fn is_int(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64
    )
}

fn u32_index(indices: &[usize]) -> Result<Tensor> {
    let v: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    Ok(Tensor::from_vec(v, indices.len(), &Device::Cpu)?)
}

/// Splits `counts` (rows per class) into per-class quotas summing to `k`, each the floor or
/// ceiling of its proportional share (largest remainders first, ties by class index).
fn proportional_quotas(counts: &[usize], k: usize) -> Vec<usize> {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return vec![0; counts.len()];
    }
    let exact: Vec<f64> = counts
        .iter()
        .map(|&c| c as f64 * k as f64 / n as f64)
        .collect();
    let mut quotas: Vec<usize> = exact
        .iter()
        .zip(counts)
        .map(|(e, &c)| (e.floor() as usize).min(c))
        .collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    let mut left = k.saturating_sub(quotas.iter().sum());
    // Largest remainders first; a second sweep covers any class still below its size.
    for &c in order.iter().chain(order.iter()) {
        if left == 0 {
            break;
        }
        if quotas[c] < counts[c] {
            quotas[c] += 1;
            left -= 1;
        }
    }
    quotas
}

fn check_unit_interval(
    field: &'static str,
    value: f64,
    lo_open: bool,
    hi_open: bool,
) -> Result<()> {
    let lo_ok = if lo_open { value > 0.0 } else { value >= 0.0 };
    let hi_ok = if hi_open { value < 1.0 } else { value <= 1.0 };
    if value.is_finite() && lo_ok && hi_ok {
        Ok(())
    } else {
        let range = format!(
            "{}0, 1{}",
            if lo_open { "(" } else { "[" },
            if hi_open { ")" } else { "]" }
        );
        Err(Error::config(field, value, format!("must lie in {range}")))
    }
}

impl Dataset {
    /// A validated dataset. Checks that there is at least one row ([`Error::EmptyDataset`]),
    /// that `x` is `[N, ...]` of rank ≥ 2 and `y` has N rows ([`Error::ShapeMismatch`]),
    /// that labels lie in `0..classes` ([`Error::LabelOutOfRange`], naming the row and label),
    /// that `Values` have `outputs` columns and `Soft` targets `classes` columns, that the
    /// targets suit the task, and that `x` and float targets are finite ([`Error::NonFinite`],
    /// naming `x` or `y` and the flat index). `x` becomes f32 on the CPU, labels u32, float
    /// targets f32 (a `[N]` `Values` tensor becomes `[N, 1]`).
    pub fn new(name: impl Into<String>, x: Tensor, y: Targets, task: Task) -> Result<Self> {
        let name = name.into();
        match task {
            Task::Classification { classes: 0 } => {
                return Err(Error::dataset(
                    &name,
                    "a classification task needs at least 1 class",
                ));
            }
            Task::Regression { outputs: 0 } => {
                return Err(Error::dataset(
                    &name,
                    "a regression task needs at least 1 output",
                ));
            }
            _ => {}
        }
        if x.rank() < 2 {
            if x.dims().first() == Some(&0) {
                return Err(Error::EmptyDataset { name });
            }
            return Err(Error::dataset(
                &name,
                format!(
                    "inputs `x` must be [N, features...] (rank >= 2), got shape {:?}",
                    x.dims()
                ),
            ));
        }
        let n = x.dim(0)?;
        if n == 0 {
            return Err(Error::EmptyDataset { name });
        }
        if !is_float(x.dtype()) {
            return Err(Error::DtypeMismatch {
                context: name,
                name: "x".into(),
                expected: "a float dtype (f16, bf16, f32, f64)".into(),
                found: format!("{:?}", x.dtype()).to_lowercase(),
            });
        }
        // Checked after the conversion, so values beyond f32's range count as infinite.
        let x = x
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        crate::model::check_finite(&x, "x", &name)?;
        let y_tensor = y.tensor();
        if y_tensor.rank() == 0 || y_tensor.dim(0)? != n {
            let mut expected = y_tensor.dims().to_vec();
            if expected.is_empty() {
                expected.push(n);
            } else {
                expected[0] = n;
            }
            return Err(Error::ShapeMismatch {
                context: format!("dataset `{name}`"),
                name: "y".into(),
                expected,
                found: y_tensor.dims().to_vec(),
            });
        }
        let y = match (task, y) {
            (Task::Classification { classes }, Targets::Classes(t)) => {
                if t.rank() != 1 {
                    return Err(Error::ShapeMismatch {
                        context: format!("dataset `{name}`"),
                        name: "y".into(),
                        expected: vec![n],
                        found: t.dims().to_vec(),
                    });
                }
                if !is_int(t.dtype()) {
                    return Err(Error::DtypeMismatch {
                        context: name,
                        name: "y".into(),
                        expected: "an integer dtype (u8, u32, i16, i32, i64)".into(),
                        found: format!("{:?}", t.dtype()).to_lowercase(),
                    });
                }
                let labels = t
                    .to_device(&Device::Cpu)?
                    .to_dtype(DType::I64)?
                    .to_vec1::<i64>()?;
                if let Some((row, &label)) = labels
                    .iter()
                    .enumerate()
                    .find(|&(_, &l)| l < 0 || l as u64 >= classes as u64)
                {
                    return Err(Error::LabelOutOfRange {
                        name,
                        label,
                        row,
                        classes,
                    });
                }
                let labels: Vec<u32> = labels.into_iter().map(|l| l as u32).collect();
                Targets::Classes(Tensor::from_vec(labels, n, &Device::Cpu)?)
            }
            (Task::Classification { classes }, Targets::Soft(t)) => {
                if t.dims() != [n, classes] {
                    return Err(Error::ShapeMismatch {
                        context: format!("dataset `{name}`"),
                        name: "y".into(),
                        expected: vec![n, classes],
                        found: t.dims().to_vec(),
                    });
                }
                Targets::Soft(Self::float_targets(&name, t)?)
            }
            (Task::Regression { outputs }, Targets::Values(t)) => {
                let t = if t.rank() == 1 { t.unsqueeze(1)? } else { t };
                if t.dims() != [n, outputs] {
                    return Err(Error::ShapeMismatch {
                        context: format!("dataset `{name}`"),
                        name: "y".into(),
                        expected: vec![n, outputs],
                        found: t.dims().to_vec(),
                    });
                }
                Targets::Values(Self::float_targets(&name, t)?)
            }
            (Task::Classification { .. }, Targets::Values(_)) => {
                return Err(Error::dataset(
                    name,
                    "a classification task needs class labels (or soft labels), got real-valued targets",
                ));
            }
            (Task::Regression { .. }, _) => {
                return Err(Error::dataset(
                    name,
                    "a regression task needs real-valued targets, got class labels",
                ));
            }
        };
        Ok(Dataset {
            name,
            x,
            y,
            task,
            feature_names: None,
        })
    }

    fn float_targets(name: &str, t: Tensor) -> Result<Tensor> {
        if !is_float(t.dtype()) {
            return Err(Error::DtypeMismatch {
                context: name.to_string(),
                name: "y".into(),
                expected: "a float dtype (f16, bf16, f32, f64)".into(),
                found: format!("{:?}", t.dtype()).to_lowercase(),
            });
        }
        let t = t
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        crate::model::check_finite(&t, "y", name)?;
        Ok(t)
    }

    /// The same dataset with one name per input feature; the count must equal the per-sample
    /// element count.
    pub fn with_feature_names(mut self, names: Vec<String>) -> Result<Self> {
        let want: usize = self.input_shape().iter().product();
        if names.len() != want {
            return Err(Error::dataset(
                &self.name,
                format!(
                    "{} feature names given for {want} input features",
                    names.len()
                ),
            ));
        }
        self.feature_names = Some(names);
        Ok(self)
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one sample, e.g. `[64]` or `[1, 8, 8]`.
    pub fn input_shape(&self) -> Vec<usize> {
        self.x.dims().get(1..).unwrap_or(&[]).to_vec()
    }

    /// The number of classes, for classification.
    pub fn classes(&self) -> Option<usize> {
        match self.task {
            Task::Classification { classes } => Some(classes),
            Task::Regression { .. } => None,
        }
    }

    /// The number of network outputs the data needs: classes or regression outputs.
    pub fn output_dim(&self) -> usize {
        self.task.output_dim()
    }

    /// Class labels as a vector, for datasets with hard labels (`None` otherwise).
    pub fn labels(&self) -> Result<Option<Vec<u32>>> {
        self.y.labels()
    }

    /// Rows per class (for hard labels; `None` otherwise).
    pub fn class_counts(&self) -> Result<Option<Vec<usize>>> {
        let (Some(labels), Some(k)) = (self.labels()?, self.classes()) else {
            return Ok(None);
        };
        let mut counts = vec![0; k];
        for l in labels {
            counts[l as usize] += 1;
        }
        Ok(Some(counts))
    }

    /// A dataset made of these rows (in this order, repeats allowed) without re-validation.
    fn rows(&self, indices: &[usize]) -> Result<Dataset> {
        let idx = u32_index(indices)?;
        Ok(Dataset {
            name: self.name.clone(),
            x: self.x.index_select(&idx, 0)?,
            y: self.y.index_select(&idx)?,
            task: self.task,
            feature_names: self.feature_names.clone(),
        })
    }

    /// The rows at `indices`, in that order (repeats allowed). Errors on an index ≥ N or an
    /// empty list.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let n = self.len();
        if indices.is_empty() {
            return Err(Error::EmptyDataset {
                name: format!("{} (empty subset)", self.name),
            });
        }
        if let Some((pos, &bad)) = indices.iter().enumerate().find(|&(_, &i)| i >= n) {
            return Err(Error::dataset(
                &self.name,
                format!("subset index {bad} (position {pos}) is out of range for {n} rows"),
            ));
        }
        self.rows(indices)
    }

    /// Picks `k` rows at random (stratified by class for hard labels: every class contributes
    /// the floor or ceiling of its proportional share). Returns (picked, rest), both shuffled.
    fn pick(&self, k: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
        let n = self.len();
        let mut rng = crate::rng::rng(seed);
        let (mut picked, mut rest) = match (self.labels()?, self.classes()) {
            (Some(labels), Some(classes)) => {
                let mut groups: Vec<Vec<usize>> = vec![Vec::new(); classes];
                for (i, &l) in labels.iter().enumerate() {
                    groups[l as usize].push(i);
                }
                let counts: Vec<usize> = groups.iter().map(Vec::len).collect();
                let quotas = proportional_quotas(&counts, k);
                let mut picked = Vec::with_capacity(k);
                let mut rest = Vec::with_capacity(n - k);
                for (group, q) in groups.iter_mut().zip(quotas) {
                    group.shuffle(&mut rng);
                    picked.extend_from_slice(&group[..q]);
                    rest.extend_from_slice(&group[q..]);
                }
                (picked, rest)
            }
            _ => {
                let mut all: Vec<usize> = (0..n).collect();
                all.shuffle(&mut rng);
                let rest = all.split_off(k);
                (all, rest)
            }
        };
        picked.shuffle(&mut rng);
        rest.shuffle(&mut rng);
        Ok((picked, rest))
    }

    /// A shuffled train/test split with `round(train_fraction * N)` training rows, stratified
    /// by class for classification (each class splits in the same proportion, up to rounding).
    /// `train_fraction` must lie in (0, 1) and leave both parts non-empty ([`Error::InvalidConfig`]).
    /// Both parts keep the dataset's name.
    pub fn split(&self, train_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        check_unit_interval("train_fraction", train_fraction, true, true)?;
        let n = self.len();
        let k = (train_fraction * n as f64).round() as usize;
        if k == 0 || k >= n {
            return Err(Error::config(
                "train_fraction",
                train_fraction,
                format!(
                    "leaves an empty part: {k} of the {n} rows of `{}` would go to training",
                    self.name
                ),
            ));
        }
        let (train, test) = self.pick(k, seed)?;
        Ok((self.rows(&train)?, self.rows(&test)?))
    }

    /// A random `round(fraction * N)`-row subset (stratified for classification), rows kept in
    /// their original order; `fraction` must lie in (0, 1] and select at least one row.
    /// `fraction = 1` returns the whole dataset.
    pub fn subset_fraction(&self, fraction: f64, seed: u64) -> Result<Dataset> {
        check_unit_interval("fraction", fraction, true, false)?;
        let n = self.len();
        let k = (fraction * n as f64).round() as usize;
        if k == 0 {
            return Err(Error::config(
                "fraction",
                fraction,
                format!("selects no row of the {n} rows of `{}`", self.name),
            ));
        }
        self.sample_rows(k, seed)
    }

    /// A 64-bit FNV-1a hash of the inputs and targets (values, shapes and order), to tell two
    /// data sets apart cheaply: a resumed run checks that it continues on the same rows.
    pub fn content_hash(&self) -> Result<u64> {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(PRIME);
            }
        };
        for t in [&self.x, self.y.tensor()] {
            for d in t.dims() {
                eat(&(*d as u64).to_le_bytes());
            }
            let values: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
            for v in values {
                eat(&v.to_le_bytes());
            }
        }
        Ok(h)
    }

    /// A random `n`-row subset (stratified by class for classification, so every class keeps its
    /// share), rows kept in their original order; `n ≥ len` returns the whole dataset and `n = 0`
    /// is an error. Never the first `n` rows: sorted files (iris is sorted by class) would give
    /// one class.
    pub fn sample_rows(&self, n: usize, seed: u64) -> Result<Dataset> {
        if n == 0 {
            return Err(Error::config("samples", 0, "must be at least 1"));
        }
        if n >= self.len() {
            return Ok(self.clone());
        }
        let (mut picked, _) = self.pick(n, seed)?;
        picked.sort_unstable();
        self.rows(&picked)
    }

    /// Label noise as in the MD-tree and loss-landscape-taxonomy papers: exactly
    /// `round(fraction * N)` rows, chosen uniformly without replacement, get a label drawn
    /// uniformly from the *other* classes. Classification with hard labels only; `fraction`
    /// in [0, 1].
    pub fn with_label_noise(&self, fraction: f64, seed: u64) -> Result<Dataset> {
        Ok(self.with_label_noise_rows(fraction, seed)?.0)
    }

    /// [`Dataset::with_label_noise`], also returning the (sorted) rows whose label changed.
    pub fn with_label_noise_rows(&self, fraction: f64, seed: u64) -> Result<(Dataset, Vec<usize>)> {
        check_unit_interval("label_noise", fraction, false, false)?;
        let (Some(mut labels), Some(classes)) = (self.labels()?, self.classes()) else {
            return Err(Error::dataset(
                &self.name,
                "label noise needs a classification dataset with hard class labels",
            ));
        };
        let n = self.len();
        let m = (fraction * n as f64).round() as usize;
        if m == 0 {
            return Ok((self.clone(), Vec::new()));
        }
        if classes < 2 {
            return Err(Error::dataset(
                &self.name,
                "label noise needs at least 2 classes",
            ));
        }
        let mut rng = crate::rng::rng(seed);
        let mut rows: Vec<usize> = (0..n).collect();
        rows.shuffle(&mut rng);
        rows.truncate(m);
        rows.sort_unstable();
        let k = classes as u32;
        for &r in &rows {
            let shift = rng.random_range(1..k);
            labels[r] = (labels[r] + shift) % k;
        }
        let mut d = self.clone();
        d.y = Targets::Classes(Tensor::from_vec(labels, n, &Device::Cpu)?);
        Ok((d, rows))
    }

    /// Per-feature mean and standard deviation over the rows (features are everything after
    /// dimension 0, so image sets get one value per pixel). Computed in f64; a zero standard
    /// deviation (a constant feature) becomes 1.
    pub fn standardizer(&self) -> Result<Standardizer> {
        Standardizer::fit(&self.x)
    }

    /// For regression, the per-output mean and standard deviation of the targets (a zero
    /// standard deviation becomes 1); `None` for classification.
    pub fn target_standardizer(&self) -> Result<Option<Standardizer>> {
        match &self.y {
            Targets::Values(t) => Ok(Some(Standardizer::fit(t)?)),
            _ => Ok(None),
        }
    }

    /// The same data with each sample reshaped to `shape` (e.g. digits `[N, 64]` to
    /// `[N, 1, 8, 8]` with `shape = [1, 8, 8]`). A leading `N` may be included
    /// (`[N, 1, 8, 8]`). The per-sample element count must match.
    pub fn reshape_inputs(&self, shape: &[usize]) -> Result<Dataset> {
        let n = self.len();
        let per: usize = self.input_shape().iter().product();
        let mut full = vec![n];
        if shape.iter().product::<usize>() == per && !shape.is_empty() {
            full.extend_from_slice(shape);
        } else if shape.len() >= 2 && shape[0] == n && shape[1..].iter().product::<usize>() == per {
            full.extend_from_slice(&shape[1..]);
        } else {
            return Err(Error::ShapeMismatch {
                context: format!(
                    "dataset `{}`: reshape needs {per} values per sample",
                    self.name
                ),
                name: "x".into(),
                expected: self.input_shape(),
                found: shape.to_vec(),
            });
        }
        let mut d = self.clone();
        d.x = self.x.reshape(full)?;
        Ok(d)
    }

    /// The batches of one pass over the data, each `batch_size` rows (the last may be smaller,
    /// or is dropped with `drop_last`). With `shuffle_seed` the rows come in a random order
    /// drawn from that seed; without, in dataset order. Every row appears exactly once
    /// (except the dropped tail). `batch_size = 0` is an error.
    pub fn batches(
        &self,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        drop_last: bool,
    ) -> Result<Batches<'_>> {
        if batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be at least 1"));
        }
        let order = shuffle_seed.map(|s| crate::rng::permutation(self.len(), s));
        Ok(Batches {
            data: self,
            order,
            batch_size,
            count: self.num_batches(batch_size, drop_last),
            next: 0,
        })
    }

    /// The number of batches [`Dataset::batches`] yields (0 for `batch_size = 0`).
    pub fn num_batches(&self, batch_size: usize, drop_last: bool) -> usize {
        if batch_size == 0 {
            return 0;
        }
        let n = self.len();
        if drop_last {
            n / batch_size
        } else {
            n.div_ceil(batch_size)
        }
    }

    /// All rows as one batch (on the CPU).
    pub fn full_batch(&self) -> Batch {
        Batch {
            x: self.x.clone(),
            y: self.y.clone(),
        }
    }
}

/// The batches of one pass over a [`Dataset`]; see [`Dataset::batches`].
#[derive(Debug)]
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Option<Vec<usize>>,
    batch_size: usize,
    count: usize,
    next: usize,
}

impl Batches<'_> {
    fn batch(&self, i: usize) -> Result<Batch> {
        let start = i * self.batch_size;
        let len = self.batch_size.min(self.data.len() - start);
        match &self.order {
            Some(order) => {
                let idx = u32_index(&order[start..start + len])?.to_device(self.data.x.device())?;
                Ok(Batch {
                    x: self.data.x.index_select(&idx, 0)?,
                    y: self.data.y.index_select(&idx)?,
                })
            }
            None => Ok(Batch {
                x: self.data.x.narrow(0, start, len)?,
                y: self.data.y.map(|t| t.narrow(0, start, len))?,
            }),
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let b = self.batch(self.next);
        self.next += 1;
        Some(b)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.count - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Per-feature standardisation `(x - mean) / std`, with `mean` and `std` of the per-sample shape.
#[derive(Debug, Clone)]
pub struct Standardizer {
    /// Per-feature mean, f32 of the per-sample shape.
    pub mean: Tensor,
    /// Per-feature standard deviation (1 where a feature is constant), f32 of the per-sample shape.
    pub std: Tensor,
}

impl Standardizer {
    /// Per-feature mean and standard deviation of `t` over its first axis (features are
    /// everything after it), in f64; a zero standard deviation (a constant feature) becomes 1.
    pub fn fit(t: &Tensor) -> Result<Standardizer> {
        let n = t.dims().first().copied().unwrap_or(0);
        let shape: Vec<usize> = t.dims().get(1..).unwrap_or(&[]).to_vec();
        let f: usize = shape.iter().product();
        let x = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut mean = vec![0f64; f];
        for row in x.chunks_exact(f.max(1)) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        for m in &mut mean {
            *m /= n.max(1) as f64;
        }
        let mut var = vec![0f64; f];
        for row in x.chunks_exact(f.max(1)) {
            for ((s, &v), &m) in var.iter_mut().zip(row).zip(&mean) {
                let d = v as f64 - m;
                *s += d * d;
            }
        }
        let std: Vec<f32> = var
            .iter()
            .map(|s| {
                let sd = (s / n.max(1) as f64).sqrt();
                if sd > 0.0 && sd.is_finite() {
                    sd as f32
                } else {
                    1.0
                }
            })
            .collect();
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        Ok(Standardizer {
            mean: Tensor::from_vec(mean, shape.as_slice(), &Device::Cpu)?,
            std: Tensor::from_vec(std, shape.as_slice(), &Device::Cpu)?,
        })
    }

    /// The dataset with standardised regression targets `(y − mean) / std` (inputs untouched;
    /// class labels are an error).
    pub fn apply_targets(&self, d: &Dataset) -> Result<Dataset> {
        let Targets::Values(y) = &d.y else {
            return Err(Error::dataset(
                &d.name,
                "only real-valued (regression) targets can be standardised",
            ));
        };
        let mut out = d.clone();
        out.y = Targets::Values(self.apply_tensor(y)?.to_dtype(DType::F32)?);
        Ok(out)
    }

    /// The dataset with standardised inputs (targets untouched). Errors if its per-sample shape
    /// differs from the standardiser's.
    pub fn apply(&self, d: &Dataset) -> Result<Dataset> {
        let mut out = d.clone();
        out.x = self.apply_tensor(&d.x)?.to_dtype(DType::F32)?;
        Ok(out)
    }

    /// `(x - mean) / std` for `x` of shape `[..., per-sample shape]`, on `x`'s device and dtype.
    pub fn apply_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let want = self.mean.dims();
        let dims = x.dims();
        if dims.len() < want.len() || &dims[dims.len() - want.len()..] != want {
            return Err(Error::ShapeMismatch {
                context: "standardizer".into(),
                name: "x".into(),
                expected: want.to_vec(),
                found: dims.to_vec(),
            });
        }
        let mean = self.mean.to_device(x.device())?.to_dtype(x.dtype())?;
        let std = self.std.to_device(x.device())?.to_dtype(x.dtype())?;
        Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }
}

/// The mixing weight λ ~ Beta(α, α) and the partner permutation that [`mixup`] draws for a
/// batch of `n` rows from `seed` (exposed so that callers and tests can reproduce it).
pub fn mixup_params(n: usize, alpha: f64, seed: u64) -> Result<(f64, Vec<usize>)> {
    use rand_distr::Distribution;
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(Error::config("mixup_alpha", alpha, "must be > 0"));
    }
    let mut rng = crate::rng::rng(seed);
    let beta = rand_distr::Beta::new(alpha, alpha)
        .map_err(|e| Error::config("mixup_alpha", alpha, e.to_string()))?;
    let lambda: f64 = beta.sample(&mut rng);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    Ok((lambda, perm))
}

/// Mixup (Zhang et al., 2018): one λ ~ Beta(α, α) per batch and a random partner permutation π
/// of the batch (see [`mixup_params`]); inputs become `λ x + (1 - λ) x[π]`. Class labels become
/// soft one-hot mixtures `λ e_y + (1 - λ) e_{y[π]}` (f32 `[B, classes]`, rows sum to 1); soft
/// labels and regression values are mixed linearly. Works on the batch's device.
/// `alpha ≤ 0` is an error.
pub fn mixup(batch: &Batch, alpha: f64, classes: usize, seed: u64) -> Result<Batch> {
    let n = batch.len();
    let (lambda, perm) = mixup_params(n, alpha, seed)?;
    let dev = batch.x.device();
    let idx = u32_index(&perm)?.to_device(dev)?;
    let mix = |t: &Tensor| -> Result<Tensor> {
        let partner = t.index_select(&idx.to_device(t.device())?, 0)?;
        Ok((t.affine(lambda, 0.0)? + partner.affine(1.0 - lambda, 0.0)?)?)
    };
    let x = mix(&batch.x)?;
    let y = match &batch.y {
        Targets::Classes(t) => {
            let labels = t.to_dtype(DType::U32)?.to_vec1::<u32>()?;
            if let Some((row, &l)) = labels
                .iter()
                .enumerate()
                .find(|&(_, &l)| l as usize >= classes)
            {
                return Err(Error::LabelOutOfRange {
                    name: "mixup batch".into(),
                    label: l as i64,
                    row,
                    classes,
                });
            }
            let mut soft = vec![0f32; n * classes];
            for (i, &l) in labels.iter().enumerate() {
                soft[i * classes + l as usize] += lambda as f32;
                soft[i * classes + labels[perm[i]] as usize] += (1.0 - lambda) as f32;
            }
            Targets::Soft(
                Tensor::from_vec(soft, (n, classes), &Device::Cpu)?.to_device(t.device())?,
            )
        }
        Targets::Soft(t) => Targets::Soft(mix(t)?),
        Targets::Values(t) => Targets::Values(mix(t)?),
    };
    Ok(Batch { x, y })
}

/// Where [`load`] looks for things, and the seed for synthetic data.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The directory of fetched hub datasets; `None` means [`data_dir()`].
    pub data_dir: Option<PathBuf>,
    /// Seed for synthetic datasets (a `seed=` key in the source overrides it).
    pub seed: u64,
}

/// The directory of fetched datasets: `$TERRAIN_DATA_DIR`, else `$XDG_CACHE_HOME/terrain/datasets`,
/// else `$HOME/.cache/terrain/datasets` (else `.terrain/datasets` in the working directory).
pub fn data_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("TERRAIN_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("terrain").join("datasets");
    }
    if let Some(h) = var("HOME") {
        return PathBuf::from(h)
            .join(".cache")
            .join("terrain")
            .join("datasets");
    }
    PathBuf::from(".terrain").join("datasets")
}

/// Whether two source strings name the same data set: the same file (after resolving paths), or
/// the same name as [`load`] reads names (case, `_` and `-` alike).
pub fn same_source(a: &str, b: &str) -> bool {
    let (pa, pb) = (Path::new(a.trim()), Path::new(b.trim()));
    if pa.is_file() || pb.is_file() {
        return match (pa.canonicalize(), pb.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        };
    }
    normalise_name(a) == normalise_name(b)
}

/// A data-set name as every source compares it: trimmed, lowercase, `_` read as `-`.
pub(crate) fn normalise_name(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('_', "-")
}

/// The hub name and split (`train` or `test`) of a source such as `mnist` or `fashion-mnist:test`.
fn hub_source(source: &str) -> Option<std::result::Result<(&'static str, &'static str), String>> {
    let norm = normalise_name(source);
    let (name, split) = match norm.split_once(':') {
        Some((n, s)) => (n.to_string(), Some(s.to_string())),
        None => (norm, None),
    };
    let &hub = HUB_NAMES.iter().find(|&&h| h == name)?;
    Some(match split.as_deref() {
        None | Some("train") => Ok((hub, "train")),
        Some("test") => Ok((hub, "test")),
        Some(other) => Err(format!(
            "unknown split `{other}` of hub dataset `{hub}` (use `{hub}` or `{hub}:test`)"
        )),
    })
}

/// The file a fetched hub dataset lives in: `{data_dir}/{name}-{split}.safetensors`.
pub fn hub_path(data_dir: &Path, name: &str, split: &str) -> PathBuf {
    data_dir.join(format!("{name}-{split}.safetensors"))
}

/// Resolves a dataset source string, in this order:
/// 1. a built-in name from [`builtin::NAMES`] (case-insensitive, `-` and `_` alike);
/// 2. `synthetic:KIND[:key=value,...]` ([`synthetic::parse`], seeded from `opts.seed`);
/// 3. a path to an existing `.safetensors` file ([`file::load`]);
/// 4. a hub name from [`HUB_NAMES`], optionally with `:test` (default `:train`), read from
///    `{data_dir}/{name}-{split}.safetensors`; if that file is missing the error says to run
///    `cargo xtask datasets fetch NAME`.
///
/// Anything else is an [`Error::Dataset`] listing the known names.
pub fn load(source: &str, opts: &LoadOptions) -> Result<Dataset> {
    let norm = normalise_name(source);
    if builtin::NAMES.contains(&norm.as_str()) {
        return builtin::load(&norm);
    }
    if norm.starts_with("synthetic") && (norm == "synthetic" || norm.starts_with("synthetic:")) {
        let cfg = synthetic::parse(source.trim(), opts.seed)?;
        return synthetic::generate(&cfg);
    }
    let path = Path::new(source);
    if path.is_file() {
        return file::load(path);
    }
    if let Some(hub) = hub_source(source) {
        let (name, split) = hub.map_err(|reason| Error::dataset(source, reason))?;
        let dir = opts.data_dir.clone().unwrap_or_else(data_dir);
        let file = hub_path(&dir, name, split);
        if file.is_file() {
            let mut d = file::load(&file)?;
            if split == "test" && !d.name.ends_with(":test") {
                d.name = format!("{name}:test");
            }
            return Ok(d);
        }
        return Err(Error::NotFetched {
            name: name.to_string(),
            path: file,
        });
    }
    if source.ends_with(".safetensors") || source.contains('/') || source.contains('\\') {
        // Looks like a path: say that the file is missing rather than that the name is unknown.
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such dataset file"),
        ));
    }
    Err(Error::dataset(
        source,
        format!(
            "unknown dataset; known: built-in {}; synthetic:{{{}}}[:key=value,...]; hub {} (once \
             fetched, optionally NAME:test); or a path to a .safetensors file with tensors `x` and `y`",
            builtin::NAMES.join(", "),
            synthetic::KINDS.join("|"),
            HUB_NAMES.join(", "),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize, classes: usize) -> Dataset {
        let x: Vec<f32> = (0..n * 3).map(|i| i as f32).collect();
        let y: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
        Dataset::new(
            "toy",
            Tensor::from_vec(x, (n, 3), &Device::Cpu).unwrap(),
            Targets::Classes(Tensor::from_vec(y, n, &Device::Cpu).unwrap()),
            Task::Classification { classes },
        )
        .unwrap()
    }

    #[test]
    fn quotas_sum_to_k_and_stay_proportional() {
        let q = proportional_quotas(&[10, 20, 30], 30);
        assert_eq!(q, vec![5, 10, 15]);
        let q = proportional_quotas(&[3, 3, 1], 5);
        assert_eq!(q.iter().sum::<usize>(), 5);
        assert!(q.iter().zip([3, 3, 1]).all(|(&a, b)| a <= b));
        assert_eq!(proportional_quotas(&[1, 1], 2), vec![1, 1]);
    }

    #[test]
    fn batches_without_shuffle_are_in_order() {
        let d = toy(10, 2);
        let xs: Vec<Vec<f32>> = d
            .batches(4, None, false)
            .unwrap()
            .map(|b| {
                b.unwrap()
                    .x
                    .narrow(1, 0, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            xs,
            vec![
                vec![0., 3., 6., 9.],
                vec![12., 15., 18., 21.],
                vec![24., 27.]
            ]
        );
    }

    #[test]
    fn hub_sources_parse() {
        assert_eq!(hub_source("mnist"), Some(Ok(("mnist", "train"))));
        assert_eq!(
            hub_source("Fashion_MNIST:test"),
            Some(Ok(("fashion-mnist", "test")))
        );
        assert!(matches!(hub_source("cifar10:val"), Some(Err(_))));
        assert_eq!(hub_source("svhn"), None);
    }
}
