//! The landscape metrics on landscapes whose answers are known: a convex bowl, a random landscape,
//! plateaus, NK landscapes with K = 0 and K = n − 1, and small cases computed by hand.

use terrain_hparams::{
    Landscape, MetricsConfig, analyze,
    problems::nk,
    similarity::similarity_of,
    table::{RawTable, Value},
};

fn grid(dims: &[usize], f: impl Fn(&[usize]) -> f64) -> Landscape {
    let n: usize = dims.iter().product();
    let mut cols = vec![Vec::with_capacity(n); dims.len()];
    let mut error = Vec::with_capacity(n);
    for r in 0..n {
        let mut ix = vec![0; dims.len()];
        let mut rest = r;
        for (j, &d) in dims.iter().enumerate().rev() {
            ix[j] = rest % d;
            rest /= d;
        }
        for j in 0..dims.len() {
            cols[j].push(Value::Num(ix[j] as f64));
        }
        error.push(f(&ix));
    }
    let names = (0..dims.len()).map(|j| format!("h{j}")).collect();
    Landscape::new("grid", names, cols, error, None).unwrap()
}

fn line(errors: &[f64]) -> Landscape {
    grid(&[errors.len()], |ix| errors[ix[0]])
}

fn cfg() -> MetricsConfig {
    MetricsConfig::default()
}

