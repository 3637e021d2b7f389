"""Seeded data order and step counts: the data position is (epoch, index into the epoch's order).

Each epoch's permutation is a function of (seed, epoch) alone, never of global RNG state, so a
resumed run reads exactly the batches an uninterrupted one would. With N processes, micro-batch
`i` of an epoch gives process `r` the slice starting at (i * N + r) * batch_size.
"""

from __future__ import annotations

import math

import torch


def epoch_permutation(n_examples: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_examples, generator=generator).tolist()


def micro_batches_per_epoch(n_examples: int, batch_size: int, world: int) -> int:
    return max(1, math.ceil(n_examples / (batch_size * world)))


def micro_batch_indices(
    order: list[int], index: int, batch_size: int, world: int, rank: int
) -> list[int]:
    """This process's examples for micro-batch `index`; the epoch's tail wraps to its start
    so every process gets a full batch (as accelerate's even batches do)."""
    start = (index * world + rank) * batch_size
    return [order[(start + j) % len(order)] for j in range(batch_size)]


def steps_for_epochs(
    epochs: float, n_examples: int, batch_size: int, grad_accumulation: int, world: int
) -> int:
    """Optimizer steps that cover `epochs` passes over the data (at least one)."""
    micro = micro_batches_per_epoch(n_examples, batch_size, world)
    return max(1, math.ceil(epochs * micro / grad_accumulation))
