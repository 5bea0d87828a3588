//! The runner: PID 1 of every docker-backend container (`/isobox/isobox-runner` in the image).
//!
//! It reads the job from its stdin (the backend's attach stream), writes the program's files
//! into the work tmpfs, runs each phase with its rlimits, relays stdin and output as frames,
//! enforces the wall-clock, CPU and output limits by killing every other process of the
//! container (`kill(-1)` from the namespace's init), and reports what it measured from the
//! container's cgroup (CPU, peak memory, OOM kills). Memory, process and CPU-share limits are
//! the container's own cgroup limits, set by the backend before each phase.
//!
//! It shares its uid with the program it runs, so it protects itself the two ways a same-uid
//! process can be attacked: as PID 1 of the pid namespace it cannot be killed from inside, and
//! it is not dumpable, so `/proc/1/fd`, `/proc/1/mem` and ptrace are closed to the program (the
//! seccomp profile also refuses ptrace).

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::protocol::{self as proto, Job, JobPhase, PhaseResult};

/// The work directory (a size-capped tmpfs), also HOME and TMPDIR.
const WORK: &str = "/tmp";

/// Entry point of the `isobox-runner` binary.
pub fn main(args: &[String]) -> i32 {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Started through its own loader (`/isobox/lib/ld.so`, see `runner_command`), the process
    // would be named `ld.so`: it names itself, so `ps` and the self-test see the runner.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"isobox-runner".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if args.get(1).map(String::as_str) == Some("--list-commands") {
        return list_commands();
    }
    let mut r = Runner {
        input: proto::Decoder::default(),
        input_eof: false,
        cg: CgroupFiles::find(),
    };
    match r.run() {
        Ok(()) => 0,
        Err(e) => {
            send(proto::FAILED, e.as_bytes());
            1
        }
    }
}

/// Prints every executable in the sandbox PATH (full paths), for the backend's `has_command`.
fn list_commands() -> i32 {
    let mut out = String::new();
    for dir in crate::spec::SANDBOX_PATH.split(':') {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let exec = fs::metadata(&p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            if exec {
                out.push_str(&p.to_string_lossy());
                out.push('\n');
            }
        }
    }
    let _ = io::stdout().write_all(out.as_bytes());
    0
}

/// Writes one frame to stdout (the attach stream), whole.
fn send(kind: u8, payload: &[u8]) {
    let f = proto::frame(kind, payload);
    write_all(1, &f);
}

fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writing from a live buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
        } else if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            wait_fd(fd, libc::POLLOUT, 100);
        } else {
            // The backend is gone: nobody to report to.
            // SAFETY: ends the process.
            unsafe { libc::_exit(2) };
        }
    }
}

