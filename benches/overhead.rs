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

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let runs: usize = std::env::var("ISOBOX_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let backend = Arc::new(
        NativeBackend::new(NativeConfig::default()).expect("native backend (run as root)"),
    );
    println!(
        "isobox native sandbox overhead, {runs} runs each, cgroups: {}",
        backend.cgroup_layout().describe()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "case", "median ms", "p90 ms", "mean ms", "runs/s"
    );
    for argv in [&["/bin/true"][..], &["/usr/bin/python3", "-c", "pass"][..]] {
        let name = argv.join(" ");
        for _ in 0..5 {
            bare(argv);
            backend.execute(&spec(argv)).unwrap();
        }
        let mut b = Vec::new();
        let mut s = Vec::new();
        let mut setup = Vec::new();
        for _ in 0..runs {
            b.push(bare(argv));
            let t = Instant::now();
            let r = backend.execute(&spec(argv)).unwrap();
            s.push(t.elapsed());
            setup.push(r.setup_time);
            assert_eq!(r.phases[0].status, Status::Ok);
        }
        let (bm, bp, bmean) = stats(b);
        let (sm, sp, smean) = stats(s);
        let (um, up, umean) = stats(setup);
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>10.2} {:>10.0}",
            format!("bare {name}"),
            bm,
            bp,
            bmean,
            1000.0 / bmean
        );
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>10.2} {:>10.0}",
            format!("sandboxed {name}"),
            sm,
            sp,
            smean,
            1000.0 / smean
        );
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>10.2}",
            "  sandbox setup only", um, up, umean
        );
        println!(
            "{:<28} {:>10.2} {:>10.2} {:>10.2}",
            "  overhead (sandboxed-bare)",
            sm - bm,
            sp - bp,
            smean - bmean
        );
    }
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
