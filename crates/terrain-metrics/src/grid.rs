//! Grid axes of loss surfaces: `MIN:MAX:POINTS` (the loss-landscape code's `--x=-1:1:51`).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One axis of a surface grid: `points` evenly spaced values from `min` to `max` inclusive.
///
/// ```
/// use terrain_metrics::GridAxis;
/// let a: GridAxis = "-1:1:5".parse().unwrap();
/// assert_eq!(a.values(), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
/// assert_eq!(a.to_string(), "-1:1:5");
/// assert!("1:-1:0".parse::<GridAxis>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridAxis {
    /// The first value.
    pub min: f64,
    /// The last value.
    pub max: f64,
    /// How many values (at least 1; with 1, only `min`, and `max` must equal it).
    pub points: usize,
}

impl GridAxis {
    /// `points` values from `min` to `max`, checked.
    pub fn new(min: f64, max: f64, points: usize) -> Result<Self> {
        let a = GridAxis { min, max, points };
        a.check("grid")?;
        Ok(a)
    }

    /// Checks the axis; `field` names it in errors (`x`, `y`).
    pub fn check(&self, field: &str) -> Result<()> {
        self.check_as(field, &self.to_string())
    }

    fn check_as(&self, field: &str, text: &str) -> Result<()> {
        let bad = |reason: &str| Err(Error::config(field, text, reason));
        if !(self.min.is_finite() && self.max.is_finite()) {
            return bad("the ends must be finite numbers");
        }
        if self.points == 0 {
            return bad("needs at least 1 point (MIN:MAX:POINTS)");
        }
        if terrain_model::config::count(field, self.points).is_err() {
            return bad("too many points");
        }
        if self.points == 1 && self.min != self.max {
            return bad("a 1-point axis must have MIN = MAX");
        }
        if self.points > 1 && self.min >= self.max {
            return bad("MIN must be smaller than MAX");
        }
        Ok(())
    }

    /// The values, `min` first and `max` last.
    pub fn values(&self) -> Vec<f64> {
        if self.points <= 1 {
            return vec![self.min; self.points];
        }
        let step = (self.max - self.min) / (self.points - 1) as f64;
        (0..self.points)
            .map(|i| {
                if i + 1 == self.points {
                    self.max
                } else {
                    self.min + step * i as f64
                }
            })
            .collect()
    }
}

impl std::str::FromStr for GridAxis {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = |reason: String| Error::config("grid", s, reason);
        if parts.len() != 3 {
            return Err(bad("expected MIN:MAX:POINTS, e.g. -1:1:51".into()));
        }
        let num = |p: &str, what: &str| -> Result<f64> {
            p.trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("{what} `{p}` is not a number")))
        };
        let points = parts[2]
            .trim()
            .parse::<usize>()
            .map_err(|_| bad(format!("POINTS `{}` is not a whole number", parts[2])))?;
        let a = GridAxis {
            min: num(parts[0], "MIN")?,
            max: num(parts[1], "MAX")?,
            points,
        };
        a.check_as("grid", s)?;
        Ok(a)
    }
}

impl std::fmt::Display for GridAxis {
    /// `MIN:MAX:POINTS`, which parses back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.min, self.max, self.points)
    }
}
