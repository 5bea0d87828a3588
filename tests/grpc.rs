//! The gRPC API through a real tonic client (the generated one) against a real server on port
//! 0: every RPC, streaming order, an interactive echo, cancellation and deadlines that must kill
//! the sandbox, health, reflection, the REST bad-input corpus and the gate (API keys, policy,
//! rate limit).

use crate::common::*;

use std::time::{Duration, Instant};

use isobox_server::grpc::pb;
use isobox_server::grpc::pb::executor_client::ExecutorClient;
use isobox_server::grpc::tokio_stream::wrappers::UnboundedReceiverStream;
use isobox_server::grpc::tonic::transport::Channel;
use isobox_server::grpc::tonic::{self, Code, Request, Status};
use isobox_server::grpc::{tonic_health, tonic_reflection};

/// The shared test server with gRPC, with this file's client helpers.
struct Server(TestServer);

impl std::ops::Deref for Server {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.0
    }
}

impl Server {
    /// REST and gRPC on port 0, no warm pool, `vars` on top.
    async fn start(vars: &[(&str, &str)]) -> Server {
        Server(TestServer::start_with_grpc(vars).await)
    }

    fn url(&self) -> String {
        self.grpc_url()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    async fn client(&self) -> ExecutorClient<Channel> {
        ExecutorClient::connect(self.url()).await.expect("connect")
    }

    /// Graceful shutdown: within 20 s, and the server's result is Ok.
    async fn stop(self) {
        self.0.shutdown(Duration::from_secs(20)).await;
    }
}

fn py(code: &str) -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        language: "python".into(),
        code: Some(code.into()),
        ..Default::default()
    }
}

async fn wait_for_sandbox(tok: &str) {
    wait_for("the run never started", Duration::from_secs(15), || {
        sandbox_procs_with(tok)
    })
    .await;
}

/// Asserts that no sandbox process with `tok` is left within `within`; returns how long it took.
async fn gone_within(tok: &str, within: Duration) -> Duration {
    wait_gone("sandbox still running", within, || sandbox_procs_with(tok)).await
}

/// A long python run whose argv carries `tok`.
fn long_run(secs: u32, tok: &str) -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        args: vec![tok.to_string()],
        limits: Some(pb::Limits {
            timeout_ms: Some(30_000),
            cpu_time_ms: Some(30_000),
            ..Default::default()
        }),
        ..py(&format!(
            "import time\ntime.sleep({secs})\nprint('should not finish')"
        ))
    }
}

