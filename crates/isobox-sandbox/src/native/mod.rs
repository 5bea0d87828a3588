//! The native backend: our own namespace + cgroup + seccomp sandbox.
//!
//! # Order of operations
//!
//! Supervisor (this process, root), before the sandbox exists:
//! 1. creates the run's cgroup (one directory per hierarchy in use, v1 or v2 per controller);
//!    prepares the base root's steps, the seccomp program, the control socket, the status pipe
//!    and the job arena (see `child.rs`), so that the child never allocates (safe to clone from a
//!    multithreaded server);
//! 2. `clone3(CLONE_INTO_CGROUP)` on v2 (born in its group, no migration) or `clone`, with
//!    NEWUSER|NEWPID|NEWNS|NEWNET|NEWIPC|NEWUTS (one clone: the new user namespace owns the
//!    others), every signal blocked around it; then writes the user namespace's maps, the run's
//!    uid and gid each to itself and nothing else (`setgroups` left allowed), and tells the init
//!    on a pipe.
//!
//! Sandbox init (pid 1 of the new pid namespace, in its own user namespace: its capabilities
//! are that namespace's, none in the host's):
//! 3. resets signal handlers, sets PDEATHSIG, waits for the maps; drops the supplementary
//!    groups and switches to the run's gid and uid (so the host sees it as that unprivileged
//!    uid, never 0), sets PDEATHSIG again, makes itself non-dumpable (the payloads share its uid;
//!    it stays hidden from them); closes every inherited fd it does not need;
//! 4. joins the run's v1 cgroups (`0` into pre-opened `tasks` files), then
//!    `unshare(CLONE_NEWCGROUP)` so that the cgroup it sees is its own;
//! 5. makes `/` private, builds the base root on a small tmpfs: read-only nosuid nodev binds of
//!    the runtime dirs, a generated minimal `/etc`, a minimal `/dev` (null zero full random
//!    urandom), `/proc` for the new pid namespace (hidepid=2, sensitive entries read-only), no
//!    `/sys`; `pivot_root(".", ".")`, detaches the old root; sets the hostname, brings `lo` up (the
//!    net namespace has nothing else), says READY. A warm sandbox waits here.
//! 6. receives the job (in the shared arena, stdio pipes by SCM_RIGHTS): mounts the size- and
//!    inode-capped work tmpfs on `/tmp` and a fresh `/dev/shm`, writes the program's files,
//!    remounts the root read-only;
//! 7. for each phase the supervisor releases: forks the payload, waits for it while reaping
//!    orphans, then SIGKILLs everything left in the namespace and reports the wait status.
//!
//! Payload (forked by init for each phase):
//! 8. stdio onto the phase's pipes, `setsid` (no controlling tty), rlimits, drop the capability
//!    bounding and ambient sets, `setgroups([])`, `setresgid`/`setresuid` to the sandbox user
//!    (already the init's), clear every capability set (the user namespace's), `PR_SET_NO_NEW_PRIVS`, mark every fd above 2 close-on-exec,
//!    install the seccomp filter (last), `execve` with a clean environment.
//!
//! Supervisor, while a phase runs (`supervise.rs`): feeds stdin, reads stdout/stderr up to the
//! cap, watches the wall clock and the cgroup's CPU time; at any limit it kills the namespace init
//! (the kernel then kills every process of the namespace, stopped ones included) and, on v2,
//! writes `cgroup.kill`. Afterwards it reaps init, reads the cgroup's figures and removes the
//! cgroup. Nothing the program wrote is ever read from the host file system: files live on a
//! tmpfs that exists only in the sandbox's mount namespace and vanishes with it. The one
//! exception is a run that asks for files back (`ExecSpec::collect`): then the supervisor opens
//! that tmpfs as a directory fd before the first program starts and, once every process of the
//! sandbox is gone, walks it with the fd-relative, `O_NOFOLLOW` collector (`open_work_dir`,
//! `crate::collect`).

mod child;
pub mod launcher;
mod rootfs;
mod supervise;

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cgroup::{Layout, RunCgroup};
use crate::seccomp;
use crate::spec::{ExecReport, ExecSpec, Limits, Phase, RunIo, Status};
use crate::{Backend, SandboxError};

