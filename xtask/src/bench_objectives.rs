//! `cargo xtask bench objectives`: the cost of one training step's gradient under each
//! terrain-robust objective relative to ERM's (terrain-model's own `Erm`), measured in one run on
//! the same model and batch. Goals (issue 10): SAM ≤ 2.05× a plain step, the per-example
//! objectives ≤ 1.03× ERM.
//!
//! A step here is `Objective::step` — forward, per-example losses, the objective's weights and
//! backward (SAM: both passes and the weight restore) — without the optimiser update, which is the
//! same for every objective. Times are medians over `--reps` after `--warmup` untimed ones; the
//! objectives are measured in interleaved rounds so that load from other processes spreads evenly.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use terrain_model::{
    Model,
    data::{Batch, Targets},
    loss::LossKind,
    rng,
    train::{Erm, Objective},
};
use terrain_report::Table;
use terrain_robust::ObjectiveSpec;

/// One measured objective.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    model: String,
    batch: usize,
    objective: String,
    median_ms: f64,
    ratio_to_erm: f64,
    goal: Option<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the suite: `models` (default an MLP 784-256-256-10 and the Ishida MLP of the SoftAD
/// paper), batches of `batch` random rows.
pub fn run(
    reps: usize,
    warmup: usize,
    batch: usize,
    dtype: DType,
    models: &[String],
    out: Option<&std::path::Path>,
) -> Result<()> {
    let models = if models.is_empty() {
        vec![
            "mlp:784-256-256-10:relu".to_string(),
            "mlp:2-500-500-500-500-2:relu:bn:nobias".to_string(),
        ]
    } else {
        models.to_vec()
    };
    // (compact form, goal); `None`: terrain-model's own ERM, the reference.
    let objectives: Vec<(Option<&str>, Option<f64>)> = vec![
        (None, None),
        (Some("erm"), Some(1.03)),
        (Some("flood:level=0.1"), Some(1.03)),
        (Some("iflood:theta=0.1"), Some(1.03)),
        (Some("softad:theta=0.5,sigma=1"), Some(1.03)),
        (Some("tilted:t=1"), Some(1.03)),
        (Some("cvar:alpha=0.9"), Some(1.03)),
        (Some("dro:radius=1"), Some(1.03)),
        (Some("coce:theta=0.2,alpha=0.5"), Some(1.03)),
        (Some("sam:rho=0.05"), Some(2.05)),
        (Some("asam:rho=0.5"), Some(2.05)),
    ];
    eprintln!(
        "profile: {}, threads: {}, dtype: {dtype:?}, batch: {batch}, reps: {reps} (+{warmup} warm-up)",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        candle_core::utils::get_num_threads(),
    );
    let mut rows = Vec::new();
    for spec in &models {
        let arch: terrain_model::ArchSpec = spec.parse()?;
        let model = Model::new(arch.clone(), dtype, &Device::Cpu, 0)?;
        let classes = arch.output_dim();
        let mut shape = vec![batch];
        shape.extend(arch.input_shape());
        let x = rng::normal_tensor(&shape, 1, dtype, &Device::Cpu)?;
        let labels: Vec<u32> = (0..batch).map(|i| (i % classes) as u32).collect();
        let b = Batch {
            x,
            y: Targets::Classes(Tensor::from_vec(labels, batch, &Device::Cpu)?),
        };
        let mut built: Vec<Box<dyn Objective>> = objectives
            .iter()
            .map(|(spec, _)| -> Result<Box<dyn Objective>> {
                Ok(match spec {
                    None => Box::new(Erm),
                    Some(s) => s.parse::<ObjectiveSpec>()?.build()?,
                })
            })
            .collect::<Result<_>>()?;
        let mut times = vec![Vec::new(); built.len()];
        for round in 0..warmup + reps {
            for (o, t) in built.iter_mut().zip(&mut times) {
                let started = Instant::now();
                o.step(&model, &b, LossKind::Ce)?;
                if round >= warmup {
                    t.push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        for ((name, goal), m) in objectives.iter().zip(&medians) {
            rows.push(Row {
                model: spec.clone(),
                batch,
                objective: match name {
                    None => "erm (terrain-model)".into(),
                    Some(n) if *n == "erm" => "erm (per-example path)".into(),
                    Some(n) => n.to_string(),
                },
                median_ms: *m,
                ratio_to_erm: m / medians[0],
                goal: *goal,
            });
        }
    }
    let table = Table::from_rows(&rows)?;
    print!("{}", table.to_terminal());
    for r in rows
        .iter()
        .filter(|r| r.goal.is_some_and(|g| r.ratio_to_erm > g))
    {
        println!(
            "over goal: {} on {}: {:.3}× (goal ≤ {}×)",
            r.objective,
            r.model,
            r.ratio_to_erm,
            r.goal.unwrap_or_default()
        );
    }
    if let Some(path) = out {
        table.save(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
