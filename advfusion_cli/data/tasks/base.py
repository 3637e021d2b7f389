"""What a task module provides to the loader: its dataset, options, hub files and reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advfusion_cli.data.records import Diagnostics, TaskExample
from advfusion_cli.data.stats import DataStats


@dataclass(frozen=True)
class LoadRequest:
    languages: frozenset[str] | None  # canonical ids; None = every language found
    splits: tuple[str, ...]  # canonical split names wanted
    strict: bool = False

    def wants(self, language: str) -> bool:
        return self.languages is None or language in self.languages


# read(root, request, options, diagnostics, stats) -> examples of the requested languages,
# each with meta["split"]; may return other splits too when it had to read them anyway.
Reader = Callable[[Path, LoadRequest, Any, Diagnostics, DataStats], list[TaskExample]]
# stream(root, request for ONE language, options, diagnostics, stats, write) -> the split of
# each example written: what `read` returns for that language, handed to `write` in batches
# of {id, prompt, target, inner_span} dicts instead of being held (large sources).
Streamer = Callable[
    [Path, LoadRequest, Any, Diagnostics, DataStats, Callable[[list[dict]], None]], list[str]
]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    summary: str
    hub_id: str  # the dataset `hub:` alone refers to
    options: type  # a dataclass of task options (defaults = the authors' setting)
    # files a hub download needs: globs, or a function choosing from the repository listing
    hub_patterns: Callable[[LoadRequest, Any], list[str] | Callable[[list[str]], list[str]]]
    read: Reader
    stream: Streamer | None = None  # tasks without one are read whole
