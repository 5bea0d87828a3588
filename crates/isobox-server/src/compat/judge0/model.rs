//! The Judge0 CE 1.13 API's data, free of any transport: its languages (ids) and statuses,
//! a submission's fields checked as Judge0 checks them and turned into our
//! [`ExecuteRequest`], and a job's record turned back into a Judge0 submission (status,
//! `time`, `memory`, `message`, ...), with Judge0's `expected_output` comparison, its `fields`
//! selection and its base64 rules.

use std::collections::BTreeMap;

use base64::Engine as _;
use isobox_core::{ExecuteRequest, LanguageInfo, RequestFile, RequestLimits, TestCase};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The Judge0 CE version whose API this is.
pub const JUDGE0_VERSION: &str = "1.13.1";

/// Judge0's statuses, by id.
pub const STATUSES: [(u8, &str); 14] = [
    (1, "In Queue"),
    (2, "Processing"),
    (3, "Accepted"),
    (4, "Wrong Answer"),
    (5, "Time Limit Exceeded"),
    (6, "Compilation Error"),
    (7, "Runtime Error (SIGSEGV)"),
    (8, "Runtime Error (SIGXFSZ)"),
    (9, "Runtime Error (SIGFPE)"),
    (10, "Runtime Error (SIGABRT)"),
    (11, "Runtime Error (NZEC)"),
    (12, "Runtime Error (Other)"),
    (13, "Internal Error"),
    (14, "Exec Format Error"),
];

pub const IN_QUEUE: u8 = 1;
pub const PROCESSING: u8 = 2;
pub const ACCEPTED: u8 = 3;
pub const WRONG_ANSWER: u8 = 4;
pub const TIME_LIMIT: u8 = 5;
pub const COMPILATION_ERROR: u8 = 6;
pub const SIGSEGV: u8 = 7;
pub const SIGXFSZ: u8 = 8;
pub const SIGFPE: u8 = 9;
pub const SIGABRT: u8 = 10;
pub const NZEC: u8 = 11;
pub const OTHER: u8 = 12;
pub const INTERNAL_ERROR: u8 = 13;

pub fn status_name(id: u8) -> &'static str {
    STATUSES
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("Internal Error", |(_, n)| n)
}

/// One of our languages as Judge0 CE numbers it.
#[derive(Debug, Clone, Copy)]
pub struct Judge0Language {
    /// Judge0 CE's id of the version whose major version matches ours (or, where Judge0 CE
    /// has none, its newest).
    pub id: u32,
    /// Judge0 CE's ids of older versions of the same toolchain, accepted as this language
    /// (not listed: `/languages` shows each language once).
    pub also: &'static [u32],
    /// Our language's name.
    pub ours: &'static str,
    /// The name before the version, as Judge0 CE spells it.
    pub label: &'static str,
    /// What Judge0 CE puts before the version inside the parentheses (`GCC `).
    pub tool: &'static str,
}

/// Judge0 CE 1.13's ids (`db/languages/active.rb`) for the languages we have.
pub const LANGUAGES: &[Judge0Language] = &[
    // By id; those past the eleven of the host are listed only where a runtime provides them
    // (`isobox runtime build`).
    lang(45, &[], "assembly", "Assembly", "NASM "),
    lang(46, &[], "bash", "Bash", ""),
    lang(50, &[48, 49], "c", "C", "GCC "),
    lang(51, &[], "csharp", "C#", "Mono "),
    lang(54, &[52, 53], "cpp", "C++", "GCC "),
    lang(55, &[], "commonlisp", "Common Lisp", "SBCL "),
    lang(56, &[], "d", "D", ""),
    lang(57, &[], "elixir", "Elixir", ""),
    lang(58, &[], "erlang", "Erlang", "OTP "),
    lang(59, &[], "fortran", "Fortran", "GFortran "),
    lang(60, &[], "go", "Go", ""),
    lang(61, &[], "haskell", "Haskell", "GHC "),
    lang(62, &[], "java", "Java", "OpenJDK "),
    lang(63, &[], "javascript", "JavaScript", "Node.js "),
    lang(64, &[], "lua", "Lua", ""),
    lang(65, &[], "ocaml", "OCaml", ""),
    lang(66, &[], "octave", "Octave", ""),
    lang(67, &[], "pascal", "Pascal", "FPC "),
    lang(68, &[], "php", "PHP", ""),
    lang(69, &[], "prolog", "Prolog", "SWI-Prolog "),
    lang(71, &[], "python", "Python", ""),
    lang(72, &[], "ruby", "Ruby", ""),
    lang(73, &[], "rust", "Rust", ""),
    lang(74, &[], "typescript", "TypeScript", ""),
    lang(77, &[], "cobol", "COBOL", "GnuCOBOL "),
    lang(78, &[], "kotlin", "Kotlin", ""),
    lang(79, &[], "objectivec", "Objective-C", "GCC "),
    lang(80, &[], "r", "R", ""),
    lang(81, &[], "scala", "Scala", ""),
    lang(82, &[], "sql", "SQL", "SQLite "),
    lang(85, &[], "perl", "Perl", ""),
    lang(86, &[], "clojure", "Clojure", ""),
    lang(88, &[], "groovy", "Groovy", ""),
];

