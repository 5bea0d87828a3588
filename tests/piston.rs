//! The Piston v2 compatible API (`/piston/api/v2/*`) driven as Piston's clients drive it: a
//! real server on loopback, reqwest for `runtimes` and `execute`, a real WebSocket client for
//! `connect`, the real sandbox underneath.

use crate::common::*;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const BASE: &str = "/piston/api/v2";

/// `POST {BASE}/execute`: the status and the JSON body.
async fn execute(s: &TestServer, body: &Value) -> (u16, Value) {
    let resp = s.post_json(&format!("{BASE}/execute"), body).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, v)
}

/// `POST {BASE}/execute` that must answer 200.
async fn run_ok(s: &TestServer, body: Value) -> Value {
    let (status, v) = execute(s, &body).await;
    assert_eq!(status, 200, "{body} -> {v}");
    v
}

/// `POST {BASE}/execute` that must answer 400; its `message`, checked to be the whole body.
async fn refused(s: &TestServer, body: Value) -> String {
    let (status, v) = execute(s, &body).await;
    assert_eq!(status, 400, "{body} -> {v}");
    let obj = v.as_object().unwrap();
    assert_eq!(
        obj.len(),
        1,
        "Piston's error body is {{\"message\"}} only: {v}"
    );
    v["message"].as_str().unwrap().to_string()
}

fn py(code: &str) -> Value {
    json!({"language": "python", "version": "*", "files": [{"content": code}]})
}

/// Our version of `language`, from our own API.
async fn our_version(s: &TestServer, language: &str) -> String {
    let langs: Value = s.get("/api/v1/languages").await.json().await.unwrap();
    let list = langs
        .as_array()
        .or_else(|| langs["languages"].as_array())
        .unwrap()
        .clone();
    list.iter()
        .find(|l| l["name"] == language)
        .unwrap_or_else(|| panic!("{language} in {langs}"))["version"]
        .as_str()
        .unwrap()
        .to_string()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(s: &TestServer) -> Ws {
    let url = s.url.replace("http://", "ws://") + BASE + "/connect";
    tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket")
        .0
}

/// What the server sent next: a JSON message, or the close frame's code and reason.
#[derive(Debug)]
enum Got {
    Msg(Value),
    Closed(u16, String),
}

async fn next(ws: &mut Ws) -> Got {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("nothing from the server in 20 s")
        {
            Some(Ok(Message::Text(t))) => return Got::Msg(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(Some(f)))) => {
                return Got::Closed(u16::from(f.code), f.reason.to_string())
            }
            Some(Ok(Message::Close(None))) | None => return Got::Closed(0, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("websocket error: {e}"),
        }
    }
}

