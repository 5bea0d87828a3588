//! Runs of authorized submissions: answered whole (through the dedup cache), streamed (output
//! as the program writes it, stdin for interactive runs), or syntax-checked; each finished run
//! recorded once (metrics and the execution log line).

use std::sync::Arc;

use isobox_core::engine::{Execution, StdinMsg, StreamEvent, StreamHandle};
use isobox_core::{ExecutionResult, Validation};
use isobox_sandbox::Stream;
use tokio::sync::mpsc;

use super::{ApiError, Authorized, Caller, ErrorKind};
use crate::logging::EXEC;
use crate::state::App;

/// Which API a run came through (the execution log's `api` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Rest,
    Grpc,
    Jobs,
    /// The Piston compatible API (the Judge0 one runs everything as jobs).
    Piston,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Rest => "rest",
            Via::Grpc => "grpc",
            Via::Jobs => "jobs",
            Via::Piston => "piston",
        }
    }
}

/// Runs `auth` to its end: answered from the dedup cache when an identical submission ran
/// (or is running), else in a sandbox slot.
pub async fn execute(
    app: &App,
    caller: &Caller,
    auth: Authorized,
    via: Via,
) -> Result<ExecutionResult, ApiError> {
    execute_as(app, &caller.key(), auth, via).await
}

/// [`execute`] for a caller known by its key only (a queued job).
pub(crate) async fn execute_as(
    app: &App,
    caller: &str,
    auth: Authorized,
    via: Via,
) -> Result<ExecutionResult, ApiError> {
    let ex = app.engine.execute(auth.into_submission(), caller).await?;
    record(app, caller, &ex, via, false);
    Ok(ex.result)
}

/// Runs `auth` without the cache, cancellably: dropping the future kills the sandbox (a
/// deadline, a client gone).
pub async fn execute_uncached(
    app: &Arc<App>,
    caller: &Caller,
    auth: Authorized,
    via: Via,
) -> Result<ExecutionResult, ApiError> {
    let mut run = stream(app, caller, auth, via, false);
    loop {
        match run.next().await {
            Some(RunEvent::Output { .. } | RunEvent::Compiled(_)) => {}
            Some(RunEvent::Done(r)) => return *r,
            None => {
                return Err(ApiError::new(
                    ErrorKind::Internal,
                    "the run ended without a result",
                ))
            }
        }
    }
}

/// Runs `auth` in the syntax checker of its language (nothing of the program runs).
pub async fn validate(app: &App, auth: Authorized) -> Result<Validation, ApiError> {
    Ok(app.engine.validate(auth.submission()).await?)
}

/// What a streamed run yields: the compile step's outcome (compiled languages), output as
/// produced, then exactly one `Done` (already recorded).
#[derive(Debug)]
pub enum RunEvent {
    /// The compile step's outcome, before the program's output (compiled languages).
    Compiled(Box<isobox_core::Outcome>),
    Output {
        stream: Stream,
        data: Vec<u8>,
    },
    Done(Box<Result<ExecutionResult, ApiError>>),
}

/// A streamed run (never cached). Dropping it kills the sandbox within a supervisor tick.
pub struct RunStream {
    app: Arc<App>,
    caller: String,
    via: Via,
    handle: StreamHandle,
    done: bool,
}

/// Starts a streamed run; with `interactive`, stdin stays open until [`StdinMsg::Close`].
pub fn stream(
    app: &Arc<App>,
    caller: &Caller,
    auth: Authorized,
    via: Via,
    interactive: bool,
) -> RunStream {
    let handle = app
        .engine
        .execute_stream(auth.into_submission(), &caller.key(), interactive);
    RunStream {
        app: app.clone(),
        caller: caller.key(),
        via,
        handle,
        done: false,
    }
}

impl RunStream {
    /// The next event; `None` after `Done`.
    pub async fn next(&mut self) -> Option<RunEvent> {
        if self.done {
            return None;
        }
        match self.handle.events.recv().await? {
            StreamEvent::Compiled(c) => Some(RunEvent::Compiled(c)),
            StreamEvent::Output { stream, data } => Some(RunEvent::Output { stream, data }),
            StreamEvent::Done(r) => {
                self.done = true;
                Some(RunEvent::Done(Box::new(match *r {
                    Ok(ex) => {
                        record(&self.app, &self.caller, &ex, self.via, true);
                        Ok(ex.result)
                    }
                    Err(e) => Err(e.into()),
                })))
            }
        }
    }

    /// Where an interactive run's stdin goes (bounded: a sender that gets ahead of the
    /// program waits).
    pub fn stdin(&self) -> mpsc::Sender<StdinMsg> {
        self.handle.stdin.clone()
    }

    /// The most stdin an interactive run may be sent in all: what a plain request may carry.
    pub fn stdin_cap(&self) -> usize {
        self.app.engine.executor().policy().max_stdin_bytes
    }
}

/// Metrics and the execution log line of a finished run (never code or output).
fn record(app: &App, caller: &str, ex: &Execution, via: Via, streamed: bool) {
    let r = &ex.result;
    app.metrics.execution(&r.language, r.status.as_str());
    if let Some(ran) = ex.ran {
        app.metrics.run_time(ran);
        app.metrics.queue_time(ex.queued);
    }
    if let Some(m) = &r.internal_message {
        tracing::error!(id = %r.id, language = %r.language, error = %m, "sandbox failure during a run");
    }
    tracing::info!(
        target: EXEC,
        id = %r.id,
        principal = %caller,
        language = %r.language,
        status = %r.status,
        cached = r.cached,
        streamed,
        api = via.as_str(),
        cpu_ms = r.cpu_time_ms,
        wall_ms = r.wall_time_ms,
        queued_ms = ex.queued.as_millis() as u64,
        code_sha = %ex.code_hash,
        code_bytes = ex.code_bytes,
        "execution"
    );
}
