//! A refusal of the API layer as an HTTP response: the status of the table, the JSON body,
//! `Retry-After`, `RateLimit-*` on a 429 and `WWW-Authenticate` on a 401. The response carries
//! its [`ErrorKind`] in its extensions, so the middleware counts it once.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::api::{ApiError, ErrorKind};
use crate::ratelimit::Decision;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.kind.http_status(), axum::Json(self.body())).into_response();
        let h = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(d) = &self.rate {
            rate_headers(h, d);
        }
        if let Some(v) = self
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        resp.extensions_mut().insert(self.kind);
        resp
    }
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` of a rate-limit decision.
pub fn rate_headers(h: &mut axum::http::HeaderMap, d: &Decision) {
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(d.reset_secs));
}

/// The kind of an error response made by [`ApiError::into_response`].
pub fn kind_of(resp: &Response) -> Option<ErrorKind> {
    resp.extensions().get::<ErrorKind>().copied()
}
