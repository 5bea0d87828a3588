//! Conformance: every language of the built-in table, in every built runtime that provides it
//! (`isobox_core::runtimes::scan` of `ISOBOX_RUNTIMES_DIR`, default `/var/lib/isobox/runtimes`),
//! runs five programs in the native sandbox with that runtime's root (`RootFs::Dir`):
//!
//! 1. hello: the Playground template (`assets/playground/app.js`) with no stdin prints
//!    `Hello, world!`;
//! 2. stdin echo: the same template with `Ada Lovelace` on stdin prints `Hello, Ada Lovelace!`;
//! 3. arguments: a program printing its arguments, one a line, given `one`, `two words`, `--three`;
//! 4. runtime error: a program failing at run time ends `runtime_error` with a non-zero exit;
//! 5. compile error (compiled languages): a program the compiler refuses ends `compile_error`
//!    and never runs.
//!
//! A language whose runtime is built but fails a program fails its test. A language with no
//! built runtime is skipped with a note naming the definitions to build
//! (`isobox runtime build NAME`, or `--all`); scripts/test builds them all and sets
//! `ISOBOX_REQUIRE_RUNTIMES`, which turns a missing runtime into a failure. With
//! `ISOBOX_TEST_BACKEND=docker` the runtimes that have a docker image run in it (the others are
//! skipped). Each runtime also reports, from inside the sandbox, the version its manifest lists.
//! `every_language_has_programs_a_template_and_a_runtime` needs no runtime.

use std::path::PathBuf;
use std::sync::Arc;

use isobox_core::runtimes::{self, Definitions, Runtime};
use isobox_core::{ExecuteRequest, ExecutionResult, Executor, LanguageTable, Policy};
use isobox_sandbox::{
    Backend, DockerBackend, DockerConfig, ExecSpec, Limits, NativeBackend, NativeConfig, RootFs,
};
use std::time::Duration;

const ECHO_STDIN: &str = "Ada Lovelace\n";
const ARGS: [&str; 3] = ["one", "two words", "--three"];

/// The programs of one language: arguments, runtime error, compile error (compiled only).
/// `args: None` for a language whose programs cannot see arguments (the reason is in `note`).
struct Programs {
    lang: &'static str,
    args: Option<&'static str>,
    runtime_error: &'static str,
    compile_error: Option<&'static str>,
    note: &'static str,
    /// The signal that ends the runtime-error program instead of a non-zero exit, for a
    /// language whose runtime aborts on an uncaught error (SML#: SIGABRT).
    error_signal: Option<&'static str>,
}

const fn p(
    lang: &'static str,
    args: &'static str,
    runtime_error: &'static str,
    compile_error: Option<&'static str>,
) -> Programs {
    Programs {
        lang,
        args: Some(args),
        runtime_error,
        compile_error,
        note: "",
        error_signal: None,
    }
}

const C_ARGS: &str = "#include <stdio.h>\nint main(int c, char **v) { for (int i = 1; i < c; i++) puts(v[i]); return 0; }\n";
const C_EXIT: &str = "#include <stdio.h>\n#include <stdlib.h>\nint main(void) { fputs(\"boom\\n\", stderr); exit(3); }\n";
const C_BAD: &str = "int main(void) { return undefined_name; }\n";
const JS_ARGS: &str = "for (const a of process.argv.slice(2)) console.log(a);\n";
const JS_THROW: &str = "throw new Error(\"boom\");\n";
const PY_ARGS: &str = "import sys\n\nfor a in sys.argv[1:]:\n    print(a)\n";
const PY_RAISE: &str = "raise ValueError(\"boom\")\n";

