//! A result cache for identical requests, with single-flight.
//!
//! Two requests with the same [`Key`] (see [`key_of`]) get the same result: the first runs, the
//! ones that arrive while it runs wait for it and share its value, and later ones get the stored
//! value until it expires (TTL) or is evicted (least recently used first, bounded both by a number
//! of entries and by a number of bytes).
//!
//! Errors are never shared: when the running call fails, each waiter runs on its own. When the
//! running call is cancelled (its future dropped), the waiters elect a new runner among
//! themselves, so nobody hangs.
//!
//! No transport and no runtime here: a `std::sync::Mutex` that is never held across an `.await`,
//! and a `tokio::sync::watch` channel per run in flight.
//!
//! Hand-written rather than a cache crate's coalescing (`moka`'s `get_with`): errors are never
//! shared (each waiter runs on its own), a cancelled runner's waiters elect a new one, results
//! that may not be kept (timeouts) still answer the waiters of their flight, and the bound is
//! on entries and bytes together.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What identifies a request: a BLAKE3 hash of its parts ([`key_of`]).
pub type Key = [u8; 32];

/// Hashes `parts` into a [`Key`]. Each part is length-prefixed (and so is their number), so
/// `["ab", "c"]` and `["a", "bc"]` give different keys.
pub fn key_of(parts: &[&[u8]]) -> Key {
    let mut hasher = blake3::Hasher::new_derive_key("isobox 2024 dedup key v1");
    hasher.update(&(parts.len() as u64).to_le_bytes());
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// How the cache behaves.
#[derive(Debug, Clone)]
pub struct DedupConfig {
    /// Off: every call runs, nothing is stored, nothing is shared.
    pub enabled: bool,
    /// How long a stored value is served, from when it was stored.
    pub ttl: Duration,
    /// At most this many stored values.
    pub max_entries: usize,
    /// At most this many bytes of stored values (as the caller's `size_of` counts them); a single
    /// value larger than this is not stored.
    pub max_bytes: usize,
}

/// A snapshot of the cache's size and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DedupStats {
    /// Values stored now (expired ones not yet purged included).
    pub entries: usize,
    /// Sum of their sizes.
    pub bytes: usize,
    /// Calls answered without running: a stored value, or the value of a run in flight.
    pub hits: u64,
    /// Calls that ran (`run` called), including with the cache disabled.
    pub misses: u64,
}

/// The dedup cache. Share it (`Arc<DedupCache<T>>` or a `static`); all methods take `&self`.
pub struct DedupCache<T> {
    cfg: DedupConfig,
    inner: Mutex<Inner<T>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A stored value.
struct Entry<T> {
    value: T,
    size: usize,
    /// `None`: the TTL is too large to add to an `Instant` (never expires).
    expires: Option<Instant>,
    /// Position in `Inner::lru` (updated on each use).
    used: u64,
    /// Position in `Inner::by_age` (when stored; the TTL is the same for all entries, so this is
    /// also the order in which they expire).
    stored: u64,
}

/// What a run in flight tells its waiters.
#[derive(Clone)]
enum Flight<T> {
    Running,
    Done(T),
    Failed,
}

/// A run in flight, as the map holds it.
struct FlightEntry<T> {
    /// Which run (a dropped leader must not remove its successor's flight).
    id: u64,
    /// Waiters clone it.
    rx: watch::Receiver<Flight<T>>,
    /// How many waiters joined (for tests and curiosity).
    joined: usize,
}

struct Inner<T> {
    map: HashMap<Key, Entry<T>>,
    /// Use tick -> key; the first is the least recently used.
    lru: BTreeMap<u64, Key>,
    /// Store tick -> key; the first expires first.
    by_age: BTreeMap<u64, Key>,
    bytes: usize,
    tick: u64,
    /// Runs in flight.
    flights: HashMap<Key, FlightEntry<T>>,
    next_flight: u64,
}

impl<T: Clone> Inner<T> {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The stored value for `key`, if any and not expired (an expired one is dropped); marks it
    /// used.
    fn lookup(&mut self, key: &Key, now: Instant) -> Option<T> {
        let expired = match self.map.get(key) {
            None => return None,
            Some(entry) => entry.expires.is_some_and(|at| at <= now),
        };
        if expired {
            self.remove(key);
            return None;
        }
        let tick = self.next_tick();
        let entry = self.map.get_mut(key)?;
        self.lru.remove(&entry.used);
        entry.used = tick;
        self.lru.insert(tick, *key);
        Some(entry.value.clone())
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.map.remove(key) {
            self.lru.remove(&entry.used);
            self.by_age.remove(&entry.stored);
            self.bytes -= entry.size;
        }
    }

