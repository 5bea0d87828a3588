//! The Playground in a real browser: Debian's chromium, headless, driven by chromedriver over
//! the W3C WebDriver protocol (plain HTTP + JSON with reqwest), against a live server with API
//! keys on. Screenshots go to `target/test-artifacts/playground-*.png`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`;
//! scripts/test installs them). Without them this test fails: it never skips.

use crate::common::{procs_with, TempDir, TestServer};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const KEY: &str = "k-browser-test-0123456789";

/// Records errors and CSP violations from the first moment of every page.
const WATCH: &str = "window.__problems = [];
document.addEventListener('securitypolicyviolation', (e) =>
  window.__problems.push('CSP ' + e.violatedDirective + ' ' + e.blockedURI));
window.addEventListener('error', (e) => window.__problems.push('error ' + e.message));
window.addEventListener('unhandledrejection', (e) => window.__problems.push('rejection ' + e.reason));";

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// chromedriver and the browser it started; everything is killed and removed on drop, even
/// when the test fails half-way.
struct Browser {
    driver: Child,
    port: u16,
    session: Option<String>,
    profile: TempDir,
    http: reqwest::Client,
}

impl Browser {
    async fn start() -> Browser {
        let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver"))
        else {
            panic!(
                "the browser test needs Debian's chromium and chromedriver: \
                 apt-get install -y --no-install-recommends chromium chromium-driver \
                 (scripts/test installs them)"
            );
        };
        let profile = TempDir::new("chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(profile.0.join("chromedriver.log")).unwrap();
        // The browser's temporary files, configuration and crash database stay in the profile
        // too (nothing in /tmp or ~/.config outlives the test).
        let tmp = profile.0.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .env("TMPDIR", &tmp)
                .env("XDG_CONFIG_HOME", profile.0.join("config"))
                .env("XDG_CACHE_HOME", profile.0.join("cache"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                // Its own process group: the browser it starts goes with it.
                .process_group(0)
                .spawn()
                .expect("start chromedriver")
        };
        let mut b = Browser {
            driver,
            port,
            session: None,
            profile,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = b
                .http
                .get(b.url("/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start: {}",
                b.driver_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let data_dir = b.profile.0.join("profile");
        let caps = json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--window-size=1280,1200",
                format!("--user-data-dir={}", data_dir.display()),
            ]
        } } } });
        let resp: Value = b
            .http
            .post(b.url("/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}\n{}", b.driver_log()))
            .to_string();
        b.session = Some(id);
        b.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": WATCH}}),
        )
        .await;
        b
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn driver_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.profile.0.join("chromedriver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A WebDriver command of this session; its `value`, or a panic naming the error.
    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = self.url(&format!(
            "/session/{}{path}",
            self.session.as_ref().unwrap()
        ));
        let rb = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = rb.send().await.unwrap().json().await.unwrap();
        if let Some(err) = v["value"].get("error") {
            panic!(
                "WebDriver {method} {path}: {err}: {}",
                v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    async fn clear(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The rendered text of the element (empty while it is hidden).
    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.cmd("GET", &format!("/element/{e}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn displayed(&self, css: &str) -> bool {
        let e = self.find(css).await;
        self.cmd("GET", &format!("/element/{e}/displayed"), Value::Null)
            .await
            .as_bool()
            .unwrap()
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until `script` returns something truthy; panics with `what` and the page's state.
    async fn wait_for(&self, what: &str, script: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.js(script).await;
            let truthy = !matches!(&v, Value::Null | Value::Bool(false)) && v.as_str() != Some("");
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let state = self
                    .js(
                        "return ['status: ' + document.getElementById('status').textContent, \
                         'error: ' + document.getElementById('error').textContent, \
                         'output: ' + document.getElementById('output').textContent].join('\\n')",
                    )
                    .await;
                panic!(
                    "timed out waiting for {what}:\n{}",
                    state.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("playground-{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Problems the page itself saw (CSP violations, uncaught errors).
    async fn problems(&self) -> Vec<String> {
        let v = self
            .js("return window.__problems || ['the watcher did not run']")
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// A plain blocking HTTP request to chromedriver (Drop cannot await).
fn raw_request(port: u16, method: &str, path: &str) {
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Politely first: closing the session makes chromedriver quit the browser.
        if let Some(id) = self.session.take() {
            raw_request(self.port, "DELETE", &format!("/session/{id}"));
        }
        raw_request(self.port, "GET", "/shutdown");
        let profile = self.profile.0.to_string_lossy().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !procs_with(&profile).is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Then by force: chromedriver's process group (not reaped yet, so its id is still
        // ours), and any process naming our profile.
        // SAFETY: kill(2) on our own child's process group and our own browser's processes.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        for _ in 0..50 {
            let left = procs_with(&profile);
            if left.is_empty() {
                break;
            }
            for p in left {
                // SAFETY: as above.
                unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The profile directory goes with `self.profile`.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn playground_runs_programs_in_a_real_browser() {
    let started = Instant::now();
    let srv = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", KEY),
        ("API_KEY_HEADER", "X-Team-Key"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "100/min"),
    ])
    .await;
    let b = Browser::start().await;
    b.goto(&format!("{}/", srv.url)).await;

    // The page loads without a key; the API answers 401 and the page asks for one.
    b.wait_for(
        "the key form",
        "return !document.getElementById('auth').hidden",
        Duration::from_secs(20),
    )
    .await;
    assert!(b.displayed("#key").await);
    let error = b.text("#error").await;
    assert!(error.contains("needs a key"), "{error}");
    let focused = b.js("return document.activeElement.id").await;
    assert_eq!(focused, "key", "the key field gets the focus");
    // It offers the header the server named in WWW-Authenticate.
    let scheme = b
        .js("return document.getElementById('key-scheme').value")
        .await;
    assert_eq!(
        scheme.as_str().map(str::to_ascii_lowercase).as_deref(),
        Some("header:x-team-key")
    );
    b.type_into("#key", KEY).await;
    b.click("#auth-form button[type=submit]").await;
    b.wait_for(
        "the languages",
        "return !document.getElementById('language').disabled && \
         [...document.getElementById('language').options].some(o => o.value === 'python')",
        Duration::from_secs(20),
    )
    .await;
    assert!(!b.displayed("#auth").await, "the key form closes");
    assert!(b.text("#error").await.is_empty(), "the error is cleared");
    // The default language's template is in the editor, with line numbers.
    assert_eq!(
        b.js("return document.getElementById('language').value")
            .await,
        "python"
    );
    let code = b.js("return document.getElementById('editor').value").await;
    assert!(code.as_str().unwrap().contains("Hello"), "{code}");
    let lines = code.as_str().unwrap().split('\n').count();
    let gutter = b
        .js("return document.getElementById('gutter').textContent")
        .await;
    assert_eq!(
        gutter.as_str().unwrap().split('\n').count(),
        lines,
        "{gutter}"
    );

    // Python, reading stdin, started with the Run button; output and status appear.
    b.click("#language option[value=python]").await;
    b.clear("#editor").await;
    b.type_into(
        "#editor",
        "import sys\nprint(\"hi\", input())\nprint(\"to stderr\", file=sys.stderr)",
    )
    .await;
    b.clear("#stdin").await;
    b.type_into("#stdin", "there").await;
    b.click("#run").await;
    b.wait_for(
        "the python result",
        "return document.getElementById('r-status').textContent",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(b.text("#r-status").await, "ok");
    assert_eq!(b.text("#r-exit").await, "0");
    assert!(b.text("#r-wall").await.ends_with(" ms"));
    assert!(b.text("#r-cpu").await.ends_with(" ms"));
    assert!(b.text("#r-mem").await.contains("iB"));
    let output = b.text("#output").await;
    assert!(output.contains("hi there"), "{output}");
    let stderr = b
        .js("return [...document.querySelectorAll('#output .err')].map(e => e.textContent).join('')")
        .await;
    assert_eq!(stderr, "to stderr\n", "stderr is marked");
    let status = b.text("#status").await;
    assert!(status.starts_with("Finished: ok"), "{status}");
    let shot = b.screenshot("python").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // A program that draws a PNG: the page shows the image it left in its work dir.
    b.clear("#editor").await;
    b.type_into(
        "#editor",
        "import zlib, struct\n\
         def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))\n\
         raw = b''.join(b'\\x00' + b'\\xff\\x00\\x00' * 8 for _ in range(8))\n\
         png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 8, 8, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')\n\
         open('red.png', 'wb').write(png)\n\
         print('drawn')\n",
    )
    .await;
    b.click("#run").await;
    let width = b
        .wait_for(
            "the image",
            "const i = document.querySelector('#images img'); \
             return i && i.complete && i.naturalWidth",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(width, 8, "the 8x8 PNG decoded in the page");
    assert!(b.displayed("#images-box").await);
    let caption = b.text("#images figcaption").await;
    assert!(caption.starts_with("red.png"), "{caption}");
    b.screenshot("image").await;

    // C with a compile error, started with Ctrl+Enter from the editor.
    b.click("#language option[value=c]").await;
    b.clear("#editor").await;
    let c_code = "int main(void) { return undeclared_thing; }";
    b.type_into("#editor", c_code).await;
    b.type_into("#editor", "\u{E009}\u{E007}").await;
    b.wait_for(
        "the C result",
        "return document.getElementById('r-status').textContent === 'compile_error'",
        Duration::from_secs(60),
    )
    .await;
    assert!(b.displayed("#compile-box").await);
    let compiler = b.text("#compile").await;
    assert!(compiler.contains("undeclared_thing"), "{compiler}");
    assert!(compiler.contains("error"), "{compiler}");
    assert_eq!(b.text("#r-exit").await, "1", "the compiler's exit code");
    assert!(b.text("#status").await.contains("compile_error"));
    b.screenshot("c-compile-error").await;

    // Too much stdin: the API's 413 becomes a clear message.
    b.js("document.getElementById('stdin').value = 'x'.repeat(1100000)")
        .await;
    b.click("#run").await;
    let error = b
        .wait_for(
            "the 413 message",
            "return document.getElementById('error').textContent",
            Duration::from_secs(20),
        )
        .await;
    assert!(error.as_str().unwrap().starts_with("Too large:"), "{error}");
    b.js("document.getElementById('stdin').value = 'abc'").await;

    // Tab indents, Shift+Tab outdents, Esc then Tab leaves the editor.
    b.clear("#editor").await;
    b.type_into("#editor", "\u{E004}x").await;
    assert_eq!(
        b.js("return document.getElementById('editor').value").await,
        "    x"
    );
    b.type_into("#editor", "\u{E008}\u{E004}").await;
    assert_eq!(
        b.js("return document.getElementById('editor').value").await,
        "x"
    );
    assert_eq!(b.js("return document.activeElement.id").await, "editor");
    b.type_into("#editor", "\u{E00C}\u{E004}").await;
    let focused = b.js("return document.activeElement.id").await;
    assert_eq!(focused, "stdin", "Esc then Tab moves on to the next field");
    b.clear("#editor").await;
    b.type_into("#editor", c_code).await;

    // The share link carries language, code and stdin in the fragment; a fresh load reads it.
    b.click("#share").await;
    let link = b
        .js("return document.getElementById('share-url').value")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(link.starts_with(&format!("{}/#", srv.url)), "{link}");
    assert!(link.contains("lang=c"), "{link}");
    assert!(link.contains("undeclared_thing"), "{link}");
    assert!(link.contains("stdin=abc"), "{link}");
    assert!(!link.contains(KEY), "the key never goes in the link");
    let problems = b.problems().await;
    assert!(problems.is_empty(), "the page saw problems: {problems:?}");
    b.goto("about:blank").await;
    b.goto(&link).await;
    b.wait_for(
        "the shared program",
        "return document.getElementById('language').value === 'c'",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('editor').value").await,
        c_code
    );
    assert_eq!(
        b.js("return document.getElementById('stdin').value").await,
        "abc"
    );

    // The key is in this tab's sessionStorage only.
    let stores = b
        .js("return [sessionStorage.getItem('isobox.key'), JSON.stringify(localStorage), location.href]")
        .await;
    assert_eq!(stores[0], KEY);
    assert!(!stores[1].as_str().unwrap().contains(KEY), "{stores}");
    assert!(!stores[2].as_str().unwrap().contains(KEY), "{stores}");

    // The theme toggle switches and is remembered.
    let before = b.js("return document.documentElement.dataset.theme").await;
    b.click("#theme").await;
    let after = b.js("return document.documentElement.dataset.theme").await;
    assert_ne!(before, after);
    assert_eq!(
        b.js("return localStorage.getItem('isobox.theme')").await,
        after
    );
    let pressed = b
        .js("return document.getElementById('theme').getAttribute('aria-pressed')")
        .await;
    assert_eq!(pressed, if after == "dark" { "true" } else { "false" });
    let bg = b
        .js("return getComputedStyle(document.body).backgroundColor")
        .await;
    let dark_bg = "rgb(13, 17, 23)";
    assert_eq!(bg == dark_bg, after == "dark", "{bg}");
    b.screenshot("theme").await;

    // Every control has an accessible name.
    let unlabelled = b
        .js(
            "return [...document.querySelectorAll('input, select, textarea, button')]
               .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                            && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
               .map(e => e.id || e.outerHTML)",
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a name");

    let problems = b.problems().await;
    assert!(problems.is_empty(), "the page saw problems: {problems:?}");
    drop(b);
    srv.stop().await;
    eprintln!("browser test took {:?}", started.elapsed());
}
