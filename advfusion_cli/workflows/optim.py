"""Optimizer and learning-rate schedule: paged AdamW 32-bit on CUDA (the authors'), AdamW on CPU;
linear, cosine or constant decay after a linear warmup (`warmup_ratio` of the phase's steps)."""

from __future__ import annotations

import math

import torch
from torch import nn


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
    params: list[nn.Parameter], kind: str, learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer:
    """`auto` = paged_adamw_32bit when the parameters live on CUDA, else torch AdamW."""
    if kind == "auto":
        kind = "paged_adamw_32bit" if params and params[0].is_cuda else "adamw"
    if kind == "paged_adamw_32bit":
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW32bit(params, lr=learning_rate, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A schedule that starts over from the optimizer's `initial_lr` (set per phase)."""
    warmup = math.ceil(warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total_steps, warmup)
    )
