//! `cargo xtask reproduce hp-landscapes`: Huang & Li's findings on hyperparameter loss
//! landscapes, checked on MLP sweeps of two real data sets at two epoch fidelities.
//!
//! Each data set gets one sweep of the same space (120 configurations, each read off at a low and
//! a high epoch count) through terrain-hparams' runner (resumable: a rerun continues), then the
//! landscape metrics of the validation error at each fidelity, the similarity of low and high
//! fidelity, and the similarity of the two data sets. The table says whether the landscapes are
//! smooth (autocorrelation, assortativity), neutral, nearly unimodal (local optima, basin of the
//! optimum) and whether low fidelity and the other data set track them (Spearman, top-10%).
//!
//! Most of the paper's landscapes are tree ensembles: the same is done for smartcore's random
//! forest (a grid over trees, depth, leaf size and split size; fidelity = training-set fraction,
//! 25% and 100%), trained directly (a forest has no epochs and no recipe to share), seeded per
//! configuration, on the same split of the same data.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use terrain_hparams::{
    Landscape, MetricsConfig, Selection, analyze,
    space::Space,
    sweep::{self, SweepOptions},
    table::RawTable,
};
use terrain_report::Format;

/// The paper's protocol in small: a grid over learning rate, width, depth and batch size.
const SPACE: &str = r#"
seed = 2025
arch = "mlp:{input}-{hidden}-{classes}:relu"
[data]
holdout = 0.2
validation = 0.25
[fixed]
optimizer = "sgd"
[grid]
lr = [0.003, 0.01, 0.03, 0.1, 0.3]
width = [16, 32, 64, 128]
depth = [1, 2, 3]
batch_size = [32, 128]
[fidelity]
epochs = [2, 12]
"#;

/// Arguments of `cargo xtask reproduce hp-landscapes`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (one sweep directory per data set).
    #[arg(long, default_value = "target/reproduce/hp-landscapes")]
    out: PathBuf,
    /// Configurations trained at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Data sets (built-in classification sets), with their input and class counts.
    #[arg(long, value_delimiter = ',', default_value = "digits,breast-cancer")]
    data: Vec<String>,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    format: Format,
}

fn dims(data: &str) -> Result<(usize, usize)> {
    let d = terrain_model::data::load(data, &terrain_model::data::LoadOptions::default())
        .with_context(|| format!("loading {data}"))?;
    let input: usize = d.input_shape().iter().product();
    let classes = d
        .classes()
        .with_context(|| format!("{data} is not a classification data set"))?;
    Ok((input, classes))
}

