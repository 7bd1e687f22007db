//! Honest threading: one place decides how many worker threads candle uses, from what this
//! process may really use, and sets it before candle starts.
//!
//! candle 0.11.1's CPU backend runs on three pools of threads, all sized from the environment:
//! - **candle's barrier pool** (`candle_core::utils::barrier_pool`, threads `candle-bp-N`): unary
//!   and binary elementwise ops on at least 64Ki elements split their work over
//!   `CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else "the physical cores" threads (the
//!   caller plus that many minus one workers). Both sides **spin-wait**: an idle worker spins
//!   25 000 times (`CANDLE_BARRIER_POOL_SPIN_LIMIT`) before it parks, and the calling thread waits
//!   for the workers' results in a spin loop that never yields;
//! - **gemm** (matrix products) gets `Parallelism::Rayon(candle_core::utils::get_num_threads())`
//!   and splits its work over rayon's global pool;
//! - **rayon's global pool** (convolutions, sorts, gemm): `RAYON_NUM_THREADS`, else
//!   [`std::thread::available_parallelism`], sized once, when first used.
//!
//! Without `RAYON_NUM_THREADS`, candle's "physical cores" on Linux is the `cpu cores` count of
//! `/proc/cpuinfo` (unless `CANDLE_CPU_MASK` is set): the **affinity mask** (`taskset`, cpusets,
//! Slurm/Kubernetes CPU pinning) and **cgroup CPU quotas are ignored**. Pinned to one core of
//! a 2-core machine, candle therefore starts one barrier-pool worker on the same core as the
//! caller; at every large elementwise op the caller spins until the scheduler preempts it, the
//! worker runs its half, then spins itself before parking. `perf record` of the pinned gradient +
//! HVP benchmark (dev profile, 20 repetitions each): 51% of the time in `BarrierGuard::drop` (the
//! caller's spin), 26% in the worker's spin loop, 14% in gemm's microkernel (the real work);
//! `perf stat`: 10 630 context switches and 6.4 s of CPU, against 148 and 1.1 s once the count
//! follows the mask. rayon itself is not the culprit: its pool follows the mask (1 thread), and
//! its idle workers yield and then sleep.
//!
//! [`plan`] computes the CPUs this process may use ([`CpuLimits`]: the affinity mask and the
//! cgroup v1/v2 CPU quota, the smaller of the two, at least 1) and picks the worker count (an
//! explicit request, else `RAYON_NUM_THREADS`/`CANDLE_NUM_THREADS` if the user set one, else the
//! usable CPUs). It only decides: the binaries' start-up (terrain-cli's `startup::start`, which
//! the `terrain` binary and xtask call at the very start of `main`, before any candle op and
//! before other threads exist) writes the count to both variables, so that candle's barrier pool
//! and `get_num_threads()` agree with it, and builds rayon's global pool with exactly that many
//! threads. With one usable CPU the barrier pool has no workers and gemm runs single-threaded: no
//! thread is left to spin. The global `--threads N` / `TERRAIN_THREADS` override the decision.
//! A library never writes the environment or builds the global pool.
//!
//! # What was measured
//!
//! `cargo xtask bench curvature --model mlp:784-256-256-10:relu --reps 10` (batch 256, f32,
//! medians in ms) on the 2-core CI-class machine (AMD EPYC, 2 cores in `/proc/cpuinfo`, no cgroup
//! quota), two quiet runs (values separated by commas); the bench measures the pinned and
//! one-thread rows in child processes. "candle only" is the behaviour before this module (the hidden xtask flag
//! `--candle-threads` skips the start-up's thread sizing); "pinned" is `sched_setaffinity` to one CPU, as
//! `taskset -c 0`.
//!
//! | MLP 784-256-256-10, release | threads (candle / rayon) | gradient | HVP |
//! |---|---|---|---|
//! | unpinned, default (2 usable CPUs; before = after) | 2 / 2 | 5.84, 5.83 | 21.1, 18.0 |
//! | unpinned, `--threads 1` | 1 / 1 | 5.72, 5.80 | 17.3, 17.4 |
//! | pinned to 1 core, **before** (candle alone) | 2 / 1 | **41.9, 40.9** | **192.9, 192.3** |
//! | pinned to 1 core, **after** (1 usable CPU) | 1 / 1 | **5.86, 5.88** | **17.2, 17.4** |
//!
//! (two quiet runs; a third, started while a build ran, gave 6.04 pinned against 7.20 one-thread.)
//! Pinned / one thread: gradient **7.3× / 7.1× before, 1.02× / 1.01× after**; HVP 11.2× / 11.0×
//! before, 0.99× / 1.00× after. Unpinned, two threads cost the same as one on this model; while
//! another process keeps the second core busy, two threads fall to 34–53 ms per gradient (the
//! caller spins on a descheduled barrier-pool worker), where one thread stays at about 6 ms: on a
//! shared machine, `--threads 1` is the robust choice.
//!
//! # Safety of the environment write
//!
//! Since edition 2024 `std::env::set_var` is `unsafe`: another thread reading the environment at
//! the same time (glibc's `getenv`) is a data race. So only a binary writes the two variables,
//! first thing in `main`, before any thread is spawned; rayon's workers are started after the
//! write. There is no safe alternative: candle reads its thread counts from the environment only.
//! Code that cannot guarantee this (a library, a test harness) sets `RAYON_NUM_THREADS` in the
//! environment of the process instead.

