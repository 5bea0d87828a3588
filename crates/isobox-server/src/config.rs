//! Server configuration: the environment variables of the README's Configuration table (`ISOBOX_*`), from
//! command-line flags ([`Flags`]: `isobox serve --port`, ...), the environment, a TOML file
//! (`--config FILE` or `ISOBOX_CONFIG`; keys are the variable names, in any case), or defaults,
//! in that order of precedence: flags > environment > file > defaults. Every value remembers
//! where it came from, for `isobox check-config`; secrets are masked there. A bad value is a
//! startup error that names the variable (and the flag, when a flag set it).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::auth::{AuthMethod, AuthSettings};
pub use crate::logging::LogFormat;

/// The isolation backend (`ISOBOX_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Our own namespace/cgroup/seccomp sandbox.
    Native,
    /// A hardened container per run on a Docker engine.
    Docker,
}

/// Where settings come from (the process environment, or a map in tests).
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// A configuration error, naming the variable, and the flag when a flag gave its value.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", flag.map(|f| format!("{f} ({var})")).unwrap_or_else(|| var.clone()))]
pub struct ConfigError {
    pub var: String,
    pub message: String,
    /// The command-line flag that set the variable (`--port`), if one did.
    pub flag: Option<&'static str>,
}

fn err(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_string(),
        message: message.into(),
        flag: None,
    }
}

/// Values given on the command line (`isobox serve --port 8080 --config isobox.toml`): each
/// sets one variable and wins over the environment and the file.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    values: BTreeMap<&'static str, (String, &'static str)>,
}

impl Flags {
    /// `flag` (as the user wrote it, e.g. `--port`) gives `var` the value `value`.
    pub fn set(&mut self, var: &'static str, flag: &'static str, value: impl Into<String>) {
        self.values.insert(var, (value.into(), flag));
    }

    fn get(&self, var: &str) -> Option<&(String, &'static str)> {
        self.values.get(var)
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    Env,
    Flag,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Default => "default",
            Origin::File => "file",
            Origin::Env => "env",
            Origin::Flag => "flag",
        }
    }
}

/// One line of `check-config`.
#[derive(Debug, Clone)]
pub struct Shown {
    pub var: &'static str,
    pub value: String,
    pub origin: Origin,
}

/// Variables whose values are never shown.
const SECRETS: &[&str] = &[
    "API_KEYS",
    "OAUTH2_CLIENT_SECRET",
    "ISOBOX_WEBHOOK_SECRET",
    "REDIS_URL",
];

/// Who may share dedup cache entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupScope {
    /// Each caller has its own entries (no one learns what another tenant ran).
    Caller,
    /// Every caller shares them.
    Global,
}

/// The loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    pub rest_port: u16,
    pub grpc_port: u16,
    pub auth_type: Vec<AuthMethod>,
    pub backend: BackendKind,
    /// Settings of the docker backend (`ISOBOX_DOCKER_*`), used when `backend` is `docker`.
    pub docker: isobox_sandbox::DockerConfig,
    pub rootfs: Option<PathBuf>,
    /// Where built runtimes live (`ISOBOX_RUNTIMES_DIR`), rescanned on SIGHUP.
    pub runtimes_dir: PathBuf,
    /// Whether the host's toolchains are offered as the `host` runtime (`ISOBOX_HOST_RUNTIME`;
    /// off in production: then nothing of the host's /usr is visible to any run).
    pub host_runtime: bool,
    /// Shared state and the job queue (`REDIS_URL`); None: everything node-local.
    pub redis_url: Option<String>,
    pub redis_timeout: Duration,
    /// Async jobs: how long a finished job's result is kept (then 404).
    pub job_result_ttl: Duration,
    /// A job whose worker has not shown signs of life for this long is taken over.
    pub job_claim: Duration,
    /// Job executors on this node (0: an API-only node that only enqueues).
    pub job_workers: usize,
    /// Most submissions in one batch.
    pub batch_max: usize,
    /// Where the Judge0 CE compatible API is mounted (`ISOBOX_JUDGE0_PREFIX`, default
    /// `/judge0`); None: not mounted.
    pub judge0_prefix: Option<String>,
    pub webhook: crate::webhook::WebhookConfig,
    pub languages_file: Option<PathBuf>,
    pub warm_pool: usize,
    pub slots: usize,
    pub queue: usize,
    pub queue_timeout: Duration,
    pub max_body_bytes: usize,
    /// Connection limits of both listeners (REST and gRPC).
    pub http: crate::transport::ConnLimits,
    /// Proxies whose `X-Forwarded-For` names the client (`ISOBOX_TRUSTED_PROXIES`); empty:
    /// the header is ignored and the client is the connection's peer.
    pub trusted_proxies: Vec<crate::webhook::Cidr>,
    /// Origins browser front ends may call the API from (`ISOBOX_CORS_ORIGINS`, `*` for any);
    /// empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Where the Piston v2 compatible API is mounted (`ISOBOX_PISTON_PREFIX`, default
    /// `/piston`); None: not mounted.
    pub piston_prefix: Option<String>,
    pub dedup_enabled: bool,
    pub dedup_ttl: Duration,
    pub dedup_max_entries: usize,
    pub dedup_max_bytes: usize,
    pub dedup_scope: DedupScope,
    /// The compile cache's bound in bytes (0: off) and the most one compile may leave to be
    /// kept; entries are scoped like the dedup cache.
    pub compile_cache_bytes: u64,
    pub compile_cache_entry_bytes: u64,
    /// Test cases in one request.
    pub max_tests: usize,
    pub patterns_file: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    pub rust_log: String,
    pub shutdown_grace: Duration,
    pub auth: AuthSettings,
    /// How often the TLS files are checked for changes (`ISOBOX_TLS_RELOAD_MS`).
    pub tls_reload: Duration,
    /// Every value with its origin, in a stable order (for check-config).
    pub shown: Vec<Shown>,
}

