//! The native backend: our own namespace + cgroup + seccomp sandbox.
//!
//! # Order of operations
//!
//! Supervisor (this process, root), before the sandbox exists:
//! 1. creates the run's cgroup (one directory per hierarchy in use, v1 or v2 per controller) and
//!    writes the first phase's limits; prepares every path, argv, mount and file as C data, the
//!    seccomp program and all pipes, so that the child never allocates (safe to fork from a
//!    multithreaded server);
//! 2. `clone(NEWPID|NEWNS|NEWNET|NEWIPC|NEWUTS)` with every signal blocked.
//!
//! Sandbox init (pid 1 of the new pid namespace, still root):
//! 3. resets signal handlers, sets PDEATHSIG, closes every inherited fd it does not need;
//! 4. joins the run's cgroup (`0` into the pre-opened `cgroup.procs` files), then
//!    `unshare(CLONE_NEWCGROUP)` so that the cgroup it sees is its own;
//! 5. makes `/` private, builds the new root on a small tmpfs: read-only nosuid nodev binds of the
//!    runtime dirs, a generated minimal `/etc`, a minimal `/dev` (null zero full random urandom, a
//!    fresh size-capped `/dev/shm`), `/proc` for the new pid namespace (hidepid=2, sensitive
//!    entries read-only), a size- and inode-capped tmpfs on `/tmp` holding the program's files,
//!    no `/sys`; remounts the root read-only; `pivot_root(".", ".")`, detaches the old root;
//! 6. sets the hostname, brings `lo` up (the net namespace has nothing else), says READY;
//! 7. for each phase the supervisor releases: forks the payload, waits for it while reaping
//!    orphans, then SIGKILLs everything left in the namespace and reports the wait status.
//!
//! Payload (forked by init for each phase):
//! 8. stdio onto the phase's pipes, `setsid` (no controlling tty), rlimits, drop the capability
//!    bounding and ambient sets, `setgroups([])`, `setresgid`/`setresuid` to the sandbox user,
//!    clear every capability set, `PR_SET_NO_NEW_PRIVS`, mark every fd above 2 close-on-exec,
//!    install the seccomp filter (last), `execve` with a clean environment.
//!
//! Supervisor, while a phase runs: feeds stdin, reads stdout/stderr up to the cap, watches the
//! wall clock and the cgroup's CPU time; at any limit it kills the namespace init (the kernel then
//! kills every process of the namespace, stopped ones included) and, on v2, writes `cgroup.kill`.
//! Afterwards it reaps init, reads the cgroup's figures and removes the cgroup. Nothing the program
//! wrote is ever read from the host file system: files live on a tmpfs that exists only in the
//! sandbox's mount namespace and vanishes with it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libc::{c_char, c_int, c_ulong};

use crate::cgroup::{Layout, RunCgroup};
use crate::seccomp;
use crate::spec::{ExecReport, ExecSpec, LimitHit, Phase, PhaseReport, Status};
use crate::{Backend, SandboxError};

/// What the sandbox's root file system is made of.
#[derive(Debug, Clone)]
pub enum RootFs {
    /// The host's `/usr` (and `/bin`, `/lib`, `/lib64`, `/sbin` as the host has them: symlinks
    /// or directories), read-only, plus a generated minimal `/etc` that holds only the listed
    /// host entries of `/etc` (never `shadow`, ssh keys, `/root` or `/home`).
    Host { etc: Vec<String> },
    /// A prepared root file system directory; its top-level entries except `proc`, `dev`, `sys`
    /// and `tmp` are bound read-only.
    Dir(PathBuf),
}

/// Host `/etc` entries the default sandbox can see: what dynamic linking, language runtimes and
/// time zones need. Entries missing on the host are skipped.
pub const DEFAULT_ETC: &[&str] = &[
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "os-release",
    "debian_version",
    "java-17-openjdk",
    "java-21-openjdk",
    "php",
    "ruby",
    "python3",
    "python3.11",
    "perl",
    "ssl",
    "ca-certificates",
    "protocols",
    "services",
    "gai.conf",
    "host.conf",
    "magic",
    "lua5.4",
];

/// Configuration of the native backend.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    pub rootfs: RootFs,
    /// The unprivileged user and group the payload runs as.
    pub uid: u32,
    pub gid: u32,
    /// Name of the parent cgroup under each hierarchy.
    pub cgroup_parent: String,
    /// An empty host directory used as the mount point of each sandbox's new root (inside the
    /// sandbox's own mount namespace only; nothing is ever mounted there on the host).
    pub mount_point: PathBuf,
    pub hostname: String,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            rootfs: RootFs::Host {
                etc: DEFAULT_ETC.iter().map(|s| s.to_string()).collect(),
            },
            uid: 60000,
            gid: 60000,
            cgroup_parent: "isobox".into(),
            mount_point: PathBuf::from("/run/isobox/root"),
            hostname: "isobox".into(),
        }
    }
}

