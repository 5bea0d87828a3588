//! Compatibility APIs: other services' wire formats on top of the [`crate::api`] layer, each
//! under a prefix of its own (configuration), each going through the same gate, policy,
//! limits, dedup cache and job store as the native API.
//!
//! - [`judge0`]: Judge0 CE 1.13 (`ISOBOX_JUDGE0_PREFIX`, default `/judge0`).
//! - [`piston`]: Piston v2 (`ISOBOX_PISTON_PREFIX`, default `/piston`), mounted by
//!   [`piston::routes`].
//!
//! Their clients move to IsoBox by changing the base URL only.

pub mod judge0;
pub mod piston;

use std::sync::Arc;

use axum::Router;
use serde_json::Value;

use crate::state::App;

/// The routes of every compatibility API that is switched on, each nested under its prefix.
pub fn routes(app: &Arc<App>) -> Router<Arc<App>> {
    let mut r = Router::new();
    if let Some(prefix) = &app.config.judge0_prefix {
        r = r.nest(prefix, judge0::handlers::router(app.clone()));
    }
    r.merge(piston::routes(app))
}

/// Adds the compatibility APIs' paths (at their default prefixes) to the OpenAPI document.
pub fn openapi(doc: &mut Value) {
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(judge0::openapi::paths());
    }
    piston::openapi::add(doc);
}

/// The callback of a finished job that a compatibility API submitted: its body and method in
/// that API's shape; None for a native job.
pub fn callback(record: &Value) -> Option<(Value, reqwest::Method)> {
    judge0::model::callback(record).map(|body| (body, reqwest::Method::PUT))
}
