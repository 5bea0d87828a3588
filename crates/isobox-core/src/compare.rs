//! Output comparison for test cases, as the output is produced.
//!
//! A [`Comparator`] holds the expected output (the request's bytes, borrowed) and is fed the
//! program's stdout chunk by chunk; it never copies either side whole. Each mode is a
//! normalizer that turns a byte stream into the canonical stream the mode compares; the
//! program's side is pushed through it, the expected side is pulled through another
//! instance in small slices, and the two streams are compared byte by byte as they come.
//! What a normalizer holds back is only what it cannot decide yet: a run of whitespace (which
//! may end a line) and a count of line ends (which may be trailing blank lines). `float` mode
//! compares tokens, holding at most [`MAX_NUMBER`] bytes of the current token.

use crate::request::{Compare, CompareMode};

/// Tokens longer than this are compared byte for byte, never as numbers.
pub const MAX_NUMBER: usize = 128;

/// Compares a program's output, fed in chunks, with the expected output.
pub struct Comparator<'e> {
    inner: Inner<'e>,
}

enum Inner<'e> {
    /// `exact`, `trim` and `tokens`: normalized streams compared byte by byte.
    Stream {
        actual: Normalizer,
        expected: Pull<'e>,
        equal: bool,
    },
    /// `float`: tokens compared one by one.
    Float(FloatCompare<'e>),
}

impl<'e> Comparator<'e> {
    pub fn new(expected: &'e [u8], how: Compare) -> Comparator<'e> {
        let inner = match how.mode {
            CompareMode::Float => Inner::Float(FloatCompare::new(expected, how)),
            mode => Inner::Stream {
                actual: Normalizer::new(mode),
                expected: Pull::new(expected, mode),
                equal: true,
            },
        };
        Comparator { inner }
    }

    /// More of the program's output.
    pub fn feed(&mut self, chunk: &[u8]) {
        match &mut self.inner {
            Inner::Stream {
                actual,
                expected,
                equal,
            } => {
                if *equal {
                    actual.push(chunk, &mut |b| {
                        if *equal && expected.next() != Some(b) {
                            *equal = false;
                        }
                    });
                }
            }
            Inner::Float(f) => f.feed(chunk),
        }
    }

    /// Whether the whole output equals the expected one.
    pub fn finish(self) -> bool {
        match self.inner {
            Inner::Stream {
                mut actual,
                mut expected,
                mut equal,
            } => {
                actual.finish(&mut |b| {
                    if equal && expected.next() != Some(b) {
                        equal = false;
                    }
                });
                equal && expected.next().is_none()
            }
            Inner::Float(f) => f.finish(),
        }
    }
}

/// Compares `actual` with `expected` in one go (both whole): what a comparator fed `actual`
/// in any chunks decides.
pub fn equal(actual: &[u8], expected: &[u8], how: Compare) -> bool {
    let mut c = Comparator::new(expected, how);
    c.feed(actual);
    c.finish()
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')
}

/// Turns a byte stream into the canonical stream of a mode:
/// - `exact`: itself;
/// - `trim`: every line without its trailing spaces, tabs and carriage returns, and without
///   the trailing empty lines of the whole output (so `"1 \n2\n\n"` is `"1\n2"`);
/// - `tokens`: the whitespace-separated tokens joined by one space.
struct Normalizer {
    mode: CompareMode,
    /// `trim`: whitespace seen on the current line, not yet known to be trailing.
    held_space: Vec<u8>,
    /// `trim`: line ends seen, not yet known to be trailing.
    held_lines: usize,
    /// `trim`: anything emitted yet (a first line end is never trailing before content).
    /// `tokens`: a token emitted yet.
    started: bool,
    /// `tokens`: whitespace seen since the last token byte.
    gap: bool,
}

impl Normalizer {
    fn new(mode: CompareMode) -> Normalizer {
        Normalizer {
            mode,
            held_space: Vec::new(),
            held_lines: 0,
            started: false,
            gap: false,
        }
    }

    fn push(&mut self, chunk: &[u8], out: &mut dyn FnMut(u8)) {
        match self.mode {
            CompareMode::Exact | CompareMode::Float => chunk.iter().for_each(|&b| out(b)),
            CompareMode::Trim => {
                for &b in chunk {
                    match b {
                        b'\n' => {
                            self.held_space.clear();
                            self.held_lines += 1;
                        }
                        b' ' | b'\t' | b'\r' => self.held_space.push(b),
                        _ => {
                            for _ in 0..self.held_lines {
                                out(b'\n');
                            }
                            self.held_lines = 0;
                            for &s in &self.held_space {
                                out(s);
                            }
                            self.held_space.clear();
                            self.started = true;
                            out(b);
                        }
                    }
                }
            }
            CompareMode::Tokens => {
                for &b in chunk {
                    if is_space(b) {
                        self.gap = true;
                    } else {
                        if self.gap && self.started {
                            out(b' ');
                        }
                        self.gap = false;
                        self.started = true;
                        out(b);
                    }
                }
            }
        }
    }

