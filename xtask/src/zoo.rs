//! `cargo xtask zoo [--small] --out DIR`: a model zoo for the MD tree (Zhou et al. 2024) on the
//! built-in digits, trained THROUGH terrain-hparams' sweep runner (resumable, parallel, sharded),
//! then one feature row per configuration (its seeds) measured with terrain-metrics, written in
//! the schema of the MD tree's public tables (`zoo_normal.csv`, `zoo_noise.csv` and `.parquet`)
//! with the room-for-improvement columns and labels of methods.md §2.4.
//!
//! The zoo: an MLP `64-width-10` (ReLU, SGD at lr [`LR`] = 0.03) over width × batch size × training-set fraction ×
//! seeds (`replicate`), clean and with 10 % label noise. A setting with a diverged seed (the
//! runner records it as failed) has no feature row and is listed under `skipped`. Mode connectivity is the linear path
//! by default (`--connect bezier` trains the MD tree's Bezier curves, slower).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use terrain_diagnose::question::{Label, Question};
use terrain_hparams::{
    space::{HpValue, Space},
    sweep::{self, Shard, SweepOptions},
};
use terrain_metrics::{
    cka::{CkaConfig, Outputs},
    connect::{ConnectConfig, Method},
    mdtree::{self, FeatureConfig, FeatureRow},
    sharpness::BasicsConfig,
};
use terrain_model::{
    checkpoint::{self, Checkpoint, LoadOptions},
    data::Dataset,
    loss::LossKind,
};
use terrain_report::{Cell, Format, Table, record::Record};

/// Arguments of `cargo xtask zoo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The zoo directory (the sweep, its checkpoints, the feature rows and the tables).
    #[arg(long, default_value = "target/zoo")]
    out: PathBuf,
    /// The CI-sized zoo: 2 widths × 2 batch sizes × 2 fractions × 2 seeds, 3 epochs (the default:
    /// 7 widths 2..128 × 6 batch sizes 8..256 × 5 fractions × 5 seeds, 20 epochs).
    #[arg(long)]
    small: bool,
    /// Configurations trained at once, each single-threaded.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Train only shard I of N (0-based) [default: from SLURM_ARRAY_TASK_ID/COUNT or
    /// JOB_COMPLETION_INDEX with --shards]; run once more unsharded for the feature rows.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Number of shards, for schedulers that give only the index (Kubernetes indexed jobs).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Data set, as for `terrain train --data` (the zoo's grid assumes 10 classes).
    #[arg(long, default_value = "digits")]
    data: String,
    /// Architecture template; `{width}` is the grid's width [default: mlp:64-{width}-10:relu].
    #[arg(long, value_name = "TEMPLATE")]
    arch: Option<String>,
    /// Compute device of training and metrics: cpu, cuda or cuda:N (CUDA needs a build with
    /// --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Mode connectivity path: linear (no training) or bezier (the MD tree's).
    #[arg(long, default_value = "linear")]
    connect: Method,
    /// Learning rate of every configuration (SGD, fixed: the temperature axis is the batch
    /// size). 0.05 diverged at batch 8 (width 128, all data, 5 of 5 seeds); 0.03 trains every
    /// setting, batch 8 to 256.
    #[arg(long, default_value_t = LR, allow_negative_numbers = true)]
    lr: f64,
    /// Output format of the summary: table or json.
    #[arg(long, default_value = "table")]
    format: Format,
}

/// The zoo's learning rate: the largest of 0.05, 0.03, 0.02 with which no seed of batch 8
/// diverged (measured over widths 16 and 128, fractions 0.1 and 1, clean and noisy, 5 seeds;
/// 0.05 diverged in 5 of 5 seeds at width 128 on all data).
pub const LR: f64 = 0.03;

/// The zoo's search space (`arch`: the template, `{width}` the grid's width).
pub fn space(small: bool, arch: &str, lr: f64) -> terrain_hparams::Result<Space> {
    let (grid, epochs, subset) = if small {
        (
            "width = [4, 16]\nbatch_size = [32, 128]\nlabel_noise = [0.0, 0.1]\nreplicate = [0, 1]",
            "[3]",
            "[0.5, 1.0]",
        )
    } else {
        (
            "width = [2, 4, 8, 16, 32, 64, 128]\nbatch_size = [8, 16, 32, 64, 128, 256]\n\
             label_noise = [0.0, 0.1]\nreplicate = [0, 1, 2, 3, 4]",
            "[20]",
            "[0.1, 0.25, 0.5, 0.75, 1.0]",
        )
    };
    let text = format!(
        "seed = 13\narch = \"{arch}\"\n[data]\nholdout = 0.3\nvalidation = 0.0\n\
         [fixed]\noptimizer = \"sgd\"\nlr = {lr:?}\n[grid]\n{grid}\n[fidelity]\nepochs = {epochs}\n\
         subset = {subset}\n"
    );
    Space::parse(Path::new("zoo.toml"), &text)
}

