//! `isobox serve` and `isobox check-config` as an operator runs them: the real binary, real
//! signals, real log files.

use crate::common::*;

use std::io::Read;
use std::time::{Duration, Instant};

const PLANTED: &str = "planted-Secret-7f3a9c";

/// `isobox serve` without a warm pool, `envs` on top.
fn serve(envs: &[(&str, &str)]) -> IsoboxProcess {
    let mut vars = vec![("ISOBOX_WARM_POOL", "0")];
    vars.extend_from_slice(envs);
    IsoboxProcess::start("serve", &vars)
}

#[test]
fn secrets_never_reach_a_log_and_streams_rotate() {
    let dir = TempDir::new("logs");
    let logs = dir.0.join("logs");
    let secret_key = format!("{PLANTED}-key");
    let secret_oauth = format!("{PLANTED}-oauth");
    let server = serve(&[
        ("ISOBOX_LOG_DIR", logs.to_str().unwrap()),
        ("RUST_LOG", "trace"),
        ("API_KEYS", &format!("{secret_key},other-{PLANTED}")),
        ("OAUTH2_CLIENT_SECRET", &secret_oauth),
        ("ISOBOX_LOG_FORMAT", "json"),
    ]);
    let url = &server.url;
    let code = format!("print('password={PLANTED}-pw token={PLANTED}-tok')");
    let body = serde_json::json!({"language": "python", "code": code, "stdin": format!("key={PLANTED}-stdin")}).to_string();
    let auth = format!("Authorization: Bearer {PLANTED}-bearer");
    let apikey = format!("X-API-Key: {secret_key}");
    let out = curl(&[
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-H",
        &apikey,
        "-d",
        &body,
        &format!("{url}/api/v1/execute"),
    ]);
    assert!(out.contains("\"status\":\"ok\""), "{out}");
    // Secrets in a query string and a request id end up in the access log: masked.
    curl(&[&format!(
        "{url}/health?api_key={PLANTED}-query&token={PLANTED}-q2"
    )]);
    curl(&[
        "-H",
        &format!("X-Request-Id: token={PLANTED}-rid"),
        &format!("{url}/health"),
    ]);
    // An error path and a security event too.
    curl(&[
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        &format!("{{\"language\": \"{PLANTED}\", \"code\": \"x\"}}"),
        &format!("{url}/api/v1/execute"),
    ]);

    // Rotation: move execution.log away, SIGHUP, the next event lands in a fresh file.
    let exec_log = logs.join("execution.log");
    assert!(std::fs::read_to_string(&exec_log)
        .unwrap()
        .contains("\"status\":\"ok\""));
    std::fs::rename(&exec_log, logs.join("execution.log.1")).unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body2 = serde_json::json!({"language": "bash", "code": "echo rotated"}).to_string();
    while !exec_log.exists() || std::fs::read_to_string(&exec_log).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no new execution.log after SIGHUP"
        );
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            &body2,
            &format!("{url}/api/v1/execute"),
        ]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, stderr) = server.stop();
    assert!(status.success(), "{status:?}\n{stderr}");

    let mut all = stderr.clone();
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        let mut s = String::new();
        std::fs::File::open(entry.path())
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        all.push_str(&s);
    }
    assert!(all.contains("execution"), "the logs are empty:\n{all}");
    assert!(!all.contains(PLANTED), "a secret reached a log:\n{all}");
    let rotated = std::fs::read_to_string(logs.join("execution.log.1")).unwrap();
    assert!(rotated.contains("python"));
    assert!(std::fs::read_to_string(&exec_log).unwrap().contains("bash"));
    assert!(
        !rotated.contains("bash"),
        "events kept going to the rotated file"
    );
}

