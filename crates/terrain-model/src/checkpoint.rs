//! Checkpoints: terrain's self-describing safetensors files, and plain PyTorch state dicts.
//!
//! terrain writes every parameter and buffer under its model name and stores the architecture in
//! the safetensors `__metadata__` (key [`ARCH_KEY`], JSON), so `load` needs nothing else. A PyTorch
//! `nn.Sequential` MLP saved with `safetensors.torch.save_file(model.state_dict(), path)` has the
//! same names (`0.weight` `[out, in]`, `0.bias`, `2.weight`, ...) and loads given its spec.
//! Everything read is validated: missing or extra tensors, shapes, dtypes and non-finite values
//! are errors naming the file and the tensor.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use candle_core::{DType, Device, Tensor, safetensors::Load};
use serde::{Deserialize, Serialize};

use crate::{
    ArchSpec, Error, Model, Result, data::Standardizer, loss::Evaluation, run::RunSpec,
    train::EpochReport,
};

/// Every `__metadata__` key terrain writes, in one place.
pub mod keys {
    /// The architecture spec, as JSON.
    pub const ARCH: &str = "terrain.arch";
    /// The architecture spec in its compact form (for people reading the file).
    pub const ARCH_COMPACT: &str = "terrain.arch_compact";
    /// The checkpoint format version.
    pub const FORMAT: &str = "terrain.format";
    /// The whole training recipe ([`RunSpec`](crate::run::RunSpec)), as JSON.
    pub const RUN: &str = "terrain.run";
    /// The training configuration alone, as JSON (also in [`RUN`]; kept for other readers).
    pub const TRAIN_CONFIG: &str = "terrain.train.config";
    /// The training data source (also in [`RUN`]).
    pub const DATA: &str = "terrain.train.data";
    /// Number of training rows.
    pub const TRAIN_ROWS: &str = "terrain.train.rows";
    /// Number of test rows.
    pub const TEST_ROWS: &str = "terrain.test.rows";
    /// The input standardisation the model was trained with (JSON: mean, std, shape).
    pub const STANDARDIZE: &str = "terrain.data.standardize";
    /// The regression-target standardisation the model was trained with (JSON: mean, std, shape).
    pub const STANDARDIZE_TARGETS: &str = "terrain.data.standardize_targets";
    /// Loss and error on the training rows, as JSON.
    pub const EVAL_TRAIN: &str = "terrain.eval.train";
    /// Loss and error on the test rows, as JSON.
    pub const EVAL_TEST: &str = "terrain.eval.test";
    /// Loss and error on the validation rows, as JSON.
    pub const EVAL_VALIDATION: &str = "terrain.eval.validation";
    /// Number of validation rows.
    pub const VALIDATION_ROWS: &str = "terrain.validation.rows";
    /// The training objective's name with its hyperparameters (text).
    pub const OBJECTIVE: &str = "terrain.train.objective";
    /// Per-epoch diagnostics of the training run (JSON array of `EpochReport`).
    pub const EPOCHS: &str = "terrain.train.epochs";
    /// Training-state files: the reports of the epochs done (JSON, without wall times).
    pub const STATE_HISTORY: &str = "terrain.train.history";
    /// Training-state files: epochs done.
    pub const STATE_EPOCHS: &str = "terrain.train.epochs_done";
    /// Training-state files: optimiser steps done.
    pub const STATE_STEPS: &str = "terrain.train.steps";
    /// Training-state files: every setting that shapes the run, flattened (compared on resume).
    pub const STATE_FINGERPRINT: &str = "terrain.train.fingerprint";
}

/// Metadata key holding the architecture spec as JSON.
pub const ARCH_KEY: &str = keys::ARCH;
/// Metadata key holding the checkpoint format version.
pub const FORMAT_KEY: &str = keys::FORMAT;
/// Current format version.
pub const FORMAT_VERSION: &str = "1";

