//! The execution service: the backend, the server's bounds ([`Policy`]), the languages this host
//! can run and their versions. Validation of a request is in [`crate::submission`]; its plan
//! (the backend's spec) and its run in [`crate::plan`]; the public result in [`crate::result`].

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use isobox_sandbox::{Backend, ExecSpec, Limits, SandboxError};
use regex::Regex;
use serde::Serialize;

use crate::languages::{Language, LanguageTable};
use crate::result::text;
use crate::runtimes::Runtime;
use crate::CoreError;

/// Server-side bounds and defaults.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Limits used when neither the request nor the language says otherwise.
    pub defaults: RequestLimitsResolved,
    /// The most any request may get.
    pub max: RequestLimitsResolved,
    pub max_files: usize,
    pub max_source_bytes: usize,
    pub max_stdin_bytes: usize,
    pub max_args: usize,
    pub max_arg_bytes: usize,
    pub tmpfs_bytes: u64,
    pub tmpfs_inodes: u64,
    pub max_file_bytes: u64,
    /// Test cases in one request.
    pub max_tests: usize,
    /// The tests' stdin and expected outputs, in all.
    pub max_tests_bytes: usize,
    /// `outputs` patterns in one request.
    pub max_output_patterns: usize,
    /// Result files returned by one run, and their bytes in all.
    pub max_output_files: usize,
    pub max_output_files_bytes: u64,
    /// Compiler options in one request.
    pub max_compile_args: usize,
}

/// A complete set of run limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLimitsResolved {
    pub timeout_ms: u64,
    pub cpu_time_ms: u64,
    pub memory_mb: u64,
    pub max_processes: u32,
    pub max_output_bytes: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            defaults: RequestLimitsResolved {
                timeout_ms: 5_000,
                cpu_time_ms: 5_000,
                memory_mb: 256,
                max_processes: 64,
                max_output_bytes: 64 * 1024,
            },
            max: RequestLimitsResolved {
                timeout_ms: 30_000,
                cpu_time_ms: 30_000,
                memory_mb: 2048,
                max_processes: 256,
                max_output_bytes: 4 << 20,
            },
            max_files: 32,
            max_source_bytes: 1 << 20,
            max_stdin_bytes: 1 << 20,
            max_args: 64,
            max_arg_bytes: 4096,
            tmpfs_bytes: 64 << 20,
            tmpfs_inodes: 16 * 1024,
            max_file_bytes: 16 << 20,
            max_tests: 100,
            max_tests_bytes: 16 << 20,
            max_output_patterns: 16,
            max_output_files: 16,
            max_output_files_bytes: 8 << 20,
            max_compile_args: 32,
        }
    }
}

/// The execution service. Cheap to share; `execute` is blocking (run it off the async runtime).
pub struct Executor {
    backend: Arc<dyn Backend>,
    languages: LanguageTable,
    policy: Policy,
    patterns: crate::patterns::PatternPolicy,
    compile_cache: Arc<crate::compile_cache::CompileCache>,
    runtimes: RwLock<Arc<RuntimeSet>>,
}

/// Makes the sandbox backend of a runtime (one whose root is the runtime's), when a run first
/// needs it.
pub type BackendMaker =
    Arc<dyn Fn(&Runtime) -> Result<Arc<dyn Backend>, SandboxError> + Send + Sync>;

/// A built runtime the executor offers, with its backend once made.
pub struct BoundRuntime {
    pub runtime: Runtime,
    backend: OnceLock<Result<Arc<dyn Backend>, String>>,
    make: BackendMaker,
}

impl std::fmt::Debug for BoundRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundRuntime")
            .field("name", &self.runtime.manifest.name)
            .field("hash", &self.runtime.manifest.hash)
            .finish()
    }
}

impl BoundRuntime {
    pub fn name(&self) -> &str {
        &self.runtime.manifest.name
    }

    /// The runtime's backend, made on first use.
    pub fn backend(&self) -> Result<Arc<dyn Backend>, CoreError> {
        self.backend
            .get_or_init(|| (self.make)(&self.runtime).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| {
                CoreError::Config(format!(
                    "the sandbox of runtime {} cannot start: {e}",
                    self.name()
                ))
            })
    }

