//! The benchmark suite behind `BENCHMARKS.md` (`sudo bench/run` builds, runs this and writes
//! the file): every mechanism on the same hello worlds, and the HTTP API of a real
//! `isobox serve` process, in one run, then the targets as PASS/MISS lines.
//!
//! Workloads: python (`python3 -c "print('hello')"`), node (`node -e "console.log('hello')"`),
//! c (a hello world compiled once with gcc before the runs; `isobox run hello.c` compiles it on
//! every run instead, compared with bare `gcc` + run) and bash (`bash -c "echo hello"`).
//!
//! Mechanisms: the bare process (fork+exec+wait), bubblewrap with every namespace (the
//! namespace-only floor: no cgroups, no seccomp), the `isobox run` command line (process start
//! and its own setup included), the native backend in this process (sandboxes cloned by the
//! launcher, as in a server), cold and with a warm pool of 2 (refilled, untimed, before each
//! run, as an idle server would be), `docker run --rm` with
//! the docker backend's hardening flags, and the docker backend with a pool of 2 started
//! containers, full before each run (the wait is not timed).
//!
//! HTTP: python hello through a separate `isobox serve` process (REST_PORT=0, read from its log
//! line), dedup cache off (every request runs) and cache hits (the same request), with 1, 2, 8
//! and 32 concurrent clients: req/s, p50, p99, the server's CPU per request (its own and its
//! sandboxes', from /proc/<pid>/stat), the clients' CPU, and the server's RSS idle after start,
//! idle after the load, and its peak. Next to the bare rate, the same python under
//! `bwrap --unshare-all` with as many workers: the namespace-only floor of throughput.
//!
//! Everything is repeated `ISOBOX_BENCH_REPS` times (default 3) and each figure is the median
//! of the repetitions' figures (the machine is noisy). Within a repetition the latency cases of
//! a workload take turns run by run (docker's follow, case by case), so that two rows a target
//! compares were measured over the same minutes; p99 is the nearest rank below
//! ((n-1) x 0.99) of one repetition's runs, so with fewer than 100 runs it is the
//! second-largest or the largest. `ISOBOX_BENCH_SECS` (default 5) is the length of each HTTP
//! case, `ISOBOX_BENCH_SCALE` (default 1) multiplies the runs of every latency case.
//! Markdown goes to stdout, progress to stderr.
//!
//! `cargo bench --bench suite` (as root, `bwrap` on PATH, a running dockerd and the
//! `isobox-runtime` image of `isobox image build`; without bwrap or docker those rows are
//! skipped and say so).

mod common;
use common::{check_output, env_num, ms, pct, sh, stop_child};

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isobox_sandbox::docker::{DockerConfig, PoolMode};
use isobox_sandbox::{
    Backend, DockerBackend, ExecSpec, Limits, NativeBackend, NativeConfig, SandboxFile, Status,
};

/// Runs of each latency case per repetition that are not counted.
const WARMUP: usize = 2;

/// ISOBOX_RUNTIMES_DIR of the CLI rows and the HTTP server: none, so that they run the host's
/// toolchains, the programs of the bare and bwrap rows (with runtimes built, python would be
/// the newest runtime's, another program).
const NO_RUNTIMES: &str = "/nonexistent/isobox-bench-no-runtimes";
/// Concurrent HTTP clients of the load cases.
const CLIENTS: [usize; 4] = [1, 2, 8, 32];
/// Longest untimed wait for a pool (warm sandboxes, started containers) to be full again.
const REFILL_WAIT: Duration = Duration::from_secs(3);
/// Environment of the bare and bubblewrap runs: the sandbox's clean base, not this shell's
/// (here `NODE_EXTRA_CA_CERTS` alone costs node ~40 ms per start).
const CLEAN_ENV: [(&str, &str); 3] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/tmp"),
    ("LANG", "C.UTF-8"),
];
const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";
/// The language table's C compile command (crates/isobox-core/languages.toml), run bare.
const GCC: [&str; 5] = ["gcc", "-std=gnu17", "-O2", "-pipe", "-o"];

// ---------------------------------------------------------------------------------------------
// Workloads and mechanisms

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wl {
    Python,
    Node,
    C,
    Bash,
}

const WORKLOADS: [Wl; 4] = [Wl::Python, Wl::Node, Wl::C, Wl::Bash];

impl Wl {
    /// The runtime (crates/isobox-core/runtimes.toml) whose root the runtime rows use: the
    /// bookworm one, the host's suite, so the program is the same version as the bare one.
    fn runtime(self) -> &'static str {
        match self {
            Wl::Python | Wl::Bash => "python-bookworm",
            Wl::Node => "node-bookworm",
            Wl::C => "gcc-bookworm",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Wl::Python => "python",
            Wl::Node => "node",
            Wl::C => "c",
            Wl::Bash => "bash",
        }
    }

    /// argv of a run; `c_path` is where the compiled hello world is (bare: the temp dir;
    /// sandboxes: their work dir).
    fn argv(self, c_path: &str) -> Vec<String> {
        let v: Vec<&str> = match self {
            Wl::Python => vec!["/usr/bin/python3", "-c", "print('hello')"],
            Wl::Node => vec!["/usr/bin/node", "-e", "console.log('hello')"],
            Wl::C => vec![c_path],
            Wl::Bash => vec!["/usr/bin/bash", "-c", "echo hello"],
        };
        v.into_iter().map(String::from).collect()
    }

    /// The file `isobox run` is given.
    fn cli_file(self) -> &'static str {
        match self {
            Wl::Python => "hello.py",
            Wl::Node => "hello.js",
            Wl::C => "hello.c",
            Wl::Bash => "hello.sh",
        }
    }

    /// Timed runs per repetition (before `ISOBOX_BENCH_SCALE`): about a second or two each.
    fn runs(self, m: Mech) -> usize {
        match (m, self) {
            (Mech::DockerRun | Mech::DockerPooled, _) => 15,
            (Mech::Cli, Wl::C) | (Mech::BareCompile, _) => 15,
            (_, Wl::Node) => 25,
            (Mech::Cli, _) | (_, Wl::Python) => 40,
            _ => 80,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mech {
    Bare,
    /// c only: `gcc` with the language's flags, then the binary (the floor of `isobox run hello.c`).
    BareCompile,
    Bwrap,
    Cli,
    Cold,
    Warm,
    /// The program of a runtime's root run bare (`chroot` into it, nothing else): the baseline
    /// of the runtime rows, as `Bare` is of the host's (the host's node, say, need not be the
    /// runtime's version).
    RtBare,
    /// The native backend with a runtime's root (`RootFs::Dir`) instead of the host's /usr:
    /// the bookworm runtime of the workload, the host's own suite.
    RtCold,
    RtWarm,
    DockerRun,
    DockerPooled,
}

const MECHS: [Mech; 11] = [
    Mech::Bare,
    Mech::BareCompile,
    Mech::Bwrap,
    Mech::Cli,
    Mech::Cold,
    Mech::Warm,
    Mech::RtBare,
    Mech::RtCold,
    Mech::RtWarm,
    Mech::DockerRun,
    Mech::DockerPooled,
];

impl Mech {
    fn label(self, w: Wl) -> &'static str {
        match (self, w) {
            (Mech::Bare, Wl::C) => "bare process (binary compiled beforehand)",
            (Mech::Bare, _) => "bare process",
            (Mech::BareCompile, _) => "bare process, `gcc` + run",
            (Mech::Bwrap, _) => "bwrap --unshare-all",
            (Mech::Cli, Wl::C) => "`isobox run hello.c` (compiles each run)",
            (Mech::Cli, _) => "`isobox run FILE` (CLI)",
            (Mech::Cold, _) => "native in-process, cold",
            (Mech::Warm, _) => "native in-process, warm pool 2",
            (Mech::RtBare, _) => "bare process, chroot into the runtime root",
            (Mech::RtCold, _) => "native cold, runtime root (bookworm)",
            (Mech::RtWarm, _) => "native warm pool 2, runtime root (bookworm)",
            (Mech::DockerRun, _) => "`docker run --rm`, backend flags",
            (Mech::DockerPooled, _) => "docker backend, pool 2 started, idle",
        }
    }

    /// The mechanisms measured for a workload. `docker run --rm` cannot take the compiled
    /// binary without a bind mount (the backend never mounts host paths): no c row there.
    fn applies(self, w: Wl) -> bool {
        match self {
            Mech::BareCompile => w == Wl::C,
            Mech::DockerRun => w != Wl::C,
            _ => true,
        }
    }

    /// What the overhead column subtracts.
    fn baseline(self, w: Wl) -> Mech {
        if matches!(self, Mech::RtCold | Mech::RtWarm) {
            Mech::RtBare
        } else if self == Mech::Cli && w == Wl::C {
            Mech::BareCompile
        } else {
            Mech::Bare
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// Median of `v` (mean of the middle two for an even count); NaN when empty.
fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn f1(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.1}")
    }
}

fn f2(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.2}")
    }
}