impl Config {
    /// Every secret of the configuration, wherever it was set (environment or `ISOBOX_CONFIG`
    /// file): the redactor masks each of them in every log line.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.auth.api_keys.clone();
        out.extend(self.auth.oauth2_client_secret.clone());
        out.extend(self.webhook.secret.clone());
        // A password inside REDIS_URL (redis://user:password@host).
        if let Some(pw) = self
            .redis_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(auth, _)| auth.rsplit(':').next())
            .filter(|p| !p.is_empty())
        {
            out.push(pw.to_string());
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// What the logs are set up from.
    pub fn log_settings(&self) -> crate::logging::LogSettings<'_> {
        crate::logging::LogSettings {
            rust_log: &self.rust_log,
            format: self.log_format,
            dir: self.log_dir.as_deref(),
        }
    }

    pub fn rest_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.rest_port)
    }
}

/// Reads raw values: flags first, then env, then the file, then the default.
struct Reader<'a> {
    flags: &'a Flags,
    env: &'a dyn Env,
    file: BTreeMap<String, String>,
    shown: Vec<Shown>,
}

impl Reader<'_> {
    fn raw(&mut self, var: &'static str, default: &str) -> (String, Origin) {
        let (v, o) = if let Some((v, _)) = self.flags.get(var) {
            (v.clone(), Origin::Flag)
        } else if let Some(v) = self.env.get(var) {
            (v, Origin::Env)
        } else if let Some(v) = self.file.get(&var.to_ascii_lowercase()) {
            (v.clone(), Origin::File)
        } else {
            (default.to_string(), Origin::Default)
        };
        let shown = if SECRETS.contains(&var) && !v.is_empty() {
            "********".to_string()
        } else {
            v.clone()
        };
        self.shown.push(Shown {
            var,
            value: shown,
            origin: o,
        });
        (v, o)
    }

    fn string(&mut self, var: &'static str, default: &str) -> String {
        self.raw(var, default).0.trim().to_string()
    }

    fn opt_path(&mut self, var: &'static str) -> Option<PathBuf> {
        let v = self.string(var, "");
        (!v.is_empty()).then(|| PathBuf::from(v))
    }

    fn num<T>(&mut self, var: &'static str, default: &str, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let v = self.string(var, default);
        let n: T = v
            .parse()
            .map_err(|_| err(var, format!("`{v}` is not a whole number")))?;
        if n < min || n > max {
            return Err(err(var, format!("{n} is out of range ({min}..={max})")));
        }
        Ok(n)
    }

    fn flag(&mut self, var: &'static str, default: &str) -> Result<bool, ConfigError> {
        let v = self.string(var, default).to_ascii_lowercase();
        match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(err(var, format!("`{v}` is not true or false"))),
        }
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Loads the configuration from `env` (and the file it names in `ISOBOX_CONFIG`).
pub fn load(env: &dyn Env) -> Result<Config, ConfigError> {
    load_with(env, &Flags::default())
}

/// Loads the configuration from `flags` over `env` over the file (`ISOBOX_CONFIG`, from the
/// flags or the environment) over the defaults. An error names the flag when a flag set the
/// variable.
pub fn load_with(env: &dyn Env, flags: &Flags) -> Result<Config, ConfigError> {
    load_layers(env, flags).map_err(|mut e| {
        e.flag = flags.get(&e.var).map(|(_, f)| *f);
        e
    })
}

