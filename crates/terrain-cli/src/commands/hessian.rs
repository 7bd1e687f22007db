//! `terrain hessian`: the Hessian of a checkpoint's loss on a data set — top eigenvalues, trace,
//! spectral density (with a PNG plot) and the diagonal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use terrain_curvature::{
    Curvature, HessianConfig, HessianOperator, LinearOperator, ParamFilter,
    density::{self, SlqConfig},
    diagonal::{self, DiagonalConfig, DiagonalMethod},
    eigen::{self, LanczosConfig, PowerConfig},
    resume::{NoState, StateFile, StateStore},
    trace::{self, HutchPlusPlusConfig, HutchinsonConfig},
};

use terrain_report::{
    Format,
    chart::{Chart, LineChart, Panel, Series},
};

use super::{CheckpointData, CheckpointDataArgs, Context, check_plot_path, flags};

/// Eigenvalue solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EigenSolver {
    /// Lanczos with full reorthogonalisation (accurate top-k, residuals).
    Lanczos,
    /// Power iteration with deflation, PyHessian's method and defaults.
    Power,
}

/// Trace estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TraceEstimator {
    /// Hutchinson with Rademacher probes, exactly --trace-matvecs of them: an honest standard
    /// error.
    Hutchinson,
    /// Hutchinson with PyHessian's stopping rule (stops once the running mean moves by less than
    /// 1e-3; often after a few probes, with a standard error that is too small): for comparison
    /// with PyHessian.
    Pyhessian,
    /// Hutch++ (low-rank sketch plus Hutchinson on the rest).
    #[value(name = "hutch++")]
    HutchPlusPlus,
}

/// Arguments of `terrain hessian`.
#[derive(Debug, clap::Args)]
pub struct HessianArgs {
    #[command(flatten)]
    input: CheckpointDataArgs,
    /// Compute the K largest eigenvalues (with residuals). Without --top-k, --trace, --density
    /// or --diag, the top eigenvalue and the trace are computed.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Eigenvalue solver.
    #[arg(long, value_enum, default_value_t = EigenSolver::Lanczos)]
    eigen_method: EigenSolver,
    /// Iteration cap of the eigenvalue solver (PyHessian: 100).
    #[arg(long, default_value_t = 100)]
    max_iter: usize,
    /// Convergence tolerance of the eigenvalue solver (default: 1e-3 for power iteration as in
    /// PyHessian, 1e-5 relative Ritz residual for Lanczos).
    #[arg(long, allow_negative_numbers = true)]
    tol: Option<f64>,
    /// Estimate the trace (with its standard error).
    #[arg(long)]
    trace: bool,
    /// Trace estimator.
    #[arg(long, value_enum, default_value_t = TraceEstimator::Hutchinson)]
    trace_method: TraceEstimator,
    /// Hessian-vector products the trace uses (hutchinson and hutch++: exactly this many;
    /// pyhessian: at most this many).
    #[arg(long, default_value_t = 100)]
    trace_matvecs: usize,
    /// Estimate the spectral density by stochastic Lanczos quadrature and plot it.
    #[arg(long)]
    density: bool,
    /// Lanczos steps per density run.
    #[arg(long, default_value_t = 100)]
    density_iter: usize,
    /// Density runs (random start vectors) averaged.
    #[arg(long, default_value_t = 1)]
    density_runs: usize,
    /// Grid points of the density.
    #[arg(long, default_value_t = 10_000)]
    density_bins: usize,
    /// Where to write the density plot, PNG or SVG by extension [default:
    /// CHECKPOINT-STEM-density.png in the current directory].
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    plot: Option<PathBuf>,
    /// Estimate the diagonal: exact, hutchinson, becker-lecun, cp (curvature propagation,
    /// S-variant) or cp-tu (curvature propagation, T/U variant).
    #[arg(long, value_name = "METHOD")]
    diag: Option<DiagonalMethod>,
    /// What curvature propagation's noise covers: diagonal (the default: bilinear layers inject
    /// nothing, far lower variance; then cp and cp-tu give the same numbers, as both reduce to
    /// real factors) or full (the paper's estimator of the whole Hessian, where they differ).
    #[arg(long, default_value = "diagonal")]
    diag_coverage: terrain_curvature::Coverage,
    /// The largest number of parameters for which --diag exact runs with --hvp double-backward
    /// (one Hessian-vector product per parameter); with --hvp rop the exact diagonal takes one
    /// sweep and has no limit.
    #[arg(long, default_value_t = terrain_curvature::dense::DEFAULT_DENSE_LIMIT)]
    exact_limit: usize,
    /// Write the diagonal to this safetensors file: one f64 tensor per parameter, named and shaped
    /// like it; stochastic estimators (hutchinson, cp, cp-tu) add `<name>.stderr`, the standard
    /// error of each entry.
    #[arg(long, value_name = "FILE.safetensors")]
    diag_out: Option<PathBuf>,
    /// Random samples of the stochastic diagonal estimators.
    #[arg(long, default_value_t = 100)]
    diag_samples: usize,
    /// Use only N rows of the data: a random subset, stratified by class, drawn from --seed.
    #[arg(long, value_name = "N")]
    samples: Option<usize>,
    /// Rows per batch (products are summed over batches).
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Restrict to parameters matching a name pattern (a dotted prefix like `layer1`, or a glob
    /// like `*.weight`); repeatable.
    #[arg(long = "param", value_name = "PATTERN")]
    params: Vec<String>,
    /// Use the generalised Gauss–Newton matrix instead of the Hessian.
    #[arg(long)]
    gauss_newton: bool,
    /// How products and the gradient are computed: rop (the hand-written sweep on the layer
    /// description: Pearlmutter's R-operator, several vectors sharing each forward pass) or
    /// double-backward (candle autodiff, the generic fallback).
    #[arg(long, default_value = "rop", value_name = "rop|double-backward")]
    hvp: terrain_curvature::HvpMethod,
    /// Seed of every random probe (same seed, same numbers).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Keep the eigenvalue solver's state in FILE (safetensors, replaced atomically after every
    /// iteration), so that a killed run, rerun with the same command, continues where it stopped
    /// and ends with exactly the eigenvalues of an uninterrupted run. Resuming is automatic when
    /// FILE exists; a state written with other settings (checkpoint, data, loss, dtype,
    /// --param, --batch-size, --hvp, --eigen-method, --top-k, --max-iter, --tol, --seed...) is
    /// refused, naming each. Size: Lanczos keeps its basis, (steps + 1) × parameters × 4 bytes
    /// in f32 (8 in f64); power iteration (top-k + 1) × parameters × 4. Deleted when the
    /// command succeeds, unless --keep-state.
    #[arg(long, value_name = "FILE.safetensors")]
    state: Option<PathBuf>,
    /// Keep the --state file after success (a rerun then redoes only the last iteration).
    #[arg(long, requires = "state")]
    keep_state: bool,
    /// Write the --state file at most once per SECONDS (for models whose basis takes long to
    /// write; 0: after every iteration).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0.0,
        requires = "state"
    )]
    state_interval: f64,
}

