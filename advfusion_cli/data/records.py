"""The rendered example every task produces, and the bookkeeping for records that are dropped.

A `TaskExample` is one prompt/target pair in the authors' templates. `Diagnostics` counts
records dropped per reason (malformed JSON, missing field, filter) or, under `strict`,
turns the first malformed record into a one-line `UserError` naming file and line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from advfusion_cli.errors import UserError


@dataclass(frozen=True)
class TaskExample:
    id: str
    task: str
    language: str  # canonical target-side language id
    prompt: str
    target: str
    source_language: str | None = None  # translation only
    # code generation: (stdin, accepted stdouts); translation (LLMTrans): ("", (expected stdout,))
    tests: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # split, source file/line, repo, src_uid, ... and `inner_span`: the (start, end) characters
    # of the cuttable text inside `prompt` (diff, source code, problem statement).
    meta: dict = field(default_factory=dict)

    @property
    def split(self) -> str:
        return self.meta.get("split", "")


class RecordError(Exception):
    """A record that cannot become an example; `reason` is the count key ("missing field 'x'")."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Diagnostics:
    """Counts dropped records per reason; under `strict` a malformed record raises UserError."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.dropped: Counter[str] = Counter()

    def malformed(self, error: RecordError, where: str) -> None:
        if self.strict:
            detail = f" ({error.detail})" if error.detail else ""
            raise UserError(f"{where}: malformed record: {error.reason}{detail}")
        self.dropped[error.reason] += 1

    def filtered(self, reason: str, count: int = 1) -> None:
        """A well-formed record left out on purpose (a filter); never an error, even if strict."""
        self.dropped[reason] += count


def require_str(row: dict[str, Any], name: str, *, allow_empty: bool = True) -> str:
    """`row[name]` as a string, or RecordError naming the field."""
    if name not in row or row[name] is None:
        raise RecordError(f"missing field '{name}'")
    value = row[name]
    if not isinstance(value, str):
        raise RecordError(f"wrong type for field '{name}'", f"{type(value).__name__}, not str")
    if not allow_empty and not value.strip():
        raise RecordError(f"empty field '{name}'")
    return value


def optional_str(row: dict[str, Any], name: str) -> str:
    """`row[name]` as a string, '' when absent or null; RecordError when of another type."""
    value = row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"wrong type for field '{name}'", f"{type(value).__name__}, not str")
    return value