fn load_layers(env: &dyn Env, flags: &Flags) -> Result<Config, ConfigError> {
    let mut file = BTreeMap::new();
    // The file: `--config` (which must name one), else ISOBOX_CONFIG (empty: none).
    let (config_path, config_origin) = match flags.get("ISOBOX_CONFIG") {
        Some((p, _)) if p.is_empty() => {
            return Err(err("ISOBOX_CONFIG", "empty: name a TOML file"))
        }
        Some((p, _)) => (Some(p.clone()), Origin::Flag),
        None => match env.get("ISOBOX_CONFIG").filter(|p| !p.is_empty()) {
            Some(p) => (Some(p), Origin::Env),
            None => (None, Origin::Default),
        },
    };
    if let Some(path) = config_path.as_deref() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("ISOBOX_CONFIG", format!("cannot read {path}: {e}")))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| err("ISOBOX_CONFIG", format!("{path} is not valid TOML: {e}")))?;
        for (k, v) in table {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            if !known(&k) {
                return Err(err(
                    "ISOBOX_CONFIG",
                    format!("unknown setting `{k}` in {path}"),
                ));
            }
            file.insert(k.to_ascii_lowercase(), s);
        }
    }
    let mut r = Reader {
        flags,
        env,
        file,
        shown: vec![Shown {
            var: "ISOBOX_CONFIG",
            value: config_path.unwrap_or_default(),
            origin: config_origin,
        }],
    };
    let slots_default = cpus().to_string();
    let bind_s = r.string("ISOBOX_BIND", "127.0.0.1");
    let bind: IpAddr = bind_s
        .parse()
        .map_err(|_| err("ISOBOX_BIND", format!("`{bind_s}` is not an IP address")))?;
    let rest_port = r.num("REST_PORT", "8000", 0u16, u16::MAX)?;
    let grpc_port = r.num("GRPC_PORT", "9000", 0u16, u16::MAX)?;
    let auth_s = r.string("AUTH_TYPE", "none");
    let mut auth_type: Vec<AuthMethod> = Vec::new();
    for a in auth_s
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
    {
        let m: AuthMethod = a.parse().map_err(|_| {
            err(
                "AUTH_TYPE",
                format!("unknown method `{a}` (none, apikey, jwt, oauth2, mtls)"),
            )
        })?;
        auth_type.push(m);
    }
    if auth_type.is_empty() {
        return Err(err("AUTH_TYPE", "no method given"));
    }
    let has = |m: AuthMethod| auth_type.contains(&m);
    if has(AuthMethod::None) && auth_type.len() > 1 {
        return Err(err(
            "AUTH_TYPE",
            "`none` cannot be combined with other methods",
        ));
    }
    if has(AuthMethod::None) && !bind.is_loopback() {
        return Err(err(
            "AUTH_TYPE",
            format!(
                "`none` is only allowed while the server listens on a loopback address, not {bind}"
            ),
        ));
    }
    let opt = |r: &mut Reader, var: &'static str| {
        let v = r.string(var, "");
        (!v.is_empty()).then_some(v)
    };
    let api_keys: Vec<String> = r
        .string("API_KEYS", "")
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    let api_key_header = r.string("API_KEY_HEADER", "X-API-Key");
    if axum::http::HeaderName::from_bytes(api_key_header.as_bytes()).is_err() {
        return Err(err(
            "API_KEY_HEADER",
            format!("`{api_key_header}` is not a header name"),
        ));
    }
    let api_keys_file = r.opt_path("ISOBOX_API_KEYS_FILE");
    if has(AuthMethod::ApiKey) && api_keys.is_empty() && api_keys_file.is_none() {
        return Err(err(
            "API_KEYS",
            "AUTH_TYPE includes apikey but neither API_KEYS nor ISOBOX_API_KEYS_FILE is set",
        ));
    }
    let default_roles: Vec<String> = r
        .string("ISOBOX_DEFAULT_ROLES", "user")
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    let jwt_issuer = opt(&mut r, "JWT_ISSUER_URL");
    let jwt_audience = opt(&mut r, "JWT_AUDIENCE");
    let jwt_jwks_url = opt(&mut r, "JWT_PUBLIC_KEY_URL");
    if has(AuthMethod::Jwt) && jwt_jwks_url.is_none() {
        return Err(err(
            "JWT_PUBLIC_KEY_URL",
            "AUTH_TYPE includes jwt but no JWKS URL is set",
        ));
    }
    // A token of any issuer's, for any audience, or keys fetched in clear: each lets tokens in
    // that were never meant for this service. Refused unless the operator says so.
    let jwt_insecure = r.flag("ISOBOX_JWT_ALLOW_INSECURE", "false")?;
    if has(AuthMethod::Jwt) && !jwt_insecure {
        if jwt_issuer.is_none() {
            return Err(err(
                "JWT_ISSUER_URL",
                "AUTH_TYPE includes jwt but no issuer is set (tokens of any issuer would pass; \
                 ISOBOX_JWT_ALLOW_INSECURE=true allows it)",
            ));
        }
        if jwt_audience.is_none() {
            return Err(err(
                "JWT_AUDIENCE",
                "AUTH_TYPE includes jwt but no audience is set (tokens for any service would \
                 pass; ISOBOX_JWT_ALLOW_INSECURE=true allows it)",
            ));
        }
        if jwt_jwks_url
            .as_deref()
            .is_some_and(|u| !u.to_ascii_lowercase().starts_with("https://"))
        {
            return Err(err(
                "JWT_PUBLIC_KEY_URL",
                "the JWKS URL is not https (keys fetched in clear can be replaced on the way; \
                 ISOBOX_JWT_ALLOW_INSECURE=true allows it)",
            ));
        }
    }
    let _provider = r.string("OAUTH2_PROVIDER", "");
    let oauth2_client_id = opt(&mut r, "OAUTH2_CLIENT_ID");
    let oauth2_client_secret = opt(&mut r, "OAUTH2_CLIENT_SECRET");
    let _token_url = r.string("OAUTH2_TOKEN_URL", "");
    let oauth2_userinfo_url = opt(&mut r, "OAUTH2_USERINFO_URL");
    let oauth2_introspection_url = opt(&mut r, "OAUTH2_INTROSPECTION_URL");
    if has(AuthMethod::OAuth2)
        && oauth2_userinfo_url.is_none()
        && oauth2_introspection_url.is_none()
    {
        return Err(err(
            "OAUTH2_INTROSPECTION_URL",
            "AUTH_TYPE includes oauth2 but neither an introspection nor a userinfo URL is set",
        ));
    }
    if oauth2_introspection_url.is_some()
        && (oauth2_client_id.is_none() || oauth2_client_secret.is_none())
    {
        return Err(err(
            "OAUTH2_CLIENT_ID",
            "introspection needs OAUTH2_CLIENT_ID and OAUTH2_CLIENT_SECRET",
        ));
    }
    let roles_claim = r.string("ISOBOX_ROLES_CLAIM", "roles");
    let mtls_ca = r.opt_path("MTLS_CA_CERT");
    let mtls_crl = r.opt_path("ISOBOX_MTLS_CRL");
    let tls_cert = r.opt_path("TLS_CERT");
    let tls_key = r.opt_path("TLS_KEY");
    if tls_cert.is_some() != tls_key.is_some() {
        return Err(err("TLS_CERT", "TLS_CERT and TLS_KEY must be set together"));
    }
    if has(AuthMethod::Mtls) && (tls_cert.is_none() || mtls_ca.is_none()) {
        return Err(err(
            "MTLS_CA_CERT",
            "AUTH_TYPE includes mtls: set TLS_CERT, TLS_KEY and MTLS_CA_CERT",
        ));
    }
    let policy_file = r.opt_path("ISOBOX_POLICY");
    let rate_limit = r.string("ISOBOX_RATE_LIMIT", "120/min");
    crate::ratelimit::Quota::parse(&rate_limit).map_err(|e| err("ISOBOX_RATE_LIMIT", e))?;
    let auth_fail_limit = r.string("ISOBOX_AUTH_FAIL_LIMIT", "20/min");
    crate::ratelimit::Quota::parse(&auth_fail_limit)
        .map_err(|e| err("ISOBOX_AUTH_FAIL_LIMIT", e))?;
    let auth = AuthSettings {
        api_keys,
        api_key_header,
        api_keys_file,
        default_roles,
        jwt_jwks_url,
        jwt_issuer,
        jwt_audience,
        oauth2_introspection_url,
        oauth2_userinfo_url,
        oauth2_client_id,
        oauth2_client_secret,
        roles_claim,
        tls_cert,
        tls_key,
        mtls_ca,
        mtls_crl,
        policy_file,
        rate_limit,
        auth_fail_limit,
        outbound: Default::default(), // ISOBOX_CA_BUNDLE: set below
    };
    let backend_s = r.string("ISOBOX_BACKEND", "native");
    let backend = match backend_s.as_str() {
        "native" => BackendKind::Native,
        "docker" => BackendKind::Docker,
        _ => {
            return Err(err(
                "ISOBOX_BACKEND",
                format!("`{backend_s}` is not a backend (native or docker)"),
            ))
        }
    };
    let rootfs = r.opt_path("ISOBOX_ROOTFS");
    let runtimes_dir = r
        .opt_path("ISOBOX_RUNTIMES_DIR")
        .unwrap_or_else(|| PathBuf::from(isobox_core::runtimes::DEFAULT_DIR));
    let host_runtime = r.flag("ISOBOX_HOST_RUNTIME", "true")?;
    let languages_file = r.opt_path("ISOBOX_LANGUAGES");
    let slots = r.num("ISOBOX_SLOTS", &slots_default, 1usize, 1024)?;
    let docker = docker_config(&mut r, slots)?;
    let redis_url = r.string("REDIS_URL", "");
    let redis_url = if redis_url.is_empty() {
        None
    } else {
        if !(redis_url.starts_with("redis://")
            || redis_url.starts_with("rediss://")
            || redis_url.starts_with("redis+unix://")
            || redis_url.starts_with("unix://"))
        {
            return Err(err(
                "REDIS_URL",
                "must start with redis://, rediss:// or unix://".to_string(),
            ));
        }
        Some(redis_url)
    };
    let redis_timeout =
        Duration::from_millis(r.num("ISOBOX_REDIS_TIMEOUT_MS", "200", 10u64, 60_000)?);
    let job_result_ttl =
        Duration::from_secs(r.num("ISOBOX_JOB_RESULT_TTL", "3600", 1u64, 30 * 86_400)?);
    let job_claim =
        Duration::from_millis(r.num("ISOBOX_JOB_CLAIM_MS", "30000", 500u64, 3_600_000)?);
    let job_workers = r.num("ISOBOX_JOB_WORKERS", &slots.to_string(), 0usize, 1024)?;
    let batch_max = r.num("ISOBOX_BATCH_MAX", "20", 1usize, 1000)?;
    let judge0_prefix = compat_prefix(&mut r, "ISOBOX_JUDGE0_PREFIX", "/judge0")?;
    let webhook = crate::webhook::WebhookConfig {
        secret: Some(r.string("ISOBOX_WEBHOOK_SECRET", "")).filter(|s| !s.is_empty()),
        allow: crate::webhook::parse_allow(&r.string("ISOBOX_WEBHOOK_ALLOW", ""))
            .map_err(|e| err("ISOBOX_WEBHOOK_ALLOW", e))?,
        max_attempts: r.num("ISOBOX_WEBHOOK_ATTEMPTS", "5", 1u32, 50)?,
        timeout: Duration::from_millis(r.num(
            "ISOBOX_WEBHOOK_TIMEOUT_MS",
            "5000",
            100u64,
            120_000,
        )?),
        ..crate::webhook::WebhookConfig::default()
    };
    let warm_pool = r.num("ISOBOX_WARM_POOL", &slots.to_string(), 0usize, 256)?;
    let queue = r.num("ISOBOX_QUEUE", &(slots * 8).to_string(), 0usize, 100_000)?;
    let queue_timeout =
        Duration::from_millis(r.num("ISOBOX_QUEUE_TIMEOUT_MS", "30000", 1u64, 3_600_000)?);
    let max_body_bytes = r.num(
        "ISOBOX_MAX_BODY_BYTES",
        &(4usize << 20).to_string(),
        1024usize,
        1 << 30,
    )?;
    let http = crate::transport::ConnLimits {
        header_timeout: Duration::from_millis(r.num(
            "ISOBOX_HEADER_TIMEOUT_MS",
            "30000",
            100u64,
            3_600_000,
        )?),
        body_timeout: Duration::from_millis(r.num(
            "ISOBOX_BODY_TIMEOUT_MS",
            "30000",
            100u64,
            3_600_000,
        )?),
        max_connections: r.num("ISOBOX_MAX_CONNECTIONS", "4096", 1usize, 1_000_000)?,
    };
    let trusted_proxies = crate::webhook::parse_allow(&r.string("ISOBOX_TRUSTED_PROXIES", ""))
        .map_err(|e| err("ISOBOX_TRUSTED_PROXIES", e))?;
    let cors_origins: Vec<String> = r
        .string("ISOBOX_CORS_ORIGINS", "")
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect();
    for o in cors_origins.iter().filter(|o| *o != "*") {
        let ok = (o.starts_with("http://") || o.starts_with("https://"))
            && axum::http::HeaderValue::from_str(o).is_ok()
            && !o["https://".len().min(o.len())..].contains('/');
        if !ok {
            return Err(err(
                "ISOBOX_CORS_ORIGINS",
                format!("`{o}` is not an origin (scheme://host[:port])"),
            ));
        }
    }
    let piston_prefix = compat_prefix(&mut r, "ISOBOX_PISTON_PREFIX", "/piston")?;
    let dedup_enabled = r.flag("DEDUP_ENABLED", "true")?;
    let dedup_ttl = Duration::from_secs(r.num("DEDUP_CACHE_TTL", "3600", 1u64, 30 * 86_400)?);
    let dedup_max_entries = r.num("ISOBOX_DEDUP_MAX_ENTRIES", "10000", 1usize, 10_000_000)?;
    let dedup_max_bytes = r.num(
        "ISOBOX_DEDUP_MAX_BYTES",
        &(64usize << 20).to_string(),
        1024usize,
        1 << 40,
    )?;
    let scope_s = r.string("ISOBOX_DEDUP_SCOPE", "caller");
    let dedup_scope = match scope_s.as_str() {
        "caller" => DedupScope::Caller,
        "global" => DedupScope::Global,
        other => {
            return Err(err(
                "ISOBOX_DEDUP_SCOPE",
                format!("`{other}` is not `caller` or `global`"),
            ))
        }
    };
    let compile_cache_bytes = r.num(
        "ISOBOX_COMPILE_CACHE_BYTES",
        &(256u64 << 20).to_string(),
        0u64,
        1 << 40,
    )?;
    let compile_cache_entry_bytes = r.num(
        "ISOBOX_COMPILE_CACHE_ENTRY_BYTES",
        &(64u64 << 20).to_string(),
        4096u64,
        1 << 32,
    )?;
    let max_tests = r.num("ISOBOX_MAX_TESTS", "100", 1usize, 10_000)?;
    let patterns_file = r.opt_path("ISOBOX_PATTERNS");
    let log_dir = r.opt_path("ISOBOX_LOG_DIR");
    let fmt_s = r.string("ISOBOX_LOG_FORMAT", "human");
    let log_format = match fmt_s.as_str() {
        "human" => LogFormat::Human,
        "json" => LogFormat::Json,
        other => {
            return Err(err(
                "ISOBOX_LOG_FORMAT",
                format!("`{other}` is not `human` or `json`"),
            ))
        }
    };
    let rust_log = r.string("RUST_LOG", "info");
    if tracing_subscriber::EnvFilter::try_new(&rust_log).is_err() {
        return Err(err(
            "RUST_LOG",
            format!("`{rust_log}` is not a valid filter"),
        ));
    }
    let shutdown_grace =
        Duration::from_millis(r.num("ISOBOX_SHUTDOWN_GRACE_MS", "10000", 0u64, 3_600_000)?);
    // TLS reload (certificate, key, client CA, CRL): how often the files are checked.
    let tls_reload =
        Duration::from_millis(r.num("ISOBOX_TLS_RELOAD_MS", "5000", 100u64, 3_600_000)?);
    // Outbound HTTPS (JWKS, OAuth2, webhooks): the system's roots plus ISOBOX_CA_BUNDLE.
    let ca_bundle = r.opt_path("ISOBOX_CA_BUNDLE");
    let outbound = crate::outbound::OutboundTls::load(ca_bundle.as_deref())
        .map_err(|e| err("ISOBOX_CA_BUNDLE", e))?;
    let auth = AuthSettings {
        outbound: outbound.clone(),
        ..auth
    };
    let webhook = crate::webhook::WebhookConfig {
        outbound,
        ..webhook
    };
    Ok(Config {
        bind,
        rest_port,
        grpc_port,
        auth_type,
        backend,
        docker,
        rootfs,
        runtimes_dir,
        host_runtime,
        redis_url,
        redis_timeout,
        job_result_ttl,
        job_claim,
        job_workers,
        batch_max,
        judge0_prefix,
        webhook,
        languages_file,
        warm_pool,
        slots,
        queue,
        queue_timeout,
        max_body_bytes,
        cors_origins,
        trusted_proxies,
        http,
        dedup_enabled,
        dedup_ttl,
        dedup_max_entries,
        dedup_max_bytes,
        dedup_scope,
        compile_cache_bytes,
        compile_cache_entry_bytes,
        max_tests,
        patterns_file,
        log_dir,
        log_format,
        rust_log,
        shutdown_grace,
        auth,
        tls_reload,
        piston_prefix,
        shown: r.shown,
    })
}

