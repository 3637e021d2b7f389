"""MultiPL-E's languages as rows: how the official harness runs each program and judges it.

Every row is data: the file the program is written to, the toolchain(s) that can run it (the
first one found on PATH is used), an optional compile step, the run step, the official
timeouts, and the verdict rules of the official harness (nuprl/MultiPL-E, evaluation/src/
eval_<lang>.py), quirks included, so that a status here is the status the official harness
gives:

- Racket's rackunit exits 0 when a test fails; any stderr output fails the program.
- Perl's tests print "ERROR": that text in stdout or stderr fails the program.
- PHP and Racket never report "Timeout": a timed-out run has exit code -1 and is judged by
  the other rules ("Exception").
- C# (mono) exits 0 even when an assertion fails: the verdict reads stderr instead.
- Go's verdict reads `go test`'s stdout; Scala's wants an empty stderr as well.

A pass is status "OK" with exit code 0 (MultiPL-E's pass@k script). Verdict rules are ordered
clauses: the first whose conditions all hold gives the status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advfusion_cli.errors import unknown_name_error

OFFICIAL_TIMEOUT_S = 15  # safe_subprocess.run's default
OFFICIAL_OUTPUT_BYTES = 2048  # what safe_subprocess keeps of each stream (at least)


@dataclass(frozen=True)
class When:
    """One verdict clause: every given condition must hold; `status` is then the verdict."""

    status: str
    timeout: bool | None = None
    exit_zero: bool | None = None
    stdout_has: str | None = None
    stderr_has: str | None = None
    output_has: str | None = None  # in stdout or stderr
    stderr_empty: bool | None = None

    def holds(self, timed_out: bool, exit_code: int, stdout: str, stderr: str) -> bool:
        checks = (
            self.timeout is None or self.timeout == timed_out,
            self.exit_zero is None or self.exit_zero == (exit_code == 0),
            self.stdout_has is None or self.stdout_has in stdout,
            self.stderr_has is None or self.stderr_has in stderr,
            self.output_has is None or self.output_has in stdout or self.output_has in stderr,
            self.stderr_empty is None or self.stderr_empty == (stderr == ""),
        )
        return all(checks)


def judge(rules: tuple[When, ...], timed_out: bool, exit_code: int, stdout: str, stderr: str):
    """The first clause that holds gives the status; none holding is "Exception"."""
    for clause in rules:
        if clause.holds(timed_out, exit_code, stdout, stderr):
            return clause.status
    return "Exception"


# The verdict shape most languages share: Timeout, OK on exit 0, else Exception.
_PLAIN = (When("Timeout", timeout=True), When("OK", exit_zero=True), When("Exception"))


@dataclass(frozen=True)
class Toolchain:
    """Tools (placeholder -> executable on PATH) and the argv templates that use them."""

    tools: dict[str, str]
    run: tuple[str, ...]
    compile: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MultiplELanguage:
    ext: str  # MultiPL-E's language code (dataset config humaneval-<ext>)
    name: str
    source_name: str  # the program's file name in its run folder
    toolchains: tuple[Toolchain, ...]  # the first whose tools are all on PATH runs it
    rules: tuple[When, ...]
    timeout_s: float = OFFICIAL_TIMEOUT_S
    compile_timeout_s: float = OFFICIAL_TIMEOUT_S
    # A build that times out: most official evaluators only look at its exit code (-1), so
    # it is a "SyntaxError"; Rust's and Swift's check the timeout first.
    compile_timeout_status: str = "SyntaxError"
    aliases: tuple[str, ...] = ()  # other names (the smoke files' `language` values, ...)
    apt: tuple[str, ...] = ()  # Debian packages that provide the toolchain and test library
    # A command that must succeed for the tests to be runnable at all (their test library).
    probe: tuple[str, ...] | None = None
    no_package: str | None = None  # no Debian package: what to install instead
    address_space_extra_mb: int = 256  # managed runtimes reserve far more than they use
    resident_extra_mb: int = 256
    max_processes: int = 64
    run_env: dict[str, str] = field(default_factory=dict)


_GO_ENV = {
    "GOCACHE": "{workdir}/.gocache",
    "GOPATH": "{workdir}/.gopath",
    "GOTOOLCHAIN": "local",
    "GOPROXY": "off",
    "GO111MODULE": "off",
}

MULTIPL_E_LANGUAGES: dict[str, MultiplELanguage] = {
    row.ext: row
    for row in (
        MultiplELanguage(
            ext="py",
            name="Python",
            source_name="main.py",
            toolchains=(Toolchain({"python": "python3"}, ("{python}", "main.py")),),
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("SyntaxError", stderr_has="SyntaxError"),
                When("Exception"),
            ),
            aliases=("python",),
            apt=("python3",),
        ),
        MultiplELanguage(
            ext="rb",
            name="Ruby",
            source_name="main.rb",
            toolchains=(Toolchain({"ruby": "ruby"}, ("{ruby}", "main.rb")),),
            # eval_ruby: a failure that printed nothing to stderr is a failed test
            # ("Exception"); anything that printed an error is called "SyntaxError".
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("Exception", stderr_empty=True),
                When("SyntaxError"),
            ),
            timeout_s=5,
            aliases=("ruby",),
            apt=("ruby",),
        ),
        MultiplELanguage(
            ext="lua",
            name="Lua",
            source_name="main.lua",
            toolchains=(
                Toolchain({"lua": "lua5.3"}, ("{lua}", "main.lua")),
                Toolchain({"lua": "lua"}, ("{lua}", "main.lua")),
            ),
            rules=_PLAIN,
            apt=("lua5.3", "lua-unit"),
            probe=("{lua}", "-e", "require('luaunit')"),
        ),
        MultiplELanguage(
            ext="r",
            name="R",
            source_name="main.r",
            toolchains=(Toolchain({"rscript": "Rscript"}, ("{rscript}", "main.r")),),
            # eval_r matches on the whole CompletedProcess text: "unexpected" anywhere is a
            # syntax error, an empty stderr a failed stopifnot.
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("SyntaxError", output_has="unexpected"),
                When("AssertionError", stderr_empty=True),
                When("Exception"),
            ),
            timeout_s=5,
            aliases=("humaneval_to_r.py",),
            apt=("r-base-core",),
            address_space_extra_mb=1024,
        ),
        MultiplELanguage(
            ext="rkt",
            name="Racket",
            source_name="main.rkt",
            toolchains=(Toolchain({"racket": "racket"}, ("{racket}", "main.rkt")),),
            # rackunit exits 0 when a check fails: any stderr output fails the program. No
            # Timeout clause: the official rule has none (a timed-out run is an Exception).
            rules=(
                When("OK", exit_zero=True, stderr_empty=True),
                When("SyntaxError", stderr_has="read-syntax"),
                When("Exception"),
            ),
            aliases=("racket",),
            apt=("racket",),
            probe=("{racket}", "-l", "racket/base", "-l", "rackunit", "-e", "(void)"),
            address_space_extra_mb=4096,
            resident_extra_mb=512,
        ),
        MultiplELanguage(
            ext="ml",
            name="OCaml",
            source_name="main.ml",
            toolchains=(Toolchain({"ocaml": "ocaml"}, ("{ocaml}", "main.ml")),),
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("AssertionError", stderr_has="Assert_failure"),
                When("SyntaxError", stderr_has="Syntax error"),
                When("Exception"),
            ),
            aliases=("ocaml",),
            apt=("ocaml-nox",),
        ),
        MultiplELanguage(
            ext="pl",
            name="Perl",
            source_name="main.pl",
            toolchains=(Toolchain({"perl": "perl"}, ("{perl}", "main.pl")),),
            rules=(
                When("Timeout", timeout=True),
                When("Exception", exit_zero=False),
                When("Exception", output_has="ERROR"),
                When("OK"),
            ),
            aliases=("perl",),
            apt=("perl", "libtest-deep-perl"),
            probe=("{perl}", "-MTest::Deep", "-e", "1"),
        ),
        MultiplELanguage(
            ext="php",
            name="PHP",
            source_name="main.php",
            toolchains=(Toolchain({"php": "php"}, ("{php}", "main.php")),),
            # No Timeout clause: the official rule has none.
            rules=(
                When("SyntaxError", stdout_has="PHP Parse error"),
                When("Exception", exit_zero=False),
                When("OK"),
            ),
            apt=("php-cli",),
        ),
        MultiplELanguage(
            ext="sh",
            name="Bash",
            source_name="main.sh",
            toolchains=(Toolchain({"bash": "bash"}, ("{bash}", "main.sh")),),
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("SyntaxError", stderr_has="syntax error"),
                When("Exception"),
            ),
            aliases=("bash",),
            apt=("bash",),
        ),
        MultiplELanguage(
            ext="js",
            name="JavaScript",
            source_name="main.js",
            toolchains=(Toolchain({"node": "node"}, ("{node}", "main.js")),),
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("AssertionError", output_has="ERR_ASSERTION"),
                When("SyntaxError", output_has="SyntaxError"),
                When("ReferenceError", output_has="ReferenceError"),
                When("Exception"),
            ),
            timeout_s=5,
            aliases=("javascript",),
            apt=("nodejs",),
            address_space_extra_mb=8192,
        ),
        MultiplELanguage(
            ext="ts",
            name="TypeScript",
            source_name="main.ts",
            toolchains=(
                Toolchain(
                    {"tsc": "tsc", "node": "node"},
                    ("{node}", "main.js"),
                    compile=("{tsc}", "--target", "esnext", "main.ts"),
                ),
            ),
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("AssertionError", stderr_has="ERR_ASSERTION"),
                When("SyntaxError", stderr_has="SyntaxError"),
                When("ReferenceError", stderr_has="ReferenceError"),
                When("Exception"),
            ),
            aliases=("typescript",),
            apt=("node-typescript", "nodejs"),
            address_space_extra_mb=8192,
        ),
        MultiplELanguage(
            ext="go",
            name="Go",
            source_name="main_test.go",
            # `go test` builds and runs in one step; its stdout carries the verdict.
            toolchains=(Toolchain({"go": "go"}, ("{go}", "test", "main_test.go")),),
            rules=(
                When("Timeout", timeout=True),
                When("SyntaxError", stdout_has="[setup failed]"),
                When("SyntaxError", stdout_has="[build failed]"),
                When("Exception", stdout_has="FAIL"),
                When("OK"),
            ),
            timeout_s=30,
            aliases=("go_test.go", "golang"),
            apt=("golang-go",),
            address_space_extra_mb=8192,
            resident_extra_mb=1024,
            max_processes=256,
            run_env=_GO_ENV,
        ),
        MultiplELanguage(
            ext="java",
            name="Java",
            source_name="Problem.java",
            toolchains=(
                Toolchain(
                    {"javac": "javac", "java": "java"},
                    ("{java}", "-ea", "-XX:+UseSerialGC", "-cp", ".", "Problem"),
                    compile=(
                        "{javac}",
                        "-J-XX:+UseSerialGC",
                        "-encoding",
                        "UTF8",
                        "-d",
                        ".",
                        "Problem.java",
                    ),
                ),
            ),
            rules=_PLAIN,
            apt=("default-jdk-headless",),
            address_space_extra_mb=8192,
            resident_extra_mb=1024,
            max_processes=256,
        ),
        MultiplELanguage(
            ext="cpp",
            name="C++",
            source_name="main.cpp",
            toolchains=(
                Toolchain(
                    {"gxx": "g++"},
                    ("./main",),
                    compile=("{gxx}", "main.cpp", "-o", "main", "-std=c++17"),
                ),
            ),
            rules=_PLAIN,
            aliases=("c++",),
            apt=("g++",),
        ),
        MultiplELanguage(
            ext="cs",
            name="C#",
            source_name="Program.cs",
            toolchains=(
                Toolchain(
                    {"csc": "csc", "mono": "mono"},
                    ("{mono}", "main.exe"),
                    compile=(
                        "{csc}",
                        "/d:DEBUG",
                        "-r:System.Numerics.dll",
                        "Program.cs",
                        "/out:main.exe",
                    ),
                ),
                Toolchain(
                    {"mcs": "mcs", "mono": "mono"},
                    ("{mono}", "main.exe"),
                    compile=(
                        "{mcs}",
                        "-d:DEBUG",
                        "-r:System.Numerics.dll",
                        "Program.cs",
                        "-out:main.exe",
                    ),
                ),
            ),
            # mono exits 0 when a Debug.Assert fails: the trace listener's text decides.
            rules=(
                When("Timeout", timeout=True),
                When("Exception", stderr_has="System.Diagnostics.DefaultTraceListener.Fail"),
                When("Exception", stderr_has="Unhandled Exception"),
                When("OK"),
            ),
            timeout_s=5,
            aliases=("csharp", "c#"),
            apt=("mono-mcs", "mono-runtime"),
            address_space_extra_mb=8192,
            resident_extra_mb=512,
            max_processes=128,
            run_env={"MONO_TRACE_LISTENER": "Console.Error"},
        ),
        MultiplELanguage(
            ext="rs",
            name="Rust",
            source_name="main.rs",
            toolchains=(
                Toolchain(
                    {"rustc": "rustc"}, ("./main",), compile=("{rustc}", "main.rs", "-o", "main")
                ),
            ),
            rules=_PLAIN,
            timeout_s=5,
            compile_timeout_status="Timeout",
            aliases=("rust",),
            apt=("rustc",),
            max_processes=256,
        ),
        MultiplELanguage(
            ext="scala",
            name="Scala",
            source_name="Problem.scala",
            toolchains=(
                Toolchain(
                    {"scalac": "scalac", "scala": "scala"},
                    ("{scala}", "-cp", ".", "Problem"),
                    compile=("{scalac}", "-d", ".", "Problem.scala"),
                ),
            ),
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True, stderr_empty=True),
                When("Exception"),
            ),
            compile_timeout_s=45,
            apt=("scala",),
            address_space_extra_mb=8192,
            resident_extra_mb=1024,
            max_processes=256,
        ),
        MultiplELanguage(
            ext="d",
            name="D",
            source_name="main.d",
            # The official harness runs `rdmd -unittest -main`: compile with unittests and an
            # empty main, then run. A failed build is what its "Error:" rule calls SyntaxError.
            toolchains=(
                Toolchain(
                    {"ldc2": "ldc2"},
                    ("./main",),
                    compile=("{ldc2}", "-unittest", "-main", "-of=main", "main.d"),
                ),
                Toolchain(
                    {"gdc": "gdc"},
                    ("./main",),
                    compile=("{gdc}", "-funittest", "-fmain", "-o", "main", "main.d"),
                ),
            ),
            rules=_PLAIN,
            aliases=("dlang", "humaneval_to_dlang.py"),
            apt=("gdc",),
            address_space_extra_mb=1024,
        ),
        MultiplELanguage(
            ext="jl",
            name="Julia",
            source_name="main.jl",
            toolchains=(Toolchain({"julia": "julia"}, ("{julia}", "main.jl")),),
            rules=(
                When("Timeout", timeout=True),
                When("OK", exit_zero=True),
                When("Exception", stderr_empty=True),
                When("SyntaxError"),
            ),
            timeout_s=5,
            aliases=("julia",),
            no_package="Julia has no Debian package: install it from https://julialang.org/install "
            "(juliaup) so that `julia` is on PATH",
            address_space_extra_mb=8192,
            resident_extra_mb=1024,
        ),
        MultiplELanguage(
            ext="swift",
            name="Swift",
            source_name="main.swift",
            toolchains=(
                Toolchain(
                    {"swiftc": "swiftc"},
                    ("./main",),
                    compile=("{swiftc}", "main.swift", "-o", "main"),
                ),
            ),
            rules=_PLAIN,
            timeout_s=5,
            compile_timeout_s=45,
            compile_timeout_status="Timeout",
            no_package="Swift has no Debian package: install a toolchain from "
            "https://www.swift.org/install/linux/ so that `swiftc` is on PATH",
            address_space_extra_mb=8192,
            resident_extra_mb=1024,
            max_processes=256,
        ),
    )
}

# Compilers get these limits (the official harness only bounds their time).
COMPILE_MAX_PROCESSES = 256


def resolve_multiple_language(name: str) -> MultiplELanguage:
    """A MultiPL-E language by extension, name or alias (case-insensitive); else one line."""
    key = name.strip().lower()
    for row in MULTIPL_E_LANGUAGES.values():
        if key == row.ext or key == row.name.lower() or key in row.aliases:
            return row
    names = [*MULTIPL_E_LANGUAGES, *(a for r in MULTIPL_E_LANGUAGES.values() for a in r.aliases)]
    raise unknown_name_error("MultiPL-E language", name, names)
