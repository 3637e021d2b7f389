"""Every spec in examples/ validates offline (hub ids included) and round-trips; together
they cover every task and every method family. A new example file is checked automatically."""

from __future__ import annotations

from pathlib import Path

import pytest

from advfusion_cli.spec import check_paths, dump_spec, load_spec, parse_spec
from advfusion_cli.spec.names import METHODS, TASKS

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_examples_exist():
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_and_round_trips(path):
    spec = load_spec(path)
    check_paths(spec)
    assert parse_spec(dump_spec(spec)) == spec


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_opens_with_a_comment_saying_what_it_runs(path):
    header = path.read_text().splitlines()[:2]
    assert all(line.startswith("# ") for line in header)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_through_the_cli(cli, path):
    result = cli("validate", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ok {path}")


def test_examples_cover_every_task_and_method():
    specs = [load_spec(path) for path in EXAMPLES]
    # The custom task's example is examples/custom-task/ (its records are generated first);
    # tests/test_custom_task_compare.py runs it.
    assert {spec.data.task for spec in specs} == set(TASKS) - {"custom"}
    assert {spec.method.name for spec in specs} == set(METHODS)
    fused_kinds = {spec.method.adapter_kind for spec in specs if spec.is_fusion}
    assert fused_kinds == {"task-adapter", "compacter"}
    assert any(spec.preset == "paper" and spec.data.source_kind == "hub" for spec in specs)
