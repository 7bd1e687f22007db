//! `terrain train`: fit a network, evaluate it on held-out data, write a checkpoint. A thin
//! mapping of flags onto terrain-model's training recipe ([`RunSpec`]).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;
use terrain_model::{
    ArchSpec,
    device::FloatType,
    loss::LossKind,
    run::{DataSpec, RunOptions, RunSpec, Seeds, Standardize},
    train::{LrDecay, Optimizer, TrainConfig, TrainEvent},
};

use terrain_report::chart::{Chart, LineChart, Panel, Series};
use terrain_robust::ObjectiveSpec;

use super::{Context, DataArgs, check_plot_path, flags};

/// The objective flags of `terrain train` (boxed: they would make every subcommand's
/// arguments as large as train's).
#[derive(Debug, clap::Args)]
pub struct ObjectiveArgs {
    /// Training objective: erm, flood, iflood, softad, sam, asam, tilted, cvar, dro or coce, with
    /// its settings as flags below, or in compact form (softad:theta=0.5,sigma=1).
    #[arg(long, default_value = "erm")]
    objective: String,
    /// flood: the flood level b of |mean loss − b| + b.
    #[arg(long, allow_negative_numbers = true)]
    flood_level: Option<f64>,
    /// iflood, softad: the per-example threshold θ; coce: the flood level τ.
    #[arg(long, allow_negative_numbers = true)]
    theta: Option<f64>,
    /// softad: the scale σ [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    sigma: Option<f64>,
    /// sam, asam: the neighbourhood radius ρ [default: 0.05 for sam, 0.5 for asam].
    #[arg(long, allow_negative_numbers = true)]
    rho: Option<f64>,
    /// tilted: the tilt t of (1/t)·log mean exp(t·loss).
    #[arg(long, allow_negative_numbers = true)]
    tilt: Option<f64>,
    /// cvar: the level α (the top 1 − α fraction of losses is averaged); coce: the same
    /// [default for coce: 0.5].
    #[arg(long, allow_negative_numbers = true)]
    cvar_alpha: Option<f64>,
    /// dro: the radius r of the χ² ball.
    #[arg(long, allow_negative_numbers = true)]
    dro_radius: Option<f64>,
}

/// Arguments of `terrain train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Architecture: mlp:IN-H1-...-OUT:ACT[:bn][:nobias], cnn:CxHxW-C1-...-OUT:ACT or
    /// resnet18:CxHxW:wK:OUT (e.g. mlp:64-32-16-10:tanh). Optional with --init when the
    /// checkpoint records its architecture.
    #[arg(long)]
    arch: Option<ArchSpec>,
    /// Start from this checkpoint's weights (and BatchNorm statistics) instead of a random
    /// initialisation: terrain's own, or a PyTorch state dict with --arch.
    #[arg(long, value_name = "CKPT")]
    init: Option<PathBuf>,
    #[command(flatten)]
    obj: Box<ObjectiveArgs>,
    #[command(flatten)]
    data: DataArgs,
    /// Held-out test data (same kinds of source as --data); without it, --holdout of --data is
    /// kept apart for testing.
    #[arg(long)]
    test_data: Option<String>,
    /// Fraction of --data held out for testing when --test-data is not given (0 keeps none and
    /// trains on every row).
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    holdout: f64,
    /// Validation data (same kinds of source as --data), evaluated after every epoch.
    #[arg(long)]
    validation_data: Option<String>,
    /// Fraction of the training rows kept apart for validation when --validation-data is not
    /// given (0 keeps none).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    validation: f64,
    /// Use only this fraction of the training rows (MD-tree's data-size axis).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    subset: f64,
    /// Replace this fraction of training labels by a different random class.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    label_noise: f64,
    /// Standardise the inputs with the training rows' per-feature mean and std, also for images
    /// (regression targets are standardised too). Default: inputs of tabular data and the
    /// targets of regression.
    #[arg(long, conflicts_with = "no_standardize")]
    standardize: bool,
    /// Standardise nothing (not even tabular inputs or regression targets).
    #[arg(long)]
    no_standardize: bool,
    /// Mixup with Beta(α, α) mixing weights.
    #[arg(long, allow_negative_numbers = true)]
    mixup: Option<f64>,
    /// Passes over the training data.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    lr: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Optimiser: sgd or adam, optionally with settings (sgd:momentum=0.9,weight_decay=5e-4;
    /// adam:beta1=0.9,beta2=0.999,eps=1e-8,weight_decay=0).
    #[arg(long, default_value = "sgd")]
    optimizer: Optimizer,
    /// SGD momentum (overrides the --optimizer setting) [default: 0.9].
    #[arg(long, allow_negative_numbers = true)]
    momentum: Option<f64>,
    /// L2 weight decay (overrides the --optimizer setting) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// Learning-rate decay: none, step:EVERY:GAMMA or multistep:E1,E2,...:GAMMA.
    #[arg(long, default_value = "none")]
    lr_decay: LrDecay,
    /// Drop the last incomplete batch of each epoch.
    #[arg(long)]
    drop_last: bool,
    /// Loss: ce or mse (default: ce for classification, mse for regression).
    #[arg(long)]
    loss: Option<LossKind>,
    /// Floating-point type of the model: f32 or f64.
    #[arg(long, default_value = "f32")]
    dtype: FloatType,
    /// Base seed: the split, subset, label noise, initialisation and shuffling each draw from
    /// their own stream derived from it.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
    /// Where to write the checkpoint (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Save the training state after every epoch next to --out and continue from it if present.
    #[arg(long)]
    resume: bool,
    /// Write the training curves (loss, error, parameter and gradient norms and the training
    /// rows' loss concentration per epoch); the format follows the extension (.png or .svg).
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    plot: Option<PathBuf>,
}

