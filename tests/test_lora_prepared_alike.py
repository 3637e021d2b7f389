"""The LoRA baseline is evaluated on the model it was trained on: a quantized base gets peft's
k-bit preparation (norms, embeddings, lm_head in fp32) when LoRA is added for training and
again when the trained LoRA is loaded for evaluation, so both give the same logits.

Quantization needs CUDA; here a bf16 base flagged `is_loaded_in_4bit` stands in for one (peft
decides on that flag and upcasts every bf16 parameter that is not a 4-bit one)."""

from __future__ import annotations

import torch
from conftest import build_tiny_model

from advfusion_cli.engine.lora import add_lora, is_quantized, load_lora, save_lora


def quantized_stand_in():
    model = build_tiny_model("llama", seed=11).to(torch.bfloat16)
    model.is_loaded_in_4bit = True
    assert is_quantized(model)
    return model


def test_trained_lora_gives_the_same_logits_in_training_and_evaluation(tmp_path):
    trained = add_lora(quantized_stand_in()).train()
    assert trained.get_base_model().model.norm.weight.dtype == torch.float32  # prepared
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    for _ in range(3):  # a few real steps so lora_B is not zero
        trained(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    trained.eval()
    with torch.no_grad():
        in_training = trained(input_ids=ids).logits
    save_lora(trained, tmp_path / "lora")

    evaluated = load_lora(quantized_stand_in(), tmp_path / "lora").eval()
    base = evaluated.get_base_model()
    assert base.model.norm.weight.dtype == torch.float32
    assert base.lm_head.weight.dtype == torch.float32
    with torch.no_grad():
        in_evaluation = evaluated(input_ids=ids).logits
    assert in_evaluation.dtype == in_training.dtype == torch.float32
    torch.testing.assert_close(in_evaluation, in_training, rtol=0, atol=0)


def test_an_unquantized_base_is_left_as_loaded(tmp_path):
    model = build_tiny_model("llama", seed=11).to(torch.bfloat16)
    save_lora(add_lora(model), tmp_path / "lora")
    loaded = load_lora(build_tiny_model("llama", seed=11).to(torch.bfloat16), tmp_path / "lora")
    assert loaded.get_base_model().model.norm.weight.dtype == torch.bfloat16
