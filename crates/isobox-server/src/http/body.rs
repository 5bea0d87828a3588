//! JSON request bodies: `Content-Type: application/json` (415 otherwise), within the body limit
//! (413) and the body timeout (408), well-formed with no unknown fields (400, naming the field
//! or position).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;

use crate::api::{ApiError, ErrorKind};

/// The body as `T`.
pub async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
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
            ErrorKind::UnsupportedMediaType,
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let bytes: Bytes = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::RequestTimeout,
                "the request body did not arrive in time",
            )
        })?
        .map_err(|_| ApiError::too_large("the request body is over the limit"))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid("the body is not a valid request", &e))
}

/// A JSON value as `T` (a part of a body already parsed).
pub fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| invalid("the body is not a valid request", &e))
}

/// A serde error as a 400: serde's message names the field or position and carries no server
/// internals; the line/column suffix is dropped.
pub fn invalid(what: &str, e: &serde_json::Error) -> ApiError {
    let m = e.to_string();
    let m = m.split(" at line ").next().unwrap_or("malformed JSON");
    ApiError::new(ErrorKind::InvalidJson, format!("{what}: {m}"))
}
