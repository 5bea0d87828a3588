//! The accept paths of the servers: TLS (REST and gRPC) and plain TCP for gRPC (REST over plain
//! TCP is served by [`super::plain`]). Both cap the connections a listener holds and drop a
//! client that does not start talking in time.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{PeerCerts, TlsSource};
use crate::logging::SECURITY;

/// A client that has not finished the TLS handshake within this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections that finished their handshake and wait for the server to take them.
const BACKLOG: usize = 64;

/// A connection that got past its listener's admission (a TLS handshake, or a plain client's
/// first bytes), with who is on the other end.
pub struct Conn<S> {
    stream: S,
    pub peer: SocketAddr,
    /// The client certificates of a TLS connection (empty otherwise).
    pub certs: PeerCerts,
    /// Its place among the listener's `max_connections`, held for its life.
    _slot: OwnedSemaphorePermit,
}

/// A TLS connection that completed its handshake.
pub type TlsConn = Conn<TlsStream<TcpStream>>;

/// A plain TCP connection (gRPC without TLS) whose client has started talking.
pub type PlainConn = Conn<TcpStream>;

/// The accept loop of one listener; dropping it stops accepting and closes the listener
/// (handshakes in progress are abandoned).
pub struct Accepting<C = TlsConn> {
    pub connections: mpsc::Receiver<C>,
    task: Option<JoinHandle<()>>,
}

impl<C> Accepting<C> {
    /// Stops accepting and waits until the listener is closed.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl<C> Drop for Accepting<C> {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The one accept loop: at most `max_connections` open at once, admissions included (the next
/// waits in the kernel's backlog until one closes); each accepted connection is handed to
/// `admit` (called at accept, its future run in a task of its own), which says what it becomes
/// or drops it.
fn accept_with<S, F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    admit: F,
) -> Accepting<Conn<S>>
where
    S: Send + 'static,
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = Option<(S, PeerCerts)>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(BACKLOG);
    let slots = Arc::new(Semaphore::new(max_connections));
    let task = tokio::spawn(async move {
        loop {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) if super::is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let admitted = admit(tcp, peer);
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some((stream, certs)) = admitted.await {
                    let conn = Conn {
                        stream,
                        peer,
                        certs,
                        _slot: slot,
                    };
                    let _ = tx.send(conn).await;
                }
            });
        }
    });
    Accepting {
        connections: rx,
        task: Some(task),
    }
}

/// Accepts TCP connections on `listener` and hands on the ones that complete a TLS handshake
/// (bounded by a timeout) with the configuration `tls` gives at that connection's accept: a
/// reloaded configuration applies from the next connection. At most `max_connections` are
/// open at once, handshakes included.
pub fn accept(
    listener: TcpListener,
    tls: impl Into<TlsSource>,
    max_connections: usize,
) -> Accepting {
    let tls: TlsSource = tls.into();
    accept_with(listener, max_connections, move |tcp, peer| {
        let acceptor = TlsAcceptor::from(tls.current());
        async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let certs = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                        .unwrap_or_default();
                    Some((stream, PeerCerts(Arc::new(certs))))
                }
                Ok(Err(e)) => {
                    handshake_failed(peer, &e);
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        }
    })
}

/// Accepts TCP connections on `listener` and hands on those whose client sends its first bytes
/// (the HTTP/2 preface) within `limits.header_timeout`; at most `limits.max_connections` at
/// once, the silent ones included until they are dropped.
pub fn accept_plain(listener: TcpListener, limits: super::ConnLimits) -> Accepting<PlainConn> {
    accept_with(
        listener,
        limits.max_connections,
        move |tcp, peer| async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(limits.header_timeout, tcp.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => Some((tcp, PeerCerts::default())),
                _ => {
                    tracing::debug!(%peer, "a client that never spoke was dropped");
                    None
                }
            }
        },
    )
}

/// A refused client certificate is a failed authentication (security log); anything else
/// (plain HTTP, scanners, resets) is noise for the debug log.
fn handshake_failed(peer: SocketAddr, e: &io::Error) {
    let tls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(rustls::Error::NoCertificatesPresented) => tracing::warn!(
            target: SECURITY,
            method = "mtls",
            client_ip = %peer.ip(),
            reason = "no client certificate",
            "authentication failed"
        ),
        Some(err @ rustls::Error::InvalidCertificate(_)) => tracing::warn!(
            target: SECURITY,
            method = "mtls",
            client_ip = %peer.ip(),
            reason = %err,
            "authentication failed"
        ),
        _ => tracing::debug!(%peer, "TLS handshake failed: {e}"),
    }
}

/// The connection facts tonic puts in every gRPC request's extensions.
#[derive(Clone)]
pub struct TlsInfo {
    pub remote: SocketAddr,
    pub certs: PeerCerts,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = TlsInfo;

    fn connect_info(&self) -> TlsInfo {
        TlsInfo {
            remote: self.peer,
            certs: self.certs.clone(),
        }
    }
}

impl tonic::transport::server::Connected for PlainConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
