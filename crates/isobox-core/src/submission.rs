//! The one place a request is validated.
//!
//! [`Executor::submission`] turns a wire request ([`ExecuteRequest`], from REST, gRPC, the CLI
//! or a queued job) into a [`Submission`]: an owned value with the language resolved (its table
//! entry, not its name), the installed version checked against the requested one, the files
//! decoded and checked, stdin and args bounded, the limits resolved against the language's and
//! the server's defaults, and the entry point named. Everything downstream (the permission
//! policy in the server, the dedup key, the spec the backend runs) reads this value; nothing
//! looks the language up again or re-derives a limit.
//!
//! The steps, in the order a request meets them: [`Executor::language_of`] (name and version),
//! `files_of` (names, encodings, the pattern policy, sizes), `io_of` (stdin and args),
//! [`Executor::resolve_limits`], `entry_point` (Java-style renames, duplicate names).

use std::sync::Arc;

use base64::Engine as _;
use isobox_sandbox::SandboxFile;

use crate::dedup::key_of;
use crate::languages::{Language, LimitDefaults};
use crate::request::{Compare, ExecuteRequest, RequestLimits};
use crate::service::{Executor, RequestLimitsResolved};
use crate::CoreError;

/// A request that passed validation: what the engine runs and the policy judges.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The language's table entry.
    pub language: Arc<Language>,
    /// The toolchain version (empty when the language states none).
    pub version: String,
    /// The runtime it runs in (`None`: the host's toolchains).
    pub runtime: Option<Arc<crate::service::BoundRuntime>>,
    /// The work-dir files, the entry point first (renamed for Java-style languages).
    pub files: Vec<SandboxFile>,
    /// The entry file's path (`{file}` in the table's commands).
    pub entry: String,
    /// The entry's main name (`{main}`: the main class, or the file stem).
    pub main: String,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    /// The limits of the run: requested, else the language's, else the server's defaults.
    pub limits: RequestLimitsResolved,
    /// blake3 of the files (hex), for the logs; never the code itself.
    pub code_hash: String,
    /// Total bytes of the files (decoded).
    pub code_bytes: usize,
    /// `encoding: base64`: outputs are returned as base64.
    pub base64: bool,
    /// The test cases (`None`: one run with `stdin` and `args`, no verdicts).
    pub tests: Option<Vec<Case>>,
    pub compare: Compare,
    pub stop_on_failure: bool,
    /// Patterns of the files to return after the run (empty: none).
    pub outputs: Vec<String>,
    /// Compiler options, in the place of the compile command's `{compile_args}`.
    pub compile_args: Vec<String>,
    /// The compile step's limits: requested (never above the language's), else the language's.
    pub compile_limits: RequestLimitsResolved,
    pub stderr_to_stdout: bool,
}

/// A case as the executor runs it, borrowed from its submission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaseRef<'a> {
    pub name: &'a str,
    pub stdin: &'a [u8],
    pub args: &'a [String],
    pub expected: Option<&'a [u8]>,
}

/// A validated test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The case's `name`, or its 1-based position.
    pub name: String,
    pub stdin: Vec<u8>,
    pub args: Vec<String>,
    pub expected: Option<Vec<u8>>,
}

