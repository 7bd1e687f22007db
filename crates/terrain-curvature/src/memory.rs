//! What a solver will allocate, said before it allocates: an estimate of the bytes of its working
//! vectors (a Lanczos basis, a Hutch++ sketch), checked against the memory the process can still
//! use. The Lanczos basis of an 11-million-parameter ResNet-18 at 100 steps is 4.47 GB in f32: a
//! solver that would need more than is available fails at once with an error that says so,
//! instead of after an hour (or with an allocation abort).

use std::fmt;

use candle_core::DType;
use terrain_model::device::{available_memory, format_bytes};

use crate::{Error, Result};

/// The memory a solver needs for `count` vectors of `dim` values of `dtype`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Bytes needed (saturating at `u64::MAX`).
    pub bytes: u64,
    /// What they are for, e.g. "the Lanczos basis (102 vectors of 11173962 f32)".
    pub what: String,
}

impl MemoryEstimate {
    /// `count` vectors of `dim` values of `dtype`, described as `what`.
    pub fn vectors(what: &str, count: usize, dim: usize, dtype: DType) -> Self {
        let bytes = (count as u64)
            .saturating_mul(dim as u64)
            .saturating_mul(dtype.size_in_bytes() as u64);
        MemoryEstimate {
            bytes,
            what: format!(
                "{what} ({count} vectors of {dim} {})",
                format!("{dtype:?}").to_lowercase()
            ),
        }
    }

    /// Fails with [`Error::InsufficientMemory`] when more is needed than the process can still
    /// allocate (when that is known).
    pub fn check(&self) -> Result<()> {
        self.check_against(available_memory())
    }

    /// [`MemoryEstimate::check`] against a given number of available bytes (`None`: unknown).
    pub fn check_against(&self, available: Option<u64>) -> Result<()> {
        match available {
            Some(avail) if self.bytes > avail => Err(Error::InsufficientMemory {
                what: self.what.clone(),
                needed: format_bytes(self.bytes),
                available: format_bytes(avail),
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} for {}", format_bytes(self.bytes), self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resnet_lanczos_basis_is_said_in_gigabytes_and_refused_when_too_big() {
        let m = MemoryEstimate::vectors("the Lanczos basis", 100, 11_173_962, DType::F32);
        assert_eq!(m.bytes, 4_469_584_800);
        assert!(
            m.to_string().starts_with("4.47 GB for the Lanczos basis"),
            "{m}"
        );
        let e = m
            .check_against(Some(1_000_000_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("4.47 GB") && e.contains("1.00 GB"), "{e}");
        assert!(m.check_against(Some(8_000_000_000)).is_ok());
        assert!(m.check_against(None).is_ok());
        let huge = MemoryEstimate::vectors("x", usize::MAX, usize::MAX, DType::F64);
        assert_eq!(huge.bytes, u64::MAX);
    }
}
