//! The Judge0 CE 1.13 compatible API (`/judge0`), driven by a real HTTP client (reqwest)
//! against a real server on loopback running real sandboxes, through Judge0's documented
//! flows: submit and poll, `wait=true`, batches, base64 both ways, `fields`, delete, every
//! status a program can provoke, `expected_output`, `additional_files`, `number_of_runs`,
//! callbacks, `X-Auth-Token` and the permission policy.

use std::io::Write as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::TestServer;
use crate::common::{api_keys_toml, token, TempDir};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Judge0 CE's ids of the languages these tests use.
const PYTHON: u32 = 71;
const C: u32 = 50;
const BASH: u32 = 46;

async fn send(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = s
        .client
        .request(method, s.url_for(&format!("/judge0{path}")));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

async fn post(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send(s, reqwest::Method::POST, path, &[], Some(body)).await
}

async fn get(s: &TestServer, path: &str) -> (u16, Value) {
    send(s, reqwest::Method::GET, path, &[], None).await
}

/// `POST /submissions?wait=true` (plus `query`), which must answer 201: the submission.
async fn run(s: &TestServer, body: Value, query: &str) -> Value {
    let (status, v) = post(s, &format!("/submissions?wait=true{query}"), body.clone()).await;
    assert_eq!(status, 201, "{body}: {v}");
    v
}

fn py(code: &str) -> Value {
    json!({ "language_id": PYTHON, "source_code": code })
}

fn c(code: &str) -> Value {
    json!({ "language_id": C, "source_code": code })
}

fn status_id(v: &Value) -> u64 {
    v["status"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no status: {v}"))
}

/// Polls `GET /submissions/{token}` until the submission left the queue and processing.
async fn poll(s: &TestServer, token: &str, query: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get(s, &format!("/submissions/{token}{query}")).await;
        assert_eq!(status, 200, "{v}");
        if v["status"]["id"].as_u64().is_some_and(|id| id > 2) {
            return v;
        }
        assert!(Instant::now() < deadline, "still not done: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A zip of `entries`: `(name, content, unix mode)`; a mode of 0o120000 makes a symlink.
fn zip(entries: &[(&str, &[u8], u32)]) -> String {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, content, mode) in entries {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode & 0o777);
            if mode & 0o170000 == 0o120000 {
                w.add_symlink(*name, std::str::from_utf8(content).unwrap(), opts)
                    .unwrap();
            } else if name.ends_with('/') {
                w.add_directory(*name, opts).unwrap();
            } else {
                w.start_file(*name, opts).unwrap();
                w.write_all(content).unwrap();
            }
        }
        w.finish().unwrap();
    }
    B64.encode(buf.into_inner())
}

/// The documented flow: a submission answered with its token, polled until done; the same
/// with `wait=true`; stdin reaches the program; the default attributes are Judge0's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_poll_and_wait() {
    let s = TestServer::start(&[]).await;
    let body = json!({
        "language_id": PYTHON,
        "source_code": "name = input()\nprint(f'hello, {name}')",
        "stdin": "Judge0",
        "expected_output": "hello, Judge0",
    });
    let (status, v) = post(&s, "/submissions", body.clone()).await;
    assert_eq!(status, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v.as_object().unwrap().len(), 1, "only the token: {v}");
    let done = poll(&s, &token, "").await;
    assert_eq!(done["status"], json!({"id": 3, "description": "Accepted"}));
    assert_eq!(done["stdout"], "hello, Judge0\n");
    assert_eq!(done["token"], token.as_str());
    assert!(done["stderr"].is_null() && done["compile_output"].is_null());
    assert!(done["message"].is_null());
    let time: f64 = done["time"].as_str().unwrap().parse().unwrap();
    assert!((0.0..5.0).contains(&time), "{done}");
    assert!(done["memory"].as_u64().unwrap() > 0, "{done}");
    let mut keys: Vec<&str> = done
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "compile_output",
            "memory",
            "message",
            "status",
            "stderr",
            "stdout",
            "time",
            "token"
        ]
    );
    // wait=true: the finished submission at once, its token included.
    let v = run(&s, body, "").await;
    assert_eq!(status_id(&v), 3, "{v}");
    assert_eq!(v["stdout"], "hello, Judge0\n");
    assert!(v["token"].as_str().is_some_and(|t| t != token), "{v}");
    // An unknown token.
    let (status, v) = get(&s, "/submissions/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].is_string(), "{v}");
    s.stop().await;
}

