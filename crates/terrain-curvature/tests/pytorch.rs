//! Every product against PyTorch's own numbers: the committed fixtures of
//! `tests/fixtures/pytorch/` (written by `make_fixtures.py` there, float64, PyTorch's modules
//! and losses) on inputs with ties, zeros and flat regions — raw digits with blank backgrounds,
//! whose 2×2 max-pool windows hold tied maxima, zero rows, piecewise-constant images.
//!
//! For each fixture: the logits (the engine's forward pass and candle's), the mean loss, its
//! gradient, a Hessian-vector product (host sweep, candle-tensor sweep and candle's double
//! backward), a Gauss–Newton product (both sweeps), the exact Hessian diagonal (both sweeps),
//! curvature propagation's mean against that diagonal (a statistical test), and for BatchNorm
//! networks the training-mode forward pass, gradient and running-statistics update; all ≤ 1e-10
//! relative (norm-wise) where both sides are exact. And the digits CNN trained in PyTorch: its
//! top five Hessian eigenvalues by Lanczos against PyTorch's dense eigendecomposition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use terrain_curvature::{
    Curvature, DiagonalConfig, HessianConfig, HessianOperator, HvpMethod, LinearOperator,
    diagonal::{self, DiagonalMethod},
    eigen::{self, LanczosConfig},
};
use terrain_model::{
    ArchSpec, Model, autodiff,
    data::{Batch, Dataset, Targets, Task},
    engine::Backend,
    loss::{self, LossKind},
    train::{self, GradientSource},
};
use terrain_testkit::rel_err;

const TOL: f64 = 1e-10;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

/// One fixture file: the model with PyTorch's weights, its data and the expected numbers.
struct Fixture {
    name: String,
    model: Model,
    data: Dataset,
    loss: LossKind,
    tensors: BTreeMap<String, Tensor>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let raw = terrain_model::checkpoint::read_file(&dir().join(format!("{name}.safetensors")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let meta = |k: &str| raw.metadata[k].clone();
        let arch: ArchSpec = meta("arch").parse().unwrap();
        let loss: LossKind = meta("loss").parse().unwrap();
        let params = raw
            .tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix("param.").map(|n| (n.to_string(), t.clone())))
            .collect();
        let model = Model::from_tensors(arch.clone(), DType::F64, &Device::Cpu, params, name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = &raw.tensors["x"];
        let x = match meta("input").as_str() {
            "uint8 / 16" => (x.to_dtype(DType::F64).unwrap() / 16.0).unwrap(),
            _ => x.clone(),
        };
        let y = &raw.tensors["y"];
        let outputs = arch.output_dim();
        let (y, task) = match meta("targets").as_str() {
            "classes" => (
                Targets::Classes(y.to_dtype(DType::U32).unwrap()),
                Task::Classification { classes: outputs },
            ),
            "soft" => (
                Targets::Soft(y.clone()),
                Task::Classification { classes: outputs },
            ),
            _ => (Targets::Values(y.clone()), Task::Regression { outputs }),
        };
        let data = Dataset::new(name, x, y, task).unwrap();
        Fixture {
            name: name.into(),
            model,
            data,
            loss,
            tensors: raw.tensors,
        }
    }

    fn get(&self, key: &str) -> &Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("{}: no tensor `{key}`", self.name))
    }

    /// `prefix.<parameter>` for every parameter, flattened in the model's order.
    fn flat(&self, prefix: &str) -> Tensor {
        let parts: Vec<Tensor> = self
            .model
            .params()
            .iter()
            .map(|p| {
                self.get(&format!("{prefix}.{}", p.name))
                    .flatten_all()
                    .unwrap()
            })
            .collect();
        Tensor::cat(&parts, 0).unwrap()
    }

    fn operator(
        &self,
        curvature: Curvature,
        hvp: HvpMethod,
        engine: Backend,
    ) -> HessianOperator<'_> {
        let config = HessianConfig {
            // Two batches where there are enough rows: products are summed over batches.
            batch_size: self.data.len().div_ceil(2).max(4),
            curvature,
            hvp,
            ..HessianConfig::new(self.loss)
        };
        HessianOperator::new(&self.model, &self.data, config)
            .unwrap()
            .with_backend(engine)
    }

    fn check(&self, what: &str, got: &Tensor, want: &Tensor) {
        let e = rel_err(
            &got.flatten_all().unwrap().to_dtype(DType::F64).unwrap(),
            &want.flatten_all().unwrap(),
        );
        assert!(
            e <= TOL,
            "{}: {what} differs from PyTorch's by {e:e}",
            self.name
        );
    }

    fn check_scalar(&self, what: &str, got: f64, want: &Tensor) {
        let want = want.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
        let e = (got - want).abs() / want.abs();
        assert!(
            e <= TOL,
            "{}: {what} {got} differs from PyTorch's {want} by {e:e}",
            self.name
        );
    }
}