    fn insert(&mut self, cfg: &DedupConfig, key: Key, value: T, size: usize, now: Instant) {
        if !cfg.enabled || cfg.max_entries == 0 || size > cfg.max_bytes {
            return;
        }
        self.remove(&key);
        let tick = self.next_tick();
        self.map.insert(
            key,
            Entry {
                value,
                size,
                expires: now.checked_add(cfg.ttl),
                used: tick,
                stored: tick,
            },
        );
        self.lru.insert(tick, key);
        self.by_age.insert(tick, key);
        self.bytes += size;
        if self.map.len() > cfg.max_entries || self.bytes > cfg.max_bytes {
            self.purge(now);
        }
        while self.map.len() > cfg.max_entries || self.bytes > cfg.max_bytes {
            let Some((_, oldest)) = self.lru.pop_first() else {
                break;
            };
            // `remove` finds the lru slot already gone; that is fine.
            self.remove(&oldest);
        }
    }

    /// Drops the expired entries, oldest first, stopping at the first live one.
    fn purge(&mut self, now: Instant) {
        while let Some((_, key)) = self.by_age.first_key_value() {
            let key = *key;
            let expired = self
                .map
                .get(&key)
                .is_some_and(|e| e.expires.is_some_and(|at| at <= now));
            if !expired {
                break;
            }
            self.remove(&key);
        }
    }
}

/// What a call does first, decided under the lock.
enum Step<'a, T> {
    Hit(T),
    Wait(watch::Receiver<Flight<T>>),
    Lead(Leader<'a, T>),
}

/// What a waiter learned.
enum Waited<T> {
    Value(T),
    Failed,
    Cancelled,
}

/// The caller that runs for everybody waiting on `key`. Dropped without [`Leader::finish`] (the
/// call was cancelled, or `run` panicked), it removes its flight and drops its sender: the
/// waiters see the channel closed and elect a new leader.
struct Leader<'a, T> {
    cache: &'a DedupCache<T>,
    key: Key,
    id: u64,
    tx: watch::Sender<Flight<T>>,
}

impl<T: Clone> Leader<'_, T> {
    /// Stores the value if it is cacheable and hands it (or the failure) to the waiters.
    fn finish(self, value: Option<&T>, store: Option<usize>) {
        {
            let mut inner = self.cache.lock();
            if let (Some(value), Some(size)) = (value, store) {
                inner.insert(
                    &self.cache.cfg,
                    self.key,
                    value.clone(),
                    size,
                    Instant::now(),
                );
            }
            // Remove the flight in the same critical section as the store: a new caller sees
            // either the flight or the stored value (or, not cacheable, neither and runs).
            remove_flight(&mut inner, &self.key, self.id);
        }
        // No new waiter can subscribe now; skip the clone when nobody waits.
        if self.tx.receiver_count() > 0 {
            self.tx.send_replace(match value {
                Some(value) => Flight::Done(value.clone()),
                None => Flight::Failed,
            });
        }
    }
}

impl<T> Drop for Leader<'_, T> {
    fn drop(&mut self) {
        let mut inner = self.cache.lock();
        remove_flight(&mut inner, &self.key, self.id);
    }
}

fn remove_flight<T>(inner: &mut Inner<T>, key: &Key, id: u64) {
    if inner.flights.get(key).is_some_and(|f| f.id == id) {
        inner.flights.remove(key);
    }
}

