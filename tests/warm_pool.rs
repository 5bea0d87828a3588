//! The warm pool: sandboxes built ahead of time (namespaces, cgroup, base root), each used for
//! exactly one run, refilled in the background, torn down with the backend.

use crate::common::*;

use std::time::{Duration, Instant};

use isobox_sandbox::cgroup::Layout;
use isobox_sandbox::{Backend, ExecSpec, Limits, NativeBackend, NativeConfig, SandboxFile, Status};

fn warm_backend(pool: usize, arena: usize) -> NativeBackend {
    let cfg = NativeConfig {
        warm_pool: pool,
        warm_arena_bytes: arena,
        ..NativeConfig::default()
    };
    NativeBackend::new(cfg).expect("backend")
}

fn wait_warm(b: &NativeBackend, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.warm_count() < n {
        assert!(
            Instant::now() < deadline,
            "pool never reached {n} (has {})",
            b.warm_count()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sh(script: &str) -> ExecSpec {
    ExecSpec::single(
        vec!["sh".into(), "-c".into(), script.into()],
        vec![],
        Limits::default(),
    )
}

fn stdout(b: &NativeBackend, spec: &ExecSpec) -> (String, bool) {
    let r = b.execute(spec).expect("execute");
    assert_eq!(r.phases[0].status, Status::Ok, "{:?}", r.phases[0]);
    (
        String::from_utf8_lossy(&r.phases[0].stdout).into_owned(),
        r.warm,
    )
}

/// Names of this process's run cgroups (one name spans every hierarchy).
fn our_groups() -> Vec<String> {
    let mut names: Vec<String> = our_run_cgroups(&Layout::detect("isobox").unwrap())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Pids of the children of process `pid` (over all its threads).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("children")).unwrap_or_default())
        .flat_map(|c| c.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|c| c.parse().ok())
        .collect()
}

/// Pids of this process's children (the sandbox inits).
fn our_children() -> Vec<u32> {
    children_of(std::process::id())
}

#[test]
fn warm_sandboxes_run_jobs_and_are_never_reused() {
    let b = warm_backend(2, 1 << 20);
    wait_warm(&b, 2);
    // Each run leaves marks; the next run (another warm sandbox) must not see them.
    let script = "ls /tmp /dev/shm; echo x > /tmp/mark; echo y > /dev/shm/mark; id -u";
    let mut warm_runs = 0;
    for _ in 0..6 {
        let (out, warm) = stdout(&b, &sh(script));
        assert!(
            !out.contains("mark"),
            "a previous run's files are visible: {out}"
        );
        let uid: u32 = out.lines().last().unwrap().parse().unwrap();
        assert!(uid >= 60000, "{out}");
        warm_runs += usize::from(warm);
        wait_warm(&b, 2);
    }
    assert_eq!(warm_runs, 6, "every run should have found a warm sandbox");
    // Files and stdin reach a warm sandbox too.
    let mut spec = sh("cat data.txt; cat");
    spec.files.push(SandboxFile {
        path: "data.txt".into(),
        content: b"file\n".to_vec(),
        executable: false,
        readonly: false,
    });
    spec.phases[0].stdin = b"stdin\n".to_vec();
    assert_eq!(stdout(&b, &spec).0, "file\nstdin\n");
}

#[test]
fn warm_pool_serves_parallel_runs() {
    let b = warm_backend(2, 1 << 20);
    wait_warm(&b, 2);
    std::thread::scope(|s| {
        for t in 0..4 {
            let b = &b;
            s.spawn(move || {
                for i in 0..5 {
                    let (out, _) = stdout(b, &sh(&format!("echo {t}-{i}")));
                    assert_eq!(out, format!("{t}-{i}\n"));
                }
            });
        }
    });
}

#[test]
fn big_jobs_get_a_fresh_sandbox() {
    let b = warm_backend(1, 64 << 10);
    wait_warm(&b, 1);
    let mut spec = sh("wc -c < big.bin");
    spec.files.push(SandboxFile {
        path: "big.bin".into(),
        content: vec![7u8; 300 << 10],
        executable: false,
        readonly: false,
    });
    let r = b.execute(&spec).unwrap();
    assert_eq!(r.phases[0].status, Status::Ok);
    assert_eq!(
        String::from_utf8_lossy(&r.phases[0].stdout).trim(),
        (300 << 10).to_string()
    );
    assert!(!r.warm, "a 300 KiB job cannot fit a 64 KiB arena");
}

#[test]
fn dropping_the_backend_tears_the_pool_down() {
    let b = warm_backend(3, 1 << 20);
    wait_warm(&b, 3);
    assert_eq!(our_groups().len(), 3, "three warm sandboxes, three cgroups");
    assert!(our_children().len() >= 3);
    drop(b);
    assert!(our_groups().is_empty(), "cgroups left: {:?}", our_groups());
    assert_eq!(our_children().len(), 0, "warm sandbox inits left running");
}

/// Shared anonymous mappings (job arenas) a process holds.
fn arenas_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/memfd:isobox-arena") && l.contains("rw-s"))
        .count()
}

