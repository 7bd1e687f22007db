//! numpy's legacy random stream (`np.random.seed` / `RandomState`), bit for bit, for the few
//! draws the MD tree authors' code makes: `choice(population, k, replace=False)` and
//! `randint(0, 2**31 - 1)` (scikit-learn's tree seed).
//!
//! This is a compatibility stream for reproducing published numbers, not a source of new
//! randomness: everything else in terrain draws from `terrain_model::rng` (ChaCha8).
//!
//! - [`Mt19937::new`] is `init_genrand` (what `np.random.seed(int)` does);
//! - [`Mt19937::next_u32`] is `genrand_int32` (the tempered 32-bit output);
//! - [`Mt19937::interval`] is numpy's `random_interval`: an integer in `0..=max` by masked
//!   rejection (the smallest all-ones mask ≥ `max`; draws above `max` are rejected);
//! - [`Mt19937::permutation`] is legacy `permutation(n)`: a full Fisher–Yates pass over
//!   `0..n` for `i = n−1` down to 1, each `j = interval(i)`;
//! - [`Mt19937::choice_without_replacement`] is legacy `choice(n, k, replace=False)`, which is
//!   `permutation(n)[:k]`.
//!
//! ```
//! use terrain_diagnose::numpy_rng::Mt19937;
//!
//! // The reference outputs of MT19937 for its default seed.
//! let mut mt = Mt19937::new(5489);
//! assert_eq!(mt.next_u32(), 3_499_211_612);
//! assert_eq!(mt.next_u32(), 581_869_302);
//! ```

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The Mersenne Twister MT19937 in numpy's legacy seeding.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    pos: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937").field("pos", &self.pos).finish()
    }
}

impl Mt19937 {
    /// The generator after `np.random.seed(seed)` (`init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, pos: N }
    }

    fn generate(&mut self) {
        let mag = |y: u32| if y & 1 == 1 { MATRIX_A } else { 0 };
        for k in 0..N - M {
            let y = (self.state[k] & UPPER_MASK) | (self.state[k + 1] & LOWER_MASK);
            self.state[k] = self.state[k + M] ^ (y >> 1) ^ mag(y);
        }
        for k in N - M..N - 1 {
            let y = (self.state[k] & UPPER_MASK) | (self.state[k + 1] & LOWER_MASK);
            self.state[k] = self.state[k + M - N] ^ (y >> 1) ^ mag(y);
        }
        let y = (self.state[N - 1] & UPPER_MASK) | (self.state[0] & LOWER_MASK);
        self.state[N - 1] = self.state[M - 1] ^ (y >> 1) ^ mag(y);
        self.pos = 0;
    }

    /// The next tempered 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.generate();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// The next 64-bit output as numpy builds it: two 32-bit outputs, the first as the high half.
    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        let lo = u64::from(self.next_u32());
        (hi << 32) | lo
    }

    /// An integer in `0..=max` (numpy's `random_interval`): masked rejection on 32-bit outputs
    /// when `max` fits in 32 bits, on 64-bit outputs otherwise.
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        if max <= u64::from(u32::MAX) {
            loop {
                let v = u64::from(self.next_u32()) & mask;
                if v <= max {
                    return v;
                }
            }
        } else {
            loop {
                let v = self.next_u64() & mask;
                if v <= max {
                    return v;
                }
            }
        }
    }

    /// Shuffles `items` in place as legacy `shuffle` does for a 1-D array: Fisher–Yates for
    /// `i = len−1` down to 1, swapping `items[i]` with `items[interval(i)]`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// Legacy `permutation(n)`: `0..n` shuffled.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        self.shuffle(&mut idx);
        idx
    }

    /// Legacy `choice(n, k, replace=False)`: the first `k` entries of `permutation(n)` (the
    /// whole permutation is drawn, as numpy does). `None` when `k > n`.
    pub fn choice_without_replacement(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        let mut p = self.permutation(n);
        p.truncate(k);
        Some(p)
    }

    /// Legacy `randint(low, high)` for 64-bit integers, `low < high`: `low + interval(high−low−1)`
    /// with masked rejection. `None` when `high <= low`.
    pub fn randint(&mut self, low: i64, high: i64) -> Option<i64> {
        if high <= low {
            return None;
        }
        let range = (high as i128 - low as i128 - 1) as u64;
        Some((low as i128 + self.interval(range) as i128) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ten_thousandth_output_of_the_default_seed() {
        // The C++ standard's check value for std::mt19937 (default seed 5489).
        let mut mt = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = mt.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn interval_zero_draws_nothing() {
        let mut a = Mt19937::new(1);
        let mut b = Mt19937::new(1);
        assert_eq!(a.interval(0), 0);
        assert_eq!(a.next_u32(), b.next_u32());
        assert!(a.choice_without_replacement(3, 4).is_none());
        assert!(a.randint(5, 5).is_none());
    }
}
