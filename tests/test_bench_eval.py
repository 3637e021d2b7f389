"""`advfusion bench eval`: the launch it makes, one-line errors, and (slow tier) a whole run at
tiny sizes: three runs of the same evaluation with identical predictions, the rates computed
from what each evaluation recorded, and the overlap measurement."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import one_line_error

from advfusion_cli.bench.eval_scale import launch_command


def test_one_process_runs_directly_and_n_under_accelerate_launch():
    assert launch_command(1, ["evaluate", "--run", "base"]) == [
        sys.executable, "-m", "advfusion_cli", "evaluate", "--run", "base",
    ]  # fmt: skip
    many = launch_command(4, ["evaluate"])
    assert many[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert many[many.index("--num_processes") + 1] == "4" and "--multi_gpu" in many
    assert many[-3:] == ["-m", "advfusion_cli", "evaluate"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--processes", "1"], "--processes"),
        (["--limit", "0"], "--limit"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_sizes_are_one_line(cli, args, named):
    one_line_error(cli("bench", "eval", *args), named)


@pytest.mark.slow
def test_a_tiny_bench_eval_run(cli, tmp_path):
    path = tmp_path / "bench-eval.json"
    args = ["--limit", "4", "--max-new-tokens", "4", "--batch-size", "2", "--json", str(path)]
    result = cli("bench", "eval", *args, "--work", str(tmp_path / "work"))
    assert result.exit_code == 0, result.stderr[-3000:]
    data = json.loads(path.read_text())
    assert [(r["processes"], r["threads"]) for r in data["rows"]][0] == (1, None)
    assert [r["processes"] for r in data["rows"]] == [1, 1, 2]
    assert data["identical_predictions"]
    for row in data["rows"]:
        assert row["items"] == 4 and row["items_per_s"] == pytest.approx(4 / row["generation_s"])
    fastest_one = max(r["items_per_s"] for r in data["rows"][:2])
    assert data["speedup"] == pytest.approx(data["rows"][2]["items_per_s"] / fastest_one)
    overlap = data["overlap"]
    assert overlap["programs_run"] >= 1 and overlap["same_scores"]
    assert overlap["sum_s"] == pytest.approx(
        overlap["generation_only_s"] + overlap["execution_only_s"], abs=1e-3
    )
    assert "speed-up with 2 processes" in result.stdout and "overlap:" in result.stdout