#[test]
fn check_config_shows_origins_and_masks_secrets() {
    let dir = TempDir::new("checkcfg");
    let file = dir.file("isobox.toml", "rest_port = 8100\ndedup_cache_ttl = 120\n");
    let out = isobox_cmd()
        .arg("check-config")
        .env("ISOBOX_CONFIG", &file)
        .env("REST_PORT", "8200")
        .env("OAUTH2_CLIENT_SECRET", PLANTED)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = |var: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{var} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("REST_PORT").contains("env") && line("REST_PORT").ends_with("8200"),
        "{text}"
    );
    assert!(
        line("DEDUP_CACHE_TTL").contains("file") && line("DEDUP_CACHE_TTL").ends_with("120"),
        "{text}"
    );
    assert!(line("DEDUP_ENABLED").contains("default"), "{text}");
    assert!(line("OAUTH2_CLIENT_SECRET").ends_with("********"), "{text}");
    assert!(!text.contains(PLANTED));

    let bad = isobox_cmd()
        .arg("check-config")
        .env("DEDUP_CACHE_TTL", "soon")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("DEDUP_CACHE_TTL"),
        "{bad:?}"
    );

    // serve refuses the same way, and refuses no authentication on a public address.
    let out = isobox_cmd()
        .arg("serve")
        .env("ISOBOX_BIND", "0.0.0.0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AUTH_TYPE"),
        "{out:?}"
    );
}

#[test]
fn serve_stops_cleanly_on_sigterm_with_a_run_in_flight() {
    let server = serve(&[("ISOBOX_SHUTDOWN_GRACE_MS", "5000")]);
    let url = server.url.clone();
    let body = serde_json::json!({"language": "bash", "code": "sleep 1; echo done"}).to_string();
    let inflight = std::thread::spawn(move || {
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            &format!("{url}/api/v1/execute"),
        ])
    });
    std::thread::sleep(Duration::from_millis(400));
    let (status, stderr) = server.stop();
    let answer = inflight.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        answer.contains("\"stdout\":\"done\\n\""),
        "the run in flight was cut: {answer}\n{stderr}"
    );
}

#[test]
fn refusals_are_security_events_without_credentials() {
    let dir = TempDir::new("secevents");
    let logs = dir.0.join("logs");
    let policy = dir.file(
        "policy.toml",
        "[[role]]\nname = \"user\"\n[[role.permission]]\nresource = \"code_execution\"\naction = \"execute\"\nconditions = [{ field = \"language\", operator = \"in\", value = \"python\" }]\n",
    );
    let good = format!("{PLANTED}-good");
    let server = serve(&[
        ("ISOBOX_LOG_DIR", logs.to_str().unwrap()),
        ("AUTH_TYPE", "apikey"),
        ("API_KEYS", &good),
        ("ISOBOX_POLICY", policy.to_str().unwrap()),
        ("ISOBOX_RATE_LIMIT", "2/min"),
    ]);
    let url = server.url.clone();
    let exec = |key: &str, lang: &str| {
        let body = serde_json::json!({"language": lang, "code": "print(1)"}).to_string();
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("X-API-Key: {key}"),
            "-d",
            &body,
            &format!("{url}/api/v1/execute"),
        ])
    };
    assert!(exec(&format!("{PLANTED}-wrong"), "python").contains("unauthorized"));
    assert!(exec(&good, "bash").contains("forbidden"));
    assert!(exec(&good, "python").contains("\"status\":\"ok\""));
    assert!(exec(&good, "python").contains("rate_limited"));
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    let security = std::fs::read_to_string(logs.join("security.log")).unwrap();
    for event in ["auth_failed", "denied", "rate_limited"] {
        assert!(security.contains(event), "no {event} event:\n{security}");
    }
    assert!(
        security.contains("127.0.0.1"),
        "no client address:\n{security}"
    );
    let mut all = stderr;
    for f in ["auth.log", "execution.log", "security.log"] {
        all.push_str(&std::fs::read_to_string(logs.join(f)).unwrap_or_default());
    }
    assert!(!all.contains(PLANTED), "a key reached a log:\n{all}");
}

