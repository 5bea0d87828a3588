//! What runs on the host, read from `/proc`: processes by command line, the native sandbox's
//! processes, and waiting for a run to start or to be gone.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

/// A process seen in `/proc`.
pub struct Proc {
    pub pid: u32,
    /// The `Uid:` line of its status: real, effective, saved and file-system uid.
    pub uids: Vec<u32>,
    /// The `State:` line of its status.
    pub state: String,
    /// Its command line, NULs turned into spaces.
    pub cmd: String,
}

impl Proc {
    /// The real uid.
    pub fn uid(&self) -> Option<u32> {
        self.uids.first().copied()
    }
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} uids {:?}: {} [{}]",
            self.pid, self.uids, self.cmd, self.state
        )
    }
}

/// Every process on the host but this one (a process that exits meanwhile is left out).
pub fn processes() -> Vec<Proc> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let (Ok(raw), Ok(status)) = (
            std::fs::read(e.path().join("cmdline")),
            std::fs::read_to_string(e.path().join("status")),
        ) else {
            continue;
        };
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("");
        out.push(Proc {
            pid,
            uids: field("Uid:")
                .split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect(),
            state: field("State:").trim().to_string(),
            cmd: String::from_utf8_lossy(&raw).replace('\0', " "),
        });
    }
    out
}

/// Host processes, of any user, whose command line contains `needle`.
pub fn procs_with(needle: &str) -> Vec<Proc> {
    processes()
        .into_iter()
        .filter(|p| p.cmd.contains(needle))
        .collect()
}

/// The uids the native sandbox runs programs as.
pub fn sandbox_uids() -> Range<u32> {
    let cfg = isobox_sandbox::NativeConfig::default();
    cfg.uid..cfg.uid + cfg.uid_count
}

/// Sandbox processes (real uid in the sandbox range) whose command line contains `needle`.
pub fn sandbox_procs_with(needle: &str) -> Vec<Proc> {
    let uids = sandbox_uids();
    procs_with(needle)
        .into_iter()
        .filter(|p| p.uid().is_some_and(|u| uids.contains(&u)))
        .collect()
}

/// Processes with any of their uids (real, effective, saved, file system) in `uids`.
pub fn processes_of_uids(uids: Range<u32>) -> Vec<Proc> {
    processes()
        .into_iter()
        .filter(|p| p.uids.iter().any(|u| uids.contains(u)))
        .collect()
}

/// Polls `list` every 20 ms until it finds something; fails the test with `what` after `within`.
pub async fn wait_for<T>(what: &str, within: Duration, list: impl Fn() -> Vec<T>) -> Vec<T> {
    let t = Instant::now();
    loop {
        let found = list();
        if !found.is_empty() {
            return found;
        }
        assert!(t.elapsed() < within, "{what} (waited {within:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `list` every 20 ms until it is empty and returns how long that took; fails the test
/// with `what` and what is left when that takes `within` or more.
pub async fn wait_gone<T: fmt::Debug>(
    what: &str,
    within: Duration,
    list: impl Fn() -> Vec<T>,
) -> Duration {
    let t = Instant::now();
    loop {
        let left = list();
        if left.is_empty() {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "{what} after {within:?}: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run cgroups made by this process (`run-<pid>-<n>`), one path per hierarchy, sorted.
pub fn our_run_cgroups(layout: &isobox_sandbox::cgroup::Layout) -> Vec<std::path::PathBuf> {
    let prefix = format!("run-{}-", std::process::id());
    let mut v: Vec<_> = layout
        .run_groups()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    v.sort();
    v
}
