//! Growth check of a long-running server: a real `isobox serve` process (the release binary,
//! native backend, default warm pool and slots, dedup cache off so that every request runs a
//! sandbox, a rate limit nobody reaches) takes N mixed requests from a few concurrent clients:
//! python and bash hello worlds, a daemon left behind (`setsid sleep 1000 &`), a memory bomb and
//! a wall-clock timeout, each checked for its expected status. Every `ISOBOX_SOAK_EVERY` runs
//! the clients pause (their connections closed), the server is left to settle, and its figures
//! are sampled:
//!
//! - VmRSS and VmHWM, open fds and threads (`/proc/<pid>/status`, `/proc/<pid>/fd`);
//! - its run cgroups (`run-<server pid>-<n>`, see `cgroup.rs`: distinct groups, and directories
//!   over all hierarchies), the processes under it, the uid slots it has locked (`/proc/locks`):
//!   at rest these are the warm pool's sandboxes;
//! - the mounts of its namespace (`/proc/<pid>/mountinfo` lines; those naming isobox apart);
//! - temp entries: its own `TMPDIR` (a private directory) plus `isobox*` entries of the system
//!   temp dir that carry its pid.
//!
//! Only what can be attributed to this server is counted (other test processes may run
//! sandboxes on the host at the same time). The verdict: RSS stays within 2 MiB of the sample at
//! the first checkpoint (the allocator keeps freed memory in its arenas and thread caches and
//! grows them to the peak concurrency seen, so the first thousand runs warm it up; later
//! samples may move a little with fragmentation, not with the number of runs), everything else
//! equal to that sample.
//!
//! `cargo bench --bench soak` (as root). `ISOBOX_SOAK_RUNS` (default 10000) requests,
//! `ISOBOX_SOAK_EVERY` (default 1000) between samples, `ISOBOX_SOAK_CLIENTS` (default 3)
//! concurrent clients, `ISOBOX_SOAK_SETTLE_MS` (default 11000: longer than the 10 s tokio keeps
//! an idle blocking thread) of rest before each sample. Exits 1 when something grows.

mod common;
use common::env_num;

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// The requests.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    PyHello,
    BashHello,
    /// `setsid sleep 1000 &`: must die with the run.
    Daemon,
    /// Python touching 1 MiB at a time past a 48 MiB limit.
    MemoryBomb,
    /// `sleep 100` against a 300 ms wall limit.
    Timeout,
}

use Kind::*;

/// 8 python, 7 bash, 2 daemons, 2 memory bombs, 1 timeout.
const ROTATION: [Kind; 20] = [
    PyHello, BashHello, PyHello, Daemon, BashHello, PyHello, MemoryBomb, BashHello, PyHello,
    BashHello, PyHello, Daemon, BashHello, PyHello, MemoryBomb, BashHello, PyHello, BashHello,
    PyHello, Timeout,
];

fn body(kind: Kind) -> Value {
    let limits = |t: u64, m: u64| json!({"timeout_ms": t, "cpu_time_ms": t, "memory_mb": m});
    match kind {
        PyHello => json!({"language": "python", "code": "print('hello', 6 * 7)\n"}),
        BashHello => json!({"language": "bash", "code": "echo hello $((6 * 7))\n"}),
        Daemon => json!({
            "language": "bash",
            "code": "setsid sleep 1000 &\necho started\n",
            "limits": limits(4000, 64),
        }),
        MemoryBomb => json!({
            "language": "python",
            "code": "b = []\nwhile True:\n    b.append(b'x' * (1 << 20))\n",
            "limits": limits(5000, 48),
        }),
        Timeout => json!({"language": "bash", "code": "sleep 100\n", "limits": limits(300, 64)}),
    }
}

fn expected(kind: Kind) -> (&'static str, Option<&'static str>) {
    match kind {
        PyHello | BashHello => ("ok", Some("hello 42\n")),
        Daemon => ("ok", Some("started\n")),
        MemoryBomb => ("memory_limit", None),
        Timeout => ("timeout", None),
    }
}

// ---------------------------------------------------------------------------------------------
// The server.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Log {
    lines: u64,
    warnings: u64,
    errors: u64,
    last: Vec<String>,
}

