"""Adapters, fusion and LoRA on a 4-bit NF4 base (bitsandbytes, CPU).

The reference for each 4-bit run is the same base with every 4-bit weight dequantized into a
plain fp32 nn.Linear: the logits and the adapter gradients must agree with it, also after an
eval-mode generate (which on AVX512-BF16 CPUs would otherwise repack the weights into a
layout without a backward).
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model

from advfusion_cli.engine import (
    AdapterConfig,
    add_lora,
    attach_host,
    count_parameters,
    load_model,
    trainable_parameter_names,
)

LANGS = ["python", "java", "ruby"]


def dequantized_copy(quantized, arch: str):
    import bitsandbytes as bnb

    reference = build_tiny_model(arch)
    with torch.no_grad():
        for name, module in quantized.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(
                    module.weight.data, module.weight.quant_state
                )
                # "o_proj.base" inside an attached host is "o_proj" in the plain model
                reference.get_submodule(name.removesuffix(".base")).weight.copy_(weight)
    return reference


def prompt() -> torch.Tensor:
    return torch.randint(3, 128, (2, 5), generator=torch.Generator().manual_seed(3))


def run_step(model, host, mode: str):
    """generate (eval), then one training forward/backward; returns logits and trainable grads."""
    model.eval()
    generated = model.generate(
        prompt(),
        attention_mask=torch.ones(2, 5, dtype=torch.long),
        max_new_tokens=3,
        min_new_tokens=3,
        do_sample=False,
        pad_token_id=0,
    )
    assert generated.shape == (2, 8)
    params = (
        host.freeze_for_fusion_training()
        if mode == "fusion"
        else host.freeze_for_adapter_training("python")
    )
    model.train()
    torch.manual_seed(7)  # the same dropout masks (gpt_bigcode) in both runs
    logits = model(prompt()).logits
    loss = logits.float().square().mean()
    if mode == "fusion":
        loss = loss + host.fusion_regularization()
    loss.backward()
    return logits.detach(), [p.grad.clone() for p in params]


@pytest.mark.parametrize("arch", ["llama", "gpt_bigcode", "gpt_neox"])
@pytest.mark.parametrize("mode", ["adapter", "fusion"])
def test_4bit_base_matches_dequantized_reference(arch, mode, tiny_model_dir, tmp_path):
    quantized = load_model(tiny_model_dir(arch), quantization="4bit")
    host = attach_host(quantized)
    torch.manual_seed(4)
    for lang in LANGS:
        host.add_adapter(lang, AdapterConfig.task_adapter(init_std=0.2))
        host.save_adapter(lang, tmp_path / lang)
    if mode == "fusion":
        host.fuse(LANGS)
        host.save_fusion(tmp_path / "fusion")
    logits, grads = run_step(quantized, host, mode)

    reference = dequantized_copy(quantized, arch)
    ref_host = attach_host(reference)
    for lang in LANGS:
        ref_host.load_adapter(tmp_path / lang)
    if mode == "fusion":
        ref_host.load_fusion(tmp_path / "fusion")
    ref_logits, ref_grads = run_step(reference, ref_host, mode)

    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    assert sum(g.abs().sum() for g in grads) > 0
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-6)


def test_qlora_on_4bit_base(tiny_model_dir):
    base = load_model(tiny_model_dir("llama"), quantization="4bit")
    model = add_lora(base)
    names = trainable_parameter_names(model)
    assert names and all("lora_A" in n or "lora_B" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}
    trainable, total = count_parameters(model)
    assert 0 < trainable < total
    model.train()
    model(prompt()).logits.float().square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    model.eval()
    out = model.generate(
        prompt(),
        attention_mask=torch.ones(2, 5, dtype=torch.long),
        max_new_tokens=2,
        do_sample=False,
        pad_token_id=0,
    )
    assert out.shape[1] >= 6


def test_adapters_on_8bit_base_train_and_detach(tiny_model_dir):
    import bitsandbytes as bnb

    model = load_model(tiny_model_dir("qwen2"), quantization="8bit")
    with torch.no_grad():
        base = model(prompt()).logits
    host = attach_host(model)
    assert isinstance(host.place(0, "mlp").base, bnb.nn.Linear8bitLt)
    host.add_adapter("python", AdapterConfig.compacter(reduction_factor=8))
    params = host.freeze_for_adapter_training("python")
    model.train()
    model(prompt()).logits.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    model.eval()
    host.detach()
    with torch.no_grad():
        assert torch.equal(model(prompt()).logits, base)


@pytest.mark.gpu
def test_cuda_4bit_base_with_bf16_adapters_and_fusion(tiny_model_dir):
    model = load_model(tiny_model_dir("llama"), quantization="4bit")
    assert next(model.parameters()).device.type == "cuda"
    host = attach_host(model)
    assert host.adapter_dtype == torch.bfloat16  # GPU default, whatever the base storage
    for lang in LANGS:
        host.add_adapter(lang, AdapterConfig.compacter(reduction_factor=8))
    host.fuse(LANGS)
    host.mask("ruby")
    params = host.freeze_for_fusion_training()
    model.train()
    ids = prompt().cuda()
    loss = model(ids).logits.float().square().mean() + host.fusion_regularization()
    loss.backward()
    assert all(p.grad is not None and p.dtype == torch.bfloat16 for p in params)
    model.eval()
    with host.record_fusion_attention() as record:
        out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert out.shape == (2, 8) and record.mean().shape == (2, 2, 3)
