//! The server's environment, taken out of the process before the sandbox launcher is forked.
//!
//! `isobox serve` and `isobox worker` are configured by environment variables, secrets among
//! them (`API_KEYS`, `OAUTH2_CLIENT_SECRET`, `ISOBOX_WEBHOOK_SECRET`, a password in
//! `REDIS_URL`). A fork copies the environment: the launcher, and every sandbox init it clones,
//! would hold them for as long as they live. So, first thing in `main` (one thread, no
//! configuration read yet), [`take`] copies the environment into a private mapping that no child
//! inherits (`MADV_DONTFORK`), overwrites the strings in place (the block the kernel put on the
//! stack at `execve`, which `/proc/<pid>/environ` shows and `clearenv` alone leaves in memory)
//! and empties the environment. Then the launcher is forked, with an empty environment and no
//! copy of it, and [`Saved::into_map`] turns the copy into the map the configuration is loaded
//! from. [`restore`] puts back the few variables the server's own libraries read (`PATH`,
//! `HOME`, `DOCKER_HOST`, proxies...): after the fork, so they never reach the launcher either.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;

extern "C" {
    static mut environ: *const *const libc::c_char;
}

/// The variables put back into the server's own environment after the launcher is forked:
/// what the libraries the server uses read from the process environment (the Docker client,
/// HTTP clients' proxies, TLS roots, locale, time zone, Rust's backtraces, log colours).
/// Everything else (all of IsoBox's settings, and any secret) is only in the configuration map.
pub const KEPT: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "NO_COLOR",
    "DOCKER_HOST",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
];

/// The environment as it was, `NAME=value\0...`, in a private anonymous mapping marked
/// `MADV_DONTFORK` (absent from every child).
pub struct Saved {
    addr: *mut u8,
    len: usize,
    map_len: usize,
}

/// Overwrites `len` bytes at `p` with zeros (volatile: nothing reads them afterwards, and the
/// writes must happen all the same).
///
/// # Safety
/// `p..p+len` must be writable memory that nothing else uses any more.
unsafe fn zero(p: *mut u8, len: usize) {
    for i in 0..len {
        // SAFETY: within the range the caller vouches for.
        unsafe { std::ptr::write_volatile(p.add(i), 0) };
    }
}

/// The kernel's environment block of this process (`env_start`, `env_end`: fields 50 and 51 of
/// `/proc/self/stat`).
fn env_block() -> io::Result<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/self/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no field {n} in /proc/self/stat")))
    };
    Ok((field(50)?, field(51)?))
}

/// Takes the environment out of the process: copies it into a [`Saved`], overwrites every
/// string of it (the kernel's block and any other) with zeros and empties it.
///
/// # Safety
/// Only while the process has a single thread, before anything holds a pointer returned by
/// `getenv` (first thing in `main`).
pub unsafe fn take() -> io::Result<Saved> {
    let (start, end) = env_block()?;
    // SAFETY: single-threaded (this function's contract): nothing changes `environ` meanwhile;
    // every pointer in it up to the null one is a NUL-terminated string.
    let strings: Vec<*mut libc::c_char> = unsafe {
        let mut v = Vec::new();
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            v.push(*p as *mut libc::c_char);
            p = p.add(1);
        }
        v
    };
    // SAFETY: each is a NUL-terminated string (see above).
    let len: usize = strings
        .iter()
        .map(|&s| unsafe { CStr::from_ptr(s) }.to_bytes().len() + 1)
        .sum();
    // SAFETY: sysconf takes a plain number.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let map_len = len.max(1).div_ceil(page) * page;
    // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: advice on the mapping just made.
    if unsafe { libc::madvise(addr, map_len, libc::MADV_DONTFORK) } != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: unmaps the mapping just made, which nothing refers to.
        unsafe { libc::munmap(addr, map_len) };
        return Err(e);
    }
    let addr = addr.cast::<u8>();
    let mut off = 0;
    for &s in &strings {
        // SAFETY: a NUL-terminated string (see above), copied with its NUL into the mapping,
        // which has room for all of them (`len`); then overwritten in place: it lives in the
        // kernel's block or in memory `setenv` allocated, both writable, and nothing uses it
        // once the environment is emptied below.
        unsafe {
            let n = CStr::from_ptr(s).to_bytes().len() + 1;
            std::ptr::copy_nonoverlapping(s.cast::<u8>(), addr.add(off), n);
            off += n;
            zero(s.cast(), n - 1);
        }
    }
    if start != 0 && end > start {
        // SAFETY: the kernel's environment block, on this process's stack (writable); once
        // `environ` is emptied below nothing refers to it.
        unsafe { zero(start as *mut u8, end - start) };
    }
    // SAFETY: single-threaded (this function's contract).
    unsafe { libc::clearenv() };
    Ok(Saved { addr, len, map_len })
}

impl Saved {
    /// The saved variables (those whose name and value are UTF-8, as `std::env::var` would
    /// see them); the copy is overwritten and unmapped.
    pub fn into_map(self) -> HashMap<String, String> {
        // SAFETY: the first `len` bytes of the mapping were written by `take`.
        let bytes = unsafe { std::slice::from_raw_parts(self.addr, self.len) };
        let map = bytes
            .split(|&b| b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        drop(self);
        map
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which nothing else refers to.
        unsafe {
            zero(self.addr, self.len);
            libc::munmap(self.addr.cast(), self.map_len);
        }
    }
}

/// Puts the variables of [`KEPT`] that `saved` has back into the process environment.
///
/// Call while the process has a single thread.
pub fn restore(saved: &HashMap<String, String>) {
    for name in KEPT {
        if let Some(v) = saved.get(*name) {
            std::env::set_var(name, v);
        }
    }
}
