//! terrain's metrics against GraphFLA 0.4.0 (the landscape library of Huang & Li's lab) on three
//! NK landscapes (n = 8; K = 0, 2, 7): local optima, global optimum, FDC, FFI, greedy basins and
//! neutrality. `tests/data/graphfla_nk.py` wrote the CSV files and
//! computed GraphFLA's numbers below (`BooleanLandscape(maximize=True)` on −error, since its
//! minimising climb moves to the worst improving neighbour; so its FDC is ours negated).

use terrain_hparams::{Landscape, MetricsConfig, Selection, analyze, table::RawTable};

/// (file, GraphFLA n_lo, global-optimum row, fdc spearman, fdc pearson, FFI), GraphFLA's values.
const GRAPHFLA: [(&str, usize, usize, f64, f64, f64); 3] = [
    (
        "nk-n8-k0-s1.csv",
        1,
        56,
        -0.8624619147674689,
        -0.8776917047255252,
        -1.0,
    ),
    (
        "nk-n8-k2-s2.csv",
        7,
        232,
        0.007269857823798036,
        -0.008539648052497517,
        -0.7732142857142856,
    ),
    (
        "nk-n8-k7-s3.csv",
        32,
        89,
        0.008830271080468348,
        -0.004726808329054156,
        0.49999999999999994,
    ),
];

/// (file, GraphFLA greedy basin of the optimum, largest basin, neutrality at 0.01 and 0.05).
const GRAPHFLA_BASINS: [(&str, usize, usize, f64, f64); 3] = [
    ("nk-n8-k0-s1.csv", 256, 256, 0.0, 0.375),
    ("nk-n8-k2-s2.csv", 73, 73, 0.1015625, 0.5546875),
    ("nk-n8-k7-s3.csv", 13, 17, 0.046875, 0.2763671875),
];

#[test]
fn nk_basins_and_neutrality_equal_graphfla() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (file, basin, max_basin, n01, n05) in GRAPHFLA_BASINS {
        let t = RawTable::read(&dir.join(file)).unwrap();
        let l = Landscape::from_table(&t, &Selection::new("error")).unwrap();
        for (eps, want) in [(0.01, n01), (0.05, n05)] {
            let m = analyze(
                &l,
                &MetricsConfig {
                    neutrality_eps: eps,
                    ..MetricsConfig::default()
                },
            )
            .unwrap();
            assert_eq!(m.basin_size_global_optimum, basin, "{file}");
            assert_eq!(m.max_basin_size, max_basin, "{file}");
            assert!(
                (m.neutrality_pairs.unwrap() - want).abs() < 1e-12,
                "{file} ε={eps}"
            );
        }
    }
}

#[test]
fn nk_metrics_equal_graphfla() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for (file, n_lo, go, fdc_s, fdc_p, ffi) in GRAPHFLA {
        let t = RawTable::read(&dir.join(file)).unwrap();
        let l = Landscape::from_table(&t, &Selection::new("error")).unwrap();
        let m = analyze(&l, &MetricsConfig::default()).unwrap();
        assert_eq!(m.n_configs, 256, "{file}");
        assert_eq!(
            m.n_neighbour_pairs_unordered, 1024,
            "{file}: GraphFLA's n_edges"
        );
        assert_eq!(m.n_local_optima, n_lo, "{file}");
        assert_eq!(m.n_local_optima_plateau_aware, n_lo, "{file}: no ties");
        assert_eq!(m.global_optimum.row, go, "{file}");
        assert!(
            (m.fdc_spearman.unwrap() + fdc_s).abs() < 1e-12,
            "{file}: {:?}",
            m.fdc_spearman
        );
        assert!(
            (m.fdc_pearson.unwrap() + fdc_p).abs() < 1e-12,
            "{file}: {:?}",
            m.fdc_pearson
        );
        assert!(
            (m.fitness_flattening_index.unwrap() - ffi).abs() < 1e-12,
            "{file}: {:?}",
            m.fitness_flattening_index
        );
    }
}
