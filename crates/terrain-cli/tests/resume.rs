//! Resume cannot lie: a training run killed with SIGKILL continues from its state file only with
//! exactly the settings that wrote it (each changed setting is refused, by name, and the state is
//! kept), and the resumed run ends with weights bit-identical to an uninterrupted run's.

use std::{path::Path, time::Duration};

use terrain_e2e::{fails, ok};
use terrain_model::checkpoint;

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let c = checkpoint::load(path, &checkpoint::LoadOptions::default()).unwrap();
    c.model
        .params()
        .iter()
        .chain(c.model.buffers())
        .map(|p| {
            let v = p.var.flatten_all().unwrap();
            (
                p.name.clone(),
                v.to_dtype(candle_core::DType::F32)
                    .unwrap()
                    .to_vec1()
                    .unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_killed_run_resumes_only_unchanged_and_ends_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.safetensors");
    let state = dir.path().join("run.state.safetensors");
    let o = out.to_str().unwrap();
    let base: Vec<&str> = vec![
        "train",
        "--arch",
        "mlp:64-64-10:tanh",
        "--data",
        "digits",
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--seed",
        "3",
        "--resume",
        "--out",
        o,
        "--format",
        "json",
    ];

    // Start the run and kill it (SIGKILL) as soon as its first state file is on disk.
    terrain_e2e::kill_when(&base, Duration::from_secs(120), "the training run", || {
        state.exists()
    });
    assert!(!out.exists(), "killed before the checkpoint");
    let done: usize = checkpoint::read_file(&state).unwrap().metadata["terrain.train.epochs_done"]
        .parse()
        .unwrap();
    assert!((1..6).contains(&done), "killed after epoch {done}");

    // Every setting that shapes the run is fingerprinted: a change is refused by name.
    let with = |flag: &str, value: Option<&str>| -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut i = 0;
        while i < base.len() {
            if base[i] == flag {
                i += 2; // replaced below
                continue;
            }
            a.push(base[i].to_string());
            i += 1;
        }
        a.push(flag.to_string());
        if let Some(v) = value {
            a.push(v.to_string());
        }
        a
    };
    for (flag, value, setting) in [
        ("--arch", Some("mlp:64-32-10:tanh"), "arch"),
        ("--lr", Some("0.02"), "training.lr"),
        ("--batch-size", Some("8"), "training.batch_size"),
        ("--seed", Some("4"), "seeds.init"),
        ("--holdout", Some("0.3"), "data.holdout"),
        ("--subset", Some("0.5"), "data.subset"),
        ("--label-noise", Some("0.1"), "data.label_noise"),
        ("--standardize", None, "data.standardize"),
        ("--test-data", Some("digits"), "data.test_source"),
        ("--momentum", Some("0.5"), "training.optimizer.momentum"),
        (
            "--weight-decay",
            Some("0.001"),
            "training.optimizer.weight_decay",
        ),
        ("--optimizer", Some("adam"), "training.optimizer"),
        ("--mixup", Some("0.2"), "training.mixup_alpha"),
        ("--lr-decay", Some("step:2:0.5"), "training.lr_decay"),
        ("--drop-last", None, "training.drop_last"),
        ("--dtype", Some("f64"), "dtype"),
        ("--loss", Some("mse"), "training.loss"),
    ] {
        let args = with(flag, value);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(&args);
        assert!(
            err.contains("cannot resume") && err.contains(setting),
            "{flag}: should be refused naming `{setting}`:\n{err}"
        );
        assert!(state.exists(), "{flag}: a refused resume keeps the state");
    }
    // (Fewer epochs than the state has done is refused too: crates/terrain-model/tests/training.rs.)

    // Unchanged: it resumes, says so, and ends where an uninterrupted run ends, to the bit.
    let resumed = terrain_e2e::terrain(&base);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(stderr.contains(&format!("after epoch {done}")), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report["resumed_after_epoch"], done);
    assert!(!state.exists(), "the finished run removes its state");

    let fresh = dir.path().join("fresh.safetensors");
    let mut uninterrupted: Vec<&str> = base.iter().copied().filter(|a| *a != "--resume").collect();
    let at = uninterrupted.iter().position(|a| *a == o).unwrap();
    let fresh_s = fresh.to_str().unwrap().to_string();
    uninterrupted[at] = &fresh_s;
    ok(&uninterrupted);
    assert_eq!(
        weights(&out),
        weights(&fresh),
        "bit-identical to an uninterrupted run"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&fresh).unwrap(),
        "same run, same checkpoint bytes"
    );
}
