//! The Judge0 routes over HTTP: each handler reads Judge0's parameters, calls the
//! [`crate::api`] layer (admission, the policy, async jobs) with a request [`super::model`]
//! built, and answers in Judge0's shapes, errors included (`{"error": "..."}`, field errors
//! `{"field": ["..."]}` with 422).
//!
//! The helpers answer a refusal as the finished `Response` (the handlers return it as is), so
//! their `Err` is large by design.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self as mw, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::model::{self, Bounds, Context, Stored};
use crate::api::jobs::{self, JobRequest};
use crate::api::{ApiError, Caller, ErrorKind};
use crate::state::App;

/// The Judge0 routes (relative to the prefix), behind the gate.
pub fn router(app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/submissions", axum::routing::post(create))
        .route("/submissions/batch", get(batch_show).post(batch_create))
        .route("/submissions/{token}", get(show).delete(destroy))
        .route("/languages", get(languages))
        .route("/languages/all", get(languages_all))
        .route("/languages/{id}", get(language))
        .route("/statuses", get(statuses))
        .route("/about", get(about))
        .route("/version", get(version))
        .route("/config_info", get(config_info))
        .route_layer(mw::from_fn_with_state(app, gate))
}

/// A Judge0 error: `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// An API-layer refusal in Judge0's shape: its status and headers (`Retry-After`,
/// `RateLimit-*`, `WWW-Authenticate`, the kind the metrics count), `{"error": message}`.
fn refusal(e: ApiError) -> Response {
    let body = json!({ "error": e.message }).to_string();
    let (mut parts, _) = e.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// Admission as on the native routes, with Judge0's `X-Auth-Token` taken as an API key.
async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    if let Some(h) = app.gate.api_key_header() {
        let name = header::HeaderName::from_bytes(h.as_bytes()).ok();
        if let (Some(name), Some(token)) = (name, req.headers().get("x-auth-token").cloned()) {
            if !req.headers().contains_key(&name) {
                req.headers_mut().insert(name, token);
            }
        }
    }
    crate::http::middleware::admit_then(&app, req, next, refusal).await
}

type Q = Query<HashMap<String, String>>;

fn is_true(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true")
}

fn fields(q: &HashMap<String, String>) -> Result<Vec<&'static str>, Response> {
    model::fields(q.get("fields").map(String::as_str))
        .map_err(|m| error(StatusCode::BAD_REQUEST, m))
}

/// Our limits in Judge0's units.
pub fn bounds(app: &App) -> Bounds {
    let p = app.engine.executor().policy();
    let s = |ms: u64| ms as f64 / 1000.0;
    Bounds {
        cpu_time_limit: s(p.defaults.cpu_time_ms),
        max_cpu_time_limit: s(p.max.cpu_time_ms),
        wall_time_limit: s(p.defaults.timeout_ms),
        max_wall_time_limit: s(p.max.timeout_ms),
        memory_limit: p.defaults.memory_mb * 1024,
        max_memory_limit: p.max.memory_mb * 1024,
        stack_limit: model::STACK_KB,
        max_processes_and_or_threads: u64::from(p.defaults.max_processes),
        max_max_processes_and_or_threads: u64::from(p.max.max_processes),
        max_file_size: p.max_file_bytes / 1024,
        max_number_of_runs: 20,
        callbacks: app.config.webhook.secret.is_some(),
        max_extra_files: p.max_files.saturating_sub(1),
        max_source_bytes: p.max_source_bytes,
    }
}

/// A JSON body (our content type, size and time rules), refusals in Judge0's shape.
async fn body(app: &App, headers: &HeaderMap, body: Body) -> Result<Value, Response> {
    crate::http::body::json(
        headers,
        body,
        app.config.max_body_bytes,
        app.config.http.body_timeout,
    )
    .await
    .map_err(refusal)
}