fn signed(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:+.1}")
    }
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The bench's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("isobox-bench-suite-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` to completion, timed from spawn to reaped.
fn timed(cmd: &mut Command) -> Result<Duration, String> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn: {e}"))?;
    let took = t.elapsed();
    check_output(out, b"hello\n")?;
    Ok(took)
}

fn clean(cmd: &mut Command) -> &mut Command {
    cmd.env_clear().envs(CLEAN_ENV)
}

// ---------------------------------------------------------------------------------------------
// One run of each mechanism

struct Ctx {
    dir: PathBuf,
    /// The compiled hello world.
    hello: Vec<u8>,
    isobox: PathBuf,
    seccomp: String,
    bwrap: bool,
    cold: NativeBackend,
    warm: NativeBackend,
    /// By runtime name: (cold, warm pool 2) backends with its root; absent when not built.
    rt: std::collections::HashMap<&'static str, (NativeBackend, NativeBackend)>,
    /// By runtime name: its root, and a writable /tmp mounted there for the bare chroot runs.
    rt_roots: std::collections::HashMap<&'static str, (PathBuf, TmpMount)>,
    docker: Option<DockerBackend>,
    /// The docker backend's `isobox.instance` label.
    instance: String,
}

impl Ctx {
    fn available(&self, m: Mech, w: Wl) -> bool {
        match m {
            Mech::RtBare => self.rt_roots.contains_key(w.runtime()),
            Mech::RtCold | Mech::RtWarm => self.rt.contains_key(w.runtime()),
            Mech::Bwrap => self.bwrap,
            Mech::DockerRun | Mech::DockerPooled => self.docker.is_some(),
            _ => true,
        }
    }

    /// The spec of a backend run: the server's work-dir shape (also the docker pool's: another
    /// shape would bypass the pool); c gets the compiled binary as an executable file.
    fn spec(&self, w: Wl) -> ExecSpec {
        let mut spec = ExecSpec::single(w.argv("./hello"), vec![], Limits::default());
        spec.tmpfs_bytes = 64 << 20;
        spec.tmpfs_inodes = 16 * 1024;
        if w == Wl::C {
            spec.files = vec![SandboxFile {
                path: "hello".into(),
                content: self.hello.clone(),
                executable: true,
                readonly: false,
            }];
        }
        spec
    }

