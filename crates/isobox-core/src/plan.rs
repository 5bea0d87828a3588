//! The plan of a validated [`Submission`]: the backend's spec (the compile step with the
//! language's compile limits, then the program with the submission's limits, stdin and args;
//! or the language's syntax check), its run on the backend, and the report turned into the
//! public result.

use std::time::Duration;

use isobox_sandbox::{ExecReport, ExecSpec, Limits, Phase, Status};

use crate::request::ExecuteRequest;
use crate::result::{new_id, ExecutionResult, Outcome, RunStatus, Validation};
use crate::service::{env_of, Executor};
use crate::submission::Submission;
use crate::CoreError;

impl Executor {
    /// The spec of a run of `sub`: its files, the compile step (if the language has one) with
    /// the compile limits, then the program with the submission's limits, stdin and args.
    pub fn run_spec(&self, sub: &Submission) -> ExecSpec {
        let lang = &sub.language;
        let p = self.policy();
        let limits = &sub.limits;
        let env = env_of(lang);
        let mut phases = Vec::with_capacity(2);
        if let Some(compile) = &lang.compile {
            let c = &lang.compile_limits;
            let wall = c.timeout_ms.unwrap_or(20_000);
            phases.push(Phase {
                name: "compile".into(),
                argv: command(compile, sub),
                env: env.clone(),
                stdin: vec![],
                limits: Limits {
                    wall: Duration::from_millis(wall),
                    cpu: Duration::from_millis(c.cpu_time_ms.unwrap_or(wall)),
                    memory_bytes: c.memory_mb.unwrap_or(512) << 20,
                    max_processes: c.max_processes.unwrap_or(64),
                    cpu_millis: 2000,
                    max_output_bytes: 64 * 1024,
                    max_file_bytes: p.max_file_bytes.max(64 << 20),
                    max_open_files: 1024,
                    stack_bytes: 8 << 20,
                },
                continue_on_failure: false,
                stderr_to_stdout: false,
            });
        }
        let mut argv = command(&lang.run, sub);
        argv.extend(sub.args.iter().cloned());
        phases.push(Phase {
            name: "run".into(),
            argv,
            env,
            stdin: sub.stdin.clone(),
            limits: Limits {
                wall: Duration::from_millis(limits.timeout_ms),
                cpu: Duration::from_millis(limits.cpu_time_ms),
                memory_bytes: limits.memory_mb << 20,
                max_processes: limits.max_processes,
                cpu_millis: 1000,
                max_output_bytes: limits.max_output_bytes,
                max_file_bytes: p.max_file_bytes,
                max_open_files: 256,
                stack_bytes: 8 << 20,
            },
            continue_on_failure: false,
            stderr_to_stdout: false,
        });
        ExecSpec {
            files: sub.files.clone(),
            phases,
            tmpfs_bytes: p.tmpfs_bytes,
            tmpfs_inodes: p.tmpfs_inodes,
            collect: None,
        }
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

    /// Runs `sub` (blocking) with live output, stdin while running and cancellation through
    /// `io`.
    pub fn run(
        &self,
        sub: &Submission,
        spec: &ExecSpec,
        io: &mut dyn isobox_sandbox::RunIo,
    ) -> Result<ExecutionResult, CoreError> {
        let report = self
            .backend()
            .execute_io(spec, io)
            .map_err(CoreError::Sandbox)?;
        Ok(to_result(sub, &report))
    }

    /// Runs the syntax check of `spec` (made by [`Executor::check_spec`]; blocking).
    pub fn syntax_check(&self, spec: &ExecSpec) -> Result<Validation, CoreError> {
        let report = self.backend().execute(spec).map_err(CoreError::Sandbox)?;
        Ok(Validation::from_report(&report))
    }

    /// Validates, runs and reports (blocking): `isobox run`.
    pub fn execute(&self, req: &ExecuteRequest) -> Result<ExecutionResult, CoreError> {
        let sub = self.submission(req)?;
        let spec = self.run_spec(&sub);
        self.run(&sub, &spec, &mut isobox_sandbox::NoIo)
    }
}

/// A command of the table with its placeholders filled in: `{file}` (the entry file),
/// `{main}`, `{memory_mb}`, and `{sources}`, an argument of its own that becomes one argument
/// per submitted file in the work dir's top level with one of the language's source extensions
/// (what a shell glob `*.c` matched), sorted, each as `./<name>`. No shell ever sees a file name:
/// a language that needs one passes them as `"$@"`.
pub(crate) fn command(argv: &[String], sub: &Submission) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + sub.files.len());
    for a in argv {
        if a == crate::languages::SOURCES {
            out.extend(sources(sub));
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

/// Turns a backend report into the public result.
pub fn to_result(sub: &Submission, report: &ExecReport) -> ExecutionResult {
    let lang = &sub.language;
    let mut result = ExecutionResult {
        id: new_id(),
        language: lang.name.clone(),
        version: sub.version.clone(),
        run: Outcome {
            status: RunStatus::InternalError,
            ..Outcome::default()
        },
        compile: None,
        cached: false,
        internal_message: None,
        ..ExecutionResult::default()
    };
    let mut phases = report.phases.iter();
    if lang.compiled() {
        let Some(c) = phases.next() else {
            result.internal_message = Some("the compile step did not run".into());
            return result;
        };
        result.compile = Some(Outcome::from(c));
        if c.status == Status::InternalError {
            result.internal_message = c.internal_error.clone();
            return result;
        }
        if c.status != Status::Ok {
            result.run.status = RunStatus::CompileError;
            return result;
        }
    }
    let Some(r) = phases.next() else {
        result.internal_message = Some("the program did not run".into());
        return result;
    };
    result.run = Outcome::from(r);
    result.internal_message = r.internal_error.clone();
    result
}
