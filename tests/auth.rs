//! Authentication, authorization and rate limits through the real server (API keys and the
//! permission policy here; JWT, OAuth2 and mTLS have their own real-provider tests next to
//! their modules).

use crate::common::{api_keys_toml, TempDir, TestServer};

use std::collections::HashMap;

use serde_json::{json, Value};

async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    post_to(url, "execute", headers, body).await
}

/// POST `body` to `/api/v1/<route>` with `headers`: status, headers, JSON body.
async fn post_to(
    url: &str,
    route: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = reqwest::Client::new()
        .post(format!("{url}/api/v1/{route}"))
        .json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let v = r.json().await.unwrap_or(Value::Null);
    (status, h, v)
}

fn hello(lang: &str) -> Value {
    let code = match lang {
        "bash" => "echo hi",
        _ => "print('hi')",
    };
    json!({"language": lang, "code": code})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_admit_only_known_keys() {
    let s = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-alpha,k-beta"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "100/min"),
    ])
    .await;
    let u = &s.url;
    // No credential, wrong key, empty key, key with spaces, key in the wrong header, two keys.
    for headers in [
        vec![],
        vec![("X-API-Key", "k-wrong")],
        vec![("X-API-Key", "")],
        vec![("X-API-Key", "K-ALPHA")],
        vec![("Authorization", "Bearer k-alpha")],
        vec![("X-Api-Token", "k-alpha")],
    ] {
        let (status, h, body) = post(u, &headers, hello("python")).await;
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert_eq!(body["error"], "unauthorized", "{body}");
        assert!(body["message"].as_str().unwrap().len() > 5);
        assert!(
            !body.to_string().contains("k-alpha"),
            "the key was echoed: {body}"
        );
        assert!(h.get("www-authenticate").is_some());
    }
    // Header names are case-insensitive.
    for name in ["X-API-Key", "x-api-key", "X-API-KEY"] {
        let (status, _, body) = post(u, &[(name, "k-beta")], hello("python")).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["stdout"], "hi\n");
    }
    // Public endpoints stay public; the API needs a key everywhere.
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{u}/health")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(format!("{u}/metrics")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(format!("{u}/api/v1/languages"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = c
        .get(format!("{u}/api/v1/languages"))
        .header("x-api-key", "k-alpha")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_file_with_roles_and_policy() {
    let dir = TempDir::new("authpolicy");
    let keys = dir.file(
        "keys.toml",
        &api_keys_toml(&[
            ("student-1", "key-student", &["student"]),
            ("teacher", "key-teacher", &["teacher"]),
            ("nobody", "key-nobody", &[]),
        ]),
    );
    let policy = dir.file(
        "policy.toml",
        r#"
[[role]]
name = "student"
[[role.permission]]
resource = "code_execution"
action = "execute"
conditions = [
  { field = "language", operator = "in", value = "python" },
  { field = "max_execution_time", operator = "lte", value = "3" },
]
[[role]]
name = "teacher"
[[role.permission]]
resource = "code_execution"
action = "*"
"#,
    );
    let s = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("ISOBOX_API_KEYS_FILE", keys.to_str().unwrap()),
        ("ISOBOX_POLICY", policy.to_str().unwrap()),
    ])
    .await;
    let u = &s.url;
    let student = [("X-API-Key", "key-student")];
    // Within the student's rules: python, at most 3 s (the default limit is 5 s).
    let mut short = hello("python");
    short["limits"] = json!({"timeout_ms": 3000});
    let (status, _, body) = post(u, &student, short).await;
    assert_eq!(status, 200, "{body}");
    let mut bash = hello("bash");
    bash["limits"] = json!({"timeout_ms": 3000});
    let (status, _, body) = post(u, &student, bash).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"].as_str().unwrap().contains("language"),
        "{body}"
    );
    assert!(
        !body.to_string().contains("python"),
        "the policy leaked: {body}"
    );
    let mut long = hello("python");
    long["limits"] = json!({"timeout_ms": 5000});
    let (status, _, body) = post(u, &student, long.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_execution_time"),
        "{body}"
    );
    // The teacher may do both; a key without roles may do nothing (default deny).
    let (status, _, body) = post(u, &[("X-API-Key", "key-teacher")], long).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        post(u, &[("X-API-Key", "key-teacher")], hello("bash"))
            .await
            .0,
        200
    );
    assert_eq!(
        post(u, &[("X-API-Key", "key-nobody")], hello("python"))
            .await
            .0,
        403
    );
    // validate is a separate action: not granted to students.
    let r = reqwest::Client::new()
        .post(format!("{u}/api/v1/validate"))
        .header("X-API-Key", "key-student")
        .json(&hello("python"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_per_principal_and_failed_logins_per_address() {
    let s = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-one,k-two"),
        ("ISOBOX_RATE_LIMIT", "3/min"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "4/min"),
        ("DEDUP_ENABLED", "true"),
    ])
    .await;
    let u = &s.url;
    for i in 0..3 {
        let (status, h, _) = post(u, &[("X-API-Key", "k-one")], hello("python")).await;
        assert_eq!(status, 200);
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(
            h["ratelimit-remaining"].to_str().unwrap(),
            (2 - i).to_string()
        );
    }
    let (status, h, body) = post(u, &[("X-API-Key", "k-one")], hello("python")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(h["ratelimit-remaining"], "0");
    // Another principal has its own budget.
    assert_eq!(
        post(u, &[("X-API-Key", "k-two")], hello("python")).await.0,
        200
    );

    // Brute force: after 4 failures from this address, further guesses are throttled, but a
    // good key still gets in (many users may share the address).
    for _ in 0..4 {
        assert_eq!(
            post(u, &[("X-API-Key", "guess")], hello("python")).await.0,
            401
        );
    }
    let (status, h, body) = post(u, &[("X-API-Key", "guess")], hello("python")).await;
    assert_eq!(status, 429, "{body}");
    assert!(h.get("retry-after").is_some());
    let (status, _, body) = post(u, &[("X-API-Key", "k-two")], hello("python")).await;
    assert_eq!(status, 200, "a valid key was locked out: {body}");
    // The server is fine.
    assert_eq!(
        reqwest::get(format!("{u}/health")).await.unwrap().status(),
        200
    );
    s.stop().await;
}

/// Behind a trusted proxy (`ISOBOX_TRUSTED_PROXIES`), failed logins count per client as the
/// proxy names it in `X-Forwarded-For` (its own, rightmost entry: a client cannot choose it);
/// without that setting the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_count_per_client_behind_a_trusted_proxy() {
    let common = [
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-one"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "3/min"),
        ("ISOBOX_RATE_LIMIT", "1000/min"),
    ];
    let xff = |v: &'static str| [("X-API-Key", "guess"), ("X-Forwarded-For", v)];
    let mut vars = common.to_vec();
    vars.push(("ISOBOX_TRUSTED_PROXIES", "127.0.0.1"));
    let s = TestServer::start(&vars).await;
    let u = &s.url;
    for _ in 0..3 {
        assert_eq!(post(u, &xff("203.0.113.7"), hello("python")).await.0, 401);
    }
    assert_eq!(post(u, &xff("203.0.113.7"), hello("python")).await.0, 429);
    // Another client behind the same proxy has its own budget.
    assert_eq!(post(u, &xff("203.0.113.8"), hello("python")).await.0, 401);
    // A client naming someone else in front of the proxy's entry is still itself.
    assert_eq!(
        post(u, &xff("203.0.113.8, 203.0.113.7"), hello("python"))
            .await
            .0,
        429
    );
    // A valid key from the throttled client gets in.
    let ok = [("X-API-Key", "k-one"), ("X-Forwarded-For", "203.0.113.7")];
    assert_eq!(post(u, &ok, hello("python")).await.0, 200);
    s.stop().await;

    // Without trusted proxies the header is ignored: every "client" is the one peer.
    let s = TestServer::start(&common).await;
    let u = &s.url;
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(post(u, &xff(client), hello("python")).await.0, 401);
    }
    assert_eq!(post(u, &xff("198.51.100.4"), hello("python")).await.0, 429);
    s.stop().await;
}

