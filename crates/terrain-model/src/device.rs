//! Choosing the compute device at run time: `cpu`, `cuda` or `cuda:N`.

use candle_core::Device;

use crate::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert!(parse_device("CPU").unwrap().is_cpu());
        let e = parse_device("tpu").unwrap_err().to_string();
        assert!(e.contains("tpu"), "{e}");
        assert!(parse_device("cuda:x").is_err());
    }
}
