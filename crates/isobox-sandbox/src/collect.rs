//! Taking files out of a sandbox's work directory ([`crate::Collect`]), shared by both
//! backends: the native supervisor walks the sandbox's work tmpfs from a directory fd it opened
//! before any program ran, the docker runner walks its own `/tmp`.
//!
//! # What the walk guarantees
//! The tree was written by sandboxed code, so every name in it is hostile:
//! - every component is opened relative to its parent's fd with
//!   `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY` (directories also `O_DIRECTORY`): no
//!   symlink is followed at any depth, not even one swapped in between the type check and the
//!   open (the open fails with `ELOOP`);
//! - the type is read with `fstatat(AT_SYMLINK_NOFOLLOW)` first (symlinks, fifos, sockets and
//!   devices are reported and never opened) and confirmed with `fstat` on the opened fd before
//!   a single byte is read (an entry replaced by a fifo meanwhile opens without blocking, thanks
//!   to `O_NONBLOCK`, and is then skipped unread);
//! - a file is read up to the remaining byte budget plus one byte, never more, so a file that
//!   grows while it is read cannot pass `max_bytes`: it is reported `too_large`;
//! - the walk descends at most [`MAX_DEPTH`] directories and looks at most at [`MAX_ENTRIES`]
//!   entries, and reports at most [`MAX_SKIPPED`] skipped entries;
//! - it only descends into a directory some pattern can match below, and never reads an
//!   entry no pattern matches.
//!
//! Names that are not UTF-8 cannot be reported as they are: when one matches (compared in its
//! lossy form) it is skipped as `not_regular` under its lossy name.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::spec::{Collect, Collected, CollectedFile, SkipReason, Skipped};

/// Deepest directory level the walk descends to (the work dir is level 0).
pub const MAX_DEPTH: usize = 16;
/// Most directory entries the walk looks at in all; the rest of the tree is not visited (one
/// `too_many_files` entry says where it stopped).
pub const MAX_ENTRIES: usize = 10_000;
/// Most skipped entries reported; further ones are left out of the report.
pub const MAX_SKIPPED: usize = 1_000;

/// The patterns of a [`Collect`], split into components.
#[derive(Debug, Clone)]
pub struct Patterns(Vec<Vec<Vec<char>>>);

impl Patterns {
    /// Empty and `.` components are dropped (`/a//b/./c` is `a/b/c`, relative to the work
    /// dir); a `..` component matches nothing, as no directory entry is called `..`.
    pub fn new(patterns: &[String]) -> Patterns {
        Patterns(
            patterns
                .iter()
                .map(|p| {
                    p.split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .map(|c| c.chars().collect())
                        .collect::<Vec<Vec<char>>>()
                })
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// Whether some pattern matches the path (components relative to the work dir).
    pub fn matches(&self, path: &[&str]) -> bool {
        self.0.iter().any(|p| glob(p, path, false))
    }

    /// Whether some pattern may match a path strictly below the directory `dir`.
    pub fn may_match_below(&self, dir: &[&str]) -> bool {
        self.0.iter().any(|p| glob(p, dir, true))
    }
}

/// Matches `path` against one pattern. With `below`, tells instead whether the pattern can
/// still match once more components are appended to `path`.
///
/// A set of reachable pattern positions, advanced one path component at a time (linear in
/// pattern length times path length, whatever the number of `**`).
fn glob(pat: &[Vec<char>], path: &[&str], below: bool) -> bool {
    let is_any = |i: usize| pat[i].len() == 2 && pat[i][0] == '*' && pat[i][1] == '*';
    // `**` may match no component at all.
    let close = |set: &mut Vec<bool>| {
        for i in 0..pat.len() {
            if set[i] && is_any(i) {
                set[i + 1] = true;
            }
        }
    };
    let mut cur = vec![false; pat.len() + 1];
    cur[0] = true;
    close(&mut cur);
    for comp in path {
        let name: Vec<char> = comp.chars().collect();
        let hidden = name.first() == Some(&'.');
        let mut next = vec![false; pat.len() + 1];
        for i in 0..pat.len() {
            if !cur[i] {
                continue;
            }
            if is_any(i) {
                // `**` never crosses a hidden file or directory.
                if !hidden {
                    next[i] = true;
                }
            } else if component_matches(&pat[i], &name) {
                next[i + 1] = true;
            }
        }
        close(&mut next);
        if !next.iter().any(|&b| b) {
            return false;
        }
        cur = next;
    }
    if below {
        cur[..pat.len()].iter().any(|&b| b)
    } else {
        cur[pat.len()]
    }
}

/// One component: `*` any run of characters, `?` one character, anything else itself; a name
/// that starts with `.` only matches a pattern that starts with `.`.
fn component_matches(pat: &[char], name: &[char]) -> bool {
    if name.first() == Some(&'.') && pat.first() != Some(&'.') {
        return false;
    }
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == '?' || (pat[p] != '*' && pat[p] == name[n])) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last `*` take one more character and retry.
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == '*')
}

