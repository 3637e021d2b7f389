"""The CLI as separate processes: `python -m advfusion_cli` stopped by a real SIGINT and resumed,
and two CPU processes under `accelerate launch` sharing one run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_workflow_cli import common, make_tokenizer, run_dirs, write_commits


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("wfp")
    model = root / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    make_tokenizer(model)
    write_commits(root / "commits")
    return model, root / "commits"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def test_sigint_saves_a_checkpoint_and_the_rerun_resumes(world, tmp_path):
    args = common(world, tmp_path, 400, "train-adapters", "--langs", "ruby")
    args += ["--set", "training.eval_every_steps=1000", "--set", "training.save_every_steps=1000"]
    command = [sys.executable, "-m", "advfusion_cli", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    metrics = None
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        found = (
            list((tmp_path / "runs").glob("*/metrics.jsonl"))
            if (tmp_path / "runs").exists()
            else []
        )
        if found and len(found[0].read_text().splitlines()) >= 5:
            metrics = found[0]
            break
        time.sleep(0.05)
    assert metrics is not None, "training never started"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Run the same command again to resume" in stderr
    run = metrics.parent
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted"
    saved = list((run / "checkpoints" / "adapter").glob("step-*"))
    assert len(saved) == 1 and int(saved[0].name.split("-")[1]) == status["step"] < 400

    again = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [record["step"] for record in records if "loss" in record]
    assert steps == list(range(1, 401))
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


def test_two_cpu_processes_under_accelerate_launch(world, tmp_path):
    """On CPU, accelerate's `--cpu` launcher starts a single process (several need mpirun);
    `--multi_gpu` starts them with torchrun, and the session selects gloo on CPU."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    args = common(world, tmp_path, 4, "train-adapters", "--langs", "ruby")
    command = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "advfusion_cli",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("advfusion train-adapters") == 1  # one summary: the main process
    run = run_dirs(tmp_path)["task-adapter-ruby"]
    env = json.loads((run / "env.json").read_text())
    assert env["num_processes"] == 2
    end = run / "checkpoints" / "adapter" / "end"
    assert (end / "rng-rank0.pt").is_file() and (end / "rng-rank1.pt").is_file()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    # 8 training records, batch 2 per process x 2 processes: half an epoch per step
    assert [m["epoch"] for m in steps] == [0.5, 1.0, 1.5, 2.0]
    assert (run / "final" / "adapter.safetensors").is_file()
    # the main process prepared the data once; the other read it: one entry, whole
    cache = tmp_path / "data-cache"
    assert len(list(cache.glob("features-*/manifest.json"))) == 1  # train and validation
    assert not list(cache.glob(".building-*"))
    # the first progress line of the phase says what each evaluation reads
    assert "ruby task-adapter (eval: 2 records): 4 steps" in done.stderr
