//! Helpers of the end-to-end tests (`crates/terrain-cli/tests/`): run the `terrain` binary that
//! cargo builds for them and check its exit status, JSON output and error messages. The crate's
//! own test is the tidy test (`tests/tidy.rs`).

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The `terrain` binary that cargo built for the calling test: the end-to-end tests are
/// integration tests of terrain-cli, so `cargo test` builds the binary first, fresh and with the
/// test build's features (no nested cargo build, no stale binary).
pub fn terrain_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/cli-xxxx -> target/<profile>/terrain
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = dir.join(format!("terrain{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run the end-to-end tests as terrain-cli's tests (cargo test -p terrain-cli)",
        bin.display()
    );
    bin
}

/// Runs `terrain` with `args`, with `RUST_LOG=warn` and without the autodiff flag in its
/// environment (the binary must set it itself).
pub fn terrain(args: &[&str]) -> Output {
    Command::new(terrain_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
        .output()
        .unwrap()
}

/// Starts `terrain` with `args` (environment as in [`terrain`], output discarded), polls until
/// `ready()` holds, asserting that it does within `limit` and that the run has not ended first,
/// then kills it with SIGKILL and waits for it: how the resume tests interrupt a long job. `what`
/// names the run in failure messages.
pub fn kill_when<S: AsRef<OsStr>>(
    args: &[S],
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) {
    let mut child = Command::new(terrain_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CANDLE_GRAD_DO_NOT_DETACH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < limit,
            "{what}: not ready to be killed after {limit:?}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what}: the run finished before it was killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Runs `terrain` with `args`, asserts success and parses stdout as JSON.
pub fn ok(args: &[&str]) -> serde_json::Value {
    let out = terrain(args);
    assert!(
        out.status.success(),
        "terrain {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Trains a checkpoint `dir/name` with `terrain train --arch ARCH --data DATA` and the `extra`
/// flags, asserts success, and returns its path.
pub fn train_checkpoint(
    dir: &std::path::Path,
    name: &str,
    arch: &str,
    data: &str,
    extra: &[&str],
) -> PathBuf {
    let path = dir.join(name);
    let out = path.to_str().expect("a UTF-8 temporary path");
    let mut args = vec!["train", "--arch", arch, "--data", data, "--out", out];
    args.extend_from_slice(extra);
    args.extend(["--format", "json"]);
    ok(&args);
    path
}

/// Runs `terrain` with `args`, asserts failure without a panic and returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = terrain(args);
    assert!(!out.status.success(), "terrain {args:?} should have failed");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !err.contains("panicked"),
        "terrain {args:?} panicked:\n{err}"
    );
    err
}
