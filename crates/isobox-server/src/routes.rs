//! Routes, handlers and the middleware every response passes (request id, security headers,
//! body limit, metrics).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use isobox_core::{CoreError, ExecuteRequest};
use serde::de::DeserializeOwned;

use crate::auth::gate::{security_event, Refusal};
use crate::auth::policy::Facts;
use crate::auth::ratelimit::Decision;
use crate::auth::tls::PeerCerts;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::jobs::{self, JobError, JobSpec};
use crate::logging::{EXEC, SECURITY};
use crate::metrics::Gauges;
use crate::App;

/// The authenticated caller of an `/api/v1/*` request, put there by the gate.
#[derive(Clone)]
struct Caller {
    principal: Principal,
    roles: Vec<String>,
}

impl Caller {
    /// The dedup scope and log identity: method and id (two methods never share a scope).
    fn key(&self) -> String {
        format!("{}:{}", self.principal.method, self.principal.id)
    }
}

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    let api = Router::new()
        .route("/api/v1/execute", post(execute))
        .route("/api/v1/execute/stream", post(execute_stream))
        .route("/api/v1/execute/ws", get(execute_ws))
        .route("/api/v1/validate", post(validate))
        .route("/api/v1/languages", get(languages))
        .route("/api/v1/executions", post(submit_job))
        .route("/api/v1/executions/batch", post(submit_batch))
        .route("/api/v1/executions/{id}", get(get_job))
        .route_layer(middleware::from_fn_with_state(app.clone(), gate));
    Router::new()
        .merge(api)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        // The Playground: outside the gate, so the page loads and asks for a key on a 401.
        .route("/", get(crate::playground::index))
        .route("/assets/{file}", get(crate::playground::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(app.clone(), common))
        .with_state(app)
}

/// The routes of a job-only node: `/health` and `/metrics`.
pub fn worker_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), common))
        .with_state(app)
}

/// Request id, security headers, the body limit on every route, per-route metrics.
async fn common(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let started = std::time::Instant::now();
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > app.config.max_body_bytes);
    let mut resp = if too_big {
        app.metrics.rejected("too_large");
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is over the limit",
        )
        .into_response()
    } else {
        next.run(req).await
    };
    app.metrics.request(&route, resp.status().as_u16());
    // The access log; the URI may carry what a client thought was harmless (`?api_key=`): every
    // log line passes the redactor.
    tracing::info!(
        target: "isobox::http",
        request_id = %id,
        method = %method,
        uri = %uri,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    let own_cache = resp
        .extensions()
        .get::<crate::playground::OwnCacheControl>()
        .is_some();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    // The Playground's files say their own (revalidated with their ETag); nothing else is kept.
    if !own_cache {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

fn rate_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    for (name, v) in [
        ("ratelimit-limit", d.limit as u64),
        ("ratelimit-remaining", d.remaining as u64),
        ("ratelimit-reset", d.reset_secs),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
            h.insert(name, v);
        }
    }
}

