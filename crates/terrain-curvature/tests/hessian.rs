//! The Hessian operator against finite differences (f64), the Gauss–Newton product against the
//! Hessian where they must agree, batching and filters, and the errors on bad input.

use candle_core::{CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use terrain_curvature::{
    Curvature, DenseHessian, Error, FiniteDifferenceOperator, FnHessian, HessianConfig,
    HessianOperator, LinearOperator, ParamFilter,
    vector::{self, Probe},
};
use terrain_model::{data, loss::LossKind};
use terrain_testkit::{digits, images, model, rel_err};

fn iris() -> data::Dataset {
    data::builtin::load("iris").unwrap()
}

/// Gaussian images with labels `i % classes`, seeded: no ties inside max-pool windows (digits
/// have flat zero regions, where finite differences cross the max's kinks).
fn noise_images(n: usize, side: usize, classes: usize) -> data::Dataset {
    images(n, [1, side, side], classes, 17)
}

fn config(loss: LossKind, batch: usize) -> HessianConfig {
    HessianConfig {
        batch_size: batch,
        ..HessianConfig::new(loss)
    }
}

#[test]
fn hvp_matches_finite_differences_on_smooth_models() {
    let cases: Vec<(&str, data::Dataset, LossKind)> = vec![
        ("mlp:4-6-5-3:tanh", iris(), LossKind::Ce),
        ("mlp:4-6-3:softplus", iris(), LossKind::Mse),
        ("mlp:4-6-3:gelu:bn", iris(), LossKind::Ce),
        ("cnn:1x8x8-3-10:tanh", noise_images(40, 8, 10), LossKind::Ce),
    ];
    for (spec, data, loss) in cases {
        let m = model(spec, 3);
        let h = HessianOperator::new(&m, &data, config(loss, 32)).unwrap();
        let fd = FiniteDifferenceOperator::new(&h, 1e-5).unwrap();
        for seed in 0..2 {
            let v =
                vector::random(h.dim(), Probe::Gaussian, seed, DType::F64, &Device::Cpu).unwrap();
            let e = rel_err(&h.apply(&v).unwrap(), &fd.apply(&v).unwrap());
            assert!(e < 1e-6, "{spec}: HVP vs FD rel err {e:e}");
        }
    }
}

#[test]
fn finite_difference_operator_restores_the_weights() {
    let m = model("mlp:4-5-3:tanh", 0);
    let before = terrain_model::ParamVec::from_model(&m)
        .unwrap()
        .flatten()
        .unwrap();
    let d = iris();
    let h = HessianOperator::new(&m, &d, HessianConfig::new(LossKind::Ce)).unwrap();
    let v = vector::random(h.dim(), Probe::Gaussian, 1, DType::F64, &Device::Cpu).unwrap();
    FiniteDifferenceOperator::new(&h, 1e-3)
        .unwrap()
        .apply(&v)
        .unwrap();
    let after = terrain_model::ParamVec::from_model(&m)
        .unwrap()
        .flatten()
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn products_do_not_depend_on_the_batch_size() {
    let m = model("mlp:4-6-3:tanh", 1);
    let d = iris();
    let v = vector::random(
        m.param_count(),
        Probe::Rademacher,
        9,
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let whole = HessianOperator::new(&m, &d, config(LossKind::Ce, 150)).unwrap();
    let pieces = HessianOperator::new(&m, &d, config(LossKind::Ce, 17)).unwrap();
    assert_eq!(pieces.batches().len(), 9);
    let e = rel_err(&pieces.apply(&v).unwrap(), &whole.apply(&v).unwrap());
    assert!(e < 1e-12, "batch 17 vs full batch: {e:e}");
    let (l1, g1) = whole.loss_and_gradient().unwrap();
    let (l2, g2) = pieces.loss_and_gradient().unwrap();
    assert!((l1 - l2).abs() < 1e-12 * l1.abs());
    assert!(rel_err(&g2, &g1) < 1e-12);
}

#[test]
fn gauss_newton_equals_the_hessian_for_models_linear_in_their_parameters() {
    // Softmax regression (CE) and linear regression (MSE): the outputs are linear in the
    // parameters, so the residual term of the Hessian vanishes and GGN = H exactly.
    for (spec, data, loss) in [
        ("mlp:4-3:tanh", iris(), LossKind::Ce),
        (
            "mlp:13-1:tanh",
            data::builtin::load("boston").unwrap(),
            LossKind::Mse,
        ),
    ] {
        let m = model(spec, 2);
        let h = HessianOperator::new(&m, &data, config(loss, 64)).unwrap();
        let g = HessianOperator::new(
            &m,
            &data,
            HessianConfig {
                curvature: Curvature::GaussNewton,
                ..config(loss, 64)
            },
        )
        .unwrap();
        let v = vector::random(h.dim(), Probe::Gaussian, 4, DType::F64, &Device::Cpu).unwrap();
        let e = rel_err(&g.apply(&v).unwrap(), &h.apply(&v).unwrap());
        assert!(e < 1e-10, "{spec}: GGN vs H rel err {e:e}");
    }
}

#[test]
fn gauss_newton_is_symmetric_positive_semidefinite_and_differs_from_h_on_deep_nets() {
    let m = model("mlp:4-6-3:tanh", 5);
    let d = iris();
    let mk = |c| {
        HessianOperator::new(
            &m,
            &d,
            HessianConfig {
                curvature: c,
                ..config(LossKind::Ce, 50)
            },
        )
        .unwrap()
    };
    let g = DenseHessian::compute(&mk(Curvature::GaussNewton), 1000).unwrap();
    let h = DenseHessian::compute(&mk(Curvature::Hessian), 1000).unwrap();
    let p = g.dim();
    let mut asym: f64 = 0.0;
    let mut diff: f64 = 0.0;
    for i in 0..p {
        assert!(g.get(i, i) >= -1e-14);
        for j in 0..p {
            asym = asym.max((g.get(i, j) - g.get(j, i)).abs());
            diff = diff.max((g.get(i, j) - h.get(i, j)).abs());
        }
    }
    assert!(diff > 1e-4, "a tanh net's Hessian has a residual term");
    // vᵀGv ≥ 0 for random v.
    let op = mk(Curvature::GaussNewton);
    for seed in 0..5 {
        let v = vector::random(p, Probe::Gaussian, seed, DType::F64, &Device::Cpu).unwrap();
        assert!(vector::dot(&v, &op.apply(&v).unwrap()).unwrap() >= -1e-12);
    }
}

#[test]
fn a_filter_gives_the_matching_block_of_the_hessian() {
    let m = model("mlp:4-5-3:tanh", 6);
    let d = iris();
    let full = HessianOperator::new(&m, &d, HessianConfig::new(LossKind::Ce)).unwrap();
    let dense = DenseHessian::compute(&full, 1000).unwrap();
    let block = HessianOperator::new(
        &m,
        &d,
        HessianConfig {
            filter: ParamFilter::new(["2"]),
            ..HessianConfig::new(LossKind::Ce)
        },
    )
    .unwrap();
    assert_eq!(block.param_names(), &["2.weight", "2.bias"]);
    let offset = full
        .layout()
        .iter()
        .find(|(n, _, _)| n == "2.weight")
        .unwrap()
        .1;
    let sub = DenseHessian::compute(&block, 1000).unwrap();
    for i in 0..sub.dim() {
        for j in 0..sub.dim() {
            assert!((sub.get(i, j) - dense.get(offset + i, offset + j)).abs() < 1e-12);
        }
    }
    let glob = ParamFilter::new(["*.bias"]);
    let names: Vec<String> = full.param_names().to_vec();
    assert_eq!(glob.select(&names).unwrap(), vec![1, 3]);
    let err = ParamFilter::new(["conv*"]).select(&names).unwrap_err();
    assert!(matches!(err, Error::NoParameterMatches { .. }), "{err}");
    assert!(err.to_string().contains("0.weight"), "{err}");
}

#[test]
fn nan_weights_are_a_non_finite_loss_error() {
    let m = model("mlp:4-5-3:tanh", 0);
    let w = &m.params()[0].var;
    let mut vals: Vec<f64> = w.flatten_all().unwrap().to_vec1().unwrap();
    vals[3] = f64::NAN;
    w.set(&Tensor::from_vec(vals, w.dims(), &Device::Cpu).unwrap())
        .unwrap();
    let d = iris();
    let h = HessianOperator::new(&m, &d, config(LossKind::Ce, 64)).unwrap();
    let v = vector::random(h.dim(), Probe::Rademacher, 0, DType::F64, &Device::Cpu).unwrap();
    let err = h.apply(&v).unwrap_err();
    assert!(
        matches!(err, Error::NonFiniteLoss { batch: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not finite"));
}

#[test]
fn wrong_vector_length_and_mismatched_data_are_errors() {
    let m = model("mlp:4-5-3:tanh", 0);
    let d = iris();
    let h = HessianOperator::new(&m, &d, HessianConfig::new(LossKind::Ce)).unwrap();
    let v = Tensor::zeros(7, DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(
        h.apply(&v).unwrap_err(),
        Error::DimensionMismatch {
            expected: 43,
            found: 7,
            ..
        }
    ));
    let digits = digits(10);
    let err = HessianOperator::new(&m, &digits, HessianConfig::new(LossKind::Ce)).unwrap_err();
    assert!(matches!(err, Error::Model(_)), "{err}");
    let err = HessianOperator::new(
        &m,
        &d,
        HessianConfig {
            batch_size: 0,
            ..HessianConfig::new(LossKind::Ce)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

/// `x³` whose backward is `3x²` computed from a detached input: correct first derivative, no
/// second derivative (what a hand-written kernel without a differentiable backward looks like).
struct CubeWithOpaqueBackward;

impl CustomOp1 for CubeWithOpaqueBackward {
    fn name(&self) -> &'static str {
        "cube-opaque-backward"
    }
    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        let candle_core::CpuStorage::F64(v) = s else {
            candle_core::bail!("f64 only")
        };
        let v = match l.contiguous_offsets() {
            Some((a, b)) => &v[a..b],
            None => candle_core::bail!("contiguous only"),
        };
        let out: Vec<f64> = v.iter().map(|x| x * x * x).collect();
        Ok((candle_core::CpuStorage::F64(out), l.shape().clone()))
    }
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.mul(&(arg.detach().sqr()? * 3.0)?)?))
    }
}

#[test]
fn an_op_without_second_derivative_is_an_error_not_a_silent_zero() {
    let w = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0, 0.5], &Device::Cpu).unwrap()).unwrap();
    let loss = |_b: usize| -> terrain_curvature::Result<Tensor> {
        Ok(w.as_tensor().apply_op1(CubeWithOpaqueBackward)?.sum_all()?)
    };
    let h = FnHessian::new(vec![("w".into(), w.clone())], 1, loss).unwrap();
    let v = Tensor::new(&[1.0f64, 0.0, 0.0], &Device::Cpu).unwrap();
    let err = h.apply(&v).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NoDerivative {
                order: "second",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("second derivative"), "{err}");

    // The same function written with differentiable ops: H = diag(6w).
    let h = FnHessian::new(vec![("w".into(), w.clone())], 1, |_| {
        Ok(w.as_tensor().powf(3.0)?.sum_all()?)
    })
    .unwrap();
    let hv: Vec<f64> = h.apply(&v).unwrap().to_vec1().unwrap();
    assert!((hv[0] - 6.0).abs() < 1e-12 && hv[1] == 0.0 && hv[2] == 0.0);
}

#[test]
fn an_op_without_any_backward_is_a_first_derivative_error() {
    let w = Var::from_tensor(&Tensor::new(&[[1.0f32, -2.0, 0.5]], &Device::Cpu).unwrap()).unwrap();
    // candle's fused softmax_last_dim has no backward at all.
    let h = FnHessian::new(vec![("w".into(), w.clone())], 1, |_| {
        Ok(candle_nn::ops::softmax_last_dim(w.as_tensor())?
            .sqr()?
            .sum_all()?)
    })
    .unwrap();
    let v = Tensor::new(&[1.0f32, 0.0, 0.0], &Device::Cpu).unwrap();
    let err = h.apply(&v).unwrap_err();
    assert!(
        matches!(err, Error::NoDerivative { order: "first", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("`w`") || err.to_string().contains(" w"),
        "{err}"
    );
}
