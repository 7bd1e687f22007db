//! Start-up of terrain's binaries (the `terrain` command and `cargo xtask`): the process-wide
//! settings a library never touches, applied once, first thing in `main`.
//!
//! - `CANDLE_GRAD_DO_NOT_DETACH=1`: candle reads it once per thread, and without it its second
//!   derivatives (double backward) are silently wrong;
//! - glibc's allocator thresholds ([`terrain_model::device::tune_cpu_allocator`]);
//! - the worker count ([`terrain_model::threads::plan`]) written to `RAYON_NUM_THREADS` and
//!   `CANDLE_NUM_THREADS`, and rayon's global pool built with exactly that many threads.
//!
//! The environment is written before any thread exists: [`start`] must be the first thing
//! `main` does after parsing its arguments (clap starts no thread).

use std::ffi::OsStr;

use terrain_model::threads::{self, CANDLE_ENV, RAYON_ENV, ThreadPlan, ThreadsError};

/// How [`start`] sizes the worker threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// `Some(n)`: exactly `n`; `None`: [`threads::plan`]'s choice (the environment, else the
    /// CPUs the process may use).
    Sized(Option<usize>),
    /// Leave candle and rayon to size themselves (the benchmark's "candle's defaults" rows).
    CandleDefaults,
}

/// Applies the process-wide settings and returns the thread plan (`None` with
/// [`Threads::CandleDefaults`]).
///
/// Call it once, at the start of `main`, before any other thread exists and before any candle op:
/// it writes environment variables (unsound while another thread may read the environment) and
/// builds rayon's global pool (built once, by its first use).
pub fn start(threads: Threads) -> Result<Option<ThreadPlan>, ThreadsError> {
    set_env(terrain_model::autodiff::FLAG, "1");
    terrain_model::device::tune_cpu_allocator();
    let Threads::Sized(requested) = threads else {
        return Ok(None);
    };
    let plan = threads::plan(requested)?;
    let value = plan.threads.to_string();
    let previous = [RAYON_ENV, CANDLE_ENV].map(|k| (k, std::env::var_os(k)));
    for key in [RAYON_ENV, CANDLE_ENV] {
        set_env(key, &value);
    }
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .thread_name(|i| format!("rayon-{i}"))
        .build_global()
    {
        let built = rayon::current_num_threads();
        if built != plan.threads {
            // The pool runs with another count: leave the environment as it agrees with it.
            for (key, old) in previous {
                match old {
                    // SAFETY: as in `set_env`; the failure path of the same call.
                    Some(v) => unsafe { std::env::set_var(key, v) },
                    None => unsafe { std::env::remove_var(key) },
                }
            }
            return Err(if e.to_string().contains("already") {
                ThreadsError::AlreadyBuilt {
                    requested: plan.threads,
                    built,
                }
            } else {
                ThreadsError::Build {
                    threads: plan.threads,
                    reason: e.to_string(),
                }
            });
        }
    }
    tracing::trace!(%plan, "threads configured");
    Ok(Some(plan))
}

/// Sets `key` to `value` unless it already has that value.
fn set_env(key: &str, value: &str) {
    if std::env::var_os(key).as_deref() != Some(OsStr::new(value)) {
        // SAFETY: `start`'s precondition: called at the start of main, before any other thread
        // exists (rayon's workers are started after every write).
        unsafe { std::env::set_var(key, value) };
    }
}
