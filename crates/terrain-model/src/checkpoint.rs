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

use crate::{ArchSpec, Error, Model, Result};

/// Metadata key holding the architecture spec as JSON.
pub const ARCH_KEY: &str = "terrain.arch";
/// Metadata key holding the checkpoint format version.
pub const FORMAT_KEY: &str = "terrain.format";
/// Current format version.
pub const FORMAT_VERSION: &str = "1";

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
/// an interrupted write never leaves a truncated checkpoint behind.
pub fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("safetensors.partial");
    let contiguous = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    safetensors::serialize_to_file(
        contiguous.iter().map(|(n, t)| (n.as_str(), t)),
        Some(meta),
        &tmp,
    )
    .map_err(|e| Error::Safetensors {
        path: tmp.clone(),
        reason: e.to_string(),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Saves a model with its architecture in the metadata, plus `extra` metadata entries
/// (training configuration, data set, metrics...).
pub fn save(model: &Model, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
    let mut metadata = extra.clone();
    metadata.insert(
        ARCH_KEY.into(),
        serde_json::to_string(model.spec()).expect("specs always serialise"),
    );
    metadata.insert("terrain.arch_compact".into(), model.spec().to_string());
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
    /// The model, with trainable `Var`s.
    pub model: Model,
    /// All `__metadata__` entries of the file.
    pub metadata: BTreeMap<String, String>,
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
        let mut names: Vec<&str> = raw.tensors.keys().map(String::as_str).take(8).collect();
        if raw.tensors.len() > 8 {
            names.push("...");
        }
        return Err(Error::MissingTensor {
            path: path.to_path_buf(),
            name: missing.name.clone(),
            available: if names.is_empty() {
                "no tensors".into()
            } else {
                names.join(", ")
            },
        });
    }
    let dtype = opts.dtype.unwrap_or(match file_dtype {
        Some(DType::F64) => DType::F64,
        _ => DType::F32,
    });
    let model = Model::from_tensors(spec, dtype, &opts.device, tensors, &context)?;
    Ok(Checkpoint {
        model,
        metadata: raw.metadata,
    })
}
