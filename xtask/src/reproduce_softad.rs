//! `cargo xtask reproduce softad`: the synthetic experiment of Holland & Nakatani (NeurIPS 2024,
//! "Soft ascent-descent as a stable and flexible alternative to flooding"; code
//! feedbackward/bdd-flood `run_synthetic.py`), and the same comparison on the built-in digits.
//!
//! Synthetic protocol (methods.md §5.1): 2-D binary tasks gaussian, sinusoid and spiral; 100
//! training, 100 validation and 20,000 test rows; label noise 0 and 5% on the training and
//! validation rows (the test rows are clean); the Ishida MLP `mlp:2-500-500-500-500-2:relu:bn:nobias`;
//! Adam, lr 1e-3, batch 50, 500 epochs; grids of 40 values linspace(0.01, 2, 40) for the flood
//! level, the SAM radius and SoftAD's θ; per trial and method the setting with the best
//! final-epoch validation accuracy; means over 15 trials. Digits follows the paper's
//! Fashion-MNIST protocol scaled down: `mlp:64-1000-10:relu:bn`, SGD lr 0.1 momentum 0.9,
//! batch 200, 20% of the rows for testing and 20% of the rest for validation, the image grids;
//! `--tasks fashion-mnist` (once fetched) runs the paper's Fashion-MNIST protocol itself
//! (`mlp:784-1000-10:relu:bn`, the test split for testing, 80/20 train/validation).
//!
//! `--quick` keeps the protocol and shrinks the budget (20 epochs, 2 trials, 3 grid points
//! spread over the lower half of the grid, 2,000 test rows). Every finished training run is written atomically to
//! `OUT/runs/`, so a killed run continues with the runs not yet done; the settings are stored in
//! `OUT/settings.json` and a rerun with other settings into the same directory is refused.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use terrain_model::{
    Model,
    data::{
        self, Dataset,
        synthetic::{self, SyntheticConfig, SyntheticKind},
    },
    loss,
    rng::stream_seed,
    train::{EvalSets, Optimizer, TrainConfig, TrainEvent, Trainer},
};
use terrain_report::{
    Table,
    chart::{Chart, LineChart, Panel, Series},
    record::{Record, read_json, write_json},
    table::Cell,
};
use terrain_robust::ObjectiveSpec;

/// Arguments of `cargo xtask reproduce softad`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A few-minute version: 20 epochs, 2 trials, 3 grid points up to 1.05, 2,000 test rows.
    #[arg(long)]
    quick: bool,
    /// Output directory [default: target/reproduce/softad, or softad-quick with --quick].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tasks [default: gaussian, sinusoid, spiral, digits].
    #[arg(long, value_enum, value_delimiter = ',')]
    tasks: Vec<TaskName>,
    /// Label-noise levels [default: 0, 0.05].
    #[arg(long, value_delimiter = ',')]
    noise: Vec<f64>,
    /// Methods [default: erm, flood, sam, softad].
    #[arg(long, value_enum, value_delimiter = ',')]
    methods: Vec<Method>,
    /// Trials [default: 15 for the synthetic tasks and 5 for digits, 2 with --quick].
    #[arg(long)]
    trials: Option<usize>,
    /// Epochs [default: 500, 20 with --quick].
    #[arg(long)]
    epochs: Option<usize>,
    /// Grid points per method, spread evenly over the paper's grid [default: all, 3 with --quick].
    #[arg(long)]
    grid: Option<usize>,
    /// Only grid values up to this [default: none, 1.05 with --quick: the lower half of the
    /// synthetic grids, where the paper's selected means lie (θ̄ 0.595, b̄ 0.122)].
    #[arg(long)]
    grid_max: Option<f64>,
    /// Test rows of the synthetic tasks [default: 20000, 2000 with --quick].
    #[arg(long)]
    test_rows: Option<usize>,
    /// Base seed of the data, the initialisations and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train nothing: report the finished runs (only trials whose every setting of a method is
    /// done, so a selection is never made from part of the grid).
    #[arg(long)]
    report_only: bool,
}

/// A task of the comparison.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskName {
    /// Two Gaussians in 2-D.
    Gaussian,
    /// A sinusoidal boundary in 2-D.
    Sinusoid,
    /// Two spirals in 2-D.
    Spiral,
    /// The built-in 8×8 digits.
    Digits,
    /// Fashion-MNIST, once fetched (`cargo xtask datasets fetch fashion-mnist`).
    FashionMnist,
}

