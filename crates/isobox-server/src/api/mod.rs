//! The API layer: what every way in (REST, Server-Sent Events, WebSocket, async jobs, gRPC)
//! does with a request, whatever its wire format. The adapters in `http` and `grpc` only
//! translate their wire format to these calls and the answers back.
//!
//! A request's way through:
//!
//! 1. [`admit`]: credentials → [`Caller`] (failed-login limit of the client address,
//!    authentication by any configured method, the principal's rate limit).
//! 2. [`authorize`]: the wire request validated once by the core
//!    (`Executor::submission`) and checked against the caller's permission policy →
//!    [`Authorized`], the only value the runs below accept.
//! 3. [`run`]: executed through the engine (dedup cache, slots, streaming), recorded
//!    (metrics, execution log), answered; or queued as a job ([`jobs`]).
//!
//! Every refusal on the way is an [`ApiError`]; [`error`] holds the one table that maps each
//! kind to its HTTP status and gRPC code.

pub mod error;
pub mod jobs;
pub mod request;
pub mod run;

use std::net::IpAddr;

use axum::http::HeaderMap;

pub use error::{ApiError, ErrorKind};
pub use request::{authorize, Action, Authorized};

use crate::auth::gate::Refusal;
use crate::auth::Principal;
use crate::ratelimit::Decision;
use crate::state::App;
use crate::transport::PeerCerts;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Roles from the credential plus those the policy gives.
    pub roles: Vec<String>,
    /// The rate limiter's state after counting this request (`RateLimit-*` headers).
    pub rate: Decision,
}

impl Caller {
    /// `method:id`: the dedup scope, job ownership and the log identity.
    pub fn key(&self) -> String {
        self.principal.key()
    }
}

/// What a request presents to be admitted, whatever carried it.
pub struct Credentials<'a> {
    /// HTTP headers, or gRPC metadata as headers (`authorization`, the API key header).
    pub headers: &'a HeaderMap,
    /// The client certificates of a TLS connection.
    pub peer: Option<&'a PeerCerts>,
    /// The client's address (the failed-login limit).
    pub ip: Option<IpAddr>,
}

/// The client's address: the connection's peer, or, when the peer is a trusted proxy
/// (`ISOBOX_TRUSTED_PROXIES`), the nearest address of `X-Forwarded-For` that is not one (read
/// from the right: only the proxies' own entries can be trusted, a client may send any).
pub fn client_ip(app: &App, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let trusted = &app.config.trusted_proxies;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // Garbage: nothing left of it can be believed; the last good hop stands.
            Err(_) => break,
        }
    }
    Some(client)
}

/// Admission: the failed-login limit, authentication, the rate limit. Every refusal is a
/// security event (logged by the gate).
pub async fn admit(app: &App, c: Credentials<'_>) -> Result<Caller, ApiError> {
    match app.gate.admit(c.headers, c.peer, c.ip).await {
        Ok(a) => Ok(Caller {
            principal: a.principal,
            roles: a.roles,
            rate: a.decision,
        }),
        Err(r) => Err(refusal(app, r)),
    }
}

/// A refusal of the gate as an API error.
pub(crate) fn refusal(app: &App, r: Refusal) -> ApiError {
    match r {
        Refusal::Unauthenticated(m) => ApiError {
            challenge: app.gate.challenge(),
            ..ApiError::new(ErrorKind::Unauthorized, m)
        },
        Refusal::ProviderUnavailable => ApiError::new(
            ErrorKind::AuthUnavailable,
            "the identity provider cannot be reached; retry later",
        )
        .retry_after(5),
        Refusal::RateLimited(d) => ApiError {
            rate: Some(d),
            ..ApiError::new(ErrorKind::RateLimited, "too many requests; retry later")
                .retry_after(d.retry_after_secs.max(1))
        },
        Refusal::Forbidden(m) => ApiError::new(ErrorKind::Forbidden, m),
    }
}

/// The languages this host runs (probed at start).
pub fn languages(app: &App) -> std::sync::Arc<Vec<isobox_core::LanguageInfo>> {
    app.languages
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}
