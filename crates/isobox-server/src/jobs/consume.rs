//! Consumers of the job queue: workers that take queued jobs (from this node's queue, or from
//! the Redis stream through the consumer group, taking over entries whose worker stopped
//! renewing its claim) and hand each to a [`Runner`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{JobSpec, Jobs, GROUP, STREAM};
use crate::cluster::Redis;

/// Runs one job to its end: true when done (its entry may go), false when the job store could
/// not be reached (the job must stay queued, to be taken over).
pub type Runner = Arc<dyn Fn(JobSpec) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Starts this node's job workers (`n` at a time) until `stop` turns true: each queued job is
/// handed to `run`.
pub fn start_workers(
    jobs: Arc<Jobs>,
    n: usize,
    stop: tokio::sync::watch::Receiver<bool>,
    run: Runner,
) {
    if n == 0 {
        return;
    }
    match jobs.redis.clone() {
        None => {
            for _ in 0..n {
                let jobs = jobs.clone();
                let run = run.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    loop {
                        let spec = tokio::select! {
                            s = jobs.next_local() => s,
                            _ = stop.changed() => None,
                        };
                        match spec {
                            Some(spec) => {
                                run(spec).await;
                            }
                            None => return,
                        }
                    }
                });
            }
        }
        Some(redis) => {
            tokio::spawn(redis_reader(jobs, redis, n, stop, run));
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
    jobs: Arc<Jobs>,
    redis: Arc<Redis>,
    n: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
    run: Runner,
) {
    let slots = Arc::new(Semaphore::new(n));
    let claim_ms = jobs.claim.as_millis() as u64;
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
        let run = run.clone();
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
                finished = run(spec).await;
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
