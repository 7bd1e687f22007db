//! `terrain diagnose`: MD tree model diagnosis over metric tables.
//!
//! - `evaluate`: the MD tree paper's protocol: fit a diagnoser on sampled configurations of one
//!   table, score it on another, mean over seeds.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;
use terrain_diagnose::evaluate::{EvalConfig, Method, PAPER_SEEDS, evaluate};
use terrain_diagnose::{MetricTable, Question, Sampling};
use terrain_report::Format;

use super::Context;

/// Arguments of `terrain diagnose`.
#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    #[command(subcommand)]
    command: DiagnoseCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DiagnoseCommand {
    /// Fit a diagnoser on sampled configurations of one metric table and score it on another
    /// (the MD tree paper's protocol: clean collection -> noisy collection).
    Evaluate(EvaluateArgs),
}

/// Arguments of `terrain diagnose evaluate`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// The table the diagnoser is fitted on (CSV or parquet, the schema of the MD tree paper's
    /// public tables: metric columns, `width`, `data`, and labels or rfi_* columns).
    #[arg(long, value_name = "TABLE")]
    train_table: PathBuf,
    /// The table it is scored on (every row that is not `optimal`).
    #[arg(long, value_name = "TABLE")]
    test_table: PathBuf,
    /// The question: temp (temperature too small or too large), width (model width or
    /// temperature), data (data amount or temperature; models of width >= 32).
    #[arg(long)]
    question: Question,
    /// The method: mdtree, mdtree-cka (temp only), hyper-dt (CART on hyperparameters),
    /// valid-dt (CART on train/test error and loss).
    #[arg(long, default_value = "mdtree")]
    method: Method,
    /// Training configurations: random:K (K random (data, width) cells with all their batch
    /// sizes), data-limit:K (data <= K tenths), width-limit:W, random-data:K, random-width:K, all.
    #[arg(long, default_value = "random:8")]
    sample: Sampling,
    /// Seeds of the sampling (and of the CART trees); the accuracy is their mean.
    #[arg(long, value_delimiter = ',', default_values_t = PAPER_SEEDS.to_vec())]
    seeds: Vec<u32>,
    /// Only models at least this wide, in both tables [default: 32 for --question data, else all].
    #[arg(long, value_name = "W")]
    min_width: Option<f64>,
    /// CART random_state for every tree [default: each sampling seed].
    #[arg(long, value_name = "N")]
    dt_random_state: Option<u32>,
    /// CART depth.
    #[arg(long, default_value_t = 4)]
    max_depth: usize,
}

/// Runs `terrain diagnose`.
pub fn run(ctx: &Context, a: DiagnoseArgs) -> Result<()> {
    match a.command {
        DiagnoseCommand::Evaluate(a) => run_evaluate(ctx, a),
    }
}

/// Maps the library's setting names onto the flags typed.
fn flag_of(e: &terrain_diagnose::Error) -> Option<&'static str> {
    let terrain_diagnose::Error::Model(terrain_model::Error::InvalidConfig { field, .. }) = e
    else {
        return None;
    };
    Some(match field.as_str() {
        "method" => "--method",
        "seeds" => "--seeds",
        "min_width" => "--min-width",
        "max_depth" => "--max-depth",
        "sample" => "--sample",
        _ => return None,
    })
}

fn with_flag<T>(r: terrain_diagnose::Result<T>) -> Result<T> {
    r.map_err(|e| match flag_of(&e) {
        Some(flag) => anyhow::Error::from(e).context(format!("invalid {flag}")),
        None => e.into(),
    })
}

fn run_evaluate(ctx: &Context, a: EvaluateArgs) -> Result<()> {
    let train = MetricTable::read(&a.train_table).context("reading --train-table")?;
    let test = MetricTable::read(&a.test_table).context("reading --test-table")?;
    let mut cfg = EvalConfig::new(a.question, a.method, a.sample);
    cfg.seeds = a.seeds;
    if a.min_width.is_some() {
        cfg.min_width = a.min_width;
    }
    cfg.dt_random_state = a.dt_random_state;
    cfg.max_depth = a.max_depth;
    let e = with_flag(evaluate(&train, &test, &cfg))?;
    let value = match ctx.format {
        Format::Table => {
            let per_seed: Vec<_> = e
                .seeds
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    json!({
                        "seed": s,
                        "accuracy": e.per_seed[i],
                        "train_accuracy": e.train_accuracy[i],
                        "n_train": e.n_train[i],
                        "thresholds": e.thresholds[i]
                            .iter()
                            .map(|t| format!("{t:.4}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    })
                })
                .collect();
            json!({
                "question": e.question,
                "method": e.method,
                "sample": e.sample,
                "features": e.features,
                "accuracy": e.accuracy,
                "n_test": e.n_test,
                "per_seed": per_seed,
            })
        }
        _ => serde_json::to_value(&e)?,
    };
    terrain_report::table::print_value(ctx.format, &value);
    Ok(())
}