/// One submission checked as Judge0 does; field errors as Judge0's 422 body.
fn parse(app: &App, v: &Value, base64: bool) -> Result<JobRequest, Value> {
    let b = bounds(app);
    let languages = crate::api::languages(app);
    let ctx = Context {
        languages: &languages,
        table: app.engine.executor().languages(),
        bounds: &b,
        webhook: &app.config.webhook,
        base64,
    };
    let p = model::parse(v, &ctx).map_err(|e| json!(e))?;
    Ok(JobRequest {
        request: p.request,
        callback_url: p.callback_url,
        compat: Some(p.stored.to_compat()),
    })
}

/// `POST /submissions[?base64_encoded=true][&wait=true][&fields=...]`
async fn create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Q,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let wait = is_true(&q, "wait");
    let base64 = is_true(&q, "base64_encoded");
    let fields = match fields(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let v = match body(&app, &headers, raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let job = match parse(&app, &v, base64) {
        Ok(j) => j,
        Err(errors) => return (StatusCode::UNPROCESSABLE_ENTITY, Json(errors)).into_response(),
    };
    let token = match jobs::submit(&app, &caller, job).await {
        Ok(t) => t,
        Err(e) => return refusal(e),
    };
    if !wait {
        return (StatusCode::CREATED, Json(json!({ "token": token }))).into_response();
    }
    let record = match jobs::wait_record(&app, &token).await {
        Ok(Some((r, _))) => r,
        Ok(None) => return (StatusCode::CREATED, Json(json!({ "token": token }))).into_response(),
        Err(e) => return refusal(e),
    };
    match model::render(&record, &fields, base64) {
        Ok(sub) => (StatusCode::CREATED, Json(sub)).into_response(),
        Err(model::NotUtf8) => (
            StatusCode::CREATED,
            Json(json!({ "token": token, "error": model::NOT_UTF8 })),
        )
            .into_response(),
    }
}

/// `POST /submissions/batch[?base64_encoded=true]`: `{"submissions": [...]}`; each valid one
/// queued, each answered `{"token"}` or with its errors (201 if any was queued, else 422).
async fn batch_create(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Q,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let base64 = is_true(&q, "base64_encoded");
    let v = match body(&app, &headers, raw).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let subs = v
        .get("submissions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Err(r) = batch_size(&app, subs.len()) {
        return r;
    }
    let mut parsed = Vec::with_capacity(subs.len());
    let mut answers: Vec<Option<Value>> = Vec::with_capacity(subs.len());
    for s in &subs {
        match parse(&app, s, base64) {
            Ok(j) => {
                parsed.push(Ok(j));
                answers.push(None);
            }
            Err(errors) => {
                parsed.push(Err(ApiError::new(ErrorKind::InvalidRequest, "")));
                answers.push(Some(errors));
            }
        }
    }
    let queued = match jobs::submit_each(&app, &caller, parsed).await {
        Ok(q) => q,
        Err(e) => return refusal(e),
    };
    let mut any = false;
    let out: Vec<Value> = queued
        .into_iter()
        .zip(answers)
        .map(|(r, a)| match (a, r) {
            (Some(errors), _) => errors,
            (None, Ok(token)) => {
                any = true;
                json!({ "token": token })
            }
            (None, Err(e)) => json!({ "error": e.message }),
        })
        .collect();
    let status = if any {
        StatusCode::CREATED
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, Json(out)).into_response()
}

fn batch_size(app: &App, n: usize) -> Result<(), Response> {
    let max = app.config.batch_max;
    if n > max {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("number of submissions in a batch should be less than or equal to {max}"),
        ));
    }
    if n == 0 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "there should be at least one submission in a batch",
        ));
    }
    Ok(())
}

/// A Judge0 job of `caller` (404 when unknown, expired, another caller's or not Judge0's).
async fn judge0_record(app: &App, caller: &Caller, token: &str) -> Result<Value, Response> {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "submission not found (unknown, expired, or submitted with another key)",
        )
    };
    match jobs::record(app, caller, token).await {
        Ok(r) if Stored::from_record(&r).is_some() => Ok(r),
        Ok(_) => Err(not_found()),
        Err(e) if e.kind == ErrorKind::NotFound => Err(not_found()),
        Err(e) => Err(refusal(e)),
    }
}