/// `isobox serve` (the binary cargo built for this bench: target/release/isobox), stopped on
/// drop.
struct Server {
    child: Child,
    url: String,
    pid: u32,
    tmp: PathBuf,
    log: Arc<Mutex<Log>>,
}

impl Server {
    /// Starts it on a port it chooses (REST_PORT=0) and reads the URL from its log line.
    fn start(tmp: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_isobox"))
            .arg("serve")
            .env("REST_PORT", "0")
            .env("GRPC_PORT", "0")
            .env("ISOBOX_RATE_LIMIT", "100000000/min")
            .env("DEDUP_ENABLED", "false")
            .env("TMPDIR", tmp)
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("isobox serve");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut told = false;
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if !told && line.contains("listening on ") {
                    told = tx.send(line.clone()).is_ok();
                }
                let mut l = sink.lock().unwrap();
                l.lines += 1;
                let (w, e) = (line.contains("WARN"), line.contains("ERROR"));
                l.warnings += u64::from(w);
                l.errors += u64::from(e);
                if w || e {
                    l.last.push(line);
                    if l.last.len() > 5 {
                        l.last.remove(0);
                    }
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("`isobox serve` never said where it listens");
            });
        let i = line
            .find("http://")
            .expect("an http:// URL in the log line");
        let url: String = line[i..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ')')
            .collect();
        let pid = child.id();
        Server {
            child,
            url,
            pid,
            tmp: tmp.to_path_buf(),
            log,
        }
    }

    /// SIGTERM, then SIGKILL after 30 s; always reaped.
    fn stop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("isobox serve ignored SIGTERM for 30 s: SIGKILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Probes.
// ---------------------------------------------------------------------------------------------

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn count_dir(p: &str) -> usize {
    std::fs::read_dir(p).map(|rd| rd.count()).unwrap_or(0)
}

/// Processes under `root` (any depth).
fn descendants(root: u32) -> usize {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let (mut n, mut todo) = (0, vec![root]);
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            n += 1;
            todo.push(c);
        }
    }
    n
}

/// (distinct run groups, directories over all hierarchies) named `run-<pid>-<n>`.
fn run_cgroups(layout: &isobox_sandbox::cgroup::Layout, pid: u32) -> (usize, usize) {
    let prefix = format!("run-{pid}-");
    let dirs: Vec<String> = layout
        .run_groups()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let names: BTreeSet<&String> = dirs.iter().collect();
    (names.len(), dirs.len())
}

/// Uid lock files (`/run/isobox/uids/*`) flock-ed by `pid`, from `/proc/locks`.
fn uid_locks(pid: u32) -> usize {
    let dir = isobox_sandbox::NativeConfig::default()
        .state_dir
        .join("uids");
    let ids: BTreeSet<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| {
                    let (maj, min) = (libc::major(m.dev()), libc::minor(m.dev()));
                    format!("{maj:02x}:{min:02x}:{}", m.ino())
                })
                .collect()
        })
        .unwrap_or_default();
    let pid = pid.to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter(|w| *w != "->")
                .collect::<Vec<_>>()
        })
        .filter(|f| f.len() >= 6 && f[1] == "FLOCK" && f[4] == pid && ids.contains(f[5]))
        .count()
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
                    eprintln!("reading {path}: {e}; retrying");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot read {path}: {e}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    runs: usize,
    rss_kb: u64,
    hwm_kb: u64,
    fds: usize,
    threads: u64,
    cgroups: usize,
    cgroup_dirs: usize,
    procs: usize,
    uid_locks: usize,
    /// The mount table of its namespace (without the mount ids).
    mounts: BTreeSet<String>,
    isobox_mounts: usize,
    tmp: usize,
    /// Requests per second of the round that ended here.
    rate: f64,
}

