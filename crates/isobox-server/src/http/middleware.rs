//! What every response passes: request id, the body limit (also from `Content-Length`, before
//! a body is read), security headers, metrics (per route, and each refusal once by its kind),
//! the access log, CORS when configured, and a panic in a handler as a JSON 500. And the gate
//! of `/api/v1/*`: admission by the API layer, the caller in the request's extensions.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use super::error::{kind_of, rate_headers};
use crate::api::{self, ApiError, Credentials, ErrorKind};
use crate::state::App;
use crate::transport::PeerCerts;

const REQUEST_ID: &str = "x-request-id";

/// `routes` wrapped in the layers every response passes (outermost first): a client's request
/// id dropped unless it is short printable ASCII, a UUID where there is none, the id echoed
/// on the response, [`common`], CORS, panics caught.
pub fn around(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    let cors = cors(&app.config.cors_origins);
    routes
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            ApiError::new(ErrorKind::Internal, "the server failed; it logged why").into_response()
        }))
        .layer(cors)
        .layer(middleware::from_fn_with_state(app.clone(), common))
        .layer(
            ServiceBuilder::new()
                .map_request(drop_bad_request_id)
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(app)
}

/// CORS for browser front ends on other origins (`ISOBOX_CORS_ORIGINS`): none by default.
fn cors(origins: &[String]) -> tower::util::Either<CorsLayer, tower::layer::util::Identity> {
    use tower::util::Either;
    if origins.is_empty() {
        return Either::Right(tower::layer::util::Identity::new());
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Either::Left(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            // Content-Type, Authorization and the API key header, whatever its name.
            .allow_headers(tower_http::cors::Any)
            .expose_headers([
                header::RETRY_AFTER,
                header::HeaderName::from_static(REQUEST_ID),
                header::HeaderName::from_static("ratelimit-limit"),
                header::HeaderName::from_static("ratelimit-remaining"),
                header::HeaderName::from_static("ratelimit-reset"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// A client's request id is echoed only if it is 1..=128 printable ASCII characters.
fn drop_bad_request_id(mut req: Request) -> Request {
    let ok = req.headers().get(REQUEST_ID).is_some_and(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
    });
    if !ok {
        req.headers_mut().remove(REQUEST_ID);
    }
    req
}

/// The body limit on every route, security headers, per-route metrics, refusals counted by
/// kind, the access log.
async fn common(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let started = std::time::Instant::now();
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > app.config.max_body_bytes);
    let mut resp = if too_big {
        ApiError::too_large("the request body is over the limit").into_response()
    } else {
        next.run(req).await
    };
    if let Some(kind) = kind_of(&resp) {
        app.metrics.rejected(kind.as_str());
    }
    app.metrics.request(&route, resp.status().as_u16());
    // The access log; the URI may carry what a client thought was harmless (`?api_key=`): every
    // log line passes the redactor.
    tracing::info!(
        target: "isobox::http",
        request_id = %id,
        method = %method,
        uri = %uri,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    let own_cache = resp
        .extensions()
        .get::<super::playground::OwnCacheControl>()
        .is_some();
    let h = resp.headers_mut();
    // The Playground's files say their own (revalidated with their ETag); nothing else is kept.
    if !own_cache {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Admission for `/api/v1/*`: the [`api::Caller`] goes into the request's extensions, the
/// rate limiter's state onto the response.
pub async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let peer = req.extensions().get::<PeerCerts>().cloned();
    let creds = Credentials {
        headers: req.headers(),
        peer: peer.as_ref(),
        ip,
    };
    let caller = match api::admit(&app, creds).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let rate = caller.rate;
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    rate_headers(resp.headers_mut(), &rate);
    resp
}