/// The `fields` a request asks for and the caller's submission `token` (Judge0's 400 or 404).
async fn fields_and_record(
    app: &App,
    caller: &Caller,
    token: &str,
    q: &HashMap<String, String>,
) -> Result<(Vec<&'static str>, Value), Response> {
    let fields = fields(q)?;
    Ok((fields, judge0_record(app, caller, token).await?))
}

/// `GET /submissions/{token}[?base64_encoded=true][&fields=...]`
async fn show(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Query(q): Q,
) -> Response {
    let (fields, record) = match fields_and_record(&app, &caller, &token, &q).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match model::render(&record, &fields, is_true(&q, "base64_encoded")) {
        Ok(sub) => Json(sub).into_response(),
        Err(model::NotUtf8) => error(StatusCode::BAD_REQUEST, model::NOT_UTF8),
    }
}

/// `GET /submissions/batch?tokens=a,b,c[&base64_encoded=true][&fields=...]`: unknown tokens
/// are `null`.
async fn batch_show(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let fields = match fields(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let tokens = headers
        .get("tokens")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get("tokens").cloned())
        .unwrap_or_default();
    let tokens: Vec<&str> = tokens.trim().split(',').filter(|t| !t.is_empty()).collect();
    if let Err(r) = batch_size(&app, tokens.len()) {
        return r;
    }
    let base64 = is_true(&q, "base64_encoded");
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        match judge0_record(&app, &caller, t.trim()).await {
            Ok(r) => match model::render(&r, &fields, base64) {
                Ok(sub) => out.push(sub),
                Err(model::NotUtf8) => {
                    return error(StatusCode::BAD_REQUEST, model::NOT_UTF8_BATCH)
                }
            },
            Err(r) if r.status() == StatusCode::NOT_FOUND => out.push(Value::Null),
            Err(r) => return r,
        }
    }
    Json(json!({ "submissions": out })).into_response()
}

/// `DELETE /submissions/{token}[?fields=...]`: a finished submission is deleted and answered
/// (base64, as Judge0 forces it); one in queue or processing is refused (400).
async fn destroy(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Query(q): Q,
) -> Response {
    let (fields, record) = match fields_and_record(&app, &caller, &token, &q).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let stored = Stored::from_record(&record).unwrap_or_default();
    let status = model::verdict(&record, &stored).status;
    if status == model::IN_QUEUE || status == model::PROCESSING {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "submission cannot be deleted because its status is {status} ({})",
                model::status_name(status)
            ),
        );
    }
    let record = match jobs::delete(&app, &caller, &token).await {
        Ok(r) => r,
        Err(e) => return refusal(e),
    };
    match model::render(&record, &fields, true) {
        Ok(sub) => Json(sub).into_response(),
        Err(model::NotUtf8) => error(StatusCode::BAD_REQUEST, model::NOT_UTF8),
    }
}

/// `GET /languages`: `[{"id", "name"}]`, the languages this host runs, by id.
async fn languages(State(app): State<Arc<App>>) -> Response {
    let list: Vec<Value> = model::listed_languages(&crate::api::languages(&app))
        .into_iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect();
    Json(list).into_response()
}

/// `GET /languages/all`: `[{"id", "name", "is_archived"}]`, by name.
async fn languages_all(State(app): State<Arc<App>>) -> Response {
    let mut list = model::listed_languages(&crate::api::languages(&app));
    list.sort_by(|a, b| a.1.cmp(&b.1));
    let list: Vec<Value> = list
        .into_iter()
        .map(|(id, name)| json!({ "id": id, "name": name, "is_archived": false }))
        .collect();
    Json(list).into_response()
}

