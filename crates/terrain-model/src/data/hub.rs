//! Hugging Face Hub image datasets (MNIST, Fashion-MNIST, CIFAR-10): where they live on the Hub,
//! how to decode their parquet files (PNG images and integer labels) into a [`Dataset`], and how
//! to fetch them into the data directory as the safetensors files that [`super::load`] reads
//! (`{data_dir}/{name}-{split}.safetensors`).
//!
//! Parquet files are found through hf-hub 0.4's cache layout, shared with Python's
//! `huggingface_hub`: `{cache}/datasets--{org}--{repo}/snapshots/{commit}/{file}`, with
//! `{cache}/datasets--{org}--{repo}/refs/main` holding the commit. The cache is `$HF_HUB_CACHE`,
//! else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. With `HF_HUB_OFFLINE=1` (or
//! `offline = true`) only the cache is used; otherwise a missing file is downloaded into the cache
//! (from `$HF_ENDPOINT`, default `https://huggingface.co`).
//!
//! The functions that matter take their cache and offline mode as a [`HubOptions`] value, so
//! that tests need no environment variables; [`HubOptions::from_env`] and [`fetch`] are the thin
//! wrappers that read the environment. [`fixture`] builds Hub-shaped parquet files and fake
//! caches for tests that must not touch the network.

use std::fs::File;
use std::io::{Cursor, Read as _};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type as SchemaType;

use super::{Dataset, Targets, Task, file, hub_path};
use crate::error::{Error, Result};

/// A Hugging Face Hub image-classification dataset stored as one parquet file per split, each
/// row an image (a struct `{bytes: binary, path: string}` holding a PNG) and an integer label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubDataset {
    /// terrain's name for it (`mnist`), as in [`super::HUB_NAMES`].
    pub name: &'static str,
    /// The Hub dataset repository (`ylecun/mnist`).
    pub repo: &'static str,
    /// The train split's parquet file, as a path inside the repository.
    pub train_file: &'static str,
    /// The test split's parquet file, as a path inside the repository.
    pub test_file: &'static str,
    /// The column holding the images.
    pub image_column: &'static str,
    /// The column holding the integer labels.
    pub label_column: &'static str,
    /// The shape of one image, `[channels, height, width]`.
    pub shape: [usize; 3],
    /// The number of classes; labels lie in `0..classes`.
    pub classes: usize,
}

/// The splits every [`HubDataset`] has, in the order [`fetch`] writes them.
pub const SPLITS: [&str; 2] = ["train", "test"];

/// The supported Hub datasets. Paths and columns are those of the repositories' parquet
/// conversions (`main` branch).
pub const DATASETS: &[HubDataset] = &[
    HubDataset {
        name: "mnist",
        repo: "ylecun/mnist",
        train_file: "mnist/train-00000-of-00001.parquet",
        test_file: "mnist/test-00000-of-00001.parquet",
        image_column: "image",
        label_column: "label",
        shape: [1, 28, 28],
        classes: 10,
    },
    HubDataset {
        name: "fashion-mnist",
        repo: "zalando-datasets/fashion_mnist",
        train_file: "fashion_mnist/train-00000-of-00001.parquet",
        test_file: "fashion_mnist/test-00000-of-00001.parquet",
        image_column: "image",
        label_column: "label",
        shape: [1, 28, 28],
        classes: 10,
    },
    HubDataset {
        name: "cifar10",
        repo: "uoft-cs/cifar10",
        train_file: "plain_text/train-00000-of-00001.parquet",
        test_file: "plain_text/test-00000-of-00001.parquet",
        image_column: "img",
        label_column: "label",
        shape: [3, 32, 32],
        classes: 10,
    },
];

impl HubDataset {
    /// The parquet file of `split` (`train` or `test`) inside the repository.
    pub fn file(&self, split: &str) -> Result<&'static str> {
        match split {
            "train" => Ok(self.train_file),
            "test" => Ok(self.test_file),
            other => Err(hub_error(
                self.name,
                format!("unknown split `{other}` (known: {})", SPLITS.join(", ")),
            )),
        }
    }

    /// The name a decoded split carries: `mnist` for train, `mnist:test` for test (the source
    /// strings [`super::load`] accepts).
    pub fn dataset_name(&self, split: &str) -> String {
        if split == "train" {
            self.name.to_string()
        } else {
            format!("{}:{split}", self.name)
        }
    }

    /// Where [`fetch`] writes `split` in `data_dir`: `{data_dir}/{name}-{split}.safetensors`.
    pub fn output_path(&self, data_dir: &Path, split: &str) -> PathBuf {
        hub_path(data_dir, self.name, split)
    }
}

fn hub_error(name: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Hub {
        name: name.into(),
        reason: reason.into(),
    }
}

/// The [`HubDataset`] called `name` (case-insensitive, `_` and `-` alike), or an
/// [`Error::Hub`] listing the known names.
pub fn spec(name: &str) -> Result<&'static HubDataset> {
    let norm = super::normalise_name(name);
    DATASETS.iter().find(|d| d.name == norm).ok_or_else(|| {
        let known: Vec<&str> = DATASETS.iter().map(|d| d.name).collect();
        hub_error(
            name,
            format!("unknown hub dataset (known: {})", known.join(", ")),
        )
    })
}

