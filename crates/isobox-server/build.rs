//! Compiles `proto/isobox.proto` without a system `protoc` (protox parses it in Rust), generates
//! the tonic client and server, and writes the encoded file descriptor set for server
//! reflection (`OUT_DIR/isobox_descriptor.bin`). Also sets `ISOBOX_GIT_COMMIT` for
//! `isobox_build_info`: the variable of that name if the build has it (a container build
//! without `.git`: `--build-arg ISOBOX_GIT_COMMIT=...`), else the commit `git` reports, else
//! empty.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    git_commit();
    let fds = protox::compile(["../../proto/isobox.proto"], ["../../proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("isobox_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// `git <args>` in this crate's directory: its trimmed stdout when it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn git_commit() {
    println!("cargo:rerun-if-env-changed=ISOBOX_GIT_COMMIT");
    let commit = std::env::var("ISOBOX_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_default();
    // Only printable label-safe characters reach the metric.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    println!("cargo:rustc-env=ISOBOX_GIT_COMMIT={commit}");
    // Built again when HEAD moves: HEAD itself, the branch it names, packed refs. Only files
    // that exist (a missing one would rerun this script on every build).
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for w in watch {
        if let Some(p) = git(&["rev-parse", "--git-path", &w]) {
            if std::path::Path::new(&p).is_file() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
}