/// Secrets set in the `ISOBOX_CONFIG` file are masked like those of the environment; markers
/// match whatever their case; a credential without a scheme is not echoed (answer or logs).
#[test]
fn secrets_from_the_config_file_and_in_any_case_never_reach_a_log() {
    let dir = TempDir::new("logs-file");
    let logs = dir.0.join("logs");
    let key = format!("{PLANTED}-filekey");
    let config = dir.0.join("isobox.toml");
    std::fs::write(
        &config,
        format!(
            "auth_type = \"apikey,oauth2\"\napi_keys = \"{key}\"\n\
             oauth2_introspection_url = \"http://127.0.0.1:9/introspect\"\n\
             oauth2_client_id = \"isobox\"\noauth2_client_secret = \"{PLANTED}-oauth\"\n\
             isobox_webhook_secret = \"{PLANTED}-webhook\"\n"
        ),
    )
    .unwrap();
    let server = serve(&[
        ("ISOBOX_CONFIG", config.to_str().unwrap()),
        ("ISOBOX_LOG_DIR", logs.to_str().unwrap()),
        ("RUST_LOG", "debug"),
    ]);
    let url = &server.url;
    // A secret where no marker announces it: the access log's URI.
    let out = curl(&[
        "-s",
        "-H",
        &format!("X-API-Key: {key}"),
        &format!("{url}/no-such/{key}"),
    ]);
    assert!(out.contains("not_found"), "{out}");
    // Markers in other cases.
    curl(&[&format!(
        "{url}/health?apiKey={PLANTED}-a&Token={PLANTED}-b&X-API-KEY={PLANTED}-c&jwt={PLANTED}-d&sig={PLANTED}-e"
    )]);
    // A credential without a scheme: refused without a word of it.
    let out = curl(&[
        "-s",
        "-H",
        &format!("Authorization: {PLANTED}-noscheme"),
        &format!("{url}/api/v1/languages"),
    ]);
    assert!(out.contains("unauthorized"), "{out}");
    assert!(
        !out.contains(PLANTED),
        "the answer echoes the credential: {out}"
    );
    let (status, stderr) = server.stop();
    assert!(status.success(), "{status:?}\n{stderr}");
    let mut all = stderr;
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        all.push_str(&std::fs::read_to_string(entry.path()).unwrap());
    }
    assert!(
        all.contains("/no-such/"),
        "the access log is missing:\n{all}"
    );
    assert!(!all.contains(PLANTED), "a secret reached a log:\n{all}");
}