/// The path prefix of a compatibility API: empty or `off` disables it; else `/` and path
/// segments of `A-Z a-z 0-9 . _ ~ -` (no trailing `/`, nothing a route pattern reads).
fn compat_prefix(
    r: &mut Reader<'_>,
    var: &'static str,
    default: &str,
) -> Result<Option<String>, ConfigError> {
    let v = r.string(var, default);
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let ok = v.starts_with('/')
        && v[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
        });
    if !ok || v.starts_with("/api/v1") {
        return Err(err(
            var,
            format!(
                "`{v}` is not a path prefix (`/name`, no trailing `/`; empty or `off` disables)"
            ),
        ));
    }
    Ok(Some(v))
}

/// The docker backend's settings from the environment alone (`isobox run --backend docker`).
pub fn docker_settings(env: &dyn Env) -> Result<isobox_sandbox::DockerConfig, ConfigError> {
    let flags = Flags::default();
    let mut r = Reader {
        flags: &flags,
        env,
        file: BTreeMap::new(),
        shown: Vec::new(),
    };
    docker_config(&mut r, 1)
}

/// The docker backend's settings. Only operators set these: no request can name an image, a
/// runtime or a mount.
fn docker_config(
    r: &mut Reader,
    slots: usize,
) -> Result<isobox_sandbox::DockerConfig, ConfigError> {
    use isobox_sandbox::docker::{default_image, PoolMode};
    let image = r.string("ISOBOX_DOCKER_IMAGE", &default_image());
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Err(err(
            "ISOBOX_DOCKER_IMAGE",
            format!("`{image}` is not an image name"),
        ));
    }
    let runtime = r.string("ISOBOX_DOCKER_RUNTIME", "");
    let pool = r.num("ISOBOX_DOCKER_POOL", &slots.to_string(), 0usize, 256)?;
    let pool_mode = match r.string("ISOBOX_DOCKER_POOL_MODE", "started").as_str() {
        "started" => PoolMode::Started,
        "created" => PoolMode::Created,
        other => {
            return Err(err(
                "ISOBOX_DOCKER_POOL_MODE",
                format!("`{other}` is not a pool mode (started or created)"),
            ))
        }
    };
    let instance = r.string("ISOBOX_DOCKER_INSTANCE", "default");
    if instance.is_empty()
        || !instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(err(
            "ISOBOX_DOCKER_INSTANCE",
            format!("`{instance}` must be letters, digits, `-`, `_` or `.`"),
        ));
    }
    let apparmor = match r.string("ISOBOX_DOCKER_APPARMOR", "auto").as_str() {
        "auto" => None,
        "none" => Some(String::new()),
        name => Some(name.to_string()),
    };
    Ok(isobox_sandbox::DockerConfig {
        image,
        runtime: (!runtime.is_empty()).then_some(runtime),
        pool,
        pool_mode,
        instance,
        apparmor,
        host: None,
    })
}

