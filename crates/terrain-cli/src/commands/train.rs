//! `terrain train`: fit a network, evaluate it on held-out data, write a checkpoint.

use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use terrain_model::{
    ArchSpec, Model, checkpoint,
    loss::{self, LossKind},
    train::{LrDecay, Optimizer, Progress, TrainConfig, Trainer},
};

use super::{Context, DataArgs, STANDARDIZE_KEY, parse_dtype, standardizer_to_json};
use crate::{output, progress};

/// Arguments of `terrain train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Architecture: mlp:IN-H1-...-OUT:ACT[:bn][:nobias], cnn:CxHxW-C1-...-OUT:ACT or
    /// resnet18:CxHxW:wK:OUT (e.g. mlp:64-32-16-10:tanh).
    #[arg(long)]
    arch: String,
    #[command(flatten)]
    data: DataArgs,
    /// Held-out test data (same kinds of source as --data); without it, --holdout of --data is
    /// kept apart for testing.
    #[arg(long)]
    test_data: Option<String>,
    /// Fraction of --data held out for testing when --test-data is not given (0 keeps none).
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Use only this fraction of the training rows (MD-tree's data-size axis).
    #[arg(long, default_value_t = 1.0)]
    subset: f64,
    /// Replace this fraction of training labels by a different random class.
    #[arg(long, default_value_t = 0.0)]
    label_noise: f64,
    /// Standardise inputs with the training rows' per-feature mean and std.
    #[arg(long)]
    standardize: bool,
    /// Mixup with Beta(α, α) mixing weights.
    #[arg(long)]
    mixup: Option<f64>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Optimiser: sgd or adam.
    #[arg(long, default_value = "sgd")]
    optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Learning-rate decay: none, step:EVERY:GAMMA or multistep:E1,E2,...:GAMMA.
    #[arg(long, default_value = "none")]
    lr_decay: String,
    /// Drop the last incomplete batch of each epoch.
    #[arg(long)]
    drop_last: bool,
    /// Loss: ce or mse (default: ce for classification, mse for regression).
    #[arg(long)]
    loss: Option<String>,
    /// Floating-point type of the model: f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Seed for initialisation, splits, noise and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the checkpoint (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Save the training state after every epoch next to --out and continue from it if present.
    #[arg(long)]
    resume: bool,
    /// Write the training curves (loss and, for classification, test error per epoch) as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// The training curves of `report` as an SVG document.
fn curves_svg(arch: &str, epochs: &[terrain_model::train::EpochReport]) -> String {
    use crate::plot::{Panel, Series};
    let series =
        |name: &str, f: &dyn Fn(&terrain_model::train::EpochReport) -> Option<f64>| Series {
            name: name.into(),
            points: epochs
                .iter()
                .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
                .collect(),
        };
    let mut panels = vec![Panel {
        title: format!("loss, {arch}"),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: vec![
            series("train (batch mean)", &|e| Some(e.train_loss)),
            series("test", &|e| e.validation.map(|v| v.loss)),
        ],
        log_y: false,
    }];
    let errors = series("test", &|e| e.validation.and_then(|v| v.error));
    if !errors.points.is_empty() {
        panels.push(Panel {
            title: "test error".into(),
            x_label: "epoch".into(),
            y_label: "error rate".into(),
            series: vec![errors],
            log_y: false,
        });
    }
    crate::plot::svg(&panels)
}

fn parse_lr_decay(s: &str) -> Result<LrDecay> {
    let parts: Vec<&str> = s.split(':').collect();
    let gamma = |g: &str| -> Result<f64> {
        g.parse()
            .with_context(|| format!("invalid --lr-decay `{s}`: gamma `{g}` is not a number"))
    };
    Ok(match parts.as_slice() {
        ["none"] => LrDecay::None,
        ["step", every, g] => LrDecay::Step {
            every: every.parse().with_context(|| {
                format!("invalid --lr-decay `{s}`: `{every}` is not an integer")
            })?,
            gamma: gamma(g)?,
        },
        ["multistep", ms, g] => LrDecay::MultiStep {
            milestones: ms
                .split(',')
                .map(|m| m.parse::<usize>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("invalid --lr-decay `{s}`: bad milestones `{ms}`"))?,
            gamma: gamma(g)?,
        },
        _ => bail!(
            "invalid --lr-decay `{s}`: expected none, step:EVERY:GAMMA or multistep:E1,E2:GAMMA"
        ),
    })
}

/// Runs `terrain train`.
pub fn run(ctx: &Context, a: TrainArgs) -> Result<()> {
    let spec: ArchSpec = a.arch.parse()?;
    let dtype = parse_dtype(&a.dtype)?;
    let optimizer = match a.optimizer.as_str() {
        "sgd" => Optimizer::Sgd {
            momentum: a.momentum,
            weight_decay: a.weight_decay,
        },
        "adam" => Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: a.weight_decay,
        },
        other => bail!("invalid --optimizer `{other}`: expected sgd or adam"),
    };
    let config = TrainConfig {
        epochs: a.epochs,
        lr: a.lr,
        batch_size: a.batch_size,
        optimizer,
        lr_decay: parse_lr_decay(&a.lr_decay)?,
        seed: a.seed,
        drop_last: a.drop_last,
        loss: a.loss.as_deref().map(str::parse::<LossKind>).transpose()?,
        mixup_alpha: a.mixup,
    };
    let mut trainer = Trainer::new(config.clone())?;

    let full = a.data.load(a.seed)?;
    let (mut train, mut test) = match &a.test_data {
        Some(src) => {
            let t = DataArgs {
                data: src.clone(),
                data_dir: a.data.data_dir.clone(),
            }
            .load(a.seed)?;
            (full, Some(t))
        }
        None if a.holdout > 0.0 => {
            let (tr, te) = full.split(1.0 - a.holdout, a.seed)?;
            (tr, Some(te))
        }
        None => (full, None),
    };
    if a.subset < 1.0 {
        train = train.subset_fraction(a.subset, a.seed)?;
    }
    if a.label_noise > 0.0 {
        train = train.with_label_noise(a.label_noise, a.seed)?;
    }
    let mut extra = BTreeMap::new();
    if a.standardize {
        let s = train.standardizer()?;
        train = s.apply(&train)?;
        test = test.map(|t| s.apply(&t)).transpose()?;
        extra.insert(STANDARDIZE_KEY.to_string(), standardizer_to_json(&s)?);
    }

    let model = Model::new(spec.clone(), dtype, &ctx.device, a.seed)?;
    loss::check_fits(&model, &train)?;
    let steps = train.num_batches(a.batch_size, a.drop_last) as u64 * a.epochs as u64;
    let pb = progress::bar(steps, "train");
    let started = Instant::now();
    let state_path = a.resume.then(|| a.out.with_extension("state.safetensors"));
    if let Some(p) = state_path.as_ref().filter(|p| p.exists()) {
        pb.set_message(format!("resuming from {}", p.display()));
    }
    let report = trainer.fit_resumable(
        &model,
        &train,
        test.as_ref(),
        state_path.as_deref(),
        &mut |p| match p {
            Progress::Step { loss, .. } => {
                pb.inc(1);
                pb.set_message(format!("loss {loss:.4}"));
            }
            Progress::Epoch(e) => {
                tracing::info!(epoch = e.epoch, train_loss = e.train_loss, "epoch");
            }
        },
    )?;
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    let train_eval = loss::evaluate_with(
        &model,
        &train,
        512,
        config.loss.unwrap_or(LossKind::for_task(train.task)),
    )?;
    let test_eval = test
        .as_ref()
        .map(|t| {
            loss::evaluate_with(
                &model,
                t,
                512,
                config.loss.unwrap_or(LossKind::for_task(t.task)),
            )
        })
        .transpose()?;

    extra.insert(
        "terrain.train.config".into(),
        serde_json::to_string(&config)?,
    );
    extra.insert("terrain.train.data".into(), a.data.data.clone());
    extra.insert("terrain.train.rows".into(), train.len().to_string());
    extra.insert(
        "terrain.eval.train".into(),
        serde_json::to_string(&train_eval)?,
    );
    if let Some(t) = &test_eval {
        extra.insert("terrain.eval.test".into(), serde_json::to_string(t)?);
    }
    checkpoint::save(&model, &a.out, &extra)
        .with_context(|| format!("writing checkpoint {}", a.out.display()))?;
    if let Some(p) = state_path {
        std::fs::remove_file(&p).ok();
    }
    if let Some(path) = &a.plot {
        std::fs::write(path, curves_svg(&spec.to_string(), &report.epochs))
            .with_context(|| format!("writing plot {}", path.display()))?;
    }

    let epochs: Vec<_> = report
        .epochs
        .iter()
        .map(|e| {
            json!({
                "epoch": e.epoch,
                "lr": e.lr,
                "train_loss": e.train_loss,
                "test_loss": e.validation.map(|v| v.loss),
                "test_error": e.validation.and_then(|v| v.error),
                "seconds": e.seconds,
            })
        })
        .collect();
    output::print(
        ctx.format,
        &json!({
            "checkpoint": a.out.display().to_string(),
            "arch": spec.to_string(),
            "parameters": model.param_count(),
            "data": a.data.data,
            "train_rows": train.len(),
            "test_rows": test.as_ref().map(|t| t.len()),
            "objective": report.objective,
            "steps": report.steps,
            "seconds": seconds,
            "train": train_eval,
            "test": test_eval,
            "epochs": epochs,
        }),
    );
    Ok(())
}
