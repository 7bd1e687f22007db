//! The trainer's gradient by the differentiation engine (`train::reduced_gradient`, which
//! calls [`engine::weighted_gradient`] directly: no set-up) against candle's autodiff of the same
//! reduction (`train::autodiff_reduced_gradient`), in f64: the mean loss, nonlinear reductions of
//! the per-example losses (tilted, CVaR-like top-k), soft targets, MSE, BatchNorm in training
//! mode (batch statistics, the running update, SAM's pass that leaves them alone), and whole
//! training runs; plus the fallback rules of `reduced_gradient` (dtypes off the host backend);
//! and the engine's forward pass, which evaluation runs on, against candle's.

use candle_core::{DType, Tensor};
use terrain_model::{
    ArchSpec, Model,
    data::{Batch, Dataset},
    engine,
    loss::LossKind,
    train::{
        self, GradientSource, Objective, Optimizer, StepOutput, TrainConfig, Trainer,
        autodiff_reduced_gradient, reduced_gradient,
    },
};
use terrain_testkit::{case_data, in_pool, rel_err, soft_labels};

/// Networks without BatchNorm (where training and evaluation mode agree), every activation,
/// convolutions, pooling and residual blocks.
const CASES: &[(&str, LossKind)] = &[
    ("mlp:5-7-6-3:relu", LossKind::Ce),
    ("mlp:5-7-6-3:tanh", LossKind::Ce),
    ("mlp:5-7-6-3:gelu", LossKind::Ce),
    ("mlp:5-7-6-3:silu", LossKind::Ce),
    ("mlp:5-7-6-3:sigmoid", LossKind::Ce),
    ("mlp:5-7-6-3:softplus", LossKind::Ce),
    ("mlp:5-8-2:tanh", LossKind::Mse),
    ("mlp:5-7-3:tanh:nobias", LossKind::Ce),
    ("cnn:2x8x8-3-4-3:relu", LossKind::Ce),
    ("cnn:1x8x8-3-4-3:tanh", LossKind::Ce),
    ("cnn:1x4x4-2-2:softplus", LossKind::Mse),
];

fn setup(spec: &str, loss: LossKind, seed: u64) -> (Model, Dataset) {
    let arch: ArchSpec = spec.parse().unwrap();
    let model = Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, seed).unwrap();
    (model, case_data(&arch, 24, loss))
}

fn batch_of(d: &Dataset) -> Batch {
    Batch {
        x: d.x.clone(),
        y: d.y.clone(),
    }
}

/// The largest relative error between the engine's and autodiff's gradients of `reduce`.
fn gap(
    m: &Model,
    batch: &Batch,
    loss: LossKind,
    reduce: impl Fn(&Tensor) -> terrain_model::Result<Tensor>,
) -> f64 {
    let fast = reduced_gradient(m, batch, loss, true, &reduce).unwrap();
    let slow = autodiff_reduced_gradient(m, batch, loss, true, &reduce).unwrap();
    assert_eq!(fast.source, GradientSource::Engine);
    assert_eq!(slow.source, GradientSource::Autodiff);
    assert!(
        (fast.loss - slow.loss).abs() <= 1e-13 * slow.loss.abs().max(1.0),
        "mean loss {} vs {}",
        fast.loss,
        slow.loss
    );
    assert_eq!(fast.grads.len(), slow.grads.len());
    fast.grads
        .iter()
        .zip(&slow.grads)
        .map(|(a, b)| {
            assert_eq!(a.dims(), b.dims());
            rel_err(a, b)
        })
        .fold(0.0, f64::max)
}

fn mean(l: &Tensor) -> terrain_model::Result<Tensor> {
    Ok(l.mean_all()?)
}

/// Tilted risk `(1/t) log mean exp(t ℓ)`, t = 2: row weights proportional to `exp(t ℓ_i)`.
fn tilted(l: &Tensor) -> terrain_model::Result<Tensor> {
    let n = l.dim(0)? as f64;
    Ok(((l.affine(2.0, 0.0)?.exp()?.sum_all()?.log()? - n.ln())? / 2.0)?)
}

