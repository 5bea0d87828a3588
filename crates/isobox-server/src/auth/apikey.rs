//! API keys: from `API_KEYS` (comma list) and/or a keys file (`ISOBOX_API_KEYS_FILE`) that holds
//! only SHA-256 digests with an id and roles, reloaded when it changes (and on SIGHUP).
//!
//! ```toml
//! [[key]]
//! id = "ci-runner"                 # what logs and policies see; never the key
//! sha256 = "9f86d081884c7d65..."   # sha256sum of the key
//! roles = ["user"]
//! ```
//!
//! Every presented key is hashed and compared in constant time against every known digest (no
//! early exit), so timing tells nothing about which or how many bytes matched.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::SystemTime;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthError, AuthMethod, Principal};

#[derive(Clone)]
struct Entry {
    digest: [u8; 32],
    id: String,
    roles: Vec<String>,
}

pub struct ApiKeys {
    header: String,
    from_env: Vec<Entry>,
    file: Option<PathBuf>,
    loaded: RwLock<(Vec<Entry>, Option<SystemTime>)>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    id: String,
    sha256: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<FileKey>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

fn load_file(path: &PathBuf) -> Result<Vec<Entry>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: KeysFile = toml::from_str(&text)
        .map_err(|e| format!("{} is not a valid keys file: {e}", path.display()))?;
    file.key
        .into_iter()
        .map(|k| {
            let digest = parse_hex32(&k.sha256)
                .ok_or_else(|| format!("key `{}`: sha256 must be 64 hex digits", k.id))?;
            Ok(Entry {
                digest,
                id: k.id,
                roles: k.roles,
            })
        })
        .collect()
}

fn mtime(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ApiKeys {
    /// `env_keys`: the raw `API_KEYS` list; each gets the id `key-<first 8 hex of its sha256>`
    /// and `default_roles`.
    pub fn new(
        header: &str,
        env_keys: &[String],
        default_roles: &[String],
        file: Option<PathBuf>,
    ) -> Result<ApiKeys, String> {
        let from_env = env_keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| {
                let d = digest(k);
                Entry {
                    digest: d,
                    id: format!("key-{}", &hex::encode(d)[..8]),
                    roles: default_roles.to_vec(),
                }
            })
            .collect();
        let loaded = match &file {
            Some(p) => (load_file(p)?, mtime(p)),
            None => (Vec::new(), None),
        };
        Ok(ApiKeys {
            header: header.to_ascii_lowercase(),
            from_env,
            file,
            loaded: RwLock::new(loaded),
        })
    }

    /// Re-reads the keys file if it changed; a broken file keeps the old keys.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(p) = &self.file else {
            return Ok(false);
        };
        let now = mtime(p);
        if self.loaded.read().map(|l| l.1 == now).unwrap_or(false) {
            return Ok(false);
        }
        let keys = load_file(p)?;
        if let Ok(mut l) = self.loaded.write() {
            *l = (keys, now);
        }
        Ok(true)
    }

    pub fn header(&self) -> &str {
        &self.header
    }

    /// `None` when the request carries no key header.
    pub fn check(&self, headers: &HeaderMap) -> Option<Result<Principal, AuthError>> {
        let values: Vec<_> = headers.get_all(self.header.as_str()).iter().collect();
        if values.is_empty() {
            return None;
        }
        if values.len() > 1 {
            return Some(Err(AuthError::Invalid("more than one API key".into())));
        }
        let Ok(key) = values[0].to_str() else {
            return Some(Err(AuthError::Invalid("malformed API key".into())));
        };
        if key.trim().is_empty() {
            return Some(Err(AuthError::Invalid("empty API key".into())));
        }
        let d = digest(key);
        let file_keys = self.loaded.read().map(|l| l.0.clone()).unwrap_or_default();
        let mut found: Option<Entry> = None;
        for e in self.from_env.iter().chain(file_keys.iter()) {
            // Constant time per comparison, and no early exit over the list.
            if bool::from(e.digest.ct_eq(&d)) && found.is_none() {
                found = Some(e.clone());
            }
        }
        Some(match found {
            Some(e) => Ok(Principal {
                id: e.id,
                roles: e.roles,
                method: AuthMethod::ApiKey,
            }),
            None => Err(AuthError::Invalid("unknown API key".into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn env_and_file_keys() {
        let dir = std::env::temp_dir().join(format!("isobox-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keys.toml");
        std::fs::write(
            &file,
            format!(
                "[[key]]\nid = \"alice\"\nsha256 = \"{}\"\nroles = [\"admin\"]\n",
                hex::encode(digest("alice-key"))
            ),
        )
        .unwrap();
        let keys = ApiKeys::new(
            "X-API-Key",
            &["env-key-1".into()],
            &["user".into()],
            Some(file.clone()),
        )
        .unwrap();
        let p = keys
            .check(&headers(&[("x-api-key", "alice-key")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.id.as_str(), p.roles.clone()),
            ("alice", vec!["admin".to_string()])
        );
        let p = keys
            .check(&headers(&[("X-API-KEY", "env-key-1")]))
            .unwrap()
            .unwrap();
        assert!(p.id.starts_with("key-") && !p.id.contains("env-key-1"));
        assert!(keys.check(&headers(&[])).is_none());
        for bad in ["wrong", "", "   ", "ENV-KEY-1", "env-key-1 "] {
            assert!(
                matches!(keys.check(&headers(&[("x-api-key", bad)])), Some(Err(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            keys.check(&headers(&[("x-api-key", "env-key-1"), ("x-api-key", "x")])),
            Some(Err(_))
        ));
        // Reload: a new key appears, the old one goes.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(
            &file,
            format!(
                "[[key]]\nid = \"bob\"\nsha256 = \"{}\"\n",
                hex::encode(digest("bob-key"))
            ),
        )
        .unwrap();
        let t = SystemTime::now() + std::time::Duration::from_secs(2);
        let f = std::fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(t).unwrap();
        assert!(keys.reload().unwrap());
        assert_eq!(
            keys.check(&headers(&[("x-api-key", "bob-key")]))
                .unwrap()
                .unwrap()
                .id,
            "bob"
        );
        assert!(keys
            .check(&headers(&[("x-api-key", "alice-key")]))
            .unwrap()
            .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
