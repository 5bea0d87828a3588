//! The REST service end to end: a real server on port 0 in the test process, real HTTP (reqwest),
//! real programs in the native sandbox. Every endpoint and error of CONTRACT.md's REST section,
//! the headers, the dedup cache and single-flight, backpressure, graceful shutdown and the
//! OpenAPI document against the real routes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The value of the metric line `name` (with its labels exactly as rendered).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn metric_or_zero(text: &str, name: &str) -> f64 {
    metric(text, name).unwrap_or(0.0)
}

/// The headers every response carries.
fn assert_common_headers(resp: &reqwest::Response, what: &str) {
    let h = resp.headers();
    assert_eq!(
        h.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{what}: Cache-Control"
    );
    assert_eq!(
        h.get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff"),
        "{what}: X-Content-Type-Options"
    );
    let id = h
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(!id.is_empty(), "{what}: X-Request-Id missing");
}

/// Asserts `resp` is the error `status`/`kind` in CONTRACT's shape, without internals; returns
/// the message.
async fn expect_error(resp: reqwest::Response, status: u16, kind: &str, what: &str) -> String {
    assert_common_headers(&resp, what);
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{what}: status (body {text})");
    assert!(
        ct.starts_with("application/json"),
        "{what}: error content type {ct:?}"
    );
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {text}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{what}: {text}"));
    let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["error", "message"]),
        "{what}: error keys: {text}"
    );
    assert_eq!(obj["error"], kind, "{what}: error kind: {text}");
    let msg = obj["message"].as_str().expect("message is a string");
    assert!(!msg.trim().is_empty(), "{what}: empty message");
    assert_no_internals(msg, what);
    msg.to_string()
}

fn assert_no_internals(msg: &str, what: &str) {
    for bad in [
        "/tmp",
        "/run/",
        "/work",
        "/root",
        "/proc",
        "/sys/",
        ".rs:",
        "src/",
        "panicked",
        "RUST_BACKTRACE",
        "os error",
        "Error {",
        " at line ",
    ] {
        assert!(
            !msg.contains(bad),
            "{what}: message leaks internals ({bad}): {msg}"
        );
    }
}

/// A response read off a raw connection.
struct Raw {
    status: u16,
    /// Header lines, lower-cased names.
    headers: Vec<(String, String)>,
    body: String,
    text: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 exchange, for what reqwest won't send: a Content-Length with the body held
/// back, a chunked body. Write errors are ignored (a server may answer and close before it read
/// everything), and whatever was answered before the connection closed is returned.
async fn raw_http(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
        text,
    }
}

/// A request line and headers announcing a `len`-byte body that is never sent.
fn announce_body(method: &str, path: &str, len: usize, extra: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// `expect_error` for a raw response.
fn expect_raw_error(r: &Raw, status: u16, kind: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert!(
        r.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "{what}"
    );
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: {}",
        r.text
    );
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {}", r.text));
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["error", "message"]), "{what}");
    assert_eq!(v["error"], kind, "{what}");
    assert_no_internals(v["message"].as_str().unwrap(), what);
}

