"""Real-run hygiene: each run releases its base model before the next one loads.

Live causal-LM instances are counted with the garbage collector every time a new one is
built (`PreTrainedModel.__init__` wrapped): a command that trains several runs in one
process must never hold more than the model of the run in progress.
"""

from __future__ import annotations

import gc
import weakref

import pytest
from test_workflow_cli import common
from test_workflow_cli import world as world  # the module fixture, reused


@pytest.fixture
def live_models(monkeypatch):
    """Wraps model construction; returns the list of live-model counts seen at each creation."""
    from transformers import PreTrainedModel

    created: weakref.WeakSet = weakref.WeakSet()
    counts: list[int] = []
    original = PreTrainedModel.__init__

    def counting_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if type(self).__name__.endswith("ForCausalLM"):  # not the inner LlamaModel
            gc.collect()
            created.add(self)
            counts.append(len(created))

    monkeypatch.setattr(PreTrainedModel, "__init__", counting_init)
    return counts


def test_fuse_with_missing_adapters_holds_one_base_at_a_time(cli, world, tmp_path, live_models):
    args = common(world, tmp_path, 2, "fuse", "--target", "ruby", "--langs", "java,python,ruby")
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert len(live_models) == 4  # three adapters, then the fusion
    assert max(live_models) == 1, live_models


@pytest.mark.slow  # ~25 s: trains and evaluates two methods
def test_multi_method_compare_holds_one_base_at_a_time(cli, tmp_path, live_models):
    from test_evaluate_support import make_model, training_args, write_translation

    model, data = make_model(tmp_path / "model"), write_translation(tmp_path / "trans")
    methods = "lora,adapterfusion"
    args = training_args(model, data, "code-translation", tmp_path / "work")
    result = cli(
        "compare",
        *args,
        "--langs",
        "java,ruby",
        "--methods",
        methods,
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--resamples",
        "10",
    )
    assert result.exit_code == 0, result.stderr
    assert len(live_models) >= 4  # lora, java + ruby adapters, the fusion (+ evaluations)
    assert max(live_models) == 1, live_models


def stray_moment_copies(trainable: dict) -> int:
    """Live tensors shaped like a trainable parameter that are neither a parameter, its
    gradient, nor state of a live optimizer: copies of optimizer moments nobody trains with."""
    import torch

    shapes = {tuple(p.shape) for p in trainable.values() if p.dim() == 2}
    gc.collect()
    owned = {p.grad.untyped_storage().data_ptr() for p in trainable.values() if p.grad is not None}
    live = [o for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer)]
    for optimizer in live:
        for state in optimizer.state.values():
            owned |= {t.untyped_storage().data_ptr() for t in state.values() if torch.is_tensor(t)}
    stray = {
        o.untyped_storage().data_ptr()
        for o in gc.get_objects()
        if torch.is_tensor(o)
        and not isinstance(o, torch.nn.Parameter)
        and tuple(o.shape) in shapes
        and o.untyped_storage().data_ptr() not in owned
    }
    return len(stray)


@pytest.mark.parametrize(
    "case", ["reset-optimizer", pytest.param("carry-resumed", marks=pytest.mark.slow)]
)
def test_adv_fuse_phase_two_holds_one_copy_of_optimizer_state(cli, world, tmp_path, case):
    """Phase 2 trains with one optimizer state: phase 1's is handed over (carry) or freed
    (reset), also when phase 2 resumes from its own checkpoint."""
    import os
    import signal

    from advfusion_cli.workflows import execute, trainer

    extra = ["--reset-optimizer"] if case == "reset-optimizer" else []
    args = common(world, tmp_path, 4, "adv-fuse", "--langs", "java,ruby", *extra)
    fusion: dict = {}
    strays: list[int] = []

    def after_setup(run_plan, trainable):
        if run_plan.role == "fusion":
            fusion["params"] = trainable.params

    def after_step(phase, step):
        if phase == "phase2-restored" and fusion:
            strays.append(stray_moment_copies(fusion["params"]))

    def interrupt(phase, step):
        if (phase, step) == ("phase2-restored", 1):
            os.kill(os.getpid(), signal.SIGINT)

    execute.AFTER_SETUP_HOOKS.append(after_setup)
    trainer.AFTER_STEP_HOOKS.append(after_step)
    try:
        if case == "carry-resumed":
            trainer.AFTER_STEP_HOOKS.append(interrupt)
            try:
                assert cli(*args).exit_code == 130
            finally:
                trainer.AFTER_STEP_HOOKS.remove(interrupt)
            strays.clear()  # measure the resumed session
        result = cli(*args)
    finally:
        execute.AFTER_SETUP_HOOKS.remove(after_setup)
        trainer.AFTER_STEP_HOOKS.remove(after_step)
    assert result.exit_code == 0, result.stderr
    assert strays and max(strays) == 0, strays
