//! Runtimes: read-only root file systems built from Debian packages, each providing some
//! languages at the versions its suite ships (`python` 3.9 from bullseye, 3.11 from bookworm,
//! 3.13 from trixie, ...). What to build is data ([`RUNTIME_TABLE`], `runtimes.toml`); what was
//! built lives in the runtimes directory (`ISOBOX_RUNTIMES_DIR`, default `/var/lib/isobox/runtimes`),
//! one directory per runtime:
//!
//! ```text
//! <dir>/<name>/manifest.json   the Manifest below
//! <dir>/<name>/root/           the root file system (bound read-only into each sandbox)
//! ```
//!
//! A runtime directory without a readable manifest, or whose manifest names another runtime, is
//! ignored (a build in progress writes `<name>.tmp-*` and renames it into place when done).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The runtime definitions shipped with the binary.
pub const RUNTIME_TABLE: &str = include_str!("../runtimes.toml");

/// The default runtimes directory.
pub const DEFAULT_DIR: &str = "/var/lib/isobox/runtimes";

/// One runtime to build, as `runtimes.toml` writes it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Unique; a file name (`[a-z0-9][a-z0-9._-]*`).
    pub name: String,
    /// The Debian suite (`bullseye`, `bookworm`, `trixie`).
    pub suite: String,
    /// Debian packages installed on top of the suite's essential set.
    pub packages: Vec<String>,
    /// The languages (names of the language table) this runtime provides.
    pub languages: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Shell commands run inside the new root (chroot, as root, /proc mounted, with `env`) once
    /// the packages are installed: warm caches, precompiled headers. Part of the recipe.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Environment of the programs of this runtime's languages, over the language table's
    /// (for instance where a cache built by `setup` lives).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the table's `[snippet.NAME]`s whose setup lines (first) and env (under this
    /// runtime's own) it takes: what several runtimes share is written once. Merged when the
    /// table is parsed, so the recipe covers them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snippets: Vec<String>,
}

/// Setup lines and env shared by several runtimes (`[snippet.NAME]` of the table).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Snippet {
    #[serde(default)]
    pub setup: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Bumped when the build itself changes what a definition yields (what is stripped, the
/// hooks): every runtime built before is rebuilt.
pub const RECIPE_VERSION: u32 = 2;

impl Definition {
    /// blake3 (hex) of everything that decides the root: suite, packages, setup, env and the
    /// builder's [`RECIPE_VERSION`]. A runtime built from the same recipe is kept.
    pub fn recipe(&self) -> String {
        let v = serde_json::json!([
            RECIPE_VERSION,
            self.suite,
            self.packages,
            self.setup,
            self.env
        ]);
        blake3::hash(v.to_string().as_bytes()).to_hex().to_string()
    }
}

/// The runtime table: every definition.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Definitions {
    #[serde(rename = "runtime")]
    pub runtimes: Vec<Definition>,
    #[serde(
        default,
        rename = "snippet",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub snippets: BTreeMap<String, Snippet>,
}

impl Definitions {
    pub fn builtin() -> Definitions {
        Definitions::parse(RUNTIME_TABLE).expect("the built-in runtime table is valid")
    }

    pub fn parse(text: &str) -> Result<Definitions, CoreError> {
        let mut d: Definitions =
            toml::from_str(text).map_err(|e| CoreError::Config(format!("runtime table: {e}")))?;
        for r in &mut d.runtimes {
            for name in std::mem::take(&mut r.snippets) {
                let s = d.snippets.get(&name).ok_or_else(|| {
                    CoreError::Config(format!("runtime `{}`: no [snippet.{name}]", r.name))
                })?;
                r.setup.splice(0..0, s.setup.iter().cloned());
                for (k, v) in &s.env {
                    r.env.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &d.runtimes {
            if !valid_name(&r.name) {
                return Err(CoreError::Config(format!(
                    "runtime name `{}` must match [a-z0-9][a-z0-9._-]*",
                    r.name
                )));
            }
            if !seen.insert(r.name.clone()) {
                return Err(CoreError::Config(format!(
                    "runtime `{}` is defined twice",
                    r.name
                )));
            }
            if let Some(k) = r.env.keys().find(|k| !valid_env_name(k)) {
                return Err(CoreError::Config(format!(
                    "runtime `{}`: `{k}` is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    r.name
                )));
            }
            if r.setup
                .iter()
                .chain(r.env.values())
                .any(|s| s.contains('\0'))
            {
                return Err(CoreError::Config(format!(
                    "runtime `{}`: a setup line or env value holds a NUL byte",
                    r.name
                )));
            }
            if r.packages.iter().any(|p| !valid_package(p)) {
                return Err(CoreError::Config(format!(
                    "runtime `{}`: a package name is not a Debian package name",
                    r.name
                )));
            }
        }
        Ok(d)
    }

    pub fn get(&self, name: &str) -> Option<&Definition> {
        self.runtimes.iter().find(|r| r.name == name)
    }
}

/// A runtime name: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes (a directory and an image tag).
pub fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    name.len() <= 64
        && b.next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
}

fn valid_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A Debian package name (policy 5.6.1): `[a-z0-9][a-z0-9+.-]+`.
pub fn valid_package(name: &str) -> bool {
    let mut b = name.bytes();
    name.len() >= 2
        && name.len() <= 128
        && b.next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(&c))
}

/// An installed package of a runtime.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// A language a runtime provides, with the version its toolchain reports inside the runtime.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Provided {
    pub language: String,
    pub version: String,
}

