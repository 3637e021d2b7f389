"""Progress on stderr: one bar per phase (loss, lr, tokens/s, ETA, peak memory).

On a terminal the bar redraws in place. Elsewhere (pipes, nohup and cluster logs, CI) a live
bar would stay invisible until the phase ends, so plain lines are printed instead: one when a
phase starts, one every `PLAIN_EVERY_S` seconds while it runs, one per evaluation and one when
it ends. A log shows where a long run stands, and never floods.
"""

from __future__ import annotations

import resource
import sys
import time

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
    """Peak memory of this process: CUDA allocations on GPU, resident set size on CPU. CUDA
    managed memory (a paged optimizer's state) is not included: see optim.paged_memory_mb."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is in kilobytes on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def format_memory(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


PLAIN_EVERY_S = 30.0  # how often a log (not a terminal) gets a progress line


class Throttle:
    """Says when the next plain progress line is due: the first time, then every `every_s`."""

    def __init__(self, every_s: float = PLAIN_EVERY_S, clock=time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self._last is None or now - self._last >= self.every_s:
            self._last = now
            return True
        return False


class NullProgress:
    """The display of processes other than the main one: says nothing."""

    def start(self, name: str, description: str, total: int, completed: int) -> None: ...
    def update(self, step: int, record: dict) -> None: ...
    def note_eval(self, step: int, eval_loss: float, improved: bool) -> None: ...
    def note_stop(self, reason: str) -> None: ...
    def finish(self, best_eval_loss: float | None, steps: int | None = None) -> None: ...
    def stop(self) -> None: ...


class PhaseProgress(NullProgress):
    """One rich progress bar per training phase; plain lines when stderr is not a terminal."""

    def __init__(self, console: Console | None = None, clock=time.monotonic):
        self.console = console or stderr_console()
        self.plain = not self.console.is_terminal
        self.clock = clock
        self._progress: Progress | None = None
        self._task = None
        self._label = ""
        self._total = 0
        self._started = 0.0
        self._first_step = 0
        self._throttle = Throttle(clock=clock)

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def start(self, name: str, description: str, total: int, completed: int) -> None:
        self.stop()
        self._label = description or name
        self._total = total
        self._started = self.clock()
        self._first_step = completed
        self._throttle = Throttle(clock=self.clock)
        if self.plain:
            resumed = f", resuming at step {completed}" if completed else ""
            self._line(f"{self._label}: {total} steps{resumed}")
            self._throttle.due()  # the start line counts as the first line
            return
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

    def _eta(self, step: int) -> str:
        done = step - self._first_step
        if done <= 0 or step >= self._total:
            return ""
        remaining = (self.clock() - self._started) / done * (self._total - step)
        return f"  ETA {format_duration(remaining)}"

    def update(self, step: int, record: dict) -> None:
        loss, lr = f"{record['loss']:.4f}", f"{record['lr']:.2e}"
        speed, memory = f"{record['tokens_per_s']:,.0f}", format_memory(record["peak_memory_mb"])
        if self.plain:
            if self._throttle.due():
                percent = 100 * step / max(self._total, 1)
                self._line(
                    f"{self._label}: step {step}/{self._total} ({percent:.0f}%)  loss {loss}  "
                    f"lr {lr}  {speed} tok/s  mem {memory}{self._eta(step)}"
                )
            return
        if self._progress is None:
            return
        self._progress.update(
            self._task, completed=step, loss=loss, lr=lr, speed=speed, memory=memory
        )

    def note_eval(self, step: int, eval_loss: float, improved: bool) -> None:
        mark = " (best)" if improved else ""
        self.console.print(f"{self._label}: step {step} eval loss {eval_loss:.4f}{mark}")

    def note_stop(self, reason: str) -> None:
        """A phase that ends before its budget says why (early stopping)."""
        self._line(f"{self._label}: {reason}")

    def finish(self, best_eval_loss: float | None, steps: int | None = None) -> None:
        """`steps`: where the phase ended, when early stopping ended it before its budget."""
        if self.plain and self._label:
            best = f", best eval loss {best_eval_loss:.4f}" if best_eval_loss is not None else ""
            elapsed = format_duration(self.clock() - self._started)
            done = self._total if steps is None else steps
            self._line(f"{self._label}: finished {done} steps in {elapsed}{best}")
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
