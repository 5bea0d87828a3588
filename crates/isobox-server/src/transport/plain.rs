//! REST over plain TCP: the axum router served by hyper, one task per connection, with the
//! limits of [`ConnLimits`] (at most so many connections, a request head — the first, and each
//! next one on a kept-alive connection — within the header timeout) and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::{ConnLimits, PeerCerts};

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets open
/// connections finish their requests (idle ones close at once) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the cap, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            p = slots.clone().acquire_owned() => p.expect("never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let router = router.clone();
                let stop = stop_rx.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    connection(tcp, peer, None, router, limits, stop).await;
                });
            }
            Err(e) if super::is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One HTTP/1.1 connection (plain or TLS): the router with the peer's address and client
/// certificates in every request's extensions, the header timeout, graceful shutdown on
/// `stop`. WebSocket upgrades are served on it.
pub async fn connection<S>(
    io: S,
    peer: SocketAddr,
    certs: Option<PeerCerts>,
    router: axum::Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let certs = certs.unwrap_or_default();
    let service = router.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(certs.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
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

/// Resolves once shutdown has begun (or the server loop is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
