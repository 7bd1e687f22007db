//! Having an integration test here makes `cargo test` build the `terrain` binary, which the
//! end-to-end tests in `tests/` drive.

#[test]
fn binary_runs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_terrain"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("terrain"));
}
