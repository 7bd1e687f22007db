//! The trainer's gradient by the host sweep ([`HostGradient`], a
//! [`terrain_model::train::GradientEngine`]) against candle's autodiff of the same reduction, in
//! f64: the mean loss, nonlinear reductions of the per-example losses (tilted, CVaR-like top-k),
//! soft targets, MSE, and a whole training run through the installed engine; plus the fallback
//! rules of `reduced_gradient` (BatchNorm, dtypes off the sweep); and the engine's forward pass,
//! which evaluation runs on, against candle's.

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Tensor};
use terrain_curvature::rop::HostGradient;
use terrain_model::{
    ArchSpec, Model,
    data::{Batch, Dataset},
    loss::LossKind,
    train::{
        self, GradientEngine, Objective, Optimizer, TrainConfig, Trainer, reduced_gradient_with,
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
    let fast = reduced_gradient_with(Some(&HostGradient), m, batch, loss, true, &reduce).unwrap();
    let slow = reduced_gradient_with(None, m, batch, loss, true, &reduce).unwrap();
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

/// [`HostGradient`] counting its calls, to see where `reduced_gradient` (first count) and
/// `Model::forward_eval` (second) consult it.
struct Counting(AtomicUsize, AtomicUsize);

impl GradientEngine for Counting {
    fn name(&self) -> &str {
        "counting host sweep"
    }
    fn weighted_gradient(
        &self,
        model: &Model,
        batch: &Batch,
        loss: LossKind,
        row_weights: &mut dyn FnMut(&Tensor) -> terrain_model::Result<Tensor>,
    ) -> terrain_model::Result<Option<Vec<Tensor>>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        HostGradient.weighted_gradient(model, batch, loss, row_weights)
    }
    fn logits(&self, model: &Model, x: &Tensor) -> terrain_model::Result<Option<Tensor>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        HostGradient.logits(model, x)
    }
}

fn flat(m: &Model) -> Vec<f64> {
    m.params()
        .iter()
        .flat_map(|p| p.var.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        .collect()
}

/// Trains `spec` for three epochs of SGD with momentum on 48 rows, batch 16.
fn train_three_epochs(spec: &str) -> (Vec<f64>, Vec<f64>) {
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
    let report = Trainer::new(cfg)
        .unwrap()
        .fit(&model, &data, None, &mut |_| {})
        .unwrap();
    let losses = report.epochs.iter().map(|e| e.train_loss).collect();
    (flat(&model), losses)
}

// The only test here that installs an engine process-wide (the others pass theirs explicitly),
// so no other test sees it.
#[test]
fn trainer_takes_the_installed_engine_where_it_applies_and_trains_alike() {
    let (slow_w, slow_l) = train_three_epochs("mlp:5-7-6-3:tanh");
    // Evaluation of a BatchNorm network (evaluation mode: the sweep applies) by candle first.
    let arch: ArchSpec = "mlp:5-7-3:tanh:bn".parse().unwrap();
    let bn = Model::new(arch.clone(), DType::F64, &candle_core::Device::Cpu, 0).unwrap();
    terrain_testkit::randomize_batch_norm(&bn, 5);
    let d = case_data(&arch, 40, LossKind::Ce);
    let by_candle = terrain_model::loss::evaluate(&bn, &d, 16).unwrap();
    let counting = std::sync::Arc::new(Counting(AtomicUsize::new(0), AtomicUsize::new(0)));
    let previous = train::install_gradient_engine(Some(counting.clone()));
    let (fast_w, fast_l) = train_three_epochs("mlp:5-7-6-3:tanh");
    let steps = counting.0.load(Ordering::SeqCst);
    let by_engine = terrain_model::loss::evaluate(&bn, &d, 16).unwrap();
    let forward_passes = counting.1.load(Ordering::SeqCst);
    // BatchNorm trains on batch statistics, which the sweep does not model: autodiff instead.
    train::Erm.step(&bn, &batch_of(&d), LossKind::Ce).unwrap();
    let after_bn = counting.0.load(Ordering::SeqCst);
    train::install_gradient_engine(previous);
    assert!(
        forward_passes >= 3,
        "evaluation's 3 batches must go through the engine's forward pass: {forward_passes}"
    );
    assert_eq!(by_engine.error, by_candle.error);
    assert!(
        (by_engine.loss - by_candle.loss).abs() <= 1e-13 * by_candle.loss,
        "evaluation: {} by the engine, {} by candle",
        by_engine.loss,
        by_candle.loss
    );
    assert_eq!(steps, 9, "3 epochs × 3 batches through the engine");
    assert_eq!(
        after_bn, steps,
        "the BatchNorm network must not use the engine"
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
                    let fast = HostGradient
                        .logits(&m, x)
                        .unwrap()
                        .expect("the sweep applies");
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
    assert!(HostGradient.logits(&m, &x).unwrap().is_none());
    // Inputs that do not fit are the model's error, naming the network.
    let (m, _) = setup("mlp:5-7-3:tanh", LossKind::Ce, 0);
    let wrong = Tensor::zeros((3, 4), DType::F64, &candle_core::Device::Cpu).unwrap();
    let err = HostGradient.logits(&m, &wrong).unwrap_err().to_string();
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
    let out = HostGradient
        .weighted_gradient(&m, &batch, LossKind::Ce, &mut |l| {
            asked = true;
            Ok(l.clone())
        })
        .unwrap();
    assert!(out.is_none() && !asked);
    // Row weights of the wrong shape are an error naming the engine, not a wrong gradient.
    let (m, d) = setup("mlp:5-7-3:tanh", LossKind::Ce, 0);
    let err = HostGradient
        .weighted_gradient(&m, &batch_of(&d), LossKind::Ce, &mut |l| {
            Ok(l.sum_keepdim(1)?)
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("host sweep") && err.contains("row weights"),
        "{err}"
    );
}