use crate::spec::SANDBOX_PATH;
use child::{Arena, CtxInit, PhaseCmd, MAX_PHASES, MSG_JOB_READY, MSG_READY, MSG_SETUP_FAILED};
use rootfs::{build_base_ops, cpath, cstr, run_ops, Op};
pub use rootfs::{RootFs, DEFAULT_ETC, NOT_FROM_ROOT};
use supervise::{
    os_err, pipe, pipe_for, set_nonblocking, supervise, wait_readable, InitProcess, PhasePipes,
    StatusReader,
};

/// Configuration of the native backend.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    pub rootfs: RootFs,
    /// The unprivileged users and groups payloads run as: each live sandbox gets its own pair,
    /// `uid + k` / `gid + k` for a free slot `k < uid_count`, so that no two runs (even from
    /// different IsoBox processes) share per-user kernel limits (inotify instances, message
    /// queues, pending signals, pipe buffers). Slots are claimed with lock files.
    pub uid: u32,
    pub gid: u32,
    pub uid_count: u32,
    /// Name of the parent cgroup under each hierarchy.
    pub cgroup_parent: String,
    /// IsoBox's host state: `root/` (an empty directory, the mount point of each sandbox's new
    /// root inside the sandbox's own mount namespace; nothing is mounted there on the host) and
    /// `uids/` (the lock files of the uid slots).
    pub state_dir: PathBuf,
    pub hostname: String,
    /// Sandboxes kept built and waiting for a job (namespaces, cgroup, base root ready), so that
    /// a run skips all of that. 0 (the default) builds each sandbox when its run starts; a server
    /// sets a few. A background thread refills the pool.
    pub warm_pool: usize,
    /// Size of a warm sandbox's job arena (files, argv, env of one run); a bigger job gets a
    /// freshly built sandbox instead.
    pub warm_arena_bytes: usize,
}

impl NativeConfig {
    /// Where each sandbox's new root is mounted (inside its own mount namespace).
    pub fn mount_point(&self) -> PathBuf {
        self.state_dir.join("root")
    }
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            rootfs: RootFs::Host {
                etc: DEFAULT_ETC.iter().map(|s| s.to_string()).collect(),
            },
            uid: 60000,
            gid: 60000,
            uid_count: 1000,
            cgroup_parent: "isobox".into(),
            state_dir: PathBuf::from("/run/isobox"),
            hostname: "isobox".into(),
            warm_pool: 0,
            warm_arena_bytes: 4 << 20,
        }
    }
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

/// What every sandbox of a backend shares, prepared once.
struct Shared {
    /// Set by `cancel_all`: no sandbox may start any more.
    cancelled: AtomicBool,
    /// Pids of the inits of live sandboxes (unreaped children, so never recycled).
    live: Arc<Mutex<std::collections::HashSet<libc::pid_t>>>,
    cfg: NativeConfig,
    layout: Layout,
    base_ops: Vec<Op>,
    filter: Vec<libc::sock_filter>,
    cap_last: u32,
}

/// Numbers the cgroups of this process (`run-<pid>-<n>`), across all backends.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The backend. Create it once; `execute` may be called from many threads at once.
pub struct NativeBackend {
    shared: Arc<Shared>,
    pool: Option<Arc<Pool>>,
    refill: Option<std::thread::JoinHandle<()>>,
}

impl NativeBackend {
    /// Checks privileges, detects the cgroup layout and prepares everything that is the same for
    /// every run.
    pub fn new(cfg: NativeConfig) -> Result<NativeBackend, SandboxError> {
        check_privileges()?;
        let layout = Layout::detect(&cfg.cgroup_parent)?;
        NativeBackend::prepare(cfg, layout)
    }

    /// Like `new`, with a cgroup layout chosen by the caller instead of detected (hosts where
    /// detection must be overridden; tests of the v2 code paths on hybrid hosts).
    pub fn with_layout(cfg: NativeConfig, layout: Layout) -> Result<NativeBackend, SandboxError> {
        check_privileges()?;
        NativeBackend::prepare(cfg, layout)
    }

