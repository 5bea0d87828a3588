//! What an operator watches, on a real `isobox serve`: `/metrics` named per Prometheus'
//! conventions (build info, HTTP latency by route template, process metrics), the Grafana
//! dashboard in `deploy/grafana/isobox.json` querying only metrics the server exports, and JSON
//! logs with flat fields.

use crate::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// `isobox serve` without a warm pool, `envs` on top.
fn serve(envs: &[(&str, &str)]) -> IsoboxProcess {
    let mut vars = vec![("ISOBOX_WARM_POOL", "0")];
    vars.extend_from_slice(envs);
    IsoboxProcess::start("serve", &vars)
}

/// Some traffic of every kind the metrics count: runs (ok and failing), a refusal, an
/// unknown path, a made-up method.
fn traffic(url: &str, unknown_path: &str) {
    for code in ["echo hi", "exit 3"] {
        let body = serde_json::json!({"language": "bash", "code": code}).to_string();
        let out = curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            &format!("{url}/api/v1/execute"),
        ]);
        assert!(out.contains("\"status\""), "{out}");
    }
    // The same program again: a dedup cache hit.
    let body = serde_json::json!({"language": "bash", "code": "echo hi"}).to_string();
    curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &format!("{url}/api/v1/execute"),
    ]);
    curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"language": "no-such-language", "code": ""}"#,
        &format!("{url}/api/v1/execute"),
    ]);
    curl(&[&format!("{url}/health")]);
    curl(&[&format!("{url}{unknown_path}")]);
    curl(&["-X", "BREW", &format!("{url}/health")]);
}

/// A `/metrics` text: `# TYPE` of each metric, and the samples (`name{labels}` -> value).
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<(String, String, f64)>,
    text: String,
}

