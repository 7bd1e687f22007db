//! Landscapes with known structure, for tests and benchmarks: Kauffman's NK landscapes.

use rand::Rng as _;

use crate::{Landscape, Result, table::Value};

/// Kauffman's NK landscape over all 2^n binary strings: gene i contributes a table value drawn
/// uniformly from [0, 1) for each setting of itself and the k genes after it (cyclically);
/// the error is the mean contribution. K = 0 is additive (one local optimum); K = n − 1 is
/// maximally rugged. Columns `x0..x{n-1}`, rows in binary counting order (row r has gene i =
/// bit i of r).
pub fn nk(n: usize, k: usize, seed: u64) -> Result<Landscape> {
    if n == 0 || n > 20 || k >= n {
        return Err(terrain_model::Error::config(
            "nk",
            format!("n={n}, k={k}"),
            "needs 1 ≤ n ≤ 20 and k < n",
        )
        .into());
    }
    let mut rng = terrain_model::rng::rng(seed);
    let tables: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            (0..1usize << (k + 1))
                .map(|_| rng.random::<f64>())
                .collect()
        })
        .collect();
    let rows = 1usize << n;
    let mut error = Vec::with_capacity(rows);
    for r in 0..rows {
        let bit = |i: usize| (r >> (i % n)) & 1;
        let f: f64 = (0..n)
            .map(|i| {
                let key = (0..=k).fold(0usize, |acc, t| (acc << 1) | bit(i + t));
                tables[i][key]
            })
            .sum();
        error.push(f / n as f64);
    }
    let columns = (0..n)
        .map(|i| {
            (0..rows)
                .map(|r| Value::Num(((r >> i) & 1) as f64))
                .collect()
        })
        .collect();
    let names = (0..n).map(|i| format!("x{i}")).collect();
    Landscape::new(
        format!("NK(n={n}, k={k}, seed={seed})"),
        names,
        columns,
        error,
        None,
    )
}
