//! Seeded random numbers: every random choice in terrain takes a seed and goes through here,
//! so the same seed gives the same numbers on every CPU.

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng as Rng;

/// A deterministic random generator for `seed`.
pub fn rng(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// A generator for sub-stream `stream` of `seed`, independent of the others
/// (used to give each parameter tensor or each epoch its own reproducible stream).
pub fn rng_stream(seed: u64, stream: u64) -> Rng {
    let mut r = Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// A random permutation of `0..n` from `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut rng(seed));
    idx
}

/// A seed derived from `seed` and `stream` (e.g. one per epoch), well mixed (SplitMix64).
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A tensor of independent standard normal values of `shape`, drawn from `seed` (candle's own
/// `Tensor::randn` is unseeded): test inputs, benchmark batches, random directions.
pub fn normal_tensor(
    shape: &[usize],
    seed: u64,
    dtype: candle_core::DType,
    device: &candle_core::Device,
) -> crate::Result<candle_core::Tensor> {
    use rand_distr::Distribution;
    let n: usize = shape.iter().product();
    let mut r = rng(seed);
    let v: Vec<f64> = (0..n)
        .map(|_| rand_distr::StandardNormal.sample(&mut r))
        .collect();
    Ok(
        candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?,
    )
}
