//! The gRPC API (`proto/isobox.proto`, package `isobox.v1`, service `Executor`), plus the
//! standard health service and server reflection, on `GRPC_PORT`.
//!
//! Every call goes through what REST uses: the gate (authentication from the metadata, the
//! brute-force limit per client address, the rate limit per principal), the permission policy,
//! the engine (validation, slots and backpressure, dedup for plain `Execute`) and the one error
//! table of [`crate::error`] (HTTP status -> gRPC code, same messages).
//!
//! Deadlines: a call with `grpc-timeout` runs through the engine's streamed path, whose sandbox
//! is killed when the call is dropped; when the deadline passes, the server answers
//! `DEADLINE_EXCEEDED` (up to 50 ms before the deadline, so that the client gets the server's
//! code rather than its local timer's) and the run is killed. A client that cancels or
//! disconnects gets its run killed the same way. Plain `Execute` without a deadline goes
//! through the dedup cache like REST when `DEDUP_ENABLED` (a cached run is not cancelled by a
//! disconnect, as on REST).
//!
//! TLS: with `TLS_CERT`/`TLS_KEY` the gRPC port speaks TLS (ALPN `h2`) with the same rustls
//! configuration as REST, so client certificates (mTLS) authenticate gRPC calls too.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use isobox_core::engine::{Execution, StdinMsg, StreamEvent, StreamHandle};
use isobox_core::{CoreError, ExecuteRequest, ExecutionResult, Outcome, RequestFile};
use isobox_sandbox::Stream as OutStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::gate::Refusal;
use crate::auth::tls::PeerCerts;
use crate::error::ApiError;
use crate::logging::SECURITY;
use crate::App;

/// Re-exported for clients and tests (one version of each, the server's).
pub use {tokio_stream, tonic, tonic_health, tonic_reflection};

/// The generated messages, client (`executor_client::ExecutorClient`) and server.
#[allow(clippy::large_enum_variant)] // generated: `StreamMessage` holds the result inline
pub mod pb {
    tonic::include_proto!("isobox.v1");
}

/// The encoded file descriptor set of `proto/isobox.proto` (served by reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/isobox_descriptor.bin"));

/// The full gRPC name of the service.
pub const SERVICE_NAME: &str = "isobox.v1.Executor";

/// A TLS client that has not finished its handshake within this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Executor` service.
pub struct ExecutorService {
    app: Arc<App>,
}

impl ExecutorService {
    pub fn new(app: Arc<App>) -> ExecutorService {
        ExecutorService { app }
    }
}

/// The authenticated caller of one call.
struct Caller {
    /// `method:id`: the dedup scope and the log identity, as on REST.
    key: String,
    roles: Vec<String>,
}

fn refusal_status(app: &App, r: &Refusal) -> Status {
    let e = match r {
        Refusal::Unauthenticated(m) => {
            ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", m)
        }
        Refusal::ProviderUnavailable => ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "the identity provider cannot be reached; retry later",
            )
        },
        Refusal::RateLimited(d) => ApiError {
            retry_after: Some(d.retry_after_secs.max(1)),
            ..ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry later",
            )
        },
        Refusal::Forbidden(m) => ApiError::new(axum::http::StatusCode::FORBIDDEN, "forbidden", m),
    };
    app.metrics.rejected(e.kind);
    e.into()
}

/// A core error as a status (counted and logged as on REST; never internal details).
fn core_status(app: &App, e: &CoreError) -> Status {
    crate::routes::core_error(app, e).into()
}

fn deadline_status(app: &App) -> Status {
    app.metrics.rejected("deadline_exceeded");
    ApiError::new(
        axum::http::StatusCode::GATEWAY_TIMEOUT,
        "deadline_exceeded",
        "the call's deadline passed; the run was stopped",
    )
    .into()
}

/// The deadline of a call from its `grpc-timeout` metadata (`<digits><H|M|S|m|u|n>`), less a
/// small margin so that our answer reaches the client before its own timer fires.
fn deadline_of(md: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = md.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    let margin = (d / 10).min(Duration::from_millis(50));
    Some(d - margin)
}