const fn lang(
    id: u32,
    also: &'static [u32],
    ours: &'static str,
    label: &'static str,
    tool: &'static str,
) -> Judge0Language {
    Judge0Language {
        id,
        also,
        ours,
        label,
        tool,
    }
}

impl Judge0Language {
    /// `Python (3.11.7)`: Judge0's spelling with our installed version.
    pub fn name(&self, version: &str) -> String {
        format!("{} ({}{})", self.label, self.tool, version)
    }
}

/// The language Judge0 id `id` names, if this host runs it.
pub fn language_by_id(
    id: u32,
    available: &[LanguageInfo],
) -> Option<(&'static Judge0Language, &LanguageInfo)> {
    let j = LANGUAGES
        .iter()
        .find(|l| l.id == id || l.also.contains(&id))?;
    let info = available.iter().find(|i| i.name == j.ours && i.available)?;
    Some((j, info))
}

/// `(id, name)` of every language this host runs, by id.
pub fn listed_languages(available: &[LanguageInfo]) -> Vec<(u32, String)> {
    LANGUAGES
        .iter()
        .filter_map(|j| {
            let info = available.iter().find(|i| i.name == j.ours && i.available)?;
            Some((j.id, j.name(&info.version)))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Submissions in
// ---------------------------------------------------------------------------------------------

/// Judge0's field errors: `{"field": ["message", ...]}` (422).
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// What bounds a submission, in Judge0's units, as `/config_info` reports them.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub cpu_time_limit: f64,
    pub max_cpu_time_limit: f64,
    pub wall_time_limit: f64,
    pub max_wall_time_limit: f64,
    /// KB.
    pub memory_limit: u64,
    pub max_memory_limit: u64,
    /// KB: the fixed stack limit of our sandboxes.
    pub stack_limit: u64,
    pub max_processes_and_or_threads: u64,
    pub max_max_processes_and_or_threads: u64,
    /// KB: the largest file a program may write.
    pub max_file_size: u64,
    pub max_number_of_runs: u64,
    /// Callbacks are possible (a webhook secret is configured).
    pub callbacks: bool,
    /// Most files `additional_files` may add.
    pub max_extra_files: usize,
    /// Most bytes the source and `additional_files` may hold together.
    pub max_source_bytes: usize,
}

/// The stack limit of our sandboxes (the core's plan), KB.
pub const STACK_KB: u64 = 8 << 10;

/// A submission as Judge0 takes it, decoded and checked: what the job runs, where its result
/// goes, and the fields kept to answer in Judge0's shape.
#[derive(Debug)]
pub struct Parsed {
    pub request: ExecuteRequest,
    pub callback_url: Option<String>,
    pub stored: Stored,
}

/// The Judge0 fields of a submission, kept in the job's record. Text is kept as base64 (it
/// may be any bytes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stored {
    pub language_id: u32,
    pub language_name: String,
    pub source_code: Option<String>,
    pub stdin: Option<String>,
    pub expected_output: Option<String>,
    pub compiler_options: Option<String>,
    pub command_line_arguments: Option<String>,
    pub number_of_runs: u64,
    pub cpu_time_limit: f64,
    pub cpu_extra_time: f64,
    pub wall_time_limit: f64,
    pub memory_limit: u64,
    pub stack_limit: u64,
    pub max_processes_and_or_threads: u64,
    pub max_file_size: u64,
    pub redirect_stderr_to_stdout: bool,
    pub callback_url: Option<String>,
    /// The zip as sent, base64.
    pub additional_files: Option<String>,
}

/// The key of the Judge0 fields in a job's `compat` value.
const KEY: &str = "judge0";

impl Stored {
    pub fn to_compat(&self) -> Value {
        json!({ KEY: self })
    }

    pub fn from_record(record: &Value) -> Option<Stored> {
        serde_json::from_value(record.get("compat")?.get(KEY)?.clone()).ok()
    }
}

/// Everything a submission is checked against.
pub struct Context<'a> {
    pub languages: &'a [LanguageInfo],
    pub table: &'a isobox_core::LanguageTable,
    pub bounds: &'a Bounds,
    pub webhook: &'a crate::webhook::WebhookConfig,
    /// `?base64_encoded=true`: `source_code`, `stdin` and `expected_output` are base64.
    pub base64: bool,
}

/// A JSON value as a number, as Rails reads a parameter (`4` or `"4"`).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "true" | "1" => Some(true),
            "false" | "0" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// Base64 as Ruby's `decode64` takes it: whitespace ignored, padding optional.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let trimmed = clean.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed.as_bytes())
        .ok()
}

