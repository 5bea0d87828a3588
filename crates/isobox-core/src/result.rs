//! The public result of a run (the result object of the README's REST API) and of a syntax check, made from a
//! backend's report.

use std::time::Duration;

use isobox_sandbox::{ExecReport, PhaseReport, Status};
use serde::{Deserialize, Serialize};

/// How a program ended: the sandbox's statuses, plus `compile_error` for a run whose compile
/// step failed. Serialized in snake_case (`"ok"`, `"memory_limit"`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    CompileError,
    RuntimeError,
    Signal,
    Timeout,
    MemoryLimit,
    OutputLimit,
    #[default]
    InternalError,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::CompileError => "compile_error",
            RunStatus::RuntimeError => "runtime_error",
            RunStatus::Signal => "signal",
            RunStatus::Timeout => "timeout",
            RunStatus::MemoryLimit => "memory_limit",
            RunStatus::OutputLimit => "output_limit",
            RunStatus::InternalError => "internal_error",
        }
    }
}

impl From<Status> for RunStatus {
    fn from(s: Status) -> RunStatus {
        match s {
            Status::Ok => RunStatus::Ok,
            Status::RuntimeError => RunStatus::RuntimeError,
            Status::Signal => RunStatus::Signal,
            Status::Timeout => RunStatus::Timeout,
            Status::MemoryLimit => RunStatus::MemoryLimit,
            Status::OutputLimit => RunStatus::OutputLimit,
            Status::InternalError => RunStatus::InternalError,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for RunStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How one program ended (the compile step or the run): the fields the README's result object gives both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub status: RunStatus,
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
        Outcome::of(p, false)
    }
}

impl Outcome {
    /// The outcome of a phase, its output as text (invalid UTF-8 replaced by U+FFFD) or, with
    /// `base64`, as the exact bytes in base64.
    pub fn of(p: &PhaseReport, base64: bool) -> Outcome {
        let out = |b: &[u8]| {
            if base64 {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(b)
            } else {
                text(b)
            }
        };
        Outcome {
            status: p.status.into(),
            exit_code: p.exit_code,
            signal: signal_of(p),
            stdout: out(&p.stdout),
            stderr: out(&p.stderr),
            stdout_truncated: p.stdout_truncated,
            stderr_truncated: p.stderr_truncated,
            cpu_time_ms: ms(p.cpu_time),
            wall_time_ms: ms(p.wall_time),
            memory_peak_bytes: p.memory_peak_bytes,
        }
    }
}

/// The public result object (README, REST API): the run's outcome at the top level, the compile
/// step's (if any) under `compile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecutionResult {
    pub id: String,
    pub language: String,
    pub version: String,
    #[serde(flatten)]
    pub run: Outcome,
    pub compile: Option<Outcome>,
    pub cached: bool,
    /// The compile step's artifacts came from the compile cache (the compiler did not run
    /// again; `compile` is the outcome of the run that made them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compile_cached: bool,
    /// `base64` when `stdout` and `stderr` (everywhere in this result) are base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// One entry per test case, in order (requests with `tests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<Vec<TestResult>>,
    /// The tests' totals (requests with `tests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The files `outputs` asked for that the program left (requests with `outputs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<OutputFile>>,
    /// Entries `outputs` matched that were not returned, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files_skipped: Vec<SkippedFile>,
    /// Why the sandbox failed (status `internal_error`); logged, never sent to clients.
    #[serde(skip)]
    pub internal_message: Option<String>,
}

/// A test's verdict: `accepted`, `wrong_answer`, the run's status when it did not end `ok`
/// (`runtime_error`, `timeout`, ...), `compile_error` for every case of a program that did not
/// compile, `skipped` after a failure with `stop_on_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    WrongAnswer,
    CompileError,
    RuntimeError,
    Signal,
    Timeout,
    MemoryLimit,
    OutputLimit,
    InternalError,
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::WrongAnswer => "wrong_answer",
            Verdict::CompileError => "compile_error",
            Verdict::RuntimeError => "runtime_error",
            Verdict::Signal => "signal",
            Verdict::Timeout => "timeout",
            Verdict::MemoryLimit => "memory_limit",
            Verdict::OutputLimit => "output_limit",
            Verdict::InternalError => "internal_error",
            Verdict::Skipped => "skipped",
        }
    }

    /// The verdict of a case's run: `wrong_answer` when it ended `ok` but its output did not
    /// match (`equal` is `None` without an expected output), else its status's.
    pub fn of_run(status: RunStatus, equal: Option<bool>) -> Verdict {
        match (status, equal) {
            (RunStatus::Ok, Some(false)) => Verdict::WrongAnswer,
            (status, _) => Verdict::of_status(status),
        }
    }

    /// The verdict of a run that did not end `ok`.
    pub fn of_status(s: RunStatus) -> Verdict {
        match s {
            RunStatus::Ok => Verdict::Accepted,
            RunStatus::CompileError => Verdict::CompileError,
            RunStatus::RuntimeError => Verdict::RuntimeError,
            RunStatus::Signal => Verdict::Signal,
            RunStatus::Timeout => Verdict::Timeout,
            RunStatus::MemoryLimit => Verdict::MemoryLimit,
            RunStatus::OutputLimit => Verdict::OutputLimit,
            RunStatus::InternalError => Verdict::InternalError,
        }
    }
}

/// The result of one test case: its run's outcome and its verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestResult {
    /// The case's `name`, or its 1-based position.
    pub name: String,
    pub verdict: Verdict,
    #[serde(flatten)]
    pub run: Outcome,
}

impl TestResult {
    /// A case that did not run (after the first failure, with `stop_on_failure`).
    pub fn skipped(name: &str) -> TestResult {
        TestResult {
            name: name.to_string(),
            verdict: Verdict::Skipped,
            run: Outcome {
                status: RunStatus::Ok,
                ..Outcome::default()
            },
        }
    }
}

/// The totals of a request's tests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// `accepted` when every case was, else the first case's verdict that was not.
    pub verdict: Verdict,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub total: usize,
    /// Wall time of the runs, summed (the compile step not included).
    pub wall_time_ms: u64,
    /// CPU time of the runs, summed.
    pub cpu_time_ms: u64,
    /// The largest memory peak of any run.
    pub memory_peak_bytes: u64,
}

/// A file the program left in its work dir, asked for with `outputs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputFile {
    /// Relative to the work dir.
    pub name: String,
    pub size: u64,
    /// Always base64.
    pub content: String,
}

/// An entry `outputs` matched that was not returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SkippedFile {
    pub name: String,
    /// `symlink`, `not_regular` (fifo, socket, device, directory), `too_many_files` or
    /// `too_large`.
    pub reason: String,
}

/// `result.status`, `result.stdout`, ... read the run's outcome, as the JSON has them.
impl std::ops::Deref for ExecutionResult {
    type Target = Outcome;
    fn deref(&self) -> &Outcome {
        &self.run
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

/// A new random id (UUID v4) for a run or a job.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn signal_of(r: &PhaseReport) -> Option<String> {
    r.signal.map(isobox_sandbox::signal_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_unique() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_id());
    }

    #[test]
    fn statuses_read_as_their_json_names() {
        assert_eq!(RunStatus::from(Status::MemoryLimit), "memory_limit");
        assert_eq!(
            serde_json::to_value(RunStatus::CompileError).unwrap(),
            "compile_error"
        );
        assert_eq!(RunStatus::default(), RunStatus::InternalError);
    }
}
