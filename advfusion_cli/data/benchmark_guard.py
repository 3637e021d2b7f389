"""Benchmark data is never training data: MultiPL-E's authors ask that it is not trained on.

A task source that is MultiPL-E (the hub's nuprl/MultiPL-E, a MultiPL-E JSONL file, or a
folder of them) is refused in one line before anything is read, pointing at the command that
evaluates on it instead. Only the top level of a folder and the first line of each JSONL file
are looked at, so the check costs nothing on real task data.
"""

from __future__ import annotations

import json
from pathlib import Path

from advfusion_cli.errors import UserError

MULTIPL_E_HUB_ID = "nuprl/MultiPL-E"
# The columns every MultiPL-E row has (name, language, prompt, tests, stop_tokens, ...).
MULTIPL_E_COLUMNS = frozenset({"name", "prompt", "tests", "stop_tokens"})


def is_multiple_row(row: object) -> bool:
    return isinstance(row, dict) and row.keys() >= MULTIPL_E_COLUMNS


def _first_row(path: Path) -> dict | None:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            line = handle.readline()
        return json.loads(line) if line.strip() else None
    except (OSError, ValueError):
        return None


def multiple_files(path: Path) -> list[Path]:
    """The MultiPL-E JSONL files `path` is or holds (top level only)."""
    if path.is_file():
        candidates = [path]
    elif path.is_dir():
        candidates = sorted(path.glob("*.jsonl"))
    else:
        return []
    return [p for p in candidates if p.suffix == ".jsonl" and is_multiple_row(_first_row(p))]


def refuse_benchmark_source(source: str) -> None:
    """One-line UserError when `source` is MultiPL-E benchmark data."""
    is_benchmark = False
    if source.startswith("hub:"):
        hub_id = source[len("hub:") :].split("@", 1)[0].strip()
        is_benchmark = hub_id.lower() == MULTIPL_E_HUB_ID.lower()
    elif source != "testbed":
        is_benchmark = bool(multiple_files(Path(source).expanduser()))
    if is_benchmark:
        raise UserError(
            f"'{source}' is MultiPL-E benchmark data, which is for evaluation only (its authors "
            "ask that it is never used for training); evaluate on it with: advfusion evaluate "
            f"--benchmark multipl-e --data {source} --lang LANG"
        )
