//! Backpressure: at most `slots` runs at once, at most `queue` callers waiting for a slot, each for
//! at most `max_wait`. Everyone else is told to come back later ([`Busy`], with a `retry_after`).
//!
//! A `tokio::sync::Semaphore` (fair: waiters get slots in arrival order, and a caller arriving
//! while others wait does not overtake them) plus a counter of waiters.
//!
//! Hand-written around the semaphore rather than a crate's queue: the wait queue is bounded
//! (a semaphore alone queues without limit), each wait is timed, the refusal says when to
//! retry, and shutdown refuses waiters at once while held slots finish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How many runs, how many waiters, how long a wait.
#[derive(Debug, Clone)]
pub struct SlotsConfig {
    /// Runs at once.
    pub slots: usize,
    /// Callers waiting for a slot at once (0: no waiting, busy means busy).
    pub queue: usize,
    /// The longest a caller waits for a slot.
    pub max_wait: Duration,
}

/// Why there is no slot for a caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Busy {
    /// All slots are busy and the queue is full (answered at once).
    QueueFull { retry_after: Duration },
    /// The caller waited `max_wait` without getting a slot.
    WaitedTooLong { retry_after: Duration },
    /// The slots were closed (the server is shutting down).
    ShuttingDown { retry_after: Duration },
}

impl Busy {
    /// When to try again (at least 1 s, whole seconds: ready for a `Retry-After` header).
    pub fn retry_after(&self) -> Duration {
        match self {
            Busy::QueueFull { retry_after }
            | Busy::WaitedTooLong { retry_after }
            | Busy::ShuttingDown { retry_after } => *retry_after,
        }
    }
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::QueueFull { retry_after } => write!(
                f,
                "server busy: all slots in use and the queue is full; retry after {} s",
                retry_after.as_secs()
            ),
            Busy::WaitedTooLong { retry_after } => write!(
                f,
                "server busy: no slot became free in time; retry after {} s",
                retry_after.as_secs()
            ),
            Busy::ShuttingDown { retry_after } => write!(
                f,
                "server shutting down; retry after {} s",
                retry_after.as_secs()
            ),
        }
    }
}

impl std::error::Error for Busy {}

/// The slots. Share it (`Arc<Slots>`, or a clone: clones count the same slots); all methods
/// take `&self`.
#[derive(Clone)]
pub struct Slots {
    cfg: SlotsConfig,
    sem: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
}

/// One slot, held until dropped. `'static` and `Send`: it can move into a blocking task.
#[derive(Debug)]
pub struct SlotGuard {
    _permit: OwnedSemaphorePermit,
}

/// Counts a caller in the queue while it exists (so a cancelled wait leaves the queue too).
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    /// # Panics
    /// If `cfg.slots` is above `tokio::sync::Semaphore::MAX_PERMITS` (about 2^61).
    pub fn new(cfg: SlotsConfig) -> Self {
        Slots {
            sem: Arc::new(Semaphore::new(cfg.slots)),
            queued: Arc::new(AtomicUsize::new(0)),
            cfg,
        }
    }

    pub fn config(&self) -> &SlotsConfig {
        &self.cfg
    }

    /// A free slot now, or wait in the queue (at most `queue` waiters, at most `max_wait`).
    /// Cancel-safe: dropping the future leaves the queue and takes no slot.
    pub async fn acquire(&self) -> Result<SlotGuard, Busy> {
        match self.sem.clone().try_acquire_owned() {
            Ok(permit) => return Ok(SlotGuard { _permit: permit }),
            Err(TryAcquireError::NoPermits) => {}
            Err(TryAcquireError::Closed) => {
                return Err(Busy::ShuttingDown {
                    retry_after: self.retry_after(),
                })
            }
        }
        let limit = self.cfg.queue;
        if self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < limit).then_some(q + 1)
            })
            .is_err()
        {
            return Err(Busy::QueueFull {
                retry_after: self.retry_after(),
            });
        }
        let _queued = Queued(self.queued.clone());
        match tokio::time::timeout(self.cfg.max_wait, self.sem.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(SlotGuard { _permit: permit }),
            Ok(Err(_closed)) => Err(Busy::ShuttingDown {
                retry_after: self.retry_after(),
            }),
            Err(_elapsed) => Err(Busy::WaitedTooLong {
                retry_after: self.retry_after(),
            }),
        }
    }

    /// A slot that is free now, without waiting and without queueing. A slot released while
    /// callers wait goes to the first of them (the semaphore is fair), so this never takes one
    /// from a caller in the queue. For work that can use more than its one slot when the host
    /// is idle (the test cases of a request side by side).
    pub fn try_acquire(&self) -> Option<SlotGuard> {
        let permit = self.sem.clone().try_acquire_owned().ok()?;
        Some(SlotGuard { _permit: permit })
    }

    /// Refuses every later and every waiting `acquire` (`ShuttingDown`); held slots stay held.
    pub fn close(&self) {
        self.sem.close();
    }

    /// Slots in use.
    pub fn busy(&self) -> usize {
        self.cfg.slots.saturating_sub(self.sem.available_permits())
    }

    /// Callers waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Slots in all.
    pub fn capacity(&self) -> usize {
        self.cfg.slots
    }

    /// `max_wait` rounded up to whole seconds, at least 1 s: a caller turned away now would
    /// otherwise wait about that long for a slot.
    fn retry_after(&self) -> Duration {
        let w = self.cfg.max_wait;
        let secs = w.as_secs() + u64::from(w.subsec_nanos() > 0);
        Duration::from_secs(secs.max(1))
    }
}

