//! Piston's wire format ↔ ours, without any transport: a Piston job (the body of
//! `POST /api/v2/execute`, or the `init` message of `/api/v2/connect`) checked with Piston's
//! rules and messages and turned into our [`ExecuteRequest`]; our result turned into Piston's
//! `{language, version, run, compile}`; the runtimes list; signal names.
//!
//! Field by field (docs/api.md's Piston section has the table):
//!
//! - `language` (name or alias) and `version` (a node-semver selector, see [`super::semver`])
//!   resolved against the languages this host runs and their installed versions.
//! - `files`: the first UTF-8 file is the entry point (Piston runs it), moved first; `hex` and
//!   `base64` contents decoded here and handed on as base64; an unnamed entry file gets the
//!   language's file name, other unnamed files `file<i>.code`; an unknown `encoding` is read
//!   as `utf8` (as Piston does).
//! - `stdin`: a trailing newline is added when missing (as Piston does); `args` as they are.
//! - `run_timeout` → `limits.timeout_ms`, `run_cpu_time` → `limits.cpu_time_ms`,
//!   `run_memory_limit` (bytes) → `limits.memory_mb` (whole MiB, rounded down); the
//!   `compile_*` ones → `compile_limits`. `-1` is the most this server allows; absent, `0` or
//!   `null` is our default; above the maximum is Piston's "cannot exceed the configured
//!   limit" message.

use base64::Engine as _;
use isobox_core::{
    ExecuteRequest, ExecutionResult, Language, LanguageInfo, LanguageTable, Outcome, RequestFile,
    RequestLimits, RequestLimitsResolved, RunStatus,
};
use serde_json::{json, Map, Value};

use super::semver;
use crate::api::ErrorKind;

/// A refusal in Piston's terms: the HTTP status comes from our table, the body is
/// `{"message": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub kind: ErrorKind,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: ErrorKind::InvalidRequest,
        message: message.into(),
    }
}

/// What the mapping needs to know of this host.
pub struct Host<'a> {
    /// The languages and versions this host runs (availability, version, runtime).
    pub languages: std::sync::Arc<Vec<LanguageInfo>>,
    /// The language table (file names, compile limits).
    pub table: &'a LanguageTable,
    /// The most any run may get (`Policy::max`).
    pub max: &'a RequestLimitsResolved,
}

/// A Piston job as our request.
#[derive(Debug, Clone)]
pub struct Job {
    pub request: ExecuteRequest,
    /// The language's name (never an alias), as Piston answers it.
    pub language: String,
    /// The installed version.
    pub version: String,
    /// Whether the language has a compile stage.
    pub compiled: bool,
}

/// `GET /api/v2/runtimes`: every language this host can run, with our version and aliases.
pub fn runtimes(languages: &[LanguageInfo]) -> Value {
    Value::Array(
        languages
            .iter()
            .filter(|l| l.available)
            .map(|l| json!({"language": l.name, "version": l.version, "aliases": l.aliases}))
            .collect(),
    )
}

/// The language named `name` (or aliased so) that this host runs, if its installed version
/// satisfies `version`.
pub fn resolve<'a>(
    languages: &'a [LanguageInfo],
    name: &str,
    version: &str,
) -> Option<&'a LanguageInfo> {
    languages.iter().find(|l| {
        l.available
            && (l.name.eq_ignore_ascii_case(name)
                || l.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
            && semver::satisfies(version, &l.version)
    })
}

/// The limits of the compile step a request may ask for (the core's: the language's compile
/// limits, else its defaults).
fn compile_max(lang: &Language) -> (u64, u64, u64) {
    let c = isobox_core::submission::compile_defaults(lang);
    (c.timeout_ms, c.cpu_time_ms, c.memory_mb)
}

/// The smallest memory limit the core accepts, in MiB.
const MIN_MEMORY_MB: u64 = 8;

