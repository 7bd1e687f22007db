//! The one layer description: every architecture's tensors are declared once, in the order of
//! checkpoints; the model binds them; BatchNorm momentum comes from the spec; running statistics
//! can be recomputed (checked against an independent computation).

use candle_core::{DType, Device, Tensor};
use terrain_model::{
    ArchSpec, Model,
    data::{Dataset, Targets, Task},
    layers::NormMode,
    network::Layer,
    rng,
};

#[test]
fn the_description_declares_every_tensor_the_model_holds_in_order() {
    for s in [
        "mlp:4-8-3:relu",
        "mlp:4-8-8-3:gelu:bn:nobias",
        "cnn:1x8x8-4-6-10:tanh",
        "resnet18:3x8x8:w2:10",
    ] {
        let spec: ArchSpec = s.parse().unwrap();
        let model = Model::new(spec.clone(), DType::F32, &Device::Cpu, 0).unwrap();
        let declared: Vec<String> = spec.network().slots().into_iter().map(|t| t.name).collect();
        let held: Vec<String> = model
            .params()
            .iter()
            .chain(model.buffers())
            .map(|p| p.name.clone())
            .collect();
        let mut sorted_declared = declared.clone();
        sorted_declared.sort();
        let mut sorted_held = held.clone();
        sorted_held.sort();
        assert_eq!(sorted_declared, sorted_held, "{s}");
        // The bound network visits the same variables in declaration order.
        let bound: Vec<_> = model
            .network()
            .tensors()
            .into_iter()
            .map(|v| v.as_tensor().id())
            .collect();
        let by_name: std::collections::HashMap<_, _> = model
            .params()
            .iter()
            .chain(model.buffers())
            .map(|p| (p.name.clone(), p.var.as_tensor().id()))
            .collect();
        let expected: Vec<_> = declared.iter().map(|n| by_name[n]).collect();
        assert_eq!(bound, expected, "{s}");
    }
    let resnet: ArchSpec = "resnet18:3x32x32:w4:10".parse().unwrap();
    let blocks = resnet
        .network()
        .layers
        .iter()
        .filter(|l| matches!(l, Layer::Residual(_)))
        .count();
    assert_eq!(blocks, 8);
    assert_eq!(resnet.network().batch_norms().len(), 1 + 8 * 2 + 3);
}

#[test]
fn inspect_sees_every_top_level_layer_output() {
    let model = Model::new(
        "mlp:4-6-5-3:tanh".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        1,
    )
    .unwrap();
    let x = rng::normal_tensor(&[7, 4], 0, DType::F64, &Device::Cpu).unwrap();
    let mut widths = Vec::new();
    let out = model
        .network()
        .forward_inspect(&x, NormMode::Eval, &mut |_, _, h| {
            widths.push(h.dim(1)?);
            Ok(())
        })
        .unwrap();
    assert_eq!(widths, [6, 6, 5, 5, 3]);
    let direct = model.forward_t(&x, false).unwrap();
    assert_eq!(
        out.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        direct.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    );
}

fn regression_rows(n: usize, features: usize, seed: u64) -> Dataset {
    let x = rng::normal_tensor(&[n, features], seed, DType::F32, &Device::Cpu).unwrap();
    let y = rng::normal_tensor(&[n, 1], seed + 1, DType::F32, &Device::Cpu).unwrap();
    Dataset::new(
        "rows",
        x,
        Targets::Values(y),
        Task::Regression { outputs: 1 },
    )
    .unwrap()
}

/// The first Linear layer's outputs on every row, as f64 rows.
fn first_linear_outputs(model: &Model, x: &Tensor) -> Vec<Vec<f64>> {
    let Layer::Linear(l) = &model.network().layers[0] else {
        panic!("an MLP starts with a Linear layer")
    };
    l.forward(&x.to_dtype(DType::F64).unwrap())
        .unwrap()
        .to_vec2::<f64>()
        .unwrap()
}

#[test]
fn recomputed_statistics_are_the_batch_size_weighted_average_of_batch_statistics() {
    let model = Model::new(
        "mlp:3-4-2:relu:bn".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        2,
    )
    .unwrap();
    let data = regression_rows(23, 3, 5);
    let n = model.recompute_batch_norm_stats(&data, 10).unwrap();
    assert_eq!(n, 1);
    // Independently: batches of 10, 10, 3 rows of the first layer's outputs.
    let z = first_linear_outputs(&model, &data.x);
    let (mut mean, mut var) = (vec![0.0; 4], vec![0.0; 4]);
    for chunk in z.chunks(10) {
        let w = chunk.len() as f64 / z.len() as f64;
        for c in 0..4 {
            let m = chunk.iter().map(|r| r[c]).sum::<f64>() / chunk.len() as f64;
            let v =
                chunk.iter().map(|r| (r[c] - m).powi(2)).sum::<f64>() / (chunk.len() - 1) as f64;
            mean[c] += w * m;
            var[c] += w * v;
        }
    }
    let got_mean: Vec<f64> = model.buffers()[0].var.to_vec1().unwrap();
    let got_var: Vec<f64> = model.buffers()[1].var.to_vec1().unwrap();
    for c in 0..4 {
        assert!(
            (got_mean[c] - mean[c]).abs() < 1e-12,
            "{got_mean:?} {mean:?}"
        );
        assert!((got_var[c] - var[c]).abs() < 1e-12, "{got_var:?} {var:?}");
    }
    // Parameters are untouched and a model without BatchNorm is left alone.
    let plain = Model::new(
        "mlp:3-4-2:relu".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        2,
    )
    .unwrap();
    assert_eq!(plain.recompute_batch_norm_stats(&data, 10).unwrap(), 0);
    assert!(model.recompute_batch_norm_stats(&data, 0).is_err());
}

#[test]
fn batch_norm_momentum_comes_from_the_spec() {
    let spec: ArchSpec = "mlp:3-4-2:relu:bn=0.3".parse().unwrap();
    let model = Model::new(spec, DType::F64, &Device::Cpu, 3).unwrap();
    let data = regression_rows(8, 3, 9);
    let z = first_linear_outputs(&model, &data.x);
    model.forward_t(&data.x, true).unwrap();
    let got: Vec<f64> = model.buffers()[0].var.to_vec1().unwrap();
    for c in 0..4 {
        let m = z.iter().map(|r| r[c]).sum::<f64>() / 8.0;
        assert!((got[c] - 0.3 * m).abs() < 1e-12, "{got:?}");
    }
}
