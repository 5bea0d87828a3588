//! The execution service: request in (CONTRACT.md's shape), validated, turned into an
//! `ExecSpec` for a backend, and the backend's report turned into the public result.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use isobox_sandbox::{
    Backend, ExecReport, ExecSpec, Limits, Phase, PhaseReport, SandboxFile, Status,
};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::languages::{Language, LanguageTable, LimitDefaults};
use crate::CoreError;

/// A file of a request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    pub name: String,
    pub content: String,
    #[serde(default)]
    pub encoding: Option<String>,
}

/// Limits a caller may ask for; each may only tighten the server's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestLimits {
    pub timeout_ms: Option<u64>,
    pub cpu_time_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_processes: Option<u32>,
    pub max_output_bytes: Option<u64>,
}

/// `POST /api/v1/execute` and `isobox run`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    pub language: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub files: Option<Vec<RequestFile>>,
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Option<RequestLimits>,
}

/// How one program ended (the compile step or the run): the fields CONTRACT.md gives both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub status: String,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub cpu_time_ms: u64,
    pub wall_time_ms: u64,
    pub memory_peak_bytes: u64,
}

impl From<&PhaseReport> for Outcome {
    fn from(p: &PhaseReport) -> Outcome {
        Outcome {
            status: p.status.as_str().to_string(),
            exit_code: p.exit_code,
            signal: signal_of(p),
            stdout: text(&p.stdout),
            stderr: text(&p.stderr),
            stdout_truncated: p.stdout_truncated,
            stderr_truncated: p.stderr_truncated,
            cpu_time_ms: ms(p.cpu_time),
            wall_time_ms: ms(p.wall_time),
            memory_peak_bytes: p.memory_peak_bytes,
        }
    }
}

/// The public result object of CONTRACT.md: the run's outcome at the top level, the compile
/// step's (if any) under `compile`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionResult {
    pub id: String,
    pub language: String,
    pub version: String,
    #[serde(flatten)]
    pub run: Outcome,
    pub compile: Option<Outcome>,
    pub cached: bool,
    /// Why the sandbox failed (status `internal_error`); logged, never sent to clients.
    #[serde(skip)]
    pub internal_message: Option<String>,
}

/// `result.status`, `result.stdout`, ... read the run's outcome, as the JSON has them.
impl std::ops::Deref for ExecutionResult {
    type Target = Outcome;
    fn deref(&self) -> &Outcome {
        &self.run
    }
}

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
        }
    }
}

