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
    let mut rb = reqwest::Client::new()
        .post(format!("{url}/api/v1/execute"))
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
