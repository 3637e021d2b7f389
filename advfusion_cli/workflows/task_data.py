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


ROWS_FILE = "examples.arrow"  # an examples entry: every example of one language, rendered
INDICES_FILE = "indices.json"  # and, per split, the rows training reads (capped)


def _write_examples_entry(data: DataSpec, language: str, folder) -> dict[str, int]:
    """One language's rendered examples to Arrow, and per split the rows a run reads.

    A task with a `stream` reader (CommitPackFT) hands its examples over in batches, so no
    list of them is ever held; the split is assigned afterwards from the few fields kept.
    Other tasks are read whole, as `load_examples` does. Either way the rows of a split are
    exactly `load_examples(data, language, split)`, in order, capped with the same sample.
    """
    from advfusion_cli.data.batch_encoding import row_columns
    from advfusion_cli.data.loader import can_stream, stream_task
    from advfusion_cli.data.prepared import example_writer, write_examples

    rows_path = folder / ROWS_FILE
    if can_stream(data.task):
        with example_writer(rows_path) as write:
            splits = stream_task(
                data.task,
                data.source,
                language,
                lambda batch: write(row_columns(batch)),
                revision=data.revision,
                **training_load_options(data),
            )
        by_split = {split: [] for split in SPLITS}
        for row, split in enumerate(splits):
            if split in by_split:
                by_split[split].append(row)
        if not by_split["train"]:
            load_examples(data, language, "train")  # raises the loader's own message
        indices = {
            "train": _cap(by_split["train"], data.max_train_records, data.split_seed),
            "validation": _cap(by_split["validation"], data.max_eval_records, data.split_seed),
        }
    else:  # no streaming reader: write the loaded (capped) examples
        loaded = {split: load_examples(data, language, split) for split in SPLITS}
        write_examples([*loaded["train"], *loaded["validation"]], rows_path)
        n_train = len(loaded["train"])
        indices = {
            "train": list(range(n_train)),
            "validation": list(range(n_train, n_train + len(loaded["validation"]))),
        }
    (folder / INDICES_FILE).write_text(json.dumps(indices))
    counts = {split: len(indices[split]) for split in SPLITS}
    return {**counts, "content": _entry_content_digest(rows_path, indices)}


CONTENT_BATCH = 2048  # rows hashed at a time (the digest does not depend on it)


class _ContentDigest:
    """sha256 over the examples a run reads, split by split, row by row: what the run trains
    and evaluates on, independent of how the rows were batched into Arrow."""

    def __init__(self) -> None:
        import hashlib

        self._digest = hashlib.sha256()

    def split(self, name: str) -> None:
        self._digest.update(f"\x00split:{name}\x00".encode())

    def columns(self, columns: dict[str, list]) -> None:
        from advfusion_cli.data.batch_encoding import EXAMPLE_COLUMNS

        for row in zip(*(columns[name] for name in EXAMPLE_COLUMNS), strict=True):
            self._digest.update(json.dumps(row, ensure_ascii=False).encode())
            self._digest.update(b"\n")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:16]


def _entry_content_digest(rows_path, indices: dict[str, list[int]]) -> str:
    from datasets import Dataset

    from advfusion_cli.data.batch_encoding import EXAMPLE_COLUMNS

    rows = Dataset.from_file(str(rows_path))
    digest = _ContentDigest()
    for split in SPLITS:
        digest.split(split)
        picked = indices[split]
        for start in range(0, len(picked), CONTENT_BATCH):
            batch = rows.select(picked[start : start + CONTENT_BATCH])
            digest.columns({name: batch[name] for name in EXAMPLE_COLUMNS})
    return digest.hexdigest()