/// The training curves: loss per epoch (training batches, and the training, validation and test
/// rows after each epoch), error for classification, parameter and gradient norms, and the
/// training rows' loss concentration.
fn curves(
    title: &str,
    loss_label: &str,
    epochs: &[terrain_model::train::EpochReport],
) -> LineChart {
    let series = |name: &str, f: &dyn Fn(&terrain_model::train::EpochReport) -> Option<f64>| {
        Series::new(
            name,
            epochs
                .iter()
                .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
                .collect(),
        )
    };
    let keep = |v: Vec<Series>| -> Vec<Series> {
        v.into_iter().filter(|s| !s.points.is_empty()).collect()
    };
    let mut panels = vec![Panel {
        title: "Loss".into(),
        x_label: "epoch".into(),
        y_label: loss_label.into(),
        series: keep(vec![
            series("train (mean over batches)", &|e| Some(e.train_loss)),
            series("train (after epoch)", &|e| e.train.map(|v| v.loss)),
            series("validation", &|e| e.validation.map(|v| v.loss)),
            series("test", &|e| e.test.map(|v| v.loss)),
        ]),
        ..Panel::default()
    }];
    let errors = keep(vec![
        series("train", &|e| e.train.and_then(|v| v.error)),
        series("validation", &|e| e.validation.and_then(|v| v.error)),
        series("test", &|e| e.test.and_then(|v| v.error)),
    ]);
    if !errors.is_empty() {
        panels.push(Panel {
            title: "Error".into(),
            x_label: "epoch".into(),
            y_label: "error rate (fraction misclassified)".into(),
            series: errors,
            ..Panel::default()
        });
    }
    panels.push(Panel {
        title: "Norms".into(),
        x_label: "epoch".into(),
        y_label: "Euclidean norm".into(),
        series: vec![
            series("parameters ‖w‖₂", &|e| Some(e.param_norm)),
            series("gradient ‖∇F‖₂ (mean over steps)", &|e| {
                Some(e.grad_norm)
            }),
        ],
        ..Panel::default()
    });
    let conc = keep(vec![
        series("sd", &|e| e.concentration.map(|c| c.sd)),
        series("90th percentile", &|e| e.concentration.map(|c| c.p90)),
        series("99th percentile", &|e| e.concentration.map(|c| c.p99)),
        series("fraction above θ", &|e| {
            e.concentration.and_then(|c| c.above_threshold)
        }),
    ]);
    if !conc.is_empty() {
        panels.push(Panel {
            title: "Per-example training losses".into(),
            x_label: "epoch".into(),
            y_label: format!("{loss_label}; fraction for θ"),
            series: conc,
            ..Panel::default()
        });
    }
    LineChart {
        title: format!("Training curves, {title}"),
        panels,
        ..LineChart::default()
    }
}

/// The objective flags, `(flag, value, setting name in the compact form)`.
fn objective_flags(a: &TrainArgs) -> [(&'static str, Option<f64>); 7] {
    [
        ("--flood-level", a.obj.flood_level),
        ("--theta", a.obj.theta),
        ("--sigma", a.obj.sigma),
        ("--rho", a.obj.rho),
        ("--tilt", a.obj.tilt),
        ("--cvar-alpha", a.obj.cvar_alpha),
        ("--dro-radius", a.obj.dro_radius),
    ]
}

/// The flags each objective takes, and the compact-form setting each maps onto.
fn takes(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "flood" => &[("--flood-level", "level")],
        "iflood" => &[("--theta", "theta")],
        "softad" => &[("--theta", "theta"), ("--sigma", "sigma")],
        "sam" | "asam" => &[("--rho", "rho")],
        "tilted" => &[("--tilt", "t")],
        "cvar" => &[("--cvar-alpha", "alpha")],
        "dro" => &[("--dro-radius", "radius")],
        "coce" => &[("--theta", "theta"), ("--cvar-alpha", "alpha")],
        _ => &[],
    }
}

