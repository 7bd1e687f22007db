//! Search spaces in TOML: a grid of ordinal hyperparameters, fixed settings and fidelities, and
//! how each configuration becomes a [`RunSpec`] (the one training recipe).
//!
//! ```toml
//! seed = 7                                  # base seed; each configuration derives its own
//! arch = "mlp:64-{hidden}-10:{activation}"  # `{name}`: a hyperparameter's value;
//!                                           # `{hidden}`: `width` repeated `depth` times
//! [data]                                    # how the data are split and prepared
//! holdout = 0.2                             # test fraction
//! validation = 0.2                          # validation fraction of the rest
//! [fixed]                                   # settings every configuration shares
//! activation = "relu"
//! batch_size = 64
//! [grid]                                    # ordered levels of each hyperparameter
//! lr = [0.003, 0.01, 0.03, 0.1]
//! width = [16, 32, 64]
//! depth = [1, 2]
//! [fidelity]
//! epochs = [5, 20]                          # read off one run at these epochs
//! subset = [0.5, 1.0]                       # training-set fractions (one run each)
//! ```
//!
//! Hyperparameters (grid or fixed): `lr`, `batch_size`, `optimizer` (`sgd`, `adam`, or a compact
//! form such as `sgd:momentum=0`), `momentum` (SGD's momentum, Adam's β1), `weight_decay`,
//! `lr_decay` (compact form), `mixup` (Beta(α, α) mixup; 0 is none), `label_noise`, `objective`
//! (terrain-robust's compact form, e.g. `flood:level=0.05`), and any name the `arch` template
//! uses (`width`, `depth`, `activation`, ...). Anything else is refused by name. `replicate`
//! (e.g. `[0, 1, 2, 3, 4]`) changes nothing but the seed: independent seeds of one setting.

use std::path::Path;

use serde::{Deserialize, Serialize};
use terrain_model::{
    ArchSpec,
    run::{RunSpec, Standardize},
    train::{LrDecay, Optimizer},
};

use crate::{Error, Result};

/// One value of a hyperparameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HpValue {
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
    /// Text (an optimiser, an activation).
    Str(String),
}

impl HpValue {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            HpValue::Int(i) => Some(*i as f64),
            HpValue::Float(x) => Some(*x),
            HpValue::Str(_) => None,
        }
    }
}

impl std::fmt::Display for HpValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HpValue::Int(i) => write!(f, "{i}"),
            HpValue::Float(x) => write!(f, "{x}"),
            HpValue::Str(s) => f.write_str(s),
        }
    }
}

/// The kind of a hyperparameter column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every level an integer.
    Int,
    /// Numbers, some not integers.
    Float,
    /// Text.
    Str,
}

/// The names [`Space`] maps onto a [`RunSpec`] (besides the `arch` template's).
pub const KNOWN: [&str; 11] = [
    "lr",
    "batch_size",
    "optimizer",
    "momentum",
    "weight_decay",
    "lr_decay",
    "mixup",
    "label_noise",
    "objective",
    "epochs",
    "replicate",
];

/// How the data are split and prepared (the source is given when the sweep runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSettings {
    /// Test fraction.
    pub holdout: f64,
    /// Validation fraction of the rows left for training.
    pub validation: f64,
    /// Standardisation.
    pub standardize: Standardize,
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            holdout: 0.2,
            validation: 0.2,
            standardize: Standardize::Auto,
        }
    }
}

/// A search space: a grid of hyperparameters, fixed settings, fidelities and a base seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    /// Base seed.
    pub seed: u64,
    /// Architecture template (`{name}` placeholders).
    pub arch: String,
    /// Data preparation.
    pub data: DataSettings,
    /// Settings every configuration shares, by name.
    pub fixed: Vec<(String, HpValue)>,
    /// The grid: each hyperparameter's ordered levels, by name (ascending name order).
    pub grid: Vec<(String, Vec<HpValue>)>,
    /// Epochs at which each run is read off (ascending; the run trains to the last).
    pub epochs: Vec<usize>,
    /// Training-set fractions (one run each).
    pub subsets: Vec<f64>,
}

/// One run of a sweep: a grid point at one training-set fraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    /// Its number in enumeration order (grid points in the order of [`Space::grid`], last name
    /// fastest, then training-set fractions).
    pub id: usize,
    /// Level of each grid hyperparameter, in [`Space::grid`] order.
    pub values: Vec<HpValue>,
    /// Training-set fraction.
    pub subset: f64,
    /// Its seed: derived from the space's seed and the grid point (not the fidelity, so the
    /// fidelities of one grid point share initialisation, split and shuffling).
    pub seed: u64,
}

