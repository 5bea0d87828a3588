// IsoBox Playground: plain JavaScript, no build step, nothing loaded from elsewhere.
// Runs programs through POST /api/v1/execute/stream (Server-Sent Events read with fetch).
"use strict";

// A hello-world per language (by the name /api/v1/languages gives); each reads a name on stdin.
const TEMPLATES = {
  python: 'import sys\n\nname = sys.stdin.readline().strip() or "world"\nprint(f"Hello, {name}!")\n',
  javascript: 'const name = require("fs").readFileSync(0, "utf8").trim() || "world";\nconsole.log(`Hello, ${name}!`);\n',
  java: 'import java.util.Scanner;\n\npublic class Main {\n    public static void main(String[] args) {\n        Scanner in = new Scanner(System.in);\n        String name = in.hasNextLine() ? in.nextLine().trim() : "";\n        System.out.println("Hello, " + (name.isEmpty() ? "world" : name) + "!");\n    }\n}\n',
  c: '#include <stdio.h>\n#include <string.h>\n\nint main(void) {\n    char name[100] = "";\n    if (fgets(name, sizeof name, stdin)) name[strcspn(name, "\\n")] = \'\\0\';\n    printf("Hello, %s!\\n", name[0] ? name : "world");\n    return 0;\n}\n',
  cpp: '#include <iostream>\n#include <string>\n\nint main() {\n    std::string name;\n    if (!std::getline(std::cin, name) || name.empty()) name = "world";\n    std::cout << "Hello, " << name << "!\\n";\n}\n',
  rust: 'use std::io::BufRead;\n\nfn main() {\n    let mut line = String::new();\n    std::io::stdin().lock().read_line(&mut line).unwrap();\n    let name = match line.trim() {\n        "" => "world",\n        n => n,\n    };\n    println!("Hello, {}!", name);\n}\n',
  go: 'package main\n\nimport (\n    "bufio"\n    "fmt"\n    "os"\n    "strings"\n)\n\nfunc main() {\n    line, _ := bufio.NewReader(os.Stdin).ReadString(\'\\n\')\n    name := strings.TrimSpace(line)\n    if name == "" {\n        name = "world"\n    }\n    fmt.Printf("Hello, %s!\\n", name)\n}\n',
  ruby: 'name = ($stdin.gets || "").strip\nname = "world" if name.empty?\nputs "Hello, #{name}!"\n',
  php: '<?php\n$name = trim(fgets(STDIN) ?: "");\nif ($name === "") $name = "world";\necho "Hello, $name!\\n";\n',
  bash: 'read -r name || true\necho "Hello, ${name:-world}!"\n',
  lua: 'local name = io.read("l") or ""\nif name == "" then name = "world" end\nprint("Hello, " .. name .. "!")\n',
  perl: "my $name = <STDIN> // \"\";\nchomp $name;\n$name =~ s/^\\s+|\\s+$//g;\n$name = \"world\" if $name eq \"\";\nprint \"Hello, $name!\\n\";\n",
  pypy: "import sys\n\nname = sys.stdin.readline().strip() or \"world\"\nprint(f\"Hello, {name}!\")\n",
  typescript: "import * as fs from \"fs\";\n\nconst name: string = fs.readFileSync(0, \"utf8\").split(\"\\n\")[0].trim() || \"world\";\nconsole.log(`Hello, ${name}!`);\n",
  coffeescript: "name = require('fs').readFileSync(0, 'utf8').split('\\n')[0].trim() or 'world'\nconsole.log \"Hello, #{name}!\"\n",
  csharp: "using System;\n\nclass Program\n{\n    static void Main()\n    {\n        string name = (Console.ReadLine() ?? \"\").Trim();\n        if (name == \"\") name = \"world\";\n        Console.WriteLine($\"Hello, {name}!\");\n    }\n}\n",
  kotlin: "fun main() {\n    val name = readLine()?.trim().orEmpty().ifEmpty { \"world\" }\n    println(\"Hello, $name!\")\n}\n",
  scala: "object Main {\n  def main(args: Array[String]): Unit = {\n    val line = scala.io.StdIn.readLine()\n    val name = if (line == null || line.trim.isEmpty) \"world\" else line.trim\n    println(s\"Hello, $name!\")\n  }\n}\n",
  groovy: "def line = System.in.newReader().readLine()\ndef name = line?.trim() ?: \"world\"\nprintln \"Hello, ${name}!\"\n",
  clojure: "(require '[clojure.string :as str])\n\n(let [line (str/trim (or (read-line) \"\"))\n      name (if (str/blank? line) \"world\" line)]\n  (println (str \"Hello, \" name \"!\")))\n",
  fortran: "program hello\n  implicit none\n  character(len=256) :: name\n  integer :: ios\n  name = ''\n  read(*, '(A)', iostat=ios) name\n  if (ios /= 0 .or. len_trim(name) == 0) name = 'world'\n  print '(A)', 'Hello, ' // trim(adjustl(name)) // '!'\nend program hello\n",
  d: "import std.stdio, std.string;\n\nvoid main()\n{\n    string line = readln();\n    string name = line is null ? \"\" : line.strip();\n    if (name.length == 0) name = \"world\";\n    writeln(\"Hello, \", name, \"!\");\n}\n",
  ada: "with Ada.Text_IO; use Ada.Text_IO;\nwith Ada.Strings; with Ada.Strings.Fixed; use Ada.Strings.Fixed;\n\nprocedure Main is\n   function Name return String is\n   begin\n      if End_Of_File then\n         return \"world\";\n      end if;\n      declare\n         Line : constant String := Trim (Get_Line, Ada.Strings.Both);\n      begin\n         return (if Line = \"\" then \"world\" else Line);\n      end;\n   end Name;\nbegin\n   Put_Line (\"Hello, \" & Name & \"!\");\nend Main;\n",
  objectivec: "#include <objc/runtime.h>\n#include <stdio.h>\n#include <string.h>\n\n@interface Greeter\n+ (void)greet:(const char *)name;\n@end\n\n@implementation Greeter\n+ (void)greet:(const char *)name {\n    printf(\"Hello, %s!\\n\", name);\n}\n@end\n\nint main(void) {\n    char name[100] = \"\";\n    if (fgets(name, sizeof name, stdin)) name[strcspn(name, \"\\n\")] = '\\0';\n    [Greeter greet:(name[0] ? name : \"world\")];\n    return 0;\n}\n",
  haskell: "import System.IO\n\nmain :: IO ()\nmain = do\n  eof <- isEOF\n  line <- if eof then return \"\" else getLine\n  let name = if null (words line) then \"world\" else unwords (words line)\n  putStrLn (\"Hello, \" ++ name ++ \"!\")\n",
  ocaml: "let () =\n  let name = try String.trim (input_line stdin) with End_of_file -> \"\" in\n  let name = if name = \"\" then \"world\" else name in\n  Printf.printf \"Hello, %s!\\n\" name\n",
  sml: "val name =\n  case TextIO.inputLine TextIO.stdIn of\n      NONE => \"world\"\n    | SOME line =>\n        (case String.tokens Char.isSpace line of\n             [] => \"world\"\n           | words => String.concatWith \" \" words)\n\nval () = print (\"Hello, \" ^ name ^ \"!\\n\")\n",
  erlang: "%% Run with escript: main/1 gets the arguments.\nmain(_Args) ->\n    Name = case io:get_line(\"\") of\n        eof -> \"world\";\n        Line -> case string:trim(Line) of\n                    \"\" -> \"world\";\n                    Trimmed -> Trimmed\n                end\n    end,\n    io:format(\"Hello, ~ts!~n\", [Name]).\n",
  elixir: "name =\n  case IO.gets(\"\") do\n    :eof -> \"\"\n    line -> String.trim(line)\n  end\n\nname = if name == \"\", do: \"world\", else: name\nIO.puts(\"Hello, #{name}!\")\n",
  pascal: "program Hello;\n\nuses SysUtils;\n\nvar\n  name: string;\n\nbegin\n  name := '';\n  if not Eof(Input) then\n    ReadLn(name);\n  name := Trim(name);\n  if name = '' then\n    name := 'world';\n  WriteLn('Hello, ', name, '!');\nend.\n",
  cobol: "IDENTIFICATION DIVISION.\nPROGRAM-ID. HELLO.\nDATA DIVISION.\nWORKING-STORAGE SECTION.\n01 WS-NAME PIC X(100) VALUE SPACES.\nPROCEDURE DIVISION.\n    ACCEPT WS-NAME\n        ON EXCEPTION MOVE SPACES TO WS-NAME\n    END-ACCEPT\n    IF WS-NAME = SPACES\n        MOVE \"world\" TO WS-NAME\n    END-IF\n    DISPLAY \"Hello, \" FUNCTION TRIM(WS-NAME) \"!\"\n    STOP RUN.\n",
  commonlisp: "(let* ((line (read-line *standard-input* nil \"\"))\n       (name (string-trim '(#\\Space #\\Tab #\\Return) line)))\n  (format t \"Hello, ~a!~%\" (if (string= name \"\") \"world\" name)))\n",
  scheme: "(use-modules (ice-9 rdelim))\n\n(let* ((line (read-line))\n       (name (if (eof-object? line) \"\" (string-trim-both line))))\n  (display (string-append \"Hello, \" (if (string-null? name) \"world\" name) \"!\"))\n  (newline))\n",
  racket: "#lang racket/base\n(require racket/string)\n\n(define line (read-line))\n(define name (if (eof-object? line) \"\" (string-trim line)))\n(printf \"Hello, ~a!\\n\" (if (string=? name \"\") \"world\" name))\n",
  prolog: ":- initialization(main, main).\n\nmain :-\n    read_line_to_string(user_input, Line),\n    (   Line == end_of_file\n    ->  Name = \"world\"\n    ;   split_string(Line, \"\", \" \\t\\r\", [Trimmed]),\n        ( Trimmed == \"\" -> Name = \"world\" ; Name = Trimmed )\n    ),\n    format(\"Hello, ~w!~n\", [Name]).\n",
  tcl: "set name \"\"\ngets stdin name\nset name [string trim $name]\nif {$name eq \"\"} { set name \"world\" }\nputs \"Hello, $name!\"\n",
  awk: "NR == 1 { name = $0 }\nEND {\n    gsub(/^[ \\t]+|[ \\t]+$/, \"\", name)\n    if (name == \"\") name = \"world\"\n    print \"Hello, \" name \"!\"\n}\n",
  sql: "-- SQLite (in memory): stdin is imported as a table of lines.\nCREATE TABLE input(line TEXT);\n.import --csv /proc/self/fd/0 input\nSELECT 'Hello, ' || COALESCE((SELECT NULLIF(TRIM(line), '') FROM input LIMIT 1), 'world') || '!';\n",
  raku: "my $name = ($*IN.get // '').trim;\n$name = 'world' if $name eq '';\nsay \"Hello, $name!\";\n",
  r: "line <- readLines(file(\"stdin\"), n = 1, warn = FALSE)\nname <- if (length(line) == 0 || trimws(line) == \"\") \"world\" else trimws(line)\ncat(\"Hello, \", name, \"!\\n\", sep = \"\")\n",
  octave: "line = fgetl(stdin);\nif ~ischar(line) || isempty(strtrim(line))\n  name = 'world';\nelse\n  name = strtrim(line);\nend\nprintf('Hello, %s!\\n', name);\n",
  assembly: "; x86-64 Linux (NASM): reads a name on stdin and greets it.\nsection .data\n    hello     db \"Hello, \"\n    hello_len equ $ - hello\n    world     db \"world\"\n    world_len equ $ - world\n    bang      db \"!\", 10\n\nsection .bss\n    name      resb 100\n\nsection .text\n    global _start\n_start:\n    xor eax, eax                ; read(0, name, 100)\n    xor edi, edi\n    lea rsi, [rel name]\n    mov edx, 100\n    syscall\n    test rax, rax\n    jle .default\n    xor ebx, ebx                ; length up to the first newline\n.scan:\n    cmp rbx, rax\n    je .found\n    cmp byte [name + rbx], 10\n    je .found\n    inc rbx\n    jmp .scan\n.found:\n    test rbx, rbx\n    jz .default\n    lea r12, [rel name]\n    mov r13, rbx\n    jmp .print\n.default:\n    lea r12, [rel world]\n    mov r13, world_len\n.print:\n    mov eax, 1                  ; write(1, \"Hello, \", 7)\n    mov edi, 1\n    lea rsi, [rel hello]\n    mov edx, hello_len\n    syscall\n    mov eax, 1                  ; write(1, name, len)\n    mov edi, 1\n    mov rsi, r12\n    mov rdx, r13\n    syscall\n    mov eax, 1                  ; write(1, \"!\\n\", 2)\n    mov edi, 1\n    lea rsi, [rel bang]\n    mov edx, 2\n    syscall\n    mov eax, 60                 ; exit(0)\n    xor edi, edi\n    syscall\n",
  vala: "void main () {\n    string? line = stdin.read_line ();\n    string name = line != null ? line.strip () : \"\";\n    if (name == \"\") {\n        name = \"world\";\n    }\n    print (\"Hello, %s!\\n\", name);\n}\n",
  crystal: "name = (gets || \"\").strip\nname = \"world\" if name.empty?\nputs \"Hello, #{name}!\"\n",
};
const INDENT = "    ";

