//! The docker backend: every run in a fresh, hardened container on a Docker engine.
//!
//! Each container runs `/isobox/isobox-runner` (see [`runner`]) as its PID 1 under a non-root
//! uid, with no network, no capabilities, no_new_privs, a read-only root, a size-capped `/tmp`
//! tmpfs, memory = memory+swap, pids and CPU limits, our seccomp profile and, where the host
//! has AppArmor, our AppArmor profile. Code goes in and output comes back through the
//! container's attach stream; no host path is ever mounted.
//!
//! Latency: a pool of containers prepared in the background, each used once. In the default
//! `started` mode a pooled container is created, attached and started, its runner idle until
//! the job arrives (a run pays neither for `create` nor for `start`, which is ~170 ms of
//! runc and shim work here); `created` keeps created-never-started containers instead.
//! Containers carry the labels `isobox=1` and `isobox.instance=<instance>`; whatever a crashed
//! server left behind is removed when the backend starts.
//!
//! # The pieces
//! Each module uses only the ones listed before it (this one uses them all):
//! - `config`: [`DockerConfig`], [`PoolMode`], the image's default tag, [`RUNNER_PATH`] and
//!   [`PROTOCOL_LABEL`];
//! - [`protocol`]: the frames the backend and the runner exchange;
//! - `hardening`: the container's create body and `HostConfig` (the confinement above), the
//!   cgroup limits changed between phases, [`UID_RANGE`], the AppArmor profile;
//! - [`image`]: checking and building the runtime image;
//! - `container`: the engine connection and each container's life (create with our labels,
//!   attach, start, limits, kill, remove) and the reaper of strays;
//! - `pool`: the containers kept ready, and how a run gets one;
//! - `drive`: one run, from the caller's thread through the protocol with the runner to the
//!   report;
//! - [`runner`]: the other side, the binary inside the container.
//!
//! [`DockerBackend`] (here) owns the engine, the pool and the tokio runtime they run on, and
//! implements [`Backend`] with them.

mod config;
mod container;
mod drive;
mod hardening;
pub mod image;
mod pool;
pub mod protocol;
pub mod runner;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use bollard::Docker;

use crate::spec::{ExecReport, ExecSpec, RunIo};
use crate::{Backend, SandboxError};
use container::Engine;
use pool::Pool;

pub use config::{
    default_image, runner_command, DockerConfig, PoolMode, PROTOCOL_LABEL, RUNNER_LIBS, RUNNER_PATH,
};
pub use container::{connect, INSTANCE_LABEL, LABEL};
pub use hardening::{v1_memory_cgroup, UID_RANGE};

/// The docker backend. See the module documentation.
pub struct DockerBackend {
    engine: Arc<Engine>,
    pool: Arc<Pool>,
    rt: Option<tokio::runtime::Runtime>,
}

impl DockerBackend {
    /// Connects to the engine, checks the image (exists, built for this runner protocol),
    /// resolves AppArmor, removes this instance's leftovers, lists the image's commands and
    /// starts the pool.
    pub fn new(cfg: DockerConfig) -> Result<DockerBackend, SandboxError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("isobox-docker")
            .enable_all()
            .build()
            .map_err(|e| SandboxError::Setup(format!("cannot start the docker runtime: {e}")))?;
        let engine = Arc::new(rt.block_on(Engine::open(cfg))?);
        let pool = Arc::new(Pool::new(engine.clone()));
        if engine.cfg.pool > 0 {
            let p = pool.clone();
            rt.spawn(async move { p.refill_loop().await });
        }
        Ok(DockerBackend {
            engine,
            pool,
            rt: Some(rt),
        })
    }

    /// Containers waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.pool.len()
    }

    /// The engine client (tests inspect containers with it).
    pub fn docker(&self) -> &Docker {
        &self.engine.docker
    }

    /// Runs `f` on the backend's runtime and waits for it from this thread (which may belong
    /// to another runtime: nothing here calls `block_on` inside one).
    pub fn wait<F>(&self, f: F) -> Option<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.rt.as_ref()?.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().ok()
    }

    /// Refuses new runs, removes the pooled containers and waits (up to 30 s) until every
    /// container this backend made is gone.
    pub fn close(&self) {
        self.pool.stop();
        let pool = self.pool.clone();
        self.wait(async move { pool.close().await });
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        self.close();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn has_command(&self, cmd: &str) -> bool {
        self.engine.has_command(cmd)
    }

    fn cancel_all(&self) {
        self.pool.cancel();
        let ids = self.engine.running();
        let engine = self.engine.clone();
        self.wait(async move {
            for id in ids {
                engine.kill(&id).await;
            }
        });
    }

    fn shutdown(&self) {
        self.close();
    }

    fn execute_io(&self, spec: &ExecSpec, io: &mut dyn RunIo) -> Result<ExecReport, SandboxError> {
        if self.pool.is_cancelled() {
            return Err(SandboxError::Unsupported(
                "the sandbox is shutting down".into(),
            ));
        }
        drive::validate(spec)?;
        let rt = self.rt.as_ref().expect("runtime");
        drive::execute(rt, &self.engine, &self.pool, spec, io)
    }
}
