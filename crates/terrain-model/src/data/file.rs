//! Datasets stored as safetensors files.
//!
//! A dataset file holds two tensors:
//! - `x`: inputs, float (f16, bf16, f32 or f64) `[N, ...]`;
//! - `y`: either integer labels (u8, u16, u32, i16, i32, i64) `[N]`, making a classification
//!   task with `classes = max + 1` unless `__metadata__` has `"classes"`; or float targets
//!   `[N]` or `[N, k]`, making a regression task with `k` outputs (or soft labels, when the
//!   metadata's `task` says classification).
//!
//! Optional `__metadata__` keys: `name`, `task` (the JSON of [`Task`]), `classes`,
//! `feature_names` (a JSON list). [`save`] writes all of them, so `save` then [`load`] gives
//! the dataset back. Every error names the file and, where one is at fault, the tensor.

use std::collections::HashMap;
use std::path::Path;

use candle_core::safetensors::Load as _;
use candle_core::{DType, Device};
use safetensors::{Dtype, SafeTensors};

use super::{Dataset, Targets, Task};
use crate::error::{Error, Result};

fn st_error(path: &Path, e: safetensors::SafeTensorError) -> Error {
    match e {
        safetensors::SafeTensorError::IoError(source) => Error::io(path, source),
        other => Error::Safetensors {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}").to_lowercase()
}

/// Loads a dataset from a safetensors file (see the module documentation for the layout).
///
/// Errors: a missing or unreadable file is [`Error::Io`]; a truncated or corrupt one
/// [`Error::Safetensors`]; a missing `x` or `y` [`Error::MissingTensor`]; a wrong dtype
/// [`Error::DtypeMismatch`]; a wrong rank or a row count of `y` different from `x`'s
/// [`Error::ShapeMismatch`]; a negative label or one beyond the metadata's `classes`
/// [`Error::LabelOutOfRange`]; NaN or infinity [`Error::NonFinite`]. All of them name the file.
pub fn load(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| st_error(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| st_error(path, e))?;
    let meta: HashMap<String, String> = meta.metadata().clone().unwrap_or_default();
    let context = path.display().to_string();

    let get = |name: &str| {
        st.tensor(name).map_err(|_| {
            let mut names = st.names();
            names.sort_unstable();
            let shown: Vec<&str> = names.iter().take(10).copied().collect();
            let mut available = if shown.is_empty() {
                "no tensors".to_string()
            } else {
                shown.join(", ")
            };
            if names.len() > shown.len() {
                available.push_str(&format!(", ... ({} in all)", names.len()));
            }
            Error::MissingTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                available,
            }
        })
    };
    let xv = get("x")?;
    let yv = get("y")?;

    if !matches!(
        xv.dtype(),
        Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64
    ) {
        return Err(Error::DtypeMismatch {
            context,
            name: "x".into(),
            expected: "f16, bf16, f32 or f64".into(),
            found: dtype_name(xv.dtype()),
        });
    }
    let n = match xv.shape() {
        [n, _, ..] => *n,
        other => {
            return Err(Error::ShapeMismatch {
                context,
                name: "x".into(),
                expected: vec![other.first().copied().unwrap_or(0), 1],
                found: other.to_vec(),
            });
        }
    };
    if yv.shape().first() != Some(&n) || yv.shape().len() > 2 {
        let mut expected = vec![n];
        if yv.shape().len() == 2 {
            expected.push(yv.shape()[1]);
        }
        return Err(Error::ShapeMismatch {
            context,
            name: "y".into(),
            expected,
            found: yv.shape().to_vec(),
        });
    }

    let meta_task: Option<Task> = match meta.get("task") {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| {
            Error::dataset(
                &context,
                format!("metadata `task` = {s:?} is not a task: {e}"),
            )
        })?),
        None => None,
    };
    let meta_classes: Option<usize> = match meta.get("classes") {
        Some(s) => Some(s.trim().parse().map_err(|_| {
            Error::dataset(
                &context,
                format!("metadata `classes` = {s:?} is not a count"),
            )
        })?),
        None => None,
    };

    let x = xv.load(&Device::Cpu)?;
    let is_int = matches!(
        yv.dtype(),
        Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::I16 | Dtype::I32 | Dtype::I64
    );
    let is_float = matches!(
        yv.dtype(),
        Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64
    );
    let (y, task) = if is_int {
        if yv.shape().len() != 1 {
            return Err(Error::ShapeMismatch {
                context,
                name: "y".into(),
                expected: vec![n],
                found: yv.shape().to_vec(),
            });
        }
        let y = yv.load(&Device::Cpu)?;
        let labels = y.to_dtype(DType::I64)?.to_vec1::<i64>()?;
        let max = labels.iter().copied().max().unwrap_or(0);
        let classes = meta_classes
            .or(match meta_task {
                Some(Task::Classification { classes }) => Some(classes),
                _ => None,
            })
            .unwrap_or((max.max(0) + 1) as usize);
        if let Some((row, &label)) = labels.iter().enumerate().find(|&(_, &l)| l < 0) {
            return Err(Error::LabelOutOfRange {
                name: format!("{context} (tensor y)"),
                label,
                row,
                classes,
            });
        }
        (Targets::Classes(y), Task::Classification { classes })
    } else if is_float {
        let y = yv.load(&Device::Cpu)?;
        let k = if yv.shape().len() == 2 {
            yv.shape()[1]
        } else {
            1
        };
        match meta_task {
            Some(Task::Classification { classes }) if yv.shape().len() == 2 => {
                (Targets::Soft(y), Task::Classification { classes })
            }
            _ => (Targets::Values(y), Task::Regression { outputs: k }),
        }
    } else {
        return Err(Error::DtypeMismatch {
            context,
            name: "y".into(),
            expected: "integer labels (u8, u16, u32, i16, i32, i64) or float targets (f16, bf16, f32, f64)"
                .into(),
            found: dtype_name(yv.dtype()),
        });
    };

    // Validate under the file's name so that every message points at the file.
    let mut d = Dataset::new(context.clone(), x, y, task).map_err(|e| match e {
        Error::NonFinite {
            name, value, index, ..
        } => Error::NonFinite {
            context: context.clone(),
            name,
            value,
            index,
        },
        Error::LabelOutOfRange {
            label,
            row,
            classes,
            ..
        } => Error::LabelOutOfRange {
            name: format!("{context} (tensor y)"),
            label,
            row,
            classes,
        },
        Error::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => Error::ShapeMismatch {
            context: context.clone(),
            name,
            expected,
            found,
        },
        Error::Dataset { reason, .. } => Error::dataset(&context, reason),
        Error::DtypeMismatch {
            name,
            expected,
            found,
            ..
        } => Error::DtypeMismatch {
            context: context.clone(),
            name,
            expected,
            found,
        },
        Error::EmptyDataset { .. } => Error::EmptyDataset {
            name: context.clone(),
        },
        other => other,
    })?;
    d.name = meta.get("name").cloned().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| context.clone())
    });
    if let Some(s) = meta.get("feature_names") {
        let names: Vec<String> = serde_json::from_str(s).map_err(|e| {
            Error::dataset(
                &context,
                format!("metadata `feature_names` is not a JSON list of strings: {e}"),
            )
        })?;
        d = d
            .with_feature_names(names)
            .map_err(|e| Error::dataset(&context, e.to_string()))?;
    }
    Ok(d)
}

