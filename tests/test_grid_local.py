"""`compare --launcher local`: the comparison's stages as subprocesses through submitit's local
executor, two at once, on a tiny random Llama.

One launch meets a real failure (the python adapter's run is locked by another process — this
test): that stage fails, every stage that needs it is marked not-run, the independent ones
finish. After the lock is released the same command runs only the missing stages, and the
results equal those of the in-process comparison with the same seed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_cli
from test_evaluate_support import make_model, training_args, write_translation

METHODS = "task-adapter,adapterfusion"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid-local")
    return {
        "model": make_model(root / "model"),
        "data": write_translation(root / "trans"),
        "root": root,
    }


def compare_args(world, workdir, *more: str) -> list[str]:
    return [
        "compare",
        *training_args(world["model"], world["data"], "code-translation", workdir),
        "--langs",
        "python,ruby",
        "--methods",
        METHODS,
        "--seeds",
        "0",
        "--limit",
        "4",
        "--max-new-tokens",
        "8",
        "--resamples",
        "50",
        *more,
    ]


def results_of(workdir) -> dict:
    (folder,) = (workdir / "compare").iterdir()
    return json.loads((folder / "results.json").read_text())


def started(stdout: str) -> set[str]:
    return {line.split()[1] for line in stdout.splitlines() if line.startswith("start ")}


@pytest.fixture(scope="module")
def in_process(world):
    result = run_cli(*compare_args(world, world["root"] / "in-process"))
    assert result.exit_code == 0, result.stderr
    return results_of(world["root"] / "in-process")


@pytest.fixture(scope="module")
def launched(world):
    """Launch 1 with the python adapter's run locked, then launch 2 after releasing it."""
    from advfusion_cli.workflows.runs import RunLock, Workdir

    workdir = world["root"] / "launched"
    launch = compare_args(world, workdir, "--launcher", "local", "--max-parallel", "2")
    dry = run_cli(*launch, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    (python_adapter,) = set(re.findall(r"task-adapter-python-[0-9a-f]{8}", dry.stdout))
    assert not (workdir / "grids").exists()  # a dry run writes nothing

    lock = RunLock(Workdir(workdir).run(python_adapter)).acquire()
    try:
        first = run_cli(*launch)
        status = run_cli("status", str(workdir), "--json")
        status_table = run_cli("compare", *launch[1:], "--status")
    finally:
        lock.release()
    second = run_cli(*launch)
    return {
        "workdir": workdir,
        "adapter": python_adapter,
        "first": first,
        "status": status,
        "status_table": status_table,
        "second": second,
    }


def test_a_failed_stage_marks_its_dependants_not_run(launched):
    first, adapter = launched["first"], launched["adapter"]
    assert first.exit_code == 1, first.stdout + first.stderr
    failed = [line for line in first.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and adapter in failed[0]
    assert "is locked by another process" in failed[0]  # the stage's own last error line
    not_run = {line.split()[2] for line in first.stdout.splitlines() if line.startswith("not run")}
    kinds = {name.split("-")[0] for name in not_run}
    # the fusion, its evaluation, the table and the summary: everything downstream of it
    assert len(not_run) == 4 and kinds == {"adapterfusion", "eval", "table", "summary"}
    # the task-adapter branch did not need the python adapter: it ran to the end
    assert {n for n in started(first.stdout) if n.startswith("eval-task-adapter-ruby")}
    assert "1 stage(s) failed, 4 not run" in first.stdout


def test_status_shows_states_errors_and_logs(launched):
    status, table = launched["status"], launched["status_table"]
    assert status.exit_code == 0 and table.exit_code == 0, status.stderr + table.stderr
    stages = {s["stage"]: s for s in json.loads(status.stdout)["stages"]}
    failed = stages[launched["adapter"]]
    assert failed["state"] == "failed" and "is locked by another process" in failed["error"]
    assert failed["error"] in Path(failed["log"]).read_text()  # the line comes from its log
    not_run = [s for s in stages.values() if s["state"] == "not-run"]
    assert len(not_run) == 4 and {s["needs"] for s in not_run} >= {launched["adapter"]}
    assert [s["state"] for s in stages.values()].count("done") == 2
    assert "2 done, 1 failed, 4 not-run" in table.stdout  # compare --status: the same table


def test_rerun_runs_only_what_is_missing(launched):
    first, second = launched["first"], launched["second"]
    assert second.exit_code == 0, second.stdout + second.stderr
    ran_before = started(first.stdout) - {launched["adapter"]}
    rerun = started(second.stdout)
    assert rerun & ran_before == set()  # nothing finished was run again
    kinds = sorted(name.split("-")[0] for name in rerun)
    assert kinds == ["adapterfusion", "eval", "summary", "table", "task"]
    assert launched["adapter"] in rerun
    summary = launched["workdir"] / "grids"
    (grid,) = summary.iterdir()
    table = (grid / "summary.md").read_text()
    assert "| method | ruby |" in table and "| adapterfusion |" in table
    assert (grid / "summary.csv").read_text().startswith("model,task,metric,method,ruby")


def test_a_finished_grid_submits_nothing(world, launched):
    again = run_cli(
        *compare_args(world, launched["workdir"], "--launcher", "local", "--max-parallel", "2")
    )
    assert again.exit_code == 0, again.stderr
    assert "is done; nothing to run" in again.stdout and not started(again.stdout)


def test_launcher_results_equal_in_process_results(launched, in_process):
    launched_results = results_of(launched["workdir"])

    def comparable(results: dict) -> dict:
        rows = [
            {
                "method": row["method"],
                "seeds": row["seeds"],
                "run_ids": [run["run_id"] for run in row["runs"]],
                "trainable_params": row["trainable_params"],
                "metrics": row["metrics"],
            }
            for row in results["rows"]
        ]
        keys = ("methods", "seeds", "evaluation", "bootstrap", "table_metrics", "task", "target")
        return {**{key: results[key] for key in keys}, "rows": rows}

    assert comparable(launched_results) == comparable(in_process)
    assert launched_results["rows"][1]["metrics"]  # scores were compared, not empty rows
