//! Training: optimisers against hand-computed updates, determinism, convergence on real data,
//! and resuming after an interruption.

use candle_core::{DType, Device, Tensor};
use terrain_model::{
    Model, ParamVec,
    data::{self, Dataset, Targets, Task},
    loss,
    train::{LrDecay, Optimizer, TrainConfig, Trainer},
};

fn digits() -> (Dataset, Dataset) {
    data::builtin::load("digits")
        .unwrap()
        .split(0.8, 0)
        .unwrap()
}

fn flat(m: &Model) -> Vec<f64> {
    ParamVec::from_model(m).unwrap().flatten().unwrap()
}

#[test]
fn mlp_learns_digits() {
    let (train, test) = digits();
    let model = Model::new(
        "mlp:64-32-10:tanh".parse().unwrap(),
        DType::F32,
        &Device::Cpu,
        0,
    )
    .unwrap();
    let before = loss::evaluate(&model, &test, 256).unwrap();
    let cfg = TrainConfig {
        epochs: 8,
        lr: 0.05,
        batch_size: 32,
        ..TrainConfig::default()
    };
    let report = Trainer::new(cfg)
        .unwrap()
        .fit(&model, &train, Some(&test), &mut |_| {})
        .unwrap();
    let after = loss::evaluate(&model, &test, 256).unwrap();
    assert_eq!(report.epochs.len(), 8);
    assert!(report.epochs[7].train_loss < report.epochs[0].train_loss);
    assert!(
        before.error.unwrap() > 0.7,
        "untrained error {:?}",
        before.error
    );
    let error = after.error.unwrap();
    assert!(error < 0.1, "test error after training {error}");
    assert!(after.loss < before.loss / 4.0);
}

#[test]
fn same_seed_same_weights_different_seed_different_weights() {
    let (train, _) = digits();
    let run = |seed| {
        let model = Model::new(
            "cnn:1x8x8-4-10:relu".parse().unwrap(),
            DType::F32,
            &Device::Cpu,
            seed,
        )
        .unwrap();
        let cfg = TrainConfig {
            epochs: 2,
            seed,
            batch_size: 50,
            mixup_alpha: Some(0.4),
            ..TrainConfig::default()
        };
        let train = train.reshape_inputs(&[1, 8, 8]).unwrap();
        Trainer::new(cfg)
            .unwrap()
            .fit(&model, &train, None, &mut |_| {})
            .unwrap();
        flat(&model)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

/// One step of each optimiser on f(w) = ½‖Xw − y‖²/n (MSE on a linear model), against the update
/// written out by hand from the analytic gradient.
#[test]
fn optimisers_match_hand_computed_updates() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0, -1.0, 0.5, 0.0, 1.0], (3, 2), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec![1.0f64, -1.0, 2.0], (3, 1), &Device::Cpu).unwrap();
    let d = Dataset::new(
        "lin",
        x.clone(),
        Targets::Values(y.clone()),
        Task::Regression { outputs: 1 },
    )
    .unwrap();
    let xs: Vec<Vec<f64>> = x.to_vec2().unwrap();
    let ys: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
    for (opt, wd) in [
        (
            Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 0.1,
            },
            0.1,
        ),
        (
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            0.0,
        ),
    ] {
        let model =
            Model::new("mlp:2-1:tanh".parse().unwrap(), DType::F64, &Device::Cpu, 4).unwrap();
        let w0 = flat(&model); // [w1, w2, b]
        let grad = |w: &[f64]| {
            let mut g = [0.0; 3];
            for (row, &t) in xs.iter().zip(&ys) {
                let r = w[0] * row[0] + w[1] * row[1] + w[2] - t;
                g[0] += 2.0 * r * row[0] / 3.0;
                g[1] += 2.0 * r * row[1] / 3.0;
                g[2] += 2.0 * r / 3.0;
            }
            g
        };
        let lr = 0.1;
        let mut w = w0.clone();
        let mut m = [0.0; 3];
        let mut v = [0.0; 3];
        for t in 1..=3 {
            let g = grad(&w);
            for i in 0..3 {
                let gi = g[i] + wd * w[i];
                match opt {
                    Optimizer::Sgd { momentum, .. } => {
                        m[i] = if t == 1 { gi } else { momentum * m[i] + gi };
                        w[i] -= lr * m[i];
                    }
                    Optimizer::Adam {
                        beta1, beta2, eps, ..
                    } => {
                        m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
                        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                        let mh = m[i] / (1.0 - beta1.powi(t));
                        let vh = v[i] / (1.0 - beta2.powi(t));
                        w[i] -= lr * mh / (vh.sqrt() + eps);
                    }
                }
            }
        }
        let cfg = TrainConfig {
            epochs: 3,
            lr,
            batch_size: 3,
            optimizer: opt,
            ..TrainConfig::default()
        };
        Trainer::new(cfg)
            .unwrap()
            .fit(&model, &d, None, &mut |_| {})
            .unwrap();
        let got = flat(&model);
        for i in 0..3 {
            assert!(
                (got[i] - w[i]).abs() < 1e-12,
                "{opt:?}: w[{i}] = {} vs {}",
                got[i],
                w[i]
            );
        }
    }
}