async fn next_msg(ws: &mut Ws) -> Value {
    match next(ws).await {
        Got::Msg(v) => v,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn closed_with(ws: &mut Ws) -> (u16, String) {
    match next(ws).await {
        Got::Closed(c, r) => (c, r),
        other => panic!("expected the close frame, got {other:?}"),
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Every language this host runs is listed with our version and aliases; the prefix is
/// configurable, and `off` removes the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runtimes_list_our_languages_and_versions() {
    let s = TestServer::start(&[]).await;
    let resp = s.get(&format!("{BASE}/runtimes")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let rts: Value = resp.json().await.unwrap();
    let rts = rts.as_array().unwrap();
    let all = s.app.languages.read().unwrap().clone();
    let ours: Vec<_> = all.iter().filter(|l| l.available).collect();
    assert_eq!(rts.len(), ours.len(), "{rts:?}");
    let python = rts.iter().find(|r| r["language"] == "python").unwrap();
    assert_eq!(python["version"], our_version(&s, "python").await);
    assert!(
        python["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "py"),
        "{python}"
    );
    for r in rts {
        assert!(r["language"].is_string() && r["version"].is_string() && r["aliases"].is_array());
    }
    s.stop().await;

    let s = TestServer::start(&[("ISOBOX_PISTON_PREFIX", "off")]).await;
    assert_eq!(
        s.get(&format!("{BASE}/runtimes")).await.status().as_u16(),
        404
    );
    s.stop().await;
    let s = TestServer::start(&[("ISOBOX_PISTON_PREFIX", "/compat/piston")]).await;
    assert_eq!(
        s.get(&format!("{BASE}/runtimes")).await.status().as_u16(),
        404
    );
    let resp = s.get("/compat/piston/api/v2/runtimes").await;
    assert_eq!(resp.status().as_u16(), 200);
    s.stop().await;
}

/// An interpreted and a compiled language, and a compile error, in Piston's response shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execute_runs_interpreted_and_compiled_programs() {
    let s = TestServer::start(&[]).await;
    let v = run_ok(
        &s,
        py("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n"),
    )
    .await;
    assert_eq!(v["language"], "python");
    assert_eq!(v["version"], our_version(&s, "python").await);
    assert!(v.get("compile").is_none(), "{v}");
    let run = &v["run"];
    assert_eq!(run["stdout"], "out\n");
    assert_eq!(run["stderr"], "err\n");
    assert_eq!(run["output"], "out\nerr\n");
    assert_eq!(run["code"], 3);
    assert_eq!(run["signal"], Value::Null);
    assert_eq!(run["status"], "RE");
    assert_eq!(run["message"], "Exited with error status 3");
    assert!(run["wall_time"].as_u64().is_some() && run["cpu_time"].as_u64().is_some());
    assert!(run["memory"].as_u64().unwrap() > 0, "{run}");

    // A clean exit: code 0, no status, no message.
    let v = run_ok(&s, py("print('hi')")).await;
    assert_eq!(v["run"]["code"], 0);
    assert_eq!(v["run"]["status"], Value::Null);
    assert_eq!(v["run"]["message"], Value::Null);

    // Compiled: a compile stage, then the run.
    let c = "#include <stdio.h>\nint main(void){puts(\"compiled\");return 0;}\n";
    let v = run_ok(
        &s,
        json!({"language": "c", "version": "*", "files": [{"name": "prog.c", "content": c}]}),
    )
    .await;
    assert_eq!(v["language"], "c");
    assert_eq!(v["compile"]["code"], 0, "{v}");
    assert_eq!(v["run"]["stdout"], "compiled\n");
    assert_eq!(v["run"]["code"], 0);

    // A compile error: the compile stage fails and `run` is that stage (as Piston answers).
    let v = run_ok(
        &s,
        json!({"language": "c", "version": "*", "files": [{"content": "int main( {"}]}),
    )
    .await;
    let compile = &v["compile"];
    assert_ne!(compile["code"], 0, "{v}");
    assert_eq!(compile["status"], "RE", "{v}");
    assert!(
        compile["stderr"].as_str().unwrap().contains("error"),
        "{compile}"
    );
    assert_eq!(v["run"], v["compile"]);
    s.stop().await;
}

/// stdin (a trailing newline added, as Piston does), args, several files (the first UTF-8
/// one runs, the others are beside it), base64 and hex contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdin_args_and_files_in_every_encoding() {
    let s = TestServer::start(&[]).await;
    let main = "import sys, helper\n\
                data = sys.stdin.read()\n\
                print(repr(data), sys.argv[1:], helper.NAME)\n\
                print(open('blob.bin', 'rb').read())\n\
                print(open('hexed.txt').read())\n";
    let v = run_ok(
        &s,
        json!({
            "language": "py",
            "version": "*",
            "files": [
                // Listed first, but not UTF-8: the entry point is the first UTF-8 file.
                {"name": "blob.bin", "content": "AAH/", "encoding": "base64"},
                {"name": "main.py", "content": main},
                {"name": "helper.py", "content": "NAME = 'helper'\n"},
                {"name": "hexed.txt", "content": "686578", "encoding": "hex"},
            ],
            "stdin": "line one",
            "args": ["a b", "--flag"],
        }),
    )
    .await;
    assert_eq!(
        v["run"]["stdout"], "'line one\\n' ['a b', '--flag'] helper\nb'\\x00\\x01\\xff'\nhex\n",
        "{v}"
    );
    assert_eq!(v["run"]["code"], 0);

    // A base64 file as Node reads base64: URL-safe alphabet, no padding.
    let v = run_ok(
        &s,
        json!({"language": "python", "version": "*", "files": [
            {"content": "print(open('d').read())"},
            {"name": "d", "content": "aGk_Pw", "encoding": "base64"},
        ]}),
    )
    .await;
    assert_eq!(v["run"]["stdout"], "hi??\n", "{v}");
    s.stop().await;
}

/// `*`, an exact version, the range forms Piston accepts; a version or language we do not
/// have is Piston's "runtime is unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_resolve_as_piston_selects_them() {
    let s = TestServer::start(&[]).await;
    let ver = our_version(&s, "python").await;
    let parts: Vec<u64> = ver.split('.').map(|p| p.parse().unwrap()).collect();
    let (major, minor) = (parts[0], parts[1]);
    let body = |version: &str| json!({"language": "python", "version": version, "files": [{"content": "print(1)"}]});
    for version in [
        "*".to_string(),
        ver.clone(),
        format!("{major}"),
        format!("{major}.x"),
        format!("{major}.{minor}.x"),
        format!("^{major}.{minor}"),
        format!("~{major}.{minor}"),
        format!(">={major}.{minor} <{}", major + 1),
        format!("{} || {major}.x", major + 10),
    ] {
        let v = run_ok(&s, body(&version)).await;
        assert_eq!(v["version"], ver, "{version}");
        assert_eq!(v["run"]["stdout"], "1\n", "{version}");
    }
    for version in [
        format!("{}", major + 1),
        format!("<{major}"),
        "latest".into(),
    ] {
        let m = refused(&s, body(&version)).await;
        assert_eq!(m, format!("python-{version} runtime is unknown"));
    }
    let m = refused(
        &s,
        json!({"language": "cobol", "version": "*", "files": [{"content": "x"}]}),
    )
    .await;
    assert_eq!(m, "cobol-* runtime is unknown");
    s.stop().await;
}

/// Timeouts and the memory limit in Piston's units, reported as Piston reports them; -1 is
/// the server's maximum; over it is Piston's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_map_and_report_pistons_statuses() {
    let s = TestServer::start(&[]).await;
    let t = std::time::Instant::now();
    let mut body = py("while True:\n    pass\n");
    body["run_timeout"] = json!(800);
    let v = run_ok(&s, body).await;
    let run = &v["run"];
    assert_eq!(run["status"], "TO", "{v}");
    assert_eq!(run["signal"], "SIGKILL");
    assert_eq!(run["code"], Value::Null);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    let mut body = py("b = bytearray(400 << 20)\nprint(len(b))\n");
    body["run_memory_limit"] = json!(64 * 1024 * 1024);
    let v = run_ok(&s, body).await;
    let run = &v["run"];
    assert_eq!(run["signal"], "SIGKILL", "{v}");
    assert_eq!(run["code"], Value::Null);
    assert_ne!(run["stdout"], "419430400\n");

    // -1: the server's maximum (the program fits in it). Compile limits, which Piston's
    // clients send with every job, are accepted for a language without a compile step.
    let mut body = py("b = bytearray(100 << 20)\nprint(len(b))\n");
    body["run_memory_limit"] = json!(-1);
    body["run_timeout"] = json!(-1);
    body["compile_timeout"] = json!(10000);
    body["compile_cpu_time"] = json!(10000);
    body["compile_memory_limit"] = json!(-1);
    let v = run_ok(&s, body).await;
    assert_eq!(v["run"]["stdout"], "104857600\n", "{v}");

    // Compile limits reach the compile step: a compile stage over its time is `TO`.
    let slow = "#include <stdio.h>\n".to_string()
        + &(0..400)
            .map(|i| format!("static int f{i}(int x){{return x*{i}+1;}}\n"))
            .collect::<String>()
        + "int main(void){return 0;}\n";
    let v = run_ok(
        &s,
        json!({"language": "cpp", "version": "*", "files": [{"content": slow}],
               "compile_timeout": 1, "compile_cpu_time": 1}),
    )
    .await;
    assert_eq!(v["compile"]["status"], "TO", "{v}");
    assert_eq!(v["run"], v["compile"]);

    let mut body = py("print(1)");
    body["run_timeout"] = json!(3_600_000);
    assert_eq!(
        refused(&s, body).await,
        "run_timeout cannot exceed the configured limit of 30000"
    );
    let mut body = py("print(1)");
    body["compile_memory_limit"] = json!(1u64 << 40);
    let m = refused(&s, body).await;
    assert!(
        m.starts_with("compile_memory_limit cannot exceed the configured limit of "),
        "{m}"
    );
    let mut body = py("print(1)");
    body["run_cpu_time"] = json!("fast");
    assert_eq!(
        refused(&s, body).await,
        "If specified, run_cpu_time must be a number"
    );
    let mut body = py("print(1)");
    body["run_memory_limit"] = json!(-2);
    assert_eq!(
        refused(&s, body).await,
        "run_memory_limit must be non-negative"
    );
    s.stop().await;
}

/// Bad input: Piston's 400 `{"message"}` (its own sentences where it has them), 415 for a body
/// that is not JSON; nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_pistons_message() {
    let s = TestServer::start(&[]).await;
    let cases = [
        (json!({}), "language is required as a string"),
        (
            json!({"language": "python"}),
            "version is required as a string",
        ),
        (
            json!({"language": "python", "version": "*"}),
            "files is required as an array",
        ),
        (
            json!({"language": "python", "version": "*", "files": "print(1)"}),
            "files is required as an array",
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"name": "a.py"}]}),
            "files[0].content is required as a string",
        ),
        (
            json!({"language": "python", "version": "*", "files": []}),
            "files must include at least one utf8 encoded file",
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"content": "AA==", "encoding": "base64"}]}),
            "files must include at least one utf8 encoded file",
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"content": "x"}, {"content": "xyz", "encoding": "hex"}]}),
            "files[1].content is not valid hex",
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"content": "x"}], "args": "a"}),
            "args must be an array of strings",
        ),
        (
            json!({"language": "python", "version": "*", "files": [{"content": "x"}], "stdin": 5}),
            "stdin must be a string",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(refused(&s, body).await, want);
    }
    // Our own checks still apply, in the same shape (here: a file name that is a path out).
    let m = refused(
        &s,
        json!({"language": "python", "version": "*", "files": [{"name": "../x.py", "content": "x"}]}),
    )
    .await;
    assert!(!m.is_empty());

    let resp = s
        .post_raw(
            &format!("{BASE}/execute"),
            Some("text/plain"),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 415);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"message": "requests must be of type application/json"})
    );
    let resp = s
        .post_raw(
            &format!("{BASE}/execute"),
            Some("application/json"),
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );
    s.stop().await;
}

