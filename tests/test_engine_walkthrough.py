"""The README's first command, examples/engine_walkthrough.py, runs and reloads exactly."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "engine_walkthrough.py"


def test_walkthrough_runs_end_to_end(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "reloaded logits identical: True" in out
    assert "masked ['ruby']" in out
    assert "layer place  python    java    ruby" in out
    assert out.rstrip().endswith("Linear4bit")
