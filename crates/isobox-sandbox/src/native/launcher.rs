//! The launcher: a small single-threaded process that clones sandboxes for a server.
//!
//! # Why
//! A sandbox init is a fork-like clone (no `CLONE_VM`) of whoever creates it. Cloned from a
//! server, every clone copies the page tables of the server's whole heap and thread stacks, and
//! marks all of it copy-on-write: afterwards every page a server thread writes takes a fault (and
//! a TLB shoot-down across cores) until the sandbox ends. Under load that was about a sixth of
//! the machine's CPU (see BENCHMARKS.md). The init also carried a copy of everything the server
//! held at clone time (configuration, keys, other requests' data) for as long as it lived.
//!
//! # How
//! [`start`] forks the launcher at the very start of `main`, while the process has one thread and
//! has read no configuration. The launcher keeps a tiny address space and nothing secret. For
//! each sandbox the supervisor writes the init's whole context into the sandbox's arena (a memfd,
//! see `child.rs`) and sends the launcher the memfd, the mapping's address and the fds the
//! context names (`SCM_RIGHTS`). The launcher maps the arena at the same address
//! (`MAP_FIXED_NOREPLACE`, so every pointer in it is valid), renumbers the fds in the context to
//! its own, clones the init with `CLONE_PARENT` (the supervisor's process becomes its parent: it
//! reaps it and gets its exit status exactly as for a sandbox it cloned itself; the init's
//! parent-death signal follows the supervisor's main thread), unmaps the arena, closes the fds
//! and answers with the pid.
//!
//! Anything unexpected (no launcher started, it died, the address is taken in it) falls back to
//! cloning in the supervisor, which is always correct, only slower. The launcher exits when the
//! supervisor does (parent-death signal, or EOF on its socket).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use libc::c_ulong;

use super::child::{self, ChildCtx, MAX_KEEP};

/// A running launcher: the supervisor's end of its socket, and its pid.
struct Launcher {
    sock: OwnedFd,
    pid: libc::pid_t,
}

impl Drop for Launcher {
    /// Ends and reaps it (it may be dead already; a zombie launcher is reaped too).
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on our own child, which nothing else reaps.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

static LAUNCHER: Mutex<Option<Launcher>> = Mutex::new(None);

/// A request: where the arena is, where the context is in it, and which fds follow.
#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    arena_addr: u64,
    arena_size: u64,
    ctx_addr: u64,
    /// Index in the fds of the v2 cgroup directory for `CLONE_INTO_CGROUP`, or -1.
    v2_dir: i32,
    n_fds: u32,
    /// The supervisor's numbers of the fds that follow the arena's memfd, in order.
    fds: [i32; MAX_KEEP + 1],
    /// Zero: the tail padding made explicit, so that every byte of a request is initialized
    /// (it is sent as bytes, see [`request_bytes`]).
    pad: [u8; REQUEST_PAD],
}

/// Bytes after `Request::fds` up to the struct's 8-byte alignment.
const REQUEST_PAD: usize = (8 - (4 * (MAX_KEEP + 1)) % 8) % 8;

// A `Request` has no implicit padding: its size is the sum of its fields'.
const _: () =
    assert!(std::mem::size_of::<Request>() == 3 * 8 + 2 * 4 + 4 * (MAX_KEEP + 1) + REQUEST_PAD);

/// The answer: a pid, or `-errno`.
type Reply = i64;

/// Forks the launcher. Call it first thing in `main`, while the process has a single thread
/// (a fork of a multi-threaded process could copy a held lock); returns `Ok(false)` and starts
/// nothing if there is already more than one thread, or if one runs already.
pub fn start() -> io::Result<bool> {
    let mut slot = LAUNCHER.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_some() || thread_count() != Some(1) {
        return Ok(false);
    }
    let mut pair = [-1; 2];
    // SAFETY: socketpair writes two fds into `pair`.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    // SAFETY: the process has one thread (checked above), so the child's copy of every lock is
    // consistent; the child runs `serve`, which never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(ours);
        // SAFETY: in the freshly forked, single-threaded launcher.
        unsafe { serve(theirs) }
    }
    drop(theirs);
    *slot = Some(Launcher { sock: ours, pid });
    Ok(true)
}

/// Ends and reaps the launcher: for a process that turns out not to clone sandboxes (the docker
/// backend).
pub fn stop() {
    if let Ok(mut s) = LAUNCHER.lock() {
        s.take();
    }
}

fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// Has the launcher clone the init described by `ctx` (in the arena mapped at `arena`).
/// `None` when there is no usable launcher: the caller clones it itself.
pub(super) fn spawn(
    arena: (usize, usize, Option<RawFd>),
    ctx: *mut ChildCtx,
    fds: &[RawFd],
    v2_dir: Option<RawFd>,
) -> Option<io::Result<libc::pid_t>> {
    let (addr, size, Some(memfd)) = arena else {
        return None;
    };
    let mut slot = LAUNCHER.lock().unwrap_or_else(|e| e.into_inner());
    let sock = slot.as_ref()?.sock.as_raw_fd();
    let mut send_fds = vec![memfd];
    let mut req = Request {
        arena_addr: addr as u64,
        arena_size: size as u64,
        ctx_addr: ctx as u64,
        v2_dir: -1,
        n_fds: 0,
        fds: [-1; MAX_KEEP + 1],
        pad: [0; REQUEST_PAD],
    };
    let mut all: Vec<RawFd> = fds.to_vec();
    if let Some(d) = v2_dir {
        req.v2_dir = all.len() as i32;
        all.push(d);
    }
    if all.len() > req.fds.len() {
        return None;
    }
    req.n_fds = all.len() as u32;
    req.fds[..all.len()].copy_from_slice(&all);
    send_fds.extend_from_slice(&all);
    if send_msg(sock, request_bytes(&req), &send_fds).is_err() {
        // The launcher is gone (killed?) and never saw this request: from now on clone in the
        // supervisor, starting with this sandbox.
        slot.take();
        return None;
    }
    let answer = {
        let mut reply: Reply = 0;
        let n = loop {
            // SAFETY: reads at most 8 bytes into `reply`.
            let n = unsafe {
                libc::recv(
                    sock,
                    (&mut reply as *mut Reply).cast(),
                    std::mem::size_of::<Reply>(),
                    0,
                )
            };
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break n;
            }
        };
        if n == std::mem::size_of::<Reply>() as isize {
            Ok(reply)
        } else if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "launcher gone",
            ))
        }
    };
    match answer {
        Ok(pid) if pid > 0 => Some(Ok(pid as libc::pid_t)),
        // The launcher could not map the arena at that address (the context is untouched):
        // clone here this once.
        Ok(e) if -e as i32 == libc::EEXIST => None,
        Ok(e) => Some(Err(io::Error::from_raw_os_error(-e as i32))),
        Err(e) => {
            // The launcher died while handling the request: it may have renumbered the context's
            // fds already, so this sandbox fails; the next ones are cloned in the supervisor.
            slot.take();
            Some(Err(e))
        }
    }
}

/// The bytes of a request, as sent to the launcher.
fn request_bytes(req: &Request) -> &[u8] {
    // SAFETY: `Request` is `repr(C)` with only integer fields and no implicit padding (asserted
    // above), so all of its `size_of` bytes are initialized; the slice covers exactly `*req`,
    // which it borrows, and `u8` has no alignment requirement.
    unsafe {
        std::slice::from_raw_parts(
            (req as *const Request).cast(),
            std::mem::size_of::<Request>(),
        )
    }
}

/// Sends `data` and `fds` (SCM_RIGHTS) as one message on a unix socket.
pub(super) fn send_msg(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations.
    let (space, len) = unsafe { (libc::CMSG_SPACE(payload) as usize, libc::CMSG_LEN(payload)) };
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    // SAFETY: `msghdr` is plain data (all-zero is valid); every pointer in `msg` points at live
    // locals of the right size (`iov` over `data`, which sendmsg only reads; `cbuf`, at least
    // `space` bytes, 8-byte aligned). `space` is CMSG_SPACE of the fds' size, so the first
    // control header (non-null: the buffer holds one) and `fds.len()` ints after it fit in
    // `cbuf`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = len as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<RawFd>(),
            fds.len(),
        );
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) != data.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one request and its fds; `None` at EOF or on a malformed message.
fn recv_request(sock: RawFd) -> Option<(Request, Vec<OwnedFd>)> {
    // SAFETY: `Request` is plain data; all-zero is a valid value.
    let mut req: Request = unsafe { std::mem::zeroed() };
    let max_fds = (MAX_KEEP + 2) as u32;
    // SAFETY: pure computation.
    let space = unsafe { libc::CMSG_SPACE(max_fds * 4) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: (&mut req as *mut Request).cast(),
        iov_len: std::mem::size_of::<Request>(),
    };
    let mut fds = Vec::new();
    // SAFETY: every pointer in `msg` points at live locals of the right size; the fds the
    // kernel installed are taken into `OwnedFd`s once each.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / 4 {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return None;
        }
        n
    };
    if n != std::mem::size_of::<Request>() as isize
        || req.n_fds as usize > req.fds.len()
        || fds.len() != req.n_fds as usize + 1
    {
        return None;
    }
    Some((req, fds))
}

