//! `terrain metrics`: the MD tree's feature row of several checkpoints of one configuration
//! (different seeds) — train/test loss and error, ln of the Hessian's top eigenvalue and trace
//! (PyHessian on 200 training rows), mode connectivity between the first two seeds, CKA — plus
//! per-model norms and ε-sharpness.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;
use terrain_metrics::{
    cka::CkaConfig,
    connect::{ConnectConfig, CurveTraining, Method},
    mdtree::{self, FeatureConfig},
    sharpness::{self, BasicsConfig, SharpnessConfig},
};
use terrain_model::{
    ArchSpec, checkpoint::Checkpoint, data::Dataset, device::FloatType, loss::LossKind,
};
use terrain_report::{Cell, Format, Table};

use super::{Context, DataArgs, load_checkpoint, metrics_flags};

/// Arguments of `terrain metrics`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Checkpoints of one configuration (seeds); mode connectivity and CKA need two or more.
    #[arg(value_name = "CHECKPOINT", num_args = 1..)]
    checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Test data (default: the held-out rows when --data is what the first checkpoint was
    /// trained on; its recipe reproduces the split).
    #[arg(long)]
    test_data: Option<String>,
    /// Architecture, for checkpoints without terrain metadata.
    #[arg(long)]
    arch: Option<ArchSpec>,
    /// Floating-point type to compute in (default: the first checkpoint's).
    #[arg(long)]
    dtype: Option<FloatType>,
    /// Loss: ce or mse (default: the task's natural loss).
    #[arg(long)]
    loss: Option<LossKind>,
    /// Mode connectivity path: bezier (trained, the MD tree's) or linear (no training).
    #[arg(long, default_value = "bezier")]
    connect: Method,
    /// Epochs of Bezier curve training.
    #[arg(long, default_value_t = 50)]
    curve_epochs: usize,
    /// Rows of the Hessian's mini-batch (PyHessian on one batch, as the MD tree).
    #[arg(long, default_value_t = 200)]
    hessian_samples: usize,
    /// Rows for CKA (mixup-augmented).
    #[arg(long, default_value_t = 768)]
    cka_samples: usize,
    /// Mixup α of CKA's inputs (0: plain inputs).
    #[arg(long, default_value_t = 16.0, allow_negative_numbers = true)]
    mixup_alpha: f64,
    /// Radius of ε-sharpness.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    rho: f64,
    /// Steps of the multi-step ε-sharpness ascent.
    #[arg(long, default_value_t = 10)]
    rho_steps: usize,
    /// Seed of the Hessian rows, probes, curve training and CKA rows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the one-row table: .csv, .json or .parquet.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The training rows and, if any, the test rows of the first checkpoint on `--data`.
fn datasets(a: &MetricsArgs, first: &Checkpoint) -> Result<(Dataset, Option<Dataset>, String)> {
    let record = first.record()?;
    let standardize = |d: Dataset| -> Result<Dataset> {
        terrain_model::loss::check_fits(&first.model, &d)?;
        let d = match &record.standardizer {
            Some(s) => s.apply(&d)?,
            None => d,
        };
        Ok(match (&record.target_standardizer, &d.y) {
            (Some(s), terrain_model::data::Targets::Values(_)) => s.apply_targets(&d)?,
            _ => d,
        })
    };
    let recipe = record.run.as_ref().filter(|r| {
        r.data.test_source.is_none()
            && terrain_model::data::same_source(&r.data.source, &a.data.data)
    });
    let test = match &a.test_data {
        Some(t) => Some(standardize(terrain_model::data::load(
            t,
            &terrain_model::data::LoadOptions {
                data_dir: a.data.data_dir.clone(),
                seed: a.seed,
            },
        )?)?),
        None => None,
    };
    match recipe {
        Some(r) => {
            let p = r.prepare_data(a.data.data_dir.as_deref())?;
            let n = p.train.len();
            let test = test.or(p.test);
            Ok((
                p.train,
                test,
                format!("the {n} training rows of the first checkpoint's recipe"),
            ))
        }
        None => {
            let d = standardize(a.data.load(a.seed)?)?;
            let n = d.len();
            Ok((d, test, format!("all {n} rows")))
        }
    }
}

/// Runs `terrain metrics`.
pub fn run(ctx: &Context, a: MetricsArgs) -> Result<()> {
    terrain_model::autodiff::ensure_second_order()?;
    let dtype = a.dtype.map(FloatType::dtype);
    let mut ckpts: Vec<Checkpoint> = Vec::new();
    for p in &a.checkpoints {
        let dt = dtype.or_else(|| ckpts.first().map(|c| c.model.dtype()));
        ckpts.push(load_checkpoint(p, a.arch.as_ref(), dt, &ctx.device)?);
    }
    let names: Vec<String> = a
        .checkpoints
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for (c, n) in ckpts.iter().zip(&names).skip(1) {
        terrain_metrics::direction::same_architecture(
            "a feature row",
            &ckpts[0].model,
            &c.model,
            &names[0],
            n,
        )?;
    }
    let (train, test, rows) = datasets(&a, &ckpts[0])?;
    let loss = a.loss.unwrap_or_else(|| LossKind::for_task(train.task));
    let config = FeatureConfig {
        loss,
        basics: BasicsConfig {
            hessian_samples: a.hessian_samples,
            seed: a.seed,
            ..BasicsConfig::default()
        },
        connect: ConnectConfig {
            training: CurveTraining {
                epochs: a.curve_epochs,
                seed: a.seed,
                progress: terrain_report::progress::terminal(),
                ..CurveTraining::default()
            },
            ..ConnectConfig::new(a.connect, loss)
        },
        cka: CkaConfig {
            samples: a.cka_samples,
            mixup_alpha: a.mixup_alpha,
            seed: a.seed,
            outputs: if matches!(train.task, terrain_model::data::Task::Regression { .. }) {
                terrain_metrics::cka::Outputs::Logits
            } else {
                terrain_metrics::cka::Outputs::Softmax
            },
            ..CkaConfig::default()
        },
    };
    let sharp = SharpnessConfig {
        rho: a.rho,
        steps: a.rho_steps,
        ..SharpnessConfig::default()
    };
    let names_map = [
        ("epochs", "--curve-epochs"),
        ("hessian_samples", "--hessian-samples"),
        ("samples", "--cka-samples"),
        ("mixup_alpha", "--mixup-alpha"),
        ("rho", "--rho"),
        ("steps", "--rho-steps"),
    ];
    metrics_flags(sharp.check(), &names_map)?;
    let models: Vec<&terrain_model::Model> = ckpts.iter().map(|c| &c.model).collect();
    let report = metrics_flags(
        mdtree::feature_row(&models, &names, &train, test.as_ref(), &config),
        &names_map,
    )?;
    let sharpness = models
        .iter()
        .map(|m| sharpness::epsilon_sharpness(m, &train, loss, &sharp))
        .collect::<terrain_metrics::Result<Vec<_>>>()?;

    let row = serde_json::to_value(&report.row)?;
    let mut table = Table::new(
        row.as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
    );
    table.push(
        row.as_object()
            .expect("an object")
            .values()
            .map(|v| v.as_f64().map_or(Cell::Null, Cell::Float))
            .collect(),
    )?;
    if let Some(p) = &a.out {
        table
            .save(p)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    match ctx.format {
        Format::Json => {
            let per_model: Vec<_> = report
                .models
                .iter()
                .zip(&sharpness)
                .zip(&names)
                .enumerate()
                .map(|(k, ((b, s), n))| {
                    json!({
                        "checkpoint": n,
                        "train": b,
                        "test": report.test.get(k).map(|t| json!({"loss": t.0, "error": t.1})),
                        "sharpness": s,
                    })
                })
                .collect();
            let mut v = json!({
                "checkpoints": names,
                "arch": models[0].spec().to_string(),
                "data": a.data.data,
                "train_rows": rows,
                "test_rows": test.as_ref().map(Dataset::len),
                "loss_kind": loss,
                "row": row,
                "models": per_model,
                "connectivity": report.connectivity,
                "cka_pairs": report.cka.as_ref().map(|c| &c.pairs),
            });
            if let (Some(o), Some(r)) = (v.as_object_mut(), row.as_object()) {
                for (k, val) in r {
                    o.insert(k.clone(), val.clone());
                }
            }
            terrain_report::table::print_value(ctx.format, &v);
        }
        Format::Table | Format::Csv => {
            print!("{}", table.render(ctx.format));
            if ctx.format == Format::Table {
                println!();
                for ((b, s), n) in report.models.iter().zip(&sharpness).zip(&names) {
                    println!(
                        "{n}: train loss {:.4}, error {}, ‖θ‖ {:.3}, ‖∇L‖ {:.3e}, λ_max {:.4}, trace {:.3} ± {:.3}, ε-sharpness (ρ = {}) one-step {:.4e}, multi-step {:.4e}",
                        b.loss,
                        b.error.map_or("-".into(), |e| format!("{e:.2}%")),
                        b.param_norm,
                        b.grad_norm,
                        b.hessian_top_eigenvalue,
                        b.hessian_trace,
                        b.hessian_trace_std_error,
                        s.rho,
                        s.one_step,
                        s.multi_step
                    );
                }
            }
        }
    }
    Ok(())
}
