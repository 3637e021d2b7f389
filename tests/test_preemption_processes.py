"""Runs on a shared cluster, as real processes: a scheduler's stop signal to one process or
to one of two gloo processes (checkpoint, status, exit code 75, exact resume), and one
process failing inside a checkpoint write ending both with its error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_workflow_cli import common, make_tokenizer, write_commits

from advfusion_cli.errors import EXIT_REQUEUE

ROOT = Path(__file__).resolve().parents[1]
STEPS = 120


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("preempt")
    model = root / "model"
    shutil.copytree(tiny_model_dir("llama"), model)
    make_tokenizer(model)
    write_commits(root / "commits")
    return model, root / "commits"


def _env(**more: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'tests'}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("ADVFUSION_STOP_FILE", None)
    env.update(more)
    return env


def _args(world, workdir: Path) -> list[str]:
    args = common(world, workdir, STEPS, "train-adapters", "--langs", "ruby")
    # no periodic checkpoint: the one a stop leaves is the stop's own
    return args + [
        "--set",
        "training.eval_every_steps=1000",
        "--set",
        "training.save_every_steps=1000",
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(command: list[str], processes: int) -> list[subprocess.Popen]:
    """`processes` workers wired by the env:// variables, as `srun` + a SLURM-to-torch
    mapping (examples/slurm/) starts them: each one's exit code is its own."""
    if processes == 1:
        return [
            subprocess.Popen(
                command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env()
            )
        ]
    port = str(_free_port())
    return [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(processes),
                LOCAL_WORLD_SIZE=str(processes),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
        )
        for rank in range(processes)
    ]


def _metrics_lines(workdir: Path) -> tuple[Path | None, int]:
    found = list((workdir / "runs").glob("*/metrics.jsonl")) if (workdir / "runs").exists() else []
    if not found:
        return None, 0
    return found[0], len(found[0].read_text().splitlines())


def _stop_midway(workdir: Path, workers: list[subprocess.Popen], target: int, sig) -> Path:
    """Wait for a few logged steps, then send `sig` to worker `target` only."""
    deadline = time.time() + 180
    metrics = None
    while time.time() < deadline and all(w.poll() is None for w in workers):
        metrics, lines = _metrics_lines(workdir)
        if lines >= 3:
            break
        time.sleep(0.05)
    assert metrics is not None, "training never started"
    workers[target].send_signal(sig)
    return metrics.parent


def _finish(workers: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """Each worker's (exit code, stderr); a hang fails the test and leaves no process behind."""
    try:
        return [(w.wait(timeout=300), w.communicate()[1]) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()


def _steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if "loss" in json.loads(line)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "adapter.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    """The final weights of the same run trained without a stop, per process count."""
    found = {}

    def weights(processes: int) -> dict[str, torch.Tensor]:
        if processes not in found:
            workdir = tmp_path_factory.mktemp(f"whole{processes}")
            command = [sys.executable, "-m", "advfusion_cli", *_args(world, workdir)]
            results = _finish(_launch(command, processes))
            assert [code for code, _ in results] == [0] * processes, results[0][1][-2000:]
            (run,) = (workdir / "runs").iterdir()
            found[processes] = _weights(run)
        return found[processes]

    return weights


@pytest.mark.parametrize(
    ("processes", "sig", "target"),
    [(1, signal.SIGTERM, 0), (1, signal.SIGUSR1, 0), (2, signal.SIGTERM, 1)],
    ids=["sigterm", "sigusr1", "sigterm-to-rank1-of-2"],
)
def test_a_stop_signal_checkpoints_exits_75_and_the_rerun_resumes_exactly(
    world, tmp_path, uninterrupted, processes, sig, target
):
    command = [sys.executable, "-m", "advfusion_cli", *_args(world, tmp_path)]
    workers = _launch(command, processes)
    run = _stop_midway(tmp_path, workers, target, sig)
    results = _finish(workers)
    # every process (not only the one signalled) checkpoints and asks for a requeue
    assert [code for code, _ in results] == [EXIT_REQUEUE] * processes, results[target][1][-3000:]
    stderr = results[0][1].replace("\n", "")  # rich wraps long lines
    assert f"Exiting with code {EXIT_REQUEUE} (requeue)" in stderr
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["requeue"] is True
    if target == 0:
        assert status["signal"] == signal.Signals(sig).name
        assert f"stopped by {signal.Signals(sig).name}" in stderr
    saved = list((run / "checkpoints" / "adapter").glob("step-*"))
    assert [int(p.name.split("-")[1]) for p in saved] == [status["step"]]
    assert 0 < status["step"] < STEPS
    for rank in range(processes):  # each process wrote its own RNG state into it
        assert (saved[0] / f"rng-rank{rank}.pt").is_file()

    again = _finish(_launch(command, processes))
    assert [code for code, _ in again] == [0] * processes, again[0][1][-3000:]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert _steps(run) == list(range(1, STEPS + 1))
    resumed, whole = _weights(run), uninterrupted(processes)
    assert resumed.keys() == whole.keys()
    for name in whole:
        assert torch.equal(resumed[name], whole[name]), name


def test_the_stop_file_stops_every_process_for_a_requeue(world, tmp_path):
    stop = tmp_path / "stop-now"
    command = [sys.executable, "-m", "advfusion_cli", *_args(world, tmp_path / "w")]
    port = str(_free_port())
    workers = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(
                ADVFUSION_STOP_FILE=str(stop),
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
        )
        for rank in range(2)
    ]
    deadline = time.time() + 180
    while time.time() < deadline and _metrics_lines(tmp_path / "w")[1] < 3:
        time.sleep(0.05)
    stop.touch()
    results = _finish(workers)
    assert [code for code, _ in results] == [EXIT_REQUEUE] * 2, results[0][1][-3000:]
    assert f"stopped by stop file {stop}" in results[0][1].replace("\n", "")


def test_a_failure_on_rank_one_during_a_checkpoint_write_ends_both_with_its_error(world, tmp_path):
    """Rank 1 raises while it writes its RNG state into the step-2 checkpoint; rank 0 waits
    for it in a collective. Both end (no wait for the collective timeout), the error is
    printed by rank 1 only, and the run's status records it."""
    args = common(world, tmp_path, 8, "train-adapters", "--langs", "ruby")
    args += ["--set", "training.timeout_minutes=30"]  # a hang would outlast the test
    command = [sys.executable, str(ROOT / "tests" / "failing_worker.py"), *args]
    results = _finish(_launch(command, 2))  # a hang would fail here, in _finish's wait
    (rank0_code, rank0_err), (rank1_code, rank1_err) = results
    assert rank1_code != 0 and rank0_code != 0
    assert "disk full (injected)" in rank1_err
    assert "disk full (injected)" not in rank0_err  # printed once, by its process
    assert "Stopped: process 1 of this launch failed" in rank0_err.replace("\n", "")
    (run,) = (tmp_path / "runs").iterdir()
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["error"].startswith("process 1 failed: OSError: ")
    assert "disk full (injected)" in status["error"]