impl TaskName {
    fn name(self) -> &'static str {
        match self {
            TaskName::Gaussian => "gaussian",
            TaskName::Sinusoid => "sinusoid",
            TaskName::Spiral => "spiral",
            TaskName::Digits => "digits",
            TaskName::FashionMnist => "fashion-mnist",
        }
    }

    /// A real image set (the image-benchmark protocol) rather than a 2-D synthetic task.
    fn is_image(self) -> bool {
        matches!(self, TaskName::Digits | TaskName::FashionMnist)
    }
}

/// A method of the comparison.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Mean loss.
    Erm,
    /// Flooding on the batch mean.
    Flood,
    /// Pointwise flooding.
    Iflood,
    /// Sharpness-aware minimisation (base Adam or SGD).
    Sam,
    /// Soft ascent-descent, σ = 1.
    Softad,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Erm => "erm",
            Method::Flood => "flood",
            Method::Iflood => "iflood",
            Method::Sam => "sam",
            Method::Softad => "softad",
        }
    }

    fn objective(self, hp: Option<f64>) -> Result<ObjectiveSpec> {
        let v = hp.unwrap_or(0.0);
        Ok(match self {
            Method::Erm => ObjectiveSpec::Erm,
            Method::Flood => ObjectiveSpec::Flood { level: v },
            Method::Iflood => ObjectiveSpec::Iflood { theta: v },
            Method::Sam => ObjectiveSpec::Sam { rho: v },
            Method::Softad => ObjectiveSpec::Softad {
                theta: v,
                sigma: 1.0,
            },
        })
    }

    /// The paper's grid for this method on `task`.
    fn full_grid(self, task: TaskName) -> Vec<f64> {
        let linspace = |a: f64, b: f64, n: usize| -> Vec<f64> {
            (0..n)
                .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
                .collect()
        };
        match (self, task) {
            (Method::Erm, _) => vec![],
            (_, TaskName::Digits | TaskName::FashionMnist) => match self {
                Method::Flood => linspace(0.01, 1.0, 10),
                Method::Sam => vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.5],
                _ => vec![0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75],
            },
            _ => linspace(0.01, 2.0, 40),
        }
    }
}

/// Everything that shapes the numbers (stored in `settings.json`; a rerun must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    tasks: Vec<TaskName>,
    noise: Vec<f64>,
    methods: Vec<Method>,
    trials_synthetic: usize,
    trials_digits: usize,
    epochs: usize,
    grid: Option<usize>,
    #[serde(default)]
    grid_max: Option<f64>,
    test_rows: usize,
    seed: u64,
}

impl Record for Settings {
    const KIND: &'static str = "reproduce-softad-settings";
    const SCHEMA_VERSION: u32 = 1;
}

/// One training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    task: TaskName,
    noise: f64,
    trial: usize,
    method: Method,
    hp: Option<f64>,
}

impl Job {
    fn file_name(&self) -> String {
        format!(
            "{}-noise{}-trial{}-{}-{}.json",
            self.task.name(),
            self.noise,
            self.trial,
            self.method.name(),
            self.hp.map_or("none".to_string(), |h| format!("{h:.6}"))
        )
    }
}

/// Final metrics of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Final {
    train_loss: f64,
    train_acc: f64,
    val_loss: f64,
    val_acc: f64,
    test_loss: f64,
    test_acc: f64,
    param_norm: f64,
}

/// A finished run with its per-epoch curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunResult {
    job: Job,
    last: Final,
    /// Per epoch: training rows' loss (evaluation mode), validation accuracy, parameter norm.
    train_loss: Vec<f64>,
    val_acc: Vec<f64>,
    param_norm: Vec<f64>,
    seconds: f64,
}

impl Record for RunResult {
    const KIND: &'static str = "reproduce-softad-run";
    const SCHEMA_VERSION: u32 = 1;
}