    /// The end of the stream: what is still held back is trailing, and dropped.
    fn finish(&mut self, _out: &mut dyn FnMut(u8)) {
        self.held_space.clear();
        self.held_lines = 0;
    }
}

/// The expected side: its normalized bytes, made a slice at a time as they are asked for.
struct Pull<'e> {
    src: &'e [u8],
    pos: usize,
    norm: Normalizer,
    ready: std::collections::VecDeque<u8>,
    done: bool,
}

impl<'e> Pull<'e> {
    fn new(src: &'e [u8], mode: CompareMode) -> Pull<'e> {
        Pull {
            src,
            pos: 0,
            norm: Normalizer::new(mode),
            ready: Default::default(),
            done: false,
        }
    }

    fn next(&mut self) -> Option<u8> {
        while self.ready.is_empty() && !self.done {
            let end = (self.pos + 4096).min(self.src.len());
            let ready = &mut self.ready;
            if self.pos < end {
                self.norm
                    .push(&self.src[self.pos..end], &mut |b| ready.push_back(b));
                self.pos = end;
            } else {
                self.norm.finish(&mut |b| ready.push_back(b));
                self.done = true;
            }
        }
        self.ready.pop_front()
    }
}

/// `float`: the tokens of both sides, numbers equal within the tolerances, other tokens byte
/// for byte.
struct FloatCompare<'e> {
    how: Compare,
    expected: &'e [u8],
    /// Where the next expected token starts (or whitespace before it).
    pos: usize,
    /// The program's current token, up to `MAX_NUMBER` bytes.
    token: Vec<u8>,
    /// The current token outgrew `token`: it is being compared byte by byte with `long`.
    long: Option<&'e [u8]>,
    long_at: usize,
    equal: bool,
}

impl<'e> FloatCompare<'e> {
    fn new(expected: &'e [u8], how: Compare) -> FloatCompare<'e> {
        FloatCompare {
            how,
            expected,
            pos: 0,
            token: Vec::new(),
            long: None,
            long_at: 0,
            equal: true,
        }
    }

    /// The next expected token, if any.
    fn next_expected(&mut self) -> Option<&'e [u8]> {
        let e = self.expected;
        while self.pos < e.len() && is_space(e[self.pos]) {
            self.pos += 1;
        }
        if self.pos == e.len() {
            return None;
        }
        let start = self.pos;
        while self.pos < e.len() && !is_space(e[self.pos]) {
            self.pos += 1;
        }
        Some(&e[start..self.pos])
    }

    fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if !self.equal {
                return;
            }
            if is_space(b) {
                self.end_token();
                continue;
            }
            if let Some(want) = self.long {
                if want.get(self.long_at) != Some(&b) {
                    self.equal = false;
                }
                self.long_at += 1;
                continue;
            }
            self.token.push(b);
            if self.token.len() > MAX_NUMBER {
                // Too long for a number: the rest is compared as it comes.
                match self.next_expected() {
                    Some(want) if want.starts_with(&self.token) => {
                        self.long = Some(want);
                        self.long_at = self.token.len();
                        self.token.clear();
                    }
                    _ => self.equal = false,
                }
            }
        }
    }

    fn end_token(&mut self) {
        if let Some(want) = self.long.take() {
            if self.long_at != want.len() {
                self.equal = false;
            }
            return;
        }
        if self.token.is_empty() {
            return;
        }
        let token = std::mem::take(&mut self.token);
        match self.next_expected() {
            Some(want) if tokens_match(&token, want, &self.how) => {}
            _ => self.equal = false,
        }
    }

    fn finish(mut self) -> bool {
        self.end_token();
        self.equal && self.next_expected().is_none()
    }
}

