//! The compile cache: what a compile step left in the work dir, kept so the same program
//! compiled again skips the compiler.
//!
//! An entry is content-addressed by everything that decides the artifacts: the backend, the
//! language and its toolchain version, the compile command after its placeholders (compiler
//! options included), its environment, the compile limits, every file with its name, and the
//! cache scope (the caller, unless the operator shares entries between callers). Only a
//! successful compile is kept, and only when the backend took every file out (no symlink,
//! fifo or other entry skipped, within the caps): otherwise the program runs the old way, the
//! compile step and the run in one sandbox.
//!
//! Artifacts are taken out of the sandbox as regular files only (never through a symlink, see
//! [`isobox_sandbox::Collect`]), within [`CompileCacheConfig::max_entry_bytes`], and written
//! read-only into each later sandbox, which gets its own copy: a program cannot change the
//! entry. The cache is bounded in bytes (least recently used entries go first), lives in the
//! process's memory, and a miss is single-flight: callers compiling the same program at once
//! wait for the first compile instead of running the compiler each.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use isobox_sandbox::{PhaseReport, SandboxFile};

use crate::dedup::Key;

/// Bounds of the compile cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompileCacheConfig {
    /// Total bytes of artifacts kept (0 disables the cache).
    pub max_bytes: u64,
    /// The most one compile may leave to be kept (files, bytes in all).
    pub max_entry_bytes: u64,
    pub max_entry_files: usize,
}

impl Default for CompileCacheConfig {
    fn default() -> Self {
        CompileCacheConfig {
            max_bytes: 256 << 20,
            max_entry_bytes: 64 << 20,
            max_entry_files: 1000,
        }
    }
}

/// A kept compile: the files for the run and the compile step's report.
#[derive(Debug)]
pub struct Compiled {
    /// Every regular file the compile left in the work dir (sources included), read-only.
    pub files: Vec<SandboxFile>,
    pub report: PhaseReport,
    pub bytes: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, (Arc<Compiled>, u64)>,
    /// Compiles under way: later callers wait on the flight's condvar.
    flights: HashMap<Key, Arc<Flight>>,
    bytes: u64,
    tick: u64,
    hits: u64,
    misses: u64,
}

#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    cv: Condvar,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompileCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: u64,
}

pub struct CompileCache {
    cfg: CompileCacheConfig,
    state: Mutex<State>,
}

/// What [`CompileCache::lookup`] found.
pub enum Lookup {
    Hit(Arc<Compiled>),
    /// Not kept: the caller compiles, then [`CompileCache::insert`]s (or not) and drops the
    /// guard, which lets the callers waiting for this key go on.
    Miss(FlightGuard),
}

/// Held by the one caller compiling a key; waiters wake when it is dropped.
pub struct FlightGuard {
    cache: Option<Arc<CompileCache>>,
    key: Key,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let Some(cache) = &self.cache else { return };
        let flight = cache
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.flights.remove(&self.key));
        if let Some(f) = flight {
            if let Ok(mut done) = f.done.lock() {
                *done = true;
            }
            f.cv.notify_all();
        }
    }
}

impl CompileCache {
    pub fn new(cfg: CompileCacheConfig) -> Arc<CompileCache> {
        Arc::new(CompileCache {
            cfg,
            state: Mutex::new(State::default()),
        })
    }

    pub fn config(&self) -> &CompileCacheConfig {
        &self.cfg
    }

    pub fn enabled(&self) -> bool {
        self.cfg.max_bytes > 0
    }

    pub fn stats(&self) -> CompileCacheStats {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        CompileCacheStats {
            hits: s.hits,
            misses: s.misses,
            entries: s.entries.len(),
            bytes: s.bytes,
        }
    }

    /// The entry of `key`, or the right to compile it. A caller that finds the key being
    /// compiled waits (up to `wait`) for that compile, then looks again.
    pub fn lookup(self: &Arc<Self>, key: Key, wait: Duration) -> Lookup {
        if !self.enabled() {
            return Lookup::Miss(FlightGuard { cache: None, key });
        }
        let deadline = std::time::Instant::now() + wait;
        loop {
            let flight = {
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                s.tick += 1;
                let tick = s.tick;
                if let Some((entry, used)) = s.entries.get_mut(&key) {
                    *used = tick;
                    let entry = entry.clone();
                    s.hits += 1;
                    return Lookup::Hit(entry);
                }
                match s.flights.get(&key) {
                    Some(f) => f.clone(),
                    None => {
                        s.misses += 1;
                        s.flights.insert(key, Arc::new(Flight::default()));
                        return Lookup::Miss(FlightGuard {
                            cache: Some(self.clone()),
                            key,
                        });
                    }
                }
            };
            let now = std::time::Instant::now();
            if now >= deadline {
                // The other compile takes too long: compile without the cache's help.
                self.state.lock().unwrap_or_else(|e| e.into_inner()).misses += 1;
                return Lookup::Miss(FlightGuard { cache: None, key });
            }
            let done = flight.done.lock().unwrap_or_else(|e| e.into_inner());
            if !*done {
                let _ = flight.cv.wait_timeout(done, deadline - now);
            }
        }
    }

