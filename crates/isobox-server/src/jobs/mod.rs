//! Async jobs: `POST /api/v1/executions` (and `/batch`) enqueue, `GET /api/v1/executions/{id}`
//! reads the job's record, workers run them.
//!
//! A record is the JSON a client reads: `{"id", "state": "queued"|"running"|"done",
//! "submitted_at", "started_at", "finished_at"}` (unix ms) and, once done, every field of the
//! result object at the top level (or `"error": {"error", "message"}` when the run could not
//! happen). Finished records are kept `ISOBOX_JOB_RESULT_TTL`, then the job is unknown (404).
//!
//! Without Redis the queue and the records live in this process. With `REDIS_URL` a job is a
//! record `isobox:job:<id>` plus an entry of the stream `isobox:jobs`, read by the consumer
//! group `isobox`: any node's worker can take it. A worker renews its claim on the entry while
//! it runs (XCLAIM to itself); an entry whose worker stopped renewing for `ISOBOX_JOB_CLAIM_MS`
//! (it died) is taken over by another worker (XAUTOCLAIM) and run again. The record is
//! finished by one atomic script that writes only if it is not finished yet, so however many
//! workers ran a job, clients see one result and one callback is sent.
//!
//! This module is the store and the queue only; [`consume`] hands queued jobs to a runner
//! (the API layer's, which validates and runs them).
//!
//! A job keeps the wire request (`ExecuteRequest`), not the validated value: with Redis the
//! queue is outside this process, and what comes back from it is validated again before it
//! runs (the caller's policy was checked at submission).

pub mod consume;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isobox_core::ExecuteRequest;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::cluster::Redis;

pub const STREAM: &str = "isobox:jobs";
pub const GROUP: &str = "isobox";

/// A queued job: what was asked, by whom, and where to send the result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub id: String,
    pub request: ExecuteRequest,
    /// The caller's key (dedup scope, logs, and who may read the record).
    pub caller: String,
    pub callback_url: Option<String>,
    pub submitted_at: u64,
    /// What a compatibility API keeps with the job to answer in its own shape (the Judge0
    /// API's submission fields); kept in the record, never shown by the native API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compat: Option<Value>,
}

/// Why a job could not be queued or read.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job queue is unavailable (Redis cannot be reached); retry later")]
    Unavailable,
    #[error("the job queue is full; retry later")]
    Full,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The record of a queued job.
fn queued_record(spec: &JobSpec) -> Value {
    let mut v = json!({
        "id": spec.id,
        "state": JobState::Queued.as_str(),
        "submitted_at": spec.submitted_at,
        "owner": spec.caller,
    });
    if let Some(c) = &spec.compat {
        v["compat"] = c.clone();
    }
    v
}

/// What a client of the native API may see of a record (the owner and a compatibility API's
/// fields stay inside).
pub fn public_view(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("owner");
        m.remove("compat");
    }
    v
}

/// Whether `caller` may read the record.
pub fn owned_by(v: &Value, caller: &str) -> bool {
    v.get("owner").and_then(Value::as_str) == Some(caller)
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
        }
    }

    /// The state a record says.
    pub fn of(record: &Value) -> Option<JobState> {
        match record.get("state").and_then(Value::as_str)? {
            "queued" => Some(JobState::Queued),
            "running" => Some(JobState::Running),
            "done" => Some(JobState::Done),
            _ => None,
        }
    }
}

fn is_done(v: &Value) -> bool {
    JobState::of(v) == Some(JobState::Done)
}

/// Sets KEYS[1] to ARGV[1] (expiring after ARGV[2] ms) unless it holds a finished record;
/// 1 if written.
const WRITE_UNLESS_DONE: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then
  local ok, rec = pcall(cjson.decode, v)
  if ok and rec['state'] == 'done' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

fn record_key(id: &str) -> String {
    format!("isobox:job:{id}")
}

/// Most jobs waiting in a node-local queue.
const LOCAL_QUEUE: usize = 10_000;

