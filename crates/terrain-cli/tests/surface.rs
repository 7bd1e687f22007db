//! `terrain surface` end to end: a 2-D surface killed with SIGKILL mid-run and rerun finishes
//! with exactly the values of an uninterrupted run without recomputing finished points; settings
//! changes are refused by name; bad directions and grids are clear errors.

use std::{path::Path, time::Duration};

use terrain_e2e::{fails, ok};

/// Trains a checkpoint on the digits (inputs not standardised, so that checkpoints of different
/// seeds see the same inputs).
pub fn train(dir: &Path, name: &str, arch: &str, seed: &str) -> String {
    let p = dir.join(name);
    let p = p.to_str().unwrap().to_string();
    ok(&[
        "train",
        "--arch",
        arch,
        "--data",
        "digits",
        "--epochs",
        "1",
        "--seed",
        seed,
        "--no-standardize",
        "--out",
        &p,
        "--format",
        "json",
    ]);
    p
}

fn point_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

#[test]
fn a_killed_surface_resumes_to_exactly_the_uninterrupted_values() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train(dir.path(), "cnn.safetensors", "cnn:1x8x8-8-16-10:relu", "1");
    let args = |out: &str| -> Vec<String> {
        [
            "surface",
            &ckpt,
            "--data",
            "digits",
            "--x=-1:1:9",
            "--y=-0.5:0.5:7",
            "--out",
            out,
            "--format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let killed = dir.path().join("killed.csv");
    let results = dir.path().join("killed.points.tsv");
    let a = args(killed.to_str().unwrap());
    terrain_e2e::kill_when(&a, Duration::from_secs(300), "the surface", || {
        point_lines(&results) >= 5
    });
    let before = point_lines(&results);
    assert!(before < 63, "killed after all points");
    assert!(!killed.exists(), "killed before the table was written");

    // Other settings are refused, naming them, and the results file is kept.
    let mut other = a.clone();
    other[4] = "--x=-1:1:11".into();
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    let err = fails(&other);
    assert!(
        err.contains("x: saved -1:1:9, now -1:1:11") && err.contains("killed.points.tsv"),
        "{err}"
    );
    let mut other = a.clone();
    other.push("--seed".into());
    other.push("5".into());
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    let err = fails(&other);
    assert!(err.contains("direction 1: saved"), "{err}");

    // The same command resumes: only the missing points are computed.
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let resumed = ok(&a);
    let after_kill = before; // a line cut short by the kill is not counted, and is dropped
    assert_eq!(resumed["resumed"].as_u64().unwrap() as usize, after_kill);
    assert_eq!(
        resumed["computed"].as_u64().unwrap() as usize,
        63 - after_kill
    );
    assert_eq!(point_lines(&results), 63, "each point exactly once");

    let fresh = dir.path().join("fresh.csv");
    let b = args(fresh.to_str().unwrap());
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let uninterrupted = ok(&b);
    assert_eq!(uninterrupted["resumed"], 0);
    for key in ["x", "y", "loss", "error"] {
        assert_eq!(resumed[key], uninterrupted[key], "{key}");
    }
    assert_eq!(resumed["loss"].as_array().unwrap().len(), 7);
    assert_eq!(resumed["loss"][0].as_array().unwrap().len(), 9);
    assert_eq!(
        std::fs::read(&killed).unwrap(),
        std::fs::read(&fresh).unwrap(),
        "tables"
    );

    // A finished surface reruns from its file without computing anything.
    let again = ok(&a);
    assert_eq!(
        (again["resumed"].as_u64(), again["computed"].as_u64()),
        (Some(63), Some(0))
    );
}

#[test]
fn surfaces_through_checkpoints_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let a = train(dir.path(), "a.safetensors", "mlp:64-16-10:tanh", "1");
    let b = train(dir.path(), "b.safetensors", "mlp:64-16-10:tanh", "2");
    let other = train(dir.path(), "other.safetensors", "mlp:64-8-10:tanh", "3");
    let out = dir.path().join("line.csv");
    let o = out.to_str().unwrap();
    let v = ok(&[
        "surface",
        &a,
        "--data",
        "digits",
        "--to",
        &b,
        "--x=0:1:3",
        "--out",
        o,
        "--format",
        "json",
    ]);
    // The ends of the line are the two checkpoints themselves (up to f32 rounding of θ_A + (θ_B − θ_A)).
    let eval = |c: &str| {
        ok(&[
            "eval", c, "--data", "digits", "--rows", "all", "--format", "json",
        ])
    };
    let (la, lb) = (
        eval(&a)["loss"].as_f64().unwrap(),
        eval(&b)["loss"].as_f64().unwrap(),
    );
    let loss = v["loss"].as_array().unwrap();
    assert!(
        (loss[0].as_f64().unwrap() - la).abs() < 1e-5 * la,
        "{loss:?} vs {la}"
    );
    assert!(
        (loss[2].as_f64().unwrap() - lb).abs() < 1e-5 * lb,
        "{loss:?} vs {lb}"
    );
    assert!(Path::new(v["plot"].as_str().unwrap()).exists());

    let base = |extra: &[&str]| -> String {
        let mut args = vec!["surface", a.as_str(), "--data", "digits", "--out", o];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let e = base(&["--x=1:-1:0"]);
    assert!(
        e.contains("1:-1:0") && e.contains("at least 1 point"),
        "{e}"
    );
    let e = base(&["--x=1:-1:5"]);
    assert!(
        e.contains("1:-1:5") && e.contains("MIN must be smaller"),
        "{e}"
    );
    let e = base(&["--direction", "sideways"]);
    assert!(
        e.contains("sideways") && e.contains("random, hessian or a .safetensors file"),
        "{e}"
    );
    let e = base(&["--to", &other, "--x=0:1:3"]);
    assert!(
        e.contains("mlp:64-8-10:tanh") && e.contains("mlp:64-16-10:tanh"),
        "{e}"
    );
    let e = base(&["--to", &b, "--y=0:1:3"]);
    assert!(e.contains("--to given 1 time(s)"), "{e}");
    // A direction file with another model's tensors: the wrong shape is named.
    let e = base(&["--direction", &other]);
    assert!(
        e.contains("`0.bias`") && e.contains("shape [8]") && e.contains("[16]"),
        "{e}"
    );
    let e = base(&["--direction", "missing.safetensors"]);
    assert!(e.contains("missing.safetensors"), "{e}");
}
