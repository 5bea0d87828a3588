//! The plan of a validated [`Submission`] and its run.
//!
//! A compiled language runs in two steps: the compile step in a sandbox of its own, whose
//! artifacts (every regular file it left in the work dir) are taken out and kept in the
//! [`CompileCache`]; then each case (the test cases, or the one run of `stdin` and `args`) in a
//! fresh sandbox holding those artifacts read-only, with the run limits. The same program
//! compiled again, by a resubmission or by twenty separate submissions of one judge, skips the
//! compiler. When the backend cannot take the artifacts out (a compile that left a symlink or
//! passed the caps) each case compiles and runs in one sandbox, as before the cache.
//!
//! A case's output is compared with its `expected_output` as it is produced
//! ([`crate::compare`]); its verdict is `accepted`, `wrong_answer`, or the run's status.
//!
//! Test cases run side by side when the caller can lend more sandbox slots than the one it
//! holds ([`Progress::extra_slot`]: the engine lends slots that are idle, never one a queued
//! request waits for), one sandbox per slot; the result is the same as one after another.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use isobox_sandbox::{
    Backend, Collect, Collected, ExecSpec, Limits, Phase, PhaseReport, RunIo, SandboxFile,
    SkipReason, Status, StdinPoll, Stream,
};

use crate::compare::Comparator;
use crate::compile_cache::{Compiled, Lookup};
use crate::dedup::{key_of, Key};
use crate::request::ExecuteRequest;
use crate::result::{
    new_id, ExecutionResult, Outcome, OutputFile, RunStatus, SkippedFile, Summary, TestResult,
    Validation, Verdict,
};
use crate::service::{env_of, Executor, RequestLimitsResolved};
use crate::submission::{CaseRef, Submission};
use crate::CoreError;

/// At most this many test cases of one request run at once, however many slots are idle.
const MAX_SIDE_BY_SIDE: usize = 8;

/// The limits of a phase from resolved request limits.
fn limits_of(l: &RequestLimitsResolved, cpu_millis: u32, max_file_bytes: u64, open: u64) -> Limits {
    Limits {
        wall: Duration::from_millis(l.timeout_ms),
        cpu: Duration::from_millis(l.cpu_time_ms),
        memory_bytes: l.memory_mb << 20,
        max_processes: l.max_processes,
        cpu_millis,
        max_output_bytes: l.max_output_bytes,
        max_file_bytes,
        max_open_files: open,
        stack_bytes: 8 << 20,
    }
}

/// The live side of a run beyond the backend's I/O ([`RunIo`]: the program's output, stdin,
/// cancellation): the compile step's outcome as soon as it is known, before the program
/// starts (not for a compile that runs in the program's sandbox).
pub trait Progress: RunIo {
    fn compiled(&mut self, _outcome: &Outcome) {}

    /// Another sandbox slot, when one is free now (never waits): the test cases then run side
    /// by side, one sandbox per slot held until they are done. `None` (the default): one case
    /// after another in the caller's one slot.
    fn extra_slot(&mut self) -> Option<Box<dyn Send>> {
        None
    }
}

impl Progress for isobox_sandbox::NoIo {}

/// How the compile step of a submission went.
enum Compile {
    /// Its artifacts, and whether they came from the cache.
    Done(Arc<Compiled>, bool),
    /// The compiler failed (or the sandbox did): no case runs.
    Failed(PhaseReport),
    /// It compiled but its artifacts could not be taken out: each case compiles again.
    InPlace,
}

impl Executor {
    /// The compile step of `sub`, with its compile limits (none for interpreted languages).
    fn compile_phase(&self, sub: &Submission) -> Option<Phase> {
        let compile = sub.language.compile.as_ref()?;
        let p = self.policy();
        Some(Phase {
            name: "compile".into(),
            argv: command(compile, sub),
            env: env_of(&sub.language, sub.runtime.as_deref()),
            stdin: vec![],
            limits: limits_of(
                &sub.compile_limits,
                2000,
                p.max_file_bytes.max(64 << 20),
                1024,
            ),
            continue_on_failure: false,
            stderr_to_stdout: false,
        })
    }

