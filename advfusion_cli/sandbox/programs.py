"""Execute model-written programs against stdin/stdout tests, one isolated process per run.

A candidate is compiled once (in its own isolated process), then every test runs in a fresh
temporary directory holding a copy of the build, with a scrubbed environment (minimal PATH,
HOME and TMPDIR inside the run directory, nothing inherited), resource limits and a wall
timeout; the directory is removed afterwards. How strongly a run is isolated depends on the
machine (namespaces, cgroups): see `sandbox_info()` and docs/metrics.md.

Output comparison (xCodeEval style): CRLF becomes LF, trailing whitespace is removed from
every line and trailing empty lines are dropped, on both sides; leading whitespace counts.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from advfusion_cli.errors import UserError
from advfusion_cli.sandbox import isolation
from advfusion_cli.sandbox.cgroups import RunCgroup
from advfusion_cli.sandbox.process_runner import Outcome, run_isolated
from advfusion_cli.sandbox.toolchains import (
    LANGUAGE_TABLE,
    LANGUAGES,
    LanguageSpec,
    canonical_language,
    find_toolchain,
    java_main_class,
    render,
)

Status = Literal[
    "ok", "runtime_error", "timeout", "memory_limit", "output_limit", "compile_error", "unsupported"
]
_MB = 1024 * 1024
_DETAIL_CHARS = 2000  # how much of stdin/stdout/stderr a failure report keeps


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 5.0  # RLIMIT_CPU works in whole seconds: rounded up
    wall_seconds: float = 10.0
    memory_mb: int = 512
    file_size_mb: int = 16
    max_processes: int = 64  # processes and threads, the program itself included
    max_output_bytes: int = 1_000_000  # per stream (stdout, stderr)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise UserError(f"sandbox limit '{name}' must be positive, got {value!r}")


# Compilers get more of everything than the programs they build.
COMPILE_LIMITS = Limits(
    cpu_seconds=60.0,
    wall_seconds=90.0,
    memory_mb=2048,
    file_size_mb=256,
    max_processes=256,
    max_output_bytes=1_000_000,
)


@dataclass(frozen=True)
class RunResult:
    status: Status
    stdout: str
    stderr: str
    returncode: int | None  # negative: killed by that signal; None: never started
    wall_time: float
    cpu_time: float = 0.0


@dataclass(frozen=True)
class TestFailure:
    index: int  # position of the failing test
    status: str  # "wrong_answer" or the run's status
    stdin: str
    expected: tuple[str, ...]
    stdout: str
    stderr: str


@dataclass(frozen=True)
class TestsResult:
    passed: bool
    n_passed: int
    n_run: int
    n_tests: int
    status: str  # "passed", "wrong_answer", or the first failing run's status
    first_failure: TestFailure | None
    compile_result: RunResult | None  # None for interpreted languages


def executable_languages() -> dict[str, bool]:
    """Language id -> whether its toolchain is on this machine."""
    return {language: find_toolchain(language) is not None for language in LANGUAGES}


def sandbox_info() -> dict[str, object]:
    """What isolation runs actually get on this machine, and which languages can run."""
    return {**isolation.isolation_info().as_dict(), "executable_languages": executable_languages()}


def normalize_output(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def outputs_match(actual: str, accepted: Sequence[str]) -> bool:
    """True when the output equals any accepted output after normalize_output."""
    normalized = normalize_output(actual)
    return any(normalized == normalize_output(expected) for expected in accepted)


def _remove_tree(path: str) -> None:
    """Delete a run directory even if the program removed permissions inside it."""

    def make_writable_and_retry(function, failed_path, _error):
        parent = os.path.dirname(failed_path)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IRWXU)
        if os.path.isdir(failed_path) and not os.path.islink(failed_path):
            os.chmod(failed_path, stat.S_IRWXU)
        function(failed_path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=make_writable_and_retry)


def _environment(spec: LanguageSpec, tools: dict[str, str], workdir: str, compiling: bool):
    tool_dirs = dict.fromkeys(os.path.dirname(path) for path in tools.values())
    extra = spec.compile_env if compiling else spec.run_env
    return {
        "PATH": ":".join([*tool_dirs, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        **{key: value.format(workdir=workdir) for key, value in extra.items()},
    }


def _classify(outcome: Outcome, spec: LanguageSpec, limits: Limits) -> Status:
    code = outcome.returncode
    if outcome.output_exceeded:
        return "output_limit"
    if outcome.timed_out:
        return "timeout"
    if code == 0:
        return "ok"
    stderr = outcome.stderr.decode("utf-8", "replace")
    if outcome.oom_killed or any(marker in stderr for marker in spec.oom_markers):
        return "memory_limit"
    # RLIMIT_CPU: SIGXCPU at the limit, SIGKILL a second later if the program caught it.
    cpu_exhausted = outcome.cpu_time >= max(1, math.ceil(limits.cpu_seconds))
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu_exhausted):
        return "timeout"
    if code == -signal.SIGXFSZ:
        return "output_limit"  # a file grew past file_size_mb
    return "runtime_error"


def _execute(
    spec: LanguageSpec,
    argv: list[str],
    workdir: str,
    env: dict[str, str],
    stdin: str,
    limits: Limits,
) -> RunResult:
    """One isolated process in `workdir` under `limits`."""
    info, cgroup_bases = isolation.isolation_plan()
    cgroup = None
    if cgroup_bases is not None:
        cgroup = RunCgroup(
            cgroup_bases,
            max_pids=limits.max_processes + 2,  # + the relay outside and init inside the pid ns
            memory_bytes=(limits.memory_mb + spec.resident_extra_mb) * _MB,
        )
    if info.running_as_root or info.user_namespace:
        nproc = limits.max_processes + 2 if info.user_namespace else None
    else:
        nproc = isolation.user_task_count(os.getuid()) + limits.max_processes
    setup = isolation.ChildSetup(
        workdir=os.fsencode(workdir),
        cpu_seconds=limits.cpu_seconds,
        address_space_bytes=(limits.memory_mb + spec.address_space_extra_mb) * _MB,
        file_size_bytes=limits.file_size_mb * _MB,
        nproc=nproc,
        cgroup_procs=cgroup.procs_files if cgroup else (),
        namespaces=info.namespaces,
        user_namespace=info.user_namespace,
        mounts=tuple(isolation.read_mounts()) if info.namespaces else (),
        drop_capabilities=info.running_as_root,
    )
    try:
        outcome = run_isolated(
            argv,
            workdir=workdir,
            env=env,
            stdin=stdin.encode("utf-8", "replace"),
            wall_seconds=limits.wall_seconds,
            max_output_bytes=limits.max_output_bytes,
            setup=setup,
            cgroup=cgroup,
        )
    finally:
        if cgroup is not None:
            cgroup.remove()
    return RunResult(
        status=_classify(outcome, spec, limits),
        stdout=outcome.stdout.decode("utf-8", "replace"),
        stderr=outcome.stderr.decode("utf-8", "replace"),
        returncode=outcome.returncode,
        wall_time=outcome.wall_time,
        cpu_time=outcome.cpu_time,
    )


@dataclass
class _Build:
    spec: LanguageSpec
    tools: dict[str, str]
    directory: str  # source and compiled artefacts, copied into every run directory
    values: dict[str, str]  # placeholder values for the run command


def _unsupported(message: str) -> RunResult:
    return RunResult("unsupported", "", message, None, 0.0)


def _build(
    language: str, source: str, compile_limits: Limits
) -> tuple[_Build | None, RunResult | None]:
    """Write (and compile) the source. (None, result) when unsupported or it fails to compile."""
    canonical = canonical_language(language)
    if canonical is None:
        return None, _unsupported(f"no sandbox support for language '{language}'")
    spec = LANGUAGE_TABLE[canonical]
    tools = find_toolchain(canonical)
    if tools is None:
        needed = ", ".join(spec.tools.values())
        return None, _unsupported(f"{canonical} is not executable here (needs: {needed})")

    directory = tempfile.mkdtemp(prefix=f"advfusion-build-{canonical}-")
    main_class, class_file = java_main_class(source) if canonical == "java" else ("", "")
    source_name = spec.source_name.format(main_class_file=class_file)
    # errors="replace": model output may hold lone surrogates, which UTF-8 cannot encode.
    with open(
        os.path.join(directory, source_name), "w", encoding="utf-8", errors="replace"
    ) as handle:
        handle.write(source)
    values = {**tools, "main_class": main_class, "source": source_name}
    build = _Build(spec, tools, directory, values)
    if spec.compile is None:
        return build, None

    argv = render(spec.compile, {**values, "memory_mb": str(compile_limits.memory_mb)})
    env = _environment(spec, tools, directory, compiling=True)
    result = _execute(spec, argv, directory, env, "", compile_limits)
    if result.status != "ok":
        _remove_tree(directory)
        reason = "" if result.status == "runtime_error" else f"compiler {result.status}\n"
        return None, RunResult(
            "compile_error",
            result.stdout,
            reason + result.stderr,
            result.returncode,
            result.wall_time,
            result.cpu_time,
        )
    for name in os.listdir(directory):  # build caches (e.g. Go's) are not needed to run
        if name.startswith("."):
            _remove_tree(os.path.join(directory, name))
    return build, result


def _run_built(build: _Build, stdin: str, limits: Limits) -> RunResult:
    workdir = tempfile.mkdtemp(prefix="advfusion-run-")
    try:
        shutil.copytree(build.directory, workdir, symlinks=True, dirs_exist_ok=True)
        argv = render(build.spec.run, {**build.values, "memory_mb": str(limits.memory_mb)})
        env = _environment(build.spec, build.tools, workdir, compiling=False)
        return _execute(build.spec, argv, workdir, env, stdin, limits)
    finally:
        _remove_tree(workdir)


def run_program(
    language: str,
    source: str,
    stdin: str = "",
    limits: Limits = Limits(),
    compile_limits: Limits = COMPILE_LIMITS,
) -> RunResult:
    """Compile if needed, then run once with `stdin`."""
    build, failure = _build(language, source, compile_limits)
    if build is None:
        return failure
    try:
        return _run_built(build, stdin, limits)
    finally:
        _remove_tree(build.directory)


def run_tests(
    language: str,
    source: str,
    tests: Sequence[tuple[str, Sequence[str]]],
    limits: Limits = Limits(),
    stop_on_first_failure: bool = True,
    compile_limits: Limits = COMPILE_LIMITS,
) -> TestsResult:
    """Run a candidate on (stdin, accepted outputs) tests; compiled once, one process per test."""
    if not tests:
        raise UserError("run_tests needs at least one (stdin, accepted outputs) test")
    build, compile_result = _build(language, source, compile_limits)
    if build is None:
        return TestsResult(False, 0, 0, len(tests), compile_result.status, None, compile_result)
    n_passed = n_run = 0
    first_failure: TestFailure | None = None
    try:
        for index, (stdin, accepted) in enumerate(tests):
            result = _run_built(build, stdin, limits)
            n_run += 1
            if result.status == "ok" and outputs_match(result.stdout, accepted):
                n_passed += 1
                continue
            if first_failure is None:
                first_failure = TestFailure(
                    index=index,
                    status="wrong_answer" if result.status == "ok" else result.status,
                    stdin=stdin[:_DETAIL_CHARS],
                    expected=tuple(a[:_DETAIL_CHARS] for a in accepted),
                    stdout=result.stdout[:_DETAIL_CHARS],
                    stderr=result.stderr[-_DETAIL_CHARS:],
                )
            if stop_on_first_failure:
                break
    finally:
        _remove_tree(build.directory)
    passed = n_passed == len(tests)
    return TestsResult(
        passed=passed,
        n_passed=n_passed,
        n_run=n_run,
        n_tests=len(tests),
        status="passed" if passed else first_failure.status,
        first_failure=first_failure,
        compile_result=compile_result,
    )


def run_argv(
    spec: LanguageSpec,
    tools: dict[str, str],
    argv: list[str],
    workdir: str,
    limits: Limits,
    *,
    compiling: bool = False,
    stdin: str = "",
) -> RunResult:
    """One isolated process running `argv` in an existing `workdir` (which the caller owns and
    removes), with the scrubbed environment of `spec` and `limits`: for callers that lay out
    the run folder themselves (MultiPL-E programs)."""
    env = _environment(spec, tools, workdir, compiling=compiling)
    return _execute(spec, argv, workdir, env, stdin, limits)


def remove_tree(path: str) -> None:
    """Delete a run folder, even one whose program removed its own permissions."""
    _remove_tree(path)
