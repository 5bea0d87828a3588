//! The REST adapter: routes, the middleware every response passes, and handlers that turn
//! HTTP into calls of the [`crate::api`] layer and its answers back into JSON.
//!
//! - [`middleware`]: request id, security headers, the body limit, metrics and the access log
//!   (`common`, every route); admission (`gate`, `/api/v1/*`).
//! - [`execute`]: `/execute`, `/validate`, `/execute/stream` (SSE) and `/execute/ws`
//!   (WebSocket), the last two through [`stream`].
//! - [`jobs`]: `/executions` (async jobs).
//! - [`meta`]: `/languages`, `/health`, `/metrics`, `/openapi.json`, fallbacks.
//! - [`error`]: an [`crate::api::ApiError`] as a response; [`body`]: JSON request bodies.

pub mod body;
pub mod error;
pub mod execute;
pub mod jobs;
pub mod meta;
pub mod middleware;
pub mod openapi;
pub mod playground;
pub mod stream;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware as mw, Router};

use crate::state::App;

/// The REST API, the Playground and the service routes, with `extra` (the compatibility
/// APIs, mounted by the caller) behind the same outer layers.
pub fn router(app: Arc<App>, extra: Router<Arc<App>>) -> Router {
    let limit = app.config.max_body_bytes;
    let api = Router::new()
        .route("/api/v1/execute", post(execute::execute))
        .route("/api/v1/execute/stream", post(execute::execute_stream))
        .route("/api/v1/execute/ws", get(execute::execute_ws))
        .route("/api/v1/validate", post(execute::validate))
        .route("/api/v1/languages", get(meta::languages))
        .route("/api/v1/executions", post(jobs::submit))
        .route("/api/v1/executions/batch", post(jobs::submit_batch))
        .route("/api/v1/executions/{id}", get(jobs::get))
        .route_layer(mw::from_fn_with_state(app.clone(), middleware::gate));
    let routes = Router::new()
        .merge(api)
        .merge(extra)
        .route("/health", get(meta::health))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi))
        // The Playground: outside the gate, so the page loads and asks for a key on a 401.
        .route("/", get(playground::index))
        .route("/assets/{file}", get(playground::asset))
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit));
    middleware::around(routes, app)
}

/// The routes of a job-only node: `/health` and `/metrics`.
pub fn worker_router(app: Arc<App>) -> Router {
    let routes = Router::new()
        .route("/health", get(meta::health))
        .route("/metrics", get(meta::metrics))
        .fallback(meta::not_found);
    middleware::around(routes, app)
}
