//! Static checks of the files in `deploy/` that the docker backend hands to the engine: the
//! AppArmor profile `deploy/apparmor/isobox` keeps its essential denials and never allows the
//! Docker socket, and `deploy/seccomp.json` is a deny-by-default profile for x86_64 and aarch64.
//! (This host has no AppArmor LSM, so the profile is only read here, never loaded; the content
//! of the seccomp profile is checked against the engine's policy in isobox-sandbox.)

use std::path::PathBuf;

fn deploy_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    let path = deploy_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The profile's source without comments, one entry per line, whitespace collapsed.
/// `#include` lines are directives, not comments, and are kept.
fn significant_lines(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = if line.starts_with("#include") {
                line
            } else {
                line.split('#').next().unwrap_or("")
            };
            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
            (!line.is_empty()).then_some(line)
        })
        .collect()
}

/// The body of `profile isobox ... { ... }`: the rules and includes between its braces.
/// Braces inside paths (`/{,**/}docker.sock`) never end a line, so blocks are found by lines
/// that end in `{` and lines that are just `}`.
fn profile_body(src: &str) -> Vec<String> {
    let lines = significant_lines(src);
    let start = lines
        .iter()
        .position(|l| l.starts_with("profile isobox ") && l.ends_with('{'))
        .expect("deploy/apparmor/isobox must declare `profile isobox ... {`");
    let mut depth = 1usize;
    let mut body = Vec::new();
    for l in &lines[start + 1..] {
        if l == "}" {
            depth -= 1;
            if depth == 0 {
                return body;
            }
        } else if l.ends_with('{') {
            depth += 1;
        }
        body.push(l.clone());
    }
    panic!("the `profile isobox` block is not closed by a `}}` line");
}

/// The profile's rules (entries ending in `,`).
fn rules() -> Vec<String> {
    let src = read("apparmor/isobox");
    profile_body(&src)
        .into_iter()
        .filter(|l| l.ends_with(','))
        .collect()
}

fn is_deny(rule: &str) -> bool {
    rule.starts_with("deny ") || rule.starts_with("audit deny ")
}

/// The permission letters of a file rule `[deny] PATH PERMS,`.
fn perms(rule: &str) -> &str {
    rule.trim_end_matches(',')
        .split(' ')
        .next_back()
        .unwrap_or("")
}

#[test]
fn apparmor_profile_is_declared_with_container_flags() {
    let src = read("apparmor/isobox");
    let lines = significant_lines(&src);
    assert!(
        lines.iter().any(|l| l == "#include <tunables/global>"),
        "the profile must include <tunables/global> (it defines @{{PROC}} and friends)"
    );
    let header = lines
        .iter()
        .find(|l| l.starts_with("profile isobox "))
        .expect("deploy/apparmor/isobox must declare `profile isobox`");
    for flag in ["attach_disconnected", "mediate_deleted"] {
        assert!(header.contains(flag), "`{header}` lacks the {flag} flag");
    }
    let body = profile_body(&src);
    assert!(
        body.iter().any(|l| l == "#include <abstractions/base>"),
        "the profile must include <abstractions/base>"
    );
}

#[test]
fn apparmor_profile_denies_mount_ptrace_and_capabilities() {
    let rules = rules();
    for must in [
        "deny mount,",
        "deny umount,",
        "deny pivot_root,",
        "deny ptrace,",
        "deny capability,",
    ] {
        assert!(
            rules.iter().any(|r| r == must),
            "deploy/apparmor/isobox lost `{must}`"
        );
    }
    // Nothing may allow them back for some peer or capability: a deny wins over an allow, but
    // an allow rule here would mean someone meant to loosen the profile.
    for kind in [
        "mount",
        "umount",
        "remount",
        "pivot_root",
        "ptrace",
        "capability",
    ] {
        let allows: Vec<_> = rules
            .iter()
            .filter(|r| !is_deny(r))
            .filter(|r| {
                let r = r.strip_prefix("audit ").unwrap_or(r);
                r.starts_with(&format!("{kind} ")) || r.starts_with(&format!("{kind},"))
            })
            .collect();
        assert!(allows.is_empty(), "allow rules for {kind}: {allows:?}");
    }
}

#[test]
fn apparmor_profile_denies_the_network() {
    let rules = rules();
    for family in ["inet", "inet6", "packet"] {
        let want = format!("deny network {family},");
        assert!(
            rules.contains(&want),
            "deploy/apparmor/isobox lost `{want}`"
        );
    }
    let allows: Vec<_> = rules
        .iter()
        .filter(|r| !is_deny(r))
        .filter(|r| {
            let r = r.strip_prefix("audit ").unwrap_or(r);
            r.starts_with("network ") || r.starts_with("network,")
        })
        .collect();
    assert!(allows.is_empty(), "allow rules for the network: {allows:?}");
}

