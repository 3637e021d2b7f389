"""Token ids for training and generation: prompt + target + "\\n" + EOS, cut without touching the target.

As the authors (Amirresm/advfusion-cllm, src/dataset/processors.py) do, the prompt and the
target are tokenized separately and concatenated, the loss covers prompt and target by
default, and eval loss covers the completion only. Unlike their fixed-length truncation,
an over-long prompt is shortened by cutting its inner text (the diff, the source code, the
problem statement) and re-rendering, so the template's tail ("### Commit Message:\\n")
and the whole target always survive; when nothing fits the example is dropped with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch

from advfusion_cli.data.records import TaskExample
from advfusion_cli.data.stats import DataStats

IGNORE_INDEX = -100
MAX_PROMPT_TOKENS = 4096  # the authors' train_text_max_length
MAX_TARGET_TOKENS = 4096  # train_target_max_length
MAX_TOTAL_TOKENS = 8192  # train_max_length


class DroppedExample(ValueError):
    """An example that cannot be encoded within the budgets; `reason` is its count key."""

    def __init__(self, reason: str, example_id: str = ""):
        super().__init__(f"{example_id}: {reason}" if example_id else reason)
        self.reason = reason


def _ids(tokenizer, text: str, *, special: bool) -> list[int]:
    # verbose=False: no "sequence length is longer than the maximum" warning; fit_prompt cuts.
    return list(tokenizer(text, add_special_tokens=special, verbose=False)["input_ids"])


def target_ids(tokenizer, target: str) -> list[int]:
    """The target's ids: target + "\\n", then exactly one EOS (never a BOS)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; the target must end with one")
    return _ids(tokenizer, target + "\n", special=False) + [tokenizer.eos_token_id]


def fit_prompt(
    tokenizer, example: TaskExample, budget: int, *, no_room_reason: str
) -> tuple[list[int], bool]:
    """Prompt ids within `budget` tokens, cutting the end of the inner text when needed.

    Returns (ids, truncated). The inner text (meta["inner_span"]) keeps its longest prefix
    whose re-rendered prompt fits; found by bisection on characters, each candidate
    tokenized in full so joins between template and text tokenize as they will in use.
    """
    ids = _ids(tokenizer, example.prompt, special=True)
    if len(ids) <= budget:
        return ids, False
    span = example.meta.get("inner_span")
    if span is None:
        raise DroppedExample(no_room_reason, example.id)
    start, end = span
    head, inner, tail = example.prompt[:start], example.prompt[start:end], example.prompt[end:]

    def encode(kept: int) -> list[int]:
        return _ids(tokenizer, head + inner[:kept] + tail, special=True)

    best = encode(0)
    if len(best) > budget:
        raise DroppedExample(no_room_reason, example.id)
    fits, too_long = 0, len(inner)  # invariant: encode(fits) fits, encode(too_long) does not
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        candidate = encode(middle)
        if len(candidate) <= budget:
            fits, best = middle, candidate
        else:
            too_long = middle
    return best, True


def encode_example(
    tokenizer,
    example: TaskExample,
    *,
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    max_target_tokens: int = MAX_TARGET_TOKENS,
    max_total_tokens: int = MAX_TOTAL_TOKENS,
    loss_on: Literal["all", "target"] = "all",
) -> dict[str, Any]:
    """Training features: input_ids, labels, attention_mask, completion_mask (1 on the target),
    prompt_length and truncated. `loss_on="all"` (the authors) puts the loss on prompt and
    target, "target" on the target only. Raises DroppedExample ("no target", "target too
    long", "no room for target") when the example cannot be used."""
    if loss_on not in ("all", "target"):
        raise ValueError(f"loss_on must be 'all' or 'target', not {loss_on!r}")
    if not example.target:
        raise DroppedExample("no target", example.id)
    target = target_ids(tokenizer, example.target)
    if len(target) > max_target_tokens:
        raise DroppedExample("target too long", example.id)
    budget = min(max_prompt_tokens, max_total_tokens - len(target))
    prompt, truncated = fit_prompt(tokenizer, example, budget, no_room_reason="no room for target")
    prompt_labels = prompt if loss_on == "all" else [IGNORE_INDEX] * len(prompt)
    return {
        "input_ids": prompt + target,
        "labels": prompt_labels + target,
        "attention_mask": [1] * (len(prompt) + len(target)),
        "completion_mask": [0] * len(prompt) + [1] * len(target),
        "prompt_length": len(prompt),
        "truncated": truncated,
    }


