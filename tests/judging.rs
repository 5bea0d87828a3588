//! Judging (#16): test cases with verdicts and every comparison mode, the compile step paid
//! once, the compile cache (hits, misses on any change, scope, poisoning attempts), result
//! files, base64 I/O, compiler options and compile limits; through the executor (either
//! backend) and through the REST API (policy, dedup, jobs, validate).

use std::time::Duration;

use base64::Engine as _;
use isobox_core::{
    Compare, CompareMode, ExecuteRequest, ExecutionResult, RequestLimits, RunStatus, TestCase,
    Verdict,
};
use serde_json::{json, Value};

use crate::common::*;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn case(stdin: &str, expected: &str) -> TestCase {
    TestCase {
        stdin: Some(stdin.into()),
        expected_output: Some(expected.into()),
        ..Default::default()
    }
}

/// A C program that reads n and prints n*2; n = 7 crashes (SIGSEGV), n = 9 loops, n = 5
/// exits 3.
const DOUBLER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 2;
    if (n == 7) { volatile int *p = 0; *p = 1; }
    if (n == 9) for (;;) {}
    if (n == 5) exit(3);
    printf("%ld\n", n * 2);
    return 0;
}
"#;

fn judge(language: &str, code: &str, f: impl FnOnce(&mut ExecuteRequest)) -> ExecutionResult {
    let mut req = ExecuteRequest {
        language: language.into(),
        code: Some(code.into()),
        ..Default::default()
    };
    f(&mut req);
    executor()
        .execute(&req)
        .unwrap_or_else(|e| panic!("execute failed: {e}"))
}

fn verdicts(r: &ExecutionResult) -> Vec<Verdict> {
    r.tests
        .as_ref()
        .expect("tests in the result")
        .iter()
        .map(|t| t.verdict)
        .collect()
}

#[test]
fn every_verdict_of_a_compiled_program_compiled_once() {
    let r = judge("c", DOUBLER, |req| {
        req.tests = Some(vec![
            case("1\n", "2\n"),
            case("2\n", "5\n"),
            case("7\n", "14\n"),
            case("5\n", "10\n"),
            TestCase {
                name: Some("loops".into()),
                stdin: Some("9\n".into()),
                ..Default::default()
            },
            // No expected output: accepted when it runs ok.
            TestCase {
                stdin: Some("21".into()),
                ..Default::default()
            },
        ]);
        req.limits = Some(RequestLimits {
            timeout_ms: Some(1000),
            cpu_time_ms: Some(500),
            ..Default::default()
        });
    });
    assert_eq!(
        verdicts(&r),
        [
            Verdict::Accepted,
            Verdict::WrongAnswer,
            Verdict::Signal,
            Verdict::RuntimeError,
            Verdict::Timeout,
            Verdict::Accepted,
        ],
        "{r:#?}"
    );
    let tests = r.tests.as_ref().unwrap();
    assert_eq!(
        tests[1].run.stdout, "4\n",
        "a wrong answer shows the output"
    );
    assert_eq!(tests[2].run.signal.as_deref(), Some("SIGSEGV"));
    assert_eq!(tests[3].run.exit_code, Some(3));
    assert_eq!(tests[4].name, "loops");
    assert_eq!(tests[5].name, "6", "unnamed cases are numbered from 1");
    assert_eq!(tests[5].run.stdout, "42\n");
    let s = r.summary.as_ref().expect("a summary");
    assert_eq!((s.passed, s.failed, s.skipped, s.total), (2, 4, 0, 6));
    assert_eq!(
        s.verdict,
        Verdict::WrongAnswer,
        "the first failure's verdict"
    );
    assert!(s.wall_time_ms >= tests[4].run.wall_time_ms);
    assert_eq!(
        r.status,
        RunStatus::Signal,
        "the first run that did not end ok"
    );
    let c = r.compile.as_ref().expect("the compile step");
    assert_eq!(c.status, RunStatus::Ok);
}

#[test]
fn stop_on_failure_skips_the_rest() {
    let r = judge("python", "print(int(input()) * 2)", |req| {
        req.tests = Some(vec![case("1", "2\n"), case("2", "5\n"), case("3", "6\n")]);
        req.stop_on_failure = Some(true);
    });
    assert_eq!(
        verdicts(&r),
        [Verdict::Accepted, Verdict::WrongAnswer, Verdict::Skipped]
    );
    let s = r.summary.unwrap();
    assert_eq!((s.passed, s.failed, s.skipped), (1, 1, 1));
}

