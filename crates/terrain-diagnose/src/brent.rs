//! Bounded scalar minimisation with exactly the semantics of scipy's
//! `minimize_scalar(method='bounded')` (`scipy.optimize._optimize._minimize_scalar_bounded`,
//! Brent's method as in `fminbound`): golden-section steps with parabolic interpolation,
//! absolute tolerance `xatol`, at most `maxiter` function evaluations.
//!
//! The MD tree's thresholds are fitted by this on a piecewise-constant objective
//! (−training accuracy), where the point scipy stops at is a matter of its exact step rules:
//! the published accuracies depend on them, so this is a line-by-line port, not a variant.
//!
//! ```
//! use terrain_diagnose::brent::{minimize_bounded, BrentConfig};
//!
//! let r = minimize_bounded(|x| (x - 2.0) * (x - 2.0), (0.0, 5.0), &BrentConfig::default()).unwrap();
//! assert!((r.x - 2.0).abs() < 1e-5);
//! ```

use serde::{Deserialize, Serialize};
use terrain_model::Error as ModelError;

/// Settings of the bounded minimiser (scipy's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BrentConfig {
    /// Absolute tolerance on the minimiser (scipy `xatol`, default 1e-5).
    pub xatol: f64,
    /// The most function evaluations (scipy `maxiter`, default 500).
    pub maxiter: usize,
}

impl Default for BrentConfig {
    fn default() -> Self {
        BrentConfig {
            xatol: 1e-5,
            maxiter: 500,
        }
    }
}

impl BrentConfig {
    /// Checks the settings: `xatol` finite and > 0, `maxiter` ≥ 1.
    pub fn check(&self) -> terrain_model::Result<()> {
        terrain_model::config::positive("xatol", self.xatol)?;
        terrain_model::config::count("maxiter", self.maxiter)
    }
}

/// What the minimiser found (scipy's `OptimizeResult` fields that matter here).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BrentResult {
    /// The best point found (`result.x`).
    pub x: f64,
    /// The function's value there (`result.fun`).
    pub fun: f64,
    /// Function evaluations (`result.nfev`).
    pub nfev: usize,
    /// 0: converged; 1: `maxiter` evaluations reached; 2: NaN met (scipy's `status`).
    pub status: u8,
}

/// numpy's `np.sign(v) + (v == 0)`: ±1, and 1 for zero.
fn sign_or_one(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else if v == 0.0 {
        1.0
    } else {
        f64::NAN
    }
}

/// Minimises `f` over `[bounds.0, bounds.1]` as scipy's bounded `minimize_scalar` does.
///
/// Errors (as [`terrain_model::Error::InvalidConfig`]) on non-finite bounds, a lower bound above
/// the upper one, or invalid settings.
pub fn minimize_bounded(
    mut f: impl FnMut(f64) -> f64,
    bounds: (f64, f64),
    config: &BrentConfig,
) -> terrain_model::Result<BrentResult> {
    config.check()?;
    let (x1, x2) = bounds;
    if !(x1.is_finite() && x2.is_finite()) {
        return Err(ModelError::config(
            "bounds",
            format!("[{x1}, {x2}]"),
            "must be finite",
        ));
    }
    if x1 > x2 {
        return Err(ModelError::config(
            "bounds",
            format!("[{x1}, {x2}]"),
            "the lower bound exceeds the upper bound",
        ));
    }
    let xatol = config.xatol;
    let maxfun = config.maxiter;
    let mut flag = 0u8;
    let sqrt_eps = 2.2e-16f64.sqrt();
    let golden_mean = 0.5 * (3.0 - 5.0f64.sqrt());
    let (mut a, mut b) = (x1, x2);
    let mut fulc = a + golden_mean * (b - a);
    let (mut nfc, mut xf) = (fulc, fulc);
    let mut rat = 0.0f64;
    let mut e = 0.0f64;
    let mut x = xf;
    let mut fx = f(x);
    let mut num = 1usize;
    let mut fu = f64::INFINITY;

    let mut ffulc = fx;
    let mut fnfc = fx;
    let mut xm = 0.5 * (a + b);
    let mut tol1 = sqrt_eps * xf.abs() + xatol / 3.0;
    let mut tol2 = 2.0 * tol1;

    while (xf - xm).abs() > (tol2 - 0.5 * (b - a)) {
        let mut golden = true;
        // Check for a parabolic fit.
        if e.abs() > tol1 {
            golden = false;
            let mut r = (xf - nfc) * (fx - ffulc);
            let mut q = (xf - fulc) * (fx - fnfc);
            let mut p = (xf - fulc) * q - (xf - nfc) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            r = e;
            e = rat;

            // Is the parabola acceptable?
            if p.abs() < (0.5 * q * r).abs() && p > q * (a - xf) && p < q * (b - xf) {
                rat = (p + 0.0) / q;
                x = xf + rat;
                if (x - a) < tol2 || (b - x) < tol2 {
                    let si = sign_or_one(xm - xf);
                    rat = tol1 * si;
                }
            } else {
                golden = true;
            }
        }
        if golden {
            e = if xf >= xm { a - xf } else { b - xf };
            rat = golden_mean * e;
        }

        let si = sign_or_one(rat);
        // np.maximum propagates NaN.
        let step = if rat.is_nan() {
            f64::NAN
        } else {
            rat.abs().max(tol1)
        };
        x = xf + si * step;
        fu = f(x);
        num += 1;

        if fu <= fx {
            if x >= xf {
                a = xf;
            } else {
                b = xf;
            }
            fulc = nfc;
            ffulc = fnfc;
            nfc = xf;
            fnfc = fx;
            xf = x;
            fx = fu;
        } else {
            if x < xf {
                a = x;
            } else {
                b = x;
            }
            if fu <= fnfc || nfc == xf {
                fulc = nfc;
                ffulc = fnfc;
                nfc = x;
                fnfc = fu;
            } else if fu <= ffulc || fulc == xf || fulc == nfc {
                fulc = x;
                ffulc = fu;
            }
        }

        xm = 0.5 * (a + b);
        tol1 = sqrt_eps * xf.abs() + xatol / 3.0;
        tol2 = 2.0 * tol1;

        if num >= maxfun {
            flag = 1;
            break;
        }
    }
    if xf.is_nan() || fx.is_nan() || fu.is_nan() {
        flag = 2;
    }
    Ok(BrentResult {
        x: xf,
        fun: fx,
        nfev: num,
        status: flag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bounds_and_settings_are_refused() {
        let c = BrentConfig::default();
        assert!(minimize_bounded(|x| x, (1.0, 0.0), &c).is_err());
        assert!(minimize_bounded(|x| x, (f64::NAN, 0.0), &c).is_err());
        let bad = BrentConfig {
            xatol: f64::NAN,
            ..c
        };
        assert!(minimize_bounded(|x| x, (0.0, 1.0), &bad).is_err());
    }
}
