//! The one experiment runner of terrain: enumerate a [`Space`]'s configurations, train each
//! through [`terrain_model::run::RunSpec`] with N workers, shard them for SLURM arrays or
//! Kubernetes indexed jobs, write every finished configuration atomically, resume after a crash,
//! and merge the shards.
//!
//! A sweep directory holds:
//! - `sweep.json`: the space, the data source and their fingerprint (a rerun or another shard with
//!   a different space or data is refused);
//! - `pieces/config-NNNNNN.json`: one finished configuration's rows, written to a temporary file
//!   and renamed into place, so a piece is either complete or absent (a rerun skips it);
//! - `shard-I-of-N.parquet`: a finished shard's rows;
//! - `sweep.parquet`: every row, written by [`merge`] (at once for an unsharded sweep).
//!
//! Rows: one per configuration and listed epoch, with the grid hyperparameters, `subset`,
//! `epochs`, the seed, `status` (`ok` or `failed`) and its `reason`, train / validation / test
//! loss and error at that epoch (evaluated in eval mode at the end of the epoch), the wall time
//! since the configuration started and the sweep's fingerprint. Everything but the wall time is
//! the same however the sweep was sharded, parallelised or interrupted.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Instant,
};

use serde::{Deserialize, Serialize};
use terrain_model::{progress::Progress, run::RunOptions, train::TrainEvent};
use terrain_report::{Cell, Table, record::Record};

use crate::{
    Error, Result,
    space::{Configuration, HpValue, Kind, Space},
    table::{RawTable, Value},
};

/// Which part of a sweep this process runs: configurations whose id ≡ `index` (mod `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based shard number.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Checks `index < count` and `count ≥ 1`.
    pub fn check(&self) -> terrain_model::Result<()> {
        terrain_model::config::count("shard count", self.count)?;
        if self.index >= self.count {
            return Err(terrain_model::Error::config(
                "shard",
                self,
                format!("the index must be below the count {}", self.count),
            ));
        }
        Ok(())
    }

    /// The shard a scheduler assigned through environment variables (`var` looks them up):
    /// SLURM job arrays (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN`, of
    /// `SLURM_ARRAY_TASK_COUNT`) or Kubernetes indexed jobs (`JOB_COMPLETION_INDEX`, of `count`,
    /// which such a job does not expose itself). `None` when neither is set.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        count: Option<usize>,
    ) -> terrain_model::Result<Option<Shard>> {
        let int = |name: &str| -> terrain_model::Result<Option<usize>> {
            var(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        terrain_model::Error::config(name, &v, "must be a non-negative integer")
                    })
                })
                .transpose()
        };
        let shard = if let Some(id) = int("SLURM_ARRAY_TASK_ID")? {
            let min = int("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let n = match (int("SLURM_ARRAY_TASK_COUNT")?, count) {
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(terrain_model::Error::config(
                        "SLURM_ARRAY_TASK_COUNT",
                        "unset",
                        "needed with SLURM_ARRAY_TASK_ID (or give the shard count)",
                    ));
                }
            };
            Shard {
                index: id.checked_sub(min).ok_or_else(|| {
                    terrain_model::Error::config(
                        "SLURM_ARRAY_TASK_ID",
                        id,
                        format!("is below SLURM_ARRAY_TASK_MIN {min}"),
                    )
                })?,
                count: n,
            }
        } else if let Some(i) = int("JOB_COMPLETION_INDEX")? {
            let Some(n) = count else {
                return Err(terrain_model::Error::config(
                    "shard count",
                    "unset",
                    "a Kubernetes indexed job (JOB_COMPLETION_INDEX) needs the shard count given",
                ));
            };
            Shard { index: i, count: n }
        } else {
            return Ok(None);
        };
        shard.check()?;
        Ok(Some(shard))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = terrain_model::Error;
    /// `I/N`: shard I (0-based) of N.
    fn from_str(s: &str) -> terrain_model::Result<Self> {
        let bad = || terrain_model::Error::config("shard", s, "expected I/N with 0 ≤ I < N");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let shard = Shard {
            index: i.trim().parse().map_err(|_| bad())?,
            count: n.trim().parse().map_err(|_| bad())?,
        };
        shard.check().map_err(|_| bad())?;
        Ok(shard)
    }
}