/// One step of building the new root, executed by the sandbox init (all data prepared beforehand).
#[derive(Debug)]
enum Op {
    Mkdir {
        path: CString,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    Touch {
        path: CString,
    },
    Mount {
        src: Option<CString>,
        dst: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    Write {
        path: CString,
        data: Vec<u8>,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
}

impl Op {
    fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Mkdir { path, .. } => format!("mkdir {}", s(path)),
            Op::Symlink { path, .. } => format!("symlink {}", s(path)),
            Op::Touch { path } => format!("create {}", s(path)),
            Op::Mount {
                src, dst, fstype, ..
            } => format!(
                "mount {} on {} ({})",
                src.as_ref().map(s).unwrap_or_default(),
                s(dst),
                fstype
                    .as_ref()
                    .map(s)
                    .unwrap_or_else(|| "bind/remount".into())
            ),
            Op::Write { path, .. } => format!("write {}", s(path)),
        }
    }
}

fn cstr(s: impl AsRef<[u8]>) -> CString {
    CString::new(s.as_ref().to_vec()).expect("no NUL in sandbox strings")
}

fn cpath(p: &Path) -> CString {
    cstr(p.as_os_str().as_bytes())
}

const RO_BIND: c_ulong =
    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

/// Ops that bind `src` read-only at `dst` (directory or file).
fn ro_bind(ops: &mut Vec<Op>, src: &Path, dst: &Path, is_dir: bool) {
    if is_dir {
        ops.push(Op::Mkdir {
            path: cpath(dst),
            mode: 0o755,
            owner: None,
        });
    } else {
        ops.push(Op::Touch { path: cpath(dst) });
    }
    ops.push(Op::Mount {
        src: Some(cpath(src)),
        dst: cpath(dst),
        fstype: None,
        flags: libc::MS_BIND,
        data: None,
    });
    ops.push(Op::Mount {
        src: None,
        dst: cpath(dst),
        fstype: None,
        flags: RO_BIND,
        data: None,
    });
}

/// Replicates a host entry (symlink, directory or file) read-only in the new root.
fn replicate(ops: &mut Vec<Op>, host: &Path, dst: &Path) {
    let Ok(meta) = fs::symlink_metadata(host) else {
        return;
    };
    if meta.file_type().is_symlink() {
        if let Ok(target) = fs::read_link(host) {
            ops.push(Op::Symlink {
                target: cpath(&target),
                path: cpath(dst),
            });
        }
    } else if meta.is_dir() {
        ro_bind(ops, host, dst, true);
    } else if meta.is_file() {
        ro_bind(ops, host, dst, false);
    }
}

/// The backend. Create it once; `execute` may be called from many threads at once.
pub struct NativeBackend {
    cfg: NativeConfig,
    layout: Layout,
    base_ops: Vec<Op>,
    filter: Vec<libc::sock_filter>,
    cap_last: u32,
    counter: AtomicU64,
}

/// Checks that this process can build the sandbox; returns the one-sentence reason if not.
pub fn check_privileges() -> Result<(), SandboxError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_SYS_CHROOT.
    let needed: [u32; 5] = [21, 7, 6, 8, 18];
    if euid != 0 || needed.iter().any(|c| cap_eff & (1u64 << c) == 0) {
        return Err(SandboxError::Unsupported(
            "the native sandbox needs root privileges (CAP_SYS_ADMIN and a writable cgroup tree) to create \
             namespaces and cgroups: run isobox as root (e.g. with sudo), or use `--backend docker`"
                .into(),
        ));
    }
    Ok(())
}

impl NativeBackend {
    /// Checks privileges, detects the cgroup layout and prepares everything that is the same for
    /// every run.
    pub fn new(cfg: NativeConfig) -> Result<NativeBackend, SandboxError> {
        check_privileges()?;
        let layout = Layout::detect(&cfg.cgroup_parent)?;
        NativeBackend::with_layout(cfg, layout)
    }

    /// Like `new`, with a cgroup layout chosen by the caller instead of detected (hosts where
    /// detection must be overridden; tests of the v2 code paths on hybrid hosts).
    pub fn with_layout(cfg: NativeConfig, layout: Layout) -> Result<NativeBackend, SandboxError> {
        check_privileges()?;
        layout.prepare()?;
        layout.sweep_stale();
        fs::create_dir_all(&cfg.mount_point).map_err(|e| {
            SandboxError::Setup(format!("cannot create {}: {e}", cfg.mount_point.display()))
        })?;
        let _ = fs::set_permissions(&cfg.mount_point, fs::Permissions::from_mode(0o700));
        let cap_last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        let base_ops = build_base_ops(&cfg)?;
        Ok(NativeBackend {
            cfg,
            layout,
            base_ops,
            filter: seccomp::build_filter(),
            cap_last,
            counter: AtomicU64::new(0),
        })
    }

    /// The detected cgroup layout (for `selftest`).
    pub fn cgroup_layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &NativeConfig {
        &self.cfg
    }

    /// Maps a path as seen inside the sandbox to the host path that backs it.
    fn host_path(&self, inside: &str) -> PathBuf {
        match &self.cfg.rootfs {
            RootFs::Host { .. } => PathBuf::from(inside),
            RootFs::Dir(root) => root.join(inside.trim_start_matches('/')),
        }
    }

