//! [`ObjectiveSpec`]: every objective of the crate with its hyperparameters, as a serde value and
//! a compact string (`softad:theta=0.5,sigma=1`), validated, and built into a trainer objective.

use serde::{Deserialize, Serialize};
use terrain_model::{Error, Result, train::Objective};

use crate::{
    sam::Sam,
    transform::{Coce, Cvar, Dro, Erm, Flood, IFlood, LossTransform, PerExample, SoftAd, Tilted},
};

/// The objective names, as written in compact forms.
pub const NAMES: &[&str] = &[
    "erm", "flood", "iflood", "softad", "sam", "asam", "tilted", "cvar", "dro", "coce",
];

/// A training objective and its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ObjectiveSpec {
    /// Mean loss.
    #[default]
    Erm,
    /// |mean ℓ − level| + level.
    Flood {
        /// Flood level b ≥ 0.
        level: f64,
    },
    /// mean_i |ℓ_i − θ| + θ.
    Iflood {
        /// Threshold θ ≥ 0.
        theta: f64,
    },
    /// θ + σ²·mean_i ρ((ℓ_i − θ)/σ).
    Softad {
        /// Threshold θ ≥ 0.
        theta: f64,
        /// Scale σ > 0.
        sigma: f64,
    },
    /// Sharpness-aware minimisation.
    Sam {
        /// Radius ρ ≥ 0.
        rho: f64,
    },
    /// Adaptive SAM.
    Asam {
        /// Radius ρ ≥ 0.
        rho: f64,
    },
    /// (1/t)·log mean_i exp(t·ℓ_i).
    Tilted {
        /// Tilt t ≠ 0.
        t: f64,
    },
    /// Mean of the ⌈(1 − α)·n⌉ largest losses.
    Cvar {
        /// Level α ∈ (0, 1).
        alpha: f64,
    },
    /// χ²-DRO.
    Dro {
        /// Radius r ≥ 0.
        radius: f64,
    },
    /// Soft-flooded CVaR (see [`Coce`]).
    Coce {
        /// Flood level τ ≥ 0.
        theta: f64,
        /// CVaR level α ∈ (0, 1).
        alpha: f64,
        /// A fixed θ_c (`None`: minimised, exact CVaR).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        theta_c: Option<f64>,
    },
}

/// Default SAM radius.
pub const SAM_RHO: f64 = 0.05;
/// Default ASAM radius.
pub const ASAM_RHO: f64 = 0.5;
/// Default SoftAD scale.
pub const SOFTAD_SIGMA: f64 = 1.0;
/// Default COCE CVaR level (addro's).
pub const COCE_ALPHA: f64 = 0.5;

