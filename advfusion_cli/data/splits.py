"""Split names, and the seeded repository-grouped split for datasets that ship only `train`.

CommitPackFT has one train split per language. Holding out whole repositories keeps a
project's style and vocabulary from leaking from train into evaluation; with too few
repositories to give every split one, the split falls back to single commits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from advfusion_cli.errors import UserError, unknown_name_error

SPLITS: tuple[str, ...] = ("train", "validation", "test")
_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)

T = TypeVar("T")


def canonical_split(name: str) -> str:
    """`valid`/`val`/`dev` -> `validation`; unknown names are a UserError with a suggestion."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise unknown_name_error("split", name, SPLITS)
    return _ALIASES[key]


def split_of_name(name: str) -> str | None:
    """The split a file stem names (`multilingual_valid` -> validation, `prog_syn_val` -> ...)."""
    parts = name.lower().replace("-", "_").split("_")
    for part in reversed(parts):
        if part in _ALIASES:
            return _ALIASES[part]
    return None


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise UserError(
            f"split_fractions must be three non-negative numbers (train, validation, test) with "
            f"train > 0; got {list(fractions)}."
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise UserError(
            f"split_fractions must sum to 1; got {list(fractions)} (sum {sum(fractions)})."
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def _cut_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int] | None:
    """Sizes for n units: every split with a positive fraction gets at least one, or None."""
    held = [max(1, round(n * f)) if f > 0 else 0 for f in fractions[1:]]
    train = n - sum(held)
    if train < 1:
        return None
    return (train, held[0], held[1])


def _connected_groups(items: Sequence[T], repos_of: Callable[[T], list[str]]) -> list[str]:
    """Per item, a group key such that items sharing any repository share the key.

    CommitPackFT's `repos` may list several repositories (forks with the same commit);
    union-find over them keeps every repository inside exactly one split.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for item in items:
        repos = repos_of(item)
        for other in repos[1:]:
            a, b = find(repos[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(repos_of(item)[0]) for item in items]


def split_by_repository(
    items: Sequence[T],
    *,
    repos_of: Callable[[T], list[str]],
    unit_of: Callable[[T], str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> tuple[list[str], str]:
    """A split name per item, and the method used: "repository" or, with too few, "commit".

    Groups (or, in the fallback, units such as commit SHAs) are sorted, shuffled with
    `seed` and cut by count, so the result does not depend on the order items were read.
    """
    fractions = check_fractions(fractions)
    groups = _connected_groups(items, repos_of)
    method = "repository"
    keys = sorted(set(groups))
    sizes = _cut_sizes(len(keys), fractions)
    if sizes is None:
        method = "commit"
        groups = [unit_of(item) for item in items]
        keys = sorted(set(groups))
        sizes = _cut_sizes(len(keys), fractions) or (len(keys), 0, 0)
    random.Random(seed).shuffle(keys)
    assignment: dict[str, str] = {}
    start = 0
    for split, size in zip(SPLITS, sizes, strict=True):
        for key in keys[start : start + size]:
            assignment[key] = split
        start += size
    return [assignment[g] for g in groups], method
