//! The hand-written sweep ([`HvpMethod::Rop`]) against candle autodiff and central finite
//! differences in f64, on every case of terrain-model's derivative tests (BatchNorm in eval mode,
//! as the operator runs it): the gradient, the R-op Hessian-vector product, the Gauss–Newton
//! product (also against a dense `Jᵀ H J` built from autodiff Jacobians), and batched products.

use candle_core::{DType, Device, Tensor};
use terrain_curvature::{
    Curvature, DenseHessian, FiniteDifferenceOperator, HessianConfig, HessianOperator, HvpMethod,
    LinearOperator,
    vector::{self, Probe},
};
use terrain_model::{ArchSpec, Model, data::Dataset, loss::LossKind};
use terrain_testkit::{case_data as data, randomize_batch_norm, rel_err};

fn operator<'m>(
    m: &'m Model,
    d: &Dataset,
    loss: LossKind,
    hvp: HvpMethod,
    curvature: Curvature,
) -> HessianOperator<'m> {
    let config = HessianConfig {
        batch_size: 4,
        hvp,
        curvature,
        ..HessianConfig::new(loss)
    };
    HessianOperator::new(m, d, config).unwrap()
}

/// Every case of `crates/terrain-model/tests/derivatives.rs` (the training-mode BatchNorm cases run
/// in eval mode here, as the Hessian operator does).
const CASES: &[(&str, LossKind)] = &[
    ("mlp:5-7-6-3:relu", LossKind::Ce),
    ("mlp:5-7-6-3:tanh", LossKind::Ce),
    ("mlp:5-7-6-3:gelu", LossKind::Ce),
    ("mlp:5-7-6-3:silu", LossKind::Ce),
    ("mlp:5-7-6-3:sigmoid", LossKind::Ce),
    ("mlp:5-7-6-3:softplus", LossKind::Ce),
    ("mlp:5-2:tanh", LossKind::Mse),
    ("mlp:5-8-2:tanh", LossKind::Mse),
    ("mlp:5-7-3:tanh:nobias", LossKind::Ce),
    ("mlp:5-7-6-3:tanh:bn", LossKind::Ce),
    ("mlp:2-9-9-2:relu:bn:nobias", LossKind::Ce),
    ("cnn:2x8x8-3-4-3:relu", LossKind::Ce),
    ("cnn:1x4x4-3-3:tanh", LossKind::Ce),
    ("cnn:1x4x4-2-2:softplus", LossKind::Mse),
    ("resnet18:3x8x8:w2:4", LossKind::Ce),
    // Smaller than derivatives.rs's tanh ResNet (w2:4): every smooth activation's residual
    // factors come back through the earlier blocks.
    ("resnet18:3x8x8:w1:3:act=tanh", LossKind::Ce),
];

fn model(spec: &str) -> (ArchSpec, Model) {
    let spec: ArchSpec = spec.parse().unwrap();
    let m = Model::new(spec.clone(), DType::F64, &Device::Cpu, 3).unwrap();
    randomize_batch_norm(&m, 5);
    (spec, m)
}

