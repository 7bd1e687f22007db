//! Per-epoch diagnostics: loss concentration against hand-computed values, the end-of-epoch
//! evaluations, parameter and gradient norms against independent computations, the validation
//! split of the recipe, and the per-epoch history in the checkpoint's training record.

use candle_core::{DType, Device};
use terrain_model::{
    Model, ParamVec, checkpoint,
    data::{self, Dataset},
    loss,
    run::{RunOptions, RunSpec},
    train::{EvalSets, LossConcentration, Optimizer, TrainConfig, Trainer, percentile},
};

fn flat(m: &Model) -> Vec<f64> {
    ParamVec::from_model(m).unwrap().flatten().unwrap()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn loss_concentration_matches_hand_values() {
    // 1..=10 shuffled: NumPy's linear percentiles are 9.1 (90th) and 9.91 (99th); the population
    // variance of 1..=10 is (10² − 1)/12 = 8.25.
    let losses = [3.0, 10.0, 1.0, 7.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0];
    let c = LossConcentration::of(&losses, Some(5.5)).unwrap();
    assert!((c.mean - 5.5).abs() < 1e-12);
    assert!((c.sd - 8.25f64.sqrt()).abs() < 1e-12, "sd {}", c.sd);
    assert!((c.p90 - 9.1).abs() < 1e-12, "p90 {}", c.p90);
    assert!((c.p99 - 9.91).abs() < 1e-12, "p99 {}", c.p99);
    assert_eq!(c.max, 10.0);
    assert_eq!(c.above_threshold, Some(0.5));
    assert_eq!(
        LossConcentration::of(&losses, None)
            .unwrap()
            .above_threshold,
        None
    );
    assert!(LossConcentration::of(&[], None).is_none());
    assert!(LossConcentration::of(&[1.0, f64::NAN], None).is_none());
    assert_eq!(percentile(&[2.0], 0.99), 2.0);
}

#[test]
fn epoch_report_holds_evaluations_and_norms() {
    let (train, test) = data::builtin::load("iris").unwrap().split(0.7, 3).unwrap();
    let (train, validation) = train.split(0.8, 4).unwrap();
    let model = Model::new(
        "mlp:4-8-3:tanh".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        1,
    )
    .unwrap();
    let before = flat(&model);
    let lr = 0.1;
    let cfg = TrainConfig {
        epochs: 1,
        lr,
        batch_size: train.len(),
        optimizer: Optimizer::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        ..TrainConfig::default()
    };
    let report = Trainer::new(cfg.clone())
        .unwrap()
        .fit_eval(
            &model,
            &train,
            EvalSets {
                validation: Some(&validation),
                test: Some(&test),
            },
            None,
            &mut |_| {},
        )
        .unwrap();
    let e = &report.epochs[0];
    let after = flat(&model);
    // One full-batch plain SGD step: w' = w − lr·g, so ‖g‖ = ‖w − w'‖ / lr.
    let step: Vec<f64> = before.iter().zip(&after).map(|(a, b)| a - b).collect();
    assert!(
        (e.grad_norm - norm(&step) / lr).abs() < 1e-9 * (1.0 + e.grad_norm),
        "grad norm {} vs {}",
        e.grad_norm,
        norm(&step) / lr
    );
    assert!((e.param_norm - norm(&after)).abs() < 1e-9 * norm(&after));
    let same = |got: Option<loss::Evaluation>, d: &Dataset| {
        let want = loss::evaluate(&model, d, 1000).unwrap();
        let got = got.unwrap();
        assert!((got.loss - want.loss).abs() < 1e-12);
        assert_eq!(got.error, want.error);
        assert_eq!(got.samples, d.len());
    };
    same(e.train, &train);
    same(e.validation, &validation);
    same(e.test, &test);
    let c = e.concentration.unwrap();
    assert!((c.mean - e.train.unwrap().loss).abs() < 1e-12);
    assert!(c.p90 <= c.p99 && c.p99 <= c.max && c.sd > 0.0);
    assert_eq!(c.threshold, None, "ERM has no threshold");

    // Without the training-rows pass: the same weights, no training evaluation.
    let again = Model::new(
        "mlp:4-8-3:tanh".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        1,
    )
    .unwrap();
    let r = Trainer::new(cfg)
        .unwrap()
        .with_train_evaluation(false)
        .fit(&again, &train, None, &mut |_| {})
        .unwrap();
    assert_eq!(flat(&again), after);
    assert!(r.epochs[0].train.is_none() && r.epochs[0].concentration.is_none());
}

#[test]
fn recipe_validation_split_and_recorded_history() {
    let mut spec = RunSpec::new("mlp:4-6-3:tanh".parse().unwrap(), "iris", 5);
    spec.data.validation = 0.25;
    spec.training.epochs = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let out = spec
        .run(&RunOptions {
            checkpoint: Some(path.clone()),
            ..RunOptions::default()
        })
        .unwrap();
    // 150 rows: 30 test, then a quarter of the remaining 120 for validation.
    assert_eq!(out.test_rows, Some(30));
    assert_eq!(out.validation_rows, Some(30));
    assert_eq!(out.train_rows, 90);
    let last = out.report.epochs.last().unwrap();
    assert_eq!(last.validation, out.validation);
    assert_eq!(last.test, out.test);
    let record = checkpoint::load(&path, &checkpoint::LoadOptions::default())
        .unwrap()
        .record()
        .unwrap();
    assert_eq!(record.epochs.len(), 3);
    assert_eq!(record.validation_rows, Some(30));
    assert_eq!(record.objective.as_deref(), Some("erm"));
    assert_eq!(record.epochs[2].param_norm, last.param_norm);
    assert_eq!(
        record.epochs[2].seconds, 0.0,
        "wall times stay out of the file"
    );
    // A bad fraction names the field.
    spec.data.validation = 1.0;
    let e = spec.run(&RunOptions::default()).unwrap_err().to_string();
    assert!(e.contains("validation"), "{e}");
}

#[test]
fn init_starts_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.safetensors");
    let arch: terrain_model::ArchSpec = "mlp:4-5-3:tanh".parse().unwrap();
    let m = Model::new(arch.clone(), DType::F32, &Device::Cpu, 77).unwrap();
    checkpoint::save(&m, &init, &Default::default()).unwrap();
    let mut spec = RunSpec::new(arch, "iris", 0);
    spec.init = Some(init);
    let start = spec.initial_model(&Device::Cpu).unwrap();
    assert_eq!(flat(&start), flat(&m));
    spec.arch = "mlp:4-6-3:tanh".parse().unwrap();
    assert!(spec.initial_model(&Device::Cpu).is_err());
}