fn refusal_response(app: &App, r: &Refusal) -> Response {
    let (status, kind, message) = match r {
        Refusal::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m.clone()),
        Refusal::ProviderUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_unavailable",
            "the identity provider cannot be reached; retry later".to_string(),
        ),
        Refusal::RateLimited(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; retry later".to_string(),
        ),
        Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
    };
    app.metrics.rejected(kind);
    let mut resp = ApiError::new(status, kind, message).into_response();
    match r {
        Refusal::RateLimited(d) => {
            rate_headers(&mut resp, d);
            if let Ok(v) = HeaderValue::from_str(&d.retry_after_secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        Refusal::Unauthenticated(_) => {
            let mut schemes = Vec::new();
            if let Some(h) = app.gate.api_key_header() {
                schemes.push(format!("ApiKey header=\"{h}\""));
            }
            if app
                .config
                .auth_type
                .iter()
                .any(|m| m == "jwt" || m == "oauth2")
            {
                schemes.push("Bearer".to_string());
            }
            if let Ok(v) = HeaderValue::from_str(&schemes.join(", ")) {
                if !schemes.is_empty() {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
        }
        Refusal::ProviderUnavailable => {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        Refusal::Forbidden(_) => {}
    }
    resp
}

/// Authentication, brute-force and rate limits for `/api/v1/*`.
async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    let peer = req.extensions().get::<PeerCerts>().cloned();
    let admitted = match app.gate.admit(req.headers(), peer.as_ref(), ip).await {
        Ok(a) => a,
        Err(refusal) => return refusal_response(&app, &refusal),
    };
    let decision = admitted.decision;
    req.extensions_mut().insert(Caller {
        principal: admitted.principal,
        roles: admitted.roles,
    });
    let mut resp = next.run(req).await;
    rate_headers(&mut resp, &decision);
    resp
}

/// The policy's verdict on `req` for `caller` (403 with the failed rule, never the policy).
fn authorize(
    app: &App,
    caller: &Caller,
    action: &str,
    req: &ExecuteRequest,
) -> Result<(), Box<Response>> {
    match policy_check(app, &caller.key(), &caller.roles, action, req) {
        Ok(()) => Ok(()),
        Err(Err(e)) => Err(Box::new(core_error(app, &e).into_response())),
        Err(Ok(why)) => Err(Box::new(refusal_response(
            app,
            &Refusal::Forbidden(format!("not allowed: {why}")),
        ))),
    }
}

/// The policy check for the WebSocket (its refusal travels as a message).
pub(crate) fn authorize_ws(
    app: &App,
    caller: &str,
    roles: &[String],
    req: &ExecuteRequest,
) -> Result<(), String> {
    match policy_check(app, caller, roles, "execute", req) {
        Ok(()) => Ok(()),
        Err(Ok(why)) => {
            app.metrics.rejected("forbidden");
            Err(format!("not allowed: {why}"))
        }
        // Invalid requests are reported by the precheck that follows.
        Err(Err(_)) => Ok(()),
    }
}

/// Ok, or Err(Ok(why)) for a policy denial (logged), or Err(Err(e)) for an invalid request.
/// Shared with the gRPC API.
pub(crate) fn policy_check(
    app: &App,
    caller: &str,
    roles: &[String],
    action: &str,
    req: &ExecuteRequest,
) -> Result<(), Result<String, CoreError>> {
    let limits = app.engine.executor().effective_limits(req).map_err(Err)?;
    let (files, code_bytes) = match (&req.code, &req.files) {
        (Some(c), _) => (1, c.len() as u64),
        (None, Some(f)) => (
            f.len() as u64,
            f.iter().map(|x| x.content.len() as u64).sum(),
        ),
        _ => (0, 0),
    };
    let language = app
        .engine
        .executor()
        .languages()
        .get(&req.language)
        .map(|l| l.name.clone())
        .unwrap_or_default();
    let facts = Facts {
        language,
        timeout_ms: limits.timeout_ms,
        cpu_time_ms: limits.cpu_time_ms,
        memory_mb: limits.memory_mb,
        max_processes: u64::from(limits.max_processes),
        max_output_bytes: limits.max_output_bytes,
        files,
        code_bytes,
        args: req.args.as_ref().map(|a| a.len() as u64).unwrap_or(0),
    };
    app.gate.authorize(roles, action, &facts).map_err(|why| {
        security_event("denied", "-", &why, None, Some(caller));
        Ok(why)
    })
}

fn new_request_id() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:x}-{:x}-{:x}",
        t.as_secs(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A JSON body: `Content-Type: application/json` (415 otherwise), well-formed, no unknown
/// fields (400), under the limit (413).
async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is over the limit",
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message names the field or position; it carries no server internals.
        let what = e.to_string();
        let what = what
            .split(" at line ")
            .next()
            .unwrap_or("malformed JSON")
            .to_string();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not a valid request: {what}"),
        )
    })
}

/// Metrics and the execution log line of a finished run, for every API (never code or output).
pub(crate) fn record_execution(
    app: &App,
    caller: &str,
    ex: &isobox_core::engine::Execution,
    api: &str,
    streamed: bool,
) {
    let r = &ex.result;
    app.metrics.execution(&r.language, &r.status);
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
        api,
        cpu_ms = r.cpu_time_ms,
        wall_ms = r.wall_time_ms,
        queued_ms = ex.queued.as_millis() as u64,
        code_sha = %ex.code_hash,
        code_bytes = ex.code_bytes,
        "execution"
    );
}

