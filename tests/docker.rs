//! The docker backend against the real engine that scripts/test starts, with the image
//! `isobox image build` made: the HostConfig the engine really got, the pool modes, live I/O,
//! cancellation, per-phase limits, the runner's self-protection, and the reaping of what a
//! killed server left behind. (The shared hostile and language suites also run on docker:
//! `ISOBOX_TEST_BACKEND=docker`.)

use crate::common::*;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use isobox_sandbox::docker::{PoolMode, INSTANCE_LABEL, UID_RANGE};
use isobox_sandbox::{
    Backend, DockerBackend, DockerConfig, ExecSpec, Limits, Phase, RunIo, Status, StdinPoll, Stream,
};

fn backend(pool: usize, mode: PoolMode, tag: &str) -> DockerBackend {
    DockerBackend::new(DockerConfig {
        pool,
        pool_mode: mode,
        instance: format!("test-{tag}-{}", std::process::id()),
        ..DockerConfig::default()
    })
    .expect("docker backend: scripts/test starts dockerd and runs `isobox image build`")
}

/// Ids of the containers carrying `instance`, as the engine lists them.
fn containers(b: &DockerBackend, instance: &str) -> Vec<String> {
    let d = b.docker().clone();
    let filter = format!("{INSTANCE_LABEL}={instance}");
    b.wait(async move {
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label".to_string(), vec![filter])]))
            .build();
        d.list_containers(Some(opts))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    })
    .unwrap()
}

fn wait_pooled(b: &DockerBackend, n: usize) {
    let t = Instant::now();
    while b.pooled() < n {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the pool never filled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A spec shaped like the server's runs (64 MiB / 16k-inode work dir), so pools serve it.
fn spec(phases: Vec<Phase>) -> ExecSpec {
    ExecSpec {
        files: vec![],
        phases,
        tmpfs_bytes: 64 << 20,
        tmpfs_inodes: 16 * 1024,
        collect: None,
    }
}

fn phase(argv: &[&str], limits: Limits) -> Phase {
    Phase {
        name: "run".into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        stdin: vec![],
        limits,
        continue_on_failure: false,
        stderr_to_stdout: false,
    }
}

fn py(code: &str) -> Phase {
    phase(&["python3", "-c", code], Limits::default())
}

#[test]
fn containers_get_exactly_the_hardened_host_config() {
    let b = backend(1, PoolMode::Started, "hostconfig");
    wait_pooled(&b, 1);
    let instance = format!("test-hostconfig-{}", std::process::id());
    let ids = containers(&b, &instance);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let d = b.docker().clone();
    let id = ids[0].clone();
    let c = b
        .wait(async move { d.inspect_container(&id, None).await })
        .unwrap()
        .expect("inspect");
    let hc = c.host_config.expect("host config");
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(hc.cap_add.unwrap_or_default().is_empty());
    assert_eq!(hc.privileged, Some(false));
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.pids_limit, Some(64));
    assert_eq!(hc.memory, Some(256 << 20));
    assert_eq!(
        hc.memory_swap, hc.memory,
        "swap must equal memory (no swap)"
    );
    assert_eq!(hc.nano_cpus, Some(1_000_000_000));
    assert!(
        hc.binds.unwrap_or_default().is_empty(),
        "no host path is mounted"
    );
    assert!(
        hc.mounts.unwrap_or_default().is_empty(),
        "no host path is mounted"
    );
    assert_eq!(
        hc.log_config.and_then(|l| l.typ).as_deref(),
        Some("none"),
        "program output must not land in engine logs"
    );
    let opts = hc.security_opt.unwrap_or_default();
    assert!(
        opts.iter().any(|o| o == "no-new-privileges:true"),
        "{opts:?}"
    );
    let seccomp = opts
        .iter()
        .find_map(|o| o.strip_prefix("seccomp="))
        .expect("our seccomp profile");
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/seccomp.json"))
            .unwrap(),
    )
    .unwrap();
    let got: serde_json::Value = serde_json::from_str(seccomp).unwrap();
    assert_eq!(got, want, "the container runs deploy/seccomp.json");
    let tmp = &hc.tmpfs.unwrap_or_default()["/tmp"];
    assert!(
        tmp.contains("size=67108864") && tmp.contains("nosuid") && tmp.contains("nodev"),
        "{tmp}"
    );
    let cfg = c.config.expect("config");
    let user = cfg.user.unwrap_or_default();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert!(
        UID_RANGE.contains(&uid),
        "non-root uid from our range: {user}"
    );
    assert_eq!(cfg.network_disabled, Some(true));
    assert_eq!(
        cfg.image.as_deref(),
        Some(isobox_sandbox::docker::default_image().as_str())
    );
    assert_eq!(
        c.state.and_then(|s| s.running),
        Some(true),
        "a started pool container waits, running"
    );
    b.close();
    assert!(
        containers(&b, &instance).is_empty(),
        "close() leaves nothing"
    );
}

