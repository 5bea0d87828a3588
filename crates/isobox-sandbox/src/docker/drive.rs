//! One run, driven from start to end: the checks of the spec; on the thread that called
//! `execute_io`, relaying live output, stdin and cancellation between the caller's
//! [`RunIo`] and the run's task on the backend's runtime; in that task, taking a container from
//! the pool, giving it each phase's cgroup limits, the protocol with the runner (job and files
//! in, `READY`/`GO` per phase, stdin, output, phase reports, `DONE` or `FAILED`) over the attach
//! stream, the backstop deadline, killing the container on cancellation, and turning what came
//! back (or a container that died) into the common [`ExecReport`].

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::container::{Container, Engine};
use super::hardening::{CgLimits, Shape};
use super::pool::Pool;
use super::protocol::{self as proto, Job, JobCollect, JobFile, JobPhase, PhaseResult};
use crate::spec::{
    classify, program_env, rlimits, ExecReport, ExecSpec, LimitHit, Phase, PhaseReport, RunIo,
    Status, StdinPoll, Stream,
};
use crate::SandboxError;

/// The checks every backend makes of a spec.
pub(super) fn validate(spec: &ExecSpec) -> Result<(), SandboxError> {
    if spec.phases.is_empty() || spec.phases.len() > 8 {
        return Err(SandboxError::InvalidSpec(
            "a run has 1 to 8 programs".into(),
        ));
    }
    crate::spec::check_files(&spec.files)?;
    for p in &spec.phases {
        if p.argv.is_empty() {
            return Err(SandboxError::InvalidSpec(format!(
                "phase `{}` has an empty command",
                p.name
            )));
        }
        let bad = |s: &str| s.contains('\0');
        if p.argv.iter().any(|a| bad(a))
            || p.env
                .iter()
                .any(|(k, v)| bad(k) || bad(v) || k.contains('='))
        {
            return Err(SandboxError::InvalidSpec(
                "arguments and environment may not contain NUL bytes".into(),
            ));
        }
    }
    Ok(())
}

/// Events from the run task to the thread that called `execute_io`.
enum Event {
    PhaseStarted(usize),
    Output(usize, Stream, Vec<u8>),
    Done(Result<ExecReport, SandboxError>),
}

/// From that thread to the run task.
enum Ctl {
    Stdin(Vec<u8>),
    StdinEnd,
    Cancel,
}

/// Runs a (validated) `spec` on `rt` and serves `io` from this thread until the run is over.
pub(super) fn execute(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<Engine>,
    pool: &Arc<Pool>,
    spec: &ExecSpec,
    io: &mut dyn RunIo,
) -> Result<ExecReport, SandboxError> {
    let (ev_tx, ev_rx) = mpsc::channel();
    let (ctl_tx, ctl_rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = engine.clone();
    let pool = pool.clone();
    let spec_owned = spec.clone();
    let done_tx = ev_tx.clone();
    rt.spawn(async move {
        let r = run(engine, pool, spec_owned, ev_tx, ctl_rx).await;
        let _ = done_tx.send(Event::Done(r));
    });
    let mut phase: Option<usize> = None;
    let mut cancelled = false;
    loop {
        match ev_rx.recv_timeout(Duration::from_millis(10)) {
            Ok(Event::PhaseStarted(i)) => phase = Some(i),
            Ok(Event::Output(i, s, d)) => io.output(i, s, &d),
            Ok(Event::Done(r)) => return r,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SandboxError::Setup("the docker run task ended".into()))
            }
        }
        if !cancelled && io.cancelled() {
            cancelled = true;
            let _ = ctl_tx.send(Ctl::Cancel);
        }
        if let Some(i) = phase {
            match io.stdin(i) {
                StdinPoll::Data(d) => {
                    let _ = ctl_tx.send(Ctl::Stdin(d));
                }
                StdinPoll::Pending => {}
                StdinPoll::Closed => {
                    let _ = ctl_tx.send(Ctl::StdinEnd);
                    phase = None;
                }
            }
        }
    }
}

