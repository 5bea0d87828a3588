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
    /// A compatibility API's fields, kept in the job's record (`None` for the native API).
    pub compat: Option<Value>,
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
        compat: job.compat,
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
    count_batch(app, caller, batch.len()).await?;
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

/// A batch's size checked (not empty, at most `ISOBOX_BATCH_MAX`) and counted against the
/// caller's rate limit (admission counted the first).
async fn count_batch(app: &App, caller: &Caller, len: usize) -> Result<(), ApiError> {
    if len == 0 {
        return Err(ApiError::new(
            ErrorKind::InvalidJson,
            "`submissions` is empty",
        ));
    }
    let max = app.config.batch_max;
    if len > max {
        return Err(ApiError::too_large(format!(
            "{len} submissions; at most {max} per batch"
        )));
    }
    if len > 1 {
        let extra = (len - 1) as u32;
        let d = app.gate.rate(&caller.principal, &caller.roles, extra).await;
        if !d.allowed {
            return Err(super::refusal(
                app,
                crate::auth::gate::Refusal::RateLimited(d),
            ));
        }
    }
    Ok(())
}

/// Queues each submission of a batch that passes its checks, on its own (the Judge0 way: a
/// refused submission does not stop the others). The batch as a whole is checked and counted
/// as [`submit_batch`] does; the answer has one entry per submission, in order.
pub async fn submit_each(
    app: &App,
    caller: &Caller,
    batch: Vec<Result<JobRequest, ApiError>>,
) -> Result<Vec<Result<String, ApiError>>, ApiError> {
    count_batch(app, caller, batch.len()).await?;
    let mut out = Vec::with_capacity(batch.len());
    let mut specs = Vec::new();
    for job in batch {
        match job {
            Ok(job) => match spec(app, caller, job).await {
                Ok(s) => {
                    out.push(Ok(s.id.clone()));
                    specs.push(s);
                }
                Err(e) => out.push(Err(e)),
            },
            Err(e) => out.push(Err(e)),
        }
    }
    if !specs.is_empty() {
        app.jobs.submit(&specs).await?;
    }
    Ok(out)
}

/// A job's record as its owner sees it (404 when unknown, expired or another caller's).
pub async fn get(app: &App, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    Ok(public_view(record(app, caller, id).await?))
}

/// A job's whole record but its owner, compatibility fields included, for its owner only
/// (404 when unknown, expired or another caller's).
pub async fn record(app: &App, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    let not_found =
        || ApiError::not_found("no such job (unknown, expired, or submitted by another caller)");
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(not_found());
    }
    let mut rec = app
        .jobs
        .get(id)
        .await?
        .filter(|r| crate::jobs::owned_by(r, &caller.key()))
        .ok_or_else(not_found)?;
    if let Some(m) = rec.as_object_mut() {
        m.remove("owner");
    }
    Ok(rec)
}

/// Deletes a finished job of `caller`: its record as [`record`] read it. A job not finished
/// yet is refused (its worker would write the record again).
pub async fn delete(app: &App, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    let rec = record(app, caller, id).await?;
    if JobState::of(&rec) != Some(JobState::Done) {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the job is not finished; it cannot be deleted yet",
        ));
    }
    app.jobs.delete(id).await?;
    Ok(rec)
}

/// The job's record once done, or as it is after [`JOB_WAIT`]; whether it is done.
pub async fn wait(app: &App, id: &str) -> Result<Option<(Value, bool)>, ApiError> {
    Ok(wait_record(app, id)
        .await?
        .map(|(r, done)| (public_view(r), done)))
}

/// [`wait`] with the whole record but its owner (compatibility fields included).
pub async fn wait_record(app: &App, id: &str) -> Result<Option<(Value, bool)>, ApiError> {
    let rec = app.jobs.wait_done(id, JOB_WAIT).await?;
    Ok(rec.map(|mut r| {
        let done = JobState::of(&r) == Some(JobState::Done);
        if let Some(m) = r.as_object_mut() {
            m.remove("owner");
        }
        (r, done)
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
        // A compatibility API's job is called back in that API's shape and method.
        let (body, method) = match (app.callback_shape)(&done) {
            Some((body, method)) => (body, method),
            None => (public_view(done), reqwest::Method::POST),
        };
        let body = body.to_string().into_bytes();
        let id = spec.id.clone();
        tokio::spawn(async move {
            match crate::webhook::deliver_with(&app.config.webhook, &url, &id, &body, method).await
            {
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