#[test]
fn convex_bowl_has_one_optimum_fdc_one_and_assortativity_near_one() {
    let l = grid(&[21, 21], |ix| {
        ix[0].abs_diff(10) as f64 + ix[1].abs_diff(10) as f64
    });
    let m = analyze(&l, &cfg()).unwrap();
    assert_eq!(m.n_configs, 441);
    // 2 · 21 · 20 grid edges.
    assert_eq!(m.n_neighbour_pairs_unordered, 840);
    assert_eq!(m.n_local_optima, 1);
    assert_eq!(m.n_local_optima_plateau_aware, 1);
    assert_eq!(m.n_configs_tied_at_best, 1);
    assert_eq!(m.global_optimum.row, 10 * 21 + 10);
    assert_eq!(m.global_optimum.error, 0.0);
    assert!((m.fdc_pearson.unwrap() - 1.0).abs() < 1e-12);
    assert!((m.fdc_spearman.unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(m.basin_size_global_optimum, 441);
    assert_eq!(m.max_basin_size, 441);
    assert_eq!(m.mean_basin_size, 441.0);
    let a = m.performance_assortativity.unwrap();
    assert!(a > 0.95, "{a}");
    assert_eq!(m.autocorr_lag1_exact, m.performance_assortativity);
    let w = m.autocorrelation.value.unwrap();
    assert!(w > 0.9, "walk autocorrelation {w}");
    // Every neighbour pair differs by exactly 1 > ε.
    assert_eq!(m.neutrality_pairs, Some(0.0));
}

#[test]
fn random_landscape_has_many_optima_and_assortativity_near_zero() {
    use rand::Rng as _;
    let mut rng = terrain_model::rng::rng(11);
    let values: Vec<f64> = (0..1000).map(|_| rng.random::<f64>()).collect();
    let l = grid(&[10, 10, 10], |ix| values[ix[0] * 100 + ix[1] * 10 + ix[2]]);
    let m = analyze(&l, &cfg()).unwrap();
    // A row is a local optimum with probability 1/(degree + 1): 1000 · E[1/(deg+1)] ≈ 160.
    let expected: f64 = (0..1000)
        .map(|r| 1.0 / (l.neighbours(r).len() + 1) as f64)
        .sum();
    let got = m.n_local_optima as f64;
    assert!(m.n_local_optima > 100, "{}", m.n_local_optima);
    assert!(
        (got - expected).abs() < 4.0 * expected.sqrt(),
        "{got} vs {expected}"
    );
    assert_eq!(m.n_local_optima, m.n_local_optima_plateau_aware);
    let a = m.performance_assortativity.unwrap();
    // 2700 pairs: the standard error of a zero correlation is about 0.02.
    assert!(a.abs() < 0.07, "{a}");
    assert!(m.autocorrelation.value.unwrap().abs() < 0.07);
    assert!(m.fdc_pearson.unwrap().abs() < 0.15);
    assert_eq!(
        m.n_configs as f64 / m.n_local_optima as f64,
        m.mean_basin_size
    );
}

#[test]
fn plateaus_count_once_when_plateau_aware() {
    // Line 0-1-2-3-4-5 with errors 2, 1, 1, 2, 0, 3: strict optima at rows 1, 2 and 4; the
    // plateau {1, 2} is one plateau-aware optimum.
    let m = analyze(&line(&[2.0, 1.0, 1.0, 2.0, 0.0, 3.0]), &cfg()).unwrap();
    assert_eq!(m.n_local_optima, 3);
    assert_eq!(m.n_local_optima_plateau_aware, 2);
    assert_eq!(m.global_optimum.row, 4);
    // Climbs: 0→1, 1, 2, 3→4, 4, 5→4: basin of 4 is {3, 4, 5}.
    assert_eq!(m.basin_size_global_optimum, 3);
    assert_eq!(m.max_basin_size, 3);
    assert_eq!(m.mean_basin_size, 2.0);
    // A plateau that leads downhill is no optimum: errors 1, 1, 0. Row 0 still counts strictly.
    let m = analyze(&line(&[1.0, 1.0, 0.0]), &cfg()).unwrap();
    assert_eq!((m.n_local_optima, m.n_local_optima_plateau_aware), (2, 1));
    // A flat landscape is one plateau, every row tied at best, neutral everywhere.
    let m = analyze(&grid(&[4, 3], |_| 0.5), &cfg()).unwrap();
    assert_eq!(m.n_local_optima, 12);
    assert_eq!(m.n_local_optima_plateau_aware, 1);
    assert_eq!(m.n_configs_tied_at_best, 12);
    assert_eq!(m.global_optimum.row, 0);
    assert_eq!(m.neutrality_pairs, Some(1.0));
    assert_eq!(m.neutrality_node_mean, Some(1.0));
    assert_eq!(m.fdc_pearson, None, "all distances are 0: undefined");
    assert_eq!(m.performance_assortativity, None);
}

#[test]
fn neutrality_by_hand() {
    // Errors 0, 0.005, 0.02, 0.021 on a line; ε = 0.01: pairs (0,1) yes, (1,2) no, (2,3) yes.
    let m = analyze(&line(&[0.0, 0.005, 0.02, 0.021]), &cfg()).unwrap();
    assert!((m.neutrality_pairs.unwrap() - 2.0 / 3.0).abs() < 1e-15);
    // Per row: 1/1, 1/2, 1/2, 1/1 → mean 0.75.
    assert!((m.neutrality_node_mean.unwrap() - 0.75).abs() < 1e-15);
    assert_eq!(m.neutrality_eps, 0.01);
}

#[test]
fn ffi_by_hand() {
    // Line errors 10, 9, 5, 1, 0. Climbs to row 4 with ≥ 2 steps:
    //  from 0: gains 1, 4, 4, 1 → Spearman with 0..3 = 0;
    //  from 1: gains 4, 4, 1 → ranks (2.5, 2.5, 1) vs (1, 2, 3): −1.5/√(2·1.5) = −√3/2;
    //  from 2: gains 4, 1 → −1.
    let m = analyze(&line(&[10.0, 9.0, 5.0, 1.0, 0.0]), &cfg()).unwrap();
    let want = (0.0 - 3f64.sqrt() / 2.0 - 1.0) / 3.0;
    assert_eq!(m.ffi_n_paths, 3);
    assert!((m.fitness_flattening_index.unwrap() - want).abs() < 1e-12);
    // Equal gains are skipped: 3, 2, 1, 0 has gains all 1.
    let m = analyze(&line(&[3.0, 2.0, 1.0, 0.0]), &cfg()).unwrap();
    assert_eq!(m.ffi_n_paths, 0);
    assert_eq!(m.fitness_flattening_index, None);
}

#[test]
fn the_climb_takes_the_best_neighbour_and_breaks_ties_by_row() {
    // 2 × 2 grid, rows (0,0)=3, (0,1)=1, (1,0)=1, (1,1)=0: from row 0 both neighbours tie at 1,
    // the climb goes to row 1 (the lower index), then to row 3.
    let l = grid(&[2, 2], |ix| [[3.0, 1.0], [1.0, 0.0]][ix[0]][ix[1]]);
    let steps = terrain_hparams::metrics::climb_steps(&l);
    assert_eq!(terrain_hparams::metrics::climb_path(&steps, 0), [0, 1, 3]);
    // Global optimum ties break by the lowest row, FDC measures to the nearest tied best row.
    let l = line(&[0.0, 1.0, 2.0, 1.0, 0.0]);
    let m = analyze(&l, &cfg()).unwrap();
    assert_eq!((m.global_optimum.row, m.n_configs_tied_at_best), (0, 2));
    assert!((m.fdc_pearson.unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(
        m.basin_size_global_optimum, 3,
        "rows 0, 1 and 2 (row 2's neighbours tie: it goes to 1)"
    );
}

#[test]
fn nk_with_k0_has_one_optimum_and_large_k_many() {
    for seed in 0..3 {
        let l = nk(10, 0, seed).unwrap();
        let m = analyze(&l, &cfg()).unwrap();
        assert_eq!(m.n_local_optima, 1, "seed {seed}");
        assert_eq!(m.basin_size_global_optimum, 1024);
        assert!(m.fdc_pearson.unwrap() > 0.5);
        let rugged = analyze(&nk(10, 9, seed).unwrap(), &cfg()).unwrap();
        // Random-field value: 2^n / (n + 1) ≈ 93 optima for n = 10.
        assert!(
            (60..=130).contains(&rugged.n_local_optima),
            "seed {seed}: {}",
            rugged.n_local_optima
        );
        assert!(rugged.performance_assortativity.unwrap().abs() < 0.15);
        assert!(m.performance_assortativity.unwrap() > rugged.performance_assortativity.unwrap());
    }
    assert!(nk(5, 5, 0).is_err());
}

#[test]
fn walk_autocorrelation_is_seeded() {
    let l = nk(8, 2, 4).unwrap();
    let a = analyze(&l, &cfg()).unwrap();
    let b = analyze(&l, &cfg()).unwrap();
    assert_eq!(a.autocorrelation, b.autocorrelation);
    let c = analyze(&l, &MetricsConfig { seed: 1, ..cfg() }).unwrap();
    assert_ne!(a.autocorrelation.value, c.autocorrelation.value);
    // Many long walks agree with the exact lag-1 correlation (ties included in both).
    let long = MetricsConfig {
        walks: 4000,
        walk_length: 50,
        ..cfg()
    };
    let w = analyze(&l, &long).unwrap().autocorrelation.value.unwrap();
    assert!(
        (w - a.autocorr_lag1_exact.unwrap()).abs() < 0.05,
        "{w} vs {:?}",
        a.autocorr_lag1_exact
    );
    assert!(
        MetricsConfig {
            neutrality_eps: f64::NAN,
            ..cfg()
        }
        .check()
        .is_err()
    );
    assert!(
        MetricsConfig {
            walk_length: 1,
            ..cfg()
        }
        .check()
        .is_err()
    );
}

#[test]
fn similarity_by_hand() {
    // 20 rows, k = 2. First: error = row. Second: rows 1 and 5 are best.
    let a: Vec<f64> = (0..20).map(f64::from).collect();
    let mut b: Vec<f64> = (0..20).map(|i| 100.0 - f64::from(i)).collect();
    b[0] = 5.0;
    b[1] = 0.0;
    b[5] = 1.0;
    let s = similarity_of("a", "b", &a, &b);
    assert_eq!(s.top10_k, 2);
    // T_a = {0, 1}, T_b = {1, 5}: overlap 1/2, Jaccard 1/3.
    assert_eq!(s.top10_overlap, 0.5);
    assert!((s.top10_jaccard - 1.0 / 3.0).abs() < 1e-15);
    // Over {0, 1}: a = (0, 1), b = (5, 0) → −1.
    assert!((s.spearman_top10_first.unwrap() + 1.0).abs() < 1e-12);
    // Over {0, 1, 5}: a ranks (1, 2, 3), b = (5, 0, 1) ranks (3, 1, 2) → −0.5.
    assert!((s.spearman_top10_union.unwrap() + 0.5).abs() < 1e-12);
    // All rows, no ties: 1 − 6 Σd² / (n(n² − 1)).
    let ra = terrain_hparams::stats::mean_ranks(&a);
    let rb = terrain_hparams::stats::mean_ranks(&b);
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
    let want = 1.0 - 6.0 * d2 / (20.0 * (400.0 - 1.0));
    assert!((s.spearman_all.unwrap() - want).abs() < 1e-12);
    // Identical landscapes: everything 1.
    let s = similarity_of("a", "a", &a, &a);
    assert_eq!((s.top10_overlap, s.top10_jaccard), (1.0, 1.0));
    assert!((s.spearman_all.unwrap() - 1.0).abs() < 1e-12);
    // k = ceil(n / 10) in integers (0.1 · 30 is 3.0000000000000004 in floating point).
    assert_eq!(similarity_of("a", "b", &a[..11], &b[..11]).top10_k, 2);
    let thirty: Vec<f64> = (0..30).map(f64::from).collect();
    assert_eq!(similarity_of("a", "b", &thirty, &thirty).top10_k, 3);
}

#[test]
fn similarity_matches_configurations_by_value() {
    let a = RawTable::from_csv(
        "a.csv",
        "lr,bs,error\n0.1,32,0.3\n0.1,64,0.2\n0.01,32,0.1\n",
    )
    .unwrap();
    let b = RawTable::from_csv(
        "b.csv",
        "bs,lr,error\n64,0.1,0.25\n32,0.01,0.05\n16,0.01,0.9\n",
    )
    .unwrap();
    let sel = terrain_hparams::Selection::new("error");
    let la = Landscape::from_table(&a, &sel).unwrap();
    let lb = Landscape::from_table(&b, &sel).unwrap();
    let s = terrain_hparams::similarity(&la, &lb).unwrap();
    assert_eq!((s.n_shared, s.n_only_first, s.n_only_second), (2, 1, 1));
    assert!((s.spearman_all.unwrap() - 1.0).abs() < 1e-12);
    let c = RawTable::from_csv("c.csv", "lr,bs,error\n0.5,8,0.3\n").unwrap();
    let lc = Landscape::from_table(&c, &sel).unwrap();
    let e = terrain_hparams::similarity(&la, &lc)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("share no configuration") && e.contains("c.csv"),
        "{e}"
    );
}

#[test]
fn bad_tables_name_file_column_and_row() {
    let sel = terrain_hparams::Selection::new("error");
    let t = RawTable::from_csv("t.csv", "lr,error\n0.1,0.5\n0.2,nan\n").unwrap();
    let e = Landscape::from_table(&t, &sel).unwrap_err().to_string();
    assert!(
        e.contains("t.csv") && e.contains("`error`") && e.contains("row 1"),
        "{e}"
    );
    let t = RawTable::from_csv("t.csv", "lr,error\n0.1,0.5\n0.1,0.4\n").unwrap();
    let e = Landscape::from_table(&t, &sel).unwrap_err().to_string();
    assert!(e.contains("rows 0 and 1") && e.contains("lr=0.1"), "{e}");
    let t = RawTable::from_csv("t.csv", "lr,loss\n0.1,0.5\n").unwrap();
    let e = Landscape::from_table(&t, &sel).unwrap_err().to_string();
    assert!(
        e.contains("no column `error`") && e.contains("`lr`, `loss`"),
        "{e}"
    );
    let mut s = sel.clone();
    s.hyperparameters = Some(vec!["width".into()]);
    let t = RawTable::from_csv("t.csv", "lr,error\n0.1,0.5\n").unwrap();
    let e = Landscape::from_table(&t, &s).unwrap_err().to_string();
    assert!(e.contains("no column `width`"), "{e}");
    let t = RawTable::from_csv("t.csv", "lr,error\n0.1,\n").unwrap();
    let e = Landscape::from_table(&t, &sel).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("row 0"), "{e}");
    // Filters select a slice; the filtered column is no hyperparameter then.
    let t = RawTable::from_csv(
        "t.csv",
        "lr,epochs,error\n0.1,1,0.5\n0.1,2,0.4\n0.2,2,0.3\n",
    )
    .unwrap();
    let mut s = sel.clone();
    s.filters = vec!["epochs=2".parse().unwrap()];
    let l = Landscape::from_table(&t, &s).unwrap();
    assert_eq!((l.len(), l.names.clone()), (2, vec!["lr".to_string()]));
    assert_eq!(l.table_rows, [1, 2]);
    s.filters = vec!["epochs=3".parse().unwrap()];
    let e = Landscape::from_table(&t, &s).unwrap_err().to_string();
    assert!(e.contains("no row passes") && e.contains("epochs=3"), "{e}");
    assert!("noequals".parse::<terrain_hparams::Filter>().is_err());
    let f: terrain_hparams::Filter = "a=b=c".parse().unwrap();
    assert_eq!(f.to_string().parse::<terrain_hparams::Filter>().unwrap(), f);
}

#[test]
fn levels_are_ranks_of_distinct_values() {
    let t = RawTable::from_csv(
        "t.csv",
        "opt,lr,error\nsgd,0.1,1\nadam,0.01,2\nsgd,0.001,3\nadam,0.1,4\n",
    )
    .unwrap();
    let l = Landscape::from_table(&t, &terrain_hparams::Selection::new("error")).unwrap();
    assert_eq!(l.index, [vec![1, 2], vec![0, 1], vec![1, 0], vec![0, 2]]);
    // Neighbours: one level apart in one column: (0, 3) differ in opt only, (1, 3) in lr by one
    // level; row 2 (sgd, lowest lr) has none.
    assert_eq!(l.neighbours(0), [3]);
    assert_eq!(l.neighbours(1), [3]);
    assert_eq!(l.neighbours(3), [0, 1]);
    assert!(l.neighbours(2).is_empty());
}