#[test]
fn configuration_refuses_incomplete_auth_setups() {
    let load = |pairs: &[(&str, &str)]| {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        isobox_server::config::load(&env)
            .map(|_| ())
            .map_err(|e| e.var)
    };
    assert_eq!(load(&[("AUTH_TYPE", "apikey")]), Err("API_KEYS".into()));
    assert_eq!(
        load(&[("AUTH_TYPE", "jwt")]),
        Err("JWT_PUBLIC_KEY_URL".into())
    );
    assert_eq!(
        load(&[("AUTH_TYPE", "oauth2")]),
        Err("OAUTH2_INTROSPECTION_URL".into())
    );
    assert_eq!(load(&[("AUTH_TYPE", "mtls")]), Err("MTLS_CA_CERT".into()));
    assert_eq!(
        load(&[("AUTH_TYPE", "none,apikey"), ("API_KEYS", "x")]),
        Err("AUTH_TYPE".into())
    );
    assert_eq!(load(&[("TLS_CERT", "/x")]), Err("TLS_CERT".into()));
    assert_eq!(
        load(&[
            ("AUTH_TYPE", "apikey"),
            ("API_KEYS", "x"),
            ("ISOBOX_RATE_LIMIT", "fast")
        ]),
        Err("ISOBOX_RATE_LIMIT".into())
    );
    // JWT without an issuer, without an audience or with keys fetched in clear: refused
    // unless explicitly allowed.
    let jwt = [("AUTH_TYPE", "apikey,jwt"), ("API_KEYS", "x")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = jwt.to_vec();
        v.extend_from_slice(extra);
        load(&v)
    };
    let https = ("JWT_PUBLIC_KEY_URL", "https://idp.test/jwks");
    let (iss, aud) = (
        ("JWT_ISSUER_URL", "https://idp.test"),
        ("JWT_AUDIENCE", "isobox"),
    );
    assert_eq!(with(&[https, aud]), Err("JWT_ISSUER_URL".into()));
    assert_eq!(with(&[https, iss]), Err("JWT_AUDIENCE".into()));
    assert_eq!(
        with(&[("JWT_PUBLIC_KEY_URL", "http://idp.test/jwks"), iss, aud]),
        Err("JWT_PUBLIC_KEY_URL".into())
    );
    assert!(with(&[https, iss, aud]).is_ok());
    assert!(with(&[
        ("JWT_PUBLIC_KEY_URL", "http://127.0.0.1:1/jwks"),
        ("ISOBOX_JWT_ALLOW_INSECURE", "true")
    ])
    .is_ok());
    assert!(load(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "x"),
        ("ISOBOX_BIND", "0.0.0.0")
    ])
    .is_ok());
}

