//! # terrain-metrics
//!
//! What the loss-landscape literature and the MD tree measure about trained models:
//!
//! - [`surface`]: 1-D and 2-D loss surfaces `L(θ + x·d + y·e)` along seeded Gaussian, Hessian,
//!   user-given or checkpoint-to-checkpoint [`direction`]s with Li et al.'s filter normalisation,
//!   forward passes only, with an append-only results file so a killed job resumes exactly;
//! - [`connect`]: mode connectivity along a straight line or a trained quadratic Bezier curve
//!   (Garipov et al.), with Yang et al.'s `mc` and the MD tree's `mc_peak`;
//! - [`cka`]: linear CKA between models' outputs on mixup-augmented inputs;
//! - [`sharpness`]: loss, error, norms, the Hessian's top eigenvalue and trace with PyHessian's
//!   settings, and ε-sharpness;
//! - [`mdtree`]: the MD tree's feature row of several seeds of one configuration;
//! - [`sensitivity`]: Faroz 2024's input-feature sensitivity from first to third input
//!   derivatives, compared with Spearman correlations across retrainings.
//!
//! Curvature comes from terrain-curvature, models, data and directions from terrain-model; this
//! crate draws nothing (the CLI renders its results through terrain-report).
//!
//! ```
//! use candle_core::{DType, Device};
//! use terrain_metrics::{GridAxis, direction, surface::{self, Plane, SurfaceConfig}};
//! use terrain_model::{Model, ParamVec, data, loss::LossKind};
//!
//! # fn main() -> terrain_metrics::Result<()> {
//! let iris = data::builtin::load("iris")?;
//! let model = Model::new("mlp:4-8-3:tanh".parse()?, DType::F64, &Device::Cpu, 0)?;
//! let origin = ParamVec::from_model(&model)?;
//! let d = direction::random(&model, 1)?;
//! let d = direction::normalize(&d, &origin, direction::Normalize::Filter, direction::Ignore::Biasbn)?;
//! let plane = Plane { origin, directions: vec![d] };
//! let config = SurfaceConfig::new("-1:1:5".parse::<GridAxis>()?, LossKind::Ce);
//! let s = surface::compute(&model, &iris, &iris, &plane, &config, None)?;
//! assert_eq!(s.loss[0].len(), 5);
//! let at_origin = terrain_model::loss::evaluate(&model, &iris, 512)?.loss;
//! assert!((s.loss[0][2] - at_origin).abs() < 1e-12);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod cka;
pub mod connect;
pub mod direction;
pub mod error;
pub mod grid;
pub mod mdtree;
pub mod sensitivity;
pub mod sharpness;
pub mod surface;

pub use error::{Error, Result};
pub use grid::GridAxis;
