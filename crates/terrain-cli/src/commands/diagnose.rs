//! `terrain diagnose`: MD tree model diagnosis over metric tables.
//!
//! - `evaluate`: the MD tree paper's protocol: fit a diagnoser on sampled configurations of one
//!   table, score it on another, mean over seeds;
//! - `fit`: fit an MD tree on a table and write it as a schema-versioned JSON record;
//! - `explain`: apply a tree file to one model's features (a table row or `name=value` pairs)
//!   and print the diagnosis with its evidence, optionally drawing the tree with the path taken.
//!
//! - `diagnose CKPT [CKPT2 ...] --data D` (or `diagnose check CKPT...`): diagnose checkpoints
//!   directly (see `diagnose_check`); a checkpoint file named like a subcommand needs a path
//!   (`./fit`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use terrain_diagnose::brent::BrentConfig;
use terrain_diagnose::diagnosis::{Diagnosis, FeatureRow, FittedTree};
use terrain_diagnose::evaluate::{EvalConfig, Method, PAPER_SEEDS, evaluate};
use terrain_diagnose::mdtree::Node;
use terrain_diagnose::{Bounds, MetricTable, Question, Sampling};
use terrain_report::Format;
use terrain_report::chart::{Chart, TreeDiagram, TreeNode};
use terrain_report::record::{Record, read_json, write_json};

use super::{Context, check_plot_path};

/// A fitted MD tree on disk (`diagnose fit --out`, `diagnose explain --tree`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct TreeRecord(pub(super) FittedTree);

impl Record for TreeRecord {
    const KIND: &'static str = "mdtree";
    const SCHEMA_VERSION: u32 = 1;
}

/// Arguments of `terrain diagnose`: a subcommand, or checkpoints to diagnose.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DiagnoseArgs {
    #[command(subcommand)]
    command: Option<DiagnoseCommand>,
    #[command(flatten)]
    check: super::diagnose_check::CheckArgs,
}

#[derive(Debug, clap::Subcommand)]
enum DiagnoseCommand {
    /// Fit a diagnoser on sampled configurations of one metric table and score it on another
    /// (the MD tree paper's protocol: clean collection -> noisy collection).
    Evaluate(EvaluateArgs),
    /// Fit an MD tree on a metric table and write it (JSON, with its features, thresholds,
    /// question and training accuracy).
    Fit(FitArgs),
    /// Diagnose one model from its metrics with a fitted tree: each decision, the metric's
    /// value, the threshold, and what to change.
    Explain(ExplainArgs),
    /// Diagnose checkpoints (seeds of one configuration) directly, as `terrain diagnose
    /// CKPT...`: measure their MD tree features, apply the shipped trees (or --tree), print
    /// each decision and the advice.
    Check(super::diagnose_check::CheckArgs),
}