/// Runs `terrain hessian`.
pub fn run(ctx: &Context, a: HessianArgs) -> Result<()> {
    terrain_model::autodiff::ensure_second_order()?;
    if let Some(path) = &a.diag_out {
        // Before the work, like the plot path.
        anyhow::ensure!(
            a.diag.is_some(),
            "--diag-out {} needs --diag METHOD (exact, hutchinson, becker-lecun, cp, cp-tu)",
            path.display()
        );
        check_diag_out(path)?;
    }
    if a.density {
        // Before the work: an unwritable plot path should not cost a density run.
        let path = a.plot_path();
        check_plot_path(&path)?;
    }
    let CheckpointData {
        ckpt,
        data,
        standardized,
        loss: kind,
    } = a.input.load(&ctx.device, a.seed)?;
    let diag_method = a.diag;
    let nothing_asked = a.top_k.is_none() && !a.trace && !a.density && diag_method.is_none();
    let top_k = a.top_k.or(nothing_asked.then_some(1));
    let want_trace = a.trace || nothing_asked;
    if let Some(path) = &a.state {
        anyhow::ensure!(
            top_k.is_some(),
            "--state {} keeps the eigenvalue solver's state, but this run computes no \
             eigenvalues: add --top-k K",
            path.display()
        );
        anyhow::ensure!(
            std::time::Duration::try_from_secs_f64(a.state_interval).is_ok(),
            "--state-interval {:?}: must be a number of seconds from 0 to 1e19",
            a.state_interval
        );
    }

    let config = HessianConfig {
        batch_size: a.batch_size,
        samples: a.samples,
        sample_seed: a.seed,
        filter: ParamFilter::new(a.params.clone()),
        curvature: if a.gauss_newton {
            Curvature::GaussNewton
        } else {
            Curvature::Hessian
        },
        hvp: a.hvp,
        ..HessianConfig::new(kind)
    };
    let op = flags(
        HessianOperator::new(&ckpt.model, &data, config),
        &[("batch_size", "--batch-size"), ("samples", "--samples")],
    )?;
    let loss = op.loss()?;
    tracing::info!(
        dim = op.dim(),
        rows = op.rows(),
        loss,
        "Hessian operator ready"
    );

    let mut state = match &a.state {
        Some(path) => {
            let mut f = StateFile::new(path, state_settings(&a, &ckpt, &data, &op, kind)?);
            f.min_interval = std::time::Duration::try_from_secs_f64(a.state_interval)?;
            Some(f)
        }
        None => None,
    };
    let eigen = match top_k {
        Some(k) => {
            Some(top_eigenvalues(&op, &a, k, state.as_mut()).map_err(|e| state_hint(e, &a))?)
        }
        None => None,
    };
    let trace = if want_trace {
        Some(estimate_trace(&op, &a)?)
    } else {
        None
    };
    let density = if a.density {
        Some(spectral_density(&op, &a, ctx.format)?)
    } else {
        None
    };
    let diagonal = match diag_method {
        Some(m) => Some(estimate_diagonal(&op, m, &a)?),
        None => None,
    };

    let mut out = json!({
        "checkpoint": a.input.checkpoint.display().to_string(),
        "arch": ckpt.model.spec().to_string(),
        "data": a.input.data.data,
        "standardized": standardized,
        "rows": op.rows(),
        "loss_kind": kind,
        "curvature": op.curvature(),
        "hvp": op.hvp_method(),
        "parameters": op.dim(),
        "loss": loss,
        "top_eigenvalues": eigen.as_ref().map(|e| e.values()),
        "resumed_at_iteration": eigen.as_ref().and_then(|e| e.resumed_at),
        "trace": trace.as_ref().map(|t| t.value),
        "trace_std_error": trace.as_ref().map(|t| t.std_error),
    });
    let obj = out.as_object_mut().expect("an object");
    if let Some(e) = &eigen {
        obj.insert(
            "eigenpairs".into(),
            e.pairs
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    json!({
                        "index": i + 1,
                        "eigenvalue": p.value,
                        "residual": p.residual,
                        "iterations": p.iterations,
                        "converged": p.converged,
                    })
                })
                .collect(),
        );
        obj.insert("eigen_matvecs".into(), json!(e.matvecs));
    }
    if let Some(t) = &trace {
        obj.insert(
            "trace_estimate".into(),
            json!({
                "method": t.method,
                // The stopping rule: pyhessian's early stop, or a fixed budget.
                "rule": if a.trace_method == TraceEstimator::Pyhessian {
                    "pyhessian"
                } else {
                    "fixed budget"
                },
                "samples": t.samples,
                "matvecs": t.matvecs,
                "converged": t.converged,
            }),
        );
    }
    if let Some(d) = density {
        obj.insert("density".into(), d);
    }
    if let Some((summary, params)) = diagonal {
        obj.insert("diagonal".into(), summary);
        obj.insert("diagonal_params".into(), params);
    }
    if let Some(s) = &state {
        obj.insert("state".into(), json!(s.path().display().to_string()));
        obj.insert("state_kept".into(), json!(a.keep_state));
    }
    terrain_report::table::print_value(ctx.format, &out);
    if let Some(s) = &state
        && !a.keep_state
    {
        s.remove()
            .with_context(|| format!("removing the finished state {}", s.path().display()))?;
    }
    Ok(())
}

