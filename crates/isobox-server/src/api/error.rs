//! The one error type of the API layer and the one table that maps every refusal to its wire
//! forms: the `error` kind of the JSON body, the HTTP status and the gRPC code. REST bodies are
//! `{"error": kind, "message": sentence}`; a gRPC status carries the sentence as its message
//! and the kind in the `isobox-error` metadata. Messages never carry internal details.
//!
//! Every refusal is counted once, as `isobox_rejected_total{reason=kind}`, where it leaves the
//! server: the HTTP middleware counts error responses, the gRPC adapter and the streaming
//! adapters count through [`ApiError::count`].

use axum::http::StatusCode;
use isobox_core::CoreError;
use isobox_sandbox::SandboxError;

use crate::logging::SECURITY;
use crate::metrics::Metrics;
use crate::ratelimit::Decision;

/// What went wrong, as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidJson,
    InvalidRequest,
    InvalidCallback,
    LimitTooHigh,
    UnknownLanguage,
    LanguageUnavailable,
    VersionUnavailable,
    NoSyntaxCheck,
    UpgradeRequired,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    TooLarge,
    UnsupportedMediaType,
    RejectedByPolicy,
    RateLimited,
    Internal,
    AuthUnavailable,
    SandboxUnavailable,
    Busy,
    JobsUnavailable,
    DeadlineExceeded,
}

/// The table: kind → (`error` of the body, HTTP status, gRPC code).
///
/// gRPC has no 413 or 415: a request that cannot succeed as sent is `INVALID_ARGUMENT`
/// whatever its size or encoding. A gRPC message over the body limit (`ISOBOX_MAX_BODY_BYTES`)
/// is refused by tonic's decoder itself, with `OUT_OF_RANGE`.
const fn row(kind: ErrorKind) -> (&'static str, u16, tonic::Code) {
    use tonic::Code as G;
    use ErrorKind as K;
    match kind {
        K::InvalidJson => ("invalid_json", 400, G::InvalidArgument),
        K::InvalidRequest => ("invalid_request", 400, G::InvalidArgument),
        K::InvalidCallback => ("invalid_callback", 400, G::InvalidArgument),
        K::LimitTooHigh => ("limit_too_high", 400, G::InvalidArgument),
        K::UnknownLanguage => ("unknown_language", 400, G::InvalidArgument),
        K::LanguageUnavailable => ("language_unavailable", 400, G::InvalidArgument),
        K::VersionUnavailable => ("version_unavailable", 400, G::InvalidArgument),
        K::NoSyntaxCheck => ("no_syntax_check", 400, G::InvalidArgument),
        K::UpgradeRequired => ("upgrade_required", 400, G::InvalidArgument),
        K::Unauthorized => ("unauthorized", 401, G::Unauthenticated),
        K::Forbidden => ("forbidden", 403, G::PermissionDenied),
        K::NotFound => ("not_found", 404, G::NotFound),
        K::MethodNotAllowed => ("method_not_allowed", 405, G::Unimplemented),
        K::RequestTimeout => ("request_timeout", 408, G::Cancelled),
        K::TooLarge => ("too_large", 413, G::InvalidArgument),
        K::UnsupportedMediaType => ("unsupported_media_type", 415, G::InvalidArgument),
        K::RejectedByPolicy => ("rejected_by_policy", 422, G::FailedPrecondition),
        K::RateLimited => ("rate_limited", 429, G::ResourceExhausted),
        K::Internal => ("internal_error", 500, G::Internal),
        K::AuthUnavailable => ("auth_unavailable", 503, G::Unavailable),
        K::SandboxUnavailable => ("sandbox_unavailable", 503, G::Unavailable),
        K::Busy => ("busy", 503, G::Unavailable),
        K::JobsUnavailable => ("unavailable", 503, G::Unavailable),
        K::DeadlineExceeded => ("deadline_exceeded", 504, G::DeadlineExceeded),
    }
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 24] = [
        ErrorKind::InvalidJson,
        ErrorKind::InvalidRequest,
        ErrorKind::InvalidCallback,
        ErrorKind::LimitTooHigh,
        ErrorKind::UnknownLanguage,
        ErrorKind::LanguageUnavailable,
        ErrorKind::VersionUnavailable,
        ErrorKind::NoSyntaxCheck,
        ErrorKind::UpgradeRequired,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::RequestTimeout,
        ErrorKind::TooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::RejectedByPolicy,
        ErrorKind::RateLimited,
        ErrorKind::Internal,
        ErrorKind::AuthUnavailable,
        ErrorKind::SandboxUnavailable,
        ErrorKind::Busy,
        ErrorKind::JobsUnavailable,
        ErrorKind::DeadlineExceeded,
    ];

    /// The `error` field of the body, the `isobox-error` metadata and the metrics label.
    pub fn as_str(self) -> &'static str {
        row(self).0
    }

    pub fn http_status(self) -> StatusCode {
        StatusCode::from_u16(row(self).1).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn grpc_code(self) -> tonic::Code {
        row(self).2
    }

    /// The kind of an error status that did not come from the API layer (a routing or
    /// extraction failure of a framework): the kind of that status in the table, else the
    /// generic kind of its class.
    pub fn for_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            405 => ErrorKind::MethodNotAllowed,
            408 => ErrorKind::RequestTimeout,
            413 => ErrorKind::TooLarge,
            415 => ErrorKind::UnsupportedMediaType,
            429 => ErrorKind::RateLimited,
            503 => ErrorKind::Busy,
            500.. => ErrorKind::Internal,
            _ => ErrorKind::InvalidRequest,
        }
    }
}

