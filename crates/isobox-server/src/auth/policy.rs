//! Authorization: the permission policy of SECURITY.md (`ISOBOX_POLICY`, TOML). Roles hold
//! permissions `{resource, action, conditions: [{field, operator, value}]}`; principals get roles
//! from their credential and from the policy's `principals` table; once a policy is set,
//! everything not allowed is denied.
//!
//! ```toml
//! [principals]
//! "apikey:alice" = ["student"]     # method:principal id -> extra roles
//!
//! [rate_limits]
//! student = "30/min"               # per-principal limit for holders of the role
//!
//! [[role]]
//! name = "student"
//! [[role.permission]]
//! resource = "code_execution"
//! action = "execute"               # or "validate", or "*"
//! conditions = [
//!   { field = "language", operator = "in", value = "python,java" },
//!   { field = "max_execution_time", operator = "lte", value = "10" },
//! ]
//! ```
//!
//! Fields: `language`, `max_execution_time` (seconds), `timeout_ms`, `cpu_time_ms`, `memory_mb`,
//! `max_processes`, `max_output_bytes`, `files`, `code_bytes`, `args`, `tests` (test cases),
//! `outputs` (result-file patterns), `compile_args` (compiler options), `compile_timeout_ms`,
//! `compile_cpu_time_ms`, `compile_memory_mb`, `compile_max_processes`,
//! `compile_max_output_bytes` (the compile step's limits: every field of `compile_limits`).
//! Operators: `in`, `not_in` (comma lists), `eq`, `lte`, `gte`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub operator: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    pub resource: String,
    pub action: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Role {
    name: String,
    #[serde(default)]
    permission: Vec<Permission>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    principals: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rate_limits: BTreeMap<String, String>,
    #[serde(default)]
    role: Vec<Role>,
}

const FIELDS: &[&str] = &[
    "language",
    "max_execution_time",
    "timeout_ms",
    "cpu_time_ms",
    "memory_mb",
    "max_processes",
    "max_output_bytes",
    "files",
    "code_bytes",
    "args",
    "tests",
    "outputs",
    "compile_args",
    "compile_timeout_ms",
    "compile_cpu_time_ms",
    "compile_memory_mb",
    "compile_max_processes",
    "compile_max_output_bytes",
];
const OPERATORS: &[&str] = &["in", "not_in", "eq", "lte", "gte"];

/// The request as the policy sees it (effective values: requested or the server's defaults).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub language: String,
    pub timeout_ms: u64,
    pub cpu_time_ms: u64,
    pub memory_mb: u64,
    pub max_processes: u64,
    pub max_output_bytes: u64,
    pub files: u64,
    pub code_bytes: u64,
    pub args: u64,
    pub tests: u64,
    pub outputs: u64,
    pub compile_args: u64,
    pub compile_timeout_ms: u64,
    pub compile_cpu_time_ms: u64,
    pub compile_memory_mb: u64,
    pub compile_max_processes: u64,
    pub compile_max_output_bytes: u64,
}

impl Facts {
    fn get(&self, field: &str) -> Value {
        match field {
            "language" => Value::Text(self.language.to_ascii_lowercase()),
            "max_execution_time" => Value::Num(self.timeout_ms.div_ceil(1000)),
            "timeout_ms" => Value::Num(self.timeout_ms),
            "cpu_time_ms" => Value::Num(self.cpu_time_ms),
            "memory_mb" => Value::Num(self.memory_mb),
            "max_processes" => Value::Num(self.max_processes),
            "max_output_bytes" => Value::Num(self.max_output_bytes),
            "files" => Value::Num(self.files),
            "code_bytes" => Value::Num(self.code_bytes),
            "args" => Value::Num(self.args),
            "tests" => Value::Num(self.tests),
            "outputs" => Value::Num(self.outputs),
            "compile_args" => Value::Num(self.compile_args),
            "compile_timeout_ms" => Value::Num(self.compile_timeout_ms),
            "compile_cpu_time_ms" => Value::Num(self.compile_cpu_time_ms),
            "compile_memory_mb" => Value::Num(self.compile_memory_mb),
            "compile_max_processes" => Value::Num(self.compile_max_processes),
            "compile_max_output_bytes" => Value::Num(self.compile_max_output_bytes),
            _ => Value::Text(String::new()),
        }
    }
}

enum Value {
    Text(String),
    Num(u64),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Num(n) => n.to_string(),
        }
    }
}

