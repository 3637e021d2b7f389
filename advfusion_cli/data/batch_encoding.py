"""The encoder of `encoding.py`, run over a batch at a time: one fast-tokenizer call per round.

Results are identical, token for token, to `encode_example` (tests/test_data_cache.py checks
every task and the shared real-schema samples): the same target ids, the same budgets, and
the same bisection over the inner text of an over-long prompt, visiting the same candidates.
Two things differ: every over-long prompt of the batch takes its next bisection step in the
same round, so each round is one batched tokenizer call (Rust) instead of one Python call
per candidate; and where the tokenizer allows it (window_fit.py), a candidate is counted by
tokenizing only the text after the cut's restart point rather than the whole candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advfusion_cli.data.encoding import IGNORE_INDEX
from advfusion_cli.data.records import TaskExample
from advfusion_cli.data.window_fit import (
    GUARD,
    PromptWindows,
    disable_windowing,
    windowing_for,
)

# Columns the batch encoder reads: what `encode_example` uses of a TaskExample.
EXAMPLE_COLUMNS = ("id", "prompt", "target", "span_start", "span_end")
NO_SPAN = -1  # span_start/end of an example without a cuttable inner text


def _batch_ids(tokenizer, texts: Sequence[str], *, special: bool) -> list[list[int]]:
    if not texts:
        return []
    # verbose=False: the length warning is noise here; fitting the budget is done below.
    return tokenizer(list(texts), add_special_tokens=special, verbose=False)["input_ids"]


def _backend_ready(tokenizer) -> bool:
    """Whether the Rust tokenizer alone encodes as the transformers call does: that call
    switches truncation and padding off and sets `encode_special_tokens` before encoding."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return (
        backend is not None
        and backend.truncation is None
        and backend.padding is None
        and backend.encode_special_tokens == bool(getattr(tokenizer, "split_special_tokens", False))
    )


def _batch_encodings(tokenizer, texts: Sequence[str]) -> tuple[list[list[int]], list]:
    """Ids with special tokens, and the fast tokenizer's Encoding objects (offsets)."""
    if not texts:
        return [], []
    if _backend_ready(tokenizer):
        encodings = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=True)
        return [e.ids for e in encodings], encodings
    out = tokenizer(list(texts), add_special_tokens=True, verbose=False)
    return out["input_ids"], out.encodings


def _window_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of windows (no special tokens) straight from the Rust tokenizer: no offsets and no
    per-text Python conversion. The self-check compares against the transformers call."""
    if not texts:
        return []
    if not _backend_ready(tokenizer):
        return _batch_ids(tokenizer, texts, special=False)
    return [
        e.ids
        for e in tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    ]


@dataclass
class _Bisection:
    """One over-long prompt's search state: encode(fits) fits, encode(too_long) does not.

    With `windows`, a candidate is counted by tokenizing only the text after a restart
    point (window_fit.py); without, the whole candidate is tokenized, as `fit_prompt` does.
    """

    head: str
    inner: str
    tail: str
    budget: int
    fits: int
    too_long: int
    best: list[int]
    windows: PromptWindows | None = None

    @property
    def searching(self) -> bool:
        return self.too_long - self.fits > 1

    def middle(self) -> int:
        return (self.fits + self.too_long) // 2

    def candidate(self) -> tuple[int, str]:
        middle = self.middle()
        return middle, self.head + self.inner[:middle] + self.tail

    def settle(self, middle: int, count: int, ids) -> None:
        """Record the outcome at `middle`; `ids` builds its token ids when they are kept."""
        if count <= self.budget:
            self.fits, self.best = middle, ids()
        else:
            self.too_long = middle


def _bisect_whole(tokenizer, searches: list[_Bisection]) -> None:
    """Each round tokenizes every active search's whole candidate in one batched call."""
    active = [s for s in searches if s.searching]
    while active:
        candidates = [s.candidate() for s in active]
        encoded = _batch_ids(tokenizer, [text for _, text in candidates], special=True)
        for search, (middle, _), ids in zip(active, candidates, encoded, strict=True):
            search.settle(middle, len(ids), lambda ids=ids: ids)
        active = [s for s in active if s.searching]


def _bisect_windowed(tokenizer, searches: list[_Bisection]) -> None:
    """The same bisection, each candidate counted from a window: a candidate whose tokens
    outside the window already pass the budget is too long without tokenizing anything."""
    active = [s for s in searches if s.searching]
    while active:
        pending = []  # (search, middle, restart index, tokens outside the window, window)
        for search in active:
            middle = search.middle()
            windows = search.windows
            restart, text = windows.window(len(search.head) + middle, search.tail)
            fixed = windows.fixed_tokens(restart)
            if fixed > search.budget:
                search.too_long = middle
            else:
                pending.append((search, middle, restart, fixed, text))
        encoded = _window_ids(tokenizer, [text for *_, text in pending])
        for (search, middle, restart, fixed, _), ids in zip(pending, encoded, strict=True):
            search.settle(
                middle, fixed + len(ids), lambda s=search, r=restart, w=ids: s.windows.ids(r, w)
            )
        active = [s for s in active if s.searching]


# Long prompts per process whose windowed fit is checked against the whole-candidate one.
SELF_CHECK_PROMPTS = 8
_checked: set[int] = set()