#[test]
fn every_pool_mode_runs_the_same_way_and_pooled_runs_are_warm() {
    for (pool, mode) in [
        (0, PoolMode::Started),
        (1, PoolMode::Created),
        (1, PoolMode::Started),
    ] {
        let b = backend(pool, mode, &format!("mode{pool}"));
        if pool > 0 {
            wait_pooled(&b, 1);
        }
        let mut p = py("import sys; print('hi', sys.stdin.read()); sys.exit(4)");
        p.stdin = b"there".to_vec();
        let r = b.execute(&spec(vec![p])).unwrap();
        let ph = &r.phases[0];
        assert_eq!(ph.status, Status::RuntimeError, "{mode:?} {r:?}");
        assert_eq!(ph.exit_code, Some(4));
        assert_eq!(String::from_utf8_lossy(&ph.stdout), "hi there\n");
        assert!(
            ph.cpu_time > Duration::ZERO && ph.memory_peak_bytes > 1 << 20,
            "{r:?}"
        );
        assert_eq!(r.warm, pool > 0, "{mode:?}");
        b.close();
    }
}

/// Interactive stdin in two parts, output as it comes, then cancellation.
struct Interactive {
    t0: Instant,
    first_ask: Option<Instant>,
    sent: usize,
    chunks: Vec<(Stream, Vec<u8>)>,
    cancel_after: Option<Duration>,
}

impl RunIo for Interactive {
    fn output(&mut self, _phase: usize, stream: Stream, chunk: &[u8]) {
        self.chunks.push((stream, chunk.to_vec()));
    }
    fn stdin(&mut self, _phase: usize) -> StdinPoll {
        // The clock starts when the program first wants input.
        let started = *self.first_ask.get_or_insert_with(Instant::now);
        let due = [Duration::ZERO, Duration::from_millis(300)];
        if self.sent == due.len() {
            return StdinPoll::Closed;
        }
        if started.elapsed() < due[self.sent] {
            return StdinPoll::Pending;
        }
        self.sent += 1;
        StdinPoll::Data(format!("line{}\n", self.sent).into_bytes())
    }
    fn cancelled(&mut self) -> bool {
        self.cancel_after.is_some_and(|d| self.t0.elapsed() > d)
    }
}

#[test]
fn stdin_streams_in_output_streams_out_and_cancel_kills_the_container() {
    let b = backend(1, PoolMode::Started, "io");
    let instance = format!("test-io-{}", std::process::id());
    let code = "import sys\nfor l in sys.stdin:\n    print(l.strip().upper(), flush=True)\n";
    let mut io = Interactive {
        t0: Instant::now(),
        first_ask: None,
        sent: 0,
        chunks: vec![],
        cancel_after: None,
    };
    let r = b.execute_io(&spec(vec![py(code)]), &mut io).unwrap();
    assert_eq!(r.phases[0].status, Status::Ok, "{r:?}");
    assert_eq!(
        String::from_utf8_lossy(&r.phases[0].stdout),
        "LINE1\nLINE2\n"
    );
    // Live: the first line came out before the second went in.
    assert!(io.chunks.len() >= 2, "{:?}", io.chunks);
    assert!(r.phases[0].wall_time >= Duration::from_millis(250), "{r:?}");

    let mut io = Interactive {
        t0: Instant::now(),
        first_ask: None,
        sent: 2,
        chunks: vec![],
        cancel_after: Some(Duration::from_millis(300)),
    };
    let t = Instant::now();
    let r = b
        .execute_io(
            &spec(vec![phase(&["sleep", "30"], Limits::default())]),
            &mut io,
        )
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(r.phases[0].status, Status::InternalError, "{r:?}");
    assert_eq!(
        r.phases[0].internal_error.as_deref(),
        Some("the run was cancelled")
    );
    b.close();
    assert!(containers(&b, &instance).is_empty());
}

