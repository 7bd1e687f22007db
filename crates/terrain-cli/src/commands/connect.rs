//! `terrain connect`: mode connectivity between two checkpoints — loss and training error along
//! the straight line or a trained quadratic Bezier curve, Yang et al.'s `mc` and the MD tree's
//! `mc_peak`, with a plot.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;
use terrain_metrics::connect::{self, ConnectConfig, CurveTraining, Method};
use terrain_report::chart::{Chart, LineChart, Panel, Series};

use super::surface::{default_path, loss_label, same_standardization};
use super::{
    CheckpointData, CheckpointDataArgs, Context, check_plot_path, load_checkpoint, metrics_flags,
};

/// Arguments of `terrain connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    input: CheckpointDataArgs,
    /// The other end of the path (same architecture).
    #[arg(value_name = "CHECKPOINT_B")]
    other: PathBuf,
    /// The path: linear (no training) or bezier (a quadratic Bezier curve with a trained middle
    /// point, as Garipov et al. and the MD tree).
    #[arg(long, default_value = "linear")]
    method: Method,
    /// Points evaluated along the path, evenly spaced in [0, 1] (5: t = 0, .25, .5, .75, 1).
    #[arg(long, default_value_t = 5)]
    points: usize,
    /// Bezier: epochs of curve training (the MD tree: 50 on the full data).
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// Bezier: base learning rate (SGD, momentum 0.9; Garipov's schedule: constant for half
    /// the epochs, linear decay to 1% at 90%).
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    lr: f64,
    /// Bezier: SGD momentum.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    momentum: f64,
    /// Bezier: L2 regulariser ½·wd·‖w(t)‖² on the curve's weights.
    #[arg(long, default_value_t = 5e-4, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Bezier: rows per training step.
    #[arg(long, default_value_t = 128)]
    train_batch_size: usize,
    /// Rows per forward pass when evaluating (and recomputing BatchNorm statistics).
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Seed of the curve training (shuffling, sampled t).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The picture, PNG or SVG [default: CHECKPOINT-STEM-connect.png].
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    plot: Option<PathBuf>,
    /// Bezier: keep the curve training's state in FILE (safetensors, replaced atomically after
    /// every epoch: the middle point and its momentum buffer, two model-sized tensors), so that
    /// a killed run, rerun with the same command, continues from its last epoch and ends with
    /// exactly the numbers of an uninterrupted run. Resuming is automatic when FILE exists; a
    /// state of other checkpoints, data or training settings is refused, naming each. Deleted
    /// when the command succeeds, unless --keep-state.
    #[arg(long, value_name = "FILE.safetensors")]
    state: Option<PathBuf>,
    /// Keep the --state file after success (a rerun then trains nothing).
    #[arg(long, requires = "state")]
    keep_state: bool,
}

/// Runs `terrain connect`.
pub fn run(ctx: &Context, a: ConnectArgs) -> Result<()> {
    let plot = a
        .plot
        .clone()
        .unwrap_or_else(|| default_path(&a.input.checkpoint, "connect.png"));
    check_plot_path(&plot)?;
    if let Some(state) = &a.state {
        anyhow::ensure!(
            a.method == Method::Bezier,
            "--state {} keeps the state of the Bezier curve's training; --method {} trains \
             nothing (use --method bezier)",
            state.display(),
            a.method
        );
    }
    let CheckpointData {
        ckpt, data, loss, ..
    } = a.input.load(&ctx.device, a.seed)?;
    let other = load_checkpoint(
        &a.other,
        a.input.arch.as_ref(),
        Some(ckpt.model.dtype()),
        &ctx.device,
    )?;
    terrain_metrics::direction::same_architecture(
        "mode connectivity",
        &ckpt.model,
        &other.model,
        &a.input.checkpoint.display().to_string(),
        &a.other.display().to_string(),
    )?;
    if !same_standardization(&ckpt, &other)? {
        eprintln!(
            "warning: {} was trained on inputs standardised differently from {}; the whole path \
             is evaluated with the first checkpoint's standardisation",
            a.other.display(),
            a.input.checkpoint.display()
        );
    }
    let config = ConnectConfig {
        method: a.method,
        points: a.points,
        loss,
        batch_size: a.batch_size,
        training: CurveTraining {
            epochs: a.epochs,
            lr: a.lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            batch_size: a.train_batch_size,
            seed: a.seed,
            progress: terrain_report::progress::terminal(),
        },
    };
    let names = [
        ("points", "--points"),
        ("epochs", "--epochs"),
        ("lr", "--lr"),
        ("momentum", "--momentum"),
        ("weight_decay", "--weight-decay"),
        ("batch_size", "--batch-size"),
    ];
    metrics_flags(config.check(), &names)?;
    let c = connect::connect_resumable(
        &ckpt.model,
        &other.model,
        &data,
        &config,
        a.state.as_deref(),
    )
    .map_err(|e| {
        let what = match (&e, &a.state) {
            (terrain_metrics::Error::StateFile { path, .. }, Some(state)) if path == state => {
                Some("not a state this run can continue from; delete it to start over")
            }
            (terrain_metrics::Error::Model(m), Some(state)) => super::state_file_problem(m, state),
            _ => None,
        };
        match (what, &a.state) {
            (Some(w), Some(state)) => {
                anyhow::Error::from(e).context(format!("--state {}: {w}", state.display()))
            }
            _ => anyhow::Error::from(e),
        }
    })?;

    let name_a = a.input.checkpoint.display().to_string();
    let name_b = a.other.display().to_string();
    let mut panels = vec![Panel {
        title: format!("Loss along the {} path", a.method),
        x_label: format!("t (0 = {name_a}, 1 = {name_b})"),
        y_label: loss_label(loss).into(),
        series: vec![Series::new(
            "loss",
            c.t.iter().copied().zip(c.loss.iter().copied()).collect(),
        )],
        ..Panel::default()
    }];
    if let Some(e) = &c.error {
        panels.push(Panel {
            title: format!(
                "Training error (mc = {:.2}, mc_peak = {:.2})",
                c.mc, c.mc_peak
            ),
            x_label: format!("t (0 = {name_a}, 1 = {name_b})"),
            y_label: "training error (%)".into(),
            series: vec![Series::new(
                "error",
                c.t.iter().copied().zip(e.iter().copied()).collect(),
            )],
            ..Panel::default()
        });
    }
    LineChart {
        title: format!("Mode connectivity ({}) on {}", a.method, a.input.data.data),
        panels,
        panel_size: None,
    }
    .save(&plot)
    .with_context(|| format!("plotting to {}", plot.display()))?;
    terrain_report::table::print_value(
        ctx.format,
        &json!({
            "a": name_a,
            "b": name_b,
            "arch": ckpt.model.spec().to_string(),
            "data": a.input.data.data,
            "rows": data.len(),
            "method": c.method,
            "loss_kind": loss,
            "t": c.t,
            "loss": c.loss,
            "error": c.error,
            "mc": c.mc,
            "mc_peak": c.mc_peak,
            "summarised": if c.error.is_some() { "training error (%)" } else { "loss" },
            "curve_train_loss": c.curve_train_loss,
            "resumed_at_epoch": c.resumed_at_epoch,
            "plot": plot.display().to_string(),
        }),
    );
    if let Some(state) = a.state.as_ref().filter(|_| !a.keep_state) {
        match std::fs::remove_file(state) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::Error::from(e)
                    .context(format!("removing the finished state {}", state.display())));
            }
            _ => {}
        }
    }
    Ok(())
}
