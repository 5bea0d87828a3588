//! Authentication: each configured method (`AUTH_TYPE`) turns a request's credentials into a
//! [`Principal`], or refuses it. Methods: `none` (loopback only), `apikey`, `jwt`, `oauth2`,
//! `mtls`.

pub mod apikey;
pub mod gate;
pub mod jwt;
pub mod oauth2;
pub mod policy;
pub mod ratelimit;
pub mod tls;

/// Who is calling: used by authorization, rate limits, the dedup scope and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// A stable identifier (key id, token subject, certificate subject). Never a credential.
    pub id: String,
    pub roles: Vec<String>,
    /// The method that admitted it (`apikey`, `jwt`, `oauth2`, `mtls`, `none`).
    pub method: &'static str,
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
