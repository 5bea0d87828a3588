//! The execution service as the servers use it (REST, gRPC, async jobs): validated
//! [`Submission`]s in, the dedup cache with single-flight (local, and across nodes through a
//! [`SharedCache`]), backpressure (a fixed number of sandbox slots and a bounded wait queue),
//! and streamed runs. No transport here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use isobox_sandbox::{ExecSpec, RunIo, StdinPoll, Stream};
use tokio::sync::mpsc;

use crate::dedup::{DedupCache, DedupConfig, DedupStats};
use crate::shared::{Lock, SharedCache};
use crate::slots::{Slots, SlotsConfig};
use crate::{CoreError, ExecutionResult, Executor, RunStatus, Submission, Validation};

/// An execution as the server reports it: the result plus what the logs and metrics want.
#[derive(Debug, Clone)]
pub struct Execution {
    pub result: ExecutionResult,
    /// Time spent waiting for a sandbox slot (zero for cache hits).
    pub queued: Duration,
    /// Time in the sandbox, set-up and teardown included (`None` for cache hits).
    pub ran: Option<Duration>,
    /// blake3 of the submitted files (hex), for the logs; never the code itself.
    pub code_hash: String,
    pub code_bytes: usize,
}

/// A submission with the spec it runs as (shared by single-flight waiters without copying).
type Planned = Arc<(Submission, ExecSpec)>;

/// Who may share cache entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    PerCaller,
    Global,
}

pub struct Engine {
    executor: Arc<Executor>,
    cache: DedupCache<RunOutput>,
    slots: Slots,
    scope: CacheScope,
    /// The cache shared with other nodes (Redis), in front of the sandbox.
    shared: Option<Arc<dyn SharedCache>>,
}

/// What the sandbox produced, with the time it took (shared by single-flight waiters), and
/// whether it came from the shared cache instead.
type RunOutput = (ExecutionResult, Duration, Duration, bool);

/// Results worth keeping: a timeout or a sandbox failure may not happen again.
fn cacheable(r: &ExecutionResult) -> bool {
    !matches!(r.status, RunStatus::InternalError | RunStatus::Timeout)
}

fn size_of(r: &ExecutionResult) -> usize {
    let c = r
        .compile
        .as_ref()
        .map(|c| c.stdout.len() + c.stderr.len())
        .unwrap_or(0);
    let tests: usize = r
        .tests
        .iter()
        .flatten()
        .map(|t| t.name.len() + t.run.stdout.len() + t.run.stderr.len() + 256)
        .sum();
    let files: usize = r
        .files
        .iter()
        .flatten()
        .map(|f| f.name.len() + f.content.len() + 64)
        .sum();
    r.stdout.len() + r.stderr.len() + c + tests + files + 512
}

/// Everything that determines the result: backend, language and version, the spec (files, argv,
/// environment, stdin, limits), the tests and what else the request asks of the result, and
/// the caller unless the scope is global.
fn cache_key(backend: &str, sub: &Submission, spec: &ExecSpec, caller: Option<&str>) -> [u8; 32] {
    crate::plan::spec_key(
        b"isobox-dedup-v2",
        backend,
        sub,
        spec,
        caller,
        &sub.judge_parts(),
    )
}

impl Engine {
    pub fn new(
        executor: Arc<Executor>,
        dedup: DedupConfig,
        slots: SlotsConfig,
        scope: CacheScope,
    ) -> Engine {
        Engine {
            executor,
            cache: DedupCache::new(dedup),
            slots: Slots::new(slots),
            scope,
            shared: None,
        }
    }