impl Scrape {
    fn of(url: &str) -> Scrape {
        let text = curl(&[&format!("{url}/metrics")]);
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for l in text.lines() {
            if let Some(t) = l.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').expect("# TYPE name kind");
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "{name} declared twice"
                );
            } else if !l.starts_with('#') && !l.is_empty() {
                let (series, value) = l.rsplit_once(' ').expect("name value");
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number: {l}"));
                samples.push((name.to_string(), labels.to_string(), value));
            }
        }
        Scrape {
            types,
            samples,
            text,
        }
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
    }

    /// The one sample of `name` (no labels).
    fn single(&self, name: &str) -> f64 {
        self.value(name, "")
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.text))
    }

    fn has_samples(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn metrics_follow_the_prometheus_conventions() {
    let server = serve(&[]);
    let url = server.url.clone();
    let probe = format!("/{}", token("rawpath"));
    traffic(&url, &probe);
    let m = Scrape::of(&url);

    for (name, kind) in &m.types {
        assert_eq!(isobox_server::metrics::naming_problem(name, kind), None);
    }
    // Every sample belongs to a declared metric.
    for (name, labels, _) in &m.samples {
        let declared = m.types.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|base| m.types.get(base).is_some_and(|k| k == "histogram"))
            });
        assert!(declared, "{name}{{{labels}}} has no # TYPE");
    }
    // The names that broke the conventions are gone.
    for old in [
        "isobox_slots_total",
        "isobox_run_seconds",
        "isobox_queue_seconds",
    ] {
        assert!(!m.types.contains_key(old), "{old} is still exported");
    }
    assert_eq!(m.types["isobox_slots_capacity"], "gauge");
    assert!(m.single("isobox_slots_capacity") >= 1.0);
    assert_eq!(m.types["isobox_run_duration_seconds"], "histogram");
    assert_eq!(
        m.single("isobox_run_duration_seconds_count"),
        2.0,
        "two runs"
    );
    assert_eq!(m.types["isobox_queue_wait_duration_seconds"], "histogram");

    // What runs: version, commit, backend; always 1.
    let info: Vec<_> = m
        .samples
        .iter()
        .filter(|(n, _, _)| n == "isobox_build_info")
        .collect();
    assert_eq!(info.len(), 1, "{info:?}");
    let (_, labels, value) = info[0];
    assert_eq!(*value, 1.0);
    assert!(
        labels.starts_with(&format!(
            "version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{labels}"
    );
    assert!(labels.ends_with(",backend=\"native\""), "{labels}");
    assert!(!labels.contains("commit=\"\""), "{labels}");

    // HTTP latency by method, route template and status; unknown paths and methods do not
    // become labels.
    let h = "isobox_http_request_duration_seconds";
    assert_eq!(m.types[h], "histogram");
    let labels = "method=\"POST\",route=\"/api/v1/execute\",status=\"200\"";
    assert_eq!(
        m.value(&format!("{h}_count"), labels),
        Some(3.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.value(&format!("{h}_bucket"), &format!("{labels},le=\"+Inf\"")),
        Some(3.0)
    );
    assert!(m.value(&format!("{h}_sum"), labels).unwrap() > 0.0);
    assert_eq!(
        m.value(
            &format!("{h}_count"),
            "method=\"POST\",route=\"/api/v1/execute\",status=\"400\""
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            &format!("{h}_count"),
            "method=\"GET\",route=\"other\",status=\"404\""
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            &format!("{h}_count"),
            "method=\"other\",route=\"/health\",status=\"405\""
        ),
        Some(1.0),
        "{}",
        m.text
    );
    assert!(!m.text.contains(&probe[1..]), "a raw path became a label");
    assert!(!m.text.contains("BREW"), "a made-up method became a label");

    // This server process's own resources, from /proc.
    let (child_pid, start) = (server.child.id(), m.single("process_start_time_seconds"));
    assert!(
        start <= now() + 1.0 && start > now() - 600.0,
        "process_start_time_seconds {start} is not a moment ago"
    );
    assert!(m.single("process_cpu_seconds_total") > 0.0);
    let rss = m.single("process_resident_memory_bytes");
    let status = std::fs::read_to_string(format!("/proc/{child_pid}/status")).unwrap();
    let vm_rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        rss > vm_rss_kib * 1024.0 / 4.0 && rss < vm_rss_kib * 1024.0 * 4.0,
        "process_resident_memory_bytes {rss} is not the server's RSS ({vm_rss_kib} KiB)"
    );
    let fds = m.single("process_open_fds");
    let real_fds = std::fs::read_dir(format!("/proc/{child_pid}/fd"))
        .unwrap()
        .count() as f64;
    assert!(
        fds >= 3.0 && (fds - real_fds).abs() <= 8.0,
        "{fds} vs {real_fds}"
    );
    assert!(m.single("process_max_fds") >= fds);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// The metric names a PromQL expression reads: identifiers starting with `isobox_` or
/// `process_` (label names, functions, `$variables` and strings are not such names).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let (mut i, mut in_string) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            in_string = !in_string;
            i += 1;
        } else if !in_string && ident(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // `$__rate_interval`, `$instance`: Grafana variables.
            let variable = start > 0 && chars[start - 1] == '$';
            if !variable && (word.starts_with("isobox_") || word.starts_with("process_")) {
                out.insert(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every PromQL expression of the dashboard: its panels' (rows' nested ones too) and its
/// template variables' queries.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: a target without expr"));
                out.push((title.clone(), expr.to_string()));
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = match &v["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        };
        if v["type"] == "query" {
            out.push((format!("variable {}", v["name"]), q));
        }
    }
    out
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le, route) (rate(isobox_http_request_duration_seconds_bucket{instance=~\"$instance\", route=\"isobox_x\"}[$__rate_interval]))) / process_open_fds",
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "isobox_http_request_duration_seconds_bucket".to_string(),
            "process_open_fds".to_string()
        ])
    );
    assert_eq!(
        metric_names("label_values(isobox_build_info, instance)"),
        BTreeSet::from(["isobox_build_info".to_string()])
    );
}

#[test]
fn the_grafana_dashboard_queries_only_what_the_server_exports() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/isobox.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("deploy/grafana/isobox.json is JSON");
    assert_eq!(d["uid"], "isobox");
    assert!(d["title"].is_string());
    // The data source is chosen on import: a variable, used by every panel.
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus data source variable"
    );
    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 15, "{queries:?}");
    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{title}: `{expr}` reads no IsoBox metric"
        );
        used.extend(names);
    }
    // What the dashboard is for: requests and latency by route, runs by status, slots used
    // and capacity, the queue, the caches' hit ratio, process CPU and memory.
    for needed in [
        "isobox_http_request_duration_seconds_count",
        "isobox_http_request_duration_seconds_bucket",
        "isobox_executions_total",
        "isobox_run_duration_seconds_bucket",
        "isobox_slots_busy",
        "isobox_slots_capacity",
        "isobox_queue_depth",
        "isobox_queue_wait_duration_seconds_bucket",
        "isobox_cache_hits_total",
        "isobox_cache_misses_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
    for (title, expr) in &queries {
        if expr.contains("route") {
            assert!(
                expr.contains("isobox_http_request_duration_seconds"),
                "{title}: route is a label of the HTTP histogram"
            );
        }
    }
    for p in d["panels"].as_array().unwrap() {
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }

    // A real server, with traffic, exports every one of them.
    let server = serve(&[]);
    traffic(&server.url, "/nowhere");
    let m = Scrape::of(&server.url);
    let missing: Vec<&String> = used.iter().filter(|n| !m.has_samples(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which /metrics does not have:\n{}",
        m.text
    );
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn json_logs_have_flat_fields() {
    let server = serve(&[("ISOBOX_LOG_FORMAT", "json"), ("RUST_LOG", "info")]);
    let url = server.url.clone();
    curl(&["-H", "X-Request-Id: flat-logs-1", &format!("{url}/health")]);
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    let mut access = None;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for nested in ["fields", "span", "spans"] {
            assert!(v.get(nested).is_none(), "`{nested}` in {line}");
        }
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v[key].is_string(), "no {key}: {line}");
        }
        if v["request_id"] == "flat-logs-1" {
            access = Some(v);
        }
    }
    let a = access.unwrap_or_else(|| panic!("no access log line:\n{stderr}"));
    assert_eq!(a["target"], "isobox::http", "{a}");
    assert_eq!(a["method"], "GET", "{a}");
    assert_eq!(a["uri"], "/health", "{a}");
    assert_eq!(a["status"], 200, "{a}");
    assert!(a["ms"].is_u64(), "{a}");
}