use std::path::{Path, PathBuf};

/// The environment variable rayon's global pool and candle's `get_num_threads()` read.
pub const RAYON_ENV: &str = "RAYON_NUM_THREADS";

/// The environment variable candle's barrier pool reads before [`RAYON_ENV`].
pub const CANDLE_ENV: &str = "CANDLE_NUM_THREADS";

/// Why a thread count could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadsError {
    /// Zero threads were asked for.
    #[error("the number of threads must be at least 1 (got 0)")]
    Zero,
    /// A thread count that is not a number.
    #[error("invalid number of threads `{value}`: expected a whole number, at least 1")]
    Invalid {
        /// What was given.
        value: String,
    },
    /// rayon's global pool already runs with another number of threads: it is built once, by
    /// the first parallel candle op or the binary's start-up.
    #[error(
        "cannot use {requested} threads: rayon's global thread pool is already built with {built} \
         threads (configure threads at the start of main, before any candle op)"
    )]
    AlreadyBuilt {
        /// The count asked for now.
        requested: usize,
        /// The count the pool runs with.
        built: usize,
    },
    /// rayon could not start its threads.
    #[error("cannot start rayon's thread pool with {threads} threads: {reason}")]
    Build {
        /// The count asked for.
        threads: usize,
        /// What rayon said.
        reason: String,
    },
}

/// What limits the CPUs this process may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuLimits {
    /// CPUs online on the machine (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
    pub online: usize,
    /// CPUs in this thread's affinity mask (`sched_getaffinity`, else `Cpus_allowed_list` of
    /// `/proc/self/status`); `None` if neither could be read.
    pub affinity: Option<usize>,
    /// The cgroup CPU quota in CPUs (quota / period; the smallest along the cgroup's ancestors, v1
    /// and v2); `None` when unlimited or unreadable.
    pub quota: Option<f64>,
}

impl CpuLimits {
    /// Reads the limits of the calling process (Linux; elsewhere only [`std::thread::available_parallelism`]).
    pub fn read() -> Self {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: sysconf only reads a system value.
            let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            let affinity = affinity_cpus().map(|c| c.len()).or_else(|| {
                std::fs::read_to_string("/proc/self/status")
                    .ok()
                    .and_then(|s| parse_status_cpus_allowed(&s))
            });
            let quota = cgroup_quota(
                &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
                &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            );
            CpuLimits {
                online: usize::try_from(online).unwrap_or(1).max(1),
                affinity,
                quota,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            CpuLimits {
                online: n,
                affinity: Some(n),
                quota: None,
            }
        }
    }

