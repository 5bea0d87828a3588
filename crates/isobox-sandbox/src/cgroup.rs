//! A small cgroup layer that works on cgroup v2, cgroup v1 and hybrid hosts.
//!
//! Every controller is detected on its own from `/proc/self/mountinfo`: a controller bound to a
//! v1 hierarchy is used there, otherwise it must be listed in the v2 root's `cgroup.controllers`.
//! Nothing is assumed from the shape of `/sys/fs/cgroup`.
//!
//! One execution gets one fresh cgroup (one directory per hierarchy in use) under
//! `<hierarchy>/<parent>/`, created before the sandbox starts and removed after it ended. The
//! sandbox's init joins it (by writing `0` to pre-opened v1 `tasks` files, or being cloned into
//! the v2 group) before it unshares the cgroup namespace and long before any user code runs.

use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::SandboxError;

/// Where one controller lives on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A cgroup v1 hierarchy mounted at this path.
    V1(PathBuf),
    /// The cgroup v2 (unified) hierarchy.
    V2(PathBuf),
}

impl Mount {
    pub fn path(&self) -> &Path {
        match self {
            Mount::V1(p) | Mount::V2(p) => p,
        }
    }
    pub fn is_v2(&self) -> bool {
        matches!(self, Mount::V2(_))
    }
    pub fn version(&self) -> &'static str {
        if self.is_v2() {
            "v2"
        } else {
            "v1"
        }
    }
}

/// The host's cgroup layout for the controllers IsoBox needs.
#[derive(Debug, Clone)]
pub struct Layout {
    pub memory: Mount,
    pub pids: Mount,
    pub cpu: Mount,
    /// CPU accounting: `cpuacct` on v1; on v2 `cpu.stat` is always present.
    pub cpuacct: Mount,
    /// Name of the parent group under each hierarchy (default `isobox`).
    pub parent: String,
}

/// Parses mountinfo text into (v1 mounts with their controllers, v2 mount point).
fn parse_mountinfo(text: &str) -> (Vec<(PathBuf, Vec<String>)>, Option<PathBuf>) {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        // Fields: id parent maj:min root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let mount_point = PathBuf::from(unescape_mountinfo(left[4]));
        match right[0] {
            "cgroup2" if v2.is_none() => v2 = Some(mount_point),
            "cgroup" => {
                let ctrls = right[2]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .map(str::to_string)
                    .collect();
                v1.push((mount_point, ctrls));
            }
            _ => {}
        }
    }
    (v1, v2)
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