const CASES: &[&str] = &[
    "mlp_relu_ce",
    "mlp_nobias_relu_mse",
    "mlp_tanh_mse",
    "mlp_gelu_mse",
    "mlp_silu_mse",
    "mlp_sigmoid_mse",
    "mlp_softplus_mse",
    "mlp_tanh_ce_soft",
    "mlp_bn_relu_ce",
    "cnn_relu_ce",
    "cnn_tanh_mse",
    "resnet_relu_ce",
    "resnet_tanh_ce",
];

fn forward_and_loss(f: &Fixture) {
    let x = f
        .model
        .prepare_input(&f.data.x.to_dtype(DType::F64).unwrap())
        .unwrap();
    f.check(
        "logits (engine)",
        &f.model.forward_eval(&x).unwrap(),
        f.get("logits"),
    );
    f.check(
        "logits (candle)",
        &f.model.forward_t(&x, false).unwrap(),
        f.get("logits"),
    );
    for engine in [Backend::Auto, Backend::Tensor] {
        let op = f.operator(Curvature::Hessian, HvpMethod::Rop, engine);
        let (l, g) = op.loss_and_gradient().unwrap();
        f.check_scalar(&format!("loss ({engine:?} sweep)"), l, f.get("loss"));
        f.check_scalar(
            &format!("tape-free loss ({engine:?})"),
            op.loss().unwrap(),
            f.get("loss"),
        );
        f.check(&format!("gradient ({engine:?} sweep)"), &g, &f.flat("grad"));
    }
    // candle's autodiff of candle's forward pass.
    let l = loss::mean(&f.model.forward_t(&x, false).unwrap(), &f.data.y, f.loss).unwrap();
    let vars: Vec<&Tensor> = f.model.params().iter().map(|p| p.var.as_tensor()).collect();
    let g: Vec<Tensor> = autodiff::grad(&l, &vars)
        .unwrap()
        .iter()
        .map(|t| t.flatten_all().unwrap())
        .collect();
    f.check(
        "gradient (autodiff)",
        &Tensor::cat(&g, 0).unwrap(),
        &f.flat("grad"),
    );
}

fn products(f: &Fixture) {
    let v = f.flat("v");
    for (engine, hvp) in [
        (Backend::Auto, HvpMethod::Rop),
        (Backend::Tensor, HvpMethod::Rop),
        (Backend::Tensor, HvpMethod::DoubleBackward),
    ] {
        let op = f.operator(Curvature::Hessian, hvp, engine);
        f.check(
            &format!("HVP ({engine:?}, {hvp})"),
            &op.apply(&v).unwrap(),
            &f.flat("hvp"),
        );
        // Two directions sharing a forward pass.
        let many = op.apply_many(&[v.clone(), (&v * -0.5).unwrap()]).unwrap();
        f.check(
            &format!("HVP, batched ({engine:?}, {hvp})"),
            &many[0],
            &f.flat("hvp"),
        );
        f.check(
            &format!("HVP, batched second ({engine:?}, {hvp})"),
            &(&many[1] * -2.0).unwrap(),
            &f.flat("hvp"),
        );
    }
    for engine in [Backend::Auto, Backend::Tensor] {
        let op = f.operator(Curvature::GaussNewton, HvpMethod::Rop, engine);
        f.check(
            &format!("Gauss–Newton product ({engine:?})"),
            &op.apply(&v).unwrap(),
            &f.flat("ggn"),
        );
    }
}

fn diagonals(f: &Fixture) {
    let want = f.flat("diag");
    for engine in [Backend::Auto, Backend::Tensor] {
        let op = f.operator(Curvature::Hessian, HvpMethod::Rop, engine);
        let d = diagonal::exact_diagonal_sweep(&op).unwrap();
        let d = Tensor::from_vec(d.clone(), d.len(), &Device::Cpu).unwrap();
        f.check(&format!("exact diagonal ({engine:?} sweep)"), &d, &want);
    }
}

