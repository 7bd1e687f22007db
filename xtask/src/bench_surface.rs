//! `cargo xtask bench surface`: the cost of a 51×51 loss surface (`terrain_metrics::surface`,
//! results file included) against 2601 plain loss evaluations (`terrain_model::loss::evaluate`)
//! over the same data and batch size, as a ratio in the same run. The goal is at most 1.05: no
//! per-point overhead beyond moving the weights.
//!
//! Both sides run in 17 interleaved blocks of three grid rows (plain, surface, plain, surface,
//! ...), so a change in machine load between them biases neither.

use std::{path::Path, time::Instant};

use anyhow::Result;
use terrain_metrics::{
    GridAxis, direction,
    surface::{self, Plane, ResultsLog, SurfaceConfig},
};
use terrain_model::{Model, ParamVec, data, device::FloatType, loss};
use terrain_report::{Cell, Table};

const SIDE: usize = 51;
const BLOCKS: usize = 17;

/// Runs the surface benchmark on `models` (default: the README's digits MLP and
/// `cnn:1x8x8-16-32-10:relu`), on the 1797 digits, in batches of `batch` rows.
pub fn run(models: &[String], batch: usize, dtype: FloatType, out: Option<&Path>) -> Result<()> {
    let specs: Vec<String> = if models.is_empty() {
        vec!["mlp:64-32-10:tanh".into(), "cnn:1x8x8-16-32-10:relu".into()]
    } else {
        models.to_vec()
    };
    eprintln!(
        "profile: {}, threads: {}, dtype: {:?}, batch: {batch}, grid {SIDE}×{SIDE} on the digits",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        candle_core::utils::get_num_threads(),
        dtype.dtype()
    );
    let digits = data::builtin::load("digits")?;
    let dir = std::env::temp_dir().join(format!("terrain-bench-surface-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut table = Table::new([
        "model",
        "points",
        "surface_s",
        "plain_evaluations_s",
        "ratio",
        "surface_ms_per_point",
    ]);
    for spec in &specs {
        let model = Model::new(spec.parse()?, dtype.dtype(), &candle_core::Device::Cpu, 0)?;
        let theta = ParamVec::from_model(&model)?;
        let dirs = (0..2)
            .map(|i| {
                let d = direction::random(&model, i)?;
                direction::normalize(
                    &d,
                    &theta,
                    direction::Normalize::Filter,
                    direction::Ignore::Biasbn,
                )
            })
            .collect::<terrain_metrics::Result<Vec<_>>>()?;
        let plane = Plane {
            origin: theta.clone(),
            directions: dirs.clone(),
        };
        let xs = GridAxis::new(-1.0, 1.0, SIDE)?;
        let ys = xs.values();
        let (mut t_surface, mut t_plain, mut points) = (0.0, 0.0, 0usize);
        let probe = model.deep_clone()?;
        let rows_per_block = SIDE.div_ceil(BLOCKS);
        for (b, rows) in ys.chunks(rows_per_block).enumerate() {
            // Plain: one loss::evaluate per point, after writing the point's weights.
            let started = Instant::now();
            for &y in rows {
                for &x in &xs.values() {
                    theta
                        .axpy(x, &dirs[0])?
                        .axpy(y, &dirs[1])?
                        .assign_to(&probe)?;
                    std::hint::black_box(loss::evaluate(&probe, &digits, batch)?);
                }
            }
            t_plain += started.elapsed().as_secs_f64();
            // The surface over the same rows, with its results file.
            let y = GridAxis::new(rows[0], *rows.last().expect("a row"), rows.len())
                .or_else(|_| GridAxis::new(rows[0], rows[0], 1))?;
            let config = SurfaceConfig {
                y: Some(y),
                batch_size: batch,
                ..SurfaceConfig::new(xs, loss::LossKind::Ce)
            };
            let path = dir.join(format!("{}-{b}.points.tsv", spec.replace([':', 'x'], "_")));
            let _ = std::fs::remove_file(&path);
            let started = Instant::now();
            let settings = surface::settings(&model, &digits, &plane, &config)?;
            let mut log = ResultsLog::open(&path, &settings)?;
            let s = surface::compute(&model, &digits, &digits, &plane, &config, Some(&mut log))?;
            t_surface += started.elapsed().as_secs_f64();
            points += s.computed;
        }
        let ratio = t_surface / t_plain;
        eprintln!("{spec}: surface {t_surface:.2} s, plain {t_plain:.2} s, ratio {ratio:.3}");
        table.push(vec![
            Cell::Str(spec.clone()),
            Cell::Int(points as i64),
            Cell::Float(t_surface),
            Cell::Float(t_plain),
            Cell::Float(ratio),
            Cell::Float(1e3 * t_surface / points as f64),
        ])?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", table.to_terminal());
    if let Some(path) = out {
        table.save(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