#[test]
fn step_decay_schedules() {
    let s = LrDecay::Step {
        every: 2,
        gamma: 0.5,
    };
    assert_eq!(
        [1, 2, 3, 4, 5].map(|e| s.lr_at(1.0, e)),
        [1.0, 1.0, 0.5, 0.5, 0.25]
    );
    let m = LrDecay::MultiStep {
        milestones: vec![75],
        gamma: 0.1,
    };
    assert_eq!(m.lr_at(0.1, 75), 0.1);
    assert!((m.lr_at(0.1, 76) - 0.01).abs() < 1e-15);
}

#[test]
fn resumed_training_ends_where_an_uninterrupted_run_ends() {
    let (train, test) = digits();
    let spec = "mlp:64-16-10:relu:bn";
    let cfg = TrainConfig {
        epochs: 4,
        optimizer: Optimizer::adam(),
        lr: 1e-3,
        lr_decay: LrDecay::Step {
            every: 2,
            gamma: 0.5,
        },
        ..TrainConfig::default()
    };
    let full = Model::new(spec.parse().unwrap(), DType::F32, &Device::Cpu, 5).unwrap();
    Trainer::new(cfg.clone())
        .unwrap()
        .fit(&full, &train, None, &mut |_| {})
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("run.state.safetensors");
    // First run "crashes" after two epochs.
    let first = Model::new(spec.parse().unwrap(), DType::F32, &Device::Cpu, 5).unwrap();
    let two = TrainConfig {
        epochs: 2,
        ..cfg.clone()
    };
    Trainer::new(two)
        .unwrap()
        .fit_resumable(&first, &train, None, Some(&state), &mut |_| {})
        .unwrap();
    // A fresh process: new model object, same seed, resumes from the state file.
    let resumed = Model::new(spec.parse().unwrap(), DType::F32, &Device::Cpu, 5).unwrap();
    let report = Trainer::new(cfg.clone())
        .unwrap()
        .fit_resumable(&resumed, &train, Some(&test), Some(&state), &mut |_| {})
        .unwrap();
    assert_eq!(
        report.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [3, 4]
    );
    assert_eq!(flat(&resumed), flat(&full));
    let (a, b) = (
        loss::evaluate(&resumed, &test, 100).unwrap(),
        loss::evaluate(&full, &test, 100).unwrap(),
    );
    assert_eq!(a, b);
    // A state file from a different configuration is refused, naming the setting, not reused.
    let other = TrainConfig {
        lr: 0.5,
        ..cfg.clone()
    };
    let e = Trainer::new(other)
        .unwrap()
        .fit_resumable(&resumed, &train, None, Some(&state), &mut |_| {})
        .unwrap_err();
    assert!(
        e.to_string().contains("training.lr (saved 0.001, now 0.5)"),
        "{e}"
    );
    // Asking for fewer epochs than the state has done is refused too (it used to return the
    // 4-epoch weights labelled as 2 epochs).
    let fewer = TrainConfig { epochs: 1, ..cfg };
    let e = Trainer::new(fewer)
        .unwrap()
        .fit_resumable(&resumed, &train, None, Some(&state), &mut |_| {})
        .unwrap_err();
    assert!(
        e.to_string().contains("after epoch 4") && e.to_string().contains("training.epochs"),
        "{e}"
    );
}

#[test]
fn bad_configurations_are_rejected_by_name() {
    for (cfg, field) in [
        (
            TrainConfig {
                epochs: 0,
                ..Default::default()
            },
            "epochs",
        ),
        (
            TrainConfig {
                lr: -1.0,
                ..Default::default()
            },
            "lr",
        ),
        (
            TrainConfig {
                lr: f64::NAN,
                ..Default::default()
            },
            "lr",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..Default::default()
            },
            "batch_size",
        ),
        (
            TrainConfig {
                optimizer: Optimizer::Sgd {
                    momentum: 1.5,
                    weight_decay: 0.0,
                },
                ..Default::default()
            },
            "momentum",
        ),
        (
            TrainConfig {
                mixup_alpha: Some(0.0),
                ..Default::default()
            },
            "mixup_alpha",
        ),
    ] {
        let e = Trainer::new(cfg).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
}