fn check_case(spec_str: &str, loss: LossKind, d: Option<Dataset>) {
    let (spec, m) = model(spec_str);
    let d = d.unwrap_or_else(|| data(&spec, 6, loss));
    let rop = operator(&m, &d, loss, HvpMethod::Rop, Curvature::Hessian);
    let ad = operator(&m, &d, loss, HvpMethod::DoubleBackward, Curvature::Hessian);

    // Gradient and loss: the sweep against candle autodiff.
    let (l_rop, g_rop) = rop.loss_and_gradient().unwrap();
    let (l_ad, g_ad) = ad.loss_and_gradient().unwrap();
    assert!(
        (l_rop - l_ad).abs() <= 1e-12 * l_ad.abs(),
        "{spec_str}: loss"
    );
    let eg = rel_err(&g_rop, &g_ad);
    assert!(eg <= 1e-10, "{spec_str}: gradient rel. err {eg:e}");

    let fd = FiniteDifferenceOperator::new(&ad, 1e-5).unwrap();
    let ggn_rop = operator(&m, &d, loss, HvpMethod::Rop, Curvature::GaussNewton);
    let ggn_ad = operator(
        &m,
        &d,
        loss,
        HvpMethod::DoubleBackward,
        Curvature::GaussNewton,
    );
    for seed in 0..2 {
        let v = vector::random(rop.dim(), Probe::Gaussian, seed, DType::F64, &Device::Cpu).unwrap();
        let hv = rop.apply(&v).unwrap();
        let e_ad = rel_err(&hv, &ad.apply(&v).unwrap());
        let e_fd = rel_err(&hv, &fd.apply(&v).unwrap());
        assert!(e_ad <= 1e-8, "{spec_str}: R-op vs double backward {e_ad:e}");
        assert!(
            e_fd <= 1e-8,
            "{spec_str}: R-op vs finite differences {e_fd:e}"
        );
        assert!(vector::dot(&hv, &hv).unwrap() > 1e-16, "{spec_str}: Hv ≈ 0");
        let gv = ggn_rop.apply(&v).unwrap();
        let e_g = rel_err(&gv, &ggn_ad.apply(&v).unwrap());
        assert!(
            e_g <= 1e-8,
            "{spec_str}: Gauss–Newton sweep vs autodiff {e_g:e}"
        );
        eprintln!(
            "{spec_str}: grad {eg:.1e}, HVP vs AD {e_ad:.1e}, vs FD {e_fd:.1e}, GGN vs AD {e_g:.1e}"
        );
    }
}

#[test]
fn rop_gradient_hvp_and_gauss_newton_match_autodiff_and_finite_differences_mlps() {
    for (spec, loss) in CASES.iter().filter(|(s, _)| s.starts_with("mlp")) {
        check_case(spec, *loss, None);
    }
}

#[test]
fn rop_gradient_hvp_and_gauss_newton_match_autodiff_and_finite_differences_convnets() {
    for (spec, loss) in CASES.iter().filter(|(s, _)| !s.starts_with("mlp")) {
        check_case(spec, *loss, None);
    }
}

#[test]
fn rop_on_soft_targets_cross_entropy() {
    let spec: ArchSpec = "mlp:4-5-3:tanh".parse().unwrap();
    let base = data(&spec, 6, LossKind::Ce);
    let soft = terrain_testkit::soft_labels(&base, 2);
    check_case("mlp:4-5-3:tanh", LossKind::Ce, Some(soft));
}

#[test]
fn rop_on_a_parameter_block_matches_autodiff() {
    let (spec, m) = model("mlp:5-7-6-3:tanh:bn");
    let d = data(&spec, 6, LossKind::Ce);
    for pattern in ["1", "*.bias", "3.weight", "0.weight"] {
        let config = |hvp| HessianConfig {
            batch_size: 4,
            hvp,
            filter: terrain_curvature::ParamFilter::new([pattern]),
            ..HessianConfig::new(LossKind::Ce)
        };
        let rop = HessianOperator::new(&m, &d, config(HvpMethod::Rop)).unwrap();
        let ad = HessianOperator::new(&m, &d, config(HvpMethod::DoubleBackward)).unwrap();
        let v = vector::random(rop.dim(), Probe::Gaussian, 4, DType::F64, &Device::Cpu).unwrap();
        let e = rel_err(&rop.apply(&v).unwrap(), &ad.apply(&v).unwrap());
        assert!(e <= 1e-8, "block {pattern}: {e:e}");
        let e = rel_err(
            &rop.loss_and_gradient().unwrap().1,
            &ad.loss_and_gradient().unwrap().1,
        );
        assert!(e <= 1e-10, "block {pattern} gradient: {e:e}");
    }
}