/// Runs the reproduction.
pub fn run(a: Args) -> Result<()> {
    let config = MetricsConfig::default();
    let mut landscapes = Vec::new();
    let mut similarities = Vec::new();
    let mut tables = Vec::new();
    let mut throughput = Vec::new();
    for data in &a.data {
        let (input, classes) = dims(data)?;
        let text = SPACE
            .replace("{input}", &input.to_string())
            .replace("{classes}", &classes.to_string());
        let dir = a.out.join(data);
        let space = Space::parse(&dir.join("space.toml"), &text)?;
        let options = SweepOptions {
            workers: a.workers,
            progress: terrain_report::progress::terminal(),
            ..SweepOptions::default()
        };
        let s = sweep::run(&space, data, &dir, &options)?;
        throughput.push(json!({
            "data": data, "configurations": s.configurations, "trained_now": s.trained,
            "failed": s.failed.len(), "workers": s.workers, "seconds": s.seconds,
            "configs_per_hour": s.configs_per_hour,
        }));
        let table = RawTable::read(&dir.join("sweep.parquet"))?;
        let mut per_fidelity = Vec::new();
        for &epochs in &space.epochs {
            let sel = Selection {
                objective: "validation_error".into(),
                hyperparameters: Some(space.grid.iter().map(|(k, _)| k.clone()).collect()),
                filters: vec![format!("epochs={epochs}").parse()?, "status=ok".parse()?],
                exclude: Vec::new(),
            };
            let l = Landscape::from_table(&table, &sel)?;
            let m = analyze(&l, &config)?;
            landscapes.push(landscape_row(&format!("{data}, MLP, {epochs} epochs"), &m));
            per_fidelity.push((epochs, l));
        }
        for i in 0..per_fidelity.len() {
            for j in i + 1..per_fidelity.len() {
                let s = terrain_hparams::similarity(&per_fidelity[i].1, &per_fidelity[j].1)?;
                similarities.push(similarity_row(
                    &format!(
                        "{data}: {} vs {} epochs",
                        per_fidelity[i].0, per_fidelity[j].0
                    ),
                    &s,
                ));
            }
        }
        tables.push((data.clone(), per_fidelity));
    }
    // The non-neural family.
    let mut forests = Vec::new();
    for data in &a.data {
        let ls = forest_landscapes(data, a.workers)?;
        for (fraction, l) in &ls {
            let m = analyze(l, &config)?;
            landscapes.push(landscape_row(
                &format!("{data}, forest, {fraction} of train"),
                &m,
            ));
        }
        let s = terrain_hparams::similarity(&ls[0].1, &ls[1].1)?;
        similarities.push(similarity_row(
            &format!("{data} forest: 25% vs 100% of train"),
            &s,
        ));
        forests.push((data.clone(), ls));
    }
    for i in 0..forests.len() {
        for j in i + 1..forests.len() {
            let s = terrain_hparams::similarity(&forests[i].1[1].1, &forests[j].1[1].1)?;
            similarities.push(similarity_row(
                &format!(
                    "{} vs {}, forest, 100% of train",
                    forests[i].0, forests[j].0
                ),
                &s,
            ));
        }
    }
    // Across data sets, at each fidelity.
    for i in 0..tables.len() {
        for j in i + 1..tables.len() {
            for (k, (epochs, l)) in tables[i].1.iter().enumerate() {
                let s = terrain_hparams::similarity(l, &tables[j].1[k].1)?;
                similarities.push(similarity_row(
                    &format!("{} vs {}, {epochs} epochs", tables[i].0, tables[j].0),
                    &s,
                ));
            }
        }
    }
    let out = json!({
        "landscapes": landscapes,
        "similarities": similarities,
        "sweeps": throughput,
        "paper": {
            "smooth": "high autocorrelation and assortativity",
            "neutral": "a large share of neighbour pairs within 0.01",
            "nearly_unimodal": "few local optima, a large basin for the optimum",
            "fidelity": "low fidelity tracks high fidelity (high Spearman, top-10% overlap)",
            "datasets": "landscapes of different data sets are similar",
        },
    });
    terrain_report::table::print_value(a.format, &out);
    Ok(())
}

fn landscape_row(name: &str, m: &terrain_hparams::Metrics) -> Value {
    json!({
        "landscape": name,
        "n_configs": m.n_configs,
        "best_validation_error": m.global_optimum.error,
        "autocorrelation": m.autocorrelation.value,
        "assortativity": m.performance_assortativity,
        "neutrality_pairs": m.neutrality_pairs,
        "n_local_optima": m.n_local_optima,
        "n_local_optima_plateau_aware": m.n_local_optima_plateau_aware,
        "basin_of_optimum_fraction": m.basin_size_global_optimum as f64 / m.n_configs as f64,
        "fdc_spearman": m.fdc_spearman,
        "ffi": m.fitness_flattening_index,
    })
}

/// Rows and labels of a data set, as smartcore takes them.
fn rows_of(d: &terrain_model::data::Dataset) -> Result<(Vec<Vec<f64>>, Vec<u32>)> {
    let x =
        d.x.flatten_from(1)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec2::<f64>()?;
    let y = d.labels()?.context("a forest needs class labels")?;
    Ok((x, y))
}