    /// The CPUs this process may really use: the smaller of the affinity mask and the quota
    /// (rounded down: a worker that the quota throttles stalls the others at every barrier),
    /// the online CPUs if neither is known, and at least 1.
    pub fn usable(&self) -> usize {
        let mut n = self.affinity.unwrap_or(self.online);
        if let Some(q) = self.quota {
            n = n.min(quota_to_cpus(q));
        }
        n.max(1)
    }
}

impl std::fmt::Display for CpuLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} online", self.online)?;
        match self.affinity {
            Some(a) => write!(f, ", {a} in the affinity mask")?,
            None => write!(f, ", affinity mask unknown")?,
        }
        match self.quota {
            Some(q) => write!(f, ", cgroup quota {q:.2} CPUs"),
            None => write!(f, ", no cgroup quota"),
        }
    }
}

/// The CPUs this process may really use ([`CpuLimits::usable`] of [`CpuLimits::read`]).
pub fn available_cpus() -> usize {
    CpuLimits::read().usable()
}

/// Where the worker count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadSource {
    /// Asked for explicitly (`--threads`, `TERRAIN_THREADS`).
    Requested,
    /// `RAYON_NUM_THREADS` (or `CANDLE_NUM_THREADS`) was already set in the environment.
    Environment,
    /// The usable CPUs ([`CpuLimits::usable`]).
    Detected,
}

/// The decision [`plan`] takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreadPlan {
    /// Worker threads: rayon's global pool size and candle's `get_num_threads()`.
    pub threads: usize,
    /// Why that many.
    pub source: ThreadSource,
    /// The limits it was decided from.
    pub limits: CpuLimits,
}

impl std::fmt::Display for ThreadPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.source {
            ThreadSource::Requested => "requested",
            ThreadSource::Environment => "from RAYON_NUM_THREADS/CANDLE_NUM_THREADS",
            ThreadSource::Detected => "usable CPUs",
        };
        let s = if self.threads == 1 { "" } else { "s" };
        write!(
            f,
            "{} thread{s} ({why}; CPUs: {})",
            self.threads, self.limits
        )
    }
}

/// Parses a `--threads` value: a whole number, at least 1 (for clap's `value_parser`).
pub fn parse_threads(value: &str) -> Result<usize, ThreadsError> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err(ThreadsError::Zero),
        Ok(n) => Ok(n),
        Err(_) => Err(ThreadsError::Invalid {
            value: value.to_string(),
        }),
    }
}

/// Threads in rayon's global pool (builds it with rayon's defaults if nothing has yet).
pub fn pool_threads() -> usize {
    rayon::current_num_threads()
}

/// Decides the worker count, without touching anything: `requested` if given, else
/// `RAYON_NUM_THREADS` or `CANDLE_NUM_THREADS` if set to a positive number, else the CPUs the
/// process may use ([`available_cpus`]). Applying it (the environment variables candle reads and
/// rayon's global pool) is the binary's start-up (terrain-cli's `startup::start`): a library
/// never sets process-wide state.
pub fn plan(requested: Option<usize>) -> Result<ThreadPlan, ThreadsError> {
    if requested == Some(0) {
        return Err(ThreadsError::Zero);
    }
    let limits = CpuLimits::read();
    let from_env = env_count(RAYON_ENV).or_else(|| env_count(CANDLE_ENV));
    let (threads, source) = match (requested, from_env) {
        (Some(n), _) => (n, ThreadSource::Requested),
        (None, Some(n)) => (n, ThreadSource::Environment),
        (None, None) => (limits.usable(), ThreadSource::Detected),
    };
    Ok(ThreadPlan {
        threads,
        source,
        limits,
    })
}

/// A positive count in environment variable `key`.
fn env_count(key: &str) -> Option<usize> {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// The CPU ids in the calling thread's affinity mask (`sched_getaffinity`), ascending; `None` if
/// it cannot be read (or off Linux).
pub fn affinity_cpus() -> Option<Vec<usize>> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let ok =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
                == 0;
        ok.then(|| cpus_in_set(&set)).filter(|c| !c.is_empty())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The CPU ids set in an affinity mask, ascending.
#[cfg(target_os = "linux")]
pub fn cpus_in_set(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE, the size of the set.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, set) })
        .collect()
}

