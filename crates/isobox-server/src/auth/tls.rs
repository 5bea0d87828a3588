//! HTTPS and mTLS: the rustls server configuration built from `TLS_CERT`/`TLS_KEY` (and, for
//! mTLS, `MTLS_CA_CERT` plus an optional CRL), the client certificate's identity, and a server
//! loop that serves an axum router over TLS with the peer certificates in every request's
//! extensions.
//!
//! The ring crypto provider is named explicitly everywhere, so nothing depends on a
//! process-wide default provider (stack notes, pitfall 5).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::Principal;

/// A client that has not finished the TLS handshake within this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not sent a complete request head within this time is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the TLS material comes from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `TLS_CERT`: the server certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// `TLS_KEY`: the server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `MTLS_CA_CERT`: when set, clients must present a certificate chaining to one of these
    /// CAs (PEM, one or more).
    pub client_ca: Option<PathBuf>,
    /// An optional CRL file (PEM, one or more CRLs) revoking client certificates. A client
    /// certificate whose issuer has no CRL in the file is not refused for that.
    pub crl: Option<PathBuf>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM error in words (the library's `Display` prints some of them as byte lists).
fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        Error::Base64Decode(e) => format!("a PEM section is not valid base64 ({e})"),
        Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => other.to_string(),
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
    let certs = iter.collect::<Result<Vec<_>, _>>().map_err(|e| {
        format!(
            "the {what} file {} is not valid PEM: {}",
            path.display(),
            pem_error(&e)
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let iter = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read the CRL file {}: {e}", path.display()))?;
    let crls = iter.collect::<Result<Vec<_>, _>>().map_err(|e| {
        format!(
            "the CRL file {} is not valid PEM: {}",
            path.display(),
            pem_error(&e)
        )
    })?;
    if crls.is_empty() {
        return Err(format!(
            "the CRL file {} holds no PEM X509 CRL",
            path.display()
        ));
    }
    Ok(crls)
}

/// Builds the rustls server configuration: TLS 1.3 and 1.2 only, ALPN `http/1.1`, the ring
/// provider; with `client_ca`, a client certificate chaining to it is required (and checked
/// against the CRLs, if any). Each error is one sentence that names the file and its variable.
pub fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let chain = read_certs(&s.cert, "TLS_CERT")?;
    let key = PrivateKeyDer::from_pem_file(&s.key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "the TLS_KEY file {} holds no PEM private key",
            s.key.display()
        ),
        e => format!(
            "cannot read a private key from the TLS_KEY file {}: {}",
            s.key.display(),
            pem_error(&e)
        ),
    })?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("rustls refuses TLS 1.2/1.3 with the ring provider: {e}"))?;

    let builder = match &s.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for (i, cert) in read_certs(ca, "MTLS_CA_CERT")?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    format!(
                        "certificate #{} of the MTLS_CA_CERT file {} cannot be a trust anchor: {e}",
                        i + 1,
                        ca.display()
                    )
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(crl) = &s.crl {
                verifier = verifier
                    .with_crls(read_crls(crl)?)
                    .allow_unknown_revocation_status();
            }
            let verifier = verifier.build().map_err(|e| match &s.crl {
                Some(crl) => format!(
                    "cannot build the client certificate verifier from the MTLS_CA_CERT file {} \
                     and the CRL file {}: {e}",
                    ca.display(),
                    crl.display()
                ),
                None => format!(
                    "cannot build the client certificate verifier from the MTLS_CA_CERT file {}: {e}",
                    ca.display()
                ),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };

    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "the TLS_CERT file {} and the TLS_KEY file {} do not make a usable certificate: {e}",
            s.cert.display(),
            s.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The identity of a client certificate (the leaf, already verified by rustls): its subject
/// CN, else its first DNS or email SAN. No roles; method `mtls`.
pub fn principal_from_cert(cert: &CertificateDer<'_>) -> Option<Principal> {
    use x509_parser::extensions::GeneralName;

    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = x509
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::trim)
        .find(|cn| !cn.is_empty())
        .map(str::to_owned);
    let id = cn.or_else(|| {
        let san = x509.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) if !s.trim().is_empty() => {
                Some(s.trim().to_owned())
            }
            _ => None,
        })
    })?;
    Some(Principal {
        id,
        roles: Vec::new(),
        method: "mtls",
    })
}

