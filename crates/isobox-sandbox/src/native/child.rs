//! Everything that runs inside the sandbox before the program's `execve`: the init (pid 1 of the
//! new pid namespace) and the payload set-up. Plus the data they read.
//!
//! # Rules for this file
//! The init is a fork-like copy of the supervisor, which may be multithreaded (a server). Another
//! thread may have held a lock (malloc's, glibc's thread list) at clone time, so the code here
//! never allocates and never calls a libc function that takes a process-wide lock or assumes
//! other threads (`fork`, `set*id` wrappers): raw syscalls on data prepared before the clone.
//!
//! # The job arena
//! A sandbox is built in two stages: the base root (same for every run) right after the clone,
//! and the run's own part (work tmpfs, files, programs) when the job arrives. The job is written
//! by the supervisor into an [`Arena`]: a `MAP_SHARED` anonymous mapping created *before* the
//! clone, so it sits at the same address in both processes and the init reads the job in place
//! (plain pointers, no parsing). The program's stdio pipes come over the control socket with
//! `SCM_RIGHTS`. One code path serves cold sandboxes (job sent right after the clone) and
//! pre-built warm ones (job sent later). The payload loses the mapping at `execve`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use libc::{c_char, c_int, c_ulong};

use super::rootfs::Op;

/// Most phases (programs) one job may have.
pub(super) const MAX_PHASES: usize = 4;

// ---------------------------------------------------------------------------------------------
// The arena and the raw (pointer-based) job.
// ---------------------------------------------------------------------------------------------

/// Held around every arena creation and every sandbox clone. Arenas are mapped `MADV_DONTFORK`
/// so that a sandbox inherits no arena but its own (other runs' files stay out of it): the
/// clone of a sandbox flips its own arena to `MADV_DOFORK` for the duration of the clone.
pub(super) static CLONE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A shared mapping the supervisor fills with a [`Job`] and the sandbox init reads.
pub(super) struct Arena {
    base: *mut u8,
    size: usize,
    used: usize,
    /// The memfd behind the mapping, until the sandbox exists (the launcher maps it too).
    fd: Option<OwnedFd>,
}

// SAFETY: the arena is a plain memory region owned by one sandbox; the supervisor thread that
// holds the sandbox is the only writer, and it hands the sandbox (with its arena) between threads
// only as a whole.
unsafe impl Send for Arena {}

/// Room for the init's context (base ops, seccomp program) on top of the job.
const CTX_RESERVE: usize = 256 << 10;

