"""Pack whole tokenized documents into fixed-length training windows, never splitting one.

Why whole documents: a translation pair or a diff cut at a window boundary leaves a
target half without its source, which teaches the model to write code that ignores the
prompt. Documents longer than a window are skipped (counted), the rest are placed
first-fit into a small pool of open windows, and the unused tail of a window is padding
that the loss ignores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PackedWindows:
    input_ids: torch.Tensor  # (n_windows, seq_len) int64, pad where unused
    labels: torch.Tensor  # (n_windows, seq_len) int64, IGNORE_INDEX over padding
    attention_mask: torch.Tensor  # (n_windows, seq_len) int64, 0 over padding
    document_spans: list[list[tuple[int, int, int]]]  # per window: (doc index, start, end)
    skipped_too_long: int
    n_documents: int

    @property
    def n_tokens(self) -> int:
        """Real (non-pad) tokens across all windows."""
        return int(self.attention_mask.sum())

    def fill_rate(self) -> float:
        return self.n_tokens / max(1, self.input_ids.numel())


def pack_documents(
    documents: list[list[int]],
    seq_len: int,
    pad_id: int,
    seed: int = 0,
    open_windows: int = 64,
) -> PackedWindows:
    """Shuffle `documents` (token id lists, EOS already appended) and pack them whole.

    A document goes into the first of up to `open_windows` partly filled windows with room
    for it; when the pool is full, the fullest window is closed first. A larger pool
    wastes less padding; the shuffle keeps each window a random mix of document kinds.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    pool: list[tuple[list[int], list[tuple[int, int, int]]]] = []
    closed: list[tuple[list[int], list[tuple[int, int, int]]]] = []
    skipped = 0
    for doc_index in order:
        doc = documents[doc_index]
        if len(doc) > seq_len:
            skipped += 1
            continue
        if len(doc) == 0:
            continue
        target = next((w for w in pool if len(w[0]) + len(doc) <= seq_len), None)
        if target is None:
            if len(pool) >= open_windows:
                fullest = max(range(len(pool)), key=lambda i: len(pool[i][0]))
                closed.append(pool.pop(fullest))
            target = ([], [])
            pool.append(target)
        start = len(target[0])
        target[0].extend(doc)
        target[1].append((doc_index, start, start + len(doc)))
    closed.extend(pool)

    n = len(closed)
    input_ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, seq_len), dtype=torch.long)
    for row, (tokens, _) in enumerate(closed):
        input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, : len(tokens)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    return PackedWindows(
        input_ids=input_ids,
        labels=labels,
        attention_mask=attention_mask,
        document_spans=[spans for _, spans in closed],
        skipped_too_long=skipped,
        n_documents=len(documents),
    )
