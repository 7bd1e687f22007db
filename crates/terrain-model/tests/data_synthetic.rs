//! Synthetic datasets: shapes, determinism, the generating rules, label noise.

use terrain_model::data::synthetic::{self, SyntheticConfig, SyntheticKind};
use terrain_model::data::{Targets, Task};

fn cfg(kind: SyntheticKind, n: usize, noise: f64, seed: u64) -> SyntheticConfig {
    SyntheticConfig {
        kind,
        n,
        label_noise: noise,
        seed,
        ..SyntheticConfig::default()
    }
}

fn rows(d: &terrain_model::data::Dataset) -> Vec<Vec<f32>> {
    d.x.to_vec2().unwrap()
}

#[test]
fn classification_kinds_are_2d_binary_and_deterministic() {
    for kind in [
        SyntheticKind::Gaussian,
        SyntheticKind::Sinusoid,
        SyntheticKind::Spiral,
    ] {
        let a = synthetic::generate(&cfg(kind, 101, 0.0, 1)).unwrap();
        assert_eq!(a.x.dims(), &[101, 2], "{kind:?}");
        assert_eq!(a.task, Task::Classification { classes: 2 });
        let b = synthetic::generate(&cfg(kind, 101, 0.0, 1)).unwrap();
        assert_eq!(rows(&a), rows(&b), "{kind:?}: same seed, same data");
        assert_eq!(a.labels().unwrap(), b.labels().unwrap());
        let c = synthetic::generate(&cfg(kind, 101, 0.0, 2)).unwrap();
        assert_ne!(rows(&a), rows(&c), "{kind:?}: another seed, other data");
        assert_eq!(a.name, cfg(kind, 101, 0.0, 1).source());
    }
}

#[test]
fn gaussian_has_the_paper_means_and_spread() {
    let d = synthetic::generate(&cfg(SyntheticKind::Gaussian, 4000, 0.0, 0)).unwrap();
    let counts = d.class_counts().unwrap().unwrap();
    assert_eq!(counts, vec![2000, 2000]);
    let y = d.labels().unwrap().unwrap();
    for class in 0..2u32 {
        let pts: Vec<Vec<f32>> = rows(&d)
            .into_iter()
            .zip(&y)
            .filter(|(_, l)| **l == class)
            .map(|(r, _)| r)
            .collect();
        for j in 0..2 {
            let m = pts.iter().map(|r| r[j] as f64).sum::<f64>() / pts.len() as f64;
            let v = pts.iter().map(|r| (r[j] as f64 - m).powi(2)).sum::<f64>() / pts.len() as f64;
            assert!((m - class as f64).abs() < 0.03, "class {class} mean {m}");
            assert!((v - 0.1).abs() < 0.015, "class {class} variance {v}");
        }
    }
    // Rows are shuffled: the first half is not one class.
    assert!(y[..2000].contains(&1) && y[..2000].contains(&0));
}

#[test]
fn sinusoid_labels_follow_the_boundary_and_noise_flips_floor_count() {
    let rule = |r: &[f32]| {
        let (a, b) = (r[0] as f64, r[1] as f64);
        u32::from((a + b) + (b - a).sin() > 0.0)
    };
    let clean = synthetic::generate(&cfg(SyntheticKind::Sinusoid, 500, 0.0, 3)).unwrap();
    let y = clean.labels().unwrap().unwrap();
    assert!(rows(&clean).iter().zip(&y).all(|(r, &l)| rule(r) == l));
    let noisy = synthetic::generate(&cfg(SyntheticKind::Sinusoid, 500, 0.05, 3)).unwrap();
    let y = noisy.labels().unwrap().unwrap();
    let wrong = rows(&noisy)
        .iter()
        .zip(&y)
        .filter(|(r, l)| rule(r) != **l)
        .count();
    assert_eq!(wrong, 25);
}

#[test]
fn spiral_arms_grow_outwards() {
    let d = synthetic::generate(&cfg(SyntheticKind::Spiral, 400, 0.0, 0)).unwrap();
    assert_eq!(d.class_counts().unwrap().unwrap(), vec![200, 200]);
    // Radius reaches about 4π (+π for class 0) plus unit noise.
    let max_r = rows(&d)
        .iter()
        .map(|r| ((r[0] * r[0] + r[1] * r[1]) as f64).sqrt())
        .fold(0.0, f64::max);
    assert!(
        max_r > 12.0 && max_r < 5.0 * std::f64::consts::PI + 5.0,
        "{max_r}"
    );
}

#[test]
fn label_noise_changes_labels_in_gaussian_and_spiral() {
    for kind in [SyntheticKind::Gaussian, SyntheticKind::Spiral] {
        let d = synthetic::generate(&cfg(kind, 200, 0.5, 0)).unwrap();
        let counts = d.class_counts().unwrap().unwrap();
        assert_eq!(counts.iter().sum::<usize>(), 200);
        assert!(counts.iter().all(|&c| c > 0), "{kind:?}");
    }
}

#[test]
fn teacher_student_is_a_regression() {
    let c = synthetic::parse("synthetic:teacher:n=200,d=5", 4).unwrap();
    let d = synthetic::generate(&c).unwrap();
    assert_eq!(d.x.dims(), &[200, 5]);
    assert_eq!(d.task, Task::Regression { outputs: 1 });
    let Targets::Values(y) = &d.y else { panic!() };
    assert_eq!(y.dims(), &[200, 1]);
    let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    let mean = v.iter().map(|&a| a as f64).sum::<f64>() / 200.0;
    let var = v.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / 200.0;
    assert!(var > 0.01, "targets vary: {var}");
    // Noise-free teacher data is a deterministic function of x: same x, same y across noise levels
    // is not guaranteed (the noise draws interleave), but the same config repeats exactly.
    let again = synthetic::generate(&c).unwrap();
    assert_eq!(
        again
            .y
            .tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        v
    );
    assert!(
        synthetic::generate(&SyntheticConfig {
            label_noise: 0.1,
            ..c.clone()
        })
        .is_err()
    );
}

#[test]
fn bad_configs_are_errors() {
    assert!(synthetic::generate(&cfg(SyntheticKind::Spiral, 0, 0.0, 0)).is_err());
    assert!(synthetic::generate(&cfg(SyntheticKind::Spiral, 10, -0.1, 0)).is_err());
    let msg = synthetic::parse("synthetic:moons", 0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("moons") && msg.contains("spiral"), "{msg}");
    let msg = synthetic::parse("synthetic:gaussian:size=3", 0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("size"), "{msg}");
}