const $ = (id) => document.getElementById(id);
const ui = {
  language: $("language"), template: $("template"), editor: $("editor"), gutter: $("gutter"),
  stdin: $("stdin"), args: $("args"), run: $("run"), stop: $("stop"), share: $("share"),
  shareBox: $("share-box"), shareUrl: $("share-url"), status: $("status"), error: $("error"),
  output: $("output"), compileBox: $("compile-box"), compile: $("compile"), result: $("result"),
  imagesBox: $("images-box"), images: $("images"),
  notes: $("notes"), theme: $("theme"), auth: $("auth"), authWhy: $("auth-why"),
  authForm: $("auth-form"), key: $("key"), keyScheme: $("key-scheme"),
  keyButton: $("key-button"), keyForget: $("key-forget"), kbdNote: $("kbd-note"),
};

let running = null; // the AbortController of the run in progress
let afterKey = null; // what to retry once a key is entered
let wanted = null; // the language a shared link asks for, until the list is loaded
let offered = null; // how the server takes a credential, once a 401 said so

// ---- Theme: the system's preference unless chosen here (remembered in localStorage) ----
const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");
function applyTheme() {
  const chosen = localStorage.getItem("isobox.theme");
  const theme = chosen || (darkQuery.matches ? "dark" : "light");
  document.documentElement.dataset.theme = theme;
  ui.theme.setAttribute("aria-pressed", String(theme === "dark"));
}
ui.theme.addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme === "dark";
  localStorage.setItem("isobox.theme", dark ? "light" : "dark");
  applyTheme();
});
darkQuery.addEventListener("change", applyTheme);

