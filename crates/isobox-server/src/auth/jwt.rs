//! JWT bearer tokens verified against the keys of a JWKS (`JWT_PUBLIC_KEY_URL`).
//!
//! The algorithm of a token comes from the key that verifies it (the JWK's `alg`, or its key
//! type and curve), never from the token header alone: a header whose `alg` differs from the
//! key's is refused, and `none` and the HMAC family are always refused (so an HS256 token
//! "signed" with the RSA public key as secret bounces). Each key carries its own
//! [`jsonwebtoken::Validation`] with exactly one algorithm (a `Validation` listing algorithms of
//! two families always fails).
//!
//! The JWKS is cached: it is fetched on first use, again when the cache is older than
//! `cache_ttl`, and when a token names an unknown `kid`, but never more than once per
//! `refetch_cooldown` (only one fetch runs at a time), so a flood of tokens with random kids
//! costs at most one fetch per cooldown. When a fetch fails the cached keys stay in use; with no
//! keys at all the request is refused as [`AuthError::Unavailable`] (fail closed).
//!
//! The JWKS cache is ours rather than a crate's: it refetches on an unknown `kid` at most once
//! per cooldown with a single fetch in flight, and gives every key exactly one algorithm taken
//! from the key, never from the token; both are the security properties of this module, so
//! they stay in code we test here.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{roles_from, AuthError, AuthMethod, Principal};

/// Longest bearer token looked at; longer ones are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Smallest RSA modulus accepted from the JWKS, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Settings of the `jwt` method.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `JWT_PUBLIC_KEY_URL`: where the JWKS is fetched.
    pub jwks_url: String,
    /// `JWT_ISSUER_URL`: when set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: when set, `aud` is required and must contain it; when unset, `aud` is
    /// not checked.
    pub audience: Option<String>,
    /// Claim holding the roles: an array of strings (`roles`) or a space-separated string
    /// (`scope`). A dotted path (`realm_access.roles`) is followed when no top-level claim has
    /// that exact name.
    pub roles_claim: String,
    /// Clock skew allowed for `exp` and `nbf`.
    pub leeway: Duration,
    /// Lifetime of the cached JWKS.
    pub cache_ttl: Duration,
    /// Minimum time between two JWKS fetches (unknown kids, expired cache, retries).
    pub refetch_cooldown: Duration,
    /// Timeout of one JWKS fetch.
    pub fetch_timeout: Duration,
    /// What the JWKS client trusts (system roots, `ISOBOX_CA_BUNDLE`).
    pub outbound: crate::outbound::OutboundTls,
}

/// One verification key from the JWKS, with the only algorithm it accepts.
struct KeyEntry {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

#[derive(Default)]
struct CacheState {
    keys: Arc<Vec<KeyEntry>>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Last fetch attempt, successful or not (the cooldown counts from here).
    last_attempt: Option<Instant>,
}

/// Verifies JWT bearer tokens against a cached JWKS.
pub struct JwtAuth {
    cfg: JwtConfig,
    client: reqwest::Client,
    state: Mutex<CacheState>,
    /// Held while a fetch runs, so that only one runs at a time.
    fetch_lock: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("jwks_url", &self.cfg.jwks_url)
            .field("keys", &self.snapshot().0.len())
            .field("fetches", &self.fetches())
            .finish()
    }
}

/// What the token header says, read before any key is looked up.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn invalid(reason: &str) -> AuthError {
    AuthError::Invalid(reason.to_string())
}

