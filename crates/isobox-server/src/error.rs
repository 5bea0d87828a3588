//! The one error type of the HTTP layer and the one table that maps core errors to statuses
//! (HTTP, and from there gRPC codes: [`grpc_code`]). Every error body is `{"error": kind,
//! "message": sentence}` and never carries internal details; a gRPC status carries the same
//! sentence as its message and the kind in the `isobox-error` metadata.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use isobox_core::CoreError;
use isobox_sandbox::SandboxError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<&CoreError> for ApiError {
    fn from(e: &CoreError) -> ApiError {
        use StatusCode as S;
        let m = e.to_string();
        match e {
            CoreError::InvalidRequest(_) => ApiError::new(S::BAD_REQUEST, "invalid_request", m),
            CoreError::LimitTooHigh(_) => ApiError::new(S::BAD_REQUEST, "limit_too_high", m),
            CoreError::UnknownLanguage(_) => ApiError::new(S::BAD_REQUEST, "unknown_language", m),
            CoreError::LanguageUnavailable(_) => {
                ApiError::new(S::BAD_REQUEST, "language_unavailable", m)
            }
            CoreError::VersionUnavailable { .. } => {
                ApiError::new(S::BAD_REQUEST, "version_unavailable", m)
            }
            CoreError::NoCheck(_) => ApiError::new(S::BAD_REQUEST, "no_syntax_check", m),
            CoreError::TooLarge(_) => ApiError::new(S::PAYLOAD_TOO_LARGE, "too_large", m),
            CoreError::PatternRejected(_) => {
                ApiError::new(S::UNPROCESSABLE_ENTITY, "rejected_by_policy", m)
            }
            CoreError::Busy { retry_after_secs } => ApiError {
                retry_after: Some(*retry_after_secs),
                ..ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "busy",
                    "all sandboxes are busy; retry later",
                )
            },
            CoreError::Sandbox(SandboxError::InvalidSpec(_)) => {
                ApiError::new(S::BAD_REQUEST, "invalid_request", m)
            }
            CoreError::Sandbox(SandboxError::Unsupported(_)) => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "sandbox_unavailable",
                "the sandbox cannot run on this host",
            ),
            CoreError::Sandbox(_) | CoreError::Config(_) => ApiError::new(
                S::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the sandbox failed; the server logged why",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.kind, "message": self.message });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// The gRPC code for an HTTP status of the table above: one table for both APIs.
///
/// | HTTP | gRPC |
/// | --- | --- |
/// | 400 bad request | `INVALID_ARGUMENT` |
/// | 401 unauthenticated | `UNAUTHENTICATED` |
/// | 403 forbidden | `PERMISSION_DENIED` |
/// | 404 not found | `NOT_FOUND` |
/// | 413 too large | `INVALID_ARGUMENT` (retrying the same request cannot help) |
/// | 415 unsupported media type | `INVALID_ARGUMENT` |
/// | 422 rejected by the pattern policy | `FAILED_PRECONDITION` |
/// | 429 rate limited | `RESOURCE_EXHAUSTED` |
/// | 503 busy, shutting down, provider down | `UNAVAILABLE` |
/// | 504 | `DEADLINE_EXCEEDED` |
/// | 500 and anything else | `INTERNAL` |
///
/// The `isobox-error` metadata carries the REST kind (`too_large`, `unknown_language`, ...)
/// and `retry-after` is set where REST sets it. A gRPC message over the body limit
/// (`ISOBOX_MAX_BODY_BYTES`) is refused by tonic's decoder itself, with `OUT_OF_RANGE`.
pub fn grpc_code(status: StatusCode) -> tonic::Code {
    use tonic::Code;
    match status.as_u16() {
        400 | 413 | 415 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        429 => Code::ResourceExhausted,
        422 => Code::FailedPrecondition,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        let mut status = tonic::Status::new(grpc_code(e.status), e.message);
        let md = status.metadata_mut();
        md.insert(
            "isobox-error",
            tonic::metadata::MetadataValue::from_static(e.kind),
        );
        if let Some(secs) = e.retry_after {
            if let Ok(v) = secs.to_string().parse() {
                md.insert("retry-after", v);
            }
        }
        status
    }
}
