//! The host sweep (the default [`Backend::Auto`] on the CPU: plain buffers, direct matrix
//! products) against the sweep on candle tensors ([`Backend::Tensor`]), which `tests/rop.rs`
//! checks against double backward and central finite differences: the gradient, exact
//! Hessian-vector products, Gauss–Newton products, `apply_many` with three directions and the
//! exact diagonal (Hessian and Gauss–Newton), on every case of `tests/rop.rs` (f64, relative
//! error ≤ 1e-12), plus f32 comparisons; and the host diagonal against the dense Hessian's.

use candle_core::{DType, Device, Tensor};
use terrain_curvature::{
    Curvature, DenseHessian, HessianConfig, HessianOperator, HvpMethod, LinearOperator,
    ParamFilter, diagonal,
    vector::{self, Probe},
};
use terrain_model::{ArchSpec, Model, data::Dataset, engine::Backend, loss::LossKind};
use terrain_testkit::{case_data as data, in_pool, randomize_batch_norm, rel_err};

/// The cases of `tests/rop.rs`, a wider ReLU CNN with max pooling and a stride-2 ResNet.
const CASES: &[(&str, LossKind)] = &[
    ("mlp:5-7-6-3:relu", LossKind::Ce),
    ("mlp:5-7-6-3:tanh", LossKind::Ce),
    ("mlp:5-7-6-3:gelu", LossKind::Ce),
    ("mlp:5-7-6-3:silu", LossKind::Ce),
    ("mlp:5-7-6-3:sigmoid", LossKind::Ce),
    ("mlp:5-7-6-3:softplus", LossKind::Ce),
    ("mlp:5-2:tanh", LossKind::Mse),
    ("mlp:5-8-2:tanh", LossKind::Mse),
    ("mlp:5-7-3:tanh:nobias", LossKind::Ce),
    ("mlp:5-7-6-3:tanh:bn", LossKind::Ce),
    ("mlp:5-7-6-3:gelu:bn", LossKind::Ce),
    ("mlp:2-9-9-2:relu:bn:nobias", LossKind::Ce),
    ("cnn:2x8x8-3-4-3:relu", LossKind::Ce),
    ("cnn:1x4x4-3-3:tanh", LossKind::Ce),
    ("cnn:1x8x8-3-4-3:tanh", LossKind::Ce),
    ("cnn:1x4x4-2-2:softplus", LossKind::Mse),
    ("resnet18:3x8x8:w2:4", LossKind::Ce),
    ("resnet18:3x8x8:w1:3", LossKind::Ce),
    ("resnet18:3x8x8:w1:3:act=tanh", LossKind::Ce),
];

/// The operators' settings: two batches (the second smaller) where the data allow.
fn config(
    d: &Dataset,
    loss: LossKind,
    curvature: Curvature,
    filter: &ParamFilter,
    hvp: HvpMethod,
) -> HessianConfig {
    HessianConfig {
        batch_size: if d.len() > 16 { d.len() - 8 } else { 4 },
        hvp,
        curvature,
        filter: filter.clone(),
        ..HessianConfig::new(loss)
    }
}

fn operator<'m>(
    m: &'m Model,
    d: &Dataset,
    loss: LossKind,
    curvature: Curvature,
    filter: &ParamFilter,
    engine: Backend,
) -> HessianOperator<'m> {
    let config = config(d, loss, curvature, filter, HvpMethod::Rop);
    HessianOperator::new(m, d, config)
        .unwrap()
        .with_backend(engine)
}

