//! Shared helpers for the integration tests. Every test runs real programs in the real native
//! sandbox (the tests run as root, like CI).
//!
//! - here: the executor of the shared suites, the `isobox` CLI, temp dirs, unique tokens, API key
//!   files;
//! - `server`: a server in the test process (REST, or REST and gRPC);
//! - `node`: `isobox serve` / `isobox worker` as child processes, `curl`;
//! - `procs`: host and sandbox processes from `/proc`, waits for runs to start or be gone.

mod node;
mod procs;
mod server;

pub use node::*;
pub use procs::*;
pub use server::*;

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

/// Removes what the shared docker backends still hold when the test process exits (statics
/// are never dropped).
extern "C" fn close_backend() {
    if let Some(e) = EXEC.get() {
        for b in e.started_backends() {
            b.shutdown();
        }
    }
}

/// With `ISOBOX_TEST_RUNTIMES=DIR` the shared suites run with the runtimes built in DIR and
/// the host's toolchains off (as production runs): each language from its newest runtime, in
/// a native sandbox whose root is the runtime's, or in a container of the runtime's image.
pub fn test_runtimes() -> Option<PathBuf> {
    std::env::var_os("ISOBOX_TEST_RUNTIMES").map(PathBuf::from)
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
        let exec = Executor::new(backend, LanguageTable::builtin(), Policy::default());
        let Some(dir) = test_runtimes() else {
            return exec;
        };
        let found = isobox_core::runtimes::scan(&dir);
        assert!(
            !found.is_empty(),
            "ISOBOX_TEST_RUNTIMES={}: no runtime built there",
            dir.display()
        );
        let docker = on_docker();
        let make: isobox_core::service::BackendMaker =
            Arc::new(move |rt: &isobox_core::runtimes::Runtime| {
                let b: Arc<dyn Backend> = if docker {
                    let image = rt.manifest.image.clone().unwrap_or_else(|| {
                        panic!(
                            "runtime {} has no docker image (isobox runtime build --docker)",
                            rt.manifest.name
                        )
                    });
                    Arc::new(DockerBackend::new(DockerConfig {
                        image,
                        pool: 1,
                        instance: format!("test-{}-{}", std::process::id(), rt.manifest.name),
                        ..DockerConfig::default()
                    })?)
                } else {
                    Arc::new(NativeBackend::new(NativeConfig {
                        rootfs: isobox_sandbox::RootFs::Dir(rt.root.clone()),
                        ..NativeConfig::default()
                    })?)
                };
                Ok(b)
            });
        exec.with_runtimes(found, make, false)
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

/// The runtimes directory of every `isobox` and server a test starts, unless the test sets
/// `ISOBOX_RUNTIMES_DIR` itself: none, so that the host's toolchains answer whatever runtimes
/// this machine has built (scripts/test builds them all in the default directory; the tests
/// about runtimes name their directory).
pub const NO_RUNTIMES: &str = "/nonexistent/isobox-tests-without-runtimes";

/// The `isobox` binary as a command, with [`NO_RUNTIMES`].
pub fn isobox_cmd() -> Command {
    let mut c = Command::new(isobox_bin());
    c.env("ISOBOX_RUNTIMES_DIR", NO_RUNTIMES);
    c
}

/// Runs the `isobox` CLI with `args`.
pub fn cli(args: &[&str]) -> Output {
    isobox_cmd().args(args).output().expect("run isobox")
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

/// A token unique to this test process and moment, to find our own sandbox processes in /proc
/// (passed as an argument of the run).
pub fn token(tag: &str) -> String {
    format!("tok{tag}{}x{}", std::process::id(), nanos())
}

/// The lowercase hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    use std::fmt::Write;
    let d = <sha2::Sha256 as sha2::Digest>::digest(s.as_bytes());
    d.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// An `ISOBOX_API_KEYS_FILE`: a `[[key]]` per `(id, key, roles)`, the key as its SHA-256 (no
/// `roles` line when there are none).
pub fn api_keys_toml(keys: &[(&str, &str, &[&str])]) -> String {
    let mut out = String::new();
    for (id, key, roles) in keys {
        out += &format!("[[key]]\nid = \"{id}\"\nsha256 = \"{}\"\n", sha256_hex(key));
        if !roles.is_empty() {
            let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
            out += &format!("roles = [{}]\n", roles.join(", "));
        }
    }
    out
}

/// File names the API refuses (REST and gRPC alike): escapes, absolute, option-like, odd.
pub const UNSAFE_FILE_NAMES: [&str; 10] = [
    "../x",
    "a/../../b",
    "/etc/passwd",
    "",
    "./a.py",
    "a//b.py",
    "-o",
    "@args",
    "a\\b.py",
    "a\nb.py",
];
