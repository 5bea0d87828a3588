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
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret: None,
            allow: Vec::new(),
            max_attempts: 5,
            timeout: Duration::from_millis(5000),
            backoff: Duration::from_millis(500),
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
            .finish()
    }
}

// ---------------------------------------------------------------------------
// CIDR
// ---------------------------------------------------------------------------

/// An IPv4 or IPv6 network, e.g. `10.0.0.0/8`, `127.0.0.1` (= `/32`),
/// `::1/128`. Host bits must be zero (`10.0.0.1/8` is rejected: it is almost
/// always a typo in an allow-list). IPv4-mapped IPv6 networks
/// (`::ffff:a.b.c.d/96+n`) are stored as the equivalent IPv4 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Builds a network; fails if the prefix is too long or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(format!("prefix length /{prefix} is longer than /{max}"));
        }
        // Normalise IPv4-mapped IPv6 networks to IPv4 so they match the
        // canonicalised addresses `contains` compares against.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let network = mask(addr, prefix);
        if network != addr {
            return Err(format!(
                "host bits are set (did you mean {network}/{prefix}?)"
            ));
        }
        Ok(Cidr { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies inside this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are treated as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.trim(), Some(p.trim())),
            None => (s, None),
        };
        // Tolerate "[::1]" as people copy it from URLs.
        let ip = ip
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(ip);
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let prefix = match prefix {
            None => match addr {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("{p:?} is not a prefix length"))?,
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a comma-separated list of networks (`ISOBOX_WEBHOOK_ALLOW`).
/// Whitespace around items and empty items are ignored, so `""` yields an
/// empty list. The error names the offending item.
pub fn parse_allow(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<Cidr>()
                .map_err(|e| format!("invalid network {item:?}: {e}"))
        })
        .collect()
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
// Destination policy
// ---------------------------------------------------------------------------

/// Refused IPv4 ranges: (network, prefix, reason).
const V4_BLOCKED: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified/\"this network\" (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
    (
        [100, 64, 0, 0],
        10,
        "carrier-grade NAT shared space (100.64.0.0/10)",
    ),
    ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
    (
        [169, 254, 0, 0],
        16,
        "link-local / cloud metadata (169.254.0.0/16)",
    ),
    ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (
        [192, 0, 2, 0],
        24,
        "documentation TEST-NET-1 (192.0.2.0/24)",
    ),
    ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
    ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
    ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
    (
        [198, 51, 100, 0],
        24,
        "documentation TEST-NET-2 (198.51.100.0/24)",
    ),
    (
        [203, 0, 113, 0],
        24,
        "documentation TEST-NET-3 (203.0.113.0/24)",
    ),
    ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
    ([255, 255, 255, 255], 32, "broadcast (255.255.255.255)"),
    ([240, 0, 0, 0], 4, "reserved (240.0.0.0/4)"),
];

/// Refused IPv6 ranges: (network, prefix, reason). Ranges that embed an IPv4
/// address (mapped, compatible, NAT64, 6to4) are handled in `v6_reason`.
const V6_BLOCKED: &[(u128, u8, &str)] = &[
    (0, 128, "unspecified (::)"),
    (1, 128, "loopback (::1)"),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        "discard-only (100::/64)",
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        32,
        "Teredo tunnelling (2001::/32)",
    ),
    (
        0x2001_0002_0000_0000_0000_0000_0000_0000,
        48,
        "benchmarking (2001:2::/48)",
    ),
    (
        0x2001_0010_0000_0000_0000_0000_0000_0000,
        28,
        "ORCHID (2001:10::/28)",
    ),
    (
        0x2001_0020_0000_0000_0000_0000_0000_0000,
        28,
        "ORCHIDv2 (2001:20::/28)",
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        "documentation (2001:db8::/32)",
    ),
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        "documentation (3fff::/20)",
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        "unique-local/private (fc00::/7)",
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        "link-local (fe80::/10)",
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        "site-local, deprecated (fec0::/10)",
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        "multicast (ff00::/8)",
    ),
];

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    mask(IpAddr::V4(ip), prefix) == IpAddr::V4(Ipv4Addr::from(net))
}

