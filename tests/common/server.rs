//! A server in the test process: `App::build` from a configuration map, `isobox_server::run`
//! (REST) or `run_with_grpc` (REST and gRPC) on free loopback ports, and its shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isobox_server::App;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The body of a python run.
pub fn py(code: &str) -> Value {
    json!({ "language": "python", "code": code })
}

/// The app of a test server: `base`, then `ISOBOX_WARM_POOL=0` and no runtimes
/// ([`super::NO_RUNTIMES`]), then `vars` (which win).
async fn build_app(base: &[(&str, &str)], vars: &[(&str, &str)]) -> App {
    let env: std::collections::HashMap<String, String> = base
        .iter()
        .chain(&[
            ("ISOBOX_WARM_POOL", "0"),
            ("ISOBOX_RUNTIMES_DIR", super::NO_RUNTIMES),
        ])
        .chain(vars)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = isobox_server::config::load(&env).expect("configuration");
    tokio::task::spawn_blocking(move || App::build(cfg))
        .await
        .expect("build task")
        .expect("App::build")
}

/// A server on free loopback ports, served by this process from `vars` (as the environment),
/// with `ISOBOX_WARM_POOL=0` unless `vars` sets it.
pub struct TestServer {
    /// The REST API's base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    pub addr: SocketAddr,
    grpc: Option<SocketAddr>,
    pub app: Arc<App>,
    /// A client with a 30 s timeout.
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// REST only (`isobox_server::run`), `REST_PORT=0`.
    pub async fn start(vars: &[(&str, &str)]) -> TestServer {
        TestServer::launch(vars, false).await
    }

    /// REST and gRPC (`isobox_server::run_with_grpc`), `REST_PORT=0` and `GRPC_PORT=0`.
    pub async fn start_with_grpc(vars: &[(&str, &str)]) -> TestServer {
        TestServer::launch(vars, true).await
    }

    async fn launch(vars: &[(&str, &str)], with_grpc: bool) -> TestServer {
        let base: &[(&str, &str)] = if with_grpc {
            &[("REST_PORT", "0"), ("GRPC_PORT", "0")]
        } else {
            &[("REST_PORT", "0")]
        };
        let app = Arc::new(build_app(base, vars).await);
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = rest.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = rx.await;
        };
        let (grpc, task) = if with_grpc {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let grpc = listener.local_addr().unwrap();
            let task = tokio::spawn(isobox_server::run_with_grpc(
                rest,
                Some(listener),
                app.clone(),
                stopped,
            ));
            (Some(grpc), task)
        } else {
            let task = tokio::spawn(isobox_server::run(rest, app.clone(), stopped));
            (None, task)
        };
        TestServer {
            url: format!("http://{addr}"),
            addr,
            grpc,
            app,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The gRPC API's URL, `http://127.0.0.1:<port>`.
    pub fn grpc_url(&self) -> String {
        let addr = self.grpc.expect("a server started with start_with_grpc");
        format!("http://{addr}")
    }

    /// The URL of `path` on the REST API.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url_for(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url_for(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs raw bytes with the given content type (none when `None`).
    pub async fn post_raw(&self, path: &str, ct: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut rb = self.client.post(self.url_for(path)).body(body);
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        rb.send().await.unwrap()
    }

    /// `POST /api/v1/execute` that must answer 200; returns the result object.
    pub async fn exec(&self, body: Value) -> Value {
        let resp = self.post_json("/api/v1/execute", &body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "execute {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self.get("/metrics").await;
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().await.unwrap()
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (at most `limit`) for the server to return after `begin_stop`, whatever it returned.
    pub async fn finished_within(&mut self, limit: Duration) -> bool {
        match self.task.take() {
            Some(t) => tokio::time::timeout(limit, t).await.is_ok(),
            None => true,
        }
    }

    /// Waits for the server to return after `begin_stop`; fails the test if that takes `within`
    /// or more, or if it returned an error.
    pub async fn stopped_within(&mut self, within: Duration) {
        let task = self.task.take().expect("the server is still running");
        tokio::time::timeout(within, task)
            .await
            .unwrap_or_else(|_| panic!("the server did not return within {within:?}"))
            .expect("server task")
            .expect("the server's result");
    }

    /// Graceful shutdown, checked as `stopped_within`; returns how long it took.
    pub async fn shutdown(mut self, within: Duration) -> Duration {
        let t = Instant::now();
        self.begin_stop();
        self.stopped_within(within).await;
        t.elapsed()
    }

    /// Graceful shutdown; waits for the server to return, whatever it returned.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
