"""Prepared training features as memory-mapped `datasets` Arrow files, and what fingerprints them.

`build_features` writes the rendered examples of one (language, split) to Arrow, tokenizes
them with `datasets.map(batched=True, num_proc=...)` through the batch encoder, and leaves
the features in the entry folder; `load_features` opens them memory-mapped and gives the
trainer a `FeatureRows` sequence that builds one example's dict when indexed, so no Python
list of every example is ever made. The fingerprints (`source_fingerprint`,
`tokenizer_fingerprint`) are the parts of a cache key that name the inputs on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from advfusion_cli.data.batch_encoding import EXAMPLE_COLUMNS, encode_columns, example_columns
from advfusion_cli.data.cache import DamagedEntry
from advfusion_cli.data.records import TaskExample

EXAMPLES_FILE = "examples.arrow"  # staging only: removed once the features are written
FEATURES_FILE = "features.arrow"
WRITE_BATCH = 1000  # examples per Arrow record batch
MAP_BATCH = 256  # examples per tokenizer round
RECORDS_PER_PROCESS = 2000  # fewer records than this per process: not worth another process
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
)


# ---- fingerprints ----------------------------------------------------------------------------


def source_fingerprint(root: Path) -> list[list]:
    """[relative path, size, mtime_ns] of every file a task could read under `root`.

    Hidden folders (.cache, .git) are skipped. Any added, removed, rewritten or touched file
    changes the fingerprint; unchanged files are not read, so this costs one stat per file.
    """
    root = Path(root)
    if root.is_file():
        stat = root.stat()
        return [[root.name, stat.st_size, stat.st_mtime_ns]]
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            stat = path.stat()
            found.append([path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns])
    return found


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides the ids: the tokenizer's files when it was loaded from
    a folder, its serialized fast tokenizer (vocabulary, merges, normalizer, post-processor)
    and its special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    if folder.is_dir():
        for name in _TOKENIZER_FILES:
            if (folder / name).is_file():
                digest.update(name.encode() + (folder / name).read_bytes())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:  # a slow tokenizer: its vocabulary stands in for the serialized form
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    special = {
        "map": tokenizer.special_tokens_map,
        "eos": tokenizer.eos_token_id,
        "bos": tokenizer.bos_token_id,
        "add_bos": getattr(tokenizer, "add_bos_token", None),
        "add_eos": getattr(tokenizer, "add_eos_token", None),
    }
    digest.update(json.dumps(special, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# ---- building --------------------------------------------------------------------------------


def _example_features():
    from datasets import Features, Value

    return Features(
        {
            "id": Value("string"),
            "prompt": Value("string"),
            "target": Value("string"),
            "span_start": Value("int64"),
            "span_end": Value("int64"),
        }
    )


def _feature_features():
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "input_ids": List(Value("int32")),  # (prompt + target tokens,)
            "prompt_length": Value("int32"),
            "truncated": Value("bool"),
            "dropped": Value("string"),  # "" = kept, else the reason (as encode_example raises)
        }
    )


def default_num_proc(n_records: int) -> int:
    """Processes for tokenizing: one per RECORDS_PER_PROCESS records, at most one per core."""
    return max(1, min(os.cpu_count() or 1, n_records // RECORDS_PER_PROCESS))


@contextmanager
def _quiet_datasets(num_proc: int):
    """No `datasets` progress bars on stderr; with worker processes, no fork warning from the
    tokenizers library either (the workers are the parallelism then)."""
    from datasets.utils import logging as ds_logging

    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    if num_proc > 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if bars:
            ds_logging.enable_progress_bar()
        if num_proc > 1:
            if saved is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = saved


def write_examples(examples: Sequence[TaskExample], path: Path) -> None:
    """EXAMPLE_COLUMNS of `examples` to an Arrow file, a record batch at a time."""
    with example_writer(path) as write:
        for start in range(0, len(examples), WRITE_BATCH):
            write(example_columns(examples[start : start + WRITE_BATCH]))


@contextmanager
def example_writer(path: Path):
    """A function writing EXAMPLE_COLUMNS batches (dict of columns) to an Arrow file."""
    from datasets.arrow_writer import ArrowWriter

    with ArrowWriter(features=_example_features(), path=str(path)) as writer:
        yield writer.write_batch
        writer.finalize()


def build_features(
    folder: Path,
    examples: Sequence[TaskExample],
    tokenizer,
    budgets: dict[str, int],
    *,
    num_proc: int | None = None,
) -> dict[str, Any]:
    """Tokenize `examples` into Arrow files in `folder`; returns the entry's info."""
    staged = folder / EXAMPLES_FILE
    write_examples(examples, staged)
    try:
        return encode_example_file(folder, staged, None, tokenizer, budgets, num_proc=num_proc)
    finally:
        staged.unlink()