fn holds(c: &Condition, facts: &Facts) -> bool {
    let v = facts.get(&c.field);
    let list = || {
        c.value
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let num = || c.value.trim().parse::<u64>().ok();
    match c.operator.as_str() {
        "in" => list().contains(&v.text().to_ascii_lowercase()),
        "not_in" => !list().contains(&v.text().to_ascii_lowercase()),
        "eq" => v.text().eq_ignore_ascii_case(c.value.trim()),
        "lte" => matches!((&v, num()), (Value::Num(n), Some(m)) if *n <= m),
        "gte" => matches!((&v, num()), (Value::Num(n), Some(m)) if *n >= m),
        _ => false,
    }
}

/// A loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    roles: BTreeMap<String, Vec<Permission>>,
    principals: BTreeMap<String, Vec<String>>,
    pub rate_limits: BTreeMap<String, String>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        let f: PolicyFile = toml::from_str(text).map_err(|e| format!("invalid policy: {e}"))?;
        let mut roles = BTreeMap::new();
        for r in f.role {
            for p in &r.permission {
                for c in &p.conditions {
                    if !FIELDS.contains(&c.field.as_str()) {
                        return Err(format!("role `{}`: unknown field `{}`", r.name, c.field));
                    }
                    if !OPERATORS.contains(&c.operator.as_str()) {
                        return Err(format!(
                            "role `{}`: unknown operator `{}`",
                            r.name, c.operator
                        ));
                    }
                    if matches!(c.operator.as_str(), "lte" | "gte")
                        && c.value.trim().parse::<u64>().is_err()
                    {
                        return Err(format!(
                            "role `{}`: `{}` needs a whole number",
                            r.name, c.operator
                        ));
                    }
                }
            }
            roles.insert(r.name, r.permission);
        }
        for (role, limit) in &f.rate_limits {
            crate::ratelimit::Quota::parse(limit)
                .map_err(|e| format!("rate_limits.{role}: {e}"))?;
        }
        // A principal is named with its method: an API key's id, a certificate's CN and a
        // token's subject are different name spaces, and any of them may be chosen by whoever
        // holds that credential.
        for name in f.principals.keys() {
            let named = name
                .split_once(':')
                .is_some_and(|(m, id)| m.parse::<super::AuthMethod>().is_ok() && !id.is_empty());
            if !named {
                return Err(format!(
                    "principals: `{name}` must name its method, e.g. `apikey:{name}` \
                     (apikey, jwt, oauth2, mtls or none)"
                ));
            }
        }
        Ok(Policy {
            roles,
            principals: f.principals,
            rate_limits: f.rate_limits,
        })
    }

    pub fn load(path: &std::path::Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Policy::parse(&text)
    }

    /// The principal's roles: from its credential plus the policy's `principals` table, where
    /// it is named by its key (`method:id`).
    pub fn roles_of(&self, key: &str, from_credential: &[String]) -> Vec<String> {
        let mut r = from_credential.to_vec();
        if let Some(extra) = self.principals.get(key) {
            r.extend(extra.iter().cloned());
        }
        r.sort();
        r.dedup();
        r
    }

    /// Allowed, or the reason for a 403: which kind of rule failed, not what the policy says.
    pub fn check(
        &self,
        roles: &[String],
        resource: &str,
        action: &str,
        facts: &Facts,
    ) -> Result<(), String> {
        let mut failed_field: Option<String> = None;
        let mut any_permission = false;
        for role in roles {
            for p in self.roles.get(role).into_iter().flatten() {
                let res_ok = p.resource == resource || p.resource == "*";
                let act_ok = p.action == action || p.action == "*";
                if !res_ok || !act_ok {
                    continue;
                }
                any_permission = true;
                match p.conditions.iter().find(|c| !holds(c, facts)) {
                    None => return Ok(()),
                    Some(c) => {
                        failed_field.get_or_insert_with(|| c.field.clone());
                    }
                }
            }
        }
        Err(match (any_permission, failed_field) {
            (_, Some(f)) => format!("your permissions do not allow this `{f}`"),
            (false, _) => format!("your roles have no permission to {action} {resource}"),
            (true, None) => "denied".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[principals]
"apikey:alice" = ["student"]
[rate_limits]
student = "2/min"
[[role]]
name = "student"
[[role.permission]]
resource = "code_execution"
action = "execute"
conditions = [
  { field = "language", operator = "in", value = "python, java" },
  { field = "max_execution_time", operator = "lte", value = "10" },
  { field = "memory_mb", operator = "gte", value = "64" },
  { field = "language", operator = "not_in", value = "java" },
  { field = "files", operator = "eq", value = "1" },
]
[[role]]
name = "admin"
[[role.permission]]
resource = "*"
action = "*"
"#;

    fn facts(lang: &str, timeout_ms: u64, memory_mb: u64, files: u64) -> Facts {
        Facts {
            language: lang.into(),
            timeout_ms,
            memory_mb,
            files,
            ..Facts::default()
        }
    }

    #[test]
    fn every_operator() {
        let p = Policy::parse(POLICY).unwrap();
        let s = vec!["student".to_string()];
        assert!(p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("python", 5000, 128, 1)
            )
            .is_ok());
        // in
        assert!(p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("ruby", 5000, 128, 1)
            )
            .unwrap_err()
            .contains("language"));
        // not_in
        assert!(p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("java", 5000, 128, 1)
            )
            .unwrap_err()
            .contains("language"));
        // lte (10 s is fine, 10.001 s is not)
        assert!(p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("python", 10_000, 128, 1)
            )
            .is_ok());
        assert!(p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("python", 10_001, 128, 1)
            )
            .unwrap_err()
            .contains("max_execution_time"));
        // gte
        assert!(p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("python", 5000, 32, 1)
            )
            .unwrap_err()
            .contains("memory_mb"));
        // eq
        assert!(p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("python", 5000, 128, 2)
            )
            .unwrap_err()
            .contains("files"));
        // action not granted, no roles, admin wildcard
        assert!(p
            .check(
                &s,
                "code_execution",
                "validate",
                &facts("python", 5000, 128, 1)
            )
            .is_err());
        assert!(p
            .check(
                &[],
                "code_execution",
                "execute",
                &facts("python", 5000, 128, 1)
            )
            .is_err());
        assert!(p
            .check(
                &["admin".into()],
                "code_execution",
                "validate",
                &facts("cobol", 1, 1, 9)
            )
            .is_ok());
        // The message never shows the allowed values.
        let msg = p
            .check(
                &s,
                "code_execution",
                "execute",
                &facts("ruby", 5000, 128, 1),
            )
            .unwrap_err();
        assert!(!msg.contains("python") && !msg.contains("java"), "{msg}");
        assert_eq!(p.roles_of("apikey:alice", &[]), vec!["student".to_string()]);
    }

    /// A policy entry names one principal of one method: a client certificate with the CN, or
    /// a token with the subject, of an API key's id gets nothing from it.
    #[test]
    fn principals_are_named_with_their_method() {
        let p = Policy::parse(POLICY).unwrap();
        for other in [
            "mtls:alice",
            "jwt:alice",
            "oauth2:alice",
            "none:alice",
            "alice",
        ] {
            assert!(p.roles_of(other, &[]).is_empty(), "{other}");
        }
        let e = Policy::parse(
            "[principals]
\"alice\" = [\"admin\"]
",
        )
        .unwrap_err();
        assert!(e.contains("apikey:alice"), "{e}");
        for bad in ["\"basic:alice\"", "\"apikey:\""] {
            assert!(Policy::parse(&format!("[principals]\n{bad} = [\"admin\"]\n")).is_err());
        }
        assert!(Policy::parse("[principals]\n\"mtls:CN with: colon\" = [\"admin\"]\n").is_ok());
    }

    /// Every limit of `compile_limits` a caller can raise is a field a role can bound.
    #[test]
    fn every_compile_limit_can_be_bounded() {
        type Set = fn(&mut Facts, u64);
        let fields: [(&str, Set); 5] = [
            ("compile_timeout_ms", |f, v| f.compile_timeout_ms = v),
            ("compile_cpu_time_ms", |f, v| f.compile_cpu_time_ms = v),
            ("compile_memory_mb", |f, v| f.compile_memory_mb = v),
            ("compile_max_processes", |f, v| f.compile_max_processes = v),
            ("compile_max_output_bytes", |f, v| {
                f.compile_max_output_bytes = v
            }),
        ];
        for (field, set) in fields {
            let p = Policy::parse(&format!(
                "[[role]]\nname = 'r'\n[[role.permission]]\nresource = 'code_execution'\n\
                 action = '*'\nconditions = [{{ field = '{field}', operator = 'lte', value = '100' }}]\n"
            ))
            .unwrap_or_else(|e| panic!("{field}: {e}"));
            let check = |v: u64| {
                let mut f = Facts::default();
                set(&mut f, v);
                p.check(&["r".into()], "code_execution", "execute", &f)
            };
            assert!(check(100).is_ok(), "{field}");
            let e = check(101).expect_err(field);
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn bad_policies_are_refused() {
        for bad in [
            "[[role]]\nname='x'\n[[role.permission]]\nresource='a'\naction='b'\nconditions=[{field='colour',operator='in',value='x'}]\n",
            "[[role]]\nname='x'\n[[role.permission]]\nresource='a'\naction='b'\nconditions=[{field='memory_mb',operator='like',value='x'}]\n",
            "[[role]]\nname='x'\n[[role.permission]]\nresource='a'\naction='b'\nconditions=[{field='memory_mb',operator='lte',value='lots'}]\n",
            "[rate_limits]\nx = 'often'\n",
            "[[rol]]\nname='x'\n",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }
}
