//! Prometheus metrics, rendered in the text format at `/metrics`. A small registry of our own:
//! no global recorder (tests run many servers in one process), names prefixed `isobox_` and
//! following Prometheus' conventions: counters end in `_total`, gauges never do, durations are
//! histograms in seconds (`_duration_seconds`), sizes in bytes (`_bytes`); labels take bounded
//! values (route templates, not paths). `isobox_build_info` says what runs, and the standard
//! `process_*` metrics come from `/proc/self`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram's bucket counts (cumulative when rendered), sum and count.
#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    /// The series of one histogram: `labels` are its own (`a="x",b="y"`, or empty), `le`
    /// comes after them.
    fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        self.render_series(out, name, "");
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// An HTTP request's labels: method, route template, status code.
type RequestKey = (&'static str, String, u16);

#[derive(Default)]
struct Inner {
    executions: BTreeMap<(String, String), u64>,
    rejected: BTreeMap<String, u64>,
    requests: BTreeMap<(String, u16), u64>,
    request_seconds: BTreeMap<RequestKey, Histogram>,
    run_seconds: Histogram,
    queue_seconds: Histogram,
}

/// The methods that are labels of their own; any other is `other` (a client picks the method:
/// it must not grow the label set).
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

/// What was built: `isobox_build_info`'s labels.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the server was built from (`ISOBOX_GIT_COMMIT` at build time, else `git
/// rev-parse` in the build tree); `unknown` when neither was there (a source tarball).
pub fn git_commit() -> &'static str {
    match env!("ISOBOX_GIT_COMMIT") {
        "" => "unknown",
        c => c,
    }
}

/// Gauges read at render time from their owners.
pub struct Gauges {
    pub slots_busy: usize,
    pub slots_capacity: usize,
    pub queue_depth: usize,
    pub cache_entries: usize,
    pub cache_bytes: usize,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// The compile cache: entries, bytes, hits, misses.
    pub compile_cache: isobox_core::CompileCacheStats,
    /// With `REDIS_URL`: whether Redis answered last time, and the calls that fell back to
    /// local state.
    pub redis: Option<(bool, u64)>,
    /// The isolation backend (`native` or `docker`), a label of `isobox_build_info`.
    pub backend: &'static str,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// One execution that produced a result (`cached` ones included).
    pub fn execution(&self, language: &str, status: &str) {
        self.with(|m| {
            *m.executions
                .entry((language.to_string(), status.to_string()))
                .or_default() += 1
        });
    }

    /// Time spent running in a sandbox (wall, including set-up).
    pub fn run_time(&self, d: Duration) {
        self.with(|m| m.run_seconds.observe(d.as_secs_f64()));
    }

    /// Time spent waiting for a sandbox slot.
    pub fn queue_time(&self, d: Duration) {
        self.with(|m| m.queue_seconds.observe(d.as_secs_f64()));
    }

    /// A request refused before it ran (`reason` is the error kind, e.g. `queue_full`).
    pub fn rejected(&self, reason: &str) {
        self.with(|m| *m.rejected.entry(reason.to_string()).or_default() += 1);
    }

    /// Count of refusals of `reason` (tests).
    pub fn rejected_with(&self, reason: &str) -> u64 {
        self.with(|m| m.rejected.get(reason).copied().unwrap_or(0))
    }