    /// Whether `cmd` (a name looked up in the sandbox PATH, or an absolute path) exists in the
    /// sandbox, and where.
    pub fn resolve_command(&self, cmd: &str) -> Option<String> {
        let candidates: Vec<String> = if cmd.starts_with('/') {
            vec![cmd.to_string()]
        } else if cmd.contains('/') {
            return None;
        } else {
            SANDBOX_PATH
                .split(':')
                .map(|d| format!("{d}/{cmd}"))
                .collect()
        };
        candidates.into_iter().find(|c| {
            let host = self.host_path(c);
            fs::metadata(&host)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    }
}

const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn build_base_ops(cfg: &NativeConfig) -> Result<Vec<Op>, SandboxError> {
    let root = &cfg.mount_point;
    let mut ops = Vec::new();
    ops.push(Op::Mount {
        src: Some(cstr("isobox")),
        dst: cpath(root),
        fstype: Some(cstr("tmpfs")),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(cstr("mode=0755,size=1m,nr_inodes=1024")),
    });
    match &cfg.rootfs {
        RootFs::Host { etc } => {
            for top in ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
                replicate(&mut ops, &Path::new("/").join(top), &root.join(top));
            }
            ops.push(Op::Mkdir {
                path: cpath(&root.join("etc")),
                mode: 0o755,
                owner: None,
            });
            let files = [
                ("passwd", format!("root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{}:{}:sandbox:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", cfg.uid, cfg.gid)),
                ("group", format!("root:x:0:\nsandbox:x:{}:\nnogroup:x:65534:\n", cfg.gid)),
                ("hosts", format!("127.0.0.1\tlocalhost {0}\n::1\tlocalhost ip6-localhost {0}\n", cfg.hostname)),
                ("hostname", format!("{}\n", cfg.hostname)),
                ("resolv.conf", String::new()),
                ("nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\n".into()),
            ];
            for (name, content) in files {
                ops.push(Op::Write {
                    path: cpath(&root.join("etc").join(name)),
                    data: content.into_bytes(),
                    mode: 0o644,
                    owner: None,
                });
            }
            for name in etc {
                if name.contains('/') || name == ".." || FORBIDDEN_ETC.contains(&name.as_str()) {
                    return Err(SandboxError::InvalidSpec(format!(
                        "/etc entry `{name}` may not be exposed"
                    )));
                }
                replicate(
                    &mut ops,
                    &Path::new("/etc").join(name),
                    &root.join("etc").join(name),
                );
            }
        }
        RootFs::Dir(dir) => {
            let rd = fs::read_dir(dir).map_err(|e| {
                SandboxError::Setup(format!("cannot read rootfs {}: {e}", dir.display()))
            })?;
            let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for name in names {
                if matches!(name.to_str(), Some("proc" | "dev" | "sys" | "tmp")) {
                    continue;
                }
                replicate(&mut ops, &dir.join(&name), &root.join(&name));
            }
        }
    }
    // /dev: only harmless devices.
    let dev = root.join("dev");
    ops.push(Op::Mkdir {
        path: cpath(&dev),
        mode: 0o755,
        owner: None,
    });
    for d in ["null", "zero", "full", "random", "urandom"] {
        ops.push(Op::Touch {
            path: cpath(&dev.join(d)),
        });
        ops.push(Op::Mount {
            src: Some(cpath(&Path::new("/dev").join(d))),
            dst: cpath(&dev.join(d)),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
        ops.push(Op::Mount {
            src: None,
            dst: cpath(&dev.join(d)),
            fstype: None,
            flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NOEXEC,
            data: None,
        });
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            target: cstr(target),
            path: cpath(&dev.join(name)),
        });
    }
    ops.push(Op::Mkdir {
        path: cpath(&dev.join("shm")),
        mode: 0o755,
        owner: None,
    });
    // /proc of the new pid namespace; other users' processes hidden; kernel knobs read-only.
    let proc_dir = root.join("proc");
    ops.push(Op::Mkdir {
        path: cpath(&proc_dir),
        mode: 0o555,
        owner: None,
    });
    ops.push(Op::Mount {
        src: Some(cstr("proc")),
        dst: cpath(&proc_dir),
        fstype: Some(cstr("proc")),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: Some(cstr("hidepid=2")),
    });
    for p in ["sys", "sysrq-trigger", "irq", "bus", "fs"] {
        if Path::new("/proc").join(p).exists() {
            let at = proc_dir.join(p);
            ops.push(Op::Mount {
                src: Some(cpath(&at)),
                dst: cpath(&at),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            });
            ops.push(Op::Mount {
                src: None,
                dst: cpath(&at),
                fstype: None,
                flags: RO_BIND | libc::MS_NOEXEC,
                data: None,
            });
        }
    }
    ops.push(Op::Mkdir {
        path: cpath(&root.join("tmp")),
        mode: 0o755,
        owner: None,
    });
    Ok(ops)
}

/// `/etc` entries that are never exposed, whatever the configuration says.
const FORBIDDEN_ETC: &[&str] = &[
    "shadow",
    "gshadow",
    "shadow-",
    "gshadow-",
    "ssh",
    "sudoers",
    "sudoers.d",
    "security",
    "ssl/private",
];

/// Validates a work-dir-relative file name.
fn check_rel_path(p: &str) -> Result<(), SandboxError> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && p.len() <= 255
        && !p.contains('\0')
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidSpec(format!(
            "file name `{p}` must be a relative path without `..`"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Data handed to the child. Everything is prepared by the supervisor; the child only reads it.
// ---------------------------------------------------------------------------------------------

struct ChildPhase {
    stdin_r: RawFd,
    stdout_w: RawFd,
    stderr_w: RawFd,
    path: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    rlimits: Vec<(c_int, u64)>,
}

struct ChildCtx<'a> {
    keep_fds: Vec<RawFd>,
    /// v1 `cgroup.procs` files to write `0` into.
    cgroup_fds: Vec<RawFd>,
    /// The v2 group's `cgroup.procs` (-1 if none), written only if clone3 could not place us.
    cgroup_v2_fd: RawFd,
    /// Set just before `clone3(CLONE_INTO_CGROUP)`, so the child knows it was born in the v2 group.
    born_in_v2: bool,
    ops: [&'a [Op]; 2],
    newroot: CString,
    hostname: Vec<u8>,
    cmd_r: RawFd,
    status_w: RawFd,
    phases: Vec<ChildPhase>,
    uid: u32,
    gid: u32,
    cap_last: u32,
    filter: libc::sock_fprog,
    workdir: CString,
    dot: CString,
    lo_req: [u8; 40],
}

/// Messages from the sandbox (12 bytes, written atomically on a pipe).
const MSG_SETUP_FAILED: u32 = 1;
const MSG_READY: u32 = 2;
const MSG_EXEC_FAILED: u32 = 3;
const MSG_EXITED: u32 = 4;

/// Setup steps other than the ops, for error messages.
const STEP_CGROUP: i32 = -1;
const STEP_UNSHARE_CGROUP: i32 = -2;
const STEP_PRIVATE: i32 = -3;
const STEP_PIVOT: i32 = -4;
const STEP_HOSTNAME: i32 = -5;
const STEP_LOOPBACK: i32 = -6;
const STEP_FORK: i32 = -7;

fn step_name(step: i32, ops: &[&Op]) -> String {
    match step {
        STEP_CGROUP => "join cgroup".into(),
        STEP_UNSHARE_CGROUP => "unshare cgroup namespace".into(),
        STEP_PRIVATE => "make mounts private".into(),
        STEP_PIVOT => "pivot_root".into(),
        STEP_HOSTNAME => "sethostname".into(),
        STEP_LOOPBACK => "bring up loopback".into(),
        STEP_FORK => "fork payload".into(),
        n if n >= 0 => ops
            .get(n as usize)
            .map(|o| o.describe())
            .unwrap_or_else(|| format!("step {n}")),
        n => format!("step {n}"),
    }
}

/// Payload failure stages (sent as the high 16 bits of MSG_EXEC_FAILED's first word).
const STAGES: &[&str] = &[
    "execve",
    "dup2",
    "setsid",
    "chdir",
    "setrlimit",
    "drop bounding set",
    "clear ambient caps",
    "setgroups",
    "setresgid",
    "setresuid",
    "capset",
    "no_new_privs",
    "close_range",
    "seccomp",
];

// SAFETY (module note): everything below runs in the cloned child, a copy of the parent's memory
// with a single thread. It only calls async-signal-safe raw syscalls on data prepared before the
// clone, and never returns (it ends in `_exit` or `execve`).

unsafe fn send(fd: RawFd, kind: u32, a: i32, b: i32) {
    let mut buf = [0u8; 12];
    buf[0..4].copy_from_slice(&kind.to_ne_bytes());
    buf[4..8].copy_from_slice(&a.to_ne_bytes());
    buf[8..12].copy_from_slice(&b.to_ne_bytes());
    libc::write(fd, buf.as_ptr().cast(), 12);
}

unsafe fn errno() -> i32 {
    *libc::__errno_location()
}

unsafe fn fail(ctx: &ChildCtx, step: i32) -> ! {
    send(ctx.status_w, MSG_SETUP_FAILED, step, errno());
    libc::_exit(1);
}

unsafe fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

unsafe fn unblock_signals() {
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
}

/// Closes every fd except the (sorted) `keep` list.
unsafe fn close_all_except(keep: &[RawFd]) {
    let mut next: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            libc::syscall(libc::SYS_close_range, next, fd - 1, 0);
        }
        next = fd + 1;
    }
    libc::syscall(libc::SYS_close_range, next, u32::MAX, 0);
}

unsafe fn run_op(op: &Op) -> bool {
    match op {
        Op::Mkdir { path, mode, owner } => {
            if libc::mkdir(path.as_ptr(), *mode) != 0 && errno() != libc::EEXIST {
                return false;
            }
            if let Some((u, g)) = owner {
                return libc::chown(path.as_ptr(), *u, *g) == 0;
            }
            true
        }
        Op::Symlink { target, path } => libc::symlink(target.as_ptr(), path.as_ptr()) == 0,
        Op::Touch { path } => {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            );
            fd >= 0 && libc::close(fd) == 0
        }
        Op::Mount {
            src,
            dst,
            fstype,
            flags,
            data,
        } => {
            let p =
                |c: &Option<CString>| c.as_ref().map(|c| c.as_ptr()).unwrap_or(std::ptr::null());
            libc::mount(p(src), dst.as_ptr(), p(fstype), *flags, p(data).cast()) == 0
        }
        Op::Write {
            path,
            data,
            mode,
            owner,
        } => {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                *mode,
            );
            if fd < 0 {
                return false;
            }
            let mut off = 0;
            while off < data.len() {
                let n = libc::write(fd, data[off..].as_ptr().cast(), data.len() - off);
                if n <= 0 {
                    libc::close(fd);
                    return false;
                }
                off += n as usize;
            }
            if let Some((u, g)) = owner {
                if libc::fchown(fd, *u, *g) != 0 {
                    libc::close(fd);
                    return false;
                }
            }
            libc::fchmod(fd, *mode);
            libc::close(fd) == 0
        }
    }
}

