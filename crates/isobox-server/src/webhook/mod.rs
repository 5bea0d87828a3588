//! Webhook delivery for async jobs.
//!
//! When an async job finishes and its request carried a `callback_url`, the
//! server POSTs the result JSON to that URL. Because the URL is chosen by the
//! (possibly untrusted) API client, delivery is built so that the server can
//! not be turned into an SSRF proxy (the Judge0 class of bug):
//!
//! * callbacks are refused entirely unless a signing secret is configured
//!   (`ISOBOX_WEBHOOK_SECRET`);
//! * only `http`/`https` URLs with a host, no userinfo, at most
//!   [`MAX_URL_LEN`] bytes ([`check_url`], run at submission time);
//! * every address the host resolves to is vetted against a destination
//!   policy (loopback, private, link-local/cloud metadata, CGNAT, multicast,
//!   reserved and documentation ranges, and IPv6 forms embedding such IPv4
//!   addresses are refused) unless it is inside an operator allow-list
//!   (`ISOBOX_WEBHOOK_ALLOW`); if *any* resolved address is refused the
//!   delivery is refused;
//! * the HTTP client connects only to the vetted addresses (DNS answers are
//!   pinned, and the client's own resolver refuses every lookup), so DNS
//!   rebinding between check and connect is impossible; environment proxies
//!   are ignored;
//! * redirects are never followed (a 3xx is a permanent failure).
//!
//! # Request format (for integrators)
//!
//! ```text
//! POST <callback_url>
//! Content-Type: application/json
//! User-Agent: isobox-webhook/<version>
//! X-IsoBox-Event: execution.completed
//! X-IsoBox-Delivery: <delivery id, identical on every retry: use it to dedupe>
//! X-IsoBox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>
//!
//! <result JSON>
//! ```
//!
//! A receiver must recompute the HMAC over the *raw* request body, compare it
//! in constant time and reject timestamps too far from its own clock; this is
//! exactly what [`verify`] does. Each attempt carries a fresh timestamp and
//! signature. Answer with any 2xx to acknowledge; 408, 429 (with optional
//! `Retry-After: <seconds>`) and 5xx are retried with exponential backoff;
//! any other status is a permanent failure.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying `t=<unix secs>,v1=<hex hmac>`.
pub const SIGNATURE_HEADER: &str = "X-IsoBox-Signature";
/// Header carrying the delivery id (stable across retries).
pub const DELIVERY_HEADER: &str = "X-IsoBox-Delivery";
/// Header carrying the event name.
pub const EVENT_HEADER: &str = "X-IsoBox-Event";
/// The only event currently emitted.
pub const EVENT_EXECUTION_COMPLETED: &str = "execution.completed";
/// Maximum accepted callback URL length in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Upper bound for any delay between attempts (backoff or `Retry-After`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Suggested timestamp tolerance for receivers calling [`verify`].
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// `User-Agent` sent with every delivery.
pub const USER_AGENT: &str = concat!("isobox-webhook/", env!("CARGO_PKG_VERSION"));

mod deliver;
mod destination;
mod sign;

pub use deliver::*;
pub use destination::*;
pub use sign::*;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Webhook delivery settings.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `ISOBOX_WEBHOOK_SECRET`; callbacks are refused when `None`.
    pub secret: Option<String>,
    /// `ISOBOX_WEBHOOK_ALLOW`: destinations allowed even if
    /// private/loopback/link-local/otherwise refused.
    pub allow: Vec<Cidr>,
    /// `ISOBOX_WEBHOOK_ATTEMPTS`, default 5 (values below 1 act as 1).
    pub max_attempts: u32,
    /// `ISOBOX_WEBHOOK_TIMEOUT_MS`, default 5000 ms; budget for one attempt
    /// (DNS + connect + TLS + response headers).
    pub timeout: Duration,
    /// First retry delay, default 500 ms, doubling per attempt, capped at
    /// [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// What the delivery client trusts (system roots, `ISOBOX_CA_BUNDLE`).
    pub outbound: crate::outbound::OutboundTls,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret: None,
            allow: Vec::new(),
            max_attempts: 5,
            timeout: Duration::from_millis(5000),
            backoff: Duration::from_millis(500),
            outbound: Default::default(),
        }
    }
}