// ---- Credentials: sessionStorage only, never the URL or localStorage ----
function authHeaders() {
  const key = sessionStorage.getItem("isobox.key");
  if (!key) return {};
  const how = sessionStorage.getItem("isobox.scheme") || "header:X-API-Key";
  return how === "bearer" ? { Authorization: `Bearer ${key}` } : { [how.slice(7)]: key };
}

// The ways the server takes a credential, from its WWW-Authenticate header.
function schemes(resp) {
  if (!resp) return offered || [["header:X-API-Key", "API key (X-API-Key header)"]];
  const www = resp.headers.get("WWW-Authenticate") || "";
  const list = [];
  const m = /ApiKey header="([^"]+)"/i.exec(www);
  if (m) list.push(["header:" + m[1], `API key (${m[1]} header)`]);
  if (/\bBearer\b/i.test(www)) list.push(["bearer", "Bearer token (Authorization header)"]);
  if (!list.length) list.push(["header:X-API-Key", "API key (X-API-Key header)"]);
  offered = list;
  return list;
}

function showAuth(resp, message, retry) {
  afterKey = retry || null;
  ui.keyScheme.replaceChildren(...schemes(resp).map(([value, label]) => new Option(label, value)));
  const current = sessionStorage.getItem("isobox.scheme");
  if (current && [...ui.keyScheme.options].some((o) => o.value === current)) ui.keyScheme.value = current;
  ui.authWhy.textContent = message;
  ui.auth.hidden = false;
  ui.keyButton.setAttribute("aria-expanded", "true");
  ui.key.focus();
}

