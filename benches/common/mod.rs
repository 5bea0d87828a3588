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
