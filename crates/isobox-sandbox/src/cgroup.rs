//! A small cgroup layer that works on cgroup v2, cgroup v1 and hybrid hosts.
//!
//! Every controller is detected on its own from `/proc/self/mountinfo`: a controller bound to a
//! v1 hierarchy is used there, otherwise it must be listed in the v2 root's `cgroup.controllers`.
//! Nothing is assumed from the shape of `/sys/fs/cgroup`.
//!
//! One execution gets one fresh cgroup (one directory per hierarchy in use) under
//! `<hierarchy>/<parent>/`, created before the sandbox starts and removed after it ended. The
//! sandbox's init joins it (by writing `0` to pre-opened `cgroup.procs` files) before it unshares
//! the cgroup namespace and long before any user code runs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
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
        let mut cg = RunCgroup {
            dirs: Vec::new(),
            v2_dir: None,
            memory: self.memory.path().join(&self.parent).join(name),
            memory_v2: self.memory.is_v2(),
            pids: self.pids.path().join(&self.parent).join(name),
            cpu: self.cpu.path().join(&self.parent).join(name),
            cpu_v2: self.cpu.is_v2(),
            acct: self.cpuacct.path().join(&self.parent).join(name),
            acct_v2: self.cpuacct.is_v2(),
            memory_limit: 0,
            peak_file: None,
        };
        for m in self.mounts() {
            let dir = m.path().join(&self.parent).join(name);
            if let Err(e) = fs::create_dir(&dir) {
                // Whatever was created so far is removed by RunCgroup's Drop.
                return Err(setup_err(&dir, "create", e));
            }
            if m.is_v2() {
                cg.v2_dir = Some(dir.clone());
            }
            cg.dirs.push(dir);
        }
        if cg.memory_v2 {
            // Kill the whole group on OOM, not just the largest process.
            let _ = write_file(&cg.memory.join("memory.oom.group"), "1");
        } else {
            // Without swap accounting at least avoid swapping.
            if !cg.memory.join("memory.memsw.limit_in_bytes").exists() {
                let _ = write_file(&cg.memory.join("memory.swappiness"), "0");
            }
        }
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

fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), SandboxError> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| setup_err(path, "open", e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| setup_err(path, "write", e))
}

