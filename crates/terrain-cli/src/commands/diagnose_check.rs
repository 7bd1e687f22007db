//! `terrain diagnose CKPT [CKPT2 ...] --data D [--tree FILE]` (also `terrain diagnose check
//! ...`): diagnose checkpoints directly. Measures the MD tree feature row of the checkpoints
//! (seeds of one configuration) with terrain-metrics, applies the given tree or the shipped
//! default trees (fitted on `cargo xtask zoo`, in `crates/terrain-diagnose/trees/`), and prints
//! each decision (metric, value, threshold), the label and the advice; `--plot` draws each tree
//! with the path taken.
//!
//! Mode connectivity and CKA compare two trained seeds of one configuration. With two or more
//! checkpoints the shipped full trees (`temp`, `width`, `data`) are applied; with one, the
//! shipped single-checkpoint trees (`temp-single`, `width-single`, `data-single`: train_error
//! and Hessian features only), and the output says so (`single_checkpoint`, `note`). A tree file
//! that reads a two-seed feature, given one checkpoint, is refused naming that feature.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use terrain_diagnose::diagnosis::{Diagnosis, FeatureRow, FittedTree};
use terrain_metrics::{
    cka::{CkaConfig, Outputs},
    connect::{ConnectConfig, CurveTraining, Method},
    mdtree::{self, FeatureConfig},
    sharpness::BasicsConfig,
};
use terrain_model::{checkpoint::Checkpoint, data::Dataset, loss::LossKind};
use terrain_report::Format;
use terrain_report::chart::Chart as _;

use super::diagnose::{TreeRecord, read_tree, tree_picture};
use super::{Context, DataArgs, check_plot_path, load_checkpoint};

/// The shipped default trees: (file name, JSON), fitted on the default `cargo xtask zoo`.
pub const DEFAULT_TREES: [(&str, &str); 3] = [
    (
        "temp.json",
        include_str!("../../../terrain-diagnose/trees/temp.json"),
    ),
    (
        "width.json",
        include_str!("../../../terrain-diagnose/trees/width.json"),
    ),
    (
        "data.json",
        include_str!("../../../terrain-diagnose/trees/data.json"),
    ),
];

/// The shipped single-checkpoint trees: (file name, JSON), fitted on the default
/// `cargo xtask zoo`.
pub const SINGLE_TREES: [(&str, &str); 3] = [
    (
        "temp-single.json",
        include_str!("../../../terrain-diagnose/trees/temp-single.json"),
    ),
    (
        "width-single.json",
        include_str!("../../../terrain-diagnose/trees/width-single.json"),
    ),
    (
        "data-single.json",
        include_str!("../../../terrain-diagnose/trees/data-single.json"),
    ),
];

/// The shipped default trees, checked.
pub fn default_trees() -> Result<Vec<(String, FittedTree)>> {
    shipped(&DEFAULT_TREES)
}

/// The shipped single-checkpoint trees, checked.
pub fn single_trees() -> Result<Vec<(String, FittedTree)>> {
    shipped(&SINGLE_TREES)
}

fn shipped(files: &[(&str, &str)]) -> Result<Vec<(String, FittedTree)>> {
    files
        .iter()
        .map(|(name, text)| {
            let origin = format!("shipped tree {name}");
            let TreeRecord(t) = terrain_report::record::from_json_str(text, Path::new(&origin))?;
            t.check(&origin)?;
            Ok((origin, t))
        })
        .collect()
}

/// Arguments of `terrain diagnose CKPT...` (and `terrain diagnose check`).
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Checkpoints of one configuration (different seeds). Mode connectivity and CKA need at
    /// least two; with one, the single-checkpoint trees are used.
    #[arg(value_name = "CHECKPOINT", num_args = 1.., required = true)]
    checkpoints: Vec<PathBuf>,
    /// Data set, as for `terrain train --data` (the checkpoints' recipe split when they were
    /// trained on it).
    #[arg(long, required = true)]
    data: Option<String>,
    /// Directory of fetched hub data sets (default: $TERRAIN_DATA_DIR or ~/.cache/terrain/datasets).
    #[arg(long, env = "TERRAIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A tree file (from `terrain diagnose fit`) [default: the three shipped trees: temp,
    /// width, data; with one checkpoint temp-single, width-single, data-single].
    #[arg(long, value_name = "TREE.json")]
    tree: Option<PathBuf>,
    /// Mode connectivity path: linear (no training; what the shipped trees were fitted with) or
    /// bezier.
    #[arg(long, default_value = "linear")]
    connect: Method,
    /// Seed of the Hessian rows, CKA rows and curve training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Draw each tree with the path taken: FILE, or FILE with `-QUESTION` before the extension
    /// when several trees are applied.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

/// The training and test rows of the first checkpoint on `--data` (its recipe's split when it
/// was trained on that source, else all rows standardised as it was).
fn datasets(a: &CheckArgs, first: &Checkpoint) -> Result<(Dataset, Option<Dataset>)> {
    let data = DataArgs {
        data: a.data.clone().context("--data is required")?,
        data_dir: a.data_dir.clone(),
    };
    let record = first.record()?;
    if let Some(r) = record
        .run
        .as_ref()
        .filter(|r| terrain_model::data::same_source(&r.data.source, &data.data))
    {
        let p = r.prepare_data(data.data_dir.as_deref())?;
        return Ok((p.train, p.test));
    }
    let d = data.load(a.seed)?;
    terrain_model::loss::check_fits(&first.model, &d)?;
    let d = match &record.standardizer {
        Some(s) => s.apply(&d)?,
        None => d,
    };
    Ok((d, None))
}