/// Every status a program can provoke, from our outcomes: Accepted, Wrong Answer, Time Limit
/// Exceeded, Compilation Error, SIGSEGV, SIGFPE, SIGABRT, NZEC (with Judge0's message and
/// exit code), and the output limit as SIGXFSZ.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_status_a_program_can_provoke() {
    let s = TestServer::start(&[]).await;
    let (status, list) = get(&s, "/statuses").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 14);
    assert_eq!(
        list[10],
        json!({"id": 11, "description": "Runtime Error (NZEC)"})
    );

    let v = run(&s, py("print(1)"), "").await;
    assert_eq!(status_id(&v), 3, "{v}");

    let mut wa = py("print(2)");
    wa["expected_output"] = json!("1");
    let v = run(&s, wa, "").await;
    assert_eq!(v["status"], json!({"id": 4, "description": "Wrong Answer"}));
    assert_eq!(v["stdout"], "2\n");

    let mut tle = py("while True: pass");
    tle["cpu_time_limit"] = json!(1);
    tle["wall_time_limit"] = json!(3);
    let v = run(&s, tle, "").await;
    assert_eq!(status_id(&v), 5, "{v}");
    assert_eq!(v["message"], "Time limit exceeded");

    let v = run(&s, c("int main(void) { return nope; }"), "&fields=*").await;
    assert_eq!(status_id(&v), 6, "{v}");
    assert!(
        v["compile_output"].as_str().unwrap().contains("nope"),
        "{v}"
    );
    assert!(v["stdout"].is_null() && v["time"].is_null(), "{v}");

    let cases = [
        (
            "int main(void) { volatile int *p = 0; *p = 1; return 0; }",
            7,
            11,
        ),
        (
            "int main(void) { volatile int a = 7, z = 0; return a / z; }",
            9,
            8,
        ),
        ("#include <stdlib.h>\nint main(void) { abort(); }", 10, 6),
    ];
    for (code, status, signal) in cases {
        let v = run(&s, c(code), "&fields=status,exit_signal,message").await;
        assert_eq!(status_id(&v), status, "{code}: {v}");
        assert_eq!(v["exit_signal"], signal, "{v}");
        assert_eq!(v["message"], format!("Caught fatal signal {signal}"));
    }

    let v = run(
        &s,
        py("import sys\nsys.exit(3)"),
        "&fields=status,exit_code,message",
    )
    .await;
    assert_eq!(
        v["status"],
        json!({"id": 11, "description": "Runtime Error (NZEC)"})
    );
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["message"], "Exited with error status 3");

    let v = run(&s, py("while True: print('x' * 4096)"), "").await;
    assert_eq!(status_id(&v), 8, "{v}");
    s.stop().await;
}

/// `expected_output` compared as Judge0 compares it: trailing whitespace of each line and
/// trailing blank lines do not count; leading whitespace and inner blank lines do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expected_output_is_compared_as_judge0_does() {
    let s = TestServer::start(&[]).await;
    for (out, expected, status) in [
        ("a  \\nb\\n\\n\\n", "a\nb", 3),
        ("a\\r\\nb", "a\nb\n", 3),
        (" a", "a", 4),
        ("a\\n\\nb", "a\nb", 4),
    ] {
        let mut body = py(&format!("import sys\nsys.stdout.write('{out}')"));
        body["expected_output"] = json!(expected);
        let v = run(&s, body, "").await;
        assert_eq!(status_id(&v), status, "{out:?} vs {expected:?}: {v}");
    }
    s.stop().await;
}