impl ExecutorService {
    /// The gate of REST for one call: brute-force limit, authentication, rate limit.
    async fn admit<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let app = &self.app;
        let tls = req.extensions().get::<TlsInfo>();
        let ip = tls
            .and_then(|t| t.remote)
            .or_else(|| req.remote_addr())
            .map(|a| a.ip());
        // gRPC metadata names are lower-case already: the API key header matches as on REST,
        // and `authorization` carries bearer tokens.
        let headers = req.metadata().clone().into_headers();
        let peer = tls.map(|t| t.certs.clone());
        let admitted = app
            .gate
            .admit(&headers, peer.as_ref(), ip)
            .await
            .map_err(|r| refusal_status(app, &r))?;
        let p = admitted.principal;
        Ok(Caller {
            key: format!("{}:{}", p.method, p.id),
            roles: admitted.roles,
        })
    }

    /// The permission policy, as on REST (`execute`).
    fn authorize(&self, caller: &Caller, req: &ExecuteRequest) -> Result<(), Status> {
        match crate::routes::policy_check(&self.app, &caller.key, &caller.roles, "execute", req) {
            Ok(()) => Ok(()),
            Err(Err(e)) => Err(core_status(&self.app, &e)),
            Err(Ok(why)) => Err(refusal_status(
                &self.app,
                &Refusal::Forbidden(format!("not allowed: {why}")),
            )),
        }
    }

    /// Authorization and validation before anything streams.
    async fn check(&self, caller: &Caller, req: &ExecuteRequest) -> Result<(), Status> {
        self.authorize(caller, req)?;
        crate::streaming::precheck(&self.app, req)
            .await
            .map_err(|e| core_status(&self.app, &e))
    }
}

/// The proto request as the core's (file contents that are not UTF-8 travel as base64).
fn to_core(r: pb::ExecuteRequest) -> ExecuteRequest {
    use base64::Engine as _;
    let files = (!r.files.is_empty()).then(|| {
        r.files
            .into_iter()
            .map(|f| match String::from_utf8(f.content) {
                Ok(s) => RequestFile {
                    name: f.name,
                    content: s,
                    encoding: None,
                },
                Err(e) => RequestFile {
                    name: f.name,
                    content: base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    encoding: Some("base64".into()),
                },
            })
            .collect()
    });
    ExecuteRequest {
        language: r.language,
        version: r.version,
        code: r.code,
        files,
        stdin: r.stdin,
        args: (!r.args.is_empty()).then_some(r.args),
        limits: r.limits.map(|l| isobox_core::RequestLimits {
            timeout_ms: l.timeout_ms,
            cpu_time_ms: l.cpu_time_ms,
            memory_mb: l.memory_mb,
            max_processes: l.max_processes,
            max_output_bytes: l.max_output_bytes,
        }),
    }
}

fn outcome(o: &Outcome) -> pb::Outcome {
    pb::Outcome {
        status: o.status.clone(),
        exit_code: o.exit_code,
        signal: o.signal.clone(),
        stdout: o.stdout.clone(),
        stderr: o.stderr.clone(),
        stdout_truncated: o.stdout_truncated,
        stderr_truncated: o.stderr_truncated,
        cpu_time_ms: o.cpu_time_ms,
        wall_time_ms: o.wall_time_ms,
        memory_peak_bytes: o.memory_peak_bytes,
    }
}

fn to_proto(r: &ExecutionResult) -> pb::ExecuteResult {
    let o = &r.run;
    pb::ExecuteResult {
        id: r.id.clone(),
        language: r.language.clone(),
        version: r.version.clone(),
        status: o.status.clone(),
        exit_code: o.exit_code,
        signal: o.signal.clone(),
        stdout: o.stdout.clone(),
        stderr: o.stderr.clone(),
        stdout_truncated: o.stdout_truncated,
        stderr_truncated: o.stderr_truncated,
        cpu_time_ms: o.cpu_time_ms,
        wall_time_ms: o.wall_time_ms,
        memory_peak_bytes: o.memory_peak_bytes,
        compile: r.compile.as_ref().map(outcome),
        cached: r.cached,
    }
}

/// Metrics and the execution log line of a finished run (as REST).
fn record(app: &App, caller: &str, ex: &Execution, streamed: bool) {
    crate::routes::record_execution(app, caller, ex, "grpc", streamed);
}

type MessageStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<pb::StreamMessage, Status>> + Send>>;