    /// The backend, if one was made (nothing is started to be stopped).
    pub fn started(&self) -> Option<Arc<dyn Backend>> {
        self.backend.get().and_then(|b| b.as_ref().ok().cloned())
    }
}

/// The runtimes an executor offers, and whether the host's toolchains count as one (`host`).
struct RuntimeSet {
    bound: Vec<Arc<BoundRuntime>>,
    make: Option<BackendMaker>,
    host: bool,
    /// Runtimes a rescan dropped whose backend had started: runs may still use them, so they
    /// are stopped with the executor's other backends ([`Executor::started_backends`]).
    retired: Vec<Arc<BoundRuntime>>,
}

/// Where a language at a version comes from: the host's toolchains or a runtime.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub version: String,
    pub runtime: Option<Arc<BoundRuntime>>,
}

impl Candidate {
    /// `host`, or the runtime's name.
    pub fn runtime_name(&self) -> &str {
        self.runtime.as_ref().map_or("host", |r| r.name())
    }
}

/// Language info for `isobox languages` and `GET /api/v1/languages`: one entry per language
/// and version (each runtime providing it, and the host's toolchains when they count).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LanguageInfo {
    pub name: String,
    pub aliases: Vec<String>,
    pub version: String,
    pub compiled: bool,
    /// False when no runtime provides it and the host's toolchain is missing (or does not
    /// count): such languages cannot be requested.
    pub available: bool,
    /// `host`, or the name of the runtime it comes from.
    pub runtime: String,
}

impl Executor {
    pub fn new(backend: Arc<dyn Backend>, languages: LanguageTable, policy: Policy) -> Executor {
        Executor {
            backend,
            languages,
            policy,
            patterns: Default::default(),
            compile_cache: crate::compile_cache::CompileCache::new(Default::default()),
            runtimes: RwLock::new(Arc::new(RuntimeSet {
                bound: Vec::new(),
                make: None,
                host: true,
                retired: Vec::new(),
            })),
        }
    }

    /// Offers `runtimes` (their backends made by `make` when first used); with `host` false,
    /// the host's toolchains are not offered (the production setting: nothing of the host's
    /// /usr is visible to any run).
    pub fn with_runtimes(self, runtimes: Vec<Runtime>, make: BackendMaker, host: bool) -> Executor {
        *self.runtimes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(RuntimeSet {
            bound: bind(runtimes, &make, &[]),
            make: Some(make),
            host,
            retired: Vec::new(),
        });
        self
    }

    /// Replaces the runtimes offered (a rescan of the runtimes directory, on SIGHUP): a runtime
    /// whose name and hash are unchanged keeps its backend; runs already going keep theirs.
    pub fn set_runtimes(&self, runtimes: Vec<Runtime>) {
        let mut guard = self.runtimes.write().unwrap_or_else(|e| e.into_inner());
        let Some(make) = guard.make.clone() else {
            return;
        };
        let bound = bind(runtimes, &make, &guard.bound);
        let mut retired = guard.retired.clone();
        retired.extend(
            guard
                .bound
                .iter()
                .filter(|old| old.started().is_some() && !bound.iter().any(|b| Arc::ptr_eq(b, old)))
                .cloned(),
        );
        *guard = Arc::new(RuntimeSet {
            bound,
            make: Some(make),
            host: guard.host,
            retired,
        });
    }

    /// Every backend started: the host's, and each runtime's (offered or retired by a rescan)
    /// that ran something. Stopping the service cancels and shuts down all of them.
    pub fn started_backends(&self) -> Vec<Arc<dyn Backend>> {
        let set = self
            .runtimes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut v = vec![self.backend.clone()];
        v.extend(
            set.bound
                .iter()
                .chain(&set.retired)
                .filter_map(|b| b.started()),
        );
        v
    }

    /// The runtimes offered now.
    pub fn runtimes(&self) -> Vec<Arc<BoundRuntime>> {
        self.runtimes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .bound
            .clone()
    }

    /// Whether the host's toolchains are offered.
    pub fn host_offered(&self) -> bool {
        self.runtimes.read().unwrap_or_else(|e| e.into_inner()).host
    }

