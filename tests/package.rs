//! The Debian package (`cargo deb`, `[package.metadata.deb]` in Cargo.toml, files in
//! `packaging/deb/`).
//!
//! - Static checks, always run: the shipped environment file is accepted by the real
//!   `isobox check-config` and is safe (loopback, API keys from the keys file); the unit keeps
//!   its capability bounding set and hardening; the package metadata lists the binaries, the
//!   unit and the conffile.
//! - `the_package_installs_and_serves_an_authenticated_run_under_systemd`: builds the .deb with
//!   cargo-deb from the binaries of this test build (the same metadata, unit and maintainer
//!   scripts scripts/release uses; the release binaries differ only in optimisation and static
//!   linking), makes a clean Debian bookworm image with systemd (mmdebstrap, `docker import`;
//!   cached under a tag that is a hash of its recipe), boots systemd in a container on the real
//!   Docker engine, `dpkg -i`s the package (its postinst generates the first API key, enables
//!   and starts isobox.service), and through the API on 127.0.0.1:8000 runs a program with the
//!   generated key: the output comes back, a request without the key is refused, the service
//!   runs with exactly the unit's capability bounding set and no_new_privs, listens on loopback
//!   only, and `dpkg --purge` stops it and removes what the package made.
//!
//! The container stands in for a host: systemd is its PID 1 and manages its cgroups and mounts,
//! and the native sandbox inside the unit creates namespaces, mounts and cgroups, which Docker's
//! defaults forbid. So it gets every capability (`--cap-add ALL`; `--privileged` is not used
//! because an engine whose own bounding set lacks a capability cannot start privileged
//! containers at all: this machine's lacks CAP_SYS_RESOURCE, dropped here too), no seccomp or
//! AppArmor profile and an unmasked /proc (the sandbox mounts its own procfs, which the kernel
//! refuses while parts of /proc are masked), a private cgroup namespace, and its cgroup
//! hierarchies remounted read-write before systemd starts (Docker mounts them read-only unless
//! privileged). The restrictions under test are the unit's own: systemd applies them inside.
//!
//! The test skips with a message when docker, cargo-deb or mmdebstrap is missing, except under
//! CI (`CI` set), where it fails instead: scripts/test installs all three.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{sha256_hex, TempDir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// `KEY=VALUE` lines of an environment file as systemd reads them (comments and blank lines
/// skipped).
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: `{l}`"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// The `[Service]` (or another section's) directives of a unit file, every value of each.
fn unit_section(text: &str, section: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.to_string();
            continue;
        }
        if current == section {
            let (k, v) = line.split_once('=').expect("KEY=VALUE in the unit");
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

/// The capabilities the unit grants (its bounding set), and what each is for: see the unit.
const UNIT_CAPS: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
];

/// Capability numbers (linux/capability.h) of those names.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_SETPCAP" => 8,
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_CHROOT" => 18,
        "CAP_SYS_PTRACE" => 19,
        "CAP_SYS_ADMIN" => 21,
        other => panic!("no number for {other}"),
    }
}

