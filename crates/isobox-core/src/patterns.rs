//! The optional pattern policy ("malicious pattern detection" in SECURITY.md): regexes per
//! language that refuse a submission (422) before it runs.
//!
//! This is a policy tool (keep a class of programs off a shared service), not a security
//! boundary: a determined author can always write the same program another way. Isolation is
//! the sandbox's job. Off unless `ISOBOX_PATTERNS` names a file:
//!
//! ```toml
//! [[rule]]
//! name = "no-ctypes"            # shown in the 422 and the security log
//! language = "python"           # optional: every language when absent
//! pattern = 'import\s+ctypes'   # Rust regex syntax, matched against each file
//! ```

use regex::Regex;
use serde::Deserialize;

use crate::CoreError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(default)]
    language: Option<String>,
    pattern: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    rule: Vec<RuleFile>,
}

struct Rule {
    name: String,
    language: Option<String>,
    re: Regex,
}

/// Compiled rules.
#[derive(Default)]
pub struct PatternPolicy {
    rules: Vec<Rule>,
}

impl PatternPolicy {
    pub fn parse(text: &str) -> Result<PatternPolicy, CoreError> {
        let file: PolicyFile = toml::from_str(text)
            .map_err(|e| CoreError::Config(format!("invalid pattern policy: {e}")))?;
        let mut rules = Vec::new();
        for r in file.rule {
            let re = Regex::new(&r.pattern)
                .map_err(|e| CoreError::Config(format!("pattern rule `{}`: {e}", r.name)))?;
            rules.push(Rule {
                name: r.name,
                language: r.language.map(|l| l.to_ascii_lowercase()),
                re,
            });
        }
        Ok(PatternPolicy { rules })
    }

    pub fn load(path: &std::path::Path) -> Result<PatternPolicy, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CoreError::Config(format!(
                "cannot read pattern policy {}: {e}",
                path.display()
            ))
        })?;
        PatternPolicy::parse(&text)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name of the first rule that matches one of `sources` for `language`, if any.
    pub fn first_match<'a>(
        &self,
        language: &str,
        sources: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> Option<&str> {
        self.rules
            .iter()
            .filter(|r| r.language.as_deref().is_none_or(|l| l == language))
            .find(|r| {
                sources
                    .clone()
                    .any(|s| r.re.is_match(&String::from_utf8_lossy(s)))
            })
            .map(|r| r.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_per_language() {
        let p = PatternPolicy::parse(
            "[[rule]]\nname = \"ctypes\"\nlanguage = \"python\"\npattern = 'import\\s+ctypes'\n\
             [[rule]]\nname = \"fork\"\npattern = 'fork\\('\n",
        )
        .unwrap();
        let src = |s: &'static str| std::iter::once(s.as_bytes());
        assert_eq!(
            p.first_match("python", src("import  ctypes")),
            Some("ctypes")
        );
        assert_eq!(p.first_match("ruby", src("import ctypes")), None);
        assert_eq!(p.first_match("c", src("int main(){fork();}")), Some("fork"));
        assert_eq!(p.first_match("python", src("print(1)")), None);
        assert!(PatternPolicy::parse("[[rule]]\nname='x'\npattern='('\n").is_err());
        assert!(PatternPolicy::parse("[[rule]]\nname='x'\npatern='a'\n").is_err());
    }
}