ui.keyButton.addEventListener("click", () => {
  if (!ui.auth.hidden) {
    ui.auth.hidden = true;
    ui.keyButton.setAttribute("aria-expanded", "false");
    return;
  }
  showAuth(null, "Enter the API key or token to send with every request from this tab.", null);
});
ui.authForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const key = ui.key.value.trim();
  if (!key) return ui.key.focus();
  sessionStorage.setItem("isobox.key", key);
  sessionStorage.setItem("isobox.scheme", ui.keyScheme.value);
  ui.key.value = "";
  ui.auth.hidden = true;
  ui.keyButton.setAttribute("aria-expanded", "false");
  ui.keyButton.textContent = "API key (set)";
  setStatus("The key is set for this tab.");
  const retry = afterKey;
  afterKey = null;
  if (retry) retry();
  else ui.editor.focus();
});
ui.keyForget.addEventListener("click", () => {
  sessionStorage.removeItem("isobox.key");
  sessionStorage.removeItem("isobox.scheme");
  ui.key.value = "";
  ui.keyButton.textContent = "API key";
  setStatus("The key is forgotten.");
});

// ---- Messages ----
function setStatus(text) {
  ui.status.textContent = text;
}
function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}
function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

// The error JSON of a refused request, with its status and Retry-After.
async function apiError(resp) {
  let body = {};
  try {
    body = await resp.json();
  } catch (_) { /* not JSON: use the status */ }
  return {
    status: resp.status,
    kind: body.error || `http_${resp.status}`,
    message: body.message || resp.statusText || "the request failed",
    retryAfter: resp.headers.get("Retry-After"),
    resp,
  };
}

