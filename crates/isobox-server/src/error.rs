//! The one error type of the HTTP layer and the one table that maps core errors to statuses.
//! Every error body is `{"error": kind, "message": sentence}` and never carries internal details.

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