/// The launcher's loop.
///
/// # Safety
/// Only in the freshly forked launcher (one thread), which owns every fd it inherited; never
/// returns.
unsafe fn serve(sock: OwnedFd) -> ! {
    // SAFETY: prctl and getppid take plain numbers; `_exit` ends the launcher without running
    // the exit handlers it inherited from the supervisor.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
        // The supervisor may have died between the fork and the prctl.
        if libc::getppid() == 1 {
            libc::_exit(0);
        }
    }
    // A terminal's Ctrl-C is the supervisor's to handle; the launcher ends with it. (Every
    // sandbox init resets all dispositions first thing.)
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        // SAFETY: `SIG_IGN` installs no handler.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let s = sock.as_raw_fd() as u32;
    // SAFETY: close_range takes plain numbers. The launcher is a fresh fork that owns every fd
    // it inherited and needs none but 0-2 and `sock`, which both ranges leave out; the
    // `OwnedFd`s of the supervisor's copied state are never used or dropped here (`serve` never
    // returns). prctl gets a C string literal.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, s.saturating_sub(1), 0u32);
        libc::syscall(libc::SYS_close_range, s + 1, u32::MAX, 0u32);
        libc::prctl(
            libc::PR_SET_NAME,
            c"isobox-launch".as_ptr() as c_ulong,
            0,
            0,
            0,
        );
    }
    loop {
        let Some((req, fds)) = recv_request(sock.as_raw_fd()) else {
            // SAFETY: ends the launcher (the supervisor closed its socket).
            unsafe { libc::_exit(0) };
        };
        // SAFETY: we are the launcher; `req` and `fds` were just received from the supervisor.
        let reply: Reply = match unsafe { launch(&req, &fds) } {
            Ok(pid) => pid as Reply,
            Err(e) => -(e.raw_os_error().unwrap_or(libc::EIO) as Reply),
        };
        drop(fds);
        // SAFETY: sends the 8 bytes of the live local `reply` on our socket.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                (&reply as *const Reply).cast(),
                std::mem::size_of::<Reply>(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n != std::mem::size_of::<Reply>() as isize {
            // SAFETY: ends the launcher (the supervisor is gone).
            unsafe { libc::_exit(0) };
        }
    }
}

