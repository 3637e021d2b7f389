"""Loading never runs code from a file: weights only from safetensors, training state through
`torch.load(weights_only=True)`, specs through a safe YAML loader. Each hostile file here
would create a marker file if it were executed; the marker must never appear."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_model
from safetensors.torch import load_file

from advfusion_cli.errors import UserError


class WritesAMarker:
    """Unpickling this object calls `os.system` (the classic pickle payload)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_pickle(path: Path, marker: Path) -> None:
    with open(path, "wb") as handle:
        pickle.dump({"state": WritesAMarker(marker)}, handle, protocol=2)


@pytest.mark.parametrize("name", ["state.pt", "rng-rank0.pt"])
def test_checkpoint_state_is_read_weights_only(tmp_path, name):
    from advfusion_cli.workflows.checkpoint import read_rng, read_state

    marker = tmp_path / "pwned"
    hostile_pickle(tmp_path / name, marker)
    read = read_state if name == "state.pt" else lambda folder: read_rng(folder, 0)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        read(tmp_path)
    assert not marker.exists()


def test_a_spec_with_a_python_tag_is_refused_not_executed(cli, tmp_path):
    marker = tmp_path / "pwned"
    spec = tmp_path / "job.yaml"
    spec.write_text(f"training: !!python/object/apply:os.system ['touch {marker}']\n")
    result = cli("validate", str(spec))
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {spec}:1:")
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_set_value_with_a_python_tag_is_refused_not_executed(cli, tmp_path):
    marker = tmp_path / "pwned"
    result = cli(
        "validate", "--set", f"training.lr=!!python/object/apply:os.system ['touch {marker}']"
    )
    assert result.exit_code == 2 and result.stderr.startswith("error: --set training.lr=")
    assert not marker.exists()


def test_adapters_and_fusions_are_safetensors_plus_json(tmp_path):
    """The engine's own folders hold no pickle at all."""
    from advfusion_cli.engine.lora import add_lora, save_lora

    folder = save_lora(add_lora(build_tiny_model("llama")), tmp_path / "lora")
    names = sorted(p.name for p in folder.iterdir())
    assert all(n.endswith((".safetensors", ".json", ".md")) for n in names), names
    assert load_file(folder / "adapter_model.safetensors")


def test_a_base_model_with_only_pickled_weights_is_refused(tmp_path):
    from advfusion_cli.engine.loading import load_model

    model = build_tiny_model("llama")
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="safetensors"):
        load_model(tmp_path)


def test_a_lora_folder_with_only_pickled_weights_is_refused(tmp_path):
    from advfusion_cli.engine.lora import add_lora, load_lora, save_lora

    folder = save_lora(add_lora(build_tiny_model("llama")), tmp_path / "lora")
    weights = load_file(folder / "adapter_model.safetensors")
    (folder / "adapter_model.safetensors").unlink()
    torch.save(weights, folder / "adapter_model.bin")
    with pytest.raises(UserError, match="safetensors"):
        load_lora(build_tiny_model("llama"), folder)
