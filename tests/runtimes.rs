//! `isobox runtime build|list|verify|remove|export|import` with the real mmdebstrap and the real
//! Debian mirror (scripts/test installs mmdebstrap).
//!
//! One small runtime (`python3-minimal` from trixie: Python 3.13, not the host's bookworm 3.11)
//! is built into a shared directory, `/var/cache/isobox-test-runtimes` (or
//! `ISOBOX_TEST_RUNTIMES_DIR`), by whichever test comes first: the CLI locks the name, so the
//! others wait and then find it built (the build cache), within this run and across CI runs.
//! Tests that change a runtime work on an imported copy in a directory of their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{isobox_bin, token, TempDir, TestServer};

const NAME: &str = "py-test-trixie";
const UNBUILT: &str = "py-test-never-built";

const TABLE: &str = r#"
[[runtime]]
name = "py-test-trixie"
suite = "trixie"
packages = ["python3-minimal"]
languages = ["python"]

[[runtime]]
name = "py-test-never-built"
suite = "bookworm"
packages = ["python3-minimal"]
languages = ["python"]
"#;

fn isobox(args: &[&str]) -> Output {
    Command::new(isobox_bin())
        .args(args)
        .env_remove("ISOBOX_RUNTIMES_DIR")
        .output()
        .expect("run isobox")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str]) -> Output {
    let o = isobox(args);
    assert!(o.status.success(), "isobox {args:?}: {}", text(&o));
    o
}

fn refused(args: &[&str], why: &str) -> String {
    let o = isobox(args);
    let t = text(&o);
    assert!(!o.status.success(), "isobox {args:?} should fail: {t}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(why),
        "isobox {args:?}: expected `{why}` in: {t}"
    );
    t
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The test table in `dir`.
fn table(dir: &TempDir) -> PathBuf {
    dir.file("runtimes.toml", TABLE)
}

/// The shared runtimes directory, with NAME built (by this call or an earlier one).
fn shared() -> PathBuf {
    let dir = std::env::var_os("ISOBOX_TEST_RUNTIMES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/isobox-test-runtimes"));
    let t = TempDir::new("rt-table");
    ok(&[
        "runtime",
        "build",
        "--table",
        s(&table(&t)),
        "--dir",
        s(&dir),
        NAME,
    ]);
    dir
}

fn manifest(dir: &Path, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(name).join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// What `dir` holds besides lock files (a staging directory left behind shows here).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock") && n != ".store")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A private copy of the shared runtime in `into` (export, then import).
fn private_copy(into: &Path, work: &TempDir) -> PathBuf {
    let dir = shared();
    let file = work.0.join("rt.tar.zst");
    if !file.exists() {
        ok(&[
            "runtime",
            "export",
            NAME,
            "--dir",
            s(&dir),
            "--output",
            s(&file),
        ]);
    }
    ok(&["runtime", "import", s(&file), "--dir", s(into)]);
    file
}

fn walk(root: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        let dir = m.is_dir();
        out.push((e.path(), m));
        if dir {
            walk(&e.path(), out);
        }
    }
}