/// Base64 as Ruby's `encode64` writes it (what Judge0 answers): lines of 60 characters, each
/// ending with a newline.
pub fn encode_b64(b: &[u8]) -> String {
    let flat = B64.encode(b);
    let mut out = String::with_capacity(flat.len() + flat.len() / 60 + 1);
    for chunk in flat.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Splits `command_line_arguments` as the shell line Judge0 writes it into would: after
/// dropping the characters Judge0 drops (`$&;<>|` and backtick), words split at whitespace,
/// with single and double quotes and backslash escapes.
pub fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut quote: Option<char> = None;
    let mut chars = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, '$' | '&' | ';' | '<' | '>' | '|' | '`'))
        .peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => match chars.peek() {
                Some(&n) if n == '"' || n == '\\' => {
                    cur.push(n);
                    chars.next();
                }
                _ => cur.push(c),
            },
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                have = true;
            }
            None if c == '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    have = true;
                }
            }
            None if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            None => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        out.push(cur);
    }
    out
}

/// Checks a Judge0 submission (the JSON object of `POST /submissions`, or one of a batch) as
/// Judge0 1.13 does, and builds the request our API runs. Every field error is reported at
/// once, as Judge0 does (422).
pub fn parse(v: &Value, ctx: &Context<'_>) -> Result<Parsed, FieldErrors> {
    let empty = Map::new();
    let m = v.as_object().unwrap_or(&empty);
    let mut errors = FieldErrors::new();
    let mut fail = |field: &str, msg: String| {
        errors.entry(field.to_string()).or_default().push(msg);
    };
    let b = ctx.bounds;

    // Text, base64 or not.
    let mut text = |field: &str, base64: bool| -> Option<Vec<u8>> {
        match present(m.get(field)) {
            None => None,
            Some(Value::String(s)) if base64 => match decode_b64(s) {
                Some(bytes) => Some(bytes),
                None => {
                    fail(field, "is not valid Base64".into());
                    None
                }
            },
            Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
            Some(Value::Number(n)) => Some(n.to_string().into_bytes()),
            Some(_) => {
                fail(field, "must be a string".into());
                None
            }
        }
    };
    let source = text("source_code", ctx.base64);
    let stdin = text("stdin", ctx.base64);
    let expected = text("expected_output", ctx.base64);
    let additional = text("additional_files", false);
    let compiler_options = text("compiler_options", false);
    let arguments = text("command_line_arguments", false);
    let callback = text("callback_url", false);

    if source.as_ref().is_none_or(|s| s.is_empty()) {
        fail("source_code", "can't be blank".into());
    }

    // The language.
    let language = match present(m.get("language_id")) {
        None => {
            fail("language_id", "can't be blank".into());
            None
        }
        Some(v) => match number(v) {
            Some(n) if n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&n) => {
                let id = n as u32;
                match language_by_id(id, ctx.languages) {
                    Some(l) => Some((id, l)),
                    None => {
                        fail(
                            "language_id",
                            format!("language with id {id} doesn't exist"),
                        );
                        None
                    }
                }
            }
            _ => {
                fail(
                    "language_id",
                    format!("language with id {} doesn't exist", shown(v)),
                );
                None
            }
        },
    };

    // Numbers, with Judge0's bounds (ours, in Judge0's units).
    let mut num = |field: &str, default: f64, min: Bound, max: f64| -> f64 {
        let Some(v) = present(m.get(field)) else {
            return default;
        };
        let Some(n) = number(v) else {
            fail(field, "is not a number".into());
            return default;
        };
        match min {
            Bound::Above(lo) if n <= lo => fail(field, format!("must be greater than {}", g(lo))),
            Bound::AtLeast(lo) if n < lo => {
                fail(field, format!("must be greater than or equal to {}", g(lo)))
            }
            _ if n > max => fail(field, format!("must be less than or equal to {}", g(max))),
            _ => {}
        }
        n
    };
    let runs = num(
        "number_of_runs",
        1.0,
        Bound::Above(0.0),
        b.max_number_of_runs as f64,
    );
    let cpu = num(
        "cpu_time_limit",
        b.cpu_time_limit,
        Bound::AtLeast(0.0),
        b.max_cpu_time_limit,
    );
    // Judge0's grace beyond the CPU limit before the kill: added to our CPU limit (within
    // its maximum).
    let extra = num("cpu_extra_time", 0.0, Bound::AtLeast(0.0), 5.0);
    let wall = num(
        "wall_time_limit",
        b.wall_time_limit,
        Bound::AtLeast(1.0),
        b.max_wall_time_limit,
    );
    let memory = num(
        "memory_limit",
        b.memory_limit as f64,
        Bound::AtLeast(2048.0),
        b.max_memory_limit as f64,
    );
    // Accepted within Judge0's own bounds so that clients sending its defaults (64000 KB)
    // work unchanged; the sandbox's stack and file-size limits are its own (README).
    let stack = num(
        "stack_limit",
        b.stack_limit as f64,
        Bound::Above(0.0),
        128_000.0,
    );
    let procs = num(
        "max_processes_and_or_threads",
        b.max_processes_and_or_threads as f64,
        Bound::Above(0.0),
        b.max_max_processes_and_or_threads as f64,
    );
    let file_size = num(
        "max_file_size",
        b.max_file_size as f64,
        Bound::Above(0.0),
        4096.0,
    );
    let runs_whole = runs.fract() == 0.0;
    if !runs_whole {
        fail("number_of_runs", "must be an integer".into());
    }

    // Flags.
    let mut flag = |field: &str| -> bool {
        match present(m.get(field)) {
            None => false,
            Some(v) => boolean(v).unwrap_or_else(|| {
                fail(field, "is not a boolean".into());
                false
            }),
        }
    };
    let redirect = flag("redirect_stderr_to_stdout");
    let network = flag("enable_network");
    let per_time = flag("enable_per_process_and_thread_time_limit");
    let per_memory = flag("enable_per_process_and_thread_memory_limit");
    if network {
        fail("enable_network", "enabling network is not allowed".into());
    }
    for (on, field) in [
        (per_time, "enable_per_process_and_thread_time_limit"),
        (per_memory, "enable_per_process_and_thread_memory_limit"),
    ] {
        if on {
            fail(field, "this option cannot be enabled".into());
        }
    }

    // Options and arguments.
    let as_text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let compiler_options = as_text(&compiler_options).filter(|s| !s.trim().is_empty());
    let arguments = as_text(&arguments).filter(|s| !s.trim().is_empty());
    for (v, field) in [
        (&compiler_options, "compiler_options"),
        (&arguments, "command_line_arguments"),
    ] {
        if v.as_ref().is_some_and(|s| s.chars().count() > 512) {
            fail(field, "is too long (maximum is 512 characters)".into());
        }
    }
    let entry = language.and_then(|(_, (j, _))| ctx.table.get(j.ours));
    if compiler_options.is_some() && entry.is_some_and(|l| !l.compiled()) {
        fail(
            "compiler_options",
            "setting compiler options is only allowed for compiled languages".into(),
        );
    }

    // The callback.
    let callback_url = as_text(&callback).filter(|s| !s.is_empty());
    if let Some(url) = &callback_url {
        if !b.callbacks {
            fail("callback_url", "setting callback is not allowed".into());
        } else if let Err(e) = crate::webhook::check_url(ctx.webhook, url) {
            fail("callback_url", e.to_string());
        }
    }

    // The files: the source under the language's file name, then the archive's.
    let mut files = Vec::new();
    if let (Some((_, (j, _))), Some(src)) = (language, &source) {
        let main = ctx
            .table
            .get(j.ours)
            .map(|l| l.file.clone())
            .unwrap_or_else(|| "main".into());
        files.push(RequestFile {
            name: main.clone(),
            content: B64.encode(src),
            encoding: Some("base64".into()),
        });
        if let Some(zip) = &additional {
            let budget = b.max_source_bytes.saturating_sub(src.len());
            match decode_b64(&String::from_utf8_lossy(zip)) {
                None => fail("additional_files", "is not valid Base64".into()),
                Some(bytes) => {
                    match super::files::unzip(&bytes, b.max_extra_files, budget, &main) {
                        Ok(extra) => {
                            files.extend(extra.into_iter().map(|(name, content)| RequestFile {
                                name,
                                content: B64.encode(content),
                                encoding: Some("base64".into()),
                            }))
                        }
                        Err(e) => fail("additional_files", e),
                    }
                }
            }
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let Some((language_id, (j, info))) = language else {
        return Err(errors);
    };
    let source = source.unwrap_or_default();
    let stdin_b64 = stdin.as_ref().map(|s| B64.encode(s));
    let runs = runs as u64;
    let args = arguments
        .as_deref()
        .map(split_args)
        .filter(|a| !a.is_empty());
    // Our limits: seconds to ms (0: the most we allow), KB to MB rounded up.
    let ms = |s: f64, max: f64| -> u64 {
        let s = if s == 0.0 { max } else { s };
        (s * 1000.0).ceil() as u64
    };
    let request = ExecuteRequest {
        language: j.ours.to_string(),
        files: Some(files),
        stdin: if runs > 1 { None } else { stdin_b64.clone() },
        args,
        limits: Some(RequestLimits {
            timeout_ms: Some(ms(wall, b.max_wall_time_limit)),
            cpu_time_ms: Some(ms(
                (cpu + extra).min(b.max_cpu_time_limit),
                b.max_cpu_time_limit,
            )),
            memory_mb: Some((memory as u64).div_ceil(1024)),
            max_processes: Some(procs as u32),
            max_output_bytes: None,
        }),
        encoding: Some("base64".into()),
        // N runs: N identical test cases of one compiled program (Judge0 averages them).
        tests: (runs > 1).then(|| {
            (0..runs)
                .map(|_| TestCase {
                    stdin: Some(stdin_b64.clone().unwrap_or_default()),
                    ..TestCase::default()
                })
                .collect()
        }),
        compile_args: compiler_options
            .as_deref()
            .map(|o| o.split_whitespace().map(str::to_string).collect()),
        stderr_to_stdout: redirect.then_some(true),
        ..ExecuteRequest::default()
    };
    let stored = Stored {
        language_id,
        language_name: j.name(&info.version),
        source_code: Some(B64.encode(&source)),
        stdin: stdin_b64,
        expected_output: expected.as_ref().map(|e| B64.encode(e)),
        compiler_options,
        command_line_arguments: arguments,
        number_of_runs: runs,
        cpu_time_limit: cpu,
        cpu_extra_time: extra,
        wall_time_limit: wall,
        memory_limit: memory as u64,
        stack_limit: stack as u64,
        max_processes_and_or_threads: procs as u64,
        max_file_size: file_size as u64,
        redirect_stderr_to_stdout: redirect,
        callback_url: callback_url.clone(),
        additional_files: additional.map(|z| String::from_utf8_lossy(&z).into_owned()),
    };
    Ok(Parsed {
        request,
        callback_url,
        stored,
    })
}

enum Bound {
    Above(f64),
    AtLeast(f64),
}

/// A number as Ruby prints it in a message (`150`, `0.5`).
fn g(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Submissions out
// ---------------------------------------------------------------------------------------------

/// Every attribute of a Judge0 submission, in Judge0's order (`fields=*`).
pub const ALL_FIELDS: &[&str] = &[
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "started_at",
    "queued_at",
    "updated_at",
    "queue_host",
    "execution_host",
    "status",
    "language",
];

/// What Judge0 answers without `fields`.
pub const DEFAULT_FIELDS: &[&str] = &[
    "token",
    "time",
    "memory",
    "stdout",
    "stderr",
    "compile_output",
    "message",
    "status",
];

/// `?fields=`: the attributes asked for (`*` all, none: the default), or the unknown ones
/// (Judge0 answers 400 `invalid fields: [a, b]`).
pub fn fields(q: Option<&str>) -> Result<Vec<&'static str>, String> {
    let asked: Vec<&str> = q
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let invalid: Vec<&str> = asked
        .iter()
        .copied()
        .filter(|f| *f != "*" && !ALL_FIELDS.contains(f))
        .collect();
    if !invalid.is_empty() {
        return Err(format!("invalid fields: [{}]", invalid.join(", ")));
    }
    if asked.contains(&"*") {
        return Ok(ALL_FIELDS.to_vec());
    }
    let mut out: Vec<&'static str> = Vec::new();
    for f in asked {
        if let Some(known) = ALL_FIELDS.iter().find(|k| **k == f) {
            if !out.contains(known) {
                out.push(known);
            }
        }
    }
    if out.is_empty() {
        out = DEFAULT_FIELDS.to_vec();
    }
    Ok(out)
}

/// An attribute of a submission: text (any bytes; shown as UTF-8 or base64) or plain JSON.
enum Attr {
    Text(Option<Vec<u8>>),
    Json(Value),
}

/// The answer when a text attribute is not UTF-8 and base64 was not asked for.
pub const NOT_UTF8: &str = "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter";
pub const NOT_UTF8_BATCH: &str = "some attributes for one or more submissions cannot be converted to UTF-8, use base64_encoded=true query parameter";

/// How a run ended, as Judge0 reports it.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub status: u8,
    pub stdout: Option<Vec<u8>>,
    pub stderr: Option<Vec<u8>>,
    pub compile_output: Option<Vec<u8>>,
    pub message: Option<String>,
    pub exit_code: Option<i64>,
    pub exit_signal: Option<i64>,
    /// Seconds of CPU (averaged over the runs).
    pub time: Option<f64>,
    pub wall_time: Option<f64>,
    /// KB (averaged over the runs).
    pub memory: Option<u64>,
}