/// A runtime added to (then removed from) the runtimes directory is offered after SIGHUP, and
/// a run going on while the runtimes are rescanned finishes.
#[test]
fn sighup_rescans_the_runtimes() {
    let dir = TempDir::new("rt-hup");
    let runtimes = dir.0.join("runtimes");
    std::fs::create_dir_all(&runtimes).unwrap();
    let server = serve(&[("ISOBOX_RUNTIMES_DIR", runtimes.to_str().unwrap())]);
    let url = server.url.clone();
    let python_versions = || -> Vec<(String, String)> {
        let list: serde_json::Value =
            serde_json::from_str(&curl(&[&format!("{url}/api/v1/languages")])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .filter(|l| l["name"] == "python")
            .map(|l| {
                (
                    l["version"].as_str().unwrap().to_string(),
                    l["runtime"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let before = python_versions();
    assert!(before.iter().all(|(_, rt)| rt == "host"), "{before:?}");
    // A built runtime: its manifest and root (listing needs no run in it).
    let rt = runtimes.join("python-test");
    std::fs::create_dir_all(rt.join("root")).unwrap();
    let manifest = serde_json::json!({
        "name": "python-test", "suite": "trixie", "packages": ["python3"], "installed": [],
        "languages": [{"language": "python", "version": "99.1.0"}],
        "size_bytes": 0, "build_secs": 0.0, "built_at": 0, "hash": "00"
    });
    std::fs::write(rt.join("manifest.json"), manifest.to_string()).unwrap();
    // A run that is going on while the server rescans.
    let long = std::thread::spawn({
        let url = url.clone();
        move || {
            curl(&[
                "-H",
                "Content-Type: application/json",
                "-d",
                r#"{"language": "python", "version": "3", "code": "import time; time.sleep(1.5); print('still here')"}"#,
                &format!("{url}/api/v1/execute"),
            ])
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = python_versions();
    while !now.contains(&("99.1.0".into(), "python-test".into())) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = python_versions();
    }
    assert_eq!(
        now.first(),
        Some(&("99.1.0".to_string(), "python-test".to_string())),
        "the new runtime is offered, newest first: {now:?}"
    );
    let out = long.join().unwrap();
    assert!(out.contains("still here"), "{out}");
    // Removed, then SIGHUP: no longer offered.
    std::fs::remove_dir_all(&rt).unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while python_versions().iter().any(|(_, r)| r == "python-test") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(python_versions(), before);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// The lines of `isobox check-config` as (variable -> (origin, value)).
fn check_config(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (std::process::Output, Vec<(String, String, String)>) {
    let out = isobox_cmd()
        .arg("check-config")
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (var, origin) = (w.next()?, w.next()?);
            let value = w.collect::<Vec<_>>().join(" ");
            Some((var.to_string(), origin.to_string(), value))
        })
        .collect();
    (out, lines)
}

/// Each setting from a flag, else the environment, else the `--config` file (or
/// `ISOBOX_CONFIG`), else its default; check-config says which.
#[test]
fn settings_come_from_flags_then_env_then_file_then_defaults() {
    let dir = TempDir::new("precedence");
    let file = dir.file(
        "isobox.toml",
        "rest_port = 8100\ngrpc_port = 9100\nISOBOX_SLOTS = 3\nisobox_bind = \"127.0.0.2\"\n",
    );
    let file = file.to_str().unwrap();
    let env = [("REST_PORT", "8200"), ("GRPC_PORT", "9200")];
    let origin = |lines: &[(String, String, String)], var: &str| -> (String, String) {
        let (_, o, v) = lines
            .iter()
            .find(|(name, _, _)| name == var)
            .unwrap_or_else(|| panic!("no {var} line: {lines:?}"));
        (o.clone(), v.clone())
    };
    let pair = |o: &str, v: &str| (o.to_string(), v.to_string());

    // Flags over env over file over defaults, each setting on its own.
    let (out, l) = check_config(
        &["--config", file, "--port", "8300", "--backend", "native"],
        &env,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(origin(&l, "REST_PORT"), pair("flag", "8300"));
    assert_eq!(origin(&l, "GRPC_PORT"), pair("env", "9200"));
    assert_eq!(origin(&l, "ISOBOX_SLOTS"), pair("file", "3"));
    assert_eq!(origin(&l, "ISOBOX_BIND"), pair("file", "127.0.0.2"));
    assert_eq!(origin(&l, "ISOBOX_BACKEND"), pair("flag", "native"));
    assert_eq!(origin(&l, "ISOBOX_CONFIG"), pair("flag", file));
    assert_eq!(
        origin(&l, "ISOBOX_QUEUE_TIMEOUT_MS"),
        pair("default", "30000")
    );
    // Without the flag, the environment; without that, the file; without that, the default.
    let (_, l) = check_config(&["--config", file], &env);
    assert_eq!(origin(&l, "REST_PORT"), pair("env", "8200"));
    let (_, l) = check_config(&["--config", file], &[]);
    assert_eq!(origin(&l, "REST_PORT"), pair("file", "8100"));
    assert_eq!(origin(&l, "GRPC_PORT"), pair("file", "9100"));
    let (_, l) = check_config(&[], &[]);
    assert_eq!(origin(&l, "REST_PORT"), pair("default", "8000"));
    assert_eq!(origin(&l, "ISOBOX_BIND"), pair("default", "127.0.0.1"));
    // ISOBOX_CONFIG names the file when --config does not; --config wins over it.
    let other = dir.file("other.toml", "rest_port = 8500\n");
    let (_, l) = check_config(&[], &[("ISOBOX_CONFIG", file)]);
    assert_eq!(origin(&l, "REST_PORT"), pair("file", "8100"));
    assert_eq!(origin(&l, "ISOBOX_CONFIG"), pair("env", file));
    let (_, l) = check_config(
        &["--config", other.to_str().unwrap()],
        &[("ISOBOX_CONFIG", file)],
    );
    assert_eq!(origin(&l, "REST_PORT"), pair("file", "8500"));
    // A flag replaces the environment's value without reading it: a bad one there is moot.
    let (out, l) = check_config(
        &["--port", "8300", "--bind", "::1"],
        &[("REST_PORT", "not-a-port"), ("ISOBOX_BIND", "0.0.0.0")],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(origin(&l, "REST_PORT"), pair("flag", "8300"));
    assert_eq!(origin(&l, "ISOBOX_BIND"), pair("flag", "::1"));
    // The global --languages-file and --rootfs are settings of the server too, where given.
    let (_, l) = check_config(
        &[
            "--languages-file",
            "/srv/langs.toml",
            "--rootfs",
            "/srv/root",
        ],
        &[("ISOBOX_LANGUAGES", "/env/langs.toml")],
    );
    assert_eq!(
        origin(&l, "ISOBOX_LANGUAGES"),
        pair("flag", "/srv/langs.toml")
    );
    assert_eq!(origin(&l, "ISOBOX_ROOTFS"), pair("flag", "/srv/root"));
    let (_, l) = check_config(&[], &[("ISOBOX_LANGUAGES", "/env/langs.toml")]);
    assert_eq!(
        origin(&l, "ISOBOX_LANGUAGES"),
        pair("env", "/env/langs.toml")
    );
}

/// Bad flags and files are refused before anything starts, with exit 2 and a message that
/// names the flag.
#[test]
fn bad_serve_flags_and_config_files_are_clear_errors() {
    let dir = TempDir::new("badflags");
    let not_toml = dir.file("bad.toml", "rest_port = = 1\n");
    let unknown = dir.file("unknown.toml", "rest_prot = 8000\n");
    let bad_value = dir.file("value.toml", "rest_port = \"eighty\"\n");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--port", "abc"], vec!["--port", "abc"]),
        (vec!["--port", "70000"], vec!["--port", "70000"]),
        (vec!["--grpc-port", "-1"], vec!["--grpc-port"]),
        (vec!["--bind", "localhost"], vec!["--bind", "localhost"]),
        (vec!["--backend", "magic"], vec!["--backend", "magic"]),
        (
            vec!["--config", "/nonexistent/isobox.toml"],
            vec!["--config", "cannot read /nonexistent/isobox.toml"],
        ),
        (vec!["--config", ""], vec!["--config"]),
        (
            vec!["--config", not_toml.to_str().unwrap()],
            vec!["not valid TOML"],
        ),
        (
            vec!["--config", unknown.to_str().unwrap()],
            vec!["unknown setting `rest_prot`"],
        ),
        (
            vec!["--config", bad_value.to_str().unwrap()],
            vec!["REST_PORT", "eighty"],
        ),
        // No authentication is refused on a public address, whoever gave the address.
        (vec!["--bind", "0.0.0.0"], vec!["AUTH_TYPE", "0.0.0.0"]),
    ];
    for cmd in ["serve", "check-config"] {
        for (args, says) in &cases {
            let out = isobox_cmd()
                .arg(cmd)
                .args(args)
                .env("ISOBOX_WARM_POOL", "0")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{cmd} {args:?}: {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            for s in says {
                assert!(err.contains(s), "{cmd} {args:?}: `{s}` not in {err}");
            }
        }
    }
}

/// `isobox serve --port P --grpc-port Q --bind IP --config FILE` listens where the flags say,
/// whatever the environment says, with the file's other settings.
#[test]
fn serve_listens_where_the_flags_say() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (rest, grpc) = (free(), free());
    let dir = TempDir::new("serveflags");
    let file = dir.file("isobox.toml", "rest_port = 1\nisobox_slots = 3\n");
    let (rest_s, grpc_s) = (rest.to_string(), grpc.to_string());
    let server = IsoboxProcess::start_with(
        "serve",
        &[
            ("ISOBOX_WARM_POOL", "0"),
            ("REST_PORT", "not-a-port"),
            ("GRPC_PORT", "9"),
        ],
        |c| {
            c.args([
                "--port",
                &rest_s,
                "--grpc-port",
                &grpc_s,
                "--bind",
                "127.0.0.1",
                "--config",
                file.to_str().unwrap(),
            ]);
        },
    );
    assert_eq!(server.url, format!("http://127.0.0.1:{rest}"));
    let health = curl(&[&format!("{}/health", server.url)]);
    assert!(health.contains("\"ok\""), "{health}");
    // The file's other setting applies.
    let metrics = curl(&[&format!("{}/metrics", server.url)]);
    assert!(metrics.contains("\nisobox_slots_capacity 3\n"), "{metrics}");
    // gRPC listens on its flag's port.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok(),
        "nothing on the gRPC port {grpc}"
    );
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}
