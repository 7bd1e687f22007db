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
    loss::LossKind,
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

/// A checkpoint and the data it is measured on: the arguments `eval` and `hessian` share.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointDataArgs {
    /// The checkpoint (.safetensors): terrain's own, or a PyTorch state dict with --arch.
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Architecture, for checkpoints without terrain metadata (PyTorch state dicts).
    #[arg(long)]
    pub arch: Option<String>,
    /// Loss: ce or mse (default: the task's natural loss).
    #[arg(long)]
    pub loss: Option<String>,
    /// Floating-point type to compute in: f32 or f64 (default: the checkpoint's).
    #[arg(long)]
    pub dtype: Option<String>,
}

/// What [`CheckpointDataArgs::load`] gives.
pub struct CheckpointData {
    /// The checkpoint, in the requested dtype on the run's device.
    pub ckpt: Checkpoint,
    /// The data, standardised as the checkpoint was trained (if it was).
    pub data: Dataset,
    /// Whether the checkpoint's standardisation was applied.
    pub standardized: bool,
    /// The loss asked for, else the task's natural one.
    pub loss: LossKind,
}

impl CheckpointDataArgs {
    /// Loads the checkpoint and the data (`seed` is for synthetic data sets), reapplying the
    /// standardisation the checkpoint was trained with.
    pub fn load(&self, device: &Device, seed: u64) -> Result<CheckpointData> {
        let dtype = self.dtype.as_deref().map(parse_dtype).transpose()?;
        let ckpt = load_checkpoint(&self.checkpoint, self.arch.as_deref(), dtype, device)?;
        let raw = self.data.load(seed)?;
        let (data, standardized) = match ckpt.metadata.get(STANDARDIZE_KEY) {
            Some(js) => (standardizer_from_json(js)?.apply(&raw)?, true),
            None => (raw, false),
        };
        let loss = match &self.loss {
            Some(l) => l.parse()?,
            None => LossKind::for_task(data.task),
        };
        Ok(CheckpointData {
            ckpt,
            data,
            standardized,
            loss,
        })
    }
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
