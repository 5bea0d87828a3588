//! `isobox runtime build|list|verify|remove|export|import`: the runtimes of
//! `isobox_core::runtimes` (read-only roots built from Debian packages) on this host.
//!
//! - `build` runs Debian's `mmdebstrap` into `<dir>/.<name>.tmp-<pid>/root`, strips what a
//!   sandbox never needs, probes the languages' versions inside the new root (a native sandbox
//!   whose root is that directory), writes the manifest and renames the directory into place.
//!   A runtime whose manifest has the definition's suite and packages is kept (the cache).
//! - `export` / `import` move one runtime as one file (tar, zstd): `manifest.json` then `root/`.
//!   Import never writes through a symlink, refuses paths leaving the root, skips device nodes,
//!   clears setuid/setgid bits and refuses the archive when the tree's hash is not the
//!   manifest's.
//!
//! Every operation on a runtime holds an exclusive lock on `<dir>/.<name>.lock`, so two builds of
//! one name (two CI jobs, two test processes) run one after the other and the second finds the
//! first's result.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use isobox_core::runtimes::{self, Definition, Definitions, Manifest, Package, Provided, Runtime};
use isobox_core::{Executor, LanguageTable, Policy};
use isobox_sandbox::{NativeBackend, NativeConfig, RootFs};

/// Debian's mirror, the default of `--mirror`.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// mmdebstrap's hook that merges /usr without the usrmerge package.
const MERGED_USR_HOOK: &str = "/usr/share/mmdebstrap/hooks/merged-usr";

/// The largest manifest an archive may hold.
const MAX_MANIFEST: u64 = 4 << 20;

/// The most an import unpacks (the largest runtime of the built-in table is 1 GB).
const MAX_IMPORT_BYTES: u64 = 32 << 30;

/// The most entries an import unpacks (the largest built-in runtime has about 60 000).
const MAX_IMPORT_ENTRIES: u64 = 2_000_000;

