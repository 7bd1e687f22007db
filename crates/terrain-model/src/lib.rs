//! # terrain-model
//!
//! The shared base of terrain: twice-differentiable layers and architectures (MLP, a small CNN,
//! ResNet-18 with a width multiplier), self-describing safetensors checkpoints (and PyTorch
//! `nn.Sequential` state dicts), named parameter vectors, datasets (real data shipped in the crate,
//! safetensors files, synthetic tasks, Hugging Face Hub image sets) and a seeded trainer with a
//! pluggable per-batch objective.
//!
//! ```
//! use terrain_model::{ArchSpec, Model, data, train::{TrainConfig, Trainer}};
//! use candle_core::{DType, Device};
//!
//! # fn main() -> terrain_model::Result<()> {
//! let digits = data::builtin::load("digits")?;
//! let (train, test) = digits.split(0.8, 0)?;
//! let spec: ArchSpec = "mlp:64-32-10:tanh".parse()?;
//! let model = Model::new(spec, DType::F32, &Device::Cpu, 0)?;
//! let config = TrainConfig { epochs: 2, lr: 0.05, batch_size: 64, ..TrainConfig::default() };
//! Trainer::new(config)?.fit(&model, &train, None, &mut |_| {})?;
//! let report = terrain_model::loss::evaluate(&model, &test, 256)?;
//! assert!(report.error.unwrap() < 0.5);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod autodiff;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod engine;
pub mod error;
pub mod layers;
pub mod loss;
pub mod model;
pub mod network;
pub mod params;
pub mod progress;
pub mod rng;
pub mod run;
pub mod spec;
pub mod threads;
pub mod train;

pub use error::{Error, Result};
pub use model::Model;
pub use params::ParamVec;
pub use spec::{Activation, ArchSpec};
