//! End to end: `terrain landscape` on CSV and parquet tables (a bowl, an Optuna-style export),
//! comparisons between tables and slices, pictures, and every bad input of the issue named by
//! file, column or row.

use std::path::Path;

use terrain_e2e::{fails, ok};

/// A 5 × 4 × 2 grid of (lr, width, opt) at two fidelities: error = Manhattan distance in grid
/// levels to (lr 0.01, width 64, adam), plus 1 at 5 epochs, plus `noise(row)`.
fn bowl_csv(noise: impl Fn(usize) -> f64) -> String {
    let mut s = String::from("lr,width,opt,epochs,error\n");
    let mut row = 0;
    for epochs in [5, 20] {
        for (i, lr) in [0.0001, 0.001, 0.01, 0.1, 1.0].iter().enumerate() {
            for (j, w) in [16, 32, 64, 128].iter().enumerate() {
                for (k, o) in ["adam", "sgd"].iter().enumerate() {
                    let e = i.abs_diff(2) + j.abs_diff(2) + k + usize::from(epochs == 5);
                    s += &format!("{lr},{w},{o},{epochs},{}\n", e as f64 + noise(row));
                    row += 1;
                }
            }
        }
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn a_bowl_has_one_optimum_and_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "bowl.csv", &bowl_csv(|_| 0.0));
    let pics = dir.path().join("pics");
    let v = ok(&[
        "--format",
        "json",
        "landscape",
        &t,
        "--objective",
        "error",
        "--filter",
        "epochs=20",
        "--plot-dir",
        pics.to_str().unwrap(),
    ]);
    assert_eq!(v["n_configs"], 40);
    assert_eq!(
        v["hyperparameters"],
        serde_json::json!(["lr", "width", "opt"])
    );
    // Grid edges: lr 4·4·2 + width 5·3·2 + opt 5·4·1 = 32 + 30 + 20.
    assert_eq!(v["n_neighbour_pairs_unordered"], 82);
    assert_eq!(v["n_local_optima"], 1);
    assert_eq!(v["global_optimum"]["values"]["lr"], 0.01);
    assert_eq!(v["global_optimum"]["values"]["width"], 64);
    assert_eq!(v["global_optimum"]["values"]["opt"], "adam");
    assert_eq!(v["global_optimum"]["table_row"], 40 + 2 * 8 + 2 * 2);
    assert!((v["fdc_pearson"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(v["basin_size_global_optimum"], 40);
    assert_eq!(v["neutrality_eps"], 0.01);
    assert_eq!(v["autocorrelation"]["walks"], 1000);
    let plots: Vec<&str> = v["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(plots.len(), 4, "three heat maps and the graph: {plots:?}");
    for p in plots {
        let bytes = std::fs::read(p).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{p}");
    }
    // The walk seed changes only the walk estimate.
    let v2 = ok(&[
        "--format",
        "json",
        "landscape",
        &t,
        "--objective",
        "error",
        "--filter",
        "epochs=20",
        "--seed",
        "3",
    ]);
    assert_eq!(v2["n_local_optima"], v["n_local_optima"]);
    assert_eq!(
        v2["performance_assortativity"],
        v["performance_assortativity"]
    );
    assert_ne!(
        v2["autocorrelation"]["value"],
        v["autocorrelation"]["value"]
    );
}

#[test]
fn parquet_and_csv_give_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let csv = bowl_csv(|r| (r % 7) as f64 * 0.01);
    let t = write(dir.path(), "t.csv", &csv);
    let mut table = terrain_report::Table::new(["lr", "width", "opt", "epochs", "error"]);
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        use terrain_report::Cell;
        table
            .push(vec![
                Cell::Float(f[0].parse().unwrap()),
                Cell::Int(f[1].parse().unwrap()),
                Cell::Str(f[2].into()),
                Cell::Int(f[3].parse().unwrap()),
                Cell::Float(f[4].parse().unwrap()),
            ])
            .unwrap();
    }
    let pq = dir.path().join("t.parquet");
    table.write_parquet(&pq).unwrap();
    let args = |p: &str| {
        vec![
            "--format",
            "json",
            "landscape",
            p,
            "--objective",
            "error",
            "--hp",
            "lr,width,opt",
            "--filter",
            "epochs=5",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let a = args(&t);
    let b = args(pq.to_str().unwrap());
    let va = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let mut vb = ok(&b.iter().map(String::as_str).collect::<Vec<_>>());
    vb["source"] = va["source"].clone();
    assert_eq!(va, vb);
}

#[test]
fn an_optuna_export_with_a_filter() {
    // trials_dataframe() columns; a failed trial has no value and is filtered out by state.
    let mut s = String::from("number,value,datetime_start,params_lr,params_n_units,state\n");
    let mut n = 0;
    for lr in [0.001f64, 0.01, 0.1] {
        for u in [8, 16, 32] {
            let v = (lr - 0.01).abs() * 10.0 + (u as f64 - 16.0).abs() / 100.0;
            s += &format!("{n},{v},2024-05-01 10:00:0{},{lr},{u},COMPLETE\n", n % 10);
            n += 1;
        }
    }
    s += &format!("{n},,2024-05-01 10:01:00,0.5,8,FAIL\n");
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "optuna.csv", &s);
    let v = ok(&[
        "--format",
        "json",
        "landscape",
        &t,
        "--objective",
        "value",
        "--hp",
        "params_lr,params_n_units",
        "--filter",
        "state=COMPLETE",
    ]);
    assert_eq!(v["n_configs"], 9);
    assert_eq!(v["n_local_optima"], 1);
    assert_eq!(v["global_optimum"]["values"]["params_lr"], 0.01);
    assert_eq!(v["global_optimum"]["values"]["params_n_units"], 16);
    // Without the filter, the failed trial's empty objective is named.
    let e = fails(&[
        "landscape",
        &t,
        "--objective",
        "value",
        "--hp",
        "params_lr,params_n_units",
    ]);
    assert!(
        e.contains("optuna.csv") && e.contains("`value`") && e.contains("row 9"),
        "{e}"
    );
    assert!(e.contains("hint:") && e.contains("--filter"), "{e}");
}

#[test]
fn comparisons_between_tables_and_slices() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.csv", &bowl_csv(|r| (r % 5) as f64 * 0.1));
    // Slices by fidelity: the 5-epoch landscape is the 20-epoch one shifted by 1 plus noise.
    let v = ok(&[
        "--format",
        "json",
        "landscape",
        &t,
        "--objective",
        "error",
        "--compare-by",
        "epochs",
    ]);
    assert_eq!(v["slices"].as_array().unwrap().len(), 2);
    assert_eq!(v["slices"][0]["slice"], "epochs=5");
    let s = &v["similarities"][0];
    assert_eq!(
        (s["first"].as_str(), s["second"].as_str()),
        (Some("epochs=5"), Some("epochs=20"))
    );
    assert_eq!(s["n_shared"], 40);
    assert_eq!(s["top10_k"], 4);
    let rho = s["spearman_all"].as_f64().unwrap();
    assert!(rho > 0.9 && rho <= 1.0, "{rho}");
    // A table against itself: identical; against a shuffled copy of the rows: still identical.
    let text = bowl_csv(|_| 0.0);
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1..].reverse();
    let rev = write(dir.path(), "rev.csv", &(lines.join("\n") + "\n"));
    let plain = write(dir.path(), "plain.csv", &text);
    let v = ok(&[
        "--format",
        "json",
        "landscape",
        &plain,
        "--objective",
        "error",
        "--filter",
        "epochs=20",
        "--compare",
        &rev,
    ]);
    let s = &v["similarity"];
    assert_eq!(s["n_shared"], 40);
    assert!((s["spearman_all"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(s["top10_overlap"], 1.0);
    assert_eq!(v["first"]["n_local_optima"], v["second"]["n_local_optima"]);
    // The table format prints too.
    let out = terrain_e2e::terrain(&[
        "landscape",
        &plain,
        "--objective",
        "error",
        "--compare-by",
        "epochs",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("spearman_top10_union"));
}

#[test]
fn bad_inputs_name_file_column_or_row() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.csv", "lr,error\n0.1,0.5\n0.2,0.4\n");
    // A table without the objective column.
    let e = fails(&["landscape", &good, "--objective", "val_error"]);
    assert!(
        e.contains("good.csv") && e.contains("no column `val_error`") && e.contains("`lr`"),
        "{e}"
    );
    // An objective with NaN.
    let nan = write(dir.path(), "nan.csv", "lr,error\n0.1,0.5\n0.2,NaN\n");
    let e = fails(&["landscape", &nan, "--objective", "error"]);
    assert!(
        e.contains("nan.csv") && e.contains("`error`") && e.contains("row 1") && e.contains("NaN"),
        "{e}"
    );
    // Text in the objective.
    let txt = write(dir.path(), "txt.csv", "lr,error\n0.1,0.5\n0.2,oops\n");
    let e = fails(&["landscape", &txt, "--objective", "error"]);
    assert!(e.contains("row 1") && e.contains("oops"), "{e}");
    // Duplicated configurations.
    let dup = write(
        dir.path(),
        "dup.csv",
        "lr,seed,error\n0.1,1,0.5\n0.2,1,0.4\n0.1,2,0.45\n",
    );
    let e = fails(&["landscape", &dup, "--objective", "error", "--hp", "lr"]);
    assert!(
        e.contains("dup.csv") && e.contains("rows 0 and 2") && e.contains("lr=0.1"),
        "{e}"
    );
    assert!(e.contains("hint:"), "{e}");
    // Unknown hyperparameters and filter columns.
    let e = fails(&[
        "landscape",
        &good,
        "--objective",
        "error",
        "--hp",
        "lr,width",
    ]);
    assert!(e.contains("no column `width`"), "{e}");
    let e = fails(&[
        "landscape",
        &good,
        "--objective",
        "error",
        "--filter",
        "epochs=3",
    ]);
    assert!(e.contains("no column `epochs`"), "{e}");
    let e = fails(&[
        "landscape",
        &good,
        "--objective",
        "error",
        "--filter",
        "lr=0.7",
    ]);
    assert!(e.contains("no row passes") && e.contains("lr=0.7"), "{e}");
    let e = fails(&["landscape", &good, "--objective", "error", "--filter", "lr"]);
    assert!(e.contains("COLUMN=VALUE"), "{e}");
    let e = fails(&["landscape", &good, "--objective", "error", "--hp", "error"]);
    assert!(e.contains("is the objective"), "{e}");
    // Tables that share no configurations.
    let other = write(dir.path(), "other.csv", "lr,error\n0.5,0.5\n0.7,0.4\n");
    let e = fails(&[
        "landscape",
        &good,
        "--objective",
        "error",
        "--compare",
        &other,
    ]);
    assert!(
        e.contains("good.csv") && e.contains("other.csv") && e.contains("share no configuration"),
        "{e}"
    );
    let e = fails(&[
        "landscape",
        &good,
        "--objective",
        "error",
        "--compare-by",
        "lr",
    ]);
    assert!(
        e.contains("no hyperparameter columns") || e.contains("share no configuration"),
        "{e}"
    );
    // Malformed files and settings.
    let ragged = write(dir.path(), "ragged.csv", "lr,error\n0.1,0.5,7\n");
    let e = fails(&["landscape", &ragged, "--objective", "error"]);
    assert!(e.contains("ragged.csv") && e.contains("line 2"), "{e}");
    let bad_pq = write(dir.path(), "bad.parquet", "not parquet");
    let e = fails(&["landscape", &bad_pq, "--objective", "error"]);
    assert!(e.contains("bad.parquet") && e.contains("parquet"), "{e}");
    let e = fails(&["landscape", "/nonexistent/t.csv", "--objective", "error"]);
    assert!(e.contains("/nonexistent/t.csv"), "{e}");
    let e = fails(&[
        "landscape",
        &good,
        "--objective",
        "error",
        "--neutrality-eps",
        "-1",
    ]);
    assert!(e.contains("--neutrality-eps"), "{e}");
    let e = fails(&[
        "landscape",
        &good,
        "--objective",
        "error",
        "--walk-length",
        "1",
    ]);
    assert!(e.contains("--walk-length"), "{e}");
    let empty = write(dir.path(), "empty.csv", "");
    let e = fails(&["landscape", &empty, "--objective", "error"]);
    assert!(e.contains("empty.csv"), "{e}");
}