/// Writes a dataset as a safetensors file that [`load`] reads back: `x` as f32, `y` as u32
/// (class labels) or f32 (soft labels, regression values), and `__metadata__` with `name`,
/// `task` (JSON), `classes` (classification) and `feature_names` (JSON, when known).
/// Missing parent directories are created; the file is written to a sibling temporary file
/// and renamed into place, so an interrupted save leaves no truncated file.
pub fn save(d: &Dataset, path: &Path) -> Result<()> {
    let x =
        d.x.to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
    let y = match &d.y {
        Targets::Classes(t) => t.to_device(&Device::Cpu)?.to_dtype(DType::U32)?,
        Targets::Soft(t) | Targets::Values(t) => t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
    }
    .contiguous()?;
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("name".to_string(), d.name.clone());
    meta.insert(
        "task".to_string(),
        serde_json::to_string(&d.task).expect("a task serialises"),
    );
    if let Task::Classification { classes } = d.task {
        meta.insert("classes".to_string(), classes.to_string());
    }
    if let Some(names) = &d.feature_names {
        meta.insert(
            "feature_names".to_string(),
            serde_json::to_string(names).expect("strings serialise"),
        );
    }
    crate::checkpoint::write_file(path, &[("x".to_string(), x), ("y".to_string(), y)], &meta)
}
