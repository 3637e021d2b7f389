"""The encoder of `encoding.py`, run over a batch at a time: one fast-tokenizer call per round.

Results are identical, token for token, to `encode_example` (tests/test_data_cache.py checks
every task and the shared real-schema samples): the same target ids, the same budgets, and
the same bisection over the inner text of an over-long prompt. Only the order of work
differs: every over-long prompt of the batch takes its next bisection step in the same
round, so each round is one batched tokenizer call (Rust, several threads) instead of one
Python call per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advfusion_cli.data.encoding import IGNORE_INDEX
from advfusion_cli.data.records import TaskExample

# Columns the batch encoder reads: what `encode_example` uses of a TaskExample.
EXAMPLE_COLUMNS = ("id", "prompt", "target", "span_start", "span_end")
NO_SPAN = -1  # span_start/end of an example without a cuttable inner text


def _batch_ids(tokenizer, texts: Sequence[str], *, special: bool) -> list[list[int]]:
    if not texts:
        return []
    # verbose=False: the length warning is noise here; fitting the budget is done below.
    return tokenizer(list(texts), add_special_tokens=special, verbose=False)["input_ids"]


@dataclass
class _Bisection:
    """One over-long prompt's search state: encode(fits) fits, encode(too_long) does not."""

    head: str
    inner: str
    tail: str
    budget: int
    fits: int
    too_long: int
    best: list[int]

    def candidate(self) -> tuple[int, str]:
        middle = (self.fits + self.too_long) // 2
        return middle, self.head + self.inner[:middle] + self.tail


def fit_prompts(
    tokenizer,
    prompts: Sequence[str],
    spans: Sequence[tuple[int, int] | None],
    budgets: Sequence[int],
    *,
    no_room_reason: str,
) -> list[tuple[list[int], bool] | str]:
    """Per prompt: (ids, truncated) as `encoding.fit_prompt` gives, or the drop reason."""
    results: list[tuple[list[int], bool] | str] = [no_room_reason] * len(prompts)
    full = _batch_ids(tokenizer, prompts, special=True)
    long: list[int] = []
    for i, ids in enumerate(full):
        if len(ids) <= budgets[i]:
            results[i] = (ids, False)
        elif spans[i] is not None:
            long.append(i)
    # The empty-inner rendering first: when even that does not fit, the example is dropped.
    searches: dict[int, _Bisection] = {}
    heads = []
    for i in long:
        start, end = spans[i]
        prompt = prompts[i]
        heads.append(prompt[:start] + prompt[end:])
    for i, ids in zip(long, _batch_ids(tokenizer, heads, special=True), strict=True):
        if len(ids) > budgets[i]:
            continue  # stays no_room_reason
        start, end = spans[i]
        prompt = prompts[i]
        inner = prompt[start:end]
        searches[i] = _Bisection(
            prompt[:start], inner, prompt[end:], budgets[i], 0, len(inner), ids
        )
    active = [i for i, s in searches.items() if s.too_long - s.fits > 1]
    while active:
        candidates = [searches[i].candidate() for i in active]
        encoded = _batch_ids(tokenizer, [text for _, text in candidates], special=True)
        for i, (middle, _), ids in zip(active, candidates, encoded, strict=True):
            search = searches[i]
            if len(ids) <= search.budget:
                search.fits, search.best = middle, ids
            else:
                search.too_long = middle
        active = [i for i in active if searches[i].too_long - searches[i].fits > 1]
    for i, search in searches.items():
        results[i] = (search.best, True)
    return results


def encode_columns(
    tokenizer,
    columns: dict[str, Sequence[Any]],
    *,
    max_prompt_tokens: int,
    max_target_tokens: int,
    max_total_tokens: int,
) -> dict[str, list]:
    """Training features of a batch in columns (`datasets.map(batched=True)` form).

    In: EXAMPLE_COLUMNS. Out, one row per example: id, input_ids (prompt + target),
    prompt_length, truncated, and `dropped` ("" when kept, else the reason `encode_example`
    raises). Labels and masks follow from input_ids and prompt_length (`training_features`).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; the target must end with one")
    n = len(columns["id"])
    targets = [t + "\n" if t else "" for t in columns["target"]]
    target_ids = _batch_ids(tokenizer, targets, special=False)
    dropped = [""] * n
    budgets = [0] * n
    for i in range(n):
        if not columns["target"][i]:
            dropped[i] = "no target"
            continue
        target_ids[i] = list(target_ids[i]) + [tokenizer.eos_token_id]
        if len(target_ids[i]) > max_target_tokens:
            dropped[i] = "target too long"
            continue
        budgets[i] = min(max_prompt_tokens, max_total_tokens - len(target_ids[i]))
    todo = [i for i in range(n) if not dropped[i]]
    spans = [
        None
        if columns["span_start"][i] == NO_SPAN
        else (columns["span_start"][i], columns["span_end"][i])
        for i in todo
    ]
    fitted = fit_prompts(
        tokenizer,
        [columns["prompt"][i] for i in todo],
        spans,
        [budgets[i] for i in todo],
        no_room_reason="no room for target",
    )
    input_ids: list[list[int]] = [[] for _ in range(n)]
    prompt_length = [0] * n
    truncated = [False] * n
    for i, result in zip(todo, fitted, strict=True):
        if isinstance(result, str):
            dropped[i] = result
            continue
        prompt, cut = result
        input_ids[i] = list(prompt) + target_ids[i]
        prompt_length[i] = len(prompt)
        truncated[i] = cut
    return {
        "id": list(columns["id"]),
        "input_ids": input_ids,
        "prompt_length": prompt_length,
        "truncated": truncated,
        "dropped": dropped,
    }


def training_features(
    example_id: str, input_ids: list[int], prompt_length: int, truncated: bool, loss_on: str
) -> dict[str, Any]:
    """The feature dict `encode_example` returns, rebuilt from what the cache stores."""
    target_length = len(input_ids) - prompt_length
    if loss_on == "all":
        labels = list(input_ids)
    else:
        labels = [IGNORE_INDEX] * prompt_length + list(input_ids[prompt_length:])
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": [1] * len(input_ids),
        "completion_mask": [0] * prompt_length + [1] * target_length,
        "prompt_length": prompt_length,
        "truncated": truncated,
        "id": example_id,
    }


def example_columns(examples: Sequence[TaskExample]) -> dict[str, list]:
    """EXAMPLE_COLUMNS of some examples (an Arrow-friendly form of what encoding reads)."""
    spans = [e.meta.get("inner_span") for e in examples]
    return {
        "id": [e.id for e in examples],
        "prompt": [e.prompt for e in examples],
        "target": [e.target for e in examples],
        "span_start": [NO_SPAN if s is None else s[0] for s in spans],
        "span_end": [NO_SPAN if s is None else s[1] for s in spans],
    }


def encode_examples_batched(
    tokenizer,
    examples: Sequence[TaskExample],
    *,
    loss_on: str = "all",
    batch_size: int = 256,
    **budgets: int,
) -> tuple[list[dict[str, Any]], list[str]]:
    """In-memory batched encoding: (features of kept examples, per example its drop reason)."""
    features, reasons = [], []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        out = encode_columns(tokenizer, example_columns(chunk), **budgets)
        for i in range(len(chunk)):
            reasons.append(out["dropped"][i])
            if not out["dropped"][i]:
                features.append(
                    training_features(
                        out["id"][i],
                        out["input_ids"][i],
                        out["prompt_length"][i],
                        out["truncated"][i],
                        loss_on,
                    )
                )
    return features, reasons