/// The execution service. Cheap to share; `execute` is blocking (run it off the async runtime).
pub struct Executor {
    backend: Arc<dyn Backend>,
    languages: LanguageTable,
    policy: Policy,
    patterns: crate::patterns::PatternPolicy,
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

pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn signal_of(r: &PhaseReport) -> Option<String> {
    r.signal.map(isobox_sandbox::signal_name)
}

fn pick(req: Option<u64>, lang: Option<u64>, default: u64) -> u64 {
    req.or(lang).unwrap_or(default)
}

impl Executor {
    pub fn new(backend: Arc<dyn Backend>, languages: LanguageTable, policy: Policy) -> Executor {
        Executor {
            backend,
            languages,
            policy,
            patterns: Default::default(),
        }
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

    /// Validates the request and resolves its limits.
    fn resolve_limits(
        &self,
        req: Option<&RequestLimits>,
        lang: &LimitDefaults,
    ) -> Result<RequestLimitsResolved, CoreError> {
        let r = req.cloned().unwrap_or_default();
        let max = &self.policy.max;
        let d = &self.policy.defaults;
        let check = |name: &str, v: Option<u64>, max: u64| -> Result<(), CoreError> {
            match v {
                Some(0) => Err(CoreError::InvalidRequest(format!(
                    "limits.{name} must be positive"
                ))),
                Some(v) if v > max => Err(CoreError::LimitTooHigh(format!(
                    "limits.{name} is {v}, the most allowed is {max}"
                ))),
                _ => Ok(()),
            }
        };
        check("timeout_ms", r.timeout_ms, max.timeout_ms)?;
        check("cpu_time_ms", r.cpu_time_ms, max.cpu_time_ms)?;
        check("memory_mb", r.memory_mb, max.memory_mb)?;
        check(
            "max_processes",
            r.max_processes.map(u64::from),
            u64::from(max.max_processes),
        )?;
        check("max_output_bytes", r.max_output_bytes, max.max_output_bytes)?;
        if r.memory_mb.is_some_and(|m| m < 8) {
            return Err(CoreError::InvalidRequest(
                "limits.memory_mb must be at least 8".into(),
            ));
        }
        if r.max_processes.is_some_and(|p| p < 2) {
            return Err(CoreError::InvalidRequest(
                "limits.max_processes must be at least 2".into(),
            ));
        }
        let timeout_ms = pick(r.timeout_ms, lang.timeout_ms, d.timeout_ms).min(max.timeout_ms);
        Ok(RequestLimitsResolved {
            timeout_ms,
            cpu_time_ms: pick(
                r.cpu_time_ms,
                lang.cpu_time_ms,
                d.cpu_time_ms.min(timeout_ms),
            )
            .min(max.cpu_time_ms),
            memory_mb: pick(r.memory_mb, lang.memory_mb, d.memory_mb).min(max.memory_mb),
            max_processes: r
                .max_processes
                .or(lang.max_processes)
                .unwrap_or(d.max_processes)
                .min(max.max_processes),
            max_output_bytes: r.max_output_bytes.unwrap_or(d.max_output_bytes),
        })
    }

    /// The limits `req` would run with (requested, else the language's, else the server's),
    /// for authorization decisions.
    pub fn effective_limits(
        &self,
        req: &ExecuteRequest,
    ) -> Result<RequestLimitsResolved, CoreError> {
        let lang = self
            .languages
            .get(&req.language)
            .ok_or_else(|| CoreError::UnknownLanguage(req.language.clone()))?;
        self.resolve_limits(req.limits.as_ref(), &lang.limits)
    }

    /// Checks the request and builds the backend spec.
    pub fn prepare(&self, req: &ExecuteRequest) -> Result<(Prepared<'_>, ExecSpec), CoreError> {
        let lang = self
            .languages
            .get(&req.language)
            .ok_or_else(|| CoreError::UnknownLanguage(req.language.clone()))?;
        if !self.available(lang) {
            return Err(CoreError::LanguageUnavailable(lang.name.clone()));
        }
        let p = &self.policy;
        // Files.
        let mut files: Vec<SandboxFile> = match (&req.code, &req.files) {
            (Some(_), Some(_)) => {
                return Err(CoreError::InvalidRequest(
                    "give either `code` or `files`, not both".into(),
                ))
            }
            (None, None) => {
                return Err(CoreError::InvalidRequest(
                    "`code` or `files` is required".into(),
                ))
            }
            (Some(code), None) => vec![SandboxFile {
                path: lang.file.clone(),
                content: code.as_bytes().to_vec(),
                executable: false,
            }],
            (None, Some(list)) => {
                if list.is_empty() {
                    return Err(CoreError::InvalidRequest(
                        "`files` must not be empty".into(),
                    ));
                }
                if list.len() > p.max_files {
                    return Err(CoreError::TooLarge(format!(
                        "at most {} files are allowed",
                        p.max_files
                    )));
                }
                let mut out = Vec::with_capacity(list.len());
                for f in list {
                    validate_file_name(&f.name)?;
                    let content = match f.encoding.as_deref().unwrap_or("utf8") {
                        "utf8" | "utf-8" => f.content.as_bytes().to_vec(),
                        "base64" => base64::engine::general_purpose::STANDARD
                            .decode(f.content.as_bytes())
                            .map_err(|_| {
                                CoreError::InvalidRequest(format!(
                                    "file `{}` is not valid base64",
                                    f.name
                                ))
                            })?,
                        other => {
                            return Err(CoreError::InvalidRequest(format!(
                                "unknown encoding `{other}` (use utf8 or base64)"
                            )))
                        }
                    };
                    out.push(SandboxFile {
                        path: f.name.clone(),
                        content,
                        executable: false,
                    });
                }
                out
            }
        };
        if let Some(rule) = self
            .patterns
            .first_match(&lang.name, files.iter().map(|f| f.content.as_slice()))
        {
            return Err(CoreError::PatternRejected(rule.to_string()));
        }
        let total: usize = files.iter().map(|f| f.content.len()).sum();
        if total > p.max_source_bytes {
            return Err(CoreError::TooLarge(format!(
                "the files are {total} bytes, the most allowed is {}",
                p.max_source_bytes
            )));
        }
        let stdin = req.stdin.clone().unwrap_or_default().into_bytes();
        if stdin.len() > p.max_stdin_bytes {
            return Err(CoreError::TooLarge(format!(
                "stdin is {} bytes, the most allowed is {}",
                stdin.len(),
                p.max_stdin_bytes
            )));
        }
        let args = req.args.clone().unwrap_or_default();
        if args.len() > p.max_args {
            return Err(CoreError::TooLarge(format!(
                "at most {} args are allowed",
                p.max_args
            )));
        }
        if args
            .iter()
            .any(|a| a.len() > p.max_arg_bytes || a.contains('\0'))
        {
            return Err(CoreError::InvalidRequest(format!(
                "each arg must be under {} bytes and contain no NUL",
                p.max_arg_bytes
            )));
        }
        let version = self.version(lang).unwrap_or_default();
        if let Some(want) = req
            .version
            .as_deref()
            .filter(|v| !v.is_empty() && *v != "*" && *v != "latest")
        {
            if !version_matches(want, &version) {
                return Err(CoreError::VersionUnavailable {
                    language: lang.name.clone(),
                    wanted: want.to_string(),
                    have: version,
                });
            }
        }
        let limits = self.resolve_limits(req.limits.as_ref(), &lang.limits)?;

        // Entry file: Java-style languages name it after their main class.
        let entry = &mut files[0];
        let ext = std::path::Path::new(&entry.path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_string);
        let main = match lang.main_name(&String::from_utf8_lossy(&entry.content)) {
            Some(m) => {
                let dir = std::path::Path::new(&entry.path)
                    .parent()
                    .map(|d| d.to_path_buf())
                    .unwrap_or_default();
                let renamed = dir.join(format!("{m}.{}", ext.clone().unwrap_or_default()));
                entry.path = renamed.to_string_lossy().into_owned();
                m
            }
            None => std::path::Path::new(&entry.path)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("main")
                .to_string(),
        };
        let entry_path = entry.path.clone();
        // Duplicates (also after the rename above) and files inside files.
        isobox_sandbox::check_files(&files).map_err(|e| match e {
            isobox_sandbox::SandboxError::InvalidSpec(m) => CoreError::InvalidRequest(m),
            other => CoreError::Sandbox(other),
        })?;
        let subst = |argv: &[String]| -> Vec<String> {
            argv.iter()
                .map(|a| {
                    a.replace("{file}", &entry_path)
                        .replace("{main}", &main)
                        .replace("{memory_mb}", &limits.memory_mb.to_string())
                })
                .collect()
        };
        let mut run_argv = subst(&lang.run);
        run_argv.extend(args);
        let env = env_of(lang);
        let run_limits = Limits {
            wall: Duration::from_millis(limits.timeout_ms),
            cpu: Duration::from_millis(limits.cpu_time_ms),
            memory_bytes: limits.memory_mb << 20,
            max_processes: limits.max_processes,
            cpu_millis: 1000,
            max_output_bytes: limits.max_output_bytes,
            max_file_bytes: p.max_file_bytes,
            max_open_files: 256,
            stack_bytes: 8 << 20,
        };
        let mut phases = Vec::new();
        if let Some(compile) = &lang.compile {
            let c = &lang.compile_limits;
            let wall = c.timeout_ms.unwrap_or(20_000);
            phases.push(Phase {
                name: "compile".into(),
                argv: subst(compile),
                env: env.clone(),
                stdin: vec![],
                limits: Limits {
                    wall: Duration::from_millis(wall),
                    cpu: Duration::from_millis(c.cpu_time_ms.unwrap_or(wall)),
                    memory_bytes: c.memory_mb.unwrap_or(512) << 20,
                    max_processes: c.max_processes.unwrap_or(64),
                    cpu_millis: 2000,
                    max_output_bytes: 64 * 1024,
                    max_file_bytes: p.max_file_bytes.max(64 << 20),
                    max_open_files: 1024,
                    stack_bytes: 8 << 20,
                },
                continue_on_failure: false,
            });
        }
        phases.push(Phase {
            name: "run".into(),
            argv: run_argv,
            env,
            stdin,
            limits: run_limits,
            continue_on_failure: false,
        });
        let spec = ExecSpec {
            files,
            phases,
            tmpfs_bytes: p.tmpfs_bytes,
            tmpfs_inodes: p.tmpfs_inodes,
        };
        Ok((Prepared { lang, version }, spec))
    }

    /// The spec of a syntax check of `req`: its files, the language's check command with the
    /// compile step's limits (or the run's), nothing run.
    pub fn prepare_check(
        &self,
        req: &ExecuteRequest,
    ) -> Result<(Prepared<'_>, ExecSpec), CoreError> {
        let (prepared, mut spec) = self.prepare(req)?;
        let lang = prepared.lang;
        let Some(check) = lang.check_command() else {
            return Err(CoreError::NoCheck(lang.name.clone()));
        };
        let entry = spec.files[0].path.clone();
        let main = std::path::Path::new(&entry)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("main")
            .to_string();
        let mut phase = spec.phases.remove(0);
        phase.name = "check".into();
        phase.argv = check
            .iter()
            .map(|a| a.replace("{file}", &entry).replace("{main}", &main))
            .collect();
        phase.stdin = Vec::new();
        spec.phases = vec![phase];
        Ok((prepared, spec))
    }

    /// Runs the language's syntax check on `req` (blocking): valid or not, and what it said.
    pub fn validate(&self, req: &ExecuteRequest) -> Result<Validation, CoreError> {
        let (_, spec) = self.prepare_check(req)?;
        let report = self.backend.execute(&spec).map_err(CoreError::Sandbox)?;
        Ok(Validation::from_report(&report))
    }

    /// Runs a spec made by `prepare` for `language` (its name) at `version` (blocking).
    pub fn run_prepared(
        &self,
        language: &str,
        version: &str,
        spec: &ExecSpec,
    ) -> Result<ExecutionResult, CoreError> {
        self.run_prepared_io(language, version, spec, &mut isobox_sandbox::NoIo)
    }

    /// `run_prepared` with live output, stdin while running and cancellation.
    pub fn run_prepared_io(
        &self,
        language: &str,
        version: &str,
        spec: &ExecSpec,
        io: &mut dyn isobox_sandbox::RunIo,
    ) -> Result<ExecutionResult, CoreError> {
        let lang = self
            .languages
            .get(language)
            .ok_or_else(|| CoreError::UnknownLanguage(language.to_string()))?;
        let prepared = Prepared {
            lang,
            version: version.to_string(),
        };
        let report = self
            .backend
            .execute_io(spec, io)
            .map_err(CoreError::Sandbox)?;
        Ok(to_result(&prepared, &report))
    }

    /// Validates, runs and reports.
    pub fn execute(&self, req: &ExecuteRequest) -> Result<ExecutionResult, CoreError> {
        let (prepared, spec) = self.prepare(req)?;
        let report = self.backend.execute(&spec).map_err(CoreError::Sandbox)?;
        Ok(to_result(&prepared, &report))
    }
}

/// The answer of `POST /api/v1/validate`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Validation {
    pub valid: bool,
    pub errors: String,
}

impl Validation {
    pub fn from_report(report: &ExecReport) -> Validation {
        match report.phases.first() {
            Some(p) if p.status == Status::Ok => Validation {
                valid: true,
                errors: String::new(),
            },
            Some(p) if p.status == Status::InternalError => Validation {
                valid: false,
                errors: "the check could not run".into(),
            },
            Some(p) => {
                let mut errors = text(&p.stderr);
                if !p.stdout.is_empty() {
                    if !errors.is_empty() && !errors.ends_with('\n') {
                        errors.push('\n');
                    }
                    errors.push_str(&text(&p.stdout));
                }
                if p.status == Status::Timeout {
                    errors.push_str("\nthe check timed out");
                }
                Validation {
                    valid: false,
                    errors: errors.trim_end().to_string(),
                }
            }
            None => Validation {
                valid: false,
                errors: "the check did not run".into(),
            },
        }
    }
}

/// What `prepare` found out about the request besides the spec.
pub struct Prepared<'a> {
    pub lang: &'a Language,
    pub version: String,
}