/// What terrain records about how a checkpoint was trained, read from and written to its
/// metadata with typed accessors (no caller handles keys or JSON).
#[derive(Debug, Clone, Default)]
pub struct TrainingRecord {
    /// The training recipe.
    pub run: Option<RunSpec>,
    /// The input standardisation applied before training.
    pub standardizer: Option<Standardizer>,
    /// The regression-target standardisation applied before training (the model predicts
    /// standardised targets).
    pub target_standardizer: Option<Standardizer>,
    /// Loss and error on the training rows.
    pub train: Option<Evaluation>,
    /// Loss and error on the test rows.
    pub test: Option<Evaluation>,
    /// Number of training rows.
    pub train_rows: Option<usize>,
    /// Number of test rows.
    pub test_rows: Option<usize>,
    /// Loss and error on the validation rows.
    pub validation: Option<Evaluation>,
    /// Number of validation rows.
    pub validation_rows: Option<usize>,
    /// The training objective's name (with its hyperparameters, e.g. `softad:theta=0.5,sigma=1`).
    pub objective: Option<String>,
    /// Per-epoch diagnostics of the training run (empty when not recorded). The metadata copy
    /// leaves out the wall times (`seconds` reads back as 0), so checkpoints stay deterministic.
    pub epochs: Vec<EpochReport>,
}

#[derive(Serialize, Deserialize)]
struct StandardizerJson {
    mean: Vec<f32>,
    std: Vec<f32>,
    shape: Vec<usize>,
}

impl TrainingRecord {
    /// The metadata entries of this record (the architecture and format are added by [`save`]).
    pub fn to_metadata(&self) -> Result<BTreeMap<String, String>> {
        let mut m = BTreeMap::new();
        if let Some(run) = &self.run {
            m.insert(keys::RUN.into(), json(run)?);
            m.insert(keys::TRAIN_CONFIG.into(), json(&run.training)?);
            m.insert(keys::DATA.into(), run.data.source.clone());
        }
        for (key, st) in [
            (keys::STANDARDIZE, &self.standardizer),
            (keys::STANDARDIZE_TARGETS, &self.target_standardizer),
        ] {
            if let Some(s) = st {
                let v = StandardizerJson {
                    mean: s.mean.flatten_all()?.to_vec1()?,
                    std: s.std.flatten_all()?.to_vec1()?,
                    shape: s.mean.dims().to_vec(),
                };
                m.insert(key.into(), json(&v)?);
            }
        }
        if let Some(e) = &self.train {
            m.insert(keys::EVAL_TRAIN.into(), json(e)?);
        }
        if let Some(e) = &self.test {
            m.insert(keys::EVAL_TEST.into(), json(e)?);
        }
        if let Some(n) = self.train_rows {
            m.insert(keys::TRAIN_ROWS.into(), n.to_string());
        }
        if let Some(n) = self.test_rows {
            m.insert(keys::TEST_ROWS.into(), n.to_string());
        }
        if let Some(e) = &self.validation {
            m.insert(keys::EVAL_VALIDATION.into(), json(e)?);
        }
        if let Some(n) = self.validation_rows {
            m.insert(keys::VALIDATION_ROWS.into(), n.to_string());
        }
        if let Some(o) = &self.objective {
            m.insert(keys::OBJECTIVE.into(), o.clone());
        }
        if !self.epochs.is_empty() {
            // Without the wall times, so the same run writes the same bytes.
            m.insert(
                keys::EPOCHS.into(),
                crate::train::history_json(&self.epochs),
            );
        }
        Ok(m)
    }

