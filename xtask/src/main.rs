//! `cargo xtask ...`: developer tasks for terrain that need the network or a long time
//! (dataset downloads, benchmarks).
//!
//! Logs go to stderr under `RUST_LOG` (default `info`).

mod alloc;
mod bench;
mod bench_surface;
mod datasets;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

use clap::{Parser, Subcommand};

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
    // Room for sweeps, model zoos and paper reproductions.
}

fn main() -> anyhow::Result<()> {
    // Before any thread exists: second-order autodiff needs this flag on every thread.
    terrain_model::autodiff::set_flag();
    init_logging();
    terrain_model::device::tune_cpu_allocator();
    let cli = Cli::parse();
    // Before anything touches candle: size candle's and rayon's worker threads once.
    if !cli.candle_threads {
        let plan = terrain_model::threads::configure(cli.threads)?;
        tracing::debug!(%plan, "threads");
    }
    match cli.command {
        Command::Datasets(args) => datasets::run(args),
        Command::Bench(args) => bench::run(args),
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
