//! Logging: the main log (stderr, filtered by `RUST_LOG`, human or JSON) and three event streams
//! (auth, execution, security) that go to their own files in `ISOBOX_LOG_DIR` (`auth.log`,
//! `execution.log`, `security.log`), opened in append mode and reopened on SIGHUP (logrotate's
//! `postrotate`). Everything written passes a redactor: configured secrets and `key=`/`token=`/
//! `password=`/`secret=`/`Bearer` values never reach a log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Targets of the three event streams.
pub const AUTH: &str = "isobox::audit::auth";
pub const EXEC: &str = "isobox::audit::exec";
pub const SECURITY: &str = "isobox::audit::security";

/// Replaces secrets in log text.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut s: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so that a secret containing another is masked whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        Redactor {
            secrets: Arc::new(s),
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets.iter() {
            out = out.replace(s.as_str(), "[REDACTED]");
        }
        mask_after(&out, MARKERS)
    }
}

/// What precedes a secret value in a log line, matched without regard to case (`apiKey=`,
/// `X-API-KEY=`, `Token=`, `Authorization: Bearer ...`). Not `key:`: principals are logged as
/// `apikey:key-1a2b3c4d`, a key's public id.
const MARKERS: &[&str] = &[
    "key=",
    "token=",
    "password=",
    "passwd=",
    "pwd=",
    "secret=",
    "jwt=",
    "sig=",
    "signature=",
    "credential=",
    "credentials=",
    "auth=",
    "session=",
    "cookie=",
    "bearer ",
    "basic ",
];

/// Masks the value that follows each marker (up to whitespace, quote, comma or `&`), wherever
/// the marker stands and however it is capitalised.
fn mask_after(text: &str, markers: &[&str]) -> String {
    const MASK: &str = "[REDACTED]";
    let mut out = text.to_string();
    // The text lower-cased once, kept in step with `out` (ASCII lower-casing keeps byte
    // offsets, and each mask is written to both).
    let mut lower = out.to_ascii_lowercase();
    for m in markers {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(m) {
            let start = from + pos + m.len();
            let end = out[start..]
                .find(|c: char| {
                    c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '&' | ';' | '}' | '\\')
                })
                .map(|e| start + e)
                .unwrap_or(out.len());
            let value = &out[start..end];
            // An already masked value, or a scheme name followed by its own masked token.
            if end > start && value != MASK && !value.eq_ignore_ascii_case("bearer") {
                out.replace_range(start..end, MASK);
                lower.replace_range(start..end, "[redacted]");
                from = start + MASK.len();
            } else {
                from = end.max(start);
            }
            if from >= out.len() {
                break;
            }
        }
    }
    out
}

/// One log record as one line: control characters inside it (a newline in a certificate's
/// CN, a carriage return or a terminal escape in a token's subject) are written as escapes,
/// so nothing a client controls can forge or hide a line. The record's own final newline
/// stays; with `keep_ansi` (a colour terminal) the formatter's escape sequences stay too.
pub fn escape_controls(text: &str, keep_ansi: bool) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    for c in body.chars() {
        match c {
            '\t' => out.push(c),
            '\u{1b}' if keep_ansi => out.push(c),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.extend(c.escape_default())
            }
            c => out.push(c),
        }
    }
    if body.len() < text.len() {
        out.push('\n');
    }
    out
}

/// A log file that can be reopened (after rotation); every write is redacted.
#[derive(Clone)]
pub struct LogFile {
    path: Option<PathBuf>,
    file: Arc<Mutex<Option<File>>>,
    redactor: Redactor,
    /// Terminal colours in the records (stderr on a terminal).
    ansi: bool,
}

impl LogFile {
    fn open(path: &Path, redactor: Redactor) -> io::Result<LogFile> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile {
            path: Some(path.to_path_buf()),
            file: Arc::new(Mutex::new(Some(f))),
            redactor,
            ansi: false,
        })
    }

    fn stderr(redactor: Redactor, ansi: bool) -> LogFile {
        LogFile {
            path: None,
            file: Arc::new(Mutex::new(None)),
            redactor,
            ansi,
        }
    }

    /// Reopens the file at its path (after logrotate moved it away).
    pub fn reopen(&self) -> io::Result<()> {
        if let Some(p) = &self.path {
            let f = OpenOptions::new().create(true).append(true).open(p)?;
            *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        }
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The formatter writes each record whole, in one call.
        let clean = self.redactor.redact(&String::from_utf8_lossy(buf));
        let clean = escape_controls(&clean, self.ansi);
        match &mut *self.file.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(f) => f.write_all(clean.as_bytes())?,
            None => io::stderr().write_all(clean.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFile;
    fn make_writer(&'a self) -> LogFile {
        self.clone()
    }
}

/// What `init` set up: the files to reopen on SIGHUP.
pub struct Logs {
    pub files: Vec<LogFile>,
}

impl Logs {
    pub fn reopen(&self) {
        for f in &self.files {
            let _ = f.reopen();
        }
    }
}

/// The log line format (`ISOBOX_LOG_FORMAT`). JSON is one object per line with every field at
/// the top level: `timestamp`, `level`, `target`, `message` and the event's own fields
/// (`status`, `uri`, `request_id`, ...), never nested under `fields` or `span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// What the logs are set up from (`RUST_LOG`, `ISOBOX_LOG_FORMAT`, `ISOBOX_LOG_DIR`).
pub struct LogSettings<'a> {
    pub rust_log: &'a str,
    pub format: LogFormat,
    pub dir: Option<&'a std::path::Path>,
}

