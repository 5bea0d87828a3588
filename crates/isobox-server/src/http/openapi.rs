//! The OpenAPI 3 description served at `/openapi.json`. Written by hand next to the routes; a
//! test walks it against the real router and schemathesis checks the server against it.
//! [`conventions`] gives every operation (the compatibility APIs' too) its tag and its
//! security requirement; `servers`, `tags` and `components.securitySchemes` are declared here.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// A required JSON request body of the schema `schema`, with named examples (`(name,
/// summary, value)`).
pub fn json_body(schema: &str, examples: &[(&str, &str, Value)]) -> Value {
    let mut media = json!({ "schema": { "$ref": format!("#/components/schemas/{schema}") } });
    if !examples.is_empty() {
        media["examples"] = examples_of(examples);
    }
    json!({ "required": true, "content": { "application/json": media } })
}

/// An `examples` map: name -> `{summary, value}`.
pub fn examples_of(examples: &[(&str, &str, Value)]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, summary, value) in examples {
        m.insert(
            (*name).into(),
            json!({ "summary": summary, "value": value }),
        );
    }
    Value::Object(m)
}

/// Examples of an ExecuteRequest: a program with stdin, one with limits, one judged against
/// test cases.
fn execute_examples() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "hello",
            "A Python program and its stdin",
            json!({ "language": "python", "code": "print('Hello, ' + input())", "stdin": "world" }),
        ),
        (
            "limits",
            "A C program with limits of its own",
            json!({ "language": "c", "code": "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
                    "limits": { "timeout_ms": 2000, "cpu_time_ms": 1000, "memory_mb": 128, "max_processes": 16, "max_output_bytes": 65536 } }),
        ),
        (
            "tests",
            "Judged against test cases (compiled once, each case a fresh sandbox)",
            json!({ "language": "python", "code": "print(int(input()) * 2)",
                    "tests": [ { "name": "two", "stdin": "2", "expected_output": "4" }, { "name": "five", "stdin": "5", "expected_output": "10" } ],
                    "compare": "trim" }),
        ),
    ]
}

/// The tags, in the order a reader meets them.
const TAGS: &[(&str, &str)] = &[
    (
        "execution",
        "Run a program: at once, streamed, interactively, or only checked",
    ),
    (
        "jobs",
        "Asynchronous executions: queue, then poll or get a callback",
    ),
    ("languages", "What this host can run"),
    ("service", "Health, Prometheus metrics and this document"),
    ("playground", "The browser page"),
    (
        "judge0",
        "The Judge0 CE compatible API (prefix ISOBOX_JUDGE0_PREFIX)",
    ),
    (
        "piston",
        "The Piston v2 compatible API (prefix ISOBOX_PISTON_PREFIX)",
    ),
];

/// The tag of the operations under `path`.
fn tag_of(path: &str) -> &'static str {
    if path.starts_with("/api/v1/executions") {
        "jobs"
    } else if path.starts_with("/api/v1/languages") {
        "languages"
    } else if path.starts_with("/api/v1/") {
        "execution"
    } else if path.starts_with("/judge0/") {
        "judge0"
    } else if path.starts_with("/piston/") {
        "piston"
    } else if path == "/" || path.starts_with("/assets/") {
        "playground"
    } else {
        "service"
    }
}

/// The credentials an operation under `path` takes: any one of the configured methods
/// (AUTH_TYPE decides which the server accepts; with `none`, on loopback only, none is
/// needed: the empty requirement). The service routes and the Playground are public.
fn security_of(path: &str) -> Value {
    let gated = ["/api/v1/", "/judge0/", "/piston/"]
        .iter()
        .any(|p| path.starts_with(p));
    if !gated {
        return json!([]);
    }
    let mut any = vec![json!({ "apiKey": [] })];
    if path.starts_with("/judge0/") {
        any.push(json!({ "judge0AuthToken": [] }));
    }
    any.extend([
        json!({ "bearer": [] }),
        json!({ "mutualTLS": [] }),
        json!({}),
    ]);
    Value::Array(any)
}

/// The conventions every operation of `doc` follows, the compatibility APIs' included: its
/// tag and its security requirement (both unless it states its own); and the document's
/// `tags`, `servers` and `components.securitySchemes`.
pub fn conventions(doc: &mut Value) {
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    continue;
                }
                if op.get("tags").is_none() {
                    op["tags"] = json!([tag_of(path)]);
                }
                if op.get("security").is_none() {
                    op["security"] = security_of(path);
                }
            }
        }
    }
    doc["tags"] = Value::Array(
        TAGS.iter()
            .map(|(name, what)| json!({ "name": name, "description": what }))
            .collect(),
    );
    doc["servers"] = json!([
        { "url": "/", "description": "The server that serves this document (REST_PORT, default 8000)" }
    ]);
    doc["components"]["securitySchemes"] = json!({
        "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key",
            "description": "AUTH_TYPE=apikey: a key of API_KEYS or ISOBOX_API_KEYS_FILE. The header is API_KEY_HEADER (default X-API-Key)." },
        "judge0AuthToken": { "type": "apiKey", "in": "header", "name": "X-Auth-Token",
            "description": "The Judge0 API's header, taken as an API key (AUTH_TYPE=apikey)." },
        "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "Authorization: Bearer. AUTH_TYPE=jwt: a JWT signed by a key of JWT_PUBLIC_KEY_URL, of JWT_ISSUER_URL, for JWT_AUDIENCE. AUTH_TYPE=oauth2: an OAuth2 access token, checked with OAUTH2_INTROSPECTION_URL or OAUTH2_USERINFO_URL." },
        "mutualTLS": { "type": "mutualTLS",
            "description": "AUTH_TYPE=mtls: a client certificate signed by MTLS_CA_CERT (TLS_CERT and TLS_KEY serve HTTPS)." }
    });
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
                "requestBody": json_body("ExecuteRequest", &execute_examples()),
                "responses": execute_responses
            }},
            "/api/v1/execute/stream": { "post": {
                "operationId": "executeStream",
                "summary": "Run a program and stream its output (Server-Sent Events: stdout, stderr, then result or error)",
                "requestBody": json_body("ExecuteRequest", &execute_examples()[..1]),
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
                "requestBody": json_body("ExecuteRequest", &[(
                    "syntax_error",
                    "A Python program missing a parenthesis: valid false, the error in errors",
                    json!({ "language": "python", "code": "print('unclosed'\n" }),
                )]),
                "responses": validate_responses
            }},
            "/api/v1/executions": { "post": {
                "operationId": "submitJob",
                "summary": "Queue a program; with ?wait=true, wait for its result",
                "parameters": [ { "name": "wait", "in": "query", "required": false, "schema": { "type": "boolean" } } ],
                "requestBody": json_body("JobRequest", &[(
                    "hello",
                    "A job: its id at once (202), its result from GET /api/v1/executions/{id}",
                    json!({ "language": "python", "code": "print('Hello, ' + input())", "stdin": "world" }),
                )]),
                "responses": submit_responses
            }},
            "/api/v1/executions/batch": { "post": {
                "operationId": "submitBatch",
                "summary": "Queue several programs at once (all or none)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["submissions"], "properties": {
                        "submissions": { "type": "array", "minItems": 1, "items": { "$ref": "#/components/schemas/JobRequest" } } } },
                    "examples": examples_of(&[(
                        "two",
                        "Two jobs, queued together",
                        json!({ "submissions": [
                            { "language": "python", "code": "print(1)" },
                            { "language": "bash", "code": "echo 2" } ] }),
                    )]) } } },
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