/// The authentication, authorization, rate-limit and TLS settings.
const AUTH_VARS: &[&str] = &[
    "ISOBOX_API_KEYS_FILE",
    "ISOBOX_DEFAULT_ROLES",
    "ISOBOX_ROLES_CLAIM",
    "ISOBOX_MTLS_CRL",
    "ISOBOX_POLICY",
    "ISOBOX_RATE_LIMIT",
    "ISOBOX_AUTH_FAIL_LIMIT",
    "ISOBOX_TRUSTED_PROXIES",
    "ISOBOX_JWT_ALLOW_INSECURE",
    "API_KEYS",
    "API_KEY_HEADER",
    "JWT_ISSUER_URL",
    "JWT_AUDIENCE",
    "JWT_PUBLIC_KEY_URL",
    "OAUTH2_PROVIDER",
    "OAUTH2_CLIENT_ID",
    "OAUTH2_CLIENT_SECRET",
    "OAUTH2_TOKEN_URL",
    "OAUTH2_USERINFO_URL",
    "OAUTH2_INTROSPECTION_URL",
    "MTLS_CA_CERT",
    "TLS_CERT",
    "TLS_KEY",
    // TLS reload.
    "ISOBOX_TLS_RELOAD_MS",
    // Outbound HTTPS trust.
    "ISOBOX_CA_BUNDLE",
];