impl Arena {
    pub(super) fn new(size: usize) -> io::Result<Arena> {
        let size = (size.max(4096) + CTX_RESERVE).next_multiple_of(4096);
        let _guard = CLONE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: creates a new fd; the name is a C string literal.
        let fd = unsafe { libc::memfd_create(c"isobox-arena".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sizes our own memfd; pages are allocated only when touched.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh shared mapping of our memfd; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: advice on our own fresh mapping.
        unsafe { libc::madvise(p, size, libc::MADV_DONTFORK) };
        // The header (the Job) lives at the start.
        Ok(Arena {
            base: p.cast(),
            size,
            used: std::mem::size_of::<Job>().next_multiple_of(16),
            fd: Some(fd),
        })
    }

    /// Address, size and memfd of the mapping (for the launcher); the fd is gone once the
    /// sandbox is built.
    pub(super) fn mapping(&self) -> (usize, usize, Option<RawFd>) {
        (
            self.base as usize,
            self.size,
            self.fd.as_ref().map(|f| f.as_raw_fd()),
        )
    }

    /// Closes the memfd (the mappings stay).
    pub(super) fn close_fd(&mut self) {
        self.fd = None;
    }

    /// Whether clones (made under `CLONE_LOCK`) inherit this arena.
    pub(super) fn inherit(&self, yes: bool) {
        let advice = if yes {
            libc::MADV_DOFORK
        } else {
            libc::MADV_DONTFORK
        };
        // SAFETY: advice on our own mapping, which lives as long as `self`.
        unsafe { libc::madvise(self.base.cast(), self.size, advice) };
    }

    pub(super) fn base(&self) -> *const Job {
        self.base.cast()
    }

    /// Copies `items` into the arena; `None` when it does not fit.
    fn put<T: Copy>(&mut self, items: &[T]) -> Option<*const T> {
        let align = std::mem::align_of::<T>().max(8);
        let start = self.used.next_multiple_of(align);
        let bytes = std::mem::size_of_val(items);
        if start + bytes > self.size {
            return None;
        }
        // SAFETY: start..start+bytes is inside the mapping (checked above), suitably aligned, and
        // nothing else refers to that range yet.
        unsafe {
            let dst = self.base.add(start).cast::<T>();
            std::ptr::copy_nonoverlapping(items.as_ptr(), dst, items.len());
            self.used = start + bytes;
            Some(dst)
        }
    }

    fn put_cstr(&mut self, s: &CString) -> Option<*const c_char> {
        self.put(s.as_bytes_with_nul()).map(|p| p.cast())
    }

    /// Copies a NULL-terminated array of C strings.
    fn put_strv(&mut self, v: &[CString]) -> Option<*const *const c_char> {
        let mut ptrs = Vec::with_capacity(v.len() + 1);
        for s in v {
            ptrs.push(self.put_cstr(s)?);
        }
        ptrs.push(std::ptr::null());
        self.put(&ptrs)
    }

    /// Writes a job (per-run ops and phases) at the start of the arena. `None` if it does not fit.
    pub(super) fn write_job(&mut self, ops: &[Op], phases: &[PhaseCmd]) -> Option<()> {
        let mut raw_ops = Vec::with_capacity(ops.len());
        for op in ops {
            raw_ops.push(RawOp::from_op(op, Some(self))?);
        }
        let mut raw_phases = Vec::with_capacity(phases.len());
        for p in phases {
            raw_phases.push(RawPhase {
                path: self.put_cstr(&p.path)?,
                argv: self.put_strv(&p.argv)?,
                envp: self.put_strv(&p.envp)?,
                rlimits: self.put(&p.rlimits)?,
                n_rlimits: p.rlimits.len(),
            });
        }
        let job = Job {
            ops: self.put(&raw_ops)?,
            n_ops: raw_ops.len(),
            phases: self.put(&raw_phases)?,
            n_phases: raw_phases.len(),
        };
        // SAFETY: the header slot at the base was reserved in `new` and is properly aligned.
        unsafe { std::ptr::write(self.base.cast::<Job>(), job) };
        Some(())
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it outlives the arena.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

/// A program of the job, as owned data (turned into raw pointers in the arena).
pub(super) struct PhaseCmd {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub rlimits: Vec<[u64; 2]>,
}

/// The job header at the start of the arena.
#[repr(C)]
pub(super) struct Job {
    ops: *const RawOp,
    n_ops: usize,
    phases: *const RawPhase,
    n_phases: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawPhase {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    rlimits: *const [u64; 2],
    n_rlimits: usize,
}

const OP_MKDIR: u8 = 1;
const OP_SYMLINK: u8 = 2;
const OP_TOUCH: u8 = 3;
const OP_MOUNT: u8 = 4;
const OP_WRITE: u8 = 5;
const OP_SET: u8 = 6;

/// An [`Op`] as plain pointers: into the arena (job ops) or into the backend's base ops.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct RawOp {
    kind: u8,
    path: *const c_char,
    src: *const c_char,
    fstype: *const c_char,
    data: *const u8,
    len: usize,
    flags: c_ulong,
    mode: u32,
    uid: u32,
    gid: u32,
    chown: bool,
}

impl RawOp {
    /// Points at `op`'s own strings (`arena: None`; `op` must outlive the clone) or at copies in
    /// the arena.
    pub(super) fn from_op(op: &Op, mut arena: Option<&mut Arena>) -> Option<RawOp> {
        fn bytes(arena: &mut Option<&mut Arena>, b: &[u8]) -> Option<*const u8> {
            match arena {
                Some(a) => a.put(b),
                None => Some(b.as_ptr()),
            }
        }
        fn s(arena: &mut Option<&mut Arena>, c: &CString) -> Option<*const c_char> {
            bytes(arena, c.as_bytes_with_nul()).map(|p| p.cast())
        }
        fn opt(arena: &mut Option<&mut Arena>, c: &Option<CString>) -> Option<*const c_char> {
            match c {
                Some(c) => s(arena, c),
                None => Some(std::ptr::null()),
            }
        }
        let mut raw = RawOp {
            kind: 0,
            path: std::ptr::null(),
            src: std::ptr::null(),
            fstype: std::ptr::null(),
            data: std::ptr::null(),
            len: 0,
            flags: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            chown: false,
        };
        let owner = |raw: &mut RawOp, o: &Option<(u32, u32)>| {
            if let Some((u, g)) = o {
                raw.chown = true;
                raw.uid = *u;
                raw.gid = *g;
            }
        };
        let a = &mut arena;
        match op {
            Op::Mkdir {
                path,
                mode,
                owner: o,
            } => {
                raw.kind = OP_MKDIR;
                raw.path = s(a, path)?;
                raw.mode = *mode;
                owner(&mut raw, o);
            }
            Op::Symlink { target, path } => {
                raw.kind = OP_SYMLINK;
                raw.src = s(a, target)?;
                raw.path = s(a, path)?;
            }
            Op::Touch { path } => {
                raw.kind = OP_TOUCH;
                raw.path = s(a, path)?;
            }
            Op::Mount {
                src,
                dst,
                fstype,
                flags,
                data,
            } => {
                raw.kind = OP_MOUNT;
                raw.src = opt(a, src)?;
                raw.path = s(a, dst)?;
                raw.fstype = opt(a, fstype)?;
                raw.data = opt(a, data)?.cast();
                raw.flags = *flags;
            }
            Op::Set { path, value } => {
                raw.kind = OP_SET;
                raw.path = s(a, path)?;
                raw.data = bytes(a, value)?;
                raw.len = value.len();
            }
            Op::Write {
                path,
                data,
                mode,
                owner: o,
            } => {
                raw.kind = OP_WRITE;
                raw.path = s(a, path)?;
                raw.data = bytes(a, data)?;
                raw.len = data.len();
                raw.mode = *mode;
                owner(&mut raw, o);
            }
        }
        Some(raw)
    }
}

// ---------------------------------------------------------------------------------------------
// What the init gets at clone time (a copy of the supervisor's memory).
// ---------------------------------------------------------------------------------------------

/// Most fds the init keeps from its parent (control socket, status pipe, cgroup files).
pub(super) const MAX_KEEP: usize = 16;

/// The init's instructions, written into the sandbox's arena before the clone (see
/// [`Arena::write_ctx`]): everything it points at is in the arena too, so the context is valid
/// in any process that maps the arena at the same address, the launcher (`launcher.rs`)
/// included.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct ChildCtx {
    /// Fds the init keeps (sorted); every other inherited fd is closed first thing.
    keep_fds: [RawFd; MAX_KEEP],
    n_keep: usize,
    /// v1 `tasks` files to write `0` into (the init is single-threaded: see `join_files`).
    cgroup_fds: [RawFd; MAX_KEEP],
    n_cgroup: usize,
    /// The v2 group's `cgroup.procs` (-1 if none), written only if clone3 could not place us.
    cgroup_v2_fd: RawFd,
    /// Set just before `clone3(CLONE_INTO_CGROUP)`: the child was born in the v2 group.
    pub born_in_v2: bool,
    /// The base root's ops (in the arena).
    base: *const RawOp,
    n_base: usize,
    newroot: *const c_char,
    hostname: *const u8,
    hostname_len: usize,
    /// Control socket (SOCK_SEQPACKET): the job (with fds), then one byte per phase.
    ctrl: RawFd,
    status_w: RawFd,
    uid: u32,
    gid: u32,
    cap_last: u32,
    filter: libc::sock_fprog,
    lo_req: [u8; 40],
    arena: *const Job,
}

/// What [`Arena::write_ctx`] copies into the arena.
pub(super) struct CtxInit<'a> {
    pub ctrl: RawFd,
    pub status_w: RawFd,
    pub cgroup_fds: &'a [RawFd],
    pub cgroup_v2_fd: RawFd,
    pub base: &'a [&'a Op],
    pub newroot: &'a CString,
    pub hostname: &'a [u8],
    pub uid: u32,
    pub gid: u32,
    pub cap_last: u32,
    pub filter: &'a [libc::sock_filter],
}

impl ChildCtx {
    /// Every fd the context names, for a process that received them under other numbers.
    pub(super) fn fds(&self) -> Vec<RawFd> {
        let mut v = vec![self.ctrl, self.status_w];
        v.extend_from_slice(&self.cgroup_fds[..self.n_cgroup]);
        if self.cgroup_v2_fd >= 0 {
            v.push(self.cgroup_v2_fd);
        }
        v
    }

