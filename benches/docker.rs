//! Docker backend latency: the same hello-world programs run bare, in the native sandbox (warm
//! pool), through the docker backend (pool of started containers, of created containers, no
//! pool) and through plain `docker run --rm` with the same hardening, side by side. Prints
//! p50/p90/p99 per run, the rate of 2 concurrent clients, and pooled docker / `docker run`.
//!
//! `cargo bench --bench docker` (as root, with a running dockerd and the `isobox-runtime` image:
//! `isobox image build`). `ISOBOX_BENCH_RUNS=N` sets the runs per case (default 40),
//! `ISOBOX_BENCH_QUICK=1` runs 5.

mod common;
use common::{check_output, env_num, pct, sh};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isobox_sandbox::docker::{DockerConfig, PoolMode};
use isobox_sandbox::{
    Backend, DockerBackend, ExecSpec, Limits, NativeBackend, NativeConfig, Status,
};

/// Runs of each case that are not counted.
const WARMUP: usize = 3;
/// Concurrent clients of the throughput measurement.
const CLIENTS: usize = 2;
/// How long the "pool ready" case waits for the pool to refill before each run.
const REFILL_WAIT: Duration = Duration::from_secs(2);

/// A program and the stdout it must print.
struct Workload {
    name: &'static str,
    argv: &'static [&'static str],
    stdout: &'static str,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "python3 print('hello')",
        argv: &["/usr/bin/python3", "-c", "print('hello')"],
        stdout: "hello\n",
    },
    Workload {
        name: "/bin/true",
        argv: &["/bin/true"],
        stdout: "",
    },
];

/// What one successful run measured.
struct Run {
    time: Duration,
    /// A pooled container/sandbox was used (backends only).
    warm: bool,
}

/// One way of running a workload; shared by the concurrent clients.
type RunFn<'a> = dyn Fn(&Workload) -> Result<Run, String> + Sync + 'a;

/// One line of the table.
struct Row {
    case: String,
    workload: &'static str,
    times: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
    /// Runs per second with `CLIENTS` clients, when measured.
    rate: Option<f64>,
    /// Sequential runs that used a pooled container/sandbox, for the backends.
    warm: Option<usize>,
}

/// The spec of a backend run, with the docker pool's tmpfs shape (another shape bypasses it).
fn spec(w: &Workload) -> ExecSpec {
    let argv = w.argv.iter().map(|s| s.to_string()).collect();
    let mut spec = ExecSpec::single(argv, vec![], Limits::default());
    spec.tmpfs_bytes = 64 << 20;
    spec.tmpfs_inodes = 16 * 1024;
    spec
}

/// The floor: fork+exec+wait of the program itself.
fn bare(w: &Workload) -> Result<Run, String> {
    let t = Instant::now();
    let out = Command::new(w.argv[0])
        .args(&w.argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("spawn: {e}"))?;
    let time = t.elapsed();
    check_output(out, w.stdout.as_bytes())?;
    Ok(Run { time, warm: false })
}

/// One run through a backend, timed around `execute` as a client sees it.
fn sandboxed(b: &dyn Backend, w: &Workload) -> Result<Run, String> {
    let spec = spec(w);
    let t = Instant::now();
    let r = b.execute(&spec).map_err(|e| e.to_string())?;
    let time = t.elapsed();
    let p = &r.phases[0];
    if p.status != Status::Ok || p.stdout != w.stdout.as_bytes() {
        return Err(format!(
            "status {} stdout {:?} stderr {:?} {}",
            p.status.as_str(),
            String::from_utf8_lossy(&p.stdout),
            String::from_utf8_lossy(&p.stderr),
            p.internal_error.as_deref().unwrap_or("")
        ));
    }
    Ok(Run { time, warm: r.warm })
}

/// `docker run --rm` of the runtime image with the backend's hardening flags, through the CLI.
fn docker_run(seccomp: Option<&str>, w: &Workload) -> Result<Run, String> {
    let mut cmd = common::docker_run(seccomp, w.argv);
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker cli: {e}"))?;
    let time = t.elapsed();
    check_output(out, w.stdout.as_bytes())?;
    Ok(Run { time, warm: false })
}