fn in_v6(ip: Ipv6Addr, net: u128, prefix: u8) -> bool {
    mask(IpAddr::V6(ip), prefix) == IpAddr::V6(Ipv6Addr::from(net))
}

fn v4_reason(ip: Ipv4Addr) -> Option<String> {
    V4_BLOCKED
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| (*reason).to_string())
}

fn v6_reason(ip: Ipv6Addr) -> Option<String> {
    if let Some((_, _, reason)) = V6_BLOCKED
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return Some((*reason).to_string());
    }
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let embedded = |what: &str, v4: Ipv4Addr| {
        v4_reason(v4).map(|r| format!("{what} embedding {v4}, which is {r}"))
    };
    // ::ffff:a.b.c.d (IPv4-mapped).
    if in_v6(ip, 0xffff_0000_0000, 96) {
        return embedded("IPv4-mapped IPv6 (::ffff:0:0/96)", low32);
    }
    // ::ffff:0:a.b.c.d (IPv4-translated, SIIT).
    if in_v6(ip, 0xffff_0000_0000_0000, 96) {
        return embedded("IPv4-translated IPv6 (::ffff:0:0:0/96)", low32);
    }
    // ::a.b.c.d (IPv4-compatible, deprecated; nothing legitimate uses it).
    if in_v6(ip, 0, 96) {
        return Some(format!(
            "IPv4-compatible IPv6 (::/96, deprecated) embedding {low32}"
        ));
    }
    // 64:ff9b::a.b.c.d (well-known NAT64 prefix).
    if in_v6(ip, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return embedded("NAT64 (64:ff9b::/96)", low32);
    }
    // 2002:AABB:CCDD::/48 (6to4).
    if in_v6(ip, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return embedded("6to4 (2002::/16)", v4);
    }
    None
}

/// Why `ip` is refused by the built-in policy (ignoring the allow-list), or
/// `None` if it is a normal public address.
pub fn blocked_reason(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Applies the destination policy to one address: allowed if inside
/// `cfg.allow`, otherwise refused if in a blocked range.
fn vet(cfg: &WebhookConfig, host: &str, ip: IpAddr) -> Result<(), WebhookError> {
    if cfg.allow.iter().any(|c| c.contains(ip)) {
        return Ok(());
    }
    match blocked_reason(ip) {
        None => Ok(()),
        Some(reason) => Err(WebhookError::DestinationRefused {
            host: host.to_string(),
            addr: ip,
            reason,
        }),
    }
}

// ---------------------------------------------------------------------------
// URL checks
// ---------------------------------------------------------------------------

/// A parsed, syntactically acceptable callback URL.
struct Target {
    url: Url,
    /// Host as it appears in the URL (IPv6 in brackets); safe to log.
    host: String,
    /// Set when the host is an IP literal.
    ip: Option<IpAddr>,
    port: u16,
}

fn parse_target(url: &str) -> Result<Target, WebhookError> {
    let bad = |m: &str| WebhookError::BadUrl(m.to_string());
    if url.len() > MAX_URL_LEN {
        return Err(bad("longer than 2048 bytes"));
    }
    let parsed = Url::parse(url)
        .map_err(|e| WebhookError::BadUrl(format!("not a valid absolute URL ({e})")))?;
    match parsed.scheme() {
        "http" | "https" => {}
        _ => return Err(bad("scheme must be http or https")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("credentials (user:pass@) are not allowed in the URL"));
    }
    // `reqwest::Url` does not re-export `url::Host`; the WHATWG parser has
    // already normalised IPv4 forms (`127.1`, `2130706433`, `0x7f000001`) to
    // dotted quads and IPv6 literals to bracketed canonical text.
    let host = match parsed.host_str() {
        None | Some("") => return Err(bad("missing host")),
        Some(h) => h.to_string(),
    };
    let ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => Some(IpAddr::V6(
            v6.parse().map_err(|_| bad("invalid IPv6 literal"))?,
        )),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    };
    let port = match parsed.port_or_known_default() {
        Some(0) | None => return Err(bad("invalid port")),
        Some(p) => p,
    };
    Ok(Target {
        url: parsed,
        host,
        ip,
        port,
    })
}