/// Host against candle: loss (and the loss alone, beside candle's forward pass), gradient, one product and three batched products, Hessian and
/// Gauss–Newton; returns the largest relative error.
fn compare(m: &Model, d: &Dataset, loss: LossKind, filter: &ParamFilter, what: &str) -> f64 {
    let mut worst: f64 = 0.0;
    for curvature in [Curvature::Hessian, Curvature::GaussNewton] {
        let host = operator(m, d, loss, curvature, filter, Backend::Auto);
        let candle = operator(m, d, loss, curvature, filter, Backend::Tensor);
        if curvature == Curvature::Hessian {
            let (lh, gh) = host.loss_and_gradient().unwrap();
            let (lc, gc) = candle.loss_and_gradient().unwrap();
            let el = (lh - lc).abs() / lc.abs().max(f64::MIN_POSITIVE);
            let eg = rel_err(&gh, &gc);
            assert!(
                vector::dot(&gc, &gc).unwrap() > 0.0,
                "{what}: zero gradient"
            );
            worst = worst.max(el).max(eg);
            // The loss alone: the host's forward pass without a tape, the candle sweep's, and
            // candle's own forward pass (the double-backward operator's).
            let autodiff = config(d, loss, curvature, filter, HvpMethod::DoubleBackward);
            let forward = HessianOperator::new(m, d, autodiff)
                .unwrap()
                .loss()
                .unwrap();
            for l in [lh, host.loss().unwrap(), candle.loss().unwrap()] {
                worst = worst.max((l - forward).abs() / forward.abs());
            }
        }
        let vs: Vec<Tensor> = (0..3)
            .map(|s| {
                vector::random(host.dim(), Probe::Gaussian, 20 + s, m.dtype(), &Device::Cpu)
                    .unwrap()
            })
            .collect();
        let one_h = host.apply(&vs[0]).unwrap();
        let one_c = candle.apply(&vs[0]).unwrap();
        assert!(
            vector::dot(&one_c, &one_c).unwrap() > 1e-20,
            "{what}: zero product"
        );
        worst = worst.max(rel_err(&one_h, &one_c));
        let many_h = host.apply_many(&vs).unwrap();
        let many_c = candle.apply_many(&vs).unwrap();
        for (a, b) in many_h.iter().zip(&many_c) {
            worst = worst.max(rel_err(a, b));
        }
    }
    worst
}

/// The f64 model with randomised BatchNorm statistics, in `dtype` (values rounded from f64).
fn model(spec: &str, dtype: DType) -> (ArchSpec, Model) {
    let spec: ArchSpec = spec.parse().unwrap();
    let m64 = Model::new(spec.clone(), DType::F64, &Device::Cpu, 3).unwrap();
    randomize_batch_norm(&m64, 5);
    if dtype == DType::F64 {
        return (spec, m64);
    }
    let m = Model::new(spec.clone(), dtype, &Device::Cpu, 3).unwrap();
    for (a, b) in m
        .params()
        .iter()
        .chain(m.buffers())
        .zip(m64.params().iter().chain(m64.buffers()))
    {
        a.var
            .set(&b.var.as_tensor().to_dtype(dtype).unwrap())
            .unwrap();
    }
    (spec, m)
}

#[test]
fn host_sweep_equals_candle_sweep_on_every_rop_case_f64() {
    for &(spec_str, loss) in CASES {
        let (spec, m) = model(spec_str, DType::F64);
        let d = data(&spec, 6, loss);
        let e = compare(&m, &d, loss, &ParamFilter::all(), spec_str);
        eprintln!("{spec_str}: host vs candle sweep {e:.1e}");
        assert!(e <= 1e-12, "{spec_str}: host vs candle sweep {e:e}");
    }
}

#[test]
fn host_sweep_equals_candle_sweep_on_soft_targets_and_parameter_blocks() {
    let (spec, m) = model("mlp:4-5-3:tanh", DType::F64);
    let soft = terrain_testkit::soft_labels(&data(&spec, 6, LossKind::Ce), 2);
    let e = compare(&m, &soft, LossKind::Ce, &ParamFilter::all(), "soft");
    assert!(e <= 1e-12, "soft targets: {e:e}");
    for (spec_str, pattern) in [
        ("mlp:5-7-6-3:tanh:bn", "1"),
        ("mlp:5-7-6-3:tanh:bn", "*.bias"),
        ("mlp:5-7-6-3:tanh:bn", "3.weight"),
        ("cnn:2x8x8-3-4-3:relu", "fc"),
        ("resnet18:3x8x8:w2:4", "layer2"),
    ] {
        let (spec, m) = model(spec_str, DType::F64);
        let d = data(&spec, 6, LossKind::Ce);
        let e = compare(&m, &d, LossKind::Ce, &ParamFilter::new([pattern]), pattern);
        eprintln!("{spec_str} block {pattern}: {e:.1e}");
        assert!(e <= 1e-12, "{spec_str} block {pattern}: {e:e}");
    }
}