impl JwtAuth {
    pub fn new(cfg: JwtConfig) -> JwtAuth {
        let client = cfg
            .outbound
            .client_builder()
            .timeout(cfg.fetch_timeout)
            .connect_timeout(cfg.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        JwtAuth {
            cfg,
            client,
            state: Mutex::new(CacheState::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Validates a bearer token. Ok(Principal{ id: sub, roles: from roles_claim, method: AuthMethod::Jwt }).
    pub async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        let header = parse_header(token)?;
        let keys = self.keys_for(&header).await?;

        let candidates: Vec<&KeyEntry> = match &header.kid {
            Some(kid) => {
                let with_kid: Vec<&KeyEntry> = keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .collect();
                if with_kid.is_empty() {
                    return Err(invalid("unknown key"));
                }
                let with_alg: Vec<&KeyEntry> = with_kid
                    .into_iter()
                    .filter(|k| k.alg == header.alg)
                    .collect();
                if with_alg.is_empty() {
                    return Err(invalid("algorithm not allowed"));
                }
                with_alg
            }
            None => keys.iter().filter(|k| k.alg == header.alg).collect(),
        };
        if candidates.is_empty() {
            return Err(invalid("unknown key"));
        }

        let mut reason = "bad signature";
        for entry in candidates {
            match jsonwebtoken::decode::<Value>(token, &entry.key, &entry.validation) {
                Ok(data) => return self.principal(data.claims),
                Err(e) => {
                    let (r, after_signature) = error_reason(e.kind());
                    if after_signature {
                        // The signature verified: the claims are what is wrong.
                        return Err(invalid(r));
                    }
                    reason = r;
                }
            }
        }
        Err(invalid(reason))
    }

    /// Number of JWKS fetches so far (tests, metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> (Arc<Vec<KeyEntry>>, Option<Instant>, Option<Instant>) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.keys.clone(), st.fetched_at, st.last_attempt)
    }

    fn cooldown_over(&self, last_attempt: Option<Instant>) -> bool {
        last_attempt.is_none_or(|t| t.elapsed() >= self.cfg.refetch_cooldown)
    }

    fn is_stale(&self, fetched_at: Option<Instant>) -> bool {
        fetched_at.is_none_or(|t| t.elapsed() >= self.cfg.cache_ttl)
    }

    /// The key set to verify `header` with, fetching the JWKS when the cache is empty, stale, or
    /// lacks the token's key (within the cooldown).
    async fn keys_for(&self, header: &TokenHeader) -> Result<Arc<Vec<KeyEntry>>, AuthError> {
        let has_key = |keys: &[KeyEntry]| match &header.kid {
            Some(kid) => keys.iter().any(|k| k.kid.as_deref() == Some(kid.as_str())),
            None => keys.iter().any(|k| k.alg == header.alg),
        };

        let (keys, fetched_at, last_attempt) = self.snapshot();
        if has_key(&keys) {
            if self.is_stale(fetched_at) && self.cooldown_over(last_attempt) {
                // Refresh in this request unless another one is already refreshing; either
                // way the cached keys remain usable if the refresh fails.
                if let Ok(_guard) = self.fetch_lock.try_lock() {
                    let (_, fetched_at, last_attempt) = self.snapshot();
                    if self.is_stale(fetched_at) && self.cooldown_over(last_attempt) {
                        self.refresh().await;
                    }
                }
                return Ok(self.snapshot().0);
            }
            return Ok(keys);
        }

        // Empty cache or unknown key: wait for any running fetch, then fetch if still needed
        // and the cooldown allows it.
        {
            let _guard = self.fetch_lock.lock().await;
            let (keys, _, last_attempt) = self.snapshot();
            if !has_key(&keys) && self.cooldown_over(last_attempt) {
                self.refresh().await;
            }
        }
        let (keys, _, _) = self.snapshot();
        if keys.is_empty() {
            return Err(AuthError::Unavailable("jwks unavailable".to_string()));
        }
        Ok(keys)
    }

    /// Fetches the JWKS once; on success replaces the cached keys, on failure keeps them.
    /// Call with `fetch_lock` held.
    async fn refresh(&self) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.last_attempt = Some(Instant::now());
        }
        let result = match tokio::time::timeout(self.cfg.fetch_timeout, self.fetch_jwks()).await {
            Ok(r) => r,
            Err(_) => Err("timeout".to_string()),
        };
        // The cooldown runs from the end of the attempt, so a slow provider is not asked again
        // as soon as it answers.
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "JWKS fetched");
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.keys = Arc::new(keys);
                st.fetched_at = Some(Instant::now());
            }
            Err(reason) => {
                tracing::warn!(url = %self.cfg.jwks_url, %reason, "JWKS fetch failed");
            }
        }
    }

    async fn fetch_jwks(&self) -> Result<Vec<KeyEntry>, String> {
        let mut resp = self
            .client
            .get(&self.cfg.jwks_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status().as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("document too large".to_string());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("read failed: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("document too large".to_string());
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|_| "not JSON".to_string())?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| "no keys array".to_string())?;
        let keys: Vec<KeyEntry> = list.iter().filter_map(|k| self.key_entry(k)).collect();
        if keys.is_empty() {
            return Err("no usable keys".to_string());
        }
        Ok(keys)
    }

    /// A usable signature-verification key, or None (unsupported or unsafe keys are skipped).
    fn key_entry(&self, value: &Value) -> Option<KeyEntry> {
        let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
        if let Some(usage) = &jwk.common.public_key_use {
            if *usage != PublicKeyUse::Signature {
                return None;
            }
        }
        if let Some(ops) = &jwk.common.key_operations {
            if !ops.contains(&KeyOperations::Verify) {
                return None;
            }
        }
        let declared = jwk.common.key_algorithm;
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                let n = URL_SAFE_NO_PAD.decode(&p.n).ok()?;
                let significant = n.iter().skip_while(|b| **b == 0).count();
                if significant < MIN_RSA_MODULUS_BYTES {
                    return None;
                }
                match declared {
                    None => Algorithm::RS256,
                    Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                    Some(KeyAlgorithm::RS384) => Algorithm::RS384,
                    Some(KeyAlgorithm::RS512) => Algorithm::RS512,
                    Some(KeyAlgorithm::PS256) => Algorithm::PS256,
                    Some(KeyAlgorithm::PS384) => Algorithm::PS384,
                    Some(KeyAlgorithm::PS512) => Algorithm::PS512,
                    Some(_) => return None,
                }
            }
            AlgorithmParameters::EllipticCurve(p) => {
                let (alg, len) = match p.curve {
                    EllipticCurve::P256 => (Algorithm::ES256, 32),
                    EllipticCurve::P384 => (Algorithm::ES384, 48),
                    _ => return None,
                };
                let x = URL_SAFE_NO_PAD.decode(&p.x).ok()?;
                let y = URL_SAFE_NO_PAD.decode(&p.y).ok()?;
                if x.len() != len || y.len() != len {
                    return None;
                }
                match declared {
                    None => alg,
                    Some(KeyAlgorithm::ES256) if alg == Algorithm::ES256 => alg,
                    Some(KeyAlgorithm::ES384) if alg == Algorithm::ES384 => alg,
                    Some(_) => return None,
                }
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return None;
                }
                if URL_SAFE_NO_PAD.decode(&p.x).ok()?.len() != 32 {
                    return None;
                }
                match declared {
                    None | Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
                    Some(_) => return None,
                }
            }
            // Symmetric keys never verify anything here.
            AlgorithmParameters::OctetKey(_) => return None,
        };
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        Some(KeyEntry {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
            validation: self.validation(alg),
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.cfg.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.cfg.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.validate_aud = true;
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn principal(&self, claims: Value) -> Result<Principal, AuthError> {
        let obj = claims
            .as_object()
            .ok_or_else(|| invalid("malformed token"))?;
        // A token issued in the future (beyond the clock leeway) was minted by a clock or a
        // signer that is wrong; `exp` alone would let it live longer than its issuer meant.
        match obj.get("iat") {
            None => {}
            Some(v) => {
                let iat = v.as_f64().ok_or_else(|| invalid("malformed iat"))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                if iat > now + self.cfg.leeway.as_secs_f64() {
                    return Err(invalid("issued in the future"));
                }
            }
        }
        let sub = match obj.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(invalid("missing sub")),
        };
        if sub.len() > 512 || sub.chars().any(char::is_control) {
            return Err(invalid("malformed claim"));
        }
        Ok(Principal {
            id: sub.clone(),
            roles: claims
                .as_object()
                .map(|c| roles_from(c, &self.cfg.roles_claim))
                .unwrap_or_default(),
            method: AuthMethod::Jwt,
        })
    }
}

