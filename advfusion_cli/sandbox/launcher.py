"""A small helper process that starts the sandboxed programs on behalf of its parent.

Starting a sandboxed program costs a fork of the calling process (the isolation setup runs
as Python between fork and exec), then two more forks inside it (the pid namespace's relay
and init), each copying the caller's page tables and faulting in the pages Python touches.
An evaluation worker has torch and the CLI imported (~240 MB resident), which made every
program cost ~50 ms more than from a bare interpreter. So each process that runs programs
starts, once, a helper that imports only the sandbox (stdlib only, ~15 MB), and hands it
every run: the isolation itself (`ChildSetup`, cgroups, limits) is unchanged, it is only
forked from a small process. The helper is single-threaded, so the preexec_fn caveat about
threads no longer binds the caller either.

Protocol on the helper's stdin/stdout: an 8-byte length, then a pickle; a request is the
keyword arguments of `run_isolated`, a reply is ("ok", Outcome) or ("error", exception). The
helper exits when its stdin closes (its parent exited), after finishing the run in progress.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading

from advfusion_cli.sandbox.process_runner import Outcome, run_isolated

_LENGTH = struct.Struct("<Q")


def _read_exactly(stream, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _send(stream, payload: object) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream) -> object | None:
    header = _read_exactly(stream, _LENGTH.size)
    if header is None:
        return None
    data = _read_exactly(stream, _LENGTH.unpack(header)[0])
    return None if data is None else pickle.loads(data)


def serve() -> None:
    """The helper's loop: run each request, reply, exit on EOF (or Ctrl-C, after the run's
    process group has been killed by run_isolated's clean-up)."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to the reply pipe.
    sys.stdout = sys.stderr
    try:
        while (request := _receive(requests)) is not None:
            try:
                reply = ("ok", run_isolated(**request))
            except Exception as error:  # noqa: BLE001 - handed back to the caller to raise
                reply = ("error", error)
            try:
                _send(replies, reply)
            except (pickle.PicklingError, TypeError, AttributeError):
                _send(replies, ("error", RuntimeError(repr(reply[1]))))
    except (KeyboardInterrupt, BrokenPipeError):
        pass


class _Helper:
    """One running helper process, owned by the process that started it."""

    def __init__(self) -> None:
        import advfusion_cli

        package_root = os.path.dirname(os.path.dirname(os.path.abspath(advfusion_cli.__file__)))
        code = (
            f"import sys; sys.path.insert(0, {package_root!r}); "
            "from advfusion_cli.sandbox.launcher import serve; serve()"
        )
        self.owner = os.getpid()
        # -S -E: no site-packages, no PYTHON* variables: the sandbox needs only the stdlib.
        self.process = subprocess.Popen(
            [sys.executable, "-S", "-E", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )

    def call(self, request: dict) -> Outcome:
        try:
            _send(self.process.stdin, request)
            reply = _receive(self.process.stdout)
        except BrokenPipeError:
            reply = None
        except BaseException:
            # Interrupted mid-run (Ctrl-C): its reply would be read as the next run's.
            self.discard()
            raise
        if reply is None:
            code = self.process.wait()
            raise RuntimeError(f"the sandbox launcher process exited (exit code {code})")
        kind, value = reply
        if kind == "error":
            raise value
        return value

    def discard(self) -> None:
        """Stop this helper: SIGINT makes it kill the run in progress (run_isolated's clean-up)
        and exit; SIGKILL if it has not within a few seconds."""
        with contextlib.suppress(OSError):
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def close(self) -> None:
        if self.owner != os.getpid():
            return  # a forked child's copy: the parent still uses this helper
        try:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


_helper: _Helper | None = None
_lock = threading.Lock()


def _current_helper() -> _Helper:
    global _helper
    alive = _helper is not None and _helper.owner == os.getpid() and _helper.process.poll() is None
    if not alive:
        _helper = _Helper()
    return _helper


def start() -> None:
    """Start this process's helper now (it starts on the first run otherwise)."""
    with _lock:
        _current_helper()


def run_in_launcher(argv: list[str], **options) -> Outcome:
    """`run_isolated(argv, **options)`, executed by this process's helper (started on first
    use, restarted if it died)."""
    with _lock:
        return _current_helper().call({"argv": argv, **options})


@atexit.register
def _close_helper() -> None:
    if _helper is not None:
        _helper.close()
