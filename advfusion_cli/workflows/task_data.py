"""The examples a training stage reads: load the task for some languages, cap, encode.

Training uses the `train` split, evaluation the `validation` split (eval loss on the
completion only). `data.max_train_records` / `max_eval_records` cap each language with a
seeded sample, so a small run still sees every language it asks for. Loads are cached per
process: a plan, AdvFusion's two phases and several adapters read each file once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from advfusion_cli.errors import UserError
from advfusion_cli.spec.schema import DataSpec

SPLITS = ("train", "validation")


def task_options(data: DataSpec) -> dict[str, Any]:
    """The loader's task options that the job spec's data section sets."""
    if data.task == "commit-message":
        return {"seed": data.split_seed}
    if data.task == "code-generation":
        return {
            "exec_outcome": "PASSED" if data.exec_outcome_filter else None,
            "split_seed": data.split_seed,  # the validation carve-out of train
        }
    if data.custom is not None:
        return data.custom.loader_options(data.split_seed)
    return {"subsets": (data.subset,)}


def _cap(examples: list, limit: int | None, seed: int) -> list:
    if limit is None or len(examples) <= limit:
        return examples
    picked = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in picked]


@lru_cache(maxsize=16)
def _load(data_json: str, language: str) -> dict[str, tuple]:
    """One language's train and validation examples (capped), keyed by split."""
    from advfusion_cli.data import load_task

    data = DataSpec.model_validate_json(data_json)
    options = task_options(data)
    if data.task == "code-generation":  # eval loss needs targets: carve them out of train
        from advfusion_cli.data.tasks.code_generation import TRAINING_VALIDATION_FRACTION

        options["validation_fraction"] = TRAINING_VALIDATION_FRACTION
    loaded = load_task(
        data.task, data.source, [language], SPLITS, revision=data.revision, **options
    )
    by_split = {split: [e for e in loaded.examples if e.split == split] for split in SPLITS}
    if not by_split["train"]:
        raise UserError(f"No {data.task} training examples for '{language}' in {data.source}.")
    return {
        "train": tuple(_cap(by_split["train"], data.max_train_records, data.split_seed)),
        "validation": tuple(_cap(by_split["validation"], data.max_eval_records, data.split_seed)),
    }


def load_examples(data: DataSpec, language: str, split: str) -> list:
    """Rendered examples of one language and split (capped), without tokenizing."""
    # The cache key leaves out which languages the spec lists: loads are per language.
    return list(_load(data.model_dump_json(exclude={"languages", "target"}), language)[split])


def count_examples(data: DataSpec, languages: Sequence[str]) -> dict[str, dict[str, int]]:
    """Examples per language and split (train, validation): what a plan needs, no tokenizer."""
    return {
        language: {split: len(load_examples(data, language, split)) for split in SPLITS}
        for language in languages
    }


@dataclass
class StageData:
    """Encoded features for one phase, and what was kept, dropped and cut."""

    train: list[dict] = field(default_factory=list)
    eval: list[dict] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # language -> split -> n
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)


class StageEncoder:
    """Tokenizes each (language, split) once for all phases of a run."""

    def __init__(self, data: DataSpec, tokenizer):
        from advfusion_cli.data import DataStats

        self.data = data
        self.tokenizer = tokenizer
        self.stats = DataStats(task=data.task, source=data.source)
        self._features: dict[tuple[str, str], list[dict]] = {}

    def features(self, language: str, split: str) -> list[dict]:
        from advfusion_cli.data import encode_examples

        key = (language, split)
        if key not in self._features:
            data = self.data
            encoded = encode_examples(
                self.tokenizer,
                load_examples(data, language, split),
                stats=self.stats,
                max_prompt_tokens=data.max_prompt_tokens,
                max_target_tokens=data.max_target_tokens,
                max_total_tokens=data.max_total_tokens,
                loss_on=data.loss_on,
            )
            if split == "train" and not encoded:
                raise UserError(
                    f"Every {language} training example was dropped while encoding "
                    f"({dict(self.stats.dropped)}); raise data.max_total_tokens or "
                    "data.max_target_tokens."
                )
            self._features[key] = encoded
        return self._features[key]

    def stage(self, train_languages: Sequence[str], eval_languages: Sequence[str]) -> StageData:
        stage = StageData()
        for split, languages, out in (
            ("train", train_languages, stage.train),
            ("validation", eval_languages, stage.eval),
        ):
            for language in languages:
                features = self.features(language, split)
                stage.counts.setdefault(language, {})[split] = len(features)
                out.extend(features)
        stage.dropped = dict(self.stats.dropped)
        stage.truncated = dict(self.stats.truncated)
        return stage
