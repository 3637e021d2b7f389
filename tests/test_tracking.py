"""Watching runs: experiment trackers (TensorBoard offline, read back with TensorBoard's own event
reader) and early stopping, through the real CLI on the tiny Llama of test_workflow_cli."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest
from conftest import one_line_error
from test_workflow_cli import common, ctrl_c_after, run_dirs
from test_workflow_cli import world as world  # the module fixture, reused

from advfusion_cli.workflows import tracking, trainer

STEP_KEYS = {
    "loss": "train/loss",
    "lr": "train/learning_rate",
    "tokens_per_s": "train/tokens_per_s",
    "peak_memory_mb": "train/peak_memory_mb",
    "epoch": "train/epoch",
    "regularizer": "train/fusion_regularizer",
}


def scalars(event_dir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them (its reader, restart purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(event_dir), size_guidance={"scalars": 0})
    reader.Reload()
    return {
        tag: [(event.step, event.value) for event in reader.Scalars(tag)]
        for tag in reader.Tags()["scalars"]
    }


def tags(event_dir) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(event_dir))
    reader.Reload()
    return reader.Tags()


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_events_match_metrics(run, workdir, phase_steps: list[tuple[str, int]]) -> None:
    """Every metrics.jsonl step and eval record is in TensorBoard once, at the run's global
    step (phase offset + step), with the same value; nothing else is."""
    found = scalars(workdir / "tensorboard" / run.name)
    offsets, total = {}, 0
    for phase, steps in phase_steps:
        offsets[phase], total = total, total + steps
    records = metrics(run)
    steps = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    assert steps and evals
    for key, tag in STEP_KEYS.items():
        expected = [(offsets[r["phase"]] + r["step"], r[key]) for r in steps if key in r]
        got = found.get(tag, [])
        assert [s for s, _ in got] == [s for s, _ in expected], tag
        for (_, value), (_, want) in zip(got, expected, strict=True):
            assert value == pytest.approx(want, rel=1e-6, abs=1e-12), tag
    numbers = {phase: i for i, (phase, _) in enumerate(phase_steps, start=1)}
    assert found["train/phase"] == [
        (offsets[r["phase"]] + r["step"], numbers[r["phase"]]) for r in steps
    ]
    expected_evals = [(offsets[r["phase"]] + r["step"], r["eval_loss"]) for r in evals]
    assert [s for s, _ in found["eval/loss"]] == [s for s, _ in expected_evals]
    for (_, value), (_, want) in zip(found["eval/loss"], expected_evals, strict=True):
        assert value == pytest.approx(want, rel=1e-6)


def test_train_adapters_reports_every_step_and_evaluation_to_tensorboard(cli, world, tmp_path):
    result = cli(
        *common(world, tmp_path, 6, "train-adapters", "--langs", "ruby"),
        "--report-to",
        "tensorboard",
    )
    assert result.exit_code == 0, result.stderr
    run = run_dirs(tmp_path)["task-adapter-ruby"]
    assert_events_match_metrics(run, tmp_path, [("adapter", 6)])
    state = json.loads((run / tracking.STATE_FILE).read_text())
    assert state["trackers"] == ["tensorboard"]
    # the resolved job spec is the run's config (TensorBoard: hparams.yml beside the events)
    (config_file,) = (tmp_path / "tensorboard" / run.name).glob("*/hparams.yml")
    config = config_file.read_text()
    assert f"run.id: {run.name}" in config and "training.max_steps: 6" in config


def test_adv_fuse_reports_both_phases_and_resumes_without_duplicated_steps(cli, world, tmp_path):
    args = [
        *common(world, tmp_path, 6, "adv-fuse", "--langs", "java,ruby"),
        "--report-to",
        "tensorboard",
    ]
    args += ["--set", "training.save_every_steps=1"]

    ctrl_c_after(cli, args, ("phase2-restored", 2))
    fusion = run_dirs(tmp_path)["advfusion-ruby"]
    # pretend the crashed session got further than its checkpoint (as a SIGKILL leaves it)
    shutil.rmtree(fusion / "checkpoints" / "phase2-restored" / "step-000002")
    resumed = cli(*args)
    assert resumed.exit_code == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    # both phases, one after the other; the second session's event file purged the first's
    # step 2 of phase 2 (logged after the checkpoint it resumed from) and logged it again
    assert_events_match_metrics(fusion, tmp_path, [("phase1-masked", 3), ("phase2-restored", 3)])
    events = tmp_path / "tensorboard" / fusion.name
    assert len(list(events.glob("events.out.tfevents.*"))) == 2
    regularizer = scalars(events)["train/fusion_regularizer"]
    assert [step for step, _ in regularizer] == list(range(1, 7))
    # W_V starts at the identity (regularizer ~0) and moves away from it as the fusion trains
    assert regularizer[0][1] < 1e-6 < regularizer[-1][1]
    # evaluate --report-to: the scores and the fusion heatmap join the run's curves, at its
    # last step
    evaluated = cli(
        "evaluate", "--run", "advfusion/ruby", "--workdir", str(tmp_path), "--limit", "3",
        "--max-new-tokens", "8", "--report-to", "tensorboard",
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.stderr
    record = json.loads((fusion / "evals" / "test-3-greedy-8" / "metrics.json").read_text())
    found = scalars(events)
    for metric, value in record["scores"].items():
        assert found[f"test-3-greedy-8/{metric}"] == [(6, pytest.approx(value, rel=1e-6))]
    assert "test-3-greedy-8/fusion_attention" in tags(events)["images"]
    # the adapters adv-fuse trained first are tracker runs of their own, named by run id
    for prefix in ("task-adapter-java", "task-adapter-ruby"):
        adapter = run_dirs(tmp_path)[prefix]
        assert_events_match_metrics(adapter, tmp_path, [("adapter", 6)])
        assert "train/fusion_regularizer" not in scalars(tmp_path / "tensorboard" / adapter.name)


def test_a_missing_tracker_package_is_a_one_line_error_before_any_work(cli, world, tmp_path):
    for name, package in (("wandb", "wandb"), ("mlflow", "mlflow")):
        result = cli(
            *common(world, tmp_path, 2, "train-adapters", "--langs", "ruby"), "--report-to", name
        )
        line = one_line_error(result, "training.report_to", f"pip install {package}")
        assert name in line
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    for command in (["evaluate", "--run", "base"], ["compare", "--methods", "base"]):
        result = cli(*command, "--workdir", str(tmp_path), "--report-to", "wandb")
        one_line_error(result, "--report-to", "pip install wandb")
    assert not (tmp_path / "evals").exists() and not (tmp_path / "compare").exists()


def test_unknown_tracker_names_the_choices(cli, world, tmp_path):
    result = cli(*common(world, tmp_path, 2, "train-adapters"), "--report-to", "tensorbord")
    one_line_error(result, "training.report_to", "tensorboard, wandb, mlflow")


def test_sigkilled_run_resumes_its_tensorboard_run_without_duplicated_or_missing_steps(
    world, tmp_path
):
    """A real SIGKILL (as in test_reliability_kill) lands while a checkpoint is written, after
    steps the crashed session already sent to TensorBoard; the rerun resumes from the last
    published checkpoint and TensorBoard shows every step once."""
    import sys

    from test_reliability_kill import (
        checkpoint_names,
        published_steps,
        run_to_end,
        start_and_kill,
        writing_at_least,
    )

    def command(world, workdir):
        args = common(world, workdir, 10, "train-adapters", "--langs", "ruby")
        args += ["--report-to", "tensorboard", "--set", "training.eval_every_steps=3"]
        return [sys.executable, "-m", "advfusion_cli", *args]

    killed, code = start_and_kill(
        world, tmp_path, lambda names: writing_at_least(names, 6), make=command
    )
    assert killed and code == -signal.SIGKILL
    run = run_dirs(tmp_path)["task-adapter-ruby"]
    sent = max(step for step, _ in scalars(tmp_path / "tensorboard" / run.name)["train/loss"])
    resumed_from = max(published_steps(checkpoint_names(tmp_path)))
    assert sent >= 6 and resumed_from <= sent
    done = run_to_end(world, tmp_path, command)
    assert "resumed" in done.stdout
    assert_events_match_metrics(run, tmp_path, [("adapter", 10)])
    assert len(list((tmp_path / "tensorboard" / run.name).glob("events.out.tfevents.*"))) == 2


def test_compare_reports_trainings_evaluations_and_its_table(cli, world, tmp_path):
    result = cli(
        "compare", *common(world, tmp_path, 4), "--target", "ruby", "--langs", "java,ruby",
        "--methods", "base,task-adapter", "--limit", "3", "--max-new-tokens", "8",
        "--report-to", "tensorboard",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (folder,) = (tmp_path / "compare").iterdir()
    rows = json.loads((folder / "results.json").read_text())["rows"]
    board = tmp_path / "tensorboard"
    found = scalars(board / f"compare-{folder.name}")
    for row in rows:
        for metric, cell in row["metrics"].items():
            assert found[f"{row['method']}/{metric}"] == [(0, pytest.approx(cell["mean"]))]
    assert "plots/metrics" in tags(board / f"compare-{folder.name}")["images"]
    # the adapter's training curves and its evaluation's scores share its tracker run
    (adapter,) = [r for r in rows if r["method"] == "task-adapter"]
    run = tmp_path / "runs" / adapter["runs"][0]["run_id"]
    assert_events_match_metrics(run, tmp_path, [("adapter", 4)])
    assert any(tag.startswith("test-3-greedy-8/") for tag in scalars(board / run.name))


@pytest.mark.slow
def test_only_the_main_process_reports_under_accelerate_launch(world, tmp_path):
    """Two CPU processes (torchrun via `accelerate launch --multi_gpu`, as in
    test_workflow_processes): one event file, written by rank 0, matching metrics.jsonl."""
    import subprocess
    import sys
    from pathlib import Path

    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    args = common(world, tmp_path, 4, "train-adapters", "--langs", "ruby")
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "advfusion_cli", *args, "--report-to", "tensorboard",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = run_dirs(tmp_path)["task-adapter-ruby"]
    assert json.loads((run / "env.json").read_text())["num_processes"] == 2
    events = list((tmp_path / "tensorboard" / run.name).glob("events.out.tfevents.*"))
    assert len(events) == 1
    assert_events_match_metrics(run, tmp_path, [("adapter", 4)])


@pytest.mark.filterwarnings("ignore:`log_with=")  # accelerate: mlflow itself is not installed
def test_trackers_that_cannot_rewind_continue_their_run_and_skip_steps_already_sent(
    cli, world, tmp_path, monkeypatch
):
    """wandb and MLflow (not installed here) get the same calls as this stand-in: one tracker
    run continued across sessions (its id kept in tracking.json), the config once, and after a
    resume no step sent twice, none missing."""
    from types import SimpleNamespace

    from accelerate.tracking import GeneralTracker

    calls: list[tuple] = []

    class StandIn(GeneralTracker):
        name = "mlflow"
        requires_logging_directory = False

        def __init__(self, run_name: str, run_id: str | None):
            super().__init__()
            run_id = run_id or f"mlflow-{len(calls)}"
            self.active_run = SimpleNamespace(info=SimpleNamespace(run_id=run_id))
            calls.append(("run", run_name, run_id))

        @property
        def tracker(self):
            return self.active_run

        def store_init_configuration(self, values):
            calls.append(("config", values["run.id"]))

        def log(self, values, step=None, **kwargs):
            calls.append(("log", step, tuple(sorted(values))))

    def stand_ins(names, run_name, workdir, state):
        return [StandIn(run_name, state.get("mlflow_run_id"))]

    monkeypatch.setattr(tracking, "check_installed", lambda names: None)
    monkeypatch.setattr(tracking, "make_trackers", stand_ins)
    args = [*common(world, tmp_path, 6, "train-adapters", "--langs", "ruby")]
    args += ["--report-to", "mlflow", "--set", "training.eval_every_steps=3"]

    def interrupt(phase, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer, "AFTER_STEP_HOOKS", [interrupt])
    assert cli(*args).exit_code == 130
    run = run_dirs(tmp_path)["task-adapter-ruby"]
    # as after a SIGKILL: step 5 was sent, the checkpoint to resume from is step 4's
    shutil.rmtree(run / "checkpoints" / "adapter" / "step-000005")
    monkeypatch.setattr(trainer, "AFTER_STEP_HOOKS", [])
    done = cli(*args)
    assert done.exit_code == 0, done.stderr
    runs = [c for c in calls if c[0] == "run"]
    assert [r[1] for r in runs] == [run.name] * 2 and runs[0][2] == runs[1][2]  # one run
    assert [c for c in calls if c[0] == "config"] == [("config", run.name)]  # once
    steps = [c[1] for c in calls if c[0] == "log" and "train/loss" in c[2]]
    evals = [c[1] for c in calls if c[0] == "log" and c[2] == ("eval/loss",)]
    assert steps == [1, 2, 3, 4, 5, 6] and evals == [3, 6]
    state = json.loads((run / tracking.STATE_FILE).read_text())
    assert state["mlflow_run_id"] == runs[0][2] and state["last_step"] == 6


def test_a_new_event_file_starts_in_a_later_second_than_the_run_s_newest(tmp_path):
    """TensorBoard orders a run's event files by name (second first, then a per-process
    counter compared as text): a resumed session's file must not share the second of the
    interrupted one's, or it may be read first."""
    import time

    from advfusion_cli.workflows.tracking import start_after_earlier_event_files

    start_after_earlier_event_files(tmp_path / "missing")  # no folder yet: returns at once
    now = int(time.time())
    (tmp_path / f"events.out.tfevents.{now:010d}.host.1.9").write_bytes(b"")
    start_after_earlier_event_files(tmp_path)
    assert int(time.time()) > now