/// Where to look for Hub files and whether to download them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The hf-hub cache directory (the one holding `datasets--{org}--{repo}` folders).
    pub cache_dir: PathBuf,
    /// Use only the cache; a missing file is an error instead of a download.
    pub offline: bool,
    /// The Hub endpoint to download from; `None` means `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Show a progress bar while downloading (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl HubOptions {
    /// Options for the cache at `cache_dir`: online, default endpoint, progress bar on.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        HubOptions {
            cache_dir: cache_dir.into(),
            offline: false,
            endpoint: None,
            progress: true,
        }
    }

    /// Options from the environment: the cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub` (as `hf_hub::Cache::from_env`); offline when `HF_HUB_OFFLINE`
    /// is `1`/`true`/`yes`/`on`; the endpoint is `$HF_ENDPOINT` when set. Without `HF_HOME` and
    /// without a home directory, the cache is `.cache/huggingface/hub` under the working directory.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let cache_dir = match var("HF_HUB_CACHE") {
            Some(dir) => PathBuf::from(dir),
            // hf_hub::Cache::from_env panics when there is neither HF_HOME nor a home directory.
            None if var("HF_HOME").is_none() && std::env::home_dir().is_none() => {
                PathBuf::from(".cache/huggingface/hub")
            }
            None => hf_hub::Cache::from_env().path().clone(),
        };
        HubOptions {
            cache_dir,
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v)),
            endpoint: var("HF_ENDPOINT"),
            progress: true,
        }
    }
}

/// Whether `HF_HUB_OFFLINE` asks for offline mode (`1`, `true`, `yes`, `on`, any case).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| is_truthy(&v))
}

fn is_truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The cache folder of `spec`'s repository: `{cache_dir}/datasets--{org}--{repo}`.
pub fn repo_cache_dir(spec: &HubDataset, cache_dir: &Path) -> PathBuf {
    cache_dir.join(hf_hub::Repo::dataset(spec.repo.to_string()).folder_name())
}

/// The cached parquet file of `split`, if the cache has it (never touches the network).
pub fn cached_file(spec: &HubDataset, split: &str, cache_dir: &Path) -> Result<Option<PathBuf>> {
    let file = spec.file(split)?;
    Ok(hf_hub::Cache::new(cache_dir.to_path_buf())
        .dataset(spec.repo.to_string())
        .get(file))
}

/// The local path of `split`'s parquet file: from the cache when it is there; otherwise, unless
/// `opts.offline`, downloaded into the cache. Offline with the file missing, the
/// [`Error::Hub`] names the repository, the file and the cache folder looked in.
pub fn locate(spec: &HubDataset, split: &str, opts: &HubOptions) -> Result<PathBuf> {
    let file = spec.file(split)?;
    if let Some(path) = cached_file(spec, split, &opts.cache_dir)? {
        tracing::debug!(repo = spec.repo, file, path = %path.display(), "found in the Hugging Face cache");
        return Ok(path);
    }
    let repo_dir = repo_cache_dir(spec, &opts.cache_dir);
    if opts.offline {
        return Err(hub_error(
            spec.name,
            format!(
                "`{file}` of dataset repo `{}` is not in the Hugging Face cache (looked in {}); \
                 offline mode (HF_HUB_OFFLINE=1 or --offline) uses only the cache: unset \
                 HF_HUB_OFFLINE and drop --offline to download it",
                spec.repo,
                repo_dir.display()
            ),
        ));
    }
    let endpoint = opts
        .endpoint
        .clone()
        .unwrap_or_else(|| "https://huggingface.co".to_string());
    tracing::info!(repo = spec.repo, file, %endpoint, cache = %opts.cache_dir.display(), "downloading");
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(opts.cache_dir.clone()))
        .with_endpoint(endpoint.clone())
        .with_progress(opts.progress)
        .with_retries(3)
        .build()
        .map_err(|e| hub_error(spec.name, format!("cannot start an HTTP client: {e}")))?;
    api.dataset(spec.repo.to_string()).get(file).map_err(|e| {
        hub_error(
            spec.name,
            format!(
                "downloading `{file}` of dataset repo `{}` from {endpoint} into {} failed: {e} \
                 (with no network, put the file in the cache and set HF_HUB_OFFLINE=1)",
                spec.repo,
                repo_dir.display()
            ),
        )
    })
}

