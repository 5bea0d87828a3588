//! The language table: name, aliases, entry file, compile and run commands, default limits.
//! Loaded from TOML (the built-in `languages.toml`, or a file that replaces it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde::Deserialize;

use crate::CoreError;

/// The placeholder for the language's source files, one argument each (see `plan::command`).
pub const SOURCES: &str = "{sources}";

/// The placeholder for the request's `compile_args` in a compile command: as many arguments
/// as the request gives, none when it gives none. Only languages whose compile command has it
/// take `compile_args`.
pub const COMPILE_ARGS: &str = "{compile_args}";

/// The table shipped with the binary.
pub const BUILTIN_TABLE: &str = include_str!("../languages.toml");

/// [`BUILTIN_TABLE`] as JSON (build.rs), which is what the binary parses.
const BUILTIN_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/languages.json"));

/// Per-language limit defaults (all optional; unset values fall back to the server defaults).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitDefaults {
    pub timeout_ms: Option<u64>,
    pub cpu_time_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_processes: Option<u32>,
}

/// One language, as written in the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub extensions: Vec<String>,
    /// The extensions of the files `{sources}` stands for (default: `extensions`).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    pub file: String,
    #[serde(default)]
    pub compile: Option<Vec<String>>,
    pub run: Vec<String>,
    /// Syntax check for `validate`; compiled languages fall back to `compile`.
    #[serde(default)]
    pub check: Option<Vec<String>>,
    #[serde(default)]
    pub version: Vec<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub main_from: Option<String>,
    #[serde(default)]
    pub limits: LimitDefaults,
    #[serde(default)]
    pub compile_limits: LimitDefaults,
    /// `main_from` compiled, on first use (compiling every language's pattern cost a one-run
    /// CLI more than its table's parse).
    #[serde(skip)]
    main_re: OnceLock<Option<Regex>>,
    #[serde(skip)]
    pub(crate) version_cache: OnceLock<Option<String>>,
}

impl Language {
    pub fn compiled(&self) -> bool {
        self.compile.is_some()
    }

    /// The extensions `{sources}` takes: `sources`, or else `extensions`.
    pub fn source_extensions(&self) -> &[String] {
        self.sources.as_deref().unwrap_or(&self.extensions)
    }

    /// The syntax-check command, if the language has one.
    pub fn check_command(&self) -> Option<&Vec<String>> {
        self.check.as_ref().or(self.compile.as_ref())
    }

    /// The entry name found by `main_from` in the entry source, if the language has one.
    pub fn main_name(&self, source: &str) -> Option<String> {
        let re = self
            .main_re
            .get_or_init(|| self.main_from.as_deref().and_then(|p| Regex::new(p).ok()))
            .as_ref()?;
        re.captures(source)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_string())
    }

    /// Commands the language needs: `requires`, or else the first word of compile and run.
    pub fn required_commands(&self) -> Vec<&str> {
        if !self.requires.is_empty() {
            return self.requires.iter().map(String::as_str).collect();
        }
        let mut v = vec![self.run[0].as_str()];
        if let Some(c) = &self.compile {
            v.push(c[0].as_str());
        }
        v
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    language: Vec<Language>,
}

/// All languages, looked up by name, alias or file extension.
#[derive(Debug)]
pub struct LanguageTable {
    /// Shared, so that a validated request can hold its language (no second lookup by name).
    languages: Vec<Arc<Language>>,
}

impl LanguageTable {
    /// The built-in table.
    pub fn builtin() -> LanguageTable {
        // Its patterns compile (a unit test says so): each is compiled when first used.
        let file: TableFile =
            serde_json::from_str(BUILTIN_JSON).expect("the built-in language table is valid");
        LanguageTable::checked(file, false).expect("the built-in language table is valid")
    }

