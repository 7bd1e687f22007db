//! Solvers against exact answers (f64, CPU): the dense eigendecomposition on known matrices;
//! Lanczos, power iteration, Hutchinson, Hutch++ and stochastic Lanczos quadrature on dense
//! matrices with a known spectrum and on Hessians of tiny models (checked against their dense
//! Hessian's eigendecomposition).

use candle_core::{DType, Device, Tensor};
use terrain_curvature::{
    DenseHessian, DenseOperator, Error, HessianConfig, HessianOperator, LinearOperator,
    density::{self, SlqConfig},
    eigen::{self, LanczosConfig, PowerConfig},
    linalg::{self, SymmetricEigen},
    trace::{self, HutchPlusPlusConfig, HutchinsonConfig},
    vector::{self, Probe},
};
use terrain_model::{data, loss::LossKind};
use terrain_testkit::{dense_operator, gaussian, mean_sd, model, rel, with_spectrum};

// ---------------------------------------------------------------------------------------------
// Helpers

fn operator(a: &[f64], n: usize) -> DenseOperator {
    dense_operator(a, n)
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// max |A V − V Λ| and max |VᵀV − I|.
fn eigen_errors(a: &[f64], e: &SymmetricEigen) -> (f64, f64) {
    let n = e.n;
    let mut res: f64 = 0.0;
    let mut orth: f64 = 0.0;
    for j in 0..n {
        let v = e.vector(j);
        for i in 0..n {
            let av: f64 = (0..n).map(|k| a[i * n + k] * v[k]).sum();
            res = res.max((av - e.values[j] * v[i]).abs());
        }
        for k in 0..=j {
            let d: f64 = v.iter().zip(e.vector(k)).map(|(x, y)| x * y).sum();
            orth = orth.max((d - if j == k { 1.0 } else { 0.0 }).abs());
        }
    }
    (res, orth)
}

/// The dimension-`p` test spectrum: a clustered top, a spread middle and negative eigenvalues
/// (the most negative is the largest in magnitude).
fn test_spectrum(p: usize) -> Vec<f64> {
    let mut v = vec![10.0, 9.999, 9.998, 6.0];
    for i in 4..p - 3 {
        v.push(4.0 - 6.0 * (i - 4) as f64 / (p - 7) as f64);
    }
    v.extend([-3.0, -7.0, -12.0]);
    v
}

// ---------------------------------------------------------------------------------------------
// linalg

#[test]
fn symmetric_eigen_on_known_matrices() {
    // A random symmetric matrix.
    let n = 60;
    let g = gaussian(n * n, 7);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = g[i * n + j] + g[j * n + i];
        }
    }
    let e = linalg::symmetric_eigen(&a, n).unwrap();
    let (res, orth) = eigen_errors(&a, &e);
    assert!(res < 1e-10, "A V − V Λ: {res:e}");
    assert!(orth < 1e-12, "VᵀV − I: {orth:e}");
    assert!(e.values.windows(2).all(|w| w[0] <= w[1]), "ascending");
    let tr: f64 = (0..n).map(|i| a[i * n + i]).sum();
    assert!((e.values.iter().sum::<f64>() - tr).abs() < 1e-10);

    // A known spectrum with repeated and negative eigenvalues.
    let spectrum = [1.0, 1.0, 1.0, 2.0, 2.0, -3.0, 0.0, 0.0, 5.5];
    let a = with_spectrum(&spectrum, 3);
    let e = linalg::symmetric_eigen(&a, spectrum.len()).unwrap();
    for (x, y) in e.values.iter().zip(sorted(&spectrum)) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
    let (res, orth) = eigen_errors(&a, &e);
    assert!(res < 1e-12 && orth < 1e-12, "{res:e} {orth:e}");

    // Zero rows and a diagonal block (the zero-scale branch of the Householder reduction).
    let a = [
        0.0, 0.0, 0.0, 0.0, //
        0.0, 2.0, 1.0, 0.0, //
        0.0, 1.0, 2.0, 0.0, //
        0.0, 0.0, 0.0, -1.0,
    ];
    let e = linalg::symmetric_eigen(&a, 4).unwrap();
    for (x, y) in e.values.iter().zip([-1.0, 0.0, 1.0, 3.0]) {
        assert!((x - y).abs() < 1e-14, "{x} vs {y}");
    }
    let (res, orth) = eigen_errors(&a, &e);
    assert!(res < 1e-14 && orth < 1e-14);

    // A larger one, for the batched (and, on several cores, threaded) rotations.
    let n = 400;
    let g = gaussian(n * n, 8);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = g[i * n + j] + g[j * n + i];
        }
    }
    let e = linalg::symmetric_eigen(&a, n).unwrap();
    let (res, orth) = eigen_errors(&a, &e);
    assert!(res < 1e-10 && orth < 1e-12, "{res:e} {orth:e}");
}