const PROGRAMS: &[Programs] = &[
    p("python", PY_ARGS, PY_RAISE, None),
    p("pypy", PY_ARGS, PY_RAISE, None),
    p("javascript", JS_ARGS, JS_THROW, None),
    p(
        "java",
        "public class Main {\n    public static void main(String[] args) {\n        for (String a : args) System.out.println(a);\n    }\n}\n",
        "public class Main {\n    public static void main(String[] args) {\n        throw new IllegalStateException(\"boom\");\n    }\n}\n",
        Some("public class Main {\n    public static void main(String[] args) {\n        int x = \"s\";\n    }\n}\n"),
    ),
    p("c", C_ARGS, C_EXIT, Some(C_BAD)),
    p(
        "cpp",
        "#include <iostream>\nint main(int c, char **v) { for (int i = 1; i < c; i++) std::cout << v[i] << '\\n'; }\n",
        "#include <cstdlib>\n#include <iostream>\nint main() { std::cerr << \"boom\\n\"; std::exit(3); }\n",
        Some("int main() { return undefined_name; }\n"),
    ),
    p(
        "rust",
        "fn main() {\n    for a in std::env::args().skip(1) {\n        println!(\"{}\", a);\n    }\n}\n",
        "fn main() {\n    panic!(\"boom\");\n}\n",
        Some("fn main() {\n    let x: i32 = \"s\";\n}\n"),
    ),
    p(
        "go",
        "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tfor _, a := range os.Args[1:] {\n\t\tfmt.Println(a)\n\t}\n}\n",
        "package main\n\nfunc main() {\n\tpanic(\"boom\")\n}\n",
        Some("package main\n\nfunc main() {\n\tx := 1\n}\n"),
    ),
    p("ruby", "ARGV.each { |a| puts a }\n", "raise \"boom\"\n", None),
    p(
        "php",
        "<?php\nforeach (array_slice($argv, 1) as $a) echo $a, \"\\n\";\n",
        "<?php\nthrow new Exception(\"boom\");\n",
        None,
    ),
    p(
        "bash",
        "for a in \"$@\"; do echo \"$a\"; done\n",
        "set -e\nfalse\necho unreachable\n",
        None,
    ),
    p(
        "lua",
        "for _, a in ipairs(arg) do print(a) end\n",
        "error(\"boom\")\n",
        None,
    ),
    p("perl", "print \"$_\\n\" for @ARGV;\n", "die \"boom\\n\";\n", None),
    p(
        "typescript",
        "for (const a of process.argv.slice(2)) console.log(a);\n",
        "throw new Error(\"boom\");\n",
        Some("const x: number = \"s\";\nconsole.log(x);\n"),
    ),
    p(
        "coffeescript",
        "console.log a for a in process.argv[2..]\n",
        "throw new Error \"boom\"\n",
        None,
    ),
    p(
        "csharp",
        "class P\n{\n    static void Main(string[] args)\n    {\n        foreach (var a in args) System.Console.WriteLine(a);\n    }\n}\n",
        "class P\n{\n    static void Main()\n    {\n        throw new System.InvalidOperationException(\"boom\");\n    }\n}\n",
        Some("class P\n{\n    static void Main()\n    {\n        int x = \"s\";\n    }\n}\n"),
    ),
    p(
        "kotlin",
        "fun main(args: Array<String>) {\n    for (a in args) println(a)\n}\n",
        "fun main() {\n    throw IllegalStateException(\"boom\")\n}\n",
        Some("fun main() {\n    val x: Int = \"s\"\n}\n"),
    ),
    p(
        "scala",
        "object Main {\n  def main(args: Array[String]): Unit = args.foreach(println)\n}\n",
        "object Main {\n  def main(args: Array[String]): Unit = throw new IllegalStateException(\"boom\")\n}\n",
        Some("object Main {\n  def main(args: Array[String]): Unit = {\n    val x: Int = \"s\"\n  }\n}\n"),
    ),
    p(
        "groovy",
        "args.each { println it }\n",
        "throw new IllegalStateException(\"boom\")\n",
        None,
    ),
    p(
        "clojure",
        "(doseq [a *command-line-args*] (println a))\n",
        "(throw (ex-info \"boom\" {}))\n",
        None,
    ),
    p(
        "fortran",
        "program args\n  implicit none\n  integer :: i\n  character(len=256) :: a\n  do i = 1, command_argument_count()\n    call get_command_argument(i, a)\n    print '(A)', trim(a)\n  end do\nend program args\n",
        "program boom\n  error stop 3\nend program boom\n",
        Some("program bad\n  integer :: x\n  x = 'text'\nend program bad\n"),
    ),
    p(
        "d",
        "import std.stdio;\n\nvoid main(string[] args)\n{\n    foreach (a; args[1 .. $])\n        writeln(a);\n}\n",
        "void main()\n{\n    throw new Exception(\"boom\");\n}\n",
        Some("void main()\n{\n    int x = \"s\";\n}\n"),
    ),
    p(
        "ada",
        "with Ada.Text_IO; use Ada.Text_IO;\nwith Ada.Command_Line; use Ada.Command_Line;\n\nprocedure Main is\nbegin\n   for I in 1 .. Argument_Count loop\n      Put_Line (Argument (I));\n   end loop;\nend Main;\n",
        "procedure Main is\nbegin\n   raise Program_Error with \"boom\";\nend Main;\n",
        Some("procedure Main is\n   X : Integer := \"s\";\nbegin\n   null;\nend Main;\n"),
    ),
    p("objectivec", C_ARGS, C_EXIT, Some(C_BAD)),
    p(
        "haskell",
        "import System.Environment\n\nmain :: IO ()\nmain = getArgs >>= mapM_ putStrLn\n",
        "main :: IO ()\nmain = error \"boom\"\n",
        Some("main :: IO ()\nmain = putStrLn (1 :: Int)\n"),
    ),
    p(
        "ocaml",
        "let () = Array.iteri (fun i a -> if i > 0 then print_endline a) Sys.argv\n",
        "let () = failwith \"boom\"\n",
        Some("let () = print_endline 1\n"),
    ),
    Programs {
        lang: "sml",
        args: Some("val () = List.app (fn a => print (a ^ \"\\n\")) (CommandLine.arguments ())\n"),
        runtime_error: "val () = raise Fail \"boom\"\n",
        compile_error: Some("val x : int = \"s\"\n"),
        note: "",
        error_signal: Some("SIGABRT"),
    },
    p(
        "erlang",
        "%% escript skips its first line\nmain(Args) ->\n    lists:foreach(fun(A) -> io:format(\"~ts~n\", [A]) end, Args).\n",
        "%% escript skips its first line\nmain(_) ->\n    erlang:error(boom).\n",
        None,
    ),
    p(
        "elixir",
        "Enum.each(System.argv(), &IO.puts/1)\n",
        "raise \"boom\"\n",
        None,
    ),
    p(
        "pascal",
        "program Args;\nvar\n  i: Integer;\nbegin\n  for i := 1 to ParamCount do\n    WriteLn(ParamStr(i));\nend.\n",
        "program Boom;\n{$R+}\nvar\n  a: array[1..2] of Integer;\n  i: Integer;\nbegin\n  i := ParamCount + 3;\n  a[i] := 1;\n  WriteLn(a[1]);\nend.\n",
        Some("program Bad;\nvar\n  x: Integer;\nbegin\n  x := 'text';\nend.\n"),
    ),
    p(
        "cobol",
        "IDENTIFICATION DIVISION.\nPROGRAM-ID. ARGS.\nDATA DIVISION.\nWORKING-STORAGE SECTION.\n01 WS-COUNT PIC 9(4).\n01 WS-I PIC 9(4).\n01 WS-ARG PIC X(200).\nPROCEDURE DIVISION.\n    ACCEPT WS-COUNT FROM ARGUMENT-NUMBER\n    PERFORM VARYING WS-I FROM 1 BY 1 UNTIL WS-I > WS-COUNT\n        ACCEPT WS-ARG FROM ARGUMENT-VALUE\n        DISPLAY FUNCTION TRIM(WS-ARG TRAILING)\n    END-PERFORM\n    STOP RUN.\n",
        "IDENTIFICATION DIVISION.\nPROGRAM-ID. BOOM.\nPROCEDURE DIVISION.\n    CALL \"no_such_program\"\n    STOP RUN.\n",
        Some("IDENTIFICATION DIVISION.\nPROGRAM-ID. BAD.\nPROCEDURE DIVISION.\n    MOVE 1 TO NOWHERE\n    STOP RUN.\n"),
    ),
    p(
        "commonlisp",
        "(dolist (a (rest sb-ext:*posix-argv*)) (write-line a))\n",
        "(error \"boom\")\n",
        None,
    ),
    p(
        "scheme",
        "(for-each (lambda (a) (display a) (newline)) (cdr (command-line)))\n",
        "(error \"boom\")\n",
        None,
    ),
    p(
        "racket",
        "#lang racket/base\n(for ([a (current-command-line-arguments)]) (displayln a))\n",
        "#lang racket/base\n(error \"boom\")\n",
        None,
    ),
    p(
        "prolog",
        ":- initialization(main, main).\n\nmain :-\n    current_prolog_flag(argv, Args),\n    forall(member(A, Args), (write(A), nl)).\n",
        ":- initialization(main, main).\n\nmain :-\n    X is 1 / 0,\n    write(X).\n",
        None,
    ),
    p(
        "tcl",
        "foreach a $argv { puts $a }\n",
        "error \"boom\"\n",
        None,
    ),
    p(
        "awk",
        "BEGIN { for (i = 1; i < ARGC; i++) print ARGV[i] }\n",
        "BEGIN { x = 0; print 1 / x }\n",
        None,
    ),
    Programs {
        lang: "sql",
        args: None,
        runtime_error: "SELECT * FROM no_such_table;\n",
        compile_error: None,
        note: "sqlite3 runs its arguments as more SQL, a program has no argv",
        error_signal: None,
    },
    p(
        "raku",
        ".say for @*ARGS;\n",
        "die \"boom\";\n",
        None,
    ),
    p(
        "r",
        "for (a in commandArgs(trailingOnly = TRUE)) cat(a, \"\\n\", sep = \"\")\n",
        "stop(\"boom\")\n",
        None,
    ),
    p(
        "octave",
        "args = argv();\nfor i = 1:numel(args)\n  printf(\"%s\\n\", args{i});\nend\n",
        "error(\"boom\");\n",
        None,
    ),
    p(
        "assembly",
        "section .data\n    nl db 10\nsection .text\n    global _start\n_start:\n    mov r12, [rsp]\n    lea r13, [rsp + 16]\n    dec r12\n.next:\n    test r12, r12\n    jz .done\n    mov rsi, [r13]\n    xor edx, edx\n.len:\n    cmp byte [rsi + rdx], 0\n    je .write\n    inc rdx\n    jmp .len\n.write:\n    mov eax, 1\n    mov edi, 1\n    syscall\n    mov eax, 1\n    mov edi, 1\n    lea rsi, [rel nl]\n    mov edx, 1\n    syscall\n    add r13, 8\n    dec r12\n    jmp .next\n.done:\n    mov eax, 60\n    xor edi, edi\n    syscall\n",
        "section .text\n    global _start\n_start:\n    mov eax, 60\n    mov edi, 3\n    syscall\n",
        Some("section .text\n    global _start\n_start:\n    bogus_instruction rax\n"),
    ),
    p(
        "vala",
        "void main (string[] args) {\n    foreach (var a in args[1:args.length]) {\n        print (\"%s\\n\", a);\n    }\n}\n",
        "void main () {\n    Process.exit (3);\n}\n",
        Some("void main () {\n    int x = \"s\";\n}\n"),
    ),
    p(
        "crystal",
        "ARGV.each { |a| puts a }\n",
        "raise \"boom\"\n",
        Some("x : Int32 = \"s\"\nputs x\n"),
    ),
];

