//! Checkpoints: terrain's own files and PyTorch `nn.Sequential` state dicts load and give the loss
//! of an independent plain-Rust reference; every kind of bad file is a clear error.

use std::{collections::BTreeMap, collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor};
use terrain_model::{
    ArchSpec, Error, Model, ParamVec,
    checkpoint::{self, LoadOptions},
    data::{Dataset, Targets, Task},
    loss,
};

/// A small deterministic data set: 20 rows of 4 features, 3 classes.
fn data() -> Dataset {
    let x: Vec<f32> = (0..80)
        .map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0)
        .collect();
    let y: Vec<u32> = (0..20).map(|i| (i * 5 % 3) as u32).collect();
    Dataset::new(
        "toy",
        Tensor::from_vec(x, (20, 4), &Device::Cpu).unwrap(),
        Targets::Classes(Tensor::from_vec(y, 20, &Device::Cpu).unwrap()),
        Task::Classification { classes: 3 },
    )
    .unwrap()
}

/// Plain-Rust forward pass and mean cross-entropy of a tanh MLP, from raw row-major weights.
fn reference_loss(layers: &[(Vec<f64>, Vec<f64>, usize, usize)], d: &Dataset) -> f64 {
    let x: Vec<Vec<f32>> = d.x.to_vec2().unwrap();
    let Targets::Classes(y) = &d.y else { panic!() };
    let y: Vec<u32> = y.to_vec1().unwrap();
    let mut total = 0.0;
    for (row, &label) in x.iter().zip(&y) {
        let mut h: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        for (li, (w, b, out, inp)) in layers.iter().enumerate() {
            let mut z = vec![0.0; *out];
            for o in 0..*out {
                z[o] = b[o] + (0..*inp).map(|i| w[o * inp + i] * h[i]).sum::<f64>();
            }
            h = if li + 1 < layers.len() {
                z.iter().map(|v| v.tanh()).collect()
            } else {
                z
            };
        }
        let m = h.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + h.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - h[label as usize];
    }
    total / y.len() as f64
}

fn pytorch_layers() -> Vec<(Vec<f64>, Vec<f64>, usize, usize)> {
    let mk = |n: usize, s: f64| {
        (0..n)
            .map(|i| ((i as f64 * 0.37 + s).sin()) * 0.5)
            .collect::<Vec<_>>()
    };
    vec![
        (mk(8 * 4, 0.1), mk(8, 0.2), 8, 4),
        (mk(3 * 8, 0.3), mk(3, 0.4), 3, 8),
    ]
}

/// Writes a PyTorch-style `state_dict` (f32, no metadata) of `nn.Sequential(Linear(4,8), Tanh(),
/// Linear(8,3))`, with optional edits.
fn write_state_dict(path: &Path, edit: impl Fn(&mut Vec<(String, Tensor)>)) {
    let layers = pytorch_layers();
    let mut tensors = Vec::new();
    for (i, (w, b, out, inp)) in layers.iter().enumerate() {
        let idx = 2 * i;
        let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        tensors.push((
            format!("{idx}.weight"),
            Tensor::from_vec(w32, (*out, *inp), &Device::Cpu).unwrap(),
        ));
        tensors.push((
            format!("{idx}.bias"),
            Tensor::from_vec(b32, *out, &Device::Cpu).unwrap(),
        ));
    }
    edit(&mut tensors);
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), None, path)
        .unwrap();
}

fn spec() -> ArchSpec {
    "mlp:4-8-3:tanh".parse().unwrap()
}

fn with_arch() -> LoadOptions {
    LoadOptions {
        arch: Some(spec()),
        ..LoadOptions::default()
    }
}

