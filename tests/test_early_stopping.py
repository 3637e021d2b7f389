"""Early stopping: a phase ends after `patience` evaluations without an eval-loss improvement
larger than `min_delta`, keeps its best weights, and says why in summary.json and on stderr."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_workflow_cli import common, run_dirs, training_hooks
from test_workflow_cli import world as world  # the module fixture, reused
from test_workflow_units import _collate, _loss, _Tiny

from advfusion_cli.workflows import checkpoint as ckpt
from advfusion_cli.workflows import trainer as T
from advfusion_cli.workflows.runs import RunDir

EVAL_STEPS = (2, 4, 6, 8, 9)  # every 2 steps, and the last of 9


def _train_on_scripted_eval(
    tmp_path, eval_losses: list[float], patience: int, min_delta: float, stop_at: int | None = None
):
    """9 steps, an evaluation every 2; the evaluation at EVAL_STEPS[k] reports eval_losses[k]
    (the fixture whose eval loss rises). `stop_at`: Ctrl-C after that step (a rerun resumes).
    Returns (result, weights after each step, final weights, run)."""
    torch.manual_seed(0)
    model = _Tiny()
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    data = [[(i * 7 + j) % 16 for j in range(6)] for i in range(14)]
    run = RunDir(tmp_path / "run")
    run.path.mkdir(parents=True, exist_ok=True)
    scripted = dict(zip(EVAL_STEPS, eval_losses, strict=False))

    def loss(model, batch, train):
        value, count = _loss(model, batch, train)
        if train:
            return value, count
        step = [r["step"] for r in run.read_metrics() if "loss" in r][-1]  # logged before eval
        return torch.tensor(scripted[step]), count

    settings = T.LoopSettings(
        learning_rate=0.05,
        total_steps=9,
        batch_size=2,
        eval_every=2,
        eval_batch_size=4,  # the 4 eval examples in one batch: one scripted value per eval
        save_every=4,
        early_stopping_patience=patience,
        early_stopping_min_delta=min_delta,
    )
    trainer = T.Trainer(Accelerator_cpu(), model, named, loss, _collate, run)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def snapshot(phase, step):
        snapshots[step] = {n: p.detach().clone() for n, p in named.items()}
        if step == stop_at:
            trainer.stop.requested = True

    with training_hooks(step=[snapshot]):
        result = trainer.run_phase(T.Phase("one", data, data[:4], settings))
    final = {n: p.detach().clone() for n, p in named.items()}
    return result, snapshots, final, run


def Accelerator_cpu():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


@pytest.mark.parametrize(
    ("losses", "patience", "min_delta", "stop_step", "best_step"),
    [
        # best at the 2nd eval (step 4), rises twice: patience 2 runs out at step 8
        ([1.0, 0.8, 0.85, 0.9, 0.1], 2, 0.0, 8, 4),
        # drops smaller than min_delta do not count, but the best weights still follow them
        ([1.0, 0.95, 0.93, 0.1], 2, 0.1, 6, 6),
        # patience 1: the first evaluation without improvement ends the phase
        ([1.0, 1.2, 0.1], 1, 0.0, 4, 2),
    ],
)
def test_stops_at_the_evaluation_where_patience_runs_out_with_the_best_weights(
    tmp_path, losses, patience, min_delta, stop_step, best_step
):
    result, snapshots, final, run = _train_on_scripted_eval(tmp_path, losses, patience, min_delta)
    assert result.steps == stop_step and max(snapshots) == stop_step  # no step after the stop
    assert result.best_step == best_step
    assert result.stop_reason.startswith(f"early stopping at step {stop_step}/9")
    evals = [r["step"] for r in run.read_metrics() if "eval_loss" in r]
    assert evals == list(range(2, stop_step + 1, 2))
    for name, tensor in final.items():  # the best evaluation's weights, not the last step's
        assert torch.equal(tensor, snapshots[best_step][name]), name
    if best_step != stop_step:  # and the weights did move after the best evaluation
        assert any(not torch.equal(final[n], snapshots[stop_step][n]) for n in final)
    end = ckpt.read_state(run.checkpoints / "one" / "end")["position"]
    assert end["step"] == stop_step and end["stop_reason"] == result.stop_reason


def test_without_patience_the_phase_runs_its_whole_budget(tmp_path):
    result, snapshots, _, _ = _train_on_scripted_eval(tmp_path, [1.0, 2.0, 3.0, 4.0, 5.0], None, 0)
    assert result.steps == 9 and max(snapshots) == 9 and result.stop_reason is None


def test_adv_fuse_stops_each_phase_early_and_records_why(cli, world, tmp_path):
    # min_delta 100: no evaluation after the first counts, so patience 1 stops at the 2nd
    args = common(world, tmp_path, 12, "adv-fuse", "--langs", "java,ruby")
    args += ["--set", "training.early_stopping_patience=1"]
    args += ["--set", "training.early_stopping_min_delta=100"]
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    runs = run_dirs(tmp_path)
    fusion = runs["advfusion-ruby"]
    summary = json.loads((fusion / "summary.json").read_text())
    for phase in summary["phases"]:  # 6 steps per phase, evaluations at 2 and 4
        assert phase["steps"] == 4 and phase["stopped_early"], phase
        assert phase["stop_reason"].startswith("early stopping at step 4/6"), phase
        assert phase["stop_reason"] in result.stderr  # printed when it happens
        steps = [
            r["step"]
            for r in map(json.loads, (fusion / "metrics.jsonl").open())
            if "loss" in r and r["phase"] == phase["name"]
        ]
        assert steps == [1, 2, 3, 4]
        best = load_file(str(fusion / "best" / phase["name"] / ckpt.WEIGHTS_FILE))
        end = load_file(str(fusion / "checkpoints" / phase["name"] / "end" / ckpt.WEIGHTS_FILE))
        assert best.keys() == end.keys()
        assert all(torch.equal(best[k], end[k]) for k in best)  # keep-best still applies
    adapter = json.loads((runs["task-adapter-ruby"] / "summary.json").read_text())
    assert adapter["phases"][0]["steps"] == 4  # train-adapters stops the same way

    # early stopping changes what a run trains: another run id than the same spec without it
    plain = cli(*common(world, tmp_path, 12, "adv-fuse", "--langs", "java,ruby"), "--dry-run")
    assert plain.exit_code == 0 and fusion.name not in plain.stdout


def test_a_resumed_run_stops_at_the_same_evaluation(tmp_path):
    """The patience counter is part of the checkpoint: interrupted after the first evaluation
    without improvement, the rerun stops at the second one, as an uninterrupted run does."""
    losses = [1.0, 0.8, 0.85, 0.9, 0.95]
    with pytest.raises(T.TrainingInterrupted):
        _train_on_scripted_eval(tmp_path, losses, 2, 0.0, stop_at=6)
    result, snapshots, _, run = _train_on_scripted_eval(tmp_path, losses, 2, 0.0)
    assert min(snapshots) == 7  # resumed after step 6
    assert result.steps == 8 and result.best_step == 4 and result.resumed_from == 6
    assert result.stop_reason.startswith("early stopping at step 8/9")