/// Validates a `callback_url` at submission time: a secret must be
/// configured; http or https only; a host; no userinfo; at most
/// [`MAX_URL_LEN`] bytes. If the host is an IP literal the destination
/// policy is applied now; hostnames are checked at delivery, after DNS.
pub fn check_url(cfg: &WebhookConfig, url: &str) -> Result<(), WebhookError> {
    if cfg.secret.is_none() {
        return Err(WebhookError::NoSecret);
    }
    let target = parse_target(url)?;
    if let Some(ip) = target.ip {
        vet(cfg, &target.host, ip)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

fn mac_for(secret: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// The `X-IsoBox-Signature` header value:
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = mac_for(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", to_hex(&tag))
}

/// Receiver-side check of an `X-IsoBox-Signature` header against the raw
/// body. Returns true if the header is well formed, its timestamp is within
/// `tolerance_secs` of `now` (either direction), and one of its `v1=`
/// signatures matches (compared in constant time). Several `v1=` entries are
/// accepted so a sender may sign with old and new secrets during rotation.
pub fn verify(secret: &str, header: &str, body: &[u8], now: u64, tolerance_secs: u64) -> bool {
    let mut timestamp: Option<u64> = None;
    let mut signatures: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return false;
        };
        match k.trim() {
            "t" => {
                if timestamp.is_some() {
                    return false;
                }
                match v.trim().parse() {
                    Ok(t) => timestamp = Some(t),
                    Err(_) => return false,
                }
            }
            "v1" => signatures.push(v.trim()),
            _ => {} // unknown schemes are ignored for forward compatibility
        }
    }
    let Some(t) = timestamp else { return false };
    if now.abs_diff(t) > tolerance_secs {
        return false;
    }
    let mac = mac_for(secret, t, body);
    signatures.iter().any(|sig| match from_hex(sig) {
        Some(bytes) if bytes.len() == 32 => mac.clone().verify_slice(&bytes).is_ok(),
        _ => false,
    })
}

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

/// Resolver installed in the delivery client: every name lookup fails. The
/// only names the client can reach are the ones pinned with
/// `resolve_to_addrs` after vetting, so a missed override can never fall
/// back to unvetted system DNS.
struct DenyResolver;

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
fn pinned_client(timeout: Duration, pin: Option<(&str, &[SocketAddr])>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
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

enum AttemptError {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Delay before attempt `attempt + 1` (attempt is 1-based): `backoff * 2^(attempt-1)`,
/// or `Retry-After` if it is longer; both capped at [`MAX_BACKOFF`].
fn retry_delay(backoff: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let backoff = backoff.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
    match retry_after {
        Some(ra) => ra.min(MAX_BACKOFF).max(backoff),
        None => backoff,
    }
}

fn parse_retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
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
fn describe(err: reqwest::Error) -> String {
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

async fn attempt_once(
    cfg: &WebhookConfig,
    secret: &str,
    target: &Target,
    delivery_id: &str,
    body: &[u8],
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
    let builder = pinned_client(remaining, pin);
    let client = builder.build().map_err(|e| AttemptError::Permanent {
        status: None,
        msg: format!("could not build HTTP client: {}", describe(e)),
    })?;

    // 3. Send, with a fresh timestamp/signature per attempt.
    let signature = sign(secret, unix_now(), body);
    let result = client
        .post(target.url.clone())
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
        let (status, msg, retry_after) = match attempt_once(cfg, secret, &target, delivery_id, body)
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
        let client = pinned_client(Duration::from_millis(300), None)
            .build()
            .unwrap();
        let err = client.post(url.as_str()).send().await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        // A pin for another name does not help either.
        let other = [rx.addr];
        let client = pinned_client(
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
