//! Streaming over REST: Server-Sent Events and the interactive WebSocket, with real clients.

use crate::common::*;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Parses an SSE body into (event, data) pairs.
fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut ev = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    ev = Some(e.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            ev.map(|e| (e, data))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_streams_output_as_it_is_produced() {
    let s = TestServer::start(&[]).await;
    let code = "import time, sys\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)\nprint('bye', file=sys.stderr, flush=True)\n";
    let started = Instant::now();
    let mut resp = reqwest::Client::new()
        .post(format!("{}/api/v1/execute/stream", s.url))
        .json(&json!({"language": "python", "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = String::new();
    let mut first_at = None;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        if first_at.is_none() && String::from_utf8_lossy(&chunk).contains("event: stdout") {
            first_at = Some(started.elapsed());
        }
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let total = started.elapsed();
    let events = sse_events(&body);
    let stdout: Vec<String> = events
        .iter()
        .filter(|(e, _)| e == "stdout")
        .map(|(_, d)| serde_json::from_str::<String>(d).unwrap())
        .collect();
    assert_eq!(stdout.concat(), "0\n1\n2\n3\n4\n", "{body}");
    assert!(stdout.len() >= 3, "the output came in one piece: {body}");
    assert!(events
        .iter()
        .any(|(e, d)| e == "stderr" && d.contains("bye")));
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "result");
    let result: Value = serde_json::from_str(data).unwrap();
    assert_eq!(result["status"], "ok");
    assert_eq!(result["stdout"], "0\n1\n2\n3\n4\n");
    // The first chunk came well before the end.
    assert!(
        first_at.unwrap() + Duration::from_millis(500) < total,
        "first {first_at:?}, total {total:?}"
    );
    s.stop().await;
}

/// A compiled program: the compile step's outcome comes as its own event, before the
/// program's output (with its warnings), and a failed compile ends with the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_reports_the_compile_step_before_the_output() {
    let s = TestServer::start(&[]).await;
    let stream = |code: &str| {
        let body = json!({"language": "c", "code": code, "compile_args": ["-Wall"]});
        let url = format!("{}/api/v1/execute/stream", s.url);
        async move {
            let text = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            sse_events(&text)
        }
    };
    let events = stream(&format!(
        "#include <stdio.h>\nint main(void) {{ int unused; puts(\"hi\"); return 0; }} /* {} */\n",
        token("sse-c")
    ))
    .await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["compile", "stdout", "result"], "{events:?}");
    let compile: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(compile["status"], "ok");
    assert!(
        compile["stderr"].as_str().unwrap().contains("unused"),
        "{compile}"
    );
    let events = stream("int main(void) { return nope; }").await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["compile", "result"], "{events:?}");
    let compile: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(
        compile["status"], "runtime_error",
        "the compiler's own exit: {compile}"
    );
    let result: Value = serde_json::from_str(&events[1].1).unwrap();
    assert_eq!(result["status"], "compile_error");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_bad_input_is_a_plain_error_and_disconnect_kills_the_run() {
    let s = TestServer::start(&[]).await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/api/v1/execute/stream", s.url))
        .json(&json!({"language": "intercal", "code": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unknown_language"
    );

    let tok = token("stream");
    let r = c
        .post(format!("{}/api/v1/execute/stream", s.url))
        .json(&json!({"language": "bash", "code": "sleep 30", "args": [tok], "limits": {"timeout_ms": 20000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Wait until the program runs (bash main.sh <token>), then hang up.
    wait_for("the program never started", Duration::from_secs(10), || {
        procs_with(&tok)
    })
    .await;
    drop(r);
    wait_gone(
        "the sandbox outlived its client",
        Duration::from_secs(1),
        || procs_with(&tok),
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_runs_an_interactive_program() {
    let s = TestServer::start(&[]).await;
    let ws_url = s.url.replace("http://", "ws://") + "/api/v1/execute/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("websocket");
    let code = "import sys\nfor line in sys.stdin:\n    print('echo:', line.strip(), flush=True)\nprint('done', flush=True)\n";
    ws.send(Message::text(
        json!({"language": "python", "code": code}).to_string(),
    ))
    .await
    .unwrap();
    let next_text = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| -> Value {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("no message in 10 s")
            {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("websocket ended: {other:?}"),
            }
        }
    };
    for word in ["alpha", "beta", "gamma"] {
        ws.send(Message::text(
            json!({"stdin": format!("{word}\n")}).to_string(),
        ))
        .await
        .unwrap();
        // Its echo comes back before we send the next line.
        let mut got = String::new();
        while !got.contains(&format!("echo: {word}\n")) {
            let m = next_text(&mut ws).await;
            assert_eq!(m["type"], "stdout", "{m}");
            got.push_str(m["data"].as_str().unwrap());
        }
    }
    ws.send(Message::text(json!({"close_stdin": true}).to_string()))
        .await
        .unwrap();
    let mut result = Value::Null;
    for _ in 0..10 {
        let m = next_text(&mut ws).await;
        if m["type"] == "result" {
            result = m["result"].clone();
            break;
        }
    }
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(
        result["stdout"],
        "echo: alpha\necho: beta\necho: gamma\ndone\n"
    );

    // Bad first message: an error message, not a run.
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(Message::text("{not json")).await.unwrap();
    let m = next_text(&mut ws).await;
    assert_eq!(m["type"], "error");
    assert_eq!(m["error"], "invalid_json");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_disconnect_kills_the_run_and_shutdown_ends_streams() {
    let mut s = TestServer::start(&[("ISOBOX_SHUTDOWN_GRACE_MS", "300")]).await;
    let ws_url = s.url.replace("http://", "ws://") + "/api/v1/execute/ws";
    let tok = token("stream");
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    ws.send(Message::text(json!({"language": "bash", "code": "sleep 30", "args": [tok], "limits": {"timeout_ms": 20000}}).to_string()))
        .await
        .unwrap();
    wait_for("the program never started", Duration::from_secs(10), || {
        procs_with(&tok)
    })
    .await;
    drop(ws);
    wait_gone(
        "the sandbox outlived its client",
        Duration::from_secs(1),
        || procs_with(&tok),
    )
    .await;

    // A stream still open at shutdown ends (the run is killed after the grace period).
    let tok2 = token("stream");
    let mut r = reqwest::Client::new()
        .post(format!("{}/api/v1/execute/stream", s.url))
        .json(&json!({"language": "bash", "code": "sleep 30", "args": [tok2], "limits": {"timeout_ms": 20000}}))
        .send()
        .await
        .unwrap();
    while procs_with(&tok2).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.begin_stop();
    let t = Instant::now();
    let reader = async {
        let mut body = String::new();
        while let Ok(Some(c)) = r.chunk().await {
            body.push_str(&String::from_utf8_lossy(&c));
        }
        body
    };
    let body = tokio::time::timeout(Duration::from_secs(15), reader)
        .await
        .expect("the stream never ended");
    assert!(
        s.finished_within(Duration::from_secs(15)).await,
        "run() never returned"
    );
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
    assert!(
        body.contains("event: result") || body.contains("event: error"),
        "{body}"
    );
    let left = procs_with(&tok2);
    assert!(left.is_empty(), "{left:?}");
}

/// Stdin into an interactive run has the cap of a plain request's stdin; a client writing into
/// a program that does not read is held back, not buffered by the server, then refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_stdin_is_bounded() {
    let s = TestServer::start(&[]).await;
    let ws_url = s.url.replace("http://", "ws://") + "/api/v1/execute/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let code = "import time\ntime.sleep(20)\n";
    ws.send(Message::text(
        json!({"language": "python", "code": code, "limits": {"timeout_ms": 20000}}).to_string(),
    ))
    .await
    .unwrap();
    // 2 MiB in 64 KiB frames, written by a task while this one reads.
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        let chunk = "x".repeat(64 << 10);
        for _ in 0..32 {
            let frame = Message::text(json!({ "stdin": chunk }).to_string());
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let verdict = loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.next())
            .await
            .expect("no answer within 15 s: the server kept buffering stdin")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "stdout" && v["type"] != "stderr" {
                    break v;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("websocket ended: {other:?}"),
        }
    };
    assert_eq!(verdict["type"], "error", "{verdict}");
    assert_eq!(verdict["error"], "too_large", "{verdict}");
    assert!(started.elapsed() < Duration::from_secs(15));
    writer.abort();
    s.stop().await;
}
