//! The one configuration convention of terrain's crates, and the range checks it uses.
//!
//! Every configuration type (a trainer's, a solver's, a sweep's) follows the same shape:
//! - `Default` (or `new(required...)` when some field has no sensible default), public fields;
//! - serde `Serialize + Deserialize`, so it can be stored beside its results and read back;
//! - an inherent `check(&self) -> Result<()>`, returning [`Error::InvalidConfig`] naming the field,
//!   its value and the reason (the range checks below are written so that NaN fails); constructors
//!   that take a configuration call it, so an invalid one never starts work;
//! - compact string forms (`step:10:0.5`, `adam`, `mse`, `cp-tu`) as `FromStr` + `Display` beside
//!   the type, which round-trip, so command lines parse them as value types.
//!
//! ```
//! use terrain_model::config::{positive, unit_interval};
//!
//! struct Smoothing { alpha: f64 }
//! impl Smoothing {
//!     fn check(&self) -> terrain_model::Result<()> {
//!         unit_interval("alpha", self.alpha)
//!     }
//! }
//! assert!(Smoothing { alpha: 0.1 }.check().is_ok());
//! assert!(Smoothing { alpha: f64::NAN }.check().is_err());
//! assert!(positive("lr", 0.0).is_err());
//! ```

use crate::{Error, Result};

/// `value` must be finite and > 0.
pub fn positive(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::config(name, value, "must be a finite number > 0"))
    }
}

/// `value` must be finite and ≥ 0.
pub fn non_negative(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(name, value, "must be a finite number ≥ 0"))
    }
}

/// `value` must lie in `[0, 1)`.
pub fn unit_interval(name: &str, value: f64) -> Result<()> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(name, value, "must be in [0, 1)"))
    }
}

/// `value` must lie in the closed interval `[0, 1]`.
pub fn probability(name: &str, value: f64) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(name, value, "must be in [0, 1]"))
    }
}

/// `value` must lie in `(0, 1]`.
pub fn fraction(name: &str, value: f64) -> Result<()> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(Error::config(name, value, "must be in (0, 1]"))
    }
}

/// The largest count of repetitions (epochs, products, samples, runs) a configuration accepts:
/// a billion is years of work for any model terrain handles, and anything above it is a typo or
/// an overflow, not a plan.
pub const MAX_COUNT: usize = 1_000_000_000;

/// `value` must lie in `1..=MAX_COUNT`.
pub fn count(name: &str, value: usize) -> Result<()> {
    if (1..=MAX_COUNT).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(
            name,
            value,
            format!("must be between 1 and {MAX_COUNT}"),
        ))
    }
}

/// `value` must be at least `min`.
pub fn at_least(name: &str, value: usize, min: usize) -> Result<()> {
    if value >= min {
        Ok(())
    } else {
        Err(Error::config(
            name,
            value,
            format!("must be at least {min}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_rejects_nan_and_infinities() {
        type CheckFn = fn(&str, f64) -> Result<()>;
        let checks: [(CheckFn, f64); 5] = [
            (positive, 1.0),
            (non_negative, 0.0),
            (unit_interval, 0.5),
            (probability, 1.0),
            (fraction, 1.0),
        ];
        for (check, ok) in checks {
            assert!(check("x", ok).is_ok());
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
                let e = check("x", bad).unwrap_err().to_string();
                assert!(e.contains("x"), "{e}");
            }
        }
        assert!(at_least("n", 0, 1).is_err());
        assert!(at_least("n", 1, 1).is_ok());
    }
}