impl ObjectiveSpec {
    /// The objective's name (`softad`, `sam`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectiveSpec::Erm => "erm",
            ObjectiveSpec::Flood { .. } => "flood",
            ObjectiveSpec::Iflood { .. } => "iflood",
            ObjectiveSpec::Softad { .. } => "softad",
            ObjectiveSpec::Sam { .. } => "sam",
            ObjectiveSpec::Asam { .. } => "asam",
            ObjectiveSpec::Tilted { .. } => "tilted",
            ObjectiveSpec::Cvar { .. } => "cvar",
            ObjectiveSpec::Dro { .. } => "dro",
            ObjectiveSpec::Coce { .. } => "coce",
        }
    }

    /// The hyperparameter names the objective takes, as in the compact form.
    pub fn settings(kind: &str) -> &'static [&'static str] {
        match kind {
            "flood" => &["level"],
            "iflood" => &["theta"],
            "softad" => &["theta", "sigma"],
            "sam" | "asam" => &["rho"],
            "tilted" => &["t"],
            "cvar" => &["alpha"],
            "dro" => &["radius"],
            "coce" => &["theta", "alpha", "theta_c"],
            _ => &[],
        }
    }

    /// Whether the objective weighs each example's loss (everything but ERM and the SAMs, which
    /// only need the batch mean).
    pub fn per_example(&self) -> bool {
        !matches!(
            self,
            ObjectiveSpec::Erm | ObjectiveSpec::Sam { .. } | ObjectiveSpec::Asam { .. }
        )
    }

    /// The per-example loss level the objective aims at (θ, b or τ), if any.
    pub fn threshold(&self) -> Option<f64> {
        match *self {
            ObjectiveSpec::Flood { level } => Some(level),
            ObjectiveSpec::Iflood { theta } | ObjectiveSpec::Softad { theta, .. } => Some(theta),
            ObjectiveSpec::Coce { theta, .. } => Some(theta),
            _ => None,
        }
    }

    /// Checks every hyperparameter (NaN fails), naming the field and the value.
    pub fn check(&self) -> Result<()> {
        self.transform().map(|_| ())
    }

    /// The per-example transform (`None` for the SAMs), checked.
    fn transform(&self) -> Result<Option<Box<dyn Objective>>> {
        fn boxed<T: LossTransform + 'static>(t: T) -> Result<Option<Box<dyn Objective>>> {
            Ok(Some(Box::new(PerExample::new(t))))
        }
        match *self {
            ObjectiveSpec::Erm => boxed(Erm),
            ObjectiveSpec::Flood { level } => boxed(Flood::new(level)?),
            ObjectiveSpec::Iflood { theta } => boxed(IFlood::new(theta)?),
            ObjectiveSpec::Softad { theta, sigma } => boxed(SoftAd::new(theta, sigma)?),
            ObjectiveSpec::Tilted { t } => boxed(Tilted::new(t)?),
            ObjectiveSpec::Cvar { alpha } => boxed(Cvar::new(alpha)?),
            ObjectiveSpec::Dro { radius } => boxed(Dro::new(radius)?),
            ObjectiveSpec::Coce {
                theta,
                alpha,
                theta_c,
            } => {
                let c = Coce::new(theta, alpha)?;
                match theta_c {
                    Some(v) => boxed(c.with_fixed_theta_c(v)?),
                    None => boxed(c),
                }
            }
            ObjectiveSpec::Sam { rho } => {
                Sam::new(rho)?;
                Ok(None)
            }
            ObjectiveSpec::Asam { rho } => {
                Sam::adaptive(rho)?;
                Ok(None)
            }
        }
    }

    /// The trainer objective, hyperparameters checked.
    pub fn build(&self) -> Result<Box<dyn Objective>> {
        if let Some(t) = self.transform()? {
            return Ok(t);
        }
        Ok(match *self {
            ObjectiveSpec::Asam { rho } => Box::new(Sam::adaptive(rho)?),
            ObjectiveSpec::Sam { rho } => Box::new(Sam::new(rho)?),
            _ => unreachable!("every other objective is a per-example transform"),
        })
    }

    /// Refuses training settings the objective cannot honour: a per-example objective with mixup,
    /// whose batches hold blends of two rows, so no loss of a training example exists to weigh
    /// (only the loss of the mixture); [`Error::InvalidConfig`] on `mixup_alpha`.
    pub fn check_training(&self, training: &terrain_model::train::TrainConfig) -> Result<()> {
        if let Some(a) = training.mixup_alpha
            && self.per_example()
        {
            return Err(Error::config(
                "mixup_alpha",
                a,
                format!(
                    "objective {} weighs the loss of each training example, but mixup trains on \
                     blends of two examples, which have no per-example loss of their own",
                    self.kind()
                ),
            ));
        }
        Ok(())
    }
}

impl std::str::FromStr for ObjectiveSpec {
    type Err = Error;

    /// `NAME[:key=value,...]`: `erm`, `flood:level=B`, `iflood:theta=T`,
    /// `softad:theta=T[,sigma=S]`, `sam[:rho=R]`, `asam[:rho=R]`, `tilted:t=T`, `cvar:alpha=A`,
    /// `dro:radius=R`, `coce:theta=T[,alpha=A][,theta_c=C]`. The result is checked.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, rest) = s.trim().split_once(':').unwrap_or((s.trim(), ""));
        let kind = kind.to_ascii_lowercase();
        if !NAMES.contains(&kind.as_str()) {
            return Err(Error::config(
                "objective",
                s,
                format!("expected one of {}", NAMES.join(", ")),
            ));
        }
        let mut given: Vec<(String, f64)> = Vec::new();
        for kv in rest.split(',').filter(|kv| !kv.trim().is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| Error::config("objective", s, format!("`{kv}` is not key=value")))?;
            let k = k.trim().to_string();
            if !Self::settings(&kind).contains(&k.as_str()) {
                let takes = Self::settings(&kind);
                return Err(Error::config(
                    "objective",
                    s,
                    format!(
                        "`{k}` is not a setting of {kind} ({})",
                        if takes.is_empty() {
                            "it takes none".to_string()
                        } else {
                            format!("it takes {}", takes.join(", "))
                        }
                    ),
                ));
            }
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| Error::config(k.as_str(), v.trim(), "is not a number"))?;
            given.push((k, v));
        }
        let get = |k: &str| given.iter().rev().find(|(n, _)| n == k).map(|(_, v)| *v);
        let need = |k: &str| {
            get(k).ok_or_else(|| Error::config("objective", s, format!("{kind} needs `{k}=...`")))
        };
        let spec = match kind.as_str() {
            "erm" => ObjectiveSpec::Erm,
            "flood" => ObjectiveSpec::Flood {
                level: need("level")?,
            },
            "iflood" => ObjectiveSpec::Iflood {
                theta: need("theta")?,
            },
            "softad" => ObjectiveSpec::Softad {
                theta: need("theta")?,
                sigma: get("sigma").unwrap_or(SOFTAD_SIGMA),
            },
            "sam" => ObjectiveSpec::Sam {
                rho: get("rho").unwrap_or(SAM_RHO),
            },
            "asam" => ObjectiveSpec::Asam {
                rho: get("rho").unwrap_or(ASAM_RHO),
            },
            "tilted" => ObjectiveSpec::Tilted { t: need("t")? },
            "cvar" => ObjectiveSpec::Cvar {
                alpha: need("alpha")?,
            },
            "dro" => ObjectiveSpec::Dro {
                radius: need("radius")?,
            },
            _ => ObjectiveSpec::Coce {
                theta: need("theta")?,
                alpha: get("alpha").unwrap_or(COCE_ALPHA),
                theta_c: get("theta_c"),
            },
        };
        spec.check()?;
        Ok(spec)
    }
}

