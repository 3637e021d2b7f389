"""Benchmark shapes: a random Llama of a given size and a fixed random batch, built from config.

The issue's reference table was measured on a tiny random Llama (hidden 256, intermediate 512,
4 layers, 4 heads, vocab 2048) with batch 8 x 256 tokens; the same builder makes 1B-class
shapes for a GPU. Weights are random: throughput does not depend on what the weights say.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from advfusion_cli.errors import UserError

QUANTIZATIONS = ("none", "4bit")


@dataclass(frozen=True)
class BenchShapes:
    """Model and batch sizes of one benchmark run."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None  # None: as many as query heads (plain multi-head attention)
    intermediate: int = 512
    vocab: int = 2048
    batch: int = 8
    seq: int = 256

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "intermediate", "vocab", "batch", "seq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--{name} must be a positive integer, got {value!r}.")
        if self.hidden % self.heads:
            raise UserError(f"--hidden {self.hidden} must be divisible by --heads {self.heads}.")
        if self.kv_heads is not None and (self.kv_heads < 1 or self.heads % self.kv_heads):
            raise UserError(f"--kv-heads {self.kv_heads} must divide --heads {self.heads}.")

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq

    def to_dict(self) -> dict:
        return asdict(self)


def llama_config(shapes: BenchShapes, max_positions: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=shapes.hidden,
        intermediate_size=shapes.intermediate,
        num_hidden_layers=shapes.layers,
        num_attention_heads=shapes.heads,
        num_key_value_heads=shapes.kv_heads or shapes.heads,
        vocab_size=shapes.vocab,
        max_position_embeddings=max_positions,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )


def build_base_model(
    shapes: BenchShapes,
    *,
    max_positions: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    quantization: str = "none",
    seed: int = 0,
) -> nn.Module:
    """A random Llama of `shapes`, frozen, in train mode (dropout as in training).

    4-bit bases go through the real loading path (`load_model`, NF4 via bitsandbytes): the
    random model is saved to a temporary folder and loaded back quantized.
    """
    from transformers import AutoModelForCausalLM

    if quantization not in QUANTIZATIONS:
        raise UserError(
            f"Unknown quantization '{quantization}'. Available: {', '.join(QUANTIZATIONS)}."
        )
    torch.manual_seed(seed)
    config = llama_config(shapes, max_positions)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if quantization == "4bit":
        from transformers.utils import logging as hf_logging

        from advfusion_cli.engine import load_model

        hf_logging.disable_progress_bar()  # the bench prints its own progress
        with tempfile.TemporaryDirectory(prefix="advfusion-bench-") as folder:
            model.save_pretrained(Path(folder))
            del model
            device_map = {"": torch.device(device).index or 0} if _is_cuda(device) else "cpu"
            model = load_model(folder, quantization="4bit", dtype=dtype, device_map=device_map)
    else:
        model = model.to(device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.train()


def random_tokens(shapes: BenchShapes, device: torch.device | str, seed: int) -> torch.Tensor:
    """input_ids (batch, seq) drawn once; every configuration trains on this same batch."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, shapes.vocab, (shapes.batch, shapes.seq), generator=generator)
    return ids.to(device)


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (4-bit weights as stored, packed)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"