/// Checks a Piston job (`body`) as Piston does, in its order and with its messages, then
/// builds our request. `interactive` (the WebSocket): stdin is discarded, as in Piston.
pub fn job(body: &Value, host: &Host<'_>, interactive: bool) -> Result<Job, Refusal> {
    let empty = Map::new();
    let b = body.as_object().unwrap_or(&empty);
    let language = match b.get("language") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(bad("language is required as a string")),
    };
    let version = match b.get("version") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => return Err(bad("version is required as a string")),
    };
    let files = match b.get("files") {
        Some(Value::Array(f)) => f,
        _ => return Err(bad("files is required as an array")),
    };
    for (i, f) in files.iter().enumerate() {
        if !f.get("content").is_some_and(Value::is_string) {
            return Err(bad(format!("files[{i}].content is required as a string")));
        }
    }
    let Some(info) = resolve(&host.languages, language, version) else {
        return Err(Refusal {
            kind: ErrorKind::UnknownLanguage,
            message: format!("{language}-{version} runtime is unknown"),
        });
    };
    let Some(lang) = host.table.get(&info.name) else {
        return Err(Refusal {
            kind: ErrorKind::UnknownLanguage,
            message: format!("{language}-{version} runtime is unknown"),
        });
    };
    // Piston's check reads the encoding as given: absent or exactly `utf8`.
    if !files.iter().any(|f| match f.get("encoding") {
        None | Some(Value::Null) => true,
        Some(e) => e == "utf8",
    }) {
        return Err(bad("files must include at least one utf8 encoded file"));
    }

    let (limits, compile_limits) = limits_of(b, host.max, lang)?;
    // Piston clients send compile limits with every job; a language without a compile step
    // has none to apply them to (checked above all the same, as Piston does).
    let compile_limits = compile_limits.filter(|_| lang.compiled());
    let files = files_of(files, lang)?;
    let args = match b.get("args") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("args must be an array of strings"))?,
        ),
        Some(_) => return Err(bad("args must be an array of strings")),
    };
    let stdin = match b.get("stdin") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("stdin must be a string")),
    };
    let stdin = if interactive {
        None
    } else if stdin.ends_with('\n') {
        Some(stdin)
    } else {
        Some(stdin + "\n")
    };
    let request = ExecuteRequest {
        language: info.name.clone(),
        version: Some(info.version.clone()).filter(|v| !v.is_empty()),
        files: Some(files),
        stdin,
        args,
        limits: Some(limits),
        compile_limits,
        ..Default::default()
    };
    Ok(Job {
        request,
        language: info.name.clone(),
        version: info.version.clone(),
        compiled: info.compiled,
    })
}

/// The six limit fields, in Piston's order (`compile_` before `run_` of each), as our run and
/// compile limits.
fn limits_of(
    b: &Map<String, Value>,
    max: &RequestLimitsResolved,
    lang: &Language,
) -> Result<(RequestLimits, Option<RequestLimits>), Refusal> {
    let (cw, cc, cm) = compile_max(lang);
    let mut run = RequestLimits::default();
    let mut compile = RequestLimits::default();
    for constraint in ["memory_limit", "timeout", "cpu_time"] {
        for stage in ["compile", "run"] {
            let name = format!("{stage}_{constraint}");
            let is_run = stage == "run";
            // The most allowed, in Piston's unit (ms, bytes).
            let (limit_ms_or_mb, is_memory) = match (constraint, is_run) {
                ("memory_limit", true) => (max.memory_mb, true),
                ("memory_limit", false) => (cm, true),
                ("timeout", true) => (max.timeout_ms, false),
                ("timeout", false) => (cw, false),
                (_, true) => (max.cpu_time_ms, false),
                (_, false) => (cc, false),
            };
            let configured = if is_memory {
                limit_ms_or_mb << 20
            } else {
                limit_ms_or_mb
            };
            let value = match b.get(&name) {
                // Piston skips every falsy value: absent, null, 0, false, "".
                None | Some(Value::Null) | Some(Value::Bool(false)) => continue,
                Some(Value::String(s)) if s.is_empty() => continue,
                Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                Some(_) => {
                    return Err(bad(format!("If specified, {name} must be a number")));
                }
            };
            if value == 0.0 {
                continue;
            }
            if !value.is_finite() {
                return Err(bad(format!("If specified, {name} must be a number")));
            }
            let wanted = if value == -1.0 {
                // -1: the most this server allows. A compile limit left to the language's
                // (its compile limits are the most a request may get).
                if !is_run {
                    continue;
                }
                limit_ms_or_mb
            } else if value > configured as f64 {
                return Err(bad(format!(
                    "{name} cannot exceed the configured limit of {configured}"
                )));
            } else if value < 0.0 {
                return Err(bad(format!("{name} must be non-negative")));
            } else if is_memory {
                let mb = (value / (1u64 << 20) as f64).floor() as u64;
                if mb < MIN_MEMORY_MB {
                    return Err(bad(format!(
                        "{name} cannot be below the minimum of {}",
                        MIN_MEMORY_MB << 20
                    )));
                }
                mb
            } else {
                (value.floor() as u64).max(1)
            };
            let target = if is_run { &mut run } else { &mut compile };
            match constraint {
                "memory_limit" => target.memory_mb = Some(wanted),
                "timeout" => target.timeout_ms = Some(wanted),
                _ => target.cpu_time_ms = Some(wanted),
            }
        }
    }
    let compile = (compile != RequestLimits::default()).then_some(compile);
    Ok((run, compile))
}