function retryText(value) {
  if (!value) return "";
  const secs = /^\d+$/.test(value) ? Number(value) : Math.ceil((Date.parse(value) - Date.now()) / 1000);
  if (!Number.isFinite(secs)) return "";
  const at = new Date(Date.now() + Math.max(secs, 0) * 1000).toLocaleTimeString();
  return ` Try again in ${Math.max(secs, 1)} s (at ${at}).`;
}

// One clear sentence for every error the API can answer.
function reportError(err, retry) {
  const m = err.message;
  const texts = {
    400: `The request is not valid: ${m}`,
    401: `The API needs a key: ${m}. Enter it in the API key form above.`,
    403: `Not allowed: ${m}`,
    413: `Too large: ${m}`,
    415: `Unsupported request: ${m}`,
    422: `Refused by the server's policy: ${m}`,
    429: `Too many requests: ${m}.${retryText(err.retryAfter)}`,
    500: `The sandbox failed: ${m}`,
    503: `The service is unavailable: ${m}.${retryText(err.retryAfter)}`,
  };
  const text = texts[err.status] || (err.status ? `Error ${err.status} (${err.kind}): ${m}` : `Error (${err.kind}): ${m}`);
  showError(text);
  setStatus(err.status === 401 ? "A key is needed." : "Failed.");
  if (err.status === 401) showAuth(err.resp, `The server answered: ${m}`, retry);
}