/// What was built: `<dir>/<name>/manifest.json`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub suite: String,
    /// The packages asked for (the definition's).
    pub packages: Vec<String>,
    /// Every package installed, with its version (`dpkg-query` of the root).
    pub installed: Vec<Package>,
    pub languages: Vec<Provided>,
    /// Bytes of the root on disk.
    pub size_bytes: u64,
    pub build_secs: f64,
    /// Unix seconds.
    pub built_at: u64,
    /// blake3 (hex) over the root's tree: every path, type, mode, size and content (symlinks'
    /// targets), in path order. Keys of the dedup and compile caches include it.
    pub hash: String,
    /// The docker backend's image of this runtime, when one was built.
    #[serde(default)]
    pub image: Option<String>,
    /// The definition's recipe ([`Definition::recipe`]) it was built from.
    #[serde(default)]
    pub recipe: String,
    /// The definition's `env`: set for the programs of this runtime's languages.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A built runtime found in the runtimes directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub manifest: Manifest,
    pub root: PathBuf,
}

/// A manifest as runs read it: every field but `installed`, which is skipped unparsed (the
/// package list is most of the file's bytes; only operators and `isobox runtime list --json`
/// read it). Parsing the 38 manifests of a full runtimes directory this way takes ~1 ms
/// instead of ~1.5 ms, paid by every `isobox run` (docs/profile.md).
#[derive(Deserialize)]
struct ManifestForRuns {
    name: String,
    suite: String,
    packages: Vec<String>,
    #[allow(dead_code)]
    installed: serde::de::IgnoredAny,
    languages: Vec<Provided>,
    size_bytes: u64,
    build_secs: f64,
    built_at: u64,
    hash: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    recipe: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

impl From<ManifestForRuns> for Manifest {
    fn from(m: ManifestForRuns) -> Manifest {
        Manifest {
            name: m.name,
            suite: m.suite,
            packages: m.packages,
            installed: Vec::new(),
            languages: m.languages,
            size_bytes: m.size_bytes,
            build_secs: m.build_secs,
            built_at: m.built_at,
            hash: m.hash,
            image: m.image,
            recipe: m.recipe,
            env: m.env,
        }
    }
}

impl Runtime {
    /// The runtime in `dir` (`<dir>/manifest.json`, `<dir>/root/`), if complete.
    pub fn load(dir: &Path) -> Option<Runtime> {
        Runtime::load_with(dir, true)
    }

    /// [`Runtime::load`], without the manifest's `installed` list (left empty) unless
    /// `packages`.
    fn load_with(dir: &Path, packages: bool) -> Option<Runtime> {
        let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
        let manifest: Manifest = if packages {
            serde_json::from_str(&text).ok()?
        } else {
            serde_json::from_str::<ManifestForRuns>(&text).ok()?.into()
        };
        let name = dir.file_name()?.to_str()?;
        let root = dir.join("root");
        (manifest.name == name && valid_name(name) && root.is_dir())
            .then_some(Runtime { manifest, root })
    }

