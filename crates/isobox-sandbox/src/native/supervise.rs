//! The supervisor side of a running sandbox: feeding stdin, collecting output up to the cap,
//! watching the wall clock and the cgroup's CPU time, killing the tree at a limit, and turning
//! what happened into a [`PhaseReport`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use libc::c_int;

use super::child::{Stage, MSG_EXEC_FAILED, MSG_EXITED, MSG_SETUP_FAILED};
use super::Sandbox;
use crate::cgroup::RunCgroup;
use crate::spec::{LimitHit, Phase, PhaseReport, RunIo, StdinPoll, Stream};

pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints; on success both are new fds we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe whose inode belongs to the run's uid and gid: the program can open its own stdio
/// again by name (`/dev/stdin`, `/dev/stdout`, `/proc/self/fd/0`: a pipe opened through /proc
/// checks the inode's owner and mode, 0600, which would be root's). No other run has that uid.
///
/// A pipe's inode takes the creating thread's file-system ids: this thread takes the run's for
/// the one call (CAP_SETUID, which the sandbox needs anyway; no CAP_CHOWN needed, which the
/// systemd unit does not grant), then its own again. `setfsuid` acts on the calling thread
/// only. Should the ids not take, the pipe is given away with `fchown` instead.
pub(super) fn pipe_for(uid: u32, gid: u32) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: setfsuid/setfsgid change this thread's file-system ids only (restored below
    // before anything else runs on this thread); -1 reads the current one.
    let (old_uid, old_gid, took) = unsafe {
        let old_gid = libc::setfsgid(gid);
        let old_uid = libc::setfsuid(uid);
        let took = libc::setfsuid(u32::MAX) as u32 == uid && libc::setfsgid(u32::MAX) as u32 == gid;
        (old_uid as u32, old_gid as u32, took)
    };
    let made = pipe();
    // SAFETY: as above, back to this thread's own ids.
    unsafe {
        libc::setfsuid(old_uid);
        libc::setfsgid(old_gid);
    }
    let (r, w) = made?;
    // SAFETY: fchown on an fd we own; both ends share the one inode.
    if !took && unsafe { libc::fchown(r.as_raw_fd(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((r, w))
}

pub(super) fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own; no memory is passed.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// The sandbox init process; killed and reaped on drop if still around.
pub(super) struct InitProcess {
    pub(super) pid: libc::pid_t,
    pub(super) reaped: bool,
}

impl InitProcess {
    pub(super) fn kill(&self) {
        if !self.reaped {
            // SAFETY: pid is our own unreaped child, so it cannot have been recycled.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
    pub(super) fn reap(&mut self) -> Option<c_int> {
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

pub(super) struct PhasePipes {
    pub(super) stdin_w: Option<OwnedFd>,
    pub(super) stdout_r: Option<OwnedFd>,
    pub(super) stderr_r: Option<OwnedFd>,
    pub(super) child_ends: Vec<OwnedFd>,
}

/// Reads the 12-byte messages of the status pipe.
pub(super) struct StatusReader {
    pub(super) fd: OwnedFd,
    pub(super) buf: Vec<u8>,
    pub(super) eof: bool,
}

impl StatusReader {
    pub(super) fn pump(&mut self) {
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
    pub(super) fn next(&mut self) -> Option<(u32, i32, i32)> {
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

pub(super) fn os_err(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

/// Polls one fd for input, with an optional timeout.
pub(super) fn wait_readable(fd: RawFd, timeout: Option<Duration>) {
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

/// Output collected from one pipe, cut exactly at the cap.
pub(super) struct Capture {
    pub(super) data: Vec<u8>,
    pub(super) cap: usize,
    pub(super) truncated: bool,
}

impl Capture {
    /// Keeps what fits under the cap; returns how many bytes of `chunk` were kept.
    fn push(&mut self, chunk: &[u8]) -> usize {
        let room = self.cap.saturating_sub(self.data.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        let kept = chunk.len().min(room);
        self.data.extend_from_slice(&chunk[..kept]);
        kept
    }
}

/// Runs one phase: releases it, feeds stdin, collects output, enforces time/output limits.
pub(super) fn supervise(
    index: usize,
    phase: &Phase,
    pipes: &mut PhasePipes,
    sandbox: &mut Sandbox,
    oom0: u64,
    io: &mut dyn RunIo,
) -> PhaseReport {
    let Sandbox {
        status,
        ctrl,
        init,
        cg,
        ..
    } = sandbox;
    let cmd_w = ctrl.as_ref();
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
    // Stdin: the phase's bytes, then whatever `io` hands over until it says Closed.
    let mut pending: Vec<u8> = phase.stdin.clone();
    let mut more_stdin = true;
    if let Some(w) = &pipes.stdin_w {
        set_nonblocking(w.as_raw_fd());
    }
    let start = Instant::now();
    let deadline = start + limits.wall;
    let mut limit_hit: Option<LimitHit> = None;
    let mut exited: Option<c_int> = None;
    let mut exec_failed: Option<String> = None;
    let mut failure: Option<String> = None;
    let go = cmd_w.map(|w| {
        // SAFETY: sending one byte from a local on a socket we own; no SIGPIPE if init is gone.
        unsafe { libc::send(w.as_raw_fd(), b"g".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) == 1 }
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
        if pipes.stdin_w.is_some() && pending.is_empty() && more_stdin {
            match io.stdin(index) {
                StdinPoll::Data(d) => pending = d,
                StdinPoll::Pending => {}
                StdinPoll::Closed => more_stdin = false,
            }
        }
        if pending.is_empty() && !more_stdin {
            pipes.stdin_w = None;
        }
        if limit_hit.is_none() && exited.is_none() && failure.is_none() && io.cancelled() {
            failure = Some("the run was cancelled".into());
        }
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
        if !pending.is_empty() {
            push(pipes.stdin_w.as_ref(), libc::POLLOUT);
        }
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
                if !read_into(fd, &mut buf, &mut out, |c| {
                    io.output(index, Stream::Stdout, c)
                }) {
                    pipes.stdout_r = None;
                }
            } else if pipes.stderr_r.as_ref().is_some_and(|f| f.as_raw_fd() == fd) {
                if !read_into(fd, &mut buf, &mut err, |c| {
                    io.output(index, Stream::Stderr, c)
                }) {
                    pipes.stderr_r = None;
                }
            } else if fd == status.fd.as_raw_fd() {
                status.pump();
                while let Some((kind, a, b)) = status.next() {
                    match kind {
                        MSG_EXITED if a as usize == index => exited = Some(b),
                        MSG_EXEC_FAILED => {
                            let stage =
                                Stage::from_wire(a >> 16).map_or("payload setup", Stage::name);
                            exec_failed = Some(format!(
                                "cannot start `{}`: {stage}: {}",
                                phase.argv[0],
                                os_err(b)
                            ));
                        }
                        MSG_SETUP_FAILED => {
                            let step = super::child::step_name(a, &[], &[]);
                            failure = Some(format!("sandbox init failed ({step}): {}", os_err(b)))
                        }
                        _ => {}
                    }
                }
            } else if let Some(w) = &pipes.stdin_w {
                if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                    pipes.stdin_w = None;
                    continue;
                }
                // SAFETY: writing from a live buffer to a pipe we own.
                let w = unsafe {
                    libc::write(
                        w.as_raw_fd(),
                        pending.as_ptr().cast(),
                        pending.len().min(64 * 1024),
                    )
                };
                if w > 0 {
                    pending.drain(..w as usize);
                } else if w < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                    // The program closed its stdin: drop what is left.
                    pipes.stdin_w = None;
                    pending.clear();
                    more_stdin = false;
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
    let (status_v, limit_hit) =
        crate::spec::classify(limit_hit, failure.is_some(), oom, exit_code, signal);
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

/// Reads what is available, keeps it up to the cap and hands the kept part to `live`; false
/// on EOF or error.
fn read_into(fd: RawFd, buf: &mut [u8], cap: &mut Capture, mut live: impl FnMut(&[u8])) -> bool {
    // SAFETY: reading into a live buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n > 0 {
        let kept = cap.push(&buf[..n as usize]);
        if kept > 0 {
            live(&buf[..kept]);
        }
        true
    } else {
        n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    }
}