/// Opens the directory at `path` (no symlink as its last component) and walks it.
pub fn collect_path(path: &Path, spec: &Collect) -> io::Result<Collected> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; the result is a new fd we own.
    let fd = unsafe { libc::open(c.as_ptr(), DIR_FLAGS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(collect_at(fd.as_fd(), spec))
}

/// Walks the directory `root` (the work dir) and takes the files `spec` asks for.
pub fn collect_at(root: BorrowedFd<'_>, spec: &Collect) -> Collected {
    let mut w = Walker {
        patterns: Patterns::new(&spec.patterns),
        max_files: spec.max_files,
        bytes_left: spec.max_bytes,
        visited: 0,
        stopped: false,
        out: Collected::default(),
    };
    let mut prefix = Vec::new();
    w.walk(root.as_raw_fd(), &mut prefix, 0);
    w.out.files.sort_by(|a, b| a.path.cmp(&b.path));
    w.out.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    w.out
}

const ENTRY_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
const DIR_FLAGS: libc::c_int = ENTRY_FLAGS | libc::O_DIRECTORY;

struct Walker {
    patterns: Patterns,
    max_files: usize,
    bytes_left: u64,
    visited: usize,
    stopped: bool,
    out: Collected,
}

impl Walker {
    fn skip(&mut self, path: String, reason: SkipReason) {
        if self.out.skipped.len() < MAX_SKIPPED {
            self.out.skipped.push(Skipped { path, reason });
        }
    }

    fn walk(&mut self, dir: RawFd, prefix: &mut Vec<String>, depth: usize) {
        let Some(mut names) = read_names(dir, MAX_ENTRIES + 1 - self.visited.min(MAX_ENTRIES))
        else {
            return;
        };
        names.sort();
        for name in names {
            if self.stopped {
                return;
            }
            let shown = OsStr::from_bytes(name.to_bytes()).to_string_lossy();
            prefix.push(shown.into_owned());
            let path = prefix.join("/");
            if self.visited >= MAX_ENTRIES {
                self.stopped = true;
                self.skip(path, SkipReason::TooManyFiles);
                prefix.pop();
                return;
            }
            self.visited += 1;
            let refs: Vec<&str> = prefix.iter().map(String::as_str).collect();
            let take = self.patterns.matches(&refs);
            let below = self.patterns.may_match_below(&refs);
            if take || below {
                self.entry(dir, &name, path, take, below, prefix, depth);
            }
            prefix.pop();
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        dir: RawFd,
        name: &CStr,
        path: String,
        take: bool,
        below: bool,
        prefix: &mut Vec<String>,
        depth: usize,
    ) {
        // Gone meanwhile: nothing to report.
        let Ok(st) = stat_at(dir, name) else { return };
        let utf8 = name.to_str().is_ok();
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => self.skip(path, SkipReason::Symlink),
            libc::S_IFDIR => {
                if below && utf8 && depth + 1 < MAX_DEPTH {
                    match open_at(dir, name, DIR_FLAGS) {
                        Ok(sub) => self.walk(sub.as_raw_fd(), prefix, depth + 1),
                        // Replaced by a symlink after the stat.
                        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                            self.skip(path, SkipReason::Symlink)
                        }
                        Err(_) => self.skip(path, SkipReason::NotRegular),
                    }
                } else if take || below {
                    self.skip(path, SkipReason::NotRegular);
                }
            }
            libc::S_IFREG if take && utf8 => self.file(dir, name, path, &st),
            _ if take => self.skip(path, SkipReason::NotRegular),
            _ => {}
        }
    }

    fn file(&mut self, dir: RawFd, name: &CStr, path: String, st: &libc::stat) {
        if self.out.files.len() >= self.max_files {
            return self.skip(path, SkipReason::TooManyFiles);
        }
        if st.st_size as u64 > self.bytes_left {
            return self.skip(path, SkipReason::TooLarge);
        }
        let fd = match open_at(dir, name, ENTRY_FLAGS) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return self.skip(path, SkipReason::Symlink)
            }
            Err(_) => return self.skip(path, SkipReason::NotRegular),
        };
        // The entry may have been replaced since the stat: trust only the opened fd.
        let Ok(st) = fstat(fd.as_raw_fd()) else {
            return self.skip(path, SkipReason::NotRegular);
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return self.skip(path, SkipReason::NotRegular);
        }
        let Some(content) = read_capped(fd.as_raw_fd(), self.bytes_left) else {
            return self.skip(path, SkipReason::TooLarge);
        };
        self.bytes_left -= content.len() as u64;
        self.out.files.push(CollectedFile {
            path,
            content,
            executable: st.st_mode & 0o111 != 0,
        });
    }
}