/// Maps a jsonwebtoken error to a short reason, and whether it arose after the signature was
/// verified (a claim check).
fn error_reason(kind: &ErrorKind) -> (&'static str, bool) {
    match kind {
        ErrorKind::ExpiredSignature => ("expired", true),
        ErrorKind::ImmatureSignature => ("not yet valid", true),
        ErrorKind::InvalidIssuer => ("wrong issuer", true),
        ErrorKind::InvalidAudience => ("wrong audience", true),
        ErrorKind::InvalidSubject => ("wrong subject", true),
        ErrorKind::MissingRequiredClaim(c) => (
            match c.as_str() {
                "exp" => "missing exp",
                "sub" => "missing sub",
                "iss" => "missing issuer",
                "aud" => "missing audience",
                _ => "missing claim",
            },
            true,
        ),
        ErrorKind::InvalidClaimFormat(_) => ("malformed claim", true),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            ("algorithm not allowed", false)
        }
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => ("malformed token", false),
        _ => ("bad signature", false),
    }
}

fn b64url_part(part: &str) -> bool {
    part.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads and checks the header: three parts, a JSON object, an asymmetric `alg`, no `crit`.
fn parse_header(token: &str) -> Result<TokenHeader, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid("token too large"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts[0].is_empty() || parts[1].is_empty() {
        return Err(invalid("malformed token"));
    }
    if !parts.iter().all(|p| b64url_part(p)) {
        return Err(invalid("malformed token"));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(parts[0])
        .map_err(|_| invalid("malformed token"))?;
    let header: Value = serde_json::from_slice(&raw).map_err(|_| invalid("malformed token"))?;
    let obj = header
        .as_object()
        .ok_or_else(|| invalid("malformed token"))?;
    let alg = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("malformed token"))?;
    let alg = match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "EdDSA" => {
            Algorithm::from_str(alg).map_err(|_| invalid("algorithm not allowed"))?
        }
        // none, HS*, and anything unknown.
        _ => return Err(invalid("algorithm not allowed")),
    };
    if obj.contains_key("crit") {
        return Err(invalid("unsupported critical header"));
    }
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(invalid("malformed token")),
    };
    if parts[2].is_empty() {
        return Err(invalid("bad signature"));
    }
    Ok(TokenHeader { alg, kid })
}

