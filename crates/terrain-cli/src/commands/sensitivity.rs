//! `terrain sensitivity`: input-feature sensitivity after Faroz 2024 — per-feature means of the
//! first, second and third input derivatives of the per-sample loss, of one checkpoint or of R
//! retrainings (Xavier/Glorot initialisation, MSE), compared with each feature's Spearman
//! correlation with the target; a heat map per order next to the |ρ_s| bars, and a per-pixel
//! map for image data.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use terrain_metrics::sensitivity::{self, FeatureSensitivity};
use terrain_model::{
    ArchSpec, data::Dataset, device::FloatType, loss::LossKind, run::RunSpec, train::Optimizer,
};
use terrain_report::chart::{AnyChart, BarChart, BarSeries, Chart, ChartGrid, Heatmap, Size};

use super::surface::default_path;
use super::{Context, DataArgs, load_checkpoint, metrics_flags};

/// Arguments of `terrain sensitivity`.
#[derive(Debug, clap::Args)]
pub struct SensitivityArgs {
    /// A trained checkpoint (or use --retrain).
    #[arg(
        value_name = "CHECKPOINT",
        required_unless_present = "retrain",
        conflicts_with = "retrain"
    )]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Architecture: of the retrained models, or of a checkpoint without terrain metadata
    /// (e.g. mlp:13-16-1:tanh, as the paper's lean tanh network).
    #[arg(long)]
    arch: Option<ArchSpec>,
    /// Loss differentiated (and trained with): mse (the paper's) or ce [default: mse when
    /// retraining, else the task's natural loss].
    #[arg(long)]
    loss: Option<LossKind>,
    /// Train R models with seeds 0..R−1 (Xavier/Glorot initialisation) and compare them.
    #[arg(long, value_name = "R")]
    retrain: Option<usize>,
    /// Retraining: epochs.
    #[arg(long, default_value_t = 200)]
    epochs: usize,
    /// Retraining: learning rate (Adam).
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    lr: f64,
    /// Retraining: mini-batch size.
    #[arg(long, default_value_t = 32)]
    train_batch_size: usize,
    /// Retraining: floating-point type.
    #[arg(long, default_value = "f32")]
    dtype: FloatType,
    /// Rows per batch of the derivative passes.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// The picture, PNG or SVG [default: CHECKPOINT-STEM-sensitivity.png, or
    /// DATA-sensitivity.png when retraining].
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    plot: Option<PathBuf>,
}

/// One per-feature array of a [`FeatureSensitivity`].
type Field = fn(&FeatureSensitivity) -> &Vec<f64>;

fn finite(v: &[f64]) -> Value {
    json!(
        v.iter()
            .map(|x| if x.is_finite() { json!(x) } else { Value::Null })
            .collect::<Vec<_>>()
    )
}

fn summary_json(s: &FeatureSensitivity) -> Value {
    json!({
        "mean_d1": finite(&s.mean_d1),
        "mean_d2": finite(&s.mean_d2),
        "mean_d3": finite(&s.mean_d3),
        "mean_abs_d1": finite(&s.mean_abs_d1),
        "mean_abs_d2": finite(&s.mean_abs_d2),
        "mean_abs_d3": finite(&s.mean_abs_d3),
    })
}