fn read_file(path: &Path) -> io::Result<String> {
    let mut s = String::new();
    File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

fn read_u64(path: &Path) -> Option<u64> {
    read_file(path).ok()?.trim().parse().ok()
}

/// Reads `key value` lines (memory.events, cpu.stat, memory.oom_control).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = read_file(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Open files for joining a run's cgroup (see [`RunCgroup::join_files`]).
pub struct JoinFiles {
    pub v1_procs: Vec<File>,
    pub v2_procs: Option<File>,
    pub v2_dir: Option<File>,
}

/// The cgroup of one execution, removed on drop.
#[derive(Debug)]
pub struct RunCgroup {
    dirs: Vec<PathBuf>,
    v2_dir: Option<PathBuf>,
    memory: PathBuf,
    memory_v2: bool,
    pids: PathBuf,
    cpu: PathBuf,
    cpu_v2: bool,
    acct: PathBuf,
    acct_v2: bool,
    memory_limit: u64,
    /// v2: the `memory.peak` file a reset was written to (fd-local resets).
    peak_file: Option<File>,
}

impl RunCgroup {
    /// Directories of this cgroup, one per hierarchy in use.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Opens what the sandbox init needs to join the group: every v1 `cgroup.procs` (it writes
    /// `0` into them), and for the v2 group both its `cgroup.procs` and the directory itself (for
    /// `clone3(CLONE_INTO_CGROUP)`, which spares the migration).
    pub fn join_files(&self) -> Result<JoinFiles, SandboxError> {
        let open = |p: PathBuf, write: bool| {
            let mut o = OpenOptions::new();
            if write {
                o.write(true).custom_flags(libc::O_CLOEXEC);
            } else {
                o.read(true)
                    .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY);
            }
            o.open(&p).map_err(|e| setup_err(&p, "open", e))
        };
        let mut files = JoinFiles {
            v1_procs: Vec::new(),
            v2_procs: None,
            v2_dir: None,
        };
        for d in &self.dirs {
            if Some(d) == self.v2_dir.as_ref() {
                files.v2_procs = Some(open(d.join("cgroup.procs"), true)?);
                files.v2_dir = Some(open(d.clone(), false)?);
            } else {
                files.v1_procs.push(open(d.join("cgroup.procs"), true)?);
            }
        }
        Ok(files)
    }

    /// Applies memory (swap 0), pids and CPU bandwidth limits.
    pub fn set_limits(
        &mut self,
        memory_bytes: u64,
        pids: u32,
        cpu_millis: u32,
    ) -> Result<(), SandboxError> {
        if self.memory_v2 {
            write_file(&self.memory.join("memory.max"), &memory_bytes.to_string())?;
            let swap = self.memory.join("memory.swap.max");
            if swap.exists() {
                write_file(&swap, "0")?;
            }
        } else {
            let limit = self.memory.join("memory.limit_in_bytes");
            let memsw = self.memory.join("memory.memsw.limit_in_bytes");
            let has_memsw = memsw.exists();
            let v = memory_bytes.to_string();
            // v1 refuses a limit below what the group holds and cannot reclaim (tmpfs files).
            let write = |p: &Path| match write_raw(p, &v) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(SandboxError::MemoryInUse),
                r => r.map_err(|e| setup_err(p, "write", e)),
            };
            // memsw must stay >= limit at every moment: order the two writes accordingly.
            if memory_bytes < self.memory_limit || self.memory_limit == 0 {
                write(&limit)?;
                if has_memsw {
                    write(&memsw)?;
                }
            } else {
                if has_memsw {
                    write(&memsw)?;
                }
                write(&limit)?;
            }
            // Socket buffers are kernel memory that v1 does not count in the limit above: cap
            // them too, or loopback TCP could pin host memory far past the limit.
            let tcp = self.memory.join("memory.kmem.tcp.limit_in_bytes");
            if tcp.exists() {
                let _ = write_raw(&tcp, &v);
            }
        }
        self.memory_limit = memory_bytes;
        write_file(&self.pids.join("pids.max"), &pids.to_string())?;
        let period: u64 = 100_000;
        let quota = (u64::from(cpu_millis) * period / 1000).max(1000);
        if self.cpu_v2 {
            write_file(&self.cpu.join("cpu.max"), &format!("{quota} {period}"))?;
        } else {
            write_file(&self.cpu.join("cpu.cfs_period_us"), &period.to_string())?;
            write_file(&self.cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        Ok(())
    }

    /// CPU time used by everything that ever ran in the group.
    pub fn cpu_usage(&self) -> Duration {
        if self.acct_v2 {
            Duration::from_micros(
                read_keyed(&self.acct.join("cpu.stat"), "usage_usec").unwrap_or(0),
            )
        } else {
            Duration::from_nanos(read_u64(&self.acct.join("cpuacct.usage")).unwrap_or(0))
        }
    }

    /// Number of OOM kills so far.
    pub fn oom_kills(&self) -> u64 {
        if self.memory_v2 {
            read_keyed(&self.memory.join("memory.events"), "oom_kill").unwrap_or(0)
        } else {
            read_keyed(&self.memory.join("memory.oom_control"), "oom_kill").unwrap_or(0)
        }
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
        if self.memory_v2 {
            read_u64(&self.memory.join("memory.peak")).unwrap_or(0)
        } else {
            read_u64(&self.memory.join("memory.max_usage_in_bytes")).unwrap_or(0)
        }
    }

    /// Starts a new peak measurement (before each program). v2 needs kernel 6.12+ for this;
    /// on older kernels the peak covers the sandbox's whole life.
    pub fn reset_peak(&mut self) {
        if self.memory_v2 {
            self.peak_file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.memory.join("memory.peak"))
                .and_then(|mut f| f.write_all(b"0").map(|_| f))
                .ok();
        } else {
            let _ = write_file(&self.memory.join("memory.max_usage_in_bytes"), "0");
        }
    }

    /// Kills everything in the group (v2 `cgroup.kill`; on v1 the caller kills the namespace init).
    pub fn kill_all(&self) {
        for d in &self.dirs {
            let k = d.join("cgroup.kill");
            if k.exists() {
                let _ = write_file(&k, "1");
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.dirs.iter().all(|d| {
            read_file(&d.join("cgroup.procs"))
                .map(|s| s.trim().is_empty())
                .unwrap_or(true)
        })
    }

    /// Removes the group, waiting a bounded time for the kernel to release exiting tasks.
    pub fn remove(&mut self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut delay = Duration::from_micros(100);
        while !self.is_empty() && Instant::now() < deadline {
            self.kill_all();
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
        let mut last_err = None;
        while let Some(d) = self.dirs.last().cloned() {
            match fs::remove_dir(&d) {
                Ok(()) => {
                    self.dirs.pop();
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.dirs.pop();
                }
                Err(e) if Instant::now() < deadline => {
                    last_err = Some(e);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(setup_err(&d, "remove", e)),
            }
        }
        let _ = last_err;
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
