//! `terrain train` is a thin mapping onto terrain-model's training recipe: the recipe the binary
//! records in its checkpoint is the one its flags describe, and running that recipe through the
//! library gives bit-identical weights (and, with the host sweep installed as the binary installs
//! it, bit-identical evaluations: the sweep's forward pass rounds differently from candle's in
//! f32).

use std::path::Path;

use candle_core::{DType, Device};
use terrain_e2e::ok;
use terrain_model::{
    checkpoint::{self, LoadOptions},
    run::{RunOptions, RunSpec, Seeds},
    train::{LrDecay, Optimizer},
};

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let c = checkpoint::load(
        path,
        &LoadOptions {
            dtype: Some(DType::F32),
            device: Device::Cpu,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    c.model
        .params()
        .iter()
        .chain(c.model.buffers())
        .map(|p| {
            (
                p.name.clone(),
                p.var.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_cli_and_the_library_train_the_same_weights_from_the_same_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let cli_out = dir.path().join("cli.safetensors");
    let r = ok(&[
        "train",
        "--arch",
        "mlp:64-16-10:relu:bn",
        "--data",
        "digits",
        "--holdout",
        "0.25",
        "--subset",
        "0.5",
        "--label-noise",
        "0.1",
        "--standardize",
        "--epochs",
        "3",
        "--lr",
        "0.02",
        "--batch-size",
        "32",
        "--weight-decay",
        "0.0001",
        "--lr-decay",
        "step:2:0.5",
        "--seed",
        "11",
        "--out",
        cli_out.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(r["epochs"].as_array().unwrap().len(), 3);

    // The recipe the flags describe, written out through the library's types.
    let mut expected = RunSpec::new("mlp:64-16-10:relu:bn".parse().unwrap(), "digits", 11);
    expected.data.holdout = 0.25;
    expected.data.subset = 0.5;
    expected.data.label_noise = 0.1;
    expected.data.standardize = terrain_model::run::Standardize::On;
    expected.training.epochs = 3;
    expected.training.lr = 0.02;
    expected.training.batch_size = 32;
    expected.training.optimizer = Optimizer::Sgd {
        momentum: 0.9,
        weight_decay: 0.0001,
    };
    expected.training.lr_decay = LrDecay::Step {
        every: 2,
        gamma: 0.5,
    };
    assert_eq!(expected.seeds, Seeds::derive(11));

    let recorded = checkpoint::load(&cli_out, &LoadOptions::default())
        .unwrap()
        .record()
        .unwrap();
    assert_eq!(recorded.run.as_ref(), Some(&expected));
    assert_eq!(
        recorded.train_rows,
        r["train_rows"].as_u64().map(|n| n as usize)
    );

    // No set-up call: a library user trains with the engine the binary uses.
    let lib_out = dir.path().join("lib.safetensors");
    let outcome = expected
        .run(&RunOptions {
            checkpoint: Some(lib_out.clone()),
            ..RunOptions::default()
        })
        .unwrap();
    // The loss crossed a JSON document: serde_json's float parser may miss the last bit (the
    // weights below are compared bit for bit).
    let cli_loss = r["train"]["loss"].as_f64().unwrap();
    assert!(
        (outcome.train.loss - cli_loss).abs() <= 4.0 * f64::EPSILON * cli_loss.abs(),
        "same final training loss: {} against {cli_loss}",
        outcome.train.loss
    );
    assert_eq!(
        weights(&cli_out),
        weights(&lib_out),
        "bit-identical weights"
    );

    // A different seed stream changes the weights: the comparison above can fail.
    let mut other = expected.clone();
    other.seeds.init += 1;
    let changed = other.run(&RunOptions::default()).unwrap();
    assert_ne!(
        changed.model.params()[0]
            .var
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        weights(&lib_out)[0].1
    );
}
