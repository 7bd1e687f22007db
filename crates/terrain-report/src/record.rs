//! Typed results with a kind and a schema version, so what one job writes another reads back.
//!
//! A [`Record`] names its kind and schema version; [`write_json`] wraps a value in a
//! [`Document`] envelope (`{"kind": …, "schema_version": …, "data": …}`) and writes it
//! atomically; [`read_json`] reads it back, checking kind and version first, with errors that
//! name the file and both the expected and the found kind or version.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use terrain_report::record::{Record, read_json, write_json};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Metrics { sharpness: f64 }
//! impl Record for Metrics {
//!     const KIND: &'static str = "metrics";
//!     const SCHEMA_VERSION: u32 = 1;
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("m.json");
//! write_json(&path, &Metrics { sharpness: 12.5 }).unwrap();
//! assert_eq!(read_json::<Metrics>(&path).unwrap(), Metrics { sharpness: 12.5 });
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{Error, Result, fsutil};

/// A result type that travels between jobs as a JSON file.
pub trait Record: Serialize + DeserializeOwned {
    /// What the document holds, e.g. `"metrics"`; a reader refuses another kind.
    const KIND: &'static str;
    /// The version of this type's layout; bump it when a field changes meaning or is removed
    /// (a reader refuses another version).
    const SCHEMA_VERSION: u32;
}

/// The envelope around a record on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document<T> {
    /// [`Record::KIND`] of the writer.
    pub kind: String,
    /// [`Record::SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The record.
    pub data: T,
}

impl<T: Record> Document<T> {
    /// Wraps `data` with its kind and version.
    pub fn new(data: T) -> Self {
        Document {
            kind: T::KIND.to_string(),
            schema_version: T::SCHEMA_VERSION,
            data,
        }
    }
}

/// `value` as a pretty-printed JSON document (the envelope around it).
pub fn to_json_string<T: Record>(value: &T) -> Result<String> {
    #[derive(Serialize)]
    struct Borrowed<'a, T> {
        kind: &'a str,
        schema_version: u32,
        data: &'a T,
    }
    let doc = Borrowed {
        kind: T::KIND,
        schema_version: T::SCHEMA_VERSION,
        data: value,
    };
    let mut s = serde_json::to_string_pretty(&doc).map_err(|e| Error::Json {
        path: PathBuf::from("<memory>"),
        reason: format!("cannot serialise a {:?} record: {e}", T::KIND),
    })?;
    s.push('\n');
    Ok(s)
}

/// Reads a record from JSON `text`; `origin` names it in errors (a path, or `<stdin>`).
pub fn from_json_str<T: Record>(text: &str, origin: &Path) -> Result<T> {
    let json = |reason: String| Error::Json {
        path: origin.to_path_buf(),
        reason,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| json(format!("not valid JSON: {e}")))?;
    let Value::Object(mut map) = v else {
        return Err(json(format!(
            "expected a terrain document (an object with kind, schema_version, data), \
             expected kind {:?}",
            T::KIND
        )));
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) => k.clone(),
        _ => {
            return Err(json(format!(
                "not a terrain document: no \"kind\" field (expected kind {:?})",
                T::KIND
            )));
        }
    };
    if kind != T::KIND {
        return Err(Error::KindMismatch {
            path: origin.to_path_buf(),
            expected: T::KIND.into(),
            found: kind,
        });
    }
    let version = map
        .get("schema_version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| json(format!("{kind:?} document has no valid \"schema_version\"")))?;
    if version != T::SCHEMA_VERSION {
        return Err(Error::SchemaVersionMismatch {
            path: origin.to_path_buf(),
            kind,
            expected: T::SCHEMA_VERSION,
            found: version,
        });
    }
    let data = map
        .remove("data")
        .ok_or_else(|| json(format!("{kind:?} document has no \"data\" field")))?;
    serde_json::from_value(data).map_err(|e| json(format!("{kind:?} document's data: {e}")))
}

/// Writes `value` to `path` in its [`Document`] envelope, atomically.
pub fn write_json<T: Record>(path: &Path, value: &T) -> Result<()> {
    let s = to_json_string(value).map_err(|e| match e {
        Error::Json { reason, .. } => Error::Json {
            path: path.to_path_buf(),
            reason,
        },
        e => e,
    })?;
    fsutil::write_atomic(path, s.as_bytes())
}

/// Reads a `T` written by [`write_json`], checking its kind and schema version.
pub fn read_json<T: Record>(path: &Path) -> Result<T> {
    let bytes = fsutil::read(path)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Json {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })?;
    from_json_str(&text, path)
}
