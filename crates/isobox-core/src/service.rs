//! The execution service: the backend, the server's bounds ([`Policy`]), the languages this host
//! can run and their versions. Validation of a request is in [`crate::submission`]; its plan
//! (the backend's spec) and its run in [`crate::plan`]; the public result in [`crate::result`].

use std::sync::Arc;
use std::time::Duration;

use isobox_sandbox::{Backend, ExecSpec, Limits};
use regex::Regex;
use serde::Serialize;

use crate::languages::{Language, LanguageTable};
use crate::result::text;

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
}

/// Language info for `isobox languages` and `GET /api/v1/languages`.
#[derive(Debug, Clone, Serialize)]
pub struct LanguageInfo {
    pub name: String,
    pub aliases: Vec<String>,
    pub version: String,
    pub compiled: bool,
    /// False when the toolchain is missing on this host; such languages cannot be requested.
    pub available: bool,
}

impl Executor {
    pub fn new(backend: Arc<dyn Backend>, languages: LanguageTable, policy: Policy) -> Executor {
        Executor {
            backend,
            languages,
            policy,
            patterns: Default::default(),
            compile_cache: crate::compile_cache::CompileCache::new(Default::default()),
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
                let spec = ExecSpec::single(lang.version.clone(), env_of(lang), limits);
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

    /// Every language with its version and availability (versions probed in parallel).
    pub fn list_languages(&self) -> Vec<LanguageInfo> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .languages
                .all()
                .iter()
                .map(|l| s.spawn(move || (l, self.available(l), self.version(l))))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok())
                .map(|(l, available, version)| LanguageInfo {
                    name: l.name.clone(),
                    aliases: l.aliases.clone(),
                    version: version.unwrap_or_default(),
                    compiled: l.compiled(),
                    available,
                })
                .collect()
        })
    }
}

pub(crate) fn env_of(lang: &Language) -> Vec<(String, String)> {
    lang.env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
