//! Soak: 500 mixed runs through the shared executor from 2 threads (hello worlds and hostile
//! programs in a fixed rotation), each asserted to end with its expected status; then checks that
//! this test process holds nothing more than before.
//!
//! Other test processes run native sandboxes at the same time (nextest runs each test in its own
//! process), so nothing here is checked globally (that is `leak_check`'s job, run alone at the
//! end). Only what this process can be held to:
//! - processes: descendants of this process (a sandbox's init is our child; everything in the
//!   sandbox descends from it, orphans are reparented to it): none left;
//! - cgroups: the run groups named `run-<our pid>-<n>` (cgroup.rs names them so): none left;
//! - uid slots: lock files of `/run/isobox/uids` locked by our pid (`/proc/locks`): none;
//! - this process's open fds and threads: not more than before;
//! - mounts: no new line of `/proc/self/mountinfo` that names isobox (lines of other origin, e.g.
//!   the docker engine's overlays for concurrent docker tests, are listed but not held against us);
//! - temp dirs: this process runs with a private `TMPDIR` that must stay empty, and no new
//!   `isobox*` entry carrying our pid appears in the system temp dir.
//!
//! A watcher thread samples the same probes during the soak and must see sandboxes (processes,
//! cgroups, uid locks): the probes are not blind.
use crate::common::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use isobox_core::{ExecuteRequest, ExecutionResult, RequestLimits};
use isobox_sandbox::cgroup::Layout;

const RUNS: usize = 500;
const THREADS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    PyHello,
    BashHello,
    CHello,
    JavaHello,
    GoHello,
    /// `setsid sleep 1000 &`: a daemon that outlives the main program.
    Daemon,
    /// `:(){ :|:& };:` under a pids limit of 8, main alive until the wall limit.
    ForkBomb,
    /// Python allocating (and touching) 1 MiB at a time past a 48 MiB limit.
    MemoryBomb,
    /// `yes | head -c 10M` against a 4 KiB output cap.
    OutputFlood,
    /// `sleep 100` against a 300 ms wall limit.
    Sleep,
    /// A busy loop against a 200 ms CPU limit (20 s wall).
    CpuSpin,
    /// The main shell stops itself (`kill -STOP $$`); 300 ms wall limit.
    Stopped,
    /// 8 MiB files into `/tmp` until the 64 MiB work tmpfs is full.
    DiskFill,
    /// `open` until the 256-fd rlimit.
    ManyFds,
}

use Kind::*;

/// One cycle: 5 python, 5 bash, 1 C, 9 hostile.
const ROTATION: [Kind; 20] = [
    PyHello,
    BashHello,
    Daemon,
    PyHello,
    ForkBomb,
    BashHello,
    MemoryBomb,
    PyHello,
    OutputFlood,
    BashHello,
    Sleep,
    PyHello,
    CpuSpin,
    BashHello,
    DiskFill,
    PyHello,
    ManyFds,
    Stopped,
    CHello,
    BashHello,
];

/// Run `i` of the soak: the rotation, with two Java and two Go runs (~0.7 s and ~0.3 s each,
/// mostly the compiler) in place of four of its slots.
fn kind_of(i: usize) -> Kind {
    match i {
        100 | 350 => JavaHello,
        225 | 475 => GoHello,
        _ => ROTATION[i % ROTATION.len()],
    }
}

fn lim(timeout_ms: u64, cpu_ms: u64, memory_mb: u64) -> RequestLimits {
    RequestLimits {
        timeout_ms: Some(timeout_ms),
        cpu_time_ms: Some(cpu_ms),
        memory_mb: Some(memory_mb),
        ..Default::default()
    }
}

