//! Mode connectivity against a hand-built pair of models with a known barrier, and CKA against
//! a dense computation and its invariances.

use candle_core::{DType, Device, Tensor};
use terrain_metrics::{
    Error,
    cka::{self, CkaConfig, Outputs, linear_cka},
    connect::{self, ConnectConfig, CurveTraining, Method, mc, mc_peak},
};
use terrain_model::{
    Model, ParamVec,
    data::{Dataset, Targets, Task},
    loss::LossKind,
};

/// `mlp:1-2-2:relu` with first-layer weights `w1` and output weights `w2` (rows = classes),
/// zero biases.
fn relu_net(w1: [f64; 2], w2: [[f64; 2]; 2]) -> Model {
    let m = terrain_testkit::model("mlp:1-2-2:relu", 0);
    let mut p = ParamVec::from_model(&m).unwrap();
    let d = Device::Cpu;
    p.tensors[0] = Tensor::from_vec(w1.to_vec(), (2, 1), &d).unwrap();
    p.tensors[1] = Tensor::zeros(2, DType::F64, &d).unwrap();
    p.tensors[2] = Tensor::from_vec(w2.concat(), (2, 2), &d).unwrap();
    p.tensors[3] = Tensor::zeros(2, DType::F64, &d).unwrap();
    p.assign_to(&m).unwrap();
    m
}

/// x ∈ {±1, ±2}, class 1 for x > 0.
fn line_data() -> Dataset {
    let x = Tensor::from_vec(vec![-2.0f64, -1.0, 1.0, 2.0], (4, 1), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec![0u32, 0, 1, 1], 4, &Device::Cpu).unwrap();
    Dataset::new(
        "line",
        x,
        Targets::Classes(y),
        Task::Classification { classes: 2 },
    )
    .unwrap()
}

#[test]
fn a_permuted_pair_has_the_barrier_computed_by_hand() {
    // A: h = (relu(x), relu(−x)), logits (5·h₂, 5·h₁). B: the same function with the hidden units
    // swapped. On the line between them the first layer is (1−2t)·(1, −1) and the margin of a
    // row is 5(1−2t)²|x|: both ends classify perfectly, the midpoint is constant (loss ln 2, and
    // its ties put every row in one class: 50% error).
    let a = relu_net([1.0, -1.0], [[0.0, 5.0], [5.0, 0.0]]);
    let b = relu_net([-1.0, 1.0], [[5.0, 0.0], [0.0, 5.0]]);
    let data = line_data();
    let config = ConnectConfig {
        points: 5,
        ..ConnectConfig::new(Method::Linear, LossKind::Ce)
    };
    let c = connect::connect(&a, &b, &data, &config).unwrap();
    assert_eq!(c.t, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    for (k, &t) in c.t.iter().enumerate() {
        let m = 5.0 * (1.0f64 - 2.0 * t).powi(2);
        let want = [1.0, 2.0]
            .iter()
            .map(|x| (1.0 + (-m * x).exp()).ln())
            .sum::<f64>()
            / 2.0;
        assert!(
            (c.loss[k] - want).abs() < 1e-12,
            "t = {t}: {} vs {want}",
            c.loss[k]
        );
    }
    assert_eq!(c.error.as_ref().unwrap(), &vec![0.0, 0.0, 50.0, 0.0, 0.0]);
    assert_eq!((c.mc, c.mc_peak), (-50.0, -50.0));

    // The midpoint is a saddle of this symmetric pair (its gradient cancels by symmetry), so the
    // Bezier curve is checked on two trained seeds below.
}

#[test]
fn a_trained_bezier_curve_lowers_the_barrier_of_two_seeds() {
    let train = |seed: u64| {
        let mut spec =
            terrain_model::run::RunSpec::new("mlp:64-16-10:tanh".parse().unwrap(), "digits", seed);
        spec.training.epochs = 8;
        spec.data.standardize = terrain_model::run::Standardize::Off;
        spec.run(&Default::default()).unwrap()
    };
    let (a, b) = (train(1), train(2));
    let data = terrain_model::data::builtin::load("digits").unwrap();
    let linear = connect::connect(
        &a.model,
        &b.model,
        &data,
        &ConnectConfig::new(Method::Linear, LossKind::Ce),
    )
    .unwrap();
    let config = ConnectConfig {
        training: CurveTraining {
            epochs: 20,
            lr: 0.05,
            ..CurveTraining::default()
        },
        ..ConnectConfig::new(Method::Bezier, LossKind::Ce)
    };
    let curve = connect::connect(&a.model, &b.model, &data, &config).unwrap();
    assert_eq!(
        (curve.loss[0], curve.loss[4]),
        (linear.loss[0], linear.loss[4])
    );
    assert!(
        linear.mc < -1.0,
        "the seeds should have a barrier: mc = {}",
        linear.mc
    );
    assert!(
        curve.loss[2] < 0.5 * linear.loss[2],
        "{} vs {}",
        curve.loss[2],
        linear.loss[2]
    );
    assert!(
        curve.mc_peak > linear.mc_peak,
        "{} vs {}",
        curve.mc_peak,
        linear.mc_peak
    );
    // Different architectures are refused, naming both.
    let other = terrain_testkit::model("mlp:64-8-10:tanh", 0)
        .to(DType::F32, &Device::Cpu)
        .unwrap();
    let e = connect::connect(&a.model, &other, &data, &config)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mlp:64-8-10:tanh") && e.contains("mlp:64-16-10:tanh"),
        "{e}"
    );
}