impl Sample {
    fn take(s: &Server, layout: &isobox_sandbox::cgroup::Layout, runs: usize) -> Sample {
        let pid = s.pid;
        let (cgroups, cgroup_dirs) = run_cgroups(layout, pid);
        let mountinfo = read_mountinfo(&format!("/proc/{pid}/mountinfo"));
        let tagged = std::fs::read_dir(std::env::temp_dir())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.starts_with("isobox") && n.split('-').any(|t| t == pid.to_string())
                    })
                    .count()
            })
            .unwrap_or(0);
        Sample {
            runs,
            rss_kb: status_kb(pid, "VmRSS:"),
            hwm_kb: status_kb(pid, "VmHWM:"),
            fds: count_dir(&format!("/proc/{pid}/fd")),
            threads: status_kb(pid, "Threads:"),
            cgroups,
            cgroup_dirs,
            procs: descendants(pid),
            uid_locks: uid_locks(pid),
            mounts: mountinfo
                .lines()
                .map(|l| l.splitn(3, ' ').nth(2).unwrap_or(l).to_string())
                .collect(),
            isobox_mounts: mountinfo.lines().filter(|l| l.contains("isobox")).count(),
            tmp: count_dir(&s.tmp.display().to_string()) + tagged,
            rate: 0.0,
        }
    }

    /// The figures that must not move at rest: everything but memory, the rate and the mount
    /// table as a whole (the host's namespace: the docker engine of concurrent tests mounts and
    /// unmounts there; the lines a sandbox could leak all name isobox and are counted here).
    fn counts(&self) -> [(&'static str, u64); 8] {
        [
            ("fds", self.fds as u64),
            ("threads", self.threads),
            ("cgroups", self.cgroups as u64),
            ("cgroup dirs", self.cgroup_dirs as u64),
            ("processes", self.procs as u64),
            ("uid locks", self.uid_locks as u64),
            ("isobox mounts", self.isobox_mounts as u64),
            ("temp entries", self.tmp as u64),
        ]
    }
}

/// Rests `settle`, then waits (at most 10 s more) until two samples 250 ms apart agree on the
/// counts (the warm pool refilled, used sandboxes reaped), and returns the last one.
fn rest_and_sample(
    s: &Server,
    layout: &isobox_sandbox::cgroup::Layout,
    runs: usize,
    settle: Duration,
) -> Sample {
    std::thread::sleep(settle);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Sample::take(s, layout, runs);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = Sample::take(s, layout, runs);
        if now.counts() == last.counts() || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

// ---------------------------------------------------------------------------------------------
// The clients.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Round {
    failures: Vec<String>,
    by_kind: HashMap<Kind, (usize, Duration)>,
}

/// Requests `range` of the rotation from `clients` concurrent clients on one fresh HTTP client
/// (dropped at the end: no connection stays open into the sample).
async fn round(url: &str, range: std::ops::Range<usize>, clients: usize) -> Round {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(range.start));
    let out = Arc::new(Mutex::new(Round::default()));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, next, out, url, end) = (
            http.clone(),
            next.clone(),
            out.clone(),
            url.to_string(),
            range.end,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return;
                }
                let kind = ROTATION[i % ROTATION.len()];
                let t = Instant::now();
                let res = http
                    .post(format!("{url}/api/v1/execute"))
                    .json(&body(kind))
                    .send()
                    .await;
                let verdict = match res {
                    Err(e) => Err(format!("request: {e}")),
                    Ok(r) => {
                        let code = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        let (status, stdout) = expected(kind);
                        if code != 200
                            || v["status"] != status
                            || stdout.is_some_and(|s| v["stdout"] != s)
                        {
                            Err(format!("HTTP {code} {v}"))
                        } else {
                            Ok(())
                        }
                    }
                };
                let took = t.elapsed();
                let mut o = out.lock().unwrap();
                if let Err(e) = verdict {
                    o.failures.push(format!("run {i} ({kind:?}): {e}"));
                }
                let k = o.by_kind.entry(kind).or_default();
                k.0 += 1;
                k.1 += took;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(http);
    Arc::try_unwrap(out)
        .ok()
        .expect("every client finished")
        .into_inner()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Report.
