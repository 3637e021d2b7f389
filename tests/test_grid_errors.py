"""Bad input to `advfusion grid`, `compare --launcher` and `advfusion status`: one line each,
exit code 2, nothing planned or written."""

from __future__ import annotations

import sys

import pytest
import yaml
from conftest import one_line_error, run_cli


def write(path, values) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_unknown_resource_key_names_it(tmp_path):
    spec = write(tmp_path / "grid.yaml", {"resources": {"fusion": {"partiton": "gpu"}}})
    line = one_line_error(run_cli("grid", "--spec", spec), "resources.fusion.partiton")
    assert "Did you mean 'partition'?" in line and f"{spec}:" in line


def test_unknown_key_in_a_compare_resources_file(tmp_path):
    resources = write(tmp_path / "res.yaml", {"resources": {"default": {"gpu": 1}}})
    line = one_line_error(
        run_cli("compare", "--launcher", "local", "--resources", resources, "--dry-run"),
        "resources.default.gpu",
    )
    assert "Did you mean 'gpus'?" in line


def test_bad_resource_values(tmp_path):
    spec = write(tmp_path / "grid.yaml", {"resources": {"default": {"time": "tomorrow"}}})
    one_line_error(run_cli("grid", "--spec", spec), "resources.default.time", "HH:MM")
    spec = write(tmp_path / "grid.yaml", {"resources": {"adapter": {"sbatch": ["qos high"]}}})
    one_line_error(run_cli("grid", "--spec", spec), "resources.adapter.sbatch", "--qos=high")


def test_a_grid_that_expands_to_nothing(tmp_path):
    spec = write(tmp_path / "grid.yaml", {"targets": [], "methods": ["lora"]})
    line = one_line_error(run_cli("grid", "--spec", spec), "targets", "expands to no jobs")
    assert spec in line
    assert not (tmp_path / "advfusion-runs").exists()


def test_missing_submitit_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    result = run_cli("compare", "--launcher", "slurm", "--workdir", str(tmp_path / "w"))
    one_line_error(result, "submitit", "pip install 'advfusion[cluster]'")
    spec = write(tmp_path / "grid.yaml", {"methods": ["lora"]})
    one_line_error(run_cli("grid", "--spec", spec, "--launcher", "local"), "advfusion[cluster]")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["compare", "--launcher", "slrum"], ["--launcher", "Did you mean 'slurm'?"]),
        (["grid", "--spec", "no-such-grid.yaml"], ["grid spec not found", "no-such-grid.yaml"]),
        (["compare", "--resources", "res.yaml"], ["--resources", "--launcher"]),
        (["compare", "--launcher", "local", "--max-parallel", "0"], ["--max-parallel", "0"]),
    ],
)
def test_bad_flags(args, names, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "res.yaml", {"default": {"gpus": 1}})
    one_line_error(run_cli(*args), *names)


def test_status_without_a_grid(tmp_path):
    one_line_error(run_cli("status", str(tmp_path)), "No grid in", str(tmp_path))
    one_line_error(run_cli("status", str(tmp_path / "nowhere")), "does not exist")