/// The columns of the MD tree's public tables, in their order.
pub const COLUMNS: [&str; 27] = [
    "data_amount",
    "para_amount",
    "log_data_amount",
    "log_para_amount",
    "log_bs",
    "width",
    "data",
    "bs",
    "test_acc",
    "train_acc",
    "generalization_gap",
    "test_loss",
    "train_loss",
    "CKA",
    "hessian_e",
    "hessian_t",
    "mode_connectivity",
    "mode_connectivity_peak",
    "test_error",
    "train_error",
    "rfi_width",
    "rfi_data",
    "rfi_inc_temp",
    "rfi_dec_temp",
    "bs_failure",
    "width_vs_batch",
    "data_vs_batch",
];

/// One configuration's measured features, stored so a rerun skips it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    /// Width.
    pub width: i64,
    /// Batch size.
    pub bs: i64,
    /// Label noise fraction.
    pub label_noise: f64,
    /// Training-set fraction.
    pub subset: f64,
    /// Training rows of the first seed.
    pub data_amount: usize,
    /// Parameters.
    pub para_amount: usize,
    /// The seeds' checkpoints.
    pub checkpoints: Vec<PathBuf>,
    /// The feature row (`None` when a feature is undefined, e.g. the `ln` of a non-positive
    /// mean top eigenvalue at a saddle).
    pub row: Option<FeatureRow>,
    /// Why there is no row.
    pub reason: Option<String>,
}

impl Record for Group {
    const KIND: &'static str = "terrain-zoo-group";
    const SCHEMA_VERSION: u32 = 1;
}

/// The feature settings of the zoo (and of `terrain metrics --connect linear` with its defaults).
pub fn feature_config(loss: LossKind, connect: Method) -> FeatureConfig {
    FeatureConfig {
        loss,
        basics: BasicsConfig {
            hessian_samples: 200,
            seed: 0,
            ..BasicsConfig::default()
        },
        connect: ConnectConfig::new(connect, loss),
        cka: CkaConfig {
            samples: 768,
            mixup_alpha: 16.0,
            seed: 0,
            outputs: Outputs::Softmax,
            ..CkaConfig::default()
        },
    }
}

/// The training rows and test rows of a checkpoint's recipe.
pub fn recipe_data(ckpt: &Checkpoint) -> Result<(Dataset, Option<Dataset>)> {
    let record = ckpt.record()?;
    let run = record
        .run
        .with_context(|| format!("{} has no training recipe", ckpt.path.display()))?;
    let p = run.prepare_data(None)?;
    Ok((p.train, p.test))
}

/// Measures one group (the checkpoints of its seeds).
pub fn measure(
    paths: &[PathBuf],
    connect: Method,
    device: &candle_core::Device,
) -> Result<(FeatureRow, usize, usize)> {
    let mut ckpts = Vec::new();
    for p in paths {
        ckpts.push(
            checkpoint::load(
                p,
                &LoadOptions {
                    device: device.clone(),
                    ..LoadOptions::default()
                },
            )
            .with_context(|| format!("loading {}", p.display()))?,
        );
    }
    let (train, test) = recipe_data(&ckpts[0])?;
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let models: Vec<&terrain_model::Model> = ckpts.iter().map(|c| &c.model).collect();
    let config = feature_config(LossKind::for_task(train.task), connect);
    let report = mdtree::feature_row(&models, &names, &train, test.as_ref(), &config)?;
    Ok((report.row, train.len(), ckpts[0].model.param_count()))
}

fn int(v: &HpValue) -> i64 {
    match v {
        HpValue::Int(i) => *i,
        other => other.as_f64().unwrap_or(f64::NAN) as i64,
    }
}

/// A setting: width, batch size, label noise, training-set fraction and its seeds' checkpoints
/// (by replicate).
type Setting = (i64, i64, f64, f64, Vec<(i64, PathBuf)>);

