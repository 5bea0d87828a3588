//! OAuth2 bearer tokens, validated with the identity provider.
//!
//! Two ways of asking the provider, chosen by configuration:
//! - **RFC 7662 introspection** (`OAUTH2_INTROSPECTION_URL`, preferred when set): `POST
//!   token=<t>&token_type_hint=access_token` with the client credentials in HTTP Basic
//!   (`OAUTH2_CLIENT_ID`/`OAUTH2_CLIENT_SECRET`, form-encoded first as RFC 6749 §2.3.1 says).
//!   `active: false` or an `exp` in the past refuses the token; the subject is `sub`, else
//!   `username`, else `client_id`.
//! - **userinfo** (`OAUTH2_USERINFO_URL`): `GET` with `Authorization: Bearer <t>`; 401/403
//!   refuses the token; the answer must carry `sub`.
//!
//! Roles come from `roles_claim`: an array of strings (`roles`) or a space-separated string
//! (`scope`); a dotted path (`realm_access.roles`) reaches into nested objects.
//!
//! Results are cached under `blake3(token)` (never the token itself): admissions until the
//! earlier of `max_ttl` and the token's `exp`, refusals for `negative_ttl`. The cache holds at most
//! `max_entries` entries and evicts the oldest. When the provider cannot be asked (down, slow,
//! 5xx, garbage, refusing our client credentials), the result is
//! [`AuthError::Unavailable`]: fail closed, never admit, never cached.
//!
//! No reason string ever contains the token or the client secret.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{Map, Value};

use super::{roles_from, AuthError, AuthMethod, Principal};

/// `Principal::method` for principals admitted here.
const METHOD: AuthMethod = AuthMethod::OAuth2;
/// Longer bearer tokens are refused without asking the provider.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Larger provider answers are treated as garbage (the provider is not trusted with our memory).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Settings of the `oauth2` method (`OAUTH2_*`).
#[derive(Clone)]
pub struct OAuth2Config {
    /// `OAUTH2_INTROSPECTION_URL` (RFC 7662); preferred when set.
    pub introspection_url: Option<String>,
    /// `OAUTH2_USERINFO_URL`; used when no introspection URL is set.
    pub userinfo_url: Option<String>,
    /// `OAUTH2_CLIENT_ID` (HTTP Basic for introspection).
    pub client_id: Option<String>,
    /// `OAUTH2_CLIENT_SECRET`. Never printed (see the `Debug` impl).
    pub client_secret: Option<String>,
    /// Claim holding the roles, e.g. `roles` (array) or `scope` (space-separated).
    pub roles_claim: String,
    /// Admissions are cached at most this long (and never past the token's `exp`).
    pub max_ttl: Duration,
    /// Refusals are cached this long.
    pub negative_ttl: Duration,
    /// Timeout of one provider request, connection included.
    pub timeout: Duration,
    /// Cache bound; the oldest entry is evicted first. 0 disables the cache.
    pub max_entries: usize,
    /// What the provider client trusts (system roots, `ISOBOX_CA_BUNDLE`).
    pub outbound: crate::outbound::OutboundTls,
}

impl fmt::Debug for OAuth2Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Config")
            .field("introspection_url", &self.introspection_url)
            .field("userinfo_url", &self.userinfo_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("roles_claim", &self.roles_claim)
            .field("max_ttl", &self.max_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("timeout", &self.timeout)
            .field("max_entries", &self.max_entries)
            .field("outbound", &self.outbound)
            .finish()
    }
}

/// Validates bearer tokens with the provider and caches the answers.
pub struct OAuth2Auth {
    cfg: OAuth2Config,
    /// The HTTP client, or why it could not be built (then every check is `Unavailable`).
    client: Result<reqwest::Client, String>,
    /// Precomputed `Authorization: Basic ...` for introspection (marked sensitive).
    basic: Option<HeaderValue>,
    cache: Mutex<Cache>,
    calls: AtomicU64,
}

impl fmt::Debug for OAuth2Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Auth")
            .field("cfg", &self.cfg)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

/// What the provider said about a token (as opposed to not being able to ask it).
enum Verdict {
    /// Admitted; `Some(d)` = the token expires in `d`.
    Admit(Principal, Option<Duration>),
    /// Refused, with the reason.
    Refuse(String),
}

