"""A head that transforms its logits (Gemma-2's final soft-capping) keeps the plain loss path:
the chunked, logits-free loss would apply the bare projection and skip the cap. On a tiny
Gemma-2 built from a config, the trainer's loss function with chunking forced on everything
must give the loss and gradients it gives on the plain path."""

from __future__ import annotations

import pytest
import torch

from advfusion_cli.workflows import lm_loss
from advfusion_cli.workflows.execute import causal_lm_loss

VOCAB = 128


def tiny_gemma2(softcap: float):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "gemma2",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=VOCAB,
        max_position_embeddings=128,
        final_logit_softcapping=softcap,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = AutoModelForCausalLM.from_config(config).eval()  # dropout off
    with torch.no_grad():  # large logits, so that the cap changes them a lot
        model.get_output_embeddings().weight.mul_(40.0)
    return model


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, VOCAB, (2, 16), generator=generator)
    labels = input_ids.clone()
    labels[:, :6] = -100  # the prompt is not counted
    completion = (labels != -100).long()
    completion[:, 6:9] = 0  # evaluation counts fewer positions than training
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "completion_mask": completion,
    }


def loss_and_grads(model, train: bool):
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        result = causal_lm_loss(model, batch(), train)
        result[0].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return tuple(t.detach() for t in result), grads


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_soft_capped_logits_give_the_same_loss_when_chunking_is_forced(monkeypatch, train):
    model = tiny_gemma2(softcap=5.0)
    data = batch()
    labels = data["labels"]
    if not train:
        labels = labels.masked_fill(data["completion_mask"] == 0, -100)
    # What the cap changes: the capped logits the model returns against the bare projection
    # that a logits-free loss would make from the hidden states.
    with torch.no_grad():
        capped = model(input_ids=data["input_ids"]).logits  # (B, T, V)
        bare = model.get_output_embeddings()(model.model(input_ids=data["input_ids"])[0])
    assert capped.abs().max() <= 5.0 < bare.abs().max()

    def cross_entropy(logits):
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100
        )

    assert abs(float(cross_entropy(capped)) - float(cross_entropy(bare))) > 1.0

    plain, plain_grads = loss_and_grads(model, train)
    monkeypatch.setattr(lm_loss, "CHUNK_THRESHOLD", 0)  # every batch "too large": chunk
    forced, forced_grads = loss_and_grads(model, train)
    torch.testing.assert_close(forced, plain, rtol=1e-6, atol=1e-6)
    assert set(forced_grads) == set(plain_grads) and forced_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(forced_grads[name], grad, rtol=1e-5, atol=1e-6)
