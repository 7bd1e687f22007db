//! # terrain-testkit
//!
//! What terrain's tests share, so they stop copying it: tiny models in f64 on the CPU, small
//! seeded data sets (built-in rows mixed across classes, Gaussian images, soft labels), dense
//! oracles (random symmetric matrices of a chosen spectrum, relative errors, z-scores) and
//! [`test_device!`], which runs one test body on the CPU and, in builds with the `cuda` feature,
//! on the first GPU (candle's `test_device!` pattern).
//!
//! A dev-dependency only: nothing here is part of terrain's libraries.
//!
//! ```
//! use terrain_testkit::{iris, model, orthogonal, with_spectrum};
//!
//! let m = model("mlp:4-5-3:tanh", 0);
//! let data = iris(30);
//! assert_eq!(data.len(), 30);
//! assert_eq!(data.class_counts().unwrap().unwrap(), [10, 10, 10]);
//! let a = with_spectrum(&[3.0, 1.0, -2.0], 7);
//! let q = orthogonal(3, 7);
//! assert_eq!((a.len(), q.len()), (9, 9));
//! # let _ = m;
//! ```
#![warn(missing_docs)]

use candle_core::{DType, Device, Tensor};
use rand::Rng as _;
use terrain_curvature::{DenseOperator, vector};
use terrain_model::{
    ArchSpec, Model,
    data::{self, Dataset, Targets, Task},
    loss::LossKind,
    rng,
};

/// Runs the test body `$body` (a function taking `&candle_core::Device` and returning a
/// `Result`) as `$cpu` on the CPU and, when the calling crate is built with its `cuda` feature,
/// as `$cuda` on CUDA device 0.
///
/// ```ignore
/// fn hvp_is_symmetric(device: &Device) -> terrain_curvature::Result<()> { ... }
/// terrain_testkit::test_device!(hvp_is_symmetric, hvp_is_symmetric_cpu, hvp_is_symmetric_cuda);
/// ```
#[macro_export]
macro_rules! test_device {
    ($body:ident, $cpu:ident, $cuda:ident) => {
        #[test]
        fn $cpu() {
            $body(&candle_core::Device::Cpu).unwrap();
        }

        #[cfg(feature = "cuda")]
        #[test]
        fn $cuda() {
            let device = candle_core::Device::new_cuda(0).expect("a CUDA device");
            $body(&device).unwrap();
        }
    };
}

/// Runs `f` in a rayon pool of exactly `threads` threads, whatever `RAYON_NUM_THREADS` says
/// (CI runs the suite with one thread; parallel paths are tested in pools of their own).
pub fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool for the test")
        .install(f)
}

/// A freshly initialised f64 model on the CPU (PyTorch's initialisation from `seed`).
pub fn model(spec: &str, seed: u64) -> Model {
    model_on(spec, DType::F64, &Device::Cpu, seed)
}

/// A freshly initialised model of `dtype` on `device`.
pub fn model_on(spec: &str, dtype: DType, device: &Device, seed: u64) -> Model {
    let spec = spec
        .parse()
        .unwrap_or_else(|e| panic!("test spec `{spec}`: {e}"));
    Model::new(spec, dtype, device, seed).expect("a valid test model")
}

/// `n` rows of iris mixed across classes: every fifth row, wrapping around (iris is sorted by
/// class, so the first rows would be one class). Deterministic.
pub fn iris(n: usize) -> Dataset {
    let d = data::builtin::load("iris").expect("iris is built in");
    let idx: Vec<usize> = (0..n).map(|i| (i * 5) % d.len()).collect();
    d.subset(&idx).expect("rows of iris")
}

/// The first `n` rows of the digits (the file is not sorted by class).
pub fn digits(n: usize) -> Dataset {
    let d = data::builtin::load("digits").expect("digits are built in");
    d.subset(&(0..n).collect::<Vec<_>>())
        .expect("rows of the digits")
}

/// Seeded Gaussian images `[n, C, H, W]` (f32) with labels `i % classes`: no ties inside
/// max-pool windows, unlike the digits' flat zero regions, where finite differences cross kinks.
pub fn images(n: usize, shape: [usize; 3], classes: usize, seed: u64) -> Dataset {
    let x = rng::normal_tensor(
        &[n, shape[0], shape[1], shape[2]],
        seed,
        DType::F32,
        &Device::Cpu,
    )
    .expect("a normal tensor");
    let y: Vec<u32> = (0..n as u32).map(|i| i % classes as u32).collect();
    Dataset::new(
        "images",
        x,
        Targets::Classes(Tensor::new(y, &Device::Cpu).expect("labels")),
        Task::Classification { classes },
    )
    .expect("a valid image set")
}

