"""Where a grid keeps what it knows about its jobs, and how a job's state is worked out.

    <workdir>/grids/<name>/
        grid.json             the job graph: stages, dependencies, resources, outputs
        stages/<stage>.pkl    what the stage's process runs (its spec, request, ...)
        state/<stage>.json    pending | submitted | running | done | failed | requeued |
                              interrupted | not-run, with the job id, exit code, last error line
        logs/<stage>.log      the stage's own output (stdout and stderr)
        submitit/             submitit's job files and logs

Only the standard library is imported here: the job wrapper that runs on a cluster node
reads and writes these files before any model code is loaded.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

PENDING, SUBMITTED, RUNNING, DONE = "pending", "submitted", "running", "done"
FAILED, REQUEUED, INTERRUPTED, NOT_RUN = "failed", "requeued", "interrupted", "not-run"
FINAL = (DONE, FAILED, NOT_RUN)
GRAPH_FILE = "grid.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def state_file(grid: Path, name: str) -> Path:
    return grid / "state" / f"{name}.json"


def stage_file(grid: Path, name: str) -> Path:
    return grid / "stages" / f"{name}.pkl"


def log_file(grid: Path, name: str) -> Path:
    return grid / "logs" / f"{name}.log"


def _write_json(path: Path, record: dict) -> None:
    """Atomically (temporary file + rename): a reader never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=1)
    os.replace(tmp, path)


def write_state(grid: Path, name: str, state: str, **extra: object) -> None:
    """Replace a stage's state; a new launch's record keeps nothing of the old one except the
    job id it replaces (`previous_job_id`), so status shows the newest attempt."""
    record = {"state": state, "updated": now_iso(), **extra}
    _write_json(state_file(grid, name), record)


def update_state(grid: Path, name: str, state: str, **extra: object) -> None:
    """Change a stage's state, keeping what the record already holds (its job id, log)."""
    record = read_state(grid, name) or {}
    record.update({"state": state, "updated": now_iso(), **extra})
    _write_json(state_file(grid, name), record)


def read_state(grid: Path, name: str) -> dict | None:
    try:
        return json.loads(state_file(grid, name).read_text())
    except (OSError, ValueError):
        return None


def read_graph(grid: Path) -> dict:
    return json.loads((grid / GRAPH_FILE).read_text())


def write_graph(grid: Path, graph: dict) -> None:
    _write_json(grid / GRAPH_FILE, graph)


def last_error_line(log: Path, limit: int = 64 * 1024) -> str:
    """The last non-blank line of a log (the exception or `error:` line of a failed stage)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""
