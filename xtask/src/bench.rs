//! `cargo xtask bench curvature`: the cost of curvature products relative to a plain gradient,
//! measured in one run on the same model and batch, with peak heap memory.
//!
//! Times are medians over `--reps` repetitions after `--warmup` untimed ones. Ratios to the
//! gradient (forward + backward) of the same run are what to compare across machines.
//!
//! Products go through the hand-written sweep (`HvpMethod::Rop`, the default) and, in rows marked
//! `(autodiff)`, through candle's double backward, so one run gives both and their ratio. `--device
//! cuda[:N]` (a build with the `cuda` feature) measures the same rows on a GPU.
//!
//! Unless `--no-pinned`, each model also gets rows measured in child processes of this binary:
//! its gradient and Hessian-vector product pinned to one core (the affinity mask set between
//! fork and exec, default thread settings, as under `taskset -c 0`), with one thread unpinned
//! (`--threads 1`), and pinned with the thread count left to candle alone (what terrain did
//! before `terrain_model::threads`). A line after the table gives pinned / one-thread.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use terrain_curvature::{
    Curvature, HessianConfig, HessianOperator, HvpMethod, LinearOperator,
    diagonal::{self, DiagonalConfig},
    propagation::{CpVariant, becker_lecun, curvature_propagation},
    vector::{self, Probe},
};
use terrain_model::{
    Model,
    data::{Dataset, Targets, Task},
    loss::LossKind,
};

use crate::alloc;
use terrain_report::Table;

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
    /// Rows in the batch [default: 256; 128 for the ResNet-18 row].
    #[arg(long)]
    batch: Option<usize>,
    /// Where to measure: cpu or cuda[:N] (CUDA needs a build with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Floating-point type: f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: terrain_model::device::FloatType,
    /// Architectures to measure (default: mlp:784-256-256-10:relu, cnn:1x28x28-16-32-10:relu and
    /// resnet18:3x32x32:w16:10).
    #[arg(long = "model", value_name = "SPEC")]
    models: Vec<String>,
    /// Also write the rows to this file: .json, .csv or .parquet.
    #[arg(long, alias = "json", value_name = "FILE")]
    out: Option<std::path::PathBuf>,
    /// Skip the rows measured in child processes (pinned to one core, one thread).
    #[arg(long)]
    no_pinned: bool,
    /// Internal: measure only the gradient and the Hessian-vector product and print the rows as
    /// JSON on stdout (how a child process reports the pinned and one-thread rows).
    #[arg(long, hide = true)]
    child: bool,
}

/// Benchmark suites.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Suite {
    /// Gradient, Hessian-vector and Gauss–Newton products, curvature-propagation diagonal
    /// samples, on an MLP 784-256-256-10 and the CNN 1x28x28-16-32-10.
    Curvature,
    /// One training step's gradient under each terrain-robust objective over ERM's (SAM,
    /// SoftAD and the other per-example objectives), on an MLP 784-256-256-10 and the SoftAD
    /// paper's MLP.
    Objectives,
    /// A 51×51 loss surface against 2601 plain loss evaluations over the same data, on the
    /// digits MLP 64-32-10 and the CNN 1x8x8-16-32-10 (`bench_surface.rs`).
    Surface,
}