    /// Every HTTP response, by method, route template (`other` for a path no route matched:
    /// never the raw path) and status code, and how long it took to its head.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let method = method_label(method);
        self.with(|m| {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.request_seconds
                .entry((method, route.to_string(), status))
                .or_default()
                .observe(took.as_secs_f64());
        });
    }

    /// Count of executions with `status` (tests).
    pub fn executions_with(&self, status: &str) -> u64 {
        self.with(|m| {
            m.executions
                .iter()
                .filter(|((_, s), _)| s == status)
                .map(|(_, n)| n)
                .sum()
        })
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "isobox_build_info",
            "The version, git commit and isolation backend of this server; always 1.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "isobox_build_info{{version=\"{}\",commit=\"{}\",backend=\"{}\"}} 1",
            escape(VERSION),
            escape(git_commit()),
            escape(g.backend)
        );
        self.with(|m| {
            header(&mut out, "isobox_executions_total", "Executions by language and status.", "counter");
            for ((lang, status), n) in &m.executions {
                let _ = writeln!(out, "isobox_executions_total{{language=\"{}\",status=\"{}\"}} {n}", escape(lang), escape(status));
            }
            header(&mut out, "isobox_rejected_total", "Requests refused before running, by reason.", "counter");
            for (reason, n) in &m.rejected {
                let _ = writeln!(out, "isobox_rejected_total{{reason=\"{}\"}} {n}", escape(reason));
            }
            header(&mut out, "isobox_http_requests_total", "HTTP responses by route and status code.", "counter");
            for ((route, code), n) in &m.requests {
                let _ = writeln!(out, "isobox_http_requests_total{{route=\"{}\",code=\"{code}\"}} {n}", escape(route));
            }
            header(
                &mut out,
                "isobox_http_request_duration_seconds",
                "Time from an HTTP request to its response head, by method, route template and status code.",
                "histogram",
            );
            for ((method, route, status), h) in &m.request_seconds {
                let labels = format!("method=\"{method}\",route=\"{}\",status=\"{status}\"", escape(route));
                h.render_series(&mut out, "isobox_http_request_duration_seconds", &labels);
            }
            m.run_seconds.render(&mut out, "isobox_run_duration_seconds", "Wall time of executions in the sandbox.");
            m.queue_seconds.render(&mut out, "isobox_queue_wait_duration_seconds", "Time spent waiting for a sandbox slot.");
        });
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            header(out, name, help, kind);
            let _ = writeln!(out, "{name} {v}");
        };
        for (name, help, kind, value) in [
            (
                "isobox_slots_busy",
                "Sandbox slots in use.",
                "gauge",
                g.slots_busy as u64,
            ),
            (
                "isobox_slots_capacity",
                "Sandbox slots (ISOBOX_SLOTS).",
                "gauge",
                g.slots_capacity as u64,
            ),
            (
                "isobox_queue_depth",
                "Requests waiting for a slot.",
                "gauge",
                g.queue_depth as u64,
            ),
            (
                "isobox_cache_entries",
                "Dedup cache entries.",
                "gauge",
                g.cache_entries as u64,
            ),
            (
                "isobox_cache_bytes",
                "Dedup cache size in bytes.",
                "gauge",
                g.cache_bytes as u64,
            ),
            (
                "isobox_cache_hits_total",
                "Dedup cache hits.",
                "counter",
                g.cache_hits,
            ),
            (
                "isobox_cache_misses_total",
                "Dedup cache misses.",
                "counter",
                g.cache_misses,
            ),
            (
                "isobox_compile_cache_entries",
                "Compile cache entries.",
                "gauge",
                g.compile_cache.entries as u64,
            ),
            (
                "isobox_compile_cache_bytes",
                "Compile cache size in bytes.",
                "gauge",
                g.compile_cache.bytes,
            ),
            (
                "isobox_compile_cache_hits_total",
                "Compile steps answered by the compile cache.",
                "counter",
                g.compile_cache.hits,
            ),
            (
                "isobox_compile_cache_misses_total",
                "Compile steps the compiler ran.",
                "counter",
                g.compile_cache.misses,
            ),
        ] {
            gauge(&mut out, name, help, kind, value.to_string());
        }
        if let Some((up, fallbacks)) = g.redis {
            gauge(
                &mut out,
                "isobox_redis_up",
                "1 while Redis answers; 0 while this node runs on its local cache and limits.",
                "gauge",
                u8::from(up).to_string(),
            );
            gauge(
                &mut out,
                "isobox_redis_fallbacks_total",
                "Redis calls that fell back to local state (Redis unreachable or failing).",
                "counter",
                fallbacks.to_string(),
            );
        }
        if let Some(p) = ProcessStats::read() {
            p.render(&mut out);
        }
        out
    }
}

/// Keys of the ELF auxiliary vector: the page size, clock ticks per second.
const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;

