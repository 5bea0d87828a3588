//! The client examples of `examples/` run against a live server (REST and gRPC on port 0), so that
//! they cannot rot: `curl.sh` (bash + curl), `client.py` (python3), `client.mjs` (node) and the
//! Rust examples `rust_client` and `grpc_client`, whose binaries `cargo build --examples` makes
//! (scripts/test does; a missing or stale binary fails the test with that hint).
//!
//! Each must exit 0 and print the program's output and status `ok` for the plain run, the
//! stream and the async job; with API keys on, the key from `ISOBOX_API_KEY` must get them in
//! and a wrong one must make them fail (non-zero, saying why); under a tight rate limit they
//! must wait out the 429s as `Retry-After` says and still succeed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::TestServer;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/examples/<name>` next to this test binary (`target/<profile>/deps/...`);
/// panics when it is missing or older than its source.
fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("examples").join(name);
    let src = root().join("examples").join(format!("{name}.rs"));
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        panic!(
            "{} is missing: run `cargo build --examples` first (scripts/test does)",
            bin.display()
        );
    };
    let written = std::fs::metadata(&src).and_then(|m| m.modified()).unwrap();
    assert!(
        built >= written,
        "{} is older than {}: run `cargo build --examples` first",
        bin.display(),
        src.display()
    );
    bin
}

fn python3() -> &'static str {
    // The system one: `python3` on PATH may be a pyenv shim.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The examples that speak REST, as (name, program, args).
fn rest_clients() -> Vec<(&'static str, PathBuf, Vec<&'static str>)> {
    vec![
        ("curl.sh", "bash".into(), vec!["examples/curl.sh"]),
        ("client.py", python3().into(), vec!["examples/client.py"]),
        ("client.mjs", "node".into(), vec!["examples/client.mjs"]),
        ("rust_client", example_bin("rust_client"), vec![]),
    ]
}

struct Ran {
    name: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.name, self.code, self.took, self.stdout, self.stderr
        )
    }
}

impl Ran {
    fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "{self}");
        assert!(
            self.stderr.lines().all(|l| !l.starts_with("error")),
            "{self}"
        );
    }
}

