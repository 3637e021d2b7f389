"""MultiPL-E execution speed: programs per second through the sandbox against a plain
subprocess (the official harness's way: the same command, no isolation), at the same
parallelism, per language. The goal: the sandbox keeps at least 0.7x the plain throughput.

Each language runs `programs` distinct copies of one small passing program (a comment with
its index makes each one distinct) through a process pool of `workers`, first plainly, then
in the sandbox; every program must pass both ways, so the two paths did the same work.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

GOAL_RATIO = 0.7

# One passing add(x, y) program per language: the work a MultiPL-E program does, roughly.
PROGRAMS: dict[str, tuple[str, str]] = {  # ext -> (comment prefix, program)
    "lua": ("--", "local function add(x, y)\n  return x + y\nend\nassert(add(2, 3) == 5)\n"),
    "rkt": (
        ";",
        "#lang racket\n(require rackunit)\n(define (add x y) (+ x y))\n(check-equal? (add 2 3) 5)\n",
    ),
    "ml": ("(* *)", "let add x y = x + y;;\nassert (add 2 3 = 5);;\n"),
    "r": ("#", "add <- function(x, y) { x + y }\nif(!identical(add(2, 3), 5)){quit('no', 1)}\n"),
    "pl": ("#", "sub add { my ($x, $y) = @_; return $x + $y; }\nexit(add(2, 3) == 5 ? 0 : 1);\n"),
    "php": (
        "//",
        "<?php\nfunction add($x, $y) { return $x + $y; }\nexit(add(2, 3) === 5 ? 0 : 1);\n",
    ),
    "sh": ("#", "add() { echo $(( $1 + $2 )); }\n[[ $(add 2 3) = 5 ]] || exit 1\n"),
    "js": ("//", "function add(x, y) { return x + y; }\nif (add(2, 3) !== 5) process.exit(1);\n"),
    "rb": ("#", "def add(x, y)\n  x + y\nend\nexit(add(2, 3) == 5 ? 0 : 1)\n"),
    "py": ("#", "def add(x, y):\n    return x + y\nassert add(2, 3) == 5\n"),
    "cpp": ("//", "#include <cassert>\nint main() { assert(2 + 3 == 5); }\n"),
}


def _numbered(ext: str, index: int) -> str:
    prefix, program = PROGRAMS[ext]
    if prefix == "(* *)":
        return f"(* {index} *)\n{program}"
    if ext == "php":  # a line before <?php would be printed
        return program + f"// {index}\n"
    if ext == "rkt":  # #lang must stay the first line
        return program + f"; {index}\n"
    return f"{prefix} {index}\n{program}"


def _plain(ext: str, program: str) -> bool:
    """The official harness's way: the same commands in a temp folder, a plain subprocess."""
    from advfusion_cli.sandbox.multiple_languages import MULTIPL_E_LANGUAGES
    from advfusion_cli.sandbox.multiple_runner import find_multiple_toolchain
    from advfusion_cli.sandbox.toolchains import render

    row = MULTIPL_E_LANGUAGES[ext]
    ready = find_multiple_toolchain(ext)
    folder = tempfile.mkdtemp(prefix="advfusion-bench-plain-")
    try:
        with open(os.path.join(folder, row.source_name), "w", encoding="utf-8") as handle:
            handle.write(program)
        steps = [ready.toolchain.compile, ready.toolchain.run]
        for template, seconds in zip(steps, (row.compile_timeout_s, row.timeout_s), strict=True):
            if template is None:
                continue
            done = subprocess.run(
                render(template, ready.tools),
                cwd=folder,
                capture_output=True,
                timeout=seconds,
                check=False,
                start_new_session=True,
            )
            if done.returncode != 0:
                return False
        return True
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sandboxed(ext: str, program: str) -> bool:
    from advfusion_cli.sandbox.multiple_languages import MULTIPL_E_LANGUAGES
    from advfusion_cli.sandbox.multiple_runner import is_pass, run_multiple_program

    return is_pass(run_multiple_program(MULTIPL_E_LANGUAGES[ext], program))


def _warm(_: int) -> None:
    """Import what a run needs and hold the worker a moment, so that every worker of the pool
    is started (a pool starts them on demand) before anything is timed."""
    import advfusion_cli.sandbox.multiple_runner  # noqa: F401

    time.sleep(0.3)


def _throughput(pool, runner, ext: str, programs: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    passed = sum(pool.map(runner, [ext] * len(programs), programs))
    return len(programs) / (time.perf_counter() - started), passed


def measure(languages: list[str], programs: int, workers: int, log=None) -> list[dict]:
    """One row per language: programs/s plain and sandboxed, and their ratio."""
    from advfusion_cli.sandbox.multiple_runner import find_multiple_toolchain

    rows = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_warm, range(2 * workers)))  # start every worker before timing
        for ext in languages:
            if find_multiple_toolchain(ext) is None:
                rows.append({"language": ext, "skipped": "toolchain not installed"})
                continue
            batch = [_numbered(ext, i) for i in range(programs)]
            if log is not None:
                log(f"{ext}: {programs} programs, {workers} workers")
            pool.submit(_plain, ext, batch[0]).result()  # warm the toolchain's files
            plain, plain_passed = _throughput(pool, _plain, ext, batch)
            sandbox, sandbox_passed = _throughput(pool, _sandboxed, ext, batch)
            rows.append(
                {
                    "language": ext,
                    "programs": programs,
                    "workers": workers,
                    "plain_per_s": round(plain, 2),
                    "sandbox_per_s": round(sandbox, 2),
                    "ratio": round(sandbox / plain, 3),
                    "goal_met": sandbox / plain >= GOAL_RATIO,
                    "passed": {"plain": plain_passed, "sandbox": sandbox_passed},
                }
            )
    return rows