fn env_of(lang: &Language) -> Vec<(String, String)> {
    lang.env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `3` matches `3.11.2`; `3.11` matches `3.11.2`; `3.1` does not.
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

fn version_matches(want: &str, have: &str) -> bool {
    let w: Vec<&str> = want.trim_start_matches('v').split('.').collect();
    let h: Vec<&str> = have.split('.').collect();
    w.len() <= h.len() && w.iter().zip(&h).all(|(a, b)| a == b)
}

/// Plain relative names: no absolute path, no `..`, no empty or odd components.
pub fn validate_file_name(name: &str) -> Result<(), CoreError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('/')
        || name.contains('\\')
        || name.chars().any(|c| c.is_control())
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(CoreError::InvalidRequest(format!(
            "file name `{}` must be a relative path without `..`",
            name.escape_debug()
        )));
    }
    // Compile commands pass file names to compilers (`gcc *.c`): a name that looks like an
    // option (`-wrapper`) or a response file (`@args`) would become one.
    if name
        .split('/')
        .any(|c| c.starts_with('-') || c.starts_with('@'))
    {
        return Err(CoreError::InvalidRequest(format!(
            "file name `{}` may not start with `-` or `@`",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Turns a backend report into the public result.
pub fn to_result(prepared: &Prepared, report: &ExecReport) -> ExecutionResult {
    let lang = prepared.lang;
    let mut result = ExecutionResult {
        id: new_id(),
        language: lang.name.clone(),
        version: prepared.version.clone(),
        run: Outcome {
            status: Status::InternalError.as_str().into(),
            ..Outcome::default()
        },
        compile: None,
        cached: false,
        internal_message: None,
    };
    let mut phases = report.phases.iter();
    if lang.compiled() {
        let Some(c) = phases.next() else {
            result.internal_message = Some("the compile step did not run".into());
            return result;
        };
        result.compile = Some(Outcome::from(c));
        if c.status == Status::InternalError {
            result.internal_message = c.internal_error.clone();
            return result;
        }
        if c.status != Status::Ok {
            result.run.status = "compile_error".into();
            return result;
        }
    }
    let Some(r) = phases.next() else {
        result.internal_message = Some("the program did not run".into());
        return result;
    };
    result.run = Outcome::from(r);
    result.internal_message = r.internal_error.clone();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        assert!(version_matches("3", "3.11.2"));
        assert!(version_matches("3.11", "3.11.2"));
        assert!(version_matches("v20", "20.20.2"));
        assert!(!version_matches("3.1", "3.11.2"));
        assert!(!version_matches("2", "3.11.2"));
        assert!(!version_matches("3.11.2.1", "3.11.2"));
    }

    #[test]
    fn file_names() {
        for ok in ["main.py", "lib/util.py", "a-b_c.txt"] {
            assert!(validate_file_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "-wrapper",
            "@args.c",
            "dir/-x.c",
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\nb",
            "a\\b",
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_uuid_shaped_and_unique() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_id());
    }
}