fn programs(lang: &str) -> &'static Programs {
    PROGRAMS
        .iter()
        .find(|p| p.lang == lang)
        .unwrap_or_else(|| panic!("no conformance programs for {lang}"))
}

/// The Playground's templates, by language: the entries of `const TEMPLATES = { ... };`, each
/// `  name: '...'` or `  name: "..."` on one line.
fn templates() -> Vec<(String, String)> {
    let js = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/playground/app.js"),
    )
    .unwrap();
    let start = js
        .find("const TEMPLATES = {\n")
        .expect("TEMPLATES in app.js");
    let body = &js[start..];
    let body = &body[..body.find("\n};").expect("end of TEMPLATES")];
    body.lines()
        .skip(1)
        .map(|line| {
            let (name, lit) = line
                .trim()
                .split_once(": ")
                .unwrap_or_else(|| panic!("template line: {line}"));
            let lit = lit.strip_suffix(',').unwrap_or(lit);
            (name.to_string(), js_string(lit))
        })
        .collect()
}

/// The value of a one-line JavaScript string literal ('...' or "...").
fn js_string(lit: &str) -> String {
    let quote = lit.chars().next().expect("a literal");
    assert!(quote == '\'' || quote == '"', "not a string literal: {lit}");
    assert!(lit.len() >= 2 && lit.ends_with(quote), "{lit}");
    let mut out = String::new();
    let mut chars = lit[1..lit.len() - 1].chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().expect("escape") {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => out.push(other),
        }
    }
    out
}

