//! `terrain cka`: linear CKA between the outputs of two or more checkpoints on the same
//! mixup-augmented inputs (every ordered pair and their mean, as the MD tree).

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;
use terrain_metrics::cka::{self, CkaConfig, Outputs};
use terrain_model::{ArchSpec, device::FloatType};

use super::surface::same_standardization;
use super::{Context, DataArgs, load_checkpoint, metrics_flags};

/// Arguments of `terrain cka`.
#[derive(Debug, clap::Args)]
pub struct CkaArgs {
    /// Two or more checkpoints of one architecture (e.g. seeds of one configuration).
    #[arg(value_name = "CHECKPOINT", num_args = 1..)]
    checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Architecture, for checkpoints without terrain metadata (PyTorch state dicts).
    #[arg(long)]
    arch: Option<ArchSpec>,
    /// Floating-point type to compute in (default: the first checkpoint's).
    #[arg(long)]
    dtype: Option<FloatType>,
    /// Which outputs: softmax (class probabilities, the MD tree's choice) or logits.
    #[arg(long, default_value = "softmax")]
    outputs: Outputs,
    /// Mixup α of the inputs (0: plain inputs).
    #[arg(long, default_value_t = 16.0, allow_negative_numbers = true)]
    mixup_alpha: f64,
    /// Rows compared (all rows when at least the data size).
    #[arg(long, default_value_t = 768)]
    samples: usize,
    /// Seed of the row sample and of the mixup draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `terrain cka`.
pub fn run(ctx: &Context, a: CkaArgs) -> Result<()> {
    let config = CkaConfig {
        outputs: a.outputs,
        mixup_alpha: a.mixup_alpha,
        samples: a.samples,
        seed: a.seed,
        ..CkaConfig::default()
    };
    let names = [("mixup_alpha", "--mixup-alpha"), ("samples", "--samples")];
    metrics_flags(config.check(), &names)?;
    if a.checkpoints.len() < 2 {
        // The library's error, before any checkpoint is loaded.
        return Err(terrain_metrics::Error::TooFewModels {
            what: "CKA".into(),
            needed: 2,
            given: a.checkpoints.len(),
        })
        .map_err(|e| anyhow::Error::from(e).context("give two or more checkpoints"));
    }
    let dtype = a.dtype.map(FloatType::dtype);
    let mut ckpts = Vec::new();
    for p in &a.checkpoints {
        let dt = dtype.or_else(|| {
            ckpts
                .first()
                .map(|c: &terrain_model::checkpoint::Checkpoint| c.model.dtype())
        });
        ckpts.push(load_checkpoint(p, a.arch.as_ref(), dt, &ctx.device)?);
    }
    for (c, p) in ckpts.iter().zip(&a.checkpoints).skip(1) {
        terrain_metrics::direction::same_architecture(
            "CKA",
            &ckpts[0].model,
            &c.model,
            &a.checkpoints[0].display().to_string(),
            &p.display().to_string(),
        )?;
        if !same_standardization(&ckpts[0], c)? {
            eprintln!(
                "warning: {} was trained on inputs standardised differently from {}; all models \
                 see the first checkpoint's standardisation",
                p.display(),
                a.checkpoints[0].display()
            );
        }
    }
    let record = ckpts[0].record()?;
    let raw = a.data.load(a.seed)?;
    terrain_model::loss::check_fits(&ckpts[0].model, &raw)?;
    let data = match &record.standardizer {
        Some(s) => s.apply(&raw)?,
        None => raw,
    };
    let models: Vec<&terrain_model::Model> = ckpts.iter().map(|c| &c.model).collect();
    let labels: Vec<String> = a
        .checkpoints
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let r = metrics_flags(cka::cka_models(&models, &labels, &data, &config), &names)?;
    let pairs: Vec<_> = r
        .pairs
        .iter()
        .map(|p| json!({"a": labels[p.a], "b": labels[p.b], "cka": p.cka}))
        .collect();
    terrain_report::table::print_value(
        ctx.format,
        &json!({
            "checkpoints": labels,
            "arch": models[0].spec().to_string(),
            "data": a.data.data,
            "outputs": a.outputs,
            "mixup_alpha": a.mixup_alpha,
            "samples": r.samples,
            "cka": r.cka,
            "pairs": pairs,
        }),
    );
    Ok(())
}
