//! The destination policy of callbacks: which URLs are acceptable ([`check_url`], at
//! submission) and which addresses a host may resolve to (loopback, private, link-local and
//! cloud metadata, CGNAT, multicast, reserved and documentation ranges, and IPv6 forms
//! embedding such IPv4 addresses are refused unless the operator's allow-list holds them).

#![allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// CIDR
// ---------------------------------------------------------------------------

/// An IPv4 or IPv6 network, e.g. `10.0.0.0/8`, `127.0.0.1` (= `/32`),
/// `::1/128`. Host bits must be zero (`10.0.0.1/8` is rejected: it is almost
/// always a typo in an allow-list). IPv4-mapped IPv6 networks
/// (`::ffff:a.b.c.d/96+n`) are stored as the equivalent IPv4 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    /// Builds a network; fails if the prefix is too long or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let net = ipnet::IpNet::new(addr, prefix).map_err(|_| {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            format!("prefix length /{prefix} is longer than /{max}")
        })?;
        // Normalise IPv4-mapped IPv6 networks to IPv4 so they match the
        // canonicalised addresses `contains` compares against.
        let net = match net {
            ipnet::IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
                    .map(ipnet::IpNet::V4)
                    .unwrap_or(net),
                None => net,
            },
            _ => net,
        };
        if net.trunc() != net {
            return Err(format!("host bits are set (did you mean {}?)", net.trunc()));
        }
        Ok(Cidr(net))
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `ip` lies inside this network. IPv4-mapped IPv6 addresses
    /// (`::ffff:a.b.c.d`) are treated as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
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
        self.0.fmt(f)
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
// Destination policy
// ---------------------------------------------------------------------------

/// Refused IPv4 ranges: (network, prefix, reason).
pub(crate) const V4_BLOCKED: &[([u8; 4], u8, &str)] = &[
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
pub(crate) const V6_BLOCKED: &[(u128, u8, &str)] = &[
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

pub(crate) fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    ipnet::Ipv4Net::new(Ipv4Addr::from(net), prefix).is_ok_and(|n| n.contains(&ip))
}

pub(crate) fn in_v6(ip: Ipv6Addr, net: u128, prefix: u8) -> bool {
    ipnet::Ipv6Net::new(Ipv6Addr::from(net), prefix).is_ok_and(|n| n.contains(&ip))
}

pub(crate) fn v4_reason(ip: Ipv4Addr) -> Option<String> {
    V4_BLOCKED
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| (*reason).to_string())
}

pub(crate) fn v6_reason(ip: Ipv6Addr) -> Option<String> {
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
pub(crate) fn vet(cfg: &WebhookConfig, host: &str, ip: IpAddr) -> Result<(), WebhookError> {
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
pub(crate) struct Target {
    pub(crate) url: Url,
    /// Host as it appears in the URL (IPv6 in brackets); safe to log.
    pub(crate) host: String,
    /// Set when the host is an IP literal.
    pub(crate) ip: Option<IpAddr>,
    pub(crate) port: u16,
}

pub(crate) fn parse_target(url: &str) -> Result<Target, WebhookError> {
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