    /// Puts a cache shared with other nodes in front of the sandbox (results are shared, and
    /// a submission running on one node is awaited by the others instead of run twice).
    pub fn with_shared_cache(mut self, shared: Arc<dyn SharedCache>) -> Engine {
        self.shared = Some(shared);
        self
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    pub fn cache_stats(&self) -> DedupStats {
        self.cache.stats()
    }

    pub fn purge_expired(&self) {
        self.cache.purge_expired();
    }

    /// Shutdown: waiting and later requests get `Busy` (503); running ones go on.
    pub fn close(&self) {
        self.slots.close();
    }

    /// (slots busy, slots total, requests waiting).
    pub fn load(&self) -> (usize, usize, usize) {
        (
            self.slots.busy(),
            self.slots.capacity(),
            self.slots.queued(),
        )
    }

    /// Answers `sub` from the cache or runs it in a slot.
    pub async fn execute(&self, sub: Submission, caller: &str) -> Result<Execution, CoreError> {
        let spec = self.executor.run_spec(&sub);
        let scope = (self.scope == CacheScope::PerCaller).then_some(caller);
        let key = cache_key(self.executor.backend().name(), &sub, &spec, scope);
        let (code_hash, code_bytes) = (sub.code_hash.clone(), sub.code_bytes);
        let planned: Planned = Arc::new((sub, spec));
        let scope = scope.map(str::to_string);
        let run = || self.run_shared(&key, planned.clone(), scope.clone());
        let (out, cached) = self
            .cache
            .get_or_run(
                key,
                |r: &RunOutput| size_of(&r.0),
                |r: &RunOutput| cacheable(&r.0),
                run,
            )
            .await?;
        let (mut result, queued, ran, shared_hit) = out;
        let cached = cached || shared_hit;
        result.cached = cached;
        if cached {
            result.id = crate::new_id();
        }
        Ok(Execution {
            result,
            queued: if cached { Duration::ZERO } else { queued },
            ran: (!cached).then_some(ran),
            code_hash,
            code_bytes,
        })
    }

    /// The shared cache's answer, or a run (by this node, or awaited from the node that holds
    /// the submission's lock). Without a shared cache, or when it is unreachable: a local run.
    async fn run_shared(
        &self,
        key: &[u8; 32],
        planned: Planned,
        scope: Option<String>,
    ) -> Result<RunOutput, CoreError> {
        let enabled = self.cache.config().enabled;
        let Some(shared) = self.shared.as_ref().filter(|_| enabled) else {
            return self.run_in_slot(planned, scope).await;
        };
        let ttl = self.cache.config().ttl;
        let entry = format!("isobox:dd:{}", hex::encode(key));
        let hit = |bytes: Vec<u8>| {
            serde_json::from_slice::<ExecutionResult>(&bytes)
                .ok()
                .map(|r| (r, Duration::ZERO, Duration::ZERO, true))
        };
        // The lock is a lease renewed while the run goes on, so a node that dies holding it
        // delays the others by one lease at most. Waiting for another node's run ends after
        // the longest that run can take (every phase's wall time and a queue wait).
        let lease = Duration::from_secs(3);
        let max_wait = planned.0.max_wall() + Duration::from_secs(30);
        let waited = Instant::now();
        loop {
            if let Some(r) = shared.get(&entry).await.and_then(hit) {
                return Ok(r);
            }
            match shared.lock(&entry, lease).await {
                Lock::Acquired(token) => {
                    let renew = async {
                        loop {
                            tokio::time::sleep(lease / 3).await;
                            shared.renew(&entry, &token, lease).await;
                        }
                    };
                    let out = tokio::select! {
                        out = self.run_in_slot(planned, scope) => out,
                        never = renew => never,
                    };
                    if let Ok(o) = &out {
                        if cacheable(&o.0) && ttl > Duration::ZERO {
                            if let Ok(bytes) = serde_json::to_vec(&o.0) {
                                shared.put(&entry, bytes, ttl).await;
                            }
                        }
                    }
                    shared.unlock(&entry, &token).await;
                    return out;
                }
                Lock::Held if waited.elapsed() < max_wait => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Lock::Held | Lock::Unavailable => {
                    return self.run_in_slot(planned, scope).await;
                }
            }
        }
    }

    async fn run_in_slot(
        &self,
        planned: Planned,
        scope: Option<String>,
    ) -> Result<RunOutput, CoreError> {
        let waited = Instant::now();
        let slot = self.slots.acquire().await.map_err(|b| CoreError::Busy {
            retry_after_secs: b.retry_after().as_secs().max(1),
        })?;
        let queued = waited.elapsed();
        let executor = self.executor.clone();
        let started = Instant::now();
        let mut io = IdleSlots(self.slots.clone());
        let result = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            executor.run(&planned.0, scope.as_deref(), &mut io)
        })
        .await
        .map_err(|e| CoreError::Config(format!("execution task failed: {e}")))??;
        Ok((result, queued, started.elapsed(), false))
    }

    /// Runs the language's syntax check of `sub` in a slot (never cached).
    pub async fn validate(&self, sub: &Submission) -> Result<Validation, CoreError> {
        let spec = self.executor.check_spec(sub)?;
        let sub = sub.clone();
        let slot = self.slots.acquire().await.map_err(|b| CoreError::Busy {
            retry_after_secs: b.retry_after().as_secs().max(1),
        })?;
        let executor = self.executor.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            executor.syntax_check(&sub, &spec)
        })
        .await
        .map_err(|e| CoreError::Config(format!("validation task failed: {e}")))?
    }
}

