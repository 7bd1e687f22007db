//! Surfaces against independent computations: filter normalisation by hand, grid values against
//! direct loss evaluation of a separately built model, the results file, bad input.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use terrain_metrics::{
    GridAxis, direction,
    direction::{Ignore, Normalize},
    surface::{self, Plane, ResultsLog, SurfaceConfig},
};
use terrain_model::{ParamVec, loss};

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn filter_normalisation_matches_a_hand_computation() {
    let model = terrain_testkit::model("mlp:3-4-2:tanh", 1);
    let theta = ParamVec::from_model(&model).unwrap();
    let d = direction::random(&model, 7).unwrap();
    for ignore in [Ignore::Biasbn, Ignore::None] {
        let n = direction::normalize(&d, &theta, Normalize::Filter, ignore).unwrap();
        for k in 0..d.tensors.len() {
            let (dv, wv, nv) = (
                values(&d.tensors[k]),
                values(&theta.tensors[k]),
                values(&n.tensors[k]),
            );
            let dims = d.tensors[k].dims();
            if dims.len() == 1 {
                let want = if ignore == Ignore::Biasbn {
                    vec![0.0; dv.len()]
                } else {
                    wv.clone()
                };
                assert_eq!(nv, want, "{}", d.names[k]);
                continue;
            }
            let cols = dv.len() / dims[0];
            for f in 0..dims[0] {
                let row = f * cols..(f + 1) * cols;
                let dn = dv[row.clone()].iter().map(|v| v * v).sum::<f64>().sqrt();
                let wn = wv[row.clone()].iter().map(|v| v * v).sum::<f64>().sqrt();
                for c in row {
                    let want = dv[c] * wn / (dn + 1e-10);
                    assert!(
                        (nv[c] - want).abs() < 1e-14,
                        "{}[{c}]: {} vs {want}",
                        d.names[k],
                        nv[c]
                    );
                }
            }
        }
    }
    // Layer normalisation: every tensor of dim > 1 gets the weights' tensor norm.
    let n = direction::normalize(&d, &theta, Normalize::Layer, Ignore::Biasbn).unwrap();
    for k in 0..d.tensors.len() {
        let norm = |v: Vec<f64>| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if d.tensors[k].rank() > 1 {
            let (a, b) = (norm(values(&n.tensors[k])), norm(values(&theta.tensors[k])));
            let dn = norm(values(&d.tensors[k]));
            let want = b * dn / (dn + 1e-10);
            assert!(
                (a - want).abs() < 1e-12 * b,
                "{}: {a} vs {want}",
                d.names[k]
            );
        }
    }
}

#[test]
fn surface_values_equal_direct_evaluations_at_each_point() {
    let data = terrain_testkit::iris(60);
    let model = terrain_testkit::model("mlp:4-6-3:tanh", 2);
    let theta = ParamVec::from_model(&model).unwrap();
    let d = direction::normalize(
        &direction::random(&model, 1).unwrap(),
        &theta,
        Normalize::Filter,
        Ignore::Biasbn,
    )
    .unwrap();
    let e = direction::normalize(
        &direction::random(&model, 2).unwrap(),
        &theta,
        Normalize::Filter,
        Ignore::None,
    )
    .unwrap();
    let plane = Plane {
        origin: theta.clone(),
        directions: vec![d.clone(), e.clone()],
    };
    let config = SurfaceConfig {
        y: Some("-0.5:1:4".parse().unwrap()),
        batch_size: 7,
        ..SurfaceConfig::new("-1:1:5".parse().unwrap(), loss::LossKind::Ce)
    };
    let s = surface::compute(&model, &data, &data, &plane, &config, None).unwrap();
    assert_eq!((s.loss.len(), s.loss[0].len()), (4, 5));
    assert_eq!(s.computed, 20);
    let probe = terrain_testkit::model("mlp:4-6-3:tanh", 99);
    let mut worst: f64 = 0.0;
    for (j, &y) in s.y.as_ref().unwrap().iter().enumerate() {
        for (i, &x) in s.x.iter().enumerate() {
            // θ + x·d + y·e built tensor by tensor, in another model, evaluated in one batch.
            let w = theta.axpy(x, &d).unwrap().axpy(y, &e).unwrap();
            w.assign_to(&probe).unwrap();
            let ev = loss::evaluate(&probe, &data, 1000).unwrap();
            worst = worst.max((s.loss[j][i] - ev.loss).abs() / ev.loss);
            assert_eq!(s.error.as_ref().unwrap()[j][i], ev.error.unwrap());
        }
    }
    assert!(worst < 1e-12, "relative loss error {worst}");
    // The model is back at θ.
    assert_eq!(
        ParamVec::from_model(&model)
            .unwrap()
            .sub(&theta)
            .unwrap()
            .norm()
            .unwrap(),
        0.0
    );
}

