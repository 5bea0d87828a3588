//! The README works as written: its shell examples run top to bottom as a new user would run
//! them, and no link of the documentation leaves the repository.
//!
//! Every fenced ```sh block of README.md is an example. An HTML comment on the line before a
//! block (blank lines between are allowed) says how it runs:
//!
//! - none: it runs in the reader's shell (one bash session for the whole README, `set -eu -o
//!   pipefail`, so a variable used before it is set fails the block), and must exit 0;
//! - `<!-- server: PORT -->`: the reader starts it in a second terminal and leaves it running;
//!   here it runs in the background, in a shell of its own (no variable of the session reaches
//!   it), until something listens on PORT. A later server block on the same PORT stops it first
//!   with SIGINT, as Ctrl-C in that terminal would;
//! - `<!-- exit: N -->`: it must exit with status N (in a subshell);
//! - `<!-- not-run: REASON -->`: it is not run (the .deb, systemd, a cluster, a second engine,
//!   downloads of minutes); the reason is required.
//!
//! Several markers share one comment, separated by `;` (`not-run` must stand alone). A ```text
//! block right after a block (blank lines between only) is its expected standard output:
//! compared after trailing white space, with `...` matching any text (newlines too).
//!
//! The whole README runs in a network namespace of its own (its own loopback: the ports it names,
//! 8000 and 9000 among them, are free there and no other test sees them), starting in the
//! repository checkout as a reader who just built it, with a scratch HOME, with
//! the directory of the `isobox` binary first in PATH and a `sudo` that runs its command as root
//! (the test already is) with the environment sudo keeps: PATH, HOME and the runtimes directory
//! (none: the examples use the host's toolchains, whatever runtimes this machine has built).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TempDir, NO_RUNTIMES};

/// How an example runs.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    Run,
    Server(u16),
    NotRun(String),
}

