//! The `Executor` service: each call admitted, authorized and run through the API layer, as on
//! REST.
//!
//! Deadlines: a call with `grpc-timeout` runs uncached, so that its sandbox is killed when the
//! call is dropped; when the deadline passes, the server answers `DEADLINE_EXCEEDED` (up to
//! 50 ms before the deadline, so that the client gets the server's code rather than its local
//! timer's) and the run is killed. A client that cancels or disconnects gets its run killed the
//! same way. Plain `Execute` without a deadline goes through the dedup cache like REST when
//! `DEDUP_ENABLED` (a cached run is not cancelled by a disconnect, as on REST).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use isobox_core::engine::StdinMsg;
use isobox_sandbox::Stream as OutStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{deadline_of, status, to_core, to_proto};
use super::pb;
use crate::api::run::{self, RunEvent, RunStream, Via};
use crate::api::{self, authorize, Action, ApiError, Caller, Credentials, ErrorKind};
use crate::state::App;
use crate::transport::accept::TlsInfo;

/// The `Executor` service.
pub struct ExecutorService {
    app: Arc<App>,
}

impl ExecutorService {
    pub fn new(app: Arc<App>) -> ExecutorService {
        ExecutorService { app }
    }

    /// A refusal as this call's status.
    fn refuse(&self, e: ApiError) -> Status {
        status(&self.app.metrics, e)
    }

    /// Admission from the call's metadata (the API key header as on REST; `authorization`
    /// carries bearer tokens) and its connection (client address, client certificates).
    async fn admit<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        let tls = req.extensions().get::<TlsInfo>();
        let peer = tls
            .map(|t| t.remote)
            .or_else(|| req.remote_addr())
            .map(|a| a.ip());
        // gRPC metadata names are lower-case already.
        let headers = req.metadata().clone().into_headers();
        let ip = api::client_ip(&self.app, peer, &headers);
        let creds = Credentials {
            headers: &headers,
            peer: tls.map(|t| &t.certs),
            ip,
        };
        api::admit(&self.app, creds).await
    }

    async fn execute_call(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<pb::ExecuteResult, ApiError> {
        let caller = self.admit(&request).await?;
        let deadline = deadline_of(request.metadata());
        let app = &self.app;
        let call = async {
            let auth = authorize(
                app,
                &caller,
                Action::Execute,
                to_core(request.into_inner())?,
            )
            .await?;
            if deadline.is_none() && app.config.dedup_enabled {
                run::execute(app, &caller, auth, Via::Grpc).await
            } else {
                // Cancellable: dropping it (deadline, client gone) kills the run.
                run::execute_uncached(app, &caller, auth, Via::Grpc).await
            }
        };
        let result = match deadline {
            Some(d) => tokio::time::timeout(d, call)
                .await
                .map_err(|_| deadline_passed())?,
            None => call.await,
        }?;
        Ok(to_proto(&result))
    }

    async fn stream_call(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<MessageStream, ApiError> {
        let caller = self.admit(&request).await?;
        let deadline = deadline_of(request.metadata());
        let auth = authorize(
            &self.app,
            &caller,
            Action::Execute,
            to_core(request.into_inner())?,
        )
        .await?;
        let run = run::stream(&self.app, &caller, auth, Via::Grpc, false);
        Ok(message_stream(self.app.clone(), run, deadline, None))
    }

    async fn interactive_call(
        &self,
        request: Request<Streaming<pb::InteractiveMessage>>,
    ) -> Result<MessageStream, ApiError> {
        use pb::interactive_message::Kind;
        let caller = self.admit(&request).await?;
        let deadline = deadline_of(request.metadata());
        let started = tokio::time::Instant::now();
        let mut inbound = request.into_inner();
        let first = match deadline {
            Some(d) => tokio::time::timeout(d, inbound.message())
                .await
                .map_err(|_| deadline_passed())?,
            None => inbound.message().await,
        };
        let req = match first {
            Ok(Some(pb::InteractiveMessage {
                kind: Some(Kind::Request(r)),
            })) => to_core(r)?,
            Err(e) => {
                return Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!("the request stream failed: {}", e.message()),
                ))
            }
            _ => {
                return Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    "the first message must carry the request",
                ))
            }
        };
        let auth = authorize(&self.app, &caller, Action::Execute, req).await?;
        let run = run::stream(&self.app, &caller, auth, Via::Grpc, true);
        // Stdin: forwarded until close_stdin or the end of the client's stream (both close the
        // program's stdin), or until the run is over. The channel to the program is bounded:
        // while it is full this task does not read the client's stream (HTTP/2 flow control
        // holds the client back). Past the stdin cap the call ends with `too_large`.
        let stdin = run.stdin();
        let cap = run.stdin_cap();
        let (over_tx, over_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut sent = 0usize;
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    _ = stdin.closed() => return,
                };
                match msg {
                    Ok(Some(pb::InteractiveMessage {
                        kind: Some(Kind::Stdin(data)),
                    })) => {
                        sent += data.len();
                        if sent > cap {
                            let _ = over_tx.send(ApiError::too_large(format!(
                                "stdin is over {cap} bytes, the most a run may be sent"
                            )));
                            return;
                        }
                        if stdin.send(StdinMsg::Data(data)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(pb::InteractiveMessage {
                        kind: Some(Kind::CloseStdin(true)),
                    }))
                    | Ok(None) => {
                        let _ = stdin.send(StdinMsg::Close).await;
                        return;
                    }
                    // A second request, close_stdin false, an empty message: ignored.
                    Ok(Some(_)) => {}
                    // The client is gone: the response stream is dropped, which kills the run.
                    Err(_) => return,
                }
            }
        });
        let left = deadline.map(|d| d.saturating_sub(started.elapsed()));
        Ok(message_stream(self.app.clone(), run, left, Some(over_rx)))
    }
}

