//! `terrain surface`: 1-D and 2-D loss surfaces of a checkpoint around its weights, along random
//! (filter-normalised), Hessian or user directions, or through two or three checkpoints; resumable
//! through an append-only results file next to the table; a line plot or a heat map with contours.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use terrain_metrics::{
    GridAxis,
    direction::{self, Ignore, Normalize},
    surface::{self, Plane, ResultsLog, SurfaceConfig},
};
use terrain_model::{Model, ParamVec, loss::LossKind};
use terrain_report::{
    Cell, Format, Table,
    chart::{Chart, Heatmap, LineChart, Mark, Panel, Series},
};

use super::{
    CheckpointData, CheckpointDataArgs, Context, check_plot_path, load_checkpoint, metrics_flags,
};

/// Arguments of `terrain surface`.
#[derive(Debug, clap::Args)]
pub struct SurfaceArgs {
    #[command(flatten)]
    input: CheckpointDataArgs,
    /// The x grid, MIN:MAX:POINTS (write `--x=-1:1:51`).
    #[arg(long, default_value = "-1:1:51", allow_hyphen_values = true)]
    x: GridAxis,
    /// The y grid, MIN:MAX:POINTS, for a 2-D surface (write `--y=-1:1:51`).
    #[arg(long, allow_hyphen_values = true)]
    y: Option<GridAxis>,
    /// Direction: random (seeded Gaussian), hessian (top Hessian eigenvectors) or a
    /// FILE.safetensors with tensors named like the parameters (absent ones are zero). Once for
    /// 1-D, twice for 2-D (x first); given once for a 2-D surface, random and hessian are used
    /// for both axes (hessian: the top two eigenvectors).
    #[arg(long = "direction", value_name = "random|hessian|FILE")]
    directions: Vec<String>,
    /// The line or plane through checkpoints: θ_A + x·(θ_B − θ_A) [+ y·(θ_C − θ_A)]. Once for
    /// 1-D, twice for 2-D. BatchNorm statistics are recomputed at every point.
    #[arg(long = "to", value_name = "CHECKPOINT", conflicts_with = "directions")]
    to: Vec<PathBuf>,
    /// Direction normalisation (Li et al.): filter, layer or none. Not applied to --to.
    #[arg(long, default_value = "filter")]
    normalize: Normalize,
    /// One-dimensional tensors (biases, BatchNorm): biasbn (direction 0) or none (kept).
    #[arg(long, default_value = "biasbn")]
    ignore: Ignore,
    /// Recompute BatchNorm running statistics on the data at every point.
    #[arg(long)]
    recompute_bn: bool,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Seed of random directions (direction i draws stream i) and Hessian start vectors.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The table of grid points: .csv or .parquet [default: CHECKPOINT-STEM-surface1d.csv or -surface2d.csv]. The
    /// results file that makes the job resumable sits next to it (*.points.tsv).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The picture, PNG or SVG [default: the table's name with .png].
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    plot: Option<PathBuf>,
}

/// `STEM-suffix` for the checkpoint's file stem.
pub(crate) fn default_path(checkpoint: &Path, suffix: &str) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "terrain".into());
    PathBuf::from(format!("{stem}-{suffix}"))
}

/// The results file of a table: `NAME.points.tsv` next to it.
fn results_path(table: &Path) -> PathBuf {
    table.with_extension("points.tsv")
}

/// What a loss is, for axis labels.
pub(crate) fn loss_label(kind: LossKind) -> &'static str {
    match kind {
        LossKind::Ce => "mean cross-entropy loss (nats)",
        LossKind::Mse => "mean squared error",
    }
}

