//! `terrain`: loss-landscape diagnostics for trained neural networks.
//!
//! One subcommand per user job, each a thin layer over the terrain libraries.

mod commands;

use clap::{Parser, Subcommand, builder::TypedValueParser as _};
use terrain_cli::startup::Threads;

/// Why does a trained network behave as it does? Measure its loss landscape.
#[derive(Debug, Parser)]
#[command(name = "terrain", version, about, long_about = None)]
struct Cli {
    /// Output format of results on stdout: table, json or csv.
    #[arg(long, global = true, default_value = "table",
          value_parser = clap::builder::PossibleValuesParser::new(["table", "json", "csv"])
              .map(|s| s.parse::<terrain_report::Format>().expect("a listed format")))]
    format: terrain_report::Format,
    /// Compute device: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// Worker threads for CPU tensor work [default: RAYON_NUM_THREADS if set, else the CPUs this
    /// process may use: its affinity mask and cgroup CPU quota].
    #[arg(long, global = true, env = "TERRAIN_THREADS", value_name = "N",
          value_parser = terrain_model::threads::parse_threads)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a network on a data set and write a self-describing checkpoint.
    Train(commands::train::TrainArgs),
    /// Evaluate a checkpoint's loss and error on a data set.
    Eval(commands::eval::EvalArgs),
    /// Hessian of the loss at a checkpoint: top eigenvalues, trace, spectral density, diagonal.
    Hessian(commands::hessian::HessianArgs),
    /// Show a checkpoint's architecture, parameter count, tensors and metadata.
    Info(commands::info::InfoArgs),
    /// Model diagnosis with the MD tree: why a trained model fails, from its loss landscape.
    Diagnose(commands::diagnose::DiagnoseArgs),
    /// Fitness-landscape metrics of a hyperparameter table (CSV or parquet), similarities between
    /// tables or slices, heat maps and a landscape-graph picture.
    Landscape(commands::landscape::LandscapeArgs),
    /// Loss surface of a checkpoint: a 1-D line or 2-D plane of losses (resumable), with a plot.
    Surface(commands::surface::SurfaceArgs),
    /// Mode connectivity between two checkpoints: loss and error along a line or Bezier curve.
    Connect(commands::connect::ConnectArgs),
    /// Linear CKA between the outputs of two or more checkpoints (mixup inputs, MD tree style).
    Cka(commands::cka::CkaArgs),
    /// The MD tree's feature row of several seeds of one configuration (loss, error, Hessian,
    /// mode connectivity, CKA), with per-model norms and ε-sharpness.
    Metrics(commands::metrics::MetricsArgs),
    /// Input-feature sensitivity (Faroz 2024): input derivatives of the loss vs Spearman ρ.
    Sensitivity(commands::sensitivity::SensitivityArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Before anything touches candle or starts a thread: the process-wide settings.
    let result = terrain_cli::startup::start(Threads::Sized(cli.threads))
        .map_err(anyhow::Error::from)
        .and_then(|plan| {
            tracing::debug!(?plan, "threads");
            terrain_model::device::parse_device(&cli.device).map_err(anyhow::Error::from)
        })
        .and_then(|device| {
            let ctx = commands::Context {
                format: cli.format,
                device,
            };
            match cli.command {
                Command::Train(a) => commands::train::run(&ctx, a),
                Command::Eval(a) => commands::eval::run(&ctx, a),
                Command::Info(a) => commands::info::run(&ctx, a),
                Command::Hessian(a) => commands::hessian::run(&ctx, a),
                Command::Diagnose(a) => commands::diagnose::run(&ctx, a),
                Command::Landscape(a) => commands::landscape::run(&ctx, a),
                Command::Surface(a) => commands::surface::run(&ctx, a),
                Command::Connect(a) => commands::connect::run(&ctx, a),
                Command::Cka(a) => commands::cka::run(&ctx, a),
                Command::Metrics(a) => commands::metrics::run(&ctx, a),
                Command::Sensitivity(a) => commands::sensitivity::run(&ctx, a),
            }
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// What to do about an error, where the libraries' typed errors leave the command to the binary.
fn hint(e: &anyhow::Error) -> Option<String> {
    if let Some(h) = commands::landscape::hint(e) {
        return Some(h);
    }
    e.chain().find_map(
        |cause| match cause.downcast_ref::<terrain_model::Error>()? {
            terrain_model::Error::NotFetched { name, .. } => Some(format!(
                "download it with `cargo xtask datasets fetch {name}`"
            )),
            terrain_model::Error::MissingArchitecture { .. } => {
                Some("pass the architecture with --arch (see `terrain train --help`)".into())
            }
            terrain_model::Error::Divergence { .. } | terrain_model::Error::Diverged { .. } => {
                Some(
                    "try a smaller --lr, --optimizer adam, or --standardize (regression \
                     targets and tabular inputs are standardised unless --no-standardize)"
                        .into(),
                )
            }
            terrain_model::Error::ResumeMismatch { .. } => Some(
                "rerun with the settings the state was written with, or delete the state file \
                 (next to --out, *.state.safetensors)"
                    .into(),
            ),
            _ => None,
        },
    )
}
