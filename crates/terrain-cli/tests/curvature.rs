//! End-to-end: `terrain hessian --hvp` (the R-op sweep against double backward) and
//! `--diag ... --diag-out FILE.safetensors` (the diagonal per parameter, against the library's
//! dense Hessian; standard errors for stochastic estimators), and their bad-input errors.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use terrain_curvature::{DenseHessian, HessianConfig, HessianOperator, HvpMethod};
use terrain_e2e::{fails, ok, train_checkpoint};
use terrain_model::{checkpoint, data, loss::LossKind};

fn trained_iris(dir: &Path) -> PathBuf {
    train_checkpoint(
        dir,
        "iris.safetensors",
        "mlp:4-6-3:tanh",
        "iris",
        &["--epochs", "20"],
    )
}

#[test]
fn diag_out_writes_the_exact_diagonal_per_parameter_and_hvp_methods_agree() {
    terrain_model::autodiff::ensure_second_order().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_iris(dir.path());
    let c = ckpt.to_str().unwrap();
    let out = dir.path().join("diag.safetensors");
    let r = ok(&[
        "hessian",
        c,
        "--data",
        "iris",
        "--dtype",
        "f64",
        "--top-k",
        "2",
        "--diag",
        "exact",
        "--diag-out",
        out.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(r["hvp"], "rop");
    assert_eq!(r["diagonal"]["file"], out.to_str().unwrap());

    // The dense Hessian of the same loss by double backward, through the library.
    let opts = checkpoint::LoadOptions {
        dtype: Some(DType::F64),
        ..Default::default()
    };
    let loaded = checkpoint::load(&ckpt, &opts).unwrap();
    let standardizer = loaded.standardizer().unwrap().expect("standardised inputs");
    let iris = standardizer
        .apply(&data::builtin::load("iris").unwrap())
        .unwrap();
    let config = HessianConfig {
        hvp: HvpMethod::DoubleBackward,
        ..HessianConfig::new(LossKind::Ce)
    };
    let op = HessianOperator::new(&loaded.model, &iris, config).unwrap();
    let dense = DenseHessian::compute(&op, 1000).unwrap().diagonal();

    let file = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert_eq!(
        file.len(),
        4,
        "one tensor per parameter, no stderr for exact"
    );
    let scale = dense.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for ((name, off, len), shape) in op.layout().into_iter().zip(op.param_shapes()) {
        let t = &file[&name];
        assert_eq!(t.dims(), shape.as_slice(), "{name}");
        assert_eq!(t.dtype(), DType::F64);
        let got = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (g, w) in got.iter().zip(&dense[off..off + len]) {
            assert!((g - w).abs() <= 1e-10 * scale, "{name}: {g} vs dense {w}");
        }
    }

    // The same top eigenvalues by double backward.
    let db = ok(&[
        "hessian",
        c,
        "--data",
        "iris",
        "--dtype",
        "f64",
        "--top-k",
        "2",
        "--hvp",
        "double-backward",
        "--format",
        "json",
    ]);
    assert_eq!(db["hvp"], "double-backward");
    for (a, b) in r["top_eigenvalues"]
        .as_array()
        .unwrap()
        .iter()
        .zip(db["top_eigenvalues"].as_array().unwrap())
    {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-8 * b.abs(),
            "rop {a} vs double backward {b}"
        );
    }

    // A stochastic estimator adds standard errors.
    let hut = dir.path().join("hutchinson.safetensors");
    ok(&[
        "hessian",
        c,
        "--data",
        "iris",
        "--diag",
        "hutchinson",
        "--diag-samples",
        "20",
        "--diag-out",
        hut.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let file = candle_core::safetensors::load(&hut, &Device::Cpu).unwrap();
    assert_eq!(file.len(), 8);
    for (name, _, _) in op.layout() {
        let se = file[&format!("{name}.stderr")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(se.iter().all(|s| s.is_finite() && *s >= 0.0), "{name}");
        assert!(
            se.iter().any(|s| *s > 0.0),
            "{name}: all standard errors zero"
        );
    }
}

#[test]
fn bad_hvp_and_diag_out_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_iris(dir.path());
    let c = ckpt.to_str().unwrap();
    let e = fails(&["hessian", c, "--data", "iris", "--hvp", "triple"]);
    assert!(e.contains("triple") && e.contains("double-backward"), "{e}");
    let e = fails(&[
        "hessian",
        c,
        "--data",
        "iris",
        "--diag-out",
        "d.safetensors",
    ]);
    assert!(e.contains("--diag-out") && e.contains("--diag"), "{e}");
    let e = fails(&[
        "hessian",
        c,
        "--data",
        "iris",
        "--diag",
        "exact",
        "--diag-out",
        "diag.txt",
    ]);
    assert!(e.contains("diag.txt") && e.contains("safetensors"), "{e}");
    let missing = dir.path().join("no/such/dir/d.safetensors");
    let e = fails(&[
        "hessian",
        c,
        "--data",
        "iris",
        "--diag",
        "exact",
        "--diag-out",
        missing.to_str().unwrap(),
    ]);
    assert!(e.contains("does not exist"), "{e}");
}