impl Submission {
    /// The cases to run, borrowed: the tests, or the one run of `stdin` and `args`.
    pub fn cases(&self) -> Vec<CaseRef<'_>> {
        match &self.tests {
            Some(t) => t
                .iter()
                .map(|c| CaseRef {
                    name: &c.name,
                    stdin: &c.stdin,
                    args: &c.args,
                    expected: c.expected.as_deref(),
                })
                .collect(),
            None => vec![CaseRef {
                name: "1",
                stdin: &self.stdin,
                args: &self.args,
                expected: None,
            }],
        }
    }

    /// The longest a run of this submission may take in a sandbox: the compile step and every
    /// case at their wall limits.
    pub fn max_wall(&self) -> std::time::Duration {
        let cases = self.tests.as_ref().map_or(1, |t| t.len().max(1)) as u64;
        let compile = if self.language.compiled() {
            self.compile_limits.timeout_ms
        } else {
            0
        };
        std::time::Duration::from_millis(compile + cases * self.limits.timeout_ms)
    }

    /// What the request asks beyond the files, the commands and the limits (tests, their
    /// comparison, result files, encoding), as parts of the dedup key: borrowed where they are
    /// bytes of the request, so a key never copies the tests' inputs and outputs.
    pub fn judge_parts(&self) -> Vec<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        let mut out = vec![Cow::Owned(
            format!(
                "b64={} stop={} merge={} compare={:?} outputs={:?} tests={}",
                self.base64,
                self.stop_on_failure,
                self.stderr_to_stdout,
                self.compare,
                self.outputs,
                self.tests.as_ref().map_or(0, Vec::len)
            )
            .into_bytes(),
        )];
        for c in self.tests.iter().flatten() {
            out.push(Cow::Borrowed(c.name.as_bytes()));
            out.push(Cow::Borrowed(&c.stdin));
            out.push(Cow::Owned(format!("{:?}", c.args).into_bytes()));
            match &c.expected {
                Some(e) => {
                    out.push(Cow::Borrowed(b"expected"));
                    out.push(Cow::Borrowed(e));
                }
                None => out.push(Cow::Borrowed(b"no expected")),
            }
        }
        out
    }
}

impl Executor {
    /// Validates `req`: the one entry from a wire request to a [`Submission`].
    pub fn submission(&self, req: &ExecuteRequest) -> Result<Submission, CoreError> {
        let (language, version, runtime) =
            self.language_of(&req.language, req.version.as_deref())?;
        let base64 = base64_encoding(req.encoding.as_deref())?;
        let files = self.files_of(req, &language, base64)?;
        let (stdin, args) = self.io_of(req, base64)?;
        let limits = self.resolve_limits(req.limits.as_ref(), &language.limits)?;
        let tests = self.tests_of(req, base64)?;
        let outputs = self.outputs_of(req, tests.is_some())?;
        let compile_args = self.compile_args_of(req, &language)?;
        let compile_limits = self.resolve_compile_limits(req.compile_limits.as_ref(), &language)?;
        let (files, entry, main) = entry_point(&language, files)?;
        let code_bytes = files.iter().map(|f| f.content.len()).sum();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(files.len() * 2);
        for f in &files {
            parts.push(f.path.as_bytes());
            parts.push(&f.content);
        }
        let code_hash = hex::encode(key_of(&parts));
        Ok(Submission {
            language,
            version,
            runtime,
            files,
            entry,
            main,
            stdin,
            args,
            limits,
            code_hash,
            code_bytes,
            base64,
            tests,
            compare: req.compare.unwrap_or_default(),
            stop_on_failure: req.stop_on_failure.unwrap_or(false),
            outputs,
            compile_args,
            compile_limits,
            stderr_to_stdout: req.stderr_to_stdout.unwrap_or(false),
        })
    }

