//! The Judge0 routes in the OpenAPI document, under the default prefix `/judge0` (they follow
//! `ISOBOX_JUDGE0_PREFIX`). Bodies are Judge0's; see its documentation for the attributes.

use serde_json::{json, Map, Value};

fn r(codes: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for (code, what) in codes {
        m.insert(
            code.to_string(),
            json!({ "description": what, "content": { "application/json": { "schema": { "type": ["object", "array"] } } } }),
        );
    }
    Value::Object(m)
}

fn q(names: &[&str]) -> Value {
    Value::Array(
        names
            .iter()
            .map(|n| json!({ "name": n, "in": "query", "required": false, "schema": { "type": "string" } }))
            .collect(),
    )
}

const AUTH: [(&str, &str); 3] = [
    (
        "401",
        "missing or invalid credentials (X-Auth-Token or the API key header)",
    ),
    ("429", "rate limited"),
    (
        "503",
        "the identity provider or the job store is unreachable",
    ),
];

fn with_auth(codes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = codes.to_vec();
    v.extend(AUTH);
    v
}

/// The Judge0 paths, keyed by path under `/judge0`.
pub fn paths() -> Map<String, Value> {
    let body = |name: &str, summary: &str, value: Value| {
        json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" },
            "examples": crate::http::openapi::examples_of(&[(name, summary, value)]) } } })
    };
    let submission =
        json!({ "source_code": "print('Hello, ' + input())", "language_id": 71, "stdin": "world" });
    let p = json!({
        "/judge0/submissions": { "post": {
            "operationId": "judge0CreateSubmission",
            "summary": "Judge0: create a submission (?base64_encoded, ?wait, ?fields); 201 {\"token\"} or, with wait, the submission",
            "parameters": q(&["base64_encoded", "wait", "fields"]),
            "requestBody": body("hello", "A Python 3 submission (language_id 71) and its stdin", submission.clone()),
            "responses": r(&with_auth(&[("201", "created"), ("400", "invalid fields or body"), ("403", "not allowed by the policy"), ("413", "body too large"), ("415", "not JSON"), ("422", "field errors {\"field\": [\"message\"]}")]))
        }},
        "/judge0/submissions/batch": {
            "post": {
                "operationId": "judge0CreateBatch",
                "summary": "Judge0: create submissions; per submission {\"token\"} or its field errors",
                "parameters": q(&["base64_encoded"]),
                "requestBody": body("two", "Two submissions", json!({ "submissions": [
                    submission,
                    { "source_code": "echo 2", "language_id": 46 } ] })),
                "responses": r(&with_auth(&[("201", "at least one created"), ("400", "empty or too large a batch"), ("413", "body too large"), ("415", "not JSON"), ("422", "none created")]))
            },
            "get": {
                "operationId": "judge0GetBatch",
                "summary": "Judge0: submissions by ?tokens=a,b,c (unknown ones null)",
                "parameters": q(&["tokens", "base64_encoded", "fields"]),
                "responses": r(&with_auth(&[("200", "{\"submissions\": [...]}"), ("400", "no tokens, too many, invalid fields, or output not UTF-8 without base64")]))
            }
        },
        "/judge0/submissions/{token}": {
            "get": {
                "operationId": "judge0GetSubmission",
                "summary": "Judge0: a submission (?base64_encoded, ?fields)",
                "parameters": [ { "name": "token", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "responses": r(&with_auth(&[("200", "the submission"), ("400", "invalid fields, or output not UTF-8 without base64"), ("404", "unknown, expired, or another caller's")]))
            },
            "delete": {
                "operationId": "judge0DeleteSubmission",
                "summary": "Judge0: delete a finished submission; answered base64",
                "parameters": [ { "name": "token", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "responses": r(&with_auth(&[("200", "the deleted submission"), ("400", "still in queue or processing"), ("404", "unknown, expired, or another caller's")]))
            }
        },
        "/judge0/languages": { "get": { "operationId": "judge0Languages", "summary": "Judge0: [{id, name}] of the languages this host runs", "responses": r(&with_auth(&[("200", "languages")])) } },
        "/judge0/languages/all": { "get": { "operationId": "judge0LanguagesAll", "summary": "Judge0: [{id, name, is_archived}]", "responses": r(&with_auth(&[("200", "languages")])) } },
        "/judge0/languages/{id}": { "get": {
            "operationId": "judge0Language",
            "summary": "Judge0: one language",
            "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
            "responses": r(&with_auth(&[("200", "the language"), ("404", "no such language on this host")]))
        }},
        "/judge0/statuses": { "get": { "operationId": "judge0Statuses", "summary": "Judge0: its 14 statuses", "responses": r(&with_auth(&[("200", "statuses")])) } },
        "/judge0/about": { "get": { "operationId": "judge0About", "summary": "Judge0: version and maintainer", "responses": r(&with_auth(&[("200", "about")])) } },
        "/judge0/version": { "get": { "operationId": "judge0Version", "summary": "Judge0: the emulated version, plain text", "responses": { "200": { "description": "version", "content": { "text/plain": { "schema": { "type": "string" } } } }, "401": { "description": "missing or invalid credentials" }, "429": { "description": "rate limited" }, "503": { "description": "the identity provider is unreachable" } } } },
        "/judge0/config_info": { "get": { "operationId": "judge0ConfigInfo", "summary": "Judge0: our effective limits in Judge0's names and units", "responses": r(&with_auth(&[("200", "configuration")])) } }
    });
    match p {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
