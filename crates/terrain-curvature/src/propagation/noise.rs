//! Noise for curvature propagation: random probes for estimates, one-hot columns to build the
//! factor `S` exactly.
//!
//! Every injection point of a sweep asks for one tensor of shape `[N, K, feat...]`: `N` rows,
//! `K` independent samples (the sweep's width), and the per-row feature shape of the node. Draws
//! happen in a fixed order (batches in order, the loss node first, then the layers backwards), so
//! a seed fixes every number.

use candle_core::{DType, Device, Tensor};
use rand::RngCore as _;
use rand_distr::{Distribution, StandardNormal};
use terrain_model::{Result, engine::propagation::Noise, rng::Rng};

use crate::vector::Probe;

fn shape(rows: usize, k: usize, feat: &[usize]) -> Vec<usize> {
    let mut s = vec![rows, k];
    s.extend_from_slice(feat);
    s
}

/// Builds a tensor from f32 values (the noise is ±1 or N(0,1): f32 is exact for the former and
/// ample for the latter) in `dtype` on `device`.
fn tensor(values: Vec<f32>, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)?)
}

/// i.i.d. Rademacher or Gaussian entries from a seeded generator.
pub(crate) struct RandomNoise {
    rng: Rng,
    probe: Probe,
}

impl RandomNoise {
    /// Noise from `rng` with entries distributed as `probe`.
    pub(crate) fn new(rng: Rng, probe: Probe) -> Self {
        RandomNoise { rng, probe }
    }
}

impl Noise for RandomNoise {
    fn draw(
        &mut self,
        rows: usize,
        k: usize,
        feat: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape(rows, k, feat);
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match self.probe {
            Probe::Rademacher => {
                let mut v = Vec::with_capacity(n);
                while v.len() < n {
                    let mut bits = self.rng.next_u64();
                    for _ in 0..64.min(n - v.len()) {
                        v.push(if bits & 1 == 1 { 1.0 } else { -1.0 });
                        bits >>= 1;
                    }
                }
                v
            }
            Probe::Gaussian => (0..n)
                .map(|_| {
                    let x: f64 = StandardNormal.sample(&mut self.rng);
                    x as f32
                })
                .collect(),
        };
        tensor(values, &shape, dtype, device)
    }
}

/// Unit noise vectors: sample `j` of a sweep is the `(first + j)`-th unit vector of the sweep's
/// whole noise space (the injection points' rows and features, numbered in draw order). A sweep
/// with this noise computes columns `first..first + K` of the factor `S` exactly; after a sweep,
/// [`OneHotNoise::columns`] is the total number of columns.
pub(crate) struct OneHotNoise {
    first: usize,
    offset: usize,
}

impl OneHotNoise {
    /// Columns `first..first + K` (K is the sweep's width).
    pub(crate) fn new(first: usize) -> Self {
        OneHotNoise { first, offset: 0 }
    }

    /// The number of noise columns drawn so far.
    pub(crate) fn columns(&self) -> usize {
        self.offset
    }
}

impl Noise for OneHotNoise {
    fn draw(
        &mut self,
        rows: usize,
        k: usize,
        feat: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let per_row: usize = feat.iter().product();
        let len = rows * per_row;
        let mut values = vec![0f32; rows * k * per_row];
        for j in 0..k {
            let col = self.first + j;
            if col >= self.offset && col < self.offset + len {
                let idx = col - self.offset;
                let (row, f) = (idx / per_row, idx % per_row);
                values[(row * k + j) * per_row + f] = 1.0;
            }
        }
        self.offset += len;
        tensor(values, &shape(rows, k, feat), dtype, device)
    }
}