fn template(lang: &str) -> String {
    templates()
        .into_iter()
        .find(|(n, _)| n == lang)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no Playground template for {lang}"))
}

fn runtimes_dir() -> PathBuf {
    std::env::var_os("ISOBOX_RUNTIMES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(runtimes::DEFAULT_DIR))
}

/// On the docker backend (`ISOBOX_TEST_BACKEND=docker`): runtimes run in containers of their
/// images (`isobox runtime build --docker`); runtimes without one are skipped.
fn on_docker() -> bool {
    std::env::var("ISOBOX_TEST_BACKEND").is_ok_and(|b| b == "docker")
}

/// An executor offering `rt` alone, the host's toolchains off: as the service runs it (the
/// runtime's env, its root in a native sandbox, or its image on docker).
fn executor_of(rt: &Runtime) -> Executor {
    let host =
        NativeBackend::new(NativeConfig::default()).expect("native backend (tests run as root)");
    let docker = on_docker();
    let make: isobox_core::service::BackendMaker = Arc::new(move |rt: &Runtime| {
        let b: Arc<dyn Backend> = if docker {
            Arc::new(DockerBackend::new(DockerConfig {
                image: rt.manifest.image.clone().expect("checked by the caller"),
                pool: 0,
                instance: format!("conf-{}-{}", std::process::id(), rt.manifest.name),
                ..DockerConfig::default()
            })?)
        } else {
            Arc::new(NativeBackend::new(NativeConfig {
                rootfs: RootFs::Dir(rt.root.clone()),
                ..NativeConfig::default()
            })?)
        };
        Ok(b)
    });
    Executor::new(Arc::new(host), LanguageTable::builtin(), Policy::default()).with_runtimes(
        vec![rt.clone()],
        make,
        false,
    )
}

fn run(
    ex: &Executor,
    lang: &str,
    code: &str,
    f: impl FnOnce(&mut ExecuteRequest),
) -> ExecutionResult {
    let mut req = ExecuteRequest {
        language: lang.into(),
        code: Some(code.into()),
        version: Some(ex.runtimes()[0].name().to_string()),
        ..Default::default()
    };
    f(&mut req);
    ex.execute(&req)
        .unwrap_or_else(|e| panic!("{lang}: execute failed: {e}"))
}

fn show(r: &ExecutionResult) -> String {
    let mut s = format!(
        "status {} exit {:?} signal {:?}\nstdout: {:?}\nstderr: {}",
        r.run.status.as_str(),
        r.run.exit_code,
        r.run.signal,
        r.run.stdout,
        tail(&r.run.stderr)
    );
    if let Some(c) = &r.compile {
        s += &format!(
            "\ncompile: status {} exit {:?}\ncompile stdout: {}\ncompile stderr: {}",
            c.status.as_str(),
            c.exit_code,
            tail(&c.stdout),
            tail(&c.stderr)
        );
    }
    s
}

fn tail(s: &str) -> &str {
    let cut = s.len().saturating_sub(1500);
    let cut = (cut..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[cut..]
}

/// Runs the five programs of `lang` in `rt`; returns what went wrong.
fn check_runtime(lang: &str, rt: &Runtime) -> Vec<String> {
    let name = &rt.manifest.name;
    let ex = executor_of(rt);
    let language = ex.languages().get(lang).expect("in the table").clone();
    let backend = match ex.runtimes()[0].backend() {
        Ok(b) => b,
        Err(e) => return vec![format!("{lang} in {name}: {e}")],
    };
    let missing: Vec<_> = language
        .required_commands()
        .into_iter()
        .filter(|c| !backend.has_command(c))
        .collect();
    if !missing.is_empty() {
        return vec![format!(
            "{lang} in {name}: the runtime lacks {missing:?} (its packages: {:?})",
            rt.manifest.packages
        )];
    }
    let mut failures = Vec::new();
    // The version the manifest lists is the one the toolchain reports from inside the
    // sandbox now (on this backend).
    let listed = rt.version_of(lang).unwrap_or_default().to_string();
    let spec = ExecSpec::single(
        language.version.clone(),
        language
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Limits {
            wall: Duration::from_secs(20),
            cpu: Duration::from_secs(20),
            memory_bytes: 1 << 30,
            max_processes: 64,
            ..Limits::default()
        },
    );
    let reported = backend
        .execute(&spec)
        .ok()
        .and_then(|r| r.phases.into_iter().next())
        .map(|p| {
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&p.stdout),
                String::from_utf8_lossy(&p.stderr)
            )
        })
        .unwrap_or_default();
    eprintln!("[{lang} in {name}] version {listed}: {}", reported.trim());
    if listed.is_empty() || !reported.contains(&listed) {
        failures.push(format!(
            "{lang} in {name}: the manifest lists version {listed:?}, `{}` inside says {reported:?}",
            language.version.join(" ")
        ));
    }
    let progs = programs(lang);
    let hello = template(lang);
    let mut expect = |what: &str, r: &ExecutionResult, ok: bool| {
        eprintln!(
            "[{lang} in {name}] {what}: {} (compile {} ms, run {} ms)",
            r.run.status.as_str(),
            r.compile.as_ref().map_or(0, |c| c.wall_time_ms),
            r.run.wall_time_ms
        );
        if !ok {
            failures.push(format!("{lang} in {name}: {what}:\n{}", show(r)));
        }
    };

    let r = run(&ex, lang, &hello, |_| {});
    let ok = r.run.status.as_str() == "ok" && r.run.stdout == "Hello, world!\n";
    expect("hello (template, no stdin)", &r, ok);

    let r = run(&ex, lang, &hello, |q| q.stdin = Some(ECHO_STDIN.into()));
    let ok = r.run.status.as_str() == "ok" && r.run.stdout == "Hello, Ada Lovelace!\n";
    expect("stdin echo (template)", &r, ok);

    match progs.args {
        Some(code) => {
            let r = run(&ex, lang, code, |q| {
                q.args = Some(ARGS.iter().map(|a| a.to_string()).collect())
            });
            let ok = r.run.status.as_str() == "ok" && r.run.stdout == "one\ntwo words\n--three\n";
            expect("arguments", &r, ok);
        }
        None => eprintln!(
            "[{lang} in {name}] arguments: not applicable ({})",
            progs.note
        ),
    }

    let r = run(&ex, lang, progs.runtime_error, |_| {});
    let compiled_ok = r.compile.as_ref().is_none_or(|c| c.status.as_str() == "ok");
    let ok = compiled_ok
        && match progs.error_signal {
            None => {
                r.run.status.as_str() == "runtime_error" && r.run.exit_code.is_some_and(|c| c != 0)
            }
            Some(sig) => r.run.status.as_str() == "signal" && r.run.signal.as_deref() == Some(sig),
        };
    expect(
        "runtime error (non-zero exit, or the language's abort)",
        &r,
        ok,
    );

    match (language.compiled(), progs.compile_error) {
        (true, Some(code)) => {
            let r = run(&ex, lang, code, |_| {});
            let ok = r.run.status.as_str() == "compile_error"
                && r.compile
                    .as_ref()
                    .is_some_and(|c| c.status.as_str() != "ok")
                && r.run.stdout.is_empty();
            expect("compile error", &r, ok);
        }
        (false, None) => {}
        (compiled, prog) => failures.push(format!(
            "{lang}: compiled is {compiled} but a compile-error program is {}",
            if prog.is_some() { "given" } else { "missing" }
        )),
    }
    failures
}