/// The library's field names of objective settings, and their flags (for error hints).
const OBJECTIVE_FIELDS: &[(&str, &str)] = &[
    ("flood_level", "--flood-level"),
    ("theta", "--theta"),
    ("sigma", "--sigma"),
    ("rho", "--rho"),
    ("tilt", "--tilt"),
    ("cvar_alpha", "--cvar-alpha"),
    ("dro_radius", "--dro-radius"),
    ("mixup_alpha", "--mixup"),
];

impl TrainArgs {
    /// The objective these flags describe, checked.
    pub fn objective(&self) -> Result<ObjectiveSpec> {
        let given: Vec<(&str, f64)> = objective_flags(self)
            .into_iter()
            .filter_map(|(f, v)| v.map(|v| (f, v)))
            .collect();
        if self.obj.objective.contains(':') {
            if let Some((flag, v)) = given.first() {
                anyhow::bail!(
                    "{flag} {v} given with the compact form --objective {}; give the settings \
                     either in the compact form or as flags",
                    self.obj.objective
                );
            }
            return self
                .obj
                .objective
                .parse::<ObjectiveSpec>()
                .with_context(|| format!("invalid --objective {}", self.obj.objective));
        }
        let kind = self.obj.objective.trim().to_ascii_lowercase();
        anyhow::ensure!(
            terrain_robust::spec::NAMES.contains(&kind.as_str()),
            "--objective {}: unknown objective; expected one of {}",
            self.obj.objective,
            terrain_robust::spec::NAMES.join(", ")
        );
        let accepted = takes(&kind);
        let mut settings = Vec::new();
        for (flag, v) in given {
            match accepted.iter().find(|(f, _)| *f == flag) {
                Some((_, name)) => settings.push(format!("{name}={v}")),
                None => {
                    let list: Vec<&str> = accepted.iter().map(|(f, _)| *f).collect();
                    anyhow::bail!(
                        "{flag} {v} does not apply to --objective {kind} ({})",
                        if list.is_empty() {
                            "it takes no settings".to_string()
                        } else {
                            format!("it takes {}", list.join(", "))
                        }
                    );
                }
            }
        }
        for (flag, name) in accepted {
            let optional = matches!(*name, "sigma" | "rho") || (kind == "coce" && *name == "alpha");
            anyhow::ensure!(
                optional || settings.iter().any(|s| s.starts_with(&format!("{name}="))),
                "--objective {kind} needs {flag}"
            );
        }
        let compact = if settings.is_empty() {
            kind.clone()
        } else {
            format!("{kind}:{}", settings.join(","))
        };
        flags(compact.parse::<ObjectiveSpec>(), OBJECTIVE_FIELDS)
    }

    /// The training recipe these flags describe.
    pub fn run_spec(&self) -> Result<RunSpec> {
        let mut optimizer = self.optimizer;
        match &mut optimizer {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => {
                if let Some(m) = self.momentum {
                    *momentum = m;
                }
                if let Some(w) = self.weight_decay {
                    *weight_decay = w;
                }
            }
            Optimizer::Adam { weight_decay, .. } => {
                anyhow::ensure!(
                    self.momentum.is_none(),
                    "--momentum applies to sgd only; adam's moments are set with \
                     --optimizer adam:beta1=B1,beta2=B2"
                );
                if let Some(w) = self.weight_decay {
                    *weight_decay = w;
                }
            }
        }
        let arch = match (&self.arch, &self.init) {
            (Some(a), _) => a.clone(),
            (None, Some(init)) => {
                let raw = terrain_model::checkpoint::read_file(init)
                    .with_context(|| format!("reading --init {}", init.display()))?;
                terrain_model::checkpoint::stored_arch(&raw)?.with_context(|| {
                    format!(
                        "--init {} records no architecture (a PyTorch state dict?); give --arch",
                        init.display()
                    )
                })?
            }
            (None, None) => {
                anyhow::bail!("--arch is required (or --init with a terrain checkpoint)")
            }
        };
        let spec = RunSpec {
            arch,
            dtype: self.dtype,
            data: DataSpec {
                source: self.data.data.clone(),
                test_source: self.test_data.clone(),
                holdout: self.holdout,
                subset: self.subset,
                label_noise: self.label_noise,
                standardize: match (self.standardize, self.no_standardize) {
                    (true, _) => Standardize::On,
                    (_, true) => Standardize::Off,
                    _ => Standardize::Auto,
                },
                validation_source: self.validation_data.clone(),
                validation: self.validation,
            },
            training: TrainConfig {
                epochs: self.epochs,
                lr: self.lr,
                batch_size: self.batch_size,
                optimizer,
                lr_decay: self.lr_decay.clone(),
                seed: Seeds::shuffle(self.seed),
                drop_last: self.drop_last,
                loss: self.loss,
                mixup_alpha: self.mixup,
            },
            seeds: Seeds::derive(self.seed),
            init: self.init.clone(),
        };
        flags(
            spec.check(),
            &[
                ("epochs", "--epochs"),
                ("lr", "--lr"),
                ("batch_size", "--batch-size"),
                ("momentum", "--momentum"),
                ("weight_decay", "--weight-decay"),
                ("mixup_alpha", "--mixup"),
                ("lr_decay every", "--lr-decay"),
                ("lr_decay gamma", "--lr-decay"),
                ("holdout", "--holdout"),
                ("validation", "--validation"),
                ("subset", "--subset"),
                ("label_noise", "--label-noise"),
                ("beta1", "--optimizer"),
                ("beta2", "--optimizer"),
                ("eps", "--optimizer"),
            ],
        )?;
        Ok(spec)
    }
}

