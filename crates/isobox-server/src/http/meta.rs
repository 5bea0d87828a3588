//! The service routes: languages, health, metrics, the OpenAPI document, and the fallbacks.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{self, ApiError, ErrorKind};
use crate::metrics::Gauges;
use crate::state::App;

pub async fn languages(State(app): State<Arc<App>>) -> Response {
    let list: Vec<serde_json::Value> = api::languages(&app)
        .iter()
        .map(|l| serde_json::json!({ "name": l.name, "aliases": l.aliases, "version": l.version, "compiled": l.compiled, "runtime": l.runtime }))
        .collect();
    Json(list).into_response()
}

pub async fn health(State(app): State<Arc<App>>) -> Response {
    if app.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    Json(serde_json::json!({"status": "ok"})).into_response()
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (busy, total, queued) = app.engine.load();
    let c = app.engine.cache_stats();
    let text = app.metrics.render(&Gauges {
        slots_busy: busy,
        slots_capacity: total,
        queue_depth: queued,
        cache_entries: c.entries,
        cache_bytes: c.bytes,
        cache_hits: c.hits,
        cache_misses: c.misses,
        compile_cache: app.engine.executor().compile_cache().stats(),
        redis: app.redis.as_ref().map(|r| (r.up(), r.fallbacks())),
        backend: match app.config.backend {
            crate::config::BackendKind::Native => "native",
            crate::config::BackendKind::Docker => "docker",
        },
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

pub async fn openapi(State(app): State<Arc<App>>) -> Response {
    Json(app.openapi.clone()).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed here"),
    )
}