    /// The program of `sub` with a case's stdin and args, with the run limits.
    fn run_phase(&self, sub: &Submission, stdin: &[u8], args: &[String]) -> Phase {
        let mut argv = command(&sub.language.run, sub);
        argv.extend(args.iter().cloned());
        Phase {
            name: "run".into(),
            argv,
            env: env_of(&sub.language, sub.runtime.as_deref()),
            stdin: stdin.to_vec(),
            limits: limits_of(&sub.limits, 1000, self.policy().max_file_bytes, 256),
            continue_on_failure: false,
            stderr_to_stdout: sub.stderr_to_stdout,
        }
    }

    fn spec(&self, files: Vec<SandboxFile>, phases: Vec<Phase>) -> ExecSpec {
        let p = self.policy();
        ExecSpec {
            files,
            phases,
            tmpfs_bytes: p.tmpfs_bytes,
            tmpfs_inodes: p.tmpfs_inodes,
            collect: None,
        }
    }

    /// `sub` in one sandbox: its files, the compile step (if the language has one), then the
    /// program with the request's stdin and args. What the dedup key covers, and how a case
    /// runs when the compile step's artifacts cannot be taken out.
    pub fn run_spec(&self, sub: &Submission) -> ExecSpec {
        self.in_place_spec(sub, &sub.stdin, &sub.args)
    }

    fn in_place_spec(&self, sub: &Submission, stdin: &[u8], args: &[String]) -> ExecSpec {
        let mut phases: Vec<Phase> = self.compile_phase(sub).into_iter().collect();
        phases.push(self.run_phase(sub, stdin, args));
        self.spec(sub.files.clone(), phases)
    }

    /// The compile step of `sub` alone, taking every regular file it leaves (hidden ones
    /// aside) within the compile cache's per-entry bounds.
    pub fn compile_spec(&self, sub: &Submission) -> Option<ExecSpec> {
        let phase = self.compile_phase(sub)?;
        let cfg = self.compile_cache().config();
        let mut spec = self.spec(sub.files.clone(), vec![phase]);
        spec.collect = Some(Collect {
            patterns: vec!["**".into()],
            max_files: cfg.max_entry_files,
            max_bytes: cfg.max_entry_bytes,
        });
        Some(spec)
    }

    /// The spec of a syntax check of `sub`: its files and the language's check command with
    /// the compile step's limits (or the run's), nothing run.
    pub fn check_spec(&self, sub: &Submission) -> Result<ExecSpec, CoreError> {
        let Some(check) = sub.language.check_command() else {
            return Err(CoreError::NoCheck(sub.language.name.clone()));
        };
        let mut spec = self.run_spec(sub);
        let mut phase = spec.phases.remove(0);
        phase.name = "check".into();
        phase.argv = command(check, sub);
        phase.stdin = Vec::new();
        spec.phases = vec![phase];
        Ok(spec)
    }

    /// The compile-cache key of a compile spec: everything that decides its artifacts, and
    /// the scope (a caller, or `None` for entries shared by everyone).
    fn compile_key(
        &self,
        sub: &Submission,
        backend: &dyn Backend,
        spec: &ExecSpec,
        scope: Option<&str>,
    ) -> Key {
        spec_key(b"isobox-compile-v1", backend.name(), sub, spec, scope, &[])
    }

