"""Adapter, PHM, stack and fusion modules against hand-written references of the equations.

Every reference below follows /work/shared/reference/advfusion.md literally (§1 adapters,
§2 fusion, §3 the AdvFusion null slot) with plain einsum and per-adapter Python loops, so
the batched/folded implementations are checked against the maths, not against themselves.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from advfusion_cli.engine.modules import (
    Adapter,
    AdapterConfig,
    AdapterStack,
    ConfigError,
    FusionConfig,
    FusionLayer,
    new_phm_rule,
    phm_weight,
)
from advfusion_cli.engine.modules.fusion import _RecomputedMix
from advfusion_cli.errors import UserError

D = 16  # hidden size of every test module
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def exact_gelu(x: Tensor) -> Tensor:
    # GELU(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the erf form Compacter uses (§1).
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def kron_sum(rule: Tensor, s: Tensor, t: Tensor) -> Tensor:
    # Compacter (§1): W = sum_{i=1..n} A_i ⊗ B_i with B_i = s_i t_i^T, one kron per i.
    return sum(torch.kron(rule[i], s[i] @ t[i]) for i in range(rule.shape[0]))


def reference_delta(adapter: Adapter, x: Tensor) -> Tensor:
    # §1: delta(x) = up(act(down(x))), weights applied as y = x W + b, from the raw parameters.
    if adapter.kind == "task-adapter":
        hidden = torch.einsum("btd,kd->btk", x, adapter.down.weight) + adapter.down.bias
        hidden = torch.relu(hidden)
        return torch.einsum("btk,dk->btd", hidden, adapter.up.weight) + adapter.up.bias
    rule_down = adapter.phm_rule if adapter.phm_rule is not None else adapter.down_rule
    rule_up = adapter.phm_rule if adapter.phm_rule is not None else adapter.up_rule
    w_down = kron_sum(rule_down, adapter.down_s, adapter.down_t)
    w_up = kron_sum(rule_up, adapter.up_s, adapter.up_t)
    hidden = exact_gelu(x @ w_down + adapter.down_bias)
    return hidden @ w_up + adapter.up_bias


def reference_fusion(
    fusion: FusionLayer,
    query: Tensor,
    z: Tensor,
    f: Tensor,
    temperature: float = 1.0,
    removed: list[int] = (),
) -> tuple[Tensor, Tensor]:
    # §2 literally, one adapter at a time: Q = W_Q q + b_Q, K_n = W_K z_n + b_K,
    # V_n = W_V z_n (no bias), alpha = softmax_n(Q.K_n / T) (no 1/sqrt(d)),
    # out = f + sum_n alpha_n V_n. Removed slots get a -inf logit.
    w_q, b_q = fusion.query.weight, fusion.query.bias
    w_k, b_k = fusion.key.weight, fusion.key.bias
    w_v = fusion.value.weight
    q = torch.einsum("rd,btd->btr", w_q, query) + b_q
    scores, values = [], []
    for n in range(z.shape[2]):
        key_n = torch.einsum("rd,btd->btr", w_k, z[:, :, n]) + b_k
        values.append(torch.einsum("ed,btd->bte", w_v, z[:, :, n]))
        score = (q * key_n).sum(-1) / temperature
        scores.append(torch.full_like(score, -math.inf) if n in removed else score)
    alpha = torch.softmax(torch.stack(scores, dim=-1), dim=-1)  # (B, T, N)
    out = f + sum(alpha[..., n, None] * values[n] for n in range(len(values)))
    return out, alpha


def make_adapters(config: AdapterConfig, n: int, hidden: int = D) -> list[Adapter]:
    if config.kind == "compacter" and config.shared_phm_rule:
        return [Adapter(hidden, config, new_phm_rule(config)) for _ in range(n)]
    return [Adapter(hidden, config) for _ in range(n)]


def randomize_fusion(fusion: FusionLayer, std: float = 0.3) -> FusionLayer:
    """Weights large enough that alpha is far from uniform and every bias matters."""
    with torch.no_grad():
        for parameter in fusion.parameters():
            parameter.normal_(std=std)
    return fusion


def compacter_config(**overrides) -> AdapterConfig:
    # reduction 4 keeps D=16 divisible by phm_dim 4 on both sides (16 -> 4 -> 16).
    return AdapterConfig.compacter(reduction_factor=4, **overrides)


# ----------------------------------------------------------------------------- adapters


def test_task_adapter_delta_and_init():
    config = AdapterConfig.task_adapter(reduction_factor=4, init_std=0.05)
    adapter = Adapter(256, config)
    assert [name for name, _ in adapter.named_parameters()] == [
        "down.weight",
        "down.bias",
        "up.weight",
        "up.bias",
    ]
    assert torch.equal(adapter.down.bias, torch.zeros(64))
    assert torch.equal(adapter.up.bias, torch.zeros(256))
    assert adapter.down.weight.std().item() == pytest.approx(0.05, rel=0.05)
    with torch.no_grad():
        adapter.down.bias.normal_()
        adapter.up.bias.normal_()
    x = torch.randn(2, 3, 256)
    torch.testing.assert_close(adapter(x), reference_delta(adapter, x), **TOL)


@pytest.mark.parametrize("shared", [True, False])
def test_compacter_delta_matches_kron_equation(shared: bool):
    config = compacter_config(phm_rank=2, shared_phm_rule=shared, phm_rule_init_std=0.5)
    rule = new_phm_rule(config) if shared else None
    adapter = Adapter(D, config, rule)
    names = {name for name, _ in adapter.named_parameters()}
    expected = {"down_s", "down_t", "down_bias", "up_s", "up_t", "up_bias"}
    assert names == (expected if shared else expected | {"down_rule", "up_rule"})
    assert adapter.down_s.shape == (4, D // 4, 2) and adapter.down_t.shape == (4, 2, 4 // 4)
    with torch.no_grad():
        adapter.down_bias.normal_()
        adapter.up_bias.normal_()
    x = torch.randn(2, 3, D)
    torch.testing.assert_close(adapter(x), reference_delta(adapter, x), **TOL)


def test_shared_rule_is_shared_by_places_and_trains():
    config = compacter_config(phm_rule_init_std=0.5)
    rule = new_phm_rule(config)
    attn, mlp = Adapter(D, config, rule), Adapter(D, config, rule)
    assert attn.phm_rule is rule and mlp.phm_rule is rule
    (attn(torch.randn(1, 2, D)).sum() + mlp(torch.randn(1, 2, D)).sum()).backward()
    assert rule.grad is not None and rule.grad.abs().sum() > 0


def test_phm_weight_equals_explicit_kron_loop():
    rule = torch.randn(3, 3, 3)
    s, t = torch.randn(3, 4, 2), torch.randn(3, 2, 5)  # in 12, out 15, rank 2
    weight = phm_weight(rule, s, t)
    assert weight.shape == (12, 15)
    torch.testing.assert_close(weight, kron_sum(rule, s, t), **TOL)


def test_compacter_init_follows_glorot_and_rule_std():
    config = AdapterConfig.compacter(reduction_factor=2, phm_dim=4, phm_rule_init_std=1e-4)
    adapter = Adapter(64, config, new_phm_rule(config))
    # Glorot-uniform per 2-D factor: |w| <= sqrt(6 / (fan_in + fan_out)).
    for factor in (adapter.down_s, adapter.down_t, adapter.up_s, adapter.up_t):
        rows, cols = factor.shape[1:]
        bound = math.sqrt(6.0 / (rows + cols))
        assert factor.abs().max() <= bound
        assert factor.abs().max() > 0.5 * bound
    big_rule = new_phm_rule(AdapterConfig.compacter(phm_dim=10))
    assert big_rule.shape == (10, 10, 10)
    assert big_rule.std().item() == pytest.approx(1e-4, rel=0.1)


def test_compacter_sizes_not_divisible_by_phm_dim_name_them():
    config = AdapterConfig.compacter(reduction_factor=2)  # 30 -> 15 rounded to 16, phm_dim 4
    with pytest.raises(ValueError, match=r"30 -> 16 .*phm_dim 4"):
        Adapter(30, config, new_phm_rule(config))


def test_compacter_bottleneck_rounds_up_to_a_multiple_of_phm_dim():
    config = AdapterConfig.compacter()  # reduction 32, phm_dim 4
    assert config.bottleneck_size(4096) == 128  # real models: unchanged
    assert config.bottleneck_size(192) == 8  # 6 is not divisible by 4: rounded up
    assert AdapterConfig.task_adapter().bottleneck_size(200) == 12  # task adapters never round
    adapter = Adapter(192, config, new_phm_rule(config))
    assert adapter(torch.randn(2, 192)).shape == (2, 192)


def test_compacter_rule_arguments_are_checked():
    shared = compacter_config()
    own = compacter_config(shared_phm_rule=False)
    with pytest.raises(ConfigError, match="phm_rule=new_phm_rule"):
        Adapter(D, shared)
    with pytest.raises(ConfigError, match="shared_phm_rule is false"):
        Adapter(D, own, new_phm_rule(own))
    with pytest.raises(ConfigError, match=r"expected \(4, 4, 4\)"):
        Adapter(D, shared, torch.nn.Parameter(torch.zeros(2, 2, 2)))
    with pytest.raises(ConfigError, match="no phm_rule"):
        Adapter(D, AdapterConfig.task_adapter(), new_phm_rule(shared))


@pytest.mark.parametrize(
    "config", [AdapterConfig.task_adapter(reduction_factor=4), compacter_config()]
)
def test_dense_weights_reproduce_forward(config: AdapterConfig):
    adapter = make_adapters(config, 1)[0]
    w_down, b_down, w_up, b_up = adapter.dense_weights()
    assert w_down.shape == (D, 4) and b_down.shape == (4,)
    assert w_up.shape == (4, D) and b_up.shape == (D,)
    x = torch.randn(2, 3, D)
    act = torch.relu if config.kind == "task-adapter" else exact_gelu
    torch.testing.assert_close(adapter(x), act(x @ w_down + b_down) @ w_up + b_up, **TOL)


# -------------------------------------------------------------------------------- stack


def reference_stack(adapters: list[Adapter], x: Tensor) -> Tensor:
    # z_n = delta_n(x) for each adapter in turn (§2: z_n is adapter n's delta).
    return torch.stack([reference_delta(adapter, x) for adapter in adapters], dim=2)


def test_stack_equals_per_adapter_loop_with_mixed_bottlenecks():
    adapters = [
        Adapter(D, AdapterConfig.task_adapter(reduction_factor=factor)) for factor in (4, 8, 2)
    ]
    for adapter in adapters:
        with torch.no_grad():
            for parameter in adapter.parameters():
                parameter.normal_(std=0.3)
    stack = AdapterStack.from_adapters(adapters)
    assert stack.n_adapters == 3 and stack.bottleneck_size == 8
    assert list(stack.parameters()) == []  # frozen: buffers only
    x = torch.randn(2, 5, D)
    z = stack(x)
    assert z.shape == (2, 5, 3, D)
    torch.testing.assert_close(z, reference_stack(adapters, x), **TOL)


def test_compacter_stack_equals_per_adapter_loop():
    adapters = make_adapters(compacter_config(phm_rule_init_std=0.5), 4)
    x = torch.randn(3, 2, D)
    torch.testing.assert_close(
        AdapterStack.from_adapters(adapters)(x), reference_stack(adapters, x), **TOL
    )


def test_stack_is_a_detached_copy():
    adapters = make_adapters(AdapterConfig.task_adapter(reduction_factor=4), 2)
    stack = AdapterStack.from_adapters(adapters)
    x = torch.randn(1, 2, D)
    before = stack(x)
    with torch.no_grad():
        adapters[0].up.bias.add_(1.0)
    assert torch.equal(stack(x), before)
    assert not any(buffer.requires_grad for buffer in stack.buffers())


def test_stack_rejects_incompatible_adapters():
    relu = Adapter(D, AdapterConfig.task_adapter(reduction_factor=4))
    tanh = Adapter(D, AdapterConfig.task_adapter(reduction_factor=4, activation="tanh"))
    wide = Adapter(2 * D, AdapterConfig.task_adapter(reduction_factor=4))
    with pytest.raises(ConfigError, match="activations 'relu' and 'tanh'"):
        AdapterStack.from_adapters([relu, tanh])
    with pytest.raises(ConfigError, match="hidden sizes 16 and 32"):
        AdapterStack.from_adapters([relu, wide])
    with pytest.raises(ValueError, match="at least one"):
        AdapterStack.from_adapters([])
    with pytest.raises(IndexError, match="index 1"):
        AdapterStack.from_adapters([relu]).set_gate(1, 0.0)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "silu", "tanh"])
def test_gate_zero_equals_zeroing_the_adapter(activation: str):
    config = AdapterConfig.task_adapter(reduction_factor=4, activation=activation)
    adapters = make_adapters(config, 3)
    for adapter in adapters:
        with torch.no_grad():
            adapter.down.bias.normal_()
            adapter.up.bias.normal_()
    gated = AdapterStack.from_adapters(adapters)
    gated.set_gate(1, 0.0)
    with torch.no_grad():  # §3: zero every weight and bias of the target adapter
        for parameter in adapters[1].parameters():
            parameter.zero_()
    zeroed = AdapterStack.from_adapters(adapters)
    x = torch.randn(2, 4, D)
    z_gated, z_zeroed = gated(x), zeroed(x)
    assert torch.equal(z_gated, z_zeroed)
    assert torch.equal(z_gated[:, :, 1], torch.zeros(2, 4, D))
    fusion = randomize_fusion(FusionLayer(D, 3))
    assert torch.equal(fusion(x, z_gated, x)[0], fusion(x, z_zeroed, x)[0])
    gated.set_gate(1, 1.0)  # unmasking restores the original (pre-zeroing) delta
    assert gated(x)[:, :, 1].abs().sum() > 0


# ------------------------------------------------------------------------------- fusion


def fusion_inputs(n: int = 3, batch: int = 2, tokens: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    return (
        torch.randn(batch, tokens, D),
        torch.randn(batch, tokens, n, D),
        torch.randn(batch, tokens, D),
    )


def test_fusion_init():
    fusion = FusionLayer(256, 2)
    assert fusion.value.bias is None
    assert torch.equal(fusion.query.bias, torch.zeros(256))
    assert torch.equal(fusion.key.bias, torch.zeros(256))
    assert fusion.query.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert fusion.key.weight.std().item() == pytest.approx(0.02, rel=0.05)
    expected_value = torch.full((256, 256), 1e-6).fill_diagonal_(1.0)
    assert torch.equal(fusion.value.weight, expected_value)
    assert FusionLayer(D, 2, FusionConfig(value_identity_init=False)).value.weight.abs().max() < 0.2


@pytest.mark.parametrize("query_rank", [None, 5])
def test_fusion_equals_reference_loop(query_rank: int | None):
    # The reference applies W_K and W_V to each z_n before the softmax-weighted sum;
    # the layer folds W_K into the query and applies W_V once after: both must agree.
    fusion = randomize_fusion(FusionLayer(D, 3, FusionConfig(query_rank=query_rank)))
    query, z, f = fusion_inputs()
    out, alpha = fusion(query, z, f)
    ref_out, ref_alpha = reference_fusion(fusion, query, z, f)
    assert out.shape == (2, 5, D) and alpha.shape == (2, 5, 3)
    torch.testing.assert_close(alpha, ref_alpha, **TOL)
    torch.testing.assert_close(out, ref_out, **TOL)
    assert alpha.max() > 0.6  # far from uniform: the comparison is not vacuous


def test_value_after_softmax_equals_value_before():
    fusion = randomize_fusion(FusionLayer(D, 4))
    query, z, f = fusion_inputs(n=4)
    _, alpha = fusion(query, z, f)
    w_v = fusion.value.weight
    before = torch.einsum("btn,btne->bte", alpha, torch.einsum("ed,btnd->btne", w_v, z))
    after = torch.einsum("ed,btd->bte", w_v, torch.einsum("btn,btnd->btd", alpha, z))
    torch.testing.assert_close(fusion(query, z, f)[0], f + before, **TOL)
    torch.testing.assert_close(before, after, **TOL)


def test_zeroed_slot_is_a_null_slot():
    adapters = make_adapters(AdapterConfig.task_adapter(reduction_factor=4), 3)
    stack = AdapterStack.from_adapters(adapters)
    stack.set_gate(0, 0.0)
    fusion = randomize_fusion(FusionLayer(D, 3))
    x = torch.randn(2, 5, D)
    z = stack(x)
    out, alpha = fusion(x, z, x)
    assert torch.equal(z[:, :, 0], torch.zeros(2, 5, D))
    # The null slot's score is Q.b_K, so its mass is exp(Q.b_K) / sum_m exp(Q.K_m) (§3).
    q = x @ fusion.query.weight.T + fusion.query.bias
    keys = z @ fusion.key.weight.T + fusion.key.bias  # (B, T, N, d)
    denominator = torch.exp((q.unsqueeze(2) * keys).sum(-1)).sum(-1)
    expected_mass = torch.exp(q @ fusion.key.bias) / denominator
    torch.testing.assert_close(alpha[..., 0], expected_mass, **TOL)
    assert alpha[..., 0].min() > 0.01
    # ... and it adds exactly nothing: out = f + W_V sum_{n != 0} alpha_n z_n.
    others = torch.einsum("btn,btnd->btd", alpha[..., 1:], z[:, :, 1:])
    torch.testing.assert_close(out, x + others @ fusion.value.weight.T, **TOL)


def test_removed_slot_gets_exactly_zero_mass():
    fusion = randomize_fusion(FusionLayer(D, 3, FusionConfig(mask_mode="remove")))
    query, z, f = fusion_inputs()
    removed = torch.tensor([False, True, False])
    out, alpha = fusion(query, z, f, removed=removed)
    assert torch.equal(alpha[..., 1], torch.zeros(2, 5))
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, 5), **TOL)
    ref_out, ref_alpha = reference_fusion(fusion, query, z, f, removed=[1])
    torch.testing.assert_close(alpha, ref_alpha, **TOL)
    torch.testing.assert_close(out, ref_out, **TOL)


def test_all_removed_and_bad_masks_are_errors():
    fusion = FusionLayer(D, 2)
    query, z, f = fusion_inputs(n=2)
    with pytest.raises(ConfigError, match="Every adapter slot is removed"):
        fusion(query, z, f, removed=torch.tensor([True, True]))
    with pytest.raises(ValueError, match=r"bool tensor of shape \(2,\)"):
        fusion(query, z, f, removed=torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="2 slots, got 3"):
        fusion(query, torch.randn(2, 5, 3, D), f)
    with pytest.raises(ConfigError, match="query_rank 17 exceeds"):
        FusionLayer(D, 2, FusionConfig(query_rank=17))


def test_temperature_schedule():
    fusion = randomize_fusion(FusionLayer(D, 3, FusionConfig(temperature=True)))
    query, z, f = fusion_inputs(batch=1, tokens=2)
    fusion.train()
    assert fusion.temperature == 50.0
    _, alpha = fusion(query, z, f)  # the first training forward uses T = 50 ...
    torch.testing.assert_close(alpha, reference_fusion(fusion, query, z, f, 50.0)[1], **TOL)
    assert fusion.temperature == pytest.approx(49.95)  # ... then T falls by 50 / 1000
    fusion.eval()
    _, alpha = fusion(query, z, f)  # evaluation uses the current T and does not advance it
    torch.testing.assert_close(alpha, reference_fusion(fusion, query, z, f, 49.95)[1], **TOL)
    assert fusion.temperature == pytest.approx(49.95)
    fusion.train()
    seen = [fusion.temperature]
    with torch.no_grad():
        for _ in range(1000):
            fusion(query, z, f)
            seen.append(fusion.temperature)
    assert seen[1] == pytest.approx(49.90)
    assert seen[979] == pytest.approx(1.0)  # 50 - 980 * 0.05 = 1: the floor
    assert seen[-1] == 1.0 and min(seen) == 1.0

    fixed = FusionLayer(D, 3).train()
    fixed(query, z, f)
    assert fixed.temperature == 1.0


def test_temperature_advances_once_per_step_under_gradient_checkpointing():
    from torch.utils.checkpoint import checkpoint

    fusion = randomize_fusion(FusionLayer(D, 3, FusionConfig(temperature=True))).train()
    query, z, f = fusion_inputs(batch=1, tokens=2)
    query.requires_grad_(True)
    out, _ = checkpoint(fusion, query, z, f, use_reentrant=False)
    out.sum().backward()  # the recompute inside backward must reuse T = 50, not step again
    assert fusion.temperature == pytest.approx(49.95)
    plain = randomize_fusion(FusionLayer(D, 3, FusionConfig(temperature=True))).train()
    plain.load_state_dict(fusion.state_dict())
    query_plain = query.detach().clone().requires_grad_(True)
    plain(query_plain, z, f)[0].sum().backward()
    torch.testing.assert_close(query.grad, query_plain.grad, **TOL)  # same T in both passes


def test_regularization():
    fusion = FusionLayer(D, 2)
    # At init W_V = I + 1e-6 off the diagonal: ||I - W_V||^2 = (d^2 - d) * 1e-12.
    assert fusion.regularization().item() == pytest.approx((D * D - D) * 1e-12, rel=1e-3)
    randomize_fusion(fusion)
    w_v = fusion.value.weight
    expected = sum(((1.0 if i == j else 0.0) - w_v[i, j]) ** 2 for i in range(D) for j in range(D))
    torch.testing.assert_close(fusion.regularization(), expected, **TOL)


def test_identity_init_outputs_f_plus_weighted_deltas():
    fusion = FusionLayer(D, 3)
    query, z, f = fusion_inputs()
    out, alpha = fusion(query, z, f)
    torch.testing.assert_close(out, f + torch.einsum("btn,btnd->btd", alpha, z), **TOL)


def test_only_fusion_parameters_receive_gradients():
    adapters = make_adapters(AdapterConfig.task_adapter(reduction_factor=4), 3)
    for adapter in adapters:
        with torch.no_grad():
            for parameter in adapter.parameters():
                parameter.normal_(std=0.3)  # deltas of order 1, so every gradient is visible
        adapter.requires_grad_(False)
    stack = AdapterStack.from_adapters(adapters)
    fusion = randomize_fusion(FusionLayer(D, 3), std=0.1)
    x = torch.randn(2, 5, D, requires_grad=True)
    out, _ = fusion(x, stack(x), x)
    (out * torch.randn_like(out)).sum().backward()
    assert all(parameter.grad is None for adapter in adapters for parameter in adapter.parameters())
    grads = {name: parameter.grad for name, parameter in fusion.named_parameters()}
    assert set(grads) == {"query.weight", "query.bias", "key.weight", "key.bias", "value.weight"}
    for name in ("query.weight", "query.bias", "key.weight", "value.weight"):
        assert grads[name].abs().max() > 1e-4, name
    # b_K adds Q.b_K to every slot's score alike; softmax ignores a shared shift, so its
    # gradient is exactly 0 in exact arithmetic (here: rounding only). Same in AdapterFusion.
    assert grads["key.bias"] is not None
    assert grads["key.bias"].abs().max() < 1e-6 * grads["key.weight"].abs().max() + 1e-7
    assert x.grad is not None and x.grad.abs().max() > 0


# ------------------------------------------------------------------ memory-friendly path


@pytest.mark.parametrize("removed", [None, [False, False, True]])
@pytest.mark.parametrize("temperature", [False, True])
def test_forward_from_stack_matches_forward(removed, temperature):
    adapters = make_adapters(AdapterConfig.task_adapter(reduction_factor=4), 3)
    stack = AdapterStack.from_adapters(adapters)
    stack.set_gate(0, 0.0)
    mask = None if removed is None else torch.tensor(removed)
    results = []
    for path in ("forward", "forward_from_stack"):
        torch.manual_seed(1)
        fusion = randomize_fusion(FusionLayer(D, 3, FusionConfig(temperature=temperature)))
        fusion.train()
        query = torch.randn(2, 5, D, requires_grad=True)
        x = torch.randn(2, 5, D, requires_grad=True)
        f = torch.randn(2, 5, D, requires_grad=True)
        if path == "forward":
            out, alpha = fusion(query, stack(x), f, mask)
        else:
            out, alpha = fusion.forward_from_stack(query, x, stack, f, mask)
        weights = torch.randn_like(out), torch.randn_like(alpha)
        ((out * weights[0]).sum() + (alpha * weights[1]).sum()).backward()
        grads = [t.grad for t in (query, x, f, *fusion.parameters())]
        results.append((out, alpha, grads, fusion.temperature))
    (out_a, alpha_a, grads_a, t_a), (out_b, alpha_b, grads_b, t_b) = results
    torch.testing.assert_close(out_b, out_a, **TOL)
    torch.testing.assert_close(alpha_b, alpha_a, **TOL)
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(grad_b, grad_a, atol=1e-5, rtol=1e-4)
    assert t_a == t_b


@pytest.mark.parametrize("activation", ["gelu", "tanh", "silu"])
def test_recomputed_mix_gradcheck(activation: str):
    config = AdapterConfig.task_adapter(reduction_factor=2, activation=activation)
    adapters = [Adapter(4, config).double() for _ in range(3)]
    stack = AdapterStack.from_adapters(adapters)
    stack.set_gate(2, 0.5)
    tensors = stack.stacked_tensors()
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    query_key = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    for removed, temperature in ((None, 1.0), (torch.tensor([True, False, False]), 3.0)):

        def mix(x, query_key, shift, removed=removed, temperature=temperature):
            return _RecomputedMix.apply(
                x, query_key, shift, removed, temperature, activation, *tensors
            )

        assert torch.autograd.gradcheck(mix, (x, query_key, shift))


def test_forward_from_stack_keeps_no_per_adapter_activations():
    n, batch, tokens = 4, 2, 8
    stack = AdapterStack.from_adapters(
        make_adapters(AdapterConfig.task_adapter(reduction_factor=4), n)
    )
    fusion = FusionLayer(D, n)
    x = torch.randn(batch, tokens, D, requires_grad=True)
    # Weights, buffers and the input are alive anyway; count only what backward adds.
    alive = {t.untyped_storage().data_ptr() for t in (x, *fusion.parameters(), *stack.buffers())}

    def saved_activation_sizes(run) -> list[int]:
        sizes: list[int] = []

        def pack(tensor: Tensor) -> Tensor:
            if tensor.untyped_storage().data_ptr() not in alive:
                sizes.append(tensor.numel())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run()
        return sizes

    plain = saved_activation_sizes(lambda: fusion(x, stack(x), x))
    recomputed = saved_activation_sizes(lambda: fusion.forward_from_stack(x, x, stack, x))
    z_size = batch * tokens * n * D
    assert max(plain) >= z_size  # the plain path stores z (N*d per token) ...
    assert max(recomputed) < z_size  # ... this one does not
    assert sum(recomputed) < sum(plain) / 2


def test_forward_from_stack_trains_under_bf16_autocast():
    # CUDA training runs the forward under bf16 autocast with fp32 adapters and fusion (the
    # workflows' default); the recomputed path must give the plain path's result and
    # gradients there too (CPU autocast takes the same code path).
    adapters = make_adapters(AdapterConfig.task_adapter(reduction_factor=4), 3)
    stack = AdapterStack.from_adapters(adapters)
    stack.set_gate(1, 0.0)
    fusion = randomize_fusion(FusionLayer(D, 3), std=0.1)
    x = torch.randn(2, 5, D)
    results = []
    for path in ("forward", "forward_from_stack"):
        fusion.zero_grad()
        leaf = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if path == "forward":
                out, alpha = fusion(leaf, stack(leaf), leaf)
            else:
                out, alpha = fusion.forward_from_stack(leaf, leaf, stack, leaf)
        weights = torch.linspace(-1, 1, out.numel()).view_as(out)
        (out.float() * weights).sum().backward()
        results.append((out.float(), alpha.float(), leaf.grad, fusion.query.weight.grad))
    tolerance = {"atol": 5e-2, "rtol": 5e-2}  # bf16 rounding, different summation order
    for plain, recomputed in zip(*results, strict=True):
        torch.testing.assert_close(recomputed, plain, **tolerance)


# -------------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_stack_and_fusion_follow_to_dtype(dtype: torch.dtype):
    adapters = make_adapters(compacter_config(), 3)
    stack = AdapterStack.from_adapters(adapters)
    fusion = randomize_fusion(FusionLayer(D, 3), std=0.1)
    x = torch.randn(2, 5, D)
    out32, alpha32 = fusion(x, stack(x), x)
    stack.to(dtype)
    fusion.to(dtype)
    assert stack.gate.dtype == dtype and stack.down_weight.dtype == dtype
    xd = x.to(dtype)
    out, alpha = fusion(xd, stack(xd), xd)
    out_recomputed, _ = fusion.forward_from_stack(xd, xd, stack, xd)
    assert out.dtype == dtype and alpha.dtype == dtype
    tolerance = TOL if dtype == torch.float64 else {"atol": 5e-2, "rtol": 5e-2}
    torch.testing.assert_close(out.float(), out32, **tolerance)
    torch.testing.assert_close(alpha.float(), alpha32, **tolerance)
    torch.testing.assert_close(out_recomputed, out, atol=0.0, rtol=0.0)
    assert fusion.regularization().dtype == torch.float32


def test_compacter_follows_to_dtype_with_shared_rule():
    config = compacter_config()
    adapter = Adapter(D, config, new_phm_rule(config)).double()
    x = torch.randn(1, 2, D, dtype=torch.float64)
    assert adapter(x).dtype == torch.float64


# ------------------------------------------------------------------------------- config


def test_presets_and_properties():
    task = AdapterConfig.task_adapter()
    assert (task.kind, task.reduction_factor, task.activation) == ("task-adapter", 16, "relu")
    assert task.places == ("mlp",) and task.input_includes_residual
    compacter = AdapterConfig.compacter(phm_rank=2)
    assert (compacter.kind, compacter.reduction_factor, compacter.activation) == (
        "compacter",
        32,
        "gelu",
    )
    assert (compacter.phm_dim, compacter.phm_rank) == (4, 2)
    assert compacter.places == ("attn", "mlp") and not compacter.input_includes_residual
    assert task.bottleneck_size(4096) == 256 and compacter.bottleneck_size(4096) == 128
    with pytest.raises(ConfigError, match="reduction_factor 16 is larger than hidden size 8"):
        task.bottleneck_size(8)


def test_configs_round_trip():
    adapter = AdapterConfig.compacter(phm_dim=8, shared_phm_rule=False)
    assert AdapterConfig.from_dict(adapter.to_dict()) == adapter
    fusion = FusionConfig(temperature=True, mask_mode="remove", query_rank=64)
    assert FusionConfig.from_dict(fusion.to_dict()) == fusion


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: AdapterConfig(kind="compactor"),
            r"Unknown adapter kind 'compactor'\. Did you mean 'compacter'\?",
        ),
        (lambda: AdapterConfig(activation="gelu_new"), "Unknown activation 'gelu_new'"),
        (lambda: AdapterConfig(reduction_factor=0), "reduction_factor must be >= 1, got 0"),
        (lambda: AdapterConfig(phm_dim=True), "phm_dim must be an integer, got True"),
        (lambda: AdapterConfig(init_std=-1.0), "init_std must be > 0"),
        (
            lambda: AdapterConfig.from_dict({"reduction": 8}),
            r"Unknown AdapterConfig key\(s\): 'reduction'\. Did you mean 'reduction_factor'\?",
        ),
        (lambda: AdapterConfig.compacter(phm_dims=2), "'phm_dims'"),
        (lambda: FusionConfig(mask_mode="drop"), "Unknown mask mode 'drop'"),
        (lambda: FusionConfig(query_rank=0), "query_rank must be >= 1"),
        (lambda: FusionConfig(regularization_weight=-0.1), "regularization_weight must be >= 0"),
        (
            lambda: FusionConfig.from_dict({"temprature": True, "zz": 1}),
            r"'temprature'\. Did you mean 'temperature'\?; 'zz'",
        ),
    ],
)
def test_config_validation(build, message: str):
    with pytest.raises(ConfigError, match=message) as caught:
        build()
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UserError)