/// Runs `terrain surface`.
pub fn run(ctx: &Context, a: SurfaceArgs) -> Result<()> {
    let two_d = a.y.is_some();
    let need = if two_d { 2 } else { 1 };
    let out = a.out.clone().unwrap_or_else(|| {
        default_path(
            &a.input.checkpoint,
            if two_d {
                "surface2d.csv"
            } else {
                "surface1d.csv"
            },
        )
    });
    let plot = a.plot.clone().unwrap_or_else(|| out.with_extension("png"));
    ensure!(
        matches!(
            out.extension().and_then(|e| e.to_str()),
            Some("csv" | "parquet")
        ),
        "--out {}: the table must be .csv or .parquet",
        out.display()
    );
    check_plot_path(&plot)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure!(
            dir.is_dir(),
            "cannot write --out {}: directory {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if !a.to.is_empty() && a.to.len() != need {
        bail!(
            "--to given {} time(s): a {need}-D surface takes {need} checkpoint(s) (B{})",
            a.to.len(),
            if two_d { " and C" } else { "" }
        );
    }
    if a.directions.len() > need {
        bail!(
            "--direction given {} times: a {need}-D surface takes at most {need}",
            a.directions.len()
        );
    }
    let CheckpointData {
        ckpt, data, loss, ..
    } = a.input.load(&ctx.device, a.seed)?;
    let model = &ckpt.model;
    let origin = ParamVec::from_model(model)?;
    let mut described = Vec::new();
    let directions = if a.to.is_empty() {
        let mut kinds: Vec<String> = if a.directions.is_empty() {
            vec!["random".into(); need]
        } else {
            a.directions.clone()
        };
        if kinds.len() < need {
            let k = kinds[0].clone();
            ensure!(
                k == "random" || k == "hessian",
                "a 2-D surface needs two directions; --direction {k} was given once (give a second --direction)"
            );
            kinds.push(k);
        }
        make_directions(model, &data, loss, &kinds, &a, &origin, &mut described)?
    } else {
        let mut dirs = Vec::new();
        for p in &a.to {
            let other =
                load_checkpoint(p, a.input.arch.as_ref(), Some(model.dtype()), &ctx.device)?;
            if !same_standardization(&ckpt, &other)? {
                eprintln!(
                    "warning: {} was trained on inputs standardised differently from {}; every \
                     point is evaluated with {}'s standardisation, so the point at {} is not \
                     exactly its own loss (train with --no-standardize for exact ends)",
                    p.display(),
                    a.input.checkpoint.display(),
                    a.input.checkpoint.display(),
                    p.display()
                );
            }
            dirs.push(direction::towards(
                model,
                &other.model,
                &a.input.checkpoint.display().to_string(),
                &p.display().to_string(),
            )?);
            described.push(format!(
                "{} − {}",
                p.display(),
                a.input.checkpoint.display()
            ));
        }
        dirs
    };
    let recompute_bn = (a.recompute_bn || !a.to.is_empty()) && !model.buffers().is_empty();
    let config = SurfaceConfig {
        x: a.x,
        y: a.y,
        loss,
        batch_size: a.batch_size,
        recompute_bn,
        progress: terrain_report::progress::terminal(),
    };
    metrics_flags(
        config.check(),
        &[("x", "--x"), ("y", "--y"), ("batch_size", "--batch-size")],
    )?;
    let plane = Plane { origin, directions };
    let mut settings = surface::settings(model, &data, &plane, &config)?;
    settings.insert("directions".into(), described.join("; "));
    settings.insert(
        "normalize".into(),
        if a.to.is_empty() {
            a.normalize.to_string()
        } else {
            "(none: --to)".into()
        },
    );
    settings.insert(
        "ignore".into(),
        if a.to.is_empty() {
            a.ignore.to_string()
        } else {
            "(none: --to)".into()
        },
    );
    let log_path = results_path(&out);
    let mut log = ResultsLog::open(&log_path, &settings)
        .context("the surface's results file (next to --out)")?;
    let already = log.done().len();
    if already > 0 {
        eprintln!(
            "resuming: {already} finished point(s) read from {}, not recomputed",
            log_path.display()
        );
    }
    let s = surface::compute(model, &data, &data, &plane, &config, Some(&mut log))?;

    // The table of points.
    let mut table = Table::new(if two_d {
        vec!["x", "y", "loss", "error"]
    } else {
        vec!["x", "loss", "error"]
    });
    for (j, row) in s.loss.iter().enumerate() {
        for (i, &l) in row.iter().enumerate() {
            let mut cells = vec![Cell::Float(s.x[i])];
            if let Some(y) = &s.y {
                cells.push(Cell::Float(y[j]));
            }
            cells.push(Cell::Float(l));
            cells.push(match &s.error {
                Some(e) => Cell::Float(e[j][i]),
                None => Cell::Null,
            });
            table.push(cells)?;
        }
    }
    table
        .save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    draw(&s, &a, &described, loss, &plot)?;

    let (min_loss, at) = s
        .loss
        .iter()
        .enumerate()
        .flat_map(|(j, r)| r.iter().enumerate().map(move |(i, &l)| (l, (i, j))))
        .filter(|(l, _)| l.is_finite())
        .fold(
            (f64::INFINITY, (0, 0)),
            |b, c| if c.0 < b.0 { c } else { b },
        );
    let mut v = json!({
        "checkpoint": a.input.checkpoint.display().to_string(),
        "arch": model.spec().to_string(),
        "data": a.input.data.data,
        "rows": s.rows,
        "loss_kind": loss,
        "directions": described,
        "normalize": settings["normalize"],
        "ignore": settings["ignore"],
        "recompute_bn": recompute_bn,
        "points": s.x.len() * s.y.as_ref().map_or(1, Vec::len),
        "resumed": s.resumed,
        "computed": s.computed,
        "min_loss": min_loss,
        "min_at_x": s.x[at.0],
        "min_at_y": s.y.as_ref().map(|y| y[at.1]),
        "table": out.display().to_string(),
        "results_file": log_path.display().to_string(),
        "plot": plot.display().to_string(),
    });
    if ctx.format == Format::Json {
        let o = v.as_object_mut().expect("an object");
        o.insert("x".into(), json!(s.x));
        let grid = |g: &Vec<Vec<f64>>| -> Value {
            let rows: Vec<Value> = g
                .iter()
                .map(|r| json!(r.iter().map(|v| finite(*v)).collect::<Vec<_>>()))
                .collect();
            if two_d {
                json!(rows)
            } else {
                rows.into_iter().next().unwrap_or(Value::Null)
            }
        };
        if let Some(y) = &s.y {
            o.insert("y".into(), json!(y));
        }
        o.insert("loss".into(), grid(&s.loss));
        o.insert("error".into(), s.error.as_ref().map_or(Value::Null, grid));
    }
    terrain_report::table::print_value(ctx.format, &v);
    Ok(())
}

