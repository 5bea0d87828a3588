//! Shared helpers for the integration tests. Every test runs real programs in the real native
//! sandbox (the tests run as root, like CI).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use isobox_core::{
    ExecuteRequest, ExecutionResult, Executor, LanguageTable, Policy, RequestFile, RequestLimits,
};
use isobox_sandbox::{Backend, DockerBackend, DockerConfig, NativeBackend, NativeConfig};

static EXEC: OnceLock<Executor> = OnceLock::new();

/// The backend the shared suites (languages, hostile) run on: `native`, or `docker` when
/// `ISOBOX_TEST_BACKEND=docker` (scripts/test runs those suites a second time that way, on
/// the real engine, with the image `isobox image build` made).
pub fn test_backend() -> String {
    std::env::var("ISOBOX_TEST_BACKEND").unwrap_or_else(|_| "native".into())
}

pub fn on_docker() -> bool {
    test_backend() == "docker"
}

/// A docker backend for one test process: its own instance label (test processes run in
/// parallel and must not reap each other's containers) and a small pool.
pub fn docker_backend(pool: usize) -> DockerBackend {
    DockerBackend::new(DockerConfig {
        pool,
        instance: format!("test-{}", std::process::id()),
        ..DockerConfig::default()
    })
    .expect("docker backend: scripts/test starts dockerd and runs `isobox image build`")
}

/// Removes what the shared docker backend still holds when the test process exits (statics are
/// never dropped).
extern "C" fn close_backend() {
    if let Some(e) = EXEC.get() {
        e.backend().shutdown();
    }
}

/// One executor per test process (nextest runs each test in its own process).
pub fn executor() -> &'static Executor {
    EXEC.get_or_init(|| {
        let backend: Arc<dyn Backend> = if on_docker() {
            // SAFETY: registers a plain extern "C" function to run at exit.
            unsafe { libc::atexit(close_backend) };
            Arc::new(docker_backend(2))
        } else {
            Arc::new(
                NativeBackend::new(NativeConfig::default())
                    .expect("native backend (tests run as root)"),
            )
        };
        Executor::new(backend, LanguageTable::builtin(), Policy::default())
    })
}

/// Runs `code` as the entry file of `language`.
pub fn run_code(language: &str, code: &str) -> ExecutionResult {
    run(ExecuteRequest {
        language: language.into(),
        code: Some(code.into()),
        ..Default::default()
    })
}

/// Runs `code` with extra request fields set by `f`.
pub fn run_with(
    language: &str,
    code: &str,
    f: impl FnOnce(&mut ExecuteRequest),
) -> ExecutionResult {
    let mut req = ExecuteRequest {
        language: language.into(),
        code: Some(code.into()),
        ..Default::default()
    };
    f(&mut req);
    run(req)
}

pub fn run(req: ExecuteRequest) -> ExecutionResult {
    executor()
        .execute(&req)
        .unwrap_or_else(|e| panic!("execute failed: {e}"))
}

pub fn files(list: &[(&str, &str)]) -> Vec<RequestFile> {
    list.iter()
        .map(|(n, c)| RequestFile {
            name: n.to_string(),
            content: c.to_string(),
            encoding: None,
        })
        .collect()
}

pub fn limits(timeout_ms: u64, memory_mb: u64) -> RequestLimits {
    RequestLimits {
        timeout_ms: Some(timeout_ms),
        cpu_time_ms: Some(timeout_ms),
        memory_mb: Some(memory_mb),
        ..Default::default()
    }
}

/// Path of the built `isobox` binary.
pub fn isobox_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_isobox"))
}

/// Runs the `isobox` CLI with `args`.
pub fn cli(args: &[&str]) -> Output {
    Command::new(isobox_bin())
        .args(args)
        .output()
        .expect("run isobox")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "isobox-test-{tag}-{}-{}",
            std::process::id(),
            nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The app of a test server: `base`, then `ISOBOX_WARM_POOL=0`, then `vars` (which win).
async fn build_app(base: &[(&str, &str)], vars: &[(&str, &str)]) -> isobox_server::App {
    let env: std::collections::HashMap<String, String> = base
        .iter()
        .chain(&[("ISOBOX_WARM_POOL", "0")])
        .chain(vars)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = isobox_server::config::load(&env).expect("config");
    tokio::task::spawn_blocking(move || isobox_server::App::build(cfg))
        .await
        .unwrap()
        .expect("app")
}

/// A REST server on a free loopback port, started in this process from `vars` (as the
/// environment): `ISOBOX_WARM_POOL=0` unless set.
pub struct TestServer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(vars: &[(&str, &str)]) -> TestServer {
        let app = build_app(&[("REST_PORT", "0")], vars).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(isobox_server::run(listener, Arc::new(app), async move {
            let _ = rx.await;
        }));
        TestServer {
            url,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits until `run` returned.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Waits (at most `limit`) for `run` to return after `begin_stop`.
    pub async fn finished_within(&mut self, limit: std::time::Duration) -> bool {
        match self.task.take() {
            Some(t) => tokio::time::timeout(limit, t).await.is_ok(),
            None => true,
        }
    }
}

/// REST and gRPC on free loopback ports, served by this process (`run_with_grpc`), with
/// `ISOBOX_WARM_POOL=0` unless `vars` sets it.
pub struct DualServer {
    pub rest: String,
    pub grpc: String,
    pub grpc_addr: std::net::SocketAddr,
    pub app: Arc<isobox_server::App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl DualServer {
    pub async fn start(vars: &[(&str, &str)]) -> DualServer {
        let app = Arc::new(build_app(&[("REST_PORT", "0"), ("GRPC_PORT", "0")], vars).await);
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let rest_url = format!("http://{}", rest.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(isobox_server::run_with_grpc(
            rest,
            Some(grpc),
            app.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        DualServer {
            rest: rest_url,
            grpc: format!("http://{grpc_addr}"),
            grpc_addr,
            app,
            stop: Some(tx),
            task,
        }
    }

    /// Graceful shutdown; fails the test if it takes over 20 s or `run_with_grpc` failed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(std::time::Duration::from_secs(20), self.task)
            .await
            .expect("the server stopped")
            .unwrap()
            .expect("run_with_grpc() result");
    }
}

/// Starts `isobox <cmd>` (serve or worker) on a port of its own choosing (`REST_PORT=0`, so two
/// tests never race for one) and returns it with its base URL, read from the line where it
/// says where it listens. Its stderr is drained by a thread.
pub fn spawn_node(cmd: &str, vars: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(isobox_bin())
        .arg(cmd)
        .env("REST_PORT", "0")
        .env("GRPC_PORT", "0")
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("isobox");
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`isobox {cmd}` never said where it listens");
        };
        let says_where = line.contains("listening on ") || line.contains("/metrics on ");
        if let (true, Some(i)) = (says_where, line.find("http://")) {
            let url: String = line[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ')')
                .collect();
            // Keep draining so the node never blocks on a full pipe.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (child, url);
        }
    }
}
