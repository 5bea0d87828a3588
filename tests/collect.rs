//! Files taken out of a sandbox after its last phase (`ExecSpec::collect`), read-only files
//! and a phase's stderr merged into its stdout, through the `Backend` trait: on the native
//! backend by default, on docker with `ISOBOX_TEST_BACKEND=docker` (scripts/test runs this
//! module on both).

use crate::common::*;

use std::time::{Duration, Instant};

use isobox_sandbox::{
    Collect, Collected, ExecReport, ExecSpec, Limits, NativeBackend, NativeConfig, Phase,
    SandboxFile, SkipReason, Status,
};

fn phase(name: &str, argv: &[&str]) -> Phase {
    Phase {
        name: name.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        stdin: vec![],
        limits: Limits::default(),
        continue_on_failure: false,
        stderr_to_stdout: false,
    }
}

fn sh(script: &str) -> Phase {
    phase("run", &["sh", "-c", script])
}

fn collect(patterns: &[&str], max_files: usize, max_bytes: u64) -> Option<Collect> {
    Some(Collect {
        patterns: patterns.iter().map(|s| s.to_string()).collect(),
        max_files,
        max_bytes,
    })
}

fn spec(files: Vec<SandboxFile>, phases: Vec<Phase>, c: Option<Collect>) -> ExecSpec {
    ExecSpec {
        files,
        phases,
        tmpfs_bytes: 64 << 20,
        tmpfs_inodes: 4096,
        collect: c,
    }
}

fn exec(s: &ExecSpec) -> ExecReport {
    executor().backend().execute(s).expect("execute")
}

fn collected(r: &ExecReport) -> &Collected {
    r.collected
        .as_ref()
        .unwrap_or_else(|| panic!("nothing collected: {r:?}"))
}

fn reason(c: &Collected, path: &str) -> Option<SkipReason> {
    c.skipped.iter().find(|s| s.path == path).map(|s| s.reason)
}

fn paths(c: &Collected) -> Vec<&str> {
    c.files.iter().map(|f| f.path.as_str()).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(r: &ExecReport) {
    for p in &r.phases {
        assert_eq!(
            p.status,
            Status::Ok,
            "phase {}: {:?}\nstdout: {}\nstderr: {}",
            p.name,
            p,
            text(&p.stdout),
            text(&p.stderr)
        );
    }
}

const MAIN_C: &str = r#"#include <stdio.h>
int main(void) { puts("compiled and ran"); return 0; }
"#;

#[test]
fn files_written_by_the_program_come_back_exact() {
    let files = vec![SandboxFile {
        path: "main.c".into(),
        content: MAIN_C.as_bytes().to_vec(),
        executable: false,
        readonly: false,
    }];
    let compile = phase("compile", &["gcc", "-O0", "-o", "main", "main.c"]);
    let run = sh(
        "./main > out.txt && printf '\\000\\001\\377\\n' > data.bin \
                  && mkdir -p res/deep && printf 'x,y\\n1,2\\n' > res/deep/t.csv \
                  && mkdir .cache && echo secret > .cache/c && echo h > .hidden",
    );
    let s = spec(files, vec![compile, run], collect(&["**"], 100, 16 << 20));
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert_eq!(
        paths(c),
        ["data.bin", "main", "main.c", "out.txt", "res/deep/t.csv"],
        "{c:?}"
    );
    let get = |p: &str| c.files.iter().find(|f| f.path == p).unwrap();
    assert_eq!(get("data.bin").content, b"\x00\x01\xff\n");
    assert_eq!(get("out.txt").content, b"compiled and ran\n");
    assert_eq!(get("res/deep/t.csv").content, b"x,y\n1,2\n");
    assert_eq!(get("main.c").content, MAIN_C.as_bytes());
    let main = get("main");
    assert!(
        main.executable,
        "the compiled program keeps its execute bit"
    );
    assert!(main.content.starts_with(b"\x7fELF"));
    assert!(!get("data.bin").executable);
    // Hidden entries are not matched by `**`, so not even reported.
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);

    // Result files by name and glob.
    let s = spec(
        vec![],
        vec![sh(
            "echo png > plot.png; echo 1 > a.csv; echo 2 > b.csv; echo no > c.txt",
        )],
        collect(&["plot.png", "*.csv"], 10, 1 << 20),
    );
    let r = exec(&s);
    assert_ok(&r);
    assert_eq!(paths(collected(&r)), ["a.csv", "b.csv", "plot.png"]);
}

#[test]
fn nothing_is_collected_unless_asked() {
    let s = spec(vec![], vec![sh("echo x > out.txt")], None);
    let r = exec(&s);
    assert_ok(&r);
    assert!(r.collected.is_none());
}

#[test]
fn symlink_to_a_host_file_is_skipped() {
    let s = spec(
        vec![],
        vec![sh(
            "ln -s /etc/passwd out.txt && ln -s ../../../../etc/passwd rel.txt",
        )],
        collect(&["out.txt", "*.txt", "**"], 100, 16 << 20),
    );
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert!(c.files.is_empty(), "{c:?}");
    assert_eq!(reason(c, "out.txt"), Some(SkipReason::Symlink));
    assert_eq!(reason(c, "rel.txt"), Some(SkipReason::Symlink));
    let host = std::fs::read("/etc/passwd").unwrap();
    for f in &c.files {
        assert!(f.content != host && !text(&f.content).contains("root:x:0:0"));
    }
}

