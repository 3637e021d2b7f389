"""One progress display for a whole pipeline: an overall bar over its stages, one bar for now.

The training loop reports through the workflows' phase-progress methods (start, update,
note_eval, finish, stop) and evaluations through begin/advance/update/end; both draw into the
same rich Progress, so `compare` and `demo` show one live display from start to end. When stderr
is not a terminal (a log), the live display would stay blank until the end: plain lines are
printed as well, one per stage begun and ended and one every `PLAIN_EVERY_S` seconds within a
stage, and the final display is drawn once at the end.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from advfusion_cli.workflows.progress import Throttle, format_duration, format_memory


class PipelineProgress:
    """Overall stages plus the current activity; start() once, stop() at the very end."""

    def __init__(
        self, total_stages: int, title: str, console: Console | None = None, clock=time.monotonic
    ):
        self.console = console or Console(stderr=True, highlight=False)
        self.plain = not self.console.is_terminal
        self.clock = clock
        self.started = time.perf_counter()
        self._stage_started = clock()
        self._throttle = Throttle(clock=clock)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._overall = self._progress.add_task(f"[bold]{title}", total=total_stages, detail="")
        self._current = self._progress.add_task("waiting", total=1, detail="", visible=False)
        self._label = ""
        self._running = False
        self.log: list[str] = []  # one line per finished stage (kept for a summary)

    # ---- the pipeline -------------------------------------------------------------------
    def open(self) -> PipelineProgress:
        if not self._running:
            self._progress.start()
            self._running = True
        return self

    def close(self) -> None:
        if self._running:
            self._progress.update(self._current, visible=False)
            self._progress.stop()
            self._running = False

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _position(self) -> str:
        task = self._progress.tasks[self._overall]
        return f"[{int(task.completed) + 1}/{int(task.total or 0)}]"

    def stage(self, label: str) -> None:
        """The next stage begins (shown in the overall bar)."""
        self._progress.update(self._overall, detail=label)
        self._stage_started = self.clock()
        self._throttle = Throttle(clock=self.clock)
        self._throttle.due()  # the stage line counts as the first line
        if self.plain:
            self._line(f"{self._position()} {label}")

    def stage_done(self, message: str | None = None) -> None:
        if self.plain:
            elapsed = format_duration(self.clock() - self._stage_started)
            self._line(f"{self._position()} {message or 'done'} ({elapsed})")
        self._progress.advance(self._overall)
        if message:
            self.log.append(message)

    def _plain_progress(self, text: str) -> None:
        if self.plain and self._throttle.due():
            self._line(f"      {text}")

    def add_stages(self, count: int) -> None:
        task = self._progress.tasks[self._overall]
        self._progress.update(self._overall, total=(task.total or 0) + count)

    # ---- training phases (the workflows' PhaseProgress interface) -----------------------
    def start(self, name: str, description: str, total: int, completed: int) -> None:
        self._label = f"  train {description or name}"
        self._progress.reset(
            self._current, total=max(total, 1), completed=completed, visible=True, detail=""
        )
        self._progress.update(self._current, description=self._label)

    def update(self, step: int, record: dict) -> None:
        detail = (
            f"loss {record['loss']:.3f}  {record['tokens_per_s']:,.0f} tok/s  "
            f"mem {format_memory(record['peak_memory_mb'])}"
        )
        self._progress.update(self._current, completed=step, detail=detail)
        total = int(self._progress.tasks[self._current].total or 0)
        self._plain_progress(f"{self._label.strip()}: step {step}/{total}  {detail}")

    def note_eval(self, step: int, eval_loss: float, improved: bool) -> None:
        task = self._progress.tasks[self._current]
        detail = f"{task.fields.get('detail', '')}  eval {eval_loss:.3f}{' *' if improved else ''}"
        self._progress.update(self._current, detail=detail.strip())

    def note_stop(self, reason: str) -> None:
        self.log.append(f"{self._label.strip()}: {reason}")

    def finish(self, best_eval_loss: float | None, steps: int | None = None) -> None:
        self._progress.update(self._current, visible=False)

    def stop(self) -> None:
        self._progress.update(self._current, visible=False)

    # ---- evaluations (EvalProgress interface) -------------------------------------------
    def begin(self, label: str, total: int) -> None:
        self._progress.reset(self._current, total=max(total, 1), visible=True, detail="")
        self._progress.update(self._current, description=f"  {label}")

    def _plain_count(self) -> None:
        task = self._progress.tasks[self._current]
        detail = task.fields.get("detail", "")
        self._plain_progress(
            f"{task.description.strip()}: {int(task.completed)}/{int(task.total or 0)}"
            + (f"  {detail}" if detail else "")
        )

    def advance(self, count: int = 1) -> None:
        self._progress.advance(self._current, count)
        self._plain_count()

    def progress_to(self, done: int, total: int) -> None:
        self._progress.update(self._current, completed=done, total=max(total, 1))
        self._plain_count()

    def describe(self, text: str) -> None:
        self._progress.update(self._current, detail=text)

    def end(self) -> None:
        self._progress.update(self._current, visible=False)

    def note(self, text: str) -> None:
        self.log.append(text)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started
