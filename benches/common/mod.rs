//! Helpers shared by the benches (`mod common;` in each): settings from the environment,
//! quantiles, commands, child processes.
#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The setting `k` from the environment, `d` when unset or unparsable.
pub fn env_num<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p` quantile (0..=1) of sorted `v` in ms, nearest rank below.
pub fn pct(v: &[Duration], p: f64) -> f64 {
    ms(v[((v.len() as f64 - 1.0) * p) as usize])
}

/// The trimmed stdout of `cmd args` when it succeeds.
pub fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// SIGTERM, then SIGKILL if the process is still there after `grace`; always reaped.
pub fn stop_child(child: &mut Child, grace: Duration) {
    // SAFETY: a plain kill(2) on our own child's pid (not yet reaped, so not reused).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("pid {} ignored SIGTERM for {grace:?}: SIGKILL", child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// `docker run --rm` with the docker backend's hardening as CLI flags (the HostConfig it gives
/// its containers: no network, no capabilities, no-new-privileges, the seccomp profile at
/// `seccomp`, read-only root, a 64 MiB /tmp, pids, memory = memory+swap, one CPU, nofile, a
/// non-root uid, no logs), running `argv` in the runtime image.
pub fn docker_run(seccomp: Option<&str>, argv: &[&str]) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "none", "--cap-drop", "ALL"]);
    cmd.args(["--security-opt", "no-new-privileges"]);
    if let Some(path) = seccomp {
        cmd.args(["--security-opt", &format!("seccomp={path}")]);
    }
    cmd.args([
        "--read-only",
        "--tmpfs",
        "/tmp:rw,exec,nosuid,nodev,size=64m",
    ]);
    cmd.args([
        "--pids-limit",
        "64",
        "--memory",
        "256m",
        "--memory-swap",
        "256m",
    ]);
    cmd.args(["--cpus", "1", "--ulimit", "nofile=4096:4096"]);
    cmd.args(["--user", "61000:61000", "--log-driver", "none"]);
    cmd.args(["--entrypoint", argv[0]]);
    cmd.arg(isobox_sandbox::docker::default_image());
    cmd.args(&argv[1..]);
    cmd
}

/// Ok when the run succeeded and printed exactly `stdout`; else what it did, for the report.
pub fn check_output(out: std::process::Output, stdout: &[u8]) -> Result<(), String> {
    if !out.status.success() || out.stdout != stdout {
        return Err(format!(
            "{} stdout {:?} stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// An `isobox serve` in this process on a free loopback port (`REST_PORT=0`, a queue and a
/// rate limit no bench reaches, then `vars`): its URL, and the sender that stops it.
pub async fn in_process_server(
    vars: &[(&str, String)],
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut env: std::collections::HashMap<String, String> = [
        ("REST_PORT", "0"),
        ("ISOBOX_QUEUE", "1000"),
        ("ISOBOX_RATE_LIMIT", "100000000/min"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let cfg = isobox_server::config::load(&env).expect("config");
    let app = tokio::task::spawn_blocking(move || isobox_server::App::build(cfg))
        .await
        .unwrap()
        .expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(isobox_server::run(
        listener,
        std::sync::Arc::new(app),
        async move {
            let _ = rx.await;
        },
    ));
    (url, tx)
}
