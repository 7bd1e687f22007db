//! Threshold bounds from the data (`Bounds::Data`) against the paper's (`Bounds::Paper`) on a
//! hand-made table at another scale, and the single-checkpoint tree shapes walked by hand.

use std::path::Path;

use terrain_diagnose::brent::BrentConfig;
use terrain_diagnose::evaluate::{EvalConfig, Method, evaluate};
use terrain_diagnose::mdtree::{Bounds, MdTree, PAIR_FEATURES, TreeKind};
use terrain_diagnose::question::Question;
use terrain_diagnose::table::{MetricTable, PAPER_TABLES};

/// 20 rows of (train_error %, mc_peak, hessian_t) at an MLP's scale: nobody interpolates
/// (train_error 6 %), everybody is poorly connected (mc_peak -36; one value each: Brent
/// searches a step function locally, so varying columns would make the test about where its
/// probes land rather than about the bounds), hessian_t runs
/// 0.10..0.29 and decides: `large` (class 0) when hessian_t <= 0.195, else `small` (class 1).
fn mlp_scale() -> (Vec<Vec<f64>>, Vec<usize>) {
    (0..20)
        .map(|i| {
            let h = 0.10 + 0.01 * i as f64;
            (vec![6.0, -36.0, h], usize::from(h > 0.195))
        })
        .unzip()
}

/// The temp tree's prediction, walked by hand: te <= t0 small; mc <= t1 (ht <= t2 large, else
/// small); else large.
fn temp_by_hand(r: &[f64], t: &[f64]) -> usize {
    if r[0] <= t[0] {
        1
    } else if r[1] <= t[1] {
        usize::from(r[2] > t[2])
    } else {
        0
    }
}

fn accuracy_by_hand(x: &[Vec<f64>], y: &[usize], t: &[f64]) -> f64 {
    let correct = x
        .iter()
        .zip(y)
        .filter(|(r, c)| temp_by_hand(r, t) == **c)
        .count();
    correct as f64 / y.len() as f64
}

#[test]
fn paper_bounds_cannot_separate_another_scale_and_data_bounds_do() {
    let (x, y) = mlp_scale();
    let brent = BrentConfig::default();
    let paper = MdTree::fit_with(TreeKind::Temp, &x, &y, &brent, Bounds::Paper).unwrap();
    let data = MdTree::fit_with(TreeKind::Temp, &x, &y, &brent, Bounds::Data).unwrap();
    // Paper bounds: hessian_t's threshold lies in [4, 9], above every value, so every row takes
    // the `large` leaf (or, with t0, none is interpolating): half of them are right.
    assert!(paper.tree.thresholds[2] >= 4.0);
    let large = y.iter().filter(|&&c| c == 0).count() as f64 / y.len() as f64;
    assert_eq!(large, 0.5);
    assert_eq!(
        accuracy_by_hand(&x, &y, &paper.tree.thresholds),
        paper.train_accuracy
    );
    assert_eq!(paper.train_accuracy, large);
    // Data bounds: the split is found between 0.19 and 0.20, every row right.
    let t = &data.tree.thresholds;
    assert!(t[2] >= 0.19 && t[2] < 0.20, "{t:?}");
    assert_eq!(accuracy_by_hand(&x, &y, t), 1.0);
    assert_eq!(data.train_accuracy, 1.0);
    // The rule: [min - range/100, max] and the median, by hand for hessian_t.
    assert_eq!(data.bounds, Bounds::Data);
    let (lo, hi) = data.intervals[2];
    assert!((lo - (0.10 - 0.19 / 100.0)).abs() < 1e-12, "{lo}");
    assert!((hi - (0.29 + 0.19 / 100.0)).abs() < 1e-12, "{hi}");
    assert!((data.initial[2] - 0.195).abs() < 1e-12);
    // A constant column searches [v - 1, v + 1].
    assert_eq!(data.intervals[0], (5.0, 7.0));
    assert_eq!(data.intervals[1], (-37.0, -35.0));
    assert!(t[0] < 6.0 && t[1] >= -36.0, "{t:?}");
    // The paper rule is the published one.
    assert_eq!(paper.intervals, TreeKind::Temp.bounds().to_vec());
    assert_eq!(paper.initial, TreeKind::Temp.initial().to_vec());
}

#[test]
fn bounds_round_trip_in_text_and_serde() {
    for b in [Bounds::Paper, Bounds::Data] {
        assert_eq!(b.to_string().parse::<Bounds>().unwrap(), b);
        assert_eq!(serde_json::to_value(b).unwrap(), b.name());
    }
    let e = "mean".parse::<Bounds>().unwrap_err().to_string();
    assert!(e.contains("bounds") && e.contains("mean"), "{e}");
}