#[test]
fn memory_and_output_limits_are_verdicts_too() {
    let code = "import sys\nk = input()\nif k == 'mem':\n    x = bytearray(400 << 20)\nelif k == 'out':\n    sys.stdout.write('x' * (1 << 20))\nprint('fine')\n";
    let r = judge("python", code, |req| {
        req.tests = Some(vec![
            case("mem", "fine\n"),
            case("out", "fine\n"),
            case("ok", "fine\n"),
        ]);
        req.limits = Some(RequestLimits {
            memory_mb: Some(64),
            max_output_bytes: Some(4096),
            ..Default::default()
        });
    });
    assert_eq!(
        verdicts(&r),
        [
            Verdict::MemoryLimit,
            Verdict::OutputLimit,
            Verdict::Accepted
        ],
        "{r:#?}"
    );
    let t = r.tests.as_ref().unwrap();
    assert!(t[1].run.stdout_truncated);
    assert!(t[1].run.stdout.len() <= 4096);
}

#[test]
fn comparison_modes() {
    // The program prints "1.0000001  2\t \n\n3\n\n" (trailing spaces, blank lines).
    let code = r#"import sys; sys.stdout.write("1.0000001  2\t \n\n3\n\n")"#;
    let judge_mode = |compare: Compare, expected: &str| {
        let r = judge("python", code, |req| {
            req.tests = Some(vec![case("", expected)]);
            req.compare = Some(compare);
        });
        verdicts(&r)[0]
    };
    let mode = |m| Compare {
        mode: m,
        ..Compare::default()
    };
    use CompareMode::*;
    use Verdict::{Accepted as A, WrongAnswer as W};
    let exact = "1.0000001  2\t \n\n3\n\n";
    assert_eq!(judge_mode(mode(Exact), exact), A);
    assert_eq!(judge_mode(mode(Exact), "1.0000001  2\n\n3\n"), W);
    assert_eq!(judge_mode(mode(Trim), "1.0000001  2\n\n3"), A);
    assert_eq!(
        judge_mode(mode(Trim), "1.0000001 2\n\n3"),
        W,
        "inner spaces count"
    );
    assert_eq!(
        judge_mode(mode(Trim), "1.0000001  2\n3"),
        W,
        "inner blank lines count"
    );
    assert_eq!(judge_mode(mode(Tokens), "1.0000001 2 3"), A);
    assert_eq!(judge_mode(mode(Tokens), "1 2 3"), W);
    assert_eq!(judge_mode(mode(Float), "1 2 3"), A, "1e-6 tolerances");
    let strict = Compare {
        mode: Float,
        absolute: 1e-9,
        relative: 1e-9,
    };
    assert_eq!(judge_mode(strict, "1 2 3"), W);
    assert_eq!(judge_mode(mode(Float), "1 2 4"), W);
}

#[test]
fn a_program_that_does_not_compile_fails_every_case() {
    let r = judge("c", "int main(void) { return nope; }", |req| {
        req.tests = Some(vec![case("", ""), case("", "")]);
    });
    assert_eq!(r.status, RunStatus::CompileError);
    assert_eq!(verdicts(&r), [Verdict::CompileError, Verdict::CompileError]);
    assert_eq!(r.summary.as_ref().unwrap().verdict, Verdict::CompileError);
    assert!(r.compile.as_ref().unwrap().stderr.contains("nope"));
}

#[test]
fn base64_in_and_out_gives_exact_bytes() {
    // Bytes that are not UTF-8 in, the same bytes out, and a test expecting them.
    let input = [0xff_u8, 0xfe, 0x00, b'\n', 0x80];
    let code = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d[::-1]); sys.stderr.buffer.write(b'\\xc3')";
    let r = judge("python", "", |req| {
        req.code = Some(b64(code.as_bytes()));
        req.encoding = Some("base64".into());
        req.stdin = Some(b64(&input));
    });
    assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.encoding.as_deref(), Some("base64"));
    let mut want = input.to_vec();
    want.reverse();
    assert_eq!(unb64(&r.stdout), want);
    assert_eq!(unb64(&r.stderr), [0xc3]);
    // Without base64 the same output is text with U+FFFD.
    let r = judge("python", code, |req| req.stdin = Some("ab".into()));
    assert_eq!(r.stdout, "ba");
    assert_eq!(r.stderr, "\u{fffd}");
    // Tests take base64 stdin and expected output.
    let r = judge("python", "", |req| {
        req.code = Some(b64(code.as_bytes()));
        req.encoding = Some("base64".into());
        req.tests = Some(vec![
            case(&b64(&input), &b64(&want)),
            case(&b64(&input), &b64(&input)),
        ]);
    });
    assert_eq!(verdicts(&r), [Verdict::Accepted, Verdict::WrongAnswer]);
    // Bad base64 and unknown encodings are clear errors.
    for (enc, stdin) in [("base64", "%%%"), ("utf-16", "x")] {
        let err = executor()
            .execute(&ExecuteRequest {
                language: "python".into(),
                code: Some(b64(b"print(1)")),
                encoding: Some(enc.into()),
                stdin: Some(stdin.into()),
                ..Default::default()
            })
            .expect_err(enc);
        assert!(
            err.to_string().contains("encoding") || err.to_string().contains("base64"),
            "{err}"
        );
    }
}