/// Whether two checkpoints standardise their inputs alike (to 1% of a standard deviation).
pub(crate) fn same_standardization(
    a: &terrain_model::checkpoint::Checkpoint,
    b: &terrain_model::checkpoint::Checkpoint,
) -> Result<bool> {
    let values = |c: &terrain_model::checkpoint::Checkpoint| -> Result<Option<Vec<f32>>> {
        Ok(match c.standardizer()? {
            None => None,
            Some(s) => {
                let m = s
                    .mean
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1::<f32>()?;
                let d = s
                    .std
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1::<f32>()?;
                Some(m.into_iter().chain(d).collect())
            }
        })
    };
    // Different splits of one data set give nearly the same statistics: only a visible
    // difference (1% of a standard deviation or more) counts.
    Ok(match (values(a)?, values(b)?) {
        (None, None) => true,
        (Some(u), Some(v)) if u.len() == v.len() => {
            let n = u.len() / 2;
            (0..n).all(|k| {
                let scale = u[n + k].abs().max(v[n + k].abs()).max(1e-12);
                (u[k] - v[k]).abs() <= 0.01 * scale && (u[n + k] - v[n + k]).abs() <= 0.01 * scale
            })
        }
        _ => false,
    })
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

fn make_directions(
    model: &Model,
    data: &terrain_model::data::Dataset,
    loss: LossKind,
    kinds: &[String],
    a: &SurfaceArgs,
    origin: &ParamVec,
    described: &mut Vec<String>,
) -> Result<Vec<ParamVec>> {
    let hessians = kinds.iter().filter(|k| *k == "hessian").count();
    let mut eig = if hessians > 0 {
        terrain_model::autodiff::ensure_second_order()?;
        direction::hessian(model, data, loss, hessians, a.batch_size.min(256), a.seed)?
    } else {
        Vec::new()
    }
    .into_iter();
    let mut dirs = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let (raw, what) = match k.as_str() {
            "random" => {
                let seed = terrain_model::rng::stream_seed(a.seed, i as u64);
                (
                    direction::random(model, seed)?,
                    format!("random (seed {}, stream {i})", a.seed),
                )
            }
            "hessian" => {
                let (value, v) = eig.next().expect("one eigenvector per hessian direction");
                (v, format!("Hessian eigenvector (eigenvalue {value:.6})"))
            }
            file => {
                let p = Path::new(file);
                if p.extension().and_then(|e| e.to_str()) != Some("safetensors") {
                    bail!("--direction {file}: expected random, hessian or a .safetensors file");
                }
                (direction::from_file(p, model)?, format!("file {file}"))
            }
        };
        let d = direction::normalize(&raw, origin, a.normalize, a.ignore)?;
        described.push(format!(
            "{what}, {} normalised, ignore {}",
            a.normalize, a.ignore
        ));
        dirs.push(d);
    }
    Ok(dirs)
}

