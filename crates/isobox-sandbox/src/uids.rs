//! Uid slots, shared by both backends: a uid is in use while a process holds an exclusive
//! `flock` on its lock file, `<dir>/<uid>` (default [`DEFAULT_DIR`], the native backend's
//! `state_dir/uids`). The native backend holds it for a sandbox's life, the docker backend from
//! a container's creation until its removal, so two sandboxes or containers of any backends and
//! servers on one host never share a live uid. A process that dies releases its locks.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Where the lock files live by default (`NativeConfig::state_dir` is `/run/isobox`).
pub const DEFAULT_DIR: &str = "/run/isobox/uids";

/// Claims a free slot of `first..first + count`, trying them in turn from slot `start % count`:
/// the slot's index and its lock, held as long as the file is open. `None` when all are taken.
pub(crate) fn claim(dir: &Path, first: u32, count: u32, start: u32) -> Option<(u32, fs::File)> {
    let count = count.max(1);
    for i in 0..count {
        let k = start.wrapping_add(i) % count;
        let path = dir.join((first + k).to_string());
        let Ok(f) = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        // SAFETY: flock on an fd we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Some((k, f));
        }
    }
    None
}
