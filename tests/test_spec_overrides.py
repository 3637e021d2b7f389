"""Precedence (defaults < preset < file < --set < flags), --set parsing and the merge rules."""

from __future__ import annotations

import enum
from pathlib import Path

import pytest

from advfusion_cli.errors import UserError
from advfusion_cli.spec import Budget, resolve_spec


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_each_level_overrides_the_one_below(tmp_path):
    spec_file = write(tmp_path, "training:\n  lr: 2.0e-4\n  batch_size: 3\n")
    assert resolve_spec().training.lr == 5e-3  # schema default
    assert resolve_spec(preset="paper").training.lr == 1e-4  # preset over default
    from_file = resolve_spec(spec_file, preset="paper")
    assert from_file.training.lr == 2e-4  # file over preset
    assert from_file.training.grad_accum == 4  # preset value the file does not touch
    from_set = resolve_spec(spec_file, "paper", ["training.lr=3e-4"])
    assert from_set.training.lr == 3e-4  # --set over file
    assert from_set.training.batch_size == 3  # file value --set does not touch
    from_flag = resolve_spec(spec_file, "paper", ["training.lr=3e-4"], {"training.lr": 4e-4})
    assert from_flag.training.lr == 4e-4  # flag over --set


def test_later_set_wins_over_earlier_set():
    assert resolve_spec(sets=["training.seed=1", "training.seed=2"]).training.seed == 2


def test_flags_given_as_none_do_not_override(tmp_path):
    spec_file = write(tmp_path, "data:\n  target: go\n")
    spec = resolve_spec(spec_file, flags={"data.target": None, "method.name": None})
    assert spec.data.target == "go"
    assert spec.method.name == "advfusion"


def test_preset_choice_precedence(tmp_path):
    spec_file = write(tmp_path, "preset: paper\n")
    assert resolve_spec(spec_file).preset == "paper"
    assert resolve_spec(spec_file).training.lr == 1e-4
    assert resolve_spec(spec_file, sets=["preset=testbed"]).preset == "testbed"
    assert resolve_spec(spec_file, sets=["preset=testbed"]).training.lr == 5e-3
    assert resolve_spec(None, "paper", ["preset=testbed"]).preset == "paper"


def test_setting_one_of_a_pair_clears_the_other_below():
    spec = resolve_spec(preset="paper", sets=["training.max_steps=10"])
    assert (spec.training.epochs, spec.training.max_steps) == (None, 10)
    spec = resolve_spec(sets=["training.epochs=3"])  # default max_steps 150 is cleared
    assert spec.training.budget == Budget(epochs=3.0)
    spec = resolve_spec(preset="paper", flags={"training.eval_every_steps": 5})
    assert (spec.training.eval_every_steps, spec.training.eval_every_epochs) == (5, None)
    spec = resolve_spec(sets=["method.phase1_epochs=1"], flags={"method.phase1_steps": 7})
    assert (spec.method.phase1_steps, spec.method.phase1_epochs) == (7, None)


def test_both_of_a_pair_at_one_level_is_an_error(tmp_path):
    spec_file = write(tmp_path, "training:\n  epochs: 2\n  max_steps: 10\n")
    with pytest.raises(UserError, match=r"training.max_steps: set training.epochs or"):
        resolve_spec(spec_file)


def test_choosing_another_method_drops_keys_it_does_not_have(tmp_path):
    spec_file = write(
        tmp_path,
        "method:\n  name: advfusion\n  adapter_kind: compacter\n  mask_mode: remove\n",
    )
    lora = resolve_spec(spec_file, flags={"method.name": "lora"})
    assert lora.method.name == "lora"
    fusion = resolve_spec(spec_file, sets=["method.name=adapterfusion"])
    assert fusion.method.name == "adapterfusion"
    assert fusion.method.adapter_kind == "compacter"  # shared key kept


def test_method_block_without_name_belongs_to_the_method_below(tmp_path):
    spec_file = write(tmp_path, "method:\n  mask_mode: remove\n")
    assert resolve_spec(spec_file).method.mask_mode == "remove"
    # A flag choosing lora replaces the (default) advfusion block and its keys.
    assert resolve_spec(spec_file, flags={"method.name": "lora"}).method.name == "lora"


def test_preset_method_values_sit_under_the_users():
    assert resolve_spec(preset="paper").method.split_budget is False
    spec = resolve_spec(preset="paper", sets=["method.split_budget=true"])
    assert spec.method.split_budget is True
    assert spec.phase_budgets() == (Budget(epochs=1.0), Budget(epochs=1.0))
    lora = resolve_spec(preset="paper", flags={"method.name": "lora", "method.r": 8})
    assert (lora.method.r, lora.method.alpha, lora.method.dropout) == (8, 16.0, 0.1)


# The fusion default needs data.target among data.languages, hence the `data.target` sets.
@pytest.mark.parametrize(
    ("sets", "key", "expected"),
    [
        (
            ["data.languages=[java, python]", "data.target=java"],
            "data.languages",
            ["java", "python"],
        ),
        (["data.languages=java,python", "data.target=java"], "data.languages", ["java", "python"]),
        (
            ["method.name=lora", "data.languages=js", "data.target=js"],
            "data.languages",
            ["javascript"],
        ),
        (["training.lr=1e-4"], "training.lr", 1e-4),
        (["training.fusion_lr=null"], "training.fusion_lr", None),
        (["training.max_grad_norm="], "training.max_grad_norm", None),
        (["training.keep_best=false"], "training.keep_best", False),
        (["output.run_name=1e3"], "output.run_name", "1e3"),
        (
            ["model.name_or_path=Qwen/Qwen2.5-Coder-1.5B"],
            "model.name_or_path",
            "Qwen/Qwen2.5-Coder-1.5B",
        ),
        (
            ["method.name=lora", "method.target_modules=q_proj,v_proj"],
            "method.target_modules",
            ["q_proj", "v_proj"],
        ),
        (["model.device_map=auto"], "model.device_map", "auto"),
    ],
)
def test_set_values_are_read_for_their_field(sets, key, expected):
    section, name = key.split(".")
    assert getattr(getattr(resolve_spec(sets=sets), section), name) == expected


def test_set_checks_method_keys_against_the_final_method(tmp_path):
    spec_file = write(tmp_path, "method:\n  name: advfusion\n")
    spec = resolve_spec(spec_file, sets=["method.name=lora", "method.r=4"])
    assert (spec.method.name, spec.method.r) == ("lora", 4)
    spec = resolve_spec(spec_file, sets=["method.r=4"], flags={"method.name": "lora"})
    assert spec.method.r == 4


class Kind(enum.Enum):
    COMPACTER = "compacter"


def test_flag_values_enums_lists_and_paths(tmp_path):
    spec = resolve_spec(
        flags={
            "method.name": Kind.COMPACTER,
            "data.languages": "java,python",
            "data.target": "java",
            "output.workdir": tmp_path / "runs",
        }
    )
    assert spec.method.name == "compacter"
    assert spec.data.languages == ["java", "python"]
    assert spec.output.workdir == tmp_path / "runs"


def test_alias_given_as_flag_sets_adapter_kind():
    spec = resolve_spec(flags={"method.name": "advfusion-compacter"})
    assert (spec.method.name, spec.method.adapter_kind) == ("advfusion", "compacter")
