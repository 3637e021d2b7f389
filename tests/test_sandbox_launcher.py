"""The sandbox launcher: every sandboxed run is started by a small helper process, not forked
from the (possibly large) caller; errors come back as the same exceptions; a helper that died
is replaced."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from advfusion_cli.sandbox import launcher
from advfusion_cli.sandbox.programs import Limits, run_program

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


def _helper_pid() -> int:
    launcher.start()
    return launcher._helper.process.pid


def test_runs_are_started_by_a_helper_that_imported_only_the_sandbox():
    import torch  # noqa: F401 - the caller is heavy; the helper must not be

    assert run_program("python", "print(1)").stdout == "1\n"  # the helper has started
    helper = _helper_pid()
    assert helper != os.getpid()
    with open(f"/proc/{helper}/cmdline", "rb") as handle:
        argv = handle.read().split(b"\0")
    assert argv[1:3] == [b"-S", b"-E"]  # no site-packages: torch cannot even be found
    with open(f"/proc/{helper}/maps") as handle:
        assert "torch" not in handle.read()
    with open(f"/proc/{helper}/status") as handle:
        resident_kb = int(next(line for line in handle if line.startswith("VmRSS")).split()[1])
    assert resident_kb < 60_000, resident_kb  # torch alone maps hundreds of MB


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _children_of(parent: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == parent]


def test_the_program_is_forked_by_the_helper_not_by_the_caller():
    helper = _helper_pid()
    before = set(_children_of(os.getpid()))  # other tests may have left children
    results = []
    run = threading.Thread(
        target=lambda: results.append(run_program("python", "import time\ntime.sleep(3)\n"))
    )
    run.start()
    try:
        deadline = time.monotonic() + 30
        while not _children_of(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        started_by_helper = _children_of(helper)
        # The run was not forked from this process: it has no new child.
        new_children = set(_children_of(os.getpid())) - before
    finally:
        run.join()
    assert results[0].status == "ok", results
    assert len(started_by_helper) == 1
    assert new_children == set()
    assert _children_of(helper) == []  # nothing is left behind once the run is over


def test_errors_come_back_as_the_same_exception():
    from advfusion_cli.sandbox import isolation

    setup = isolation.ChildSetup(
        workdir=b"/", cpu_seconds=1, address_space_bytes=None, file_size_bytes=1 << 20, nproc=None
    )
    with pytest.raises(FileNotFoundError):
        launcher.run_in_launcher(
            ["/nonexistent/advfusion-no-such-program"],
            workdir="/",
            env={"PATH": "/usr/bin:/bin"},
            stdin=b"",
            wall_seconds=5,
            max_output_bytes=1000,
            setup=setup,
        )
    assert run_program("python", "print(1)").stdout == "1\n"  # the helper is still serving


def test_a_helper_that_died_is_replaced():
    first = _helper_pid()
    os.kill(first, signal.SIGKILL)
    launcher._helper.process.wait()
    result = run_program("python", "print(6 * 7)", limits=Limits(wall_seconds=10))
    assert (result.status, result.stdout) == ("ok", "42\n")
    assert _helper_pid() != first


class _Interrupted(Exception):
    pass


def test_a_run_interrupted_mid_way_does_not_hand_its_reply_to_the_next_run():
    first = _helper_pid()

    def interrupt(signum, frame):
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(_Interrupted):
            run_program("python", "import time\ntime.sleep(3)\nprint('first')\n")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # The helper that was running it is gone; the next run gets its own result.
    assert launcher._helper.process.poll() is not None
    result = run_program("python", "print('second')")
    assert (result.status, result.stdout) == ("ok", "second\n")
    assert _helper_pid() != first
