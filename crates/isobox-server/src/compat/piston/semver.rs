//! Version selectors as Piston reads them (node-semver ranges, `semver.satisfies`), matched
//! against the version this host runs.
//!
//! The grammar: ranges joined by `||`; a range is a hyphen range (`1.2 - 2.3.4`) or
//! comparators separated by spaces, each a partial version (`1`, `1.2`, `1.2.3`, with `x`, `X`
//! or `*` as wildcards and an optional `v` or `=`), or one prefixed by `<`, `<=`, `>`, `>=`,
//! `~` (`~>`) or `^`. Bare versions are exact (`1.2.3` is `=1.2.3`, not `^1.2.3` as in
//! Cargo). Anything else is not a selector: it matches nothing, as Piston's `satisfies` does.
//!
//! Pre-release tags are kept only as "below the release of the same numbers" (`<2.0.0-0`),
//! which is all a host's release versions need.

use std::cmp::Ordering;

/// A version: major, minor, patch, and whether it is a pre-release (below the release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: bool,
}

impl Version {
    fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version {
            major,
            minor,
            patch,
            pre: false,
        }
    }

    fn pre(mut self) -> Version {
        self.pre = true;
        self
    }

    /// A host's version string as a version: its first three numeric parts (missing ones are
    /// 0), whatever follows them ignored (`1.75.0-nightly`, `3.11.2+deb`). `None` when it does
    /// not start with a number.
    pub fn coerce(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches(['v', 'V']);
        let mut nums = [0u64; 3];
        let mut parts = s.split('.');
        for (i, n) in nums.iter_mut().enumerate() {
            let Some(p) = parts.next() else { break };
            let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() {
                if i == 0 {
                    return None;
                }
                break;
            }
            *n = digits.parse().ok()?;
            if digits.len() != p.len() {
                break;
            }
        }
        Some(Version::new(nums[0], nums[1], nums[2]))
    }
}

