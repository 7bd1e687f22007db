//! Resumable eigenvalue solvers: the state [`lanczos`](crate::eigen::lanczos_with_state) and
//! [`power iteration`](crate::eigen::power_iteration_with_state) emit after every iteration, the
//! [`StateStore`] trait they emit it to, and [`StateFile`], a store that keeps it in one
//! safetensors file written atomically.
//!
//! A state holds everything the solver needs to continue exactly as an uninterrupted run would:
//! for Lanczos the basis vectors, `α`, `β`, the next vector, the restart bookkeeping (where the
//! current block began, the norm estimate) and the products done — the restart vectors are drawn
//! from the seed and the step number, so no generator state is needed; for power iteration the
//! eigenpairs found, the current vector, its iteration count and previous eigenvalue estimate.
//! Vectors are stored in the operator's dtype and scalars in Rust's shortest round-trip decimal
//! form, so a resumed run is bit-identical to an uninterrupted one (on the same device).
//!
//! Each state is tied to settings: the solver's own (method, `top_k`, `max_iter`, `tol`, seed,
//! dimension, dtype) and the caller's (what defines the operator: checkpoint, data, loss,
//! batch size...). A state written with other settings is refused, naming each setting that
//! differs with its saved and current value.
//!
//! Size: a Lanczos state after `m` steps holds `m + 1` vectors of the operator's dimension `p`
//! (`(m + 1)·p·4` bytes in f32); a power-iteration state at most `top_k + 1`. Writing streams one
//! vector at a time (no second copy of the basis in memory) and flushes the file to disk before
//! renaming it into place; reading one holds the file's bytes and the decoded vectors (twice
//! its size, checked against the memory available first).
//!
//! ```
//! use candle_core::{DType, Device};
//! use std::collections::BTreeMap;
//! use terrain_curvature::{DenseOperator, eigen::{self, LanczosConfig}, resume::StateFile};
//!
//! # fn main() -> terrain_curvature::Result<()> {
//! let a = [4.0, 1.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, -5.0];
//! let op = DenseOperator::from_rows(&a, 3, DType::F64, &Device::Cpu)?;
//! let dir = std::env::temp_dir().join(format!("terrain-doc-{}", std::process::id()));
//! let mut settings = BTreeMap::new();
//! settings.insert("operator".to_string(), "the doc example's matrix".to_string());
//! let mut state = StateFile::new(dir.join("lanczos.safetensors"), settings);
//! let top = eigen::lanczos_with_state(&op, &LanczosConfig::default(), &mut state)?;
//! assert!((top.pairs[0].value - (3.5 + 5f64.sqrt() / 2.0)).abs() < 1e-12);
//! assert_eq!(top.resumed_at, None); // a fresh run
//! // A rerun continues from the saved state (here: the one before the last step).
//! let again = eigen::lanczos_with_state(&op, &LanczosConfig::default(), &mut state)?;
//! assert!(again.resumed_at.is_some());
//! assert_eq!(again.pairs[0].value.to_bits(), top.pairs[0].value.to_bits());
//! state.remove()?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use terrain_model::checkpoint;

use crate::{EigenPair, Error, LinearOperator, Result};

/// The state of a Lanczos run after a step that did not end it.
#[derive(Debug, Clone)]
pub struct LanczosSnapshot {
    /// Diagonal of `T` so far (one per step).
    pub alpha: Vec<f64>,
    /// Off-diagonal of `T` so far, one per step (0 where a restart split `T`).
    pub beta: Vec<f64>,
    /// The orthonormal basis, one vector per step.
    pub basis: Vec<Tensor>,
    /// The vector the next step multiplies.
    pub next: Tensor,
    /// The largest `|α|` or `β` seen.
    pub scale: f64,
    /// The step at which the current block (the last restart) began.
    pub block_start: usize,
    /// Products done.
    pub matvecs: usize,
}

/// Where power iteration stands on the eigenpair it is looking for.
#[derive(Debug, Clone)]
pub struct PowerStep {
    /// The current unit vector.
    pub vector: Tensor,
    /// The last eigenvalue estimate `vᵀHv` (the stopping rule compares the next with it).
    pub eigenvalue: Option<f64>,
    /// Power steps done for this eigenpair.
    pub iterations: usize,
}