#[test]
fn the_shipped_environment_file_is_safe_and_accepted_by_check_config() {
    let env = env_file(&read("packaging/deb/isobox.env"));
    let bind: std::net::IpAddr = env
        .get("ISOBOX_BIND")
        .expect("isobox.env must set ISOBOX_BIND explicitly")
        .parse()
        .expect("ISOBOX_BIND is an address");
    assert!(
        bind.is_loopback(),
        "the package must listen on loopback as shipped, not {bind}"
    );
    let auth = env.get("AUTH_TYPE").map(String::as_str).unwrap_or("none");
    assert_eq!(
        auth, "apikey",
        "the package must require API keys as shipped"
    );
    assert_eq!(
        env.get("ISOBOX_API_KEYS_FILE").map(String::as_str),
        Some("/etc/isobox/api-keys.toml"),
        "the keys file the postinst writes"
    );
    assert!(
        !env.contains_key("API_KEYS"),
        "isobox.env is world-readable: no key in it"
    );
    // The postinst writes that file; check-config must accept the settings with such a file.
    let dir = TempDir::new("pkg-env");
    let keys = dir.file(
        "api-keys.toml",
        &crate::common::api_keys_toml(&[("initial", "k", &["user"])]),
    );
    let mut vars = env.clone();
    vars.insert("ISOBOX_API_KEYS_FILE".into(), keys.display().to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_isobox"))
        .arg("check-config")
        .env_clear()
        .envs(&vars)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-config refuses isobox.env: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for var in env.keys() {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([var.as_str(), "env"])),
            "check-config does not list {var} as read from the environment:\n{stdout}"
        );
    }
    // The postinst's key format is the one the server reads: 64 hex digits of SHA-256.
    let postinst = read("packaging/deb/postinst");
    assert!(postinst.contains("sha256sum") && postinst.contains("ISOBOX_API_KEYS_FILE"));
    // cargo-deb replaces every `#DEBHELPER#` with the unit's scripts: exactly one, on a line of
    // its own (one in a comment would put the scripts inside the comment).
    for script in ["postinst", "postrm"] {
        let text = read(&format!("packaging/deb/{script}"));
        assert_eq!(
            text.matches("#DEBHELPER#").count(),
            1,
            "{script}: one #DEBHELPER#"
        );
        assert!(
            text.lines().any(|l| l == "#DEBHELPER#"),
            "{script}: #DEBHELPER# on its own line"
        );
    }
}

#[test]
fn the_unit_keeps_its_capabilities_and_hardening() {
    let unit = read("packaging/deb/isobox.service");
    let svc = unit_section(&unit, "Service");
    let one = |k: &str| -> &str {
        let v = svc
            .get(k)
            .unwrap_or_else(|| panic!("isobox.service lacks {k}="));
        v.last().unwrap()
    };
    assert_eq!(one("ExecStart"), "/usr/bin/isobox serve");
    assert_eq!(
        svc["EnvironmentFile"],
        ["/etc/isobox/isobox.env", "-/etc/isobox/secrets.env"]
    );
    assert_eq!(one("StateDirectory"), "isobox");
    assert_eq!(one("RuntimeDirectory"), "isobox");
    let caps: Vec<&str> = one("CapabilityBoundingSet").split_whitespace().collect();
    assert_eq!(
        caps, UNIT_CAPS,
        "the bounding set changed: update UNIT_CAPS and the unit's notes"
    );
    // What the server itself insists on before it builds a sandbox (native/mod.rs,
    // check_privileges) must be in the set, or the service refuses to start.
    for needed in [
        "CAP_SYS_ADMIN",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SYS_CHROOT",
    ] {
        assert!(caps.contains(&needed), "{needed} is missing");
    }
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("SystemCallArchitectures", "native"),
        ("ProtectClock", "yes"),
        ("PrivateIPC", "yes"),
        ("RestrictNamespaces", "user pid mnt net ipc uts cgroup"),
        ("KillMode", "mixed"),
    ] {
        assert_eq!(one(k), v, "isobox.service: {k}");
    }
    // Settings that break the sandbox (see the unit's notes) stay out.
    for k in [
        "ProtectControlGroups",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectHostname",
        "MemoryDenyWriteExecute",
        "SystemCallFilter",
        "PrivateDevices",
        "ProcSubset",
        "PrivateUsers",
        "DynamicUser",
        "User",
    ] {
        assert!(
            !svc.contains_key(k),
            "isobox.service sets {k}, which breaks the sandbox"
        );
    }
    // Stopping waits longer than the server's default shutdown grace (10 s).
    let stop: u64 = one("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > 10,
        "TimeoutStopSec {stop} <= ISOBOX_SHUTDOWN_GRACE_MS default"
    );
    assert_eq!(
        unit_section(&unit, "Install")["WantedBy"],
        ["multi-user.target"]
    );
}