def encode_example_file(
    folder: Path,
    examples_file: Path,
    rows: Sequence[int] | None,
    tokenizer,
    budgets: dict[str, int],
    *,
    num_proc: int | None = None,
    parts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Tokenize the examples at `rows` (all when None) of an EXAMPLE_COLUMNS Arrow file into
    FEATURES_FILE (and its shards) in `folder`, in parallel; returns the entry's info.

    `parts` names consecutive runs of `rows` ({"train": 900, "validation": 100}): one pass
    tokenizes them all, and the info counts drops and cuts per part (`load_features(part=)`).
    """
    from datasets import Dataset

    source = Dataset.from_file(str(examples_file))
    if rows is not None:
        source = source.select(rows)
    n_records = source.num_rows
    num_proc = num_proc or default_num_proc(n_records)
    num_proc = max(1, min(num_proc, n_records))
    with _quiet_datasets(num_proc):
        features = source.map(
            partial(encode_columns, tokenizer, **budgets),
            batched=True,
            batch_size=MAP_BATCH,
            num_proc=num_proc if num_proc > 1 else None,
            input_columns=None,
            remove_columns=list(EXAMPLE_COLUMNS),
            features=_feature_features(),
            cache_file_name=str(folder / FEATURES_FILE),
            load_from_cache_file=False,
            new_fingerprint=hashlib.sha256(str(folder).encode()).hexdigest()[:16],
        )
        files = sorted(Path(f["filename"]).name for f in features.cache_files)
        dropped_column = features.data.column("dropped").to_pylist()
        truncated_column = features.data.column("truncated").to_pylist()
        rows_out = features.num_rows
    del source, features

    def counts(start: int, stop: int) -> dict[str, Any]:
        return {
            "start": start,
            "rows": stop - start,
            "dropped": dict(Counter(r for r in dropped_column[start:stop] if r)),
            "truncated": sum(truncated_column[start:stop]),
        }

    info = {"files": files, "rows": rows_out, "num_proc": num_proc, **counts(0, rows_out)}
    if parts is not None:
        if sum(parts.values()) != rows_out:
            raise ValueError(f"parts {parts} do not add up to the {rows_out} rows encoded")
        info["parts"], start = {}, 0
        for name, size in parts.items():
            info["parts"][name] = counts(start, start + size)
            start += size
    return info


# ---- reading ---------------------------------------------------------------------------------


class FeatureRows(Sequence):
    """The kept examples of a feature entry, read from memory-mapped Arrow one at a time.

    Indexing gives exactly the dict `encode_example` returns (plus "id"): labels and masks
    are rebuilt from input_ids and prompt_length, which is all the cache stores per example.
    """

    def __init__(self, dataset, kept, loss_on: str):
        self._dataset = dataset  # datasets.Dataset over the entry's Arrow files (mmapped)
        self._kept = kept  # numpy int64 array: Arrow row of each kept example
        self.loss_on = loss_on

    def __len__(self) -> int:
        return len(self._kept)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from advfusion_cli.data.batch_encoding import training_features

        if not -len(self) <= index < len(self):
            raise IndexError(index)
        row = self._dataset[int(self._kept[index])]
        return training_features(
            row["id"], row["input_ids"], row["prompt_length"], row["truncated"], self.loss_on
        )


def load_features(
    folder: Path, info: dict[str, Any], loss_on: str, part: str | None = None
) -> FeatureRows:
    """Open an entry's features memory-mapped (only those of `part` when given: see
    `encode_example_file`); DamagedEntry when they are not what was built."""
    import numpy as np
    import pyarrow.compute as pc
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(str(folder / name)) for name in info["files"]]
    if not parts:
        raise DamagedEntry("no feature files")
    dataset = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if dataset.num_rows != info["rows"] or set(dataset.column_names) != set(_feature_features()):
        raise DamagedEntry("the feature files do not hold what was built")
    kept = np.flatnonzero(pc.equal(dataset.data.column("dropped"), "").to_numpy())
    if part is not None:
        span = info["parts"][part]
        kept = kept[(kept >= span["start"]) & (kept < span["start"] + span["rows"])]
    return FeatureRows(dataset, kept, loss_on)


class ConcatRows(Sequence):
    """Several sequences read as one (a phase's languages), without copying any of them."""

    def __init__(self, parts: Sequence[Sequence]):
        import numpy as np

        self._parts = list(parts)
        self._ends = np.cumsum([len(p) for p in self._parts])

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int):
        import numpy as np

        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self._ends[part - 1]) if part else 0
        return self._parts[part][index - start]