    /// The compile step of `sub`: from the cache, or run (blocking) and kept.
    fn compile(
        &self,
        sub: &Submission,
        backend: &dyn Backend,
        scope: Option<&str>,
        io: &mut dyn Progress,
    ) -> Result<Compile, CoreError> {
        let spec = self
            .compile_spec(sub)
            .ok_or_else(|| CoreError::Config("a compile step without a compiler".into()))?;
        let key = self.compile_key(sub, backend, &spec, scope);
        let wait = Duration::from_millis(sub.compile_limits.timeout_ms) + Duration::from_secs(5);
        let guard = match self.compile_cache().lookup(key, wait) {
            Lookup::Hit(c) => return Ok(Compile::Done(c, true)),
            Lookup::Miss(guard) => guard,
        };
        let mut cio = CancelOnly(io);
        let report = backend
            .execute_io(&spec, &mut cio)
            .map_err(CoreError::Sandbox)?;
        let collected = report.collected;
        let Some(phase) = report.phases.into_iter().next() else {
            return Err(CoreError::Config("the compile step did not run".into()));
        };
        if phase.status != Status::Ok {
            return Ok(Compile::Failed(phase));
        }
        match collected {
            Some(c) if c.skipped.is_empty() => {
                let bytes = c.files.iter().map(|f| f.content.len() as u64).sum();
                let files = c
                    .files
                    .into_iter()
                    .map(|f| SandboxFile {
                        path: f.path,
                        content: f.content,
                        executable: f.executable,
                        readonly: true,
                    })
                    .collect();
                let compiled = Compiled {
                    files,
                    report: phase,
                    bytes,
                };
                Ok(Compile::Done(
                    self.compile_cache().insert(&guard, compiled),
                    false,
                ))
            }
            _ => Ok(Compile::InPlace),
        }
    }

    /// Runs `sub` (blocking): the compile step once (or from the compile cache, entries scoped
    /// to `scope`), then each case in a fresh sandbox; live output, stdin while running and
    /// cancellation through `io` (the program's output only, of a run without tests).
    pub fn run(
        &self,
        sub: &Submission,
        scope: Option<&str>,
        io: &mut dyn Progress,
    ) -> Result<ExecutionResult, CoreError> {
        let b64 = sub.base64;
        let backend = self.backend_of(sub.runtime.as_ref())?;
        let backend = backend.as_ref();
        let mut result = ExecutionResult {
            id: new_id(),
            language: sub.language.name.clone(),
            version: sub.version.clone(),
            encoding: b64.then(|| "base64".to_string()),
            ..ExecutionResult::default()
        };
        let mut artifacts = None;
        let mut in_place = false;
        if sub.language.compiled() {
            match self.compile(sub, backend, scope, io)? {
                Compile::Done(c, cached) => {
                    let outcome = Outcome::of(&c.report, b64);
                    io.compiled(&outcome);
                    result.compile = Some(outcome);
                    result.compile_cached = cached;
                    artifacts = Some(c);
                }
                Compile::Failed(report) => {
                    compile_failed(sub, &mut result, &report);
                    if let Some(c) = &result.compile {
                        io.compiled(c);
                    }
                    return Ok(result);
                }
                Compile::InPlace => in_place = true,
            }
        }
        let cases = sub.cases();
        let mut tests = Vec::with_capacity(cases.len());
        let mut failed = false;
        let mut extra = Vec::new();
        if sub.tests.is_some() && !in_place && sub.outputs.is_empty() {
            while extra.len() + 1 < cases.len().min(MAX_SIDE_BY_SIDE) {
                let Some(slot) = io.extra_slot() else { break };
                extra.push(slot);
            }
        }
        if !extra.is_empty() {
            let width = 1 + extra.len();
            let (all, internal) =
                self.run_cases_side_by_side(sub, backend, artifacts.as_deref(), &cases, width, io)?;
            drop(extra);
            tests = all;
            result.internal_message = internal;
        }
        // One after another (all of them, or none when they ran side by side above).
        let done = tests.len();
        for case in cases.into_iter().skip(done) {
            if failed && sub.stop_on_failure {
                tests.push(TestResult::skipped(case.name));
                continue;
            }
            let (mut spec, run_index) = match &artifacts {
                Some(c) => {
                    let phase = self.run_phase(sub, case.stdin, case.args);
                    (self.spec(c.files.clone(), vec![phase]), 0)
                }
                None if in_place => (self.in_place_spec(sub, case.stdin, case.args), 1),
                None => {
                    let phase = self.run_phase(sub, case.stdin, case.args);
                    (self.spec(sub.files.clone(), vec![phase]), 0)
                }
            };
            if !sub.outputs.is_empty() {
                let p = self.policy();
                spec.collect = Some(Collect {
                    patterns: sub.outputs.clone(),
                    max_files: p.max_output_files,
                    max_bytes: p.max_output_files_bytes,
                });
            }
            let mut cio = CaseIo {
                inner: &mut *io,
                run_index,
                forward: sub.tests.is_none(),
                compare: case.expected.map(|e| Comparator::new(e, sub.compare)),
            };
            let report = backend
                .execute_io(&spec, &mut cio)
                .map_err(CoreError::Sandbox)?;
            let equal = cio.compare.take().map(Comparator::finish);
            let mut phases = report.phases.iter();
            if in_place {
                let Some(c) = phases.next() else {
                    return Err(CoreError::Config("the compile step did not run".into()));
                };
                if c.status != Status::Ok {
                    compile_failed(sub, &mut result, c);
                    return Ok(result);
                }
                if result.compile.is_none() {
                    result.compile = Some(Outcome::of(c, b64));
                }
            }
            let Some(r) = phases.next() else {
                return Err(CoreError::Config("the program did not run".into()));
            };
            if r.internal_error.is_some() {
                result.internal_message = r.internal_error.clone();
            }
            let run = Outcome::of(r, b64);
            let verdict = Verdict::of_run(run.status, equal);
            failed |= verdict != Verdict::Accepted;
            if sub.tests.is_none() {
                result.run = run;
                if let Some(c) = report.collected {
                    let (files, skipped) = output_files(c);
                    result.files = Some(files);
                    result.files_skipped = skipped;
                } else if !sub.outputs.is_empty() {
                    result.files = Some(Vec::new());
                }
                return Ok(result);
            }
            tests.push(TestResult {
                name: case.name.to_string(),
                verdict,
                run,
            });
        }
        let summary = summarize(&tests);
        result.run = Outcome {
            status: tests
                .iter()
                .map(|t| t.run.status)
                .find(|s| *s != RunStatus::Ok)
                .unwrap_or(RunStatus::Ok),
            cpu_time_ms: summary.cpu_time_ms,
            wall_time_ms: summary.wall_time_ms,
            memory_peak_bytes: summary.memory_peak_bytes,
            ..Outcome::default()
        };
        result.summary = Some(summary);
        result.tests = Some(tests);
        Ok(result)
    }