    /// Renumbers every fd (`map` gives the new number of each of [`ChildCtx::fds`]).
    pub(super) fn remap_fds(&mut self, map: &dyn Fn(RawFd) -> RawFd) {
        self.ctrl = map(self.ctrl);
        self.status_w = map(self.status_w);
        for fd in &mut self.cgroup_fds[..self.n_cgroup] {
            *fd = map(*fd);
        }
        if self.cgroup_v2_fd >= 0 {
            self.cgroup_v2_fd = map(self.cgroup_v2_fd);
        }
        self.set_keep();
    }

    fn set_keep(&mut self) {
        let all = self.fds();
        self.n_keep = all.len();
        self.keep_fds[..all.len()].copy_from_slice(&all);
        self.keep_fds[..all.len()].sort_unstable();
    }

    fn keep(&self) -> &[RawFd] {
        &self.keep_fds[..self.n_keep]
    }

    /// The run's uid and gid (the init's user namespace maps them, and only them).
    pub(super) fn ids(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    fn cgroup(&self) -> &[RawFd] {
        &self.cgroup_fds[..self.n_cgroup]
    }

    /// The base root's ops.
    ///
    /// # Safety
    /// The arena holding the context (and its base ops) must be mapped.
    unsafe fn base(&self) -> &[RawOp] {
        // SAFETY: `write_ctx` put `n_base` initialized, aligned `RawOp`s at `base` in the arena,
        // which the caller guarantees is mapped; nothing writes them while the init reads.
        unsafe { std::slice::from_raw_parts(self.base, self.n_base) }
    }
}

impl Arena {
    /// Writes the init's context after the job header; `None` if it does not fit (or has more
    /// fds than [`MAX_KEEP`]).
    pub(super) fn write_ctx(&mut self, c: &CtxInit<'_>) -> Option<*mut ChildCtx> {
        if c.cgroup_fds.len() + 3 > MAX_KEEP {
            return None;
        }
        let mut base = Vec::with_capacity(c.base.len());
        for op in c.base {
            base.push(RawOp::from_op(op, Some(self))?);
        }
        let base_ptr = self.put(&base)?;
        let newroot = self.put_cstr(c.newroot)?;
        let hostname = self.put(c.hostname)?;
        let filter = self.put(c.filter)?;
        let mut lo_req = [0u8; 40];
        lo_req[..2].copy_from_slice(b"lo");
        let up = (libc::IFF_UP | libc::IFF_RUNNING) as u16;
        lo_req[16..18].copy_from_slice(&up.to_ne_bytes());
        let mut cgroup_fds = [-1; MAX_KEEP];
        cgroup_fds[..c.cgroup_fds.len()].copy_from_slice(c.cgroup_fds);
        let mut ctx = ChildCtx {
            keep_fds: [-1; MAX_KEEP],
            n_keep: 0,
            cgroup_fds,
            n_cgroup: c.cgroup_fds.len(),
            cgroup_v2_fd: c.cgroup_v2_fd,
            born_in_v2: false,
            base: base_ptr,
            n_base: base.len(),
            newroot,
            hostname,
            hostname_len: c.hostname.len(),
            ctrl: c.ctrl,
            status_w: c.status_w,
            uid: c.uid,
            gid: c.gid,
            cap_last: c.cap_last,
            filter: libc::sock_fprog {
                len: c.filter.len() as u16,
                filter: filter as *mut _,
            },
            lo_req,
            arena: self.base(),
        };
        ctx.set_keep();
        let p = self.put(std::slice::from_ref(&ctx))?;
        // Only the arena's copy is used from here on (it is the one the init reads).
        Some(p as *mut ChildCtx)
    }
}

/// Messages from the sandbox (12 bytes, written atomically on a pipe).
pub(super) const MSG_SETUP_FAILED: u32 = 1;
pub(super) const MSG_READY: u32 = 2;
pub(super) const MSG_EXEC_FAILED: u32 = 3;
pub(super) const MSG_EXITED: u32 = 4;
pub(super) const MSG_JOB_READY: u32 = 5;

/// Setup steps other than the ops, for error messages. Job ops are numbered from `STEP_JOB`.
const STEP_CGROUP: i32 = -1;
const STEP_UNSHARE_CGROUP: i32 = -2;
const STEP_PRIVATE: i32 = -3;
const STEP_PIVOT: i32 = -4;
const STEP_HOSTNAME: i32 = -5;
const STEP_LOOPBACK: i32 = -6;
const STEP_FORK: i32 = -7;
const STEP_RECV_JOB: i32 = -8;
const STEP_USERNS: i32 = -9;
const STEP_IDS: i32 = -10;
pub(super) const STEP_JOB: i32 = 100_000;

/// Describes a setup step for an error message.
pub(super) fn step_name(step: i32, base: &[&Op], job: &[Op]) -> String {
    match step {
        STEP_CGROUP => "join cgroup".into(),
        STEP_UNSHARE_CGROUP => "unshare cgroup namespace".into(),
        STEP_PRIVATE => "make mounts private".into(),
        STEP_PIVOT => "pivot_root".into(),
        STEP_HOSTNAME => "sethostname".into(),
        STEP_LOOPBACK => "bring up loopback".into(),
        STEP_FORK => "fork payload".into(),
        STEP_RECV_JOB => "receive job".into(),
        STEP_USERNS => "map the user namespace".into(),
        STEP_IDS => "switch to the sandbox user".into(),
        n if n >= STEP_JOB => job
            .get((n - STEP_JOB) as usize)
            .map(Op::describe)
            .unwrap_or_default(),
        n if n >= 0 => base
            .get(n as usize)
            .map(|o| o.describe())
            .unwrap_or_default(),
        n => format!("step {n}"),
    }
}

/// Where a payload's set-up failed before its program ran, in the order the payload goes
/// through them. It travels as the high 16 bits of `MSG_EXEC_FAILED`'s first word: the
/// discriminant is the wire value (a plain integer, so reporting it allocates nothing).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// `execve` itself returned (the program is missing, not executable, ...).
    Execve = 0,
    /// Putting the phase's pipes on stdin, stdout and stderr.
    Dup2 = 1,
    /// A session of its own (no controlling terminal).
    Setsid = 2,
    /// Into the work directory, `/tmp`.
    Chdir = 3,
    /// The phase's rlimits.
    Setrlimit = 4,
    /// Dropping the capability bounding set.
    DropBoundingSet = 5,
    /// Clearing the ambient capabilities.
    ClearAmbientCaps = 6,
    /// No supplementary groups.
    Setgroups = 7,
    /// The sandbox user's gid.
    Setresgid = 8,
    /// The sandbox user's uid.
    Setresuid = 9,
    /// Clearing every capability set.
    Capset = 10,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs = 11,
    /// Marking every fd above 2 close-on-exec.
    CloseRange = 12,
    /// Installing the seccomp filter.
    Seccomp = 13,
}

impl Stage {
    /// Every stage, indexed by its wire value.
    const ALL: [Stage; 14] = [
        Stage::Execve,
        Stage::Dup2,
        Stage::Setsid,
        Stage::Chdir,
        Stage::Setrlimit,
        Stage::DropBoundingSet,
        Stage::ClearAmbientCaps,
        Stage::Setgroups,
        Stage::Setresgid,
        Stage::Setresuid,
        Stage::Capset,
        Stage::NoNewPrivs,
        Stage::CloseRange,
        Stage::Seccomp,
    ];

