//! `isobox run --tests`: test cases from a directory or a JSON file, the verdict table, and
//! `--output` files written to the host.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use isobox_core::{ExecutionResult, OutputFile, SkippedFile, TestCase, Verdict};

/// Test cases from `path`: a JSON array of the REST API's test cases, or a directory whose
/// `NAME.in` files are the stdin of case NAME and `NAME.out` (or `NAME.ans`) its expected
/// output, cases in name order (`2` before `10`).
pub fn load_tests(path: &Path) -> anyhow::Result<Vec<TestCase>> {
    if !path.is_dir() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON array of test cases", path.display()));
    }
    let mut names: Vec<String> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".in").map(str::to_string)
        })
        .collect();
    names.sort_by_key(|n| natural(n));
    if names.is_empty() {
        bail!("{} holds no NAME.in files", path.display());
    }
    let read = |p: &Path| -> anyhow::Result<String> {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {} as text", p.display()))
    };
    names
        .into_iter()
        .map(|name| {
            let expected = ["out", "ans"]
                .iter()
                .map(|ext| path.join(format!("{name}.{ext}")))
                .find(|p| p.is_file())
                .map(|p| read(&p))
                .transpose()?;
            Ok(TestCase {
                stdin: Some(read(&path.join(format!("{name}.in")))?),
                expected_output: expected,
                name: Some(name),
                args: None,
            })
        })
        .collect()
}

/// Sort key putting `2` before `10`: numbers by value, then the name.
fn natural(name: &str) -> (u64, String) {
    (name.parse().unwrap_or(u64::MAX), name.to_string())
}

/// Prints one line per case and the summary; 0 when every case was accepted, 1 otherwise
/// (125 when the sandbox failed).
pub fn report(r: &ExecutionResult) -> anyhow::Result<ExitCode> {
    if let Some(c) = r.compile.as_ref().filter(|_| r.status == "compile_error") {
        eprint!("{}{}", c.stdout, c.stderr);
    }
    for t in r.tests.iter().flatten() {
        println!(
            "{:<16} {:<14} {:>6} ms {:>8} KiB",
            t.name,
            t.verdict.as_str(),
            t.run.wall_time_ms,
            t.run.memory_peak_bytes >> 10
        );
    }
    let Some(s) = &r.summary else {
        return Ok(ExitCode::from(125));
    };
    println!(
        "{}: {} passed, {} failed, {} skipped of {} ({} ms)",
        s.verdict.as_str(),
        s.passed,
        s.failed,
        s.skipped,
        s.total,
        s.wall_time_ms
    );
    Ok(match s.verdict {
        Verdict::Accepted => ExitCode::SUCCESS,
        Verdict::InternalError => ExitCode::from(125),
        _ => ExitCode::from(1),
    })
}

/// Writes the returned files under `dir` (names are relative and plain: the sandbox's
/// collector made them), never through a symlink already there; says what was skipped.
pub fn write_outputs(
    dir: &Path,
    files: &[OutputFile],
    skipped: &[SkippedFile],
) -> anyhow::Result<()> {
    use base64::Engine as _;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for f in files {
        let rel = Path::new(&f.name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("refusing the output file name {:?}", f.name);
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let bytes = base64::engine::general_purpose::STANDARD.decode(&f.content)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut out| out.write_all(&bytes))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("isobox: wrote {} ({} bytes)", path.display(), bytes.len());
    }
    for s in skipped {
        eprintln!("isobox: not returned: {} ({})", s.name, s.reason);
    }
    Ok(())
}
