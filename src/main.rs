//! `isobox`: the command line. `run`, `languages` and `selftest` work without a server, in the
//! same sandbox the server uses.

mod envscrub;
mod judge;
mod runtime;
mod selftest;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use isobox_core::{ExecuteRequest, Executor, LanguageTable, Policy, RequestFile, RequestLimits};
use isobox_sandbox::{Backend, DockerBackend, NativeBackend, NativeConfig, RootFs};

#[derive(Parser)]
#[command(
    name = "isobox",
    version,
    about = "Run untrusted code in an isolated sandbox"
)]
struct Cli {
    /// Language table replacing the built-in one (TOML).
    ///
    /// For `serve`, `worker` and `check-config`, given here it is a setting like their own
    /// flags: over ISOBOX_LANGUAGES in the environment and the configuration file.
    #[arg(long, global = true, env = "ISOBOX_LANGUAGES", value_name = "FILE")]
    languages_file: Option<PathBuf>,
    /// A prepared root file system for the sandbox instead of the host's /usr.
    ///
    /// For `serve`, `worker` and `check-config`, given here it is a setting like their own
    /// flags: over ISOBOX_ROOTFS in the environment and the configuration file.
    #[arg(long, global = true, env = "ISOBOX_ROOTFS", value_name = "DIR")]
    rootfs: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompareArg {
    Exact,
    Trim,
    Tokens,
    Float,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Native,
    Docker,
}

// One value per process, parsed once: the size of `Run` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a program locally in the sandbox. The first FILE is the entry point.
    #[command(after_long_help = RUN_EXIT_CODES)]
    Run {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Language name or alias (default: from the first file's extension).
        #[arg(long, short = 'l')]
        language: Option<String>,
        /// The language's version (`3.11`, `3`, `*`) or a runtime's name (`python-bookworm`):
        /// picks among the runtimes in ISOBOX_RUNTIMES_DIR and the host's toolchains.
        #[arg(long = "version", value_name = "V")]
        lang_version: Option<String>,
        /// Text fed to the program's stdin. Without it (or --stdin-file), what is piped into
        /// isobox is (`echo 5 | isobox run a.py`); nothing when stdin is a terminal.
        #[arg(long, conflicts_with = "stdin_file")]
        stdin: Option<String>,
        /// File whose content is fed to the program's stdin (`-`: isobox's own stdin).
        #[arg(long, value_name = "F")]
        stdin_file: Option<PathBuf>,
        /// An argument for the program (repeat for more).
        #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
        args: Vec<String>,
        /// Wall-clock limit in milliseconds.
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
        timeout_ms: Option<u64>,
        /// CPU time limit in milliseconds (default: --timeout-ms when given, else the
        /// language's).
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
        cpu_ms: Option<u64>,
        /// Memory limit in MiB.
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(8..))]
        memory_mb: Option<u64>,
        /// Most processes (and threads) the program may have at once.
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(2..))]
        processes: Option<u32>,
        /// Most bytes of stdout (and of stderr) kept; a program writing more is stopped
        /// (status output_limit).
        #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
        output_bytes: Option<u64>,
        /// Isolation backend.
        #[arg(long, value_enum, default_value = "native", env = "ISOBOX_BACKEND")]
        backend: BackendKind,
        /// Print the result object instead of the program's output.
        #[arg(long)]
        json: bool,
        /// Test cases: a directory of `NAME.in` / `NAME.out` pairs (`.ans` too), or a JSON file
        /// holding the `tests` array of the REST API. Prints one verdict per case; exits 0
        /// when every case is accepted, 1 otherwise.
        #[arg(long, value_name = "DIR|FILE", conflicts_with_all = ["stdin", "stdin_file"])]
        tests: Option<PathBuf>,
        /// How outputs are compared with the expected ones.
        #[arg(long, value_enum, default_value = "exact", requires = "tests")]
        compare: CompareArg,
        /// --compare float: numbers within this absolute difference are equal (the REST
        /// API's `compare.absolute`; default 1e-6).
        #[arg(long, value_name = "X", allow_negative_numbers = true, value_parser = tolerance, requires = "tests")]
        compare_absolute: Option<f64>,
        /// --compare float: numbers within this difference relative to the expected one are
        /// equal (the REST API's `compare.relative`; default 1e-6).
        #[arg(long, value_name = "X", allow_negative_numbers = true, value_parser = tolerance, requires = "tests")]
        compare_relative: Option<f64>,
        /// Stop at the first case that is not accepted.
        #[arg(long, requires = "tests")]
        stop_on_failure: bool,
        /// A compiler option (repeat for more), e.g. `--compile-arg=-DLOCAL`.
        #[arg(long = "compile-arg", value_name = "A", allow_hyphen_values = true)]
        compile_args: Vec<String>,
        /// A file (name or glob) the program leaves in its work dir to copy into
        /// --output-dir (repeat for more).
        #[arg(long = "output", value_name = "PATTERN")]
        outputs: Vec<String>,
        /// Where --output files are written.
        #[arg(long, value_name = "DIR", default_value = ".")]
        output_dir: PathBuf,
    },
    /// List the languages available on this host.
    Languages {
        #[arg(long)]
        json: bool,
    },
    /// Probe what the sandbox enforces on this host.
    Selftest {
        /// Print the report as JSON.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the probe table SECURITY.md carries for this backend (between its markers).
        #[arg(long)]
        markdown: bool,
        /// Isolation backend to probe.
        #[arg(long, value_enum, default_value = "native", env = "ISOBOX_BACKEND")]
        backend: BackendKind,
    },
    /// Start the REST API (REST_PORT, default 8000) and the gRPC API (GRPC_PORT, default 9000).
    #[command(after_long_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Run queued jobs from Redis (REDIS_URL) without serving the APIs (only /health and
    /// /metrics on REST_PORT).
    #[command(after_long_help = SERVE_HELP)]
    Worker(ServeArgs),
    /// The docker backend's runtime image.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Runtimes: root file systems built from Debian packages (one per language version).
    Runtime {
        #[command(subcommand)]
        command: runtime::RuntimeCommand,
    },
    /// Load the configuration as `serve` would and show each value and where it came from.
    #[command(after_long_help = SERVE_HELP)]
    CheckConfig(ServeArgs),
}