    /// Untimed work before a run: pools full again.
    fn before(&self, m: Mech, w: Wl) {
        let t = Instant::now();
        let full = |b: &NativeBackend| {
            while b.warm_count() < b.config().warm_pool && t.elapsed() < REFILL_WAIT {
                std::thread::sleep(Duration::from_micros(200));
            }
        };
        match m {
            Mech::Warm => full(&self.warm),
            Mech::RtWarm => {
                if let Some((_, warm)) = self.rt.get(w.runtime()) {
                    full(warm)
                }
            }
            Mech::DockerPooled => {
                let Some(b) = self.docker.as_ref() else {
                    return;
                };
                while b.pooled() < 2 && t.elapsed() < REFILL_WAIT {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            _ => {}
        }
    }

    /// Untimed, after a run taken in turns: every warm pool of this process full again and
    /// every used warm sandbox torn down (its init reaped, its cgroup gone: what the pool thread
    /// does after the run), so that none of that work, nor the used sandbox's CPU reaching this
    /// process's children's rusage when its init is reaped, lands in the next case's window.
    fn quiesce(&self) {
        let t = Instant::now();
        let pools: Vec<&NativeBackend> = std::iter::once(&self.warm)
            .chain(self.rt.values().map(|(_, warm)| warm))
            .collect();
        let prefix = format!("run-{}-", std::process::id());
        let layout = self.cold.cgroup_layout();
        while t.elapsed() < REFILL_WAIT {
            let warm: usize = pools.iter().map(|b| b.warm_count()).sum();
            let wanted: usize = pools.iter().map(|b| b.config().warm_pool).sum();
            // Live sandboxes of this process: one group each in the memory hierarchy.
            let groups = layout
                .run_groups()
                .iter()
                .filter(|p| {
                    p.starts_with(layout.memory.path())
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&prefix))
                })
                .count();
            if warm == wanted && groups <= wanted {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Untimed, between cases: both pools full and the used containers removed, so no case
    /// pays for the refill or clean-up work of the one before it.
    fn settle(&self, after: Mech) {
        self.before(Mech::Warm, Wl::Python);
        for w in WORKLOADS {
            self.before(Mech::RtWarm, w);
        }
        if after == Mech::DockerPooled && self.docker.is_some() {
            self.before(Mech::DockerPooled, Wl::Python);
            let filter = format!("label=isobox.instance={}", self.instance);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                let ours = sh("docker", &["ps", "-aq", "--filter", &filter]);
                if ours.is_none_or(|s| s.lines().count() <= 2) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    fn run(&self, m: Mech, w: Wl) -> Result<Duration, String> {
        let bin = self.dir.join("hello");
        let bin = bin.to_str().unwrap();
        match m {
            Mech::Bare => {
                let argv = w.argv(bin);
                timed(clean(Command::new(&argv[0]).args(&argv[1..])).current_dir(&self.dir))
            }
            Mech::BareCompile => {
                let out = self.dir.join("cc/main");
                let t = Instant::now();
                let cc = clean(Command::new(GCC[0]).args(&GCC[1..]))
                    .arg(&out)
                    .arg(self.dir.join("hello.c"))
                    .arg("-lm")
                    .current_dir(self.dir.join("cc"))
                    .output()
                    .map_err(|e| format!("gcc: {e}"))?;
                if !cc.status.success() {
                    return Err(format!("gcc: {}", String::from_utf8_lossy(&cc.stderr)));
                }
                let run = clean(&mut Command::new(&out))
                    .current_dir(self.dir.join("cc"))
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| format!("spawn: {e}"))?;
                let took = t.elapsed();
                check_output(run, b"hello\n")?;
                Ok(took)
            }
            Mech::RtBare => {
                // The compiled hello world is copied into the root's /tmp for the run.
                let (root, _) = &self.rt_roots[w.runtime()];
                let argv = w.argv("/tmp/isobox-bench-hello");
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                let root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: chroot and chdir with valid C strings, between fork and exec.
                unsafe {
                    use std::os::unix::process::CommandExt;
                    cmd.pre_exec(move || {
                        if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                timed(clean(&mut cmd))
            }
            Mech::Bwrap => {
                let mut cmd = bwrap();
                if w == Wl::C {
                    cmd.args(["--ro-bind", bin, "/tmp/hello"]);
                }
                cmd.args(w.argv("/tmp/hello"));
                timed(clean(&mut cmd))
            }
            Mech::Cli => timed(
                Command::new(&self.isobox)
                    .args(["run", w.cli_file(), "--backend", "native"])
                    .env("ISOBOX_RUNTIMES_DIR", NO_RUNTIMES)
                    .current_dir(&self.dir),
            ),
            Mech::Cold | Mech::Warm | Mech::RtCold | Mech::RtWarm | Mech::DockerPooled => {
                let b: &dyn Backend = match m {
                    Mech::Cold => &self.cold,
                    Mech::Warm => &self.warm,
                    Mech::RtCold => &self.rt[w.runtime()].0,
                    Mech::RtWarm => &self.rt[w.runtime()].1,
                    _ => self.docker.as_ref().unwrap(),
                };
                let spec = self.spec(w);
                let t = Instant::now();
                let r = b.execute(&spec).map_err(|e| e.to_string())?;
                let took = t.elapsed();
                let p = &r.phases[0];
                if p.status != Status::Ok || p.stdout != b"hello\n" {
                    return Err(format!(
                        "status {} stdout {:?} stderr {:?} {}",
                        p.status.as_str(),
                        String::from_utf8_lossy(&p.stdout),
                        String::from_utf8_lossy(&p.stderr),
                        p.internal_error.as_deref().unwrap_or("")
                    ));
                }
                Ok(took)
            }
            Mech::DockerRun => {
                // benches/docker.rs's hardened `docker run`: the backend's HostConfig as CLI flags.
                let argv = w.argv(bin);
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let mut cmd = common::docker_run(Some(&self.seccomp), &argv);
                timed(&mut cmd)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Latency cases

/// One repetition of one case.
struct Rep {
    p50: f64,
    p99: f64,
    mean: f64,
    cpu: Cpu,
}

/// CPU per run of one repetition, ms (warm-up runs and pool refills included, as a host
/// running these back to back pays them).
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// Every CPU of the host (/proc/stat).
    machine: f64,
    /// The sandboxes' cgroups (cpuacct of IsoBox's parent group: inits and programs once
    /// they joined their run's group).
    sandbox: f64,
    /// IsoBox outside its sandboxes: this process's threads for the in-process backends (the
    /// supervisor, the pool), the `isobox run` process for the CLI rows; the bare program
    /// (and bwrap) for the rows without IsoBox.
    process: f64,
}

impl Cpu {
    fn now() -> [f64; 4] {
        [
            machine_cpu(),
            sandbox_cpu(),
            rusage_ms(libc::RUSAGE_SELF),
            rusage_ms(libc::RUSAGE_CHILDREN),
        ]
    }

    fn per_run(a: [f64; 4], b: [f64; 4], runs: usize, mech: Mech) -> Cpu {
        let d: Vec<f64> = (0..4).map(|i| (b[i] - a[i]) / runs as f64).collect();
        let (machine, sandbox, own, children) = (d[0], d[1], d[2], d[3]);
        let process = match mech {
            // The CLI reaps its sandbox's init: its children's CPU holds the sandbox's.
            Mech::Cli => (children - sandbox).max(0.0),
            Mech::Cold | Mech::Warm | Mech::RtCold | Mech::RtWarm | Mech::DockerPooled => own,
            _ => children,
        };
        Cpu {
            machine,
            sandbox,
            process,
        }
    }
}

/// CPU used so far by every sandbox of this host's IsoBox (cumulative: a removed run group's
/// usage stays in its parent), ms: cgroup v1 `cpuacct.usage` or v2 `cpu.stat` of the `isobox`
/// parent group.
fn sandbox_cpu() -> f64 {
    let v1 = std::fs::read_to_string("/sys/fs/cgroup/cpuacct/isobox/cpuacct.usage");
    if let Ok(ns) = v1 {
        return ns.trim().parse::<f64>().map_or(0.0, |n| n / 1e6);
    }
    std::fs::read_to_string("/sys/fs/cgroup/isobox/cpu.stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<f64>().ok())
        })
        .map_or(0.0, |us| us / 1000.0)
}

/// All repetitions of one (mechanism, workload).
struct Case {
    mech: Mech,
    wl: Wl,
    runs: usize,
    reps: Vec<Rep>,
    failures: usize,
    first_error: Option<String>,
}

impl Case {
    fn p50(&self) -> f64 {
        median(&self.reps.iter().map(|r| r.p50).collect::<Vec<_>>())
    }
    fn p99(&self) -> f64 {
        median(&self.reps.iter().map(|r| r.p99).collect::<Vec<_>>())
    }
    fn rate(&self) -> f64 {
        median(
            &self
                .reps
                .iter()
                .map(|r| 1000.0 / r.mean)
                .collect::<Vec<_>>(),
        )
    }
    fn cpu(&self, f: fn(&Cpu) -> f64) -> f64 {
        median(&self.reps.iter().map(|r| f(&r.cpu)).collect::<Vec<_>>())
    }
    fn spread(&self) -> String {
        let v: Vec<f64> = self.reps.iter().map(|r| r.p50).collect();
        if v.is_empty() {
            return "-".into();
        }
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.1}-{hi:.1}")
    }
}

/// One repetition of the cases `idx` of one workload, run by run in turns: each round gives
/// every case one run, in an order that rotates from round to round, so that the mechanisms a
/// target compares (bwrap and IsoBox, the sandbox and its bare baseline) meet the same moments
/// of a noisy host instead of minutes apart. A case's CPU window holds its run and its own
/// untimed refill (its warm pool full again), so no case pays for another's.
fn measure_turns(ctx: &Ctx, cases: &mut [Case], idx: &[usize]) {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); idx.len()];
    let mut cpu = vec![[0.0f64; 4]; idx.len()];
    let rounds = idx
        .iter()
        .map(|&i| WARMUP + cases[i].runs)
        .max()
        .unwrap_or(0);
    for round in 0..rounds {
        for k in 0..idx.len() {
            let j = (round + k) % idx.len();
            let case = &mut cases[idx[j]];
            if round >= WARMUP + case.runs {
                continue;
            }
            let a = Cpu::now();
            ctx.before(case.mech, case.wl);
            let r = ctx.run(case.mech, case.wl);
            ctx.quiesce();
            let b = Cpu::now();
            match r {
                Ok(t) if round >= WARMUP => {
                    times[j].push(t);
                    for (sum, (x, y)) in cpu[j].iter_mut().zip(a.iter().zip(&b)) {
                        *sum += y - x;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    case.failures += 1;
                    case.first_error.get_or_insert(e);
                }
            }
        }
    }
    for (j, &i) in idx.iter().enumerate() {
        let case = &mut cases[i];
        let t = &mut times[j];
        if t.is_empty() {
            continue;
        }
        let cpu = Cpu::per_run([0.0; 4], cpu[j], t.len(), case.mech);
        t.sort();
        let mean = t.iter().map(|d| ms(*d)).sum::<f64>() / t.len() as f64;
        case.reps.push(Rep {
            p50: pct(t, 0.5),
            p99: pct(t, 0.99),
            mean,
            cpu,
        });
    }
}

/// One repetition of one case, its runs back to back (the docker rows: their daemon's work
/// after a run would land in the runs of other mechanisms taken in turns).
fn measure_rep(ctx: &Ctx, case: &mut Case) {
    let mut times = Vec::with_capacity(case.runs);
    let mut cpu0 = Cpu::now();
    for i in 0..WARMUP + case.runs {
        if i == WARMUP {
            cpu0 = Cpu::now();
        }
        ctx.before(case.mech, case.wl);
        match ctx.run(case.mech, case.wl) {
            Ok(t) if i >= WARMUP => times.push(t),
            Ok(_) => {}
            Err(e) => {
                case.failures += 1;
                case.first_error.get_or_insert(e);
            }
        }
    }
    if times.is_empty() {
        return;
    }
    let cpu = Cpu::per_run(cpu0, Cpu::now(), case.runs, case.mech);
    times.sort();
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    case.reps.push(Rep {
        p50: pct(&times, 0.5),
        p99: pct(&times, 0.99),
        mean,
        cpu,
    });
}

// ---------------------------------------------------------------------------------------------
// HTTP through a separate `isobox serve`

/// CPU time of a process from /proc/<pid>/stat, in ms: (own utime+stime, waited-for
/// children's cutime+cstime). The sandboxes are the server's children.
fn proc_cpu(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick = 1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    if f.len() < 15 {
        return (f64::NAN, f64::NAN);
    }
    // After the comm field: state is index 0, utime 11, stime 12, cutime 13, cstime 14.
    ((f[11] + f[12]) * tick, (f[13] + f[14]) * tick)
}

/// A `VmXXX:` line of /proc/<pid>/status, in MiB.
fn proc_mem(pid: u32, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Busy CPU time of the whole machine so far (every CPU, /proc/stat: everything but idle and
/// iowait), in ms: catches what no process is charged for (kernel workers tearing down
/// namespaces, dockerd, other work on the host).
fn machine_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: f64 =
        f.iter().take(8).sum::<f64>() - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0);
    // SAFETY: sysconf has no preconditions.
    busy * 1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU of this process (all threads), or of its reaped children, in ms.
fn rusage_ms(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One `isobox serve` process on a port of its choosing, stopped on drop.
struct Server {
    child: Child,
    url: String,
    /// VmRSS when it said where it listens.
    rss_at_listen: f64,
}

impl Server {
    /// Starts `isobox serve` (REST_PORT=0, read from the "listening on http://..." line, as
    /// tests/common `spawn_node` does) with the dedup cache on or off. Its stderr is drained by
    /// a thread (plain reads into a sink once the line was seen: the server logs two lines per
    /// request).
    fn start(bin: &Path, cache: bool) -> Server {
        let mut child = Command::new(bin)
            .arg("serve")
            .env("REST_PORT", "0")
            .env("GRPC_PORT", "0")
            .env("ISOBOX_RATE_LIMIT", "100000000/min")
            .env("ISOBOX_RUNTIMES_DIR", NO_RUNTIMES)
            .env("ISOBOX_QUEUE", "1000")
            .env("DEDUP_ENABLED", cache.to_string())
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("isobox serve");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 16, err);
            let mut line = String::new();
            let mut head = Vec::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Err(head.join("\n")));
                        return;
                    }
                    Ok(_) => {}
                }
                if let (true, Some(i)) = (line.contains("listening on "), line.find("http://")) {
                    let url: String = line[i..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != ')')
                        .collect();
                    let _ = tx.send(Ok(url));
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let mut buf = vec![0u8; 1 << 16];
            while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        });
        let url = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(Ok(url)) => url,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`isobox serve` never said where it listens: {other:?}");
            }
        };
        let rss_at_listen = proc_mem(child.id(), "VmRSS:");
        Server {
            child,
            url,
            rss_at_listen,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(15));
    }
}

/// One load case: the median-of-repetitions figures are taken from these.
#[derive(Default, Clone)]
struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    /// Server CPU per successful request, ms: its own threads, its sandboxes.
    srv_self: f64,
    srv_children: f64,
    /// This process's CPU (the reqwest clients) per successful request, ms.
    client: f64,
    /// The whole machine's busy CPU per successful request, ms.
    machine: f64,
    errors: u64,
    /// Successful answers that were not what the case expects (a miss among hits).
    unexpected: u64,
}

const BODY: &str = r#"{"language":"python","code":"print('hello')"}"#;

async fn load(srv: &Server, secs: u64, clients: usize, hits: bool) -> Load {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/execute", srv.url);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let unexpected = Arc::new(AtomicU64::new(0));
    let (s0, c0) = proc_cpu(srv.pid());
    let me0 = rusage_ms(libc::RUSAGE_SELF);
    let m0 = machine_cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, unexpected) = (client.clone(), url.clone(), unexpected.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(BODY)
                    .send()
                    .await;
                let body = match r {
                    Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                    _ => None,
                };
                let Some(body) = body else {
                    errors += 1;
                    continue;
                };
                lat.push(t.elapsed());
                let has = |s: &[u8]| body.windows(s.len()).any(|w| w == s);
                let cached = has(br#""cached":true"#);
                if !has(br#""stdout":"hello\n""#) || !has(br#""status":"ok""#) || cached != hits {
                    unexpected.fetch_add(1, Ordering::Relaxed);
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let me = rusage_ms(libc::RUSAGE_SELF) - me0;
    let machine = machine_cpu() - m0;
    let (s1, c1) = proc_cpu(srv.pid());
    all.sort();
    let n = all.len().max(1) as f64;
    Load {
        rps: all.len() as f64 / wall,
        p50: if all.is_empty() {
            f64::NAN
        } else {
            pct(&all, 0.5)
        },
        p99: if all.is_empty() {
            f64::NAN
        } else {
            pct(&all, 0.99)
        },
        srv_self: (s1 - s0) / n,
        srv_children: (c1 - c0) / n,
        client: me / n,
        machine: machine / n,
        errors,
        unexpected: unexpected.load(Ordering::Relaxed),
    }
}

/// Memory of one server process (MiB).
#[derive(Default, Clone)]
struct Mem {
    at_listen: f64,
    idle_start: f64,
    idle_after: f64,
    hwm: f64,
}

/// One repetition of the HTTP part for one cache mode: a fresh server, the four client counts.
fn http_rep(rt: &tokio::runtime::Runtime, bin: &Path, secs: u64, hits: bool) -> (Vec<Load>, Mem) {
    let srv = Server::start(bin, hits);
    // Idle: the warm pool built, no request yet.
    std::thread::sleep(Duration::from_secs(2));
    let mut mem = Mem {
        at_listen: srv.rss_at_listen,
        idle_start: proc_mem(srv.pid(), "VmRSS:"),
        ..Mem::default()
    };
    let loads = rt.block_on(async {
        if hits {
            // The one run the hits then reuse.
            let r = reqwest::Client::new()
                .post(format!("{}/api/v1/execute", srv.url))
                .header("content-type", "application/json")
                .body(BODY)
                .send()
                .await
                .expect("first request");
            assert!(r.status().is_success(), "first request: {}", r.status());
        }
        let mut v = Vec::new();
        for c in CLIENTS {
            let l = load(&srv, secs, c, hits).await;
            eprintln!(
                "    {} x{c}: {:.1} req/s p50 {:.2} ms p99 {:.2} ms ({} errors, {} unexpected)",
                if hits { "cache hits" } else { "cache off" },
                l.rps,
                l.p50,
                l.p99,
                l.errors,
                l.unexpected
            );
            v.push(l);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        v
    });
    // Idle again: the load is over, the warm pool refilled.
    std::thread::sleep(Duration::from_secs(2));
    mem.idle_after = proc_mem(srv.pid(), "VmRSS:");
    mem.hwm = proc_mem(srv.pid(), "VmHWM:");
    (loads, mem)
}

/// Bare python hello worlds with `workers` threads back to back for `secs`.
struct BareRate {
    rate: f64,
    /// CPU per run of the python processes (RUSAGE_CHILDREN), ms.
    cpu: f64,
    /// The whole machine's busy CPU per run, ms.
    machine: f64,
}

fn bare_parallel(workers: usize, secs: u64) -> BareRate {
    parallel_rate(workers, secs, || {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-c", "print('hello')"]);
        cmd
    })
}

/// The same python hello under `bwrap --unshare-all` (namespaces only: no cgroups, no seccomp,
/// no HTTP): the floor of any namespace sandbox's throughput on these cores.
fn bwrap_parallel(workers: usize, secs: u64) -> BareRate {
    parallel_rate(workers, secs, || {
        let mut cmd = bwrap();
        cmd.args(["/usr/bin/python3", "-c", "print('hello')"]);
        cmd
    })
}

/// `bwrap` with every namespace, /usr read-only, the merged-/usr links, /proc, /dev and a
/// tmpfs /tmp as the working directory; the program's argv comes next.
fn bwrap() -> Command {
    let mut cmd = Command::new("bwrap");
    cmd.args([
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/usr",
        "/usr",
    ]);
    cmd.args([
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
    ]);
    cmd.args([
        "--symlink",
        "usr/bin",
        "/bin",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]);
    cmd.args(["--tmpfs", "/tmp", "--chdir", "/tmp"]);
    cmd
}

/// `workers` threads running `make()` back to back for `secs`.
fn parallel_rate(workers: usize, secs: u64, make: impl Fn() -> Command + Sync) -> BareRate {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cpu0 = rusage_ms(libc::RUSAGE_CHILDREN);
    let m0 = machine_cpu();
    let t = Instant::now();
    let n: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let out = clean(&mut make()).stdin(Stdio::null()).output().unwrap();
                        assert!(out.status.success(), "{out:?}");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    BareRate {
        rate: n as f64 / t.elapsed().as_secs_f64(),
        cpu: (rusage_ms(libc::RUSAGE_CHILDREN) - cpu0) / n as f64,
        machine: (machine_cpu() - m0) / n as f64,
    }
}

// ---------------------------------------------------------------------------------------------

/// The bookworm runtimes the runtime rows use, where built (`isobox runtime build NAME`).
/// What the bare chroot runs need in a runtime's root (a directory on the host): a tmpfs on
/// its /tmp holding the compiled hello world, and a /proc; unmounted on drop.
struct TmpMount(Vec<PathBuf>);

impl Drop for TmpMount {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("umount").arg(p).status();
        }
    }
}

type RtBackends = std::collections::HashMap<&'static str, (NativeBackend, NativeBackend)>;
type RtRoots = std::collections::HashMap<&'static str, (PathBuf, TmpMount)>;

fn runtime_backends(hello: &[u8]) -> (RtBackends, RtRoots) {
    let dir = std::env::var_os("ISOBOX_RUNTIMES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(isobox_core::runtimes::DEFAULT_DIR));
    let mut out = std::collections::HashMap::new();
    let mut roots = std::collections::HashMap::new();
    for w in WORKLOADS {
        let name = w.runtime();
        if out.contains_key(name) {
            continue;
        }
        let Some(rt) = isobox_core::runtimes::Runtime::load(&dir.join(name)) else {
            eprintln!(
                "runtime {name} is not built in {}: its rows are skipped",
                dir.display()
            );
            continue;
        };
        let make = |warm_pool| {
            NativeBackend::new(NativeConfig {
                rootfs: isobox_sandbox::RootFs::Dir(rt.root.clone()),
                warm_pool,
                ..NativeConfig::default()
            })
            .expect("native backend (run as root)")
        };
        out.insert(name, (make(0), make(2)));
        let tmp = rt.root.join("tmp");
        let proc = rt.root.join("proc");
        let mount = |fstype: &str, opts: &str, at: &Path| {
            Command::new("mount")
                .args(["-t", fstype, "-o", opts, "isobox-bench"])
                .arg(at)
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut m = TmpMount(Vec::new());
        if mount("tmpfs", "size=16m", &tmp) {
            m.0.push(tmp.clone());
        }
        if mount("proc", "nosuid,nodev,noexec", &proc) {
            m.0.push(proc.clone());
        }
        if m.0.len() == 2 {
            let bin = tmp.join("isobox-bench-hello");
            std::fs::write(&bin, hello).unwrap();
            std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            roots.insert(name, (rt.root.clone(), m));
        }
    }
    (out, roots)
}

fn main() {
    // As `isobox serve` does: in-process sandboxes are cloned by the launcher, forked while this
    // process has a single thread (ISOBOX_NO_LAUNCHER=1 leaves it out).
    if std::env::var("ISOBOX_NO_LAUNCHER").as_deref() != Ok("1") {
        isobox_sandbox::native::launcher::start().expect("sandbox launcher");
    }
    // `cargo bench` passes `--bench`; ignore arguments.
    let reps: usize = env_num("ISOBOX_BENCH_REPS", 3usize).max(1);
    let secs: u64 = env_num("ISOBOX_BENCH_SECS", 5u64).max(1);
    let scale: f64 = env_num("ISOBOX_BENCH_SCALE", 1.0f64);
    let nproc = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let load_before = loadavg();

    // The files, and the c hello world compiled once.
    let tmp = TempDir::new();
    let dir = tmp.0.clone();
    std::fs::create_dir_all(dir.join("cc")).unwrap();
    std::fs::write(dir.join("hello.py"), "print('hello')\n").unwrap();
    std::fs::write(dir.join("hello.js"), "console.log('hello')\n").unwrap();
    std::fs::write(dir.join("hello.sh"), "echo hello\n").unwrap();
    std::fs::write(dir.join("hello.c"), HELLO_C).unwrap();
    let cc = Command::new(GCC[0])
        .args(&GCC[1..])
        .arg(dir.join("hello"))
        .arg(dir.join("hello.c"))
        .arg("-lm")
        .status()
        .expect("gcc");
    assert!(cc.success(), "gcc failed");
    let hello = std::fs::read(dir.join("hello")).unwrap();

    let bwrap = sh("bwrap", &["--version"]);
    let instance = format!("bench-suite-{}", std::process::id());
    let docker = match DockerBackend::new(DockerConfig {
        pool: 2,
        pool_mode: PoolMode::Started,
        instance: instance.clone(),
        ..DockerConfig::default()
    }) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("docker backend unavailable, docker rows skipped: {e}");
            None
        }
    };
    let docker_why = docker
        .is_none()
        .then_some("docker backend unavailable (dockerd, image?)");
    let (rt, rt_roots) = runtime_backends(&hello);
    let ctx = Ctx {
        dir: dir.clone(),
        hello,
        isobox: PathBuf::from(env!("CARGO_BIN_EXE_isobox")),
        seccomp: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/seccomp.json")
            .to_str()
            .expect("utf-8 path")
            .to_string(),
        bwrap: bwrap.is_some(),
        cold: NativeBackend::new(NativeConfig::default()).expect("native backend (run as root)"),
        warm: NativeBackend::new(NativeConfig {
            warm_pool: 2,
            ..NativeConfig::default()
        })
        .expect("native backend (run as root)"),
        rt,
        rt_roots,
        docker,
        instance,
    };
    let layout = ctx.cold.cgroup_layout().describe();

    // 1. Latency: every repetition runs every case, workload by workload, mechanisms side by side.
    let mut cases: Vec<Case> = Vec::new();
    for w in WORKLOADS {
        for m in MECHS {
            if m.applies(w) && ctx.available(m, w) {
                cases.push(Case {
                    mech: m,
                    wl: w,
                    runs: ((w.runs(m) as f64 * scale).round() as usize).max(2),
                    reps: Vec::new(),
                    failures: 0,
                    first_error: None,
                });
            }
        }
    }
    ctx.settle(Mech::DockerPooled);
    let progress = |rep: usize, case: &Case, t: Instant| {
        let last = case.reps.last();
        eprintln!(
            "[latency rep {rep}/{reps}, {:.0} s] {} / {}: p50 {} ms p99 {} ms ({} runs, {:.1} s{})",
            started.elapsed().as_secs_f64(),
            case.mech.label(case.wl),
            case.wl.name(),
            last.map_or("-".into(), |r| f2(r.p50)),
            last.map_or("-".into(), |r| f2(r.p99)),
            case.runs,
            t.elapsed().as_secs_f64(),
            if case.failures > 0 {
                format!(", {} failures so far", case.failures)
            } else {
                String::new()
            }
        );
    };
    for rep in 1..=reps {
        for w in WORKLOADS {
            // Every mechanism but docker's in turns, run by run; then docker's, case by case.
            let (docker, turns): (Vec<usize>, Vec<usize>) = (0..cases.len())
                .filter(|&i| cases[i].wl == w)
                .partition(|&i| matches!(cases[i].mech, Mech::DockerRun | Mech::DockerPooled));
            let t = Instant::now();
            measure_turns(&ctx, &mut cases, &turns);
            ctx.settle(Mech::Warm);
            for &i in &turns {
                progress(rep, &cases[i], t);
            }
            for i in docker {
                let t = Instant::now();
                measure_rep(&ctx, &mut cases[i]);
                ctx.settle(cases[i].mech);
                progress(rep, &cases[i], t);
            }
        }
    }
    let latency_secs = started.elapsed().as_secs_f64();
    // The pools of this process are released before the HTTP part.
    if let Some(b) = &ctx.docker {
        b.close();
    }

    // 2. HTTP through a separate server process, and the bare rate on all cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The bare rate is taken right before and right after the cache-off server (drift).
    let mut bare_par: Vec<(BareRate, BareRate)> = Vec::new();
    let mut bwrap_par: Vec<BareRate> = Vec::new();
    let mut off: Vec<Vec<Load>> = Vec::new();
    let mut hit: Vec<Vec<Load>> = Vec::new();
    let mut mems: Vec<(bool, Mem)> = Vec::new();
    for rep in 1..=reps {
        eprintln!(
            "[http rep {rep}/{reps}, {:.0} s]",
            started.elapsed().as_secs_f64()
        );
        let bare = || {
            let b = bare_parallel(nproc, secs);
            eprintln!(
                "    bare python x{nproc} workers: {:.1} runs/s, {:.1} ms CPU per run ({:.1} machine-wide)",
                b.rate, b.cpu, b.machine
            );
            b
        };
        let before = bare();
        let (l, m) = http_rep(&rt, &ctx.isobox, secs, false);
        off.push(l);
        mems.push((false, m));
        bare_par.push((before, bare()));
        if ctx.bwrap {
            let b = bwrap_parallel(nproc, secs);
            eprintln!(
                "    bwrap python x{nproc} workers: {:.1} runs/s, {:.1} ms machine-wide",
                b.rate, b.machine
            );
            bwrap_par.push(b);
        }
        let (l, m) = http_rep(&rt, &ctx.isobox, secs, true);
        hit.push(l);
        mems.push((true, m));
    }
    let total = started.elapsed().as_secs_f64();

    // ---------------------------------------------------------------------------------------
    // The report (Markdown).
    let find = |m: Mech, w: Wl| {
        cases
            .iter()
            .find(|c| c.mech == m && c.wl == w && !c.reps.is_empty())
    };
    let p50 = |m: Mech, w: Wl| find(m, w).map_or(f64::NAN, |c| c.p50());
    let p99 = |m: Mech, w: Wl| find(m, w).map_or(f64::NAN, |c| c.p99());

    println!("## Latency per run\n");
    println!(
        "Sequential runs, one client. {reps} repetitions; each figure is the median of the \
         repetitions' figures (p50 spread: the lowest and highest repetition p50). Within a \
         repetition the mechanisms of a workload take turns run by run (the order rotating each \
         round), so the rows compared with each other met the same moments of the host; the \
         docker rows follow, case by case. Overhead: p50 \
         minus the bare p50 of the same workload (for `isobox run hello.c`: minus bare `gcc` + \
         run). runs/s = 1000 / mean latency. Warm pool and docker pool: full before each run \
         (the refill wait is not timed). cgroups: {layout}.\n\n\
         CPU per run (ms, the refills included): machine, all of the host's CPUs (/proc/stat); \
         sandbox, IsoBox's sandbox cgroups (cpuacct of the parent group: the init and the \
         program once they joined their run's group); process, IsoBox outside the sandboxes \
         (the supervisor threads of the in-process backends, the `isobox run` process and \
         the part of its sandbox before the join; the program itself for bare and bwrap rows); \
         kernel+other, the rest (kernel workers tearing namespaces down, the launcher's clones, \
         dockerd). /proc/stat counts in 10 ms ticks: about 0.1 ms of noise per figure.\n"
    );
    println!("Workloads: python `/usr/bin/python3 -c \"print('hello')\"`, node `/usr/bin/node -e \"console.log('hello')\"`, \
              c a hello world compiled once with `gcc -std=gnu17 -O2` (sandboxes get it as an executable work-dir file, bwrap as a bind), \
              bash `/usr/bin/bash -c \"echo hello\"`; `isobox run` gets hello.py/.js/.c/.sh. Bare and bwrap runs get the sandbox's clean environment.\n");
    println!("| mechanism | workload | runs x reps | p50 ms | p99 ms | runs/s | overhead p50 ms | p50 spread ms | CPU machine | CPU sandbox | CPU process | CPU kernel+other | failures |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in WORKLOADS {
        for c in cases.iter().filter(|c| c.wl == w) {
            let base = p50(c.mech.baseline(w), w);
            let over = if c.mech == Mech::Bare || c.mech == Mech::BareCompile {
                "".to_string()
            } else {
                signed(c.p50() - base)
            };
            let (machine, sandbox, process) = (
                c.cpu(|u| u.machine),
                c.cpu(|u| u.sandbox),
                c.cpu(|u| u.process),
            );
            println!(
                "| {} | {} | {} x {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.mech.label(w),
                w.name(),
                c.runs,
                c.reps.len(),
                f1(c.p50()),
                f1(c.p99()),
                f1(c.rate()),
                over,
                c.spread(),
                f1(machine),
                f1(sandbox),
                f1(process),
                f1(machine - sandbox - process),
                c.failures
            );
        }
    }
    if !ctx.bwrap {
        println!("\nbwrap rows skipped: `bwrap` not found.");
    }
    if let Some(why) = docker_why {
        println!("\ndocker rows skipped: {why}.");
    }
    for c in &cases {
        if let Some(e) = &c.first_error {
            println!(
                "\nfirst failure of {} / {}: `{}`",
                c.mech.label(c.wl),
                c.wl.name(),
                e.replace('`', "'")
            );
        }
    }

    // HTTP tables.
    let bare_of = |f: fn(&BareRate) -> f64| {
        bare_par
            .iter()
            .map(|(a, b)| (f(a) + f(b)) / 2.0)
            .collect::<Vec<_>>()
    };
    let bare_rates = bare_of(|b| b.rate);
    let bare_rate = median(&bare_rates);
    let bare_cpu = median(&bare_of(|b| b.cpu));
    let bare_machine = median(&bare_of(|b| b.machine));
    let level = |v: &[Vec<Load>], i: usize| -> Load {
        let col = |f: fn(&Load) -> f64| median(&v.iter().map(|r| f(&r[i])).collect::<Vec<_>>());
        Load {
            rps: col(|l| l.rps),
            p50: col(|l| l.p50),
            p99: col(|l| l.p99),
            srv_self: col(|l| l.srv_self),
            srv_children: col(|l| l.srv_children),
            client: col(|l| l.client),
            machine: col(|l| l.machine),
            errors: v.iter().map(|r| r[i].errors).sum(),
            unexpected: v.iter().map(|r| r[i].unexpected).sum(),
        }
    };
    println!("\n## HTTP API (`isobox serve` as its own process)\n");
    println!(
        "python hello (`{BODY}`) to POST /api/v1/execute of a separate `target/release/isobox serve` \
         (default slots and warm pool = {nproc}, ISOBOX_QUEUE=1000, rate limit out of the way, \
         default logging), a fresh server per cache mode and repetition; {secs} s per row, \
         reqwest clients in the bench process on the same {nproc} cores. CPU per request: the \
         server's own threads and its sandboxes (reaped children), from /proc/<pid>/stat \
         (10 ms ticks); client: the bench process; machine: all busy CPU of the host \
         (/proc/stat), which also holds what no process is charged for (kernel workers). \
         Medians of {reps} repetitions; errors and unexpected answers summed.\n"
    );
    println!(
        "Bare python on the same cores, {nproc} workers back to back (right before and after \
         each cache-off server, averaged): **{} runs/s** (repetitions: {}), {} ms CPU per run, \
         {} ms machine-wide.\n",
        f1(bare_rate),
        bare_rates
            .iter()
            .map(|x| f1(*x))
            .collect::<Vec<_>>()
            .join(", "),
        f1(bare_cpu),
        f1(bare_machine)
    );
    // The namespace-only floor, measured right after each bare rate.
    let bwrap_ratios: Vec<f64> = bwrap_par
        .iter()
        .zip(&bare_rates)
        .map(|(b, bare)| b.rate / bare)
        .collect();
    if !bwrap_par.is_empty() {
        println!(
            "`bwrap --unshare-all` python on the same cores, {nproc} workers back to back (no \
             HTTP, no cgroups, no seccomp: the floor of a namespace sandbox): **{} runs/s = {:.0}% \
             of bare** (repetitions: {}), {} ms machine-wide per run.\n",
            f1(median(
                &bwrap_par.iter().map(|b| b.rate).collect::<Vec<_>>()
            )),
            100.0 * median(&bwrap_ratios),
            bwrap_ratios
                .iter()
                .map(|r| format!("{:.0}%", 100.0 * r))
                .collect::<Vec<_>>()
                .join(", "),
            f1(median(
                &bwrap_par.iter().map(|b| b.machine).collect::<Vec<_>>()
            )),
        );
    }
    println!("| cache | clients | req/s | p50 ms | p99 ms | server CPU ms/req | sandboxes CPU ms/req | client CPU ms/req | machine CPU ms/req | errors | unexpected |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut off_levels = Vec::new();
    let mut hit_levels = Vec::new();
    for (name, v, out) in [
        ("off", &off, &mut off_levels),
        ("hits", &hit, &mut hit_levels),
    ] {
        for (i, c) in CLIENTS.iter().enumerate() {
            let l = level(v, i);
            let cpu = |x: f64| if name == "hits" { f2(x) } else { f1(x) };
            println!(
                "| {name} | {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f1(l.rps),
                f2(l.p50),
                f2(l.p99),
                cpu(l.srv_self),
                cpu(l.srv_children),
                cpu(l.client),
                cpu(l.machine),
                l.errors,
                l.unexpected
            );
            out.push((*c, l));
        }
    }
    println!("\n### Server memory (MiB)\n");
    println!("VmRSS of the `isobox serve` process (its sandboxes are other processes): when it logged that it listens, idle 2 s later (warm pool built, no request yet), idle 2 s after the load; VmHWM: its peak.\n");
    println!("| cache | at listen | idle after start | idle after load | peak (VmHWM) |");
    println!("|---|---:|---:|---:|---:|");
    let mem_of = |hits: bool, f: fn(&Mem) -> f64| {
        median(
            &mems
                .iter()
                .filter(|(h, _)| *h == hits)
                .map(|(_, m)| f(m))
                .collect::<Vec<_>>(),
        )
    };
    for (name, h) in [("off", false), ("hits", true)] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            f1(mem_of(h, |m| m.at_listen)),
            f1(mem_of(h, |m| m.idle_start)),
            f1(mem_of(h, |m| m.idle_after)),
            f1(mem_of(h, |m| m.hwm))
        );
    }

    // Targets.
    println!("\n## Targets\n");
    println!("Ratios from this run (medians of the repetitions).\n");
    println!("```");
    // Overheads over the bare program, ours against bwrap's, at the median and the p99. The
    // CLI's C row compiles each run: against two bwrap runs (the compiler's and the program's).
    let versus = |name: String, ov: f64, bw: f64| {
        if bw.is_nan() || ov.is_nan() {
            println!("SKIP {name}: not measured");
            return;
        }
        println!(
            "{} {name}: {} ms vs {} ms ({})",
            pass(ov <= bw),
            signed(ov),
            signed(bw),
            if ov <= bw {
                format!("{:.1} ms to spare", bw - ov)
            } else {
                format!("over by {:.1} ms", ov - bw)
            }
        );
    };
    for w in WORKLOADS {
        for q in ["p50", "p99"] {
            let pick = |m: Mech, w: Wl| if q == "p50" { p50(m, w) } else { p99(m, w) };
            let bare = pick(Mech::Bare, w);
            let bw = pick(Mech::Bwrap, w) - bare;
            for (m, name) in [(Mech::Warm, "warm"), (Mech::Cold, "cold")] {
                versus(
                    format!("native {name} overhead <= bwrap overhead, {} {q}", w.name()),
                    pick(m, w) - bare,
                    bw,
                );
            }
        }
        let bw = p50(Mech::Bwrap, w) - p50(Mech::Bare, w);
        let (bw, what) = if w == Wl::C {
            (2.0 * bw, "2 x bwrap overhead (compile + run)")
        } else {
            (bw, "bwrap overhead")
        };
        versus(
            format!("`isobox run` overhead <= {what}, {} p50", w.name()),
            p50(Mech::Cli, w) - p50(Mech::Cli.baseline(w), w),
            bw,
        );
    }
    // A runtime's root costs no more per run than the host's /usr.
    for w in WORKLOADS {
        for (rt, host, name) in [
            (Mech::RtCold, Mech::Cold, "cold"),
            (Mech::RtWarm, Mech::Warm, "warm"),
        ] {
            let d = (p50(rt, w) - p50(Mech::RtBare, w)) - (p50(host, w) - p50(Mech::Bare, w));
            if d.is_nan() {
                println!(
                    "SKIP runtime root overhead <= host /usr overhead + 0.3 ms, {name}, {}: {} not built",
                    w.name(),
                    w.runtime()
                );
                continue;
            }
            println!(
                "{} runtime root overhead <= host /usr overhead + 0.3 ms, {name}, {} ({}): {} ms",
                pass(d <= 0.3),
                w.name(),
                w.runtime(),
                signed(d)
            );
        }
    }
    // Per repetition: the best client count's rate over that repetition's bare rate; the
    // median of those ratios (the two were measured minutes apart at most).
    let ratios: Vec<f64> = off
        .iter()
        .zip(&bare_rates)
        .map(|(r, bare)| r.iter().map(|l| l.rps).fold(0.0, f64::max) / bare)
        .collect();
    let ratio = median(&ratios);
    let best_off = off_levels
        .iter()
        .max_by(|a, b| a.1.rps.partial_cmp(&b.1.rps).unwrap())
        .unwrap();
    println!(
        "{} HTTP cache off >= 75% of bare python x{nproc}: {:.0}% (median of the repetitions' best/bare: {}); medians: best {} req/s ({} clients) vs {} runs/s bare",
        pass(ratio >= 0.75),
        100.0 * ratio,
        ratios
            .iter()
            .map(|r| format!("{:.0}%", 100.0 * r))
            .collect::<Vec<_>>()
            .join(", "),
        f1(best_off.1.rps),
        best_off.0,
        f1(bare_rate),
    );
    if !bwrap_ratios.is_empty() {
        println!(
            "   (for scale: bwrap --unshare-all alone, no HTTP/cgroups/seccomp, reaches {:.0}% of bare on the same cores)",
            100.0 * median(&bwrap_ratios)
        );
    }
    println!(
        "     CPU per python hello, machine-wide: {} ms through HTTP ({} clients: server {} + sandboxes {} + client {} + unattributed {}) vs {} ms bare: at most {:.0}% of the bare rate when CPU-bound",
        f1(best_off.1.machine),
        best_off.0,
        f1(best_off.1.srv_self),
        f1(best_off.1.srv_children),
        f1(best_off.1.client),
        f1(best_off.1.machine - best_off.1.srv_self - best_off.1.srv_children - best_off.1.client),
        f1(bare_machine),
        100.0 * bare_machine / best_off.1.machine
    );
    let within = hit_levels
        .iter()
        .filter(|(_, l)| l.p99 < 5.0)
        .max_by(|a, b| a.1.rps.partial_cmp(&b.1.rps).unwrap());
    let best_hit = within.unwrap_or_else(|| {
        hit_levels
            .iter()
            .max_by(|a, b| a.1.rps.partial_cmp(&b.1.rps).unwrap())
            .unwrap()
    });
    println!(
        "{} HTTP cache hits >= 10000 req/s with p99 < 5 ms on {nproc} cores: {} req/s, p99 {} ms ({} clients){}",
        pass(within.is_some() && best_hit.1.rps >= 10_000.0),
        f1(best_hit.1.rps),
        f2(best_hit.1.p99),
        best_hit.0,
        if within.is_none() {
            " (no client count had p99 < 5 ms)"
        } else {
            ""
        }
    );
    for w in WORKLOADS {
        let (pooled, run) = (p50(Mech::DockerPooled, w), p50(Mech::DockerRun, w));
        if pooled.is_nan() || run.is_nan() {
            continue;
        }
        println!(
            "{} docker pooled p50 <= 0.5 x docker run --rm p50, {}: {} / {} ms = {:.2}",
            pass(pooled <= 0.5 * run),
            w.name(),
            f1(pooled),
            f1(run),
            pooled / run
        );
    }
    for (what, f) in [
        ("after start", (|m: &Mem| m.idle_start) as fn(&Mem) -> f64),
        ("after load", |m: &Mem| m.idle_after),
    ] {
        let worst = mems
            .iter()
            .map(|(_, m)| f(m))
            .fold(f64::NEG_INFINITY, f64::max);
        let med = median(&mems.iter().map(|(_, m)| f(m)).collect::<Vec<_>>());
        println!(
            "{} server idle RSS {what} < 30 MiB: median {} MiB, largest {} MiB of {} servers",
            pass(med < 30.0),
            f1(med),
            f1(worst),
            mems.len()
        );
    }
    println!("```");

    // Leftovers and time.
    let ps = |filter: String| match sh("docker", &["ps", "-aq", "--filter", &filter]) {
        Some(s) if s.is_empty() => "none".to_string(),
        Some(s) => s.replace('\n', " "),
        None => "? (docker ps failed)".into(),
    };
    println!(
        "\nLoad average (1, 5, 15 min) before the bench: {load_before}; after: {} (other work on \
         the machine shows here).",
        loadavg()
    );
    println!(
        "\nLeftover containers of this bench: {}. Bench time: {:.0} s (latency {:.0} s, HTTP {:.0} s).",
        ps(format!("label=isobox.instance={}", ctx.instance)),
        total,
        latency_secs,
        total - latency_secs
    );
    drop(ctx);
    drop(tmp);
}