/// How a sweep runs (none of it changes a row but the wall time).
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Configurations trained at once (each on one thread).
    pub workers: usize,
    /// The part of the sweep to run.
    pub shard: Shard,
    /// Directory of fetched hub data sets.
    pub data_dir: Option<PathBuf>,
    /// Where progress goes (one step per configuration).
    pub progress: Progress,
    /// Keep each configuration's trained model as `checkpoints/config-NNNNNN.safetensors` (with
    /// its training record), written before the configuration counts as finished.
    pub keep_checkpoints: bool,
    /// Compute device of the training (default: CPU).
    pub device: Option<candle_core::Device>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            workers: 1,
            shard: Shard::default(),
            data_dir: None,
            progress: Progress::hidden(),
            keep_checkpoints: false,
            device: None,
        }
    }
}

/// What a sweep directory was started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Fingerprint of the space and the data source.
    pub fingerprint: String,
    /// The data source.
    pub data: String,
    /// The space.
    pub space: Space,
    /// Number of configurations.
    pub configurations: usize,
}

impl Record for Manifest {
    const KIND: &'static str = "terrain-sweep";
    const SCHEMA_VERSION: u32 = 1;
}

/// One row: a configuration at one listed epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Configuration id.
    pub config: usize,
    /// Grid levels, in the space's grid order.
    pub values: Vec<HpValue>,
    /// Training-set fraction.
    pub subset: f64,
    /// Epoch the row is read off at.
    pub epochs: usize,
    /// The configuration's seed.
    pub seed: u64,
    /// `ok` or `failed`.
    pub status: String,
    /// Why it failed (empty when it did not).
    pub reason: String,
    /// Training rows: mean loss (eval mode, end of the epoch).
    pub train_loss: Option<f64>,
    /// Training rows: error rate (classification).
    pub train_error: Option<f64>,
    /// Validation rows: mean loss.
    pub validation_loss: Option<f64>,
    /// Validation rows: error rate.
    pub validation_error: Option<f64>,
    /// Test rows: mean loss.
    pub test_loss: Option<f64>,
    /// Test rows: error rate.
    pub test_error: Option<f64>,
    /// Wall time since the configuration started, in seconds.
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Piece {
    fingerprint: String,
    config: usize,
    rows: Vec<Row>,
}

impl Record for Piece {
    const KIND: &'static str = "terrain-sweep-piece";
    const SCHEMA_VERSION: u32 = 1;
}

/// A configuration that failed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Configuration id.
    pub config: usize,
    /// Its grid point, `name=value,...`.
    pub values: String,
    /// Why.
    pub reason: String,
}

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Configurations of the whole space.
    pub configurations: usize,
    /// The shard run, `I/N`.
    pub shard: String,
    /// Configurations in this shard.
    pub in_shard: usize,
    /// Of those, finished before this run (resumed).
    pub already_done: usize,
    /// Trained by this run.
    pub trained: usize,
    /// Failed configurations of this shard (this run's and earlier ones').
    pub failed: Vec<Failure>,
    /// Workers.
    pub workers: usize,
    /// Wall time of this run, in seconds.
    pub seconds: f64,
    /// Configurations trained per hour by this run.
    pub configs_per_hour: Option<f64>,
    /// The shard's table.
    pub shard_file: PathBuf,
    /// The merged table, when this run completed the sweep (an unsharded sweep).
    pub merged: Option<PathBuf>,
}

/// The fixed columns of a sweep table besides the grid hyperparameters.
const COLUMNS: [&str; 13] = [
    "subset",
    "epochs",
    "seed",
    "status",
    "reason",
    "train_loss",
    "train_error",
    "validation_loss",
    "validation_error",
    "test_loss",
    "test_error",
    "seconds",
    "sweep",
];

