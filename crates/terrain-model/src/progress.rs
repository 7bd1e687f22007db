//! One progress type for every long loop in terrain's libraries.
//!
//! Libraries cannot draw progress bars (they must not depend on a terminal crate), but their
//! long loops (training, Lanczos, Hutchinson, stochastic Lanczos quadrature, diagonal sweeps) know
//! best how long they are. So every such loop reports to a [`Progress`] handle: a cheap, cloneable
//! handle around an optional [`ProgressSink`]. The default handle is hidden and costs nothing; a
//! binary passes one whose sink draws a bar (terrain-report's indicatif sink, silent when stderr is
//! not a terminal).
//!
//! A loop calls [`Progress::start`] with its label and its true length, [`Progress::set_position`]
//! or [`Progress::inc`] as it goes, and [`Progress::finish`] when done. Successive loops may reuse
//! one handle: each `start` begins a new bar.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use terrain_model::progress::{Progress, ProgressSink};
//!
//! #[derive(Default)]
//! struct Log(Mutex<Vec<String>>);
//! impl ProgressSink for Log {
//!     fn start(&self, label: &str, total: Option<u64>) {
//!         self.0.lock().unwrap().push(format!("{label} {total:?}"));
//!     }
//!     fn set_position(&self, pos: u64) {
//!         self.0.lock().unwrap().push(pos.to_string());
//!     }
//!     fn set_message(&self, _: &str) {}
//!     fn finish(&self) {}
//! }
//!
//! let log = Arc::new(Log::default());
//! let progress = Progress::new(log.clone());
//! progress.start("lanczos", Some(2));
//! progress.inc(1);
//! progress.inc(1);
//! progress.finish();
//! assert_eq!(*log.0.lock().unwrap(), ["lanczos Some(2)", "1", "2"]);
//! assert!(Progress::hidden().is_hidden());
//! ```

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

/// Where progress goes: implemented by whatever shows it (a terminal bar, a log, a test).
pub trait ProgressSink: Send + Sync {
    /// A new loop begins: `label` names it, `total` is its length in steps when known.
    fn start(&self, label: &str, total: Option<u64>);
    /// `pos` steps of the current loop are done.
    fn set_position(&self, pos: u64);
    /// A short status line (the current loss, the method in use).
    fn set_message(&self, message: &str);
    /// The current loop is done (a bar is cleared).
    fn finish(&self);
}

/// A cheap, cloneable progress handle; [`Progress::hidden`] (the default) reports nowhere.
///
/// Configs carry one as a field that is skipped by serde and ignored by equality: progress never
/// changes a result.
#[derive(Clone, Default)]
pub struct Progress {
    sink: Option<Arc<dyn ProgressSink>>,
    position: Arc<AtomicU64>,
}

impl Progress {
    /// A handle that reports to `sink`.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Self {
        Progress {
            sink: Some(sink),
            position: Arc::default(),
        }
    }

    /// A handle that reports nowhere.
    pub fn hidden() -> Self {
        Progress::default()
    }

    /// Whether this handle reports nowhere.
    pub fn is_hidden(&self) -> bool {
        self.sink.is_none()
    }

    /// Begins a loop named `label` of `total` steps (`None`: length unknown).
    pub fn start(&self, label: &str, total: Option<u64>) {
        self.position.store(0, Ordering::Relaxed);
        if let Some(s) = &self.sink {
            s.start(label, total);
        }
    }

    /// Sets the number of steps done.
    pub fn set_position(&self, pos: u64) {
        self.position.store(pos, Ordering::Relaxed);
        if let Some(s) = &self.sink {
            s.set_position(pos);
        }
    }

    /// Adds `n` steps done.
    pub fn inc(&self, n: u64) {
        let pos = self.position.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(s) = &self.sink {
            s.set_position(pos);
        }
    }

    /// The number of steps done in the current loop.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// Shows a short status message.
    pub fn set_message(&self, message: &str) {
        if let Some(s) = &self.sink {
            s.set_message(message);
        }
    }

    /// Ends the current loop.
    pub fn finish(&self) {
        if let Some(s) = &self.sink {
            s.finish();
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_hidden() {
            "Progress(hidden)"
        } else {
            "Progress(shown)"
        })
    }
}

/// Progress never changes a result, so every handle equals every other: configs that hold one
/// compare by their real settings.
impl PartialEq for Progress {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
