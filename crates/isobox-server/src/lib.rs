//! The IsoBox server (`isobox serve`, `isobox worker`): REST and gRPC over one API layer.
//!
//! The layout is the architecture:
//!
//! - [`startup`] builds the shared [`state::App`] from the [`config`] and runs the servers
//!   (`run(listener, app, shutdown)`, as mini-redis does), with graceful shutdown.
//! - [`transport`]: plain TCP or TLS/mTLS connections, one accept path for both servers.
//! - [`http`] (REST, Server-Sent Events, WebSocket, the Playground) and [`grpc`]: adapters that
//!   translate their wire format to the [`api`] layer and back; [`compat`]: other services'
//!   APIs (Piston) over the same layer, mounted by [`http`].
//! - [`api`]: admission, authorization of a request validated once by the core, runs, jobs,
//!   and the one table of refusals ([`api::error`]) that both adapters render.
//! - [`auth`] (methods, the gate, the permission policy), [`ratelimit`], [`jobs`] (the job store
//!   and queue), [`webhook`] (callbacks), [`cluster`] (Redis), [`metrics`], [`logging`],
//!   [`outbound`] (what outbound HTTPS clients trust).
//!
//! Dependencies point one way: adapters → api → (auth, jobs, webhook, state) → leaves; no module
//! imports one that imports it back (`tests/architecture.rs` checks).

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod grpc;
pub mod http;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod outbound;
pub mod ratelimit;
pub mod startup;
pub mod state;
pub mod transport;
pub mod webhook;

pub use config::Config;
pub use http::router;
pub use startup::openapi_document;
pub use startup::{run, run_with_grpc, run_worker};
pub use state::App;