// ---- Languages ----
async function loadLanguages() {
  setStatus("Loading the languages…");
  let resp;
  try {
    resp = await fetch("/api/v1/languages", { headers: authHeaders(), cache: "no-store" });
  } catch (e) {
    showError(`The server cannot be reached: ${e.message}`);
    setStatus("Failed.");
    return;
  }
  if (!resp.ok) return reportError(await apiError(resp), loadLanguages);
  const list = await resp.json();
  clearError();
  ui.language.replaceChildren(...list.map((l) => new Option(`${l.name} (${l.version})`, l.name)));
  ui.language.disabled = false;
  const names = list.map((l) => l.name);
  const pick = [wanted, "python", names[0]].find((n) => n && names.includes(n));
  if (wanted && !names.includes(wanted)) showError(`The link asks for ${wanted}, which this server does not offer.`);
  wanted = null;
  if (pick) ui.language.value = pick;
  if (!ui.editor.value) loadTemplate();
  setStatus(`Ready: ${list.length} languages.`);
}

function isTemplate(code) {
  return code.trim() === "" || Object.values(TEMPLATES).some((t) => t === code);
}
function loadTemplate() {
  ui.editor.value = TEMPLATES[ui.language.value] || "";
  updateGutter();
}
ui.language.addEventListener("change", () => {
  if (isTemplate(ui.editor.value)) loadTemplate();
});
ui.template.addEventListener("click", loadTemplate);

// ---- Editor: line numbers, Tab / Shift+Tab, Esc then Tab leaves ----
let gutterLines = 0;
function updateGutter() {
  const n = ui.editor.value.split("\n").length;
  if (n !== gutterLines) {
    gutterLines = n;
    ui.gutter.textContent = Array.from({ length: n }, (_, i) => i + 1).join("\n");
  }
  ui.gutter.scrollTop = ui.editor.scrollTop;
}
ui.editor.addEventListener("input", updateGutter);
ui.editor.addEventListener("scroll", () => { ui.gutter.scrollTop = ui.editor.scrollTop; });

// Replaces start..end with text (through the undo stack where the browser allows).
function replaceRange(start, end, text, selStart, selEnd) {
  const ed = ui.editor;
  ed.setSelectionRange(start, end);
  if (!document.execCommand("insertText", false, text)) ed.setRangeText(text, start, end, "end");
  ed.setSelectionRange(selStart, selEnd);
  updateGutter();
}

// The lines the selection touches: [start of the first, end of the last].
function selectedLines() {
  const { value: v, selectionStart: s } = ui.editor;
  let e = ui.editor.selectionEnd;
  if (e > s && v[e - 1] === "\n") e -= 1;
  const start = v.lastIndexOf("\n", s - 1) + 1;
  const nl = v.indexOf("\n", e);
  return [start, nl < 0 ? v.length : nl];
}

function indent() {
  const { value: v, selectionStart: s, selectionEnd: e } = ui.editor;
  if (!v.slice(s, e).includes("\n")) return replaceRange(s, e, INDENT, s + INDENT.length, s + INDENT.length);
  const [start, end] = selectedLines();
  const lines = v.slice(start, end).split("\n").map((l) => INDENT + l);
  replaceRange(start, end, lines.join("\n"), s + INDENT.length, e + INDENT.length * lines.length);
}

function outdent() {
  const { value: v, selectionStart: s, selectionEnd: e } = ui.editor;
  const [start, end] = selectedLines();
  let first = 0;
  let total = 0;
  const lines = v.slice(start, end).split("\n").map((l, i) => {
    const cut = (/^( {1,4}|\t)/.exec(l) || [""])[0].length;
    if (i === 0) first = cut;
    total += cut;
    return l.slice(cut);
  });
  if (!total) return;
  const ns = Math.max(start, s - first);
  replaceRange(start, end, lines.join("\n"), ns, Math.max(ns, e - total));
}

