//! The docker backend: every run in a fresh, hardened container on a Docker engine.
//!
//! Each container runs `/isobox/isobox-runner` (see [`runner`]) as its PID 1 under a non-root
//! uid, with no network, no capabilities, no_new_privs, a read-only root, a size-capped `/tmp`
//! tmpfs, memory = memory+swap, pids and CPU limits, our seccomp profile and, where the host
//! has AppArmor, our AppArmor profile ([`host_config`] builds exactly that). Code goes in and
//! output comes back through the container's attach stream; no host path is ever mounted.
//!
//! Latency: a pool of containers prepared in the background, each used once. In the default
//! `started` mode a pooled container is created, attached and started, its runner idle until
//! the job arrives (a run pays neither for `create` nor for `start`, which is ~170 ms of
//! runc and shim work here); `created` keeps created-never-started containers instead.
//! Containers carry the labels `isobox=1` and `isobox.instance=<instance>`; whatever a crashed
//! server left behind is removed when the backend starts.

pub mod image;
pub mod protocol;
pub mod runner;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::spec::{
    classify, program_env, rlimits, ExecReport, ExecSpec, LimitHit, Limits, Phase, PhaseReport,
    RunIo, Status, StdinPoll, Stream,
};
use crate::{Backend, SandboxError};
use protocol::{self as proto, Job, JobFile, JobPhase, PhaseResult};

/// Where the runner lives in the image.
pub const RUNNER_PATH: &str = "/isobox/isobox-runner";
/// Label every container of ours carries.
pub const LABEL: &str = "isobox";
/// Label naming the backend instance that owns a container (what the startup reaper matches).
pub const INSTANCE_LABEL: &str = "isobox.instance";
/// Image label with the runner protocol the image was built for.
pub const PROTOCOL_LABEL: &str = "isobox.protocol";
/// Uids given to containers, one per live container (cycled).
pub const UID_RANGE: std::ops::Range<u32> = 61000..62000;

/// The runtime image's tag for this version of IsoBox.
pub fn default_image() -> String {
    format!("isobox-runtime:{}", env!("CARGO_PKG_VERSION"))
}

/// How pooled containers wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Created, attached and started; the runner waits for its job.
    Started,
    /// Created only; a run attaches and starts it.
    Created,
}

/// Settings of the docker backend (the server maps `ISOBOX_DOCKER_*` onto these).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The runtime image (operators only; clients never choose an image).
    pub image: String,
    /// An OCI runtime registered with the engine, e.g. `runsc` for gVisor.
    pub runtime: Option<String>,
    /// Containers kept ready; 0 prepares one per run.
    pub pool: usize,
    pub pool_mode: PoolMode,
    /// Value of the `isobox.instance` label: the startup reaper removes only this instance's
    /// leftovers, so several servers (or test processes) can share one engine.
    pub instance: String,
    /// AppArmor profile: `None` applies `isobox` when the host has AppArmor enabled (and
    /// refuses to start when that profile is not loaded); `Some("")` never applies one.
    pub apparmor: Option<String>,
    /// Engine address (`unix:///...`, `tcp://...`); `None` honours `DOCKER_HOST`.
    pub host: Option<String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            image: default_image(),
            runtime: None,
            pool: 2,
            pool_mode: PoolMode::Started,
            instance: "default".into(),
            apparmor: None,
            host: None,
        }
    }
}

/// What the container's cgroup enforces (the runner enforces the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CgLimits {
    memory: i64,
    pids: i64,
    nano_cpus: i64,
}

impl CgLimits {
    fn of(l: &Limits) -> CgLimits {
        CgLimits {
            memory: l.memory_bytes as i64,
            // The runner counts, as the native sandbox's init does.
            pids: i64::from(l.max_processes),
            nano_cpus: i64::from(l.cpu_millis) * 1_000_000,
        }
    }
}

/// What cannot change after `create`: the work tmpfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    tmpfs_bytes: u64,
    tmpfs_inodes: u64,
}

impl Shape {
    fn of(spec: &ExecSpec) -> Shape {
        Shape {
            tmpfs_bytes: spec.tmpfs_bytes.max(4096),
            tmpfs_inodes: spec.tmpfs_inodes.max(16),
        }
    }
}

