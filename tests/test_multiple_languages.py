"""MultiPL-E programs in every language this machine runs, judged as the official harness does.

- The official harness's own smoke inputs (../shared/data/multipl_e/smoke): the first
  completion passes, the second fails, in every language whose toolchain is here.
- Per language, hand-written programs for add(x, y): a correct one passes; a wrong one, a
  syntax error, a crash and an infinite loop end as the official rules name them (Racket's
  rackunit failure exits 0 and fails on stderr; PHP and Racket have no Timeout status).
- Hostile programs (fork bomb, writing outside the run folder, network) end as failures and
  leave the sandbox working.
- The verdict rules' quirks on recorded outcomes, without executing anything.

A language whose toolchain is missing skips (`advfusion sandbox install LANG` installs it).
Timeouts are shortened to 0.5 s (the row is copied with timeout_s=0.5), so no test waits 15 s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path

import pytest

from advfusion_cli.sandbox.multiple_languages import (
    MULTIPL_E_LANGUAGES,
    judge,
    resolve_multiple_language,
)
from advfusion_cli.sandbox.multiple_runner import (
    find_multiple_toolchain,
    install_hint,
    is_pass,
    run_multiple_program,
)
from advfusion_cli.sandbox.programs import sandbox_info

SHARED = Path(
    os.environ.get("ADVFUSION_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
SMOKE = SHARED / "multipl_e" / "smoke"
INFO = sandbox_info()


def run(ext: str, program: str, **changes) -> dict:
    row = MULTIPL_E_LANGUAGES[ext]
    return run_multiple_program(dataclasses.replace(row, **changes) if changes else row, program)


# ---------------------------------------------------------------- the official smoke inputs

SMOKE_FILES = sorted(SMOKE.glob("*-HumanEval53.json")) if SMOKE.is_dir() else []


@pytest.mark.skipif(not SMOKE_FILES, reason=f"MultiPL-E smoke inputs not found at {SMOKE}")
@pytest.mark.parametrize("path", SMOKE_FILES, ids=lambda p: p.name.split("-")[0])
def test_smoke_inputs_first_completion_passes_second_fails(path):
    data = json.loads(path.read_text())
    row = resolve_multiple_language(data["language"])  # the translator's own language name
    assert row.ext == path.name.split("-")[0]
    if find_multiple_toolchain(row.ext) is None:
        pytest.skip(install_hint(row))
    good, bad = (
        run_multiple_program(row, data["prompt"] + c + "\n" + data["tests"])
        for c in data["completions"]
    )
    assert is_pass(good), good
    assert not is_pass(bad), bad


def test_languages_without_a_debian_package_say_what_to_install():
    for ext, tool in (("jl", "julia"), ("swift", "swiftc")):
        hint = install_hint(MULTIPL_E_LANGUAGES[ext])
        assert "no Debian package" in hint and tool in hint and "\n" not in hint


def test_every_debian_language_names_its_packages():
    for row in MULTIPL_E_LANGUAGES.values():
        assert row.apt or row.no_package, row.ext
        if row.apt:
            assert " ".join(row.apt) in install_hint(row)


# ------------------------------------------------- hand-written programs per language

# ext -> {case: program}; "loop" runs with a 0.5 s timeout.
PROGRAMS: dict[str, dict[str, str]] = {
    "lua": {
        "ok": "local function add(x, y)\n    return x + y\nend\nassert(add(2, 3) == 5)\n",
        "wrong": "local function add(x, y)\n    return x - y\nend\nassert(add(2, 3) == 5)\n",
        "syntax": "local function add(x, y)\n    return x + \nend\n",
        "crash": "local function add(x, y)\n    return x.y + 1\nend\nadd(2, 3)\n",
        "loop": "while true do end\n",
    },
    "rkt": {
        "ok": "#lang racket\n(require rackunit)\n(define (add x y) (+ x y))\n"
        "(check-equal? (add 2 3) 5)\n",
        # rackunit prints the failure on stderr and exits 0.
        "wrong": "#lang racket\n(require rackunit)\n(define (add x y) (- x y))\n"
        "(check-equal? (add 2 3) 5)\n",
        "syntax": "#lang racket\n(define (add x y) (+ x y)\n",
        "crash": "#lang racket\n(define (add x y) (car '()))\n(add 2 3)\n",
        "loop": "#lang racket\n(let loop () (loop))\n",
    },
    "ml": {
        "ok": "let add x y = x + y;;\nassert (add 2 3 = 5);;\n",
        "wrong": "let add x y = x - y;;\nassert (add 2 3 = 5);;\n",
        "syntax": "let add x y = x + ;;\n",
        "crash": 'let add x y = failwith "boom";;\nadd 2 3;;\n',
        "loop": "let rec loop () = loop ();;\nloop ();;\n",
    },
    "r": {
        "ok": "add <- function(x, y) { x + y }\nif(!identical(add(2, 3), 5)){quit('no', 1)}\n",
        "wrong": "add <- function(x, y) { x - y }\nif(!identical(add(2, 3), 5)){quit('no', 1)}\n",
        "syntax": "add <- function(x, y) { x + }\n",
        "crash": "add <- function(x, y) { stop('boom') }\nadd(2, 3)\n",
        "loop": "while (TRUE) {}\n",
    },
    "pl": {
        "ok": "use Test::Deep;\nsub add { my ($x, $y) = @_; return $x + $y; }\n"
        'if(eq_deeply(add(2, 3), 5)) { print "ok!" } else { exit 1; }\n',
        "wrong": "use Test::Deep;\nsub add { my ($x, $y) = @_; return $x - $y; }\n"
        'if(eq_deeply(add(2, 3), 5)) { print "ok!" } else { exit 1; }\n',
        "syntax": "sub add { my ($x, $y) = @_; return $x + ; }\n",
        "crash": 'sub add { die "boom" }\nadd(2, 3);\n',
        "loop": "while (1) {}\n",
    },
    "php": {
        "ok": "<?php\nfunction add($x, $y) { return $x + $y; }\n"
        "if (add(2, 3) !== 5) { throw new Exception('Test failed!'); }\n",
        "wrong": "<?php\nfunction add($x, $y) { return $x - $y; }\n"
        "if (add(2, 3) !== 5) { throw new Exception('Test failed!'); }\n",
        "syntax": "<?php\nfunction add($x, $y) { return $x + ; }\n",
        "crash": "<?php\nfunction add($x, $y) { return intdiv($x, 0); }\nadd(2, 3);\n",
        "loop": "<?php\nwhile (true) {}\n",
    },
    "sh": {
        "ok": "add() {\n  echo $(( $1 + $2 ))\n}\n[[ $(add 2 3) = 5 ]] || exit 1\n",
        "wrong": "add() {\n  echo $(( $1 - $2 ))\n}\n[[ $(add 2 3) = 5 ]] || exit 1\n",
        "syntax": "add() {\n  if then fi\n}\n",
        "crash": "add() {\n  nonexistent_command_xyz\n}\nadd 2 3\n",
        "loop": "while true; do :; done\n",
    },
    "js": {
        "ok": "function add(x, y) { return x + y; }\nconst assert = require('node:assert');\n"
        "assert.deepEqual(add(2, 3), 5);\n",
        "wrong": "function add(x, y) { return x - y; }\nconst assert = require('node:assert');\n"
        "assert.deepEqual(add(2, 3), 5);\n",
        "syntax": "function add(x, y) { return x + ; }\n",
        "crash": "function add(x, y) { return x + zz; }\nadd(2, 3);\n",
        "loop": "for (;;) {}\n",
    },
    "rb": {
        "ok": "require 'test/unit'\ndef add(x, y)\n  x + y\nend\nclass T < Test::Unit::TestCase\n"
        "  def test_add\n    assert_equal(5, add(2, 3))\n  end\nend\n",
        "wrong": "require 'test/unit'\ndef add(x, y)\n  x - y\nend\nclass T < Test::Unit::TestCase\n"
        "  def test_add\n    assert_equal(5, add(2, 3))\n  end\nend\n",
        "syntax": "def add(x, y)\n  x + \nend end\n",
        "crash": "def add(x, y)\n  raise 'boom'\nend\nadd(2, 3)\n",
        "loop": "loop { }\n",
    },
    "py": {
        "ok": "def add(x, y):\n    return x + y\nassert add(2, 3) == 5\n",
        "wrong": "def add(x, y):\n    return x - y\nassert add(2, 3) == 5\n",
        "syntax": "def add(x, y):\n    return x +\n",
        "crash": "def add(x, y):\n    return x / 0\nadd(2, 3)\n",
        "loop": "while True:\n    pass\n",
    },
    "cpp": {
        "ok": "#include <cassert>\nlong add(long x, long y) { return x + y; }\n"
        "int main() { assert(add(2, 3) == 5); }\n",
        "wrong": "#include <cassert>\nlong add(long x, long y) { return x - y; }\n"
        "int main() { assert(add(2, 3) == 5); }\n",
        "syntax": "long add(long x, long y) { return x + ; }\nint main() {}\n",
        "crash": "#include <vector>\nint main() { std::vector<int> v; return v.at(3); }\n",
        "loop": "int main() { volatile long i = 0; for (;;) i++; }\n",
    },
}

# The official status of each case (where it differs from the plain Timeout/OK/Exception).
EXPECTED: dict[str, dict[str, str]] = {
    "lua": {"wrong": "Exception", "syntax": "Exception", "crash": "Exception", "loop": "Timeout"},
    # Racket: no Timeout status; a read error is a SyntaxError; a failed check exits 0.
    "rkt": {
        "wrong": "Exception",
        "syntax": "SyntaxError",
        "crash": "Exception",
        "loop": "Exception",
    },
    "ml": {
        "wrong": "AssertionError",
        "syntax": "SyntaxError",
        "crash": "Exception",
        "loop": "Timeout",
    },
    # R: an empty stderr is a failed assertion; "unexpected" a syntax error.
    "r": {
        "wrong": "AssertionError",
        "syntax": "SyntaxError",
        "crash": "Exception",
        "loop": "Timeout",
    },
    "pl": {"wrong": "Exception", "syntax": "Exception", "crash": "Exception", "loop": "Timeout"},
    # PHP: no Timeout status; this php-cli writes parse errors to stderr, not stdout.
    "php": {"wrong": "Exception", "syntax": "Exception", "crash": "Exception", "loop": "Exception"},
    "sh": {"wrong": "Exception", "syntax": "SyntaxError", "crash": "Exception", "loop": "Timeout"},
    "js": {
        "wrong": "AssertionError",
        "syntax": "SyntaxError",
        "crash": "ReferenceError",
        "loop": "Timeout",
    },
    # Ruby: whatever printed an error is a "SyntaxError", a silent failure an Exception.
    "rb": {
        "wrong": "Exception",
        "syntax": "SyntaxError",
        "crash": "SyntaxError",
        "loop": "Timeout",
    },
    "py": {"wrong": "Exception", "syntax": "SyntaxError", "crash": "Exception", "loop": "Timeout"},
    "cpp": {"wrong": "Exception", "syntax": "SyntaxError", "crash": "Exception", "loop": "Timeout"},
}

CASES = [(ext, case) for ext in PROGRAMS for case in ("ok", "wrong", "syntax", "crash", "loop")]


@pytest.mark.parametrize(("ext", "case"), CASES, ids=[f"{e}-{c}" for e, c in CASES])
def test_hand_written_programs_get_the_official_status(ext, case):
    if find_multiple_toolchain(ext) is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES[ext]))
    result = run(ext, PROGRAMS[ext][case], **({"timeout_s": 0.5} if case == "loop" else {}))
    if case == "ok":
        assert is_pass(result), result
        return
    assert result["status"] == EXPECTED[ext][case], result
    assert not is_pass(result)
    if case == "loop":
        assert result["exit_code"] == -1  # what safe_subprocess reports for a timed-out run
    assert set(result) == {"program", "status", "exit_code", "stdout", "stderr"}


def test_racket_check_failure_exits_zero_and_fails_on_stderr():
    if find_multiple_toolchain("rkt") is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES["rkt"]))
    result = run("rkt", PROGRAMS["rkt"]["wrong"])
    assert result["exit_code"] == 0 and result["stderr"] and result["status"] == "Exception"


# ------------------------------------------------------------------------ hostile programs

MARKER = f"/tmp/advfusion-multiple-escape-{uuid.uuid4().hex}"
HOSTILE = {
    "sh": {
        "fork_bomb": "add() {\n  bomb() { bomb | bomb & }; bomb\n}\nadd 2 3\nexit 1\n",
        "write_outside": f"echo pwned > {MARKER}\n",
        "network": "exec 3<>/dev/tcp/1.1.1.1/80\n",
    },
    "py": {
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
        "        pass\n",
        "write_outside": f"open({MARKER!r}, 'w').write('pwned')\n",
        "network": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\n",
    },
    "lua": {
        "fork_bomb": "while true do os.execute('sh -c \":(){ :|:& };:\" &') end\n",
        "write_outside": f"local f = assert(io.open({json.dumps(MARKER)}, 'w'))\nf:write('x')\n",
        "network": "assert(os.execute('exec 3<>/dev/tcp/1.1.1.1/80') == true)\n",
    },
}
# The low-resource languages the task sandbox does not have: escape attempts in each.
HOSTILE.update(
    {
        "rkt": {
            "write_outside": "#lang racket\n"
            f"(with-output-to-file {json.dumps(MARKER)} (lambda () (display 1)))\n",
            "network": '#lang racket\n(tcp-connect "1.1.1.1" 80)\n',
        },
        "r": {
            "write_outside": f"writeLines('x', {json.dumps(MARKER)})\n",
            "network": "con <- socketConnection('1.1.1.1', 80, blocking = TRUE, timeout = 1)\n",
        },
        "pl": {
            "fork_bomb": "fork while 1;\n",
            "write_outside": f"open(my $f, '>', {json.dumps(MARKER)}) or die;\n",
            "network": "use IO::Socket::INET;\n"
            "IO::Socket::INET->new(PeerAddr => '1.1.1.1:80', Timeout => 1) or die;\n",
        },
        "php": {
            "write_outside": f"<?php\nfile_put_contents({json.dumps(MARKER)}, 'x') or exit(1);\n",
            "network": "<?php\n$f = @fsockopen('1.1.1.1', 80, $no, $text, 1);\nif (!$f) exit(1);\n",
        },
    }
)
HOSTILE_CASES = [(ext, case) for ext in HOSTILE for case in HOSTILE[ext]]


@pytest.mark.parametrize(("ext", "case"), HOSTILE_CASES, ids=[f"{e}-{c}" for e, c in HOSTILE_CASES])
def test_hostile_programs_fail_and_leave_the_sandbox_working(ext, case):
    if find_multiple_toolchain(ext) is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES[ext]))
    if case == "write_outside" and not INFO["filesystem_read_only"]:
        pytest.skip("no read-only file system view on this machine")
    if case == "network" and not INFO["network_isolated"]:
        pytest.skip("no network namespace on this machine")
    result = run(ext, HOSTILE[ext][case], timeout_s=2)
    assert not is_pass(result), result
    assert not os.path.exists(MARKER)
    assert is_pass(run(ext, PROGRAMS[ext]["ok"]))  # the sandbox still runs programs


# ------------------------------------------------- verdict rules on recorded outcomes


@pytest.mark.parametrize(
    ("ext", "timed_out", "exit_code", "stdout", "stderr", "status"),
    [
        ("rkt", False, 0, "", "FAILURE\nname: check-equal?\n", "Exception"),
        ("rkt", False, 0, "", "", "OK"),
        ("rkt", True, -1, "", "", "Exception"),  # no Timeout status for Racket
        ("pl", False, 0, "ERROR: x\n", "", "Exception"),  # Perl's ERROR rule
        ("pl", False, 0, "", "ERROR", "Exception"),
        ("pl", False, 0, "ok!", "", "OK"),
        ("php", False, 255, "PHP Parse error: x", "", "SyntaxError"),
        ("php", True, -1, "", "", "Exception"),  # no Timeout status for PHP
        ("cs", False, 0, "", "at System.Diagnostics.DefaultTraceListener.Fail", "Exception"),
        ("cs", False, 0, "", "", "OK"),
        ("go", False, 1, "ok x\nFAIL\n", "", "Exception"),
        ("go", False, 2, "# x\n[build failed]\n", "", "SyntaxError"),
        ("go", False, 0, "ok  \tcommand-line-arguments\n", "", "OK"),
        ("scala", False, 0, "", "warning", "Exception"),  # Scala wants an empty stderr
        ("r", False, 1, "", "", "AssertionError"),
        ("r", False, 1, "", "Error: unexpected '}'", "SyntaxError"),
        ("rb", False, 1, "Failure", "", "Exception"),
        ("rb", False, 1, "", "boom (RuntimeError)", "SyntaxError"),
        ("jl", False, 1, "", "", "Exception"),
        ("jl", True, -1, "", "", "Timeout"),
        ("d", False, 1, "", "core.exception.AssertError", "Exception"),
        ("ml", False, 2, "", "Exception: Assert_failure", "AssertionError"),
    ],
)
def test_verdict_rules_follow_the_official_harness(
    ext, timed_out, exit_code, stdout, stderr, status
):
    row = MULTIPL_E_LANGUAGES[ext]
    assert judge(row.rules, timed_out, exit_code, stdout, stderr) == status


def test_a_pass_is_ok_with_exit_code_zero():
    assert is_pass({"status": "OK", "exit_code": 0})
    assert not is_pass({"status": "OK", "exit_code": 1})  # C# "OK" with mono's real exit code
    assert not is_pass({"status": "Exception", "exit_code": 0})


def test_language_names_resolve_to_their_rows():
    assert resolve_multiple_language("racket").ext == "rkt"
    assert resolve_multiple_language("OCaml").ext == "ml"
    assert resolve_multiple_language("humaneval_to_dlang.py").ext == "d"
    assert resolve_multiple_language("javascript").ext == "js"
    from advfusion_cli.errors import UserError

    with pytest.raises(UserError, match="Unknown MultiPL-E language 'cobol'"):
        resolve_multiple_language("cobol")


COMPILED = {
    "java": "import java.util.*;\nclass Problem {\n"
    "    public static long add(long x, long y) { return x + y; }\n"
    "    public static void main(String[] args) {\n        assert(add(2L, 3L) == (5L));\n    }\n}\n",
    "rs": "fn add(x: isize, y: isize) -> isize { x + y }\nfn main() { assert_eq!(add(2, 3), 5); }\n",
}


@pytest.mark.parametrize("ext", sorted(COMPILED))
def test_compiled_languages_build_then_run_with_the_official_statuses(ext):
    if find_multiple_toolchain(ext) is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES[ext]))
    correct = COMPILED[ext]
    assert is_pass(run(ext, correct))
    wrong = run(ext, correct.replace("x + y", "x - y"))  # java -ea: the assert throws
    assert wrong["status"] == "Exception" and wrong["exit_code"] != 0
    broken = run(ext, correct.replace("x + y", "x + "))
    assert broken["status"] == "SyntaxError"  # a failed build, whatever the compiler says


@pytest.mark.parametrize(("ext", "status"), [("cpp", "SyntaxError"), ("rs", "Timeout")])
def test_a_build_that_times_out_gets_the_official_status(ext, status):
    if find_multiple_toolchain(ext) is None:
        pytest.skip(install_hint(MULTIPL_E_LANGUAGES[ext]))
    # A build that takes far longer than the limit on any machine: g++ builds a small program
    # in under 50 ms on an idle core, but not one that instantiates std::regex.
    heavy_cpp = (
        "#include <regex>\n#include <string>\n"
        'int main() { std::regex r("a+b*"); return std::regex_match(std::string("aab"), r) ? 0 : 1; }\n'
    )
    program = heavy_cpp if ext == "cpp" else COMPILED["rs"]
    result = run(ext, program, compile_timeout_s=0.05)
    assert (result["status"], result["exit_code"]) == (status, -1)