#[test]
fn compile_args_reach_the_compiler_and_are_bounded() {
    let code = "#include <stdio.h>\nint main(void){ printf(\"%d\\n\", VALUE); return 0; }";
    let r = judge("c", code, |req| {
        req.compile_args = Some(vec!["-DVALUE=42".into()]);
    });
    assert_eq!(r.stdout, "42\n", "{r:?}");
    let r = judge("c", code, |req| {
        req.compile_args = Some(vec!["-DVALUE=7".into()]);
    });
    assert_eq!(r.stdout, "7\n", "other options, another compile");
    let bad = |f: &dyn Fn(&mut ExecuteRequest)| {
        let mut req = ExecuteRequest {
            language: "c".into(),
            code: Some(code.into()),
            ..Default::default()
        };
        f(&mut req);
        executor()
            .submission(&req)
            .expect_err("refused")
            .to_string()
    };
    assert!(bad(&|r| r.compile_args = Some(vec!["-x".into(); 33])).contains("at most 32"));
    assert!(bad(&|r| r.compile_args = Some(vec!["a\0b".into()])).contains("NUL"));
    assert!(bad(&|r| {
        r.language = "python".into();
        r.compile_args = Some(vec!["-O".into()]);
    })
    .contains("takes no `compile_args`"));
}

#[test]
fn compile_limits_bound_the_compiler() {
    // Never above the language's.
    let err = executor()
        .submission(&ExecuteRequest {
            language: "c".into(),
            code: Some("int main(void){return 0;}".into()),
            compile_limits: Some(RequestLimits {
                timeout_ms: Some(10_000_000),
                ..Default::default()
            }),
            ..Default::default()
        })
        .expect_err("too high");
    assert!(
        err.to_string().contains("compile_limits.timeout_ms"),
        "{err}"
    );
    // A tight one applies: a compile bomb of templates is stopped.
    let bomb = "template<int N> struct F { enum { v = F<N-1>::v + F<N-2>::v }; };\n\
                template<> struct F<0> { enum { v = 0 }; }; template<> struct F<1> { enum { v = 1 }; };\n\
                int main() { return F<40>::v == 3; }\n\
                #include <map>\n#include <regex>\n#include <iostream>\n";
    let r = judge("cpp", bomb, |req| {
        req.compile_limits = Some(RequestLimits {
            timeout_ms: Some(150),
            cpu_time_ms: Some(150),
            ..Default::default()
        });
    });
    assert_eq!(r.status, RunStatus::CompileError, "{r:?}");
    assert_eq!(r.compile.as_ref().unwrap().status, RunStatus::Timeout);
}

#[test]
fn the_compile_cache_skips_the_compiler_for_the_same_program() {
    let code = format!("{DOUBLER}\n/* {} */\n", token("cc"));
    let first = judge("c", &code, |req| req.stdin = Some("4".into()));
    assert_eq!(first.stdout, "8\n", "{first:?}");
    assert!(!first.compile_cached, "a new program compiles");
    let again = judge("c", &code, |req| req.stdin = Some("5\n".into()));
    assert!(again.compile_cached, "the same program again: {again:?}");
    assert_eq!(again.status, RunStatus::RuntimeError);
    assert_eq!(
        again.compile.as_ref().unwrap().status,
        RunStatus::Ok,
        "the cached compile's outcome"
    );
    // Any change of what decides the artifacts misses: the source, the options, the limits.
    let changed = judge("c", &format!("{code} "), |_| {});
    assert!(!changed.compile_cached);
    let options = judge("c", &code, |req| {
        req.compile_args = Some(vec!["-DX".into()]);
    });
    assert!(!options.compile_cached);
    let limits = judge("c", &code, |req| {
        req.compile_limits = Some(RequestLimits {
            memory_mb: Some(300),
            ..Default::default()
        });
    });
    assert!(!limits.compile_cached);
    // The artifacts are read-only in the run's sandbox.
    let r = judge(
        "c",
        &format!(
            "{}\n/* ro {} */",
            r#"
#include <stdio.h>
#include <sys/stat.h>
int main(void) {
    struct stat st; stat("main", &st);
    FILE *f = fopen("main", "w");
    printf("%o %s\n", st.st_mode & 0777, f ? "writable" : "read-only");
    return 0;
}"#,
            token("ro")
        ),
        |_| {},
    );
    assert_eq!(r.stdout, "555 read-only\n", "{r:?}");
}

