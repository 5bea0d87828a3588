//! How connections reach the servers: plain TCP, or TLS (HTTPS, and mTLS with client
//! certificates) for REST and gRPC alike.
//!
//! - [`tls`]: the rustls configuration from the operator's files, and [`PeerCerts`].
//! - [`mod@accept`]: the one TLS accept path of both servers: TCP accept, the handshake under a
//!   timeout (a failed or slow one closes only that connection; a refused client certificate is
//!   a failed authentication in the security log), connections handed on with their peer
//!   address and certificates.
//! - [`reload`]: the configuration in use ([`TlsReloader`]), rebuilt from the files on SIGHUP
//!   and when they change; the accept path takes each new connection's from a [`TlsSource`].
//! - [`https`]: serves an axum router (REST) on those connections with graceful shutdown. The
//!   gRPC server takes the same connections as tonic's incoming stream.

pub mod accept;
pub mod https;
pub mod plain;
pub mod reload;
pub mod tls;

use std::io;
use std::time::Duration;

/// An `accept` error that concerns only that connection (the client gave up in the backlog).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What one client may hold of a listener: every listener (REST and gRPC, plain and TLS)
/// serves at most `max_connections` at once (more wait in the kernel's backlog), drops a
/// connection whose request head (or, once idle, whose next request) takes longer than
/// `header_timeout`, and a request body that trickles longer than `body_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

pub use accept::{accept, TlsConn};
pub use reload::{Alpn, TlsReloader, TlsSource};
pub use tls::{server_config, PeerCerts, TlsSettings};
