//! Loss surfaces: the mean loss and error at `θ + x·d (+ y·e)` over a 1-D or 2-D grid, forward
//! passes only, streamed in batches prepared once, with a crash-safe results file.
//!
//! Every grid point is computed from the origin and the directions afresh (never by adding to the
//! previous point), so a point's value does not depend on which points were computed before it:
//! a resumed surface equals an uninterrupted one exactly.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use terrain_model::{
    Model,
    data::{Batch, Dataset, Targets, Task},
    loss::{self, LossKind},
    params::ParamVec,
    progress::Progress,
};

use crate::{Error, GridAxis, Result, direction};

/// The mean loss and error of a model over a data set, on batches moved to the model's device
/// and shaped for it once, so that repeated evaluations (one per grid point) cost forward passes
/// only. One host synchronisation per evaluation.
#[derive(Debug)]
pub struct Evaluator {
    batches: Vec<Batch>,
    rows: usize,
    loss: LossKind,
    classification: bool,
}

impl Evaluator {
    /// Prepares `data` for `model` in batches of `batch_size` rows.
    pub fn new(model: &Model, data: &Dataset, loss: LossKind, batch_size: usize) -> Result<Self> {
        loss::check_fits(model, data)?;
        if data.is_empty() {
            return Err(terrain_model::Error::EmptyDataset {
                name: data.name.clone(),
            }
            .into());
        }
        let mut batches = Vec::new();
        for b in data.batches(batch_size, None, false)? {
            let b = b?;
            let x = model.prepare_input(&b.x)?;
            let y = b.y.to_device(model.device())?;
            batches.push(Batch { x, y });
        }
        Ok(Evaluator {
            batches,
            rows: data.len(),
            loss,
            classification: matches!(data.task, Task::Classification { .. }),
        })
    }

    /// Rows evaluated.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The model's mean loss and (classification) error fraction at its current weights, BatchNorm
    /// in eval mode. A non-finite loss is returned as it is (far from a minimum a surface may
    /// overflow), not as an error.
    pub fn evaluate(&self, model: &Model) -> Result<(f64, Option<f64>)> {
        let mut loss_sum: Option<Tensor> = None;
        let mut wrong: Option<Tensor> = None;
        for b in &self.batches {
            let out = model.forward_eval(&b.x)?;
            let l = loss::per_sample(&out, &b.y, self.loss)?
                .to_dtype(DType::F64)?
                .sum_all()?;
            loss_sum = Some(match loss_sum {
                None => l,
                Some(s) => (s + l)?,
            });
            if self.classification {
                let w = wrong_count(&out, &b.y)?;
                wrong = Some(match wrong {
                    None => w,
                    Some(s) => (s + w)?,
                });
            }
        }
        let n = self.rows as f64;
        let loss = loss_sum
            .map(|s| s.to_scalar::<f64>())
            .transpose()?
            .unwrap_or(f64::NAN)
            / n;
        let error = wrong
            .map(|w| w.to_scalar::<f64>())
            .transpose()?
            .map(|w| w / n);
        Ok((loss, error))
    }
}

/// Misclassified rows of one batch as an f64 scalar tensor (no host synchronisation).
fn wrong_count(out: &Tensor, y: &Targets) -> Result<Tensor> {
    let pred = out.argmax(candle_core::D::Minus1)?.to_dtype(DType::U32)?;
    let truth = match y {
        Targets::Classes(t) => t.to_dtype(DType::U32)?,
        Targets::Soft(p) => p.argmax(candle_core::D::Minus1)?.to_dtype(DType::U32)?,
        Targets::Values(_) => return Ok(Tensor::zeros((), DType::F64, out.device())?),
    };
    Ok(pred.ne(&truth)?.to_dtype(DType::F64)?.sum_all()?)
}

/// A plane (or line) in weight space: `origin + Σ cᵢ·directions[i]`.
#[derive(Debug, Clone)]
pub struct Plane {
    /// The point at coordinates 0 (the trained weights, or checkpoint A).
    pub origin: ParamVec,
    /// One direction for a line, two for a plane (x first).
    pub directions: Vec<ParamVec>,
}

impl Plane {
    /// Writes `origin + Σ coords[i]·directions[i]` into the model's parameters.
    pub fn move_to(&self, model: &Model, coords: &[f64]) -> Result<()> {
        for (k, p) in model.params().iter().enumerate() {
            let mut t = self.origin.tensors[k].clone();
            for (d, &c) in self.directions.iter().zip(coords) {
                if c != 0.0 {
                    t = (t + (&d.tensors[k] * c)?)?;
                }
            }
            p.var.set(&t)?;
        }
        Ok(())
    }

