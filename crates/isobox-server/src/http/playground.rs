//! The Playground: a page at `/` to try the API from a browser, and its assets at
//! `/assets/{file}`. The files (plain HTML, CSS and JavaScript, no build step) are embedded in
//! the binary, so the page works air-gapped; nothing is loaded from elsewhere.
//!
//! These routes sit outside the authentication gate: the page always loads, and asks for an API
//! key when the API answers 401. Every response carries a strict Content-Security-Policy (no
//! inline script or style, connections to this origin only), `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` and an ETag; `Cache-Control: no-cache` lets browsers revalidate
//! (304) instead of downloading the files again.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// Marks a response whose `Cache-Control` the common middleware keeps (it sets `no-store` on
/// everything else).
#[derive(Clone, Copy)]
pub struct OwnCacheControl;

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: LazyLock<String>,
}

macro_rules! asset {
    ($file:literal, $ct:literal) => {
        Asset {
            body: include_bytes!(concat!("../../../../assets/playground/", $file)),
            content_type: $ct,
            etag: LazyLock::new(|| {
                let hash = blake3::hash(include_bytes!(concat!(
                    "../../../../assets/playground/",
                    $file
                )));
                format!("\"{}\"", &hash.to_hex()[..20])
            }),
        }
    };
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
static APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
static STYLE: Asset = asset!("style.css", "text/css; charset=utf-8");
static FAVICON: Asset = asset!("favicon.svg", "image/svg+xml");

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

/// `GET /assets/{file}`: its script, style sheet and icon; anything else is a 404.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let asset = match file.as_str() {
        "app.js" => &APP_JS,
        "style.css" => &STYLE,
        "favicon.svg" => &FAVICON,
        _ => return ApiError::not_found("no such asset").into_response(),
    };
    serve(asset, &headers)
}

fn serve(asset: &'static Asset, req: &HeaderMap) -> Response {
    let etag = asset.etag.as_str();
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    resp.extensions_mut().insert(OwnCacheControl);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(INDEX.body).unwrap();
        assert!(html.contains("<script src=\"/assets/app.js\" defer></script>"));
        assert!(!html.contains(" style="), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
        // No inline event handler (` onclick=`...).
        for (i, _) in html.match_indices(" on") {
            let name: String = html[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !html[i + 1 + name.len()..].starts_with('='),
                "inline handler {name}"
            );
        }
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..html[i..].find('>').unwrap() + i];
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn etags_differ_per_file() {
        assert_ne!(*INDEX.etag, *APP_JS.etag);
        assert!(INDEX.etag.starts_with('"') && INDEX.etag.ends_with('"'));
    }
}