// ---------------------------------------------------------------------------------------------
// POST /api/v1/execute: results
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execute_runs_python_with_stdin_and_args() {
    let srv = TestServer::start(&[]).await;
    let resp = srv
        .post_json(
            "/api/v1/execute",
            &json!({
                "language": "python",
                "version": "3",
                "code": "import sys\nprint(input().upper())\nprint(sys.argv[1:])\n",
                "stdin": "hello\n",
                "args": ["a", "b c"],
                "limits": {"timeout_ms": 5000, "memory_mb": 128}
            }),
        )
        .await;
    assert_common_headers(&resp, "execute");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .starts_with("application/json"));
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], "HELLO\n['a', 'b c']\n", "{r}");
    assert_eq!(r["stderr"], "");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["signal"], Value::Null);
    assert_eq!(r["compile"], Value::Null);
    assert_eq!(r["cached"], false);
    assert_eq!(r["language"], "python");
    assert!(r["version"].as_str().unwrap().starts_with('3'), "{r}");
    assert_eq!(r["stdout_truncated"], false);
    assert_eq!(r["stderr_truncated"], false);
    assert!(!r["id"].as_str().unwrap().is_empty());
    for k in ["cpu_time_ms", "wall_time_ms", "memory_peak_bytes"] {
        assert!(r[k].is_u64(), "{k}: {r}");
    }
    // Exactly CONTRACT's fields, nothing internal.
    let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "id",
        "language",
        "version",
        "status",
        "exit_code",
        "signal",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "compile",
        "cpu_time_ms",
        "wall_time_ms",
        "memory_peak_bytes",
        "cached",
    ]
    .into();
    assert_eq!(keys, want);

    // A program that fails is still a 200, with its status and exit code.
    let r = srv
        .exec(py(
            "import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)",
        ))
        .await;
    assert_eq!(r["status"], "runtime_error", "{r}");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stderr"], "oops\n");

    // `files`: the first is the entry point, the others are importable; charset is accepted.
    let body = json!({
        "language": "python",
        "files": [
            {"name": "main.py", "content": "from lib.util import f\nprint(f())"},
            {"name": "lib/util.py", "content": "def f():\n    return 'from lib'\n", "encoding": "utf8"},
            {"name": "lib/__init__.py", "content": "", "encoding": "base64"}
        ]
    });
    let resp = srv
        .post_raw(
            "/api/v1/execute",
            Some("application/json; charset=utf-8"),
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], "from lib\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execute_compiles_c() {
    let srv = TestServer::start(&[]).await;
    let r = srv
        .exec(json!({
            "language": "c",
            "code": "#include <stdio.h>\nint main(int argc, char **argv) { char b[64]; if (!fgets(b, sizeof b, stdin)) return 1; printf(\"%s-%s\", argv[1], b); return 0; }\n",
            "stdin": "in\n",
            "args": ["arg"]
        }))
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], "arg-in\n");
    let c = &r["compile"];
    assert!(c.is_object(), "compile object expected: {r}");
    assert_eq!(c["status"], "ok", "{r}");
    assert_eq!(c["exit_code"], 0);
    for k in [
        "signal",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "cpu_time_ms",
        "wall_time_ms",
        "memory_peak_bytes",
    ] {
        assert!(c.get(k).is_some(), "compile.{k} missing: {r}");
    }

    let r = srv
        .exec(json!({"language": "c", "code": "int main(void) { return undefined_thing; }\n"}))
        .await;
    assert_eq!(r["status"], "compile_error", "{r}");
    assert_ne!(r["compile"]["status"], "ok");
    assert!(
        r["compile"]["stderr"]
            .as_str()
            .unwrap()
            .contains("undefined_thing"),
        "{r}"
    );
    assert_eq!(r["stdout"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn output_is_valid_utf8_and_truncation_is_flagged() {
    let srv = TestServer::start(&[]).await;
    let r = srv
        .exec(py(
            "import sys\nsys.stdout.buffer.write(b'a\\xffb\\xc3(c\\n')\nsys.stderr.buffer.write(b'\\xfe!')",
        ))
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], "a\u{FFFD}b\u{FFFD}(c\n", "{r}");
    assert_eq!(r["stderr"], "\u{FFFD}!", "{r}");

    let r = srv
        .exec(json!({
            "language": "python",
            "code": "import sys\nfor _ in range(1000):\n    sys.stdout.write('x' * 100)\n    sys.stdout.flush()\n",
            "limits": {"max_output_bytes": 1000, "timeout_ms": 5000}
        }))
        .await;
    assert_eq!(r["status"], "output_limit", "{r}");
    assert_eq!(r["stdout_truncated"], true, "{r}");
    let out = r["stdout"].as_str().unwrap();
    assert!(
        !out.is_empty() && out.len() <= 1000 && out.bytes().all(|b| b == b'x'),
        "cut at the cap: {} bytes",
        out.len()
    );

    // Under the cap nothing is flagged.
    let r = srv.exec(py("print('x' * 500)")).await;
    assert_eq!(r["stdout_truncated"], false);
    assert_eq!(r["stdout"].as_str().unwrap().len(), 501);
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

const EXECUTE: &str = "/api/v1/execute";
const VALIDATE: &str = "/api/v1/validate";

/// What a request of the error table sends.
enum Body {
    /// No body and no content type.
    None,
    /// JSON, as reqwest's `.json()` sends it (`Content-Type: application/json`).
    Json(Value),
    /// These bytes, with this content type (none when `None`).
    Raw(Option<&'static str>, Vec<u8>),
}

/// A row of the error table: a bad request, the status and `error` kind it must get and,
/// where set, a fragment its message must contain.
struct Case {
    name: String,
    method: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    kind: &'static str,
    says: Option<&'static str>,
}

impl Case {
    fn new(
        name: impl Into<String>,
        method: &'static str,
        path: &'static str,
        body: Body,
        status: u16,
        kind: &'static str,
    ) -> Case {
        Case {
            name: name.into(),
            method,
            path,
            body,
            status,
            kind,
            says: None,
        }
    }

    /// `POST /api/v1/execute` with a JSON body.
    fn execute(name: impl Into<String>, body: Value, status: u16, kind: &'static str) -> Case {
        Case::new(name, "POST", EXECUTE, Body::Json(body), status, kind)
    }

    /// The message must contain `fragment`.
    fn says(mut self, fragment: &'static str) -> Case {
        self.says = Some(fragment);
        self
    }

    /// What the request sends, for failure messages (at most 160 characters).
    fn sent(&self) -> String {
        let text = match &self.body {
            Body::None => String::new(),
            Body::Json(v) => v.to_string(),
            Body::Raw(ct, bytes) => format!("{ct:?} {}", String::from_utf8_lossy(bytes)),
        };
        text.chars().take(160).collect()
    }
}

/// The request errors of CONTRACT's REST section: one row per bad request.
#[rustfmt::skip]
fn request_error_table() -> Vec<Case> {
    use Case as C;
    // The request itself: fields, types, names, versions, args.
    let mut rows = vec![
        C::execute("missing language", json!({"code": "print(1)"}), 400, "invalid_json").says("language"),
        C::execute("unknown language", json!({"language": "cobol-9000", "code": "x"}), 400, "unknown_language").says("cobol-9000"),
        C::execute("code and files", json!({"language": "python", "code": "print(1)", "files": [{"name": "a.py", "content": "print(2)"}]}), 400, "invalid_request"),
        C::execute("no code", json!({"language": "python"}), 400, "invalid_request"),
        C::execute("empty files", json!({"language": "python", "files": []}), 400, "invalid_request"),
        C::execute("unknown top-level field", json!({"language": "python", "code": "print(1)", "priority": 9}), 400, "invalid_json").says("priority"),
        C::execute("unknown limits field", json!({"language": "python", "code": "print(1)", "limits": {"timeout_ms": 100, "gpu": 1}}), 400, "invalid_json"),
        C::execute("unknown file field", json!({"language": "python", "files": [{"name": "a.py", "content": "", "mode": "0755"}]}), 400, "invalid_json"),
        C::execute("array body", json!([1, 2]), 400, "invalid_json"),
        C::execute("string body", json!("python"), 400, "invalid_json"),
        C::execute("language not a string", json!({"language": 7, "code": "x"}), 400, "invalid_json"),
        C::execute("bad base64", json!({"language": "python", "files": [{"name": "a.py", "content": "!", "encoding": "base64"}]}), 400, "invalid_request"),
        C::execute("unknown encoding", json!({"language": "python", "files": [{"name": "a.py", "content": "", "encoding": "rot13"}]}), 400, "invalid_request"),
        C::execute("duplicate file", json!({"language": "python", "files": [{"name": "a.py", "content": ""}, {"name": "a.py", "content": ""}]}), 400, "invalid_request"),
        C::execute("unknown version", json!({"language": "python", "version": "1.0", "code": "print(1)"}), 400, "version_unavailable"),
        C::execute("NUL in an arg", json!({"language": "python", "code": "print(1)", "args": ["a\u{0}b"]}), 400, "invalid_request"),
        C::execute("huge arg", json!({"language": "python", "code": "print(1)", "args": ["x".repeat(5000)]}), 400, "invalid_request"),
    ];
    // Unsafe file names.
    rows.extend(UNSAFE_FILE_NAMES.map(|name| {
        C::execute(format!("unsafe file name {name:?}"), json!({"language": "python", "files": [{"name": name, "content": "print(1)"}]}), 400, "invalid_request")
    }));
    // Limits out of range or of the wrong type.
    let limits = [
        (json!({"timeout_ms": 0}),                     "invalid_request"),
        (json!({"memory_mb": 0}),                      "invalid_request"),
        (json!({"max_output_bytes": 0}),               "invalid_request"),
        (json!({"max_processes": 0}),                  "invalid_request"),
        (json!({"cpu_time_ms": 0}),                    "invalid_request"),
        (json!({"memory_mb": 4}),                      "invalid_request"),
        (json!({"timeout_ms": -1}),                    "invalid_json"),
        (json!({"memory_mb": -256}),                   "invalid_json"),
        (json!({"timeout_ms": 1.5}),                   "invalid_json"),
        (json!({"timeout_ms": "1000"}),                "invalid_json"),
        (json!({"timeout_ms": true}),                  "invalid_json"),
        (json!({"timeout_ms": 1e30}),                  "invalid_json"),
        (json!({"max_processes": 5_000_000_000u64}),   "invalid_json"),
        (json!({"timeout_ms": 30_001}),                "limit_too_high"),
        (json!({"cpu_time_ms": 3_600_000}),            "limit_too_high"),
        (json!({"memory_mb": 1_000_000_000_000u64}),   "limit_too_high"),
        (json!({"max_processes": 100_000}),            "limit_too_high"),
        (json!({"timeout_ms": u64::MAX}),              "limit_too_high"),
        (json!({"max_output_bytes": 1u64 << 40}),      "limit_too_high"),
    ];
    rows.extend(limits.map(|(limits, kind)| {
        C::execute(format!("bad limits {limits}"), json!({"language": "python", "code": "print(1)", "limits": limits}), 400, kind)
    }));
    // Over the size limits (1 MiB of source, 32 files, 1 MiB of stdin, 64 args).
    let files: Vec<Value> = (0..33).map(|i| json!({"name": format!("f{i}.py"), "content": ""})).collect();
    let args: Vec<String> = (0..65).map(|i| i.to_string()).collect();
    rows.extend([
        C::execute("source over 1 MiB", json!({"language": "python", "code": format!("#{}", "x".repeat(1 << 20))}), 413, "too_large"),
        C::execute("files over 1 MiB together", json!({"language": "python", "files": [
            {"name": "main.py", "content": "x".repeat(600 << 10)},
            {"name": "b.py", "content": "x".repeat(600 << 10)}
        ]}), 413, "too_large"),
        C::execute("33 files", json!({"language": "python", "files": files}), 413, "too_large"),
        C::execute("stdin over 1 MiB", json!({"language": "python", "code": "print(1)", "stdin": "x".repeat((1 << 20) + 1)}), 413, "too_large"),
        C::execute("65 args", json!({"language": "python", "code": "print(1)", "args": args}), 413, "too_large"),
    ]);
    // Malformed JSON.
    let malformed: [&[u8]; 6] = [
        b"{",
        b"{\"language\": \"python\", \"code\": }",
        b"",
        b"null",
        b"\xff\xfe{}",
        b"{\"language\": \"python\", \"code\": \"print(1)\"} trailing",
    ];
    rows.extend(malformed.map(|bad| {
        C::new(format!("malformed {:?}", String::from_utf8_lossy(bad)), "POST", EXECUTE, Body::Raw(Some("application/json"), bad.to_vec()), 400, "invalid_json")
    }));
    // Content type: anything but JSON is 415, also a missing one, on both POST routes.
    let ok = py("print(1)").to_string().into_bytes();
    for path in [EXECUTE, VALIDATE] {
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            None,
        ] {
            rows.push(C::new(format!("{path} {ct:?}"), "POST", path, Body::Raw(ct, ok.clone()), 415, "unsupported_media_type"));
        }
    }
    // Unknown routes and wrong methods, as JSON errors.
    rows.extend([
        C::new("GET /nope",                  "GET",    "/nope",                 Body::None, 404, "not_found"),
        C::new("GET /api/v1",                "GET",    "/api/v1",               Body::None, 404, "not_found"),
        C::new("GET /api/v1/execute/extra",  "GET",    "/api/v1/execute/extra", Body::None, 404, "not_found"),
        C::new("GET /api/v2/execute",        "GET",    "/api/v2/execute",       Body::None, 404, "not_found"),
        C::new("GET /health/",               "GET",    "/health/",              Body::None, 404, "not_found"),
        C::new("POST unknown",               "POST",   "/api/v1/nope",          Body::Json(py("print(1)")), 404, "not_found"),
        C::new("GET /api/v1/execute",        "GET",    EXECUTE,                 Body::None, 405, "method_not_allowed"),
        C::new("PUT /api/v1/execute",        "PUT",    EXECUTE,                 Body::None, 405, "method_not_allowed"),
        C::new("DELETE /api/v1/execute",     "DELETE", EXECUTE,                 Body::None, 405, "method_not_allowed"),
        C::new("GET /api/v1/validate",       "GET",    VALIDATE,                Body::None, 405, "method_not_allowed"),
        C::new("POST /api/v1/languages",     "POST",   "/api/v1/languages",     Body::None, 405, "method_not_allowed"),
        C::new("POST /health",               "POST",   "/health",               Body::None, 405, "method_not_allowed"),
        C::new("DELETE /metrics",            "DELETE", "/metrics",              Body::None, 405, "method_not_allowed"),
        C::new("PATCH /openapi.json",        "PATCH",  "/openapi.json",         Body::None, 405, "method_not_allowed"),
    ]);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_errors_are_json_with_the_right_status() {
    let srv = TestServer::start(&[]).await;
    let rows = request_error_table();
    let names: BTreeSet<&str> = rows.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names.len(),
        rows.len(),
        "two rows of the table share a name"
    );
    for (i, case) in rows.iter().enumerate() {
        let what = format!(
            "row {i} `{}` ({} {} {})",
            case.name,
            case.method,
            case.path,
            case.sent()
        );
        let rb = srv
            .client
            .request(case.method.parse().unwrap(), srv.url_for(case.path));
        let rb = match &case.body {
            Body::None => rb,
            Body::Json(v) => rb.json(v),
            Body::Raw(None, bytes) => rb.body(bytes.clone()),
            Body::Raw(Some(ct), bytes) => rb.body(bytes.clone()).header("content-type", *ct),
        };
        let resp = rb.send().await.unwrap();
        let msg = expect_error(resp, case.status, case.kind, &what).await;
        if let Some(fragment) = case.says {
            assert!(
                msg.contains(fragment),
                "{what}: the message does not say {fragment:?}: {msg}"
            );
        }
    }

    // At the limits exactly: accepted.
    let args: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    let files: Vec<Value> = std::iter::once(json!({"name": "main.py", "content": "import sys; print(len(sys.argv) - 1, len(sys.stdin.read()))"}))
        .chain((1..32).map(|i| json!({"name": format!("f{i}.py"), "content": ""})))
        .collect();
    let r = srv
        .exec(json!({"language": "python", "files": files, "args": args, "stdin": "y".repeat(1 << 20)}))
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], format!("64 {}\n", 1 << 20));

    // Only that one ran; the refusals are counted.
    let m = srv.metrics().await;
    assert_eq!(
        metric_or_zero(&m, "isobox_run_duration_seconds_count"),
        1.0,
        "{m}"
    );
    assert!(
        metric_or_zero(&m, "isobox_rejected_total{reason=\"too_large\"}") >= 5.0,
        "{m}"
    );
    assert!(
        metric_or_zero(&m, "isobox_rejected_total{reason=\"invalid_json\"}") >= 10.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn body_limit_applies_to_every_route() {
    let srv = TestServer::start(&[("ISOBOX_MAX_BODY_BYTES", "4096")]).await;
    // Under the limit: fine.
    let r = srv
        .exec(py(&format!("#{}\nprint('small')", "x".repeat(3000))))
        .await;
    assert_eq!(r["stdout"], "small\n");
    // Over it, on every route, known or not: the announced Content-Length is refused before
    // any of the body is read (the body is never sent here).
    for (method, path) in [
        ("POST", "/api/v1/execute"),
        ("POST", "/api/v1/validate"),
        ("GET", "/health"),
        ("GET", "/api/v1/languages"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/nope"),
        ("PUT", "/api/v1/execute"),
    ] {
        let r = raw_http(srv.addr, &announce_body(method, path, 4097, "")).await;
        expect_raw_error(
            &r,
            413,
            "too_large",
            &format!("{method} {path} announcing 4097 bytes"),
        );
        let r = raw_http(srv.addr, &announce_body(method, path, 100 << 20, "")).await;
        expect_raw_error(
            &r,
            413,
            "too_large",
            &format!("{method} {path} announcing 100 MiB"),
        );
    }
    // And when the body is really sent: an error, never a run (the server may close before it
    // read everything, which a client may see as a broken pipe).
    let big = py(&format!("#{}\nprint('big')", "x".repeat(5000))).to_string();
    for path in ["/api/v1/execute", "/api/v1/validate"] {
        let mut req = announce_body("POST", path, big.len(), "");
        req.extend_from_slice(big.as_bytes());
        let r = raw_http(srv.addr, &req).await;
        if r.status != 0 {
            expect_raw_error(
                &r,
                413,
                "too_large",
                &format!("POST {path} with a big body"),
            );
        }
    }
    // A chunked body (no Content-Length) over the limit is refused too.
    let chunk = format!(
        "{{\"language\":\"python\",\"code\":\"#{}\"}}",
        "x".repeat(6000)
    );
    let req = format!(
        "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let r = raw_http(srv.addr, req.as_bytes()).await;
    expect_raw_error(&r, 413, "too_large", "chunked over the limit");
    // A chunked body under the limit works.
    let chunk = py("print('chunked')").to_string();
    let req = format!(
        "POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let r = raw_http(srv.addr, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.contains("chunked\\n"), "{}", r.text);
    let m = srv.metrics().await;
    assert_eq!(
        metric_or_zero(&m, "isobox_run_duration_seconds_count"),
        2.0,
        "{m}"
    );
}

// ---------------------------------------------------------------------------------------------
// POST /api/v1/validate
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_checks_syntax_without_running() {
    let srv = TestServer::start(&[]).await;
    let validate = |body: Value| {
        let srv = &srv;
        async move {
            let resp = srv.post_json("/api/v1/validate", &body).await;
            assert_common_headers(&resp, "validate");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_eq!(status, 200, "validate {body}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["valid", "errors"]), "{v}");
            v
        }
    };
    // A valid program that would take 5 s and print if it ran: answered at once, no output.
    let t = Instant::now();
    let v = validate(py("import time\nprint('RAN' + '_MARKER')\ntime.sleep(5)\n")).await;
    assert_eq!(v, json!({"valid": true, "errors": ""}));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "it ran? {:?}",
        t.elapsed()
    );

    let v = validate(py("print('RAN_MARKER')\ndef f(:\n    pass\n")).await;
    assert_eq!(v["valid"], false, "{v}");
    let e = v["errors"].as_str().unwrap();
    assert!(e.contains("SyntaxError"), "{e}");
    assert!(!e.contains("RAN_MARKER"), "the program ran: {e}");
    assert_no_internals(e, "python errors");

    let v = validate(json!({"language": "bash", "code": "echo RAN_MARKER\nif then\n"})).await;
    assert_eq!(v["valid"], false, "{v}");
    let e = v["errors"].as_str().unwrap();
    assert!(e.contains("syntax error"), "{e}");
    assert!(!e.contains("RAN_MARKER"), "the program ran: {e}");

    let v = validate(json!({"language": "bash", "code": "echo RAN_MARKER\nsleep 5\n"})).await;
    assert_eq!(v, json!({"valid": true, "errors": ""}));

    let v = validate(json!({"language": "c", "code": "int main(void) { return 0 }\n"})).await;
    assert_eq!(v["valid"], false, "{v}");
    let e = v["errors"].as_str().unwrap();
    assert!(e.contains("error"), "{e}");
    assert!(e.contains("expected"), "the compiler's message: {e}");

    let v = validate(json!({"language": "c", "code": "#include <stdio.h>\nint main(void) { puts(\"RAN_MARKER\"); return 0; }\n"})).await;
    assert_eq!(v, json!({"valid": true, "errors": ""}));

    // Validation errors are the same as for execute.
    let resp = srv
        .post_json(
            "/api/v1/validate",
            &json!({"language": "nope", "code": "x"}),
        )
        .await;
    expect_error(resp, 400, "unknown_language", "validate unknown language").await;
    let resp = srv
        .post_json("/api/v1/validate", &json!({"language": "python"}))
        .await;
    expect_error(resp, 400, "invalid_request", "validate no code").await;
    let resp = srv
        .post_json(
            "/api/v1/validate",
            &json!({"language": "python", "code": "x", "extra": 1}),
        )
        .await;
    expect_error(resp, 400, "invalid_json", "validate unknown field").await;

    // Nothing was executed.
    let m = srv.metrics().await;
    assert_eq!(
        metric_or_zero(&m, "isobox_run_duration_seconds_count"),
        0.0,
        "{m}"
    );
    assert!(!m.contains("isobox_executions_total{"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// Pattern policy
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pattern_policy_rejects_with_422() {
    let dir = std::env::temp_dir().join(format!("srvtest-patterns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("patterns.toml");
    std::fs::write(
        &file,
        "[[rule]]\nname = \"no-ctypes\"\nlanguage = \"python\"\npattern = 'import\\s+ctypes'\n",
    )
    .unwrap();
    let srv = TestServer::start(&[("ISOBOX_PATTERNS", file.to_str().unwrap())]).await;
    std::fs::remove_dir_all(&dir).unwrap();

    let bad = py("import   ctypes\nprint('RAN')");
    let resp = srv.post_json("/api/v1/execute", &bad).await;
    let msg = expect_error(resp, 422, "rejected_by_policy", "execute ctypes").await;
    assert!(msg.contains("no-ctypes"), "names the rule: {msg}");
    // In any file of the submission.
    let resp = srv
        .post_json(
            "/api/v1/execute",
            &json!({"language": "python", "files": [
                {"name": "main.py", "content": "import helper"},
                {"name": "helper.py", "content": "import ctypes"}
            ]}),
        )
        .await;
    expect_error(
        resp,
        422,
        "rejected_by_policy",
        "execute ctypes in a helper",
    )
    .await;
    let resp = srv.post_json("/api/v1/validate", &bad).await;
    expect_error(resp, 422, "rejected_by_policy", "validate ctypes").await;

    // Other code, and the same text in another language, are fine.
    let r = srv.exec(py("import os\nprint('fine')")).await;
    assert_eq!(r["stdout"], "fine\n");
    let r = srv
        .exec(json!({"language": "bash", "code": "echo 'import ctypes'"}))
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], "import ctypes\n");

    let m = srv.metrics().await;
    assert_eq!(
        metric(&m, "isobox_rejected_total{reason=\"rejected_by_policy\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric_or_zero(&m, "isobox_run_duration_seconds_count"),
        2.0,
        "{m}"
    );
}

// ---------------------------------------------------------------------------------------------
// Headers, languages, health, metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_response_carries_request_id_and_security_headers() {
    let srv = TestServer::start(&[("ISOBOX_MAX_BODY_BYTES", "4096")]).await;
    let ok_body = py("print(1)").to_string().into_bytes();
    // (method, path, content type, body, expected status)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/execute",
            Some("application/json"),
            ok_body.clone(),
            200,
        ),
        (
            "POST",
            "/api/v1/validate",
            Some("application/json"),
            ok_body.clone(),
            200,
        ),
        (
            "POST",
            "/api/v1/execute",
            Some("application/json"),
            b"{".to_vec(),
            400,
        ),
        (
            "POST",
            "/api/v1/execute",
            Some("text/plain"),
            ok_body.clone(),
            415,
        ),
        ("GET", "/api/v1/execute", None, vec![], 405),
        ("GET", "/nope", None, vec![], 404),
        ("GET", "/api/v1/languages", None, vec![], 200),
        ("GET", "/health", None, vec![], 200),
        ("GET", "/metrics", None, vec![], 200),
        ("GET", "/openapi.json", None, vec![], 200),
    ];
    let mut generated = BTreeSet::new();
    for (i, (method, path, ct, body, status)) in cases.into_iter().enumerate() {
        for send_id in [true, false] {
            let mut rb = srv
                .client
                .request(method.parse().unwrap(), srv.url_for(path))
                .body(body.clone());
            if let Some(ct) = ct {
                rb = rb.header("content-type", ct);
            }
            let sent = format!("req-{i}-abc.DEF_123");
            if send_id {
                rb = rb.header("x-request-id", &sent);
            }
            let resp = rb.send().await.unwrap();
            let what = format!("{method} {path} (id sent: {send_id})");
            assert_eq!(resp.status().as_u16(), status, "{what}");
            assert_common_headers(&resp, &what);
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
            if send_id {
                assert_eq!(id, sent, "{what}: echoed");
            } else {
                assert!(id.len() >= 8, "{what}: generated id {id:?}");
                assert!(generated.insert(id.clone()), "{what}: id {id} reused");
            }
        }
    }
    // The 413 of the body limit (answered before the body is read) carries them too.
    let r = raw_http(
        srv.addr,
        &announce_body("POST", "/api/v1/execute", 5000, "X-Request-Id: big-1\r\n"),
    )
    .await;
    expect_raw_error(&r, 413, "too_large", "413 with an id");
    assert_eq!(r.header("x-request-id"), Some("big-1"));
    let r = raw_http(
        srv.addr,
        &announce_body("POST", "/api/v1/execute", 5000, ""),
    )
    .await;
    expect_raw_error(&r, 413, "too_large", "413 without an id");
    assert!(!generated.contains(r.header("x-request-id").unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn languages_health_and_metrics() {
    // One request per listed language and alias below: as many as the runtimes installed
    // on this host make, more than the default rate limit.
    let srv = TestServer::start(&[
        ("ISOBOX_SLOTS", "3"),
        ("ISOBOX_QUEUE", "5"),
        ("ISOBOX_RATE_LIMIT", "100000/min"),
    ])
    .await;

    let resp = srv.get("/api/v1/languages").await;
    assert_common_headers(&resp, "languages");
    assert_eq!(resp.status().as_u16(), 200);
    let list: Value = resp.json().await.unwrap();
    let list = list.as_array().expect("an array");
    assert!(!list.is_empty());
    for l in list {
        let o = l.as_object().unwrap();
        let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["name", "aliases", "version", "compiled", "runtime"]),
            "{l}"
        );
        assert!(!l["name"].as_str().unwrap().is_empty(), "{l}");
        assert!(
            l["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string),
            "{l}"
        );
        assert!(l["version"].is_string(), "{l}");
        assert!(l["compiled"].is_boolean(), "{l}");
    }
    let find = |n: &str| {
        list.iter()
            .find(|l| l["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed"))
    };
    assert_eq!(find("python")["compiled"], false);
    assert!(find("python")["version"].as_str().unwrap().starts_with('3'));
    assert_eq!(find("c")["compiled"], true);
    assert_eq!(find("bash")["compiled"], false);
    // Every listed language (and alias) is one the server accepts: the request gets past the
    // language check to the limits check (nothing runs).
    for l in list {
        let names = std::iter::once(&l["name"]).chain(l["aliases"].as_array().unwrap());
        for name in names {
            let resp = srv
                .post_json(
                    "/api/v1/execute",
                    &json!({"language": name, "code": "", "limits": {"timeout_ms": 0}}),
                )
                .await;
            expect_error(resp, 400, "invalid_request", &format!("language {name}")).await;
        }
    }

    let resp = srv.get("/health").await;
    assert_common_headers(&resp, "health");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    // Counts.
    let m0 = srv.metrics().await;
    assert_eq!(metric(&m0, "isobox_slots_capacity"), Some(3.0), "{m0}");
    assert_eq!(metric(&m0, "isobox_slots_busy"), Some(0.0), "{m0}");
    assert_eq!(metric(&m0, "isobox_queue_depth"), Some(0.0), "{m0}");
    assert_eq!(metric(&m0, "isobox_cache_hits_total"), Some(0.0), "{m0}");
    assert_eq!(metric(&m0, "isobox_cache_misses_total"), Some(0.0), "{m0}");
    assert_eq!(
        metric(&m0, "isobox_run_duration_seconds_count"),
        Some(0.0),
        "{m0}"
    );
    srv.exec(py("print(1)")).await;
    srv.exec(py("print(2)")).await;
    srv.exec(py("raise SystemExit(2)")).await;
    srv.exec(json!({"language": "bash", "code": "echo hi"}))
        .await;
    let resp = srv
        .post_json("/api/v1/execute", &json!({"language": "nope", "code": ""}))
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    // Unknown paths do not become metric labels (unbounded cardinality).
    let probe = token("path");
    let resp = srv.get(&format!("/{probe}")).await;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = srv.get("/metrics").await;
    assert_common_headers(&resp, "metrics");
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .starts_with("text/plain"));
    let m = resp.text().await.unwrap();
    let exe = |lang: &str, status: &str| {
        metric_or_zero(
            &m,
            &format!("isobox_executions_total{{language=\"{lang}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(exe("python", "ok"), 2.0, "{m}");
    assert_eq!(exe("python", "runtime_error"), 1.0, "{m}");
    assert_eq!(exe("bash", "ok"), 1.0, "{m}");
    assert_eq!(
        metric(&m, "isobox_rejected_total{reason=\"unknown_language\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "isobox_run_duration_seconds_count"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "isobox_queue_wait_duration_seconds_count"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "isobox_run_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(metric(&m, "isobox_cache_misses_total"), Some(4.0), "{m}");
    assert_eq!(metric(&m, "isobox_cache_entries"), Some(4.0), "{m}");
    assert!(metric_or_zero(&m, "isobox_cache_bytes") > 0.0, "{m}");
    assert!(
        metric_or_zero(
            &m,
            "isobox_http_requests_total{route=\"/api/v1/execute\",code=\"200\"}"
        ) >= 4.0,
        "{m}"
    );
    // Latency by method, route template and status; a path no route knows is `other`.
    assert!(
        metric_or_zero(
            &m,
            "isobox_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/execute\",status=\"200\"}"
        ) >= 4.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "isobox_http_request_duration_seconds_count{method=\"GET\",route=\"other\",status=\"404\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert!(!m.contains(&probe), "a request path became a label: {m}");
    // Every sample line is `name{labels} number` with an isobox_ (or the standard process_)
    // name.
    for l in m.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        assert!(l.starts_with("isobox_") || l.starts_with("process_"), "{l}");
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup cache
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedup_answers_identical_requests_from_the_cache() {
    let srv = TestServer::start(&[]).await;
    let body = json!({"language": "python", "code": "import random\nprint(input(), random.random())", "stdin": "one"});
    let a = srv.exec(body.clone()).await;
    let b = srv.exec(body.clone()).await;
    assert_eq!(a["cached"], false, "{a}");
    assert_eq!(b["cached"], true, "{b}");
    assert_eq!(a["stdout"], b["stdout"], "the same result");
    assert_eq!(a["status"], b["status"]);
    assert_ne!(a["id"], b["id"], "each answer has its own id");
    let m = srv.metrics().await;
    assert_eq!(metric(&m, "isobox_cache_misses_total"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "isobox_cache_hits_total"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "isobox_run_duration_seconds_count"),
        Some(1.0),
        "one run: {m}"
    );
    assert_eq!(
        metric(
            &m,
            "isobox_executions_total{language=\"python\",status=\"ok\"}"
        ),
        Some(2.0),
        "{m}"
    );

    // Anything that can change the result is part of the key.
    let mut variants = Vec::new();
    for (field, value) in [
        ("stdin", json!("two")),
        ("args", json!(["x"])),
        ("limits", json!({"timeout_ms": 4000})),
        (
            "code",
            json!("import random\nprint(input(), random.random()) "),
        ),
    ] {
        let mut v = body.clone();
        v[field] = value;
        variants.push((field, v));
    }
    variants.push((
        "files",
        json!({"language": "python", "files": [
            {"name": "main.py", "content": "import random\nprint(input(), random.random())"},
            {"name": "other.txt", "content": ""}
        ], "stdin": "one"}),
    ));
    for (what, v) in &variants {
        let r = srv.exec(v.clone()).await;
        assert_eq!(r["cached"], false, "different {what} must not hit: {r}");
        assert_ne!(r["stdout"], a["stdout"], "{what}");
    }
    // The original is still cached, with the same answer.
    let again = srv.exec(body.clone()).await;
    assert_eq!(again["cached"], true);
    assert_eq!(again["stdout"], a["stdout"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedup_disabled_never_caches() {
    let srv = TestServer::start(&[("DEDUP_ENABLED", "false")]).await;
    let body = py("import random\nprint(random.random())");
    let a = srv.exec(body.clone()).await;
    let b = srv.exec(body.clone()).await;
    assert_eq!(a["cached"], false);
    assert_eq!(b["cached"], false);
    assert_ne!(a["stdout"], b["stdout"], "two real runs");
    let m = srv.metrics().await;
    assert_eq!(
        metric(&m, "isobox_run_duration_seconds_count"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(metric(&m, "isobox_cache_hits_total"), Some(0.0), "{m}");
    assert_eq!(metric(&m, "isobox_cache_entries"), Some(0.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_are_not_cached() {
    let srv = TestServer::start(&[]).await;
    let body = json!({"language": "python", "code": "while True:\n    pass\n", "limits": {"timeout_ms": 300}});
    for i in 0..2 {
        let r = srv.exec(body.clone()).await;
        assert_eq!(r["status"], "timeout", "run {i}: {r}");
        assert_eq!(r["cached"], false, "run {i}: {r}");
    }
    let m = srv.metrics().await;
    assert_eq!(
        metric(&m, "isobox_run_duration_seconds_count"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(metric(&m, "isobox_cache_entries"), Some(0.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "isobox_executions_total{language=\"python\",status=\"timeout\"}"
        ),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_flight_runs_identical_concurrent_requests_once() {
    let srv = Arc::new(TestServer::start(&[]).await);
    let body = py("import time, random\ntime.sleep(0.5)\nprint(random.random())");
    let t = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let srv = srv.clone();
            let body = body.clone();
            tokio::spawn(async move { srv.exec(body).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let elapsed = t.elapsed();
    assert!(results.iter().all(|r| r["status"] == "ok"), "{results:?}");
    let first = &results[0]["stdout"];
    assert!(
        results.iter().all(|r| &r["stdout"] == first),
        "all got the one result: {results:?}"
    );
    let cached = results.iter().filter(|r| r["cached"] == true).count();
    assert_eq!(cached, 9, "{results:?}");
    let ids: BTreeSet<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10, "each answer has its own id");
    let m = srv.metrics().await;
    assert_eq!(metric(&m, "isobox_cache_misses_total"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "isobox_cache_hits_total"), Some(9.0), "{m}");
    assert_eq!(
        metric(&m, "isobox_run_duration_seconds_count"),
        Some(1.0),
        "{m}"
    );
    let stats = srv.app.engine.cache_stats();
    assert_eq!((stats.hits, stats.misses), (9, 1));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

// ---------------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backpressure_sheds_load_with_503_and_retry_after() {
    let srv = Arc::new(TestServer::start(&[("ISOBOX_SLOTS", "1"), ("ISOBOX_QUEUE", "1")]).await);
    let tok = token("bp");
    let code = "import sys, time\ntime.sleep(1)\nprint(sys.stdin.read())";
    let done = Arc::new(AtomicBool::new(false));
    // Watch the slots and the sandbox processes while the flood runs.
    let watcher = {
        let app = srv.app.clone();
        let done = done.clone();
        let tok = tok.clone();
        tokio::task::spawn_blocking(move || {
            let mut max_busy = 0;
            let mut max_queued = 0;
            let mut max_sandboxes = 0;
            while !done.load(Ordering::SeqCst) {
                let (busy, total, queued) = app.engine.load();
                assert_eq!(total, 1);
                max_busy = max_busy.max(busy);
                max_queued = max_queued.max(queued);
                let uids: BTreeSet<u32> = sandbox_procs_with(&tok)
                    .iter()
                    .filter_map(Proc::uid)
                    .collect();
                max_sandboxes = max_sandboxes.max(uids.len());
                std::thread::sleep(Duration::from_millis(10));
            }
            (max_busy, max_queued, max_sandboxes)
        })
    };
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let srv = srv.clone();
            let body = json!({"language": "python", "code": code, "stdin": format!("req{i}"), "args": [tok]});
            tokio::spawn(async move {
                let resp = srv.post_json("/api/v1/execute", &body).await;
                let status = resp.status().as_u16();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                assert_common_headers(&resp, "flood");
                let v: Value = resp.json().await.unwrap();
                (i, status, retry, v)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let (max_busy, max_queued, max_sandboxes) = watcher.await.unwrap();
    assert!(max_busy <= 1, "more runs than slots: {max_busy}");
    assert!(max_queued <= 1, "queue over its bound: {max_queued}");
    assert!(
        max_sandboxes <= 1,
        "{max_sandboxes} sandboxes at once with 1 slot"
    );
    assert_eq!(max_busy, 1, "the watcher saw nothing run");
    assert_eq!(max_sandboxes, 1, "the watcher saw no sandbox process");

    let mut ok = 0;
    let mut busy = 0;
    for (i, status, retry, v) in &results {
        match status {
            200 => {
                ok += 1;
                assert_eq!(v["status"], "ok", "{v}");
                assert_eq!(v["stdout"], format!("req{i}\n"), "the right answer to each");
                assert_eq!(v["cached"], false);
            }
            503 => {
                busy += 1;
                assert_eq!(v["error"], "busy", "{v}");
                assert_no_internals(v["message"].as_str().unwrap(), "busy");
                let secs: u64 = retry
                    .as_deref()
                    .unwrap_or_else(|| panic!("503 without Retry-After: {v}"))
                    .parse()
                    .expect("Retry-After in seconds");
                assert!((1..=3600).contains(&secs), "Retry-After {secs}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(ok >= 2, "one running and one queued succeed: {results:?}");
    assert!(busy >= 1, "some are refused: {results:?}");
    assert_eq!(ok + busy, 8);
    let m = srv.metrics().await;
    assert_eq!(
        metric(&m, "isobox_rejected_total{reason=\"busy\"}"),
        Some(busy as f64),
        "{m}"
    );
    assert_eq!(
        metric(&m, "isobox_run_duration_seconds_count"),
        Some(ok as f64),
        "{m}"
    );

    // Healthy afterwards, nothing left over.
    assert_eq!(srv.app.engine.load(), (0, 1, 0));
    let resp = srv.get("/health").await;
    assert_eq!(resp.status().as_u16(), 200);
    let r = srv.exec(py("print('after')")).await;
    assert_eq!(r["stdout"], "after\n");
    let left = sandbox_procs_with(&tok);
    assert!(left.is_empty(), "sandbox processes left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_queued_too_long_gets_503() {
    let srv = Arc::new(
        TestServer::start(&[
            ("ISOBOX_SLOTS", "1"),
            ("ISOBOX_QUEUE", "4"),
            ("ISOBOX_QUEUE_TIMEOUT_MS", "300"),
        ])
        .await,
    );
    let long = {
        let srv = srv.clone();
        tokio::spawn(async move {
            srv.exec(py("import time\ntime.sleep(2)\nprint('long')"))
                .await
        })
    };
    // Wait until the long one holds the slot.
    let t = Instant::now();
    while srv.app.engine.load().0 == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    let resp = srv
        .post_json("/api/v1/execute", &py("print('queued')"))
        .await;
    let waited = t.elapsed();
    assert!(
        resp.headers().get("retry-after").is_some(),
        "503 with Retry-After"
    );
    expect_error(resp, 503, "busy", "queued too long").await;
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1900),
        "answered after the queue timeout, not after the run: {waited:?}"
    );
    let r = long.await.unwrap();
    assert_eq!(r["stdout"], "long\n");
    assert_eq!(srv.app.engine.load(), (0, 1, 0));
    // The refused request was not cached as a failure: it runs now.
    let r = srv.exec(py("print('queued')")).await;
    assert_eq!(r["stdout"], "queued\n");
    assert_eq!(r["cached"], false);
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_lets_a_running_execution_finish() {
    let mut srv = TestServer::start(&[]).await;
    let addr = srv.addr;
    let url = srv.url_for("/api/v1/execute");
    let client = srv.client.clone();
    let inflight = tokio::spawn(async move {
        client
            .post(url)
            .json(&py("import time\ntime.sleep(1.5)\nprint('finished')"))
            .send()
            .await
    });
    let t = Instant::now();
    while srv.app.engine.load().0 == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.begin_stop();
    // New connections are refused once shutdown began, while the run goes on.
    let t = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    t.elapsed() < Duration::from_millis(800),
                    "still accepting connections after shutdown"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(srv.app.shutting_down.load(Ordering::SeqCst));
    let resp = tokio::time::timeout(Duration::from_secs(10), inflight)
        .await
        .expect("the in-flight request is answered")
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(resp.status().as_u16(), 200);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["stdout"], "finished\n");
    // run() returns (and is Ok) once the run is done.
    srv.stopped_within(Duration::from_secs(5)).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_grace_kills_what_is_left() {
    let srv = TestServer::start(&[("ISOBOX_SHUTDOWN_GRACE_MS", "300")]).await;
    let tok = token("grace");
    let url = srv.url_for("/api/v1/execute");
    let client = srv.client.clone();
    let body = json!({
        "language": "python",
        "code": "import time\ntime.sleep(10)\nprint('should not finish')",
        "args": [tok],
        "limits": {"timeout_ms": 20000, "cpu_time_ms": 20000}
    });
    let inflight = tokio::spawn(async move { client.post(url).json(&body).send().await });
    wait_for("never started", Duration::from_secs(10), || {
        sandbox_procs_with(&tok)
    })
    .await;
    let app = srv.app.clone();
    let took = srv.shutdown(Duration::from_secs(15)).await;
    assert!(took < Duration::from_secs(4), "run() took {took:?}");
    // The client gets an answer or a closed connection, not a hang.
    let answer = tokio::time::timeout(Duration::from_secs(5), inflight)
        .await
        .expect("the in-flight request does not hang")
        .unwrap();
    if let Ok(resp) = answer {
        let status = resp.status().as_u16();
        if let Ok(v) = resp.json::<Value>().await {
            assert_ne!(v["stdout"], "should not finish\n", "{status} {v}");
        }
    }
    // Nothing of the sandbox is left.
    wait_gone(
        "sandbox processes left after shutdown",
        Duration::from_secs(3),
        || sandbox_procs_with(&tok),
    )
    .await;
    assert_eq!(app.engine.load().0, 0, "the slot was given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_grace_also_stops_queued_executions() {
    // One slot: the second request waits in the queue when shutdown begins. When the grace
    // period is over, neither it nor the running one may go on (or start) in a sandbox.
    let srv = TestServer::start(&[
        ("ISOBOX_SLOTS", "1"),
        ("ISOBOX_QUEUE", "2"),
        ("ISOBOX_SHUTDOWN_GRACE_MS", "300"),
    ])
    .await;
    let tok = token("queued");
    let mut inflight = Vec::new();
    for i in 0..2 {
        let url = srv.url_for("/api/v1/execute");
        let client = srv.client.clone();
        let body = json!({
            "language": "python",
            "code": "import time\ntime.sleep(10)\nprint('should not finish')",
            "args": [tok],
            "stdin": format!("{i}"),
            "limits": {"timeout_ms": 20000, "cpu_time_ms": 20000}
        });
        inflight.push(tokio::spawn(async move {
            client.post(url).json(&body).send().await
        }));
    }
    let t = Instant::now();
    while srv.app.engine.load() != (1, 1, 1) || sandbox_procs_with(&tok).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "never got one running and one queued: {:?}",
            srv.app.engine.load()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = srv.app.clone();
    let took = srv.shutdown(Duration::from_secs(30)).await;
    let left = sandbox_procs_with(&tok);
    assert!(
        took < Duration::from_secs(4),
        "run() took {took:?} (sandbox processes at that point: {left:?})"
    );
    for f in inflight {
        let _ = tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("no in-flight request hangs");
    }
    wait_gone(
        "sandbox processes left after shutdown",
        Duration::from_secs(3),
        || sandbox_procs_with(&tok),
    )
    .await;
    assert_eq!(app.engine.load().0, 0, "the slot was given back");
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_matches_the_real_routes() {
    let srv = TestServer::start(&[]).await;
    let resp = srv.get("/openapi.json").await;
    assert_common_headers(&resp, "openapi");
    assert_eq!(resp.status().as_u16(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(doc, isobox_server::openapi_document(), "served as built");
    let paths = doc["paths"].as_object().expect("paths");

    // A real job, for the paths that name one.
    let job: Value = srv
        .client
        .post(srv.url_for("/api/v1/executions"))
        .json(&py("print(1)"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = job["id"].as_str().expect("job id").to_string();
    let concrete = |path: &str| path.replace("{id}", &job_id);

    // Every documented operation exists on the real server.
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        // The Judge0 compatible API has its own walk (judge0::openapi_documents_the_routes).
        if path.starts_with("/judge0/") {
            continue;
        }
        let item = item.as_object().unwrap();
        for method in item.keys().filter(|m| METHODS.contains(&m.as_str())) {
            documented.insert((path.clone(), method.clone()));
            let rb = srv.client.request(
                method.to_uppercase().parse().unwrap(),
                srv.url_for(&concrete(path)),
            );
            let rb = match (method.as_str(), path.as_str()) {
                ("post", "/api/v1/executions/batch") => {
                    rb.json(&serde_json::json!({ "submissions": [py("print(1)")] }))
                }
                ("post", _) => rb.json(&py("print(1)")),
                _ => rb,
            };
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path} is documented but answers {status}"
            );
            assert!(
                item[method.as_str()]["responses"]
                    .get(status.to_string())
                    .is_some(),
                "{method} {path} answers {status}, which is not documented"
            );
        }
        // And the methods it does not document are really not there.
        for m in METHODS.iter().filter(|m| !item.contains_key(**m)) {
            let rb = srv.client.request(
                m.to_uppercase().parse().unwrap(),
                srv.url_for(&concrete(path)),
            );
            let rb = if *m == "get" {
                rb
            } else {
                rb.json(&py("print(1)"))
            };
            let status = rb.send().await.unwrap().status().as_u16();
            assert_eq!(
                status, 405,
                "{m} {path} is not documented but answers {status}"
            );
        }
    }
    // Every route the server answers is documented.
    for (path, method) in [
        ("/api/v1/execute", "post"),
        ("/api/v1/execute/stream", "post"),
        ("/api/v1/execute/ws", "get"),
        ("/api/v1/validate", "post"),
        ("/api/v1/languages", "get"),
        ("/api/v1/executions", "post"),
        ("/api/v1/executions/batch", "post"),
        ("/api/v1/executions/{id}", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/", "get"),
    ] {
        assert!(
            documented.contains(&(path.to_string(), method.to_string())),
            "{method} {path} is served but not in /openapi.json"
        );
    }

    // The real answers have the documented shapes.
    let schemas = &doc["components"]["schemas"];
    let check = |v: &Value, schema: &Value, what: &str| {
        let props = schema["properties"].as_object().unwrap();
        for req in schema["required"].as_array().unwrap() {
            assert!(
                v.get(req.as_str().unwrap()).is_some(),
                "{what}: {req} missing: {v}"
            );
        }
        for k in v.as_object().unwrap().keys() {
            assert!(props.contains_key(k), "{what}: {k} not in the schema");
        }
    };
    let r = srv
        .exec(json!({"language": "c", "code": "int main(void){return 0;}"}))
        .await;
    check(&r, &schemas["ExecutionResult"], "ExecutionResult");
    check(&r["compile"], &schemas["Outcome"], "Outcome");
    let statuses = schemas["ExecutionResult"]["properties"]["status"]["enum"]
        .as_array()
        .unwrap();
    assert!(statuses.contains(&r["status"]));
    let v: Value = srv
        .post_json("/api/v1/validate", &py("print(1)"))
        .await
        .json()
        .await
        .unwrap();
    check(&v, &schemas["Validation"], "Validation");
    let e: Value = srv.get("/nope").await.json().await.unwrap();
    check(&e, &schemas["Error"], "Error");
    // The request schema refuses unknown fields, as the server does.
    assert_eq!(schemas["ExecuteRequest"]["additionalProperties"], false);
    let props = schemas["ExecuteRequest"]["properties"].as_object().unwrap();
    for k in [
        "language", "version", "code", "files", "stdin", "args", "limits",
    ] {
        assert!(props.contains_key(k), "ExecuteRequest.{k}");
    }
}

/// The document's conventions: every operation tagged (with a declared tag) and carrying a
/// security requirement of declared schemes (public ones an empty one); the schemes are the
/// server's methods (API key header, bearer JWT/OAuth2, mutual TLS); `servers`; and the main
/// request bodies have examples that are valid requests: the real server runs each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_follows_the_conventions() {
    let srv = TestServer::start(&[]).await;
    let doc: Value = srv.get("/openapi.json").await.json().await.unwrap();
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("components.securitySchemes");
    assert_eq!(schemes["apiKey"]["type"], "apiKey");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "X-API-Key");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(schemes["mutualTLS"]["type"], "mutualTLS");
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let servers = doc["servers"].as_array().expect("servers");
    assert!(!servers.is_empty() && servers.iter().all(|s| s["url"].is_string()));

    let public = ["/health", "/metrics", "/openapi.json", "/"];
    let mut with_examples = BTreeSet::new();
    let mut used_tags = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let what = format!("{method} {path}");
            let op_tags = op["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no tags"));
            assert!(!op_tags.is_empty(), "{what}: no tags");
            for t in op_tags {
                let t = t.as_str().unwrap();
                assert!(tags.contains(t), "{what}: tag {t} is not declared");
                used_tags.insert(t.to_string());
            }
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no security"));
            if public.contains(&path.as_str()) {
                assert!(security.is_empty(), "{what} is public: {security:?}");
            } else {
                let names: BTreeSet<&str> = security
                    .iter()
                    .flat_map(|req| req.as_object().unwrap().keys())
                    .map(String::as_str)
                    .collect();
                for n in &names {
                    assert!(
                        schemes.contains_key(*n),
                        "{what}: scheme {n} is not declared"
                    );
                }
                for n in ["apiKey", "bearer", "mutualTLS"] {
                    assert!(names.contains(n), "{what}: {n} is not accepted");
                }
            }
            let examples = &op["requestBody"]["content"]["application/json"]["examples"];
            if let Some(examples) = examples.as_object() {
                assert!(!examples.is_empty(), "{what}");
                with_examples.insert(what.clone());
                for (name, ex) in examples {
                    let value = &ex["value"];
                    assert!(ex["summary"].is_string(), "{what} {name}");
                    // A valid request of the API it documents.
                    if path.starts_with("/api/v1/") && path != "/api/v1/executions/batch" {
                        serde_json::from_value::<isobox_core::ExecuteRequest>(value.clone())
                            .unwrap_or_else(|e| panic!("{what} {name}: {e}"));
                    }
                    let resp = srv.post_json(path, value).await;
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap();
                    assert!(
                        (200..300).contains(&status),
                        "{what} {name}: {status} {body}"
                    );
                    // The ones that run, ran as the example says.
                    if what == "post /api/v1/execute" {
                        let r: Value = serde_json::from_str(&body).unwrap();
                        assert_eq!(r["status"], "ok", "{name}: {r}");
                        if name == "tests" {
                            assert_eq!(r["summary"]["verdict"], "accepted", "{r}");
                        }
                        if name == "hello" {
                            assert_eq!(r["stdout"], "Hello, world\n", "{r}");
                        }
                    }
                }
            }
        }
    }
    for op in [
        "post /api/v1/execute",
        "post /api/v1/execute/stream",
        "post /api/v1/validate",
        "post /api/v1/executions",
        "post /api/v1/executions/batch",
        "post /judge0/submissions",
        "post /judge0/submissions/batch",
        "post /piston/api/v2/execute",
    ] {
        assert!(with_examples.contains(op), "{op} has no request examples");
    }
    let declared: BTreeSet<String> = tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(used_tags, declared, "a declared tag no operation uses");
    srv.stop().await;
}

/// Every error is the contract's JSON, routing and extraction failures included; a body far
/// over the limit is read (up to a bound) before the 413, so the client gets the answer
/// instead of a broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn framework_errors_are_json_and_oversized_bodies_get_their_413() {
    let srv = TestServer::start(&[]).await;
    let http = reqwest::Client::new();
    for path in ["/api/v1/executions/%FF", "/api/v1/executions/%C3%28"] {
        let resp = http.get(srv.url_for(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{path}: {body}"
        );
    }
    // 20 MB against a 4 MiB limit, sent whole with its Content-Length.
    let big = vec![b' '; 20 << 20];
    let resp = http
        .post(srv.url_for("/api/v1/execute"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("the client got no answer to an oversized body");
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "too_large", "{body}");
    // The connection (or a new one) still serves.
    let resp = http.get(srv.url_for("/health")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    srv.stop().await;
}

/// Reads until the server closes the connection (EOF or an error) or `within` passes: how long
/// it took, and what came.
async fn closed_within(
    s: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((
                    started.elapsed(),
                    String::from_utf8_lossy(&got).into_owned(),
                ))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Slow clients cannot hold the plain listener: a request head trickled a line at a time, an
/// idle kept-alive connection, a half-sent body and a WebSocket that never sends its request
/// are each dropped after their timeout; and at most `ISOBOX_MAX_CONNECTIONS` are served at
/// once (the next waits in the backlog, and is served when one closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_dropped_and_connections_are_capped() {
    let srv = TestServer::start(&[
        ("ISOBOX_HEADER_TIMEOUT_MS", "600"),
        ("ISOBOX_BODY_TIMEOUT_MS", "600"),
    ])
    .await;
    let limit = Duration::from_secs(5);
    // A head trickled one header line every 200 ms.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let started = Instant::now();
    trickle.await;
    assert!(
        started.elapsed() < limit,
        "a trickled request head was kept open {:?}",
        started.elapsed()
    );
    // An idle connection after a request.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (took, got) = closed_within(&mut s, limit)
        .await
        .expect("an idle kept-alive connection stayed open");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    // A body that stops half-way.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"POST /api/v1/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"language\":",
    )
    .await
    .unwrap();
    let (_, got) = closed_within(&mut s, limit)
        .await
        .expect("a half-sent body kept its connection open");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request_timeout"), "{got}");
    // A WebSocket that never sends its request.
    let ws_url = srv.url.replace("http://", "ws://") + "/api/v1/execute/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(limit, ws.next())
        .await
        .expect("a silent WebSocket was kept open");
    let text = match first {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => t.to_string(),
        other => format!("{other:?}"),
    };
    assert!(text.contains("request_timeout"), "{text}");
    srv.stop().await;

    // The cap: two connections held, the third waits, and is served once one closes.
    let srv = TestServer::start(&[("ISOBOX_MAX_CONNECTIONS", "2")]).await;
    let held1 = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let _held2 = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::spawn(raw_http(
        srv.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served past the cap of 2"
    );
    drop(held1);
    let r = tokio::time::timeout(limit, third)
        .await
        .expect("the waiting connection was never served")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    srv.stop().await;
}
