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
use crate::request::{ExecuteRequest, RequestLimits};
use crate::service::{Executor, RequestLimitsResolved};
use crate::CoreError;

/// A request that passed validation: what the engine runs and the policy judges.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The language's table entry.
    pub language: Arc<Language>,
    /// The installed toolchain version (empty when the language states none).
    pub version: String,
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
}

impl Executor {
    /// Validates `req`: the one entry from a wire request to a [`Submission`].
    pub fn submission(&self, req: &ExecuteRequest) -> Result<Submission, CoreError> {
        let (language, version) = self.language_of(&req.language, req.version.as_deref())?;
        let files = self.files_of(req, &language)?;
        let (stdin, args) = self.io_of(req)?;
        let limits = self.resolve_limits(req.limits.as_ref(), &language.limits)?;
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
            files,
            entry,
            main,
            stdin,
            args,
            limits,
            code_hash,
            code_bytes,
        })
    }

    /// The language named `name` (or an alias) if this host can run it, with its installed
    /// version, which must match `wanted` (a prefix: `3` and `3.11` match `3.11.2`; empty, `*`
    /// and `latest` match anything).
    pub fn language_of(
        &self,
        name: &str,
        wanted: Option<&str>,
    ) -> Result<(Arc<Language>, String), CoreError> {
        let lang = self
            .languages()
            .get(name)
            .ok_or_else(|| CoreError::UnknownLanguage(name.to_string()))?;
        if !self.available(lang) {
            return Err(CoreError::LanguageUnavailable(lang.name.clone()));
        }
        let version = self.version(lang).unwrap_or_default();
        if let Some(want) = wanted.filter(|v| !v.is_empty() && *v != "*" && *v != "latest") {
            if !version_matches(want, &version) {
                return Err(CoreError::VersionUnavailable {
                    language: lang.name.clone(),
                    wanted: want.to_string(),
                    have: version,
                });
            }
        }
        Ok((lang.clone(), version))
    }

    /// The files of `req` (`code` becomes the language's file), decoded, named safely, within
    /// the size limits and clear of the pattern policy.
    fn files_of(
        &self,
        req: &ExecuteRequest,
        lang: &Language,
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
                content: code.as_bytes().to_vec(),
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
    fn io_of(&self, req: &ExecuteRequest) -> Result<(Vec<u8>, Vec<String>), CoreError> {
        let p = self.policy();
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
        Ok((stdin, args))
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