/// Entry point of the sandbox init (pid 1 of the new pid namespace).
unsafe fn child_init(ctx: &ChildCtx) -> ! {
    reset_signals();
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
    close_all_except(&ctx.keep_fds);

    // Join the run's cgroup before anything else, then hide the rest of the tree.
    let v2 = (!ctx.born_in_v2 && ctx.cgroup_v2_fd >= 0).then_some(ctx.cgroup_v2_fd);
    for &fd in ctx.cgroup_fds.iter().chain(v2.iter()) {
        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(ctx, STEP_CGROUP);
        }
    }
    for &fd in ctx
        .cgroup_fds
        .iter()
        .chain(std::iter::once(&ctx.cgroup_v2_fd))
    {
        libc::close(fd);
    }
    if libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
        fail(ctx, STEP_UNSHARE_CGROUP);
    }

    if libc::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ) != 0
    {
        fail(ctx, STEP_PRIVATE);
    }
    let mut step = 0;
    for list in ctx.ops {
        for op in list {
            if !run_op(op) {
                fail(ctx, step);
            }
            step += 1;
        }
    }
    if libc::chdir(ctx.newroot.as_ptr()) != 0
        || libc::syscall(libc::SYS_pivot_root, ctx.dot.as_ptr(), ctx.dot.as_ptr()) != 0
        || libc::umount2(ctx.dot.as_ptr(), libc::MNT_DETACH) != 0
        || libc::chdir(ctx.workdir.as_ptr()) != 0
    {
        fail(ctx, STEP_PIVOT);
    }
    if libc::sethostname(ctx.hostname.as_ptr().cast(), ctx.hostname.len()) != 0 {
        fail(ctx, STEP_HOSTNAME);
    }
    let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if sock < 0 || libc::ioctl(sock, libc::SIOCSIFFLAGS, ctx.lo_req.as_ptr()) != 0 {
        fail(ctx, STEP_LOOPBACK);
    }
    libc::close(sock);
    unblock_signals();
    send(ctx.status_w, MSG_READY, 0, 0);

    for (i, phase) in ctx.phases.iter().enumerate() {
        let mut go = 0u8;
        if libc::read(ctx.cmd_r, (&mut go as *mut u8).cast(), 1) != 1 {
            libc::_exit(0);
        }
        // Raw clone, not glibc's fork(): this process is a copy of a possibly multithreaded
        // parent, and fork() would take malloc's locks, which another parent thread may have
        // held at clone time (deadlock).
        let pid = libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as libc::pid_t;
        if pid < 0 {
            fail(ctx, STEP_FORK);
        }
        if pid == 0 {
            payload(ctx, i, phase);
        }
        libc::close(phase.stdin_r);
        libc::close(phase.stdout_w);
        libc::close(phase.stderr_w);
        let mut main_status = 0;
        loop {
            let mut st = 0;
            let r = libc::waitpid(-1, &mut st, 0);
            if r == pid {
                main_status = st;
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                break;
            }
        }
        // The main program is done: nothing else of this phase may survive it.
        libc::kill(-1, libc::SIGKILL);
        while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0 || errno() == libc::EINTR {}
        send(ctx.status_w, MSG_EXITED, i as i32, main_status);
    }
    libc::_exit(0);
}