/// Makes `cmd`'s child process run on CPU `cpu` only (its affinity mask is set between fork and
/// exec, so it needs no `taskset`). The child then sees one usable CPU, as under `taskset -c`.
#[cfg(target_os = "linux")]
pub fn pin_command(cmd: &mut std::process::Command, cpu: usize) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: cpu_set_t is plain data; CPU_SET with an in-range index only sets a bit.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu.min(libc::CPU_SETSIZE as usize - 1), &mut set) };
    // SAFETY: the hook only calls sched_setaffinity, an async-signal-safe system call, on a set
    // prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }
}

/// Parses a kernel CPU list such as `0-3,8,10-11` (`Cpus_allowed_list`, `cpuset.cpus`) into CPU
/// ids, ascending and deduplicated; `None` if it is empty or malformed.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let c: usize = part.parse().ok()?;
                (c, c)
            }
        };
        if a > b || b - a > 1 << 20 {
            return None;
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

/// The number of CPUs in the `Cpus_allowed_list:` line of `/proc/self/status`.
pub fn parse_status_cpus_allowed(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
        .map(|c| c.len())
}

/// Parses cgroup v2 `cpu.max` (`"$MAX $PERIOD"`): the quota in CPUs, `None` for `max`
/// (unlimited) or malformed content.
pub fn parse_cpu_max(content: &str) -> Option<f64> {
    let mut it = content.split_whitespace();
    let quota = it.next()?;
    let period = it.next().unwrap_or("100000");
    if quota == "max" || it.next().is_some() {
        return None;
    }
    ratio(quota, period)
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`: the quota in CPUs, `None` for
/// `-1` (unlimited) or malformed content.
pub fn parse_cfs_quota(quota_us: &str, period_us: &str) -> Option<f64> {
    ratio(quota_us.trim(), period_us.trim())
}

fn ratio(quota: &str, period: &str) -> Option<f64> {
    let q: i64 = quota.parse().ok()?;
    let p: i64 = period.parse().ok()?;
    (q > 0 && p > 0).then(|| q as f64 / p as f64)
}

/// Whole CPUs a quota allows: rounded down, at least 1.
pub fn quota_to_cpus(quota: f64) -> usize {
    if quota.is_finite() && quota >= 1.0 {
        // Tiny slack so 2.9999999 from a rounding period still counts 3.
        (quota + 1e-9).floor() as usize
    } else {
        1
    }
}

/// A cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// `true` for the unified (v2) hierarchy.
    pub v2: bool,
    /// The path inside the hierarchy that is mounted (`/` unless a container bind-mounts a subtree).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
}

/// The cgroup v2 mounts and the v1 mounts of the `cpu` controller in `/proc/self/mountinfo`.
pub fn parse_mountinfo(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mount_point options [optional...] - fstype source super_options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.is_empty() {
            continue;
        }
        let v2 = match right[0] {
            "cgroup2" => true,
            "cgroup"
                if right
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == "cpu")) =>
            {
                false
            }
            _ => continue,
        };
        out.push(CgroupMount {
            v2,
            root: unescape(left[3]),
            mount_point: PathBuf::from(unescape(left[4])),
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal `\040` etc.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                u8::try_from(d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'))).ok()
            });
        match octal {
            Some(v) if b[i] == b'\\' => {
                out.push(v);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The process's cgroup paths from `/proc/self/cgroup`: (the v2 path, the v1 `cpu` controller's path).
pub fn parse_proc_cgroup(content: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in content.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "cpu") {
            v1 = Some(path.to_string());
        }
    }
    (v2, v1)
}

/// The directory of the cgroup `path` under `mount`: `path` made relative to the mounted root;
/// the mount point itself when that is not possible (a container seeing a host path).
pub fn cgroup_dir(mount: &CgroupMount, path: &str) -> PathBuf {
    let root = mount.root.trim_end_matches('/');
    match path.strip_prefix(root) {
        Some(rel) if rel.is_empty() || rel.starts_with('/') => {
            mount.mount_point.join(rel.trim_start_matches('/'))
        }
        _ => mount.mount_point.clone(),
    }
}

/// The smallest quota (in CPUs) from `dir` up to `top` (inclusive): a parent's limit caps its
/// children. v2 reads `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`.
pub fn quota_along(dir: &Path, top: &Path, v2: bool) -> Option<f64> {
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let mut best: Option<f64> = None;
    let mut d = if dir.starts_with(top) { dir } else { top };
    loop {
        let q = if v2 {
            read(d.join("cpu.max")).and_then(|s| parse_cpu_max(&s))
        } else {
            match (
                read(d.join("cpu.cfs_quota_us")),
                read(d.join("cpu.cfs_period_us")),
            ) {
                (Some(q), Some(p)) => parse_cfs_quota(&q, &p),
                _ => None,
            }
        };
        if let Some(q) = q {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
        if d == top {
            break;
        }
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    best
}

/// The cgroup CPU quota of the process described by `/proc/self/cgroup` and
/// `/proc/self/mountinfo` contents, v1 and v2, the smallest found; `None` if unlimited.
pub fn cgroup_quota(proc_cgroup: &str, mountinfo: &str) -> Option<f64> {
    let (v2_path, v1_path) = parse_proc_cgroup(proc_cgroup);
    let mut best: Option<f64> = None;
    for m in parse_mountinfo(mountinfo) {
        let Some(path) = (if m.v2 { &v2_path } else { &v1_path }) else {
            continue;
        };
        let mut dir = cgroup_dir(&m, path);
        if !dir.is_dir() {
            dir = m.mount_point.clone();
        }
        if let Some(q) = quota_along(&dir, &m.mount_point, m.v2) {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_v2() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("max"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("150000 100000"), Some(1.5));
        assert_eq!(parse_cpu_max("50000"), Some(0.5));
        for bad in [
            "",
            "\n",
            "abc 100000",
            "100000 0",
            "-5 100000",
            "1 2 3",
            "1.5 100000",
        ] {
            assert_eq!(parse_cpu_max(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cfs_quota_v1() {
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("50000\n", "100000\n"), Some(0.5));
        assert_eq!(parse_cfs_quota("300000", "100000"), Some(3.0));
        assert_eq!(parse_cfs_quota("garbage", "100000"), None);
        assert_eq!(parse_cfs_quota("100000", ""), None);
        assert_eq!(parse_cfs_quota("100000", "0"), None);
    }

    #[test]
    fn quota_rounds_down_to_at_least_one() {
        assert_eq!(quota_to_cpus(0.5), 1);
        assert_eq!(quota_to_cpus(1.5), 1);
        assert_eq!(quota_to_cpus(2.0), 2);
        assert_eq!(quota_to_cpus(2.999_999_999_9), 3);
        assert_eq!(quota_to_cpus(f64::NAN), 1);
    }

    #[test]
    fn cpu_lists_and_status() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("1,1,0-1"), Some(vec![0, 1]));
        for bad in ["", "3-1", "a", "0-", "1,x"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
        let status = "Name:\tcat\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1,6\nMems_allowed:\t1\n";
        assert_eq!(parse_status_cpus_allowed(status), Some(3));
        assert_eq!(parse_status_cpus_allowed("Name:\tcat\n"), None);
        assert_eq!(
            parse_status_cpus_allowed("Cpus_allowed_list:\tjunk\n"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn affinity_mask_counts_set_bits() {
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        assert!(cpus_in_set(&set).is_empty());
        for c in [0, 2, 5, 130] {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        assert_eq!(cpus_in_set(&set), vec![0, 2, 5, 130]);
        let mine = affinity_cpus().expect("sched_getaffinity works on Linux");
        assert!(!mine.is_empty());
    }

    #[test]
    fn limits_take_the_smaller_and_at_least_one() {
        let l = |affinity, quota| CpuLimits {
            online: 8,
            affinity,
            quota,
        };
        assert_eq!(l(Some(4), None).usable(), 4);
        assert_eq!(l(Some(4), Some(2.5)).usable(), 2);
        assert_eq!(l(Some(1), Some(16.0)).usable(), 1);
        assert_eq!(l(None, None).usable(), 8);
        assert_eq!(l(None, Some(0.2)).usable(), 1);
        assert_eq!(l(Some(0), None).usable(), 1);
        let read = CpuLimits::read();
        assert!(read.usable() >= 1 && read.usable() <= read.online.max(read.usable()));
    }

    #[test]
    fn proc_cgroup_v1_and_v2() {
        let v1 = "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n0::/\n";
        assert_eq!(
            parse_proc_cgroup(v1),
            (Some("/".into()), Some("/docker/abc".into()))
        );
        let v2 = "0::/user.slice/user-1000.slice/session-3.scope\n";
        assert_eq!(
            parse_proc_cgroup(v2),
            (
                Some("/user.slice/user-1000.slice/session-3.scope".into()),
                None
            )
        );
        assert_eq!(parse_proc_cgroup("garbage\n\n"), (None, None));
        // cpuacct alone is not the cpu controller
        assert_eq!(parse_proc_cgroup("2:cpuacct:/x\n"), (None, None));
    }

    #[test]
    fn mountinfo_finds_cgroup_mounts() {
        let mi = "\
25 30 0:23 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n\
33 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct\n\
34 25 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
35 25 0:30 /docker/abc /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,cpu\n\
40 30 0:40 / /proc rw - proc proc rw\n\
broken line\n";
        let m = parse_mountinfo(mi);
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].v2 && m[0].mount_point == Path::new("/sys/fs/cgroup"));
        assert!(!m[1].v2 && m[1].mount_point == Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[2].root, "/docker/abc");
        assert_eq!(m[2].mount_point, Path::new("/sys/fs/cgroup/my dir"));
        // Paths relative to the mounted root; a host path outside it gives the mount point.
        assert_eq!(cgroup_dir(&m[0], "/a/b"), Path::new("/sys/fs/cgroup/a/b"));
        assert_eq!(cgroup_dir(&m[0], "/"), Path::new("/sys/fs/cgroup"));
        assert_eq!(
            cgroup_dir(&m[2], "/docker/abc/x"),
            Path::new("/sys/fs/cgroup/my dir/x")
        );
        assert_eq!(
            cgroup_dir(&m[2], "/docker/abcd"),
            Path::new("/sys/fs/cgroup/my dir")
        );
        assert_eq!(
            cgroup_dir(&m[2], "/other"),
            Path::new("/sys/fs/cgroup/my dir")
        );
    }

    #[test]
    fn quota_is_the_smallest_along_the_ancestors() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path();
        let leaf = top.join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(top.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(top.join("a/cpu.max"), "150000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "400000 100000\n").unwrap();
        assert_eq!(quota_along(&leaf, top, true), Some(1.5));
        std::fs::write(top.join("a/cpu.max"), "not a number\n").unwrap();
        assert_eq!(quota_along(&leaf, top, true), Some(4.0));
        // v1 files; unreadable or unlimited gives no quota
        std::fs::write(leaf.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        std::fs::write(leaf.join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(quota_along(&leaf, top, false), None);
        std::fs::write(top.join("cpu.cfs_quota_us"), "200000\n").unwrap();
        std::fs::write(top.join("cpu.cfs_period_us"), "100000\n").unwrap();
        assert_eq!(quota_along(&leaf, top, false), Some(2.0));
        // A cgroup file set that does not exist at all
        assert_eq!(cgroup_quota("0::/nowhere\n", "garbage\n"), None);
    }

    #[test]
    fn thread_counts_parse() {
        assert_eq!(parse_threads("4"), Ok(4));
        assert_eq!(parse_threads(" 1 "), Ok(1));
        assert_eq!(parse_threads("0"), Err(ThreadsError::Zero));
        assert!(matches!(
            parse_threads("-1"),
            Err(ThreadsError::Invalid { .. })
        ));
        assert!(matches!(
            parse_threads("two"),
            Err(ThreadsError::Invalid { .. })
        ));
    }

    #[test]
    fn zero_threads_is_an_error() {
        let e = plan(Some(0)).unwrap_err();
        assert_eq!(e, ThreadsError::Zero);
        assert!(e.to_string().contains("at least 1"), "{e}");
    }
}