impl OAuth2Auth {
    pub fn new(cfg: OAuth2Config) -> OAuth2Auth {
        let client = cfg
            .outbound
            .client_builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // A redirect would be a misconfigured URL; following it could carry the token or
            // the client credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| "oauth2: the HTTP client could not be built".to_string());
        let basic = cfg.client_id.as_ref().map(|id| {
            let secret = cfg.client_secret.as_deref().unwrap_or("");
            let pair = format!("{}:{}", form_encode(id), form_encode(secret));
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut value = HeaderValue::from_str(&format!("Basic {b64}"))
                .expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        });
        OAuth2Auth {
            cfg,
            client,
            basic,
            cache: Mutex::new(Cache::default()),
            calls: AtomicU64::new(0),
        }
    }

    /// Validates a bearer token: `Ok(Principal { id: sub (or username/client_id for
    /// introspection), roles, method: AuthMethod::OAuth2 })`, [`AuthError::Invalid`] when the provider
    /// refuses it (or it is malformed), [`AuthError::Unavailable`] when the provider cannot be
    /// asked (5xx, timeout, connection refused, garbage, our client credentials refused).
    pub async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        check_token_syntax(token)?;
        let key = *blake3::hash(token.as_bytes()).as_bytes();
        if let Some(outcome) = self.lock_cache().get(&key, Instant::now()) {
            return outcome.map_err(AuthError::Invalid);
        }
        let verdict = self
            .ask_provider(token)
            .await
            .map_err(AuthError::Unavailable)?;
        let now = Instant::now();
        match verdict {
            Verdict::Admit(principal, until_exp) => {
                let ttl = until_exp.map_or(self.cfg.max_ttl, |d| d.min(self.cfg.max_ttl));
                self.store(key, Ok(principal.clone()), now, ttl);
                Ok(principal)
            }
            Verdict::Refuse(reason) => {
                self.store(key, Err(reason.clone()), now, self.cfg.negative_ttl);
                Err(AuthError::Invalid(reason))
            }
        }
    }

    /// The cached answer for `token`, if the provider gave one recently (no provider call).
    pub fn cached(&self, token: &str) -> Option<Result<Principal, AuthError>> {
        check_token_syntax(token).ok()?;
        let key = *blake3::hash(token.as_bytes()).as_bytes();
        self.lock_cache()
            .get(&key, Instant::now())
            .map(|outcome| outcome.map_err(AuthError::Invalid))
    }

    /// Provider calls so far (tests/metrics).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache is consistent after every statement, so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self, key: Key, outcome: Outcome, now: Instant, ttl: Duration) {
        if ttl.is_zero() || self.cfg.max_entries == 0 {
            return;
        }
        if let Some(expires_at) = now.checked_add(ttl) {
            self.lock_cache()
                .insert(key, outcome, expires_at, self.cfg.max_entries);
        }
    }

    async fn ask_provider(&self, token: &str) -> Result<Verdict, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        if let Some(url) = &self.cfg.introspection_url {
            let body = format!("token={}&token_type_hint=access_token", form_encode(token));
            let mut req = client
                .post(url)
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
            if let Some(basic) = &self.basic {
                req = req.header(AUTHORIZATION, basic.clone());
            }
            let (status, body) = self.exchange("introspection endpoint", req).await?;
            introspection_verdict(status, &body, &self.cfg.roles_claim, unix_now())
        } else if let Some(url) = &self.cfg.userinfo_url {
            let req = client
                .get(url)
                .header(ACCEPT, "application/json")
                .header(AUTHORIZATION, bearer_header(token));
            let (status, body) = self.exchange("userinfo endpoint", req).await?;
            userinfo_verdict(status, &body, &self.cfg.roles_claim)
        } else {
            Err(
                "oauth2 is not configured: set OAUTH2_INTROSPECTION_URL or OAUTH2_USERINFO_URL"
                    .to_string(),
            )
        }
    }

    /// Sends one request and reads the (bounded) answer within the timeout. The error strings
    /// name the endpoint kind and what went wrong, never the URL, token or credentials.
    async fn exchange(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            let mut resp = req.send().await?;
            let status = resp.status();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Some((status, body)))
        };
        match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Err(_) => Err(timeout_reason(what, self.cfg.timeout)),
            Ok(Err(e)) if e.is_timeout() => Err(timeout_reason(what, self.cfg.timeout)),
            Ok(Err(e)) if e.is_connect() => Err(format!("{what} unreachable (connect failed)")),
            Ok(Err(e)) if e.is_body() || e.is_decode() => {
                Err(format!("{what} sent a broken response"))
            }
            Ok(Err(_)) => Err(format!("{what} request failed")),
            Ok(Ok(None)) => Err(format!(
                "{what} sent a response larger than {MAX_RESPONSE_BYTES} bytes"
            )),
            Ok(Ok(Some(answer))) => Ok(answer),
        }
    }
}