/// Everything besides the solver's own settings that changes the eigenvalues: the checkpoint's
/// bytes, the data's content, the rows used, loss, dtype, device, parameter filter, batch size,
/// curvature and product method. (The solver adds method, top-k, max-iter, tol, seed, dimension.)
fn state_settings(
    a: &HessianArgs,
    ckpt: &terrain_model::checkpoint::Checkpoint,
    data: &terrain_model::data::Dataset,
    op: &HessianOperator<'_>,
    loss: terrain_model::loss::LossKind,
) -> Result<BTreeMap<String, String>> {
    let path = &a.input.checkpoint;
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {} to hash it", path.display()))?;
    let mut s = BTreeMap::new();
    s.insert(
        "checkpoint".to_string(),
        format!("{} bytes, hash {:016x}", bytes.len(), fnv1a(&bytes)),
    );
    s.insert("arch".into(), ckpt.model.spec().to_string());
    s.insert(
        "data".into(),
        format!(
            "{} ({} rows, hash {:016x})",
            data.name,
            data.len(),
            data.content_hash()?
        ),
    );
    s.insert(
        "samples".into(),
        a.samples.map_or("all".into(), |n| n.to_string()),
    );
    s.insert("rows".into(), op.rows().to_string());
    s.insert("sample_seed".into(), a.seed.to_string());
    s.insert("loss".into(), loss.to_string());
    s.insert("model_dtype".into(), format!("{:?}", ckpt.model.dtype()));
    s.insert(
        "device".into(),
        format!("{:?}", ckpt.model.device().location()),
    );
    s.insert("params".into(), a.params.join(" "));
    s.insert("batch_size".into(), a.batch_size.to_string());
    s.insert("curvature".into(), format!("{:?}", op.curvature()));
    s.insert("hvp".into(), format!("{:?}", op.hvp_method()));
    Ok(s)
}

