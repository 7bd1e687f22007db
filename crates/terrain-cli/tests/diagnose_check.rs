//! End to end: `terrain diagnose CKPT...` (and its alias `terrain diagnose check`) on two
//! zoo-like checkpoints (an MLP on digits, two seeds) measures the same feature row as
//! `terrain metrics --connect linear`, walks each shipped tree exactly as the MD tree's rules
//! say (recomputed here from the tree files), and draws the trees; on one checkpoint it walks
//! the shipped single-checkpoint trees and says so; it refuses a full tree given one
//! checkpoint (naming the two-seed feature), a tree file for other features and a missing file.

use std::path::Path;

use terrain_e2e::{fails, ok, train_checkpoint};

fn train(dir: &Path, name: &str, seed: &str) -> String {
    let extra = ["--epochs", "3", "--seed", seed];
    let p = train_checkpoint(dir, name, "mlp:64-8-10:relu", "digits", &extra);
    p.to_str().unwrap().to_string()
}

fn tree_file(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../terrain-diagnose/trees")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn check_measures_walks_the_shipped_trees_draws_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let a = train(dir.path(), "a.safetensors", "1");
    let b = train(dir.path(), "b.safetensors", "2");
    let plot = dir.path().join("tree.png");
    let v = ok(&[
        "diagnose",
        &a,
        &b,
        "--data",
        "digits",
        "--plot",
        plot.to_str().unwrap(),
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
    for k in [
        "train_error",
        "train_loss",
        "test_error",
        "hessian_e",
        "hessian_t",
        "mode_connectivity",
        "mode_connectivity_peak",
        "CKA",
    ] {
        let (x, y) = (
            v["features"][k].as_f64().unwrap(),
            m["row"][k].as_f64().unwrap(),
        );
        assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()), "{k}: {x} vs {y}");
    }
    let f = |k: &str| v["features"][k].as_f64().unwrap();
    let ds = v["diagnoses"].as_array().unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(v["single_checkpoint"], false);
    assert!(v.get("note").is_none());
    assert_eq!(ds[0]["tree"], "temp");
    // The temp tree by methods.md §2.5's rules, on the shipped thresholds.
    let temp = tree_file("temp.json");
    let t: Vec<f64> = temp["data"]["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let (te, mc, ht) = (
        f("train_error"),
        f("mode_connectivity_peak"),
        f("hessian_t"),
    );
    let (label, steps) = if te <= t[0] {
        ("small", 1)
    } else if mc <= t[1] {
        (if ht <= t[2] { "large" } else { "small" }, 3)
    } else {
        ("large", 2)
    };
    let d = &ds[0];
    assert_eq!(d["question"], "temp");
    assert_eq!(d["label"], label);
    let ev = d["evidence"].as_array().unwrap();
    assert_eq!(ev.len(), steps);
    assert_eq!(ev[0]["metric"], "train_error");
    assert_eq!(ev[0]["value"].as_f64().unwrap(), te);
    assert_eq!(ev[0]["threshold"].as_f64().unwrap(), t[0]);
    assert_eq!(ev[0]["direction"], if te <= t[0] { "<=" } else { ">" });
    assert!(d["advice"].as_str().unwrap().contains("batch size"));
    // The width tree: train_error, then mc_peak against slot 1 or 2.
    let width = tree_file("width.json");
    let w: Vec<f64> = width["data"]["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let wt = if te <= w[0] { w[1] } else { w[2] };
    assert_eq!(ds[1]["label"], if mc <= wt { "width" } else { "batch" });
    assert_eq!(ds[1]["evidence"][1]["threshold"].as_f64().unwrap(), wt);
    for q in ["temp", "width", "data"] {
        let p = dir.path().join(format!("tree-{q}.png"));
        assert!(std::fs::metadata(&p).unwrap().len() > 1000, "{q} picture");
    }

    // One checkpoint: the single-checkpoint trees, said so, walked by hand.
    let single_plot = dir.path().join("single.svg");
    let one = ok(&[
        "diagnose",
        &a,
        "--data",
        "digits",
        "--plot",
        single_plot.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(one["single_checkpoint"], true);
    assert!(
        one["note"].as_str().unwrap().contains("two or more"),
        "{one}"
    );
    // The features of one model (not the two seeds' means above).
    let g = |k: &str| one["features"][k].as_f64().unwrap();
    let (te, ht, he) = (g("train_error"), g("hessian_t"), g("hessian_e"));
    assert!(one["features"]["mode_connectivity_peak"].is_null());
    let ts = |name: &str| -> Vec<f64> {
        tree_file(name)["data"]["thresholds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (t, w, d) = (
        ts("temp-single.json"),
        ts("width-single.json"),
        ts("data-single.json"),
    );
    let temp_label = if te <= t[0] {
        "small"
    } else if ht <= t[1] || he <= t[2] {
        "large"
    } else {
        "small"
    };
    let wt = if te <= w[0] { w[1] } else { w[2] };
    let dt = if te <= d[0] { d[1] } else { d[2] };
    let ds1 = one["diagnoses"].as_array().unwrap();
    let temp_steps = if te <= t[0] {
        1
    } else if ht <= t[1] {
        2
    } else {
        3
    };
    let want = [
        ("temp-single", temp_label, temp_steps),
        ("width-single", if he <= wt { "batch" } else { "width" }, 2),
        ("data-single", if ht <= dt { "data" } else { "batch" }, 2),
    ];
    for (d, (tree, label, steps)) in ds1.iter().zip(want) {
        assert_eq!(d["tree"], tree);
        assert_eq!(d["label"], label, "{tree}");
        let ev = d["evidence"].as_array().unwrap();
        assert_eq!(ev[0]["metric"], "train_error");
        assert_eq!(ev[0]["value"].as_f64().unwrap(), te);
        assert_eq!(ev.len(), steps, "{tree}");
        assert!(d["advice"].as_str().unwrap().len() > 10);
    }
    for q in ["temp", "width", "data"] {
        let p = dir.path().join(format!("single-{q}.svg"));
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("hessian"),
            "{q} picture"
        );
    }
    // The table output says so too.
    let text = terrain_e2e::terrain(&["diagnose", &a, "--data", "digits"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("two or more seed checkpoints"), "{text}");
    assert!(text.contains("temp-single"), "{text}");
    // Each diagnosis as a readable block: verdict, what the tree was fitted on, numbered decisions.
    assert!(text.contains("\ndiagnoses:\n  temp: "), "{text}");
    assert!(
        text.contains("rows of crates/terrain-diagnose/trees/zoo_normal.csv"),
        "{text}"
    );
    assert!(text.contains("    1. train_error = "), "{text}");
    assert!(
        !text.contains("{\"question\""),
        "no JSON lines in the table: {text}"
    );
    // A full tree given one checkpoint: refused, naming the two-seed feature.
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../terrain-diagnose/trees/temp.json");
    let e = fails(&[
        "diagnose",
        &a,
        "--data",
        "digits",
        "--tree",
        full.to_str().unwrap(),
    ]);
    assert!(e.contains("1 checkpoint given"), "{e}");
    assert!(e.contains("mode_connectivity_peak"), "{e}");
    assert!(e.contains("two or more checkpoints"), "{e}");
    // A single-checkpoint tree given two checkpoints is fine (the alias `check`).
    let single =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../terrain-diagnose/trees/temp-single.json");
    let two = ok(&[
        "diagnose",
        "check",
        &a,
        &b,
        "--data",
        "digits",
        "--tree",
        single.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(two["diagnoses"][0]["tree"], "temp-single");
    assert_eq!(two["single_checkpoint"], false);
    let e2 = &two["diagnoses"][0]["evidence"][0];
    assert_eq!(e2["value"].as_f64().unwrap(), f("train_error"));
    // A tree file for other features.
    let mut bad = temp.clone();
    bad["data"]["features"] = serde_json::json!(["train_error", "CKA", "test_loss"]);
    let bad_path = dir.path().join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let e = fails(&[
        "diagnose",
        "check",
        &a,
        &b,
        "--data",
        "digits",
        "--tree",
        bad_path.to_str().unwrap(),
    ]);
    assert!(e.contains("bad.json"), "{e}");
    assert!(e.contains("test_loss"), "{e}");
    // A missing checkpoint.
    let missing = dir.path().join("nope.safetensors");
    let e = fails(&[
        "diagnose",
        "check",
        &a,
        missing.to_str().unwrap(),
        "--data",
        "digits",
    ]);
    assert!(e.contains("nope.safetensors"), "{e}");
}