/// A core error as the API error (counted, and logged where it says something about the host).
pub(crate) fn core_error(app: &App, e: &CoreError) -> ApiError {
    let api = ApiError::from(e);
    app.metrics.rejected(api.kind);
    match e {
        CoreError::PatternRejected(rule) => {
            tracing::warn!(target: SECURITY, event = "pattern_rejected", rule = %rule, "submission refused by the pattern policy")
        }
        CoreError::Sandbox(err) => tracing::error!(error = %err, "sandbox failure"),
        CoreError::Config(err) => tracing::error!(error = %err, "internal failure"),
        _ => {}
    }
    api
}

/// A JSON body of the API (a request, or for the async API a value whose `callback_url` is
/// taken out first), refusals counted.
async fn execute_request<T: DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    json_body(headers, body, app.config.max_body_bytes)
        .await
        .inspect_err(|e| app.metrics.rejected(e.kind))
}

/// The request of execute, its stream and validate: parsed (refusals counted), then checked
/// against the policy for `action`; the error is the finished response.
async fn authorized_request(
    app: &App,
    caller: &Caller,
    action: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<ExecuteRequest, Response> {
    let req = execute_request(app, headers, body)
        .await
        .map_err(IntoResponse::into_response)?;
    authorize(app, caller, action, &req).map_err(|resp| *resp)?;
    Ok(req)
}

async fn execute(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req = match authorized_request(&app, &caller, "execute", &headers, body).await {
        Ok(r) => r,
        Err(resp) => return Ok(resp),
    };
    let ex = app
        .engine
        .execute(req, &caller.key())
        .await
        .map_err(|e| core_error(&app, &e))?;
    record_execution(&app, &caller.key(), &ex, "rest", false);
    Ok(Json(&ex.result).into_response())
}

async fn execute_stream(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req = match authorized_request(&app, &caller, "execute", &headers, body).await {
        Ok(r) => r,
        Err(resp) => return Ok(resp),
    };
    crate::streaming::precheck(&app, &req)
        .await
        .map_err(|e| core_error(&app, &e))?;
    let handle = app.engine.execute_stream(req, caller.key(), false);
    Ok(crate::streaming::sse(app.clone(), handle, caller.key()))
}

async fn execute_ws(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    ws: Result<
        axum::extract::ws::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    match ws {
        Ok(ws) => crate::streaming::websocket(app.clone(), ws, caller.key(), caller.roles.clone()),
        Err(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "upgrade_required",
            "this endpoint speaks WebSocket only",
        )
        .into_response(),
    }
}

async fn validate(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req = match authorized_request(&app, &caller, "validate", &headers, body).await {
        Ok(r) => r,
        Err(resp) => return Ok(resp),
    };
    let v = app
        .engine
        .validate(req)
        .await
        .map_err(|e| core_error(&app, &e))?;
    Ok(Json(v).into_response())
}

/// One submission of the async API: a request plus an optional `callback_url`, checked (JSON,
/// policy, callback destination, the request itself) before anything is queued.
async fn job_spec(
    app: &App,
    caller: &Caller,
    mut v: serde_json::Value,
) -> Result<JobSpec, Response> {
    let bad = |kind: &'static str, msg: String| {
        app.metrics.rejected(kind);
        ApiError::new(StatusCode::BAD_REQUEST, kind, msg).into_response()
    };
    let callback_url = match v.as_object_mut().and_then(|m| m.remove("callback_url")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(u)) => Some(u),
        Some(_) => {
            return Err(bad(
                "invalid_json",
                "`callback_url` must be a string".into(),
            ))
        }
    };
    let req: ExecuteRequest = serde_json::from_value(v).map_err(|e| {
        bad(
            "invalid_json",
            format!("the body is not a valid request: {e}"),
        )
    })?;
    authorize(app, caller, "execute", &req).map_err(|r| *r)?;
    if let Some(url) = &callback_url {
        crate::webhook::check_url(&app.config.webhook, url)
            .map_err(|e| bad("invalid_callback", e.to_string()))?;
    }
    app.engine
        .precheck(req.clone())
        .await
        .map_err(|e| core_error(app, &e).into_response())?;
    Ok(JobSpec {
        id: isobox_core::service::new_id(),
        request: req,
        caller: caller.key(),
        callback_url,
        submitted_at: jobs::now_ms(),
    })
}

fn job_error(app: &App, e: &JobError) -> ApiError {
    app.metrics.rejected("jobs_unavailable");
    ApiError {
        retry_after: Some(1),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    }
}

/// How long `?wait=true` waits for a job before answering 202 with its current state.
const JOB_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn wants_wait(q: &std::collections::HashMap<String, String>) -> bool {
    q.get("wait")
        .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "yes"))
}

