//! What the server's outbound HTTPS clients trust (JWKS fetches, OAuth2 introspection and
//! userinfo, webhook deliveries): the public roots bundled with the server (webpki-roots), the
//! system's roots (read once at start: `/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`),
//! and the CA certificates of `ISOBOX_CA_BUNDLE` (a PEM file), so that providers and callback
//! receivers behind a company CA can be reached.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The trust of every outbound HTTPS client. `Default`: the bundled public roots only.
#[derive(Clone, Default)]
pub struct OutboundTls {
    /// Roots added to the bundled ones: the system's, then the bundle's.
    extra: Arc<Vec<reqwest::Certificate>>,
    /// How many of `extra` come from the system, and the bundle file (for `Debug`).
    system: usize,
    bundle: Option<PathBuf>,
}

impl fmt::Debug for OutboundTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundTls")
            .field("system_roots", &self.system)
            .field("bundle", &self.bundle)
            .field("bundle_roots", &(self.extra.len() - self.system))
            .finish()
    }
}

impl OutboundTls {
    /// The bundled public roots, the system's roots (unreadable or unusable ones are skipped:
    /// system stores hold odd certificates) and, when given, every certificate of `bundle`.
    /// A bundle that cannot be read, is not PEM, holds no certificate or a certificate that
    /// cannot be a trust anchor is an error naming `ISOBOX_CA_BUNDLE` and the file.
    pub fn load(bundle: Option<&Path>) -> Result<OutboundTls, String> {
        let mut extra = Vec::new();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            if usable_anchor(&cert) {
                if let Ok(c) = reqwest::Certificate::from_der(cert.as_ref()) {
                    extra.push(c);
                }
            }
        }
        let system = extra.len();
        if let Some(path) = bundle {
            for cert in read_bundle(path)? {
                extra.push(reqwest::Certificate::from_der(cert.as_ref()).map_err(|e| {
                    format!(
                        "a certificate of the ISOBOX_CA_BUNDLE file {} is not usable: {e}",
                        path.display()
                    )
                })?);
            }
        }
        Ok(OutboundTls {
            extra: Arc::new(extra),
            system,
            bundle: bundle.map(Path::to_path_buf),
        })
    }

    /// A reqwest client builder (rustls) trusting these roots; the caller adds its timeouts,
    /// redirect policy and the rest.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true);
        for c in self.extra.iter() {
            b = b.add_root_certificate(c.clone());
        }
        b
    }
}

fn usable_anchor(cert: &CertificateDer<'_>) -> bool {
    rustls::RootCertStore::empty().add(cert.clone()).is_ok()
}

fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = format!("the ISOBOX_CA_BUNDLE file {}", path.display());
    let text = std::fs::read(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no PEM certificate"));
    }
    for (i, cert) in certs.iter().enumerate() {
        rustls::RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| {
                format!(
                    "certificate #{} of {what} cannot be a trust anchor: {e}",
                    i + 1
                )
            })?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bundles_are_errors_naming_the_variable_and_the_file() {
        let dir = std::env::temp_dir().join(format!("isobox-outbound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca = {
            let mut p = rcgen::CertificateParams::default();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.self_signed(&rcgen::KeyPair::generate().unwrap())
                .unwrap()
                .pem()
        };
        let cases = [
            dir.join("missing.pem"),
            write("garbage.pem", "not a certificate\n"),
            write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
            write(
                "key.pem",
                &rcgen::KeyPair::generate().unwrap().serialize_pem(),
            ),
            write(
                "not-der.pem",
                "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            ),
        ];
        for path in &cases {
            let err = OutboundTls::load(Some(path)).expect_err("a bad bundle was taken");
            assert!(err.contains("ISOBOX_CA_BUNDLE"), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            // A startup (configuration) error naming the variable.
            let env: std::collections::HashMap<String, String> =
                [("ISOBOX_CA_BUNDLE".to_string(), path.display().to_string())].into();
            let e = crate::config::load(&env).expect_err("a bad bundle was configured");
            assert_eq!(e.var, "ISOBOX_CA_BUNDLE", "{e}");
        }
        let good = OutboundTls::load(Some(&write("ca.pem", &ca))).unwrap();
        assert_eq!(good.extra.len() - good.system, 1);
        good.client_builder().build().unwrap();
        OutboundTls::default().client_builder().build().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
