"""Loading the base model and tokenizer a job spec names (the embedded tiny model by default)."""

from __future__ import annotations

import torch

from advfusion_cli.errors import UserError
from advfusion_cli.spec.schema import ModelSpec


def model_source(name_or_path: str) -> str:
    """A hub id or folder to load; the embedded model's id becomes its installed folder."""
    from advfusion_cli.pretrain.embedded import embedded_model_path, is_embedded_model_id

    if not is_embedded_model_id(name_or_path):
        return name_or_path
    folder = embedded_model_path()
    if not (folder / "config.json").is_file():
        raise UserError(
            f"The embedded model '{name_or_path}' is not installed in {folder}; "
            "reinstall advfusion or pass --model <hub id or folder>."
        )
    return str(folder)


def base_dtype(model: ModelSpec) -> str:
    """`auto` = bfloat16 on CUDA, float32 on CPU (the shipped model is stored in bf16)."""
    if model.dtype != "auto":
        return model.dtype
    return "bfloat16" if torch.cuda.is_available() else "float32"


def load_base(model: ModelSpec):
    """(model, tokenizer) as the spec describes: quantization, dtype, device placement."""
    from advfusion_cli.engine import QuantizationConfig, load_model, load_tokenizer

    source = model_source(model.name_or_path)
    quantization = QuantizationConfig(
        mode=model.quantization,
        double_quant=model.double_quant,
        compute_dtype=model.compute_dtype,
    )
    from transformers.utils import logging as hf_logging

    dtype = base_dtype(model) if model.quantization == "none" else model.dtype
    hf_logging.disable_progress_bar()  # our own display is the progress; keep logs readable
    loaded = load_model(source, quantization, dtype, model.device_map, revision=model.revision)
    tokenizer = load_tokenizer(source, padding_side="right", revision=model.revision)
    return loaded, tokenizer


def adapter_dtype(model: ModelSpec) -> str:
    """Trained modules keep fp32 master weights by default (`auto`); autocast runs bf16 on GPU."""
    return "float32" if model.adapter_dtype == "auto" else model.adapter_dtype