/// The state of power iteration with deflation after a step.
#[derive(Debug, Clone)]
pub struct PowerSnapshot {
    /// The eigenpairs found so far, in order.
    pub found: Vec<EigenPair>,
    /// The eigenpair in progress (`None` between two eigenpairs).
    pub current: Option<PowerStep>,
    /// Products done, residual checks included.
    pub matvecs: usize,
}

/// A solver's state after an iteration.
#[derive(Debug, Clone)]
pub enum SolverState {
    /// Lanczos with full reorthogonalisation.
    Lanczos(LanczosSnapshot),
    /// Power iteration with deflation.
    Power(PowerSnapshot),
}

impl SolverState {
    /// Products the solver had done when the state was taken.
    pub fn matvecs(&self) -> usize {
        match self {
            SolverState::Lanczos(s) => s.matvecs,
            SolverState::Power(s) => s.matvecs,
        }
    }

    /// `lanczos` or `power`.
    pub fn kind(&self) -> &'static str {
        match self {
            SolverState::Lanczos(_) => "lanczos",
            SolverState::Power(_) => "power",
        }
    }

    /// The vectors the state holds.
    fn vectors(&self) -> Vec<&Tensor> {
        match self {
            SolverState::Lanczos(s) => s.basis.iter().chain([&s.next]).collect(),
            SolverState::Power(s) => s
                .found
                .iter()
                .map(|p| &p.vector)
                .chain(s.current.as_ref().map(|c| &c.vector))
                .collect(),
        }
    }

    /// Moves every vector to `op`'s device and dtype and checks its length.
    pub(crate) fn onto_operator(self, op: &(impl LinearOperator + ?Sized)) -> Result<Self> {
        let fit = |t: Tensor| -> Result<Tensor> {
            let t = t.to_dtype(op.dtype())?.to_device(op.device())?;
            op.check_vector(&t, "a saved solver state")?;
            Ok(t)
        };
        Ok(match self {
            SolverState::Lanczos(s) => SolverState::Lanczos(LanczosSnapshot {
                basis: s.basis.into_iter().map(fit).collect::<Result<_>>()?,
                next: fit(s.next)?,
                ..s
            }),
            SolverState::Power(s) => SolverState::Power(PowerSnapshot {
                found: s
                    .found
                    .into_iter()
                    .map(|p| {
                        Ok(EigenPair {
                            vector: fit(p.vector)?,
                            ..p
                        })
                    })
                    .collect::<Result<_>>()?,
                current: s
                    .current
                    .map(|c| {
                        Ok::<_, Error>(PowerStep {
                            vector: fit(c.vector)?,
                            ..c
                        })
                    })
                    .transpose()?,
                ..s
            }),
        })
    }
}

/// Where a resumable solver keeps its state. `settings` are the solver's own (method, `top_k`,
/// `max_iter`, `tol`, seed, dimension, dtype); a store adds what defines the operator.
pub trait StateStore {
    /// The state to continue from, if there is one; an error when it was written with other
    /// settings or cannot be read.
    fn load(&mut self, settings: &BTreeMap<String, String>) -> Result<Option<SolverState>>;

    /// Keeps `state`, taken after an iteration (a store may skip some). An error stops the
    /// solver with it.
    fn save(&mut self, settings: &BTreeMap<String, String>, state: &SolverState) -> Result<()>;
}

/// A store that keeps nothing: the solvers' plain entry points use it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoState;

impl StateStore for NoState {
    fn load(&mut self, _: &BTreeMap<String, String>) -> Result<Option<SolverState>> {
        Ok(None)
    }

    fn save(&mut self, _: &BTreeMap<String, String>, _: &SolverState) -> Result<()> {
        Ok(())
    }
}

const VERSION_KEY: &str = "terrain.solver_state.version";
const VERSION: &str = "1";
const KIND: &str = "terrain.solver_state.kind";
const SETTINGS: &str = "terrain.solver_state.settings";
const MATVECS: &str = "terrain.solver_state.matvecs";
const ALPHA: &str = "terrain.solver_state.alpha";
const BETA: &str = "terrain.solver_state.beta";
const SCALE: &str = "terrain.solver_state.scale";
const BLOCK_START: &str = "terrain.solver_state.block_start";
const PAIRS: &str = "terrain.solver_state.pairs";
const EIGENVALUE: &str = "terrain.solver_state.eigenvalue";
const ITERATIONS: &str = "terrain.solver_state.iterations";

