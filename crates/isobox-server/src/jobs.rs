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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isobox_core::ExecuteRequest;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::cluster::Redis;
use crate::App;

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
    json!({
        "id": spec.id,
        "state": "queued",
        "submitted_at": spec.submitted_at,
        "owner": spec.caller,
    })
}

/// What a client may see of a record (the owner stays inside).
pub fn public_view(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("owner");
    }
    v
}

/// Whether `caller` may read the record.
pub fn owned_by(v: &Value, caller: &str) -> bool {
    v.get("owner").and_then(Value::as_str) == Some(caller)
}

pub fn state_of(v: &Value) -> &str {
    v.get("state").and_then(Value::as_str).unwrap_or("")
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
    redis: Option<Arc<Redis>>,
    ttl: Duration,
    claim: Duration,
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
            let done = rec.as_ref().is_some_and(|r| state_of(r) == "done");
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
                if m.get(id).is_some_and(|(r, _)| state_of(r) == "done") {
                    return Some(false);
                }
                let exp = (state_of(v) == "done").then(|| Instant::now() + ttl);
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
}

/// Runs one job: marks it running, executes it through the engine (cache, slots, sandbox),
/// finishes its record and, if this worker's record is the one clients see, sends the
/// callback. False when the job store could not be reached (the job must stay queued).
async fn run_job(app: &Arc<App>, spec: JobSpec) -> bool {
    let jobs = &app.jobs;
    let started_at = now_ms();
    let mut running = queued_record(&spec);
    running["state"] = json!("running");
    running["started_at"] = json!(started_at);
    match jobs
        .write_unless_done(&spec.id, &running, jobs.pending_ttl())
        .await
    {
        Some(true) => {}
        // Finished elsewhere (a taken-over entry whose first worker was only slow).
        Some(false) => return true,
        None => return false,
    }
    let mut done = match app.engine.execute(spec.request.clone(), &spec.caller).await {
        Ok(ex) => {
            crate::routes::record_execution(app, &spec.caller, &ex, "jobs", false);
            let mut v = serde_json::to_value(&ex.result).unwrap_or_else(|_| json!({}));
            v["id"] = json!(spec.id);
            v
        }
        Err(e) => {
            let api = crate::routes::core_error(app, &e);
            json!({"id": spec.id, "error": {"error": api.kind, "message": api.message}})
        }
    };
    done["state"] = json!("done");
    done["submitted_at"] = json!(spec.submitted_at);
    done["started_at"] = json!(started_at);
    done["finished_at"] = json!(now_ms());
    done["owner"] = json!(spec.caller);
    match jobs.write_unless_done(&spec.id, &done, jobs.ttl).await {
        Some(true) => {}
        Some(false) => return true,
        None => return false,
    }
    if let Some(url) = spec.callback_url.clone() {
        let app = app.clone();
        let body = public_view(done).to_string().into_bytes();
        let id = spec.id.clone();
        tokio::spawn(async move {
            match crate::webhook::deliver(&app.config.webhook, &url, &id, &body).await {
                Ok(d) => {
                    tracing::info!(target: crate::logging::EXEC, id = %id, attempts = d.attempts, status = d.status, "callback delivered")
                }
                Err(e) => {
                    tracing::warn!(target: crate::logging::EXEC, id = %id, error = %e, "callback not delivered")
                }
            }
        });
    }
    true
}

/// Starts this node's job workers (`n` at a time) until `stop` turns true.
pub fn start_workers(app: Arc<App>, n: usize, stop: tokio::sync::watch::Receiver<bool>) {
    if n == 0 {
        return;
    }
    match app.jobs.redis.clone() {
        None => {
            for _ in 0..n {
                let app = app.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    loop {
                        let next = async {
                            let mut rx = app.jobs.local.rx.lock().await;
                            rx.recv().await
                        };
                        let spec = tokio::select! {
                            s = next => s,
                            _ = stop.changed() => None,
                        };
                        match spec {
                            Some(spec) => {
                                run_job(&app, spec).await;
                            }
                            None => return,
                        }
                    }
                });
            }
        }
        Some(redis) => {
            tokio::spawn(redis_reader(app, redis, n, stop));
        }
    }
}