/// Reads the whole file if it holds at most `cap` bytes (reading at most `cap + 1`); `None`
/// when it is larger or cannot be read.
fn read_capped(fd: RawFd, cap: u64) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let want = (cap.saturating_add(1) - data.len() as u64).min(buf.len() as u64) as usize;
        if want == 0 {
            return None;
        }
        // SAFETY: reading at most `want <= buf.len()` bytes into a live buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), want) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        if n == 0 {
            return Some(data);
        }
        data.extend_from_slice(&buf[..n as usize]);
        if data.len() as u64 > cap {
            return None;
        }
    }
}

/// The names in directory `dir` (without `.` and `..`), at most `max`.
fn read_names(dir: RawFd, max: usize) -> Option<Vec<CString>> {
    // A directory fd of its own for the stream (opening "." again rather than dup: a dup
    // would share the read position with `dir`).
    let own = open_at(dir, c".", DIR_FLAGS).ok()?;
    let raw = own.as_raw_fd();
    // SAFETY: `raw` is a directory fd we own; on success the stream owns it (closed by
    // closedir), so ownership is released to it.
    let d = unsafe { libc::fdopendir(raw) };
    if d.is_null() {
        return None;
    }
    std::mem::forget(own);
    let mut names = Vec::new();
    loop {
        // SAFETY: `d` is a live stream; the entry it returns is valid until the next call,
        // and its name is copied out right away.
        let e = unsafe { libc::readdir64(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: d_name of a live entry is a NUL-terminated array.
        let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) };
        let b = name.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        names.push(name.to_owned());
        if names.len() >= max {
            break;
        }
    }
    // SAFETY: closes the stream (and its fd) once.
    unsafe { libc::closedir(d) };
    Some(names)
}