/// Runs `cargo xtask zoo`.
pub fn run(a: Args) -> Result<()> {
    let arch = a.arch.as_deref().unwrap_or("mlp:64-{width}-10:relu");
    if !(a.lr.is_finite() && a.lr > 0.0) {
        anyhow::bail!("invalid --lr {}: must be a positive number", a.lr);
    }
    let space = space(a.small, arch, a.lr).context("invalid --arch")?;
    let device = terrain_model::device::parse_device(&a.device).context("invalid --device")?;
    let dir = a.out.join("sweep");
    let shard = match a.shard {
        Some(s) => s,
        None => Shard::from_vars(|k| std::env::var(k).ok(), a.shards)?.unwrap_or_default(),
    };
    let options = SweepOptions {
        workers: a.workers,
        shard,
        data_dir: None,
        progress: terrain_report::progress::terminal(),
        keep_checkpoints: true,
        device: Some(device.clone()),
    };
    let summary = sweep::run(&space, &a.data, &dir, &options)?;
    if shard.count > 1 {
        let v = serde_json::json!({
            "sweep": summary,
            "next": format!("when every shard has finished: cargo xtask zoo --out {} (unsharded) measures the feature rows", a.out.display()),
        });
        terrain_report::table::print_value(a.format, &v);
        return Ok(());
    }
    // A setting with a failed (diverged) seed has no feature row: it is left out of the tables.
    let failed: std::collections::HashSet<usize> =
        summary.failed.iter().map(|f| f.config).collect();
    // Group the seeds of each setting.
    let names: Vec<&str> = space.grid.iter().map(|(k, _)| k.as_str()).collect();
    let at = |n: &str| names.iter().position(|k| *k == n).expect("a zoo name");
    let (iw, ib, inoise, irep) = (
        at("width"),
        at("batch_size"),
        at("label_noise"),
        at("replicate"),
    );
    let mut groups: BTreeMap<String, Setting> = BTreeMap::new();
    let mut skipped = std::collections::BTreeSet::new();
    for c in space.configurations() {
        let (w, b, n) = (
            int(&c.values[iw]),
            int(&c.values[ib]),
            c.values[inoise].as_f64().unwrap_or(0.0),
        );
        let key = format!("w{w:04}-b{b:04}-n{n}-s{}", c.subset);
        if failed.contains(&c.id) {
            skipped.insert(key.clone());
        }
        groups
            .entry(key)
            .or_insert_with(|| (w, b, n, c.subset, Vec::new()))
            .4
            .push((int(&c.values[irep]), sweep::checkpoint_path(&dir, c.id)));
    }
    let fdir = a.out.join("features");
    std::fs::create_dir_all(&fdir)?;
    let progress = terrain_report::progress::terminal();
    progress.start("zoo features", Some(groups.len() as u64));
    let mut measured = Vec::new();
    let mut undefined = BTreeMap::new();
    groups.retain(|k, _| !skipped.contains(k));
    for (key, (w, b, n, s, mut ck)) in groups {
        let path = fdir.join(format!("{key}.json"));
        let g = if path.is_file() {
            terrain_report::record::read_json::<Group>(&path)?
        } else {
            ck.sort();
            let paths: Vec<PathBuf> = ck.into_iter().map(|(_, p)| p).collect();
            let (row, data_amount, para_amount) = measure(&paths, a.connect, &device)?;
            let undefined = [
                ("train_loss", row.train_loss),
                ("hessian_e", row.hessian_e),
                ("hessian_t", row.hessian_t),
            ]
            .into_iter()
            .find(|(_, v)| !v.is_finite());
            let reason = undefined.map(|(k, v)| {
                format!("{k} is {v}: the ln of a non-positive seed mean (a saddle or a maximum)")
            });
            let g = Group {
                width: w,
                bs: b,
                label_noise: n,
                subset: s,
                data_amount,
                para_amount,
                checkpoints: paths,
                row: reason.is_none().then_some(row),
                reason,
            };
            terrain_report::record::write_json(&path, &g)?;
            // Read back: a resumed run's rows come from the file, so must this run's (JSON
            // numbers may differ from the computed ones in the last bit).
            terrain_report::record::read_json::<Group>(&path)?
        };
        progress.set_message(&key);
        progress.inc(1);
        match &g.reason {
            Some(r) => {
                undefined.insert(key, r.clone());
            }
            None => measured.push(g),
        }
    }
    progress.finish();
    let mut out = serde_json::Map::new();
    for (name, noisy) in [("normal", false), ("noise", true)] {
        let gs: Vec<&Group> = measured
            .iter()
            .filter(|g| (g.label_noise > 0.0) == noisy)
            .collect();
        let t = table(&gs)?;
        let csv = a.out.join(format!("zoo_{name}.csv"));
        t.save(&csv)?;
        t.write_parquet(&a.out.join(format!("zoo_{name}.parquet")))?;
        out.insert(
            name.into(),
            serde_json::json!({"rows": gs.len(), "csv": csv}),
        );
    }
    out.insert(
        "skipped".into(),
        serde_json::json!({
            "settings": skipped.len(),
            "why": "a seed failed (diverged); see sweep.failed",
            "which": skipped,
        }),
    );
    out.insert("undefined".into(), serde_json::to_value(&undefined)?);
    out.insert("sweep".into(), serde_json::to_value(&summary)?);
    out.insert(
        "connectivity".into(),
        format!("{:?}", a.connect).to_lowercase().into(),
    );
    terrain_report::table::print_value(a.format, &serde_json::Value::Object(out));
    Ok(())
}

