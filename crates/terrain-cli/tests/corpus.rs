//! A corpus of bad input, generated here: corrupt checkpoints, corrupt data files, malformed
//! architecture specs and the extremes of every numeric flag, fed to the `terrain` binary. Each
//! case must end in a clear error that names the culprit (or in success where the input is
//! valid): never a panic, never an allocation abort.

use std::{collections::BTreeMap, path::Path, process::Output};

use candle_core::{DType, Device, Tensor};
use terrain_e2e::terrain;
use terrain_model::{Model, checkpoint};

/// What a case expects.
enum Expect {
    /// Failure whose stderr contains every needle (case-insensitively).
    Fails(Vec<String>),
    /// Success.
    Ok,
}

struct Case {
    name: String,
    args: Vec<String>,
    expect: Expect,
}

fn case<S: AsRef<str>>(name: &str, args: &[S], needles: &[&str]) -> Case {
    Case {
        name: name.into(),
        args: args.iter().map(|s| s.as_ref().to_string()).collect(),
        expect: Expect::Fails(needles.iter().map(|s| s.to_string()).collect()),
    }
}

fn valid<S: AsRef<str>>(name: &str, args: &[S]) -> Case {
    Case {
        name: name.into(),
        args: args.iter().map(|s| s.as_ref().to_string()).collect(),
        expect: Expect::Ok,
    }
}

fn check(c: &Case, out: &Output) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    if stderr.contains("panicked") || code == Some(101) {
        return Err(format!("panicked:\n{stderr}"));
    }
    if code.is_none() || code == Some(134) || stderr.contains("memory allocation of") {
        return Err(format!("aborted or killed ({:?}):\n{stderr}", out.status));
    }
    match &c.expect {
        Expect::Ok if out.status.success() => Ok(()),
        Expect::Ok => Err(format!("should succeed:\n{stderr}")),
        Expect::Fails(_) if out.status.success() => Err("should fail, but succeeded".into()),
        Expect::Fails(needles) => {
            let lower = stderr.to_lowercase();
            if !lower.starts_with("error") {
                return Err(format!("no `error` line:\n{stderr}"));
            }
            match needles.iter().find(|n| !lower.contains(&n.to_lowercase())) {
                Some(n) => Err(format!("does not name `{n}`:\n{stderr}")),
                None => Ok(()),
            }
        }
    }
}

fn save(path: &Path, tensors: &[(String, Tensor)], meta: &[(&str, &str)]) {
    let meta: BTreeMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    checkpoint::write_file(path, tensors, &meta).unwrap();
}

fn f32s(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
}

/// The tensors of a valid `mlp:4-3:relu` (one Linear layer).
fn linear_tensors() -> Vec<(String, Tensor)> {
    vec![
        ("0.weight".into(), f32s(&[0.1; 12], &[3, 4])),
        ("0.bias".into(), f32s(&[0.0; 3], &[3])),
    ]
}