/// A text of a result: base64 when the result says so, else the text itself.
fn result_text(v: Option<&Value>, base64: bool) -> Vec<u8> {
    let s = v.and_then(Value::as_str).unwrap_or("");
    if base64 {
        B64.decode(s.as_bytes())
            .unwrap_or_else(|_| s.as_bytes().to_vec())
    } else {
        s.as_bytes().to_vec()
    }
}

fn non_empty(b: Vec<u8>) -> Option<Vec<u8>> {
    (!b.is_empty()).then_some(b)
}

/// Judge0's comparison of `expected_output` with stdout (`IsolateJob#strip`): each line
/// without its trailing whitespace, the whole without trailing whitespace (so trailing blank
/// lines do not count either); leading whitespace counts.
pub fn judge0_strip(b: &[u8]) -> Vec<u8> {
    // Ruby's `rstrip` drops whitespace and NUL.
    fn rstrip(s: &[u8]) -> &[u8] {
        let end = s
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0))
            .map_or(0, |i| i + 1);
        &s[..end]
    }
    let lines: Vec<&[u8]> = b.split(|c| *c == b'\n').map(rstrip).collect();
    rstrip(&lines.join(&b'\n')).to_vec()
}

pub fn outputs_match(expected: &[u8], stdout: &[u8]) -> bool {
    judge0_strip(expected) == judge0_strip(stdout)
}

