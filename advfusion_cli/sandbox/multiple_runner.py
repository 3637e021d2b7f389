"""Run one MultiPL-E program (prompt + completion + tests) as the official harness does.

The program is written to a fresh folder under its row's file name, compiled if the row has
a compile step (a failed build is "SyntaxError", as in every official compiled-language
evaluator), then run once in the sandbox (scrubbed environment, resource limits, process
and memory bounds, wall timeout, the folder removed afterwards) and judged by the row's
verdict rules. The result has the fields of the official results files: program, status,
exit_code, stdout, stderr.

Where the official harness and the sandbox differ: a timed-out run gets exit code -1 (as
safe_subprocess reports it); a program that fills the output cap (16 MB) is stopped and
treated as timed out, since the official harness would have let it run to its timeout; the
stored stdout/stderr keep their first 2048 bytes (what the official harness stores).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from advfusion_cli.sandbox.multiple_languages import (
    COMPILE_MAX_PROCESSES,
    OFFICIAL_OUTPUT_BYTES,
    MultiplELanguage,
    Toolchain,
    judge,
)
from advfusion_cli.sandbox.programs import Limits, remove_tree, run_argv
from advfusion_cli.sandbox.toolchains import LanguageSpec, _real_rustc, render

MEMORY_MB = 4096  # the official harness sets no memory limit; this only stops runaways
OUTPUT_CAP_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Ready:
    """A language whose toolchain is here: the toolchain used and its tools' paths."""

    toolchain: Toolchain
    tools: dict[str, str]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def install_hint(row: MultiplELanguage) -> str:
    """One line: what to install (and how) to run `row`'s programs."""
    if row.no_package:
        return row.no_package
    sudo = "" if _is_root() else "sudo "
    packages = " ".join(row.apt)
    return (
        f"{row.name} ({row.ext}) is not executable here; install it with: "
        f"{sudo}apt-get install -y {packages} (or: advfusion sandbox install {row.ext})"
    )


@functools.cache
def find_multiple_toolchain(ext: str) -> Ready | None:
    """The first of the row's toolchains whose tools are on PATH and whose test library loads
    (cached; `find_multiple_toolchain.cache_clear()` after installing)."""
    from advfusion_cli.sandbox.multiple_languages import MULTIPL_E_LANGUAGES

    row = MULTIPL_E_LANGUAGES[ext]
    for toolchain in row.toolchains:
        tools = {}
        for placeholder, executable in toolchain.tools.items():
            found = shutil.which(executable)
            if found is None:
                break
            # rustup's `rustc` is a proxy that needs the caller's HOME: run the real one.
            tools[placeholder] = _real_rustc(found) if placeholder == "rustc" else found
        else:
            if row.probe is None or _probe(render(row.probe, tools)):
                return Ready(toolchain, tools)
    return None


def _probe(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _spec(row: MultiplELanguage) -> LanguageSpec:
    """The sandbox's view of the row: limits headroom and the environment it runs with."""
    return LanguageSpec(
        id=row.ext,
        source_name=row.source_name,
        tools={},
        compile=None,
        run=(),
        address_space_extra_mb=row.address_space_extra_mb,
        resident_extra_mb=row.resident_extra_mb,
        compile_env=row.run_env,
        run_env=row.run_env,
    )


def _limits(seconds: float, max_processes: int) -> Limits:
    # Wall time is the official bound; CPU time only stops a runaway that forks past it.
    return Limits(
        cpu_seconds=seconds * 4,
        wall_seconds=seconds,
        memory_mb=MEMORY_MB,
        file_size_mb=64,
        max_processes=max_processes,
        max_output_bytes=OUTPUT_CAP_BYTES,
    )


def _stored(text: str) -> str:
    data = text.encode("utf-8", "replace")[:OFFICIAL_OUTPUT_BYTES]
    return data.decode("utf-8", "ignore")


def _result(program: str, status: str, exit_code: int, stdout: str, stderr: str) -> dict:
    return {
        "program": program,
        "status": status,
        "exit_code": exit_code,
        "stdout": _stored(stdout),
        "stderr": _stored(stderr),
    }


def run_multiple_program(row: MultiplELanguage, program: str) -> dict:
    """Compile (if the row does) and run `program`; the official result fields."""
    ready = find_multiple_toolchain(row.ext)
    if ready is None:
        raise RuntimeError(install_hint(row))  # callers check availability first
    spec = _spec(row)
    values = {**ready.tools, "workdir": ""}
    folder = tempfile.mkdtemp(prefix=f"advfusion-multiple-{row.ext}-")
    try:
        values["workdir"] = folder
        path = os.path.join(folder, row.source_name)
        with open(path, "w", encoding="utf-8", errors="replace") as handle:
            handle.write(program)
        if ready.toolchain.compile is not None:
            built = run_argv(
                spec,
                ready.tools,
                render(ready.toolchain.compile, values),
                folder,
                _limits(row.compile_timeout_s, COMPILE_MAX_PROCESSES),
                compiling=True,
            )
            if built.status != "ok":
                timed_out = built.status in ("timeout", "output_limit")
                code = -1 if timed_out or built.returncode is None else built.returncode
                status = row.compile_timeout_status if timed_out else "SyntaxError"
                return _result(program, status, code, built.stdout, built.stderr)
        ran = run_argv(
            spec,
            ready.tools,
            render(ready.toolchain.run, values),
            folder,
            _limits(row.timeout_s, row.max_processes),
        )
    finally:
        remove_tree(folder)
    timed_out = ran.status in ("timeout", "output_limit")
    code = -1 if timed_out or ran.returncode is None else ran.returncode
    status = judge(row.rules, timed_out, code, ran.stdout, ran.stderr)
    return _result(program, status, code, ran.stdout, ran.stderr)


def is_pass(result: dict) -> bool:
    """MultiPL-E's pass@k counts a program as passing when status is OK and exit code 0."""
    return result.get("status") == "OK" and result.get("exit_code") == 0