impl Layout {
    /// Detects where memory, pids, cpu and cpu accounting live on this host.
    pub fn detect(parent: &str) -> Result<Layout, SandboxError> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| SandboxError::Setup(format!("cannot read /proc/self/mountinfo: {e}")))?;
        let (v1, v2) = parse_mountinfo(&text);
        let v2_controllers: Vec<String> = v2
            .as_ref()
            .and_then(|p| fs::read_to_string(p.join("cgroup.controllers")).ok())
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let find = |ctrl: &str| -> Option<Mount> {
            if let Some((p, _)) = v1.iter().find(|(_, c)| c.iter().any(|c| c == ctrl)) {
                return Some(Mount::V1(p.clone()));
            }
            if v2_controllers.iter().any(|c| c == ctrl) {
                return v2.clone().map(Mount::V2);
            }
            None
        };
        let missing = |ctrl: &str| {
            SandboxError::Unsupported(format!(
                "the cgroup controller `{ctrl}` is not available on this host (neither a cgroup v1 \
                 hierarchy nor the cgroup v2 root offers it), so memory/process/CPU limits cannot be enforced"
            ))
        };
        let memory = find("memory").ok_or_else(|| missing("memory"))?;
        let pids = find("pids").ok_or_else(|| missing("pids"))?;
        let cpu = find("cpu").ok_or_else(|| missing("cpu"))?;
        // v2 accounts CPU time in cpu.stat of every cgroup, with or without the cpu controller.
        let cpuacct = match find("cpuacct") {
            Some(m) => m,
            None => v2
                .clone()
                .map(Mount::V2)
                .ok_or_else(|| missing("cpuacct"))?,
        };
        let layout = Layout {
            memory,
            pids,
            cpu,
            cpuacct,
            parent: parent.to_string(),
        };
        layout.prepare()?;
        Ok(layout)
    }

    /// The distinct hierarchies in use.
    fn mounts(&self) -> Vec<&Mount> {
        let mut out: Vec<&Mount> = Vec::new();
        for m in [&self.memory, &self.pids, &self.cpu, &self.cpuacct] {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// Controllers that live on v2 and must be enabled in the parents' `cgroup.subtree_control`.
    fn v2_controllers(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.memory.is_v2() {
            c.push("memory");
        }
        if self.pids.is_v2() {
            c.push("pids");
        }
        if self.cpu.is_v2() {
            c.push("cpu");
        }
        c
    }

    /// Creates `<hierarchy>/<parent>` once and, on v2, enables the controllers for its children.
    /// `detect` calls it; call it yourself for a hand-built layout.
    pub fn prepare(&self) -> Result<(), SandboxError> {
        for m in self.mounts() {
            let dir = m.path().join(&self.parent);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(setup_err(&dir, "create", e)),
            }
            if m.is_v2() {
                let ctrls = self.v2_controllers();
                let root = m.path();
                match enable_controllers(root, &ctrls) {
                    Ok(()) => {}
                    // "No internal processes": when the hierarchy root we were given is not the
                    // real root (a container's cgroup namespace, a delegated subtree), processes
                    // in it block enabling controllers for its children. Move ourselves into a
                    // leaf and try again (as nsjail does).
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        let leaf = root.join(format!("{}-supervisor", self.parent));
                        let _ = fs::create_dir(&leaf);
                        write_file(&leaf.join("cgroup.procs"), "0")?;
                        enable_controllers(root, &ctrls)
                            .map_err(|e| setup_err(root, "enable controllers in", e))?;
                    }
                    Err(e) => return Err(setup_err(root, "enable controllers in", e)),
                }
                enable_controllers(&dir, &ctrls)
                    .map_err(|e| setup_err(&dir, "enable controllers in", e))?;
            }
        }
        Ok(())
    }

    /// Human-readable summary, e.g. `memory=v1 pids=v1 cpu=v1 cpuacct=v1`.
    pub fn describe(&self) -> String {
        format!(
            "memory={} pids={} cpu={} cpuacct={}",
            self.memory.version(),
            self.pids.version(),
            self.cpu.version(),
            self.cpuacct.version()
        )
    }

    /// Creates the cgroup of one execution.
    pub fn create(&self, name: &str) -> Result<RunCgroup, SandboxError> {
        let mounts = self.mounts();
        let index = |m: &Mount| mounts.iter().position(|x| *x == m).unwrap_or(0);
        let mut cg = RunCgroup {
            dirs: Vec::new(),
            fds: Vec::new(),
            v2_dir: None,
            memory: index(&self.memory),
            memory_v2: self.memory.is_v2(),
            pids: index(&self.pids),
            cpu: index(&self.cpu),
            cpu_v2: self.cpu.is_v2(),
            acct: index(&self.cpuacct),
            acct_v2: self.cpuacct.is_v2(),
            memory_limit: 0,
            pids_limit: 0,
            cpu_quota: 0,
            peak_file: None,
            usage_file: None,
            events_file: None,
            has_memsw: false,
        };
        for m in &mounts {
            let dir = m.path().join(&self.parent).join(name);
            // Whatever was created so far is removed by RunCgroup's Drop.
            fs::create_dir(&dir).map_err(|e| setup_err(&dir, "create", e))?;
            let fd = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY)
                .open(&dir);
            if m.is_v2() {
                cg.v2_dir = Some(cg.dirs.len());
            }
            cg.dirs.push(dir.clone());
            cg.fds.push(fd.map_err(|e| setup_err(&dir, "open", e))?);
        }
        if cg.memory_v2 {
            // Kill the whole group on OOM, not just the largest process.
            let _ = cg.write(cg.memory, c"memory.oom.group", "1");
        } else {
            cg.has_memsw = cg.has(cg.memory, c"memory.memsw.limit_in_bytes");
            if !cg.has_memsw {
                // Without swap accounting at least avoid swapping.
                let _ = cg.write(cg.memory, c"memory.swappiness", "0");
            }
        }
        // Read at every supervision tick: kept open.
        let usage = if cg.acct_v2 {
            c"cpu.stat"
        } else {
            c"cpuacct.usage"
        };
        cg.usage_file = cg.open(cg.acct, usage, libc::O_RDONLY).ok();
        // Read before and after every program (its OOM kills): kept open too.
        let events = if cg.memory_v2 {
            c"memory.events"
        } else {
            c"memory.oom_control"
        };
        cg.events_file = cg.open(cg.memory, events, libc::O_RDONLY).ok();
        Ok(cg)
    }

    /// Every per-run group that currently exists under the parents (for leak checks).
    pub fn run_groups(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for m in self.mounts() {
            if let Ok(rd) = fs::read_dir(m.path().join(&self.parent)) {
                out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
        }
        out
    }

    /// Removes cgroups left by earlier runs of this process's predecessors (crashes). Only empty
    /// groups can be removed; populated ones are left alone.
    pub fn sweep_stale(&self) {
        for m in self.mounts() {
            if let Ok(rd) = fs::read_dir(m.path().join(&self.parent)) {
                for entry in rd.flatten() {
                    let p = entry.path();
                    let stale = entry
                        .file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with("run-"));
                    if stale && p.is_dir() {
                        if let Some(pid) = run_owner(&p) {
                            if Path::new(&format!("/proc/{pid}")).exists() {
                                continue;
                            }
                        }
                        let _ = fs::remove_dir(&p);
                    }
                }
            }
        }
    }
}