/// A signal's number (Linux), from its name as our results give it (`SIGSEGV`, `SIG34`).
fn signal_number(name: &str) -> Option<i64> {
    let n = match name {
        "SIGHUP" => libc::SIGHUP,
        "SIGINT" => libc::SIGINT,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGILL" => libc::SIGILL,
        "SIGTRAP" => libc::SIGTRAP,
        "SIGABRT" => libc::SIGABRT,
        "SIGBUS" => libc::SIGBUS,
        "SIGFPE" => libc::SIGFPE,
        "SIGKILL" => libc::SIGKILL,
        "SIGUSR1" => libc::SIGUSR1,
        "SIGSEGV" => libc::SIGSEGV,
        "SIGUSR2" => libc::SIGUSR2,
        "SIGPIPE" => libc::SIGPIPE,
        "SIGALRM" => libc::SIGALRM,
        "SIGTERM" => libc::SIGTERM,
        "SIGCHLD" => libc::SIGCHLD,
        "SIGCONT" => libc::SIGCONT,
        "SIGSTOP" => libc::SIGSTOP,
        "SIGTSTP" => libc::SIGTSTP,
        "SIGXCPU" => libc::SIGXCPU,
        "SIGXFSZ" => libc::SIGXFSZ,
        "SIGSYS" => libc::SIGSYS,
        other => return other.strip_prefix("SIG")?.parse().ok(),
    };
    Some(i64::from(n))
}