def _self_check(tokenizer, searches: list[_Bisection]) -> bool:
    """Fit the first windowed searches of this process both ways; False (and windowing off
    for the tokenizer, with a warning) when any result differs."""
    if id(tokenizer) in _checked:
        return True
    sample = [s for s in searches if s.windows is not None][:SELF_CHECK_PROMPTS]
    if not sample:
        return True
    import copy

    whole = [copy.copy(s) for s in sample]
    for s in whole:
        s.windows = None
    _bisect_whole(tokenizer, whole)
    windowed = [copy.copy(s) for s in sample]
    _bisect_windowed(tokenizer, windowed)
    if [(s.fits, s.best) for s in whole] != [(s.fits, s.best) for s in windowed]:
        import logging

        logging.getLogger(__name__).warning(
            "windowed prompt fitting differs from whole-prompt fitting for %s; "
            "tokenizing whole candidates instead (slower, same ids as before)",
            getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
        )
        disable_windowing(tokenizer)
        return False
    if len(sample) == SELF_CHECK_PROMPTS:
        _checked.add(id(tokenizer))
    return True


# A prompt much longer than its budget is first tokenized only up to where the budget (and
# the windows' margin) is sure to be passed: PROBE_SLACK times the characters per token seen
# so far in this process. When that prefix does not prove the prompt too long, it is
# tokenized whole after all.
PROBE_SLACK = 1.25
PROBE_MIN_TOKENS_SEEN = 2000  # characters per token are estimated from at least this many
_chars_and_tokens: dict[int, list[int]] = {}


def _probe_length(tokenizer, budget: int) -> int | None:
    seen = _chars_and_tokens.get(id(tokenizer))
    if seen is None or seen[1] < PROBE_MIN_TOKENS_SEEN:
        return None
    tokens = budget + PromptWindows.MARGIN_TOKENS + GUARD
    return int(tokens * seen[0] / seen[1] * PROBE_SLACK) + GUARD


def _encode_prompts(tokenizer, prompts, spans, budgets, windowing):
    """Per prompt (ids, None) when tokenized whole, or (None, PromptWindows) for a long one
    known from a prefix; whole encodings are kept in `encodings` for windowing."""
    probes = [None] * len(prompts)
    if windowing is not None:
        for i, prompt in enumerate(prompts):
            length = _probe_length(tokenizer, budgets[i])
            if length and len(prompt) > length and PromptWindows.usable(prompt, windowing):
                probes[i] = length
    texts = [p if probes[i] is None else p[: probes[i]] for i, p in enumerate(prompts)]
    if windowing is None:
        return _batch_ids(tokenizer, texts, special=True), [None] * len(prompts), None
    ids, encodings = _batch_encodings(tokenizer, texts)
    windows: list[PromptWindows | None] = [None] * len(prompts)
    again = []
    for i, length in enumerate(probes):
        if length is None:
            continue
        probe = PromptWindows(prompts[i], encodings[i], windowing, budgets[i], probe_end=length)
        if probe.proves_too_long(budgets[i]):
            ids[i], windows[i] = None, probe
        else:
            again.append(i)
    if again:
        whole_ids, whole = _batch_encodings(tokenizer, [prompts[i] for i in again])
        for i, i_ids, encoding in zip(again, whole_ids, whole, strict=True):
            ids[i], encodings[i] = i_ids, encoding
    counts = _chars_and_tokens.setdefault(id(tokenizer), [0, 0])
    for i, i_ids in enumerate(ids):
        if i_ids is not None:
            counts[0] += len(prompts[i])
            counts[1] += len(i_ids)
    return ids, windows, encodings


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
    windowing = windowing_for(tokenizer)
    full, windows, encodings = _encode_prompts(tokenizer, prompts, spans, budgets, windowing)
    long: list[int] = []
    for i, ids in enumerate(full):
        if ids is not None and len(ids) <= budgets[i]:
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
        # probed prompts come with their windows (and were found usable then)
        needs_windows = windows[i] is None and windowing is not None
        if needs_windows and PromptWindows.usable(prompt, windowing):
            windows[i] = PromptWindows(prompt, encodings[i], windowing, budgets[i])
        searches[i] = _Bisection(
            prompt[:start], inner, prompt[end:], budgets[i], 0, len(inner), ids, windows[i]
        )
    if windowing is not None and not _self_check(tokenizer, list(searches.values())):
        # windowing is off for this tokenizer now: everything again, the whole-prompt way
        return fit_prompts(tokenizer, prompts, spans, budgets, no_room_reason=no_room_reason)
    _bisect_whole(tokenizer, [s for s in searches.values() if s.windows is None])
    _bisect_windowed(tokenizer, [s for s in searches.values() if s.windows is not None])
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


def row_columns(rows: Sequence[dict]) -> dict[str, list]:
    """EXAMPLE_COLUMNS of {id, prompt, target, inner_span} dicts (what a task's `stream`
    writes; inner_span None when nothing can be cut)."""
    spans = [row["inner_span"] for row in rows]
    return {
        "id": [row["id"] for row in rows],
        "prompt": [row["prompt"] for row in rows],
        "target": [row["target"] for row in rows],
        "span_start": [NO_SPAN if s is None else s[0] for s in spans],
        "span_end": [NO_SPAN if s is None else s[1] for s in spans],
    }


def example_columns(examples: Sequence[TaskExample]) -> dict[str, list]:
    """EXAMPLE_COLUMNS of some examples (an Arrow-friendly form of what encoding reads)."""
    return row_columns(
        [
            {
                "id": e.id,
                "prompt": e.prompt,
                "target": e.target,
                "inner_span": e.meta.get("inner_span"),
            }
            for e in examples
        ]
    )


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
