//! Warm compilers and VMs (#19): what the runtimes' precompiled headers and class-data-sharing
//! archives save. For each g++ runtime, a C++ hello world that includes `<bits/stdc++.h>`,
//! compiled and run by `isobox run` (the runtime's sandbox, its .gch files used) against plain
//! `g++` of the same root with the same flags (its .gch files masked); for each Java runtime a
//! hello world through `isobox run` (the javac archive) against plain `javac` + `java` of the
//! same root. Plain runs are the root's toolchain in a chroot of their own (a private mount
//! namespace with /proc, /dev and a work dir bound in): no sandbox, no limits. Prints a Markdown
//! section with PASS/MISS lines (bench/run appends it to BENCHMARKS.md).
//!
//! `cargo bench --bench warm` (as root, with the runtimes built: `isobox runtime build
//! gcc-bullseye gcc-bookworm gcc-trixie java-bullseye java-bookworm java-trixie`).
//! `ISOBOX_BENCH_REPS` (default 5) runs of each, medians reported.

mod common;
use common::{env_num, ms};

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CPP: &str = "#include <bits/stdc++.h>\nusing namespace std;\nint main() {\n    vector<int> v{3, 1, 2};\n    sort(v.begin(), v.end());\n    cout << v[0] << \"\\n\";\n}\n";
const JAVA: &str = "public class Main {\n    public static void main(String[] args) {\n        System.out.println(\"hello\");\n    }\n}\n";

struct Case {
    runtime: &'static str,
    /// The file `isobox run` gets (also the plain run's source).
    file: &'static str,
    source: &'static str,
    /// The plain toolchain, as one shell line in the root's /tmp.
    plain: &'static str,
    expect: &'static str,
    /// Files of the root hidden from the plain run (the archives it must not use).
    masked: fn(&Path) -> Vec<PathBuf>,
    target: f64,
}

fn gch_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join("usr/include")];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                dirs.push(e.path());
            } else if t.is_file() && e.file_name().to_string_lossy().ends_with(".gch") {
                out.push(e.path());
            }
        }
    }
    out
}

fn cases() -> Vec<Case> {
    let gxx = |runtime| Case {
        runtime,
        file: "main.cpp",
        source: CPP,
        plain: "g++ -std=gnu++17 -O2 -pipe -o main main.cpp && ./main",
        expect: "1\n",
        masked: gch_files,
        target: 3.0,
    };
    let java = |runtime| Case {
        runtime,
        file: "Main.java",
        source: JAVA,
        plain: "javac Main.java && java -cp . Main",
        expect: "hello\n",
        masked: |_| Vec::new(),
        target: 1.5,
    };
    vec![
        gxx("gcc-bullseye"),
        gxx("gcc-bookworm"),
        gxx("gcc-trixie"),
        java("java-bullseye"),
        java("java-bookworm"),
        java("java-trixie"),
    ]
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in a path")
}

/// `line` by the root's own shell in a chroot of its own: a private mount namespace with the
/// host's /proc and /dev and `work` as /tmp bound in, `masked` files covered by /dev/null.
fn plain(root: &Path, work: &Path, line: &str, masked: &[PathBuf]) -> Result<Duration, String> {
    let binds: Vec<(CString, CString)> = [("/proc", "proc"), ("/dev", "dev")]
        .iter()
        .map(|(src, dst)| (cstr(Path::new(src)), cstr(&root.join(dst))))
        .chain(std::iter::once((cstr(work), cstr(&root.join("tmp")))))
        .collect();
    let masked: Vec<CString> = masked.iter().map(|p| cstr(p)).collect();
    let root_c = cstr(root);
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", line])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/tmp")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null());
    // SAFETY: between fork and exec the closure only makes system calls with C strings built
    // before the fork (no allocation); the mounts happen in the child's own mount namespace.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return fail();
            }
            for (src, dst) in &binds {
                let flags = libc::MS_BIND | libc::MS_REC;
                if libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
            }
            for m in &masked {
                if libc::mount(
                    c"/dev/null".as_ptr(),
                    m.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
            }
            if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/tmp".as_ptr()) != 0 {
                return fail();
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let out = cmd.output().map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "plain run failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

fn isobox(bin: &Path, work: &Path, case: &Case) -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new(bin)
        .args([
            "run",
            case.file,
            "--version",
            case.runtime,
            "--backend",
            "native",
        ])
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if !out.status.success() || out.stdout != case.expect.as_bytes() {
        return Err(format!(
            "isobox run: {} stdout {:?} stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    ms(v[v.len() / 2])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let reps: usize = env_num("ISOBOX_BENCH_REPS", 5).max(1);
    let dir = std::env::var_os("ISOBOX_RUNTIMES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/isobox/runtimes"));
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/isobox");
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for case in cases() {
        let root = dir.join(case.runtime).join("root");
        let what = if case.file.ends_with(".cpp") {
            "C++ `#include <bits/stdc++.h>` hello compile + run"
        } else {
            "Java hello compile + run"
        };
        if !root.is_dir() {
            targets.push(format!(
                "SKIP {what} faster than plain, {}: not built",
                case.runtime
            ));
            continue;
        }
        let work = tempdir(case.runtime);
        std::fs::write(work.join(case.file), case.source).expect("write the source");
        let masked = (case.masked)(&root);
        let (mut p, mut i) = (Vec::new(), Vec::new());
        let mut failure = None;
        // One of each first (page cache), then alternating.
        for n in 0..=reps {
            let a = plain(&root, &work, case.plain, &masked);
            let b = isobox(&bin, &work, &case);
            match (a, b) {
                (Ok(a), Ok(b)) if n > 0 => {
                    p.push(a);
                    i.push(b);
                }
                (Ok(_), Ok(_)) => {}
                (Err(e), _) | (_, Err(e)) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&work);
        if let Some(e) = failure {
            targets.push(format!("MISS {what}, {}: failed: {e}", case.runtime));
            continue;
        }
        let (p, i) = (median(p), median(i));
        let ratio = p / i;
        rows.push(format!(
            "| {} | {} | {p:.0} | {i:.0} | {ratio:.1}x |",
            case.runtime, case.file
        ));
        targets.push(format!(
            "{} {what} >= {}x faster than plain, {}: {p:.0} ms plain / {i:.0} ms isobox run = {ratio:.1}x",
            if ratio >= case.target { "PASS" } else { "MISS" },
            case.target,
            case.runtime
        ));
    }
    println!("## Warm compilers and VMs (runtimes' precompiled headers and archives)");
    println!();
    println!("`cargo bench --bench warm`: `isobox run FILE --version RUNTIME` (the CLI, a cold sandbox, the runtime's precompiled headers or javac archive) against the same root's plain toolchain in a chroot (no sandbox; the .gch files masked): plain `g++ -std=gnu++17 -O2 -pipe -o main main.cpp && ./main`, plain `javac Main.java && java -cp . Main`. Medians of {reps} runs each, alternating.");
    println!();
    println!("| runtime | file | plain ms | isobox run ms | faster |");
    println!("|---|---|---:|---:|---:|");
    for r in &rows {
        println!("{r}");
    }
    println!();
    println!("```");
    for t in &targets {
        println!("{t}");
    }
    println!("```");
}

fn tempdir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("warm-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("create the work dir");
    // The plain run's shell runs as root in it; isobox copies the files out of it.
    p
}