/// The files: decoded, named, the first UTF-8 one first.
fn files_of(files: &[Value], lang: &Language) -> Result<Vec<RequestFile>, Refusal> {
    let mut out = Vec::with_capacity(files.len());
    let mut entry = None;
    for (i, f) in files.iter().enumerate() {
        let content = f["content"].as_str().unwrap_or_default();
        let encoding = match f.get("encoding").and_then(Value::as_str) {
            Some("base64") => "base64",
            Some("hex") => "hex",
            // Piston reads any other encoding as utf8.
            _ => "utf8",
        };
        let name = match f.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad(format!("files[{i}].name must be a string"))),
        };
        if encoding == "utf8" && entry.is_none() {
            entry = Some(i);
        }
        let (content, encoding) = match encoding {
            "utf8" => (content.to_string(), None),
            "base64" => {
                let bytes = lenient_base64(content)
                    .ok_or_else(|| bad(format!("files[{i}].content is not valid base64")))?;
                (
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                    Some("base64".to_string()),
                )
            }
            _ => {
                let bytes = hex::decode(content.trim())
                    .map_err(|_| bad(format!("files[{i}].content is not valid hex")))?;
                (
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                    Some("base64".to_string()),
                )
            }
        };
        out.push((
            name,
            i,
            RequestFile {
                name: String::new(),
                content,
                encoding,
            },
        ));
    }
    let entry = entry.unwrap_or(0);
    let first = out.remove(entry);
    out.insert(0, first);
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(pos, (name, i, mut f))| {
            f.name = name.unwrap_or_else(|| {
                if pos == 0 {
                    lang.file.clone()
                } else {
                    format!("file{i}.code")
                }
            });
            f
        })
        .collect())
}

/// Base64 as Node's `Buffer.from(s, 'base64')` reads it: either alphabet (standard or
/// URL-safe), padding optional, whitespace ignored.
fn lenient_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let clean: String = s
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(clean.as_bytes()).ok()
}

/// Whether the compile step of `r` failed (Piston then reports no run stage).
pub fn compile_failed(r: &ExecutionResult) -> bool {
    r.compile
        .as_ref()
        .is_some_and(|c| c.status != RunStatus::Ok)
}

/// `POST /api/v2/execute`'s answer. `run.output` is stdout then stderr: our whole-run result
/// keeps the two streams apart, not their interleaving (the WebSocket streams them in order).
pub fn response(r: &ExecutionResult) -> Value {
    let compile = r.compile.as_ref().map(stage);
    // Piston: "backward compatibility when the run stage is not started": run is the compile
    // stage's result.
    let run = match (&compile, compile_failed(r)) {
        (Some(c), true) => c.clone(),
        _ => stage(&r.run),
    };
    let mut out = json!({
        "language": r.language,
        "version": r.version,
        "run": run,
    });
    if let Some(c) = compile {
        out["compile"] = c;
    }
    out
}