fn space_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Space {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// FNV-1a, 64 bits: a stable hash of text (seeds and fingerprints must not change between builds).
pub fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hp_value(path: &Path, key: &str, v: &toml::Value) -> Result<HpValue> {
    match v {
        toml::Value::Integer(i) => Ok(HpValue::Int(*i)),
        toml::Value::Float(x) if x.is_finite() => Ok(HpValue::Float(*x)),
        toml::Value::String(s) if !s.trim().is_empty() => Ok(HpValue::Str(s.trim().to_string())),
        other => Err(space_err(
            path,
            format!(
                "`{key}`: {other} is not a hyperparameter value (a number or a non-empty string)"
            ),
        )),
    }
}

fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        out.push(rest[i + 1..i + j].to_string());
        rest = &rest[i + j + 1..];
    }
    out
}

impl Space {
    /// Reads and checks a space file.
    pub fn read(path: &Path) -> Result<Space> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Space::parse(path, &text)
    }

    /// Parses and checks space text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Space> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| space_err(path, format!("not valid TOML: {e}")))?;
        for key in doc.keys() {
            if !["seed", "arch", "data", "fixed", "grid", "fidelity"].contains(&key.as_str()) {
                return Err(space_err(
                    path,
                    format!(
                        "unknown key `{key}` (a space has seed, arch, [data], [fixed], [grid], [fidelity])"
                    ),
                ));
            }
        }
        let table = |name: &str| -> Result<toml::Table> {
            match doc.get(name) {
                None => Ok(toml::Table::new()),
                Some(toml::Value::Table(t)) => Ok(t.clone()),
                Some(_) => Err(space_err(
                    path,
                    format!("`{name}` must be a table ([{name}])"),
                )),
            }
        };
        let seed = match doc.get("seed") {
            None => 0,
            Some(toml::Value::Integer(i)) if *i >= 0 => *i as u64,
            Some(v) => {
                return Err(space_err(
                    path,
                    format!("`seed` = {v}: must be an integer ≥ 0"),
                ));
            }
        };
        let arch = match doc.get("arch") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(v) => return Err(space_err(path, format!("`arch` = {v}: must be a string"))),
            None => return Err(space_err(path, "no `arch` (the architecture template)")),
        };
        let mut data = DataSettings::default();
        for (k, v) in table("data")? {
            let num = || {
                v.as_float()
                    .or_else(|| v.as_integer().map(|i| i as f64))
                    .ok_or_else(|| space_err(path, format!("[data] `{k}` = {v}: must be a number")))
            };
            match k.as_str() {
                "holdout" => data.holdout = num()?,
                "validation" => data.validation = num()?,
                "standardize" => {
                    data.standardize = v
                        .as_str()
                        .ok_or_else(|| space_err(path, "[data] `standardize` must be a string"))?
                        .parse()
                        .map_err(|e: terrain_model::Error| space_err(path, e.to_string()))?
                }
                _ => {
                    return Err(space_err(
                        path,
                        format!(
                            "[data] has no setting `{k}` (it takes holdout, validation, standardize)"
                        ),
                    ));
                }
            }
        }
        let mut fixed = Vec::new();
        for (k, v) in table("fixed")? {
            fixed.push((k.clone(), hp_value(path, &k, &v)?));
        }
        let mut grid = Vec::new();
        for (k, v) in table("grid")? {
            let toml::Value::Array(items) = v else {
                return Err(space_err(
                    path,
                    format!("[grid] `{k}` must be a list of levels"),
                ));
            };
            if items.is_empty() {
                return Err(space_err(
                    path,
                    format!("[grid] `{k}` is an empty grid (give at least one level)"),
                ));
            }
            let levels = items
                .iter()
                .map(|x| hp_value(path, &k, x))
                .collect::<Result<Vec<_>>>()?;
            let text = levels.iter().any(|l| matches!(l, HpValue::Str(_)));
            if text && levels.iter().any(|l| !matches!(l, HpValue::Str(_))) {
                return Err(space_err(
                    path,
                    format!("[grid] `{k}` mixes numbers and text"),
                ));
            }
            for (i, l) in levels.iter().enumerate() {
                if levels[..i].iter().any(|m| m.to_string() == l.to_string()) {
                    return Err(space_err(path, format!("[grid] `{k}` lists {l} twice")));
                }
            }
            if fixed.iter().any(|(f, _)| *f == k) {
                return Err(space_err(
                    path,
                    format!("`{k}` is both in [fixed] and in [grid]"),
                ));
            }
            grid.push((k, levels));
        }
        let fid = table("fidelity")?;
        let list = |name: &str| -> Result<Option<Vec<toml::Value>>> {
            match fid.get(name) {
                None => Ok(None),
                Some(toml::Value::Array(a)) if !a.is_empty() => Ok(Some(a.clone())),
                Some(_) => Err(space_err(
                    path,
                    format!("[fidelity] `{name}` must be a non-empty list"),
                )),
            }
        };
        for k in fid.keys() {
            if k != "epochs" && k != "subset" {
                return Err(space_err(
                    path,
                    format!("[fidelity] has no `{k}` (it takes epochs, subset)"),
                ));
            }
        }
        let epochs = match list("epochs")? {
            Some(a) => a
                .iter()
                .map(|v| match v.as_integer() {
                    Some(i) if i >= 1 && i as usize <= terrain_model::config::MAX_COUNT => {
                        Ok(i as usize)
                    }
                    _ => Err(space_err(
                        path,
                        format!("[fidelity] epochs: {v} is not a count ≥ 1"),
                    )),
                })
                .collect::<Result<Vec<_>>>()?,
            None => match fixed.iter().find(|(k, _)| k == "epochs") {
                Some((_, HpValue::Int(i))) if *i >= 1 => vec![*i as usize],
                Some((_, v)) => {
                    return Err(space_err(
                        path,
                        format!("[fixed] epochs = {v}: not a count ≥ 1"),
                    ));
                }
                None => vec![10],
            },
        };
        if epochs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(space_err(
                path,
                "[fidelity] epochs must be strictly ascending",
            ));
        }
        let subsets = match list("subset")? {
            Some(a) => a
                .iter()
                .map(
                    |v| match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                        Some(x) if x > 0.0 && x <= 1.0 => Ok(x),
                        _ => Err(space_err(
                            path,
                            format!("[fidelity] subset: {v} is not a fraction in (0, 1]"),
                        )),
                    },
                )
                .collect::<Result<Vec<_>>>()?,
            None => vec![1.0],
        };
        if grid.iter().any(|(k, _)| k == "epochs") {
            return Err(space_err(
                path,
                "`epochs` is a fidelity: list it under [fidelity]",
            ));
        }
        let space = Space {
            seed,
            arch,
            data,
            fixed,
            grid,
            epochs,
            subsets,
        };
        space.check_names(path)?;
        // Every configuration must at least make a valid recipe shape; try the first one.
        let first = &space.configurations()[0];
        space
            .arch_for(first)
            .map_err(|e| space_err(path, e.to_string()))?;
        Ok(space)
    }

    fn check_names(&self, path: &Path) -> Result<()> {
        let used = placeholders(&self.arch);
        let given: Vec<&str> = self
            .fixed
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(self.grid.iter().map(|(k, _)| k.as_str()))
            .collect();
        for name in &given {
            let in_arch = used.iter().any(|u| u == name)
                || (used.iter().any(|u| u == "hidden") && (*name == "width" || *name == "depth"));
            if !KNOWN.contains(name) && !in_arch {
                return Err(space_err(
                    path,
                    format!(
                        "unknown hyperparameter `{name}`: it is none of {} and the arch template \"{}\" has no {{{name}}}",
                        KNOWN.join(", "),
                        self.arch
                    ),
                ));
            }
        }
        for u in &used {
            let ok = if u == "hidden" {
                given.contains(&"width")
            } else {
                given.contains(&u.as_str())
            };
            if !ok {
                return Err(space_err(
                    path,
                    format!(
                        "the arch template \"{}\" uses {{{u}}}, which no [fixed] or [grid] entry gives{}",
                        self.arch,
                        if u == "hidden" {
                            " (it needs `width`, and `depth` if not 1)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Number of configurations (grid points × training-set fractions).
    pub fn len(&self) -> usize {
        self.grid.iter().map(|(_, l)| l.len()).product::<usize>() * self.subsets.len()
    }

    /// Whether the space has no configuration (never, for a checked space).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every configuration, in id order.
    pub fn configurations(&self) -> Vec<Configuration> {
        let points: usize = self.grid.iter().map(|(_, l)| l.len()).product();
        let mut out = Vec::with_capacity(self.len());
        for (si, &subset) in self.subsets.iter().enumerate() {
            for p in 0..points {
                let mut rest = p;
                let mut values = vec![HpValue::Int(0); self.grid.len()];
                for (j, (_, levels)) in self.grid.iter().enumerate().rev() {
                    values[j] = levels[rest % levels.len()].clone();
                    rest /= levels.len();
                }
                let key = self.point_key(&values);
                // Below 2^53: seeds survive a round trip through a parquet float column.
                let seed =
                    terrain_model::rng::stream_seed(self.seed, fnv1a(&key)) & ((1 << 53) - 1);
                out.push(Configuration {
                    id: si * points + p,
                    values,
                    subset,
                    seed,
                });
            }
        }
        out
    }

    /// `name=value,...` of a grid point, in grid order: what its seed is derived from.
    pub fn point_key(&self, values: &[HpValue]) -> String {
        self.grid
            .iter()
            .zip(values)
            .map(|((k, _), v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The kind of each grid hyperparameter's column.
    pub fn kinds(&self) -> Vec<Kind> {
        self.grid
            .iter()
            .map(|(_, levels)| {
                if levels.iter().all(|l| matches!(l, HpValue::Int(_))) {
                    Kind::Int
                } else if levels.iter().any(|l| matches!(l, HpValue::Str(_))) {
                    Kind::Str
                } else {
                    Kind::Float
                }
            })
            .collect()
    }

    /// Every setting of `c`: the fixed ones, then its grid levels.
    pub fn settings(&self, c: &Configuration) -> Vec<(String, HpValue)> {
        let mut s = self.fixed.clone();
        s.extend(
            self.grid
                .iter()
                .map(|(k, _)| k.clone())
                .zip(c.values.iter().cloned()),
        );
        s
    }

    fn arch_for(&self, c: &Configuration) -> terrain_model::Result<ArchSpec> {
        let settings = self.settings(c);
        let get = |name: &str| settings.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let mut arch = self.arch.clone();
        if arch.contains("{hidden}") {
            let width = get("width").map(ToString::to_string).unwrap_or_default();
            let depth = match get("depth") {
                None => 1,
                Some(HpValue::Int(d)) if *d >= 1 => *d as usize,
                Some(v) => {
                    return Err(terrain_model::Error::config(
                        "depth",
                        v,
                        "must be an integer ≥ 1",
                    ));
                }
            };
            arch = arch.replace("{hidden}", &vec![width; depth].join("-"));
        }
        for (k, v) in &settings {
            arch = arch.replace(&format!("{{{k}}}"), &v.to_string());
        }
        arch.parse()
    }

    /// The training recipe of configuration `c` on `data`, and its objective (`None`: ERM).
    /// Invalid combinations are [`terrain_model::Error::InvalidConfig`] errors naming the setting.
    pub fn run_spec(
        &self,
        c: &Configuration,
        data: &str,
    ) -> terrain_model::Result<(RunSpec, Option<terrain_robust::ObjectiveSpec>)> {
        let mut spec = RunSpec::new(self.arch_for(c)?, data, c.seed);
        spec.data.holdout = self.data.holdout;
        spec.data.validation = self.data.validation;
        spec.data.standardize = self.data.standardize;
        spec.data.subset = c.subset;
        spec.training.epochs = *self.epochs.last().expect("at least one epoch count");
        let mut settings = self.settings(c);
        // The optimiser first: momentum and weight decay refine it.
        settings.sort_by_key(|(k, _)| k != "optimizer");
        let mut objective = None;
        let num = |k: &str, v: &HpValue| {
            v.as_f64()
                .ok_or_else(|| terrain_model::Error::config(k, v, "must be a number"))
        };
        for (k, v) in &settings {
            match k.as_str() {
                "lr" => spec.training.lr = num(k, v)?,
                "batch_size" => match v {
                    HpValue::Int(i) if *i >= 1 => spec.training.batch_size = *i as usize,
                    _ => return Err(terrain_model::Error::config(k, v, "must be an integer ≥ 1")),
                },
                "optimizer" => spec.training.optimizer = v.to_string().parse::<Optimizer>()?,
                "momentum" => {
                    let m = num(k, v)?;
                    match &mut spec.training.optimizer {
                        Optimizer::Sgd { momentum, .. } => *momentum = m,
                        Optimizer::Adam { beta1, .. } => *beta1 = m,
                    }
                }
                "weight_decay" => {
                    let w = num(k, v)?;
                    match &mut spec.training.optimizer {
                        Optimizer::Sgd { weight_decay, .. }
                        | Optimizer::Adam { weight_decay, .. } => *weight_decay = w,
                    }
                }
                "lr_decay" => spec.training.lr_decay = v.to_string().parse::<LrDecay>()?,
                "mixup" => {
                    let a = num(k, v)?;
                    spec.training.mixup_alpha = (a != 0.0).then_some(a);
                }
                "label_noise" => spec.data.label_noise = num(k, v)?,
                "objective" => {
                    let o: terrain_robust::ObjectiveSpec = v.to_string().parse()?;
                    objective = Some(o);
                }
                _ => {} // epochs (a fidelity), replicate (only the seed) and the arch's names
            }
        }
        spec.check()?;
        if let Some(o) = &objective {
            o.check_training(&spec.training)?;
        }
        Ok((spec, objective))
    }

    /// A stable fingerprint of the space and the data source: what a resumed or merged sweep
    /// must share.
    pub fn fingerprint(&self, data: &str) -> String {
        let json = serde_json::to_string(&(self, data)).expect("a space serialises");
        format!("{:016x}", fnv1a(&json))
    }
}
