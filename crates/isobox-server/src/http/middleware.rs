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
/// on the response, `common` (limits, headers, metrics, log), CORS, panics caught.
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
            // Content-Type, Authorization and the API key header, whatever its name (`*`
            // would not cover Authorization).
            .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
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
        // Answer at once, and meanwhile read (and drop) what the client is still sending, up
        // to a bound: a client that is still writing when the connection closes sees a broken
        // pipe, not the 413.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        if announced <= DRAIN_BYTES {
            tokio::spawn(drain(req.into_body()));
        }
        ApiError::too_large("the request body is over the limit").into_response()
    } else {
        next.run(req).await
    };
    let resp_status = resp.status();
    if (resp_status.is_client_error() || resp_status.is_server_error()) && kind_of(&resp).is_none()
    {
        resp = as_json_error(resp).await;
    }
    if let Some(kind) = kind_of(&resp) {
        app.metrics.rejected(kind.as_str());
    }
    app.metrics.request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed(),
    );
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

/// What of an over-limit body is read (and dropped) after the 413: at most this much, for at
/// most this long, and only while the client keeps sending (a pause this long ends it).
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);
const DRAIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

async fn drain(body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    while seen <= DRAIN_BYTES {
        let pause = tokio::time::Instant::now() + DRAIN_PAUSE;
        match tokio::time::timeout_at(deadline.min(pause), body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len());
            }
            _ => return,
        }
    }
}

/// An error response that a framework made (a path or query that does not parse, an
/// extractor's rejection): the contract's JSON error with the kind of its status, its text as
/// the message when it is JSON-safe and short.
async fn as_json_error(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    let kind = ErrorKind::for_status(status.as_u16());
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string()
    } else {
        text
    };
    let mut out = ApiError::new(kind, message).into_response();
    // Keep what the framework said about the connection or retrying (`Allow`, `Retry-After`).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// Admission for `/api/v1/*`: the [`api::Caller`] goes into the request's extensions, the
/// rate limiter's state onto the response.
pub async fn gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    admit_then(&app, req, next, |e| e.into_response()).await
}

/// The admission every HTTP API shares (the native one and the compatibility APIs): the
/// caller's credentials (headers, client certificate, address) through [`api::admit`]; a
/// refusal answered by `refuse` (each API's error shape), else the [`api::Caller`] in the
/// request's extensions and the rate limiter's state on the response.
pub async fn admit_then(
    app: &Arc<App>,
    mut req: Request,
    next: Next,
    refuse: impl FnOnce(ApiError) -> Response,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = api::client_ip(app, peer, req.headers());
    let peer = req.extensions().get::<PeerCerts>().cloned();
    let creds = Credentials {
        headers: req.headers(),
        peer: peer.as_ref(),
        ip,
    };
    let caller = match api::admit(app, creds).await {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    let rate = caller.rate;
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    rate_headers(resp.headers_mut(), &rate);
    resp
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::body::Body;
    use axum::http::{Request as HttpRequest, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn app(extra: &[(&str, &str)]) -> Arc<App> {
        let mut env: HashMap<String, String> = [("ISOBOX_WARM_POOL", "0"), ("REST_PORT", "0")]
            .into_iter()
            .chain(extra.iter().copied())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("GRPC_PORT".into(), "0".into());
        let cfg = crate::config::load(&env).expect("config");
        let app = tokio::task::spawn_blocking(move || App::build(cfg))
            .await
            .unwrap()
            .expect("app");
        Arc::new(app)
    }

    fn routes() -> Router<Arc<App>> {
        Router::new().route("/ok", get(|| async { "ok" })).route(
            "/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("a bug");
                }
                "unreachable"
            }),
        )
    }

    fn get_req(path: &str, headers: &[(&str, &str)]) -> HttpRequest<Body> {
        let mut b = HttpRequest::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_is_a_json_500_and_the_server_goes_on() {
        let app = app(&[]).await;
        let router = around(routes(), app.clone());
        let resp = router.clone().oneshot(get_req("/boom", &[])).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().contains_key(REQUEST_ID));
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "internal_error", "{v}");
        assert!(!v["message"].as_str().unwrap().contains("a bug"), "{v}");
        let resp = router.oneshot(get_req("/ok", &[])).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(app.metrics.rejected_with("internal_error"), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_ids_are_echoed_when_sane_and_made_otherwise() {
        let router = around(routes(), app(&[]).await);
        let id = |resp: &Response| resp.headers()[REQUEST_ID].to_str().unwrap().to_string();
        let resp = router
            .clone()
            .oneshot(get_req("/ok", &[(REQUEST_ID, "client-id-1")]))
            .await
            .unwrap();
        assert_eq!(id(&resp), "client-id-1");
        let long = "x".repeat(129);
        for bad in [long.as_str(), "has space"] {
            let resp = router
                .clone()
                .oneshot(get_req("/ok", &[(REQUEST_ID, bad)]))
                .await
                .unwrap();
            let made = id(&resp);
            assert_ne!(made, bad);
            assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cors_only_when_configured_and_only_for_the_listed_origins() {
        let origin = "https://front.example";
        let preflight = |o: &str| {
            HttpRequest::builder()
                .method("OPTIONS")
                .uri("/ok")
                .header("origin", o)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type, x-api-key")
                .body(Body::empty())
                .unwrap()
        };
        // Off by default: no CORS headers at all.
        let off = around(routes(), app(&[]).await);
        let resp = off
            .clone()
            .oneshot(get_req("/ok", &[("origin", origin)]))
            .await
            .unwrap();
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
        // Configured: the listed origin is allowed (preflight and request), another is not.
        let on = around(
            routes(),
            app(&[(
                "ISOBOX_CORS_ORIGINS",
                "https://front.example/, https://b.example",
            )])
            .await,
        );
        let resp = on.clone().oneshot(preflight(origin)).await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
        let allowed = resp.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("x-api-key"), "{allowed}");
        let resp = on
            .clone()
            .oneshot(get_req("/ok", &[("origin", origin)]))
            .await
            .unwrap();
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
        let exposed = resp.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(exposed.contains("retry-after") && exposed.contains(REQUEST_ID));
        let resp = on
            .oneshot(get_req("/ok", &[("origin", "https://evil.example")]))
            .await
            .unwrap();
        assert!(!resp.headers().contains_key("access-control-allow-origin"));
    }

    #[tokio::test]
    async fn a_bad_cors_origin_is_a_configuration_error() {
        for bad in ["front.example", "https://front.example/path", "ftp://x"] {
            let env: HashMap<String, String> =
                [("ISOBOX_CORS_ORIGINS".to_string(), bad.to_string())].into();
            let e = crate::config::load(&env).unwrap_err();
            assert!(e.to_string().contains("ISOBOX_CORS_ORIGINS"), "{bad}: {e}");
        }
    }
}