/// A [`StateStore`] in one safetensors file: the vectors as tensors in the operator's dtype, the
/// scalars and settings in its metadata. Every write goes to a temporary file that is renamed into
/// place, so a kill at any moment leaves either the previous state or the new one, never a torn
/// file; a file that is not a state (or damaged by other means) is an error naming it.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    settings: BTreeMap<String, String>,
    /// At most one write per this interval (the first and every later one once it has passed).
    /// Default zero: a write after every iteration.
    pub min_interval: Duration,
    last_write: Option<Instant>,
    resumed: bool,
}

impl StateFile {
    /// A state file at `path` for an operator described by `settings` (what changes the result
    /// beyond the solver's own settings: the model, data, loss, batch size...).
    pub fn new(path: impl Into<PathBuf>, settings: BTreeMap<String, String>) -> Self {
        StateFile {
            path: path.into(),
            settings,
            min_interval: Duration::ZERO,
            last_write: None,
            resumed: false,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the last [`StateStore::load`] found a state to continue from.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Deletes the file (nothing when it does not exist).
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(terrain_model::Error::io(&self.path, e).into())
            }
            _ => Ok(()),
        }
    }

    /// The settings a state must match: the caller's and the solver's.
    fn all_settings(&self, solver: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut all = self.settings.clone();
        all.extend(solver.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::StateFile {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

/// `x` in Rust's shortest round-trip decimal form (parses back to the same bits).
fn exact(x: f64) -> String {
    x.to_string()
}

fn exact_list(xs: &[f64]) -> String {
    xs.iter().map(|&x| exact(x)).collect::<Vec<_>>().join(",")
}

fn vector_name(prefix: &str, i: usize) -> String {
    format!("{prefix}.{i:09}")
}

impl StateStore for StateFile {
    fn load(&mut self, solver: &BTreeMap<String, String>) -> Result<Option<SolverState>> {
        self.resumed = false;
        if !self.path.exists() {
            return Ok(None);
        }
        // Reading holds the file's bytes and the tensors decoded from them.
        let size = std::fs::metadata(&self.path)
            .map_err(|e| terrain_model::Error::io(&self.path, e))?
            .len();
        crate::MemoryEstimate {
            bytes: size.saturating_mul(2),
            what: format!("reading the solver state {}", self.path.display()),
        }
        .check()?;
        let raw = checkpoint::read_file(&self.path)?;
        let meta = &raw.metadata;
        if meta.get(VERSION_KEY).map(String::as_str) != Some(VERSION) {
            return Err(self.bad("not an eigenvalue-solver state file of this version of terrain"));
        }
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| self.bad(format!("metadata `{key}` is missing")))
        };
        let saved: BTreeMap<String, String> = serde_json::from_str(get(SETTINGS)?)
            .map_err(|e| self.bad(format!("metadata `{SETTINGS}` is malformed: {e}")))?;
        let now = self.all_settings(solver);
        if let Some(e) = terrain_model::error::resume_mismatch(&self.path, &saved, &now) {
            return Err(e.into());
        }
        let number = |key: &str| -> Result<usize> {
            get(key)?
                .parse::<usize>()
                .map_err(|e| self.bad(format!("metadata `{key}` is not a count: {e}")))
        };
        let float = |key: &str, text: &str| -> Result<f64> {
            text.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    self.bad(format!("metadata `{key}`: `{text}` is not a finite number"))
                })
        };
        let list = |key: &str| -> Result<Vec<f64>> {
            let text = get(key)?;
            if text.is_empty() {
                return Ok(Vec::new());
            }
            text.split(',').map(|x| float(key, x)).collect()
        };
        let tensor = |name: String| -> Result<Tensor> {
            let t = raw.tensors.get(&name).cloned().ok_or_else(|| {
                Error::from(terrain_model::Error::MissingTensor {
                    path: self.path.clone(),
                    name: name.clone(),
                    available: format!("{} tensors", raw.tensors.len()),
                })
            })?;
            if t.rank() != 1 {
                return Err(self.bad(format!(
                    "tensor `{name}` has shape {:?}, not a flat vector",
                    t.dims()
                )));
            }
            Ok(t)
        };
        let matvecs = number(MATVECS)?;
        let state = match get(KIND)?.as_str() {
            "lanczos" => {
                let alpha = list(ALPHA)?;
                let beta = list(BETA)?;
                let m = alpha.len();
                let block_start = number(BLOCK_START)?;
                if m == 0 || beta.len() != m || block_start > m {
                    return Err(self.bad(format!(
                        "inconsistent Lanczos state: {m} values of alpha, {} of beta, block start {block_start}",
                        beta.len()
                    )));
                }
                SolverState::Lanczos(LanczosSnapshot {
                    basis: (0..m)
                        .map(|i| tensor(vector_name("basis", i)))
                        .collect::<Result<_>>()?,
                    next: tensor("next".into())?,
                    alpha,
                    beta,
                    scale: float(SCALE, get(SCALE)?)?,
                    block_start,
                    matvecs,
                })
            }
            "power" => {
                let pairs: Vec<SavedPair> = serde_json::from_str(get(PAIRS)?)
                    .map_err(|e| self.bad(format!("metadata `{PAIRS}` is malformed: {e}")))?;
                let found = pairs
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        Ok(EigenPair {
                            value: float(PAIRS, &p.value)?,
                            residual: float(PAIRS, &p.residual)?,
                            iterations: p.iterations,
                            converged: p.converged,
                            vector: tensor(vector_name("found", i))?,
                        })
                    })
                    .collect::<Result<_>>()?;
                let current = match raw.tensors.contains_key("current") {
                    false => None,
                    true => Some(PowerStep {
                        vector: tensor("current".into())?,
                        eigenvalue: match get(EIGENVALUE)?.as_str() {
                            "none" => None,
                            v => Some(float(EIGENVALUE, v)?),
                        },
                        iterations: number(ITERATIONS)?,
                    }),
                };
                SolverState::Power(PowerSnapshot {
                    found,
                    current,
                    matvecs,
                })
            }
            other => return Err(self.bad(format!("unknown solver `{other}`"))),
        };
        if state.kind() != solver.get("solver").map_or("", String::as_str) {
            return Err(self.bad(format!(
                "it holds a {} state, but the solver is {}",
                state.kind(),
                solver.get("solver").map_or("unnamed", String::as_str)
            )));
        }
        tracing::info!(path = %self.path.display(), matvecs, "resuming the eigenvalue solver");
        self.resumed = true;
        Ok(Some(state))
    }

    fn save(&mut self, solver: &BTreeMap<String, String>, state: &SolverState) -> Result<()> {
        if let Some(t) = self.last_write
            && t.elapsed() < self.min_interval
        {
            return Ok(());
        }
        let mut meta = BTreeMap::new();
        meta.insert(VERSION_KEY.to_string(), VERSION.to_string());
        meta.insert(KIND.to_string(), state.kind().to_string());
        meta.insert(
            SETTINGS.to_string(),
            serde_json::to_string(&self.all_settings(solver)).expect("maps serialise"),
        );
        meta.insert(MATVECS.to_string(), state.matvecs().to_string());
        let cpu = |t: &Tensor| t.to_device(&Device::Cpu);
        let mut tensors = Vec::with_capacity(state.vectors().len());
        match state {
            SolverState::Lanczos(s) => {
                meta.insert(ALPHA.into(), exact_list(&s.alpha));
                meta.insert(BETA.into(), exact_list(&s.beta));
                meta.insert(SCALE.into(), exact(s.scale));
                meta.insert(BLOCK_START.into(), s.block_start.to_string());
                for (i, q) in s.basis.iter().enumerate() {
                    tensors.push((vector_name("basis", i), cpu(q)?));
                }
                tensors.push(("next".to_string(), cpu(&s.next)?));
            }
            SolverState::Power(s) => {
                let pairs: Vec<SavedPair> = s
                    .found
                    .iter()
                    .map(|p| SavedPair {
                        value: exact(p.value),
                        residual: exact(p.residual),
                        iterations: p.iterations,
                        converged: p.converged,
                    })
                    .collect();
                meta.insert(
                    PAIRS.into(),
                    serde_json::to_string(&pairs).expect("pairs serialise"),
                );
                for (i, p) in s.found.iter().enumerate() {
                    tensors.push((vector_name("found", i), cpu(&p.vector)?));
                }
                if let Some(c) = &s.current {
                    tensors.push(("current".to_string(), cpu(&c.vector)?));
                    meta.insert(EIGENVALUE.into(), c.eigenvalue.map_or("none".into(), exact));
                    meta.insert(ITERATIONS.into(), c.iterations.to_string());
                }
            }
        }
        write_atomic(&self.path, &tensors, &meta)?;
        self.last_write = Some(Instant::now());
        Ok(())
    }
}