/// Curvature propagation's mean over many samples against PyTorch's diagonal: every noisy entry
/// within 4.5 standard errors (means of 400 draws, about a hundred or more correlated entries:
/// the same bound as `tests/diagonal.rs`), the noiseless ones exact.
fn curvature_propagation(f: &Fixture) {
    let want = f.flat("diag").to_vec1::<f64>().unwrap();
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
    let op = f.operator(Curvature::Hessian, HvpMethod::Rop, Backend::Auto);
    let config = DiagonalConfig {
        samples: 400,
        samples_per_sweep: 100,
        seed: 11,
        ..DiagonalConfig::default()
    };
    let d =
        diagonal::estimate_diagonal(&op, DiagonalMethod::CurvaturePropagation, &config).unwrap();
    let se = d.stderr.as_ref().unwrap();
    let mut noisy = 0;
    for ((m, s), w) in d.values.iter().zip(se).zip(&want) {
        if *s > 1e-12 * scale {
            noisy += 1;
            let z = (m - w) / s;
            assert!(
                z.abs() < 4.5,
                "{}: curvature propagation z = {z} ({m} vs {w} ± {s})",
                f.name
            );
        } else {
            assert!(
                (m - w).abs() <= 1e-10 * scale,
                "{}: noiseless entry {m} vs {w}",
                f.name
            );
        }
    }
    assert!(noisy > 0, "{}: no noisy entry", f.name);
}

/// BatchNorm in training mode: batch statistics, PyTorch's biased variance for normalising and
/// unbiased variance with momentum 0.1 for the running statistics; by candle's autodiff of the
/// forward pass and by the trainer's gradient (the engine).
fn training_mode(f: &Fixture) {
    if f.model.buffers().is_empty() {
        return;
    }
    // candle's forward pass in training mode, and its autodiff.
    let model = f.model.deep_clone().unwrap();
    let x = model
        .prepare_input(&f.data.x.to_dtype(DType::F64).unwrap())
        .unwrap();
    let z = model.forward_with(&x, true, true).unwrap();
    f.check("training-mode logits", &z, f.get("train.logits"));
    let l = loss::mean(&z, &f.data.y, f.loss).unwrap();
    f.check_scalar(
        "training-mode loss",
        l.to_scalar::<f64>().unwrap(),
        f.get("train.loss"),
    );
    let vars: Vec<&Tensor> = model.params().iter().map(|p| p.var.as_tensor()).collect();
    let g: Vec<Tensor> = autodiff::grad(&l, &vars)
        .unwrap()
        .iter()
        .map(|t| t.flatten_all().unwrap())
        .collect();
    f.check(
        "training-mode gradient (autodiff)",
        &Tensor::cat(&g, 0).unwrap(),
        &f.flat("train.grad"),
    );
    for b in model.buffers() {
        f.check(
            &format!("running statistic {} (candle)", b.name),
            b.var.as_tensor(),
            f.get(&format!("train.{}", b.name)),
        );
    }
    // The trainer's step: the engine, batch statistics, running statistics updated.
    let model = f.model.deep_clone().unwrap();
    let batch = Batch {
        x: f.data.x.to_dtype(DType::F64).unwrap(),
        y: f.data.y.clone(),
    };
    let step =
        train::reduced_gradient(&model, &batch, f.loss, true, |l| Ok(l.mean_all()?)).unwrap();
    assert_eq!(step.source, GradientSource::Engine, "{}", f.name);
    let g: Vec<Tensor> = step
        .grads
        .iter()
        .map(|t| t.flatten_all().unwrap())
        .collect();
    f.check(
        "training-mode gradient (engine)",
        &Tensor::cat(&g, 0).unwrap(),
        &f.flat("train.grad"),
    );
    f.check_scalar(
        "training-mode loss (engine)",
        step.loss,
        f.get("train.loss"),
    );
    for b in model.buffers() {
        f.check(
            &format!("running statistic {} (engine)", b.name),
            b.var.as_tensor(),
            f.get(&format!("train.{}", b.name)),
        );
    }
}

#[test]
fn forward_loss_and_gradient_match_pytorch() {
    autodiff::ensure_second_order().unwrap();
    for name in CASES {
        forward_and_loss(&Fixture::load(name));
    }
}

#[test]
fn hessian_and_gauss_newton_products_match_pytorch() {
    autodiff::ensure_second_order().unwrap();
    for name in CASES {
        products(&Fixture::load(name));
    }
}