    /// Where `lang` can come from: each runtime providing it, and the host when offered and
    /// its toolchain is there; the newest version first (the host first among equals).
    pub fn candidates(&self, lang: &Language) -> Vec<Candidate> {
        let set = self
            .runtimes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = Vec::new();
        if set.host && self.available(lang) {
            out.push(Candidate {
                version: self.version(lang).unwrap_or_default(),
                runtime: None,
            });
        }
        for b in &set.bound {
            if let Some(v) = b.runtime.version_of(&lang.name) {
                out.push(Candidate {
                    version: v.to_string(),
                    runtime: Some(b.clone()),
                });
            }
        }
        // Stable: the host stays first among equal versions.
        out.sort_by_key(|c| std::cmp::Reverse(version_key(&c.version)));
        out
    }

    /// The backend of a run from `runtime` (`None`: the host's).
    pub fn backend_of(
        &self,
        runtime: Option<&Arc<BoundRuntime>>,
    ) -> Result<Arc<dyn Backend>, CoreError> {
        match runtime {
            Some(r) => r.backend(),
            None => Ok(self.backend.clone()),
        }
    }

    /// Bounds the compile cache (`max_bytes` 0 disables it).
    pub fn with_compile_cache(mut self, cfg: crate::compile_cache::CompileCacheConfig) -> Executor {
        self.compile_cache = crate::compile_cache::CompileCache::new(cfg);
        self
    }

    pub fn compile_cache(&self) -> &Arc<crate::compile_cache::CompileCache> {
        &self.compile_cache
    }

    /// Refuses submissions matching `patterns` (422).
    pub fn with_patterns(mut self, patterns: crate::patterns::PatternPolicy) -> Executor {
        self.patterns = patterns;
        self
    }