def encode_prompt_for_generation(
    tokenizer,
    example: TaskExample,
    *,
    max_prompt_tokens: int = MAX_PROMPT_TOKENS,
    max_total_tokens: int | None = None,
    max_new_tokens: int = 0,
) -> dict[str, Any]:
    """Prompt-only features (input_ids, attention_mask, prompt_length, truncated), cut as in
    training; with `max_total_tokens`, room for `max_new_tokens` is kept as well."""
    budget = max_prompt_tokens
    if max_total_tokens is not None:
        budget = min(budget, max_total_tokens - max_new_tokens)
    prompt, truncated = fit_prompt(tokenizer, example, budget, no_room_reason="prompt too long")
    return {
        "input_ids": prompt,
        "attention_mask": [1] * len(prompt),
        "prompt_length": len(prompt),
        "truncated": truncated,
    }


def encode_examples(
    tokenizer,
    examples: Iterable[TaskExample],
    *,
    stats: DataStats | None = None,
    for_generation: bool = False,
    **budgets: Any,
) -> list[dict[str, Any]]:
    """Encode many examples; dropped ones are counted in `stats.dropped` by reason and cut
    ones in `stats.truncated` by language. Each feature dict also carries its example's id."""
    encode = encode_prompt_for_generation if for_generation else encode_example
    features = []
    for example in examples:
        try:
            feature = encode(tokenizer, example, **budgets)
        except DroppedExample as dropped:
            if stats is not None:
                stats.dropped[dropped.reason] += 1
            continue
        if stats is not None and feature["truncated"]:
            stats.truncated[example.language] += 1
        feature["id"] = example.id
        features.append(feature)
    return features


def completion_only_labels(labels: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Labels with every non-completion position ignored: the eval loss of the authors."""
    return labels.masked_fill(completion_mask == 0, IGNORE_INDEX)


class Collator:
    """Pads feature dicts into tensors: right padding for training (labels -100 on padding),
    left padding for batched generation. Keys padded: input_ids (pad id), attention_mask and
    completion_mask (0), labels (-100); prompt_length becomes a tensor; other keys are left out."""

    _PAD_VALUES = {"attention_mask": 0, "completion_mask": 0, "labels": IGNORE_INDEX}

    def __init__(
        self,
        pad_token_id: int,
        *,
        padding_side: Literal["right", "left"] = "right",
        pad_to_multiple_of: int | None = None,
    ):
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of

    @classmethod
    def for_tokenizer(cls, tokenizer, **kwargs: Any) -> Collator:
        """Uses the tokenizer's pad token, or its EOS when it has none (as the authors do)."""
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token to pad with")
        return cls(pad, **kwargs)

    def _pad(self, rows: Sequence[Sequence[int]], value: int, length: int) -> torch.Tensor:
        padded = []
        for row in rows:
            fill = [value] * (length - len(row))
            padded.append(list(row) + fill if self.padding_side == "right" else fill + list(row))
        return torch.tensor(padded, dtype=torch.long)  # (batch, length)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {
            "input_ids": self._pad([f["input_ids"] for f in features], self.pad_token_id, length)
        }
        for key, value in self._PAD_VALUES.items():
            if key in features[0]:
                batch[key] = self._pad([f[key] for f in features], value, length)
        if "prompt_length" in features[0]:
            batch["prompt_length"] = torch.tensor([f["prompt_length"] for f in features])
        return batch
