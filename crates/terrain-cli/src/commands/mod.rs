//! The subcommands, and what they share: run context, data-set options, checkpoint loading.

pub mod eval;
pub mod hessian;
pub mod info;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use candle_core::{DType, Device};
use terrain_model::{
    ArchSpec,
    checkpoint::{self, Checkpoint},
    data::{self, Dataset, Standardizer},
};

use crate::output::Format;

/// Settings every subcommand gets.
pub struct Context {
    /// Output format.
    pub format: Format,
    /// Compute device.
    pub device: Device,
}

/// Where a data set comes from and how it is prepared.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Data set: a built-in name (digits, iris, breast-cancer, diabetes, boston), synthetic:KIND
    /// (gaussian, sinusoid, spiral, teacher; e.g. synthetic:spiral:n=500,noise=0.05), a
    /// .safetensors file with `x` and `y`, or a fetched hub set (mnist, fashion-mnist, cifar10,
    /// with :test for the test split).
    #[arg(long)]
    pub data: String,
    /// Directory of fetched hub data sets (default: $TERRAIN_DATA_DIR or ~/.cache/terrain/datasets).
    #[arg(long, env = "TERRAIN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    /// Loads the data set.
    pub fn load(&self, seed: u64) -> Result<Dataset> {
        let opts = data::LoadOptions {
            data_dir: self.data_dir.clone(),
            seed,
        };
        Ok(data::load(&self.data, &opts)?)
    }
}

/// Parses `f32`/`f64`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f64" => Ok(DType::F64),
        other => anyhow::bail!("invalid --dtype `{other}`: expected f32 or f64"),
    }
}

/// Loads a checkpoint (terrain's own, or a PyTorch state dict given `arch`).
pub fn load_checkpoint(
    path: &Path,
    arch: Option<&str>,
    dtype: Option<DType>,
    device: &Device,
) -> Result<Checkpoint> {
    let arch = arch.map(str::parse::<ArchSpec>).transpose()?;
    let opts = checkpoint::LoadOptions {
        arch,
        dtype,
        device: device.clone(),
    };
    checkpoint::load(path, &opts).with_context(|| format!("loading checkpoint {}", path.display()))
}

/// Metadata key of the input standardisation a checkpoint was trained with.
pub const STANDARDIZE_KEY: &str = "terrain.data.standardize";

/// Loads the data a checkpoint is evaluated on, applying the standardisation it was trained with
/// (if any). Returns the data and whether it was standardised.
pub fn load_data_for(ckpt: &Checkpoint, data: &DataArgs, seed: u64) -> Result<(Dataset, bool)> {
    let d = data.load(seed)?;
    Ok(match ckpt.metadata.get(STANDARDIZE_KEY) {
        Some(js) => (standardizer_from_json(js)?.apply(&d)?, true),
        None => (d, false),
    })
}

/// Serialises a standardiser into checkpoint metadata.
pub fn standardizer_to_json(s: &Standardizer) -> Result<String> {
    let mean: Vec<f32> = s.mean.flatten_all()?.to_vec1()?;
    let std: Vec<f32> = s.std.flatten_all()?.to_vec1()?;
    Ok(serde_json::json!({ "mean": mean, "std": std, "shape": s.mean.dims() }).to_string())
}

/// Reads a standardiser back from checkpoint metadata.
pub fn standardizer_from_json(json: &str) -> Result<Standardizer> {
    #[derive(serde::Deserialize)]
    struct S {
        mean: Vec<f32>,
        std: Vec<f32>,
        shape: Vec<usize>,
    }
    let s: S = serde_json::from_str(json).context("bad standardisation metadata")?;
    Ok(Standardizer {
        mean: candle_core::Tensor::from_vec(s.mean, s.shape.as_slice(), &Device::Cpu)?,
        std: candle_core::Tensor::from_vec(s.std, s.shape.as_slice(), &Device::Cpu)?,
    })
}
