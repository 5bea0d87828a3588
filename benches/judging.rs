//! Judging (#16): one C program (a typical judge solution) against 20 test cases in one request, the same 20 cases as
//! 20 separate Judge0 submissions with and without the compile cache, and what the Judge0
//! adapter adds to a single `wait=true` submission over the native endpoint. Prints a
//! Markdown section with PASS/MISS lines (bench/run appends it to BENCHMARKS.md).
//!
//! `cargo bench --bench judging` (as root). `ISOBOX_BENCH_REPS` (default 3) repetitions,
//! medians reported; `ISOBOX_BENCH_SINGLES` (default 40) single submissions per endpoint.

mod common;
use common::{env_num, in_process_server, ms, pct};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CASES: usize = 20;

/// A typical judge solution: reads n, builds and sorts an array, prefix sums, a gcd, a modular
/// power, a square root (stdio, stdlib, string, math and friends).
const PROGRAM: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
#include <stdbool.h>
#include <limits.h>

typedef long long ll;

static int cmp_ll(const void *a, const void *b) {
    ll x = *(const ll *)a, y = *(const ll *)b;
    return (x > y) - (x < y);
}

static ll gcd(ll a, ll b) { return b ? gcd(b, a % b) : a; }

static ll power_mod(ll b, ll e, ll m) {
    ll r = 1 % m;
    b %= m;
    while (e > 0) {
        if (e & 1) r = (__int128)r * b % m;
        b = (__int128)b * b % m;
        e >>= 1;
    }
    return r;
}

int main(void) {
    int n;
    if (scanf("%d", &n) != 1 || n < 0) return 1;
    ll *a = malloc(sizeof(ll) * (size_t)(n > 0 ? n : 1));
    ll *prefix = calloc((size_t)n + 1, sizeof(ll));
    for (int i = 0; i < n; i++) a[i] = (ll)(i * 7919 % 1000) - 500;
    qsort(a, (size_t)n, sizeof(ll), cmp_ll);
    for (int i = 0; i < n; i++) prefix[i + 1] = prefix[i] + a[i];
    ll g = 0;
    for (int i = 0; i < n; i++) g = gcd(g, llabs(a[i]));
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", prefix[n]);
    double root = sqrt((double)llabs(prefix[n]));
    bool even = strlen(buf) % 2 == 0;
    printf("%lld %lld %lld %.3f %d\n", prefix[n], g, power_mod(2, (ll)n, 1000000007LL), root, even);
    free(a);
    free(prefix);
    return 0;
}
"#;

fn source(tag: &str) -> String {
    format!("{PROGRAM}/* {tag} */\n")
}

