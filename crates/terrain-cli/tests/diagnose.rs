//! End-to-end tests of `terrain diagnose` on the MD tree paper's public metric tables (the
//! copies shipped in `crates/terrain-diagnose/data/mdtree/`).

use std::path::Path;

use terrain_e2e::{fails, ok, terrain};

fn tables() -> (String, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../terrain-diagnose/data/mdtree");
    let (clean, noisy) = terrain_diagnose::table::PAPER_TABLES;
    (
        dir.join(clean).display().to_string(),
        dir.join(noisy).display().to_string(),
    )
}

#[test]
fn evaluate_reproduces_case_1_as_json() {
    let (clean, noisy) = tables();
    let v = ok(&[
        "diagnose",
        "evaluate",
        "--train-table",
        &clean,
        "--test-table",
        &noisy,
        "--question",
        "temp",
        "--method",
        "mdtree",
        "--sample",
        "random:8",
        "--seeds",
        "42,90,38,18,72",
        "--format",
        "json",
    ]);
    let acc = v["accuracy"].as_f64().unwrap();
    assert!((acc - 87.705_128).abs() < 1e-4, "{v}");
    assert_eq!(v["n_test"], 1560);
    let per_seed: Vec<f64> = v["per_seed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(per_seed.len(), 5);
    assert!(
        (per_seed[0] - 100.0 * 1413.0 / 1560.0).abs() < 1e-9,
        "{per_seed:?}"
    );
    let th = v["thresholds"].as_array().unwrap();
    assert_eq!(th.len(), 5);
    assert_eq!(th[0].as_array().unwrap().len(), 3);
}

#[test]
fn evaluate_baselines_and_other_questions() {
    let (clean, noisy) = tables();
    let run = |q: &str, m: &str, s: &str| {
        ok(&[
            "diagnose",
            "evaluate",
            "--train-table",
            &clean,
            "--test-table",
            &noisy,
            "--question",
            q,
            "--method",
            m,
            "--sample",
            s,
            "--format",
            "json",
        ])
    };
    let v = run("temp", "valid-dt", "random:8");
    assert!(
        (v["accuracy"].as_f64().unwrap() - 72.82).abs() < 0.01,
        "{v}"
    );
    assert_eq!(v["thresholds"][0].as_array().unwrap().len(), 0);
    let v = run("width", "mdtree", "data-limit:1");
    assert!(
        (v["accuracy"].as_f64().unwrap() - 78.1686).abs() < 1e-3,
        "{v}"
    );
    // The data question uses models of width >= 32 (634 test rows).
    let v = run("data", "mdtree", "random-width:1");
    assert_eq!(v["n_test"], 634, "{v}");
    assert_eq!(v["thresholds"][0].as_array().unwrap().len(), 6);
    // The terminal table has the mean and one row per seed.
    let out = terrain(&[
        "diagnose",
        "evaluate",
        "--train-table",
        &clean,
        "--test-table",
        &noisy,
        "--question",
        "temp",
        "--sample",
        "width-limit:2",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("accuracy") && text.contains("82.5641") && text.contains("per_seed"),
        "{text}"
    );
}

#[test]
fn evaluate_bad_input_names_the_culprit() {
    let (clean, noisy) = tables();
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "diagnose",
        "evaluate",
        "--question",
        "temp",
        "--format",
        "json",
    ];
    let with = |train: &str, test: &str, extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--train-table", train, "--test-table", test]);
        args.extend(extra);
        fails(&args)
    };
    // Missing column.
    let text = std::fs::read_to_string(&clean).unwrap();
    let drop_col = |name: &str| {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let i = header.iter().position(|h| *h == name).unwrap();
        let mut out = String::new();
        for l in text.lines() {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(i);
            out += &(f.join(",") + "\n");
        }
        out
    };
    let p = dir.path().join("no_hessian.csv");
    std::fs::write(&p, drop_col("hessian_t")).unwrap();
    let err = with(p.to_str().unwrap(), &noisy, &[]);
    assert!(
        err.contains("`hessian_t`") && err.contains("no_hessian.csv"),
        "{err}"
    );
    // NaN metric in the test table.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let i = header.iter().position(|h| *h == "train_error").unwrap();
    let mut f: Vec<String> = lines[10].split(',').map(str::to_string).collect();
    f[i] = "nan".into();
    lines[10] = f.join(",");
    let p = dir.path().join("nan.csv");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let err = with(&clean, p.to_str().unwrap(), &[]);
    assert!(
        err.contains("`train_error`") && err.contains("row 10") && err.contains("line 11"),
        "{err}"
    );
    // Unknown label.
    let p = dir.path().join("label.csv");
    std::fs::write(&p, text.replacen(",large,", ",huge,", 1)).unwrap();
    let err = with(p.to_str().unwrap(), &noisy, &[]);
    assert!(
        err.contains("`huge`") && err.contains("`bs_failure`") && err.contains("row 1"),
        "{err}"
    );
    // Empty sample.
    let err = with(&clean, &noisy, &["--sample", "width-limit:1"]);
    assert!(
        err.contains("width-limit:1") && err.contains("keeps no rows"),
        "{err}"
    );
    // Bad settings: flags named.
    let err = with(&clean, &noisy, &["--sample", "random:0"]);
    assert!(err.contains("--sample"), "{err}");
    let err = with(&clean, &noisy, &["--method", "forest"]);
    assert!(err.contains("--method") && err.contains("mdtree"), "{err}");
    let err = fails(&[
        "diagnose",
        "evaluate",
        "--train-table",
        &clean,
        "--test-table",
        &noisy,
        "--question",
        "width",
        "--method",
        "mdtree-cka",
    ]);
    assert!(err.contains("--method") && err.contains("temp"), "{err}");
    let err = with("/nonexistent/clean.csv", &noisy, &[]);
    assert!(
        err.contains("/nonexistent/clean.csv") && err.contains("--train-table"),
        "{err}"
    );
}

