"""Commit message generation on CommitPackFT: a unified diff in, the commit subject out.

Prompt and diff follow the authors' `cmg_processor` (Amirresm/advfusion-cllm,
src/dataset/custom_processors.py): `difflib.unified_diff` over `str.splitlines()` (no line
ends kept) with `lineterm=""`, joined by "\n", inside a fixed instruction; target `subject`.
The diff is computed by `cydifflib`, a compiled port of difflib with identical output.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.data.languages import commitpack_config, normalize_language
from advfusion_cli.data.records import (
    Diagnostics,
    RecordError,
    TaskExample,
    optional_str,
    require_str,
)
from advfusion_cli.data.row_pool import parsed_rows
from advfusion_cli.data.sources import RawRow, files_in
from advfusion_cli.data.splits import DEFAULT_FRACTIONS, check_fractions, split_by_repository
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks.base import LoadRequest, TaskSpec

NAME = "commit-message"
PROMPT_HEAD = "Based on the change given, only write commit message.\n### Diff:\n"
PROMPT_TAIL = "\n### Commit Message:\n"
STREAM_BATCH = 1000  # examples per `write` call of `stream`
_REQUIRED = ("commit", "old_file", "new_file", "old_contents", "new_contents", "subject", "lang")


@dataclass(frozen=True)
class CommitMessageOptions:
    seed: int = 0  # seeds the repository-grouped train/validation/test split
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    # Per-language fractions override `split_fractions` for those languages. The testbed sets
    # them so its low-resource target keeps full-size validation/test splits (see loader.py).
    language_fractions: dict[str, tuple[float, float, float]] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_fractions", check_fractions(self.split_fractions))
        if self.language_fractions is not None:
            checked = {lang: check_fractions(f) for lang, f in self.language_fractions.items()}
            object.__setattr__(self, "language_fractions", checked)

    def fractions_for(self, language: str) -> tuple[float, float, float]:
        return (self.language_fractions or {}).get(language, self.split_fractions)


try:  # the same SequenceMatcher compiled (tests/test_commit_diff.py): ~3x faster per record
    from cydifflib import unified_diff
except ImportError:  # pragma: no cover - an install without it renders the same, slower
    from difflib import unified_diff


def render_diff(old_file: str, new_file: str, old_contents: str, new_contents: str) -> str:
    """The unified diff exactly as the authors build it (no trailing newline)."""
    lines = unified_diff(
        old_contents.splitlines(),
        new_contents.splitlines(),
        fromfile=old_file,
        tofile=new_file,
        lineterm="",
    )
    return "\n".join(lines)


def render_prompt(diff: str) -> tuple[str, tuple[int, int]]:
    """The prompt around `diff`, and the diff's character span (the part truncation may cut)."""
    start = len(PROMPT_HEAD)
    return PROMPT_HEAD + diff + PROMPT_TAIL, (start, start + len(diff))


def hub_patterns(request: LoadRequest, options: CommitMessageOptions) -> list[str]:
    if request.languages is None:
        return ["data/*/*"]
    return [f"data/{commitpack_config(lang)}/*" for lang in sorted(request.languages)]


def _language_folders(root: Path) -> list[tuple[str | None, list[Path]]]:
    """(language of the folder or None when unknown, its row files), for root in any layout."""
    if root.is_file():
        return [(None, [root])]
    base = root / "data" if (root / "data").is_dir() else root
    folders = [
        (normalize_language(d.name), files_in(d))
        for d in sorted(base.iterdir())
        if d.is_dir() and files_in(d)
    ]
    folders = [(lang, files) for lang, files in folders if lang is not None]
    if not folders and files_in(base):  # a single config folder given directly
        folders = [(None, files_in(base))]
    return folders