fn timeout_reason(what: &str, timeout: Duration) -> String {
    format!("{what} did not answer within {} ms", timeout.as_millis())
}

/// `Authorization: Bearer <token>`, marked sensitive. The token's syntax was checked already
/// (visible ASCII), so the header value is valid.
fn bearer_header(token: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .expect("checked bearer token is a valid header value");
    value.set_sensitive(true);
    value
}

/// Refuses tokens that no provider could have issued, without asking one: empty, oversized, or
/// with characters outside visible ASCII (RFC 6750 `b64token` is a subset).
fn check_token_syntax(token: &str) -> Result<(), AuthError> {
    if token.is_empty() {
        return Err(AuthError::Invalid("empty bearer token".into()));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Invalid(format!(
            "bearer token longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(AuthError::Invalid(
            "bearer token has characters outside visible ASCII".into(),
        ));
    }
    Ok(())
}

/// Seconds since the Unix epoch, with fractions.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn parse_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Reads an RFC 7662 answer. `now` is Unix seconds.
fn introspection_verdict(
    status: StatusCode,
    body: &[u8],
    roles_claim: &str,
    now: f64,
) -> Result<Verdict, String> {
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(format!(
                "introspection endpoint refused our client credentials (HTTP {}): check \
                 OAUTH2_CLIENT_ID/OAUTH2_CLIENT_SECRET",
                status.as_u16()
            ))
        }
        other => {
            return Err(format!(
                "introspection endpoint answered HTTP {}",
                other.as_u16()
            ))
        }
    }
    let obj = parse_object(body)
        .ok_or("introspection endpoint sent a response that is not a JSON object")?;
    match obj.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Verdict::Refuse("token is not active".into())),
        _ => return Err("introspection response has no boolean `active`".into()),
    }
    let until_exp = match obj.get("exp") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let exp = v
                .as_f64()
                .ok_or("introspection response has a non-numeric `exp`")?;
            if exp <= now {
                return Ok(Verdict::Refuse("token expired".into()));
            }
            // An absurdly distant `exp` is capped by max_ttl anyway.
            Duration::try_from_secs_f64(exp - now).ok()
        }
    };
    let id = ["sub", "username", "client_id"]
        .iter()
        .find_map(|claim| non_empty_str(&obj, claim));
    let Some(id) = id else {
        return Ok(Verdict::Refuse(
            "introspection response names no subject (sub, username or client_id)".into(),
        ));
    };
    let principal = Principal {
        id: id.to_string(),
        roles: roles_from(&obj, roles_claim),
        method: METHOD,
    };
    Ok(Verdict::Admit(principal, until_exp))
}

/// Reads an OpenID Connect userinfo answer.
fn userinfo_verdict(status: StatusCode, body: &[u8], roles_claim: &str) -> Result<Verdict, String> {
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Ok(Verdict::Refuse(format!(
                "userinfo endpoint rejected the token (HTTP {})",
                status.as_u16()
            )))
        }
        other => {
            return Err(format!(
                "userinfo endpoint answered HTTP {}",
                other.as_u16()
            ))
        }
    }
    let obj =
        parse_object(body).ok_or("userinfo endpoint sent a response that is not a JSON object")?;
    let Some(sub) = non_empty_str(&obj, "sub") else {
        return Ok(Verdict::Refuse("userinfo response has no `sub`".into()));
    };
    let principal = Principal {
        id: sub.to_string(),
        roles: roles_from(&obj, roles_claim),
        method: METHOD,
    };
    Ok(Verdict::Admit(principal, None))
}

fn non_empty_str<'a>(obj: &'a Map<String, Value>, claim: &str) -> Option<&'a str> {
    obj.get(claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `application/x-www-form-urlencoded` (WHATWG URL standard): `*-._` and alphanumerics stay,
/// space becomes `+`, every other byte of the UTF-8 becomes `%XX`.
fn form_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    out
}

