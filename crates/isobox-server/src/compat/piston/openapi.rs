//! The Piston routes in the OpenAPI document (at the default prefix, `/piston`).

use serde_json::{json, Value};

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PistonError" } } } })
}

/// Adds the Piston paths and schemas to `doc` (an OpenAPI 3 document with `paths` and
/// `components.schemas`).
pub fn add(doc: &mut Value) {
    let admission = [
        (
            "401",
            "missing or invalid credentials (the same keys as /api/v1)",
        ),
        ("429", "rate limited (see Retry-After)"),
        (
            "503",
            "the identity provider is unreachable, or all sandbox slots are busy",
        ),
    ];
    let mut runtimes = serde_json::Map::new();
    let mut execute = serde_json::Map::new();
    let mut connect = serde_json::Map::new();
    for (code, what) in admission {
        for m in [&mut runtimes, &mut execute, &mut connect] {
            m.insert(code.into(), error(what));
        }
    }
    runtimes.insert("200".into(), json!({ "description": "the languages this host runs", "content": { "application/json": { "schema": {
        "type": "array", "items": { "$ref": "#/components/schemas/PistonRuntime" } } } } }));
    for (code, what) in [
        ("400", "invalid job (Piston's messages: `<language>-<version> runtime is unknown`, `files is required as an array`, `run_timeout cannot exceed the configured limit of 30000`, ...)"),
        ("403", "the permission policy does not allow this request"),
        ("413", "body, files, stdin or args over the limits"),
        ("415", "requests must be of type application/json"),
        ("422", "refused by the pattern policy"),
        ("500", "the sandbox failed"),
    ] {
        execute.insert(code.into(), error(what));
    }
    execute.insert("200".into(), json!({ "description": "the program ran, whatever it did", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PistonResult" } } } }));
    connect.insert(
        "101".into(),
        json!({ "description": "switching to the WebSocket protocol" }),
    );
    connect.insert("400".into(), error("not a WebSocket upgrade request"));
    let paths = json!({
        "/piston/api/v2/runtimes": { "get": {
            "operationId": "pistonRuntimes",
            "summary": "Piston v2: the languages this host runs, with their versions and aliases (prefix: ISOBOX_PISTON_PREFIX)",
            "responses": runtimes
        }},
        "/piston/api/v2/execute": { "post": {
            "operationId": "pistonExecute",
            "summary": "Piston v2: run a job (files, stdin, args, limits) and return its compile and run stages",
            "requestBody": crate::http::openapi::json_body("PistonJob", &[(
                "hello",
                "A Python job, any version, with stdin",
                json!({ "language": "python", "version": "*", "files": [ { "name": "main.py", "content": "print('Hello, ' + input())" } ], "stdin": "world" }),
            )]),
            "responses": execute
        }},
        "/piston/api/v2/connect": { "get": {
            "operationId": "pistonConnect",
            "summary": "Piston v2 interactive WebSocket: client `init` (a job), `data` (stdin), `signal`; server `runtime`, `stage`, `data`, `exit`, `error`; close 4999 when done, 4000-4005 on protocol errors",
            "responses": connect
        }}
    });
    let limit = |what: &str| json!({ "type": "number", "description": what });
    let stage_props = json!({
        "stdout": { "type": "string" },
        "stderr": { "type": "string" },
        "output": { "type": "string", "description": "stdout, then stderr" },
        "code": { "type": ["integer", "null"] },
        "signal": { "type": ["string", "null"] },
        "message": { "type": ["string", "null"] },
        "status": { "type": ["string", "null"], "enum": ["RE", "SG", "TO", "OL", "EL", "XX", null] },
        "cpu_time": { "type": "integer", "minimum": 0 },
        "wall_time": { "type": "integer", "minimum": 0 },
        "memory": { "type": "integer", "minimum": 0 }
    });
    let schemas = json!({
        "PistonError": { "type": "object", "required": ["message"], "properties": { "message": { "type": "string" } } },
        "PistonRuntime": { "type": "object", "required": ["language", "version", "aliases"], "properties": {
            "language": { "type": "string" }, "version": { "type": "string" },
            "aliases": { "type": "array", "items": { "type": "string" } } } },
        "PistonJob": { "type": "object", "required": ["language", "version", "files"], "properties": {
            "language": { "type": "string" },
            "version": { "type": "string", "description": "a SemVer selector: `*`, `3.11.2`, `3.x`, `^3.10`, `>=3.9 <4`, ..." },
            "files": { "type": "array", "items": { "type": "object", "required": ["content"], "properties": {
                "name": { "type": "string" }, "content": { "type": "string" },
                "encoding": { "type": "string", "enum": ["utf8", "base64", "hex"] } } } },
            "stdin": { "type": "string" },
            "args": { "type": "array", "items": { "type": "string" } },
            "compile_timeout": limit("ms; -1: the language's maximum"),
            "run_timeout": limit("ms; -1: the server's maximum"),
            "compile_cpu_time": limit("ms"),
            "run_cpu_time": limit("ms"),
            "compile_memory_limit": limit("bytes"),
            "run_memory_limit": limit("bytes; -1: the server's maximum") } },
        "PistonStage": { "type": "object", "required": ["stdout", "stderr", "output", "code", "signal", "message", "status", "cpu_time", "wall_time", "memory"], "properties": stage_props },
        "PistonResult": { "type": "object", "required": ["language", "version", "run"], "properties": {
            "language": { "type": "string" }, "version": { "type": "string" },
            "run": { "$ref": "#/components/schemas/PistonStage" },
            "compile": { "$ref": "#/components/schemas/PistonStage" } } }
    });
    if let (Some(p), Some(new)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        p.extend(new.clone());
    }
    if let (Some(s), Some(new)) = (
        doc["components"]["schemas"].as_object_mut(),
        schemas.as_object(),
    ) {
        s.extend(new.clone());
    }
}
