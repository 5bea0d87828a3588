//! The deployment files in `deploy/` (Dockerfile, docker-compose.yml, k8s/*.yaml) checked
//! against the code. Nothing here starts a container or talks to a cluster (this machine has
//! neither a registry nor Kubernetes): the files are parsed (every document of every
//! `.yml`/`.yaml` under `deploy/`) and what they say is compared with what IsoBox does.
//!
//! - Every setting a manifest gives IsoBox (Compose `environment`, Kubernetes `env`, the keys
//!   of the ConfigMaps and Secrets it loads with `envFrom`, the Dockerfile's `ENV`) is passed to
//!   the real binary's `isobox check-config`, which must accept the set and list each variable
//!   as read from the environment; secrets must not appear in its output.
//! - A hard-coded list of the settings the deployments rely on must be known to the server and
//!   be used by the Kubernetes manifests.
//! - Every command a manifest runs (`isobox serve`, `isobox worker`) is one the binary has.
//! - Ports, probes, Services, commands (serve/worker), HPA targets, shutdown grace periods,
//!   the Redis URL and the Redis bounds agree with each other and with the code's defaults.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

/// The settings the deployments rely on, each with a value that check-config must accept.
const SETTINGS: &[(&str, &str)] = &[
    ("ISOBOX_BIND", "0.0.0.0"),
    ("REST_PORT", "8000"),
    ("GRPC_PORT", "9000"),
    ("AUTH_TYPE", "apikey"),
    ("API_KEYS", "deploy-test-api-key"),
    ("ISOBOX_BACKEND", "native"),
    ("ISOBOX_SLOTS", "2"),
    ("ISOBOX_DOCKER_POOL", "2"),
    ("ISOBOX_DOCKER_INSTANCE", "isobox-api-0"),
    ("ISOBOX_LOG_FORMAT", "json"),
    ("RUST_LOG", "info"),
    ("DEDUP_ENABLED", "true"),
    ("DEDUP_CACHE_TTL", "3600"),
    ("ISOBOX_RATE_LIMIT", "60/min"),
    ("ISOBOX_SHUTDOWN_GRACE_MS", "20000"),
    ("REDIS_URL", "redis://127.0.0.1:6379"),
    ("ISOBOX_REDIS_TIMEOUT_MS", "200"),
    ("ISOBOX_JOB_RESULT_TTL", "3600"),
    ("ISOBOX_JOB_CLAIM_MS", "30000"),
    ("ISOBOX_JOB_WORKERS", "0"),
    ("ISOBOX_BATCH_MAX", "20"),
    ("ISOBOX_WEBHOOK_SECRET", "deploy-test-webhook-secret"),
    ("ISOBOX_WEBHOOK_ALLOW", "203.0.113.0/24"),
    ("ISOBOX_WEBHOOK_ATTEMPTS", "5"),
    ("ISOBOX_WEBHOOK_TIMEOUT_MS", "5000"),
];

/// Settings whose values are secret: they belong in a Secret (or an env file), never in a
/// ConfigMap, and check-config must not print them.
const SECRET_SETTINGS: &[&str] = &["API_KEYS", "ISOBOX_WEBHOOK_SECRET"];

/// What the Compose file must set for its nodes to work together.
const COMPOSE_SETTINGS: &[&str] = &["ISOBOX_BIND", "AUTH_TYPE", "API_KEYS", "REDIS_URL"];

/// The code's defaults that the manifests' checks fall back on.
const DEFAULT_REST_PORT: u64 = 8000;
const DEFAULT_GRPC_PORT: u64 = 9000;
const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Value given to variables set from the downward API (`fieldRef`) when running check-config.
const FIELD_REF_VALUE: &str = "isobox-test-pod-0";

// ---------------------------------------------------------------------------------------------
// Loading

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

fn yaml_paths(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_paths(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            out.push(p);
        }
    }
}

/// Every non-empty document of a YAML file, with `<<` merge keys applied.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let mut v = Value::deserialize(de)
            .unwrap_or_else(|e| panic!("{}: document {}: {e}", rel(path), i + 1));
        v.apply_merge()
            .unwrap_or_else(|e| panic!("{}: document {}: {e}", rel(path), i + 1));
        if !v.is_null() {
            docs.push(v);
        }
    }
    docs
}

/// One Kubernetes object and the file it came from.
struct Obj {
    file: String,
    v: Value,
}