/// Runs one example from the repository root with the client environment `vars` (and nothing
/// inherited of it), killed after 120 s.
async fn run(name: &str, program: &Path, args: &[&str], vars: &[(&str, &str)]) -> Ran {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for k in [
        "ISOBOX_URL",
        "ISOBOX_GRPC_URL",
        "ISOBOX_API_KEY",
        "ISOBOX_API_KEY_HEADER",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(vars.iter().copied());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", program.display()));
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within 120 s"))
        .unwrap();
    Ran {
        name: name.to_string(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// What a REST example must have printed after a successful run.
fn assert_rest_output(r: &Ran) {
    let o = &r.stdout;
    if r.name == "curl.sh" {
        // curl prints the server's JSON and the raw event stream.
        assert!(o.contains(r#""stdout":"Hello, world!\n""#), "{r}");
        assert!(
            o.contains("event: stdout\ndata: \"Hello, stream!\\n\""),
            "{r}"
        );
        assert!(o.contains("event: stderr\ndata: \"bye\\n\""), "{r}");
        assert!(o.contains("event: result\ndata: {"), "{r}");
        assert!(o.contains(r#""state":"done""#), "{r}");
        assert!(o.contains(r#""stdout":"Hello, job!\n""#), "{r}");
        assert!(o.matches(r#""status":"ok""#).count() >= 3, "{r}");
        assert!(o.contains(r#""name":"python""#), "{r}");
        return;
    }
    for line in [
        "== POST /api/v1/execute\nstatus: ok (exit code 0)\nstdout: Hello, world!\nstderr: bye\n",
        "[stdout] Hello, stream!\n",
        "[stderr] bye\n",
        "[result] status: ok\n",
        ": done\nstatus: ok (exit code 0)\nstdout: Hello, job!\nstderr: bye\n",
    ] {
        assert!(o.contains(line), "{line:?} missing: {r}");
    }
    assert!(
        o.lines()
            .any(|l| l.starts_with("languages: ") && l.contains("python ")),
        "{r}"
    );
}

fn assert_grpc_output(r: &Ran) {
    for line in [
        "== Execute\nstatus: ok (exit code 0)\nstdout: Hello, world!\nstderr: bye\n",
        "== ExecuteStream\n",
        "[stdout] Hello, stream!\n",
        "[stderr] bye\n",
        "[result] status: ok\n",
    ] {
        assert!(r.stdout.contains(line), "{line:?} missing: {r}");
    }
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("languages: ") && l.contains("python ")),
        "{r}"
    );
}

/// Runs every example, concurrently, against the REST and gRPC URLs with the client variables
/// `vars`.
async fn run_all(rest: &str, grpc: &str, vars: &[(&str, &str)]) -> (Vec<Ran>, Ran) {
    let mut env: Vec<(&str, &str)> = vec![("ISOBOX_URL", rest), ("ISOBOX_GRPC_URL", grpc)];
    env.extend_from_slice(vars);
    let grpc_bin = example_bin("grpc_client");
    let clients = rest_clients();
    let rest = futures_util::future::join_all(
        clients
            .iter()
            .map(|(name, prog, args)| run(name, prog, args, &env)),
    );
    let grpc = run("grpc_client", &grpc_bin, &[], &env);
    tokio::join!(rest, grpc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn examples_work_against_a_live_server() {
    let s = TestServer::start_with_grpc(&[]).await;
    let (rest, grpc) = run_all(&s.url, &s.grpc_url(), &[]).await;
    for r in &rest {
        r.assert_ok();
        assert_rest_output(r);
    }
    grpc.assert_ok();
    assert_grpc_output(&grpc);
    s.shutdown(Duration::from_secs(20)).await;
    // A port bound but not listening (so that nothing else takes it): connections are refused,
    // and each must fail, not hang or claim success.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    let (rest, grpc) = run_all(&nowhere, &nowhere, &[]).await;
    for r in rest.iter().chain([&grpc]) {
        assert_ne!(r.code, Some(0), "{r}");
        assert!(!r.stdout.contains("status: ok"), "{r}");
        assert!(r.stderr.contains("error"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn examples_send_the_api_key() {
    let s = TestServer::start_with_grpc(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-example-1,k-example-2"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "100/min"),
    ])
    .await;
    let (rest, grpc) = run_all(&s.url, &s.grpc_url(), &[("ISOBOX_API_KEY", "k-example-2")]).await;
    for r in &rest {
        r.assert_ok();
        assert_rest_output(r);
    }
    grpc.assert_ok();
    assert_grpc_output(&grpc);

    // A wrong key: refused at the first call, said clearly, non-zero exit.
    for key in [None, Some("k-wrong")] {
        let vars: Vec<(&str, &str)> = key.map(|k| ("ISOBOX_API_KEY", k)).into_iter().collect();
        let (rest, grpc) = run_all(&s.url, &s.grpc_url(), &vars).await;
        for r in &rest {
            assert_ne!(r.code, Some(0), "{r}");
            assert!(!r.stdout.contains("Hello"), "{r}");
            assert!(
                r.stdout.contains("unauthorized") || r.stderr.contains("unauthorized"),
                "{r}"
            );
        }
        assert_ne!(grpc.code, Some(0), "{grpc}");
        assert!(grpc.stderr.contains("error: Unauthenticated: "), "{grpc}");
        assert!(grpc.stderr.contains("[unauthorized]"), "{grpc}");
    }
    s.shutdown(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_examples_wait_out_rate_limits() {
    // One key per client (rate limits are per principal): 2 requests at once, then one every
    // 500 ms, so each client meets 429s with `Retry-After: 1` and must retry, not fail.
    let s = TestServer::start_with_grpc(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-0,k-1,k-2,k-3"),
        ("ISOBOX_RATE_LIMIT", "2/sec"),
    ])
    .await;
    let keys = ["k-0", "k-1", "k-2", "k-3"];
    let clients = rest_clients();
    let env: Vec<Vec<(&str, &str)>> = keys
        .iter()
        .map(|k| vec![("ISOBOX_URL", s.url.as_str()), ("ISOBOX_API_KEY", *k)])
        .collect();
    let ran = futures_util::future::join_all(
        clients
            .iter()
            .zip(&env)
            .map(|((name, prog, args), env)| run(name, prog, args, env)),
    )
    .await;
    for r in &ran {
        r.assert_ok();
        assert_rest_output(r);
        if r.name != "curl.sh" {
            // curl -s keeps its own retry notes to itself.
            assert!(
                r.stderr.contains("[429 rate_limited] retrying in 1 s"),
                "no 429 met or not retried: {r}"
            );
        }
    }
    s.shutdown(Duration::from_secs(20)).await;
}
