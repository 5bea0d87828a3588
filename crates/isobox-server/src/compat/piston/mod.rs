//! The Piston v2 API (engineer-man/piston), under `ISOBOX_PISTON_PREFIX` (default `/piston`):
//! `GET {prefix}/api/v2/runtimes`, `POST {prefix}/api/v2/execute` and the WebSocket
//! `GET {prefix}/api/v2/connect`.
//!
//! - [`semver`]: Piston's version selectors (node-semver ranges) against our versions.
//! - [`map`]: a Piston job ↔ our request, our result ↔ Piston's; no transport.
//! - `web`: the axum handlers, admission and the WebSocket protocol.
//! - [`openapi`]: their part of `/openapi.json`.

pub mod map;
pub mod openapi;
pub mod semver;
mod web;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::state::App;

/// The Piston routes under the configured prefix (none when it is off).
pub fn routes(app: &Arc<App>) -> Router<Arc<App>> {
    let Some(prefix) = app.config.piston_prefix.as_deref() else {
        return Router::new();
    };
    Router::new()
        .route(&format!("{prefix}/api/v2/runtimes"), get(web::runtimes))
        .route(&format!("{prefix}/api/v2/execute"), post(web::execute))
        .route(&format!("{prefix}/api/v2/connect"), get(web::connect))
        .route_layer(middleware::from_fn_with_state(app.clone(), web::gate))
}
