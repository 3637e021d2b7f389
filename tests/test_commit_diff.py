"""The compiled diff (cydifflib) renders CommitPackFT diffs exactly as the authors' difflib."""

from __future__ import annotations

import difflib
import json
import random
from pathlib import Path

import pytest

from advfusion_cli.data.tasks import commit_message

pytest.importorskip("cydifflib")
FIXTURES = Path(__file__).parent / "fixtures" / "data" / "commitpackft"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "commit_messages"


def _authors(old_file: str, new_file: str, old: str, new: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), fromfile=old_file, tofile=new_file, lineterm=""
    )
    return "\n".join(lines)


def _records() -> list[dict]:
    files = sorted(FIXTURES.rglob("*.jsonl")) + sorted(SHARED.rglob("*.jsonl"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def test_the_renderer_is_the_compiled_one():
    import cydifflib

    assert commit_message.unified_diff is cydifflib.unified_diff


def test_real_records_render_as_with_difflib():
    records = _records()
    assert len(records) >= 20
    for r in records:
        args = (r["old_file"], r["new_file"], r["old_contents"], r["new_contents"])
        assert commit_message.render_diff(*args) == _authors(*args), r["commit"]


def test_edited_line_lists_render_as_with_difflib():
    """Many repeated lines (difflib's autojunk past 200 lines), inserts, deletes, swaps."""
    rng = random.Random(0)
    for _ in range(200):
        vocab = [f"line {rng.randint(0, 30)}" for _ in range(40)]
        old = [rng.choice(vocab) for _ in range(rng.randint(0, 450))]
        new = list(old)
        for _ in range(rng.randint(0, 30)):
            at = rng.randint(0, len(new))
            choice = rng.random()
            if choice < 0.4:
                new.insert(at, rng.choice(vocab))
            elif new:
                at = min(at, len(new) - 1)
                if choice < 0.8:
                    del new[at]
                else:
                    new[at] = rng.choice(vocab)
        args = ("a.rb", "b.rb", "\n".join(old), "\n".join(new))
        assert commit_message.render_diff(*args) == _authors(*args)