impl Ord for Version {
    fn cmp(&self, o: &Version) -> Ordering {
        (self.major, self.minor, self.patch, !self.pre).cmp(&(o.major, o.minor, o.patch, !o.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Version) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// One comparator of a range: `op version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cmp(Op, Version);

impl Cmp {
    fn test(self, v: Version) -> bool {
        let o = v.cmp(&self.1);
        match self.0 {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            Op::Eq => o == Ordering::Equal,
        }
    }
}

/// A partial version: `None` parts are wildcards (and so is every part after one).
#[derive(Debug, Clone, Copy)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: bool,
}

impl Partial {
    fn parse(s: &str) -> Option<Partial> {
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        if s.is_empty() {
            return None;
        }
        // Build metadata never matters; a pre-release tag only on a full version.
        let s = s.split('+').next()?;
        let (nums, pre) = match s.split_once('-') {
            Some((n, tag)) => {
                let ok = !tag.is_empty()
                    && tag.split('.').all(|p| {
                        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                if !ok {
                    return None;
                }
                (n, true)
            }
            None => (s, false),
        };
        let parts: Vec<&str> = nums.split('.').collect();
        if parts.len() > 3 {
            return None;
        }
        let mut out = [None; 3];
        let mut wild = false;
        for (i, p) in parts.iter().enumerate() {
            match *p {
                "x" | "X" | "*" => wild = true,
                n if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                    // node-semver refuses numbers with leading zeros in strict mode but reads
                    // them in loose mode; read them.
                    let v: u64 = n.parse().ok()?;
                    if !wild {
                        out[i] = Some(v);
                    }
                }
                _ => return None,
            }
        }
        if pre && out.iter().any(Option::is_none) {
            return None;
        }
        Some(Partial {
            major: out[0],
            minor: out[1],
            patch: out[2],
            pre,
        })
    }

    /// The lowest version it stands for (wildcards as 0).
    fn floor(self) -> Version {
        let v = Version::new(
            self.major.unwrap_or(0),
            self.minor.unwrap_or(0),
            self.patch.unwrap_or(0),
        );
        if self.pre {
            v.pre()
        } else {
            v
        }
    }

    /// The first version above everything it stands for (`1.2` → `1.3.0-0`); `None` for `*`
    /// and for a full version (no range above it).
    fn ceiling(self) -> Option<Version> {
        match (self.major, self.minor, self.patch) {
            (None, _, _) => None,
            (Some(m), None, _) => Some(Version::new(m + 1, 0, 0).pre()),
            (Some(m), Some(n), None) => Some(Version::new(m, n + 1, 0).pre()),
            (Some(_), Some(_), Some(_)) => None,
        }
    }

    fn is_full(self) -> bool {
        self.patch.is_some()
    }
}

/// A parsed selector: alternatives (`||`), each a conjunction of comparators; `None` in a
/// conjunction is a comparator nothing satisfies (`>*`, `<*`).
#[derive(Debug, Clone)]
pub struct Range(Vec<Vec<Option<Cmp>>>);

impl Range {
    /// `None` when `s` is not a selector node-semver reads.
    pub fn parse(s: &str) -> Option<Range> {
        let mut alts = Vec::new();
        for alt in s.split("||") {
            alts.push(parse_alt(alt.trim())?);
        }
        Some(Range(alts))
    }

    pub fn matches(&self, v: Version) -> bool {
        self.0
            .iter()
            .any(|all| all.iter().all(|c| c.is_some_and(|c| c.test(v))))
    }
}

/// Whether the host's version `have` satisfies Piston's selector `want`.
pub fn satisfies(want: &str, have: &str) -> bool {
    match (Range::parse(want), Version::coerce(have)) {
        (Some(r), Some(v)) => r.matches(v),
        _ => false,
    }
}

fn parse_alt(s: &str) -> Option<Vec<Option<Cmp>>> {
    if s.is_empty() {
        // An empty alternative is `*`.
        return Some(Vec::new());
    }
    // Hyphen range: `A - B` (spaces around the hyphen).
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() == 3 && words[1] == "-" {
        let (a, b) = (Partial::parse(words[0])?, Partial::parse(words[2])?);
        let mut out = Vec::new();
        if a.major.is_some() {
            out.push(Some(Cmp(Op::Ge, a.floor())));
        }
        if b.is_full() {
            out.push(Some(Cmp(Op::Le, b.floor())));
        } else if let Some(c) = b.ceiling() {
            out.push(Some(Cmp(Op::Lt, c)));
        }
        return Some(out);
    }
    // Comparators; an operator may stand apart from its version (`>= 1.2`).
    let mut tokens: Vec<String> = Vec::new();
    let mut pending = String::new();
    for w in words {
        if w.chars().all(|c| matches!(c, '<' | '>' | '=' | '~' | '^')) {
            pending.push_str(w);
            continue;
        }
        tokens.push(format!("{pending}{w}"));
        pending.clear();
    }
    if !pending.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for t in tokens {
        out.extend(comparator(&t)?);
    }
    Some(out)
}

/// One comparator token as the comparators it stands for.
fn comparator(t: &str) -> Option<Vec<Option<Cmp>>> {
    let (op, rest) = ["~>", ">=", "<=", ">", "<", "=", "~", "^"]
        .iter()
        .find_map(|op| t.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("", t));
    let p = Partial::parse(rest)?;
    let between = |lo: Version, hi: Option<Version>| -> Vec<Option<Cmp>> {
        let mut v = vec![Some(Cmp(Op::Ge, lo))];
        if let Some(hi) = hi {
            v.push(Some(Cmp(Op::Lt, hi)));
        }
        v
    };
    Some(match op {
        "" | "=" => {
            if p.major.is_none() {
                Vec::new()
            } else if p.is_full() {
                vec![Some(Cmp(Op::Eq, p.floor()))]
            } else {
                between(p.floor(), p.ceiling())
            }
        }
        "~" | "~>" => match (p.major, p.minor) {
            (None, _) => Vec::new(),
            (Some(m), None) => between(p.floor(), Some(Version::new(m + 1, 0, 0).pre())),
            (Some(m), Some(n)) => between(p.floor(), Some(Version::new(m, n + 1, 0).pre())),
        },
        "^" => match (p.major, p.minor, p.patch) {
            (None, _, _) => Vec::new(),
            (Some(m), None, _) => between(p.floor(), Some(Version::new(m + 1, 0, 0).pre())),
            (Some(0), Some(n), None) => between(p.floor(), Some(Version::new(0, n + 1, 0).pre())),
            (Some(m), Some(_), None) => between(p.floor(), Some(Version::new(m + 1, 0, 0).pre())),
            (Some(0), Some(0), Some(x)) => {
                between(p.floor(), Some(Version::new(0, 0, x + 1).pre()))
            }
            (Some(0), Some(n), Some(_)) => {
                between(p.floor(), Some(Version::new(0, n + 1, 0).pre()))
            }
            (Some(m), Some(_), Some(_)) => {
                between(p.floor(), Some(Version::new(m + 1, 0, 0).pre()))
            }
        },
        ">" => match p.ceiling() {
            _ if p.major.is_none() => vec![None],
            Some(c) => vec![Some(Cmp(Op::Ge, c))],
            None => vec![Some(Cmp(Op::Gt, p.floor()))],
        },
        ">=" => {
            if p.major.is_none() {
                Vec::new()
            } else {
                vec![Some(Cmp(Op::Ge, p.floor()))]
            }
        }
        "<" => {
            if p.major.is_none() {
                vec![None]
            } else if p.is_full() {
                vec![Some(Cmp(Op::Lt, p.floor()))]
            } else {
                vec![Some(Cmp(Op::Lt, p.floor().pre()))]
            }
        }
        "<=" => match p.ceiling() {
            _ if p.major.is_none() => Vec::new(),
            Some(c) => vec![Some(Cmp(Op::Lt, c))],
            None => vec![Some(Cmp(Op::Le, p.floor()))],
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_read_as_node_semver_reads_them() {
        let yes = [
            ("*", "3.11.2"),
            ("x", "3.11.2"),
            ("3", "3.11.2"),
            ("3.x", "3.11.2"),
            ("3.11", "3.11.2"),
            ("3.11.x", "3.11.2"),
            ("3.11.2", "3.11.2"),
            ("=3.11.2", "3.11.2"),
            ("v3.11.2", "3.11.2"),
            ("^3.10", "3.11.2"),
            ("^3.11.1", "3.11.2"),
            ("~3.11", "3.11.2"),
            ("~3.11.0", "3.11.2"),
            ("~>3.11.0", "3.11.2"),
            (">=3.9 <4", "3.11.2"),
            (">= 3.9", "3.11.2"),
            (">3.10", "3.11.2"),
            ("<=3.11", "3.11.2"),
            ("<4", "3.11.2"),
            ("3.10 - 3.12", "3.11.2"),
            ("3.11.2 - 3.11.2", "3.11.2"),
            ("2.x || 3.x", "3.11.2"),
            ("^0.2.3", "0.2.9"),
            ("^0.0.3", "0.0.3"),
            (">=1.2.3-beta", "1.2.3"),
            ("*", "5.4"),
            ("5.4.0", "5.4"),
        ];
        for (want, have) in yes {
            assert!(satisfies(want, have), "{want} should match {have}");
        }
        let no = [
            ("3.11.1", "3.11.2"),
            ("3.1", "3.11.2"),
            ("2", "3.11.2"),
            ("^3.12", "3.11.2"),
            ("~3.10", "3.11.2"),
            (">3.11", "3.11.2"),
            (">3", "3.11.2"),
            ("<3.11", "3.11.2"),
            ("<3.11.2", "3.11.2"),
            ("<=3.10", "3.11.2"),
            ("3.12 - 4", "3.11.2"),
            ("3.0 - 3.10", "3.11.2"),
            ("^0.2.3", "0.3.0"),
            ("^0.0.3", "0.0.4"),
            (">*", "3.11.2"),
            ("<*", "3.11.2"),
            ("<4.0.0-0", "4.0.0"),
            ("latest", "3.11.2"),
            ("3.11.2.1", "3.11.2"),
            ("three", "3.11.2"),
            (">=", "3.11.2"),
            ("1.2.3 -", "1.2.3"),
            ("*", ""),
        ];
        for (want, have) in no {
            assert!(!satisfies(want, have), "{want} should not match {have}");
        }
    }

    #[test]
    fn host_versions_are_coerced() {
        assert_eq!(Version::coerce("3.11.2"), Some(Version::new(3, 11, 2)));
        assert_eq!(Version::coerce("21"), Some(Version::new(21, 0, 0)));
        assert_eq!(
            Version::coerce("1.75.0-nightly"),
            Some(Version::new(1, 75, 0))
        );
        assert_eq!(Version::coerce("12.2.0.1"), Some(Version::new(12, 2, 0)));
        assert_eq!(Version::coerce("go1.22"), None);
        assert_eq!(Version::coerce(""), None);
    }
}