    /// The version of `language` this runtime provides.
    pub fn version_of(&self, language: &str) -> Option<&str> {
        self.manifest
            .languages
            .iter()
            .find(|p| p.language == language)
            .map(|p| p.version.as_str())
    }
}

/// The runtimes a backend can run, and the names of those it cannot: every one on the native
/// backend; on docker, those with an image (`isobox runtime build --docker`). A runtime left
/// out is not offered, so its languages and versions are not listed as available.
pub fn runnable(found: Vec<Runtime>, docker: bool) -> (Vec<Runtime>, Vec<String>) {
    let (ok, left): (Vec<Runtime>, Vec<Runtime>) = found
        .into_iter()
        .partition(|rt| !docker || rt.manifest.image.is_some());
    (ok, left.into_iter().map(|rt| rt.manifest.name).collect())
}

/// Every complete runtime in `dir`, by name (an absent directory holds none).
pub fn scan(dir: &Path) -> Vec<Runtime> {
    scan_with(dir, true)
}

/// [`scan`] for a service or a run: the manifests' `installed` package lists are skipped
/// (left empty), nothing else differs.
pub fn scan_for_runs(dir: &Path) -> Vec<Runtime> {
    scan_with(dir, false)
}

fn scan_with(dir: &Path, packages: bool) -> Vec<Runtime> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Runtime> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Runtime::load_with(&e.path(), packages))
        .collect();
    out.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    out
}

