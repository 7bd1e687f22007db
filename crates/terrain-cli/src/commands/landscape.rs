//! `terrain landscape`: fitness-landscape metrics of a hyperparameter table (a sweep's, Optuna's,
//! HPOBench's), similarities between tables or slices, heat maps and a landscape-graph picture.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};
use terrain_hparams::{
    Filter, Landscape, Metrics, MetricsConfig, Selection, analyze, embed,
    table::{RawTable, Value as Cell},
};
use terrain_report::chart::{Chart, Heatmap, Mark, ScatterChart, ScatterPoint};

use super::{Context, flags};

/// Arguments of `terrain landscape`.
#[derive(Debug, clap::Args)]
pub struct LandscapeArgs {
    /// The table: CSV or parquet (by extension), one row per configuration.
    table: PathBuf,
    /// The objective column (minimised), e.g. a validation error.
    #[arg(long)]
    objective: String,
    /// Hyperparameter columns, comma-separated [default: every column but the objective, the
    /// filtered columns and the --compare-by column].
    #[arg(long, value_delimiter = ',')]
    hp: Option<Vec<String>>,
    /// Keep only rows with COL=VALUE (numbers compare as numbers); repeatable.
    #[arg(long = "filter", value_name = "COL=VALUE")]
    filters: Vec<Filter>,
    /// Neutrality threshold ε (absolute): neighbours within ε are neutral.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    neutrality_eps: f64,
    /// Random walks of the walk autocorrelation.
    #[arg(long, default_value_t = 1000)]
    walks: usize,
    /// Steps of each random walk.
    #[arg(long, default_value_t = 20)]
    walk_length: usize,
    /// Seed of the random walks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A second table with the same configurations: report how alike the two landscapes are.
    #[arg(long, conflicts_with = "compare_by")]
    compare: Option<PathBuf>,
    /// Compare every pair of values of this column within the table (fidelities, data sets).
    #[arg(long)]
    compare_by: Option<String>,
    /// Write pictures here: a heat map per pair of hyperparameters (the others at their best
    /// values) and the landscape graph (heatmap-A-B.png, graph.png; per slice with --compare-by).
    #[arg(long)]
    plot_dir: Option<PathBuf>,
}

/// Runs `terrain landscape`.
pub fn run(ctx: &Context, a: LandscapeArgs) -> Result<()> {
    let config = MetricsConfig {
        neutrality_eps: a.neutrality_eps,
        walks: a.walks,
        walk_length: a.walk_length,
        seed: a.seed,
    };
    let names = [
        ("neutrality_eps", "--neutrality-eps"),
        ("walks", "--walks"),
        ("walk_length", "--walk-length"),
    ];
    flags(config.check(), &names)?;
    if let Some(dir) = &a.plot_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the picture directory {}", dir.display()))?;
    }
    let table = RawTable::read(&a.table)?;
    let sel = Selection {
        objective: a.objective.clone(),
        hyperparameters: a.hp.clone(),
        filters: a.filters.clone(),
        exclude: a.compare_by.iter().cloned().collect(),
    };
    let out = if let Some(col) = &a.compare_by {
        let slices = terrain_hparams::similarity::slices(&table, &sel, col)?;
        let sims = terrain_hparams::similarity::pairwise(&slices)?;
        let mut per_slice = Vec::new();
        for (name, l) in &slices {
            let m = analyze(l, &config)?;
            let plots = match &a.plot_dir {
                Some(d) => draw(l, &m, &a.objective, &d.join(file_safe(name)))?,
                None => Vec::new(),
            };
            let mut v = metrics_json(l, &m, plots);
            v.as_object_mut()
                .expect("an object")
                .insert("slice".into(), json!(name));
            per_slice.push(v);
        }
        json!({ "compare_by": col, "slices": per_slice, "similarities": sims })
    } else {
        let l = Landscape::from_table(&table, &sel)?;
        let m = analyze(&l, &config)?;
        let plots = match &a.plot_dir {
            Some(d) => draw(&l, &m, &a.objective, d)?,
            None => Vec::new(),
        };
        match &a.compare {
            None => metrics_json(&l, &m, plots),
            Some(other) => {
                let t2 = RawTable::read(other)?;
                let mut sel2 = sel.clone();
                // The second table's hyperparameters are the first's.
                sel2.hyperparameters = Some(l.names.clone());
                let l2 = Landscape::from_table(&t2, &sel2)?;
                let m2 = analyze(&l2, &config)?;
                let s = terrain_hparams::similarity(&l, &l2)?;
                json!({
                    "first": metrics_json(&l, &m, plots),
                    "second": metrics_json(&l2, &m2, Vec::new()),
                    "similarity": s,
                })
            }
        }
    };
    terrain_report::table::print_value(ctx.format, &out);
    Ok(())
}

