//! The Piston routes over HTTP: admission, `GET runtimes`, `POST execute` and the WebSocket
//! `connect`, each a translation through [`super::map`] to the API layer and back. Errors are
//! Piston's `{"message": ...}` with the status of our error table.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use isobox_core::engine::StdinMsg;
use isobox_sandbox::Stream;
use serde_json::{json, Value};

use super::map::{self, Host, Job, Refusal};
use crate::api::run::{self, RunEvent, Via};
use crate::api::{self, authorize, Action, ApiError, Caller, ErrorKind};
use crate::state::App;

/// An API error as Piston answers it: our status and headers (`Retry-After`,
/// `WWW-Authenticate`, `RateLimit-*`), the body `{"message": ...}`.
fn refuse(e: ApiError) -> Response {
    let message = e.message.clone();
    let (mut parts, _) = e.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json!({ "message": message }).to_string()))
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError::new(r.kind, r.message)
    }
}

/// Admission, as for `/api/v1/*`: the caller into the request's extensions, the rate limiter's
/// state onto the response.
pub async fn gate(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    crate::http::middleware::admit_then(&app, req, next, refuse).await
}

fn host(app: &App) -> Host<'_> {
    let executor = app.engine.executor();
    Host {
        languages: api::languages(app),
        table: executor.languages(),
        max: &executor.policy().max,
    }
}

/// `GET /api/v2/runtimes`.
pub async fn runtimes(State(app): State<Arc<App>>) -> Response {
    Json(map::runtimes(&api::languages(&app))).into_response()
}

/// The body: JSON (Piston's 415 otherwise), within the body limit and the body timeout.
async fn body_json(app: &App, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "requests must be of type application/json",
        ));
    }
    let bytes = tokio::time::timeout(
        app.config.http.body_timeout,
        axum::body::to_bytes(body, app.config.max_body_bytes),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            ErrorKind::RequestTimeout,
            "the request body did not arrive in time",
        )
    })?
    .map_err(|_| ApiError::too_large("the request body is over the limit"))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let m = e.to_string();
        let m = m.split(" at line ").next().unwrap_or("malformed JSON");
        ApiError::new(
            ErrorKind::InvalidJson,
            format!("the body is not valid JSON: {m}"),
        )
    })
}

/// A Piston job, checked and authorized like any request of ours.
async fn authorized(
    app: &App,
    caller: &Caller,
    body: &Value,
    interactive: bool,
) -> Result<(Job, api::Authorized), ApiError> {
    let job = map::job(body, &host(app), interactive)?;
    let auth = authorize(app, caller, Action::Execute, job.request.clone()).await?;
    Ok((job, auth))
}

/// `POST /api/v2/execute`: through the dedup cache, like `/api/v1/execute`.
pub async fn execute(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let answer = async {
        let body = body_json(&app, &headers, body).await?;
        let (_, auth) = authorized(&app, &caller, &body, false).await?;
        run::execute(&app, &caller, auth, Via::Piston).await
    };
    match answer.await {
        Ok(result) => Json(map::response(&result)).into_response(),
        Err(e) => refuse(e),
    }
}

/// `GET /api/v2/connect`: the WebSocket of interactive runs.
pub async fn connect(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => ws
            .max_message_size(app.config.max_body_bytes)
            .on_upgrade(move |socket| session(app, socket, caller)),
        Err(_) => refuse(ApiError::new(
            ErrorKind::UpgradeRequired,
            "this endpoint speaks WebSocket only",
        )),
    }
}

/// Piston's close codes.
mod close {
    pub const ALREADY_INITIALIZED: (u16, &str) = (4000, "Already Initialized");
    pub const INIT_TIMEOUT: (u16, &str) = (4001, "Initialization Timeout");
    pub const NOTIFIED_ERROR: (u16, &str) = (4002, "Notified Error");
    pub const NOT_INITIALIZED: (u16, &str) = (4003, "Not yet initialized");
    pub const STDIN_ONLY: (u16, &str) = (4004, "Can only write to stdin");
    pub const INVALID_SIGNAL: (u16, &str) = (4005, "Invalid signal");
    pub const COMPLETED: (u16, &str) = (4999, "Job Completed");
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn close(socket: &mut WebSocket, (code, reason): (u16, &'static str)) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// An `error` message, then close 4002 (the error is counted: it is the session's answer).
async fn fail(app: &App, socket: &mut WebSocket, e: ApiError) {
    e.count(&app.metrics);
    send(socket, json!({"type": "error", "message": e.message})).await;
    close(socket, close::NOTIFIED_ERROR).await;
}

/// A client message as JSON (text, or binary holding UTF-8 text).
enum Incoming {
    Json(Value),
    Invalid(String),
    Ignore,
    Gone,
}

fn incoming(msg: Option<Result<Message, axum::Error>>) -> Incoming {
    let text = match msg {
        Some(Ok(Message::Text(t))) => t.to_string(),
        Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
            Ok(t) => t,
            Err(_) => return Incoming::Invalid("the message is not UTF-8 text".into()),
        },
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Incoming::Ignore,
        _ => return Incoming::Gone,
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => Incoming::Json(v),
        Err(e) => {
            let m = e.to_string();
            let m = m.split(" at line ").next().unwrap_or("malformed JSON");
            Incoming::Invalid(format!("the message is not valid JSON: {m}"))
        }
    }
}

/// Output chunks as text without splitting a UTF-8 character between two `data` messages.
#[derive(Default)]
struct Carry(Vec<u8>);

impl Carry {
    fn push(&mut self, data: &[u8]) -> String {
        self.0.extend_from_slice(data);
        let keep = incomplete_tail(&self.0);
        let rest = self.0.split_off(self.0.len() - keep);
        let text = String::from_utf8_lossy(&self.0).into_owned();
        self.0 = rest;
        text
    }

    fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.0).into_owned();
        self.0.clear();
        text
    }
}

/// How many bytes at the end of `b` begin a UTF-8 character that is not complete yet.
fn incomplete_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(4) {
        let byte = b[b.len() - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// The protocol: the client's `init` (a job, within the header timeout, else 4001); then
/// `runtime`, `stage`, `data` (stdout/stderr as produced), `exit` of each stage and close 4999;
/// client `data` on `stdin` goes to the program, a `signal` ends it.
async fn session(app: Arc<App>, mut socket: WebSocket, caller: Caller) {
    let until = tokio::time::Instant::now() + app.config.http.header_timeout;
    let init = loop {
        let Ok(msg) = tokio::time::timeout_at(until, socket.recv()).await else {
            close(&mut socket, close::INIT_TIMEOUT).await;
            return;
        };
        match incoming(msg) {
            Incoming::Json(v) => match v.get("type").and_then(Value::as_str) {
                Some("init") => break v,
                Some("data" | "signal") => {
                    close(&mut socket, close::NOT_INITIALIZED).await;
                    return;
                }
                _ => continue,
            },
            Incoming::Invalid(m) => {
                fail(&app, &mut socket, ApiError::new(ErrorKind::InvalidJson, m)).await;
                return;
            }
            Incoming::Ignore => continue,
            Incoming::Gone => return,
        }
    };
    let (job, auth) = match authorized(&app, &caller, &init, true).await {
        Ok(a) => a,
        Err(e) => {
            fail(&app, &mut socket, e).await;
            return;
        }
    };
    let hello = json!({"type": "runtime", "language": job.language, "version": job.version});
    let mut stage = if job.compiled { "compile" } else { "run" };
    if !send(&mut socket, hello).await
        || !send(&mut socket, json!({"type": "stage", "stage": stage})).await
    {
        return;
    }
    let mut run = run::stream(&app, &caller, auth, Via::Piston, true);
    let stdin = run.stdin();
    let cap = run.stdin_cap();
    let mut sent = 0usize;
    // Stdin read from the socket and not yet taken by the program: the socket is not read
    // while this is full, so a client that writes faster than the program reads is held back.
    let mut pending: VecDeque<StdinMsg> = VecDeque::new();
    let (mut out, mut err) = (Carry::default(), Carry::default());
    loop {
        tokio::select! {
            msg = socket.recv(), if pending.len() < 2 => {
                let v = match incoming(msg) {
                    Incoming::Json(v) => v,
                    Incoming::Invalid(m) => {
                        fail(&app, &mut socket, ApiError::new(ErrorKind::InvalidJson, m)).await;
                        return;
                    }
                    Incoming::Ignore => continue,
                    // The client left: dropping the run kills it.
                    Incoming::Gone => return,
                };
                match v.get("type").and_then(Value::as_str) {
                    Some("init") => {
                        close(&mut socket, close::ALREADY_INITIALIZED).await;
                        return;
                    }
                    Some("data") => {
                        if v.get("stream").and_then(Value::as_str) != Some("stdin") {
                            close(&mut socket, close::STDIN_ONLY).await;
                            return;
                        }
                        let Some(data) = v.get("data").and_then(Value::as_str) else {
                            let e = ApiError::new(ErrorKind::InvalidRequest, "data must be a string");
                            fail(&app, &mut socket, e).await;
                            return;
                        };
                        sent += data.len();
                        if sent > cap {
                            let e = ApiError::too_large(format!(
                                "stdin is over {cap} bytes, the most a run may be sent"
                            ));
                            fail(&app, &mut socket, e).await;
                            return;
                        }
                        if !data.is_empty() {
                            pending.push_back(StdinMsg::Data(data.as_bytes().to_vec()));
                        }
                    }
                    Some("signal") => {
                        let name = v.get("signal").and_then(Value::as_str).unwrap_or("");
                        if map::signal_number(name).is_none() {
                            close(&mut socket, close::INVALID_SIGNAL).await;
                            return;
                        }
                        if map::ends_program(name) {
                            // Dropping the run kills its sandbox (within a supervisor tick).
                            drop(run);
                            let exit = json!({"type": "exit", "stage": stage, "code": null, "signal": "SIGKILL"});
                            send(&mut socket, exit).await;
                            close(&mut socket, close::COMPLETED).await;
                            return;
                        }
                    }
                    _ => {}
                }
            },
            permit = stdin.reserve(), if !pending.is_empty() => match permit {
                Ok(p) => p.send(pending.pop_front().expect("pending")),
                // The program's stdin is gone (it ended, or closed it): drop what is left.
                Err(_) => pending.clear(),
            },
            ev = run.next() => match ev {
                Some(RunEvent::Compiled(c)) => {
                    // The compile step ended: its output, its exit, then the run's stage (or,
                    // when it failed, the result closes the socket).
                    for (name, text) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
                        if !text.is_empty()
                            && !send(&mut socket, json!({"type": "data", "stream": name, "data": text})).await
                        {
                            return;
                        }
                    }
                    let e = map::ending(&c);
                    let exit = json!({"type": "exit", "stage": "compile", "code": e.code, "signal": e.signal});
                    if !send(&mut socket, exit).await {
                        return;
                    }
                    if c.status == isobox_core::RunStatus::Ok {
                        stage = "run";
                        if !send(&mut socket, json!({"type": "stage", "stage": "run"})).await {
                            return;
                        }
                    } else {
                        stage = COMPILE_FAILED;
                    }
                }
                Some(RunEvent::Output { stream, data }) => {
                    if stage == "compile" {
                        // Run output: the compile step succeeded.
                        stage = "run";
                        let exit = json!({"type": "exit", "stage": "compile", "code": 0, "signal": null});
                        if !send(&mut socket, exit).await
                            || !send(&mut socket, json!({"type": "stage", "stage": "run"})).await
                        {
                            return;
                        }
                    }
                    let (name, text) = match stream {
                        Stream::Stdout => ("stdout", out.push(&data)),
                        Stream::Stderr => ("stderr", err.push(&data)),
                    };
                    if !text.is_empty()
                        && !send(&mut socket, json!({"type": "data", "stream": name, "data": text})).await
                    {
                        return;
                    }
                }
                Some(RunEvent::Done(r)) => {
                    match *r {
                        Ok(result) => finish(&mut socket, &result, stage, &mut out, &mut err).await,
                        Err(e) => fail(&app, &mut socket, e).await,
                    }
                    return;
                }
                None => return,
            }
        }
    }
}

/// The stage after a compile step that failed and was reported as it ended.
const COMPILE_FAILED: &str = "compile-failed";

/// The end of a run: what is left of the stages (a compile step that produced no run output
/// yet, its output and exit), the run's `exit`, close 4999.
async fn finish(
    socket: &mut WebSocket,
    result: &isobox_core::ExecutionResult,
    stage: &str,
    out: &mut Carry,
    err: &mut Carry,
) {
    let data = |stream: &str, text: &str| json!({"type": "data", "stream": stream, "data": text});
    if stage == COMPILE_FAILED {
        // Its output and exit went out when it ended.
        close(socket, close::COMPLETED).await;
        return;
    }
    if stage == "compile" {
        if let Some(c) = &result.compile {
            for (name, text) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
                if !text.is_empty() {
                    send(socket, data(name, text)).await;
                }
            }
            let e = map::ending(c);
            let exit =
                json!({"type": "exit", "stage": "compile", "code": e.code, "signal": e.signal});
            send(socket, exit).await;
        } else {
            let exit = json!({"type": "exit", "stage": "compile", "code": 0, "signal": null});
            send(socket, exit).await;
        }
        if map::compile_failed(result) {
            close(socket, close::COMPLETED).await;
            return;
        }
        send(socket, json!({"type": "stage", "stage": "run"})).await;
    }
    for (name, text) in [("stdout", out.finish()), ("stderr", err.finish())] {
        if !text.is_empty() {
            send(socket, data(name, &text)).await;
        }
    }
    let e = map::ending(&result.run);
    let exit = json!({"type": "exit", "stage": "run", "code": e.code, "signal": e.signal});
    send(socket, exit).await;
    close(socket, close::COMPLETED).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_never_split_between_messages() {
        let s = "héllo 🌎!".as_bytes();
        let mut c = Carry::default();
        let mut got = String::new();
        for b in s {
            got.push_str(&c.push(&[*b]));
        }
        got.push_str(&c.finish());
        assert_eq!(got, "héllo 🌎!");
        let mut c = Carry::default();
        assert_eq!(c.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(c.push(b"\xf0\x9f"), "");
        assert_eq!(c.finish(), "\u{FFFD}");
    }
}