fn open_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name relative to a directory fd; the result is a new fd.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated name relative to a directory fd, and a live out-struct.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: an fd we hold and a live out-struct.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn pats(p: &[&str]) -> Patterns {
        Patterns::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn m(p: &[&str], path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').collect();
        pats(p).matches(&comps)
    }

    fn below(p: &[&str], dir: &str) -> bool {
        let comps: Vec<&str> = dir.split('/').collect();
        pats(p).may_match_below(&comps)
    }

    #[test]
    fn star_and_question_mark_stay_within_a_component() {
        assert!(m(&["*.csv"], "a.csv"));
        assert!(!m(&["*.csv"], ".csv"));
        assert!(!m(&["*.csv"], "d/a.csv"));
        assert!(m(&["*/*.csv"], "d/a.csv"));
        assert!(m(&["plot.png"], "plot.png"));
        assert!(!m(&["plot.png"], "plot.pngx"));
        assert!(!m(&["plot.png"], "xplot.png"));
        assert!(m(&["?.txt"], "a.txt"));
        assert!(m(&["?.txt"], "é.txt"), "? is one character, not one byte");
        assert!(!m(&["?.txt"], "ab.txt"));
        assert!(m(&["a*b*c"], "aXbYbZc"));
        assert!(!m(&["a*b*c"], "aXbYbZ"));
        assert!(m(&["*"], "x"));
        assert!(m(&["**"], "x"));
        assert!(m(&["a**"], "abc"), "`**` inside a component is a `*`");
        assert!(!m(&["a**"], "a/b"));
    }

    #[test]
    fn double_star_spans_any_depth() {
        assert!(m(&["**"], "a/b/c/d"));
        assert!(m(&["**/x.txt"], "x.txt"));
        assert!(m(&["**/x.txt"], "a/b/x.txt"));
        assert!(!m(&["**/x.txt"], "a/b/y.txt"));
        assert!(m(&["a/**/z"], "a/z"));
        assert!(m(&["a/**/z"], "a/b/c/z"));
        assert!(!m(&["a/**/z"], "b/c/z"));
        assert!(m(&["out/**"], "out/deep/f"));
        assert!(m(
            &["**/**/**/**/**/**/**/**/q"],
            "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/q"
        ));
        assert!(!m(
            &["**/**/**/**/**/**/**/**/q"],
            "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p"
        ));
    }

    #[test]
    fn hidden_entries_need_a_dot_pattern() {
        assert!(!m(&["**"], ".cache"));
        assert!(!m(&["**"], ".cache/x"));
        assert!(!m(&["**"], "a/.hidden"));
        assert!(!m(&["*"], ".env"));
        assert!(!m(&["?env"], ".env"));
        assert!(m(&[".env"], ".env"));
        assert!(m(&[".*"], ".env"));
        assert!(m(&[".cache/**"], ".cache/x/y"));
        assert!(m(&["**/.keep"], "a/b/.keep"));
        assert!(!below(&["**"], ".cache"));
        assert!(below(&[".cache/*"], ".cache"));
    }

    #[test]
    fn descends_only_where_a_pattern_can_match() {
        assert!(below(&["**"], "a/b"));
        assert!(below(&["out/*.png"], "out"));
        assert!(!below(&["out/*.png"], "other"));
        assert!(!below(&["out/*.png"], "out/deeper"));
        assert!(!below(&["*.csv"], "dir"));
        assert!(below(&["*.csv", "d/x"], "d"));
        assert!(below(&["**/x"], "a/b/c"));
    }

    #[test]
    fn odd_patterns_are_harmless() {
        assert!(
            m(&["/plot.png"], "plot.png"),
            "a leading slash is the work dir"
        );
        assert!(m(&["./a//b"], "a/b"));
        assert!(!m(&["../x"], "x"));
        assert!(!m(&[""], "x"));
        assert!(!m(&[], "x"));
        assert!(!below(&[], "x"));
    }

    fn spec(patterns: &[&str], max_files: usize, max_bytes: u64) -> Collect {
        Collect {
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            max_files,
            max_bytes,
        }
    }

    fn reason(c: &Collected, path: &str) -> Option<SkipReason> {
        c.skipped.iter().find(|s| s.path == path).map(|s| s.reason)
    }

    struct Tmp(std::path::PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "isobox-collect-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }

    #[test]
    fn walk_takes_regular_files_and_skips_everything_else() {
        let t = tmp("walk");
        let d = &t.0;
        fs::write(d.join("a.txt"), "alpha").unwrap();
        fs::write(d.join("bin"), [0u8, 1, 2, 255]).unwrap();
        fs::set_permissions(d.join("bin"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(d.join("sub/deeper")).unwrap();
        fs::write(d.join("sub/deeper/z.txt"), "zed").unwrap();
        fs::write(d.join(".hidden"), "no").unwrap();
        fs::create_dir_all(d.join(".cache")).unwrap();
        fs::write(d.join(".cache/c"), "no").unwrap();
        symlink("/etc/passwd", d.join("out.txt")).unwrap();
        symlink("/etc", d.join("etcdir")).unwrap();
        let fifo = CString::new(d.join("pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

        let started = std::time::Instant::now();
        let c = collect_path(d, &spec(&["**"], 100, 1 << 20)).unwrap();
        assert!(started.elapsed().as_secs() < 5, "the fifo must not block");
        let paths: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "bin", "sub/deeper/z.txt"]);
        assert_eq!(c.files[0].content, b"alpha");
        assert!(!c.files[0].executable);
        assert_eq!(c.files[1].content, [0u8, 1, 2, 255]);
        assert!(c.files[1].executable);
        assert_eq!(reason(&c, "out.txt"), Some(SkipReason::Symlink));
        assert_eq!(reason(&c, "etcdir"), Some(SkipReason::Symlink));
        assert_eq!(reason(&c, "pipe"), Some(SkipReason::NotRegular));
        assert_eq!(
            reason(&c, ".hidden"),
            None,
            "hidden entries are not even reported"
        );
        assert!(c.skipped.iter().all(|s| !s.path.starts_with("etcdir/")));
        let passwd = fs::read("/etc/passwd").unwrap();
        assert!(c.files.iter().all(|f| f.content != passwd));

        // A pattern that names a path through the symlinked directory still does not follow it.
        let c = collect_path(d, &spec(&["etcdir/passwd", "out.txt"], 100, 1 << 20)).unwrap();
        assert!(c.files.is_empty(), "{c:?}");
        assert_eq!(reason(&c, "etcdir"), Some(SkipReason::Symlink));
        assert_eq!(reason(&c, "out.txt"), Some(SkipReason::Symlink));

        // A directory named by a pattern is reported, not taken; a pattern going deeper
        // descends.
        let c = collect_path(d, &spec(&["sub", "*.txt"], 100, 1 << 20)).unwrap();
        let paths: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt"]);
        assert_eq!(reason(&c, "sub"), Some(SkipReason::NotRegular));
        let c = collect_path(d, &spec(&["sub/**"], 100, 1 << 20)).unwrap();
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].path, "sub/deeper/z.txt");

        // The walk cannot be pointed at a symlink either.
        assert!(collect_path(&d.join("etcdir"), &spec(&["**"], 1, 1)).is_err());
    }

    #[test]
    fn walk_caps_files_and_bytes() {
        let t = tmp("caps");
        let d = &t.0;
        for i in 0..10 {
            fs::write(d.join(format!("f{i}")), vec![b'x'; 100]).unwrap();
        }
        fs::write(d.join("huge"), vec![b'h'; 5000]).unwrap();
        let c = collect_path(d, &spec(&["f*"], 3, 1 << 20)).unwrap();
        assert_eq!(c.files.len(), 3);
        assert_eq!(
            c.skipped
                .iter()
                .filter(|s| s.reason == SkipReason::TooManyFiles)
                .count(),
            7
        );
        // 1000 bytes in all: `huge` does not fit, the small files do (exactly).
        let c = collect_path(d, &spec(&["*"], 100, 1000)).unwrap();
        assert_eq!(reason(&c, "huge"), Some(SkipReason::TooLarge));
        assert_eq!(c.files.len(), 10);
        assert_eq!(c.files.iter().map(|f| f.content.len()).sum::<usize>(), 1000);
        let c = collect_path(d, &spec(&["*"], 100, 999)).unwrap();
        assert_eq!(c.files.len(), 9);
        assert_eq!(
            c.skipped
                .iter()
                .filter(|s| s.reason == SkipReason::TooLarge)
                .count(),
            2
        );
        let c = collect_path(d, &spec(&["*"], 0, 1 << 20)).unwrap();
        assert!(c.files.is_empty());
    }

    #[test]
    fn reads_at_most_the_budget_plus_one() {
        // /dev/zero would never end; through a read it would pass any cap. The capped read
        // stops one byte past the budget.
        let f = fs::File::open("/dev/zero").unwrap();
        assert_eq!(read_capped(f.as_raw_fd(), 1000), None);
        let t = tmp("cap1");
        fs::write(t.0.join("f"), vec![1u8; 10]).unwrap();
        let f = fs::File::open(t.0.join("f")).unwrap();
        assert_eq!(read_capped(f.as_raw_fd(), 10).map(|v| v.len()), Some(10));
        let f = fs::File::open(t.0.join("f")).unwrap();
        assert_eq!(read_capped(f.as_raw_fd(), 9), None);
    }

    #[test]
    fn walk_stops_at_the_depth_and_entry_caps() {
        let t = tmp("deep");
        let mut p = t.0.clone();
        for i in 0..(MAX_DEPTH + 3) {
            p = p.join(format!("d{i}"));
        }
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("deepest"), "x").unwrap();
        let c = collect_path(&t.0, &spec(&["**"], 100, 1 << 20)).unwrap();
        assert!(c.files.is_empty());
        assert_eq!(c.skipped.len(), 1);
        assert_eq!(c.skipped[0].reason, SkipReason::NotRegular);
        assert_eq!(c.skipped[0].path.matches('/').count(), MAX_DEPTH - 1);

        let t = tmp("wide");
        for i in 0..(MAX_ENTRIES + 50) {
            fs::File::create(t.0.join(format!("e{i:05}"))).unwrap();
        }
        let c = collect_path(&t.0, &spec(&["**"], usize::MAX, u64::MAX - 1)).unwrap();
        assert_eq!(c.files.len(), MAX_ENTRIES);
        assert_eq!(c.skipped.len(), 1);
        assert_eq!(c.skipped[0].reason, SkipReason::TooManyFiles);
    }
}