#[test]
fn apparmor_profile_denies_the_docker_socket_and_never_allows_it() {
    let rules = rules();
    for path in ["/var/run/docker.sock", "/run/docker.sock"] {
        let denied = rules.iter().any(|r| {
            is_deny(r)
                && r.split(' ').any(|w| w == path)
                && perms(r).contains('r')
                && perms(r).contains('w')
        });
        assert!(denied, "deploy/apparmor/isobox must deny `{path} rw`");
    }
    // And wherever someone bind-mounts it.
    assert!(
        rules
            .iter()
            .any(|r| is_deny(r) && r.contains("**/}docker.sock ") && perms(r).contains('w')),
        "deploy/apparmor/isobox must deny docker.sock under any directory"
    );
    let allows: Vec<_> = rules
        .iter()
        .filter(|r| r.contains("docker.sock") || r.contains("containerd"))
        .filter(|r| !is_deny(r))
        .collect();
    assert!(
        allows.is_empty(),
        "the profile must never allow the engine's sockets: {allows:?}"
    );
}

#[test]
fn apparmor_profile_writes_only_to_the_work_dirs_and_plain_devices() {
    // Every allow rule that grants write or append must be on one of these paths; a `/** w`
    // or a bare `file,` would make the whole image writable.
    const WRITABLE: &[&str] = &[
        "/tmp/**",
        "/dev/shm/**",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/tty",
        "/dev/console",
        "/dev/ptmx",
        "/dev/pts/*",
        "/memfd:**",
        "/SYSV**",
    ];
    let rules = rules();
    assert!(
        !rules.iter().any(|r| r == "file," || r == "audit file,"),
        "a bare `file,` rule allows writing everywhere"
    );
    for r in rules.iter().filter(|r| !is_deny(r)) {
        let words: Vec<&str> = r.trim_end_matches(',').split(' ').collect();
        let path = words
            .iter()
            .map(|w| w.trim_matches('"'))
            .find(|w| w.starts_with('/') || w.starts_with("@{"));
        let Some(path) = path else { continue };
        let p = perms(r);
        if p.contains('w') || p.contains('a') {
            assert!(
                WRITABLE.contains(&path),
                "`{r}` makes {path} writable; only {WRITABLE:?} may be"
            );
        }
    }
    // The dangerous kernel interfaces stay shut.
    for must in [
        "deny @{PROC}/sysrq-trigger rwklx,",
        "deny @{PROC}/kcore rwklx,",
        "deny /sys/firmware/** rwklx,",
        "deny /sys/kernel/security/** rwklx,",
    ] {
        assert!(
            rules.iter().any(|r| r == must),
            "deploy/apparmor/isobox lost `{must}`"
        );
    }
    assert!(
        rules
            .iter()
            .any(|r| is_deny(r) && r.starts_with("deny @{PROC}/sys/** ") && perms(r).contains('w')),
        "deploy/apparmor/isobox must deny writes to @{{PROC}}/sys/**"
    );
}

#[test]
fn seccomp_profile_is_deny_by_default_for_x86_64_and_aarch64() {
    let src = read("seccomp.json");
    let v: serde_json::Value =
        serde_json::from_str(&src).unwrap_or_else(|e| panic!("deploy/seccomp.json: {e}"));
    assert_eq!(
        v["defaultAction"], "SCMP_ACT_ERRNO",
        "deploy/seccomp.json must refuse every syscall it does not list"
    );
    // An archMap (Docker puts the host's entry alone in the filter), not an `architectures`
    // list: Docker refuses a profile with both.
    assert!(
        v.get("architectures").is_none(),
        "deploy/seccomp.json must not have both `architectures` and `archMap`"
    );
    let arches: Vec<&serde_json::Value> = v["archMap"]
        .as_array()
        .expect("deploy/seccomp.json needs an `archMap` array")
        .iter()
        .map(|a| &a["architecture"])
        .collect();
    for arch in ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"] {
        assert!(
            arches.iter().any(|a| *a == arch),
            "deploy/seccomp.json must map {arch}, has {arches:?}"
        );
    }
    assert!(
        v["syscalls"].as_array().is_some_and(|s| !s.is_empty()),
        "deploy/seccomp.json allows no syscalls at all"
    );
}
