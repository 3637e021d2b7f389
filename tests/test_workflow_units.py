"""Unit tests of the workflow building blocks: schedules, data order, atomic files, locks,
run ids, checkpoints, and bit-exact resumption of the training loop."""

from __future__ import annotations

import fcntl
import json
import os

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from advfusion_cli.errors import UserError
from advfusion_cli.spec.loading import resolve_spec
from advfusion_cli.workflows import atomic, stages
from advfusion_cli.workflows import batching as B
from advfusion_cli.workflows import checkpoint as ckpt
from advfusion_cli.workflows import trainer as T
from advfusion_cli.workflows.optim import lr_factor
from advfusion_cli.workflows.runs import RunDir, RunLock, Workdir, model_slug

# ---- schedules and data order --------------------------------------------------------------


def test_linear_schedule_warms_up_then_decays_to_zero():
    factors = [lr_factor("linear", s, total=10, warmup=2) for s in range(11)]
    assert factors[:3] == [0.0, 0.5, 1.0]
    assert factors[-1] == 0.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:], strict=False))
    assert factors[6] == pytest.approx(0.5)  # halfway through the decay


def test_cosine_and_constant_schedules():
    assert lr_factor("cosine", 2, total=10, warmup=2) == pytest.approx(1.0)
    assert lr_factor("cosine", 6, total=10, warmup=2) == pytest.approx(0.5)
    assert lr_factor("cosine", 10, total=10, warmup=2) == pytest.approx(0.0)
    assert lr_factor("constant", 1, total=10, warmup=2) == 0.5
    assert lr_factor("constant", 9, total=10, warmup=2) == 1.0
    with pytest.raises(ValueError):
        lr_factor("step", 1, total=10, warmup=0)


def test_epoch_order_depends_only_on_seed_and_epoch():
    torch.manual_seed(123)
    first = B.epoch_permutation(50, seed=7, epoch=0)
    torch.manual_seed(999)  # global RNG state must not matter
    assert B.epoch_permutation(50, seed=7, epoch=0) == first
    assert B.epoch_permutation(50, seed=7, epoch=1) != first
    assert B.epoch_permutation(50, seed=8, epoch=0) != first
    assert sorted(first) == list(range(50))


def test_micro_batches_cover_the_epoch_across_processes():
    order = B.epoch_permutation(10, seed=0, epoch=0)
    world, batch = 2, 2
    micro = B.micro_batches_per_epoch(10, batch, world)
    assert micro == 3
    seen = [
        i
        for index in range(micro)
        for rank in range(world)
        for i in B.micro_batch_indices(order, index, batch, world, rank)
    ]
    assert set(seen) == set(range(10))  # every example, the tail wraps to full batches
    assert len(seen) == micro * world * batch


def test_steps_for_epochs_rounds_up():
    assert B.steps_for_epochs(1.0, 10, batch_size=2, grad_accumulation=2, world=1) == 3
    assert B.steps_for_epochs(2.0, 10, batch_size=2, grad_accumulation=2, world=1) == 5
    assert B.steps_for_epochs(0.01, 10, batch_size=2, grad_accumulation=1, world=1) == 1


