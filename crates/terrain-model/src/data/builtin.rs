//! Small real datasets shipped inside the crate (no network): UCI handwritten digits, iris,
//! breast cancer Wisconsin, diabetes and Boston housing.
//!
//! The data files (`crates/terrain-model/data/*.xy`) come from the smartcore 0.7.0 crate
//! (Apache-2.0); see `data/README.md` there for the original sources. Their format is
//! `[u64 LE n_features][u64 LE n_samples][f32 LE X, row-major][f32 LE y]`.
//!
//! | name | rows × features | task |
//! |---|---|---|
//! | `digits` | 1797 × 64 (8×8 images, scaled to [0, 1]) | 10 classes |
//! | `iris` | 150 × 4 | 3 classes |
//! | `breast-cancer` | 569 × 30 | 2 classes (0 malignant, 1 benign) |
//! | `diabetes` | 442 × 10 (already centred and scaled) | regression, 1 output |
//! | `boston` | 506 × 13 | regression (median price, k$), 1 output |

use candle_core::{Device, Tensor};

use super::{Dataset, Targets, Task};
use crate::error::{Error, Result};

/// The built-in dataset names.
pub const NAMES: &[&str] = &["digits", "iris", "breast-cancer", "diabetes", "boston"];

const DIGITS: &[u8] = include_bytes!("../../data/digits.xy");
const IRIS: &[u8] = include_bytes!("../../data/iris.xy");
const BREAST_CANCER: &[u8] = include_bytes!("../../data/breast_cancer.xy");
const DIABETES: &[u8] = include_bytes!("../../data/diabetes.xy");
const BOSTON: &[u8] = include_bytes!("../../data/boston.xy");

const IRIS_FEATURES: [&str; 4] = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
];

const BREAST_CANCER_FEATURES: [&str; 30] = [
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "mean compactness",
    "mean concavity",
    "mean concave points",
    "mean symmetry",
    "mean fractal dimension",
    "radius error",
    "texture error",
    "perimeter error",
    "area error",
    "smoothness error",
    "compactness error",
    "concavity error",
    "concave points error",
    "symmetry error",
    "fractal dimension error",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
    "worst compactness",
    "worst concavity",
    "worst concave points",
    "worst symmetry",
    "worst fractal dimension",
];

const DIABETES_FEATURES: [&str; 10] = [
    "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
];

const BOSTON_FEATURES: [&str; 13] = [
    "CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT",
];

/// A parsed `.xy` file: features (row-major), targets, and the shape.
#[derive(Debug, Clone)]
pub struct RawXy {
    /// Features per row.
    pub n_features: usize,
    /// Rows.
    pub n_samples: usize,
    /// `n_samples * n_features` values, row-major.
    pub x: Vec<f32>,
    /// `n_samples` targets.
    pub y: Vec<f32>,
}

