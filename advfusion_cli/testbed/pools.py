"""The program pools every task draws from, split before any task sees them.

Test programs are drawn first, then validation, train, and a separate pool for commit
edits; each pool excludes the programs of the pools before it, so no program (as source
text) is in two splits, and the pretraining corpus can exclude all evaluation programs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

from .config import TestbedConfig
from .generator import fingerprint, problem_stream
from .problems import Problem

# Commit records per program and language, on average (different edits of one file).
EDITS_PER_PROGRAM = 2
# Spare programs in the commit pool for files where fewer edits apply.
COMMIT_POOL_SLACK = 1.25


@dataclass(frozen=True)
class Pools:
    test: tuple[Problem, ...]
    validation: tuple[Problem, ...]
    train: tuple[Problem, ...]
    commit: tuple[Problem, ...]

    def split(self, name: str) -> tuple[Problem, ...]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    def fingerprints(self, *names: str) -> set[str]:
        return {fingerprint(p.program) for name in names for p in getattr(self, name)}


def commit_records(config: TestbedConfig, language: str) -> int:
    """CommitPackFT has only a train split (the loader splits it by repository), so each
    language gets train + validation + test records in one file."""
    return config.train_size(language) + config.validation_per_language + config.test_per_language


def commit_split_fractions(config: TestbedConfig, language: str) -> tuple[float, float, float]:
    """Train/validation/test fractions that, applied to whole repositories (all of about
    equal size), give `language` its configured split sizes: the target keeps full-size
    validation and test splits while its train split stays ~10x smaller."""
    total = commit_records(config, language)
    train = config.train_size(language)
    return (train / total, config.validation_per_language / total, config.test_per_language / total)


@lru_cache(maxsize=4)
def build_pools(config: TestbedConfig) -> Pools:
    sizes = {
        "test": config.test_per_language,
        "validation": config.validation_per_language,
        "train": config.train_per_language,
        "commit": math.ceil(
            COMMIT_POOL_SLACK
            * max(commit_records(config, lang) for lang in config.languages)
            / EDITS_PER_PROGRAM
        ),
    }
    taken: set[str] = set()
    pools = {}
    for name, size in sizes.items():
        stream = problem_stream(config.seed, name, exclude=taken)
        pools[name] = tuple(itertools.islice(stream, size))
        taken |= {fingerprint(p.program) for p in pools[name]}
    return Pools(**pools)
