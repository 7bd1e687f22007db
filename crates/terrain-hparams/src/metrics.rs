//! Fitness-landscape metrics, exactly as defined in landscape-metrics.md (GraphFLA's definitions
//! where it has one): local optima (strict and plateau-aware), the global optimum and its ties,
//! FDC, neutrality, best-improvement basins, the fitness flattening index, performance
//! assortativity, the exact lag-1 autocorrelation and a seeded random-walk autocorrelation.

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use terrain_model::config;

use crate::{Landscape, stats};

/// Settings of [`analyze`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsConfig {
    /// Absolute threshold ε of neutrality: neighbours with |Δerror| ≤ ε are neutral (0.01).
    pub neutrality_eps: f64,
    /// Random walks for the walk autocorrelation (1000, as GraphFLA).
    pub walks: usize,
    /// Steps of each walk (20, as GraphFLA).
    pub walk_length: usize,
    /// Seed of the walks' starting rows and steps.
    pub seed: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            neutrality_eps: 0.01,
            walks: 1000,
            walk_length: 20,
            seed: 0,
        }
    }
}

impl MetricsConfig {
    /// Checks every field (NaN fails).
    pub fn check(&self) -> terrain_model::Result<()> {
        config::non_negative("neutrality_eps", self.neutrality_eps)?;
        config::count("walks", self.walks)?;
        config::at_least("walk_length", self.walk_length, 2)?;
        config::count("walk_length", self.walk_length)
    }
}

/// The global optimum: the lowest-index row of minimal error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalOptimum {
    /// Its row in the landscape (0-based, file order after filtering).
    pub row: usize,
    /// Its row in the table file (before filtering).
    pub table_row: usize,
    /// Its hyperparameter values by name.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// Its error.
    pub error: f64,
}

/// Lag-1 autocorrelation of the error along seeded random walks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalkAutocorrelation {
    /// Pooled over all walks: Σ (x_t − m)(x_{t+1} − m) / Σ_t (x_t − m)² with m the grand mean of
    /// every visited error (the sum below runs over all steps, above over all consecutive pairs,
    /// both rescaled to means). `None` when every visited error is equal.
    pub value: Option<f64>,
    /// The median of the per-walk lag-1 autocorrelations (GraphFLA's early summary); walks with
    /// constant errors are skipped.
    pub median_per_walk: Option<f64>,
    /// Number of walks.
    pub walks: usize,
    /// Steps per walk (each walk visits `walk_length` rows).
    pub walk_length: usize,
    /// The lag.
    pub lag: usize,
    /// The seed.
    pub seed: u64,
}

/// Every metric of one landscape (JSON keys as landscape-metrics.md names them). Correlations
/// that are undefined (a constant side, fewer than two values) are `None` (JSON null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of configurations.
    pub n_configs: usize,
    /// Number of hyperparameters (grid dimensions).
    pub n_hyperparameters: usize,
    /// Unordered neighbour pairs.
    pub n_neighbour_pairs_unordered: usize,
    /// Rows with no neighbour of strictly lower error.
    pub n_local_optima: usize,
    /// Components of equal-error neighbours none of whose members has a strictly better neighbour.
    pub n_local_optima_plateau_aware: usize,
    /// The global optimum.
    pub global_optimum: GlobalOptimum,
    /// Rows with the minimal error.
    pub n_configs_tied_at_best: usize,
    /// Spearman correlation of error and grid distance to the nearest best row.
    pub fdc_spearman: Option<f64>,
    /// Pearson correlation of the same.
    pub fdc_pearson: Option<f64>,
    /// The neutrality threshold ε.
    pub neutrality_eps: f64,
    /// Fraction of neighbour pairs with |Δerror| ≤ ε.
    pub neutrality_pairs: Option<f64>,
    /// Mean over rows (with at least one neighbour) of the fraction of their neighbours within ε.
    pub neutrality_node_mean: Option<f64>,
    /// Size of the global optimum's best-improvement basin.
    pub basin_size_global_optimum: usize,
    /// Mean basin size over the local optima (n_configs / n_local_optima).
    pub mean_basin_size: f64,
    /// Largest basin.
    pub max_basin_size: usize,
    /// Mean over climbs to the global optimum (≥ 2 steps, gains not all equal) of the Spearman
    /// correlation of step index and gain.
    pub fitness_flattening_index: Option<f64>,
    /// Number of climbs averaged in the flattening index.
    pub ffi_n_paths: usize,
    /// Newman's assortativity of the error on the neighbour graph.
    pub performance_assortativity: Option<f64>,
    /// Lag-1 correlation over all neighbour pairs, both orientations (= the assortativity).
    pub autocorr_lag1_exact: Option<f64>,
    /// Random-walk autocorrelation.
    pub autocorrelation: WalkAutocorrelation,
}

