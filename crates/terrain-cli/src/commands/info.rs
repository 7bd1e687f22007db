//! `terrain info`: what a checkpoint holds.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;
use terrain_model::spec::Role;

use super::{Context, load_checkpoint};

/// Arguments of `terrain info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The checkpoint (.safetensors).
    checkpoint: PathBuf,
    /// Architecture, for checkpoints without terrain metadata (PyTorch state dicts).
    #[arg(long)]
    arch: Option<terrain_model::ArchSpec>,
}

/// Runs `terrain info`.
pub fn run(ctx: &Context, a: InfoArgs) -> Result<()> {
    let ckpt = load_checkpoint(&a.checkpoint, a.arch.as_ref(), None, &ctx.device)?;
    let m = &ckpt.model;
    let roles: Vec<_> = m
        .spec()
        .tensor_slots()
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "shape": s.shape,
                "elements": s.numel(),
                "role": match s.role { Role::Parameter => "parameter", Role::Buffer => "buffer" },
            })
        })
        .collect();
    let metadata: serde_json::Map<String, serde_json::Value> = ckpt
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != terrain_model::checkpoint::ARCH_KEY)
        .map(|(k, v)| {
            let parsed = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
            (k.clone(), parsed)
        })
        .collect();
    terrain_report::table::print_value(
        ctx.format,
        &json!({
            "checkpoint": a.checkpoint.display().to_string(),
            "arch": m.spec().to_string(),
            "dtype": format!("{:?}", m.dtype()).to_lowercase(),
            "parameters": m.param_count(),
            "tensors": roles,
            "metadata": metadata,
        }),
    );
    Ok(())
}