/// In f32 the two sweeps round differently; they agree to single precision.
#[test]
fn host_sweep_agrees_with_candle_sweep_in_f32() {
    for &(spec_str, loss) in &[
        ("mlp:5-7-6-3:tanh:bn", LossKind::Ce),
        ("cnn:1x8x8-3-4-3:tanh", LossKind::Ce),
        ("resnet18:3x8x8:w2:4", LossKind::Ce),
        ("mlp:5-8-2:tanh", LossKind::Mse),
    ] {
        let (spec, m) = model(spec_str, DType::F32);
        let d = data(&spec, 6, loss);
        let e = compare(&m, &d, loss, &ParamFilter::all(), spec_str);
        eprintln!("{spec_str} f32: host vs candle sweep {e:.1e}");
        assert!(e <= 1e-5, "{spec_str} f32: {e:e}");
    }
}

/// Batches large enough for the parallel paths (split products, elementwise blocks, per-image
/// im2col, pooling), and a weight large enough for the parallel transpose (241×300, neither a
/// multiple of its 8×8 tiles), run in a two-thread pool whatever the environment says.
#[test]
fn host_sweep_equals_candle_sweep_on_large_batches_in_parallel() {
    in_pool(2, || {
        assert_eq!(rayon::current_num_threads(), 2);
        for (spec_str, loss, rows) in [
            ("cnn:1x16x16-8-8-3:tanh", LossKind::Ce, 72),
            ("cnn:2x16x16-8-4:relu", LossKind::Mse, 40),
            ("mlp:64-300-10:gelu:bn", LossKind::Ce, 300),
            ("mlp:300-241-3:tanh", LossKind::Ce, 40),
        ] {
            let (spec, m) = model(spec_str, DType::F64);
            let d = data(&spec, rows, loss);
            let e = compare(&m, &d, loss, &ParamFilter::all(), spec_str);
            eprintln!("{spec_str}, {rows} rows, 2 threads: host vs candle sweep {e:.1e}");
            assert!(e <= 1e-12, "{spec_str}: {e:e}");
        }
    });
}

/// The exact diagonal of one engine's operator (`exact_diagonal_sweep`) on `curvature`.
fn diagonal_by(
    m: &Model,
    d: &Dataset,
    loss: LossKind,
    curvature: Curvature,
    filter: &ParamFilter,
    engine: Backend,
) -> Vec<f64> {
    let op = operator(m, d, loss, curvature, filter, engine);
    diagonal::exact_diagonal_sweep(&op).unwrap()
}

/// `‖a − b‖ / ‖b‖` of two flat vectors, and `‖b‖`.
fn rel_vec(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let nb: f64 = b.iter().map(|y| y * y).sum();
    ((d / nb.max(f64::MIN_POSITIVE)).sqrt(), nb.sqrt())
}

/// Host against candle exact diagonal, Hessian and Gauss–Newton; the largest relative error.
fn compare_diagonal(
    m: &Model,
    d: &Dataset,
    loss: LossKind,
    filter: &ParamFilter,
    what: &str,
) -> f64 {
    let mut worst: f64 = 0.0;
    for curvature in [Curvature::Hessian, Curvature::GaussNewton] {
        let host = diagonal_by(m, d, loss, curvature, filter, Backend::Auto);
        let candle = diagonal_by(m, d, loss, curvature, filter, Backend::Tensor);
        let (e, norm) = rel_vec(&host, &candle);
        assert!(norm > 1e-12, "{what} {curvature:?}: zero diagonal");
        worst = worst.max(e);
    }
    worst
}