#[test]
fn data_that_does_not_fit_the_model_is_an_error() {
    let (train, _) = digits();
    let model = Model::new(
        "mlp:13-8-1:relu".parse().unwrap(),
        DType::F32,
        &Device::Cpu,
        0,
    )
    .unwrap();
    let e = Trainer::new(TrainConfig::default())
        .unwrap()
        .fit(&model, &train, None, &mut |_| {})
        .unwrap_err();
    assert!(
        e.to_string().contains("13") && e.to_string().contains("64"),
        "{e}"
    );
}

#[test]
fn divergence_is_reported_not_hidden() {
    let (train, _) = digits();
    let model = Model::new(
        "mlp:64-32-10:relu".parse().unwrap(),
        DType::F32,
        &Device::Cpu,
        0,
    )
    .unwrap();
    let cfg = TrainConfig {
        lr: 1e12,
        epochs: 3,
        ..TrainConfig::default()
    };
    let e = Trainer::new(cfg)
        .unwrap()
        .fit(&model, &train, None, &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
}

/// Mixup on regression targets mixes the targets linearly (it used to be skipped silently): one
/// step with mixup equals one step of plain SGD on the batch mixed by hand with the same λ and
/// partner permutation.
#[test]
fn mixup_applies_to_regression_targets() {
    let x = terrain_model::rng::normal_tensor(&[8, 3], 4, DType::F64, &Device::Cpu).unwrap();
    let y = terrain_model::rng::normal_tensor(&[8, 1], 5, DType::F64, &Device::Cpu).unwrap();
    let d = Dataset::new(
        "reg",
        x,
        Targets::Values(y),
        Task::Regression { outputs: 1 },
    )
    .unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        lr: 0.1,
        batch_size: 8,
        optimizer: Optimizer::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        mixup_alpha: Some(0.5),
        ..TrainConfig::default()
    };
    let spec: terrain_model::ArchSpec = "mlp:3-1:relu".parse().unwrap();
    let with_mixup = Model::new(spec.clone(), DType::F64, &Device::Cpu, 0).unwrap();
    Trainer::new(cfg.clone())
        .unwrap()
        .fit(&with_mixup, &d, None, &mut |_| {})
        .unwrap();
    // The same batch, shuffled and mixed by hand as the trainer does, trained without mixup.
    let shuffle = terrain_model::rng::stream_seed(cfg.seed, 1);
    let batch = d
        .batches(8, Some(shuffle), false)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let mixed = data::mixup(&batch, 0.5, 0, shuffle.wrapping_add(1)).unwrap();
    let by_hand = Model::new(spec, DType::F64, &Device::Cpu, 0).unwrap();
    let mixed_set = Dataset::new("mixed", mixed.x, mixed.y, d.task).unwrap();
    Trainer::new(TrainConfig {
        mixup_alpha: None,
        ..cfg
    })
    .unwrap()
    .fit(&by_hand, &mixed_set, None, &mut |_| {})
    .unwrap();
    let (a, b) = (flat(&with_mixup), flat(&by_hand));
    // One batch, shuffled again by the second trainer: the mean gradient does not depend on the
    // row order, so the steps agree to rounding.
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-12, "{a:?} vs {b:?}");
    }
    let plain = Model::new("mlp:3-1:relu".parse().unwrap(), DType::F64, &Device::Cpu, 0).unwrap();
    Trainer::new(TrainConfig {
        mixup_alpha: None,
        ..TrainConfig {
            epochs: 1,
            lr: 0.1,
            batch_size: 8,
            optimizer: Optimizer::Sgd {
                momentum: 0.0,
                weight_decay: 0.0,
            },
            ..TrainConfig::default()
        }
    })
    .unwrap()
    .fit(&plain, &d, None, &mut |_| {})
    .unwrap();
    assert_ne!(flat(&plain), a, "mixup changed the step");
}

/// A loss that does not reach the parameters is an error naming them, not a zero gradient.
#[test]
fn a_missing_gradient_is_an_error_not_a_zero() {
    struct Detached;
    impl terrain_model::train::Objective for Detached {
        fn name(&self) -> String {
            "detached".into()
        }
        fn step(
            &mut self,
            model: &Model,
            batch: &data::Batch,
            loss: loss::LossKind,
        ) -> terrain_model::Result<terrain_model::train::StepOutput> {
            terrain_model::train::reduced_gradient(model, batch, loss, true, |l| {
                Ok(l.mean_all()?.detach())
            })
        }
    }
    let (train, _) = digits();
    let model = Model::new(
        "mlp:64-10:relu".parse().unwrap(),
        DType::F32,
        &Device::Cpu,
        0,
    )
    .unwrap();
    let e = Trainer::new(TrainConfig::default())
        .unwrap()
        .with_objective(Box::new(Detached))
        .fit(&model, &train, None, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(&e, terrain_model::Error::NoGradient { names } if names.contains("0.weight")),
        "{e}"
    );
}
