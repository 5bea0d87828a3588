//! The `isobox` command line as a user meets it.

use crate::common::*;

use std::process::Command;

#[test]
fn refuses_to_run_without_privileges() {
    let dir = TempDir::new("nonroot");
    let prog = dir.file("hello.py", "print('should never run')\n");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Drop to nobody with no capabilities, like a user who forgot sudo.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(isobox_bin())
        .arg("run")
        .arg(&prog)
        .env("ISOBOX_RUNTIMES_DIR", NO_RUNTIMES)
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {stderr}");
    assert!(
        stderr.contains("needs root") && stderr.contains("--backend docker"),
        "stderr: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("should never run"));
}

#[test]
fn docker_backend_without_an_engine_or_image_is_a_clear_error() {
    let dir = TempDir::new("docker");
    let prog = dir.file("hello.py", "print(1)\n");
    let run = |envs: &[(&str, &str)]| {
        isobox_cmd()
            .args(["run", prog.to_str().unwrap(), "--backend", "docker"])
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    let out = run(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the Docker engine"), "{err}");
    assert!(err.contains("/nonexistent/docker.sock"), "{err}");
    // A real engine without the image: the error says how to build it.
    let out = run(&[("ISOBOX_DOCKER_IMAGE", "isobox-runtime:no-such-version")]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("isobox image build"), "{err}");
}

#[test]
fn docker_backend_runs_a_program_from_the_cli() {
    let dir = TempDir::new("docker-run");
    let prog = dir.file(
        "hello.py",
        "import sys\nprint('hi', sys.stdin.read())\nsys.exit(3)\n",
    );
    let out = cli(&[
        "run",
        prog.to_str().unwrap(),
        "--backend",
        "docker",
        "--stdin",
        "there",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");
}

#[test]
fn unknown_extension_and_language_are_clear_errors() {
    let dir = TempDir::new("unknown");
    let prog = dir.file("prog.xyz", "whatever\n");
    let out = cli(&["run", prog.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--language"),
        "{out:?}"
    );
    let out = cli(&["run", prog.to_str().unwrap(), "--language", "intercal"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown language `intercal`"),
        "{out:?}"
    );
}

#[test]
fn exit_codes_follow_the_contract() {
    let dir = TempDir::new("codes");
    let cases = [
        ("exit.sh", "exit 42", 42),
        ("sig.sh", "kill -SEGV $$", 128 + 11),
        ("loop.sh", "while :; do :; done", 124),
        (
            "mem.sh",
            "head -c 300000000 /dev/zero | tail > /dev/null",
            137,
        ),
        ("out.sh", "yes", 137),
        ("broken.c", "int main(void) { return undeclared; }\n", 126),
    ];
    for (name, code, want) in cases {
        let prog = dir.file(name, code);
        // The loop must hit its 1 s limit; the others get room to reach theirs on a busy host.
        let timeout = if name == "loop.sh" { "1000" } else { "10000" };
        let out = cli(&[
            "run",
            prog.to_str().unwrap(),
            "--timeout-ms",
            timeout,
            "--memory-mb",
            "64",
        ]);
        assert_eq!(out.status.code(), Some(want), "{name}: {out:?}");
    }
    // A compile error is not the compiler's status (which a program's could be): 126, with
    // the compiler's output.
    let out = cli(&["run", dir.0.join("broken.c").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("undeclared") && err.contains("compilation failed"),
        "{err}"
    );
    // Usage errors are 2, whether the parser or IsoBox finds them; IsoBox's own failures 125.
    let prog = dir.file("ok.py", "print(1)\n");
    let prog = prog.to_str().unwrap();
    let missing = dir.0.join("missing.py");
    for (args, says) in [
        (vec!["run", prog, "--timeout-ms", "soon"], "--timeout-ms"),
        (vec!["run", prog, "--no-such-flag"], "--no-such-flag"),
        (vec!["run"], "FILE"),
        (vec!["run", missing.to_str().unwrap()], "cannot read"),
        (vec!["run", prog, "--language", "intercal"], "intercal"),
        (
            vec!["run", prog, "--timeout-ms", "999999"],
            "--timeout-ms is 999999",
        ),
        (
            vec!["run", prog, "--stdin-file", "/nonexistent/in"],
            "/nonexistent/in",
        ),
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}

/// `isobox run --help` lists every exit status the command has.
#[test]
fn run_help_lists_the_exit_statuses() {
    let out = cli(&["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    let section = help
        .split_once("Exit status:")
        .unwrap_or_else(|| panic!("no exit statuses in --help:\n{help}"))
        .1;
    for (code, what) in [
        ("0 ", "exited 0"),
        ("N ", "status N"),
        ("124", "time limit"),
        ("126", "did not compile"),
        ("137", "memory or output limit"),
        ("128+N", "signal N"),
        ("2 ", "usage error"),
        ("125", "internal error"),
    ] {
        assert!(
            section
                .lines()
                .any(|l| l.trim_start().starts_with(code) && l.contains(what)),
            "no `{code}` ({what}) line in:\n{section}"
        );
    }
    // Not in the short help.
    let short = cli(&["run", "-h"]);
    assert!(!String::from_utf8_lossy(&short.stdout).contains("Exit status:"));
}

/// What is piped into `isobox run` is the program's stdin; `--stdin-file -` says so
/// explicitly; `--stdin` wins over the pipe; too much, or not text, is a usage error.
#[test]
fn piped_stdin_reaches_the_program() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = TempDir::new("pipe");
    let prog = dir.file(
        "rev.py",
        "import sys\nprint(sys.stdin.read()[::-1], end='')\n",
    );
    let prog = prog.to_str().unwrap();
    let piped = |args: &[&str], input: &[u8]| {
        let mut child = isobox_cmd()
            .arg("run")
            .arg(prog)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The pipe may close early when isobox refuses the input: a broken pipe is fine.
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let out = piped(&[], b"hello\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\nolleh");
    let out = piped(&["--stdin-file", "-"], b"abc");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "cba", "{out:?}");
    let out = piped(&["--stdin", "xyz"], b"ignored");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "zyx", "{out:?}");
    let file = dir.file("in.txt", "from a file");
    let out = piped(&["--stdin-file", file.to_str().unwrap()], b"ignored");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "elif a morf",
        "{out:?}"
    );
    // Nothing piped (stdin at its end): empty stdin, not a wait.
    let out = cli(&["run", prog]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // Over the stdin limit (1 MiB), or not UTF-8: refused before anything runs.
    let out = piped(&[], &vec![b'x'; (1 << 20) + 10]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stdin is over the limit"),
        "{out:?}"
    );
    let out = piped(&["--stdin-file", "-"], &[0xff, 0xfe, b'a']);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not UTF-8"),
        "{out:?}"
    );
}

/// `--cpu-ms`, `--processes` and `--output-bytes` are the run's limits.
#[test]
fn limit_flags_reach_the_sandbox() {
    let dir = TempDir::new("limits");
    // CPU: a busy loop stopped by its 300 ms of CPU long before the default wall limit (5 s).
    let spin = dir.file("spin.py", "while True:\n    pass\n");
    let started = std::time::Instant::now();
    let out = cli(&["run", spin.to_str().unwrap(), "--cpu-ms", "300", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "timeout", "{v}");
    let cpu = v["cpu_time_ms"].as_u64().unwrap();
    assert!((250..2000).contains(&cpu), "{v}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "stopped by the CPU limit, not the wall limit: {v}"
    );
    // Processes: at most 6 at once (python and up to 5 children).
    let forks = dir.file(
        "forks.py",
        "import os, time\nn = 0\ntry:\n    for _ in range(30):\n        if os.fork() == 0:\n            time.sleep(2)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)\n",
    );
    let children = |extra: &[&str]| -> u64 {
        let mut args = vec!["run", forks.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    assert_eq!(children(&[]), 30, "the default allows 30 children");
    let limited = children(&["--processes", "6"]);
    assert!(limited < 6, "{limited} children with --processes 6");
    // Output: a program that goes on writing past 1000 bytes is stopped (137), 1000 bytes
    // kept; without the flag, 5000 bytes are within the default.
    let chatty = dir.file(
        "chatty.py",
        "import sys\nn = int(sys.argv[1])\nwhile n:\n    sys.stdout.write('x' * 100)\n    n -= 1\n",
    );
    let out = cli(&[
        "run",
        chatty.to_str().unwrap(),
        "--arg=-1",
        "--output-bytes",
        "1000",
    ]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_eq!(out.stdout.len(), 1000, "{out:?}");
    let out = cli(&["run", chatty.to_str().unwrap(), "--arg=50"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.len(), 5000, "{out:?}");
    // Values the parser refuses, and those above the server's maximum, name the flag.
    let p = chatty.to_str().unwrap();
    for (args, says) in [
        (vec!["--cpu-ms", "0"], "--cpu-ms"),
        (vec!["--cpu-ms", "lots"], "--cpu-ms"),
        (vec!["--processes", "1"], "--processes"),
        (vec!["--output-bytes", "-5"], "--output-bytes"),
        (vec!["--cpu-ms", "3600000"], "--cpu-ms is 3600000"),
        (vec!["--processes", "100000"], "--processes is 100000"),
        (
            vec!["--output-bytes", "999999999"],
            "--output-bytes is 999999999",
        ),
    ] {
        let mut all = vec!["run", p];
        all.extend_from_slice(&args);
        let out = cli(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn json_result_has_the_contract_fields() {
    let dir = TempDir::new("json");
    let prog = dir.file(
        "main.py",
        "import sys\nprint(sys.stdin.read().upper(), end='')\nsys.exit(3)\n",
    );
    let out = cli(&["run", prog.to_str().unwrap(), "--stdin", "héllo", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "runtime_error");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["stdout"], "HÉLLO");
    assert_eq!(v["language"], "python");
    assert_eq!(v["cached"], false);
    assert!(v["compile"].is_null());
    for key in [
        "id",
        "version",
        "signal",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "cpu_time_ms",
        "wall_time_ms",
        "memory_peak_bytes",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(v["memory_peak_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn selftest_reports_everything_enforced() {
    let out = cli(&["selftest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let missing: Vec<_> = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["required"] == true && p["enforced"] != true)
        .map(|p| format!("{}: {}", p["name"], p["detail"]))
        .collect();
    assert!(missing.is_empty(), "required but not enforced: {missing:?}");
    assert_eq!(v["ok"], true);
    assert_eq!(out.status.code(), Some(0));
    assert!(v["probes"].as_array().unwrap().len() >= 14);
}

#[test]
fn missing_toolchains_are_reported_unavailable() {
    let dir = TempDir::new("langs");
    let table = dir.file(
        "langs.toml",
        "[[language]]\nname = \"cobol\"\nextensions = [\"cob\"]\nfile = \"main.cob\"\n\
         compile = [\"cobc\", \"-x\", \"{file}\"]\nrun = [\"./main\"]\nversion = [\"cobc\", \"--version\"]\n\
         [[language]]\nname = \"sh\"\nextensions = [\"sh\"]\nfile = \"main.sh\"\nrun = [\"sh\", \"{file}\"]\n",
    );
    // The host's toolchains only: a built runtime on this host may well provide cobc.
    let no_runtimes = dir.0.join("no-runtimes");
    std::fs::create_dir(&no_runtimes).unwrap();
    let cli = |args: &[&str]| {
        isobox_cmd()
            .args(args)
            .env("ISOBOX_RUNTIMES_DIR", &no_runtimes)
            .output()
            .unwrap()
    };
    let out = cli(&[
        "languages",
        "--json",
        "--languages-file",
        table.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("cobol")["available"], false);
    assert_eq!(by_name("cobol")["version"], "");
    assert_eq!(by_name("sh")["available"], true);

    let prog = dir.file("hello.cob", "DISPLAY 'HI'.\n");
    let out = cli(&[
        "run",
        prog.to_str().unwrap(),
        "--languages-file",
        table.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`cobol` is not available on this host"),
        "{out:?}"
    );
}

/// A toolchain's version is probed once and kept in the state directory with the toolchain's
/// fingerprint: a later process uses it without a probe sandbox, and a changed toolchain (another
/// fingerprint) is probed again.
#[test]
fn toolchain_versions_are_kept_until_the_toolchain_changes() {
    let dir = TempDir::new("versions");
    // A language of its own, so that no other test reads or writes this cache entry.
    let name = format!("py-versions-{}", std::process::id());
    let table = dir.file(
        "langs.toml",
        &format!(
            "[[language]]\nname = \"{name}\"\nextensions = [\"pyv\"]\nfile = \"main.py\"\n\
             run = [\"python3\", \"{{file}}\"]\nversion = [\"python3\", \"--version\"]\n"
        ),
    );
    let prog = dir.file("v.pyv", "print('hi')\n");
    let run = || {
        let out = cli(&[
            "run",
            prog.to_str().unwrap(),
            "--json",
            "--languages-file",
            table.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["stdout"], "hi\n");
        v["version"].as_str().unwrap().to_string()
    };
    let cache = std::path::Path::new("/run/isobox/versions").join(&name);
    let _ = std::fs::remove_file(&cache);

    // Probed and stored.
    let real = run();
    assert!(real.starts_with("3."), "{real}");
    let text = std::fs::read_to_string(&cache).expect("the version is stored");
    let (fingerprint, stored) = text.split_once('\n').unwrap();
    assert!(fingerprint.contains("python3"), "{fingerprint}");
    assert_eq!(stored.trim(), real);

    // Same toolchain: the stored version is used as it is (no probe would say 9.9.9).
    std::fs::write(&cache, format!("{fingerprint}\n9.9.9\n")).unwrap();
    assert_eq!(run(), "9.9.9");

    // Another toolchain (fingerprint): probed again, and the entry replaced.
    std::fs::write(&cache, "/usr/bin/python3 1 2 3.4\n9.9.9\n").unwrap();
    assert_eq!(run(), real);
    assert_eq!(
        std::fs::read_to_string(&cache).unwrap(),
        format!("{fingerprint}\n{real}\n")
    );
    let _ = std::fs::remove_file(&cache);
}

#[test]
fn run_with_a_directory_of_tests_prints_verdicts_and_writes_outputs() {
    let dir = TempDir::new("cli-tests");
    let prog = dir.file(
        "double.c",
        "#include <stdio.h>\nint main(void){ long n; scanf(\"%ld\", &n); printf(\"%ld\\n\", n * FACTOR); \
         FILE *f = fopen(\"last.txt\", \"w\"); fprintf(f, \"%ld\", n); fclose(f); return 0; }\n",
    );
    std::fs::create_dir(dir.0.join("cases")).unwrap();
    for (name, input, output) in [("1", "2", "4"), ("2", "5", "10 \n\n"), ("10", "3", "7")] {
        std::fs::write(dir.0.join(format!("cases/{name}.in")), input).unwrap();
        std::fs::write(dir.0.join(format!("cases/{name}.out")), output).unwrap();
    }
    let cases = dir.0.join("cases");
    let out = cli(&[
        "run",
        prog.to_str().unwrap(),
        "--tests",
        cases.to_str().unwrap(),
        "--compare",
        "trim",
        "--compile-arg=-DFACTOR=2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("1 ") && lines[0].contains("accepted"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("2 ") && lines[1].contains("accepted"),
        "trim: {stdout}"
    );
    assert!(
        lines[2].starts_with("10 ") && lines[2].contains("wrong_answer"),
        "2 before 10: {stdout}"
    );
    assert!(
        lines[3].starts_with("wrong_answer: 2 passed, 1 failed"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1));
    // All accepted: exit 0; --output writes the returned file.
    let ok = dir.file("ok.json", r#"[{"stdin": "4", "expected_output": "8"}]"#);
    let out_dir = dir.0.join("out");
    let out = cli(&[
        "run",
        prog.to_str().unwrap(),
        "--tests",
        ok.to_str().unwrap(),
        "--compare",
        "tokens",
        "--compile-arg=-DFACTOR=2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cli(&[
        "run",
        prog.to_str().unwrap(),
        "--stdin",
        "21",
        "--compile-arg=-DFACTOR=2",
        "--output",
        "*.txt",
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("last.txt")).unwrap(),
        "21"
    );
}

/// `--compare float` takes the tolerances of the REST API's `compare` object:
/// `--compare-absolute` and `--compare-relative` (1e-6 each when not given); they go with
/// `--compare float` only and are finite and not negative.
#[test]
fn run_compare_float_takes_the_tolerances() {
    let dir = TempDir::new("cli-float");
    let prog = dir.file("near.py", "print(1.0001)\n");
    let cases = dir.file("cases.json", r#"[{"stdin": "", "expected_output": "1.0"}]"#);
    let judge = |extra: &[&str]| {
        let mut args = vec![
            "run",
            prog.to_str().unwrap(),
            "--tests",
            cases.to_str().unwrap(),
            "--compare",
            "float",
        ];
        args.extend_from_slice(extra);
        let out = cli(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    // 1.0001 against 1.0 is off by 1e-4: over the default tolerances.
    let (code, stdout, _) = judge(&[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("wrong_answer"), "{stdout}");
    let (code, stdout, _) = judge(&["--compare-absolute", "1e-5"]);
    assert_eq!(code, Some(1), "1e-5 is still tighter than 1e-4: {stdout}");
    // Loose enough either way: accepted.
    for loose in [
        ["--compare-absolute", "1e-3"],
        ["--compare-relative", "1e-3"],
    ] {
        let (code, stdout, stderr) = judge(&loose);
        assert_eq!(code, Some(0), "{loose:?}: {stdout}{stderr}");
        assert!(stdout.contains("accepted"), "{loose:?}: {stdout}");
        assert!(!stdout.contains("wrong_answer"), "{loose:?}: {stdout}");
    }
    // Bad tolerances, or a tolerance for another mode: usage errors.
    for bad in [
        ["--compare-absolute", "-1"],
        ["--compare-relative", "inf"],
        ["--compare-absolute", "lots"],
    ] {
        let (code, _, stderr) = judge(&bad);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("tolerance"), "{bad:?}: {stderr}");
    }
    let out = cli(&[
        "run",
        prog.to_str().unwrap(),
        "--tests",
        cases.to_str().unwrap(),
        "--compare",
        "tokens",
        "--compare-absolute",
        "1e-3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--compare float"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Documented in the help.
    let help = String::from_utf8_lossy(&cli(&["run", "--help"]).stdout).into_owned();
    for flag in ["--compare-absolute", "--compare-relative"] {
        assert!(help.contains(flag), "{flag} not in --help:\n{help}");
    }
}
