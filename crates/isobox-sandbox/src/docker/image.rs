//! The docker backend's runtime image, built locally without a registry.
//!
//! `isobox image build` streams a tar of a root file system (the host's toolchains by default,
//! or a prepared tree such as a debootstrap directory) into the engine's import endpoint (what
//! `docker import` does), with a generated `/etc` (only the entries the native sandbox also
//! exposes, never `shadow` or keys; passwd/group naming the run uids), the runner at
//! [`RUNNER_PATH`], and a label with the runner protocol. The backend refuses to start
//! without that image, or with one built for another protocol, and says how to build it.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;

use super::config::{default_image, runner_command, PROTOCOL_LABEL, RUNNER_LIBS, RUNNER_PATH};
use super::hardening::UID_RANGE;
use super::protocol::PROTOCOL;
use crate::SandboxError;

/// What goes into the image.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    /// `repo:tag`.
    pub tag: String,
    /// Root of the tree to import (`/` for the host's toolchains).
    pub from: PathBuf,
    /// The `isobox-runner` binary to put at [`RUNNER_PATH`].
    pub runner: PathBuf,
    /// Paths below `from` left out (relative, e.g. `usr/share/doc`).
    pub exclude: Vec<String>,
    /// `from` is a root of our own (a runtime): the image holds all of it, as the native
    /// backend binds all of it (but [`crate::native::NOT_FROM_ROOT`] and the generated identity
    /// files of /etc), not only the toolchain directories and the /etc entries a host root may
    /// show.
    pub whole_root: bool,
}

/// What decides an image's content besides its tree and runner: bumped when the build puts
/// other things into images, so that images named by tree and runner are built again.
pub const LAYOUT: u32 = 2;

/// The /etc files every image gets from the build, never from the tree.
const GENERATED_ETC: [&str; 5] = ["passwd", "group", "hosts", "hostname", "nsswitch.conf"];

/// Paths of a host root that no sandbox needs: documentation, locales, debug symbols, and
/// large SDKs of the build machine. Operators add their own with `--exclude`.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/help",
    "usr/lib/debug",
    "usr/src",
    "usr/local",
    "usr/lib/google-cloud-sdk",
    "usr/lib/postgresql",
    "usr/share/postgresql",
    // The test suite's browser (the playground test): no language needs it.
    "usr/lib/chromium",
];

impl ImageBuild {
    pub fn new(runner: PathBuf) -> ImageBuild {
        ImageBuild {
            tag: default_image(),
            from: PathBuf::from("/"),
            runner,
            exclude: DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect(),
            whole_root: false,
        }
    }
}

/// Checks that `image` exists and was built for this runner protocol.
pub async fn check(docker: &Docker, image: &str) -> Result<(), SandboxError> {
    let how = "build it with `isobox image build` (no registry needed)";
    let info = match docker.inspect_image(image).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(SandboxError::Unsupported(format!(
                "the docker backend's image `{image}` is not on this engine: {how}"
            )))
        }
        Err(e) => {
            return Err(SandboxError::Unsupported(format!(
                "cannot inspect the image `{image}`: {e}"
            )))
        }
    };
    let proto = info
        .config
        .and_then(|c| c.labels)
        .and_then(|l| l.get(PROTOCOL_LABEL).cloned());
    if proto.as_deref() != Some(&PROTOCOL.to_string()) {
        return Err(SandboxError::Unsupported(format!(
            "the image `{image}` was not built by this version of IsoBox (runner protocol {}, \
             expected {PROTOCOL}): {how}",
            proto.unwrap_or_else(|| "none".into())
        )));
    }
    Ok(())
}

