//! The gate every `/api/v1/*` request passes: authentication (any configured method admits),
//! brute-force limiting per client IP, rate limiting per principal, and the authorization
//! check the handlers call once they know what is asked. Every refusal is a security event
//! (method, reason, client IP; never the credential).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{header, HeaderMap};

use super::apikey::ApiKeys;
use super::jwt::{looks_like_jwt, JwtAuth, JwtConfig};
use super::oauth2::{OAuth2Auth, OAuth2Config};
use super::policy::{Facts, Policy};
use super::{AuthError, AuthMethod, AuthSettings, Principal};
use crate::logging::SECURITY;
use crate::ratelimit::{Decision, Limiter, Quota};
use crate::transport::PeerCerts;

pub struct Gate {
    methods: Vec<AuthMethod>,
    apikeys: Option<ApiKeys>,
    jwt: Option<JwtAuth>,
    oauth2: Option<OAuth2Auth>,
    policy: Option<Policy>,
    limiter: Limiter,
    failures: Limiter,
    quota: Quota,
    fail_quota: Quota,
    role_quotas: BTreeMap<String, Quota>,
    /// The limiter shared with other nodes (Redis); the local one is the fallback.
    shared: Option<std::sync::Arc<crate::cluster::Redis>>,
}

/// A refusal by the gate, ready for the error table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no or bad credentials.
    Unauthenticated(String),
    /// 503: the identity provider could not be asked.
    ProviderUnavailable,
    /// 429: too many requests (or too many failed logins from this address).
    RateLimited(Decision),
    /// 403: authenticated but not allowed.
    Forbidden(String),
}

fn bearer(headers: &HeaderMap) -> Option<Result<String, AuthError>> {
    let v = headers.get(header::AUTHORIZATION)?;
    let Ok(v) = v.to_str() else {
        return Some(Err(AuthError::Invalid(
            "malformed Authorization header".into(),
        )));
    };
    let (scheme, token) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Never echoed: without a scheme, the "scheme" is the credential itself.
        return Some(Err(AuthError::Invalid(
            "unsupported authorization scheme (use `Bearer <token>`)".into(),
        )));
    }
    let token = token.trim();
    if token.is_empty() {
        return Some(Err(AuthError::Invalid("empty bearer token".into())));
    }
    Some(Ok(token.to_string()))
}

impl Gate {
    pub fn new(methods: &[AuthMethod], s: &AuthSettings) -> Result<Gate, String> {
        let has = |m: AuthMethod| methods.contains(&m);
        let apikeys = if has(AuthMethod::ApiKey) {
            Some(ApiKeys::new(
                &s.api_key_header,
                &s.api_keys,
                &s.default_roles,
                s.api_keys_file.clone(),
            )?)
        } else {
            None
        };
        let jwt = has(AuthMethod::Jwt).then(|| {
            JwtAuth::new(JwtConfig {
                jwks_url: s.jwt_jwks_url.clone().unwrap_or_default(),
                issuer: s.jwt_issuer.clone(),
                audience: s.jwt_audience.clone(),
                roles_claim: s.roles_claim.clone(),
                leeway: Duration::from_secs(30),
                cache_ttl: Duration::from_secs(300),
                refetch_cooldown: Duration::from_secs(30),
                fetch_timeout: Duration::from_secs(5),
                outbound: s.outbound.clone(),
            })
        });
        let oauth2 = has(AuthMethod::OAuth2).then(|| {
            OAuth2Auth::new(OAuth2Config {
                introspection_url: s.oauth2_introspection_url.clone(),
                userinfo_url: s.oauth2_userinfo_url.clone(),
                client_id: s.oauth2_client_id.clone(),
                client_secret: s.oauth2_client_secret.clone(),
                roles_claim: s.roles_claim.clone(),
                max_ttl: Duration::from_secs(300),
                negative_ttl: Duration::from_secs(10),
                timeout: Duration::from_secs(3),
                max_entries: 10_000,
                outbound: s.outbound.clone(),
            })
        });
        let policy = s.policy_file.as_deref().map(Policy::load).transpose()?;
        let mut role_quotas = BTreeMap::new();
        if let Some(p) = &policy {
            for (role, q) in &p.rate_limits {
                role_quotas.insert(role.clone(), Quota::parse(q)?);
            }
        }
        Ok(Gate {
            methods: methods.to_vec(),
            apikeys,
            jwt,
            oauth2,
            policy,
            limiter: Limiter::new(100_000),
            failures: Limiter::new(100_000),
            quota: Quota::parse(&s.rate_limit)?,
            fail_quota: Quota::parse(&s.auth_fail_limit)?,
            role_quotas,
            shared: None,
        })
    }

    /// Counts requests in the limiter shared through Redis (the local one when it is down).
    pub fn with_shared(mut self, redis: std::sync::Arc<crate::cluster::Redis>) -> Gate {
        self.shared = Some(redis);
        self
    }