/// Runs `terrain sensitivity`.
pub fn run(ctx: &Context, a: SensitivityArgs) -> Result<()> {
    terrain_model::autodiff::ensure_second_order()?;
    let plot = a.plot.clone().unwrap_or_else(|| match &a.checkpoint {
        Some(c) => default_path(c, "sensitivity.png"),
        None => PathBuf::from(format!(
            "{}-sensitivity.png",
            a.data.data.replace([':', '/', ','], "_")
        )),
    });
    super::check_plot_path(&plot)?;
    let mut input_shape: Vec<usize> = Vec::new();
    let (runs, data, loss, trained): (Vec<FeatureSensitivity>, Dataset, LossKind, Vec<Value>) =
        match a.retrain {
            Some(r) => {
                let Some(arch) = a.arch.clone() else {
                    bail!("--retrain needs --arch (e.g. --arch mlp:13-16-1:tanh)");
                };
                if r == 0 {
                    bail!("invalid --retrain 0: train at least one model");
                }
                let mut runs = Vec::new();
                let mut trained = Vec::new();
                let mut data = None;
                let mut loss = LossKind::Mse;
                for seed in 0..r as u64 {
                    let mut spec = RunSpec::new(arch.clone(), a.data.data.clone(), seed);
                    spec.dtype = a.dtype;
                    spec.data.holdout = 0.0;
                    spec.training.epochs = a.epochs;
                    spec.training.lr = a.lr;
                    spec.training.batch_size = a.train_batch_size;
                    spec.training.optimizer = Optimizer::adam();
                    spec.training.loss = Some(a.loss.unwrap_or(LossKind::Mse));
                    loss = spec.training.loss.expect("set above");
                    let (model, prepared) = metrics_flags(
                        sensitivity::train_xavier(&spec, &ctx.device, a.data.data_dir.as_deref()),
                        &[
                            ("epochs", "--epochs"),
                            ("lr", "--lr"),
                            ("batch_size", "--train-batch-size"),
                        ],
                    )?;
                    let eval =
                        terrain_model::loss::evaluate_with(&model, &prepared.train, 512, loss)?;
                    eprintln!(
                        "run {}/{r}: seed {seed}, training loss {:.4}",
                        seed + 1,
                        eval.loss
                    );
                    runs.push(sensitivity::sensitivity(
                        &model,
                        &prepared.train,
                        loss,
                        a.batch_size,
                    )?);
                    trained.push(json!({"seed": seed, "train_loss": eval.loss}));
                    data = Some(prepared.train);
                }
                (runs, data.expect("at least one run"), loss, trained)
            }
            None => {
                let path = a
                    .checkpoint
                    .as_ref()
                    .expect("clap requires a checkpoint without --retrain");
                let ckpt = load_checkpoint(path, a.arch.as_ref(), None, &ctx.device)?;
                input_shape = ckpt.model.spec().input_shape();
                let record = ckpt.record()?;
                let raw = a.data.load(0)?;
                terrain_model::loss::check_fits(&ckpt.model, &raw)?;
                let data = match &record.standardizer {
                    Some(s) => s.apply(&raw)?,
                    None => raw,
                };
                let data = match (&record.target_standardizer, &data.y) {
                    (Some(s), terrain_model::data::Targets::Values(_)) => s.apply_targets(&data)?,
                    _ => data,
                };
                let loss = a.loss.unwrap_or_else(|| LossKind::for_task(data.task));
                let s = metrics_flags(
                    sensitivity::sensitivity(&ckpt.model, &data, loss, a.batch_size),
                    &[("batch_size", "--batch-size")],
                )?;
                (vec![s], data, loss, Vec::new())
            }
        };
    let rho = sensitivity::target_correlations(&data)?;
    let agreement = sensitivity::agreement(&runs, &rho);
    let d = rho.len();
    let features: Vec<String> = data
        .feature_names
        .clone()
        .unwrap_or_else(|| (0..d).map(|j| format!("x{j}")).collect());
    draw(&runs, &rho, &features, loss, &plot, &a, &input_shape)?;

    let mut v = json!({
        "data": a.data.data,
        "rows": data.len(),
        "loss_kind": loss,
        "features": features,
        "rho_s": finite(&rho),
        "spearman_d2_rho": agreement.of_mean,
        "plot": plot.display().to_string(),
    });
    let o = v.as_object_mut().expect("an object");
    if runs.len() == 1 && a.retrain.is_none() {
        o.insert(
            "checkpoint".into(),
            json!(a.checkpoint.as_ref().map(|p| p.display().to_string())),
        );
        for (k, val) in summary_json(&runs[0]).as_object().expect("an object") {
            o.insert(k.clone(), val.clone());
        }
    } else {
        let per_run: Vec<Value> = runs
            .iter()
            .zip(&trained)
            .map(|(s, t)| {
                let mut j = summary_json(s);
                let jo = j.as_object_mut().expect("an object");
                for (k, val) in t.as_object().expect("an object") {
                    jo.insert(k.clone(), val.clone());
                }
                j
            })
            .collect();
        let stat = |f: Field| {
            let rows: Vec<Vec<f64>> = runs.iter().map(|r| f(r).clone()).collect();
            sensitivity::mean_sd_over_runs(&rows)
        };
        let mut mean = serde_json::Map::new();
        let mut sd = serde_json::Map::new();
        let fields: [(&str, Field); 6] = [
            ("mean_d1", |r| &r.mean_d1),
            ("mean_d2", |r| &r.mean_d2),
            ("mean_d3", |r| &r.mean_d3),
            ("mean_abs_d1", |r| &r.mean_abs_d1),
            ("mean_abs_d2", |r| &r.mean_abs_d2),
            ("mean_abs_d3", |r| &r.mean_abs_d3),
        ];
        for (name, f) in fields {
            let (m, s) = stat(f);
            mean.insert(name.into(), finite(&m));
            sd.insert(name.into(), finite(&s));
        }
        o.insert("arch".into(), json!(a.arch.as_ref().map(|s| s.to_string())));
        o.insert("retrain".into(), json!(runs.len()));
        o.insert("runs".into(), json!(per_run));
        o.insert("mean".into(), Value::Object(mean));
        o.insert("sd".into(), Value::Object(sd));
        o.insert(
            "agreement".into(),
            json!({
                "spearman_d2_rho_per_run": finite(&agreement.per_run),
                "spearman_d2_rho_mean": agreement.mean,
                "spearman_d2_rho_sd": agreement.sd,
                "spearman_mean_d2_rho": agreement.of_mean,
                "kendall_w_d2": agreement.kendall_w,
                "mean_pairwise_spearman_d2": agreement.mean_pairwise_spearman,
            }),
        );
    }
    terrain_report::table::print_value(ctx.format, &v);
    Ok(())
}