/// Two tokens are equal byte for byte, or both numbers within the absolute or the relative
/// tolerance.
fn tokens_match(got: &[u8], want: &[u8], how: &Compare) -> bool {
    if got == want {
        return true;
    }
    let num = |t: &[u8]| -> Option<f64> {
        let s = std::str::from_utf8(t).ok()?;
        // Only decimal numbers: no `inf`, `nan` or hex spellings standing in for others.
        if !s
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'))
        {
            return None;
        }
        s.parse::<f64>().ok().filter(|v| v.is_finite())
    };
    match (num(got), num(want)) {
        (Some(g), Some(w)) => {
            let diff = (g - w).abs();
            diff <= how.absolute || diff <= how.relative * w.abs()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(m: CompareMode) -> Compare {
        Compare {
            mode: m,
            ..Compare::default()
        }
    }

    /// The comparator's answer for `actual` fed whole, byte by byte and in 3-byte chunks: all
    /// must agree.
    fn check(actual: &str, expected: &str, how: Compare) -> bool {
        let whole = equal(actual.as_bytes(), expected.as_bytes(), how);
        for size in [1, 3] {
            let mut c = Comparator::new(expected.as_bytes(), how);
            for chunk in actual.as_bytes().chunks(size) {
                c.feed(chunk);
            }
            assert_eq!(
                c.finish(),
                whole,
                "chunks of {size}: {actual:?} vs {expected:?}"
            );
        }
        whole
    }

    #[test]
    fn exact() {
        let m = mode(CompareMode::Exact);
        assert!(check("1 2\n", "1 2\n", m));
        assert!(check("", "", m));
        assert!(!check("1 2", "1 2\n", m));
        assert!(!check("1 2\n", "1 2", m));
        assert!(!check("1 3\n", "1 2\n", m));
        assert!(!check("1 2\n\n", "1 2\n", m));
    }

    #[test]
    fn trim_ignores_trailing_whitespace_of_lines_and_output() {
        let m = mode(CompareMode::Trim);
        assert!(check("1 2\n", "1 2", m));
        assert!(check("1 2  \t\r\n3\n\n\n", "1 2\n3", m));
        assert!(check("a\r\nb\r\n", "a\nb\n", m));
        assert!(check("", "\n\n", m));
        assert!(check("  x", "  x\n", m));
        // Leading whitespace and inner blank lines still count.
        assert!(!check(" 1", "1", m));
        assert!(!check("1\n\n2", "1\n2", m));
        assert!(!check("1  2", "1 2", m));
        assert!(!check("1\n2", "1\n3", m));
        assert!(!check("1\n2", "1", m));
    }

    #[test]
    fn tokens_ignore_all_whitespace_runs() {
        let m = mode(CompareMode::Tokens);
        assert!(check("1   2\n3\n", "1 2 3", m));
        assert!(check("\n\t 1 2", "1\n2\n", m));
        assert!(check("", "  \n", m));
        assert!(!check("12", "1 2", m));
        assert!(!check("1 2", "1 2 3", m));
        assert!(!check("1 2 3", "1 2", m));
        assert!(!check("1.0", "1", m));
    }

    #[test]
    fn float_within_tolerance() {
        let m = Compare {
            mode: CompareMode::Float,
            absolute: 1e-6,
            relative: 1e-6,
        };
        assert!(check("3.1415926\n", "3.14159265", m));
        assert!(check("1e9 x", "1000000500 x", m), "relative");
        assert!(check("0.0000001 yes", "0 yes", m), "absolute");
        assert!(!check("3.14", "3.1415926", m));
        assert!(!check("yes", "YES", m));
        assert!(!check("1 2", "1", m));
        assert!(!check("1", "1 2", m));
        assert!(!check("nan", "1", m));
        assert!(check("nan", "nan", m), "equal bytes are equal tokens");
        assert!(!check("inf", "1e400", m));
        let loose = Compare {
            absolute: 0.01,
            ..m
        };
        assert!(check("3.14", "3.1415926", loose));
    }

    #[test]
    fn float_long_tokens_compare_as_bytes() {
        let m = mode(CompareMode::Float);
        let long = "7".repeat(MAX_NUMBER * 3);
        assert!(check(
            &format!("{long} 1"),
            &format!("{long}\n1.0000000001"),
            m
        ));
        let mut other = long.clone();
        other.replace_range(MAX_NUMBER * 2..MAX_NUMBER * 2 + 1, "8");
        assert!(!check(&other, &long, m));
        assert!(!check(&long[1..], &long, m));
        assert!(!check(&format!("{long}7"), &long, m));
    }

    #[test]
    fn a_huge_output_is_never_copied() {
        // 8 MiB of output against a 2-byte expectation fails without holding the output: the
        // comparator stops at the first difference.
        let mut c = Comparator::new(b"ok", mode(CompareMode::Trim));
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            c.feed(&chunk);
        }
        assert!(!c.finish());
        // Whitespace is what a trim normalizer holds: only the current line's.
        let mut c = Comparator::new(b"ok", mode(CompareMode::Trim));
        c.feed(b"ok");
        for _ in 0..8 {
            c.feed(&[b'\n'; 1 << 20]);
        }
        assert!(c.finish());
    }
}
