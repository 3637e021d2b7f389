"""Next-token loss without the full logits tensor when vocabulary x tokens is large.

The plain path (`model(..., labels=labels).loss`) materialises logits (B, T, V) and an fp32
copy: at 8k tokens and a 152k vocabulary that is 1.2 G elements, 5+ GB per copy. Above
`CHUNK_THRESHOLD` elements the model runs with its output head swapped for a pass-through,
so the forward returns hidden states (B, T, H); the loss is then computed over the labelled
positions in chunks of `CHUNK_ELEMENTS // V` tokens, each chunk's logits made, reduced and
freed inside an activation checkpoint (backward recomputes one chunk at a time). The head
goes through the same call under the same autocast as in the plain path, and the loss is the
same mean over labelled positions: numerically the plain loss up to summation order.

The forward still goes through the outermost module (peft, DDP and adapter hooks see a
normal call); only the head's output changes while it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100  # data.encoding.IGNORE_INDEX, the labels' "not counted"
CHUNK_THRESHOLD = 1 << 28  # B*T*V above this (1 GiB of fp32 logits): chunk
CHUNK_ELEMENTS = 1 << 25  # logits elements per chunk (128 MiB fp32)
# Config keys of heads that transform logits after the projection; those keep the plain path.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_mult")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP / peft wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module  # DDP
        elif hasattr(model, "get_base_model"):
            inner = model.get_base_model()  # peft
            if inner is model:
                return model
            model = inner
        else:
            return model


def output_head(model: nn.Module) -> tuple[nn.Module, str, nn.Module] | None:
    """(owner, attribute, head) of a plain linear output head, or None if it is anything else."""
    base = unwrap_model(model)
    getter = getattr(base, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if head is None or not isinstance(head, nn.Linear):
        return None
    config = getattr(base, "config", None)
    if any(getattr(config, key, None) not in (None, 1, 1.0) for key in _LOGIT_TRANSFORMS):
        return None
    for name, child in base.named_children():
        if child is head:
            return base, name, head
    return None


def use_chunked_loss(vocab_size: int, tokens: int, threshold: int = CHUNK_THRESHOLD) -> bool:
    """Chunk when the plain path's logits (tokens x vocabulary) would exceed `threshold`."""
    return vocab_size * tokens > threshold


class _PassThrough(nn.Module):
    def forward(self, hidden: Tensor) -> Tensor:
        return hidden


@contextmanager
def _head_removed(owner: nn.Module, name: str) -> Iterator[None]:
    head = getattr(owner, name)
    setattr(owner, name, _PassThrough())
    try:
        yield
    finally:
        setattr(owner, name, head)


def _chunk_loss_sum(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    logits = head(hidden).float()  # (C, H) -> (C, V), fp32 as the plain loss upcasts
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_loss(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    *,
    chunk_elements: int | None = None,
) -> Tensor:
    """Mean next-token cross-entropy over labelled positions, logits made chunk by chunk
    (`chunk_elements` logits at a time, default `CHUNK_ELEMENTS`)."""
    chunk_elements = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    found = output_head(model)
    if found is None:
        raise ValueError("chunked_loss needs a plain linear output head")
    owner, name, head = found
    with _head_removed(owner, name):
        output = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = output.logits  # the pass-through head returned the hidden states (B, T, H)
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])  # (B*(T-1), H): predicts t+1
    targets = labels[:, 1:].reshape(-1).to(hidden.device)  # (B*(T-1),)
    keep = targets != IGNORE_INDEX
    hidden, targets = hidden[keep], targets[keep]  # (N, H), (N,)
    hidden = hidden.to(head.weight.dtype)  # as the head received it inside the forward
    step = max(1, chunk_elements // head.out_features)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], step):
        piece, wanted = hidden[start : start + step], targets[start : start + step]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss_sum, head, piece, wanted, use_reentrant=False)
        else:
            total = total + _chunk_loss_sum(head, piece, wanted)
    return total / keep.sum()  # 0 labelled positions -> nan, as the plain loss


def next_token_loss(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    *,
    threshold: int | None = None,
) -> Tensor:
    """The model's causal-LM loss; chunked when tokens x vocabulary exceeds `threshold`
    (default `CHUNK_THRESHOLD`)."""
    threshold = CHUNK_THRESHOLD if threshold is None else threshold
    found = output_head(model)
    if found is not None and use_chunked_loss(found[2].out_features, input_ids.numel(), threshold):
        return chunked_loss(model, input_ids, attention_mask, labels)
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