#[test]
fn a_built_runtime_has_a_manifest_with_packages_and_the_version_probed_inside() {
    let dir = shared();
    let m = manifest(&dir, NAME);
    assert_eq!(m["name"], NAME);
    assert_eq!(m["suite"], "trixie");
    assert_eq!(m["packages"], serde_json::json!(["python3-minimal"]));
    let installed = m["installed"].as_array().unwrap();
    let version_of = |p: &str| {
        installed
            .iter()
            .find(|x| x["name"] == p)
            .and_then(|x| x["version"].as_str())
            .map(str::to_string)
    };
    for p in ["python3-minimal", "python3.13-minimal", "libc6", "bash"] {
        let v = version_of(p).unwrap_or_else(|| panic!("{p} not in {installed:?}"));
        assert!(v.chars().next().unwrap().is_ascii_digit(), "{p} {v}");
    }
    // The version was probed inside the new root: trixie's 3.13, not the host's python.
    let langs = m["languages"].as_array().unwrap();
    assert_eq!(langs.len(), 1, "{langs:?}");
    assert_eq!(langs[0]["language"], "python");
    let v = langs[0]["version"].as_str().unwrap();
    assert!(v.starts_with("3.13."), "{v}");
    assert!(version_of("python3.13-minimal").unwrap().starts_with(v));
    let hash = m["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert!(m["size_bytes"].as_u64().unwrap() > 10_000_000);
    assert!(m["size_bytes"].as_u64().unwrap() < 200_000_000);
    assert!(m["build_secs"].as_f64().unwrap() > 0.0);
    assert!(m["built_at"].as_u64().unwrap() > 1_700_000_000);
    // The hash is the tree's: recomputed equal.
    let out = ok(&["runtime", "verify", NAME, "--dir", s(&dir)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&hash[..12]));

    // Stripped: no docs but the copyright files, no man pages, no apt lists, no device nodes,
    // no setuid or setgid bit; the toolchain is whole.
    let root = dir.join(NAME).join("root");
    let mut all = Vec::new();
    walk(&root, &mut all);
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for (p, m) in &all {
        let rel = p
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if let Some(doc) = rel.strip_prefix("usr/share/doc/") {
            assert!(
                !doc.contains('/') || doc.ends_with("/copyright"),
                "{rel} was kept"
            );
        }
        for gone in [
            "usr/share/man/",
            "usr/share/info/",
            "var/lib/apt/lists/",
            "var/cache/apt/",
            "dev/",
        ] {
            assert!(!rel.starts_with(gone), "{rel} was kept");
        }
        let t = m.file_type();
        assert!(!t.is_block_device() && !t.is_char_device(), "{rel}");
        if !t.is_symlink() {
            assert_eq!(m.mode() & 0o6000, 0, "{rel} is setuid or setgid");
        }
    }
    assert!(root
        .join("usr/share/doc/python3-minimal/copyright")
        .is_file());
    assert!(std::fs::symlink_metadata(root.join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(root.join("usr/lib/python3.13/os.py").is_file());
}

#[test]
fn a_program_runs_on_the_runtimes_python() {
    let dir = shared();
    let v = manifest(&dir, NAME)["languages"][0]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let work = TempDir::new("rt-run");
    let prog = work.file(
        "x.py",
        "import platform\nprint(platform.python_version())\nprint(open('/etc/debian_version').read().strip())\n",
    );
    let o = ok(&["run", "--rootfs", s(&dir.join(NAME).join("root")), s(&prog)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(v.as_str()), "{out}");
    assert!(lines.next().unwrap().starts_with("13"), "{out}");
    // The same program on the host's python says something else (bookworm: 3.11). (Without
    // runtimes: with them, the newest python of all would be picked.)
    let host = Command::new(isobox_bin())
        .args(["run", s(&prog)])
        .env("ISOBOX_RUNTIMES_DIR", work.0.join("none"))
        .output()
        .unwrap();
    assert!(host.status.success(), "{}", text(&host));
    assert_ne!(String::from_utf8_lossy(&host.stdout), out);
}

#[test]
fn list_shows_built_runtimes_and_with_all_the_definitions_not_built() {
    let dir = shared();
    let t = TempDir::new("rt-list");
    let o = ok(&["runtime", "list", "--dir", s(&dir)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.starts_with(NAME))
        .unwrap_or_else(|| panic!("{out}"));
    let m = manifest(&dir, NAME);
    assert!(line.contains("trixie"), "{line}");
    assert!(
        line.contains(&format!(
            "python {}",
            m["languages"][0]["version"].as_str().unwrap()
        )),
        "{line}"
    );
    assert!(line.contains(&m["hash"].as_str().unwrap()[..12]), "{line}");
    assert!(!out.contains(UNBUILT), "{out}");
    let o = ok(&[
        "runtime",
        "list",
        "--dir",
        s(&dir),
        "--all",
        "--table",
        s(&table(&t)),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = out
        .lines()
        .find(|l| l.starts_with(UNBUILT))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("not built"), "{line}");
    let o = ok(&["runtime", "list", "--dir", s(&dir), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mine = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == NAME)
        .unwrap();
    assert_eq!(mine, &m);
    // An empty directory lists nothing (and is not an error).
    let o = ok(&["runtime", "list", "--dir", s(&t.0.join("none"))]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}

#[test]
fn an_unchanged_definition_is_not_rebuilt_and_force_rebuilds() {
    let work = TempDir::new("rt-force");
    let dir = work.0.join("runtimes");
    private_copy(&dir, &work);
    let before = manifest(&dir, NAME);
    let tbl = table(&work);
    let started = std::time::Instant::now();
    let o = ok(&[
        "runtime",
        "build",
        "--table",
        s(&tbl),
        "--dir",
        s(&dir),
        NAME,
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("up to date"),
        "{}",
        text(&o)
    );
    assert!(started.elapsed().as_secs() < 10);
    assert_eq!(manifest(&dir, NAME), before);

    // A changed definition (another package list) is rebuilt; so is an unchanged one with
    // --force. Here: --force.
    let o = ok(&[
        "runtime",
        "build",
        "--force",
        "--table",
        s(&tbl),
        "--dir",
        s(&dir),
        NAME,
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("built in"),
        "{}",
        text(&o)
    );
    let after = manifest(&dir, NAME);
    assert!(after["built_at"].as_u64() >= before["built_at"].as_u64());
    assert_eq!(after["languages"], before["languages"]);
    ok(&["runtime", "verify", NAME, "--dir", s(&dir)]);
    // The same packages give the same tree (unless the mirror published a new version of one
    // in between: then the installed versions differ too).
    if after["installed"] == before["installed"] {
        assert_eq!(after["hash"], before["hash"]);
    }
    assert_eq!(entries(&dir), vec![NAME.to_string()]);
}

#[test]
fn export_then_import_elsewhere_gives_the_same_runtime() {
    let src = shared();
    let work = TempDir::new("rt-export");
    let dir = work.0.join("airgapped");
    private_copy(&dir, &work);
    let a = manifest(&src, NAME);
    let b = manifest(&dir, NAME);
    assert_eq!(a, b);
    ok(&["runtime", "verify", NAME, "--dir", s(&dir)]);
    let root = dir.join(NAME).join("root");
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    // It runs there too.
    let prog = work.file("x.py", "import sys\nprint(sys.version_info[:2])\n");
    let o = ok(&["run", "--rootfs", s(&root), s(&prog)]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "(3, 13)\n");
    // A second import of the same archive changes nothing; one over another runtime of that
    // name needs --force.
    let file = work.0.join("rt.tar.zst");
    let o = ok(&["runtime", "import", s(&file), "--dir", s(&dir)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to do"));
    assert_eq!(entries(&dir), vec![NAME.to_string()]);
}

/// The exported archive with the content of `root/etc/debian_version` changed.
fn tampered(file: &Path, out: &Path) {
    let dec = zstd::Decoder::new(std::fs::File::open(file).unwrap()).unwrap();
    let mut a = tar::Archive::new(dec);
    let enc = zstd::Encoder::new(std::fs::File::create(out).unwrap(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    let mut changed = false;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if path == Path::new("root/etc/debian_version") {
            data = b"99.0\n".to_vec();
            h.set_size(data.len() as u64);
            changed = true;
        }
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e.link_name().unwrap().unwrap().into_owned();
                b.append_link(&mut h, &path, target).unwrap();
            }
            _ => b.append_data(&mut h, &path, data.as_slice()).unwrap(),
        }
    }
    assert!(changed);
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn a_tampered_archive_is_refused() {
    let work = TempDir::new("rt-tamper");
    let good = work.0.join("rt.tar.zst");
    let dir = work.0.join("runtimes");
    let src = shared();
    ok(&[
        "runtime",
        "export",
        NAME,
        "--dir",
        s(&src),
        "--output",
        s(&good),
    ]);
    let bad = work.0.join("bad.tar.zst");
    tampered(&good, &bad);
    refused(
        &["runtime", "import", s(&bad), "--dir", s(&dir)],
        "does not match its manifest",
    );
    assert_eq!(entries(&dir), Vec::<String>::new(), "nothing installed");
    // Not an archive at all.
    let junk = work.file("junk.tar.zst", "hello");
    refused(
        &["runtime", "import", s(&junk), "--dir", s(&dir)],
        "isobox:",
    );
    assert_eq!(entries(&dir), Vec::<String>::new());
    // The untouched one imports.
    ok(&["runtime", "import", s(&good), "--dir", s(&dir)]);
}

enum Item<'a> {
    File(&'a [u8], &'a [u8]),
    Mode(&'a [u8], u32, &'a [u8]),
    CharDevice(&'a [u8]),
    Dir(&'a [u8]),
    Symlink(&'a [u8], &'a [u8]),
    Hardlink(&'a [u8], &'a [u8]),
}

/// An archive with a manifest for `name` and `items`, their paths written as raw bytes (the tar
/// crate refuses to write `..` or absolute paths itself).
fn hostile(out: &Path, name: &str, manifest_first: bool, items: &[Item]) {
    hostile_with_hash(out, name, manifest_first, items, &"0".repeat(64))
}

fn hostile_with_hash(out: &Path, name: &str, manifest_first: bool, items: &[Item], hash: &str) {
    let enc = zstd::Encoder::new(std::fs::File::create(out).unwrap(), 1).unwrap();
    let mut b = tar::Builder::new(enc);
    let manifest = serde_json::json!({
        "name": name, "suite": "trixie", "packages": [], "installed": [], "languages": [],
        "size_bytes": 1, "build_secs": 1.0, "built_at": 1, "hash": hash, "image": null,
    })
    .to_string();
    let raw = |b: &mut tar::Builder<_>,
               kind: tar::EntryType,
               path: &[u8],
               link: &[u8],
               data: &[u8],
               mode: Option<u32>| {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode.unwrap_or(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        }));
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    let put_manifest = |b: &mut tar::Builder<_>| {
        raw(
            b,
            tar::EntryType::Regular,
            b"manifest.json",
            b"",
            manifest.as_bytes(),
            None,
        )
    };
    if manifest_first {
        put_manifest(&mut b);
    }
    raw(&mut b, tar::EntryType::Directory, b"root", b"", b"", None);
    for it in items {
        match it {
            Item::File(p, d) => raw(&mut b, tar::EntryType::Regular, p, b"", d, None),
            Item::Mode(p, m, d) => raw(&mut b, tar::EntryType::Regular, p, b"", d, Some(*m)),
            Item::CharDevice(p) => raw(&mut b, tar::EntryType::Char, p, b"", b"", None),
            Item::Dir(p) => raw(&mut b, tar::EntryType::Directory, p, b"", b"", None),
            Item::Symlink(p, t) => raw(&mut b, tar::EntryType::Symlink, p, t, b"", None),
            Item::Hardlink(p, t) => raw(&mut b, tar::EntryType::Link, p, t, b"", None),
        }
    }
    if !manifest_first {
        put_manifest(&mut b);
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn hostile_archives_are_refused_and_write_nothing_outside() {
    let work = TempDir::new("rt-hostile");
    let dir = work.0.join("runtimes");
    let outside = work.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let outside_abs = outside.to_str().unwrap().as_bytes().to_vec();
    let mut up = b"../".repeat(12);
    up.extend_from_slice(&outside_abs[1..]);
    // 70 MiB of zeros (a few KB compressed) from an archive whose manifest says 1 byte.
    let bomb = vec![0u8; 70 << 20];
    let cases: Vec<(&str, String, bool, Vec<Item>)> = vec![
        (
            "dotdot",
            "x".into(),
            true,
            vec![Item::File(b"root/../../outside/escape", b"pwned")],
        ),
        (
            "absolute",
            "x".into(),
            true,
            vec![Item::File(&outside_abs, b"pwned")],
        ),
        (
            "through a symlink",
            "x".into(),
            true,
            vec![
                Item::Symlink(b"root/lnk", &outside_abs),
                Item::File(b"root/lnk/escape", b"pwned"),
            ],
        ),
        (
            "through a symlink to a dir inside",
            "x".into(),
            true,
            vec![
                Item::Dir(b"root/usr"),
                Item::Symlink(b"root/bin", b"usr"),
                Item::File(b"root/bin/escape", b"pwned"),
            ],
        ),
        (
            "relative symlink leaving the root",
            "x".into(),
            true,
            vec![Item::Symlink(b"root/up", &up)],
        ),
        (
            "hard link outside",
            "x".into(),
            true,
            vec![Item::Hardlink(b"root/h", b"/etc/passwd")],
        ),
        (
            "hard link with dotdot",
            "x".into(),
            true,
            vec![Item::Hardlink(b"root/h", b"root/../../manifest.json")],
        ),
        (
            "file over a directory's place",
            "x".into(),
            true,
            vec![Item::File(b"root/a/b", b"no parent")],
        ),
        (
            "bigger than its manifest",
            "x".into(),
            true,
            vec![Item::File(b"root/big", &bomb)],
        ),
        ("bad name", "../x".into(), true, vec![]),
        ("manifest not first", "x".into(), false, vec![]),
    ];
    for (what, name, first, items) in &cases {
        let f = work.0.join("hostile.tar.zst");
        hostile(&f, name, *first, items);
        let o = isobox(&["runtime", "import", s(&f), "--dir", s(&dir)]);
        assert!(!o.status.success(), "{what}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let why = match *what {
            "dotdot" | "absolute" | "hard link outside" | "hard link with dotdot" => {
                "is absolute or leaves its directory: refused"
            }
            "relative symlink leaving the root" => "leaves the runtime's root: refused",
            "bad name" => "no valid runtime",
            "bigger than its manifest" => "unpacks to more than 67 MB",
            "manifest not first" => "does not start with manifest.json",
            _ => "is not below a directory of the archive (a symlink?): refused",
        };
        assert!(err.contains(why), "{what}: expected `{why}` in {err}");
        assert_eq!(entries(&outside), Vec::<String>::new(), "{what}");
        assert_eq!(entries(&dir), Vec::<String>::new(), "{what}");
        assert!(!work.0.join("escape").exists() && !work.0.join("..").join("escape").exists());
    }
    // A well-formed archive with a wrong hash still writes nothing.
    let f = work.0.join("plain.tar.zst");
    hostile(
        &f,
        "x",
        true,
        &[Item::Dir(b"root/etc"), Item::File(b"root/etc/os", b"x\n")],
    );
    refused(
        &["runtime", "import", s(&f), "--dir", s(&dir)],
        "does not match its manifest",
    );
    assert_eq!(entries(&dir), Vec::<String>::new());
}

#[test]
fn remove_deletes_a_runtime_and_refuses_bad_names_and_symlinks() {
    let work = TempDir::new("rt-remove");
    let dir = work.0.join("runtimes");
    private_copy(&dir, &work);
    assert!(dir.join(NAME).join("root").is_dir());
    refused(
        &["runtime", "remove", "../x", "--dir", s(&dir)],
        "is not a runtime name",
    );
    refused(
        &["runtime", "remove", "absent", "--dir", s(&dir)],
        "no runtime `absent`",
    );
    // A symlink in the runtimes directory is not followed.
    let victim = work.0.join("victim");
    std::fs::create_dir_all(victim.join("root")).unwrap();
    std::fs::write(victim.join("keep"), "x").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("evil")).unwrap();
    refused(
        &["runtime", "remove", "evil", "--dir", s(&dir)],
        "not a directory",
    );
    assert!(victim.join("keep").exists());
    refused(
        &[
            "runtime",
            "export",
            "evil",
            "--dir",
            s(&dir),
            "-o",
            s(&work.0.join("e")),
        ],
        "not a directory",
    );
    std::fs::remove_file(dir.join("evil")).unwrap();
    let o = ok(&["runtime", "remove", NAME, "--dir", s(&dir)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed"));
    assert_eq!(entries(&dir), Vec::<String>::new());
    assert_eq!(
        store_files(&dir),
        0,
        "the shared store is collected with the runtime"
    );
    let o = ok(&["runtime", "list", "--dir", s(&dir)]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains(NAME));
}

/// Files in the runtimes' shared store (`<dir>/.store`).
fn store_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(".store")).map_or(0, |rd| rd.count())
}

/// Two runtimes holding the same files keep them once: `runtime dedup` (and every build and
/// import) links identical files into the store; the content hash is unchanged; removing one
/// runtime keeps the other's files, removing both empties the store.
#[test]
fn identical_files_of_runtimes_are_kept_once() {
    use std::os::unix::fs::MetadataExt;
    let work = TempDir::new("rt-dedup");
    let dir = work.0.join("runtimes");
    private_copy(&dir, &work);
    let stored = store_files(&dir);
    assert!(
        stored > 100,
        "import links the files into the store: {stored}"
    );
    // A second runtime with the same files: a plain copy (its own inodes), renamed.
    let copy = "py-copy";
    let st = Command::new("cp")
        .args(["-a", "--no-preserve=links"])
        .arg(dir.join(NAME))
        .arg(dir.join(copy))
        .status()
        .unwrap();
    assert!(st.success());
    let mpath = dir.join(copy).join("manifest.json");
    let mut m = manifest(&dir, NAME);
    m["name"] = copy.into();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let python = |name: &str| {
        let bin = dir.join(name).join("root/usr/bin");
        let p = std::fs::read_dir(&bin)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("python3.") && !n.contains('-')
            })
            .expect("python3.x in the root");
        std::fs::metadata(p).unwrap()
    };
    assert_ne!(python(NAME).ino(), python(copy).ino());
    let o = ok(&["runtime", "dedup", "--dir", s(&dir)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 runtimes"),
        "{}",
        text(&o)
    );
    assert_eq!(python(NAME).ino(), python(copy).ino(), "one inode for both");
    assert_eq!(store_files(&dir), stored, "nothing new in the store");
    // Same content, same hash; both still run.
    ok(&["runtime", "verify", NAME, copy, "--dir", s(&dir)]);
    ok(&["runtime", "remove", NAME, "--dir", s(&dir)]);
    assert_eq!(store_files(&dir), stored, "the copy still uses them");
    ok(&["runtime", "verify", copy, "--dir", s(&dir)]);
    ok(&["runtime", "remove", copy, "--dir", s(&dir)]);
    assert_eq!(store_files(&dir), 0);
}

#[test]
fn build_says_what_is_missing() {
    let work = TempDir::new("rt-missing");
    let dir = work.0.join("runtimes");
    let tbl = table(&work);
    // Without mmdebstrap on PATH.
    let o = Command::new(isobox_bin())
        .args([
            "runtime",
            "build",
            "--table",
            s(&tbl),
            "--dir",
            s(&dir),
            NAME,
        ])
        .env("PATH", s(&work.0))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("mmdebstrap is not installed") && err.contains("apt-get install mmdebstrap"),
        "{err}"
    );
    assert_eq!(entries(&dir), Vec::<String>::new());
    refused(
        &[
            "runtime",
            "build",
            "--table",
            s(&tbl),
            "--dir",
            s(&dir),
            "nope",
        ],
        "no runtime `nope`",
    );
    // A language the table does not know.
    let bad = work.file(
        "bad.toml",
        "[[runtime]]\nname = \"b\"\nsuite = \"trixie\"\npackages = [\"python3\"]\nlanguages = [\"cobol-99\"]\n",
    );
    refused(
        &[
            "runtime",
            "build",
            "--table",
            s(&bad),
            "--dir",
            s(&dir),
            "b",
        ],
        "not in the language table",
    );
    assert_eq!(entries(&dir), Vec::<String>::new());
}

#[test]
fn docker_builds_the_image_of_a_runtime_and_records_it() {
    let work = TempDir::new("rt-docker");
    let dir = work.0.join("runtimes");
    private_copy(&dir, &work);
    let hash = manifest(&dir, NAME)["hash"].as_str().unwrap().to_string();
    assert!(manifest(&dir, NAME)["image"].is_null());
    let table = table(&work);
    let build = || {
        ok(&[
            "runtime",
            "build",
            "--docker",
            "--table",
            s(&table),
            "--dir",
            s(&dir),
            NAME,
        ])
    };
    // Built already: the build is skipped, the image is made and recorded.
    let o = build();
    assert!(String::from_utf8_lossy(&o.stdout).contains("up to date"));
    let m = manifest(&dir, NAME);
    // The tag names the root's hash and the runner's (a new runner makes a new image).
    let tag = m["image"]
        .as_str()
        .expect("an image is recorded")
        .to_string();
    let prefix = format!("isobox-rt-{NAME}:{}-", &hash[..12]);
    assert!(
        tag.starts_with(&prefix) && tag.len() == prefix.len() + 8,
        "{tag}"
    );
    assert_eq!(m["hash"], hash.as_str());
    // Asked again, the image is there: nothing is built.
    let o = build();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("built isobox-rt"),
        "{}",
        text(&o)
    );
    assert_eq!(manifest(&dir, NAME)["image"], tag.as_str());
    // The image holds the runtime's python.
    let run = Command::new("docker")
        .args(["run", "--rm", "--network=none", &tag, "python3", "-c"])
        .arg("import platform; print(platform.python_version())")
        .output()
        .expect("docker");
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        m["languages"][0]["version"].as_str().unwrap()
    );
}

/// The hash `isobox runtime verify` computes for the tree of `dir/name` (its manifest says
/// otherwise, so verify prints both in full).
fn tree_hash_of(dir: &Path, name: &str) -> String {
    let o = isobox(&["runtime", "verify", name, "--dir", s(dir)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.split("tree ")
        .nth(1)
        .and_then(|t| t.get(..64))
        .unwrap_or_else(|| panic!("{}", text(&o)))
        .to_string()
}

#[test]
fn import_clears_setuid_bits_skips_devices_and_keeps_links_inside() {
    use std::os::unix::fs::PermissionsExt;
    let work = TempDir::new("rt-suid");
    // The same tree made by hand (mode 0755, no device): its hash is the one the import must
    // arrive at.
    let by_hand = work.0.join("by-hand");
    let root = by_hand.join("x").join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("usr"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("usr/bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("usr/bin/su"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/su"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/su", root.join("usr/bin/abs")).unwrap();
    std::fs::hard_link(root.join("usr/bin/su"), root.join("usr/bin/su2")).unwrap();
    std::fs::write(
        by_hand.join("x").join("manifest.json"),
        serde_json::json!({
            "name": "x", "suite": "trixie", "packages": [], "installed": [], "languages": [],
            "size_bytes": 1, "build_secs": 1.0, "built_at": 1, "hash": "0".repeat(64),
        })
        .to_string(),
    )
    .unwrap();
    let f = work.0.join("suid.tar.zst");
    // The device node's directory stays (empty): made by hand too.
    std::fs::create_dir(root.join("dev")).unwrap();
    std::fs::set_permissions(root.join("dev"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hash = tree_hash_of(&by_hand, "x");
    hostile_with_hash(
        &f,
        "x",
        true,
        &[
            Item::Symlink(b"root/bin", b"usr/bin"),
            Item::Dir(b"root/dev"),
            Item::CharDevice(b"root/dev/mem"),
            Item::Dir(b"root/usr"),
            Item::Dir(b"root/usr/bin"),
            Item::Mode(b"root/usr/bin/su", 0o6755, b"#!/bin/sh\n"),
            Item::Symlink(b"root/usr/bin/abs", b"/usr/bin/su"),
            Item::Hardlink(b"root/usr/bin/su2", b"root/usr/bin/su"),
        ],
        &hash,
    );
    let dir = work.0.join("runtimes");
    let o = ok(&["runtime", "import", s(&f), "--dir", s(&dir)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 device nodes skipped"),
        "{}",
        text(&o)
    );
    let got = dir.join("x").join("root");
    use std::os::unix::fs::MetadataExt;
    let su = std::fs::symlink_metadata(got.join("usr/bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o755, "setuid/setgid cleared");
    let su2 = std::fs::symlink_metadata(got.join("usr/bin/su2")).unwrap();
    assert_eq!(su.ino(), su2.ino(), "the hard link is one");
    // Linked once more: from the runtimes' shared store.
    assert_eq!(su.nlink(), 3);
    assert!(!got.join("dev/mem").exists());
    assert_eq!(
        std::fs::read_link(got.join("usr/bin/abs")).unwrap(),
        Path::new("/usr/bin/su")
    );
    assert_eq!(
        std::fs::read_link(got.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    ok(&["runtime", "verify", "x", "--dir", s(&dir)]);
}

/// The API picks the runtime by version and the run sees the runtime's root only: with the
/// host's toolchains off, python comes from the runtime (trixie's 3.13), `version` picks it
/// by prefix or by name, a version no runtime has is refused, and nothing of the host's
/// `/usr` is visible (no gcc, no file planted in the host's /usr/local).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_runs_a_version_in_its_runtime_and_nothing_of_the_host() {
    let dir = tokio::task::spawn_blocking(shared).await.unwrap();
    let v = manifest(&dir, NAME)["languages"][0]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let planted = PathBuf::from(format!("/usr/local/share/isobox-planted-{}", token("rt")));
    std::fs::write(&planted, "host only").unwrap();
    let srv = TestServer::start(&[
        ("ISOBOX_RUNTIMES_DIR", s(&dir)),
        ("ISOBOX_HOST_RUNTIME", "false"),
    ])
    .await;
    let langs: serde_json::Value = srv.get("/api/v1/languages").await.json().await.unwrap();
    let python: Vec<&serde_json::Value> = langs
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"] == "python")
        .collect();
    assert_eq!(python.len(), 1, "{langs}");
    assert_eq!(python[0]["runtime"], NAME);
    assert_eq!(python[0]["version"], v.as_str());
    assert!(
        !langs.as_array().unwrap().iter().any(|l| l["name"] == "c"),
        "no runtime provides c and the host does not count: {langs}"
    );
    let code = format!(
        "import os, platform\nprint(platform.python_version())\nprint(os.path.exists('/usr/bin/gcc'), os.path.exists('{}'))\n",
        planted.display()
    );
    for version in [None, Some("3"), Some(&v[..4]), Some(NAME)] {
        let mut body = serde_json::json!({"language": "python", "code": code});
        if let Some(want) = version {
            body["version"] = want.into();
        }
        let r = srv.exec(body).await;
        assert_eq!(r["version"], v.as_str(), "{version:?}: {r}");
        assert_eq!(
            r["stdout"],
            format!("{v}\nFalse False\n"),
            "{version:?}: {r}"
        );
    }
    let resp = srv
        .post_json(
            "/api/v1/execute",
            &serde_json::json!({"language": "python", "version": "2.7", "code": "print(1)"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["error"], "version_unavailable", "{e}");
    assert!(e["message"].as_str().unwrap().contains(&v), "{e}");
    let resp = srv
        .post_json(
            "/api/v1/execute",
            &serde_json::json!({"language": "c", "code": "int main(void){return 0;}"}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    srv.stop().await;
    let _ = std::fs::remove_file(&planted);
}
