"""Stopping a run cleanly: Ctrl-C, a scheduler's stop signal, or a stop file.

- SIGINT (Ctrl-C): the first finishes the current optimizer step, writes a checkpoint and
  exits 130; a second one stops at once.
- Stop signals (`training.stop_signals`, default SIGTERM and SIGUSR1: what SLURM sends at a
  time limit, on preemption, or ahead of the limit with `--signal=USR1@120`): the same clean
  stop, but the run is marked interrupted *for a requeue* and the command exits with
  `EXIT_REQUEUE` (75, EX_TEMPFAIL). Repeating a stop signal changes nothing: a launcher and
  the scheduler may both deliver the same one.
- A stop file: when the path in `$ADVFUSION_STOP_FILE` exists, it counts as a stop signal.
  It reaches processes that a launcher in between (torchrun, `accelerate launch`) would not
  forward a signal to, e.g. from an sbatch script's trap on a shared filesystem.

The trainer asks `level()` once per optimizer step; under several processes the levels are
summed in one all-reduce, so a stop on any process stops every process at the same step.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from advfusion_cli.spec.signals import signal_number

STOP_FILE_ENV = "ADVFUSION_STOP_FILE"
DEFAULT_STOP_SIGNALS = ("SIGTERM", "SIGUSR1")

# What a process asks for, by increasing precedence.
NO_STOP, CTRL_C, REQUEUE = 0, 1, 2


def stop_file() -> Path | None:
    value = os.environ.get(STOP_FILE_ENV, "").strip()
    return Path(value).expanduser() if value else None


class StopRequest:
    """What this process was asked to do, set from signal handlers (flags only: a handler
    may run while the process waits inside a collective)."""

    def __init__(self, signals: Iterable[str] = DEFAULT_STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.kind = NO_STOP
        self.signal_name: str | None = None  # the stop signal that arrived, if one did
        self._previous: dict[int, object] = {}
        self._depth = 0

    @property
    def requested(self) -> bool:
        return self.level() != NO_STOP

    @requested.setter
    def requested(self, value: bool) -> None:
        """`stop.requested = True` asks for a stop as Ctrl-C does (tests and extensions)."""
        if value and self.kind == NO_STOP:
            self.kind = CTRL_C
        elif not value:
            self.kind, self.signal_name = NO_STOP, None

    def level(self) -> int:
        """NO_STOP, CTRL_C or REQUEUE; the stop file counts as a stop signal."""
        if self.kind != REQUEUE:
            path = stop_file()
            if path is not None and path.exists():
                self.kind, self.signal_name = REQUEUE, f"stop file {path}"
        return self.kind

    @contextmanager
    def listening(self, signals: Iterable[str] | None = None) -> Iterator[StopRequest]:
        """Handle Ctrl-C and `signals` (default: those given at construction) inside the
        block; nested blocks keep the outer handlers."""
        if signals is not None and self._depth == 0:
            self.signals = tuple(signals)
        with self:
            yield self

    def __enter__(self) -> StopRequest:
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            wanted = [signal.SIGINT, *(signal_number(name) for name in self.signals)]
            for number in dict.fromkeys(wanted):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            for number, previous in self._previous.items():
                signal.signal(number, previous)
            self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            if self.kind != NO_STOP:
                raise KeyboardInterrupt
            self.kind = CTRL_C
            return
        self.kind = REQUEUE  # a stop signal wins over Ctrl-C: the scheduler wants a requeue
        self.signal_name = signal.Signals(signum).name