    /// Reloads what can change without a restart (the API keys file).
    pub fn reload(&self) {
        if let Some(k) = &self.apikeys {
            match k.reload() {
                Ok(true) => {
                    tracing::info!(target: crate::logging::AUTH, "API keys reloaded")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(target: crate::logging::AUTH, error = %e, "API keys file not reloaded")
                }
            }
        }
    }

    /// Who is calling, or why not. Any configured method that accepts admits the request.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCerts>,
    ) -> Result<Principal, AuthError> {
        self.authenticate_with(headers, peer, true).await
    }

    /// [`Gate::authenticate`]; without `ask_providers`, an OAuth2 token is known only if the
    /// provider's answer for it is cached.
    async fn authenticate_with(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCerts>,
        ask_providers: bool,
    ) -> Result<Principal, AuthError> {
        let mut refusal: Option<AuthError> = None;
        let note = |e: AuthError, refusal: &mut Option<AuthError>| {
            // Unavailable wins over Invalid wins over Missing, for the answer.
            let rank = |e: &AuthError| match e {
                AuthError::Missing => 0,
                AuthError::Invalid(_) => 1,
                AuthError::Unavailable(_) => 2,
            };
            if refusal.as_ref().is_none_or(|r| rank(&e) > rank(r)) {
                *refusal = Some(e);
            }
        };
        for m in &self.methods {
            match m {
                AuthMethod::None => {
                    return Ok(Principal {
                        id: "anonymous".into(),
                        roles: vec![],
                        method: AuthMethod::None,
                    })
                }
                AuthMethod::ApiKey => match self.apikeys.as_ref().and_then(|k| k.check(headers)) {
                    Some(Ok(p)) => return Ok(p),
                    Some(Err(e)) => note(e, &mut refusal),
                    None => {}
                },
                AuthMethod::Mtls => match peer.and_then(super::mtls::principal) {
                    Some(p) => return Ok(p),
                    None => note(AuthError::Missing, &mut refusal),
                },
                // Bearer tokens: below.
                AuthMethod::Jwt | AuthMethod::OAuth2 => {}
            }
        }
        // Bearer tokens: a JWT when it looks like one and jwt is on, else OAuth2.
        if self.jwt.is_some() || self.oauth2.is_some() {
            match bearer(headers) {
                None => {}
                Some(Err(e)) => note(e, &mut refusal),
                Some(Ok(token)) => {
                    let result = match (&self.jwt, &self.oauth2) {
                        (Some(j), _) if looks_like_jwt(&token) => j.check(&token).await,
                        (_, Some(o)) if ask_providers => o.check(&token).await,
                        (_, Some(o)) => o.cached(&token).unwrap_or(Err(AuthError::Missing)),
                        (Some(_), None) => Err(AuthError::Invalid("malformed token".into())),
                        (None, None) => Err(AuthError::Missing),
                    };
                    match result {
                        Ok(p) => return Ok(p),
                        Err(e) => note(e, &mut refusal),
                    }
                }
            }
        }
        Err(refusal.unwrap_or(AuthError::Missing))
    }

    /// Whether `ip` may try to authenticate now (brute-force limit).
    pub fn may_try(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(ip) = ip else { return Ok(()) };
        let key = format!("fail:{ip}");
        let d = self.failures.peek(&key, self.fail_quota);
        if d.allowed {
            Ok(())
        } else {
            Err(Refusal::RateLimited(d))
        }
    }

    /// Counts a failed authentication from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.failures.check(&format!("fail:{ip}"), self.fail_quota);
        }
    }

    /// The principal's roles, including those the policy gives it.
    pub fn roles(&self, p: &Principal) -> Vec<String> {
        match &self.policy {
            Some(pol) => pol.roles_of(&p.key(), &p.roles),
            None => p.roles.clone(),
        }
    }

    /// Counts `cost` requests of `p` against its quota (the most generous of its roles', or
    /// the default): in the shared limiter when there is one and Redis answers, else locally.
    pub async fn rate(&self, p: &Principal, roles: &[String], cost: u32) -> Decision {
        // The most generous quota among the principal's roles that set one.
        let quota = roles
            .iter()
            .filter_map(|r| self.role_quotas.get(r).copied())
            .min_by_key(|q| q.period.as_nanos() / u128::from(q.count))
            .unwrap_or(self.quota);
        let key = p.key();
        if let Some(r) = &self.shared {
            if let Some(d) = r.rate(&key, quota, cost).await {
                return d;
            }
        }
        let mut d = self.limiter.check(&key, quota);
        for _ in 1..cost {
            if !d.allowed {
                break;
            }
            d = self.limiter.check(&key, quota);
        }
        d
    }

    /// The policy's verdict (allowed when no policy is configured).
    pub fn authorize(&self, roles: &[String], action: &str, facts: &Facts) -> Result<(), String> {
        match &self.policy {
            None => Ok(()),
            Some(p) => p.check(roles, "code_execution", action, facts),
        }
    }

    pub fn api_key_header(&self) -> Option<&str> {
        self.apikeys.as_ref().map(|k| k.header())
    }

    /// The `WWW-Authenticate` challenge of a 401: the schemes the configured methods accept.
    pub fn challenge(&self) -> Option<String> {
        let mut schemes = Vec::new();
        if let Some(h) = self.api_key_header() {
            schemes.push(format!("ApiKey header=\"{h}\""));
        }
        if self.methods.iter().any(|m| m.is_bearer()) {
            schemes.push("Bearer".to_string());
        }
        (!schemes.is_empty()).then(|| schemes.join(", "))
    }
}

