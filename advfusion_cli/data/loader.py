"""`load_task`: one call from a task name and a source to rendered examples plus statistics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advfusion_cli.data.languages import canonical_language
from advfusion_cli.data.records import Diagnostics, TaskExample
from advfusion_cli.data.sources import TESTBED, resolve_source
from advfusion_cli.data.splits import SPLITS, canonical_split
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks import LoadRequest, get_task
from advfusion_cli.errors import UserError, unknown_name_error


@dataclass
class TaskData:
    examples: list[TaskExample]  # the requested split(s) and language(s), in file order
    stats: DataStats  # counts of everything read (all splits when the split had to be made)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[TaskExample]:
        return iter(self.examples)

    def split(self, name: str) -> list[TaskExample]:
        name = canonical_split(name)
        return [e for e in self.examples if e.split == name]


def _splits(split: str | Sequence[str]) -> tuple[str, ...]:
    names = [split] if isinstance(split, str) else list(split)
    if names == ["all"]:
        return SPLITS
    wanted = {canonical_split(n) for n in names}
    return tuple(s for s in SPLITS if s in wanted)


def _options(task: str, options_type: type, given: dict[str, Any]):
    known = [f.name for f in dataclasses.fields(options_type)]
    for key in given:
        if key not in known:
            raise unknown_name_error(f"option for task '{task}'", key, known)
    try:
        return options_type(**given)
    except (TypeError, ValueError) as err:
        raise UserError(f"Bad option for task '{task}': {err}") from err


def _testbed_defaults(task: str) -> dict[str, Any]:
    """Options the testbed's layout implies: CommitPackFT has only a train split, and the
    testbed sizes its repositories so these per-language fractions give the target language
    its ~10x smaller train split with full-size validation/test splits."""
    if task != "commit-message":
        return {}
    from advfusion_cli.testbed import TestbedConfig, commit_split_fractions

    config = TestbedConfig()
    return {
        "language_fractions": {
            lang: commit_split_fractions(config, lang) for lang in config.languages
        }
    }


def _resolve(task, source, languages, split, strict, options, revision=None):
    """(task spec, request, task options, resolved source): what a load starts from."""
    from advfusion_cli.data.benchmark_guard import refuse_benchmark_source

    refuse_benchmark_source(source)  # benchmark rows are never task (training) data
    spec = get_task(task)
    if isinstance(languages, str):
        languages = [languages]
    wanted = frozenset(canonical_language(n) for n in languages) if languages else None
    request = LoadRequest(languages=wanted, splits=_splits(split), strict=strict)
    if source == TESTBED:
        options = {**_testbed_defaults(spec.name), **options}
    opts = _options(spec.name, spec.options, options)
    resolved = resolve_source(
        source,
        task=spec.name,
        default_hub_id=spec.hub_id,
        hub_patterns=spec.hub_patterns(request, opts),
        revision=revision,
    )
    return spec, request, opts, resolved


def source_root(
    task: str,
    source: str = TESTBED,
    languages: Sequence[str] | str | None = None,
    split: str | Sequence[str] = "train",
    *,
    revision: str | None = None,
    **options: Any,
) -> Path:
    """The local file or folder `load_task` would read (testbed made, hub files fetched)."""
    return _resolve(task, source, languages, split, False, options, revision)[3].root


def load_task(
    task: str,
    source: str = TESTBED,
    languages: Sequence[str] | str | None = None,
    split: str | Sequence[str] = "train",
    *,
    strict: bool = False,
    revision: str | None = None,
    **options: Any,
) -> TaskData:
    """Rendered examples of `task` from `source` ("testbed", "hub:<id>" or a path).

    `languages`: any spelling ("C++", "js"), None for all; `split`: a name, several, or
    "all"; `strict`: a malformed record raises UserError naming file:line instead of being
    counted; `options`: the task's options (see `describe_options`). Raises UserError when
    nothing is left for the requested split(s) and language(s).
    """
    spec, request, opts, resolved = _resolve(
        task, source, languages, split, strict, options, revision
    )
    diagnostics = Diagnostics(strict=strict)
    stats = DataStats(task=spec.name, source=resolved.label)
    examples = spec.read(resolved.root, request, opts, diagnostics, stats)
    stats.dropped.update(diagnostics.dropped)
    for example in examples:
        stats.counts[(example.language, example.split)] += 1
    kept = [e for e in examples if e.split in request.splits]
    if not kept:
        raise UserError(_empty_message(spec.name, source, request, stats))
    return TaskData(examples=kept, stats=stats)


def can_stream(task: str) -> bool:
    """Whether `stream_task` serves this task (its examples need not be held as a list)."""
    return get_task(task).stream is not None


def stream_task(
    task: str,
    source: str,
    language: str,
    write: Callable[[list[dict]], None],
    *,
    revision: str | None = None,
    **options: Any,
) -> list[str]:
    """Every example of one language that `load_task(..., split="all")` would give, handed to
    `write` in batches (see TaskSpec.stream) instead of returned; the split of each one.
    Only for tasks that `can_stream`."""
    spec, request, opts, resolved = _resolve(
        task, source, [language], SPLITS, False, options, revision
    )
    if spec.stream is None:
        raise ValueError(f"task '{spec.name}' has no streaming reader")
    stats = DataStats(task=spec.name, source=resolved.label)
    return spec.stream(resolved.root, request, opts, Diagnostics(), stats, write)


def _empty_message(task: str, source: str, request: LoadRequest, stats: DataStats) -> str:
    langs = ", ".join(sorted(request.languages)) if request.languages else "any language"
    found = (
        ", ".join(f"{lang}/{s}={n}" for (lang, s), n in sorted(stats.counts.items()))
        or "no examples at all"
    )
    dropped = f"; dropped: {dict(stats.dropped)}" if stats.dropped else ""
    return (
        f"No {task} examples in {source} for split {'/'.join(request.splits)} and {langs} "
        f"(found: {found}{dropped})."
    )


def describe_options(task: str) -> dict[str, Any]:
    """A task's options and their defaults."""
    spec = get_task(task)
    return {f.name: f.default for f in dataclasses.fields(spec.options)}