/// The value of `key` in an auxiliary vector (`/proc/self/auxv`: pairs of native words).
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> u64 {
        let mut a = [0u8; W];
        a.copy_from_slice(b);
        usize::from_ne_bytes(a) as u64
    };
    auxv.chunks_exact(2 * W)
        .map(|pair| (word(&pair[..W]), word(&pair[W..])))
        .take_while(|(k, _)| *k != 0)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// What `/proc/self` says about this process: the standard `process_*` metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub open_fds: u64,
    /// The soft limit on open files.
    pub max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/self/fd`, `/proc/self/limits` and the boot time in
    /// `/proc/stat`; None when `/proc` is not there.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        // The clock ticks per second /proc counts in, and the page size (what sysconf reads,
        // without unsafe code): USER_HZ is 100 and pages 4 KiB where the vector says nothing.
        let ticks = auxv_value(&auxv, AT_CLKTCK).unwrap_or(100);
        let page = auxv_value(&auxv, AT_PAGESZ).unwrap_or(4096);
        Self::parse(
            &stat,
            &boot,
            &limits,
            open_fds,
            ticks.max(1) as f64,
            page.max(1),
        )
    }

    /// [`ProcessStats::read`] from the files' text (`ticks`: clock ticks per second, `page`:
    /// the page size).
    fn parse(
        stat: &str,
        boot: &str,
        limits: &str,
        open_fds: u64,
        ticks: f64,
        page: u64,
    ) -> Option<ProcessStats> {
        // The command name (field 2) is in parentheses and may hold spaces or `)`: fields are
        // counted from after its last `)`, where field 3 (the state) starts.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let btime: u64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse().ok());
        Some(ProcessStats {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
            start_time_seconds: btime as f64 + field(22)? as f64 / ticks,
            virtual_memory_bytes: field(23)?,
            resident_memory_bytes: field(24)? * page,
            open_fds,
            max_fds,
        })
    }

    fn render(&self, out: &mut String) {
        let mut one = |name: &str, help: &str, kind: &str, v: String| {
            header(out, name, help, kind);
            let _ = writeln!(out, "{name} {v}");
        };
        one(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            self.cpu_seconds.to_string(),
        );
        one(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            self.resident_memory_bytes.to_string(),
        );
        one(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            self.virtual_memory_bytes.to_string(),
        );
        one(
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            self.open_fds.to_string(),
        );
        if let Some(max) = self.max_fds {
            one(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                "gauge",
                max.to_string(),
            );
        }
        one(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            self.start_time_seconds.to_string(),
        );
    }
}

/// What breaks Prometheus's naming conventions in metric `name` of type `kind` (`counter`,
/// `gauge`, `histogram`), if anything: ours (`isobox_`) or the process's (`process_`), snake
/// case, `_total` on counters and nothing else, durations as `_duration_seconds` histograms.
/// The unit tests check the declared metrics with it, the integration tests a real scrape.
pub fn naming_problem(name: &str, kind: &str) -> Option<String> {
    if !(name.starts_with("isobox_") || name.starts_with("process_")) {
        return Some(format!("{name}: not ours"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Some(format!("{name}: not snake case"));
    }
    if name.ends_with("_total") != (kind == "counter") {
        return Some(format!("{name} is a {kind}: only counters end in _total"));
    }
    if kind == "histogram" && !name.ends_with("_duration_seconds") {
        return Some(format!(
            "{name}: a histogram of durations ends in _duration_seconds"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            slots_busy: 1,
            slots_capacity: 2,
            queue_depth: 0,
            cache_entries: 3,
            cache_bytes: 10,
            cache_hits: 4,
            cache_misses: 5,
            compile_cache: isobox_core::CompileCacheStats {
                hits: 6,
                ..Default::default()
            },
            redis: Some((false, 7)),
            backend: "native",
        }
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.execution("python", "ok");
        m.execution("python", "ok");
        m.rejected("queue_full");
        m.run_time(Duration::from_millis(30));
        let text = m.render(&gauges());
        assert!(text.contains("isobox_redis_up 0\n"), "{text}");
        assert!(text.contains("isobox_redis_fallbacks_total 7\n"), "{text}");
        assert!(
            text.contains("isobox_compile_cache_hits_total 6\n"),
            "{text}"
        );
        assert!(text.contains("isobox_executions_total{language=\"python\",status=\"ok\"} 2"));
        assert!(text.contains("isobox_rejected_total{reason=\"queue_full\"} 1"));
        assert!(text.contains("isobox_run_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("isobox_run_duration_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("isobox_run_duration_seconds_count 1"));
        assert!(text.contains("isobox_cache_hits_total 4"));
        assert!(text.contains("isobox_slots_capacity 2\n"), "{text}");
        assert!(
            text.contains(&format!(
                "isobox_build_info{{version=\"{VERSION}\",commit=\"{}\",backend=\"native\"}} 1\n",
                git_commit()
            )),
            "{text}"
        );
        assert_eq!(m.executions_with("ok"), 2);
    }

    /// Counters end in `_total` and nothing else does; every sample belongs to a declared
    /// metric (a histogram's through `_bucket`, `_sum`, `_count`).
    #[test]
    fn names_follow_the_prometheus_conventions() {
        let m = Metrics::default();
        m.request("GET", "/health", 200, Duration::from_millis(2));
        m.run_time(Duration::from_millis(30));
        let text = m.render(&gauges());
        let mut types = BTreeMap::new();
        for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = l.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} declared twice"
            );
            assert_eq!(naming_problem(name, kind), None);
        }
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let declared = types.contains_key(name)
                || ["_bucket", "_sum", "_count"].iter().any(|s| {
                    name.strip_suffix(s)
                        .is_some_and(|base| types.get(base).is_some_and(|k| k == "histogram"))
                });
            assert!(declared, "{name} has no TYPE: {l}");
        }
        for gone in [
            "isobox_slots_total",
            "isobox_run_seconds",
            "isobox_queue_seconds",
        ] {
            assert!(!types.contains_key(gone), "{gone}");
        }
    }

    #[test]
    fn request_latency_is_labelled_by_method_route_and_status() {
        let m = Metrics::default();
        m.request("GET", "/health", 200, Duration::from_millis(2));
        m.request("GET", "/health", 200, Duration::from_millis(300));
        m.request("BREW", "other", 405, Duration::from_millis(1));
        let text = m.render(&gauges());
        let l = "method=\"GET\",route=\"/health\",status=\"200\"";
        assert!(
            text.contains(&format!(
                "isobox_http_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 1\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "isobox_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "isobox_http_request_duration_seconds_count{{{l}}} 2\n"
        )));
        // A method the client made up is `other`: it cannot grow the label set.
        assert!(text.contains(
            "isobox_http_request_duration_seconds_count{method=\"other\",route=\"other\",status=\"405\"} 1\n"
        ));
        assert!(!text.contains("BREW"));
        assert!(text.contains("isobox_http_requests_total{route=\"/health\",code=\"200\"} 2\n"));
    }

    #[test]
    fn process_stats_come_from_proc() {
        // A command name with spaces and a parenthesis, as the kernel writes it.
        let stat = "4242 (isobox (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    9 0 1000 123456789 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 \
                    0 0 0";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let p = ProcessStats::parse(stat, boot, limits, 12, 100.0, 4096).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(p.virtual_memory_bytes, 123456789);
        assert_eq!(p.resident_memory_bytes, 3000 * 4096);
        assert_eq!(p.open_fds, 12);
        assert_eq!(p.max_fds, Some(1024));
        // The auxiliary vector of this process has the page size and the clock ticks.
        let auxv = std::fs::read("/proc/self/auxv").unwrap();
        assert_eq!(auxv_value(&auxv, AT_PAGESZ), Some(4096));
        assert_eq!(auxv_value(&auxv, AT_CLKTCK), Some(100));
        // And this process's own.
        let me = ProcessStats::read().expect("/proc/self");
        assert!(me.resident_memory_bytes > 0 && me.open_fds > 0, "{me:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            me.start_time_seconds <= now + 1.0 && me.start_time_seconds > now - 3600.0,
            "{me:?}"
        );
    }
}