impl Obj {
    fn kind(&self) -> &str {
        self.v["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.v["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> &str {
        self.v["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    }
    fn what(&self) -> String {
        format!("{} {} {}", self.file, self.kind(), self.name())
    }
}

struct Deploy {
    compose: Vec<(String, Value)>,
    k8s: Vec<Obj>,
}

impl Deploy {
    fn load() -> Deploy {
        let mut paths = Vec::new();
        yaml_paths(&deploy(), &mut paths);
        let mut d = Deploy {
            compose: Vec::new(),
            k8s: Vec::new(),
        };
        for p in paths {
            for v in documents(&p) {
                if v.get("services").is_some() {
                    d.compose.push((rel(&p), v));
                } else if v.get("apiVersion").is_some() && v.get("kind").is_some() {
                    d.k8s.push(Obj { file: rel(&p), v });
                } else {
                    panic!(
                        "{}: a document that is neither a Compose file nor a Kubernetes object",
                        rel(&p)
                    );
                }
            }
        }
        assert!(
            !d.compose.is_empty(),
            "no Compose file (a YAML document with `services`) under deploy/"
        );
        assert!(
            !d.k8s.is_empty(),
            "no Kubernetes object (a YAML document with apiVersion and kind) under deploy/"
        );
        d
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Obj> + 'a {
        self.k8s.iter().filter(move |o| o.kind() == kind)
    }

    fn find(&self, kind: &str, ns: &str, name: &str) -> Option<&Obj> {
        self.k8s
            .iter()
            .find(|o| o.kind() == kind && o.namespace() == ns && o.name() == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// A YAML scalar as the string Kubernetes or Compose would pass on.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s.iter().map(scalar).collect(),
        Value::Null => Vec::new(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        other => panic!("expected a list of strings, found {other:?}"),
    }
}

fn mapping_pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Mapping(m) => m.iter().map(|(k, v)| (scalar(k), v)).collect(),
        Value::Null => Vec::new(),
        other => panic!("expected a mapping, found {other:?}"),
    }
}

/// Is this image IsoBox's own (`isobox:TAG`, `registry/path/isobox:TAG`)?
fn is_isobox_image(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next() == Some("isobox")
}

/// The program and arguments a container of the image runs: the Dockerfile's ENTRYPOINT is
/// tini, its CMD `isobox serve`.
fn effective_argv(command: Vec<String>, args: Vec<String>) -> Vec<String> {
    if !command.is_empty() {
        command.into_iter().chain(args).collect()
    } else if !args.is_empty() {
        args
    } else {
        vec!["isobox".into(), "serve".into()]
    }
}

/// `serve` or `worker`: the IsoBox subcommand in an argv.
fn subcommand(argv: &[String]) -> Option<&'static str> {
    let has = |w: &str| argv.iter().any(|a| a == w);
    match (has("serve"), has("worker")) {
        (true, false) => Some("serve"),
        (false, true) => Some("worker"),
        _ => None,
    }
}

fn parse_u64(var: &str, v: &str, wher: &str) -> u64 {
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{wher}: {var}=`{v}` is not a whole number"))
}

/// The value of `${...}` / `$NAME` references in a Compose value, as `docker compose` would
/// produce it with the variables the user must set (`${X}`, `${X:?msg}`) set to a test value
/// and the optional ones (`${X:-default}`) left to their default.
fn interpolate(s: &str) -> String {
    fn placeholder(name: &str) -> String {
        format!(
            "deploy-test-{}",
            name.to_ascii_lowercase().replace('_', "-")
        )
    }
    fn ident_end(s: &str) -> usize {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('{') {
            let end = a
                .find('}')
                .unwrap_or_else(|| panic!("unclosed `${{` in `{s}`"));
            let expr = &a[..end];
            let n = ident_end(expr);
            let (name, op) = expr.split_at(n);
            let value = if let Some(d) = op.strip_prefix(":-").or_else(|| op.strip_prefix('-')) {
                interpolate(d)
            } else if let Some(alt) = op.strip_prefix(":+").or_else(|| op.strip_prefix('+')) {
                interpolate(alt)
            } else if op.is_empty() || op.starts_with(":?") || op.starts_with('?') {
                placeholder(name)
            } else {
                panic!("unsupported interpolation `${{{expr}}}` in `{s}`")
            };
            out.push_str(&value);
            rest = &a[end + 1..];
        } else {
            let n = ident_end(after);
            out.push_str(&placeholder(&after[..n]));
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    out
}

/// A Compose duration (`15s`, `1m30s`, `500ms`) in milliseconds.
fn compose_duration_ms(s: &str) -> u64 {
    let mut total = 0u64;
    let mut rest = s.trim();
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or_else(|| panic!("duration `{s}` lacks a unit"));
        let num: u64 = rest[..n].parse().unwrap();
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..u] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            "ms" => 1,
            other => panic!("unknown unit `{other}` in duration `{s}`"),
        };
        total += num * factor;
        rest = &rest[u..];
    }
    total
}

// ---------------------------------------------------------------------------------------------
// check-config

struct Listing {
    ok: bool,
    stdout: String,
    stderr: String,
    /// variable -> origin (`env`, `file`, `default`)
    vars: BTreeMap<String, String>,
}

/// Runs `isobox check-config` with exactly these variables in its environment.
fn check_config(env: &BTreeMap<String, String>) -> Listing {
    let out = Command::new(env!("CARGO_BIN_EXE_isobox"))
        .arg("check-config")
        .env_clear()
        .envs(env)
        .output()
        .expect("cannot run isobox check-config");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let vars = stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (var, origin) = (w.next()?, w.next()?);
            matches!(origin, "env" | "file" | "default")
                .then(|| (var.to_string(), origin.to_string()))
        })
        .collect();
    Listing {
        ok: out.status.success(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        vars,
    }
}

/// The problems check-config finds with one node's settings: it must accept them, list every
/// variable as read from the environment, and print no secret.
fn check_settings(what: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let l = check_config(env);
    let mut problems = Vec::new();
    if !l.ok {
        problems.push(format!(
            "{what}: isobox check-config refuses the settings: {}",
            l.stderr.trim()
        ));
        return problems;
    }
    for var in env.keys() {
        match l.vars.get(var).map(String::as_str) {
            Some("env") => {}
            Some(other) => problems.push(format!(
                "{what}: check-config lists {var} with origin `{other}`, not `env`"
            )),
            None => problems.push(format!(
                "{what}: {var} is not a setting the server knows (check-config does not list it)"
            )),
        }
    }
    for secret in SECRET_SETTINGS {
        if let Some(v) = env.get(*secret).filter(|v| !v.is_empty()) {
            if l.stdout.contains(v.as_str()) {
                problems.push(format!("{what}: check-config prints the value of {secret}"));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Kubernetes containers

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Literal,
    ConfigMap(String),
    Secret(String),
    FieldRef(String),
}

#[derive(Debug, Clone)]
struct EnvVal {
    value: String,
    source: Source,
}

/// One IsoBox container of a Deployment.
struct Node<'a> {
    deployment: &'a Obj,
    container: &'a Value,
    pod: &'a Value,
    env: BTreeMap<String, EnvVal>,
    argv: Vec<String>,
}

impl Node<'_> {
    fn what(&self) -> String {
        format!(
            "{} Deployment {} container {}",
            self.deployment.file,
            self.deployment.name(),
            self.container["name"].as_str().unwrap_or("?")
        )
    }
    fn component(&self) -> &str {
        self.deployment.v["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap_or("")
    }
    fn value(&self, var: &str) -> Option<&str> {
        self.env.get(var).map(|e| e.value.as_str())
    }
    fn plain_env(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    mapping_pairs(v)
        .into_iter()
        .map(|(k, v)| (k, scalar(v)))
        .collect()
}

/// The keys and values of a ConfigMap's `data` or a Secret's `stringData`.
fn config_data(d: &Deploy, kind: &str, ns: &str, name: &str, wher: &str) -> Vec<(String, String)> {
    let obj = d.find(kind, ns, name).unwrap_or_else(|| {
        panic!("{wher} refers to {kind} {ns}/{name}, which no manifest defines")
    });
    let field = if kind == "Secret" {
        assert!(
            obj.v.get("data").is_none(),
            "{}: use stringData (this test reads values from it)",
            obj.what()
        );
        "stringData"
    } else {
        "data"
    };
    mapping_pairs(&obj.v[field])
        .into_iter()
        .map(|(k, v)| {
            assert!(
                v.is_string(),
                "{}: the value of {k} must be a YAML string (Kubernetes refuses numbers and booleans there)",
                obj.what()
            );
            (k, scalar(v))
        })
        .collect()
}

/// The environment of a container as the kubelet builds it: `envFrom` first, `env` over it.
fn container_env(d: &Deploy, ns: &str, c: &Value, wher: &str) -> BTreeMap<String, EnvVal> {
    let mut env = BTreeMap::new();
    if let Some(from) = c["envFrom"].as_sequence() {
        for f in from {
            let prefix = f["prefix"].as_str().unwrap_or("");
            let (kind, name) = if let Some(n) = f["configMapRef"]["name"].as_str() {
                ("ConfigMap", n)
            } else if let Some(n) = f["secretRef"]["name"].as_str() {
                ("Secret", n)
            } else {
                panic!("{wher}: envFrom entry {f:?} names neither a ConfigMap nor a Secret")
            };
            for (k, v) in config_data(d, kind, ns, name, wher) {
                let source = if kind == "Secret" {
                    Source::Secret(name.to_string())
                } else {
                    Source::ConfigMap(name.to_string())
                };
                env.insert(format!("{prefix}{k}"), EnvVal { value: v, source });
            }
        }
    }
    if let Some(list) = c["env"].as_sequence() {
        for e in list {
            let name = e["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{wher}: env entry without a name"))
                .to_string();
            let val = if let Some(v) = e.get("value") {
                assert!(
                    v.is_string(),
                    "{wher}: env {name} must have a string value (Kubernetes refuses {v:?})"
                );
                EnvVal {
                    value: scalar(v),
                    source: Source::Literal,
                }
            } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                EnvVal {
                    value: FIELD_REF_VALUE.to_string(),
                    source: Source::FieldRef(path.to_string()),
                }
            } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                let (sname, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                let value = config_data(d, "Secret", ns, sname, wher)
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("{wher}: Secret {sname} has no key {key}"))
                    .1;
                EnvVal {
                    value,
                    source: Source::Secret(sname.to_string()),
                }
            } else if let Some(r) = e["valueFrom"].get("configMapKeyRef") {
                let (cname, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                let value = config_data(d, "ConfigMap", ns, cname, wher)
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("{wher}: ConfigMap {cname} has no key {key}"))
                    .1;
                EnvVal {
                    value,
                    source: Source::ConfigMap(cname.to_string()),
                }
            } else {
                panic!("{wher}: env {name} has neither a value nor a supported valueFrom")
            };
            env.insert(name, val);
        }
    }
    env
}

fn pod_containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod[*k].as_sequence())
        .flatten()
        .collect()
}

/// (name, containerPort) of every port a container declares.
fn declared_ports(c: &Value) -> Vec<(Option<String>, u64)> {
    c["ports"]
        .as_sequence()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["name"].as_str().map(str::to_string),
                        p["containerPort"].as_u64().unwrap_or_else(|| {
                            panic!("port without a numeric containerPort: {p:?}")
                        }),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A probe's or a Service's port (a number or a port name) as a declared containerPort.
fn resolve_port(declared: &[(Option<String>, u64)], port: &Value) -> Option<u64> {
    match port {
        Value::Number(n) => n.as_u64().filter(|n| declared.iter().any(|(_, p)| p == n)),
        Value::String(s) => declared
            .iter()
            .find(|(name, _)| name.as_deref() == Some(s.as_str()))
            .map(|(_, p)| *p),
        _ => None,
    }
}

fn isobox_nodes(d: &Deploy) -> Vec<Node<'_>> {
    let mut nodes = Vec::new();
    for dep in d.of_kind("Deployment") {
        let pod = &dep.v["spec"]["template"]["spec"];
        for c in pod_containers(pod) {
            let image = c["image"].as_str().unwrap_or("");
            if !is_isobox_image(image) {
                continue;
            }
            let wher = format!(
                "{} container {}",
                dep.what(),
                c["name"].as_str().unwrap_or("?")
            );
            let argv = effective_argv(strings(&c["command"]), strings(&c["args"]));
            // Init containers (e.g. `isobox image build`) prepare; they are no node.
            if subcommand(&argv).is_none() && is_init(pod, c) {
                continue;
            }
            nodes.push(Node {
                deployment: dep,
                container: c,
                pod,
                env: container_env(d, dep.namespace(), c, &wher),
                argv,
            });
        }
    }
    assert!(
        !nodes.is_empty(),
        "no Deployment runs an IsoBox container (image isobox:...)"
    );
    nodes
}