impl fmt::Debug for WebhookConfig {
    // Hand-written so the secret can never end up in logs via `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("allow", &self.allow)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("outbound", &self.outbound)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a callback URL was rejected or a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The callback URL is malformed or not acceptable (scheme, userinfo,
    /// length, missing host, ...). The URL itself is not echoed.
    #[error("invalid callback_url: {0}")]
    BadUrl(String),
    /// `ISOBOX_WEBHOOK_SECRET` is not configured, so callbacks are disabled.
    #[error("callbacks are disabled on this server (no webhook secret configured)")]
    NoSecret,
    /// The destination (or one of the addresses its name resolves to) is in
    /// a refused range and not in the allow-list.
    #[error("callback destination {host} refused: address {addr} is {reason} (not in the webhook allow-list)")]
    DestinationRefused {
        host: String,
        addr: IpAddr,
        reason: String,
    },
    /// Delivery failed permanently or ran out of attempts.
    #[error("callback to {host} failed after {attempts} attempt(s): {last}")]
    Failed {
        host: String,
        attempts: u32,
        /// HTTP status of the last attempt, if a response was received.
        status: Option<u16>,
        /// Description of the last error (never contains the URL).
        last: String,
    },
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Number of attempts made, including the successful one (1 = first try).
    pub attempts: u32,
    /// The 2xx status returned by the receiver.
    pub status: u16,
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use std::sync::Mutex;

    const SECRET: &str = "whsec_test";