let tabLeaves = false; // set by Esc: the next Tab moves focus as usual
ui.editor.addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    tabLeaves = true;
    ui.kbdNote.textContent = "Tab now moves focus out of the editor.";
    return;
  }
  if (e.key === "Tab" && !e.ctrlKey && !e.altKey && !e.metaKey) {
    if (tabLeaves) return; // the browser moves focus
    e.preventDefault();
    if (e.shiftKey) outdent();
    else indent();
    return;
  }
  if (e.key === "Enter" && !e.ctrlKey && !e.metaKey && !e.altKey && !e.shiftKey) {
    // Keep the indentation of the current line.
    const { value: v, selectionStart: s, selectionEnd: end } = ui.editor;
    const lead = /^[ \t]*/.exec(v.slice(v.lastIndexOf("\n", s - 1) + 1, s))[0];
    if (lead) {
      e.preventDefault();
      const at = s + 1 + lead.length;
      replaceRange(s, end, "\n" + lead, at, at);
    }
  }
  if (e.key !== "Shift") tabLeaves = false;
});
ui.editor.addEventListener("blur", () => {
  tabLeaves = false;
  ui.kbdNote.textContent = "";
});

// ---- Arguments: split on spaces, quotes keep spaces ----
function parseArgs(text) {
  const out = [];
  let cur = null;
  let quote = null;
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      cur = cur || "";
    } else if (/\s/.test(ch)) {
      if (cur !== null) out.push(cur);
      cur = null;
    } else {
      cur = (cur || "") + ch;
    }
  }
  if (cur !== null) out.push(cur);
  return out;
}