fn request(kind: Kind) -> ExecuteRequest {
    let (language, code, limits) = match kind {
        PyHello => ("python", "print('hello', 6 * 7)\n", None),
        BashHello => ("bash", "echo hello $((6 * 7))\n", None),
        CHello => (
            "c",
            "#include <stdio.h>\nint main(void) { printf(\"hello %d\\n\", 6 * 7); return 0; }\n",
            None,
        ),
        JavaHello => (
            "java",
            "public class Main {\n    public static void main(String[] a) {\n        \
             System.out.println(\"hello \" + 6 * 7);\n    }\n}\n",
            None,
        ),
        GoHello => (
            "go",
            "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\", 6*7) }\n",
            None,
        ),
        Daemon => (
            "bash",
            "setsid sleep 1000 &\necho started\n",
            Some(lim(4000, 4000, 64)),
        ),
        ForkBomb => {
            let mut l = lim(300, 300, 64);
            l.max_processes = Some(8);
            ("bash", ":(){ :|:& };:\nsleep 10\n", Some(l))
        }
        MemoryBomb => (
            "python",
            "b = []\nwhile True:\n    b.append(b'x' * (1 << 20))\n",
            Some(lim(5000, 5000, 48)),
        ),
        OutputFlood => {
            let mut l = lim(5000, 5000, 64);
            l.max_output_bytes = Some(4096);
            ("bash", "yes | head -c 10M\n", Some(l))
        }
        Sleep => ("bash", "sleep 100\n", Some(lim(300, 300, 64))),
        // A wall limit far above the CPU one: the run must end by the CPU limit, long before.
        CpuSpin => ("bash", "while :; do :; done\n", Some(lim(20_000, 200, 64))),
        Stopped => (
            "bash",
            "echo stopping\nkill -STOP $$\n",
            Some(lim(300, 300, 64)),
        ),
        DiskFill => (
            "python",
            "import errno\nbuf = b'd' * (1 << 20)\nn = 0\ntry:\n    while True:\n        \
             with open(f'/tmp/fill{n}', 'wb') as f:\n            \
             for _ in range(8):\n                f.write(buf)\n        n += 1\n\
             except OSError as e:\n    print(errno.errorcode[e.errno], n >= 4)\n",
            // tmpfs pages are charged to the run's memory cgroup.
            Some(lim(5000, 5000, 160)),
        ),
        ManyFds => (
            "python",
            "import errno, os\nfds = []\ntry:\n    while True:\n        \
             fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError as e:\n    \
             print(errno.errorcode[e.errno], len(fds) > 200)\n",
            None,
        ),
    };
    ExecuteRequest {
        language: language.into(),
        code: Some(code.into()),
        limits,
        ..Default::default()
    }
}

/// Whether `r` is what `kind` must end with.
fn check(kind: Kind, r: &ExecutionResult) -> Result<(), String> {
    let want = |status: &str, stdout: Option<&str>| -> Result<(), String> {
        if r.status != status {
            return Err(format!("status {} (want {status})", r.status));
        }
        if let Some(s) = stdout {
            if r.stdout != s {
                return Err(format!("stdout {:?} (want {s:?})", r.stdout));
            }
        }
        Ok(())
    };
    match kind {
        PyHello | BashHello | CHello | JavaHello | GoHello => want("ok", Some("hello 42\n")),
        Daemon => {
            want("ok", Some("started\n"))?;
            if r.wall_time_ms >= 2000 {
                return Err(format!("waited for the daemon: {} ms", r.wall_time_ms));
            }
            Ok(())
        }
        ForkBomb | Sleep => want("timeout", None),
        Stopped => want("timeout", Some("stopping\n")),
        MemoryBomb => want("memory_limit", None),
        OutputFlood => {
            want("output_limit", None)?;
            if !r.stdout_truncated || r.stdout.len() != 4096 {
                return Err(format!(
                    "{} bytes kept, truncated={} (want 4096, true)",
                    r.stdout.len(),
                    r.stdout_truncated
                ));
            }
            Ok(())
        }
        CpuSpin => {
            want("timeout", None)?;
            if r.wall_time_ms >= 10_000 {
                return Err(format!(
                    "the CPU limit did not fire: wall {} ms",
                    r.wall_time_ms
                ));
            }
            Ok(())
        }
        DiskFill => want("ok", Some("ENOSPC True\n")),
        ManyFds => want("ok", Some("EMFILE True\n")),
    }
}

// ---------------------------------------------------------------------------------------------
// Probes of what this process holds.
// ---------------------------------------------------------------------------------------------

