"""Token budgets for a generation: how long the prompt may be, how many new tokens, what was cut.

The prompt is cut exactly as in training and evaluation (data/encoding.py: the end of the
inner text goes, the template survives) to the run's `data.max_prompt_tokens`, and further
when the model's positions must also hold the new tokens. When the user gives no
`--max-new-tokens`, the authors' 512 is used, lowered to what the model's positions leave
after the prompt (never below a quarter of them, cutting the prompt instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from advfusion_cli.data.records import TaskExample
from advfusion_cli.errors import UserError
from advfusion_cli.inference.generation import AUTHORS_MAX_NEW_TOKENS


@dataclass(frozen=True)
class Cut:
    """How much of one prompt's inner text (diff, code, statement) was cut to fit."""

    what: str  # "diff", "source code", "problem statement"
    budget: int  # prompt tokens allowed
    full_tokens: int
    kept_tokens: int
    total_chars: int
    kept_chars: int | None  # None when the kept ids do not decode back to the prompt's text
    total_files: int = 0  # diffs: files in the prompt, and how many survive whole
    whole_files: int = 0

    def message(self, name: str) -> str:
        kept = f"kept {self.kept_tokens:,} of {self.full_tokens:,} prompt tokens"
        if self.kept_chars is not None:
            cut = self.total_chars - self.kept_chars
            kept += f"; {cut:,} of the {self.total_chars:,} characters of the {self.what} cut"
        if self.total_files > 1:
            kept += f"; {self.whole_files} of {self.total_files} files whole"
        return f"{name}: the {self.what} was cut to fit the prompt budget of {self.budget:,} tokens ({kept})."


def prompt_budget(max_prompt_tokens: int, max_positions: int | None, max_new_tokens: int) -> int:
    """Prompt tokens allowed: the run's budget, and room for the new tokens in the model."""
    if max_positions is None:
        return max_prompt_tokens
    return min(max_prompt_tokens, max_positions - max_new_tokens)


def auto_max_new_tokens(prompt_lengths: list[int], max_positions: int | None) -> int:
    """512 (the authors'), or what the model's positions leave after the longest prompt."""
    if max_positions is None:
        return AUTHORS_MAX_NEW_TOKENS
    room = max_positions - max(prompt_lengths, default=0)
    return max(1, min(AUTHORS_MAX_NEW_TOKENS, max(room, max_positions // 4)))


def _kept_chars(tokenizer, ids: list[int], example: TaskExample) -> int | None:
    """Characters of the inner text left in the cut prompt (by decoding the kept ids)."""
    start, end = example.meta["inner_span"]
    head, tail = example.prompt[:start], example.prompt[end:]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    if not (decoded.startswith(head) and decoded.endswith(tail)):
        return None
    return max(0, len(decoded) - len(head) - len(tail))


def measure_cut(tokenizer, example: TaskExample, feature: dict, budget: int, what: str) -> Cut:
    """What `encode_prompt_for_generation` cut from `example` (feature["truncated"] is true)."""
    full = len(tokenizer(example.prompt, add_special_tokens=True)["input_ids"])
    start, end = example.meta["inner_span"]
    kept_chars = _kept_chars(tokenizer, feature["input_ids"], example)
    ends = example.meta.get("file_ends") or []
    whole = sum(e <= start + kept_chars for e in ends) if kept_chars is not None else 0
    return Cut(
        what=what,
        budget=budget,
        full_tokens=full,
        kept_tokens=feature["prompt_length"],
        total_chars=end - start,
        kept_chars=kept_chars,
        total_files=len(ends),
        whole_files=whole,
    )


def too_long_error(name: str, budget: int, max_positions: int | None) -> UserError:
    where = f" with {max_positions} positions" if max_positions else ""
    return UserError(
        f"{name}: the prompt's template alone does not fit in {budget} tokens (the run's "
        f"prompt budget, leaving room for the new tokens in a model{where}); lower "
        "--max-new-tokens."
    )
