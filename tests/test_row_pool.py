"""Large JSON Lines files parsed by worker processes give what the sequential reader gives:
the same rows in the same order, the same drop counts and the same first error under strict."""

from __future__ import annotations

import json
import random

import pytest
from test_workflow_cli import write_commits

from advfusion_cli.data import row_pool
from advfusion_cli.data.records import Diagnostics, RecordError
from advfusion_cli.data.tasks import commit_message
from advfusion_cli.data.tasks.base import LoadRequest
from advfusion_cli.errors import UserError


def _parse(row):
    """A task-like parse: a RecordError for rows without a subject, else a small tuple."""
    if not row.data.get("subject"):
        raise RecordError("empty target", f"row {row.line}")
    return row.line, row.data["subject"], str(row.file)


def _write_rows(path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.03:
            lines.append("{not json")
        elif kind < 0.05:
            lines.append("")  # blank lines are skipped, numbers still count them
        elif kind < 0.07:
            lines.append("[1, 2]")
        elif kind < 0.1:
            lines.append(json.dumps({"subject": ""}))
        else:
            lines.append(json.dumps({"subject": f"row {i} " + "x" * rng.randint(0, 3000)}))
    raw = ("\n".join(lines) + "\n").encode()
    raw += b"\xff\xfe broken utf-8\n" + json.dumps({"subject": "last, no newline"}).encode()
    path.write_bytes(raw)


def _read(path, strict: bool = False) -> tuple[list, dict]:
    diagnostics = Diagnostics(strict=strict)
    rows = list(row_pool.parsed_rows(path, _parse, diagnostics))
    return rows, dict(diagnostics.dropped)


@pytest.fixture
def pooled(monkeypatch):
    """Every .jsonl file goes through the pool, in small ranges (many in flight)."""
    monkeypatch.setattr(row_pool, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(row_pool, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(row_pool, "_workers", lambda: 2)


def test_pooled_rows_equal_the_sequential_reader(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    _write_rows(path, 3000)
    sequential = _read(path)
    with monkeypatch.context() as patch:
        patch.setattr(row_pool, "PARALLEL_MIN_BYTES", 0)
        patch.setattr(row_pool, "CHUNK_BYTES", 4096)
        patch.setattr(row_pool, "_workers", lambda: 2)
        calls = []
        real = row_pool._pooled
        patch.setattr(row_pool, "_pooled", lambda *a: calls.append(1) or real(*a))
        pooled = _read(path)
    assert calls, "the pool was not used"
    assert pooled == sequential
    rows, dropped = pooled
    assert rows[-1][1] == "last, no newline" and rows[-1][0] == 3002  # line numbers kept
    assert set(dropped) == {"invalid JSON", "not a JSON object", "empty target", "invalid UTF-8"}


def test_strict_raises_the_first_bad_row_as_the_sequential_reader_does(tmp_path, pooled):
    path = tmp_path / "rows.jsonl"
    _write_rows(path, 500, seed=3)
    with pytest.raises(UserError) as pooled_error:
        _read(path, strict=True)
    row_pool.PARALLEL_MIN_BYTES = 10**12  # restored by monkeypatch
    with pytest.raises(UserError) as sequential_error:
        _read(path, strict=True)
    assert str(pooled_error.value) == str(sequential_error.value)
    assert f"{path}:" in str(pooled_error.value)


def test_a_json_array_file_is_read_whole_not_split(tmp_path, pooled):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps([{"subject": "a"}, {"subject": "b"}]))
    assert not row_pool._use_pool(path)
    rows, _ = _read(path)
    assert [r[1] for r in rows] == ["a", "b"]


def test_commit_records_read_through_the_pool_equal_the_sequential_read(tmp_path, pooled):
    source = tmp_path / "commits"
    write_commits(source, per_language=30)
    request = LoadRequest(languages=frozenset({"ruby", "java"}), splits=("train",))
    options = commit_message.CommitMessageOptions()

    def read():
        from advfusion_cli.data.stats import DataStats

        return commit_message.read(source, request, options, Diagnostics(), DataStats("t", "s"))

    through_pool = read()
    row_pool.PARALLEL_MIN_BYTES = 10**12
    assert through_pool == read() and len(through_pool) == 60
