//! Authorization: a wire request validated once and checked against the caller's policy.
//!
//! The core validates (`Executor::submission`: language and version resolved, files checked,
//! limits resolved); the policy then judges that same value, with the limits the run will
//! really get. The result is an [`Authorized`] submission, which only this module can make:
//! the runs of [`super::run`] and the jobs of [`super::jobs`] take nothing else, so no way in
//! can skip the policy, and nothing downstream looks the language up or resolves limits again.

use isobox_core::{ExecuteRequest, Submission};

use super::{ApiError, Caller, ErrorKind};
use crate::auth::gate::security_event;
use crate::auth::policy::Facts;
use crate::state::App;

/// What a caller asks to do, as the policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the program (`/execute`, streams, jobs, gRPC).
    Execute,
    /// Check its syntax only (`/validate`).
    Validate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Validate => "validate",
        }
    }
}

/// A submission that passed validation and the caller's policy.
#[derive(Debug, Clone)]
pub struct Authorized(Submission);

impl Authorized {
    pub fn submission(&self) -> &Submission {
        &self.0
    }

    pub fn into_submission(self) -> Submission {
        self.0
    }
}

/// Validates `req` (off the async runtime: decoding and the pattern policy are CPU work on up to
/// a MiB) and checks it against `caller`'s policy for `action`.
pub async fn authorize(
    app: &App,
    caller: &Caller,
    action: Action,
    req: ExecuteRequest,
) -> Result<Authorized, ApiError> {
    let sub = validate(app, req).await?;
    permit(app, caller, action, &sub)?;
    Ok(Authorized(sub))
}

/// The core's validation of `req`.
pub(crate) async fn validate(app: &App, req: ExecuteRequest) -> Result<Submission, ApiError> {
    let executor = app.engine.executor().clone();
    tokio::task::spawn_blocking(move || executor.submission(&req))
        .await
        .map_err(|e| isobox_core::CoreError::Config(format!("validation task failed: {e}")))?
        .map_err(ApiError::from)
}

/// The policy's verdict on `sub` (403 naming the failed rule, never the policy; logged as a
/// security event).
fn permit(app: &App, caller: &Caller, action: Action, sub: &Submission) -> Result<(), ApiError> {
    let l = &sub.limits;
    let c = &sub.compile_limits;
    let facts = Facts {
        language: sub.language.name.clone(),
        timeout_ms: l.timeout_ms,
        cpu_time_ms: l.cpu_time_ms,
        memory_mb: l.memory_mb,
        max_processes: u64::from(l.max_processes),
        max_output_bytes: l.max_output_bytes,
        files: sub.files.len() as u64,
        code_bytes: sub.code_bytes as u64,
        args: sub.args.len() as u64,
        tests: sub.tests.as_ref().map_or(0, |t| t.len() as u64),
        outputs: sub.outputs.len() as u64,
        compile_args: sub.compile_args.len() as u64,
        compile_timeout_ms: c.timeout_ms,
        compile_cpu_time_ms: c.cpu_time_ms,
        compile_memory_mb: c.memory_mb,
        compile_max_processes: u64::from(c.max_processes),
        compile_max_output_bytes: c.max_output_bytes,
    };
    app.gate
        .authorize(&caller.roles, action.as_str(), &facts)
        .map_err(|why| {
            security_event("denied", "-", &why, None, Some(&caller.key()));
            ApiError::new(ErrorKind::Forbidden, format!("not allowed: {why}"))
        })
}

impl Authorized {
    /// A queued job's submission: its caller's policy was checked when it was submitted.
    pub(super) fn queued(sub: Submission) -> Authorized {
        Authorized(sub)
    }
}