    /// Reads the record from `metadata` of the file at `path` (named in errors). Absent entries
    /// are `None`; present but malformed ones are errors naming the key.
    pub fn from_metadata(metadata: &BTreeMap<String, String>, path: &Path) -> Result<Self> {
        fn get<T: serde::de::DeserializeOwned>(
            m: &BTreeMap<String, String>,
            key: &str,
            path: &Path,
        ) -> Result<Option<T>> {
            m.get(key)
                .map(|v| {
                    serde_json::from_str(v).map_err(|e| Error::Safetensors {
                        path: path.to_path_buf(),
                        reason: format!("metadata `{key}` is malformed: {e}"),
                    })
                })
                .transpose()
        }
        let standardizer = |key: &str| -> Result<Option<Standardizer>> {
            let Some(s) = get::<StandardizerJson>(metadata, key, path)? else {
                return Ok(None);
            };
            let n: usize = s.shape.iter().product();
            if s.mean.len() != n
                || s.std.len() != n
                || s.std.iter().any(|v| v.is_nan() || *v <= 0.0)
            {
                return Err(Error::Safetensors {
                    path: path.to_path_buf(),
                    reason: format!(
                        "metadata `{key}` is malformed: {} means and {} standard deviations \
                         (all > 0 required) for shape {:?}",
                        s.mean.len(),
                        s.std.len(),
                        s.shape
                    ),
                });
            }
            Ok(Some(Standardizer {
                mean: Tensor::from_vec(s.mean, s.shape.as_slice(), &Device::Cpu)?,
                std: Tensor::from_vec(s.std, s.shape.as_slice(), &Device::Cpu)?,
            }))
        };
        Ok(TrainingRecord {
            run: get(metadata, keys::RUN, path)?,
            standardizer: standardizer(keys::STANDARDIZE)?,
            target_standardizer: standardizer(keys::STANDARDIZE_TARGETS)?,
            train: get(metadata, keys::EVAL_TRAIN, path)?,
            test: get(metadata, keys::EVAL_TEST, path)?,
            train_rows: get(metadata, keys::TRAIN_ROWS, path)?,
            test_rows: get(metadata, keys::TEST_ROWS, path)?,
            validation: get(metadata, keys::EVAL_VALIDATION, path)?,
            validation_rows: get(metadata, keys::VALIDATION_ROWS, path)?,
            objective: metadata.get(keys::OBJECTIVE).cloned(),
            epochs: get(metadata, keys::EPOCHS, path)?.unwrap_or_default(),
        })
    }
}

/// `value` as JSON text (for metadata entries and the safetensors header).
fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::config("metadata", "value", e.to_string()))
}

/// The raw contents of a safetensors file: metadata and tensors (on the CPU, file order by name).
#[derive(Debug, Clone)]
pub struct RawFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// `__metadata__` entries (empty when the file has none).
    pub metadata: BTreeMap<String, String>,
    /// Tensors by name, sorted by name.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Reads any safetensors file, mapping every failure to an error that names the file.
pub fn read_file(path: &Path) -> Result<RawFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = view
            .load(&Device::Cpu)
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, t);
    }
    Ok(RawFile {
        path: path.to_path_buf(),
        metadata,
        tensors,
    })
}

/// Writes `tensors` and `metadata` to `path` atomically (a temporary file renamed into place), so
/// an interrupted write never leaves a truncated checkpoint behind, and a failed one leaves no
/// temporary file.
///
/// The bytes are deterministic: tensors in name order, the header's keys (metadata included) in
/// sorted order, so the same run gives the same file. The file gets the usual permissions (the
/// process's umask applied to 0666), like any file the user creates.
pub fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let bytes = serialize(tensors, metadata)?;
    let tmp = path.with_extension("safetensors.partial");
    let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        std::fs::remove_file(&tmp).ok();
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// The safetensors encoding of `tensors` and `metadata`, with a deterministic header: tensors in
/// name order, data packed in that order, every JSON object's keys sorted, the header padded with
/// spaces to a multiple of 8 bytes (as the reference implementation does).
fn serialize(tensors: &[(String, Tensor)], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    use safetensors::View;
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::config("tensor", &w[0].0, "is named twice"));
    }
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        let entries: Vec<String> = metadata
            .iter()
            .map(|(k, v)| Ok(format!("{}:{}", json(k)?, json(v)?)))
            .collect::<Result<_>>()?;
        header.push_str(&entries.join(","));
        header.push('}');
    }
    let mut data = Vec::new();
    let mut parts = Vec::with_capacity(sorted.len());
    for (name, t) in sorted {
        let t = t.to_device(&Device::Cpu)?.contiguous()?;
        let bytes = View::data(&t);
        let start = data.len();
        data.extend_from_slice(&bytes);
        parts.push(format!(
            "{}:{{\"dtype\":{},\"shape\":{},\"data_offsets\":[{start},{}]}}",
            json(name)?,
            json(&View::dtype(&t))?,
            json(&t.dims())?,
            data.len()
        ));
    }
    if !metadata.is_empty() && !parts.is_empty() {
        header.push(',');
    }
    header.push_str(&parts.join(","));
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// Saves a model with its architecture in the metadata, plus `extra` metadata entries
/// (training configuration, data set, metrics...).
pub fn save(model: &Model, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
    let mut metadata = extra.clone();
    metadata.insert(
        ARCH_KEY.into(),
        serde_json::to_string(model.spec()).expect("specs always serialise"),
    );
    metadata.insert(keys::ARCH_COMPACT.into(), model.spec().to_string());
    metadata.insert(FORMAT_KEY.into(), FORMAT_VERSION.into());
    let tensors: Vec<(String, Tensor)> = model
        .params()
        .iter()
        .chain(model.buffers())
        .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
        .collect();
    write_file(path, &tensors, &metadata)
}

