//! IsoBox core: languages, limits, validation and the execution service. No transport here:
//! the CLI and the REST and gRPC servers call it.
//!
//! A request's way through: [`ExecuteRequest`] (the wire shape) → [`Executor::submission`]
//! (validated once, in [`submission`]) → [`Submission`] → [`engine::Engine`] (dedup cache,
//! slots and backpressure, streaming) → [`Executor::run_spec`] and the backend →
//! [`ExecutionResult`].

#![forbid(unsafe_code)]

pub mod compare;
pub mod compile_cache;
pub mod dedup;
pub mod engine;
pub mod languages;
pub mod patterns;
pub mod plan;
pub mod request;
pub mod result;
pub mod runtimes;
pub mod service;
pub mod shared;
pub mod slots;
pub mod submission;
pub mod utc;

pub use compile_cache::{CompileCacheConfig, CompileCacheStats};
pub use languages::{Language, LanguageTable};
pub use plan::Progress;
pub use request::{Compare, CompareMode, ExecuteRequest, RequestFile, RequestLimits, TestCase};
pub use result::{
    new_id, ExecutionResult, Outcome, OutputFile, RunStatus, SkippedFile, Summary, TestResult,
    Validation, Verdict,
};
pub use service::{Executor, LanguageInfo, Policy, RequestLimitsResolved};
pub use submission::{Case, CaseRef, Submission};
/// Errors of the core layer. Each maps to one HTTP and one gRPC status (in the server crate).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is malformed (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// Code, files, stdin or args over the size limits (413).
    #[error("{0}")]
    TooLarge(String),
    /// The submission matches a pattern of the configured policy (422).
    #[error("the submission matches the pattern policy ({0})")]
    PatternRejected(String),
    /// All sandbox slots are busy and the queue is full, or the wait was too long (503).
    #[error("the server is busy, retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    /// The language has no syntax check (400).
    #[error("language `{0}` has no syntax check")]
    NoCheck(String),
    /// A requested limit is above what the server allows (400).
    #[error("{0}")]
    LimitTooHigh(String),
    /// No such language (400).
    #[error("unknown language `{0}`")]
    UnknownLanguage(String),
    /// The language's toolchain is not installed on this host (400).
    #[error("language `{0}` is not available on this host")]
    LanguageUnavailable(String),
    /// The requested version is not the installed one (400).
    #[error("{language} {wanted} is not available (this host has {have})")]
    VersionUnavailable {
        language: String,
        wanted: String,
        have: String,
    },
    /// Configuration problem (startup).
    #[error("{0}")]
    Config(String),
    /// The sandbox could not run the program (500).
    #[error(transparent)]
    Sandbox(#[from] isobox_sandbox::SandboxError),
}
