//! Translation between the proto messages and the API layer's values, and a refusal as a gRPC
//! status (the code of the one error table, the kind in the `isobox-error` metadata,
//! `retry-after` where REST sets it).

use std::time::Duration;

use isobox_core::{ExecuteRequest, ExecutionResult, Outcome, RequestFile};
use tonic::Status;

use super::pb;
use crate::api::ApiError;
use crate::metrics::Metrics;

/// A refusal as the call's status, counted once here (every gRPC refusal passes).
pub fn status(metrics: &Metrics, e: ApiError) -> Status {
    e.count(metrics);
    let mut status = Status::new(e.kind.grpc_code(), e.message);
    let md = status.metadata_mut();
    md.insert(
        "isobox-error",
        tonic::metadata::MetadataValue::from_static(e.kind.as_str()),
    );
    if let Some(secs) = e.retry_after {
        md.insert("retry-after", secs.into());
    }
    status
}

/// The deadline of a call from its `grpc-timeout` metadata (`<digits><H|M|S|m|u|n>`), less a
/// small margin so that our answer reaches the client before its own timer fires.
pub fn deadline_of(md: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = md.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    let margin = (d / 10).min(Duration::from_millis(50));
    Some(d - margin)
}

/// The proto request as the core's (file contents that are not UTF-8 travel as base64).
pub fn to_core(r: pb::ExecuteRequest) -> Result<ExecuteRequest, ApiError> {
    use base64::Engine as _;
    let files = (!r.files.is_empty()).then(|| {
        r.files
            .into_iter()
            .map(|f| match String::from_utf8(f.content) {
                Ok(s) => RequestFile {
                    name: f.name,
                    content: s,
                    encoding: None,
                },
                Err(e) => RequestFile {
                    name: f.name,
                    content: base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    encoding: Some("base64".into()),
                },
            })
            .collect()
    });
    Ok(ExecuteRequest {
        language: r.language,
        version: r.version,
        code: r.code,
        files,
        stdin: r.stdin,
        args: (!r.args.is_empty()).then_some(r.args),
        limits: r.limits.map(|l| isobox_core::RequestLimits {
            timeout_ms: l.timeout_ms,
            cpu_time_ms: l.cpu_time_ms,
            memory_mb: l.memory_mb,
            max_processes: l.max_processes,
            max_output_bytes: l.max_output_bytes,
        }),
        tests: (!r.tests.is_empty()).then(|| {
            r.tests
                .into_iter()
                .map(|t| isobox_core::TestCase {
                    name: t.name,
                    stdin: t.stdin,
                    args: (!t.args.is_empty()).then_some(t.args),
                    expected_output: t.expected_output,
                })
                .collect()
        }),
        compare: r.compare.map(compare).transpose()?,
        stop_on_failure: r.stop_on_failure,
        outputs: (!r.outputs.is_empty()).then_some(r.outputs),
        compile_args: (!r.compile_args.is_empty()).then_some(r.compile_args),
        compile_limits: r.compile_limits.map(|l| isobox_core::RequestLimits {
            timeout_ms: l.timeout_ms,
            cpu_time_ms: l.cpu_time_ms,
            memory_mb: l.memory_mb,
            max_processes: l.max_processes,
            max_output_bytes: l.max_output_bytes,
        }),
        stderr_to_stdout: r.stderr_to_stdout,
        encoding: r.encoding,
    })
}

/// A comparison as REST takes it (the same checks, the same message).
fn compare(c: pb::Compare) -> Result<isobox_core::Compare, ApiError> {
    let mut v = serde_json::json!({ "mode": c.mode });
    if let Some(a) = c.absolute {
        v["absolute"] = a.into();
    }
    if let Some(r) = c.relative {
        v["relative"] = r.into();
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::new(crate::api::ErrorKind::InvalidRequest, e.to_string()))
}

pub fn outcome(o: &Outcome) -> pb::Outcome {
    pb::Outcome {
        status: o.status.as_str().to_string(),
        exit_code: o.exit_code,
        signal: o.signal.clone(),
        stdout: o.stdout.clone(),
        stderr: o.stderr.clone(),
        stdout_truncated: o.stdout_truncated,
        stderr_truncated: o.stderr_truncated,
        cpu_time_ms: o.cpu_time_ms,
        wall_time_ms: o.wall_time_ms,
        memory_peak_bytes: o.memory_peak_bytes,
    }
}

pub fn to_proto(r: &ExecutionResult) -> pb::ExecuteResult {
    let o = &r.run;
    pb::ExecuteResult {
        id: r.id.clone(),
        language: r.language.clone(),
        version: r.version.clone(),
        status: o.status.as_str().to_string(),
        exit_code: o.exit_code,
        signal: o.signal.clone(),
        stdout: o.stdout.clone(),
        stderr: o.stderr.clone(),
        stdout_truncated: o.stdout_truncated,
        stderr_truncated: o.stderr_truncated,
        cpu_time_ms: o.cpu_time_ms,
        wall_time_ms: o.wall_time_ms,
        memory_peak_bytes: o.memory_peak_bytes,
        compile: r.compile.as_ref().map(outcome),
        cached: r.cached,
        compile_cached: r.compile_cached,
        encoding: r.encoding.clone(),
        tests: r
            .tests
            .iter()
            .flatten()
            .map(|t| pb::TestResult {
                name: t.name.clone(),
                verdict: t.verdict.as_str().to_string(),
                run: Some(outcome(&t.run)),
            })
            .collect(),
        summary: r.summary.as_ref().map(|s| pb::Summary {
            verdict: s.verdict.as_str().to_string(),
            passed: s.passed as u64,
            failed: s.failed as u64,
            skipped: s.skipped as u64,
            total: s.total as u64,
            wall_time_ms: s.wall_time_ms,
            cpu_time_ms: s.cpu_time_ms,
            memory_peak_bytes: s.memory_peak_bytes,
        }),
        files: r
            .files
            .iter()
            .flatten()
            .map(|f| {
                use base64::Engine as _;
                pb::OutputFile {
                    name: f.name.clone(),
                    content: base64::engine::general_purpose::STANDARD
                        .decode(&f.content)
                        .unwrap_or_default(),
                }
            })
            .collect(),
        files_skipped: r
            .files_skipped
            .iter()
            .map(|f| pb::SkippedFile {
                name: f.name.clone(),
                reason: f.reason.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_parse_with_a_margin() {
        let md = |v: &str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            m
        };
        assert_eq!(deadline_of(&md("500m")), Some(Duration::from_millis(450)));
        assert_eq!(deadline_of(&md("100m")), Some(Duration::from_millis(90)));
        assert_eq!(deadline_of(&md("2S")), Some(Duration::from_millis(1950)));
        assert_eq!(
            deadline_of(&md("1H")),
            Some(Duration::from_millis(3_599_950))
        );
        for bad in ["", "m", "10", "10x", "123456789S", "-1S"] {
            assert_eq!(deadline_of(&md(bad)), None, "{bad}");
        }
        assert_eq!(deadline_of(&tonic::metadata::MetadataMap::new()), None);
    }
}
