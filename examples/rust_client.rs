//! A small IsoBox REST client in Rust with reqwest (and tokio, serde_json, anyhow).
//!
//! ```sh
//! ISOBOX_URL=http://127.0.0.1:8000 ISOBOX_API_KEY=... cargo run --example rust_client
//! ```
//!
//! Environment: `ISOBOX_URL` (default `http://127.0.0.1:8000`), `ISOBOX_API_KEY` (optional, sent
//! in the `ISOBOX_API_KEY_HEADER` header, default `X-API-Key`, as the server's `API_KEY_HEADER`).
//!
//! It runs a hello world with stdin (`POST /api/v1/execute`), streams one (`POST
//! /api/v1/execute/stream`, Server-Sent Events), submits an async job and polls it (`POST
//! /api/v1/executions`, `GET /api/v1/executions/{id}`) and lists the languages. Exits 1 on any
//! failure. A 429 is waited out as its `Retry-After` header says (at most 3 times); every other
//! error prints the server's `{"error", "message"}`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::{header, Method, Response, StatusCode};
use serde_json::{json, Value};

const HELLO: &str =
    "import sys\nname = input()\nprint(f\"Hello, {name}!\")\nprint(\"bye\", file=sys.stderr)\n";
const MAX_RETRIES: u32 = 3;

