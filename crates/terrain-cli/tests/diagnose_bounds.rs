//! End to end: `terrain diagnose fit/evaluate --bounds paper|data` on a hand-made table at an
//! MLP's scale (hessian_t in [0.10, 0.29], where the paper's bounds [4, 9] separate nothing),
//! the single-checkpoint trees through `fit`/`explain --method mdtree-single`, and their bad
//! input.

use std::path::Path;

use terrain_e2e::{fails, ok};

/// 20 configurations: nobody interpolates (train_error 6 %), everybody is poorly connected
/// (mc_peak -36), `large` when hessian_t <= 0.195, else `small`; hessian_e = 2·hessian_t.
fn table(dir: &Path) -> String {
    let mut csv = String::from(
        "width,data,bs,bs_failure,train_error,mode_connectivity_peak,hessian_t,hessian_e\n",
    );
    for i in 0..20 {
        let h = 0.10 + 0.01 * i as f64;
        let label = if h > 0.195 { "small" } else { "large" };
        csv.push_str(&format!(
            "{},{},{},{label},6.0,-36.0,{h},{}\n",
            8 + i % 4,
            1 + i / 4,
            16,
            2.0 * h
        ));
    }
    let p = dir.join("mlp.csv");
    std::fs::write(&p, csv).unwrap();
    p.display().to_string()
}

#[test]
fn data_bounds_separate_a_table_at_another_scale_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let t = table(dir.path());
    let fit = |bounds: &str, method: &str| {
        let out = dir.path().join(format!("{bounds}-{method}.json"));
        let v = ok(&[
            "diagnose",
            "fit",
            "--table",
            &t,
            "--question",
            "temp",
            "--method",
            method,
            "--bounds",
            bounds,
            "--out",
            out.to_str().unwrap(),
            "--format",
            "json",
        ]);
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(file["data"]["bounds"], bounds);
        (v, out)
    };
    // Half of the rows are `large`: what every row going one way scores.
    let (paper, _) = fit("paper", "mdtree");
    assert_eq!(paper["train_accuracy"].as_f64().unwrap(), 50.0);
    assert_eq!(paper["intervals"][2], serde_json::json!([4.0, 9.0]));
    let (data, _) = fit("data", "mdtree");
    assert_eq!(data["train_accuracy"].as_f64().unwrap(), 100.0);
    let th = data["thresholds"][2].as_f64().unwrap();
    assert!((0.19..0.20).contains(&th), "{data}");
    let lo = data["intervals"][2][0].as_f64().unwrap();
    let hi = data["intervals"][2][1].as_f64().unwrap();
    assert!((lo - (0.10 - 0.0019)).abs() < 1e-12 && (hi - (0.29 + 0.0019)).abs() < 1e-12);
    // evaluate on the same table: the test accuracy is the training accuracy.
    let eval = |bounds: &str| {
        ok(&[
            "diagnose",
            "evaluate",
            "--train-table",
            &t,
            "--test-table",
            &t,
            "--question",
            "temp",
            "--sample",
            "all",
            "--seeds",
            "1",
            "--bounds",
            bounds,
            "--format",
            "json",
        ])
    };
    let e = eval("data");
    assert_eq!(e["bounds"], "data");
    assert_eq!(e["accuracy"].as_f64().unwrap(), 100.0);
    assert_eq!(eval("paper")["accuracy"].as_f64().unwrap(), 50.0);

    // The single-checkpoint temp tree on the same table: hessian_t decides at its second split.
    let (single, single_path) = fit("data", "mdtree-single");
    assert_eq!(single["kind"], "temp-single");
    assert_eq!(
        single["features"],
        serde_json::json!(["train_error", "hessian_t", "hessian_e"])
    );
    assert_eq!(
        single["train_accuracy"].as_f64().unwrap(),
        100.0,
        "{single}"
    );
    let single_path = single_path.to_str().unwrap();
    let d = ok(&[
        "diagnose",
        "explain",
        "--tree",
        single_path,
        "--features",
        "train_error=6,hessian_t=0.12,hessian_e=0.24",
        "--format",
        "json",
    ]);
    assert_eq!(d["tree"], "temp-single");
    assert_eq!(d["label"], "large");
    assert_eq!(d["evidence"][1]["metric"], "hessian_t");

    // Bad input: an unknown bounds rule, a missing feature of a single tree.
    let e = fails(&[
        "diagnose",
        "fit",
        "--table",
        &t,
        "--question",
        "temp",
        "--bounds",
        "mean",
        "--out",
        "x.json",
    ]);
    assert!(e.contains("--bounds") && e.contains("mean"), "{e}");
    assert!(e.contains("paper") && e.contains("data"), "{e}");
    let e = fails(&[
        "diagnose",
        "explain",
        "--tree",
        single_path,
        "--features",
        "train_error=6,hessian_t=0.12",
    ]);
    assert!(e.contains("hessian_e"), "{e}");
    // mdtree-single for the data question on a table without the data label.
    let e = fails(&[
        "diagnose",
        "fit",
        "--table",
        &t,
        "--question",
        "data",
        "--method",
        "mdtree-single",
        "--out",
        dir.path().join("d.json").to_str().unwrap(),
    ]);
    assert!(e.contains("data_vs_batch") || e.contains("rfi"), "{e}");
}