#[test]
fn each_phase_gets_its_own_memory_limit() {
    let b = backend(1, PoolMode::Started, "phases");
    wait_pooled(&b, 1);
    let big = Limits {
        memory_bytes: 512 << 20,
        ..Limits::default()
    };
    let small = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let alloc = |mb: u32| format!("b = bytearray({mb} << 20); print(len(b) >> 20)");
    let mut first = phase(&["python3", "-c", &alloc(300)], big.clone());
    first.name = "compile".into();
    let second = phase(&["python3", "-c", &alloc(200)], small.clone());
    let r = b.execute(&spec(vec![first, second])).unwrap();
    assert_eq!(r.phases[0].status, Status::Ok, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.phases[0].stdout), "300\n");
    assert!(r.phases[0].memory_peak_bytes >= 300 << 20, "{r:?}");
    assert_eq!(r.phases[1].status, Status::MemoryLimit, "{r:?}");
    // And a phase within its limit after a bigger one is fine.
    let first = phase(&["python3", "-c", &alloc(300)], big.clone());
    let second = phase(&["python3", "-c", &alloc(16)], small);
    let r = b.execute(&spec(vec![first, second])).unwrap();
    assert_eq!(r.phases[1].status, Status::Ok, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.phases[1].stdout), "16\n");
    b.close();
}

#[test]
fn the_program_cannot_kill_read_or_trace_the_runner() {
    let b = backend(0, PoolMode::Started, "runner");
    let script = r#"
kill -9 1; echo "kill=$?"
kill -STOP 1; echo "stop=$?"
ls /proc/1/fd >/dev/null 2>&1 && echo fd=readable || echo fd=closed
head -c 1 /proc/1/mem >/dev/null 2>&1 && echo mem=readable || echo mem=closed
tr '\0' '\n' < /proc/1/environ >/dev/null 2>&1 && echo environ=readable || echo environ=closed
echo alive
"#;
    let r = b
        .execute(&spec(vec![phase(
            &["bash", "-c", script],
            Limits::default(),
        )]))
        .unwrap();
    let out = String::from_utf8_lossy(&r.phases[0].stdout).to_string();
    assert_eq!(r.phases[0].status, Status::Ok, "{r:?}");
    // Signals to a pid namespace's init from inside are dropped: the runner lives on and
    // reports; its fds, memory and environment are closed to the same uid (not dumpable).
    for want in ["fd=closed", "mem=closed", "environ=closed", "alive"] {
        assert!(out.contains(want), "{want}: {out}");
    }
    b.close();
}