/// Runs `terrain train`.
pub fn run(ctx: &Context, a: TrainArgs) -> Result<()> {
    let spec = a.run_spec()?;
    let objective = a.objective()?;
    flags(objective.check_training(&spec.training), OBJECTIVE_FIELDS)?;
    let state = a.resume.then(|| a.out.with_extension("state.safetensors"));
    let options = RunOptions {
        device: Some(ctx.device.clone()),
        data_dir: a.data.data_dir.clone(),
        checkpoint: Some(a.out.clone()),
        state: state.clone(),
        progress: terrain_report::progress::terminal(),
        skip_epoch_train_evaluation: false,
    };
    if let Some(path) = &a.plot {
        // Before the work: a plot path that cannot be written should not cost a training run.
        check_plot_path(path)?;
    }
    let outcome = spec
        .run_observed(
            &options,
            Some(objective.build()?),
            &mut |event| match event {
                TrainEvent::Resumed { epochs_done } => eprintln!(
                    "resuming from {} after epoch {epochs_done}",
                    state.as_deref().unwrap_or(&a.out).display()
                ),
                TrainEvent::Epoch(e) => {
                    tracing::info!(epoch = e.epoch, train_loss = e.train_loss, "epoch");
                }
                TrainEvent::Step { .. } => {}
            },
        )
        .with_context(|| format!("training {} on {}", spec.arch, spec.data.source))?;
    if let Some(path) = &a.plot {
        let loss_label = match spec.training.loss {
            Some(LossKind::Mse) => "loss (mean squared error)",
            Some(LossKind::Ce) => "loss (cross-entropy, nats)",
            None if outcome.train.error.is_some() => "loss (cross-entropy, nats)",
            None => "loss (mean squared error)",
        };
        let title = format!("{}, objective {}", spec.arch, outcome.report.objective);
        curves(&title, loss_label, &outcome.report.epochs)
            .save(path)
            .with_context(|| format!("writing plot {}", path.display()))?;
    }

    let epochs: Vec<_> = outcome
        .report
        .epochs
        .iter()
        .map(|e| {
            json!({
                "epoch": e.epoch,
                "lr": e.lr,
                "train_loss": e.train_loss,
                "test_loss": e.test.map(|v| v.loss),
                "test_error": e.test.and_then(|v| v.error),
                "train_eval_loss": e.train.map(|v| v.loss),
                "train_error": e.train.and_then(|v| v.error),
                "validation_loss": e.validation.map(|v| v.loss),
                "validation_error": e.validation.and_then(|v| v.error),
                "param_norm": e.param_norm,
                "grad_norm": e.grad_norm,
                "loss_sd": e.concentration.map(|c| c.sd),
                "loss_p90": e.concentration.map(|c| c.p90),
                "loss_p99": e.concentration.map(|c| c.p99),
                "above_threshold": e.concentration.and_then(|c| c.above_threshold),
                "seconds": e.seconds,
            })
        })
        .collect();
    terrain_report::table::print_value(
        ctx.format,
        &json!({
            "checkpoint": a.out.display().to_string(),
            "arch": spec.arch.to_string(),
            "parameters": outcome.model.param_count(),
            "data": spec.data.source,
            "train_rows": outcome.train_rows,
            "test_rows": outcome.test_rows,
            "validation_rows": outcome.validation_rows,
            "init": spec.init.as_ref().map(|p| p.display().to_string()),
            "objective": outcome.report.objective,
            "steps": outcome.report.steps,
            "resumed_after_epoch": outcome.resumed_after,
            "seconds": outcome.seconds,
            "train": outcome.train,
            "test": outcome.test,
            "validation": outcome.validation,
            "epochs": epochs,
        }),
    );
    Ok(())
}
