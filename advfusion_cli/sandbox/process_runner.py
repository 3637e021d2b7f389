"""One isolated process with bounded I/O: stdin fed, stdout/stderr capped, wall clock enforced.

A single selector loop feeds stdin without blocking, reads both pipes into buffers that stop
growing at the output cap (the process is killed the moment it exceeds it), and watches a
pidfd for exit. When the process ends, its whole process group (and cgroup) is killed before
it is reaped, so background children cannot outlive it and the group id cannot be recycled.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from advfusion_cli.sandbox.isolation import ChildSetup, RunCgroup

_READ_CHUNK = 1 << 16
_DRAIN_GRACE_SECONDS = 0.5  # after exit, how long to wait for pipes held by stray children
_POLL_SECONDS = 0.02  # exit polling when pidfds are unavailable


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # negative: killed by that signal
    stdout: bytes
    stderr: bytes
    wall_time: float
    cpu_time: float  # user + system of the process and its reaped descendants
    timed_out: bool
    output_exceeded: bool
    oom_killed: bool


def _kill_group(pgid: int, cgroup: RunCgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if cgroup is not None:
        cgroup.kill_all()


def run_isolated(
    argv: list[str],
    *,
    workdir: str,
    env: dict[str, str],
    stdin: bytes,
    wall_seconds: float,
    max_output_bytes: int,
    setup: ChildSetup,
    cgroup: RunCgroup | None = None,
) -> Outcome:
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # pgid == pid: one killpg reaches every descendant
        preexec_fn=setup,
        close_fds=True,
    )
    pgid = proc.pid
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None

    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), err_fd: bytearray()}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    stdin_fd = proc.stdin.fileno()
    pending_stdin = memoryview(stdin)
    if pending_stdin:
        os.set_blocking(stdin_fd, False)
        selector.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ)

    def exited() -> bool:
        # WNOWAIT leaves the zombie in place, so the group id stays reserved until reap().
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def reap() -> tuple[int, float]:
        _kill_group(pgid, cgroup)
        _, status, usage = os.wait4(proc.pid, 0)
        return status, usage.ru_utime + usage.ru_stime

    deadline = start + wall_seconds
    exit_status: tuple[int, float] | None = None  # (wait status, cpu seconds)
    drain_until = deadline
    timed_out = output_exceeded = False
    open_outputs = set(buffers)
    try:
        while open_outputs or exit_status is None:
            now = time.monotonic()
            if now >= drain_until:
                timed_out = exit_status is None
                break
            timeout = drain_until - now
            if pidfd is None and exit_status is None:
                timeout = min(timeout, _POLL_SECONDS)
            for key, _ in selector.select(timeout=timeout):
                if key.fd == pidfd:
                    selector.unregister(pidfd)
                elif key.fd == stdin_fd:
                    try:
                        pending_stdin = pending_stdin[
                            os.write(stdin_fd, pending_stdin[:_READ_CHUNK]) :
                        ]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        pending_stdin = pending_stdin[:0]  # the program stopped reading
                    if not pending_stdin:
                        selector.unregister(stdin_fd)
                        proc.stdin.close()
                else:
                    data = os.read(key.fd, _READ_CHUNK)
                    if not data:
                        selector.unregister(key.fd)
                        open_outputs.discard(key.fd)
                        continue
                    buffer = buffers[key.fd]
                    room = max_output_bytes - len(buffer)
                    buffer += data[:room]
                    output_exceeded = output_exceeded or len(data) > room
            if output_exceeded:
                break
            if exit_status is None and exited():
                # Stray children may still hold the pipes: kill them, then drain briefly.
                exit_status = reap()
                drain_until = time.monotonic() + _DRAIN_GRACE_SECONDS
    finally:
        if exit_status is None:
            exit_status = reap()
        selector.close()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
        if pidfd is not None:
            os.close(pidfd)
    status, cpu_time = exit_status
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits again
    return Outcome(
        returncode=proc.returncode,
        stdout=bytes(buffers[out_fd]),
        stderr=bytes(buffers[err_fd]),
        wall_time=time.monotonic() - start,
        cpu_time=cpu_time,
        timed_out=timed_out,
        output_exceeded=output_exceeded,
        oom_killed=cgroup is not None and cgroup.oom_killed(proc.returncode == -signal.SIGKILL),
    )
