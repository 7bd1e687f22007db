//! # terrain-robust
//!
//! Training objectives beyond the mean loss, each a [`terrain_model::train::Objective`] that plugs
//! into terrain's trainer and recipe: flooding, iFlood, soft ascent-descent (SoftAD, Holland &
//! Nakatani 2024), SAM and adaptive SAM, tilted ERM, CVaR, χ²-DRO and soft-flooded CVaR ("COCE",
//! Holland & Hamada, arXiv 2408.03619). Definitions, with ℓ_i the per-example losses of a
//! mini-batch of n:
//!
//! | objective | F (its gradient is what trains) |
//! |---|---|
//! | [`Erm`] | mean ℓ_i |
//! | [`Flood`] | \|mean ℓ − b\| + b |
//! | [`IFlood`] | mean_i \|ℓ_i − θ\| + θ |
//! | [`SoftAd`] | θ + σ²·mean_i ρ((ℓ_i − θ)/σ), ρ(x) = √(x²+1) − 1 |
//! | [`Sam`] | mean ℓ at w + ρ·g/(‖g‖₂+1e-12) (adaptive: ρ·\|w\|²g/(‖\|w\|g‖₂+1e-12)) |
//! | [`Tilted`] | (1/t)·log mean_i exp(t·ℓ_i) |
//! | [`Cvar`] | mean of the ⌈(1−α)·n⌉ largest ℓ_i |
//! | [`Dro`] | max Σ q_i ℓ_i over ½·mean (n q_i − 1)² ≤ r |
//! | [`Coce`] | ρ(CVaR_α − τ) + τ (θ_c minimised; see its docs for the released code's θ_c = 0) |
//!
//! Hyperparameters are checked on construction: an invalid one is a
//! [`terrain_model::Error::InvalidConfig`] naming the field and the value (the crate has no error
//! type of its own: every failure is one of terrain-model's, which the trainer's `Objective`
//! trait returns). [`ObjectiveSpec`] holds any of them as a serde value and a compact string.
//!
//! ```
//! use terrain_model::{ArchSpec, run::{RunOptions, RunSpec}};
//! use terrain_robust::{LossTransform, ObjectiveSpec, SoftAd};
//!
//! // SoftAD's weights: descent above θ, ascent below, bounded by σ/n.
//! let soft = SoftAd::new(0.5, 1.0)?;
//! let w = soft.weights(&[0.1, 0.5, 2.0]);
//! assert!(w[0] < 0.0 && w[1] == 0.0 && w[2] > 0.0);
//!
//! // Train with it through the recipe.
//! let objective: ObjectiveSpec = "softad:theta=0.5".parse()?;
//! let mut spec = RunSpec::new("mlp:4-8-3:tanh".parse::<ArchSpec>()?, "iris", 1);
//! spec.training.epochs = 2;
//! let out = spec.run_with(&RunOptions::default(), Some(objective.build()?))?;
//! assert_eq!(out.report.objective, "softad:theta=0.5,sigma=1");
//! assert_eq!(out.report.epochs[1].concentration.unwrap().threshold, Some(0.5));
//! # Ok::<(), terrain_model::Error>(())
//! ```
#![warn(missing_docs)]

pub mod sam;
pub mod spec;
pub mod transform;

pub use sam::Sam;
pub use spec::ObjectiveSpec;
pub use transform::{
    Coce, Cvar, Dro, Erm, Flood, IFlood, LossTransform, PerExample, SoftAd, Tilted,
};