#[test]
fn leftovers_of_a_killed_server_are_reaped_when_the_next_one_starts() {
    let instance = format!("test-crash-{}", std::process::id());
    let (mut server, base) = spawn_node(
        "serve",
        &[
            ("ISOBOX_BACKEND", "docker"),
            ("ISOBOX_DOCKER_INSTANCE", &instance),
            ("ISOBOX_DOCKER_POOL", "2"),
        ],
    );
    // A backend of another instance, to look at the engine (and later: to reap).
    let observer = backend(0, PoolMode::Started, "observer");
    let t = Instant::now();
    while containers(&observer, &instance).len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the server never filled its pool"
        );
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    // It serves: the languages it found in the image, and a run over REST.
    let curl_30s = |args: &[&str]| curl(&[&["--max-time", "30"], args].concat());
    let t = Instant::now();
    while curl_30s(&[&format!("{base}/health")]).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "no /health");
        std::thread::sleep(Duration::from_millis(50));
    }
    let langs = curl_30s(&[&format!("{base}/api/v1/languages")]);
    assert!(
        langs.contains("\"python\"") && langs.contains("\"c\""),
        "{langs}"
    );
    let body = r#"{"language": "python", "code": "print(input()[::-1])", "stdin": "olleh"}"#;
    let out = curl_30s(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
        &format!("{base}/api/v1/execute"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(v["status"], "ok", "{out}");
    assert_eq!(v["stdout"], "hello\n", "{out}");
    // SIGKILL: no shutdown, no cleanup.
    server.kill().unwrap();
    server.wait().unwrap();
    // A `create` the killed server had in flight is still finished by the engine: let it land
    // (a live backend also sweeps such strays every minute).
    std::thread::sleep(Duration::from_secs(2));
    let left = containers(&observer, &instance);
    assert!(left.len() >= 2, "{left:?}");
    // The next server of the same instance removes them before it serves.
    let next = DockerBackend::new(DockerConfig {
        pool: 0,
        instance: instance.clone(),
        ..DockerConfig::default()
    })
    .unwrap();
    assert!(containers(&observer, &instance).is_empty());
    next.close();
    observer.close();
}

/// The uid (`Config.User`, `uid:gid`) of each container carrying one of `instances`.
fn container_uids(b: &DockerBackend, instances: &[String]) -> Vec<(String, u32)> {
    let d = b.docker().clone();
    let filters: Vec<String> = instances
        .iter()
        .map(|i| format!("{INSTANCE_LABEL}={i}"))
        .collect();
    b.wait(async move {
        let mut out = Vec::new();
        for filter in filters {
            let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&HashMap::from([("label".to_string(), vec![filter])]))
                .build();
            for c in d.list_containers(Some(opts)).await.unwrap() {
                let Some(id) = c.id else { continue };
                // Gone between the list and the inspection: no longer live.
                let Ok(info) = d.inspect_container(&id, None).await else {
                    continue;
                };
                let user = info.config.and_then(|c| c.user).unwrap_or_default();
                let uid = user.split(':').next().unwrap_or("").parse().unwrap();
                out.push((id, uid));
            }
        }
        out
    })
    .unwrap()
}

