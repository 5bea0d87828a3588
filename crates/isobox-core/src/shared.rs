//! State shared between nodes (Redis, in the server crate), as the engine sees it: a result
//! cache with a cross-node single-flight lock. Every method degrades instead of failing: an
//! unreachable store answers "miss" / "unavailable", and the engine goes on with its local
//! cache (the implementation counts and logs the fallbacks).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The outcome of asking for a run's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Ours, with the token that releases it.
    Acquired(String),
    /// Another node runs this submission now.
    Held,
    /// The store cannot be reached: run locally.
    Unavailable,
}

pub trait SharedCache: Send + Sync {
    /// The stored result for `key`, or None (miss, or store unreachable).
    fn get<'a>(&'a self, key: &'a str) -> BoxFut<'a, Option<Vec<u8>>>;
    /// Stores `value` for `ttl` unless an entry exists (first writer wins).
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFut<'a, ()>;
    /// Takes the lock of `key` for `ttl` (a lease: the holder renews it while it runs, and it
    /// expires soon after its holder dies).
    fn lock<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFut<'a, Lock>;
    /// Extends the lock to `ttl` from now if `token` still holds it (the holder's heartbeat).
    fn renew<'a>(&'a self, key: &'a str, token: &'a str, ttl: Duration) -> BoxFut<'a, ()>;
    /// Releases the lock if `token` still holds it.
    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFut<'a, ()>;
}
