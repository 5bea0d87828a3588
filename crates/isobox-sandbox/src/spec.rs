//! What a backend is asked to do (`ExecSpec`) and what it reports back (`ExecReport`).
//!
//! Both backends, `native` and `docker`, take the same spec and give the same report, so
//! everything above this crate is backend-agnostic.

use serde::Serialize;
use std::time::Duration;

/// Resource limits for one phase (compile or run) of an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock limit, enforced by the supervisor.
    pub wall: Duration,
    /// CPU-time limit summed over every thread and process, read from the cgroup.
    pub cpu: Duration,
    /// Memory limit (cgroup), swap is always 0.
    pub memory_bytes: u64,
    /// Tasks (processes and threads) limit (cgroup pids controller); the sandbox init counts.
    pub max_processes: u32,
    /// CPU bandwidth in thousandths of a CPU (1000 = one full core).
    pub cpu_millis: u32,
    /// Cap on each of stdout and stderr.
    pub max_output_bytes: u64,
    /// RLIMIT_FSIZE: the largest file the program may write.
    pub max_file_bytes: u64,
    /// RLIMIT_NOFILE.
    pub max_open_files: u64,
    /// RLIMIT_STACK.
    pub stack_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(5),
            cpu: Duration::from_secs(5),
            memory_bytes: 256 << 20,
            max_processes: 64,
            cpu_millis: 1000,
            max_output_bytes: 64 << 10,
            max_file_bytes: 16 << 20,
            max_open_files: 256,
            stack_bytes: 8 << 20,
        }
    }
}

/// A file placed in the sandbox's work directory before the first phase.
#[derive(Debug, Clone)]
pub struct SandboxFile {
    /// Relative path inside the work directory (validated: no `..`, no absolute path).
    pub path: String,
    pub content: Vec<u8>,
    pub executable: bool,
    /// Written without write permission (0444, or 0555 when executable): a compiled artifact
    /// from the compile cache, which the program should not change by accident. Every sandbox
    /// gets its own copy, so a program that makes it writable again changes only its own run.
    pub readonly: bool,
}

/// One program started inside the sandbox. Phases run one after the other in the same sandbox
/// (same work directory), each with its own limits and its own output pipes.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    /// argv; `argv[0]` is a command name looked up in the sandbox's PATH, or an absolute path.
    pub argv: Vec<String>,
    /// Extra environment on top of the clean base (PATH, HOME, LANG, TMPDIR).
    pub env: Vec<(String, String)>,
    /// Written to the program's stdin, which is then closed.
    pub stdin: Vec<u8>,
    pub limits: Limits,
    /// When false (the default for compile steps), a phase that does not end `ok` stops the run.
    pub continue_on_failure: bool,
    /// The program's stderr is its stdout (one pipe, so the two interleave as written); the
    /// phase's `stderr` stays empty.
    pub stderr_to_stdout: bool,
}

/// Everything a backend needs for one execution.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub files: Vec<SandboxFile>,
    pub phases: Vec<Phase>,
    /// Size cap of the writable work tmpfs (`/tmp`, also the work dir and HOME).
    pub tmpfs_bytes: u64,
    /// Inode cap of the work tmpfs.
    pub tmpfs_inodes: u64,
    /// Files to take out of the work dir after the last phase (compiled artifacts, result
    /// files), reported in [`ExecReport::collected`].
    pub collect: Option<Collect>,
}

/// Which files of the work dir to take out after the last phase, and how much at most.
///
/// Patterns are relative to the work dir: `*` and `?` match within one path component, `**` as a
/// whole component matches any number of components (`**` alone: every file). A component that
/// starts with `.` is matched only by a pattern component that starts with `.` too, so `**`
/// skips hidden files and directories (a compiler's cache under `.cache`, say).
///
/// Taken only as regular files, opened relative to directory descriptors without following
/// any symlink (a symlink, fifo, socket or device that matches is skipped and reported, never
/// opened; a directory that matches is reported, not descended into unless a pattern goes
/// deeper); at most `max_files` files and `max_bytes` bytes in all, the rest reported as
/// skipped. A sandboxed program cannot make the collector read anything outside its work dir.
#[derive(Debug, Clone, PartialEq)]
pub struct Collect {
    pub patterns: Vec<String>,
    pub max_files: usize,
    pub max_bytes: u64,
}

