"""Sampling with one random stream per candidate, so a candidate never depends on its batch.

Candidate j of item X is drawn from its own CPU generator seeded with

    candidate_seed(seed, X, j) = first 8 bytes of sha256("advfusion-sample/<seed>/<X>/<j>")

so it comes out the same whichever process generates it, in whichever batch, after a resume
or an out-of-memory back-off: nothing but (seed, item id, j) decides its random numbers.

How: generation runs the greedy loop (`do_sample=False`) with `SeededSampler` as the last
logits processor. Per step it applies temperature, top-k and top-p (transformers' own
warpers, the same filters `do_sample=True` applies), draws one uniform number per row from
that row's generator, picks the token by inverse CDF, and leaves only that token finite, so
the greedy argmax takes it. The n candidates of a prompt are n copies of its row
(`expand_rows`), item-major like `num_return_sequences`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

SEED_BYTES = 8


def candidate_seed(seed: int, item_id: str, candidate: int) -> int:
    """The seed of candidate `candidate` (0-based) of item `item_id` under sampling seed `seed`."""
    text = f"advfusion-sample/{seed}/{item_id}/{candidate}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:SEED_BYTES], "big") & (2**63 - 1)


def row_seeds(seed: int, item_ids: Sequence[str], n: int) -> list[int]:
    """One seed per generated row: item-major, n candidates per item."""
    return [candidate_seed(seed, item_id, j) for item_id in item_ids for j in range(n)]


def expand_rows(tensor: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T) -> (B * n, T): each prompt's row repeated n times in place."""
    return tensor if n == 1 else tensor.repeat_interleave(n, dim=0)


def _warpers(temperature: float, top_k: int, top_p: float) -> list:
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


class SeededSampler:
    """A logits processor that samples each row from its own generator (see the module doc).

    Used with greedy decoding: the returned scores are -inf everywhere but the drawn token.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: int, top_p: float):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.warpers = _warpers(temperature, top_k, top_p)

    def draws(self) -> torch.Tensor:
        """One uniform number in [0, 1) per row, each from its row's own stream: (R,)."""
        return torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.generators):
            raise RuntimeError(
                f"sampler made for {len(self.generators)} rows got {scores.shape[0]}"
            )
        for warp in self.warpers:
            scores = warp(input_ids, scores)  # (R, V); filtered tokens are -inf
        probs = torch.softmax(scores.float(), dim=-1).double()  # (R, V)
        cdf = probs.cumsum(dim=-1)  # (R, V)
        targets = self.draws().to(cdf.device).unsqueeze(1) * cdf[:, -1:]  # (R, 1)
        # right=True: the first token whose cdf exceeds the draw, so never a zero-mass token.
        chosen = torch.searchsorted(cdf, targets, right=True).clamp_(max=cdf.shape[1] - 1)
        picked = torch.full_like(scores, float("-inf"))
        return picked.scatter_(1, chosen, 0.0)  # (R, V): only the drawn token is finite


def sampler_processors(seeds: Sequence[int], temperature: float, top_k: int, top_p: float):
    """The `logits_processor` argument of `generate` for seeded per-row sampling."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class _Processor(SeededSampler, LogitsProcessor):
        pass

    return LogitsProcessorList([_Processor(seeds, temperature, top_k, top_p)])