    /// The test cases of `sub` (none compiled in place), `width` sandboxes at a time, each in
    /// the order of its index, with the same results as one after another: with
    /// `stop_on_failure` every case after the first one that fails is `skipped`, also one that
    /// already ran beside it; the first error in the order of the cases is the error. `io`'s
    /// cancellation reaches the running cases within a tick. Also returns the sandbox's
    /// message of an internal error, if a case had one.
    fn run_cases_side_by_side(
        &self,
        sub: &Submission,
        backend: &dyn Backend,
        artifacts: Option<&Compiled>,
        cases: &[CaseRef<'_>],
        width: usize,
        io: &mut dyn Progress,
    ) -> Result<(Vec<TestResult>, Option<String>), CoreError> {
        type CaseOutcome = Result<(TestResult, Option<String>), CoreError>;
        let next = AtomicUsize::new(0);
        let first_failure = AtomicUsize::new(usize::MAX);
        let stop = AtomicBool::new(false);
        let outcomes: Vec<Mutex<Option<CaseOutcome>>> =
            cases.iter().map(|_| Mutex::new(None)).collect();
        let (finished, workers_done) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            for _ in 0..width {
                let finished = finished.clone();
                let (next, first_failure, stop, outcomes) =
                    (&next, &first_failure, &stop, &outcomes);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= cases.len() || stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if sub.stop_on_failure && i > first_failure.load(Ordering::SeqCst) {
                            continue;
                        }
                        let out = self.run_case(sub, backend, artifacts, &cases[i], stop);
                        match &out {
                            Ok((t, _)) if t.verdict == Verdict::Accepted => {}
                            Ok(_) => {
                                first_failure.fetch_min(i, Ordering::SeqCst);
                            }
                            Err(_) => stop.store(true, Ordering::SeqCst),
                        }
                        *outcomes[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
                    }
                    let _ = finished.send(());
                });
            }
            drop(finished);
            loop {
                match workers_done.recv_timeout(Duration::from_millis(10)) {
                    Ok(()) => {}
                    Err(RecvTimeoutError::Timeout) => {
                        if io.cancelled() {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        let first_failure = first_failure.into_inner();
        let mut tests = Vec::with_capacity(cases.len());
        let mut internal = None;
        for (i, (case, out)) in cases.iter().zip(outcomes).enumerate() {
            let out = out.into_inner().unwrap_or_else(|p| p.into_inner());
            let after_failure = sub.stop_on_failure && i > first_failure;
            match out {
                Some(Err(e)) if !after_failure => return Err(e),
                Some(Ok((t, msg))) if !after_failure => {
                    internal = internal.or(msg);
                    tests.push(t);
                }
                // After the first failure (stop_on_failure), or not run (cancelled).
                _ => tests.push(TestResult::skipped(case.name)),
            }
        }
        Ok((tests, internal))
    }

    /// One test case in a fresh sandbox (with the compile step's artifacts, if any): its
    /// verdict, and the sandbox's message of an internal error. Killed once `stop` is set.
    fn run_case(
        &self,
        sub: &Submission,
        backend: &dyn Backend,
        artifacts: Option<&Compiled>,
        case: &CaseRef<'_>,
        stop: &AtomicBool,
    ) -> Result<(TestResult, Option<String>), CoreError> {
        let files = match artifacts {
            Some(c) => c.files.clone(),
            None => sub.files.clone(),
        };
        let spec = self.spec(files, vec![self.run_phase(sub, case.stdin, case.args)]);
        let mut sio = SideIo {
            compare: case.expected.map(|e| Comparator::new(e, sub.compare)),
            stop,
        };
        let report = backend
            .execute_io(&spec, &mut sio)
            .map_err(CoreError::Sandbox)?;
        let equal = sio.compare.take().map(Comparator::finish);
        let Some(r) = report.phases.first() else {
            return Err(CoreError::Config("the program did not run".into()));
        };
        let run = Outcome::of(r, sub.base64);
        let test = TestResult {
            name: case.name.to_string(),
            verdict: Verdict::of_run(run.status, equal),
            run,
        };
        Ok((test, r.internal_error.clone()))
    }

    /// Runs the syntax check of `spec` (made by [`Executor::check_spec`] for `sub`; blocking).
    pub fn syntax_check(&self, sub: &Submission, spec: &ExecSpec) -> Result<Validation, CoreError> {
        let report = self
            .backend_of(sub.runtime.as_ref())?
            .execute(spec)
            .map_err(CoreError::Sandbox)?;
        Ok(Validation::from_report(&report))
    }

    /// Validates, runs and reports (blocking): `isobox run`.
    pub fn execute(&self, req: &ExecuteRequest) -> Result<ExecutionResult, CoreError> {
        let sub = self.submission(req)?;
        self.run(&sub, None, &mut isobox_sandbox::NoIo)
    }
}

/// The result of a submission whose compile step failed: `compile_error` (or the sandbox's
/// `internal_error`), every test case `compile_error`.
fn compile_failed(sub: &Submission, result: &mut ExecutionResult, report: &PhaseReport) {
    result.compile = Some(Outcome::of(report, sub.base64));
    result.compile_cached = false;
    result.run = Outcome::default();
    if report.status == Status::InternalError {
        result.internal_message = report.internal_error.clone();
        return;
    }
    result.run.status = RunStatus::CompileError;
    if let Some(cases) = &sub.tests {
        let tests: Vec<TestResult> = cases
            .iter()
            .map(|c| TestResult {
                name: c.name.clone(),
                verdict: Verdict::CompileError,
                run: Outcome {
                    status: RunStatus::CompileError,
                    ..Outcome::default()
                },
            })
            .collect();
        let mut summary = summarize(&tests);
        summary.verdict = Verdict::CompileError;
        result.summary = Some(summary);
        result.tests = Some(tests);
    }
}

/// The totals of `tests`.
fn summarize(tests: &[TestResult]) -> Summary {
    let count = |v: Verdict| tests.iter().filter(|t| t.verdict == v).count();
    let skipped = count(Verdict::Skipped);
    let passed = count(Verdict::Accepted);
    Summary {
        verdict: tests
            .iter()
            .map(|t| t.verdict)
            .find(|v| *v != Verdict::Accepted)
            .unwrap_or(Verdict::Accepted),
        passed,
        failed: tests.len() - passed - skipped,
        skipped,
        total: tests.len(),
        wall_time_ms: tests.iter().map(|t| t.run.wall_time_ms).sum(),
        cpu_time_ms: tests.iter().map(|t| t.run.cpu_time_ms).sum(),
        memory_peak_bytes: tests
            .iter()
            .map(|t| t.run.memory_peak_bytes)
            .max()
            .unwrap_or(0),
    }
}

/// The result files of a run, base64, and what was not taken.
fn output_files(c: Collected) -> (Vec<OutputFile>, Vec<SkippedFile>) {
    let files = c
        .files
        .into_iter()
        .map(|f| OutputFile {
            size: f.content.len() as u64,
            content: base64::engine::general_purpose::STANDARD.encode(&f.content),
            name: f.path,
        })
        .collect();
    let skipped = c
        .skipped
        .into_iter()
        .map(|s| SkippedFile {
            name: s.path,
            reason: match s.reason {
                SkipReason::Symlink => "symlink",
                SkipReason::NotRegular => "not_regular",
                SkipReason::TooManyFiles => "too_many_files",
                SkipReason::TooLarge => "too_large",
            }
            .to_string(),
        })
        .collect();
    (files, skipped)
}

/// The live I/O of one case: the run phase's stdout into the case's comparator, and (for a
/// run without tests) its output and stdin to and from the caller's I/O, as phase 0.
struct CaseIo<'a, 'e> {
    inner: &'a mut dyn Progress,
    run_index: usize,
    forward: bool,
    compare: Option<Comparator<'e>>,
}

impl RunIo for CaseIo<'_, '_> {
    fn output(&mut self, phase: usize, stream: Stream, chunk: &[u8]) {
        if phase != self.run_index {
            return;
        }
        if stream == Stream::Stdout {
            if let Some(c) = &mut self.compare {
                c.feed(chunk);
            }
        }
        if self.forward {
            self.inner.output(0, stream, chunk);
        }
    }

    fn stdin(&mut self, phase: usize) -> StdinPoll {
        if self.forward && phase == self.run_index {
            self.inner.stdin(0)
        } else {
            StdinPoll::Closed
        }
    }

    fn cancelled(&mut self) -> bool {
        self.inner.cancelled()
    }
}

/// The I/O of a test case run beside others: its stdout into its comparator; killed when
/// `stop` is set (the caller cancelled, or another case failed in the sandbox).
struct SideIo<'a, 'e> {
    compare: Option<Comparator<'e>>,
    stop: &'a AtomicBool,
}

impl RunIo for SideIo<'_, '_> {
    fn output(&mut self, phase: usize, stream: Stream, chunk: &[u8]) {
        if let (0, Stream::Stdout, Some(c)) = (phase, stream, &mut self.compare) {
            c.feed(chunk);
        }
    }

    fn cancelled(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The caller's cancellation, nothing else: the I/O of a compile step.
struct CancelOnly<'a>(&'a mut dyn Progress);

impl RunIo for CancelOnly<'_> {
    fn cancelled(&mut self) -> bool {
        self.0.cancelled()
    }
}

/// A key over everything that decides what `spec` does for `sub`: a tag (which cache), the
/// backend, the language and its version, the scope (`caller:<id>`, or `global`), the work
/// dir's size, every file, every phase (argv, environment, stdin, limits) and `extra`. The
/// bytes of files, stdin and `extra` are hashed where they are, not copied.
pub(crate) fn spec_key(
    tag: &[u8],
    backend: &str,
    sub: &Submission,
    spec: &ExecSpec,
    scope: Option<&str>,
    extra: &[Cow<'_, [u8]>],
) -> Key {
    let runtime = sub.runtime.as_ref().map_or_else(
        || "host".to_string(),
        |r| format!("{} {}", r.name(), r.runtime.manifest.hash),
    );
    let owned = |s: String| Cow::Owned(s.into_bytes());
    let mut parts: Vec<Cow<'_, [u8]>> = vec![
        Cow::Borrowed(tag),
        Cow::Borrowed(backend.as_bytes()),
        owned(runtime),
        Cow::Borrowed(sub.language.name.as_bytes()),
        Cow::Borrowed(sub.version.as_bytes()),
        owned(scope.map_or_else(|| "global".into(), |c| format!("caller:{c}"))),
        owned(format!("{} {}", spec.tmpfs_bytes, spec.tmpfs_inodes)),
    ];
    for f in &spec.files {
        parts.push(Cow::Borrowed(f.path.as_bytes()));
        parts.push(Cow::Borrowed(&f.content));
        parts.push(Cow::Owned(vec![
            u8::from(f.executable),
            u8::from(f.readonly),
        ]));
    }
    for p in &spec.phases {
        parts.push(Cow::Borrowed(p.name.as_bytes()));
        parts.push(owned(p.argv.join("\0")));
        parts.push(owned(
            p.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\0"),
        ));
        parts.push(Cow::Borrowed(&p.stdin));
        parts.push(owned(format!(
            "{:?} {} {}",
            p.limits, p.continue_on_failure, p.stderr_to_stdout
        )));
    }
    parts.extend(extra.iter().map(|e| Cow::Borrowed(&e[..])));
    let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    key_of(&refs)
}

/// A command of the table with its placeholders filled in: `{file}` (the entry file),
/// `{main}`, `{memory_mb}`, and `{sources}`, an argument of its own that becomes one argument
/// per submitted file in the work dir's top level with one of the language's source extensions
/// (what a shell glob `*.c` matched), sorted, each as `./<name>`; `{env:NAME}`, also an argument
/// of its own, becomes the whitespace-separated words of the variable NAME of the program's
/// environment (the language's, then its runtime's; none when unset). No shell ever sees a
/// file name: a language that needs one passes them as `"$@"`.
pub(crate) fn command(argv: &[String], sub: &Submission) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + sub.files.len());
    for a in argv {
        if a == crate::languages::SOURCES {
            out.extend(sources(sub));
            continue;
        }
        if let Some(name) = a.strip_prefix("{env:").and_then(|n| n.strip_suffix('}')) {
            let env = env_of(&sub.language, sub.runtime.as_deref());
            if let Some((_, v)) = env.iter().find(|(k, _)| k == name) {
                out.extend(v.split_whitespace().map(str::to_string));
            }
            continue;
        }
        if a == crate::languages::COMPILE_ARGS {
            out.extend(sub.compile_args.iter().cloned());
            continue;
        }
        out.push(
            a.replace("{file}", &sub.entry)
                .replace("{main}", &sub.main)
                .replace("{memory_mb}", &sub.limits.memory_mb.to_string()),
        );
    }
    out
}

/// The `{sources}` of `sub`: its top-level files with a source extension, sorted, as `./name`.
fn sources(sub: &Submission) -> Vec<String> {
    let exts = sub.language.source_extensions();
    let mut names: Vec<&str> = sub
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| !p.contains('/'))
        .filter(|p| {
            p.rsplit_once('.')
                .is_some_and(|(stem, ext)| !stem.is_empty() && exts.iter().any(|e| e == ext))
        })
        .collect();
    names.sort_unstable();
    names.into_iter().map(|n| format!("./{n}")).collect()
}
