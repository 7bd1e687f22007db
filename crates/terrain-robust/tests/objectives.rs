//! Every objective's value and gradient against hand computations in f64 written here, not with
//! the crate's code: the values from their definitions, the per-example weights ∂F/∂ℓ_i by
//! central differences of those definitions, and the model gradients of a softmax-regression
//! model whose per-example gradients (p − e_y)·xᵀ are computed by hand.

use candle_core::{DType, Device, Tensor};
use terrain_model::{
    Model,
    data::{Batch, Targets},
    loss::LossKind,
    train::{Objective, reduced_gradient},
};
use terrain_robust::{
    Coce, Cvar, Dro, Erm, Flood, IFlood, LossTransform, PerExample, Sam, SoftAd, Tilted,
};

/// A hand definition of an objective's value.
type Hand = Box<dyn Fn(&[f64]) -> f64>;

const LOSSES: [f64; 8] = [0.05, 0.9, 0.31, 2.4, 0.62, 1.35, 0.11, 0.48];

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// ∂F/∂ℓ_i by central differences.
fn fd_weights(f: &dyn Fn(&[f64]) -> f64, l: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    (0..l.len())
        .map(|i| {
            let mut a = l.to_vec();
            let mut b = l.to_vec();
            a[i] += h;
            b[i] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

/// The hand definitions, each straight from the table.
fn hand_softad(theta: f64, sigma: f64) -> impl Fn(&[f64]) -> f64 {
    move |l| {
        theta
            + sigma
                * sigma
                * mean(
                    &l.iter()
                        .map(|x| (((x - theta) / sigma).powi(2) + 1.0).sqrt() - 1.0)
                        .collect::<Vec<_>>(),
                )
    }
}

fn hand_top_k_mean(l: &[f64], k: usize) -> f64 {
    let mut s = l.to_vec();
    s.sort_by(|a, b| b.partial_cmp(a).unwrap());
    s[..k].iter().sum::<f64>() / k as f64
}

/// The χ²-DRO value through the other side of the duality (Levy et al. 2020, eq. for
/// φ(t) = ½(t − 1)²): inf_η √(1 + 2r)·√(mean (ℓ − η)₊²) + η, a convex function of η, minimised
/// by ternary search.
fn hand_dro(r: f64) -> impl Fn(&[f64]) -> f64 {
    move |l| {
        let g = |eta: f64| {
            (1.0 + 2.0 * r).sqrt()
                * mean(
                    &l.iter()
                        .map(|x| (x - eta).max(0.0).powi(2))
                        .collect::<Vec<_>>(),
                )
                .sqrt()
                + eta
        };
        let max = l.iter().copied().fold(f64::MIN, f64::max);
        let (mut lo, mut hi) = (-100.0 - max, max);
        for _ in 0..400 {
            let a = lo + (hi - lo) / 3.0;
            let b = hi - (hi - lo) / 3.0;
            if g(a) < g(b) {
                hi = b;
            } else {
                lo = a;
            }
        }
        g(0.5 * (lo + hi))
    }
}

#[test]
fn values_and_weights_match_the_definitions() {
    let l = &LOSSES;
    let n = l.len() as f64;
    let cases: Vec<(Box<dyn LossTransform>, Hand)> = vec![
        (Box::new(Erm), Box::new(|l: &[f64]| mean(l))),
        (
            Box::new(Flood::new(0.5).unwrap()),
            Box::new(|l: &[f64]| (mean(l) - 0.5).abs() + 0.5),
        ),
        (
            Box::new(Flood::new(1.5).unwrap()),
            Box::new(|l: &[f64]| (mean(l) - 1.5).abs() + 1.5),
        ),
        (
            Box::new(IFlood::new(0.4).unwrap()),
            Box::new(|l: &[f64]| {
                mean(&l.iter().map(|x| (x - 0.4).abs()).collect::<Vec<_>>()) + 0.4
            }),
        ),
        (
            Box::new(SoftAd::new(0.5, 1.0).unwrap()),
            Box::new(hand_softad(0.5, 1.0)),
        ),
        (
            Box::new(SoftAd::new(0.2, 0.3).unwrap()),
            Box::new(hand_softad(0.2, 0.3)),
        ),
        (
            Box::new(Tilted::new(2.0).unwrap()),
            Box::new(|l: &[f64]| {
                (mean(&l.iter().map(|x| (2.0 * x).exp()).collect::<Vec<_>>())).ln() / 2.0
            }),
        ),
        (
            Box::new(Tilted::new(-1.5).unwrap()),
            Box::new(|l: &[f64]| {
                (mean(&l.iter().map(|x| (-1.5 * x).exp()).collect::<Vec<_>>())).ln() / -1.5
            }),
        ),
        // k = ⌈0.3·8⌉ = 3 and ⌈0.5·8⌉ = 4.
        (
            Box::new(Cvar::new(0.7).unwrap()),
            Box::new(|l: &[f64]| hand_top_k_mean(l, 3)),
        ),
        (
            Box::new(Cvar::new(0.5).unwrap()),
            Box::new(|l: &[f64]| hand_top_k_mean(l, 4)),
        ),
        (Box::new(Dro::new(0.5).unwrap()), Box::new(hand_dro(0.5))),
        (Box::new(Dro::new(2.0).unwrap()), Box::new(hand_dro(2.0))),
        // COCE with α = 0.5 and n = 8: CVaR is the mean of the top 4; ρ(C − τ) + τ.
        (
            Box::new(Coce::new(0.3, 0.5).unwrap()),
            Box::new(|l: &[f64]| {
                let c = hand_top_k_mean(l, 4);
                ((c - 0.3).powi(2) + 1.0).sqrt() - 1.0 + 0.3
            }),
        ),
        // α = 0.75, n = 8: (1 − α)·n = 2, the top 2.
        (
            Box::new(Coce::new(0.1, 0.75).unwrap()),
            Box::new(|l: &[f64]| {
                let c = hand_top_k_mean(l, 2);
                ((c - 0.1).powi(2) + 1.0).sqrt() - 1.0 + 0.1
            }),
        ),
        // The released addro form: θ_c stays 0, so C = mean ℓ/(1 − α) = 2·mean ℓ.
        (
            Box::new(
                Coce::new(0.3, 0.5)
                    .unwrap()
                    .with_fixed_theta_c(0.0)
                    .unwrap(),
            ),
            Box::new(|l: &[f64]| {
                let c = 2.0 * mean(l);
                ((c - 0.3).powi(2) + 1.0).sqrt() - 1.0 + 0.3
            }),
        ),
    ];
    for (t, hand) in &cases {
        let name = t.name();
        let v = t.value(l);
        let want = hand(l);
        assert!((v - want).abs() < 1e-9, "{name}: value {v} vs {want}");
        close(&t.weights(l), &fd_weights(hand.as_ref(), l), 1e-6, &name);
    }
    // SoftAD's weights, written out: σ·ρ′((ℓ_i − θ)/σ)/n with ρ′(x) = x/√(1 + x²).
    let (theta, sigma) = (0.5, 0.7);
    let want: Vec<f64> = l
        .iter()
        .map(|x| {
            let z = (x - theta) / sigma;
            sigma * z / (1.0 + z * z).sqrt() / n
        })
        .collect();
    close(
        &SoftAd::new(theta, sigma).unwrap().weights(l),
        &want,
        1e-15,
        "softad weights",
    );
}

#[test]
fn iflood_is_the_small_sigma_limit_of_softad() {
    let l = &LOSSES;
    let theta = 0.5;
    let iflood = IFlood::new(theta).unwrap();
    for sigma in [1e-3, 1e-5, 1e-7] {
        let soft = SoftAd::new(theta, sigma).unwrap();
        // The unscaled weights ρ′((ℓ − θ)/σ)/n → sign(ℓ − θ)/n, and (F − θ)/σ → mean |ℓ − θ|.
        let scaled: Vec<f64> = soft.weights(l).iter().map(|w| w / sigma).collect();
        let gap = l.iter().map(|x| (x - theta).abs()).fold(f64::MAX, f64::min);
        // |ρ′(z) − sign z| ≤ 1/(2z²) for large |z|: z ≥ gap/σ.
        let tol = 0.5 * (sigma / gap).powi(2);
        close(&scaled, &iflood.weights(l), tol, &format!("sigma {sigma}"));
        let v = (soft.value(l) - theta) / sigma;
        let want = iflood.value(l) - theta;
        assert!(
            (v - want).abs() <= sigma + tol,
            "sigma {sigma}: {v} vs {want}"
        );
    }
    // At the kink, sign(0) = 0 exactly.
    assert_eq!(IFlood::new(0.9).unwrap().weights(&[0.9, 1.0])[0], 0.0);
}

#[test]
fn tilted_tends_to_erm_as_t_tends_to_zero() {
    let l = &LOSSES;
    let n = l.len() as f64;
    for t in [1e-3, -1e-3, 1e-6] {
        let tilted = Tilted::new(t).unwrap();
        // (1/t) log mean exp(tℓ) = mean ℓ + t·var(ℓ)/2 + O(t²).
        let var = mean(&l.iter().map(|x| (x - mean(l)).powi(2)).collect::<Vec<_>>());
        let v = tilted.value(l);
        assert!(
            (v - mean(l) - t * var / 2.0).abs() < 10.0 * t * t,
            "t {t}: {v}"
        );
        close(
            &tilted.weights(l),
            &vec![1.0 / n; l.len()],
            3.0 * t.abs(),
            "tilted weights",
        );
    }
    // No overflow for large tilts: the value approaches the largest loss.
    let v = Tilted::new(1e4).unwrap().value(l);
    assert!((v - 2.4).abs() < 1e-3 && v.is_finite(), "{v}");
}

#[test]
fn dro_bisection_meets_its_constraint() {
    let l = &LOSSES;
    let n = l.len() as f64;
    for r in [0.1, 0.5, 2.0] {
        let (q, eta) = Dro::new(r).unwrap().best_response(l);
        let eta = eta.unwrap();
        let div = q.iter().map(|qi| (n * qi - 1.0).powi(2)).sum::<f64>() / (2.0 * n);
        assert!((div - r).abs() < 1e-9, "r {r}: divergence {div}");
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // q ∝ (ℓ − η)₊.
        let s: f64 = l.iter().map(|x| (x - eta).max(0.0)).sum();
        close(
            &q,
            &l.iter().map(|x| (x - eta).max(0.0) / s).collect::<Vec<_>>(),
            1e-12,
            "q",
        );
    }
    // A radius beyond the point mass's divergence (n − 1)/2 = 3.5: all weight on the worst.
    let q = Dro::new(10.0).unwrap().weights(l);
    assert_eq!(q[3], 1.0);
    assert!(q.iter().enumerate().all(|(i, &w)| i == 3 || w == 0.0));
    // r = 0 and equal losses: uniform.
    assert_eq!(Dro::new(0.0).unwrap().weights(l), vec![1.0 / n; 8]);
    assert_eq!(Dro::new(1.0).unwrap().weights(&[0.3; 4]), vec![0.25; 4]);
}

/// A softmax-regression model (one Linear layer, 3 inputs, 4 classes) in f64 and a batch.
fn linear_setup(seed: u64) -> (Model, Batch, Vec<Vec<f64>>, Vec<u32>) {
    let model = Model::new(
        "mlp:3-4:tanh".parse().unwrap(),
        DType::F64,
        &Device::Cpu,
        seed,
    )
    .unwrap();
    let xs: Vec<Vec<f64>> = (0..6)
        .map(|i| {
            let t = i as f64;
            vec![
                (0.7 * t).sin() * 2.0,
                (1.3 * t + 0.5).cos() * 1.5,
                0.3 * t - 0.8,
            ]
        })
        .collect();
    let ys = vec![0u32, 1, 2, 3, 1, 2];
    let x = Tensor::from_vec(xs.concat(), (6, 3), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(ys.clone(), 6, &Device::Cpu).unwrap();
    (
        model,
        Batch {
            x,
            y: Targets::Classes(y),
        },
        xs,
        ys,
    )
}

fn weights_of(model: &Model) -> (Vec<f64>, Vec<f64>) {
    let p = model.params();
    (
        p[0].var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap(),
        p[1].var.as_tensor().to_vec1().unwrap(),
    )
}

/// Per-example losses and gradients (flattened [W, b]) of softmax regression, by hand.
fn hand_per_example(
    w: &[f64],
    b: &[f64],
    xs: &[Vec<f64>],
    ys: &[u32],
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (k, d) = (b.len(), xs[0].len());
    let mut losses = Vec::new();
    let mut grads = Vec::new();
    for (x, &y) in xs.iter().zip(ys) {
        let z: Vec<f64> = (0..k)
            .map(|c| b[c] + (0..d).map(|j| w[c * d + j] * x[j]).sum::<f64>())
            .collect();
        let m = z.iter().copied().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|zi| (zi - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|ei| ei / s).collect();
        losses.push(-(p[y as usize]).ln());
        let r: Vec<f64> = (0..k)
            .map(|c| p[c] - if c == y as usize { 1.0 } else { 0.0 })
            .collect();
        let mut g: Vec<f64> = r
            .iter()
            .flat_map(|rc| x.iter().map(move |xj| rc * xj))
            .collect();
        g.extend(&r);
        grads.push(g);
    }
    (losses, grads)
}

fn combine(weights: &[f64], grads: &[Vec<f64>]) -> Vec<f64> {
    let mut out = vec![0.0; grads[0].len()];
    for (w, g) in weights.iter().zip(grads) {
        for (o, gi) in out.iter_mut().zip(g) {
            *o += w * gi;
        }
    }
    out
}

fn flat_grads(grads: &[Tensor]) -> Vec<f64> {
    grads
        .iter()
        .flat_map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        .collect()
}

#[test]
fn model_gradients_are_the_weighted_per_example_gradients() {
    let (model, batch, xs, ys) = linear_setup(3);
    let (w, b) = weights_of(&model);
    let (losses, grads) = hand_per_example(&w, &b, &xs, &ys);
    let l = &losses;
    let objectives: Vec<(Box<dyn Objective>, Hand)> = vec![
        (
            Box::new(PerExample::new(Erm)),
            Box::new(|l: &[f64]| mean(l)),
        ),
        (
            Box::new(PerExample::new(SoftAd::new(0.8, 1.0).unwrap())),
            Box::new(hand_softad(0.8, 1.0)),
        ),
        (
            Box::new(PerExample::new(Flood::new(3.0).unwrap())),
            Box::new(|l: &[f64]| (mean(l) - 3.0).abs() + 3.0),
        ),
        (
            Box::new(PerExample::new(Tilted::new(0.7).unwrap())),
            Box::new(|l: &[f64]| {
                (mean(&l.iter().map(|x| (0.7 * x).exp()).collect::<Vec<_>>())).ln() / 0.7
            }),
        ),
        (
            Box::new(PerExample::new(Dro::new(0.4).unwrap())),
            Box::new(hand_dro(0.4)),
        ),
    ];
    for (mut obj, hand) in objectives {
        let out = obj.step(&model, &batch, LossKind::Ce).unwrap();
        let want = combine(&fd_weights(hand.as_ref(), l), &grads);
        close(&flat_grads(&out.grads), &want, 1e-6, &obj.name());
        assert!(
            (out.loss - mean(l)).abs() < 1e-12,
            "logged loss is the plain mean"
        );
    }
    // CVaR: the mean gradient of the top-k examples, k = ⌈(1 − 0.5)·6⌉ = 3.
    let mut order: Vec<usize> = (0..6).collect();
    order.sort_by(|&a, &c| l[c].partial_cmp(&l[a]).unwrap());
    let mut top = vec![0.0; 6];
    for &i in &order[..3] {
        top[i] = 1.0 / 3.0;
    }
    let out = PerExample::new(Cvar::new(0.5).unwrap())
        .step(&model, &batch, LossKind::Ce)
        .unwrap();
    close(
        &flat_grads(&out.grads),
        &combine(&top, &grads),
        1e-12,
        "cvar",
    );
}

#[test]
fn sam_steps_on_the_gradient_at_the_perturbed_weights() {
    let (model, batch, xs, ys) = linear_setup(5);
    let (w, b) = weights_of(&model);
    let (_, grads) = hand_per_example(&w, &b, &xs, &ys);
    let g = combine(&[1.0 / 6.0; 6], &grads);
    let gnorm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
    let d = w.len();
    for adaptive in [false, true] {
        let rho = 0.3;
        let mut sam = if adaptive {
            Sam::adaptive(rho).unwrap()
        } else {
            Sam::new(rho).unwrap()
        };
        // ε = ρ g/‖g‖ (SAM) or ρ |w|²g/‖|w| g‖ (ASAM), by hand.
        let wb: Vec<f64> = w.iter().chain(&b).copied().collect();
        let eps: Vec<f64> = if adaptive {
            let tg: Vec<f64> = wb.iter().zip(&g).map(|(wi, gi)| wi.abs() * gi).collect();
            let tn = tg.iter().map(|x| x * x).sum::<f64>().sqrt();
            wb.iter()
                .zip(&tg)
                .map(|(wi, t)| rho * wi.abs() * t / (tn + 1e-12))
                .collect()
        } else {
            g.iter().map(|gi| rho * gi / (gnorm + 1e-12)).collect()
        };
        let params: Vec<Tensor> = model
            .params()
            .iter()
            .map(|p| p.var.as_tensor().clone())
            .collect();
        let gt: Vec<Tensor> = vec![
            Tensor::from_vec(g[..d].to_vec(), (4, 3), &Device::Cpu).unwrap(),
            Tensor::from_vec(g[d..].to_vec(), 4, &Device::Cpu).unwrap(),
        ];
        close(
            &flat_grads(&sam.perturbation(&params, &gt).unwrap()),
            &eps,
            1e-12,
            "epsilon",
        );
        let out = sam.step(&model, &batch, LossKind::Ce).unwrap();
        let pw: Vec<f64> = wb.iter().zip(&eps).map(|(a, e)| a + e).collect();
        let (_, pg) = hand_per_example(&pw[..d], &pw[d..], &xs, &ys);
        close(
            &flat_grads(&out.grads),
            &combine(&[1.0 / 6.0; 6], &pg),
            1e-10,
            &sam.name(),
        );
        let (w2, b2) = weights_of(&model);
        assert_eq!((w2, b2), (w.clone(), b.clone()), "weights restored exactly");
    }
    assert_eq!(
        Sam::new(0.05)
            .unwrap()
            .perturbation(&[], &[])
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn sam_leaves_batch_norm_statistics_to_the_first_pass() {
    let spec = "mlp:3-5-4:relu:bn";
    let a = Model::new(spec.parse().unwrap(), DType::F64, &Device::Cpu, 2).unwrap();
    let b = a.deep_clone().unwrap();
    let (_, batch, _, _) = linear_setup(0);
    Sam::new(0.5)
        .unwrap()
        .step(&a, &batch, LossKind::Ce)
        .unwrap();
    reduced_gradient(&b, &batch, LossKind::Ce, true, |l| Ok(l.mean_all()?)).unwrap();
    for (x, y) in a.buffers().iter().zip(b.buffers()) {
        let x: Vec<f64> = x.var.as_tensor().to_vec1().unwrap();
        let y: Vec<f64> = y.var.as_tensor().to_vec1().unwrap();
        assert_eq!(x, y, "running statistics as after one plain step");
    }
}