    /// `new` and `with_layout` once privileges were checked (once: it reads /proc/self/status).
    fn prepare(cfg: NativeConfig, layout: Layout) -> Result<NativeBackend, SandboxError> {
        layout.prepare()?;
        layout.sweep_stale();
        // The mount point is reached by the sandbox init, which runs as the run's uid (an
        // empty directory: nothing is ever mounted there on the host); the uid locks are ours.
        for (dir, mode) in [
            (cfg.mount_point(), 0o755),
            (cfg.state_dir.join("uids"), 0o700),
        ] {
            fs::create_dir_all(&dir).map_err(|e| {
                SandboxError::Setup(format!("cannot create {}: {e}", dir.display()))
            })?;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode));
        }
        let cap_last = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        let base_ops = build_base_ops(&cfg)?;
        let warm = cfg.warm_pool;
        let shared = Arc::new(Shared {
            cancelled: AtomicBool::new(false),
            live: Arc::default(),
            cfg,
            layout,
            base_ops,
            filter: seccomp::build_filter(),
            cap_last,
        });
        let mut backend = NativeBackend {
            shared,
            pool: None,
            refill: None,
        };
        if warm > 0 {
            let pool = Arc::new(Pool {
                warm: Mutex::new(Vec::new()),
                retired: Mutex::new(Vec::new()),
                wanted: warm,
                wake: Condvar::new(),
                stop: AtomicBool::new(false),
            });
            let (shared, p) = (backend.shared.clone(), pool.clone());
            // The sandboxes are cloned by this long-lived thread: their PDEATHSIG is tied to it.
            let handle = std::thread::Builder::new()
                .name("isobox-warm-pool".into())
                .spawn(move || p.refill_loop(&shared))
                .map_err(|e| SandboxError::Setup(format!("cannot start the warm pool: {e}")))?;
            backend.pool = Some(pool);
            backend.refill = Some(handle);
        }
        Ok(backend)
    }

    /// The detected cgroup layout (for `selftest`).
    pub fn cgroup_layout(&self) -> &Layout {
        &self.shared.layout
    }

    pub fn config(&self) -> &NativeConfig {
        &self.shared.cfg
    }

    /// Whether `cmd` (a name looked up in the sandbox PATH, or an absolute path) exists in the
    /// sandbox, and where.
    pub fn resolve_command(&self, cmd: &str) -> Option<String> {
        self.shared.resolve_command(cmd)
    }

    /// Number of warm sandboxes waiting right now.
    pub fn warm_count(&self) -> usize {
        self.pool
            .as_ref()
            .map(|p| p.warm.lock().map(|w| w.len()).unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for NativeBackend {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.stop.store(true, Ordering::SeqCst);
            pool.notify();
        }
        if let Some(h) = self.refill.take() {
            let _ = h.join();
        }
        // Warm and retired sandboxes are torn down by their Drop (init killed, cgroup gone).
        if let Some(pool) = &self.pool {
            if let Ok(mut w) = pool.warm.lock() {
                w.clear();
            }
            if let Ok(mut r) = pool.retired.lock() {
                r.clear();
            }
        }
    }
}

impl Shared {
    /// The host path of the file `inside` names in the sandbox, symlinks followed. Symlinks in
    /// a prepared root (`/usr/bin/groovy -> /etc/alternatives/groovy`) point into that root, as
    /// the sandbox sees them, never into the host's.
    fn real_path(&self, inside: &str) -> Option<PathBuf> {
        match &self.cfg.rootfs {
            RootFs::Host { .. } => fs::canonicalize(inside).ok(),
            RootFs::Dir(root) => resolve_in_root(root, inside),
        }
    }

    fn resolve_command(&self, cmd: &str) -> Option<String> {
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
            self.real_path(c)
                .and_then(|h| fs::metadata(h).ok())
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
    }

    /// Claims a free uid/gid slot: the lock is held as long as the returned file is open (the
    /// lock files are shared with the docker backend, see [`crate::uids`]).
    fn claim_uid(&self) -> Result<(u32, u32, fs::File), SandboxError> {
        let dir = self.cfg.state_dir.join("uids");
        let count = self.cfg.uid_count.max(1);
        let start = (RUN_COUNTER.load(Ordering::Relaxed) as u32).wrapping_add(std::process::id());
        match crate::uids::claim(&dir, self.cfg.uid, count, start) {
            Some((k, f)) => Ok((self.cfg.uid + k, self.cfg.gid + k, f)),
            None => Err(SandboxError::Setup(format!(
                "all {count} sandbox uids are in use"
            ))),
        }
    }