/// `blake3(token)`.
type Key = [u8; 32];
/// A cached answer: the principal, or the reason of the refusal.
type Outcome = Result<Principal, String>;

struct Entry {
    outcome: Outcome,
    expires_at: Instant,
    seq: u64,
}

/// A bounded map with expiry; insertion order (`seq`) picks the entry to evict.
#[derive(Default)]
struct Cache {
    map: HashMap<Key, Entry>,
    order: BTreeMap<u64, Key>,
    next_seq: u64,
}

impl Cache {
    fn get(&mut self, key: &Key, now: Instant) -> Option<Outcome> {
        let entry = self.map.get(key)?;
        if entry.expires_at <= now {
            let seq = entry.seq;
            self.map.remove(key);
            self.order.remove(&seq);
            return None;
        }
        Some(entry.outcome.clone())
    }

    fn insert(&mut self, key: Key, outcome: Outcome, expires_at: Instant, max_entries: usize) {
        if let Some(old) = self.map.remove(&key) {
            self.order.remove(&old.seq);
        }
        while self.map.len() >= max_entries {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        self.map.insert(
            key,
            Entry {
                outcome,
                expires_at,
                seq,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.map.len(), self.order.len());
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU8;
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::{header, HeaderMap, StatusCode as HttpStatus};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde_json::json;

    const CLIENT_ID: &str = "isobox rs";
    // Characters that must be form-encoded before Basic (RFC 6749 §2.3.1).
    const CLIENT_SECRET: &str = "s3cr:t/+%é &x";
    // Characters that must be form-encoded in the introspection body.
    const ODD_TOKEN: &str = "tok.x+y/z=&token=evil";

    const NORMAL: u8 = 0;
    const FAIL_500: u8 = 1;
    const GARBAGE: u8 = 2;
    const JSON_NO_ACTIVE: u8 = 3;
    const HANG: u8 = 4;

    /// An OAuth2 provider on loopback: introspection at `/introspect`, userinfo at `/userinfo`.
    struct Provider {
        addr: SocketAddr,
        state: Arc<ProviderState>,
    }

    struct ProviderState {
        calls: AtomicU64,
        mode: AtomicU8,
        /// `exp` of `tok-short`: one second after the provider started.
        short_exp: f64,
    }

    impl Provider {
        async fn start() -> Provider {
            let state = Arc::new(ProviderState {
                calls: AtomicU64::new(0),
                mode: AtomicU8::new(NORMAL),
                short_exp: unix_now() + 1.0,
            });
            let app = Router::new()
                .route("/introspect", post(introspect))
                .route("/userinfo", get(userinfo))
                .with_state(state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Provider { addr, state }
        }

        fn calls(&self) -> u64 {
            self.state.calls.load(Ordering::SeqCst)
        }

        fn set_mode(&self, mode: u8) {
            self.state.mode.store(mode, Ordering::SeqCst);
        }

        fn introspection(&self) -> OAuth2Config {
            OAuth2Config {
                introspection_url: Some(format!("http://{}/introspect", self.addr)),
                userinfo_url: Some(format!("http://{}/userinfo", self.addr)),
                client_id: Some(CLIENT_ID.into()),
                client_secret: Some(CLIENT_SECRET.into()),
                roles_claim: "roles".into(),
                max_ttl: Duration::from_secs(60),
                negative_ttl: Duration::from_secs(10),
                timeout: Duration::from_millis(500),
                max_entries: 100,
                outbound: Default::default(),
            }
        }

        fn userinfo(&self) -> OAuth2Config {
            OAuth2Config {
                introspection_url: None,
                client_id: None,
                client_secret: None,
                ..self.introspection()
            }
        }
    }

    /// Applies the failure mode; `None` = answer normally.
    async fn failure(st: &ProviderState) -> Option<Response> {
        match st.mode.load(Ordering::SeqCst) {
            FAIL_500 => Some((HttpStatus::INTERNAL_SERVER_ERROR, "oops").into_response()),
            GARBAGE => Some(
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "<html>502 Bad Gateway</html>",
                )
                    .into_response(),
            ),
            JSON_NO_ACTIVE => Some(Json(json!(["active", true])).into_response()),
            HANG => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Some(HttpStatus::GATEWAY_TIMEOUT.into_response())
            }
            _ => None,
        }
    }

    fn form_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }

    fn parse_form(body: &str) -> HashMap<String, String> {
        body.split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(k), form_decode(v))
            })
            .collect()
    }

    fn client_authenticated(headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let Some(b64) = value.to_str().ok().and_then(|v| v.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        let raw = String::from_utf8(raw).unwrap();
        let (id, secret) = raw.split_once(':').unwrap();
        form_decode(id) == CLIENT_ID && form_decode(secret) == CLIENT_SECRET
    }

    async fn introspect(
        State(st): State<Arc<ProviderState>>,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        st.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(resp) = failure(&st).await {
            return resp;
        }
        if !client_authenticated(&headers) {
            return (
                HttpStatus::UNAUTHORIZED,
                Json(json!({"error": "invalid_client"})),
            )
                .into_response();
        }
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let form = parse_form(&body);
        let hint_ok = form.get("token_type_hint").map(String::as_str) == Some("access_token");
        let (true, true, Some(token)) = (form_type, hint_ok, form.get("token")) else {
            return (
                HttpStatus::BAD_REQUEST,
                Json(json!({"error": "invalid_request"})),
            )
                .into_response();
        };
        let now = unix_now();
        let answer = match token.as_str() {
            "tok-roles" => json!({"active": true, "sub": "alice", "roles": ["admin", "runner"],
                                  "exp": now + 3600.0, "token_type": "Bearer"}),
            "tok-scope" => json!({"active": true, "sub": "bob", "scope": "run read run"}),
            "tok-inactive" => json!({"active": false}),
            "tok-expired" => json!({"active": true, "sub": "carol", "exp": now - 10.0}),
            "tok-short" => json!({"active": true, "sub": "dave", "exp": st.short_exp}),
            "tok-nosub" => json!({"active": true, "client_id": "ci-bot", "roles": ["runner"]}),
            "tok-anon" => json!({"active": true}),
            "tok-nested" => json!({"active": true, "username": "frank",
                                   "realm_access": {"roles": ["ops"]}}),
            ODD_TOKEN => json!({"active": true, "sub": "erin"}),
            t if t.starts_with("many-") => json!({"active": true, "sub": t}),
            // RFC 7662 §2.2: unknown tokens are simply not active.
            _ => json!({"active": false}),
        };
        Json(answer).into_response()
    }

    async fn userinfo(State(st): State<Arc<ProviderState>>, headers: HeaderMap) -> Response {
        st.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(resp) = failure(&st).await {
            return resp;
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match token {
            Some("tok-roles") => {
                Json(json!({"sub": "alice", "roles": ["admin", "runner"]})).into_response()
            }
            Some("tok-nosub") => Json(json!({"name": "Nobody"})).into_response(),
            _ => (
                HttpStatus::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            )
                .into_response(),
        }
    }

    /// The reason never carries the token or the client secret.
    fn reason(err: AuthError, token: &str) -> String {
        let text = match &err {
            AuthError::Invalid(r) | AuthError::Unavailable(r) => r.clone(),
            AuthError::Missing => String::new(),
        };
        assert!(!text.contains(token), "token leaked in {err:?}");
        assert!(!text.contains(CLIENT_SECRET), "secret leaked in {err:?}");
        text
    }

    fn assert_invalid(res: Result<Principal, AuthError>, token: &str) -> String {
        match res {
            Err(e @ AuthError::Invalid(_)) => reason(e, token),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn assert_unavailable(res: Result<Principal, AuthError>, token: &str) -> String {
        match res {
            Err(e @ AuthError::Unavailable(_)) => reason(e, token),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn active_token_gives_principal_with_roles_and_is_cached() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        let want = Principal {
            id: "alice".into(),
            roles: vec!["admin".into(), "runner".into()],
            method: AuthMethod::OAuth2,
        };
        assert_eq!(auth.check("tok-roles").await.unwrap(), want);
        assert_eq!((p.calls(), auth.calls()), (1, 1));
        assert_eq!(auth.check("tok-roles").await.unwrap(), want);
        assert_eq!((p.calls(), auth.calls()), (1, 1), "second check is cached");
    }

    #[tokio::test]
    async fn scope_string_and_fallback_subjects() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(OAuth2Config {
            roles_claim: "scope".into(),
            ..p.introspection()
        });
        let bob = auth.check("tok-scope").await.unwrap();
        assert_eq!(
            (bob.id.as_str(), bob.roles),
            ("bob", vec!["run".into(), "read".into()])
        );

        let auth = OAuth2Auth::new(p.introspection());
        let bot = auth.check("tok-nosub").await.unwrap();
        assert_eq!(
            (bot.id.as_str(), bot.roles),
            ("ci-bot", vec!["runner".into()])
        );
        assert_invalid(auth.check("tok-anon").await, "tok-anon");

        let auth = OAuth2Auth::new(OAuth2Config {
            roles_claim: "realm_access.roles".into(),
            ..p.introspection()
        });
        let frank = auth.check("tok-nested").await.unwrap();
        assert_eq!(
            (frank.id.as_str(), frank.roles),
            ("frank", vec!["ops".into()])
        );
    }

    #[tokio::test]
    async fn token_and_credentials_are_form_encoded() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        assert_eq!(auth.check(ODD_TOKEN).await.unwrap().id, "erin");
    }

    #[tokio::test]
    async fn cache_never_outlives_exp() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        assert_eq!(auth.check("tok-short").await.unwrap().id, "dave");
        assert_eq!(auth.check("tok-short").await.unwrap().id, "dave");
        assert_eq!(p.calls(), 1);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let why = assert_invalid(auth.check("tok-short").await, "tok-short");
        assert!(why.contains("expired"), "{why}");
        assert_eq!(p.calls(), 2, "the provider was asked again after exp");
    }

    #[tokio::test]
    async fn expired_exp_is_invalid() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        let why = assert_invalid(auth.check("tok-expired").await, "tok-expired");
        assert!(why.contains("expired"), "{why}");
    }

    #[tokio::test]
    async fn inactive_is_invalid_and_negative_cached() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        let why = assert_invalid(auth.check("tok-inactive").await, "tok-inactive");
        assert!(why.contains("not active"), "{why}");
        assert_invalid(auth.check("tok-inactive").await, "tok-inactive");
        assert_eq!(p.calls(), 1, "second refusal comes from the negative cache");

        // The negative cache is brief.
        let auth = OAuth2Auth::new(OAuth2Config {
            negative_ttl: Duration::from_millis(200),
            ..p.introspection()
        });
        assert_invalid(auth.check("tok-inactive").await, "tok-inactive");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_invalid(auth.check("tok-inactive").await, "tok-inactive");
        assert_eq!(auth.calls(), 2);
    }

    #[tokio::test]
    async fn unknown_token_is_invalid() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        assert_invalid(auth.check("never-issued").await, "never-issued");
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_without_asking() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for bad in [
            "",
            "has space",
            "new\nline",
            "nul\0",
            "ünïcode",
            long.as_str(),
        ] {
            assert_invalid(
                auth.check(bad).await,
                if bad.is_empty() { "\u{1}" } else { bad },
            );
        }
        assert_eq!((p.calls(), auth.calls()), (0, 0));
    }

    #[tokio::test]
    async fn wrong_client_credentials_are_unavailable() {
        let p = Provider::start().await;
        for cfg in [
            OAuth2Config {
                client_secret: Some("wrong-secret".into()),
                ..p.introspection()
            },
            OAuth2Config {
                client_id: None,
                client_secret: None,
                ..p.introspection()
            },
        ] {
            let auth = OAuth2Auth::new(cfg);
            let why = assert_unavailable(auth.check("tok-roles").await, "tok-roles");
            assert!(
                why.contains("401") && !why.contains("wrong-secret"),
                "{why}"
            );
            // Never cached: every attempt asks again.
            assert_unavailable(auth.check("tok-roles").await, "tok-roles");
            assert_eq!(auth.calls(), 2);
        }
    }

    #[tokio::test]
    async fn provider_500_is_unavailable_and_not_cached() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        p.set_mode(FAIL_500);
        let why = assert_unavailable(auth.check("tok-roles").await, "tok-roles");
        assert!(why.contains("500"), "{why}");
        p.set_mode(NORMAL);
        assert_eq!(auth.check("tok-roles").await.unwrap().id, "alice");
        assert_eq!(p.calls(), 2);
    }

    #[tokio::test]
    async fn garbage_is_unavailable() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.introspection());
        for mode in [GARBAGE, JSON_NO_ACTIVE] {
            p.set_mode(mode);
            assert_unavailable(auth.check("tok-roles").await, "tok-roles");
        }
        assert_eq!(p.calls(), 2);
    }

    #[tokio::test]
    async fn slow_provider_is_unavailable_within_timeout() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(OAuth2Config {
            timeout: Duration::from_millis(300),
            ..p.introspection()
        });
        p.set_mode(HANG);
        let started = Instant::now();
        let why = assert_unavailable(auth.check("tok-roles").await, "tok-roles");
        let took = started.elapsed();
        assert!(why.contains("300 ms"), "{why}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        for (introspection_url, userinfo_url) in [
            (Some(format!("http://{addr}/introspect")), None),
            (None, Some(format!("http://{addr}/userinfo"))),
        ] {
            let auth = OAuth2Auth::new(OAuth2Config {
                introspection_url,
                userinfo_url,
                client_id: Some(CLIENT_ID.into()),
                client_secret: Some(CLIENT_SECRET.into()),
                roles_claim: "roles".into(),
                max_ttl: Duration::from_secs(60),
                negative_ttl: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                max_entries: 10,
                outbound: Default::default(),
            });
            assert_unavailable(auth.check("tok-roles").await, "tok-roles");
        }
    }

    #[tokio::test]
    async fn no_provider_configured_is_unavailable() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(OAuth2Config {
            introspection_url: None,
            userinfo_url: None,
            ..p.introspection()
        });
        assert_unavailable(auth.check("tok-roles").await, "tok-roles");
        assert_eq!(auth.calls(), 0);
    }

    #[tokio::test]
    async fn userinfo_mode() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(p.userinfo());
        let alice = auth.check("tok-roles").await.unwrap();
        assert_eq!(
            alice,
            Principal {
                id: "alice".into(),
                roles: vec!["admin".into(), "runner".into()],
                method: AuthMethod::OAuth2
            }
        );
        auth.check("tok-roles").await.unwrap();
        assert_eq!(p.calls(), 1, "cached");

        let why = assert_invalid(auth.check("bad-token").await, "bad-token");
        assert!(why.contains("401"), "{why}");
        assert_invalid(auth.check("bad-token").await, "bad-token");
        assert_eq!(p.calls(), 2, "refusal negative-cached");

        assert_invalid(auth.check("tok-nosub").await, "tok-nosub");

        p.set_mode(FAIL_500);
        assert_unavailable(auth.check("other-token").await, "other-token");
        p.set_mode(GARBAGE);
        assert_unavailable(auth.check("other-token").await, "other-token");
    }

    #[tokio::test]
    async fn cache_is_bounded_and_evicts_oldest() {
        let p = Provider::start().await;
        let auth = OAuth2Auth::new(OAuth2Config {
            max_entries: 3,
            ..p.introspection()
        });
        for i in 0..10 {
            auth.check(&format!("many-{i}")).await.unwrap();
        }
        assert_eq!(auth.lock_cache().len(), 3);
        assert_eq!(p.calls(), 10);
        // The newest three are cached; the oldest were evicted.
        for i in 7..10 {
            auth.check(&format!("many-{i}")).await.unwrap();
        }
        assert_eq!(p.calls(), 10);
        auth.check("many-0").await.unwrap();
        assert_eq!(p.calls(), 11);
        assert_eq!(auth.lock_cache().len(), 3);
    }

    #[test]
    fn secret_is_not_in_debug_output() {
        let cfg = OAuth2Config {
            introspection_url: None,
            userinfo_url: None,
            client_id: Some(CLIENT_ID.into()),
            client_secret: Some(CLIENT_SECRET.into()),
            roles_claim: "roles".into(),
            max_ttl: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_entries: 1,
            outbound: Default::default(),
        };
        let text = format!("{cfg:?} {:?}", OAuth2Auth::new(cfg.clone()));
        assert!(
            !text.contains(CLIENT_SECRET) && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn usable_from_a_multithreaded_server() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let auth = OAuth2Auth::new(OAuth2Config {
            introspection_url: None,
            userinfo_url: None,
            client_id: None,
            client_secret: None,
            roles_claim: "roles".into(),
            max_ttl: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_entries: 1,
            outbound: Default::default(),
        });
        send_sync(&auth);
        send(auth.check("tok"));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b+c/d=é*-._~"), "a+b%2Bc%2Fd%3D%C3%A9*-._%7E");
    }
}