#[test]
fn the_results_file_resumes_and_refuses_other_settings() {
    let data = terrain_testkit::iris(30);
    let model = terrain_testkit::model("mlp:4-5-3:relu", 3);
    let theta = ParamVec::from_model(&model).unwrap();
    let plane = Plane {
        origin: theta.clone(),
        directions: vec![direction::random(&model, 4).unwrap().scale(0.3).unwrap()],
    };
    let config = SurfaceConfig::new("-2:2:9".parse().unwrap(), loss::LossKind::Ce);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.points.tsv");
    let settings = surface::settings(&model, &data, &plane, &config).unwrap();
    let full = surface::compute(&model, &data, &data, &plane, &config, None).unwrap();
    {
        let mut log = ResultsLog::open(&path, &settings).unwrap();
        surface::compute(&model, &data, &data, &plane, &config, Some(&mut log)).unwrap();
    }
    // Keep the header and three points, then a line cut short by a crash.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut kept: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    kept.push_str("7\t0\t1.2");
    std::fs::write(&path, kept).unwrap();
    let mut log = ResultsLog::open(&path, &settings).unwrap();
    assert_eq!(log.done().len(), 3);
    let resumed = surface::compute(&model, &data, &data, &plane, &config, Some(&mut log)).unwrap();
    assert_eq!((resumed.resumed, resumed.computed), (3, 6));
    assert_eq!(resumed.loss, full.loss);
    assert_eq!(resumed.error, full.error);
    // The file now holds the header and each point exactly once.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1 + 9);
    assert!(text.ends_with('\n'));
    // Other settings are refused, naming them.
    let mut other = settings.clone();
    other.insert("x".into(), "-1:1:9".into());
    let err = ResultsLog::open(&path, &other).unwrap_err().to_string();
    assert!(err.contains("x: saved -2:2:9, now -1:1:9"), "{err}");
    // Garbage is refused, naming the line.
    std::fs::write(
        &path,
        format!("{}\nnot json\n{{}}\n", text.lines().next().unwrap()),
    )
    .unwrap();
    let err = ResultsLog::open(&path, &settings).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    let empty: BTreeMap<String, String> = BTreeMap::new();
    std::fs::write(&path, "hello\n").unwrap();
    assert!(
        ResultsLog::open(&path, &empty)
            .unwrap_err()
            .to_string()
            .contains("not a terrain surface results file")
    );
}