/// Warms up, then times `runs` sequential runs (each after `before`, which is not timed) and,
/// when `rate` is set, `runs` more split over `CLIENTS` threads.
fn measure(
    case: &str,
    w: &'static Workload,
    runs: usize,
    run: &RunFn,
    before: &dyn Fn(),
    rate: bool,
    backend: bool,
) -> Row {
    let mut row = Row {
        case: case.to_string(),
        workload: w.name,
        times: Vec::new(),
        failures: 0,
        first_error: None,
        rate: None,
        warm: backend.then_some(0),
    };
    let note = |row: &mut Row, r: Result<Run, String>, counted: bool| match r {
        Ok(r) if counted => {
            row.times.push(r.time);
            if let Some(n) = row.warm.as_mut() {
                *n += usize::from(r.warm);
            }
        }
        Ok(_) => {}
        Err(e) => {
            row.failures += 1;
            row.first_error.get_or_insert(e);
        }
    };
    for _ in 0..WARMUP {
        before();
        note(&mut row, run(w), false);
    }
    for _ in 0..runs {
        before();
        note(&mut row, run(w), true);
    }
    row.times.sort();
    if rate {
        let t = Instant::now();
        let results: Vec<Result<Run, String>> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| s.spawn(|| (0..runs / CLIENTS).map(|_| run(w)).collect::<Vec<_>>()))
                .collect();
            clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect()
        });
        let elapsed = t.elapsed().as_secs_f64();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        for r in results.into_iter().filter(|r| r.is_err()) {
            note(&mut row, r, false);
        }
        row.rate = Some(ok as f64 / elapsed);
    }
    eprintln!("  done: {case} / {} ({} failures)", w.name, row.failures);
    row
}