    /// The stage a wire value names, if any.
    pub(super) fn from_wire(v: i32) -> Option<Stage> {
        Stage::ALL.get(usize::try_from(v).ok()?).copied()
    }

    /// The stage as the parent's error message names it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Stage::Execve => "execve",
            Stage::Dup2 => "dup2",
            Stage::Setsid => "setsid",
            Stage::Chdir => "chdir",
            Stage::Setrlimit => "setrlimit",
            Stage::DropBoundingSet => "drop bounding set",
            Stage::ClearAmbientCaps => "clear ambient caps",
            Stage::Setgroups => "setgroups",
            Stage::Setresgid => "setresgid",
            Stage::Setresuid => "setresuid",
            Stage::Capset => "capset",
            Stage::NoNewPrivs => "no_new_privs",
            Stage::CloseRange => "close_range",
            Stage::Seccomp => "seccomp",
        }
    }
}

// Everything below runs in the sandbox's own processes: the init (a clone without `CLONE_VM` of
// the supervisor or of the launcher: a copy of its memory, with a single thread) and the
// payloads the init forks with a raw clone. Another thread of the parent may have held a lock
// (malloc's, stdio's, glibc's thread list) at clone time, and that lock stays held forever in
// the copy: so only raw, async-signal-safe syscalls, on data prepared before the clone (in the
// context, in the arena, or on the stack), no allocation, no lock. The `unsafe fn`s below state
// what their callers must guarantee; each `unsafe` block says why its operations are sound.

/// Writes one status message (`kind`, `a`, `b`: 12 bytes, atomic on a pipe) to `fd`.
///
/// # Safety
/// `fd` must be the status pipe's write end (an fd the caller owns and may write to). Nothing
/// else is required: one `write` of a local buffer, async-signal-safe, usable in the child.
unsafe fn send(fd: RawFd, kind: u32, a: i32, b: i32) {
    let mut buf = [0u8; 12];
    buf[0..4].copy_from_slice(&kind.to_ne_bytes());
    buf[4..8].copy_from_slice(&a.to_ne_bytes());
    buf[8..12].copy_from_slice(&b.to_ne_bytes());
    // SAFETY: `buf` is a live local of exactly 12 bytes; `fd` is writable (this function's
    // contract); write(2) is async-signal-safe and allocates nothing.
    unsafe { libc::write(fd, buf.as_ptr().cast(), 12) };
}