/// The forest grid on `data`: the validation error of every configuration at 25% and 100% of
/// the training rows, as two landscapes.
fn forest_landscapes(data: &str, workers: usize) -> Result<Vec<(f64, Landscape)>> {
    use smartcore::{
        ensemble::random_forest_classifier::{
            RandomForestClassifier, RandomForestClassifierParameters,
        },
        linalg::basic::matrix::DenseMatrix,
    };
    use terrain_hparams::table::Value as Cell;
    const SEED: u64 = 2025;
    let full = terrain_model::data::load(data, &terrain_model::data::LoadOptions::default())?;
    // The MLP sweep's split: 20% test, then 25% of the rest for validation.
    let (rest, _test) = full.split(0.8, terrain_model::rng::stream_seed(SEED, 1))?;
    let (train, valid) = rest.split(0.75, terrain_model::rng::stream_seed(SEED, 2))?;
    let (vx, vy) = rows_of(&valid)?;
    let vx = DenseMatrix::from_2d_vec(&vx).map_err(|e| anyhow::anyhow!("{e}"))?;
    let grid: Vec<(u16, u16, usize, usize)> = [5u16, 10, 20, 40]
        .into_iter()
        .flat_map(|t| {
            [2u16, 4, 6, 8, 12].into_iter().flat_map(move |d| {
                [1usize, 2, 4, 8]
                    .into_iter()
                    .flat_map(move |l| [2usize, 8].into_iter().map(move |s| (t, d, l, s)))
            })
        })
        .collect();
    let mut out = Vec::new();
    for fraction in [0.25, 1.0] {
        let tr = if fraction < 1.0 {
            train.subset_fraction(fraction, terrain_model::rng::stream_seed(SEED, 3))?
        } else {
            train.clone()
        };
        let (tx, ty) = rows_of(&tr)?;
        let tx = DenseMatrix::from_2d_vec(&tx).map_err(|e| anyhow::anyhow!("{e}"))?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let errors = std::sync::Mutex::new(vec![f64::NAN; grid.len()]);
        let failure = std::sync::Mutex::new(None::<String>);
        std::thread::scope(|s| {
            for _ in 0..workers.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(trees, depth, leaf, split)) = grid.get(i) else {
                            break;
                        };
                        let p = RandomForestClassifierParameters::default()
                            .with_n_trees(trees)
                            .with_max_depth(depth)
                            .with_min_samples_leaf(leaf)
                            .with_min_samples_split(split)
                            .with_seed(terrain_model::rng::stream_seed(SEED, i as u64));
                        let fitted =
                            RandomForestClassifier::fit(&tx, &ty, p).and_then(|f| f.predict(&vx));
                        match fitted {
                            Ok(pred) => {
                                let wrong = pred.iter().zip(&vy).filter(|(a, b)| a != b).count();
                                errors.lock().expect("no poisoned lock")[i] =
                                    wrong as f64 / vy.len() as f64;
                            }
                            Err(e) => {
                                failure
                                    .lock()
                                    .expect("no poisoned lock")
                                    .get_or_insert(format!("forest {i}: {e}"));
                            }
                        }
                    }
                });
            }
        });
        if let Some(f) = failure.into_inner().expect("no poisoned lock") {
            anyhow::bail!("{data}: {f}");
        }
        let errors = errors.into_inner().expect("no poisoned lock");
        let col = |k: usize| -> Vec<Cell> {
            grid.iter()
                .map(|g| Cell::Num([f64::from(g.0), f64::from(g.1), g.2 as f64, g.3 as f64][k]))
                .collect()
        };
        let columns = (0..4).map(col).collect();
        let names = [
            "n_trees",
            "max_depth",
            "min_samples_leaf",
            "min_samples_split",
        ]
        .map(String::from)
        .to_vec();
        let l = Landscape::new(
            format!("{data} forest {fraction}"),
            names,
            columns,
            errors,
            None,
        )?;
        out.push((fraction, l));
    }
    Ok(out)
}

fn similarity_row(name: &str, s: &terrain_hparams::Similarity) -> Value {
    json!({
        "pair": name,
        "n_shared": s.n_shared,
        "spearman_all": s.spearman_all,
        "spearman_top10_first": s.spearman_top10_first,
        "spearman_top10_union": s.spearman_top10_union,
        "top10_overlap": s.top10_overlap,
        "top10_jaccard": s.top10_jaccard,
    })
}
