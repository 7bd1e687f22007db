//! One axis type for every 2-D chart: a linear range in axis units (log10 units on a log axis)
//! with round ticks and short labels chosen here, or a list of categories.

use std::ops::Range;

use plotters::coord::ranged1d::{
    KeyPointHint, KeyPointWeight, NoDefaultFormatting, Ranged, ValueFormatter,
};

use crate::style::{decade_label, number_label};

/// A plotters coordinate: axis units mapped linearly to pixels, ticks and labels precomputed.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    labels: Vec<String>,
}

impl Axis {
    /// The range `[lo, hi]` (axis units) exactly, with about `n` ticks.
    pub fn fixed(lo: f64, hi: f64, log: bool, n: usize) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 0.5, lo + 0.5)
        };
        let (ticks, labels) = if log {
            log_ticks(lo, hi, n)
        } else {
            let t = ticks(lo, hi, n);
            let step = if t.len() >= 2 {
                t[1] - t[0]
            } else {
                (hi - lo).abs()
            };
            let labels = t.iter().map(|&v| number_label(v, step)).collect();
            (t, labels)
        };
        Axis {
            lo,
            hi,
            ticks,
            labels,
        }
    }

    /// A range covering every value (axis units) with `pad` of its span added on both sides,
    /// so nothing sits on the frame; constant data gets a unit (or one-decade) range around it.
    /// `None` when there are no values.
    pub fn fit(
        values: impl IntoIterator<Item = f64>,
        log: bool,
        pad: f64,
        n: usize,
    ) -> Option<Axis> {
        let (lo, hi) = min_max(values)?;
        let (lo, hi) = padded(lo, hi, log, pad);
        Some(Axis::fixed(lo, hi, log, n))
    }

    /// Categories at 0, 1, …, n−1 (the range is −0.5 … n−0.5); `reversed` puts the first at the
    /// top of a vertical axis (its position is then n−1−i: see [`Axis::category_pos`]).
    pub fn categories(names: &[String], reversed: bool) -> Axis {
        let n = names.len();
        let ticks = (0..n).map(|i| i as f64).collect();
        let labels = (0..n)
            .map(|i| names[if reversed { n - 1 - i } else { i }].clone())
            .collect();
        Axis {
            lo: -0.5,
            hi: n as f64 - 0.5,
            ticks,
            labels,
        }
    }

    /// The range in axis units.
    pub fn bounds(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    /// Position of category `i` of `n` on a categories axis.
    pub fn category_pos(i: usize, n: usize, reversed: bool) -> f64 {
        if reversed {
            (n - 1 - i) as f64
        } else {
            i as f64
        }
    }
}

/// Smallest and largest finite value.
pub(crate) fn min_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some((lo, hi))
}

/// `[lo, hi]` widened by `pad` of the span on both sides (a constant gets ±10 % of itself, at
/// least ±0.5; on a log axis ±0.5 decade).
pub(crate) fn padded(lo: f64, hi: f64, log: bool, pad: f64) -> (f64, f64) {
    let span = hi - lo;
    if span > 0.0 && span.is_finite() {
        (lo - pad * span, hi + pad * span)
    } else {
        let d = if log { 0.5 } else { (lo.abs() * 0.1).max(0.5) };
        (lo - d, hi + d)
    }
}

/// About `n` round values (steps of 1, 2, 5 × 10^k) inside `[lo, hi]`.
pub(crate) fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let n = n.max(2) as f64;
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE * 1e10);
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= n)
        .unwrap_or(10.0 * mag);
    let first = (lo / step - 1e-9).ceil();
    let last = (hi / step + 1e-9).floor();
    if !(first.is_finite() && last.is_finite()) || last - first > 1000.0 {
        return vec![lo, hi];
    }
    (first as i64..=last as i64)
        .map(|i| {
            let v = i as f64 * step;
            if v.abs() < step * 1e-9 { 0.0 } else { v }
        })
        .collect()
}

/// Ticks of a log axis over `[lo, hi]` in decades: powers of ten (every 1, 2, 5, … decades)
/// when the range holds at least two, otherwise round values placed at their logarithms.
fn log_ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, Vec<String>) {
    let (first, last) = ((lo - 1e-9).ceil(), (hi + 1e-9).floor());
    if last > first {
        let t: Vec<f64> = ticks(lo, hi, n)
            .into_iter()
            .filter(|k| (k - k.round()).abs() < 1e-9)
            .collect();
        let t = if t.len() >= 2 {
            t
        } else {
            (first as i64..=last as i64).map(|k| k as f64).collect()
        };
        if t.len() <= 2 {
            // Few decades: 1, 2, 5 × 10^k, labelled plainly.
            let vals: Vec<f64> = (first as i64 - 1..=last as i64)
                .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k as i32)))
                .filter(|v| (lo..=hi).contains(&v.log10()))
                .collect();
            let labels = vals.iter().map(|&v| number_label(v, v)).collect();
            return (vals.iter().map(|v| v.log10()).collect(), labels);
        }
        let labels = t.iter().map(|&k| decade_label(k.round() as i64)).collect();
        return (t, labels);
    }
    let raw = ticks(10f64.powf(lo), 10f64.powf(hi), n.min(5));
    let step = if raw.len() >= 2 {
        raw[1] - raw[0]
    } else {
        10f64.powf(lo)
    };
    let raw: Vec<f64> = raw.into_iter().filter(|&v| v > 0.0).collect();
    let labels = raw.iter().map(|&v| number_label(v, step)).collect();
    (raw.iter().map(|v| v.log10()).collect(), labels)
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value - self.lo) / (self.hi - self.lo);
        let px = limit.0 as f64 + f * (limit.1 - limit.0) as f64;
        // Far-off values (a clipped line's end) are clamped so pixel arithmetic cannot overflow.
        px.clamp(-1e6, 1e6).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if matches!(hint.weight(), KeyPointWeight::Any) && hint.max_num_points() == 0 {
            return Vec::new();
        }
        let max = hint.max_num_points().max(1);
        let every = self.ticks.len().div_ceil(max).max(1);
        self.ticks.iter().step_by(every).copied().collect()
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    // plotters' 3-D axes call this static form (the default panics): give a plain label.
    fn format(value: &f64) -> String {
        number_label(*value, value.abs() / 100.0)
    }

    fn format_ext(&self, value: &f64) -> String {
        self.ticks
            .iter()
            .position(|t| (t - value).abs() <= 1e-9 * (self.hi - self.lo).abs())
            .map(|i| self.labels[i].clone())
            .unwrap_or_else(|| number_label(*value, (self.hi - self.lo) / 10.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let t = ticks(0.0, 1.0, 5);
        assert_eq!(t, [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let a = Axis::fixed(0.0, 1.0, false, 5);
        assert_eq!(a.labels, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let l = Axis::fixed(-6.2, 0.3, true, 6);
        assert!(l.labels.contains(&"1e-6".to_string()) || l.labels.contains(&"1e-5".to_string()));
        assert!(l.labels.iter().all(|s| s.len() <= 6), "{:?}", l.labels);
    }

    #[test]
    fn padding_covers_constants() {
        assert_eq!(padded(3.0, 3.0, false, 0.05), (2.5, 3.5));
        let (lo, hi) = padded(0.0, 10.0, false, 0.05);
        assert!(lo < 0.0 && hi > 10.0);
    }
}
