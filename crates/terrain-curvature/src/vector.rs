//! Flat parameter-space vectors: 1-D tensors of an operator's dimension, on its device and dtype.
//!
//! Solvers work on these; [`crate::HessianOperator`] splits them into per-parameter blocks.

use candle_core::{DType, Device, Tensor};
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};
use terrain_model::rng;

use crate::Result;

/// The distribution of random probe vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// i.i.d. ±1 entries (E v² = 1, E v⁴ = 1): the lowest-variance choice for traces and diagonals.
    Rademacher,
    /// i.i.d. standard normal entries.
    Gaussian,
}

/// `dim` i.i.d. draws from `probe`, from `seed` (same seed, same vector).
pub fn random(
    dim: usize,
    probe: Probe,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut r = rng::rng(seed);
    let v: Vec<f64> = match probe {
        Probe::Rademacher => (0..dim)
            .map(|_| if r.random::<bool>() { 1.0 } else { -1.0 })
            .collect(),
        Probe::Gaussian => (0..dim).map(|_| StandardNormal.sample(&mut r)).collect(),
    };
    Ok(Tensor::from_vec(v, dim, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// Inner product ⟨a, b⟩, returned as f64: on the CPU in f32/f64 summed on the host in f64
/// ([`terrain_model::params::host_dot`]), elsewhere accumulated in the tensors' dtype.
pub fn dot(a: &Tensor, b: &Tensor) -> Result<f64> {
    if let Some(d) = terrain_model::params::host_dot(a, b) {
        return Ok(d);
    }
    Ok(a.mul(b)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// Euclidean norm ‖a‖.
pub fn norm(a: &Tensor) -> Result<f64> {
    Ok(dot(a, a)?.sqrt())
}

/// `y + alpha·x`.
pub fn axpy(y: &Tensor, alpha: f64, x: &Tensor) -> Result<Tensor> {
    Ok(y.add(&x.affine(alpha, 0.0)?)?)
}

/// `a / ‖a‖` and ‖a‖ (a zero vector is returned unchanged with norm 0).
pub fn normalize(a: &Tensor) -> Result<(Tensor, f64)> {
    let n = norm(a)?;
    if n == 0.0 {
        return Ok((a.clone(), 0.0));
    }
    Ok((a.affine(1.0 / n, 0.0)?, n))
}

/// Removes from `v` its components along each of the (orthonormal) `basis` vectors, twice:
/// modified Gram–Schmidt (each coefficient is taken from the vector already reduced by the
/// previous basis vectors) with one full reorthogonalisation pass ("twice is enough").
pub fn orthogonalize(v: &Tensor, basis: &[Tensor]) -> Result<Tensor> {
    let mut v = v.clone();
    for _ in 0..2 {
        for b in basis {
            let c = dot(&v, b)?;
            v = axpy(&v, -c, b)?;
        }
    }
    Ok(v)
}

/// The values of a 1-D tensor as f64.
pub fn to_vec(a: &Tensor) -> Result<Vec<f64>> {
    Ok(a.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// A 1-D tensor from f64 values, converted to `dtype` on `device`.
pub fn from_slice(values: &[f64], dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(values, values.len(), &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}