fn plot_path(base: &Path, question: &str, several: bool) -> PathBuf {
    if !several {
        return base.to_path_buf();
    }
    let stem = base.file_stem().and_then(|s| s.to_str()).unwrap_or("tree");
    let ext = base.extension().and_then(|s| s.to_str()).unwrap_or("png");
    base.with_file_name(format!("{stem}-{question}.{ext}"))
}

/// Runs `terrain diagnose CKPT...` (and `terrain diagnose check`).
pub fn run(ctx: &Context, a: CheckArgs) -> Result<()> {
    let single = a.checkpoints.len() < 2;
    let trees = match &a.tree {
        Some(p) => vec![(p.display().to_string(), read_tree(p)?)],
        None if single => single_trees()?,
        None => default_trees()?,
    };
    if let Some(p) = &a.plot {
        check_plot_path(p)?;
    }
    if single
        && let Some((origin, t, f)) = trees
            .iter()
            .find_map(|(o, t)| t.kind.pair_feature().map(|f| (o, t, f)))
    {
        bail!(
            "{} checkpoint given, but {origin} (an MD tree `{}`) reads {f}, which compares two \
             trained seeds of one configuration: give two or more checkpoints of the same \
             configuration, or a single-checkpoint tree (fitted with `terrain diagnose fit \
             --method mdtree-single`)",
            a.checkpoints.len(),
            t.kind
        );
    }
    terrain_model::autodiff::ensure_second_order()?;
    let mut ckpts: Vec<Checkpoint> = Vec::new();
    for p in &a.checkpoints {
        let dt = ckpts.first().map(|c| c.model.dtype());
        ckpts.push(load_checkpoint(p, None, dt, &ctx.device)?);
    }
    let names: Vec<String> = a
        .checkpoints
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let (train, test) = datasets(&a, &ckpts[0])?;
    let loss = LossKind::for_task(train.task);
    let config = FeatureConfig {
        loss,
        basics: BasicsConfig {
            hessian_samples: 200,
            seed: a.seed,
            ..BasicsConfig::default()
        },
        connect: ConnectConfig {
            training: CurveTraining {
                seed: a.seed,
                ..CurveTraining::default()
            },
            ..ConnectConfig::new(a.connect, loss)
        },
        cka: CkaConfig {
            samples: 768,
            mixup_alpha: 16.0,
            seed: a.seed,
            outputs: Outputs::Softmax,
            ..CkaConfig::default()
        },
    };
    let models: Vec<&terrain_model::Model> = ckpts.iter().map(|c| &c.model).collect();
    let report = mdtree::feature_row(&models, &names, &train, test.as_ref(), &config)?;
    let row_json = serde_json::to_value(&report.row)?;
    let mut row = FeatureRow::new();
    for (k, v) in row_json.as_object().expect("an object") {
        if let Some(x) = v.as_f64() {
            row.insert(k.clone(), x);
        }
    }
    let mut diagnoses = Vec::new();
    let mut text = Vec::new();
    for (origin, tree) in &trees {
        let d = tree
            .diagnose(&row)
            .with_context(|| format!("applying {origin}"))?;
        let mut v = serde_json::to_value(&d)?;
        v["tree_file"] = json!(origin);
        if let Some(p) = &a.plot {
            let p = plot_path(p, tree.question.name(), trees.len() > 1);
            let title = format!(
                "MD tree `{}` on {} checkpoint(s): {} ({})",
                tree.kind,
                names.len(),
                d.advice,
                d.label
            );
            tree_picture(tree, Some(&d), title)
                .save(&p)
                .with_context(|| format!("drawing --plot {}", p.display()))?;
            v["plot"] = json!(p.display().to_string());
        }
        if ctx.format == Format::Table {
            text.push(diagnosis_text(&v, &d, tree));
        }
        diagnoses.push(v);
    }
    let mut value = json!({
        "checkpoints": names,
        "single_checkpoint": single,
        "features": row_json,
        "diagnoses": diagnoses,
    });
    if single {
        value["note"] = json!(
            "one checkpoint: mode connectivity and CKA need two or more seed checkpoints of one \
             configuration, so the trees read train_error and the Hessian only"
        );
    } else {
        value["connectivity"] = json!(format!("{:?}", a.connect).to_lowercase());
    }
    if ctx.format == Format::Table {
        // The diagnoses as readable blocks rather than JSON lines in the table.
        value.as_object_mut().map(|o| o.remove("diagnoses"));
        terrain_report::table::print_value(ctx.format, &value);
        println!("\ndiagnoses:");
        for t in &text {
            print!("{t}");
        }
    } else {
        terrain_report::table::print_value(ctx.format, &value);
    }
    Ok(())
}

/// One diagnosis as a block of text: the question and verdict, the advice, each decision on the
/// path with the metric's value and the threshold, what the tree was fitted on, and the picture.
fn diagnosis_text(v: &Value, d: &Diagnosis, tree: &FittedTree) -> String {
    let field = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "  {}: {} (tree {}, {})\n    {}\n",
        field("question"),
        d.label,
        field("tree"),
        field("tree_file"),
        d.advice
    );
    if let (Some(acc), Some(table)) = (tree.train_accuracy, &tree.table) {
        out.push_str(&format!(
            "    (the tree was fitted on {} rows of {table}: {acc:.1}% of them right)\n",
            tree.n_train
        ));
    }
    for (i, e) in d.evidence.iter().enumerate() {
        out.push_str(&format!(
            "    {}. {} = {} {} {}: {}\n",
            i + 1,
            e.metric,
            terrain_report::table::format_float(e.value),
            e.direction,
            terrain_report::table::format_float(e.threshold),
            e.meaning
        ));
    }
    if let Some(p) = v["plot"].as_str() {
        out.push_str(&format!("    picture: {p}\n"));
    }
    out
}