/// `pid -> ppid` of every process on the host.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// Every descendant of this process, as `pid uid=<real uid> <cmdline or [comm]>`.
fn descendants() -> Vec<String> {
    let me = std::process::id();
    let map = parents();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in &map {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![me];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            todo.push(c);
            let dir = PathBuf::from(format!("/proc/{c}"));
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                    .unwrap_or_default()
            };
            let cmd = std::fs::read(dir.join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push(format!(
                "{c} uid={} state={} {}",
                field("Uid:"),
                field("State:"),
                if cmd.trim().is_empty() {
                    format!("[{}]", field("Name:"))
                } else {
                    cmd
                }
            ));
        }
    }
    out.sort();
    out
}

/// The uid lock files (`<state_dir>/uids/<uid>`) that a flock of `pid` holds, from
/// `/proc/locks`; `None` if the directory is not there (another layout: nothing to check).
fn uid_locks_of(pid: u32) -> Option<Vec<String>> {
    let dir = isobox_sandbox::NativeConfig::default()
        .state_dir
        .join("uids");
    let rd = std::fs::read_dir(&dir).ok()?;
    // `/proc/locks` names a file as `MAJ:MIN:INODE`, the device numbers in hex.
    let mut by_id: HashMap<String, String> = HashMap::new();
    for e in rd.flatten() {
        if let Ok(m) = e.metadata() {
            let (maj, min) = (libc::major(m.dev()), libc::minor(m.dev()));
            by_id.insert(
                format!("{maj:02x}:{min:02x}:{}", m.ino()),
                e.file_name().to_string_lossy().into_owned(),
            );
        }
    }
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut held = Vec::new();
    for line in locks.lines() {
        // `1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF` (waiters have `->` after the number).
        let f: Vec<&str> = line.split_whitespace().filter(|w| *w != "->").collect();
        if f.len() < 6 || f[1] != "FLOCK" || f[4] != pid.to_string() {
            continue;
        }
        if let Some(name) = by_id.get(f[5]) {
            held.push(name.clone());
        }
    }
    held.sort();
    Some(held)
}

/// This process's open fds, `fd -> target` (without the one listing them).
fn open_fds() -> BTreeMap<u32, String> {
    let listing = format!("/proc/{}/fd", std::process::id());
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Some(fd) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into());
            if target != listing {
                out.insert(fd, target);
            }
        }
    }
    out
}

fn threads() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: in /proc/self/status")
}