/// A request the gate let through.
pub struct Admitted {
    pub principal: Principal,
    /// Roles from the credential plus those the policy gives.
    pub roles: Vec<String>,
    /// The rate-limit state after counting this request (for the `RateLimit-*` headers).
    pub decision: Decision,
}

impl Gate {
    /// Everything between a request's credentials and its admission, for REST and gRPC alike:
    /// the failed-login limit of the client address, authentication, the principal's rate
    /// limit. Every refusal is a security event.
    pub async fn admit(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCerts>,
        ip: Option<IpAddr>,
    ) -> Result<Admitted, Refusal> {
        // An address over its failed-login limit still gets in with valid credentials (behind
        // a proxy, or beside an attacker, many users share one address); what it may no longer
        // do is fail: each further failure is refused as throttled, without counting, and
        // without asking an identity provider (only tokens it already answered for are known).
        let throttled = self.may_try(ip).err();
        let principal = match self
            .authenticate_with(headers, peer, throttled.is_none())
            .await
        {
            Ok(p) => p,
            Err(_) if throttled.is_some() => {
                security_event(
                    "auth_throttled",
                    "-",
                    "too many failed authentications",
                    ip,
                    None,
                );
                return Err(throttled.expect("throttled"));
            }
            Err(e) => {
                let (refusal, reason) = match &e {
                    AuthError::Missing => (
                        Refusal::Unauthenticated("credentials are required".into()),
                        "no credentials".to_string(),
                    ),
                    AuthError::Invalid(r) => (
                        Refusal::Unauthenticated(format!("invalid credentials: {r}")),
                        r.clone(),
                    ),
                    AuthError::Unavailable(r) => (Refusal::ProviderUnavailable, r.clone()),
                };
                if !matches!(e, AuthError::Unavailable(_)) {
                    self.failed(ip);
                }
                let methods: Vec<&str> = self.methods.iter().map(|m| m.as_str()).collect();
                security_event("auth_failed", &methods.join(","), &reason, ip, None);
                return Err(refusal);
            }
        };
        let roles = self.roles(&principal);
        let decision = self.rate(&principal, &roles, 1).await;
        if !decision.allowed {
            security_event(
                "rate_limited",
                principal.method.as_str(),
                "rate limit",
                ip,
                Some(&principal.id),
            );
            return Err(Refusal::RateLimited(decision));
        }
        tracing::debug!(target: crate::logging::AUTH, method = principal.method.as_str(), principal = %principal.id, "authenticated");
        Ok(Admitted {
            principal,
            roles,
            decision,
        })
    }
}

/// Logs a refusal as a security event (never the credential).
pub fn security_event(
    event: &str,
    method: &str,
    reason: &str,
    ip: Option<IpAddr>,
    principal: Option<&str>,
) {
    let ip = ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "unknown".into());
    tracing::warn!(target: SECURITY, event, method, reason, client_ip = %ip, principal = principal.unwrap_or("-"), "request refused");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason of a refusal becomes the 401 message and the security log's `reason`: no
    /// part of a credential may be in it, whatever shape the header has.
    #[test]
    fn refusal_reasons_never_carry_the_credential() {
        for v in [
            "topsecret-apikey-AAAA1111",
            "topsecret-apikey-AAAA1111 extra",
            "Basic dG9wc2VjcmV0LWFwaWtleQ==",
            "Token topsecret-apikey-AAAA1111",
            "Bearer",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            match bearer(&h) {
                Some(Err(AuthError::Invalid(reason))) => {
                    for part in v
                        .split_whitespace()
                        .filter(|p| !p.eq_ignore_ascii_case("bearer"))
                    {
                        assert!(!reason.contains(part), "{v:?} -> {reason:?}");
                    }
                    assert!(!reason.contains("topsecret"), "{v:?} -> {reason:?}");
                }
                other => panic!("{v:?}: {other:?}"),
            }
        }
    }
}
