//! The OpenAPI 3 description served at `/openapi.json`. Written by hand next to the routes; a
//! test walks it against the real router and schemathesis checks the server against it.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

/// The native API's document; [`crate::openapi_document`] adds the compatibility APIs.
pub fn document() -> Value {
    let limits = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "timeout_ms": { "type": "integer", "minimum": 1 },
            "cpu_time_ms": { "type": "integer", "minimum": 1 },
            "memory_mb": { "type": "integer", "minimum": 8 },
            "max_processes": { "type": "integer", "minimum": 2 },
            "max_output_bytes": { "type": "integer", "minimum": 1 }
        }
    });
    let outcome_props = json!({
        "status": { "type": "string", "enum": ["ok", "runtime_error", "signal", "timeout", "memory_limit", "output_limit", "compile_error", "internal_error"] },
        "exit_code": { "type": ["integer", "null"] },
        "signal": { "type": ["string", "null"] },
        "stdout": { "type": "string" },
        "stderr": { "type": "string" },
        "stdout_truncated": { "type": "boolean" },
        "stderr_truncated": { "type": "boolean" },
        "cpu_time_ms": { "type": "integer", "minimum": 0 },
        "wall_time_ms": { "type": "integer", "minimum": 0 },
        "memory_peak_bytes": { "type": "integer", "minimum": 0 }
    });
    let mut result_props = outcome_props.as_object().cloned().unwrap_or_default();
    result_props.insert("id".into(), json!({ "type": "string" }));
    result_props.insert("language".into(), json!({ "type": "string" }));
    result_props.insert("version".into(), json!({ "type": "string" }));
    result_props.insert("cached".into(), json!({ "type": "boolean" }));
    result_props.insert(
        "compile".into(),
        json!({ "oneOf": [ { "type": "null" }, { "$ref": "#/components/schemas/Outcome" } ] }),
    );
    result_props.insert("compile_cached".into(), json!({ "type": "boolean" }));
    result_props.insert(
        "encoding".into(),
        json!({ "type": "string", "enum": ["base64"] }),
    );
    let verdicts = json!([
        "accepted",
        "wrong_answer",
        "compile_error",
        "runtime_error",
        "signal",
        "timeout",
        "memory_limit",
        "output_limit",
        "internal_error",
        "skipped"
    ]);
    let mut test_props = outcome_props.as_object().cloned().unwrap_or_default();
    test_props.insert("name".into(), json!({ "type": "string" }));
    test_props.insert(
        "verdict".into(),
        json!({ "type": "string", "enum": verdicts }),
    );
    result_props.insert(
        "tests".into(),
        json!({ "type": "array", "items": { "type": "object", "required": ["name", "verdict", "status"], "properties": Value::Object(test_props) } }),
    );
    result_props.insert(
        "summary".into(),
        json!({ "type": "object", "required": ["verdict", "passed", "failed", "skipped", "total"], "properties": {
            "verdict": { "type": "string", "enum": verdicts },
            "passed": { "type": "integer", "minimum": 0 },
            "failed": { "type": "integer", "minimum": 0 },
            "skipped": { "type": "integer", "minimum": 0 },
            "total": { "type": "integer", "minimum": 0 },
            "wall_time_ms": { "type": "integer", "minimum": 0 },
            "cpu_time_ms": { "type": "integer", "minimum": 0 },
            "memory_peak_bytes": { "type": "integer", "minimum": 0 } } }),
    );
    result_props.insert(
        "files".into(),
        json!({ "type": "array", "items": { "type": "object", "required": ["name", "size", "content"], "properties": {
            "name": { "type": "string" }, "size": { "type": "integer", "minimum": 0 },
            "content": { "type": "string", "contentEncoding": "base64" } } } }),
    );
    result_props.insert(
        "files_skipped".into(),
        json!({ "type": "array", "items": { "type": "object", "required": ["name", "reason"], "properties": {
            "name": { "type": "string" },
            "reason": { "type": "string", "enum": ["symlink", "not_regular", "too_many_files", "too_large"] } } } }),
    );
    let execute_request = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["language"],
        "properties": {
            "language": { "type": "string" },
            "version": { "type": ["string", "null"] },
            "code": { "type": ["string", "null"] },
            "files": { "type": ["array", "null"], "items": { "type": "object", "additionalProperties": false, "required": ["name", "content"], "properties": {
                "name": { "type": "string" }, "content": { "type": "string" },
                "encoding": { "type": ["string", "null"], "enum": ["utf8", "utf-8", "base64", null] } } } },
            "stdin": { "type": ["string", "null"] },
            "args": { "type": ["array", "null"], "items": { "type": "string" } },
            "limits": { "oneOf": [ { "type": "null" }, limits.clone() ] },
            "encoding": { "type": ["string", "null"], "enum": ["utf8", "utf-8", "base64", null],
                "description": "how code, stdin and the tests' stdin and expected_output are given, and how stdout and stderr are returned" },
            "tests": { "type": ["array", "null"], "minItems": 1, "description": "test cases: compiled once, each run in a fresh sandbox",
                "items": { "type": "object", "additionalProperties": false, "properties": {
                    "name": { "type": ["string", "null"] },
                    "stdin": { "type": ["string", "null"] },
                    "args": { "type": ["array", "null"], "items": { "type": "string" } },
                    "expected_output": { "type": ["string", "null"] } } } },
            "compare": { "oneOf": [
                { "type": "null" },
                { "type": "string", "enum": ["exact", "trim", "tokens", "float"] },
                { "type": "object", "additionalProperties": false, "required": ["mode"], "properties": {
                    "mode": { "type": "string", "enum": ["exact", "trim", "tokens", "float"] },
                    "absolute": { "type": ["number", "null"], "minimum": 0 },
                    "relative": { "type": ["number", "null"], "minimum": 0 } } } ] },
            "stop_on_failure": { "type": ["boolean", "null"] },
            "outputs": { "type": ["array", "null"], "items": { "type": "string" }, "description": "files (names or globs) to return from the work dir" },
            "compile_args": { "type": ["array", "null"], "items": { "type": "string" } },
            "compile_limits": { "oneOf": [ { "type": "null" }, limits.clone() ] },
            "stderr_to_stdout": { "type": ["boolean", "null"] }
        }
    });
    // An async submission: the request plus where to POST the result (signed).
    let mut job_request = execute_request.clone();
    job_request["properties"]["callback_url"] = json!({ "type": ["string", "null"] });
    // A job's record: its state, and once done every field of the result at the top level
    // (or `error` when the run could not happen).
    let mut job_props = result_props.clone();
    job_props.insert(
        "state".into(),
        json!({ "type": "string", "enum": ["queued", "running", "done"] }),
    );
    for t in ["submitted_at", "started_at", "finished_at"] {
        job_props.insert(t.into(), json!({ "type": "integer", "minimum": 0 }));
    }
    job_props.insert(
        "error".into(),
        json!({ "$ref": "#/components/schemas/Error" }),
    );
    let common_errors = |extra: &[(&str, &str)]| {
        let mut r = serde_json::Map::new();
        for (code, what) in [
            (
                "400",
                "invalid request (malformed JSON, unknown field, bad limit, unknown language)",
            ),
            ("413", "body, code, files, stdin or args over the limits"),
            ("415", "the body is not application/json"),
            ("401", "missing or invalid credentials"),
            ("403", "the permission policy does not allow this request"),
            (
                "429",
                "rate limited (see Retry-After and RateLimit-* headers)",
            ),
            (
                "503",
                "all sandbox slots busy, or the identity provider unreachable (see Retry-After)",
            ),
        ]
        .iter()
        .chain(extra)
        {
            r.insert((*code).into(), error_response(what));
        }
        Value::Object(r)
    };
    let mut execute_responses = common_errors(&[
        ("422", "refused by the pattern policy"),
        ("500", "the sandbox failed"),
    ]);
    execute_responses["200"] = json!({ "description": "the program ran, whatever it did", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ExecutionResult" } } } });
    let mut stream_responses = common_errors(&[
        ("422", "refused by the pattern policy"),
        ("500", "the sandbox failed"),
    ]);
    // One Server-Sent Event (OpenAPI 3.1 describes a stream by its event): which event, and
    // its data line, always JSON.
    let sse_event = json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {
                "type": "string",
                "enum": ["compile", "stdout", "stderr", "result", "error"],
                "description": "`compile`: the compile step's outcome (compiled languages, before any output); `stdout`/`stderr`: a chunk of output; then one `result` or one `error`",
            },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "description": "`compile`: an Outcome; `stdout`/`stderr`: the text as a JSON string; `result`: an ExecutionResult; `error`: an Error",
            },
            "id": { "type": "string" },
            "retry": { "type": "integer" },
        },
    });
    stream_responses["200"] = json!({ "description": "events as the program runs", "content": { "text/event-stream": { "schema": sse_event } } });
    let mut validate_responses = common_errors(&[
        ("422", "refused by the pattern policy"),
        ("500", "the sandbox failed"),
    ]);
    validate_responses["200"] = json!({ "description": "the syntax check ran", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Validation" } } } });
    let job_errors = |extra: &[(&str, &str)]| {
        let mut r = common_errors(extra);
        r["503"] = error_response("the job queue is unavailable (Redis unreachable), or the identity provider (see Retry-After)");
        r
    };
    let job = |what: &str| json!({ "description": what, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } });
    let mut submit_responses = job_errors(&[
        ("422", "refused by the pattern policy"),
        ("500", "internal failure"),
    ]);
    submit_responses["202"] = job("queued (or, with ?wait=true, not done within 60 s): the job's id and state; Location names it");
    submit_responses["200"] = job("with ?wait=true: the finished job");
    let mut batch_responses = job_errors(&[
        ("422", "a submission is refused by the pattern policy"),
        ("500", "internal failure"),
    ]);
    batch_responses["202"] = json!({ "description": "queued: the jobs' ids, in the order of the submissions", "content": { "application/json": { "schema": {
        "type": "object", "required": ["ids"], "properties": { "ids": { "type": "array", "items": { "type": "string" } } } } } } });
    let mut get_job_responses =
        job_errors(&[("404", "no such job (unknown, expired, or another caller's)")]);
    get_job_responses["200"] = job("the job");
    json!({
        "openapi": "3.1.0",
        "info": { "title": "IsoBox", "version": env!("CARGO_PKG_VERSION"), "description": "Run untrusted code in an isolated sandbox." },
        "paths": {
            "/api/v1/execute": { "post": {
                "operationId": "execute",
                "summary": "Run a program and return what it did",
                "requestBody": json_body("ExecuteRequest"),
                "responses": execute_responses
            }},
            "/api/v1/execute/stream": { "post": {
                "operationId": "executeStream",
                "summary": "Run a program and stream its output (Server-Sent Events: stdout, stderr, then result or error)",
                "requestBody": json_body("ExecuteRequest"),
                "responses": stream_responses
            }},
            "/api/v1/execute/ws": { "get": {
                "operationId": "executeInteractive",
                "summary": "Interactive run over a WebSocket: first message the request, then {\"stdin\"} / {\"close_stdin\"}; output and result messages back",
                "responses": {
                    "101": { "description": "switching to the WebSocket protocol" },
                    "400": error_response("not a WebSocket upgrade request"),
                    "401": error_response("missing or invalid credentials"),
                    "429": error_response("rate limited"),
                    "503": error_response("the identity provider is unreachable")
                }
            }},
            "/api/v1/validate": { "post": {
                "operationId": "validate",
                "summary": "Check a program's syntax in the sandbox without running it",
                "requestBody": json_body("ExecuteRequest"),
                "responses": validate_responses
            }},
            "/api/v1/executions": { "post": {
                "operationId": "submitJob",
                "summary": "Queue a program; with ?wait=true, wait for its result",
                "parameters": [ { "name": "wait", "in": "query", "required": false, "schema": { "type": "boolean" } } ],
                "requestBody": json_body("JobRequest"),
                "responses": submit_responses
            }},
            "/api/v1/executions/batch": { "post": {
                "operationId": "submitBatch",
                "summary": "Queue several programs at once (all or none)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["submissions"], "properties": {
                        "submissions": { "type": "array", "minItems": 1, "items": { "$ref": "#/components/schemas/JobRequest" } } } } } } },
                "responses": batch_responses
            }},
            "/api/v1/executions/{id}": { "get": {
                "operationId": "getJob",
                "summary": "A queued, running or finished job",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "responses": get_job_responses
            }},
            "/api/v1/languages": { "get": {
                "operationId": "languages",
                "summary": "The languages this host can run",
                "responses": {
                    "401": error_response("missing or invalid credentials"),
                    "429": error_response("rate limited"),
                    "503": error_response("the identity provider is unreachable"),
                    "200": { "description": "languages", "content": { "application/json": { "schema": {
                    "type": "array",
                    "items": { "type": "object", "required": ["name", "aliases", "version", "compiled"], "properties": {
                        "name": { "type": "string" }, "aliases": { "type": "array", "items": { "type": "string" } },
                        "version": { "type": "string" }, "compiled": { "type": "boolean" }, "runtime": { "type": "string", "description": "host, or the runtime it comes from" } } }
                } } } } }
            }},
            "/": { "get": {
                "operationId": "playground",
                "summary": "The Playground: a page to run code from a browser (its script and style sheet under /assets/; public, the API still needs credentials)",
                "responses": { "200": { "description": "the page", "content": { "text/html": { "schema": { "type": "string" } } } } }
            }},
            "/health": { "get": {
                "operationId": "health",
                "summary": "Whether the server can run code",
                "responses": {
                    "200": { "description": "healthy", "content": { "application/json": { "schema": { "type": "object", "required": ["status"], "properties": { "status": { "type": "string" } } } } } },
                    "503": { "description": "shutting down or unable to run code", "content": { "application/json": { "schema": { "type": "object", "properties": { "status": { "type": "string" } } } } } }
                }
            }},
            "/metrics": { "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": { "200": { "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } } }
            }},
            "/openapi.json": { "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3 document", "content": { "application/json": { "schema": { "type": "object" } } } } }
            }}
        },
        "components": { "schemas": {
            "Error": { "type": "object", "required": ["error", "message"], "properties": {
                "error": { "type": "string" }, "message": { "type": "string" } } },
            "ExecuteRequest": execute_request,
            "JobRequest": job_request,
            "Job": { "type": "object", "required": ["id", "state"], "properties": Value::Object(job_props) },
            "Outcome": { "type": "object", "required": ["status", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "cpu_time_ms", "wall_time_ms", "memory_peak_bytes"], "properties": outcome_props },
            "ExecutionResult": { "type": "object", "required": ["id", "language", "version", "status", "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "compile", "cpu_time_ms", "wall_time_ms", "memory_peak_bytes", "cached"], "properties": Value::Object(result_props) },
            "Validation": { "type": "object", "required": ["valid", "errors"], "properties": { "valid": { "type": "boolean" }, "errors": { "type": "string" } } }
        } }
    })
}
