//! Choosing the compute device at run time (`cpu`, `cuda` or `cuda:N`) and the floating-point
//! type (`f32`, `f64`).

use std::{fmt, str::FromStr};

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The floating-point type a model computes in: `f32` (fast) or `f64` (exactness checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatType {
    /// 32-bit floats.
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

impl FloatType {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            FloatType::F32 => DType::F32,
            FloatType::F64 => DType::F64,
        }
    }
}

impl FromStr for FloatType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(FloatType::F32),
            "f64" | "float64" => Ok(FloatType::F64),
            _ => Err(Error::config("dtype", s, "expected f32 or f64")),
        }
    }
}

impl fmt::Display for FloatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FloatType::F32 => "f32",
            FloatType::F64 => "f64",
        })
    }
}

/// Parses `cpu`, `cuda` (device 0) or `cuda:N` and opens the device. Asking for CUDA in a build
/// without the `cuda` feature is an error that says so.
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    let err = |reason: String| Error::Device {
        spec: spec.to_string(),
        reason,
    };
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| err("expected cpu, cuda or cuda:N".into()))?,
        None => return Err(err("expected cpu, cuda or cuda:N".into())),
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(err(
            "this build of terrain has no CUDA support (rebuild with --features cuda)".into(),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| err(e.to_string()))
}

/// Tunes glibc's allocator for tensor work; call it once at the start of a binary.
///
/// candle allocates a fresh buffer for every op. glibc serves buffers above its mmap threshold
/// (128 KiB, adaptive up to 32 MiB) with `mmap` and returns them with `munmap`, so every op on a
/// batch-sized tensor page-faults its memory in again. Raising the mmap and trim thresholds keeps
/// freed buffers in the heap for reuse: on a 2-core machine the gradient of an MLP 784-256-256-10
/// at batch 256 drops from about 8 ms to 4.5 ms (see `cargo xtask bench curvature`). A library
/// should not change process-wide allocator settings behind its user's back, so this is opt-in.
/// Returns whether the settings were applied (only on Linux with glibc).
pub fn tune_cpu_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 32 MiB is glibc's largest accepted mmap threshold on 64-bit targets.
        const THRESHOLD: libc::c_int = 32 * 1024 * 1024;
        // SAFETY: mallopt only changes allocator tuning parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 4 * THRESHOLD) == 1
                && libc::mallopt(libc::M_TOP_PAD, THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_types_round_trip() {
        for t in [FloatType::F32, FloatType::F64] {
            assert_eq!(t.to_string().parse::<FloatType>().unwrap(), t);
        }
        assert!("f16".parse::<FloatType>().unwrap_err().to_string().contains("f16"));
    }

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert!(parse_device("CPU").unwrap().is_cpu());
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.contains("tpu"), "{e}");
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn allocator_tuning_applies_on_glibc_and_allocation_still_works() {
        assert_eq!(
            tune_cpu_allocator(),
            cfg!(all(target_os = "linux", target_env = "gnu"))
        );
        let v = vec![3u8; 10 << 20];
        assert_eq!(v.iter().map(|&x| u64::from(x)).sum::<u64>(), 3 * (10 << 20));
    }
}