fn deadline_passed() -> ApiError {
    ApiError::new(
        ErrorKind::DeadlineExceeded,
        "the call's deadline passed; the run was stopped",
    )
}

type MessageStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<pb::StreamMessage, Status>> + Send>>;

/// The response stream of a streamed run: output chunks, then the result (or an error status).
/// Dropping it (client gone, call cancelled) drops the run, which kills the sandbox; at the
/// deadline it ends with `DEADLINE_EXCEEDED` and drops the run the same way; when `abort`
/// says why (stdin over its cap), it ends with that error.
fn message_stream(
    app: Arc<App>,
    run: RunStream,
    deadline: Option<Duration>,
    abort: Option<tokio::sync::oneshot::Receiver<ApiError>>,
) -> MessageStream {
    let sleep = deadline.map(|d| Box::pin(tokio::time::sleep(d)));
    let state = (Some(run), sleep, abort, app);
    let s = futures_util::stream::unfold(state, |(run, mut sleep, mut abort, app)| async move {
        let mut run = run?;
        let ev = loop {
            tokio::select! {
                ev = run.next() => break ev,
                _ = async { sleep.as_mut().expect("guarded").await }, if sleep.is_some() => {
                    drop(run);
                    let e = status(&app.metrics, deadline_passed());
                    return Some((Err(e), (None, None, None, app)));
                }
                r = async { abort.as_mut().expect("guarded").await }, if abort.is_some() => match r {
                    Ok(e) => {
                        drop(run);
                        let e = status(&app.metrics, e);
                        return Some((Err(e), (None, None, None, app)));
                    }
                    // The stdin task ended without a word.
                    Err(_) => abort = None,
                },
            }
        };
        let kind = match ev? {
            RunEvent::Compiled(c) => pb::stream_message::Kind::Compile(super::convert::outcome(&c)),
            RunEvent::Output {
                stream: OutStream::Stdout,
                data,
            } => pb::stream_message::Kind::Stdout(data),
            RunEvent::Output {
                stream: OutStream::Stderr,
                data,
            } => pb::stream_message::Kind::Stderr(data),
            RunEvent::Done(r) => {
                let item = match *r {
                    Ok(result) => Ok(pb::StreamMessage {
                        kind: Some(pb::stream_message::Kind::Result(to_proto(&result))),
                    }),
                    Err(e) => Err(status(&app.metrics, e)),
                };
                return Some((item, (None, None, None, app)));
            }
        };
        Some((
            Ok(pb::StreamMessage { kind: Some(kind) }),
            (Some(run), sleep, abort, app),
        ))
    });
    Box::pin(s)
}