    /// Loads a table file that replaces the built-in one.
    pub fn load(path: &Path) -> Result<LanguageTable, CoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CoreError::Config(format!(
                "cannot read language table {}: {e}",
                path.display()
            ))
        })?;
        LanguageTable::parse(&text)
    }

    /// Parses and checks a table.
    pub fn parse(text: &str) -> Result<LanguageTable, CoreError> {
        let file: TableFile = toml::from_str(text)
            .map_err(|e| CoreError::Config(format!("invalid language table: {e}")))?;
        LanguageTable::checked(file, true)
    }

    /// The checks of [`parse`](Self::parse), compiling each `main_from` now
    /// (`compile_patterns`) or when first used.
    fn checked(file: TableFile, compile_patterns: bool) -> Result<LanguageTable, CoreError> {
        let mut seen: Vec<String> = Vec::new();
        let mut languages = file.language;
        for l in &mut languages {
            if l.run.is_empty() || l.compile.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(CoreError::Config(format!(
                    "language `{}` has an empty command",
                    l.name
                )));
            }
            if l.file.is_empty() || l.file.contains('/') {
                return Err(CoreError::Config(format!(
                    "language `{}` has an invalid file name",
                    l.name
                )));
            }
            // `{sources}` becomes one argument per file: it must be a whole argument, never
            // spliced into a longer one (a shell script, an option's value).
            let commands = [Some(&l.run), l.compile.as_ref(), l.check.as_ref()];
            if commands.iter().flatten().flat_map(|c| c.iter()).any(|a| {
                (a.contains(SOURCES) && a != SOURCES)
                    || (a.contains(COMPILE_ARGS) && a != COMPILE_ARGS)
                    || (a.contains("{env:") && !(a.starts_with("{env:") && a.ends_with('}')))
            }) {
                return Err(CoreError::Config(format!(
                    "language `{}`: {SOURCES}, {COMPILE_ARGS} and {{env:NAME}} must be arguments of their own",
                    l.name
                )));
            }
            let outside_compile = [Some(&l.run), l.check.as_ref()];
            if outside_compile
                .iter()
                .flatten()
                .flat_map(|c| c.iter())
                .any(|a| a == COMPILE_ARGS)
            {
                return Err(CoreError::Config(format!(
                    "language `{}`: {COMPILE_ARGS} belongs in the compile command",
                    l.name
                )));
            }
            for key in std::iter::once(&l.name).chain(&l.aliases) {
                let k = key.to_ascii_lowercase();
                if seen.contains(&k) {
                    return Err(CoreError::Config(format!(
                        "language name or alias `{key}` is used twice"
                    )));
                }
                seen.push(k);
            }
            if let Some(re) = l.main_from.as_deref().filter(|_| compile_patterns) {
                let re = Regex::new(re).map_err(|e| {
                    CoreError::Config(format!("language `{}`: bad main_from: {e}", l.name))
                })?;
                let _ = l.main_re.set(Some(re));
            }
        }
        Ok(LanguageTable {
            languages: languages.into_iter().map(Arc::new).collect(),
        })
    }

    pub fn all(&self) -> &[Arc<Language>] {
        &self.languages
    }

    /// Finds a language by name or alias (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Arc<Language>> {
        let n = name.to_ascii_lowercase();
        self.languages.iter().find(|l| {
            l.name.eq_ignore_ascii_case(&n) || l.aliases.iter().any(|a| a.eq_ignore_ascii_case(&n))
        })
    }

    /// Finds a language by a file's extension.
    pub fn by_extension(&self, file_name: &str) -> Option<&Arc<Language>> {
        let ext = Path::new(file_name)
            .extension()?
            .to_str()?
            .to_ascii_lowercase();
        self.languages
            .iter()
            .find(|l| l.extensions.iter().any(|e| e.eq_ignore_ascii_case(&ext)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_the_required_languages() {
        let t = LanguageTable::builtin();
        for name in [
            "python",
            "javascript",
            "java",
            "c",
            "cpp",
            "bash",
            "rust",
            "go",
            "ruby",
            "php",
            "lua",
        ] {
            assert!(t.get(name).is_some(), "{name} missing");
        }
        assert_eq!(t.get("PY").unwrap().name, "python");
        assert_eq!(t.get("node").unwrap().name, "javascript");
        assert_eq!(t.by_extension("x/y/prog.CPP").unwrap().name, "cpp");
        assert!(t.get("brainfuck").is_none());
        assert!(t.all().len() >= 40);
        assert!(t.get("java").unwrap().compiled());
        assert!(!t.get("python").unwrap().compiled());
    }

    /// The built-in table the binary parses (JSON made by build.rs) is languages.toml, and it
    /// compiles its patterns on first use: each one must compile.
    #[test]
    fn builtin_table_is_the_toml_and_its_patterns_compile() {
        let key = |l: &Language| {
            format!(
                "{} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                l.name,
                l.aliases,
                l.extensions,
                l.sources,
                l.file,
                l.compile,
                l.run,
                l.check,
                l.version,
                l.requires,
                l.env,
                l.main_from,
                l.limits,
                l.compile_limits
            )
        };
        let from_toml: Vec<String> = LanguageTable::parse(BUILTIN_TABLE)
            .unwrap()
            .all()
            .iter()
            .map(|l| key(l))
            .collect();
        let builtin: Vec<String> = LanguageTable::builtin()
            .all()
            .iter()
            .map(|l| key(l))
            .collect();
        assert_eq!(builtin, from_toml);
        assert!(LanguageTable::parse(BUILTIN_TABLE).is_ok());
        let bad = BUILTIN_TABLE.replacen("main_from = '", "main_from = '(", 1);
        assert!(LanguageTable::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("bad main_from"));
    }

    #[test]
    fn java_main_class_is_found() {
        let t = LanguageTable::builtin();
        let java = t.get("java").unwrap();
        let src = "import java.util.*;\n\npublic final class Solution {\n  public static void main(String[] a) {}\n}\n";
        assert_eq!(java.main_name(src).as_deref(), Some("Solution"));
        assert_eq!(java.main_name("class Hidden {}"), None);
    }

    #[test]
    fn rejects_duplicate_aliases_and_bad_entries() {
        let dup = "[[language]]\nname='a'\nfile='a'\nrun=['x']\n[[language]]\nname='b'\naliases=['A']\nfile='b'\nrun=['y']\n";
        assert!(matches!(
            LanguageTable::parse(dup),
            Err(CoreError::Config(_))
        ));
        let empty = "[[language]]\nname='a'\nfile='a'\nrun=[]\n";
        assert!(LanguageTable::parse(empty).is_err());
        let unknown = "[[language]]\nname='a'\nfile='a'\nrun=['x']\nbogus=1\n";
        assert!(LanguageTable::parse(unknown).is_err());
        let spliced = "[[language]]\nname='a'\nfile='a'\nrun=['sh', '-c', 'cc {sources}']\n";
        assert!(LanguageTable::parse(spliced).is_err());
        let whole = "[[language]]\nname='a'\nfile='a'\nrun=['cc', '{sources}']\n";
        assert!(LanguageTable::parse(whole).is_ok());
    }
}