fn draw(
    runs: &[FeatureSensitivity],
    rho: &[f64],
    features: &[String],
    loss: LossKind,
    path: &std::path::Path,
    a: &SensitivityArgs,
    image_shape: &[usize],
) -> Result<()> {
    let d = rho.len();
    let xs: Vec<f64> = (0..d).map(|j| j as f64).collect();
    let ys: Vec<f64> = (0..runs.len()).map(|r| r as f64).collect();
    let mut charts: Vec<AnyChart> = Vec::new();
    let orders: [(&str, Field); 3] = [
        ("first", |r| &r.mean_d1),
        ("second", |r| &r.mean_d2),
        ("third", |r| &r.mean_d3),
    ];
    // Image models (a `[C, H, W]` input) get per-pixel maps, whatever shape the data rows have.
    let shape = match &a.arch {
        Some(s) => s.input_shape(),
        None => image_shape.to_vec(),
    };
    let image = shape.len() == 3 && shape.iter().product::<usize>() == d;
    for (k, (name, f)) in orders.iter().enumerate() {
        if image {
            // A per-pixel map of the runs' mean, channel 0, drawn as the image looks (the top
            // row at the top).
            let (h, w) = (shape[1], shape[2]);
            let mean: Vec<f64> = (0..d)
                .map(|j| runs.iter().map(|r| f(r)[j]).sum::<f64>() / runs.len() as f64)
                .collect();
            charts.push(
                pixel_map(
                    format!("Mean {name} derivative per pixel"),
                    format!(
                        "mean ∂{}ℓ/∂x{} (per input unit{})",
                        sup(k + 1),
                        sup(k + 1),
                        sup(k + 1)
                    ),
                    &mean,
                    h,
                    w,
                )
                .into(),
            );
        } else {
            charts.push(
                Heatmap {
                    title: format!("Mean {name} derivative of the {loss} loss"),
                    x_label: "input feature (index; names on the bars)".into(),
                    y_label: if a.retrain.is_some() {
                        "run (seed)".into()
                    } else {
                        "model".into()
                    },
                    z_label: format!(
                        "mean ∂{}ℓ/∂x{} (per standardised unit{})",
                        sup(k + 1),
                        sup(k + 1),
                        sup(k + 1)
                    ),
                    x: xs.clone(),
                    y: ys.clone(),
                    z: runs.iter().map(|r| f(r).clone()).collect(),
                    contours: None,
                    ..Heatmap::default()
                }
                .into(),
            );
        }
    }
    if image {
        let (h, w) = (shape[1], shape[2]);
        let abs_rho: Vec<f64> = rho.iter().map(|r| r.abs()).collect();
        charts.push(
            pixel_map(
                "|Spearman ρ(pixel, label)| per pixel".into(),
                "|ρ_s| (rank correlation, 0–1)".into(),
                &abs_rho,
                h,
                w,
            )
            .into(),
        );
        return save_grid(charts, runs.len(), path, a);
    }
    let mean_abs_d2: Vec<f64> = (0..d)
        .map(|j| runs.iter().map(|r| r.mean_d2[j].abs()).sum::<f64>() / runs.len() as f64)
        .collect();
    let max_d2 = mean_abs_d2.iter().copied().fold(0.0, f64::max);
    charts.push(
        BarChart {
            title: "|Spearman ρ(x_j, y)| and the scaled |mean d2|".into(),
            category_label: "input feature".into(),
            value_label: "|ρ_s| (rank correlation, 0–1); |mean d2| / its max".into(),
            categories: features.to_vec(),
            series: vec![
                BarSeries::new("|ρ_s(x_j, y)|", rho.iter().map(|r| r.abs()).collect()),
                BarSeries::new(
                    "|mean d2| / max",
                    mean_abs_d2
                        .iter()
                        .map(|v| if max_d2 > 0.0 { v / max_d2 } else { 0.0 })
                        .collect(),
                ),
            ],
            horizontal: d > 16,
            ..BarChart::default()
        }
        .into(),
    );
    save_grid(charts, runs.len(), path, a)
}

fn save_grid(
    charts: Vec<AnyChart>,
    runs: usize,
    path: &std::path::Path,
    a: &SensitivityArgs,
) -> Result<()> {
    ChartGrid {
        title: format!(
            "Input-feature sensitivity on {} ({} model{})",
            a.data.data,
            runs,
            if runs == 1 { "" } else { "s" }
        ),
        charts,
        columns: 2,
    }
    .save(path)
    .with_context(|| format!("plotting to {}", path.display()))?;
    Ok(())
}

/// A heat map of `values` over an `h × w` image, the top row drawn at the top.
fn pixel_map(title: String, z_label: String, values: &[f64], h: usize, w: usize) -> Heatmap {
    Heatmap {
        title,
        x_label: "pixel column".into(),
        y_label: "pixel row, counted from the bottom".into(),
        z_label,
        x: (0..w).map(|c| c as f64).collect(),
        y: (0..h).map(|r| r as f64).collect(),
        z: (0..h)
            .map(|r| (0..w).map(|c| values[(h - 1 - r) * w + c]).collect())
            .collect(),
        contours: None,
        size: Some(Size::new(640, 560)),
        ..Heatmap::default()
    }
}

fn sup(k: usize) -> &'static str {
    match k {
        1 => "",
        2 => "²",
        _ => "³",
    }
}