#[test]
fn tridiagonal_eigen_on_known_matrices() {
    // The 1-D Laplacian: eigenvalues 2 − 2cos(kπ/(n+1)), eigenvectors ∝ sin(ikπ/(n+1)).
    let n = 30;
    let e = linalg::tridiagonal_eigen(&vec![2.0; n], &vec![-1.0; n - 1]).unwrap();
    let h = std::f64::consts::PI / (n as f64 + 1.0);
    for k in 0..n {
        let exact = 2.0 - 2.0 * ((k + 1) as f64 * h).cos();
        assert!((e.values[k] - exact).abs() < 1e-13);
        let v = e.vector(k);
        let norm = (2.0 / (n as f64 + 1.0)).sqrt();
        let sign = v[0].signum();
        for (i, vi) in v.iter().enumerate() {
            let exact = norm * ((i + 1) as f64 * (k + 1) as f64 * h).sin();
            assert!((vi * sign - exact).abs() < 1e-12);
        }
    }
    // Random, with a split (zero off-diagonal), against the dense solver.
    let n = 25;
    let alpha = gaussian(n, 1);
    let mut beta = gaussian(n - 1, 2);
    beta[10] = 0.0;
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i * n + i] = alpha[i];
        if i + 1 < n {
            a[i * n + i + 1] = beta[i];
            a[(i + 1) * n + i] = beta[i];
        }
    }
    let t = linalg::tridiagonal_eigen(&alpha, &beta).unwrap();
    let d = linalg::symmetric_eigen(&a, n).unwrap();
    for (x, y) in t.values.iter().zip(&d.values) {
        assert!((x - y).abs() < 1e-12);
    }
    let (res, orth) = eigen_errors(&a, &t);
    assert!(res < 1e-12 && orth < 1e-12);
    // The first components' squares sum to 1 (the SLQ weights).
    let w: f64 = (0..n).map(|j| t.component(0, j).powi(2)).sum();
    assert!((w - 1.0).abs() < 1e-13);
}