#[test]
fn the_package_metadata_ships_binaries_unit_and_conffile() {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (src, dst) in [
        ("target/release/isobox", "usr/bin/"),
        ("target/release/isobox-runner", "usr/bin/"),
        ("packaging/deb/isobox.env", "etc/isobox/isobox.env"),
    ] {
        assert!(
            assets.iter().any(|(s, d)| s == src && d == dst),
            "Cargo.toml [package.metadata.deb] assets lack {src} -> {dst}"
        );
    }
    for (src, _) in assets.iter().filter(|(s, _)| !s.starts_with("target/")) {
        assert!(repo().join(src).is_file(), "asset {src} does not exist");
    }
    let units = &deb["systemd-units"];
    assert_eq!(units["unit-name"].as_str(), Some("isobox"));
    assert_eq!(deb["maintainer-scripts"].as_str(), Some("packaging/deb/"));
    assert!(repo().join("packaging/deb/isobox.service").is_file());
}

// ---------------------------------------------------------------------------------------------
// The package in a container

/// The base image's recipe: what mmdebstrap puts in it. Its hash is the image's tag, so a change
/// here builds a new image and an unchanged recipe reuses the one built before.
const SUITE: &str = "bookworm";
const BASE_PACKAGES: &str = "systemd,systemd-sysv,curl";
const IMAGE_REPO: &str = "isobox-pkgtest";

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Missing tools: skip with a message, except under CI, where the test must run.
fn prerequisites() -> bool {
    let mut missing = Vec::new();
    if !have("docker", &["info"]) {
        missing.push("a running Docker engine (docker info)");
    }
    if !have("cargo", &["deb", "--version"]) {
        missing.push("cargo-deb (cargo install cargo-deb --locked)");
    }
    if !have("mmdebstrap", &["--version"]) {
        missing.push("mmdebstrap (apt-get install mmdebstrap)");
    }
    if !have("dpkg-shlibdeps", &["--version"]) {
        missing.push("dpkg-shlibdeps (apt-get install dpkg-dev)");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "package test needs {}; scripts/test installs them",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The .deb from this build's binaries, made by cargo-deb with the package's real metadata.
/// cargo-deb takes `target/release/<bin>` from the target directory it is told (and strips it);
/// the test's binaries are put where it looks, in a target directory of our own. `--fast`:
/// lighter compression (scripts/release compresses fully).
fn build_deb(work: &Path) -> PathBuf {
    let target = work.join("target");
    let release = target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    for (name, bin) in [
        ("isobox", env!("CARGO_BIN_EXE_isobox")),
        ("isobox-runner", env!("CARGO_BIN_EXE_isobox-runner")),
    ] {
        // A link where the file system allows it: the debug binaries are large.
        if std::fs::hard_link(bin, release.join(name)).is_err() {
            std::fs::copy(bin, release.join(name)).unwrap();
        }
    }
    let deb = work.join("isobox.deb");
    run(Command::new("cargo")
        .args(["deb", "--no-build", "--locked", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo()));
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    let info = text(&info);
    assert!(info.contains("Package: isobox"), "{info}");
    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in [
        "./usr/bin/isobox",
        "./usr/bin/isobox-runner",
        "./usr/lib/systemd/system/isobox.service",
        "./etc/isobox/isobox.env",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{contents}"
        );
    }
    let conffiles = text(&run(Command::new("dpkg-deb")
        .args(["--info"])
        .arg(&deb)
        .arg("conffiles")));
    assert_eq!(conffiles, "/etc/isobox/isobox.env", "the conffiles");
    deb
}

/// A bookworm root with systemd and curl, imported as an image; built once per recipe.
fn base_image() -> String {
    let recipe = format!(
        "mmdebstrap --variant=minbase --include={BASE_PACKAGES} {SUITE} | docker import \
         -c 'CMD [\"/lib/systemd/systemd\"]'; v1"
    );
    let tag = format!("{IMAGE_REPO}:{}", &sha256_hex(&recipe)[..16]);
    if have("docker", &["image", "inspect", &tag]) {
        return tag;
    }
    // Older recipes' images go: they are never used again.
    let old = text(&run(Command::new("docker").args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        IMAGE_REPO,
    ])));
    for img in old.lines().filter(|l| !l.is_empty()) {
        let _ = Command::new("docker").args(["rmi", "-f", img]).output();
    }
    let start = Instant::now();
    run(Command::new("bash").arg("-c").arg(format!(
        "set -euo pipefail; mmdebstrap --quiet --variant=minbase --include={BASE_PACKAGES} \
         {SUITE} - | docker import -c 'CMD [\"/lib/systemd/systemd\"]' - {tag}"
    )));
    eprintln!("built {tag} in {:.0?}", start.elapsed());
    tag
}

