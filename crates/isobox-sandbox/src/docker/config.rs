//! The docker backend's settings ([`DockerConfig`], [`PoolMode`]) and the fixed names the
//! backend and its runtime image agree on: the image's default tag, where the runner lives in
//! it and the label that carries its runner protocol.

/// Where the runner lives in the image.
pub const RUNNER_PATH: &str = "/isobox/isobox-runner";
/// The runner's own dynamic loader and libraries in the image (copies of the build host's): the
/// runner runs with them, whatever C library the image's root has (a bullseye runtime's glibc is
/// older than the one the runner was linked against); the programs it starts use the root's.
pub const RUNNER_LIBS: &str = "/isobox/lib";

/// The command that starts the runner in a container, with `args`.
pub fn runner_command(args: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("{RUNNER_LIBS}/ld.so"),
        "--library-path".to_string(),
        RUNNER_LIBS.to_string(),
        RUNNER_PATH.to_string(),
    ];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}
/// Image label with the runner protocol the image was built for.
pub const PROTOCOL_LABEL: &str = "isobox.protocol";

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
