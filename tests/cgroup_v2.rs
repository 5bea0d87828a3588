//! The cgroup v2 code paths, exercised for real on whatever v2 hierarchy this host has.
//!
//! On a pure v2 host the normal suite already runs on v2. On a hybrid host (v1 controllers plus
//! an empty `unified` v2 hierarchy) the v2 hierarchy still accounts CPU time (`cpu.stat`) and can
//! kill a group (`cgroup.kill`), so this test builds a sandbox whose CPU accounting and tree
//! kill come from v2 while memory/pids/cpu limits stay on v1.

use std::time::Duration;

use isobox_sandbox::cgroup::{Layout, Mount};
use isobox_sandbox::{Backend, ExecSpec, LimitHit, Limits, NativeBackend, NativeConfig, Status};

fn v2_mount() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(Into::into)
}

fn spec(script: &str, limits: Limits) -> ExecSpec {
    ExecSpec::single(
        vec!["sh".into(), "-c".into(), script.into()],
        vec![],
        limits,
    )
}

#[test]
fn cpu_accounting_and_kill_on_cgroup_v2() {
    let v2 = v2_mount().expect("this host has a cgroup v2 hierarchy");
    let mut layout = Layout::detect("isobox").expect("cgroups");
    layout.cpuacct = Mount::V2(v2.clone());
    let backend = NativeBackend::with_layout(NativeConfig::default(), layout).expect("backend");

    // CPU time is read from the v2 group's cpu.stat and enforced.
    let limits = Limits {
        cpu: Duration::from_millis(400),
        wall: Duration::from_secs(5),
        ..Limits::default()
    };
    let r = backend
        .execute(&spec("while :; do :; done", limits))
        .unwrap();
    let p = &r.phases[0];
    assert_eq!(p.status, Status::Timeout, "{p:?}");
    assert_eq!(p.limit_hit, Some(LimitHit::CpuTime));
    assert!(
        p.cpu_time >= Duration::from_millis(380) && p.cpu_time < Duration::from_secs(2),
        "{p:?}"
    );

    // A normal run reports its CPU time from v2 too, and the v2 group is gone afterwards.
    let r = backend
        .execute(&spec(
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i",
            Limits::default(),
        ))
        .unwrap();
    let p = &r.phases[0];
    assert_eq!(p.status, Status::Ok, "{p:?}");
    assert_eq!(String::from_utf8_lossy(&p.stdout).trim(), "20000");
    assert!(p.cpu_time > Duration::ZERO);
    let left: Vec<_> = std::fs::read_dir(v2.join("isobox"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "v2 groups left: {left:?}");
}

/// A task still in a run's group when it is removed: `RunCgroup::remove` goes straight to
/// `rmdir`, and on the kernel's refusal kills the group where it can (v2 `cgroup.kill`) or waits
/// for the task to leave (v1: the caller kills the sandbox's init), then removes every directory.
fn remove_with_a_task_inside(layout: &Layout, tag: &str) -> (Duration, std::process::ExitStatus) {
    layout.prepare().expect("cgroup parents");
    let name = format!("run-{}-remove-{tag}", std::process::id());
    let mut cg = layout.create(&name).expect("group");
    let dirs = cg.dirs().to_vec();
    let mut child = std::process::Command::new("sleep")
        .arg("0.5")
        .spawn()
        .expect("sleep");
    for d in &dirs {
        std::fs::write(d.join("cgroup.procs"), child.id().to_string()).expect("move the task");
    }
    let waiter = std::thread::spawn(move || child.wait().expect("wait"));
    let t = std::time::Instant::now();
    cg.remove().expect("removed");
    let took = t.elapsed();
    for d in &dirs {
        assert!(!d.exists(), "{} is left", d.display());
    }
    (took, waiter.join().unwrap())
}

#[test]
fn a_group_with_a_task_inside_is_removed_once_the_task_is_gone() {
    use std::os::unix::process::ExitStatusExt;
    // This host's layout: on v1 the removal waits for the task to end by itself.
    let layout = Layout::detect("isobox").expect("cgroups");
    let any_v2 = [&layout.memory, &layout.pids, &layout.cpu, &layout.cpuacct]
        .iter()
        .any(|m| m.is_v2());
    let (took, status) = remove_with_a_task_inside(&layout, "host");
    if any_v2 {
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    } else {
        assert!(status.success(), "{status:?}");
        assert!(took >= Duration::from_millis(300), "removed in {took:?}");
    }
    // With a v2 hierarchy in the layout, the group is killed instead of waited for.
    if let Some(v2) = v2_mount() {
        let mut layout = Layout::detect("isobox").expect("cgroups");
        layout.cpuacct = Mount::V2(v2);
        let (took, status) = remove_with_a_task_inside(&layout, "v2");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(took < Duration::from_millis(400), "removed in {took:?}");
    }
}