/// An executor on the suites' backend with a language whose compile step is the submitted
/// shell script (so a test decides what the compile leaves behind) and whose run shows what
/// the run's sandbox got; compile-cache entries of at most 1 MiB.
fn poison_executor() -> isobox_core::Executor {
    let table = isobox_core::LanguageTable::parse(
        r#"
[[language]]
name = "poison"
extensions = ["sh"]
file = "build.sh"
compile = ["sh", "{file}"]
run = ["sh", "-c", "for f in *; do if [ -L \"$f\" ]; then echo \"link $f\"; else echo \"file $f $(wc -c < \"$f\")\"; fi; done; cat leak 2>/dev/null | head -c 40"]
requires = ["sh"]
"#,
    )
    .expect("the table");
    isobox_core::Executor::new(
        executor().backend().clone(),
        table,
        isobox_core::Policy::default(),
    )
    .with_compile_cache(isobox_core::CompileCacheConfig {
        max_bytes: 8 << 20,
        max_entry_bytes: 1 << 20,
        max_entry_files: 10,
    })
}

fn poison_run(ex: &isobox_core::Executor, script: &str) -> ExecutionResult {
    ex.execute(&ExecuteRequest {
        language: "poison".into(),
        code: Some(script.into()),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("execute: {e}"))
}

#[test]
fn a_compile_that_leaves_a_symlink_or_a_huge_file_is_not_cached() {
    let ex = poison_executor();
    // A clean compile is kept.
    let clean = format!("# {}\nprintf 'built' > out.bin\n", token("clean"));
    assert!(!poison_run(&ex, &clean).compile_cached);
    let r = poison_run(&ex, &clean);
    assert!(r.compile_cached, "{r:?}");
    assert!(r.stdout.contains("file out.bin 5"), "{r:?}");
    let kept = ex.compile_cache().stats();
    assert_eq!(kept.entries, 1);

    // A symlink to a host file: never taken, never read through, never cached. The case still
    // runs (compile and run in one sandbox), where the link points into the sandbox's own root.
    let link = format!(
        "# {}\nln -s /etc/shadow leak\nln -s / root\nprintf 'built' > out.bin\n",
        token("link")
    );
    for _ in 0..2 {
        let r = poison_run(&ex, &link);
        assert!(!r.compile_cached, "{r:?}");
        assert_eq!(r.status, RunStatus::Ok, "{r:?}");
        assert!(r.stdout.contains("link leak"), "{r:?}");
        assert!(!r.stdout.contains("root:"), "a host file leaked: {r:?}");
    }
    // Past the per-entry bytes (1 MiB here) or files (10): not cached either.
    let huge = format!("# {}\nhead -c 2000000 /dev/zero > big\n", token("huge"));
    let many = format!(
        "# {}\nfor i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $i > f$i; done\n",
        token("many")
    );
    for script in [huge, many] {
        for _ in 0..2 {
            let r = poison_run(&ex, &script);
            assert!(!r.compile_cached, "{r:?}");
            assert_eq!(r.status, RunStatus::Ok, "{r:?}");
        }
    }
    assert_eq!(ex.compile_cache().stats().entries, kept.entries);
    assert!(ex.compile_cache().stats().bytes <= 1 << 20);
}

#[test]
fn result_files_come_back_and_links_fifos_and_dirs_do_not() {
    let code = r#"
import os
open("plot.png", "wb").write(bytes(range(256)))
open("data.csv", "w").write("a,b\n1,2\n")
open("notes.txt", "w").write("not asked for")
os.symlink("/etc/passwd", "leak.csv")
os.mkfifo("pipe.csv")
os.mkdir("dir.csv")
print("done")
"#;
    let r = judge("python", code, |req| {
        req.outputs = Some(vec!["*.png".into(), "*.csv".into()]);
    });
    assert_eq!(r.stdout, "done\n", "{r:?}");
    let files = r.files.as_ref().expect("files");
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["data.csv", "plot.png"], "{r:?}");
    assert_eq!(unb64(&files[1].content), (0..=255u8).collect::<Vec<_>>());
    assert_eq!(files[1].size, 256);
    assert_eq!(unb64(&files[0].content), b"a,b\n1,2\n");
    let skipped: Vec<(&str, &str)> = r
        .files_skipped
        .iter()
        .map(|s| (s.name.as_str(), s.reason.as_str()))
        .collect();
    for want in [
        ("leak.csv", "symlink"),
        ("pipe.csv", "not_regular"),
        ("dir.csv", "not_regular"),
    ] {
        assert!(skipped.contains(&want), "{want:?} in {skipped:?}");
    }
    // Caps: at most 16 files come back (the policy's), the rest are reported.
    let many = "for i in range(20):\n    open(f'f{i:02}.txt', 'w').write(str(i))\n";
    let r = judge("python", many, |req| {
        req.outputs = Some(vec!["*.txt".into()])
    });
    assert_eq!(r.files.as_ref().unwrap().len(), 16, "{r:?}");
    let over: Vec<&str> = r
        .files_skipped
        .iter()
        .filter(|s| s.reason == "too_many_files")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(over.len(), 4, "{r:?}");
    // Patterns are relative and plain.
    for bad in ["/etc/passwd", "../x", "a/../b", ""] {
        let err = executor()
            .submission(&ExecuteRequest {
                language: "python".into(),
                code: Some("1".into()),
                outputs: Some(vec![bad.into()]),
                ..Default::default()
            })
            .expect_err(bad);
        assert!(err.to_string().contains("outputs"), "{err}");
    }
}

