//! End to end: `cargo xtask sweep` killed with SIGKILL and rerun gives exactly the rows of an
//! uninterrupted run; 3 shards (also as SLURM array tasks and Kubernetes indexed jobs) merged
//! equal the unsharded run; 2 workers equal 1; bad space files, mismatched and missing shards
//! are refused by name. Rows are compared on every column but the wall time.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use terrain_hparams::table::RawTable;

const SPACE: &str = r#"
seed = 5
arch = "mlp:64-{hidden}-10:{activation}"
[data]
holdout = 0.2
validation = 0.25
[fixed]
batch_size = 32
[grid]
lr = [0.01, 0.1, 80.0]
width = [16, 32]
activation = ["relu", "tanh"]
[fidelity]
epochs = [1, 4]
"#;

fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args).env("RUST_LOG", "warn");
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "JOB_COMPLETION_INDEX",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn sweep(space: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut args = vec![
        "sweep",
        space.to_str().unwrap(),
        "--data",
        "digits",
        "--out",
        out.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend(extra);
    let o = xtask(&args, env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let o = xtask(args, &[]);
    assert!(!o.status.success(), "xtask {args:?} should fail");
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// The rows of a sweep table without the wall-time column.
fn rows(path: &Path) -> RawTable {
    let mut t = RawTable::read(path).unwrap();
    let j = t.column("seconds").unwrap();
    t.columns.remove(j);
    t.cells.remove(j);
    t.source = String::new();
    t
}

fn space_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("space.toml");
    std::fs::write(&p, SPACE).unwrap();
    p
}

#[test]
fn a_killed_sweep_resumes_to_the_rows_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let space = space_file(dir.path());
    let whole = dir.path().join("whole");
    let s = sweep(&space, &whole, &[], &[]);
    assert_eq!(s["configurations"], 12);
    assert_eq!(s["trained"], 12);
    // lr = 80 with relu diverges (tanh saturates instead): recorded as failed with the reason,
    // not fatal.
    let failed = s["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    for f in failed {
        assert!(
            f["values"]
                .as_str()
                .unwrap()
                .contains("activation=relu,lr=80"),
            "{f}"
        );
        let why = f["reason"].as_str().unwrap();
        assert!(
            why.contains("non-finite") || why.contains("diverged"),
            "{why}"
        );
    }
    let reference = rows(&whole.join("sweep.parquet"));
    assert_eq!(reference.n_rows(), 24);
    let status = reference.column("status").unwrap();
    let ok = reference.cells[status]
        .iter()
        .filter(|v| v.to_string() == "ok")
        .count();
    assert_eq!(ok, 20);

    // Start again in another directory, kill -9 once some configurations are written.
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "sweep",
            space.to_str().unwrap(),
            "--data",
            "digits",
            "--out",
            killed.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pieces = killed.join("pieces");
    let count = || {
        std::fs::read_dir(&pieces)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    while count() < 2 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let done = count();
    assert!(done >= 2, "no configuration finished before the kill");
    assert!(
        done < 12,
        "the sweep finished before the kill: nothing was interrupted"
    );
    let partial = !killed.join("sweep.parquet").exists();
    let s = sweep(&space, &killed, &[], &[]);
    assert_eq!(s["already_done"].as_u64().unwrap() as usize, done.min(12));
    assert_eq!(s["trained"].as_u64().unwrap() as usize, 12 - done.min(12));
    assert_eq!(rows(&killed.join("sweep.parquet")), reference);
    eprintln!("killed after {done} of 12 configurations (sweep unfinished at the kill: {partial})");

    // Two workers give the same rows.
    let two = dir.path().join("two");
    let s = sweep(&space, &two, &["--workers", "2"], &[]);
    assert_eq!(s["workers"], 2);
    assert_eq!(rows(&two.join("sweep.parquet")), reference);

    // A rerun of a finished sweep trains nothing.
    let s = sweep(&space, &whole, &[], &[]);
    assert_eq!(
        (s["trained"].as_u64(), s["already_done"].as_u64()),
        (Some(0), Some(12))
    );
    assert_eq!(rows(&whole.join("sweep.parquet")), reference);

    // Three shards, each started differently, merged equal the unsharded run.
    let sharded = dir.path().join("sharded");
    let s = sweep(&space, &sharded, &["--shard", "0/3"], &[]);
    assert_eq!(s["in_shard"], 4);
    assert!(s["merged"].is_null());
    let e = fails(&["sweep", "merge", sharded.to_str().unwrap()]);
    assert!(
        e.contains("missing 2 of 3 shards") && e.contains("shard-1-of-3.parquet"),
        "{e}"
    );
    sweep(
        &space,
        &sharded,
        &[],
        &[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ],
    );
    assert!(sharded.join("shard-1-of-3.parquet").is_file());
    sweep(
        &space,
        &sharded,
        &["--shards", "3"],
        &[("JOB_COMPLETION_INDEX", "2")],
    );
    let o = xtask(
        &[
            "sweep",
            "merge",
            sharded.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (m["shards"].as_u64(), m["rows"].as_u64()),
        (Some(3), Some(24))
    );
    assert_eq!(rows(&sharded.join("sweep.parquet")), reference);

    // A shard copied over another one is a duplicate; a shard of another split is a mismatch.
    std::fs::copy(
        sharded.join("shard-0-of-3.parquet"),
        sharded.join("shard-1-of-3.parquet"),
    )
    .unwrap();
    let e = fails(&["sweep", "merge", sharded.to_str().unwrap()]);
    assert!(e.contains("does not belong to shard 1 of 3"), "{e}");
    std::fs::copy(
        whole.join("shard-0-of-1.parquet"),
        sharded.join("shard-0-of-1.parquet"),
    )
    .unwrap();
    let e = fails(&["sweep", "merge", sharded.to_str().unwrap()]);
    assert!(e.contains("shards of different counts"), "{e}");

    // The same directory with other data is refused.
    let e = fails(&[
        "sweep",
        space.to_str().unwrap(),
        "--data",
        "iris",
        "--out",
        whole.to_str().unwrap(),
    ]);
    assert!(e.contains("started with the data `digits`"), "{e}");
    let e = fails(&["sweep", "merge", dir.path().to_str().unwrap()]);
    assert!(e.contains("not a sweep directory"), "{e}");
}

#[test]
fn bad_space_files_and_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let case = |name: &str, text: &str, extra: &[&str]| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let mut args = vec![
            "sweep",
            p.to_str().unwrap(),
            "--data",
            "iris",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let e = fails(&args);
        assert!(e.contains(name) || !extra.is_empty(), "{name}: {e}");
        e
    };
    let e = case(
        "syntax.toml",
        "arch = \"mlp:4-8-3:relu\"\n[grid\nlr = [1]\n",
        &[],
    );
    assert!(e.contains("not valid TOML"), "{e}");
    let e = case(
        "empty.toml",
        "arch = \"mlp:4-8-3:relu\"\n[grid]\nlr = []\n",
        &[],
    );
    assert!(e.contains("`lr` is an empty grid"), "{e}");
    let e = case(
        "unknown.toml",
        "arch = \"mlp:4-8-3:relu\"\n[grid]\nlearning_rate = [0.1]\n",
        &[],
    );
    assert!(e.contains("unknown hyperparameter `learning_rate`"), "{e}");
    let e = case("noarch.toml", "[grid]\nlr = [0.1]\n", &[]);
    assert!(e.contains("no `arch`"), "{e}");
    let e = case(
        "template.toml",
        "arch = \"mlp:4-{width}-3:{act}\"\n[grid]\nwidth = [8]\n",
        &[],
    );
    assert!(e.contains("{act}"), "{e}");
    let e = case(
        "badarch.toml",
        "arch = \"mlp:4-{width}-3:nope\"\n[grid]\nwidth = [8]\n",
        &[],
    );
    assert!(e.contains("badarch.toml"), "{e}");
    let e = case(
        "mixed.toml",
        "arch = \"mlp:4-8-3:relu\"\n[grid]\nlr = [0.1, \"fast\"]\n",
        &[],
    );
    assert!(e.contains("mixes numbers and text"), "{e}");
    let e = case(
        "twice.toml",
        "arch = \"mlp:4-8-3:relu\"\n[grid]\nlr = [0.1, 0.1]\n",
        &[],
    );
    assert!(e.contains("lists 0.1 twice"), "{e}");
    let e = case(
        "epochs.toml",
        "arch = \"mlp:4-8-3:relu\"\n[fidelity]\nepochs = [5, 2]\n",
        &[],
    );
    assert!(e.contains("strictly ascending"), "{e}");
    let e = case("key.toml", "arch = \"mlp:4-8-3:relu\"\nseeds = 3\n", &[]);
    assert!(e.contains("unknown key `seeds`"), "{e}");
    let ok = "arch = \"mlp:4-8-3:relu\"\n[grid]\nlr = [0.1]\n";
    let e = case("w.toml", ok, &["--workers", "0"]);
    assert!(e.contains("--workers"), "{e}");
    let e = case("s.toml", ok, &["--shard", "3/3"]);
    assert!(e.contains("I/N"), "{e}");
    let p = dir.path().join("ok.toml");
    std::fs::write(&p, ok).unwrap();
    let o = xtask(
        &[
            "sweep",
            p.to_str().unwrap(),
            "--data",
            "iris",
            "--out",
            out.to_str().unwrap(),
        ],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("shard count"), "{e}");
    let e = fails(&[
        "sweep",
        "/nonexistent/space.toml",
        "--data",
        "iris",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("/nonexistent/space.toml"), "{e}");
}