/// (kind, name, key) of every ConfigMap or Secret key a container of a non-IsoBox Deployment
/// takes with `configMapKeyRef` / `secretKeyRef`.
fn key_refs(d: &Deploy) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for dep in d.of_kind("Deployment") {
        for c in pod_containers(&dep.v["spec"]["template"]["spec"]) {
            if is_isobox_image(c["image"].as_str().unwrap_or("")) {
                continue;
            }
            for e in c["env"].as_sequence().into_iter().flatten() {
                for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")]
                {
                    let r = &e["valueFrom"][field];
                    if let (Some(n), Some(k)) = (r["name"].as_str(), r["key"].as_str()) {
                        out.insert((kind.to_string(), n.to_string(), k.to_string()));
                    }
                }
            }
        }
    }
    out
}

fn is_init(pod: &Value, c: &Value) -> bool {
    pod["initContainers"]
        .as_sequence()
        .is_some_and(|s| s.iter().any(|x| std::ptr::eq(x, c)))
}

// ---------------------------------------------------------------------------------------------
// Compose services

struct Service<'a> {
    file: &'a str,
    name: String,
    v: &'a Value,
}

impl Service<'_> {
    fn what(&self) -> String {
        format!("{} service {}", self.file, self.name)
    }
    fn is_isobox(&self) -> bool {
        self.v["image"].as_str().is_some_and(is_isobox_image)
            || (self.v.get("build").is_some() && self.v.get("image").is_none())
    }
    fn argv(&self) -> Vec<String> {
        effective_argv(strings(&self.v["entrypoint"]), strings(&self.v["command"]))
            .into_iter()
            .filter(|a| a != "/usr/bin/tini" && a != "--")
            .collect()
    }
    /// `environment` (a mapping or a `K=V` list) with `${...}` resolved.
    fn env(&self) -> BTreeMap<String, String> {
        assert!(
            self.v.get("env_file").is_none(),
            "{}: env_file is not read by this test; list the variables under `environment` \
             (with ${{VAR:?...}} for secrets)",
            self.what()
        );
        match &self.v["environment"] {
            Value::Sequence(list) => list
                .iter()
                .map(|e| {
                    let e = scalar(e);
                    let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
                    (k.to_string(), interpolate(v))
                })
                .collect(),
            other => mapping_pairs(other)
                .into_iter()
                .map(|(k, v)| (k, interpolate(&scalar(v))))
                .collect(),
        }
    }
    /// Container-side ports of `ports` (short `[IP:]HOST:CONTAINER[/proto]` or long syntax).
    fn container_ports(&self) -> Vec<u64> {
        self.v["ports"]
            .as_sequence()
            .map(|ps| {
                ps.iter()
                    .map(|p| match p {
                        Value::Mapping(_) => p["target"].as_u64().expect("ports: target"),
                        other => {
                            let s = scalar(other);
                            let last = s.rsplit(':').next().unwrap();
                            let last = last.split('/').next().unwrap();
                            last.parse().unwrap_or_else(|_| {
                                panic!("{}: cannot read the port `{s}`", self.what())
                            })
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn compose_services(d: &Deploy) -> Vec<Service<'_>> {
    let mut out = Vec::new();
    for (file, v) in &d.compose {
        for (name, s) in mapping_pairs(&v["services"]) {
            out.push(Service {
                file: file.as_str(),
                name,
                v: s,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// The Dockerfile's instructions: comments dropped, continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let path = deploy().join("Dockerfile");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let full = std::mem::take(&mut cur);
        let full = full.trim();
        if full.is_empty() {
            continue;
        }
        let (instr, rest) = full.split_once(char::is_whitespace).unwrap_or((full, ""));
        out.push((instr.to_ascii_uppercase(), rest.trim().to_string()));
    }
    out
}

fn dockerfile_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (_, rest) in dockerfile().into_iter().filter(|(i, _)| i == "ENV") {
        let (k, v) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("deploy/Dockerfile: write ENV as KEY=VALUE: `{rest}`"));
        env.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
    }
    env
}

// ---------------------------------------------------------------------------------------------
// Tests: settings against the server

#[test]
fn server_knows_every_deployment_setting() {
    let env: BTreeMap<String, String> = SETTINGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let problems = check_settings("the deployment settings list", &env);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn manifest_settings_are_known_to_the_server() {
    let d = Deploy::load();
    let mut problems = Vec::new();
    let mut consumed = BTreeSet::new();
    for n in isobox_nodes(&d) {
        consumed.extend(n.env.keys().cloned());
        problems.extend(check_settings(&n.what(), &n.plain_env()));
    }
    // Every key of a ConfigMap or Secret of IsoBox is a setting some node loads (and so was
    // checked above): a key nobody loads is a setting that silently does nothing. Keys that
    // other containers take one by one (Redis' password) are theirs, not settings.
    let referenced = key_refs(&d);
    for o in d
        .k8s
        .iter()
        .filter(|o| o.kind() == "ConfigMap" || o.kind() == "Secret")
    {
        for (k, _) in config_data(&d, o.kind(), o.namespace(), o.name(), &o.what()) {
            let by_others =
                referenced.contains(&(o.kind().to_string(), o.name().to_string(), k.clone()));
            if !consumed.contains(&k) && !by_others {
                problems.push(format!(
                    "{}: {k} is loaded by no IsoBox container",
                    o.what()
                ));
            }
        }
    }
    for s in compose_services(&d).iter().filter(|s| s.is_isobox()) {
        problems.extend(check_settings(&s.what(), &s.env()));
    }
    // The image's own ENV, with what a deployment must add to it (a non-loopback bind needs
    // an authentication method other than none).
    let mut env = dockerfile_env();
    env.remove("PATH");
    let image_vars: Vec<String> = env.keys().cloned().collect();
    env.insert("AUTH_TYPE".into(), "apikey".into());
    env.insert("API_KEYS".into(), "deploy-test-api-key".into());
    let l = check_config(&env);
    if !l.ok {
        problems.push(format!(
            "deploy/Dockerfile ENV: check-config refuses it: {}",
            l.stderr.trim()
        ));
    }
    for v in image_vars {
        if l.vars.get(&v).map(String::as_str) != Some("env") {
            problems.push(format!(
                "deploy/Dockerfile: ENV {v} is not a setting the server knows"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn manifests_set_the_settings_that_matter() {
    let d = Deploy::load();
    let nodes = isobox_nodes(&d);
    let k8s_names: BTreeSet<&str> = nodes
        .iter()
        .flat_map(|n| n.env.keys().map(String::as_str))
        .collect();
    let missing: Vec<_> = SETTINGS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !k8s_names.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/k8s sets none of {missing:?} for any IsoBox container"
    );
    for s in compose_services(&d).iter().filter(|s| s.is_isobox()) {
        let env = s.env();
        let missing: Vec<_> = COMPOSE_SETTINGS
            .iter()
            .filter(|k| !env.contains_key(**k))
            .collect();
        assert!(missing.is_empty(), "{} does not set {missing:?}", s.what());
    }
    for n in &nodes {
        // Secrets come from a Secret, never from a ConfigMap or a literal.
        for secret in SECRET_SETTINGS {
            match n.env.get(*secret).map(|e| &e.source) {
                Some(Source::Secret(_)) => {}
                Some(other) => panic!("{}: {secret} comes from {other:?}, not a Secret", n.what()),
                None => panic!("{}: {secret} is not set", n.what()),
            }
        }
        // A Redis URL with a password is a secret too.
        if let Some(e) = n.env.get("REDIS_URL") {
            let authority = e.value.split("://").nth(1).unwrap_or("").split('/').next();
            if authority.is_some_and(|a| a.contains('@')) {
                assert!(
                    matches!(e.source, Source::Secret(_)),
                    "{}: REDIS_URL carries credentials; load it from a Secret",
                    n.what()
                );
            }
        }
        // Each node its own docker instance label: the pod's name.
        let inst = n.env.get("ISOBOX_DOCKER_INSTANCE").map(|e| &e.source);
        assert_eq!(
            inst,
            Some(&Source::FieldRef("metadata.name".into())),
            "{}: ISOBOX_DOCKER_INSTANCE must come from the downward API (metadata.name)",
            n.what()
        );
        // Pods are reached on their pod IP, and then AUTH_TYPE=none is refused.
        let bind = n.value("ISOBOX_BIND").unwrap_or("127.0.0.1");
        assert!(
            bind == "0.0.0.0" || bind == "::",
            "{}: ISOBOX_BIND={bind}: probes and the Service reach the pod on its IP",
            n.what()
        );
        let auth = n.value("AUTH_TYPE").unwrap_or("none");
        assert!(!auth.contains("none"), "{}: AUTH_TYPE={auth}", n.what());
    }
    // A ConfigMap holds no secret.
    for o in d.of_kind("ConfigMap") {
        for (k, _) in config_data(&d, "ConfigMap", o.namespace(), o.name(), &o.what()) {
            assert!(
                !SECRET_SETTINGS.contains(&k.as_str()),
                "{}: {k} is a secret; put it in a Secret",
                o.what()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests: Kubernetes

#[test]
fn k8s_objects_are_labelled_and_namespaced_consistently() {
    let d = Deploy::load();
    let namespaces: BTreeSet<&str> = d.of_kind("Namespace").map(|o| o.name()).collect();
    assert!(!namespaces.is_empty(), "deploy/k8s declares no Namespace");
    for o in &d.k8s {
        let l = labels(&o.v["metadata"]["labels"]);
        assert_eq!(
            l.get("app.kubernetes.io/name").map(String::as_str),
            Some("isobox"),
            "{}: label app.kubernetes.io/name must be isobox",
            o.what()
        );
        if o.kind() != "Namespace" {
            assert!(
                namespaces.contains(o.namespace()),
                "{}: namespace {} is not declared by a Namespace manifest",
                o.what(),
                o.namespace()
            );
        }
    }
    for dep in d.of_kind("Deployment") {
        let sel = labels(&dep.v["spec"]["selector"]["matchLabels"]);
        let pod = labels(&dep.v["spec"]["template"]["metadata"]["labels"]);
        let own = labels(&dep.v["metadata"]["labels"]);
        for (k, v) in &sel {
            assert_eq!(
                pod.get(k),
                Some(v),
                "{}: selector {k}={v} does not match the pod template",
                dep.what()
            );
        }
        let comp = pod
            .get("app.kubernetes.io/component")
            .unwrap_or_else(|| panic!("{}: pods lack app.kubernetes.io/component", dep.what()));
        assert!(
            ["api", "worker", "redis"].contains(&comp.as_str()),
            "{}: component {comp} is not api, worker or redis",
            dep.what()
        );
        assert_eq!(
            own.get("app.kubernetes.io/component"),
            Some(comp),
            "{}: the Deployment's component label differs from its pods'",
            dep.what()
        );
        assert_eq!(
            sel.get("app.kubernetes.io/component"),
            Some(comp),
            "{}: the selector must include the component (else api and worker pods mix)",
            dep.what()
        );
    }
}

#[test]
fn k8s_commands_match_components() {
    let d = Deploy::load();
    let mut seen = BTreeSet::new();
    for n in isobox_nodes(&d) {
        let want = match n.component() {
            "api" => "serve",
            "worker" => "worker",
            other => panic!(
                "{}: IsoBox pods must be api or worker, not `{other}`",
                n.what()
            ),
        };
        assert_eq!(
            subcommand(&n.argv),
            Some(want),
            "{}: a {} pod must run `isobox {want}`, runs {:?}",
            n.what(),
            n.component(),
            n.argv
        );
        seen.insert(want);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["serve", "worker"]),
        "deploy/k8s needs both API nodes and workers"
    );
}

/// Every command a manifest runs is one the binary has (`isobox serve`, `isobox worker`).
#[test]
fn manifest_commands_exist_in_the_binary() {
    let d = Deploy::load();
    let mut argvs: BTreeSet<Vec<String>> = isobox_nodes(&d).into_iter().map(|n| n.argv).collect();
    argvs.extend(
        compose_services(&d)
            .iter()
            .filter(|s| s.is_isobox())
            .map(|s| s.argv()),
    );
    argvs.insert(effective_argv(Vec::new(), Vec::new()));
    for argv in argvs {
        assert_eq!(
            argv.first().map(String::as_str),
            Some("isobox"),
            "a manifest runs {argv:?}, not isobox"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_isobox"))
            .args(&argv[1..])
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "a manifest runs {argv:?}, which the binary does not have: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn k8s_ports_and_probes_agree_with_the_server() {
    let d = Deploy::load();
    for n in isobox_nodes(&d) {
        let declared = declared_ports(n.container);
        let ports: Vec<u64> = declared.iter().map(|(_, p)| *p).collect();
        let rest = n
            .value("REST_PORT")
            .map(|v| parse_u64("REST_PORT", v, &n.what()))
            .unwrap_or(DEFAULT_REST_PORT);
        assert_eq!(rest, 8000, "{}: REST_PORT must stay 8000", n.what());
        assert!(
            ports.contains(&rest),
            "{}: declares {ports:?}, not the REST port {rest}",
            n.what()
        );
        if subcommand(&n.argv) == Some("serve") {
            let grpc = n
                .value("GRPC_PORT")
                .map(|v| parse_u64("GRPC_PORT", v, &n.what()))
                .unwrap_or(DEFAULT_GRPC_PORT);
            assert_eq!(grpc, 9000, "{}: GRPC_PORT must stay 9000", n.what());
            assert!(
                ports.contains(&grpc),
                "{}: declares {ports:?}, not the gRPC port {grpc}",
                n.what()
            );
        } else {
            assert!(
                !ports.contains(&9000),
                "{}: a worker serves no gRPC; do not declare 9000",
                n.what()
            );
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            let h = &n.container[probe]["httpGet"];
            assert!(
                h.is_mapping(),
                "{}: needs an httpGet {probe} on /health",
                n.what()
            );
        }
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let h = &n.container[probe]["httpGet"];
            if !h.is_mapping() {
                continue;
            }
            assert_eq!(
                h["path"].as_str(),
                Some("/health"),
                "{}: {probe} must GET /health",
                n.what()
            );
            assert_eq!(
                resolve_port(&declared, &h["port"]),
                Some(rest),
                "{}: {probe} port {:?} is not the declared REST port",
                n.what(),
                h["port"]
            );
            let scheme = h["scheme"].as_str().unwrap_or("HTTP");
            let tls = n.value("TLS_CERT").is_some_and(|v| !v.is_empty());
            assert_eq!(
                scheme == "HTTPS",
                tls,
                "{}: {probe} scheme {scheme} does not match TLS_CERT",
                n.what()
            );
        }
    }
    // Every probe of every container (Redis too) targets a port its container declares.
    for dep in d.of_kind("Deployment") {
        for c in pod_containers(&dep.v["spec"]["template"]["spec"]) {
            let declared = declared_ports(c);
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                for handler in ["httpGet", "tcpSocket", "grpc"] {
                    let port = &c[probe][handler]["port"];
                    if port.is_null() {
                        continue;
                    }
                    assert!(
                        resolve_port(&declared, port).is_some(),
                        "{}: {probe}.{handler}.port {port:?} is no declared containerPort",
                        dep.what()
                    );
                }
            }
        }
    }
}

#[test]
fn k8s_services_select_pods_and_target_declared_ports() {
    let d = Deploy::load();
    let mut api_ports = BTreeSet::new();
    for svc in d.of_kind("Service") {
        let sel = labels(&svc.v["spec"]["selector"]);
        assert!(!sel.is_empty(), "{}: no selector", svc.what());
        let selected: Vec<&Obj> = d
            .of_kind("Deployment")
            .filter(|dep| dep.namespace() == svc.namespace())
            .filter(|dep| {
                let pod = labels(&dep.v["spec"]["template"]["metadata"]["labels"]);
                sel.iter().all(|(k, v)| pod.get(k) == Some(v))
            })
            .collect();
        assert!(
            !selected.is_empty(),
            "{}: the selector {sel:?} matches no Deployment's pods",
            svc.what()
        );
        let ports = svc.v["spec"]["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{}: no ports", svc.what()));
        for p in ports {
            let target = p.get("targetPort").unwrap_or(&p["port"]);
            for dep in &selected {
                let declared: Vec<_> = pod_containers(&dep.v["spec"]["template"]["spec"])
                    .into_iter()
                    .flat_map(declared_ports)
                    .collect();
                let resolved = resolve_port(&declared, target).unwrap_or_else(|| {
                    panic!(
                        "{}: targetPort {target:?} is no containerPort of {}",
                        svc.what(),
                        dep.what()
                    )
                });
                if sel.get("app.kubernetes.io/component").map(String::as_str) == Some("api") {
                    api_ports.insert((p["name"].as_str().unwrap_or("").to_string(), resolved));
                }
            }
        }
    }
    for want in [("http".to_string(), 8000), ("grpc".to_string(), 9000)] {
        assert!(
            api_ports.contains(&want),
            "no Service exposes the API pods' port {} as `{}` (has {api_ports:?})",
            want.1,
            want.0
        );
    }
}

#[test]
fn k8s_hpas_target_existing_deployments() {
    let d = Deploy::load();
    let mut targets = BTreeSet::new();
    for hpa in d.of_kind("HorizontalPodAutoscaler") {
        assert_eq!(
            hpa.v["apiVersion"].as_str(),
            Some("autoscaling/v2"),
            "{}",
            hpa.what()
        );
        let r = &hpa.v["spec"]["scaleTargetRef"];
        assert_eq!(r["kind"].as_str(), Some("Deployment"), "{}", hpa.what());
        let name = r["name"].as_str().unwrap_or("");
        let dep = d
            .find("Deployment", hpa.namespace(), name)
            .unwrap_or_else(|| {
                panic!(
                    "{}: scales Deployment {name}, which does not exist",
                    hpa.what()
                )
            });
        let metrics = hpa.v["spec"]["metrics"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for m in &metrics {
            let res = m["resource"]["name"].as_str();
            if m["type"].as_str() == Some("Resource") && res == Some("cpu") {
                // Utilization is relative to the request: every container needs one.
                for c in pod_containers(&dep.v["spec"]["template"]["spec"]) {
                    assert!(
                        !c["resources"]["requests"]["cpu"].is_null(),
                        "{}: scales on CPU but {} has no CPU request",
                        hpa.what(),
                        dep.what()
                    );
                }
            }
        }
        let component = labels(&dep.v["spec"]["template"]["metadata"]["labels"])
            .get("app.kubernetes.io/component")
            .cloned()
            .unwrap_or_default();
        targets.insert(component);
    }
    for c in ["api", "worker"] {
        assert!(targets.contains(c), "no HPA scales the {c} Deployment");
    }
}

#[test]
fn k8s_termination_grace_covers_the_shutdown_grace() {
    let d = Deploy::load();
    for n in isobox_nodes(&d) {
        let grace_ms = n
            .value("ISOBOX_SHUTDOWN_GRACE_MS")
            .map(|v| parse_u64("ISOBOX_SHUTDOWN_GRACE_MS", v, &n.what()))
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS);
        let pre_stop = strings(&n.container["lifecycle"]["preStop"]["exec"]["command"]);
        let pre_stop_ms = match pre_stop.as_slice() {
            [] => 0,
            [sleep, secs] if sleep == "sleep" => parse_u64("preStop sleep", secs, &n.what()) * 1000,
            other => panic!("{}: cannot tell how long preStop {other:?} takes", n.what()),
        } + n.container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0)
            * 1000;
        let termination_s = n.pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        assert!(
            termination_s * 1000 > pre_stop_ms + grace_ms,
            "{}: terminationGracePeriodSeconds {termination_s} s must exceed the preStop pause \
             ({pre_stop_ms} ms) plus ISOBOX_SHUTDOWN_GRACE_MS ({grace_ms} ms)",
            n.what()
        );
    }
}

#[test]
fn k8s_redis_url_points_at_the_redis_service() {
    let d = Deploy::load();
    for n in isobox_nodes(&d) {
        let url = n
            .value("REDIS_URL")
            .unwrap_or_else(|| panic!("{}: REDIS_URL is not set", n.what()));
        let (host, port) = redis_host_port(url, &n.what());
        // `name`, `name.ns`, `name.ns.svc[.cluster.local]`
        let mut parts = host.split('.');
        let svc_name = parts.next().unwrap();
        let ns = parts.next().unwrap_or(n.deployment.namespace());
        let svc = d
            .find("Service", ns, svc_name)
            .unwrap_or_else(|| panic!("{}: REDIS_URL names {host}, which no Service is", n.what()));
        let ports = svc.v["spec"]["ports"].as_sequence().unwrap();
        assert!(
            ports.iter().any(|p| p["port"].as_u64() == Some(port)),
            "{}: Service {svc_name} has no port {port}",
            n.what()
        );
    }
    for dep in d.of_kind("Deployment") {
        for c in pod_containers(&dep.v["spec"]["template"]["spec"]) {
            let image = c["image"].as_str().unwrap_or("");
            if image.starts_with("redis") {
                let argv: Vec<String> = strings(&c["command"])
                    .into_iter()
                    .chain(strings(&c["args"]))
                    .collect();
                assert_redis_bounded(&argv, &dep.what());
            }
        }
    }
}

fn redis_host_port(url: &str, wher: &str) -> (String, u64) {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .unwrap_or_else(|| panic!("{wher}: REDIS_URL `{url}` is not redis:// or rediss://"));
    let authority = rest.split('/').next().unwrap();
    let hostport = authority.rsplit('@').next().unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "6379"));
    (host.to_string(), parse_u64("REDIS_URL port", port, wher))
}

fn assert_redis_bounded(argv: &[String], wher: &str) {
    let after = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .map(String::as_str)
    };
    assert!(
        after("--maxmemory").is_some_and(|v| v != "0"),
        "{wher}: Redis needs --maxmemory (the shared cache is bounded by Redis itself): {argv:?}"
    );
    assert_eq!(
        after("--maxmemory-policy"),
        Some("volatile-lru"),
        "{wher}: Redis needs --maxmemory-policy volatile-lru (never evict the job stream): {argv:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests: Compose

#[test]
fn compose_ports_healthchecks_and_commands() {
    let d = Deploy::load();
    let services = compose_services(&d);
    let mut seen = BTreeSet::new();
    for s in services.iter().filter(|s| s.is_isobox()) {
        let env = s.env();
        let argv = s.argv();
        let sub = subcommand(&argv)
            .unwrap_or_else(|| panic!("{}: runs {argv:?}, neither serve nor worker", s.what()));
        if s.name.contains("worker") {
            assert_eq!(sub, "worker", "{}: runs {argv:?}", s.what());
        } else if s.name.contains("api") {
            assert_eq!(sub, "serve", "{}: runs {argv:?}", s.what());
        }
        seen.insert(sub);
        let rest = env
            .get("REST_PORT")
            .map(|v| parse_u64("REST_PORT", v, &s.what()))
            .unwrap_or(DEFAULT_REST_PORT);
        assert_eq!(rest, 8000, "{}: REST_PORT must stay 8000", s.what());
        let hc = strings(&s.v["healthcheck"]["test"]).join(" ");
        assert!(
            hc.contains(&format!(":{rest}/health")),
            "{}: the healthcheck must GET /health on the REST port {rest}: `{hc}`",
            s.what()
        );
        let bind = env
            .get("ISOBOX_BIND")
            .map(String::as_str)
            .unwrap_or("127.0.0.1");
        assert!(
            bind == "0.0.0.0" || bind == "::",
            "{}: ISOBOX_BIND={bind} is not reachable from other containers",
            s.what()
        );
        let grace_ms = env
            .get("ISOBOX_SHUTDOWN_GRACE_MS")
            .map(|v| parse_u64("ISOBOX_SHUTDOWN_GRACE_MS", v, &s.what()))
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS);
        let stop_ms = s.v["stop_grace_period"]
            .as_str()
            .map(compose_duration_ms)
            .unwrap_or(10_000);
        assert!(
            stop_ms > grace_ms,
            "{}: stop_grace_period ({stop_ms} ms) must exceed ISOBOX_SHUTDOWN_GRACE_MS ({grace_ms} ms)",
            s.what()
        );
        let ports = s.container_ports();
        if sub == "serve" {
            for want in [rest, DEFAULT_GRPC_PORT] {
                assert!(
                    ports.contains(&want),
                    "{}: publishes {ports:?}, not {want}",
                    s.what()
                );
            }
        }
        // REDIS_URL names a service of this file.
        let url = env
            .get("REDIS_URL")
            .unwrap_or_else(|| panic!("{}: REDIS_URL is not set", s.what()));
        let (host, _) = redis_host_port(url, &s.what());
        assert!(
            services.iter().any(|o| o.file == s.file && o.name == host),
            "{}: REDIS_URL names {host}, which is no service of {}",
            s.what(),
            s.file
        );
    }
    assert_eq!(
        seen,
        BTreeSet::from(["serve", "worker"]),
        "the Compose file needs an API node and workers"
    );
    let workers = services
        .iter()
        .find(|s| s.is_isobox() && subcommand(&s.argv()) == Some("worker"))
        .unwrap();
    assert!(
        workers.v["deploy"]["replicas"].as_u64().unwrap_or(1) >= 2,
        "{}: run at least 2 worker replicas",
        workers.what()
    );
}

#[test]
fn compose_redis_is_bounded_and_ephemeral() {
    let d = Deploy::load();
    let redis: Vec<_> = compose_services(&d)
        .into_iter()
        .filter(|s| {
            s.v["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("redis"))
        })
        .collect();
    assert!(!redis.is_empty(), "the Compose file has no Redis service");
    for r in redis {
        let argv = strings(&r.v["command"]);
        assert_redis_bounded(&argv, &r.what());
        let hc = strings(&r.v["healthcheck"]["test"]).join(" ");
        assert!(hc.contains("ping"), "{}: healthcheck `{hc}`", r.what());
    }
}

// ---------------------------------------------------------------------------------------------
// Tests: Dockerfile

#[test]
fn dockerfile_declares_ports_healthcheck_and_command() {
    let instrs = dockerfile();
    let all = |name: &str| -> Vec<&str> {
        instrs
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let exposed: BTreeSet<u64> = all("EXPOSE")
        .iter()
        .flat_map(|r| r.split_whitespace())
        .map(|p| p.split('/').next().unwrap().parse().expect("EXPOSE port"))
        .collect();
    for p in [DEFAULT_REST_PORT, DEFAULT_GRPC_PORT] {
        assert!(
            exposed.contains(&p),
            "deploy/Dockerfile does not EXPOSE {p}"
        );
    }
    let hc = all("HEALTHCHECK");
    assert_eq!(hc.len(), 1, "deploy/Dockerfile needs one HEALTHCHECK");
    assert!(
        hc[0].contains("/health") && hc[0].contains("CMD"),
        "the HEALTHCHECK must request /health: `{}`",
        hc[0]
    );
    assert!(
        hc[0].contains("REST_PORT:-8000") || hc[0].contains(":8000/health"),
        "the HEALTHCHECK must use the REST port: `{}`",
        hc[0]
    );
    let from = all("FROM");
    assert!(
        from.iter().any(|f| f.starts_with("rust:1-bookworm")),
        "build stage: {from:?}"
    );
    assert!(
        from.last()
            .is_some_and(|f| f.starts_with("debian:bookworm-slim")),
        "runtime stage: {from:?}"
    );
    assert!(
        all("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "the build stage must run `cargo build --release --locked`"
    );
    let entry = all("ENTRYPOINT");
    assert!(
        entry.last().is_some_and(|e| e.contains("tini")),
        "ENTRYPOINT must be tini: {entry:?}"
    );
    let cmd = all("CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd.last().expect("no CMD")).expect("CMD as JSON");
    assert_eq!(cmd, ["isobox", "serve"]);
    let env = dockerfile_env();
    assert_eq!(
        env.get("ISOBOX_BIND").map(String::as_str),
        Some("0.0.0.0"),
        "deploy/Dockerfile must set ENV ISOBOX_BIND=0.0.0.0"
    );
    // Both binaries reach the runtime stage.
    let copies = all("COPY").join("\n");
    for bin in ["isobox", "isobox-runner"] {
        assert!(
            copies
                .split_whitespace()
                .any(|w| w.ends_with(&format!("/{bin}"))),
            "the runtime stage does not copy {bin}"
        );
    }
    // The toolchains of the built-in language table.
    let runs = all("RUN").join("\n");
    for pkg in [
        "python3",
        "nodejs",
        "default-jdk-headless",
        "gcc",
        "g++",
        "rustc",
        "golang-go",
        "ruby",
        "php-cli",
        "bash",
        "lua5.4",
        "ca-certificates",
        "tini",
    ] {
        assert!(
            runs.split_whitespace().any(|w| w == pkg),
            "the runtime stage does not install {pkg}"
        );
    }
    // Every path the build stage copies from the context exists in the repository.
    for c in all("COPY") {
        if c.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = c
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "deploy/Dockerfile copies {src}, which the repository lacks"
            );
        }
    }
}

#[test]
fn interpolation_follows_compose() {
    assert_eq!(interpolate("redis://redis:6379"), "redis://redis:6379");
    assert_eq!(interpolate("${A:-x}/${B-y}"), "x/y");
    assert_eq!(interpolate("${API_KEYS:?set it}"), "deploy-test-api-keys");
    assert_eq!(interpolate("$$HOME"), "$HOME");
    assert_eq!(compose_duration_ms("1m30s"), 90_000);
    assert_eq!(compose_duration_ms("500ms"), 500);
}

// ---------------------------------------------------------------------------------------------
// Tests: safe as shipped (node pool, network policies, disruption budgets, Redis' password)

/// Does a Kubernetes label selector (`matchLabels`, `matchExpressions`) select these labels?
/// An empty selector selects everything, as in a NetworkPolicy's `podSelector: {}`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let ok_labels = labels_of(&selector["matchLabels"])
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let ok_exprs = selector["matchExpressions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values = strings(&e["values"]);
            let have = labels.get(key);
            match e["operator"].as_str().unwrap_or("") {
                "In" => have.is_some_and(|v| values.contains(v)),
                "NotIn" => !have.is_some_and(|v| values.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                other => panic!("unknown selector operator {other}"),
            }
        });
    ok_labels && ok_exprs
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    if v.is_null() {
        BTreeMap::new()
    } else {
        labels(v)
    }
}

fn pod_labels(dep: &Obj) -> BTreeMap<String, String> {
    labels(&dep.v["spec"]["template"]["metadata"]["labels"])
}

fn is_redis(dep: &Obj) -> bool {
    pod_containers(&dep.v["spec"]["template"]["spec"])
        .iter()
        .any(|c| c["image"].as_str().is_some_and(|i| i.starts_with("redis")))
}

/// The IsoBox Deployments (api, worker) and the Redis one.
fn isobox_deployments(d: &Deploy) -> Vec<&Obj> {
    d.of_kind("Deployment")
        .filter(|dep| {
            pod_containers(&dep.v["spec"]["template"]["spec"])
                .iter()
                .any(|c| is_isobox_image(c["image"].as_str().unwrap_or("")))
        })
        .collect()
}

fn redis_deployment(d: &Deploy) -> &Obj {
    let r: Vec<&Obj> = d
        .of_kind("Deployment")
        .filter(|dep| is_redis(dep))
        .collect();
    assert_eq!(r.len(), 1, "deploy/k8s must have one Redis Deployment");
    r[0]
}

/// The NetworkPolicies that select a Deployment's pods.
fn policies_for<'a>(d: &'a Deploy, dep: &Obj) -> Vec<&'a Obj> {
    let pod = pod_labels(dep);
    d.of_kind("NetworkPolicy")
        .filter(|p| p.namespace() == dep.namespace() && selects(&p.v["spec"]["podSelector"], &pod))
        .collect()
}

fn policy_types(p: &Obj) -> Vec<String> {
    strings(&p.v["spec"]["policyTypes"])
}

/// (protocol, port) of a NetworkPolicy rule's `ports`; none listed means every port.
fn rule_ports(rule: &Value, wher: &str) -> Vec<(String, u64)> {
    let ports = rule["ports"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{wher}: a rule without `ports` allows every port"));
    ports
        .iter()
        .map(|p| {
            (
                p["protocol"].as_str().unwrap_or("TCP").to_string(),
                p["port"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{wher}: give ports as numbers: {p:?}")),
            )
        })
        .collect()
}

#[test]
fn k8s_sandbox_pods_run_only_on_the_dedicated_tainted_pool() {
    let d = Deploy::load();
    let nodes = isobox_deployments(&d);
    assert!(nodes.len() >= 2, "expected the api and worker Deployments");
    let mut pool: Option<BTreeMap<String, String>> = None;
    for dep in &nodes {
        let spec = &dep.v["spec"]["template"]["spec"];
        let sel = labels_of(&spec["nodeSelector"]);
        assert!(
            !sel.is_empty(),
            "{}: runs untrusted code (privileged) but has no nodeSelector for the dedicated pool",
            dep.what()
        );
        // Every label of the pool is also a taint the pods tolerate, so that nothing else lands
        // on those nodes (and these pods nowhere else).
        let tolerations = spec["tolerations"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for (k, v) in &sel {
            let tolerated = tolerations.iter().any(|t| {
                t["key"].as_str() == Some(k)
                    && t["operator"].as_str().unwrap_or("Equal") == "Equal"
                    && t["value"].as_str() == Some(v)
                    && t["effect"].as_str() == Some("NoSchedule")
            });
            assert!(
                tolerated,
                "{}: nodeSelector {k}={v} without a toleration of the taint {k}={v}:NoSchedule",
                dep.what()
            );
        }
        // Tolerations of nothing but the pool's taints: an `operator: Exists` without a key
        // would tolerate every taint of every node.
        for t in &tolerations {
            let key = t["key"].as_str().unwrap_or("");
            assert!(
                sel.contains_key(key),
                "{}: toleration {t:?} is not one of the pool's taints",
                dep.what()
            );
        }
        match &pool {
            None => pool = Some(sel),
            Some(p) => assert_eq!(p, &sel, "{}: another pool than the other nodes", dep.what()),
        }
    }
    // Privileged pods only on that pool; Redis (not privileged) is kept off it.
    for dep in d.of_kind("Deployment") {
        let spec = &dep.v["spec"]["template"]["spec"];
        let privileged = pod_containers(spec)
            .iter()
            .any(|c| c["securityContext"]["privileged"].as_bool() == Some(true));
        if privileged {
            assert!(
                nodes.iter().any(|n| std::ptr::eq(*n, dep)),
                "{}: a privileged Deployment that is not an IsoBox node",
                dep.what()
            );
        }
    }
    let redis = redis_deployment(&d);
    let pool = pool.unwrap();
    for t in redis.v["spec"]["template"]["spec"]["tolerations"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        assert!(
            !pool.contains_key(t["key"].as_str().unwrap_or("")) && t.get("key").is_some(),
            "{}: Redis must not tolerate the sandbox pool's taint: {t:?}",
            redis.what()
        );
    }
}

#[test]
fn k8s_redis_requires_a_password_from_a_secret_that_the_nodes_use() {
    let d = Deploy::load();
    let redis = redis_deployment(&d);
    let c = pod_containers(&redis.v["spec"]["template"]["spec"])
        .into_iter()
        .find(|c| c["image"].as_str().is_some_and(|i| i.starts_with("redis")))
        .unwrap();
    let argv: Vec<String> = strings(&c["command"])
        .into_iter()
        .chain(strings(&c["args"]))
        .collect();
    let pass_arg = argv
        .iter()
        .position(|a| a == "--requirepass")
        .and_then(|i| argv.get(i + 1))
        .unwrap_or_else(|| {
            panic!(
                "{}: Redis runs without --requirepass: {argv:?}",
                redis.what()
            )
        });
    // `$(VAR)`: Kubernetes substitutes it from the container's env, which must come from a
    // Secret (never a literal in the manifest).
    let var = pass_arg
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| {
            panic!(
                "{}: --requirepass {pass_arg}: use $(VAR) from a Secret",
                redis.what()
            )
        });
    let env = container_env(&d, redis.namespace(), c, &redis.what());
    let password = env.get(var).unwrap_or_else(|| {
        panic!(
            "{}: --requirepass $({var}) but {var} is not set",
            redis.what()
        )
    });
    let secret = match &password.source {
        Source::Secret(s) => s.clone(),
        other => panic!("{}: {var} comes from {other:?}, not a Secret", redis.what()),
    };
    assert!(
        !password.value.is_empty(),
        "{}: empty Redis password",
        redis.what()
    );
    // The readiness probe must prove the password works (redis-cli exits 0 on NOAUTH too).
    let probe = strings(&c["readinessProbe"]["exec"]["command"]).join(" ");
    assert!(
        probe.contains("PONG"),
        "{}: the readiness probe must check for PONG: `{probe}`",
        redis.what()
    );
    assert!(
        matches!(env.get("REDISCLI_AUTH").map(|e| &e.source), Some(Source::Secret(s)) if *s == secret),
        "{}: the probe's redis-cli needs REDISCLI_AUTH from Secret {secret}",
        redis.what()
    );
    // Every node reaches Redis with that password, its URL coming from a Secret.
    for n in isobox_nodes(&d) {
        let url = n
            .env
            .get("REDIS_URL")
            .unwrap_or_else(|| panic!("{}: no REDIS_URL", n.what()));
        assert!(
            matches!(url.source, Source::Secret(_)),
            "{}: REDIS_URL carries the password; it must come from a Secret",
            n.what()
        );
        let authority = url
            .value
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap();
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u).unwrap_or("");
        let pass = userinfo.split_once(':').map(|(_, p)| p).unwrap_or(userinfo);
        assert_eq!(
            pass,
            password.value,
            "{}: REDIS_URL's password differs from Redis' --requirepass (Secret {secret})",
            n.what()
        );
    }
}

#[test]
fn k8s_network_policies_deny_by_default_and_isolate_redis() {
    let d = Deploy::load();
    let ns = redis_deployment(&d).namespace().to_string();
    // A default deny for both directions over every pod of the namespace.
    let deny = d.of_kind("NetworkPolicy").any(|p| {
        p.namespace() == ns
            && selects(&p.v["spec"]["podSelector"], &BTreeMap::new())
            && labels_of(&p.v["spec"]["podSelector"]["matchLabels"]).is_empty()
            && policy_types(p) == ["Ingress", "Egress"]
            && p.v["spec"]["ingress"].is_null()
            && p.v["spec"]["egress"].is_null()
    });
    assert!(deny, "deploy/k8s needs a default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress, no rules)");

    let redis = redis_deployment(&d);
    let redis_pods = pod_labels(redis);
    let nodes = isobox_deployments(&d);
    let is_node_peer = |peer: &Value| {
        // A pod selector of this namespace that selects IsoBox pods and never Redis.
        peer.get("namespaceSelector").is_none()
            && peer.get("ipBlock").is_none()
            && !peer["podSelector"].is_null()
            && !selects(&peer["podSelector"], &redis_pods)
            && nodes
                .iter()
                .any(|n| selects(&peer["podSelector"], &pod_labels(n)))
            && !labels_of(&peer["podSelector"]["matchLabels"]).is_empty()
    };

    // Redis: reached only by IsoBox pods on 6379, reaches nothing.
    let policies = policies_for(&d, redis);
    let ingress_policies: Vec<_> = policies
        .iter()
        .filter(|p| policy_types(p).iter().any(|t| t == "Ingress"))
        .collect();
    assert!(
        ingress_policies.iter().any(|p| p.v["spec"]["ingress"]
            .as_sequence()
            .is_some_and(|r| !r.is_empty())),
        "no NetworkPolicy lets the IsoBox pods reach Redis"
    );
    for p in &policies {
        for rule in p.v["spec"]["ingress"].as_sequence().into_iter().flatten() {
            let from = rule["from"].as_sequence().unwrap_or_else(|| {
                panic!(
                    "{}: an ingress rule without `from` admits everyone",
                    p.what()
                )
            });
            for peer in from {
                assert!(
                    is_node_peer(peer),
                    "{}: Redis admits {peer:?}, not only IsoBox pods",
                    p.what()
                );
            }
            assert_eq!(
                rule_ports(rule, &p.what()),
                [("TCP".to_string(), 6379)],
                "{}",
                p.what()
            );
        }
        assert!(
            p.v["spec"]["egress"]
                .as_sequence()
                .is_none_or(|e| e.is_empty()),
            "{}: Redis needs no egress",
            p.what()
        );
    }
    // And every IsoBox pod that is selected as a Redis client is allowed out to it.
    for n in &nodes {
        let pols = policies_for(&d, n);
        let wher = n.what();
        assert!(
            !pols.is_empty(),
            "{wher}: no NetworkPolicy selects these pods"
        );
        let api = pod_labels(n)
            .get("app.kubernetes.io/component")
            .map(String::as_str)
            == Some("api");
        let allowed_in: &[u64] = if api { &[8000, 9000] } else { &[8000] };
        let mut reaches_redis = false;
        for p in &pols {
            for rule in p.v["spec"]["ingress"].as_sequence().into_iter().flatten() {
                for (_, port) in rule_ports(rule, &p.what()) {
                    assert!(
                        allowed_in.contains(&port),
                        "{}: lets {wher} be reached on {port}",
                        p.what()
                    );
                }
                let from = rule["from"].as_sequence().unwrap_or_else(|| {
                    panic!(
                        "{}: an ingress rule without `from` admits everyone",
                        p.what()
                    )
                });
                for peer in from {
                    // Namespaces chosen by a label, never every namespace or an address block.
                    assert!(
                        peer.get("ipBlock").is_none()
                            && peer.get("podSelector").is_none()
                            && !labels_of(&peer["namespaceSelector"]["matchLabels"]).is_empty(),
                        "{}: {wher} admits {peer:?}; only labelled namespaces may connect",
                        p.what()
                    );
                }
            }
            for rule in p.v["spec"]["egress"].as_sequence().into_iter().flatten() {
                let ports = rule_ports(rule, &p.what());
                let to = rule["to"].as_sequence().unwrap_or_else(|| {
                    panic!(
                        "{}: an egress rule without `to` reaches everything",
                        p.what()
                    )
                });
                for peer in to {
                    let to_redis = peer.get("namespaceSelector").is_none()
                        && peer.get("ipBlock").is_none()
                        && selects(&peer["podSelector"], &redis_pods)
                        && !labels_of(&peer["podSelector"]["matchLabels"]).is_empty();
                    let dns_ns = labels_of(&peer["namespaceSelector"]["matchLabels"]);
                    let to_dns = dns_ns
                        .get("kubernetes.io/metadata.name")
                        .map(String::as_str)
                        == Some("kube-system")
                        && !labels_of(&peer["podSelector"]["matchLabels"]).is_empty();
                    if to_redis {
                        assert_eq!(
                            ports,
                            [("TCP".to_string(), 6379)],
                            "{}: Redis on 6379 only",
                            p.what()
                        );
                        reaches_redis = true;
                    } else if to_dns {
                        assert!(
                            ports.iter().all(|(_, port)| *port == 53),
                            "{}: DNS on 53 only: {ports:?}",
                            p.what()
                        );
                    } else {
                        panic!(
                            "{}: {wher} may reach {peer:?}: only Redis and DNS",
                            p.what()
                        );
                    }
                }
            }
            assert_eq!(policy_types(p), ["Ingress", "Egress"], "{}", p.what());
        }
        assert!(
            reaches_redis,
            "{wher}: no NetworkPolicy lets it reach Redis"
        );
    }
}

#[test]
fn k8s_disruption_budgets_cover_the_nodes() {
    let d = Deploy::load();
    for dep in isobox_deployments(&d) {
        let pods = pod_labels(dep);
        let pdbs: Vec<&Obj> = d
            .of_kind("PodDisruptionBudget")
            .filter(|p| {
                p.namespace() == dep.namespace() && selects(&p.v["spec"]["selector"], &pods)
            })
            .collect();
        assert_eq!(
            pdbs.len(),
            1,
            "{}: needs exactly one PodDisruptionBudget",
            dep.what()
        );
        let pdb = pdbs[0];
        assert_eq!(
            pdb.v["apiVersion"].as_str(),
            Some("policy/v1"),
            "{}",
            pdb.what()
        );
        assert!(
            !labels_of(&pdb.v["spec"]["selector"]["matchLabels"]).is_empty(),
            "{}: an empty selector",
            pdb.what()
        );
        // It must let a drain proceed: minAvailable below the fewest replicas the HPA keeps.
        let min_replicas = d
            .of_kind("HorizontalPodAutoscaler")
            .find(|h| h.v["spec"]["scaleTargetRef"]["name"].as_str() == Some(dep.name()))
            .and_then(|h| h.v["spec"]["minReplicas"].as_u64())
            .or_else(|| dep.v["spec"]["replicas"].as_u64())
            .unwrap_or(1);
        if let Some(min) = pdb.v["spec"]["minAvailable"].as_u64() {
            assert!(
                min < min_replicas,
                "{}: minAvailable {min} blocks every drain",
                pdb.what()
            );
        } else {
            let max = pdb.v["spec"]["maxUnavailable"].as_u64();
            assert!(
                max.is_some_and(|m| m >= 1),
                "{}: needs maxUnavailable >= 1 or minAvailable",
                pdb.what()
            );
        }
    }
}

#[test]
fn compose_redis_requires_a_password_and_is_internal_only() {
    let d = Deploy::load();
    let (_, file) = &d.compose[0];
    let services = compose_services(&d);
    let redis = services
        .iter()
        .find(|s| {
            s.v["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("redis"))
        })
        .expect("the Compose file has no Redis service");
    let argv = strings(&redis.v["command"]);
    let pass = argv
        .iter()
        .position(|a| a == "--requirepass")
        .and_then(|i| argv.get(i + 1))
        .unwrap_or_else(|| panic!("{}: no --requirepass: {argv:?}", redis.what()));
    assert!(
        pass.starts_with("${") && pass.contains(":?"),
        "{}: the password must come from the environment and be required (${{VAR:?...}}), not `{pass}`",
        redis.what()
    );
    let password = interpolate(pass);
    assert!(
        redis.v.get("ports").is_none(),
        "{}: Redis must not publish a port",
        redis.what()
    );
    let hc = strings(&redis.v["healthcheck"]["test"]).join(" ");
    assert!(
        hc.contains("PONG"),
        "{}: the health check must check for PONG: `{hc}`",
        redis.what()
    );
    // On internal networks only.
    let networks = |s: &Service| -> Vec<String> {
        match &s.v["networks"] {
            Value::Sequence(_) => strings(&s.v["networks"]),
            Value::Mapping(_) => mapping_pairs(&s.v["networks"])
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
            _ => vec!["default".to_string()],
        }
    };
    let internal = |net: &str| file["networks"][net]["internal"].as_bool() == Some(true);
    let redis_nets = networks(redis);
    assert!(
        !redis_nets.is_empty() && redis_nets.iter().all(|n| internal(n)),
        "{}: Redis must be only on internal networks, is on {redis_nets:?}",
        redis.what()
    );
    for s in services.iter().filter(|s| s.is_isobox()) {
        let url = s.env().get("REDIS_URL").cloned().unwrap_or_default();
        let authority = url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap();
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u).unwrap_or("");
        assert_eq!(
            userinfo.split_once(':').map(|(_, p)| p),
            Some(password.as_str()),
            "{}: REDIS_URL must carry Redis' password",
            s.what()
        );
        assert!(
            networks(s).iter().any(|n| redis_nets.contains(n)),
            "{}: shares no network with Redis",
            s.what()
        );
        // Published ports stay on the host's loopback as shipped.
        for p in s.v["ports"].as_sequence().into_iter().flatten() {
            let p = scalar(p);
            assert!(
                p.starts_with("127.0.0.1:"),
                "{}: publishes `{p}` on every interface; bind it to 127.0.0.1 as shipped",
                s.what()
            );
        }
    }
}