/// The long help of `serve`, `worker` and `check-config`: where settings come from.
const SERVE_HELP: &str = "\
Settings are the variables of the README's Configuration table (REST_PORT, ISOBOX_SLOTS, \
AUTH_TYPE, ...). Each is taken from, in order of precedence:

  1. a flag (--bind, --port, --grpc-port, --backend, --config, --languages-file, --rootfs)
  2. the environment
  3. the configuration file (--config FILE, else ISOBOX_CONFIG): TOML, one `key = value` per \
setting, the key being the variable's name in any case (`rest_port = 8080`, `auth_type = \
\"apikey\"`, `api_keys = [\"k1\", \"k2\"]`); an unknown key is an error
  4. the built-in default

`isobox check-config` takes the same flags and shows each value and where it came from \
(flag, env, file, default).";

/// The flags of `serve`, `worker` and `check-config`: each sets one variable and wins over the
/// environment and the configuration file.
#[derive(clap::Args)]
struct ServeArgs {
    /// Address the listeners bind to (ISOBOX_BIND).
    #[arg(long, value_name = "IP")]
    bind: Option<std::net::IpAddr>,
    /// REST port, 0 for any free one (REST_PORT).
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    port: Option<u16>,
    /// gRPC port, 0 for any free one (GRPC_PORT).
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    grpc_port: Option<u16>,
    /// Isolation backend (ISOBOX_BACKEND).
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,
    /// Configuration file (TOML; ISOBOX_CONFIG): below the environment, above the defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The global --languages-file, when given on the command line (ISOBOX_LANGUAGES).
    #[arg(skip)]
    languages_file: Option<PathBuf>,
    /// The global --rootfs, when given on the command line (ISOBOX_ROOTFS).
    #[arg(skip)]
    rootfs: Option<PathBuf>,
}