/// The peer certificates of a TLS connection (leaf first; empty without a client
/// certificate), inserted into every request's extensions by [`serve`].
#[derive(Debug, Clone, Default)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCerts {
    /// The principal of the client certificate, if there is one.
    pub fn principal(&self) -> Option<Principal> {
        self.0.first().and_then(principal_from_cert)
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves. Each connection: the TLS
/// handshake (bounded by a timeout; a failed handshake closes only that connection), then
/// HTTP/1.1 with [`PeerCerts`] and `ConnectInfo<SocketAddr>` in every request's extensions.
/// On shutdown: stop accepting, abandon handshakes in progress, let open connections finish
/// their requests (idle keep-alive connections close at once) and return when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(connection(
                        acceptor.clone(),
                        tcp,
                        peer,
                        router.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Resolves once shutdown has begun (or the server loop is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                handshake_failed(peer, &e);
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stopping(&mut stop) => return,
    };

    let certs: Vec<CertificateDer<'static>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let certs = PeerCerts(Arc::new(certs));
    let service = router.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(certs.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection ended with an error: {e}");
    }
}

/// A refused client certificate is a failed authentication (security log); anything else
/// (plain HTTP, scanners, resets) is noise for the debug log.
fn handshake_failed(peer: SocketAddr, e: &io::Error) {
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(rustls::Error::NoCertificatesPresented) => tracing::warn!(
            target: crate::logging::SECURITY,
            method = "mtls",
            client_ip = %peer.ip(),
            reason = "no client certificate",
            "authentication failed"
        ),
        Some(err @ rustls::Error::InvalidCertificate(_)) => tracing::warn!(
            target: crate::logging::SECURITY,
            method = "mtls",
            client_ip = %peer.ip(),
            reason = %err,
            "authentication failed"
        ),
        _ => tracing::debug!(%peer, "TLS handshake failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevocationReason, RevokedCertParams, SerialNumber,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A temporary directory removed on drop (also when a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "isobox-tls-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A certificate and its key, as PEM.
    struct Pem {
        cert: String,
        key: String,
    }

    impl Pem {
        /// What reqwest's `Identity::from_pem` wants: key and certificate in one buffer.
        fn identity(&self) -> reqwest::Identity {
            reqwest::Identity::from_pem(format!("{}{}", self.key, self.cert).as_bytes()).unwrap()
        }
    }

    /// The test PKI: two CAs, a server certificate, client certificates and a CRL.
    struct Pki {
        dir: TempDir,
        ca: Pem,
        server: Pem,
        client: Pem,
        other_ca_client: Pem,
        expired: Pem,
        revoked: Pem,
        crl: String,
    }

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        cn: &str,
        sans: &[&str],
        eku: ExtendedKeyUsagePurpose,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Pem {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn pki(name: &str) -> Pki {
        let ca1 = ca("IsoBox test CA");
        let ca2 = ca("Some other CA");
        let server = leaf(
            &ca1,
            "isobox server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            |_| {},
        );
        let client = leaf(
            &ca1,
            "alice",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            |_| {},
        );
        let other_ca_client = leaf(
            &ca2,
            "mallory",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            |_| {},
        );
        let expired = leaf(
            &ca1,
            "old-bob",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            |p| {
                p.not_before = rcgen::date_time_ymd(2000, 1, 1);
                p.not_after = rcgen::date_time_ymd(2001, 1, 1);
            },
        );
        let revoked_serial = SerialNumber::from_slice(&[0x4a, 0x11, 0x0c, 0xe5]);
        let serial = revoked_serial.clone();
        let revoked = leaf(
            &ca1,
            "eve",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            move |p| p.serial_number = Some(serial),
        );
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: revoked_serial,
                revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca1)
        .unwrap()
        .pem()
        .unwrap();
        Pki {
            dir: TempDir::new(name),
            ca: Pem {
                cert: ca1.pem(),
                key: ca1.key().serialize_pem(),
            },
            server,
            client,
            other_ca_client,
            expired,
            revoked,
            crl,
        }
    }

    impl Pki {
        fn settings(&self, mtls: bool, crl: bool) -> TlsSettings {
            // The chain file holds the leaf and then the CA, as a deployment would.
            let chain = format!("{}{}", self.server.cert, self.ca.cert);
            TlsSettings {
                cert: self.dir.write("server.pem", &chain),
                key: self.dir.write("server.key", &self.server.key),
                client_ca: mtls.then(|| self.dir.write("ca.pem", &self.ca.cert)),
                crl: crl.then(|| self.dir.write("crl.pem", &self.crl)),
            }
        }
    }

    fn who_router() -> axum::Router {
        axum::Router::new().route(
            "/who",
            get(
                |axum::Extension(certs): axum::Extension<PeerCerts>| async move {
                    certs
                        .0
                        .first()
                        .and_then(principal_from_cert)
                        .map(|p| p.id)
                        .unwrap_or_else(|| "anonymous".to_string())
                },
            ),
        )
    }

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<io::Result<()>>,
    }

    impl Server {
        async fn start(config: Arc<ServerConfig>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, who_router(), config, async move {
                let _ = stopped.await;
            }));
            Server {
                addr,
                stop: Some(stop),
                task,
            }
        }

        fn url(&self) -> String {
            format!("https://127.0.0.1:{}/who", self.addr.port())
        }

        /// Graceful shutdown returns (promptly) and without an error.
        async fn shutdown(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(10), &mut self.task)
                .await
                .expect("graceful shutdown did not return")
                .unwrap()
                .unwrap();
        }
    }

    fn client(pki: &Pki, identity: Option<&Pem>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.cert.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10));
        if let Some(pem) = identity {
            builder = builder.identity(pem.identity());
        }
        builder.build().unwrap()
    }

    /// GET /who with reqwest: the body on 200, the error text otherwise.
    async fn who(server: &Server, client: &reqwest::Client) -> Result<String, String> {
        let response = client
            .get(server.url())
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(response.status(), 200);
        Ok(response.text().await.unwrap())
    }

    /// A raw tokio-rustls client pinned to one TLS version: (negotiated version, response).
    async fn raw_get(
        server: &Server,
        pki: &Pki,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (rustls::ProtocolVersion, String) {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca.cert.as_bytes()).unwrap())
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let negotiated = tls.get_ref().1.protocol_version().unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        (negotiated, response)
    }

    #[tokio::test]
    async fn tls_serves_https_with_tls12_and_tls13_and_survives_plain_http() {
        let pki = pki("plain");
        let config = server_config(&pki.settings(false, false)).unwrap();
        let server = Server::start(config).await;

        // Any client that trusts the CA; a client certificate is not asked for.
        assert_eq!(
            who(&server, &client(&pki, None)).await.unwrap(),
            "anonymous"
        );

        for (version, expected) in [
            (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        ] {
            let (negotiated, response) = raw_get(&server, &pki, version).await;
            assert_eq!(negotiated, expected);
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.ends_with("anonymous"), "{response}");
        }

        // reqwest pinned to each version too.
        for version in [
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_3,
        ] {
            let pinned = reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(pki.ca.cert.as_bytes()).unwrap(),
                )
                .min_tls_version(version)
                .max_tls_version(version)
                .build()
                .unwrap();
            assert_eq!(who(&server, &pinned).await.unwrap(), "anonymous");
        }

        // Plain HTTP to the TLS port: that client gets no HTTP answer...
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{}/who", server.addr.port());
        assert!(plain.get(&url).send().await.is_err());
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /who HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
            .await
            .expect("the server did not close the plain-HTTP connection")
            .ok();
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
        // ...and the server keeps serving the next HTTPS client.
        assert_eq!(
            who(&server, &client(&pki, None)).await.unwrap(),
            "anonymous"
        );

        server.shutdown().await;
    }

    #[tokio::test]
    async fn tls_mtls_admits_good_client_certs_and_refuses_the_rest() {
        let pki = pki("mtls");
        let config = server_config(&pki.settings(true, true)).unwrap();
        let server = Server::start(config).await;

        let good = client(&pki, Some(&pki.client));
        assert_eq!(who(&server, &good).await.unwrap(), "alice");

        // Each refusal is the server's TLS alert for that very reason.
        let refused: [(&str, Option<&Pem>, &str); 4] = [
            ("no client certificate", None, "CertificateRequired"),
            (
                "a certificate from another CA",
                Some(&pki.other_ca_client),
                "UnknownCA",
            ),
            (
                "an expired certificate",
                Some(&pki.expired),
                "CertificateExpired",
            ),
            (
                "a revoked certificate",
                Some(&pki.revoked),
                "CertificateRevoked",
            ),
        ];
        for (case, identity, alert) in refused {
            let result = who(&server, &client(&pki, identity)).await;
            let err = result.expect_err(case);
            assert!(err.contains(alert), "{case}: {err}");
            // The server keeps serving after each refusal.
            assert_eq!(
                who(&server, &client(&pki, Some(&pki.client)))
                    .await
                    .unwrap(),
                "alice",
                "after {case}"
            );
        }

        // Both protocol versions enforce the client certificate.
        for version in [
            reqwest::tls::Version::TLS_1_2,
            reqwest::tls::Version::TLS_1_3,
        ] {
            let pinned = |identity: Option<&Pem>| {
                let mut b = reqwest::Client::builder()
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(
                        reqwest::Certificate::from_pem(pki.ca.cert.as_bytes()).unwrap(),
                    )
                    .min_tls_version(version)
                    .max_tls_version(version);
                if let Some(pem) = identity {
                    b = b.identity(pem.identity());
                }
                b.build().unwrap()
            };
            assert_eq!(
                who(&server, &pinned(Some(&pki.client))).await.unwrap(),
                "alice"
            );
            assert!(who(&server, &pinned(Some(&pki.revoked))).await.is_err());
            assert!(who(&server, &pinned(None)).await.is_err());
        }

        // The same revoked certificate is admitted when no CRL is configured: the refusal
        // above came from the CRL.
        let no_crl = Server::start(server_config(&pki.settings(true, false)).unwrap()).await;
        assert_eq!(
            who(&no_crl, &client(&pki, Some(&pki.revoked)))
                .await
                .unwrap(),
            "eve"
        );
        no_crl.shutdown().await;

        // Graceful shutdown with an idle keep-alive connection open returns.
        drop(good);
        let keep_alive = client(&pki, Some(&pki.client));
        assert_eq!(who(&server, &keep_alive).await.unwrap(), "alice");
        server.shutdown().await;
    }

    #[tokio::test]
    async fn tls_shutdown_lets_a_running_request_finish() {
        let pki = pki("drain");
        let config = server_config(&pki.settings(false, false)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router, config, async move {
            let _ = stopped.await;
        }));
        let http = client(&pki, None);
        let request = tokio::spawn(async move {
            let url = format!("https://127.0.0.1:{}/slow", addr.port());
            http.get(url).send().await.unwrap().text().await.unwrap()
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(()).unwrap();
        assert_eq!(request.await.unwrap(), "done");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("graceful shutdown did not return")
            .unwrap()
            .unwrap();
        // No longer accepting.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn tls_principal_is_the_cn_else_the_first_dns_or_email_san() {
        let ca = ca("CA");
        let cert = |pem: &Pem| CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap();

        let with_cn = leaf(
            &ca,
            "alice",
            &["a.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
            |_| {},
        );
        assert_eq!(
            principal_from_cert(&cert(&with_cn)),
            Some(Principal {
                id: "alice".into(),
                roles: vec![],
                method: "mtls"
            })
        );

        let no_cn = |sans: Vec<rcgen::SanType>| {
            leaf(
                &ca,
                "x",
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
                move |p| {
                    p.distinguished_name = rcgen::DistinguishedName::new();
                    p.distinguished_name.push(DnType::OrganizationName, "Org");
                    p.subject_alt_names = sans;
                },
            )
        };
        let dns = no_cn(vec![
            rcgen::SanType::IpAddress("10.0.0.1".parse().unwrap()),
            rcgen::SanType::DnsName("svc.example".try_into().unwrap()),
            rcgen::SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
        ]);
        assert_eq!(principal_from_cert(&cert(&dns)).unwrap().id, "svc.example");
        let email = no_cn(vec![rcgen::SanType::Rfc822Name(
            "ops@example.org".try_into().unwrap(),
        )]);
        assert_eq!(
            principal_from_cert(&cert(&email)).unwrap().id,
            "ops@example.org"
        );
        let nothing = no_cn(vec![rcgen::SanType::IpAddress("10.0.0.1".parse().unwrap())]);
        assert_eq!(principal_from_cert(&cert(&nothing)), None);

        assert_eq!(
            principal_from_cert(&CertificateDer::from(vec![1, 2, 3])),
            None
        );
        assert_eq!(PeerCerts::default().principal(), None);
    }

    #[test]
    fn tls_bad_files_give_an_error_naming_the_file() {
        let pki = pki("bad");
        let good = pki.settings(true, true);
        let missing = pki.dir.0.join("missing.pem");
        let garbage = pki.dir.write("garbage.pem", "this is not PEM\n");
        let truncated = pki
            .dir
            .write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
        let other_key = pki.dir.write("other.key", &pki.client.key);

        let expect = |settings: TlsSettings, words: &[&str]| {
            let err = server_config(&settings).expect_err("accepted bad settings");
            for word in words {
                assert!(err.contains(word), "{err:?} does not mention {word:?}");
            }
            assert!(!err.contains('\n'), "{err:?}");
        };
        let m = missing.display().to_string();
        let g = garbage.display().to_string();
        let t = truncated.display().to_string();

        expect(
            TlsSettings {
                cert: missing.clone(),
                ..good.clone()
            },
            &["TLS_CERT", &m],
        );
        expect(
            TlsSettings {
                cert: garbage.clone(),
                ..good.clone()
            },
            &["TLS_CERT", &g],
        );
        expect(
            TlsSettings {
                cert: truncated.clone(),
                ..good.clone()
            },
            &["TLS_CERT", &t],
        );
        expect(
            TlsSettings {
                key: missing.clone(),
                ..good.clone()
            },
            &["TLS_KEY", &m],
        );
        expect(
            TlsSettings {
                key: garbage.clone(),
                ..good.clone()
            },
            &["TLS_KEY", &g],
        );
        // A key that does not belong to the certificate.
        expect(
            TlsSettings {
                key: other_key.clone(),
                ..good.clone()
            },
            &["TLS_CERT", "TLS_KEY", &other_key.display().to_string()],
        );
        // The CA file given as the key, the key given as the certificate.
        expect(
            TlsSettings {
                key: good.cert.clone(),
                ..good.clone()
            },
            &["TLS_KEY"],
        );
        expect(
            TlsSettings {
                cert: good.key.clone(),
                ..good.clone()
            },
            &["TLS_CERT"],
        );
        expect(
            TlsSettings {
                client_ca: Some(missing.clone()),
                ..good.clone()
            },
            &["MTLS_CA_CERT", &m],
        );
        expect(
            TlsSettings {
                client_ca: Some(garbage.clone()),
                ..good.clone()
            },
            &["MTLS_CA_CERT", &g],
        );
        expect(
            TlsSettings {
                crl: Some(missing.clone()),
                ..good.clone()
            },
            &["CRL", &m],
        );
        expect(
            TlsSettings {
                crl: Some(garbage.clone()),
                ..good.clone()
            },
            &["CRL", &g],
        );
        // A certificate where a CRL belongs.
        expect(
            TlsSettings {
                crl: Some(good.client_ca.clone().unwrap()),
                ..good.clone()
            },
            &["CRL"],
        );

        // The good settings work, with and without mTLS and CRL.
        server_config(&good).unwrap();
        server_config(&pki.settings(true, false)).unwrap();
        server_config(&pki.settings(false, false)).unwrap();
    }
}