/// Enables `ctrls` in `at/cgroup.subtree_control` (v2) where they are not enabled yet.
fn enable_controllers(at: &Path, ctrls: &[&str]) -> io::Result<()> {
    let file = at.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).unwrap_or_default();
    for c in ctrls {
        if !enabled.split_whitespace().any(|e| e == *c) {
            OpenOptions::new()
                .write(true)
                .open(&file)?
                .write_all(format!("+{c}").as_bytes())?;
        }
    }
    Ok(())
}

/// `run-<pid>-<n>` names carry the pid of the supervisor that made them.
fn run_owner(p: &Path) -> Option<u32> {
    p.file_name()?
        .to_str()?
        .strip_prefix("run-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn setup_err(path: &Path, what: &str, e: io::Error) -> SandboxError {
    SandboxError::Setup(format!("cannot {what} cgroup {}: {e}", path.display()))
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), SandboxError> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| setup_err(path, "open", e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| setup_err(path, "write", e))
}

/// The value of `key` in `key value` lines (memory.events, cpu.stat, memory.oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Open files for joining a run's cgroup (see [`RunCgroup::join_files`]).
pub struct JoinFiles {
    pub v1_tasks: Vec<File>,
    pub v2_procs: Option<File>,
    pub v2_dir: Option<File>,
}

/// The cgroup of one execution, removed on drop. Every file of the group is opened relative to
/// the directory fds taken at creation (one short lookup instead of a walk from `/sys`).
#[derive(Debug)]
pub struct RunCgroup {
    dirs: Vec<PathBuf>,
    /// An open directory per entry of `dirs`, same order.
    fds: Vec<File>,
    /// Index in `dirs` of the v2 group, if one is used.
    v2_dir: Option<usize>,
    memory: usize,
    memory_v2: bool,
    pids: usize,
    cpu: usize,
    cpu_v2: bool,
    acct: usize,
    acct_v2: bool,
    /// The limits written last (0: none yet); an unchanged limit is not written again.
    memory_limit: u64,
    pids_limit: u32,
    cpu_quota: u64,
    /// v2: the `memory.peak` file a reset was written to (fd-local resets).
    peak_file: Option<File>,
    /// `cpuacct.usage` (v1) or `cpu.stat` (v2), read from offset 0 each time.
    usage_file: Option<File>,
    /// `memory.oom_control` (v1) or `memory.events` (v2), read from offset 0 each time.
    events_file: Option<File>,
    /// v1: the kernel accounts swap (`memory.memsw.*` exists), looked up once.
    has_memsw: bool,
}

