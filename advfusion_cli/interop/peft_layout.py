"""peft's LoRA folder: `adapter_config.json` (peft_type LORA) + `adapter_model.safetensors`
(or a weights-only `adapter_model.bin`); advfusion's LoRA runs already save exactly this, plus
`base_fingerprint.json`, so import checks and copies, and export copies back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from advfusion_cli.engine.serialization import read_json
from advfusion_cli.errors import UserError
from advfusion_cli.interop.weights import read_weights

CONFIG_NAME = "adapter_config.json"
WEIGHTS_SAFE = "adapter_model.safetensors"
WEIGHTS_BIN = "adapter_model.bin"
# Projections whose input is the hidden state (LoRA A reads d) / whose output is (LoRA B writes d).
_READS_HIDDEN = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "c_attn", "query_key_value")
_WRITES_HIDDEN = ("o_proj", "down_proj", "c_proj", "dense", "dense_4h_to_h")
_LORA_KEY = re.compile(
    r"^(?:.*\.)?layers?\.(\d+)\.(?:.*\.)?(\w+)\.lora_([AB])(?:\.[\w]+)?\.weight$"
)
_LORA_KEY_H = re.compile(r"^(?:.*\.)?h\.(\d+)\.(?:.*\.)?(\w+)\.lora_([AB])(?:\.[\w]+)?\.weight$")


def read_peft(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor], Path]:
    """(config, weights, weights file) of a peft LoRA folder; only LoRA is accepted."""
    config = read_json(folder / CONFIG_NAME)
    peft_type = config.get("peft_type")
    if str(peft_type).upper() != "LORA":
        raise UserError(
            f"{folder / CONFIG_NAME}: peft_type {peft_type!r} cannot be imported; advfusion "
            "runs LoRA (peft_type LORA) only."
        )
    for name in (WEIGHTS_SAFE, WEIGHTS_BIN):
        if (folder / name).is_file():
            return config, read_weights(folder / name), folder / name
    raise UserError(
        f"Missing weights file in '{folder}': expected {WEIGHTS_SAFE} or {WEIGHTS_BIN}."
    )


def lora_shape(source: Path, tensors: dict[str, Tensor], hidden: int) -> tuple[int, int | None]:
    """(the deepest layer index + 1, the hidden size the weights imply or None)."""
    layers, implied = 0, None
    for key, tensor in tensors.items():
        match = _LORA_KEY.match(key) or _LORA_KEY_H.match(key)
        if not match:
            continue
        layer, module, side = int(match[1]), match[2], match[3]
        layers = max(layers, layer + 1)
        if side == "A" and module in _READS_HIDDEN:
            size = tensor.shape[1]
        elif side == "B" and module in _WRITES_HIDDEN:
            size = tensor.shape[0]
        else:
            continue
        if implied is None or size != hidden:
            implied = size
    if layers == 0:
        raise UserError(f"{source} holds no LoRA weights (no '<layer>.<module>.lora_A.weight').")
    return layers, implied


def lora_method(source: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The spec's method section for this LoRA: r, alpha, dropout, target modules."""
    targets = config.get("target_modules")
    if isinstance(targets, str):  # peft allows a regex string; the spec lists names
        raise UserError(
            f"{source}: target_modules {targets!r} is a pattern; advfusion's LoRA spec lists "
            "module names."
        )
    return {
        "name": "lora",
        "r": config.get("r", 8),
        "alpha": float(config.get("lora_alpha", 8)),
        "dropout": float(config.get("lora_dropout", 0.0)),
        "target_modules": sorted(targets) if targets else None,
    }