/// One execution, start to end, on the backend's runtime.
async fn run(
    engine: Arc<Engine>,
    pool: Arc<Pool>,
    spec: ExecSpec,
    events: mpsc::Sender<Event>,
    mut ctl: tokio::sync::mpsc::UnboundedReceiver<Ctl>,
) -> Result<ExecReport, SandboxError> {
    let started = Instant::now();
    let shape = Shape::of(&spec);
    let first = CgLimits::of(&spec.phases[0].limits);
    pool.want(shape, first);
    let (mut c, warm) = pool.acquire(shape, first).await?;
    engine.run_started(&c.id);
    let result = drive(&engine, &mut c, &spec, &events, &mut ctl, started, warm).await;
    engine.run_ended(&c.id);
    engine.remove_later(c.id.clone());
    result
}

/// Runs every phase of `spec` in container `c` (prepared, maybe started) through its runner.
async fn drive(
    engine: &Engine,
    c: &mut Container,
    spec: &ExecSpec,
    events: &mpsc::Sender<Event>,
    ctl: &mut tokio::sync::mpsc::UnboundedReceiver<Ctl>,
    started: Instant,
    warm: bool,
) -> Result<ExecReport, SandboxError> {
    let not_started = |status| ExecReport {
        phases: vec![crate::spec::not_started(&spec.phases[0], status)],
        setup_time: started.elapsed(),
        total_time: started.elapsed(),
        warm,
        collected: None,
    };
    match engine
        .set_limits(c, CgLimits::of(&spec.phases[0].limits))
        .await
    {
        Ok(()) => {}
        Err(SandboxError::MemoryInUse) => return Ok(not_started(Status::MemoryLimit)),
        Err(e) => return Err(e),
    }
    if !c.started {
        engine.start(c).await?;
    }
    let setup_time = started.elapsed();
    let mut att = c
        .attach
        .take()
        .ok_or_else(|| SandboxError::Setup("the container is not attached".into()))?;
    // The job.
    let job = Job {
        files: spec
            .files
            .iter()
            .map(|f| JobFile {
                path: f.path.clone(),
                executable: f.executable,
                readonly: f.readonly,
            })
            .collect(),
        phases: spec.phases.iter().map(job_phase).collect(),
        collect: spec.collect.as_ref().map(|c| JobCollect {
            patterns: c.patterns.clone(),
            max_files: c.max_files,
            max_bytes: c.max_bytes,
        }),
    };
    let mut wire = proto::frame(
        proto::JOB,
        &serde_json::to_vec(&job).map_err(|e| SandboxError::Setup(e.to_string()))?,
    );
    for f in &spec.files {
        proto::encode(&mut wire, proto::FILE, &f.content);
    }
    let io_err = |e: std::io::Error| SandboxError::Setup(format!("docker attach: {e}"));
    att.input.write_all(&wire).await.map_err(io_err)?;
    att.input.flush().await.map_err(io_err)?;

    // Backstop: the runner enforces each phase's limits; if it cannot (starved, killed),
    // the container is killed when every phase's time is used up and some.
    let budget: Duration = spec
        .phases
        .iter()
        .map(|p| p.limits.wall + Duration::from_secs(2))
        .sum::<Duration>()
        + Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + budget;
    let mut decoder = proto::Decoder::default();
    let mut reports: Vec<PhaseReport> = Vec::new();
    let mut current: Option<(usize, Instant, Vec<u8>, Vec<u8>)> = None;
    let mut diag = Vec::new();
    let mut failure: Option<String> = None;
    let mut stdin_open = false;
    let mut done = false;
    // The files the runner sends back after the last phase (`C`, then `K` frames).
    let mut collecting: Option<proto::CollectedReader> = None;
    let mut collected = None;
    'outer: while !done {
        tokio::select! {
            chunk = att.output.next() => {
                let Some(Ok(chunk)) = chunk else { break 'outer };
                match chunk {
                    LogOutput::StdOut { message } => decoder.push(&message),
                    LogOutput::StdErr { message } if diag.len() < 4096 => {
                        diag.extend_from_slice(&message)
                    }
                    _ => {}
                }
                loop {
                    let frame = match decoder.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => { failure = Some(e); break 'outer }
                    };
                    match frame {
                        (proto::READY, p) => {
                            let i: usize = String::from_utf8_lossy(&p).parse().unwrap_or(usize::MAX);
                            let Some(phase) = spec.phases.get(i) else {
                                failure = Some("the runner asked for an unknown phase".into());
                                break 'outer;
                            };
                            match engine.set_limits(c, CgLimits::of(&phase.limits)).await {
                                Ok(()) => {}
                                Err(SandboxError::MemoryInUse) => {
                                    reports.push(crate::spec::not_started(phase, Status::MemoryLimit));
                                    done = true;
                                    break;
                                }
                                Err(e) => return Err(e),
                            }
                            let mut go = proto::frame(proto::GO, b"");
                            for part in phase.stdin.chunks(1 << 20) {
                                proto::encode(&mut go, proto::STDIN, part);
                            }
                            att.input.write_all(&go).await.map_err(io_err)?;
                            att.input.flush().await.map_err(io_err)?;
                            stdin_open = true;
                            current = Some((i, Instant::now(), Vec::new(), Vec::new()));
                            let _ = events.send(Event::PhaseStarted(i));
                        }
                        (proto::OUTPUT, p) if !p.is_empty() => {
                            if let Some((i, _, out, err)) = current.as_mut() {
                                let (stream, buf) = if p[0] == 1 { (Stream::Stdout, out) } else { (Stream::Stderr, err) };
                                buf.extend_from_slice(&p[1..]);
                                let _ = events.send(Event::Output(*i, stream, p[1..].to_vec()));
                            }
                        }
                        (proto::PHASE, p) => {
                            let Some((i, _, out, err)) = current.take() else { continue };
                            let r: PhaseResult = serde_json::from_slice(&p)
                                .map_err(|e| SandboxError::Setup(format!("bad phase report: {e}")))?;
                            reports.push(phase_report(&spec.phases[i], r, out, err));
                            stdin_open = false;
                        }
                        (proto::COLLECTED, p) => {
                            let Some(asked) = &spec.collect else {
                                failure = Some("the runner sent files nobody asked for".into());
                                break 'outer;
                            };
                            match proto::CollectedReader::new(&p, asked) {
                                Ok(r) => collecting = Some(r),
                                Err(e) => { failure = Some(e); break 'outer; }
                            }
                        }
                        (proto::CONTENT, p) => {
                            let pushed = match collecting.as_mut() {
                                Some(r) => r.push(&p),
                                None => Err("file content without a header".into()),
                            };
                            if let Err(e) = pushed {
                                failure = Some(e);
                                break 'outer;
                            }
                        }
                        (proto::DONE, _) => {
                            if let Some(r) = collecting.take() {
                                match r.finish() {
                                    Ok(c) => collected = Some(c),
                                    Err(e) => { failure = Some(e); break 'outer; }
                                }
                            }
                            done = true;
                            break;
                        }
                        (proto::FAILED, p) => {
                            failure = Some(String::from_utf8_lossy(&p).into_owned());
                            break 'outer;
                        }
                        _ => {}
                    }
                }
            }
            msg = ctl.recv() => {
                match msg {
                    Some(Ctl::Stdin(d)) if stdin_open => {
                        att.input.write_all(&proto::frame(proto::STDIN, &d)).await.map_err(io_err)?;
                        att.input.flush().await.map_err(io_err)?;
                    }
                    Some(Ctl::StdinEnd) if stdin_open => {
                        att.input.write_all(&proto::frame(proto::STDIN_END, b"")).await.map_err(io_err)?;
                        att.input.flush().await.map_err(io_err)?;
                        stdin_open = false;
                    }
                    Some(Ctl::Cancel) | None => {
                        failure = Some("the run was cancelled".into());
                        engine.kill(&c.id).await;
                        break 'outer;
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                engine.kill(&c.id).await;
                if let Some((i, t, out, err)) = current.take() {
                    let mut r = phase_report(&spec.phases[i], PhaseResult::default(), out, err);
                    r.status = Status::Timeout;
                    r.limit_hit = Some(LimitHit::WallTime);
                    r.wall_time = t.elapsed();
                    reports.push(r);
                }
                done = true;
            }
        }
    }
    if !done {
        // The stream ended or broke before the runner said it was done: the container died
        // (the OOM killer took the runner, the engine killed it) or the run was cancelled.
        let oom = match engine.docker.inspect_container(&c.id, None).await {
            Ok(info) => info.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(_) => false,
        };
        let had_phase = current.is_some();
        let (i, t, out, err) = current.take().unwrap_or((
            reports.len().min(spec.phases.len() - 1),
            started,
            vec![],
            vec![],
        ));
        let mut r = phase_report(&spec.phases[i], PhaseResult::default(), out, err);
        r.wall_time = t.elapsed();
        if oom && failure.is_none() {
            r.status = Status::MemoryLimit;
            r.limit_hit = Some(LimitHit::Memory);
        } else {
            r.status = Status::InternalError;
            let why = failure.unwrap_or_else(|| {
                let d = String::from_utf8_lossy(&diag);
                format!("the container ended before the run did {}", d.trim())
            });
            r.internal_error = Some(why);
        }
        let cancelled = r.internal_error.as_deref() == Some("the run was cancelled");
        if !had_phase && reports.is_empty() && r.status == Status::InternalError && !cancelled {
            // The runner never started a program: the sandbox failed, not the program.
            return Err(SandboxError::Setup(r.internal_error.unwrap_or_default()));
        }
        reports.push(r);
    }
    Ok(ExecReport {
        phases: reports,
        setup_time,
        total_time: started.elapsed(),
        warm,
        collected,
    })
}

/// What the runner needs of a phase.
fn job_phase(p: &Phase) -> JobPhase {
    JobPhase {
        argv: p.argv.clone(),
        env: program_env(&p.env),
        wall_ms: p.limits.wall.as_millis() as u64,
        cpu_ms: p.limits.cpu.as_millis() as u64,
        max_output: p.limits.max_output_bytes,
        rlimits: rlimits(&p.limits),
        continue_on_failure: p.continue_on_failure,
        stderr_to_stdout: p.stderr_to_stdout,
    }
}

/// The runner's measurements as the common report.
fn phase_report(phase: &Phase, r: PhaseResult, stdout: Vec<u8>, stderr: Vec<u8>) -> PhaseReport {
    let limit = match r.limit.as_deref() {
        Some("wall") => Some(LimitHit::WallTime),
        Some("cpu") => Some(LimitHit::CpuTime),
        Some("output") => Some(LimitHit::Output),
        _ => None,
    };
    let (status, limit_hit) = classify(limit, r.error.is_some(), r.oom, r.exit_code, r.signal);
    PhaseReport {
        name: phase.name.clone(),
        status,
        exit_code: r.exit_code,
        signal: r.signal,
        limit_hit,
        stdout,
        stderr,
        stdout_truncated: r.stdout_truncated,
        stderr_truncated: r.stderr_truncated,
        cpu_time: Duration::from_nanos(r.cpu_ns),
        wall_time: Duration::from_nanos(r.wall_ns),
        memory_peak_bytes: r.peak_bytes,
        internal_error: r.error,
    }
}
