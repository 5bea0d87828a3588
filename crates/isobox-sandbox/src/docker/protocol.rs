//! The frames the docker backend and the runner inside the container exchange over the
//! container's attached stdin and stdout.
//!
//! A frame is one kind byte, a big-endian u32 length and that many bytes of payload. The
//! backend sends the job (`J` header, then one `F` frame per file); for each phase the runner
//! says it is ready (`R`), the backend sets the container's limits for that phase and answers
//! `G`, then feeds stdin (`I` chunks, `E` at the end). The runner streams output (`O`), reports
//! the phase (`P`) and ends with `D`, or `X` when it cannot go on. When the job asks for files
//! back, the runner sends, before `D`, one `C` frame ([`CollectedHeader`]: names, sizes,
//! skipped entries) and then the files' bytes, in that order, as `K` frames of at most
//! [`CHUNK`] bytes each (a file may span many frames, several small files may share one): a
//! file of any size up to the job's `max_bytes` travels in bounded frames.

use serde::{Deserialize, Serialize};

/// Bumped whenever the frames change; the image carries it as a label and the backend refuses
/// an image built for another version.
/// (3: the runner starts through the image's own copy of its loader and libraries,
/// [`super::config::RUNNER_LIBS`]; images of version 2 have none.)
pub const PROTOCOL: u32 = 3;

/// Largest payload of one frame (a 1 MiB source file fits with room).
pub const MAX_FRAME: usize = 16 << 20;

pub const JOB: u8 = b'J';
pub const FILE: u8 = b'F';
pub const READY: u8 = b'R';
pub const GO: u8 = b'G';
pub const STDIN: u8 = b'I';
pub const STDIN_END: u8 = b'E';
pub const OUTPUT: u8 = b'O';
pub const PHASE: u8 = b'P';
pub const DONE: u8 = b'D';
pub const FAILED: u8 = b'X';
pub const COLLECTED: u8 = b'C';
pub const CONTENT: u8 = b'K';

/// Most bytes of file content in one `K` frame.
pub const CHUNK: usize = 1 << 20;

/// The job: files (contents follow in `F` frames, in this order) and phases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub files: Vec<JobFile>,
    pub phases: Vec<JobPhase>,
    /// Files to send back after the last phase ([`crate::Collect`]).
    pub collect: Option<JobCollect>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobFile {
    pub path: String,
    pub executable: bool,
    /// Written 0444 (0555 when executable).
    pub readonly: bool,
}

/// [`crate::Collect`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobCollect {
    pub patterns: Vec<String>,
    pub max_files: usize,
    pub max_bytes: u64,
}

/// What the runner took: the files (their bytes follow in `K` frames, in this order) and the
/// entries it skipped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CollectedHeader {
    pub files: Vec<CollectedEntry>,
    /// `(path, reason)`, the reason as [`crate::SkipReason`] serializes it.
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectedEntry {
    pub path: String,
    pub size: u64,
    pub executable: bool,
}

/// One program and the limits the runner enforces itself (memory, processes and CPU share are
/// the container's cgroup limits, set by the backend).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobPhase {
    pub argv: Vec<String>,
    /// The whole environment (base plus the phase's own).
    pub env: Vec<(String, String)>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub max_output: u64,
    /// `[resource, value]` pairs, soft = hard.
    pub rlimits: Vec<[u64; 2]>,
    pub continue_on_failure: bool,
    /// The program's fd 2 is its stdout pipe.
    pub stderr_to_stdout: bool,
}

/// What the runner measured of one phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PhaseResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// `wall`, `cpu` or `output`: the limit the runner enforced by killing the phase.
    pub limit: Option<String>,
    /// The container's OOM killer struck during the phase.
    pub oom: bool,
    pub cpu_ns: u64,
    pub wall_ns: u64,
    pub peak_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The program could not be started, or the runner failed.
    pub error: Option<String>,
}

/// A skip reason's wire name.
pub fn reason_name(r: crate::SkipReason) -> &'static str {
    match r {
        crate::SkipReason::Symlink => "symlink",
        crate::SkipReason::NotRegular => "not_regular",
        crate::SkipReason::TooManyFiles => "too_many_files",
        crate::SkipReason::TooLarge => "too_large",
    }
}