    /// The test cases of `req`, decoded, within the policy's count and bytes.
    fn tests_of(&self, req: &ExecuteRequest, base64: bool) -> Result<Option<Vec<Case>>, CoreError> {
        let p = self.policy();
        let Some(list) = &req.tests else {
            if req.compare.is_some() || req.stop_on_failure.is_some() {
                return Err(CoreError::InvalidRequest(
                    "`compare` and `stop_on_failure` go with `tests`".into(),
                ));
            }
            return Ok(None);
        };
        if list.is_empty() {
            return Err(CoreError::InvalidRequest(
                "`tests` must not be empty".into(),
            ));
        }
        if list.len() > p.max_tests {
            return Err(CoreError::TooLarge(format!(
                "{} tests given, the most allowed is {}",
                list.len(),
                p.max_tests
            )));
        }
        if req.stdin.is_some() {
            return Err(CoreError::InvalidRequest(
                "give `stdin` in each test, not beside `tests`".into(),
            ));
        }
        let mut cases = Vec::with_capacity(list.len());
        let mut bytes = 0usize;
        for (i, t) in list.iter().enumerate() {
            let at = |what: &str| format!("tests[{i}].{what}");
            let stdin = match &t.stdin {
                Some(s) => decode(&at("stdin"), s, base64)?,
                None => Vec::new(),
            };
            if stdin.len() > p.max_stdin_bytes {
                return Err(CoreError::TooLarge(format!(
                    "{} is {} bytes, the most allowed is {}",
                    at("stdin"),
                    stdin.len(),
                    p.max_stdin_bytes
                )));
            }
            let expected = match &t.expected_output {
                Some(e) => Some(decode(&at("expected_output"), e, base64)?),
                None => None,
            };
            let args = match &t.args {
                Some(a) => {
                    self.check_args(a)?;
                    a.clone()
                }
                None => req.args.clone().unwrap_or_default(),
            };
            let name = match &t.name {
                Some(n) if n.len() > 256 || n.chars().any(char::is_control) => {
                    return Err(CoreError::InvalidRequest(format!(
                        "{} must be at most 256 bytes without control characters",
                        at("name")
                    )))
                }
                Some(n) => n.clone(),
                None => (i + 1).to_string(),
            };
            bytes += stdin.len() + expected.as_ref().map_or(0, Vec::len);
            cases.push(Case {
                name,
                stdin,
                args,
                expected,
            });
        }
        if bytes > p.max_tests_bytes {
            return Err(CoreError::TooLarge(format!(
                "the tests' stdin and expected outputs are {bytes} bytes, the most allowed is {}",
                p.max_tests_bytes
            )));
        }
        Ok(Some(cases))
    }

    /// The result-file patterns of `req`: relative globs of plain components.
    fn outputs_of(&self, req: &ExecuteRequest, with_tests: bool) -> Result<Vec<String>, CoreError> {
        let Some(list) = &req.outputs else {
            return Ok(Vec::new());
        };
        if with_tests && !list.is_empty() {
            return Err(CoreError::InvalidRequest(
                "`outputs` cannot be combined with `tests`".into(),
            ));
        }
        let p = self.policy();
        if list.len() > p.max_output_patterns {
            return Err(CoreError::TooLarge(format!(
                "at most {} `outputs` patterns are allowed",
                p.max_output_patterns
            )));
        }
        for pat in list {
            let plain = !pat.is_empty()
                && pat.len() <= MAX_FILE_NAME
                && !pat.starts_with('/')
                && pat
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..")
                && !pat.chars().any(|c| c.is_control() || c == '\\' || c == '[');
            if !plain {
                return Err(CoreError::InvalidRequest(format!(
                    "`outputs` pattern `{}` must be a relative path without `..`, made of names, \
                     `*`, `?` and `**`",
                    pat.escape_debug()
                )));
            }
        }
        Ok(list.clone())
    }

    /// The compiler options of `req`: only for a language whose compile command takes them.
    fn compile_args_of(
        &self,
        req: &ExecuteRequest,
        lang: &Language,
    ) -> Result<Vec<String>, CoreError> {
        let Some(args) = req.compile_args.as_ref().filter(|a| !a.is_empty()) else {
            return Ok(Vec::new());
        };
        let takes = lang
            .compile
            .as_ref()
            .is_some_and(|c| c.iter().any(|a| a == crate::languages::COMPILE_ARGS));
        if !takes {
            return Err(CoreError::InvalidRequest(format!(
                "{} takes no `compile_args`",
                lang.name
            )));
        }
        let p = self.policy();
        if args.len() > p.max_compile_args {
            return Err(CoreError::TooLarge(format!(
                "at most {} compile_args are allowed",
                p.max_compile_args
            )));
        }
        if args
            .iter()
            .any(|a| a.is_empty() || a.len() > 256 || a.contains('\0'))
        {
            return Err(CoreError::InvalidRequest(
                "each of compile_args must be 1 to 256 bytes and contain no NUL".into(),
            ));
        }
        Ok(args.clone())
    }

