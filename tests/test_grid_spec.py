"""Grid specs (the shipped example and the docs' one validate; resources layer), expansion into
comparisons, and the grid summary's layout (methods × languages, best in bold)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from advfusion_cli.grid.spec import ResourcePlan, Resources, load_grid, minutes, parse_grid

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_and_the_docs_grid_validate():
    grid = load_grid(ROOT / "examples" / "grid" / "paper-grid.yaml")
    assert len(grid.models) * len(grid.tasks) * len(grid.targets) == 6
    docs = (ROOT / "docs" / "workflows.md").read_text()
    block = re.search(r"A grid spec .*?```yaml\n(.*?)```", docs, re.S).group(1)
    documented = parse_grid(yaml.safe_load(block), "docs")
    assert documented.resources.fusion.sbatch == ["--constraint=a100"]


def test_resources_layer_builtin_default_and_stage():
    plan = ResourcePlan(
        default=Resources(partition="gpu", cpus=8), table=Resources(partition="cpu", gpus=0)
    )
    fusion = plan.for_kind("fusion")
    assert (fusion.partition, fusion.cpus, fusion.gpus, fusion.time) == ("gpu", 8, 1, "24:00:00")
    summary = plan.for_kind("summary")  # the summary runs with the tables' resources
    assert (summary.partition, summary.gpus, summary.cpus) == ("cpu", 0, 8)
    assert fusion.signal == "USR1@120"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(90, 90), ("90", 90), ("12:00:00", 720), ("1-02:30", 1590), ("0:00:30", 1)],
)
def test_time_limits_in_minutes(text, expected):
    assert minutes(text) == expected


def test_every_combination_is_one_comparison(tmp_path):
    from advfusion_cli.grid.cells import expand, grid_options

    grid = parse_grid(
        {
            "models": ["m1", "m2"],
            "tasks": ["code-translation"],
            "targets": ["ruby", "python"],
            "methods": ["lora", "advfusion"],
            "seeds": [0, 1],
            "workdir": str(tmp_path),
        },
        "grid.yaml",
    )
    cells = expand(*grid_options(grid, "grid.yaml"))
    assert [(c.model, c.target) for c in cells] == [
        ("m1", "ruby"),
        ("m1", "python"),
        ("m2", "ruby"),
        ("m2", "python"),
    ]
    request = cells[3].request
    assert request.methods == ("lora", "advfusion") and request.seeds == (0, 1)
    assert request.inputs.flags["model.name_or_path"] == "m2"
    assert request.inputs.flags["data.target"] == "python"


def fake_results(folder: Path, target: str, scores: dict[str, tuple[float, float | None]]) -> None:
    folder.mkdir(parents=True)
    rows = [
        {"method": method, "vary": None, "metrics": {"exact_match": {"mean": m, "std": s}}}
        for method, (m, s) in scores.items()
    ]
    payload = {"table_metrics": ["exact_match"], "rows": rows, "target": target}
    (folder / "results.json").write_text(json.dumps(payload))


def test_summary_has_methods_as_rows_and_languages_as_columns(tmp_path):
    from advfusion_cli.grid.summary import write_summary

    fake_results(tmp_path / "r", "ruby", {"lora": (0.25, 0.05), "advfusion": (0.5, 0.1)})
    fake_results(tmp_path / "p", "python", {"lora": (0.75, None), "advfusion": (0.5, None)})
    cells = [
        {"model": "m", "task": "code-translation", "target": t, "results": str(tmp_path / f)}
        for t, f in (("ruby", "r"), ("python", "p"), ("go", "missing"))
    ]
    md, table = write_summary(tmp_path / "grid", cells)
    text = md.read_text()
    assert "| method | ruby | python | go |" in text
    assert "| lora | 0.250 ± 0.050 | **0.750** | - |" in text
    assert "| advfusion | **0.500 ± 0.100** | 0.500 | - |" in text
    assert "no results.json in" in text  # the cell without results is named, not dropped
    rows = list(csv.reader(io.StringIO(table.read_text())))
    assert rows[0] == ["model", "task", "metric", "method", "ruby", "python", "go"]
    assert rows[1] == ["m", "code-translation", "exact_match", "lora", "0.25", "0.75", ""]


def test_a_stage_done_since_it_failed_is_recorded_done(tmp_path):
    """A stage that failed in a launch and was finished since (by a later launch or another
    command) shows as done, not with its old error."""
    from advfusion_cli.grid import state
    from advfusion_cli.grid.graph import Graph, Stage, save

    folder = tmp_path / "grids" / "g"
    state.write_state(folder, "a", state.FAILED, error="error: boom")
    stages = {
        "a": Stage("a", "adapter", "a", "out-a", done=True),
        "b": Stage("b", "evaluate", "b", "out-b", done=False, deps=["a"]),
    }
    save(Graph(folder, stages, []), "local")
    assert state.read_state(folder, "a")["state"] == "done"
    assert state.read_state(folder, "a")["error"] is None
    assert (folder / "stages" / "b.pkl").is_file() and not (folder / "stages" / "a.pkl").exists()


def test_loading_submitit_closes_none_of_the_process_logging_handlers():
    """submitit configures logging on import (dictConfig closes every existing handler: a
    tracker's, absl's, pytest's captured streams); the launcher imports it without that."""
    import subprocess
    import sys

    code = (
        "import logging\n"
        "closed = []\n"
        "class Recorder(logging.Handler):\n"
        "    def close(self):\n"
        "        closed.append(1)\n"
        "        super().close()\n"
        "logging.getLogger().addHandler(Recorder())\n"
        "from advfusion_cli.grid.launch import require_submitit\n"
        "require_submitit('local')\n"
        "print('closed', len(closed))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SUBMITIT_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "closed 0", done.stdout + done.stderr