/// The published Gaussian numbers (bdd-flood `eval_synthetic.ipynb`, 15 trials, final epoch):
/// test accuracy, train loss, test loss, model norm.
fn published(task: TaskName, noise: f64, method: Method) -> Option<[f64; 4]> {
    if task != TaskName::Gaussian {
        return None;
    }
    let zero = noise == 0.0;
    let five = (noise - 0.05).abs() < 1e-12;
    match (method, zero, five) {
        (Method::Erm, true, _) => Some([0.9793, 0.0053, 0.0876, 52.96]),
        (Method::Flood, true, _) => Some([0.9798, 0.124, 0.134, 52.13]),
        (Method::Sam, true, _) => Some([0.9813, 0.091, 0.115, 52.29]),
        (Method::Softad, true, _) => Some([0.9811, 0.594, 0.598, 51.88]),
        (Method::Erm, _, true) => Some([0.9030, 0.044, 0.597, 53.50]),
        (Method::Flood, _, true) => Some([0.9256, 0.279, 0.394, 52.26]),
        (Method::Sam, _, true) => Some([0.9256, 0.144, 0.512, 52.96]),
        (Method::Softad, _, true) => Some([0.9150, 0.498, 0.534, 52.01]),
        _ => None,
    }
}

fn settings(a: &Args) -> Settings {
    let or = |v: Option<usize>, full: usize, quick: usize| {
        v.unwrap_or(if a.quick { quick } else { full })
    };
    Settings {
        tasks: if a.tasks.is_empty() {
            vec![
                TaskName::Gaussian,
                TaskName::Sinusoid,
                TaskName::Spiral,
                TaskName::Digits,
            ]
        } else {
            a.tasks.clone()
        },
        noise: if a.noise.is_empty() {
            vec![0.0, 0.05]
        } else {
            a.noise.clone()
        },
        methods: if a.methods.is_empty() {
            vec![Method::Erm, Method::Flood, Method::Sam, Method::Softad]
        } else {
            a.methods.clone()
        },
        trials_synthetic: or(a.trials, 15, 2),
        trials_digits: or(a.trials, 5, 2),
        epochs: or(a.epochs, 500, 20),
        grid: a.grid.or(if a.quick { Some(3) } else { None }),
        grid_max: a.grid_max.or(if a.quick { Some(1.05) } else { None }),
        test_rows: or(a.test_rows, 20_000, 2_000),
        seed: a.seed,
    }
}

/// `k` points spread evenly over `grid` (its ends included), or all of it.
fn subgrid(grid: &[f64], k: Option<usize>) -> Vec<f64> {
    match k {
        Some(k) if k < grid.len() && k >= 2 => (0..k)
            .map(|i| grid[(i * (grid.len() - 1) + (k - 1) / 2) / (k - 1)])
            .collect(),
        Some(1) if !grid.is_empty() => vec![grid[grid.len() / 2]],
        _ => grid.to_vec(),
    }
}

fn jobs(s: &Settings) -> Vec<Job> {
    let mut out = Vec::new();
    for &task in &s.tasks {
        let trials = if task.is_image() {
            s.trials_digits
        } else {
            s.trials_synthetic
        };
        for &noise in &s.noise {
            for trial in 0..trials {
                for &method in &s.methods {
                    let full: Vec<f64> = method
                        .full_grid(task)
                        .into_iter()
                        .filter(|&v| s.grid_max.is_none_or(|m| v <= m))
                        .collect();
                    let grid = subgrid(&full, s.grid);
                    if grid.is_empty() {
                        out.push(Job {
                            task,
                            noise,
                            trial,
                            method,
                            hp: None,
                        });
                    }
                    for hp in grid {
                        out.push(Job {
                            task,
                            noise,
                            trial,
                            method,
                            hp: Some(hp),
                        });
                    }
                }
            }
        }
    }
    out
}

/// A seed for `(task, noise, trial, role)`, the same for every method (paired comparisons).
fn seed_for(s: &Settings, job: &Job, role: u64) -> u64 {
    let task = job.task as u64;
    let noise = (job.noise * 1e6).round() as u64;
    let a = stream_seed(s.seed, task * 1_000_003 + noise);
    stream_seed(a, job.trial as u64 * 16 + role)
}

struct TaskData {
    train: Dataset,
    validation: Dataset,
    test: Dataset,
}