/// Decodes a Hub parquet file of `spec`'s layout into a classification [`Dataset`] called
/// `name`: `x` f32 `[N, C, H, W]` scaled to `[0, 1]`, `y` u32 labels `[N]`.
///
/// Images are PNGs (grayscale, grayscale+alpha, RGB, RGBA or palette; 16-bit is reduced to
/// 8-bit). Alpha is dropped; RGB becomes gray by ITU-R 601 luma for one-channel datasets, gray
/// is repeated for three-channel ones. Every [`Error::Hub`] names the file and, where one is at
/// fault, the row: a missing column, a null or undecodable PNG, an image of the wrong size, a
/// null, non-integer or out-of-range label.
pub fn decode_parquet(name: &str, path: &Path, spec: &HubDataset) -> Result<Dataset> {
    let err = |reason: String| hub_error(name, format!("{}: {reason}", path.display()));
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(f)
        .map_err(|e| err(format!("not a readable parquet file: {e}")))?;
    let file_meta = reader.metadata().file_metadata();
    let root = file_meta.schema();
    let fields = root.get_fields();
    let column = |col: &str| {
        fields
            .iter()
            .find(|f| f.name() == col)
            .cloned()
            .ok_or_else(|| {
                let have: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                err(format!(
                    "no column `{col}` (the file has: {})",
                    if have.is_empty() {
                        "no columns".to_string()
                    } else {
                        have.join(", ")
                    }
                ))
            })
    };
    let projection = SchemaType::group_type_builder(root.name())
        .with_fields(vec![column(spec.image_column)?, column(spec.label_column)?])
        .build()
        .map_err(|e| err(format!("cannot select the image and label columns: {e}")))?;

    let [c, h, w] = spec.shape;
    let per_image = c * h * w;
    // The row count in the footer is a hint only: cap what is reserved up front.
    let hint = usize::try_from(file_meta.num_rows())
        .unwrap_or(0)
        .min(1 << 17);
    let mut x: Vec<f32> = Vec::with_capacity(hint * per_image);
    let mut y: Vec<u32> = Vec::with_capacity(hint);
    let mut scratch = Vec::new();
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| err(format!("cannot read rows: {e}")))?;
    for (r, row) in rows.enumerate() {
        let row = row.map_err(|e| err(format!("row {r}: {e}")))?;
        let get = |col: &str| {
            row.get_column_iter()
                .find(|(k, _)| k.as_str() == col)
                .map(|(_, v)| v)
                .ok_or_else(|| err(format!("row {r}: no column `{col}`")))
        };
        let png_bytes = image_bytes(get(spec.image_column)?)
            .map_err(|m| err(format!("row {r}: column `{}`: {m}", spec.image_column)))?;
        decode_png_into(png_bytes, spec.shape, &mut scratch, &mut x)
            .map_err(|m| err(format!("row {r}: column `{}`: {m}", spec.image_column)))?;
        let label = label_value(get(spec.label_column)?)
            .map_err(|m| err(format!("row {r}: column `{}`: {m}", spec.label_column)))?;
        if label < 0 || label as u64 >= spec.classes as u64 {
            return Err(err(format!(
                "row {r}: label {label} is out of range for {} classes",
                spec.classes
            )));
        }
        y.push(label as u32);
    }
    let n = y.len();
    if n == 0 {
        return Err(err("the file has no rows".to_string()));
    }
    let x = Tensor::from_vec(x, (n, c, h, w), &Device::Cpu)?;
    let y = Tensor::from_vec(y, n, &Device::Cpu)?;
    Dataset::new(
        name,
        x,
        Targets::Classes(y),
        Task::Classification {
            classes: spec.classes,
        },
    )
}

/// The PNG bytes of an image cell: a struct `{bytes, path}` (the Hub's `Image` feature) or a
/// plain binary value.
fn image_bytes(field: &Field) -> std::result::Result<&[u8], String> {
    match field {
        Field::Bytes(b) => Ok(b.data()),
        Field::Group(g) => match g.get_column_iter().find(|(k, _)| k.as_str() == "bytes") {
            Some((_, Field::Bytes(b))) => Ok(b.data()),
            Some((_, Field::Null)) => Err(
                "the image's `bytes` is null (images stored only as a `path` are not supported)"
                    .to_string(),
            ),
            Some((_, other)) => Err(format!("the image's `bytes` is not binary ({other})")),
            None => {
                let have: Vec<&str> = g.get_column_iter().map(|(k, _)| k.as_str()).collect();
                Err(format!(
                    "the image struct has no `bytes` field (it has: {})",
                    have.join(", ")
                ))
            }
        },
        Field::Null => Err("the image is null".to_string()),
        other => Err(format!(
            "not an image (expected a struct {{bytes, path}} or binary, got {other})"
        )),
    }
}

fn label_value(field: &Field) -> std::result::Result<i64, String> {
    match *field {
        Field::Long(v) => Ok(v),
        Field::Int(v) => Ok(v.into()),
        Field::Short(v) => Ok(v.into()),
        Field::Byte(v) => Ok(v.into()),
        Field::UByte(v) => Ok(v.into()),
        Field::UShort(v) => Ok(v.into()),
        Field::UInt(v) => Ok(v.into()),
        Field::ULong(v) => Ok(i64::try_from(v).unwrap_or(i64::MAX)),
        Field::Null => Err("the label is null".to_string()),
        ref other => Err(format!("the label is not an integer ({other})")),
    }
}

