//! Sharpness, the basics, the MD tree row and input sensitivity against hand computations on
//! a linear least-squares model (loss exactly quadratic in the weights and in the inputs).

use candle_core::{DType, Tensor};
use terrain_curvature::HutchinsonConfig;
use terrain_metrics::{
    mdtree::{self, FeatureConfig},
    sensitivity::{self, FeatureSensitivity, kendall_w, spearman},
    sharpness::{self, BasicsConfig, SharpnessConfig},
};
use terrain_model::{ParamVec, data::Dataset, loss::LossKind};

/// The first `n` diabetes rows, inputs and targets standardised (f64 on use).
fn diabetes(n: usize) -> Dataset {
    let d = terrain_model::data::builtin::load("diabetes").unwrap();
    let d = d.subset(&(0..n).collect::<Vec<_>>()).unwrap();
    let d = d.standardizer().unwrap().apply(&d).unwrap();
    d.target_standardizer()
        .unwrap()
        .unwrap()
        .apply_targets(&d)
        .unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

/// [X, 1] and y of a data set.
fn design(d: &Dataset) -> (Vec<Vec<f64>>, Vec<f64>) {
    let x = rows(&d.x);
    let y: Vec<f64> = rows(d.y.tensor()).into_iter().map(|r| r[0]).collect();
    (
        x.into_iter()
            .map(|mut r| {
                r.push(1.0);
                r
            })
            .collect(),
        y,
    )
}

/// Gradient and Hessian of L(θ) = mean (aᵢᵀθ − yᵢ)² at θ (weights, then bias), by hand.
fn grad_hess(a: &[Vec<f64>], y: &[f64], theta: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (n, p) = (a.len() as f64, theta.len());
    let mut g = vec![0.0; p];
    let mut h = vec![vec![0.0; p]; p];
    for (ai, yi) in a.iter().zip(y) {
        let r: f64 = ai.iter().zip(theta).map(|(u, v)| u * v).sum::<f64>() - yi;
        for j in 0..p {
            g[j] += 2.0 * r * ai[j] / n;
            for k in 0..p {
                h[j][k] += 2.0 * ai[j] * ai[k] / n;
            }
        }
    }
    (g, h)
}

fn quad(h: &[Vec<f64>], v: &[f64]) -> f64 {
    (0..v.len())
        .map(|j| (0..v.len()).map(|k| v[j] * h[j][k] * v[k]).sum::<f64>())
        .sum()
}

#[test]
fn sharpness_and_basics_match_the_quadratic_by_hand() {
    let data = diabetes(120);
    let model = terrain_testkit::model("mlp:10-1:tanh", 4);
    let theta = ParamVec::from_model(&model).unwrap().flatten().unwrap();
    let (a, y) = design(&data);
    let (g, h) = grad_hess(&a, &y, &theta);
    let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let ghat: Vec<f64> = g.iter().map(|v| v / gn).collect();
    let rho = 0.05;
    let s = sharpness::epsilon_sharpness(&model, &data, LossKind::Mse, &SharpnessConfig::default())
        .unwrap();
    // L(θ + ρĝ) − L(θ) = ρ‖g‖ + ½ρ² ĝᵀHĝ exactly for a quadratic.
    let want = rho * gn + 0.5 * rho * rho * quad(&h, &ghat);
    assert!(
        (s.one_step - want).abs() < 1e-10 * want,
        "{} vs {want}",
        s.one_step
    );
    // The ascent can only do better, and no point of the ball beats ρ‖g‖ + ½ρ²λ_max.
    let dense = terrain_curvature::DenseHessian::from_rows(h.concat(), h.len()).unwrap();
    let lmax = *dense.eigen().unwrap().values.last().unwrap();
    assert!(s.multi_step >= s.one_step - 1e-12);
    assert!(s.multi_step <= rho * gn + 0.5 * rho * rho * lmax + 1e-12);
    assert!(s.multi_step_radius <= rho * (1.0 + 1e-12));
    // The model is back at θ.
    assert_eq!(
        ParamVec::from_model(&model).unwrap().flatten().unwrap(),
        theta
    );

    // Basics: the Hessian of this model is the same on every 200-row sample only when the
    // sample is all rows: with 120 rows, every row is used.
    let cfg = BasicsConfig {
        trace: HutchinsonConfig {
            max_samples: 4000,
            ..HutchinsonConfig::default()
        },
        ..BasicsConfig::default()
    };
    let b = sharpness::basics(&model, &data, LossKind::Mse, &cfg).unwrap();
    assert_eq!(b.hessian_rows, 120);
    assert!(
        (b.grad_norm - gn).abs() < 1e-10 * gn,
        "{} vs {gn}",
        b.grad_norm
    );
    let norm = theta.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((b.param_norm - norm).abs() < 1e-12 * norm);
    // Power iteration stops at PyHessian's relative tolerance 1e-3.
    assert!(
        (b.hessian_top_eigenvalue - lmax).abs() < 2e-3 * lmax,
        "{} vs {lmax}",
        b.hessian_top_eigenvalue
    );
    let tr = dense.trace();
    assert!(
        (b.hessian_trace - tr).abs() < 4.0 * b.hessian_trace_std_error,
        "{} ± {} vs {tr}",
        b.hessian_trace,
        b.hessian_trace_std_error
    );
    assert!(b.error.is_none());
}

#[test]
fn input_sensitivity_of_a_linear_model_is_known_in_closed_form() {
    // ℓ = (wᵀx + b − y)²: ∂ℓ/∂x_j = 2r·w_j, ∂²ℓ/∂x_j² = 2w_j², ∂³ℓ/∂x_j³ = 0.
    let data = diabetes(80);
    let model = terrain_testkit::model("mlp:10-1:tanh", 5);
    let theta = ParamVec::from_model(&model).unwrap().flatten().unwrap();
    let (a, y) = design(&data);
    let s = sensitivity::sensitivity(&model, &data, LossKind::Mse, 32).unwrap();
    let res: Vec<f64> = a
        .iter()
        .zip(&y)
        .map(|(ai, yi)| ai.iter().zip(&theta).map(|(u, v)| u * v).sum::<f64>() - yi)
        .collect();
    let mean_r = res.iter().sum::<f64>() / res.len() as f64;
    let mean_abs_r = res.iter().map(|r| r.abs()).sum::<f64>() / res.len() as f64;
    for (j, &w) in theta.iter().enumerate().take(10) {
        assert!((s.mean_d2[j] - 2.0 * w * w).abs() < 1e-12, "d2[{j}]");
        assert!((s.mean_abs_d2[j] - 2.0 * w * w).abs() < 1e-12);
        assert!(
            s.mean_d3[j].abs() < 1e-12 && s.mean_abs_d3[j] < 1e-12,
            "d3[{j}]"
        );
        assert!((s.mean_d1[j] - 2.0 * w * mean_r).abs() < 1e-12, "d1[{j}]");
        assert!((s.mean_abs_d1[j] - 2.0 * w.abs() * mean_abs_r).abs() < 1e-12);
    }
}

#[test]
fn rank_statistics_match_hand_computations() {
    // Ties take the average rank: x = (1, 2, 2, 3) ranks (1, 2.5, 2.5, 4).
    assert_eq!(
        sensitivity::ranks(&[1.0, 2.0, 2.0, 3.0]),
        vec![1.0, 2.5, 2.5, 4.0]
    );
    // Spearman = Pearson on ranks: for (1,2,3,4,5) vs (2,1,4,3,5), d² sums to 4:
    // 1 − 6·4/(5·24) = 0.8.
    assert!((spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]) - 0.8).abs() < 1e-12);
    assert!((spearman(&[1.0, 2.0, 3.0], &[1.0, 8.0, 27.0]) - 1.0).abs() < 1e-12);
    // Kendall's W: identical rankings 1; opposite rankings of two judges 0;
    // three judges (1,2,3), (1,3,2), (2,1,3): totals (4,6,8), S = 8, W = 12·8/(9·24) = 4/9.
    assert!((kendall_w(&[vec![1.0, 2.0, 3.0], vec![10.0, 20.0, 30.0]]) - 1.0).abs() < 1e-12);
    assert!(kendall_w(&[vec![1.0, 2.0, 3.0], vec![3.0, 2.0, 1.0]]).abs() < 1e-12);
    let w = kendall_w(&[
        vec![1.0, 2.0, 3.0],
        vec![1.0, 3.0, 2.0],
        vec![2.0, 1.0, 3.0],
    ]);
    assert!((w - 4.0 / 9.0).abs() < 1e-12, "{w}");
    // The agreement of d2 with |ρ|: a ranking that follows |ρ| exactly gives 1.
    let run = |d2: Vec<f64>| FeatureSensitivity {
        mean_d1: vec![0.0; 3],
        mean_d2: d2,
        mean_d3: vec![0.0; 3],
        mean_abs_d1: vec![0.0; 3],
        mean_abs_d2: vec![0.0; 3],
        mean_abs_d3: vec![0.0; 3],
    };
    let ag = sensitivity::agreement(
        &[run(vec![3.0, 0.2, 1.0]), run(vec![2.0, 0.1, -1.5])],
        &[0.9, -0.1, -0.5],
    );
    assert_eq!(ag.per_run, vec![1.0, 1.0]);
    assert_eq!((ag.mean, ag.sd), (1.0, 0.0));
    assert!((ag.kendall_w - 1.0).abs() < 1e-12);
}