struct Local {
    records: Mutex<HashMap<String, (Value, Option<Instant>)>>,
    tx: mpsc::Sender<JobSpec>,
    rx: tokio::sync::Mutex<mpsc::Receiver<JobSpec>>,
}

pub struct Jobs {
    local: Local,
    pub(crate) redis: Option<Arc<Redis>>,
    ttl: Duration,
    pub(crate) claim: Duration,
    /// Signalled whenever a record of this node changes (waiters re-read).
    changed: Notify,
}

impl Jobs {
    pub fn new(redis: Option<Arc<Redis>>, ttl: Duration, claim: Duration) -> Jobs {
        let (tx, rx) = mpsc::channel(LOCAL_QUEUE);
        Jobs {
            local: Local {
                records: Mutex::new(HashMap::new()),
                tx,
                rx: tokio::sync::Mutex::new(rx),
            },
            redis,
            ttl,
            claim,
            changed: Notify::new(),
        }
    }

    /// How long records of unfinished jobs live (a safety net: they are rewritten when the
    /// job moves on).
    fn pending_ttl(&self) -> Duration {
        self.ttl + Duration::from_secs(86_400)
    }

    /// Queues jobs (all or none).
    pub async fn submit(&self, specs: &[JobSpec]) -> Result<(), JobError> {
        match &self.redis {
            None => {
                if self.local.tx.capacity() < specs.len() {
                    return Err(JobError::Full);
                }
                for s in specs {
                    self.set_local(&s.id, queued_record(s), None);
                    self.local
                        .tx
                        .try_send(s.clone())
                        .map_err(|_| JobError::Full)?;
                }
                Ok(())
            }
            Some(r) => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for s in specs {
                    let rec = queued_record(s).to_string();
                    let spec = serde_json::to_string(s).map_err(|_| JobError::Unavailable)?;
                    pipe.cmd("SET")
                        .arg(record_key(&s.id))
                        .arg(rec)
                        .arg("PX")
                        .arg(self.pending_ttl().as_millis() as u64)
                        .ignore();
                    pipe.cmd("XADD")
                        .arg(STREAM)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(1_000_000)
                        .arg("*")
                        .arg("spec")
                        .arg(spec)
                        .ignore();
                }
                let mut c = r.conn();
                r.call(
                    "job_submit",
                    async move { pipe.query_async::<()>(&mut c).await },
                )
                .await
                .ok_or(JobError::Unavailable)
            }
        }
    }

    /// The record of job `id` (owner included), None when unknown or expired.
    pub async fn get(&self, id: &str) -> Result<Option<Value>, JobError> {
        match &self.redis {
            None => Ok(self.get_local(id)),
            Some(r) => {
                let mut c = r.conn();
                let key = record_key(id);
                let raw: Option<String> = r
                    .call("job_get", async move { c.get(&key).await })
                    .await
                    .ok_or(JobError::Unavailable)?;
                Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
            }
        }
    }

    /// The record once done, or as it is when `timeout` has passed.
    pub async fn wait_done(&self, id: &str, timeout: Duration) -> Result<Option<Value>, JobError> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let rec = self.get(id).await?;
            let done = rec.as_ref().is_some_and(is_done);
            let left = deadline.saturating_duration_since(Instant::now());
            if done || rec.is_none() || left.is_zero() {
                return Ok(rec);
            }
            // Local records notify; Redis records (another node may finish the job) are polled.
            let tick = if self.redis.is_some() {
                Duration::from_millis(25)
            } else {
                Duration::from_secs(1)
            };
            let _ = tokio::time::timeout(left.min(tick), changed).await;
        }
    }

    /// Forgets job `id`'s record (the job must be done: a queued or running job would write
    /// it again). True if there was one.
    pub async fn delete(&self, id: &str) -> Result<bool, JobError> {
        match &self.redis {
            None => Ok(self
                .local
                .records
                .lock()
                .map(|mut m| m.remove(id).is_some())
                .unwrap_or(false)),
            Some(r) => {
                let mut c = r.conn();
                let key = record_key(id);
                let n: i64 = r
                    .call("job_delete", async move { c.del(&key).await })
                    .await
                    .ok_or(JobError::Unavailable)?;
                Ok(n > 0)
            }
        }
    }

    fn set_local(&self, id: &str, v: Value, expires: Option<Instant>) {
        if let Ok(mut m) = self.local.records.lock() {
            m.insert(id.to_string(), (v, expires));
        }
        self.changed.notify_waiters();
    }

    fn get_local(&self, id: &str) -> Option<Value> {
        let m = self.local.records.lock().ok()?;
        let (v, exp) = m.get(id)?;
        if exp.is_some_and(|e| e <= Instant::now()) {
            return None;
        }
        Some(v.clone())
    }

    /// Drops expired local records.
    pub fn purge(&self) {
        if let Ok(mut m) = self.local.records.lock() {
            let now = Instant::now();
            m.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        }
    }

    /// Writes `v` for `id` unless the job is already done: Some(true) if written, Some(false)
    /// if it was done, None if the store could not be reached.
    async fn write_unless_done(&self, id: &str, v: &Value, ttl: Duration) -> Option<bool> {
        match &self.redis {
            None => {
                let mut m = self.local.records.lock().ok()?;
                if m.get(id).is_some_and(|(r, _)| is_done(r)) {
                    return Some(false);
                }
                let exp = is_done(v).then(|| Instant::now() + ttl);
                m.insert(id.to_string(), (v.clone(), exp));
                drop(m);
                self.changed.notify_waiters();
                Some(true)
            }
            Some(r) => {
                let mut c = r.conn();
                let key = record_key(id);
                let body = v.to_string();
                let written = r
                    .call("job_write", async move {
                        redis::Script::new(WRITE_UNLESS_DONE)
                            .key(&key)
                            .arg(body)
                            .arg(ttl.as_millis() as u64)
                            .invoke_async::<i64>(&mut c)
                            .await
                    })
                    .await;
                self.changed.notify_waiters();
                written.map(|w| w == 1)
            }
        }
    }

    /// Marks `spec` running (unless it is done already): `Some(Some(started_at))` if this
    /// worker may run it, `Some(None)` if another finished it, `None` if the store could not
    /// be reached (the job must stay queued).
    pub async fn start(&self, spec: &JobSpec) -> Option<Option<u64>> {
        let started_at = now_ms();
        let mut running = queued_record(spec);
        running["state"] = json!(JobState::Running.as_str());
        running["started_at"] = json!(started_at);
        let written = self
            .write_unless_done(&spec.id, &running, self.pending_ttl())
            .await?;
        Some(written.then_some(started_at))
    }

    /// Finishes `spec`'s record with `outcome` (the result's fields, or `{"error": ...}`):
    /// the record clients see, unless another worker finished it first. `Some(Some(record))`
    /// if this one was written (send its callback), `Some(None)` if not, `None` if the store
    /// could not be reached.
    pub async fn finish(
        &self,
        spec: &JobSpec,
        started_at: u64,
        mut outcome: Value,
    ) -> Option<Option<Value>> {
        outcome["id"] = json!(spec.id);
        outcome["state"] = json!(JobState::Done.as_str());
        outcome["submitted_at"] = json!(spec.submitted_at);
        outcome["started_at"] = json!(started_at);
        outcome["finished_at"] = json!(now_ms());
        outcome["owner"] = json!(spec.caller);
        if let Some(c) = &spec.compat {
            outcome["compat"] = c.clone();
        }
        let written = self.write_unless_done(&spec.id, &outcome, self.ttl).await?;
        Some(written.then_some(outcome))
    }

    /// The next job of the node-local queue (`None` once the queue is closed).
    pub(crate) async fn next_local(&self) -> Option<JobSpec> {
        self.local.rx.lock().await.recv().await
    }
}
