//! The bounded Brent search against scipy, tree fitting on the whole clean table against the
//! authors' code, and the diagnosis of one feature row with its evidence.
//!
//! scipy figures: `scipy.optimize.minimize_scalar(f, bounds=b, method='bounded')`, scipy 1.17.1.

use std::collections::BTreeMap;
use std::path::Path;

use terrain_diagnose::brent::{BrentConfig, minimize_bounded};
use terrain_diagnose::diagnosis::FittedTree;
use terrain_diagnose::mdtree::{MdTree, TreeKind};
use terrain_diagnose::table::{MetricTable, PAPER_TABLES};
use terrain_diagnose::{Error, Sampling};

fn clean() -> MetricTable {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mdtree");
    MetricTable::read(&dir.join(PAPER_TABLES.0)).unwrap()
}

#[test]
fn brent_stops_where_scipy_stops() {
    type F = fn(f64) -> f64;
    /// (name, f, bounds, scipy's x, fun, nfev)
    type Case = (&'static str, F, (f64, f64), f64, f64, usize);
    let cases: [Case; 6] = [
        ("quad", |x| (x - 2.0) * (x - 2.0), (0.0, 5.0), 2.0, 0.0, 6),
        (
            "cos",
            f64::cos,
            (0.0, 2.0 * std::f64::consts::PI),
            std::f64::consts::PI,
            -1.0,
            6,
        ),
        (
            "step",
            |x| if 0.3 < x && x < 0.35 { -1.0 } else { 0.0 },
            (0.0, 1.0),
            0.999_994_039_139_013_4,
            0.0,
            25,
        ),
        (
            "abs",
            |x| (x - 0.7).abs(),
            (-3.0, 1.0),
            0.700_001_317_213_404_5,
            1.317_213_404_572_470_4e-6,
            24,
        ),
        (
            "edge",
            |x| x,
            (1.0, 2.0),
            1.000_005_960_860_986_6,
            1.000_005_960_860_986_6,
            25,
        ),
        (
            "flat",
            |_| 0.0,
            (-30.0, 0.0),
            -6.159_093_069_439_738e-6,
            0.0,
            32,
        ),
    ];
    for (name, f, bounds, x, fun, nfev) in cases {
        let r = minimize_bounded(f, bounds, &BrentConfig::default()).unwrap();
        assert_eq!(r.x, x, "{name}: x");
        assert_eq!(r.fun, fun, "{name}: fun");
        assert_eq!(r.nfev, nfev, "{name}: nfev");
        assert_eq!(r.status, 0, "{name}");
    }
    // maxiter caps the evaluations (status 1).
    let r = minimize_bounded(
        |x| (x - 0.7).abs(),
        (-3.0, 1.0),
        &BrentConfig {
            maxiter: 5,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((r.nfev, r.status), (5, 1));
}

#[test]
fn the_temperature_tree_on_every_clean_configuration() {
    // The authors' one-pass fit on all 1560 labelled rows: (0.146 %, -4.42, 6.14) with 24, 23
    // and 20 evaluations, training accuracy 94.23 % (methods.md §2.5 quotes the thresholds).
    let t = FittedTree::fit(
        &clean(),
        TreeKind::Temp,
        Sampling::All,
        0,
        None,
        &BrentConfig::default(),
    )
    .unwrap();
    assert_eq!(
        t.thresholds,
        [
            0.145_902_501_121_181_36,
            -4.421_967_977_992_452,
            6.138_129_019_615_491
        ]
    );
    assert_eq!(t.n_train, 1560);
    assert!((t.train_accuracy.unwrap() - 100.0 * 0.942_307_692_307_692_3).abs() < 1e-9);
    assert_eq!(t.seed, None);
    assert_eq!(t.sample.as_deref(), Some("all"));
}

#[test]
fn a_diagnosis_lists_each_decision_and_the_advice() {
    let table = clean();
    let t = FittedTree::fit(
        &table,
        TreeKind::Temp,
        Sampling::All,
        0,
        None,
        &BrentConfig::default(),
    )
    .unwrap();
    // Row 1 of the table: width 2, batch 16, all data: train error 45.8 %, mc_peak -46.6
    // (poorly connected), hessian_t 5.43 (flat) -> temperature too high ("large").
    let row = t.table_row(&table, 0).unwrap();
    let d = t.diagnose(&row).unwrap();
    assert_eq!(d.label, "large");
    assert!(d.advice.starts_with("temperature too high"), "{}", d.advice);
    let metrics: Vec<&str> = d.evidence.iter().map(|e| e.metric.as_str()).collect();
    assert_eq!(
        metrics,
        ["train_error", "mode_connectivity_peak", "hessian_t"]
    );
    let dirs: Vec<&str> = d.evidence.iter().map(|e| e.direction.as_str()).collect();
    assert_eq!(dirs, [">", "<=", "<="]);
    assert!((d.evidence[0].value - 45.764).abs() < 1e-9);
    assert_eq!(d.evidence[0].threshold, t.thresholds[0]);
    assert!(d.evidence[1].meaning.starts_with("poorly connected"));
    assert!(d.evidence[2].meaning.starts_with("locally flat"));
    // An interpolating model stops at the root: temperature too low.
    let mut row = row;
    row.insert("train_error".into(), 0.01);
    let d = t.diagnose(&row).unwrap();
    assert_eq!((d.label.as_str(), d.evidence.len()), ("small", 1));
    assert!(d.advice.contains("lower the batch size"));
}

#[test]
fn a_tree_for_other_features_is_refused() {
    let mut t = FittedTree::new(MdTree::initial(TreeKind::TempCka));
    let row: BTreeMap<String, f64> = [
        ("train_error".to_string(), 1.0),
        ("mode_connectivity_peak".to_string(), -20.0),
        ("hessian_t".to_string(), 6.0),
    ]
    .into();
    // The CKA tree needs CKA, which this row lacks.
    let e = t.diagnose(&row).unwrap_err();
    assert!(matches!(e, Error::TreeFeatures { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("CKA") && msg.contains("hessian_t"), "{msg}");
    // A tree file whose feature list is not its kind's.
    t.features[2] = "hessian_t".into();
    let msg = t.check("tree.json").unwrap_err().to_string();
    assert!(
        msg.contains("tree.json") && msg.contains("CKA") && msg.contains("hessian_t"),
        "{msg}"
    );
    // Wrong threshold count, and a NaN feature.
    let mut t = FittedTree::new(MdTree::initial(TreeKind::Temp));
    t.thresholds.pop();
    assert!(
        t.check("t.json")
            .unwrap_err()
            .to_string()
            .contains("3 finite thresholds")
    );
    let t = FittedTree::new(MdTree::initial(TreeKind::Temp));
    let mut bad = row.clone();
    bad.insert("hessian_t".into(), f64::NAN);
    assert!(
        t.diagnose(&bad)
            .unwrap_err()
            .to_string()
            .contains("`hessian_t`")
    );
}