fn kind(s: &Status) -> String {
    s.metadata()
        .get("isobox-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn with_key<T>(msg: T, key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("x-api-key", key.parse().unwrap());
    r
}

/// Collects a streamed run: (chunks in order with their arrival time, the result or error).
async fn collect(
    mut s: tonic::Streaming<pb::StreamMessage>,
) -> (
    Vec<(Instant, pb::stream_message::Kind)>,
    Result<pb::ExecuteResult, Status>,
) {
    let mut chunks = Vec::new();
    loop {
        match s.message().await {
            Ok(Some(pb::StreamMessage {
                kind: Some(pb::stream_message::Kind::Result(r)),
            })) => {
                assert!(
                    s.message().await.unwrap().is_none(),
                    "nothing may follow the result"
                );
                return (chunks, Ok(r));
            }
            Ok(Some(pb::StreamMessage { kind: Some(k) })) => chunks.push((Instant::now(), k)),
            Ok(Some(_)) => panic!("empty stream message"),
            Ok(None) => panic!("the stream ended without a result"),
            Err(e) => return (chunks, Err(e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execute_ok_compile_error_and_runtime_error() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;

    let r = c
        .execute(pb::ExecuteRequest {
            stdin: Some("world".into()),
            args: vec!["a".into(), "b c".into()],
            ..py("import sys\nprint('hello', input(), sys.argv[1:])\nprint('err', file=sys.stderr)")
        })
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.stdout, "hello world ['a', 'b c']\n");
    assert_eq!(r.stderr, "err\n");
    assert_eq!(r.language, "python");
    assert!(!r.version.is_empty() && !r.id.is_empty());
    assert!(!r.stdout_truncated && !r.stderr_truncated);
    assert!(r.compile.is_none());
    assert!(r.wall_time_ms > 0 && r.memory_peak_bytes > 0, "{r:?}");

    // The same request again: answered from the dedup cache, as on REST.
    let again = c
        .execute(pb::ExecuteRequest {
            stdin: Some("world".into()),
            args: vec!["a".into(), "b c".into()],
            ..py("import sys\nprint('hello', input(), sys.argv[1:])\nprint('err', file=sys.stderr)")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.cached, "{again:?}");
    assert_eq!(again.stdout, r.stdout);

    // Files as bytes; a compiled language with a compile error.
    let r = c
        .execute(pb::ExecuteRequest {
            language: "c".into(),
            files: vec![pb::File {
                name: "main.c".into(),
                content: b"int main(void) { return undefined_thing; }\n".to_vec(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, "compile_error", "{r:?}");
    let compile = r.compile.expect("compile outcome");
    assert_ne!(compile.exit_code, Some(0));
    assert!(compile.stderr.contains("undefined_thing"), "{compile:?}");

    // A compiled program that runs.
    let r = c
        .execute(pb::ExecuteRequest {
            language: "c".into(),
            code: Some(
                "#include <stdio.h>\nint main(void) { puts(\"compiled\"); return 3; }\n".into(),
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, "runtime_error", "{r:?}");
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stdout, "compiled\n");
    assert_eq!(r.compile.expect("compile outcome").status, "ok");

    // A runtime error.
    let r = c
        .execute(py("raise SystemExit('boom')"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, "runtime_error", "{r:?}");
    assert_eq!(r.exit_code, Some(1));
    assert!(r.stderr.contains("boom"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execute_stream_sends_chunks_in_order_before_the_result() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    let started = Instant::now();
    let stream = c
        .execute_stream(py(
            "import sys, time\nfor i in range(5):\n    print(i, flush=True)\n    print('e%d' % i, file=sys.stderr, flush=True)\n    time.sleep(0.3)\n",
        ))
        .await
        .expect("execute_stream")
        .into_inner();
    let (chunks, result) = collect(stream).await;
    let done = Instant::now();
    let r = result.expect("result");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for (_, k) in &chunks {
        match k {
            pb::stream_message::Kind::Stdout(d) => out.extend_from_slice(d),
            pb::stream_message::Kind::Stderr(d) => err.extend_from_slice(d),
            pb::stream_message::Kind::Result(_) | pb::stream_message::Kind::Compile(_) => {
                unreachable!("python has no compile step")
            }
        }
    }
    assert_eq!(String::from_utf8(out).unwrap(), "0\n1\n2\n3\n4\n");
    assert_eq!(String::from_utf8(err).unwrap(), "e0\ne1\ne2\ne3\ne4\n");
    assert_eq!(r.status, "ok");
    assert_eq!(r.stdout, "0\n1\n2\n3\n4\n");
    assert!(!r.cached);
    // Output came as produced: the first chunk about 1.2 s before the end.
    let first = chunks.first().expect("chunks").0;
    assert!(
        done - first >= Duration::from_millis(900),
        "the first chunk came {:?} before the result (after {:?})",
        done - first,
        first - started
    );
    // Each line of stdout arrived in its own time, not all at once.
    let stdout_times: Vec<Instant> = chunks
        .iter()
        .filter(|(_, k)| matches!(k, pb::stream_message::Kind::Stdout(_)))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        stdout_times.len() >= 3,
        "{} stdout chunks",
        stdout_times.len()
    );
    assert!(*stdout_times.last().unwrap() - stdout_times[0] >= Duration::from_millis(600));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execute_interactive_echoes_line_by_line() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<pb::InteractiveMessage>();
    let msg = |k| pb::InteractiveMessage { kind: Some(k) };
    use pb::interactive_message::Kind as In;
    tx.send(msg(In::Request(py(
        "import sys\nfor line in sys.stdin:\n    print('echo:' + line.strip(), flush=True)\nprint('bye')",
    ))))
    .unwrap();
    let mut stream = c
        .execute_interactive(UnboundedReceiverStream::new(rx))
        .await
        .expect("execute_interactive")
        .into_inner();
    for word in ["alpha", "beta", "gamma"] {
        tx.send(msg(In::Stdin(format!("{word}\n").into_bytes())))
            .unwrap();
        // The echo comes back before the next line is sent.
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            let m = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("the echo never came")
                .unwrap()
                .expect("stream ended");
            match m.kind {
                Some(pb::stream_message::Kind::Stdout(d)) => got.extend_from_slice(&d),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(String::from_utf8(got).unwrap(), format!("echo:{word}\n"));
    }
    tx.send(msg(In::CloseStdin(true))).unwrap();
    let (chunks, result) = collect(stream).await;
    let tail: Vec<u8> = chunks
        .into_iter()
        .flat_map(|(_, k)| match k {
            pb::stream_message::Kind::Stdout(d) => d,
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(String::from_utf8(tail).unwrap(), "bye\n");
    let r = result.expect("result");
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.exit_code, Some(0));

    // The first message must be the request.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<pb::InteractiveMessage>();
    tx.send(msg(In::Stdin(b"x".to_vec()))).unwrap();
    drop(tx);
    let e = c
        .execute_interactive(UnboundedReceiverStream::new(rx))
        .await
        .expect_err("stdin first");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_stream_kills_the_sandbox_within_a_second() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    // Server streaming.
    let tok = token("drop");
    let stream = c
        .execute_stream(long_run(30, &tok))
        .await
        .expect("execute_stream")
        .into_inner();
    wait_for_sandbox(&tok).await;
    drop(stream);
    let took = gone_within(&tok, Duration::from_secs(1)).await;
    eprintln!("stream dropped: sandbox gone after {took:?}");

    // Interactive.
    let tok = token("dropi");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<pb::InteractiveMessage>();
    tx.send(pb::InteractiveMessage {
        kind: Some(pb::interactive_message::Kind::Request(long_run(30, &tok))),
    })
    .unwrap();
    let stream = c
        .execute_interactive(UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    wait_for_sandbox(&tok).await;
    drop(stream);
    drop(tx);
    let took = gone_within(&tok, Duration::from_secs(1)).await;
    eprintln!("interactive dropped: sandbox gone after {took:?}");

    // The slot is free again and the server is fine.
    let t = Instant::now();
    while s.app.engine.load().0 != 0 {
        assert!(t.elapsed() < Duration::from_secs(2), "a slot is still busy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = c.execute(py("print('after')")).await.unwrap().into_inner();
    assert_eq!(r.stdout, "after\n");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadline_shorter_than_the_run_kills_it() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    for rpc in ["execute", "execute_stream"] {
        let tok = token("deadline");
        let mut req = Request::new(long_run(10, &tok));
        req.set_timeout(Duration::from_millis(500));
        let t = Instant::now();
        let status = match rpc {
            "execute" => c.execute(req).await.expect_err("past the deadline"),
            _ => {
                let stream = c.execute_stream(req).await.expect("stream").into_inner();
                let (_, result) = collect(stream).await;
                result.expect_err("past the deadline")
            }
        };
        let took = t.elapsed();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{rpc}: {status:?}");
        assert!(
            took < Duration::from_secs(2),
            "{rpc}: the deadline answer took {took:?}"
        );
        let gone = gone_within(&tok, Duration::from_secs(1)).await;
        eprintln!("{rpc}: DEADLINE_EXCEEDED after {took:?}, sandbox gone {gone:?} later");
    }
    // A deadline longer than the run changes nothing.
    let mut req = Request::new(py("print('in time')"));
    req.set_timeout(Duration::from_secs(20));
    let r = c.execute(req).await.expect("in time").into_inner();
    assert_eq!(r.stdout, "in time\n");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn languages_health_and_reflection() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    let langs = c
        .list_languages(pb::ListLanguagesRequest {})
        .await
        .unwrap()
        .into_inner()
        .languages;
    let python = langs
        .iter()
        .find(|l| l.name == "python")
        .expect("python listed");
    assert!(!python.version.is_empty() && !python.compiled);
    assert!(langs.iter().any(|l| l.name == "c" && l.compiled));
    assert_eq!(langs.len(), s.app.languages.read().unwrap().len());

    // Health: the whole server and the Executor service are SERVING.
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let mut h = HealthClient::new(s.channel().await);
    for service in ["", "isobox.v1.Executor"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "`{service}`");
    }
    let e = h
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(e.code(), Code::NotFound);

    // Reflection lists the services and describes ours.
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut r = ServerReflectionClient::new(s.channel().await);
    let ask = |m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let mut answers = r
        .server_reflection_info(tokio_stream_iter(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "isobox.v1.Executor".into(),
            )),
        ]))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("{first:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "isobox.v1.Executor",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let second = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(fd)) = second.message_response else {
        panic!("{second:?}")
    };
    assert!(!fd.file_descriptor_proto.is_empty());

    // Shutdown: health turns NOT_SERVING (or the server is gone) and run() returns.
    s.stop().await;
}

/// A client stream from a fixed list.
fn tokio_stream_iter<T: Send + 'static>(items: Vec<T>) -> UnboundedReceiverStream<T> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for i in items {
        tx.send(i).unwrap();
    }
    UnboundedReceiverStream::new(rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_codes_of_the_error_table() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    let file = |name: &str, content: &str| pb::File {
        name: name.into(),
        content: content.as_bytes().to_vec(),
    };
    let limits = |f: fn(&mut pb::Limits)| {
        let mut l = pb::Limits::default();
        f(&mut l);
        pb::ExecuteRequest {
            limits: Some(l),
            ..py("print(1)")
        }
    };
    let mut checks: Vec<(pb::ExecuteRequest, Code, &str, &str)> = vec![
        (
            pb::ExecuteRequest {
                language: "cobol-9000".into(),
                code: Some("x".into()),
                ..Default::default()
            },
            Code::InvalidArgument,
            "unknown_language",
            "unknown language",
        ),
        (
            pb::ExecuteRequest {
                code: Some("print(1)".into()),
                ..Default::default()
            },
            Code::InvalidArgument,
            "unknown_language",
            "missing language",
        ),
        (
            pb::ExecuteRequest {
                language: "python".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "invalid_request",
            "missing code",
        ),
        (
            pb::ExecuteRequest {
                files: vec![file("a.py", "print(2)")],
                ..py("print(1)")
            },
            Code::InvalidArgument,
            "invalid_request",
            "code and files",
        ),
        (
            pb::ExecuteRequest {
                language: "python".into(),
                files: vec![file("a.py", ""), file("a.py", "")],
                ..Default::default()
            },
            Code::InvalidArgument,
            "invalid_request",
            "duplicate file",
        ),
        (
            pb::ExecuteRequest {
                version: Some("1.0".into()),
                ..py("print(1)")
            },
            Code::InvalidArgument,
            "version_unavailable",
            "unknown version",
        ),
        (
            pb::ExecuteRequest {
                args: vec!["a\u{0}b".into()],
                ..py("print(1)")
            },
            Code::InvalidArgument,
            "invalid_request",
            "NUL in an arg",
        ),
        (
            pb::ExecuteRequest {
                args: vec!["x".repeat(5000)],
                ..py("print(1)")
            },
            Code::InvalidArgument,
            "invalid_request",
            "huge arg",
        ),
        (
            limits(|l| l.timeout_ms = Some(0)),
            Code::InvalidArgument,
            "invalid_request",
            "zero timeout",
        ),
        (
            limits(|l| l.memory_mb = Some(4)),
            Code::InvalidArgument,
            "invalid_request",
            "tiny memory",
        ),
        (
            limits(|l| l.max_processes = Some(0)),
            Code::InvalidArgument,
            "invalid_request",
            "zero processes",
        ),
        (
            limits(|l| l.timeout_ms = Some(30_001)),
            Code::InvalidArgument,
            "limit_too_high",
            "timeout over the server's",
        ),
        (
            limits(|l| l.memory_mb = Some(1_000_000_000_000)),
            Code::InvalidArgument,
            "limit_too_high",
            "memory over the server's",
        ),
        (
            limits(|l| l.max_output_bytes = Some(1 << 40)),
            Code::InvalidArgument,
            "limit_too_high",
            "output over the server's",
        ),
        (
            py(&format!("#{}", "x".repeat(1 << 20))),
            Code::InvalidArgument,
            "too_large",
            "source over 1 MiB",
        ),
        (
            pb::ExecuteRequest {
                language: "python".into(),
                files: (0..33).map(|i| file(&format!("f{i}.py"), "")).collect(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "too_large",
            "33 files",
        ),
        (
            pb::ExecuteRequest {
                args: (0..65).map(|i| i.to_string()).collect(),
                ..py("print(1)")
            },
            Code::InvalidArgument,
            "too_large",
            "65 args",
        ),
    ];
    for name in UNSAFE_FILE_NAMES {
        checks.push((
            pb::ExecuteRequest {
                language: "python".into(),
                files: vec![file(name, "print(1)")],
                ..Default::default()
            },
            Code::InvalidArgument,
            "invalid_request",
            "unsafe file name",
        ));
    }
    for (req, code, want_kind, what) in &checks {
        // The same answer from each RPC that takes a request.
        let unary = c.execute(req.clone()).await.expect_err(what);
        let streamed = c.execute_stream(req.clone()).await.expect_err(what);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(pb::InteractiveMessage {
            kind: Some(pb::interactive_message::Kind::Request(req.clone())),
        })
        .unwrap();
        let interactive = c
            .execute_interactive(UnboundedReceiverStream::new(rx))
            .await
            .expect_err(what);
        for (rpc, e) in [
            ("execute", unary),
            ("stream", streamed),
            ("interactive", interactive),
        ] {
            assert_eq!(e.code(), *code, "{what} ({rpc}): {e:?}");
            assert_eq!(kind(&e), *want_kind, "{what} ({rpc}): {e:?}");
            let m = e.message();
            assert!(m.len() > 5, "{what}: empty message");
            for leak in [
                "/proc", "/sys/fs", "panicked", ".rs:", "Error {", "os error",
            ] {
                assert!(!m.contains(leak), "{what}: internal detail in `{m}`");
            }
        }
    }
    // Over the message size limit (the body limit of REST): refused by tonic's decoder.
    let e = c
        .execute(py(&format!("#{}", "x".repeat(5 << 20))))
        .await
        .expect_err("over 4 MiB");
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    // The server is fine.
    let r = c.execute(py("print('ok')")).await.unwrap().into_inner();
    assert_eq!(r.stdout, "ok\n");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_in_metadata_for_every_rpc() {
    let s = Server::start(&[
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", "k-alpha,k-beta"),
        ("ISOBOX_AUTH_FAIL_LIMIT", "1000/min"),
    ])
    .await;
    let mut c = s.client().await;
    let interactive = |req: Request<()>| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(pb::InteractiveMessage {
            kind: Some(pb::interactive_message::Kind::Request(py("print('hi')"))),
        })
        .unwrap();
        tx.send(pb::InteractiveMessage {
            kind: Some(pb::interactive_message::Kind::CloseStdin(true)),
        })
        .unwrap();
        let mut r = Request::new(UnboundedReceiverStream::new(rx));
        *r.metadata_mut() = req.metadata().clone();
        r
    };
    // No key, a wrong key, a key in the wrong place: UNAUTHENTICATED on every RPC.
    let bad: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no key", vec![]),
        ("wrong key", vec![("x-api-key", "k-wrong")]),
        ("upper-case key", vec![("x-api-key", "K-ALPHA")]),
        ("key as bearer", vec![("authorization", "Bearer k-alpha")]),
        ("other header", vec![("x-api-token", "k-alpha")]),
    ];
    let req_with = |md: &[(&str, &str)]| {
        let mut r = Request::new(());
        for (k, v) in md {
            r.metadata_mut().insert(
                tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    };
    let with = |md: &[(&str, &str)], body: pb::ExecuteRequest| {
        let base = req_with(md);
        let mut r = Request::new(body);
        *r.metadata_mut() = base.metadata().clone();
        r
    };
    for (what, md) in &bad {
        let errs = [
            c.execute(with(md, py("print('hi')")))
                .await
                .expect_err(what),
            c.execute_stream(with(md, py("print('hi')")))
                .await
                .expect_err(what),
            c.execute_interactive(interactive(req_with(md)))
                .await
                .expect_err(what),
            {
                let base = req_with(md);
                let mut r = Request::new(pb::ListLanguagesRequest {});
                *r.metadata_mut() = base.metadata().clone();
                c.list_languages(r).await.expect_err(what)
            },
        ];
        for e in errs {
            assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
            assert_eq!(kind(&e), "unauthorized");
            assert!(!e.message().contains("k-alpha"), "the key was echoed");
        }
    }
    // The good key works on every RPC.
    let good = [("x-api-key", "k-beta")];
    let r = c.execute(with(&good, py("print('hi')"))).await.unwrap();
    assert_eq!(r.into_inner().stdout, "hi\n");
    let stream = c
        .execute_stream(with(&good, py("print('hi')")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(collect(stream).await.1.unwrap().stdout, "hi\n");
    let stream = c
        .execute_interactive(interactive(req_with(&good)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(collect(stream).await.1.unwrap().stdout, "hi\n");
    let langs = c
        .list_languages(with_key(pb::ListLanguagesRequest {}, "k-alpha"))
        .await
        .unwrap();
    assert!(!langs.into_inner().languages.is_empty());
    // Health and reflection stay public (as /health on REST).
    let mut h = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    h.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    })
    .await
    .expect("health without a key");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policy_denial_and_rate_limits() {
    let dir = TempDir::new("grpcpolicy");
    let keys = dir.file(
        "keys.toml",
        &api_keys_toml(&[
            ("student-1", "key-student", &["student"]),
            ("teacher", "key-teacher", &["teacher"]),
        ]),
    );
    let policy = dir.file(
        "policy.toml",
        r#"
[[role]]
name = "student"
[[role.permission]]
resource = "code_execution"
action = "execute"
conditions = [
  { field = "language", operator = "in", value = "python" },
]
[[role]]
name = "teacher"
[[role.permission]]
resource = "code_execution"
action = "*"
"#,
    );
    let s = Server::start(&[
        ("AUTH_TYPE", "apikey"),
        ("ISOBOX_API_KEYS_FILE", keys.to_str().unwrap()),
        ("ISOBOX_POLICY", policy.to_str().unwrap()),
        ("ISOBOX_RATE_LIMIT", "6/min"),
    ])
    .await;
    let mut c = s.client().await;
    let bash = pb::ExecuteRequest {
        language: "bash".into(),
        code: Some("echo hi".into()),
        ..Default::default()
    };
    // The student: python yes, bash no (on each RPC).
    let r = c
        .execute(with_key(py("print('hi')"), "key-student"))
        .await
        .unwrap();
    assert_eq!(r.into_inner().stdout, "hi\n");
    let e = c
        .execute(with_key(bash.clone(), "key-student"))
        .await
        .expect_err("bash for a student");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(kind(&e), "forbidden");
    assert!(e.message().contains("language"), "{e:?}");
    assert!(!e.message().contains("python"), "the policy leaked: {e:?}");
    let e = c
        .execute_stream(with_key(bash.clone(), "key-student"))
        .await
        .expect_err("bash for a student");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(pb::InteractiveMessage {
        kind: Some(pb::interactive_message::Kind::Request(bash.clone())),
    })
    .unwrap();
    let e = c
        .execute_interactive(with_key(UnboundedReceiverStream::new(rx), "key-student"))
        .await
        .expect_err("bash for a student");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // The teacher may.
    let r = c
        .execute(with_key(bash.clone(), "key-teacher"))
        .await
        .unwrap();
    assert_eq!(r.into_inner().stdout, "hi\n");

    // Rate limit: 6 calls a minute per principal, whatever the RPC (the student has used 4).
    for _ in 0..2 {
        c.list_languages(with_key(pb::ListLanguagesRequest {}, "key-student"))
            .await
            .expect("within the limit");
    }
    let e = c
        .execute(with_key(py("print('hi')"), "key-student"))
        .await
        .expect_err("over the limit");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(kind(&e), "rate_limited");
    let retry: u64 = e
        .metadata()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another principal has its own budget.
    c.execute(with_key(py("print('hi')"), "key-teacher"))
        .await
        .expect("the teacher's budget");
    s.stop().await;
}

/// `ExecuteInteractive` stdin has the cap of a plain request's stdin: past it the call ends
/// with `too_large` (and the run with it), whatever the program does with its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interactive_stdin_is_bounded() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<pb::InteractiveMessage>();
    let msg = |k| pb::InteractiveMessage { kind: Some(k) };
    use pb::interactive_message::Kind as In;
    let mut req = py("import time\ntime.sleep(20)\n");
    req.limits = Some(pb::Limits {
        timeout_ms: Some(20_000),
        ..Default::default()
    });
    tx.send(msg(In::Request(req))).unwrap();
    let stream = c
        .execute_interactive(UnboundedReceiverStream::new(rx))
        .await
        .expect("execute_interactive")
        .into_inner();
    for _ in 0..32 {
        tx.send(msg(In::Stdin(vec![b'x'; 64 << 10]))).unwrap();
    }
    let (_, result) = tokio::time::timeout(Duration::from_secs(15), collect(stream))
        .await
        .expect("the call did not end within 15 s");
    let status = result.expect_err("a run past its stdin cap finished");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.metadata().get("isobox-error").unwrap(), "too_large");
}

/// The gRPC port drops a client that connects and never speaks (within
/// `ISOBOX_HEADER_TIMEOUT_MS`), so silent connections cannot hold its connection slots; calls
/// keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_connection_to_the_grpc_port_is_dropped() {
    use tokio::io::AsyncReadExt;
    let s = Server::start(&[
        ("ISOBOX_HEADER_TIMEOUT_MS", "500"),
        ("ISOBOX_MAX_CONNECTIONS", "2"),
    ])
    .await;
    let addr = s.url().trim_start_matches("http://").to_string();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _silent2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("a silent connection was kept open")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server answered a client that said nothing");
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Both slots are free again: a real call gets through.
    let mut c = s.client().await;
    let langs = tokio::time::timeout(
        Duration::from_secs(10),
        c.list_languages(pb::ListLanguagesRequest {}),
    )
    .await
    .expect("a call waited behind dropped connections")
    .expect("languages");
    assert!(!langs.into_inner().languages.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_cases_result_files_and_base64_over_grpc() {
    let s = Server::start(&[]).await;
    let mut c = s.client().await;
    let case = |stdin: &str, expected: &str| pb::TestCase {
        stdin: Some(stdin.into()),
        expected_output: Some(expected.into()),
        ..Default::default()
    };
    let mut req = py("print(int(input()) * 2)");
    req.tests = vec![case("2", "4"), case("3", "7")];
    req.compare = Some(pb::Compare {
        mode: "trim".into(),
        ..Default::default()
    });
    let r = c.execute(req.clone()).await.expect("execute").into_inner();
    let verdicts: Vec<&str> = r.tests.iter().map(|t| t.verdict.as_str()).collect();
    assert_eq!(verdicts, ["accepted", "wrong_answer"], "{r:?}");
    assert_eq!(r.tests[1].run.as_ref().unwrap().stdout, "6\n");
    let sum = r.summary.expect("summary");
    assert_eq!((sum.passed, sum.failed, sum.total), (1, 1, 2));
    // A bad comparison mode is the REST error, as a gRPC status.
    req.compare = Some(pb::Compare {
        mode: "fuzzy".into(),
        ..Default::default()
    });
    let err = c.execute(req).await.expect_err("bad compare");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Result files come back as bytes; base64 output is exact.
    let mut req = py(
        "open('a.bin','wb').write(bytes([0,255,1])); import sys; sys.stdout.buffer.write(b'\\xff')",
    );
    req.outputs = vec!["*.bin".into()];
    req.encoding = Some("utf-8".into());
    let r = c.execute(req).await.expect("execute").into_inner();
    assert_eq!(r.files.len(), 1, "{r:?}");
    assert_eq!(r.files[0].name, "a.bin");
    assert_eq!(r.files[0].content, vec![0, 255, 1]);
    assert_eq!(r.stdout, "\u{fffd}");
    s.stop().await;
}
