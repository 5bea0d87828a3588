//! What the shared Redis path costs: real `isobox serve` processes on loopback, standalone or
//! sharing one `redis-server` (started here on a free port, stopped at the end).
//!
//! 1. Throughput of python hello with the cache off (every request a sandbox run), C clients:
//!    one standalone node, one node with Redis, two nodes with Redis (clients round-robin).
//! 2. Added latency of the shared rate limiter: GET /api/v1/languages, one client, sequential.
//! 3. Added latency of the shared cache: local hits (standalone), shared hits (run on node A,
//!    asked on node B, which only finds them in Redis), and fresh runs for reference.
//!
//! `cargo bench --bench cluster` (as root, with `redis-server` on PATH).
//! `ISOBOX_BENCH_SECS` (default 8) per timed case, `ISOBOX_BENCH_CONCURRENCY` (default 4)
//! clients in case 1, `ISOBOX_BENCH_K` (default 200) distinct programs in case 3.

mod common;
use common::{env_num, stop_child};

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bench's own `redis-server` (no persistence), stopped on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let redis = Redis { child, port };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// One `isobox serve` process, stopped (SIGTERM, SIGKILL after 10 s) on drop.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    /// A node with the cache on or off, standalone (`redis: None`) or sharing `redis`.
    /// Returns once /health answers 200 (and, with Redis, once `isobox_redis_up` is 1).
    async fn start(c: &reqwest::Client, redis: Option<&str>, cache: bool) -> Node {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_isobox"));
        cmd.arg("serve")
            .env("REST_PORT", port.to_string())
            .env("GRPC_PORT", "0")
            .env("ISOBOX_WARM_POOL", "2")
            .env("ISOBOX_RATE_LIMIT", "1000000/min")
            .env("ISOBOX_JOB_WORKERS", "0")
            .env("DEDUP_ENABLED", cache.to_string())
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(r) = redis {
            cmd.env("REDIS_URL", r);
        }
        let mut node = Node {
            child: cmd.spawn().expect("isobox serve"),
            url: format!("http://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        loop {
            if let Ok(r) = c.get(format!("{}/health", node.url)).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            if let Ok(Some(st)) = node.child.try_wait() {
                panic!("isobox serve exited before listening: {st}");
            }
            assert!(t.elapsed() < Duration::from_secs(60), "node never healthy");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if redis.is_some() {
            while metric(c, &node.url, "isobox_redis_up").await != 1.0 {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "node never saw Redis"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// Sum of a Prometheus metric's samples on a node.
async fn metric(c: &reqwest::Client, url: &str, name: &str) -> f64 {
    let Ok(r) = c.get(format!("{url}/metrics")).send().await else {
        return f64::NAN;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn py(code: &str) -> Value {
    json!({"language": "python", "code": code})
}

/// POST /api/v1/execute; Ok((latency, cached)) when the answer is 200 with status "ok" and
/// the expected stdout, Err(description) otherwise.
async fn execute(
    c: &reqwest::Client,
    url: &str,
    body: &Value,
    stdout: &str,
) -> Result<(Duration, bool), String> {
    let t = Instant::now();
    let r = c
        .post(format!("{url}/api/v1/execute"))
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let took = t.elapsed();
    if code != 200 || v["status"] != "ok" || v["stdout"] != stdout {
        return Err(format!("{code} {v}"));
    }
    Ok((took, v["cached"] == true))
}

/// Latencies of the successful requests, how many failed, and the wall time they took.
#[derive(Default)]
struct Sample {
    lat: Vec<Duration>,
    fails: u64,
    wall: Duration,
}

impl Sample {
    fn fail(&mut self, why: &str) {
        // Show the first few failures; the rest are only counted.
        if self.fails < 3 {
            eprintln!("failure: {why}");
        }
        self.fails += 1;
    }

    /// Nearest-rank percentile in ms (NaN when nothing succeeded).
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let mut v = self.lat.clone();
        v.sort();
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    }

    fn rate(&self) -> f64 {
        self.lat.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Case 1: `clients` clients posting python hello (cache off) for `secs`, client i on
/// `urls[i % urls.len()]`.
async fn load(c: &reqwest::Client, urls: &[String], secs: u64, clients: u64) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients as usize {
        let (c, url) = (c.clone(), urls[i % urls.len()].clone());
        tasks.push(tokio::spawn(async move {
            let body = py("print('hello')");
            let mut s = Sample::default();
            while Instant::now() < deadline {
                match execute(&c, &url, &body, "hello\n").await {
                    Ok((d, false)) => s.lat.push(d),
                    Ok((_, true)) => s.fail("cached with the cache off"),
                    Err(e) => s.fail(&e),
                }
            }
            s
        }));
    }
    let mut all = Sample::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.lat.extend(s.lat);
        all.fails += s.fails;
    }
    all.wall = started.elapsed();
    all
}

/// A few uncounted cache-off runs on each node (warm sandboxes, connections, interpreters).
async fn warm_up(c: &reqwest::Client, urls: &[String]) {
    for url in urls {
        for _ in 0..4 {
            execute(c, url, &py("print('hello')"), "hello\n")
                .await
                .expect("warm-up run");
        }
    }
}

/// Case 2: one client, sequential GET /api/v1/languages for `secs`.
async fn languages(c: &reqwest::Client, url: &str, secs: u64) -> Sample {
    let get = || async {
        let t = Instant::now();
        let r = c.get(format!("{url}/api/v1/languages")).send().await;
        match r {
            Ok(r) if r.status() == 200 => {
                let ok = r.bytes().await.is_ok();
                (t.elapsed(), ok)
            }
            _ => (t.elapsed(), false),
        }
    };
    // Warm-up, not counted.
    for _ in 0..20 {
        get().await;
    }
    let mut s = Sample::default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        match get().await {
            (d, true) => s.lat.push(d),
            _ => s.fail("GET /api/v1/languages not 200"),
        }
    }
    s.wall = started.elapsed();
    s
}

/// Case 3a: the same request repeated sequentially for `secs` after a first (uncounted) run;
/// every counted answer must be a cache hit.
async fn repeated_hits(c: &reqwest::Client, url: &str, secs: u64) -> Sample {
    let body = py("print('hello')");
    for _ in 0..5 {
        execute(c, url, &body, "hello\n").await.expect("first run");
    }
    let mut s = Sample::default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        match execute(c, url, &body, "hello\n").await {
            Ok((d, true)) => s.lat.push(d),
            Ok((_, false)) => s.fail("repeated request not cached"),
            Err(e) => s.fail(&e),
        }
    }
    s.wall = started.elapsed();
    s
}

/// Case 3b/3c: `print(i)` for i in 0..k, each once, sequentially on `url`; every answer must
/// have `cached == want_cached`.
async fn distinct(c: &reqwest::Client, url: &str, k: u64, want_cached: bool) -> Sample {
    let mut s = Sample::default();
    let started = Instant::now();
    for i in 0..k {
        match execute(c, url, &py(&format!("print({i})")), &format!("{i}\n")).await {
            Ok((d, cached)) if cached == want_cached => s.lat.push(d),
            Ok((_, cached)) => s.fail(&format!("print({i}): cached = {cached}")),
            Err(e) => s.fail(&e),
        }
    }
    s.wall = started.elapsed();
    s
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("({cmd}: {e})"))
}

/// One Markdown row: case, requests, failures, req/s (blank when not meaningful), p50, p99, note.
fn row(case: &str, s: &Sample, rate: bool, note: &str) -> String {
    let rate = if rate {
        format!("{:.1}", s.rate())
    } else {
        "".into()
    };
    format!(
        "| {case} | {} | {} | {rate} | {:.2} | {:.2} | {note} |",
        s.lat.len(),
        s.fails,
        s.pct(0.5),
        s.pct(0.99)
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs = env_num("ISOBOX_BENCH_SECS", 8);
    let clients = env_num("ISOBOX_BENCH_CONCURRENCY", 4);
    let k = env_num("ISOBOX_BENCH_K", 200);
    let total = Instant::now();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let redis = Redis::start();
    let rurl = redis.url();
    let mut rows = Vec::new();
    let mut fails = 0;
    let mut add = |rows: &mut Vec<String>, case: &str, s: Sample, rate: bool, note: &str| {
        fails += s.fails;
        rows.push(row(case, &s, rate, note));
        eprintln!("done: {}", rows.last().unwrap());
    };

    // 1. Throughput, cache off: every request is a sandbox run.
    for (case, shared, n) in [
        ("1a runs, 1 node standalone", false, 1),
        ("1b runs, 1 node + Redis", true, 1),
        ("1c runs, 2 nodes + Redis", true, 2),
    ] {
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(Node::start(&c, shared.then_some(rurl.as_str()), false).await);
        }
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        warm_up(&c, &urls).await;
        let s = load(&c, &urls, secs, clients).await;
        add(&mut rows, case, s, true, &format!("{clients} clients"));
        drop(nodes);
    }

    // 2. The rate limiter: node-local vs one Lua script in Redis per request.
    let mut p50 = [0.0; 2];
    for (i, (case, shared)) in [
        ("2a GET languages, standalone", false),
        ("2b GET languages, + Redis", true),
    ]
    .into_iter()
    .enumerate()
    {
        let node = Node::start(&c, shared.then_some(rurl.as_str()), false).await;
        let s = languages(&c, &node.url, secs).await;
        p50[i] = s.pct(0.5);
        let note = if shared {
            format!("p50 +{:.3} ms vs standalone", p50[1] - p50[0])
        } else {
            "1 client, sequential".into()
        };
        add(&mut rows, case, s, true, &note);
    }

    // 3a. Local cache hits on a standalone node.
    let node = Node::start(&c, None, true).await;
    let s = repeated_hits(&c, &node.url, secs).await;
    add(
        &mut rows,
        "3a cache hit, local",
        s,
        true,
        "same request, sequential",
    );
    drop(node);

    // 3b/3c. K programs run on A (fresh runs: cache miss + sandbox), then asked once each on B,
    // which has them only in Redis (local miss, Redis hit).
    let a = Node::start(&c, Some(&rurl), true).await;
    let b = Node::start(&c, Some(&rurl), true).await;
    // Uncounted warm-up on both with programs outside the measured set.
    for (i, url) in [&a.url, &b.url].into_iter().enumerate() {
        for j in 0..4 {
            let code = format!("print('warm {i} {j}')");
            let out = format!("warm {i} {j}\n");
            execute(&c, url, &py(&code), &out).await.expect("warm-up");
        }
    }
    let fresh = distinct(&c, &a.url, k, false).await;
    let hits = distinct(&c, &b.url, k, true).await;
    let b_runs = metric(&c, &b.url, "isobox_run_duration_seconds_count").await;
    add(
        &mut rows,
        "3b cache hit, shared (Redis)",
        hits,
        false,
        &format!("K={k} on node B; B's sandbox runs incl. 4 warm-up: {b_runs}"),
    );
    add(
        &mut rows,
        "3c fresh run (miss + sandbox)",
        fresh,
        false,
        &format!("the same K={k} on node A, first time"),
    );
    drop((a, b));
    drop(redis);

    println!();
    println!(
        "machine: nproc {} | kernel {} | {}",
        sh("nproc", &[]),
        sh("uname", &["-r"]),
        sh("redis-server", &["--version"])
    );
    println!(
        "python hello (`print('hello')`), ISOBOX_WARM_POOL=2, {secs} s per timed case, {:.0} s in all",
        total.elapsed().as_secs_f64()
    );
    println!();
    println!("| case | ok | failures | req/s | p50 ms | p99 ms | notes |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        println!("{r}");
    }
    assert_eq!(fails, 0, "some requests failed (see the table)");
}