/// A loopback identity provider: a JWKS with one EC key, and RFC 7662 introspection.
async fn provider(jwk: Value) -> String {
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/jwks", get(move || async move { axum::Json(json!({ "keys": [jwk] })) }))
        .route(
            "/introspect",
            post(|headers: axum::http::HeaderMap, form: axum::Form<HashMap<String, String>>| async move {
                use base64::Engine as _;
                let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("isobox:client-secret"));
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
                    return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({}))).into_response();
                }
                let active = form.0.get("token").map(String::as_str) == Some("opaque-good");
                let body = if active { json!({"active": true, "sub": "bob", "roles": ["user"]}) } else { json!({"active": false}) };
                (axum::http::StatusCode::OK, axum::Json(body)).into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bearer_tokens_go_to_jwt_or_oauth2() {
    use base64::Engine as _;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])});
    let idp = provider(jwk).await;
    let s = TestServer::start(&[
        ("AUTH_TYPE", "jwt,oauth2"),
        // The test's provider speaks plain HTTP on loopback.
        ("ISOBOX_JWT_ALLOW_INSECURE", "true"),
        ("JWT_PUBLIC_KEY_URL", &format!("{idp}/jwks")),
        ("JWT_ISSUER_URL", "https://idp.test"),
        ("JWT_AUDIENCE", "isobox"),
        ("OAUTH2_INTROSPECTION_URL", &format!("{idp}/introspect")),
        ("OAUTH2_CLIENT_ID", "isobox"),
        ("OAUTH2_CLIENT_SECRET", "client-secret"),
    ])
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = |claims: Value| encode(&header, &claims, &key).unwrap();
    let good = token(
        json!({"sub": "alice", "iss": "https://idp.test", "aud": "isobox", "exp": now + 300, "roles": ["user"]}),
    );
    let expired = token(
        json!({"sub": "alice", "iss": "https://idp.test", "aud": "isobox", "exp": now - 3600}),
    );
    let wrong_aud =
        token(json!({"sub": "alice", "iss": "https://idp.test", "aud": "other", "exp": now + 300}));
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(format!(r#"{{"sub":"alice","exp":{}}}"#, now + 300).as_bytes())
    );
    let u = &s.url;
    let bearer = |t: &str| format!("Bearer {t}");
    for (t, want) in [
        (good.as_str(), 200),
        (expired.as_str(), 401),
        (wrong_aud.as_str(), 401),
        (unsigned.as_str(), 401),
        ("opaque-good", 200),
        ("opaque-unknown", 401),
    ] {
        let (status, _, body) = post(u, &[("Authorization", &bearer(t))], hello("python")).await;
        assert_eq!(status, want, "{t}: {body}");
        assert!(!body.to_string().contains(t), "the token was echoed");
    }
    s.stop().await;

    // The provider down: fail closed with 503, never admit.
    let dead = TestServer::start(&[
        ("AUTH_TYPE", "oauth2"),
        ("OAUTH2_USERINFO_URL", "http://127.0.0.1:9/userinfo"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "100/min"),
    ])
    .await;
    let (status, _, body) = post(
        &dead.url,
        &[("Authorization", "Bearer opaque-good")],
        hello("python"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "auth_unavailable");
    dead.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_principals_through_the_server() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = TempDir::new("mtls");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "IsoBox test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "localhost");
    let (client_pem, client_key) = leaf(vec![], "grader-7");
    let ca_file = dir.file("ca.pem", &ca.pem());
    let cert_file = dir.file("server.pem", &server_pem);
    let key_file = dir.file("server.key", &server_key);
    let s = TestServer::start(&[
        ("AUTH_TYPE", "mtls"),
        ("TLS_CERT", cert_file.to_str().unwrap()),
        ("TLS_KEY", key_file.to_str().unwrap()),
        ("MTLS_CA_CERT", ca_file.to_str().unwrap()),
        ("ISOBOX_LOG_FORMAT", "json"),
    ])
    .await;
    let https = s.url.replace("http://127.0.0.1", "https://localhost");
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let identity =
        reqwest::Identity::from_pem(format!("{client_pem}{client_key}").as_bytes()).unwrap();
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let resolve = |b: reqwest::ClientBuilder| {
        b.resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
    };
    let client = resolve(
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .identity(identity),
    )
    .build()
    .unwrap();
    let r = client
        .post(format!("{https}/api/v1/execute"))
        .json(&hello("python"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["stdout"], "hi\n");
    // No client certificate: the handshake is refused; plain HTTP gets no answer.
    let anonymous = resolve(reqwest::Client::builder().add_root_certificate(root))
        .build()
        .unwrap();
    assert!(anonymous
        .post(format!("{https}/api/v1/execute"))
        .json(&hello("python"))
        .send()
        .await
        .is_err());
    assert!(reqwest::Client::new()
        .get(format!("{}/health", s.url))
        .send()
        .await
        .is_err());
    // The server keeps serving.
    let r = client.get(format!("{https}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// A test PKI for the TLS tests: a CA, a server certificate for `localhost`, client
/// certificates of that CA and of another one, written to a temp dir.
struct Pki {
    dir: TempDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    other: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Leaf {
    fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert, self.key).as_bytes()).unwrap()
    }
}

fn test_ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let ca = test_ca("IsoBox test CA");
        let ca_pem = ca.pem();
        Pki {
            dir: TempDir::new(tag),
            ca,
            ca_pem,
            other: test_ca("Some other CA"),
        }
    }

    /// A leaf of `issuer`: a server certificate when `sans` is not empty, else a client's.
    fn leaf_of(
        issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        cn: &str,
        sans: &[&str],
        serial: Option<u64>,
    ) -> Leaf {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if sans.is_empty() {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = serial.map(rcgen::SerialNumber::from);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self, cn: &str) -> Leaf {
        Pki::leaf_of(&self.ca, cn, &["localhost", "127.0.0.1"], None)
    }

    fn client(&self, cn: &str, serial: u64) -> Leaf {
        Pki::leaf_of(&self.ca, cn, &[], Some(serial))
    }

    fn other_client(&self, cn: &str) -> Leaf {
        Pki::leaf_of(&self.other, cn, &[], None)
    }

    /// A CRL of the CA revoking `serials`.
    fn crl(&self, number: u64, serials: &[u64]) -> String {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
            SerialNumber,
        };
        CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.ca)
        .unwrap()
        .pem()
        .unwrap()
    }

    /// Writes `text` to `name` in the temp dir (replacing it atomically) and returns the path.
    fn write(&self, name: &str, text: &str) -> String {
        let tmp = self.dir.file(&format!(".{name}.tmp"), text);
        let path = self.dir.0.join(name);
        std::fs::rename(tmp, &path).unwrap();
        path.to_string_lossy().into_owned()
    }
}