/// One entry of the stream: its id and the job.
fn parse_entries(v: &redis::Value) -> Vec<(String, Option<JobSpec>)> {
    // [[id, [field, value, ...]], ...]
    let mut out = Vec::new();
    let redis::Value::Array(entries) = v else {
        return out;
    };
    for e in entries {
        let redis::Value::Array(parts) = e else {
            continue;
        };
        let Some(id) = parts.first().and_then(text) else {
            continue;
        };
        let spec = match parts.get(1) {
            Some(redis::Value::Array(fields)) => fields
                .chunks(2)
                .find(|kv| kv.first().and_then(text).as_deref() == Some("spec"))
                .and_then(|kv| kv.get(1).and_then(text))
                .and_then(|s| serde_json::from_str::<JobSpec>(&s).ok()),
            _ => None,
        };
        out.push((id, spec));
    }
    out
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Takes entries for this node: first any whose worker stopped renewing its claim, then new
/// ones; runs up to `n` at once.
async fn redis_reader(
    app: Arc<App>,
    redis: Arc<Redis>,
    n: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(n));
    let claim_ms = app.jobs.claim.as_millis() as u64;
    let block = Duration::from_millis(1000);
    let mut conn = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore"),
            _ = stop.changed() => return,
        };
        if conn.is_none() {
            match redis.dedicated(block + Duration::from_secs(2)).await {
                Ok(mut c) => {
                    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(STREAM)
                        .arg(GROUP)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async(&mut c)
                        .await;
                    if let Err(e) = created {
                        if !e.to_string().contains("BUSYGROUP") {
                            tracing::warn!(error = %e, "cannot create the job consumer group");
                        }
                    }
                    conn = Some(c);
                }
                Err(_) => {
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        // Abandoned entries first.
        let claimed: redis::RedisResult<redis::Value> = redis::cmd("XAUTOCLAIM")
            .arg(STREAM)
            .arg(GROUP)
            .arg(&redis.node)
            .arg(claim_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(c)
            .await;
        let mut entries = match &claimed {
            Ok(redis::Value::Array(parts)) if parts.len() >= 2 => parse_entries(&parts[1]),
            _ => Vec::new(),
        };
        if !entries.is_empty() {
            tracing::warn!(target: crate::logging::EXEC, entry = %entries[0].0, "taking over a job whose worker stopped");
        }
        if entries.is_empty() {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(&redis.node)
                .arg("COUNT")
                .arg(1)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(STREAM)
                .arg(">");
            let read: redis::RedisResult<redis::Value> = tokio::select! {
                r = cmd.query_async(c) => r,
                _ = stop.changed() => return,
            };
            match read {
                // [[stream, [[id, fields]]]]
                Ok(redis::Value::Array(streams)) => {
                    for s in &streams {
                        if let redis::Value::Array(parts) = s {
                            if let Some(e) = parts.get(1) {
                                entries.extend(parse_entries(e));
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if e.to_string().contains("NOGROUP") {
                        conn = None; // the stream was deleted: recreate the group
                    } else if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
        let Some((entry, spec)) = entries.pop() else {
            drop(permit);
            continue;
        };
        let app = app.clone();
        let redis = redis.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut finished = true;
            if let Some(spec) = spec {
                // Renew the claim while the job runs, so nobody takes it over.
                let heart = {
                    let redis = redis.clone();
                    let entry = entry.clone();
                    let every = Duration::from_millis((claim_ms / 3).max(100));
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(every).await;
                            let mut c = redis.conn();
                            let _: Option<redis::Value> = redis
                                .call("job_renew", async {
                                    redis::cmd("XCLAIM")
                                        .arg(STREAM)
                                        .arg(GROUP)
                                        .arg(&redis.node)
                                        .arg(0)
                                        .arg(&entry)
                                        .arg("JUSTID")
                                        .query_async(&mut c)
                                        .await
                                })
                                .await;
                        }
                    })
                };
                finished = run_job(&app, spec).await;
                heart.abort();
            }
            if !finished {
                // Redis went away mid-job: leave the entry pending; it is taken over (and
                // run again) once Redis is back.
                return;
            }
            // Done (or unreadable): acknowledge and drop the entry.
            let mut c = redis.conn();
            let _: Option<()> = redis
                .call("job_ack", async {
                    redis::pipe()
                        .cmd("XACK")
                        .arg(STREAM)
                        .arg(GROUP)
                        .arg(&entry)
                        .ignore()
                        .cmd("XDEL")
                        .arg(STREAM)
                        .arg(&entry)
                        .ignore()
                        .query_async(&mut c)
                        .await
                })
                .await;
        });
    }
}