/// This thread's errno.
fn errno() -> i32 {
    // SAFETY: `__errno_location` has no preconditions and returns the calling thread's errno
    // slot, valid for as long as the thread lives. In the cloned init and its payloads the thread
    // pointer and the TLS block are part of the copied memory, so the slot is this process's own.
    unsafe { *libc::__errno_location() }
}

/// Reports setup step `step` as failed (with errno) on the status pipe and ends the init.
///
/// # Safety
/// Only in the cloned init: it ends the calling process.
unsafe fn fail(ctx: &ChildCtx, step: i32) -> ! {
    // SAFETY: `ctx.status_w` is the status pipe's write end, which the init keeps open; `_exit`
    // ends this process (the init, per this function's contract) without running atexit
    // handlers or flushing stdio, which belong to the parent's copied state.
    unsafe {
        send(ctx.status_w, MSG_SETUP_FAILED, step, errno());
        libc::_exit(1);
    }
}

/// Resets every signal disposition to the default.
///
/// # Safety
/// Only in the cloned init, while every signal is still blocked (as the clone left it), so that
/// no inherited handler can run before it is reset.
unsafe fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: `SIG_DFL` installs no handler, so no code of the parent can run from it;
            // signal(2) is async-signal-safe (glibc's is a raw sigaction).
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

/// Unblocks every signal.
///
/// # Safety
/// Only in the cloned init or a payload, once the dispositions are reset (no inherited handler
/// may run).
unsafe fn unblock_signals() {
    // SAFETY: `sigset_t` is plain data, valid all-zero and then emptied by sigemptyset; both
    // calls get a pointer to this live local (and null for the old mask, which sigprocmask
    // allows); both are async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Closes every fd except the (sorted) `keep` list.
///
/// # Safety
/// Only in the cloned init: it closes fds that other code of this process could still own
/// (`OwnedFd`s of the copied parent), which is sound only where that code never runs again.
unsafe fn close_all_except(keep: &[RawFd]) {
    let mut next: u32 = 0;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            // SAFETY: close_range takes plain numbers; in the init (this function's contract)
            // nothing else uses the fds below `fd`, and the ones in `keep` are skipped.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0) };
        }
        next = fd + 1;
    }
    // SAFETY: as above, for every fd above the last kept one.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0) };
}

/// Executes one root file system step; false if it failed (errno tells why).
///
/// # Safety
/// Only in the cloned init; `op`'s pointers must be valid in this process (base ops or the
/// arena): NUL-terminated strings, and `data` with `len` readable bytes for writes.
unsafe fn run_op(op: &RawOp) -> bool {
    // SAFETY: every pointer handed to the kernel is one of `op`'s, which are NUL-terminated
    // strings (or null where the call allows it: `mount`'s source, type and data) or `len`
    // readable bytes at `data`, as this function's contract requires; `data.add(off)` stays
    // within those `len` bytes. The fds opened here are closed here. Every call is a raw,
    // async-signal-safe syscall wrapper that allocates nothing.
    unsafe {
        match op.kind {
            OP_MKDIR => {
                if libc::mkdir(op.path, op.mode) != 0 && errno() != libc::EEXIST {
                    return false;
                }
                !op.chown || libc::chown(op.path, op.uid, op.gid) == 0
            }
            OP_SYMLINK => libc::symlink(op.src, op.path) == 0,
            OP_TOUCH => {
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW;
                let fd = libc::open(op.path, flags, 0o644);
                fd >= 0 && libc::close(fd) == 0
            }
            OP_MOUNT => libc::mount(op.src, op.path, op.fstype, op.flags, op.data.cast()) == 0,
            OP_WRITE => {
                let flags = libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_CLOEXEC
                    | libc::O_NOFOLLOW;
                let fd = libc::open(op.path, flags, op.mode);
                if fd < 0 {
                    return false;
                }
                let mut off = 0;
                while off < op.len {
                    let n = libc::write(fd, op.data.add(off).cast(), op.len - off);
                    if n <= 0 {
                        libc::close(fd);
                        return false;
                    }
                    off += n as usize;
                }
                if op.chown && libc::fchown(fd, op.uid, op.gid) != 0 {
                    libc::close(fd);
                    return false;
                }
                libc::fchmod(fd, op.mode);
                libc::close(fd) == 0
            }
            OP_SET => {
                let fd = libc::open(op.path, libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW);
                if fd < 0 {
                    return false;
                }
                let ok = libc::write(fd, op.data.cast(), op.len) == op.len as isize;
                libc::close(fd) == 0 && ok
            }
            _ => false,
        }
    }
}

/// Receives the job message and its fds (close-on-exec). Returns the fd count, or -1 on EOF.
///
/// # Safety
/// Only in the cloned init; `ctrl` must be its control socket.
unsafe fn recv_job(ctrl: RawFd, fds: &mut [c_int; 3 * MAX_PHASES]) -> isize {
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // Room for one SCM_RIGHTS header and 3 * MAX_PHASES ints, 8-byte aligned.
    let mut cbuf = [0u64; 16];
    // SAFETY: `msghdr` is plain data (all-zero is valid); every pointer in it is to a live
    // local (`iov` over `byte`, `cbuf` with its size), so recvmsg writes only there. The
    // control header read back is the one recvmsg filled in within `cbuf` (CMSG_FIRSTHDR checks
    // it fits, and returns null otherwise); at most `fds.len()` ints are read from its data,
    // unaligned reads of what the kernel wrote. recvmsg is async-signal-safe; the CMSG macros
    // are pointer arithmetic.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(ctrl, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n <= 0 {
            return -1;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return 0;
        }
        let data_len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
        let count = (data_len / std::mem::size_of::<c_int>()).min(fds.len());
        let data = libc::CMSG_DATA(cmsg).cast::<c_int>();
        for (i, fd) in fds.iter_mut().enumerate().take(count) {
            *fd = std::ptr::read_unaligned(data.add(i));
        }
        count as isize
    }
}

