//! `cargo xtask bench curvature`: the cost of curvature products relative to a plain gradient,
//! measured in one run on the same model and batch, with peak heap memory.
//!
//! Times are medians over `--reps` repetitions after `--warmup` untimed ones. Ratios to the
//! gradient (forward + backward) of the same run are what to compare across machines.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use terrain_curvature::{
    Curvature, HessianConfig, HessianOperator, LinearOperator,
    diagonal::DiagonalConfig,
    propagation::{CpVariant, becker_lecun, curvature_propagation},
    vector::{self, Probe},
};
use terrain_model::{
    Model,
    data::{Dataset, Targets, Task},
    loss::LossKind,
};

use crate::alloc;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to benchmark.
    #[arg(value_enum)]
    suite: Suite,
    /// Timed repetitions per operation (the median is reported).
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Untimed warm-up repetitions per operation.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Rows in the batch.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Floating-point type: f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Architectures to measure (default: mlp:784-256-256-10:relu and cnn:1x28x28-16-32-10:relu).
    #[arg(long = "model", value_name = "SPEC")]
    models: Vec<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// Benchmark suites.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Suite {
    /// Gradient, Hessian-vector and Gauss–Newton products, curvature-propagation diagonal
    /// samples, on an MLP 784-256-256-10 and the CNN 1x28x28-16-32-10.
    Curvature,
}

/// One measured operation.
#[derive(Debug, serde::Serialize)]
struct Row {
    model: String,
    operation: String,
    median_ms: f64,
    min_ms: f64,
    ratio_to_gradient: f64,
    peak_mib: f64,
    peak_ratio_to_gradient: f64,
}

/// Runs the benchmark.
pub fn run(args: Args) -> Result<()> {
    terrain_model::autodiff::ensure_second_order()?;
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "f64" => DType::F64,
        other => anyhow::bail!("invalid --dtype `{other}`: expected f32 or f64"),
    };
    anyhow::ensure!(args.reps > 0, "--reps must be at least 1");
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let Suite::Curvature = args.suite;
    eprintln!(
        "profile: {}, threads: {}, dtype: {:?}, batch: {}, reps: {} (+{} warm-up)",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        candle_core::utils::get_num_threads(),
        dtype,
        args.batch,
        args.reps,
        args.warmup
    );
    let mut rows = Vec::new();
    let models = if args.models.is_empty() {
        vec![
            "mlp:784-256-256-10:relu".to_string(),
            "cnn:1x28x28-16-32-10:relu".to_string(),
        ]
    } else {
        args.models.clone()
    };
    for spec in &models {
        rows.extend(bench_model(spec, dtype, &args)?);
    }
    print_table(&rows);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Random inputs (seeded) with labels: the benchmark needs no downloaded data.
fn random_batch(spec: &terrain_model::ArchSpec, n: usize) -> Result<Dataset> {
    let mut shape = vec![n];
    shape.extend(spec.input_shape());
    let x = Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?;
    let classes = spec.output_dim();
    let y: Vec<u32> = (0..n as u32).map(|i| i % classes as u32).collect();
    Ok(Dataset::new(
        "bench",
        x,
        Targets::Classes(Tensor::new(y, &Device::Cpu)?),
        Task::Classification { classes },
    )?)
}

fn time_op(args: &Args, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, usize)> {
    for _ in 0..args.warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(args.reps);
    let mut peak = 0;
    for _ in 0..args.reps {
        let t = Instant::now();
        let (r, p) = alloc::peak_during(&mut f);
        r?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        peak = peak.max(p);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0], peak))
}

fn bench_model(spec: &str, dtype: DType, args: &Args) -> Result<Vec<Row>> {
    let arch: terrain_model::ArchSpec = spec.parse()?;
    let data = random_batch(&arch, args.batch)?;
    let model = Model::new(arch, dtype, &Device::Cpu, 0)?;
    let config = HessianConfig {
        batch_size: args.batch,
        ..HessianConfig::new(LossKind::Ce)
    };
    let h = HessianOperator::new(&model, &data, config.clone())?;
    let ggn = HessianOperator::new(
        &model,
        &data,
        HessianConfig {
            curvature: Curvature::GaussNewton,
            ..config
        },
    )?;
    let v = vector::random(h.dim(), Probe::Rademacher, 1, dtype, &Device::Cpu)?;
    let mut measured: Vec<(String, (f64, f64, usize))> = Vec::new();
    measured.push((
        "loss (forward)".into(),
        time_op(args, || {
            h.loss()?;
            Ok(())
        })?,
    ));
    measured.push((
        "gradient".into(),
        time_op(args, || {
            h.loss_and_gradient()?;
            Ok(())
        })?,
    ));
    measured.push((
        "Hessian-vector product".into(),
        time_op(args, || {
            h.apply(&v)?;
            Ok(())
        })?,
    ));
    measured.push((
        "Gauss-Newton-vector product".into(),
        time_op(args, || {
            ggn.apply(&v)?;
            Ok(())
        })?,
    ));
    for (variant, label) in [(CpVariant::S, "CP-S"), (CpVariant::Tu, "CP-T/U")] {
        for k in [1usize, 8] {
            let cfg = DiagonalConfig {
                samples: k,
                samples_per_sweep: k,
                ..DiagonalConfig::new(k)
            };
            let (median, min, peak) = time_op(args, || {
                curvature_propagation(&h, variant, &cfg)?;
                Ok(())
            })?;
            // Per sample: K samples share one forward pass and gradient sweep.
            measured.push((
                format!("{label} diagonal, K={k} (per sample)"),
                (median / k as f64, min / k as f64, peak),
            ));
        }
    }
    measured.push((
        "Becker-LeCun diagonal".into(),
        time_op(args, || {
            becker_lecun(&h)?;
            Ok(())
        })?,
    ));
    let (grad_ms, _, grad_peak) = measured[1].1;
    Ok(measured
        .into_iter()
        .map(|(operation, (median, min, peak))| Row {
            model: spec.to_string(),
            operation,
            median_ms: median,
            min_ms: min,
            ratio_to_gradient: median / grad_ms,
            peak_mib: peak as f64 / (1024.0 * 1024.0),
            peak_ratio_to_gradient: peak as f64 / grad_peak.max(1) as f64,
        })
        .collect())
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<28} {:<30} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "model", "operation", "median ms", "min ms", "× grad", "peak MiB", "× grad"
    );
    for r in rows {
        println!(
            "{:<28} {:<30} {:>10.2} {:>10.2} {:>8.2} {:>10.1} {:>8.2}",
            r.model,
            r.operation,
            r.median_ms,
            r.min_ms,
            r.ratio_to_gradient,
            r.peak_mib,
            r.peak_ratio_to_gradient
        );
    }
}