/// `GET /languages/{id}`: `{"id", "name", "is_archived", "source_file", "compile_cmd",
/// "run_cmd"}` (our commands, placeholders included); 404 when this host has no such language.
async fn language(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let languages = crate::api::languages(&app);
    let found = id
        .parse::<u32>()
        .ok()
        .and_then(|n| model::language_by_id(n, &languages).map(|l| (n, l)));
    let Some((n, (j, info))) = found else {
        return error(
            StatusCode::NOT_FOUND,
            format!("language with id {id} doesn't exist"),
        );
    };
    let entry = app.engine.executor().languages().get(j.ours);
    Json(json!({
        "id": n,
        "name": j.name(&info.version),
        "is_archived": false,
        "source_file": entry.map(|l| l.file.clone()),
        "compile_cmd": entry.and_then(|l| l.compile.as_ref()).map(|c| c.join(" ")),
        "run_cmd": entry.map(|l| l.run.join(" ")),
    }))
    .into_response()
}

/// `GET /statuses`: `[{"id", "description"}]`.
async fn statuses() -> Response {
    let list: Vec<Value> = model::STATUSES
        .iter()
        .map(|(id, d)| json!({ "id": id, "description": d }))
        .collect();
    Json(list).into_response()
}

/// `GET /about`.
async fn about() -> Response {
    Json(json!({
        "version": model::JUDGE0_VERSION,
        "homepage": "https://github.com/isobox/isobox",
        "source_code": "https://github.com/isobox/isobox",
        "maintainer": format!(
            "IsoBox {} (Judge0 CE {} compatible API)",
            env!("CARGO_PKG_VERSION"),
            model::JUDGE0_VERSION
        ),
    }))
    .into_response()
}

/// `GET /version`: plain text.
async fn version() -> Response {
    model::JUDGE0_VERSION.into_response()
}

/// `GET /config_info`: our effective limits and switches in Judge0's names and units.
async fn config_info(State(app): State<Arc<App>>) -> Response {
    let b = bounds(&app);
    Json(json!({
        "maintenance_mode": false,
        "enable_wait_result": true,
        "enable_compiler_options": true,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": true,
        "enable_submission_delete": true,
        "enable_callbacks": b.callbacks,
        "callbacks_max_tries": app.config.webhook.max_attempts,
        "callbacks_timeout": app.config.webhook.timeout.as_secs_f64(),
        "enable_additional_files": true,
        "max_queue_size": app.config.queue,
        "cpu_time_limit": b.cpu_time_limit,
        "max_cpu_time_limit": b.max_cpu_time_limit,
        "cpu_extra_time": 0.0,
        "max_cpu_extra_time": 0.0,
        "wall_time_limit": b.wall_time_limit,
        "max_wall_time_limit": b.max_wall_time_limit,
        "memory_limit": b.memory_limit,
        "max_memory_limit": b.max_memory_limit,
        "stack_limit": b.stack_limit,
        "max_stack_limit": b.stack_limit,
        "max_processes_and_or_threads": b.max_processes_and_or_threads,
        "max_max_processes_and_or_threads": b.max_max_processes_and_or_threads,
        "enable_per_process_and_thread_time_limit": false,
        "allow_enable_per_process_and_thread_time_limit": false,
        "enable_per_process_and_thread_memory_limit": false,
        "allow_enable_per_process_and_thread_memory_limit": false,
        "max_file_size": b.max_file_size,
        "max_max_file_size": b.max_file_size,
        "number_of_runs": 1,
        "max_number_of_runs": b.max_number_of_runs,
        "redirect_stderr_to_stdout": false,
        "max_extract_size": b.max_source_bytes / 1024,
        "enable_batched_submissions": true,
        "max_submission_batch_size": app.config.batch_max,
        "submission_cache_duration": 0.0,
        "use_docs_as_homepage": false,
        "allow_enable_network": false,
        "enable_network": false,
    }))
    .into_response()
}
