//! Several IsoBox nodes on loopback sharing one real `redis-server` (scripts/test installs it;
//! each test starts its own on a free port): one quota across nodes, one dedup cache, jobs
//! that any node's worker runs and any node answers for, a worker killed mid-job whose job is
//! taken over, Redis going away and coming back, and signed webhooks with the destination
//! policy. The nodes are real `isobox serve` / `isobox worker` processes.

use crate::common::*;

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

/// A `redis-server` of this test, on `port`, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts redis-server on `port`; None if it exits (the port was taken meanwhile).
    fn try_start_on(port: u16) -> Option<RedisServer> {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        let t = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(RedisServer { child, port });
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_on(port: u16) -> RedisServer {
        RedisServer::try_start_on(port).expect("redis-server on its old port")
    }

    fn start() -> RedisServer {
        (0..5)
            .find_map(|_| RedisServer::try_start_on(free_port()))
            .expect("redis-server")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `isobox serve` or `isobox worker` process, killed on drop.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn start(cmd: &str, vars: &[(&str, &str)]) -> Node {
        let mut all = vec![
            ("ISOBOX_WARM_POOL", "0"),
            ("ISOBOX_RATE_LIMIT", "100000/min"),
        ];
        all.extend_from_slice(vars);
        let (child, url) = spawn_node(cmd, &all);
        Node { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGTERM: a graceful stop (running jobs finish, sandboxes and cgroups are removed).
        // SAFETY: signalling our own child process, which we have not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metric(c: &reqwest::Client, node: &Node, name: &str) -> f64 {
    let text = c
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls a job on `node` until it is done.
async fn wait_done(c: &reqwest::Client, node: &Node, id: &str, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let (status, v) = get(c, &format!("{}/api/v1/executions/{id}", node.url)).await;
        assert_eq!(status, 200, "{v}");
        if v["state"] == "done" {
            return v;
        }
        assert!(t.elapsed() < within, "job {id} not done in {within:?}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_quota_across_three_nodes() {
    let redis = RedisServer::start();
    let url = redis.url();
    let vars = [
        ("REDIS_URL", url.as_str()),
        ("ISOBOX_RATE_LIMIT", "6/min"),
        ("ISOBOX_JOB_WORKERS", "0"),
    ];
    let nodes: Vec<Node> = (0..3).map(|_| Node::start("serve", &vars)).collect();
    let c = client();
    let mut allowed = 0;
    let mut limited = 0;
    for i in 0..18 {
        let node = &nodes[i % 3];
        let (status, _) = get(&c, &format!("{}/api/v1/languages", node.url)).await;
        match status {
            200 => allowed += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}"),
        }
    }
    // Node-local limiters would have let 18 through (6 per node).
    assert_eq!(
        allowed, 6,
        "the quota is shared: {allowed} allowed, {limited} limited"
    );
    assert_eq!(limited, 12);
    for n in &nodes {
        assert_eq!(metric(&c, n, "isobox_redis_up").await, 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_one_node_is_a_cache_hit_on_another() {
    let redis = RedisServer::start();
    let url = redis.url();
    let vars = [("REDIS_URL", url.as_str()), ("ISOBOX_JOB_WORKERS", "0")];
    let a = Node::start("serve", &vars);
    let b = Node::start("serve", &vars);
    let c = client();
    let body = py("import random; print(random.random())");
    let (status, first) = post(&c, &format!("{}/api/v1/execute", a.url), &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["cached"], false);
    let (status, second) = post(&c, &format!("{}/api/v1/execute", b.url), &body).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(second["stdout"], first["stdout"], "the same run's output");
    // B never ran it: its sandbox counter is still zero.
    assert_eq!(
        metric(&c, &b, "isobox_run_duration_seconds_count").await,
        0.0
    );

    // The same new submission on both nodes at once: one run (cross-node single-flight), the
    // other node waits for its result.
    let body = py("import random, time; time.sleep(0.5); print(random.random())");
    let (url_a, url_b) = (
        format!("{}/api/v1/execute", a.url),
        format!("{}/api/v1/execute", b.url),
    );
    let (ra, rb) = tokio::join!(post(&c, &url_a, &body), post(&c, &url_b, &body));
    assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
    assert_eq!(ra.1["stdout"], rb.1["stdout"], "one run's output on both");
    let runs = metric(&c, &a, "isobox_run_duration_seconds_count").await
        + metric(&c, &b, "isobox_run_duration_seconds_count").await;
    assert_eq!(
        runs, 2.0,
        "the first submission and one of these two ran, nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_to_a_runs_on_b_and_is_read_from_c() {
    let redis = RedisServer::start();
    let url = redis.url();
    let api = [("REDIS_URL", url.as_str()), ("ISOBOX_JOB_WORKERS", "0")];
    let a = Node::start("serve", &api);
    let b = Node::start("worker", &[("REDIS_URL", url.as_str())]);
    let node_c = Node::start("serve", &api);
    let c = client();
    let (status, v) = post(
        &c,
        &format!("{}/api/v1/executions", a.url),
        &json!({"language": "python", "code": "print(input() * 2)", "stdin": "ab"}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let done = wait_done(&c, &node_c, &id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["stdout"], "abab\n");
    assert_eq!(done["id"], id.as_str());
    assert!(done["finished_at"].as_u64() >= done["started_at"].as_u64());
    assert!(
        done.get("owner").is_none(),
        "internal fields stay inside: {done}"
    );
    // Only the worker ran it.
    assert_eq!(
        metric(&c, &b, "isobox_run_duration_seconds_count").await,
        1.0
    );
    assert_eq!(
        metric(&c, &a, "isobox_run_duration_seconds_count").await,
        0.0
    );
    assert_eq!(
        metric(&c, &node_c, "isobox_run_duration_seconds_count").await,
        0.0
    );

    // Batch: ids in order, each job its own result; ?wait=true answers with the result.
    let (status, v) = post(
        &c,
        &format!("{}/api/v1/executions/batch", a.url),
        &json!({"submissions": [py("print(1)"), py("print(2)"), py("print(3)")]}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let ids: Vec<String> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let done = wait_done(&c, &node_c, id, Duration::from_secs(30)).await;
        assert_eq!(done["stdout"], format!("{}\n", i + 1), "{done}");
    }
    let (status, v) = post(
        &c,
        &format!("{}/api/v1/executions?wait=true", node_c.url),
        &py("print('waited')"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "done");
    assert_eq!(v["stdout"], "waited\n");
    // Unknown ids are 404.
    let (status, v) = get(
        &c,
        &format!(
            "{}/api/v1/executions/00000000-0000-4000-8000-000000000000",
            a.url
        ),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_killed_worker_is_taken_over_and_completes_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let api = Node::start(
        "serve",
        &[("REDIS_URL", url.as_str()), ("ISOBOX_JOB_WORKERS", "0")],
    );
    let worker_vars = [("REDIS_URL", url.as_str()), ("ISOBOX_JOB_CLAIM_MS", "1500")];
    let mut w1 = Node::start("worker", &worker_vars);
    let c = client();
    let code = "import time, sys\nprint('started', flush=True)\ntime.sleep(2)\nprint('finished')";
    let (status, v) = post(
        &c,
        &format!("{}/api/v1/executions", api.url),
        &json!({"language": "python", "code": code, "limits": {"timeout_ms": 10000, "cpu_time_ms": 10000}}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    // Wait until W1 runs it, then kill it without any chance to clean up.
    let t = Instant::now();
    loop {
        let (_, v) = get(&c, &format!("{}/api/v1/executions/{id}", api.url)).await;
        if v["state"] == "running" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never running: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w1.kill();
    let (_, v) = get(&c, &format!("{}/api/v1/executions/{id}", api.url)).await;
    assert_eq!(v["state"], "running", "{v}");
    // Another worker takes it over once the claim has gone stale, and finishes it.
    let w2 = Node::start("worker", &worker_vars);
    let done = wait_done(&c, &api, &id, Duration::from_secs(40)).await;
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["stdout"], "started\nfinished\n");
    assert_eq!(
        metric(&c, &w2, "isobox_run_duration_seconds_count").await,
        1.0
    );
    // Exactly one record, and it stays as it is.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, again) = get(&c, &format!("{}/api/v1/executions/{id}", api.url)).await;
    assert_eq!(again, done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_sync_runs_go_on_locally_and_the_node_says_so() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let node = Node::start(
        "serve",
        &[
            ("REDIS_URL", url.as_str()),
            ("ISOBOX_RATE_LIMIT", "1000/min"),
            ("ISOBOX_REDIS_TIMEOUT_MS", "100"),
        ],
    );
    let c = client();
    let run = |code: &'static str| {
        let c = c.clone();
        let url = format!("{}/api/v1/execute", node.url);
        async move { post(&c, &url, &py(code)).await }
    };
    let (status, v) = run("print('with redis')").await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")), "{v}");
    assert_eq!(metric(&c, &node, "isobox_redis_up").await, 1.0);

    redis.stop();
    let (status, v) = run("print('without redis')").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stdout"], "without redis\n");
    let (status, v) = run("print('without redis')").await;
    assert_eq!(
        (status, v["cached"].as_bool()),
        (200, Some(true)),
        "the local cache still works: {v}"
    );
    assert_eq!(metric(&c, &node, "isobox_redis_up").await, 0.0);
    assert!(metric(&c, &node, "isobox_redis_fallbacks_total").await >= 1.0);
    // Async jobs need the shared queue: a clear 503.
    let (status, v) = post(
        &c,
        &format!("{}/api/v1/executions", node.url),
        &py("print(1)"),
    )
    .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"], "unavailable");

    // Redis comes back on the same port: shared state again.
    let _redis = RedisServer::start_on(redis.port);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t = Instant::now();
    loop {
        let (status, _) = run("print('redis is back')").await;
        assert_eq!(status, 200);
        if metric(&c, &node, "isobox_redis_up").await == 1.0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, v) = post(
        &c,
        &format!("{}/api/v1/executions?wait=true", node.url),
        &py("print('queued again')"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stdout"], "queued again\n");
}

/// One request a receiver got: its headers (lower-case names) and body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// A one-request-at-a-time HTTP receiver on loopback: each request's headers and body.
fn receiver() -> (u16, std::sync::mpsc::Receiver<Received>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                    if k == "content-length" {
                        len = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            if tx.send((headers, body)).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_private_destinations_refused() {
    let redis = RedisServer::start();
    let url = redis.url();
    let secret = "test-webhook-secret";
    let node = Node::start(
        "serve",
        &[
            ("REDIS_URL", url.as_str()),
            ("ISOBOX_WEBHOOK_SECRET", secret),
            ("ISOBOX_WEBHOOK_ALLOW", "127.0.0.1/32"),
        ],
    );
    let (port, received) = receiver();
    let c = client();
    let mut body = py("print('hooked')");
    body["callback_url"] = json!(format!("http://127.0.0.1:{port}/hook?token=abc"));
    let (status, v) = post(&c, &format!("{}/api/v1/executions", node.url), &body).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (headers, payload) = tokio::task::spawn_blocking(move || {
        received
            .recv_timeout(Duration::from_secs(30))
            .expect("callback")
    })
    .await
    .unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let sig = header("x-isobox-signature");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        isobox_server::webhook::verify(secret, &sig, &payload, now, 300),
        "{sig}"
    );
    assert!(!isobox_server::webhook::verify(
        "another secret",
        &sig,
        &payload,
        now,
        300
    ));
    assert_eq!(header("x-isobox-delivery"), id);
    let v: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["state"], "done");
    assert_eq!(v["stdout"], "hooked\n");

    // Private, link-local (metadata) and loopback destinations outside the allow-list: refused
    // at submission, before anything is queued.
    for dest in [
        "http://10.0.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.2/hook",
        "http://[::1]/hook",
        "file:///etc/passwd",
    ] {
        let mut body = py("print(1)");
        body["callback_url"] = json!(dest);
        let (status, v) = post(&c, &format!("{}/api/v1/executions", node.url), &body).await;
        assert_eq!(status, 400, "{dest}: {v}");
        assert_eq!(v["error"], "invalid_callback", "{dest}: {v}");
    }
}
