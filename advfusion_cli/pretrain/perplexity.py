"""Held-out perplexity of a causal LM, one document at a time (no cross-document context)."""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from advfusion_cli.pretrain.packing import IGNORE_INDEX


@torch.no_grad()
def document_perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    documents: list[str],
    max_length: int,
    batch_size: int = 16,
) -> tuple[float, int]:
    """exp(mean NLL per predicted token) over `documents`; also returns the token count.

    Each document is scored as it was trained: its tokens followed by EOS, the first token
    unpredicted. Documents longer than `max_length` tokens are cut to it.
    """
    model.eval()
    encoded = [
        (tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[
            :max_length
        ]
        for text in documents
    ]
    total_nll = 0.0
    total_tokens = 0
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()  # (B, T, V)
        targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, IGNORE_INDEX)  # (B, T-1)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total_nll += float(nll)
        total_tokens += int((targets != IGNORE_INDEX).sum())
    if total_tokens == 0:
        raise ValueError("no tokens to score: every document was empty")
    return math.exp(total_nll / total_tokens), total_tokens
