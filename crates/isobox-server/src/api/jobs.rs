//! Async jobs as the API offers them: submission (one, or a batch checked whole before any is
//! queued), reading a job's record, waiting for it, and the runner the job workers call.

use std::sync::Arc;
use std::time::Duration;

use isobox_core::ExecuteRequest;
use serde_json::{json, Value};

use super::request::{authorize, validate, Action};
use super::run::{execute_as, Via};
use super::{ApiError, Caller, ErrorKind};
use crate::jobs::{now_ms, public_view, JobError, JobSpec, JobState};
use crate::state::App;

/// One submission: the request and where to send its result.
pub struct JobRequest {
    pub request: ExecuteRequest,
    pub callback_url: Option<String>,
}

/// How long a client may wait for a job (`?wait=true`) before getting its current state.
pub const JOB_WAIT: Duration = Duration::from_secs(60);

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        ApiError::new(ErrorKind::JobsUnavailable, e.to_string()).retry_after(1)
    }
}

/// Checks one submission as a run would be checked (validation, the caller's policy), plus
/// its callback destination; nothing is queued.
async fn spec(app: &App, caller: &Caller, job: JobRequest) -> Result<JobSpec, ApiError> {
    authorize(app, caller, Action::Execute, job.request.clone()).await?;
    if let Some(url) = &job.callback_url {
        crate::webhook::check_url(&app.config.webhook, url)
            .map_err(|e| ApiError::new(ErrorKind::InvalidCallback, e.to_string()))?;
    }
    Ok(JobSpec {
        id: isobox_core::new_id(),
        request: job.request,
        caller: caller.key(),
        callback_url: job.callback_url,
        submitted_at: now_ms(),
    })
}

/// Queues one job; its id.
pub async fn submit(app: &App, caller: &Caller, job: JobRequest) -> Result<String, ApiError> {
    let spec = spec(app, caller, job).await?;
    app.jobs.submit(std::slice::from_ref(&spec)).await?;
    Ok(spec.id)
}

/// Queues a batch, all or none: at most `ISOBOX_BATCH_MAX`, each counted against the caller's
/// rate limit (admission counted the first), each checked before any is queued (a refusal
/// names the submission's index). The ids, in order.
pub async fn submit_batch(
    app: &App,
    caller: &Caller,
    batch: Vec<JobRequest>,
) -> Result<Vec<String>, ApiError> {
    if batch.is_empty() {
        return Err(ApiError::new(
            ErrorKind::InvalidJson,
            "`submissions` is empty",
        ));
    }
    let max = app.config.batch_max;
    if batch.len() > max {
        return Err(ApiError::too_large(format!(
            "{} submissions; at most {max} per batch",
            batch.len()
        )));
    }
    if batch.len() > 1 {
        let extra = (batch.len() - 1) as u32;
        let d = app.gate.rate(&caller.principal, &caller.roles, extra).await;
        if !d.allowed {
            return Err(super::refusal(
                app,
                crate::auth::gate::Refusal::RateLimited(d),
            ));
        }
    }
    let mut specs = Vec::with_capacity(batch.len());
    for (i, job) in batch.into_iter().enumerate() {
        specs.push(
            spec(app, caller, job)
                .await
                .map_err(|e| e.context(format_args!("submission {i}")))?,
        );
    }
    app.jobs.submit(&specs).await?;
    Ok(specs.into_iter().map(|s| s.id).collect())
}

/// A job's record as its owner sees it (404 when unknown, expired or another caller's).
pub async fn get(app: &App, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    let not_found =
        || ApiError::not_found("no such job (unknown, expired, or submitted by another caller)");
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(not_found());
    }
    let rec = app
        .jobs
        .get(id)
        .await?
        .filter(|r| crate::jobs::owned_by(r, &caller.key()))
        .ok_or_else(not_found)?;
    Ok(public_view(rec))
}

/// The job's record once done, or as it is after [`JOB_WAIT`]; whether it is done.
pub async fn wait(app: &App, id: &str) -> Result<Option<(Value, bool)>, ApiError> {
    let rec = app.jobs.wait_done(id, JOB_WAIT).await?;
    Ok(rec.map(|r| {
        let done = JobState::of(&r) == Some(JobState::Done);
        (public_view(r), done)
    }))
}

/// The runner of this node's job workers.
pub fn runner(app: Arc<App>) -> crate::jobs::consume::Runner {
    Arc::new(move |spec| {
        let app = app.clone();
        Box::pin(async move { run(&app, spec).await })
    })
}

/// Runs one job: marks it running, validates and runs it through the engine (cache, slots,
/// sandbox), finishes its record and, if this worker's record is the one clients see, sends
/// the callback. False when the job store could not be reached (the job must stay queued).
async fn run(app: &Arc<App>, spec: JobSpec) -> bool {
    let started_at = match app.jobs.start(&spec).await {
        Some(Some(t)) => t,
        // Finished elsewhere (a taken-over entry whose first worker was only slow).
        Some(None) => return true,
        None => return false,
    };
    // The policy was checked at submission; what comes back from the queue is validated again.
    let result = match validate(app, spec.request.clone()).await {
        Ok(sub) => {
            let auth = super::request::Authorized::queued(sub);
            execute_as(app, &spec.caller, auth, Via::Jobs).await
        }
        Err(e) => Err(e),
    };
    let outcome = match result {
        Ok(r) => serde_json::to_value(&r).unwrap_or_else(|_| json!({})),
        Err(e) => {
            e.count(&app.metrics);
            json!({ "error": e.body() })
        }
    };
    let done = match app.jobs.finish(&spec, started_at, outcome).await {
        Some(Some(record)) => record,
        Some(None) => return true,
        None => return false,
    };
    if let Some(url) = spec.callback_url.clone() {
        let app = app.clone();
        let body = public_view(done).to_string().into_bytes();
        let id = spec.id.clone();
        tokio::spawn(async move {
            match crate::webhook::deliver(&app.config.webhook, &url, &id, &body).await {
                Ok(d) => {
                    tracing::info!(target: crate::logging::EXEC, id = %id, attempts = d.attempts, status = d.status, "callback delivered")
                }
                Err(e) => {
                    tracing::warn!(target: crate::logging::EXEC, id = %id, error = %e, "callback not delivered")
                }
            }
        });
    }
    true
}