#[test]
fn mc_and_the_curve_schedule_follow_their_definitions() {
    // u = argmax |e_t − mid|, the first on ties; mc = mid − e_u.
    assert_eq!(mc(&[10.0, 4.0, 16.0, 10.0]), 10.0 - 4.0);
    assert_eq!(mc(&[2.0, 1.0, 1.0, 2.0]), 1.0);
    assert_eq!(mc(&[5.0, 5.0]), 0.0);
    assert_eq!(mc_peak(&[1.0, 7.0, 3.0, 9.0]), -7.0);
    let c = CurveTraining::default();
    assert_eq!(c.lr_at(1), 0.01);
    assert_eq!(c.lr_at(25), 0.01);
    assert!((c.lr_at(35) - 0.01 * (1.0 - 0.2 / 0.4 * 0.99)).abs() < 1e-15);
    assert!((c.lr_at(45) - 0.01 * 0.01).abs() < 1e-15);
    assert!((c.lr_at(50) - 0.01 * 0.01).abs() < 1e-15);
}

fn gaussian(n: usize, k: usize, seed: u64) -> Vec<f64> {
    terrain_testkit::gaussian(n * k, seed)
}

/// CKA the long way: n×n Gram matrices, H = I − 11ᵀ/n, HSIC(K, L) = tr(KHLH).
fn dense_cka(x: &[f64], p: usize, y: &[f64], q: usize) -> f64 {
    let n = x.len() / p;
    let gram = |m: &[f64], k: usize| -> Vec<f64> {
        let mut g = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                g[i * n + j] = (0..k).map(|c| m[i * k + c] * m[j * k + c]).sum();
            }
        }
        g
    };
    let centre = |g: &[f64]| -> Vec<f64> {
        // HGH
        let h = |i: usize, j: usize| {
            if i == j {
                1.0 - 1.0 / n as f64
            } else {
                -1.0 / n as f64
            }
        };
        let mut t = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                t[i * n + j] = (0..n).map(|k| h(i, k) * g[k * n + j]).sum();
            }
        }
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = (0..n).map(|k| t[i * n + k] * h(k, j)).sum();
            }
        }
        out
    };
    let (k, l) = (centre(&gram(x, p)), centre(&gram(y, q)));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
    dot(&k, &l) / (dot(&k, &k) * dot(&l, &l)).sqrt()
}