// ---- Output ----
function append(pre, text, isErr) {
  const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
  const last = pre.lastElementChild;
  if (last && last.classList.contains("err") === isErr) {
    last.append(text);
  } else {
    const span = document.createElement("span");
    if (isErr) span.className = "err";
    span.textContent = text;
    pre.append(span);
  }
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

function formatBytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

function showResult(r) {
  const set = (id, text) => { $(id).textContent = text; };
  // Nothing ran after a failed compile: show what the compiler did.
  const c = r.compile;
  const m = r.status === "compile_error" && c ? c : r;
  set("r-status", r.status);
  $("r-status").className = r.status === "ok" ? "good" : "bad";
  set("r-exit", m.exit_code === null ? "none" : String(m.exit_code));
  set("r-signal", m.signal || "none");
  set("r-cpu", `${m.cpu_time_ms} ms`);
  set("r-wall", `${m.wall_time_ms} ms`);
  set("r-mem", formatBytes(m.memory_peak_bytes));
  set("r-version", `${r.language} ${r.version}`);
  set("r-cached", r.cached ? "yes" : "no");
  ui.result.hidden = false;
  const notes = [];
  if (m !== r) notes.push("Nothing ran: exit code, times and memory are the compiler's.");
  if (r.stdout_truncated) notes.push("Standard output was cut at the output limit.");
  if (r.stderr_truncated) notes.push("Standard error was cut at the output limit.");
  ui.notes.textContent = notes.join(" ");
  ui.notes.hidden = !notes.length;
  if (c && (c.status !== "ok" || c.stdout || c.stderr)) {
    ui.compile.textContent = c.stdout + c.stderr || `(the compiler said nothing; status ${c.status})`;
    ui.compileBox.hidden = false;
  }
  showImages(r.files || []);
  const exit = m.exit_code === null ? "" : `, exit code ${m.exit_code}`;
  const compiled = m !== r ? "; see the compiler output" : "";
  setStatus(`Finished: ${r.status}${exit}, ${m.wall_time_ms} ms${compiled}.`);
}

// Image files the program left in its work dir (asked for with `outputs`), shown as data:
// URLs (the page's Content-Security-Policy allows `img-src data:`), each with its name.
const IMAGE_TYPES = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp" };
const IMAGE_OUTPUTS = Object.keys(IMAGE_TYPES).map((ext) => `**/*.${ext}`);

function showImages(files) {
  ui.images.textContent = "";
  for (const f of files) {
    const type = IMAGE_TYPES[(f.name.split(".").pop() || "").toLowerCase()];
    if (!type) continue;
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `data:${type};base64,${f.content}`;
    img.alt = `${f.name}, written by the program`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${f.name} (${formatBytes(f.size)})`;
    figure.append(img, caption);
    ui.images.append(figure);
  }
  ui.imagesBox.hidden = !ui.images.childElementCount;
}

// ---- Running: SSE over fetch ----
// Calls onEvent(name, data) for each event of the text/event-stream body.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r/g, "");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const c = line.indexOf(":");
        const field = c < 0 ? line : line.slice(0, c);
        const val = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
        if (field === "event") name = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

async function run() {
  if (running) return;
  if (!ui.language.value) return setStatus("No language yet: the list has not loaded.");
  const request = { language: ui.language.value, code: ui.editor.value, outputs: IMAGE_OUTPUTS };
  if (ui.stdin.value) request.stdin = ui.stdin.value;
  const args = parseArgs(ui.args.value);
  if (args.length) request.args = args;
  clearError();
  ui.output.textContent = "";
  ui.compile.textContent = "";
  ui.compileBox.hidden = true;
  ui.result.hidden = true;
  ui.notes.hidden = true;
  ui.imagesBox.hidden = true;
  setStatus(`Running ${request.language}…`);
  running = new AbortController();
  ui.run.disabled = true;
  ui.stop.disabled = false;
  let finished = false;
  try {
    const resp = await fetch("/api/v1/execute/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
      body: JSON.stringify(request),
      cache: "no-store",
      signal: running.signal,
    });
    if (!resp.ok) {
      finished = true;
      return reportError(await apiError(resp), run);
    }
    await readEvents(resp.body, (name, data) => {
      const value = JSON.parse(data);
      if (name === "stdout" || name === "stderr") append(ui.output, value, name === "stderr");
      else if (name === "result") {
        finished = true;
        showResult(value);
      } else if (name === "error") {
        finished = true;
        reportError({ status: 0, kind: value.error, message: value.message });
      }
    });
    if (!finished) showError("The connection closed before the result arrived.");
  } catch (e) {
    if (e.name === "AbortError") setStatus("Stopped: the sandbox is killed.");
    else if (!finished) {
      showError(`The server cannot be reached: ${e.message}`);
      setStatus("Failed.");
    }
  } finally {
    running = null;
    ui.run.disabled = false;
    ui.stop.disabled = true;
  }
}

ui.run.addEventListener("click", run);
ui.stop.addEventListener("click", () => running && running.abort());
document.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    run();
  }
});

// ---- Share link: everything in the fragment, which is never sent to the server ----
function shareFragment() {
  const p = new URLSearchParams();
  p.set("lang", ui.language.value);
  p.set("code", ui.editor.value);
  if (ui.stdin.value) p.set("stdin", ui.stdin.value);
  if (ui.args.value) p.set("args", ui.args.value);
  return "#" + p.toString();
}
ui.share.addEventListener("click", async () => {
  history.replaceState(null, "", shareFragment());
  ui.shareUrl.value = location.href;
  ui.shareBox.hidden = false;
  ui.share.setAttribute("aria-expanded", "true");
  ui.shareUrl.focus();
  ui.shareUrl.select();
  try {
    await navigator.clipboard.writeText(location.href);
    setStatus("The link is copied to the clipboard.");
  } catch (_) {
    setStatus("The link is selected: copy it with Ctrl+C.");
  }
});

function readFragment() {
  if (location.hash.length < 2) return;
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has("code")) ui.editor.value = p.get("code");
  ui.stdin.value = p.get("stdin") || "";
  ui.args.value = p.get("args") || "";
  const lang = p.get("lang");
  if (lang && ui.language.disabled) wanted = lang;
  else if (lang && [...ui.language.options].some((o) => o.value === lang)) ui.language.value = lang;
  updateGutter();
}
window.addEventListener("hashchange", readFragment);

// ---- Start ----
applyTheme();
if (sessionStorage.getItem("isobox.key")) ui.keyButton.textContent = "API key (set)";
readFragment();
updateGutter();
loadLanguages();