/// Whether a bearer token looks like a JWT (three base64url parts) — used to pick jwt vs oauth2.
///
/// The header part must decode to a JSON object; the signature part may be empty (so that an
/// unsigned `alg: none` token is still judged, and refused, as a JWT).
pub fn looks_like_jwt(token: &str) -> bool {
    if token.len() > MAX_TOKEN_LEN {
        return false;
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts[0].is_empty() || parts[1].is_empty() {
        return false;
    }
    if !parts.iter().all(|p| b64url_part(p)) {
        return false;
    }
    URL_SAFE_NO_PAD
        .decode(parts[0])
        .ok()
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .is_some_and(|v| v.is_object())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU8, AtomicUsize};

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    /// A fixed 2048-bit test key (`openssl genrsa -traditional 2048`); used only by these tests.
    const RSA_PRIVATE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
MIIEoQIBAAKCAQEAnaljELzD5a9WqfiLnP1oE9mPR530Gfna1UgWGNdWa/sVBjx8\n\
Q695FM/neEykVahnikGFE6aOuRf9l7SVc38zDOQJghfozVh3WZ92PKpBPEVep85N\n\
EbSl/8YVtrLvnnI7dQc+09DxNNUQAYvMfRg6quSkRiXrf58kRbGJ+fQAhJBwav6j\n\
2Xw7KCwqUIyfdYmrky7gxPha2NyKMvO1h4qad75paqNvX9EOat3sjQIert1VqV9j\n\
n7FI9MO9wpM6+QChUnSU579v0zJPZv25TfkWBol9FuflHQYjZN8A5MRUJVAr6pze\n\
wten0wN4H4QNDsnjwhJMYPXYVP3+mYX3v9NBuQIDAQABAoH/QnZeGgZ/NSdqt4+m\n\
6/VYcILARghZBXCY9kQurT49aNacPt4RAWWnB4E4A87mEqcd7OvzYBy7wFc1/km/\n\
1JQm4j9XBEH4MhVvZFWcAlwWpwFVyvZ3LW27YvySJMjMt5BwOKbMVXKqd4ZIBnaj\n\
9gwr5LrvFCwjoHx41uhjFS4dgNXWTYUBjp4szlxejSUCfvZ9LwK5HIyw0ThUkCWf\n\
gZdav61TNj+0aZf8qMR0EM+wHGKeEdZ9gpURDnCjcyRqHJGZodRX/7E7eAIfTnAL\n\
/m/o/s/lrWiag9CUgowH+VzOww1rOpvGxQQULVowjqxD72QXI2NZi/DXgIuqccMU\n\
jcQBAoGBAN7pVAdsudHZJyEYgUuosyyRAsLYuragxETlMFfLN2rYBD+5CBuC6ZqE\n\
qoSw1vvnrym6daoN26N3wCzWreDwq08+KoNo0dm5GIOR25hfh9nN3YWYF8KoAO8J\n\
hItz25D90ShW/y9qz73TJDAjXvK/wX21ArUgKnnt+eAHSZI/eiy5AoGBALUQjnz2\n\
r1o1OiGeJudQHceCIb8FxT2tV5w8jMdY2RMRmUYswZAGgkSLrRWBnoyiUjSQPjVB\n\
SO2JqK+bdZNMzpkuYnQ1uCk8JaJRa0TXcsJhfejRhuWKrH36grAdo7AFC6xhbqub\n\
G/7kEPGIZpCMzpQvAwOBsrK4yq3Oph6iuT0BAoGAW3fK7zECHsXIdKAljfIvc34d\n\
b+6WzxGw98RDzgKpPsJdG/jFBuT1Dl6ZydD2pm8vRSQp3BnLoowk40FEICUhZmbP\n\
8xQz5+83y+UyAphQmmMLHyKFvW5K08tIBCEKW7iK9s6b780YaYAWPVqGP33H29lG\n\
vyPvyhCIlBDpc4VwkKECgYEAsFqn7d73fA1LyWKY0cOevatp4vxj2Gb1Zh8znxZS\n\
l9gUSd1dykIMr2a79q6BFski+D9l18j2lyX1PtVT91xf/aLIEhggf0kt/qL+r9aI\n\
1/rM/+7UTM58o1dT4uV7gP3pGMTtXgd9hQ3t0tLf0vrSWlJPxSKWQqzp+8/CzSQA\n\
+AECgYBBZUsYRMFfnXYXVNkQ6t4vSOfwj5QugxqMq/INv+KyRRYWm/LNs24gS1xT\n\
y634ttHqehvZrt3zPeO17fpaAn0d0w0/gcnTJG50hQ5kzWu7UBpGg55bEpWfgu1P\n\
zWRAIjdsoCR6KmUDTSo1v0Js7ZA2xy6fUHEStUV7cSfyZmKRvw==\n\
-----END RSA PRIVATE KEY-----";
    /// Its public half (`openssl rsa -pubout`), the "secret" of the HS256 confusion attack.
    const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnaljELzD5a9WqfiLnP1o\n\
E9mPR530Gfna1UgWGNdWa/sVBjx8Q695FM/neEykVahnikGFE6aOuRf9l7SVc38z\n\
DOQJghfozVh3WZ92PKpBPEVep85NEbSl/8YVtrLvnnI7dQc+09DxNNUQAYvMfRg6\n\
quSkRiXrf58kRbGJ+fQAhJBwav6j2Xw7KCwqUIyfdYmrky7gxPha2NyKMvO1h4qa\n\
d75paqNvX9EOat3sjQIert1VqV9jn7FI9MO9wpM6+QChUnSU579v0zJPZv25TfkW\n\
Bol9FuflHQYjZN8A5MRUJVAr6pzewten0wN4H4QNDsnjwhJMYPXYVP3+mYX3v9NB\n\
uQIDAQAB\n\
-----END PUBLIC KEY-----";
    /// Its modulus and exponent, base64url.
    const RSA_N: &str = "naljELzD5a9WqfiLnP1oE9mPR530Gfna1UgWGNdWa_sVBjx8Q695FM_neEykVahnikGFE6aOuRf9l7SVc38zDOQJghfozVh3WZ92PKpBPEVep85NEbSl_8YVtrLvnnI7dQc-09DxNNUQAYvMfRg6quSkRiXrf58kRbGJ-fQAhJBwav6j2Xw7KCwqUIyfdYmrky7gxPha2NyKMvO1h4qad75paqNvX9EOat3sjQIert1VqV9jn7FI9MO9wpM6-QChUnSU579v0zJPZv25TfkWBol9FuflHQYjZN8A5MRUJVAr6pzewten0wN4H4QNDsnjwhJMYPXYVP3-mYX3v9NBuQ";
    const RSA_E: &str = "AQAB";

    const ISSUER: &str = "https://idp.test";
    const AUDIENCE: &str = "isobox";

    const MODE_OK: u8 = 0;
    const MODE_500: u8 = 1;
    const MODE_GARBAGE: u8 = 2;
    const MODE_HANG: u8 = 3;

    /// A JWKS server on loopback: counts requests, and can fail in several ways.
    struct JwksServer {
        url: String,
        body: Arc<Mutex<String>>,
        mode: Arc<AtomicU8>,
        hits: Arc<AtomicUsize>,
    }

    #[derive(Clone)]
    struct ServerState {
        body: Arc<Mutex<String>>,
        mode: Arc<AtomicU8>,
        hits: Arc<AtomicUsize>,
    }

    async fn jwks_handler(State(st): State<ServerState>) -> axum::response::Response {
        st.hits.fetch_add(1, Ordering::SeqCst);
        match st.mode.load(Ordering::SeqCst) {
            MODE_500 => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
            MODE_GARBAGE => (StatusCode::OK, "<html>not a jwks").into_response(),
            MODE_HANG => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                (StatusCode::OK, "{}").into_response()
            }
            _ => {
                let body = st.body.lock().unwrap().clone();
                (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }
        }
    }

    impl JwksServer {
        async fn start(jwks: Value) -> JwksServer {
            let body = Arc::new(Mutex::new(jwks.to_string()));
            let mode = Arc::new(AtomicU8::new(MODE_OK));
            let hits = Arc::new(AtomicUsize::new(0));
            let state = ServerState {
                body: body.clone(),
                mode: mode.clone(),
                hits: hits.clone(),
            };
            let app = axum::Router::new()
                .route("/jwks.json", get(jwks_handler))
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            JwksServer {
                url: format!("http://{addr}/jwks.json"),
                body,
                mode,
                hits,
            }
        }

        fn set_jwks(&self, jwks: Value) {
            *self.body.lock().unwrap() = jwks.to_string();
        }

        fn set_mode(&self, mode: u8) {
            self.mode.store(mode, Ordering::SeqCst);
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// Test keys: RSA (fixed), EC P-256, EC P-384 and Ed25519 (generated), and a second P-256
    /// key that is not on the JWKS.
    struct Keys {
        es256_pem: String,
        es256_jwk: Value,
        es384_pem: String,
        es384_jwk: Value,
        ed_pem: String,
        ed_jwk: Value,
        other_es256_pem: String,
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec_jwk(kp: &rcgen::KeyPair, kid: &str, crv: &str) -> Value {
        let raw = kp.public_key_raw();
        assert_eq!(raw[0], 0x04, "uncompressed point");
        let half = (raw.len() - 1) / 2;
        json!({"kty": "EC", "crv": crv, "kid": kid, "use": "sig",
               "x": b64(&raw[1..1 + half]), "y": b64(&raw[1 + half..])})
    }

    fn keys() -> Keys {
        let es256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let es384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Keys {
            es256_pem: es256.serialize_pem(),
            es256_jwk: ec_jwk(&es256, "ec1", "P-256"),
            es384_pem: es384.serialize_pem(),
            es384_jwk: ec_jwk(&es384, "ec384", "P-384"),
            ed_pem: ed.serialize_pem(),
            ed_jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed1",
                           "x": b64(ed.public_key_raw())}),
            other_es256_pem: other.serialize_pem(),
        }
    }

    fn rsa_jwk(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": RSA_N, "e": RSA_E})
    }

    fn jwks(keys: &Keys) -> Value {
        json!({"keys": [
            rsa_jwk("rsa1"),
            keys.es256_jwk,
            keys.es384_jwk,
            keys.ed_jwk,
            // Keys that must never verify anything: a symmetric key, an encryption key.
            {"kty": "oct", "kid": "hmac1", "k": b64(RSA_PUBLIC_PEM.as_bytes())},
            {"kty": "RSA", "kid": "enc1", "use": "enc", "alg": "RSA-OAEP", "n": RSA_N, "e": RSA_E},
        ]})
    }

    fn cfg(url: &str) -> JwtConfig {
        JwtConfig {
            jwks_url: url.to_string(),
            issuer: Some(ISSUER.to_string()),
            audience: Some(AUDIENCE.to_string()),
            roles_claim: "roles".to_string(),
            leeway: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(300),
            refetch_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_millis(500),
            outbound: Default::default(),
        }
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims() -> Value {
        json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE,
               "iat": now(), "exp": now() + 600, "roles": ["runner", "admin"]})
    }

    fn header(alg: Algorithm, kid: Option<&str>) -> Header {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        h
    }

    fn rsa_token(kid: Option<&str>, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        encode(&header(Algorithm::RS256, kid), claims, &key).unwrap()
    }

    fn ec_token(pem: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        encode(&header(alg, kid), claims, &key).unwrap()
    }

    fn ed_token(pem: &str, kid: Option<&str>, claims: &Value) -> String {
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        encode(&header(Algorithm::EdDSA, kid), claims, &key).unwrap()
    }

    async fn setup() -> (JwksServer, JwtAuth, Keys) {
        let k = keys();
        let server = JwksServer::start(jwks(&k)).await;
        let auth = JwtAuth::new(cfg(&server.url));
        (server, auth, k)
    }

    /// Asserts an `Invalid` refusal with `reason`, and that the reason leaks nothing of the token.
    async fn refused(auth: &JwtAuth, token: &str, reason: &str) {
        match auth.check(token).await {
            Err(AuthError::Invalid(r)) => {
                assert_eq!(r, reason, "token refused for another reason");
                assert!(r.len() < 40);
                for part in token.split('.').filter(|p| p.len() >= 8) {
                    assert!(!r.contains(part), "reason leaks the token");
                }
            }
            other => panic!("expected Invalid({reason}), got {other:?}"),
        }
    }

    #[tokio::test]
    async fn jwt_valid_rs256_accepted_with_roles_array() {
        let (server, auth, _) = setup().await;
        let p = auth
            .check(&rsa_token(Some("rsa1"), &claims()))
            .await
            .unwrap();
        assert_eq!(
            p,
            Principal {
                id: "alice".into(),
                roles: vec!["runner".into(), "admin".into()],
                method: AuthMethod::Jwt
            }
        );
        // Served from the cache afterwards.
        auth.check(&rsa_token(Some("rsa1"), &claims()))
            .await
            .unwrap();
        assert_eq!(auth.fetches(), 1);
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn jwt_valid_es256_es384_eddsa_accepted() {
        let (_server, auth, k) = setup().await;
        let t = ec_token(&k.es256_pem, Algorithm::ES256, Some("ec1"), &claims());
        assert_eq!(auth.check(&t).await.unwrap().id, "alice");
        let t = ec_token(&k.es384_pem, Algorithm::ES384, Some("ec384"), &claims());
        assert_eq!(auth.check(&t).await.unwrap().id, "alice");
        let t = ed_token(&k.ed_pem, Some("ed1"), &claims());
        assert_eq!(auth.check(&t).await.unwrap().id, "alice");
        assert_eq!(auth.fetches(), 1);
    }

    #[tokio::test]
    async fn jwt_roles_from_scope_string_and_nested_claim() {
        let k = keys();
        let server = JwksServer::start(jwks(&k)).await;
        let mut c = cfg(&server.url);
        c.roles_claim = "scope".into();
        let auth = JwtAuth::new(c);
        let mut cl = claims();
        cl["scope"] = json!("exec:python  exec:rust exec:python");
        let p = auth.check(&rsa_token(Some("rsa1"), &cl)).await.unwrap();
        assert_eq!(p.roles, vec!["exec:python", "exec:rust"]);

        let mut c = cfg(&server.url);
        c.roles_claim = "realm_access.roles".into();
        let auth = JwtAuth::new(c);
        let mut cl = claims();
        cl["realm_access"] = json!({"roles": ["ops", 7, "dev"]});
        let p = auth.check(&rsa_token(Some("rsa1"), &cl)).await.unwrap();
        assert_eq!(p.roles, vec!["ops", "dev"]);

        // No roles claim: admitted with no roles.
        let mut cl = claims();
        cl.as_object_mut().unwrap().remove("roles");
        let p = auth.check(&rsa_token(Some("rsa1"), &cl)).await.unwrap();
        assert!(p.roles.is_empty());
    }

    #[tokio::test]
    async fn jwt_without_kid_tries_keys_of_matching_type() {
        let (_server, auth, k) = setup().await;
        assert!(auth.check(&rsa_token(None, &claims())).await.is_ok());
        let t = ec_token(&k.es256_pem, Algorithm::ES256, None, &claims());
        assert!(auth.check(&t).await.is_ok());
        let t = ed_token(&k.ed_pem, None, &claims());
        assert!(auth.check(&t).await.is_ok());
        // No kid and signed by a key that is not on the JWKS.
        let t = ec_token(&k.other_es256_pem, Algorithm::ES256, None, &claims());
        refused(&auth, &t, "bad signature").await;
    }

    #[tokio::test]
    async fn jwt_audience_and_issuer_not_checked_when_unset() {
        let (server, _, _) = setup().await;
        let mut c = cfg(&server.url);
        c.issuer = None;
        c.audience = None;
        let auth = JwtAuth::new(c);
        let mut cl = claims();
        cl["aud"] = json!("someone-else");
        cl["iss"] = json!("https://other.test");
        assert!(auth.check(&rsa_token(Some("rsa1"), &cl)).await.is_ok());
    }

    #[tokio::test]
    async fn jwt_alg_none_refused() {
        let (_server, auth, _) = setup().await;
        let payload = b64(claims().to_string().as_bytes());
        for h in [
            json!({"alg": "none", "typ": "JWT"}),
            json!({"alg": "none", "kid": "rsa1"}),
            json!({"alg": "None", "kid": "rsa1"}),
            json!({"alg": "NONE"}),
        ] {
            let t = format!("{}.{}.", b64(h.to_string().as_bytes()), payload);
            assert!(looks_like_jwt(&t));
            refused(&auth, &t, "algorithm not allowed").await;
            // With the signature of a real token glued on.
            let real = rsa_token(Some("rsa1"), &claims());
            let sig = real.rsplit('.').next().unwrap();
            let t = format!("{}.{}.{}", b64(h.to_string().as_bytes()), payload, sig);
            refused(&auth, &t, "algorithm not allowed").await;
        }
    }

    #[tokio::test]
    async fn jwt_hs256_with_rsa_public_key_as_secret_refused() {
        let (_server, auth, _) = setup().await;
        for secret in [
            RSA_PUBLIC_PEM.as_bytes().to_vec(),
            format!("{RSA_PUBLIC_PEM}\n").into_bytes(),
            URL_SAFE_NO_PAD.decode(RSA_N).unwrap(),
        ] {
            let key = EncodingKey::from_secret(&secret);
            for (alg, kid) in [
                (Algorithm::HS256, Some("rsa1")),
                (Algorithm::HS256, None),
                (Algorithm::HS384, Some("rsa1")),
                (Algorithm::HS512, Some("rsa1")),
                // The JWKS also publishes a symmetric key: it must not be usable either.
                (Algorithm::HS256, Some("hmac1")),
            ] {
                let t = encode(&header(alg, kid), &claims(), &key).unwrap();
                refused(&auth, &t, "algorithm not allowed").await;
            }
        }
    }

    #[tokio::test]
    async fn jwt_header_alg_must_match_key_alg() {
        let (_server, auth, k) = setup().await;
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        // The right key, but an algorithm the JWK does not declare.
        for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
            let t = encode(&header(alg, Some("rsa1")), &claims(), &rsa).unwrap();
            refused(&auth, &t, "algorithm not allowed").await;
        }
        // An EC-signed token naming the RSA key, and the other way round.
        let t = ec_token(&k.es256_pem, Algorithm::ES256, Some("rsa1"), &claims());
        refused(&auth, &t, "algorithm not allowed").await;
        let t = rsa_token(Some("ec1"), &claims());
        refused(&auth, &t, "algorithm not allowed").await;
        // ES384 header on the P-256 key.
        let t = ec_token(&k.es384_pem, Algorithm::ES384, Some("ec1"), &claims());
        refused(&auth, &t, "algorithm not allowed").await;
        // The RSA encryption key (use=enc) is not a verification key.
        let t = rsa_token(Some("enc1"), &claims());
        refused(&auth, &t, "unknown key").await;
    }

    #[tokio::test]
    async fn jwt_rsa_jwk_declaring_ps256_only_accepts_ps256() {
        let k = keys();
        let mut jwk = rsa_jwk("rsa-ps");
        jwk["alg"] = json!("PS256");
        let server = JwksServer::start(json!({"keys": [jwk, k.es256_jwk]})).await;
        let auth = JwtAuth::new(cfg(&server.url));
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        let t = encode(&header(Algorithm::PS256, Some("rsa-ps")), &claims(), &rsa).unwrap();
        assert!(auth.check(&t).await.is_ok());
        let t = encode(&header(Algorithm::RS256, Some("rsa-ps")), &claims(), &rsa).unwrap();
        refused(&auth, &t, "algorithm not allowed").await;
    }

    #[tokio::test]
    async fn jwt_expired_and_not_yet_valid_with_leeway() {
        let (_server, auth, _) = setup().await;
        let mut cl = claims();
        cl["exp"] = json!(now() - 120);
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "expired").await;
        // Within the 30 s leeway.
        cl["exp"] = json!(now() - 5);
        assert!(auth.check(&rsa_token(Some("rsa1"), &cl)).await.is_ok());

        let mut cl = claims();
        cl["nbf"] = json!(now() + 300);
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "not yet valid").await;
        cl["nbf"] = json!(now() + 5);
        assert!(auth.check(&rsa_token(Some("rsa1"), &cl)).await.is_ok());

        let mut cl = claims();
        cl["iat"] = json!(now() + 3600);
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "issued in the future").await;
        cl["iat"] = json!("yesterday");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "malformed iat").await;
        cl["iat"] = json!(now() + 5);
        assert!(auth.check(&rsa_token(Some("rsa1"), &cl)).await.is_ok());

        let mut cl = claims();
        cl.as_object_mut().unwrap().remove("exp");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing exp").await;
        cl["exp"] = json!("tomorrow");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing exp").await;
    }

    #[tokio::test]
    async fn jwt_wrong_issuer_and_audience_refused() {
        let (_server, auth, _) = setup().await;
        let mut cl = claims();
        cl["iss"] = json!("https://evil.test");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "wrong issuer").await;
        cl.as_object_mut().unwrap().remove("iss");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing issuer").await;
        // Type confusion: a number where the issuer should be.
        cl["iss"] = json!(42);
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing issuer").await;

        let mut cl = claims();
        cl["aud"] = json!("other-service");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "wrong audience").await;
        cl["aud"] = json!(["other-service", "third"]);
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "wrong audience").await;
        cl["aud"] = json!(["other-service", AUDIENCE]);
        assert!(auth.check(&rsa_token(Some("rsa1"), &cl)).await.is_ok());
        cl.as_object_mut().unwrap().remove("aud");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing audience").await;
    }

    #[tokio::test]
    async fn jwt_missing_or_bad_sub_refused() {
        let (_server, auth, _) = setup().await;
        let mut cl = claims();
        cl.as_object_mut().unwrap().remove("sub");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing sub").await;
        cl["sub"] = json!(12345);
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing sub").await;
        cl["sub"] = json!("");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "missing sub").await;
        cl["sub"] = json!("alice\nadmin");
        refused(&auth, &rsa_token(Some("rsa1"), &cl), "malformed claim").await;
    }

    #[tokio::test]
    async fn jwt_tampered_payload_refused() {
        let (_server, auth, k) = setup().await;
        for t in [
            rsa_token(Some("rsa1"), &claims()),
            ec_token(&k.es256_pem, Algorithm::ES256, Some("ec1"), &claims()),
            ed_token(&k.ed_pem, Some("ed1"), &claims()),
        ] {
            let parts: Vec<&str> = t.split('.').collect();
            let mut cl = claims();
            cl["sub"] = json!("root");
            cl["roles"] = json!(["admin", "superuser"]);
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                b64(cl.to_string().as_bytes()),
                parts[2]
            );
            refused(&auth, &forged, "bad signature").await;
            // Header swapped for another valid-looking one.
            let h = b64(json!({"alg": "RS256", "kid": "rsa1", "typ": "JWT"})
                .to_string()
                .as_bytes());
            if h != parts[0] {
                let forged = format!("{}.{}.{}", h, parts[1], parts[2]);
                assert!(auth.check(&forged).await.is_err());
            }
        }
    }

    #[tokio::test]
    async fn jwt_truncated_garbage_and_oversized_refused() {
        let (_server, auth, _) = setup().await;
        let t = rsa_token(Some("rsa1"), &claims());
        let (head, _) = t.rsplit_once('.').unwrap();
        refused(&auth, head, "malformed token").await;
        refused(&auth, &format!("{head}."), "bad signature").await;
        refused(&auth, &t[..t.len() - 10], "bad signature").await;
        let cut = t.find('.').unwrap() + 1 + (t.len() - t.find('.').unwrap()) / 4;
        refused(&auth, &t[..cut], "malformed token").await;
        for g in [
            "",
            ".",
            "..",
            "garbage",
            "a.b.c",
            "eyJ.eyJ.eyJ",
            "eyJhbGciOiJSUzI1NiJ9.%%%.abc",
            "not a token at all",
        ] {
            match auth.check(g).await {
                Err(AuthError::Invalid(r)) => {
                    assert!(r == "malformed token" || r == "bad signature", "{g:?}: {r}")
                }
                other => panic!("{g:?}: {other:?}"),
            }
        }
        let huge = format!("{}{}", t, "A".repeat(MAX_TOKEN_LEN));
        refused(&auth, &huge, "token too large").await;
    }

    #[tokio::test]
    async fn jwt_other_key_with_same_kid_refused() {
        let (_server, auth, k) = setup().await;
        let t = ec_token(&k.other_es256_pem, Algorithm::ES256, Some("ec1"), &claims());
        refused(&auth, &t, "bad signature").await;
    }

    #[tokio::test]
    async fn jwt_crit_header_refused() {
        let (_server, auth, _) = setup().await;
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        let mut h = header(Algorithm::RS256, Some("rsa1"));
        h.crit = Some(vec!["exp".into()]);
        let t = encode(&h, &claims(), &key).unwrap();
        refused(&auth, &t, "unsupported critical header").await;
    }

    #[tokio::test]
    async fn jwt_unknown_kid_refused_with_one_refetch_per_cooldown() {
        let (server, _, _) = setup().await;
        let mut c = cfg(&server.url);
        c.refetch_cooldown = Duration::from_millis(300);
        let auth = JwtAuth::new(c);
        assert!(auth
            .check(&rsa_token(Some("rsa1"), &claims()))
            .await
            .is_ok());
        assert_eq!(auth.fetches(), 1);
        // Within the cooldown: no fetch at all.
        refused(&auth, &rsa_token(Some("nope"), &claims()), "unknown key").await;
        assert_eq!(auth.fetches(), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        refused(&auth, &rsa_token(Some("nope"), &claims()), "unknown key").await;
        assert_eq!(auth.fetches(), 2);
        refused(&auth, &rsa_token(Some("nope2"), &claims()), "unknown key").await;
        assert_eq!(auth.fetches(), 2);
        assert_eq!(server.hits(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jwt_flood_of_unknown_kids_causes_bounded_fetches() {
        let (server, _, k) = setup().await;
        let mut c = cfg(&server.url);
        c.refetch_cooldown = Duration::from_secs(1);
        let auth = Arc::new(JwtAuth::new(c));
        // Minted up front (Ed25519 is fast), so the flood fits well inside one cooldown.
        let flood: Vec<String> = (0..200)
            .map(|i| {
                let kid = blake3::hash(format!("kid-{i}").as_bytes()).to_hex();
                ed_token(&k.ed_pem, Some(kid.as_str()), &claims())
            })
            .collect();
        let valid = ed_token(&k.ed_pem, Some("ed1"), &claims());
        assert!(auth.check(&valid).await.is_ok());
        assert_eq!(auth.fetches(), 1);
        tokio::time::sleep(Duration::from_millis(1050)).await;

        // 100 concurrent tokens with random kids after the cooldown: one refetch.
        let tasks: Vec<_> = flood[..100]
            .iter()
            .map(|t| {
                let (auth, t) = (auth.clone(), t.clone());
                tokio::spawn(async move { auth.check(&t).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(
                t.await.unwrap(),
                Err(AuthError::Invalid("unknown key".into()))
            );
        }
        assert!(auth.fetches() <= 3, "fetches: {}", auth.fetches());
        assert_eq!(auth.fetches() as usize, server.hits());

        // Another 100 right away: no fetch at all.
        let before = auth.fetches();
        for t in &flood[100..] {
            refused(&auth, t, "unknown key").await;
        }
        assert_eq!(auth.fetches(), before);
        // Valid tokens still pass during the flood.
        assert!(auth.check(&valid).await.is_ok());
    }

    #[tokio::test]
    async fn jwt_key_rotation_accepted_after_one_refetch() {
        let k = keys();
        let server = JwksServer::start(json!({"keys": [rsa_jwk("rsa1")]})).await;
        let mut c = cfg(&server.url);
        c.refetch_cooldown = Duration::from_millis(100);
        let auth = JwtAuth::new(c);
        assert!(auth
            .check(&rsa_token(Some("rsa1"), &claims()))
            .await
            .is_ok());
        assert_eq!(auth.fetches(), 1);

        // The provider rotates: a new EC key appears, the RSA key goes.
        server.set_jwks(json!({"keys": [k.es256_jwk]}));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t = ec_token(&k.es256_pem, Algorithm::ES256, Some("ec1"), &claims());
        assert_eq!(auth.check(&t).await.unwrap().id, "alice");
        assert_eq!(auth.fetches(), 2);
        assert!(auth.check(&t).await.is_ok());
        assert_eq!(auth.fetches(), 2);
        // The retired key is no longer accepted.
        refused(&auth, &rsa_token(Some("rsa1"), &claims()), "unknown key").await;
    }

    #[tokio::test]
    async fn jwt_cache_ttl_refetch_and_outage_keeps_cached_keys() {
        let (server, _, _) = setup().await;
        let mut c = cfg(&server.url);
        c.cache_ttl = Duration::from_millis(150);
        c.refetch_cooldown = Duration::from_millis(50);
        let auth = JwtAuth::new(c);
        let t = rsa_token(Some("rsa1"), &claims());
        assert!(auth.check(&t).await.is_ok());
        assert_eq!(auth.fetches(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(auth.check(&t).await.is_ok());
        assert_eq!(auth.fetches(), 2, "stale cache refetched");

        for mode in [MODE_500, MODE_GARBAGE, MODE_HANG] {
            server.set_mode(mode);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = auth.fetches();
            let started = Instant::now();
            assert!(
                auth.check(&t).await.is_ok(),
                "mode {mode}: cached keys kept"
            );
            assert_eq!(auth.fetches(), before + 1);
            assert!(started.elapsed() < Duration::from_secs(3));
        }
        server.set_mode(MODE_OK);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(auth.check(&t).await.is_ok());
    }

    #[tokio::test]
    async fn jwt_provider_down_with_empty_cache_is_unavailable() {
        for mode in [MODE_500, MODE_GARBAGE, MODE_HANG] {
            let (server, _, _) = setup().await;
            server.set_mode(mode);
            let mut c = cfg(&server.url);
            c.fetch_timeout = Duration::from_millis(300);
            c.refetch_cooldown = Duration::from_millis(100);
            let auth = JwtAuth::new(c);
            let t = rsa_token(Some("rsa1"), &claims());
            let started = Instant::now();
            match auth.check(&t).await {
                Err(AuthError::Unavailable(r)) => assert!(!r.contains(&t)),
                other => panic!("mode {mode}: {other:?}"),
            }
            assert!(started.elapsed() < Duration::from_secs(3), "mode {mode}");
            assert_eq!(auth.fetches(), 1);
            // Within the cooldown: still unavailable, without hammering the provider.
            assert!(matches!(
                auth.check(&t).await,
                Err(AuthError::Unavailable(_))
            ));
            assert_eq!(auth.fetches(), 1);
            // The provider recovers: admitted after the cooldown.
            server.set_mode(MODE_OK);
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(auth.check(&t).await.is_ok(), "mode {mode}");
            assert_eq!(auth.fetches(), 2);
        }
    }

    #[tokio::test]
    async fn jwt_jwks_without_usable_keys_is_unavailable() {
        let server = JwksServer::start(json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            // A 512-bit RSA key is too small.
            {"kty": "RSA", "kid": "small", "n": b64(&[0xc5; 64]), "e": RSA_E},
            {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
        ]}))
        .await;
        let auth = JwtAuth::new(cfg(&server.url));
        let t = rsa_token(Some("small"), &claims());
        assert!(matches!(
            auth.check(&t).await,
            Err(AuthError::Unavailable(_))
        ));
        // Unreachable provider.
        let auth = JwtAuth::new(cfg("http://127.0.0.1:9/jwks.json"));
        assert!(matches!(
            auth.check(&t).await,
            Err(AuthError::Unavailable(_))
        ));
    }

    #[test]
    fn jwt_looks_like_jwt() {
        let t = rsa_token(Some("rsa1"), &claims());
        assert!(looks_like_jwt(&t));
        assert!(!looks_like_jwt("opaque-oauth2-access-token"));
        assert!(!looks_like_jwt("ya29.a0AfH6SMB.xyz"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(&format!("{t}.extra")));
        assert!(!looks_like_jwt(&format!("{t} ")));
        assert!(!looks_like_jwt(&t.replace('.', "..")));
    }
}
