//! Directions in weight space for loss surfaces: seeded Gaussian, top Hessian eigenvectors, a
//! user file, or the difference to another checkpoint; Li et al.'s filter normalisation.

use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use terrain_curvature::{HessianConfig, HessianOperator, LanczosConfig, eigen};
use terrain_model::{
    Model,
    data::Dataset,
    loss::LossKind,
    params::{Normalization, ParamVec},
};

use crate::{Error, Result};

/// How a direction is rescaled against the weights (Li et al. 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Per filter (slice along the first axis): `d_f ← d_f·‖θ_f‖/(‖d_f‖+1e-10)`.
    Filter,
    /// Per tensor: `d ← d·‖θ‖/(‖d‖+1e-10)`.
    Layer,
    /// As drawn.
    None,
}

/// What happens to one-dimensional tensors (biases, BatchNorm scale and shift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ignore {
    /// Their direction is zero (Li et al.'s default `ignore='biasbn'`).
    Biasbn,
    /// Kept: with filter or layer normalisation they take the weights' own values, as in
    /// Li et al.'s code.
    None,
}

macro_rules! names {
    ($t:ty, $field:literal, $($v:ident = $s:literal),+) => {
        impl std::str::FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($s => Ok(<$t>::$v),)+
                    _ => Err(Error::config($field, s, concat!("expected one of:", $(" ", $s),+))),
                }
            }
        }
        impl std::fmt::Display for $t {
            /// The name, which parses back.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(<$t>::$v => $s,)+ })
            }
        }
    };
}
names!(
    Normalize,
    "normalize",
    Filter = "filter",
    Layer = "layer",
    None = "none"
);
names!(Ignore, "ignore", Biasbn = "biasbn", None = "none");

/// Rescales direction `d` against `weights` as Li et al.'s `normalize_directions_for_weights`.
pub fn normalize(
    d: &ParamVec,
    weights: &ParamVec,
    how: Normalize,
    ignore: Ignore,
) -> Result<ParamVec> {
    let scaled = match how {
        Normalize::Filter => d.normalize_like(weights, Normalization::FilterKeepBias)?,
        Normalize::Layer => d.normalize_like(weights, Normalization::Layer)?,
        Normalize::None => d.clone(),
    };
    let tensors = scaled
        .tensors
        .iter()
        .zip(&weights.tensors)
        .map(|(t, w)| match (t.rank() <= 1, ignore, how) {
            (true, Ignore::Biasbn, _) => Ok(t.zeros_like()?),
            (true, Ignore::None, Normalize::Filter | Normalize::Layer) => Ok(w.clone()),
            _ => Ok(t.clone()),
        })
        .collect::<Result<Vec<Tensor>>>()?;
    Ok(ParamVec {
        names: scaled.names,
        tensors,
    })
}

/// A seeded Gaussian direction (i.i.d. N(0, 1) entries), not yet normalised.
pub fn random(model: &Model, seed: u64) -> Result<ParamVec> {
    Ok(ParamVec::random_gaussian(model, seed)?)
}

/// The top `k` Hessian eigenvectors (Lanczos) of the loss of `model` on `data`, as unit
/// directions, largest eigenvalue first, with their eigenvalues.
pub fn hessian(
    model: &Model,
    data: &Dataset,
    loss: LossKind,
    k: usize,
    batch_size: usize,
    seed: u64,
) -> Result<Vec<(f64, ParamVec)>> {
    let op = HessianOperator::new(
        model,
        data,
        HessianConfig {
            batch_size,
            ..HessianConfig::new(loss)
        },
    )?;
    let top = eigen::lanczos(
        &op,
        &LanczosConfig {
            top_k: k,
            seed,
            ..LanczosConfig::default()
        },
    )?;
    let like = ParamVec::zeros_like_model(model)?;
    top.pairs
        .iter()
        .map(|p| {
            let parts = op.split(&p.vector)?;
            Ok((
                p.value,
                ParamVec {
                    names: like.names.clone(),
                    tensors: parts,
                },
            ))
        })
        .collect()
}

/// A direction read from a safetensors file whose tensors are named like the model's
/// parameters. A parameter the file lacks gets zero; a tensor the model lacks (or a buffer), or
/// one of another shape, is an error naming it.
pub fn from_file(path: &Path, model: &Model) -> Result<ParamVec> {
    let raw = terrain_model::checkpoint::read_file(path)?;
    let mut d = ParamVec::zeros_like_model(model)?;
    for (name, t) in &raw.tensors {
        let Some(i) = d.names.iter().position(|n| n == name) else {
            let reason = if model.buffers().iter().any(|b| &b.name == name) {
                "is a BatchNorm buffer, not a parameter: directions move parameters only"
                    .to_string()
            } else {
                format!(
                    "the model ({}) has no parameter of that name; it has {}",
                    model.spec(),
                    terrain_model::error::name_list(&d.names)
                )
            };
            return Err(Error::Direction {
                path: path.to_path_buf(),
                name: name.clone(),
                reason,
            });
        };
        let want = d.tensors[i].dims().to_vec();
        if t.dims() != want.as_slice() {
            return Err(Error::Direction {
                path: path.to_path_buf(),
                name: name.clone(),
                reason: format!(
                    "has shape {:?}, the model's parameter has {:?}",
                    t.dims(),
                    want
                ),
            });
        }
        let t = t.to_dtype(model.dtype())?.to_device(model.device())?;
        let bad = t
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?
            .into_iter()
            .find(|v| !v.is_finite());
        if let Some(v) = bad {
            return Err(Error::Direction {
                path: path.to_path_buf(),
                name: name.clone(),
                reason: format!("holds a non-finite value ({v})"),
            });
        }
        d.tensors[i] = t;
    }
    Ok(d)
}

/// `other − origin`: the direction from one model to another of the same architecture
/// (`what_a`/`what_b` name them in errors).
pub fn towards(origin: &Model, other: &Model, what_a: &str, what_b: &str) -> Result<ParamVec> {
    same_architecture(
        "a direction between checkpoints",
        origin,
        other,
        what_a,
        what_b,
    )?;
    let a = ParamVec::from_model(origin)?;
    let b = ParamVec::from_model(other)?;
    let b = b.map(|t| t.to_dtype(origin.dtype())?.to_device(origin.device()))?;
    Ok(b.sub(&a)?)
}

/// Fails unless `a` and `b` have the same architecture.
pub fn same_architecture(
    what: &str,
    a: &Model,
    b: &Model,
    name_a: &str,
    name_b: &str,
) -> Result<()> {
    if a.spec() != b.spec() {
        return Err(Error::ArchitectureMismatch {
            what: what.to_string(),
            a: name_a.to_string(),
            b: name_b.to_string(),
            archs: Box::new([a.spec().to_string(), b.spec().to_string()]),
        });
    }
    Ok(())
}

/// A 64-bit fingerprint of a direction's values (FNV-1a over the f64 bits), so a results file
/// can tell whether it was computed along the same directions.
pub fn fingerprint(d: &ParamVec) -> Result<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, t) in d.names.iter().zip(&d.tensors) {
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        let v = t
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        for x in v {
            for b in x.to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    Ok(h)
}