impl std::fmt::Display for ObjectiveSpec {
    /// The full compact form (the trainer objective's name), which parses back to the same spec.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ObjectiveSpec::Erm => f.write_str("erm"),
            ObjectiveSpec::Flood { level } => write!(f, "flood:level={level}"),
            ObjectiveSpec::Iflood { theta } => write!(f, "iflood:theta={theta}"),
            ObjectiveSpec::Softad { theta, sigma } => {
                write!(f, "softad:theta={theta},sigma={sigma}")
            }
            ObjectiveSpec::Sam { rho } => write!(f, "sam:rho={rho}"),
            ObjectiveSpec::Asam { rho } => write!(f, "asam:rho={rho}"),
            ObjectiveSpec::Tilted { t } => write!(f, "tilted:t={t}"),
            ObjectiveSpec::Cvar { alpha } => write!(f, "cvar:alpha={alpha}"),
            ObjectiveSpec::Dro { radius } => write!(f, "dro:radius={radius}"),
            ObjectiveSpec::Coce {
                theta,
                alpha,
                theta_c,
            } => {
                write!(f, "coce:theta={theta},alpha={alpha}")?;
                if let Some(c) = theta_c {
                    write!(f, ",theta_c={c}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_round_trip_and_match_objective_names() {
        for s in [
            "erm",
            "flood:level=0.1",
            "iflood:theta=0.3",
            "softad:theta=0.5,sigma=1",
            "sam:rho=0.05",
            "asam:rho=0.5",
            "tilted:t=-2",
            "cvar:alpha=0.9",
            "dro:radius=10",
            "coce:theta=0.2,alpha=0.5",
            "coce:theta=0.2,alpha=0.5,theta_c=0",
        ] {
            let spec: ObjectiveSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            assert_eq!(spec.build().unwrap().name(), s);
            assert_eq!(spec.to_string().parse::<ObjectiveSpec>().unwrap(), spec);
        }
        assert_eq!(
            "sam".parse::<ObjectiveSpec>().unwrap(),
            ObjectiveSpec::Sam { rho: SAM_RHO }
        );
        assert_eq!(
            "softad:theta=0.1".parse::<ObjectiveSpec>().unwrap(),
            ObjectiveSpec::Softad {
                theta: 0.1,
                sigma: 1.0
            }
        );
    }

    #[test]
    fn bad_settings_name_field_and_value() {
        for (s, field, value) in [
            ("softad:theta=0.5,sigma=0", "sigma", "0"),
            ("softad:theta=0.5,sigma=-1", "sigma", "-1"),
            ("softad:theta=0.5,sigma=nan", "sigma", "NaN"),
            ("softad:theta=-0.1", "theta", "-0.1"),
            ("sam:rho=-0.1", "rho", "-0.1"),
            ("asam:rho=nan", "rho", "NaN"),
            ("cvar:alpha=1", "cvar_alpha", "1"),
            ("cvar:alpha=0", "cvar_alpha", "0"),
            ("coce:theta=0.1,alpha=1.5", "cvar_alpha", "1.5"),
            ("tilted:t=0", "tilt", "0"),
            ("dro:radius=-1", "dro_radius", "-1"),
            ("flood:level=-1", "flood_level", "-1"),
        ] {
            match s.parse::<ObjectiveSpec>().unwrap_err() {
                Error::InvalidConfig {
                    field: f, value: v, ..
                } => {
                    assert_eq!(f, field, "{s}");
                    assert_eq!(v, value, "{s}");
                }
                e => panic!("{s}: {e}"),
            }
        }
        for (s, needle) in [
            ("sam:theta=0.1", "`theta` is not a setting of sam"),
            ("softad", "needs `theta=...`"),
            ("adamw", "expected one of"),
            ("erm:rho=1", "it takes none"),
        ] {
            let e = s.parse::<ObjectiveSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }
}
