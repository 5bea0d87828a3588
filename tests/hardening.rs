//! Regressions for the findings of the sandbox security review: per-run uids, socket memory,
//! /proc exposure, shared-file locks, compile-step option injection, nested file names, a
//! compile step that leaves more on the tmpfs than the run may use.

use crate::common::*;

use isobox_core::{CoreError, ExecuteRequest};

fn err_of(req: ExecuteRequest) -> CoreError {
    executor()
        .execute(&req)
        .expect_err("the request must be refused")
}

#[test]
fn concurrent_runs_do_not_share_per_user_kernel_limits() {
    // Run A takes all the POSIX message-queue memory its user may have (RLIMIT_MSGQUEUE, counted
    // per user across the host) and holds it; run B, at the same time, must still get a queue:
    // they are different users. (inotify, the example of old, is refused now.)
    let hog = r#"
import os, ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while n < 1000 and libc.mq_open(("/hog%d" % n).encode(), os.O_CREAT | os.O_RDWR, 0o600, None) >= 0:
    n += 1
print("held", n, os.getuid(), flush=True)
time.sleep(2)
"#;
    let probe = r#"
import os, ctypes, time
time.sleep(0.7)
libc = ctypes.CDLL(None, use_errno=True)
print("fd", libc.mq_open(b"/probe", os.O_CREAT | os.O_RDWR, 0o600, None) >= 0, os.getuid())
"#;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run_with("python", hog, |r| r.limits = Some(limits(5000, 128))));
        let b = s.spawn(|| run_with("python", probe, |r| r.limits = Some(limits(5000, 128))));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.status, "ok", "{a:?}");
    assert_eq!(b.status, "ok", "{b:?}");
    let uid_a = a.stdout.split_whitespace().last().unwrap().to_string();
    let uid_b = b.stdout.split_whitespace().last().unwrap().to_string();
    assert_ne!(uid_a, uid_b, "two live runs share a uid");
    let held: u32 = a.stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (1..1000).contains(&held),
        "the hog did not reach its limit: {a:?}"
    );
    assert!(
        b.stdout.starts_with("fd True"),
        "run B was starved by run A: {b:?}"
    );
}

#[test]
fn socket_buffers_are_small_in_the_sandbox() {
    let r = run_code(
        "bash",
        "cat /proc/sys/net/ipv4/tcp_rmem /proc/sys/net/ipv4/tcp_wmem",
    );
    assert_eq!(r.status, "ok", "{r:?}");
    let maxima: Vec<u64> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().last().unwrap().parse().unwrap())
        .collect();
    assert!(maxima.iter().all(|m| *m <= 256 * 1024), "{r:?}");
}

#[test]
fn host_facts_in_proc_are_masked() {
    let r = run_code(
        "bash",
        "for f in /proc/cmdline /proc/keys /proc/key-users /proc/timer_list /proc/config.gz; do \
           [ -e $f ] && echo \"$f $(wc -c < $f)\"; done; true",
    );
    assert_eq!(r.status, "ok", "{r:?}");
    for line in r.stdout.lines() {
        assert!(line.ends_with(" 0"), "{line} is readable: {r:?}");
    }
    assert!(!std::fs::read_to_string("/proc/cmdline").unwrap().is_empty());
}

#[test]
fn shared_files_cannot_be_locked() {
    // flock succeeds and locks nothing: two exclusive locks on one shared file, through two
    // open file descriptions, both "succeed" (a real flock refuses the second with
    // EWOULDBLOCK), so no lock of one run can be seen by another.
    let r = run_code(
        "python",
        "import fcntl, errno\na = open('/etc/ld.so.cache', 'rb')\nb = open('/etc/ld.so.cache', 'rb')\nfor f in (a, b):\n    try:\n        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n        print('locked')\n    except OSError as e:\n        print(errno.errorcode[e.errno])\n",
    );
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.stdout, "locked\nlocked\n", "{r:?}");
    // Locks on the program's own files keep working (sqlite uses fcntl locks).
    let r = run_code(
        "python",
        "import sqlite3\nc = sqlite3.connect('/tmp/db')\nc.execute('create table t(x)')\nc.execute('insert into t values (42)')\nc.commit()\nprint(c.execute('select x from t').fetchone()[0])\n",
    );
    assert_eq!(r.stdout, "42\n", "{r:?}");
}

#[test]
fn option_like_file_names_are_refused() {
    for name in ["-wrapper", "@o.c", "src/-x.c"] {
        let req = ExecuteRequest {
            language: "c".into(),
            files: Some(files(&[("main.c", "int main(){return 0;}"), (name, "x")])),
            ..Default::default()
        };
        match err_of(req) {
            CoreError::InvalidRequest(m) => assert!(m.contains("may not start with"), "{m}"),
            e => panic!("{name}: {e:?}"),
        }
    }
}

#[test]
fn a_file_inside_another_file_is_a_clear_error() {
    let req = ExecuteRequest {
        language: "python".into(),
        files: Some(files(&[("main.py", "print(1)"), ("x/y", "a"), ("x", "b")])),
        ..Default::default()
    };
    match err_of(req) {
        CoreError::InvalidRequest(m) => assert!(m.contains("cannot both be files"), "{m}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_binary_larger_than_the_run_memory_limit_is_memory_limit() {
    // The compiled program (28 MiB of initialised data) sits on the tmpfs and is charged to the
    // sandbox: a 16 MiB run cannot start. That is the program's memory_limit, not our error.
    let r = run_with(
        "c",
        "char big[28 << 20] = {1};\nint main(void) { return big[5]; }\n",
        |r| r.limits = Some(limits(5000, 16)),
    );
    assert_eq!(r.status, "memory_limit", "{r:?}");
    assert_eq!(r.compile.as_ref().unwrap().status, "ok");
    assert!(r.internal_message.is_none(), "{r:?}");
}

#[test]
fn files_bigger_than_the_memory_limit_are_memory_limit() {
    use isobox_sandbox::{
        Backend, ExecSpec, Limits, NativeBackend, NativeConfig, SandboxFile, Status,
    };
    let backend = NativeBackend::new(NativeConfig::default()).unwrap();
    let limits = Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let mut spec = ExecSpec::single(vec!["true".into()], vec![], limits);
    spec.files.push(SandboxFile {
        path: "big.bin".into(),
        content: vec![1u8; 8 << 20],
        executable: false,
        readonly: false,
    });
    let r = backend.execute(&spec).expect("not a sandbox failure");
    assert_eq!(r.phases[0].status, Status::MemoryLimit, "{:?}", r.phases[0]);
}

#[test]
fn generated_etc_files_cannot_be_replaced_by_config() {
    use isobox_sandbox::{NativeBackend, NativeConfig, RootFs, SandboxError};
    for name in ["passwd", "group", "shadow"] {
        let cfg = NativeConfig {
            rootfs: RootFs::Host {
                etc: vec![name.into()],
            },
            ..NativeConfig::default()
        };
        assert!(
            matches!(NativeBackend::new(cfg), Err(SandboxError::InvalidSpec(_))),
            "{name}"
        );
    }
}
