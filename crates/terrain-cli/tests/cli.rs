//! End-to-end: the `terrain` binary trains, evaluates and inspects checkpoints, and answers bad
//! input with clear errors and a failing exit code.

use terrain_e2e::{fails, ok, terrain};

/// `--plot x.png` writes a real PNG (the format follows the extension), of the chart's size.
#[test]
fn train_plot_png_is_a_png() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    let png = dir.path().join("curves.png");
    ok(&[
        "train",
        "--arch",
        "mlp:4-8-3:tanh",
        "--data",
        "iris",
        "--epochs",
        "3",
        "--out",
        ckpt.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(width >= 600 && height >= 400, "{width}x{height}");
    assert!(bytes.len() > 10_000, "a drawn chart, not an empty canvas");
    // An unknown extension or a missing directory fails before training.
    let err = fails(&[
        "train",
        "--arch",
        "mlp:4-8-3:tanh",
        "--data",
        "iris",
        "--out",
        ckpt.to_str().unwrap(),
        "--plot",
        "curves.jpg",
    ]);
    assert!(err.contains("curves.jpg") && err.contains(".png"), "{err}");
    let err = fails(&[
        "train",
        "--arch",
        "mlp:4-8-3:tanh",
        "--data",
        "iris",
        "--out",
        ckpt.to_str().unwrap(),
        "--plot",
        "/no/such/dir/curves.png",
    ]);
    assert!(err.contains("/no/such/dir"), "{err}");
}

#[test]
fn train_eval_info_on_digits() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("digits.safetensors");
    let plot = dir.path().join("curves.svg");
    let c = ckpt.to_str().unwrap();
    let r = ok(&[
        "train",
        "--arch",
        "mlp:64-32-10:tanh",
        "--data",
        "digits",
        "--epochs",
        "6",
        "--out",
        c,
        "--format",
        "json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(r["arch"], "mlp:64-32-10:tanh");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    for text in ["Training curves", "Error", "epoch", "cross-entropy", "test"] {
        assert!(svg.contains(text), "no `{text}` in the SVG");
    }
    assert_eq!(
        r["train_rows"].as_u64().unwrap() + r["test_rows"].as_u64().unwrap(),
        1797
    );
    assert_eq!(r["epochs"].as_array().unwrap().len(), 6);
    let test_error = r["test"]["error"].as_f64().unwrap();
    assert!(test_error < 0.1, "test error {test_error}");

    let info = ok(&["info", c, "--format", "json"]);
    assert_eq!(
        info["parameters"].as_u64().unwrap(),
        64 * 32 + 32 + 32 * 10 + 10
    );
    assert_eq!(info["tensors"].as_array().unwrap().len(), 4);
    assert_eq!(info["metadata"]["terrain.train.data"], "digits");

    // On the data set it was trained on, eval measures the held-out rows by default (the recipe
    // in the checkpoint reproduces the split) and says so; --rows all takes every row.
    let e = ok(&["eval", c, "--data", "digits", "--format", "json"]);
    assert_eq!(e["samples"].as_u64(), r["test_rows"].as_u64());
    assert!(e["rows"].as_str().unwrap().contains("held-out"), "{e}");
    assert_eq!(
        e["loss"].as_f64(),
        r["test"]["loss"].as_f64(),
        "the test rows of training"
    );
    let all = ok(&[
        "eval", c, "--data", "digits", "--rows", "all", "--format", "json",
    ]);
    assert_eq!(all["samples"].as_u64().unwrap(), 1797);
    assert!(all["error"].as_f64().unwrap() < 0.1);

    let table = terrain(&["eval", c, "--data", "digits"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("accuracy") && text.contains("samples"),
        "{text}"
    );
}

#[test]
fn resume_and_regression_with_standardisation() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("boston.safetensors");
    let c = ckpt.to_str().unwrap();
    let args = [
        "train",
        "--arch",
        "mlp:13-16-1:relu",
        "--data",
        "boston",
        "--standardize",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "40",
        "--resume",
        "--out",
        c,
        "--format",
        "json",
    ];
    let r = ok(&args);
    // Boston prices have variance ≈ 84; a fitted network does far better than the mean.
    let test_mse = r["test"]["loss"].as_f64().unwrap();
    assert!(test_mse < 40.0, "test MSE {test_mse}");
    assert!(
        r["test"]["error"].is_null(),
        "no classification error for a regression"
    );
    // Evaluating re-applies the stored standardisation: same loss as reported by train on its data.
    let e = ok(&["eval", c, "--data", "boston", "--format", "json"]);
    assert_eq!(e["standardized"], true);
    assert!(e["loss"].as_f64().unwrap() < 40.0, "{e}");
    // The state file is removed once the run is complete.
    assert!(!dir.path().join("boston.state.safetensors").exists());
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let o = out.to_str().unwrap();
    let err = fails(&[
        "train",
        "--arch",
        "mlp:64-x-10:tanh",
        "--data",
        "digits",
        "--out",
        o,
    ]);
    assert!(
        err.contains("mlp:64-x-10:tanh") && err.contains("`x`"),
        "{err}"
    );
    let err = fails(&[
        "train",
        "--arch",
        "mlp:13-8-1:relu",
        "--data",
        "digits",
        "--out",
        o,
    ]);
    assert!(err.contains("13") && err.contains("64"), "{err}");
    let err = fails(&[
        "train",
        "--arch",
        "mlp:64-10:relu",
        "--data",
        "no-such-set",
        "--out",
        o,
    ]);
    assert!(
        err.contains("no-such-set") && err.contains("digits"),
        "{err}"
    );
    let err = fails(&[
        "train",
        "--arch",
        "mlp:64-10:relu",
        "--data",
        "digits",
        "--lr=-1",
        "--out",
        o,
    ]);
    assert!(err.contains("lr"), "{err}");
    let err = fails(&["eval", "/no/such/file.safetensors", "--data", "digits"]);
    assert!(err.contains("/no/such/file.safetensors"), "{err}");
    std::fs::write(&out, b"garbage").unwrap();
    let err = fails(&["info", o]);
    assert!(
        err.contains("x.safetensors") && err.contains("safetensors"),
        "{err}"
    );
    let err = fails(&["info", o, "--device", "tpu"]);
    assert!(err.contains("tpu"), "{err}");
    let err = fails(&[
        "train",
        "--arch",
        "mlp:64-10:relu",
        "--data",
        "digits",
        "--optimizer",
        "lbfgs",
        "--out",
        o,
    ]);
    assert!(err.contains("lbfgs"), "{err}");
}

#[test]
fn help_is_there_for_every_subcommand() {
    for sub in ["train", "eval", "info"] {
        let out = terrain(&[sub, "--help"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("--format"));
    }
}

/// Same run, same checkpoint bytes; checkpoints get the usual permissions (the umask applied to
/// 0666), and a write that fails leaves no temporary file behind.
#[test]
fn checkpoints_are_deterministic_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out = dir.path().join(name);
        ok(&[
            "train",
            "--arch",
            "mlp:4-5-3:tanh",
            "--data",
            "iris",
            "--epochs",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--format",
            "json",
        ]);
        std::fs::read(&out).unwrap()
    };
    let (a, b) = (run("a.safetensors"), run("b.safetensors"));
    assert_eq!(a, b, "same run, same bytes");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("a.safetensors"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(
            mode & 0o044,
            0,
            "readable by group or others as the umask allows: {mode:o}"
        );
    }
    // --out is a directory: the rename fails, and the temporary file is removed.
    let taken = dir.path().join("taken.safetensors");
    std::fs::create_dir(&taken).unwrap();
    let err = fails(&[
        "train",
        "--arch",
        "mlp:4-5-3:tanh",
        "--data",
        "iris",
        "--epochs",
        "1",
        "--out",
        taken.to_str().unwrap(),
    ]);
    assert!(err.contains("taken.safetensors"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