/// Entry point of the sandbox init (pid 1 of the new pid namespace, in a user namespace of its
/// own whose maps the parent writes: see `launcher::clone_init`).
///
/// # Safety
/// Only right after the clone, in the child, with `ctx` (and the arena it lives in) prepared
/// before it and mapped here, and every signal blocked; `sync_r`/`sync_w` are the two ends of
/// the pipe on which the parent sends 0 once the maps are written. Never returns.
pub(super) unsafe fn child_init(ctx: &ChildCtx, sync_r: RawFd, sync_w: RawFd) -> ! {
    // SAFETY: we are the freshly cloned init with every signal blocked (this function's
    // contract), as `reset_signals` requires. prctl, close and read take plain numbers and a
    // live local; all are raw, async-signal-safe syscalls. `fail` may be called: we are the init.
    unsafe {
        reset_signals();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
        // Wait for the maps: until then this process is still host uid 0 (with capabilities in
        // its new user namespace only) and must touch nothing.
        libc::close(sync_w);
        let mut code: i32 = -1;
        let n = libc::read(sync_r, (&mut code as *mut i32).cast(), 4);
        libc::close(sync_r);
        if n != 4 || code != 0 {
            *libc::__errno_location() = if n == 4 { code } else { libc::ESRCH };
            fail(ctx, STEP_USERNS);
        }
        // Become the run's user and group (the only ones mapped). The capabilities are those of
        // the new user namespace, and stay: its root uid is unmapped, so the change of uid is
        // not the "root gives up root" that would clear them. Raw syscalls (see `payload`).
        if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
            || libc::syscall(libc::SYS_setresgid, ctx.gid, ctx.gid, ctx.gid) != 0
            || libc::syscall(libc::SYS_setresuid, ctx.uid, ctx.uid, ctx.uid) != 0
        {
            fail(ctx, STEP_IDS);
        }
        // A change of credentials clears the parent-death signal: set it again.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
        // The payloads share this uid: not dumpable, the init stays invisible to them under
        // `hidepid=2` and out of reach of ptrace-mode checks (`/proc/1/mem`, `environ`, `fd`),
        // whatever `fs.suid_dumpable` says (each payload's execve makes it dumpable again).
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    // SAFETY: as above; `close_all_except` runs in the init, with `ctx.keep()` the sorted list
    // of fds the context names; fcntl takes plain numbers and open gets a C string literal.
    unsafe {
        close_all_except(ctx.keep());
        // Occupy 0, 1 and 2 so that the fds received with the job are never 0-2 (a payload's
        // dup2(fd, fd) would keep the received fd's close-on-exec flag, or clobber a sibling).
        for fd in 0..3 {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            }
        }
    }

    // Join the run's cgroup before anything else, then hide the rest of the tree.
    let v2 = (!ctx.born_in_v2 && ctx.cgroup_v2_fd >= 0).then_some(ctx.cgroup_v2_fd);
    // SAFETY: the fds are the context's v1 `tasks` and v2 `cgroup.procs` files (the v2 one is -1 when there is
    // none, and closing -1 only fails with EBADF), kept open by `close_all_except` and closed
    // only here; the buffer is a static one-byte literal; unshare takes a flag. `fail` may be
    // called: we are the init.
    unsafe {
        for &fd in ctx.cgroup().iter().chain(v2.iter()) {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(ctx, STEP_CGROUP);
            }
        }
        for &fd in ctx
            .cgroup()
            .iter()
            .chain(std::iter::once(&ctx.cgroup_v2_fd))
        {
            libc::close(fd);
        }
        if libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
            fail(ctx, STEP_UNSHARE_CGROUP);
        }
    }

    // The base root, then into it.
    let null = std::ptr::null();
    // SAFETY: mount gets a C string literal and nulls where it allows them; the base ops and
    // `ctx.newroot` point into the arena, mapped here (this function's contract), as `base`
    // and `run_op` require; chdir, pivot_root and umount2 get C string literals or `newroot`.
    // `fail` may be called: we are the init.
    unsafe {
        if libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            null.cast(),
        ) != 0
        {
            fail(ctx, STEP_PRIVATE);
        }
        for (i, op) in ctx.base().iter().enumerate() {
            if !run_op(op) {
                fail(ctx, i as i32);
            }
        }
        let dot = c".".as_ptr();
        if libc::chdir(ctx.newroot) != 0
            || libc::syscall(libc::SYS_pivot_root, dot, dot) != 0
            || libc::umount2(dot, libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            fail(ctx, STEP_PIVOT);
        }
    }
    // SAFETY: `hostname` points at `hostname_len` bytes in the arena; the ioctl gets a socket
    // just created and `lo_req`, a 40-byte `struct ifreq` in the context (the kernel reads and
    // writes at most that much); the socket is closed here. `unblock_signals` runs after
    // `reset_signals` as it requires; `send` writes to the status pipe. `fail` may be called: we
    // are the init.
    unsafe {
        if libc::sethostname(ctx.hostname.cast(), ctx.hostname_len) != 0 {
            fail(ctx, STEP_HOSTNAME);
        }
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 || libc::ioctl(sock, libc::SIOCSIFFLAGS, ctx.lo_req.as_ptr()) != 0 {
            fail(ctx, STEP_LOOPBACK);
        }
        libc::close(sock);
        unblock_signals();
        send(ctx.status_w, MSG_READY, 0, 0);
    }

    // Wait for the job (a warm sandbox may wait here a long time; EOF means: not needed).
    let mut fds = [-1 as c_int; 3 * MAX_PHASES];
    // SAFETY: `ctx.ctrl` is the init's control socket, as `recv_job` requires; `_exit` ends the
    // init without running the parent's copied exit handlers.
    let got = unsafe { recv_job(ctx.ctrl, &mut fds) };
    if got < 0 {
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: `ctx.arena` is the arena's job header: the supervisor wrote a complete `Job`
    // there before sending the job message just received, and no one writes it while the init
    // reads.
    let job = unsafe { &*ctx.arena };
    if got as usize != 3 * job.n_phases || job.n_phases > MAX_PHASES {
        // SAFETY: we are the init.
        unsafe { fail(ctx, STEP_RECV_JOB) };
    }
    for i in 0..job.n_ops {
        // SAFETY: the job's `n_ops` ops were written by `write_job` at `job.ops` in the arena
        // (`i < n_ops`), their own pointers into the arena too, as `run_op` requires. `fail`
        // may be called: we are the init.
        unsafe {
            if !run_op(&*job.ops.add(i)) {
                fail(ctx, STEP_JOB + i as i32);
            }
        }
    }
    // SAFETY: the status pipe, which the init keeps open.
    unsafe { send(ctx.status_w, MSG_JOB_READY, 0, 0) };

    for i in 0..job.n_phases {
        // SAFETY: `i < n_phases` (checked against MAX_PHASES above) and `write_job` wrote that
        // many phases at `job.phases` in the arena.
        let phase = unsafe { &*job.phases.add(i) };
        let (stdin_r, stdout_w, stderr_w) = (fds[3 * i], fds[3 * i + 1], fds[3 * i + 2]);
        let mut go = 0u8;
        // SAFETY: reads one byte into a live local from the control socket; `_exit` ends the
        // init without running the parent's copied exit handlers.
        unsafe {
            if libc::read(ctx.ctrl, (&mut go as *mut u8).cast(), 1) != 1 {
                libc::_exit(0);
            }
        }
        // A vfork-like clone (CLONE_VM | CLONE_VFORK) onto a stack of its own: the payload
        // borrows the init's address space until its execve, so no page table is copied and
        // write-protected (and no TLB flushed) for a process that replaces its memory at once;
        // the init sleeps meanwhile. Not glibc's fork(), which would take malloc's locks that
        // another thread of the (copied) supervisor may have held at clone time: glibc's
        // clone() is a bare wrapper of the system call.
        let args = PayloadArgs {
            ctx,
            index: i,
            phase,
            stdio: [stdin_r, stdout_w, stderr_w],
        };
        let mut stack = std::mem::MaybeUninit::<PayloadStack>::uninit();
        // SAFETY: `payload_entry` runs `payload` (which never returns: execve or _exit) on
        // `stack`, a live local of this frame that the init does not touch until the payload
        // has exec'd or exited (CLONE_VFORK); the stack grows down from its end, 16-byte
        // aligned (`PayloadStack`). `args` lives in this frame for that long too. The payload
        // shares this memory but writes only its own stack (and errno); its fds, credentials,
        // seccomp filter, rlimits and signal dispositions are its own (no CLONE_FILES,
        // CLONE_THREAD or CLONE_SIGHAND).
        let pid = unsafe {
            let top = stack
                .as_mut_ptr()
                .cast::<u8>()
                .add(std::mem::size_of::<PayloadStack>());
            libc::clone(
                payload_entry,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&args as *const PayloadArgs).cast_mut().cast(),
            )
        } as libc::pid_t;
        if pid < 0 {
            // SAFETY: we are the init.
            unsafe { fail(ctx, STEP_FORK) };
        }
        // SAFETY: the payload's ends of its pipes, received with the job and owned by the init,
        // which needs them no more; waitpid gets a live local for the status; kill(-1) signals
        // every other process of this pid namespace (the init itself is immune to it); `send`
        // writes to the status pipe.
        unsafe {
            libc::close(stdin_r);
            libc::close(stdout_w);
            libc::close(stderr_w);
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
    }
    // SAFETY: ends the init without running the parent's copied exit handlers.
    unsafe { libc::_exit(0) }
}