/// The HostConfig of every run container: SECURITY.md's hardening, nothing from the client.
fn host_config(
    cfg: &DockerConfig,
    seccomp: &str,
    apparmor: Option<&str>,
    shape: Shape,
    uid: u32,
    l: CgLimits,
) -> HostConfig {
    let mut security_opt = vec![
        "no-new-privileges:true".to_string(),
        format!("seccomp={seccomp}"),
    ];
    if let Some(p) = apparmor {
        security_opt.push(format!("apparmor={p}"));
    }
    let tmpfs = HashMap::from([(
        "/tmp".to_string(),
        format!(
            "rw,exec,nosuid,nodev,size={},nr_inodes={},mode=0755,uid={uid},gid={uid}",
            shape.tmpfs_bytes, shape.tmpfs_inodes
        ),
    )]);
    // Small per-netns socket buffers (the sysctls are the container's own): loopback TCP
    // cannot pin much kernel memory, which cgroup v1 does not charge to the memory limit.
    let sysctls = HashMap::from([
        (
            "net.ipv4.tcp_rmem".to_string(),
            "4096 32768 262144".to_string(),
        ),
        (
            "net.ipv4.tcp_wmem".to_string(),
            "4096 16384 262144".to_string(),
        ),
    ]);
    HostConfig {
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: None,
        privileged: Some(false),
        security_opt: Some(security_opt),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs),
        shm_size: Some(shape.tmpfs_bytes as i64),
        memory: Some(l.memory),
        memory_swap: Some(l.memory),
        nano_cpus: Some(l.nano_cpus),
        pids_limit: Some(l.pids),
        ulimits: Some(vec![
            ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(4096),
                hard: Some(4096),
            },
            ResourcesUlimits {
                name: Some("core".into()),
                soft: Some(0),
                hard: Some(0),
            },
        ]),
        sysctls: Some(sysctls),
        ipc_mode: Some("private".into()),
        init: Some(false),
        runtime: cfg.runtime.clone(),
        // Program output goes through the attach stream only, never into engine logs.
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".into()),
            config: None,
        }),
        ..Default::default()
    }
}

fn docker_err(what: &str, e: bollard::errors::Error) -> SandboxError {
    SandboxError::Setup(format!("docker {what}: {e}"))
}

/// The engine, connected and version-negotiated (Debian's 20.10 speaks API 1.41).
pub async fn connect(host: Option<&str>) -> Result<Docker, SandboxError> {
    let docker = match host {
        Some(h) => Docker::connect_with_host(h),
        None => Docker::connect_with_defaults(),
    }
    .map_err(|e| SandboxError::Unsupported(format!("cannot reach the Docker engine: {e}")))?;
    let docker = docker.negotiate_version().await.map_err(|e| {
        SandboxError::Unsupported(format!(
            "cannot reach the Docker engine ({}): {e}",
            host.map(str::to_string)
                .or_else(|| std::env::var("DOCKER_HOST").ok())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
        ))
    })?;
    Ok(docker)
}

/// A container taken for one run.
struct Box_ {
    id: String,
    shape: Shape,
    limits: CgLimits,
    attach: Option<bollard::container::AttachContainerResults>,
    started: bool,
    prepared_at: Instant,
}

struct Inner {
    docker: Docker,
    cfg: DockerConfig,
    seccomp: String,
    apparmor: Option<String>,
    /// Executables of the image (full paths), listed once at start.
    commands: HashSet<String>,
    pool: Mutex<Vec<Box_>>,
    /// The tmpfs shape and the first limits the pool prepares (those of the latest run, so a
    /// pooled container usually needs no `update`).
    want: Mutex<(Shape, CgLimits)>,
    refill: tokio::sync::Notify,
    live: Mutex<HashSet<String>>,
    cancelled: AtomicBool,
    next_uid: AtomicU32,
    /// Containers being removed in the background.
    removing: AtomicUsize,
    /// Pool containers being prepared (`close` waits for them to be removed too).
    preparing: AtomicUsize,
    /// Runs waiting for a pooled container.
    waiting: AtomicUsize,
    /// Pool preparations that failed in a row.
    failures: AtomicU32,
    /// Signalled when a pooled container is ready.
    ready: tokio::sync::Notify,
}