/// The reason a wire name stands for.
pub fn reason_of(name: &str) -> Option<crate::SkipReason> {
    [
        crate::SkipReason::Symlink,
        crate::SkipReason::NotRegular,
        crate::SkipReason::TooManyFiles,
        crate::SkipReason::TooLarge,
    ]
    .into_iter()
    .find(|r| reason_name(*r) == name)
}

/// The frames that carry `c` back: one `C` header, then the contents in `K` frames of at
/// most [`CHUNK`] bytes.
pub fn collected_frames(c: &crate::Collected) -> Vec<(u8, Vec<u8>)> {
    let header = CollectedHeader {
        files: c
            .files
            .iter()
            .map(|f| CollectedEntry {
                path: f.path.clone(),
                size: f.content.len() as u64,
                executable: f.executable,
            })
            .collect(),
        skipped: c
            .skipped
            .iter()
            .map(|s| (s.path.clone(), reason_name(s.reason).to_string()))
            .collect(),
    };
    let mut out = vec![(
        COLLECTED,
        serde_json::to_vec(&header).unwrap_or_else(|_| b"{}".to_vec()),
    )];
    let mut buf = Vec::new();
    for f in &c.files {
        let mut rest = &f.content[..];
        while !rest.is_empty() {
            let n = rest.len().min(CHUNK - buf.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if buf.len() == CHUNK {
                out.push((CONTENT, std::mem::take(&mut buf)));
            }
        }
    }
    if !buf.is_empty() {
        out.push((CONTENT, buf));
    }
    out
}

/// Reassembles what [`collected_frames`] sent, checking it against what the job asked for (the
/// runner shares the program's uid, so nothing it says is trusted further than that).
pub struct CollectedReader {
    header: CollectedHeader,
    files: Vec<crate::CollectedFile>,
    /// Bytes still expected for the file being filled (`files.last()`), and files left.
    left_in_file: u64,
    next: usize,
}

impl CollectedReader {
    pub fn new(payload: &[u8], asked: &crate::Collect) -> Result<CollectedReader, String> {
        let header: CollectedHeader =
            serde_json::from_slice(payload).map_err(|e| format!("bad collected header: {e}"))?;
        let total = header
            .files
            .iter()
            .try_fold(0u64, |a, f| a.checked_add(f.size));
        if header.files.len() > asked.max_files || total.is_none_or(|t| t > asked.max_bytes) {
            return Err("the runner sent back more files than asked for".into());
        }
        let as_files: Vec<crate::SandboxFile> = header
            .files
            .iter()
            .map(|f| crate::SandboxFile {
                path: f.path.clone(),
                content: vec![],
                executable: false,
                readonly: false,
            })
            .collect();
        crate::spec::check_files(&as_files).map_err(|e| format!("collected files: {e}"))?;
        if header.skipped.len() > crate::collect::MAX_SKIPPED
            || header.skipped.iter().any(|(_, r)| reason_of(r).is_none())
        {
            return Err("bad list of skipped files".into());
        }
        let mut r = CollectedReader {
            header,
            files: Vec::new(),
            left_in_file: 0,
            next: 0,
        };
        r.advance();
        Ok(r)
    }

    /// Starts the next file that still needs bytes (empty files are complete at once).
    fn advance(&mut self) {
        while self.left_in_file == 0 && self.next < self.header.files.len() {
            let e = &self.header.files[self.next];
            self.files.push(crate::CollectedFile {
                path: e.path.clone(),
                content: Vec::with_capacity(e.size.min(CHUNK as u64) as usize),
                executable: e.executable,
            });
            self.left_in_file = e.size;
            self.next += 1;
        }
    }

    /// Adds one `K` frame's bytes.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            if self.left_in_file == 0 {
                return Err("the runner sent more file content than announced".into());
            }
            let n = (data.len() as u64).min(self.left_in_file) as usize;
            if let Some(f) = self.files.last_mut() {
                f.content.extend_from_slice(&data[..n]);
            }
            self.left_in_file -= n as u64;
            data = &data[n..];
            self.advance();
        }
        Ok(())
    }

    /// The files and skipped entries, once every announced byte arrived.
    pub fn finish(self) -> Result<crate::Collected, String> {
        if self.left_in_file != 0 || self.next < self.header.files.len() {
            return Err("the runner's collected files were cut short".into());
        }
        let mut skipped = Vec::with_capacity(self.header.skipped.len());
        for (path, r) in self.header.skipped {
            if let Some(reason) = reason_of(&r) {
                skipped.push(crate::Skipped { path, reason });
            }
        }
        Ok(crate::Collected {
            files: self.files,
            skipped,
        })
    }
}

