//! Helpers shared by the end-to-end tests in `tests/`: run the workspace's `terrain` binary
//! (brought up to date once per test process) and check its exit status, JSON output and error messages.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

/// The `terrain` binary of this workspace, brought up to date once per test process: a test run
/// never drives a stale binary left by an earlier build (cargo builds test targets, not the
/// binaries of other packages). A no-op build when nothing changed.
pub fn terrain_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap();
            // target/<profile>/deps/cli-xxxx -> target/<profile>/terrain
            let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
            let target_dir = profile_dir.parent().unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "terrain-cli", "--bin", "terrain"])
                .env("CARGO_TARGET_DIR", target_dir);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().unwrap();
            assert!(status.success(), "building terrain failed");
            profile_dir.join(format!("terrain{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
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