#[test]
fn linear_cka_matches_the_dense_formula_and_its_invariances() {
    let (n, p, q) = (40, 5, 3);
    let x = gaussian(n, p, 1);
    // y depends on x partly.
    let noise = gaussian(n, q, 2);
    let y: Vec<f64> = (0..n * q)
        .map(|i| x[(i / q) * p + i % q] + 0.7 * noise[i])
        .collect();
    let fast = linear_cka(&x, p, &y, q);
    let dense = dense_cka(&x, p, &y, q);
    assert!((fast - dense).abs() < 1e-12, "{fast} vs {dense}");
    assert!(fast > 0.1 && fast < 0.99, "{fast}");
    assert!((linear_cka(&x, p, &x, p) - 1.0).abs() < 1e-12);
    // An orthogonal transform and an isotropic scaling of either side leave it unchanged.
    let qm = terrain_testkit::orthogonal(p, 3);
    let xq: Vec<f64> = (0..n * p)
        .map(|i| {
            let (r, c) = (i / p, i % p);
            (0..p).map(|k| x[r * p + k] * qm[k * p + c]).sum::<f64>() * 3.5
        })
        .collect();
    let ys: Vec<f64> = y.iter().map(|v| v * 0.01).collect();
    let moved = linear_cka(&xq, p, &ys, q);
    assert!((moved - fast).abs() < 1e-12, "{moved} vs {fast}");
    // A constant side has no similarity to measure.
    assert!(linear_cka(&vec![1.0; n * p], p, &y, q).is_nan());
}

#[test]
fn model_cka_is_one_for_identical_and_scaled_models_and_checks_its_input() {
    let data = terrain_testkit::digits(300);
    let a = terrain_testkit::model("mlp:64-16-10:tanh", 1);
    let b = terrain_testkit::model("mlp:64-16-10:tanh", 2);
    // b2: a's network with its output layer (weights and bias) scaled by 3: logits × 3.
    let b2 = a.deep_clone().unwrap();
    let mut p = ParamVec::from_model(&a).unwrap();
    for t in &mut p.tensors[2..] {
        *t = (&*t * 3.0).unwrap();
    }
    p.assign_to(&b2).unwrap();
    let names: Vec<String> = ["a", "b", "b2"].iter().map(|s| s.to_string()).collect();
    let cfg = CkaConfig::default();
    let same = cka::cka_models(&[&a, &a], &names[..2], &data, &cfg).unwrap();
    assert!((same.cka - 1.0).abs() < 1e-12);
    assert_eq!(same.samples, 300);
    let logits = CkaConfig {
        outputs: Outputs::Logits,
        ..cfg.clone()
    };
    let scaled = cka::cka_models(&[&a, &b2], &names[..2], &data, &logits).unwrap();
    assert!((scaled.cka - 1.0).abs() < 1e-10, "{}", scaled.cka);
    // Three models: every ordered pair, symmetric, and the mean.
    let three = cka::cka_models(&[&a, &b, &b2], &names, &data, &cfg).unwrap();
    assert_eq!(three.pairs.len(), 6);
    let get = |i: usize, j: usize| {
        three
            .pairs
            .iter()
            .find(|p| p.a == i && p.b == j)
            .unwrap()
            .cka
    };
    assert!((get(0, 1) - get(1, 0)).abs() < 1e-12);
    let mean = three.pairs.iter().map(|p| p.cka).sum::<f64>() / 6.0;
    assert!((three.cka - mean).abs() < 1e-15);
    // The softmax CKA between two seeds equals the dense formula on their outputs for the same
    // mixed inputs.
    let x = cka::inputs(&data, &cfg).unwrap();
    let (oa, qa) = cka::outputs(&a, &x, Outputs::Softmax).unwrap();
    let (ob, qb) = cka::outputs(&b, &x, Outputs::Softmax).unwrap();
    assert!((get(0, 1) - dense_cka(&oa, qa, &ob, qb)).abs() < 1e-10);

    // Bad input, each naming its culprit.
    let e = cka::cka_models(&[&a], &names[..1], &data, &cfg).unwrap_err();
    assert!(matches!(e, Error::TooFewModels { given: 1, .. }), "{e}");
    let other = terrain_testkit::model("mlp:64-8-10:tanh", 1);
    let e = cka::cka_models(&[&a, &other], &names[..2], &data, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mlp:64-8-10:tanh") && e.contains("b has"), "{e}");
    let boston = terrain_model::data::builtin::load("boston").unwrap();
    let reg = terrain_testkit::model("mlp:13-8-1:tanh", 1);
    let e = cka::cka_models(&[&reg, &reg], &names[..2], &boston, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("boston") && e.contains("regression") && e.contains("softmax"),
        "{e}"
    );
    assert!(cka::cka_models(&[&reg, &reg], &names[..2], &boston, &logits).is_ok());
}