/// An in-process server; with `one_slot`, one sandbox at a time (the test cases of a request one
/// after another, like the separate submissions the targets compare them with; the default warm
/// pool), else the default slots (the cases side by side on the idle ones).
async fn start(compile_cache: bool, one_slot: bool) -> (String, tokio::sync::oneshot::Sender<()>) {
    let cache = if compile_cache { "268435456" } else { "0" };
    let mut vars = vec![
        ("DEDUP_ENABLED", "false".to_string()),
        ("ISOBOX_COMPILE_CACHE_BYTES", cache.to_string()),
    ];
    if one_slot {
        // The warm pool of the default server (one per CPU), so that only the slots differ.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        vars.push(("ISOBOX_SLOTS", "1".to_string()));
        vars.push(("ISOBOX_WARM_POOL", cpus.to_string()));
    }
    in_process_server(&vars).await
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let resp = client.post(url).json(body).send().await.expect("request");
    let status = resp.status();
    let v: Value = resp.json().await.expect("json");
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

/// The test-case request: one compile, 20 runs. Its total time and its compile's wall time.
async fn one_request(
    client: &reqwest::Client,
    url: &str,
    tag: &str,
    expected: &[String],
) -> (Duration, f64) {
    let tests: Vec<Value> = (1..=CASES)
        .map(|n| json!({"stdin": n.to_string(), "expected_output": expected[n - 1]}))
        .collect();
    let body = json!({"language": "c", "code": source(tag), "tests": tests});
    let t = Instant::now();
    let r = post(client, &format!("{url}/api/v1/execute"), &body).await;
    let took = t.elapsed();
    assert_eq!(r["summary"]["passed"], CASES, "{r}");
    (took, r["compile"]["wall_time_ms"].as_f64().unwrap_or(0.0))
}

/// The same cases as separate Judge0 submissions, one after the other (`wait=true`).
async fn judge0_one_by_one(
    client: &reqwest::Client,
    url: &str,
    tag: &str,
    expected: &[String],
) -> Duration {
    let code = source(tag);
    let t = Instant::now();
    for n in 1..=CASES {
        let body = json!({"language_id": 50, "source_code": code, "stdin": n.to_string(),
                          "expected_output": expected[n - 1]});
        let r = post(
            client,
            &format!("{url}/judge0/submissions?wait=true&base64_encoded=false"),
            &body,
        )
        .await;
        assert_eq!(r["status"]["id"], 3, "{r}");
    }
    t.elapsed()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// Bare: gcc of the program, and the compiled program run with a stdin, medians; and the
/// program's output for each case's stdin (1..=20), the cases' expected outputs.
fn bare(reps: usize) -> (f64, f64, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("isobox-judging-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.c"), PROGRAM).unwrap();
    let mut compiles: Vec<f64> = (0..reps.max(3)).map(|_| gcc(&dir)).collect();
    let mut runs = Vec::new();
    for n in 0..40 {
        let t = Instant::now();
        let mut child = Command::new(dir.join("p"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(n.to_string().as_bytes())
            .unwrap();
        child.wait().unwrap();
        runs.push(ms(t.elapsed()));
    }
    let expected = (1..=CASES)
        .map(|n| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("echo {n} | {}", dir.join("p").display()))
                .output()
                .expect("the program");
            String::from_utf8(out.stdout).expect("utf-8")
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (median(&mut compiles), median(&mut runs), expected)
}

/// One bare `gcc -O2` of the program in `dir` (`p.c` there), ms.
fn gcc(dir: &std::path::Path) -> f64 {
    let t = Instant::now();
    let ok = Command::new("gcc")
        .args(["-std=gnu17", "-O2", "-pipe", "-o"])
        .arg(dir.join("p"))
        .arg(dir.join("p.c"))
        .arg("-lm")
        .status()
        .expect("gcc")
        .success();
    assert!(ok);
    ms(t.elapsed())
}

fn main() {
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
    let reps: usize = env_num("ISOBOX_BENCH_REPS", 3usize).max(1);
    let singles: usize = env_num("ISOBOX_BENCH_SINGLES", 40usize).max(4);
    let (gcc_ms, run_ms, expected) = tokio::task::spawn_blocking(move || bare(reps))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let pid = std::process::id();

    let (url, stop) = start(true, true).await;
    // Warm-up: the languages' probes, the first sandboxes.
    one_request(&client, &url, &format!("warm-{pid}"), &expected).await;
    let mut request = Vec::new();
    let mut compile_in = Vec::new();
    let mut cached = Vec::new();
    for rep in 0..reps {
        let (t, c) = one_request(&client, &url, &format!("req-{pid}-{rep}"), &expected).await;
        request.push(ms(t));
        compile_in.push(c);
        cached.push(ms(judge0_one_by_one(
            &client,
            &url,
            &format!("j0c-{pid}-{rep}"),
            &expected,
        )
        .await));
        eprintln!(
            "[judging rep {}/{reps}] 20 tests in one request {:.0} ms (compile {:.0} ms); 20 Judge0 submissions, compile cache on: {:.0} ms",
            rep + 1,
            request[rep],
            c,
            cached[rep]
        );
    }
    // Single submissions: native execute vs Judge0 wait=true, interleaved, python hello.
    let (mut native, mut judge0) = (Vec::new(), Vec::new());
    for i in 0..singles {
        let stdin = format!("{pid}-{i}");
        let body = json!({"language": "python", "code": "print(input())", "stdin": stdin});
        let t = Instant::now();
        post(&client, &format!("{url}/api/v1/execute"), &body).await;
        native.push(t.elapsed());
        let body = json!({"language_id": 71, "source_code": "print(input())", "stdin": format!("j{stdin}")});
        let t = Instant::now();
        post(
            &client,
            &format!("{url}/judge0/submissions?wait=true&base64_encoded=false"),
            &body,
        )
        .await;
        judge0.push(t.elapsed());
    }
    let _ = stop.send(());

    let (url, stop) = start(true, false).await;
    one_request(&client, &url, &format!("warm3-{pid}"), &expected).await;
    // The budget's compile is timed in turns with these requests (a bare gcc, then a
    // request, and again), so that both meet the same moments of the host.
    let dir = std::env::temp_dir().join(format!("isobox-judging-gcc-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.c"), PROGRAM).unwrap();
    let (mut side, mut side_gcc) = (Vec::new(), Vec::new());
    for rep in 0..reps.max(3) {
        let d = dir.clone();
        side_gcc.push(tokio::task::spawn_blocking(move || gcc(&d)).await.unwrap());
        let (t, _) = one_request(&client, &url, &format!("side-{pid}-{rep}"), &expected).await;
        side.push(ms(t));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = stop.send(());

    let (url, stop) = start(false, true).await;
    one_request(&client, &url, &format!("warm2-{pid}"), &expected).await;
    let mut uncached = Vec::new();
    for rep in 0..reps {
        uncached.push(ms(judge0_one_by_one(
            &client,
            &url,
            &format!("j0u-{pid}-{rep}"),
            &expected,
        )
        .await));
        eprintln!(
            "[judging rep {}/{reps}] 20 Judge0 submissions, compile cache off: {:.0} ms",
            rep + 1,
            uncached[rep]
        );
    }
    let _ = stop.send(());

    let req = median(&mut request);
    let compile = median(&mut compile_in);
    let on = median(&mut cached);
    let side = median(&mut side);
    let side_gcc = median(&mut side_gcc);
    let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
    let off = median(&mut uncached);
    native.sort();
    judge0.sort();
    let (n50, j50) = (pct(&native, 0.5), pct(&judge0, 0.5));
    let budget = side_gcc + CASES as f64 * (run_ms + 3.0);
    let per_case = (req - compile) / CASES as f64;
    println!("## Judging (test cases, compile cache, Judge0 API)\n");
    println!(
        "`cargo bench --bench judging`: a C program (a typical judge solution of 50 lines: stdio, \
         stdlib, string and math; an array sorted with qsort, prefix sums, gcd, modular power) \
         against {CASES} test cases, \
         through an in-process server (dedup cache off) with one sandbox slot, so the cases of \
         the one request run one after another like the separate submissions sent one at a \
         time; then the same request on a server with the default {slots} slots, where the \
         cases run side by side on the idle ones (what a caller gets, and what the budget \
         below is checked on; the ratios compare the one-slot request with the submissions \
         sent one at a time). {reps} repetitions, medians. Bare: \
         `gcc -O2` of the program {gcc_ms:.1} ms (at the start; {side_gcc:.1} ms timed in turns \
         with the default server's requests, the compile of the budget), one run of the \
         compiled program {run_ms:.2} ms.\n"
    );
    println!("| case | time |");
    println!("|---|---|");
    println!(
        "| {CASES} tests in one request (compiled once), one slot: cases one after another | {req:.0} ms (its compile step {compile:.0} ms, then {per_case:.1} ms per case) |"
    );
    println!(
        "| {CASES} tests in one request, default server ({slots} slots): cases side by side | {side:.0} ms ({:.1} x faster) |",
        req / side
    );
    println!("| {CASES} separate Judge0 submissions, compile cache off | {off:.0} ms |");
    println!("| {CASES} separate Judge0 submissions, compile cache on | {on:.0} ms |");
    println!(
        "| one submission, native `/api/v1/execute` (python, {singles} runs) | p50 {n50:.2} ms, p99 {:.2} ms |",
        pct(&native, 0.99)
    );
    println!(
        "| one submission, Judge0 `wait=true` (python, {singles} runs, interleaved) | p50 {j50:.2} ms, p99 {:.2} ms |",
        pct(&judge0, 0.99)
    );
    println!("\n```");
    println!(
        "{} {CASES} tests in one request (default server) <= one compile + {CASES} x (bare run + 3 ms): {side:.0} ms <= {side_gcc:.0} + {CASES} x ({run_ms:.2} + 3) = {budget:.0} ms",
        pass(side <= budget)
    );
    println!(
        "{} {CASES} Judge0 submissions without the compile cache >= 10 x the one request: {off:.0} / {req:.0} ms = {:.1} x",
        pass(off >= 10.0 * req),
        off / req
    );
    println!(
        "{} {CASES} Judge0 submissions with the compile cache <= 1.5 x the one request: {on:.0} / {req:.0} ms = {:.2} x",
        pass(on <= 1.5 * req),
        on / req
    );
    println!(
        "{} Judge0 wait=true adds <= 1 ms over the native endpoint: p50 {j50:.2} - {n50:.2} = {:+.2} ms",
        pass(j50 - n50 <= 1.0),
        j50 - n50
    );
    println!("```");
}
