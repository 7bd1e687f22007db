//! Helpers shared by the end-to-end tests in `tests/`: run the workspace's `terrain` binary
//! (building it on first use) and check its exit status, JSON output and error messages.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The `terrain` binary of this workspace, built on first use if needed.
pub fn terrain_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/cli-xxxx -> target/<profile>/terrain
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = dir.join(format!("terrain{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "terrain-cli", "--bin", "terrain"])
            .status()
            .unwrap();
        assert!(status.success(), "building terrain failed");
    }
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