/// Every column of a sweep's table: `config`, the grid hyperparameters, then [`COLUMNS`].
pub fn columns(space: &Space) -> Vec<String> {
    std::iter::once("config".to_string())
        .chain(space.grid.iter().map(|(k, _)| k.clone()))
        .chain(COLUMNS.iter().map(|c| c.to_string()))
        .collect()
}

fn sweep_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Sweep {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn piece_path(dir: &Path, id: usize) -> PathBuf {
    dir.join("pieces").join(format!("config-{id:06}.json"))
}

/// The shard file of `shard`.
pub fn shard_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(format!("shard-{}-of-{}.parquet", shard.index, shard.count))
}

/// Opens (or starts) the sweep directory `dir` for `space` on `data`: writes the manifest, or
/// checks that the one there has the same fingerprint.
pub fn open(space: &Space, data: &str, dir: &Path) -> Result<Manifest> {
    let names = columns(space);
    if let Some(clash) = space
        .grid
        .iter()
        .find(|(k, _)| COLUMNS.contains(&k.as_str()) || k == "config")
    {
        return Err(sweep_err(
            dir,
            format!(
                "hyperparameter `{}` has the name of a result column",
                clash.0
            ),
        ));
    }
    debug_assert_eq!(names.len(), space.grid.len() + COLUMNS.len() + 1);
    let manifest = Manifest {
        fingerprint: space.fingerprint(data),
        data: data.to_string(),
        space: space.clone(),
        configurations: space.len(),
    };
    std::fs::create_dir_all(dir.join("pieces")).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("sweep.json");
    if path.exists() {
        let found: Manifest = terrain_report::record::read_json(&path)?;
        if found.fingerprint != manifest.fingerprint {
            let what = if found.data != manifest.data {
                format!("the data `{}` (this run: `{}`)", found.data, manifest.data)
            } else {
                "another search space".to_string()
            };
            return Err(sweep_err(
                dir,
                format!(
                    "this sweep directory was started with {what} (fingerprint {} versus {}); use another directory or the same space and data",
                    found.fingerprint, manifest.fingerprint
                ),
            ));
        }
    } else {
        terrain_report::record::write_json(&path, &manifest)?;
    }
    Ok(manifest)
}

/// The kept checkpoint of configuration `id` in the sweep directory `dir`
/// ([`SweepOptions::keep_checkpoints`]).
pub fn checkpoint_path(dir: &Path, id: usize) -> PathBuf {
    dir.join("checkpoints")
        .join(format!("config-{id:06}.safetensors"))
}

/// Trains one configuration through the training recipe; never fails (a failure is a row).
pub fn run_configuration(
    space: &Space,
    c: &Configuration,
    data: &str,
    data_dir: Option<&Path>,
) -> Vec<Row> {
    run_configuration_with(space, c, data, data_dir, None, None)
}

/// [`run_configuration`] on `device` (default: CPU), also writing the trained model to
/// `checkpoint` when given.
pub fn run_configuration_with(
    space: &Space,
    c: &Configuration,
    data: &str,
    data_dir: Option<&Path>,
    checkpoint: Option<&Path>,
    device: Option<&candle_core::Device>,
) -> Vec<Row> {
    let started = Instant::now();
    let mut at: BTreeMap<usize, Row> = BTreeMap::new();
    let blank = |epochs: usize| Row {
        config: c.id,
        values: c.values.clone(),
        subset: c.subset,
        epochs,
        seed: c.seed,
        status: "ok".into(),
        reason: String::new(),
        train_loss: None,
        train_error: None,
        validation_loss: None,
        validation_error: None,
        test_loss: None,
        test_error: None,
        seconds: None,
    };
    let result = (|| -> terrain_model::Result<()> {
        let (spec, objective) = space.run_spec(c, data)?;
        let objective = objective.map(|o| o.build()).transpose()?;
        let options = RunOptions {
            data_dir: data_dir.map(Path::to_path_buf),
            checkpoint: checkpoint.map(Path::to_path_buf),
            device: device.cloned(),
            ..RunOptions::default()
        };
        spec.run_observed(&options, objective, &mut |event| {
            if let TrainEvent::Epoch(r) = event
                && space.epochs.contains(&r.epoch)
            {
                let mut row = blank(r.epoch);
                row.train_loss = r.train.map(|e| e.loss);
                row.train_error = r.train.and_then(|e| e.error);
                row.validation_loss = r.validation.map(|e| e.loss);
                row.validation_error = r.validation.and_then(|e| e.error);
                row.test_loss = r.test.map(|e| e.loss);
                row.test_error = r.test.and_then(|e| e.error);
                row.seconds = Some(started.elapsed().as_secs_f64());
                at.insert(r.epoch, row);
            }
        })?;
        Ok(())
    })();
    let failure = result.err().map(|e| e.to_string());
    space
        .epochs
        .iter()
        .map(|&e| {
            let mut row = at.remove(&e).unwrap_or_else(|| blank(e));
            if let Some(reason) = &failure {
                row.status = "failed".into();
                row.reason = reason.clone();
            }
            row
        })
        .collect()
}

