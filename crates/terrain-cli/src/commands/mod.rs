//! The subcommands, and what they share: run context, data-set options, checkpoint loading.

pub mod cka;
pub mod connect;
pub mod diagnose;
pub mod diagnose_check;
pub mod eval;
pub mod hessian;
pub mod info;
pub mod landscape;
pub mod metrics;
pub mod sensitivity;
pub mod surface;
pub mod train;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use candle_core::{DType, Device};
use terrain_model::{
    ArchSpec,
    checkpoint::{self, Checkpoint, TrainingRecord},
    data::{self, Dataset},
    device::FloatType,
    loss::LossKind,
};

use terrain_report::Format;

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

/// Loads a checkpoint (terrain's own, or a PyTorch state dict given `arch`).
pub fn load_checkpoint(
    path: &Path,
    arch: Option<&ArchSpec>,
    dtype: Option<DType>,
    device: &Device,
) -> Result<Checkpoint> {
    let opts = checkpoint::LoadOptions {
        arch: arch.cloned(),
        dtype,
        device: device.clone(),
    };
    // Every checkpoint error names the file already.
    checkpoint::load(path, &opts).context("loading a checkpoint")
}

/// A checkpoint and the data it is measured on: the arguments `eval` and `hessian` share.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointDataArgs {
    /// The checkpoint (.safetensors): terrain's own, or a PyTorch state dict with --arch.
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Architecture, for checkpoints without terrain metadata (PyTorch state dicts).
    #[arg(long)]
    pub arch: Option<ArchSpec>,
    /// Loss: ce or mse (default: the task's natural loss).
    #[arg(long)]
    pub loss: Option<LossKind>,
    /// Floating-point type to compute in: f32 or f64 (default: the checkpoint's).
    #[arg(long)]
    pub dtype: Option<FloatType>,
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
        let (ckpt, record) = self.load_checkpoint(device)?;
        let (data, standardized) = self.load_data(&record, seed)?;
        let loss = self.loss_for(&data);
        Ok(CheckpointData {
            ckpt,
            data,
            standardized,
            loss,
        })
    }

    /// The checkpoint, in the requested dtype on `device`, and what it records of its training.
    pub fn load_checkpoint(&self, device: &Device) -> Result<(Checkpoint, TrainingRecord)> {
        let dtype = self.dtype.map(FloatType::dtype);
        let ckpt = load_checkpoint(&self.checkpoint, self.arch.as_ref(), dtype, device)?;
        let record = ckpt.record()?;
        Ok((ckpt, record))
    }

    /// The data (`seed` is for synthetic data sets), standardised as `record` says the model was
    /// trained, and whether its inputs were.
    pub fn load_data(&self, record: &TrainingRecord, seed: u64) -> Result<(Dataset, bool)> {
        let raw = self.data.load(seed)?;
        let (data, standardized) = match &record.standardizer {
            Some(s) => (s.apply(&raw)?, true),
            None => (raw, false),
        };
        // The model predicts standardised targets: measure it on them.
        let data = match (&record.target_standardizer, &data.y) {
            (Some(s), terrain_model::data::Targets::Values(_)) => s.apply_targets(&data)?,
            _ => data,
        };
        Ok((data, standardized))
    }

    /// The loss asked for, else the task's natural one.
    pub fn loss_for(&self, data: &Dataset) -> LossKind {
        self.loss.unwrap_or_else(|| LossKind::for_task(data.task))
    }
}

/// Fails unless `path` can take a picture: a `.png` or `.svg` name in a directory that exists.
/// Checked before long work, so a typo in an output path does not cost the run.
pub fn check_plot_path(path: &Path) -> Result<()> {
    terrain_report::chart::PictureFormat::from_path(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "cannot write {}: directory {} does not exist",
        path.display(),
        dir.display()
    );
    Ok(())
}

/// [`flags`] for terrain-metrics results: its errors wrap terrain-model's and
/// terrain-curvature's transparently, so they are unwrapped first.
pub fn metrics_flags<T>(result: terrain_metrics::Result<T>, names: &[(&str, &str)]) -> Result<T> {
    flags(
        result.map_err(|e| match e {
            terrain_metrics::Error::Model(m) => anyhow::Error::from(*m),
            terrain_metrics::Error::Curvature(c) => anyhow::Error::from(*c),
            other => anyhow::Error::from(other),
        }),
        names,
    )
}

/// Names the flag behind an invalid setting: the libraries name their settings (`max_samples`),
/// the user typed a flag (`--trace-matvecs`). `names` maps setting names to flags.
pub fn flags<T, E>(result: std::result::Result<T, E>, names: &[(&str, &str)]) -> Result<T>
where
    E: Into<anyhow::Error>,
{
    result.map_err(|e| {
        let e: anyhow::Error = e.into();
        let field = e.chain().find_map(|cause| {
            let model = cause.downcast_ref::<terrain_model::Error>().or_else(|| {
                match cause.downcast_ref::<terrain_curvature::Error>() {
                    Some(terrain_curvature::Error::Model(m)) => Some(m),
                    _ => None,
                }
            })?;
            match model {
                terrain_model::Error::InvalidConfig { field, .. } => Some(field.clone()),
                _ => None,
            }
        });
        match field.and_then(|f| names.iter().find(|(n, _)| *n == f)) {
            Some((_, flag)) => e.context(format!("invalid {flag}")),
            None => e,
        }
    })
}

/// What is wrong with the `--state` file `state` when terrain-model's error `e` is about it (it
/// cannot be parsed as a state, or cannot be read or written), for the hint naming the flag;
/// `None` when `e` is about another file.
pub(crate) fn state_file_problem(
    e: &terrain_model::Error,
    state: &std::path::Path,
) -> Option<&'static str> {
    match e {
        terrain_model::Error::Safetensors { path, .. }
        | terrain_model::Error::MissingTensor { path, .. }
            if path == state =>
        {
            Some("not a state this run can continue from; delete it to start over")
        }
        terrain_model::Error::Io { path, .. } if path == state => Some("cannot read or write it"),
        _ => None,
    }
}
