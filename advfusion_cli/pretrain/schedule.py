"""Learning-rate schedule of the pretraining loop: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math


def warmup_cosine_lr(
    step: int, total_steps: int, peak_lr: float, warmup_steps: int, min_lr_ratio: float
) -> float:
    """LR for optimizer step `step` (0-based): warmup to `peak_lr`, cosine to peak*min_ratio."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
