"""The job-spec tree: defaults, presets, round-trips, aliases, budgets and derived values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from advfusion_cli.spec import (
    AdvFusionMethod,
    Budget,
    CompacterMethod,
    JobSpec,
    TaskAdapterMethod,
    dump_spec,
    load_spec,
    parse_spec,
    resolve_spec,
)
from advfusion_cli.spec.presets import PAPER, PRESETS

METHOD_NAMES = ["lora", "task-adapter", "compacter", "adapterfusion", "advfusion"]


def test_defaults_are_the_embedded_testbed_settings():
    spec = resolve_spec()
    assert spec == JobSpec()
    assert spec.preset == "testbed"
    assert spec.model.name_or_path == "advfusion/tiny-code"
    assert spec.model.quantization == "none"
    assert spec.data.source == "testbed"
    assert spec.data.languages == ["python", "javascript", "java", "go", "ruby"]
    assert spec.data.target == "ruby"
    assert (spec.training.lr, spec.training.fusion_lr) == (5e-3, 1e-3)
    assert spec.training.budget == Budget(steps=150)
    assert spec.training.batch_size == 8
    assert spec.method.name == "advfusion"
    assert spec.phase_budgets() == (Budget(steps=75), Budget(steps=75))


def test_paper_preset_sets_every_value_it_lists():
    spec = resolve_spec(preset="paper")
    dumped = spec.model_dump()
    for section, values in PAPER.values.items():
        for key, value in values.items():
            assert dumped[section][key] == value, f"{section}.{key}"
    assert spec.method.split_budget is False
    assert spec.phase_budgets() == (Budget(epochs=2.0), Budget(epochs=2.0))
    assert spec.training.lr_for("fusion") == 1e-4
    assert spec.model.quantization == "4bit" and spec.model.double_quant
    assert (spec.training.batch_size, spec.training.grad_accum) == (1, 4)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_dump_then_parse_gives_the_same_spec(preset, method, tmp_path):
    spec = resolve_spec(
        preset=preset,
        sets=[f"method.name={method}", "data.languages=js,cpp,ruby", "output.run_name=r1"],
    )
    text = dump_spec(spec)
    assert parse_spec(text) == spec
    path = tmp_path / "job.yaml"
    path.write_text(text)
    assert load_spec(path) == spec
    assert dump_spec(load_spec(path)) == text


def test_round_trip_keeps_non_default_nested_values():
    spec = resolve_spec(
        sets=[
            "method.name=advfusion-compacter",
            "method.adapter.phm_dim=8",
            "method.mask_mode=remove",
            "method.phase1_epochs=0.5",
            "training.fusion_lr=null",
            "data.max_train_records=10",
        ]
    )
    again = parse_spec(dump_spec(spec))
    assert again == spec
    assert again.method.adapter.phm_dim == 8
    assert again.training.fusion_lr is None


def test_method_aliases_and_shorthand():
    spec = parse_spec("method: advfusion-compacter\n")
    assert spec.method.name == "advfusion"
    assert spec.method.adapter_kind == "compacter"
    spec = parse_spec("method:\n  name: AdapterFusion_Compacter\n")
    assert (spec.method.name, spec.method.adapter_kind) == ("adapterfusion", "compacter")
    assert parse_spec("method: lora\n").method.name == "lora"


def test_language_aliases_are_normalised():
    spec = parse_spec("data:\n  languages: [JS, C++, Python 3, ruby]\n  target: Ruby\n")
    assert spec.data.languages == ["javascript", "cpp", "python", "ruby"]
    assert spec.data.target == "ruby"


def test_task_and_subset_spellings_are_normalised():
    spec = parse_spec("data:\n  task: Code_Generation\n  subset: nichetrans\n")
    assert spec.data.task == "code-generation"
    assert spec.data.subset == "NicheTrans"


def test_data_source_forms():
    assert resolve_spec().data.source_kind == "testbed"
    hub = resolve_spec(sets=["data.source=hub:bigcode/commitpackft"]).data
    assert (hub.source_kind, hub.hub_id) == ("hub", "bigcode/commitpackft")
    local = resolve_spec(sets=["data.source=./my-data"]).data
    assert (local.source_kind, local.hub_id) == ("path", None)


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ([], (Budget(steps=75), Budget(steps=75))),
        (["training.max_steps=151"], (Budget(steps=75), Budget(steps=76))),
        (["training.epochs=3"], (Budget(epochs=1.5), Budget(epochs=1.5))),
        (["method.split_budget=false"], (Budget(steps=150), Budget(steps=150))),
        (
            ["method.phase1_steps=200", "method.phase2_steps=50"],
            (Budget(steps=200), Budget(steps=50)),
        ),
        (["method.phase2_epochs=0.5"], (Budget(steps=75), Budget(epochs=0.5))),
    ],
)
def test_advfusion_phase_budgets(sets, expected):
    assert resolve_spec(sets=sets).phase_budgets() == expected


def test_single_stage_methods_have_one_budget():
    spec = resolve_spec(sets=["method.name=lora", "training.max_steps=40"])
    assert spec.phase_budgets() == (Budget(steps=40),)
    assert str(Budget(steps=40)) == "40 steps" and str(Budget(epochs=0.5)) == "0.5 epochs"


def test_learning_rate_per_stage():
    training = resolve_spec().training
    assert training.lr_for("adapter") == 5e-3
    assert training.lr_for("fusion") == 1e-3
    training = resolve_spec(sets=["training.fusion_lr=null"]).training
    assert training.lr_for("fusion") == 5e-3


def test_fused_adapter_settings_fill_the_kinds_defaults():
    spec = resolve_spec(sets=["method.adapter_kind=compacter", "method.adapter.phm_dim=8"])
    assert spec.method.adapter_method() == CompacterMethod(phm_dim=8)
    spec = resolve_spec(sets=["method.adapter.reduction_factor=8"])
    assert spec.method.adapter_method() == TaskAdapterMethod(reduction_factor=8)


def test_specs_are_frozen():
    spec = resolve_spec()
    with pytest.raises(ValidationError):
        spec.training.lr = 1.0
    changed = spec.model_copy(update={"training": spec.training.model_copy(update={"lr": 1.0})})
    assert changed.training.lr == 1.0 and spec.training.lr == 5e-3


def test_is_fusion():
    assert resolve_spec().is_fusion
    assert resolve_spec(sets=["method.name=adapterfusion"]).is_fusion
    assert not resolve_spec(sets=["method.name=compacter"]).is_fusion
    assert isinstance(resolve_spec().method, AdvFusionMethod)
