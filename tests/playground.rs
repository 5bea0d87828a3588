//! The Playground over HTTP: the page and its assets are served from the binary with the right
//! types and a strict Content-Security-Policy, outside the authentication gate, while the API
//! keeps its own headers. (`tests/browser.rs` drives the page in a real browser.)

use crate::common::TestServer;

use reqwest::header::HeaderMap;

const CSP_DIRECTIVES: &[&str] = &[
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
];

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = reqwest::Client::new().get(url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The headers every Playground file carries.
fn assert_page_headers(h: &HeaderMap, what: &str) {
    let csp = header(h, "content-security-policy");
    for d in CSP_DIRECTIVES {
        assert!(
            csp.split(';').any(|p| p.trim() == *d),
            "{what}: CSP lacks `{d}`: {csp}"
        );
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    assert_eq!(header(h, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(h, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header(h, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(h, "cache-control"), "no-cache", "{what}");
    assert!(header(h, "etag").starts_with('"'), "{what}: ETag");
    assert!(!header(h, "x-request-id").is_empty(), "{what}");
}

/// The `/assets/...` files the page names in `src=` and `href=`.
fn referenced_assets(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let value = &rest[..rest.find('"').unwrap()];
            if value.starts_with("/assets/") {
                found.push(value.to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_with_a_strict_csp() {
    let srv = TestServer::start(&[]).await;
    let u = &srv.url;

    let resp = get(&format!("{u}/"), &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers().clone();
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    assert_page_headers(&h, "/");
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<title>IsoBox Playground</title>"));

    // No inline script, style or event handler: the CSP would block them.
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..i + html[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/assets/"), "inline script: {tag}");
        assert!(
            html[i + tag.len()..].starts_with("></script>"),
            "a script element with content: {tag}"
        );
    }
    assert!(!html.contains("<style"), "inline style element");
    assert!(!html.contains(" style="), "inline style attribute");
    assert!(
        !html.contains(" onclick=") && !html.contains(" onload="),
        "inline handler"
    );
    // Nothing from elsewhere (air-gapped): no absolute URL at all.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("//cdn"), "a CDN?");

    // Every control is labelled (a <label for=...> or an aria attribute).
    for (i, _) in html
        .match_indices("<input")
        .chain(html.match_indices("<textarea"))
    {
        let tag = &html[i..i + html[i..].find('>').unwrap()];
        let id = tag
            .split("id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("a control without id: {tag}"));
        assert!(
            html.contains(&format!("<label for=\"{id}\"")) || tag.contains("aria-label"),
            "control #{id} has no label"
        );
    }
    assert!(html.contains("role=\"status\""), "a live status region");
    assert!(html.contains("aria-live="), "a live region");
    assert!(html.contains("Esc, then Tab"), "how to leave the editor");

    // The assets the page names exist, with their types and the same headers.
    let assets = referenced_assets(&html);
    for want in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
        assert!(
            assets.contains(&want.to_string()),
            "{want} not in {assets:?}"
        );
    }
    for path in &assets {
        let resp = get(&format!("{u}{path}"), &[]).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let h = resp.headers().clone();
        let ct = header(&h, "content-type").to_string();
        let want = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected asset type {other}"),
        };
        assert_eq!(ct, want, "{path}");
        assert_page_headers(&h, path);
        let body = resp.text().await.unwrap();
        assert!(body.len() > 100, "{path} is too short");

        // Revalidation: the same ETag answers 304 without a body; another answers 200.
        let etag = header(&h, "etag").to_string();
        let again = get(&format!("{u}{path}"), &[("if-none-match", &etag)]).await;
        assert_eq!(again.status().as_u16(), 304, "{path}");
        assert_eq!(header(again.headers(), "etag"), etag);
        assert!(again.bytes().await.unwrap().is_empty());
        let stale = get(&format!("{u}{path}"), &[("if-none-match", "\"old\"")]).await;
        assert_eq!(stale.status().as_u16(), 200, "{path}");
    }

    // The script: only this origin's API, the SSE endpoint, the key kept per tab.
    let js = get(&format!("{u}/assets/app.js"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(!js.contains("http://") && !js.contains("https://"));
    for needle in [
        "/api/v1/execute/stream",
        "/api/v1/languages",
        "sessionStorage",
        "WWW-Authenticate",
        "Retry-After",
    ] {
        assert!(js.contains(needle), "app.js does not use {needle}");
    }
    assert!(!js.contains("innerHTML"), "output must go in as text");
    assert!(
        !js.contains("localStorage.setItem(\"isobox.key"),
        "the key never goes to localStorage"
    );
    // A template for every built-in language.
    for lang in isobox_core::LanguageTable::builtin().all() {
        assert!(
            js.contains(&format!("\n  {}: ", lang.name)),
            "no template for {}",
            lang.name
        );
    }

    // Unknown files are JSON 404s like every unknown route; other methods are 405.
    for path in [
        "/assets/nope.js",
        "/assets/",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e%2fCargo.toml",
        "/index.html",
        "/assets/app.js/x",
    ] {
        let resp = get(&format!("{u}{path}"), &[]).await;
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        assert_eq!(
            header(resp.headers(), "cache-control"),
            "no-store",
            "{path}"
        );
        assert!(header(resp.headers(), "content-type").starts_with("application/json"));
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "not_found", "{path}: {v}");
        assert!(v["message"].is_string(), "{path}: {v}");
    }
    let resp = reqwest::Client::new()
        .post(format!("{u}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "method_not_allowed");
    let head = reqwest::Client::new()
        .head(format!("{u}/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        header(head.headers(), "content-type"),
        "text/javascript; charset=utf-8"
    );

    // The API's headers are its own: no-store, no page CSP.
    for path in ["/health", "/api/v1/languages", "/openapi.json"] {
        let resp = get(&format!("{u}{path}"), &[]).await;
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(
            header(resp.headers(), "cache-control"),
            "no-store",
            "{path}"
        );
        assert!(resp.headers().get("etag").is_none(), "{path}");
        assert!(
            resp.headers().get("content-security-policy").is_none(),
            "{path}"
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_loads_without_credentials_when_the_api_needs_them() {
    let srv = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-playground-secret"),
        ("API_KEY_HEADER", "X-Team-Key"),
    ])
    .await;
    let u = &srv.url;
    for path in [
        "/",
        "/assets/app.js",
        "/assets/style.css",
        "/assets/favicon.svg",
    ] {
        let resp = get(&format!("{u}{path}"), &[]).await;
        assert_eq!(resp.status().as_u16(), 200, "{path} without credentials");
        assert_page_headers(resp.headers(), path);
    }
    // The API behind it still asks, and says how (the page reads this to send the key).
    let resp = get(&format!("{u}/api/v1/languages"), &[]).await;
    assert_eq!(resp.status().as_u16(), 401);
    let www = header(resp.headers(), "www-authenticate").to_ascii_lowercase();
    assert!(www.contains("apikey header=\"x-team-key\""), "{www}");
    let resp = get(
        &format!("{u}/api/v1/languages"),
        &[("X-Team-Key", "k-playground-secret")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    // A credential sent to the page changes nothing (and is not needed).
    let resp = get(&format!("{u}/"), &[("X-Team-Key", "wrong")]).await;
    assert_eq!(resp.status().as_u16(), 200);
    srv.stop().await;
}