fn wait_fd(fd: RawFd, events: i16, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// The container's own cgroup files, as Docker mounts them (v1: one directory per controller
/// under /sys/fs/cgroup; v2: /sys/fs/cgroup itself), read-only.
struct CgroupFiles {
    /// v1 cpuacct.usage (ns) or v2 cpu.stat (usage_usec).
    cpu: Option<(PathBuf, bool)>,
    peak: Option<PathBuf>,
    /// v1 memory.oom_control or v2 memory.events, both with an `oom_kill N` line.
    oom: Option<PathBuf>,
}

impl CgroupFiles {
    fn find() -> CgroupFiles {
        let first = |cands: &[&str]| {
            cands
                .iter()
                .map(PathBuf::from)
                .find(|p| fs::metadata(p).is_ok())
        };
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        CgroupFiles {
            cpu: if v2 {
                first(&["/sys/fs/cgroup/cpu.stat"]).map(|p| (p, true))
            } else {
                first(&[
                    "/sys/fs/cgroup/cpuacct/cpuacct.usage",
                    "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage",
                ])
                .map(|p| (p, false))
            },
            peak: first(&[
                "/sys/fs/cgroup/memory.peak",
                "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
            ]),
            oom: first(&[
                "/sys/fs/cgroup/memory.events",
                "/sys/fs/cgroup/memory/memory.oom_control",
            ]),
        }
    }

    fn cpu_ns(&self) -> Option<u64> {
        let (p, v2) = self.cpu.as_ref()?;
        let s = fs::read_to_string(p).ok()?;
        if *v2 {
            keyed(&s, "usage_usec").map(|us| us * 1000)
        } else {
            s.trim().parse().ok()
        }
    }

    fn peak(&self) -> u64 {
        self.peak
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn oom_kills(&self) -> u64 {
        self.oom
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .and_then(|s| keyed(&s, "oom_kill"))
            .unwrap_or(0)
    }
}

/// The value of `key N` in a flat-keyed cgroup file.
fn keyed(s: &str, key: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

struct Runner {
    input: proto::Decoder,
    input_eof: bool,
    cg: CgroupFiles,
}

/// The stdin of the running phase, as the backend sends it.
#[derive(Default)]
struct StdinFeed {
    pending: Vec<u8>,
    ended: bool,
}

impl Runner {
    fn run(&mut self) -> Result<(), String> {
        let (kind, payload) = self.recv()?;
        if kind != proto::JOB {
            return Err("expected the job".into());
        }
        let job: Job = serde_json::from_slice(&payload).map_err(|e| format!("bad job: {e}"))?;
        let files: Vec<crate::SandboxFile> = job
            .files
            .iter()
            .map(|f| crate::SandboxFile {
                path: f.path.clone(),
                content: Vec::new(),
                executable: f.executable,
                readonly: f.readonly,
            })
            .collect();
        crate::spec::check_files(&files).map_err(|e| e.to_string())?;
        for f in &job.files {
            let (kind, content) = self.recv()?;
            if kind != proto::FILE {
                return Err("expected a file".into());
            }
            write_file(&f.path, &content, f.executable, f.readonly)
                .map_err(|e| format!("cannot write `{}`: {e}", f.path))?;
        }
        for (i, phase) in job.phases.iter().enumerate() {
            send(proto::READY, i.to_string().as_bytes());
            let mut feed = StdinFeed::default();
            loop {
                match self.recv()? {
                    (proto::GO, _) => break,
                    (proto::STDIN, d) => feed.pending.extend_from_slice(&d),
                    (proto::STDIN_END, _) => feed.ended = true,
                    _ => return Err("expected go".into()),
                }
            }
            let result = self.run_phase(phase, feed);
            let ok = result.exit_code == Some(0) && result.limit.is_none() && !result.oom;
            let fatal = result.limit.is_some() || result.error.is_some();
            send(
                proto::PHASE,
                &serde_json::to_vec(&result).map_err(|e| e.to_string())?,
            );
            if fatal || (!ok && !phase.continue_on_failure) {
                break;
            }
        }
        // Every program of the run is dead and reaped by now (`run_phase` kills and reaps
        // everything but this process): nothing changes the tree during the walk, which is
        // fd-relative and follows no symlink anyway.
        if let Some(c) = &job.collect {
            let asked = crate::Collect {
                patterns: c.patterns.clone(),
                max_files: c.max_files,
                max_bytes: c.max_bytes,
            };
            let got = crate::collect::collect_path(Path::new(WORK), &asked).unwrap_or_default();
            for (kind, payload) in proto::collected_frames(&got) {
                send(kind, &payload);
            }
        }
        send(proto::DONE, b"");
        Ok(())
    }

    /// The next frame from the backend, blocking.
    fn recv(&mut self) -> Result<(u8, Vec<u8>), String> {
        loop {
            if let Some(f) = self.input.next_frame()? {
                return Ok(f);
            }
            if self.input_eof {
                return Err("the backend closed the stream".into());
            }
            self.read_input(-1);
        }
    }

    /// Reads what the backend sent, waiting up to `ms` (-1: forever).
    fn read_input(&mut self, ms: i32) {
        wait_fd(0, libc::POLLIN, ms);
        let mut buf = [0u8; 64 * 1024];
        // SAFETY: reading into a live buffer.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            self.input.push(&buf[..n as usize]);
        } else if n == 0 {
            self.input_eof = true;
        }
    }

    fn run_phase(&mut self, phase: &JobPhase, mut feed: StdinFeed) -> PhaseResult {
        let mut res = PhaseResult::default();
        let mut prog = match Program::prepare(phase) {
            Ok(p) => p,
            Err(e) => {
                res.error = Some(e);
                return res;
            }
        };
        let cpu0 = self.cg.cpu_ns();
        // SAFETY: getrusage into a zeroed struct.
        let ru0 = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
            ru
        };
        let peak0 = self.cg.peak();
        let oom0 = self.cg.oom_kills();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(phase.wall_ms);
        let cpu_limit = phase.cpu_ms.saturating_mul(1_000_000);
        let running = match prog.spawn() {
            Ok(r) => r,
            Err(e) => {
                res.error = Some(e);
                return res;
            }
        };
        let Spawned {
            pid,
            stdin,
            stdout,
            stderr,
        } = running;
        let mut stdin = Some(stdin);
        let mut outs = [Some(stdout), stderr];
        let mut sizes = [0u64; 2];
        let mut exited: Option<i32> = None;
        let mut max_rss_kib: i64 = 0;
        let mut killed = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Reap: the program, and whatever else ended (PID 1 adopts every orphan).
            loop {
                let mut st = 0;
                // SAFETY: wait4 with valid out-pointers.
                let (r, ru) = unsafe {
                    let mut ru: libc::rusage = std::mem::zeroed();
                    let r = libc::wait4(-1, &mut st, libc::WNOHANG, &mut ru);
                    (r, ru)
                };
                if r <= 0 {
                    break;
                }
                max_rss_kib = max_rss_kib.max(ru.ru_maxrss);
                if r == pid {
                    exited = Some(st);
                }
            }
            if exited.is_some() && !killed {
                // The program ended: nothing it started outlives it.
                kill_all();
                killed = true;
            }
            if exited.is_some() && outs.iter().all(Option::is_none) {
                break;
            }
            if res.limit.is_none() && exited.is_none() {
                let cpu = self.cpu_since(cpu0, &ru0);
                if Instant::now() >= deadline {
                    res.limit = Some("wall".into());
                } else if cpu > cpu_limit {
                    res.limit = Some("cpu".into());
                } else if res.stdout_truncated || res.stderr_truncated {
                    res.limit = Some("output".into());
                }
                if res.limit.is_some() {
                    kill_all();
                    killed = true;
                }
            }
            // Stdin frames from the backend.
            if !self.input_eof {
                while let Ok(Some((kind, d))) = self.input.next_frame() {
                    match kind {
                        proto::STDIN => feed.pending.extend_from_slice(&d),
                        proto::STDIN_END => feed.ended = true,
                        _ => {}
                    }
                }
            }
            if feed.ended && feed.pending.is_empty() {
                stdin = None;
            }
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
            for o in outs.iter().flatten() {
                fds.push(pollfd(o.as_raw_fd(), libc::POLLIN));
            }
            if !self.input_eof {
                fds.push(pollfd(0, libc::POLLIN));
            }
            if let (Some(w), false) = (&stdin, feed.pending.is_empty()) {
                fds.push(pollfd(w.as_raw_fd(), libc::POLLOUT));
            }
            // SAFETY: a valid array of pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
            for p in &fds {
                if p.revents == 0 {
                    continue;
                }
                if p.fd == 0 {
                    self.read_input(0);
                } else if let Some(idx) = outs
                    .iter()
                    .position(|o| o.as_ref().is_some_and(|o| o.as_raw_fd() == p.fd))
                {
                    // SAFETY: reading into a live buffer from a pipe we own.
                    let n = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if n <= 0 {
                        if n == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
                        {
                            outs[idx] = None;
                        }
                        continue;
                    }
                    let chunk = &buf[..n as usize];
                    let room = phase.max_output.saturating_sub(sizes[idx]) as usize;
                    let kept = &chunk[..chunk.len().min(room)];
                    if kept.len() < chunk.len() {
                        if idx == 0 {
                            res.stdout_truncated = true;
                        } else {
                            res.stderr_truncated = true;
                        }
                    }
                    sizes[idx] += kept.len() as u64;
                    if !kept.is_empty() {
                        send(proto::OUTPUT, &proto::output_payload(idx as u8 + 1, kept));
                    }
                } else if let Some(w) = &stdin {
                    if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                        stdin = None;
                        feed.pending.clear();
                        continue;
                    }
                    let len = feed.pending.len().min(64 * 1024);
                    // SAFETY: writing from a live buffer to a pipe we own.
                    let n =
                        unsafe { libc::write(w.as_raw_fd(), feed.pending.as_ptr().cast(), len) };
                    if n > 0 {
                        feed.pending.drain(..n as usize);
                    } else if n < 0
                        && io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
                    {
                        // The program closed its stdin: drop the rest.
                        stdin = None;
                        feed.pending.clear();
                    }
                }
            }
        }
        // Every process of the phase is dead: reap the last of them.
        loop {
            let mut st = 0;
            // SAFETY: wait4 with valid out-pointers.
            let (r, ru) = unsafe {
                let mut ru: libc::rusage = std::mem::zeroed();
                let r = libc::wait4(-1, &mut st, 0, &mut ru);
                (r, ru)
            };
            if r <= 0 {
                break;
            }
            max_rss_kib = max_rss_kib.max(ru.ru_maxrss);
        }
        res.wall_ns = start.elapsed().as_nanos() as u64;
        res.cpu_ns = self.cpu_since(cpu0, &ru0);
        let peak1 = self.cg.peak();
        // The cgroup's peak only says something about this phase if it rose during it; else
        // the largest process of the phase is the best measure there is.
        res.peak_bytes = if peak1 > peak0 {
            peak1
        } else {
            max_rss_kib.max(0) as u64 * 1024
        };
        res.oom = self.cg.oom_kills() > oom0;
        match exited {
            Some(st) if libc::WIFEXITED(st) => {
                let code = libc::WEXITSTATUS(st);
                if code == EXEC_FAILED_CODE {
                    if let Some(e) = prog.exec_error() {
                        res.error = Some(e);
                        return res;
                    }
                }
                res.exit_code = Some(code);
            }
            Some(st) if libc::WIFSIGNALED(st) => res.signal = Some(libc::WTERMSIG(st)),
            _ => {}
        }
        res
    }

    /// CPU time used by the container since `cpu0` (cgroup), or by reaped children when the
    /// cgroup cannot be read.
    fn cpu_since(&self, cpu0: Option<u64>, ru0: &libc::rusage) -> u64 {
        if let (Some(a), Some(b)) = (cpu0, self.cg.cpu_ns()) {
            return b.saturating_sub(a);
        }
        // SAFETY: getrusage into a zeroed struct.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
            ru
        };
        let ns = |r: &libc::rusage| {
            let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
            t(r.ru_utime) + t(r.ru_stime)
        };
        ns(&ru).saturating_sub(ns(ru0))
    }
}

fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Kills every process of the container but this one (the runner is its pid namespace's init).
fn kill_all() {
    // SAFETY: kill with integer arguments.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

/// Writes a job file below the work dir (a fresh tmpfs: nothing there can be a symlink yet).
/// Read-only files lose their write bits once written (the owner is the program's uid, as
/// every file here: it could chmod one back, in its own container only).
fn write_file(rel: &str, content: &[u8], executable: bool, readonly: bool) -> io::Result<()> {
    let path = Path::new(WORK).join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mode = match (executable, readonly) {
        (true, false) => 0o755,
        (false, false) => 0o644,
        (true, true) => 0o555,
        (false, true) => 0o444,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(&path)?;
    f.write_all(content)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// The exit code the child uses when exec failed (the error itself goes through a pipe).
const EXEC_FAILED_CODE: i32 = 127;

/// A phase's program, with everything the child needs prepared before the fork.
struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    rlimits: Vec<[u64; 2]>,
    argv0: String,
    err_r: Option<OwnedFd>,
    stderr_to_stdout: bool,
}

struct Spawned {
    pid: libc::pid_t,
    stdin: OwnedFd,
    stdout: OwnedFd,
    /// None when the program's stderr is its stdout.
    stderr: Option<OwnedFd>,
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| "arguments and environment may not contain NUL bytes".to_string())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Program {
    fn prepare(phase: &JobPhase) -> Result<Program, String> {
        let argv0 = phase.argv.first().ok_or("empty command")?.clone();
        let path_var = phase
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(crate::spec::SANDBOX_PATH);
        // Names are looked up in PATH; anything with a slash is used as given (relative to
        // the work dir).
        let path = if argv0.contains('/') {
            argv0.clone()
        } else {
            path_var
                .split(':')
                .map(|d| format!("{d}/{argv0}"))
                .find(|p| {
                    fs::metadata(p)
                        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                        .unwrap_or(false)
                })
                .unwrap_or_else(|| format!("/usr/bin/{argv0}"))
        };
        Ok(Program {
            path: cstring(&path)?,
            argv: phase
                .argv
                .iter()
                .map(|a| cstring(a))
                .collect::<Result<_, _>>()?,
            envp: phase
                .env
                .iter()
                .map(|(k, v)| cstring(&format!("{k}={v}")))
                .collect::<Result<_, _>>()?,
            rlimits: phase.rlimits.clone(),
            argv0,
            err_r: None,
            stderr_to_stdout: phase.stderr_to_stdout,
        })
    }

    /// Forks and execs the program with its stdio on fresh pipes (parent ends non-blocking).
    fn spawn(&mut self) -> Result<Spawned, String> {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        // With stderr_to_stdout, fd 2 is a copy of the stdout pipe: one pipe, written in order.
        let (err_r, err_w) = if self.stderr_to_stdout {
            (None, None)
        } else {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        };
        let (x_r, x_w) = pipe()?;
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .envp
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // The container's own hard limits (HostConfig ulimits) cannot be raised without
        // privileges: a value above one is lowered to it, never left at the inherited soft one.
        let limits: Vec<(u32, libc::rlimit)> = self
            .rlimits
            .iter()
            .map(|&[res, v]| {
                let mut hard = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: libc::RLIM_INFINITY,
                };
                // SAFETY: getrlimit into a local struct.
                unsafe { libc::getrlimit(res as _, &mut hard) };
                let v = v.min(hard.rlim_max);
                (
                    res as u32,
                    libc::rlimit {
                        rlim_cur: v,
                        rlim_max: v,
                    },
                )
            })
            .collect();
        let (fd_in, fd_out, fd_err, fd_x) = (
            in_r.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_ref().map_or(out_w.as_raw_fd(), |w| w.as_raw_fd()),
            x_w.as_raw_fd(),
        );
        let path = self.path.as_ptr();
        // SAFETY: the runner is single-threaded, so the child is a full copy with no lock held
        // by another thread; it only makes async-signal-safe calls on data prepared above.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: in the child: raw syscalls on valid fds and prepared C strings, ending
            // in execve or _exit.
            unsafe {
                // A session of its own, without a terminal: no way to one (TIOCSTI and co).
                libc::setsid();
                libc::dup2(fd_in, 0);
                libc::dup2(fd_out, 1);
                libc::dup2(fd_err, 2);
                for (res, l) in &limits {
                    libc::setrlimit(*res as _, l);
                }
                // The Rust runtime ignores SIGPIPE; a program must get the default back.
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::chdir(c"/tmp".as_ptr());
                libc::execve(path, argv.as_ptr(), envp.as_ptr());
                let e: i32 = *libc::__errno_location();
                libc::write(fd_x, (&e as *const i32).cast(), 4);
                libc::_exit(EXEC_FAILED_CODE);
            }
        }
        drop((in_r, out_w, err_w, x_w));
        let parent_ends = [Some(in_w.as_raw_fd()), Some(out_r.as_raw_fd())];
        for fd in parent_ends
            .into_iter()
            .chain([err_r.as_ref().map(|r| r.as_raw_fd())])
            .flatten()
        {
            // SAFETY: fcntl on fds we own.
            unsafe {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
        }
        self.err_r = Some(x_r);
        Ok(Spawned {
            pid,
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        })
    }

    /// Why exec failed, once the child is gone (nothing to read when exec succeeded).
    fn exec_error(&self) -> Option<String> {
        let fd = self.err_r.as_ref()?.as_raw_fd();
        let mut e: i32 = 0;
        // SAFETY: reading 4 bytes into a local i32.
        let n = unsafe { libc::read(fd, (&mut e as *mut i32).cast(), 4) };
        (n == 4).then(|| {
            format!(
                "cannot start `{}`: {}",
                self.argv0,
                io::Error::from_raw_os_error(e)
            )
        })
    }
}
