//! REST over TLS: the axum router served by hyper on the connections of [`super::accept()`].

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::accept::{accept, TlsConn};
use super::TlsSource;

/// A client that has not sent a complete request head within this time is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` over TLS on `listener` until `shutdown` resolves: HTTP/1.1 with
/// [`super::PeerCerts`] and `ConnectInfo<SocketAddr>` in every request's extensions. On
/// shutdown: stop accepting (the listener closes, handshakes in progress are abandoned), let
/// open connections finish their requests (idle keep-alive connections close at once) and
/// return when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: impl Into<TlsSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut accepting = accept(listener, tls);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            conn = accepting.connections.recv() => match conn {
                Some(conn) => {
                    connections.spawn(connection(conn, router.clone(), stop_rx.clone()));
                }
                None => break,
            },
        }
    }
    accepting.stop().await;
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(conn: TlsConn, router: axum::Router, mut stop: watch::Receiver<bool>) {
    let (peer, certs) = (conn.peer, conn.certs.clone());
    let service = router.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(certs.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = http.serve_connection(TokioIo::new(conn), TowerToHyperService::new(service));
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