/// The RFI of `i` along the configurations `line` (indices into the groups, in knob order):
/// best test accuracy at or beyond `i` in the knob's direction, minus `i`'s.
fn rfi(acc: &[f64], line: &[usize], i: usize, upward: bool) -> f64 {
    let pos = line.iter().position(|&j| j == i).expect("i is on its line");
    let range = if upward { &line[pos..] } else { &line[..=pos] };
    range
        .iter()
        .map(|&j| acc[j])
        .fold(f64::NEG_INFINITY, f64::max)
        - acc[i]
}

/// The public tables' rows of one collection (clean or noisy).
pub fn table(gs: &[&Group]) -> Result<Table> {
    let acc: Vec<f64> = gs
        .iter()
        .map(|g| {
            100.0
                - g.row
                    .as_ref()
                    .and_then(|r| r.test_error)
                    .unwrap_or(f64::NAN)
        })
        .collect();
    let line = |i: usize, same: &dyn Fn(&Group, &Group) -> bool, knob: &dyn Fn(&Group) -> f64| {
        let mut l: Vec<usize> = (0..gs.len()).filter(|&j| same(gs[i], gs[j])).collect();
        l.sort_by(|&x, &y| knob(gs[x]).total_cmp(&knob(gs[y])));
        l
    };
    let mut t = Table::new(COLUMNS);
    for (i, g) in gs.iter().enumerate() {
        let bs_line = line(
            i,
            &|a, b| a.width == b.width && a.subset == b.subset,
            &|g| g.bs as f64,
        );
        let w_line = line(i, &|a, b| a.bs == b.bs && a.subset == b.subset, &|g| {
            g.width as f64
        });
        let d_line = line(i, &|a, b| a.bs == b.bs && a.width == b.width, &|g| g.subset);
        let inc_temp = rfi(&acc, &bs_line, i, false);
        let dec_temp = rfi(&acc, &bs_line, i, true);
        let r_width = rfi(&acc, &w_line, i, true);
        let r_data = rfi(&acc, &d_line, i, true);
        let label = |q: Question| match q.label_from_rfi(inc_temp, dec_temp, r_width, r_data) {
            Label::Class(c) => q.classes()[c].to_string(),
            Label::Optimal => "optimal".to_string(),
        };
        let r = g.row.as_ref().expect("measured groups have rows");
        let train_error = r.train_error.unwrap_or(f64::NAN);
        let test_error = r.test_error.unwrap_or(f64::NAN);
        let f = |x: Option<f64>| x.map_or(Cell::Null, Cell::Float);
        t.push(vec![
            Cell::Int(g.data_amount as i64),
            Cell::Int(g.para_amount as i64),
            Cell::Float((g.data_amount as f64).ln()),
            Cell::Float((g.para_amount as f64).ln()),
            Cell::Float((g.bs as f64).ln()),
            Cell::Int(g.width),
            Cell::Float(10.0 * g.subset),
            Cell::Int(g.bs),
            Cell::Float(100.0 - test_error),
            Cell::Float(100.0 - train_error),
            Cell::Float(test_error - train_error),
            f(r.test_loss),
            Cell::Float(r.train_loss),
            f(r.cka),
            Cell::Float(r.hessian_e),
            Cell::Float(r.hessian_t),
            f(r.mode_connectivity),
            f(r.mode_connectivity_peak),
            Cell::Float(test_error),
            Cell::Float(train_error),
            Cell::Float(r_width),
            Cell::Float(r_data),
            Cell::Float(inc_temp),
            Cell::Float(dec_temp),
            Cell::Str(label(Question::Temp)),
            Cell::Str(label(Question::Width)),
            Cell::Str(label(Question::Data)),
        ])?;
    }
    Ok(t)
}