/// Decodes one PNG and appends it to `out` as `C×H×W` floats in `[0, 1]`.
fn decode_png_into(
    bytes: &[u8],
    [c, h, w]: [usize; 3],
    scratch: &mut Vec<u8>,
    out: &mut Vec<f32>,
) -> std::result::Result<(), String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("undecodable PNG: {e}"))?;
    let (iw, ih) = (reader.info().width as usize, reader.info().height as usize);
    if (iw, ih) != (w, h) {
        return Err(format!(
            "image is {iw}x{ih} pixels (width x height), expected {w}x{h}"
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "PNG too large to decode".to_string())?;
    scratch.resize(size, 0);
    let frame = reader
        .next_frame(scratch)
        .map_err(|e| format!("undecodable PNG: {e}"))?;
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(format!(
            "unsupported PNG bit depth {:?} after expansion",
            frame.bit_depth
        ));
    }
    let src = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("palette PNG was not expanded".to_string()),
    };
    let hw = h * w;
    if frame.line_size != w * src || frame.buffer_size() < hw * src {
        return Err(format!(
            "PNG decoded to {} bytes, expected {} ({w}x{h}, {src} channels)",
            frame.buffer_size(),
            hw * src
        ));
    }
    let data = &scratch[..hw * src];
    let base = out.len();
    out.resize(base + c * hw, 0.0);
    let dst = &mut out[base..];
    let scale = |v: u8| f32::from(v) / 255.0;
    match (c, src) {
        (1, 1 | 2) => {
            for (i, px) in data.chunks_exact(src).enumerate() {
                dst[i] = scale(px[0]);
            }
        }
        (1, _) => {
            for (i, px) in data.chunks_exact(src).enumerate() {
                dst[i] = scale(luma(px[0], px[1], px[2]));
            }
        }
        (3, 1 | 2) => {
            for (i, px) in data.chunks_exact(src).enumerate() {
                let v = scale(px[0]);
                dst[i] = v;
                dst[hw + i] = v;
                dst[2 * hw + i] = v;
            }
        }
        (3, _) => {
            for (i, px) in data.chunks_exact(src).enumerate() {
                dst[i] = scale(px[0]);
                dst[hw + i] = scale(px[1]);
                dst[2 * hw + i] = scale(px[2]);
            }
        }
        _ => {
            out.truncate(base);
            return Err(format!(
                "datasets with {c} channels are not supported (only 1 or 3)"
            ));
        }
    }
    Ok(())
}

