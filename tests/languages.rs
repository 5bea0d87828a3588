//! Every language of the built-in table, end to end in the real sandbox: a multi-file program
//! (args, stdin, a data file, a second source file), compile/syntax errors, exit codes, UTF-8,
//! plus the `isobox run` / `isobox languages` command line.
use crate::common::*;

use isobox_core::ExecutionResult;

// ---------------------------------------------------------------------------------------------
// What every full program gets and checks.
// ---------------------------------------------------------------------------------------------

/// The program's arguments (one with a space, one non-ASCII).
const ARGS: [&str; 3] = ["a", "b c", "ünï"];
/// The program's stdin; every full program compares it byte for byte.
const STDIN: &str = "first line\nsecond ünï 🌎\n";
/// `data.txt`, the data file given next to the sources.
const DATA: &str = "data 42 ü\n";
/// Stdin of the UTF-8 round trip.
const UTF8_STDIN: &str = "ünï → 日本語 ✓\nzweite Zeile 🌎\n";
/// What the UTF-8 programs print: a greeting, then their stdin as is.
const UTF8_OUT: &str = "Hello 🌎!\nünï → 日本語 ✓\nzweite Zeile 🌎\n";

const ALL_LANGUAGES: [&str; 11] = [
    "python",
    "javascript",
    "java",
    "c",
    "cpp",
    "rust",
    "go",
    "ruby",
    "php",
    "bash",
    "lua",
];

fn compiled(lang: &str) -> bool {
    matches!(lang, "java" | "c" | "cpp" | "rust" | "go")
}

/// Timing line for the test log (`cargo nextest run --no-capture` shows it).
fn timing(lang: &str, what: &str, r: &ExecutionResult) {
    match &r.compile {
        Some(c) => eprintln!(
            "[{lang}] {what}: compile {} ms wall / {} ms cpu, run {} ms wall",
            c.wall_time_ms, c.cpu_time_ms, r.wall_time_ms
        ),
        None => eprintln!("[{lang}] {what}: run {} ms wall", r.wall_time_ms),
    }
}

/// Asserts a successful compile step for compiled languages (shows the compiler's output if not).
fn assert_compiled(lang: &str, r: &ExecutionResult) {
    if compiled(lang) {
        let c = r
            .compile
            .as_ref()
            .unwrap_or_else(|| panic!("{lang} has a compile step: {r:?}"));
        assert_eq!(c.status, "ok", "compile failed:\n{}\n{r:?}", c.stderr);
    } else {
        assert!(r.compile.is_none(), "{lang} has no compile step: {r:?}");
    }
}

/// Runs the entry file, then the other sources, then `data.txt`, with ARGS and STDIN; the
/// program must print exactly `OK`.
fn check_full(lang: &str, sources: &[(&str, &str)]) {
    let mut list = sources.to_vec();
    list.push(("data.txt", DATA));
    let r = run_with(lang, "", |req| {
        req.code = None;
        req.files = Some(files(&list));
        req.stdin = Some(STDIN.into());
        req.args = Some(ARGS.iter().map(|s| s.to_string()).collect());
    });
    timing(lang, "full program", &r);
    assert_eq!(r.language, lang, "{r:?}");
    assert!(!r.version.is_empty(), "no version: {r:?}");
    assert_compiled(lang, &r);
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    assert_eq!(r.signal, None, "{r:?}");
    assert_eq!(r.stdout, "OK\n", "{r:?}");
    assert!(!r.stdout_truncated && !r.stderr_truncated, "{r:?}");
}

/// A compiled language's compile error: reported as such, with the compiler's message, and the
/// program never runs.
fn check_compile_error(lang: &str, code: &str, markers: &[&str]) {
    let r = run_code(lang, code);
    timing(lang, "compile error", &r);
    assert_eq!(r.status, "compile_error", "{r:?}");
    let c = r
        .compile
        .as_ref()
        .unwrap_or_else(|| panic!("compile_error without a compile result: {r:?}"));
    assert_eq!(c.status, "runtime_error", "{r:?}");
    assert_ne!(c.exit_code, Some(0), "{r:?}");
    assert!(!c.stderr.trim().is_empty(), "empty compiler stderr: {r:?}");
    for m in markers {
        assert!(
            c.stderr.contains(m),
            "compiler stderr does not mention {m:?}:\n{}\n{r:?}",
            c.stderr
        );
    }
    // The run step never happened.
    assert_eq!(r.stdout, "", "{r:?}");
    assert_eq!(r.stderr, "", "{r:?}");
    assert_eq!(r.exit_code, None, "{r:?}");
}

