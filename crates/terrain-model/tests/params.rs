//! Parameter vectors: algebra, seeded directions, Li et al. filter normalisation, flattening.

use candle_core::{DType, Device};
use terrain_model::{Model, ParamVec, params::Normalization};

fn model() -> Model {
    Model::new(
        "cnn:1x4x4-3-2:tanh".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        1,
    )
    .unwrap()
}

#[test]
fn algebra_matches_flat_vectors() {
    let m = model();
    let a = ParamVec::random_gaussian(&m, 1).unwrap();
    let b = ParamVec::random_rademacher(&m, 2).unwrap();
    let (fa, fb) = (a.flatten().unwrap(), b.flatten().unwrap());
    assert_eq!(fa.len(), m.param_count());
    let dot: f64 = fa.iter().zip(&fb).map(|(x, y)| x * y).sum();
    assert!((a.dot(&b).unwrap() - dot).abs() < 1e-10);
    let axpy = a.axpy(-2.5, &b).unwrap().flatten().unwrap();
    for i in 0..fa.len() {
        assert!((axpy[i] - (fa[i] - 2.5 * fb[i])).abs() < 1e-12);
    }
    assert!(fb.iter().all(|v| v.abs() == 1.0));
    assert!((b.norm().unwrap() - (fb.len() as f64).sqrt()).abs() < 1e-12);
    let back = ParamVec::unflatten(&fa, &a).unwrap();
    assert_eq!(back.flatten().unwrap(), fa);
    assert!(ParamVec::unflatten(&fa[1..], &a).is_err());
}

#[test]
fn directions_are_seeded() {
    let m = model();
    let g = |s| ParamVec::random_gaussian(&m, s).unwrap().flatten().unwrap();
    assert_eq!(g(7), g(7));
    assert_ne!(g(7), g(8));
    // Standard normal entries: mean ≈ 0, variance ≈ 1 over many draws.
    let big = Model::new(
        "mlp:100-100-10:relu".parse().unwrap(),
        DType::F32,
        &Device::Cpu,
        0,
    )
    .unwrap();
    let v = ParamVec::random_gaussian(&big, 3)
        .unwrap()
        .flatten()
        .unwrap();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 0.05, "variance {var}");
}

#[test]
fn filter_normalisation_matches_li_et_al() {
    let m = model();
    let w = ParamVec::from_model(&m).unwrap();
    let d = ParamVec::random_gaussian(&m, 5).unwrap();
    let f = d.normalize_like(&w, Normalization::Filter).unwrap();
    for ((name, ft), wt) in f.names.iter().zip(&f.tensors).zip(&w.tensors) {
        if ft.rank() <= 1 {
            assert_eq!(
                ft.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                0.0,
                "{name}"
            );
            continue;
        }
        let o = ft.dim(0).unwrap();
        let fr: Vec<Vec<f64>> = ft.reshape((o, ())).unwrap().to_vec2().unwrap();
        let wr: Vec<Vec<f64>> = wt.reshape((o, ())).unwrap().to_vec2().unwrap();
        for (a, b) in fr.iter().zip(&wr) {
            let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((na - nb).abs() < 1e-8 * nb, "{name}: {na} vs {nb}");
        }
    }
    let keep = d.normalize_like(&w, Normalization::FilterKeepBias).unwrap();
    let bias = keep.names.iter().position(|n| n == "conv0.bias").unwrap();
    let (kb, wb): (Vec<f64>, Vec<f64>) = (
        keep.tensors[bias].to_vec1().unwrap(),
        w.tensors[bias].to_vec1().unwrap(),
    );
    assert_eq!(kb, wb);
    let layer = d.normalize_like(&w, Normalization::Layer).unwrap();
    for (lt, wt) in layer.tensors.iter().zip(&w.tensors) {
        let n = |t: &candle_core::Tensor| {
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                .sqrt()
        };
        assert!((n(lt) - n(wt)).abs() < 1e-8 * n(wt));
    }
}

#[test]
fn assigning_moves_the_model() {
    let m = model();
    let w0 = ParamVec::from_model(&m).unwrap();
    let d = ParamVec::random_gaussian(&m, 5).unwrap();
    w0.axpy(0.5, &d).unwrap().assign_to(&m).unwrap();
    let moved = ParamVec::from_model(&m).unwrap();
    assert!((moved.sub(&w0).unwrap().norm().unwrap() - 0.5 * d.norm().unwrap()).abs() < 1e-10);
    let other = Model::new(
        "mlp:16-3-2:tanh".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        0,
    )
    .unwrap();
    let e = ParamVec::from_model(&other)
        .unwrap()
        .assign_to(&m)
        .unwrap_err()
        .to_string();
    assert!(e.contains("parameter vector"), "{e}");
}

#[test]
fn varmap_shares_storage_with_the_model() {
    let m = model();
    let vm = m.varmap();
    assert_eq!(vm.all_vars().len(), m.params().len());
    let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    let w = vb.get((3, 1, 3, 3), "conv0.weight").unwrap();
    let mine: Vec<f64> = m.params()[0].var.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(w.flatten_all().unwrap().to_vec1::<f64>().unwrap(), mine);
    // A step of candle-nn's own optimiser moves the model's parameters.
    use candle_nn::Optimizer;
    let mut sgd = candle_nn::SGD::new(vm.all_vars(), 0.1).unwrap();
    let x = candle_core::Tensor::ones((2, 1, 4, 4), DType::F64, &Device::Cpu).unwrap();
    sgd.backward_step(&m.forward_t(&x, true).unwrap().sum_all().unwrap())
        .unwrap();
    let after: Vec<f64> = m.params()[0].var.flatten_all().unwrap().to_vec1().unwrap();
    assert_ne!(after, mine);
}