#[test]
fn pytorch_state_dict_gives_the_reference_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torch.safetensors");
    write_state_dict(&path, |_| {});
    let d = data();
    let ck = checkpoint::load(&path, &with_arch()).unwrap();
    assert_eq!(ck.model.dtype(), DType::F32);
    let got = loss::evaluate(&ck.model, &d, 7).unwrap().loss;
    // The f32 file holds rounded weights; compute the reference from those same values.
    let rounded: Vec<_> = pytorch_layers()
        .into_iter()
        .map(|(w, b, o, i)| {
            let r = |v: Vec<f64>| v.into_iter().map(|x| x as f32 as f64).collect::<Vec<_>>();
            (r(w), r(b), o, i)
        })
        .collect();
    let want = reference_loss(&rounded, &d);
    assert!(
        (got - want).abs() < 1e-5 * want.abs(),
        "loss {got} vs reference {want}"
    );
    // In f64 the agreement is much tighter.
    let ck64 = checkpoint::load(
        &path,
        &LoadOptions {
            dtype: Some(DType::F64),
            ..with_arch()
        },
    )
    .unwrap();
    let got64 = loss::evaluate(&ck64.model, &d, 20).unwrap().loss;
    assert!(
        (got64 - want).abs() < 1e-12,
        "f64 loss {got64} vs reference {want}"
    );
}

#[test]
fn terrain_checkpoint_round_trips_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/model.safetensors");
    for s in ["mlp:4-8-3:tanh", "mlp:4-6-3:relu:bn", "cnn:1x4x4-2-3:gelu"] {
        let spec: ArchSpec = s.parse().unwrap();
        let model = Model::new(spec.clone(), DType::F64, &Device::Cpu, 9).unwrap();
        for b in model.buffers() {
            b.var
                .set(&(b.var.ones_like().unwrap() * 0.7).unwrap())
                .unwrap();
        }
        let mut extra = BTreeMap::new();
        extra.insert("note".to_string(), "hello".to_string());
        checkpoint::save(&model, &path, &extra).unwrap();
        let back = checkpoint::load(&path, &LoadOptions::default()).unwrap();
        assert_eq!(back.model.spec(), &spec);
        assert_eq!(back.model.dtype(), DType::F64);
        assert_eq!(back.metadata["note"], "hello");
        let a = ParamVec::from_model(&model).unwrap().flatten().unwrap();
        let b = ParamVec::from_model(&back.model)
            .unwrap()
            .flatten()
            .unwrap();
        assert_eq!(a, b);
        for (x, y) in model.buffers().iter().zip(back.model.buffers()) {
            assert_eq!(x.name, y.name);
            let (x, y): (Vec<f64>, Vec<f64>) = (x.var.to_vec1().unwrap(), y.var.to_vec1().unwrap());
            assert_eq!(x, y);
        }
        let shape: Vec<usize> = [3usize]
            .iter()
            .chain(&spec.input_shape())
            .cloned()
            .collect();
        let xin = terrain_model::rng::normal_tensor(&shape, 3, DType::F64, &Device::Cpu).unwrap();
        let o1: Vec<Vec<f64>> = model.forward_t(&xin, false).unwrap().to_vec2().unwrap();
        let o2: Vec<Vec<f64>> = back
            .model
            .forward_t(&xin, false)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(o1, o2);
        // Loaded tensors are trainable variables, not constants.
        let l = back
            .model
            .forward_t(&xin, false)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = l.backward().unwrap();
        assert!(g.get(back.model.params()[0].var.as_tensor()).is_some());
    }
}