#[test]
fn exact_diagonals_match_pytorch() {
    for name in CASES {
        diagonals(&Fixture::load(name));
    }
}

#[test]
fn curvature_propagation_is_unbiased_for_pytorch_diagonals() {
    for name in ["mlp_gelu_mse", "cnn_relu_ce", "resnet_tanh_ce"] {
        curvature_propagation(&Fixture::load(name));
    }
}

#[test]
fn batch_norm_training_mode_matches_pytorch() {
    autodiff::ensure_second_order().unwrap();
    for name in CASES {
        training_mode(&Fixture::load(name));
    }
}

/// The ReLU CNN trained in PyTorch on all 1797 digits (blank backgrounds: many 2×2 pooling windows
/// hold four equal values): its top five Hessian eigenvalues are PyTorch's. Routing a tied
/// window's derivative to every maximum, as candle's `max` backward does, gave 0.5 % and more
/// off on such a network.
#[test]
fn digits_cnn_has_pytorchs_top_eigenvalues() {
    let f = Fixture::load("cnn_digits_trained");
    let want = f.get("eigenvalues").to_vec1::<f64>().unwrap();
    let op = f.operator(Curvature::Hessian, HvpMethod::Rop, Backend::Auto);
    f.check_scalar("loss", op.loss().unwrap(), f.get("loss"));
    let top = eigen::lanczos(
        &op,
        &LanczosConfig {
            top_k: 5,
            max_iter: 200,
            tol: 1e-9,
            ..Default::default()
        },
    )
    .unwrap();
    for (i, (got, want)) in top.values().iter().zip(&want).enumerate() {
        let e = (got - want).abs() / want.abs();
        assert!(
            e < 1e-9,
            "eigenvalue {i}: {got} against PyTorch's {want} ({e:e})"
        );
    }
}

/// Central finite differences along a direction that keeps the ties: moving only the first
/// convolution's biases shifts the four equal outputs of a blank patch together, so the loss is
/// smooth along it. The directional derivative (gradient · v) and the second derivative (the
/// gradient's difference against H v) of every engine agree with the differences, on the tanh
/// CNN of the raw digits.
#[test]
fn max_pool_ties_agree_with_finite_differences_along_the_bias() {
    autodiff::ensure_second_order().unwrap();
    let f = Fixture::load("cnn_tanh_mse");
    let bias = f
        .model
        .params()
        .iter()
        .position(|p| p.name == "conv0.bias")
        .unwrap();
    let v: Vec<Tensor> = f
        .model
        .params()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let t = p.var.as_tensor();
            if i == bias {
                t.ones_like()
            } else {
                t.zeros_like()
            }
            .unwrap()
            .flatten_all()
            .unwrap()
        })
        .collect();
    let v = Tensor::cat(&v, 0).unwrap();
    let theta = f.model.params()[bias].var.as_tensor().copy().unwrap();
    let eps = 1e-4;
    let at = |shift: f64, engine: Backend| -> (f64, Tensor) {
        f.model.params()[bias]
            .var
            .set(&(&theta + shift).unwrap())
            .unwrap();
        let out = f
            .operator(Curvature::Hessian, HvpMethod::Rop, engine)
            .loss_and_gradient()
            .unwrap();
        f.model.params()[bias].var.set(&theta).unwrap();
        out
    };
    for (engine, hvp) in [
        (Backend::Auto, HvpMethod::Rop),
        (Backend::Tensor, HvpMethod::Rop),
        (Backend::Tensor, HvpMethod::DoubleBackward),
    ] {
        let op = f.operator(Curvature::Hessian, hvp, engine);
        let (_, g) = op.loss_and_gradient().unwrap();
        let hv = op.apply(&v).unwrap();
        let ((lp, gp), (lm, gm)) = (at(eps, engine), at(-eps, engine));
        // O(ε²) truncation in f64: 1e-7 relative is far below the factor 4 of the old rule.
        let fd1 = (lp - lm) / (2.0 * eps);
        let d1 = g
            .mul(&v)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            (d1 - fd1).abs() <= 1e-7 * fd1.abs(),
            "{engine:?}/{hvp}: g·v {d1}, differences {fd1}"
        );
        let fd2 = ((gp - gm).unwrap() / (2.0 * eps)).unwrap();
        let e = rel_err(&hv, &fd2);
        assert!(
            e <= 1e-6,
            "{engine:?}/{hvp}: H v against differences of the gradient: {e:e}"
        );
    }
}