def _parse(row: RawRow) -> tuple[str, dict]:
    data = row.data
    fields = {name: require_str(data, name) for name in _REQUIRED}
    if not fields["subject"].strip():
        raise RecordError("empty target")
    language = normalize_language(fields["lang"])
    if language is None:
        raise RecordError(f"unknown language '{fields['lang']}'")
    repos = [r.strip() for r in optional_str(data, "repos").split(",") if r.strip()]
    diff = render_diff(
        fields["old_file"], fields["new_file"], fields["old_contents"], fields["new_contents"]
    )
    prompt, span = render_prompt(diff)
    return language, {
        "id": fields["commit"],
        "prompt": prompt,
        "target": fields["subject"],
        "meta": {
            "inner_span": span,
            "commit": fields["commit"],
            "repos": repos,
            "license": optional_str(data, "license"),
            "file": str(row.file),
            "line": row.line,
        },
    }


def _parsed_records(root: Path, request: LoadRequest, diagnostics: Diagnostics):
    """(language, parsed record) of the requested languages, in file order."""
    for folder_language, files in _language_folders(root):
        if folder_language is not None and not request.wants(folder_language):
            continue  # skip whole configs that were not asked for
        for path in files:
            # Large files are parsed and their diffs rendered by worker processes.
            for language, parsed in parsed_rows(path, _parse, diagnostics):
                if request.wants(language):
                    yield language, parsed


def _assign_splits(
    units: list[tuple[tuple[str, ...], str]],
    language: str,
    options: CommitMessageOptions,
    stats: DataStats,
) -> list[str]:
    """The split of each (repositories, commit) of one language: grouped by repository."""
    splits, method = split_by_repository(
        units,
        repos_of=lambda unit: list(unit[0]) or [unit[1]],
        unit_of=lambda unit: unit[1],
        fractions=options.fractions_for(language),
        seed=options.seed,
    )
    stats.split_method[language] = method
    return splits


def _unit(parsed: dict) -> tuple[tuple[str, ...], str]:
    return tuple(parsed["meta"]["repos"]), parsed["meta"]["commit"]


def read(
    root: Path,
    request: LoadRequest,
    options: CommitMessageOptions,
    diagnostics: Diagnostics,
    stats: DataStats,
) -> list[TaskExample]:
    by_language: dict[str, list[dict]] = defaultdict(list)
    for language, parsed in _parsed_records(root, request, diagnostics):
        by_language[language].append(parsed)

    examples: list[TaskExample] = []
    for language in sorted(by_language):
        items = by_language[language]
        splits = _assign_splits([_unit(item) for item in items], language, options, stats)
        for item, split in zip(items, splits, strict=True):
            meta = {"split": split, **item["meta"]}
            examples.append(
                TaskExample(
                    id=item["id"],
                    task=NAME,
                    language=language,
                    prompt=item["prompt"],
                    target=item["target"],
                    meta=meta,
                )
            )
    return examples


def stream(
    root: Path,
    request: LoadRequest,
    options: CommitMessageOptions,
    diagnostics: Diagnostics,
    stats: DataStats,
    write: Callable[[list[dict]], None],
) -> list[str]:
    """`read` for one language without holding its examples: each example goes to `write`
    (in batches, in `read`'s order) as {id, prompt, target, inner_span}; only its repositories
    and commit are kept, for the split. Returns the split of each example written."""
    (language,) = request.languages
    units, batch = [], []
    for _, parsed in _parsed_records(root, request, diagnostics):
        units.append(_unit(parsed))
        batch.append(
            {
                "id": parsed["id"],
                "prompt": parsed["prompt"],
                "target": parsed["target"],
                "inner_span": parsed["meta"]["inner_span"],
            }
        )
        if len(batch) == STREAM_BATCH:
            write(batch)
            batch = []
    if batch:
        write(batch)
    return _assign_splits(units, language, options, stats) if units else []


SPEC = TaskSpec(
    name=NAME,
    summary="CommitPackFT: unified diff -> commit subject",
    hub_id="bigcode/commitpackft",
    options=CommitMessageOptions,
    hub_patterns=hub_patterns,
    read=read,
    stream=stream,
)