#[test]
fn linalg_errors() {
    let err = linalg::symmetric_eigen(&[1.0, f64::NAN, f64::NAN, 1.0], 2).unwrap_err();
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");
    let err = linalg::symmetric_eigen(&[1.0, 2.0, 0.0, 1.0], 2).unwrap_err();
    assert!(err.is_invalid_config(), "{err}");
    let err = linalg::symmetric_eigen(&[1.0, 2.0, 3.0], 2).unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { .. }), "{err}");
    let err = linalg::tridiagonal_eigen(&[1.0, 2.0], &[]).unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { .. }), "{err}");
    let err = linalg::tridiagonal_eigen(&[1.0, f64::INFINITY], &[0.5]).unwrap_err();
    assert!(matches!(err, Error::NonFinite { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Eigenvalues on known spectra

#[test]
fn lanczos_finds_the_top_of_a_known_spectrum() {
    let p = 80;
    let spectrum = test_spectrum(p);
    let a = with_spectrum(&spectrum, 11);
    let op = operator(&a, p);
    let config = LanczosConfig {
        top_k: 4,
        tol: 1e-8,
        ..Default::default()
    };
    let top = eigen::lanczos(&op, &config).unwrap();
    assert_eq!(top.pairs.len(), 4);
    let want = [10.0, 9.999, 9.998, 6.0];
    for (pair, w) in top.pairs.iter().zip(want) {
        assert!(rel(pair.value, w) < 1e-9, "{} vs {w}", pair.value);
        assert!(pair.residual < 1e-6 * w, "residual {:e}", pair.residual);
        assert!(pair.converged);
        assert!(pair.iterations < p, "stopped early: {}", pair.iterations);
        assert!((vector::norm(&pair.vector).unwrap() - 1.0).abs() < 1e-12);
    }
    assert_eq!(top.matvecs, top.pairs[0].iterations + 4);
    // Ritz vectors are orthonormal.
    for i in 0..4 {
        for j in 0..i {
            let d = vector::dot(&top.pairs[i].vector, &top.pairs[j].vector).unwrap();
            assert!(d.abs() < 1e-8, "{d:e}");
        }
    }
    // Same seed, same numbers.
    let again = eigen::lanczos(&op, &config).unwrap();
    assert_eq!(top.values(), again.values());
}

#[test]
fn lanczos_is_exact_at_the_dimension() {
    let spectrum = [
        3.0, -1.0, 2.5, 0.0, 7.0, -8.0, 1.0, 1.0, 4.0, 0.5, -2.0, 6.0,
    ];
    let p = spectrum.len();
    let op = operator(&with_spectrum(&spectrum, 5), p);
    let top = eigen::lanczos(
        &op,
        &LanczosConfig {
            top_k: p - 1,
            tol: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let exact: Vec<f64> = sorted(&spectrum).into_iter().rev().collect();
    // p steps (one of the double eigenvalue 1.0 is found through the rounding or a restart).
    assert_eq!(top.pairs[0].iterations, p);
    for (pair, w) in top.pairs.iter().zip(&exact) {
        assert!((pair.value - w).abs() < 1e-10, "{} vs {w}", pair.value);
        assert!(pair.residual < 1e-10, "{:e}", pair.residual);
        assert!(pair.converged);
    }
}

#[test]
fn lanczos_restarts_on_invariant_subspaces() {
    // 2·I: every Krylov space is invariant after one step.
    let p = 10;
    let mut a = vec![0.0; p * p];
    for i in 0..p {
        a[i * p + i] = 2.0;
    }
    let top = eigen::lanczos(
        &operator(&a, p),
        &LanczosConfig {
            top_k: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(top.values().len(), 3);
    for pair in &top.pairs {
        assert!((pair.value - 2.0).abs() < 1e-14);
        assert!(pair.residual < 1e-14 && pair.converged);
    }
    assert_eq!(top.pairs[0].iterations, 3);
    // A diagonal matrix with three distinct values: the start vector's Krylov space has
    // dimension 3; the top 5 need restarts.
    let values = [5.0, 5.0, 5.0, 1.0, 1.0, -1.0];
    let p = values.len();
    let mut a = vec![0.0; p * p];
    for (i, v) in values.iter().enumerate() {
        a[i * p + i] = *v;
    }
    let top = eigen::lanczos(
        &operator(&a, p),
        &LanczosConfig {
            top_k: 5,
            ..Default::default()
        },
    )
    .unwrap();
    for (pair, w) in top.pairs.iter().zip([5.0, 5.0, 5.0, 1.0, 1.0]) {
        assert!((pair.value - w).abs() < 1e-12, "{} vs {w}", pair.value);
        assert!(pair.residual < 1e-12);
    }
}

#[test]
fn power_iteration_on_a_known_spectrum() {
    // Largest magnitudes −20, 10, 5: power iteration finds them in that order.
    let p = 40;
    let mut spectrum = vec![-20.0, 10.0, 5.0];
    spectrum.extend((3..p).map(|i| 2.0 - 4.0 * i as f64 / p as f64));
    let op = operator(&with_spectrum(&spectrum, 2), p);
    let config = PowerConfig {
        top_k: 3,
        ..Default::default()
    };
    let top = eigen::power_iteration(&op, &config).unwrap();
    for (pair, w) in top.pairs.iter().zip([-20.0, 10.0, 5.0]) {
        assert!(rel(pair.value, w) < config.tol, "{} vs {w}", pair.value);
        assert!(pair.converged && pair.iterations < config.max_iter);
        // The Rayleigh quotient is within the residual of an eigenvalue.
        assert!((pair.value - w).abs() <= pair.residual + 1e-12);
    }
    let iterations: usize = top.pairs.iter().map(|p| p.iterations).sum();
    assert_eq!(top.matvecs, iterations + 3);
    // Serialises without the vectors.
    let json = serde_json::to_value(&top).unwrap();
    assert_eq!(json["method"], "power");
    assert!(json["pairs"][0].get("vector").is_none());
    assert!(json["pairs"][0]["residual"].is_number());
}

#[test]
fn eigen_errors_and_config_checks() {
    let op = operator(&with_spectrum(&[1.0, 2.0, 3.0], 1), 3);
    for k in [4, 10] {
        let err = eigen::lanczos(
            &op,
            &LanczosConfig {
                top_k: k,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::TopKTooLarge { k: kk, dim: 3 } if kk == k),
            "{err}"
        );
        let err = eigen::power_iteration(
            &op,
            &PowerConfig {
                top_k: k,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::TopKTooLarge { .. }), "{err}");
    }
    let bad = [
        LanczosConfig {
            top_k: 0,
            ..Default::default()
        },
        LanczosConfig {
            top_k: 5,
            max_iter: 4,
            ..Default::default()
        },
        LanczosConfig {
            tol: f64::NAN,
            ..Default::default()
        },
    ];
    for c in bad {
        assert!(c.check().is_err_and(|e| e.is_invalid_config()), "{c:?}");
    }
    assert!(
        PowerConfig {
            max_iter: 0,
            ..Default::default()
        }
        .check()
        .is_err()
    );
    assert!(
        HutchinsonConfig {
            min_samples: 101,
            ..Default::default()
        }
        .check()
        .is_err()
    );
    assert!(
        HutchPlusPlusConfig {
            matvecs: 3,
            ..Default::default()
        }
        .check()
        .is_err()
    );
    assert!(
        SlqConfig {
            bins: 1,
            ..Default::default()
        }
        .check()
        .is_err()
    );
    // A vector of the wrong length.
    let err = op
        .apply(&Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::DimensionMismatch { .. }));
}

#[test]
fn solvers_work_in_f32() {
    let p = 50;
    let spectrum = test_spectrum(p);
    let a = with_spectrum(&spectrum, 17);
    let op = DenseOperator::from_rows(&a, p, DType::F32, &Device::Cpu).unwrap();
    let top = eigen::lanczos(
        &op,
        &LanczosConfig {
            top_k: 4,
            tol: 1e-4,
            ..Default::default()
        },
    )
    .unwrap();
    for (pair, w) in top.pairs.iter().zip([10.0, 9.999, 9.998, 6.0]) {
        assert!(rel(pair.value, w) < 1e-4, "{} vs {w}", pair.value);
        assert!(pair.residual < 1e-3 * w, "{:e}", pair.residual);
        assert_eq!(pair.vector.dtype(), DType::F32);
    }
    let pw = eigen::power_iteration(&op, &PowerConfig::default()).unwrap();
    // |−12| vs 10: a slow ratio (0.83), so about 1e-3 relative change per step at the end.
    assert!(
        rel(pw.pairs[0].value, -12.0) < 1e-2,
        "{}",
        pw.pairs[0].value
    );
    let tr: f64 = spectrum.iter().sum();
    let t = trace::hutch_plus_plus(&op, &HutchPlusPlusConfig::default()).unwrap();
    assert!(
        (t.value - tr).abs() < 3.0 * t.std_error + 1e-3,
        "{} vs {tr}",
        t.value
    );
    let d = density::slq(
        &op,
        &SlqConfig {
            iterations: p,
            bins: 500,
            ..Default::default()
        },
    )
    .unwrap();
    let (lo, hi) = d.node_range();
    assert!(
        (lo + 12.0).abs() < 1e-3 && (hi - 10.0).abs() < 1e-3,
        "{lo} {hi}"
    );
}

// ---------------------------------------------------------------------------------------------
// Traces

#[test]
fn hutchinson_standard_error_is_honest() {
    let p = 30;
    let g = gaussian(p * p, 21);
    let mut a = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..p {
            a[i * p + j] = g[i * p + j] + g[j * p + i] + if i == j { 1.0 } else { 0.0 };
        }
    }
    let tr: f64 = (0..p).map(|i| a[i * p + i]).sum();
    let op = operator(&a, p);
    let mut z = Vec::new();
    let mut zpp = Vec::new();
    for seed in 0..50 {
        let t = trace::hutchinson(
            &op,
            &HutchinsonConfig {
                max_samples: 20,
                tol: 0.0,
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((t.samples, t.matvecs, t.draws.len()), (20, 20, 20));
        assert!(t.converged, "a fixed budget is complete once spent");
        z.push((t.value - tr) / t.std_error);
        let t = trace::hutch_plus_plus(
            &op,
            &HutchPlusPlusConfig {
                matvecs: 24,
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((t.samples, t.matvecs, t.sketch_rank), (8, 24, Some(8)));
        zpp.push((t.value - tr) / t.std_error);
    }
    for (name, z) in [("Hutchinson", &z), ("Hutch++", &zpp)] {
        let (m, sd) = mean_sd(z);
        eprintln!("{name}: z-scores over 50 seeds: mean {m:.3}, sd {sd:.3}");
        assert!(m.abs() < 0.6, "{name}: mean z {m}");
        assert!((0.7..1.45).contains(&sd), "{name}: sd of z {sd}");
    }
}

#[test]
fn hutch_plus_plus_beats_hutchinson_on_a_decaying_spectrum() {
    let p = 100;
    let spectrum: Vec<f64> = (0..p).map(|i| 100.0 * 0.7f64.powi(i as i32)).collect();
    let tr: f64 = spectrum.iter().sum();
    let op = operator(&with_spectrum(&spectrum, 4), p);
    let (mut e_h, mut e_pp) = (0.0, 0.0);
    let mut outside = 0;
    let runs = 20;
    for seed in 0..runs {
        let h = trace::hutchinson(
            &op,
            &HutchinsonConfig {
                max_samples: 30,
                tol: 0.0,
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        let pp = trace::hutch_plus_plus(
            &op,
            &HutchPlusPlusConfig {
                matvecs: 30,
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((h.matvecs, pp.matvecs), (30, 30));
        if (pp.value - tr).abs() > 3.0 * pp.std_error {
            outside += 1;
        }
        e_h += (h.value - tr).powi(2);
        e_pp += (pp.value - tr).powi(2);
    }
    let (rms_h, rms_pp) = ((e_h / runs as f64).sqrt(), (e_pp / runs as f64).sqrt());
    eprintln!("RMS error Hutch++ {rms_pp} vs Hutchinson {rms_h}; {outside} of {runs} beyond 3 SE");
    assert!(
        rms_pp < 0.25 * rms_h,
        "RMS error Hutch++ {rms_pp} vs Hutchinson {rms_h}"
    );
    // Ten residual probes per estimate: the z-scores are roughly t(9), 1.5% beyond 3.
    assert!(
        outside <= 2,
        "{outside} of {runs} Hutch++ estimates beyond 3 standard errors"
    );
}

/// The default trace estimate (what `terrain hessian` prints with no flags) has an honest standard
/// error on a model's Hessian: over 50 seeds the z-scores against the exact trace have mean near
/// 0 and standard deviation near 1.
#[test]
fn the_default_trace_has_an_honest_standard_error_on_a_model_hessian() {
    terrain_model::autodiff::ensure_second_order().unwrap();
    let m = model("mlp:4-6-3:tanh", 3);
    let data = terrain_testkit::iris(24);
    let h = HessianOperator::new(&m, &data, HessianConfig::new(LossKind::Ce)).unwrap();
    let exact = DenseHessian::compute(&h, 4096).unwrap().trace();
    let z: Vec<f64> = (0..50)
        .map(|seed| {
            let t = trace::hutchinson(
                &h,
                &HutchinsonConfig {
                    seed,
                    ..HutchinsonConfig::default()
                },
            )
            .unwrap();
            assert_eq!(t.samples, 100, "a fixed budget: no early stop");
            (t.value - exact) / t.std_error
        })
        .collect();
    let (mean, sd) = mean_sd(&z);
    eprintln!("default trace: z over 50 seeds: mean {mean:.3}, sd {sd:.3} (exact {exact:.4})");
    assert!(mean.abs() < 0.6, "mean z {mean}");
    assert!((0.7..=1.4).contains(&sd), "sd of z {sd}");
}

#[test]
fn hutchinson_follows_pyhessian_stopping_rule() {
    let p = 50;
    let spectrum: Vec<f64> = (0..p).map(|i| 1.0 + i as f64 / 10.0).collect();
    let tr: f64 = spectrum.iter().sum();
    let op = operator(&with_spectrum(&spectrum, 9), p);
    let t = trace::hutchinson(&op, &HutchinsonConfig::pyhessian()).unwrap();
    assert!(t.converged && t.samples < 100);
    // The rule: the last mean moved by less than tol relative to the previous one.
    let n = t.draws.len();
    let prev = t.draws[..n - 1].iter().sum::<f64>() / (n - 1) as f64;
    assert!((t.value - prev).abs() / (prev.abs() + 1e-6) < 1e-3);
    assert!(
        (t.value - tr).abs() < 4.0 * t.std_error,
        "{} vs {tr}",
        t.value
    );
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["method"], "hutchinson");
    assert!(json.get("sketch_trace").is_none());
}

// ---------------------------------------------------------------------------------------------
// Spectral density

#[test]
fn slq_on_a_known_spectrum() {
    let p = 60;
    let spectrum = test_spectrum(p);
    let tr: f64 = spectrum.iter().sum();
    let op = operator(&with_spectrum(&spectrum, 13), p);
    let config = SlqConfig {
        iterations: 30,
        runs: 4,
        bins: 2000,
        ..Default::default()
    };
    let d = density::slq(&op, &config).unwrap();
    assert_eq!(d.runs.len(), 4);
    assert_eq!(d.matvecs, 120);
    assert_eq!((d.grid.len(), d.density.len()), (2000, 2000));
    let dx = d.grid[1] - d.grid[0];
    assert!((d.density.iter().sum::<f64>() * dx - 1.0).abs() < 1e-12);
    assert!(d.density.iter().all(|x| *x >= 0.0));
    for (r, run) in d.runs.iter().enumerate() {
        assert_eq!(run.iterations, 30);
        assert!((run.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // First moment = vᵀHv/‖v‖² for the run's Rademacher start vector.
        let v = vector::random(
            p,
            Probe::Rademacher,
            terrain_model::rng::stream_seed(config.seed, r as u64),
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        let vhv = vector::dot(&op.apply(&v).unwrap(), &v).unwrap() / p as f64;
        assert!((run.moment(1) - vhv).abs() < 1e-12 * vhv.abs().max(1.0));
        // Extreme Ritz values lie inside the spectrum and converge to its ends.
        assert!(run.nodes[0] >= -12.0 - 1e-9 && *run.nodes.last().unwrap() <= 10.0 + 1e-9);
        assert!((run.nodes[0] + 12.0).abs() < 1e-6, "{}", run.nodes[0]);
    }
    // The trace estimate (Hutchinson in disguise) is near the trace.
    let ests: Vec<f64> = d.runs.iter().map(|r| p as f64 * r.moment(1)).collect();
    let (m, sd) = mean_sd(&ests);
    assert!((m - tr).abs() < 4.0 * sd / 2.0 + 1e-9, "{m} vs {tr}");
    assert!((d.trace_estimate(p) - m).abs() < 1e-9);
    // With as many steps as dimensions the nodes are the eigenvalues.
    let full = density::slq(
        &op,
        &SlqConfig {
            iterations: 200,
            bins: 500,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(full.runs[0].iterations, p);
    let (lo, hi) = full.node_range();
    assert!(
        (lo + 12.0).abs() < 1e-10 && (hi - 10.0).abs() < 1e-10,
        "{lo} {hi}"
    );
    assert!(
        (full.moment(2) * p as f64 / spectrum.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 0.5
    );
    let json = serde_json::to_value(&full).unwrap();
    assert!(json["runs"][0]["nodes"].is_array() && json["density"].is_array());
}

#[test]
fn broadening_follows_pyhessian() {
    // One node of weight 1 at 0: the grid spans ±0.01, σ² = 1e-5 · max(1, 0.02) = 1e-5.
    let q = density::Quadrature {
        nodes: vec![0.0],
        weights: vec![1.0],
        iterations: 1,
    };
    let (grid, dens, s2) = density::broaden(std::slice::from_ref(&q), 10_001, 1e-5, 0.01).unwrap();
    assert!((grid[0] + 0.01).abs() < 1e-15 && (grid[10_000] - 0.01).abs() < 1e-15);
    assert_eq!(s2, 1e-5);
    // The peak of a normalised Gaussian of variance 1e-5 (the ±0.01 window holds ~99.85%).
    let peak = 1.0 / (2.0 * std::f64::consts::PI * 1e-5f64).sqrt();
    assert!(rel(dens[5000], peak) < 3e-3, "{} vs {peak}", dens[5000]);
    // A single point needs a padding.
    assert!(density::broaden(&[q], 10, 1e-5, 0.0).is_err());
}

// ---------------------------------------------------------------------------------------------
// Hessians of tiny models against their dense eigendecomposition

/// A few rows of digits with a little Gaussian noise, so no max-pool window holds a tie (ties
/// make candle's `max` backward route the gradient to every maximum).
fn noisy_digits(n: usize) -> data::Dataset {
    let d = data::builtin::load("digits").unwrap();
    let d = d.subset(&(0..n).collect::<Vec<_>>()).unwrap();
    let noise = vector::random(
        d.x.elem_count(),
        Probe::Gaussian,
        99,
        DType::F64,
        &Device::Cpu,
    )
    .unwrap()
    .reshape(d.x.shape())
    .unwrap()
    .affine(1e-2, 0.0)
    .unwrap()
    .to_dtype(d.x.dtype())
    .unwrap();
    data::Dataset::new(
        "digits-noisy",
        d.x.add(&noise).unwrap(),
        d.y.clone(),
        d.task,
    )
    .unwrap()
}

fn check_against_dense(h: &HessianOperator, name: &str) {
    let p = h.dim();
    let dense = DenseHessian::compute(h, 4096).unwrap();
    let e = dense.eigen().unwrap();
    let (res, orth) = eigen_errors(dense.values(), &e);
    let scale = e.values[0].abs().max(e.values[p - 1].abs());
    assert!(
        res < 1e-10 * scale && orth < 1e-10,
        "{name}: dense eigen {res:e} {orth:e}"
    );

    // Lanczos top 3.
    let top = eigen::lanczos(
        h,
        &LanczosConfig {
            top_k: 3,
            tol: 1e-8,
            ..Default::default()
        },
    )
    .unwrap();
    for (pair, j) in top.pairs.iter().zip(e.top_indices(3)) {
        let w = e.values[j];
        assert!(
            rel(pair.value, w) < 1e-6,
            "{name}: Lanczos {} vs {w}",
            pair.value
        );
        assert!(
            pair.residual < 1e-6 * scale,
            "{name}: residual {:e}",
            pair.residual
        );
    }

    eprintln!(
        "{name}: p = {p}, Lanczos top 3 {:?} in {} steps, exact {:?}",
        top.values(),
        top.pairs[0].iterations,
        e.top_indices(3).map(|j| e.values[j]).collect::<Vec<_>>()
    );

    // Power iteration: the eigenvalue of largest magnitude, to about its tolerance.
    let pw = eigen::power_iteration(h, &PowerConfig::default()).unwrap();
    let w = if e.values[p - 1].abs() >= e.values[0].abs() {
        e.values[p - 1]
    } else {
        e.values[0]
    };
    let pair = &pw.pairs[0];
    eprintln!(
        "{name}: power {} ({} steps, residual {:e}) vs {w}",
        pair.value, pair.iterations, pair.residual
    );
    assert!(
        rel(pair.value, w) < 1e-2,
        "{name}: power {} vs {w}",
        pair.value
    );
    assert!(
        (pair.value - w).abs() <= pair.residual + 1e-12,
        "{name}: power residual"
    );

    // Hutchinson and Hutch++ within 3 standard errors of the trace.
    let tr = dense.trace();
    let t = trace::hutchinson(
        h,
        &HutchinsonConfig {
            min_samples: 20,
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!(
        "{name}: Hutchinson {} ± {} ({} samples) vs {tr}",
        t.value, t.std_error, t.samples
    );
    assert!(
        (t.value - tr).abs() < 3.0 * t.std_error,
        "{name}: Hutchinson {} ± {} vs {tr}",
        t.value,
        t.std_error
    );
    let t = trace::hutch_plus_plus(
        h,
        &HutchPlusPlusConfig {
            matvecs: 60,
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!("{name}: Hutch++ {} ± {} vs {tr}", t.value, t.std_error);
    assert!(
        (t.value - tr).abs() < 3.0 * t.std_error,
        "{name}: Hutch++ {} ± {} vs {tr}",
        t.value,
        t.std_error
    );

    // SLQ with as many steps as dimensions: exact extremes, density integrating to 1.
    let d = density::slq(
        h,
        &SlqConfig {
            iterations: p,
            bins: 1000,
            ..Default::default()
        },
    )
    .unwrap();
    let (lo, hi) = d.node_range();
    assert!(
        (lo - e.values[0]).abs() < 1e-8 * scale,
        "{name}: SLQ min {lo} vs {}",
        e.values[0]
    );
    assert!(
        (hi - e.values[p - 1]).abs() < 1e-8 * scale,
        "{name}: SLQ max {hi} vs {}",
        e.values[p - 1]
    );
    let dx = d.grid[1] - d.grid[0];
    assert!((d.density.iter().sum::<f64>() * dx - 1.0).abs() < 1e-12);
}

#[test]
fn solvers_on_the_hessian_of_an_mlp() {
    let m = model("mlp:4-6-3:tanh", 1);
    let data = data::builtin::load("iris").unwrap();
    let h = HessianOperator::new(&m, &data, HessianConfig::new(LossKind::Ce)).unwrap();
    check_against_dense(&h, "mlp");
}

#[test]
fn solvers_on_the_hessian_of_a_cnn() {
    let m = model("cnn:1x8x8-4-10:tanh", 2);
    let data = noisy_digits(24);
    let h = HessianOperator::new(&m, &data, HessianConfig::new(LossKind::Ce)).unwrap();
    check_against_dense(&h, "cnn");
}