/// The built runtimes that provide `lang`.
fn providing(lang: &str) -> Vec<Runtime> {
    runtimes::scan(&runtimes_dir())
        .into_iter()
        .filter(|rt| rt.manifest.languages.iter().any(|p| p.language == lang))
        .collect()
}

/// For a language no built runtime provides: a failure with `ISOBOX_REQUIRE_RUNTIMES`.
fn assert_runtimes_not_required(lang: &str) {
    assert!(
        std::env::var_os("ISOBOX_REQUIRE_RUNTIMES").is_none(),
        "ISOBOX_REQUIRE_RUNTIMES is set and no runtime providing {lang} is built in {}",
        runtimes_dir().display()
    );
}

/// Checks `lang` in every built runtime that provides it.
fn conformance(lang: &str) {
    let dir = runtimes_dir();
    let mut built = providing(lang);
    if on_docker() {
        let (with, without): (Vec<Runtime>, Vec<Runtime>) = built
            .into_iter()
            .partition(|rt| rt.manifest.image.is_some());
        for rt in &without {
            eprintln!(
                "conformance: {lang} in {}: no docker image, skipped on docker \
                 (isobox runtime build --docker {})",
                rt.manifest.name, rt.manifest.name
            );
        }
        if with.is_empty() {
            return;
        }
        built = with;
    }
    if built.is_empty() {
        assert_runtimes_not_required(lang);
        let defs: Vec<String> = Definitions::builtin()
            .runtimes
            .into_iter()
            .filter(|d| d.languages.iter().any(|l| l == lang))
            .map(|d| d.name)
            .collect();
        eprintln!(
            "conformance: SKIPPED {lang}: no runtime providing it is built in {} \
             (build one of {defs:?} with `isobox runtime build NAME`, or all with `--all`)",
            dir.display()
        );
        return;
    }
    let mut failures = Vec::new();
    for rt in &built {
        failures.extend(check_runtime(lang, rt));
    }
    assert!(
        failures.is_empty(),
        "{} conformance failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The table, the programs here, the Playground templates and the runtime definitions agree:
/// every language has its programs, a template and a runtime that provides it; every runtime
/// provides languages of the table.
#[test]
fn every_language_has_programs_a_template_and_a_runtime() {
    let table = LanguageTable::builtin();
    let names: Vec<&str> = table.all().iter().map(|l| l.name.as_str()).collect();
    assert!(names.len() >= 40, "{} languages: {names:?}", names.len());
    let defs = Definitions::builtin();
    let templates = templates();
    for l in table.all() {
        let progs = programs(&l.name);
        assert_eq!(
            progs.compile_error.is_some(),
            l.compiled(),
            "{}: a compile-error program exactly for compiled languages",
            l.name
        );
        assert!(progs.args.is_some() || !progs.note.is_empty(), "{}", l.name);
        let t = template(&l.name);
        assert!(!t.trim().is_empty(), "{}", l.name);
        assert!(
            defs.runtimes
                .iter()
                .any(|d| d.languages.iter().any(|x| x == &l.name)),
            "no runtime definition provides {}",
            l.name
        );
    }
    for p in PROGRAMS {
        assert!(
            names.contains(&p.lang),
            "programs for unknown language {}",
            p.lang
        );
    }
    for (name, _) in &templates {
        assert!(
            names.contains(&name.as_str()),
            "template for unknown language {name}"
        );
    }
    for d in &defs.runtimes {
        for l in &d.languages {
            assert!(
                names.contains(&l.as_str()),
                "runtime {} names unknown language {l}",
                d.name
            );
        }
    }
}

/// The built runtimes that provide `lang` and run on this backend (see `conformance`).
/// With `ISOBOX_REQUIRE_RUNTIMES` none is a failure.
fn built_for(lang: &str) -> Vec<Runtime> {
    let found: Vec<Runtime> = providing(lang)
        .into_iter()
        .filter(|rt| !on_docker() || rt.manifest.image.is_some())
        .collect();
    if found.is_empty() {
        assert_runtimes_not_required(lang);
    }
    found
}

/// The g++ runtimes' precompiled `bits/stdc++.h` is what a source including it gets (`-H`
/// marks a used .gch with `!`), and the JVM runtimes' javac archive maps (`-Xshare:on` makes a
/// JVM that cannot map its archive exit instead of carrying on without it). Both are read-only
/// parts of the root: the program cannot change them for a later caller.
#[test]
fn runtimes_ship_warm_compilers() {
    let pch = "#include <bits/stdc++.h>\nint main() { std::vector<int> v{2, 1}; std::sort(v.begin(), v.end()); std::cout << v[0] << std::endl; }\n";
    for rt in built_for("cpp") {
        let ex = executor_of(&rt);
        let r = run(&ex, "cpp", pch, |q| {
            q.compile_args = Some(vec!["-H".into()])
        });
        let c = r.compile.as_ref().expect("a compile step");
        assert_eq!(r.run.stdout, "1\n", "{}: {}", rt.manifest.name, show(&r));
        let gch = c
            .stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix("! ")
                    .filter(|p| p.ends_with("bits/stdc++.h.gch"))
            })
            .unwrap_or_else(|| {
                panic!(
                    "{}: the precompiled header was not used: {}",
                    rt.manifest.name,
                    tail(&c.stderr)
                )
            });
        let w = run(
            &ex,
            "cpp",
            &format!(
                "#include <cstdio>\nint main() {{ std::puts(std::fopen(\"{gch}\", \"r+\") ? \"writable\" : \"read-only\"); }}\n"
            ),
            |_| {},
        );
        assert_eq!(w.run.stdout, "read-only\n", "{}", show(&w));
    }
    let java = "public class Main { public static void main(String[] a) { System.out.println(\"hello\"); } }\n";
    for rt in built_for("java") {
        let ex = executor_of(&rt);
        let r = run(&ex, "java", java, |q| {
            q.compile_args = Some(vec!["-J-Xshare:on".into()])
        });
        assert_eq!(
            r.run.stdout,
            "hello\n",
            "{}: javac could not map its archive: {}",
            rt.manifest.name,
            show(&r)
        );
    }
}