/// Runs the shard `options.shard` of the sweep of `space` on `data` in `dir`: skips the
/// configurations finished before, trains the others with `options.workers` workers, writes each
/// finished one atomically, then the shard's table (and, unsharded, the merged table).
pub fn run(space: &Space, data: &str, dir: &Path, options: &SweepOptions) -> Result<Summary> {
    options.shard.check()?;
    terrain_model::config::count("workers", options.workers)?;
    let started = Instant::now();
    let manifest = open(space, data, dir)?;
    let shard = options.shard;
    let mine: Vec<Configuration> = space
        .configurations()
        .into_iter()
        .filter(|c| c.id % shard.count == shard.index)
        .collect();
    let pending: Vec<&Configuration> = mine
        .iter()
        .filter(|c| !piece_path(dir, c.id).is_file())
        .collect();
    let already_done = mine.len() - pending.len();
    if options.keep_checkpoints {
        let d = dir.join("checkpoints");
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let progress = &options.progress;
    progress.start("sweep", Some(pending.len() as u64));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..options.workers.min(pending.len().max(1)) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(c) = pending.get(i) else { break };
                    let ckpt = options.keep_checkpoints.then(|| checkpoint_path(dir, c.id));
                    let rows = run_configuration_with(
                        space,
                        c,
                        data,
                        options.data_dir.as_deref(),
                        ckpt.as_deref(),
                        options.device.as_ref(),
                    );
                    let failed = rows[0].status != "ok";
                    let piece = Piece {
                        fingerprint: manifest.fingerprint.clone(),
                        config: c.id,
                        rows,
                    };
                    if let Err(e) =
                        terrain_report::record::write_json(&piece_path(dir, c.id), &piece)
                    {
                        stop.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("no poisoned lock")
                            .get_or_insert(e.into());
                        break;
                    }
                    progress.set_message(&format!(
                        "configuration {} {}",
                        c.id,
                        if failed { "failed" } else { "done" }
                    ));
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish();
    if let Some(e) = first_error.into_inner().expect("no poisoned lock") {
        return Err(e);
    }
    let trained = pending.len();
    let seconds = started.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for c in &mine {
        rows.extend(read_piece(dir, c.id, &manifest.fingerprint)?.rows);
    }
    let failed = failures(space, &rows);
    let shard_file = shard_path(dir, shard);
    table(space, &manifest.fingerprint, &rows)?.write_parquet(&shard_file)?;
    let merged = if shard.count == 1 {
        Some(merge(dir)?.path)
    } else {
        None
    };
    Ok(Summary {
        configurations: space.len(),
        shard: shard.to_string(),
        in_shard: mine.len(),
        already_done,
        trained,
        failed,
        workers: options.workers,
        seconds,
        configs_per_hour: (trained > 0 && seconds > 0.0).then(|| trained as f64 / seconds * 3600.0),
        shard_file,
        merged,
    })
}

fn read_piece(dir: &Path, id: usize, fingerprint: &str) -> Result<Piece> {
    let path = piece_path(dir, id);
    let piece: Piece = terrain_report::record::read_json(&path)?;
    if piece.fingerprint != fingerprint || piece.config != id {
        return Err(sweep_err(
            &path,
            "belongs to another sweep (its fingerprint or configuration differs); remove it",
        ));
    }
    Ok(piece)
}

fn failures(space: &Space, rows: &[Row]) -> Vec<Failure> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter(|r| r.status != "ok" && seen.insert(r.config))
        .map(|r| Failure {
            config: r.config,
            values: space.point_key(&r.values),
            reason: r.reason.clone(),
        })
        .collect()
}

