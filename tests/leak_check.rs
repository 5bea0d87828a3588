//! Runs after the rest of the suite (scripts/test runs it last, on its own) and checks that all
//! those sandboxes left nothing behind on the host: no cgroup, no process of the sandbox user,
//! no mount, no temp dir. It also runs a few sandboxes itself first, so it checks something even
//! when run alone. The docker backend's part: no container labelled `isobox` (of any instance)
//! and no process of the container uids is left on the engine's host.

use crate::common::*;

use isobox_sandbox::cgroup::Layout;

#[test]
fn leak_check() {
    // Some sandboxes of our own, including ones that fight back.
    assert_eq!(
        run_code("bash", "(setsid sleep 1000 &); echo hi").status,
        "ok"
    );
    assert_eq!(
        run_with("bash", "sleep 1000", |r| r.limits = Some(limits(300, 64))).status,
        "timeout"
    );
    assert_eq!(
        run_with("bash", "kill -STOP $$", |r| r.limits =
            Some(limits(300, 64)))
        .status,
        "timeout"
    );

    let layout = Layout::detect("isobox").expect("cgroups");
    let groups = layout.run_groups();
    assert!(groups.is_empty(), "cgroups left behind: {groups:?}");

    let procs = processes_of_uids(sandbox_uids());
    assert!(procs.is_empty(), "sandbox processes left behind: {procs:?}");

    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains("/run/isobox") || l.contains("isobox-tmp"))
        .collect();
    assert!(ours.is_empty(), "mounts left on the host: {ours:?}");

    let tmp: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("isobox"))
        .collect();
    assert!(tmp.is_empty(), "temp dirs left behind: {tmp:?}");

    // The docker backend: a few runs that fight back, then nothing of ours on the engine.
    let docker = docker_backend(2);
    let exec = isobox_core::Executor::new(
        std::sync::Arc::new(docker),
        isobox_core::LanguageTable::builtin(),
        isobox_core::Policy::default(),
    );
    let req = |code: &str, timeout: u64| isobox_core::ExecuteRequest {
        language: "bash".into(),
        code: Some(code.into()),
        limits: Some(limits(timeout, 64)),
        ..Default::default()
    };
    let r = exec
        .execute(&req("(setsid sleep 1000 &); echo hi", 3000))
        .unwrap();
    assert_eq!(r.status, "ok", "{r:?}");
    let r = exec.execute(&req("kill -STOP $$", 300)).unwrap();
    assert_eq!(r.status, "timeout", "{r:?}");
    exec.backend().shutdown();
    drop(exec);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let left: Vec<String> = rt.block_on(async {
        let d = bollard::Docker::connect_with_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&std::collections::HashMap::from([(
                "label".to_string(),
                vec![isobox_sandbox::docker::LABEL.to_string()],
            )]))
            .build();
        d.list_containers(Some(opts))
            .await
            .unwrap()
            .into_iter()
            .map(|c| format!("{:?} {:?} {:?}", c.id, c.state, c.labels))
            .collect()
    });
    assert!(left.is_empty(), "containers left on the engine: {left:?}");
    let procs = processes_of_uids(isobox_sandbox::docker::UID_RANGE);
    assert!(
        procs.is_empty(),
        "container processes left behind: {procs:?}"
    );
}