/// `base64_encoded=true`: source, stdin and expected output are sent base64, output comes
/// back base64 (Ruby's encode64 lines). Output that is not UTF-8 is refused without it, as
/// Judge0 refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn base64_both_ways_and_output_that_is_not_utf8() {
    let s = TestServer::start(&[]).await;
    let body = json!({
        "language_id": PYTHON,
        "source_code": B64.encode("import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"),
        "stdin": B64.encode([0xffu8, b'a', 0x00]),
        "expected_output": B64.encode([0x00u8, b'a', 0xff]),
    });
    let v = run(&s, body, "&base64_encoded=true").await;
    assert_eq!(status_id(&v), 3, "{v}");
    let out = v["stdout"].as_str().unwrap();
    assert!(out.ends_with('\n'), "Ruby's encode64 ends lines: {out:?}");
    assert_eq!(
        B64.decode(out.trim_end()).unwrap(),
        [0x00u8, b'a', 0xff],
        "{v}"
    );

    let bad = py("import sys\nsys.stdout.buffer.write(b'\\xfe')");
    // wait=true without base64: 201 with the token and Judge0's error.
    let (status, v) = post(&s, "/submissions?wait=true", bad.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("use base64_encoded=true"),
        "{v}"
    );
    let token = v["token"].as_str().unwrap().to_string();
    // GET without base64: 400; with it, the bytes.
    let (status, v) = get(&s, &format!("/submissions/{token}")).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("cannot be converted to UTF-8"));
    let v = poll(&s, &token, "?base64_encoded=true").await;
    assert_eq!(v["stdout"], "/g==\n");
    // Fields that are text anyway are fine without base64.
    let (status, v) = get(&s, &format!("/submissions/{token}?fields=status,time")).await;
    assert_eq!(status, 200, "{v}");
    // Not base64 at all.
    let (status, v) = post(
        &s,
        "/submissions?base64_encoded=true",
        json!({"language_id": PYTHON, "source_code": "print(1) !!"}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["source_code"][0], "is not valid Base64");
    s.stop().await;
}

/// `fields`: the attributes asked for, `*` for all, unknown ones refused as Judge0 refuses
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fields_select_the_attributes() {
    let s = TestServer::start(&[]).await;
    let v = run(&s, py("print(7)"), "&fields=stdout,status_id,language_id").await;
    assert_eq!(
        v,
        json!({"stdout": "7\n", "status_id": 3, "language_id": PYTHON})
    );
    let token = run(&s, py("print(8)"), "").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, all) = get(&s, &format!("/submissions/{token}?fields=*")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all.as_object().unwrap().len(), 40, "{all}");
    assert_eq!(all["source_code"], "print(8)");
    assert_eq!(all["language"]["id"], PYTHON);
    assert!(
        all["language"]["name"]
            .as_str()
            .unwrap()
            .starts_with("Python (3."),
        "{all}"
    );
    assert!(all["created_at"].as_str().unwrap().ends_with('Z'), "{all}");
    assert!(all["finished_at"].is_string() && all["wall_time"].is_string());
    assert_eq!(all["exit_code"], 0);
    let (status, v) = get(&s, &format!("/submissions/{token}?fields=stdout,bogus")).await;
    assert_eq!(status, 400);
    assert_eq!(v, json!({"error": "invalid fields: [bogus]"}));
    s.stop().await;
}

