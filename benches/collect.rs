//! The cost of taking files out of a native sandbox (`ExecSpec::collect`): the same run of a
//! C-compiled `main` (which writes a small result file) with `["**"]` and without, alternated,
//! on a cold sandbox per run and from a warm pool. Prints median/p90 of the whole `execute`.
//!
//! `cargo bench --bench collect` (as root). `ISOBOX_BENCH_RUNS=N` sets the iterations per case
//! (default 50).

use std::time::{Duration, Instant};

use isobox_sandbox::{
    Backend, Collect, ExecSpec, Limits, NativeBackend, NativeConfig, Phase, SandboxFile, Status,
};

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

fn main_binary() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("isobox-bench-collect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("main.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){FILE*f=fopen(\"out.txt\",\"w\");fputs(\"42\\n\",f);\
         fclose(f);puts(\"hi\");return 0;}\n",
    )
    .unwrap();
    let out = dir.join("main");
    let st = std::process::Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success());
    let bin = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bin
}

fn spec(bin: &[u8], collect: bool) -> ExecSpec {
    ExecSpec {
        files: vec![SandboxFile {
            path: "main".into(),
            content: bin.to_vec(),
            executable: true,
            readonly: true,
        }],
        phases: vec![Phase {
            name: "run".into(),
            argv: vec!["./main".into()],
            env: vec![],
            stdin: vec![],
            limits: Limits::default(),
            continue_on_failure: false,
            stderr_to_stdout: false,
        }],
        tmpfs_bytes: 16 << 20,
        tmpfs_inodes: 1024,
        collect: collect.then(|| Collect {
            patterns: vec!["**".into()],
            max_files: 100,
            max_bytes: 16 << 20,
        }),
    }
}

fn measure(label: &str, b: &NativeBackend, bin: &[u8], runs: usize, warm: bool) {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..runs * 2 {
        let collect = i % 2 == 0;
        if warm {
            let deadline = Instant::now() + Duration::from_secs(10);
            while b.warm_count() < 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let s = spec(bin, collect);
        let t = Instant::now();
        let r = b.execute(&s).expect("execute");
        let d = t.elapsed();
        assert_eq!(r.phases[0].status, Status::Ok, "{:?}", r.phases[0]);
        assert_eq!(r.warm, warm);
        if collect {
            let c = r.collected.expect("collected");
            assert_eq!(c.files.len(), 2, "{c:?}");
            with.push(d);
        } else {
            without.push(d);
        }
    }
    let (w50, w90) = stats(with);
    let (n50, n90) = stats(without);
    println!(
        "{label}: without collect p50 {n50:.2} ms p90 {n90:.2} ms | with [\"**\"] p50 {w50:.2} ms \
         p90 {w90:.2} ms | cost p50 {:+.2} ms",
        w50 - n50
    );
}

fn main() {
    let runs: usize = std::env::var("ISOBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let bin = main_binary();
    println!(
        "C `main` ({} bytes) that writes out.txt; {runs} runs per case",
        bin.len()
    );
    let cold = NativeBackend::new(NativeConfig::default()).expect("native backend (run as root)");
    // Warm-up.
    for _ in 0..5 {
        cold.execute(&spec(&bin, true)).unwrap();
    }
    measure("cold sandbox", &cold, &bin, runs, false);
    drop(cold);
    let warm = NativeBackend::new(NativeConfig {
        warm_pool: 2,
        ..NativeConfig::default()
    })
    .expect("native backend");
    measure("warm pool   ", &warm, &bin, runs, true);
}