/// Two backends on one engine and one host (two servers, different instance labels) never give
/// two live containers one uid: each claims its uid under the same lock files as the native
/// backend (`/run/isobox/uids/<uid>`), held until the container is removed.
#[test]
fn two_backends_never_share_a_live_uid() {
    let a = backend(3, PoolMode::Started, "uid-a");
    let b = backend(3, PoolMode::Started, "uid-b");
    let instances = vec![
        format!("test-uid-a-{}", std::process::id()),
        format!("test-uid-b-{}", std::process::id()),
    ];
    wait_pooled(&a, 3);
    wait_pooled(&b, 3);
    let check = |when: &str| {
        let uids = container_uids(&a, &instances);
        let mut seen: HashMap<u32, &str> = HashMap::new();
        for (id, uid) in &uids {
            assert!(UID_RANGE.contains(uid), "{when}: {id} runs as {uid}");
            if let Some(other) = seen.insert(*uid, id) {
                panic!("{when}: containers {other} and {id} both run as uid {uid}: {uids:?}");
            }
        }
        uids.len()
    };
    assert!(check("pools filled") >= 6);
    std::thread::scope(|s| {
        let mut runs = Vec::new();
        for be in [&a, &b] {
            for _ in 0..3 {
                runs.push(s.spawn(move || {
                    let r = be
                        .execute(&spec(vec![phase(
                            &["sh", "-c", "sleep 1; id -u"],
                            Limits::default(),
                        )]))
                        .unwrap();
                    assert_eq!(r.phases[0].status, Status::Ok, "{r:?}");
                    String::from_utf8_lossy(&r.phases[0].stdout)
                        .trim()
                        .to_string()
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        check("runs in flight");
        for r in runs {
            let uid: u32 = r.join().unwrap().parse().unwrap();
            assert!(UID_RANGE.contains(&uid));
        }
    });
    wait_pooled(&a, 3);
    wait_pooled(&b, 3);
    check("pools refilled");
}

/// A program that makes one system call by another ABI than x86_64 (so the test is x86_64's): `x32` (getpid's number with
/// `__X32_SYSCALL_BIT`), `i386` (`int 0x80`, getpid in the 32-bit table). It prints what the
/// call returned; a refused call returns a negative errno or kills it.
#[cfg(target_arch = "x86_64")]
const OTHER_ABI_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    long r;
    if (argc > 1 && !strcmp(argv[1], "x32")) {
        r = syscall(0x40000000L | SYS_getpid);
        if (r < 0) r = -errno;
    } else if (argc > 1 && !strcmp(argv[1], "i386")) {
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    } else {
        r = syscall(SYS_getpid);
    }
    printf("%ld\n", r);
    return 0;
}
"#;

/// How a run of the other-ABI program ended: `killed by <signal>`, `refused <errno>` or
/// `answered <pid>` (the call went through).
#[cfg(target_arch = "x86_64")]
fn abi_outcome(b: &dyn Backend, binary: &[u8], abi: &str) -> String {
    let mut s = spec(vec![phase(&["./abi", abi], Limits::default())]);
    s.files.push(isobox_sandbox::SandboxFile {
        path: "abi".into(),
        content: binary.to_vec(),
        executable: true,
        readonly: false,
    });
    let r = b.execute(&s).unwrap();
    let p = &r.phases[0];
    match p.status {
        Status::Signal => format!(
            "killed by {}",
            isobox_sandbox::signal_name(p.signal.unwrap())
        ),
        Status::Ok => {
            let n: i64 = String::from_utf8_lossy(&p.stdout).trim().parse().unwrap();
            if n < 0 {
                format!("refused {}", -n)
            } else {
                format!("answered {n}")
            }
        }
        _ => panic!("{abi}: {p:?}"),
    }
}

/// 32-bit (`int 0x80`) and x32 system calls are refused in a docker run as in a native one: the
/// profile maps `SCMP_ARCH_X86_64` to no sub-architectures, so on this host the runtime's filter
/// lists x86_64 alone and kills a call of another ABI with SIGSYS, as the native filter does (a
/// profile that also listed `SCMP_ARCH_X32`, as Docker's default does, would run x32 calls
/// through the same allowlist). The same static binary runs on both backends, and plain x86_64
/// getpid answers on both (the control).
#[cfg(target_arch = "x86_64")]
#[test]
fn x32_and_i386_syscalls_are_refused_on_docker_as_natively() {
    let profile = isobox_sandbox::seccomp::docker_profile();
    assert!(
        profile.get("architectures").is_none(),
        "Docker refuses a profile with both `architectures` and `archMap`"
    );
    let x86_64 = profile["archMap"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["architecture"] == "SCMP_ARCH_X86_64")
        .expect("the docker profile maps SCMP_ARCH_X86_64");
    assert_eq!(
        x86_64["subArchitectures"],
        serde_json::json!([]),
        "the docker profile must give x86_64 no sub-architectures (no x32, no i386)"
    );
    let tmp = TempDir::new("abi");
    let src = tmp.file("abi.c", OTHER_ABI_C);
    let bin = tmp.0.join("abi");
    let cc = std::process::Command::new("cc")
        .args(["-static", "-O0", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("cc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let binary = std::fs::read(&bin).unwrap();
    let docker = backend(0, PoolMode::Started, "abi");
    let native = isobox_sandbox::NativeBackend::new(isobox_sandbox::NativeConfig::default())
        .expect("native backend");
    for (name, b) in [("docker", &docker as &dyn Backend), ("native", &native)] {
        let control = abi_outcome(b, &binary, "x86_64");
        assert!(control.starts_with("answered "), "{name} x86_64: {control}");
        for abi in ["x32", "i386"] {
            let got = abi_outcome(b, &binary, abi);
            if name == "docker" {
                // The runtime's filter kills a call of an ABI the profile does not list. ENOSYS
                // would mean the filter let it through (a kernel without x32 support answers
                // ENOSYS itself, as this host's does).
                assert_eq!(got, "killed by SIGSYS", "{name}: an {abi} system call");
            } else {
                assert!(
                    got == "killed by SIGSYS" || got == "refused 38" || got == "refused 1",
                    "{name}: an {abi} system call went through: {got}"
                );
            }
        }
    }
}
