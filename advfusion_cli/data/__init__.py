"""Task data: CommitPackFT, xCodeEval and CodeTransOcean rendered into the authors' prompts.

`load_task(task, source, languages, split)` reads a dataset in its own layout (the offline
testbed, `hub:<id>` or a local copy) and returns `TaskExample`s with statistics;
`advfusion_cli.data.encoding` turns them into token ids, labels and padded batches.
"""

from __future__ import annotations

from typing import Any

from advfusion_cli.data.languages import canonical_language, display_name, normalize_language
from advfusion_cli.data.loader import TaskData, describe_options, load_task
from advfusion_cli.data.records import TaskExample
from advfusion_cli.data.splits import SPLITS
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks import list_tasks

# Encoding needs torch; imported on first use so `advfusion --help` stays fast.
_ENCODING_NAMES = (
    "Collator",
    "DroppedExample",
    "completion_only_labels",
    "encode_example",
    "encode_examples",
    "encode_prompt_for_generation",
)


def __getattr__(name: str) -> Any:
    if name in _ENCODING_NAMES:
        from advfusion_cli.data import encoding

        return getattr(encoding, name)
    raise AttributeError(f"module 'advfusion_cli.data' has no attribute '{name}'")


__all__ = [
    "SPLITS",
    "DataStats",
    "TaskData",
    "TaskExample",
    "canonical_language",
    "describe_options",
    "display_name",
    "list_tasks",
    "load_task",
    "normalize_language",
    *_ENCODING_NAMES,
]