/// A refusal: its kind, one sentence for the client, and what the wire forms add to it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// `Retry-After` (seconds), where waiting helps.
    pub retry_after: Option<u64>,
    /// The rate limiter's state, for the `RateLimit-*` headers of a 429.
    pub rate: Option<Decision>,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            retry_after: None,
            rate: None,
            challenge: None,
        }
    }

    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    /// The same refusal with `prefix` before its message (`submission 3: ...`).
    pub fn context(mut self, prefix: impl std::fmt::Display) -> ApiError {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// Counts the refusal in `isobox_rejected_total`.
    pub fn count(&self, metrics: &Metrics) {
        metrics.rejected(self.kind.as_str());
    }

    /// The JSON body: `{"error": kind, "message": sentence}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.kind.as_str(), "message": self.message })
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorKind::NotFound, what)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::TooLarge, message)
    }
}

/// A core error as a refusal; sandbox and configuration failures are logged here (with their
/// details, which the client never sees), pattern-policy refusals go to the security log.
impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        use ErrorKind as K;
        let m = e.to_string();
        match e {
            CoreError::InvalidRequest(_) => ApiError::new(K::InvalidRequest, m),
            CoreError::LimitTooHigh(_) => ApiError::new(K::LimitTooHigh, m),
            CoreError::UnknownLanguage(_) => ApiError::new(K::UnknownLanguage, m),
            CoreError::LanguageUnavailable(_) => ApiError::new(K::LanguageUnavailable, m),
            CoreError::VersionUnavailable { .. } => ApiError::new(K::VersionUnavailable, m),
            CoreError::NoCheck(_) => ApiError::new(K::NoSyntaxCheck, m),
            CoreError::TooLarge(_) => ApiError::new(K::TooLarge, m),
            CoreError::PatternRejected(rule) => {
                tracing::warn!(target: SECURITY, event = "pattern_rejected", rule = %rule, "submission refused by the pattern policy");
                ApiError::new(K::RejectedByPolicy, m)
            }
            CoreError::Busy { retry_after_secs } => {
                ApiError::new(K::Busy, "all sandboxes are busy; retry later")
                    .retry_after(retry_after_secs)
            }
            CoreError::Sandbox(SandboxError::InvalidSpec(_)) => ApiError::new(K::InvalidRequest, m),
            CoreError::Sandbox(SandboxError::Unsupported(_)) => {
                ApiError::new(K::SandboxUnavailable, "the sandbox cannot run on this host")
            }
            CoreError::Sandbox(err) => {
                tracing::error!(error = %err, "sandbox failure");
                ApiError::new(K::Internal, "the sandbox failed; the server logged why")
            }
            CoreError::Config(err) => {
                tracing::error!(error = %err, "internal failure");
                ApiError::new(K::Internal, "the sandbox failed; the server logged why")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind has a distinct name, an error status, and a gRPC code other than OK.
    #[test]
    fn the_table_is_total_and_consistent() {
        use ErrorKind as K;
        let all = ErrorKind::ALL;
        let mut names: Vec<&str> = all.iter().map(|k| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "two kinds share a name");
        for k in all {
            let s = k.http_status();
            assert!(s.is_client_error() || s.is_server_error(), "{k:?}: {s}");
            assert_ne!(k.grpc_code(), tonic::Code::Ok, "{k:?}");
            // A client error in HTTP is never a server error in gRPC, and back.
            let server_side = matches!(
                k.grpc_code(),
                tonic::Code::Internal | tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            );
            assert_eq!(server_side, s.is_server_error(), "{k:?}");
        }
        assert_eq!(K::TooLarge.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(K::TooLarge.grpc_code(), tonic::Code::InvalidArgument);
        assert_eq!(K::RateLimited.grpc_code(), tonic::Code::ResourceExhausted);
        // A framework's error status keeps its code through its kind, where the table has one.
        for status in [400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503] {
            assert_eq!(ErrorKind::for_status(status).http_status().as_u16(), status);
        }
        assert_eq!(ErrorKind::for_status(418), K::InvalidRequest);
        assert_eq!(ErrorKind::for_status(502), K::Internal);
    }

    /// The README's table of refusals is this one.
    #[test]
    fn the_readme_documents_the_table() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
        )
        .unwrap();
        for k in ErrorKind::ALL {
            let grpc = format!("{:?}", k.grpc_code());
            // tonic's Debug names (`InvalidArgument`) as the proto's (`INVALID_ARGUMENT`).
            let mut proto = String::new();
            for (i, c) in grpc.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    proto.push('_');
                }
                proto.push(c.to_ascii_uppercase());
            }
            let row = format!(
                "| `{}` | {} | `{}` |",
                k.as_str(),
                k.http_status().as_u16(),
                proto
            );
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
    }

    #[test]
    fn core_errors_map_through_the_table() {
        let e = ApiError::from(CoreError::Busy {
            retry_after_secs: 3,
        });
        assert_eq!(e.kind, ErrorKind::Busy);
        assert_eq!(e.retry_after, Some(3));
        let e = ApiError::from(CoreError::Sandbox(SandboxError::Setup(
            "secret detail".into(),
        )));
        assert_eq!(e.kind.as_str(), "internal_error");
        assert!(!e.message.contains("secret detail"));
    }
}