/// One run's outcome (an object with our result's `status`, `exit_code`, `signal`, `stdout`,
/// ...) as Judge0's status, message, exit code and signal. `ok` is Accepted here; the
/// `expected_output` comparison comes after.
fn run_status(run: &Value) -> (u8, Option<String>, Option<i64>, Option<i64>) {
    let code = run.get("exit_code").and_then(Value::as_i64);
    let signal = run
        .get("signal")
        .and_then(Value::as_str)
        .and_then(signal_number);
    match run.get("status").and_then(Value::as_str).unwrap_or("") {
        "ok" => (ACCEPTED, None, Some(code.unwrap_or(0)), None),
        "runtime_error" => (
            NZEC,
            Some(format!("Exited with error status {}", code.unwrap_or(1))),
            code,
            None,
        ),
        "signal" => {
            let n = signal.unwrap_or(0);
            let status = match n {
                11 => SIGSEGV,
                25 => SIGXFSZ,
                8 => SIGFPE,
                6 => SIGABRT,
                _ => OTHER,
            };
            (
                status,
                Some(format!("Caught fatal signal {n}")),
                Some(0),
                Some(n),
            )
        }
        "timeout" => (
            TIME_LIMIT,
            Some("Time limit exceeded".into()),
            Some(0),
            signal,
        ),
        // The kernel's OOM kill is what Judge0 (isolate with a cgroup memory limit) sees:
        // SIGKILL, reported as Runtime Error (Other).
        "memory_limit" => (
            OTHER,
            Some("Memory limit exceeded".into()),
            Some(0),
            Some(i64::from(libc::SIGKILL)),
        ),
        // Judge0's output goes to files under isolate's file-size limit: a program writing too
        // much gets SIGXFSZ.
        "output_limit" => (
            SIGXFSZ,
            Some("Output limit exceeded".into()),
            Some(0),
            Some(i64::from(libc::SIGXFSZ)),
        ),
        "compile_error" => (COMPILATION_ERROR, None, None, None),
        _ => (
            INTERNAL_ERROR,
            Some("the sandbox failed; the server logged why".into()),
            None,
            None,
        ),
    }
}

fn secs(ms: Option<&Value>) -> f64 {
    ms.and_then(Value::as_f64).unwrap_or(0.0) / 1000.0
}

/// The verdict of a job's record (queued, running, failed or done).
pub fn verdict(record: &Value, stored: &Stored) -> Verdict {
    match record.get("state").and_then(Value::as_str) {
        Some("queued") => {
            return Verdict {
                status: IN_QUEUE,
                ..Verdict::default()
            }
        }
        Some("running") => {
            return Verdict {
                status: PROCESSING,
                ..Verdict::default()
            }
        }
        _ => {}
    }
    if let Some(err) = record.get("error") {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the run could not happen");
        return Verdict {
            status: INTERNAL_ERROR,
            message: Some(msg.to_string()),
            ..Verdict::default()
        };
    }
    let b64 = record.get("encoding").and_then(Value::as_str) == Some("base64");
    // The compiler's output, stdout and stderr as one (Judge0 runs it with stderr to stdout).
    let compile = record.get("compile").filter(|c| !c.is_null());
    let compile_output = compile.and_then(|c| {
        let mut out = result_text(c.get("stdout"), b64);
        out.extend(result_text(c.get("stderr"), b64));
        non_empty(out)
    });
    let top = record.get("status").and_then(Value::as_str).unwrap_or("");
    let compile_failed = top == "compile_error"
        || compile
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .is_some_and(|s| s != "ok")
            && top != "ok";
    if compile_failed {
        let timed_out = compile
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            == Some("timeout");
        return Verdict {
            status: COMPILATION_ERROR,
            compile_output: if timed_out {
                Some(b"Compilation time limit exceeded.".to_vec())
            } else {
                compile_output
            },
            ..Verdict::default()
        };
    }
    // The runs: the test cases of `number_of_runs`, or the one run.
    let tests: Vec<&Value> = record
        .get("tests")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter(|c| c.get("verdict").and_then(Value::as_str) != Some("skipped"))
                .collect()
        })
        .filter(|t: &Vec<&Value>| !t.is_empty())
        .unwrap_or_else(|| vec![record]);
    let expected = stored
        .expected_output
        .as_deref()
        .and_then(|e| B64.decode(e).ok());
    let mut v = Verdict {
        compile_output,
        ..Verdict::default()
    };
    let (mut cpu, mut mem, mut n) = (0.0f64, 0u64, 0u64);
    for run in tests {
        let (mut status, message, exit_code, exit_signal) = run_status(run);
        let stdout = result_text(run.get("stdout"), b64);
        let stderr = result_text(run.get("stderr"), b64);
        if status == ACCEPTED {
            if let Some(e) = &expected {
                if !outputs_match(e, &stdout) {
                    status = WRONG_ANSWER;
                }
            }
        }
        cpu += secs(run.get("cpu_time_ms"));
        mem += run
            .get("memory_peak_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            / 1024;
        n += 1;
        v.status = status;
        v.message = message;
        v.exit_code = exit_code;
        v.exit_signal = exit_signal;
        v.stdout = non_empty(stdout);
        v.stderr = non_empty(stderr);
        v.wall_time = Some(secs(run.get("wall_time_ms")));
        if status != ACCEPTED {
            break;
        }
    }
    if n > 0 {
        v.time = Some(cpu / n as f64);
        v.memory = Some(mem / n);
    }
    v
}