impl ServeArgs {
    /// The variables these flags set.
    fn flags(&self) -> isobox_server::config::Flags {
        let mut f = isobox_server::config::Flags::default();
        if let Some(b) = self.bind {
            f.set("ISOBOX_BIND", "--bind", b.to_string());
        }
        if let Some(p) = self.port {
            f.set("REST_PORT", "--port", p.to_string());
        }
        if let Some(p) = self.grpc_port {
            f.set("GRPC_PORT", "--grpc-port", p.to_string());
        }
        if let Some(b) = self.backend {
            let name = match b {
                BackendKind::Native => "native",
                BackendKind::Docker => "docker",
            };
            f.set("ISOBOX_BACKEND", "--backend", name);
        }
        if let Some(c) = &self.config {
            f.set("ISOBOX_CONFIG", "--config", c.to_string_lossy());
        }
        if let Some(l) = &self.languages_file {
            f.set("ISOBOX_LANGUAGES", "--languages-file", l.to_string_lossy());
        }
        if let Some(r) = &self.rootfs {
            f.set("ISOBOX_ROOTFS", "--rootfs", r.to_string_lossy());
        }
        f
    }
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build the runtime image locally (no registry) and tag it `isobox-runtime:<version>`.
    Build {
        /// Root file system to import: the host's toolchains (`/`) or a prepared tree such as a
        /// debootstrap directory.
        #[arg(long, default_value = "/", value_name = "DIR")]
        from: PathBuf,
        /// Image tag (the server's ISOBOX_DOCKER_IMAGE must name it if changed).
        #[arg(long)]
        tag: Option<String>,
        /// The `isobox-runner` binary (default: next to this executable).
        #[arg(long, value_name = "FILE")]
        runner: Option<PathBuf>,
        /// A path below DIR to leave out, on top of the default list (repeat for more).
        #[arg(long, value_name = "PATH")]
        exclude: Vec<String>,
    },
}

fn native_config(rootfs: Option<PathBuf>) -> NativeConfig {
    let mut cfg = NativeConfig::default();
    if let Some(dir) = rootfs {
        cfg.rootfs = RootFs::Dir(dir);
    }
    cfg
}

fn backend(kind: BackendKind, rootfs: Option<PathBuf>) -> anyhow::Result<Arc<dyn Backend>> {
    match kind {
        BackendKind::Native => Ok(Arc::new(NativeBackend::new(native_config(rootfs))?)),
        BackendKind::Docker => {
            if rootfs.is_some() {
                return Err(usage("--rootfs is for the native backend; the docker backend runs its image (`isobox image build --from DIR`)"));
            }
            let mut cfg =
                isobox_server::config::docker_settings(&isobox_server::config::ProcessEnv)
                    .map_err(|e| usage(format!("invalid configuration: {e}")))?;
            // One run: no pool, and a label of its own so it never reaps a server's containers.
            cfg.pool = 0;
            cfg.instance = format!("cli-{}", std::process::id());
            Ok(Arc::new(DockerBackend::new(cfg)?))
        }
    }
}

/// Where `isobox image build` finds the runner by default: next to this executable.
fn default_runner() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("isobox-runner")))
        .unwrap_or_else(|| PathBuf::from("isobox-runner"))
}