/// Writes `tensors` (f32 or f64, any device) and `metadata` as safetensors to `path`
/// the way terrain-model's [`checkpoint::write_file`] does — the same bytes: tensors in name
/// order, sorted metadata, the header padded to 8 bytes — but streamed one vector at a time, so
/// a Lanczos basis is never held twice in memory, to a temporary file that is flushed to disk
/// (fsync) and renamed into place: a kill or a power cut leaves the old file or the new one.
/// Other dtypes go through [`checkpoint::write_file`]. Every state file of terrain is written so.
pub fn write_atomic(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    use std::io::Write as _;
    if tensors
        .iter()
        .any(|(_, t)| !matches!(t.dtype(), DType::F32 | DType::F64))
    {
        return Ok(checkpoint::write_file(path, tensors, metadata)?);
    }
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let json = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        let entries: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{}:{}", json(k), json(v)))
            .collect();
        header.push_str(&entries.join(","));
        header.push('}');
    }
    let mut offset = 0usize;
    let mut parts = Vec::with_capacity(sorted.len());
    for (name, t) in &sorted {
        let bytes = t.elem_count() * t.dtype().size_in_bytes();
        let dtype = if t.dtype() == DType::F32 {
            "F32"
        } else {
            "F64"
        };
        parts.push(format!(
            "{}:{{\"dtype\":\"{dtype}\",\"shape\":{},\"data_offsets\":[{offset},{}]}}",
            json(name),
            serde_json::to_string(t.dims()).expect("shapes serialise"),
            offset + bytes
        ));
        offset += bytes;
    }
    if !metadata.is_empty() && !parts.is_empty() {
        header.push(',');
    }
    header.push_str(&parts.join(","));
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| terrain_model::Error::io(dir, e))?;
    }
    let tmp = path.with_extension("safetensors.partial");
    let write = || -> std::result::Result<(), WriteError> {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        for (_, t) in &sorted {
            // One vector's bytes at a time.
            let t = t.flatten_all()?;
            let bytes: Vec<u8> = if t.dtype() == DType::F32 {
                t.to_vec1::<f32>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect()
            } else {
                t.to_vec1::<f64>()?
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect()
            };
            out.write_all(&bytes)?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    match write() {
        Ok(()) => Ok(()),
        Err(e) => {
            std::fs::remove_file(&tmp).ok();
            Err(match e {
                WriteError::Io(e) => terrain_model::Error::io(path, e).into(),
                WriteError::Candle(e) => e.into(),
            })
        }
    }
}

enum WriteError {
    Io(std::io::Error),
    Candle(candle_core::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<candle_core::Error> for WriteError {
    fn from(e: candle_core::Error) -> Self {
        WriteError::Candle(e)
    }
}

/// An eigenpair found by power iteration, as the metadata keeps it (numbers exact).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedPair {
    value: String,
    residual: String,
    iterations: usize,
    converged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streamed_file_has_exactly_the_bytes_of_terrain_models_writer() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = Device::Cpu;
        let f32s =
            Tensor::from_vec(vec![1.5f32, -0.0, f32::MIN_POSITIVE, 3.25e7], 4, &cpu).unwrap();
        let f64s = Tensor::from_vec(vec![0.1f64, -2.0, 1e-300], 3, &cpu).unwrap();
        let two_d = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), &cpu).unwrap();
        let tensors = vec![
            ("next".to_string(), f32s.clone()),
            (
                "basis.000000001".to_string(),
                f32s.affine(2.0, 1.0).unwrap(),
            ),
            ("basis.000000000".to_string(), f32s),
            ("found \"quoted\"".to_string(), f64s),
            ("matrix".to_string(), two_d),
        ];
        let mut meta = BTreeMap::new();
        meta.insert("b".to_string(), "two \"words\"\n".to_string());
        meta.insert("a".to_string(), "1,2,3".to_string());
        for meta in [meta, BTreeMap::new()] {
            let (ours, theirs) = (
                dir.path().join("a.safetensors"),
                dir.path().join("b.safetensors"),
            );
            write_atomic(&ours, &tensors, &meta).unwrap();
            checkpoint::write_file(&theirs, &tensors, &meta).unwrap();
            assert_eq!(
                std::fs::read(&ours).unwrap(),
                std::fs::read(&theirs).unwrap()
            );
            assert!(!dir.path().join("a.safetensors.partial").exists());
            let back = checkpoint::read_file(&ours).unwrap();
            assert_eq!(back.metadata, meta);
            assert_eq!(back.tensors.len(), tensors.len());
        }
    }
}