/// Reads a mountinfo file, retrying: a read can fail with EINVAL while another process of the
/// namespace mounts or unmounts (seen with the docker engine's churn).
fn read_mountinfo(path: &str) -> String {
    let mut tries = 0;
    loop {
        match std::fs::read_to_string(path) {
            Ok(s) => return s,
            Err(e) if tries < 50 => {
                tries += 1;
                if tries == 1 {
                    println!("reading {path}: {e}; retrying");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot read {path}: {e}"),
        }
    }
}

fn mountinfo() -> BTreeSet<String> {
    // Without the mount ids (first two fields), which are never reused in one boot anyway.
    read_mountinfo("/proc/self/mountinfo")
        .lines()
        .map(|l| l.splitn(3, ' ').nth(2).unwrap_or(l).to_string())
        .collect()
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Everything this process holds, at one moment.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    fds: BTreeMap<u32, String>,
    threads: u32,
    procs: Vec<String>,
    cgroups: Vec<PathBuf>,
    uid_locks: Option<Vec<String>>,
    mounts: BTreeSet<String>,
    private_tmp: BTreeSet<String>,
    /// `isobox*` entries of the system temp dir that carry our pid (as one `-`-separated part).
    isobox_tmp: BTreeSet<String>,
}

struct Probe {
    layout: Layout,
    system_tmp: PathBuf,
    private_tmp: PathBuf,
}

impl Probe {
    fn snapshot(&self) -> Snapshot {
        let pid = std::process::id();
        let me = pid.to_string();
        let private = self
            .private_tmp
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        Snapshot {
            fds: open_fds(),
            threads: threads(),
            procs: descendants(),
            cgroups: our_run_cgroups(&self.layout),
            uid_locks: uid_locks_of(pid),
            mounts: mountinfo(),
            private_tmp: entries(&self.private_tmp),
            isobox_tmp: entries(&self.system_tmp)
                .into_iter()
                .filter(|n| n.starts_with("isobox") && n.split('-').any(|t| t == me))
                .filter(|n| Some(n) != private.as_ref())
                .collect(),
        }
    }
}

/// What `after` holds that `before` did not (empty: nothing leaked).
fn leaks(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    if after.fds.len() > before.fds.len() {
        let new: Vec<_> = after
            .fds
            .iter()
            .filter(|(fd, t)| before.fds.get(fd) != Some(t))
            .collect();
        out.push(format!(
            "open fds: {} before, {} after; new: {new:?}",
            before.fds.len(),
            after.fds.len()
        ));
    }
    if after.threads > before.threads {
        out.push(format!(
            "threads: {} before, {} after",
            before.threads, after.threads
        ));
    }
    if !after.procs.is_empty() {
        out.push(format!("processes left under this one: {:?}", after.procs));
    }
    if !after.cgroups.is_empty() {
        out.push(format!("cgroups of this process left: {:?}", after.cgroups));
    }
    if let Some(held) = &after.uid_locks {
        if !held.is_empty() {
            out.push(format!("uid slots still locked by this process: {held:?}"));
        }
    }
    let ours: Vec<_> = after
        .mounts
        .difference(&before.mounts)
        .filter(|l| l.contains("isobox"))
        .collect();
    if !ours.is_empty() {
        out.push(format!("new isobox mounts in this namespace: {ours:?}"));
    }
    if !after.private_tmp.is_empty() {
        out.push(format!(
            "files in the private TMPDIR: {:?}",
            after.private_tmp
        ));
    }
    let tmp: Vec<_> = after.isobox_tmp.difference(&before.isobox_tmp).collect();
    if !tmp.is_empty() {
        out.push(format!("new temp dirs of this process: {tmp:?}"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The soak.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    runs: usize,
    total: Duration,
    slowest: Duration,
}

/// Runs `indices` from `THREADS` threads (each takes the next index); returns the failures and
/// a per-kind tally.
fn soak(indices: std::ops::Range<usize>) -> (Vec<String>, BTreeMap<Kind, Tally>) {
    let next = AtomicUsize::new(indices.start);
    let failures = Mutex::new(Vec::new());
    let tally: Mutex<BTreeMap<Kind, Tally>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= indices.end {
                    return;
                }
                let kind = kind_of(i);
                let t = Instant::now();
                let outcome = executor()
                    .execute(&request(kind))
                    .map_err(|e| format!("execute failed: {e}"))
                    .and_then(|r| check(kind, &r).map_err(|e| format!("{e}: {r:?}")));
                let took = t.elapsed();
                if let Err(e) = outcome {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("run {i} ({kind:?}): {e}"));
                }
                let mut tally = tally.lock().unwrap();
                let k = tally.entry(kind).or_default();
                k.runs += 1;
                k.total += took;
                k.slowest = k.slowest.max(took);
            });
        }
    });
    let mut f = failures.into_inner().unwrap();
    f.sort();
    (f, tally.into_inner().unwrap())
}

