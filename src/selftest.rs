//! `isobox selftest`: real probes run inside the sandbox, reported as a table.
//!
//! Each probe is a small shell program (only /bin/sh and coreutils are assumed) run with tight
//! limits; its verdict comes from what the program printed and how the sandbox reported it.

use std::time::Duration;

use isobox_sandbox::{Backend, ExecSpec, LimitHit, Limits, NativeBackend, PhaseReport, Status};
use serde::Serialize;

#[derive(Serialize)]
pub struct Probe {
    pub name: &'static str,
    pub required: bool,
    pub enforced: bool,
    pub detail: String,
}

#[derive(Serialize)]
pub struct Report {
    pub backend: &'static str,
    pub cgroups: String,
    pub probes: Vec<Probe>,
    /// True when every required probe is enforced.
    pub ok: bool,
}

fn limits() -> Limits {
    Limits {
        wall: Duration::from_secs(5),
        cpu: Duration::from_secs(5),
        memory_bytes: 64 << 20,
        max_processes: 32,
        ..Limits::default()
    }
}

fn run_sh(b: &NativeBackend, script: &str, limits: Limits) -> Result<PhaseReport, String> {
    let argv = vec!["sh".into(), "-c".into(), script.into()];
    let spec = ExecSpec::single(argv, vec![], limits);
    let report = b.execute(&spec).map_err(|e| e.to_string())?;
    report
        .phases
        .into_iter()
        .next()
        .ok_or_else(|| "no report".to_string())
}

