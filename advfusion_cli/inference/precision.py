"""Inference in the compute dtype training used: bf16 autocast on CUDA, fp32 on CPU.

Training runs under accelerate's bf16 autocast on CUDA (training.precision `auto` or
`bf16`), with fp32 adapter and fusion weights. Evaluating the same weights without autocast
runs every adapter and fusion matmul in fp32: slower, more memory, and not the numerics the
weights were trained under. `--no-autocast` keeps the old fp32 path on CUDA; the CPU path
never autocasts (training on CPU does not either).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast_dtype(
    training_precision: str, device_type: str, *, enabled: bool = True, bf16_supported=None
) -> torch.dtype | None:
    """The dtype inference should autocast to, or None for no autocast.

    Mirrors `workflows.execute.open_session`: `auto` means bf16 where CUDA supports it,
    `bf16` means bf16, `fp32` means none; only CUDA autocasts.
    """
    if not enabled or device_type != "cuda" or training_precision == "fp32":
        return None
    if training_precision == "auto":
        supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        if not supported:
            return None
    return torch.bfloat16


def inference_autocast(dtype: torch.dtype | None, device_type: str) -> AbstractContextManager:
    """`torch.autocast` for `dtype`, or a no-op context when `dtype` is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def describe(dtype: torch.dtype | None) -> str:
    """What metrics.json records: `bf16 autocast` or `none`."""
    return "none" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