/// The response stream of a streamed run: output chunks, then the result (or an error status).
/// Dropping it (client gone, call cancelled) drops the run's receiver, which kills the sandbox;
/// at the deadline it ends with `DEADLINE_EXCEEDED` and drops the run the same way.
fn message_stream(
    app: Arc<App>,
    handle: StreamHandle,
    caller: String,
    deadline: Option<Duration>,
) -> MessageStream {
    let sleep = deadline.map(|d| Box::pin(tokio::time::sleep(d)));
    let state = (Some(handle.events), sleep, app, caller);
    let s = futures_util::stream::unfold(state, |(events, mut sleep, app, caller)| async move {
        let mut events = events?;
        let ev = match sleep.as_mut() {
            Some(s) => tokio::select! {
                ev = events.recv() => ev,
                _ = s => {
                    drop(events);
                    return Some((Err(deadline_status(&app)), (None, None, app, caller)));
                }
            },
            None => events.recv().await,
        };
        let kind = match ev? {
            StreamEvent::Output {
                stream: OutStream::Stdout,
                data,
            } => pb::stream_message::Kind::Stdout(data),
            StreamEvent::Output {
                stream: OutStream::Stderr,
                data,
            } => pb::stream_message::Kind::Stderr(data),
            StreamEvent::Done(r) => {
                let item = match *r {
                    Ok(ex) => {
                        record(&app, &caller, &ex, true);
                        Ok(pb::StreamMessage {
                            kind: Some(pb::stream_message::Kind::Result(to_proto(&ex.result))),
                        })
                    }
                    Err(e) => Err(core_status(&app, &e)),
                };
                return Some((item, (None, None, app, caller)));
            }
        };
        Some((
            Ok(pb::StreamMessage { kind: Some(kind) }),
            (Some(events), sleep, app, caller),
        ))
    });
    Box::pin(s)
}

/// Waits for the end of a streamed run (output is in the result).
async fn finish(mut handle: StreamHandle) -> Result<Execution, CoreError> {
    loop {
        match handle.events.recv().await {
            Some(StreamEvent::Output { .. }) => {}
            Some(StreamEvent::Done(r)) => return *r,
            None => return Err(CoreError::Config("the run ended without a result".into())),
        }
    }
}

#[tonic::async_trait]
impl pb::executor_server::Executor for ExecutorService {
    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResult>, Status> {
        let caller = self.admit(&request).await?;
        let deadline = deadline_of(request.metadata());
        let req = to_core(request.into_inner());
        self.authorize(&caller, &req)?;
        let app = self.app.clone();
        let run = async {
            if deadline.is_none() && app.config.dedup_enabled {
                app.engine.execute(req, &caller.key).await
            } else {
                // Cancellable: dropping the handle (deadline, client gone) kills the run.
                finish(app.engine.execute_stream(req, caller.key.clone(), false)).await
            }
        };
        let result = match deadline {
            Some(d) => tokio::time::timeout(d, run)
                .await
                .map_err(|_| deadline_status(&app))?,
            None => run.await,
        };
        let ex = result.map_err(|e| core_status(&app, &e))?;
        record(&app, &caller.key, &ex, false);
        Ok(Response::new(to_proto(&ex.result)))
    }

    type ExecuteStreamStream = MessageStream;

    async fn execute_stream(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        let caller = self.admit(&request).await?;
        let deadline = deadline_of(request.metadata());
        let req = to_core(request.into_inner());
        self.check(&caller, &req).await?;
        let handle = self
            .app
            .engine
            .execute_stream(req, caller.key.clone(), false);
        Ok(Response::new(message_stream(
            self.app.clone(),
            handle,
            caller.key,
            deadline,
        )))
    }

    type ExecuteInteractiveStream = MessageStream;

    async fn execute_interactive(
        &self,
        request: Request<Streaming<pb::InteractiveMessage>>,
    ) -> Result<Response<Self::ExecuteInteractiveStream>, Status> {
        use pb::interactive_message::Kind;
        let caller = self.admit(&request).await?;
        let deadline = deadline_of(request.metadata());
        let started = tokio::time::Instant::now();
        let mut inbound = request.into_inner();
        let first = match deadline {
            Some(d) => tokio::time::timeout(d, inbound.message())
                .await
                .map_err(|_| deadline_status(&self.app))?,
            None => inbound.message().await,
        }?;
        let req = match first.and_then(|m| m.kind) {
            Some(Kind::Request(r)) => to_core(r),
            _ => {
                self.app.metrics.rejected("invalid_request");
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the first message must carry the request",
                )
                .into());
            }
        };
        self.check(&caller, &req).await?;
        let handle = self
            .app
            .engine
            .execute_stream(req, caller.key.clone(), true);
        // Stdin: forwarded until close_stdin or the end of the client's stream (both close the
        // program's stdin), or until the run is over.
        let stdin = handle.stdin.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    _ = stdin.closed() => return,
                };
                match msg {
                    Ok(Some(pb::InteractiveMessage {
                        kind: Some(Kind::Stdin(data)),
                    })) => {
                        let _ = stdin.send(StdinMsg::Data(data));
                    }
                    Ok(Some(pb::InteractiveMessage {
                        kind: Some(Kind::CloseStdin(true)),
                    }))
                    | Ok(None) => {
                        let _ = stdin.send(StdinMsg::Close);
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
        Ok(Response::new(message_stream(
            self.app.clone(),
            handle,
            caller.key,
            left,
        )))
    }

    async fn list_languages(
        &self,
        request: Request<pb::ListLanguagesRequest>,
    ) -> Result<Response<pb::ListLanguagesResponse>, Status> {
        self.admit(&request).await?;
        let languages = self
            .app
            .languages
            .iter()
            .map(|l| pb::Language {
                name: l.name.clone(),
                aliases: l.aliases.clone(),
                version: l.version.clone(),
                compiled: l.compiled,
            })
            .collect();
        Ok(Response::new(pb::ListLanguagesResponse { languages }))
    }
}