#[tonic::async_trait]
impl pb::executor_server::Executor for ExecutorService {
    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResult>, Status> {
        self.execute_call(request)
            .await
            .map(Response::new)
            .map_err(|e| self.refuse(e))
    }

    type ExecuteStreamStream = MessageStream;

    async fn execute_stream(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        self.stream_call(request)
            .await
            .map(Response::new)
            .map_err(|e| self.refuse(e))
    }

    type ExecuteInteractiveStream = MessageStream;

    async fn execute_interactive(
        &self,
        request: Request<Streaming<pb::InteractiveMessage>>,
    ) -> Result<Response<Self::ExecuteInteractiveStream>, Status> {
        self.interactive_call(request)
            .await
            .map(Response::new)
            .map_err(|e| self.refuse(e))
    }

    async fn list_languages(
        &self,
        request: Request<pb::ListLanguagesRequest>,
    ) -> Result<Response<pb::ListLanguagesResponse>, Status> {
        self.admit(&request).await.map_err(|e| self.refuse(e))?;
        let languages = api::languages(&self.app)
            .iter()
            .map(|l| pb::Language {
                name: l.name.clone(),
                aliases: l.aliases.clone(),
                version: l.version.clone(),
                compiled: l.compiled,
                runtime: l.runtime.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListLanguagesResponse { languages }))
    }
}