    /// Builds a sandbox up to READY: cgroup, namespaces, base root. The job is sent to it
    /// afterwards (right away for a cold sandbox, when a run takes it for a warm one).
    fn spawn(&self, arena_bytes: usize) -> Result<Sandbox, SandboxError> {
        let started = Instant::now();
        let (uid, gid, uid_lock) = self.claim_uid()?;
        // Per-sandbox part of the base root: who the sandbox user is.
        let identity = rootfs::identity_ops(&self.cfg, uid, gid);
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("run-{}-{n}", std::process::id());
        let mut cg = self.layout.create(&name)?;
        // Bounds for the set-up itself; each phase writes its own limits before it starts.
        let d = Limits::default();
        cg.set_limits(d.memory_bytes, d.max_processes, d.cpu_millis)?;
        let join = cg.join_files()?;
        let mut arena = Arena::new(arena_bytes)
            .map_err(|e| SandboxError::Setup(format!("cannot map the job arena: {e}")))?;
        let (ctrl, ctrl_child) = seqpacket_pair()
            .map_err(|e| SandboxError::Setup(format!("cannot create a socket pair: {e}")))?;
        let (status_r, status_w) =
            pipe().map_err(|e| SandboxError::Setup(format!("cannot create pipe: {e}")))?;

        let cgroup_fds: Vec<RawFd> = join.v1_tasks.iter().map(|f| f.as_raw_fd()).collect();
        let base: Vec<&Op> = self.base_ops.iter().chain(&identity).collect();
        let newroot = cpath(&self.cfg.mount_point());
        let ctx = arena
            .write_ctx(&CtxInit {
                ctrl: ctrl_child.as_raw_fd(),
                status_w: status_w.as_raw_fd(),
                cgroup_fds: &cgroup_fds,
                cgroup_v2_fd: join.v2_procs.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
                base: &base,
                newroot: &newroot,
                hostname: self.cfg.hostname.as_bytes(),
                uid,
                gid,
                cap_last: self.cap_last,
                filter: &self.filter,
            })
            .ok_or_else(|| SandboxError::Setup("cannot prepare the root".into()))?;
        let v2_dir = join.v2_dir.as_ref().map(|d| d.as_raw_fd());

        // Cloned by the launcher when one runs (a tiny address space: see `launcher.rs`), else
        // here.
        // SAFETY: `ctx` was just written into `arena`, which stays mapped until the sandbox ends.
        let ctx_fds = unsafe { (*ctx).fds() };
        let pid = match launcher::spawn(arena.mapping(), ctx, &ctx_fds, v2_dir) {
            Some(r) => r,
            None => {
                let _clone_guard = child::CLONE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                arena.inherit(true);
                // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child gets a private
                // copy of this address space plus its own arena (every other arena is
                // MADV_DONTFORK) and runs `child_init`, which never returns and only uses raw
                // syscalls on the context in the arena. CLONE_LOCK is held so that no other
                // arena is being created or inherited meanwhile.
                let pid = unsafe { launcher::clone_init(ctx, v2_dir, false) };
                arena.inherit(false);
                pid
            }
        };
        arena.close_fd();
        let pid = pid.map_err(|e| SandboxError::Setup(format!("clone failed: {e}")))?;
        drop(join);
        drop(ctrl_child);
        drop(status_w);
        set_nonblocking(status_r.as_raw_fd());
        if let Ok(mut live) = self.live.lock() {
            live.insert(pid as libc::pid_t);
        }
        if self.cancelled.load(Ordering::SeqCst) {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let mut sb = Sandbox {
            live: self.live.clone(),
            status: StatusReader {
                fd: status_r,
                buf: Vec::new(),
                eof: false,
            },
            ctrl: Some(ctrl),
            init: InitProcess {
                pid: pid as libc::pid_t,
                reaped: false,
            },
            cg,
            arena,
            warm: false,
            spawn_time: Duration::ZERO,
            uid,
            gid,
            born: Instant::now(),
            _uid_lock: uid_lock,
        };
        match sb.wait_for(MSG_READY) {
            Ok(()) => {}
            Err((step, err)) => {
                let e = match step {
                    Some(step) => {
                        format!(
                            "{}: {}",
                            child::step_name(
                                step,
                                &self.base_ops.iter().chain(&identity).collect::<Vec<_>>(),
                                &[]
                            ),
                            os_err(err)
                        )
                    }
                    None => "the sandbox init died during setup".to_string(),
                };
                return Err(SandboxError::Setup(e));
            }
        }
        sb.spawn_time = started.elapsed();
        Ok(sb)
    }

    /// Resolves `argv[0]` and builds the C strings of a program's command and environment.
    fn command(&self, phase: &Phase) -> Result<PhaseCmd, SandboxError> {
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
        let env = crate::spec::program_env(&phase.env);
        Ok(PhaseCmd {
            path: cstr(path),
            argv: phase.argv.iter().map(cstr).collect(),
            envp: env.iter().map(|(k, v)| cstr(format!("{k}={v}"))).collect(),
            rlimits: crate::spec::rlimits(&phase.limits),
        })
    }
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints; on success both are new fds we own.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one byte and `fds` over a unix socket (SCM_RIGHTS).
fn send_fds(sock: RawFd, fds: &[RawFd]) -> io::Result<()> {
    launcher::send_msg(sock, b"J", fds)
}

/// One live sandbox, as the supervisor holds it.
pub(super) struct Sandbox {
    live: Arc<Mutex<std::collections::HashSet<libc::pid_t>>>,
    status: StatusReader,
    /// Control socket to init: the job, then one byte per phase; closing it makes init exit.
    ctrl: Option<OwnedFd>,
    init: InitProcess,
    cg: RunCgroup,
    arena: Arena,
    /// Taken from the warm pool rather than built for this run.
    warm: bool,
    spawn_time: Duration,
    uid: u32,
    gid: u32,
    born: Instant,
    /// Holds this sandbox's uid slot; released (closed) after `finish` ran in `drop`.
    _uid_lock: fs::File,
}

impl Sandbox {
    /// Waits for message `kind`; on failure returns the failed step and errno if it said so.
    fn wait_for(&mut self, kind: u32) -> Result<(), (Option<i32>, i32)> {
        let deadline = Instant::now() + SETUP_DEADLINE;
        loop {
            if let Some((k, a, b)) = self.status.next() {
                if k == kind {
                    return Ok(());
                }
                if k == MSG_SETUP_FAILED {
                    return Err((Some(a), b));
                }
                continue;
            }
            if self.status.eof {
                return Err((None, 0));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err((None, libc::ETIMEDOUT));
            }
            wait_readable(self.status.fd.as_raw_fd(), Some(left));
            self.status.pump();
        }
    }

    /// Still usable: init has not died while waiting in the pool.
    fn alive(&mut self) -> bool {
        self.status.pump();
        !self.status.eof
    }

    /// Ends every process of the sandbox: init exits (or is killed) and is reaped, which the
    /// kernel allows only once every other process of its pid namespace is gone.
    fn stop(&mut self) {
        self.ctrl.take();
        self.init.kill();
        self.init.reap();
        if let Ok(mut live) = self.live.lock() {
            live.remove(&self.init.pid);
        }
        self.cg.kill_all();
    }

    /// Ends the sandbox: its processes are gone, the cgroup removed.
    fn finish(&mut self) -> Result<(), SandboxError> {
        self.stop();
        self.cg.remove()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The most a sandbox may take to get ready (a hung mount must not hang a run or the pool).
const SETUP_DEADLINE: Duration = Duration::from_secs(20);

/// A warm sandbox holds a copy of the supervisor's memory as it was at its clone: replace it
/// after this long rather than keep old data around.
const WARM_MAX_IDLE: Duration = Duration::from_secs(60);

/// Pre-built sandboxes waiting for a job.
struct Pool {
    warm: Mutex<Vec<Sandbox>>,
    /// Used sandboxes waiting to be reaped and their cgroups removed.
    retired: Mutex<Vec<Sandbox>>,
    wanted: usize,
    wake: Condvar,
    stop: AtomicBool,
}

impl Pool {
    fn refill_loop(&self, shared: &Shared) {
        let mut failures = 0u32;
        while !self.stop.load(Ordering::SeqCst) {
            // Used sandboxes, and warm ones idle for too long, are torn down here
            // (Sandbox::drop: reap init, remove the cgroup).
            let mut done = self
                .retired
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            if let Ok(mut w) = self.warm.lock() {
                let (old, fresh): (Vec<_>, Vec<_>) = w
                    .drain(..)
                    .partition(|sb| sb.born.elapsed() > WARM_MAX_IDLE);
                *w = fresh;
                done.extend(old);
            }
            drop(done);
            let have = self.warm.lock().map(|w| w.len()).unwrap_or(self.wanted);
            if have < self.wanted {
                match shared.spawn(shared.cfg.warm_arena_bytes) {
                    Ok(mut sb) => {
                        sb.warm = true;
                        failures = 0;
                        if let Ok(mut w) = self.warm.lock() {
                            w.push(sb);
                        }
                        continue;
                    }
                    // Runs still work (they build their own sandbox); back off and retry.
                    Err(_) => failures = (failures + 1).min(10),
                }
            }
            // Sleep unless there is work; the check and the wait hold the same lock, and
            // `take`/`retire` notify under it, so no wake-up is lost.
            let Ok(w) = self.warm.lock() else { return };
            let retired = self.retired.lock().map(|r| !r.is_empty()).unwrap_or(false);
            let work = (w.len() < self.wanted && failures == 0) || retired;
            if !work && !self.stop.load(Ordering::SeqCst) {
                let pause = if failures > 0 {
                    Duration::from_millis(100 << failures.min(5))
                } else {
                    WARM_MAX_IDLE / 4
                };
                let _ = self.wake.wait_timeout(w, pause);
            }
        }
    }

    fn notify(&self) {
        let _held = self.warm.lock();
        self.wake.notify_all();
    }

    fn retire(&self, sb: Sandbox) {
        if let Ok(mut r) = self.retired.lock() {
            r.push(sb);
        }
        self.notify();
    }

    fn take(&self) -> Option<Sandbox> {
        let sb = self.warm.lock().ok()?.pop();
        self.notify();
        sb
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn toolchain_fingerprint(&self, cmd: &str) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let inside = self.shared.resolve_command(cmd)?;
        let real = self.shared.real_path(&inside)?;
        let m = fs::metadata(&real).ok()?;
        Some(format!(
            "{} {} {} {}.{}",
            real.display(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ))
    }

    fn state_dir(&self) -> Option<&std::path::Path> {
        Some(&self.shared.cfg.state_dir)
    }

    fn has_command(&self, cmd: &str) -> bool {
        self.resolve_command(cmd).is_some()
    }

    fn cancel_all(&self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        if let Ok(live) = self.shared.live.lock() {
            for pid in live.iter() {
                // SAFETY: every pid here is an unreaped child of ours (removed when reaped).
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }

    fn execute_io(&self, spec: &ExecSpec, io: &mut dyn RunIo) -> Result<ExecReport, SandboxError> {
        let started = Instant::now();
        if self.shared.cancelled.load(Ordering::SeqCst) {
            return Err(SandboxError::Unsupported(
                "the sandbox is shutting down".into(),
            ));
        }
        if spec.phases.is_empty() || spec.phases.len() > MAX_PHASES {
            return Err(SandboxError::InvalidSpec(format!(
                "a run has 1 to {MAX_PHASES} programs"
            )));
        }
        crate::spec::check_files(&spec.files)?;
        let shared = &self.shared;
        let cmds = spec
            .phases
            .iter()
            .map(|p| shared.command(p))
            .collect::<Result<Vec<_>, _>>()?;
        let need = spec
            .files
            .iter()
            .map(|f| f.content.len() + f.path.len() + 256)
            .sum::<usize>()
            + cmds
                .iter()
                .flat_map(|c| c.argv.iter().chain(&c.envp))
                .map(|s| s.as_bytes().len() + 16)
                .sum::<usize>()
            + 64 * 1024;

        // A warm sandbox if one is waiting and the job fits its arena, else a new one.
        let mut warm = None;
        if let Some(pool) = &self.pool {
            if need <= shared.cfg.warm_arena_bytes {
                warm = pool.take().and_then(|mut w| w.alive().then_some(w));
            }
        }
        let mut sb = match warm {
            Some(sb) => sb,
            None => shared.spawn(need)?,
        };
        let job_ops = run_ops(spec, sb.uid, sb.gid);
        sb.arena
            .write_job(&job_ops, &cmds)
            .ok_or_else(|| SandboxError::Setup("the job does not fit its arena".into()))?;

        // Stdio for every phase; the child ends travel to init with the job.
        let mut pipes = Vec::with_capacity(spec.phases.len());
        let mut child_fds = Vec::with_capacity(3 * spec.phases.len());
        let pipe_err = |e: io::Error| SandboxError::Setup(format!("cannot create pipe: {e}"));
        let (uid, gid) = (sb.uid, sb.gid);
        for phase in &spec.phases {
            let (in_r, in_w) = pipe_for(uid, gid).map_err(pipe_err)?;
            let (out_r, out_w) = pipe_for(uid, gid).map_err(pipe_err)?;
            if phase.stderr_to_stdout {
                // The stdout pipe travels twice: the payload's fd 2 is a copy of its fd 1 (the
                // same pipe, so writes interleave as made and share stdout's cap).
                child_fds.extend([in_r.as_raw_fd(), out_w.as_raw_fd(), out_w.as_raw_fd()]);
                pipes.push(PhasePipes {
                    stdin_w: Some(in_w),
                    stdout_r: Some(out_r),
                    stderr_r: None,
                    child_ends: vec![in_r, out_w],
                });
                continue;
            }
            let (err_r, err_w) = pipe_for(uid, gid).map_err(pipe_err)?;
            child_fds.extend([in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]);
            pipes.push(PhasePipes {
                stdin_w: Some(in_w),
                stdout_r: Some(out_r),
                stderr_r: Some(err_r),
                child_ends: vec![in_r, out_w, err_w],
            });
        }
        // The program's files are charged to the sandbox: if they alone exceed the memory
        // limit, that is the program's memory_limit, not a sandbox failure.
        let first = &spec.phases[0];
        let oom_before = sb.cg.oom_kills();
        let memory_limit = |sb: &mut Sandbox| {
            let _ = sb.finish();
            Ok(ExecReport {
                phases: vec![crate::spec::not_started(first, Status::MemoryLimit)],
                setup_time: started.elapsed(),
                total_time: started.elapsed(),
                warm: sb.warm,
                collected: None,
            })
        };
        let l = &first.limits;
        match sb
            .cg
            .set_limits(l.memory_bytes, l.max_processes, l.cpu_millis)
        {
            Ok(()) => {}
            Err(SandboxError::MemoryInUse) => return memory_limit(&mut sb),
            Err(e) => return Err(e),
        }
        sb.cg.reset_peak();
        let ctrl = sb.ctrl.as_ref().map(|c| c.as_raw_fd()).unwrap_or(-1);
        send_fds(ctrl, &child_fds)
            .map_err(|e| SandboxError::Setup(format!("cannot send the job to the sandbox: {e}")))?;
        for p in &mut pipes {
            p.child_ends.clear();
        }
        if let Err((step, err)) = sb.wait_for(MSG_JOB_READY) {
            if sb.cg.oom_kills() > oom_before {
                return memory_limit(&mut sb);
            }
            let e = match step {
                Some(step) => {
                    format!("{}: {}", child::step_name(step, &[], &job_ops), os_err(err))
                }
                None if err != 0 => format!("the sandbox did not get ready: {}", os_err(err)),
                None => "the sandbox init died while preparing the run".to_string(),
            };
            return Err(SandboxError::Setup(e));
        }
        // The work dir, opened before any program of the run exists (see `open_work_dir`).
        let work_dir = match &spec.collect {
            Some(_) => Some(open_work_dir(&sb)?),
            None => None,
        };
        let setup_time = if sb.warm {
            started.elapsed()
        } else {
            started.elapsed().max(sb.spawn_time)
        };

        let mut reports = Vec::new();
        for (i, phase) in spec.phases.iter().enumerate() {
            // Counted before the limits change: on v2, lowering memory.max below what the group
            // holds OOM-kills it right away, and that is this phase's memory_limit.
            let oom0 = sb.cg.oom_kills();
            if i > 0 {
                sb.cg.reset_peak();
                let l = &phase.limits;
                match sb
                    .cg
                    .set_limits(l.memory_bytes, l.max_processes, l.cpu_millis)
                {
                    Ok(()) => {}
                    Err(SandboxError::MemoryInUse) => {
                        reports.push(crate::spec::not_started(phase, Status::MemoryLimit));
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            let report = supervise(i, phase, &mut pipes[i], &mut sb, oom0, io);
            let stop = report.status != Status::Ok && !phase.continue_on_failure;
            let dead = report.limit_hit.is_some()
                || report.status == Status::InternalError
                || sb.status.eof;
            reports.push(report);
            if stop || dead {
                break;
            }
        }
        let warm = sb.warm;
        let collected = match (&spec.collect, &work_dir) {
            (Some(c), Some(dir)) => {
                // Nothing of the sandbox may run during the walk. When the last phase ended
                // normally (init reported its wait status) init has already SIGKILLed and reaped
                // every other process of its pid namespace and waits on the control socket (our
                // code, not touching /tmp). Otherwise (a limit struck, init failed or died) init
                // is killed and reaped here, which the kernel allows only once every process of
                // the namespace is gone. The tmpfs outlives its mount namespace as long as `dir`
                // is open.
                sb.status.pump();
                let quiet = !sb.status.eof
                    && reports
                        .last()
                        .is_some_and(|r| r.limit_hit.is_none() && r.internal_error.is_none());
                if !quiet {
                    sb.stop();
                }
                Some(crate::collect::collect_at(dir.as_fd(), c))
            }
            _ => None,
        };
        drop(work_dir);
        // Every process of the run is dead by now (init kills the tree before it reports, and a
        // limit kills init). What is left (reaping init, removing the cgroup) is the pool
        // thread's job when there is one, off this run's latency.
        sb.init.kill();
        match &self.pool {
            Some(pool) => pool.retire(sb),
            None => sb.finish()?,
        }
        Ok(ExecReport {
            phases: reports,
            setup_time,
            total_time: started.elapsed(),
            warm,
            collected,
        })
    }
}

/// The sandbox's work dir (its `/tmp` tmpfs) as a directory fd of this process, for
/// [`crate::collect`].
///
/// # Why from the host, through `/proc/<init>/root`
/// The work tmpfs exists only in the sandbox's mount namespace. We open it from the supervisor
/// right after the init reported the job ready: no program of the run has started, so the path
/// (`/proc/<pid>/root` is the init's root, `tmp` the tmpfs mounted on it) is exactly what the
/// init built, and the pid is our own unreaped child (never recycled). Root in the initial
/// user namespace may open it although the init is not dumpable and lives in a user namespace
/// of its own (CAP_SYS_PTRACE over the init's mm, which belongs to the initial namespace). The
/// fd pins the tmpfs: after the last phase no sandboxed process exists any more (init killed and
/// reaped the rest before reporting the phase; after a limit or a failure we kill and reap init
/// itself first) and we walk the frozen tree with the fd-relative, `O_NOFOLLOW` collector. The other way, the init walking and sending the files over its
/// control socket, would put a directory walk and file reads in the init (raw syscalls only, no
/// allocation: see `child.rs`) while the payload's siblings may still run, and the result could
/// not be had after a limit killed the init.
fn open_work_dir(sb: &Sandbox) -> Result<OwnedFd, SandboxError> {
    let path = cpath(std::path::Path::new(&format!(
        "/proc/{}/root/tmp",
        sb.init.pid
    )));
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; the result is a new fd we own.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(SandboxError::Setup(format!(
            "cannot open the sandbox's work dir: {e}"
        )));
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero statfs/stat is a valid value of these plain C structs; both calls
    // fill a live local from an fd we hold.
    let (fs, st) = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        let mut st: libc::stat = std::mem::zeroed();
        let ok = libc::fstatfs(fd.as_raw_fd(), &mut fs) == 0
            && libc::fstat(fd.as_raw_fd(), &mut st) == 0;
        (ok.then_some(fs), st)
    };
    // It must be the run's own tmpfs (mounted with the run's uid), nothing else.
    let ours = fs.is_some_and(|fs| fs.f_type == libc::TMPFS_MAGIC) && st.st_uid == sb.uid;
    if !ours {
        return Err(SandboxError::Setup(
            "the sandbox's work dir is not its tmpfs".into(),
        ));
    }
    Ok(fd)
}

/// The host path of `inside` as a process chrooted into `root` would reach it: every symlink
/// on the way is followed within `root` (absolute targets from `root`, `..` never above it),
/// at most 40 of them. `None` if a component is missing or the links loop.
pub(crate) fn resolve_in_root(root: &Path, inside: &str) -> Option<PathBuf> {
    let mut todo: Vec<String> = inside
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let mut host = root.to_path_buf();
        host.extend(done.iter());
        host.push(&c);
        let meta = fs::symlink_metadata(&host).ok()?;
        if !meta.file_type().is_symlink() {
            done.push(c);
            continue;
        }
        links += 1;
        if links > 40 {
            return None;
        }
        let target = fs::read_link(&host).ok()?;
        let target = target.to_str()?;
        if target.starts_with('/') {
            done.clear();
        }
        todo.extend(
            target
                .split('/')
                .filter(|c| !c.is_empty())
                .rev()
                .map(str::to_string),
        );
    }
    let mut host = root.to_path_buf();
    host.extend(done.iter());
    Some(host)
}