def data_fingerprint(
    data: DataSpec, languages: Sequence[str], cache: PreparedCache | None = None
) -> str:
    """A digest of the examples (rendered, split and capped) that a run over `languages`
    reads: part of a run's identity, so edited records retrain what was trained on them.
    From the examples entries' manifests with a cache; computed in memory without one (the
    same digest either way)."""
    import hashlib

    per_language = {}
    for language in sorted(set(languages)):
        if cache is not None:
            per_language[language] = cache.load_or_build(
                "examples",
                _examples_key(data, language),
                build=lambda folder, lang=language: _write_examples_entry(data, lang, folder),
                load=_read_content_digest,
            )
        else:
            from advfusion_cli.data.batch_encoding import example_columns

            digest = _ContentDigest()
            for split in SPLITS:
                digest.split(split)
                digest.columns(example_columns(load_examples(data, language, split)))
            per_language[language] = digest.hexdigest()
    if len(per_language) == 1:
        return next(iter(per_language.values()))
    text = json.dumps(per_language, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_content_digest(entry, info: dict[str, Any]) -> str:
    from advfusion_cli.data.cache import DamagedEntry

    _read_examples_entry(entry, info)
    if not isinstance(info.get("content"), str):
        raise DamagedEntry("no content digest")
    return info["content"]


def _read_examples_entry(entry, info: dict[str, Any]) -> tuple[Any, dict[str, list[int]]]:
    from advfusion_cli.data.cache import DamagedEntry

    indices = json.loads((entry / INDICES_FILE).read_text())
    if {split: len(indices.get(split, [])) for split in SPLITS} != {
        split: int(info[split]) for split in SPLITS
    } or not isinstance(info.get("content"), str):
        raise DamagedEntry("the row indices do not match the counts")
    return entry / ROWS_FILE, indices


def examples_entry(
    data: DataSpec, language: str, cache: PreparedCache
) -> tuple[Any, dict[str, list[int]]]:
    """(Arrow file of one language's rendered examples, rows of each split): built once."""
    return cache.load_or_build(
        "examples",
        _examples_key(data, language),
        build=lambda folder: _write_examples_entry(data, language, folder),
        load=_read_examples_entry,
    )


def count_examples(
    data: DataSpec, languages: Sequence[str], cache: PreparedCache | None = None
) -> dict[str, dict[str, int]]:
    """Examples per language and split (train, validation): what a plan needs, no tokenizer.
    With a cache, the counts come from the examples entry (built once, streamed)."""
    if cache is None:
        return {
            language: {split: len(load_examples(data, language, split)) for split in SPLITS}
            for language in languages
        }
    counts = {}
    for language in languages:
        _, indices = examples_entry(data, language, cache)
        counts[language] = {split: len(indices[split]) for split in SPLITS}
    return counts


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
        self._cached: dict[str, dict[str, tuple[Sequence[dict], dict]]] = {}

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

    def _read_or_build(self, language: str) -> dict[str, tuple[Sequence[dict], dict]]:
        """One language's features from the cache: its train and validation rows are
        tokenized in one pass into one entry, and each split is read from its part."""
        from advfusion_cli.data.prepared import encode_example_file, load_features
        from advfusion_cli.data.prepared import tokenizer_fingerprint as fingerprint

        if self._tokenizer_fingerprint is None:
            self._tokenizer_fingerprint = fingerprint(self.tokenizer)
        key = {
            **_examples_key(self.data, language),
            "splits": SPLITS,
            "tokenizer": self._tokenizer_fingerprint,
            "budgets": self._budgets(),
        }

        def build(folder):
            # the rendered examples are needed only to build (a warm run never opens them)
            rows_file, indices = examples_entry(self.data, language, self.cache)
            return encode_example_file(
                folder,
                rows_file,
                [row for split in SPLITS for row in indices[split]],
                self.tokenizer,
                self._budgets(),
                parts={split: len(indices[split]) for split in SPLITS},
            )

        by_split, info = self.cache.load_or_build(
            "features",
            key,
            build=build,
            load=lambda entry, info: (
                {split: load_features(entry, info, self.data.loss_on, split) for split in SPLITS},
                info,
            ),
        )
        return {split: (by_split[split], info["parts"][split]) for split in SPLITS}

    def features(self, language: str, split: str) -> Sequence[dict]:
        key = (language, split)
        if key not in self._features:
            if self.cache is None:
                encoded = self._encode_in_memory(language, split)
            else:
                if language not in self._cached:
                    self._cached[language] = self._read_or_build(language)
                encoded, counts = self._cached[language][split]
                self.stats.dropped.update(counts["dropped"])
                self.stats.truncated[language] += counts["truncated"]
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
