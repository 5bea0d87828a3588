//! What the sandbox's root file system is made of, as a list of steps ([`Op`]) that the sandbox
//! init executes: the base root (same for every run, prepared once) and the per-run part (work
//! tmpfs, /dev/shm, the program's files, the root made read-only).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libc::c_ulong;

use super::NativeConfig;
use crate::spec::ExecSpec;
use crate::SandboxError;

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
/// Top-level entries of a prepared root (`RootFs::Dir`, a runtime) that a sandbox never gets:
/// those it makes itself (`/proc`, `/dev`, `/sys`, `/tmp`) and the homes and mount points of a
/// Debian system, empty or holding root's dotfiles, that no program needs. The docker image of
/// a runtime leaves out the same.
pub const NOT_FROM_ROOT: &[&str] = &[
    "proc",
    "dev",
    "sys",
    "tmp",
    "home",
    "root",
    "boot",
    "media",
    "mnt",
    "srv",
    "lost+found",
];

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
    "protocols",
    "services",
    "gai.conf",
    "host.conf",
    "magic",
    "lua5.4",
];

/// One step of building the new root, executed by the sandbox init (all data prepared beforehand).
#[derive(Debug)]
pub(super) enum Op {
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
    /// Writes into an existing file (a sysctl of the sandbox's own namespaces).
    Set {
        path: CString,
        value: Vec<u8>,
    },
    Write {
        path: CString,
        data: Vec<u8>,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
}

impl Op {
    pub(super) fn describe(&self) -> String {
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
            Op::Set { path, .. } => format!("set {}", s(path)),
        }
    }
}

pub(super) fn cstr(s: impl AsRef<[u8]>) -> CString {
    CString::new(s.as_ref().to_vec()).expect("no NUL in sandbox strings")
}

pub(super) fn cpath(p: &Path) -> CString {
    cstr(p.as_os_str().as_bytes())
}

const RO_BIND: c_ulong =
    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

/// The `nosuid`, `nodev` and `noexec` flags of the host mount that holds `src`, as mount flags.
/// The sandbox init binds host paths from a user namespace of its own, where those flags of the
/// original mount are locked: a remount of the bind must keep them or it fails (`EPERM`).
fn locked_flags(src: &Path) -> c_ulong {
    let path = cpath(src);
    // SAFETY: `statvfs` is plain data (all-zero is valid); the call reads a C string and writes
    // only into the live local.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return 0;
        }
        st
    };
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    flags
}

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
        flags: RO_BIND | locked_flags(src),
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

pub(super) fn build_base_ops(cfg: &NativeConfig) -> Result<Vec<Op>, SandboxError> {
    let root = &cfg.mount_point();
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
                if name.to_str().is_some_and(|n| NOT_FROM_ROOT.contains(&n)) {
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
            flags: libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_NOSUID
                | libc::MS_NOEXEC
                | locked_flags(&Path::new("/dev").join(d)),
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
    // Small socket buffers in this (private) network namespace: loopback traffic cannot pin
    // much kernel memory, which cgroup v1 does not count against the memory limit.
    for (knob, value) in [
        ("tcp_rmem", "4096 32768 262144"),
        ("tcp_wmem", "4096 16384 262144"),
    ] {
        let at = proc_dir.join("sys/net/ipv4").join(knob);
        if Path::new("/proc/sys/net/ipv4").join(knob).exists() {
            ops.push(Op::Set {
                path: cpath(&at),
                value: value.into(),
            });
        }
    }
    // Host facts a program has no business reading: covered by /dev/null (as Docker does).
    for p in [
        "kcore",
        "keys",
        "key-users",
        "timer_list",
        "sched_debug",
        "config.gz",
        "cmdline",
        "latency_stats",
    ] {
        if Path::new("/proc").join(p).exists() {
            ops.push(Op::Mount {
                src: Some(cstr("/dev/null")),
                dst: cpath(&proc_dir.join(p)),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            });
        }
    }
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
    "ssl",
    // Generated for each sandbox (its own uid).
    "passwd",
    "group",
];

/// `/etc/passwd` and `/etc/group` naming this sandbox's own user (run before pivot_root, with
/// the base root).
pub(super) fn identity_ops(cfg: &NativeConfig, uid: u32, gid: u32) -> Vec<Op> {
    if !matches!(cfg.rootfs, RootFs::Host { .. }) {
        return Vec::new();
    }
    let etc = cfg.mount_point().join("etc");
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}:sandbox:/tmp:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nsandbox:x:{gid}:\nnogroup:x:65534:\n");
    [("passwd", passwd), ("group", group)]
        .into_iter()
        .map(|(name, content)| Op::Write {
            path: cpath(&etc.join(name)),
            data: content.into_bytes(),
            mode: 0o644,
            owner: None,
        })
        .collect()
}

/// Per-run ops: the work tmpfs, /dev/shm, the program's files, then the root made read-only.
pub(super) fn run_ops(spec: &ExecSpec, uid: u32, gid: u32) -> Vec<Op> {
    // Run after pivot_root: paths are inside the new root.
    let root = Path::new("/");
    let owner = Some((uid, gid));
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
            // Read-only files keep the run's uid as owner: the program could chmod one back,
            // but the copy is this sandbox's own, so that changes only this run.
            mode: match (f.executable, f.readonly) {
                (true, false) => 0o755,
                (false, false) => 0o644,
                (true, true) => 0o555,
                (false, true) => 0o444,
            },
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
    ops
}
