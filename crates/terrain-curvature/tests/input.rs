//! Per-sample input derivatives d1, d2, d3 against central finite differences in f64.

use candle_core::{DType, Device, Tensor};
use terrain_curvature::input::{InputDerivativeConfig, input_derivatives};
use terrain_model::{Model, data, loss::LossKind};

fn per_sample_loss(model: &Model, data: &data::Dataset, x: &Tensor, loss: LossKind) -> Vec<f64> {
    let out = model.forward_t(x, false).unwrap();
    terrain_model::loss::per_sample(&out, &data.y.to_dtype(DType::F64).unwrap(), loss)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Central differences, along feature `i` of every row at once, of `f(x)` `[N, D]`-valued
/// (column `col` of its output).
fn fd_column(x: &Tensor, i: usize, h: f64, f: impl Fn(&Tensor) -> Vec<f64>) -> Vec<f64> {
    let (n, d) = x.dims2().unwrap();
    let mut shift = vec![0.0; n * d];
    for r in 0..n {
        shift[r * d + i] = h;
    }
    let s = Tensor::from_vec(shift, (n, d), &Device::Cpu).unwrap();
    let plus = f(&x.add(&s).unwrap());
    let minus = f(&x.sub(&s).unwrap());
    plus.iter()
        .zip(&minus)
        .map(|(p, m)| (p - m) / (2.0 * h))
        .collect()
}

fn column(t: &Tensor, j: usize) -> Vec<f64> {
    t.narrow(1, j, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-300)
}

fn check(spec: &str, data: data::Dataset, loss: LossKind, features: Option<Vec<usize>>) {
    let model = Model::new(spec.parse().unwrap(), DType::F64, &Device::Cpu, 11).unwrap();
    let config = InputDerivativeConfig {
        batch_size: 23,
        features: features.clone(),
        ..InputDerivativeConfig::new(loss)
    };
    let d = input_derivatives(&model, &data, &config).unwrap();
    let n = data.len();
    let dim: usize = data.input_shape().iter().product();
    let x = data
        .x
        .reshape((n, dim))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    assert_eq!(d.d1.dims(), &[n, dim]);
    let feats = features.unwrap_or_else(|| (0..dim).collect());
    assert_eq!(d.features, feats);
    let d2 = d.d2.as_ref().unwrap();
    let d3 = d.d3.as_ref().unwrap();
    assert_eq!(d2.dims(), &[n, feats.len()]);
    // AD derivatives of one order lower, as functions of x, for the FD of each order.
    let lower = |x: &Tensor, order: usize, j: usize| -> Vec<f64> {
        // On f64 inputs directly (a data set stores f32, which would swallow the FD step).
        let cfg = InputDerivativeConfig {
            order,
            batch_size: 1000,
            features: Some(vec![feats[j]]),
            ..InputDerivativeConfig::new(loss)
        };
        let r = terrain_curvature::input::input_derivatives_at(&model, x, &data.y, &cfg).unwrap();
        match order {
            1 => column(&r.d1, feats[j]),
            _ => column(r.d2.as_ref().unwrap(), 0),
        }
    };
    for (j, &i) in feats.iter().enumerate() {
        let fd1 = fd_column(&x, i, 1e-5, |x| per_sample_loss(&model, &data, x, loss));
        let e1 = rel(&column(&d.d1, i), &fd1);
        assert!(e1 < 1e-6, "{spec} d1 feature {i}: {e1:e}");
        let fd2 = fd_column(&x, i, 1e-5, |x| lower(x, 1, j));
        let e2 = rel(&column(d2, j), &fd2);
        assert!(e2 < 1e-6, "{spec} d2 feature {i}: {e2:e}");
        let fd3 = fd_column(&x, i, 1e-5, |x| lower(x, 2, j));
        let e3 = rel(&column(d3, j), &fd3);
        assert!(e3 < 1e-6, "{spec} d3 feature {i}: {e3:e}");
    }
}

#[test]
fn mlp_ce_derivatives_match_finite_differences() {
    check(
        "mlp:4-8-3:tanh",
        data::builtin::load("iris").unwrap(),
        LossKind::Ce,
        None,
    );
}

#[test]
fn mlp_mse_with_batchnorm_and_gelu_matches_finite_differences() {
    let boston = data::builtin::load("boston").unwrap();
    let boston = boston.subset(&(0..60).collect::<Vec<_>>()).unwrap();
    let boston = boston.standardizer().unwrap().apply(&boston).unwrap();
    check(
        "mlp:13-8-1:gelu:bn",
        boston,
        LossKind::Mse,
        Some(vec![0, 5, 12]),
    );
}

#[test]
fn relu_nets_have_zero_higher_derivatives_and_bad_settings_are_errors() {
    let iris = data::builtin::load("iris").unwrap();
    let model = Model::new(
        "mlp:4-8-3:relu".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        1,
    )
    .unwrap();
    // With CE the second derivative is not zero (softmax curvature), the d3 of a relu net is not
    // zero either; just check they are finite and shaped. Order 1 gives no d2/d3.
    let cfg = InputDerivativeConfig {
        order: 1,
        ..InputDerivativeConfig::new(LossKind::Ce)
    };
    let d = input_derivatives(&model, &iris, &cfg).unwrap();
    assert!(d.d2.is_none() && d.d3.is_none());
    for (cfg, needle) in [
        (
            InputDerivativeConfig {
                order: 4,
                ..InputDerivativeConfig::new(LossKind::Ce)
            },
            "order",
        ),
        (
            InputDerivativeConfig {
                features: Some(vec![4]),
                ..InputDerivativeConfig::new(LossKind::Ce)
            },
            "features",
        ),
        (
            InputDerivativeConfig {
                batch_size: 0,
                ..InputDerivativeConfig::new(LossKind::Ce)
            },
            "batch_size",
        ),
    ] {
        let err = input_derivatives(&model, &iris, &cfg).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
}
