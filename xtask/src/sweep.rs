//! `cargo xtask sweep SPACE.toml --data D --out DIR [--workers N] [--shard I/N]` and
//! `cargo xtask sweep merge DIR`: terrain-hparams' sweep runner on the command line.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use terrain_hparams::{
    space::Space,
    sweep::{self, Shard, SweepOptions},
};
use terrain_report::Format;

/// Arguments of `cargo xtask sweep`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    merge: Option<Sub>,
    /// The search space (TOML; see terrain-hparams' `space` module for the format).
    space: Option<PathBuf>,
    /// Data set, as for `terrain train --data`.
    #[arg(long)]
    data: Option<String>,
    /// The sweep directory (shared by all shards).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Configurations trained at once, each single-threaded.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Run shard I of N (0-based) [default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or
    /// JOB_COMPLETION_INDEX with --shards, else the whole sweep].
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Number of shards, for schedulers that give only the index (Kubernetes indexed jobs).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Directory of fetched hub data sets.
    #[arg(long, env = "TERRAIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Output format of the summary: table or json.
    #[arg(long, default_value = "table")]
    format: Format,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Merge the shards in DIR into DIR/sweep.parquet, checking that none is missing or doubled.
    Merge {
        /// The sweep directory.
        dir: PathBuf,
        /// Output format of the summary: table or json.
        #[arg(long, default_value = "table")]
        format: Format,
    },
}

/// Runs `cargo xtask sweep`.
pub fn run(a: Args) -> Result<()> {
    if let Some(Sub::Merge { dir, format }) = a.merge {
        let s = sweep::merge(&dir)?;
        terrain_report::table::print_value(format, &serde_json::to_value(&s)?);
        return Ok(());
    }
    let (Some(space_path), Some(data), Some(out)) = (a.space, a.data, a.out) else {
        bail!("give SPACE.toml, --data and --out (or `merge DIR`)");
    };
    let space = Space::read(&space_path)?;
    let shard = match a.shard {
        Some(s) => {
            if a.shards.is_some_and(|n| n != s.count) {
                bail!(
                    "--shard {s} and --shards {} disagree",
                    a.shards.unwrap_or_default()
                );
            }
            s
        }
        None => Shard::from_vars(|k| std::env::var(k).ok(), a.shards)
            .context("reading the shard from the scheduler's environment")?
            .unwrap_or_default(),
    };
    let options = SweepOptions {
        workers: a.workers,
        shard,
        data_dir: a.data_dir,
        progress: terrain_report::progress::terminal(),
        keep_checkpoints: false,
        device: None,
    };
    let s = sweep::run(&space, &data, &out, &options).map_err(|e| match e {
        terrain_hparams::Error::Model(terrain_model::Error::InvalidConfig {
            ref field, ..
        }) if field == "workers" => anyhow::Error::from(e).context("invalid --workers"),
        e => e.into(),
    })?;
    let mut v = serde_json::to_value(&s)?;
    if s.merged.is_none()
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "next".into(),
            format!(
                "when every shard has finished: cargo xtask sweep merge {}",
                out.display()
            )
            .into(),
        );
    }
    terrain_report::table::print_value(a.format, &v);
    Ok(())
}