fn out(r: &PhaseReport) -> String {
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

/// Runs a probe whose script prints `ENFORCED` (or anything else, shown as the detail).
fn expect_line(b: &NativeBackend, script: &str) -> (bool, String) {
    match run_sh(b, script, limits()) {
        Ok(r) => {
            let o = out(&r);
            (
                o.lines().last() == Some("ENFORCED"),
                o.lines().last().unwrap_or("").to_string(),
            )
        }
        Err(e) => (false, e),
    }
}

pub fn run(b: &NativeBackend) -> Report {
    let mut probes = Vec::new();
    let mut add = |name, required, (enforced, detail): (bool, String)| {
        probes.push(Probe {
            name,
            required,
            enforced,
            detail,
        });
    };

    add(
        "non-root user",
        true,
        expect_line(
            b,
            r#"u=$(id -u); [ "$u" != 0 ] && echo ENFORCED || echo "uid $u""#,
        ),
    );
    add(
        "no capabilities, no_new_privs, seccomp filter",
        true,
        expect_line(
            b,
            r#"s=/proc/self/status; v() { grep "^$1:" $s | tr -d ' \t' | cut -d: -f2; };
               e=$(v CapEff); bd=$(v CapBnd); n=$(v NoNewPrivs); sc=$(v Seccomp);
               [ "$e" = 0000000000000000 ] && [ "$bd" = 0000000000000000 ] && [ "$n" = 1 ] && [ "$sc" = 2 ] \
               && echo ENFORCED || echo "CapEff=$e CapBnd=$bd NoNewPrivs=$n Seccomp=$sc""#,
        ),
    );
    add(
        "pid namespace (host processes invisible)",
        true,
        expect_line(
            b,
            r#"n=$(ls /proc | grep -c '^[0-9]'); [ "$$" -lt 10 ] && [ "$n" -lt 10 ] && echo ENFORCED || echo "pid $$, $n processes visible""#,
        ),
    );
    add(
        "no network (loopback only)",
        true,
        expect_line(
            b,
            r#"n=$(tail -n +3 /proc/net/dev | grep -vc '^ *lo:'); [ "$n" = 0 ] && echo ENFORCED || echo "$n interfaces besides lo""#,
        ),
    );
    add(
        "read-only root, /usr and /etc",
        true,
        expect_line(
            b,
            r#"for f in /x /usr/x /etc/x /bin/x; do if touch $f 2>/dev/null; then echo "wrote $f"; exit; fi; done; echo ENFORCED"#,
        ),
    );
    add(
        "no host secrets (/etc/shadow, /root, /home)",
        true,
        expect_line(
            b,
            r#"for f in /etc/shadow /etc/gshadow /root /home /etc/ssh; do [ -e $f ] && { echo "$f visible"; exit; }; done; echo ENFORCED"#,
        ),
    );
    add(
        "/sys absent",
        true,
        expect_line(
            b,
            r#"[ -e /sys/kernel ] && echo "/sys visible" || echo ENFORCED"#,
        ),
    );
    add(
        "namespace syscalls blocked (unshare, mount)",
        true,
        expect_line(
            b,
            r#"command -v unshare >/dev/null || { echo ENFORCED; exit; }; unshare -U true 2>/dev/null && echo "unshare worked" || echo ENFORCED"#,
        ),
    );
    add(
        "writable /tmp is size-capped",
        true,
        match run_sh(
            b,
            "head -c 40000000 /dev/zero > /tmp/fill 2>/dev/null; wc -c < /tmp/fill",
            limits(),
        ) {
            Ok(r) => {
                let n: u64 = out(&r).parse().unwrap_or(u64::MAX);
                (n <= 16 << 20, format!("wrote {n} bytes into a 16 MiB /tmp"))
            }
            Err(e) => (false, e),
        },
    );
    add(
        "process limit (cgroup pids)",
        true,
        match run_sh(
            b,
            "i=0; while [ $i -lt 64 ]; do sleep 3 & i=$((i+1)); done 2>/dev/null; echo started",
            Limits {
                max_processes: 16,
                ..limits()
            },
        ) {
            Ok(r) => {
                let err = String::from_utf8_lossy(&r.stderr).to_string();
                let refused = err.contains("fork")
                    || err.contains("Resource temporarily unavailable")
                    || r.status != Status::Ok;
                (
                    refused,
                    if refused {
                        "fork refused at 16 tasks".into()
                    } else {
                        "64 processes started under a limit of 16".into()
                    },
                )
            }
            Err(e) => (false, e),
        },
    );
    add(
        "memory limit (cgroup memory)",
        true,
        match run_sh(
            b,
            "head -c 200000000 /dev/zero | tail > /dev/null",
            Limits {
                memory_bytes: 32 << 20,
                ..limits()
            },
        ) {
            Ok(r) => (
                r.status == Status::MemoryLimit,
                format!(
                    "status {} with a 32 MiB limit, peak {} KiB",
                    r.status.as_str(),
                    r.memory_peak_bytes >> 10
                ),
            ),
            Err(e) => (false, e),
        },
    );
    add(
        "CPU-time limit",
        true,
        match run_sh(
            b,
            "while :; do :; done",
            Limits {
                cpu: Duration::from_millis(300),
                ..limits()
            },
        ) {
            Ok(r) => (
                r.limit_hit == Some(LimitHit::CpuTime),
                format!(
                    "status {} after {} ms CPU",
                    r.status.as_str(),
                    r.cpu_time.as_millis()
                ),
            ),
            Err(e) => (false, e),
        },
    );
    add(
        "wall-clock limit",
        true,
        match run_sh(
            b,
            "sleep 30",
            Limits {
                wall: Duration::from_millis(300),
                ..limits()
            },
        ) {
            Ok(r) => (
                r.limit_hit == Some(LimitHit::WallTime),
                format!(
                    "status {} after {} ms",
                    r.status.as_str(),
                    r.wall_time.as_millis()
                ),
            ),
            Err(e) => (false, e),
        },
    );
    add(
        "whole tree killed when main exits",
        true,
        match run_sh(b, "(setsid sleep 30 &) ; echo $$", limits()) {
            Ok(r) => (
                r.status == Status::Ok && r.wall_time < Duration::from_secs(5),
                format!("ended after {} ms", r.wall_time.as_millis()),
            ),
            Err(e) => (false, e),
        },
    );
    add(
        "hostname isolated",
        false,
        expect_line(
            b,
            r#"h=$(cat /proc/sys/kernel/hostname); [ "$h" = isobox ] && echo ENFORCED || echo "hostname $h""#,
        ),
    );
    add(
        "fast cgroup placement (no RCU stall per run)",
        false,
        fast_cgroup_placement(b),
    );
    let cgroups = b.cgroup_layout().describe();
    let ok = probes.iter().all(|p| p.enforced || !p.required);
    Report {
        backend: "native",
        cgroups,
        probes,
        ok,
    }
}

/// Whether a fresh sandbox joins its cgroup without waiting for an RCU grace period: on pure v2
/// (born in its group by clone3), or with the v2 hierarchy mounted `favordynmods`. Otherwise
/// every cold run may wait ~10 ms in the kernel (the warm pool hides it).
fn fast_cgroup_placement(b: &NativeBackend) -> (bool, String) {
    let l = b.cgroup_layout();
    if [&l.memory, &l.pids, &l.cpu, &l.cpuacct]
        .iter()
        .all(|m| m.is_v2())
    {
        return (true, "pure cgroup v2: clone3(CLONE_INTO_CGROUP)".into());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let favor = mountinfo
        .lines()
        .any(|l| l.contains(" - cgroup2 ") && l.contains("favordynmods"));
    if favor {
        (true, "v2 hierarchy mounted with favordynmods".into())
    } else {
        (false, "v1 migrations wait for RCU: `mount -o remount,favordynmods <cgroup2 mount>` or use a warm pool".into())
    }
}

pub fn print(r: &Report) {
    println!("backend: {}   cgroups: {}", r.backend, r.cgroups);
    println!("{:<48} {:<9} {:<9} detail", "probe", "required", "enforced");
    for p in &r.probes {
        println!(
            "{:<48} {:<9} {:<9} {}",
            p.name,
            if p.required { "yes" } else { "no" },
            if p.enforced { "yes" } else { "NO" },
            if p.enforced && p.detail == "ENFORCED" {
                ""
            } else {
                &p.detail
            }
        );
    }
    println!(
        "{}",
        if r.ok {
            "all required isolation is enforced"
        } else {
            "SOME REQUIRED ISOLATION IS MISSING"
        }
    );
}
