//! The frames the docker backend and the runner inside the container exchange over the
//! container's attached stdin and stdout.
//!
//! A frame is one kind byte, a big-endian u32 length and that many bytes of payload. The
//! backend sends the job (`J` header, then one `F` frame per file); for each phase the runner
//! says it is ready (`R`), the backend sets the container's limits for that phase and answers
//! `G`, then feeds stdin (`I` chunks, `E` at the end). The runner streams output (`O`), reports
//! the phase (`P`) and ends with `D`, or `X` when it cannot go on.

use serde::{Deserialize, Serialize};

/// Bumped whenever the frames change; the image carries it as a label and the backend refuses
/// an image built for another version.
pub const PROTOCOL: u32 = 1;

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

/// The job: files (contents follow in `F` frames, in this order) and phases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub files: Vec<JobFile>,
    pub phases: Vec<JobPhase>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobFile {
    pub path: String,
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
    fn oversized_frames_are_refused() {
        let mut d = Decoder::default();
        d.push(&[OUTPUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err());
    }
}