/// The same gate as `/api/v1`: no key, no run (nor runtimes, nor WebSocket); a key admits.
/// And the same dedup cache: an identical request is answered from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gate_and_the_dedup_cache_apply() {
    let s = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-piston"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "100/min"),
    ])
    .await;
    let resp = s.get(&format!("{BASE}/runtimes")).await;
    assert_eq!(resp.status().as_u16(), 401);
    let (status, v) = execute(&s, &py("print(1)")).await;
    assert_eq!(status, 401);
    assert!(v["message"].is_string(), "{v}");
    let url = s.url.replace("http://", "ws://") + BASE + "/connect";
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 401)
        }
        other => panic!("the handshake must be refused: {:?}", other.map(|_| ())),
    }

    let with_key = |rb: reqwest::RequestBuilder| rb.header("X-API-Key", "k-piston");
    let resp = with_key(s.client.get(s.url_for(&format!("{BASE}/runtimes"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = py("import random\nprint(random.random())");
    let mut outs = Vec::new();
    for _ in 0..2 {
        let resp = with_key(s.client.post(s.url_for(&format!("{BASE}/execute"))))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().await.unwrap();
        outs.push(v["run"]["stdout"].clone());
    }
    assert_eq!(outs[0], outs[1], "the second run came from the dedup cache");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("x-api-key", "k-piston".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("admitted");
    send(
        &mut ws,
        json!({"type": "init", "language": "python", "version": "*", "files": [{"content": "print('ok')"}]}),
    )
    .await;
    assert_eq!(next_msg(&mut ws).await["type"], "runtime");
    s.stop().await;
}

/// An interactive session: init, runtime, stage, stdin echoed line by line, exit, close 4999.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_interactive_session() {
    let s = TestServer::start(&[]).await;
    let mut ws = connect(&s).await;
    let code = "import sys\nfor line in sys.stdin:\n    line = line.strip()\n    if line == 'quit':\n        break\n    print('echo:', line, flush=True)\nprint('bye', file=sys.stderr)\n";
    send(
        &mut ws,
        json!({"type": "init", "language": "python", "version": "*",
               "files": [{"content": code}], "stdin": "discarded\n"}),
    )
    .await;
    let rt = next_msg(&mut ws).await;
    assert_eq!(rt["type"], "runtime", "{rt}");
    assert_eq!(rt["language"], "python");
    assert_eq!(rt["version"], our_version(&s, "python").await);
    assert_eq!(
        next_msg(&mut ws).await,
        json!({"type": "stage", "stage": "run"})
    );
    for word in ["alpha", "beta"] {
        send(
            &mut ws,
            json!({"type": "data", "stream": "stdin", "data": format!("{word}\n")}),
        )
        .await;
        let mut got = String::new();
        while !got.contains(&format!("echo: {word}\n")) {
            let m = next_msg(&mut ws).await;
            assert_eq!(m["type"], "data", "{m}");
            assert_eq!(m["stream"], "stdout", "{m}");
            got.push_str(m["data"].as_str().unwrap());
        }
        assert!(!got.contains("discarded"), "init stdin is discarded: {got}");
    }
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "quit\n"}),
    )
    .await;
    let m = next_msg(&mut ws).await;
    assert_eq!(
        m,
        json!({"type": "data", "stream": "stderr", "data": "bye\n"})
    );
    assert_eq!(
        next_msg(&mut ws).await,
        json!({"type": "exit", "stage": "run", "code": 0, "signal": null})
    );
    assert_eq!(closed_with(&mut ws).await, (4999, "Job Completed".into()));
    s.stop().await;
}