#[test]
fn apply_many_equals_one_apply_per_vector() {
    for (spec_str, curvature) in [
        ("cnn:1x4x4-3-3:tanh", Curvature::Hessian),
        ("mlp:5-7-6-3:tanh:bn", Curvature::Hessian),
        ("mlp:5-7-6-3:gelu", Curvature::GaussNewton),
    ] {
        let (spec, m) = model(spec_str);
        let d = data(&spec, 6, LossKind::Ce);
        let op = operator(&m, &d, LossKind::Ce, HvpMethod::Rop, curvature);
        let vs: Vec<Tensor> = (0..5)
            .map(|s| {
                vector::random(op.dim(), Probe::Rademacher, s, DType::F64, &Device::Cpu).unwrap()
            })
            .collect();
        let many = op.apply_many(&vs).unwrap();
        assert_eq!(many.len(), vs.len());
        for (v, hv) in vs.iter().zip(&many) {
            let e = rel_err(hv, &op.apply(v).unwrap());
            assert!(e <= 1e-13, "{spec_str}: apply_many vs apply {e:e}");
        }
    }
}

/// `G = Σ_n J_nᵀ (∇²ℓ_n) J_n` built densely: the Jacobian of every logit by candle autodiff, the
/// softmax cross-entropy Hessian `w (diag p − p pᵀ)` by hand.
#[test]
fn gauss_newton_sweep_equals_dense_jt_h_j() {
    terrain_model::autodiff::ensure_second_order().unwrap();
    let (spec, m) = model("mlp:3-4-3:tanh:bn");
    let n = 5;
    let d = data(&spec, n, LossKind::Ce);
    let op = operator(&m, &d, LossKind::Ce, HvpMethod::Rop, Curvature::GaussNewton);
    let p = op.dim();
    let x = m.prepare_input(&d.x).unwrap();
    let z = m.forward_t(&x, false).unwrap();
    let k = z.dim(1).unwrap();
    let vars: Vec<&Tensor> = op.vars().iter().map(|v| v.as_tensor()).collect();
    // J: (n·k) × p.
    let mut jac = vec![0.0; n * k * p];
    for row in 0..n {
        for o in 0..k {
            let zo = z.get(row).unwrap().get(o).unwrap();
            let g = terrain_model::autodiff::grad(&zo, &vars).unwrap();
            let flat: Vec<f64> = g
                .iter()
                .flat_map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
                .collect();
            jac[(row * k + o) * p..(row * k + o + 1) * p].copy_from_slice(&flat);
        }
    }
    let probs = candle_nn::ops::softmax_last_dim(&z.detach())
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let w = 1.0 / n as f64;
    let mut dense = vec![0.0; p * p];
    for (row, pr) in probs.iter().enumerate() {
        for a in 0..k {
            for b in 0..k {
                let h = w * (if a == b { pr[a] } else { 0.0 } - pr[a] * pr[b]);
                let (ja, jb) = (
                    &jac[(row * k + a) * p..(row * k + a + 1) * p],
                    &jac[(row * k + b) * p..(row * k + b + 1) * p],
                );
                for i in 0..p {
                    for j in 0..p {
                        dense[i * p + j] += ja[i] * h * jb[j];
                    }
                }
            }
        }
    }
    let swept = DenseHessian::compute(&op, p).unwrap();
    let scale = dense.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let err = swept
        .values()
        .iter()
        .zip(&dense)
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        err <= 1e-12 * scale,
        "GGN sweep vs dense JᵀHJ: {err:e} (scale {scale:e})"
    );
}

#[test]
fn hvp_method_parses_and_displays() {
    for m in [HvpMethod::Rop, HvpMethod::DoubleBackward] {
        assert_eq!(m.to_string().parse::<HvpMethod>().unwrap(), m);
    }
    let e = "triple".parse::<HvpMethod>().unwrap_err().to_string();
    assert!(e.contains("hvp") && e.contains("triple"), "{e}");
    // Old configs without the field get the default.
    let c: HessianConfig = serde_json::from_str(
        r#"{"loss":"ce","batch_size":8,"samples":null,"sample_seed":0,"filter":[],"curvature":"hessian"}"#,
    )
    .unwrap();
    assert_eq!(c.hvp, HvpMethod::Rop);
}

