//! A prepared root file system directory instead of the host's /usr.

use crate::common::TempDir;

use isobox_sandbox::{Backend, ExecSpec, Limits, NativeBackend, NativeConfig, RootFs, Status};

#[test]
fn a_prepared_rootfs_replaces_the_host_runtime() {
    let dir = TempDir::new("rootfs");
    let root = dir.0.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), "from the prepared rootfs\n").unwrap();
    // A static program, so the rootfs needs no libraries.
    let src = dir.file(
        "hello.c",
        r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
    FILE *f = fopen("/etc/motd", "r"); char line[64] = {0};
    if (f) fgets(line, sizeof line, f);
    printf("%s", line);
    printf("python3 visible: %s\n", access("/usr/bin/python3", F_OK) == 0 ? "yes" : "no");
    printf("shadow visible: %s\n", access("/etc/shadow", F_OK) == 0 ? "yes" : "no");
    return 0;
}
"#,
    );
    let st = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(root.join("bin/hello"))
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success(), "static build failed");

    let cfg = NativeConfig {
        rootfs: RootFs::Dir(root.clone()),
        ..NativeConfig::default()
    };
    let backend = NativeBackend::new(cfg).expect("backend");
    assert!(backend.resolve_command("/bin/hello").is_some());
    assert!(
        backend.resolve_command("python3").is_none(),
        "the host's /usr must not be used"
    );
    let spec = ExecSpec::single(vec!["/bin/hello".into()], vec![], Limits::default());
    let r = backend.execute(&spec).unwrap();
    let p = &r.phases[0];
    assert_eq!(p.status, Status::Ok, "{p:?}");
    assert_eq!(
        String::from_utf8_lossy(&p.stdout),
        "from the prepared rootfs\npython3 visible: no\nshadow visible: no\n"
    );
    // The rootfs was bound read-only.
    let spec = ExecSpec::single(
        vec!["/bin/hello".into(), "x".into()],
        vec![],
        Limits::default(),
    );
    assert_eq!(backend.execute(&spec).unwrap().phases[0].status, Status::Ok);
    assert!(
        !root.join("tmp").exists() && !root.join("proc").exists(),
        "nothing was created in the rootfs"
    );
}

/// Commands behind symlinks of a prepared root (Debian's alternatives: `/usr/bin/groovy ->
/// /etc/alternatives/groovy -> /usr/share/groovy/bin/groovy`) are found by following the links
/// inside that root, not on the host; links that climb out of the root stay in it.
#[test]
fn commands_behind_absolute_symlinks_resolve_inside_the_root() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = TempDir::new("rootfs-links");
    let root = dir.0.join("root");
    for d in ["usr/bin", "etc/alternatives", "usr/share/tool/bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let real = root.join("usr/share/tool/bin/tool");
    std::fs::write(&real, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink(
        "/usr/share/tool/bin/tool",
        root.join("etc/alternatives/tool"),
    )
    .unwrap();
    symlink("/etc/alternatives/tool", root.join("usr/bin/tool")).unwrap();
    // Absolute and relative links out of the root end at the root's own files (absent here).
    symlink("/../../../../usr/bin/env", root.join("usr/bin/escape")).unwrap();
    symlink(
        "../../../../../../usr/bin/env",
        root.join("usr/bin/escape2"),
    )
    .unwrap();
    symlink("loop", root.join("usr/bin/loop")).unwrap();
    assert!(!std::path::Path::new("/etc/alternatives/tool").exists());

    let backend = NativeBackend::new(NativeConfig {
        rootfs: RootFs::Dir(root.clone()),
        ..NativeConfig::default()
    })
    .expect("backend");
    assert_eq!(
        backend.resolve_command("tool").as_deref(),
        Some("/usr/bin/tool")
    );
    assert!(backend.has_command("tool"));
    assert!(std::path::Path::new("/usr/bin/env").exists());
    for name in ["escape", "escape2", "loop", "absent"] {
        assert!(backend.resolve_command(name).is_none(), "{name}");
    }
}
