//! Signing: `X-IsoBox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`
//! on every attempt, and [`verify`] for receivers.

#![allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

pub(crate) fn mac_for(secret: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-IsoBox-Signature` header value:
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = mac_for(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
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
    signatures.iter().any(|sig| match hex::decode(sig).ok() {
        Some(bytes) if bytes.len() == 32 => mac.clone().verify_slice(&bytes).is_ok(),
        _ => false,
    })
}