/// The mean of the largest third of the losses (a CVaR at α = 1/3): a selection, not a smooth map.
fn top_third(l: &Tensor) -> terrain_model::Result<Tensor> {
    let n = l.dim(0)?;
    let k = n.div_ceil(3);
    let idx = l.arg_sort_last_dim(false)?.narrow(0, 0, k)?;
    Ok(l.gather(&idx, 0)?.mean_all()?)
}

#[test]
fn host_gradient_matches_autodiff_for_the_mean_and_nonlinear_reductions() {
    for &(spec, loss) in CASES {
        let (m, d) = setup(spec, loss, 3);
        let batch = batch_of(&d);
        for (name, err) in [
            ("mean", gap(&m, &batch, loss, mean)),
            ("tilted", gap(&m, &batch, loss, tilted)),
            ("top third", gap(&m, &batch, loss, top_third)),
        ] {
            assert!(err <= 1e-12, "{spec} {name}: relative error {err:.2e}");
        }
    }
}

/// In a two-thread pool a batch of 40 or 101 rows is swept as two blocks of rows, each on its
/// own thread (the parts added up after), with each block's own row weights and soft targets;
/// one of 24 rows stays whole (its products split instead).
#[test]
fn host_gradient_matches_autodiff_with_the_batch_split_over_two_threads() {
    in_pool(2, || {
        assert_eq!(rayon::current_num_threads(), 2);
        for &(spec, loss) in &[
            ("mlp:5-7-6-3:gelu", LossKind::Ce),
            ("mlp:5-8-2:tanh", LossKind::Mse),
            ("cnn:2x8x8-3-4-3:relu", LossKind::Ce),
        ] {
            let (m, _) = setup(spec, loss, 4);
            let arch: ArchSpec = spec.parse().unwrap();
            for rows in [24, 40, 101] {
                let d = case_data(&arch, rows, loss);
                let err = gap(&m, &batch_of(&d), loss, top_third);
                assert!(
                    err <= 1e-12,
                    "{spec}, {rows} rows: relative error {err:.2e}"
                );
            }
        }
        let (m, _) = setup("mlp:5-7-6-3:tanh", LossKind::Ce, 6);
        let arch: ArchSpec = "mlp:5-7-6-3:tanh".parse().unwrap();
        let soft = soft_labels(&case_data(&arch, 64, LossKind::Ce), 2);
        let err = gap(&m, &batch_of(&soft), LossKind::Ce, tilted);
        assert!(err <= 1e-12, "soft targets: relative error {err:.2e}");
    });
}

#[test]
fn host_gradient_matches_autodiff_on_soft_targets_and_images_as_flat_rows() {
    // Soft (mixup-like) targets: the target mass enters the loss Hessian, the gradient here.
    for spec in ["mlp:5-7-6-3:tanh", "cnn:2x8x8-3-4-3:relu"] {
        let (m, d) = setup(spec, LossKind::Ce, 5);
        let soft = soft_labels(&d, 9);
        let err = gap(&m, &batch_of(&soft), LossKind::Ce, tilted);
        assert!(
            err <= 1e-12,
            "{spec} soft targets: relative error {err:.2e}"
        );
    }
    // A CNN fed flat rows (as a data set of flattened images holds them): the engine shapes
    // them as the model's forward pass does.
    let (m, d) = setup("cnn:1x8x8-3-4-3:tanh", LossKind::Ce, 2);
    let flat = Batch {
        x: d.x.flatten_from(1).unwrap(),
        y: d.y.clone(),
    };
    let err = gap(&m, &flat, LossKind::Ce, mean);
    assert!(err <= 1e-12, "flat rows: relative error {err:.2e}");
}

/// ERM by candle's autodiff: the reference a training run through the engine is held to.
struct AutodiffErm;

impl Objective for AutodiffErm {
    fn name(&self) -> String {
        "erm (autodiff)".into()
    }
    fn step(
        &mut self,
        model: &Model,
        batch: &Batch,
        loss: LossKind,
    ) -> terrain_model::Result<StepOutput> {
        autodiff_reduced_gradient(model, batch, loss, true, |l| Ok(l.mean_all()?))
    }
}

