"""The architecture registry and what each layout captures as the residual stream h.

h must be the tensor the decoder layer adds the sublayer's output to: the layer input for
attention; layer input + attention output for a sequential MLP; the layer input for a
parallel-residual (GPT-NeoX) MLP. Checked against the model's own hidden states.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CONFIGS, build_tiny_model
from transformers import AutoConfig, AutoModelForCausalLM

from advfusion_cli.engine import AdapterConfig, attach_host, register_architecture
from advfusion_cli.engine import architectures as registry
from advfusion_cli.engine.architectures import layout_for_model_type, supported_architectures
from advfusion_cli.errors import UserError

ARCHS = list(TINY_CONFIGS)


def tiny(model_type: str, **overrides):
    torch.manual_seed(0)
    settings = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config = AutoConfig.for_model(model_type, **(settings | overrides))
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def capture_residuals(model, host):
    """Per (layer, place): the h the host captured, and the projection output f."""
    seen: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    handles = []
    for (layer, place), wrapper in host._places.items():
        slot = seen.setdefault((layer, place), {})

        def pre(module, args, slot=slot):
            slot["h"] = module.residual.detach()  # what the norm pre-hook stored

        def post(module, args, output, slot=slot):
            slot["f"] = output.detach()

        handles += [
            wrapper.register_forward_pre_hook(pre),
            wrapper.base.register_forward_hook(post),
        ]
    return seen, handles


def layer_inputs(model, input_ids) -> list[torch.Tensor]:
    inputs = []
    layers = model.get_submodule(model._advfusion_host.layout.layers)
    handles = [
        layer.register_forward_pre_hook(
            lambda m, a, kw: inputs.append((a[0] if a else kw["hidden_states"]).detach()),
            with_kwargs=True,
        )
        for layer in layers
    ]
    model(input_ids)
    for handle in handles:
        handle.remove()
    return inputs


@pytest.mark.parametrize("arch", ARCHS)
def test_captured_residual_is_what_the_layer_adds_back(arch):
    model = build_tiny_model(arch)
    host = attach_host(model)
    host.add_adapter("python", AdapterConfig.task_adapter())
    host.activate("python")  # routing needs h at the MLP place
    input_ids = torch.randint(3, 128, (2, 5), generator=torch.Generator().manual_seed(0))
    seen, handles = capture_residuals(model, host)
    inputs = layer_inputs(model, input_ids)
    for handle in handles:
        handle.remove()
    parallel = getattr(model.config, "use_parallel_residual", False)
    for layer in range(2):
        attn, mlp = seen[(layer, "attn")], seen[(layer, "mlp")]
        torch.testing.assert_close(attn["h"], inputs[layer], rtol=0, atol=0)
        expected_mlp_h = inputs[layer] if parallel else inputs[layer] + attn["f"]
        torch.testing.assert_close(mlp["h"], expected_mlp_h, rtol=0, atol=1e-6)
    assert arch != "gpt_neox" or parallel  # the parallel case really is covered


def test_gpt_neox_sequential_residual_variant():
    model = tiny("gpt_neox", use_parallel_residual=False, num_key_value_heads=None)
    host = attach_host(model)
    seen, _ = capture_residuals(model, host)
    input_ids = torch.randint(3, 128, (1, 4))
    inputs = layer_inputs(model, input_ids)
    torch.testing.assert_close(seen[(0, "mlp")]["h"], inputs[0] + seen[(0, "attn")]["f"])


def test_qwen3_is_supported():
    model = tiny("qwen3", head_dim=8)
    base = model(torch.tensor([[5, 6, 7]])).logits
    host = attach_host(model)
    host.add_adapter("python", AdapterConfig.compacter(reduction_factor=8))
    host.activate("python")
    assert not torch.equal(model(torch.tensor([[5, 6, 7]])).logits, base)


def test_registry_lists_the_families():
    assert set(supported_architectures()) >= {
        "llama",
        "qwen2",
        "qwen3",
        "mistral",
        "starcoder2",
        "gpt_bigcode",
        "gpt_neox",
    }
    assert layout_for_model_type("gpt_bigcode").mlp_output == "mlp.c_proj"


def test_unknown_architecture_lists_supported_and_how_to_add():
    model = tiny("phi3")
    with pytest.raises(UserError) as info:
        attach_host(model)
    message = str(info.value)
    assert "Unsupported architecture 'phi3'" in message
    assert "llama" in message and "gpt_neox" in message
    assert "register_architecture('phi3', layers=" in message


def test_adding_an_architecture_is_one_call(scratch_registry):
    register_architecture(
        "phi3",
        layers="model.layers",
        attn_output="self_attn.o_proj",
        mlp_output="mlp.down_proj",
        attn_residual_norm="input_layernorm",
        mlp_residual_norm="post_attention_layernorm",
        lora_targets=["qkv_proj"],
    )
    model = tiny("phi3")
    base = model(torch.tensor([[5, 6, 7]])).logits
    host = attach_host(model)
    host.add_adapter("python")
    host.activate("python")
    assert not torch.equal(model(torch.tensor([[5, 6, 7]])).logits, base)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model_type="llama"), "already registered"),
        (dict(model_type="Bad Name"), "Invalid model_type"),
        (dict(model_type="newarch", layers="model..layers"), "not a dotted module path"),
        (dict(model_type="newarch", lora_targets=[]), "lora_targets"),
    ],
)
def test_bad_registrations_are_rejected(scratch_registry, kwargs, message):
    fields = dict(
        layers="model.layers",
        attn_output="self_attn.o_proj",
        mlp_output="mlp.down_proj",
        attn_residual_norm="input_layernorm",
        mlp_residual_norm="post_attention_layernorm",
        lora_targets=["q_proj"],
    )
    fields |= kwargs
    with pytest.raises(ValueError, match=message):
        register_architecture(**fields)


def test_layout_that_does_not_fit_names_the_path(scratch_registry):
    registry._REGISTRY.pop("llama")
    register_architecture(
        "llama",
        layers="model.layers",
        attn_output="self_attn.out_proj",
        mlp_output="mlp.down_proj",
        attn_residual_norm="input_layernorm",
        mlp_residual_norm="post_attention_layernorm",
        lora_targets=["q_proj"],
    )
    with pytest.raises(UserError, match="no module 'self_attn.out_proj'"):
        attach_host(build_tiny_model("llama"))