/// A regular file taken out of the work dir.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedFile {
    /// Relative to the work dir.
    pub path: String,
    pub content: Vec<u8>,
    /// Any execute bit was set.
    pub executable: bool,
}

/// A matching entry that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Symlink,
    /// A fifo, socket, device or directory.
    NotRegular,
    /// Taking it would pass `max_files`.
    TooManyFiles,
    /// Taking it would pass `max_bytes`.
    TooLarge,
}

/// What [`ExecSpec::collect`] took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    /// Sorted by path.
    pub files: Vec<CollectedFile>,
    pub skipped: Vec<Skipped>,
}

/// Checks the work-dir files of a spec: each a relative path of plain components (no `..`, no
/// absolute path, no empty component), no two the same, and none inside another one (`x` and
/// `x/y` cannot both be files). Every backend calls this; so does the core, for a clear 400.
pub fn check_files(files: &[SandboxFile]) -> Result<(), crate::SandboxError> {
    let bad = |msg: String| Err(crate::SandboxError::InvalidSpec(msg));
    for f in files {
        let p = &f.path;
        let plain = p.len() <= 255
            && !p.contains('\0')
            && !p.starts_with('/')
            && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !plain {
            return bad(format!(
                "file name `{}` must be a relative path without `..`",
                p.escape_debug()
            ));
        }
    }
    for (i, a) in files.iter().enumerate() {
        for b in &files[i + 1..] {
            let (a, b) = (&a.path, &b.path);
            if a == b {
                return bad(format!("file `{a}` is given twice"));
            }
            let inside = |x: &str, y: &str| {
                y.len() > x.len() && y.starts_with(x) && y.as_bytes()[x.len()] == b'/'
            };
            if inside(a, b) || inside(b, a) {
                return bad(format!("`{a}` and `{b}` cannot both be files"));
            }
        }
    }
    Ok(())
}

impl ExecSpec {
    /// One program, no files, a 16 MiB / 1024-inode work dir: probes, version checks, benches.
    pub fn single(argv: Vec<String>, env: Vec<(String, String)>, limits: Limits) -> ExecSpec {
        ExecSpec {
            files: vec![],
            phases: vec![Phase {
                name: "run".into(),
                argv,
                env,
                stdin: vec![],
                limits,
                continue_on_failure: false,
                stderr_to_stdout: false,
            }],
            tmpfs_bytes: 16 << 20,
            tmpfs_inodes: 1024,
            collect: None,
        }
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// More stdin for a running program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinPoll {
    /// These bytes, now.
    Data(Vec<u8>),
    /// Nothing yet; ask again.
    Pending,
    /// No more: close the program's stdin.
    Closed,
}

/// Live I/O of a run: output as it is produced (already cut at the caps), stdin while it
/// runs, and cancellation (the client went away, a deadline passed). Called from the thread
/// running `execute_io`; the methods must not block.
pub trait RunIo: Send {
    fn output(&mut self, _phase: usize, _stream: Stream, _chunk: &[u8]) {}
    /// Stdin beyond `Phase::stdin`, for interactive runs.
    fn stdin(&mut self, _phase: usize) -> StdinPoll {
        StdinPoll::Closed
    }
    /// True once the run should be killed (within one supervisor tick, 10 ms).
    fn cancelled(&mut self) -> bool {
        false
    }
}

/// No live I/O: the whole result at the end.
pub struct NoIo;

impl RunIo for NoIo {}

/// How a phase ended. Its snake_case names ([`Status::as_str`], also what serde writes) are
/// the public statuses the API reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    RuntimeError,
    Signal,
    Timeout,
    MemoryLimit,
    OutputLimit,
    InternalError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::RuntimeError => "runtime_error",
            Status::Signal => "signal",
            Status::Timeout => "timeout",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::InternalError => "internal_error",
        }
    }
}

