//! Prometheus metrics, rendered in the text format at `/metrics`. A small registry of our own:
//! no global recorder (tests run many servers in one process), names prefixed `isobox_`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    executions: BTreeMap<(String, String), u64>,
    rejected: BTreeMap<String, u64>,
    requests: BTreeMap<(String, u16), u64>,
    run_seconds: Histogram,
    queue_seconds: Histogram,
}

/// Gauges read at render time from their owners.
pub struct Gauges {
    pub slots_busy: usize,
    pub slots_total: usize,
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

    /// Every HTTP response, by route template and status code.
    pub fn request(&self, route: &str, status: u16) {
        self.with(|m| *m.requests.entry((route.to_string(), status)).or_default() += 1);
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
        self.with(|m| {
            out.push_str("# HELP isobox_executions_total Executions by language and status.\n# TYPE isobox_executions_total counter\n");
            for ((lang, status), n) in &m.executions {
                let _ = writeln!(out, "isobox_executions_total{{language=\"{}\",status=\"{}\"}} {n}", escape(lang), escape(status));
            }
            out.push_str("# HELP isobox_rejected_total Requests refused before running, by reason.\n# TYPE isobox_rejected_total counter\n");
            for (reason, n) in &m.rejected {
                let _ = writeln!(out, "isobox_rejected_total{{reason=\"{}\"}} {n}", escape(reason));
            }
            out.push_str("# HELP isobox_http_requests_total HTTP responses by route and status code.\n# TYPE isobox_http_requests_total counter\n");
            for ((route, code), n) in &m.requests {
                let _ = writeln!(out, "isobox_http_requests_total{{route=\"{}\",code=\"{code}\"}} {n}", escape(route));
            }
            m.run_seconds.render(&mut out, "isobox_run_seconds", "Wall time of executions in the sandbox.");
            m.queue_seconds.render(&mut out, "isobox_queue_seconds", "Time spent waiting for a sandbox slot.");
        });
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "isobox_slots_busy",
            "Sandbox slots in use.",
            "gauge",
            g.slots_busy.to_string(),
        );
        gauge(
            &mut out,
            "isobox_slots_total",
            "Sandbox slots.",
            "gauge",
            g.slots_total.to_string(),
        );
        gauge(
            &mut out,
            "isobox_queue_depth",
            "Requests waiting for a slot.",
            "gauge",
            g.queue_depth.to_string(),
        );
        gauge(
            &mut out,
            "isobox_cache_entries",
            "Dedup cache entries.",
            "gauge",
            g.cache_entries.to_string(),
        );
        gauge(
            &mut out,
            "isobox_cache_bytes",
            "Dedup cache size in bytes.",
            "gauge",
            g.cache_bytes.to_string(),
        );
        gauge(
            &mut out,
            "isobox_cache_hits_total",
            "Dedup cache hits.",
            "counter",
            g.cache_hits.to_string(),
        );
        gauge(
            &mut out,
            "isobox_cache_misses_total",
            "Dedup cache misses.",
            "counter",
            g.cache_misses.to_string(),
        );
        let cc = &g.compile_cache;
        for (name, help, kind, value) in [
            (
                "isobox_compile_cache_entries",
                "Compile cache entries.",
                "gauge",
                cc.entries as u64,
            ),
            (
                "isobox_compile_cache_bytes",
                "Compile cache size in bytes.",
                "gauge",
                cc.bytes,
            ),
            (
                "isobox_compile_cache_hits_total",
                "Compile steps answered by the compile cache.",
                "counter",
                cc.hits,
            ),
            (
                "isobox_compile_cache_misses_total",
                "Compile steps the compiler ran.",
                "counter",
                cc.misses,
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.execution("python", "ok");
        m.execution("python", "ok");
        m.rejected("queue_full");
        m.run_time(Duration::from_millis(30));
        let g = Gauges {
            slots_busy: 1,
            slots_total: 2,
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
        };
        let text = m.render(&g);
        assert!(text.contains("isobox_redis_up 0\n"), "{text}");
        assert!(text.contains("isobox_redis_fallbacks_total 7\n"), "{text}");
        assert!(
            text.contains("isobox_compile_cache_hits_total 6\n"),
            "{text}"
        );
        assert!(text.contains("isobox_executions_total{language=\"python\",status=\"ok\"} 2"));
        assert!(text.contains("isobox_rejected_total{reason=\"queue_full\"} 1"));
        assert!(text.contains("isobox_run_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("isobox_run_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("isobox_run_seconds_count 1"));
        assert!(text.contains("isobox_cache_hits_total 4"));
        assert_eq!(m.executions_with("ok"), 2);
    }
}