/// The runtimes of `ISOBOX_RUNTIMES_DIR` (default /var/lib/isobox/runtimes) offered beside the
/// host's toolchains; a runtime's sandbox is made only if the run picks it.
fn with_runtimes(executor: Executor, kind: BackendKind) -> Executor {
    let dir = std::env::var_os("ISOBOX_RUNTIMES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(isobox_core::runtimes::DEFAULT_DIR));
    let make: isobox_core::service::BackendMaker =
        Arc::new(move |rt: &isobox_core::runtimes::Runtime| {
            let backend: Arc<dyn Backend> = match kind {
                BackendKind::Native => {
                    Arc::new(NativeBackend::new(native_config(Some(rt.root.clone())))?)
                }
                BackendKind::Docker => {
                    let image = rt.manifest.image.clone().ok_or_else(|| {
                        isobox_sandbox::SandboxError::Unsupported(format!(
                            "runtime {} has no docker image (isobox runtime build --docker)",
                            rt.manifest.name
                        ))
                    })?;
                    Arc::new(DockerBackend::new(isobox_sandbox::DockerConfig {
                        image,
                        ..isobox_sandbox::DockerConfig::default()
                    })?)
                }
            };
            Ok(backend)
        });
    let (found, _) = isobox_core::runtimes::runnable(
        isobox_core::runtimes::scan_for_runs(&dir),
        matches!(kind, BackendKind::Docker),
    );
    executor.with_runtimes(found, make, true)
}

/// `isobox image build`: the docker backend's image of the tree `from`; returns the tag, the
/// image id and the seconds it took.
fn build_image(
    from: &std::path::Path,
    tag: Option<String>,
    runner: Option<PathBuf>,
    exclude: Vec<String>,
    whole_root: bool,
) -> anyhow::Result<(String, String, f64)> {
    use isobox_sandbox::docker::image;
    let mut b = image::ImageBuild::new(runner.unwrap_or_else(default_runner));
    b.from = from.to_path_buf();
    b.whole_root = whole_root;
    if let Some(t) = tag {
        b.tag = t;
    }
    b.exclude.extend(exclude);
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    let id = rt.block_on(async {
        let docker = isobox_sandbox::docker::connect(None).await?;
        image::build(&docker, &b, |line| eprintln!("  {line}")).await
    })?;
    Ok((b.tag, id, started.elapsed().as_secs_f64()))
}

/// The docker image of a runtime's root: `<prefix>-<hash of the runner and the image layout>`,
/// built when the engine lacks it (so a new runner binary or layout gets new images; an
/// unchanged one reuses them).
fn runtime_image(
    from: &std::path::Path,
    prefix: &str,
    runner: Option<PathBuf>,
) -> anyhow::Result<String> {
    let runner = runner.unwrap_or_else(default_runner);
    let bytes = std::fs::read(&runner)
        .with_context(|| format!("cannot read the runner {}", runner.display()))?;
    let mut h = blake3::Hasher::new();
    h.update(&isobox_sandbox::docker::image::LAYOUT.to_le_bytes());
    h.update(&bytes);
    let tag = format!("{prefix}-{}", &h.finalize().to_hex()[..8]);
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let present = rt.block_on(async {
        let docker = isobox_sandbox::docker::connect(None).await?;
        Ok::<_, isobox_sandbox::SandboxError>(
            isobox_sandbox::docker::image::check(&docker, &tag)
                .await
                .is_ok(),
        )
    })?;
    if !present {
        let (_, id, secs) = build_image(from, Some(tag.clone()), Some(runner), Vec::new(), true)?;
        eprintln!("built {tag} ({id}) in {secs:.1} s");
        // The runtime's images of an older runner, layout or root go.
        let repo = prefix.split_once(':').map_or(prefix, |(r, _)| r);
        let gone = rt.block_on(async {
            match isobox_sandbox::docker::connect(None).await {
                Ok(d) => isobox_sandbox::docker::image::remove_other_tags(&d, repo, &tag).await,
                Err(_) => 0,
            }
        });
        if gone > 0 {
            eprintln!("removed {gone} older image(s) of {repo}");
        }
    }
    Ok(tag)
}

fn languages(path: Option<&PathBuf>) -> anyhow::Result<LanguageTable> {
    Ok(match path {
        Some(p) => LanguageTable::load(p)?,
        None => LanguageTable::builtin(),
    })
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The global options the server reads as settings, when the command line (not the
    // environment, which the server reads itself) gave them.
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    if let Command::Serve(a) | Command::Worker(a) | Command::CheckConfig(a) = &mut cli.command {
        if given("languages_file") {
            a.languages_file = cli.languages_file.clone();
        }
        if given("rootfs") {
            a.rootfs = cli.rootfs.clone();
        }
    }
    let no_launcher = std::env::var("ISOBOX_NO_LAUNCHER").is_ok_and(|v| v == "1");
    let mut server_env = None;
    if matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
        // The environment (secrets included) leaves the process before the launcher is forked,
        // so that neither the launcher nor any sandbox it clones holds a copy (see envscrub).
        // SAFETY: first thing in `main`: one thread, and no pointer from getenv is held (clap
        // and the line above copied what they read).
        let saved = match unsafe { envscrub::take() } {
            Ok(s) => s,
            Err(e) => {
                eprintln!("isobox: cannot take the environment out of the process: {e}");
                return ExitCode::from(125);
            }
        };
        if !no_launcher {
            // Before any thread or configuration exists: the process that clones the native
            // backend's sandboxes from a tiny address space (see
            // isobox_sandbox::native::launcher). Without it sandboxes are cloned from the
            // server itself: correct, only slower, and they carry a copy of its memory.
            if let Err(e) = isobox_sandbox::native::launcher::start() {
                eprintln!("isobox: sandbox launcher not started ({e}); cloning from the server");
            }
        }
        let env = saved.into_map();
        // Still one thread: the launcher is a process.
        envscrub::restore(&env);
        server_env = Some(env);
    }
    let cli = Ctx {
        cli,
        env: server_env.unwrap_or_default(),
    };
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isobox: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::from(exit::INTERNAL)
            }
        }
    }
}