fn draw(
    s: &surface::Surface,
    a: &SurfaceArgs,
    described: &[String],
    loss: LossKind,
    path: &Path,
) -> Result<()> {
    let name = a
        .input
        .checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let axis_label = |k: usize, c: &str| -> String {
        if a.to.is_empty() {
            format!(
                "{c}: multiple of direction {} ({}-normalised)",
                k + 1,
                a.normalize
            )
        } else {
            format!("{c} (fraction of the way to {})", a.to[k].display())
        }
    };
    match &s.y {
        None => {
            let mut panels = vec![Panel {
                title: format!("Loss along a line through {name}"),
                x_label: axis_label(0, "x"),
                y_label: loss_label(loss).into(),
                series: vec![Series::new(
                    "loss",
                    s.x.iter().copied().zip(s.loss[0].iter().copied()).collect(),
                )],
                ..Panel::default()
            }];
            if let Some(e) = &s.error {
                panels.push(Panel {
                    title: "Error along the same line".into(),
                    x_label: axis_label(0, "x"),
                    y_label: "error (% of rows misclassified)".into(),
                    series: vec![Series::new(
                        "error",
                        s.x.iter()
                            .copied()
                            .zip(e[0].iter().map(|v| 100.0 * v))
                            .collect(),
                    )],
                    ..Panel::default()
                });
            }
            let chart = LineChart {
                title: format!("1-D loss surface: {}", described.join("; ")),
                panels,
                panel_size: None,
            };
            chart
                .save(path)
                .with_context(|| format!("plotting to {}", path.display()))?;
        }
        Some(y) => {
            let finite: Vec<f64> = s
                .loss
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_z = lo > 0.0 && hi / lo > 100.0;
            let mut marks = Vec::new();
            let inside = |px: f64, py: f64| {
                px >= s.x[0] && px <= *s.x.last().unwrap() && py >= y[0] && py <= *y.last().unwrap()
            };
            if a.to.is_empty() {
                if inside(0.0, 0.0) {
                    marks.push(Mark::new(0.0, 0.0, "θ"));
                }
            } else {
                for (px, py, l) in [(0.0, 0.0, "A"), (1.0, 0.0, "B"), (0.0, 1.0, "C")] {
                    if inside(px, py) {
                        marks.push(Mark::new(px, py, l));
                    }
                }
            }
            let chart = Heatmap {
                title: format!("2-D loss surface around {name}"),
                x_label: axis_label(0, "x"),
                y_label: axis_label(1, "y"),
                z_label: format!(
                    "{}{}",
                    loss_label(loss),
                    if log_z { ", log scale" } else { "" }
                ),
                x: s.x.clone(),
                y: y.clone(),
                z: s.loss.clone(),
                log_z,
                marks,
                ..Heatmap::default()
            };
            chart
                .save(path)
                .with_context(|| format!("plotting to {}", path.display()))?;
        }
    }
    Ok(())
}
