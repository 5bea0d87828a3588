//! The request as callers send it (the README's REST API): what REST and gRPC decode, what the CLI
//! builds and what a queued job stores. Validated into a [`crate::Submission`] by
//! [`crate::Executor::submission`].

use serde::{Deserialize, Serialize};

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