/// FNV-1a of `bytes` (the checkpoint's fingerprint in a state file).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Names the flag behind a state file that cannot be read or written. (A state of other
/// settings names them, with the file, already.)
fn state_hint(e: anyhow::Error, a: &HessianArgs) -> anyhow::Error {
    let Some(state) = &a.state else { return e };
    let what = e.chain().find_map(|c| {
        let m = match c.downcast_ref::<terrain_curvature::Error>()? {
            terrain_curvature::Error::StateFile { path, .. } if path == state => {
                return Some("not a state this run can continue from; delete it to start over");
            }
            terrain_curvature::Error::Model(m) => m,
            _ => return None,
        };
        super::state_file_problem(m, state)
    });
    match what {
        Some(w) => e.context(format!("--state {}: {w}", state.display())),
        None => e,
    }
}

fn top_eigenvalues(
    op: &HessianOperator<'_>,
    a: &HessianArgs,
    k: usize,
    state: Option<&mut StateFile>,
) -> Result<eigen::TopEigen> {
    let mut none = NoState;
    let store: &mut dyn StateStore = match state {
        Some(s) => s,
        None => &mut none,
    };
    let r = match a.eigen_method {
        EigenSolver::Lanczos => {
            let mut c = LanczosConfig {
                top_k: k,
                max_iter: a.max_iter,
                seed: a.seed,
                progress: terrain_report::progress::terminal(),
                ..LanczosConfig::default()
            };
            if let Some(t) = a.tol {
                c.tol = t;
            }
            flags(
                eigen::lanczos_with_state(op, &c, store),
                &[
                    ("top_k", "--top-k"),
                    ("max_iter", "--max-iter"),
                    ("tol", "--tol"),
                ],
            )?
        }
        EigenSolver::Power => {
            let mut c = PowerConfig {
                top_k: k,
                max_iter: a.max_iter,
                seed: a.seed,
                progress: terrain_report::progress::terminal(),
                ..PowerConfig::default()
            };
            if let Some(t) = a.tol {
                c.tol = t;
            }
            flags(
                eigen::power_iteration_with_state(op, &c, store),
                &[
                    ("top_k", "--top-k"),
                    ("max_iter", "--max-iter"),
                    ("tol", "--tol"),
                ],
            )?
        }
    };
    Ok(r)
}

fn estimate_trace(op: &HessianOperator<'_>, a: &HessianArgs) -> Result<trace::TraceEstimate> {
    let r = match a.trace_method {
        TraceEstimator::Hutchinson | TraceEstimator::Pyhessian => {
            let base = match a.trace_method {
                TraceEstimator::Pyhessian => HutchinsonConfig::pyhessian(),
                _ => HutchinsonConfig::default(),
            };
            let c = HutchinsonConfig {
                max_samples: a.trace_matvecs,
                seed: a.seed,
                progress: terrain_report::progress::terminal(),
                ..base
            };
            flags(
                trace::hutchinson(op, &c),
                &[("max_samples", "--trace-matvecs")],
            )?
        }
        TraceEstimator::HutchPlusPlus => {
            let c = HutchPlusPlusConfig {
                matvecs: a.trace_matvecs,
                seed: a.seed,
                progress: terrain_report::progress::terminal(),
                ..HutchPlusPlusConfig::default()
            };
            flags(
                trace::hutch_plus_plus(op, &c),
                &[("matvecs", "--trace-matvecs")],
            )?
        }
    };
    Ok(r)
}

