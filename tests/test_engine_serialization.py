"""Adapter/fusion folders: contents, exact reload, and one clear error per kind of bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import build_tiny_model
from transformers import AutoConfig, AutoModelForCausalLM

from advfusion_cli.engine import (
    AdapterConfig,
    FusionConfig,
    add_lora,
    attach_host,
    load_lora,
    load_model,
    save_lora,
    serialization,
)
from advfusion_cli.errors import UserError

LANGS = ["python", "java", "ruby"]


@pytest.fixture
def saved_adapter(tmp_path):
    model = build_tiny_model("llama")
    host = attach_host(model)
    host.add_adapter("python", AdapterConfig.compacter(reduction_factor=8), language="Python")
    return host.save_adapter("python", tmp_path / "python")


def test_adapter_folder_contents(saved_adapter):
    assert sorted(p.name for p in saved_adapter.iterdir()) == [
        "adapter.safetensors",
        "adapter_config.json",
    ]
    config = json.loads((saved_adapter / "adapter_config.json").read_text())
    assert config["format_version"] == 1 and config["kind"] == "adapter"
    assert (config["name"], config["language"]) == ("python", "Python")
    assert config["places"] == ["attn", "mlp"]
    assert AdapterConfig.from_dict(config["adapter"]) == AdapterConfig.compacter(reduction_factor=8)
    assert config["base"] == {
        "model_type": "llama",
        "hidden_size": 32,
        "num_layers": 2,
        "name_or_path": "",
    }
    tensors = serialization.read_tensors(saved_adapter / "adapter.safetensors")
    assert "phm_rule" in tensors and "layers.1.attn.up_s" in tensors
    assert len(tensors) == 1 + 2 * 2 * 6  # shared rule + 6 tensors per (layer, place)


def test_loaded_adapter_keeps_language_and_name_override(saved_adapter):
    host = attach_host(build_tiny_model("llama"))
    assert host.load_adapter(saved_adapter, name="py2") == "py2"
    assert host.adapter_language("py2") == "Python"
    assert host.adapter_config("py2").kind == "compacter"


def test_different_base_fails_naming_both(saved_adapter):
    other = attach_host(build_tiny_model("qwen2"))
    with pytest.raises(UserError) as info:
        other.load_adapter(saved_adapter)
    assert "(llama, hidden 32, 2 layers)" in str(info.value)
    assert "(qwen2, hidden 32, 2 layers)" in str(info.value)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    wider = attach_host(AutoModelForCausalLM.from_config(config))
    with pytest.raises(UserError, match="hidden 64"):
        wider.load_adapter(saved_adapter)
    assert wider.adapter_names == []


def test_same_shape_different_name_needs_strict_base_off(tmp_path, tiny_model_dir):
    copy = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir("llama"), copy)
    host = attach_host(load_model(tiny_model_dir("llama")))
    host.add_adapter("python")
    host.save_adapter("python", tmp_path / "python")
    other = attach_host(load_model(copy))
    with pytest.raises(UserError, match="other-model.*strict_base=False"):
        other.load_adapter(tmp_path / "python")
    assert other.load_adapter(tmp_path / "python", strict_base=False) == "python"
    # A hub id and a local copy with the same last component are the same base.
    serialization.check_fingerprint(
        {"model_type": "llama", "hidden_size": 32, "num_layers": 2, "name_or_path": "org/m"},
        {"model_type": "llama", "hidden_size": 32, "num_layers": 2, "name_or_path": "/data/m/"},
        tmp_path,
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b"not a safetensors file at all"), "corrupt or truncated"),
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "corrupt or truncated"),
        (lambda p: p.write_bytes(b""), "corrupt or truncated"),
        (lambda p: p.unlink(), "Missing file"),
    ],
    ids=["garbage", "truncated", "empty", "missing"],
)
def test_damaged_weights_are_named(saved_adapter, damage, message):
    weights = saved_adapter / "adapter.safetensors"
    damage(weights)
    host = attach_host(build_tiny_model("llama"))
    with pytest.raises(UserError, match=message) as info:
        host.load_adapter(saved_adapter)
    assert str(weights) in str(info.value)
    assert host.adapter_names == []  # nothing half-loaded


def edit_config(folder, change) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(format_version=99), "format_version 99 is not supported"),
        (lambda c: c.update(kind="fusion"), "expected kind 'adapter'"),
        (lambda c: c["adapter"].update(reduction_factor=4), "has shape"),
        (lambda c: c["adapter"].update(reduction=4), "Unknown AdapterConfig key"),
        (lambda c: c.update(places=["mlp"]), "places"),
        (lambda c: c.pop("base"), "fingerprint is missing"),
    ],
    ids=["version", "kind", "shape", "unknown-key", "places", "no-base"],
)
def test_invalid_config_is_named(saved_adapter, change, message):
    edit_config(saved_adapter, change)
    host = attach_host(build_tiny_model("llama"))
    with pytest.raises(UserError, match=message) as info:
        host.load_adapter(saved_adapter)
    assert str(saved_adapter) in str(info.value)
    assert host.adapter_names == []


def test_broken_json_and_missing_folder(saved_adapter, tmp_path):
    host = attach_host(build_tiny_model("llama"))
    (saved_adapter / "adapter_config.json").write_text("{not json")
    with pytest.raises(UserError, match="adapter_config.json is not valid JSON"):
        host.load_adapter(saved_adapter)
    (saved_adapter / "adapter_config.json").unlink()
    with pytest.raises(UserError, match="Missing file .*adapter_config.json"):
        host.load_adapter(saved_adapter)
    with pytest.raises(UserError, match="folder .* does not exist"):
        host.load_adapter(tmp_path / "nowhere")


def test_peft_and_advfusion_folders_are_told_apart(saved_adapter, tmp_path):
    lora_dir = save_lora(add_lora(build_tiny_model("llama")), tmp_path / "lora")
    host = attach_host(build_tiny_model("llama"))
    with pytest.raises(UserError, match="peft .*load_lora"):
        host.load_adapter(lora_dir)
    with pytest.raises(UserError, match="not a peft config"):
        load_lora(build_tiny_model("llama"), saved_adapter)


def test_interrupted_save_keeps_the_previous_file(saved_adapter, monkeypatch):
    weights = saved_adapter / "adapter.safetensors"
    before = weights.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        serialization.write_tensors(weights, {"x": torch.zeros(2)})
    assert weights.read_bytes() == before
    assert sorted(p.name for p in saved_adapter.iterdir()) == [
        "adapter.safetensors",
        "adapter_config.json",
    ]


def test_fusion_round_trip_keeps_masks_and_temperature(tmp_path):
    model = build_tiny_model("starcoder2")
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang, AdapterConfig.task_adapter(), language=lang)
        host.save_adapter(lang, tmp_path / lang)
    host.fuse(LANGS, FusionConfig(temperature=True, mask_mode="remove"))
    model.train()
    model(torch.tensor([[5, 6, 7]]))  # one scheduled temperature step
    model.eval()
    host.mask("ruby")
    host.save_fusion(tmp_path / "fusion")
    expected = model(torch.tensor([[5, 6, 7]])).logits

    config = json.loads((tmp_path / "fusion" / "fusion_config.json").read_text())
    assert config["adapters"] == LANGS and config["masked"] == ["ruby"]
    assert config["adapter_kind"] == "task-adapter" and config["temperature_steps"] == 1

    fresh = build_tiny_model("starcoder2")
    fresh_host = attach_host(fresh)
    fresh_host.load_adapter(tmp_path / "python")
    with pytest.raises(UserError, match="load java, ruby first"):
        fresh_host.load_fusion(tmp_path / "fusion")
    fresh_host.load_adapter(tmp_path / "java")
    fresh_host.load_adapter(tmp_path / "ruby")
    fresh_host.load_fusion(tmp_path / "fusion")
    assert fresh_host.masked == ["ruby"] and fresh_host.mode == "fusion"
    assert fresh_host.place(0, "mlp").fusion.temperature_steps == 1
    assert torch.equal(fresh(torch.tensor([[5, 6, 7]])).logits, expected)


def test_fusion_over_other_kind_or_bad_weights_is_rejected(tmp_path):
    host = attach_host(build_tiny_model("llama"))
    for lang in LANGS:
        host.add_adapter(lang)
    host.fuse(LANGS)
    folder = host.save_fusion(tmp_path / "fusion")
    compacters = attach_host(build_tiny_model("llama"))
    for lang in LANGS:
        compacters.add_adapter(lang, AdapterConfig.compacter(reduction_factor=8))
    with pytest.raises(UserError, match="trained over task-adapter adapters"):
        compacters.load_fusion(folder)
    (folder / "fusion.safetensors").write_bytes(b"\x00" * 16)
    same = attach_host(build_tiny_model("llama"))
    for lang in LANGS:
        same.add_adapter(lang)
    with pytest.raises(UserError, match="fusion.safetensors is not a readable"):
        same.load_fusion(folder)
    assert same.fusion_state is None