    /// The compile step's limits: each requested one positive and not above the language's
    /// (its table entry, else the built-in compile defaults), else the language's.
    pub fn resolve_compile_limits(
        &self,
        req: Option<&RequestLimits>,
        lang: &Language,
    ) -> Result<RequestLimitsResolved, CoreError> {
        let base = compile_defaults(lang);
        let Some(r) = req else { return Ok(base) };
        if lang.compile.is_none() {
            return Err(CoreError::InvalidRequest(format!(
                "{} has no compile step for `compile_limits`",
                lang.name
            )));
        }
        let max_output = self
            .policy()
            .max
            .max_output_bytes
            .max(base.max_output_bytes);
        // Absent values take the language's; the output cap defaults to the compile
        // step's 64 KiB and may go up to the server's run maximum.
        let pick = |name: &str, v: Option<u64>, max: u64, min: u64| match v {
            None => Ok(max.min(if name == "max_output_bytes" {
                base.max_output_bytes
            } else {
                max
            })),
            Some(v) if v < min => Err(CoreError::InvalidRequest(format!(
                "compile_limits.{name} must be at least {min}"
            ))),
            Some(v) if v > max => Err(CoreError::LimitTooHigh(format!(
                "compile_limits.{name} is {v}, the most allowed is {max}"
            ))),
            Some(v) => Ok(v),
        };
        Ok(RequestLimitsResolved {
            timeout_ms: pick("timeout_ms", r.timeout_ms, base.timeout_ms, 1)?,
            cpu_time_ms: pick("cpu_time_ms", r.cpu_time_ms, base.cpu_time_ms, 1)?,
            memory_mb: pick("memory_mb", r.memory_mb, base.memory_mb, 8)?,
            max_processes: pick(
                "max_processes",
                r.max_processes.map(u64::from),
                u64::from(base.max_processes),
                2,
            )? as u32,
            max_output_bytes: pick("max_output_bytes", r.max_output_bytes, max_output, 1)?,
        })
    }

