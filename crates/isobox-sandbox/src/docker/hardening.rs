//! What confines every container of the docker backend, and nothing else: the container's
//! create body (a non-root uid from [`UID_RANGE`], a clean environment, no network, stdin
//! attached, no tty) with its `HostConfig` (every capability dropped, no_new_privs, our seccomp
//! profile and, where the host has AppArmor, our AppArmor profile, a read-only root, a size- and
//! inode-capped `/tmp` tmpfs, memory = memory+swap, pids and CPU limits, every ulimit pinned,
//! small socket buffers, private IPC, no engine logs, no host path mounted); the cgroup limits
//! changed between phases ([`CgLimits`]); the cgroup v1 socket-buffer cap; and the choice of
//! the AppArmor profile. Nothing here comes from the client.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits,
};

use super::config::DockerConfig;
use crate::spec::{program_env, ExecSpec, Limits};
use crate::SandboxError;

/// Uids given to containers, one per live container (cycled).
pub const UID_RANGE: std::ops::Range<u32> = 61000..62000;

/// What the container's cgroup enforces (the runner enforces the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CgLimits {
    pub(super) memory: i64,
    pub(super) pids: i64,
    pub(super) nano_cpus: i64,
}

impl CgLimits {
    pub(super) fn of(l: &Limits) -> CgLimits {
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
pub(super) struct Shape {
    pub(super) tmpfs_bytes: u64,
    pub(super) tmpfs_inodes: u64,
}

impl Shape {
    pub(super) fn of(spec: &ExecSpec) -> Shape {
        Shape {
            tmpfs_bytes: spec.tmpfs_bytes.max(4096),
            tmpfs_inodes: spec.tmpfs_inodes.max(16),
        }
    }
}

/// The create body of every container, labels aside: `cmd` run as `uid` with the clean
/// program environment, in `/tmp`, without network, stdin attached once, and
/// [`host_config`]'s confinement.
pub(super) fn container_body(
    cfg: &DockerConfig,
    seccomp: &str,
    apparmor: Option<&str>,
    shape: Shape,
    uid: u32,
    limits: CgLimits,
    cmd: Vec<String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(cfg.image.clone()),
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
        host_config: Some(host_config(cfg, seccomp, apparmor, shape, uid, limits)),
        ..Default::default()
    }
}

/// The HostConfig of every run container: SECURITY.md's hardening, nothing from the client.
pub(super) fn host_config(
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
        ulimits: Some(ulimits()),
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

/// The container's fixed rlimits: those every phase gets with the same value
/// ([`crate::spec::rlimits`]), so the runner itself starts with them too. The others (CPU, file
/// size, data, stack, resident set, processes, address space, real-time timeout) depend on the
/// phase: the runner sets them between fork and exec, lowered to the container's hard limit
/// where the engine gave less (runc, like the runner, may lack CAP_SYS_RESOURCE and cannot
/// raise the engine's own limits).
pub(super) fn ulimits() -> Vec<ResourcesUlimits> {
    use crate::spec::{LOCKS, MEMLOCK_BYTES, MSGQUEUE_BYTES, SIGPENDING};
    [
        ("core", 0),
        ("nofile", 4096),
        ("memlock", MEMLOCK_BYTES as i64),
        ("locks", LOCKS as i64),
        ("sigpending", SIGPENDING as i64),
        ("msgqueue", MSGQUEUE_BYTES as i64),
        ("nice", 0),
        ("rtprio", 0),
    ]
    .into_iter()
    .map(|(name, v)| ResourcesUlimits {
        name: Some(name.into()),
        soft: Some(v),
        hard: Some(v),
    })
    .collect()
}

/// The update that gives a container a phase's cgroup limits (memory = memory+swap, as at
/// create).
pub(super) fn limits_update(want: CgLimits) -> ContainerUpdateBody {
    ContainerUpdateBody {
        memory: Some(want.memory),
        memory_swap: Some(want.memory),
        nano_cpus: Some(want.nano_cpus),
        pids_limit: Some(want.pids),
        ..Default::default()
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
pub(super) fn cap_tcp_memory(id: &str, bytes: i64) {
    if let Some(dir) = v1_memory_cgroup(id) {
        let _ = std::fs::write(
            dir.join("memory.kmem.tcp.limit_in_bytes"),
            bytes.to_string(),
        );
    }
}

/// Whether the host enforces AppArmor, and so which profile the containers get.
pub(super) fn resolve_apparmor(setting: Option<&str>) -> Result<Option<String>, SandboxError> {
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
        let ulimits = hc.ulimits.unwrap();
        assert_eq!(ulimits.len(), 8, "every fixed rlimit: {ulimits:?}");
        for u in &ulimits {
            assert_eq!(u.soft, u.hard, "{u:?}");
        }
        let get = |n: &str| {
            ulimits
                .iter()
                .find(|u| u.name.as_deref() == Some(n))
                .unwrap()
                .hard
        };
        assert_eq!(get("core"), Some(0));
        assert_eq!(get("rtprio"), Some(0));
        assert_eq!(get("nice"), Some(0));
    }
}