fn flat(m: &Model) -> Vec<f64> {
    m.params()
        .iter()
        .flat_map(|p| p.var.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        .collect()
}

/// Trains `spec` for three epochs of SGD with momentum on 48 rows, batch 16, with the trainer's
/// own ERM (the engine) or `objective`.
fn train_three_epochs(spec: &str, objective: Option<Box<dyn Objective>>) -> (Vec<f64>, Vec<f64>) {
    let arch: ArchSpec = spec.parse().unwrap();
    let model = Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 7).unwrap();
    let data = case_data(&arch, 48, LossKind::Ce);
    let cfg = TrainConfig {
        epochs: 3,
        lr: 0.1,
        batch_size: 16,
        optimizer: Optimizer::Sgd {
            momentum: 0.9,
            weight_decay: 1e-3,
        },
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(cfg).unwrap();
    if let Some(o) = objective {
        trainer = trainer.with_objective(o);
    }
    let report = trainer.fit(&model, &data, None, &mut |_| {}).unwrap();
    let losses = report.epochs.iter().map(|e| e.train_loss).collect();
    (flat(&model), losses)
}

/// A trainer built with no set-up call steps on the engine's gradient where it applies (a
/// network without BatchNorm on the CPU) and trains as autodiff would, and evaluation of a
/// BatchNorm network (evaluation mode) runs on the engine's forward pass and agrees with candle's.
#[test]
fn trainer_steps_on_the_engine_where_it_applies_and_trains_alike() {
    let (slow_w, slow_l) = train_three_epochs("mlp:5-7-6-3:tanh", Some(Box::new(AutodiffErm)));
    let (fast_w, fast_l) = train_three_epochs("mlp:5-7-6-3:tanh", None);
    let arch: ArchSpec = "mlp:5-7-6-3:tanh".parse().unwrap();
    let m = Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 7).unwrap();
    let d = case_data(&arch, 16, LossKind::Ce);
    let step = train::Erm.step(&m, &batch_of(&d), LossKind::Ce).unwrap();
    assert_eq!(step.source, GradientSource::Engine, "ERM on the engine");
    // A BatchNorm network trains on the engine too (batch statistics); evaluation runs on its
    // running statistics.
    let arch: ArchSpec = "mlp:5-7-3:tanh:bn".parse().unwrap();
    let bn = Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 0).unwrap();
    terrain_testkit::randomize_batch_norm(&bn, 5);
    let d = case_data(&arch, 40, LossKind::Ce);
    let by_engine = terrain_model::loss::evaluate(&bn, &d, 16).unwrap();
    let x = bn.prepare_input(&d.x).unwrap();
    let logits = bn.forward_t(&x, false).unwrap();
    let by_candle = terrain_model::loss::mean(&logits, &d.y, LossKind::Ce)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let step = train::Erm.step(&bn, &batch_of(&d), LossKind::Ce).unwrap();
    assert_eq!(
        step.source,
        GradientSource::Engine,
        "BatchNorm in training mode"
    );
    assert!(
        (by_engine.loss - by_candle).abs() <= 1e-13 * by_candle,
        "evaluation: {} by the engine, {by_candle} by candle",
        by_engine.loss,
    );
    let dw = fast_w
        .iter()
        .zip(&slow_w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let scale = slow_w.iter().map(|x| x.abs()).fold(0.0, f64::max);
    assert!(
        dw <= 1e-11 * scale,
        "weights after training differ by {dw:.2e}"
    );
    assert!(dw > 0.0, "the two runs must have taken different roads");
    for (a, b) in fast_l.iter().zip(&slow_l) {
        assert!((a - b).abs() <= 1e-11 * b.abs(), "epoch losses {a} vs {b}");
    }
}