#[test]
fn symlinked_directory_is_not_followed() {
    let s = spec(
        vec![],
        vec![sh("ln -s /etc etcdir && ln -s / rootdir && mkdir real && ln -s /etc real/inner && echo ok > real/f")],
        collect(&["etcdir/passwd", "rootdir/**", "real/**", "**"], 1000, 16 << 20),
    );
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert_eq!(paths(c), ["real/f"], "{c:?}");
    assert_eq!(reason(c, "etcdir"), Some(SkipReason::Symlink));
    assert_eq!(reason(c, "rootdir"), Some(SkipReason::Symlink));
    assert_eq!(reason(c, "real/inner"), Some(SkipReason::Symlink));
    assert!(c
        .skipped
        .iter()
        .all(|s| !s.path.starts_with("etcdir/") && !s.path.starts_with("rootdir/")));
}

#[test]
fn fifo_does_not_hang_the_walk() {
    let started = Instant::now();
    let s = spec(
        vec![],
        vec![sh("mkfifo out.txt && mkfifo p2 && echo fine > ok.txt")],
        collect(&["**"], 100, 1 << 20),
    );
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert_eq!(paths(c), ["ok.txt"]);
    assert_eq!(reason(c, "out.txt"), Some(SkipReason::NotRegular));
    assert_eq!(reason(c, "p2"), Some(SkipReason::NotRegular));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn directory_matched_by_name_is_reported_not_taken() {
    let script = "mkdir -p out/sub && echo a > out/a.png && echo b > out/sub/b.png";
    let s = spec(vec![], vec![sh(script)], collect(&["out"], 100, 1 << 20));
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert!(c.files.is_empty(), "{c:?}");
    assert_eq!(reason(c, "out"), Some(SkipReason::NotRegular));

    let s = spec(vec![], vec![sh(script)], collect(&["out/*"], 100, 1 << 20));
    let r = exec(&s);
    let c = collected(&r);
    assert_eq!(paths(c), ["out/a.png"]);
    assert_eq!(reason(c, "out/sub"), Some(SkipReason::NotRegular));
}

#[test]
fn file_count_and_byte_caps_hold() {
    let s = spec(
        vec![],
        vec![sh("for i in $(seq 10 29); do echo $i > f$i; done")],
        collect(&["f*"], 5, 1 << 20),
    );
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert_eq!(c.files.len(), 5);
    let too_many = c
        .skipped
        .iter()
        .filter(|s| s.reason == SkipReason::TooManyFiles)
        .count();
    assert_eq!(too_many, 15);

    // 100 KiB does not fit in 64 KiB; the small files do.
    let s = spec(
        vec![],
        vec![sh(
            "head -c 102400 /dev/zero > big; echo small > small1; echo small > small2",
        )],
        collect(&["*"], 100, 64 << 10),
    );
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert_eq!(paths(c), ["small1", "small2"]);
    assert_eq!(reason(c, "big"), Some(SkipReason::TooLarge));

    // A file larger than one docker frame (16 MiB) still comes back whole under a larger cap.
    let s = spec(
        vec![],
        vec![sh(
            "head -c 20000000 /dev/urandom > big.bin && sha256sum big.bin | cut -c1-64",
        )],
        collect(&["big.bin"], 1, 24 << 20),
    );
    let mut s = s;
    s.phases[0].limits.max_file_bytes = 32 << 20;
    s.phases[0].limits.memory_bytes = 512 << 20;
    let r = exec(&s);
    assert_ok(&r);
    let c = collected(&r);
    assert_eq!(c.files.len(), 1, "{:?}", c.skipped);
    assert_eq!(c.files[0].content.len(), 20_000_000);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&c.files[0].content);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, text(&r.phases[0].stdout).trim());
}

#[test]
fn file_grown_by_a_background_process_stays_under_the_cap() {
    // The main program leaves writers behind and is then killed at its wall limit; the files
    // keep growing until the sandbox kills them. The walk still ends and no file passes the
    // cap.
    let cap: u64 = 256 << 10;
    let mut p = sh("(while :; do cat /tmp/seed; done > grow1) & \
                    (yes abcdefghijklmnopqrstuvwxyz > grow2) & \
                    head -c 65536 /dev/zero > /tmp/seed; echo small > s.txt; sleep 30");
    p.limits.wall = Duration::from_millis(1500);
    p.limits.cpu = Duration::from_secs(3);
    let s = spec(vec![], vec![p], collect(&["**"], 100, cap));
    let started = Instant::now();
    let r = exec(&s);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(r.phases[0].status, Status::Timeout, "{:?}", r.phases[0]);
    let c = collected(&r);
    let total: u64 = c.files.iter().map(|f| f.content.len() as u64).sum();
    assert!(total <= cap, "{total} bytes collected");
    assert!(paths(c).contains(&"s.txt"), "{c:?}");
    for name in ["grow1", "grow2"] {
        assert_eq!(reason(c, name), Some(SkipReason::TooLarge), "{c:?}");
    }
}

