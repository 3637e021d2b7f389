"""Rich progress on stderr: one bar per phase (loss, lr, tokens/s, ETA, peak memory), a summary table.

On a terminal the bar redraws in place; elsewhere (pipes, CliRunner, CI logs) rich draws it
once when the phase ends, and evaluations print one line each, so logs never flood.
"""

from __future__ import annotations

import resource
import sys

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def peak_memory_mb() -> float:
    """Peak memory of this process: CUDA allocations on GPU, resident set size on CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is in kilobytes on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def format_memory(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


class NullProgress:
    """The display of processes other than the main one: says nothing."""

    def start(self, name: str, description: str, total: int, completed: int) -> None: ...
    def update(self, step: int, record: dict) -> None: ...
    def note_eval(self, step: int, eval_loss: float, improved: bool) -> None: ...
    def finish(self, best_eval_loss: float | None) -> None: ...
    def stop(self) -> None: ...


class PhaseProgress(NullProgress):
    """One rich progress bar per training phase."""

    def __init__(self, console: Console | None = None):
        self.console = console or stderr_console()
        self._progress: Progress | None = None
        self._task = None
        self._label = ""

    def start(self, name: str, description: str, total: int, completed: int) -> None:
        self.stop()
        self._label = description or name
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} tok/s  mem {task.fields[memory]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(
            self._label,
            total=total,
            completed=completed,
            loss="-",
            lr="-",
            speed="-",
            memory="-",
        )
        self._progress.start()
        if completed:
            self.console.print(f"{self._label}: resuming at step {completed}/{total}")

    def update(self, step: int, record: dict) -> None:
        if self._progress is None:
            return
        self._progress.update(
            self._task,
            completed=step,
            loss=f"{record['loss']:.4f}",
            lr=f"{record['lr']:.2e}",
            speed=f"{record['tokens_per_s']:,.0f}",
            memory=format_memory(record["peak_memory_mb"]),
        )

    def note_eval(self, step: int, eval_loss: float, improved: bool) -> None:
        mark = " (best)" if improved else ""
        self.console.print(f"{self._label}: step {step} eval loss {eval_loss:.4f}{mark}")

    def finish(self, best_eval_loss: float | None) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
