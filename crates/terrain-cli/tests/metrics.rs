//! `terrain connect`, `terrain cka`, `terrain metrics` and `terrain sensitivity` end to end:
//! their JSON keys, pictures, and the bad-input cases, each a clear error naming the
//! culprit.

use std::path::Path;

use terrain_e2e::{fails, ok, train_checkpoint};

/// Trains a checkpoint (the digits without standardisation, so seeds see the same inputs;
/// regression sets standardised, as they need).
fn train(dir: &Path, name: &str, arch: &str, data: &str, seed: &str) -> String {
    let mut extra = vec!["--epochs", "3", "--seed", seed];
    if data == "digits" {
        extra.push("--no-standardize");
    }
    let p = train_checkpoint(dir, name, arch, data, &extra);
    p.to_str().unwrap().to_string()
}

#[test]
fn connect_cka_and_metrics_report_their_keys_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let a = train(
        dir.path(),
        "a.safetensors",
        "mlp:64-16-10:tanh",
        "digits",
        "1",
    );
    let b = train(
        dir.path(),
        "b.safetensors",
        "mlp:64-16-10:tanh",
        "digits",
        "2",
    );
    let other = train(
        dir.path(),
        "other.safetensors",
        "mlp:64-8-10:tanh",
        "digits",
        "3",
    );
    let reg = train(
        dir.path(),
        "reg.safetensors",
        "mlp:13-8-1:tanh",
        "boston",
        "1",
    );
    let plot = dir.path().join("c.png");
    let p = plot.to_str().unwrap();

    let c = ok(&[
        "connect", &a, &b, "--data", "digits", "--points", "5", "--plot", p, "--format", "json",
    ]);
    assert_eq!(c["t"].as_array().unwrap().len(), 5);
    for key in ["loss", "error", "mc", "mc_peak"] {
        assert!(!c[key].is_null(), "{key}");
    }
    // mc and mc_peak from the errors (percent) as defined.
    let e: Vec<f64> = c["error"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let peak = e[1..4].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(c["mc_peak"].as_f64().unwrap(), -peak);
    assert!(plot.exists());
    let err = fails(&["connect", &a, &other, "--data", "digits", "--plot", p]);
    assert!(
        err.contains("other.safetensors")
            && err.contains("mlp:64-8-10:tanh")
            && err.contains("mlp:64-16-10:tanh"),
        "{err}"
    );
    let err = fails(&[
        "connect", &a, &b, "--data", "digits", "--points", "1", "--plot", p,
    ]);
    assert!(err.contains("--points"), "{err}");

    let k = ok(&["cka", &a, &b, &a, "--data", "digits", "--format", "json"]);
    assert_eq!(k["pairs"].as_array().unwrap().len(), 6);
    let cka = k["cka"].as_f64().unwrap();
    assert!(cka > 0.0 && cka <= 1.0, "{cka}");
    let err = fails(&["cka", &a, "--data", "digits"]);
    assert!(err.contains("at least 2") && err.contains("got 1"), "{err}");
    let err = fails(&["cka", &a, &other, "--data", "digits"]);
    assert!(
        err.contains("other.safetensors") && err.contains("mlp:64-8-10:tanh"),
        "{err}"
    );
    let err = fails(&[
        "cka",
        &reg,
        &reg,
        "--data",
        "boston",
        "--outputs",
        "softmax",
    ]);
    assert!(
        err.contains("boston") && err.contains("regression") && err.contains("logits"),
        "{err}"
    );
    let err = fails(&["cka", &a, &b, "--data", "digits", "--mixup-alpha", "nan"]);
    assert!(err.contains("--mixup-alpha"), "{err}");
    ok(&[
        "cka",
        &reg,
        &reg,
        "--data",
        "boston",
        "--outputs",
        "logits",
        "--format",
        "json",
    ]);

    let m = ok(&[
        "metrics",
        &a,
        &b,
        "--data",
        "digits",
        "--connect",
        "linear",
        "--format",
        "json",
    ]);
    for key in [
        "train_error",
        "train_loss",
        "test_error",
        "test_loss",
        "hessian_e",
        "hessian_t",
        "mode_connectivity",
        "mode_connectivity_peak",
        "CKA",
    ] {
        assert!(m[key].is_number(), "{key}: {}", m[key]);
    }
    assert_eq!(m["models"].as_array().unwrap().len(), 2);
    assert!(m["models"][0]["sharpness"]["one_step"].is_number());
    let out = dir.path().join("row.csv");
    let csv = terrain_e2e::terrain(&[
        "metrics",
        &a,
        "--data",
        "digits",
        "--connect",
        "linear",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(csv.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("train_error,train_loss,test_error,test_loss,hessian_e,hessian_t,mode_connectivity,mode_connectivity_peak,CKA"), "{text}");
    let err = fails(&["metrics", &a, &other, "--data", "digits"]);
    assert!(
        err.contains("other.safetensors") && err.contains("mlp:64-8-10:tanh"),
        "{err}"
    );
}

#[test]
fn sensitivity_of_a_checkpoint_and_of_retrainings() {
    let dir = tempfile::tempdir().unwrap();
    let reg = train(
        dir.path(),
        "reg.safetensors",
        "mlp:13-8-1:tanh",
        "boston",
        "1",
    );
    let plot = dir.path().join("s.png");
    let p = plot.to_str().unwrap();
    let s = ok(&[
        "sensitivity",
        &reg,
        "--data",
        "boston",
        "--plot",
        p,
        "--format",
        "json",
    ]);
    for key in [
        "mean_d1",
        "mean_d2",
        "mean_d3",
        "mean_abs_d1",
        "mean_abs_d2",
        "mean_abs_d3",
        "rho_s",
    ] {
        assert_eq!(s[key].as_array().unwrap().len(), 13, "{key}");
    }
    assert!(s["spearman_d2_rho"].is_number());
    assert!(plot.exists());
    let r = ok(&[
        "sensitivity",
        "--retrain",
        "2",
        "--arch",
        "mlp:10-6-1:tanh",
        "--data",
        "diabetes",
        "--epochs",
        "5",
        "--plot",
        p,
        "--format",
        "json",
    ]);
    assert_eq!(r["runs"].as_array().unwrap().len(), 2);
    assert_eq!(r["mean"]["mean_d2"].as_array().unwrap().len(), 10);
    assert!(r["agreement"]["kendall_w_d2"].is_number());
    let err = fails(&[
        "sensitivity",
        "--retrain",
        "2",
        "--data",
        "diabetes",
        "--plot",
        p,
    ]);
    assert!(err.contains("--arch"), "{err}");
    let err = fails(&["sensitivity", &reg, "--data", "digits", "--plot", p]);
    assert!(err.contains("digits"), "{err}");
}
