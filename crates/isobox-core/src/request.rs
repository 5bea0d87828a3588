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
    /// `utf-8` (the default) or `base64`: how `code`, `stdin` and the tests' `stdin` and
    /// `expected_output` are given, and how the result's `stdout` and `stderr` (the compile
    /// step's and each test's too) are returned. Files carry their own `encoding`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Test cases: the program is compiled once, then run once per case, each in a fresh
    /// sandbox with the run limits. The case's `stdin` and `args` replace the request's.
    #[serde(default)]
    pub tests: Option<Vec<TestCase>>,
    /// How a test's output is compared with its `expected_output` (default `exact`).
    #[serde(default)]
    pub compare: Option<Compare>,
    /// Stop at the first test that is not accepted; the rest are reported `skipped`.
    #[serde(default)]
    pub stop_on_failure: Option<bool>,
    /// Files to return from the work dir after the run: names or glob patterns (`*.csv`,
    /// `out/**`); regular files only, never through a symlink, within count and byte caps.
    #[serde(default)]
    pub outputs: Option<Vec<String>>,
    /// Extra compiler options, put into the language's compile command.
    #[serde(default)]
    pub compile_args: Option<Vec<String>>,
    /// Limits of the compile step; each may only tighten the language's.
    #[serde(default)]
    pub compile_limits: Option<RequestLimits>,
    /// The program's stderr goes to its stdout (one stream, in the order written).
    #[serde(default)]
    pub stderr_to_stdout: Option<bool>,
}

/// One test case of a request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the result; defaults to the case's 1-based position.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Without it the case is accepted when the program ends `ok`.
    #[serde(default)]
    pub expected_output: Option<String>,
}

/// How outputs are compared: a mode name (`"trim"`), or an object with the tolerances of
/// `float` (`{"mode": "float", "absolute": 1e-6, "relative": 1e-6}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Compare {
    pub mode: CompareMode,
    /// `float`: numbers within this absolute difference are equal (default 1e-6).
    pub absolute: f64,
    /// `float`: numbers within this difference relative to the expected one are equal
    /// (default 1e-6).
    pub relative: f64,
}

impl Default for Compare {
    fn default() -> Compare {
        Compare {
            mode: CompareMode::Exact,
            absolute: 1e-6,
            relative: 1e-6,
        }
    }
}

/// The comparison modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareMode {
    /// Byte for byte.
    #[default]
    Exact,
    /// Trailing whitespace of each line and trailing blank lines ignored.
    Trim,
    /// Whitespace-separated tokens equal.
    Tokens,
    /// Tokens equal, numbers within a tolerance.
    Float,
}

impl<'de> Deserialize<'de> for Compare {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Compare, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            mode: CompareMode,
            #[serde(default)]
            absolute: Option<f64>,
            #[serde(default)]
            relative: Option<f64>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Mode(CompareMode),
            Full(Full),
        }
        let base = Compare::default();
        match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "`compare` is one of \"exact\", \"trim\", \"tokens\", \"float\", or \
                 {\"mode\": ..., \"absolute\": number, \"relative\": number}",
            )
        })? {
            Either::Mode(mode) => Ok(Compare { mode, ..base }),
            Either::Full(f) => {
                let ok = |t: Option<f64>, dflt: f64| match t {
                    Some(t) if !t.is_finite() || t < 0.0 => Err(serde::de::Error::custom(
                        "`compare` tolerances are finite and not negative",
                    )),
                    t => Ok(t.unwrap_or(dflt)),
                };
                Ok(Compare {
                    mode: f.mode,
                    absolute: ok(f.absolute, base.absolute)?,
                    relative: ok(f.relative, base.relative)?,
                })
            }
        }
    }
}