#[test]
fn stderr_can_be_merged_into_stdout_in_order() {
    let code = "import sys\nfor i in range(3):\n    print('out', i, flush=True)\n    print('err', i, file=sys.stderr, flush=True)\n";
    let r = judge("python", code, |req| req.stderr_to_stdout = Some(true));
    assert_eq!(
        r.stdout, "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n",
        "{r:?}"
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn bad_tests_are_clear_errors() {
    let err = |f: &dyn Fn(&mut ExecuteRequest)| {
        let mut req = ExecuteRequest {
            language: "python".into(),
            code: Some("print(1)".into()),
            ..Default::default()
        };
        f(&mut req);
        executor()
            .submission(&req)
            .expect_err("refused")
            .to_string()
    };
    assert!(err(&|r| r.tests = Some(vec![])).contains("must not be empty"));
    assert!(err(&|r| r.tests = Some(vec![TestCase::default(); 101]))
        .contains("the most allowed is 100"));
    assert!(err(&|r| {
        r.tests = Some(vec![TestCase::default()]);
        r.stdin = Some("x".into());
    })
    .contains("in each test"));
    assert!(err(&|r| r.compare = Some(Compare::default())).contains("go with `tests`"));
    assert!(err(&|r| {
        r.tests = Some(vec![TestCase::default()]);
        r.outputs = Some(vec!["*.png".into()]);
    })
    .contains("cannot be combined"));
    let big = "x".repeat(9 << 20);
    assert!(
        err(&|r| r.tests = Some(vec![case("", &big), case("", &big)])).contains("the most allowed")
    );
}

fn c_hello(tag: &str) -> String {
    format!("#include <stdio.h>\nint main(void){{ int n = 0; scanf(\"%d\", &n); printf(\"%d\\n\", n + 1); return 0; }} /* {tag} */\n")
}

async fn post_as(s: &TestServer, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = s
        .client
        .post(s.url_for(path))
        .header("X-API-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_tests_compile_cache_scope_policy_and_jobs() {
    let dir = TempDir::new("judging-policy");
    let keys = dir.file(
        "keys.toml",
        &api_keys_toml(&[
            ("alice", "k-alice", &["all"]),
            ("bob", "k-bob", &["all"]),
            ("limited", "k-limited", &["limited"]),
        ]),
    );
    let policy = dir.file(
        "policy.toml",
        r#"
[[role]]
name = "all"
[[role.permission]]
resource = "*"
action = "*"
[[role]]
name = "limited"
[[role.permission]]
resource = "code_execution"
action = "*"
conditions = [
  { field = "tests", operator = "lte", value = "2" },
  { field = "compile_args", operator = "eq", value = "0" },
  { field = "compile_timeout_ms", operator = "lte", value = "5000" },
  { field = "compile_cpu_time_ms", operator = "lte", value = "4000" },
  { field = "compile_memory_mb", operator = "lte", value = "256" },
  { field = "compile_max_processes", operator = "lte", value = "16" },
  { field = "compile_max_output_bytes", operator = "lte", value = "65536" },
]
"#,
    );
    let s = TestServer::start(&[
        ("AUTH_TYPE", "apikey"),
        ("ISOBOX_API_KEYS_FILE", keys.to_str().unwrap()),
        ("ISOBOX_POLICY", policy.to_str().unwrap()),
        ("ISOBOX_MAX_TESTS", "5"),
    ])
    .await;
    let code = c_hello(&token("rest"));
    let tests = json!([
        {"name": "one", "stdin": "1", "expected_output": "2"},
        {"stdin": "41", "expected_output": "42\n"},
        {"stdin": "1", "expected_output": "3"}
    ]);
    let body = json!({"language": "c", "code": code, "tests": tests, "compare": "trim"});
    let (status, r) = post_as(&s, "k-alice", "/api/v1/execute", &body).await;
    assert_eq!(status, 200, "{r}");
    let verdicts: Vec<&str> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["accepted", "accepted", "wrong_answer"], "{r}");
    assert_eq!(r["tests"][0]["name"], "one");
    assert_eq!(r["tests"][2]["stdout"], "2\n");
    assert_eq!(r["summary"]["passed"], 2);
    assert_eq!(r["summary"]["failed"], 1);
    assert_eq!(r["summary"]["verdict"], "wrong_answer");
    assert_eq!(r["compile"]["status"], "ok");
    assert!(r.get("compile_cached").is_none(), "a first compile: {r}");

    // The same program for the same caller skips the compiler (new stdin: not a dedup hit).
    let single = |stdin: &str| json!({"language": "c", "code": code, "stdin": stdin});
    let (_, r) = post_as(&s, "k-alice", "/api/v1/execute", &single("9")).await;
    assert_eq!(r["stdout"], "10\n", "{r}");
    assert_eq!(r["compile_cached"], true, "{r}");
    assert_eq!(r["cached"], false);
    // Another caller does not share alice's compile.
    let (_, r) = post_as(&s, "k-bob", "/api/v1/execute", &single("9")).await;
    assert_eq!(r["stdout"], "10\n");
    assert!(
        r.get("compile_cached").is_none(),
        "bob compiles his own: {r}"
    );
    let m = s.metrics().await;
    assert!(m.contains("isobox_compile_cache_hits_total 1\n"), "{m}");

    // The policy bounds tests, compiler options and compile limits.
    let (status, r) = post_as(&s, "k-limited", "/api/v1/execute", &body).await;
    assert_eq!(status, 403, "3 tests > 2: {r}");
    // (c's compile limits are 20 s, 20 s of CPU, 512 MiB and 32 tasks: this role
    // must ask for 5 s, 4 s, 256 MiB and 16 at most; the 64 KiB output cap is the default)
    let compile_limits = json!({"timeout_ms": 5000, "cpu_time_ms": 4000, "memory_mb": 256,
                                "max_processes": 16});
    let two = json!({"language": "c", "code": code, "tests": [{"stdin": "1", "expected_output": "2"}],
                     "compile_limits": compile_limits});
    let (status, r) = post_as(&s, "k-limited", "/api/v1/execute", &two).await;
    assert_eq!(status, 200, "{r}");
    let mut with_args = two.clone();
    with_args["compile_args"] = json!(["-O0"]);
    let (status, _) = post_as(&s, "k-limited", "/api/v1/execute", &with_args).await;
    assert_eq!(status, 403);
    // Each compile limit a caller may raise is bounded: one over, 403 naming it.
    for (field, over) in [
        ("timeout_ms", 6000),
        ("cpu_time_ms", 4001),
        ("memory_mb", 257),
        ("max_processes", 17),
        ("max_output_bytes", 65537),
    ] {
        let mut raised = two.clone();
        raised["compile_limits"][field] = json!(over);
        let (status, r) = post_as(&s, "k-limited", "/api/v1/execute", &raised).await;
        assert_eq!(status, 403, "compile_limits.{field} = {over}: {r}");
        assert_eq!(r["error"], "forbidden", "{r}");
        let message = r["message"].as_str().unwrap();
        assert!(message.contains(&format!("compile_{field}")), "{r}");
        // /validate is held to the same rules.
        let (status, _) = post_as(&s, "k-limited", "/api/v1/validate", &raised).await;
        assert_eq!(status, 403, "validate compile_limits.{field} = {over}");
    }
    // Left out, a compile limit is the language's, which this role does not allow.
    let mut unasked = two.clone();
    unasked["compile_limits"] = json!({"timeout_ms": 5000});
    let (status, r) = post_as(&s, "k-limited", "/api/v1/execute", &unasked).await;
    assert_eq!(status, 403, "{r}");
    // ISOBOX_MAX_TESTS and bad fields: clear errors.
    let mut many = body.clone();
    many["tests"] = json!(vec![json!({"stdin": "1"}); 6]);
    let (status, r) = post_as(&s, "k-alice", "/api/v1/execute", &many).await;
    assert_eq!(status, 413, "{r}");
    assert_eq!(r["error"], "too_large");
    let mut bad = body.clone();
    bad["compare"] = json!("fuzzy");
    let (status, r) = post_as(&s, "k-alice", "/api/v1/execute", &bad).await;
    assert_eq!(status, 400, "{r}");
    assert!(r["message"].as_str().unwrap().contains("compare"), "{r}");
    // /validate checks the new fields and runs only the syntax check.
    let mut v = json!({"language": "c", "code": code, "compile_args": ["a\u{0}b"]});
    let (status, _) = post_as(&s, "k-alice", "/api/v1/validate", &v).await;
    assert_eq!(status, 400);
    v["compile_args"] = json!(["-Wall"]);
    let (status, r) = post_as(&s, "k-alice", "/api/v1/validate", &v).await;
    assert_eq!((status, &r["valid"]), (200, &json!(true)), "{r}");

    // Async jobs and batches carry tests too.
    let poll = |id: String| {
        let s = &s;
        async move {
            for _ in 0..100 {
                let job: Value = s
                    .client
                    .get(s.url_for(&format!("/api/v1/executions/{id}")))
                    .header("X-API-Key", "k-alice")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if job["state"] == "done" {
                    return job;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("job {id} never finished");
        }
    };
    let (status, job) = post_as(&s, "k-alice", "/api/v1/executions", &body).await;
    assert_eq!(status, 202, "{job}");
    let job = poll(job["id"].as_str().unwrap().to_string()).await;
    assert_eq!(job["summary"]["passed"], 2, "{job}");
    assert_eq!(job["tests"][2]["verdict"], "wrong_answer", "{job}");
    let mut other = body.clone();
    other["stop_on_failure"] = json!(true);
    other["tests"] =
        json!([{"stdin": "1", "expected_output": "5"}, {"stdin": "2", "expected_output": "3"}]);
    let batch = json!({"submissions": [body, other]});
    let (status, ids) = post_as(&s, "k-alice", "/api/v1/executions/batch", &batch).await;
    assert_eq!(status, 202, "{ids}");
    let first = poll(ids["ids"][0].as_str().unwrap().to_string()).await;
    assert_eq!(first["summary"]["total"], 3, "{first}");
    let second = poll(ids["ids"][1].as_str().unwrap().to_string()).await;
    assert_eq!(second["tests"][0]["verdict"], "wrong_answer", "{second}");
    assert_eq!(second["tests"][1]["verdict"], "skipped", "{second}");
    s.stop().await;
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Files with `encoding: "base64"` carry bytes that are not UTF-8 (NUL, 0xff, a lone
/// continuation byte, every byte value) to the program exactly, over REST: written back with
/// the request's `encoding: "base64"` they are the same bytes; without it, the files are still
/// decoded (their encoding is their own) and the output is text.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_base64_files_reach_the_program_byte_for_byte() {
    let s = TestServer::start(&[]).await;
    let data: Vec<u8> = [0xff_u8, 0x00, 0xfe, b'\n', 0x80, 0xc3, 0x28]
        .into_iter()
        .chain(0..=255)
        .collect();
    assert!(std::str::from_utf8(&data).is_err());
    let nested = [0x00_u8, 0xff, 0x00];
    let code =
        "import sys\nfor f in sys.argv[1:]:\n    sys.stdout.buffer.write(open(f, 'rb').read())\n";
    let body = json!({
        "language": "python",
        "encoding": "base64",
        "files": [
            {"name": "main.py", "content": code},
            {"name": "data.bin", "content": b64(&data), "encoding": "base64"},
            {"name": "sub/raw.bin", "content": b64(&nested), "encoding": "base64"}
        ],
        "args": ["data.bin", "sub/raw.bin"]
    });
    let r = s.exec(body).await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["encoding"], "base64", "{r}");
    let mut want = data.clone();
    want.extend_from_slice(&nested);
    assert_eq!(unb64(r["stdout"].as_str().unwrap()), want, "{r}");
    assert_eq!(r["stderr"], "", "{r}");

    // The file's encoding is its own: a text result of the same bytes, as hex.
    let body = json!({
        "language": "python",
        "files": [
            {"name": "main.py", "content": "print(open('data.bin', 'rb').read().hex())"},
            {"name": "data.bin", "content": b64(&data), "encoding": "base64"}
        ]
    });
    let r = s.exec(body).await;
    assert_eq!(r["status"], "ok", "{r}");
    assert!(r.get("encoding").is_none_or(Value::is_null), "{r}");
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r["stdout"], format!("{hex}\n"), "{r}");
    s.stop().await;
}

/// `/api/v1/validate` of a judging request runs nothing but the syntax check: not the
/// compiler (the compile cache neither misses nor fills, so the program's first real run
/// compiles), not the program, not its tests (no execution is counted, and tests that would
/// each sleep 5 s are answered at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_runs_neither_the_compiler_nor_the_program() {
    let s = TestServer::start(&[]).await;
    let code = c_hello(&token("validate"));
    let body = json!({
        "language": "c",
        "code": code,
        "compile_args": ["-DUNUSED"],
        "tests": [{"stdin": "1", "expected_output": "2\n"}, {"stdin": "2", "expected_output": "3\n"}]
    });
    let validate = |body: Value| {
        let s = &s;
        async move {
            let resp = s.post_json("/api/v1/validate", &body).await;
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            assert_eq!(status, 200, "{body}: {v}");
            v
        }
    };
    let nothing_ran = |after: &'static str| {
        let s = &s;
        async move {
            let m = s.metrics().await;
            for name in [
                "isobox_compile_cache_misses_total",
                "isobox_compile_cache_hits_total",
                "isobox_compile_cache_entries",
                "isobox_run_duration_seconds_count",
            ] {
                assert_eq!(metric(&m, name), 0, "{name} after {after}:\n{m}");
            }
            assert!(
                !m.contains("isobox_executions_total{"),
                "after {after}: {m}"
            );
        }
    };
    for _ in 0..2 {
        assert_eq!(
            validate(body.clone()).await,
            json!({"valid": true, "errors": ""})
        );
    }
    nothing_ran("validating a C program with tests").await;
    let slow = json!({
        "language": "python",
        "code": "import time\ntime.sleep(5)\nprint(input())\n",
        "tests": [{"stdin": "a", "expected_output": "a"}, {"stdin": "b", "expected_output": "b"}]
    });
    let t = std::time::Instant::now();
    assert_eq!(validate(slow).await, json!({"valid": true, "errors": ""}));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "it ran: {:?}",
        t.elapsed()
    );
    nothing_ran("validating a python program with tests").await;

    // The program's first run is its first compile; the next one is served by the cache (so
    // a compile by /validate would have been seen).
    let r = s.exec(body.clone()).await;
    assert_eq!(r["summary"]["passed"], 2, "{r}");
    assert!(
        r.get("compile_cached").is_none(),
        "compiled by /validate? {r}"
    );
    let mut again = body.clone();
    again["tests"] = json!([{"stdin": "41", "expected_output": "42\n"}]);
    let r = s.exec(again).await;
    assert_eq!(r["compile_cached"], true, "{r}");
    let m = s.metrics().await;
    assert_eq!(metric(&m, "isobox_compile_cache_misses_total"), 1, "{m}");
    assert_eq!(metric(&m, "isobox_compile_cache_hits_total"), 1, "{m}");
    s.stop().await;
}