fn spectral_density(op: &HessianOperator<'_>, a: &HessianArgs, format: Format) -> Result<Value> {
    let c = SlqConfig {
        iterations: a.density_iter,
        runs: a.density_runs,
        bins: a.density_bins,
        seed: a.seed,
        progress: terrain_report::progress::terminal(),
        ..SlqConfig::default()
    };
    let d = flags(
        density::slq(op, &c),
        &[
            ("iterations", "--density-iter"),
            ("runs", "--density-runs"),
            ("bins", "--density-bins"),
        ],
    )?;
    let path = a.plot_path();
    // PyHessian's grid ends 0.01 beyond the extreme nodes, which cuts the outermost peaks in
    // half once σ exceeds a few thousandths: the plot re-broadens onto a grid padded by 5σ.
    // (The numbers in the output keep PyHessian's grid.)
    let pad = (5.0 * d.sigma_squared.sqrt()).max(c.overhead);
    let (plot_grid, plot_density, _) =
        density::broaden(&d.runs, c.bins.min(20_000), c.sigma_squared, pad)?;
    // PyHessian plots density + 1e-7 on a log axis, so the tails stay visible and finite.
    let chart = LineChart::single(Panel {
        title: format!(
            "Hessian spectral density (SLQ, {} run(s) × {} Lanczos steps)",
            a.density_runs, a.density_iter
        ),
        x_label: "eigenvalue of the Hessian".into(),
        y_label: "density (log scale, 1e-7 added)".into(),
        series: vec![Series::new(
            "",
            plot_grid
                .iter()
                .zip(&plot_density)
                .map(|(&x, &y)| (x, y + 1e-7))
                .collect(),
        )],
        log_y: true,
        ..Panel::default()
    });
    chart
        .save(&path)
        .with_context(|| format!("plotting to {}", path.display()))?;
    let (lo, hi) = d
        .runs
        .iter()
        .flat_map(|q| q.nodes.iter())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
            (l.min(x), h.max(x))
        });
    let mut v = json!({
        "plot": path.display().to_string(),
        "runs": d.runs.len(),
        "matvecs": d.matvecs,
        "sigma_squared": d.sigma_squared,
        "min_node": lo,
        "max_node": hi,
    });
    if format == Format::Json {
        let obj = v.as_object_mut().expect("an object");
        obj.insert("grid".into(), json!(d.grid));
        obj.insert("density".into(), json!(d.density));
        obj.insert("quadrature".into(), json!(d.runs));
    }
    Ok(v)
}

impl HessianArgs {
    /// Where the density plot goes: --plot, else CHECKPOINT-STEM-density.png here.
    fn plot_path(&self) -> PathBuf {
        if let Some(p) = &self.plot {
            return p.clone();
        }
        let stem = self
            .input
            .checkpoint
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "hessian".into());
        PathBuf::from(format!("{stem}-density.png"))
    }
}

/// The diagonal's summary and its per-parameter table.
fn estimate_diagonal(
    op: &HessianOperator<'_>,
    method: DiagonalMethod,
    a: &HessianArgs,
) -> Result<(Value, Value)> {
    let c = DiagonalConfig {
        seed: a.seed,
        coverage: a.diag_coverage,
        exact_limit: a.exact_limit,
        progress: terrain_report::progress::terminal(),
        ..DiagonalConfig::new(a.diag_samples)
    };
    let d = flags(
        diagonal::estimate_diagonal(op, method, &c),
        &[
            ("samples", "--diag-samples"),
            ("exact_limit", "--exact-limit"),
        ],
    )?;
    let mut summary = json!({
        "method": d.method,
        "samples": d.samples,
        "coverage": a.diag_coverage.to_string(),
        "trace": d.trace(),
    });
    if let Some(path) = &a.diag_out {
        write_diagonal(op, &d, path)?;
        summary["file"] = json!(path.display().to_string());
    }
    Ok((summary, json!(d.params)))
}

/// `--diag-out` must name a `.safetensors` file in an existing directory.
fn check_diag_out(path: &std::path::Path) -> Result<()> {
    anyhow::ensure!(
        path.extension().is_some_and(|e| e == "safetensors"),
        "--diag-out {}: the diagonal is written as safetensors; name a FILE.safetensors",
        path.display()
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        anyhow::ensure!(
            dir.is_dir(),
            "cannot write {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Writes the diagonal as one f64 tensor per parameter (named and shaped like it), with
/// `<name>.stderr` beside it for stochastic estimators.
fn write_diagonal(
    op: &HessianOperator<'_>,
    d: &diagonal::DiagonalEstimate,
    path: &std::path::Path,
) -> Result<()> {
    let cpu = candle_core::Device::Cpu;
    let mut tensors = std::collections::HashMap::new();
    for ((name, off, len), shape) in op.layout().into_iter().zip(op.param_shapes()) {
        let t = candle_core::Tensor::from_slice(&d.values[off..off + len], shape.as_slice(), &cpu)?;
        tensors.insert(name.clone(), t);
        if let Some(se) = &d.stderr {
            let t = candle_core::Tensor::from_slice(&se[off..off + len], shape.as_slice(), &cpu)?;
            tensors.insert(format!("{name}.stderr"), t);
        }
    }
    candle_core::safetensors::save(&tensors, path)
        .with_context(|| format!("writing the diagonal to {}", path.display()))?;
    Ok(())
}
