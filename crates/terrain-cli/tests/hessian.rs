//! End-to-end: `terrain hessian` on a trained checkpoint agrees with a dense Hessian computed by
//! the library, writes its density plot, and answers bad flags with clear errors.

use std::path::{Path, PathBuf};

use candle_core::DType;
use terrain_curvature::{DenseHessian, HessianConfig, HessianOperator};
use terrain_e2e::{fails, ok, terrain, train_checkpoint};
use terrain_model::{checkpoint, data, loss::LossKind};

fn trained_iris(dir: &Path) -> PathBuf {
    train_checkpoint(
        dir,
        "iris.safetensors",
        "mlp:4-6-3:tanh",
        "iris",
        &["--epochs", "30"],
    )
}

#[test]
fn hessian_agrees_with_a_dense_hessian_and_plots_the_density() {
    terrain_model::autodiff::ensure_second_order().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_iris(dir.path());
    let plot = dir.path().join("spectrum.png");
    let c = ckpt.to_str().unwrap();
    let r = ok(&[
        "hessian",
        c,
        "--data",
        "iris",
        "--dtype",
        "f64",
        "--top-k",
        "3",
        "--trace",
        "--trace-matvecs",
        "300",
        "--density",
        "--density-bins",
        "500",
        "--diag",
        "exact",
        "--plot",
        plot.to_str().unwrap(),
        "--format",
        "json",
        "--seed",
        "3",
    ]);

    // The same Hessian, dense, through the library.
    let opts = checkpoint::LoadOptions {
        dtype: Some(DType::F64),
        ..Default::default()
    };
    let loaded = checkpoint::load(&ckpt, &opts).unwrap();
    let model = loaded.model.clone();
    // Iris is tabular: training standardised its inputs, and the checkpoint records how.
    let standardizer = loaded
        .standardizer()
        .unwrap()
        .expect("tabular inputs are standardised");
    let iris = standardizer
        .apply(&data::builtin::load("iris").unwrap())
        .unwrap();
    let op = HessianOperator::new(&model, &iris, HessianConfig::new(LossKind::Ce)).unwrap();
    let dense = DenseHessian::compute(&op, 1000).unwrap();
    let mut eig = dense.eigen().unwrap().values.clone();
    eig.sort_by(|a, b| b.total_cmp(a));

    assert_eq!(r["parameters"].as_u64().unwrap() as usize, dense.dim());
    assert!(r["loss"].as_f64().unwrap() > 0.0);
    let top: Vec<f64> = r["top_eigenvalues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(top.len(), 3);
    for (got, want) in top.iter().zip(&eig) {
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "eigenvalue {got} vs dense {want}"
        );
    }
    for p in r["eigenpairs"].as_array().unwrap() {
        assert!(p["residual"].as_f64().unwrap() < 1e-4 * top[0], "{p}");
    }
    let trace = dense.trace();
    let est = r["trace"].as_f64().unwrap();
    let se = r["trace_std_error"].as_f64().unwrap();
    assert!(
        se > 0.0 && (est - trace).abs() < 3.0 * se,
        "trace {est} ± {se} vs {trace}"
    );
    let exact_diag_trace = r["diagonal"]["trace"].as_f64().unwrap();
    assert!((exact_diag_trace - trace).abs() < 1e-9 * trace.abs());
    assert_eq!(r["diagonal_params"].as_array().unwrap().len(), 4);

    let density = &r["density"];
    let grid = density["grid"].as_array().unwrap();
    let values = density["density"].as_array().unwrap();
    assert_eq!(grid.len(), 500);
    assert_eq!(values.len(), 500);
    assert!(density["max_node"].as_f64().unwrap() <= eig[0] * (1.0 + 1e-6));
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(density["plot"], plot.to_str().unwrap());

    // Default analysis (top eigenvalue + trace) and a table on stdout.
    let out = terrain(&["hessian", c, "--data", "iris", "--param", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("top_eigenvalues")
            && text.contains("trace_std_error")
            && text.contains("parameters                21"),
        "{text}"
    );
}

#[test]
fn hessian_bad_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = trained_iris(dir.path());
    let c = ckpt.to_str().unwrap();
    let err = fails(&["hessian", c, "--data", "iris", "--top-k", "100"]);
    assert!(
        err.contains("top 100 eigenvalues") && err.contains("51"),
        "{err}"
    );
    let err = fails(&["hessian", c, "--data", "iris", "--diag", "magic"]);
    assert!(err.contains("magic") && err.contains("cp-tu"), "{err}");
    let err = fails(&["hessian", c, "--data", "iris", "--param", "conv1"]);
    assert!(err.contains("conv1") && err.contains("0.weight"), "{err}");
    let err = fails(&["hessian", c, "--data", "digits"]);
    assert!(err.contains("64") || err.contains("4"), "{err}");
    let err = fails(&["hessian", c, "--data", "iris", "--batch-size", "0"]);
    assert!(err.contains("batch_size"), "{err}");
    let out = terrain(&["hessian", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--top-k") && help.contains("--density") && help.contains("--diag"));
}