/// An interpreted language's syntax error: a runtime error whose message names the problem, and
/// nothing of the program ran.
fn check_syntax_error(lang: &str, code: &str, marker: &str) {
    let r = run_code(lang, code);
    timing(lang, "syntax error", &r);
    assert!(r.compile.is_none(), "{r:?}");
    assert_eq!(r.status, "runtime_error", "{r:?}");
    assert!(
        matches!(r.exit_code, Some(c) if c != 0),
        "expected a non-zero exit code: {r:?}"
    );
    // PHP's CLI may print its parse error to stdout; look at both.
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains(marker), "no {marker:?} in the output: {r:?}");
    assert!(
        !all.contains("not reached"),
        "code before the syntax error ran: {r:?}"
    );
}

/// The program prints `before exit` and exits with code 3.
fn check_exit3(lang: &str, code: &str) {
    let r = run_code(lang, code);
    timing(lang, "exit 3", &r);
    assert_compiled(lang, &r);
    assert_eq!(r.status, "runtime_error", "{r:?}");
    assert_eq!(r.exit_code, Some(3), "{r:?}");
    assert_eq!(r.signal, None, "{r:?}");
    assert_eq!(r.stdout, "before exit\n", "{r:?}");
}

/// The program prints `Hello 🌎!` and echoes its stdin.
fn check_utf8(lang: &str, code: &str) {
    let r = run_with(lang, code, |req| req.stdin = Some(UTF8_STDIN.into()));
    timing(lang, "utf-8", &r);
    assert_compiled(lang, &r);
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    assert_eq!(r.stdout, UTF8_OUT, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Python.
// ---------------------------------------------------------------------------------------------

mod python {
    use super::*;

    const MAIN: &str = r##"import sys
import helper

problems = []
args = sys.argv[1:]
if args != ["a", "b c", "ünï"]:
    problems.append("args: %r" % (args,))
stdin = sys.stdin.read()
if stdin != "first line\nsecond ünï 🌎\n":
    problems.append("stdin: %r" % stdin)
with open("data.txt", encoding="utf-8") as f:
    data = f.read()
if data != "data 42 ü\n":
    problems.append("data: %r" % data)
if helper.answer() != 42:
    problems.append("helper: %r" % helper.answer())
if problems:
    print("; ".join(problems))
    sys.exit(1)
print("OK")
"##;

    const HELPER: &str = "def answer():\n    return 6 * 7\n";

    #[test]
    fn full_program() {
        check_full("python", &[("main.py", MAIN), ("helper.py", HELPER)]);
    }

    #[test]
    fn syntax_error() {
        check_syntax_error(
            "python",
            "print('not reached')\ndef f(:\n    pass\n",
            "SyntaxError",
        );
    }

    #[test]
    fn exit_code() {
        check_exit3("python", "import sys\nprint('before exit')\nsys.exit(3)\n");
    }

    #[test]
    fn utf8() {
        check_utf8(
            "python",
            "import sys\nprint('Hello 🌎!')\nsys.stdout.write(sys.stdin.read())\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JavaScript (node).
// ---------------------------------------------------------------------------------------------

mod javascript {
    use super::*;

    const MAIN: &str = r##"const fs = require('fs');
const helper = require('./helper');

const problems = [];
const args = process.argv.slice(2);
if (JSON.stringify(args) !== JSON.stringify(['a', 'b c', 'ünï'])) {
  problems.push('args: ' + JSON.stringify(args));
}
const stdin = fs.readFileSync(0, 'utf8');
if (stdin !== 'first line\nsecond ünï 🌎\n') problems.push('stdin: ' + JSON.stringify(stdin));
const data = fs.readFileSync('data.txt', 'utf8');
if (data !== 'data 42 ü\n') problems.push('data: ' + JSON.stringify(data));
if (helper.answer() !== 42) problems.push('helper: ' + helper.answer());
if (problems.length > 0) {
  console.log(problems.join('; '));
  process.exitCode = 1;
} else {
  console.log('OK');
}
"##;

    const HELPER: &str = "module.exports = { answer: () => 6 * 7 };\n";

    #[test]
    fn full_program() {
        check_full("javascript", &[("main.js", MAIN), ("helper.js", HELPER)]);
    }

    #[test]
    fn syntax_error() {
        check_syntax_error(
            "javascript",
            "console.log('not reached');\nfunction (\n",
            "SyntaxError",
        );
    }

    #[test]
    fn exit_code() {
        check_exit3(
            "javascript",
            "console.log('before exit');\nprocess.exit(3);\n",
        );
    }

    #[test]
    fn utf8() {
        check_utf8(
            "javascript",
            "process.stdout.write('Hello 🌎!\\n' + require('fs').readFileSync(0, 'utf8'));\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Java.
// ---------------------------------------------------------------------------------------------

mod java {
    use super::*;

    const MAIN: &str = r##"import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

public class Main {
    public static void main(String[] args) throws Exception {
        List<String> problems = new ArrayList<>();
        if (!Arrays.asList(args).equals(Arrays.asList("a", "b c", "ünï"))) {
            problems.add("args: " + Arrays.toString(args));
        }
        String stdin = new String(System.in.readAllBytes(), StandardCharsets.UTF_8);
        if (!stdin.equals("first line\nsecond ünï 🌎\n")) {
            problems.add("stdin: " + stdin);
        }
        String data = new String(Files.readAllBytes(Paths.get("data.txt")), StandardCharsets.UTF_8);
        if (!data.equals("data 42 ü\n")) {
            problems.add("data: " + data);
        }
        if (Helper.answer() != 42) {
            problems.add("helper: " + Helper.answer());
        }
        if (!problems.isEmpty()) {
            System.out.println(String.join("; ", problems));
            System.exit(1);
        }
        System.out.println("OK");
    }
}
"##;

    const HELPER: &str = r##"public class Helper {
    public static int answer() {
        return 6 * 7;
    }
}
"##;

    #[test]
    fn full_program() {
        check_full("java", &[("Main.java", MAIN), ("Helper.java", HELPER)]);
    }

    #[test]
    fn compile_error() {
        check_compile_error(
            "java",
            "public class Main {\n    public static void main(String[] a) {\n        int x = \"s\";\n    }\n}\n",
            &["error:", "incompatible types"],
        );
    }

    #[test]
    fn exit_code() {
        check_exit3(
            "java",
            "public class Main {\n    public static void main(String[] a) {\n        System.out.println(\"before exit\");\n        System.exit(3);\n    }\n}\n",
        );
    }

    #[test]
    fn utf8() {
        check_utf8(
            "java",
            r##"public class Main {
    public static void main(String[] args) throws Exception {
        byte[] in = System.in.readAllBytes();
        System.out.println("Hello 🌎!");
        System.out.print(new String(in, java.nio.charset.StandardCharsets.UTF_8));
        System.out.flush();
    }
}
"##,
        );
    }

    /// `code` whose public class is not `Main`: the entry file is named after it.
    #[test]
    fn public_class_not_named_main() {
        let code = r##"import java.util.*;

class Util {
    static String twice(String s) { return s + s; }
}

public class Solution {
    public static void main(String[] args) {
        Scanner in = new Scanner(System.in);
        System.out.println(Util.twice(in.nextLine()) + " " + args.length);
    }
}
"##;
        let r = run_with("java", code, |req| {
            req.stdin = Some("ab\n".into());
            req.args = Some(vec!["x".into()]);
        });
        timing("java", "public class Solution", &r);
        assert_compiled("java", &r);
        assert_eq!(r.status, "ok", "{r:?}");
        assert_eq!(r.exit_code, Some(0), "{r:?}");
        assert_eq!(r.stdout, "abab 1\n", "{r:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// C.
// ---------------------------------------------------------------------------------------------

mod c {
    use super::*;

    const MAIN: &str = r##"#include <stdio.h>
#include <string.h>
#include "helper.h"

static char buf[4096];

static void read_all(FILE *f) {
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
}

int main(int argc, char **argv) {
    int bad = 0;
    if (argc != 4 || strcmp(argv[1], "a") || strcmp(argv[2], "b c") || strcmp(argv[3], "ünï")) {
        printf("args: argc=%d; ", argc);
        bad = 1;
    }
    read_all(stdin);
    if (strcmp(buf, "first line\nsecond ünï 🌎\n")) {
        printf("stdin: [%s]; ", buf);
        bad = 1;
    }
    FILE *f = fopen("data.txt", "rb");
    if (!f) {
        perror("data.txt");
        return 1;
    }
    read_all(f);
    fclose(f);
    if (strcmp(buf, "data 42 ü\n")) {
        printf("data: [%s]; ", buf);
        bad = 1;
    }
    if (helper_answer() != 42) {
        printf("helper: %d; ", helper_answer());
        bad = 1;
    }
    if (bad) {
        printf("\n");
        return 1;
    }
    puts("OK");
    return 0;
}
"##;

    const HELPER_H: &str = "#ifndef HELPER_H\n#define HELPER_H\nint helper_answer(void);\n#endif\n";
    const HELPER_C: &str = "#include \"helper.h\"\nint helper_answer(void) { return 6 * 7; }\n";

    #[test]
    fn full_program() {
        check_full(
            "c",
            &[
                ("main.c", MAIN),
                ("helper.h", HELPER_H),
                ("helper.c", HELPER_C),
            ],
        );
    }

    #[test]
    fn compile_error() {
        check_compile_error(
            "c",
            "int main(void) {\n    return missing_symbol;\n}\n",
            &["error:", "missing_symbol"],
        );
    }

    #[test]
    fn exit_code() {
        check_exit3(
            "c",
            "#include <stdio.h>\nint main(void) {\n    puts(\"before exit\");\n    return 3;\n}\n",
        );
    }

    #[test]
    fn utf8() {
        check_utf8(
            "c",
            "#include <stdio.h>\nint main(void) {\n    int ch;\n    puts(\"Hello 🌎!\");\n    while ((ch = getchar()) != EOF) putchar(ch);\n    return 0;\n}\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// C++.
// ---------------------------------------------------------------------------------------------

mod cpp {
    use super::*;

    const MAIN: &str = r##"#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>
#include "helper.hpp"

int main(int argc, char **argv) {
    std::vector<std::string> problems;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args != std::vector<std::string>{"a", "b c", "ünï"}) {
        problems.push_back("args: " + std::to_string(args.size()));
    }
    std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    if (in != "first line\nsecond ünï 🌎\n") problems.push_back("stdin: " + in);
    std::ifstream f("data.txt", std::ios::binary);
    std::stringstream data;
    data << f.rdbuf();
    if (data.str() != "data 42 ü\n") problems.push_back("data: " + data.str());
    if (helper::answer() != 42) problems.push_back("helper");
    if (!problems.empty()) {
        for (const auto &p : problems) std::cout << p << "; ";
        std::cout << std::endl;
        return 1;
    }
    std::cout << "OK" << std::endl;
    return 0;
}
"##;

    const HELPER_HPP: &str = "#pragma once\nnamespace helper {\nint answer();\n}\n";
    const HELPER_CPP: &str =
        "#include \"helper.hpp\"\nnamespace helper {\nint answer() { return 6 * 7; }\n}\n";

    #[test]
    fn full_program() {
        check_full(
            "cpp",
            &[
                ("main.cpp", MAIN),
                ("helper.hpp", HELPER_HPP),
                ("helper.cpp", HELPER_CPP),
            ],
        );
    }

    #[test]
    fn compile_error() {
        check_compile_error(
            "cpp",
            "int main() {\n    return missing_symbol;\n}\n",
            &["error:", "missing_symbol"],
        );
    }

    #[test]
    fn exit_code() {
        check_exit3(
            "cpp",
            "#include <iostream>\nint main() {\n    std::cout << \"before exit\" << std::endl;\n    return 3;\n}\n",
        );
    }

    #[test]
    fn utf8() {
        check_utf8(
            "cpp",
            "#include <iostream>\nint main() {\n    std::cout << \"Hello 🌎!\\n\" << std::cin.rdbuf();\n    return 0;\n}\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Rust (the sandbox's rustc, Debian's 1.63).
// ---------------------------------------------------------------------------------------------

mod rust {
    use super::*;

    const MAIN: &str = r##"mod helper;

use std::io::Read;

fn main() {
    let mut problems = Vec::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args != ["a", "b c", "ünï"] {
        problems.push(format!("args: {:?}", args));
    }
    let mut stdin = String::new();
    std::io::stdin().read_to_string(&mut stdin).unwrap();
    if stdin != "first line\nsecond ünï 🌎\n" {
        problems.push(format!("stdin: {:?}", stdin));
    }
    let data = std::fs::read_to_string("data.txt").unwrap();
    if data != "data 42 ü\n" {
        problems.push(format!("data: {:?}", data));
    }
    if helper::answer() != 42 {
        problems.push(format!("helper: {}", helper::answer()));
    }
    if !problems.is_empty() {
        println!("{}", problems.join("; "));
        std::process::exit(1);
    }
    println!("OK");
}
"##;

    const HELPER: &str = "pub fn answer() -> i32 {\n    6 * 7\n}\n";

    #[test]
    fn full_program() {
        check_full("rust", &[("main.rs", MAIN), ("helper.rs", HELPER)]);
    }

    #[test]
    fn compile_error() {
        check_compile_error(
            "rust",
            "fn main() {\n    let x: i32 = \"s\";\n    println!(\"{}\", x);\n}\n",
            &["error[E0308]"],
        );
    }

    #[test]
    fn exit_code() {
        check_exit3(
            "rust",
            "fn main() {\n    println!(\"before exit\");\n    std::process::exit(3);\n}\n",
        );
    }

    #[test]
    fn utf8() {
        check_utf8(
            "rust",
            "use std::io;\n\nfn main() {\n    println!(\"Hello 🌎!\");\n    io::copy(&mut io::stdin(), &mut io::stdout()).unwrap();\n}\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Go.
// ---------------------------------------------------------------------------------------------

mod go {
    use super::*;

    const MAIN: &str = r##"package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
)

func main() {
	var problems []string
	args := os.Args[1:]
	if !reflect.DeepEqual(args, []string{"a", "b c", "ünï"}) {
		problems = append(problems, fmt.Sprintf("args: %q", args))
	}
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil || string(stdin) != "first line\nsecond ünï 🌎\n" {
		problems = append(problems, fmt.Sprintf("stdin: %q %v", stdin, err))
	}
	data, err := os.ReadFile("data.txt")
	if err != nil || string(data) != "data 42 ü\n" {
		problems = append(problems, fmt.Sprintf("data: %q %v", data, err))
	}
	if answer() != 42 {
		problems = append(problems, fmt.Sprintf("helper: %d", answer()))
	}
	if len(problems) > 0 {
		fmt.Println(strings.Join(problems, "; "))
		os.Exit(1)
	}
	fmt.Println("OK")
}
"##;

    const HELPER: &str = "package main\n\nfunc answer() int {\n\treturn 6 * 7\n}\n";

    #[test]
    fn full_program() {
        check_full("go", &[("main.go", MAIN), ("helper.go", HELPER)]);
    }

    #[test]
    fn compile_error() {
        // Go's messages do not say "error": `./main.go:4:2: undefined: missingFunc`.
        check_compile_error(
            "go",
            "package main\n\nfunc main() {\n\tmissingFunc()\n}\n",
            &["undefined: missingFunc"],
        );
    }

    #[test]
    fn exit_code() {
        check_exit3(
            "go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tfmt.Println(\"before exit\")\n\tos.Exit(3)\n}\n",
        );
    }

    #[test]
    fn utf8() {
        check_utf8(
            "go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"io\"\n\t\"os\"\n)\n\nfunc main() {\n\tfmt.Println(\"Hello 🌎!\")\n\tio.Copy(os.Stdout, os.Stdin)\n}\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Ruby.
// ---------------------------------------------------------------------------------------------

mod ruby {
    use super::*;

    const MAIN: &str = r##"require_relative 'helper'

problems = []
problems << "args: #{ARGV.inspect}" unless ARGV == ['a', 'b c', 'ünï']
stdin = $stdin.read
problems << "stdin: #{stdin.inspect}" unless stdin == "first line\nsecond ünï 🌎\n"
data = File.read('data.txt', encoding: 'UTF-8')
problems << "data: #{data.inspect}" unless data == "data 42 ü\n"
problems << "helper: #{Helper.answer}" unless Helper.answer == 42
unless problems.empty?
  puts problems.join('; ')
  exit 1
end
puts 'OK'
"##;

    const HELPER: &str = "module Helper\n  def self.answer\n    6 * 7\n  end\nend\n";

    #[test]
    fn full_program() {
        check_full("ruby", &[("main.rb", MAIN), ("helper.rb", HELPER)]);
    }

    #[test]
    fn syntax_error() {
        check_syntax_error("ruby", "puts 'not reached'\ndef f(\n", "syntax error");
    }

    #[test]
    fn exit_code() {
        check_exit3("ruby", "puts 'before exit'\nexit 3\n");
    }

    #[test]
    fn utf8() {
        check_utf8("ruby", "puts 'Hello 🌎!'\nprint $stdin.read\n");
    }
}

// ---------------------------------------------------------------------------------------------
// PHP.
// ---------------------------------------------------------------------------------------------

mod php {
    use super::*;

    const MAIN: &str = r##"<?php
require __DIR__ . '/helper.php';

$problems = [];
$args = array_slice($argv, 1);
if ($args !== ['a', 'b c', 'ünï']) {
    $problems[] = 'args: ' . json_encode($args);
}
$stdin = file_get_contents('php://stdin');
if ($stdin !== "first line\nsecond ünï 🌎\n") {
    $problems[] = 'stdin: ' . json_encode($stdin);
}
$data = file_get_contents('data.txt');
if ($data !== "data 42 ü\n") {
    $problems[] = 'data: ' . json_encode($data);
}
if (helper_answer() !== 42) {
    $problems[] = 'helper: ' . helper_answer();
}
if ($problems) {
    echo implode('; ', $problems), "\n";
    exit(1);
}
echo "OK\n";
"##;

    const HELPER: &str = "<?php\nfunction helper_answer(): int {\n    return 6 * 7;\n}\n";

    #[test]
    fn full_program() {
        check_full("php", &[("main.php", MAIN), ("helper.php", HELPER)]);
    }

    #[test]
    fn syntax_error() {
        check_syntax_error(
            "php",
            "<?php\necho \"not reached\\n\";\nfunction (\n",
            "Parse error",
        );
    }

    #[test]
    fn exit_code() {
        check_exit3("php", "<?php\necho \"before exit\\n\";\nexit(3);\n");
    }

    #[test]
    fn utf8() {
        check_utf8(
            "php",
            "<?php\necho \"Hello 🌎!\\n\";\necho file_get_contents('php://stdin');\n",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bash.
// ---------------------------------------------------------------------------------------------

mod bash {
    use super::*;

    const MAIN: &str = r##"source ./helper.sh

problems=()
if [[ $# -ne 3 || $1 != "a" || $2 != "b c" || $3 != "ünï" ]]; then
    problems+=("args: $#: $*")
fi
IFS= read -r -d '' stdin || true
if [[ $stdin != $'first line\nsecond ünï 🌎\n' ]]; then
    problems+=("stdin: $stdin")
fi
IFS= read -r -d '' data < data.txt || true
if [[ $data != $'data 42 ü\n' ]]; then
    problems+=("data: $data")
fi
if [[ $(helper_answer) != 42 ]]; then
    problems+=("helper: $(helper_answer)")
fi
if (( ${#problems[@]} )); then
    printf '%s; ' "${problems[@]}"
    echo
    exit 1
fi
echo OK
"##;

    const HELPER: &str = "helper_answer() {\n    echo $((6 * 7))\n}\n";

    #[test]
    fn full_program() {
        check_full("bash", &[("main.sh", MAIN), ("helper.sh", HELPER)]);
    }

    #[test]
    fn syntax_error() {
        // Bash runs a script command by command, so nothing may come before the error.
        check_syntax_error("bash", "if then fi\n", "syntax error");
    }

    #[test]
    fn exit_code() {
        check_exit3("bash", "echo 'before exit'\nexit 3\n");
    }

    #[test]
    fn utf8() {
        check_utf8("bash", "echo 'Hello 🌎!'\ncat\n");
    }
}

// ---------------------------------------------------------------------------------------------
// Lua.
// ---------------------------------------------------------------------------------------------

mod lua {
    use super::*;

    const MAIN: &str = r##"local helper = require "helper"

local problems = {}
if #arg ~= 3 or arg[1] ~= "a" or arg[2] ~= "b c" or arg[3] ~= "ünï" then
  problems[#problems + 1] = "args: " .. table.concat(arg, "|")
end
local stdin = io.read("a")
if stdin ~= "first line\nsecond ünï 🌎\n" then
  problems[#problems + 1] = "stdin: " .. tostring(stdin)
end
local f = assert(io.open("data.txt", "rb"))
local data = f:read("a")
f:close()
if data ~= "data 42 ü\n" then
  problems[#problems + 1] = "data: " .. tostring(data)
end
if helper.answer() ~= 42 then
  problems[#problems + 1] = "helper: " .. tostring(helper.answer())
end
if #problems > 0 then
  print(table.concat(problems, "; "))
  os.exit(1)
end
print("OK")
"##;

    const HELPER: &str = "local M = {}\n\nfunction M.answer()\n  return 6 * 7\nend\n\nreturn M\n";

    #[test]
    fn full_program() {
        check_full("lua", &[("main.lua", MAIN), ("helper.lua", HELPER)]);
    }

    #[test]
    fn syntax_error() {
        check_syntax_error("lua", "print('not reached')\nx = = 1\n", "main.lua:2:");
    }

    #[test]
    fn exit_code() {
        check_exit3("lua", "print('before exit')\nos.exit(3)\n");
    }

    #[test]
    fn utf8() {
        check_utf8("lua", "print('Hello 🌎!')\nio.write(io.read('a'))\n");
    }
}

// ---------------------------------------------------------------------------------------------
// The command line: `isobox run` and `isobox languages`.
// ---------------------------------------------------------------------------------------------

mod cli {
    use super::*;

    use std::path::Path;
    use std::process::Output;
    use std::time::{Duration, Instant};

    fn show(o: &Output) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    fn p(path: &Path) -> &str {
        path.to_str().expect("UTF-8 temp path")
    }

    fn json(o: &Output) -> serde_json::Value {
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", show(o)))
    }

    /// Runs `isobox run FILES... EXTRA...`.
    fn run_files(paths: &[&Path], extra: &[&str]) -> Output {
        let mut args = vec!["run"];
        args.extend(paths.iter().map(|x| p(x)));
        args.extend_from_slice(extra);
        cli(&args)
    }

    const PY: &str = "import sys\nprint(sys.argv[1:], input())\nsys.exit(7)\n";

    #[test]
    fn python_exit_code_passthrough() {
        let dir = TempDir::new("cli-py-exit");
        let f = dir.file("prog.py", PY);
        let o = run_files(&[&f], &["--arg", "x", "--stdin", "ünï\n"]);
        assert_eq!(o.status.code(), Some(7), "{}", show(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "['x'] ünï\n",
            "{}",
            show(&o)
        );
    }

    #[test]
    fn python_json_and_extension() {
        let dir = TempDir::new("cli-py-json");
        let f = dir.file(
            "prog.py",
            "import sys\nprint(sys.argv[1:], input())\nprint('err', file=sys.stderr)\n",
        );
        let o = run_files(&[&f], &["--arg", "x", "--stdin", "hi\n", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let v = json(&o);
        assert_eq!(v["status"], "ok", "{v:#}");
        assert_eq!(v["language"], "python", "deduced from .py: {v:#}");
        assert_eq!(v["exit_code"], 0, "{v:#}");
        assert_eq!(v["stdout"], "['x'] hi\n", "{v:#}");
        assert_eq!(v["stderr"], "err\n", "{v:#}");
        assert!(v["compile"].is_null(), "{v:#}");
        assert!(
            v["version"].as_str().is_some_and(|s| !s.is_empty()),
            "{v:#}"
        );
        // A non-zero exit with --json: the result says so, isobox itself succeeds.
        let f = dir.file("seven.py", PY);
        let o = run_files(&[&f], &["--arg", "x", "--stdin", "hi\n", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let v = json(&o);
        assert_eq!(v["status"], "runtime_error", "{v:#}");
        assert_eq!(v["exit_code"], 7, "{v:#}");
    }

    #[test]
    fn python_timeout_is_124() {
        let dir = TempDir::new("cli-py-timeout");
        let f = dir.file("spin.py", "while True:\n    pass\n");
        let t = Instant::now();
        let o = run_files(&[&f], &["--timeout-ms", "300"]);
        let took = t.elapsed();
        assert_eq!(o.status.code(), Some(124), "{}", show(&o));
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let o = run_files(&[&f], &["--timeout-ms", "300", "--json"]);
        assert_eq!(json(&o)["status"], "timeout", "{}", show(&o));
    }

    /// `main.c` + `helper.c` + `helper.h`, compiled together.
    fn c_project(dir: &TempDir, main_body: &str) -> Vec<std::path::PathBuf> {
        let main = format!(
            "#include <stdio.h>\n#include \"helper.h\"\nint main(int argc, char **argv) {{\n{main_body}\n}}\n"
        );
        vec![
            dir.file("main.c", &main),
            dir.file(
                "helper.c",
                "#include \"helper.h\"\nint twice(int x) { return 2 * x; }\n",
            ),
            dir.file("helper.h", "int twice(int x);\n"),
        ]
    }

    const C_BODY: &str = r#"    char line[64] = "";
    if (!fgets(line, sizeof line, stdin)) return 99;
    printf("%s %d %s", argc > 1 ? argv[1] : "-", twice(21), line);
    return 7;"#;

    #[test]
    fn c_exit_code_passthrough() {
        let dir = TempDir::new("cli-c-exit");
        let paths = c_project(&dir, C_BODY);
        let refs: Vec<&Path> = paths.iter().map(|x| x.as_path()).collect();
        let o = run_files(&refs, &["--arg", "x", "--stdin", "ünï\n"]);
        assert_eq!(o.status.code(), Some(7), "{}", show(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "x 42 ünï\n",
            "{}",
            show(&o)
        );
    }

    #[test]
    fn c_json_and_extension() {
        let dir = TempDir::new("cli-c-json");
        let paths = c_project(
            &dir,
            "    printf(\"%s %d\\n\", argc > 1 ? argv[1] : \"-\", twice(21));\n    return 0;",
        );
        let refs: Vec<&Path> = paths.iter().map(|x| x.as_path()).collect();
        let o = run_files(&refs, &["--arg", "x", "--stdin", "unused", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let v = json(&o);
        assert_eq!(v["status"], "ok", "{v:#}");
        assert_eq!(v["language"], "c", "deduced from .c: {v:#}");
        assert_eq!(v["stdout"], "x 42\n", "{v:#}");
        assert_eq!(v["compile"]["status"], "ok", "{v:#}");
    }

    #[test]
    fn c_timeout_is_124() {
        let dir = TempDir::new("cli-c-timeout");
        let paths = c_project(
            &dir,
            "    volatile unsigned long n = 0;\n    for (;;) n += twice(1);\n    return 0;",
        );
        let refs: Vec<&Path> = paths.iter().map(|x| x.as_path()).collect();
        let o = run_files(&refs, &["--timeout-ms", "300"]);
        assert_eq!(o.status.code(), Some(124), "{}", show(&o));
    }

    #[test]
    fn c_compile_error_exit_code() {
        let dir = TempDir::new("cli-c-cerr");
        let paths = c_project(&dir, "    return missing_symbol;");
        let refs: Vec<&Path> = paths.iter().map(|x| x.as_path()).collect();
        let o = run_files(&refs, &[]);
        // 126: the program could not be built (not the compiler's own status).
        assert_eq!(o.status.code(), Some(126), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("missing_symbol"), "{}", show(&o));
        assert!(err.contains("compilation failed"), "{}", show(&o));
        assert!(o.stdout.is_empty(), "{}", show(&o));
    }

    #[test]
    fn unknown_extension_is_refused() {
        let dir = TempDir::new("cli-ext");
        let f = dir.file("prog.unknownext", "print(1)\n");
        let o = run_files(&[&f], &[]);
        // A usage error.
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--language"),
            "{}",
            show(&o)
        );
        // ... and `--language` overrides the extension.
        let o = run_files(&[&f], &["--language", "py"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n", "{}", show(&o));
    }

    #[test]
    fn languages_json_lists_all() {
        let t = Instant::now();
        let o = cli(&["languages", "--json"]);
        let took = t.elapsed();
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let v = json(&o);
        let list = v
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {v:#}"));
        let mut names: Vec<&str> = list.iter().filter_map(|l| l["name"].as_str()).collect();
        names.sort_unstable();
        // One entry per language and version (runtimes add versions): every language at least once.
        names.dedup();
        let table = isobox_core::LanguageTable::builtin();
        let mut want: Vec<&str> = table.all().iter().map(|l| l.name.as_str()).collect();
        want.sort_unstable();
        assert_eq!(names, want, "{v:#}");
        // The host has these; the table's other languages run from runtimes
        // (tests/conformance.rs) and may be unavailable here.
        for l in list
            .iter()
            .filter(|l| ALL_LANGUAGES.contains(&l["name"].as_str().unwrap_or_default()))
        {
            let name = l["name"].as_str().unwrap_or_default();
            assert_eq!(l["available"], true, "{name}: {l:#}");
            assert_eq!(l["compiled"], compiled(name), "{name}: {l:#}");
            let version = l["version"].as_str().unwrap_or_default();
            assert!(
                !version.is_empty() && version.chars().next().is_some_and(|c| c.is_ascii_digit()),
                "{name} has no version (took {took:?}; versions are probed from parallel \
                 threads, a 10 s run means a probe got stuck in the sandbox): {l:#}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Many languages at once, from one process (what the server does).
// ---------------------------------------------------------------------------------------------

mod concurrent {
    use super::*;

    /// Interpreted UTF-8 programs (no compile step, so a stuck run costs only its 5 s limit).
    const PROGRAMS: [(&str, &str); 6] = [
        (
            "python",
            "import sys\nprint('Hello 🌎!')\nsys.stdout.write(sys.stdin.read())\n",
        ),
        (
            "javascript",
            "process.stdout.write('Hello 🌎!\\n' + require('fs').readFileSync(0, 'utf8'));\n",
        ),
        ("ruby", "puts 'Hello 🌎!'\nprint $stdin.read\n"),
        (
            "php",
            "<?php\necho \"Hello 🌎!\\n\";\necho file_get_contents('php://stdin');\n",
        ),
        ("bash", "echo 'Hello 🌎!'\ncat\n"),
        ("lua", "print('Hello 🌎!')\nio.write(io.read('a'))\n"),
    ];

    #[test]
    fn interpreted_languages_in_parallel_threads() {
        let mut failures = Vec::new();
        for round in 0..3 {
            std::thread::scope(|s| {
                let handles: Vec<_> = PROGRAMS
                    .iter()
                    .chain(PROGRAMS.iter())
                    .map(|&(lang, code)| {
                        s.spawn(move || {
                            let r = run_with(lang, code, |req| {
                                req.stdin = Some(UTF8_STDIN.into());
                                req.limits = Some(limits(5000, 256));
                            });
                            (lang, r)
                        })
                    })
                    .collect();
                for h in handles {
                    let (lang, r) = h.join().expect("thread");
                    if r.status != "ok" || r.stdout != UTF8_OUT {
                        failures.push(format!("round {round} {lang}: {r:?}"));
                    }
                }
            });
        }
        assert!(
            failures.is_empty(),
            "{} of 36 concurrent runs failed (a `timeout` with no output and ~0 ms CPU means the \
             program never started: the sandbox init or payload is stuck, e.g. on a lock copied \
             from another thread of this process):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// A program opens its own stdio by name, as shell scripts and many judge solutions do
/// (`/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/proc/self/fd/N`): the pipes belong to the
/// run's uid (they were root's 0600 pipes on the native backend: "Permission denied").
#[test]
fn stdio_can_be_opened_by_name() {
    let r = run_with(
        "bash",
        "read a < /dev/stdin\necho \"in: $a\" > /dev/stdout\necho err > /dev/stderr\nhead -c 3 /proc/self/fd/0\necho\n",
        |q| q.stdin = Some("abc\nxyz\n".into()),
    );
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.stdout, "in: abc\nxyz\n", "{r:?}");
    assert_eq!(r.stderr, "err\n", "{r:?}");
}
