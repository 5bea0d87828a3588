//! The gRPC API (`proto/isobox.proto`, package `isobox.v1`, service `Executor`), plus the
//! standard health service and server reflection, on `GRPC_PORT`.
//!
//! [`service`] is the adapter: each call goes through the [`crate::api`] layer like REST
//! (admission from the metadata, authorization of the validated request, runs, the one error
//! table); [`convert`] translates messages and refusals.
//!
//! TLS: with `TLS_CERT`/`TLS_KEY` the gRPC port takes its connections from the same accept
//! path as REST ([`crate::transport::accept()`], ALPN `h2`), so client certificates (mTLS)
//! authenticate gRPC calls too.

pub mod convert;
pub mod service;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;

pub use service::ExecutorService;
/// Re-exported for clients and tests (one version of each, the server's).
pub use {tokio_stream, tonic, tonic_health, tonic_reflection};

use crate::state::App;

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
    // An HTTP/2 connection that goes quiet is pinged; one whose peer does not answer is closed.
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
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
            let accepting = crate::transport::accept::accept_plain(listener, app.config.http);
            let (incoming, forward) = incoming(accepting);
            let r = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            forward.abort();
            r
        }
        Some(tls) => {
            let tls = tls.source(crate::transport::Alpn::H2);
            let accepting =
                crate::transport::accept(listener, tls, app.config.http.max_connections);
            let (incoming, forward) = incoming(accepting);
            let r = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            forward.abort();
            r
        }
    };
    served.map_err(std::io::Error::other)
}

/// The connections of an accept loop as tonic's incoming stream, and the task that feeds it
/// (aborting it stops the accept loop and closes the listener).
fn incoming<C: Send + 'static>(
    mut accepting: crate::transport::accept::Accepting<C>,
) -> (
    ReceiverStream<std::io::Result<C>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let forward = tokio::spawn(async move {
        while let Some(conn) = accepting.connections.recv().await {
            if tx.send(Ok(conn)).await.is_err() {
                break;
            }
        }
        accepting.stop().await;
    });
    (ReceiverStream::new(rx), forward)
}