/// Arguments of `terrain diagnose fit`.
#[derive(Debug, clap::Args)]
pub struct FitArgs {
    /// The table to fit on (CSV or parquet, the MD tree paper's schema).
    #[arg(long, value_name = "TABLE")]
    table: PathBuf,
    /// The question: temp, width or data.
    #[arg(long)]
    question: Question,
    /// The tree: mdtree, mdtree-cka (temp only; CKA instead of the Hessian trace), or
    /// mdtree-single (train_error and Hessian only: diagnoses one checkpoint).
    #[arg(long, default_value = "mdtree")]
    method: Method,
    /// Threshold search intervals and starting values: paper (the published ones, in the units
    /// of the paper's ResNet-18 tables) or data ([min - r/100, max + r/100] of each feature over
    /// the training rows, r = max - min, starting at the median: for tables at another scale).
    #[arg(long, default_value = "paper")]
    bounds: Bounds,
    /// Which rows to fit on (see `diagnose evaluate --help`).
    #[arg(long, default_value = "all")]
    sample: Sampling,
    /// Seed of a random sampling.
    #[arg(long, default_value_t = 42)]
    seed: u32,
    /// Only models at least this wide [default: 32 for --question data, else all].
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
    min_width: Option<f64>,
    /// Where to write the tree (JSON).
    #[arg(long, value_name = "TREE.json")]
    out: PathBuf,
    /// Also draw the tree, PNG or SVG by extension.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// Arguments of `terrain diagnose explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The tree file (written by `terrain diagnose fit`).
    #[arg(long, value_name = "TREE.json")]
    tree: PathBuf,
    /// A metric table holding the model's features (with --row).
    #[arg(
        long,
        value_name = "TABLE",
        requires = "row",
        conflicts_with = "features"
    )]
    table: Option<PathBuf>,
    /// The data row of --table, counted from 1.
    #[arg(long, value_name = "N", requires = "table")]
    row: Option<usize>,
    /// The model's features as name=value pairs, e.g.
    /// train_error=0.2,mode_connectivity_peak=-25,hessian_t=6.1.
    #[arg(long, value_delimiter = ',', value_name = "NAME=VALUE")]
    features: Vec<String>,
    /// Draw the tree with the path taken, PNG or SVG by extension.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
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
    /// The method: mdtree, mdtree-cka (temp only), mdtree-single (the single-checkpoint tree:
    /// train_error and Hessian only), hyper-dt (CART on hyperparameters), valid-dt (CART on
    /// train/test error and loss).
    #[arg(long, default_value = "mdtree")]
    method: Method,
    /// MD tree threshold search intervals and starting values: paper (published) or data (from
    /// the training rows; see `diagnose fit --help`).
    #[arg(long, default_value = "paper")]
    bounds: Bounds,
    /// Training configurations: random:K (K random (data, width) cells with all their batch
    /// sizes), data-limit:K (data <= K tenths), width-limit:W, random-data:K, random-width:K, all.
    #[arg(long, default_value = "random:8")]
    sample: Sampling,
    /// Seeds of the sampling (and of the CART trees); the accuracy is their mean.
    #[arg(long, value_delimiter = ',', default_values_t = PAPER_SEEDS.to_vec())]
    seeds: Vec<u32>,
    /// Only models at least this wide, in both tables [default: 32 for --question data, else all].
    #[arg(long, value_name = "W", allow_negative_numbers = true)]
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
        Some(DiagnoseCommand::Evaluate(a)) => run_evaluate(ctx, a),
        Some(DiagnoseCommand::Fit(a)) => run_fit(ctx, a),
        Some(DiagnoseCommand::Explain(a)) => run_explain(ctx, a),
        Some(DiagnoseCommand::Check(a)) => super::diagnose_check::run(ctx, a),
        None => super::diagnose_check::run(ctx, a.check),
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
        "bounds" => "--bounds",
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
    cfg.bounds = a.bounds;
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
                "bounds": e.bounds,
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

fn run_fit(ctx: &Context, a: FitArgs) -> Result<()> {
    let Some(kind) = a.method.tree_kind(a.question) else {
        bail!(
            "invalid --method: `{}` fits no MD tree for --question {} (use mdtree, mdtree-single{})",
            a.method,
            a.question,
            if a.question == Question::Temp {
                " or mdtree-cka"
            } else {
                ""
            }
        );
    };
    if let Some(p) = &a.plot {
        check_plot_path(p)?;
    }
    let table = MetricTable::read(&a.table).context("reading --table")?;
    let min_width = a
        .min_width
        .or((a.question == Question::Data).then_some(32.0));
    let tree = with_flag(FittedTree::fit_with(
        &table,
        kind,
        a.sample,
        a.seed,
        min_width,
        &BrentConfig::default(),
        a.bounds,
    ))?;
    write_json(&a.out, &TreeRecord(tree.clone()))
        .with_context(|| format!("writing --out {}", a.out.display()))?;
    let mut value = serde_json::to_value(&tree)?;
    value["out"] = json!(a.out.display().to_string());
    if let Some(p) = &a.plot {
        let title = format!(
            "MD tree `{}` ({} question), fitted on {} rows: training accuracy {:.2} %",
            tree.kind,
            tree.question,
            tree.n_train,
            tree.train_accuracy.unwrap_or(f64::NAN)
        );
        tree_picture(&tree, None, title)
            .save(p)
            .with_context(|| format!("drawing --plot {}", p.display()))?;
        value["plot"] = json!(p.display().to_string());
    }
    terrain_report::table::print_value(ctx.format, &value);
    Ok(())
}

/// Reads a tree file, refusing one whose features are not its tree's.
pub(super) fn read_tree(path: &Path) -> Result<FittedTree> {
    let TreeRecord(tree) =
        read_json(path).with_context(|| format!("reading --tree {}", path.display()))?;
    tree.check(&path.display().to_string())?;
    Ok(tree)
}

