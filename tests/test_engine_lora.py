"""LoRA through peft: per-architecture defaults, peft-format files, base checks."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_CONFIGS, build_tiny_model
from peft import PeftModel

from advfusion_cli.engine import LoraSettings, add_lora, attach_host, load_lora, save_lora
from advfusion_cli.errors import UserError

DEFAULT_TARGETS = {
    "llama": {"q_proj", "v_proj"},
    "qwen2": {"q_proj", "v_proj"},
    "mistral": {"q_proj", "v_proj"},
    "starcoder2": {"q_proj", "v_proj"},
    "gpt_bigcode": {"c_attn"},
    "gpt_neox": {"query_key_value"},
}


@pytest.mark.parametrize("arch", list(TINY_CONFIGS))
def test_defaults_follow_the_reference(arch):
    model = add_lora(build_tiny_model(arch))
    config = model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout, config.bias) == (16, 16, 0.1, "none")
    assert set(config.target_modules) == DEFAULT_TARGETS[arch]
    assert not model.training  # the base was in eval mode; so is the LoRA model


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing")  # inside plain peft
def test_saved_folder_is_plain_peft_and_reloads_exactly(tmp_path):
    model = add_lora(build_tiny_model("qwen2"), LoraSettings(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    ids = torch.tensor([[5, 6, 7, 8]])
    expected = model(ids).logits
    folder = save_lora(model, tmp_path / "lora")
    assert {"adapter_model.safetensors", "adapter_config.json", "base_fingerprint.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    plain = PeftModel.from_pretrained(build_tiny_model("qwen2"), str(folder))  # peft users
    assert torch.equal(plain(ids).logits, expected)
    ours = load_lora(build_tiny_model("qwen2"), folder, is_trainable=True)
    assert torch.equal(ours(ids).logits, expected)
    assert any(p.requires_grad for p in ours.parameters())


def test_lora_on_another_base_is_refused(tmp_path):
    folder = save_lora(add_lora(build_tiny_model("llama")), tmp_path / "lora")
    with pytest.raises(UserError, match=r"\(llama, .*\(mistral, "):
        load_lora(build_tiny_model("mistral"), folder)
    with pytest.raises(UserError, match="does not exist"):
        load_lora(build_tiny_model("llama"), tmp_path / "absent")


def test_bad_settings_and_conflicts():
    with pytest.raises(UserError, match="r must be a positive integer"):
        LoraSettings(r=0)
    with pytest.raises(UserError, match="dropout"):
        LoraSettings(dropout=1.5)
    with pytest.raises(UserError, match="bias"):
        LoraSettings(bias="some")
    with pytest.raises(UserError, match="k_proj_typo not found"):
        add_lora(build_tiny_model("llama"), LoraSettings(target_modules=("k_proj_typo",)))
    hosted = build_tiny_model("llama")
    attach_host(hosted)
    with pytest.raises(UserError, match="AdapterHost"):
        add_lora(hosted)
    with pytest.raises(UserError, match="already carries peft"):
        add_lora(add_lora(build_tiny_model("llama")))
    with pytest.raises(UserError, match="save_lora needs"):
        save_lora(build_tiny_model("llama"), "unused")


def test_gradient_checkpointing_option_gives_the_same_gradients():
    def grads(checkpointing: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = add_lora(
            build_tiny_model("llama"),
            LoraSettings(dropout=0.0),
            gradient_checkpointing=checkpointing,
        )
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.1)
        assert model.get_base_model().model.layers[0].gradient_checkpointing == checkpointing
        model.train()
        model(torch.tensor([[5, 6, 7, 8]])).logits.square().mean().backward()
        return [p.grad for p in model.parameters() if p.requires_grad]

    for a, b in zip(grads(False), grads(True), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