/// Test cases run side by side on slots that are idle, one sandbox each, with the results of one
/// after another: four cases that sleep half a second take about half a second with four slots
/// and at least two seconds with one; verdicts come in the order of the cases, and
/// `stop_on_failure` skips every case after the first failure even when later ones ran beside
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_cases_run_side_by_side_on_idle_slots() {
    let code = "import time\nn = int(input())\ntime.sleep(0.5)\nprint(n * 2)\n";
    let tests = json!([
        {"name": "a", "stdin": "1", "expected_output": "2"},
        {"name": "b", "stdin": "2", "expected_output": "5"},
        {"name": "c", "stdin": "3", "expected_output": "6"},
        {"name": "d", "stdin": "4", "expected_output": "8"}
    ]);
    let body = json!({"language": "python", "code": code, "tests": tests, "compare": "trim"});
    let verdicts = |r: &Value| -> Vec<String> {
        r["tests"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["name"].as_str().unwrap(),
                    t["verdict"].as_str().unwrap()
                )
            })
            .collect()
    };
    let mut took = Vec::new();
    for slots in ["4", "1"] {
        let s = TestServer::start(&[("ISOBOX_SLOTS", slots)]).await;
        let t = std::time::Instant::now();
        let r = s.exec(body.clone()).await;
        took.push(t.elapsed());
        assert_eq!(
            verdicts(&r),
            ["a:accepted", "b:wrong_answer", "c:accepted", "d:accepted"],
            "{slots} slots: {r}"
        );
        assert_eq!(r["tests"][3]["stdout"], "8\n", "{r}");
        assert_eq!(r["summary"]["passed"], 3, "{r}");

        let mut stop = body.clone();
        stop["stop_on_failure"] = json!(true);
        let r = s.exec(stop).await;
        assert_eq!(
            verdicts(&r),
            ["a:accepted", "b:wrong_answer", "c:skipped", "d:skipped"],
            "{slots} slots: {r}"
        );
        assert_eq!(
            (
                &r["summary"]["passed"],
                &r["summary"]["failed"],
                &r["summary"]["skipped"]
            ),
            (&json!(1), &json!(1), &json!(2)),
            "{r}"
        );
        // Every lent slot is back.
        let m = s.metrics().await;
        assert!(m.contains("isobox_slots_busy 0\n"), "{m}");
    }
    assert!(took[0] < Duration::from_millis(1500), "4 slots: {took:?}");
    assert!(took[1] >= Duration::from_millis(2000), "1 slot: {took:?}");
}