/// A container that is removed however the test ends.
struct Container(String);

impl Container {
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["exec", &self.0])
            .args(args)
            .output()
            .expect("docker exec")
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{args:?} in the container failed ({}):\n{}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal()
        );
        text(&out)
    }
    fn journal(&self) -> String {
        text(&self.exec(&[
            "journalctl",
            "--no-pager",
            "-n",
            "60",
            "-u",
            "isobox.service",
        ]))
    }
    fn wait(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < limit,
                "{what}: not after {limit:?}\n{}",
                self.journal()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.0])
            .output();
    }
}

/// `curl` inside the container against the service: (HTTP status, body).
fn api(c: &Container, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let mut args = vec![
        "curl",
        "-sS",
        "-o",
        "/dev/stderr",
        "-w",
        "%{http_code}",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
    ];
    let header;
    if let Some(k) = key {
        header = format!("X-API-Key: {k}");
        args.extend(["-H", &header]);
    }
    args.push("http://127.0.0.1:8000/api/v1/execute");
    let out = c.exec(&args);
    let status: u16 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let body = serde_json::from_slice(&out.stderr).unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// The capability bit mask of the names.
fn mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| 1u64 << cap_number(n))
        .fold(0, |a, b| a | b)
}

#[test]
fn the_package_installs_and_serves_an_authenticated_run_under_systemd() {
    if !prerequisites() {
        return;
    }
    let started = Instant::now();
    let work = TempDir::new("pkg");
    let deb = build_deb(&work.0);
    let size = std::fs::metadata(&deb).unwrap().len();
    eprintln!(
        "package: {} bytes, built in {:.0?}",
        size,
        started.elapsed()
    );
    let image = base_image();

    let name = format!("isobox-pkgtest-{}", std::process::id());
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    // A host for systemd and the sandbox (see the module's notes); /run and /run/lock are
    // tmpfs as systemd expects.
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &name,
        "--cap-add",
        "ALL",
        "--cap-drop",
        "SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--security-opt",
        "systempaths=unconfined",
        "--cgroupns=private",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--tmpfs",
        "/tmp",
        &image,
        "/bin/sh",
        "-c",
        "for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw \"$d\" 2>/dev/null; done; \
         exec /lib/systemd/systemd",
    ]));
    let c = Container(name.clone());
    c.wait("systemd running", Duration::from_secs(60), || {
        let s = text(&c.exec(&["systemctl", "is-system-running"]));
        s == "running" || s == "degraded"
    });
    run(Command::new("docker")
        .arg("cp")
        .arg(&deb)
        .arg(format!("{name}:/var/tmp/isobox.deb")));
    let install = c.ok(&["dpkg", "-i", "/var/tmp/isobox.deb"]);
    eprintln!("{install}");

    // The postinst made the first key and the keys file; the unit is enabled and started.
    let key = c.ok(&["cat", "/etc/isobox/api-key"]);
    assert_eq!(key.len(), 64, "a 32-byte hex key: `{key}`");
    let perms = c.ok(&[
        "stat",
        "-c",
        "%a %U",
        "/etc/isobox/api-key",
        "/etc/isobox/api-keys.toml",
    ]);
    assert_eq!(perms, "600 root\n640 root", "key file modes");
    let keys = c.ok(&["cat", "/etc/isobox/api-keys.toml"]);
    assert!(
        keys.contains(&sha256_hex(&key)),
        "the keys file holds the key's digest:\n{keys}"
    );
    assert!(
        !keys.contains(&key),
        "the keys file must not hold the key itself"
    );
    assert_eq!(c.ok(&["systemctl", "is-enabled", "isobox"]), "enabled");
    c.wait("isobox.service answering", Duration::from_secs(60), || {
        c.exec(&[
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "http://127.0.0.1:8000/health",
        ])
        .status
        .success()
    });
    assert_eq!(c.ok(&["systemctl", "is-active", "isobox"]), "active");

    // Without the key: refused.
    let (status, _) = api(&c, None, r#"{"language":"bash","code":"echo no"}"#);
    assert_eq!(status, 401, "a request without a key");
    let (status, _) = api(&c, Some("0000"), r#"{"language":"bash","code":"echo no"}"#);
    assert_eq!(status, 401, "a request with a wrong key");

    // With it: the program runs in the sandbox, as a sandbox uid, and its output comes back.
    let (status, r) = api(
        &c,
        Some(&key),
        r#"{"language":"bash","code":"read x; echo \"hello $x $(( 6 * 7 ))\"; id -u","stdin":"deb\n"}"#,
    );
    assert_eq!(status, 200, "{r}\n{}", c.journal());
    assert_eq!(r["status"], "ok", "{r}");
    let stdout = r["stdout"].as_str().unwrap_or_default();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("hello deb 42"), "{r}");
    let uid: u32 = lines.next().and_then(|u| u.parse().ok()).unwrap_or(0);
    assert!(
        uid >= 60000,
        "the program ran as uid {uid}, not a sandbox uid: {r}"
    );

    // A run that returns a file (the server opens the sandbox's /tmp through /proc: the
    // unit's CAP_SYS_PTRACE).
    let (status, r) = api(
        &c,
        Some(&key),
        r#"{"language":"bash","code":"echo from-file > out.txt","outputs":["out.txt"]}"#,
    );
    assert_eq!(status, 200, "{r}\n{}", c.journal());
    assert_eq!(r["status"], "ok", "{r}");
    let file = &r["files"][0];
    assert_eq!(file["name"], "out.txt", "{r}");
    let content = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        file["content"].as_str().unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(content, b"from-file\n", "{r}");

    // The run's cgroup works under the unit: a memory limit is enforced.
    let (status, r) = api(
        &c,
        Some(&key),
        r#"{"language":"bash","code":"x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}","limits":{"memory_mb":64,"timeout_ms":10000}}"#,
    );
    assert_eq!(status, 200, "{r}\n{}", c.journal());
    assert_eq!(r["status"], "memory_limit", "{r}");

    // The service runs with the unit's restrictions: exactly its bounding set, no_new_privs,
    // and it listens on the loopback address only.
    let pid = c.ok(&["systemctl", "show", "-p", "MainPID", "--value", "isobox"]);
    let status = c.ok(&["cat", &format!("/proc/{pid}/status")]);
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {k} in /proc/{pid}/status"))
            .to_string()
    };
    let bnd = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
    assert_eq!(bnd, mask(UNIT_CAPS), "CapBnd of the service: {bnd:x}");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Uid:").split_whitespace().next(), Some("0"));
    let tcp = c.ok(&[
        "cat",
        &format!("/proc/{pid}/net/tcp"),
        &format!("/proc/{pid}/net/tcp6"),
    ]);
    let listening: Vec<&str> = tcp
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"0A")).then(|| f[1])
        })
        .collect();
    for port in ["1F40", "2328"] {
        assert!(
            listening.contains(&format!("0100007F:{port}").as_str()),
            "not listening on 127.0.0.1:{port}: {listening:?}"
        );
    }
    assert!(
        listening.iter().all(|a| a.starts_with("0100007F:")),
        "listening beyond loopback: {listening:?}"
    );
    // The state directories systemd made for it.
    c.ok(&["test", "-d", "/var/lib/isobox"]);
    c.ok(&["test", "-d", "/run/isobox/uids"]);

    // Purge: the service stops, the key and the state go.
    c.ok(&["dpkg", "--purge", "isobox"]);
    assert!(!c
        .exec(&["systemctl", "is-active", "isobox"])
        .status
        .success());
    assert!(
        !c.exec(&["test", "-e", "/etc/isobox"]).status.success(),
        "/etc/isobox left"
    );
    assert!(
        !c.exec(&["test", "-e", "/var/lib/isobox"]).status.success(),
        "/var/lib/isobox left"
    );
    eprintln!("package test: {:.0?} in all", started.elapsed());
}
