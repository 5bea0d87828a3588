//! Streaming runs over REST: Server-Sent Events (`POST /api/v1/execute/stream`) and a WebSocket
//! for interactive programs (`GET /api/v1/execute/ws`). Errors that happen once a stream is
//! open travel as its last event, counted here.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use isobox_core::engine::StdinMsg;
use isobox_core::ExecuteRequest;
use isobox_sandbox::Stream;
use serde_json::{json, Value};

use crate::api::run::{self, RunEvent, RunStream, Via};
use crate::api::{authorize, Action, ApiError, Caller};
use crate::state::App;

/// Turns byte chunks into valid UTF-8 text without splitting a character between chunks.
#[derive(Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    pub fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..good]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: keep it for the next chunk.
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..good + bad);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// An error event's JSON (counted: it is the stream's answer).
fn error_json(app: &App, e: &ApiError) -> Value {
    e.count(&app.metrics);
    let mut v = e.body();
    v["type"] = json!("error");
    v
}

/// Server-Sent Events: a `compile` event for a compiled language (data: the compile step's
/// outcome), `stdout` and `stderr` events (data: the text as a JSON string), then one
/// `result` event (the result object) or one `error` event (the error object).
pub fn sse(app: Arc<App>, run: RunStream) -> Response {
    let state = (run, Utf8Carry::default(), Utf8Carry::default(), app);
    let stream =
        futures_util::stream::unfold(state, |(mut run, mut out, mut err, app)| async move {
            let event = match run.next().await? {
                RunEvent::Compiled(c) => Event::default()
                    .event("compile")
                    .data(serde_json::to_string(&c).unwrap_or_default()),
                RunEvent::Output {
                    stream: Stream::Stdout,
                    data,
                } => Event::default()
                    .event("stdout")
                    .data(json!(out.push(&data)).to_string()),
                RunEvent::Output {
                    stream: Stream::Stderr,
                    data,
                } => Event::default()
                    .event("stderr")
                    .data(json!(err.push(&data)).to_string()),
                RunEvent::Done(r) => match *r {
                    Ok(result) => Event::default()
                        .event("result")
                        .data(serde_json::to_string(&result).unwrap_or_default()),
                    Err(e) => {
                        let mut v = error_json(&app, &e);
                        if let Some(m) = v.as_object_mut() {
                            m.remove("type");
                        }
                        Event::default().event("error").data(v.to_string())
                    }
                },
            };
            Some((Ok::<_, Infallible>(event), (run, out, err, app)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The WebSocket protocol: the client's first message is the request (JSON); then
/// `{"stdin": "..."}` and `{"close_stdin": true}`; the server sends `{"type": "stdout"|"stderr",
/// "data": "..."}` and finally `{"type": "result", "result": {...}}` or `{"type": "error", ...}`.
pub fn websocket(app: Arc<App>, ws: WebSocketUpgrade, caller: Caller) -> Response {
    ws.max_message_size(app.config.max_body_bytes)
        .on_upgrade(move |socket| session(app, socket, caller))
}

async fn send_json(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn session(app: Arc<App>, mut socket: WebSocket, caller: Caller) {
    // The request: within the header timeout, as a request head would be.
    let until = tokio::time::Instant::now() + app.config.http.header_timeout;
    let req: ExecuteRequest = loop {
        let Ok(msg) = tokio::time::timeout_at(until, socket.recv()).await else {
            let e = ApiError::new(
                crate::api::ErrorKind::RequestTimeout,
                "the request did not arrive in time",
            );
            send_json(&mut socket, error_json(&app, &e)).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        };
        match msg {
            Some(Ok(Message::Text(t))) => match serde_json::from_str(&t) {
                Ok(r) => break r,
                Err(e) => {
                    let e = super::body::invalid("the first message is not a valid request", &e);
                    send_json(&mut socket, error_json(&app, &e)).await;
                    return;
                }
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    let auth = match authorize(&app, &caller, Action::Execute, req).await {
        Ok(a) => a,
        Err(e) => {
            send_json(&mut socket, error_json(&app, &e)).await;
            return;
        }
    };
    let mut run = run::stream(&app, &caller, auth, Via::Rest, true);
    let stdin = run.stdin();
    let cap = run.stdin_cap();
    let mut sent = 0usize;
    // Stdin read from the socket and not yet taken by the program: the socket is not read
    // while this is full, so a client that writes faster than the program reads is held back
    // by its own connection.
    let mut pending: std::collections::VecDeque<StdinMsg> = std::collections::VecDeque::new();
    let (mut out, mut err) = (Utf8Carry::default(), Utf8Carry::default());
    loop {
        tokio::select! {
            msg = socket.recv(), if pending.len() < 2 => {
                let data = match msg {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or_default();
                        let data = v.get("stdin").and_then(|s| s.as_str()).unwrap_or("");
                        if !data.is_empty() {
                            pending.push_back(StdinMsg::Data(data.as_bytes().to_vec()));
                        }
                        if v.get("close_stdin").and_then(|b| b.as_bool()) == Some(true) {
                            pending.push_back(StdinMsg::Close);
                        }
                        data.len()
                    }
                    Some(Ok(Message::Binary(b))) => {
                        let n = b.len();
                        pending.push_back(StdinMsg::Data(b.to_vec()));
                        n
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => 0,
                    // The client left: dropping the run kills it.
                    _ => return,
                };
                sent += data;
                if sent > cap {
                    let e = ApiError::too_large(format!(
                        "stdin is over {cap} bytes, the most a run may be sent"
                    ));
                    send_json(&mut socket, error_json(&app, &e)).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            permit = stdin.reserve(), if !pending.is_empty() => match permit {
                Ok(p) => p.send(pending.pop_front().expect("pending")),
                // The program's stdin is gone (it ended, or closed it): drop what is left.
                Err(_) => pending.clear(),
            },
            ev = run.next() => match ev {
                Some(RunEvent::Compiled(c)) => {
                    if !send_json(&mut socket, json!({"type": "compile", "compile": c})).await {
                        return;
                    }
                }
                Some(RunEvent::Output { stream, data }) => {
                    let (kind, text) = match stream {
                        Stream::Stdout => ("stdout", out.push(&data)),
                        Stream::Stderr => ("stderr", err.push(&data)),
                    };
                    if !text.is_empty() && !send_json(&mut socket, json!({"type": kind, "data": text})).await {
                        return;
                    }
                }
                Some(RunEvent::Done(r)) => {
                    let v = match *r {
                        Ok(result) => json!({"type": "result", "result": result}),
                        Err(e) => error_json(&app, &e),
                    };
                    send_json(&mut socket, v).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_never_split() {
        let mut c = Utf8Carry::default();
        let s = "héllo 🌎!".as_bytes();
        let mut out = String::new();
        for b in s {
            out.push_str(&c.push(&[*b]));
        }
        out.push_str(&c.finish());
        assert_eq!(out, "héllo 🌎!");
        let mut c = Utf8Carry::default();
        assert_eq!(c.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(c.push(b"\xf0\x9f"), "");
        assert_eq!(c.finish(), "\u{FFFD}");
    }
}