#[test]
fn no_input_panics_or_aborts_and_every_error_names_its_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let arch_meta = r#"{"kind":"mlp","input":4,"hidden":[],"output":3,"activation":"relu"}"#;

    // A valid checkpoint to measure, and its bytes to corrupt.
    let good = p("good.safetensors");
    let model = Model::new("mlp:4-3:relu".parse().unwrap(), DType::F32, &Device::Cpu, 0).unwrap();
    checkpoint::save(&model, Path::new(&good), &BTreeMap::new()).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    // Corrupt checkpoints.
    let raw = |name: &str, content: &[u8]| {
        let path = p(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let empty = raw("empty.safetensors", b"");
    let tiny = raw("tiny.safetensors", b"abc");
    let huge_header = raw("huge-header.safetensors", &u64::MAX.to_le_bytes());
    let mut beyond = 1_000_000u64.to_le_bytes().to_vec();
    beyond.extend_from_slice(b"{}");
    let beyond = raw("header-beyond.safetensors", &beyond);
    let mut not_json = 8u64.to_le_bytes().to_vec();
    not_json.extend_from_slice(b"not json");
    let not_json = raw("not-json.safetensors", &not_json);
    let truncated = raw("truncated.safetensors", &bytes[..bytes.len() - 7]);
    let mut offsets = bytes.clone();
    if let Some(i) = String::from_utf8_lossy(&offsets).find("\"data_offsets\":[0,") {
        offsets[i + 17] = b'9';
    }
    let offsets = raw("bad-offsets.safetensors", &offsets);
    let mk = |name: &str, tensors: Vec<(String, Tensor)>, meta: &[(&str, &str)]| {
        let path = p(name);
        save(Path::new(&path), &tensors, meta);
        path
    };
    let arch = [("terrain.arch", arch_meta)];
    let mut t = linear_tensors();
    t[0].1 = f32s(
        &[
            0.1,
            0.1,
            f32::NAN,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
        ],
        &[3, 4],
    );
    let nan = mk("nan.safetensors", t, &arch);
    let mut t = linear_tensors();
    t[1].1 = f32s(&[f32::INFINITY, 0.0, 0.0], &[3]);
    let inf = mk("inf.safetensors", t, &arch);
    let mut t = linear_tensors();
    t[0].1 = f32s(&[0.1; 8], &[2, 4]);
    let shape = mk("shape.safetensors", t, &arch);
    let missing = mk("missing.safetensors", linear_tensors()[..1].to_vec(), &arch);
    let mut t = linear_tensors();
    t.push(("9.weight".into(), f32s(&[1.0], &[1])));
    let extra = mk("extra.safetensors", t, &arch);
    let mut t = linear_tensors();
    t[1].1 = Tensor::new(&[1u32, 2, 3], &Device::Cpu).unwrap();
    let int = mk("int.safetensors", t, &arch);
    let garbage_arch = mk(
        "garbage-arch.safetensors",
        linear_tensors(),
        &[("terrain.arch", "{oops")],
    );
    let other_arch = mk(
        "other-arch.safetensors",
        linear_tensors(),
        &[(
            "terrain.arch",
            r#"{"kind":"resnet18","input":[3,32,32],"width":2,"output":10}"#,
        )],
    );
    let future = mk(
        "future.safetensors",
        linear_tensors(),
        &[("terrain.arch", arch_meta), ("terrain.format", "999")],
    );
    let bad_std = mk(
        "bad-std.safetensors",
        linear_tensors(),
        &[
            ("terrain.arch", arch_meta),
            (
                "terrain.data.standardize",
                r#"{"mean":[0],"std":[1],"shape":[4]}"#,
            ),
        ],
    );
    let no_arch = mk("no-arch.safetensors", linear_tensors(), &[]);
    let directory = p("a-directory.safetensors");
    std::fs::create_dir(&directory).unwrap();

    // Corrupt data files.
    let data = |name: &str, tensors: Vec<(&str, Tensor)>| {
        let path = p(name);
        let t: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        save(Path::new(&path), &t, &[]);
        path
    };
    let x4 = f32s(&[0.5; 8], &[2, 4]);
    let y2 = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let no_x = data("no-x.safetensors", vec![("y", y2.clone())]);
    let no_y = data("no-y.safetensors", vec![("x", x4.clone())]);
    let short_y = data(
        "short-y.safetensors",
        vec![
            ("x", x4.clone()),
            ("y", Tensor::new(&[0u32], &Device::Cpu).unwrap()),
        ],
    );
    let nan_x = data(
        "nan-x.safetensors",
        vec![
            (
                "x",
                f32s(&[0.5, f32::NAN, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], &[2, 4]),
            ),
            ("y", y2.clone()),
        ],
    );
    let inf_y = data(
        "inf-y.safetensors",
        vec![("x", x4.clone()), ("y", f32s(&[1.0, f32::INFINITY], &[2]))],
    );
    let int_x = data(
        "int-x.safetensors",
        vec![
            (
                "x",
                Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 7, 8]], &Device::Cpu).unwrap(),
            ),
            ("y", y2.clone()),
        ],
    );
    let negative_label = data(
        "negative-label.safetensors",
        vec![
            ("x", x4.clone()),
            ("y", Tensor::new(&[0i64, -1], &Device::Cpu).unwrap()),
        ],
    );
    let scalar_x = data(
        "scalar-x.safetensors",
        vec![
            ("x", Tensor::new(3f32, &Device::Cpu).unwrap()),
            ("y", y2.clone()),
        ],
    );
    let good_data = data(
        "good-data.safetensors",
        vec![("x", x4.clone()), ("y", y2.clone())],
    );
    let not_data = raw(
        "not-data.safetensors",
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"x\":1}        ",
    );

    let out = p("out.safetensors");
    let o = out.as_str();
    let train = |extra: &[&str]| -> Vec<String> {
        let mut a = vec![
            "train",
            "--arch",
            "mlp:4-3:relu",
            "--data",
            "iris",
            "--epochs",
            "1",
            "--out",
            o,
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect()
    };
    let hessian = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["hessian", good.as_str(), "--data", "iris"];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect()
    };
    let max = u64::MAX.to_string();
    let m = max.as_str();
    let mut cases = Vec::new();

    // 1. Checkpoints: `info` and `eval` on each corrupt file.
    for (name, path, needle) in [
        ("empty file", &empty, "empty.safetensors"),
        ("three bytes", &tiny, "tiny.safetensors"),
        ("header length u64::MAX", &huge_header, "huge-header"),
        ("header beyond the file", &beyond, "header-beyond"),
        ("header not JSON", &not_json, "not-json"),
        ("truncated data", &truncated, "truncated"),
        ("offsets out of range", &offsets, "bad-offsets"),
        ("NaN weight", &nan, "0.weight"),
        ("infinite bias", &inf, "0.bias"),
        ("wrong shape", &shape, "0.weight"),
        ("missing tensor", &missing, "0.bias"),
        ("extra tensor", &extra, "9.weight"),
        ("integer tensor", &int, "0.bias"),
        ("garbage architecture", &garbage_arch, "terrain.arch"),
        ("other architecture", &other_arch, "resnet18"),
        ("future format", &future, "999"),
        ("no architecture", &no_arch, "no architecture"),
        ("a directory", &directory, "a-directory"),
    ] {
        cases.push(case(&format!("info: {name}"), &["info", path], &[needle]));
        cases.push(case(
            &format!("eval: {name}"),
            &["eval", path, "--data", "iris"],
            &[needle],
        ));
    }
    cases.push(case(
        "eval: malformed standardisation",
        &["eval", &bad_std, "--data", "iris"],
        &["terrain.data.standardize"],
    ));
    cases.push(case(
        "info: no such file",
        &["info", &p("nope.safetensors")],
        &["nope.safetensors"],
    ));
    cases.push(valid(
        "info: a valid checkpoint",
        &["info", &good, "--format", "json"],
    ));

    // 2. Data files.
    for (name, path, needle) in [
        ("no x", &no_x, "`x`"),
        ("no y", &no_y, "`y`"),
        ("short y", &short_y, "y"),
        ("NaN input", &nan_x, "x"),
        ("infinite target", &inf_y, "y"),
        ("integer inputs", &int_x, "x"),
        ("negative label", &negative_label, "-1"),
        ("scalar x", &scalar_x, "x"),
        ("not a data file", &not_data, "not-data"),
        ("empty file", &empty, "empty.safetensors"),
    ] {
        let a = vec![
            "train",
            "--arch",
            "mlp:4-3:relu",
            "--data",
            path.as_str(),
            "--holdout",
            "0",
            "--epochs",
            "1",
            "--out",
            o,
        ];
        cases.push(case(&format!("data: {name}"), &a, &[needle]));
    }
    cases.push(valid(
        "data: a valid file",
        &[
            "train",
            "--arch",
            "mlp:4-2:relu",
            "--data",
            &good_data,
            "--holdout",
            "0",
            "--epochs",
            "1",
            "--out",
            o,
        ],
    ));
    cases.push(case(
        "data: --out is the data file",
        &[
            "train",
            "--arch",
            "mlp:4-2:relu",
            "--data",
            &good_data,
            "--holdout",
            "0",
            "--out",
            &good_data,
        ],
        &["good-data.safetensors", "data"],
    ));

    // 3. Architecture specs.
    for (spec, needle) in [
        ("", "architecture"),
        ("mlp", "mlp"),
        ("mlp:4-3", "mlp:4-3"),
        ("mlp:4-0-3:relu", "`0`"),
        ("mlp:4-99999999999-3:relu", "would need"),
        ("mlp:4-99999999999999999999-3:relu", "99999999999999999999"),
        (
            "mlp:18446744073709551615-18446744073709551615-3:relu",
            "address",
        ),
        ("mlp:4-3:swish", "swish"),
        ("mlp:4-3:relu:dropout", "dropout"),
        ("mlp:4-3:relu:bn=nan", "momentum"),
        ("cnn:1x7x7-8-10:relu", "7x7"),
        ("cnn:1x8x8-8:relu", "cnn"),
        ("cnn:0x8x8-8-3:relu", "positive"),
        ("cnn:1x65536x65536-64-3:relu", "would need"),
        ("resnet18:3x32x32:w0:10", "width"),
        ("resnet18:3x4x4:w2:10", "8x8"),
        ("resnet18:3x32x32:w2:10:bn=7", "momentum"),
        ("transformer:12", "transformer"),
        ("{", "json"),
        ("{\"kind\":\"mlp\"}", "json"),
    ] {
        let a = vec![
            "train", "--arch", spec, "--data", "iris", "--epochs", "1", "--out", o,
        ];
        cases.push(case(&format!("arch `{spec}`"), &a, &[needle]));
    }
    cases.push(valid("arch: a valid spec", &train(&[])));

    // 4. Extreme flags of `train`.
    for (flags, needle) in [
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--epochs", m], "epochs"),
        (vec!["--epochs", "1e18"], "epochs"),
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--lr", "0"], "--lr"),
        (vec!["--lr", "-1"], "lr"),
        (vec!["--lr", "nan"], "lr"),
        (vec!["--lr", "inf"], "lr"),
        (vec!["--lr", "1e308"], "lr"),
        (vec!["--holdout", "-0.5"], "--holdout"),
        (vec!["--holdout", "1"], "holdout"),
        (vec!["--holdout", "nan"], "holdout"),
        (vec!["--subset", "2"], "subset"),
        (vec!["--subset", "0"], "subset"),
        (vec!["--subset", "nan"], "subset"),
        (vec!["--label-noise", "1.5"], "--label-noise"),
        (vec!["--label-noise", "-0.1"], "label_noise"),
        (vec!["--mixup", "0"], "--mixup"),
        (vec!["--mixup", "nan"], "mixup"),
        (vec!["--momentum", "1"], "momentum"),
        (vec!["--momentum", "nan"], "momentum"),
        (vec!["--weight-decay", "-1"], "--weight-decay"),
        (vec!["--weight-decay", "inf"], "weight_decay"),
        (vec!["--lr-decay", "step:0:0.5"], "every"),
        (vec!["--lr-decay", "step:2:nan"], "gamma"),
        (vec!["--lr-decay", "cosine"], "cosine"),
        (vec!["--optimizer", "rmsprop"], "rmsprop"),
        (vec!["--optimizer", "adam:eps=0"], "eps"),
        (vec!["--dtype", "f16"], "f16"),
        (vec!["--threads", "0"], "threads"),
        (vec!["--seed", "-1"], "seed"),
        (vec!["--seed", "18446744073709551616"], "seed"),
        (vec!["--device", "tpu"], "tpu"),
        (vec!["--device", "cuda:x"], "cuda:x"),
        (vec!["--plot", "curves.jpg"], "curves.jpg"),
        (vec!["--format", "xml"], "xml"),
    ] {
        cases.push(case(
            &format!("train {}", flags.join(" ")),
            &train(&flags),
            &[needle],
        ));
    }
    for (src, needle) in [
        ("synthetic:spiral:n=99999999999999", "would need"),
        ("synthetic:spiral:n=0", "n"),
        ("synthetic:spiral:noise=2", "noise"),
        ("synthetic:moons", "moons"),
        ("no-such-data", "no-such-data"),
    ] {
        let a = vec![
            "train",
            "--arch",
            "mlp:2-2:relu",
            "--data",
            src,
            "--epochs",
            "1",
            "--out",
            o,
        ];
        cases.push(case(&format!("data `{src}`"), &a, &[needle]));
    }
    cases.push(valid(
        "train --batch-size u64::MAX",
        &train(&["--batch-size", m]),
    ));

    // 5. Extreme flags of `hessian`.
    for (flags, needle) in [
        (vec!["--top-k", "0"], "--top-k"),
        (vec!["--top-k", m], "top"),
        (vec!["--max-iter", "0"], "--max-iter"),
        (vec!["--max-iter", m], "max_iter"),
        (vec!["--tol", "nan"], "tol"),
        (vec!["--tol", "-1"], "tol"),
        (vec!["--trace", "--trace-matvecs", "0"], "--trace-matvecs"),
        (vec!["--trace", "--trace-matvecs", m], "--trace-matvecs"),
        (
            vec![
                "--trace",
                "--trace-method",
                "hutch++",
                "--trace-matvecs",
                "1000000000000",
            ],
            "matvecs",
        ),
        (vec!["--density", "--density-bins", "1"], "--density-bins"),
        (
            vec!["--density", "--density-bins", "100000000000"],
            "memory",
        ),
        (
            vec!["--density", "--density-runs", "100000000000"],
            "--density-runs",
        ),
        (vec!["--density", "--density-iter", "0"], "--density-iter"),
        (vec!["--diag", "bogus"], "bogus"),
        (
            vec!["--diag", "cp", "--diag-samples", "0"],
            "--diag-samples",
        ),
        (vec!["--diag", "cp", "--diag-samples", m], "samples"),
        (
            vec![
                "--diag",
                "exact",
                "--exact-limit",
                "3",
                "--hvp",
                "double-backward",
            ],
            "--exact-limit",
        ),
        (vec!["--hvp", "bogus"], "bogus"),
        (vec!["--diag", "exact", "--diag-out", "d.txt"], "d.txt"),
        (vec!["--diag-out", "d.safetensors"], "--diag-out"),
        (vec!["--diag-coverage", "bogus", "--diag", "cp"], "bogus"),
        (vec!["--samples", "0"], "--samples"),
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--param", "nomatch"], "nomatch"),
        (vec!["--dtype", "f16"], "f16"),
        (vec!["--loss", "hinge"], "hinge"),
        (
            vec!["--density", "--plot", &p("no/such/dir/d.png")],
            "no/such/dir",
        ),
    ] {
        cases.push(case(
            &format!("hessian {}", flags.join(" ")),
            &hessian(&flags),
            &[needle],
        ));
    }
    cases.push(valid(
        "hessian --samples u64::MAX",
        &hessian(&["--samples", m, "--top-k", "1"]),
    ));
    cases.push(valid(
        "hessian --batch-size u64::MAX",
        &hessian(&["--batch-size", m, "--top-k", "1"]),
    ));
    // `hessian --state` given a file that is no solver state: each named, none overwritten.
    for (name, path, needle) in [
        ("empty file", &empty, "empty.safetensors"),
        ("three bytes", &tiny, "tiny.safetensors"),
        ("header length u64::MAX", &huge_header, "huge-header"),
        ("header not JSON", &not_json, "not-json"),
        ("truncated data", &truncated, "truncated"),
        ("a checkpoint", &good, "not an eigenvalue-solver state"),
        ("a directory", &directory, "a-directory"),
    ] {
        cases.push(case(
            &format!("hessian --state: {name}"),
            &hessian(&["--top-k", "1", "--state", path]),
            &[needle, "--state"],
        ));
    }
    for v in ["nan", "1e300", "inf"] {
        cases.push(case(
            &format!("hessian --state-interval {v}"),
            &hessian(&[
                "--top-k",
                "1",
                "--state",
                &p("s.safetensors"),
                "--state-interval",
                v,
            ]),
            &["--state-interval"],
        ));
    }
    cases.push(case(
        "hessian --state without eigenvalues",
        &hessian(&["--trace", "--state", &p("s.safetensors")]),
        &["--top-k"],
    ));

    // 6. `eval`.
    cases.push(case(
        "eval --batch-size 0",
        &["eval", good.as_str(), "--data", "iris", "--batch-size", "0"],
        &["batch_size"],
    ));
    cases.push(valid(
        "eval --batch-size u64::MAX",
        &["eval", good.as_str(), "--data", "iris", "--batch-size", m],
    ));
    cases.push(case(
        "eval --rows test without a recipe",
        &["eval", good.as_str(), "--data", "iris", "--rows", "test"],
        &["recipe"],
    ));
    cases.push(valid(
        "hessian --seed u64::MAX",
        &hessian(&["--seed", m, "--top-k", "1"]),
    ));

    // 7. The landscape commands (terrain-metrics).
    let table = p("surface.csv");
    let pic = p("landscape.png");
    let g = good.as_str();
    let surface = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["surface", g, "--data", "iris", "--out", table.as_str()];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect()
    };
    for (extra, needle) in [
        (vec!["--x=1:-1:0"], "1:-1:0"),
        (vec!["--x=1:-1:5"], "MIN must be smaller"),
        (vec!["--x=0:1:1000000000000"], "too many points"),
        (vec!["--x=0:1:3", "--y=0:nan:3"], "finite"),
        (vec!["--x=0:1:3", "--batch-size", "0"], "--batch-size"),
        (vec!["--x=0:1:3", "--direction", "nope"], "nope"),
        (
            vec![
                "--x=0:1:3",
                "--direction",
                "random",
                "--direction",
                "random",
            ],
            "at most 1",
        ),
    ] {
        cases.push(case(
            &format!("surface {}", extra.join(" ")),
            &surface(&extra),
            &[needle],
        ));
    }
    cases.push(valid(
        "surface --batch-size u64::MAX",
        &surface(&["--x=0:1:3", "--batch-size", m]),
    ));
    let two = |cmd: &str, extra: &[&str]| -> Vec<String> {
        let mut a = vec![cmd, g, g, "--data", "iris"];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect()
    };
    for (cmd, extra, needle) in [
        ("connect", vec!["--points", "0"], "--points"),
        (
            "connect",
            vec!["--method", "bezier", "--epochs", "0"],
            "--epochs",
        ),
        ("connect", vec!["--method", "bezier", "--lr", "nan"], "--lr"),
        (
            "connect",
            vec!["--method", "bezier", "--momentum", "1"],
            "--momentum",
        ),
        ("cka", vec!["--samples", "0"], "--samples"),
        ("cka", vec!["--mixup-alpha", "-1"], "--mixup-alpha"),
        ("metrics", vec!["--rho", "0"], "--rho"),
        (
            "metrics",
            vec!["--hessian-samples", "0", "--connect", "linear"],
            "--hessian-samples",
        ),
    ] {
        let mut extra = extra;
        if cmd == "connect" {
            extra.extend(["--plot", pic.as_str()]);
        }
        cases.push(case(
            &format!("{cmd} {}", extra.join(" ")),
            &two(cmd, &extra),
            &[needle],
        ));
    }
    cases.push(case(
        "cka with one checkpoint",
        &["cka", g, "--data", "iris"],
        &["at least 2"],
    ));
    cases.push(case(
        "sensitivity --batch-size 0",
        &[
            "sensitivity",
            g,
            "--data",
            "iris",
            "--batch-size",
            "0",
            "--plot",
            pic.as_str(),
        ],
        &["--batch-size"],
    ));
    cases.push(case(
        "sensitivity --retrain 0",
        &[
            "sensitivity",
            "--retrain",
            "0",
            "--arch",
            "mlp:4-3:tanh",
            "--data",
            "iris",
            "--plot",
            pic.as_str(),
        ],
        &["--retrain"],
    ));

    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            check(c, &terrain(&args))
                .err()
                .map(|why| format!("[{}] terrain {}\n  {why}", c.name, c.args.join(" ")))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