/// Maps the arena where the supervisor has it, renumbers the context's fds, clones the init.
///
/// # Safety
/// Only in the launcher (single-threaded); `req` and `fds` must come from the supervisor:
/// `fds[0]` the arena's memfd, the others the fds `req.fds` names, and `req.ctx_addr` the
/// address of a context written by `Arena::write_ctx` into that arena at `req.arena_addr`.
unsafe fn launch(req: &Request, fds: &[OwnedFd]) -> io::Result<libc::pid_t> {
    let (addr, size) = (req.arena_addr as usize, req.arena_size as usize);
    let ctx_off = (req.ctx_addr as usize).wrapping_sub(addr);
    if ctx_off.saturating_add(std::mem::size_of::<ChildCtx>()) > size {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a new shared mapping of the memfd we own; MAP_FIXED_NOREPLACE never replaces an
    // existing mapping of this process (it fails instead), so no memory in use is touched.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
            fds[0].as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if p as usize != addr {
        // A kernel without MAP_FIXED_NOREPLACE treats it as a hint.
        // SAFETY: unmaps the mapping just made elsewhere, which nothing refers to.
        unsafe { libc::munmap(p, size) };
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    let ctx = req.ctx_addr as *mut ChildCtx;
    let theirs = &req.fds[..req.n_fds as usize];
    let ours: Vec<RawFd> = fds[1..].iter().map(|f| f.as_raw_fd()).collect();
    let map = |fd: RawFd| {
        theirs
            .iter()
            .position(|&t| t == fd)
            .map(|i| ours[i])
            .unwrap_or(-1)
    };
    // SAFETY: `ctx` lies inside the arena just mapped at the supervisor's address (checked
    // above), where the supervisor wrote a `ChildCtx` (this function's contract); only this
    // thread touches the mapping here.
    unsafe { (*ctx).remap_fds(&map) };
    let v2_dir = usize::try_from(req.v2_dir)
        .ok()
        .and_then(|i| ours.get(i))
        .copied();
    // SAFETY: `ctx` is a context written by `write_ctx`, its arena mapped here (and inherited
    // by the child: a fresh mapping has no MADV_DONTFORK); the launcher has a single thread,
    // so no lock can be held by another one.
    let pid = unsafe { clone_init(ctx, v2_dir, true) };
    // SAFETY: unmaps the arena mapped above; the child has its own copy, and nothing here
    // refers to it any more.
    unsafe { libc::munmap(p, size) };
    pid
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

/// Clones the sandbox init described by `ctx`: `clone3(CLONE_INTO_CGROUP)` into `v2_dir` when
/// given (born in its v2 group, no migration), else `clone`; new user, pid, mount, network, IPC
/// and UTS namespaces, in that one clone (so the user namespace owns the others); with
/// `CLONE_PARENT` when `as_sibling` (the launcher's case).
///
/// The init's user namespace maps exactly one uid and one gid, the run's, each to itself: the
/// init holds capabilities in that namespace only, none in the host's, and switches to the
/// run's uid and gid as soon as the maps exist (see `child_init`). The maps can only be written
/// from outside, so this (privileged) caller writes them right after the clone while the init
/// waits on a pipe, then tells it 0, or the errno of the write that failed.
///
/// # Safety
/// `ctx` must be a context written by `Arena::write_ctx` whose arena is mapped here (and
/// inherited by the child); the child runs `child_init` and never returns. Call with no lock a
/// child could need held by another thread (the supervisor holds `CLONE_LOCK`).
pub(super) unsafe fn clone_init(
    ctx: *mut ChildCtx,
    v2_dir: Option<RawFd>,
    as_sibling: bool,
) -> io::Result<libc::pid_t> {
    let mut flags = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS) as u64;
    if as_sibling {
        flags |= libc::CLONE_PARENT as u64;
    }
    // The init waits on this pipe until its user namespace's maps are written.
    let mut sync = [-1; 2];
    // SAFETY: pipe2 writes two fds into `sync`.
    if unsafe { libc::pipe2(sync.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours; the child's copies are its own to close.
    let (sync_r, sync_w) =
        unsafe { (OwnedFd::from_raw_fd(sync[0]), OwnedFd::from_raw_fd(sync[1])) };
    // SAFETY: `ctx` points at a live context in the mapped arena (this function's contract).
    let (uid, gid) = unsafe { (*ctx).ids() };
    // Signals blocked around the clone, so that no handler of this process runs in the child
    // before it resets them.
    // SAFETY: `sigset_t` is plain data (all-zero is valid; sigfillset then fills it); both
    // calls get pointers to these live locals.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    let mut pid = -1;
    if let Some(dir) = v2_dir {
        // SAFETY: `ctx` points at a live context in the mapped arena (this function's
        // contract); the clone below copies the flag to the child.
        unsafe { (*ctx).born_in_v2 = true };
        let args = CloneArgs {
            flags: flags | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: dir as u64,
            ..CloneArgs::default()
        };
        // SAFETY: clone3 reads `size_of::<CloneArgs>()` bytes of the live local `args` (the
        // kernel's `struct clone_args`, version 2); no stack is given, so the child runs on a
        // copy of this one, without CLONE_VM: fork-like, and it goes straight to `child_init`.
        pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid < 0 {
            // SAFETY: as above; there is no child.
            unsafe { (*ctx).born_in_v2 = false };
        }
    }
    if pid < 0 {
        let f = (flags as c_ulong) | libc::SIGCHLD as c_ulong;
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack); the child goes straight to
        // `child_init`.
        pid = unsafe { libc::syscall(libc::SYS_clone, f, 0usize, 0usize, 0usize, 0usize) };
    }
    if pid == 0 {
        // SAFETY: we are the child, right after the clone, with every signal blocked; `ctx`
        // and its arena are mapped here (the caller's contract), and no lock it could need was
        // held by another thread at the clone (ditto).
        unsafe { child::child_init(&*ctx, sync_r.as_raw_fd(), sync_w.as_raw_fd()) };
    }
    let err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above, from a live local.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(sync_r);
    if pid < 0 {
        return Err(err);
    }
    // Whatever happens here, the init learns it (a code, or EOF if this process dies) and
    // reports a failure on its status pipe: the caller reaps it as usual.
    let code: i32 = match map_ids(pid as libc::pid_t, uid, gid) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(libc::EPERM),
    };
    // SAFETY: writes the 4 bytes of a live local to our end of the pipe.
    unsafe {
        libc::write(
            sync_w.as_raw_fd(),
            (&code as *const i32).cast(),
            std::mem::size_of::<i32>(),
        )
    };
    Ok(pid as libc::pid_t)
}

/// Writes the user namespace maps of the just-cloned init `pid`: its run's uid and gid, each to
/// itself, nothing else. `setgroups` stays allowed in it (only a privileged writer like this one
/// may map ids without denying it) so that the init can drop the supplementary groups it was
/// cloned with (the supervisor's, root's) before anything else.
fn map_ids(pid: libc::pid_t, uid: u32, gid: u32) -> io::Result<()> {
    // One write each, as the kernel requires.
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("{uid} {uid} 1\n"))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("{gid} {gid} 1\n"))
}