#[cfg(test)]
mod tests {
    /// Removes a test's temp dir however the test ends (a failed start included).
    struct RemoveOnDrop(std::path::PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::collections::HashMap;
    use tokio::net::{TcpListener, TcpStream};

    struct Pem {
        cert: String,
        key: String,
    }

    fn leaf(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        cn: &str,
        sans: &[&str],
        eku: ExtendedKeyUsagePurpose,
    ) -> Pem {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A tonic channel over our own rustls client (ring), with an optional client certificate.
    async fn tls_channel(
        addr: std::net::SocketAddr,
        ca: &str,
        identity: Option<&Pem>,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(id.cert.as_bytes())
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        tonic::transport::Endpoint::from_static("https://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let connector = connector.clone();
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await
    }

    /// A CA for the tests' certificates.
    fn test_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A server with `vars` (ports chosen by the system, no warm pool): its gRPC address, the
    /// sender that stops it, and its task.
    async fn start(
        vars: Vec<(&str, String)>,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let env: HashMap<String, String> = [
            ("REST_PORT", "0".to_string()),
            ("GRPC_PORT", "0".to_string()),
            ("ISOBOX_WARM_POOL", "0".to_string()),
        ]
        .into_iter()
        .chain(vars)
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let cfg = crate::config::load(&env).expect("config");
        let app = tokio::task::spawn_blocking(move || App::build(cfg))
            .await
            .unwrap()
            .expect("app");
        let rest = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::run_with_grpc(
            rest,
            Some(grpc),
            Arc::new(app),
            async {
                let _ = stopped.await;
            },
        ));
        (addr, stop, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn grpc_over_mtls_authenticates_with_the_client_certificate() {
        let ca = test_ca("IsoBox gRPC test CA");
        let server = leaf(
            &ca,
            "isobox server",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(&ca, "alice", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let dir = std::env::temp_dir().join(format!("isobox-grpc-mtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _gone = RemoveOnDrop(dir.clone());
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.to_string_lossy().to_string()
        };
        let (addr, stop, task) = start(vec![
            ("AUTH_TYPE", "mtls".to_string()),
            ("TLS_CERT", write("server.pem", &server.cert)),
            ("TLS_KEY", write("server.key", &server.key)),
            ("MTLS_CA_CERT", write("ca.pem", &ca.pem())),
        ])
        .await;
        let _ = std::fs::remove_dir_all(&dir);

        // With the client certificate: admitted, on each kind of call.
        let channel = tls_channel(addr, &ca.pem(), Some(&client))
            .await
            .expect("mTLS connect");
        let mut c = pb::executor_client::ExecutorClient::new(channel);
        let langs = c
            .list_languages(pb::ListLanguagesRequest {})
            .await
            .expect("languages");
        assert!(!langs.into_inner().languages.is_empty());
        let r = c
            .execute(pb::ExecuteRequest {
                language: "python".into(),
                code: Some("print('over mtls')".into()),
                ..Default::default()
            })
            .await
            .expect("execute")
            .into_inner();
        assert_eq!(r.stdout, "over mtls\n");

        // Without one: the handshake is refused (no call gets through).
        let refused = match tls_channel(addr, &ca.pem(), None).await {
            Err(_) => true,
            Ok(ch) => pb::executor_client::ExecutorClient::new(ch)
                .list_languages(pb::ListLanguagesRequest {})
                .await
                .is_err(),
        };
        assert!(refused, "a client without a certificate got through");

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("shutdown")
            .unwrap()
            .unwrap();
    }

    /// A CRL replaced while the server runs applies to the gRPC port too: after the reload
    /// (polled every 100 ms here) the revoked client's next connection is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn grpc_refuses_a_client_revoked_by_a_reloaded_crl() {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
            SerialNumber,
        };
        let ca = test_ca("IsoBox gRPC reload CA");
        let server = leaf(
            &ca,
            "isobox server",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(&ca, "alice", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let serial = x509_parser::parse_x509_certificate(
            CertificateDer::from_pem_slice(client.cert.as_bytes())
                .unwrap()
                .as_ref(),
        )
        .unwrap()
        .1
        .raw_serial()
        .to_vec();
        let crl = |number: u8, revoked: &[Vec<u8>]| {
            CertificateRevocationListParams {
                this_update: rcgen::date_time_ymd(2020, 1, 1),
                next_update: rcgen::date_time_ymd(4000, 1, 1),
                crl_number: SerialNumber::from_slice(&[number]),
                issuing_distribution_point: None,
                revoked_certs: revoked
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from_slice(s),
                        revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                        reason_code: Some(RevocationReason::KeyCompromise),
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&ca)
            .unwrap()
            .pem()
            .unwrap()
        };
        /// Removed however the test ends (the leak check looks for leftovers).
        struct Dir(std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let guard =
            Dir(std::env::temp_dir().join(format!("isobox-grpc-reload-{}", std::process::id())));
        std::fs::create_dir_all(&guard.0).unwrap();
        let dir = guard.0.clone();
        let write = |name: &str, text: &str| {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            let p = dir.join(name);
            std::fs::rename(&tmp, &p).unwrap();
            p.to_string_lossy().to_string()
        };
        let (addr, stop, task) = start(vec![
            ("AUTH_TYPE", "mtls".to_string()),
            ("TLS_CERT", write("server.pem", &server.cert)),
            ("TLS_KEY", write("server.key", &server.key)),
            ("MTLS_CA_CERT", write("ca.pem", &ca.pem())),
            ("ISOBOX_MTLS_CRL", write("crl.pem", &crl(1, &[]))),
            ("ISOBOX_TLS_RELOAD_MS", "100".to_string()),
        ])
        .await;
        let ca_pem = ca.pem();
        let admitted = || async {
            match tls_channel(addr, &ca_pem, Some(&client)).await {
                Err(_) => false,
                Ok(ch) => pb::executor_client::ExecutorClient::new(ch)
                    .list_languages(pb::ListLanguagesRequest {})
                    .await
                    .is_ok(),
            }
        };
        assert!(
            admitted().await,
            "alice is not admitted before the revocation"
        );

        write("crl.pem", &crl(2, std::slice::from_ref(&serial)));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while admitted().await {
            assert!(
                std::time::Instant::now() < deadline,
                "a client revoked by the new CRL is still admitted over gRPC"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let _ = std::fs::remove_dir_all(&dir);
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("shutdown")
            .unwrap()
            .unwrap();
    }
}