#[test]
fn soak_500_mixed_runs_leave_nothing_behind() {
    if on_docker() {
        println!("soak: native backend only (its probes are this process's own); skipped");
        return;
    }
    // A private TMPDIR, set before any other thread of this test exists: whatever the product
    // puts into the temp dir from this process lands there, where it is ours beyond doubt.
    let system_tmp = std::env::temp_dir();
    let private_tmp = system_tmp.join(format!("isobox-soak-{}", std::process::id()));
    std::fs::create_dir_all(&private_tmp).unwrap();
    std::env::set_var("TMPDIR", &private_tmp);
    // Removed however the test ends (what it held is in the assertion message by then).
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _private_tmp_guard = RemoveDir(private_tmp.clone());

    let probe = Probe {
        layout: Layout::detect("isobox").expect("cgroups"),
        system_tmp: system_tmp.clone(),
        private_tmp: private_tmp.clone(),
    };

    // Warm-up: one rotation, so that whatever is created once per process (the executor, its
    // backend, anything lazily initialised on the way) exists before the baseline; afterwards
    // the counts must match exactly, with no slack.
    let (warm_failures, _) = soak(0..ROTATION.len());
    assert!(warm_failures.is_empty(), "warm-up: {warm_failures:#?}");
    let before = settle(&probe, None);
    assert!(
        before.procs.is_empty() && before.cgroups.is_empty(),
        "the warm-up left sandboxes behind: {before:#?}"
    );

    // The soak, with a watcher that must see the sandboxes through the same probes.
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let ((failures, tally), seen) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let (mut procs, mut groups, mut locks, mut fds) = (0, 0, 0, 0);
            while !stop.load(Ordering::Relaxed) {
                procs = procs.max(descendants().len());
                groups = groups.max(our_run_cgroups(&probe.layout).len());
                locks = locks.max(uid_locks_of(std::process::id()).map_or(0, |l| l.len()));
                fds = fds.max(open_fds().len());
                std::thread::sleep(Duration::from_millis(10));
            }
            (procs, groups, locks, fds)
        });
        let out = soak(ROTATION.len()..ROTATION.len() + RUNS);
        stop.store(true, Ordering::Relaxed);
        (out, watcher.join().unwrap())
    });
    let elapsed = started.elapsed();

    let after = settle(&probe, Some(&before));
    std::env::set_var("TMPDIR", &system_tmp);

    println!(
        "soak: {RUNS} runs from {THREADS} threads in {:.1} s ({:.1} runs/s)",
        elapsed.as_secs_f64(),
        RUNS as f64 / elapsed.as_secs_f64()
    );
    println!("| kind | runs | mean ms | slowest ms |\n|---|---:|---:|---:|");
    for (k, t) in &tally {
        println!(
            "| {k:?} | {} | {:.0} | {} |",
            t.runs,
            t.total.as_secs_f64() * 1000.0 / t.runs as f64,
            t.slowest.as_millis()
        );
    }
    println!(
        "during the soak (most at once): {} processes under this one, {} cgroup dirs, {} uid \
         locks, {} fds",
        seen.0, seen.1, seen.2, seen.3
    );
    println!(
        "before -> after: fds {} -> {}, threads {} -> {}, mountinfo lines {} -> {}",
        before.fds.len(),
        after.fds.len(),
        before.threads,
        after.threads,
        before.mounts.len(),
        after.mounts.len()
    );
    let foreign: Vec<_> = after
        .mounts
        .difference(&before.mounts)
        .filter(|l| !l.contains("isobox"))
        .collect();
    if !foreign.is_empty() {
        println!(
            "new mounts not of isobox (other processes of this namespace; not held against \
             this test): {foreign:?}"
        );
    }

    let mut problems = failures;
    problems.extend(leaks(&before, &after));
    // The probes must have seen the sandboxes while they lived, or "nothing left" means nothing.
    if seen.0 == 0 || seen.1 == 0 {
        problems.push(format!(
            "the watcher never saw a sandbox (processes {}, cgroups {}): blind probes",
            seen.0, seen.1
        ));
    }
    if before.uid_locks.is_some() && seen.2 == 0 {
        problems.push("the watcher never saw a uid lock of this process: blind probe".into());
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Waits (at most 5 s) until nothing more is held than `baseline` (or, without one, until two
/// snapshots 100 ms apart agree), and returns the last snapshot. The executor tears a sandbox
/// down before `execute` returns, so this is only for the kernel: a joined thread can still be
/// counted in `Threads:` for a moment (its tid is cleared before the task is released), and a
/// killed process can be a zombie for a moment.
fn settle(probe: &Probe, baseline: Option<&Snapshot>) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = probe.snapshot();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = probe.snapshot();
        let done = match baseline {
            Some(b) => leaks(b, &now).is_empty(),
            None => now == last,
        };
        if done || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}