/// A compiled language over the WebSocket: the compile stage and its exit, then the run; a
/// compile error ends after the compile stage, its output sent as data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_compiled_stages() {
    let s = TestServer::start(&[]).await;
    let mut ws = connect(&s).await;
    // A warning: a successful compile's output is sent too, before the compile stage's exit.
    let c =
        "#include <stdio.h>\n#warning \"heads up\"\nint main(void){puts(\"from c\");return 4;}\n";
    send(
        &mut ws,
        json!({"type": "init", "language": "c", "version": "*", "files": [{"content": c}]}),
    )
    .await;
    assert_eq!(next_msg(&mut ws).await["type"], "runtime");
    let mut msgs = Vec::new();
    let close = loop {
        match next(&mut ws).await {
            Got::Msg(m) => msgs.push(m),
            Got::Closed(code, _) => break code,
        }
    };
    assert_eq!(close, 4999);
    assert_eq!(msgs.len(), 6, "{msgs:?}");
    assert_eq!(msgs[1]["type"], "data", "{msgs:?}");
    assert_eq!(msgs[1]["stream"], "stderr");
    assert!(
        msgs[1]["data"].as_str().unwrap().contains("heads up"),
        "{msgs:?}"
    );
    msgs.remove(1);
    assert_eq!(
        msgs,
        [
            json!({"type": "stage", "stage": "compile"}),
            json!({"type": "exit", "stage": "compile", "code": 0, "signal": null}),
            json!({"type": "stage", "stage": "run"}),
            json!({"type": "data", "stream": "stdout", "data": "from c\n"}),
            json!({"type": "exit", "stage": "run", "code": 4, "signal": null}),
        ]
    );

    let mut ws = connect(&s).await;
    send(
        &mut ws,
        json!({"type": "init", "language": "c", "version": "*", "files": [{"content": "int main( {"}]}),
    )
    .await;
    assert_eq!(next_msg(&mut ws).await["type"], "runtime");
    assert_eq!(
        next_msg(&mut ws).await,
        json!({"type": "stage", "stage": "compile"})
    );
    let mut saw_error = false;
    let exit = loop {
        let m = next_msg(&mut ws).await;
        match m["type"].as_str() {
            Some("data") => saw_error |= m["data"].as_str().unwrap().contains("error"),
            Some("exit") => break m,
            _ => panic!("unexpected {m}"),
        }
    };
    assert!(saw_error);
    assert_eq!(exit["stage"], "compile");
    assert_ne!(exit["code"], 0, "{exit}");
    assert_eq!(closed_with(&mut ws).await.0, 4999);
    s.stop().await;
}