/// Where each row's best-improvement climb goes next (`None` at a local optimum): the neighbour
/// of lowest error among those strictly better, ties to the lowest row index.
pub fn climb_steps(l: &Landscape) -> Vec<Option<usize>> {
    (0..l.len())
        .map(|u| {
            let mut best: Option<usize> = None;
            for &v in l.neighbours(u) {
                // Neighbours are ascending, so a strict `<` keeps the lowest index among ties.
                if l.error[v] < l.error[u] && best.is_none_or(|b| l.error[v] < l.error[b]) {
                    best = Some(v);
                }
            }
            best
        })
        .collect()
}

/// The best-improvement climb from `start`: start, each step, end.
pub fn climb_path(steps: &[Option<usize>], start: usize) -> Vec<usize> {
    let mut path = vec![start];
    let mut u = start;
    while let Some(v) = steps[u] {
        path.push(v);
        u = v;
    }
    path
}

/// Every row's local optimum (where its climb ends).
pub fn basins(steps: &[Option<usize>]) -> Vec<usize> {
    let n = steps.len();
    let mut end = vec![usize::MAX; n];
    for s in 0..n {
        let mut path = Vec::new();
        let mut u = s;
        while end[u] == usize::MAX {
            path.push(u);
            match steps[u] {
                Some(v) => u = v,
                None => {
                    end[u] = u;
                    break;
                }
            }
        }
        let e = end[u];
        for p in path {
            end[p] = e;
        }
    }
    end
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Computes every metric of `l` with `config` (checked).
pub fn analyze(l: &Landscape, config: &MetricsConfig) -> terrain_model::Result<Metrics> {
    config.check()?;
    let n = l.len();
    let e = &l.error;
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|u| {
            l.neighbours(u)
                .iter()
                .filter(move |&&v| v > u)
                .map(move |&v| (u, v))
        })
        .collect();
    let has_better = |u: usize| l.neighbours(u).iter().any(|&v| e[v] < e[u]);
    let n_local_optima = (0..n).filter(|&u| !has_better(u)).count();

    // Plateau-aware optima: components of equal-error neighbours.
    let mut parent: Vec<usize> = (0..n).collect();
    for &(u, v) in &pairs {
        if e[u] == e[v] {
            let (a, b) = (find(&mut parent, u), find(&mut parent, v));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut component_escapes = vec![false; n];
    let mut is_root = vec![false; n];
    for u in 0..n {
        let root = find(&mut parent, u);
        is_root[root] = true;
        if has_better(u) {
            component_escapes[root] = true;
        }
    }
    let n_local_optima_plateau_aware = (0..n)
        .filter(|&r| is_root[r] && !component_escapes[r])
        .count();

    // Global optimum and ties.
    let best = e.iter().copied().fold(f64::INFINITY, f64::min);
    let tied: Vec<usize> = (0..n).filter(|&u| e[u] == best).collect();
    let g = tied[0];
    let values = l
        .names
        .iter()
        .enumerate()
        .map(|(j, name)| (name.clone(), l.value(g, j).to_json()))
        .collect();

    // FDC.
    let dist: Vec<f64> = (0..n)
        .map(|u| tied.iter().map(|&t| l.distance(u, t)).min().unwrap_or(0) as f64)
        .collect();
    let fdc_pearson = stats::pearson(e, &dist);
    let fdc_spearman = stats::spearman(e, &dist);

    // Neutrality.
    let eps = config.neutrality_eps;
    let neutral = |u: usize, v: usize| (e[u] - e[v]).abs() <= eps;
    let neutrality_pairs = (!pairs.is_empty())
        .then(|| pairs.iter().filter(|&&(u, v)| neutral(u, v)).count() as f64 / pairs.len() as f64);
    let node_fracs: Vec<f64> = (0..n)
        .filter(|&u| !l.neighbours(u).is_empty())
        .map(|u| {
            let nb = l.neighbours(u);
            nb.iter().filter(|&&v| neutral(u, v)).count() as f64 / nb.len() as f64
        })
        .collect();
    let neutrality_node_mean =
        (!node_fracs.is_empty()).then(|| node_fracs.iter().sum::<f64>() / node_fracs.len() as f64);

    // Basins and the flattening index.
    let steps = climb_steps(l);
    let end = basins(&steps);
    let mut size = vec![0usize; n];
    for &o in &end {
        size[o] += 1;
    }
    let basin_size_global_optimum = size[g];
    let max_basin_size = size.iter().copied().max().unwrap_or(0);
    let mean_basin_size = n as f64 / n_local_optima as f64;
    let mut ffi = Vec::new();
    for (u, _) in end.iter().enumerate().filter(|&(_, &o)| o == g) {
        let p = climb_path(&steps, u);
        if p.len() < 3 {
            continue;
        }
        let gains: Vec<f64> = p.windows(2).map(|w| e[w[0]] - e[w[1]]).collect();
        let j: Vec<f64> = (0..gains.len()).map(|i| i as f64).collect();
        if let Some(r) = stats::spearman(&j, &gains) {
            ffi.push(r);
        }
    }
    let fitness_flattening_index =
        (!ffi.is_empty()).then(|| ffi.iter().sum::<f64>() / ffi.len() as f64);

    // Assortativity = exact lag-1 autocorrelation over both orientations of every pair.
    let (mut a, mut b) = (
        Vec::with_capacity(2 * pairs.len()),
        Vec::with_capacity(2 * pairs.len()),
    );
    for &(u, v) in &pairs {
        a.extend([e[u], e[v]]);
        b.extend([e[v], e[u]]);
    }
    let assortativity = stats::pearson(&a, &b);

    Ok(Metrics {
        n_configs: n,
        n_hyperparameters: l.names.len(),
        n_neighbour_pairs_unordered: pairs.len(),
        n_local_optima,
        n_local_optima_plateau_aware,
        global_optimum: GlobalOptimum {
            row: g,
            table_row: l.table_rows[g],
            values,
            error: best,
        },
        n_configs_tied_at_best: tied.len(),
        fdc_spearman,
        fdc_pearson,
        neutrality_eps: eps,
        neutrality_pairs,
        neutrality_node_mean,
        basin_size_global_optimum,
        mean_basin_size,
        max_basin_size,
        fitness_flattening_index,
        ffi_n_paths: ffi.len(),
        performance_assortativity: assortativity,
        autocorr_lag1_exact: assortativity,
        autocorrelation: walk_autocorrelation(l, config),
    })
}

/// Random walks from uniformly drawn rows, each step to a uniformly drawn neighbour (ties
/// included, unlike GraphFLA); a row without neighbours ends its walk early.
pub fn walk_autocorrelation(l: &Landscape, config: &MetricsConfig) -> WalkAutocorrelation {
    let mut rng = terrain_model::rng::rng(config.seed);
    let e = &l.error;
    let mut walks: Vec<Vec<f64>> = Vec::with_capacity(config.walks);
    for _ in 0..config.walks {
        let mut u = rng.random_range(0..l.len());
        let mut w = vec![e[u]];
        for _ in 1..config.walk_length {
            let nb = l.neighbours(u);
            if nb.is_empty() {
                break;
            }
            u = nb[rng.random_range(0..nb.len())];
            w.push(e[u]);
        }
        walks.push(w);
    }
    let lag1 = |ws: &[&Vec<f64>]| -> Option<f64> {
        let all: Vec<f64> = ws.iter().flat_map(|w| w.iter().copied()).collect();
        let m = all.iter().sum::<f64>() / all.len().max(1) as f64;
        let var = all.iter().map(|x| (x - m).powi(2)).sum::<f64>() / all.len() as f64;
        let (mut cov, mut k) = (0.0, 0usize);
        for w in ws {
            for t in w.windows(2) {
                cov += (t[0] - m) * (t[1] - m);
                k += 1;
            }
        }
        (var > 0.0 && k > 0).then(|| cov / k as f64 / var)
    };
    let all: Vec<&Vec<f64>> = walks.iter().collect();
    let per_walk: Vec<f64> = walks.iter().filter_map(|w| lag1(&[w])).collect();
    WalkAutocorrelation {
        value: lag1(&all),
        median_per_walk: stats::median(&per_walk),
        walks: config.walks,
        walk_length: config.walk_length,
        lag: 1,
        seed: config.seed,
    }
}
