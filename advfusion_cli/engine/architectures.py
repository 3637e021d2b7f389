"""Where adapters sit in each decoder-only architecture: one registered layout per `model_type`.

AdvFusion places its modules after a sublayer's output projection (attention `o_proj`, MLP
`down_proj` in Llama terms) and needs `h`, the residual stream entering that sublayer. In every
pre-norm decoder `h` is exactly the INPUT of the sublayer's norm, so a forward pre-hook on that
norm sees it. Parallel-residual blocks (GPT-NeoX) feed the layer input to both norms, which is
also each sublayer's residual, so the same rule holds.

Adding a family is one `register_architecture(...)` call (see the bottom of this file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from advfusion_cli.errors import UserError

PLACES: tuple[str, ...] = ("attn", "mlp")
"""The two places a decoder layer offers: after attention and after the MLP."""

_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_MODEL_TYPE = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class ArchitectureLayout:
    """Module paths of one architecture family, relative to the causal-LM model object.

    `layers` is the path of the decoder-layer list; every other path is relative to one layer.
    """

    model_type: str
    layers: str
    attn_output: str
    mlp_output: str
    attn_residual_norm: str
    mlp_residual_norm: str
    lora_targets: tuple[str, ...]

    def output_path(self, place: str) -> str:
        return {"attn": self.attn_output, "mlp": self.mlp_output}[place]

    def residual_norm_path(self, place: str) -> str:
        return {"attn": self.attn_residual_norm, "mlp": self.mlp_residual_norm}[place]


_REGISTRY: dict[str, ArchitectureLayout] = {}


def register_architecture(
    model_type: str,
    *,
    layers: str,
    attn_output: str,
    mlp_output: str,
    attn_residual_norm: str,
    mlp_residual_norm: str,
    lora_targets: tuple[str, ...] | list[str],
) -> ArchitectureLayout:
    """Register the layout of `model_type` (the value of `config.model_type`).

    Raises ValueError on a duplicate model type or a malformed path: registrations are code,
    so a mistake there is a programming error, not a user error.
    """
    if not _MODEL_TYPE.match(model_type):
        raise ValueError(
            f"Invalid model_type {model_type!r}: use lowercase letters, digits, _ or -."
        )
    if model_type in _REGISTRY:
        raise ValueError(f"Architecture {model_type!r} is already registered.")
    paths = {
        "layers": layers,
        "attn_output": attn_output,
        "mlp_output": mlp_output,
        "attn_residual_norm": attn_residual_norm,
        "mlp_residual_norm": mlp_residual_norm,
    }
    for field, path in paths.items():
        if not isinstance(path, str) or not _DOTTED_PATH.match(path):
            raise ValueError(f"{model_type}: {field}={path!r} is not a dotted module path.")
    lora_targets = tuple(lora_targets)
    if not lora_targets or not all(isinstance(t, str) and t for t in lora_targets):
        raise ValueError(f"{model_type}: lora_targets must be a non-empty list of module names.")
    layout = ArchitectureLayout(model_type=model_type, lora_targets=lora_targets, **paths)
    _REGISTRY[model_type] = layout
    return layout


def supported_architectures() -> list[str]:
    """The registered `model_type` values, sorted."""
    return sorted(_REGISTRY)


def _how_to_add(model_type: str) -> str:
    return (
        "To add one, register its layout once: advfusion_cli.engine.register_architecture("
        f"'{model_type}', layers=..., attn_output=..., mlp_output=..., attn_residual_norm=..., "
        "mlp_residual_norm=..., lora_targets=[...]) (see docs/engine.md)."
    )


def layout_for_model_type(model_type: str) -> ArchitectureLayout:
    """The layout of `model_type`, or a UserError listing the supported ones."""
    if model_type not in _REGISTRY:
        raise UserError(
            f"Unsupported architecture '{model_type}'. Supported: "
            f"{', '.join(supported_architectures())}. {_how_to_add(model_type)}"
        )
    return _REGISTRY[model_type]


def layout_for(model: nn.Module) -> ArchitectureLayout:
    """The layout of a loaded causal LM, looked up by `model.config.model_type`."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not model_type:
        raise UserError(
            f"{type(model).__name__} has no config.model_type; expected a Hugging Face causal LM."
        )
    return layout_for_model_type(model_type)


def decoder_layers(model: nn.Module, layout: ArchitectureLayout) -> nn.ModuleList:
    """The decoder-layer list, with an error that says which registered path did not match."""
    try:
        layers = model.get_submodule(layout.layers)
    except AttributeError as exc:
        raise UserError(
            f"{type(model).__name__} has no module '{layout.layers}' although it reports "
            f"model_type '{layout.model_type}'; its registered layout does not fit this model."
        ) from exc
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise UserError(f"'{layout.layers}' of {type(model).__name__} is not a list of layers.")
    return layers


def layer_submodule(layer: nn.Module, path: str, layout: ArchitectureLayout) -> nn.Module:
    """`layer.<path>`, failing with the path and architecture named."""
    try:
        return layer.get_submodule(path)
    except AttributeError as exc:
        raise UserError(
            f"Decoder layer {type(layer).__name__} has no module '{path}' (registered layout "
            f"of '{layout.model_type}'); its registered layout does not fit this model."
        ) from exc


# Llama-style pre-norm blocks: CodeLlama, DeepSeek-Coder (llama), Qwen2.5-Coder (qwen2), Mistral,
# Qwen3 (q/k norms live inside attention and do not change the placement).
for _llama_like in ("llama", "qwen2", "qwen3", "mistral"):
    register_architecture(
        _llama_like,
        layers="model.layers",
        attn_output="self_attn.o_proj",
        mlp_output="mlp.down_proj",
        attn_residual_norm="input_layernorm",
        mlp_residual_norm="post_attention_layernorm",
        lora_targets=("q_proj", "v_proj"),
    )

# StarCoder2: Llama-style block with a two-matrix GELU MLP.
register_architecture(
    "starcoder2",
    layers="model.layers",
    attn_output="self_attn.o_proj",
    mlp_output="mlp.c_proj",
    attn_residual_norm="input_layernorm",
    mlp_residual_norm="post_attention_layernorm",
    lora_targets=("q_proj", "v_proj"),
)

# StarCoder / SantaCoder (GPT-2 style, multi-query attention with a fused c_attn).
register_architecture(
    "gpt_bigcode",
    layers="transformer.h",
    attn_output="attn.c_proj",
    mlp_output="mlp.c_proj",
    attn_residual_norm="ln_1",
    mlp_residual_norm="ln_2",
    lora_targets=("c_attn",),
)

# GPT-NeoX / Pythia: parallel residual by default (both norms read the layer input, which is
# each sublayer's residual); with use_parallel_residual=False the MLP norm reads h + attn, which
# again is the MLP's residual. Either way the pre-hook rule is right.
register_architecture(
    "gpt_neox",
    layers="gpt_neox.layers",
    attn_output="attention.dense",
    mlp_output="mlp.dense_4h_to_h",
    attn_residual_norm="input_layernorm",
    mlp_residual_norm="post_attention_layernorm",
    lora_targets=("query_key_value",),
)