/// ITU-R 601-2 luma, as PIL's `convert("L")`.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// The number of rows of a fetched file, reading only its safetensors header: `Ok(None)` when
/// `path` does not exist, an [`Error::Hub`] when it exists but is not what [`fetch`] writes for
/// `spec` (`x` f32 `[N, C, H, W]`, `y` u32 `[N]`, matching sizes, `classes` in the metadata).
pub fn fetched_rows(spec: &HubDataset, path: &Path) -> Result<Option<usize>> {
    if !path.exists() {
        return Ok(None);
    }
    let bad = |reason: String| hub_error(spec.name, format!("{}: {reason}", path.display()));
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut n8 = [0u8; 8];
    f.read_exact(&mut n8)
        .map_err(|_| bad("too short for a safetensors file".to_string()))?;
    let header_len = u64::from_le_bytes(n8);
    if header_len > 100 << 20 || 8 + header_len > len {
        return Err(bad(format!(
            "not a safetensors file (header length {header_len}, file length {len})"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("unreadable safetensors header: {e}")))?;
    let tensor = |key: &str| -> Result<(String, Vec<usize>, u64, u64)> {
        let t = &header[key];
        let dtype = t["dtype"].as_str().unwrap_or_default().to_string();
        let shape: Option<Vec<usize>> = t["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        let offsets = t["data_offsets"].as_array();
        let off = |i: usize| offsets.and_then(|o| o.get(i)).and_then(|v| v.as_u64());
        match (shape, off(0), off(1)) {
            (Some(shape), Some(a), Some(b)) if a <= b => Ok((dtype, shape, a, b)),
            _ => Err(bad(format!("no valid tensor `{key}`"))),
        }
    };
    let (x_dtype, x_shape, x_a, x_b) = tensor("x")?;
    let (y_dtype, y_shape, y_a, y_b) = tensor("y")?;
    let n = x_shape.first().copied().unwrap_or(0);
    if x_dtype != "F32" || x_shape.len() != 4 || x_shape[1..] != spec.shape || n == 0 {
        return Err(bad(format!(
            "`x` is {x_dtype} {x_shape:?}, expected F32 [N, {}, {}, {}]",
            spec.shape[0], spec.shape[1], spec.shape[2]
        )));
    }
    if y_dtype != "U32" || y_shape != [n] {
        return Err(bad(format!(
            "`y` is {y_dtype} {y_shape:?}, expected U32 [{n}]"
        )));
    }
    let x_bytes = (n * spec.shape.iter().product::<usize>() * 4) as u64;
    if x_b - x_a != x_bytes || y_b - y_a != 4 * n as u64 || 8 + header_len + x_b.max(y_b) != len {
        return Err(bad(
            "tensor sizes do not match the file (truncated or corrupt)".to_string(),
        ));
    }
    let classes = header["__metadata__"]["classes"].as_str();
    if classes != Some(spec.classes.to_string().as_str()) {
        return Err(bad(format!(
            "metadata `classes` is {classes:?}, expected {}",
            spec.classes
        )));
    }
    Ok(Some(n))
}

/// Fetches hub dataset `name` into `data_dir` using the environment's Hugging Face settings
/// ([`HubOptions::from_env`]); `offline = true` forces offline mode (as `HF_HUB_OFFLINE=1`
/// does). See [`fetch_with`].
pub fn fetch(name: &str, data_dir: &Path, offline: bool) -> Result<Vec<PathBuf>> {
    let mut opts = HubOptions::from_env();
    opts.offline |= offline;
    fetch_with(name, data_dir, &opts)
}

/// Fetches hub dataset `name`: for each split in [`SPLITS`], finds its parquet file
/// ([`locate`]: cache, or download unless offline), decodes it ([`decode_parquet`]) and writes
/// `{data_dir}/{name}-{split}.safetensors` (through a temporary file renamed into place).
/// A split whose output already exists and is valid ([`fetched_rows`]) is skipped, so an
/// interrupted fetch resumes; an invalid one is fetched again. Returns the output paths,
/// train first.
pub fn fetch_with(name: &str, data_dir: &Path, opts: &HubOptions) -> Result<Vec<PathBuf>> {
    let spec = spec(name)?;
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
    let mut outputs = Vec::with_capacity(SPLITS.len());
    for split in SPLITS {
        let target = spec.output_path(data_dir, split);
        match fetched_rows(spec, &target) {
            Ok(Some(rows)) => {
                tracing::info!(dataset = spec.name, split, rows, path = %target.display(), "already fetched, skipping");
                outputs.push(target);
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}; fetching it again"),
        }
        let parquet = locate(spec, split, opts)?;
        tracing::info!(dataset = spec.name, split, parquet = %parquet.display(), "decoding");
        let start = std::time::Instant::now();
        let d = decode_parquet(&spec.dataset_name(split), &parquet, spec)?;
        // file::save writes a temporary sibling and renames it into place.
        file::save(&d, &target)?;
        tracing::info!(
            dataset = spec.name,
            split,
            rows = d.len(),
            seconds = format_args!("{:.1}", start.elapsed().as_secs_f64()),
            path = %target.display(),
            "wrote"
        );
        outputs.push(target);
    }
    Ok(outputs)
}

/// Small Hub-shaped files for tests that must not touch the network: PNG encoding, parquet
/// files in the Hub's schema and a fake hf-hub cache holding them.
pub mod fixture {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::{HubDataset, hub_error};
    use crate::error::{Error, Result};

    /// The commit hash [`install`] files under.
    pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    /// One row of a fixture parquet file; `None` writes a null.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Row {
        /// The image cell's PNG bytes.
        pub png: Option<Vec<u8>>,
        /// The label.
        pub label: Option<i64>,
    }

    impl Row {
        /// A row with an image and a label.
        pub fn new(png: Vec<u8>, label: i64) -> Self {
            Row {
                png: Some(png),
                label: Some(label),
            }
        }
    }

    /// Encodes an 8-bit PNG of `width × height` pixels with `channels` channels (1 gray,
    /// 2 gray+alpha, 3 RGB, 4 RGBA) from row-major interleaved `pixels`.
    pub fn encode_png(width: u32, height: u32, channels: usize, pixels: &[u8]) -> Result<Vec<u8>> {
        let color = match channels {
            1 => png::ColorType::Grayscale,
            2 => png::ColorType::GrayscaleAlpha,
            3 => png::ColorType::Rgb,
            4 => png::ColorType::Rgba,
            _ => return Err(Error::config("channels", channels, "must be 1, 2, 3 or 4")),
        };
        let want = width as usize * height as usize * channels;
        if pixels.len() != want {
            return Err(Error::config(
                "pixels",
                pixels.len(),
                format!("must hold {want} bytes ({width}x{height}x{channels})"),
            ));
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let fail = |e: png::EncodingError| hub_error("fixture", format!("PNG encoding: {e}"));
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(pixels).map_err(fail)?;
        writer.finish().map_err(fail)?;
        Ok(out)
    }

    /// Writes `rows` as a parquet file with the Hub's schema for `spec`:
    /// `optional group {image_column} { optional binary bytes; optional binary path (STRING); }`
    /// and `optional int64 {label_column}`, snappy-compressed, one row group.
    pub fn write_parquet(path: &Path, spec: &HubDataset, rows: &[Row]) -> Result<()> {
        let fail = |e: parquet::errors::ParquetError| {
            hub_error(
                spec.name,
                format!("{}: writing parquet: {e}", path.display()),
            )
        };
        let message = format!(
            "message schema {{ optional group {} {{ optional binary bytes; optional binary path (STRING); }} optional int64 {}; }}",
            spec.image_column, spec.label_column
        );
        let schema = Arc::new(parse_message_type(&message).map_err(fail)?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        );
        let out = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut writer = SerializedFileWriter::new(out, schema, props).map_err(fail)?;
        let mut group = writer.next_row_group().map_err(fail)?;
        // Definition levels of both image fields: 2 = present, 0 = the whole image is null.
        let image_defs: Vec<i16> = rows
            .iter()
            .map(|r| if r.png.is_some() { 2 } else { 0 })
            .collect();
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(fail)? {
            match index {
                0 => {
                    // image.bytes
                    let values: Vec<ByteArray> = rows
                        .iter()
                        .filter_map(|r| r.png.clone().map(ByteArray::from))
                        .collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, Some(&image_defs), None)
                        .map_err(fail)?;
                }
                1 => {
                    // image.path: a file name for every present image.
                    let values: Vec<ByteArray> = rows
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.png.is_some())
                        .map(|(i, _)| ByteArray::from(format!("{i}.png").as_str()))
                        .collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, Some(&image_defs), None)
                        .map_err(fail)?;
                }
                _ => {
                    let values: Vec<i64> = rows.iter().filter_map(|r| r.label).collect();
                    let defs: Vec<i16> =
                        rows.iter().map(|r| i16::from(r.label.is_some())).collect();
                    column
                        .typed::<Int64Type>()
                        .write_batch(&values, Some(&defs), None)
                        .map_err(fail)?;
                }
            }
            column.close().map_err(fail)?;
            index += 1;
        }
        group.close().map_err(fail)?;
        writer.close().map_err(fail)?;
        Ok(())
    }

    /// Puts `bytes` into a fake hf-hub cache at `cache_dir` as `split`'s parquet file of `spec`,
    /// in hf-hub 0.4's layout: `{cache_dir}/datasets--{org}--{repo}/snapshots/{COMMIT}/{file}`,
    /// with `refs/main` holding [`COMMIT`]. Returns the file's path.
    pub fn install(
        cache_dir: &Path,
        spec: &HubDataset,
        split: &str,
        bytes: &[u8],
    ) -> Result<PathBuf> {
        let repo_dir = cache_dir.join(format!("datasets--{}", spec.repo.replace('/', "--")));
        let dest = repo_dir
            .join("snapshots")
            .join(COMMIT)
            .join(spec.file(split)?);
        let parent = dest.parent().expect("a snapshot file has a parent");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        std::fs::write(&dest, bytes).map_err(|e| Error::io(&dest, e))?;
        let refs = repo_dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| Error::io(&refs, e))?;
        let main = refs.join("main");
        std::fs::write(&main, COMMIT).map_err(|e| Error::io(&main, e))?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{self, Row};
    use super::*;

    /// A deterministic 8-bit pattern for image `k`: pixel `i` is `(7 i + 13 k) mod 256`.
    fn pattern(k: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| ((7 * i + 13 * k) % 256) as u8).collect()
    }

    fn gray28(k: usize) -> Vec<u8> {
        fixture::encode_png(28, 28, 1, &pattern(k, 28 * 28)).unwrap()
    }

    fn parquet_bytes(spec: &HubDataset, rows: &[Row]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        fixture::write_parquet(&p, spec, rows).unwrap();
        std::fs::read(p).unwrap()
    }

    fn offline(cache: &Path) -> HubOptions {
        HubOptions {
            offline: true,
            // Never reached in offline mode; a dead local port in case it ever were.
            endpoint: Some("http://127.0.0.1:9".into()),
            progress: false,
            ..HubOptions::new(cache)
        }
    }

    fn mnist() -> &'static HubDataset {
        spec("mnist").unwrap()
    }

    fn decode_rows(spec: &HubDataset, rows: &[Row]) -> Result<Dataset> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.parquet");
        fixture::write_parquet(&p, spec, rows).unwrap();
        decode_parquet("t", &p, spec)
    }

    #[test]
    fn table_matches_hub_names() {
        let names: Vec<&str> = DATASETS.iter().map(|d| d.name).collect();
        assert_eq!(names, super::super::HUB_NAMES);
        assert_eq!(
            spec("Fashion_MNIST").unwrap().repo,
            "zalando-datasets/fashion_mnist"
        );
        assert_eq!(spec("cifar10").unwrap().shape, [3, 32, 32]);
        assert_eq!(spec("cifar10").unwrap().image_column, "img");
        let e = spec("svhn").unwrap_err().to_string();
        assert!(
            e.contains("svhn") && e.contains("mnist, fashion-mnist, cifar10"),
            "{e}"
        );
        assert!(mnist().file("val").is_err());
        assert_eq!(mnist().dataset_name("test"), "mnist:test");
    }

    #[test]
    fn truthy_values() {
        for v in ["1", "true", "TRUE", " yes", "On"] {
            assert!(is_truthy(v), "{v}");
        }
        for v in ["0", "false", "", "no", "off", "2"] {
            assert!(!is_truthy(v), "{v}");
        }
    }

    #[test]
    fn fixture_layout_is_what_hf_hub_reads() {
        let cache = tempfile::tempdir().unwrap();
        let dest = fixture::install(cache.path(), mnist(), "train", b"pq").unwrap();
        assert_eq!(
            dest,
            cache.path().join(format!(
                "datasets--ylecun--mnist/snapshots/{}/mnist/train-00000-of-00001.parquet",
                fixture::COMMIT
            ))
        );
        assert_eq!(
            std::fs::read_to_string(cache.path().join("datasets--ylecun--mnist/refs/main"))
                .unwrap(),
            fixture::COMMIT
        );
        assert_eq!(
            cached_file(mnist(), "train", cache.path()).unwrap(),
            Some(dest)
        );
        assert_eq!(cached_file(mnist(), "test", cache.path()).unwrap(), None);
    }

    #[test]
    fn offline_fetch_from_fake_cache() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let spec = mnist();
        let train: Vec<Row> = (0..3)
            .map(|k| Row::new(gray28(k), [3, 0, 9][k] as i64))
            .collect();
        let test: Vec<Row> = (3..5).map(|k| Row::new(gray28(k), k as i64)).collect();
        fixture::install(cache.path(), spec, "train", &parquet_bytes(spec, &train)).unwrap();
        fixture::install(cache.path(), spec, "test", &parquet_bytes(spec, &test)).unwrap();

        let out = fetch_with("mnist", data.path(), &offline(cache.path())).unwrap();
        assert_eq!(
            out,
            vec![
                data.path().join("mnist-train.safetensors"),
                data.path().join("mnist-test.safetensors")
            ]
        );
        let d = file::load(&out[0]).unwrap();
        assert_eq!(d.name, "mnist");
        assert_eq!(d.x.dims(), [3, 1, 28, 28]);
        assert_eq!(d.task, Task::Classification { classes: 10 });
        assert_eq!(d.labels().unwrap().unwrap(), vec![3, 0, 9]);
        let x = d.x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in 0..3 {
            let want: Vec<f32> = pattern(k, 784).iter().map(|&v| v as f32 / 255.0).collect();
            assert_eq!(&x[k * 784..(k + 1) * 784], &want[..], "image {k}");
        }
        let t = file::load(&out[1]).unwrap();
        assert_eq!(t.name, "mnist:test");
        assert_eq!(t.x.dims(), [2, 1, 28, 28]);
        assert_eq!(t.labels().unwrap().unwrap(), vec![3, 4]);
        assert_eq!(fetched_rows(spec, &out[0]).unwrap(), Some(3));
        assert_eq!(fetched_rows(spec, &out[1]).unwrap(), Some(2));
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 2);

        // Through the generic loader too.
        let opts = crate::data::LoadOptions {
            data_dir: Some(data.path().to_path_buf()),
            ..Default::default()
        };
        let loaded = crate::data::load("mnist:test", &opts).unwrap();
        assert_eq!(loaded.len(), 2);
    }

    #[test]
    fn fetch_resumes_and_refetches_invalid_outputs() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let spec = mnist();
        let rows = vec![Row::new(gray28(0), 1), Row::new(gray28(1), 2)];
        let bytes = parquet_bytes(spec, &rows);
        let train_pq = fixture::install(cache.path(), spec, "train", &bytes).unwrap();
        fixture::install(cache.path(), spec, "test", &bytes).unwrap();
        let opts = offline(cache.path());
        let out = fetch_with("mnist", data.path(), &opts).unwrap();

        // With the cache gone, a second fetch still succeeds: both outputs are valid.
        std::fs::remove_file(&train_pq).unwrap();
        assert_eq!(fetch_with("mnist", data.path(), &opts).unwrap(), out);

        // A truncated output is detected and fetched again (which now fails: the cache is gone).
        let full = std::fs::read(&out[0]).unwrap();
        std::fs::write(&out[0], &full[..full.len() - 10]).unwrap();
        let e = fetched_rows(spec, &out[0]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = fetch_with("mnist", data.path(), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mnist/train-00000-of-00001.parquet"), "{e}");

        // Put it back: the train split is rebuilt, the test split skipped.
        fixture::install(cache.path(), spec, "train", &bytes).unwrap();
        fetch_with("mnist", data.path(), &opts).unwrap();
        assert_eq!(fetched_rows(spec, &out[0]).unwrap(), Some(2));
    }

    #[test]
    fn online_mode_uses_the_cache_without_downloading() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let spec = mnist();
        let bytes = parquet_bytes(spec, &[Row::new(gray28(0), 5)]);
        fixture::install(cache.path(), spec, "train", &bytes).unwrap();
        fixture::install(cache.path(), spec, "test", &bytes).unwrap();
        let opts = HubOptions {
            offline: false,
            ..offline(cache.path())
        };
        let out = fetch_with("MNIST", data.path(), &opts).unwrap();
        assert_eq!(
            file::load(&out[0]).unwrap().labels().unwrap().unwrap(),
            vec![5]
        );
    }

    #[test]
    fn offline_missing_file_is_a_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let e = fetch_with("mnist", data.path(), &offline(cache.path()))
            .unwrap_err()
            .to_string();
        for part in [
            "ylecun/mnist",
            "mnist/train-00000-of-00001.parquet",
            "datasets--ylecun--mnist",
            "HF_HUB_OFFLINE",
            "download",
        ] {
            assert!(e.contains(part), "`{part}` missing from: {e}");
        }
        assert!(e.contains(&cache.path().display().to_string()), "{e}");
        assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
    }

    #[test]
    fn cifar_rgb_rgba_and_gray_images() {
        let spec = spec("cifar10").unwrap();
        let rgb = pattern(1, 32 * 32 * 3);
        let rgba = pattern(2, 32 * 32 * 4);
        let gray = pattern(3, 32 * 32);
        let rows = vec![
            Row::new(fixture::encode_png(32, 32, 3, &rgb).unwrap(), 7),
            Row::new(fixture::encode_png(32, 32, 4, &rgba).unwrap(), 0),
            Row::new(fixture::encode_png(32, 32, 1, &gray).unwrap(), 9),
        ];
        let d = decode_rows(spec, &rows).unwrap();
        assert_eq!(d.x.dims(), [3, 3, 32, 32]);
        assert_eq!(d.labels().unwrap().unwrap(), vec![7, 0, 9]);
        let x = d.x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let at = |n: usize, c: usize, i: usize| x[n * 3072 + c * 1024 + i];
        for i in [0, 1, 33, 1023] {
            for c in 0..3 {
                assert_eq!(at(0, c, i), rgb[i * 3 + c] as f32 / 255.0);
                assert_eq!(at(1, c, i), rgba[i * 4 + c] as f32 / 255.0);
                assert_eq!(at(2, c, i), gray[i] as f32 / 255.0);
            }
        }
    }

    #[test]
    fn rgb_png_becomes_gray_for_mnist() {
        let px = [200u8, 100, 50].repeat(28 * 28);
        let d = decode_rows(
            mnist(),
            &[Row::new(fixture::encode_png(28, 28, 3, &px).unwrap(), 1)],
        )
        .unwrap();
        let v = d.x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // PIL: (200*299 + 100*587 + 50*114) / 1000 = 124.2 -> 124.
        assert_eq!(v[0], 124.0 / 255.0);
    }

    #[test]
    fn corrupt_png_names_the_row() {
        let mut truncated = gray28(2);
        truncated.truncate(truncated.len() / 2);
        for bad in [b"not a png at all".to_vec(), truncated] {
            let rows = vec![
                Row::new(gray28(0), 1),
                Row::new(gray28(1), 2),
                Row::new(bad, 3),
            ];
            let e = decode_rows(mnist(), &rows).unwrap_err().to_string();
            assert!(
                e.contains("row 2") && e.contains("PNG") && e.contains("bad.parquet"),
                "{e}"
            );
        }
    }

    #[test]
    fn label_out_of_range_names_the_row() {
        for label in [10, -1] {
            let rows = vec![Row::new(gray28(0), 1), Row::new(gray28(1), label)];
            let e = decode_rows(mnist(), &rows).unwrap_err().to_string();
            assert!(
                e.contains("row 1")
                    && e.contains(&format!("label {label}"))
                    && e.contains("10 classes"),
                "{e}"
            );
        }
    }

    #[test]
    fn wrong_size_null_cells_and_missing_columns() {
        let small = fixture::encode_png(27, 28, 1, &pattern(0, 27 * 28)).unwrap();
        let e = decode_rows(mnist(), &[Row::new(small, 0)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 0") && e.contains("27x28") && e.contains("expected 28x28"),
            "{e}"
        );

        let rows = vec![
            Row::new(gray28(0), 0),
            Row {
                png: None,
                label: Some(1),
            },
        ];
        let e = decode_rows(mnist(), &rows).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("image is null"), "{e}");

        let rows = vec![Row {
            png: Some(gray28(0)),
            label: None,
        }];
        let e = decode_rows(mnist(), &rows).unwrap_err().to_string();
        assert!(e.contains("row 0") && e.contains("label is null"), "{e}");

        // A file with MNIST's columns read as CIFAR-10 (whose image column is `img`).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.parquet");
        fixture::write_parquet(&p, mnist(), &[Row::new(gray28(0), 0)]).unwrap();
        let e = decode_parquet("cifar10", &p, spec("cifar10").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no column `img`") && e.contains("image, label"),
            "{e}"
        );

        let e = decode_rows(mnist(), &[]).unwrap_err().to_string();
        assert!(e.contains("no rows"), "{e}");
    }

    #[test]
    fn not_a_parquet_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.parquet");
        std::fs::write(&p, b"definitely not parquet").unwrap();
        let e = decode_parquet("mnist", &p, mnist())
            .unwrap_err()
            .to_string();
        assert!(e.contains("junk.parquet") && e.contains("parquet"), "{e}");
        let e = decode_parquet("mnist", &dir.path().join("missing.parquet"), mnist()).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
