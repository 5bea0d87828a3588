//! The life of every container this backend instance makes, and the engine connection they
//! are made through ([`Engine`]): connecting (version-negotiated), checking the image, creating
//! a container from [`super::hardening`]'s spec with our labels (`isobox=1`,
//! `isobox.instance=<instance>`), attaching, starting, giving it a phase's cgroup limits,
//! killing and removing it (now or in the background), the set of containers running a job,
//! and the reaper that removes this instance's strays: at start whatever a crashed predecessor
//! left, later (called by the pool's periodic sweep) what an engine finished creating after
//! that. At start it also lists the image's commands, in a throwaway container.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::config::{runner_command, DockerConfig};
use super::hardening::{self, CgLimits, Shape, UID_RANGE};
use super::image;
use crate::spec::Limits;
use crate::SandboxError;

/// Label every container of ours carries.
pub const LABEL: &str = "isobox";
/// Label naming the backend instance that owns a container (what the startup reaper matches).
pub const INSTANCE_LABEL: &str = "isobox.instance";

pub(super) fn docker_err(what: &str, e: bollard::errors::Error) -> SandboxError {
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

/// A container prepared for one run (pooled until a run takes it).
pub(super) struct Container {
    pub(super) id: String,
    pub(super) shape: Shape,
    pub(super) limits: CgLimits,
    pub(super) attach: Option<AttachContainerResults>,
    pub(super) started: bool,
    pub(super) prepared_at: Instant,
}

/// The engine connection and the containers of this backend instance.
pub(super) struct Engine {
    pub(super) docker: Docker,
    pub(super) cfg: DockerConfig,
    seccomp: String,
    apparmor: Option<String>,
    /// Executables of the image (full paths), listed once at start.
    commands: HashSet<String>,
    /// Containers running a job.
    live: Mutex<HashSet<String>>,
    /// Where the next uid claim starts (a rotation, so that uids spread).
    next_uid: AtomicU32,
    /// The uid lock of each container of ours (see [`crate::uids`]): held from before its
    /// creation until the engine has removed it, so no other backend on this host (docker or
    /// native, this server or another) gives its uid to a live sandbox meanwhile.
    uid_locks: Mutex<HashMap<String, std::fs::File>>,
    /// Containers being removed in the background.
    removing: AtomicUsize,
}

impl Engine {
    /// Connects, checks the image (exists, built for this runner protocol), resolves AppArmor,
    /// removes this instance's leftovers and lists the image's commands.
    pub(super) async fn open(cfg: DockerConfig) -> Result<Engine, SandboxError> {
        let docker = connect(cfg.host.as_deref()).await?;
        image::check(&docker, &cfg.image).await?;
        std::fs::create_dir_all(crate::uids::DEFAULT_DIR).map_err(|e| {
            SandboxError::Setup(format!(
                "cannot create {} (the uid lock files): {e}",
                crate::uids::DEFAULT_DIR
            ))
        })?;
        // As the native backend leaves it.
        let _ = std::fs::set_permissions(
            crate::uids::DEFAULT_DIR,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
        let apparmor = hardening::resolve_apparmor(cfg.apparmor.as_deref())?;
        let seccomp = crate::seccomp::docker_profile().to_string();
        let engine = Engine {
            docker,
            seccomp,
            apparmor,
            commands: HashSet::new(),
            live: Mutex::new(HashSet::new()),
            next_uid: AtomicU32::new(std::process::id()),
            uid_locks: Mutex::new(HashMap::new()),
            removing: AtomicUsize::new(0),
            cfg,
        };
        engine.reap_leftovers().await?;
        let commands = engine.list_commands().await?;
        Ok(Engine { commands, ..engine })
    }

    /// Whether `cmd` (a name looked up in the sandbox PATH, or an absolute path) is an
    /// executable of the image.
    pub(super) fn has_command(&self, cmd: &str) -> bool {
        if cmd.contains('/') {
            return self.commands.contains(cmd);
        }
        crate::spec::SANDBOX_PATH
            .split(':')
            .any(|d| self.commands.contains(&format!("{d}/{cmd}")))
    }

    /// Removes every container this instance left behind (a crash, a kill -9).
    async fn reap_leftovers(&self) -> Result<usize, SandboxError> {
        self.reap(Duration::ZERO, Vec::new).await
    }

    /// Removes this instance's containers that are neither pooled (`pooled` lists those, asked
    /// once the engine has answered) nor running a job and were created more than `min_age`
    /// ago: at start (age 0) whatever a crashed server left, and afterwards a container whose
    /// `create` was still in flight in the engine when its server was killed (the engine
    /// finishes it after the reaper at start has looked).
    pub(super) async fn reap(
        &self,
        min_age: Duration,
        pooled: impl FnOnce() -> Vec<String>,
    ) -> Result<usize, SandboxError> {
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
            let pool = pooled();
            let live = self
                .live
                .lock()
                .map(|l| l.iter().cloned().collect::<Vec<_>>());
            pool.into_iter().chain(live.unwrap_or_default()).collect()
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
                runner_command(&["--list-commands"]),
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

    /// Claims a uid of [`UID_RANGE`] no live sandbox of this host has (its lock file held until
    /// the container is removed).
    fn claim_uid(&self) -> Result<(u32, std::fs::File), SandboxError> {
        let count = UID_RANGE.end - UID_RANGE.start;
        let start = self.next_uid.fetch_add(1, Ordering::Relaxed);
        let dir = std::path::Path::new(crate::uids::DEFAULT_DIR);
        match crate::uids::claim(dir, UID_RANGE.start, count, start) {
            Some((k, lock)) => {
                // The next claim starts after this one.
                self.next_uid.store(k.wrapping_add(1), Ordering::Relaxed);
                Ok((UID_RANGE.start + k, lock))
            }
            None => Err(SandboxError::Setup(format!(
                "all {count} container uids are in use"
            ))),
        }
    }

    async fn create(
        &self,
        shape: Shape,
        limits: CgLimits,
        cmd: Vec<String>,
    ) -> Result<String, SandboxError> {
        let (uid, lock) = self.claim_uid()?;
        let body = bollard::models::ContainerCreateBody {
            labels: Some(HashMap::from([
                (LABEL.to_string(), "1".to_string()),
                (INSTANCE_LABEL.to_string(), self.cfg.instance.clone()),
            ])),
            ..hardening::container_body(
                &self.cfg,
                &self.seccomp,
                self.apparmor.as_deref(),
                shape,
                uid,
                limits,
                cmd,
            )
        };
        let r = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::default().build()), body)
            .await
            .map_err(|e| docker_err("create", e))?;
        self.uid_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(r.id.clone(), lock);
        Ok(r.id)
    }

    async fn attach(&self, id: &str) -> Result<AttachContainerResults, SandboxError> {
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

    /// A container ready for a run: created, and with `start` attached and started.
    pub(super) async fn prepare(
        &self,
        shape: Shape,
        limits: CgLimits,
        start: bool,
    ) -> Result<Container, SandboxError> {
        let id = self.create(shape, limits, runner_command(&[])).await?;
        let mut c = Container {
            id,
            shape,
            limits,
            attach: None,
            started: false,
            prepared_at: Instant::now(),
        };
        if start {
            if let Err(e) = self.start(&mut c).await {
                self.remove(&c.id).await;
                return Err(e);
            }
        }
        Ok(c)
    }

    /// Attaches (unless attached already) and starts `c`.
    pub(super) async fn start(&self, c: &mut Container) -> Result<(), SandboxError> {
        if c.attach.is_none() {
            c.attach = Some(self.attach(&c.id).await?);
        }
        self.docker
            .start_container(&c.id, None)
            .await
            .map_err(|e| docker_err("start", e))?;
        c.started = true;
        hardening::cap_tcp_memory(&c.id, c.limits.memory);
        Ok(())
    }

    /// Gives `c` the cgroup limits `want` (nothing to do when it has them);
    /// [`SandboxError::MemoryInUse`] when the memory limit cannot go below what it holds.
    pub(super) async fn set_limits(
        &self,
        c: &mut Container,
        want: CgLimits,
    ) -> Result<(), SandboxError> {
        if c.limits == want {
            return Ok(());
        }
        match self
            .docker
            .update_container(&c.id, hardening::limits_update(want))
            .await
        {
            Ok(()) => {
                c.limits = want;
                if c.started {
                    hardening::cap_tcp_memory(&c.id, want.memory);
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

    /// Kills and removes a container; errors are ignored (it may be gone already). Its uid is
    /// released once the engine says it is gone.
    pub(super) async fn remove(&self, id: &str) {
        let r = self
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
        let gone = match r {
            Ok(()) => true,
            Err(bollard::errors::Error::DockerResponseServerError { status_code, .. }) => {
                status_code == 404
            }
            // Not known to be gone: the uid stays claimed (the reaper's next sweep removes the
            // container and releases it).
            Err(_) => false,
        };
        if gone {
            self.uid_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
    }

    /// [`Engine::remove`] in a task of its own, counted until it is done (see
    /// [`Engine::settled`]).
    pub(super) fn remove_later(self: &Arc<Self>, id: String) {
        self.removing.fetch_add(1, Ordering::SeqCst);
        let me = self.clone();
        tokio::spawn(async move {
            me.remove(&id).await;
            me.removing.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Sends SIGKILL to a container's processes; errors are ignored.
    pub(super) async fn kill(&self, id: &str) {
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

    /// Counts container `id` as running a job (the reaper leaves it alone, `cancel_all` kills
    /// it).
    pub(super) fn run_started(&self, id: &str) {
        self.live.lock().unwrap().insert(id.to_string());
    }

    /// The job of container `id` is over.
    pub(super) fn run_ended(&self, id: &str) {
        self.live.lock().unwrap().remove(id);
    }

    /// The containers running a job.
    pub(super) fn running(&self) -> Vec<String> {
        self.live
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// No container is running a job or being removed in the background.
    pub(super) fn settled(&self) -> bool {
        self.removing.load(Ordering::SeqCst) == 0
            && self.live.lock().map(|l| l.is_empty()).unwrap_or(true)
    }
}