fn task_data(s: &Settings, job: &Job) -> Result<TaskData> {
    let kind = match job.task {
        TaskName::Gaussian => SyntheticKind::Gaussian,
        TaskName::Sinusoid => SyntheticKind::Sinusoid,
        TaskName::Spiral => SyntheticKind::Spiral,
        TaskName::Digits | TaskName::FashionMnist => {
            let (rest, test) = if job.task == TaskName::Digits {
                data::builtin::load("digits")?.split(0.8, seed_for(s, job, 0))?
            } else {
                let load = |name: &str| {
                    data::load(name, &data::LoadOptions::default())
                        .with_context(|| "fetch it first: cargo xtask datasets fetch fashion-mnist")
                };
                (load("fashion-mnist")?, load("fashion-mnist:test")?)
            };
            let (train, validation) = rest.split(0.8, seed_for(s, job, 1))?;
            let train = if job.noise > 0.0 {
                train.with_label_noise(job.noise, seed_for(s, job, 2))?
            } else {
                train
            };
            let validation = if job.noise > 0.0 {
                validation.with_label_noise(job.noise, seed_for(s, job, 3))?
            } else {
                validation
            };
            return Ok(TaskData {
                train,
                validation,
                test,
            });
        }
    };
    let make = |n: usize, label_noise: f64, role: u64| {
        synthetic::generate(&SyntheticConfig {
            kind,
            n,
            label_noise,
            seed: seed_for(s, job, role),
            ..SyntheticConfig::default()
        })
    };
    Ok(TaskData {
        train: make(100, job.noise, 0)?,
        validation: make(100, job.noise, 1)?,
        test: make(s.test_rows, 0.0, 2)?,
    })
}

