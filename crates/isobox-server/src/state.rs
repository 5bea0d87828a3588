//! The state every part of the server shares: configuration, the engine (and through it the
//! executor and the backend), the gate, the job store, metrics, the languages of this host.
//! Built once at start by [`crate::startup`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use isobox_core::engine::Engine;
use isobox_core::LanguageInfo;

use crate::config::Config;
use crate::{auth, cluster, jobs, metrics, transport};

/// Everything the handlers share.
pub struct App {
    pub config: Config,
    /// Shared state (`REDIS_URL`), None on a standalone node.
    pub redis: Option<Arc<cluster::Redis>>,
    /// Async jobs (in this process, or through Redis).
    pub jobs: Arc<jobs::Jobs>,
    pub engine: Arc<Engine>,
    pub metrics: metrics::Metrics,
    /// Authentication, rate limits and authorization.
    pub gate: auth::gate::Gate,
    /// The TLS configuration when `TLS_CERT`/`TLS_KEY` are set (HTTPS, and mTLS with
    /// `MTLS_CA_CERT`), reloaded from its files on SIGHUP and when they change.
    pub tls: Option<Arc<transport::TlsReloader>>,
    /// The languages and versions this host can run (probed at start, again when the runtimes
    /// are rescanned on SIGHUP): read with [`crate::api::languages`].
    pub languages: std::sync::RwLock<Arc<Vec<LanguageInfo>>>,
    /// Set when shutdown begins: `/health` answers 503.
    pub shutting_down: AtomicBool,
    /// The callback of a finished job in the shape of the API that submitted it (a
    /// compatibility API's body and method), or None for a native job: set by
    /// [`App::build`](crate::App::build), so the API layer needs no compatibility API.
    pub callback_shape: CallbackShape,
    /// The OpenAPI document `/openapi.json` serves ([`crate::openapi_document`]).
    pub openapi: serde_json::Value,
}

/// See [`App::callback_shape`].
pub type CallbackShape = fn(&serde_json::Value) -> Option<(serde_json::Value, reqwest::Method)>;