    /// The language named `name` (or an alias), the version and where it comes from: among
    /// the runtimes providing it (and the host's toolchains when they count), `wanted` picks
    /// one: absent, empty, `*` or `latest` the newest; a version prefix (`3` and `3.11` match
    /// `3.11.2`) the newest that matches; or a runtime's name (`python-bookworm`).
    #[allow(clippy::type_complexity)]
    pub fn language_of(
        &self,
        name: &str,
        wanted: Option<&str>,
    ) -> Result<
        (
            Arc<Language>,
            String,
            Option<Arc<crate::service::BoundRuntime>>,
        ),
        CoreError,
    > {
        let lang = self
            .languages()
            .get(name)
            .ok_or_else(|| CoreError::UnknownLanguage(name.to_string()))?;
        let candidates = self.candidates(lang);
        if candidates.is_empty() {
            return Err(CoreError::LanguageUnavailable(lang.name.clone()));
        }
        let pick = match wanted.filter(|v| !v.is_empty() && *v != "*" && *v != "latest") {
            None => candidates.first(),
            Some(want) => candidates
                .iter()
                .find(|c| c.runtime_name() == want)
                .or_else(|| {
                    candidates
                        .iter()
                        .find(|c| version_matches(want, &c.version))
                }),
        };
        match pick {
            Some(c) => Ok((lang.clone(), c.version.clone(), c.runtime.clone())),
            None => Err(CoreError::VersionUnavailable {
                language: lang.name.clone(),
                wanted: wanted.unwrap_or_default().to_string(),
                have: candidates
                    .iter()
                    .map(|c| c.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The files of `req` (`code` becomes the language's file), decoded, named safely, within
    /// the size limits and clear of the pattern policy.
    fn files_of(
        &self,
        req: &ExecuteRequest,
        lang: &Language,
        base64: bool,
    ) -> Result<Vec<SandboxFile>, CoreError> {
        let p = self.policy();
        let files = match (&req.code, &req.files) {
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
                content: decode("code", code, base64)?,
                executable: false,
                readonly: false,
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
                        readonly: false,
                    });
                }
                out
            }
        };
        if let Some(rule) = self
            .patterns()
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
        Ok(files)
    }

    /// Stdin and args of `req`, within their limits.
    fn io_of(
        &self,
        req: &ExecuteRequest,
        base64: bool,
    ) -> Result<(Vec<u8>, Vec<String>), CoreError> {
        let p = self.policy();
        let stdin = match &req.stdin {
            Some(s) => decode("stdin", s, base64)?,
            None => Vec::new(),
        };
        if stdin.len() > p.max_stdin_bytes {
            return Err(CoreError::TooLarge(format!(
                "stdin is {} bytes, the most allowed is {}",
                stdin.len(),
                p.max_stdin_bytes
            )));
        }
        let args = req.args.clone().unwrap_or_default();
        self.check_args(&args)?;
        Ok((stdin, args))
    }

    /// Program arguments within the policy: how many, how long, no NUL.
    fn check_args(&self, args: &[String]) -> Result<(), CoreError> {
        let p = self.policy();
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
        Ok(())
    }

    /// The limits a request gets: each requested one checked (positive, not above the
    /// server's maximum), else the language's default, else the server's.
    pub fn resolve_limits(
        &self,
        req: Option<&RequestLimits>,
        lang: &LimitDefaults,
    ) -> Result<RequestLimitsResolved, CoreError> {
        let r = req.cloned().unwrap_or_default();
        let max = &self.policy().max;
        let d = &self.policy().defaults;
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
        let pick =
            |req: Option<u64>, lang: Option<u64>, default: u64| req.or(lang).unwrap_or(default);
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
}

/// A submission of `language` from the built-in table with default limits, no files and no
/// tests: for unit tests of what reads submissions.
#[cfg(test)]
pub(crate) fn sample(language: &str, version: &str) -> Submission {
    let language = crate::languages::LanguageTable::builtin()
        .get(language)
        .expect("a built-in language")
        .clone();
    let limits = crate::service::Policy::default().defaults;
    Submission {
        language,
        version: version.into(),
        runtime: None,
        files: vec![],
        entry: String::new(),
        main: String::new(),
        stdin: vec![],
        args: vec![],
        limits,
        code_hash: String::new(),
        code_bytes: 0,
        base64: false,
        tests: None,
        compare: Compare::default(),
        stop_on_failure: false,
        outputs: vec![],
        compile_args: vec![],
        compile_limits: limits,
        stderr_to_stdout: false,
    }
}

/// The compile step's limits when a request asks for none, and the most it may ask for: the
/// language's `compile_limits`, else 20 s of wall time, as much CPU time, 512 MiB, 64 tasks,
/// 64 KiB of output.
pub fn compile_defaults(lang: &Language) -> RequestLimitsResolved {
    let c = &lang.compile_limits;
    let timeout_ms = c.timeout_ms.unwrap_or(20_000);
    RequestLimitsResolved {
        timeout_ms,
        cpu_time_ms: c.cpu_time_ms.unwrap_or(timeout_ms),
        memory_mb: c.memory_mb.unwrap_or(512),
        max_processes: c.max_processes.unwrap_or(64),
        max_output_bytes: 64 * 1024,
    }
}

/// Whether a request's `encoding` is base64 (`utf-8`, `utf8` or absent: text).
fn base64_encoding(encoding: Option<&str>) -> Result<bool, CoreError> {
    match encoding {
        None | Some("utf-8" | "utf8") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(CoreError::InvalidRequest(format!(
            "unknown encoding `{}` (use utf-8 or base64)",
            other.escape_debug()
        ))),
    }
}

/// A text field of a request as bytes: itself, or its base64 decoded.
fn decode(field: &str, value: &str, base64: bool) -> Result<Vec<u8>, CoreError> {
    if !base64 {
        return Ok(value.as_bytes().to_vec());
    }
    base64::engine::general_purpose::STANDARD
        .decode(value.as_bytes())
        .map_err(|_| CoreError::InvalidRequest(format!("`{field}` is not valid base64")))
}

/// Names the entry point: Java-style languages name the entry file after its main class
/// (`{main}`), others take the file's stem. Then checks the final names: no duplicates (also
/// after the rename) and no file inside another.
fn entry_point(
    lang: &Language,
    mut files: Vec<SandboxFile>,
) -> Result<(Vec<SandboxFile>, String, String), CoreError> {
    let entry = &mut files[0];
    let path = std::path::Path::new(&entry.path);
    let main = match lang.main_name(&String::from_utf8_lossy(&entry.content)) {
        Some(m) => {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            let dir = path.parent().map(|d| d.to_path_buf()).unwrap_or_default();
            entry.path = dir
                .join(format!("{m}.{ext}"))
                .to_string_lossy()
                .into_owned();
            m
        }
        None => path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("main")
            .to_string(),
    };
    let entry = entry.path.clone();
    isobox_sandbox::check_files(&files).map_err(|e| match e {
        isobox_sandbox::SandboxError::InvalidSpec(m) => CoreError::InvalidRequest(m),
        other => CoreError::Sandbox(other),
    })?;
    Ok((files, entry, main))
}

/// `3` matches `3.11.2`; `3.11` matches `3.11.2`; `3.1` does not.
fn version_matches(want: &str, have: &str) -> bool {
    let w: Vec<&str> = want.trim_start_matches('v').split('.').collect();
    let h: Vec<&str> = have.split('.').collect();
    w.len() <= h.len() && w.iter().zip(&h).all(|(a, b)| a == b)
}

/// The longest file name (the whole path), in bytes.
pub const MAX_FILE_NAME: usize = 255;

/// The file-name rule, for every file of a request: a relative path of at most 255 bytes whose
/// `/`-separated parts are each one or more of `A-Z a-z 0-9 . _ + -`, starting with a letter,
/// a digit or `_`. So no part is empty, `.` or `..`, hidden, or read as an option (`-o`,
/// `-wrapper`) or a response file (`@file`) by a compiler in any position, and no name holds a
/// space, a quote, `@`, `=`, `,`, `$`, a glob or another shell character, a control character
/// or anything outside ASCII (no look-alikes).
pub fn validate_file_name(name: &str) -> Result<(), CoreError> {
    let part_ok = |p: &str| {
        let mut chars = p.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
    };
    if name.is_empty() || name.len() > MAX_FILE_NAME || !name.split('/').all(part_ok) {
        return Err(CoreError::InvalidRequest(format!(
            "file name `{}` is not allowed: use a relative path of at most {MAX_FILE_NAME} bytes \
             whose `/`-separated parts are made of A-Z a-z 0-9 . _ + - and start with a letter, \
             a digit or `_` (so they may not start with `-`, `@` or `.`)",
            name.escape_debug()
        )));
    }
    Ok(())
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
        for ok in [
            "main.py",
            "lib/util.py",
            "a-b_c.txt",
            "_x.go",
            "2nd+lib-v1.0.cpp",
            "Main.java",
        ] {
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
            "a b.cpp",
            "a.cpp @r a.cpp",
            "x@r.c",
            "a=b.c",
            "a,b.c",
            ".hidden",
            "+x.c",
            "$(x).c",
            "`x`.c",
            "a;b.c",
            "\u{430}.c",
            "dir/",
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
    }
}
