//! Shared helpers for the integration tests. Every test runs real programs in the real native
//! sandbox (the tests run as root, like CI).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use isobox_core::{
    ExecuteRequest, ExecutionResult, Executor, LanguageTable, Policy, RequestFile, RequestLimits,
};
use isobox_sandbox::{NativeBackend, NativeConfig};

/// One executor per test process (nextest runs each test in its own process).
pub fn executor() -> &'static Executor {
    static EXEC: OnceLock<Executor> = OnceLock::new();
    EXEC.get_or_init(|| {
        let backend = NativeBackend::new(NativeConfig::default())
            .expect("native backend (tests run as root)");
        Executor::new(
            Arc::new(backend),
            LanguageTable::builtin(),
            Policy::default(),
        )
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