async fn submit_job(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = execute_request(&app, &headers, body).await?;
    let spec = match job_spec(&app, &caller, v).await {
        Ok(s) => s,
        Err(resp) => return Ok(resp),
    };
    let id = spec.id.clone();
    app.jobs
        .submit(std::slice::from_ref(&spec))
        .await
        .map_err(|e| job_error(&app, &e))?;
    if wants_wait(&q) {
        let rec = app
            .jobs
            .wait_done(&id, JOB_WAIT)
            .await
            .map_err(|e| job_error(&app, &e))?;
        if let Some(rec) = rec {
            let status = if jobs::state_of(&rec) == "done" {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            return Ok((status, Json(jobs::public_view(rec))).into_response());
        }
    }
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"id": id, "state": "queued"})),
    )
        .into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/executions/{id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

async fn submit_batch(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v: serde_json::Value = execute_request(&app, &headers, body).await?;
    let bad = |msg: String| {
        app.metrics.rejected("invalid_json");
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", msg)
    };
    let subs = match v {
        serde_json::Value::Object(mut m) if m.len() == 1 => match m.remove("submissions") {
            Some(serde_json::Value::Array(a)) => a,
            _ => return Err(bad("the body must be {\"submissions\": [...]}".into())),
        },
        _ => return Err(bad("the body must be {\"submissions\": [...]}".into())),
    };
    if subs.is_empty() {
        return Err(bad("`submissions` is empty".into()));
    }
    if subs.len() > app.config.batch_max {
        app.metrics.rejected("too_large");
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{} submissions; at most {} per batch",
                subs.len(),
                app.config.batch_max
            ),
        ));
    }
    // Every submission counts against the caller's quota (the gate counted the first).
    if subs.len() > 1 {
        let d = app
            .gate
            .rate(&caller.principal, &caller.roles, (subs.len() - 1) as u32)
            .await;
        if !d.allowed {
            return Ok(refusal_response(&app, &Refusal::RateLimited(d)));
        }
    }
    let mut specs = Vec::with_capacity(subs.len());
    for (i, sub) in subs.into_iter().enumerate() {
        match job_spec(&app, &caller, sub).await {
            Ok(s) => specs.push(s),
            Err(resp) => {
                // Say which submission failed: rewrite the message with its index.
                let (parts, body) = resp.into_parts();
                let bytes = axum::body::to_bytes(body, 64 << 10)
                    .await
                    .unwrap_or_default();
                let mut err: serde_json::Value =
                    serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({}));
                if let Some(m) = err.get("message").and_then(|m| m.as_str()) {
                    err["message"] = serde_json::json!(format!("submission {i}: {m}"));
                }
                let mut resp = Json(err).into_response();
                *resp.status_mut() = parts.status;
                for (k, v) in parts.headers.iter() {
                    if k != header::CONTENT_LENGTH {
                        resp.headers_mut().insert(k.clone(), v.clone());
                    }
                }
                return Ok(resp);
            }
        }
    }
    app.jobs
        .submit(&specs)
        .await
        .map_err(|e| job_error(&app, &e))?;
    let ids: Vec<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "ids": ids })),
    )
        .into_response())
}

async fn get_job(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such job (unknown, expired, or submitted by another caller)",
        )
    };
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(not_found());
    }
    let rec = app
        .jobs
        .get(&id)
        .await
        .map_err(|e| job_error(&app, &e))?
        .filter(|r| jobs::owned_by(r, &caller.key()))
        .ok_or_else(not_found)?;
    Ok(Json(jobs::public_view(rec)).into_response())
}

async fn languages(State(app): State<Arc<App>>) -> Response {
    let list: Vec<serde_json::Value> = app
        .languages
        .iter()
        .map(|l| serde_json::json!({ "name": l.name, "aliases": l.aliases, "version": l.version, "compiled": l.compiled }))
        .collect();
    Json(list).into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    if app.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (busy, total, queued) = app.engine.load();
    let c = app.engine.cache_stats();
    let text = app.metrics.render(&Gauges {
        slots_busy: busy,
        slots_total: total,
        queue_depth: queued,
        cache_entries: c.entries,
        cache_bytes: c.bytes,
        cache_hits: c.hits,
        cache_misses: c.misses,
        redis: app.redis.as_ref().map(|r| (r.up(), r.fallbacks())),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here"),
    )
}