/// Runs both workloads through one docker backend configuration, then removes its containers.
fn docker_cases(rows: &mut Vec<Row>, runs: usize, case: &str, pool: usize, mode: PoolMode) {
    let b = DockerBackend::new(DockerConfig {
        pool,
        pool_mode: mode,
        instance: format!("bench-{}", std::process::id()),
        ..DockerConfig::default()
    })
    .expect("docker backend (dockerd running, image built with `isobox image build`)");
    let run = |w: &Workload| sandboxed(&b, w);
    // Back-to-back, as a client that sends its next run as soon as one ends.
    for w in &WORKLOADS {
        rows.push(measure(case, w, runs, &run, &|| {}, true, true));
    }
    if pool > 0 && mode == PoolMode::Started {
        // An idle server: its whole pool ready, nothing being prepared (the wait is not timed).
        let refill = || {
            let t = Instant::now();
            while b.pooled() < pool && t.elapsed() < REFILL_WAIT {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        for w in &WORKLOADS {
            let case = format!("{case}, idle (pool full before each run)");
            rows.push(measure(&case, w, runs, &run, &refill, false, true));
        }
    }
    b.close();
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let runs = if std::env::var("ISOBOX_BENCH_QUICK").as_deref() == Ok("1") {
        5
    } else {
        env_num("ISOBOX_BENCH_RUNS", 40)
    }
    .max(CLIENTS);
    let started = Instant::now();
    let seccomp = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/seccomp.json");
    let seccomp = seccomp.to_str().expect("utf-8 path");
    let mut rows = Vec::new();

    for w in &WORKLOADS {
        rows.push(measure("bare process", w, runs, &bare, &|| {}, true, false));
    }
    {
        let native = NativeBackend::new(NativeConfig {
            warm_pool: 2,
            ..NativeConfig::default()
        })
        .expect("native backend (run as root)");
        let run = |w: &Workload| sandboxed(&native, w);
        for w in &WORKLOADS {
            rows.push(measure(
                "native, warm pool 2",
                w,
                runs,
                &run,
                &|| {},
                true,
                true,
            ));
        }
    }
    docker_cases(
        &mut rows,
        runs,
        "docker, pool 2 started",
        2,
        PoolMode::Started,
    );
    docker_cases(
        &mut rows,
        runs,
        "docker, pool 2 created",
        2,
        PoolMode::Created,
    );
    docker_cases(&mut rows, runs, "docker, pool 0", 0, PoolMode::Started);
    let plain = |w: &Workload| docker_run(None, w);
    let hardened = |w: &Workload| docker_run(Some(seccomp), w);
    for w in &WORKLOADS {
        rows.push(measure(
            "docker run --rm",
            w,
            runs,
            &plain,
            &|| {},
            true,
            false,
        ));
        let case = "docker run --rm, seccomp=deploy/seccomp.json";
        rows.push(measure(case, w, runs, &hardened, &|| {}, true, false));
    }

    // The table, one block per workload.
    let tail = if runs < 100 { "max" } else { "p99" };
    println!("\nisobox docker backend latency, {runs} runs per case ({WARMUP} warm-up runs not counted)\n");
    println!(
        "| case | workload | p50 ms | p90 ms | {tail} ms | runs/s ({CLIENTS} clients) | pooled | failures |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for w in &WORKLOADS {
        for r in rows.iter().filter(|r| r.workload == w.name) {
            let (p50, p90, p99) = if r.times.is_empty() {
                ("-".into(), "-".into(), "-".into())
            } else {
                let q = if runs < 100 { 1.0 } else { 0.99 };
                (
                    format!("{:.1}", pct(&r.times, 0.5)),
                    format!("{:.1}", pct(&r.times, 0.9)),
                    format!("{:.1}", pct(&r.times, q)),
                )
            };
            let rate = r.rate.map_or("-".into(), |x| format!("{x:.1}"));
            let warm = r
                .warm
                .map_or("-".into(), |n| format!("{n}/{}", r.times.len()));
            println!(
                "| {} | {} | {p50} | {p90} | {p99} | {rate} | {warm} | {} |",
                r.case, r.workload, r.failures
            );
        }
    }
    println!();
    let p50 = |case: &str, w: &str| {
        rows.iter()
            .find(|r| r.case == case && r.workload == w && !r.times.is_empty())
            .map(|r| pct(&r.times, 0.5))
    };
    for w in &WORKLOADS {
        for case in [
            "docker, pool 2 started",
            "docker, pool 2 started, idle (pool full before each run)",
        ] {
            if let (Some(a), Some(b)) = (p50(case, w.name), p50("docker run --rm", w.name)) {
                println!(
                    "{}: `{case}` p50 / `docker run --rm` p50 = {a:.1} / {b:.1} = {:.2} (target <= 0.5)",
                    w.name,
                    a / b
                );
            }
        }
    }
    for r in &rows {
        if let Some(e) = &r.first_error {
            println!("first failure of {} / {}: {e}", r.case, r.workload);
        }
    }
    let or_q = |s: Option<String>| s.filter(|s| !s.is_empty()).unwrap_or_else(|| "?".into());
    println!(
        "\nmachine: {} CPUs, kernel {}, docker server {}",
        or_q(sh("nproc", &[])),
        or_q(sh("uname", &["-r"])),
        or_q(sh(
            "docker",
            &["version", "--format", "{{.Server.Version}}"]
        ))
    );
    // Every backend is closed: nothing of ours may remain on the engine. Other IsoBox
    // processes sharing the engine may have theirs, hence the second filter.
    let ps = |filter: String| match sh("docker", &["ps", "-aq", "--filter", &filter]) {
        Some(s) if s.is_empty() => "none".to_string(),
        Some(s) => s.replace('\n', " "),
        None => "? (docker ps failed)".into(),
    };
    println!(
        "leftover containers (docker ps -aq --filter label=isobox): {} (of this bench: {})",
        ps("label=isobox".into()),
        ps(format!(
            "label=isobox.instance=bench-{}",
            std::process::id()
        ))
    );
    println!("total bench time: {:.0} s", started.elapsed().as_secs_f64());
}