#[test]
fn xavier_initialisation_has_glorots_bounds_and_variance() {
    let model = terrain_testkit::model("mlp:200-300-10:tanh", 0);
    sensitivity::xavier_init(&model, 3).unwrap();
    let p = ParamVec::from_model(&model).unwrap();
    let v: Vec<f64> = p.tensors[0].flatten_all().unwrap().to_vec1().unwrap();
    let bound = (6.0f64 / 500.0).sqrt();
    assert!(v.iter().all(|x| x.abs() <= bound));
    let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
    // Var U(±b) = b²/3 = 2/(fan_in + fan_out); 60 000 draws: relative sd of the estimate ≈ 0.5%.
    assert!((var - 2.0 / 500.0).abs() < 0.03 * 2.0 / 500.0, "{var}");
    let bias: Vec<f64> = p.tensors[1].to_vec1().unwrap();
    assert!(bias.iter().all(|&b| b == 0.0));
    // Seeded: the same seed gives the same weights.
    let again = terrain_testkit::model("mlp:200-300-10:tanh", 9);
    sensitivity::xavier_init(&again, 3).unwrap();
    assert_eq!(
        ParamVec::from_model(&again).unwrap().flatten().unwrap(),
        p.flatten().unwrap()
    );
}

#[test]
fn the_feature_row_has_the_md_tree_columns_and_its_definitions() {
    let data = terrain_testkit::iris(150);
    let models: Vec<_> = (0..3)
        .map(|s| terrain_testkit::model("mlp:4-6-3:tanh", s))
        .collect();
    let refs: Vec<&terrain_model::Model> = models.iter().collect();
    let names: Vec<String> = (0..3).map(|s| format!("seed{s}")).collect();
    let mut cfg = FeatureConfig::new(LossKind::Ce);
    cfg.connect.method = terrain_metrics::connect::Method::Linear;
    let r = mdtree::feature_row(&refs, &names, &data, Some(&data), &cfg).unwrap();
    let row = serde_json::to_value(&r.row).unwrap();
    // The columns of the MD tree's data frames (dataframe_*_public.csv) this row fills.
    let keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "train_error",
        "train_loss",
        "test_error",
        "test_loss",
        "hessian_e",
        "hessian_t",
        "mode_connectivity",
        "mode_connectivity_peak",
        "CKA",
    ];
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let mean = |f: &dyn Fn(&sharpness::Basics) -> f64| r.models.iter().map(f).sum::<f64>() / 3.0;
    assert!((r.row.hessian_e - mean(&|b| b.hessian_top_eigenvalue).ln()).abs() < 1e-12);
    assert!((r.row.hessian_t - mean(&|b| b.hessian_trace).ln()).abs() < 1e-12);
    assert!((r.row.train_loss - mean(&|b| b.loss)).abs() < 1e-12);
    // Errors are percentages; the test data here are the training data.
    assert!((r.row.train_error.unwrap() - r.row.test_error.unwrap()).abs() < 1e-9);
    assert!(r.row.train_error.unwrap() > 1.0);
    let c = r.connectivity.as_ref().unwrap();
    assert_eq!(
        r.row.mode_connectivity,
        Some(terrain_metrics::connect::mc(c.error.as_ref().unwrap()))
    );
    assert_eq!(r.cka.as_ref().unwrap().pairs.len(), 6);
    // One model: connectivity and CKA are absent, not invented.
    let one = mdtree::feature_row(&refs[..1], &names[..1], &data, None, &cfg).unwrap();
    assert!(
        one.row.cka.is_none() && one.row.mode_connectivity.is_none() && one.row.test_loss.is_none()
    );
}
