//! End-to-end tests of `cargo xtask datasets ...`, run against a fake Hugging Face cache.
//! Every run is offline (HF_HUB_OFFLINE=1 or --offline) with a dead endpoint: no test touches
//! the network.

use std::path::Path;
use std::process::{Command, Output};

use terrain_model::data::{self, hub, hub::fixture};

/// Runs the xtask binary with `HF_HOME` at `hf_home` and a clean Hugging Face environment.
fn xtask(hf_home: &Path, args: &[&str], offline_env: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("RUST_LOG", "info")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("TERRAIN_DATA_DIR");
    if offline_env {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    cmd.output().expect("the xtask binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Fills `{hf_home}/hub` with MNIST-shaped train (4 rows) and test (2 rows) parquet files.
fn fake_mnist_cache(hf_home: &Path) {
    let spec = hub::spec("mnist").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (split, n) in [("train", 4usize), ("test", 2)] {
        let rows: Vec<fixture::Row> = (0..n)
            .map(|k| {
                let px: Vec<u8> = (0..784).map(|i| ((i + 31 * k) % 256) as u8).collect();
                fixture::Row::new(
                    fixture::encode_png(28, 28, 1, &px).unwrap(),
                    (k % 10) as i64,
                )
            })
            .collect();
        let p = dir.path().join(format!("{split}.parquet"));
        fixture::write_parquet(&p, spec, &rows).unwrap();
        fixture::install(
            &hf_home.join("hub"),
            spec,
            split,
            &std::fs::read(&p).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn fetch_from_the_cache_then_list_then_resume() {
    let hf_home = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let dd = data_dir.path().to_str().unwrap();
    fake_mnist_cache(hf_home.path());

    // HF_HUB_OFFLINE=1 alone (no --offline) keeps it to the cache.
    let o = xtask(
        hf_home.path(),
        &["datasets", "fetch", "mnist", "--data-dir", dd],
        true,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("mnist-train.safetensors") && out.contains("mnist-test.safetensors"),
        "{out}"
    );

    let opts = data::LoadOptions {
        data_dir: Some(data_dir.path().to_path_buf()),
        ..Default::default()
    };
    let train = data::load("mnist", &opts).unwrap();
    assert_eq!(train.x.dims(), [4, 1, 28, 28]);
    assert_eq!(train.labels().unwrap().unwrap(), vec![0, 1, 2, 3]);
    let first = train.x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(first[784 + 5], (5 + 31) as f32 / 255.0);
    let test = data::load("mnist:test", &opts).unwrap();
    assert_eq!(test.len(), 2);

    let o = xtask(
        hf_home.path(),
        &["datasets", "list", "--data-dir", dd],
        false,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let mnist_line = out.lines().find(|l| l.starts_with("mnist ")).unwrap();
    assert!(
        mnist_line.contains("fetched (4 rows)") && mnist_line.contains("fetched (2 rows)"),
        "{out}"
    );
    assert!(out.contains("not fetched"), "{out}");

    // A second fetch skips both splits.
    let o = xtask(
        hf_home.path(),
        &["datasets", "fetch", "mnist", "--data-dir", dd, "--offline"],
        false,
    );
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("already fetched").count(), 2, "{err}");
}

#[test]
fn offline_with_an_empty_cache_fails_clearly() {
    let hf_home = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let dd = data_dir.path().to_str().unwrap();
    let o = xtask(
        hf_home.path(),
        &["datasets", "fetch", "all", "--offline", "--data-dir", dd],
        false,
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    for part in [
        "mnist/train-00000-of-00001.parquet",
        "fashion_mnist/train-00000-of-00001.parquet",
        "plain_text/train-00000-of-00001.parquet",
        "HF_HUB_OFFLINE",
        "could not fetch: mnist, fashion-mnist, cifar10",
    ] {
        assert!(err.contains(part), "`{part}` missing from:\n{err}");
    }
    assert!(
        err.contains(&hf_home.path().join("hub").display().to_string()),
        "{err}"
    );
}

#[test]
fn unknown_names_and_missing_arguments_are_rejected() {
    let hf_home = tempfile::tempdir().unwrap();
    let o = xtask(
        hf_home.path(),
        &["datasets", "fetch", "svhn", "--offline"],
        false,
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("svhn") && err.contains("mnist, fashion-mnist, cifar10"),
        "{err}"
    );

    let o = xtask(hf_home.path(), &["datasets", "fetch"], false);
    assert!(!o.status.success());

    let o = xtask(hf_home.path(), &["datasets", "--help"], false);
    let (out, _) = text(&o);
    assert!(
        o.status.success() && out.contains("list") && out.contains("fetch"),
        "{out}"
    );
}