fn run_job(s: &Settings, job: &Job, on_epoch: &mut dyn FnMut(usize)) -> Result<RunResult> {
    let started = Instant::now();
    let d = task_data(s, job)?;
    let (arch, config) = match job.task {
        TaskName::Digits | TaskName::FashionMnist => (
            if job.task == TaskName::Digits {
                "mlp:64-1000-10:relu:bn"
            } else {
                "mlp:784-1000-10:relu:bn"
            },
            TrainConfig {
                epochs: s.epochs,
                lr: 0.1,
                batch_size: 200,
                optimizer: Optimizer::Sgd {
                    momentum: 0.9,
                    weight_decay: 0.0,
                },
                seed: seed_for(s, job, 5),
                ..TrainConfig::default()
            },
        ),
        _ => (
            "mlp:2-500-500-500-500-2:relu:bn:nobias",
            TrainConfig {
                epochs: s.epochs,
                lr: 1e-3,
                batch_size: 50,
                optimizer: Optimizer::adam(),
                seed: seed_for(s, job, 5),
                ..TrainConfig::default()
            },
        ),
    };
    let model = Model::new(arch.parse()?, DType::F32, &Device::Cpu, seed_for(s, job, 4))?;
    let objective = job.method.objective(job.hp)?;
    let mut trainer = Trainer::new(config)?.with_objective(objective.build()?);
    let report = trainer.fit_eval(
        &model,
        &d.train,
        EvalSets {
            validation: Some(&d.validation),
            test: None,
        },
        None,
        &mut |e| {
            if let TrainEvent::Epoch(r) = e {
                on_epoch(r.epoch);
            }
        },
    )?;
    let test = loss::evaluate(&model, &d.test, 2000)?;
    let last = report.epochs.last().context("no epochs")?;
    let train = last.train.context("no training evaluation")?;
    let val = last.validation.context("no validation evaluation")?;
    let acc = |e: &loss::Evaluation| e.accuracy.unwrap_or(f64::NAN);
    Ok(RunResult {
        job: job.clone(),
        last: Final {
            train_loss: train.loss,
            train_acc: acc(&train),
            val_loss: val.loss,
            val_acc: acc(&val),
            test_loss: test.loss,
            test_acc: acc(&test),
            param_norm: last.param_norm,
        },
        train_loss: report
            .epochs
            .iter()
            .map(|e| e.train.map_or(f64::NAN, |t| t.loss))
            .collect(),
        val_acc: report
            .epochs
            .iter()
            .map(|e| e.validation.and_then(|v| v.accuracy).unwrap_or(f64::NAN))
            .collect(),
        param_norm: report.epochs.iter().map(|e| e.param_norm).collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One row of the summary table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    task: String,
    noise: f64,
    method: String,
    trials: usize,
    hp_mean: Option<f64>,
    test_acc: f64,
    train_loss: f64,
    test_loss: f64,
    loss_gap: f64,
    model_norm: f64,
    published_test_acc: Option<f64>,
    published_train_loss: Option<f64>,
    published_test_loss: Option<f64>,
    published_model_norm: Option<f64>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Per (task, noise, method): the selected run of every trial (best final validation accuracy;
/// ties to the smaller setting).
fn select(results: &[RunResult]) -> BTreeMap<(TaskName, u64, Method), Vec<&RunResult>> {
    let mut best: BTreeMap<(TaskName, u64, Method, usize), &RunResult> = BTreeMap::new();
    for r in results {
        let key = (r.job.task, r.job.noise.to_bits(), r.job.method, r.job.trial);
        let better = best.get(&key).is_none_or(|b| {
            r.last.val_acc > b.last.val_acc
                || (r.last.val_acc == b.last.val_acc && r.job.hp < b.job.hp)
        });
        if better {
            best.insert(key, r);
        }
    }
    let mut out: BTreeMap<(TaskName, u64, Method), Vec<&RunResult>> = BTreeMap::new();
    for ((t, n, m, _), r) in best {
        out.entry((t, n, m)).or_default().push(r);
    }
    out
}

fn summarise(results: &[RunResult]) -> Vec<Row> {
    select(results)
        .into_iter()
        .map(|((task, noise, method), runs)| {
            let noise = f64::from_bits(noise);
            let f = |g: &dyn Fn(&Final) -> f64| {
                mean(&runs.iter().map(|r| g(&r.last)).collect::<Vec<_>>())
            };
            let hps: Vec<f64> = runs.iter().filter_map(|r| r.job.hp).collect();
            let p = published(task, noise, method);
            Row {
                task: task.name().into(),
                noise,
                method: method.name().into(),
                trials: runs.len(),
                hp_mean: (!hps.is_empty()).then(|| mean(&hps)),
                test_acc: f(&|x| x.test_acc),
                train_loss: f(&|x| x.train_loss),
                test_loss: f(&|x| x.test_loss),
                loss_gap: f(&|x| x.test_loss - x.train_loss),
                model_norm: f(&|x| x.param_norm),
                published_test_acc: p.map(|p| p[0]),
                published_train_loss: p.map(|p| p[1]),
                published_test_loss: p.map(|p| p[2]),
                published_model_norm: p.map(|p| p[3]),
            }
        })
        .collect()
}

/// Training curves of the selected runs (mean over trials) per task and noise level.
fn curves(results: &[RunResult], out: &Path) -> Result<Vec<PathBuf>> {
    let selected = select(results);
    type Selected<'a> = Vec<(Method, Vec<&'a RunResult>)>;
    let mut by_task: BTreeMap<(TaskName, u64), Selected<'_>> = BTreeMap::new();
    for ((t, n, m), runs) in selected {
        by_task.entry((t, n)).or_default().push((m, runs));
    }
    let mut paths = Vec::new();
    for ((task, noise), methods) in by_task {
        let avg = |runs: &[&RunResult], f: &dyn Fn(&RunResult) -> &Vec<f64>| -> Vec<(f64, f64)> {
            let len = runs.iter().map(|r| f(r).len()).min().unwrap_or(0);
            (0..len)
                .map(|i| {
                    (
                        (i + 1) as f64,
                        mean(&runs.iter().map(|r| f(r)[i]).collect::<Vec<_>>()),
                    )
                })
                .collect()
        };
        let panel = |title: &str, y: &str, f: &dyn Fn(&RunResult) -> &Vec<f64>| Panel {
            title: title.into(),
            x_label: "epoch".into(),
            y_label: y.into(),
            series: methods
                .iter()
                .map(|(m, runs)| Series::new(m.name(), avg(runs, f)))
                .collect(),
            ..Panel::default()
        };
        let chart = LineChart {
            title: format!(
                "SoftAD reproduction: {}, label noise {}% (selected settings, mean over trials)",
                task.name(),
                f64::from_bits(noise) * 100.0
            ),
            panels: vec![
                panel(
                    "Training loss (all training rows, evaluation mode)",
                    "cross-entropy (nats)",
                    &|r| &r.train_loss,
                ),
                panel("Validation accuracy", "accuracy (fraction correct)", &|r| {
                    &r.val_acc
                }),
                panel("Model norm", "‖w‖₂ over all parameters", &|r| {
                    &r.param_norm
                }),
            ],
            ..LineChart::default()
        };
        let path = out.join(format!(
            "curves-{}-noise{}.png",
            task.name(),
            f64::from_bits(noise)
        ));
        chart.save(&path)?;
        paths.push(path);
    }
    Ok(paths)
}

fn print_tables(rows: &[Row]) -> Result<()> {
    let mut groups: BTreeMap<(String, u64), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.task.clone(), r.noise.to_bits()))
            .or_default()
            .push(r);
    }
    for ((task, noise), rows) in groups {
        let published = rows.iter().any(|r| r.published_test_acc.is_some());
        let mut cols = vec![
            "method",
            "trials",
            "setting",
            "test acc",
            "train loss",
            "test loss",
            "loss gap",
            "model norm",
        ];
        if published {
            cols.extend(["paper test acc", "paper train/test loss", "paper norm"]);
        }
        let mut t = Table::new(cols);
        for r in rows {
            let mut row = vec![
                Cell::Str(r.method.clone()),
                Cell::Int(r.trials as i64),
                r.hp_mean.map_or(Cell::Null, Cell::Float),
                Cell::Float(r.test_acc),
                Cell::Float(r.train_loss),
                Cell::Float(r.test_loss),
                Cell::Float(r.loss_gap),
                Cell::Float(r.model_norm),
            ];
            if published {
                row.push(r.published_test_acc.map_or(Cell::Null, Cell::Float));
                row.push(match (r.published_train_loss, r.published_test_loss) {
                    (Some(a), Some(b)) => Cell::Str(format!("{a} / {b}")),
                    _ => Cell::Null,
                });
                row.push(r.published_model_norm.map_or(Cell::Null, Cell::Float));
            }
            t.push(row)?;
        }
        println!(
            "\n{task}, label noise {}% (means over trials of the setting with the best final validation accuracy)",
            f64::from_bits(noise) * 100.0
        );
        print!("{}", t.to_terminal());
    }
    Ok(())
}