impl RunCgroup {
    /// Directories of this cgroup, one per hierarchy in use.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    fn path(&self, dir: usize, name: &CStr) -> PathBuf {
        self.dirs[dir].join(name.to_string_lossy().as_ref())
    }

    /// Opens `name` in directory `dir` of the group.
    fn open(&self, dir: usize, name: &CStr, mode: libc::c_int) -> io::Result<File> {
        let flags = libc::O_CLOEXEC | mode;
        // SAFETY: `name` is a NUL-terminated string and the dir fd is open for `self`'s life.
        let fd = unsafe { libc::openat(self.fds[dir].as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Whether `name` exists in directory `dir` (a controller file of this kernel).
    fn has(&self, dir: usize, name: &CStr) -> bool {
        // SAFETY: as in `open`; faccessat only looks the name up.
        unsafe { libc::faccessat(self.fds[dir].as_raw_fd(), name.as_ptr(), libc::F_OK, 0) == 0 }
    }

    fn write_raw(&self, dir: usize, name: &CStr, value: &str) -> io::Result<()> {
        self.open(dir, name, libc::O_WRONLY)?
            .write_all(value.as_bytes())
    }

    fn write(&self, dir: usize, name: &CStr, value: &str) -> Result<(), SandboxError> {
        self.write_raw(dir, name, value)
            .map_err(|e| setup_err(&self.path(dir, name), "write", e))
    }

    fn read(&self, dir: usize, name: &CStr) -> io::Result<String> {
        let mut s = String::new();
        self.open(dir, name, libc::O_RDONLY)?
            .read_to_string(&mut s)?;
        Ok(s)
    }

    /// Opens what the sandbox init needs to join the group: every v1 `tasks` (it writes `0`
    /// into them), and for the v2 group both its `cgroup.procs` and the directory itself (for
    /// `clone3(CLONE_INTO_CGROUP)`, which spares the migration).
    ///
    /// v1 `tasks`, not `cgroup.procs`: writing `0` to `tasks` moves the calling thread alone
    /// (the init has no other), which the kernel does without write-locking the global
    /// threadgroup rwsem; a `cgroup.procs` write takes it and waits for an RCU grace period
    /// first (about 10 ms on a quiet host, measured: docs/profile.md), on every cold sandbox.
    pub fn join_files(&self) -> Result<JoinFiles, SandboxError> {
        let mut files = JoinFiles {
            v1_tasks: Vec::new(),
            v2_procs: None,
            v2_dir: None,
        };
        for i in 0..self.dirs.len() {
            let name = if Some(i) == self.v2_dir {
                c"cgroup.procs"
            } else {
                c"tasks"
            };
            let procs = self
                .open(i, name, libc::O_WRONLY)
                .map_err(|e| setup_err(&self.path(i, name), "open", e))?;
            if Some(i) == self.v2_dir {
                files.v2_procs = Some(procs);
                files.v2_dir = Some(
                    self.fds[i]
                        .try_clone()
                        .map_err(|e| setup_err(&self.dirs[i], "open", e))?,
                );
            } else {
                files.v1_tasks.push(procs);
            }
        }
        Ok(files)
    }

    /// Applies memory (swap 0), pids and CPU bandwidth limits (only those that changed since the
    /// last call: each write costs the kernel real work, the CPU quota's most).
    pub fn set_limits(
        &mut self,
        memory_bytes: u64,
        pids: u32,
        cpu_millis: u32,
    ) -> Result<(), SandboxError> {
        if memory_bytes != self.memory_limit {
            self.set_memory(memory_bytes)?;
            self.memory_limit = memory_bytes;
        }
        if pids != self.pids_limit {
            self.write(self.pids, c"pids.max", &pids.to_string())?;
            self.pids_limit = pids;
        }
        let period: u64 = 100_000;
        let quota = (u64::from(cpu_millis) * period / 1000).max(1000);
        if quota != self.cpu_quota {
            if self.cpu_v2 {
                self.write(self.cpu, c"cpu.max", &format!("{quota} {period}"))?;
            } else {
                if self.cpu_quota == 0 {
                    self.write(self.cpu, c"cpu.cfs_period_us", &period.to_string())?;
                }
                self.write(self.cpu, c"cpu.cfs_quota_us", &quota.to_string())?;
            }
            self.cpu_quota = quota;
        }
        Ok(())
    }

    fn set_memory(&self, memory_bytes: u64) -> Result<(), SandboxError> {
        let m = self.memory;
        if self.memory_v2 {
            self.write(m, c"memory.max", &memory_bytes.to_string())?;
            if self.has(m, c"memory.swap.max") {
                self.write(m, c"memory.swap.max", "0")?;
            }
            return Ok(());
        }
        let (limit, memsw) = (c"memory.limit_in_bytes", c"memory.memsw.limit_in_bytes");
        let has_memsw = self.has_memsw;
        let v = memory_bytes.to_string();
        // v1 refuses a limit below what the group holds and cannot reclaim (tmpfs files).
        let write = |name: &CStr| match self.write_raw(m, name, &v) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(SandboxError::MemoryInUse),
            r => r.map_err(|e| setup_err(&self.path(m, name), "write", e)),
        };
        // memsw must stay >= limit at every moment: order the two writes accordingly.
        if memory_bytes < self.memory_limit || self.memory_limit == 0 {
            write(limit)?;
            if has_memsw {
                write(memsw)?;
            }
        } else {
            if has_memsw {
                write(memsw)?;
            }
            write(limit)?;
        }
        // Socket buffers are kernel memory that v1 does not count in the limit above: cap them
        // too, or loopback TCP could pin host memory far past the limit. (Absent when the
        // kernel has no kmem accounting: then the write fails and nothing is lost.)
        let _ = self.write_raw(m, c"memory.kmem.tcp.limit_in_bytes", &v);
        Ok(())
    }

    /// CPU time used by the group so far.
    pub fn cpu_usage(&self) -> Duration {
        let mut buf = [0u8; 512];
        let text = self
            .usage_file
            .as_ref()
            .and_then(|f| f.read_at(&mut buf, 0).ok())
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
            .unwrap_or("");
        if self.acct_v2 {
            Duration::from_micros(keyed(text, "usage_usec").unwrap_or(0))
        } else {
            Duration::from_nanos(text.trim().parse().unwrap_or(0))
        }
    }

    /// Number of OOM kills so far (0 when the counter cannot be read).
    pub fn oom_kills(&self) -> u64 {
        let mut buf = [0u8; 512];
        self.events_file
            .as_ref()
            .and_then(|f| f.read_at(&mut buf, 0).ok())
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
            .and_then(|t| keyed(t, "oom_kill"))
            .unwrap_or(0)
    }

    /// Peak memory since creation or the last `reset_peak`.
    pub fn memory_peak(&self) -> u64 {
        if let Some(f) = &self.peak_file {
            // v2: a reset only holds for reads through the file it was written to.
            let mut buf = [0u8; 32];
            if let Ok(n) = f.read_at(&mut buf, 0) {
                if let Some(v) = std::str::from_utf8(&buf[..n])
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    return v;
                }
            }
        }
        let name = if self.memory_v2 {
            c"memory.peak"
        } else {
            c"memory.max_usage_in_bytes"
        };
        self.read(self.memory, name)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Starts a new peak measurement (before each program). v2 needs kernel 6.12+ for this;
    /// on older kernels the peak covers the sandbox's whole life.
    pub fn reset_peak(&mut self) {
        if self.memory_v2 {
            self.peak_file = self
                .open(self.memory, c"memory.peak", libc::O_RDWR)
                .and_then(|mut f| f.write_all(b"0").map(|_| f))
                .ok();
        } else {
            let _ = self.write(self.memory, c"memory.max_usage_in_bytes", "0");
        }
    }

    /// Kills everything in the group (v2 `cgroup.kill`; on v1 the caller kills the namespace init).
    pub fn kill_all(&self) {
        for i in 0..self.dirs.len() {
            if self.v2_dir == Some(i) {
                let _ = self.write_raw(i, c"cgroup.kill", "1");
            }
        }
    }

    /// Removes the group, waiting a bounded time for the kernel to release exiting tasks.
    ///
    /// Each directory is removed straight away: the kernel refuses (`EBUSY`) while a task is
    /// still in it, and only then is the group killed (v2) and the removal retried with a
    /// growing pause. (Asking `cgroup.procs` of every hierarchy first cost four file reads per
    /// run for the rare group that is not empty yet.)
    pub fn remove(&mut self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut delay = Duration::from_micros(100);
        self.peak_file = None;
        self.usage_file = None;
        self.events_file = None;
        while let Some(d) = self.dirs.last().cloned() {
            match fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) if Instant::now() < deadline => {
                    self.kill_all();
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(50));
                    continue;
                }
                Err(e) => return Err(setup_err(&d, "remove", e)),
            }
            self.dirs.pop();
            self.fds.pop();
        }
        Ok(())
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            let _ = self.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_mountinfo() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let (v1, v2) = parse_mountinfo(text);
        assert_eq!(v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(v1.len(), 3);
        assert_eq!(v1[0].1, vec!["cpu".to_string(), "cpuacct".to_string()]);
        assert_eq!(v1[2].1, vec!["xattr".to_string()]);
    }

    #[test]
    fn parses_pure_v2_mountinfo() {
        let text = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let (v1, v2) = parse_mountinfo(text);
        assert!(v1.is_empty());
        assert_eq!(v2, Some(PathBuf::from("/sys/fs/cgroup")));
    }

    #[test]
    fn run_owner_parses_pid() {
        assert_eq!(run_owner(Path::new("/x/run-123-4")), Some(123));
        assert_eq!(run_owner(Path::new("/x/other")), None);
    }
}