#[test]
fn a_resumed_run_reports_the_whole_history() {
    let (train, test) = data::builtin::load("iris").unwrap().split(0.7, 3).unwrap();
    let arch: terrain_model::ArchSpec = "mlp:4-8-3:tanh".parse().unwrap();
    let cfg = |epochs| TrainConfig {
        epochs,
        lr: 0.05,
        batch_size: 16,
        ..TrainConfig::default()
    };
    let sets = EvalSets {
        validation: None,
        test: Some(&test),
    };
    let whole = Model::new(arch.clone(), DType::F32, &Device::Cpu, 1).unwrap();
    let full = Trainer::new(cfg(4))
        .unwrap()
        .fit_eval(&whole, &train, sets, None, &mut |_| {})
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.safetensors");
    let parts = Model::new(arch, DType::F32, &Device::Cpu, 1).unwrap();
    Trainer::new(cfg(2))
        .unwrap()
        .fit_eval(&parts, &train, sets, Some(&state), &mut |_| {})
        .unwrap();
    let resumed = Trainer::new(cfg(4))
        .unwrap()
        .fit_eval(&parts, &train, sets, Some(&state), &mut |_| {})
        .unwrap();
    assert_eq!(resumed.epochs.len(), 2, "only the epochs run in this call");
    let strip = |h: &[terrain_model::train::EpochReport]| -> Vec<_> {
        h.iter()
            .cloned()
            .map(|mut e| {
                e.seconds = 0.0;
                e
            })
            .collect()
    };
    assert_eq!(strip(&resumed.history), strip(&full.history));
}
