//! `terrain connect --method bezier --state`: curve training killed with SIGKILL mid-run and
//! rerun with the same command continues from its last epoch and gives exactly the JSON of an
//! uninterrupted run; a state of other settings and a garbage state file are refused by name.

use std::{path::Path, time::Duration};

use terrain_e2e::{fails, ok, train_checkpoint};

/// Epochs done according to the state file (0 while there is none).
fn saved_epochs(path: &Path) -> usize {
    terrain_model::checkpoint::read_file(path)
        .ok()
        .and_then(|f| f.metadata.get("terrain.curve_state.epochs")?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_killed_bezier_training_resumes_to_exactly_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts: Vec<String> = ["1", "2"]
        .iter()
        .map(|seed| {
            train_checkpoint(
                dir.path(),
                &format!("m{seed}.safetensors"),
                "mlp:64-128-128-10:relu",
                "digits",
                &["--epochs", "2", "--seed", seed, "--no-standardize"],
            )
            .to_str()
            .unwrap()
            .to_string()
        })
        .collect();
    let state = dir.path().join("curve.state.safetensors");
    let state_arg = state.to_str().unwrap().to_string();
    let plot = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    const EPOCHS: usize = 30;
    let args = |plot: String, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "connect",
            &ckpts[0],
            &ckpts[1],
            "--data",
            "digits",
            "--method",
            "bezier",
            "--epochs",
            &EPOCHS.to_string(),
            "--train-batch-size",
            "32",
            "--plot",
            &plot,
            "--format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run_ok = |a: Vec<String>| ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let run_fails = |a: Vec<String>| fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let with_state = |extra: &[&str]| {
        let mut a = args(plot("resumed.png"), &["--state", &state_arg]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // Start, wait for two epochs in the state file, kill -9.
    terrain_e2e::kill_when(
        &with_state(&[]),
        Duration::from_secs(300),
        "the curve training",
        || saved_epochs(&state) >= 2,
    );
    let killed_at = saved_epochs(&state);
    assert!(
        (2..EPOCHS).contains(&killed_at),
        "killed after epoch {killed_at}"
    );

    // Other settings are refused by name; the state is kept.
    let err = run_fails(with_state(&["--lr", "0.02"]));
    assert!(
        err.contains("lr: saved 0.01, now 0.02") && err.contains(&state_arg),
        "{err}"
    );
    let mut swapped = with_state(&[]);
    swapped.swap(1, 2);
    let err = run_fails(swapped);
    assert!(err.contains("endpoint a: saved"), "{err}");
    assert!(state.exists());

    // The same command continues; the state is removed on success.
    let resumed = run_ok(with_state(&[]));
    let at = resumed["resumed_at_epoch"].as_u64().unwrap() as usize;
    assert!(at >= killed_at && at < EPOCHS, "resumed at {at}");
    assert!(!state.exists());

    // An uninterrupted run: the same JSON, but for the plot's name and where it resumed.
    let whole = run_ok(args(plot("whole.png"), &[]));
    assert!(whole["resumed_at_epoch"].is_null());
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        let o = v.as_object_mut().unwrap();
        o.remove("plot");
        o.remove("resumed_at_epoch");
        v
    };
    assert_eq!(strip(&resumed), strip(&whole));
    eprintln!(
        "killed after epoch {killed_at}, resumed at {at}: mc {} mc_peak {} curve loss {}",
        whole["mc"], whole["mc_peak"], whole["curve_train_loss"]
    );

    // A garbage state file, and --state with a path that trains nothing.
    std::fs::write(&state, b"not a state").unwrap();
    let err = run_fails(with_state(&[]));
    assert!(
        err.contains(&state_arg) && err.contains("delete it to start over"),
        "{err}"
    );
    let linear: Vec<String> = with_state(&[])
        .into_iter()
        .map(|a| if a == "bezier" { "linear".into() } else { a })
        .collect();
    let err = run_fails(linear);
    assert!(err.contains("--method linear trains nothing"), "{err}");
}