// ---------------------------------------------------------------------------------------------

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn table(samples: &[Sample]) -> String {
    let mut t = String::from(
        "| runs | VmRSS KiB | VmHWM KiB | fds | threads | run cgroups (dirs) | processes \
         | uid locks | mounts (isobox) | temp | runs/s |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in samples {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} ({}) | {} | {} |\n",
            s.runs,
            s.rss_kb,
            s.hwm_kb,
            s.fds,
            s.threads,
            s.cgroups,
            s.cgroup_dirs,
            s.procs,
            s.uid_locks,
            s.mounts.len(),
            s.isobox_mounts,
            s.tmp,
            if s.runs == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", s.rate)
            },
        ));
    }
    t
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Mount table lines that came or went after the first checkpoint, as `+`/`-` `<mount point>
/// <fs type>` (the table is the host's: it is reported, the verdict counts the isobox lines).
fn mount_churn(samples: &[Sample], every: usize) -> Vec<String> {
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.runs >= every).collect();
    let Some(first) = measured.first() else {
        return Vec::new();
    };
    let short = |l: &String| {
        // `root mount-point options [optional...] - fstype source super-options`
        let f: Vec<&str> = l.split(' ').collect();
        let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        format!("{} {}", f.get(2).unwrap_or(&"?"), fstype.unwrap_or("?"))
    };
    let mut seen = BTreeSet::new();
    for s in &measured[1..] {
        seen.extend(
            s.mounts
                .difference(&first.mounts)
                .map(|l| format!("+{}", short(l))),
        );
        seen.extend(
            first
                .mounts
                .difference(&s.mounts)
                .map(|l| format!("-{}", short(l))),
        );
    }
    seen.into_iter().collect()
}

/// What grew past the first checkpoint (empty: no growth).
fn growth(samples: &[Sample], every: usize) -> Vec<String> {
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.runs >= every).collect();
    let Some(first) = measured.first() else {
        return vec!["no checkpoint was reached".into()];
    };
    let mut out = Vec::new();
    const RSS_TOLERANCE_KB: u64 = 2048;
    let worst = measured.iter().max_by_key(|s| s.rss_kb).unwrap();
    let per_1000 = slope(
        &measured
            .iter()
            .map(|s| (s.runs as f64, s.rss_kb as f64))
            .collect::<Vec<_>>(),
    ) * 1000.0;
    if worst.rss_kb > first.rss_kb + RSS_TOLERANCE_KB {
        out.push(format!(
            "VmRSS: {} MiB at {} runs, {} MiB at {} runs (+{} KiB; fitted slope {per_1000:+.0} \
             KiB per 1000 runs)",
            mib(first.rss_kb),
            first.runs,
            mib(worst.rss_kb),
            worst.runs,
            worst.rss_kb - first.rss_kb
        ));
    }
    for (i, (name, v0)) in first.counts().iter().enumerate() {
        let moved: Vec<String> = measured
            .iter()
            .filter(|s| s.counts()[i].1 != *v0)
            .map(|s| format!("{} at {} runs", s.counts()[i].1, s.runs))
            .collect();
        if !moved.is_empty() {
            let last = measured.last().unwrap();
            let d = last.counts()[i].1 as f64 - *v0 as f64;
            let span = (last.runs - first.runs).max(1) as f64;
            out.push(format!(
                "{name}: {v0} at {} runs, then {} (net {d:+} over {} runs, {:+.2} per 1000 runs)",
                first.runs,
                moved.join(", "),
                last.runs - first.runs,
                d * 1000.0 / span
            ));
        }
    }
    out
}