    fn check(&self, model: &Model) -> Result<()> {
        if !(1..=2).contains(&self.directions.len()) {
            return Err(Error::config(
                "directions",
                self.directions.len(),
                "a surface needs one direction (a line) or two (a plane)",
            ));
        }
        for (i, d) in std::iter::once(&self.origin)
            .chain(&self.directions)
            .enumerate()
        {
            let what = if i == 0 {
                "origin".to_string()
            } else {
                format!("direction {i}")
            };
            if d.names.len() != model.params().len() {
                return Err(Error::config(
                    what,
                    d.names.len(),
                    format!(
                        "has that many tensors, the model has {}",
                        model.params().len()
                    ),
                ));
            }
            for ((n, t), p) in d.names.iter().zip(&d.tensors).zip(model.params()) {
                if n != &p.name || t.dims() != p.var.dims() {
                    return Err(Error::config(
                        what,
                        n,
                        format!(
                            "tensor {n} {:?} does not match parameter {} {:?}",
                            t.dims(),
                            p.name,
                            p.var.dims()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Settings of [`compute`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SurfaceConfig {
    /// The x axis (along the first direction).
    pub x: GridAxis,
    /// The y axis (along the second direction), for a 2-D surface.
    pub y: Option<GridAxis>,
    /// The loss.
    pub loss: LossKind,
    /// Rows per forward pass.
    pub batch_size: usize,
    /// Recompute BatchNorm running statistics on the training data at every point (for points
    /// that are not trained weights: between checkpoints, or far from a minimum).
    pub recompute_bn: bool,
    /// Where progress goes (never changes a result).
    #[serde(skip)]
    pub progress: Progress,
}

impl SurfaceConfig {
    /// A 1-D surface over `x` with `loss`, batch 512, no BatchNorm recomputation.
    pub fn new(x: GridAxis, loss: LossKind) -> Self {
        SurfaceConfig {
            x,
            y: None,
            loss,
            batch_size: 512,
            recompute_bn: false,
            progress: Progress::hidden(),
        }
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        self.x.check("x")?;
        if let Some(y) = &self.y {
            y.check("y")?;
        }
        terrain_model::config::at_least("batch_size", self.batch_size, 1)?;
        let total = self.x.points.saturating_mul(self.y.map_or(1, |y| y.points));
        terrain_model::config::count("grid points", total)?;
        Ok(())
    }
}

/// A computed surface: `loss[j][i]` at `(x[i], y[j])` (one row for a 1-D surface).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Surface {
    /// x values.
    pub x: Vec<f64>,
    /// y values (2-D only).
    pub y: Option<Vec<f64>>,
    /// Mean loss, one row per y value (one row in 1-D). NaN where the loss was not finite.
    pub loss: Vec<Vec<f64>>,
    /// Error fraction (classification only), shaped like `loss`.
    pub error: Option<Vec<Vec<f64>>>,
    /// Points read back from the results file.
    pub resumed: usize,
    /// Points computed in this call.
    pub computed: usize,
    /// Rows evaluated per point.
    pub rows: usize,
}

/// One finished grid point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointValue {
    /// Mean loss (`None` when not finite).
    pub loss: Option<f64>,
    /// Error fraction (classification only).
    pub error: Option<f64>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    kind: String,
    version: u32,
    settings: BTreeMap<String, String>,
}

/// A point line: `i<TAB>j<TAB>loss<TAB>error`, numbers in Rust's shortest round-trip form
/// (exact when read back; `NaN`, `inf` and `-` for none are representable).
fn point_line(i: usize, j: usize, v: &PointValue) -> String {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:?}"));
    format!("{i}\t{j}\t{}\t{}\n", f(v.loss), f(v.error))
}

fn parse_point(line: &str) -> std::result::Result<(usize, usize, PointValue), String> {
    let parts: Vec<&str> = line.split('\t').collect();
    if parts.len() != 4 {
        return Err(format!(
            "expected 4 tab-separated fields, found {}",
            parts.len()
        ));
    }
    let index = |p: &str| {
        p.parse::<usize>()
            .map_err(|_| format!("`{p}` is not a grid index"))
    };
    let value = |p: &str| -> std::result::Result<Option<f64>, String> {
        if p == "-" {
            Ok(None)
        } else {
            p.parse::<f64>()
                .map(Some)
                .map_err(|_| format!("`{p}` is not a number"))
        }
    };
    Ok((
        index(parts[0])?,
        index(parts[1])?,
        PointValue {
            loss: value(parts[2])?.filter(|l| l.is_finite()),
            error: value(parts[3])?,
        },
    ))
}

const KIND: &str = "terrain-surface-points";
const VERSION: u32 = 1;

/// An append-only results file: a JSON header line with the settings, then one line per finished
/// grid point (`i`, `j`, loss, error; tab-separated, numbers exact), each written with one
/// `write` call as it completes. A line cut short by a crash is
/// dropped when the file is reopened; every complete line is kept.
#[derive(Debug)]
pub struct ResultsLog {
    path: PathBuf,
    file: std::fs::File,
    done: BTreeMap<(usize, usize), PointValue>,
    since_sync: usize,
}

impl ResultsLog {
    /// Opens (or creates) the results file at `path` for `settings`. An existing file written
    /// with other settings is refused, naming each setting that differs.
    pub fn open(path: &Path, settings: &BTreeMap<String, String>) -> Result<Self> {
        let io = |e| Error::io(path, e);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| Error::ResultsFile {
                path: path.to_path_buf(),
                line: 0,
                reason: format!("not a results file (not UTF-8 text: {e})"),
            })?;
        // Only complete lines count; a tail without its newline was cut short by a crash.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        let mut done = BTreeMap::new();
        let mut lines = text[..complete].lines().enumerate();
        match lines.next() {
            None => {
                file.set_len(0).map_err(io)?;
                let header = Header {
                    kind: KIND.into(),
                    version: VERSION,
                    settings: settings.clone(),
                };
                let mut line = serde_json::to_string(&header).expect("a header serialises");
                line.push('\n');
                file.write_all(line.as_bytes()).map_err(io)?;
                file.sync_data().map_err(io)?;
            }
            Some((_, first)) => {
                let header: Header = serde_json::from_str(first)
                    .ok()
                    .filter(|h: &Header| h.kind == KIND)
                    .ok_or_else(|| Error::ResultsFile {
                        path: path.to_path_buf(),
                        line: 1,
                        reason: "not a terrain surface results file".into(),
                    })?;
                if header.version != VERSION {
                    return Err(Error::ResultsFile {
                        path: path.to_path_buf(),
                        line: 1,
                        reason: format!(
                            "format version {}, this terrain reads {VERSION}",
                            header.version
                        ),
                    });
                }
                let diff = settings_diff(&header.settings, settings);
                if !diff.is_empty() {
                    return Err(Error::SettingsMismatch {
                        path: path.to_path_buf(),
                        settings: diff.join("; "),
                    });
                }
                for (n, l) in lines {
                    let (i, j, v) = parse_point(l).map_err(|reason| Error::ResultsFile {
                        path: path.to_path_buf(),
                        line: n + 1,
                        reason: format!("not a grid point: {reason}"),
                    })?;
                    done.insert((i, j), v);
                }
                if complete < text.len() {
                    file.set_len(complete as u64).map_err(io)?;
                    file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
                }
            }
        }
        Ok(ResultsLog {
            path: path.to_path_buf(),
            file,
            done,
            since_sync: 0,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The finished points, by `(i, j)`.
    pub fn done(&self) -> &BTreeMap<(usize, usize), PointValue> {
        &self.done
    }

    /// Appends a finished point (one `write` call).
    pub fn append(&mut self, i: usize, j: usize, value: PointValue) -> Result<()> {
        let line = point_line(i, j, &value);
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))?;
        self.done.insert((i, j), value);
        self.since_sync += 1;
        if self.since_sync >= 256 {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes the file to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.since_sync = 0;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// The settings that differ between a saved and a current map, as `name: saved A, now B`.
pub fn settings_diff(
    saved: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<&String> = saved.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (saved.get(k), now.get(k));
            (a != b).then(|| {
                format!(
                    "{k}: saved {}, now {}",
                    a.map_or("(none)", String::as_str),
                    b.map_or("(none)", String::as_str)
                )
            })
        })
        .collect()
}

/// Everything that determines a surface's values, for its results file: the architecture, dtype,
/// data (name, rows, content hash), fingerprints of the origin and directions, and the settings.
pub fn settings(
    model: &Model,
    data: &Dataset,
    plane: &Plane,
    config: &SurfaceConfig,
) -> Result<BTreeMap<String, String>> {
    let mut s = BTreeMap::new();
    s.insert("arch".into(), model.spec().to_string());
    s.insert("dtype".into(), format!("{:?}", model.dtype()));
    s.insert(
        "data".into(),
        format!(
            "{} ({} rows, hash {:016x})",
            data.name,
            data.len(),
            data.content_hash()?
        ),
    );
    s.insert(
        "origin".into(),
        format!("{:016x}", direction::fingerprint(&plane.origin)?),
    );
    for (i, d) in plane.directions.iter().enumerate() {
        s.insert(
            format!("direction {}", i + 1),
            format!("{:016x}", direction::fingerprint(d)?),
        );
    }
    s.insert("x".into(), config.x.to_string());
    s.insert(
        "y".into(),
        config.y.map_or("(none)".into(), |y| y.to_string()),
    );
    s.insert("loss".into(), config.loss.to_string());
    s.insert("batch_size".into(), config.batch_size.to_string());
    s.insert("recompute_bn".into(), config.recompute_bn.to_string());
    Ok(s)
}

/// Computes the surface of `model` on `data` over `plane`, resuming from and appending to `log`
/// when given. With `recompute_bn`, BatchNorm statistics are recomputed on `bn_data` (the
/// training data) at every point. The model's parameters and buffers are restored afterwards.
pub fn compute(
    model: &Model,
    data: &Dataset,
    bn_data: &Dataset,
    plane: &Plane,
    config: &SurfaceConfig,
    mut log: Option<&mut ResultsLog>,
) -> Result<Surface> {
    config.check()?;
    plane.check(model)?;
    let need_dirs = if config.y.is_some() { 2 } else { 1 };
    if plane.directions.len() != need_dirs {
        return Err(Error::config(
            "directions",
            plane.directions.len(),
            format!("a {need_dirs}-D surface needs {need_dirs} direction(s)"),
        ));
    }
    let eval = Evaluator::new(model, data, config.loss, config.batch_size)?;
    let xs = config.x.values();
    let ys = config.y.map(|y| y.values());
    let ny = ys.as_ref().map_or(1, Vec::len);
    let total = xs.len() * ny;
    let saved_params = ParamVec::from_model(model)?;
    let saved_buffers: Vec<Tensor> = model
        .buffers()
        .iter()
        .map(|b| b.var.as_tensor().copy())
        .collect::<candle_core::Result<_>>()?;
    let mut values: BTreeMap<(usize, usize), PointValue> =
        log.as_ref().map(|l| l.done().clone()).unwrap_or_default();
    values.retain(|&(i, j), _| i < xs.len() && j < ny);
    let resumed = values.len();
    config.progress.start("surface", Some(total as u64));
    config.progress.set_position(resumed as u64);
    let result = (|| -> Result<usize> {
        let mut computed = 0;
        for j in 0..ny {
            for (i, &x) in xs.iter().enumerate() {
                if values.contains_key(&(i, j)) {
                    continue;
                }
                let coords = match &ys {
                    Some(ys) => vec![x, ys[j]],
                    None => vec![x],
                };
                plane.move_to(model, &coords)?;
                if config.recompute_bn {
                    model.recompute_batch_norm_stats(bn_data, config.batch_size)?;
                }
                let (l, e) = eval.evaluate(model)?;
                let v = PointValue {
                    loss: l.is_finite().then_some(l),
                    error: e,
                };
                if let Some(log) = log.as_deref_mut() {
                    log.append(i, j, v)?;
                }
                values.insert((i, j), v);
                computed += 1;
                config.progress.inc(1);
            }
        }
        if let Some(log) = log.as_deref_mut() {
            log.sync()?;
        }
        Ok(computed)
    })();
    config.progress.finish();
    saved_params.assign_to(model)?;
    for (b, t) in model.buffers().iter().zip(&saved_buffers) {
        b.var.set(t)?;
    }
    let computed = result?;
    let grid = |f: &dyn Fn(&PointValue) -> f64| -> Vec<Vec<f64>> {
        (0..ny)
            .map(|j| (0..xs.len()).map(|i| f(&values[&(i, j)])).collect())
            .collect()
    };
    let loss = grid(&|v| v.loss.unwrap_or(f64::NAN));
    let classification = matches!(data.task, Task::Classification { .. });
    let error = classification.then(|| grid(&|v| v.error.unwrap_or(f64::NAN)));
    Ok(Surface {
        x: xs,
        y: ys,
        loss,
        error,
        resumed,
        computed,
        rows: eval.rows(),
    })
}
