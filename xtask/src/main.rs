//! `cargo xtask ...`: developer tasks for terrain that need the network or a long time
//! (dataset downloads, benchmarks; sweeps and paper reproductions later).
//!
//! Logs go to stderr under `RUST_LOG` (default `info`).

mod alloc;
mod bench;
mod datasets;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

use clap::{Parser, Subcommand};

/// Developer tasks for terrain.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about, long_about = None)]
struct Cli {
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
    init_logging();
    terrain_model::device::tune_cpu_allocator();
    match Cli::parse().command {
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
