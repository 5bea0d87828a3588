//! State shared between nodes through Redis (`REDIS_URL`): the dedup cache with its cross-node
//! single-flight lock, the rate limiter (GCRA in one Lua script: atomic, one round trip), and
//! the connection the async jobs use (see the `jobs` module).
//!
//! Redis is a helper, never a single point of failure for synchronous runs: every call has a
//! short timeout, and when Redis cannot be reached the callers fall back to the node's local
//! cache and limiter. The transition is logged once each way, `isobox_redis_up` says which
//! state the node is in and `isobox_redis_fallbacks_total` counts the calls that fell back.
//! While down, Redis is retried at most once a second, so requests do not each pay a timeout.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use isobox_core::shared::{BoxFut, Lock, SharedCache};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisResult};

use crate::ratelimit::{Decision, Quota};

pub struct Redis {
    client: redis::Client,
    conn: ConnectionManager,
    timeout: Duration,
    up: AtomicBool,
    /// When the last call failed (while down: calls before a second has passed are skipped).
    failed_at: Mutex<Option<Instant>>,
    fallbacks: AtomicU64,
    /// This node's name in the job consumer group and in job records.
    pub node: String,
}

/// GCRA with microsecond timestamps from the Redis clock (one clock for every node).
/// KEYS[1] the key; ARGV[1] the emission interval (µs), ARGV[2] the burst tolerance (µs),
/// ARGV[3] the cost. Returns {allowed, µs until the bucket is full again, µs until allowed}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - burst
if allow_at > now then
  return {0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, new_tat - now, 0}
"#;

/// Extends KEYS[1] to ARGV[2] ms only if it still holds ARGV[1] (a lease renewed by its holder).
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

/// Deletes KEYS[1] only if it still holds ARGV[1] (a lock released by its holder only).
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

impl Redis {
    /// A client for `url` (redis:// or rediss://). Connecting is lazy: an unreachable server
    /// is not an error here (the node starts degraded); a malformed URL is.
    pub fn connect(url: &str, timeout: Duration) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(timeout.max(Duration::from_millis(100))))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg)
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        let rand: u32 = {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (t.subsec_nanos() ^ std::process::id().rotate_left(16)) & 0xffff
        };
        Ok(Redis {
            client,
            conn,
            timeout,
            up: AtomicBool::new(true),
            failed_at: Mutex::new(None),
            fallbacks: AtomicU64::new(0),
            node: format!("{host}-{}-{rand:04x}", std::process::id()),
        })
    }

    /// Whether the last call reached Redis.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Calls that fell back to local state.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::SeqCst)
    }

    /// The multiplexed connection (it reconnects by itself).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own, for blocking reads (a blocking command on the shared
    /// connection would hold up every other caller).
    pub async fn dedicated(
        &self,
        timeout: Duration,
    ) -> RedisResult<redis::aio::MultiplexedConnection> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(100))))
            .set_response_timeout(Some(timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }

    /// Runs one Redis call with the timeout; None when Redis is down (then the caller falls
    /// back), with the bookkeeping described in the module docs.
    pub async fn call<T, F>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: Future<Output = RedisResult<T>>,
    {
        if !self.up() {
            let recent = self
                .failed_at
                .lock()
                .ok()
                .and_then(|g| *g)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
            if recent {
                self.fallbacks.fetch_add(1, Ordering::SeqCst);
                return None;
            }
        }
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => {
                if !self.up.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        event = "redis_up",
                        "Redis is reachable again: shared cache, limits and jobs are back"
                    );
                }
                Some(v)
            }
            Ok(Err(e)) if !is_connection_error(&e) => {
                // Redis answered with an error: it is up, the call is wrong (logged, no fallback
                // counted as an outage).
                tracing::error!(op, error = %e, "Redis call failed");
                self.fallbacks.fetch_add(1, Ordering::SeqCst);
                None
            }
            other => {
                let why = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.timeout),
                };
                if let Ok(mut g) = self.failed_at.lock() {
                    *g = Some(Instant::now());
                }
                if self.up.swap(false, Ordering::SeqCst) {
                    tracing::warn!(event = "redis_down", op, error = %why, "Redis is unreachable: synchronous runs go on with the local cache and limits");
                }
                self.fallbacks.fetch_add(1, Ordering::SeqCst);
                None
            }
        }
    }

    /// Counts `cost` requests for `key` under `quota` in the shared limiter; None when Redis
    /// is down (use the local limiter).
    pub async fn rate(&self, key: &str, quota: Quota, cost: u32) -> Option<Decision> {
        let interval = quota.period.as_micros() as f64 / f64::from(quota.count);
        let burst = quota.period.as_micros() as f64;
        let mut conn = self.conn();
        let script = redis::Script::new(GCRA);
        let key = format!("isobox:rl:{key}");
        let (allowed, full_in, retry_in): (i64, f64, f64) = self
            .call("rate", async {
                script
                    .key(&key)
                    .arg(interval)
                    .arg(burst)
                    .arg(cost.max(1))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        let secs = |us: f64| (us / 1e6).ceil().max(0.0) as u64;
        let used = (full_in / interval.max(1.0)).ceil() as u32;
        Some(Decision {
            allowed: allowed == 1,
            limit: quota.count,
            remaining: if allowed == 1 {
                quota.count.saturating_sub(used)
            } else {
                0
            },
            reset_secs: secs(full_in),
            retry_after_secs: if allowed == 1 {
                0
            } else {
                secs(retry_in).max(1)
            },
        })
    }
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

fn token() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", t.as_nanos(), std::process::id())
}

impl SharedCache for Redis {
    fn get<'a>(&'a self, key: &'a str) -> BoxFut<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut c = self.conn();
            self.call("cache_get", async move {
                c.get::<_, Option<Vec<u8>>>(key).await
            })
            .await
            .flatten()
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn();
            let opts = redis::SetOptions::default()
                .conditional_set(redis::ExistenceCheck::NX)
                .with_expiration(redis::SetExpiry::PX(ttl.as_millis().max(1) as u64));
            let _ = self
                .call("cache_put", async move {
                    c.set_options::<_, _, Option<String>>(key, value, opts)
                        .await
                })
                .await;
        })
    }

    fn lock<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFut<'a, Lock> {
        Box::pin(async move {
            let mut c = self.conn();
            let tok = token();
            let lock_key = format!("{key}:lock");
            let opts = redis::SetOptions::default()
                .conditional_set(redis::ExistenceCheck::NX)
                .with_expiration(redis::SetExpiry::PX(ttl.as_millis().max(1) as u64));
            let t = tok.clone();
            match self
                .call("cache_lock", async move {
                    c.set_options::<_, _, Option<String>>(&lock_key, t, opts)
                        .await
                })
                .await
            {
                Some(Some(_)) => Lock::Acquired(tok),
                Some(None) => Lock::Held,
                None => Lock::Unavailable,
            }
        })
    }

    fn renew<'a>(&'a self, key: &'a str, token: &'a str, ttl: Duration) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn();
            let lock_key = format!("{key}:lock");
            let _ = self
                .call("cache_renew", async move {
                    redis::Script::new(RENEW)
                        .key(&lock_key)
                        .arg(token)
                        .arg(ttl.as_millis() as u64)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await;
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let mut c = self.conn();
            let lock_key = format!("{key}:lock");
            let _ = self
                .call("cache_unlock", async move {
                    redis::Script::new(UNLOCK)
                        .key(&lock_key)
                        .arg(token)
                        .invoke_async::<i64>(&mut c)
                        .await
                })
                .await;
        })
    }
}