/// Which runtimes are built here and which are not (printed for the log; never fails).
#[test]
fn runtimes_built_here() {
    let dir = runtimes_dir();
    let built: Vec<String> = runtimes::scan(&dir)
        .into_iter()
        .map(|r| r.manifest.name)
        .collect();
    let missing: Vec<String> = Definitions::builtin()
        .runtimes
        .into_iter()
        .map(|d| d.name)
        .filter(|n| !built.contains(n))
        .collect();
    eprintln!(
        "runtimes in {}: built {built:?}; not built {missing:?}",
        dir.display()
    );
}

macro_rules! conformance_tests {
    ($($lang:ident),* $(,)?) => {
        $(
            #[test]
            fn $lang() {
                conformance(stringify!($lang));
            }
        )*

        /// Every language of the table has its test above.
        #[test]
        fn every_language_has_a_test() {
            let tested = [$(stringify!($lang)),*];
            for l in LanguageTable::builtin().all() {
                assert!(tested.contains(&l.name.as_str()), "no conformance test for {}", l.name);
            }
        }
    };
}

conformance_tests!(
    python,
    pypy,
    javascript,
    java,
    c,
    cpp,
    rust,
    go,
    ruby,
    php,
    bash,
    lua,
    perl,
    typescript,
    coffeescript,
    csharp,
    kotlin,
    scala,
    groovy,
    clojure,
    fortran,
    d,
    ada,
    objectivec,
    haskell,
    ocaml,
    sml,
    erlang,
    elixir,
    pascal,
    cobol,
    commonlisp,
    scheme,
    racket,
    prolog,
    tcl,
    awk,
    sql,
    raku,
    r,
    octave,
    assembly,
    vala,
    crystal,
);
