//! Delivery: an HTTP client pinned to the vetted addresses (its own resolver refuses every
//! lookup, so DNS rebinding between check and connect is impossible; no proxies, no
//! redirects), attempts with exponential backoff and `Retry-After`.

#![allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

/// Resolver installed in the delivery client: every name lookup fails. The
/// only names the client can reach are the ones pinned with
/// `resolve_to_addrs` after vetting, so a missed override can never fall
/// back to unvetted system DNS.
pub(crate) struct DenyResolver;

impl reqwest::dns::Resolve for DenyResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async {
            Err::<reqwest::dns::Addrs, _>(
                "webhook client does not resolve names; destinations must be pre-vetted".into(),
            )
        })
    }
}

/// Client builder for one attempt: no redirects, no proxies, and name
/// resolution limited to `pin` (host -> vetted addresses); any other name
/// lookup fails (see [`DenyResolver`]).
pub(crate) fn pinned_client(
    outbound: &crate::outbound::OutboundTls,
    timeout: Duration,
    pin: Option<(&str, &[SocketAddr])>,
) -> reqwest::ClientBuilder {
    let builder = outbound
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(0)
        .dns_resolver(Arc::new(DenyResolver));
    match pin {
        Some((host, addrs)) => builder.resolve_to_addrs(host, addrs),
        None => builder,
    }
}