/// Rows as a table (sorted by configuration, then epoch).
pub fn table(space: &Space, fingerprint: &str, rows: &[Row]) -> Result<Table> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (r.config, r.epochs));
    let mut t = Table::new(columns(space));
    let kinds = space.kinds();
    let f = |x: Option<f64>| x.map_or(Cell::Null, Cell::Float);
    for r in &rows {
        let mut cells = vec![Cell::Int(r.config as i64)];
        for (v, k) in r.values.iter().zip(&kinds) {
            cells.push(match (k, v) {
                (Kind::Int, HpValue::Int(i)) => Cell::Int(*i),
                (Kind::Float, v) => Cell::Float(v.as_f64().unwrap_or(f64::NAN)),
                (_, v) => Cell::Str(v.to_string()),
            });
        }
        cells.extend([
            Cell::Float(r.subset),
            Cell::Int(r.epochs as i64),
            Cell::Int(r.seed as i64),
            Cell::Str(r.status.clone()),
            Cell::Str(r.reason.clone()),
            f(r.train_loss),
            f(r.train_error),
            f(r.validation_loss),
            f(r.validation_error),
            f(r.test_loss),
            f(r.test_error),
            f(r.seconds),
            Cell::Str(fingerprint.to_string()),
        ]);
        t.push(cells)?;
    }
    Ok(t)
}

/// What [`merge`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeSummary {
    /// Shard files merged.
    pub shards: usize,
    /// Configurations.
    pub configurations: usize,
    /// Rows.
    pub rows: usize,
    /// Failed configurations.
    pub failed: Vec<Failure>,
    /// The merged table.
    pub path: PathBuf,
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Num(x) => Some(*x),
        Value::Text(t) => t.parse().ok(),
        Value::Null => None,
    }
}