/// The payload's stack while it shares the init's memory (see the init's phase loop): the
/// payload's set-up is raw system calls on locals.
#[repr(C, align(16))]
struct PayloadStack([u8; 64 * 1024]);

/// What [`payload_entry`] gets from the init.
struct PayloadArgs<'a> {
    ctx: &'a ChildCtx,
    index: usize,
    phase: &'a RawPhase,
    stdio: [c_int; 3],
}

/// The payload's first function, on its own stack (glibc's `clone` calls it).
extern "C" fn payload_entry(arg: *mut libc::c_void) -> c_int {
    // SAFETY: `arg` is the init's `PayloadArgs`, alive until this process execs or exits (the
    // init waits: CLONE_VFORK); its references point into the arena (a job the supervisor
    // wrote) and its fds are this phase's pipe ends, as `payload` requires.
    unsafe {
        let a = &*(arg as *const PayloadArgs);
        payload(a.ctx, a.index, a.phase, a.stdio)
    }
}

/// Reports that payload `index` failed at `stage` (with errno) and ends it.
///
/// # Safety
/// Only in a payload process before its execve: it ends the calling process.
unsafe fn payload_failed(ctx: &ChildCtx, index: usize, stage: Stage) -> ! {
    // SAFETY: `ctx.status_w` is the status pipe, inherited from the init; `_exit` ends this
    // payload (this function's contract) without running the parent's copied exit handlers.
    unsafe {
        send(
            ctx.status_w,
            MSG_EXEC_FAILED,
            (i32::from(stage as u8) << 16) | index as i32,
            errno(),
        );
        libc::_exit(127);
    }
}