#[test]
fn grid_specs_parse_round_trip_and_reject_bad_ones() {
    for s in ["-1:1:51", "0:2.5:3", "0.5:0.5:1"] {
        let a: GridAxis = s.parse().unwrap();
        assert_eq!(a.to_string().parse::<GridAxis>().unwrap(), a);
    }
    let a: GridAxis = "-1:1:51".parse().unwrap();
    let v = a.values();
    assert_eq!((v[0], v[25], v[50]), (-1.0, 0.0, 1.0));
    for (bad, says) in [
        ("1:-1:0", "at least 1 point"),
        ("1:-1:5", "MIN must be smaller"),
        ("0:1", "MIN:MAX:POINTS"),
        ("a:1:3", "MIN `a`"),
        ("0:1:x", "POINTS `x`"),
        ("nan:1:3", "finite"),
        ("0:1:1", "MIN = MAX"),
    ] {
        let e = bad.parse::<GridAxis>().unwrap_err().to_string();
        assert!(e.contains(bad) && e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn direction_files_are_checked_by_name_and_shape() {
    let model = terrain_testkit::model("mlp:4-5-3:relu", 3);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, tensors: Vec<(&str, Tensor)>| {
        let p = dir.path().join(name);
        let list: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        terrain_model::checkpoint::write_file(&p, &list, &BTreeMap::new()).unwrap();
        p
    };
    let w = Tensor::ones((5, 4), DType::F32, &Device::Cpu).unwrap();
    // A partial direction: the rest is zero.
    let p = write("ok.safetensors", vec![("0.weight", w.clone())]);
    let d = direction::from_file(&p, &model).unwrap();
    assert_eq!(values(&d.tensors[0]), vec![1.0; 20]);
    assert!(values(&d.tensors[1]).iter().all(|&v| v == 0.0));
    let p = write("name.safetensors", vec![("9.weight", w.clone())]);
    let e = direction::from_file(&p, &model).unwrap_err().to_string();
    assert!(
        e.contains("name.safetensors") && e.contains("`9.weight`") && e.contains("no parameter"),
        "{e}"
    );
    let p = write(
        "shape.safetensors",
        vec![(
            "0.weight",
            Tensor::ones((4, 5), DType::F32, &Device::Cpu).unwrap(),
        )],
    );
    let e = direction::from_file(&p, &model).unwrap_err().to_string();
    assert!(
        e.contains("`0.weight`") && e.contains("[4, 5]") && e.contains("[5, 4]"),
        "{e}"
    );
    let p = write(
        "nan.safetensors",
        vec![("0.weight", (w * f64::NAN).unwrap())],
    );
    assert!(
        direction::from_file(&p, &model)
            .unwrap_err()
            .to_string()
            .contains("non-finite")
    );
}

#[test]
fn recomputed_batch_norm_statistics_match_a_model_rebuilt_at_each_point() {
    let data = terrain_testkit::iris(90);
    let model = terrain_testkit::model("mlp:4-6-3:relu:bn", 5);
    terrain_testkit::randomize_batch_norm(&model, 6);
    let theta = ParamVec::from_model(&model).unwrap();
    let buffers: Vec<Vec<f64>> = model
        .buffers()
        .iter()
        .map(|b| values(b.var.as_tensor()))
        .collect();
    let d = direction::normalize(
        &direction::random(&model, 8).unwrap(),
        &theta,
        Normalize::Filter,
        Ignore::Biasbn,
    )
    .unwrap();
    let plane = Plane {
        origin: theta.clone(),
        directions: vec![d.clone()],
    };
    let config = SurfaceConfig {
        recompute_bn: true,
        batch_size: 32,
        ..SurfaceConfig::new("-0.5:0.5:3".parse().unwrap(), loss::LossKind::Ce)
    };
    let s = surface::compute(&model, &data, &data, &plane, &config, None).unwrap();
    for (i, &x) in s.x.iter().enumerate() {
        let probe = model.deep_clone().unwrap();
        theta.axpy(x, &d).unwrap().assign_to(&probe).unwrap();
        probe.recompute_batch_norm_stats(&data, 32).unwrap();
        let want = loss::evaluate(&probe, &data, 1000).unwrap().loss;
        assert!((s.loss[0][i] - want).abs() < 1e-12 * want, "x = {x}");
    }
    // Without recomputation the point at 0 is the model as trained.
    let plain = SurfaceConfig {
        recompute_bn: false,
        ..config
    };
    let s0 = surface::compute(&model, &data, &data, &plane, &plain, None).unwrap();
    let trained = loss::evaluate(&model, &data, 1000).unwrap().loss;
    assert!((s0.loss[0][1] - trained).abs() < 1e-12 * trained);
    assert!(
        (s.loss[0][1] - trained).abs() > 1e-6,
        "randomised statistics were replaced"
    );
    // The model's buffers are restored.
    let after: Vec<Vec<f64>> = model
        .buffers()
        .iter()
        .map(|b| values(b.var.as_tensor()))
        .collect();
    assert_eq!(after, buffers);
}

#[test]
fn hessian_directions_are_the_dense_hessians_top_eigenvectors() {
    terrain_model::autodiff::ensure_second_order().unwrap();
    let data = terrain_testkit::iris(40);
    let model = terrain_testkit::model("mlp:4-3-3:tanh", 7);
    let dirs = direction::hessian(&model, &data, loss::LossKind::Ce, 2, 16, 0).unwrap();
    let op = terrain_curvature::HessianOperator::new(
        &model,
        &data,
        terrain_curvature::HessianConfig::new(loss::LossKind::Ce),
    )
    .unwrap();
    let dense = terrain_curvature::DenseHessian::compute(&op, 1000).unwrap();
    let eig = dense.eigen().unwrap();
    let n = eig.n;
    for (k, (value, v)) in dirs.iter().enumerate() {
        let want = eig.values[n - 1 - k];
        assert!(
            (value - want).abs() < 1e-8 * want.abs(),
            "λ{k}: {value} vs {want}"
        );
        let flat = v.flatten().unwrap();
        let u = &eig.vectors[(n - 1 - k) * n..(n - k) * n];
        let cos: f64 = flat.iter().zip(u).map(|(a, b)| a * b).sum();
        assert!(
            (cos.abs() - 1.0).abs() < 1e-6,
            "eigenvector {k}: |cos| = {}",
            cos.abs()
        );
    }
}
