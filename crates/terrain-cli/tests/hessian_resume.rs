//! `terrain hessian --state`: a run killed with SIGKILL mid-solve and rerun with the same command
//! continues from its state file and ends with exactly the eigenvalues of an uninterrupted run,
//! for Lanczos and power iteration with deflation; a state of other settings and a garbage state
//! file are refused, naming the settings and the file.

use std::{path::Path, time::Duration};

use terrain_e2e::{fails, ok, train_checkpoint};

/// Products done according to the state file (0 while there is none).
fn saved_matvecs(path: &Path) -> usize {
    terrain_model::checkpoint::read_file(path)
        .ok()
        .and_then(|f| f.metadata.get("terrain.solver_state.matvecs")?.parse().ok())
        .unwrap_or(0)
}

fn kill_and_resume(dir: &Path, ckpt: &str, method: &str, solver: &[&str]) {
    let state = dir.join(format!("{method}.state.safetensors"));
    let state_arg = state.to_str().unwrap();
    let mut args = vec![
        "hessian",
        ckpt,
        "--data",
        "digits",
        "--samples",
        "400",
        "--eigen-method",
        method,
        "--tol",
        "0",
        "--format",
        "json",
    ];
    args.extend_from_slice(solver);
    let with_state = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(["--state".to_string(), state_arg.to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run_ok = |a: &[String]| ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let run_fails = |a: &[String]| fails(&a.iter().map(String::as_str).collect::<Vec<_>>());

    // Start, wait until the state shows two products, kill -9.
    terrain_e2e::kill_when(&with_state(&[]), Duration::from_secs(300), method, || {
        saved_matvecs(&state) >= 2
    });
    let killed_at = saved_matvecs(&state);
    assert!(killed_at >= 2, "{method}: killed at {killed_at}");

    // Other settings are refused by name, and the state is kept.
    let err = run_fails(&with_state(&["--seed", "5"]));
    assert!(
        err.contains("seed (saved 0, now 5)") && err.contains(state_arg),
        "{method}: {err}"
    );
    let err = run_fails(&with_state(&["--batch-size", "100"]));
    assert!(err.contains("batch_size (saved 256, now 100)"), "{err}");
    assert!(state.exists());

    // The same command continues and removes its state on success.
    let resumed = run_ok(&with_state(&[]));
    let at = resumed["resumed_at_iteration"].as_u64().unwrap() as usize;
    assert!(
        at > 0 && at >= killed_at,
        "{method}: resumed at {at}, killed at {killed_at}"
    );
    assert!(!state.exists(), "{method}: the finished state is removed");

    // An uninterrupted run (no state file) gives exactly the same numbers.
    let whole = ok(&args);
    assert!(whole["resumed_at_iteration"].is_null());
    for key in ["top_eigenvalues", "eigenpairs", "eigen_matvecs", "loss"] {
        assert_eq!(resumed[key], whole[key], "{method}: {key}");
    }
    eprintln!(
        "{method}: killed after {killed_at} products, resumed at {at}, eigenvalues {}",
        whole["top_eigenvalues"]
    );

    // A garbage state file: an error naming it.
    std::fs::write(&state, b"garbage, not a state").unwrap();
    let err = run_fails(&with_state(&[]));
    assert!(
        err.contains(state_arg) && err.contains("delete it to start over"),
        "{err}"
    );
    // --keep-state keeps the finished state; a rerun then takes it up.
    std::fs::remove_file(&state).unwrap();
    let kept = run_ok(&with_state(&["--keep-state"]));
    assert!(state.exists() && kept["resumed_at_iteration"].is_null());
    let again = run_ok(&with_state(&[]));
    assert!(again["resumed_at_iteration"].as_u64().unwrap() > 0);
    assert_eq!(again["top_eigenvalues"], whole["top_eigenvalues"]);
}

#[test]
fn a_killed_hessian_resumes_to_exactly_the_uninterrupted_eigenvalues() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train_checkpoint(
        dir.path(),
        "cnn.safetensors",
        "cnn:1x8x8-8-16-10:relu",
        "digits",
        &["--epochs", "1"],
    );
    let ckpt = ckpt.to_str().unwrap();
    kill_and_resume(
        dir.path(),
        ckpt,
        "lanczos",
        &["--top-k", "3", "--max-iter", "30"],
    );
    kill_and_resume(
        dir.path(),
        ckpt,
        "power",
        &["--top-k", "3", "--max-iter", "8"],
    );

    // --state without eigenvalues to compute is refused before any work.
    let err = fails(&[
        "hessian",
        ckpt,
        "--data",
        "digits",
        "--trace",
        "--state",
        "x.safetensors",
    ]);
    assert!(
        err.contains("--state x.safetensors") && err.contains("--top-k"),
        "{err}"
    );
}