#[test]
fn a_sandbox_inherits_no_other_runs_job() {
    let b = warm_backend(1, 1 << 20);
    wait_warm(&b, 1);
    // A cold run with a big file (too big for the warm arena) stays alive for a while; meanwhile
    // small runs take the warm sandbox, so the pool clones new ones while the big job's arena
    // is mapped in this process.
    let mut big = sh("sleep 1; wc -c < big.bin");
    big.files.push(SandboxFile {
        path: "big.bin".into(),
        content: vec![1u8; 2 << 20],
        executable: false,
        readonly: false,
    });
    std::thread::scope(|s| {
        let cold = s.spawn(|| b.execute(&big).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3 {
            wait_warm(&b, 1);
            assert!(b.execute(&sh("true")).unwrap().warm);
        }
        wait_warm(&b, 1);
        assert!(!cold.join().unwrap().warm);
    });
    wait_warm(&b, 1);
    // Used sandboxes are reaped by the pool thread: wait until only the warm one is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while our_children().len() > 1 {
        assert!(
            Instant::now() < deadline,
            "used sandboxes were never reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let live = our_children();
    assert!(!live.is_empty());
    for pid in live {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let shared: Vec<&str> = maps.lines().filter(|l| l.contains("-s ")).collect();
        assert_eq!(
            arenas_of(pid),
            1,
            "sandbox init {pid} maps other runs' arenas: {shared:?}"
        );
    }
}

/// The sandbox inits (children in a pid namespace of their own) of process `pid`.
fn sandbox_inits_of(pid: u32) -> Vec<u32> {
    children_of(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/status"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("NSpid:") && l.split_whitespace().count() == 3)
        })
        .collect()
}

/// Whether `needle` is anywhere in the readable private or shared memory of process `pid`.
fn memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let Ok(mut mem) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
        return false;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.contains("[vvar") || line.contains("[vsyscall") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

/// A server's sandboxes are cloned by the launcher (forked before the configuration was read),
/// so a warm sandbox's init holds none of the server's memory: not its API keys, and no page
/// tables of the server's heap to copy. With `ISOBOX_NO_LAUNCHER=1` they are cloned from the
/// server itself and do carry its memory (the control that shows the scan finds the key).
#[test]
fn server_sandboxes_carry_none_of_the_servers_memory() {
    // Removed on drop, even when an assertion fails.
    let tmp = TempDir::new("launcher");
    let dir = tmp.0.clone();
    let secret = format!(
        "isobox-test-key-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let cfg = dir.join("isobox.toml");
    std::fs::write(
        &cfg,
        format!("api_keys = \"{secret}\"\nauth_type = \"apikey\"\n"),
    )
    .unwrap();
    for launcher in [true, false] {
        let mut vars = vec![
            ("ISOBOX_CONFIG", cfg.to_str().unwrap()),
            ("ISOBOX_WARM_POOL", "2"),
        ];
        if !launcher {
            vars.push(("ISOBOX_NO_LAUNCHER", "1"));
        }
        let (mut node, _url) = spawn_node("serve", &vars);
        // Live inits only: a start-up probe's sandbox may be exiting (a zombie has no memory).
        let deadline = Instant::now() + Duration::from_secs(20);
        let inits = loop {
            let inits: Vec<u32> = sandbox_inits_of(node.id())
                .into_iter()
                .filter(|p| {
                    !std::fs::read_to_string(format!("/proc/{p}/maps"))
                        .unwrap_or_default()
                        .is_empty()
                })
                .collect();
            if inits.len() >= 2 {
                break inits;
            }
            assert!(Instant::now() < deadline, "the warm pool never filled");
            std::thread::sleep(Duration::from_millis(20));
        };
        let in_server = memory_contains(node.id(), secret.as_bytes());
        let mut in_inits: Vec<bool> = inits
            .iter()
            .map(|&p| memory_contains(p, secret.as_bytes()))
            .collect();
        // Without the launcher the key must turn up in the warm sandboxes (give the pool time to
        // replace an init that ended during the scan).
        while !launcher && !in_inits.iter().any(|x| *x) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            in_inits = sandbox_inits_of(node.id())
                .iter()
                .map(|&p| memory_contains(p, secret.as_bytes()))
                .collect();
        }
        let comms: Vec<String> = inits
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default())
            .collect();
        // Item 7: cloned by the launcher or by the server, no init is host root.
        let checked =
            std::panic::catch_unwind(|| inits.iter().for_each(|&p| assert_holds_no_host_root(p)));
        // SAFETY: signals our own child process; no memory is involved.
        unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
        let _ = node.wait();
        if let Err(e) = checked {
            std::panic::resume_unwind(e);
        }
        assert!(
            in_server,
            "the scan does not find the key in the server itself"
        );
        if launcher {
            assert!(
                in_inits.iter().all(|x| !x),
                "a sandbox init holds the server's API key: {in_inits:?}"
            );
            assert!(
                comms.iter().all(|c| c.trim() == "isobox-launch"),
                "{comms:?}"
            );
        } else {
            assert!(
                in_inits.iter().any(|x| *x),
                "cloned from the server, an init should carry its memory"
            );
        }
    }
}