/// Runs `cargo xtask reproduce softad`.
pub fn run(a: Args) -> Result<()> {
    let s = settings(&a);
    anyhow::ensure!(s.epochs > 0, "--epochs must be at least 1");
    anyhow::ensure!(s.trials_synthetic > 0, "--trials must be at least 1");
    anyhow::ensure!(s.test_rows > 0, "--test-rows must be at least 1");
    for &n in &s.noise {
        anyhow::ensure!(
            (0.0..=1.0).contains(&n),
            "--noise {n} is not a fraction in [0, 1]"
        );
    }
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(if a.quick {
            "target/reproduce/softad-quick"
        } else {
            "target/reproduce/softad"
        })
    });
    let runs_dir = out.join("runs");
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("creating {}", runs_dir.display()))?;
    let settings_path = out.join("settings.json");
    if settings_path.exists() {
        let saved: Settings = read_json(&settings_path)?;
        anyhow::ensure!(
            saved == s,
            "{} holds a run with other settings ({saved:?}); use another --out or delete it",
            out.display()
        );
    } else {
        write_json(&settings_path, &s)?;
    }
    let all = jobs(&s);
    let mut results = Vec::new();
    let mut todo = Vec::new();
    for j in &all {
        let p = runs_dir.join(j.file_name());
        match p.exists().then(|| read_json::<RunResult>(&p)) {
            Some(Ok(r)) => results.push(r),
            _ => todo.push(j.clone()),
        }
    }
    eprintln!(
        "{} training runs ({} done earlier, {} to go), {} epochs each, into {}",
        all.len(),
        results.len(),
        todo.len(),
        s.epochs,
        out.display()
    );
    if a.report_only {
        // Only complete (task, noise, trial, method) groups.
        let key = |j: &Job| (j.task, j.noise.to_bits(), j.trial, j.method);
        let missing: std::collections::BTreeSet<_> = todo.iter().map(key).collect();
        results.retain(|r| !missing.contains(&key(&r.job)));
        todo.clear();
        eprintln!("reporting {} runs of complete groups", results.len());
    }
    let progress = terrain_report::progress::terminal();
    progress.start(
        "reproduce softad",
        Some((all.len() as u64).saturating_mul(s.epochs as u64)),
    );
    progress.set_position((results.len() as u64).saturating_mul(s.epochs as u64));
    let started = Instant::now();
    for (i, job) in todo.iter().enumerate() {
        progress.set_message(&format!(
            "{} noise {} trial {} {} {}",
            job.task.name(),
            job.noise,
            job.trial,
            job.method.name(),
            job.hp.map_or(String::new(), |h| format!("{h:.3}"))
        ));
        let r = run_job(&s, job, &mut |_| progress.inc(1))?;
        write_json(&runs_dir.join(job.file_name()), &r)?;
        tracing::debug!(run = i + 1, seconds = r.seconds, "run done");
        results.push(r);
    }
    progress.finish();
    if !todo.is_empty() {
        eprintln!(
            "{} runs in {:.0} s",
            todo.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let rows = summarise(&results);
    print_tables(&rows)?;
    Table::from_rows(&rows)?.save(&out.join("summary.csv"))?;
    for p in curves(&results, &out)? {
        eprintln!("wrote {}", p.display());
    }
    eprintln!("wrote {}", out.join("summary.csv").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(out: &Path, epochs: usize) -> Args {
        Args {
            quick: false,
            out: Some(out.to_path_buf()),
            tasks: vec![TaskName::Gaussian],
            noise: vec![0.05],
            methods: vec![Method::Erm, Method::Softad],
            trials: Some(1),
            epochs: Some(epochs),
            grid: Some(2),
            grid_max: None,
            test_rows: Some(64),
            seed: 3,
            report_only: false,
        }
    }

    #[test]
    fn a_rerun_redoes_only_the_missing_runs_and_refuses_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        run(tiny(dir.path(), 2)).unwrap();
        let runs = dir.path().join("runs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        // ERM, and SoftAD at the two ends of the grid.
        assert_eq!(files.len(), 3);
        let before: Vec<RunResult> = files.iter().map(|f| read_json(f).unwrap()).collect();
        // As if killed before the last run was written: only that one is trained again, and
        // with the same numbers.
        std::fs::remove_file(&files[2]).unwrap();
        run(tiny(dir.path(), 2)).unwrap();
        let again: RunResult = read_json(&files[2]).unwrap();
        assert_eq!(again.last, before[2].last);
        assert_eq!(again.train_loss, before[2].train_loss);
        assert!(dir.path().join("summary.csv").is_file());
        assert!(dir.path().join("curves-gaussian-noise0.05.png").is_file());
        let e = run(tiny(dir.path(), 3)).unwrap_err().to_string();
        assert!(e.contains("other settings"), "{e}");
    }

    #[test]
    fn subgrids_keep_the_ends_and_spread_evenly() {
        let g: Vec<f64> = (0..40).map(f64::from).collect();
        assert_eq!(subgrid(&g, Some(4)), vec![0.0, 13.0, 26.0, 39.0]);
        assert_eq!(subgrid(&g, Some(2)), vec![0.0, 39.0]);
        assert_eq!(subgrid(&g, None).len(), 40);
        assert_eq!(subgrid(&g, Some(100)).len(), 40);
        assert_eq!(subgrid(&[], Some(4)), Vec::<f64>::new());
    }

    #[test]
    fn selection_takes_the_best_final_validation_accuracy_per_trial() {
        let run = |trial, hp, val_acc, test_acc| RunResult {
            job: Job {
                task: TaskName::Gaussian,
                noise: 0.0,
                trial,
                method: Method::Softad,
                hp: Some(hp),
            },
            last: Final {
                train_loss: hp,
                train_acc: 1.0,
                val_loss: 0.0,
                val_acc,
                test_loss: hp + 0.1,
                test_acc,
                param_norm: 1.0,
            },
            train_loss: vec![],
            val_acc: vec![],
            param_norm: vec![],
            seconds: 0.0,
        };
        let results = vec![
            run(0, 0.1, 0.9, 0.5),
            run(0, 0.5, 0.95, 0.7),
            run(1, 0.1, 0.97, 0.8),
            run(1, 0.5, 0.97, 0.9),
        ];
        let rows = summarise(&results);
        assert_eq!(rows.len(), 1);
        // Trial 0 picks 0.5, trial 1 ties and picks the smaller 0.1.
        assert!((rows[0].hp_mean.unwrap() - 0.3).abs() < 1e-12);
        assert!((rows[0].test_acc - 0.75).abs() < 1e-12);
        assert!((rows[0].loss_gap - 0.1).abs() < 1e-12);
        assert_eq!(rows[0].published_test_acc, Some(0.9811));
    }
}
