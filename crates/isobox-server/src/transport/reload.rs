//! The TLS configuration in use, and its reload without a restart.
//!
//! [`TlsReloader`] holds the rustls configuration built from the operator's files
//! ([`TlsSettings`]: certificate, key, client CA, CRL). [`TlsReloader::reload_if_changed`]
//! (polled, `ISOBOX_TLS_RELOAD_MS`) and [`TlsReloader::reload`] (SIGHUP) rebuild it from the
//! files; a file that cannot be used (unreadable, not PEM, a key that does not match the
//! certificate, ...) is logged and the configuration in use is kept. The accept path
//! ([`super::accept()`]) asks its [`TlsSource`] for the current configuration at every new
//! connection, so a reload applies to the next connection of both servers (REST and gRPC);
//! connections already open keep what they were admitted with. A rebuilt configuration starts
//! with an empty session cache: no session of the old one can be resumed (a resumption would
//! skip the client certificate check against the new CRL).

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use rustls::ServerConfig;

use super::tls::{server_config, TlsSettings};
use crate::logging::SECURITY;

/// The configuration for each protocol the servers speak.
struct Current {
    /// ALPN `http/1.1`: REST.
    http1: Arc<ServerConfig>,
    /// ALPN `h2`: gRPC.
    h2: Arc<ServerConfig>,
}

impl Current {
    fn build(settings: &TlsSettings) -> Result<Current, String> {
        let http1 = server_config(settings)?;
        let mut h2 = (*http1).clone();
        h2.alpn_protocols = vec![b"h2".to_vec()];
        // A clone shares the session cache; the gRPC configuration gets one of its own.
        h2.session_storage = rustls::server::ServerSessionMemoryCache::new(256);
        Ok(Current {
            http1,
            h2: Arc::new(h2),
        })
    }
}

/// The application protocol a [`TlsSource`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// REST (`http/1.1`).
    Http1,
    /// gRPC (`h2`).
    H2,
}

/// The TLS configuration of the servers, reloadable from its files.
pub struct TlsReloader {
    settings: TlsSettings,
    current: RwLock<Current>,
    /// A digest of the files' contents when they were last read (whether or not they could be
    /// used): a poll rebuilds only when it changed, and a broken file is logged once.
    seen: Mutex<blake3::Hash>,
}

impl fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsReloader")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// Builds the configuration from the files (an error names the file and its variable).
    pub fn new(settings: TlsSettings) -> Result<Arc<TlsReloader>, String> {
        let seen = digest(&settings);
        let current = Current::build(&settings)?;
        Ok(Arc::new(TlsReloader {
            settings,
            current: RwLock::new(current),
            seen: Mutex::new(seen),
        }))
    }

    /// Where the accept path of the server speaking `alpn` gets its configuration.
    pub fn source(self: &Arc<Self>, alpn: Alpn) -> TlsSource {
        let this = self.clone();
        TlsSource(Arc::new(move || this.current(alpn)))
    }

    /// The configuration new connections speaking `alpn` get.
    pub fn current(&self, alpn: Alpn) -> Arc<ServerConfig> {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        match alpn {
            Alpn::Http1 => c.http1.clone(),
            Alpn::H2 => c.h2.clone(),
        }
    }

    /// Rebuilds the configuration if a file changed since it was last read. `Ok(true)`: the new
    /// configuration is in use; `Err`: the files cannot be used, the old one stays (logged).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let now = digest(&self.settings);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        self.rebuild().map(|()| true)
    }

    /// Rebuilds the configuration from the files whether or not they changed (SIGHUP); a file
    /// that cannot be used keeps the old one (logged).
    pub fn reload(&self) -> Result<(), String> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = digest(&self.settings);
        self.rebuild()
    }

    fn rebuild(&self) -> Result<(), String> {
        match Current::build(&self.settings) {
            Ok(new) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
                tracing::info!("TLS certificate, key, client CA and CRL reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    target: SECURITY,
                    error = %e,
                    "TLS files not reloaded: the configuration in use is kept"
                );
                Err(e)
            }
        }
    }
}

/// A digest of the paths and contents of the TLS files (an unreadable file counts by its
/// error, so that it turning readable again is a change).
fn digest(s: &TlsSettings) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let files = [
        Some(&s.cert),
        Some(&s.key),
        s.client_ca.as_ref(),
        s.crl.as_ref(),
    ];
    for path in files.into_iter().flatten() {
        let p = path.as_os_str().as_encoded_bytes();
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
        match std::fs::read(path) {
            Ok(bytes) => {
                h.update(b"ok");
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(e) => {
                h.update(b"err");
                h.update(format!("{:?}", e.kind()).as_bytes());
            }
        }
    }
    h.finalize()
}

/// Where the accept path gets the rustls configuration of each new connection: fixed, or the
/// current one of a [`TlsReloader`].
#[derive(Clone)]
pub struct TlsSource(Arc<dyn Fn() -> Arc<ServerConfig> + Send + Sync>);

impl TlsSource {
    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        (self.0)()
    }
}

impl From<Arc<ServerConfig>> for TlsSource {
    /// Always the same configuration.
    fn from(config: Arc<ServerConfig>) -> TlsSource {
        TlsSource(Arc::new(move || config.clone()))
    }
}