/// Piston's `code`, `signal`, `status` and `message` of an outcome.
pub struct Ending {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub status: Option<&'static str>,
    pub message: Option<String>,
}

/// How an outcome ended, in Piston's (isolate's) terms: `RE` a non-zero exit, `SG` a signal
/// (also the memory limit: the kernel's OOM kill), `TO` a time limit, `OL`/`EL` stdout or
/// stderr over the output limit, `XX` an internal error. A run we killed (`TO`, `OL`, `EL`,
/// the memory limit) reports `SIGKILL`; `code` is null whenever `signal` is not.
pub fn ending(o: &Outcome) -> Ending {
    let killed = || Some(o.signal.clone().unwrap_or_else(|| "SIGKILL".into()));
    let (signal, status, message) = match o.status {
        RunStatus::Ok => (o.signal.clone(), None, None),
        RunStatus::RuntimeError | RunStatus::CompileError => (
            o.signal.clone(),
            Some("RE"),
            Some(format!(
                "Exited with error status {}",
                o.exit_code.unwrap_or(1)
            )),
        ),
        RunStatus::Signal => {
            let name = o.signal.clone().unwrap_or_else(|| "SIGKILL".into());
            let n = signal_number(&name).unwrap_or(9);
            (
                Some(name),
                Some("SG"),
                Some(format!("Caught fatal signal {n}")),
            )
        }
        RunStatus::MemoryLimit => (
            killed(),
            Some("SG"),
            Some("Memory limit exceeded".to_string()),
        ),
        RunStatus::Timeout => (
            killed(),
            Some("TO"),
            Some("Time limit exceeded".to_string()),
        ),
        RunStatus::OutputLimit if o.stderr_truncated && !o.stdout_truncated => (
            killed(),
            Some("EL"),
            Some("stderr length exceeded".to_string()),
        ),
        RunStatus::OutputLimit => (
            killed(),
            Some("OL"),
            Some("stdout length exceeded".to_string()),
        ),
        RunStatus::InternalError => (
            o.signal.clone(),
            Some("XX"),
            Some("Internal error".to_string()),
        ),
    };
    let code = if signal.is_some() { None } else { o.exit_code };
    Ending {
        code,
        signal,
        status,
        message,
    }
}

/// One stage (`run` or `compile`) as Piston reports it.
pub fn stage(o: &Outcome) -> Value {
    let e = ending(o);
    let mut output = String::with_capacity(o.stdout.len() + o.stderr.len());
    output.push_str(&o.stdout);
    output.push_str(&o.stderr);
    json!({
        "stdout": o.stdout,
        "stderr": o.stderr,
        "output": output,
        "code": e.code,
        "signal": e.signal,
        "message": e.message,
        "status": e.status,
        "cpu_time": o.cpu_time_ms,
        "wall_time": o.wall_time_ms,
        "memory": o.memory_peak_bytes,
    })
}

/// The signals Piston knows by name (its `SIGNALS` table, Linux numbering).
const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The number of a signal name Piston knows (`SIGKILL` → 9, `SIGRTMIN+2` → 36).
pub fn signal_number(name: &str) -> Option<u32> {
    if let Some(i) = SIGNALS.iter().position(|s| *s == name) {
        return Some(i as u32 + 1);
    }
    let rt = |rest: &str, base: u32, sign: i32| -> Option<u32> {
        let off: u32 = if rest.is_empty() {
            0
        } else {
            let n = rest.strip_prefix(if sign > 0 { '+' } else { '-' })?;
            if n.starts_with('0') {
                return None;
            }
            n.parse().ok()?
        };
        let n = if sign > 0 {
            base + off
        } else {
            base.checked_sub(off)?
        };
        (34..=64).contains(&n).then_some(n)
    };
    if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        let n = rt(rest, 34, 1)?;
        // Piston names 34..=49 from SIGRTMIN, 50..=64 from SIGRTMAX.
        return (n <= 49).then_some(n);
    }
    if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        let n = rt(rest, 64, -1)?;
        return (n >= 50).then_some(n);
    }
    None
}