/// The I/O of a run that returns its result at the end: nothing live, and the slots that are
/// idle lent to its test cases (they run side by side, one sandbox per slot; a request waiting
/// in the queue gets a released slot first).
struct IdleSlots(Slots);

impl RunIo for IdleSlots {}

impl crate::plan::Progress for IdleSlots {
    fn extra_slot(&mut self) -> Option<Box<dyn Send>> {
        self.0.try_acquire().map(|g| Box::new(g) as Box<dyn Send>)
    }
}

/// What a streamed run sends: the compile step's outcome (compiled languages), the program's
/// output as produced, then exactly one `Done`.
#[derive(Debug)]
pub enum StreamEvent {
    /// The compile step's outcome, before the program's output (compiled languages).
    Compiled(Box<crate::Outcome>),
    Output {
        stream: Stream,
        data: Vec<u8>,
    },
    Done(Box<Result<Execution, CoreError>>),
}

/// Stdin for an interactive run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinMsg {
    Data(Vec<u8>),
    Close,
}

/// Stdin chunks that may wait for an interactive program to read them: a sender that gets
/// ahead waits (and so, through its socket, does its client) instead of growing the server.
pub const STDIN_QUEUE: usize = 16;

/// A streamed run: read `events`; send stdin on `stdin` (interactive runs). Dropping `events`
/// cancels the run: its sandbox is killed within a supervisor tick.
pub struct StreamHandle {
    pub events: mpsc::UnboundedReceiver<StreamEvent>,
    pub stdin: mpsc::Sender<StdinMsg>,
}

/// Bridges the blocking sandbox run to the async side.
struct ChannelIo {
    events: mpsc::UnboundedSender<StreamEvent>,
    stdin: mpsc::Receiver<StdinMsg>,
    interactive: bool,
}

impl RunIo for ChannelIo {
    fn output(&mut self, phase: usize, stream: Stream, chunk: &[u8]) {
        // The executor passes the program's output only, as phase 0.
        if phase == 0 {
            let _ = self.events.send(StreamEvent::Output {
                stream,
                data: chunk.to_vec(),
            });
        }
    }

    fn stdin(&mut self, phase: usize) -> StdinPoll {
        if !self.interactive || phase != 0 {
            return StdinPoll::Closed;
        }
        match self.stdin.try_recv() {
            Ok(StdinMsg::Data(d)) => StdinPoll::Data(d),
            Ok(StdinMsg::Close) | Err(mpsc::error::TryRecvError::Disconnected) => StdinPoll::Closed,
            Err(mpsc::error::TryRecvError::Empty) => StdinPoll::Pending,
        }
    }

    fn cancelled(&mut self) -> bool {
        self.events.is_closed()
    }
}

impl crate::plan::Progress for ChannelIo {
    fn compiled(&mut self, outcome: &crate::Outcome) {
        let _ = self
            .events
            .send(StreamEvent::Compiled(Box::new(outcome.clone())));
    }
}

impl Engine {
    /// Starts a run whose output is streamed (never cached); with `interactive`, its stdin
    /// stays open until `StdinMsg::Close`.
    /// Test cases are refused (their outputs are compared, not streamed).
    pub fn execute_stream(
        self: &Arc<Self>,
        sub: Submission,
        caller: &str,
        interactive: bool,
    ) -> StreamHandle {
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::channel(STDIN_QUEUE);
        let engine = self.clone();
        let scope = (self.scope == CacheScope::PerCaller).then(|| caller.to_string());
        tokio::spawn(async move {
            let result = engine
                .run_streaming(sub, scope, interactive, ev_tx.clone(), in_rx)
                .await;
            let _ = ev_tx.send(StreamEvent::Done(Box::new(result)));
        });
        StreamHandle {
            events: ev_rx,
            stdin: in_tx,
        }
    }