/// The exact diagonal in one sweep (BackPACK `DiagHessian` / `DiagGGN`) against the diagonal of the
/// dense matrix built by double backward, on every derivative case (conv, BatchNorm, residual
/// blocks, soft targets and MSE included).
#[test]
fn exact_diagonal_sweep_equals_the_dense_diagonal() {
    use terrain_curvature::diagonal::{self, DiagonalConfig, DiagonalMethod};
    let spec: ArchSpec = "mlp:4-5-3:tanh".parse().unwrap();
    let soft = terrain_testkit::soft_labels(&data(&spec, 6, LossKind::Ce), 2);
    let mut cases: Vec<(&str, LossKind, Option<Dataset>)> =
        CASES.iter().map(|(s, l)| (*s, *l, None)).collect();
    cases.push(("mlp:4-5-3:tanh", LossKind::Ce, Some(soft)));
    for (spec_str, loss, d) in cases {
        let (spec, m) = model(spec_str);
        let d = d.unwrap_or_else(|| data(&spec, 6, loss));
        // ResNet-18 has 11k parameters: its stem and first two blocks (whose factors come back
        // through every later block) make the dense oracle affordable.
        let filter = if spec_str.starts_with("resnet") {
            terrain_curvature::ParamFilter::new(["conv1", "bn1", "layer1.0", "layer2.0"])
        } else {
            terrain_curvature::ParamFilter::all()
        };
        for curvature in [Curvature::Hessian, Curvature::GaussNewton] {
            let config = |hvp| HessianConfig {
                batch_size: 4,
                hvp,
                curvature,
                filter: filter.clone(),
                ..HessianConfig::new(loss)
            };
            let rop = HessianOperator::new(&m, &d, config(HvpMethod::Rop)).unwrap();
            let ad = HessianOperator::new(&m, &d, config(HvpMethod::DoubleBackward)).unwrap();
            let dense = DenseHessian::compute(&ad, 10_000).unwrap().diagonal();
            let swept = diagonal::exact_diagonal_sweep(&rop).unwrap();
            let scale = dense.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let err = swept
                .iter()
                .zip(&dense)
                .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
            assert!(
                err <= 1e-10 * scale,
                "{spec_str} {curvature:?}: exact diagonal sweep max err {err:e} (scale {scale:e})"
            );
            // `estimate_diagonal` with the exact method takes the sweep on an R-op operator.
            let est = diagonal::estimate_diagonal(
                &rop,
                DiagonalMethod::Exact,
                &DiagonalConfig::default(),
            )
            .unwrap();
            assert_eq!(est.values, swept, "{spec_str}");
            eprintln!(
                "{spec_str} {curvature:?}: {} parameters, max err / max |H_ii| = {:.1e}",
                dense.len(),
                err / scale
            );
        }
    }
}

/// The trainer-facing `engine::loss_and_gradient` (one batch, every parameter) against candle
/// autodiff of the eval-mode loss.
#[test]
fn one_batch_gradient_matches_autodiff() {
    terrain_model::autodiff::ensure_second_order().unwrap();
    for (spec_str, loss) in [
        ("mlp:5-7-6-3:gelu", LossKind::Ce),
        ("cnn:1x4x4-2-2:softplus", LossKind::Mse),
        ("resnet18:3x8x8:w2:4", LossKind::Ce),
    ] {
        let (spec, m) = model(spec_str);
        let d = data(&spec, 5, loss);
        let batch = terrain_model::data::Batch {
            x: m.prepare_input(&d.x).unwrap(),
            y: d.y.to_dtype(DType::F64).unwrap(),
        };
        let (l, g) = terrain_model::engine::loss_and_gradient(&m, &batch, loss).unwrap();
        let out = m.forward_t(&batch.x, false).unwrap();
        let lt = terrain_model::loss::mean(&out, &batch.y, loss).unwrap();
        let vars: Vec<&Tensor> = m.params().iter().map(|p| p.var.as_tensor()).collect();
        let want = terrain_model::autodiff::grad(&lt, &vars).unwrap();
        assert!((l - lt.to_scalar::<f64>().unwrap()).abs() < 1e-12);
        assert_eq!(g.len(), want.len());
        for ((a, b), p) in g.iter().zip(&want).zip(m.params()) {
            let e = rel_err(&a.flatten_all().unwrap(), &b.flatten_all().unwrap());
            assert!(e <= 1e-10, "{spec_str} {}: {e:e}", p.name);
        }
    }
}