/// Which limit the supervisor enforced by killing the sandbox, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    WallTime,
    CpuTime,
    Memory,
    Output,
}

/// The measured outcome of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub limit_hit: Option<LimitHit>,
    #[serde(skip)]
    pub stdout: Vec<u8>,
    #[serde(skip)]
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub cpu_time: Duration,
    pub wall_time: Duration,
    pub memory_peak_bytes: u64,
    /// Set when the sandbox itself failed during this phase (status `internal_error`).
    pub internal_error: Option<String>,
}

/// The outcome of an execution: one report per phase that was started.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    pub phases: Vec<PhaseReport>,
    /// Time from the start of `execute` until the sandbox was ready to start the first program
    /// (cgroup, clone, mounts): the sandbox's own overhead before any runtime starts.
    pub setup_time: Duration,
    /// Whole `execute` call including teardown.
    pub total_time: Duration,
    /// The sandbox was pre-built (warm pool) rather than built for this run.
    pub warm: bool,
    /// The files [`ExecSpec::collect`] asked for (`None` when it asked for none, or the run
    /// never got that far).
    #[serde(skip)]
    pub collected: Option<Collected>,
}

/// The `PATH` of every program in a sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program's environment: the clean base (PATH, HOME, TMPDIR, LANG, USER) with the phase's
/// own variables on top.
pub fn program_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), SANDBOX_PATH.into()),
        ("HOME".into(), "/tmp".into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("USER".into(), "sandbox".into()),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// `RLIMIT_NPROC` above the phase's process limit: the docker runner shares the program's uid,
/// and a previous phase's processes may still be being reaped. The pids cgroup is the limit;
/// this is a backstop that keeps the server's own value away.
pub const NPROC_SLACK: u64 = 4;
/// `RLIMIT_SIGPENDING`: signals queued to the run's uid at once.
pub const SIGPENDING: u64 = 1024;
/// `RLIMIT_MSGQUEUE`: bytes of POSIX message queues of the run's uid (three queues of the
/// default size; the kernel's default is 800 KiB).
pub const MSGQUEUE_BYTES: u64 = 256 << 10;
/// `RLIMIT_LOCKS` (not enforced by current kernels; pinned all the same).
pub const LOCKS: u64 = 1024;
/// `RLIMIT_MEMLOCK`: locked memory.
pub const MEMLOCK_BYTES: u64 = 64 << 10;

/// Every rlimit (resource, soft = hard) a program starts with: all sixteen of Linux, so none
/// is inherited from the server (or, on docker, the engine). Memory is the cgroup's job, so
/// data, address space and resident set are unlimited; CPU time is a backstop above the limit
/// the supervisor enforces; no core files, no real-time priority, no raised nice value.
/// Both backends set these between fork and exec, lowered to the hard limit the sandbox has
/// when it cannot raise one (a server without CAP_SYS_RESOURCE): never above these values.
pub fn rlimits(l: &Limits) -> Vec<[u64; 2]> {
    let cpu_secs = l.cpu.as_secs() + 2; // backstop only; the supervisor enforces the real limit
    let inf = libc::RLIM_INFINITY;
    vec![
        [libc::RLIMIT_CPU as u64, cpu_secs],
        [libc::RLIMIT_FSIZE as u64, l.max_file_bytes],
        [libc::RLIMIT_DATA as u64, inf],
        [libc::RLIMIT_STACK as u64, l.stack_bytes],
        [libc::RLIMIT_CORE as u64, 0],
        [libc::RLIMIT_RSS as u64, inf],
        [
            libc::RLIMIT_NPROC as u64,
            u64::from(l.max_processes) + NPROC_SLACK,
        ],
        [libc::RLIMIT_NOFILE as u64, l.max_open_files],
        [libc::RLIMIT_MEMLOCK as u64, MEMLOCK_BYTES],
        [libc::RLIMIT_AS as u64, inf],
        [libc::RLIMIT_LOCKS as u64, LOCKS],
        [libc::RLIMIT_SIGPENDING as u64, SIGPENDING],
        [libc::RLIMIT_MSGQUEUE as u64, MSGQUEUE_BYTES],
        [libc::RLIMIT_NICE as u64, 0],
        [libc::RLIMIT_RTPRIO as u64, 0],
        [libc::RLIMIT_RTTIME as u64, cpu_secs * 1_000_000],
    ]
}

/// How a phase ended, from what the supervisor saw: the limit it enforced, whether the sandbox
/// itself failed, whether the OOM killer struck, and the program's wait status. Both backends
/// decide with this one function.
pub fn classify(
    limit_hit: Option<LimitHit>,
    failed: bool,
    oom: bool,
    exit_code: Option<i32>,
    signal: Option<i32>,
) -> (Status, Option<LimitHit>) {
    if let Some(hit) = limit_hit {
        let s = match hit {
            LimitHit::WallTime | LimitHit::CpuTime => Status::Timeout,
            LimitHit::Memory => Status::MemoryLimit,
            LimitHit::Output => Status::OutputLimit,
        };
        (s, Some(hit))
    } else if failed {
        (Status::InternalError, None)
    } else if oom && (signal == Some(libc::SIGKILL) || exit_code != Some(0)) {
        (Status::MemoryLimit, Some(LimitHit::Memory))
    } else if signal == Some(libc::SIGXCPU) {
        (Status::Timeout, Some(LimitHit::CpuTime))
    } else if signal.is_some() {
        (Status::Signal, None)
    } else if exit_code == Some(0) {
        (Status::Ok, None)
    } else {
        (Status::RuntimeError, None)
    }
}

/// The report of a phase that could not start because of a limit (e.g. memory already in use).
pub fn not_started(phase: &Phase, status: Status) -> PhaseReport {
    PhaseReport {
        name: phase.name.clone(),
        status,
        exit_code: None,
        signal: None,
        limit_hit: (status == Status::MemoryLimit).then_some(LimitHit::Memory),
        stdout: Vec::new(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        cpu_time: Duration::ZERO,
        wall_time: Duration::ZERO,
        memory_peak_bytes: 0,
        internal_error: None,
    }
}

/// Name of a signal, e.g. `SIGSEGV`.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("SIG{sig}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<SandboxFile> {
        names
            .iter()
            .map(|n| SandboxFile {
                path: n.to_string(),
                content: vec![],
                executable: false,
                readonly: false,
            })
            .collect()
    }

    #[test]
    fn files_must_be_plain_distinct_and_not_nested() {
        assert!(check_files(&files(&["main.py", "lib/util.py", "lib/more.py", "libx"])).is_ok());
        for bad in [
            &["../x"][..],
            &["/etc/passwd"],
            &["a/./b"],
            &["a//b"],
            &["a/"],
            &[""],
            &["main.py", "main.py"],
            &["x", "x/y"],
            &["x/y/z", "x/y"],
        ] {
            assert!(check_files(&files(bad)).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod rlimit_tests {
    use super::*;

    #[test]
    fn every_rlimit_is_pinned() {
        let l = Limits::default();
        let r = rlimits(&l);
        let mut res: Vec<u64> = r.iter().map(|[res, _]| *res).collect();
        res.sort_unstable();
        res.dedup();
        // Linux has 16 (RLIMIT_CPU = 0 .. RLIMIT_RTTIME = 15).
        assert_eq!(res, (0..16u64).collect::<Vec<_>>());
        assert_eq!(libc::RLIMIT_RTTIME, 15);
        let get =
            |res: libc::__rlimit_resource_t| r.iter().find(|[x, _]| *x == res as u64).unwrap()[1];
        assert_eq!(get(libc::RLIMIT_CORE), 0);
        assert_eq!(get(libc::RLIMIT_RTPRIO), 0);
        assert_eq!(get(libc::RLIMIT_NICE), 0);
        assert_eq!(
            get(libc::RLIMIT_NPROC),
            u64::from(l.max_processes) + NPROC_SLACK
        );
    }
}
