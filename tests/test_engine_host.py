"""AdapterHost routing against the reference equations, written out by hand.

Reference (docs: ../shared/reference/advfusion.md sections 1-3): with f the sublayer output and
h the residual entering it, a task adapter returns f + U relu(D (f + h)), a Compacter f + U'
gelu(D' f), a fusion f + W_V sum_n alpha_n z_n with alpha = softmax_n((W_Q q + b_Q).(W_K z_n +
b_K)), q = f + h (task adapters) or f (Compacter), no scaling, V after the softmax.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CONFIGS, build_tiny_model

from advfusion_cli.engine import (
    AdapterConfig,
    FusionConfig,
    attach_host,
    enable_gradient_checkpointing,
)
from advfusion_cli.errors import UserError

LANGS = ["python", "java", "ruby"]
COMPACTER = AdapterConfig.compacter(reduction_factor=8)  # bottleneck 4 on hidden 32


def ids(batch: int = 2, length: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


class Spy:
    """Captures h (the residual norm's input), f (projection output) and the place's output."""

    def __init__(self, model, host, layer: int, place: str) -> None:
        wrapper = host.place(layer, place)
        layer_module = model.get_submodule(host.layout.layers)[layer]
        norm = layer_module.get_submodule(host.layout.residual_norm_path(place))
        self.handles = [
            norm.register_forward_pre_hook(lambda m, a: setattr(self, "h", a[0].detach())),
            wrapper.base.register_forward_hook(lambda m, a, o: setattr(self, "f", o.detach())),
            wrapper.register_forward_hook(lambda m, a, o: setattr(self, "out", o.detach())),
        ]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def fused_reference(host, layer: int, place: str, x: torch.Tensor, f: torch.Tensor, masked=()):
    """Per-adapter loop of the fusion equations; masked adapters have all weights zeroed."""
    wrapper = host.place(layer, place)
    fusion = wrapper.fusion
    q = x @ fusion.query.weight.T + fusion.query.bias  # (B, T, d)
    zs, scores = [], []
    for name in host.fused_names:
        z = torch.zeros_like(x) if name in masked else wrapper.adapters[name](x)  # (B, T, d)
        k = z @ fusion.key.weight.T + fusion.key.bias
        zs.append(z)
        scores.append((q * k).sum(-1))  # (B, T)
    alpha = torch.softmax(torch.stack(scores, -1), -1)  # (B, T, N)
    values = [z @ fusion.value.weight.T for z in zs]  # V_n = W_V z_n, no bias
    out = f + sum(alpha[..., i : i + 1] * v for i, v in enumerate(values))
    return out, alpha


def test_task_adapter_returns_f_plus_delta_of_f_plus_h():
    model = build_tiny_model("llama")
    host = attach_host(model)
    host.add_adapter("python", AdapterConfig.task_adapter())
    host.activate("python")
    spy = Spy(model, host, 1, "mlp")
    model(ids())
    adapter = host.place(1, "mlp").adapters["python"]
    x = spy.f + spy.h
    delta = F.relu(x @ adapter.down.weight.T + adapter.down.bias) @ adapter.up.weight.T
    torch.testing.assert_close(spy.out, spy.f + delta + adapter.up.bias, rtol=0, atol=1e-6)
    # Pfeiffer placement: nothing after attention.
    assert "python" not in host.place(1, "attn").adapters


def test_compacter_returns_f_plus_delta_of_f_at_both_places():
    model = build_tiny_model("qwen2")
    host = attach_host(model)
    host.add_adapter("python", COMPACTER)
    host.activate("python")
    for place in ("attn", "mlp"):
        spy = Spy(model, host, 0, place)
        model(ids())
        spy.close()
        adapter = host.place(0, place).adapters["python"]
        w_down, b_down, w_up, b_up = adapter.dense_weights()
        delta = F.gelu(spy.f @ w_down + b_down) @ w_up + b_up
        torch.testing.assert_close(spy.out, spy.f + delta, rtol=0, atol=1e-6)
        assert adapter.phm_rule is host.shared_rule("python")  # one rule for every place


@pytest.mark.parametrize("kind", ["task-adapter", "compacter"])
def test_fusion_matches_per_adapter_loop(kind):
    model = build_tiny_model("mistral")
    host = attach_host(model)
    config = COMPACTER if kind == "compacter" else AdapterConfig.task_adapter()
    for lang in LANGS:
        host.add_adapter(lang, config)
    host.fuse(LANGS)
    with torch.no_grad():  # move W_V and W_Q/W_K away from their init to exercise them
        for layer in range(2):
            for place in config.places:
                fusion = host.place(layer, place).fusion
                fusion.value.weight.add_(torch.randn_like(fusion.value.weight) * 0.1)
                fusion.query.weight.normal_(std=0.5)
                fusion.key.weight.normal_(std=0.5)
                fusion.key.bias.normal_(std=0.5)
    place = config.places[-1]
    spy = Spy(model, host, 1, place)
    with host.record_fusion_attention() as record:
        model(ids())
    x = spy.f + spy.h if kind == "task-adapter" else spy.f
    expected, alpha = fused_reference(host, 1, place, x, spy.f)
    torch.testing.assert_close(spy.out, expected, rtol=0, atol=1e-5)
    place_index = record.place_names.index(place)
    torch.testing.assert_close(record.mean()[1, place_index], alpha.mean((0, 1)), atol=1e-6, rtol=0)


def perturbed_fusion_host(mask_mode: str):
    model = build_tiny_model("llama")
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang, AdapterConfig.task_adapter(init_std=0.2))
    host.fuse(LANGS, FusionConfig(mask_mode=mask_mode))
    with torch.no_grad():
        for layer in range(2):
            fusion = host.place(layer, "mlp").fusion
            fusion.query.weight.normal_(std=0.5)
            fusion.key.weight.normal_(std=0.5)
            fusion.key.bias.normal_(std=0.5)
    return model, host


def test_zero_mask_is_a_null_slot_with_key_bias_and_no_value():
    model, host = perturbed_fusion_host("zero")
    before = model(ids()).logits.detach()
    host.mask("java")
    spy = Spy(model, host, 1, "mlp")
    with host.record_fusion_attention() as record:
        masked_logits = model(ids()).logits.detach()
    expected, alpha = fused_reference(host, 1, "mlp", spy.f + spy.h, spy.f, masked=("java",))
    torch.testing.assert_close(spy.out, expected, rtol=0, atol=1e-5)
    # The null slot keeps softmax mass exp(Q.b_K)/sum: its key is b_K, its value 0.
    assert record.mean()[1, 0, 1] > 0.01
    torch.testing.assert_close(record.mean()[1, 0], alpha.mean((0, 1)), atol=1e-6, rtol=0)
    assert not torch.equal(masked_logits, before)
    host.unmask("java")
    assert torch.equal(model(ids()).logits.detach(), before)  # AdvFusion phase 2 restores it
    assert host.masked == []


def test_remove_mask_takes_the_slot_out_of_the_softmax():
    model, host = perturbed_fusion_host("remove")
    before = model(ids()).logits.detach()
    host.mask("python")
    spy = Spy(model, host, 0, "mlp")
    with host.record_fusion_attention() as record:
        model(ids())
    assert torch.all(record.mean()[:, :, 0] == 0)
    torch.testing.assert_close(record.mean().sum(-1), torch.ones(2, 1))
    wrapper = host.place(0, "mlp")
    x, f = spy.f + spy.h, spy.f
    fusion = wrapper.fusion
    q = x @ fusion.query.weight.T + fusion.query.bias
    zs = [wrapper.adapters[n](x) for n in ("java", "ruby")]
    scores = torch.stack(
        [(q * (z @ fusion.key.weight.T + fusion.key.bias)).sum(-1) for z in zs], -1
    )
    alpha = torch.softmax(scores, -1)
    expected = f + (alpha[..., :1] * zs[0] + alpha[..., 1:] * zs[1]) @ fusion.value.weight.T
    torch.testing.assert_close(spy.out, expected, rtol=0, atol=1e-5)
    host.mask("java")
    with pytest.raises(UserError, match="every adapter"):
        host.mask("ruby")
    host.unmask("java")
    host.unmask("python")
    assert torch.equal(model(ids()).logits.detach(), before)


def test_record_honours_token_mask_and_counts_tokens():
    model, host = perturbed_fusion_host("zero")
    input_ids = ids(2, 5)
    token_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    spy = Spy(model, host, 0, "mlp")
    with host.record_fusion_attention(token_mask=token_mask) as record:
        model(input_ids)
    _, alpha = fused_reference(host, 0, "mlp", spy.f + spy.h, spy.f)
    weights = token_mask.float().unsqueeze(-1)
    expected = (alpha * weights).sum((0, 1)) / weights.sum()
    torch.testing.assert_close(record.mean()[0, 0], expected, atol=1e-6, rtol=0)
    assert record.token_counts().tolist() == [[8.0], [8.0]]
    assert record.adapter_names == LANGS and record.place_names == ["mlp"]
    assert host.routing.recorder is None  # recording stops with the block
    with pytest.raises(UserError, match="No fusion forward"):
        with host.record_fusion_attention() as empty:
            pass
        empty.mean()


def test_fusion_regularization_is_weighted_sum_over_places():
    model = build_tiny_model("llama")
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang, COMPACTER)
    host.fuse(LANGS, FusionConfig(regularization_weight=0.5))
    expected = 0.0
    with torch.no_grad():
        for layer in range(2):
            for place in ("attn", "mlp"):
                weight = host.place(layer, place).fusion.value.weight
                weight.add_(torch.randn_like(weight) * 0.1)
                expected += (torch.eye(32) - weight).pow(2).sum().item()
    torch.testing.assert_close(
        host.fusion_regularization().item(), 0.5 * expected, rtol=1e-5, atol=0
    )


def greedy_without_cache(model, input_ids: torch.Tensor, steps: int) -> torch.Tensor:
    sequence = input_ids
    for _ in range(steps):
        with torch.no_grad():
            logits = model(sequence, use_cache=False).logits[:, -1]
        sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    return sequence


@pytest.mark.parametrize("arch", ["llama", "gpt_bigcode", "gpt_neox"])
@pytest.mark.parametrize("mode", ["adapter", "fusion"])
def test_kv_cache_generate_equals_no_cache_greedy(arch, mode):
    model = build_tiny_model(arch)
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang, AdapterConfig.task_adapter(init_std=0.3))
    if mode == "fusion":
        host.fuse(LANGS)
        host.mask("ruby")
    else:
        host.activate("java")
    prompt = ids(2, 4)
    expected = greedy_without_cache(model, prompt, 6)
    with host.record_fusion_attention() if mode == "fusion" else torch.no_grad() as record:
        generated = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=6,
            min_new_tokens=6,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )
    assert torch.equal(generated, expected)
    if mode == "fusion":  # prompt pass (8 tokens) + 5 single-token steps (2 rows each)
        assert record.token_counts()[0, 0].item() == 8 + 5 * 2


@pytest.mark.parametrize("arch", list(TINY_CONFIGS))
@pytest.mark.parametrize("mode", ["task-adapter", "fusion-compacter"])
def test_gradient_checkpointing_gives_the_same_gradients(arch, mode):
    def gradients(checkpointing: bool) -> tuple[list[torch.Tensor], int]:
        model = build_tiny_model(arch)
        host = attach_host(model)
        if mode == "task-adapter":
            torch.manual_seed(5)
            host.add_adapter("python", AdapterConfig.task_adapter())
            params = host.freeze_for_adapter_training("python")
        else:
            torch.manual_seed(5)
            for lang in LANGS:
                host.add_adapter(lang, COMPACTER)
            host.fuse(LANGS)
            params = host.freeze_for_fusion_training()
        if checkpointing:
            enable_gradient_checkpointing(model)
        calls = []
        # A pre-hook: checkpoint recomputation stops early, right after the last saved tensor.
        host.place(0, "mlp").register_forward_pre_hook(lambda *_: calls.append(1))
        model.train()
        torch.manual_seed(6)  # the same dropout masks in both runs
        model(ids()).logits.square().mean().backward()
        return [p.grad.clone() for p in params], len(calls)

    plain, plain_calls = gradients(False)
    checkpointed, checkpointed_calls = gradients(True)
    assert (plain_calls, checkpointed_calls) == (1, 2)  # the layer really was recomputed
    assert sum(a.abs().sum() for a in plain) > 0
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_adapter_dtype_is_independent_of_base_storage():
    model = build_tiny_model("llama").to(torch.bfloat16)
    base = model(ids()).logits
    host = attach_host(model)
    assert host.adapter_dtype == torch.float32  # CPU default
    host.add_adapter("python", AdapterConfig.task_adapter())
    assert all(p.dtype == torch.float32 for p in host.adapter_parameters("python"))
    host.activate("python")
    out = model(ids()).logits
    assert out.dtype == torch.bfloat16 and not torch.equal(out, base)
    with torch.no_grad():
        for _, _, adapter in host.adapters_of("python"):
            adapter.up.weight.zero_()
            adapter.up.bias.zero_()
    assert torch.equal(model(ids()).logits, base)  # fp32 round trip of a bf16 f is exact
    host.detach()
    bf16_host = attach_host(model, adapter_dtype="bfloat16")
    bf16_host.add_adapter("java", AdapterConfig.task_adapter())
    assert all(p.dtype == torch.bfloat16 for p in bf16_host.adapter_parameters("java"))


def test_attach_is_idempotent_and_detach_is_final():
    model = build_tiny_model("qwen2")
    host = attach_host(model)
    assert attach_host(model) is host and attach_host(model, torch.float32) is host
    with pytest.raises(UserError, match="already attached"):
        attach_host(model, "bfloat16")
    host.detach()
    with pytest.raises(UserError, match="detached"):
        host.add_adapter("python")
    with pytest.raises(UserError, match="detached"):
        host.detach()
    assert attach_host(model) is not host


def test_mode_switches_and_errors():
    model = build_tiny_model("llama")
    host = attach_host(model)
    with pytest.raises(UserError, match="no adapters have been added"):
        host.activate("python")
    for lang in LANGS:
        host.add_adapter(lang)
    host.add_adapter("go", COMPACTER)
    with pytest.raises(UserError, match="Did you mean 'python'"):
        host.activate("pyhton")
    with pytest.raises(UserError, match="already exists"):
        host.add_adapter("python")
    with pytest.raises(UserError, match="Invalid adapter name"):
        host.add_adapter("a.b")
    with pytest.raises(UserError, match="No fusion yet"):
        host.fusion_regularization()
    with pytest.raises(UserError, match="share kind"):
        host.fuse(["python", "go"])
    with pytest.raises(UserError, match="repeat"):
        host.fuse(["python", "python"])
    host.fuse(LANGS)
    with pytest.raises(UserError, match="Unknown fused adapter 'go'"):
        host.mask("go")
    with pytest.raises(UserError, match="part of the current fusion"):
        host.remove_adapter("java")
    fused = model(ids()).logits.detach()
    host.activate(None)
    assert host.mode == "none"
    with pytest.raises(UserError, match="needs fusion mode"), host.record_fusion_attention():
        pass
    host.activate("go")
    assert (host.mode, host.active) == ("adapter", "go")
    host.activate_fusion()
    assert host.mode == "fusion" and torch.equal(model(ids()).logits.detach(), fused)
    host.remove_adapter("go")
    assert host.adapter_names == LANGS


def test_fusion_stacks_follow_adapter_weights_when_refused():
    model = build_tiny_model("llama")
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang)
    host.fuse(LANGS)
    before = model(ids()).logits.detach()
    with torch.no_grad():  # e.g. the adapter was trained further in single-adapter mode
        host.place(1, "mlp").adapters["java"].up.bias.add_(1.0)
    assert torch.equal(model(ids()).logits.detach(), before)  # stacks are frozen copies
    host.activate("java")
    host.activate_fusion()  # re-entering fusion refreshes the stacks
    assert not torch.equal(model(ids()).logits.detach(), before)


def test_temperature_schedule_steps_in_training_only():
    model = build_tiny_model("llama")
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang)
    host.fuse(LANGS, FusionConfig(temperature=True))
    fusion = host.place(0, "mlp").fusion
    assert fusion.temperature == 50.0
    model(ids())
    assert fusion.temperature_steps == 0
    model.train()
    model(ids())
    model(ids())
    assert fusion.temperature_steps == 2 and fusion.temperature == pytest.approx(49.9)


def test_new_modules_follow_the_model_train_mode():
    model = build_tiny_model("gpt_neox")  # eval mode
    host = attach_host(model)
    for lang in LANGS:
        host.add_adapter(lang, COMPACTER)
    host.fuse(LANGS)
    assert not any(module.training for module in model.modules())
    model.train()
    host.add_adapter("go", COMPACTER)
    assert all(module.training for module in model.modules())


def test_authors_embedding_quirk_is_an_option_off_by_default():
    model = build_tiny_model("llama")
    host = attach_host(model)
    host.add_adapter("python")
    embeddings = model.get_input_embeddings().weight
    host.freeze_for_adapter_training("python")
    assert not embeddings.requires_grad
    params = host.freeze_for_adapter_training("python", train_input_embeddings=True)
    assert embeddings.requires_grad and params[-1] is embeddings
    assert len(params) == len(host.adapter_parameters("python")) + 1