/// Batches: each submission queued or refused on its own (`{"token"}` or its field errors),
/// read back with `?tokens=` (unknown tokens are `null`); size limits as Judge0's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_submit_and_get() {
    let s = TestServer::start(&[("ISOBOX_BATCH_MAX", "5")]).await;
    let (status, v) = post(
        &s,
        "/submissions/batch",
        json!({"submissions": [
            {"language_id": BASH, "source_code": "echo hello from Bash"},
            {"language_id": 123456789, "source_code": "print(1)"},
            {"language_id": PYTHON, "source_code": ""},
            {"language_id": PYTHON, "source_code": "print('hello from Python')"},
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[1],
        json!({"language_id": ["language with id 123456789 doesn't exist"]})
    );
    assert_eq!(items[2], json!({"source_code": ["can't be blank"]}));
    let bash = items[0]["token"].as_str().unwrap();
    let python = items[3]["token"].as_str().unwrap();
    poll(&s, bash, "").await;
    poll(&s, python, "").await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, v) = get(
        &s,
        &format!(
            "/submissions/batch?tokens={bash},{unknown},{python}&fields=token,stdout,status_id"
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let subs = v["submissions"].as_array().unwrap();
    assert_eq!(subs[0]["stdout"], "hello from Bash\n");
    assert_eq!(subs[0]["status_id"], 3);
    assert!(subs[1].is_null(), "{v}");
    assert_eq!(subs[2]["stdout"], "hello from Python\n");
    assert_eq!(subs[2]["token"], python);
    // All refused: 422.
    let (status, v) = post(
        &s,
        "/submissions/batch",
        json!({"submissions": [{"language_id": PYTHON}]}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    // Empty and too many: 400.
    let (status, v) = post(&s, "/submissions/batch", json!({"submissions": []})).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "there should be at least one submission in a batch"
    );
    let six: Vec<Value> = (0..6).map(|_| py("print(1)")).collect();
    let (status, v) = post(&s, "/submissions/batch", json!({ "submissions": six })).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "number of submissions in a batch should be less than or equal to 5"
    );
    s.stop().await;
}

/// DELETE: a finished submission is deleted and answered base64 (Judge0 forces it), then is
/// gone; one still in queue or processing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_a_submission() {
    let s = TestServer::start(&[]).await;
    let token = run(&s, py("print('bye')"), "").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v) = send(
        &s,
        reqwest::Method::DELETE,
        &format!("/submissions/{token}"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stdout"], "YnllCg==\n", "base64 forced: {v}");
    assert_eq!(status_id(&v), 3);
    let (status, _) = get(&s, &format!("/submissions/{token}")).await;
    assert_eq!(status, 404);
    // Still running.
    let (status, v) = post(&s, "/submissions", py("import time\ntime.sleep(3)")).await;
    assert_eq!(status, 201);
    let slow = v["token"].as_str().unwrap();
    let (status, v) = send(
        &s,
        reqwest::Method::DELETE,
        &format!("/submissions/{slow}"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("submission cannot be deleted because its status is "),
        "{v}"
    );
    s.stop().await;
}

/// `command_line_arguments` split as Judge0's shell line splits them, `compiler_options`
/// reaching the compiler, `redirect_stderr_to_stdout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arguments_compiler_options_and_stderr_redirect() {
    let s = TestServer::start(&[]).await;
    let mut body = py("import sys\nprint(sys.argv[1:])");
    body["command_line_arguments"] = json!(r#"a "b c" d"#);
    let v = run(&s, body, "").await;
    assert_eq!(v["stdout"], "['a', 'b c', 'd']\n", "{v}");

    let mut body =
        c("#include <stdio.h>\nint main(void) { printf(\"%d\\n\", GREETING); return 0; }");
    body["compiler_options"] = json!("-DGREETING=42");
    let v = run(&s, body, "").await;
    assert_eq!(status_id(&v), 3, "{v}");
    assert_eq!(v["stdout"], "42\n");

    let mut body = py("import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr)");
    body["redirect_stderr_to_stdout"] = json!(true);
    let v = run(&s, body, "").await;
    assert_eq!(v["stdout"], "out\nerr\n", "{v}");
    assert!(v["stderr"].is_null(), "{v}");

    // Compiler options for an interpreted language: Judge0's refusal.
    let mut body = py("print(1)");
    body["compiler_options"] = json!("-O2");
    let (status, v) = post(&s, "/submissions", body).await;
    assert_eq!(status, 422);
    assert_eq!(
        v["compiler_options"][0],
        "setting compiler options is only allowed for compiled languages"
    );
    s.stop().await;
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// The compile cache's (misses, hits) as `/metrics` says.
async fn compiles(s: &TestServer) -> (u64, u64) {
    let m = s.metrics().await;
    (
        metric(&m, "isobox_compile_cache_misses_total"),
        metric(&m, "isobox_compile_cache_hits_total"),
    )
}

/// A judge sending its cases one by one as Judge0 submissions of the same C program, with
/// other stdin each time: the compiler runs for the first only (the compile cache), and a
/// batch of them compiles nothing; other `compiler_options` are another compile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_program_skips_the_compiler() {
    let s = TestServer::start(&[]).await;
    let source = format!(
        "#include <stdio.h>\nint main(void) {{ int n = 0; scanf(\"%d\", &n); printf(\"%d\\n\", n * FACTOR); return 0; }}\n/* {} */\n",
        token("j0cc")
    );
    let submission = |stdin: &str, options: &str| {
        let mut body = c(&source);
        body["stdin"] = json!(stdin);
        body["compiler_options"] = json!(options);
        body
    };
    assert_eq!(compiles(&s).await, (0, 0));
    let v = run(&s, submission("4", "-DFACTOR=2"), "").await;
    assert_eq!(status_id(&v), 3, "{v}");
    assert_eq!(v["stdout"], "8\n", "{v}");
    assert_eq!(compiles(&s).await, (1, 0), "the first submission compiles");
    // Other stdin (not a dedup hit: the program really runs), the same program: no compiler.
    let v = run(&s, submission("21", "-DFACTOR=2"), "").await;
    assert_eq!(status_id(&v), 3, "{v}");
    assert_eq!(v["stdout"], "42\n", "{v}");
    assert_eq!(
        compiles(&s).await,
        (1, 1),
        "the second one skips the compiler"
    );
    // Other compiler options: a miss, and the new options apply.
    let v = run(&s, submission("4", "-DFACTOR=3"), "").await;
    assert_eq!(v["stdout"], "12\n", "{v}");
    assert_eq!(compiles(&s).await, (2, 1), "other options compile again");
    // A batch of the first program's cases: every one from the cache.
    let (status, v) = post(
        &s,
        "/submissions/batch",
        json!({"submissions": [
            submission("1", "-DFACTOR=2"),
            submission("2", "-DFACTOR=2"),
            submission("3", "-DFACTOR=2"),
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    for (item, want) in v.as_array().unwrap().iter().zip(["2\n", "4\n", "6\n"]) {
        let done = poll(&s, item["token"].as_str().unwrap(), "").await;
        assert_eq!(done["stdout"], want, "{done}");
    }
    assert_eq!(compiles(&s).await, (2, 4), "a batch of the same program");
    s.stop().await;
}

/// `additional_files`: a base64 zip unpacked beside the source (directories too; the source
/// is not overwritten); an archive with `..`, an absolute path, a symlink, too many bytes
/// unpacked, or no zip at all is refused with a field error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn additional_files_zip() {
    let s = TestServer::start(&[]).await;
    let files = zip(&[
        ("helper.py", b"GREETING = 'from the zip'\n", 0o100644),
        ("data/", b"", 0o040755),
        ("data/input.txt", b"42\n", 0o100644),
        ("main.py", b"print('the zip must not win')\n", 0o100644),
    ]);
    let mut body =
        py("import helper\nprint(helper.GREETING, open('data/input.txt').read().strip())");
    body["additional_files"] = json!(files);
    let v = run(&s, body, "").await;
    assert_eq!(status_id(&v), 3, "{v}");
    assert_eq!(v["stdout"], "from the zip 42\n");

    let refused = [
        zip(&[("../escape.py", b"x", 0o100644)]),
        zip(&[("/etc/passwd", b"x", 0o100644)]),
        zip(&[("link", b"/etc/passwd", 0o120777)]),
        zip(&[("big.bin", &vec![0u8; 2 << 20], 0o100644)]),
        B64.encode(b"not a zip"),
        "@@@".to_string(),
    ];
    for (i, files) in refused.iter().enumerate() {
        let mut body = py("print(1)");
        body["additional_files"] = json!(files);
        let (status, v) = post(&s, "/submissions", body).await;
        assert_eq!(status, 422, "case {i}: {v}");
        assert!(v["additional_files"][0].is_string(), "case {i}: {v}");
    }
    s.stop().await;
}

/// `number_of_runs`: the program compiled once and run N times (N test cases), time and
/// memory averaged; more than the maximum is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn number_of_runs_runs_the_program_n_times() {
    let s = TestServer::start(&[]).await;
    let mut body = py("print(input())");
    body["stdin"] = json!("again");
    body["number_of_runs"] = json!(3);
    body["expected_output"] = json!("again");
    let v = run(&s, body, "&fields=token,status,stdout,time,number_of_runs").await;
    assert_eq!(status_id(&v), 3, "{v}");
    assert_eq!(v["stdout"], "again\n");
    assert_eq!(v["number_of_runs"], 3);
    // The job behind the token (the native API's view of it) ran three times.
    let token = v["token"].as_str().unwrap();
    let native: Value = s
        .get(&format!("/api/v1/executions/{token}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        native["tests"].as_array().map(Vec::len),
        Some(3),
        "{native}"
    );
    assert!(native.get("compat").is_none(), "{native}");

    let mut body = py("print(1)");
    body["number_of_runs"] = json!(21);
    let (status, v) = post(&s, "/submissions", body).await;
    assert_eq!(status, 422);
    assert_eq!(v["number_of_runs"][0], "must be less than or equal to 20");
    s.stop().await;
}

/// Limits in Judge0's units within the bounds `/config_info` reports; options we cannot
/// honour refused with Judge0's error shape (`enable_network` first of all).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_bounds_and_refused_options() {
    let s = TestServer::start(&[]).await;
    let (status, cfg) = get(&s, "/config_info").await;
    assert_eq!(status, 200);
    assert_eq!(cfg["max_cpu_time_limit"], 30.0, "{cfg}");
    assert_eq!(cfg["max_memory_limit"], 2048 * 1024);
    assert_eq!(cfg["allow_enable_network"], false);
    let refused = [
        (
            "enable_network",
            json!(true),
            "enabling network is not allowed",
        ),
        (
            "cpu_time_limit",
            json!(31),
            "must be less than or equal to 30",
        ),
        (
            "wall_time_limit",
            json!(0.5),
            "must be greater than or equal to 1",
        ),
        (
            "memory_limit",
            json!(1000),
            "must be greater than or equal to 2048",
        ),
        (
            "max_processes_and_or_threads",
            json!(0),
            "must be greater than 0",
        ),
        (
            "enable_per_process_and_thread_time_limit",
            json!(true),
            "this option cannot be enabled",
        ),
        (
            "stack_limit",
            json!(256000),
            "must be less than or equal to 128000",
        ),
        (
            "cpu_extra_time",
            json!(6),
            "must be less than or equal to 5",
        ),
        ("cpu_time_limit", json!("soon"), "is not a number"),
    ];
    for (field, value, message) in refused {
        let mut body = py("print(1)");
        body[field] = value;
        let (status, v) = post(&s, "/submissions", body).await;
        assert_eq!(status, 422, "{field}: {v}");
        assert_eq!(v[field], json!([message]), "{field}");
    }
    // Limits map onto ours: 64 MB of memory (in KB) is too little for 200 MB.
    let mut body = py("x = bytearray(200 * 1024 * 1024)\nprint(len(x))");
    body["memory_limit"] = json!(65536);
    let v = run(&s, body, "").await;
    assert_ne!(status_id(&v), 3, "{v}");
    // Judge0's defaults that we honour are accepted as they are sent.
    let mut body = py("print(1)");
    body["enable_network"] = json!(false);
    body["enable_per_process_and_thread_memory_limit"] = json!(false);
    body["cpu_time_limit"] = json!("2.5");
    body["language_id"] = json!("71");
    // Judge0's stock defaults for the limits we cannot set per run are accepted as sent.
    body["stack_limit"] = json!(64000);
    body["max_file_size"] = json!(1024);
    body["cpu_extra_time"] = json!(0.5);
    let v = run(&s, body, "&fields=status,cpu_time_limit").await;
    assert_eq!(status_id(&v), 3, "{v}");
    assert_eq!(v["cpu_time_limit"], "2.5");
    s.stop().await;
}

/// Languages: Judge0 CE's ids for what this host runs, named with our versions; one Judge0
/// lists that we do not run (Python 2) is unknown; `/about`; the prefix is configurable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn languages_about_and_the_prefix() {
    let s = TestServer::start(&[]).await;
    let (status, list) = get(&s, "/languages").await;
    assert_eq!(status, 200);
    let python = list
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == PYTHON)
        .unwrap_or_else(|| panic!("{list}"));
    let ours = s
        .app
        .languages
        .read()
        .unwrap()
        .iter()
        .find(|l| l.name == "python")
        .unwrap()
        .version
        .clone();
    assert_eq!(python["name"], format!("Python ({ours})"));
    let (status, v) = get(&s, "/languages/71").await;
    assert_eq!(status, 200);
    assert_eq!(v["source_file"], "main.py");
    assert_eq!(v["is_archived"], false);
    let (status, v) = get(&s, "/languages/48").await;
    assert_eq!(status, 200, "an older GCC id is our gcc: {v}");
    assert!(v["name"].as_str().unwrap().starts_with("C (GCC "));
    for unknown in ["70", "99999", "x"] {
        let (status, _) = get(&s, &format!("/languages/{unknown}")).await;
        assert_eq!(status, 404, "{unknown}");
    }
    let (status, v) = post(
        &s,
        "/submissions",
        json!({"language_id": 70, "source_code": "print 1"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(v["language_id"][0], "language with id 70 doesn't exist");
    let (_, about) = get(&s, "/about").await;
    assert_eq!(about["version"], "1.13.1");
    s.stop().await;

    let s = TestServer::start(&[("ISOBOX_JUDGE0_PREFIX", "/compat/j0")]).await;
    assert_eq!(s.get("/compat/j0/statuses").await.status(), 200);
    assert_eq!(s.get("/judge0/statuses").await.status(), 404);
    s.stop().await;
    let s = TestServer::start(&[("ISOBOX_JUDGE0_PREFIX", "off")]).await;
    assert_eq!(s.get("/judge0/statuses").await.status(), 404);
    s.stop().await;
}

/// `X-Auth-Token` is an API key on these routes (the native header too); a bad or missing one
/// is a 401 in Judge0's shape; the key's permission policy applies (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn x_auth_token_and_the_policy() {
    let dir = TempDir::new("judge0-auth");
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
conditions = [{ field = "language", operator = "in", value = "python" }]
[[role]]
name = "teacher"
[[role.permission]]
resource = "code_execution"
action = "*"
"#,
    );
    let s = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("ISOBOX_API_KEYS_FILE", keys.to_str().unwrap()),
        ("ISOBOX_POLICY", policy.to_str().unwrap()),
    ])
    .await;
    let post_as = |headers: Vec<(&'static str, &'static str)>, body: Value| {
        let s = &s;
        async move {
            send(
                s,
                reqwest::Method::POST,
                "/submissions?wait=true",
                &headers,
                Some(body),
            )
            .await
        }
    };
    let (status, v) = post_as(vec![("X-Auth-Token", "key-student")], py("print(1)")).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(status_id(&v), 3);
    let token = v["token"].as_str().unwrap().to_string();
    let (status, v) = post_as(vec![("X-API-Key", "key-teacher")], py("print(1)")).await;
    assert_eq!(status, 201, "{v}");
    // The student's token is not the teacher's to read.
    let (status, _) = send(
        &s,
        reqwest::Method::GET,
        &format!("/submissions/{token}"),
        &[("X-Auth-Token", "key-teacher")],
        None,
    )
    .await;
    assert_eq!(status, 404);
    for headers in [vec![("X-Auth-Token", "wrong-key")], vec![]] {
        let (status, v) = post_as(headers.clone(), py("print(1)")).await;
        assert_eq!(status, 401, "{headers:?}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    let (status, _) = get(&s, "/languages").await;
    assert_eq!(status, 401);
    // The policy: bash is not the student's.
    let (status, v) = post_as(
        vec![("X-Auth-Token", "key-student")],
        json!({"language_id": BASH, "source_code": "echo hi"}),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not allowed"), "{v}");
    let (status, v) = post_as(
        vec![("X-Auth-Token", "key-teacher")],
        json!({"language_id": BASH, "source_code": "echo hi"}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    s.stop().await;
}

/// `callback_url`: the finished submission PUT to the URL (Judge0's default attributes,
/// base64), through our webhook delivery (a loopback receiver the allow-list admits); without
/// a webhook secret callbacks are refused as Judge0 refuses them when disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_is_put_to_the_url() {
    use axum::routing::put;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let hook = axum::Router::new().route(
        "/hook",
        put(move |body: axum::body::Bytes| async move {
            let _ = tx.send(body.to_vec());
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let s = TestServer::start(&[
        ("ISOBOX_WEBHOOK_SECRET", "hook-secret"),
        ("ISOBOX_WEBHOOK_ALLOW", "127.0.0.1/32"),
        ("ISOBOX_WEBHOOK_ATTEMPTS", "2"),
    ])
    .await;
    let mut body = py("print('called back')");
    body["callback_url"] = json!(url);
    let (status, v) = post(&s, "/submissions", body).await;
    assert_eq!(status, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("no callback within 30 s")
        .unwrap();
    let got: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(got["token"], token.as_str());
    assert_eq!(got["status"], json!({"id": 3, "description": "Accepted"}));
    assert_eq!(
        B64.decode(got["stdout"].as_str().unwrap().trim_end())
            .unwrap(),
        b"called back\n"
    );
    s.stop().await;

    let s = TestServer::start(&[]).await;
    let mut body = py("print(1)");
    body["callback_url"] = json!(url);
    let (status, v) = post(&s, "/submissions", body).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["callback_url"][0], "setting callback is not allowed");
    s.stop().await;
}

/// Every Judge0 route in `/openapi.json` answers on the real server with a documented status
/// (a real token, a real language id), and every route served is documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_documents_the_routes() {
    let s = TestServer::start(&[]).await;
    let doc: Value = s.get("/openapi.json").await.json().await.unwrap();
    let token = run(&s, py("print(1)"), "").await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/judge0/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            documented.push(format!("{method} {path}"));
            let concrete = path
                .replace("{token}", &token)
                .replace("{id}", &PYTHON.to_string());
            let query = if concrete.ends_with("/batch") && method == "get" {
                format!("?tokens={token}")
            } else {
                String::new()
            };
            let body = match (method.as_str(), concrete.ends_with("/batch")) {
                ("post", true) => Some(json!({"submissions": [py("print(1)")]})),
                ("post", false) => Some(py("print(1)")),
                _ => None,
            };
            let m: reqwest::Method = method.to_uppercase().parse().unwrap();
            let url = format!("{}{query}", concrete.trim_start_matches("/judge0"));
            let (status, v) = send(&s, m, &url, &[], body).await;
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {path} answers {status}, which is not documented: {v}"
            );
        }
    }
    for route in [
        "post /judge0/submissions",
        "post /judge0/submissions/batch",
        "get /judge0/submissions/batch",
        "get /judge0/submissions/{token}",
        "delete /judge0/submissions/{token}",
        "get /judge0/languages",
        "get /judge0/languages/all",
        "get /judge0/languages/{id}",
        "get /judge0/statuses",
        "get /judge0/about",
        "get /judge0/version",
        "get /judge0/config_info",
    ] {
        assert!(
            documented.iter().any(|d| d == route),
            "{route} is not documented"
        );
    }
    s.stop().await;
}
