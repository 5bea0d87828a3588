//! SECURITY.md may claim only what is measured or tested:
//! - its probe table for each backend (between `<!-- selftest:<backend> -->` and
//!   `<!-- selftest:end -->`) must list exactly the probes `isobox selftest --backend <backend>
//!   --json` runs on this host, each with the same required and enforced state (no overclaim, no
//!   stale row). `ISOBOX_WRITE_DOC=1 cargo nextest run --test it -E 'test(/^security_doc::/)'`
//!   rewrites the tables from `isobox selftest --markdown` instead of failing;
//! - every test it cites (`` `path/to/file.rs::test_name` ``) must exist as a test function, and
//!   every row of a table whose last column is "backed by" must cite at least one;
//! - what it says about the execution log (no code, stdin or output) is checked here on the
//!   real `isobox serve`.

use crate::common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const HOST_DEPENDENT: &str = "depends on host";
const END: &str = "<!-- selftest:end -->";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn security_md() -> String {
    std::fs::read_to_string(repo().join("SECURITY.md")).expect("SECURITY.md in the repository root")
}

fn start_marker(backend: &str) -> String {
    format!("<!-- selftest:{backend} -->")
}

/// One probe row: required (`yes`/`no`) and enforced (`yes`/`no`/[`HOST_DEPENDENT`]).
#[derive(Debug, PartialEq)]
struct Row {
    required: String,
    enforced: String,
}

