//! Operator combinators and batched products against dense matrices, and the smallest
//! eigenvalues through the negated operator, on every device the build supports.

use candle_core::{DType, Device, Tensor};
use terrain_curvature::{
    DenseOperator, HessianConfig, HessianOperator, LanczosConfig, LinearOperator, OperatorExt,
    Result, eigen, linalg,
    vector::{self, Probe},
};
use terrain_model::loss::LossKind;
use terrain_testkit::{iris, model_on, rel, test_device, with_spectrum};

fn dense(a: &[f64], n: usize, device: &Device) -> Result<DenseOperator> {
    DenseOperator::from_rows(a, n, DType::F64, device)
}

fn product(a: &[f64], n: usize, v: &[f64]) -> Vec<f64> {
    (0..n)
        .map(|i| (0..n).map(|k| a[i * n + k] * v[k]).sum())
        .collect()
}

fn combinators_match_the_matrices_they_stand_for(device: &Device) -> Result<()> {
    let n = 6;
    let a = with_spectrum(&[4.0, 2.0, 1.0, 0.5, -1.0, -3.0], 1);
    let b = with_spectrum(&[1.0, 1.0, 2.0, -2.0, 0.0, 5.0], 2);
    let v = vector::random(n, Probe::Gaussian, 3, DType::F64, device)?;
    let vv = vector::to_vec(&v)?;
    let (av, bv) = (product(&a, n, &vv), product(&b, n, &vv));
    let cases: Vec<(Box<dyn LinearOperator>, Vec<f64>)> = vec![
        (
            Box::new(dense(&a, n, device)?.scaled(-2.5)),
            av.iter().map(|x| -2.5 * x).collect(),
        ),
        (
            Box::new(dense(&a, n, device)?.shifted(0.75)),
            av.iter().zip(&vv).map(|(x, y)| x + 0.75 * y).collect(),
        ),
        (
            Box::new(dense(&a, n, device)?.negated()),
            av.iter().map(|x| -x).collect(),
        ),
        (
            Box::new(dense(&a, n, device)?.plus(dense(&b, n, device)?)?),
            av.iter().zip(&bv).map(|(x, y)| x + y).collect(),
        ),
    ];
    for (op, want) in cases {
        let got = vector::to_vec(&op.apply(&v)?)?;
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        let many = op.apply_many(&[v.clone(), v.affine(2.0, 0.0)?])?;
        assert_eq!(vector::to_vec(&many[0])?, got);
        let twice = vector::to_vec(&many[1])?;
        for (t, g) in twice.iter().zip(&got) {
            assert!((t - 2.0 * g).abs() < 1e-12);
        }
    }
    let short = dense(&a[..4], 2, device)?;
    let e = dense(&a, n, device)?.plus(short).unwrap_err().to_string();
    assert!(e.contains("6") && e.contains("2"), "{e}");
    Ok(())
}
test_device!(
    combinators_match_the_matrices_they_stand_for,
    combinators_match_the_matrices_they_stand_for_cpu,
    combinators_match_the_matrices_they_stand_for_cuda
);

fn smallest_eigenvalues_come_from_the_negated_operator(device: &Device) -> Result<()> {
    let values = [5.0, 3.0, 2.0, 1.0, 0.5, -0.25, -4.0, -6.0];
    let n = values.len();
    let a = with_spectrum(&values, 4);
    let c = LanczosConfig {
        top_k: 2,
        max_iter: n,
        ..LanczosConfig::default()
    };
    let low = eigen::lanczos_smallest(&dense(&a, n, device)?, &c)?;
    let got = low.values();
    assert!(
        rel(got[0], -6.0) < 1e-10 && rel(got[1], -4.0) < 1e-10,
        "{got:?}"
    );
    assert!(low.pairs.iter().all(|p| p.residual < 1e-8));
    Ok(())
}
test_device!(
    smallest_eigenvalues_come_from_the_negated_operator,
    smallest_eigenvalues_come_from_the_negated_operator_cpu,
    smallest_eigenvalues_come_from_the_negated_operator_cuda
);

fn the_hessians_smallest_eigenvalue_matches_its_dense_decomposition(device: &Device) -> Result<()> {
    terrain_model::autodiff::ensure_second_order()?;
    let m = model_on("mlp:4-3-3:tanh", DType::F64, device, 5);
    let data = iris(30);
    let h = HessianOperator::new(&m, &data, HessianConfig::new(LossKind::Ce))?;
    let p = h.dim();
    let mut rows = Vec::with_capacity(p * p);
    for j in 0..p {
        let mut e = vec![0.0; p];
        e[j] = 1.0;
        rows.extend(vector::to_vec(&h.apply(&Tensor::new(e, device)?)?)?);
    }
    let exact = linalg::symmetric_eigen(&rows, p)?;
    let c = LanczosConfig {
        max_iter: p,
        ..LanczosConfig::default()
    };
    let low = eigen::lanczos_smallest(&h, &c)?;
    let want = exact.min().expect("a non-empty spectrum");
    assert!(
        (low.values()[0] - want).abs() < 1e-8 * exact.max().unwrap().abs().max(1.0),
        "{} vs {want}",
        low.values()[0]
    );
    Ok(())
}
test_device!(
    the_hessians_smallest_eigenvalue_matches_its_dense_decomposition,
    the_hessians_smallest_eigenvalue_matches_its_dense_decomposition_cpu,
    the_hessians_smallest_eigenvalue_matches_its_dense_decomposition_cuda
);
