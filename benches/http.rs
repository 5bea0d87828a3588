//! Load through HTTP: python hello worlds against an in-process `isobox serve`, with the dedup
//! cache off (every request runs) and with cache hits, next to the bare-process rate.
//!
//! `cargo bench --bench http` (as root). `ISOBOX_BENCH_SECS` (default 10) per case,
//! `ISOBOX_BENCH_CONCURRENCY` (default 8) clients.

mod common;
use common::{env_num, in_process_server};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn start(cache: bool) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut vars = vec![("DEDUP_ENABLED", cache.to_string())];
    for k in ["ISOBOX_WARM_POOL", "ISOBOX_SLOTS"] {
        if let Ok(v) = std::env::var(k) {
            vars.push((k, v));
        }
    }
    in_process_server(&vars).await
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0
}

async fn load(url: &str, secs: u64, clients: u64, unique: bool) -> (f64, f64, f64, u64) {
    let client = reqwest::Client::new();
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, counter, url) = (client.clone(), counter.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let stdin = if unique { n.to_string() } else { "same".to_string() };
                let body = serde_json::json!({"language": "python", "code": "print('hello', input())", "stdin": stdin});
                let t = Instant::now();
                match client.post(format!("{url}/api/v1/execute")).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
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
    let rps = all.len() as f64 / started.elapsed().as_secs_f64();
    (rps, pct(&mut all, 0.5), pct(&mut all, 0.99), errors)
}

fn bare_rate(secs: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    let t = Instant::now();
    while Instant::now() < deadline {
        let out = std::process::Command::new("/usr/bin/python3")
            .args(["-c", "print('hello', 1)"])
            .output()
            .unwrap();
        assert!(out.status.success());
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    // As `isobox serve` does: the sandbox launcher first, while this process has one thread
    // (ISOBOX_NO_LAUNCHER=1 leaves it out, to measure what it saves).
    if std::env::var("ISOBOX_NO_LAUNCHER").as_deref() != Ok("1") {
        isobox_sandbox::native::launcher::start().expect("sandbox launcher");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let secs = env_num("ISOBOX_BENCH_SECS", 10);
    let clients = env_num("ISOBOX_BENCH_CONCURRENCY", 8);
    println!("python hello through HTTP, {clients} clients, {secs} s per case");
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>8}",
        "case", "req/s", "p50 ms", "p99 ms", "errors"
    );
    let bare = tokio::task::spawn_blocking(move || bare_rate(secs))
        .await
        .unwrap();
    println!(
        "{:<34} {:>10.1}",
        "bare python3 (1 process at a time)", bare
    );
    let (url, stop) = start(false).await;
    let (rps, p50, p99, err) = load(&url, secs, clients, true).await;
    println!(
        "{:<34} {:>10.1} {:>10.1} {:>10.1} {:>8}",
        "cache off (every request runs)", rps, p50, p99, err
    );
    let _ = stop.send(());
    let (url, stop) = start(true).await;
    let (rps, p50, p99, err) = load(&url, secs, clients, false).await;
    println!(
        "{:<34} {:>10.1} {:>10.1} {:>10.1} {:>8}",
        "cache hits (identical requests)", rps, p50, p99, err
    );
    let _ = stop.send(());
}