/// The probe rows of `backend`'s block in `doc` (probe name -> row); panics on a malformed
/// block (missing markers, duplicate or unparsable rows).
fn doc_rows(doc: &str, backend: &str) -> BTreeMap<String, Row> {
    let start = start_marker(backend);
    let from = doc
        .find(&start)
        .unwrap_or_else(|| panic!("SECURITY.md has no `{start}` block"));
    let body = &doc[from + start.len()..];
    let to = body
        .find(END)
        .unwrap_or_else(|| panic!("the `{start}` block of SECURITY.md has no `{END}`"));
    let mut rows = BTreeMap::new();
    let mut header_seen = false;
    for line in body[..to].lines().map(str::trim) {
        if !line.starts_with('|') {
            assert!(line.is_empty(), "{backend} block: unexpected line `{line}`");
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if !header_seen {
            assert_eq!(
                &cells[..3],
                ["probe", "required", "enforced"],
                "{backend} block: header"
            );
            header_seen = true;
            continue;
        }
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        assert!(cells.len() >= 3, "{backend} block: short row `{line}`");
        assert!(
            ["yes", "no"].contains(&cells[1]),
            "{backend} block: required must be yes or no: `{line}`"
        );
        assert!(
            ["yes", "no", HOST_DEPENDENT].contains(&cells[2]),
            "{backend} block: enforced must be yes, no or `{HOST_DEPENDENT}`: `{line}`"
        );
        let old = rows.insert(
            cells[0].to_string(),
            Row {
                required: cells[1].to_string(),
                enforced: cells[2].to_string(),
            },
        );
        assert!(
            old.is_none(),
            "{backend} block: probe listed twice: `{line}`"
        );
    }
    assert!(header_seen, "{backend} block: no table");
    rows
}

/// Runs `isobox selftest --backend <backend>` with `extra` arguments.
fn selftest(backend: &str, extra: &str) -> std::process::Output {
    let out = isobox_cmd()
        .args(["selftest", "--backend", backend, extra])
        .env_remove("ISOBOX_BACKEND")
        .output()
        .expect("run isobox selftest");
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "isobox selftest --backend {backend} {extra} failed to run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What the selftest measured, as the rows SECURITY.md must carry.
fn measured_rows(backend: &str) -> BTreeMap<String, (Row, String)> {
    let out = selftest(backend, "--json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "selftest --json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(v["backend"], backend);
    let probes = v["probes"].as_array().expect("probes");
    assert!(!probes.is_empty(), "the selftest ran no probe");
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut rows = BTreeMap::new();
    for p in probes {
        let name = p["name"].as_str().expect("name").to_string();
        let required = p["required"].as_bool().expect("required");
        let enforced = p["enforced"].as_bool().expect("enforced");
        let host = p["host_dependent"].as_bool().expect("host_dependent");
        assert!(
            !(host && required),
            "{name}: a required probe cannot depend on the host"
        );
        let row = Row {
            required: yes_no(required),
            enforced: if host {
                HOST_DEPENDENT.into()
            } else {
                yes_no(enforced)
            },
        };
        let detail = p["detail"].as_str().unwrap_or_default().to_string();
        assert!(
            rows.insert(name.clone(), (row, detail)).is_none(),
            "{name} twice"
        );
    }
    // The exit code agrees with the report.
    let ok = v["ok"].as_bool().expect("ok");
    assert_eq!(out.status.code(), Some(if ok { 0 } else { 1 }), "{v}");
    rows
}

/// Replaces `backend`'s block in SECURITY.md with `isobox selftest --markdown`.
fn write_block(backend: &str) {
    let out = selftest(backend, "--markdown");
    let block = String::from_utf8(out.stdout).unwrap();
    let start = start_marker(backend);
    assert!(
        block.starts_with(&start) && block.trim_end().ends_with(END),
        "{block}"
    );
    let doc = security_md();
    let from = doc.find(&start).expect("the block's start marker");
    let to = from + doc[from..].find(END).expect("the block's end marker") + END.len();
    let new = format!("{}{}{}", &doc[..from], block.trim_end(), &doc[to..]);
    std::fs::write(repo().join("SECURITY.md"), new).unwrap();
}

/// Every probe measured is in the doc with the same state, and every probe of the doc was
/// measured.
fn check_backend(backend: &str) -> BTreeMap<String, (Row, String)> {
    if std::env::var_os("ISOBOX_WRITE_DOC").is_some() {
        write_block(backend);
    }
    let measured = measured_rows(backend);
    let doc = doc_rows(&security_md(), backend);
    let mut wrong = Vec::new();
    for (name, (row, detail)) in &measured {
        match doc.get(name) {
            None => wrong.push(format!("probe `{name}` is missing from the doc")),
            Some(d) if d != row => wrong.push(format!(
                "probe `{name}`: the doc says required {} / enforced {}, the selftest measured required {} / enforced {} ({detail})",
                d.required, d.enforced, row.required, row.enforced
            )),
            Some(_) => {}
        }
    }
    for name in doc.keys() {
        if !measured.contains_key(name) {
            wrong.push(format!(
                "the doc lists probe `{name}`, which the selftest does not run"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "SECURITY.md's {backend} table disagrees with `isobox selftest --backend {backend}`:\n  {}\n\
         (if the selftest is right, regenerate: \
         ISOBOX_WRITE_DOC=1 cargo nextest run --test it -E 'test(/^security_doc::/)')",
        wrong.join("\n  ")
    );
    measured
}

#[test]
fn native_probe_table_matches_the_selftest() {
    let measured = check_backend("native");
    // The generator prints what --json reports (the write mode relies on it).
    let md = String::from_utf8(selftest("native", "--markdown").stdout).unwrap();
    let generated = doc_rows(&md, "native");
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        measured.keys().collect::<Vec<_>>()
    );
    for (name, (row, detail)) in &measured {
        // A non-host-dependent probe may flip between two runs only if the host is broken.
        assert_eq!(&generated[name], row, "{name}: {detail}");
    }
}

#[test]
fn docker_probe_table_matches_the_selftest() {
    check_backend("docker");
}

/// Backticked citations `path.rs::name` in `doc`.
fn citations(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        if let Some((path, name)) = span.split_once(".rs::") {
            out.push((format!("{path}.rs"), name.to_string()));
        }
    }
    out
}

/// Whether `src` defines `name` as a test function (`#[test]` or `#[tokio::test...]` among the
/// attributes right above it).
fn is_test_fn(src: &str, name: &str) -> bool {
    let lines: Vec<&str> = src.lines().map(str::trim).collect();
    lines.iter().enumerate().any(|(i, l)| {
        let defines = [
            format!("fn {name}("),
            format!("async fn {name}("),
            format!("pub fn {name}("),
            format!("pub async fn {name}("),
        ]
        .iter()
        .any(|d| l.starts_with(d.as_str()));
        defines
            && lines[..i]
                .iter()
                .rev()
                .take_while(|a| a.starts_with("#[") || a.starts_with("//"))
                .any(|a| a.starts_with("#[test]") || a.starts_with("#[tokio::test"))
    })
}

#[test]
fn every_cited_test_exists_and_every_claim_cites_one() {
    let doc = security_md();
    let cited = citations(&doc);
    assert!(
        cited.len() >= 20,
        "SECURITY.md cites almost no test: {cited:?}"
    );
    let mut missing = Vec::new();
    for (path, name) in &cited {
        let file = repo().join(path);
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "`{path}::{name}` is not a test name"
        );
        match std::fs::read_to_string(&file) {
            Err(_) => missing.push(format!("{path} (no such file) for {name}")),
            Ok(src) if !is_test_fn(&src, name) => {
                missing.push(format!("{path}::{name} (no such test function)"))
            }
            Ok(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "SECURITY.md cites tests that do not exist:\n  {}",
        missing.join("\n  ")
    );

    // Every row of a "backed by" table cites at least one test.
    let mut rows = 0;
    let mut bare = Vec::new();
    let mut in_table = false;
    let mut header_done = false;
    for line in doc.lines().map(str::trim) {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if !in_table {
            in_table = cells.last().map(|c| c.eq_ignore_ascii_case("backed by")) == Some(true);
            header_done = false;
            continue;
        }
        if !header_done {
            header_done = true; // the |---| line
            continue;
        }
        rows += 1;
        if citations(cells.last().unwrap()).is_empty() {
            bare.push(line.to_string());
        }
    }
    assert!(
        rows >= 20,
        "SECURITY.md has almost no backed claim ({rows})"
    );
    assert!(
        bare.is_empty(),
        "claims without a test in their `backed by` column:\n  {}",
        bare.join("\n  ")
    );
}

#[test]
fn the_citation_check_can_fail() {
    // The checker itself: a real test is found, a helper, a made-up name and a test in a
    // comment are not.
    let src = std::fs::read_to_string(repo().join("tests/hostile.rs")).unwrap();
    assert!(is_test_fn(&src, "fork_bomb_in_c_is_contained"));
    assert!(!is_test_fn(&src, "run_c"));
    assert!(!is_test_fn(&src, "fork_bomb_in_cobol_is_contained"));
    assert!(!is_test_fn("// #[test]\n// fn ghost() {}\n", "ghost"));
    assert!(is_test_fn(
        "#[tokio::test(flavor = \"multi_thread\")]\nasync fn real() {}\n",
        "real"
    ));
    assert_eq!(
        citations("see `tests/a.rs::b` and `not a citation`"),
        vec![("tests/a.rs".to_string(), "b".to_string())]
    );
    let doc = format!(
        "{}\n| probe | required | enforced |\n| --- | --- | --- |\n| x | yes | no |\n{END}\n",
        start_marker("native")
    );
    let rows = doc_rows(&doc, "native");
    assert_eq!(
        rows["x"],
        Row {
            required: "yes".into(),
            enforced: "no".into()
        }
    );
}

/// `isobox serve` with its logs in `dir`, `key` as its one API key and the other secrets of
/// `secret` (a webhook secret, the password of an unreachable Redis).
fn serve_with_logs(dir: &Path, key: &str, secret: &str) -> IsoboxProcess {
    IsoboxProcess::start_with(
        "serve",
        &[
            ("AUTH_TYPE", "apikey"),
            ("API_KEYS", key),
            ("ISOBOX_WEBHOOK_SECRET", &format!("{secret}Webhook")),
            ("REDIS_URL", &format!("redis://:{secret}Redis@127.0.0.1:1")),
            ("ISOBOX_WARM_POOL", "0"),
            ("ISOBOX_LOG_DIR", dir.to_str().unwrap()),
            ("ISOBOX_LOG_FORMAT", "json"),
            ("RUST_LOG", "trace"),
        ],
        |c| {
            c.env_remove("ISOBOX_BACKEND");
        },
    )
}

#[test]
fn log_streams_hold_events_but_no_code_stdin_or_output() {
    let dir = TempDir::new("seclogs");
    let logs = dir.0.join("logs");
    let tag = token("DocMark");
    let key = format!("{tag}Key");
    let secret = format!("{tag}Secret");
    let server = serve_with_logs(&logs, &key, &secret);
    let url = server.url.clone();
    let in_code = format!("{tag}InCode");
    let in_stdin = format!("{tag}InStdin");
    // The output is computed, so it appears in neither the code nor the stdin.
    let in_output = format!("{tag}InOutput");
    let code = format!(
        "# {in_code}\nimport sys\nsys.stdin.read()\nprint('{tag}' + 'InOut' + 'put')\nprint('{tag}' + 'InOut' + 'put', file=sys.stderr)\n"
    );
    let body = serde_json::json!({"language": "python", "code": code, "stdin": in_stdin});
    let answer = curl(&[
        "-H",
        "Content-Type: application/json",
        "-H",
        &format!("X-API-Key: {key}"),
        "-d",
        &body.to_string(),
        &format!("{url}/api/v1/execute"),
    ]);
    let (status, mut all) = server.stop();
    assert!(status.success(), "{status:?}\n{all}");
    assert!(
        answer.contains(&format!("\"stdout\":\"{in_output}\\n\"")),
        "the run did not happen: {answer}"
    );
    let exec_log = std::fs::read_to_string(logs.join("execution.log")).unwrap();
    assert!(
        exec_log.contains("code_sha") && exec_log.contains("\"language\":\"python\""),
        "no execution event: {exec_log}"
    );
    // The access log (method, URI, status, time) is on stderr, the main log.
    assert!(
        all.lines()
            .any(|l| l.contains("isobox::http") && l.contains("/api/v1/execute")),
        "no access log line on stderr:\n{all}"
    );
    // The streams are copied to the main log too.
    assert!(
        all.contains("isobox::audit::exec"),
        "no execution event on stderr:\n{all}"
    );
    let auth_log = std::fs::read_to_string(logs.join("auth.log")).unwrap();
    assert!(
        auth_log.contains("authenticated") && auth_log.contains("key-"),
        "no authentication event with the key's id: {auth_log}"
    );
    for f in ["auth.log", "execution.log", "security.log"] {
        all.push_str(&std::fs::read_to_string(logs.join(f)).unwrap_or_default());
    }
    // Redis was unreachable all along, and said so.
    assert!(all.contains("redis_down"), "no redis_down event:\n{all}");
    for what in [&in_code, &in_stdin, &in_output, &key, &secret] {
        assert!(
            !all.contains(what.as_str()),
            "`{what}` reached a log:\n{all}"
        );
    }
}