/// A `signal` from the client ends the run at once (its sandbox is gone); a signal name Piston
/// does not know closes with 4005.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_signal_kills_the_run() {
    let s = TestServer::start(&[]).await;
    let tok = token("piston");
    let mut ws = connect(&s).await;
    send(
        &mut ws,
        json!({"type": "init", "language": "bash", "version": "*",
               "files": [{"content": "echo started; sleep 30"}], "args": [tok],
               "run_timeout": 20000}),
    )
    .await;
    assert_eq!(next_msg(&mut ws).await["type"], "runtime");
    assert_eq!(next_msg(&mut ws).await["stage"], "run");
    assert_eq!(next_msg(&mut ws).await["data"], "started\n");
    wait_for("the program never started", Duration::from_secs(10), || {
        procs_with(&tok)
    })
    .await;
    // A signal that does nothing by default changes nothing.
    send(&mut ws, json!({"type": "signal", "signal": "SIGWINCH"})).await;
    send(&mut ws, json!({"type": "signal", "signal": "SIGTERM"})).await;
    assert_eq!(
        next_msg(&mut ws).await,
        json!({"type": "exit", "stage": "run", "code": null, "signal": "SIGKILL"})
    );
    assert_eq!(closed_with(&mut ws).await.0, 4999);
    wait_gone(
        "the sandbox outlived the signal",
        Duration::from_secs(2),
        || procs_with(&tok),
    )
    .await;

    let mut ws = connect(&s).await;
    send(
        &mut ws,
        json!({"type": "init", "language": "bash", "version": "*", "files": [{"content": "sleep 5"}]}),
    )
    .await;
    assert_eq!(next_msg(&mut ws).await["type"], "runtime");
    send(&mut ws, json!({"type": "signal", "signal": "SIGNOPE"})).await;
    loop {
        match next(&mut ws).await {
            Got::Msg(m) => assert_eq!(m["type"], "stage", "{m}"),
            Got::Closed(code, reason) => {
                assert_eq!((code, reason.as_str()), (4005, "Invalid signal"));
                break;
            }
        }
    }
    s.stop().await;
}