/// A scratch directory removed on drop.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The generated part of the image: /etc's identity files, the runner, mount points.
fn stage(b: &ImageBuild) -> Result<Staging, String> {
    // One per build: a process may build several images at once (`runtime build --docker -j`).
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("isobox-image-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let st = Staging(dir.clone());
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    for d in ["etc", "isobox", "tmp", "proc", "dev", "sys"] {
        fs::create_dir_all(dir.join(d)).map_err(|e| err(d, e))?;
        fs::set_permissions(dir.join(d), fs::Permissions::from_mode(0o755))
            .map_err(|e| err(d, e))?;
    }
    let mut passwd = String::from(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    );
    let mut group = String::from("root:x:0:\nnogroup:x:65534:\n");
    for uid in UID_RANGE {
        passwd.push_str(&format!("sandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n"));
        group.push_str(&format!("sandbox{uid}:x:{uid}:\n"));
    }
    let files = [
        ("etc/passwd", passwd),
        ("etc/group", group),
        (
            "etc/hosts",
            "127.0.0.1 localhost isobox\n::1 localhost\n".into(),
        ),
        ("etc/hostname", "isobox\n".into()),
        (
            "etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\n".into(),
        ),
    ];
    for (name, content) in files {
        fs::write(dir.join(name), content).map_err(|e| err(name, e))?;
    }
    let runner = dir.join(RUNNER_PATH.trim_start_matches('/'));
    fs::copy(&b.runner, &runner).map_err(|e| err(&format!("runner {}", b.runner.display()), e))?;
    fs::set_permissions(&runner, fs::Permissions::from_mode(0o755))
        .map_err(|e| err("runner", e))?;
    stage_runner_libs(&b.runner, &dir.join(RUNNER_LIBS.trim_start_matches('/')))?;
    Ok(st)
}

/// Copies the runner's dynamic loader (as `ld.so`) and the libraries it links (`ldd`) into
/// `into`: the runner then starts with them in any root ([`runner_command`]).
fn stage_runner_libs(runner: &Path, into: &Path) -> Result<(), String> {
    let out = Command::new("ldd")
        .arg(runner)
        .output()
        .map_err(|e| format!("ldd {}: {e}", runner.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "ldd {}: {}{}",
            runner.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    fs::create_dir_all(into).map_err(|e| format!("{}: {e}", into.display()))?;
    let mut loader = false;
    for line in text.lines() {
        let line = line.trim();
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, or the loader alone:
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1 (0x...)` is the kernel's.
        let (name, path) = match line.split_once(" => ") {
            Some((n, rest)) => (Some(n), rest),
            None => (None, line),
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if !path.starts_with('/') {
            continue;
        }
        let dst = match name {
            Some(n) => into.join(n),
            None => {
                loader = true;
                into.join("ld.so")
            }
        };
        fs::copy(path, &dst).map_err(|e| format!("{path}: {e}"))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", dst.display()))?;
    }
    if !loader {
        return Err(format!(
            "ldd {} names no dynamic loader: {}",
            runner.display(),
            text.trim()
        ));
    }
    Ok(())
}

/// The `tar` command line that writes the image's file system to stdout.
fn tar_command(b: &ImageBuild, staging: &Path) -> Command {
    let mut cmd = Command::new("tar");
    // No setuid or setgid file in the image at all (no_new_privs already makes the bits
    // inert; without them there is nothing to get wrong).
    cmd.arg("--create")
        .arg("--numeric-owner")
        .arg("--mode=u-s,g-s")
        .arg("--anchored");
    for x in &b.exclude {
        cmd.arg(format!("--exclude={}", x.trim_start_matches('/')));
    }
    cmd.arg("-C").arg(&b.from);
    if b.whole_root {
        let names = |dir: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        for top in names(&b.from) {
            if top != "etc" && !crate::native::NOT_FROM_ROOT.contains(&top.as_str()) {
                cmd.arg(top);
            }
        }
        for name in names(&b.from.join("etc")) {
            if !GENERATED_ETC.contains(&name.as_str()) {
                cmd.arg(format!("etc/{name}"));
            }
        }
    } else {
        for top in ["usr", "bin", "lib", "lib64", "lib32", "libx32", "sbin"] {
            if fs::symlink_metadata(b.from.join(top)).is_ok() {
                cmd.arg(top);
            }
        }
        for name in crate::native::DEFAULT_ETC {
            if fs::symlink_metadata(b.from.join("etc").join(name)).is_ok() {
                cmd.arg(format!("etc/{name}"));
            }
        }
    }
    cmd.arg("-C").arg(staging);
    for e in [
        "etc/passwd",
        "etc/group",
        "etc/hosts",
        "etc/hostname",
        "etc/nsswitch.conf",
        "isobox",
        "tmp",
        "proc",
        "dev",
        "sys",
    ] {
        cmd.arg(e);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Builds and tags the image; returns its id. `progress` gets a line now and then.
pub async fn build(
    docker: &Docker,
    b: &ImageBuild,
    progress: impl Fn(&str),
) -> Result<String, SandboxError> {
    let fail = |m: String| SandboxError::Setup(format!("image build: {m}"));
    if !b.runner.is_file() {
        return Err(fail(format!(
            "the runner binary {} does not exist (build it with `cargo build`: it is the \
             `isobox-runner` binary next to `isobox`)",
            b.runner.display()
        )));
    }
    // The image this tag names now: replaced by the new one, it is removed afterwards (else
    // every rebuild would leave gigabytes of untagged layers behind).
    let previous = docker.inspect_image(&b.tag).await.ok().and_then(|i| i.id);
    let staging = stage(b).map_err(fail)?;
    let (repo, tag) = b.tag.rsplit_once(':').unwrap_or((&b.tag, "latest"));
    let mut child = tar_command(b, &staging.0)
        .spawn()
        .map_err(|e| fail(format!("cannot run tar: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // tar's output, 1 MiB at a time, from a thread into the request body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let reader = std::thread::spawn(move || {
        let mut total: u64 = 0;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    total += n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
        total
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let changes = vec![
        format!("LABEL {PROTOCOL_LABEL}={PROTOCOL}"),
        format!(
            "CMD [{}]",
            runner_command(&[])
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!("ENV PATH={}", crate::spec::SANDBOX_PATH),
        format!("USER {}:{}", UID_RANGE.start, UID_RANGE.start),
        "WORKDIR /tmp".to_string(),
    ];
    let mut opts = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .message("isobox image build")
        .build();
    opts.changes = changes;
    let mut stream = docker.create_image(Some(opts), Some(bollard::body_try_stream(body)), None);
    let mut id = None;
    let mut result = Ok(());
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(s) = info.status {
                    let s = s.trim();
                    if s.starts_with("sha256:") {
                        id = Some(s.to_string());
                    }
                    progress(s);
                }
            }
            Err(e) => {
                result = Err(fail(format!("the engine refused the import: {e}")));
                break;
            }
        }
    }
    drop(stream);
    let bytes = reader.join().unwrap_or(0);
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    let tar_err = err_thread.join().unwrap_or_default();
    result?;
    if !status.success() {
        // GNU tar exits 1 when a file changed while it was read: the image is still whole.
        if status.code() != Some(1) {
            return Err(fail(format!("tar failed ({status}): {}", tar_err.trim())));
        }
    }
    progress(&format!("imported {} MiB", bytes >> 20));
    check(docker, &b.tag).await?;
    let now = docker.inspect_image(&b.tag).await.ok().and_then(|i| i.id);
    if let (Some(old), true) = (previous, now.is_some()) {
        if Some(&old) != now.as_ref() {
            // Still used by a container: the engine refuses, and that is fine.
            if docker
                .remove_image(
                    &old,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await
                .is_ok()
            {
                progress(&format!("removed the image it replaces ({old})"));
            }
        }
    }
    Ok(id.unwrap_or_else(|| b.tag.clone()))
}

/// Removes the images of repository `repo` tagged otherwise than `keep` (a runtime's images of
/// an older runner or layout); an image a container still uses stays. Returns how many went.
pub async fn remove_other_tags(docker: &Docker, repo: &str, keep: &str) -> usize {
    let filters = std::collections::HashMap::from([("reference", vec![repo])]);
    let Ok(images) = docker
        .list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
    else {
        return 0;
    };
    let mut removed = 0;
    for tag in images.iter().flat_map(|i| i.repo_tags.iter()) {
        if tag != keep
            && tag.split_once(':').map(|(r, _)| r) == Some(repo)
            && docker
                .remove_image(
                    tag,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await
                .is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_keeps_secrets_and_excluded_trees_out() {
        let b = ImageBuild::new(PathBuf::from("/bin/true"));
        let cmd = tar_command(&b, Path::new("/stage"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--exclude=usr/share/doc".to_string()));
        assert!(args.contains(&"usr".to_string()));
        assert!(args.contains(&"--mode=u-s,g-s".to_string()));
        assert!(args.contains(&"etc/passwd".to_string()));
        for bad in ["etc/shadow", "etc", "root", "home", "etc/ssh", "var", "run"] {
            assert!(
                !args.contains(&bad.to_string()),
                "{bad} must not be imported"
            );
        }
    }
}
