"""Memory at scale, checked on tiny models: the chunked (logits-free) loss equals the plain
loss and its gradients, and is chosen when vocabulary x tokens is large; the fusion
attention pass runs without a KV cache and keeps only the last position's logits."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
from conftest import build_tiny_model
from torch import nn

from advfusion_cli.workflows import lm_loss
from advfusion_cli.workflows.lm_loss import chunked_loss, next_token_loss, use_chunked_loss


def _batch(vocab: int = 128, rows: int = 3, length: int = 17, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (rows, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -4:] = 0  # a right-padded row
    labels = input_ids.clone()
    labels[:, :5] = -100  # prompt positions are not counted
    labels[attention_mask == 0] = -100
    return input_ids, attention_mask, labels


def _plain(model, input_ids, attention_mask, labels):
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "gpt_bigcode"])
def test_chunked_loss_equals_the_plain_loss_and_its_gradients(arch):
    model = build_tiny_model(arch).eval()  # dropout off: both passes see the same network
    batch = _batch()
    plain = _plain(model, *batch)
    plain.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)

    chunked = chunked_loss(model, *batch, chunk_elements=128 * 5)  # 5 tokens per chunk
    chunked.backward()
    got = _grads(model)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    assert isinstance(model.get_output_embeddings(), nn.Linear)  # the head is put back


def test_chunked_loss_through_peft_trains_only_lora():
    from advfusion_cli.engine.lora import add_lora

    model = add_lora(build_tiny_model("llama")).eval()  # LoRA dropout off
    batch = _batch(seed=1)
    plain = _plain(model, *batch)
    chunked = chunked_loss(model, *batch, chunk_elements=128 * 7)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    chunked.backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained and all("lora_" in n for n in trained)
    assert trained == {n for n, p in model.named_parameters() if p.requires_grad}


def test_large_vocabulary_times_tokens_takes_the_chunked_path(monkeypatch):
    # 152k vocabulary x 8k tokens (Qwen2.5-Coder at 8k): 1.2 G logits -> chunked
    assert use_chunked_loss(152_064, 8192)
    assert not use_chunked_loss(32_016, 2 * 1024)  # CodeLlama, 2 x 1k tokens: plain
    model = build_tiny_model("llama").train()
    rows_seen = []
    head = model.get_output_embeddings()
    handle = head.register_forward_hook(lambda m, i, o: rows_seen.append(i[0].shape))
    batch = _batch()
    monkeypatch.setattr(lm_loss, "CHUNK_ELEMENTS", 128 * 4)
    plain = next_token_loss(model, *batch)  # 3 x 17 x 128 elements: under the threshold
    assert rows_seen == [torch.Size([3, 17, 32])]
    rows_seen.clear()
    monkeypatch.setattr(lm_loss, "CHUNK_THRESHOLD", 3 * 17 * 128 - 1)
    chunked = next_token_loss(model, *batch)
    handle.remove()
    assert rows_seen and all(shape[0] <= 4 and len(shape) == 2 for shape in rows_seen)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)


def test_training_loss_function_uses_the_chunked_path(monkeypatch):
    from advfusion_cli.workflows.execute import causal_lm_loss

    model = build_tiny_model("llama").train()
    input_ids, attention_mask, labels = _batch()
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "completion_mask": (labels != -100).long(),
    }
    plain, counted = causal_lm_loss(model, batch, True)
    calls = []
    real = lm_loss.chunked_loss
    monkeypatch.setattr(lm_loss, "chunked_loss", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(lm_loss, "CHUNK_THRESHOLD", 0)
    chunked, counted_again = causal_lm_loss(model, batch, True)
    assert calls == [1]
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    assert int(counted) == int(counted_again) == int((labels[:, 1:] != -100).sum())


def test_fusion_attention_pass_runs_without_kv_cache(tmp_path):
    from test_evaluate_support import make_tokenizer
    from transformers import AutoTokenizer

    from advfusion_cli.data.records import TaskExample
    from advfusion_cli.inference.attention import fusion_attention

    make_tokenizer(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = build_tiny_model("llama")
    calls = []
    model.register_forward_pre_hook(lambda m, a, k: calls.append(dict(k)), with_kwargs=True)

    class Record:
        adapter_names, place_names, token_mask = ["a"], ["mlp"], None

        def mean(self):
            return torch.ones(2, 1, 1)

        def token_counts(self):
            return torch.ones(2, 1)

    @contextmanager
    def record_fusion_attention():
        yield Record()

    loaded = SimpleNamespace(
        host=SimpleNamespace(record_fusion_attention=record_fusion_attention),
        is_fusion=True,
        model=model,
        tokenizer=tokenizer,
        spec=SimpleNamespace(
            data=SimpleNamespace(max_prompt_tokens=64, max_target_tokens=32, max_total_tokens=96)
        ),
    )
    items = [TaskExample(f"e{i}", "code-translation", "ruby", "x = 1\n", "y\n") for i in range(3)]
    fusion_attention(loaded, items, batch_size=2)
    assert len(calls) == 2 and all(call.get("use_cache") is False for call in calls)
    assert all(call.get("logits_to_keep") == 1 for call in calls)  # no (B, T, V) logits