impl<T: Clone + Send + Sync + 'static> DedupCache<T> {
    pub fn new(cfg: DedupConfig) -> Self {
        DedupCache {
            cfg,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                lru: BTreeMap::new(),
                by_age: BTreeMap::new(),
                bytes: 0,
                tick: 0,
                flights: HashMap::new(),
                next_flight: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &DedupConfig {
        &self.cfg
    }

    /// Returns the stored value for `key` (`true`), or the value of the run in flight for `key`
    /// (`true`), or runs `run` (`false`). While a run is in flight, calls with the same key wait
    /// for it (single-flight). A value is stored only if `cacheable(&value)` and it fits
    /// (`size_of(&value) <= max_bytes`); waiters get the leader's `Ok` value either way. When the
    /// leader's run returns `Err`, each waiter runs itself (errors are not shared); when the
    /// leader's future is dropped, the waiters elect a new leader. Disabled: just runs.
    pub async fn get_or_run<E, F, Fut>(
        &self,
        key: Key,
        size_of: impl Fn(&T) -> usize,
        cacheable: impl Fn(&T) -> bool,
        run: F,
    ) -> Result<(T, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if !self.cfg.enabled {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return run().await.map(|v| (v, false));
        }
        loop {
            match self.begin(&key) {
                Step::Hit(value) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((value, true));
                }
                Step::Lead(leader) => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let result = run().await;
                    let value = result.as_ref().ok();
                    let store = value.filter(|v| cacheable(v)).map(&size_of);
                    leader.finish(value, store);
                    return result.map(|v| (v, false));
                }
                Step::Wait(mut rx) => match wait(&mut rx).await {
                    Waited::Value(value) => {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok((value, true));
                    }
                    Waited::Failed => {
                        // Run on our own, without a flight of our own (the other waiters run
                        // too); store a cacheable value all the same.
                        self.misses.fetch_add(1, Ordering::Relaxed);
                        let result = run().await;
                        if let Ok(value) = &result {
                            if cacheable(value) {
                                let size = size_of(value);
                                self.lock().insert(
                                    &self.cfg,
                                    key,
                                    value.clone(),
                                    size,
                                    Instant::now(),
                                );
                            }
                        }
                        return result.map(|v| (v, false));
                    }
                    Waited::Cancelled => continue,
                },
            }
        }
    }

    /// A hit, a flight to wait for, or the lead of a new flight.
    fn begin(&self, key: &Key) -> Step<'_, T> {
        let mut inner = self.lock();
        if let Some(value) = inner.lookup(key, Instant::now()) {
            return Step::Hit(value);
        }
        if let Some(flight) = inner.flights.get_mut(key) {
            flight.joined += 1;
            return Step::Wait(flight.rx.clone());
        }
        inner.next_flight += 1;
        let id = inner.next_flight;
        let (tx, rx) = watch::channel(Flight::Running);
        inner
            .flights
            .insert(*key, FlightEntry { id, rx, joined: 0 });
        Step::Lead(Leader {
            cache: self,
            key: *key,
            id,
            tx,
        })
    }

    pub fn stats(&self) -> DedupStats {
        let inner = self.lock();
        DedupStats {
            entries: inner.map.len(),
            bytes: inner.bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Drops expired entries (also done lazily on access); call from a periodic task.
    pub fn purge_expired(&self) {
        self.lock().purge(Instant::now());
    }
}

impl<T> DedupCache<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // Nothing runs user code under the lock, so a poisoned lock still holds consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn wait<T: Clone>(rx: &mut watch::Receiver<Flight<T>>) -> Waited<T> {
    match rx.wait_for(|f| !matches!(f, Flight::Running)).await {
        Ok(flight) => match &*flight {
            Flight::Done(value) => Waited::Value(value.clone()),
            Flight::Failed | Flight::Running => Waited::Failed,
        },
        // The leader was dropped before it finished.
        Err(_) => Waited::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use tokio::sync::Notify;

    fn cfg(ttl_ms: u64, max_entries: usize, max_bytes: usize) -> DedupConfig {
        DedupConfig {
            enabled: true,
            ttl: Duration::from_millis(ttl_ms),
            max_entries,
            max_bytes,
        }
    }

    fn k(n: u8) -> Key {
        key_of(&[&[n]])
    }

    #[allow(clippy::ptr_arg)] // the cache's `size_of` takes `&T`, here `&String`
    fn len(s: &String) -> usize {
        s.len()
    }

    fn always(_: &String) -> bool {
        true
    }

    async fn get(c: &DedupCache<String>, key: Key, v: &str) -> (String, bool) {
        let v = v.to_string();
        c.get_or_run(key, len, always, || async move { Ok::<_, ()>(v) })
            .await
            .unwrap()
    }

    #[test]
    fn key_of_length_prefixes_parts() {
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
        assert_ne!(key_of(&[b"abc"]), key_of(&[b"abc", b""]));
        assert_ne!(key_of(&[]), key_of(&[b""]));
        assert_eq!(key_of(&[b"x", b"y"]), key_of(&[b"x", b"y"]));
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<X: Send>(_: &X) {}
        let c = DedupCache::<String>::new(cfg(1000, 10, 1000));
        let f = c.get_or_run(k(1), len, always, || async { Ok::<_, ()>("v".to_string()) });
        assert_send(&f);
    }

    #[tokio::test]
    async fn hit_miss_and_stats() {
        let c = DedupCache::new(cfg(60_000, 10, 1000));
        assert_eq!(get(&c, k(1), "one").await, ("one".into(), false));
        assert_eq!(get(&c, k(1), "other").await, ("one".into(), true));
        assert_eq!(get(&c, k(2), "two").await, ("two".into(), false));
        assert_eq!(
            c.stats(),
            DedupStats {
                entries: 2,
                bytes: 6,
                hits: 1,
                misses: 2
            }
        );
    }

    #[tokio::test]
    async fn ttl_expiry() {
        let c = DedupCache::new(cfg(50, 10, 1000));
        get(&c, k(1), "one").await;
        assert!(get(&c, k(1), "x").await.1);
        tokio::time::sleep(Duration::from_millis(80)).await;
        // Lazily on access.
        assert_eq!(get(&c, k(1), "new").await, ("new".into(), false));
        // And by purge.
        get(&c, k(2), "two").await;
        assert_eq!(c.stats().entries, 2);
        tokio::time::sleep(Duration::from_millis(80)).await;
        c.purge_expired();
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().bytes, 0);
    }

    #[tokio::test]
    async fn lru_eviction_by_entries() {
        let c = DedupCache::new(cfg(60_000, 2, 1000));
        get(&c, k(1), "a").await;
        get(&c, k(2), "b").await;
        assert!(get(&c, k(1), "-").await.1); // 1 is now more recent than 2
        get(&c, k(3), "c").await; // evicts 2
        assert_eq!(c.stats().entries, 2);
        assert!(get(&c, k(1), "-").await.1);
        assert!(get(&c, k(3), "-").await.1);
        assert_eq!(get(&c, k(2), "B").await, ("B".into(), false));
    }

    #[tokio::test]
    async fn lru_eviction_by_bytes() {
        let c = DedupCache::new(cfg(60_000, 100, 10));
        get(&c, k(1), "aaaa").await;
        get(&c, k(2), "bbbb").await;
        assert!(get(&c, k(1), "-").await.1); // 2 is least recently used
        get(&c, k(3), "cccc").await; // 12 bytes > 10: evicts 2
        assert_eq!(
            (c.stats().entries, c.stats().bytes),
            (2, 8),
            "{:?}",
            c.stats()
        );
        assert!(get(&c, k(1), "-").await.1);
        assert!(get(&c, k(3), "-").await.1);
        assert!(!get(&c, k(2), "bbbb").await.1);
        // A large one evicts several.
        get(&c, k(4), "dddddddddd").await;
        assert_eq!((c.stats().entries, c.stats().bytes), (1, 10));
    }

    #[tokio::test]
    async fn oversize_value_not_stored() {
        let c = DedupCache::new(cfg(60_000, 100, 10));
        get(&c, k(1), "small").await;
        assert!(!get(&c, k(2), "much too large").await.1);
        assert!(!get(&c, k(2), "much too large").await.1);
        assert_eq!((c.stats().entries, c.stats().bytes), (1, 5));
        assert!(get(&c, k(1), "-").await.1);
    }

    #[tokio::test]
    async fn non_cacheable_not_stored() {
        let c = DedupCache::new(cfg(60_000, 100, 1000));
        for _ in 0..2 {
            let (v, cached) = c
                .get_or_run(
                    k(1),
                    len,
                    |v: &String| v != "timeout",
                    || async { Ok::<_, ()>("timeout".to_string()) },
                )
                .await
                .unwrap();
            assert_eq!((v.as_str(), cached), ("timeout", false));
        }
        assert_eq!(c.stats().entries, 0);
        assert_eq!(c.stats().misses, 2);
    }

    #[tokio::test]
    async fn disabled_never_stores_nor_shares() {
        let c = Arc::new(DedupCache::new(DedupConfig {
            enabled: false,
            ..cfg(60_000, 100, 1000)
        }));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (c, runs) = (c.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_run(k(1), len, always, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ()>("v".to_string())
                })
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            assert!(!t.await.unwrap().1);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        assert_eq!(c.stats().entries, 0);
        assert!(!get(&c, k(1), "v").await.1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn single_flight() {
        let c = Arc::new(DedupCache::new(cfg(60_000, 100, 1000)));
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (c, runs, release) = (c.clone(), runs.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_run(k(7), len, always, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok::<_, ()>("shared".to_string())
                })
                .await
                .unwrap()
            }));
        }
        // Wait (bounded) until the leader runs and everyone else is waiting on its flight.
        wait_until(|| runs.load(Ordering::SeqCst) == 1).await;
        wait_until(|| waiters(&c, &k(7)) == 9).await;
        release.notify_one();
        let mut cached = 0;
        for t in tasks {
            let (v, hit) = t.await.unwrap();
            assert_eq!(v, "shared");
            cached += hit as usize;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(cached, 9);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.entries), (9, 1, 1));
        assert!(c.lock().flights.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_share_a_non_cacheable_value_but_do_not_store_it() {
        let c = Arc::new(DedupCache::new(cfg(60_000, 100, 1000)));
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (c, runs, release) = (c.clone(), runs.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_run(
                    k(8),
                    len,
                    |_| false,
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok::<_, ()>("once".to_string())
                    },
                )
                .await
                .unwrap()
            }));
        }
        wait_until(|| waiters(&c, &k(8)) == 3).await;
        release.notify_one();
        let hits: usize = futures_join(tasks).await.iter().map(|r| r.1 as usize).sum();
        assert_eq!((hits, runs.load(Ordering::SeqCst)), (3, 1));
        assert_eq!(c.stats().entries, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn errors_are_not_shared() {
        let c = Arc::new(DedupCache::new(cfg(60_000, 100, 1000)));
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (c, runs, release) = (c.clone(), runs.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_run(k(9), len, always, || async move {
                    // The first run (the leader's) fails; the others succeed.
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        release.notified().await;
                        Err("boom")
                    } else {
                        Ok("fine".to_string())
                    }
                })
                .await
            }));
        }
        wait_until(|| waiters(&c, &k(9)) == 4).await;
        release.notify_one();
        let mut errs = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(e) => {
                    assert_eq!(e, "boom");
                    errs += 1
                }
                Ok((v, cached)) => assert_eq!((v.as_str(), cached), ("fine", false)),
            }
        }
        assert_eq!(errs, 1);
        assert_eq!(runs.load(Ordering::SeqCst), 5);
        // The waiters' own successful runs were stored.
        assert!(get(&c, k(9), "-").await.1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_take_over_when_the_leader_is_dropped() {
        let c = Arc::new(DedupCache::new(cfg(60_000, 100, 1000)));
        let runs = Arc::new(AtomicUsize::new(0));
        let leader = {
            let (c, runs) = (c.clone(), runs.clone());
            tokio::spawn(async move {
                c.get_or_run(k(5), len, always, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<Result<String, ()>>().await
                })
                .await
            })
        };
        wait_until(|| runs.load(Ordering::SeqCst) == 1).await;
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (c, runs) = (c.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_run(k(5), len, always, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ()>("second".to_string())
                })
                .await
                .unwrap()
            }));
        }
        wait_until(|| waiters(&c, &k(5)) == 3).await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let results = tokio::time::timeout(Duration::from_secs(5), futures_join(tasks))
            .await
            .expect("waiters hang after the leader was dropped");
        // One waiter became the new leader; the other two shared its value.
        assert!(results.iter().all(|(v, _)| v == "second"));
        assert_eq!(results.iter().filter(|r| r.1).count(), 2);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(c.lock().flights.is_empty());
    }

    /// How many callers joined the flight for `key` as waiters.
    fn waiters(c: &DedupCache<String>, key: &Key) -> usize {
        c.lock().flights.get(key).map_or(0, |f| f.joined)
    }

    async fn wait_until(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "condition not reached in 5 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn futures_join<R: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<R>>) -> Vec<R> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}
