//! mTLS authentication: the client certificate a connection presented (verified by rustls
//! against `MTLS_CA_CERT` during the handshake) names the principal.

use rustls_pki_types::CertificateDer;

use super::{AuthMethod, Principal};
use crate::transport::PeerCerts;

/// The identity of a client certificate (the leaf, already verified by rustls): its subject
/// CN, else its first DNS or email SAN. No roles; method `mtls`.
pub fn principal_from_cert(cert: &CertificateDer<'_>) -> Option<Principal> {
    use x509_parser::extensions::GeneralName;

    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = x509
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::trim)
        .find(|cn| !cn.is_empty())
        .map(str::to_owned);
    let id = cn.or_else(|| {
        let san = x509.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) if !s.trim().is_empty() => {
                Some(s.trim().to_owned())
            }
            _ => None,
        })
    })?;
    Some(Principal {
        id,
        roles: Vec::new(),
        method: AuthMethod::Mtls,
    })
}

/// The principal of a connection's client certificate, if it presented one.
pub fn principal(peer: &PeerCerts) -> Option<Principal> {
    peer.leaf().and_then(principal_from_cert)
}