/// A server whose launcher was killed keeps serving: sandboxes are then cloned by the server.
#[test]
fn a_server_outlives_its_launcher() {
    let (mut node, url) = spawn_node("serve", &[("ISOBOX_WARM_POOL", "2")]);
    let launcher = children_of(node.id())
        .into_iter()
        .find(|c| {
            let status = std::fs::read_to_string(format!("/proc/{c}/status")).unwrap_or_default();
            status.contains("isobox-launch")
                && status
                    .lines()
                    .any(|l| l.starts_with("NSpid:") && l.split_whitespace().count() == 2)
        })
        .expect("the server has a launcher");
    // SAFETY: signals a process of this test's server; no memory is involved.
    unsafe { libc::kill(launcher as i32, libc::SIGKILL) };
    for i in 0..6 {
        let out = curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!(r#"{{"language":"bash","code":"echo run {i}"}}"#),
            &format!("{url}/api/v1/execute"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out:?}"));
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(v["stdout"], format!("run {i}\n"));
    }
    // The dead launcher was reaped, not left a zombie.
    let state = std::fs::read_to_string(format!("/proc/{launcher}/stat")).unwrap_or_default();
    assert!(state.is_empty() || !state.contains(") Z "), "{state}");
    // SAFETY: signals our own child process; no memory is involved.
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    let _ = node.wait();
}

/// The launcher of server `pid` (its child in the server's own pid namespace named
/// `isobox-launch`).
fn launcher_of(pid: u32) -> Option<u32> {
    children_of(pid).into_iter().find(|c| {
        let status = std::fs::read_to_string(format!("/proc/{c}/status")).unwrap_or_default();
        status.contains("isobox-launch")
            && status
                .lines()
                .any(|l| l.starts_with("NSpid:") && l.split_whitespace().count() == 2)
    })
}

/// Every secret a server can be given in its environment (API keys, an OAuth2 client secret,
/// the webhook signing secret, a Redis password) is gone from the environment before the
/// launcher is forked: neither the launcher nor a warm sandbox's init has it, in
/// `/proc/<pid>/environ` or anywhere in its memory. Without the launcher
/// (`ISOBOX_NO_LAUNCHER=1`) the environment is scrubbed all the same, but an init cloned from
/// the server carries a copy of the server's memory, configuration included (the control).
#[test]
fn server_environment_secrets_reach_neither_launcher_nor_inits() {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let api_key = format!("isobox-env-apikey-{stamp}");
    let client_secret = format!("isobox-env-oauth2-{stamp}");
    let webhook_secret = format!("isobox-env-webhook-{stamp}");
    let redis_password = format!("isobox-env-redis-{stamp}");
    // Nothing listens on port 1: the Redis client connects lazily, so the server starts anyway.
    let redis_url = format!("redis://isobox:{redis_password}@127.0.0.1:1/0");
    let secrets = [&api_key, &client_secret, &webhook_secret, &redis_password];
    for launcher in [true, false] {
        let mut vars = vec![
            ("AUTH_TYPE", "apikey,oauth2"),
            ("API_KEYS", api_key.as_str()),
            ("OAUTH2_CLIENT_ID", "isobox-test"),
            ("OAUTH2_CLIENT_SECRET", client_secret.as_str()),
            ("OAUTH2_INTROSPECTION_URL", "http://127.0.0.1:1/introspect"),
            ("ISOBOX_WEBHOOK_SECRET", webhook_secret.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("ISOBOX_JOB_WORKERS", "0"),
            ("ISOBOX_WARM_POOL", "2"),
        ];
        if !launcher {
            vars.push(("ISOBOX_NO_LAUNCHER", "1"));
        }
        let (mut node, url) = spawn_node("serve", &vars);
        let server = node.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        let inits = loop {
            let inits: Vec<u32> = sandbox_inits_of(server)
                .into_iter()
                .filter(|p| {
                    !std::fs::read_to_string(format!("/proc/{p}/maps"))
                        .unwrap_or_default()
                        .is_empty()
                })
                .collect();
            if !inits.is_empty() {
                break inits;
            }
            assert!(Instant::now() < deadline, "the warm pool never filled");
            std::thread::sleep(Duration::from_millis(20));
        };
        let launcher_pid = launcher_of(server);
        // The server itself still works with the key it was given.
        let health = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("X-API-Key: {api_key}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"language":"bash","code":"echo hi"}"#,
            &format!("{url}/api/v1/execute"),
        ]);
        let mut scanned: Vec<(&str, u32)> = inits.iter().map(|&p| ("init", p)).collect();
        if let Some(l) = launcher_pid {
            scanned.push(("launcher", l));
        }
        let mut found = Vec::new();
        let mut in_init_memory = false;
        for &(what, pid) in &scanned {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            for s in secrets {
                if environ.windows(s.len()).any(|w| w == s.as_bytes()) {
                    found.push(format!("{what} {pid}: environ has {s}"));
                }
                if memory_contains(pid, s.as_bytes()) {
                    if launcher {
                        found.push(format!("{what} {pid}: memory has {s}"));
                    } else if s == &api_key {
                        in_init_memory = true;
                    }
                }
            }
        }
        let in_server = memory_contains(server, api_key.as_bytes());
        // SAFETY: signals our own child process; no memory is involved.
        unsafe { libc::kill(server as i32, libc::SIGTERM) };
        let _ = node.wait();
        assert_eq!(health, "200", "the server does not accept its own API key");
        assert!(in_server, "the scan does not find the key in the server");
        assert_eq!(
            launcher_pid.is_some(),
            launcher,
            "launcher: {launcher_pid:?}"
        );
        assert!(
            found.is_empty(),
            "secrets left (launcher {launcher}): {found:?}"
        );
        if !launcher {
            assert!(
                in_init_memory,
                "cloned from the server, an init should carry its memory (and its key)"
            );
        }
    }
}

/// The id mapping of `/proc/<pid>/<file>` (`uid_map` or `gid_map`): `(inside, outside, count)`.
fn id_map(pid: u32, file: &str) -> Vec<(u32, u32, u32)> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Vec<u32> = l.split_whitespace().map(|n| n.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

/// Item 7 of the attack review: no process of the native sandbox keeps host root. A live sandbox
/// init `pid`, seen from the host, runs in a user namespace of its own (so whatever capabilities
/// it has are its namespace's, none in the host's), as its run's unprivileged uid and gid (not
/// 0), without supplementary groups, and that namespace maps only that uid and gid to the host.
fn assert_holds_no_host_root(pid: u32) {
    let host_ns = std::fs::read_link("/proc/self/ns/user").unwrap();
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/user")) else {
        // Ended meanwhile (the pool replaces old sandboxes): nothing left to check.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        return;
    };
    assert_ne!(
        ns, host_ns,
        "sandbox init {pid} runs in the host's user namespace"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let (uid, gid) = (ids("Uid:"), ids("Gid:"));
    assert!(
        sandbox_uids().contains(&uid[0]) && uid.iter().all(|u| *u == uid[0]),
        "sandbox init {pid} has host uids {uid:?}, not its run's uid"
    );
    assert!(
        gid[0] != 0 && gid.iter().all(|g| *g == gid[0]),
        "sandbox init {pid} has host gids {gid:?}"
    );
    assert!(
        ids("Groups:").is_empty(),
        "sandbox init {pid} keeps supplementary groups"
    );
    assert_eq!(
        id_map(pid, "uid_map"),
        vec![(uid[0], uid[0], 1)],
        "sandbox init {pid}'s user namespace maps other host uids"
    );
    assert_eq!(
        id_map(pid, "gid_map"),
        vec![(gid[0], gid[0], 1)],
        "sandbox init {pid}'s user namespace maps other host gids"
    );
}

/// Item 7 (see [`assert_holds_no_host_root`]) for sandboxes cloned by this process (a library
/// user: no launcher); `server_sandboxes_carry_none_of_the_servers_memory` checks a server's,
/// cloned by its launcher and, with `ISOBOX_NO_LAUNCHER=1`, by the server itself.
#[test]
fn sandbox_inits_hold_no_host_root() {
    let b = warm_backend(2, 1 << 20);
    wait_warm(&b, 2);
    let inits = sandbox_inits_of(std::process::id());
    assert!(inits.len() >= 2, "no live sandbox init found: {inits:?}");
    for pid in inits {
        assert_holds_no_host_root(pid);
    }
    // And the warm sandboxes still run programs as the run's uid.
    let (out, _) = stdout(&b, &sh("id -u; id -g; id -G"));
    let v: Vec<u32> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert!(
        sandbox_uids().contains(&v[0]) && v[1] != 0 && v[2] == v[1],
        "{out}"
    );
}
