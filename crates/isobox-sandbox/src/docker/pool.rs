//! The pool of ready containers ([`Pool`]): in the background it keeps `cfg.pool` containers
//! of the shape the latest run wanted ready (plus one in preparation per run waiting, at most
//! [`MAX_PREPARING`] at once; started and idle, or only created, as `cfg.pool_mode` says),
//! retires those of another shape or idle too long, backs off while the engine keeps failing
//! and now and then has the engine sweep this instance's strays. A run takes a container with
//! [`Pool::acquire`]; [`Pool::close`] empties the pool when the backend stops.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::PoolMode;
use super::container::{Container, Engine};
use super::hardening::{CgLimits, Shape};
use crate::spec::Limits;
use crate::SandboxError;

/// Most pool containers prepared at once (the engine serializes much of the work anyway).
const MAX_PREPARING: usize = 2;

/// How often the pool looks for stray containers of its instance (and how old they must be).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How long an unused pooled container is kept before it is replaced.
const POOL_IDLE: Duration = Duration::from_secs(300);

/// Containers prepared ahead of the runs that will take them, each used once.
pub(super) struct Pool {
    engine: Arc<Engine>,
    ready_containers: Mutex<Vec<Container>>,
    /// The tmpfs shape and the first limits the pool prepares (those of the latest run, so a
    /// pooled container usually needs no `update`).
    want: Mutex<(Shape, CgLimits)>,
    refill: tokio::sync::Notify,
    /// No more runs: set by `cancel_all` and `close`.
    cancelled: AtomicBool,
    /// Pool containers being prepared (`close` waits for them to be removed too).
    preparing: AtomicUsize,
    /// Runs waiting for a pooled container.
    waiting: AtomicUsize,
    /// Pool preparations that failed in a row.
    failures: AtomicU32,
    /// Signalled when a pooled container is ready.
    ready: tokio::sync::Notify,
}

impl Pool {
    /// An empty pool; [`Pool::refill_loop`] fills it.
    pub(super) fn new(engine: Arc<Engine>) -> Pool {
        Pool {
            engine,
            ready_containers: Mutex::new(Vec::new()),
            want: Mutex::new((
                Shape {
                    tmpfs_bytes: 64 << 20,
                    tmpfs_inodes: 16 * 1024,
                },
                CgLimits::of(&Limits::default()),
            )),
            refill: tokio::sync::Notify::new(),
            cancelled: AtomicBool::new(false),
            preparing: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ready: tokio::sync::Notify::new(),
        }
    }