#[test]
fn fit_writes_a_tree_that_explain_applies_with_a_picture() {
    let (clean, noisy) = tables();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("temp.json");
    let fit_png = dir.path().join("fit.png");
    let v = ok(&[
        "diagnose",
        "fit",
        "--table",
        &clean,
        "--question",
        "temp",
        "--out",
        tree.to_str().unwrap(),
        "--plot",
        fit_png.to_str().unwrap(),
        "--format",
        "json",
    ]);
    // The one-pass fit on all 1560 clean rows (methods.md §2.5: 0.146 %, -4.42, 6.14).
    assert_eq!(
        v["thresholds"][1].as_f64().unwrap(),
        -4.421_967_977_992_452,
        "{v}"
    );
    assert_eq!(v["n_train"], 1560);
    assert!(std::fs::metadata(&fit_png).unwrap().len() > 1000);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tree).unwrap()).unwrap();
    assert_eq!(
        (doc["kind"].as_str(), doc["schema_version"].as_u64()),
        (Some("mdtree"), Some(1))
    );
    assert_eq!(doc["data"]["features"][2], "hessian_t");
    // Row 1 of the noisy table: width 2, batch 16: not interpolating, poorly connected, flat.
    let svg = dir.path().join("why.svg");
    let d = ok(&[
        "diagnose",
        "explain",
        "--tree",
        tree.to_str().unwrap(),
        "--table",
        &noisy,
        "--row",
        "1",
        "--plot",
        svg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(d["label"], "large", "{d}");
    assert!(
        d["advice"]
            .as_str()
            .unwrap()
            .contains("raise the batch size")
    );
    let ev = d["evidence"].as_array().unwrap();
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0]["metric"], "train_error");
    assert_eq!(ev[0]["direction"], ">");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(
        picture.contains("this model") && picture.contains("on this model"),
        "path marked"
    );
    // The same tree from name=value pairs: an interpolating model.
    let d = ok(&[
        "diagnose",
        "explain",
        "--tree",
        tree.to_str().unwrap(),
        "--format",
        "json",
        "--features",
        "train_error=0.01,mode_connectivity_peak=-2,hessian_t=7",
    ]);
    assert_eq!(d["label"], "small");
}

