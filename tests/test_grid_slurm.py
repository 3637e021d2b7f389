"""`advfusion grid --launcher slurm` with sbatch stubbed: a 2 models × 2 targets × 3 methods
grid becomes the expected jobs (one adapter array per base), each sbatch script carries its
dependencies and its stage kind's resources; a resubmission while they are queued submits
nothing; the job wrapper requeues a stage that exits 75 and forwards the scheduler's signal."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from test_evaluate_support import TRAIN_SETS, make_model, write_translation

SBATCH = """#!/bin/sh
n=$(( $(cat "$STUBS/counter" 2>/dev/null || echo 1000) + 1 ))
echo "$n" > "$STUBS/counter"
cp "$1" "$STUBS/job-$n.sh"
echo "Submitted batch job $n"
"""
SQUEUE = """#!/bin/sh
# every job asked about is still queued: print the ids given after -j
while [ $# -gt 0 ]; do [ "$1" = "-j" ] && echo "$2" | tr ',' '\\n'; shift; done
"""
RECORD = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STUBS/calls"
"""


def stub(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """sbatch, srun, squeue and scontrol stubs first on PATH."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    stub(stubs, "sbatch", SBATCH)
    stub(stubs, "squeue", SQUEUE)
    stub(stubs, "srun", RECORD)
    stub(stubs, "scontrol", RECORD)
    monkeypatch.setenv("STUBS", str(stubs))
    monkeypatch.setenv("PATH", f"{stubs}{os.pathsep}{os.environ['PATH']}")
    return stubs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid-slurm")
    return {
        "models": [make_model(root / "model-a"), make_model(root / "model-b", seed=1)],
        "data": write_translation(root / "trans"),
        "root": root,
    }


def grid_spec(world, folder: Path, **changes) -> Path:
    spec = {
        "models": [str(m) for m in world["models"]],
        "tasks": ["code-translation"],
        "targets": ["ruby", "python"],
        "methods": ["task-adapter", "adapterfusion", "advfusion"],
        "seeds": [0],
        "langs": ["java", "python", "ruby"],
        "data": str(world["data"]),
        "workdir": str(folder / "work"),
        "set": [f"{key}={value}" for key, value in TRAIN_SETS.items()],
        "evaluation": {"limit": 4, "max_new_tokens": 8},
        "resources": {
            "default": {"partition": "gpu", "account": "proj42", "mem": "32G"},
            "fusion": {"time": "02:00:00", "gpus": 2, "sbatch": ["--qos=high"]},
            "table": {"partition": "cpu", "gpus": 0},
        },
        **changes,
    }
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sbatch_lines(script: str) -> dict[str, str]:
    """`#SBATCH --key=value` lines as {key: value} (flags without a value: True)."""
    found = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line.removeprefix("#SBATCH --").partition("=")
            found[key] = value or True
    return found


def test_grid_job_graph_scripts(world, slurm, tmp_path):
    spec = grid_spec(world, tmp_path)
    result = run_cli("grid", "--spec", str(spec), "--launcher", "slurm")
    assert result.exit_code == 0, result.stdout + result.stderr

    (grid,) = (tmp_path / "work" / "grids").iterdir()
    graph = json.loads((grid / "grid.json").read_text())
    stages = {s["name"]: s for s in graph["stages"]}
    kinds = [s["kind"] for s in stages.values()]
    # per base: java/python/ruby adapters (shared by both targets and all methods),
    # 2 fusions × 2 targets, 3 methods × 2 targets evaluations, 2 tables; one summary
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "adapter": 6,
        "fusion": 8,
        "evaluate": 12,
        "table": 4,
        "summary": 1,
    }
    job = {name: json.loads((grid / "state" / f"{name}.json").read_text()) for name in stages}
    assert all(record["state"] == "submitted" for record in job.values())
    scripts = {p.name: p.read_text() for p in slurm.glob("job-*.sh")}
    assert len(scripts) == 2 + 8 + 12 + 4 + 1  # one array per base, the others one each

    def script_of(name: str) -> dict[str, str]:
        return sbatch_lines(scripts[f"job-{job[name]['job_id'].split('_')[0]}.sh"])

    adapters = [n for n, s in stages.items() if s["kind"] == "adapter"]
    arrays = {job[n]["job_id"].split("_")[0] for n in adapters}
    assert len(arrays) == 2 and {job[n]["job_id"].split("_")[1] for n in adapters} == {
        "0",
        "1",
        "2",
    }
    for name in adapters:
        lines = script_of(name)
        assert lines["array"] == "0-2%3" and "dependency" not in lines
        assert lines["gpus-per-node"] == "1" and lines["partition"] == "gpu"
        assert lines["account"] == "proj42" and lines["mem"] == "32G"
        assert lines["time"] == str(24 * 60) and lines["signal"] == "USR1@120"
        assert lines["requeue"] is True

    for name, stage in stages.items():
        lines = script_of(name)
        deps = [job[d]["job_id"] for d in stage["deps"]]
        if stage["kind"] == "adapter":
            continue
        assert lines["dependency"] == "afterok:" + ":".join(sorted(deps)), name
        assert lines["kill-on-invalid-dep"] == "yes"
        if stage["kind"] == "fusion":
            assert len(deps) == 3 and all("_" in d for d in deps)  # the 3 adapters of its base
            assert lines["gpus-per-node"] == "2" and lines["time"] == "120"
            assert lines["qos"] == "high" and lines["partition"] == "gpu"
        elif stage["kind"] == "evaluate":
            assert len(deps) == 1 and lines["gpus-per-node"] == "1"
            assert "qos" not in lines
        elif stage["kind"] in ("table", "summary"):
            assert lines["partition"] == "cpu" and "gpus-per-node" not in lines
    assert len(stages["summary"]["deps"]) == 4
    for stage in stages.values():  # each job runs the stage wrapper through submitit
        assert re.search(
            r"submitit\.core\._submit",
            scripts[f"job-{job[stage['name']]['job_id'].split('_')[0]}.sh"],
        )

    # Submitting again while everything is still queued submits nothing twice.
    again = run_cli("grid", "--spec", str(spec), "--launcher", "slurm")
    assert again.exit_code == 0, again.stderr
    assert len(list(slurm.glob("job-*.sh"))) == len(scripts)
    assert again.stdout.count("from an earlier submission") == len(stages)

    status = run_cli("status", str(tmp_path / "work"), "--json")
    states = {s["state"] for s in json.loads(status.stdout)["stages"]}
    assert status.exit_code == 0 and states == {"pending"}


def test_dry_run_lists_jobs_dependencies_resources(world, slurm, tmp_path):
    spec = grid_spec(world, tmp_path, models=[str(world["models"][0])], targets=["ruby"])
    result = run_cli("grid", "--spec", str(spec), "--launcher", "slurm", "--dry-run")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "to run, array 0[2]" in out and "qos=high" in out and "partition cpu" in out
    assert "10 of 10 stages to run" in out  # 3 adapters, 2 fusions, 3 evaluations, table, summary
    assert not list(slurm.glob("job-*.sh")) and not (tmp_path / "work" / "grids").exists()


def wait_then_signal(ready: Path, signum: int) -> threading.Thread:
    def send() -> None:
        while not ready.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_a_stage_that_exits_75_is_requeued(tmp_path, slurm, monkeypatch):
    """The scheduler's USR1 reaches the stage; the stage exits 75; the job asks Slurm to
    requeue it (scontrol requeue <array job>_<task>) and leaves with the same code."""
    from advfusion_cli.grid import job, state

    ready = tmp_path / "ready"
    stage = (
        "import signal, sys, time, pathlib\n"
        "signal.signal(signal.SIGUSR1, lambda *_: sys.exit(75))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(600)\n"
    )
    monkeypatch.setattr(job, "stage_command", lambda path: [sys.executable, "-c", stage])
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    sender = wait_then_signal(ready, signal.SIGUSR1)
    with pytest.raises(SystemExit) as stopped:
        job.run_stage(str(tmp_path / "grid"), "task-adapter-ruby-00000000")
    sender.join()
    assert stopped.value.code == job.REQUEUE_EXIT_CODE == 75
    assert (slurm / "calls").read_text().split("\n")[0] == "scontrol requeue 77_2"
    record = state.read_state(tmp_path / "grid", "task-adapter-ruby-00000000")
    assert record["state"] == "requeued" and record["job_id"] == "77_2"


def test_a_failing_stage_records_its_last_line(tmp_path, monkeypatch):
    from advfusion_cli.grid import job, state

    stage = "import sys; print('loading'); sys.exit('error: no such model x')"
    monkeypatch.setattr(job, "stage_command", lambda path: [sys.executable, "-c", stage])
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    with pytest.raises(job.StageFailed, match="no such model x"):
        job.run_stage(str(tmp_path), "eval-x")
    record = state.read_state(tmp_path, "eval-x")
    assert record["state"] == "failed" and record["exit_code"] == 1
    assert record["error"] == "error: no such model x"
