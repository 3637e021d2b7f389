"""What an evaluation reports while it runs: one bar per stage (generate, execute, attention).

`EvalProgress` is the interface; `NullEvalProgress` says nothing; `RichEvalProgress` draws
one rich bar on stderr. The compare/demo pipeline display implements the same methods.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class NullEvalProgress:
    def begin(self, label: str, total: int) -> None: ...
    def advance(self, count: int = 1) -> None: ...
    def progress_to(self, done: int, total: int) -> None: ...
    def describe(self, text: str) -> None: ...  # live detail: tokens/s, programs run
    def end(self) -> None: ...
    def note(self, text: str) -> None: ...


class RichEvalProgress(NullEvalProgress):
    """One bar per stage of one evaluation, on stderr."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        self._progress: Progress | None = None
        self._task = None

    def begin(self, label: str, total: int) -> None:
        self.end()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task(label, total=max(total, 1), detail="")
        self._progress.start()

    def advance(self, count: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, count)

    def progress_to(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=max(total, 1))

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, detail=text)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, text: str) -> None:
        self.console.print(text)