/// The engine's forward pass (what `Model::forward_eval`, and so evaluation and loss surfaces,
/// run on) against candle's: every case, BatchNorm in evaluation mode on random running
/// statistics, residual networks, images as flat rows, and batches split over two threads.
#[test]
fn host_logits_equal_candle_forward_pass() {
    let specs = CASES.iter().map(|c| c.0).chain([
        "mlp:5-7-6-3:gelu:bn",
        "resnet18:3x8x8:w2:4",
        "resnet18:3x8x8:w1:3:act=tanh",
    ]);
    in_pool(2, || {
        for spec in specs {
            let arch: ArchSpec = spec.parse().unwrap();
            let m = Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 3).unwrap();
            terrain_testkit::randomize_batch_norm(&m, 4);
            // 5 rows: one block; 70: split into blocks of rows on two threads.
            for rows in [5, 70] {
                let d = case_data(&arch, rows, LossKind::Ce);
                let flat = d.x.flatten_from(1).unwrap();
                let slow = m.forward_t(&d.x, false).unwrap();
                for x in [&d.x, &flat] {
                    let fast = engine::logits(&m, x).unwrap().expect("the sweep applies");
                    assert_eq!(fast.dims(), slow.dims(), "{spec}");
                    let e = rel_err(&fast, &slow);
                    assert!(e <= 1e-13, "{spec}, {rows} rows: relative error {e:.2e}");
                }
            }
        }
    });
    // f16 is off the sweep: it declines, and forward_eval falls back to candle.
    let arch: ArchSpec = "mlp:5-7-3:tanh".parse().unwrap();
    let m = Model::new(arch.clone(), DType::F16, &candle_core::Device::Cpu, 0).unwrap();
    let x = case_data(&arch, 4, LossKind::Ce)
        .x
        .to_dtype(DType::F16)
        .unwrap();
    assert!(engine::logits(&m, &x).unwrap().is_none());
    // Inputs that do not fit are the model's error, naming the network.
    let (m, _) = setup("mlp:5-7-3:tanh", LossKind::Ce, 0);
    let wrong = Tensor::zeros((3, 4), DType::F64, &candle_core::Device::Cpu).unwrap();
    let err = engine::logits(&m, &wrong).unwrap_err().to_string();
    assert!(err.contains("mlp:5-7-3"), "{err}");
}

