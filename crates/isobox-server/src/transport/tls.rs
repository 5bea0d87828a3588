//! TLS material: the rustls server configuration built from `TLS_CERT`/`TLS_KEY` (and, for
//! mTLS, `MTLS_CA_CERT` plus an optional CRL), and the client certificates a connection
//! presented ([`PeerCerts`]; `auth::mtls` turns them into a principal).
//!
//! The ring crypto provider is named explicitly everywhere, so nothing depends on a
//! process-wide default provider (rustls panics at the first handshake when two providers are
//! compiled in and none is named).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

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
    /// With `client_ca`: a client may also connect without a certificate (another method of
    /// `AUTH_TYPE` may admit it); one it presents is still verified at the handshake (an
    /// untrusted, expired or revoked one is refused). False: a certificate is required.
    pub client_cert_optional: bool,
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
/// provider; with `client_ca`, a client certificate chaining to it is required (unless
/// `client_cert_optional`) and checked against the CRLs, if any. Each error is one sentence that names the file and its variable.
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
            if s.client_cert_optional {
                verifier = verifier.allow_unauthenticated();
            }
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

/// The peer certificates of a TLS connection (leaf first; empty without a client
/// certificate), carried into every request's extensions by both servers.
#[derive(Debug, Clone, Default)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCerts {
    /// The client's leaf certificate, if it presented one (already verified by rustls).
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mtls::principal_from_cert;
    use crate::transport::https::serve;
    use axum::routing::get;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevocationReason, RevokedCertParams, SerialNumber,
    };
    use std::io;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

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
                client_cert_optional: false,
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
            let task = tokio::spawn(serve(
                listener,
                who_router(),
                config,
                Default::default(),
                async move {
                    let _ = stopped.await;
                },
            ));
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
        let task = tokio::spawn(serve(
            listener,
            router,
            config,
            Default::default(),
            async move {
                let _ = stopped.await;
            },
        ));
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
            Some(crate::auth::Principal {
                id: "alice".into(),
                roles: vec![],
                method: crate::auth::AuthMethod::Mtls
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
        assert_eq!(crate::auth::mtls::principal(&PeerCerts::default()), None);
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
