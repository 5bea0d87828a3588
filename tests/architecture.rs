//! The layout is the architecture: no module of any crate of the workspace imports a module
//! that imports it back, directly or through others (at the level of files, and of each
//! crate's top-level modules). Cycles are found from the `crate::`, `super::` and `self::`
//! paths of the sources (test modules excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs` are the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        m.pop();
    }
    m
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that starts at `crate`, `super` or `self`, expanded from `{a, b::c}` groups,
/// as segments.
fn paths(code: &str) -> Vec<Vec<String>> {
    fn read(s: &[char], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        let mut path = prefix;
        loop {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            if i > start {
                path.push(s[start..i].iter().collect());
            }
            if i + 1 < s.len() && s[i] == ':' && s[i + 1] == ':' {
                i += 2;
                if i < s.len() && s[i] == '{' {
                    i += 1;
                    loop {
                        while i < s.len() && s[i].is_whitespace() {
                            i += 1;
                        }
                        if i >= s.len() || s[i] == '}' {
                            return i + 1;
                        }
                        i = read(s, i, path.clone(), out);
                        while i < s.len() && s[i] != ',' && s[i] != '}' {
                            i += 1;
                        }
                        if i < s.len() && s[i] == ',' {
                            i += 1;
                        }
                    }
                }
                continue;
            }
            out.push(path);
            return i;
        }
    }
    let s: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !is_ident(s[i - 1]);
        let rest: String = s[i..(i + 7).min(s.len())].iter().collect();
        if boundary
            && ["crate::", "super::", "self::"]
                .iter()
                .any(|p| rest.starts_with(p))
        {
            i = read(&s, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// The code of a file without comments and without its test module.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module graph of one crate: which module each module's code names.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (m, f) in &modules {
        let mut to = BTreeSet::new();
        for p in paths(&code_of(f)) {
            let mut full: Module = Vec::new();
            let mut segs = p.iter().peekable();
            match segs.peek().map(|s| s.as_str()) {
                Some("crate") => {
                    segs.next();
                }
                Some("self") => {
                    segs.next();
                    full = m.clone();
                }
                _ => {
                    full = m.clone();
                    while segs.peek().map(|s| s.as_str()) == Some("super") {
                        segs.next();
                        full.pop();
                    }
                }
            }
            full.extend(segs.cloned());
            // The longest prefix that is a module of the crate.
            let target = (1..=full.len())
                .rev()
                .map(|n| full[..n].to_vec())
                .find(|c| modules.contains_key(c));
            if let Some(t) = target {
                // A module naming itself or one of its ancestors (`super::X` items of a parent).
                if &t != m && !m.starts_with(&t) {
                    to.insert(t);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// The strongly connected components with more than one member (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit(t: &mut T, v: &Module) {
        t.index.insert(v.clone(), t.next);
        t.low.insert(v.clone(), t.next);
        t.next += 1;
        t.stack.push(v.clone());
        let targets: Vec<Module> = t.edges.get(v).into_iter().flatten().cloned().collect();
        for w in targets {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.stack.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: Vec<Module> = edges.keys().cloned().collect();
    for v in &nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The graph between a crate's top-level modules.
fn top_level(edges: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut top: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (a, to) in edges {
        let Some(ta) = a.first() else { continue };
        let entry = top.entry(vec![ta.clone()]).or_default();
        for b in to {
            if let Some(tb) = b.first().filter(|tb| *tb != ta) {
                entry.insert(vec![tb.clone()]);
            }
        }
    }
    top
}

fn crates() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.push(root.join("src"));
    dirs.sort();
    dirs
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut found = Vec::new();
    for src in crates() {
        let g = graph(&src);
        assert!(g.len() > 1, "{}: no modules found", src.display());
        for (level, graph) in [("file", g.clone()), ("top-level", top_level(&g))] {
            for c in cycles(&graph) {
                let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
                found.push(format!(
                    "{} ({level}): {}",
                    src.display(),
                    names.join(" <-> ")
                ));
            }
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

/// The checker sees the imports it must see (grouped, nested, `super`), so that an empty
/// answer above means something.
#[test]
fn the_checker_finds_a_cycle_it_is_shown() {
    let dir = std::env::temp_dir().join(format!("isobox-arch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    std::fs::write(dir.join("a/mod.rs"), "pub mod x;\n").unwrap();
    std::fs::write(
        dir.join("a/x.rs"),
        "use crate::{c, b::Thing}; // crate::zzz\n",
    )
    .unwrap();
    std::fs::write(dir.join("b.rs"), "pub struct Thing;\n").unwrap();
    std::fs::write(
        dir.join("c.rs"),
        "fn f() { crate::a::x::g(); }\n#[cfg(test)]\nmod t { use crate::b::Thing; }\n",
    )
    .unwrap();
    let g = graph(&dir);
    let x = vec!["a".to_string(), "x".to_string()];
    let names = |v: &[&str]| {
        v.iter()
            .map(|s| vec![s.to_string()])
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(g[&x], names(&["b", "c"]));
    assert_eq!(g[&vec!["c".to_string()]], [x.clone()].into_iter().collect());
    let c = cycles(&g);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(cycles(&top_level(&g)).len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