#[test]
fn tree_files_for_other_features_and_bad_rows_are_refused() {
    let (clean, _) = tables();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("t.json");
    ok(&[
        "diagnose",
        "fit",
        "--table",
        &clean,
        "--question",
        "width",
        "--out",
        tree.to_str().unwrap(),
        "--format",
        "json",
    ]);
    // A tree file edited to list other features.
    let text = std::fs::read_to_string(&tree).unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(
        &other,
        text.replacen("\"mode_connectivity_peak\"", "\"CKA\"", 1),
    )
    .unwrap();
    let err = fails(&[
        "diagnose",
        "explain",
        "--tree",
        other.to_str().unwrap(),
        "--features",
        "train_error=1",
    ]);
    assert!(
        err.contains("other.json") && err.contains("CKA") && err.contains("mode_connectivity_peak"),
        "{err}"
    );
    // A record of another kind.
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, text.replacen("\"mdtree\"", "\"metrics\"", 1)).unwrap();
    let err = fails(&[
        "diagnose",
        "explain",
        "--tree",
        wrong.to_str().unwrap(),
        "--features",
        "train_error=1",
    ]);
    assert!(
        err.contains("wrong.json") && err.contains("metrics"),
        "{err}"
    );
    // A row without the tree's features, a row past the end, a malformed pair.
    let err = fails(&[
        "diagnose",
        "explain",
        "--tree",
        tree.to_str().unwrap(),
        "--features",
        "train_error=1,hessian_t=3",
    ]);
    assert!(
        err.contains("mode_connectivity_peak") && err.contains("hessian_t"),
        "{err}"
    );
    let err = fails(&[
        "diagnose",
        "explain",
        "--tree",
        tree.to_str().unwrap(),
        "--table",
        &clean,
        "--row",
        "5000",
    ]);
    assert!(err.contains("row 5000") && err.contains("1690"), "{err}");
    let err = fails(&[
        "diagnose",
        "explain",
        "--tree",
        tree.to_str().unwrap(),
        "--features",
        "train_error",
    ]);
    assert!(
        err.contains("--features") && err.contains("NAME=VALUE"),
        "{err}"
    );
    // No features at all, and a method that is not an MD tree.
    let err = fails(&["diagnose", "explain", "--tree", tree.to_str().unwrap()]);
    assert!(
        err.contains("--features") && err.contains("train_error=..."),
        "{err}"
    );
    let err = fails(&[
        "diagnose",
        "fit",
        "--table",
        &clean,
        "--question",
        "temp",
        "--method",
        "valid-dt",
        "--out",
        "x.json",
    ]);
    assert!(err.contains("--method"), "{err}");
    // An unwritable picture is refused before the fit.
    let err = fails(&[
        "diagnose",
        "fit",
        "--table",
        &clean,
        "--question",
        "temp",
        "--out",
        "x.json",
        "--plot",
        "/nonexistent/t.png",
    ]);
    assert!(err.contains("/nonexistent"), "{err}");
}

#[test]
fn numeric_flags_at_their_extremes_fail_cleanly() {
    let (clean, noisy) = tables();
    let base = [
        "diagnose",
        "evaluate",
        "--train-table",
        clean.as_str(),
        "--test-table",
        noisy.as_str(),
        "--question",
        "temp",
        "--format",
        "json",
    ];
    let bad: [(&[&str], &str); 7] = [
        (&["--max-depth", "0"], "--max-depth"),
        (&["--max-depth", "100000"], "--max-depth"),
        (&["--seeds", "4294967296"], "--seeds"),
        (&["--min-width", "nan"], "--min-width"),
        (&["--sample", "random:1000000000"], "random:1000000000"),
        (&["--sample", "data-limit:-inf"], "--sample"),
        (&["--seeds", ","], "--seeds"),
    ];
    for (extra, needle) in bad {
        let mut args = base.to_vec();
        args.extend(extra);
        let err = fails(&args);
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    // A negative width is a number, not a flag; no model is that narrow, so every row stays.
    let mut args = base.to_vec();
    args.extend(["--min-width", "-5", "--sample", "width-limit:2"]);
    assert_eq!(ok(&args)["n_test"], 1560);
}
