//! `isobox selftest`: real probes run inside the sandbox of either backend, reported as a table.
//!
//! Each probe is a small shell program (only /bin/sh and coreutils are assumed) run with tight
//! limits; its verdict comes from what the program printed and how the sandbox reported it.
//! Both backends run the same probes; where a backend differs by design (Docker always mounts
//! `/sys`, the docker runner is the container's PID 1) the probe is reported as not required on
//! that backend, and enforced or not as measured. `--markdown` prints the table SECURITY.md
//! carries (tests/security_doc.rs keeps the two in step).

use std::time::Duration;

use isobox_sandbox::{
    program_env, Backend, DockerBackend, ExecSpec, LimitHit, Limits, NativeBackend, PhaseReport,
    Status,
};
use serde::Serialize;

#[derive(Serialize)]
pub struct Probe {
    pub name: &'static str,
    pub required: bool,
    pub enforced: bool,
    /// The outcome depends on how the host is set up, not on IsoBox (never set on a required
    /// probe).
    pub host_dependent: bool,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Native,
    Docker,
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

fn run_sh(b: &dyn Backend, script: &str, limits: Limits) -> Result<PhaseReport, String> {
    let argv = vec!["sh".into(), "-c".into(), script.into()];
    let spec = ExecSpec::single(argv, program_env(&[]), limits);
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

/// Runs a probe whose script prints `ENFORCED` last (or anything else, shown as the detail);
/// the run itself must end normally.
fn expect_line(b: &dyn Backend, script: &str) -> (bool, String) {
    match run_sh(b, script, limits()) {
        Ok(r) => {
            let o = out(&r);
            let last = o.lines().last().unwrap_or("").to_string();
            if r.status != Status::Ok {
                return (false, format!("status {} ({last})", r.status.as_str()));
            }
            (last == "ENFORCED", last)
        }
        Err(e) => (false, e),
    }
}

/// Runs every probe on a native backend.
pub fn native(b: &NativeBackend) -> Report {
    let mut probes = common(b, Kind::Native);
    let (enforced, detail) = fast_cgroup_placement(b);
    probes.push(Probe {
        name: "fast cgroup placement (no RCU stall per run)",
        required: false,
        enforced,
        host_dependent: true,
        detail,
    });
    report("native", b.cgroup_layout().describe(), probes)
}

/// Runs every probe on a docker backend; `engine` describes the engine (shown, not checked).
pub fn docker(b: &DockerBackend, engine: String) -> Report {
    let mut probes = common(b, Kind::Docker);
    let (enforced, detail) = expect_line(
        b,
        r#"a=$(cat /proc/self/attr/current 2>/dev/null | tr -d '\0'); case "$a" in isobox*) echo ENFORCED;; "") echo "no LSM label: AppArmor is off on this host";; *) echo "confined by $a";; esac"#,
    );
    probes.push(Probe {
        name: "AppArmor profile isobox applied",
        required: false,
        enforced,
        host_dependent: true,
        detail,
    });
    report("docker", engine, probes)
}

fn report(backend: &'static str, cgroups: String, probes: Vec<Probe>) -> Report {
    let ok = probes.iter().all(|p| p.enforced || !p.required);
    Report {
        backend,
        cgroups,
        probes,
        ok,
    }
}

/// The probes both backends run. `required` differs only where a backend differs by design.
fn common(b: &dyn Backend, kind: Kind) -> Vec<Probe> {
    let docker = kind == Kind::Docker;
    let mut probes = Vec::new();
    let mut add = |name, required, (enforced, detail): (bool, String)| {
        probes.push(Probe {
            name,
            required,
            enforced,
            host_dependent: false,
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
        "user namespaces refused (unshare -U)",
        true,
        expect_line(
            b,
            r#"command -v unshare >/dev/null || { echo "cannot probe: no unshare(1) in the sandbox"; exit; }
               unshare -U true 2>/dev/null && echo "unshare -U worked" || echo ENFORCED"#,
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
        "no IsoBox process visible to the program",
        !docker,
        expect_line(
            b,
            r#"for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null);
                 case "$c" in *isobox*) echo "pid ${p#/proc/} ($c) visible"; exit;; esac; done; echo ENFORCED"#,
        ),
    );
    add(
        "PID 1 cannot be killed, read or traced",
        true,
        expect_line(
            b,
            r#"kill -KILL 1 2>/dev/null; sleep 0.2
               for f in /proc/1/mem /proc/1/environ; do head -c1 $f >/dev/null 2>&1 && { echo "$f readable"; exit; }; done
               ls /proc/1/fd >/dev/null 2>&1 && { echo "/proc/1/fd readable"; exit; }
               echo ENFORCED"#,
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
            r#"for f in /x /usr/x /etc/x /bin/x /etc/passwd; do if touch $f 2>/dev/null; then echo "wrote $f"; exit; fi; done; echo ENFORCED"#,
        ),
    );
    add(
        "no setuid path (nosuid mounts or no setuid files)",
        true,
        expect_line(
            b,
            r#"ns() { awk -v m="$1" '$2 == m { print ($4 ~ /(^|,)nosuid(,|$)/) ? "y" : "n" }' /proc/self/mounts | tail -n 1; }
               if [ "$(ns /)" = y ] && [ "$(ns /usr)" = y ]; then echo ENFORCED; exit; fi
               f=$(find / -xdev -perm /6000 -type f 2>/dev/null | head -n 1)
               [ -z "$f" ] && echo ENFORCED || echo "setuid/setgid file $f on a suid mount""#,
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
        !docker,
        expect_line(
            b,
            r#"[ -e /sys/kernel ] && echo "/sys visible (read-only)" || echo ENFORCED"#,
        ),
    );
    add(
        "/sys not writable",
        true,
        expect_line(
            b,
            // Opening for append writes nothing, whatever the verdict.
            r#"[ -e /sys ] || { echo ENFORCED; exit; }
               for d in /sys /sys/fs/cgroup; do f=$d/isobox-probe; touch $f 2>/dev/null && { rm -f $f; echo "created $f"; exit; }; done
               for f in /sys/kernel/mm/transparent_hugepage/enabled /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max; do
                 [ -e $f ] && (: >> $f) 2>/dev/null && { echo "$f opens for writing"; exit; }; done
               echo ENFORCED"#,
        ),
    );
    add(
        "writable /tmp is size-capped",
        true,
        // Files of 6 MB each, below RLIMIT_FSIZE (16 MiB): what stops them is the tmpfs cap.
        match run_sh(
            b,
            "for i in 1 2 3 4 5; do head -c 6000000 /dev/zero > /tmp/fill$i 2>/dev/null; done; cat /tmp/fill* | wc -c",
            limits(),
        ) {
            Ok(r) => {
                let n: u64 = out(&r).parse().unwrap_or(u64::MAX);
                (
                    n <= 16 << 20,
                    format!("wrote {n} of 30000000 bytes into a 16 MiB /tmp"),
                )
            }
            Err(e) => (false, e),
        },
    );
    add(
        "file size limit (RLIMIT_FSIZE)",
        true,
        match run_sh(
            b,
            "head -c 3000000 /dev/zero > /tmp/big 2>/dev/null; wc -c < /tmp/big",
            Limits {
                max_file_bytes: 1 << 20,
                ..limits()
            },
        ) {
            Ok(r) => {
                let n: u64 = out(&r).parse().unwrap_or(u64::MAX);
                (
                    n <= 1 << 20,
                    format!("a file grew to {n} bytes under a 1 MiB limit"),
                )
            }
            Err(e) => (false, e),
        },
    );
    add(
        "output capped",
        true,
        match run_sh(
            b,
            "head -c 1000000 /dev/zero",
            Limits {
                max_output_bytes: 4096,
                ..limits()
            },
        ) {
            Ok(r) => (
                r.status == Status::OutputLimit && r.stdout.len() == 4096 && r.stdout_truncated,
                format!(
                    "status {}, {} bytes kept of 1000000 with a cap of 4096",
                    r.status.as_str(),
                    r.stdout.len()
                ),
            ),
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
    probes
}

/// Whether a fresh sandbox joins its cgroup without waiting for an RCU grace period. v1 groups
/// are joined by writing `0` to their `tasks` file (one thread: no threadgroup lock, no grace
/// period); the v2 group by being born in it (`clone3(CLONE_INTO_CGROUP)`, Linux 5.7), else by
/// a `cgroup.procs` write, which waits for one (~10 ms) unless the v2 hierarchy is mounted
/// `favordynmods`. The warm pool hides the wait either way.
fn fast_cgroup_placement(b: &NativeBackend) -> (bool, String) {
    let l = b.cgroup_layout();
    if ![&l.memory, &l.pids, &l.cpu, &l.cpuacct]
        .iter()
        .any(|m| m.is_v2())
    {
        return (true, "cgroup v1: joined through `tasks`".into());
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    if (major, minor) >= (5, 7) {
        return (true, "cgroup v2: clone3(CLONE_INTO_CGROUP)".into());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let favor = mountinfo
        .lines()
        .any(|l| l.contains(" - cgroup2 ") && l.contains("favordynmods"));
    if favor {
        (true, "v2 hierarchy mounted with favordynmods".into())
    } else {
        (false, "kernel older than 5.7: v2 migrations wait for RCU: `mount -o remount,favordynmods <cgroup2 mount>` or use a warm pool".into())
    }
}

pub fn print(r: &Report) {
    println!("backend: {}   cgroups: {}", r.backend, r.cgroups);
    println!("{:<52} {:<9} {:<9} detail", "probe", "required", "enforced");
    for p in &r.probes {
        println!(
            "{:<52} {:<9} {:<9} {}",
            p.name,
            if p.required { "yes" } else { "no" },
            match (p.enforced, p.required) {
                (true, _) => "yes",
                (false, true) => "NO",
                (false, false) => "no",
            },
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

/// What the `enforced` column of the Markdown table says for a probe whose outcome is the
/// host's business (tests/security_doc.rs accepts either outcome for it).
pub const HOST_DEPENDENT: &str = "depends on host";

/// The table SECURITY.md carries for this backend, between its markers: probe, required,
/// enforced (`yes`/`no`, or [`HOST_DEPENDENT`]). Measured details are left out: they vary from
/// run to run.
pub fn markdown(r: &Report) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut s = format!("<!-- selftest:{} -->\n", r.backend);
    s.push_str("| probe | required | enforced |\n| --- | --- | --- |\n");
    for p in &r.probes {
        let enforced = if p.host_dependent {
            HOST_DEPENDENT
        } else {
            yes_no(p.enforced)
        };
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            p.name,
            yes_no(p.required),
            enforced
        ));
    }
    s.push_str("<!-- selftest:end -->\n");
    s
}

/// The docker backend `isobox run --backend docker` would use (ISOBOX_DOCKER_* and DOCKER_HOST
/// from the environment), with no pool and an instance label of its own, and a description of
/// its engine (version, cgroup version, OCI runtime).
pub fn docker_backend() -> anyhow::Result<(DockerBackend, String)> {
    let mut cfg = isobox_server::config::docker_settings(&isobox_server::config::ProcessEnv)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    cfg.pool = 0;
    cfg.instance = format!("selftest-{}", std::process::id());
    let chosen = cfg.runtime.clone();
    let b = DockerBackend::new(cfg)?;
    let d = b.docker().clone();
    let info = b.wait(async move { d.info().await.ok() }).flatten();
    let engine = match info {
        Some(i) => format!(
            "engine {}, cgroup v{}, runtime {}",
            i.server_version.unwrap_or_default(),
            i.cgroup_version.map(|v| v.to_string()).unwrap_or_default(),
            chosen
                .or(i.default_runtime.map(|r| format!("{r} (engine default)")))
                .unwrap_or_default()
        ),
        None => "engine (no info)".into(),
    };
    Ok((b, engine))
}