#[derive(Args, Clone)]
pub struct DirArg {
    /// The runtimes directory.
    #[arg(long, env = "ISOBOX_RUNTIMES_DIR", default_value = runtimes::DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Subcommand)]
pub enum RuntimeCommand {
    /// Build runtimes from their definitions with mmdebstrap (skipped when already built from
    /// the same suite and packages).
    Build {
        #[arg(required_unless_present = "all", value_name = "NAME")]
        names: Vec<String>,
        /// Build every runtime of the table.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// How many runtimes to build at once (each one's mmdebstrap output then goes to
        /// `<dir>/.<name>.build.log`).
        #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        jobs: u16,
        /// Runtime table replacing the built-in one (TOML, as runtimes.toml).
        #[arg(long, value_name = "FILE")]
        table: Option<PathBuf>,
        #[command(flatten)]
        dir: DirArg,
        /// The Debian mirror.
        #[arg(long, default_value = DEFAULT_MIRROR, value_name = "URL")]
        mirror: String,
        /// Also build the docker backend's image of each runtime (`isobox-rt-<name>:<hash>`).
        #[arg(long)]
        docker: bool,
        /// Rebuild even when an identical definition was built already.
        #[arg(long)]
        force: bool,
        /// The `isobox-runner` binary for `--docker` (default: next to this executable).
        #[arg(long, value_name = "FILE")]
        runner: Option<PathBuf>,
    },
    /// List the built runtimes.
    List {
        /// Print the manifests as JSON.
        #[arg(long)]
        json: bool,
        /// Also list the definitions not built yet.
        #[arg(long)]
        all: bool,
        /// Runtime table replacing the built-in one (for --all).
        #[arg(long, value_name = "FILE")]
        table: Option<PathBuf>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Recompute the content hash of runtimes and compare it with their manifests.
    Verify {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Remove built runtimes.
    Remove {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Keep identical files of the runtimes once (hard links into `<dir>/.store`): builds and
    /// imports do it as they go; this does it for runtimes from before, and collects what no
    /// runtime uses any more.
    Dedup {
        #[command(flatten)]
        dir: DirArg,
    },
    /// Write one runtime to a file (tar, zstd) for `isobox runtime import`.
    Export {
        name: String,
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Install a runtime from a file written by `isobox runtime export` (no network needed).
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        dir: DirArg,
        /// Replace a runtime of that name with another hash.
        #[arg(long)]
        force: bool,
    },
}

/// Makes sure the docker image of a root exists (for `--docker`: the `image build` subcommand's
/// code): given the root and a tag prefix (`isobox-rt-<name>:<hash12>`), returns the full tag,
/// which also names the runner it holds, building the image only when that tag is missing.
pub type ImageBuilder<'a> = &'a (dyn Fn(&Path, &str) -> anyhow::Result<String> + Sync);

/// [`ImageBuilder`] with the `--runner` given, if any.
pub type ImageWithRunner<'a> =
    &'a (dyn Fn(&Path, &str, Option<PathBuf>) -> anyhow::Result<String> + Sync);

/// Makes a fresh language table (the languages' version caches are per table).
pub type TableMaker<'a> = &'a (dyn Fn() -> anyhow::Result<LanguageTable> + Sync);

pub fn main(
    cmd: RuntimeCommand,
    languages: TableMaker<'_>,
    image: ImageWithRunner<'_>,
) -> anyhow::Result<()> {
    match cmd {
        RuntimeCommand::Build {
            names,
            all,
            jobs,
            table,
            dir,
            mirror,
            docker,
            force,
            runner: runner_path,
        } => {
            let defs = definitions(table.as_deref())?;
            let mut picked = Vec::new();
            if all {
                picked.extend(defs.runtimes.iter().cloned());
            }
            for n in &names {
                let Some(d) = defs.get(n) else {
                    bail!(
                        "no runtime `{n}` in the {} table (known: {})",
                        if table.is_some() { "given" } else { "built-in" },
                        defs.runtimes
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                };
                picked.push(d.clone());
            }
            let image_with_runner = |root: &Path, tag: &str| image(root, tag, runner_path.clone());
            let image = docker.then_some(&image_with_runner as ImageBuilder<'_>);
            let log = jobs > 1;
            let started = Instant::now();
            // A queue of definitions, `jobs` threads taking from it; a failed build does not
            // stop the others.
            let next = std::sync::Mutex::new(picked.iter());
            let failed = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|s| {
                for _ in 0..jobs.min(picked.len().max(1) as u16) {
                    s.spawn(|| loop {
                        let Some(d) = next.lock().expect("not poisoned").next() else {
                            return;
                        };
                        if let Err(e) = build(d, &dir.dir, &mirror, force, image, languages, log) {
                            eprintln!("{}: FAILED: {e:#}", d.name);
                            failed.lock().expect("not poisoned").push(d.name.clone());
                        }
                    });
                }
            });
            let failed = failed.into_inner().expect("not poisoned");
            if picked.len() > 1 {
                println!(
                    "{} runtimes, {} failed, in {:.1} s",
                    picked.len(),
                    failed.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            if !failed.is_empty() {
                bail!("runtimes not built: {}", failed.join(", "));
            }
            Ok(())
        }
        RuntimeCommand::List {
            json,
            all,
            table,
            dir,
        } => list(&dir.dir, json, all.then_some(table.as_deref())),
        RuntimeCommand::Verify { names, dir } => {
            let mut bad = Vec::new();
            for n in &names {
                let rt = load(&dir.dir, n)?;
                let started = Instant::now();
                let h = tree_hash(&rt.root)?;
                if h == rt.manifest.hash {
                    println!(
                        "{n}: ok ({}, {:.1} s)",
                        &h[..12],
                        started.elapsed().as_secs_f64()
                    );
                } else {
                    println!("{n}: MODIFIED (manifest {}, tree {})", rt.manifest.hash, h);
                    bad.push(n.clone());
                }
            }
            if !bad.is_empty() {
                bail!("runtimes changed since they were built: {}", bad.join(", "));
            }
            Ok(())
        }
        RuntimeCommand::Remove { names, dir } => {
            for n in &names {
                remove(&dir.dir, n)?;
                println!("removed {n}");
            }
            Ok(())
        }
        RuntimeCommand::Dedup { dir } => {
            let started = Instant::now();
            let mut shared = 0;
            let found = runtimes::scan(&dir.dir);
            for rt in &found {
                let _lock = Lock::take(&dir.dir, &rt.manifest.name)?;
                shared += dedup(&dir.dir, &rt.root)?;
            }
            let freed = collect_store(&dir.dir)?;
            println!(
                "{} runtimes: {:.1} MB more shared, {:.1} MB no longer used freed, in {:.1} s",
                found.len(),
                shared as f64 / 1e6,
                freed as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        RuntimeCommand::Export { name, output, dir } => export(&dir.dir, &name, &output),
        RuntimeCommand::Import { file, dir, force } => import(&dir.dir, &file, force).map(|_| ()),
    }
}

fn definitions(table: Option<&Path>) -> anyhow::Result<Definitions> {
    Ok(match table {
        Some(p) => {
            let text =
                fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            Definitions::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => Definitions::builtin(),
    })
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if !runtimes::valid_name(name) {
        bail!("`{name}` is not a runtime name ([a-z0-9][a-z0-9._-]*, at most 64 bytes)");
    }
    Ok(())
}

/// `<dir>/<name>` when it is a real directory (never a symlink) holding a complete runtime.
fn load(dir: &Path, name: &str) -> anyhow::Result<Runtime> {
    check_name(name)?;
    let p = dir.join(name);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{} is not a directory (a symlink?): refused", p.display()),
        Err(_) => bail!("no runtime `{name}` in {}", dir.display()),
    }
    let rt = Runtime::load(&p).with_context(|| {
        format!(
            "{} is not a complete runtime (manifest.json and root/)",
            p.display()
        )
    })?;
    if !fs::symlink_metadata(&rt.root)?.is_dir()
        || !fs::symlink_metadata(p.join("manifest.json"))?.is_file()
    {
        bail!(
            "{}: root/ or manifest.json is a symlink: refused",
            p.display()
        );
    }
    Ok(rt)
}

/// An exclusive lock on `<dir>/.<name>.lock`, held until dropped.
struct Lock(#[allow(dead_code)] fs::File);

impl Lock {
    fn take(dir: &Path, name: &str) -> anyhow::Result<Lock> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!(".{name}.lock"));
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("{name}: waiting for another isobox working on it");
            // SAFETY: as above.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!(
                    "cannot lock {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(Lock(f))
    }
}

/// A temporary directory `<dir>/.<name>.tmp-<pid>`, removed on drop unless kept. Taken under
/// the name's lock, so any other `.<name>.tmp-*` is left over from an interrupted run and goes.
struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Staging {
    fn new(dir: &Path, name: &str) -> anyhow::Result<Staging> {
        let prefix = format!(".{name}.tmp-");
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_name().as_bytes().starts_with(prefix.as_bytes()) {
                    remove_any(&e.path())?;
                }
            }
        }
        let path = dir.join(format!("{prefix}{}", std::process::id()));
        // Searchable by all: the sandbox that probes the new root's languages mounts it after
        // giving up root's capabilities over files of others.
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Staging { path, keep: false })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove_any(&self.path);
        }
    }
}

/// Removes a file, a symlink or a directory tree (never following a symlink).
fn remove_any(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves the complete `staging` to `<dir>/<name>`: atomically, replacing an older one (which is
/// then removed) by exchanging the two.
fn install(staging: &mut Staging, dir: &Path, name: &str) -> anyhow::Result<()> {
    let dst = dir.join(name);
    let exists = match fs::symlink_metadata(&dst) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => bail!(
            "{} exists and is not a directory: not replaced",
            dst.display()
        ),
        Err(_) => false,
    };
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths");
    let (from, to) = (c(&staging.path), c(&dst));
    if exists {
        // SAFETY: two valid C strings; AT_FDCWD as both directory descriptors.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r != 0 {
            bail!(
                "cannot replace {}: {}",
                dst.display(),
                std::io::Error::last_os_error()
            );
        }
        // The staging path now holds the old runtime: dropping it removes it.
    } else {
        fs::rename(&staging.path, &dst)
            .with_context(|| format!("cannot rename into {}", dst.display()))?;
        staging.keep = true;
    }
    Ok(())
}

fn find_in_path(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a runtime does not need, left out by dpkg itself (`path-exclude`): documentation but the
/// copyright files (the licences travel with an exported runtime), man and info pages, message
/// catalogues (the sandbox runs in the C locale; `C.utf8` lives in /usr/lib/locale and stays).
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
];

/// Directories whose content goes after the build: apt's package lists and downloads (the
/// sandbox never installs anything), logs of the build, device nodes (the sandbox mounts its own
/// /dev), temporary files.
const EMPTIED: &[&str] = &[
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/log",
    "dev",
    "tmp",
    "var/tmp",
];

/// Single files that only record the build: dpkg's and debconf's backups.
const DROPPED: &[&str] = &[
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/ldconfig/aux-cache",
];

/// `root/rel` when every component of `rel` below `root` is a real directory (no symlink).
fn real_dir_below(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for c in Path::new(rel).components() {
        p.push(c);
        if !fs::symlink_metadata(&p).ok()?.is_dir() {
            return None;
        }
    }
    Some(p)
}

fn strip(root: &Path) -> anyhow::Result<()> {
    for rel in EMPTIED {
        if let Some(d) = real_dir_below(root, rel) {
            for e in fs::read_dir(&d)?.flatten() {
                remove_any(&e.path())
                    .with_context(|| format!("cannot remove {}", e.path().display()))?;
            }
        }
    }
    for rel in DROPPED {
        let p = Path::new(rel);
        if let Some(parent) = real_dir_below(root, &p.parent().unwrap().to_string_lossy()) {
            let f = parent.join(p.file_name().unwrap());
            if fs::symlink_metadata(&f).is_ok_and(|m| m.is_file()) {
                fs::remove_file(&f)?;
            }
        }
    }
    // dpkg's path-exclude does not apply to the essential packages mmdebstrap unpacks before
    // dpkg is configured: the same goes here, file by file (never through a symlink). Kept: the
    // copyright files (the licences travel with an exported runtime), the links between
    // packages' doc directories, locale.alias.
    for (rel, keep) in [
        (
            "usr/share/doc",
            &(|r: &Path, link: bool| {
                let n = r.components().count();
                (n == 2 && r.ends_with("copyright")) || (n == 1 && link)
            }) as &dyn Fn(&Path, bool) -> bool,
        ),
        ("usr/share/man", &|_: &Path, _| false),
        ("usr/share/info", &|_: &Path, _| false),
        ("usr/share/locale", &|r: &Path, _| {
            r == Path::new("locale.alias")
        }),
    ] {
        if let Some(d) = real_dir_below(root, rel) {
            walk(&d, &mut |r, abs, m| {
                if !m.is_dir() && !keep(r, m.file_type().is_symlink()) {
                    fs::remove_file(abs)
                        .with_context(|| format!("cannot remove {}", abs.display()))?;
                }
                Ok(())
            })?;
            // The directories left empty go.
            prune_empty(&d)?;
        }
    }
    // No setuid or setgid file or directory: nothing in a sandbox changes identity (its mounts
    // are nosuid anyway), and an imported runtime is cleared the same way, so the hash of a
    // build and of its import agree.
    walk(root, &mut |_, abs, m| {
        if !m.file_type().is_symlink() && m.mode() & 0o6000 != 0 {
            fs::set_permissions(abs, fs::Permissions::from_mode(m.mode() & 0o1777))
                .with_context(|| format!("cannot chmod {}", abs.display()))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Removes the empty directories below `dir` (not `dir`), deepest first; never follows a symlink.
fn prune_empty(dir: &Path) -> anyhow::Result<bool> {
    let mut empty = true;
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if fs::symlink_metadata(&p)?.is_dir() && prune_empty(&p)? {
            fs::remove_dir(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

/// Builds one runtime (or keeps the one built from the same suite and packages).
fn build(
    def: &Definition,
    dir: &Path,
    mirror: &str,
    force: bool,
    image: Option<ImageBuilder<'_>>,
    languages: TableMaker<'_>,
    log: bool,
) -> anyhow::Result<()> {
    let name = &def.name;
    let recipe = def.recipe();
    let table = languages()?;
    for l in &def.languages {
        if table.get(l).is_none() {
            bail!("{name}: language `{l}` is not in the language table");
        }
    }
    let _lock = Lock::take(dir, name)?;
    if let Ok(rt) = load(dir, name) {
        if !force && rt.manifest.recipe == recipe {
            println!(
                "{name}: up to date (suite {}, packages {}, recipe {}, hash {}), skipped; \
                 --force rebuilds",
                def.suite,
                def.packages.join(" "),
                short(&recipe),
                short(&rt.manifest.hash)
            );
            if let Some(image) = image {
                // Built again only when the engine lacks it (a new engine, a new runner).
                let mut m = rt.manifest.clone();
                m.image = Some(build_image(image, &rt.root, &m)?);
                if m.image != rt.manifest.image {
                    let p = dir.join(name).join("manifest.json");
                    write_manifest(&p, &m)?;
                    println!("{name}: docker image {}", m.image.as_deref().unwrap_or(""));
                }
            }
            return Ok(());
        }
    }
    let mmdebstrap = find_in_path("mmdebstrap").context(
        "mmdebstrap is not installed: runtimes are built with Debian's mmdebstrap \
         (`apt-get install mmdebstrap`, or import a runtime built elsewhere with \
         `isobox runtime import`)",
    )?;
    if find_in_path("dpkg-query").is_none() {
        bail!("dpkg-query is not installed (Debian's dpkg): it lists the runtime's packages");
    }
    let started = Instant::now();
    let mut staging = Staging::new(dir, name)?;
    let root = staging.path.join("root");
    eprintln!(
        "{name}: mmdebstrap {} ({}) into {}",
        def.suite,
        def.packages.join(" "),
        root.display()
    );
    let mut cmd = Command::new(&mmdebstrap);
    cmd.arg("--variant=essential")
        .arg("--mode=root")
        .arg("--format=directory")
        .arg("--aptopt=Acquire::Languages \"none\"");
    if !def.packages.is_empty() {
        cmd.arg(format!("--include={}", def.packages.join(",")));
    }
    for o in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt={o}"));
    }
    // With the manuals excluded, update-alternatives still links slave man pages (OpenJDK's
    // postinst does) and fails when their directory is missing.
    cmd.arg("--setup-hook=mkdir -p \"$1/usr/share/man/man1\"");
    // bookworm's essential init-system-helpers depends on `usrmerge | usr-is-merged`: apt
    // takes usrmerge, which brings perl (50 MB). mmdebstrap's merged-usr hook makes the /usr
    // merge itself and installs usr-is-merged instead. (bullseye is not merged, trixie's
    // base-files merges by itself.)
    let hook = Path::new(MERGED_USR_HOOK);
    if def.suite == "bookworm" && hook.is_dir() {
        cmd.arg(format!("--hook-dir={MERGED_USR_HOOK}"));
    }
    if !def.setup.is_empty() {
        // The setup lines, as one script run by the root's own shell inside it (mmdebstrap
        // mounts /proc, /sys and /dev there for its hooks), with a clean environment.
        let script = staging.path.join("setup.sh");
        let mut text = String::from("set -eu\n");
        for line in &def.setup {
            text.push_str(line);
            text.push('\n');
        }
        fs::write(&script, text).with_context(|| format!("cannot write {}", script.display()))?;
        let mut env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/root".to_string(),
            "LANG=C.UTF-8".to_string(),
        ];
        env.extend(def.env.iter().map(|(k, v)| format!("{k}={v}")));
        let env: Vec<String> = env.iter().map(|e| shell_quote(e)).collect();
        cmd.arg(format!(
            "--customize-hook=chroot \"$1\" /usr/bin/env -i {} /bin/sh < {}",
            env.join(" "),
            shell_quote(&script.to_string_lossy())
        ));
    }
    let (out, err) = if log {
        let path = dir.join(format!(".{name}.build.log"));
        let f =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        (Stdio::from(f.try_clone()?), Stdio::from(f))
    } else {
        (Stdio::inherit(), Stdio::inherit())
    };
    let status = cmd
        .arg(&def.suite)
        .arg(&root)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .context("cannot run mmdebstrap")?;
    if !status.success() {
        let seen = if log {
            format!(
                " (its output: {})",
                dir.join(format!(".{name}.build.log")).display()
            )
        } else {
            String::new()
        };
        bail!("{name}: mmdebstrap failed ({status}){seen}; nothing was installed");
    }
    strip(&root)?;
    let installed = installed_packages(&root)?;
    let provided = probe_languages(def, &root, table)?;
    let hash = tree_hash(&root)?;
    let size_bytes = disk_usage(&root)?;
    let shared = dedup(dir, &root)?;
    let mut manifest = Manifest {
        name: name.clone(),
        suite: def.suite.clone(),
        packages: def.packages.clone(),
        installed,
        languages: provided,
        size_bytes,
        build_secs: 0.0,
        built_at: unix_now(),
        hash,
        image: None,
        recipe,
        env: def.env.clone(),
    };
    if let Some(image) = image {
        manifest.image = Some(build_image(image, &root, &manifest)?);
    }
    manifest.build_secs = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    write_manifest(&staging.path.join("manifest.json"), &manifest)?;
    install(&mut staging, dir, name)?;
    drop(staging);
    collect_store(dir)?;
    println!(
        "{name}: built in {:.1} s, {:.1} MB ({:.1} MB shared with other runtimes), hash {}, {}",
        manifest.build_secs,
        manifest.size_bytes as f64 / 1e6,
        shared as f64 / 1e6,
        &manifest.hash[..12],
        manifest
            .languages
            .iter()
            .map(|p| format!("{} {}", p.language, p.version))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn build_image(image: ImageBuilder<'_>, root: &Path, m: &Manifest) -> anyhow::Result<String> {
    let prefix = format!("isobox-rt-{}:{}", m.name, short(&m.hash));
    image(root, &prefix).with_context(|| format!("{}: docker image {prefix}", m.name))
}

fn write_manifest(path: &Path, m: &Manifest) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(m)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

fn installed_packages(root: &Path) -> anyhow::Result<Vec<Package>> {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .arg("-W")
        .arg("-f=${Package}\t${Version}\n")
        .stdin(Stdio::null())
        .output()
        .context("cannot run dpkg-query")?;
    if !out.status.success() {
        bail!(
            "dpkg-query failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut v: Vec<Package> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, ver)| !ver.is_empty())
        .map(|(n, ver)| Package {
            name: n.to_string(),
            version: ver.to_string(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.dedup_by(|a, b| a.name == b.name);
    if v.is_empty() {
        bail!("dpkg-query lists no package in the new root");
    }
    Ok(v)
}

/// Each language's `version` command run in a native sandbox whose root is the new runtime.
fn probe_languages(
    def: &Definition,
    root: &Path,
    table: LanguageTable,
) -> anyhow::Result<Vec<Provided>> {
    if def.languages.is_empty() {
        return Ok(Vec::new());
    }
    let cfg = NativeConfig {
        rootfs: RootFs::Dir(root.to_path_buf()),
        ..NativeConfig::default()
    };
    let backend = NativeBackend::new(cfg).context("cannot start a sandbox on the new root")?;
    let exec = Executor::new(Arc::new(backend), table, Policy::default());
    let mut out = Vec::new();
    for l in &def.languages {
        let lang = exec.languages().get(l).expect("checked before the build");
        let version = exec.version(lang).with_context(|| {
            format!(
                "{}: `{}` printed no version inside the new root (is the toolchain among the \
                 packages?)",
                def.name,
                lang.version.join(" ")
            )
        })?;
        out.push(Provided {
            language: l.clone(),
            version,
        });
    }
    Ok(out)
}

/// `s` as one word of a POSIX shell line.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Where identical files of the runtimes are kept once: `<dir>/.store/<content hash>-<mode>-
/// <uid>-<gid>`, each a hard link of the files it stands for (same file system, read-only
/// roots: a root never writes a file, so sharing an inode shares nothing a run can change).
/// Debian's runtimes of one suite repeat the essential set, libc, gcc and LLVM: 38 runtimes
/// take 14 GB without it, 8.5 GB with it.
const STORE: &str = ".store";

/// An exclusive lock on the store, while files are linked into it or collected from it.
fn store_lock(dir: &Path) -> anyhow::Result<Lock> {
    Lock::take(dir, "_store")
}

/// Replaces every regular file of `root` that the store holds already by a hard link to it,
/// and adds the others. Returns the bytes shared (no longer taking space of their own).
fn dedup(dir: &Path, root: &Path) -> anyhow::Result<u64> {
    let store = dir.join(STORE);
    fs::create_dir_all(&store).with_context(|| format!("cannot create {}", store.display()))?;
    let _lock = store_lock(dir)?;
    let mut shared = 0;
    walk(root, &mut |_, abs, m| {
        if !m.file_type().is_file() || m.len() == 0 {
            return Ok(());
        }
        let mut h = blake3::Hasher::new();
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(abs)
            .with_context(|| format!("cannot read {}", abs.display()))?;
        std::io::copy(&mut f, &mut h)?;
        let key = store.join(format!(
            "{}-{:o}-{}-{}",
            h.finalize().to_hex(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ));
        match fs::hard_link(abs, &key) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let k = fs::symlink_metadata(&key)?;
                if (k.dev(), k.ino()) == (m.dev(), m.ino()) {
                    return Ok(()); // linked already
                }
                // The store has it: this path becomes another link of the stored inode (a
                // new name renamed over the old one, so the path is never missing).
                let tmp = abs.with_file_name(format!(
                    ".{}.isobox-link",
                    abs.file_name().map_or("f".into(), |n| n.to_string_lossy())
                ));
                let _ = fs::remove_file(&tmp);
                fs::hard_link(&key, &tmp)?;
                fs::rename(&tmp, abs)?;
                shared += m.len();
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("cannot link {}", key.display())),
        }
    })?;
    Ok(shared)
}

/// Removes the store's files no runtime links any more (after a removal or a replacement).
fn collect_store(dir: &Path) -> anyhow::Result<u64> {
    let store = dir.join(STORE);
    let Ok(rd) = fs::read_dir(&store) else {
        return Ok(0);
    };
    let _lock = store_lock(dir)?;
    let mut freed = 0;
    for e in rd.flatten() {
        let m = e.metadata()?;
        if m.file_type().is_file() && m.nlink() == 1 {
            fs::remove_file(e.path())?;
            freed += m.len();
        }
    }
    Ok(freed)
}

/// The first 12 hex digits of a hash (all of it when shorter).
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Visits every entry below `root` (not `root` itself) depth first, names in byte order, a
/// directory before its content; never follows a symlink. `f` gets the path relative to
/// `root`, the absolute path and the entry's own metadata.
fn walk(
    root: &Path,
    f: &mut dyn FnMut(&Path, &Path, &fs::Metadata) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    fn inner(
        abs: &Path,
        rel: &Path,
        f: &mut dyn FnMut(&Path, &Path, &fs::Metadata) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut names: Vec<_> = fs::read_dir(abs)
            .with_context(|| format!("cannot read {}", abs.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let (a, r) = (abs.join(&n), rel.join(&n));
            let m = fs::symlink_metadata(&a)?;
            f(&r, &a, &m)?;
            if m.is_dir() {
                inner(&a, &r, f)?;
            }
        }
        Ok(())
    }
    inner(root, Path::new(""), f)
}

/// The content hash of a root: blake3 over every directory, regular file and symlink in walk
/// order: path, type, permission bits, owner, size, then the content (files) or the target
/// (symlinks), each length-prefixed. Other entries (device nodes, fifos, sockets) are not part of
/// a runtime (builds remove them, imports skip them) and are left out.
pub fn tree_hash(root: &Path) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    let bytes = |h: &mut blake3::Hasher, b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    walk(root, &mut |rel, abs, m| {
        let t = m.file_type();
        let kind = if t.is_dir() {
            b'd'
        } else if t.is_file() {
            b'f'
        } else if t.is_symlink() {
            b'l'
        } else {
            return Ok(());
        };
        bytes(&mut h, rel.as_os_str().as_bytes());
        h.update(&[kind]);
        h.update(&(m.mode() & 0o7777).to_le_bytes());
        h.update(&m.uid().to_le_bytes());
        h.update(&m.gid().to_le_bytes());
        let size = if kind == b'f' { m.len() } else { 0 };
        h.update(&size.to_le_bytes());
        match kind {
            b'f' => {
                let mut file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(abs)
                    .with_context(|| format!("cannot read {}", abs.display()))?;
                let n = std::io::copy(&mut file, &mut h)?;
                if n != size {
                    bail!("{} changed while it was hashed", abs.display());
                }
            }
            b'l' => bytes(&mut h, fs::read_link(abs)?.as_os_str().as_bytes()),
            _ => {}
        }
        Ok(())
    })?;
    Ok(h.finalize().to_hex().to_string())
}

/// Bytes the tree takes on disk (allocated blocks, each inode once).
fn disk_usage(root: &Path) -> anyhow::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = fs::symlink_metadata(root)?.blocks() * 512;
    walk(root, &mut |_, _, m| {
        if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        Ok(())
    })?;
    Ok(total)
}

fn list(dir: &Path, json: bool, all: Option<Option<&Path>>) -> anyhow::Result<()> {
    let built = runtimes::scan(dir);
    let missing: Vec<Definition> = match all {
        Some(table) => definitions(table)?
            .runtimes
            .into_iter()
            .filter(|d| !built.iter().any(|r| r.manifest.name == d.name))
            .collect(),
        None => Vec::new(),
    };
    if json {
        let mut v: Vec<serde_json::Value> = built
            .iter()
            .map(|r| serde_json::to_value(&r.manifest))
            .collect::<Result<_, _>>()?;
        for d in &missing {
            v.push(serde_json::json!({
                "name": d.name, "suite": d.suite, "packages": d.packages,
                "languages": d.languages.iter().map(|l| serde_json::json!({"language": l})).collect::<Vec<_>>(),
                "built": false,
            }));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<28} {:>9} {:<20} hash",
        "name", "suite", "languages", "size", "built"
    );
    for r in &built {
        let m = &r.manifest;
        let langs = m
            .languages
            .iter()
            .map(|p| format!("{} {}", p.language, p.version))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{:<20} {:<10} {:<28} {:>6} MB {:<20} {}",
            m.name,
            m.suite,
            langs,
            m.size_bytes / 1_000_000,
            utc(m.built_at),
            short(&m.hash)
        );
    }
    for d in &missing {
        println!(
            "{:<20} {:<10} {:<28} {:>9} {:<20} -",
            d.name,
            d.suite,
            d.languages.join(", "),
            "-",
            "not built"
        );
    }
    if !built.is_empty() {
        // What the set offers: languages, versions, and the disk it takes (shared files once).
        let mut langs = std::collections::BTreeSet::new();
        let mut versions = std::collections::BTreeSet::new();
        for p in built.iter().flat_map(|r| &r.manifest.languages) {
            langs.insert(p.language.as_str());
            versions.insert((p.language.as_str(), p.version.as_str()));
        }
        let total: u64 = built.iter().map(|r| r.manifest.size_bytes).sum();
        println!(
            "{} runtimes: {} languages, {} language versions; {:.1} GB of roots, {:.1} GB on disk \
             (files shared between runtimes counted once)",
            built.len(),
            langs.len(),
            versions.len(),
            total as f64 / 1e9,
            disk_usage(dir).unwrap_or(0) as f64 / 1e9
        );
    }
    if built.is_empty() && missing.is_empty() {
        eprintln!(
            "no runtime in {} (`isobox runtime list --all` shows the definitions)",
            dir.display()
        );
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
fn utc(secs: u64) -> String {
    let t = isobox_core::utc::Utc::of_unix(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

fn remove(dir: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let _lock = Lock::take(dir, name)?;
    let p = dir.join(name);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "{} is not a directory (a symlink?): not removed",
            p.display()
        ),
        Err(_) => bail!("no runtime `{name}` in {}", dir.display()),
    }
    // Renamed first, so that a half-removed runtime is never seen under its name.
    let mut gone = Staging::new(dir, name)?;
    fs::remove_dir(&gone.path)?;
    fs::rename(&p, &gone.path).with_context(|| format!("cannot remove {}", p.display()))?;
    gone.keep = false;
    drop(gone);
    collect_store(dir)?;
    Ok(())
}

fn export(dir: &Path, name: &str, output: &Path) -> anyhow::Result<()> {
    check_name(name)?;
    let _lock = Lock::take(dir, name)?;
    let rt = load(dir, name)?;
    let started = Instant::now();
    let tmp = {
        let mut s = output.as_os_str().to_owned();
        s.push(format!(".tmp-{}", std::process::id()));
        PathBuf::from(s)
    };
    let result = (|| -> anyhow::Result<()> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let enc = zstd::Encoder::new(std::io::BufWriter::new(file), 3)?;
        let mut tar = tar::Builder::new(enc);
        tar.follow_symlinks(false);
        let manifest = fs::read(dir.join(name).join("manifest.json"))?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(manifest.len() as u64);
        h.set_mtime(rt.manifest.built_at);
        tar.append_data(&mut h, "manifest.json", manifest.as_slice())?;
        let root_meta = fs::symlink_metadata(&rt.root)?;
        append(&mut tar, Path::new("root"), &rt.root, &root_meta, &mut None)?;
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        walk(&rt.root, &mut |rel, abs, m| {
            let in_tar = Path::new("root").join(rel);
            let mut first = None;
            if m.is_file() && m.nlink() > 1 {
                match links.get(&(m.dev(), m.ino())) {
                    Some(p) => first = Some(p.clone()),
                    None => {
                        links.insert((m.dev(), m.ino()), in_tar.clone());
                    }
                }
            }
            append(&mut tar, &in_tar, abs, m, &mut first)
        })?;
        let enc = tar.into_inner()?;
        let w = enc.finish()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "exported {name} ({}) to {} ({:.1} MB) in {:.1} s",
        short(&rt.manifest.hash),
        output.display(),
        fs::metadata(output)?.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    in_tar: &Path,
    abs: &Path,
    m: &fs::Metadata,
    hardlink_to: &mut Option<PathBuf>,
) -> anyhow::Result<()> {
    let t = m.file_type();
    let mut h = tar::Header::new_gnu();
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid().into());
    h.set_gid(m.gid().into());
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(0);
    if let Some(target) = hardlink_to.take() {
        h.set_entry_type(tar::EntryType::Link);
        tar.append_link(&mut h, in_tar, target)?;
    } else if t.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut h, in_tar, std::io::empty())?;
    } else if t.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        tar.append_link(&mut h, in_tar, fs::read_link(abs)?)?;
    } else if t.is_file() {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(abs)
            .with_context(|| format!("cannot read {}", abs.display()))?;
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(m.len());
        tar.append_data(&mut h, in_tar, f.take(m.len()))?;
    }
    // Device nodes, fifos, sockets: not part of a runtime.
    Ok(())
}

/// A path of the archive below `root/`, as normal components only.
fn archive_path(p: &Path) -> anyhow::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir if out.is_empty() => {}
            _ => bail!(
                "archive entry `{}` is absolute or leaves its directory: refused",
                p.display()
            ),
        }
    }
    if out.first().map(|s| s.as_bytes()) != Some(b"root") {
        bail!("archive entry `{}` is outside root/: refused", p.display());
    }
    Ok(out)
}

/// Whether a symlink at `link` (components below the runtime's root, the last being the link)
/// with `target` stays inside the root. An absolute target is resolved by the sandbox inside the
/// root (the runtime is its `/`), like Debian's own `/etc/alternatives` links; a relative one
/// must not climb above the root.
fn symlink_inside(link_depth: usize, target: &Path) -> bool {
    if target.as_os_str().is_empty() {
        return false;
    }
    let mut depth = link_depth as i64;
    for c in target.components() {
        match c {
            Component::RootDir => depth = 0,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::Prefix(_) => return false,
        }
    }
    true
}

/// Imports a runtime; returns its name.
pub fn import(dir: &Path, file: &Path, force: bool) -> anyhow::Result<String> {
    let started = Instant::now();
    let f = fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let dec = zstd::Decoder::new(f).context("not a zstd file")?;
    let mut archive = tar::Archive::new(dec);
    let mut entries = archive
        .entries()
        .context("not an archive of `isobox runtime export`")?;
    // 1. The manifest, first.
    let mut first = entries
        .next()
        .context("empty archive")?
        .context("not an archive of `isobox runtime export`")?;
    if first.path()?.as_os_str().as_bytes() != b"manifest.json"
        || first.header().entry_type() != tar::EntryType::Regular
        || first.size() > MAX_MANIFEST
    {
        bail!("the archive does not start with manifest.json: not a runtime export");
    }
    let mut text = String::new();
    first
        .by_ref()
        .take(MAX_MANIFEST)
        .read_to_string(&mut text)?;
    let manifest: Manifest =
        serde_json::from_str(&text).context("the archive's manifest.json is not a manifest")?;
    check_name(&manifest.name).context("the archive's manifest names no valid runtime")?;
    if manifest.hash.len() != 64 || !manifest.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("the archive's manifest has no content hash");
    }
    let name = manifest.name.clone();
    let _lock = Lock::take(dir, &name)?;
    if let Ok(rt) = load(dir, &name) {
        if rt.manifest.hash == manifest.hash {
            println!(
                "{name}: already installed with hash {}, nothing to do",
                &manifest.hash[..12]
            );
            return Ok(name);
        }
        if !force {
            bail!(
                "a runtime `{name}` with another hash ({}) exists in {}: --force replaces it",
                short(&rt.manifest.hash),
                dir.display()
            );
        }
    }
    // 2. root/, unpacked into the staging directory.
    let mut staging = Staging::new(dir, &name)?;
    let base = staging.path.clone();
    let mut dirs: HashSet<PathBuf> = HashSet::new(); // directories made here, relative to base
    let mut files: HashSet<PathBuf> = HashSet::new(); // regular files made here
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let mut skipped = 0usize;
    // An archive unpacks to what its manifest says it holds (plus a margin for the file
    // system's rounding), and never to more than MAX_IMPORT: no archive fills the disk.
    let budget = manifest
        .size_bytes
        .saturating_add(64 << 20)
        .min(MAX_IMPORT_BYTES);
    let mut written: u64 = 0;
    let mut count: u64 = 0;
    for entry in entries {
        let mut entry = entry.context("damaged archive")?;
        count += 1;
        if count > MAX_IMPORT_ENTRIES {
            bail!("the archive holds more than {MAX_IMPORT_ENTRIES} entries: refused");
        }
        let raw = entry.path()?.into_owned();
        let parts = archive_path(&raw)?;
        let rel: PathBuf = parts.iter().collect();
        let parent = rel.parent().unwrap_or(Path::new(""));
        let kind = entry.header().entry_type();
        let is_top = parts.len() == 1;
        if is_top && kind != tar::EntryType::Directory {
            bail!("archive entry `root` is not a directory: refused");
        }
        // Every parent is a directory this import made: nothing is written through a symlink
        // (nor through anything else that was in the archive).
        if !is_top && !dirs.contains(parent) {
            bail!(
                "archive entry `{}` is not below a directory of the archive (a symlink?): refused",
                raw.display()
            );
        }
        let abs = base.join(&rel);
        let h = entry.header();
        let mode = h.mode()? & 0o1777; // setuid and setgid cleared
        let (uid, gid) = (h.uid()? as u32, h.gid()? as u32);
        let mtime = h.mtime().unwrap_or(0);
        match kind {
            tar::EntryType::Directory => {
                if dirs.contains(&rel) {
                    continue;
                }
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&abs)
                    .with_context(|| format!("archive entry `{}`", raw.display()))?;
                std::os::unix::fs::lchown(&abs, Some(uid), Some(gid))?;
                dir_modes.push((abs.clone(), mode));
                dirs.insert(rel);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                written = written.saturating_add(entry.size());
                if written > budget {
                    bail!(
                        "the archive unpacks to more than {} MB (its manifest says {} MB): refused",
                        budget / 1_000_000,
                        manifest.size_bytes / 1_000_000
                    );
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&abs)
                    .with_context(|| format!("archive entry `{}`", raw.display()))?;
                std::io::copy(&mut entry, &mut out)
                    .with_context(|| format!("archive entry `{}`", raw.display()))?;
                std::os::unix::fs::fchown(&out, Some(uid), Some(gid))?;
                out.set_permissions(fs::Permissions::from_mode(mode))?;
                let _ =
                    out.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
                files.insert(rel);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .context("symlink without a target")?
                    .into_owned();
                if !symlink_inside(parts.len() - 2, &target) {
                    bail!(
                        "archive symlink `{}` -> `{}` leaves the runtime's root: refused",
                        raw.display(),
                        target.display()
                    );
                }
                std::os::unix::fs::symlink(&target, &abs)
                    .with_context(|| format!("archive entry `{}`", raw.display()))?;
                std::os::unix::fs::lchown(&abs, Some(uid), Some(gid))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .context("hard link without a target")?
                    .into_owned();
                let to: PathBuf = archive_path(&target)
                    .with_context(|| format!("hard link `{}`", raw.display()))?
                    .iter()
                    .collect();
                if !files.contains(&to) {
                    bail!(
                        "archive hard link `{}` -> `{}` is not to a file of the archive: refused",
                        raw.display(),
                        target.display()
                    );
                }
                fs::hard_link(base.join(&to), &abs)
                    .with_context(|| format!("archive entry `{}`", raw.display()))?;
                files.insert(rel);
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                // The sandbox mounts its own /dev.
                skipped += 1;
            }
            other => bail!(
                "archive entry `{}` has an unsupported type ({other:?}): refused",
                raw.display()
            ),
        }
    }
    if !dirs.contains(Path::new("root")) {
        bail!("the archive holds no root/");
    }
    // Modes of directories last (a read-only directory would have refused its content),
    // deepest first.
    for (p, mode) in dir_modes.iter().rev() {
        fs::set_permissions(p, fs::Permissions::from_mode(*mode))?;
    }
    let hash = tree_hash(&base.join("root"))?;
    if hash != manifest.hash {
        bail!(
            "the content of {} does not match its manifest (hash {}, manifest {}): modified or \
             damaged, refused",
            file.display(),
            &hash[..12],
            &manifest.hash[..12]
        );
    }
    write_manifest(&base.join("manifest.json"), &manifest)?;
    dedup(dir, &base.join("root"))?;
    install(&mut staging, dir, &name)?;
    drop(staging);
    collect_store(dir)?;
    println!(
        "imported {name} ({}) into {} in {:.1} s{}",
        &manifest.hash[..12],
        dir.join(&name).display(),
        started.elapsed().as_secs_f64(),
        if skipped > 0 {
            format!(" ({skipped} device nodes skipped)")
        } else {
            String::new()
        }
    );
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside() {
        assert!(symlink_inside(0, Path::new("usr/bin")));
        assert!(symlink_inside(2, Path::new("../../etc/x")));
        assert!(symlink_inside(1, Path::new("/etc/alternatives/awk")));
        assert!(!symlink_inside(0, Path::new("../x")));
        assert!(!symlink_inside(1, Path::new("a/../../../x")));
        assert!(!symlink_inside(1, Path::new("")));
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
    }
}