unsafe fn payload_failed(ctx: &ChildCtx, index: usize, stage: usize) -> ! {
    send(
        ctx.status_w,
        MSG_EXEC_FAILED,
        ((stage as i32) << 16) | index as i32,
        errno(),
    );
    libc::_exit(127);
}

unsafe fn payload(ctx: &ChildCtx, index: usize, p: &ChildPhase) -> ! {
    let die = |stage: usize| payload_failed(ctx, index, stage);
    if libc::dup2(p.stdin_r, 0) < 0
        || libc::dup2(p.stdout_w, 1) < 0
        || libc::dup2(p.stderr_w, 2) < 0
    {
        die(1);
    }
    if libc::setsid() < 0 {
        die(2);
    }
    if libc::chdir(ctx.workdir.as_ptr()) != 0 {
        die(3);
    }
    for &(res, val) in &p.rlimits {
        let rl = libc::rlimit {
            rlim_cur: val,
            rlim_max: val,
        };
        if libc::setrlimit(res as _, &rl) != 0 {
            die(4);
        }
    }
    for cap in 0..=ctx.cap_last {
        if libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0) != 0
            && errno() != libc::EINVAL
        {
            die(5);
        }
    }
    if libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
        0,
        0,
        0,
    ) != 0
    {
        die(6);
    }
    // Raw syscalls: glibc's set*id wrappers broadcast to every thread it believes exists
    // (copied from the parent's bookkeeping) and would wait forever for threads that are not here.
    if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0 {
        die(7);
    }
    if libc::syscall(libc::SYS_setresgid, ctx.gid, ctx.gid, ctx.gid) != 0 {
        die(8);
    }
    if libc::syscall(libc::SYS_setresuid, ctx.uid, ctx.uid, ctx.uid) != 0 {
        die(9);
    }
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
        die(10);
    }
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        die(11);
    }
    if libc::syscall(
        libc::SYS_close_range,
        3u32,
        u32::MAX,
        libc::CLOSE_RANGE_CLOEXEC,
    ) != 0
    {
        die(12);
    }
    unblock_signals();
    if libc::prctl(
        libc::PR_SET_SECCOMP,
        libc::SECCOMP_MODE_FILTER as c_ulong,
        &ctx.filter as *const _ as c_ulong,
        0,
        0,
    ) != 0
    {
        die(13);
    }
    libc::execve(p.path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
    die(0)
}

// ---------------------------------------------------------------------------------------------
// Supervisor side.
// ---------------------------------------------------------------------------------------------

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints; on success both are new fds we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own; no memory is passed.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// The sandbox init process; killed and reaped on drop if still around.
struct InitProcess {
    pid: libc::pid_t,
    reaped: bool,
}

impl InitProcess {
    fn kill(&self) {
        if !self.reaped {
            // SAFETY: pid is our own unreaped child, so it cannot have been recycled.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
    fn reap(&mut self) -> Option<c_int> {
        if self.reaped {
            return None;
        }
        let mut st = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut st, libc::__WALL) };
            if r == self.pid {
                self.reaped = true;
                return Some(st);
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                self.reaped = true;
                return None;
            }
        }
    }
}

impl Drop for InitProcess {
    fn drop(&mut self) {
        self.kill();
        self.reap();
    }
}

struct PhasePipes {
    stdin_w: Option<OwnedFd>,
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
    child_ends: Vec<OwnedFd>,
}

/// Reads the 12-byte messages of the status pipe.
struct StatusReader {
    fd: OwnedFd,
    buf: Vec<u8>,
    eof: bool,
}

impl StatusReader {
    fn pump(&mut self) {
        let mut tmp = [0u8; 256];
        loop {
            // SAFETY: reading into a local buffer of the given length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), tmp.as_mut_ptr().cast(), tmp.len()) };
            if n > 0 {
                self.buf.extend_from_slice(&tmp[..n as usize]);
            } else if n == 0 {
                self.eof = true;
                return;
            } else {
                return;
            }
        }
    }
    fn next(&mut self) -> Option<(u32, i32, i32)> {
        if self.buf.len() < 12 {
            return None;
        }
        let m: Vec<u8> = self.buf.drain(..12).collect();
        let w = |i: usize| [m[i], m[i + 1], m[i + 2], m[i + 3]];
        Some((
            u32::from_ne_bytes(w(0)),
            i32::from_ne_bytes(w(4)),
            i32::from_ne_bytes(w(8)),
        ))
    }
}