    /// Containers waiting in the pool.
    pub(super) fn len(&self) -> usize {
        self.ready_containers.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Ids of the containers waiting in the pool.
    fn ids(&self) -> Vec<String> {
        self.ready_containers
            .lock()
            .map(|p| p.iter().map(|c| c.id.clone()).collect::<Vec<_>>())
            .unwrap_or_default()
    }

    /// Refuses new runs and stops preparing containers.
    pub(super) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether runs are refused.
    pub(super) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// [`Pool::cancel`], and wakes the refill loop so that it ends.
    pub(super) fn stop(&self) {
        self.cancel();
        self.refill.notify_one();
    }

    /// After [`Pool::stop`]: removes the pooled containers and waits (up to 30 s) until every
    /// container of the backend is gone (preparations, runs, background removals).
    pub(super) async fn close(&self) {
        let t = Instant::now();
        let limit = Duration::from_secs(30);
        while self.preparing.load(Ordering::SeqCst) > 0 && t.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pooled: Vec<Container> = self
            .ready_containers
            .lock()
            .map(|mut p| p.drain(..).collect())
            .unwrap_or_default();
        for c in pooled {
            self.engine.remove(&c.id).await;
        }
        while !self.engine.settled() && t.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Makes `shape` and `first` what the pool prepares from now on.
    pub(super) fn want(&self, shape: Shape, first: CgLimits) {
        *self.want.lock().unwrap() = (shape, first);
    }

    fn take(&self, shape: Shape) -> Option<Container> {
        let mut pool = self.ready_containers.lock().ok()?;
        let i = pool.iter().position(|c| c.shape == shape)?;
        Some(pool.remove(i))
    }

    /// Keeps `cfg.pool` containers of the wanted shape ready, plus one more in preparation for
    /// each run waiting for one (preparations run concurrently); replaces idle and stale ones.
    pub(super) async fn refill_loop(self: Arc<Self>) {
        let mut last_sweep = Instant::now();
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return;
            }
            let (want, limits) = *self.want.lock().unwrap();
            // Retire what no run will take: another shape, or idle too long.
            let retired: Vec<Container> = {
                let mut pool = self.ready_containers.lock().unwrap();
                let (keep, old): (Vec<Container>, Vec<Container>) = pool
                    .drain(..)
                    .partition(|c| c.shape == want && c.prepared_at.elapsed() < POOL_IDLE);
                *pool = keep;
                old
            };
            for c in retired {
                self.engine.remove_later(c.id);
            }
            let have = self.ready_containers.lock().unwrap().len();
            let preparing = self.preparing.load(Ordering::SeqCst);
            let waiting = self.waiting.load(Ordering::SeqCst);
            let need = (self.engine.cfg.pool + waiting).saturating_sub(have + preparing);
            let room = MAX_PREPARING.saturating_sub(preparing);
            let backoff = self.failures.load(Ordering::SeqCst);
            for _ in 0..need.min(room) {
                self.preparing.fetch_add(1, Ordering::SeqCst);
                let me = self.clone();
                tokio::spawn(async move { me.prepare_pooled(want, limits).await });
            }
            if backoff > 0 {
                // The engine is failing: back off; runs prepare their own meanwhile.
                tokio::time::sleep(Duration::from_millis(100 << backoff.min(6))).await;
            }
            // Now and then, what a killed predecessor's engine calls created after our start.
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                let _ = self.engine.reap(SWEEP_EVERY, || self.ids()).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), self.refill.notified()).await;
        }
    }

    /// One pool container (the caller counted it in `preparing`).
    async fn prepare_pooled(self: Arc<Self>, shape: Shape, limits: CgLimits) {
        let start = self.engine.cfg.pool_mode == PoolMode::Started;
        match self.engine.prepare(shape, limits, start).await {
            Ok(c) => {
                self.failures.store(0, Ordering::SeqCst);
                // Checked under the pool's lock: `close` drains the pool only once nothing is
                // being prepared, so a container is either pooled (and drained) or removed here.
                let late = {
                    let mut pool = self.ready_containers.lock().unwrap();
                    if self.cancelled.load(Ordering::SeqCst) {
                        Some(c)
                    } else {
                        pool.push(c);
                        None
                    }
                };
                if let Some(c) = late {
                    self.engine.remove(&c.id).await;
                }
                self.ready.notify_waiters();
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.preparing.fetch_sub(1, Ordering::SeqCst);
        self.refill.notify_one();
    }

    /// A container for a run, and whether it came from the pool: a pooled one, or the next one
    /// the pool finishes (a run that prepared its own would only compete with the pool for the
    /// engine), or, without a pool or while the engine keeps failing, one prepared for this run.
    pub(super) async fn acquire(
        &self,
        shape: Shape,
        first: CgLimits,
    ) -> Result<(Container, bool), SandboxError> {
        let start = self.engine.cfg.pool_mode == PoolMode::Started;
        if self.engine.cfg.pool == 0 {
            return Ok((self.engine.prepare(shape, first, start).await?, false));
        }
        let t = Instant::now();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(c) = self.take(shape) {
                break Some(c);
            }
            if self.cancelled.load(Ordering::SeqCst) {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(SandboxError::Unsupported(
                    "the sandbox is shutting down".into(),
                ));
            }
            if self.failures.load(Ordering::SeqCst) > 0 || t.elapsed() > Duration::from_secs(10) {
                break None;
            }
            self.refill.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(50), ready).await;
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.refill.notify_one();
        match got {
            Some(c) => Ok((c, true)),
            None => Ok((self.engine.prepare(shape, first, start).await?, false)),
        }
    }
}