/// The docker backend. See the module documentation.
pub struct DockerBackend {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

/// Most pool containers prepared at once (the engine serializes much of the work anyway).
const MAX_PREPARING: usize = 2;

/// How often the pool looks for stray containers of its instance (and how old they must be).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How long an unused pooled container is kept before it is replaced.
const POOL_IDLE: Duration = Duration::from_secs(300);

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
        let inner = rt.block_on(Inner::start(cfg))?;
        let inner = Arc::new(inner);
        if inner.cfg.pool > 0 {
            let i = inner.clone();
            rt.spawn(async move { i.refill_loop().await });
        }
        Ok(DockerBackend {
            inner,
            rt: Some(rt),
        })
    }

    /// Containers waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.inner.pool.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The engine client (tests inspect containers with it).
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
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
        let inner = self.inner.clone();
        inner.cancelled.store(true, Ordering::SeqCst);
        inner.refill.notify_one();
        self.wait(async move {
            let t = Instant::now();
            let limit = Duration::from_secs(30);
            while inner.preparing.load(Ordering::SeqCst) > 0 && t.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let pooled: Vec<Box_> = inner
                .pool
                .lock()
                .map(|mut p| p.drain(..).collect())
                .unwrap_or_default();
            for b in pooled {
                inner.remove(&b.id).await;
            }
            while (inner.removing.load(Ordering::SeqCst) > 0
                || !inner.live.lock().map(|l| l.is_empty()).unwrap_or(true))
                && t.elapsed() < limit
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
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

/// Events from the run task to the thread that called `execute_io`.
enum Event {
    PhaseStarted(usize),
    Output(usize, Stream, Vec<u8>),
    Done(Result<ExecReport, SandboxError>),
}

/// From that thread to the run task.
enum Ctl {
    Stdin(Vec<u8>),
    StdinEnd,
    Cancel,
}

impl Inner {
    async fn start(cfg: DockerConfig) -> Result<Inner, SandboxError> {
        let docker = connect(cfg.host.as_deref()).await?;
        image::check(&docker, &cfg.image).await?;
        let apparmor = resolve_apparmor(cfg.apparmor.as_deref())?;
        let seccomp = crate::seccomp::docker_profile().to_string();
        let inner = Inner {
            docker,
            seccomp,
            apparmor,
            commands: HashSet::new(),
            pool: Mutex::new(Vec::new()),
            want: Mutex::new((
                Shape {
                    tmpfs_bytes: 64 << 20,
                    tmpfs_inodes: 16 * 1024,
                },
                CgLimits::of(&Limits::default()),
            )),
            refill: tokio::sync::Notify::new(),
            live: Mutex::new(HashSet::new()),
            cancelled: AtomicBool::new(false),
            next_uid: AtomicU32::new(UID_RANGE.start + std::process::id() % 1000),
            removing: AtomicUsize::new(0),
            preparing: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ready: tokio::sync::Notify::new(),
            cfg,
        };
        inner.reap_leftovers().await?;
        let commands = inner.list_commands().await?;
        Ok(Inner { commands, ..inner })
    }

    /// Removes every container this instance left behind (a crash, a kill -9).
    async fn reap_leftovers(&self) -> Result<usize, SandboxError> {
        self.reap(Duration::ZERO).await
    }

    /// Removes this instance's containers that are neither pooled nor running a job and were
    /// created more than `min_age` ago: at start (age 0) whatever a crashed server left, and
    /// later a container whose `create` was still in flight in the engine when its server was
    /// killed (the engine finishes it after the reaper at start has looked).
    async fn reap(&self, min_age: Duration) -> Result<usize, SandboxError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{INSTANCE_LABEL}={}", self.cfg.instance)],
        )]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| docker_err("list containers", e))?;
        let known: HashSet<String> = {
            let pool = self
                .pool
                .lock()
                .map(|p| p.iter().map(|b| b.id.clone()).collect::<Vec<_>>());
            let live = self
                .live
                .lock()
                .map(|l| l.iter().cloned().collect::<Vec<_>>());
            pool.unwrap_or_default()
                .into_iter()
                .chain(live.unwrap_or_default())
                .collect()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut n = 0;
        for c in list {
            let old_enough = c
                .created
                .is_some_and(|t| now - t >= min_age.as_secs() as i64);
            if let (Some(id), true) = (c.id, old_enough) {
                if !known.contains(&id) {
                    self.remove(&id).await;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Runs the runner's `--list-commands` in a throwaway container of the same hardening.
    async fn list_commands(&self) -> Result<HashSet<String>, SandboxError> {
        let shape = Shape {
            tmpfs_bytes: 1 << 20,
            tmpfs_inodes: 64,
        };
        let id = self
            .create(
                shape,
                CgLimits::of(&Limits::default()),
                vec![RUNNER_PATH.into(), "--list-commands".into()],
            )
            .await?;
        let result = async {
            let mut att = self.attach(&id).await?;
            self.docker
                .start_container(&id, None)
                .await
                .map_err(|e| docker_err("start", e))?;
            let _ = att.input.shutdown().await;
            let mut out = Vec::new();
            let collect = async {
                while let Some(Ok(chunk)) = att.output.next().await {
                    if let LogOutput::StdOut { message } = chunk {
                        out.extend_from_slice(&message);
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(30), collect)
                .await
                .is_err()
            {
                return Err(SandboxError::Setup(
                    "the image's runner did not list its commands within 30 s".into(),
                ));
            }
            Ok(String::from_utf8_lossy(&out)
                .lines()
                .map(str::to_string)
                .collect::<HashSet<_>>())
        }
        .await;
        self.remove(&id).await;
        let cmds = result?;
        if cmds.is_empty() {
            return Err(SandboxError::Unsupported(format!(
                "the image {} has no programs in its PATH",
                self.cfg.image
            )));
        }
        Ok(cmds)
    }

    fn next_uid(&self) -> u32 {
        let n = self.next_uid.fetch_add(1, Ordering::Relaxed);
        UID_RANGE.start + (n - UID_RANGE.start) % (UID_RANGE.end - UID_RANGE.start)
    }

    async fn create(
        &self,
        shape: Shape,
        limits: CgLimits,
        cmd: Vec<String>,
    ) -> Result<String, SandboxError> {
        let uid = self.next_uid();
        let body = ContainerCreateBody {
            image: Some(self.cfg.image.clone()),
            cmd: Some(cmd),
            entrypoint: Some(vec![]),
            user: Some(format!("{uid}:{uid}")),
            working_dir: Some("/tmp".into()),
            env: Some(
                program_env(&[])
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            hostname: Some("isobox".into()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                (LABEL.to_string(), "1".to_string()),
                (INSTANCE_LABEL.to_string(), self.cfg.instance.clone()),
            ])),
            host_config: Some(host_config(
                &self.cfg,
                &self.seccomp,
                self.apparmor.as_deref(),
                shape,
                uid,
                limits,
            )),
            ..Default::default()
        };
        let r = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::default().build()), body)
            .await
            .map_err(|e| docker_err("create", e))?;
        Ok(r.id)
    }

    async fn attach(
        &self,
        id: &str,
    ) -> Result<bollard::container::AttachContainerResults, SandboxError> {
        self.docker
            .attach_container(
                id,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stdin(true)
                        .stdout(true)
                        .stderr(true)
                        .stream(true)
                        .logs(false)
                        .build(),
                ),
            )
            .await
            .map_err(|e| docker_err("attach", e))
    }

    /// A container ready for a run: created, and in `Started` mode attached and started.
    async fn prepare(
        &self,
        shape: Shape,
        limits: CgLimits,
        start: bool,
    ) -> Result<Box_, SandboxError> {
        let id = self
            .create(shape, limits, vec![RUNNER_PATH.to_string()])
            .await?;
        let mut b = Box_ {
            id,
            shape,
            limits,
            attach: None,
            started: false,
            prepared_at: Instant::now(),
        };
        if start {
            if let Err(e) = self.start_box(&mut b).await {
                self.remove(&b.id).await;
                return Err(e);
            }
        }
        Ok(b)
    }

    async fn start_box(&self, b: &mut Box_) -> Result<(), SandboxError> {
        if b.attach.is_none() {
            b.attach = Some(self.attach(&b.id).await?);
        }
        self.docker
            .start_container(&b.id, None)
            .await
            .map_err(|e| docker_err("start", e))?;
        b.started = true;
        cap_tcp_memory(&b.id, b.limits.memory);
        Ok(())
    }

    /// Kills and removes a container; errors are ignored (it may be gone already).
    async fn remove(&self, id: &str) {
        let _ = self
            .docker
            .remove_container(
                id,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await;
    }

    fn remove_later(self: &Arc<Self>, id: String) {
        self.removing.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        tokio::spawn(async move {
            me.remove(&id).await;
            me.removing.fetch_sub(1, Ordering::SeqCst);
        });
    }

    fn take(&self, shape: Shape) -> Option<Box_> {
        let mut pool = self.pool.lock().ok()?;
        let i = pool.iter().position(|b| b.shape == shape)?;
        Some(pool.remove(i))
    }

    /// Keeps `cfg.pool` containers of the wanted shape ready, plus one more in preparation for
    /// each run waiting for one (preparations run concurrently); replaces idle and stale ones.
    async fn refill_loop(self: Arc<Self>) {
        let mut last_sweep = Instant::now();
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return;
            }
            let (want, limits) = *self.want.lock().unwrap();
            // Retire what no run will take: another shape, or idle too long.
            let retired: Vec<Box_> = {
                let mut pool = self.pool.lock().unwrap();
                let (keep, old): (Vec<Box_>, Vec<Box_>) = pool
                    .drain(..)
                    .partition(|b| b.shape == want && b.prepared_at.elapsed() < POOL_IDLE);
                *pool = keep;
                old
            };
            for b in retired {
                self.remove_later(b.id);
            }
            let have = self.pool.lock().unwrap().len();
            let preparing = self.preparing.load(Ordering::SeqCst);
            let waiting = self.waiting.load(Ordering::SeqCst);
            let need = (self.cfg.pool + waiting).saturating_sub(have + preparing);
            let room = MAX_PREPARING.saturating_sub(preparing);
            let backoff = self.failures.load(Ordering::SeqCst);
            for _ in 0..need.min(room) {
                self.preparing.fetch_add(1, Ordering::SeqCst);
                let me = self.clone();
                tokio::spawn(async move { me.prepare_pooled(want, limits).await });
            }
            if backoff > 0 {
                // The engine is failing: back off; runs prepare their own meanwhile.
                tokio::time::sleep(Duration::from_millis(100 << backoff.min(6))).await;
            }
            // Now and then, what a killed predecessor's engine calls created after our start.
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                let _ = self.reap(SWEEP_EVERY).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), self.refill.notified()).await;
        }
    }

    /// One pool container (the caller counted it in `preparing`).
    async fn prepare_pooled(self: Arc<Self>, shape: Shape, limits: CgLimits) {
        let start = self.cfg.pool_mode == PoolMode::Started;
        match self.prepare(shape, limits, start).await {
            Ok(b) => {
                self.failures.store(0, Ordering::SeqCst);
                // Checked under the pool's lock: `close` drains the pool only once nothing is
                // being prepared, so a container is either pooled (and drained) or removed here.
                let late = {
                    let mut pool = self.pool.lock().unwrap();
                    if self.cancelled.load(Ordering::SeqCst) {
                        Some(b)
                    } else {
                        pool.push(b);
                        None
                    }
                };
                if let Some(b) = late {
                    self.remove(&b.id).await;
                }
                self.ready.notify_waiters();
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.preparing.fetch_sub(1, Ordering::SeqCst);
        self.refill.notify_one();
    }

    /// A container for a run: a pooled one, or the next one the pool finishes (a run that
    /// prepared its own would only compete with the pool for the engine), or, without a pool
    /// or while the engine keeps failing, one prepared for this run.
    async fn acquire(&self, shape: Shape, first: CgLimits) -> Result<(Box_, bool), SandboxError> {
        let start = self.cfg.pool_mode == PoolMode::Started;
        if self.cfg.pool == 0 {
            return Ok((self.prepare(shape, first, start).await?, false));
        }
        let t = Instant::now();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(b) = self.take(shape) {
                break Some(b);
            }
            if self.cancelled.load(Ordering::SeqCst) {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(SandboxError::Unsupported(
                    "the sandbox is shutting down".into(),
                ));
            }
            if self.failures.load(Ordering::SeqCst) > 0 || t.elapsed() > Duration::from_secs(10) {
                break None;
            }
            self.refill.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(50), ready).await;
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.refill.notify_one();
        match got {
            Some(b) => Ok((b, true)),
            None => Ok((self.prepare(shape, first, start).await?, false)),
        }
    }

    async fn set_limits(&self, b: &mut Box_, want: CgLimits) -> Result<(), SandboxError> {
        if b.limits == want {
            return Ok(());
        }
        let update = ContainerUpdateBody {
            memory: Some(want.memory),
            memory_swap: Some(want.memory),
            nano_cpus: Some(want.nano_cpus),
            pids_limit: Some(want.pids),
            ..Default::default()
        };
        match self.docker.update_container(&b.id, update).await {
            Ok(()) => {
                b.limits = want;
                if b.started {
                    cap_tcp_memory(&b.id, want.memory);
                }
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("busy") || msg.contains("smaller than") {
                    Err(SandboxError::MemoryInUse)
                } else {
                    Err(docker_err("update", e))
                }
            }
        }
    }

    /// One execution, start to end, on this backend's runtime.
    async fn run(
        self: Arc<Self>,
        spec: ExecSpec,
        events: mpsc::Sender<Event>,
        mut ctl: tokio::sync::mpsc::UnboundedReceiver<Ctl>,
    ) -> Result<ExecReport, SandboxError> {
        let started = Instant::now();
        let shape = Shape::of(&spec);
        let first = CgLimits::of(&spec.phases[0].limits);
        *self.want.lock().unwrap() = (shape, first);
        let (mut b, warm) = self.acquire(shape, first).await?;
        self.live.lock().unwrap().insert(b.id.clone());
        let result = self
            .drive(&mut b, &spec, &events, &mut ctl, started, warm)
            .await;
        self.live.lock().unwrap().remove(&b.id);
        self.remove_later(b.id.clone());
        result
    }

    async fn drive(
        &self,
        b: &mut Box_,
        spec: &ExecSpec,
        events: &mpsc::Sender<Event>,
        ctl: &mut tokio::sync::mpsc::UnboundedReceiver<Ctl>,
        started: Instant,
        warm: bool,
    ) -> Result<ExecReport, SandboxError> {
        let not_started = |status| ExecReport {
            phases: vec![crate::spec::not_started(&spec.phases[0], status)],
            setup_time: started.elapsed(),
            total_time: started.elapsed(),
            warm,
        };
        match self
            .set_limits(b, CgLimits::of(&spec.phases[0].limits))
            .await
        {
            Ok(()) => {}
            Err(SandboxError::MemoryInUse) => return Ok(not_started(Status::MemoryLimit)),
            Err(e) => return Err(e),
        }
        if !b.started {
            self.start_box(b).await?;
        }
        let setup_time = started.elapsed();
        let mut att = b
            .attach
            .take()
            .ok_or_else(|| SandboxError::Setup("the container is not attached".into()))?;
        // The job.
        let job = Job {
            files: spec
                .files
                .iter()
                .map(|f| JobFile {
                    path: f.path.clone(),
                    executable: f.executable,
                })
                .collect(),
            phases: spec.phases.iter().map(job_phase).collect(),
        };
        let mut wire = proto::frame(
            proto::JOB,
            &serde_json::to_vec(&job).map_err(|e| SandboxError::Setup(e.to_string()))?,
        );
        for f in &spec.files {
            proto::encode(&mut wire, proto::FILE, &f.content);
        }
        let io_err = |e: std::io::Error| SandboxError::Setup(format!("docker attach: {e}"));
        att.input.write_all(&wire).await.map_err(io_err)?;
        att.input.flush().await.map_err(io_err)?;

        // Backstop: the runner enforces each phase's limits; if it cannot (starved, killed),
        // the container is killed when every phase's time is used up and some.
        let budget: Duration = spec
            .phases
            .iter()
            .map(|p| p.limits.wall + Duration::from_secs(2))
            .sum::<Duration>()
            + Duration::from_secs(5);
        let deadline = tokio::time::Instant::now() + budget;
        let mut decoder = proto::Decoder::default();
        let mut reports: Vec<PhaseReport> = Vec::new();
        let mut current: Option<(usize, Instant, Vec<u8>, Vec<u8>)> = None;
        let mut diag = Vec::new();
        let mut failure: Option<String> = None;
        let mut stdin_open = false;
        let mut done = false;
        'outer: while !done {
            tokio::select! {
                chunk = att.output.next() => {
                    let Some(Ok(chunk)) = chunk else { break 'outer };
                    match chunk {
                        LogOutput::StdOut { message } => decoder.push(&message),
                        LogOutput::StdErr { message } if diag.len() < 4096 => {
                            diag.extend_from_slice(&message)
                        }
                        _ => {}
                    }
                    loop {
                        let frame = match decoder.next_frame() {
                            Ok(Some(f)) => f,
                            Ok(None) => break,
                            Err(e) => { failure = Some(e); break 'outer }
                        };
                        match frame {
                            (proto::READY, p) => {
                                let i: usize = String::from_utf8_lossy(&p).parse().unwrap_or(usize::MAX);
                                let Some(phase) = spec.phases.get(i) else {
                                    failure = Some("the runner asked for an unknown phase".into());
                                    break 'outer;
                                };
                                match self.set_limits(b, CgLimits::of(&phase.limits)).await {
                                    Ok(()) => {}
                                    Err(SandboxError::MemoryInUse) => {
                                        reports.push(crate::spec::not_started(phase, Status::MemoryLimit));
                                        done = true;
                                        break;
                                    }
                                    Err(e) => return Err(e),
                                }
                                let mut go = proto::frame(proto::GO, b"");
                                for c in phase.stdin.chunks(1 << 20) {
                                    proto::encode(&mut go, proto::STDIN, c);
                                }
                                att.input.write_all(&go).await.map_err(io_err)?;
                                att.input.flush().await.map_err(io_err)?;
                                stdin_open = true;
                                current = Some((i, Instant::now(), Vec::new(), Vec::new()));
                                let _ = events.send(Event::PhaseStarted(i));
                            }
                            (proto::OUTPUT, p) if !p.is_empty() => {
                                if let Some((i, _, out, err)) = current.as_mut() {
                                    let (stream, buf) = if p[0] == 1 { (Stream::Stdout, out) } else { (Stream::Stderr, err) };
                                    buf.extend_from_slice(&p[1..]);
                                    let _ = events.send(Event::Output(*i, stream, p[1..].to_vec()));
                                }
                            }
                            (proto::PHASE, p) => {
                                let Some((i, _, out, err)) = current.take() else { continue };
                                let r: PhaseResult = serde_json::from_slice(&p)
                                    .map_err(|e| SandboxError::Setup(format!("bad phase report: {e}")))?;
                                reports.push(phase_report(&spec.phases[i], r, out, err));
                                stdin_open = false;
                            }
                            (proto::DONE, _) => { done = true; break; }
                            (proto::FAILED, p) => {
                                failure = Some(String::from_utf8_lossy(&p).into_owned());
                                break 'outer;
                            }
                            _ => {}
                        }
                    }
                }
                msg = ctl.recv() => {
                    match msg {
                        Some(Ctl::Stdin(d)) if stdin_open => {
                            att.input.write_all(&proto::frame(proto::STDIN, &d)).await.map_err(io_err)?;
                            att.input.flush().await.map_err(io_err)?;
                        }
                        Some(Ctl::StdinEnd) if stdin_open => {
                            att.input.write_all(&proto::frame(proto::STDIN_END, b"")).await.map_err(io_err)?;
                            att.input.flush().await.map_err(io_err)?;
                            stdin_open = false;
                        }
                        Some(Ctl::Cancel) | None => {
                            failure = Some("the run was cancelled".into());
                            self.kill(&b.id).await;
                            break 'outer;
                        }
                        _ => {}
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.kill(&b.id).await;
                    if let Some((i, t, out, err)) = current.take() {
                        let mut r = phase_report(&spec.phases[i], PhaseResult::default(), out, err);
                        r.status = Status::Timeout;
                        r.limit_hit = Some(LimitHit::WallTime);
                        r.wall_time = t.elapsed();
                        reports.push(r);
                    }
                    done = true;
                }
            }
        }
        if !done {
            // The stream ended or broke before the runner said it was done: the container died
            // (the OOM killer took the runner, the engine killed it) or the run was cancelled.
            let oom = match self.docker.inspect_container(&b.id, None).await {
                Ok(c) => c.state.and_then(|s| s.oom_killed).unwrap_or(false),
                Err(_) => false,
            };
            let had_phase = current.is_some();
            let (i, t, out, err) = current.take().unwrap_or((
                reports.len().min(spec.phases.len() - 1),
                started,
                vec![],
                vec![],
            ));
            let mut r = phase_report(&spec.phases[i], PhaseResult::default(), out, err);
            r.wall_time = t.elapsed();
            if oom && failure.is_none() {
                r.status = Status::MemoryLimit;
                r.limit_hit = Some(LimitHit::Memory);
            } else {
                r.status = Status::InternalError;
                let why = failure.unwrap_or_else(|| {
                    let d = String::from_utf8_lossy(&diag);
                    format!("the container ended before the run did {}", d.trim())
                });
                r.internal_error = Some(why);
            }
            let cancelled = r.internal_error.as_deref() == Some("the run was cancelled");
            if !had_phase && reports.is_empty() && r.status == Status::InternalError && !cancelled {
                // The runner never started a program: the sandbox failed, not the program.
                return Err(SandboxError::Setup(r.internal_error.unwrap_or_default()));
            }
            reports.push(r);
        }
        Ok(ExecReport {
            phases: reports,
            setup_time,
            total_time: started.elapsed(),
            warm,
        })
    }

    async fn kill(&self, id: &str) {
        let _ = self
            .docker
            .kill_container(
                id,
                Some(
                    KillContainerOptionsBuilder::default()
                        .signal("KILL")
                        .build(),
                ),
            )
            .await;
    }
}

/// The v1 memory cgroup of a container when the engine runs on this host (cgroupfs or systemd
/// driver), None elsewhere (v2, a remote engine).
pub fn v1_memory_cgroup(id: &str) -> Option<std::path::PathBuf> {
    [
        format!("/sys/fs/cgroup/memory/docker/{id}"),
        format!("/sys/fs/cgroup/memory/system.slice/docker-{id}.scope"),
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.join("memory.kmem.tcp.limit_in_bytes").exists())
}

/// On cgroup v1, socket buffers are charged to a group only once its `kmem.tcp` limit is set,
/// and Docker's API no longer sets it: when the container's group is on this host, cap them at
/// the memory limit, as the native sandbox does (v2 charges them to `memory.max` anyway).
fn cap_tcp_memory(id: &str, bytes: i64) {
    if let Some(dir) = v1_memory_cgroup(id) {
        let _ = std::fs::write(
            dir.join("memory.kmem.tcp.limit_in_bytes"),
            bytes.to_string(),
        );
    }
}

/// What the runner needs of a phase.
fn job_phase(p: &Phase) -> JobPhase {
    JobPhase {
        argv: p.argv.clone(),
        env: program_env(&p.env),
        wall_ms: p.limits.wall.as_millis() as u64,
        cpu_ms: p.limits.cpu.as_millis() as u64,
        max_output: p.limits.max_output_bytes,
        rlimits: rlimits(&p.limits),
        continue_on_failure: p.continue_on_failure,
    }
}

/// The runner's measurements as the common report.
fn phase_report(phase: &Phase, r: PhaseResult, stdout: Vec<u8>, stderr: Vec<u8>) -> PhaseReport {
    let limit = match r.limit.as_deref() {
        Some("wall") => Some(LimitHit::WallTime),
        Some("cpu") => Some(LimitHit::CpuTime),
        Some("output") => Some(LimitHit::Output),
        _ => None,
    };
    let (status, limit_hit) = classify(limit, r.error.is_some(), r.oom, r.exit_code, r.signal);
    PhaseReport {
        name: phase.name.clone(),
        status,
        exit_code: r.exit_code,
        signal: r.signal,
        limit_hit,
        stdout,
        stderr,
        stdout_truncated: r.stdout_truncated,
        stderr_truncated: r.stderr_truncated,
        cpu_time: Duration::from_nanos(r.cpu_ns),
        wall_time: Duration::from_nanos(r.wall_ns),
        memory_peak_bytes: r.peak_bytes,
        internal_error: r.error,
    }
}

/// Whether the host enforces AppArmor, and so which profile the containers get.
fn resolve_apparmor(setting: Option<&str>) -> Result<Option<String>, SandboxError> {
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false);
    match setting {
        Some("") => Ok(None),
        Some(p) => Ok(Some(p.to_string())),
        None if !enabled => Ok(None),
        None => {
            let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
                .map(|s| s.lines().any(|l| l.split(' ').next() == Some("isobox")))
                .unwrap_or(false);
            if loaded {
                Ok(Some("isobox".into()))
            } else {
                Err(SandboxError::Unsupported(
                    "this host enforces AppArmor but the `isobox` profile is not loaded: run \
                     `apparmor_parser -r -W deploy/apparmor/isobox` (or set \
                     ISOBOX_DOCKER_APPARMOR to another loaded profile)"
                        .into(),
                ))
            }
        }
    }
}

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn has_command(&self, cmd: &str) -> bool {
        if cmd.contains('/') {
            return self.inner.commands.contains(cmd);
        }
        crate::spec::SANDBOX_PATH
            .split(':')
            .any(|d| self.inner.commands.contains(&format!("{d}/{cmd}")))
    }

    fn cancel_all(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let ids: Vec<String> = self
            .inner
            .live
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        let inner = self.inner.clone();
        self.wait(async move {
            for id in ids {
                inner.kill(&id).await;
            }
        });
    }

    fn shutdown(&self) {
        self.close();
    }

    fn execute_io(&self, spec: &ExecSpec, io: &mut dyn RunIo) -> Result<ExecReport, SandboxError> {
        if self.inner.cancelled.load(Ordering::SeqCst) {
            return Err(SandboxError::Unsupported(
                "the sandbox is shutting down".into(),
            ));
        }
        validate(spec)?;
        let rt = self.rt.as_ref().expect("runtime");
        let (ev_tx, ev_rx) = mpsc::channel();
        let (ctl_tx, ctl_rx) = tokio::sync::mpsc::unbounded_channel();
        let inner = self.inner.clone();
        let spec_owned = spec.clone();
        let done_tx = ev_tx.clone();
        rt.spawn(async move {
            let r = inner.run(spec_owned, ev_tx, ctl_rx).await;
            let _ = done_tx.send(Event::Done(r));
        });
        let mut phase: Option<usize> = None;
        let mut cancelled = false;
        loop {
            match ev_rx.recv_timeout(Duration::from_millis(10)) {
                Ok(Event::PhaseStarted(i)) => phase = Some(i),
                Ok(Event::Output(i, s, d)) => io.output(i, s, &d),
                Ok(Event::Done(r)) => return r,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(SandboxError::Setup("the docker run task ended".into()))
                }
            }
            if !cancelled && io.cancelled() {
                cancelled = true;
                let _ = ctl_tx.send(Ctl::Cancel);
            }
            if let Some(i) = phase {
                match io.stdin(i) {
                    StdinPoll::Data(d) => {
                        let _ = ctl_tx.send(Ctl::Stdin(d));
                    }
                    StdinPoll::Pending => {}
                    StdinPoll::Closed => {
                        let _ = ctl_tx.send(Ctl::StdinEnd);
                        phase = None;
                    }
                }
            }
        }
    }
}

