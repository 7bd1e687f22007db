//! `terrain train --objective`: from `--init` weights, K full-batch plain-SGD steps of each
//! objective end where an independent computation in this file (softmax regression's per-example
//! gradients by hand, each objective's ∂F/∂ℓ_i from its definition) ends; bad objective settings
//! fail naming the flag and the value.

use std::{collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor};
use terrain_e2e::{fails, ok};

const N: usize = 8;
const D: usize = 3;
const K: usize = 4;
const LR: f64 = 0.5;
const STEPS: usize = 3;

/// Inputs exactly representable in f32 (data files store f32), labels 0..4.
fn data() -> (Vec<[f64; D]>, Vec<usize>) {
    let x: Vec<[f64; D]> = (0..N)
        .map(|i| {
            let t = i as f64;
            [
                ((i * 5 % 8) as f64 - 3.5) / 2.0,
                ((i * 3 % 7) as f64 - 3.0) / 4.0,
                (t - 3.0) / 8.0,
            ]
        })
        .collect();
    let y = vec![0, 1, 2, 3, 1, 2, 0, 3];
    (x, y)
}

fn initial() -> (Vec<f64>, Vec<f64>) {
    let w: Vec<f64> = (0..K * D)
        .map(|i| ((i as f64) * 0.37).sin() * 0.6)
        .collect();
    let b: Vec<f64> = (0..K).map(|i| (i as f64 - 1.5) * 0.1).collect();
    (w, b)
}