/// An HTTPS client of `port` on loopback that trusts `ca` (only), presents `identity` if any,
/// keeps no idle connection (each request is a new TLS connection) and names the server
/// `localhost`.
fn https_client(port: u16, ca: &str, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(20));
    if let Some(leaf) = identity {
        b = b.identity(leaf.identity());
    }
    b.build().unwrap()
}

/// `AUTH_TYPE=mtls,apikey`: the client certificate is optional at the handshake (another
/// method may admit), checked when present; with `mtls` alone it stays required.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_with_other_methods_makes_the_client_certificate_optional() {
    let pki = Pki::new("mtls-optional");
    let server = pki.server("localhost");
    let alice = pki.client("alice", 0x1001);
    let mallory = pki.other_client("mallory");
    let cert = pki.write("server.pem", &server.cert);
    let key = pki.write("server.key", &server.key);
    let ca = pki.write("ca.pem", &pki.ca_pem);
    let tls = [
        ("TLS_CERT", cert.as_str()),
        ("TLS_KEY", key.as_str()),
        ("MTLS_CA_CERT", ca.as_str()),
        ("ISOBOX_AUTH_FAIL_LIMIT", "1000/min"),
    ];
    let mut vars = tls.to_vec();
    vars.extend([("AUTH_TYPE", "mtls,apikey"), ("API_KEYS", "the-key")]);
    let s = TestServer::start(&vars).await;
    let url = format!("https://localhost:{}", s.addr.port());
    let execute = |client: reqwest::Client, key: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut rb = client
                .post(format!("{url}/api/v1/execute"))
                .json(&hello("python"));
            if let Some(k) = key {
                rb = rb.header("X-API-Key", k);
            }
            rb.send().await.map(|r| r.status().as_u16())
        }
    };
    let port = s.addr.port();
    let anonymous = || https_client(port, &pki.ca_pem, None);
    // No certificate: a valid key admits, no key is 401, /health is public.
    assert_eq!(execute(anonymous(), Some("the-key")).await.unwrap(), 200);
    assert_eq!(execute(anonymous(), None).await.unwrap(), 401);
    assert_eq!(execute(anonymous(), Some("wrong")).await.unwrap(), 401);
    let health = anonymous()
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // A certificate of the CA admits as mtls, without a key.
    assert_eq!(
        execute(https_client(port, &pki.ca_pem, Some(&alice)), None)
            .await
            .unwrap(),
        200
    );
    // A certificate of another CA is refused at the handshake, even with a good key.
    assert!(
        execute(
            https_client(port, &pki.ca_pem, Some(&mallory)),
            Some("the-key")
        )
        .await
        .is_err(),
        "an untrusted client certificate was accepted"
    );
    s.stop().await;

    // `mtls` alone: the certificate stays required at the handshake.
    let mut vars = tls.to_vec();
    vars.push(("AUTH_TYPE", "mtls"));
    let s = TestServer::start(&vars).await;
    let port = s.addr.port();
    let url = format!("https://localhost:{port}");
    assert!(https_client(port, &pki.ca_pem, None)
        .get(format!("{url}/health"))
        .send()
        .await
        .is_err());
    let r = https_client(port, &pki.ca_pem, Some(&alice))
        .post(format!("{url}/api/v1/execute"))
        .json(&hello("python"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// Polls `check` every 50 ms until it returns true; false after `limit`.
async fn eventually<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The TLS files are reloaded without a restart (polled, here every 100 ms): a client revoked
/// by a new CRL is refused on its next connection, a new certificate and key are served, and a
/// broken replacement keeps the configuration in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_files_are_reloaded_without_a_restart() {
    let pki = Pki::new("tls-reload");
    let server_a = pki.server("server-a");
    let alice = pki.client("alice", 0x2001);
    let bob = pki.client("bob", 0x2002);
    let cert = pki.write("server.pem", &server_a.cert);
    let key = pki.write("server.key", &server_a.key);
    let ca = pki.write("ca.pem", &pki.ca_pem);
    let crl = pki.write("crl.pem", &pki.crl(1, &[0x2999]));
    let s = TestServer::start(&[
        ("AUTH_TYPE", "mtls"),
        ("TLS_CERT", &cert),
        ("TLS_KEY", &key),
        ("MTLS_CA_CERT", &ca),
        ("ISOBOX_MTLS_CRL", &crl),
        ("ISOBOX_TLS_RELOAD_MS", "100"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "1000/min"),
    ])
    .await;
    let port = s.addr.port();
    let url = format!("https://localhost:{port}/health");
    // GET /health on a new connection trusting `ca` with `who`'s certificate: admitted?
    let admitted = |ca: &str, who: &Leaf| {
        let client = https_client(port, ca, Some(who));
        let url = url.clone();
        async move {
            match client.get(url).send().await {
                Ok(r) => r.status() == 200,
                Err(_) => false,
            }
        }
    };
    let other_ca = pki.other.pem();
    let wait = std::time::Duration::from_secs(10);
    assert!(admitted(&pki.ca_pem, &alice).await);
    assert!(admitted(&pki.ca_pem, &bob).await);
    // One client kept across the reload: its TLS session cache would offer resumption.
    let alice_kept = https_client(port, &pki.ca_pem, Some(&alice));
    let kept_admitted = || async {
        match alice_kept.get(url.clone()).send().await {
            Ok(r) => r.status() == 200,
            Err(_) => false,
        }
    };
    assert!(kept_admitted().await);

    // (a) A new CRL revokes alice: her next connection is refused, bob's still admitted.
    pki.write("crl.pem", &pki.crl(2, &[0x2001]));
    assert!(
        eventually(wait, || async { !admitted(&pki.ca_pem, &alice).await }).await,
        "a client revoked by the new CRL is still admitted"
    );
    assert!(admitted(&pki.ca_pem, &bob).await);
    // No session from before the reload is resumed past the new CRL.
    assert!(!kept_admitted().await);

    // (c) Broken replacements (a CRL that is not PEM, then a key of another certificate) are
    // not taken: the configuration in use stays, alice still refused, bob admitted.
    // (The reload the poll makes is also asked for here, to see each file refused.)
    let reloader = s.app.tls.clone().expect("TLS is configured");
    pki.write("crl.pem", "this is not a CRL\n");
    let err = reloader.reload().expect_err("a broken CRL was taken");
    assert!(err.contains("CRL"), "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(admitted(&pki.ca_pem, &bob).await);
    assert!(!admitted(&pki.ca_pem, &alice).await);
    pki.write("crl.pem", &pki.crl(3, &[0x2001]));
    let server_b = Pki::leaf_of(&pki.other, "server-b", &["localhost", "127.0.0.1"], None);
    pki.write("server.pem", &server_b.cert);
    let err = reloader
        .reload()
        .expect_err("a mismatched key pair was taken");
    assert!(err.contains("TLS_KEY"), "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        admitted(&pki.ca_pem, &bob).await,
        "a mismatched key pair was taken"
    );
    assert!(!admitted(&pki.ca_pem, &alice).await);

    // (b) With the new key in place too, the new certificate (of another CA) is served.
    pki.write("server.key", &server_b.key);
    assert!(
        eventually(wait, || async { admitted(&other_ca, &bob).await }).await,
        "the new server certificate is not served"
    );
    assert!(!admitted(&pki.ca_pem, &bob).await);
    assert!(!admitted(&other_ca, &alice).await);
    s.stop().await;
}

/// SIGHUP reloads the TLS files of a running `isobox serve` at once (the poll is set to an
/// hour here, so the reload can only come from the signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_reloads_the_crl_of_a_running_server() {
    let pki = Pki::new("tls-sighup");
    let server = pki.server("server");
    let alice = pki.client("alice", 0x3001);
    let bob = pki.client("bob", 0x3002);
    let cert = pki.write("server.pem", &server.cert);
    let key = pki.write("server.key", &server.key);
    let ca = pki.write("ca.pem", &pki.ca_pem);
    let crl = pki.write("crl.pem", &pki.crl(1, &[]));
    let node = crate::common::IsoboxProcess::start(
        "serve",
        &[
            ("AUTH_TYPE", "mtls"),
            ("ISOBOX_WARM_POOL", "0"),
            ("TLS_CERT", &cert),
            ("TLS_KEY", &key),
            ("MTLS_CA_CERT", &ca),
            ("ISOBOX_MTLS_CRL", &crl),
            ("ISOBOX_TLS_RELOAD_MS", "3600000"),
        ],
    );
    let port: u16 = node.url.rsplit(':').next().unwrap().parse().unwrap();
    let url = format!("https://localhost:{port}/health");
    let admitted = |who: &Leaf| {
        let client = https_client(port, &pki.ca_pem, Some(who));
        let url = url.clone();
        async move {
            match client.get(url).send().await {
                Ok(r) => r.status() == 200,
                Err(_) => false,
            }
        }
    };
    assert!(admitted(&alice).await);
    pki.write("crl.pem", &pki.crl(2, &[0x3001]));
    // Not polled for an hour: still admitted until the signal.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(admitted(&alice).await);
    node.signal(libc::SIGHUP);
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            !admitted(&alice).await
        })
        .await,
        "SIGHUP did not reload the CRL"
    );
    assert!(admitted(&bob).await);
    let (status, _) = node.stop();
    assert!(status.success(), "{status:?}");
}