pub(crate) enum AttemptError {
    /// Destination policy refusal: permanent, returned as-is.
    Refused(WebhookError),
    /// Not worth retrying.
    Permanent { status: Option<u16>, msg: String },
    /// Worth retrying (transport error, timeout, 408, 429, 5xx).
    Retryable {
        status: Option<u16>,
        msg: String,
        retry_after: Option<Duration>,
    },
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Delay before attempt `attempt + 1` (attempt is 1-based): `backoff * 2^(attempt-1)`,
/// or `Retry-After` if it is longer; both capped at [`MAX_BACKOFF`].
pub(crate) fn retry_delay(
    backoff: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let backoff = backoff.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    match retry_after {
        Some(ra) => ra.min(MAX_BACKOFF).max(backoff),
        None => backoff,
    }
}

pub(crate) fn parse_retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    // Only the delay-seconds form; an HTTP-date falls back to plain backoff.
    v?.to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Renders a reqwest error and its causes without the request URL (which may
/// carry tokens in its query string).
pub(crate) fn describe(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let err = err.without_url();
    let mut msg = kind.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

pub(crate) async fn attempt_once(
    cfg: &WebhookConfig,
    secret: &str,
    target: &Target,
    delivery_id: &str,
    body: &[u8],
    method: &reqwest::Method,
) -> Result<u16, AttemptError> {
    let started = Instant::now();

    // 1. Resolve and vet every address (re-done per attempt: DNS may change,
    //    and a change towards a refused range must be caught).
    let addrs: Vec<SocketAddr> = match target.ip {
        Some(ip) => vec![SocketAddr::new(ip, target.port)],
        None => {
            let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
            match tokio::time::timeout(cfg.timeout, lookup).await {
                Err(_) => {
                    return Err(AttemptError::Retryable {
                        status: None,
                        msg: "DNS resolution timed out".into(),
                        retry_after: None,
                    })
                }
                Ok(Err(e)) => {
                    return Err(AttemptError::Retryable {
                        status: None,
                        msg: format!("DNS resolution failed: {e}"),
                        retry_after: None,
                    })
                }
                Ok(Ok(it)) => it.collect(),
            }
        }
    };
    if addrs.is_empty() {
        return Err(AttemptError::Retryable {
            status: None,
            msg: "host resolved to no addresses".into(),
            retry_after: None,
        });
    }
    for a in &addrs {
        vet(cfg, &target.host, a.ip()).map_err(AttemptError::Refused)?;
    }

    let remaining = cfg.timeout.saturating_sub(started.elapsed());
    if remaining.is_zero() {
        return Err(AttemptError::Retryable {
            status: None,
            msg: "timed out".into(),
            retry_after: None,
        });
    }

    // 2. A client that can only reach the vetted addresses.
    let pin = target
        .ip
        .is_none()
        .then_some((target.host.as_str(), addrs.as_slice()));
    let builder = pinned_client(&cfg.outbound, remaining, pin);
    let client = builder.build().map_err(|e| AttemptError::Permanent {
        status: None,
        msg: format!("could not build HTTP client: {}", describe(e)),
    })?;

    // 3. Send, with a fresh timestamp/signature per attempt.
    let signature = sign(secret, unix_now(), body);
    let result = client
        .request(method.clone(), target.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(DELIVERY_HEADER, delivery_id)
        .header(EVENT_HEADER, EVENT_EXECUTION_COMPLETED)
        .body(body.to_vec())
        .send()
        .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            let status = e.status().map(|s| s.as_u16());
            let msg = describe(e);
            return Err(AttemptError::Retryable {
                status,
                msg,
                retry_after: None,
            });
        }
    };

    // 4. Classify the status. The response body is never read.
    let status = resp.status();
    let code = status.as_u16();
    if status.is_success() {
        Ok(code)
    } else if status.is_redirection() {
        Err(AttemptError::Permanent {
            status: Some(code),
            msg: format!("HTTP {code}: redirects are not followed"),
        })
    } else if status.is_server_error() || code == 408 || code == 429 {
        Err(AttemptError::Retryable {
            status: Some(code),
            msg: format!("HTTP {code}"),
            retry_after: parse_retry_after(resp.headers().get(RETRY_AFTER)),
        })
    } else {
        Err(AttemptError::Permanent {
            status: Some(code),
            msg: format!("HTTP {code}"),
        })
    }
}

/// POSTs `body` (the result JSON) to `url`, signed with `cfg.secret`, with
/// up to `cfg.max_attempts` attempts.
///
/// * The URL is re-checked ([`check_url`] rules); each attempt resolves the
///   host, refuses the delivery if any address is outside the policy, and
///   connects only to the vetted addresses.
/// * 2xx: delivered. Transport errors, timeouts, 408, 429 and 5xx: retried
///   after `cfg.backoff * 2^(n-1)` (or `Retry-After` seconds if longer),
///   capped at 30 s. 3xx (redirects are never followed) and other 4xx:
///   permanent failure, no retry. A policy refusal is never retried.
/// * `delivery_id` is sent as `X-IsoBox-Delivery` on every attempt.
pub async fn deliver(
    cfg: &WebhookConfig,
    url: &str,
    delivery_id: &str,
    body: &[u8],
) -> Result<Delivered, WebhookError> {
    deliver_with(cfg, url, delivery_id, body, reqwest::Method::POST).await
}

/// [`deliver`] with another HTTP method (the Judge0 compatible API's callbacks are PUTs).
pub async fn deliver_with(
    cfg: &WebhookConfig,
    url: &str,
    delivery_id: &str,
    body: &[u8],
    method: reqwest::Method,
) -> Result<Delivered, WebhookError> {
    let secret = cfg.secret.as_deref().ok_or(WebhookError::NoSecret)?;
    let target = parse_target(url)?;
    if let Some(ip) = target.ip {
        if let Err(e) = vet(cfg, &target.host, ip) {
            tracing::warn!(host = %target.host, delivery_id, error = %e, "webhook destination refused");
            return Err(e);
        }
    }
    let max_attempts = cfg.max_attempts.max(1);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (status, msg, retry_after) = match attempt_once(
            cfg,
            secret,
            &target,
            delivery_id,
            body,
            &method,
        )
        .await
        {
            Ok(status) => {
                tracing::info!(
                    host = %target.host, delivery_id, attempts = attempt, status,
                    "webhook delivered"
                );
                return Ok(Delivered {
                    attempts: attempt,
                    status,
                });
            }
            Err(AttemptError::Refused(e)) => {
                tracing::warn!(host = %target.host, delivery_id, error = %e, "webhook destination refused");
                return Err(e);
            }
            Err(AttemptError::Permanent { status, msg }) => {
                tracing::warn!(
                    host = %target.host, delivery_id, attempts = attempt, error = %msg,
                    "webhook delivery failed permanently"
                );
                return Err(WebhookError::Failed {
                    host: target.host,
                    attempts: attempt,
                    status,
                    last: msg,
                });
            }
            Err(AttemptError::Retryable {
                status,
                msg,
                retry_after,
            }) => (status, msg, retry_after),
        };
        if attempt >= max_attempts {
            tracing::warn!(
                host = %target.host, delivery_id, attempts = attempt, error = %msg,
                "webhook delivery failed, attempts exhausted"
            );
            return Err(WebhookError::Failed {
                host: target.host,
                attempts: attempt,
                status,
                last: msg,
            });
        }
        let delay = retry_delay(cfg.backoff, attempt, retry_after);
        tracing::debug!(
            host = %target.host, delivery_id, attempt, error = %msg, delay_ms = delay.as_millis() as u64,
            "webhook attempt failed, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}