/// What the CLI adds to the library's errors: the flags that fix them.
pub fn hint(e: &anyhow::Error) -> Option<String> {
    e.chain()
        .find_map(|c| match c.downcast_ref::<terrain_hparams::Error>()? {
            terrain_hparams::Error::DuplicateConfiguration { .. } => Some(
                "name the hyperparameters with --hp, or select one slice (a fidelity, a data set) \
                 with --filter COL=VALUE"
                    .into(),
            ),
            terrain_hparams::Error::MissingColumn { .. } => Some(
                "--objective, --hp, --filter and --compare-by name columns of the table".into(),
            ),
            terrain_hparams::Error::BadCell { .. } => Some(
                "drop failed configurations first, or select rows with --filter COL=VALUE".into(),
            ),
            _ => None,
        })
}

fn metrics_json(l: &Landscape, m: &Metrics, plots: Vec<String>) -> Value {
    let mut v = json!({ "source": l.source, "hyperparameters": l.names });
    let obj = v.as_object_mut().expect("an object");
    if let Value::Object(m) = serde_json::to_value(m).expect("metrics serialise") {
        obj.extend(m);
    }
    if !plots.is_empty() {
        obj.insert("plots".into(), json!(plots));
    }
    v
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Axis coordinates and label of a hyperparameter's levels: the values for numbers (log10 when
/// positive and spanning a factor of 20 or more), else the level index with the levels named.
fn axis(l: &Landscape, hp: usize) -> (Vec<f64>, String) {
    let levels = &l.levels[hp];
    let name = &l.names[hp];
    let nums: Option<Vec<f64>> = levels
        .iter()
        .map(|v| match v {
            Cell::Num(x) => Some(*x),
            _ => None,
        })
        .collect();
    match nums {
        Some(x) if x.iter().all(|&v| v > 0.0) && x[x.len() - 1] / x[0] >= 20.0 => (
            x.iter().map(|v| v.log10()).collect(),
            format!("log10 {name}"),
        ),
        Some(x) => (x, name.clone()),
        None => {
            let named: Vec<String> = levels
                .iter()
                .enumerate()
                .map(|(i, v)| format!("{i}={v}"))
                .collect();
            (
                (0..levels.len()).map(|i| i as f64).collect(),
                format!("{name} level ({})", named.join(", ")),
            )
        }
    }
}

/// Draws the heat maps and the graph picture into `dir`; returns the paths written.
fn draw(l: &Landscape, m: &Metrics, objective: &str, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let g = m.global_optimum.row;
    let mut out = Vec::new();
    let fixed = |skip: &[usize]| -> String {
        let others: Vec<String> = (0..l.names.len())
            .filter(|j| !skip.contains(j))
            .map(|j| format!("{}={}", l.names[j], l.value(g, j)))
            .collect();
        if others.is_empty() {
            String::new()
        } else {
            format!(" at {}", others.join(", "))
        }
    };
    for s in embed::slices_through(l, g) {
        let (x, x_label) = axis(l, s.x);
        let (y, y_label) = axis(l, s.y);
        let best = Mark::new(x[l.index[g][s.x]], y[l.index[g][s.y]], "best");
        let chart = Heatmap {
            title: format!(
                "{objective} over {} × {}{}",
                l.names[s.x],
                l.names[s.y],
                fixed(&[s.x, s.y])
            ),
            x_label,
            y_label,
            z_label: format!("{objective} (grey: not in the table)"),
            x,
            y,
            z: s.z,
            marks: vec![best],
            ..Heatmap::default()
        };
        let path = dir.join(format!(
            "heatmap-{}-{}.png",
            file_safe(&l.names[s.x]),
            file_safe(&l.names[s.y])
        ));
        chart
            .save(&path)
            .with_context(|| format!("drawing {}", path.display()))?;
        out.push(path.display().to_string());
    }
    let (xy, axes) = embed::stacked_embedding(l);
    let ranks = terrain_hparams::stats::mean_ranks(&l.error);
    let points = xy
        .iter()
        .enumerate()
        .map(|(r, &(x, y))| ScatterPoint {
            value: Some(ranks[r]),
            label: (r == g).then(|| "best".to_string()),
            ..ScatterPoint::new(x, y)
        })
        .collect();
    let stacked = |hps: &[usize]| -> String {
        match hps {
            [] => "(nothing)".into(),
            [one] => format!("{} level", l.names[*one]),
            [inner, outer @ ..] => format!(
                "{} level, in blocks of {}",
                l.names[*inner],
                outer
                    .iter()
                    .map(|&j| l.names[j].as_str())
                    .collect::<Vec<_>>()
                    .join(" then ")
            ),
        }
    };
    let optima = if m.n_local_optima == 1 {
        "local optimum"
    } else {
        "local optima"
    };
    let chart = ScatterChart {
        title: format!(
            "Landscape: {} configurations, {} {optima} (dimensional stacking)",
            m.n_configs, m.n_local_optima
        ),
        x_label: stacked(&axes[0]),
        y_label: stacked(&axes[1]),
        value_label: format!("rank of {objective} (1 = best)"),
        points,
        ..ScatterChart::default()
    };
    let path = dir.join("graph.png");
    chart
        .save(&path)
        .with_context(|| format!("drawing {}", path.display()))?;
    out.push(path.display().to_string());
    Ok(out)
}