#[test]
fn engine_declines_off_its_domain_and_bad_row_weights_are_named() {
    // f16 is not a host-sweep dtype: the engine declines before asking for row weights.
    let arch: ArchSpec = "mlp:5-7-3:tanh".parse().unwrap();
    let m = Model::new(arch.clone(), DType::F16, &candle_core::Device::Cpu, 0).unwrap();
    let d = case_data(&arch, 8, LossKind::Ce);
    let batch = Batch {
        x: d.x.to_dtype(DType::F16).unwrap(),
        y: d.y.clone(),
    };
    let mut asked = false;
    let out = engine::weighted_gradient(&m, &batch, LossKind::Ce, false, &mut |l| {
        asked = true;
        Ok(l.clone())
    })
    .unwrap();
    assert!(out.is_none() && !asked);
    // Row weights of the wrong shape are an error saying so, not a wrong gradient.
    let (m, d) = setup("mlp:5-7-3:tanh", LossKind::Ce, 0);
    let err = engine::weighted_gradient(&m, &batch_of(&d), LossKind::Ce, false, &mut |l| {
        Ok(l.sum_keepdim(1)?)
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("row weights") && err.contains("[24, 1]"),
        "{err}"
    );
}

/// BatchNorm networks in training mode: the engine's gradient (batch statistics, their
/// derivatives through the mean and variance) against candle's autodiff of the same forward pass,
/// and the running statistics both leave behind; with `update_stats` false (SAM's second pass)
/// they stay as they were. MLPs with and without bias, a tanh and a ReLU ResNet with projections.
#[test]
fn batch_norm_training_gradient_matches_autodiff() {
    for (spec, rows) in [
        ("mlp:5-7-6-3:tanh:bn", 40),
        ("mlp:2-9-9-2:relu:bn:nobias", 24),
        ("resnet18:3x8x8:w2:4", 12),
        ("resnet18:3x8x8:w1:3:act=tanh", 12),
    ] {
        let arch: ArchSpec = spec.parse().unwrap();
        let d = case_data(&arch, rows, LossKind::Ce);
        for update in [true, false] {
            let fast_m =
                Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 2).unwrap();
            terrain_testkit::randomize_batch_norm(&fast_m, 3);
            let slow_m = fast_m.deep_clone().unwrap();
            let fast =
                reduced_gradient(&fast_m, &batch_of(&d), LossKind::Ce, update, tilted).unwrap();
            let slow =
                autodiff_reduced_gradient(&slow_m, &batch_of(&d), LossKind::Ce, update, tilted)
                    .unwrap();
            assert_eq!(fast.source, GradientSource::Engine, "{spec}");
            assert!(
                (fast.loss - slow.loss).abs() <= 1e-13 * slow.loss,
                "{spec}: loss"
            );
            // A bias just before BatchNorm has no gradient in training mode (the batch mean
            // takes it out): both sides give rounding noise there, so the errors are relative
            // to the whole gradient's norm.
            let norm = |g: &[Tensor]| {
                g.iter()
                    .map(|t| {
                        t.sqr()
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .to_scalar::<f64>()
                            .unwrap()
                    })
                    .sum::<f64>()
                    .sqrt()
            };
            let scale = norm(&slow.grads);
            for ((a, b), p) in fast.grads.iter().zip(&slow.grads).zip(fast_m.params()) {
                let e = norm(&[a.sub(b).unwrap()]) / scale;
                assert!(
                    e <= 1e-12,
                    "{spec} {}: error {e:.2e} of the gradient's norm",
                    p.name
                );
            }
            for (a, b) in fast_m.buffers().iter().zip(slow_m.buffers()) {
                let e = rel_err(a.var.as_tensor(), b.var.as_tensor());
                assert!(e <= 1e-13, "{spec} {} (update {update}): {e:.2e}", a.name);
            }
            if !update {
                let fresh =
                    Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 2).unwrap();
                terrain_testkit::randomize_batch_norm(&fresh, 3);
                for (a, b) in fast_m.buffers().iter().zip(fresh.buffers()) {
                    assert_eq!(rel_err(a.var.as_tensor(), b.var.as_tensor()), 0.0, "{spec}");
                }
            }
        }
    }
}

/// Three epochs of a ResNet with BatchNorm through the trainer (the engine) and through candle's
/// autodiff agree in f64: weights and running statistics.
#[test]
fn batch_norm_networks_train_alike_on_the_engine_and_on_autodiff() {
    let spec = "resnet18:3x8x8:w1:3";
    let arch: ArchSpec = spec.parse().unwrap();
    let data = case_data(&arch, 24, LossKind::Ce);
    let run = |objective: Option<Box<dyn Objective>>| {
        let model = Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 7).unwrap();
        let cfg = TrainConfig {
            epochs: 3,
            lr: 0.05,
            batch_size: 8,
            optimizer: Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 1e-3,
            },
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(cfg).unwrap();
        if let Some(o) = objective {
            trainer = trainer.with_objective(o);
        }
        trainer.fit(&model, &data, None, &mut |_| {}).unwrap();
        model
    };
    let fast = run(None);
    let slow = run(Some(Box::new(AutodiffErm)));
    let flat = |m: &Model| {
        let parts: Vec<Tensor> = m
            .params()
            .iter()
            .chain(m.buffers())
            .map(|p| p.var.flatten_all().unwrap())
            .collect();
        Tensor::cat(&parts, 0).unwrap()
    };
    let e = rel_err(&flat(&fast), &flat(&slow));
    assert!(
        e <= 1e-12,
        "weights and running statistics after 9 steps: {e:.2e}"
    );
    for (a, b) in fast
        .params()
        .iter()
        .chain(fast.buffers())
        .zip(slow.params().iter().chain(slow.buffers()))
    {
        let e = rel_err(a.var.as_tensor(), b.var.as_tensor());
        assert!(e <= 1e-10, "{}: {e:.2e}", a.name);
    }
}