fn write_inputs(dir: &Path) {
    let (x, y) = data();
    let flat: Vec<f32> = x.iter().flatten().map(|&v| v as f32).collect();
    let mut t = HashMap::new();
    t.insert(
        "x".to_string(),
        Tensor::from_vec(flat, (N, D), &Device::Cpu).unwrap(),
    );
    t.insert(
        "y".to_string(),
        Tensor::from_vec(
            y.iter().map(|&v| v as u32).collect::<Vec<_>>(),
            N,
            &Device::Cpu,
        )
        .unwrap(),
    );
    candle_core::safetensors::save(&t, dir.join("data.safetensors")).unwrap();
    // The initial weights as a PyTorch-style state dict (`0.weight` [out, in], `0.bias`).
    let (w, b) = initial();
    let mut m = HashMap::new();
    m.insert(
        "0.weight".to_string(),
        Tensor::from_vec(w, (K, D), &Device::Cpu).unwrap(),
    );
    m.insert(
        "0.bias".to_string(),
        Tensor::from_vec(b, K, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&m, dir.join("init.safetensors")).unwrap();
}

/// Per-example cross-entropy losses and gradients (flattened [W, b]) of softmax regression.
fn per_example(wb: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (x, y) = data();
    let (w, b) = wb.split_at(K * D);
    let mut losses = Vec::new();
    let mut grads = Vec::new();
    for (xi, &yi) in x.iter().zip(&y) {
        let z: Vec<f64> = (0..K)
            .map(|c| b[c] + (0..D).map(|j| w[c * D + j] * xi[j]).sum::<f64>())
            .collect();
        let m = z.iter().copied().fold(f64::MIN, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        let p: Vec<f64> = z.iter().map(|v| (v - m).exp() / s).collect();
        losses.push(-p[yi].ln());
        let r: Vec<f64> = (0..K)
            .map(|c| p[c] - f64::from(u8::from(c == yi)))
            .collect();
        let mut g: Vec<f64> = (0..K * D).map(|i| r[i / D] * xi[i % D]).collect();
        g.extend(&r);
        grads.push(g);
    }
    (losses, grads)
}

fn weighted(weights: &[f64], grads: &[Vec<f64>]) -> Vec<f64> {
    let mut out = vec![0.0; grads[0].len()];
    for (w, g) in weights.iter().zip(grads) {
        for (o, gi) in out.iter_mut().zip(g) {
            *o += w * gi;
        }
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The χ²-DRO value from the dual side: inf_η √(1 + 2r)·√(mean (ℓ − η)₊²) + η.
fn dro_dual(l: &[f64], r: f64) -> f64 {
    let g = |eta: f64| {
        (1.0 + 2.0 * r).sqrt()
            * mean(
                &l.iter()
                    .map(|v| (v - eta).max(0.0).powi(2))
                    .collect::<Vec<_>>(),
            )
            .sqrt()
            + eta
    };
    let (mut lo, mut hi) = (-100.0, l.iter().copied().fold(f64::MIN, f64::max));
    for _ in 0..400 {
        let (a, b) = (lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0);
        if g(a) < g(b) {
            hi = b;
        } else {
            lo = a;
        }
    }
    g(0.5 * (lo + hi))
}

/// ∂F/∂ℓ_i of each objective, from its definition.
fn loss_weights(objective: &str, l: &[f64]) -> Vec<f64> {
    let n = l.len() as f64;
    let top = |k: usize| {
        let mut idx: Vec<usize> = (0..l.len()).collect();
        idx.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap());
        let mut w = vec![0.0; l.len()];
        for &i in &idx[..k] {
            w[i] = 1.0 / k as f64;
        }
        w
    };
    match objective {
        "erm" => vec![1.0 / n; l.len()],
        // b = 5 lies above the mean loss: the whole batch ascends.
        "flood" => vec![sign(mean(l) - 5.0) / n; l.len()],
        "iflood" => l.iter().map(|v| sign(v - 1.2) / n).collect(),
        "softad" => l
            .iter()
            .map(|v| {
                let z = (v - 1.2) / 0.5;
                0.5 * z / (1.0 + z * z).sqrt() / n
            })
            .collect(),
        "tilted" => {
            let e: Vec<f64> = l.iter().map(|v| (1.5 * v).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        }
        // α = 0.5, n = 8: the top 4.
        "cvar" => top(4),
        "coce" => {
            let t = top(4);
            let c: f64 = t.iter().zip(l).map(|(w, v)| w * v).sum();
            let d = c - 0.2;
            t.iter().map(|w| w * d / (1.0 + d * d).sqrt()).collect()
        }
        "dro" => (0..l.len())
            .map(|i| {
                let h = 1e-6;
                let (mut a, mut b) = (l.to_vec(), l.to_vec());
                a[i] += h;
                b[i] -= h;
                (dro_dual(&a, 0.5) - dro_dual(&b, 0.5)) / (2.0 * h)
            })
            .collect(),
        other => panic!("no hand weights for {other}"),
    }
}

/// STEPS plain full-batch SGD steps of `objective`, by hand.
fn by_hand(objective: &str) -> Vec<f64> {
    let (w, b) = initial();
    let mut wb: Vec<f64> = w.into_iter().chain(b).collect();
    for _ in 0..STEPS {
        let (l, g) = per_example(&wb);
        let grad = match objective {
            "sam" | "asam" => {
                let mean_g = weighted(&[1.0 / N as f64; N], &g);
                let rho = if objective == "sam" { 0.1 } else { 0.5 };
                let eps: Vec<f64> = if objective == "sam" {
                    let norm = mean_g.iter().map(|v| v * v).sum::<f64>().sqrt();
                    mean_g.iter().map(|v| rho * v / (norm + 1e-12)).collect()
                } else {
                    let tg: Vec<f64> = wb.iter().zip(&mean_g).map(|(w, g)| w.abs() * g).collect();
                    let norm = tg.iter().map(|v| v * v).sum::<f64>().sqrt();
                    wb.iter()
                        .zip(&tg)
                        .map(|(w, t)| rho * w.abs() * t / (norm + 1e-12))
                        .collect()
                };
                let shifted: Vec<f64> = wb.iter().zip(&eps).map(|(a, e)| a + e).collect();
                let (_, g2) = per_example(&shifted);
                weighted(&[1.0 / N as f64; N], &g2)
            }
            _ => weighted(&loss_weights(objective, &l), &g),
        };
        for (w, g) in wb.iter_mut().zip(&grad) {
            *w -= LR * g;
        }
    }
    wb
}

fn trained(path: &Path) -> Vec<f64> {
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let get = |n: &str| -> Vec<f64> {
        t[n].to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    get("0.weight").into_iter().chain(get("0.bias")).collect()
}

#[test]
fn full_batch_sgd_from_init_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let d = |f: &str| dir.path().join(f).display().to_string();
    let (data, init) = (d("data.safetensors"), d("init.safetensors"));
    let cases: &[(&str, &[&str])] = &[
        ("erm", &[]),
        ("flood", &["--flood-level", "5"]),
        ("iflood", &["--theta", "1.2"]),
        ("softad", &["--theta", "1.2", "--sigma", "0.5"]),
        ("sam", &["--rho", "0.1"]),
        ("asam", &["--rho", "0.5"]),
        ("tilted", &["--tilt", "1.5"]),
        ("cvar", &["--cvar-alpha", "0.5"]),
        ("dro", &["--dro-radius", "0.5"]),
        ("coce", &["--theta", "0.2", "--cvar-alpha", "0.5"]),
    ];
    for (objective, extra) in cases {
        let out = d(&format!("{objective}.safetensors"));
        let steps = STEPS.to_string();
        let rows = N.to_string();
        let lr = LR.to_string();
        let mut args = vec![
            "--format",
            "json",
            "train",
            "--arch",
            "mlp:3-4:tanh",
            "--init",
            &init,
            "--data",
            &data,
            "--holdout",
            "0",
            "--no-standardize",
            "--dtype",
            "f64",
            "--batch-size",
            &rows,
            "--optimizer",
            "sgd",
            "--momentum",
            "0",
            "--lr",
            &lr,
            "--epochs",
            &steps,
            "--objective",
            objective,
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        let r = ok(&args);
        assert_eq!(r["train_rows"], N, "--holdout 0 trains on every row");
        assert!(r["test_rows"].is_null());
        assert_eq!(r["steps"], STEPS);
        let got = trained(Path::new(&out));
        let want = by_hand(objective);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let moved = got
            .iter()
            .zip(initial().0.iter().chain(&initial().1))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-8, "{objective}: max |Δw| vs hand {err:e}");
        assert!(
            moved > 1e-3,
            "{objective}: training moved the weights by {moved}"
        );
        // The record names the objective with its settings and keeps per-epoch diagnostics.
        let e = &r["epochs"][STEPS - 1];
        assert!(e["param_norm"].as_f64().unwrap() > 0.0);
        assert!(e["loss_p99"].as_f64().unwrap() >= e["loss_p90"].as_f64().unwrap());
        assert!(r["objective"].as_str().unwrap().starts_with(objective));
    }
}

#[test]
fn bad_objective_settings_name_the_flag_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.safetensors").display().to_string();
    let base = [
        "train",
        "--arch",
        "mlp:4-3:tanh",
        "--data",
        "iris",
        "--epochs",
        "1",
        "--out",
        &out,
    ];
    for (extra, needles) in [
        (
            &["--objective", "softad", "--theta", "0.5", "--sigma", "0"][..],
            &["--sigma", "0"][..],
        ),
        (
            &["--objective", "softad", "--theta", "0.5", "--sigma", "-1"],
            &["--sigma", "-1"],
        ),
        (
            &["--objective", "softad", "--theta", "0.5", "--sigma", "nan"],
            &["--sigma", "NaN"],
        ),
        (&["--objective", "sam", "--rho", "-0.1"], &["--rho", "-0.1"]),
        (
            &["--objective", "softad", "--theta", "-0.2"],
            &["--theta", "-0.2"],
        ),
        (
            &["--objective", "iflood", "--theta", "-1"],
            &["--theta", "-1"],
        ),
        (
            &["--objective", "cvar", "--cvar-alpha", "1"],
            &["--cvar-alpha", "1"],
        ),
        (
            &["--objective", "cvar", "--cvar-alpha", "0"],
            &["--cvar-alpha", "0"],
        ),
        (
            &[
                "--objective",
                "coce",
                "--theta",
                "0.1",
                "--cvar-alpha",
                "1.5",
            ],
            &["--cvar-alpha", "1.5"],
        ),
        (&["--objective", "tilted", "--tilt", "0"], &["--tilt", "0"]),
        (
            &["--objective", "dro", "--dro-radius", "-1"],
            &["--dro-radius", "-1"],
        ),
        (
            &["--objective", "sam", "--theta", "0.5"],
            &["--theta 0.5", "--objective sam", "--rho"],
        ),
        (
            &["--objective", "erm", "--rho", "0.5"],
            &["--rho 0.5", "erm"],
        ),
        (
            &["--objective", "softad"],
            &["--objective softad needs --theta"],
        ),
        (&["--objective", "adamw"], &["adamw", "softad"]),
        (
            &["--objective", "softad", "--theta", "0.3", "--mixup", "0.2"],
            &["--mixup", "0.2", "per-example"],
        ),
        (&["--validation", "1.5"], &["--validation", "1.5"]),
        (
            &["--validation", "0.2", "--validation-data", "iris"],
            &["--validation", "exclude"],
        ),
        (
            &["--objective", "softad:theta=0.3", "--theta", "0.3"],
            &["--theta 0.3", "compact"],
        ),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let err = fails(&args);
        for n in needles {
            assert!(err.contains(n), "{extra:?}: `{n}` not in: {err}");
        }
    }
}

#[test]
fn init_takes_the_architecture_from_the_checkpoint_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.safetensors").display().to_string();
    let b = dir.path().join("b.safetensors").display().to_string();
    ok(&[
        "--format",
        "json",
        "train",
        "--arch",
        "mlp:4-5-3:tanh",
        "--data",
        "iris",
        "--epochs",
        "1",
        "--out",
        &a,
    ]);
    let r = ok(&[
        "--format",
        "json",
        "train",
        "--init",
        &a,
        "--data",
        "iris",
        "--epochs",
        "1",
        "--objective",
        "softad",
        "--theta",
        "0.2",
        "--out",
        &b,
    ]);
    assert_eq!(r["arch"], "mlp:4-5-3:tanh");
    assert_eq!(r["objective"], "softad:theta=0.2,sigma=1");
    let err = fails(&[
        "train",
        "--init",
        &a,
        "--arch",
        "mlp:4-6-3:tanh",
        "--data",
        "iris",
        "--out",
        &b,
    ]);
    assert!(
        err.contains("mlp:4-5-3:tanh") && err.contains("differs"),
        "{err}"
    );
}
