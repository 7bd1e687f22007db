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
            "this build of terrain has no CUDA support (build it with the `cuda` feature)".into(),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| err(e.to_string()))
}

/// Bytes of memory this process can still allocate, as far as the system says: the kernel's
/// `MemAvailable`, lowered by a cgroup memory limit (`memory.max`, v2) when one is set. `None`
/// where neither can be read (not Linux). Solvers compare their needs with it before allocating.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo.as_deref().and_then(parse_meminfo_available);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let used = std::fs::read_to_string("/sys/fs/cgroup/memory.current")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let cgroup_left = match (cgroup, used) {
        (Some(max), Some(used)) => Some(max.saturating_sub(used)),
        (Some(max), None) => Some(max),
        _ => None,
    };
    match (available, cgroup_left) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// Fails with [`Error::OutOfMemory`] when `bytes` (for `what`) exceed the memory the process can
/// still allocate (when that is known). Called before allocating anything sized by user input.
pub fn check_memory(what: &str, bytes: u64) -> Result<()> {
    match available_memory() {
        Some(avail) if bytes > avail => Err(Error::OutOfMemory {
            what: what.to_string(),
            needed: format_bytes(bytes),
            available: format_bytes(avail),
        }),
        _ => Ok(()),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn parse_meminfo_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// A byte count for people: `4.47 GB`, `512 KB` (decimal units).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
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
    fn memory_parsing_and_formatting() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo_available(text), Some(20_000_000 * 1024));
        assert_eq!(parse_meminfo_available("MemAvailable: lots"), None);
        assert_eq!(parse_meminfo_available(""), None);
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(4_469_584_800), "4.47 GB");
        if cfg!(target_os = "linux") {
            assert!(available_memory().is_some_and(|b| b > 0));
        }
    }

    #[test]
    fn float_types_round_trip() {
        for t in [FloatType::F32, FloatType::F64] {
            assert_eq!(t.to_string().parse::<FloatType>().unwrap(), t);
        }
        assert!(
            "f16"
                .parse::<FloatType>()
                .unwrap_err()
                .to_string()
                .contains("f16")
        );
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
