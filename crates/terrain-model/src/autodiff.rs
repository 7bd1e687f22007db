//! Second-order automatic differentiation through candle.
//!
//! candle 0.11 detaches every incoming gradient during `backward` unless the environment variable
//! `CANDLE_GRAD_DO_NOT_DETACH` is set (to anything but `""`/`"0"`). It reads the variable **once per
//! thread**, lazily, at that thread's first backward pass. Without it second derivatives are not an
//! error but silently wrong (d²(x⁴)/dx² at 2 comes out 16 instead of 48).
//!
//! Only candle's double backward needs it (the differentiation engine, [`crate::engine`], computes
//! second derivatives by hand and needs no flag). A library never sets it (environment variables
//! belong to the process): `.cargo/config.toml` sets it for `cargo run`/`cargo test`, the
//! binaries' start-up sets it first thing in `main`, and [`ensure_second_order`] proves it is in
//! effect on the calling thread, failing loudly with what to set otherwise. Code that runs
//! double backward calls it first.

use candle_core::{DType, Device, Tensor, Var};

use crate::{Error, Result};

/// The environment variable candle reads to keep gradients attached.
pub const FLAG: &str = "CANDLE_GRAD_DO_NOT_DETACH";

/// Whether the flag is set in this process's environment (it may still not be in effect on a
/// thread that ran a backward pass before it was set; [`self_check`] tells).
pub fn flag_set() -> bool {
    std::env::var(FLAG).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Computes d²(x⁴)/dx² at x = 2 by double backward on this thread. Returns the value (48 when
/// second-order autodiff works).
pub fn second_derivative_probe() -> Result<f64> {
    let x = Var::new(2.0f64, &Device::Cpu)?;
    let y = x.as_tensor().sqr()?.sqr()?;
    let g = y.backward()?;
    let dy = g
        .get(x.as_tensor())
        .ok_or_else(|| Error::SecondOrderDisabled { got: f64::NAN })?;
    let g2 = dy.backward()?;
    Ok(match g2.get(x.as_tensor()) {
        Some(t) => t.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        None => 0.0,
    })
}

/// Fails with [`Error::SecondOrderDisabled`] unless second derivatives are correct on this thread.
pub fn self_check() -> Result<()> {
    let got = second_derivative_probe()?;
    if (got - 48.0).abs() > 1e-9 {
        return Err(Error::SecondOrderDisabled { got });
    }
    Ok(())
}

/// Checks that second-order autodiff works on this thread ([`Error::SecondOrderDisabled`],
/// saying which variable to set, otherwise). It sets nothing.
///
/// ```
/// // `cargo test` runs doc tests with CANDLE_GRAD_DO_NOT_DETACH=1 (.cargo/config.toml).
/// terrain_model::autodiff::ensure_second_order().expect("second-order autodiff");
/// ```
pub fn ensure_second_order() -> Result<()> {
    self_check()
}

/// Gradient of scalar `y` with respect to each of `vars`, kept attached to the graph (so it can be
/// differentiated again when the flag is in effect). Variables that `y` does not depend on get zeros.
pub fn grad(y: &Tensor, vars: &[&Tensor]) -> Result<Vec<Tensor>> {
    let store = y.backward()?;
    vars.iter()
        .map(|v| match store.get(v) {
            Some(g) => Ok(g.clone()),
            None => Ok(v.zeros_like()?),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_gives_48_with_flag() {
        ensure_second_order().unwrap();
        assert_eq!(second_derivative_probe().unwrap(), 48.0);
    }
}
