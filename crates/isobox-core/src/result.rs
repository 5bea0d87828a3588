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
        Outcome {
            status: p.status.into(),
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

/// The public result object (README, REST API): the run's outcome at the top level, the compile
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