/// An error answer of the API.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: String,
    message: String,
    retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )?;
        if let Some(s) = self.retry_after {
            write!(f, " (retry after {s} s)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

struct IsoBox {
    url: String,
    api_key: Option<(String, String)>,
    http: reqwest::Client,
}

/// One Server-Sent Event of `POST /api/v1/execute/stream`.
enum Event {
    Stdout(String),
    Stderr(String),
    Result(Value),
}

impl IsoBox {
    fn from_env() -> anyhow::Result<IsoBox> {
        let url = std::env::var("ISOBOX_URL").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
        let header = std::env::var("ISOBOX_API_KEY_HEADER").unwrap_or_else(|_| "X-API-Key".into());
        let api_key = std::env::var("ISOBOX_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| (header, k));
        Ok(IsoBox {
            url: url.trim_end_matches('/').to_string(),
            api_key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    /// Sends one request; answers the 2xx response or the API error. 429 (and 503 with
    /// `Retry-After`) are retried after the delay the server asks for.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.url));
            if let Some((h, k)) = &self.api_key {
                req = req.header(h.as_str(), k.as_str());
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {}", self.url))?;
            if resp.status().is_success() {
                return Ok(resp);
            }
            let err = api_error(resp).await;
            let retryable = err.status == StatusCode::TOO_MANY_REQUESTS
                || (err.status == StatusCode::SERVICE_UNAVAILABLE && err.retry_after.is_some());
            if !retryable || attempt >= MAX_RETRIES {
                return Err(err.into());
            }
            attempt += 1;
            let wait = err.retry_after.unwrap_or(1).min(60);
            eprintln!(
                "[{} {}] retrying in {wait} s (Retry-After)",
                err.status.as_u16(),
                err.kind
            );
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        Ok(self.send(method, path, body).await?.json().await?)
    }

    /// `POST /api/v1/execute`: the result object.
    async fn execute(&self, req: &Value) -> anyhow::Result<Value> {
        self.json(Method::POST, "/api/v1/execute", Some(req)).await
    }

    /// `POST /api/v1/execute/stream`: calls `on_event` for each event as it arrives; answers the
    /// result. An `error` event is an error.
    async fn stream(&self, req: &Value, mut on_event: impl FnMut(&Event)) -> anyhow::Result<Value> {
        let mut resp = self
            .send(Method::POST, "/api/v1/execute/stream", Some(req))
            .await?;
        let mut buf: Vec<u8> = Vec::new();
        let (mut event, mut data) = (String::from("message"), Vec::<String>::new());
        while let Some(chunk) = resp.chunk().await? {
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8(raw)?;
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() {
                        let payload: Value = serde_json::from_str(&data.join("\n"))?;
                        let ev = match event.as_str() {
                            "stdout" => Event::Stdout(payload.as_str().unwrap_or("").into()),
                            "stderr" => Event::Stderr(payload.as_str().unwrap_or("").into()),
                            "result" => Event::Result(payload),
                            "error" => bail!(ApiError {
                                status: StatusCode::OK,
                                kind: payload["error"].as_str().unwrap_or("?").into(),
                                message: payload["message"].as_str().unwrap_or("?").into(),
                                retry_after: None,
                            }),
                            _ => Event::Stdout(String::new()),
                        };
                        on_event(&ev);
                        if let Event::Result(r) = ev {
                            return Ok(r);
                        }
                    }
                    event = "message".into();
                    data.clear();
                } else if line.starts_with(':') {
                    // keep-alive comment
                } else {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "event" => event = value.to_string(),
                        "data" => data.push(value.to_string()),
                        _ => {}
                    }
                }
            }
        }
        bail!("the stream ended without a result")
    }

    /// `POST /api/v1/executions`, then `GET /api/v1/executions/{id}` until the job is done.
    async fn run_job(&self, req: &Value) -> anyhow::Result<Value> {
        let submitted = self
            .json(Method::POST, "/api/v1/executions", Some(req))
            .await?;
        let id = submitted["id"].as_str().context("no job id")?.to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self
                .json(Method::GET, &format!("/api/v1/executions/{id}"), None)
                .await?;
            if job["state"] == "done" {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!("job {id} still {} after 60 s", job["state"]);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn api_error(resp: Response) -> ApiError {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let text = resp.text().await.unwrap_or_default();
    let (kind, message) = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v["error"].is_string() && v["message"].is_string() => (
            v["error"].as_str().unwrap_or_default().to_string(),
            v["message"].as_str().unwrap_or_default().to_string(),
        ),
        _ => ("http_error".to_string(), text.trim().to_string()),
    };
    ApiError {
        status,
        kind,
        message,
        retry_after,
    }
}

fn hello(stdin: &str) -> Value {
    json!({"language": "python", "code": HELLO, "stdin": stdin})
}

fn show(result: &Value) {
    println!(
        "status: {} (exit code {})",
        result["status"].as_str().unwrap_or("?"),
        result["exit_code"]
    );
    for name in ["stdout", "stderr"] {
        for line in result[name].as_str().unwrap_or("").lines() {
            println!("{name}: {line}");
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let box_ = IsoBox::from_env()?;
    println!("IsoBox at {}", box_.url);

    println!("== POST /api/v1/execute");
    let result = box_.execute(&hello("world")).await?;
    show(&result);
    let mut ok = result["status"] == "ok";

    println!("== POST /api/v1/execute/stream");
    let result = box_
        .stream(&hello("stream"), |ev| match ev {
            Event::Stdout(s) => println!("[stdout] {}", s.trim_end()),
            Event::Stderr(s) => println!("[stderr] {}", s.trim_end()),
            Event::Result(r) => {
                println!("[result] status: {}", r["status"].as_str().unwrap_or("?"))
            }
        })
        .await?;
    ok &= result["status"] == "ok";

    println!("== POST /api/v1/executions + GET /api/v1/executions/{{id}}");
    let job = box_.run_job(&hello("job")).await?;
    println!(
        "job {}: {}",
        job["id"].as_str().unwrap_or("?"),
        job["state"].as_str().unwrap_or("?")
    );
    show(&job);
    ok &= job["status"] == "ok";

    println!("== GET /api/v1/languages");
    let langs = box_.json(Method::GET, "/api/v1/languages", None).await?;
    let names: Vec<String> = langs
        .as_array()
        .context("languages: not a list")?
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["name"].as_str().unwrap_or("?"),
                l["version"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!("languages: {}", names.join(", "));
    Ok(ok)
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