fn parse_features(pairs: &[String]) -> Result<FeatureRow> {
    let mut row = FeatureRow::new();
    for p in pairs {
        let Some((name, value)) = p.split_once('=') else {
            bail!("invalid --features: `{p}` is not NAME=VALUE");
        };
        let v: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("invalid --features: `{p}`: the value is not a number"))?;
        row.insert(name.trim().to_string(), v);
    }
    Ok(row)
}

fn run_explain(ctx: &Context, a: ExplainArgs) -> Result<()> {
    let tree = read_tree(&a.tree)?;
    if let Some(p) = &a.plot {
        check_plot_path(p)?;
    }
    let row = match (&a.table, a.row) {
        (Some(t), Some(r)) => {
            let table = MetricTable::read(t).context("reading --table")?;
            if r == 0 {
                bail!("invalid --row 0: rows are counted from 1");
            }
            tree.table_row(&table, r - 1)?
        }
        _ if !a.features.is_empty() => parse_features(&a.features)?,
        _ => bail!(
            "give the model's features: --table T --row N, or --features {}",
            tree.features
                .iter()
                .map(|f| format!("{f}=..."))
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let d = tree
        .diagnose(&row)
        .with_context(|| format!("applying --tree {}", a.tree.display()))?;
    let mut value = serde_json::to_value(&d)?;
    if let Some(p) = &a.plot {
        let title = format!("MD tree `{}`: {} ({})", tree.kind, d.advice, d.label);
        tree_picture(&tree, Some(&d), title)
            .save(p)
            .with_context(|| format!("drawing --plot {}", p.display()))?;
        value["plot"] = json!(p.display().to_string());
    }
    terrain_report::table::print_value(ctx.format, &value);
    Ok(())
}

/// The tree as a diagram: questions at the inner nodes, labels and advice at the leaves; with a
/// diagnosis, the nodes on its path are marked and show the model's values.
pub(super) fn tree_picture(
    tree: &FittedTree,
    diagnosis: Option<&Diagnosis>,
    title: String,
) -> TreeDiagram {
    const ON_PATH: &str = "on this model's path";
    fn build(
        node: &Node,
        tree: &FittedTree,
        path: Option<&[terrain_diagnose::diagnosis::Evidence]>,
        on_path: bool,
        depth: usize,
    ) -> TreeNode {
        match node {
            Node::Leaf { class } => {
                let label = tree.question.classes()[*class];
                let advice = tree.question.advice(*class);
                let (head, tail) = advice.split_once(": ").unwrap_or((advice, ""));
                let mut text = if tail.is_empty() {
                    format!("{label}\n{head}")
                } else {
                    format!("{label}: {head}\n{tail}")
                };
                if on_path && path.is_some() {
                    text = format!("▶ this model\n{text}");
                }
                TreeNode::leaf(text).with_category(label)
            }
            Node::Split { slot, left, right } => {
                let feature = &tree.features[*slot];
                let t = tree.thresholds[*slot];
                let unit = match feature.as_str() {
                    "train_error" => " (%)",
                    "mode_connectivity_peak" | "mode_connectivity" => " (% error)",
                    "hessian_t" | "hessian_e" => " (ln)",
                    _ => "",
                };
                let mut text = format!("{feature}{unit} ≤ {}?", short(t));
                let step = path.and_then(|p| p.get(depth)).filter(|_| on_path);
                let (go_left, go_right) = match step {
                    Some(e) => (e.direction == "<=", e.direction != "<="),
                    None => (false, false),
                };
                if let Some(e) = step {
                    text.push_str(&format!("\nthis model: {}", short(e.value)));
                }
                let node = TreeNode::split(
                    text,
                    vec![
                        (
                            "yes".to_string(),
                            build(left, tree, path, go_left, depth + 1),
                        ),
                        (
                            "no".to_string(),
                            build(right, tree, path, go_right, depth + 1),
                        ),
                    ],
                );
                if step.is_some() {
                    node.with_category(ON_PATH)
                } else {
                    node
                }
            }
        }
    }
    let path = diagnosis.map(|d| d.evidence.as_slice());
    TreeDiagram {
        title,
        root: build(&tree.shape(), tree, path, true, 0),
        legend_title: "diagnosis".into(),
        size: None,
    }
}

/// A number for a picture: four significant decimals at most.
fn short(v: f64) -> String {
    terrain_report::table::format_float(v)
}
