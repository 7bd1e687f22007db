//! `terrain eval`: loss and error of a checkpoint on a data set.

use anyhow::Result;
use serde_json::json;
use terrain_model::loss;

use super::{CheckpointData, CheckpointDataArgs, Context};

/// Arguments of `terrain eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    input: CheckpointDataArgs,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Seed (for synthetic data sets).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `terrain eval`.
pub fn run(ctx: &Context, a: EvalArgs) -> Result<()> {
    let CheckpointData {
        ckpt,
        data,
        standardized,
        loss: kind,
    } = a.input.load(&ctx.device, a.seed)?;
    let e = loss::evaluate_with(&ckpt.model, &data, a.batch_size, kind)?;
    terrain_report::table::print_value(
        ctx.format,
        &json!({
            "checkpoint": a.input.checkpoint.display().to_string(),
            "arch": ckpt.model.spec().to_string(),
            "data": a.input.data.data,
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
