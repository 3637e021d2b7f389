"""Optimizer and learning-rate schedule: paged AdamW 32-bit on CUDA (the authors'), AdamW on CPU
and under FSDP (fused on CUDA); linear, cosine or constant decay after a linear warmup
(`warmup_ratio` of the phase's steps).

bitsandbytes' optimizers size their state from a parameter's full shape and call their
kernels with plain tensors, so they cannot step FSDP's sharded (DTensor) parameters: FSDP
runs use torch's AdamW, and an explicit `paged_adamw_32bit` under FSDP is refused before
anything loads (`check_optimizer`). Paged state lives in CUDA managed memory, which
`torch.cuda.max_memory_allocated` does not see (`paged_memory_mb` reports it); a resumed
run moves it back into paged buffers (`repage_state`), and a run's end releases the buffers
bitsandbytes' page manager would otherwise keep for the life of the process
(`release_paged_buffers`).
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn

from advfusion_cli.errors import UserError

PAGED = "paged_adamw_32bit"


def check_optimizer(optimizer: str, distributed: str) -> None:
    """One line, before anything loads, for an optimizer that cannot run this layout."""
    if optimizer == PAGED and distributed == "fsdp":
        raise UserError(
            "training.optimizer=paged_adamw_32bit cannot step FSDP's sharded fusion "
            "(bitsandbytes works on whole tensors): set training.optimizer=adamw (or auto), "
            "or training.distributed=ddp."
        )


def lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate after `step` scheduler steps."""
    if warmup > 0 and step < warmup:
        return step / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown schedule {schedule!r}")


def build_optimizer(
    params: list[nn.Parameter],
    kind: str,
    learning_rate: float,
    weight_decay: float,
    sharded: bool = False,
) -> torch.optim.Optimizer:
    """`auto` = paged_adamw_32bit when the parameters live on CUDA and are whole, else torch
    AdamW (fused on CUDA); `sharded`: FSDP parameters (DTensors)."""
    on_cuda = bool(params) and params[0].is_cuda
    if kind == "auto":
        kind = PAGED if on_cuda and not sharded else "adamw"
    if kind == PAGED:
        check_optimizer(kind, "fsdp" if sharded else "none")
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW32bit(params, lr=learning_rate, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(
            params, lr=learning_rate, weight_decay=weight_decay, fused=True if on_cuda else None
        )
    raise ValueError(f"unknown optimizer {kind!r}")


def repage_state(optimizer: torch.optim.Optimizer) -> None:
    """After `load_state_dict`: put a paged optimizer's large state tensors back into paged
    (managed) buffers; loading copies them into ordinary device memory (+2 x 4 bytes per
    trained parameter). The same rule as bitsandbytes' own allocation: tensors of at least
    1e5 elements are paged."""
    if not getattr(optimizer, "is_paged", False):
        return
    for param, state in optimizer.state.items():
        for key, value in list(state.items()):
            if not isinstance(value, torch.Tensor) or value.shape != param.shape:
                continue
            buffer = optimizer.get_state_buffer(param, dtype=value.dtype)
            if buffer is value:
                continue
            buffer.copy_(value)
            state[key] = buffer


def _page_manager():
    """bitsandbytes' global page manager, if bitsandbytes was imported at all."""
    if "bitsandbytes" not in sys.modules:
        return None
    from bitsandbytes.functional import GlobalPageManager

    return GlobalPageManager.get_instance()


def paged_memory_mb() -> float:
    """Managed memory held by paged optimizer state (not in max_memory_allocated)."""
    manager = _page_manager()
    if manager is None:
        return 0.0
    return sum(t.numel() * t.element_size() for t in manager.paged_tensors) / 2**20


def release_paged_buffers() -> int:
    """Forget every paged buffer the page manager keeps (at a run's end: its optimizer is
    gone); returns how many. The manager otherwise holds them until the process exits."""
    manager = _page_manager()
    if manager is None:
        return 0
    count = len(manager.paged_tensors)
    manager.paged_tensors.clear()
    return count


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A schedule that starts over from the optimizer's `initial_lr` (set per phase)."""
    warmup = math.ceil(warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total_steps, warmup)
    )