fn load_err(path: &Path, opts: &LoadOptions) -> (Error, String) {
    let e = checkpoint::load(path, opts).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn missing_file_names_the_path() {
    let (e, msg) = load_err(Path::new("/nonexistent/w.safetensors"), &with_arch());
    assert!(matches!(e, Error::Io { .. }));
    assert!(msg.contains("/nonexistent/w.safetensors"), "{msg}");
}

#[test]
fn truncated_and_corrupt_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    write_state_dict(&path, |_| {});
    let bytes = std::fs::read(&path).unwrap();
    for (what, content) in [
        ("truncated", bytes[..bytes.len() - 10].to_vec()),
        ("header only", bytes[..20].to_vec()),
        ("garbage", b"this is not a safetensors file at all".to_vec()),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &content).unwrap();
        let (e, msg) = load_err(&path, &with_arch());
        assert!(matches!(e, Error::Safetensors { .. }), "{what}: {msg}");
        assert!(msg.contains("t.safetensors"), "{what}: {msg}");
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_state_dict(&path, |t| t.retain(|(n, _)| n != "2.bias"));
    let (e, msg) = load_err(&path, &with_arch());
    assert!(matches!(e, Error::MissingTensor { .. }), "{msg}");
    assert!(
        msg.contains("`2.bias`") && msg.contains("0.weight"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    write_state_dict(&path, |t| {
        t[0].1 = Tensor::zeros((4, 8), DType::F32, &Device::Cpu).unwrap()
    });
    let (e, msg) = load_err(&path, &with_arch());
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{msg}");
    assert!(
        msg.contains("`0.weight`") && msg.contains("[4, 8]") && msg.contains("[8, 4]"),
        "{msg}"
    );
}

#[test]
fn nan_and_inf_weights_are_named_with_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.safetensors");
    for bad in [f32::NAN, f32::INFINITY] {
        write_state_dict(&path, |t| {
            let mut v: Vec<f32> = t[3].1.to_vec1().unwrap();
            v[2] = bad;
            t[3].1 = Tensor::from_vec(v, 3, &Device::Cpu).unwrap();
        });
        let (e, msg) = load_err(&path, &with_arch());
        assert!(matches!(e, Error::NonFinite { index: 2, .. }), "{msg}");
        assert!(
            msg.contains("`2.bias`") && msg.contains("n.safetensors"),
            "{msg}"
        );
    }
}

#[test]
fn architecture_problems_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    write_state_dict(&path, |_| {});
    // No metadata and no architecture given (the binary adds the --arch hint).
    let (e, msg) = load_err(&path, &LoadOptions::default());
    assert!(matches!(e, Error::MissingArchitecture { .. }), "{msg}");
    assert!(msg.contains("give one"), "{msg}");
    // A spec whose tensors the file lacks.
    let (e, msg) = load_err(
        &path,
        &LoadOptions {
            arch: Some("mlp:4-8-8-3:tanh".parse().unwrap()),
            ..Default::default()
        },
    );
    assert!(matches!(e, Error::MissingTensor { .. }), "{msg}");
    // A file with a tensor the spec does not have.
    write_state_dict(&path, |t| {
        t.push((
            "classifier.weight".into(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        ))
    });
    let (e, msg) = load_err(&path, &with_arch());
    assert!(
        matches!(e, Error::UnexpectedTensor { .. }) && msg.contains("classifier.weight"),
        "{msg}"
    );
    // An integer tensor where weights belong.
    write_state_dict(&path, |t| {
        t[1].1 = Tensor::zeros(8, DType::I64, &Device::Cpu).unwrap()
    });
    let (e, msg) = load_err(&path, &with_arch());
    assert!(
        matches!(e, Error::DtypeMismatch { .. }) && msg.contains("0.bias"),
        "{msg}"
    );
    // A terrain checkpoint loaded with a different --arch.
    let model = Model::new(spec(), DType::F32, &Device::Cpu, 0).unwrap();
    checkpoint::save(&model, &path, &BTreeMap::new()).unwrap();
    let (e, msg) = load_err(
        &path,
        &LoadOptions {
            arch: Some("mlp:4-9-3:tanh".parse().unwrap()),
            ..Default::default()
        },
    );
    assert!(
        matches!(e, Error::Spec { .. }) && msg.contains("mlp:4-8-3:tanh"),
        "{msg}"
    );
}

#[test]
fn pytorch_batchnorm_counter_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bn.safetensors");
    let spec: ArchSpec = "mlp:4-6-3:relu:bn".parse().unwrap();
    let model = Model::new(spec.clone(), DType::F32, &Device::Cpu, 0).unwrap();
    let mut tensors: HashMap<String, Tensor> = model
        .params()
        .iter()
        .chain(model.buffers())
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    tensors.insert(
        "1.num_batches_tracked".into(),
        Tensor::new(5i64, &Device::Cpu).unwrap(),
    );
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), None, &path)
        .unwrap();
    let back = checkpoint::load(
        &path,
        &LoadOptions {
            arch: Some(spec),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(back.model.buffers().len(), 2);
}