    /// Keeps `compiled` under the key of `guard`, evicting the least recently used entries to
    /// stay within the byte bound. Entries over the per-entry bound are not kept.
    pub fn insert(&self, guard: &FlightGuard, compiled: Compiled) -> Arc<Compiled> {
        let compiled = Arc::new(compiled);
        if guard.cache.is_none()
            || compiled.bytes > self.cfg.max_entry_bytes
            || compiled.bytes > self.cfg.max_bytes
        {
            return compiled;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.tick += 1;
        let tick = s.tick;
        if let Some((old, _)) = s.entries.insert(guard.key, (compiled.clone(), tick)) {
            s.bytes -= old.bytes;
        }
        s.bytes += compiled.bytes;
        while s.bytes > self.cfg.max_bytes {
            let Some(oldest) = s
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((gone, _)) = s.entries.remove(&oldest) {
                s.bytes -= gone.bytes;
            }
        }
        compiled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(bytes: usize) -> Compiled {
        Compiled {
            files: vec![SandboxFile {
                path: "main".into(),
                content: vec![0; bytes],
                executable: true,
                readonly: true,
            }],
            report: isobox_sandbox::not_started(
                &isobox_sandbox::ExecSpec::single(vec!["x".into()], vec![], Default::default())
                    .phases[0],
                isobox_sandbox::Status::Ok,
            ),
            bytes: bytes as u64,
        }
    }

    fn key(n: u8) -> Key {
        [n; 32]
    }

    fn hit(c: &Arc<CompileCache>, k: Key) -> bool {
        matches!(c.lookup(k, Duration::ZERO), Lookup::Hit(_))
    }

    #[test]
    fn miss_insert_hit_and_lru_within_bytes() {
        let c = CompileCache::new(CompileCacheConfig {
            max_bytes: 100,
            max_entry_bytes: 60,
            max_entry_files: 10,
        });
        for n in 1..=3 {
            let Lookup::Miss(g) = c.lookup(key(n), Duration::ZERO) else {
                panic!("hit on an empty cache")
            };
            c.insert(&g, compiled(40));
        }
        // 3 x 40 > 100: the least recently used (1) went.
        assert!(!hit(&c, key(1)));
        assert!(hit(&c, key(2)));
        assert!(hit(&c, key(3)));
        let s = c.stats();
        assert_eq!((s.entries, s.bytes), (2, 80));
        // Over the per-entry bound: not kept.
        let Lookup::Miss(g) = c.lookup(key(9), Duration::ZERO) else {
            panic!()
        };
        c.insert(&g, compiled(61));
        drop(g);
        assert!(!hit(&c, key(9)));
    }

    #[test]
    fn a_miss_is_single_flight() {
        let c = CompileCache::new(CompileCacheConfig::default());
        let Lookup::Miss(g) = c.lookup(key(1), Duration::ZERO) else {
            panic!()
        };
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || {
                matches!(c.lookup(key(1), Duration::from_secs(10)), Lookup::Hit(_))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        c.insert(&g, compiled(10));
        drop(g);
        assert!(
            waiter.join().unwrap(),
            "the waiter got the first compile's entry"
        );
        assert_eq!(c.stats().misses, 1);
        // A compile that keeps nothing (it failed) lets waiters compile themselves.
        let Lookup::Miss(g) = c.lookup(key(2), Duration::ZERO) else {
            panic!()
        };
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || {
                matches!(c.lookup(key(2), Duration::from_secs(10)), Lookup::Miss(_))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn disabled_never_keeps() {
        let c = CompileCache::new(CompileCacheConfig {
            max_bytes: 0,
            ..Default::default()
        });
        let Lookup::Miss(g) = c.lookup(key(1), Duration::ZERO) else {
            panic!()
        };
        c.insert(&g, compiled(1));
        drop(g);
        assert!(!hit(&c, key(1)));
    }
}