/// Parses the smartcore `.xy` format, checking the byte count against the header.
pub fn parse_xy(name: &str, bytes: &[u8]) -> Result<RawXy> {
    let bad = |reason: String| Error::dataset(name, format!("corrupt .xy data: {reason}"));
    if bytes.len() < 16 {
        return Err(bad(format!(
            "{} bytes, shorter than the 16-byte header",
            bytes.len()
        )));
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let (n_features, n_samples) = (word(0), word(1));
    let expected = n_samples
        .checked_mul(n_features)
        .and_then(|v| v.checked_add(n_samples))
        .and_then(|v| v.checked_mul(4))
        .and_then(|v| v.checked_add(16));
    if expected != Some(bytes.len() as u64) {
        return Err(bad(format!(
            "header says {n_samples} rows × {n_features} features ({} bytes), but there are {} bytes",
            expected.map_or("overflowing".to_string(), |e| e.to_string()),
            bytes.len()
        )));
    }
    let (n_features, n_samples) = (n_features as usize, n_samples as usize);
    let floats: Vec<f32> = bytes[16..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (x, y) = floats.split_at(n_samples * n_features);
    Ok(RawXy {
        n_features,
        n_samples,
        x: x.to_vec(),
        y: y.to_vec(),
    })
}

fn labels(name: &str, y: &[f32]) -> Result<Vec<u32>> {
    y.iter()
        .enumerate()
        .map(|(row, &v)| {
            if v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f32 {
                Ok(v as u32)
            } else {
                Err(Error::dataset(
                    name,
                    format!("target {v} at row {row} is not a class label"),
                ))
            }
        })
        .collect()
}

fn build(
    name: &str,
    bytes: &[u8],
    task: Task,
    x_scale: f32,
    feature_names: Vec<String>,
) -> Result<Dataset> {
    let raw = parse_xy(name, bytes)?;
    if raw.n_features != feature_names.len() {
        return Err(Error::dataset(
            name,
            format!(
                "expected {} features, the data has {}",
                feature_names.len(),
                raw.n_features
            ),
        ));
    }
    let x: Vec<f32> = raw.x.iter().map(|v| v * x_scale).collect();
    let x = Tensor::from_vec(x, (raw.n_samples, raw.n_features), &Device::Cpu)?;
    let y = match task {
        Task::Classification { .. } => Targets::Classes(Tensor::from_vec(
            labels(name, &raw.y)?,
            raw.n_samples,
            &Device::Cpu,
        )?),
        Task::Regression { .. } => {
            Targets::Values(Tensor::from_vec(raw.y, (raw.n_samples, 1), &Device::Cpu)?)
        }
    };
    Dataset::new(name, x, y, task)?.with_feature_names(feature_names)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Loads a built-in dataset by name (see [`NAMES`]; case-insensitive, `_` and `-` alike).
///
/// - `digits`: x f32 `[1797, 64]`, the raw 0..16 pixel counts scaled by 1/16 into [0, 1],
///   10 classes; feature names `pixel_r_c` (row, column of the 8×8 image). Use
///   [`Dataset::reshape_inputs`] with `[1, 8, 8]` for a CNN.
/// - `iris`: `[150, 4]`, 3 classes. `breast-cancer`: `[569, 30]`, 2 classes.
/// - `diabetes`: `[442, 10]`, `boston`: `[506, 13]`, both `Regression { outputs: 1 }`.
///
/// Features other than digits' are raw (unscaled): standardise with [`Dataset::standardizer`].
pub fn load(name: &str) -> Result<Dataset> {
    let norm = super::normalise_name(name);
    match norm.as_str() {
        "digits" => {
            let features = (0..8)
                .flat_map(|r| (0..8).map(move |c| format!("pixel_{r}_{c}")))
                .collect();
            build(
                "digits",
                DIGITS,
                Task::Classification { classes: 10 },
                1.0 / 16.0,
                features,
            )
        }
        "iris" => build(
            "iris",
            IRIS,
            Task::Classification { classes: 3 },
            1.0,
            names(&IRIS_FEATURES),
        ),
        "breast-cancer" => build(
            "breast-cancer",
            BREAST_CANCER,
            Task::Classification { classes: 2 },
            1.0,
            names(&BREAST_CANCER_FEATURES),
        ),
        "diabetes" => build(
            "diabetes",
            DIABETES,
            Task::Regression { outputs: 1 },
            1.0,
            names(&DIABETES_FEATURES),
        ),
        "boston" => build(
            "boston",
            BOSTON,
            Task::Regression { outputs: 1 },
            1.0,
            names(&BOSTON_FEATURES),
        ),
        _ => Err(Error::dataset(
            name,
            format!("unknown built-in dataset; known: {}", NAMES.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_xy_rejects_short_and_mismatched_data() {
        assert!(matches!(
            parse_xy("t", &[0u8; 8]),
            Err(Error::Dataset { .. })
        ));
        let mut b = Vec::new();
        b.extend(2u64.to_le_bytes());
        b.extend(3u64.to_le_bytes());
        b.extend([0u8; 4 * 8]); // 9 floats needed, 8 given
        let err = parse_xy("t", &b).unwrap_err().to_string();
        assert!(err.contains("3 rows × 2 features"), "{err}");
        b.extend([0u8; 4]);
        let raw = parse_xy("t", &b).unwrap();
        assert_eq!(
            (raw.n_samples, raw.n_features, raw.x.len(), raw.y.len()),
            (3, 2, 6, 3)
        );
        // A header whose size overflows is an error, not a panic.
        let mut huge = Vec::new();
        huge.extend(u64::MAX.to_le_bytes());
        huge.extend(u64::MAX.to_le_bytes());
        assert!(parse_xy("t", &huge).is_err());
    }

    #[test]
    fn non_integer_labels_are_rejected() {
        assert!(labels("t", &[0.0, 1.5]).is_err());
        assert!(labels("t", &[-1.0]).is_err());
        assert_eq!(labels("t", &[0.0, 2.0]).unwrap(), vec![0, 2]);
    }
}