#[test]
fn readonly_files_cannot_be_written_but_run() {
    let true_bin = std::fs::read("/bin/true").unwrap();
    let files = vec![
        SandboxFile {
            path: "data.txt".into(),
            content: b"original\n".to_vec(),
            executable: false,
            readonly: true,
        },
        SandboxFile {
            path: "bin/prog".into(),
            content: true_bin.clone(),
            executable: true,
            readonly: true,
        },
        SandboxFile {
            path: "free.txt".into(),
            content: b"w\n".to_vec(),
            executable: false,
            readonly: false,
        },
    ];
    let script = "stat -c '%a %n' data.txt bin/prog free.txt; \
                  if echo more >> data.txt; then echo WROTE; fi; \
                  if echo more >> bin/prog; then echo WROTE2; fi; \
                  echo more >> free.txt; \
                  ./bin/prog && echo prog-ran";
    let s = spec(files, vec![sh(script)], collect(&["**"], 10, 16 << 20));
    let r = exec(&s);
    assert_ok(&r);
    let out = text(&r.phases[0].stdout);
    let err = text(&r.phases[0].stderr);
    assert!(out.contains("444 data.txt"), "{out}");
    assert!(out.contains("555 bin/prog"), "{out}");
    assert!(out.contains("644 free.txt"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("prog-ran"), "{out}");
    // EACCES, as the shell reports it, for both.
    assert_eq!(err.matches("Permission denied").count(), 2, "{err}");
    let c = collected(&r);
    let get = |p: &str| c.files.iter().find(|f| f.path == p).unwrap();
    assert_eq!(get("data.txt").content, b"original\n");
    assert_eq!(get("bin/prog").content, true_bin);
    assert!(get("bin/prog").executable);
    assert_eq!(get("free.txt").content, b"w\nmore\n");
}

#[test]
fn stderr_to_stdout_interleaves_in_order() {
    let script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done; \
                  python3 -c 'import sys\nfor i in range(3):\n print(\"po%d\" % i, flush=True)\n print(\"pe%d\" % i, file=sys.stderr, flush=True)'";
    let mut p = sh(script);
    p.stderr_to_stdout = true;
    let r = exec(&spec(vec![], vec![p], None));
    assert_ok(&r);
    assert_eq!(
        text(&r.phases[0].stdout),
        "out1\nerr1\nout2\nerr2\nout3\nerr3\npo0\npe0\npo1\npe1\npo2\npe2\n"
    );
    assert!(r.phases[0].stderr.is_empty());
    assert!(!r.phases[0].stderr_truncated);

    // Without it, the streams stay apart.
    let r = exec(&spec(vec![], vec![sh(script)], None));
    assert_ok(&r);
    assert_eq!(
        text(&r.phases[0].stdout),
        "out1\nout2\nout3\npo0\npo1\npo2\n"
    );
    assert_eq!(
        text(&r.phases[0].stderr),
        "err1\nerr2\nerr3\npe0\npe1\npe2\n"
    );

    // The merged stream has stdout's cap.
    let mut p = sh("for i in $(seq 1 2000); do echo out$i; echo err$i >&2; done");
    p.stderr_to_stdout = true;
    p.limits.max_output_bytes = 1000;
    let r = exec(&spec(vec![], vec![p], None));
    assert_eq!(r.phases[0].stdout.len(), 1000);
    assert!(r.phases[0].stdout_truncated);
    assert!(r.phases[0].stderr.is_empty());
}

#[test]
fn collected_after_a_failed_phase() {
    let mut first = sh("echo partial > log.txt; exit 3");
    first.name = "compile".into();
    let s = spec(
        vec![],
        vec![first, sh("echo never > never.txt")],
        collect(&["*.txt"], 10, 1 << 20),
    );
    let r = exec(&s);
    assert_eq!(r.phases.len(), 1);
    assert_eq!(r.phases[0].status, Status::RuntimeError);
    assert_eq!(paths(collected(&r)), ["log.txt"]);
}

#[test]
fn warm_native_sandbox_collects() {
    if on_docker() {
        // The docker backend's pool containers are covered by every other test here.
        return;
    }
    let b = NativeBackend::new(NativeConfig {
        warm_pool: 1,
        ..NativeConfig::default()
    })
    .expect("backend");
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.warm_count() < 1 {
        assert!(Instant::now() < deadline, "the pool never filled");
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = spec(
        vec![],
        vec![sh("echo warm > w.txt")],
        collect(&["*.txt"], 10, 1 << 20),
    );
    let r = isobox_sandbox::Backend::execute(&b, &s).expect("execute");
    assert!(r.warm);
    assert_ok(&r);
    let c = collected(&r);
    assert_eq!(paths(c), ["w.txt"]);
    assert_eq!(c.files[0].content, b"warm\n");
}
