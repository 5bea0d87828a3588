//! Streaming runs over REST: Server-Sent Events (`POST /api/v1/execute/stream`) and a WebSocket
//! for interactive programs (`GET /api/v1/execute/ws`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use isobox_core::engine::{StdinMsg, StreamEvent, StreamHandle};
use isobox_core::{CoreError, ExecuteRequest};
use isobox_sandbox::Stream;
use serde_json::json;

use crate::error::ApiError;
use crate::App;

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

/// Checks the request before anything streams, so that bad input is a plain 4xx.
pub async fn precheck(app: &App, req: &ExecuteRequest) -> Result<(), CoreError> {
    let executor = app.engine.executor().clone();
    let req = req.clone();
    tokio::task::spawn_blocking(move || executor.prepare(&req).map(|_| ()))
        .await
        .map_err(|e| CoreError::Config(format!("validation task failed: {e}")))?
}

fn record(app: &App, caller: &str, ev: &Result<isobox_core::engine::Execution, CoreError>) {
    if let Ok(ex) = ev {
        crate::routes::record_execution(app, caller, ex, "rest", true);
    }
}

fn error_json(e: &CoreError) -> serde_json::Value {
    let api = ApiError::from(e);
    json!({ "error": api.kind, "message": api.message })
}

/// Server-Sent Events: `stdout` and `stderr` events (data: the text as a JSON string), then one
/// `result` event (the result object) or one `error` event (the error object).
pub fn sse(app: Arc<App>, handle: StreamHandle, caller: String) -> Response {
    let state = (
        handle,
        Utf8Carry::default(),
        Utf8Carry::default(),
        false,
        app,
        caller,
    );
    let stream = futures_util::stream::unfold(
        state,
        |(mut h, mut out, mut err, done, app, caller)| async move {
            if done {
                return None;
            }
            let ev = h.events.recv().await?;
            let event = match ev {
                StreamEvent::Output {
                    stream: Stream::Stdout,
                    data,
                } => Event::default()
                    .event("stdout")
                    .data(json!(out.push(&data)).to_string()),
                StreamEvent::Output {
                    stream: Stream::Stderr,
                    data,
                } => Event::default()
                    .event("stderr")
                    .data(json!(err.push(&data)).to_string()),
                StreamEvent::Done(r) => {
                    let r = *r;
                    record(&app, &caller, &r);
                    let e = match &r {
                        Ok(ex) => Event::default()
                            .event("result")
                            .data(serde_json::to_string(&ex.result).unwrap_or_default()),
                        Err(e) => Event::default()
                            .event("error")
                            .data(error_json(e).to_string()),
                    };
                    return Some((Ok::<_, Infallible>(e), (h, out, err, true, app, caller)));
                }
            };
            Some((Ok(event), (h, out, err, false, app, caller)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The WebSocket protocol: the client's first message is the request (JSON); then
/// `{"stdin": "..."}` and `{"close_stdin": true}`; the server sends `{"type": "stdout"|"stderr",
/// "data": "..."}` and finally `{"type": "result", "result": {...}}` or `{"type": "error", ...}`.
pub fn websocket(
    app: Arc<App>,
    ws: WebSocketUpgrade,
    caller: String,
    roles: Vec<String>,
) -> Response {
    ws.max_message_size(app.config.max_body_bytes)
        .on_upgrade(move |socket| session(app, socket, caller, roles))
}

async fn send_json(socket: &mut WebSocket, v: serde_json::Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn session(app: Arc<App>, mut socket: WebSocket, caller: String, roles: Vec<String>) {
    // The request.
    let req: ExecuteRequest = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str(&t) {
                Ok(r) => break r,
                Err(e) => {
                    let what = e.to_string();
                    let what = what
                        .split(" at line ")
                        .next()
                        .unwrap_or("malformed JSON")
                        .to_string();
                    send_json(&mut socket, json!({"type": "error", "error": "invalid_json", "message": format!("the first message is not a valid request: {what}")})).await;
                    return;
                }
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    if let Err(why) = crate::routes::authorize_ws(&app, &caller, &roles, &req) {
        send_json(
            &mut socket,
            json!({"type": "error", "error": "forbidden", "message": why}),
        )
        .await;
        return;
    }
    if let Err(e) = precheck(&app, &req).await {
        let mut v = error_json(&e);
        v["type"] = json!("error");
        send_json(&mut socket, v).await;
        return;
    }
    let StreamHandle { mut events, stdin } = app.engine.execute_stream(req, caller.clone(), true);
    let (mut out, mut err) = (Utf8Carry::default(), Utf8Carry::default());
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    if let Some(s) = v.get("stdin").and_then(|s| s.as_str()) {
                        let _ = stdin.send(StdinMsg::Data(s.as_bytes().to_vec()));
                    }
                    if v.get("close_stdin").and_then(|b| b.as_bool()) == Some(true) {
                        let _ = stdin.send(StdinMsg::Close);
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    let _ = stdin.send(StdinMsg::Data(b.to_vec()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // The client left: dropping `events` kills the run.
                _ => return,
            },
            ev = events.recv() => match ev {
                Some(StreamEvent::Output { stream, data }) => {
                    let (kind, text) = match stream {
                        Stream::Stdout => ("stdout", out.push(&data)),
                        Stream::Stderr => ("stderr", err.push(&data)),
                    };
                    if !text.is_empty() && !send_json(&mut socket, json!({"type": kind, "data": text})).await {
                        return;
                    }
                }
                Some(StreamEvent::Done(r)) => {
                    let r = *r;
                    record(&app, &caller, &r);
                    let v = match &r {
                        Ok(ex) => json!({"type": "result", "result": ex.result}),
                        Err(e) => { let mut v = error_json(e); v["type"] = json!("error"); v }
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