/// Seconds as Judge0 prints a decimal column (`"0.012"`, `"1.5"`, `"0.0"`).
pub fn seconds_text(s: f64) -> String {
    let t = format!("{s:.6}");
    let t = t.trim_end_matches('0');
    if t.ends_with('.') {
        format!("{t}0")
    } else {
        t.to_string()
    }
}

/// Unix ms as Rails prints a datetime (`2024-01-31T12:00:00.000Z`).
pub fn datetime(ms: u64) -> String {
    let t = isobox_core::utc::Utc::of_unix(ms / 1000);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        ms % 1000
    )
}

/// A text attribute asked for is not UTF-8 and base64 was not asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// A job's record as a Judge0 submission with the attributes `fields` (base64 text when
/// `base64`).
pub fn render(record: &Value, fields: &[&str], base64: bool) -> Result<Value, NotUtf8> {
    let stored = Stored::from_record(record).unwrap_or_default();
    let v = verdict(record, &stored);
    let token = record.get("id").cloned().unwrap_or(Value::Null);
    let b64 = |s: &Option<String>| s.as_deref().and_then(|s| B64.decode(s).ok());
    let time_of = |k: &str| {
        record
            .get(k)
            .and_then(Value::as_u64)
            .map_or(Value::Null, |ms| json!(datetime(ms)))
    };
    let mut out = Map::new();
    for &f in fields {
        let attr = match f {
            "source_code" => Attr::Text(b64(&stored.source_code)),
            "language_id" => Attr::Json(json!(stored.language_id)),
            "stdin" => Attr::Text(b64(&stored.stdin)),
            "expected_output" => Attr::Text(b64(&stored.expected_output)),
            "stdout" => Attr::Text(v.stdout.clone()),
            "status_id" => Attr::Json(json!(v.status)),
            "created_at" | "queued_at" => Attr::Json(time_of("submitted_at")),
            "finished_at" => Attr::Json(time_of("finished_at")),
            "updated_at" => Attr::Json(
                ["finished_at", "started_at", "submitted_at"]
                    .iter()
                    .find_map(|k| record.get(*k).and_then(Value::as_u64))
                    .map_or(Value::Null, |ms| json!(datetime(ms))),
            ),
            "started_at" => Attr::Json(time_of("started_at")),
            "time" => Attr::Json(v.time.map_or(Value::Null, |t| json!(seconds_text(t)))),
            "wall_time" => Attr::Json(v.wall_time.map_or(Value::Null, |t| json!(seconds_text(t)))),
            "memory" => Attr::Json(json!(v.memory)),
            "stderr" => Attr::Text(v.stderr.clone()),
            "token" => Attr::Json(token.clone()),
            "number_of_runs" => Attr::Json(json!(stored.number_of_runs)),
            "cpu_time_limit" => Attr::Json(json!(seconds_text(stored.cpu_time_limit))),
            "cpu_extra_time" => Attr::Json(json!(seconds_text(stored.cpu_extra_time))),
            "wall_time_limit" => Attr::Json(json!(seconds_text(stored.wall_time_limit))),
            "memory_limit" => Attr::Json(json!(stored.memory_limit)),
            "stack_limit" => Attr::Json(json!(stored.stack_limit)),
            "max_processes_and_or_threads" => {
                Attr::Json(json!(stored.max_processes_and_or_threads))
            }
            "enable_per_process_and_thread_time_limit"
            | "enable_per_process_and_thread_memory_limit"
            | "enable_network" => Attr::Json(json!(false)),
            "max_file_size" => Attr::Json(json!(stored.max_file_size)),
            "compile_output" => Attr::Text(v.compile_output.clone()),
            "exit_code" => Attr::Json(json!(v.exit_code)),
            "exit_signal" => Attr::Json(json!(v.exit_signal)),
            "message" => Attr::Text(v.message.clone().map(String::into_bytes)),
            "compiler_options" => Attr::Json(json!(stored.compiler_options)),
            "command_line_arguments" => Attr::Json(json!(stored.command_line_arguments)),
            "redirect_stderr_to_stdout" => Attr::Json(json!(stored.redirect_stderr_to_stdout)),
            "callback_url" => Attr::Json(json!(stored.callback_url)),
            // Always base64, as Judge0 sends it.
            "additional_files" => Attr::Json(json!(stored
                .additional_files
                .as_deref()
                .and_then(decode_b64)
                .map(|z| encode_b64(&z)))),
            "queue_host" | "execution_host" => Attr::Json(Value::Null),
            "status" => Attr::Json(json!({"id": v.status, "description": status_name(v.status)})),
            "language" => {
                Attr::Json(json!({"id": stored.language_id, "name": stored.language_name}))
            }
            _ => continue,
        };
        let value = match attr {
            Attr::Json(j) => j,
            Attr::Text(None) => Value::Null,
            Attr::Text(Some(b)) if base64 => json!(encode_b64(&b)),
            Attr::Text(Some(b)) => json!(String::from_utf8(b).map_err(|_| NotUtf8)?),
        };
        out.insert(f.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// The body of a Judge0 job's callback: the submission with the default attributes, base64,
/// as Judge0 PUTs it. None for a job that is not Judge0's.
pub fn callback(record: &Value) -> Option<Value> {
    Stored::from_record(record)?;
    render(record, DEFAULT_FIELDS, true).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge0_ids_are_unique_and_name_our_languages() {
        let table = isobox_core::LanguageTable::builtin();
        let mut ids = std::collections::BTreeSet::new();
        for j in LANGUAGES {
            for id in std::iter::once(&j.id).chain(j.also) {
                assert!(ids.insert(*id), "Judge0 id {id} twice");
            }
            assert!(table.get(j.ours).is_some(), "{} is not a language", j.ours);
        }
        assert!(LANGUAGES.windows(2).all(|w| w[0].id < w[1].id), "by id");
        assert!(LANGUAGES.len() >= 30);
    }

    #[test]
    fn comparison_is_judge0s() {
        assert!(outputs_match(b"hello", b"hello\n"));
        assert!(outputs_match(b"a \nb\n\n\n", b"a\nb"));
        assert!(outputs_match(b"a\r\nb", b"a\nb\n"));
        assert!(!outputs_match(b" a", b"a"));
        assert!(!outputs_match(b"a\n\nb", b"a\nb"));
        assert!(!outputs_match(b"hello", b"Hello"));
    }

    #[test]
    fn base64_is_rubys() {
        assert_eq!(encode_b64(b"hello, Judge0\n"), "aGVsbG8sIEp1ZGdlMAo=\n");
        let long = encode_b64(&[7u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 60));
        assert_eq!(decode_b64(&long).unwrap(), vec![7u8; 100]);
        assert_eq!(decode_b64("SnVkZ2Uw").unwrap(), b"Judge0");
        assert!(decode_b64("not base64!").is_none());
    }

    #[test]
    fn arguments_split_as_a_shell_line() {
        assert_eq!(
            split_args(r#"a "b c" 'd e' f\ g"#),
            ["a", "b c", "d e", "f g"]
        );
        assert_eq!(split_args("x; rm -rf / | y"), ["x", "rm", "-rf", "/", "y"]);
        assert_eq!(split_args(r#""""#), [""]);
        assert!(split_args("   ").is_empty());
    }

    #[test]
    fn fields_as_judge0_reads_them() {
        assert_eq!(fields(None).unwrap(), DEFAULT_FIELDS);
        assert_eq!(fields(Some("*")).unwrap(), ALL_FIELDS);
        assert_eq!(
            fields(Some("stdout,status_id")).unwrap(),
            ["stdout", "status_id"]
        );
        assert_eq!(
            fields(Some("stdout,bogus,nope")).unwrap_err(),
            "invalid fields: [bogus, nope]"
        );
    }

    #[test]
    fn times_and_dates_as_rails_prints_them() {
        assert_eq!(seconds_text(0.012), "0.012");
        assert_eq!(seconds_text(1.5), "1.5");
        assert_eq!(seconds_text(0.0), "0.0");
        assert_eq!(datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(datetime(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn statuses_from_our_outcomes() {
        let s = |v: Value| run_status(&v).0;
        assert_eq!(s(json!({"status": "ok"})), ACCEPTED);
        assert_eq!(s(json!({"status": "runtime_error", "exit_code": 3})), NZEC);
        assert_eq!(s(json!({"status": "signal", "signal": "SIGSEGV"})), SIGSEGV);
        assert_eq!(s(json!({"status": "signal", "signal": "SIGFPE"})), SIGFPE);
        assert_eq!(s(json!({"status": "signal", "signal": "SIGABRT"})), SIGABRT);
        assert_eq!(s(json!({"status": "signal", "signal": "SIGXFSZ"})), SIGXFSZ);
        assert_eq!(s(json!({"status": "signal", "signal": "SIGBUS"})), OTHER);
        assert_eq!(s(json!({"status": "timeout"})), TIME_LIMIT);
        assert_eq!(s(json!({"status": "memory_limit"})), OTHER);
        assert_eq!(s(json!({"status": "output_limit"})), SIGXFSZ);
        assert_eq!(s(json!({"status": "internal_error"})), INTERNAL_ERROR);
        assert_eq!(STATUSES.len(), 14);
    }
}