/// How to load a checkpoint.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Architecture to use; required for files without terrain metadata (PyTorch state dicts).
    /// When the file has one too, the two must agree.
    pub arch: Option<ArchSpec>,
    /// Dtype of the loaded model; `None` keeps the file's float type (F32 for half types).
    pub dtype: Option<DType>,
    /// Device to load onto.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            arch: None,
            dtype: None,
            device: Device::Cpu,
        }
    }
}

/// A loaded checkpoint: the model and the file's metadata.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Where it was read from.
    pub path: PathBuf,
    /// The model, with trainable `Var`s.
    pub model: Model,
    /// All `__metadata__` entries of the file.
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// How the checkpoint was trained, as far as its metadata says (typed).
    pub fn record(&self) -> Result<TrainingRecord> {
        TrainingRecord::from_metadata(&self.metadata, &self.path)
    }

    /// The input standardisation the model was trained with, if any.
    pub fn standardizer(&self) -> Result<Option<Standardizer>> {
        Ok(self.record()?.standardizer)
    }
}

/// The architecture stored in a file's metadata, if any.
pub fn stored_arch(raw: &RawFile) -> Result<Option<ArchSpec>> {
    raw.metadata
        .get(ARCH_KEY)
        .map(|json| {
            json.parse::<ArchSpec>().map_err(|e| Error::Safetensors {
                path: raw.path.clone(),
                reason: format!("metadata `{ARCH_KEY}` is not a valid architecture: {e}"),
            })
        })
        .transpose()
}

/// Loads a terrain checkpoint or a PyTorch state dict (see the module docs).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Checkpoint> {
    let raw = read_file(path)?;
    if let Some(v) = raw.metadata.get(FORMAT_KEY)
        && v != FORMAT_VERSION
    {
        return Err(Error::Safetensors {
            path: path.to_path_buf(),
            reason: format!(
                "checkpoint format `{v}` (metadata `{FORMAT_KEY}`) is not one this version of \
                 terrain reads (format {FORMAT_VERSION}); it was written by another version"
            ),
        });
    }
    let stored = stored_arch(&raw)?;
    let spec = match (&opts.arch, stored) {
        (Some(given), Some(stored)) if given != &stored => {
            return Err(Error::Spec {
                spec: given.to_string(),
                reason: format!(
                    "{} was saved with architecture {stored}, which differs",
                    path.display()
                ),
            });
        }
        (Some(given), _) => given.clone(),
        (None, Some(stored)) => stored,
        (None, None) => {
            return Err(Error::MissingArchitecture {
                path: path.to_path_buf(),
            });
        }
    };
    let context = path.display().to_string();
    let slots = spec.tensor_slots();
    let mut tensors = HashMap::new();
    let mut file_dtype = None;
    for (name, t) in &raw.tensors {
        if !slots.iter().any(|s| &s.name == name) {
            // PyTorch's BatchNorm counter carries no information terrain uses.
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            return Err(Error::UnexpectedTensor {
                path: path.to_path_buf(),
                name: name.clone(),
                arch: spec.to_string(),
            });
        }
        if !t.dtype().is_float() {
            return Err(Error::DtypeMismatch {
                context: context.clone(),
                name: name.clone(),
                expected: "a float type".into(),
                found: format!("{:?}", t.dtype()),
            });
        }
        file_dtype.get_or_insert(t.dtype());
        tensors.insert(name.clone(), t.clone());
    }
    if let Some(missing) = slots.iter().find(|s| !tensors.contains_key(&s.name)) {
        let names: Vec<&String> = raw.tensors.keys().collect();
        return Err(Error::MissingTensor {
            path: path.to_path_buf(),
            name: missing.name.clone(),
            available: crate::error::name_list(&names),
        });
    }
    let dtype = opts.dtype.unwrap_or(match file_dtype {
        Some(DType::F64) => DType::F64,
        _ => DType::F32,
    });
    let model = Model::from_tensors(spec, dtype, &opts.device, tensors, &context)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        model,
        metadata: raw.metadata,
    })
}