#[test]
fn the_single_trees_read_one_model_and_walk_as_documented() {
    for k in [
        TreeKind::TempSingle,
        TreeKind::WidthSingle,
        TreeKind::DataSingle,
    ] {
        assert!(k.pair_feature().is_none(), "{k}");
        assert!(k.features().iter().all(|f| !PAIR_FEATURES.contains(f)));
        assert_eq!(TreeKind::single(k.question()), k);
    }
    assert_eq!(
        TreeKind::Temp.pair_feature(),
        Some("mode_connectivity_peak")
    );
    assert_eq!(
        TreeKind::TempCka.pair_feature(),
        Some("mode_connectivity_peak")
    );
    // temp-single at (0.5, 7, 4.5); classes 0 = large, 1 = small.
    let t = MdTree::initial(TreeKind::TempSingle);
    assert_eq!(t.predict(&[0.5, 9.0, 9.0]).unwrap(), 1); // interpolating
    assert_eq!(t.predict(&[3.0, 7.0, 9.0]).unwrap(), 0); // flat bulk: too hot
    assert_eq!(t.predict(&[3.0, 7.1, 4.5]).unwrap(), 0); // sharp bulk, flat top
    assert_eq!(t.predict(&[3.0, 7.1, 4.6]).unwrap(), 1); // sharp bulk and top: too cold
    // width-single at (0.5, 4, 4); classes 0 = batch, 1 = width.
    let w = MdTree {
        kind: TreeKind::WidthSingle,
        thresholds: vec![0.5, 2.0, 5.0],
    };
    assert_eq!(w.predict(&[0.1, 2.0, 9.0]).unwrap(), 0);
    assert_eq!(w.predict(&[0.1, 2.1, 0.0]).unwrap(), 1);
    assert_eq!(w.predict(&[0.6, 9.0, 5.0]).unwrap(), 0);
    assert_eq!(w.predict(&[0.6, 0.0, 5.1]).unwrap(), 1);
    // data-single; classes 0 = batch, 1 = data.
    let d = MdTree {
        kind: TreeKind::DataSingle,
        thresholds: vec![0.5, 4.0, 6.0],
    };
    assert_eq!(d.predict(&[0.1, 4.0, 0.0]).unwrap(), 1);
    assert_eq!(d.predict(&[0.1, 4.1, 9.0]).unwrap(), 0);
    assert_eq!(d.predict(&[0.6, 0.0, 6.0]).unwrap(), 1);
    assert_eq!(d.predict(&[0.6, 9.0, 6.1]).unwrap(), 0);
}

/// The single-checkpoint trees on the paper's tables (clean → noisy, Case-1 protocol): the
/// evaluation scores every noisy row with the thresholds of each seed's fit, which this test
/// recomputes by walking the temp-single tree by hand.
#[test]
fn the_single_temp_tree_on_the_paper_tables_is_scored_as_walked_by_hand() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mdtree");
    let clean = MetricTable::read(&dir.join(PAPER_TABLES.0)).unwrap();
    let noisy = MetricTable::read(&dir.join(PAPER_TABLES.1)).unwrap();
    let cfg = EvalConfig::new(
        Question::Temp,
        Method::MdTreeSingle,
        "random:8".parse().unwrap(),
    );
    let e = evaluate(&clean, &noisy, &cfg).unwrap();
    assert_eq!(e.n_test, 1560);
    assert_eq!(e.features, ["train_error", "hessian_t", "hessian_e"]);
    let labels = Question::Temp.labels(&noisy).unwrap();
    let cols: Vec<Vec<f64>> = e
        .features
        .iter()
        .map(|f| noisy.numbers(f).unwrap())
        .collect();
    for (s, t) in e.thresholds.iter().enumerate() {
        let (mut n, mut correct) = (0, 0);
        for (i, l) in labels.iter().enumerate() {
            let terrain_diagnose::question::Label::Class(c) = *l else {
                continue;
            };
            let (te, ht, he) = (cols[0][i], cols[1][i], cols[2][i]);
            let p = if te <= t[0] {
                1
            } else if ht <= t[1] {
                0
            } else {
                usize::from(he > t[2])
            };
            n += 1;
            correct += usize::from(p == c);
        }
        assert_eq!(n, 1560);
        let acc = 100.0 * correct as f64 / n as f64;
        assert!(
            (acc - e.per_seed[s]).abs() < 1e-9,
            "seed {s}: {acc} vs {}",
            e.per_seed[s]
        );
    }
    // Better than the constant majority predictor of the noisy table (small 1010 of 1560).
    assert!(e.accuracy > 100.0 * 1010.0 / 1560.0, "{}", e.accuracy);
}