    #[derive(Clone, Debug)]
    struct Hit {
        headers: HeaderMap,
        body: Vec<u8>,
    }

    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        delay: Duration,
    }

    fn reply(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    struct Receiver {
        addr: SocketAddr,
        hits: Arc<Mutex<Vec<Hit>>>,
    }

    impl Receiver {
        fn url(&self) -> String {
            format!("http://{}/hook?token=s3cr3t", self.addr)
        }
        fn hits(&self) -> Vec<Hit> {
            self.hits.lock().unwrap().clone()
        }
    }

    /// Spawns an HTTP receiver on 127.0.0.1:0; `respond(n)` decides the
    /// reply to the n-th (0-based) request.
    async fn receiver(respond: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let respond = Arc::new(respond);
        let h = hits.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let hits = h.clone();
            let respond = respond.clone();
            async move {
                let n = {
                    let mut hits = hits.lock().unwrap();
                    hits.push(Hit {
                        headers,
                        body: body.to_vec(),
                    });
                    hits.len() - 1
                };
                let r = respond(n);
                tokio::time::sleep(r.delay).await;
                let mut resp: Response = StatusCode::from_u16(r.status).unwrap().into_response();
                for (k, v) in r.headers {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, hits }
    }

    fn cfg(allow_loopback: bool) -> WebhookConfig {
        WebhookConfig {
            secret: Some(SECRET.into()),
            allow: if allow_loopback {
                parse_allow("127.0.0.1/32").unwrap()
            } else {
                Vec::new()
            },
            max_attempts: 3,
            timeout: Duration::from_millis(300),
            backoff: Duration::from_millis(5),
            outbound: Default::default(),
        }
    }

    fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
        hit.headers.get(name).unwrap().to_str().unwrap()
    }

    const BODY: &[u8] = br#"{"id":"job-1","status":"completed","stdout":"hi\n"}"#;

    // (1) delivery, headers and signature
    #[tokio::test]
    async fn delivers_signed_payload_that_verify_accepts() {
        let rx = receiver(|_| reply(204)).await;
        let d = deliver(&cfg(true), &rx.url(), "dlv-1", BODY).await.unwrap();
        assert_eq!(
            d,
            Delivered {
                attempts: 1,
                status: 204
            }
        );

        let hits = rx.hits();
        assert_eq!(hits.len(), 1);
        let hit = &hits[0];
        assert_eq!(hit.body, BODY);
        assert_eq!(header(hit, "content-type"), "application/json");
        assert_eq!(header(hit, "x-isobox-event"), "execution.completed");
        assert_eq!(header(hit, "x-isobox-delivery"), "dlv-1");
        assert!(header(hit, "user-agent").starts_with("isobox-webhook/"));

        let sig = header(hit, "x-isobox-signature");
        let now = unix_now();
        assert!(verify(SECRET, sig, &hit.body, now, DEFAULT_TOLERANCE_SECS));
        // tampered body
        assert!(!verify(SECRET, sig, br#"{"id":"job-2"}"#, now, 300));
        // other secret
        assert!(!verify("whsec_other", sig, &hit.body, now, 300));
        // old timestamp (replay) and far-future timestamp
        assert!(!verify(SECRET, sig, &hit.body, now + 1000, 300));
        assert!(!verify(
            SECRET,
            sig,
            &hit.body,
            now.saturating_sub(1000),
            300
        ));
        // garbage headers
        assert!(!verify(SECRET, "", &hit.body, now, 300));
        assert!(!verify(SECRET, "v1=00", &hit.body, now, 300));
        let t = sig.split(',').next().unwrap();
        assert!(!verify(SECRET, t, &hit.body, now, 300));
    }

    #[test]
    fn sign_matches_independent_vector_and_verify_roundtrips() {
        // python3: hmac.new(b'whsec_test', b'1700000000.{"id":"job-1"}', sha256).hexdigest()
        let body = br#"{"id":"job-1"}"#;
        let sig = sign(SECRET, 1_700_000_000, body);
        assert_eq!(
            sig,
            "t=1700000000,v1=2c080f0b2685cf2edc6213f4d50b130f38cc01b5886d6724a988e7f86f3bf479"
        );
        assert!(verify(SECRET, &sig, body, 1_700_000_100, 300));
        assert!(!verify(SECRET, &sig, body, 1_700_000_301, 300));
        // rotation: an extra (wrong) v1 does not hurt, spaces tolerated
        let rotated = format!("t=1700000000, v1={}, {}", "ab".repeat(32), &sig[13..]);
        assert!(verify(SECRET, &rotated, body, 1_700_000_000, 300));
        // duplicate t= is rejected
        assert!(!verify(
            SECRET,
            &format!("t=1,{sig}"),
            body,
            1_700_000_000,
            300
        ));
    }

    // (1)+(4) retries keep the delivery id, re-sign each attempt
    #[tokio::test]
    async fn retries_5xx_then_delivers_with_same_delivery_id() {
        let rx = receiver(|n| reply(if n < 2 { 503 } else { 200 })).await;
        let d = deliver(&cfg(true), &rx.url(), "dlv-retry", BODY)
            .await
            .unwrap();
        assert_eq!(
            d,
            Delivered {
                attempts: 3,
                status: 200
            }
        );
        let hits = rx.hits();
        assert_eq!(hits.len(), 3);
        for hit in &hits {
            assert_eq!(header(hit, "x-isobox-delivery"), "dlv-retry");
            assert!(verify(
                SECRET,
                header(hit, "x-isobox-signature"),
                &hit.body,
                unix_now(),
                300
            ));
        }
    }

    #[tokio::test]
    async fn retries_429_and_408() {
        let rx = receiver(|n| match n {
            0 => Reply {
                status: 429,
                headers: vec![("retry-after", "0".into())],
                delay: Duration::ZERO,
            },
            1 => reply(408),
            _ => reply(200),
        })
        .await;
        let d = deliver(&cfg(true), &rx.url(), "dlv-429", BODY)
            .await
            .unwrap();
        assert_eq!(d.attempts, 3);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_on_5xx() {
        let rx = receiver(|_| reply(500)).await;
        let err = deliver(&cfg(true), &rx.url(), "dlv-500", BODY)
            .await
            .unwrap_err();
        match err {
            WebhookError::Failed {
                attempts, status, ..
            } => {
                assert_eq!(attempts, 3);
                assert_eq!(status, Some(500));
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(rx.hits().len(), 3);
    }

    // (4) no retry on other 4xx
    #[tokio::test]
    async fn does_not_retry_400() {
        let rx = receiver(|_| reply(400)).await;
        let err = deliver(&cfg(true), &rx.url(), "dlv-400", BODY)
            .await
            .unwrap_err();
        match &err {
            WebhookError::Failed {
                attempts,
                status,
                last,
                ..
            } => {
                assert_eq!(*attempts, 1);
                assert_eq!(*status, Some(400));
                assert!(!last.contains("s3cr3t"));
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert_eq!(rx.hits().len(), 1);
    }

    // (4) redirects are not followed
    #[tokio::test]
    async fn does_not_follow_redirects() {
        let target = receiver(|_| reply(200)).await;
        let location = target.url();
        let redirector = receiver(move |_| Reply {
            status: 302,
            headers: vec![("location", location.clone())],
            delay: Duration::ZERO,
        })
        .await;
        let err = deliver(&cfg(true), &redirector.url(), "dlv-302", BODY)
            .await
            .unwrap_err();
        match err {
            WebhookError::Failed {
                attempts, status, ..
            } => {
                assert_eq!(attempts, 1);
                assert_eq!(status, Some(302));
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(redirector.hits().len(), 1);
        assert_eq!(
            target.hits().len(),
            0,
            "redirect target must never be contacted"
        );
    }

    // (5) timeouts are retried, then fail
    #[tokio::test]
    async fn hanging_receiver_times_out_and_is_retried() {
        let rx = receiver(|_| Reply {
            status: 200,
            headers: Vec::new(),
            delay: Duration::from_secs(10),
        })
        .await;
        let mut c = cfg(true);
        c.max_attempts = 2;
        let started = Instant::now();
        let err = deliver(&c, &rx.url(), "dlv-hang", BODY).await.unwrap_err();
        let elapsed = started.elapsed();
        match &err {
            WebhookError::Failed {
                attempts,
                status,
                last,
                ..
            } => {
                assert_eq!(*attempts, 2);
                assert_eq!(*status, None);
                assert!(last.contains("timed out"), "{last}");
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        assert_eq!(rx.hits().len(), 2);
    }

    #[tokio::test]
    async fn connection_refused_is_retried() {
        // Bind then drop to get a port with (very likely) nothing listening.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let err = deliver(&cfg(true), &url, "dlv-refused", BODY)
            .await
            .unwrap_err();
        match err {
            WebhookError::Failed {
                attempts, status, ..
            } => {
                assert_eq!(attempts, 3);
                assert_eq!(status, None);
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    // (2) loopback refused by default, allowed by the allow-list
    #[tokio::test]
    async fn loopback_refused_by_default_allowed_with_allowlist() {
        let rx = receiver(|_| reply(200)).await;
        let err = deliver(&cfg(false), &rx.url(), "dlv-lo", BODY)
            .await
            .unwrap_err();
        match &err {
            WebhookError::DestinationRefused { addr, reason, .. } => {
                assert_eq!(*addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
                assert!(reason.contains("loopback"), "{reason}");
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(matches!(
            check_url(&cfg(false), &rx.url()),
            Err(WebhookError::DestinationRefused { .. })
        ));
        assert_eq!(rx.hits().len(), 0);

        check_url(&cfg(true), &rx.url()).unwrap();
        let d = deliver(&cfg(true), &rx.url(), "dlv-lo", BODY)
            .await
            .unwrap();
        assert_eq!(d.attempts, 1);
        assert_eq!(rx.hits().len(), 1);
    }

    // (3) hostnames are vetted after DNS
    #[tokio::test]
    async fn hostname_resolving_to_loopback_is_refused_at_delivery() {
        let rx = receiver(|_| reply(200)).await;
        let url = format!("http://localhost:{}/hook", rx.addr.port());
        // Hostnames pass the submission-time check...
        check_url(&cfg(false), &url).unwrap();
        // ...and are refused once resolved.
        let err = deliver(&cfg(false), &url, "dlv-localhost", BODY)
            .await
            .unwrap_err();
        match &err {
            WebhookError::DestinationRefused { host, addr, .. } => {
                assert_eq!(host, "localhost");
                assert!(addr.to_canonical().is_loopback(), "{addr}");
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(rx.hits().len(), 0);
    }

    #[tokio::test]
    async fn hostname_delivery_uses_pinned_addresses_only() {
        let rx = receiver(|_| reply(200)).await;
        let url = format!("http://localhost:{}/hook", rx.addr.port());
        // With loopback allowed, a hostname is delivered through the pinned
        // (vetted) addresses.
        let mut c = cfg(true);
        c.allow = parse_allow("127.0.0.1/32, ::1/128").unwrap();
        let d = deliver(&c, &url, "dlv-pinned", BODY).await.unwrap();
        assert_eq!(d.attempts, 1);
        assert_eq!(rx.hits().len(), 1);

        // The delivery client never resolves names itself: without a pin the
        // same request fails before connecting.
        let client = pinned_client(&Default::default(), Duration::from_millis(300), None)
            .build()
            .unwrap();
        let err = client.post(url.as_str()).send().await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        // A pin for another name does not help either.
        let other = [rx.addr];
        let client = pinned_client(
            &Default::default(),
            Duration::from_millis(300),
            Some(("example.invalid", &other)),
        )
        .build()
        .unwrap();
        assert!(client.post(url.as_str()).send().await.is_err());
        assert_eq!(rx.hits().len(), 1);
    }

    // (3) submission-time checks
    #[test]
    fn check_url_refuses_bad_urls_and_destinations() {
        let c = cfg(false);
        let refused = [
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]:8080/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://192.0.2.10/",
            "http://198.18.0.1/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::]/",
            "https://[ff02::1]/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:7f00:1::1]/",
            "https://[2001:db8::1]/",
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        ];
        for u in refused {
            match check_url(&c, u) {
                Err(WebhookError::DestinationRefused { .. }) => {}
                other => panic!("{u}: expected DestinationRefused, got {other:?}"),
            }
        }
        let bad = [
            "file:///etc/passwd",
            "ftp://example.com/x",
            "gopher://example.com/",
            "http://user:pass@example.com/",
            "http://user@example.com/",
            "http://:pass@example.com/",
            "http://",
            "not a url",
            "/relative/path",
            "http://example.com:0/",
        ];
        for u in bad {
            match check_url(&c, u) {
                Err(WebhookError::BadUrl(_)) => {}
                other => panic!("{u}: expected BadUrl, got {other:?}"),
            }
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(check_url(&c, &long), Err(WebhookError::BadUrl(_))));

        let ok = [
            "https://example.com/hook?token=abc",
            "http://hooks.example.org:8080/x",
            "http://93.184.216.34/",
            "https://[2606:4700::1111]/",
            "https://[::ffff:8.8.8.8]/",
        ];
        for u in ok {
            check_url(&c, u).unwrap_or_else(|e| panic!("{u}: {e}"));
        }

        let no_secret = WebhookConfig::default();
        assert!(matches!(
            check_url(&no_secret, "https://example.com/"),
            Err(WebhookError::NoSecret)
        ));
    }

    #[tokio::test]
    async fn deliver_requires_secret_and_valid_url() {
        let rx = receiver(|_| reply(200)).await;
        let mut c = cfg(true);
        c.secret = None;
        assert!(matches!(
            deliver(&c, &rx.url(), "d", BODY).await,
            Err(WebhookError::NoSecret)
        ));
        assert!(matches!(
            deliver(&cfg(true), "file:///etc/passwd", "d", BODY).await,
            Err(WebhookError::BadUrl(_))
        ));
        assert_eq!(rx.hits().len(), 0);
    }

    #[test]
    fn refusal_message_names_address_and_reason() {
        let err = check_url(&cfg(false), "http://169.254.169.254/").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("169.254.169.254"), "{msg}");
        assert!(msg.contains("link-local"), "{msg}");
        let err = check_url(&cfg(false), "http://[::ffff:10.1.2.3]/").unwrap_err();
        assert!(err.to_string().contains("10.1.2.3"), "{err}");
    }

    #[test]
    fn allowlist_overrides_policy() {
        let mut c = cfg(false);
        c.allow = parse_allow("10.0.0.0/8, fd00::/8").unwrap();
        check_url(&c, "http://10.1.2.3/").unwrap();
        check_url(&c, "http://[::ffff:10.1.2.3]/").unwrap();
        check_url(&c, "http://[fd12::1]/").unwrap();
        assert!(check_url(&c, "http://11.0.0.1/").is_ok());
        assert!(check_url(&c, "http://192.168.0.1/").is_err());
        assert!(check_url(&c, "http://[fe80::1]/").is_err());
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert_eq!(c.to_string(), "10.0.0.0/8");

        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(host.prefix(), 32);
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));

        let v6: Cidr = "::1/128".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()));
        assert!(!v6.contains("127.0.0.1".parse().unwrap()));
        let v6net: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6net.contains("fd12:3456::1".parse().unwrap()));
        let bracket: Cidr = "[::1]".parse().unwrap();
        assert_eq!(bracket, v6);

        let mapped: Cidr = "::ffff:127.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, "127.0.0.0/8".parse().unwrap());

        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains("2001:db8::1".parse().unwrap()));

        assert!("10.0.0.1/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn parse_allow_lists() {
        assert!(parse_allow("").unwrap().is_empty());
        assert!(parse_allow("  ").unwrap().is_empty());
        let v = parse_allow("10.0.0.0/8, 127.0.0.1 ,::1/128,").unwrap();
        assert_eq!(v.len(), 3);
        let err = parse_allow("10.0.0.0/8,bogus,127.0.0.1").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        let err = parse_allow("192.168.1.1/16").unwrap_err();
        assert!(err.contains("192.168.1.1/16"), "{err}");
    }

    #[test]
    fn defaults_and_debug_redacts_secret() {
        let d = WebhookConfig::default();
        assert!(d.secret.is_none());
        assert!(d.allow.is_empty());
        assert_eq!(d.max_attempts, 5);
        assert_eq!(d.timeout, Duration::from_millis(5000));
        assert_eq!(d.backoff, Duration::from_millis(500));
        let c = WebhookConfig {
            secret: Some("topsecret".into()),
            ..WebhookConfig::default()
        };
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(500);
        assert_eq!(retry_delay(b, 1, None), Duration::from_millis(500));
        assert_eq!(retry_delay(b, 2, None), Duration::from_millis(1000));
        assert_eq!(retry_delay(b, 3, None), Duration::from_millis(2000));
        assert_eq!(retry_delay(b, 10, None), MAX_BACKOFF);
        assert_eq!(retry_delay(b, 1000, None), MAX_BACKOFF);
        // Retry-After wins when longer, still capped
        assert_eq!(
            retry_delay(b, 1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(b, 1, Some(Duration::from_secs(3600))),
            MAX_BACKOFF
        );
        assert_eq!(
            retry_delay(b, 2, Some(Duration::ZERO)),
            Duration::from_millis(1000)
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("12"))),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
    }
}
