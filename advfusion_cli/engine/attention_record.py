"""Fusion attention per layer, place and adapter, averaged over the tokens seen while recording.

What the fusion relies on (which language adapter gets the softmax mass, where) is the paper's
main analysis tool; this collects it without keeping per-token tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advfusion_cli.errors import UserError


class FusionAttentionRecord:
    """Running sums of alpha (B, T, N) per (layer, place); `mean()` -> (layers, places, N).

    `token_mask` (B, T), 1 for tokens to count, applies to every forward whose alpha has that
    (B, T); other forwards (e.g. single-token generation steps) count all their tokens. Set a
    new mask between batches with `record.token_mask = mask`.
    """

    def __init__(
        self,
        adapter_names: list[str],
        place_names: list[str],
        num_layers: int,
        token_mask: Tensor | None = None,
    ) -> None:
        self.adapter_names = list(adapter_names)
        self.place_names = list(place_names)
        self.num_layers = num_layers
        self.token_mask = token_mask
        self._sums: dict[tuple[int, int], Tensor] = {}  # (N,) float32 on alpha's device
        self._counts: dict[tuple[int, int], Tensor] = {}  # () float32

    @property
    def token_mask(self) -> Tensor | None:
        return self._token_mask

    @token_mask.setter
    def token_mask(self, mask: Tensor | None) -> None:
        if mask is not None and mask.dim() != 2:
            raise UserError(f"token_mask must have shape (batch, tokens), got {tuple(mask.shape)}.")
        self._token_mask = mask

    @torch.no_grad()
    def add(self, layer_index: int, place: str, alpha: Tensor) -> None:
        """Accumulate one forward's alpha (B, T, N) at (layer_index, place)."""
        key = (layer_index, self.place_names.index(place))
        alpha = alpha.detach().float()
        mask = self._token_mask
        if mask is not None and tuple(mask.shape) == tuple(alpha.shape[:2]):
            weights = mask.to(device=alpha.device, dtype=torch.float32)  # (B, T)
            total = (alpha * weights.unsqueeze(-1)).sum(dim=(0, 1))  # (B, T, N) -> (N,)
            count = weights.sum()
        else:
            total = alpha.sum(dim=(0, 1))  # (B, T, N) -> (N,)
            count = torch.tensor(float(alpha.shape[0] * alpha.shape[1]), device=alpha.device)
        if key in self._sums:
            self._sums[key] += total
            self._counts[key] += count
        else:
            self._sums[key] = total
            self._counts[key] = count

    def token_counts(self) -> Tensor:
        """(layers, places) number of tokens averaged at each place."""
        counts = torch.zeros(self.num_layers, len(self.place_names))
        for (layer, place), count in self._counts.items():
            counts[layer, place] = count.cpu()
        return counts

    def mean(self) -> Tensor:
        """Mean alpha (num_layers, num_places, N) on CPU; NaN where no token was recorded."""
        if not self._sums:
            raise UserError("No fusion forward pass ran while recording fusion attention.")
        result = torch.full(
            (self.num_layers, len(self.place_names), len(self.adapter_names)), float("nan")
        )
        for key, total in self._sums.items():
            count = self._counts[key].cpu()
            if count > 0:
                result[key] = total.cpu() / count
        return result