/// Merges the shard tables of the sweep in `dir` into `sweep.parquet`, checking that every shard
/// of one count is there once, that each belongs to this sweep, and that every configuration has
/// each of its rows exactly once.
pub fn merge(dir: &Path) -> Result<MergeSummary> {
    let manifest_path = dir.join("sweep.json");
    if !manifest_path.is_file() {
        return Err(sweep_err(dir, "no sweep.json: not a sweep directory"));
    }
    let manifest: Manifest = terrain_report::record::read_json(&manifest_path)?;
    let space = &manifest.space;
    let mut shards: BTreeMap<usize, (usize, PathBuf)> = BTreeMap::new();
    let mut count: Option<(usize, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name
            .strip_prefix("shard-")
            .and_then(|r| r.strip_suffix(".parquet"))
        else {
            continue;
        };
        let parsed = rest
            .split_once("-of-")
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
        let Some((i, n)) = parsed.filter(|(i, n)| i < n) else {
            return Err(sweep_err(
                &path,
                "is not named shard-I-of-N.parquet with I < N",
            ));
        };
        match &count {
            Some((m, other)) if *m != n => {
                return Err(sweep_err(
                    dir,
                    format!(
                        "shards of different counts: {} and {} (remove the files of the abandoned split)",
                        other.display(),
                        path.display()
                    ),
                ));
            }
            _ => count = Some((n, path.clone())),
        }
        shards.insert(i, (n, path));
    }
    let Some((n, _)) = count else {
        return Err(sweep_err(
            dir,
            "no shard-I-of-N.parquet files to merge (has any shard finished?)",
        ));
    };
    let missing: Vec<String> = (0..n)
        .filter(|i| !shards.contains_key(i))
        .map(|i| format!("shard-{i}-of-{n}.parquet"))
        .collect();
    if !missing.is_empty() {
        return Err(sweep_err(
            dir,
            format!(
                "missing {} of {n} shards: {}",
                missing.len(),
                missing.join(", ")
            ),
        ));
    }
    let want = columns(space);
    let kinds = space.kinds();
    let mut rows: Vec<Row> = Vec::new();
    let mut seen: BTreeMap<(usize, usize), PathBuf> = BTreeMap::new();
    for (i, (_, path)) in &shards {
        let t = RawTable::read_parquet(path)?;
        if t.columns != want {
            return Err(sweep_err(
                path,
                format!(
                    "has columns {} where this sweep has {}",
                    t.columns.join(", "),
                    want.join(", ")
                ),
            ));
        }
        let col = |name: &str| {
            t.columns
                .iter()
                .position(|c| c == name)
                .expect("checked columns")
        };
        for r in 0..t.n_rows() {
            let cell = |name: &str| &t.cells[col(name)][r];
            let bad = |what: &str| sweep_err(path, format!("row {r}: {what}"));
            if cell("sweep").to_string() != manifest.fingerprint {
                return Err(bad(&format!(
                    "written by another sweep (fingerprint {} versus {})",
                    cell("sweep"),
                    manifest.fingerprint
                )));
            }
            let int = |name: &str| {
                num(cell(name))
                    .filter(|x| *x >= 0.0 && x.fract() == 0.0)
                    .map(|x| x as usize)
                    .ok_or_else(|| bad(&format!("`{name}` is not a count")))
            };
            let config = int("config")?;
            if config >= manifest.configurations || config % n != *i {
                return Err(bad(&format!(
                    "configuration {config} does not belong to shard {i} of {n}"
                )));
            }
            let epochs = int("epochs")?;
            if let Some(other) = seen.insert((config, epochs), path.clone()) {
                return Err(sweep_err(
                    dir,
                    format!(
                        "configuration {config} at epoch {epochs} is in {} and again in {}",
                        other.display(),
                        path.display()
                    ),
                ));
            }
            let values = space
                .grid
                .iter()
                .zip(&kinds)
                .map(|((k, _), kind)| match (kind, cell(k)) {
                    (Kind::Int, v) => num(v).map(|x| HpValue::Int(x as i64)),
                    (Kind::Float, v) => num(v).map(HpValue::Float),
                    (Kind::Str, v) => Some(HpValue::Str(v.to_string())),
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("a hyperparameter cell is empty"))?;
            rows.push(Row {
                config,
                values,
                subset: num(cell("subset")).ok_or_else(|| bad("`subset` is empty"))?,
                epochs,
                seed: int("seed")? as u64,
                status: cell("status").to_string(),
                reason: cell("reason").to_string(),
                train_loss: num(cell("train_loss")),
                train_error: num(cell("train_error")),
                validation_loss: num(cell("validation_loss")),
                validation_error: num(cell("validation_error")),
                test_loss: num(cell("test_loss")),
                test_error: num(cell("test_error")),
                seconds: num(cell("seconds")),
            });
        }
    }
    let configs = space.configurations();
    let mut absent = Vec::new();
    for c in &configs {
        for &e in &space.epochs {
            if !seen.contains_key(&(c.id, e)) {
                absent.push(format!(
                    "{} at epoch {e} ({})",
                    c.id,
                    space.point_key(&c.values)
                ));
            }
        }
    }
    if !absent.is_empty() {
        return Err(sweep_err(
            dir,
            format!(
                "{} rows are missing, e.g. configuration {}",
                absent.len(),
                absent[..absent.len().min(3)].join("; ")
            ),
        ));
    }
    let path = dir.join("sweep.parquet");
    let failed = failures(space, &rows);
    let out = table(space, &manifest.fingerprint, &rows)?;
    out.write_parquet(&path)?;
    Ok(MergeSummary {
        shards: n,
        configurations: configs.len(),
        rows: rows.len(),
        failed,
        path,
    })
}