#[test]
fn host_diagonal_equals_candle_diagonal_on_every_rop_case_f64() {
    for &(spec_str, loss) in CASES {
        let (spec, m) = model(spec_str, DType::F64);
        let d = data(&spec, 6, loss);
        let e = compare_diagonal(&m, &d, loss, &ParamFilter::all(), spec_str);
        eprintln!("{spec_str}: host vs candle exact diagonal {e:.1e}");
        assert!(
            e <= 1e-12,
            "{spec_str}: host vs candle exact diagonal {e:e}"
        );
    }
    // Soft targets, and parameter blocks (dead inputs, factors met only after a block).
    let (spec, m) = model("mlp:4-5-3:tanh", DType::F64);
    let soft = terrain_testkit::soft_labels(&data(&spec, 6, LossKind::Ce), 2);
    let e = compare_diagonal(&m, &soft, LossKind::Ce, &ParamFilter::all(), "soft");
    assert!(e <= 1e-12, "soft targets: {e:e}");
    for (spec_str, pattern) in [
        ("mlp:5-7-6-3:gelu:bn", "1"),
        ("mlp:5-7-6-3:tanh:bn", "3.weight"),
        ("cnn:1x8x8-3-4-3:tanh", "conv0"),
        ("resnet18:3x8x8:w2:4", "layer2"),
    ] {
        let (spec, m) = model(spec_str, DType::F64);
        let d = data(&spec, 6, LossKind::Ce);
        let e = compare_diagonal(&m, &d, LossKind::Ce, &ParamFilter::new([pattern]), pattern);
        eprintln!("{spec_str} block {pattern}: {e:.1e}");
        assert!(e <= 1e-12, "{spec_str} block {pattern}: {e:e}");
    }
}

/// The host diagonal against the diagonal of the dense Hessian (double backward) on tiny smooth
/// models with every layer kind the host sweep has: convolution with max pooling and flatten,
/// BatchNorm, residual blocks with BatchNorm and a strided shortcut (ReLU, tanh and GELU ResNets).
#[test]
fn host_diagonal_equals_the_dense_diagonal() {
    for (spec_str, loss, filter) in [
        ("cnn:1x8x8-3-4-3:tanh", LossKind::Ce, ParamFilter::all()),
        ("cnn:1x4x4-2-2:softplus", LossKind::Mse, ParamFilter::all()),
        ("mlp:5-7-6-3:gelu:bn", LossKind::Ce, ParamFilter::all()),
        ("mlp:5-8-2:tanh", LossKind::Mse, ParamFilter::all()),
        (
            "resnet18:3x8x8:w1:3",
            LossKind::Ce,
            ParamFilter::new(["conv1", "bn1", "layer1.0", "layer2.0"]),
        ),
        // Smooth: residual factors born inside a block's branch, and ones that enter both.
        (
            "resnet18:3x8x8:w1:3:act=tanh",
            LossKind::Ce,
            ParamFilter::new(["conv1", "bn1", "layer1.0", "layer2.0"]),
        ),
        (
            "resnet18:3x8x8:w1:3:act=gelu",
            LossKind::Ce,
            ParamFilter::new(["layer1.1", "layer2.0.conv2", "layer2.0.shortcut"]),
        ),
    ] {
        let (spec, m) = model(spec_str, DType::F64);
        let d = data(&spec, 6, loss);
        for curvature in [Curvature::Hessian, Curvature::GaussNewton] {
            let swept = diagonal_by(&m, &d, loss, curvature, &filter, Backend::Auto);
            let config = HessianConfig {
                batch_size: if d.len() > 16 { d.len() - 8 } else { 4 },
                hvp: HvpMethod::DoubleBackward,
                curvature,
                filter: filter.clone(),
                ..HessianConfig::new(loss)
            };
            let ad = HessianOperator::new(&m, &d, config).unwrap();
            let dense = DenseHessian::compute(&ad, 10_000).unwrap().diagonal();
            let scale = dense.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let err = swept
                .iter()
                .zip(&dense)
                .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
            eprintln!(
                "{spec_str} {curvature:?}: host diagonal vs dense {:.1e}",
                err / scale
            );
            assert!(
                scale > 0.0 && err <= 1e-10 * scale,
                "{spec_str} {curvature:?}: host diagonal vs dense {err:e} (scale {scale:e})"
            );
        }
    }
}