/// Whether `var` is a setting this server reads (also the keys its TOML file may hold, in lower
/// case).
fn known(var: &str) -> bool {
    KNOWN
        .iter()
        .chain(AUTH_VARS)
        .any(|k| k.eq_ignore_ascii_case(var))
}

/// Every other variable this server reads.
const KNOWN: &[&str] = &[
    "ISOBOX_BIND",
    "REST_PORT",
    "GRPC_PORT",
    "AUTH_TYPE",
    "ISOBOX_BACKEND",
    "ISOBOX_ROOTFS",
    "ISOBOX_RUNTIMES_DIR",
    "ISOBOX_HOST_RUNTIME",
    "ISOBOX_DOCKER_IMAGE",
    "ISOBOX_DOCKER_RUNTIME",
    "ISOBOX_DOCKER_POOL",
    "ISOBOX_DOCKER_POOL_MODE",
    "ISOBOX_DOCKER_INSTANCE",
    "ISOBOX_DOCKER_APPARMOR",
    "REDIS_URL",
    "ISOBOX_REDIS_TIMEOUT_MS",
    "ISOBOX_JOB_RESULT_TTL",
    "ISOBOX_JOB_CLAIM_MS",
    "ISOBOX_JOB_WORKERS",
    "ISOBOX_BATCH_MAX",
    "ISOBOX_JUDGE0_PREFIX",
    "ISOBOX_WEBHOOK_SECRET",
    "ISOBOX_WEBHOOK_ALLOW",
    "ISOBOX_WEBHOOK_ATTEMPTS",
    "ISOBOX_WEBHOOK_TIMEOUT_MS",
    "ISOBOX_LANGUAGES",
    "ISOBOX_SLOTS",
    "ISOBOX_WARM_POOL",
    "ISOBOX_QUEUE",
    "ISOBOX_QUEUE_TIMEOUT_MS",
    "ISOBOX_MAX_BODY_BYTES",
    "ISOBOX_CORS_ORIGINS",
    "ISOBOX_PISTON_PREFIX",
    "ISOBOX_HEADER_TIMEOUT_MS",
    "ISOBOX_BODY_TIMEOUT_MS",
    "ISOBOX_MAX_CONNECTIONS",
    "DEDUP_ENABLED",
    "DEDUP_CACHE_TTL",
    "ISOBOX_DEDUP_MAX_ENTRIES",
    "ISOBOX_DEDUP_MAX_BYTES",
    "ISOBOX_DEDUP_SCOPE",
    "ISOBOX_COMPILE_CACHE_BYTES",
    "ISOBOX_COMPILE_CACHE_ENTRY_BYTES",
    "ISOBOX_MAX_TESTS",
    "ISOBOX_PATTERNS",
    "ISOBOX_LOG_DIR",
    "ISOBOX_LOG_FORMAT",
    "RUST_LOG",
    "ISOBOX_SHUTDOWN_GRACE_MS",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_safe() {
        let c = load(&env(&[])).unwrap();
        assert!(c.bind.is_loopback());
        assert_eq!(c.rest_port, 8000);
        assert_eq!(c.auth_type, vec![AuthMethod::None]);
        assert!(c.dedup_enabled);
        assert!(c.shown.iter().all(|s| s.origin == Origin::Default));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v) in [
            ("REST_PORT", "eighty"),
            ("REST_PORT", "70000"),
            ("DEDUP_ENABLED", "maybe"),
            ("DEDUP_CACHE_TTL", "-5"),
            ("ISOBOX_SLOTS", "0"),
            ("ISOBOX_BIND", "localhost:80"),
            ("AUTH_TYPE", "magic"),
            ("ISOBOX_LOG_FORMAT", "xml"),
        ] {
            let e = load(&env(&[(k, v)])).unwrap_err();
            assert_eq!(e.var, k, "{e}");
        }
    }

    #[test]
    fn the_piston_prefix_is_a_path_or_off() {
        assert_eq!(
            load(&env(&[])).unwrap().piston_prefix.as_deref(),
            Some("/piston")
        );
        for off in ["", "off", "OFF"] {
            let c = load(&env(&[("ISOBOX_PISTON_PREFIX", off)])).unwrap();
            assert_eq!(c.piston_prefix, None, "{off:?}");
        }
        let c = load(&env(&[("ISOBOX_PISTON_PREFIX", "/compat/piston")])).unwrap();
        assert_eq!(c.piston_prefix.as_deref(), Some("/compat/piston"));
        for bad in [
            "piston", "/piston/", "/{x}", "/a//b", "/../x", "/p*", "/api/v1",
        ] {
            let e = load(&env(&[("ISOBOX_PISTON_PREFIX", bad)])).unwrap_err();
            assert_eq!(e.var, "ISOBOX_PISTON_PREFIX", "{bad}");
        }
    }

    #[test]
    fn no_auth_only_on_loopback() {
        let e = load(&env(&[("ISOBOX_BIND", "0.0.0.0")])).unwrap_err();
        assert_eq!(e.var, "AUTH_TYPE");
        assert!(load(&env(&[("ISOBOX_BIND", "::1")])).is_ok());
    }

    #[test]
    fn env_overrides_file_and_secrets_are_masked() {
        let dir = std::env::temp_dir().join(format!("isobox-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "rest_port = 8100\ndedup_cache_ttl = 60\noauth2_client_secret = \"s3cr3t\"\n",
        )
        .unwrap();
        let e = env(&[
            ("ISOBOX_CONFIG", f.to_str().unwrap()),
            ("REST_PORT", "8200"),
        ]);
        let c = load(&e).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.rest_port, 8200);
        assert_eq!(c.dedup_ttl, Duration::from_secs(60));
        let shown = |v: &str| c.shown.iter().find(|s| s.var == v).unwrap().clone();
        assert_eq!(shown("REST_PORT").origin, Origin::Env);
        assert_eq!(shown("DEDUP_CACHE_TTL").origin, Origin::File);
        assert_eq!(shown("OAUTH2_CLIENT_SECRET").value, "********");
    }

    #[test]
    fn flags_win_over_env_over_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("isobox-cfg3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "rest_port = 8100\ngrpc_port = 9100\nISOBOX_SLOTS = 3\n").unwrap();
        let e = env(&[("REST_PORT", "8200"), ("GRPC_PORT", "9200")]);
        let mut flags = Flags::default();
        flags.set("REST_PORT", "--port", "8300");
        flags.set("ISOBOX_CONFIG", "--config", f.to_str().unwrap());
        let c = load_with(&e, &flags).unwrap();
        assert_eq!((c.rest_port, c.grpc_port, c.slots), (8300, 9200, 3));
        let origin = |c: &Config, v: &str| c.shown.iter().find(|s| s.var == v).unwrap().origin;
        assert_eq!(origin(&c, "REST_PORT"), Origin::Flag);
        assert_eq!(origin(&c, "GRPC_PORT"), Origin::Env);
        assert_eq!(origin(&c, "ISOBOX_SLOTS"), Origin::File);
        assert_eq!(origin(&c, "ISOBOX_CONFIG"), Origin::Flag);
        assert_eq!(origin(&c, "ISOBOX_QUEUE_TIMEOUT_MS"), Origin::Default);
        // --config wins over ISOBOX_CONFIG; without either, no file.
        let other = dir.join("other.toml");
        std::fs::write(&other, "rest_port = 8500\n").unwrap();
        let mut only_file = Flags::default();
        only_file.set("ISOBOX_CONFIG", "--config", other.to_str().unwrap());
        let e2 = env(&[("ISOBOX_CONFIG", f.to_str().unwrap())]);
        assert_eq!(load_with(&e2, &only_file).unwrap().rest_port, 8500);
        assert_eq!(load(&e2).unwrap().rest_port, 8100);
        assert_eq!(load(&env(&[])).unwrap().rest_port, 8000);
        std::fs::remove_dir_all(&dir).unwrap();
        // A flag's value replaces the environment's, which is then not even read.
        let mut port = Flags::default();
        port.set("REST_PORT", "--port", "8300");
        assert!(load_with(&env(&[("REST_PORT", "nope")]), &port).is_ok());
    }

    #[test]
    fn errors_name_the_flag_that_set_the_value() {
        let mut flags = Flags::default();
        flags.set("ISOBOX_CONFIG", "--config", "/nonexistent/isobox.toml");
        let e = load_with(&env(&[]), &flags).unwrap_err();
        assert_eq!(
            (e.var.as_str(), e.flag),
            ("ISOBOX_CONFIG", Some("--config"))
        );
        assert!(
            e.to_string()
                .starts_with("--config (ISOBOX_CONFIG): cannot read /nonexistent/isobox.toml"),
            "{e}"
        );
        let mut empty = Flags::default();
        empty.set("ISOBOX_CONFIG", "--config", "");
        assert!(load_with(&env(&[]), &empty).is_err());
        // The same error from the environment names the variable only.
        let e = load(&env(&[("ISOBOX_CONFIG", "/nonexistent/isobox.toml")])).unwrap_err();
        assert_eq!(e.flag, None);
        assert!(
            e.to_string().starts_with("ISOBOX_CONFIG: cannot read"),
            "{e}"
        );
        // An empty ISOBOX_CONFIG is no file, as before.
        assert!(load(&env(&[("ISOBOX_CONFIG", "")])).is_ok());
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = std::env::temp_dir().join(format!("isobox-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "rest_prot = 1\n").unwrap();
        let e = load(&env(&[("ISOBOX_CONFIG", f.to_str().unwrap())])).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(e.var, "ISOBOX_CONFIG");
        assert!(e.message.contains("rest_prot"));
    }
}