/// Whether a signal sent by a client ends the program. We cannot deliver a signal into the
/// sandbox, only end the run: signals whose default action is to ignore or to stop
/// (`SIGCHLD`, `SIGCONT`, `SIGURG`, `SIGWINCH`, `SIGSTOP`, `SIGTSTP`, `SIGTTIN`, `SIGTTOU`)
/// change nothing; every other one ends it.
pub fn ends_program(name: &str) -> bool {
    !matches!(
        name,
        "SIGCHLD"
            | "SIGCONT"
            | "SIGURG"
            | "SIGWINCH"
            | "SIGSTOP"
            | "SIGTSTP"
            | "SIGTTIN"
            | "SIGTTOU"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_langs() -> Vec<LanguageInfo> {
        vec![
            LanguageInfo {
                name: "python".into(),
                aliases: vec!["py".into(), "python3".into()],
                version: "3.11.2".into(),
                compiled: false,
                available: true,
                runtime: "host".into(),
            },
            LanguageInfo {
                name: "cpp".into(),
                aliases: vec!["c++".into()],
                version: "12.2.0".into(),
                compiled: true,
                available: true,
                runtime: "host".into(),
            },
            LanguageInfo {
                name: "lua".into(),
                aliases: vec![],
                version: "5.4.6".into(),
                compiled: false,
                available: false,
                runtime: "host".into(),
            },
        ]
    }

    fn job_of(body: Value) -> Result<Job, Refusal> {
        let langs = std::sync::Arc::new(host_langs());
        let table = LanguageTable::builtin();
        let max = isobox_core::Policy::default().max;
        job(
            &body,
            &Host {
                languages: langs,
                table: &table,
                max: &max,
            },
            false,
        )
    }

    #[test]
    fn runtimes_list_what_runs_here() {
        let v = runtimes(&host_langs());
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["language"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["python", "cpp"]);
        assert_eq!(v[0]["version"], "3.11.2");
        assert_eq!(v[0]["aliases"], json!(["py", "python3"]));
    }

    #[test]
    fn piston_messages_in_piston_order() {
        let m = |b: Value| job_of(b).unwrap_err().message;
        assert_eq!(m(json!([])), "language is required as a string");
        assert_eq!(
            m(json!({"language": "py"})),
            "version is required as a string"
        );
        assert_eq!(
            m(json!({"language": "py", "version": 3})),
            "version is required as a string"
        );
        assert_eq!(
            m(json!({"language": "py", "version": "*"})),
            "files is required as an array"
        );
        assert_eq!(
            m(json!({"language": "py", "version": "*", "files": [{"content": "x"}, {}]})),
            "files[1].content is required as a string"
        );
        assert_eq!(
            m(json!({"language": "py", "version": "4", "files": []})),
            "py-4 runtime is unknown"
        );
        assert_eq!(
            m(json!({"language": "lua", "version": "*", "files": []})),
            "lua-* runtime is unknown"
        );
        assert_eq!(
            m(json!({"language": "py", "version": "*", "files": []})),
            "files must include at least one utf8 encoded file"
        );
        let f = json!([{"content": "print(1)"}]);
        assert_eq!(
            m(json!({"language": "py", "version": "*", "files": f, "run_timeout": "5"})),
            "If specified, run_timeout must be a number"
        );
        assert_eq!(
            m(json!({"language": "py", "version": "*", "files": f, "run_timeout": 30001})),
            "run_timeout cannot exceed the configured limit of 30000"
        );
        assert_eq!(
            m(json!({"language": "py", "version": "*", "files": f, "run_memory_limit": -5})),
            "run_memory_limit must be non-negative"
        );
        assert_eq!(
            m(json!({"language": "py", "version": "*", "files": f, "args": [1]})),
            "args must be an array of strings"
        );
    }

    #[test]
    fn limits_map_to_ours() {
        let f = json!([{"content": "x"}]);
        let j = job_of(json!({"language": "c++", "version": "12", "files": f,
            "run_timeout": 1500, "run_cpu_time": 1000.7, "run_memory_limit": 100_000_000,
            "compile_timeout": 0, "compile_memory_limit": -1, "compile_cpu_time": 5000}))
        .unwrap();
        assert_eq!(j.language, "cpp");
        let l = j.request.limits.unwrap();
        assert_eq!(l.timeout_ms, Some(1500));
        assert_eq!(l.cpu_time_ms, Some(1000));
        assert_eq!(l.memory_mb, Some(95));
        let c = j.request.compile_limits.unwrap();
        assert_eq!(c.cpu_time_ms, Some(5000));
        assert_eq!((c.timeout_ms, c.memory_mb), (None, None));
        // -1 on a run limit: the server's maximum.
        let j = job_of(json!({"language": "py", "version": "*", "files": f,
            "run_timeout": -1, "run_memory_limit": -1}))
        .unwrap();
        let l = j.request.limits.unwrap();
        assert_eq!(l.timeout_ms, Some(30_000));
        assert_eq!(l.memory_mb, Some(2048));
    }

    #[test]
    fn files_are_decoded_and_the_first_utf8_one_is_the_entry() {
        let j = job_of(json!({"language": "py", "version": "3.11", "files": [
            {"name": "data.bin", "content": "aGk", "encoding": "base64"},
            {"content": "print(1)"},
            {"content": "6869", "encoding": "hex"},
        ], "stdin": "x"}))
        .unwrap();
        let files = j.request.files.unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["main.py", "data.bin", "file2.code"]);
        assert_eq!(files[1].content, "aGk=");
        assert_eq!(files[2].content, "aGk=");
        assert_eq!(j.request.stdin.as_deref(), Some("x\n"));
        let e = job_of(json!({"language": "py", "version": "*",
            "files": [{"content": "x"}, {"content": "zz", "encoding": "hex"}]}))
        .unwrap_err();
        assert_eq!(e.message, "files[1].content is not valid hex");
    }

    #[test]
    fn endings_read_as_isolate_reports_them() {
        let o = |status, code: Option<i32>, signal: Option<&str>| Outcome {
            status,
            exit_code: code,
            signal: signal.map(str::to_string),
            ..Default::default()
        };
        let e = ending(&o(RunStatus::Ok, Some(0), None));
        assert_eq!((e.code, e.status), (Some(0), None));
        let e = ending(&o(RunStatus::RuntimeError, Some(3), None));
        assert_eq!((e.code, e.status), (Some(3), Some("RE")));
        let e = ending(&o(RunStatus::Timeout, None, None));
        assert_eq!(
            (e.code, e.signal.as_deref(), e.status),
            (None, Some("SIGKILL"), Some("TO"))
        );
        let e = ending(&o(RunStatus::Signal, None, Some("SIGSEGV")));
        assert_eq!(e.message.as_deref(), Some("Caught fatal signal 11"));
        let mut ol = o(RunStatus::OutputLimit, None, None);
        ol.stderr_truncated = true;
        assert_eq!(ending(&ol).status, Some("EL"));
    }

    #[test]
    fn signal_names_are_pistons() {
        assert_eq!(signal_number("SIGKILL"), Some(9));
        assert_eq!(signal_number("SIGSYS"), Some(31));
        assert_eq!(signal_number("SIGRTMIN"), Some(34));
        assert_eq!(signal_number("SIGRTMIN+15"), Some(49));
        assert_eq!(signal_number("SIGRTMAX-14"), Some(50));
        assert_eq!(signal_number("SIGRTMAX"), Some(64));
        for bad in [
            "SIGRTMIN+16",
            "SIGRTMAX-15",
            "KILL",
            "sigkill",
            "SIGRTMIN+01",
            "",
        ] {
            assert_eq!(signal_number(bad), None, "{bad}");
        }
        assert!(ends_program("SIGTERM") && !ends_program("SIGWINCH"));
    }
}