/// `n` seeded Gaussian inputs of `spec`'s input shape (f32), with labels `(7i + 1) mod K` for
/// cross-entropy or seeded Gaussian targets for MSE: the data of the derivative cases the sweep
/// tests share.
pub fn case_data(spec: &ArchSpec, n: usize, loss: LossKind) -> Dataset {
    let dev = Device::Cpu;
    let mut shape = vec![n];
    shape.extend(spec.input_shape());
    let x = rng::normal_tensor(&shape, 1, DType::F32, &dev).expect("a normal tensor");
    let k = spec.output_dim();
    let (y, task) = match loss {
        LossKind::Ce => {
            let labels: Vec<u32> = (0..n).map(|i| ((i * 7 + 1) % k) as u32).collect();
            (
                Targets::Classes(Tensor::from_vec(labels, n, &dev).expect("labels")),
                Task::Classification { classes: k },
            )
        }
        LossKind::Mse => (
            Targets::Values(rng::normal_tensor(&[n, k], 1001, DType::F32, &dev).expect("targets")),
            Task::Regression { outputs: k },
        ),
    };
    Dataset::new("derivative-case", x, y, task).expect("a valid case")
}

/// The rows of `d` with random soft labels over its classes (each row sums to 1, as mixup makes
/// them), drawn from `seed`.
pub fn soft_labels(d: &Dataset, seed: u64) -> Dataset {
    let classes = d.classes().expect("a classification data set");
    let n = d.len();
    let mut r = rng::rng(seed);
    let mut q: Vec<f32> = (0..n * classes)
        .map(|_| r.random_range(0.05..1.0))
        .collect();
    for row in q.chunks_mut(classes) {
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    let y = Tensor::from_vec(q, (n, classes), &Device::Cpu).expect("soft labels");
    Dataset::new("soft", d.x.clone(), Targets::Soft(y), d.task).expect("a valid soft set")
}

/// Gives every BatchNorm layer non-trivial running statistics and affine parameters (γ ≠ 1,
/// β ≠ 0), so that eval mode and the γ–x cross terms are exercised. f64 models on the CPU.
pub fn randomize_batch_norm(m: &Model, seed: u64) {
    let mut r = rng::rng(seed);
    let mut uniform = |lo: f64, hi: f64, n: usize| -> Vec<f64> {
        (0..n).map(|_| r.random_range(lo..hi)).collect()
    };
    let set = |var: &candle_core::Var, values: Vec<f64>| {
        var.set(&Tensor::new(values, &Device::Cpu).expect("values"))
            .expect("an f64 CPU vector of the same length");
    };
    for b in m.buffers() {
        let n = b.var.elem_count();
        let v = if b.name.ends_with("running_mean") {
            uniform(-0.5, 0.5, n)
        } else {
            uniform(0.5, 2.0, n)
        };
        set(&b.var, v);
    }
    for b in m
        .buffers()
        .iter()
        .filter(|b| b.name.ends_with("running_mean"))
    {
        let prefix = b.name.trim_end_matches("running_mean");
        for p in m.params() {
            if p.name == format!("{prefix}weight") {
                set(&p.var, uniform(0.5, 1.5, p.var.elem_count()));
            } else if p.name == format!("{prefix}bias") {
                set(&p.var, uniform(-0.3, 0.3, p.var.elem_count()));
            }
        }
    }
}

/// `n` standard normal values from `seed`.
pub fn gaussian(n: usize, seed: u64) -> Vec<f64> {
    let v = vector::random(n, vector::Probe::Gaussian, seed, DType::F64, &Device::Cpu)
        .expect("a random vector");
    vector::to_vec(&v).expect("f64 values")
}

/// A seeded random orthogonal matrix (Gram–Schmidt, twice, on Gaussian columns), row-major.
pub fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(n);
    for j in 0..n {
        let mut c = gaussian(n, seed * 1000 + j as u64);
        for _ in 0..2 {
            for q in &cols {
                let d: f64 = c.iter().zip(q).map(|(a, b)| a * b).sum();
                for (ci, qi) in c.iter_mut().zip(q) {
                    *ci -= d * qi;
                }
            }
        }
        let nrm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
        cols.push(c.into_iter().map(|x| x / nrm).collect());
    }
    let mut q = vec![0.0; n * n];
    for (j, c) in cols.iter().enumerate() {
        for i in 0..n {
            q[i * n + j] = c[i];
        }
    }
    q
}

/// `Q diag(values) Qᵀ` for a seeded random orthogonal `Q`, row-major (exactly symmetric).
pub fn with_spectrum(values: &[f64], seed: u64) -> Vec<f64> {
    let n = values.len();
    let q = orthogonal(n, seed);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..n)
                .map(|k| q[i * n + k] * values[k] * q[j * n + k])
                .sum();
            a[i * n + j] = s;
            a[j * n + i] = s;
        }
    }
    a
}

/// A row-major `n × n` f64 matrix as an operator on the CPU.
pub fn dense_operator(a: &[f64], n: usize) -> DenseOperator {
    DenseOperator::from_rows(a, n, DType::F64, &Device::Cpu).expect("a square matrix")
}

/// `‖a − b‖ / ‖b‖` of two tensors.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let d = vector::norm(&a.sub(b).expect("same shape")).expect("a norm");
    d / vector::norm(b).expect("a norm").max(1e-300)
}

/// `|a − b| / |b|`.
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// The largest absolute value.
pub fn max_abs(v: impl IntoIterator<Item = f64>) -> f64 {
    v.into_iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// The mean and the sample standard deviation.
pub fn mean_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v.sqrt())
}
