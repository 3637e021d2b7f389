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