/// The diagonal in f32 (single-precision agreement), and on batches large enough for the
/// parallel paths in a two-thread pool.
#[test]
fn host_diagonal_agrees_in_f32_and_in_parallel() {
    for spec_str in [
        "mlp:5-7-6-3:tanh:bn",
        "cnn:1x8x8-3-4-3:tanh",
        "resnet18:3x8x8:w2:4",
    ] {
        let (spec, m) = model(spec_str, DType::F32);
        let d = data(&spec, 6, LossKind::Ce);
        let e = compare_diagonal(&m, &d, LossKind::Ce, &ParamFilter::all(), spec_str);
        eprintln!("{spec_str} f32: host vs candle exact diagonal {e:.1e}");
        assert!(e <= 1e-5, "{spec_str} f32: {e:e}");
    }
    in_pool(2, || {
        for (spec_str, loss, rows) in [
            ("cnn:1x16x16-8-8-3:tanh", LossKind::Ce, 24),
            ("cnn:2x16x16-8-4:relu", LossKind::Mse, 40),
            ("mlp:64-100-10:gelu:bn", LossKind::Ce, 120),
        ] {
            let (spec, m) = model(spec_str, DType::F64);
            let d = data(&spec, rows, loss);
            let e = compare_diagonal(&m, &d, loss, &ParamFilter::all(), spec_str);
            eprintln!("{spec_str}, {rows} rows, 2 threads: host vs candle diagonal {e:.1e}");
            assert!(e <= 1e-12, "{spec_str}: {e:e}");
        }
    });
}

/// A smooth activation whose residual factor would pass the limit is the same clear error on
/// both engines.
#[test]
fn host_diagonal_keeps_the_residual_factor_limit() {
    let (spec, m) = model("mlp:3-1200-2:tanh", DType::F32);
    let d = data(&spec, 100, LossKind::Ce);
    let errors: Vec<String> = [Backend::Auto, Backend::Tensor]
        .into_iter()
        .map(|engine| {
            let config = HessianConfig {
                batch_size: 100,
                ..HessianConfig::new(LossKind::Ce)
            };
            let op = HessianOperator::new(&m, &d, config)
                .unwrap()
                .with_backend(engine);
            match diagonal::exact_diagonal_sweep(&op).unwrap_err() {
                e @ terrain_curvature::Error::Unsupported { .. } => e.to_string(),
                other => panic!("{engine:?}: {other}"),
            }
        })
        .collect();
    assert_eq!(errors[0], errors[1]);
    assert!(
        errors[0].contains("1200 features") && errors[0].contains("smaller batch"),
        "{}",
        errors[0]
    );
    // The Gauss–Newton diagonal has no residual factors, so no limit.
    let config = HessianConfig {
        batch_size: 100,
        curvature: Curvature::GaussNewton,
        ..HessianConfig::new(LossKind::Ce)
    };
    let op = HessianOperator::new(&m, &d, config).unwrap();
    assert!(diagonal::exact_diagonal_sweep(&op).is_ok());
}