fn os_err(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn has_command(&self, cmd: &str) -> bool {
        self.resolve_command(cmd).is_some()
    }

    fn execute(&self, spec: &ExecSpec) -> Result<ExecReport, SandboxError> {
        let started = Instant::now();
        if spec.phases.is_empty() {
            return Err(SandboxError::InvalidSpec("no phase to run".into()));
        }
        for f in &spec.files {
            check_rel_path(&f.path)?;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("run-{}-{n}", std::process::id());
        let mut cg = self.layout.create(&name)?;
        let first = &spec.phases[0].limits;
        cg.set_limits(first.memory_bytes, first.max_processes, first.cpu_millis)?;
        let join = cg.join_files()?;

        let run_ops = self.run_ops(spec)?;
        let setup_setup: Vec<&Op> = self.base_ops.iter().chain(run_ops.iter()).collect();

        // Pipes: control, status, and stdio for every phase.
        let io = |e: io::Error| SandboxError::Setup(format!("cannot create pipe: {e}"));
        let (cmd_r, cmd_w) = pipe().map_err(io)?;
        let (status_r, status_w) = pipe().map_err(io)?;
        let mut pipes = Vec::new();
        let mut child_phases = Vec::new();
        let mut keep_strings: Vec<Vec<CString>> = Vec::new();
        for phase in &spec.phases {
            let (in_r, in_w) = pipe().map_err(io)?;
            let (out_r, out_w) = pipe().map_err(io)?;
            let (err_r, err_w) = pipe().map_err(io)?;
            let (path, argv, envp, strings) = self.command(phase)?;
            child_phases.push(ChildPhase {
                stdin_r: in_r.as_raw_fd(),
                stdout_w: out_w.as_raw_fd(),
                stderr_w: err_w.as_raw_fd(),
                path,
                argv,
                envp,
                rlimits: rlimits(&phase.limits),
            });
            keep_strings.push(strings);
            pipes.push(PhasePipes {
                stdin_w: Some(in_w),
                stdout_r: Some(out_r),
                stderr_r: Some(err_r),
                child_ends: vec![in_r, out_w, err_w],
            });
        }
        let mut keep_fds: Vec<RawFd> = vec![cmd_r.as_raw_fd(), status_w.as_raw_fd()];
        keep_fds.extend(
            join.v1_procs
                .iter()
                .chain(&join.v2_procs)
                .map(|f| f.as_raw_fd()),
        );
        for p in &pipes {
            keep_fds.extend(p.child_ends.iter().map(|f| f.as_raw_fd()));
        }
        keep_fds.sort_unstable();
        let mut lo_req = [0u8; 40];
        lo_req[..2].copy_from_slice(b"lo");
        let flags = (libc::IFF_UP | libc::IFF_RUNNING) as u16;
        lo_req[16..18].copy_from_slice(&flags.to_ne_bytes());
        let mut ctx = ChildCtx {
            keep_fds,
            cgroup_fds: join.v1_procs.iter().map(|f| f.as_raw_fd()).collect(),
            cgroup_v2_fd: join.v2_procs.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
            born_in_v2: false,
            ops: [&self.base_ops, &run_ops],
            newroot: cpath(&self.cfg.mount_point),
            hostname: self.cfg.hostname.as_bytes().to_vec(),
            cmd_r: cmd_r.as_raw_fd(),
            status_w: status_w.as_raw_fd(),
            phases: child_phases,
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            cap_last: self.cap_last,
            filter: libc::sock_fprog {
                len: self.filter.len() as u16,
                filter: self.filter.as_ptr() as *mut _,
            },
            workdir: cstr("/tmp"),
            dot: cstr("."),
            lo_req,
        };

        let flags = libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        // SAFETY: a fork-like clone or clone3 (no CLONE_VM, no new stack): the child gets a private copy of
        // this address space and runs `child_init`, which never returns and only uses raw
        // syscalls on the prepared `ctx`. Signals are blocked around the clone so that no handler
        // of this process runs in the child before it resets them.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let mut pid = -1;
            if let Some(dir) = &join.v2_dir {
                // Born directly in the v2 group: no migration, no RCU stall (kernel 5.7+).
                ctx.born_in_v2 = true;
                let args = CloneArgs {
                    flags: (flags as u64) | CLONE_INTO_CGROUP,
                    exit_signal: libc::SIGCHLD as u64,
                    cgroup: dir.as_raw_fd() as u64,
                    ..CloneArgs::default()
                };
                pid = libc::syscall(
                    libc::SYS_clone3,
                    &args as *const CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                );
                if pid < 0 {
                    ctx.born_in_v2 = false;
                }
            }
            if pid < 0 {
                pid = libc::syscall(
                    libc::SYS_clone,
                    (flags | libc::SIGCHLD) as c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                );
            }
            if pid == 0 {
                child_init(&ctx);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            pid
        };
        if pid < 0 {
            return Err(SandboxError::Setup(format!(
                "clone failed: {}",
                io::Error::last_os_error()
            )));
        }
        let init = InitProcess {
            pid: pid as libc::pid_t,
            reaped: false,
        };
        drop(ctx);
        drop(join);
        drop(cmd_r);
        drop(status_w);
        for p in &mut pipes {
            p.child_ends.clear();
        }
        drop(keep_strings);

        set_nonblocking(status_r.as_raw_fd());
        let mut s = Session {
            status: StatusReader {
                fd: status_r,
                buf: Vec::new(),
                eof: false,
            },
            cmd_w: Some(cmd_w),
            init,
            cg,
        };
        // Wait for READY (or a setup failure).
        let ready = loop {
            if let Some((kind, a, b)) = s.status.next() {
                break match kind {
                    MSG_READY => Ok(()),
                    MSG_SETUP_FAILED => {
                        Err(format!("{}: {}", step_name(a, &setup_setup), os_err(b)))
                    }
                    _ => Err(format!("unexpected message {kind} from the sandbox")),
                };
            }
            if s.status.eof {
                break Err("the sandbox init died during setup".to_string());
            }
            wait_readable(s.status.fd.as_raw_fd(), None);
            s.status.pump();
        };
        if let Err(e) = ready {
            s.finish()?;
            return Err(SandboxError::Setup(e));
        }
        let setup_time = started.elapsed();

        let mut reports = Vec::new();
        for (i, phase) in spec.phases.iter().enumerate() {
            if i > 0 {
                s.cg.reset_peak();
                s.cg.set_limits(
                    phase.limits.memory_bytes,
                    phase.limits.max_processes,
                    phase.limits.cpu_millis,
                )?;
            }
            let report = self.supervise(i, phase, &mut pipes[i], &mut s);
            let stop = report.status != Status::Ok && !phase.continue_on_failure;
            let dead = report.limit_hit.is_some()
                || report.status == Status::InternalError
                || s.status.eof;
            reports.push(report);
            if stop || dead {
                break;
            }
        }
        s.finish()?;
        Ok(ExecReport {
            phases: reports,
            setup_time,
            total_time: started.elapsed(),
        })
    }
}

/// One live sandbox, as the supervisor holds it.
struct Session {
    status: StatusReader,
    /// Control pipe to init: one byte releases the next phase; closing it makes init exit.
    cmd_w: Option<OwnedFd>,
    init: InitProcess,
    cg: RunCgroup,
}

impl Session {
    /// Ends the sandbox: init exits (or is killed), the tree is gone, the cgroup removed.
    fn finish(&mut self) -> Result<(), SandboxError> {
        self.cmd_w.take();
        self.init.kill();
        self.init.reap();
        self.cg.kill_all();
        self.cg.remove()
    }
}

/// `struct clone_args` of clone3 (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Polls one fd for input, with an optional timeout.
fn wait_readable(fd: RawFd, timeout: Option<Duration>) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout
        .map(|t| t.as_millis().min(i32::MAX as u128) as c_int)
        .unwrap_or(-1);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

fn rlimits(l: &crate::spec::Limits) -> Vec<(c_int, u64)> {
    let cpu_secs = l.cpu.as_secs() + 2; // backstop only; the supervisor enforces the real limit
    vec![
        (libc::RLIMIT_NOFILE as c_int, l.max_open_files),
        (libc::RLIMIT_FSIZE as c_int, l.max_file_bytes),
        (libc::RLIMIT_CORE as c_int, 0),
        (libc::RLIMIT_STACK as c_int, l.stack_bytes),
        (libc::RLIMIT_MEMLOCK as c_int, 64 << 10),
        (libc::RLIMIT_CPU as c_int, cpu_secs),
    ]
}

/// Output collected from one pipe, cut exactly at the cap.
struct Capture {
    data: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn push(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.data.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

impl NativeBackend {
    /// Per-run ops: the work tmpfs, /dev/shm, the program's files, then the root made read-only.
    fn run_ops(&self, spec: &ExecSpec) -> Result<Vec<Op>, SandboxError> {
        let root = &self.cfg.mount_point;
        let owner = Some((self.cfg.uid, self.cfg.gid));
        let (uid, gid) = (self.cfg.uid, self.cfg.gid);
        let mut ops = vec![
            Op::Mount {
                src: Some(cstr("isobox-tmp")),
                dst: cpath(&root.join("tmp")),
                fstype: Some(cstr("tmpfs")),
                flags: libc::MS_NOSUID | libc::MS_NODEV,
                data: Some(cstr(format!(
                    "size={},nr_inodes={},mode=0755,uid={uid},gid={gid}",
                    spec.tmpfs_bytes.max(4096),
                    spec.tmpfs_inodes.max(16)
                ))),
            },
            Op::Mount {
                src: Some(cstr("isobox-shm")),
                dst: cpath(&root.join("dev/shm")),
                fstype: Some(cstr("tmpfs")),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: Some(cstr(format!(
                    "size={},nr_inodes=1024,mode=1777",
                    spec.tmpfs_bytes.max(4096)
                ))),
            },
        ];
        let tmp = root.join("tmp");
        let mut dirs_made: Vec<PathBuf> = Vec::new();
        for f in &spec.files {
            let rel = Path::new(&f.path);
            let mut acc = PathBuf::new();
            if let Some(parent) = rel.parent() {
                for c in parent.components() {
                    acc.push(c);
                    if !dirs_made.contains(&acc) {
                        dirs_made.push(acc.clone());
                        ops.push(Op::Mkdir {
                            path: cpath(&tmp.join(&acc)),
                            mode: 0o755,
                            owner,
                        });
                    }
                }
            }
            ops.push(Op::Write {
                path: cpath(&tmp.join(rel)),
                data: f.content.clone(),
                mode: if f.executable { 0o755 } else { 0o644 },
                owner,
            });
        }
        ops.push(Op::Mount {
            src: None,
            dst: cpath(root),
            fstype: None,
            flags: libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            data: None,
        });
        Ok(ops)
    }

    /// Resolves argv[0] and builds the C argv/envp arrays (pointers into the returned strings).
    #[allow(clippy::type_complexity)]
    fn command(
        &self,
        phase: &Phase,
    ) -> Result<
        (
            CString,
            Vec<*const c_char>,
            Vec<*const c_char>,
            Vec<CString>,
        ),
        SandboxError,
    > {
        let Some(cmd) = phase.argv.first() else {
            return Err(SandboxError::InvalidSpec(format!(
                "phase `{}` has an empty command",
                phase.name
            )));
        };
        let bad = |s: &str| s.contains('\0');
        if phase.argv.iter().any(|a| bad(a))
            || phase
                .env
                .iter()
                .any(|(k, v)| bad(k) || bad(v) || k.contains('='))
        {
            return Err(SandboxError::InvalidSpec(
                "arguments and environment may not contain NUL bytes".into(),
            ));
        }
        // Absolute and relative paths (`./main`, resolved against the work dir) are used as
        // given; bare names are looked up in the sandbox PATH.
        let path = if cmd.contains('/') {
            cmd.clone()
        } else {
            self.resolve_command(cmd)
                .unwrap_or_else(|| format!("/usr/bin/{cmd}"))
        };
        let mut strings: Vec<CString> = phase.argv.iter().map(cstr).collect();
        let argc = strings.len();
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), SANDBOX_PATH.into()),
            ("HOME".into(), "/tmp".into()),
            ("TMPDIR".into(), "/tmp".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("USER".into(), "sandbox".into()),
        ];
        for (k, v) in &phase.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        strings.extend(env.iter().map(|(k, v)| cstr(format!("{k}={v}"))));
        let mut argv: Vec<*const c_char> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
        envp.push(std::ptr::null());
        Ok((cstr(path), argv, envp, strings))
    }

    /// Runs one phase: releases it, feeds stdin, collects output, enforces time/output limits.
    fn supervise(
        &self,
        index: usize,
        phase: &Phase,
        pipes: &mut PhasePipes,
        session: &mut Session,
    ) -> PhaseReport {
        let Session {
            status,
            cmd_w,
            init,
            cg,
        } = session;
        let cmd_w = cmd_w.as_ref();
        let limits = &phase.limits;
        let cap = limits.max_output_bytes as usize;
        let mut out = Capture {
            data: Vec::new(),
            cap,
            truncated: false,
        };
        let mut err = Capture {
            data: Vec::new(),
            cap,
            truncated: false,
        };
        let cpu0 = cg.cpu_usage();
        let oom0 = cg.oom_kills();
        let mut stdin_off = 0usize;
        if let Some(w) = &pipes.stdin_w {
            set_nonblocking(w.as_raw_fd());
        }
        if phase.stdin.is_empty() {
            pipes.stdin_w = None;
        }
        let start = Instant::now();
        let deadline = start + limits.wall;
        let mut limit_hit: Option<LimitHit> = None;
        let mut exited: Option<c_int> = None;
        let mut exec_failed: Option<String> = None;
        let mut failure: Option<String> = None;
        let go = cmd_w.map(|w| {
            // SAFETY: writing one byte from a local to a pipe we own.
            unsafe { libc::write(w.as_raw_fd(), b"g".as_ptr().cast(), 1) == 1 }
        });
        if go != Some(true) {
            failure = Some("cannot release the phase to the sandbox".into());
        }
        let kill = |init: &InitProcess, cg: &RunCgroup| {
            init.kill();
            cg.kill_all();
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let done_msgs = exited.is_some() || status.eof;
            if done_msgs && pipes.stdout_r.is_none() && pipes.stderr_r.is_none() {
                break;
            }
            if failure.is_some() && limit_hit.is_none() && exited.is_none() {
                kill(init, cg);
            }
            // Limits.
            if limit_hit.is_none() && exited.is_none() {
                let now = Instant::now();
                if now >= deadline {
                    limit_hit = Some(LimitHit::WallTime);
                } else if cg.cpu_usage().saturating_sub(cpu0) > limits.cpu {
                    limit_hit = Some(LimitHit::CpuTime);
                } else if out.truncated || err.truncated {
                    limit_hit = Some(LimitHit::Output);
                }
                if limit_hit.is_some() {
                    kill(init, cg);
                }
            }
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
            let mut push = |fd: Option<&OwnedFd>, events| {
                if let Some(fd) = fd {
                    fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events,
                        revents: 0,
                    });
                }
            };
            push(pipes.stdout_r.as_ref(), libc::POLLIN);
            push(pipes.stderr_r.as_ref(), libc::POLLIN);
            if !status.eof && exited.is_none() {
                push(Some(&status.fd), libc::POLLIN);
            }
            push(pipes.stdin_w.as_ref(), libc::POLLOUT);
            let timeout = if limit_hit.is_some() || exited.is_some() {
                // Everything is being killed; pipes close promptly.
                Duration::from_millis(100)
            } else {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10))
            };
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    timeout.as_millis().max(1) as c_int,
                )
            };
            if n < 0 {
                continue;
            }
            for p in &fds {
                if p.revents == 0 {
                    continue;
                }
                let fd = p.fd;
                if pipes.stdout_r.as_ref().is_some_and(|f| f.as_raw_fd() == fd) {
                    if !read_into(fd, &mut buf, &mut out) {
                        pipes.stdout_r = None;
                    }
                } else if pipes.stderr_r.as_ref().is_some_and(|f| f.as_raw_fd() == fd) {
                    if !read_into(fd, &mut buf, &mut err) {
                        pipes.stderr_r = None;
                    }
                } else if fd == status.fd.as_raw_fd() {
                    status.pump();
                    while let Some((kind, a, b)) = status.next() {
                        match kind {
                            MSG_EXITED if a as usize == index => exited = Some(b),
                            MSG_EXEC_FAILED => {
                                let stage = STAGES
                                    .get((a >> 16) as usize)
                                    .copied()
                                    .unwrap_or("payload setup");
                                exec_failed = Some(format!(
                                    "cannot start `{}`: {stage}: {}",
                                    phase.argv[0],
                                    os_err(b)
                                ));
                            }
                            MSG_SETUP_FAILED => {
                                failure =
                                    Some(format!("sandbox init failed at step {a}: {}", os_err(b)))
                            }
                            _ => {}
                        }
                    }
                } else if let Some(w) = &pipes.stdin_w {
                    if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                        pipes.stdin_w = None;
                        continue;
                    }
                    let rest = &phase.stdin[stdin_off..];
                    // SAFETY: writing from a live slice to a pipe we own.
                    let w = unsafe {
                        libc::write(
                            w.as_raw_fd(),
                            rest.as_ptr().cast(),
                            rest.len().min(64 * 1024),
                        )
                    };
                    if w > 0 {
                        stdin_off += w as usize;
                        if stdin_off >= phase.stdin.len() {
                            pipes.stdin_w = None;
                        }
                    } else if w < 0
                        && io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
                    {
                        pipes.stdin_w = None;
                    }
                }
            }
            if status.eof && exited.is_none() && limit_hit.is_none() && failure.is_none() {
                // Init died without reporting: killed by the OOM killer (v2 group kill) or worse.
                if cg.oom_kills() > oom0 {
                    limit_hit = Some(LimitHit::Memory);
                } else {
                    failure = Some("the sandbox init exited unexpectedly".into());
                }
            }
        }
        pipes.stdin_w = None;
        let wall_time = start.elapsed();
        let cpu_time = cg.cpu_usage().saturating_sub(cpu0);
        let memory_peak_bytes = cg.memory_peak();
        let oom = cg.oom_kills() > oom0;
        let (exit_code, signal) = match exited {
            Some(st) if libc::WIFEXITED(st) => (Some(libc::WEXITSTATUS(st)), None),
            Some(st) if libc::WIFSIGNALED(st) => (None, Some(libc::WTERMSIG(st))),
            _ => (None, None),
        };
        let failure = failure.or(exec_failed);
        let (status_v, limit_hit) = if let Some(hit) = limit_hit {
            let s = match hit {
                LimitHit::WallTime | LimitHit::CpuTime => Status::Timeout,
                LimitHit::Memory => Status::MemoryLimit,
                LimitHit::Output => Status::OutputLimit,
            };
            (s, Some(hit))
        } else if failure.is_some() {
            (Status::InternalError, None)
        } else if oom && (signal == Some(libc::SIGKILL) || exit_code != Some(0)) {
            (Status::MemoryLimit, Some(LimitHit::Memory))
        } else if signal == Some(libc::SIGXCPU) {
            (Status::Timeout, Some(LimitHit::CpuTime))
        } else if let Some(sig) = signal {
            let _ = sig;
            (Status::Signal, None)
        } else if exit_code == Some(0) {
            (Status::Ok, None)
        } else {
            (Status::RuntimeError, None)
        };
        PhaseReport {
            name: phase.name.clone(),
            status: status_v,
            exit_code,
            signal,
            limit_hit,
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            stdout: out.data,
            stderr: err.data,
            cpu_time,
            wall_time,
            memory_peak_bytes,
            internal_error: failure,
        }
    }
}

/// Reads what is available; false on EOF or error.
fn read_into(fd: RawFd, buf: &mut [u8], cap: &mut Capture) -> bool {
    // SAFETY: reading into a live buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n > 0 {
        cap.push(&buf[..n as usize]);
        true
    } else {
        n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    }
}