    pub fn languages(&self) -> &LanguageTable {
        &self.languages
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn patterns(&self) -> &crate::patterns::PatternPolicy {
        &self.patterns
    }

    /// Whether every command the language needs exists in the sandbox.
    pub fn available(&self, lang: &Language) -> bool {
        lang.required_commands()
            .iter()
            .all(|c| self.backend.has_command(c))
    }

    /// The toolchain version, probed once in the sandbox. Kept in the backend's state directory
    /// (`versions/<language>`, with the toolchain's fingerprint) when the backend offers one,
    /// so that a new process (`isobox run`, a restarted server) skips the probe until the
    /// toolchain file changes.
    pub fn version(&self, lang: &Language) -> Option<String> {
        lang.version_cache
            .get_or_init(|| {
                if lang.version.is_empty() || !self.available(lang) {
                    return None;
                }
                let stored = self.stored_version(lang);
                if let Some((_, _, Some(v))) = &stored {
                    return Some(v.clone());
                }
                let limits = Limits {
                    wall: Duration::from_secs(10),
                    cpu: Duration::from_secs(10),
                    memory_bytes: 512 << 20,
                    max_processes: 64,
                    ..Limits::default()
                };
                let spec = ExecSpec::single(lang.version.clone(), env_of(lang, None), limits);
                let report = self.backend.execute(&spec).ok()?;
                let p = report.phases.first()?;
                let all = format!("{}\n{}", text(&p.stdout), text(&p.stderr));
                let re = Regex::new(r"\d+(?:\.\d+)+").expect("valid regex");
                let version = re.find(&all).map(|m| m.as_str().to_string())?;
                if let Some((path, fingerprint, _)) = stored {
                    store_version(&path, &fingerprint, &version);
                }
                Some(version)
            })
            .clone()
    }

    /// The cache file of `lang`'s version, the toolchain's fingerprint now, and the version the
    /// file holds for that fingerprint (`None` if absent, stale or unreadable); `None` overall
    /// when there is nowhere to keep it.
    fn stored_version(
        &self,
        lang: &Language,
    ) -> Option<(std::path::PathBuf, String, Option<String>)> {
        let safe = !lang.name.is_empty()
            && lang
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+#._-".contains(&b))
            && !lang.name.starts_with('.');
        if !safe {
            return None;
        }
        let path = self.backend.state_dir()?.join("versions").join(&lang.name);
        let fingerprint = self.backend.toolchain_fingerprint(lang.version.first()?)?;
        let held = std::fs::read_to_string(&path).ok().and_then(|text| {
            let (fp, version) = text.split_once('\n')?;
            let version = version.trim();
            (fp == fingerprint && !version.is_empty()).then(|| version.to_string())
        });
        Some((path, fingerprint, held))
    }

    /// Every language with each version and where it comes from (host versions probed in
    /// parallel); a language nothing provides is listed once, unavailable.
    pub fn list_languages(&self) -> Vec<LanguageInfo> {
        let per_language: Vec<Vec<Candidate>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .languages
                .all()
                .iter()
                .map(|l| s.spawn(move || self.candidates(l)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut out = Vec::new();
        for (l, candidates) in self.languages.all().iter().zip(per_language) {
            let info = |version: String, available: bool, runtime: &str| LanguageInfo {
                name: l.name.clone(),
                aliases: l.aliases.clone(),
                version,
                compiled: l.compiled(),
                available,
                runtime: runtime.to_string(),
            };
            if candidates.is_empty() {
                out.push(info(String::new(), false, "host"));
            }
            for c in &candidates {
                out.push(info(c.version.clone(), true, c.runtime_name()));
            }
        }
        out
    }
}

/// Makes the bindings of `runtimes`, reusing those of `old` with the same name and hash.
fn bind(
    runtimes: Vec<Runtime>,
    make: &BackendMaker,
    old: &[Arc<BoundRuntime>],
) -> Vec<Arc<BoundRuntime>> {
    runtimes
        .into_iter()
        .map(|r| {
            old.iter()
                .find(|b| b.runtime == r)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(BoundRuntime {
                        runtime: r,
                        backend: OnceLock::new(),
                        make: make.clone(),
                    })
                })
        })
        .collect()
}

/// A version as numbers for ordering (`3.11.2` > `3.9.18`); what is not a number counts 0.
pub fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// The environment of a language's programs: the language table's, then the runtime's
/// (a runtime's value wins).
pub(crate) fn env_of(lang: &Language, runtime: Option<&BoundRuntime>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = lang
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(rt) = runtime {
        for (k, v) in &rt.runtime.manifest.env {
            match env.iter_mut().find(|(name, _)| name == k) {
                Some(e) => e.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
    }
    env
}

/// Writes `fingerprint` and `version` to `path` (atomically: a temporary file, then a rename);
/// failures only cost a probe next time.
fn store_version(path: &std::path::Path, fingerprint: &str, version: &str) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(
        ".{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("v"),
        std::process::id()
    ));
    if std::fs::write(&tmp, format!("{fingerprint}\n{version}\n")).is_ok()
        && std::fs::rename(&tmp, path).is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod runtime_tests {
    use super::*;
    use crate::runtimes::Manifest;
    use isobox_sandbox::{ExecReport, PhaseReport, RunIo, Status};

    /// A backend that runs nothing: it answers every program with its own name on stdout, so a
    /// test sees which backend (host or which runtime) a run went to. (The real backends are
    /// tested with real roots in tests/runtimes.rs.)
    struct Named(&'static str, bool);

    impl Backend for Named {
        fn name(&self) -> &'static str {
            "native"
        }
        fn execute_io(
            &self,
            spec: &ExecSpec,
            _io: &mut dyn RunIo,
        ) -> Result<ExecReport, SandboxError> {
            let mut p = isobox_sandbox::not_started(&spec.phases[0], Status::Ok);
            p.exit_code = Some(0);
            p.stdout = if spec.phases[0].argv[0] == "python3"
                && spec.phases[0].argv.len() == 2
                && spec.phases[0].argv[1] == "--version"
            {
                b"Python 3.11.2\n".to_vec()
            } else {
                self.0.as_bytes().to_vec()
            };
            let phases: Vec<PhaseReport> = spec.phases.iter().map(|_| p.clone()).collect();
            Ok(ExecReport {
                phases,
                setup_time: Duration::ZERO,
                total_time: Duration::ZERO,
                warm: false,
                collected: None,
            })
        }
        fn has_command(&self, _cmd: &str) -> bool {
            self.1
        }
    }

    fn runtime(name: &str, version: &str) -> Runtime {
        Runtime {
            manifest: Manifest::python_for_tests(name, version),
            root: std::path::PathBuf::from("/nonexistent"),
        }
    }

    fn executor(host: bool, host_has_python: bool) -> Executor {
        let make: BackendMaker = Arc::new(|rt: &Runtime| {
            let name: &'static str = Box::leak(rt.manifest.name.clone().into_boxed_str());
            Ok(Arc::new(Named(name, true)) as Arc<dyn Backend>)
        });
        Executor::new(
            Arc::new(Named("host", host_has_python)),
            LanguageTable::builtin(),
            Policy::default(),
        )
        .with_runtimes(
            vec![
                runtime("python-bullseye", "3.9.2"),
                runtime("python-trixie", "3.13.5"),
                runtime("python-bookworm", "3.11.2"),
            ],
            make,
            host,
        )
    }

    fn runs_in(ex: &Executor, version: Option<&str>) -> Result<(String, String), CoreError> {
        let r = ex.execute(&crate::ExecuteRequest {
            language: "python".into(),
            version: version.map(str::to_string),
            code: Some("print(1)".into()),
            ..Default::default()
        })?;
        Ok((r.version.clone(), r.stdout.clone()))
    }

    /// A runtime's backend is stopped with the service even after a rescan dropped it (runs
    /// may still use it); backends never started are not started to be stopped.
    #[test]
    fn started_backends_include_the_retired_ones() {
        let ex = executor(true, true);
        assert_eq!(ex.started_backends().len(), 1);
        assert_eq!(runs_in(&ex, Some("3.9")).unwrap().1, "python-bullseye");
        assert_eq!(ex.started_backends().len(), 2);
        ex.set_runtimes(vec![runtime("python-trixie", "3.13.5")]);
        assert_eq!(ex.runtimes().len(), 1);
        assert_eq!(
            ex.started_backends().len(),
            2,
            "the host's and the retired python-bullseye's"
        );
        ex.set_runtimes(vec![]);
        assert_eq!(ex.started_backends().len(), 2, "retired once, listed once");
    }

    /// `{env:NAME}` in a command becomes the words of NAME in the runtime's env (java's
    /// compiler archive), and nothing where it is unset (the host).
    #[test]
    fn env_placeholder_expands_to_the_runtime_s_words() {
        let table = LanguageTable::parse(
            "[[language]]\nname = \"python\"\naliases = []\nextensions = [\"py\"]\n\
             file = \"main.py\"\nrun = [\"python3\", \"{env:ISOBOX_OPTS}\", \"{file}\"]\n\
             version = [\"python3\", \"--version\"]\nrequires = [\"python3\"]\n",
        )
        .unwrap();
        let mut rt = runtime("python-bullseye", "3.9.2");
        rt.manifest
            .env
            .insert("ISOBOX_OPTS".into(), " -X  importtime\t-B ".into());
        let make: BackendMaker =
            Arc::new(|_: &Runtime| Ok(Arc::new(Named("rt", true)) as Arc<dyn Backend>));
        let ex = Executor::new(Arc::new(Named("host", true)), table, Policy::default())
            .with_runtimes(vec![rt], make, true);
        let argv = |version: &str| {
            let sub = ex
                .submission(&crate::ExecuteRequest {
                    language: "python".into(),
                    version: Some(version.into()),
                    code: Some("print(1)".into()),
                    ..Default::default()
                })
                .unwrap();
            ex.run_spec(&sub).phases[0].argv.clone()
        };
        assert_eq!(
            argv("3.9"),
            ["python3", "-X", "importtime", "-B", "main.py"]
        );
        assert_eq!(argv("3.11"), ["python3", "main.py"]);
    }

    /// A runtime's env goes over the language's (go-trixie's seed of the build cache).
    #[test]
    fn a_runtime_env_goes_over_the_language_env() {
        let table = LanguageTable::builtin();
        let go = table.get("go").unwrap();
        let mut rt = runtime("go-trixie", "1.24.4");
        rt.manifest.env.insert(
            "ISOBOX_GOCACHE_SEED".into(),
            "/usr/lib/isobox/go-cache".into(),
        );
        rt.manifest
            .env
            .insert("GOPATH".into(), "/tmp/elsewhere".into());
        let make: BackendMaker =
            Arc::new(|_: &Runtime| Err(SandboxError::Unsupported("unused".into())));
        let bound = BoundRuntime {
            runtime: rt,
            backend: OnceLock::new(),
            make,
        };
        let env = env_of(go, Some(&bound));
        let get = |k: &str| {
            env.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("ISOBOX_GOCACHE_SEED"), ["/usr/lib/isobox/go-cache"]);
        assert_eq!(get("GOPATH"), ["/tmp/elsewhere"]);
        assert_eq!(get("GOCACHE"), ["/tmp/.cache/go-build"]);
        assert_eq!(get("ISOBOX_GOCACHE_SEED").len(), 1);
        assert!(env_of(go, None)
            .iter()
            .all(|(k, _)| k != "ISOBOX_GOCACHE_SEED"));
    }

    #[test]
    fn a_version_picks_its_runtime() {
        let ex = executor(true, true);
        let at = |v| runs_in(&ex, v).unwrap();
        // Newest by default; the host wins a tie (3.11.2 on both).
        assert_eq!(at(None), ("3.13.5".into(), "python-trixie".into()));
        assert_eq!(at(Some("*")), ("3.13.5".into(), "python-trixie".into()));
        assert_eq!(at(Some("3.9")), ("3.9.2".into(), "python-bullseye".into()));
        assert_eq!(at(Some("3.11")), ("3.11.2".into(), "host".into()));
        assert_eq!(at(Some("3")), ("3.13.5".into(), "python-trixie".into()));
        assert_eq!(
            at(Some("python-bookworm")),
            ("3.11.2".into(), "python-bookworm".into())
        );
        match runs_in(&ex, Some("2.7")) {
            Err(CoreError::VersionUnavailable { have, .. }) => {
                assert_eq!(have, "3.13.5, 3.11.2, 3.11.2, 3.9.2")
            }
            other => panic!("{other:?}"),
        }
        // Every version listed, with where it comes from, newest first.
        let listed: Vec<(String, String)> = ex
            .list_languages()
            .into_iter()
            .filter(|l| l.name == "python")
            .map(|l| (l.version, l.runtime))
            .collect();
        assert_eq!(
            listed,
            [
                ("3.13.5".into(), "python-trixie".into()),
                ("3.11.2".into(), "host".into()),
                ("3.11.2".into(), "python-bookworm".into()),
                ("3.9.2".into(), "python-bullseye".into()),
            ]
        );
    }

    #[test]
    fn without_the_host_only_runtimes_count() {
        let ex = executor(false, true);
        assert_eq!(
            runs_in(&ex, Some("3.11")).unwrap(),
            ("3.11.2".into(), "python-bookworm".into())
        );
        // A language no runtime provides is unavailable, even if the host has it.
        let err = ex
            .execute(&crate::ExecuteRequest {
                language: "ruby".into(),
                code: Some("p 1".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, CoreError::LanguageUnavailable(_)), "{err:?}");
    }

    #[test]
    fn a_rescan_offers_new_runtimes_and_drops_removed_ones() {
        let ex = executor(false, false);
        let before = ex.runtimes();
        ex.set_runtimes(vec![
            runtime("python-trixie", "3.13.5"),
            runtime("python-forky", "3.14.0"),
        ]);
        assert_eq!(
            runs_in(&ex, None).unwrap(),
            ("3.14.0".into(), "python-forky".into())
        );
        assert!(matches!(
            runs_in(&ex, Some("3.9")),
            Err(CoreError::VersionUnavailable { .. })
        ));
        // An unchanged runtime keeps its binding (and its backend).
        let trixie = |v: &[Arc<BoundRuntime>]| {
            v.iter()
                .find(|b| b.name() == "python-trixie")
                .cloned()
                .unwrap()
        };
        assert!(Arc::ptr_eq(&trixie(&before), &trixie(&ex.runtimes())));
    }

    #[test]
    fn versions_order_numerically() {
        assert!(version_key("3.11.2") > version_key("3.9.18"));
        assert!(version_key("21.0.5") > version_key("17.0.15"));
        assert_eq!(version_key("1.85.0"), vec![1, 85, 0]);
    }
}
