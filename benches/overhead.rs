//! Sandbox overhead: the same hello-world programs run bare (fork+exec+wait) and in the native
//! sandbox, one after the other. Prints median/p90 per run, the overhead and runs per second.
//!
//! `cargo bench --bench overhead` (as root). `ISOBOX_BENCH_RUNS=N` sets the iterations
//! (default 200), `ISOBOX_BENCH_PARALLEL=N` also measures throughput with N threads.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isobox_sandbox::{Backend, ExecSpec, Limits, NativeBackend, NativeConfig, Status};

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]), mean)
}

fn spec(argv: &[&str]) -> ExecSpec {
    let argv = argv.iter().map(|s| s.to_string()).collect();
    ExecSpec::single(argv, vec![], Limits::default())
}

fn bare(argv: &[&str]) -> Duration {
    let t = Instant::now();
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("bare run");
    assert!(st.status.success());
    t.elapsed()
}

/// Runs `argv` `runs` times bare and sandboxed (alternating) and prints one block of rows.
fn measure(label: &str, backend: &NativeBackend, argv: &[&str], runs: usize) {
    let name = argv.join(" ");
    for _ in 0..5 {
        bare(argv);
        backend.execute(&spec(argv)).unwrap();
    }
    let (mut b, mut s, mut setup) = (Vec::new(), Vec::new(), Vec::new());
    let mut warm = 0;
    for _ in 0..runs {
        b.push(bare(argv));
        let t = Instant::now();
        let r = backend.execute(&spec(argv)).unwrap();
        s.push(t.elapsed());
        setup.push(r.setup_time);
        warm += usize::from(r.warm);
        assert_eq!(r.phases[0].status, Status::Ok);
        if backend.config().warm_pool > 0 {
            // Give the refill thread its turn, as the idle time between requests would.
            while backend.warm_count() < backend.config().warm_pool {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    let (bm, bp, bmean) = stats(b);
    let (sm, sp, smean) = stats(s);
    let (um, up, umean) = stats(setup);
    let row = |n: String, m: f64, p: f64, mean: f64, rps: bool| {
        let r = if rps {
            format!("{:>10.0}", 1000.0 / mean)
        } else {
            String::new()
        };
        println!("{n:<40} {m:>10.2} {p:>10.2} {mean:>10.2} {r}");
    };
    row(format!("bare {name}"), bm, bp, bmean, true);
    row(format!("{label} {name}"), sm, sp, smean, true);
    row(
        format!("  {label} setup before the program"),
        um,
        up,
        umean,
        false,
    );
    row(
        format!("  {label} overhead (sandboxed - bare)"),
        sm - bm,
        sp - bp,
        smean - bmean,
        false,
    );
    if warm > 0 {
        println!("  ({warm} of {runs} runs used a warm sandbox)");
    }
}

fn main() {
    // As `isobox serve` does: in-process sandboxes are cloned by the launcher, forked while this
    // process has a single thread (ISOBOX_NO_LAUNCHER=1 leaves it out).
    if std::env::var("ISOBOX_NO_LAUNCHER").as_deref() != Ok("1") {
        isobox_sandbox::native::launcher::start().expect("sandbox launcher");
    }
    // `cargo bench` passes `--bench`; ignore arguments.
    let runs: usize = std::env::var("ISOBOX_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let cold = NativeBackend::new(NativeConfig::default()).expect("native backend (run as root)");
    let warm = NativeBackend::new(NativeConfig {
        warm_pool: 2,
        ..NativeConfig::default()
    })
    .expect("native backend (run as root)");
    println!(
        "isobox native sandbox overhead, {runs} runs each, cgroups: {}",
        cold.cgroup_layout().describe()
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>10}",
        "case", "median ms", "p90 ms", "mean ms", "runs/s"
    );
    for argv in [&["/bin/true"][..], &["/usr/bin/python3", "-c", "pass"][..]] {
        measure("cold", &cold, argv, runs);
        measure("warm", &warm, argv, runs);
    }
    let backend = Arc::new(cold);
    if let Some(par) = std::env::var("ISOBOX_BENCH_PARALLEL")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        let argv = ["/usr/bin/python3", "-c", "pass"];
        let t = Instant::now();
        std::thread::scope(|sc| {
            for _ in 0..par {
                let b = backend.clone();
                sc.spawn(move || {
                    for _ in 0..runs / par {
                        b.execute(&spec(&argv)).unwrap();
                    }
                });
            }
        });
        let el = t.elapsed().as_secs_f64();
        println!(
            "parallel x{par}: {:.0} sandboxed python runs/s",
            (runs / par * par) as f64 / el
        );
    }
}
