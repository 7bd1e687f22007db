//! `cargo xtask ...`: developer tasks for terrain that need the network or a long time
//! (dataset downloads, benchmarks).
//!
//! Logs go to stderr under `RUST_LOG` (default `info`).

mod alloc;
mod bench;
mod bench_objectives;
mod bench_surface;
mod datasets;
mod reproduce_hp;
mod reproduce_mdtree;
mod reproduce_softad;
mod sweep;
mod zoo;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

use clap::{Parser, Subcommand};
use terrain_cli::startup::Threads;

/// Developer tasks for terrain.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, long_about = None)]
struct Cli {
    /// Worker threads for CPU tensor work [default: RAYON_NUM_THREADS if set, else the CPUs this
    /// process may use: its affinity mask and cgroup CPU quota].
    #[arg(long, global = true, env = "TERRAIN_THREADS", value_name = "N",
          value_parser = terrain_model::threads::parse_threads)]
    threads: Option<usize>,
    /// Leave the thread count to candle and rayon (what terrain did before `--threads`; the
    /// benchmark's "candle's defaults" rows use it).
    #[arg(long, global = true, hide = true)]
    candle_threads: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hugging Face Hub image datasets (mnist, fashion-mnist, cifar10): list and fetch them.
    Datasets(datasets::Args),
    /// Benchmarks reported as ratios to a plain gradient in the same run (`bench curvature`).
    Bench(bench::Args),
    /// Paper reproductions: terrain's numbers beside the published ones.
    #[command(subcommand)]
    Reproduce(Reproduce),
    /// Hyperparameter sweeps: train every configuration of a TOML search space (resumable,
    /// parallel, sharded for SLURM arrays and Kubernetes indexed jobs); `sweep merge DIR`.
    Sweep(sweep::Args),
    /// The MD tree's model zoo on digits through the sweep runner, then one feature row per
    /// configuration in the public tables' schema (`--small` for CI).
    Zoo(zoo::Args),
    // Room for sweeps, model zoos and paper reproductions.
}

/// The papers `cargo xtask reproduce` knows.
#[derive(Debug, Subcommand)]
enum Reproduce {
    /// MD tree (Zhou et al., ICML 2024): Table B from the authors' public metric tables.
    Mdtree(reproduce_mdtree::Args),
    /// SoftAD's synthetic experiment (Holland & Nakatani 2024) and its digits variant.
    Softad(reproduce_softad::Args),
    /// Huang & Li's hyperparameter-landscape findings on MLP sweeps of digits and breast cancer.
    HpLandscapes(reproduce_hp::Args),
}

fn main() -> anyhow::Result<()> {
    init_logging();
    let mut cli = Cli::parse();
    // A sweep trains one configuration per worker, each single-threaded (small models waste a
    // thread pool), unless --threads says otherwise.
    let sweeps = matches!(
        cli.command,
        Command::Sweep(_) | Command::Reproduce(Reproduce::HpLandscapes(_)) | Command::Zoo(_)
    );
    if sweeps && cli.threads.is_none() {
        cli.threads = Some(1);
    }
    // Before anything touches candle or starts a thread: the process-wide settings.
    let threads = if cli.candle_threads {
        Threads::CandleDefaults
    } else {
        Threads::Sized(cli.threads)
    };
    if let Some(plan) = terrain_cli::startup::start(threads)? {
        tracing::debug!(%plan, "threads");
    }
    match cli.command {
        Command::Datasets(args) => datasets::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Reproduce(Reproduce::Mdtree(args)) => reproduce_mdtree::run(args),
        Command::Reproduce(Reproduce::Softad(args)) => reproduce_softad::run(args),
        Command::Reproduce(Reproduce::HpLandscapes(args)) => reproduce_hp::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Zoo(args) => zoo::run(args),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
