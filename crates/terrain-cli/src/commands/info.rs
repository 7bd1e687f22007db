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
            let mut parsed = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
            if ctx.format == terrain_report::Format::Table {
                shorten_arrays(&mut parsed);
            }
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

/// For the terminal table: arrays of more than 8 numbers (a standardiser's 784 means) become a
/// short summary; `--format json` keeps every value.
fn shorten_arrays(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Array(items) if items.len() > 8 => {
            let nums: Vec<f64> = items.iter().filter_map(serde_json::Value::as_f64).collect();
            let summary = if nums.len() == items.len() {
                let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("[{} values in {lo:.4} … {hi:.4}]", nums.len())
            } else {
                format!("[{} values]", items.len())
            };
            *v = serde_json::Value::String(summary);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(shorten_arrays),
        serde_json::Value::Object(map) => map.values_mut().for_each(shorten_arrays),
        _ => {}
    }
}