# ---- files, locks, ids ---------------------------------------------------------------------


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "x.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_publish_dir_replaces_a_folder_in_one_step(tmp_path):
    target = tmp_path / "final"
    atomic.publish_dir(lambda d: (d / "one.txt").write_text("1"), target)
    atomic.publish_dir(lambda d: (d / "two.txt").write_text("2"), target)
    assert sorted(p.name for p in target.iterdir()) == ["two.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]

    def broken(d):
        (d / "half.txt").write_text("x")
        raise RuntimeError("crash while building")

    with pytest.raises(RuntimeError):
        atomic.publish_dir(broken, target)
    assert sorted(p.name for p in target.iterdir()) == ["two.txt"]  # old copy intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_lock_names_the_run_and_the_holder_pid(tmp_path):
    run = RunDir(tmp_path / "runs" / "advfusion-ruby-12345678")
    with RunLock(run), pytest.raises(UserError) as err:
        RunLock(run).acquire()
    message = str(err.value)
    assert "advfusion-ruby-12345678" in message and f"pid {os.getpid()}" in message
    assert "\n" not in message
    with RunLock(run):  # released: can be taken again
        pass


def test_lock_held_by_another_open_file_blocks(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    with open(run.lock_file, "w") as handle:
        handle.write("4242\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="pid 4242"):
            RunLock(run).acquire()


def test_unwritable_workdir_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="not writable"):
        Workdir(blocker / "sub").ensure_writable()


def test_model_slug_is_readable_and_separates_local_folders(tmp_path):
    assert model_slug("Qwen/Qwen2.5-Coder-1.5B") == "Qwen--Qwen2.5-Coder-1.5B"
    assert model_slug("advfusion/tiny-code") == "advfusion--tiny-code"
    (tmp_path / "a" / "m").mkdir(parents=True)
    (tmp_path / "b" / "m").mkdir(parents=True)
    first, second = model_slug(str(tmp_path / "a" / "m")), model_slug(str(tmp_path / "b" / "m"))
    assert first.startswith("m-") and second.startswith("m-") and first != second


def test_run_id_ignores_output_keys_but_not_settings(tmp_path):
    base = resolve_spec(flags={"method.name": "task-adapter"})
    elsewhere = resolve_spec(flags={"method.name": "task-adapter", "output.workdir": str(tmp_path)})
    other_lr = resolve_spec(flags={"method.name": "task-adapter"}, sets=["training.lr=0.1"])
    other_fusion_lr = resolve_spec(
        flags={"method.name": "task-adapter"}, sets=["training.fusion_lr=0.5"]
    )
    ids = {
        name: stages.run_id_for(stages.adapter_stage_spec(spec, "java"), "java")
        for name, spec in [
            ("base", base),
            ("elsewhere", elsewhere),
            ("lr", other_lr),
            ("flr", other_fusion_lr),
        ]
    }
    assert ids["base"].startswith("task-adapter-java-") and len(ids["base"].split("-")[-1]) == 8
    assert ids["elsewhere"] == ids["base"]
    assert ids["flr"] == ids["base"]  # the fusion's LR cannot change an adapter
    assert ids["lr"] != ids["base"]


def test_adapter_stage_from_a_fusion_spec_matches_train_adapters(tmp_path):
    fusion = resolve_spec(flags={"method.name": "advfusion"})
    direct = resolve_spec(flags={"method.name": "task-adapter"})
    from_fusion = stages.adapter_stage_spec(fusion, "go")
    from_direct = stages.adapter_stage_spec(direct, "go")
    assert from_fusion.method == from_direct.method
    assert stages.run_id_for(from_fusion, "go") == stages.run_id_for(from_direct, "go")


# ---- checkpoints and the loop --------------------------------------------------------------


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    ckpt.write_rng(tmp_path, 0)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.rand(5), random.random(), np.random.rand()  # move every RNG on
    ckpt.set_rng_state(ckpt.read_rng(tmp_path, 0))
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


class _Tiny(torch.nn.Module):
    """A model whose forward has dropout, so the RNG matters for exact resumption."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(16, 8)
        self.frozen = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 16)
        self.drop = torch.nn.Dropout(0.2)
        self.frozen.requires_grad_(False)
        self.embed.requires_grad_(False)

    def forward(self, input_ids, attention_mask, labels):
        logits = self.head(self.drop(torch.tanh(self.frozen(self.embed(input_ids)))))
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, 16), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        return type("Out", (), {"loss": loss})()


def _collate(items):
    ids = torch.stack([torch.tensor(x) for x in items])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def _loss(model, batch, train):
    out = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
    return out.loss, torch.tensor(batch["input_ids"][:, 1:].numel())


def _train(run_path, stop_at=None, phases=1):
    torch.manual_seed(0)
    model = _Tiny()
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    data = [[(i * 7 + j) % 16 for j in range(6)] for i in range(14)]
    settings = T.LoopSettings(
        learning_rate=0.05,
        total_steps=9,
        batch_size=2,
        grad_accumulation=2,
        warmup_ratio=0.2,
        eval_every=2,
        save_every=4,
        seed=5,
        keep_checkpoints=1,
    )
    run = RunDir(run_path)
    run.path.mkdir(parents=True, exist_ok=True)
    trainer = T.Trainer(Accelerator(cpu=True), model, named, _loss, _collate, run)
    hook = None
    if stop_at is not None:

        def hook(phase, step):
            if (phase, step) == stop_at:
                trainer.stop.requested = True

        T.AFTER_STEP_HOOKS.append(hook)
    try:
        first = trainer.run_phase(T.Phase("one", data, data[:4], settings))
        results = [first]
        if phases == 2:
            results.append(
                trainer.run_phase(
                    T.Phase("two", data[::-1], data[:4], settings),
                    carry_optimizer=first.optimizer_state,
                )
            )
    finally:
        if hook is not None:
            T.AFTER_STEP_HOOKS.remove(hook)
    return {n: p.detach().clone() for n, p in named.items()}, results, run


@pytest.mark.parametrize("stop_at", [("one", 3), ("one", 4), ("two", 5)])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stop_at):
    reference, ref_results, _ = _train(tmp_path / "ref", phases=2)
    with pytest.raises(T.TrainingInterrupted) as stopped:
        _train(tmp_path / "cut", stop_at=stop_at, phases=2)
    assert (stopped.value.phase, stopped.value.step) == stop_at
    resumed, results, run = _train(tmp_path / "cut", phases=2)
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), name
    assert [r.best_eval_loss for r in results] == [r.best_eval_loss for r in ref_results]
    # metrics after resumption have no duplicate steps
    steps = [(r["phase"], r["step"]) for r in run.read_metrics() if "loss" in r]
    assert steps == [("one", s) for s in range(1, 10)] + [("two", s) for s in range(1, 10)]


def test_phase_two_keeps_adam_state_and_restarts_the_schedule(tmp_path):
    _, results, run = _train(tmp_path / "r", phases=2)
    state = ckpt.read_state(run.checkpoints / "two" / "end")
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {18.0}  # 9 steps of phase one carried into phase two
    lrs = {
        phase: [r["lr"] for r in run.read_metrics() if r.get("phase") == phase and "lr" in r]
        for phase in ("one", "two")
    }
    assert lrs["one"] == lrs["two"]  # the schedule starts over
    assert lrs["one"][0] == 0.0 and max(lrs["one"]) == pytest.approx(0.05)


def test_best_weights_are_reloaded_at_phase_end(tmp_path):
    weights, results, run = _train(tmp_path / "r")
    best = load_file(str(run.best / "one" / ckpt.WEIGHTS_FILE))
    for name, tensor in weights.items():
        assert torch.equal(best[name], tensor)
    evals = [r for r in run.read_metrics() if "eval_loss" in r]
    assert min(r["eval_loss"] for r in evals) == pytest.approx(results[0].best_eval_loss, abs=1e-6)
    assert ckpt.list_checkpoints(run.checkpoints / "one") == []  # superseded by "end"


class _Drifting(torch.nn.Module):
    """One weight vector that training pushes towards 10 while the eval loss is lowest at 0.2:
    the eval loss falls, reaches its minimum, then rises until the last step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def _drift_loss(model, batch, train):
    aim = 10.0 if train else 0.2
    return ((model.w - aim) ** 2).mean(), torch.tensor(1)


def test_keep_best_restores_the_minimum_not_the_last_step(tmp_path):
    torch.manual_seed(0)
    model = _Drifting()
    named = dict(model.named_parameters())
    # Adam at a constant 0.05 moves w by ~0.05 a step: eval loss (w - 0.2)^2 bottoms out near
    # step 4 and is ~4x worse again by step 12.
    settings = T.LoopSettings(
        learning_rate=0.05, total_steps=12, schedule="constant", eval_every=1, optimizer="adamw"
    )
    run = RunDir(tmp_path / "r")
    run.path.mkdir(parents=True)
    collate = lambda items: {"attention_mask": torch.ones(len(items), 1)}  # noqa: E731
    trainer = T.Trainer(Accelerator(cpu=True), model, named, _drift_loss, collate, run)
    after_step: dict[int, torch.Tensor] = {}

    def snapshot(phase, step):
        after_step[step] = model.w.detach().clone()

    T.AFTER_STEP_HOOKS.append(snapshot)
    try:
        (result,) = [trainer.run_phase(T.Phase("one", [0, 1], [0], settings))]
    finally:
        T.AFTER_STEP_HOOKS.remove(snapshot)

    evals = {r["step"]: r["eval_loss"] for r in run.read_metrics() if "eval_loss" in r}
    assert 1 < result.best_step < 12
    assert evals[12] > 2 * evals[result.best_step]  # it really rose after its minimum
    assert torch.equal(model.w.detach(), after_step[result.best_step])
    assert not torch.equal(model.w.detach(), after_step[12])
