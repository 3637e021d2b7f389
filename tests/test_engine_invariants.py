"""Invariants every method keeps on every architecture (a table of cases, one row per method).

For each (method, architecture): exactly the intended parameters require grad, each of them
receives a gradient and nothing else does; save -> load into a fresh base reproduces the logits
bit for bit; removing the method restores the base logits bit for bit. Zero-initialised deltas
leave the base logits unchanged.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CONFIGS, build_tiny_model

from advfusion_cli.engine import (
    AdapterConfig,
    LoraSettings,
    add_lora,
    attach_host,
    load_lora,
    save_lora,
    trainable_parameter_names,
)

ARCHS = list(TINY_CONFIGS)
METHODS = ["task-adapter", "compacter", "fusion-task-adapter", "fusion-compacter", "lora"]
LANGS = ["python", "java", "ruby"]


def adapter_config(kind: str) -> AdapterConfig:
    if kind == "compacter":
        # hidden 32 / 8 = bottleneck 4, divisible by phm_dim 4 (the default 32 would give 1).
        return AdapterConfig.compacter(reduction_factor=8)
    return AdapterConfig.task_adapter()


def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 128, (2, 7), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding in the second row
    return {"input_ids": ids, "attention_mask": mask}


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs()).logits


def setup_method(method: str, model):
    """Attach `method` to `model`; returns (model to run, intended trainable parameters)."""
    torch.manual_seed(2)
    if method == "lora":
        peft_model = add_lora(model, LoraSettings())
        with torch.no_grad():  # B = 0 at init would give A a zero gradient
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.1)
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        return peft_model, trainable
    host = attach_host(model)
    kind = method.removeprefix("fusion-")
    if method.startswith("fusion-"):
        for lang in LANGS:
            host.add_adapter(lang, adapter_config(kind))
        host.fuse(LANGS)
        return model, host.freeze_for_fusion_training()
    host.add_adapter("python", adapter_config(kind))
    host.add_adapter("java", adapter_config(kind))  # a second adapter that must stay frozen
    return model, host.freeze_for_adapter_training("python")


def expected_name_pattern(method: str, name: str) -> bool:
    if method == "lora":
        return "lora_A" in name or "lora_B" in name
    if method.startswith("fusion-"):
        return ".fusion." in name
    return ".adapters.python." in name or name == "advfusion_phm_rules.python"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_only_intended_parameters_train(method, arch):
    model, intended = setup_method(method, build_tiny_model(arch))
    intended_ids = {id(p) for p in intended}
    names = {name for name, p in model.named_parameters() if id(p) in intended_ids}
    assert intended and len(names) == len(intended)
    assert set(trainable_parameter_names(model)) == names
    assert all(expected_name_pattern(method, n) for n in names), sorted(names)
    if method == "compacter":
        assert "advfusion_phm_rules.python" in names  # the shared PHM rule trains too

    out = model(**inputs()).logits
    loss = out.float().square().mean()
    if method.startswith("fusion-"):
        loss = loss + model._advfusion_host.fusion_regularization()
    loss.backward()
    for name, param in model.named_parameters():
        if id(param) not in intended_ids:
            assert param.grad is None, f"{name} got a gradient"
            continue
        assert param.grad is not None, f"{name} got no gradient"
        if name.endswith("fusion.key.bias"):
            # Q.b_K is added to every slot's logit alike and the softmax ignores a shared
            # shift: b_K's gradient is exactly zero in the maths (rounding only here).
            assert param.grad.abs().max() < 1e-9
        else:
            assert param.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_save_load_reproduces_logits_and_removal_restores_base(method, arch, tmp_path):
    base = build_tiny_model(arch)
    base_logits = logits(base)
    model, _ = setup_method(method, base)
    with_method = logits(model)
    assert not torch.equal(with_method, base_logits)  # the method does change the output

    fresh = build_tiny_model(arch)  # same seed: the same base weights
    if method == "lora":
        save_lora(model, tmp_path / "lora")
        reloaded = load_lora(fresh, tmp_path / "lora")
        assert torch.equal(logits(reloaded), with_method)
        assert torch.equal(logits(model.unload()), base_logits)
        return
    host = model._advfusion_host
    fresh_host = attach_host(fresh)
    if method.startswith("fusion-"):
        for lang in LANGS:
            host.save_adapter(lang, tmp_path / lang)
            fresh_host.load_adapter(tmp_path / lang)
        host.save_fusion(tmp_path / "fusion")
        fresh_host.load_fusion(tmp_path / "fusion")
    else:
        host.save_adapter("python", tmp_path / "python")
        fresh_host.activate(fresh_host.load_adapter(tmp_path / "python"))
    assert torch.equal(logits(fresh), with_method)

    host.detach()
    assert torch.equal(logits(model), base_logits)
    assert all(p.requires_grad for p in model.parameters())  # flags restored as well
    assert not hasattr(model, "advfusion_phm_rules")


def zero_up_projections(host, name: str) -> None:
    with torch.no_grad():
        for _, _, adapter in host.adapters_of(name):
            for param_name, param in adapter.named_parameters():
                if param_name.startswith("up"):  # up.weight/up.bias or up_s/up_t/up_bias
                    param.zero_()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["task-adapter", "compacter"])
def test_zero_deltas_leave_logits_unchanged(kind, arch):
    model = build_tiny_model(arch)
    base_logits = logits(model)
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang, adapter_config(kind))
        zero_up_projections(host, lang)
    host.activate("python")
    assert torch.equal(logits(model), base_logits)
    host.fuse(LANGS)  # fusion over all-zero deltas: f + W_V * 0
    assert torch.equal(logits(model), base_logits)


@pytest.mark.parametrize("arch", ["llama", "gpt_bigcode"])
def test_fresh_lora_leaves_logits_unchanged(arch):
    model = build_tiny_model(arch)
    base_logits = logits(model)
    assert torch.equal(logits(add_lora(model)), base_logits)  # B = 0 at init