/// One measured operation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
    let dtype = args.dtype.dtype();
    anyhow::ensure!(args.reps > 0, "--reps must be at least 1");
    anyhow::ensure!(args.batch != Some(0), "--batch must be at least 1");
    if let Suite::Objectives = args.suite {
        return crate::bench_objectives::run(
            args.reps,
            args.warmup,
            args.batch.unwrap_or(256),
            dtype,
            &args.models,
            args.out.as_deref(),
        );
    }
    if let Suite::Surface = args.suite {
        return crate::bench_surface::run(
            &args.models,
            args.batch.unwrap_or(256),
            args.dtype,
            args.out.as_deref(),
        );
    }
    let device = terrain_model::device::parse_device(&args.device)?;
    eprintln!(
        "{}profile: {}, device: {}, threads: {} (rayon pool {}), dtype: {:?}, batch: {}, reps: {} (+{} warm-up)",
        if args.child { "child: " } else { "" },
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        args.device,
        candle_core::utils::get_num_threads(),
        terrain_model::threads::pool_threads(),
        dtype,
        args.batch
            .map_or("256 (ResNet-18: 128)".to_string(), |b| b.to_string()),
        args.reps,
        args.warmup
    );
    let mut rows = Vec::new();
    let models = if args.models.is_empty() {
        vec![
            "mlp:784-256-256-10:relu".to_string(),
            "cnn:1x28x28-16-32-10:relu".to_string(),
            RESNET.to_string(),
        ]
    } else {
        args.models.clone()
    };
    let mut ratios = Vec::new();
    for spec in &models {
        let own = bench_model(spec, dtype, &device, &args)?;
        if !args.child {
            ratios.push(sweep_summary(spec, &own));
        }
        if args.child || args.no_pinned || !device.is_cpu() {
            rows.extend(own);
            continue;
        }
        let extra = child_rows(spec, &args, &own)?;
        ratios.push(pinned_summary(spec, &own, &extra));
        rows.extend(own);
        rows.extend(extra);
    }
    if args.child {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    print_table(&rows)?;
    for line in ratios.iter().flatten() {
        println!("{line}");
    }
    if let Some(path) = &args.out {
        Table::from_rows(&rows)?.save(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The MD tree's model family, measured at batch 128 unless `--batch` says otherwise.
const RESNET: &str = "resnet18:3x32x32:w16:10";

/// The batch of `spec`: `--batch`, else 128 for ResNets and 256 otherwise.
fn batch_of(spec: &str, args: &Args) -> usize {
    args.batch
        .unwrap_or(if spec.starts_with("resnet") { 128 } else { 256 })
}

/// Random inputs (seeded) with labels: the benchmark needs no downloaded data.
fn random_batch(spec: &terrain_model::ArchSpec, n: usize) -> Result<Dataset> {
    let mut shape = vec![n];
    shape.extend(spec.input_shape());
    let x = terrain_model::rng::normal_tensor(&shape, 0, DType::F32, &Device::Cpu)?;
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

fn bench_model(spec: &str, dtype: DType, device: &Device, args: &Args) -> Result<Vec<Row>> {
    let arch: terrain_model::ArchSpec = spec.parse()?;
    let batch = batch_of(spec, args);
    let data = random_batch(&arch, batch)?;
    let model = Model::new(arch, dtype, device, 0)?;
    let config = HessianConfig {
        batch_size: batch,
        ..HessianConfig::new(LossKind::Ce)
    };
    let h = HessianOperator::new(&model, &data, config.clone())?;
    let ggn = HessianOperator::new(
        &model,
        &data,
        HessianConfig {
            curvature: Curvature::GaussNewton,
            ..config.clone()
        },
    )?;
    let autodiff = |curvature| {
        HessianOperator::new(
            &model,
            &data,
            HessianConfig {
                curvature,
                hvp: HvpMethod::DoubleBackward,
                ..config.clone()
            },
        )
    };
    // The same engine on its candle-tensor backend (what runs off the CPU).
    let h_candle = HessianOperator::new(&model, &data, config.clone())?
        .with_backend(terrain_model::engine::Backend::Tensor);
    let (h_ad, ggn_ad) = (
        autodiff(Curvature::Hessian)?,
        autodiff(Curvature::GaussNewton)?,
    );
    let v = vector::random(h.dim(), Probe::Rademacher, 1, dtype, device)?;
    let vs: Vec<Tensor> = (0..8)
        .map(|s| vector::random(h.dim(), Probe::Rademacher, 10 + s, dtype, device))
        .collect::<terrain_curvature::Result<_>>()?;
    let mut measured: Vec<(String, (f64, f64, usize))> = Vec::new();
    if !args.child {
        measured.push((
            "loss (forward)".into(),
            time_op(args, || {
                h.loss()?;
                Ok(())
            })?,
        ));
    }
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
    if args.child {
        return Ok(rows(spec, measured));
    }
    measured.push((
        "gradient (candle-tensor sweep)".into(),
        time_op(args, || {
            h_candle.loss_and_gradient()?;
            Ok(())
        })?,
    ));
    measured.push((
        "HVP (candle-tensor sweep)".into(),
        time_op(args, || {
            h_candle.apply(&v)?;
            Ok(())
        })?,
    ));
    measured.push((
        "loss (candle forward)".into(),
        time_op(args, || {
            h_ad.loss()?;
            Ok(())
        })?,
    ));
    measured.push((
        "gradient (autodiff)".into(),
        time_op(args, || {
            h_ad.loss_and_gradient()?;
            Ok(())
        })?,
    ));
    // A training step's gradient in training mode (BatchNorm on batch statistics, running
    // statistics updated), as the trainer takes it: the engine, and candle's autodiff.
    let train_batch = terrain_model::data::Batch {
        x: data.x.to_dtype(dtype)?.to_device(device)?,
        y: data.y.to_device(device)?,
    };
    measured.push((
        "training step gradient (engine)".into(),
        time_op(args, || {
            let step = terrain_model::train::reduced_gradient(
                &model,
                &train_batch,
                LossKind::Ce,
                true,
                |l| Ok(l.mean_all()?),
            )?;
            anyhow::ensure!(
                !device.is_cpu() || step.source == terrain_model::train::GradientSource::Engine,
                "the training step did not run on the engine"
            );
            Ok(())
        })?,
    ));
    measured.push((
        "training step gradient (autodiff)".into(),
        time_op(args, || {
            terrain_model::train::autodiff_reduced_gradient(
                &model,
                &train_batch,
                LossKind::Ce,
                true,
                |l| Ok(l.mean_all()?),
            )?;
            Ok(())
        })?,
    ));
    measured.push((
        "HVP (autodiff double backward)".into(),
        time_op(args, || {
            h_ad.apply(&v)?;
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
    measured.push((
        "GGN product (autodiff)".into(),
        time_op(args, || {
            ggn_ad.apply(&v)?;
            Ok(())
        })?,
    ));
    measured.push((
        "8 batched HVPs (apply_many, total)".into(),
        time_op(args, || {
            h.apply_many(&vs)?;
            Ok(())
        })?,
    ));
    measured.push((
        "exact diagonal (one sweep)".into(),
        time_op(args, || {
            diagonal::exact_diagonal_sweep(&h)?;
            Ok(())
        })?,
    ));
    measured.push((
        "exact diagonal (candle-tensor sweep)".into(),
        time_op(args, || {
            diagonal::exact_diagonal_sweep(&h_candle)?;
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
    Ok(rows(spec, measured))
}

/// Rows with ratios to the gradient among `measured`.
fn rows(spec: &str, measured: Vec<(String, (f64, f64, usize))>) -> Vec<Row> {
    let (grad_ms, _, grad_peak) = measured
        .iter()
        .find(|(op, _)| op == "gradient")
        .map_or((f64::NAN, 0.0, 0), |(_, m)| *m);
    measured
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
        .collect()
}

/// The runs measured in child processes: label, pinned to one core, global arguments.
const CHILD_RUNS: [(&str, bool, &[&str]); 3] = [
    ("pinned to 1 core", true, &[]),
    ("1 thread", false, &["--threads", "1"]),
    ("pinned, candle only", true, &["--candle-threads"]),
];

/// The gradient and HVP of `spec` measured in child processes (see [`CHILD_RUNS`]), as rows
/// whose ratios are to this process's gradient (`own`).
fn child_rows(spec: &str, args: &Args, own: &[Row]) -> Result<Vec<Row>> {
    let grad = own.iter().find(|r| r.operation == "gradient");
    let (grad_ms, grad_peak) = grad.map_or((f64::NAN, 0.0), |r| (r.median_ms, r.peak_mib));
    let mut out = Vec::new();
    for (label, pinned, global) in CHILD_RUNS {
        let Some(child) = run_child(spec, args, pinned, global)? else {
            continue;
        };
        for mut r in child {
            let op = match r.operation.as_str() {
                "Hessian-vector product" => "HVP",
                other => other,
            };
            r.operation = format!("{op}, {label}");
            r.ratio_to_gradient = r.median_ms / grad_ms;
            r.peak_ratio_to_gradient = r.peak_mib / grad_peak.max(f64::MIN_POSITIVE);
            out.push(r);
        }
    }
    Ok(out)
}

/// Runs this binary's `bench curvature --child` on `spec` with default thread settings (no
/// `RAYON_NUM_THREADS`, `TERRAIN_THREADS`, `CANDLE_NUM_THREADS`) plus `global` arguments,
/// pinned to the first CPU of this process's affinity mask if `pinned`. `None` where pinning
/// is not supported (off Linux).
fn run_child(spec: &str, args: &Args, pinned: bool, global: &[&str]) -> Result<Option<Vec<Row>>> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(global)
        .args(["bench", "curvature", "--child", "--model", spec, "--dtype"])
        .arg(args.dtype.to_string())
        .args(["--reps", &args.reps.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--batch", &batch_of(spec, args).to_string()])
        .env_remove(terrain_model::threads::RAYON_ENV)
        .env_remove("TERRAIN_THREADS")
        .env_remove("CANDLE_NUM_THREADS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if pinned {
        #[cfg(target_os = "linux")]
        {
            let cpu = terrain_model::threads::affinity_cpus()
                .and_then(|c| c.first().copied())
                .unwrap_or(0);
            terrain_model::threads::pin_command(&mut cmd, cpu);
        }
        #[cfg(not(target_os = "linux"))]
        {
            eprintln!("pinning to one core needs Linux: rows skipped");
            return Ok(None);
        }
    }
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "benchmark child process ({}) failed: {}",
        global.join(" "),
        out.status
    );
    Ok(Some(serde_json::from_slice(&out.stdout)?))
}

/// The figures for one model: HVP, GGN and the exact diagonal over the gradient, eight
/// batched products over one, and the sweep against autodiff.
fn sweep_summary(spec: &str, own: &[Row]) -> Option<String> {
    let ms = |op: &str| own.iter().find(|r| r.operation == op).map(|r| r.median_ms);
    let g = ms("gradient")?;
    let hvp = ms("Hessian-vector product")?;
    let mut line = format!(
        "{spec}: gradient {g:.2} ms, HVP {hvp:.2} ms = {:.2}× gradient",
        hvp / g
    );
    if let Some(ggn) = ms("Gauss-Newton-vector product") {
        line += &format!(", GGN {:.2}× HVP", ggn / hvp);
    }
    if let Some(d) = ms("exact diagonal (one sweep)") {
        line += &format!(", exact diagonal {:.2}× gradient", d / g);
    }
    if let Some(b) = ms("8 batched HVPs (apply_many, total)") {
        line += &format!(", 8 batched HVPs {:.2}× one", b / hvp);
    }
    if let (Some(ga), Some(ha)) = (
        ms("gradient (autodiff)"),
        ms("HVP (autodiff double backward)"),
    ) {
        line += &format!(
            "; autodiff / sweep: gradient {:.2}×, HVP {:.2}×",
            ga / g,
            ha / hvp
        );
    }
    Some(line)
}

/// "pinned / one thread" for the gradient and HVP of one model, if both were measured.
fn pinned_summary(spec: &str, own: &[Row], extra: &[Row]) -> Option<String> {
    let ms = |rows: &[Row], op: &str| rows.iter().find(|r| r.operation == op).map(|r| r.median_ms);
    let g1 = ms(extra, "gradient, 1 thread")?;
    let gp = ms(extra, "gradient, pinned to 1 core")?;
    let mut line = format!(
        "{spec}: gradient pinned to 1 core / 1 thread = {:.2}×",
        gp / g1
    );
    if let (Some(h1), Some(hp)) = (
        ms(extra, "HVP, 1 thread"),
        ms(extra, "HVP, pinned to 1 core"),
    ) {
        line += &format!(", HVP {:.2}×", hp / h1);
    }
    if let Some(gc) = ms(extra, "gradient, pinned, candle only") {
        line += &format!("; pinned, candle only: gradient {:.2}×", gc / g1);
        if let (Some(h1), Some(hc)) = (
            ms(extra, "HVP, 1 thread"),
            ms(extra, "HVP, pinned, candle only"),
        ) {
            line += &format!(", HVP {:.2}×", hc / h1);
        }
    }
    if let Some(g) = ms(own, "gradient") {
        line += &format!(" (unpinned default gradient {g:.2} ms, 1 thread {g1:.2} ms)");
    }
    Some(line)
}

fn print_table(rows: &[Row]) -> Result<()> {
    print!("{}", Table::from_rows(rows)?.to_terminal());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: &str, ms: f64) -> Row {
        Row {
            model: "m".into(),
            operation: op.into(),
            median_ms: ms,
            min_ms: ms,
            ratio_to_gradient: 1.0,
            peak_mib: 1.0,
            peak_ratio_to_gradient: 1.0,
        }
    }

    #[test]
    fn ratios_are_to_the_gradient_whatever_its_position() {
        let m = |ms: f64| (ms, ms, 1024usize);
        let r = rows(
            "m",
            vec![
                ("gradient".into(), m(2.0)),
                ("Hessian-vector product".into(), m(6.0)),
            ],
        );
        assert_eq!(r[1].ratio_to_gradient, 3.0);
        assert_eq!(r[0].peak_ratio_to_gradient, 1.0);
    }

    #[test]
    fn summary_gives_pinned_over_one_thread() {
        let own = [row("gradient", 4.0)];
        let extra = [
            row("gradient, pinned to 1 core", 11.0),
            row("HVP, pinned to 1 core", 30.0),
            row("gradient, 1 thread", 10.0),
            row("HVP, 1 thread", 30.0),
            row("gradient, pinned, candle only", 66.0),
            row("HVP, pinned, candle only", 300.0),
        ];
        let s = pinned_summary("mlp", &own, &extra).unwrap();
        assert!(s.contains("= 1.10×"), "{s}");
        assert!(s.contains("HVP 1.00×"), "{s}");
        assert!(s.contains("candle only: gradient 6.60×, HVP 10.00×"), "{s}");
        assert!(pinned_summary("mlp", &own, &extra[..2]).is_none());
    }
}
