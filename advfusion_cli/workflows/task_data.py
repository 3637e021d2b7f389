"""The examples a training stage reads: load the task for some languages, cap, encode.

Training uses the `train` split, evaluation the `validation` split (eval loss on the
completion only). `data.max_train_records` / `max_eval_records` cap each language with a
seeded sample, so a small run still sees every language it asks for. Loads are cached per
process: a plan, AdvFusion's two phases and several adapters read each file once. Tokenized
features (and the plan's counts) are kept on disk in the prepared-data cache
(advfusion_cli.data.cache) so later runs, stages and processes read them instead.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from advfusion_cli.errors import UserError
from advfusion_cli.spec.schema import DataSpec, JobSpec

if TYPE_CHECKING:
    from advfusion_cli.data.cache import PreparedCache

SPLITS = ("train", "validation")
DATA_CACHE_NAME = "data-cache"  # the cache's folder under the workdir unless output.data_cache


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


def training_load_options(data: DataSpec) -> dict[str, Any]:
    """The loader options a training run reads its data with: the task's options, plus (code
    generation) the validation carve-out from train, since eval loss needs targets."""
    options = task_options(data)
    if data.task == "code-generation":
        from advfusion_cli.data.tasks.code_generation import TRAINING_VALIDATION_FRACTION

        options["validation_fraction"] = TRAINING_VALIDATION_FRACTION
    return options


@lru_cache(maxsize=16)
def _load(data_json: str, language: str) -> dict[str, tuple]:
    """One language's train and validation examples (capped), keyed by split."""
    from advfusion_cli.data import load_task

    data = DataSpec.model_validate_json(data_json)
    options = training_load_options(data)
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


@lru_cache(maxsize=64)
def _source_root(
    task: str, source: str, language: str, options_json: str, revision: str | None = None
):
    """Where the records are (the testbed made, hub files fetched once per process)."""
    from advfusion_cli.data.loader import source_root

    return source_root(
        task, source, [language], SPLITS, revision=revision, **json.loads(options_json)
    )


def _examples_key(data: DataSpec, language: str) -> dict[str, Any]:
    """Everything that decides one language's capped train/validation examples."""
    from advfusion_cli.data.prepared import source_fingerprint

    options = training_load_options(data)
    root = _source_root(data.task, data.source, language, json.dumps(options), data.revision)
    return {
        "task": data.task,
        "task_options": options,
        "language": language,
        "splits": SPLITS,
        "source_files": source_fingerprint(root),
        # split_seed, caps, subset, filters; the token budgets belong to the features key
        "data": data.model_dump(
            mode="json", exclude={"languages", "target", "loss_on", *_BUDGET_KEYS}
        ),
    }


_BUDGET_KEYS = ("max_prompt_tokens", "max_target_tokens", "max_total_tokens")


def data_cache(spec: JobSpec) -> PreparedCache | None:
    """The prepared-data cache a spec asks for: output.data_cache or <workdir>/data-cache."""
    from advfusion_cli.data.cache import PreparedCache

    if not spec.output.use_data_cache:
        return None
    folder = (spec.output.data_cache or spec.output.workdir / DATA_CACHE_NAME).expanduser()
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        if spec.output.data_cache is None:
            return None  # an unusable workdir: the run's own workdir check names it
        raise UserError(f"output.data_cache: {existing} is not a writable folder.")
    return PreparedCache(folder)


def count_examples(
    data: DataSpec, languages: Sequence[str], cache: PreparedCache | None = None
) -> dict[str, dict[str, int]]:
    """Examples per language and split (train, validation): what a plan needs, no tokenizer.
    With a cache, counts of unchanged data are read back instead of loading the records."""

    def count(language: str) -> dict[str, int]:
        return {split: len(load_examples(data, language, split)) for split in SPLITS}

    if cache is None:
        return {language: count(language) for language in languages}
    return {
        language: cache.load_or_build(
            "examples",
            _examples_key(data, language),
            build=lambda folder, language=language: count(language),
            load=lambda entry, info: {split: int(info[split]) for split in SPLITS},
        )
        for language in languages
    }


@dataclass
class StageData:
    """Encoded features for one phase, and what was kept, dropped and cut."""

    train: Sequence[dict] = field(default_factory=list)
    eval: Sequence[dict] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # language -> split -> n
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)


class StageEncoder:
    """Tokenizes each (language, split) once for all phases of a run; with a cache, once for
    every run, stage and process that asks for the same data, tokenizer and budgets."""

    def __init__(self, data: DataSpec, tokenizer, cache: PreparedCache | None = None):
        from advfusion_cli.data import DataStats

        self.data = data
        self.tokenizer = tokenizer
        self.cache = cache
        self.stats = DataStats(task=data.task, source=data.source)
        self._features: dict[tuple[str, str], Sequence[dict]] = {}
        self._tokenizer_fingerprint: str | None = None

    def _budgets(self) -> dict[str, int]:
        return {key: getattr(self.data, key) for key in _BUDGET_KEYS}

    def _encode_in_memory(self, language: str, split: str) -> Sequence[dict]:
        from advfusion_cli.data.batch_encoding import encode_examples_batched

        features, reasons = encode_examples_batched(
            self.tokenizer,
            load_examples(self.data, language, split),
            loss_on=self.data.loss_on,
            **self._budgets(),
        )
        self.stats.dropped.update(r for r in reasons if r)
        self.stats.truncated[language] += sum(f["truncated"] for f in features)
        return features

    def _read_or_build(self, language: str, split: str) -> Sequence[dict]:
        from advfusion_cli.data.prepared import build_features, load_features
        from advfusion_cli.data.prepared import tokenizer_fingerprint as fingerprint

        if self._tokenizer_fingerprint is None:
            self._tokenizer_fingerprint = fingerprint(self.tokenizer)
        key = {
            **_examples_key(self.data, language),
            "split": split,
            "tokenizer": self._tokenizer_fingerprint,
            "budgets": self._budgets(),
        }
        rows, info = self.cache.load_or_build(
            "features",
            key,
            build=lambda folder: build_features(
                folder, load_examples(self.data, language, split), self.tokenizer, self._budgets()
            ),
            load=lambda entry, info: (load_features(entry, info, self.data.loss_on), info),
        )
        self.stats.dropped.update(info["dropped"])
        self.stats.truncated[language] += info["truncated"]
        return rows

    def features(self, language: str, split: str) -> Sequence[dict]:
        key = (language, split)
        if key not in self._features:
            if self.cache is None:
                encoded = self._encode_in_memory(language, split)
            else:
                encoded = self._read_or_build(language, split)
            if split == "train" and not len(encoded):
                raise UserError(
                    f"Every {language} training example was dropped while encoding "
                    f"({dict(self.stats.dropped)}); raise data.max_total_tokens or "
                    "data.max_target_tokens."
                )
            self._features[key] = encoded
        return self._features[key]

    def stage(self, train_languages: Sequence[str], eval_languages: Sequence[str]) -> StageData:
        from advfusion_cli.data.prepared import ConcatRows

        stage = StageData()
        for split, languages in (("train", train_languages), ("validation", eval_languages)):
            parts = []
            for language in languages:
                features = self.features(language, split)
                stage.counts.setdefault(language, {})[split] = len(features)
                parts.append(features)
            setattr(stage, "train" if split == "train" else "eval", ConcatRows(parts))
        stage.dropped = dict(self.stats.dropped)
        stage.truncated = dict(self.stats.truncated)
        return stage