/// The host sweep's numbers do not depend on the thread count: a batch is split into a fixed
/// number of blocks (and a kernel's diagonal summed in fixed blocks) whatever the pool, so one
/// and two threads give bit-identical losses, gradients, products and diagonals in f32.
/// Buffers come back from the pool with arbitrary contents, of other lengths, or not at all
/// (after `release_host_buffers`): the numbers must not change.
#[test]
fn host_sweep_gives_the_same_bits_from_pooled_and_fresh_buffers() {
    let (spec, m) = model("cnn:1x8x8-3-4-3:tanh", DType::F64);
    let d = data(&spec, 40, LossKind::Ce);
    let op = operator(
        &m,
        &d,
        LossKind::Ce,
        Curvature::Hessian,
        &ParamFilter::all(),
        Backend::Auto,
    );
    let v = vector::random(op.dim(), Probe::Rademacher, 3, DType::F64, &Device::Cpu).unwrap();
    let bits = |t: &Tensor| {
        t.to_vec1::<f64>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    terrain_model::engine::release_host_buffers();
    let fresh = (
        bits(&op.loss_and_gradient().unwrap().1),
        bits(&op.apply(&v).unwrap()),
    );
    // A larger model's sweep leaves larger buffers of other sizes in the pool.
    let (big_spec, big) = model("resnet18:3x8x8:w2:4", DType::F64);
    let big_d = data(&big_spec, 40, LossKind::Ce);
    operator(
        &big,
        &big_d,
        LossKind::Ce,
        Curvature::Hessian,
        &ParamFilter::all(),
        Backend::Auto,
    )
    .loss_and_gradient()
    .unwrap();
    for _ in 0..2 {
        let pooled = (
            bits(&op.loss_and_gradient().unwrap().1),
            bits(&op.apply(&v).unwrap()),
        );
        assert_eq!(pooled, fresh);
    }
}

#[test]
fn host_sweep_gives_the_same_bits_on_one_and_two_threads() {
    let run = |threads: usize, spec_str: &str, rows: usize| {
        in_pool(threads, || {
            let (spec, m) = model(spec_str, DType::F32);
            let d = data(&spec, rows, LossKind::Ce);
            let all = ParamFilter::all();
            let op = operator(
                &m,
                &d,
                LossKind::Ce,
                Curvature::Hessian,
                &all,
                Backend::Auto,
            );
            let (l, g) = op.loss_and_gradient().unwrap();
            let v = vector::random(op.dim(), Probe::Gaussian, 7, DType::F32, &Device::Cpu).unwrap();
            let hv = op.apply(&v).unwrap();
            let diag = diagonal::exact_diagonal_sweep(&op).unwrap();
            let flat = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            (l, flat(&g), flat(&hv), diag)
        })
    };
    for (spec_str, rows) in [("cnn:2x16x16-8-4:relu", 40), ("mlp:64-100-10:gelu:bn", 120)] {
        let one = run(1, spec_str, rows);
        let two = run(2, spec_str, rows);
        assert_eq!(one.0.to_bits(), two.0.to_bits(), "{spec_str}: loss");
        for (what, a, b) in [
            ("gradient", &one.1, &two.1),
            ("HVP", &one.2, &two.2),
            ("diagonal", &one.3, &two.3),
        ] {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{spec_str}: {what} differs between one and two threads"
            );
        }
    }
}

/// The host sweep reads a contiguous direction in place and copies any other (a strided view, a
/// view at an offset into a larger buffer): the products are the same bits either way, alone and
/// batched, on an MLP and a CNN (whose kernels are reordered into rows from the direction).
#[test]
fn host_sweep_reads_views_and_strided_directions_alike() {
    use candle_core::IndexOp;
    for spec_str in ["mlp:5-7-6-3:tanh", "cnn:2x8x8-3-4-3:relu"] {
        let (spec, m) = model(spec_str, DType::F64);
        let d = data(&spec, 30, LossKind::Ce);
        let all = ParamFilter::all();
        let op = operator(
            &m,
            &d,
            LossKind::Ce,
            Curvature::Hessian,
            &all,
            Backend::Auto,
        );
        let n = op.dim();
        let big = vector::random(3 * n, Probe::Gaussian, 11, DType::F64, &Device::Cpu).unwrap();
        // Contiguous copies, and views of the same values: at an offset, and every other element.
        let at_offset = big.narrow(0, n, n).unwrap();
        let pairs = big.narrow(0, 0, 2 * n).unwrap().reshape((n, 2)).unwrap();
        let strided = pairs.i((.., 1)).unwrap();
        assert!(!strided.is_contiguous());
        let bits = |t: &Tensor| -> Vec<u64> {
            t.to_vec1::<f64>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        for view in [&at_offset, &strided] {
            let copy = Tensor::from_vec(view.to_vec1::<f64>().unwrap(), n, &Device::Cpu).unwrap();
            assert_eq!(
                bits(&op.apply(view).unwrap()),
                bits(&op.apply(&copy).unwrap()),
                "{spec_str}: one product"
            );
            let many_view = op.apply_many(&[view.clone(), copy.clone()]).unwrap();
            let many_copy = op.apply_many(&[copy.clone(), copy.clone()]).unwrap();
            assert_eq!(
                bits(&many_view[0]),
                bits(&many_copy[0]),
                "{spec_str}: batched"
            );
        }
    }
}