/// A bad `init` is an `error` message and close 4002; a message before `init` is 4003; a
/// second `init` is 4000; writing to stdout is 4004; no `init` in time is 4001.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_bad_init_and_protocol_errors() {
    let s = TestServer::start(&[("ISOBOX_HEADER_TIMEOUT_MS", "500")]).await;

    let mut ws = connect(&s).await;
    ws.send(Message::text("{not json")).await.unwrap();
    let m = next_msg(&mut ws).await;
    assert_eq!(m["type"], "error");
    assert!(m["message"].is_string(), "{m}");
    assert_eq!(closed_with(&mut ws).await, (4002, "Notified Error".into()));

    let mut ws = connect(&s).await;
    send(
        &mut ws,
        json!({"type": "init", "language": "python", "version": "1.0.0", "files": [{"content": "x"}]}),
    )
    .await;
    assert_eq!(
        next_msg(&mut ws).await,
        json!({"type": "error", "message": "python-1.0.0 runtime is unknown"})
    );
    assert_eq!(closed_with(&mut ws).await.0, 4002);

    let mut ws = connect(&s).await;
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdin", "data": "x"}),
    )
    .await;
    assert_eq!(
        closed_with(&mut ws).await,
        (4003, "Not yet initialized".into())
    );

    let init = json!({"type": "init", "language": "python", "version": "*",
                      "files": [{"content": "import time\ntime.sleep(5)"}]});
    let mut ws = connect(&s).await;
    send(&mut ws, init.clone()).await;
    assert_eq!(next_msg(&mut ws).await["type"], "runtime");
    assert_eq!(next_msg(&mut ws).await["type"], "stage");
    send(&mut ws, init.clone()).await;
    assert_eq!(
        closed_with(&mut ws).await,
        (4000, "Already Initialized".into())
    );

    let mut ws = connect(&s).await;
    send(&mut ws, init).await;
    assert_eq!(next_msg(&mut ws).await["type"], "runtime");
    assert_eq!(next_msg(&mut ws).await["type"], "stage");
    send(
        &mut ws,
        json!({"type": "data", "stream": "stdout", "data": "x"}),
    )
    .await;
    assert_eq!(
        closed_with(&mut ws).await,
        (4004, "Can only write to stdin".into())
    );

    let mut ws = connect(&s).await;
    let t = std::time::Instant::now();
    assert_eq!(
        closed_with(&mut ws).await,
        (4001, "Initialization Timeout".into())
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    s.stop().await;
}

/// `/openapi.json` documents the Piston routes, and the real answers have its shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_documents_the_piston_routes() {
    let s = TestServer::start(&[]).await;
    let doc: Value = s.get("/openapi.json").await.json().await.unwrap();
    for (path, method) in [("runtimes", "get"), ("execute", "post"), ("connect", "get")] {
        assert!(
            doc["paths"][format!("{BASE}/{path}")][method].is_object(),
            "{method} {path} is not documented"
        );
    }
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
    let c = "int main(void){return 0;}";
    let v = run_ok(
        &s,
        json!({"language": "c", "version": "*", "files": [{"content": c}]}),
    )
    .await;
    check(&v, &schemas["PistonResult"], "PistonResult");
    check(&v["run"], &schemas["PistonStage"], "PistonStage");
    check(&v["compile"], &schemas["PistonStage"], "PistonStage");
    let rts: Value = s
        .get(&format!("{BASE}/runtimes"))
        .await
        .json()
        .await
        .unwrap();
    check(&rts[0], &schemas["PistonRuntime"], "PistonRuntime");
    let (_, e) = execute(&s, &json!({})).await;
    check(&e, &schemas["PistonError"], "PistonError");
    s.stop().await;
}
