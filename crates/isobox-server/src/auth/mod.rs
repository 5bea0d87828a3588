//! Authentication: each configured method (`AUTH_TYPE`) turns a request's credentials into a
//! [`Principal`], or refuses it. Methods: `none` (loopback only), `apikey`, `jwt`, `oauth2`,
//! `mtls`. The [`gate`] runs them in order, with the failed-login and rate limits; the
//! permission [`policy`] decides what an admitted principal may run.

pub mod apikey;
pub mod gate;
pub mod jwt;
pub mod mtls;
pub mod oauth2;
pub mod policy;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde_json::{Map, Value};

/// An authentication method of `AUTH_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// No credentials; the server listens on loopback only.
    None,
    ApiKey,
    Jwt,
    OAuth2,
    Mtls,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 5] = [
        AuthMethod::None,
        AuthMethod::ApiKey,
        AuthMethod::Jwt,
        AuthMethod::OAuth2,
        AuthMethod::Mtls,
    ];

    /// The name in `AUTH_TYPE`, the logs and the dedup scope.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ApiKey => "apikey",
            AuthMethod::Jwt => "jwt",
            AuthMethod::OAuth2 => "oauth2",
            AuthMethod::Mtls => "mtls",
        }
    }

    /// Whether credentials of this method travel as `Authorization: Bearer`.
    pub fn is_bearer(self) -> bool {
        matches!(self, AuthMethod::Jwt | AuthMethod::OAuth2)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<AuthMethod, String> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown authentication method `{s}`"))
    }
}

/// Authentication, authorization, rate limits and TLS.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `API_KEYS` (secret).
    pub api_keys: Vec<String>,
    pub api_key_header: String,
    pub api_keys_file: Option<PathBuf>,
    /// Roles of the keys listed in `API_KEYS`.
    pub default_roles: Vec<String>,
    pub jwt_jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub oauth2_introspection_url: Option<String>,
    pub oauth2_userinfo_url: Option<String>,
    pub oauth2_client_id: Option<String>,
    pub oauth2_client_secret: Option<String>,
    /// Claim holding the roles of a JWT or an OAuth2 token (`roles` array or `scope` string).
    pub roles_claim: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub mtls_ca: Option<PathBuf>,
    pub mtls_crl: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
    /// Per-principal quota unless a role of the policy sets one.
    pub rate_limit: String,
    /// Failed authentications per client IP.
    pub auth_fail_limit: String,
    /// What the JWKS and OAuth2 clients trust (system roots, `ISOBOX_CA_BUNDLE`).
    pub outbound: crate::outbound::OutboundTls,
}

/// Who is calling: used by authorization, rate limits, the dedup scope and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A stable identifier (key id, token subject, certificate subject). Never a credential.
    pub id: String,
    pub roles: Vec<String>,
    /// The method that admitted it.
    pub method: AuthMethod,
}

impl Principal {
    /// `method:id`: the one key of a principal in the rate limiter, the dedup scope, job
    /// ownership and the logs (two methods never share one).
    pub fn key(&self) -> String {
        format!("{}:{}", self.method, self.id)
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential for any configured method (401).
    Missing,
    /// A credential was given and is not valid; the reason is for the security log and the
    /// message, and never contains the credential (401).
    Invalid(String),
    /// The identity provider could not be asked (down, slow, garbage): fail closed (503).
    Unavailable(String),
}

/// The roles in a token's `claim` (JWT claims, OAuth2 introspection or userinfo): an array of
/// strings, or a space-separated string (`scope`). A claim name with dots that is not a
/// top-level key is followed as a path into nested objects (`realm_access.roles`). Duplicates
/// and empty names are dropped.
pub fn roles_from(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    let value = claims.get(claim).or_else(|| {
        let mut parts = claim.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |v, part| v.as_object()?.get(part))
    });
    let mut roles: Vec<String> = Vec::new();
    let mut add = |r: &str| {
        if !r.is_empty() && !roles.iter().any(|x| x == r) {
            roles.push(r.to_string());
        }
    };
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut add),
        Some(Value::String(s)) => s.split_whitespace().for_each(&mut add),
        _ => {}
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_arrays_scopes_and_paths() {
        let c = serde_json::json!({
            "roles": ["a", "b", "a", ""],
            "scope": "read  write",
            "realm_access": {"roles": ["x"]},
            "n": 3
        });
        let c = c.as_object().unwrap();
        assert_eq!(roles_from(c, "roles"), ["a", "b"]);
        assert_eq!(roles_from(c, "scope"), ["read", "write"]);
        assert_eq!(roles_from(c, "realm_access.roles"), ["x"]);
        assert!(roles_from(c, "n").is_empty());
        assert!(roles_from(c, "missing.path").is_empty());
    }

    #[test]
    fn methods_round_trip() {
        for m in AuthMethod::ALL {
            assert_eq!(m.as_str().parse::<AuthMethod>(), Ok(m));
        }
        assert!("basic".parse::<AuthMethod>().is_err());
    }
}