/// The command line, and for `serve` and `worker` the environment they were started with (taken
/// out of the process, see [`envscrub`]).
struct Ctx {
    cli: Cli,
    env: std::collections::HashMap<String, String>,
}

fn real_main(ctx: Ctx) -> anyhow::Result<ExitCode> {
    let Ctx { cli, env } = ctx;
    match cli.command {
        Command::Run {
            files,
            language,
            lang_version,
            stdin,
            stdin_file,
            args,
            timeout_ms,
            cpu_ms,
            memory_mb,
            processes,
            output_bytes,
            backend: kind,
            json,
            tests,
            compare,
            compare_absolute,
            compare_relative,
            stop_on_failure,
            compile_args,
            outputs,
            output_dir,
        } => {
            if (compare_absolute.is_some() || compare_relative.is_some())
                && !matches!(compare, CompareArg::Float)
            {
                return Err(usage(
                    "--compare-absolute and --compare-relative go with --compare float",
                ));
            }
            let table = languages(cli.languages_file.as_ref())?;
            let lang_name = match language {
                Some(l) => l,
                None => {
                    let first = files[0].to_string_lossy();
                    table
                        .by_extension(&first)
                        .map(|l| l.name.clone())
                        .ok_or_else(|| usage(format!("cannot tell the language of {first} from its extension: use --language")))?
                }
            };
            let mut req_files = Vec::new();
            for f in &files {
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| usage(format!("{} has no usable file name", f.display())))?
                    .to_string();
                let bytes = std::fs::read(f)
                    .map_err(|e| usage(format!("cannot read {}: {e}", f.display())))?;
                let (content, encoding) = match String::from_utf8(bytes) {
                    Ok(s) => (s, None),
                    Err(e) => {
                        use base64::Engine as _;
                        (
                            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                            Some("base64".to_string()),
                        )
                    }
                };
                req_files.push(RequestFile {
                    name,
                    content,
                    encoding,
                });
            }
            let stdin_limit = Policy::default().max_stdin_bytes;
            let stdin = match (stdin, stdin_file) {
                (Some(text), _) => Some(text),
                (None, Some(p)) if p.as_os_str() == "-" => Some(read_stdin(stdin_limit)?),
                (None, Some(p)) => Some(
                    std::fs::read_to_string(&p)
                        .map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?,
                ),
                // Piped in (not a terminal): the program's stdin. Test cases bring their own.
                (None, None) if tests.is_none() && !std::io::stdin().is_terminal() => {
                    Some(read_stdin(stdin_limit)?)
                }
                (None, None) => None,
            };
            let any_limit = timeout_ms.is_some()
                || cpu_ms.is_some()
                || memory_mb.is_some()
                || processes.is_some()
                || output_bytes.is_some();
            let limits = any_limit.then(|| RequestLimits {
                timeout_ms,
                cpu_time_ms: cpu_ms.or(timeout_ms),
                memory_mb,
                max_processes: processes,
                max_output_bytes: output_bytes,
            });
            let tests = tests
                .as_deref()
                .map(judge::load_tests)
                .transpose()
                .map_err(|e| usage(format!("{e:#}")))?;
            let defaults = isobox_core::Compare::default();
            let compare = isobox_core::Compare {
                mode: match compare {
                    CompareArg::Exact => isobox_core::CompareMode::Exact,
                    CompareArg::Trim => isobox_core::CompareMode::Trim,
                    CompareArg::Tokens => isobox_core::CompareMode::Tokens,
                    CompareArg::Float => isobox_core::CompareMode::Float,
                },
                absolute: compare_absolute.unwrap_or(defaults.absolute),
                relative: compare_relative.unwrap_or(defaults.relative),
            };
            let req = ExecuteRequest {
                language: lang_name,
                version: lang_version,
                files: Some(req_files),
                stdin,
                args: Some(args),
                limits,
                compare: tests.is_some().then_some(compare),
                stop_on_failure: tests.is_some().then_some(stop_on_failure),
                tests,
                compile_args: Some(compile_args),
                outputs: (!outputs.is_empty()).then_some(outputs),
                ..Default::default()
            };
            let executor = with_runtimes(
                Executor::new(backend(kind, cli.rootfs)?, table, Policy::default()),
                kind,
            );
            let result = executor.execute(&req).map_err(run_error)?;
            if let Some(msg) = &result.internal_message {
                eprintln!("isobox: the sandbox failed: {msg}");
            }
            if let Some(files) = &result.files {
                judge::write_outputs(&output_dir, files, &result.files_skipped)?;
            }
            if result.tests.is_some() && !json {
                return judge::report(&result);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(if result.status == "internal_error" {
                    ExitCode::from(exit::INTERNAL)
                } else {
                    ExitCode::SUCCESS
                });
            }
            use std::io::Write;
            let (out, err) = match (&result.compile, result.status.as_str()) {
                (Some(c), "compile_error") => (&c.stdout, &c.stderr),
                _ => (&result.stdout, &result.stderr),
            };
            std::io::stdout().write_all(out.as_bytes())?;
            std::io::stderr().write_all(err.as_bytes())?;
            let code = match result.status.as_str() {
                "ok" => 0,
                "runtime_error" => result.exit_code.filter(|c| *c != 0).unwrap_or(1),
                "timeout" => exit::TIMEOUT.into(),
                "memory_limit" | "output_limit" => exit::KILLED.into(),
                "signal" => {
                    let n = result
                        .signal
                        .as_deref()
                        .and_then(signal_number)
                        .unwrap_or(9);
                    128 + n
                }
                "compile_error" => {
                    eprintln!("isobox: compilation failed");
                    exit::COMPILE_ERROR.into()
                }
                _ => exit::INTERNAL.into(),
            };
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
        Command::Languages { json } => {
            let table = languages(cli.languages_file.as_ref())?;
            let executor = with_runtimes(
                Executor::new(
                    backend(BackendKind::Native, cli.rootfs)?,
                    table,
                    Policy::default(),
                ),
                BackendKind::Native,
            );
            let list = executor.list_languages();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<12} {:<12} {:<18} {:<9} {:<10} aliases",
                    "name", "version", "runtime", "compiled", "available"
                );
                for l in &list {
                    println!(
                        "{:<12} {:<12} {:<18} {:<9} {:<10} {}",
                        l.name,
                        if l.version.is_empty() {
                            "-"
                        } else {
                            &l.version
                        },
                        l.runtime,
                        if l.compiled { "yes" } else { "no" },
                        if l.available { "yes" } else { "no" },
                        l.aliases.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(false, &env, &args.flags()),
        Command::Worker(args) => serve(true, &env, &args.flags()),
        Command::Image {
            command:
                ImageCommand::Build {
                    from,
                    tag,
                    runner,
                    exclude,
                },
        } => {
            let (tag, id, secs) = build_image(&from, tag, runner, exclude, false)?;
            println!("built {tag} ({id}) from {} in {secs:.1} s", from.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Runtime { command } => {
            let file = cli.languages_file.clone();
            runtime::main(
                command,
                &|| languages(file.as_ref()),
                &|from, prefix, runner| runtime_image(from, prefix, runner),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(args) => {
            let cfg =
                isobox_server::config::load_with(&isobox_server::config::ProcessEnv, &args.flags())
                    .map_err(|e| usage(format!("invalid configuration: {e}")))?;
            println!("{:<28} {:<9} value", "variable", "from");
            for s in &cfg.shown {
                println!("{:<28} {:<9} {}", s.var, s.origin.as_str(), s.value);
            }
            println!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
        Command::Selftest {
            json,
            markdown,
            backend: kind,
        } => {
            let report = match kind {
                BackendKind::Native => {
                    selftest::native(&NativeBackend::new(native_config(cli.rootfs))?)
                }
                BackendKind::Docker => {
                    if cli.rootfs.is_some() {
                        return Err(usage("--rootfs is for the native backend; the docker backend runs its image (`isobox image build --from DIR`)"));
                    }
                    let (docker, engine) = selftest::docker_backend()?;
                    selftest::docker(&docker, engine)
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if markdown {
                print!("{}", selftest::markdown(&report));
            } else {
                selftest::print(&report);
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `isobox serve` (the APIs, and job workers unless ISOBOX_JOB_WORKERS=0) or `isobox worker`
/// (job workers only, with /health and /metrics): configuration, logs, the backend, then the
/// servers until SIGTERM or SIGINT.
fn serve(
    worker: bool,
    env: &std::collections::HashMap<String, String>,
    flags: &isobox_server::config::Flags,
) -> anyhow::Result<ExitCode> {
    use isobox_server::config;
    let cfg =
        config::load_with(env, flags).map_err(|e| usage(format!("invalid configuration: {e}")))?;
    if worker && cfg.redis_url.is_none() {
        return Err(usage(
            "`isobox worker` takes its jobs from Redis: set REDIS_URL",
        ));
    }
    if worker && cfg.job_workers == 0 {
        return Err(usage(
            "`isobox worker` with ISOBOX_JOB_WORKERS=0 would run nothing",
        ));
    }
    let secrets = cfg.secrets();
    let logs = isobox_server::logging::init(&cfg.log_settings(), secrets)
        .context("cannot set up logging")?;
    let addr = cfg.rest_addr();
    let grpc_addr = std::net::SocketAddr::new(cfg.bind, cfg.grpc_port);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let app = {
        // The Redis client is made in the runtime's context; the backend is built here, off
        // the runtime's threads (it blocks while it probes).
        let _ctx = runtime.enter();
        std::sync::Arc::new(isobox_server::App::build(cfg).map_err(|e| anyhow::anyhow!(e))?)
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(target: isobox_server::logging::AUTH, auth = ?app.config.auth_type, "authentication configured");
        let shared = if app.redis.is_some() { "shared state in Redis" } else { "standalone" };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let on_hup = app.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                logs.reopen();
                on_hup.gate.reload();
                tracing::info!("log files reopened, API keys reloaded");
                // TLS files: rebuilt at once (a file that cannot be used is logged, the
                // configuration in use kept).
                if let Some(tls) = on_hup.tls.clone() {
                    let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
                }
                // Runtimes added or removed since: offered from now on.
                let app = on_hup.clone();
                if let Ok(names) = tokio::task::spawn_blocking(move || app.reload_runtimes()).await {
                    tracing::info!(runtimes = ?names, "runtimes rescanned");
                }
            }
        });
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        if worker {
            tracing::info!(
                "isobox worker: {} job workers, /health and /metrics on http://{} ({shared})",
                app.config.job_workers,
                listener.local_addr()?
            );
            isobox_server::run_worker(listener, app, shutdown).await?;
        } else {
            tracing::info!(
                "isobox listening on {}://{} ({} languages, {} sandbox slots, {} job workers, {shared})",
                if app.tls.is_some() { "https" } else { "http" },
                listener.local_addr()?,
                app.languages.read().map(|l| l.len()).unwrap_or(0),
                app.config.slots,
                app.config.job_workers
            );
            let grpc = tokio::net::TcpListener::bind(grpc_addr).await.with_context(|| format!("cannot listen on {grpc_addr} (GRPC_PORT)"))?;
            tracing::info!(
                "gRPC API ({}) on {}",
                if app.tls.is_some() { "TLS" } else { "plaintext" },
                grpc.local_addr()?
            );
            isobox_server::run_with_grpc(listener, Some(grpc), app, shutdown).await?;
        }
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Exit statuses of IsoBox's own outcomes (`isobox run --help` lists them with the program's).
mod exit {
    /// A usage error: what the command asks for is wrong (clap uses 2 for its own too).
    pub const USAGE: u8 = 2;
    /// A time limit (wall clock or CPU) stopped the program, as with timeout(1).
    pub const TIMEOUT: u8 = 124;
    /// IsoBox could not run the program (as timeout(1) and env(1) when they fail).
    pub const INTERNAL: u8 = 125;
    /// The program did not compile: it could not be run (the shell's 126).
    pub const COMPILE_ERROR: u8 = 126;
    /// The memory or output limit stopped the program (SIGKILL: 128 + 9).
    pub const KILLED: u8 = 137;
}

/// The exit statuses of `isobox run`, in its long help.
const RUN_EXIT_CODES: &str = "\
Exit status:
  0      the program exited 0 (with --tests: every case was accepted; with --json: the result
         was printed, whatever the program did: read its `status`)
  N      the program exited with status N (1-255)
  124    a time limit (wall clock or CPU) stopped the program
  126    the program did not compile (the compiler's output is on stderr)
  137    the memory or output limit stopped the program
  128+N  the program was killed by signal N
  1      with --tests: a case was not accepted (or the program did not compile)
  2      usage error: a bad flag or value, an unknown language or extension, a file that
         cannot be read, a limit above the maximum
  125    internal error: IsoBox could not run the program (no privileges, the Docker engine
         unreachable, the language or version not installed here, the sandbox failed)

A program's own status can be any of these: --json tells them apart.

stdin: --stdin TEXT, --stdin-file FILE, --stdin-file - (isobox's stdin), else what is piped
into isobox (`echo 5 | isobox run a.py`); nothing when stdin is a terminal.";

/// A mistake in what the command asks for (exit 2), as opposed to a failure to carry it out
/// (exit 125).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A tolerance of `--compare float`: a finite number, not negative (as the REST API's).
fn tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err("a tolerance is a finite number, not negative (e.g. 1e-4)".into()),
    }
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// An error of the executor for the command line: what the request got wrong is a usage
/// error, named by the flag that set it (`--cpu-ms`, not `limits.cpu_time_ms`); the rest
/// (language not installed, sandbox failure) is IsoBox's.
fn run_error(e: isobox_core::CoreError) -> anyhow::Error {
    use isobox_core::CoreError as E;
    match e {
        E::InvalidRequest(_)
        | E::TooLarge(_)
        | E::LimitTooHigh(_)
        | E::UnknownLanguage(_)
        | E::NoCheck(_)
        | E::PatternRejected(_) => {
            let mut text = e.to_string();
            for (field, flag) in [
                ("limits.timeout_ms", "--timeout-ms"),
                ("limits.cpu_time_ms", "--cpu-ms"),
                ("limits.memory_mb", "--memory-mb"),
                ("limits.max_processes", "--processes"),
                ("limits.max_output_bytes", "--output-bytes"),
            ] {
                if let Some(rest) = text.strip_prefix(field) {
                    text = format!("{flag}{rest}");
                }
            }
            usage(text)
        }
        other => other.into(),
    }
}

/// This process's stdin for the program: at most `limit` bytes of UTF-8 text.
fn read_stdin(limit: usize) -> anyhow::Result<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .context("cannot read stdin")?;
    if buf.len() > limit {
        return Err(usage(format!("stdin is over the limit of {limit} bytes")));
    }
    String::from_utf8(buf).map_err(|_| usage("stdin is not UTF-8 text"))
}

fn signal_number(name: &str) -> Option<i32> {
    (1..65).find(|n| isobox_sandbox::signal_name(*n) == name)
}
