//! Linux isolation for IsoBox.
//!
//! The one crate of the workspace with `unsafe` code. It knows nothing of HTTP, languages or
//! users: it takes an [`ExecSpec`] (files, phases with argv and limits) and returns an
//! [`ExecReport`] (status, output, CPU, wall time, peak memory per phase), through the
//! [`Backend`] trait. `native` is our own namespace/cgroup/seccomp sandbox; `docker` runs each execution in a
//! hardened container on a Docker engine, behind the same trait.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cgroup;
pub mod collect;
pub mod docker;
pub mod native;
pub mod seccomp;
mod spec;
pub mod uids;

pub use docker::{DockerBackend, DockerConfig};
pub use native::{NativeBackend, NativeConfig, RootFs};
pub use spec::{
    check_files, classify, not_started, program_env, rlimits, signal_name, Collect, Collected,
    CollectedFile, ExecReport, ExecSpec, LimitHit, Limits, NoIo, Phase, PhaseReport, RunIo,
    SandboxFile, SkipReason, Skipped, Status, StdinPoll, Stream,
};

/// Errors of the sandbox layer.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The host cannot give the isolation this backend promises (privileges, kernel, cgroups).
    /// IsoBox refuses to run code rather than run it half-sandboxed.
    #[error("{0}")]
    Unsupported(String),
    /// The spec is not acceptable (bad file name, empty argv, ...).
    #[error("invalid execution spec: {0}")]
    InvalidSpec(String),
    /// A memory limit cannot be lowered below what the sandbox already holds (cgroup v1 keeps
    /// the files a compile step wrote on the tmpfs): the next program cannot run within it.
    #[error("the memory limit is below what the sandbox already uses")]
    MemoryInUse,
    /// Preparing or tearing down the sandbox failed.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
}

/// An isolation backend. Both backends honour the same spec and report the same way.
pub trait Backend: Send + Sync {
    /// Short name (`native`, `docker`).
    fn name(&self) -> &'static str;
    /// Runs every phase of `spec` in one fresh sandbox and removes the sandbox afterwards.
    fn execute(&self, spec: &ExecSpec) -> Result<ExecReport, SandboxError> {
        self.execute_io(spec, &mut NoIo)
    }
    /// Like `execute`, with live output, stdin while running, and cancellation.
    fn execute_io(&self, spec: &ExecSpec, io: &mut dyn RunIo) -> Result<ExecReport, SandboxError>;
    /// Whether `cmd` (a name looked up in the sandbox's PATH, or an absolute path) exists in
    /// the sandbox; languages whose toolchain is missing are reported unavailable.
    fn has_command(&self, cmd: &str) -> bool;
    /// Identifies the toolchain file `cmd` runs (path, inode, size, modification time), so that
    /// facts probed from it (its version) can be kept across restarts and dropped when it
    /// changes. `None`: not known, probe every time.
    fn toolchain_fingerprint(&self, _cmd: &str) -> Option<String> {
        None
    }
    /// A directory of the host, private to IsoBox, where such facts may be kept.
    fn state_dir(&self) -> Option<&std::path::Path> {
        None
    }
    /// Kills every program running in this backend's sandboxes (shutdown after the grace
    /// period); their `execute` calls return promptly.
    fn cancel_all(&self) {}
    /// Releases what the backend holds ahead of runs (the docker pool's containers) and waits
    /// for its cleanup; later runs are refused. Called once when the server stops.
    fn shutdown(&self) {}
}