fn main() {
    let runs = env_num("ISOBOX_SOAK_RUNS", 10_000) as usize;
    let every = (env_num("ISOBOX_SOAK_EVERY", 1000) as usize).max(1);
    let clients = env_num("ISOBOX_SOAK_CLIENTS", 3).max(1) as usize;
    let settle = Duration::from_millis(env_num("ISOBOX_SOAK_SETTLE_MS", 11_000));
    let layout = isobox_sandbox::cgroup::Layout::detect("isobox").expect("cgroups (run as root)");
    let tmp = std::env::temp_dir().join(format!("isobox-soak-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // Removed however the bench ends (declared before the server: dropped after it).
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _tmp_guard = RemoveDir(tmp.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut server = Server::start(&tmp);
    eprintln!(
        "soak: isobox serve pid {} at {}; {runs} runs, {clients} clients, a sample every {every} \
         runs after {} ms of rest",
        server.pid,
        server.url,
        settle.as_millis()
    );
    let total = Instant::now();
    let mut samples = vec![rest_and_sample(&server, &layout, 0, settle)];
    eprintln!("{}", table(&samples));
    let mut failures: Vec<String> = Vec::new();
    let mut by_kind: HashMap<Kind, (usize, Duration)> = HashMap::new();
    let mut done = 0;
    while done < runs {
        let end = (done + every).min(runs);
        let t = Instant::now();
        let r = rt.block_on(round(&server.url, done..end, clients));
        let rate = (end - done) as f64 / t.elapsed().as_secs_f64();
        failures.extend(r.failures);
        for (k, (n, d)) in r.by_kind {
            let e = by_kind.entry(k).or_default();
            e.0 += n;
            e.1 += d;
        }
        done = end;
        let mut s = rest_and_sample(&server, &layout, done, settle);
        s.rate = rate;
        eprintln!(
            "{done} runs: {rate:.1} runs/s, VmRSS {} MiB, fds {}, threads {}, cgroups {}, \
             processes {}, {} failures so far",
            mib(s.rss_kb),
            s.fds,
            s.threads,
            s.cgroups,
            s.procs,
            failures.len()
        );
        samples.push(s);
    }
    let elapsed = total.elapsed();
    let pid = server.pid;
    server.stop();
    let (left, left_dirs) = run_cgroups(&layout, pid);
    let log = std::mem::take(&mut *server.log.lock().unwrap());
    let tmp_left = count_dir(&tmp.display().to_string());
    let _ = std::fs::remove_dir(&tmp);

    println!("\n## isobox serve soak: {runs} runs, {clients} clients\n");
    println!("{}", table(&samples));
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort();
    println!(
        "requests: {}",
        kinds
            .iter()
            .map(|(k, (n, d))| format!(
                "{k:?} {n} (mean {:.0} ms)",
                d.as_secs_f64() * 1000.0 / *n as f64
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "wall time {:.0} s (with {} s of rest per sample); server log: {} lines, {} WARN, {} \
         ERROR",
        elapsed.as_secs_f64(),
        settle.as_secs(),
        log.lines,
        log.warnings,
        log.errors
    );
    for l in &log.last {
        println!("  log: {l}");
    }
    println!(
        "after the server stopped: {left} run cgroups ({left_dirs} dirs) of pid {pid} left, \
         {tmp_left} entries in its TMPDIR"
    );
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.runs >= every).collect();
    if let (Some(first), Some(last)) = (measured.first(), measured.last()) {
        let xy: Vec<(f64, f64)> = measured
            .iter()
            .map(|s| (s.runs as f64, s.rss_kb as f64))
            .collect();
        println!(
            "VmRSS: {} KiB at {} runs, {} KiB at {} runs ({:+} KiB), at most {} KiB; fitted \
             slope {:+.1} KiB per 1000 runs; VmHWM {} KiB at the end",
            first.rss_kb,
            first.runs,
            last.rss_kb,
            last.runs,
            last.rss_kb as i64 - first.rss_kb as i64,
            measured.iter().map(|s| s.rss_kb).max().unwrap_or(0),
            slope(&xy) * 1000.0,
            last.hwm_kb
        );
    }
    let churn = mount_churn(&samples, every);
    if !churn.is_empty() {
        println!(
            "mount table of the server's namespace (the host's) changed while the soak ran: \
             {} distinct lines came or went (lines naming isobox, at most {} at a sample, are \
             what the verdict counts): {}",
            churn.len(),
            samples.iter().map(|s| s.isobox_mounts).max().unwrap_or(0),
            churn.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let mut grew = growth(&samples, every);
    if left > 0 || tmp_left > 0 {
        grew.push(format!(
            "left after exit: {left} cgroups, {tmp_left} temp entries"
        ));
    }
    println!(
        "failed requests: {}{}",
        failures.len(),
        if failures.is_empty() { "" } else { ":" }
    );
    for f in failures.iter().take(10) {
        println!("  {f}");
    }
    if grew.is_empty() {
        println!(
            "\n**Verdict: no growth.** VmRSS stays within +2 MiB of the sample at {every} runs \
             (allocator warm-up tolerance); fds, threads, run cgroups, processes, uid locks, \
             isobox mounts and temp entries equal that sample at every checkpoint."
        );
    } else {
        println!("\n**Verdict: GROWTH.**");
        for g in &grew {
            println!("- {g}");
        }
    }
    if !grew.is_empty() || !failures.is_empty() {
        std::process::exit(1);
    }
}
