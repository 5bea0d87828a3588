//! Rate limiting with GCRA (the generic cell rate algorithm): per key, one timestamp (the
//! "theoretical arrival time"); a quota `N/period` allows bursts of N and N per period on
//! average. Memory is bounded: at most `max_keys` keys, idle ones dropped first.
//!
//! Hand-written rather than taken from a crate (`governor`): the same GCRA runs as a Lua script
//! in Redis (`cluster.rs`) so that nodes share one limiter, and this local limiter is its
//! fallback: both must make the same decisions with the same state (one timestamp per key) and
//! report the same `RateLimit-*` numbers, which a crate's internal state cannot give.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `N/sec`, `N/min`, `N/hour` (or `N/s`, `N/m`, `N/h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub period: Duration,
}

impl Quota {
    pub fn parse(s: &str) -> Result<Quota, String> {
        let (n, p) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not N/period (e.g. 60/min)"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a whole number"))?;
        if count == 0 {
            return Err("the count must be at least 1".into());
        }
        let period = match p.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown period `{other}` (sec, min, hour)")),
        };
        Ok(Quota { count, period })
    }

    fn interval(&self) -> Duration {
        self.period / self.count
    }
}

/// The outcome of one check, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the full quota is available again.
    pub reset_secs: u64,
    /// When refused: seconds until one request is allowed.
    pub retry_after_secs: u64,
}

pub struct Limiter {
    tat: Mutex<HashMap<String, Instant>>,
    max_keys: usize,
}

impl Limiter {
    pub fn new(max_keys: usize) -> Limiter {
        Limiter {
            tat: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    pub fn keys(&self) -> usize {
        self.tat.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Counts one request for `key` under `quota` (refused requests are not counted).
    pub fn check(&self, key: &str, quota: Quota) -> Decision {
        self.check_at(key, quota, Instant::now())
    }

    /// What `check` would answer, without counting anything.
    pub fn peek(&self, key: &str, quota: Quota) -> Decision {
        self.decide(key, quota, Instant::now(), false)
    }

    fn check_at(&self, key: &str, quota: Quota, now: Instant) -> Decision {
        self.decide(key, quota, now, true)
    }

    fn decide(&self, key: &str, quota: Quota, now: Instant, count: bool) -> Decision {
        let t = quota.interval();
        let burst = quota.period; // tolerance: a full period's worth of requests at once
        let mut map = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max_keys && !map.contains_key(key) {
            // Drop idle keys (whose bucket is full again); if none, the oldest.
            map.retain(|_, tat| *tat > now);
            if map.len() >= self.max_keys {
                if let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                    map.remove(&oldest);
                }
            }
        }
        let tat = map.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        let new_tat = tat + t;
        let allow_at = new_tat.checked_sub(burst).unwrap_or(now);
        let used = |tat: Instant| -> u32 {
            let ahead = tat.saturating_duration_since(now);
            (ahead.as_nanos().div_ceil(t.as_nanos().max(1))) as u32
        };
        if allow_at > now {
            let retry = allow_at - now;
            return Decision {
                allowed: false,
                limit: quota.count,
                remaining: 0,
                reset_secs: tat.saturating_duration_since(now).as_secs_f64().ceil() as u64,
                retry_after_secs: (retry.as_secs_f64().ceil() as u64).max(1),
            };
        }
        if count {
            map.insert(key.to_string(), new_tat);
        }
        Decision {
            allowed: true,
            limit: quota.count,
            remaining: quota.count.saturating_sub(used(new_tat)),
            reset_secs: new_tat.saturating_duration_since(now).as_secs_f64().ceil() as u64,
            retry_after_secs: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse() {
        assert_eq!(
            Quota::parse("60/min").unwrap(),
            Quota {
                count: 60,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(Quota::parse(" 5 / s").unwrap().count, 5);
        for bad in ["60", "0/min", "x/min", "5/week", "-1/s"] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn burst_then_steady_rate() {
        let l = Limiter::new(100);
        let q = Quota::parse("3/min").unwrap();
        let t0 = Instant::now();
        let d: Vec<Decision> = (0..4).map(|_| l.check_at("a", q, t0)).collect();
        assert!(d[..3].iter().all(|d| d.allowed));
        assert_eq!((d[0].remaining, d[1].remaining, d[2].remaining), (2, 1, 0));
        assert!(!d[3].allowed);
        assert!(
            d[3].retry_after_secs >= 19 && d[3].retry_after_secs <= 20,
            "{:?}",
            d[3]
        );
        // Another key is independent.
        assert!(l.check_at("b", q, t0).allowed);
        // 20 s later one more is allowed, not two.
        let t1 = t0 + Duration::from_secs(20);
        assert!(l.check_at("a", q, t1).allowed);
        assert!(!l.check_at("a", q, t1).allowed);
    }

    #[test]
    fn keys_are_bounded() {
        let l = Limiter::new(10);
        let q = Quota::parse("1/hour").unwrap();
        let t0 = Instant::now();
        for i in 0..1000 {
            l.check_at(&format!("k{i}"), q, t0);
        }
        assert!(l.keys() <= 10);
    }
}