/// One ```sh block of the README.
#[derive(Debug, Clone)]
struct Block {
    /// 1-based line of its opening fence.
    line: usize,
    code: String,
    mode: Mode,
    exit: i32,
    expected: Option<String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The markers of one HTML comment line, or None when the line is no marker comment.
fn markers(line: &str) -> Option<Result<Vec<(String, String)>, String>> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    let key = inner.split(':').next()?.trim();
    if !["not-run", "server", "exit"].contains(&key) {
        return None;
    }
    if key == "not-run" {
        let reason = inner["not-run".len()..].trim_start_matches(':').trim();
        return Some(if reason.is_empty() {
            Err("`not-run` needs a reason".into())
        } else {
            Ok(vec![("not-run".into(), reason.into())])
        });
    }
    let mut out = Vec::new();
    for part in inner.split(';') {
        let Some((k, v)) = part.split_once(':') else {
            return Some(Err(format!("marker `{part}` is not `key: value`")));
        };
        let (k, v) = (k.trim(), v.trim());
        if !["server", "exit"].contains(&k) {
            return Some(Err(format!("unknown marker `{k}`")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Some(Ok(out))
}

/// The ```sh blocks of `markdown`, with their markers and expected outputs.
fn parse(markdown: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks: Vec<Block> = Vec::new();
    let mut pending: Option<(usize, Vec<(String, String)>)> = None;
    // Whether only blank lines came since the last sh block closed.
    let mut after_sh = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(m) = markers(line) {
            let m = m.map_err(|e| format!("README.md:{}: {e}", i + 1))?;
            if pending.is_some() {
                return Err(format!("README.md:{}: two marker comments in a row", i + 1));
            }
            pending = Some((i + 1, m));
            after_sh = false;
            i += 1;
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let info = info.trim().to_string();
            let open = i + 1;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                let l = lines[i];
                let cut = l.len() - l.trim_start().len();
                body.push(&l[cut.min(indent)..]);
                i += 1;
            }
            if i == lines.len() {
                return Err(format!("README.md:{open}: code block never closed"));
            }
            i += 1;
            let text = body.join("\n") + "\n";
            match info.as_str() {
                "sh" => {
                    let mut b = Block {
                        line: open,
                        code: text,
                        mode: Mode::Run,
                        exit: 0,
                        expected: None,
                    };
                    for (k, v) in pending.take().map(|p| p.1).unwrap_or_default() {
                        match k.as_str() {
                            "not-run" => b.mode = Mode::NotRun(v),
                            "server" => {
                                b.mode = Mode::Server(v.parse().map_err(|_| {
                                    format!("README.md:{open}: `server: {v}` is not a port")
                                })?)
                            }
                            "exit" => {
                                b.exit = v.parse().map_err(|_| {
                                    format!("README.md:{open}: `exit: {v}` is not a status")
                                })?
                            }
                            _ => return Err(format!("README.md:{open}: bad marker `{k}: {v}`")),
                        }
                    }
                    blocks.push(b);
                    after_sh = true;
                }
                "text" if after_sh => {
                    let b = blocks.last_mut().expect("after_sh");
                    b.expected = Some(text);
                    after_sh = false;
                }
                _ => {
                    if let Some((at, _)) = pending {
                        return Err(format!(
                            "README.md:{at}: a marker before a ```{info} block (only sh blocks run)"
                        ));
                    }
                    after_sh = false;
                }
            }
            continue;
        }
        if !line.trim().is_empty() {
            if let Some((at, _)) = pending {
                return Err(format!(
                    "README.md:{at}: a marker must come right before a ```sh block"
                ));
            }
            after_sh = false;
        }
        i += 1;
    }
    Ok(blocks)
}

/// Trailing white space of each line and trailing blank lines dropped.
fn normalize(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end_matches('\n').to_string()
}

/// Whether `actual` is `expected`, where `...` in `expected` stands for any text.
fn matches(expected: &str, actual: &str) -> bool {
    let (expected, actual) = (normalize(expected), normalize(actual));
    let parts: Vec<&str> = expected.split("...").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Kills every process in the network namespace `ns` (`net:[...]`): the servers the README
/// started, whatever happened to the script.
fn kill_namespace(ns: &str) {
    for _ in 0..50 {
        let mut found = false;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let link = std::fs::read_link(format!("/proc/{pid}/ns/net"));
            if link.is_ok_and(|l| l.to_string_lossy() == ns) {
                found = true;
                // SAFETY: kill(2) with a pid from /proc; no memory is involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills what is left in the README's namespace when dropped (a failed assertion included).
struct Namespace(PathBuf);

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Ok(ns) = std::fs::read_to_string(&self.0) {
            kill_namespace(ns.trim());
        }
    }
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The bash script that runs `blocks` as a reader would, writing each block's output and status
/// under `r`.
fn script(blocks: &[Block], r: &Path) -> String {
    let mut s = format!(
        r#"set -eu -o pipefail
R={r}
readlink /proc/self/ns/net > "$R/netns"
ip link set lo up
declare -A __server=()
__stop() {{
  local pid=${{__server[$1]:-}}
  [ -n "$pid" ] || return 0
  kill -INT -- "-$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "__server[$1]"
}}
__wait() {{
  for _ in $(seq 900); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || {{ echo "the server block ended before listening on $1" >&2; return 1; }}
    sleep 0.1
  done
  echo "nothing listens on $1 after 90 s" >&2
  return 1
}}
trap 'for p in "${{!__server[@]}}"; do __stop "$p"; done' EXIT
"#,
        r = sh_quote(r),
    );
    for (n, b) in blocks.iter().enumerate() {
        let file = format!("\"$R/{n}.sh\"");
        let io = format!("< /dev/null > \"$R/{n}.out\" 2> \"$R/{n}.err\"");
        let took = format!("echo \"$__t $EPOCHREALTIME\" > \"$R/{n}.time\"\n");
        s.push_str(&format!(
            "# README.md:{}\necho {n} > \"$R/current\"\n__t=$EPOCHREALTIME\n",
            b.line
        ));
        match &b.mode {
            Mode::NotRun(_) => continue,
            Mode::Server(port) => s.push_str(&format!(
                "__stop {port}\nsetsid bash -eu {file} {io} &\n__server[{port}]=$!\n\
                 __wait {port} $!\necho 0 > \"$R/{n}.status\"\n{took}"
            )),
            Mode::Run if b.exit == 0 => s.push_str(&format!(
                ". {file} {io}\necho 0 > \"$R/{n}.status\"\n{took}"
            )),
            Mode::Run => s.push_str(&format!(
                "set +e\n( set -e; . {file} ) {io}\necho $? > \"$R/{n}.status\"\nset -e\n{took}"
            )),
        }
    }
    s.push_str("echo done > \"$R/current\"\n");
    s
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn the_readme_examples_run() {
    let repo = repo();
    let blocks = parse(&read(&repo.join("README.md"))).unwrap();
    let tmp = TempDir::new("readme");
    let (home, r, bin, scratch) = (
        tmp.0.join("home"),
        tmp.0.join("run"),
        tmp.0.join("bin"),
        tmp.0.join("tmp"),
    );
    for d in [&home, &r, &bin, &scratch] {
        std::fs::create_dir_all(d).unwrap();
    }
    let isobox_dir = PathBuf::from(env!("CARGO_BIN_EXE_isobox"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        isobox_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // `sudo CMD`: the test is root already; sudo's env_reset keeps little of the environment.
    let sudo = bin.join("sudo");
    std::fs::write(
        &sudo,
        format!(
            "#!/bin/sh\nexec env -i PATH=\"$PATH\" HOME=\"$HOME\" TERM=dumb \
             ISOBOX_RUNTIMES_DIR={NO_RUNTIMES} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (n, b) in blocks.iter().enumerate() {
        std::fs::write(r.join(format!("{n}.sh")), &b.code).unwrap();
    }
    let main = r.join("main.sh");
    std::fs::write(&main, script(&blocks, &r)).unwrap();
    let _cleanup = Namespace(r.join("netns"));

    // Cargo and rustup find their homes through HOME unless told; the README's HOME is new.
    let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{real_home}/.cargo"));
    let rustup_home =
        std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{real_home}/.rustup"));
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", "bash"])
        .arg(&main)
        .current_dir(&repo)
        .env("PATH", &path)
        .env("HOME", &home)
        .env("TMPDIR", &scratch)
        .env("CARGO_HOME", cargo_home)
        .env("RUSTUP_HOME", rustup_home)
        .env("ISOBOX_RUNTIMES_DIR", NO_RUNTIMES)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Nothing of the test's own environment may configure the README's servers.
    for (k, _) in std::env::vars() {
        let setting = k.starts_with("ISOBOX_")
            || k.starts_with("JWT_")
            || k.starts_with("OAUTH2_")
            || k.starts_with("TLS_")
            || k.starts_with("DEDUP_")
            || [
                "AUTH_TYPE",
                "API_KEYS",
                "API_KEY_HEADER",
                "MTLS_CA_CERT",
                "REST_PORT",
                "GRPC_PORT",
                "REDIS_URL",
                "RUST_LOG",
            ]
            .contains(&k.as_str());
        // Nor what cargo and nextest set for this test process (a reader's shell has none of
        // it, and a cargo run seeing CARGO_MANIFEST_DIR or CARGO_PKG_* would rebuild crates that
        // read them); cargo's own settings (CARGO_HOME, CARGO_TARGET_DIR, CARGO_PROFILE_*, ...)
        // stay.
        let harness = k.starts_with("CARGO_PKG_")
            || k.starts_with("NEXTEST")
            || k.starts_with("__NEXTEST")
            || [
                "CARGO",
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&k.as_str());
        if (setting && k != "ISOBOX_RUNTIMES_DIR") || harness {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd.spawn().expect("unshare");
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut script_err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut script_err);
    }

    let current = read(&r.join("current")).trim().to_string();
    let show = |n: usize| {
        let b = &blocks[n];
        format!(
            "README.md:{} (block {n})\n--- code\n{}--- stdout\n{}--- stderr\n{}",
            b.line,
            b.code,
            read(&r.join(format!("{n}.out"))),
            read(&r.join(format!("{n}.err")))
        )
    };
    let servers = || {
        let mut out = String::new();
        for (n, b) in blocks.iter().enumerate() {
            if matches!(b.mode, Mode::Server(_)) && r.join(format!("{n}.err")).exists() {
                let err = read(&r.join(format!("{n}.err")));
                let tail: Vec<&str> = err.lines().rev().take(15).collect();
                out.push_str(&format!("--- server of README.md:{}\n", b.line));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    };
    let mut failures = Vec::new();
    let mut ran = 0;
    for (n, b) in blocks.iter().enumerate() {
        if matches!(b.mode, Mode::NotRun(_)) {
            continue;
        }
        let st = read(&r.join(format!("{n}.status")));
        let Ok(st) = st.trim().parse::<i32>() else {
            if current == n.to_string() {
                failures.push(format!(
                    "this block failed (the README script exited with {status:?}):\n{}",
                    show(n)
                ));
            }
            continue;
        };
        ran += 1;
        if st != b.exit {
            failures.push(format!(
                "exit status {st}, expected {}:\n{}",
                b.exit,
                show(n)
            ));
        } else if let Some(exp) = &b.expected {
            let out = read(&r.join(format!("{n}.out")));
            if !matches(exp, &out) {
                failures.push(format!(
                    "the output is not the README's:\n--- expected\n{exp}{}",
                    show(n)
                ));
            }
        }
    }
    assert!(
        failures.is_empty() && current == "done",
        "{} README example(s) failed; {ran} ran; the script's stderr:\n{script_err}\n{}\n{}",
        failures.len().max(1),
        failures.join("\n\n"),
        servers()
    );

    // What ran: every way to authenticate, gRPC, async jobs and a version pick among them.
    let did = |needle: &str| {
        blocks
            .iter()
            .any(|b| !matches!(b.mode, Mode::NotRun(_)) && b.code.contains(needle))
    };
    for needle in [
        "AUTH_TYPE=apikey",
        "AUTH_TYPE=jwt",
        "AUTH_TYPE=oauth2",
        "AUTH_TYPE=mtls",
        "grpc_client",
        "/api/v1/executions",
        "\"version\"",
        "isobox run",
    ] {
        assert!(did(needle), "no README example that runs has `{needle}`");
    }
    let not_run: Vec<String> = blocks
        .iter()
        .filter_map(|b| match &b.mode {
            Mode::NotRun(why) => Some(format!("README.md:{}: {why}", b.line)),
            _ => None,
        })
        .collect();
    // The slowest examples, for whoever wonders where the time goes.
    let mut took: Vec<(f64, usize)> = (0..blocks.len())
        .filter_map(|n| {
            let t = read(&r.join(format!("{n}.time")));
            let mut it = t.split_whitespace().map(|x| x.parse::<f64>().ok());
            let (a, b) = (it.next()??, it.next()??);
            Some((b - a, blocks[n].line))
        })
        .collect();
    took.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slowest: Vec<String> = took
        .iter()
        .take(5)
        .map(|(t, line)| format!("README.md:{line} {t:.1} s"))
        .collect();
    eprintln!("slowest: {}", slowest.join(", "));
    eprintln!(
        "{ran} README examples ran ({} servers); not run: {}\n  {}",
        blocks
            .iter()
            .filter(|b| matches!(b.mode, Mode::Server(_)))
            .count(),
        not_run.len(),
        not_run.join("\n  ")
    );
    assert!(
        ran >= 3 * not_run.len(),
        "most examples must run: {ran} ran, {} not",
        not_run.len()
    );
}

/// The markdown files whose links are checked: README.md, the other top-level documents and
/// everything under docs/.
fn documents() -> Vec<PathBuf> {
    let root = repo();
    let mut files: Vec<PathBuf> = ["README.md", "CHANGELOG.md", "SECURITY.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root.join(f))
        .filter(|p| p.exists())
        .collect();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text of `markdown` outside code (fenced blocks and `code spans`), line by line, with
/// each line's number.
fn prose(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut text = String::new();
        for (j, part) in line.split('`').enumerate() {
            if j % 2 == 0 {
                text.push_str(part);
            }
        }
        out.push((i + 1, text));
    }
    out
}

/// The targets of the `[text](target)` links of one line.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        out.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    out
}

/// GitHub's anchor of a heading: lower case, letters, digits, `-` and `_` kept, spaces as `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    // `[text](target)` shows as text.
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        match rest[open..].find("](") {
            Some(mid) => {
                let close = rest[open + mid..].find(')').map(|c| open + mid + c);
                let Some(close) = close else { break };
                text.push_str(&rest[..open]);
                text.push_str(&rest[open + 1..open + mid]);
                rest = &rest[close + 1..];
            }
            None => break,
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of the headings of `markdown` (duplicates numbered as GitHub numbers them).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let s = slug(text.trim());
        let n = seen.entry(s.clone()).or_insert(0);
        out.insert(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn links_stay_in_the_repository() {
    let root = repo().canonicalize().unwrap();
    let mut bad = Vec::new();
    for file in documents() {
        let text = read(&file);
        let name = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let own = anchors(&text);
        for (n, line) in prose(&text) {
            let at = format!("{name}:{n}");
            for scheme in ["http://", "https://", "ftp://", "mailto:"] {
                if line.contains(scheme) {
                    bad.push(format!("{at}: a link out of the repository ({scheme}...)"));
                }
            }
            for target in link_targets(&line) {
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                if path.is_empty() {
                    if let Some(a) = anchor.filter(|a| !own.contains(*a)) {
                        bad.push(format!("{at}: no heading of {name} has the anchor #{a}"));
                    }
                    continue;
                }
                if path.contains("://") || path.starts_with('/') {
                    bad.push(format!("{at}: `{target}` is not a path in the repository"));
                    continue;
                }
                let dest = file.parent().unwrap().join(path);
                let Ok(dest) = dest.canonicalize() else {
                    bad.push(format!("{at}: `{target}` does not exist"));
                    continue;
                };
                if !dest.starts_with(&root) {
                    bad.push(format!("{at}: `{target}` is outside the repository"));
                    continue;
                }
                if let Some(a) = anchor {
                    if dest.extension().is_some_and(|e| e == "md")
                        && !anchors(&read(&dest)).contains(a)
                    {
                        bad.push(format!("{at}: `{target}`: no such heading there"));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "links to fix:\n{}", bad.join("\n"));
}

#[test]
fn examples_are_parsed_with_their_markers_and_outputs() {
    let md = "# T\n\n```sh\necho a\n```\n\n```text\na\n```\n\n<!-- server: 8000 -->\n```sh\n\
              sudo isobox serve\n```\n\n- item:\n  <!-- not-run: needs the .deb -->\n  ```sh\n  \
              apt install ./x.deb\n  ```\n\n<!-- exit: 2 -->\n```sh\nfalse\n```\n\
              \nprose\n\n```text\nnot an output\n```\n";
    let b = parse(md).unwrap();
    assert_eq!(b.len(), 4);
    assert_eq!(
        (b[0].mode.clone(), b[0].expected.as_deref()),
        (Mode::Run, Some("a\n"))
    );
    assert_eq!(b[1].mode, Mode::Server(8000));
    assert_eq!(b[2].mode, Mode::NotRun("needs the .deb".into()));
    assert_eq!(b[2].code, "apt install ./x.deb\n");
    assert_eq!((b[3].exit, b[3].expected.clone()), (2, None));
    // A marker must stand right before a sh block and say why a block does not run.
    assert!(parse("<!-- server: 1 -->\ntext\n```sh\nx\n```\n").is_err());
    assert!(parse("<!-- not-run -->\n```sh\nx\n```\n").is_err());
    assert!(parse("<!-- exit: 2 -->\n```text\nx\n```\n").is_err());
    assert!(parse("<!-- severs: 1 -->\n```sh\nx\n```\n").is_ok_and(|b| b[0].mode == Mode::Run));
}

#[test]
fn expected_outputs_match_with_ellipses() {
    assert!(matches("a\nb\n", "a  \nb\n\n"));
    assert!(!matches("a\nb", "a\nc"));
    assert!(matches(
        r#"{"id":"...","status":"ok",...,"stdout":"hi\n",...}"#,
        r#"{"id":"3f","status":"ok","exit_code":0,"stdout":"hi\n","cached":false}"#
    ));
    assert!(!matches(
        r#"{"status":"ok",...}"#,
        r#"{"status":"timeout"}"#
    ));
    assert!(matches("x...", "x"));
    assert!(!matches("ab...ba", "aba"));
    assert!(matches("Hello...\n...end", "Hello world\nmore\nthe end"));
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        slug("Test cases, result files, binary I/O"),
        "test-cases-result-files-binary-io"
    );
    assert_eq!(
        slug("`isobox run` and its exit statuses"),
        "isobox-run-and-its-exit-statuses"
    );
    assert_eq!(
        slug("Judge0 [compatible](x.md) API"),
        "judge0-compatible-api"
    );
    let a = anchors("# A\n## A\n```\n# not a heading\n```\n#nope\n");
    assert_eq!(a, BTreeSet::from(["a".to_string(), "a-1".to_string()]));
}