#[cfg(test)]
impl Manifest {
    /// A manifest of a trixie-like runtime `name` providing python `version` (nothing built).
    pub(crate) fn python_for_tests(name: &str, version: &str) -> Manifest {
        Manifest {
            name: name.into(),
            suite: "trixie".into(),
            packages: vec!["python3".into()],
            installed: vec![],
            languages: vec![Provided {
                language: "python".into(),
                version: version.into(),
            }],
            size_bytes: 0,
            build_secs: 0.0,
            built_at: 0,
            hash: format!("hash-of-{name}"),
            image: None,
            recipe: String::new(),
            env: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_parses() {
        let d = Definitions::builtin();
        assert!(!d.runtimes.is_empty());
    }

    #[test]
    fn names_and_packages() {
        for ok in ["python-trixie", "gcc12", "a.b_c-d"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", "A", "a/b", "..", ".x", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        for ok in [
            "python3",
            "g++",
            "libstdc++-12-dev",
            "openjdk-17-jdk-headless",
        ] {
            assert!(valid_package(ok), "{ok}");
        }
        for bad in ["", "x", "Python3", "-x", "a b", "a;b", "a/b"] {
            assert!(!valid_package(bad), "{bad}");
        }
    }

    #[test]
    fn bad_tables_are_refused() {
        for bad in [
            "[[runtime]]\nname = \"A\"\nsuite = \"trixie\"\npackages = []\nlanguages = []\n",
            "[[runtime]]\nname = \"a\"\nsuite = \"trixie\"\npackages = [\"x;y\"]\nlanguages = []\n",
            "[[runtime]]\nname = \"a\"\nsuite = \"t\"\npackages = []\nlanguages = []\n[[runtime]]\nname = \"a\"\nsuite = \"t\"\npackages = []\nlanguages = []\n",
            "[[runtime]]\nname = \"a\"\nsuite = \"t\"\npackages = []\nlanguages = []\nenv = { \"A=B\" = \"x\" }\n",
            "[[runtime]]\nname = \"a\"\nsuite = \"t\"\npackages = []\nlanguages = []\nsetup = [\"a\\u0000b\"]\n",
            "[[runtime]]\nname = \"a\"\nsuite = \"t\"\npackages = []\nlanguages = []\nsnippets = [\"none\"]\n",
        ] {
            assert!(Definitions::parse(bad).is_err(), "{bad}");
        }
    }

    /// A runtime takes its snippets' setup lines before its own and their env under its own;
    /// the recipe is the merged one's.
    #[test]
    fn snippets_are_merged_into_the_runtimes() {
        let d = Definitions::parse(
            "[snippet.s]\nsetup = [\"one\"]\nenv = { A = \"snippet\", B = \"snippet\" }\n\
             [[runtime]]\nname = \"a\"\nsuite = \"t\"\npackages = []\nlanguages = []\n\
             snippets = [\"s\"]\nsetup = [\"two\"]\nenv = { B = \"own\" }\n\
             [[runtime]]\nname = \"b\"\nsuite = \"t\"\npackages = []\nlanguages = []\n\
             setup = [\"one\", \"two\"]\nenv = { A = \"snippet\", B = \"own\" }\n",
        )
        .unwrap();
        let (a, b) = (&d.runtimes[0], &d.runtimes[1]);
        assert_eq!(a.setup, ["one", "two"]);
        assert_eq!(a.env["A"], "snippet");
        assert_eq!(a.env["B"], "own");
        assert!(a.snippets.is_empty());
        assert_eq!(a.recipe(), b.recipe());
        let builtin = Definitions::builtin();
        for name in ["gcc-bullseye", "gcc-bookworm", "gcc-trixie"] {
            assert!(
                builtin.get(name).unwrap().setup[0].contains("stdc++.h"),
                "{name}"
            );
        }
        for name in ["java-bullseye", "java-bookworm", "java-trixie"] {
            let d = builtin.get(name).unwrap();
            assert!(
                d.env["ISOBOX_JAVAC_OPTIONS"].contains("javac.jsa"),
                "{name}"
            );
        }
    }

    /// Whatever decides the root changes the recipe (a rebuild); the description does not.
    #[test]
    fn the_recipe_covers_what_decides_the_root() {
        let base = Definitions::parse(
            "[[runtime]]\nname = \"a\"\nsuite = \"trixie\"\npackages = [\"python3\"]\nlanguages = []\n",
        )
        .unwrap()
        .runtimes
        .remove(0);
        let r = base.recipe();
        assert_eq!(r, base.clone().recipe());
        let mut d = base.clone();
        d.description = "other words".into();
        assert_eq!(d.recipe(), r);
        let changes: [fn(&mut Definition); 4] = [
            |d| d.suite = "bookworm".into(),
            |d| d.packages.push("gcc".into()),
            |d| d.setup.push("true".into()),
            |d| {
                d.env.insert("X".into(), "1".into());
            },
        ];
        for change in changes {
            let mut d = base.clone();
            change(&mut d);
            assert_ne!(d.recipe(), r, "{d:?}");
        }
    }

    #[test]
    fn scan_finds_complete_runtimes_only() {
        let dir = std::env::temp_dir().join(format!("isobox-rt-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let manifest = |name: &str| Manifest::python_for_tests(name, "3.13.5");
        for (dir_name, m, root) in [
            ("good", Some(manifest("good")), true),
            ("noroot", Some(manifest("noroot")), false),
            ("other", Some(manifest("elsewhere")), true),
            ("nomanifest", None, true),
        ] {
            let d = dir.join(dir_name);
            std::fs::create_dir_all(&d).unwrap();
            if root {
                std::fs::create_dir_all(d.join("root")).unwrap();
            }
            if let Some(m) = m {
                std::fs::write(d.join("manifest.json"), serde_json::to_string(&m).unwrap())
                    .unwrap();
            }
        }
        let found = scan(&dir);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].manifest.name, "good");
        assert_eq!(found[0].version_of("python"), Some("3.13.5"));
        assert_eq!(found[0].version_of("ruby"), None);
        assert!(scan(&dir.join("absent")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_scan_for_runs_skips_only_the_package_list() {
        let dir = std::env::temp_dir().join(format!("isobox-rt-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut m = Manifest::python_for_tests("py", "3.13.5");
        m.installed = (0..500)
            .map(|i| Package {
                name: format!("lib{i}"),
                version: format!("1.{i}"),
            })
            .collect();
        m.image = Some("isobox-runtime-py:abc".into());
        m.recipe = "recipe".into();
        m.env
            .insert("JAVA_TOOL_OPTIONS".into(), "-Xshare:auto".into());
        m.size_bytes = 7;
        m.build_secs = 1.5;
        m.built_at = 9;
        std::fs::create_dir_all(dir.join("py/root")).unwrap();
        std::fs::write(
            dir.join("py/manifest.json"),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        let full = scan(&dir);
        assert_eq!(full[0].manifest, m);
        let runs = scan_for_runs(&dir);
        assert_eq!(runs.len(), 1);
        assert!(runs[0].manifest.installed.is_empty());
        assert_eq!(
            runs[0].manifest,
            Manifest {
                installed: Vec::new(),
                ..m.clone()
            }
        );
        assert_eq!(runs[0].root, full[0].root);
        // A manifest that the full scan refuses is refused here too.
        std::fs::write(dir.join("py/manifest.json"), r#"{"name":"py"}"#).unwrap();
        assert!(scan(&dir).is_empty());
        assert!(scan_for_runs(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