/// A JSON log layer writing to `writer`: one object per record, the event's fields at the top
/// level beside `timestamp`, `level`, `target` and `message` (no `fields` object, no `span` or
/// `spans`), so that a log pipeline reads `status` or `request_id` without a nested path.
pub fn json_layer<S, W>(writer: W) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_writer(writer)
        .boxed()
}

/// Installs the global subscriber for `isobox serve`.
pub fn init(cfg: &LogSettings<'_>, secrets: Vec<String>) -> io::Result<Logs> {
    let redactor = Redactor::new(secrets);
    let ansi = std::io::IsTerminal::is_terminal(&io::stderr());
    let main = LogFile::stderr(redactor.clone(), ansi);
    let filter = EnvFilter::try_new(cfg.rust_log).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = cfg.format == LogFormat::Json;
    let mut files = Vec::new();
    let main_layer = if json {
        json_layer(main).with_filter(filter).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(main)
            .with_filter(filter)
            .boxed()
    };
    let mut layers = vec![main_layer];
    if let Some(dir) = cfg.dir {
        std::fs::create_dir_all(dir)?;
        for (target, name) in [
            (AUTH, "auth.log"),
            (EXEC, "execution.log"),
            (SECURITY, "security.log"),
        ] {
            let f = LogFile::open(&dir.join(name), redactor.clone())?;
            files.push(f.clone());
            let only = filter_fn(move |m| m.target() == target);
            let layer = if json {
                json_layer(f).with_filter(only).boxed()
            } else {
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(f)
                    .with_filter(only)
                    .boxed()
            };
            layers.push(layer);
        }
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(io::Error::other)?;
    Ok(Logs { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_key_values_are_masked() {
        let r = Redactor::new(vec!["sup3r-secret-key".to_string()]);
        let out = r.redact(
            "auth ok key=abc123 token=xyz, header=\"Bearer eyJhbGci.x.y\" raw sup3r-secret-key end",
        );
        assert!(!out.contains("abc123"), "{out}");
        assert!(!out.contains("xyz"), "{out}");
        assert!(!out.contains("eyJhbGci"), "{out}");
        assert!(!out.contains("sup3r-secret-key"), "{out}");
        assert!(out.contains("auth ok") && out.contains("end"));
    }

    #[test]
    fn markers_match_whatever_their_case() {
        let r = Redactor::default();
        let line = "GET /x?apiKey=k1&Token=t2&X-API-KEY=k3&jwt=j4&sig=s5&Signature=s6 \
                    Authorization: Bearer b7 authorization: Basic c8 Password=p9 end";
        let out = r.redact(line);
        for v in ["k1", "t2", "k3", "j4", "s5", "s6", "b7", "c8", "p9"] {
            assert!(!out.contains(v), "{v} in {out}");
        }
        assert!(out.starts_with("GET /x?apiKey=[REDACTED]&"), "{out}");
        assert!(out.ends_with(" end"), "{out}");
        // A principal's public key id stays readable.
        assert_eq!(
            r.redact("principal=apikey:key-1a2b3c4d"),
            "principal=apikey:key-1a2b3c4d"
        );
        // Idempotent, and harmless on text with no secret.
        assert_eq!(r.redact(&out), out);
        assert_eq!(r.redact("status=200 ms=3"), "status=200 ms=3");
    }

    #[test]
    fn a_record_is_one_line_whatever_its_fields_hold() {
        let forged = "alice\n2026-01-01T00:00:00Z  INFO authenticated principal=admin\r\u{1b}[2K";
        let out = escape_controls(&format!("WARN auth failed principal={forged}\n"), false);
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(out.ends_with('\n'));
        assert!(
            out.contains("alice\\n2026") && out.contains("\\r\\u{1b}"),
            "{out:?}"
        );
        // Through a real subscriber and log file.
        let dir = std::env::temp_dir().join(format!("isobox-logs-esc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth.log");
        let file = LogFile::open(&path, Redactor::default()).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(file)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(principal = %forged, "authentication failed");
            tracing::warn!(principal = forged, "authentication failed");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines().all(|l| l.contains("authentication failed")),
            "{text}"
        );
    }

    #[test]
    fn json_records_are_flat() {
        let dir = std::env::temp_dir().join(format!("isobox-logs-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exec.log");
        let file = LogFile::open(&path, Redactor::default()).unwrap();
        let subscriber = tracing_subscriber::registry().with(json_layer(file));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1");
            let _in = span.enter();
            tracing::info!(target: EXEC, status = "ok", ms = 3u64, language = "python", "execution");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(v["ms"], 3, "{v}");
        assert_eq!(v["message"], "execution", "{v}");
        assert_eq!(v["target"], EXEC, "{v}");
        assert_eq!(v["level"], "INFO", "{v}");
        assert!(v["timestamp"].is_string(), "{v}");
        for nested in ["fields", "span", "spans"] {
            assert!(v.get(nested).is_none(), "{nested} in {v}");
        }
    }

    #[test]
    fn reopen_follows_rotation() {
        let dir = std::env::temp_dir().join(format!("isobox-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        let mut f = LogFile::open(&path, Redactor::default()).unwrap();
        f.write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("x.log.1")).unwrap();
        f.reopen().unwrap();
        f.write_all(b"two\n").unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.join("x.log.1")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(old, "one\n");
        assert_eq!(now, "two\n");
    }
}
