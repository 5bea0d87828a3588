//! REST over TLS: the axum router served by hyper on the connections of [`super::accept()`].

use std::future::Future;
use std::io;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::accept::accept;
use super::{ConnLimits, TlsSource};

/// Serves `router` over TLS on `listener` until `shutdown` resolves: each connection as a plain
/// one ([`super::plain::connection`]: HTTP/1.1, the header timeout, WebSocket upgrades) with
/// [`super::PeerCerts`] and `ConnectInfo<SocketAddr>` in every request's extensions; at most
/// `limits.max_connections` at once, handshakes included. On shutdown: stop accepting (the
/// listener closes, handshakes in progress are abandoned), let open connections finish their
/// requests (idle keep-alive connections close at once) and return when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: impl Into<TlsSource>,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut accepting = accept(listener, tls, limits.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            conn = accepting.connections.recv() => match conn {
                Some(conn) => {
                    let (peer, certs) = (conn.peer, conn.certs.clone());
                    connections.spawn(super::plain::connection(
                        conn,
                        peer,
                        Some(certs),
                        router.clone(),
                        limits,
                        stop_rx.clone(),
                    ));
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
