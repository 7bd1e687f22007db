//! `terrain eval`: loss and error of a checkpoint on a data set.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;
use terrain_model::loss::{self, LossKind};

use super::{Context, DataArgs, load_checkpoint, load_data_for, parse_dtype};
use crate::output;

/// Arguments of `terrain eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The checkpoint (.safetensors): terrain's own, or a PyTorch state dict with --arch.
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Architecture, for checkpoints without terrain metadata (PyTorch state dicts).
    #[arg(long)]
    arch: Option<String>,
    /// Loss: ce or mse (default: the task's natural loss).
    #[arg(long)]
    loss: Option<String>,
    /// Floating-point type to evaluate in: f32 or f64 (default: the checkpoint's).
    #[arg(long)]
    dtype: Option<String>,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Seed (for synthetic data sets).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `terrain eval`.
pub fn run(ctx: &Context, a: EvalArgs) -> Result<()> {
    let dtype = a.dtype.as_deref().map(parse_dtype).transpose()?;
    let ckpt = load_checkpoint(&a.checkpoint, a.arch.as_deref(), dtype, &ctx.device)?;
    let (data, standardized) = load_data_for(&ckpt, &a.data, a.seed)?;
    let kind = match &a.loss {
        Some(l) => l.parse()?,
        None => LossKind::for_task(data.task),
    };
    let e = loss::evaluate_with(&ckpt.model, &data, a.batch_size, kind)?;
    output::print(
        ctx.format,
        &json!({
            "checkpoint": a.checkpoint.display().to_string(),
            "arch": ckpt.model.spec().to_string(),
            "data": a.data.data,
            "standardized": standardized,
            "loss_kind": kind,
            "loss": e.loss,
            "error": e.error,
            "accuracy": e.accuracy,
            "samples": e.samples,
        }),
    );
    Ok(())
}