/// An identity provider and webhook receiver over HTTPS on 127.0.0.1, with a certificate of
/// `pki`'s CA (a private CA no public or system root store holds): a JWKS with `jwk`, userinfo
/// admitting `Bearer opaque-good`, and `/hook` reporting each callback on the channel.
async fn https_provider(
    pki: &Pki,
    jwk: Value,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    use axum::routing::{get, post};
    let (hooks, received) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/jwks",
            get(move || async move { axum::Json(json!({ "keys": [jwk] })) }),
        )
        .route(
            "/userinfo",
            get(|headers: axum::http::HeaderMap| async move {
                let good = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Bearer opaque-good");
                if good {
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"sub": "bob", "roles": ["user"]})),
                    )
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({})))
                }
            }),
        )
        .route(
            "/hook",
            post(move |body: axum::body::Bytes| async move {
                let _ = hooks.send(body.to_vec());
                "ok"
            }),
        );
    let server = pki.server("idp");
    let tls = isobox_server::transport::server_config(&isobox_server::transport::TlsSettings {
        cert: pki.write("idp.pem", &server.cert).into(),
        key: pki.write("idp.key", &server.key).into(),
        client_ca: None,
        crl: None,
        client_cert_optional: false,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(isobox_server::transport::https::serve(
        listener,
        app,
        tls,
        Default::default(),
        std::future::pending(),
    ));
    (url, received)
}

/// Outbound HTTPS (JWKS, OAuth2 userinfo, webhooks) trusts the system's roots and
/// `ISOBOX_CA_BUNDLE`: a provider with a certificate of a private CA is unreachable without
/// the bundle (503, never admitted; no callback) and reached with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbound_https_trusts_the_ca_bundle() {
    use base64::Engine as _;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let jwt = encode(
        &header,
        &json!({"sub": "alice", "exp": now + 300, "roles": ["user"], "iss": "https://idp.test", "aud": "isobox"}),
        &EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();

    let pki = Pki::new("ca-bundle");
    let (idp, mut hooks) = https_provider(&pki, jwk).await;
    let bundle = pki.write("bundle.pem", &pki.ca_pem);
    let jwks_url = format!("{idp}/jwks");
    let userinfo_url = format!("{idp}/userinfo");
    let auth = [
        ("AUTH_TYPE", "jwt,oauth2,apikey"),
        ("API_KEYS", "the-key"),
        ("JWT_PUBLIC_KEY_URL", jwks_url.as_str()),
        ("JWT_ISSUER_URL", "https://idp.test"),
        ("JWT_AUDIENCE", "isobox"),
        ("OAUTH2_USERINFO_URL", userinfo_url.as_str()),
        ("ISOBOX_AUTH_FAIL_LIMIT", "1000/min"),
        ("ISOBOX_WEBHOOK_SECRET", "hook-secret"),
        ("ISOBOX_WEBHOOK_ALLOW", "127.0.0.1/32"),
        ("ISOBOX_WEBHOOK_ATTEMPTS", "1"),
    ];
    let hooked = || {
        let mut body = hello("python");
        body["callback_url"] = json!(format!("{idp}/hook"));
        body
    };
    let run = |s: &TestServer, token: &str| {
        let url = s.url.clone();
        let token = token.to_string();
        async move {
            post(
                &url,
                &[("Authorization", &format!("Bearer {token}"))],
                hello("python"),
            )
            .await
        }
    };

    // Without the bundle: the provider's certificate is not trusted, the provider is
    // unreachable, the tokens are not admitted (503, fail closed).
    let s = TestServer::start(&auth).await;
    for token in [jwt.as_str(), "opaque-good"] {
        let (status, _, body) = run(&s, token).await;
        assert_eq!(status, 503, "{token}: {body}");
        assert_eq!(body["error"], "auth_unavailable");
    }
    // A callback to the receiver (submitted with an API key) is not delivered.
    let (status, _, v) = post_to(&s.url, "executions", &[("X-API-Key", "the-key")], hooked()).await;
    assert_eq!(status, 202, "{v}");
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(3), hooks.recv())
            .await
            .is_err(),
        "a callback reached a receiver whose CA is not trusted"
    );
    s.stop().await;

    // With ISOBOX_CA_BUNDLE naming the CA: both admitted.
    let mut vars = auth.to_vec();
    vars.push(("ISOBOX_CA_BUNDLE", bundle.as_str()));
    let s = TestServer::start(&vars).await;
    for token in [jwt.as_str(), "opaque-good"] {
        let (status, _, body) = run(&s, token).await;
        assert_eq!(status, 200, "{token}: {body}");
    }
    // A callback to the same HTTPS receiver is delivered.
    let (status, _, v) = post_to(&s.url, "executions", &[("X-API-Key", "the-key")], hooked()).await;
    assert_eq!(status, 202, "{v}");
    let payload = tokio::time::timeout(std::time::Duration::from_secs(30), hooks.recv())
        .await
        .expect("the callback over HTTPS was not delivered")
        .unwrap();
    let v: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(v["stdout"], "hi\n");
    s.stop().await;
}