/// Serves the gRPC API on `listener` (TLS when the app has a TLS configuration) until `stop`
/// turns true; then health answers NOT_SERVING, no new connections are accepted and open
/// calls are let finish (the caller kills runs after the grace period).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::executor_server::ExecutorServer<ExecutorService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(std::io::Error::other)?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(std::io::Error::other)?;
    let executor = pb::executor_server::ExecutorServer::new(ExecutorService::new(app.clone()))
        .max_decoding_message_size(app.config.max_body_bytes);
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(executor);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
        health
            .set_not_serving::<pb::executor_server::ExecutorServer<ExecutorService>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    let served = match app.tls.clone() {
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
        Some(tls) => {
            let mut tls = (*tls).clone();
            tls.alpn_protocols = vec![b"h2".to_vec()];
            let (tx, rx) = mpsc::channel(64);
            let acceptor = tokio::spawn(accept_tls(
                listener,
                tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
                tx,
            ));
            let r = router
                .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
                .await;
            acceptor.abort();
            r
        }
    };
    served.map_err(std::io::Error::other)
}

/// A TLS connection for tonic, carrying its peer address and client certificates into every
/// request's extensions (as [`TlsInfo`]).
pub struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

/// The connection facts of a gRPC call over TLS.
#[derive(Clone)]
pub struct TlsInfo {
    remote: Option<std::net::SocketAddr>,
    certs: PeerCerts,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = TlsInfo;

    fn connect_info(&self) -> TlsInfo {
        let (tcp, session) = self.0.get_ref();
        TlsInfo {
            remote: tcp.peer_addr().ok(),
            certs: PeerCerts(Arc::new(
                session
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default(),
            )),
        }
    }
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Accepts TCP connections and hands the ones that complete the TLS handshake to tonic (a
/// failed or slow handshake closes only that connection).
async fn accept_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<Result<TlsConn, std::io::Error>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("gRPC accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(TlsConn(stream))).await;
                }
                Ok(Err(e)) => {
                    // A refused client certificate is a failed authentication, as on REST.
                    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                        Some(
                            err @ (rustls::Error::NoCertificatesPresented
                            | rustls::Error::InvalidCertificate(_)),
                        ) => tracing::warn!(
                            target: SECURITY,
                            method = "mtls",
                            api = "grpc",
                            client_ip = %peer.ip(),
                            reason = %err,
                            "authentication failed"
                        ),
                        _ => tracing::debug!(%peer, "gRPC TLS handshake failed: {e}"),
                    }
                }
                Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::collections::HashMap;

    #[test]
    fn deadlines_parse_with_a_margin() {
        let md = |v: &str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            m
        };
        assert_eq!(deadline_of(&md("500m")), Some(Duration::from_millis(450)));
        assert_eq!(deadline_of(&md("100m")), Some(Duration::from_millis(90)));
        assert_eq!(deadline_of(&md("2S")), Some(Duration::from_millis(1950)));
        assert_eq!(
            deadline_of(&md("1H")),
            Some(Duration::from_millis(3_599_950))
        );
        for bad in ["", "m", "10", "10x", "123456789S", "-1S"] {
            assert_eq!(deadline_of(&md(bad)), None, "{bad}");
        }
        assert_eq!(deadline_of(&tonic::metadata::MetadataMap::new()), None);
    }

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn grpc_over_mtls_authenticates_with_the_client_certificate() {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "IsoBox gRPC test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let server = leaf(
            &ca,
            "isobox server",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = leaf(&ca, "alice", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let dir = std::env::temp_dir().join(format!("isobox-grpc-mtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.to_string_lossy().to_string()
        };
        let env: HashMap<String, String> = [
            ("REST_PORT", "0".to_string()),
            ("GRPC_PORT", "0".to_string()),
            ("ISOBOX_WARM_POOL", "0".to_string()),
            ("AUTH_TYPE", "mtls".to_string()),
            ("TLS_CERT", write("server.pem", &server.cert)),
            ("TLS_KEY", write("server.key", &server.key)),
            ("MTLS_CA_CERT", write("ca.pem", &ca.pem())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let cfg = crate::config::load(&env).expect("config");
        let app = tokio::task::spawn_blocking(move || App::build(cfg))
            .await
            .unwrap()
            .expect("app");
        let _ = std::fs::remove_dir_all(&dir);
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
}