#[cfg(test)]
mod close_tests {
    use super::*;

    #[tokio::test]
    async fn closing_refuses_waiters_and_newcomers() {
        let slots = Arc::new(Slots::new(SlotsConfig {
            slots: 1,
            queue: 4,
            max_wait: Duration::from_secs(10),
        }));
        let held = slots.acquire().await.unwrap();
        let s2 = slots.clone();
        let waiter = tokio::spawn(async move { s2.acquire().await.map(|_| ()) });
        while slots.queued() == 0 {
            tokio::task::yield_now().await;
        }
        slots.close();
        assert!(matches!(
            waiter.await.unwrap(),
            Err(Busy::ShuttingDown { .. })
        ));
        assert!(matches!(
            slots.acquire().await,
            Err(Busy::ShuttingDown { .. })
        ));
        drop(held);
        assert!(matches!(
            slots.acquire().await,
            Err(Busy::ShuttingDown { .. })
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn slots(slots: usize, queue: usize, max_wait_ms: u64) -> Arc<Slots> {
        Arc::new(Slots::new(SlotsConfig {
            slots,
            queue,
            max_wait: Duration::from_millis(max_wait_ms),
        }))
    }

    async fn wait_until(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "condition not reached in 5 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn cap_respected_under_load() {
        let s = slots(4, 1000, 30_000);
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..100u64 {
            let (s, now, max) = (s.clone(), now.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                let guard = s.acquire().await.expect("a slot");
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                assert!(s.busy() <= 4);
                tokio::time::sleep(Duration::from_millis(1 + i % 3)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let max = max.load(Ordering::SeqCst);
        assert!(max <= 4, "{max} guards alive at once");
        assert_eq!(max, 4, "the load should fill all slots");
        assert_eq!((s.busy(), s.queued(), s.capacity()), (0, 0, 4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn cap_respected_when_many_are_turned_away() {
        let s = slots(3, 5, 20);
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (s, now, max) = (s.clone(), now.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(guard) = s.acquire().await else {
                    return false;
                };
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
                true
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.unwrap() as usize;
        }
        assert!(max.load(Ordering::SeqCst) <= 3);
        // How many get a slot depends on scheduling; all of them may not exceed the cap.
        assert!(ok >= 3, "{ok} got a slot");
        assert_eq!((s.busy(), s.queued()), (0, 0));
    }

    #[tokio::test]
    async fn counters() {
        let s = slots(2, 4, 10_000);
        assert_eq!((s.busy(), s.queued(), s.capacity()), (0, 0, 2));
        let a = s.acquire().await.unwrap();
        let b = s.acquire().await.unwrap();
        assert_eq!(s.busy(), 2);
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire().await })
        };
        wait_until(|| s.queued() == 1).await;
        drop(a);
        let c = waiter.await.unwrap().unwrap();
        assert_eq!((s.busy(), s.queued()), (2, 0));
        drop((b, c));
        assert_eq!((s.busy(), s.queued()), (0, 0));
    }

    #[tokio::test]
    async fn queue_full_is_immediate() {
        let s = slots(1, 1, 10_000);
        let held = s.acquire().await.unwrap();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire().await })
        };
        wait_until(|| s.queued() == 1).await;
        let t = Instant::now();
        let busy = tokio::time::timeout(Duration::from_secs(1), s.acquire())
            .await
            .expect("QueueFull must not wait")
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(500));
        assert_eq!(
            busy,
            Busy::QueueFull {
                retry_after: Duration::from_secs(10)
            }
        );
        assert_eq!(s.queued(), 1);
        drop(held);
        let g = waiter.await.unwrap().unwrap();
        assert_eq!((s.busy(), s.queued()), (1, 0));
        drop(g);
        assert_eq!(s.busy(), 0);
    }

    #[tokio::test]
    async fn no_queue_means_busy_now() {
        let s = slots(1, 0, 10_000);
        let _held = s.acquire().await.unwrap();
        let busy = s.acquire().await.unwrap_err();
        assert!(matches!(busy, Busy::QueueFull { .. }));
        assert_eq!(s.queued(), 0);
    }

    #[tokio::test]
    async fn waited_too_long() {
        let s = slots(1, 5, 50);
        let held = s.acquire().await.unwrap();
        let t = Instant::now();
        let busy = s.acquire().await.unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_secs(5));
        // At least 1 s even though max_wait is 50 ms.
        assert_eq!(
            busy,
            Busy::WaitedTooLong {
                retry_after: Duration::from_secs(1)
            }
        );
        assert_eq!(busy.retry_after(), Duration::from_secs(1));
        assert_eq!((s.busy(), s.queued()), (1, 0));
        drop(held);
        assert_eq!(s.busy(), 0);
        // A slot is free again.
        drop(s.acquire().await.unwrap());
    }

    #[tokio::test]
    async fn cancelled_waiter_leaves_the_queue() {
        let s = slots(1, 1, 60_000);
        let held = s.acquire().await.unwrap();
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire().await })
        };
        wait_until(|| s.queued() == 1).await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(s.queued(), 0);
        drop(held);
        assert_eq!(s.busy(), 0);
    }

    #[tokio::test]
    async fn try_acquire_takes_only_free_slots_and_never_a_waiters() {
        let s = slots(2, 4, 60_000);
        let first = s.acquire().await.unwrap();
        let spare = s.try_acquire().expect("the second slot is free");
        assert_eq!(s.busy(), 2);
        assert!(s.try_acquire().is_none(), "no third slot");
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire().await })
        };
        wait_until(|| s.queued() == 1).await;
        drop(spare);
        // The released slot is the waiter's, not a spare for whoever asks next.
        assert!(s.try_acquire().is_none());
        let theirs = waiter.await.unwrap().expect("the waiter got the slot");
        drop((first, theirs));
        assert!(s.try_acquire().is_some());
    }

    #[test]
    fn retry_after_rounds_up_to_seconds() {
        let r = |ms| {
            Slots::new(SlotsConfig {
                slots: 1,
                queue: 0,
                max_wait: Duration::from_millis(ms),
            })
            .retry_after()
        };
        assert_eq!(r(0), Duration::from_secs(1));
        assert_eq!(r(1000), Duration::from_secs(1));
        assert_eq!(r(1001), Duration::from_secs(2));
        assert_eq!(r(30_000), Duration::from_secs(30));
    }

    #[test]
    fn guard_is_send_and_static() {
        fn assert_send_static<X: Send + 'static>() {}
        assert_send_static::<SlotGuard>();
        let s = Slots::new(SlotsConfig {
            slots: 1,
            queue: 0,
            max_wait: Duration::ZERO,
        });
        fn assert_send<X: Send>(_: &X) {}
        assert_send(&s.acquire());
    }
}