/// Sets up payload `index` (stdio, session, rlimits, credentials, capabilities, seccomp) and
/// execs it; on failure reports the stage and exits.
///
/// # Safety
/// Only in the payload process the init cloned (sharing the init's memory until it execs: it
/// writes nothing but its own stack); `p` must point into the arena (its strings and
/// arrays too) and `stdio` be the phase's pipe ends.
unsafe fn payload(ctx: &ChildCtx, index: usize, p: &RawPhase, stdio: [c_int; 3]) -> ! {
    // SAFETY: we are a payload before its execve, as `payload_failed` requires.
    let die = |stage: Stage| unsafe { payload_failed(ctx, index, stage) };
    // SAFETY: dup2 and setsid take plain numbers (`stdio` are this payload's pipe ends); chdir
    // gets a C string literal. All are raw, async-signal-safe syscalls.
    unsafe {
        if libc::dup2(stdio[0], 0) < 0 || libc::dup2(stdio[1], 1) < 0 || libc::dup2(stdio[2], 2) < 0
        {
            die(Stage::Dup2);
        }
        if libc::setsid() < 0 {
            die(Stage::Setsid);
        }
        if libc::chdir(c"/tmp".as_ptr()) != 0 {
            die(Stage::Chdir);
        }
    }
    for i in 0..p.n_rlimits {
        // SAFETY: `write_job` put `n_rlimits` pairs at `p.rlimits` in the arena (`i` is below);
        // setrlimit reads the live local `rl`.
        unsafe {
            let [res, val] = *p.rlimits.add(i);
            let mut rl = libc::rlimit {
                rlim_cur: val,
                rlim_max: val,
            };
            // Without CAP_SYS_RESOURCE a hard limit cannot be raised: then the sandbox's own
            // hard limit, which is lower (never above the value asked for).
            if libc::setrlimit(res as _, &rl) != 0 {
                let mut have = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if errno() != libc::EPERM || libc::getrlimit(res as _, &mut have) != 0 {
                    die(Stage::Setrlimit);
                }
                rl.rlim_cur = val.min(have.rlim_max);
                rl.rlim_max = rl.rlim_cur;
                if libc::setrlimit(res as _, &rl) != 0 {
                    die(Stage::Setrlimit);
                }
            }
        }
    }
    for cap in 0..=ctx.cap_last {
        // SAFETY: prctl with plain numbers only.
        unsafe {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0) != 0
                && errno() != libc::EINVAL
            {
                die(Stage::DropBoundingSet);
            }
        }
    }
    // SAFETY: prctl with plain numbers only.
    unsafe {
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            die(Stage::ClearAmbientCaps);
        }
    }
    // Raw syscalls: glibc's set*id wrappers broadcast to every thread it believes exists
    // (copied from the parent's bookkeeping) and would wait forever for threads that are not here.
    // SAFETY: setgroups gets a count of 0 and a null list, which the kernel does not read;
    // setresgid and setresuid take plain numbers.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0 {
            die(Stage::Setgroups);
        }
        if libc::syscall(libc::SYS_setresgid, ctx.gid, ctx.gid, ctx.gid) != 0 {
            die(Stage::Setresgid);
        }
        if libc::syscall(libc::SYS_setresuid, ctx.uid, ctx.uid, ctx.uid) != 0 {
            die(Stage::Setresuid);
        }
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
    // SAFETY: capset reads a `_LINUX_CAPABILITY_VERSION_3` header and the two data structs
    // that version takes, both live locals with the kernel's layout (`repr(C)`); prctl and
    // close_range take plain numbers.
    unsafe {
        if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
            die(Stage::Capset);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            die(Stage::NoNewPrivs);
        }
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            die(Stage::CloseRange);
        }
    }
    // SAFETY: the dispositions were reset by the init before it forked us, as
    // `unblock_signals` requires.
    unsafe { unblock_signals() };
    let filter = &ctx.filter as *const libc::sock_fprog as c_ulong;
    // SAFETY: `ctx.filter` is a `sock_fprog` whose `filter` points at `len` BPF instructions in
    // the arena; the kernel copies the program during the call. execve gets NUL-terminated
    // `path` and NULL-terminated `argv`/`envp` arrays of C strings, all in the arena (this
    // function's contract); it returns only on failure.
    unsafe {
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as c_ulong,
            filter,
            0,
            0,
        ) != 0
        {
            die(Stage::Seccomp);
        }
        libc::execve(p.path, p.argv, p.envp);
    }
    die(Stage::Execve)
}

#[cfg(test)]
mod tests {
    use super::Stage;

    #[test]
    fn stages_travel_as_their_discriminant() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(*stage as u8 as usize, i);
            // As `payload_failed` sends it (payload index in the low 16 bits) and the
            // supervisor decodes it.
            let word = (i32::from(*stage as u8) << 16) | 3;
            assert_eq!(Stage::from_wire(word >> 16), Some(*stage));
        }
        assert_eq!(Stage::from_wire(Stage::ALL.len() as i32), None);
        assert_eq!(Stage::from_wire(-1), None);
        assert_eq!(Stage::Seccomp.name(), "seccomp");
    }
}