/// Appends one frame to `out`.
pub fn encode(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// One frame as a new buffer.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 5);
    encode(&mut v, kind, payload);
    v
}

/// Collects bytes and splits them into frames.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame; an error when the stream is not made of frames.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes is too large"));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some((kind, payload)))
    }
}

/// An output frame's payload: stream (1 stdout, 2 stderr) then the bytes.
pub fn output_payload(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(stream);
    v.extend_from_slice(data);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_arbitrary_splits() {
        let mut wire = Vec::new();
        encode(&mut wire, JOB, b"{\"files\":[]}");
        encode(&mut wire, STDIN, b"");
        encode(&mut wire, OUTPUT, &output_payload(1, b"hello"));
        for split in 0..wire.len() {
            let mut d = Decoder::default();
            d.push(&wire[..split]);
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.push(&wire[split..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0], (JOB, b"{\"files\":[]}".to_vec()));
            assert_eq!(got[1], (STDIN, vec![]));
            assert_eq!(got[2].1, b"\x01hello".to_vec());
        }
    }

    #[test]
    fn collected_files_travel_in_bounded_frames() {
        let big: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        let c = crate::Collected {
            files: vec![
                crate::CollectedFile {
                    path: "a".into(),
                    content: b"small".to_vec(),
                    executable: false,
                },
                crate::CollectedFile {
                    path: "b/big".into(),
                    content: big.clone(),
                    executable: true,
                },
                crate::CollectedFile {
                    path: "empty".into(),
                    content: vec![],
                    executable: false,
                },
            ],
            skipped: vec![crate::Skipped {
                path: "out.txt".into(),
                reason: crate::SkipReason::Symlink,
            }],
        };
        let frames = collected_frames(&c);
        assert_eq!(frames[0].0, COLLECTED);
        assert!(frames[1..]
            .iter()
            .all(|(k, p)| *k == CONTENT && p.len() <= CHUNK));
        let asked = crate::Collect {
            patterns: vec!["**".into()],
            max_files: 3,
            max_bytes: big.len() as u64 + 5,
        };
        let mut r = CollectedReader::new(&frames[0].1, &asked).unwrap();
        for (_, p) in &frames[1..] {
            r.push(p).unwrap();
        }
        assert_eq!(r.finish().unwrap(), c);

        // More than asked for, or more bytes than announced, is refused.
        let fewer = crate::Collect {
            max_files: 2,
            ..asked.clone()
        };
        assert!(CollectedReader::new(&frames[0].1, &fewer).is_err());
        let less = crate::Collect {
            max_bytes: big.len() as u64,
            ..asked.clone()
        };
        assert!(CollectedReader::new(&frames[0].1, &less).is_err());
        let mut r = CollectedReader::new(&frames[0].1, &asked).unwrap();
        for (_, p) in &frames[1..] {
            r.push(p).unwrap();
        }
        assert!(r.push(b"x").is_err());
        let r = CollectedReader::new(&frames[0].1, &asked).unwrap();
        assert!(r.finish().is_err());
        // A path that climbs out is refused.
        let bad = br#"{"files":[{"path":"../x","size":0,"executable":false}],"skipped":[]}"#;
        assert!(CollectedReader::new(bad, &asked).is_err());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut d = Decoder::default();
        d.push(&[OUTPUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }
}
