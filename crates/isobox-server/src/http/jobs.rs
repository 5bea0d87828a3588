//! Async jobs over REST: `POST /api/v1/executions[?wait=true]`, `POST
//! /api/v1/executions/batch`, `GET /api/v1/executions/{id}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::api::jobs::{self, JobRequest};
use crate::api::{ApiError, Caller, ErrorKind};
use crate::state::App;

/// One submission of the JSON API: a request plus an optional `callback_url`.
fn job_request(mut v: Value) -> Result<JobRequest, ApiError> {
    let callback_url = match v.as_object_mut().and_then(|m| m.remove("callback_url")) {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u),
        Some(_) => {
            return Err(ApiError::new(
                ErrorKind::InvalidJson,
                "`callback_url` must be a string",
            ))
        }
    };
    Ok(JobRequest {
        request: super::body::from_value(v)?,
        callback_url,
        compat: None,
    })
}

fn wants_wait(q: &HashMap<String, String>) -> bool {
    q.get("wait")
        .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "yes"))
}

pub async fn submit(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v: Value = super::body::json(
        &headers,
        body,
        app.config.max_body_bytes,
        app.config.http.body_timeout,
    )
    .await?;
    let id = jobs::submit(&app, &caller, job_request(v)?).await?;
    if wants_wait(&q) {
        if let Some((record, done)) = jobs::wait(&app, &id).await? {
            let status = if done {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            return Ok((status, Json(record)).into_response());
        }
    }
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "state": "queued"})),
    )
        .into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/executions/{id}")) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

pub async fn submit_batch(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let v: Value = super::body::json(
        &headers,
        body,
        app.config.max_body_bytes,
        app.config.http.body_timeout,
    )
    .await?;
    let shape = || {
        ApiError::new(
            ErrorKind::InvalidJson,
            "the body must be {\"submissions\": [...]}",
        )
    };
    let subs = match v {
        Value::Object(mut m) if m.len() == 1 => match m.remove("submissions") {
            Some(Value::Array(a)) => a,
            _ => return Err(shape()),
        },
        _ => return Err(shape()),
    };
    let batch = subs
        .into_iter()
        .enumerate()
        .map(|(i, s)| job_request(s).map_err(|e| e.context(format_args!("submission {i}"))))
        .collect::<Result<Vec<_>, _>>();
    let ids = jobs::submit_batch(&app, &caller, batch?).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "ids": ids }))).into_response())
}

pub async fn get(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(jobs::get(&app, &caller, &id).await?).into_response())
}