/// The checks every backend makes of a spec.
fn validate(spec: &ExecSpec) -> Result<(), SandboxError> {
    if spec.phases.is_empty() || spec.phases.len() > 8 {
        return Err(SandboxError::InvalidSpec(
            "a run has 1 to 8 programs".into(),
        ));
    }
    crate::spec::check_files(&spec.files)?;
    for p in &spec.phases {
        if p.argv.is_empty() {
            return Err(SandboxError::InvalidSpec(format!(
                "phase `{}` has an empty command",
                p.name
            )));
        }
        let bad = |s: &str| s.contains('\0');
        if p.argv.iter().any(|a| bad(a))
            || p.env
                .iter()
                .any(|(k, v)| bad(k) || bad(v) || k.contains('='))
        {
            return Err(SandboxError::InvalidSpec(
                "arguments and environment may not contain NUL bytes".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_config_is_the_hardened_one() {
        let hc = host_config(
            &DockerConfig {
                runtime: Some("runsc".into()),
                ..Default::default()
            },
            "{}",
            Some("isobox"),
            Shape {
                tmpfs_bytes: 1 << 20,
                tmpfs_inodes: 100,
            },
            61001,
            CgLimits::of(&Limits::default()),
        );
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.memory, hc.memory_swap);
        assert_eq!(hc.memory, Some(256 << 20));
        assert_eq!(hc.pids_limit, Some(64));
        assert_eq!(hc.nano_cpus, Some(1_000_000_000));
        assert_eq!(hc.runtime.as_deref(), Some("runsc"));
        let opts = hc.security_opt.unwrap();
        assert!(opts.contains(&"no-new-privileges:true".to_string()));
        assert!(opts.contains(&"seccomp={}".to_string()));
        assert!(opts.contains(&"apparmor=isobox".to_string()));
        let tmp = &hc.tmpfs.unwrap()["/tmp"];
        assert!(
            tmp.contains("size=1048576") && tmp.contains("nr_inodes=100"),
            "{tmp}"
        );
        assert!(tmp.contains("uid=61001") && tmp.contains("nosuid") && tmp.contains("nodev"));
        assert!(hc.binds.is_none() && hc.mounts.is_none() && hc.volumes_from.is_none());
        assert_eq!(hc.privileged, Some(false));
    }
}
