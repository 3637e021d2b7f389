"""The test items an evaluation scores: the same seeded selection for every method.

Items are the target language's examples of a split, sorted by id and shuffled with a fixed
seed, then cut to `--limit`; two evaluations with the same task, data, language, split, limit
and seed therefore score exactly the same items (what a paired comparison needs).
`one_shot` builds the prompt-only baseline's prompts: one training example of the target
language in front of each test prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

from advfusion_cli.data.records import TaskExample
from advfusion_cli.errors import UserError
from advfusion_cli.spec.schema import DataSpec

DEMO_SEPARATOR = "\n"  # after the demonstration's `target + "\n"`: one blank line


def load_split(data: DataSpec, language: str, split: str) -> list[TaskExample]:
    """Every example of `split` whose target side is `language`, sorted by id."""
    from advfusion_cli.data import load_task
    from advfusion_cli.workflows.task_data import task_options

    loaded = load_task(data.task, data.source, [language], split, **task_options(data))
    examples = [e for e in loaded.examples if e.language == language]
    if not examples:
        raise UserError(f"No {data.task} {split} examples for '{language}' in {data.source}.")
    return sorted(examples, key=lambda e: e.id)


def select_items(
    data: DataSpec, language: str, split: str, limit: int | None, seed: int = 0
) -> list[TaskExample]:
    """The seeded selection of test items (all of them when `limit` is None)."""
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}.")
    examples = load_split(data, language, split)
    random.Random(f"advfusion-eval/{seed}").shuffle(examples)
    return examples if limit is None else examples[:limit]


def ids_digest(examples: list[TaskExample]) -> str:
    """SHA-256 of the selected ids in order: two evaluations scored the same items iff equal."""
    return hashlib.sha256("\n".join(e.id for e in examples).encode()).hexdigest()


def one_shot(
    examples: list[TaskExample], data: DataSpec, language: str, seed: int = 0
) -> list[TaskExample]:
    """Each test prompt preceded by one training example (prompt + answer) of `language`.

    Demonstrations are drawn (seeded, per item) from the shorter half of the training
    examples, so the test prompt rarely has to be cut to make room for them; when it does,
    its own inner text is cut, never the demonstration.
    """
    pool = load_split(data, language, "train")
    pool.sort(key=lambda e: (len(e.prompt) + len(e.target), e.id))
    pool = pool[: max(1, len(pool) // 2)]
    rng = random.Random(f"advfusion-one-shot/{seed}")
    shots = []
    for example in examples:
        demo = rng.choice(pool)
        prefix = demo.prompt + demo.target + "\n" + DEMO_SEPARATOR
        meta = dict(example.meta, one_shot_id=demo.id)
        span = example.meta.get("inner_span")
        if span is not None:
            meta["inner_span"] = (span[0] + len(prefix), span[1] + len(prefix))
        shots.append(dataclasses.replace(example, prompt=prefix + example.prompt, meta=meta))
    return shots