    async fn run_streaming(
        &self,
        sub: Submission,
        scope: Option<String>,
        interactive: bool,
        events: mpsc::UnboundedSender<StreamEvent>,
        stdin: mpsc::Receiver<StdinMsg>,
    ) -> Result<Execution, CoreError> {
        if sub.tests.is_some() {
            return Err(CoreError::InvalidRequest(
                "a streamed run takes no `tests`: send them to the execute endpoint".into(),
            ));
        }
        let (code_hash, code_bytes) = (sub.code_hash.clone(), sub.code_bytes);
        let waited = Instant::now();
        // A client that leaves while queued frees its place.
        let slot = tokio::select! {
            s = self.slots.acquire() => s.map_err(|b| CoreError::Busy { retry_after_secs: b.retry_after().as_secs().max(1) })?,
            _ = events.closed() => return Err(CoreError::Config("the client went away".into())),
        };
        let queued = waited.elapsed();
        let executor = self.executor.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut io = ChannelIo {
                events,
                stdin,
                interactive,
            };
            executor.run(&sub, scope.as_deref(), &mut io)
        })
        .await
        .map_err(|e| CoreError::Config(format!("execution task failed: {e}")))??;
        Ok(Execution {
            result,
            queued,
            ran: Some(started.elapsed()),
            code_hash,
            code_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isobox_sandbox::{Limits, Phase, SandboxFile};

    fn spec(code: &str, stdin: &str) -> ExecSpec {
        ExecSpec {
            files: vec![SandboxFile {
                path: "main.py".into(),
                content: code.as_bytes().to_vec(),
                executable: false,
                readonly: false,
            }],
            phases: vec![Phase {
                name: "run".into(),
                argv: vec!["python3".into(), "main.py".into()],
                env: vec![],
                stdin: stdin.as_bytes().to_vec(),
                limits: Limits::default(),
                continue_on_failure: false,
                stderr_to_stdout: false,
            }],
            tmpfs_bytes: 1 << 20,
            tmpfs_inodes: 100,
            collect: None,
        }
    }

    #[test]
    fn the_key_covers_everything_that_matters() {
        let py = crate::submission::sample("python", "3.11");
        let k = |s: &ExecSpec, caller| cache_key("native", &py, s, caller);
        let base = k(&spec("print(1)", ""), Some("alice"));
        assert_eq!(base, k(&spec("print(1)", ""), Some("alice")));
        assert_ne!(base, k(&spec("print(2)", ""), Some("alice")));
        assert_ne!(base, k(&spec("print(1)", "x"), Some("alice")));
        assert_ne!(base, k(&spec("print(1)", ""), Some("bob")));
        assert_ne!(base, k(&spec("print(1)", ""), None));
        let mut other = spec("print(1)", "");
        other.phases[0].limits.memory_bytes += 1;
        assert_ne!(base, k(&other, Some("alice")));
        let mut merged = spec("print(1)", "");
        merged.phases[0].stderr_to_stdout = true;
        assert_ne!(base, k(&merged, Some("alice")));
        let newer = crate::submission::sample("python", "3.12");
        assert_ne!(
            base,
            cache_key("native", &newer, &spec("print(1)", ""), Some("alice"))
        );
        // What the request asks of the result: tests, their comparison, encoding, outputs.
        let with = |f: &dyn Fn(&mut Submission)| {
            let mut s = crate::submission::sample("python", "3.11");
            f(&mut s);
            cache_key("native", &s, &spec("print(1)", ""), Some("alice"))
        };
        let case = |expected: &str| crate::submission::Case {
            name: "1".into(),
            stdin: vec![],
            args: vec![],
            expected: Some(expected.as_bytes().to_vec()),
        };
        assert_eq!(base, with(&|_| {}));
        let one = with(&|s| s.tests = Some(vec![case("1")]));
        assert_ne!(base, one);
        assert_ne!(one, with(&|s| s.tests = Some(vec![case("2")])));
        assert_ne!(
            one,
            with(&|s| {
                s.tests = Some(vec![case("1")]);
                s.compare.mode = crate::CompareMode::Trim;
            })
        );
        assert_ne!(base, with(&|s| s.base64 = true));
        assert_ne!(base, with(&|s| s.outputs = vec!["*.png".into()]));
    }
}
