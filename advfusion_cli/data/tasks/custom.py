"""A task the user defines: their records, a prompt template over the records' fields, a target.

Records come from JSON Lines, a JSON array, CSV or parquet: one file (split here by the
grouped, seeded splitter: all records sharing `group_field` land in the same split, whatever
their language, so one problem cannot be trained on in one language and tested in another)
or a folder of `train`/`validation`/`test` files (any split alias, any of the formats), or
a folder in a layout of the Hugging Face hub (data/hub_layout.py: README.md configs,
`data/train-00000-of-00002.parquet` shards, split folders, `config` folders).

The first record of each file fixes the shape: a field the task uses that it lacks is an
error naming file:line (the template or the spec is wrong, not the record). A later record
that lacks one, has it with another type, has an unknown language, an empty target or tests
not in xCodeEval's form (`[{"input": str, "output": [str, ...]}]`) is dropped and counted
(under --strict, a one-line error naming its file:line).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advfusion_cli.data.csv_rows import iter_csv_rows
from advfusion_cli.data.hub_layout import README, split_files
from advfusion_cli.data.languages import display_name, normalize_language
from advfusion_cli.data.records import Diagnostics, RecordError, TaskExample
from advfusion_cli.data.sources import RawRow, iter_rows
from advfusion_cli.data.splits import (
    DEFAULT_FRACTIONS,
    SPLITS,
    check_fractions,
    split_by_repository,
    split_of_name,
)
from advfusion_cli.data.stats import DataStats
from advfusion_cli.data.tasks.base import LoadRequest, TaskSpec
from advfusion_cli.data.tasks.xcodeeval import parse_tests
from advfusion_cli.data.template import Template, parse_template
from advfusion_cli.errors import UserError

NAME = "custom"
RECORD_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class CustomTaskOptions:
    """The loader's part of a `data.custom` block (see spec/custom_task.py for the keys)."""

    template: str = ""
    target_field: str = ""
    language_field: str = "language"
    id_field: str | None = None
    group_field: str | None = None
    tests_field: str | None = None
    cut_field: str | None = None
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    config: str | None = None  # hub layout: which dataset config
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.template or not self.target_field:
            raise ValueError(
                "the custom task needs a template and a target_field: give a spec with a "
                "data.custom block (--spec)"
            )
        object.__setattr__(self, "split_fractions", check_fractions(self.split_fractions))

    @property
    def parsed(self) -> Template:
        return parse_template(self.template)

    def used_fields(self) -> tuple[str, ...]:
        """Every field a record must have, in the order they are checked."""
        names = [*self.parsed.fields, self.target_field, self.language_field]
        names += [n for n in (self.id_field, self.group_field, self.tests_field) if n]
        return tuple(dict.fromkeys(names))


def hub_patterns(request: LoadRequest, options: CustomTaskOptions) -> list[str]:
    # fnmatch: also in subfolders; README.md declares the configs
    return [*(f"*{suffix}" for suffix in RECORD_SUFFIXES), README]


# ---- files -----------------------------------------------------------------------------


def record_files(
    root: Path, config: str | None = None
) -> tuple[dict[str, list[Path]] | None, list[Path]]:
    """({split: files} for a folder of split files, or None for one file to split), files.
    A folder without record files at its top is read in a hub layout (data/, configs)."""
    if root.is_file():
        if root.suffix.lower() not in RECORD_SUFFIXES:
            raise UserError(f"{root}: not a record file (expected {', '.join(RECORD_SUFFIXES)}).")
        return None, [root]
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in RECORD_SUFFIXES)
    if not found or config is not None:
        hub = split_files(root, config, RECORD_SUFFIXES)
        if hub is not None:
            per_split = {split: hub.get(split, []) for split in SPLITS}
            return per_split, [path for split in SPLITS for path in per_split[split]]
    if not found:
        raise UserError(
            f"{root}: no record files ({', '.join(RECORD_SUFFIXES)}) in this folder, nor in a "
            "hub layout (README.md configs, data/, train/validation/test folders)."
        )
    if len(found) == 1 and split_of_name(found[0].stem) is None:
        return None, found  # a folder holding one file: split it like the file itself
    per_split: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for path in found:
        split = split_of_name(path.stem)
        if split is None:
            raise UserError(
                f"{path}: the file name names no split; name the files of {root} "
                "train/validation/test (e.g. train.jsonl), or give one file to be split."
            )
        per_split[split].append(path)
    return per_split, found


def iter_records(path: Path, diagnostics: Diagnostics) -> Iterator[RawRow]:
    if path.suffix.lower() == ".csv":
        return iter_csv_rows(path, diagnostics)
    return iter_rows(path, diagnostics)


# ---- records ---------------------------------------------------------------------------


class Shape:
    """The first record of a file: which fields exist, with which JSON type."""

    def __init__(self, options: CustomTaskOptions, row: RawRow):
        fields = row.data
        for name in options.used_fields():
            if name not in fields:
                raise UserError(
                    f"{row.where}: {_role(options, name)} '{name}' is not a field of the records "
                    f"(this record has: {', '.join(map(str, fields)) or 'no fields'})."
                )
        self.types = {name: _kind(fields[name]) for name in options.used_fields()}

    def check(self, row: RawRow) -> None:
        for name, kind in self.types.items():
            if name not in row.data:
                raise RecordError(f"mixed shape: missing field '{name}'")
            found = _kind(row.data[name])
            if found != kind and found != "null":
                raise RecordError(
                    f"mixed shape: field '{name}' is {found}", f"{kind} in the file's first record"
                )


def _role(options: CustomTaskOptions, name: str) -> str:
    if name in options.parsed.fields:
        return "the template's field"
    for key in ("target_field", "language_field", "id_field", "group_field", "tests_field"):
        if getattr(options, key) == name:
            return f"data.custom.{key}"
    return "field"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return "list" if isinstance(value, list | tuple) else "object"


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise RecordError(f"missing field '{name}'")
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, _SCALARS):
        raise RecordError(f"wrong type for field '{name}'", f"{_kind(value)}, not text")
    return str(value)


@dataclass(frozen=True)
class Parsed:
    id: str
    language: str
    prompt: str
    target: str
    tests: tuple
    group: str
    meta: dict


def parse_record(
    row: RawRow, options: CustomTaskOptions, template: Template, file_label: str | None = None
) -> Parsed:
    """`file_label`: the file as ids without id_field name it (default: its name; files in
    a hub layout's subfolders: their path under the root, so data/train/part-0.parquet and
    data/test/part-0.parquet give distinct ids)."""
    data = row.data
    raw_language = _text(data, options.language_field)
    language = normalize_language(raw_language)
    if language is None:
        raise RecordError(
            f"unknown language in field '{options.language_field}'", f"'{raw_language}'"
        )
    target = _text(data, options.target_field)
    if not target.strip():
        raise RecordError(f"empty target (field '{options.target_field}')")
    values = {}
    for name in template.fields:
        # The language is written the same way in every prompt (and at generation time).
        value = display_name(language) if name == options.language_field else _text(data, name)
        values[name] = value
    prompt, spans = template.render(values)
    tests = ()
    if options.tests_field:
        tests = parse_tests(data.get(options.tests_field), options.tests_field)
    label = file_label or row.file.name
    uid = _text(data, options.id_field) if options.id_field else f"{label}:{row.line}"
    group = _text(data, options.group_field) if options.group_field else uid
    meta = {"file": str(row.file), "line": row.line}
    span = _cut_span(options, template, values, spans)
    if span is not None:
        meta["inner_span"] = span
    return Parsed(uid, language, prompt, target, tests, group, meta)


def _cut_span(options, template, values, spans) -> tuple[int, int] | None:
    """The text a too-long prompt loses the end of: `cut_field`, else the longest field."""
    names = [n for n in template.fields if n != options.language_field] or list(template.fields)
    name = options.cut_field or max(names, key=lambda n: len(values[n]))
    return spans.get(name)


# ---- the reader ------------------------------------------------------------------------


def read(
    root: Path,
    request: LoadRequest,
    options: CustomTaskOptions,
    diagnostics: Diagnostics,
    stats: DataStats,
) -> list[TaskExample]:
    """Every record of every language (the split of one file does not depend on which
    languages were asked for), then the requested languages' examples."""
    per_split, files = record_files(root, options.config)
    template = options.parsed
    parsed: list[tuple[Parsed, str | None]] = []  # (record, split of its file or None)
    seen: set[str] = set()
    for path in files:
        split = None
        if per_split is not None:
            split = next(s for s, paths in per_split.items() if path in paths)
        shape = None
        label = path.relative_to(root).as_posix() if root.is_dir() else path.name
        for row in iter_records(path, diagnostics):
            try:
                if shape is None:
                    shape = Shape(options, row)
                shape.check(row)
                record = parse_record(row, options, template, label)
                if record.id in seen:
                    raise RecordError(
                        f"duplicate id (field '{options.id_field}')", f"'{record.id}'"
                    )
            except RecordError as err:
                diagnostics.malformed(_named(err, options), row.where)
                continue
            seen.add(record.id)
            parsed.append((record, split))

    if per_split is None:
        splits, method = split_by_repository(
            [record for record, _ in parsed],
            repos_of=lambda record: [record.group],
            unit_of=lambda record: record.id,
            fractions=options.split_fractions,
            seed=options.seed,
        )
        how = (
            f"group:{options.group_field}"
            if options.group_field and method == "repository"
            else "record"
        )
        parsed = [(record, split) for (record, _), split in zip(parsed, splits, strict=True)]
    else:
        how = "dataset"

    examples = []
    for record, split in parsed:
        stats.split_method[record.language] = how
        if not request.wants(record.language):
            continue
        examples.append(
            TaskExample(
                id=record.id,
                task=NAME,
                language=record.language,
                prompt=record.prompt,
                target=record.target,
                tests=record.tests,
                meta={"split": split, "group": record.group, **record.meta},
            )
        )
    return examples


def _named(error: RecordError, options: CustomTaskOptions) -> RecordError:
    """parse_tests names the field but not why pass@k needs it; say so once, in the detail."""
    if (
        options.tests_field
        and f"'{options.tests_field}'" in error.reason
        and "type" in error.reason
    ):
        detail = error.detail + '; pass@k needs [{"input": str, "output": [str, ...]}]'
        return RecordError(error.reason, detail.lstrip("; "))
    return error


SPEC = TaskSpec(
    name=NAME,
    summary="your own records: a prompt template over their fields -> a target field",
    hub_id="",
    options=CustomTaskOptions,
    hub_patterns=hub_patterns,
    read=read,
)


def check_first_records(root: Path, options: CustomTaskOptions) -> list[str]:
    """What `validate` reports: each record file's first record has every field the task
    uses (UserError naming file:line otherwise) and renders; one line per file."""
    _, files = record_files(root, options.config)
    template = options.parsed
    lines = []
    for path in files:
        first = next(iter_records(path, Diagnostics(strict=True)), None)
        if first is None:
            raise UserError(f"{path}: no records.")
        Shape(options, first)
        try:
            parse_record(first, options, template)
        except RecordError as err:
            detail = f" ({err.detail})" if err.detail else ""
            raise UserError(f"{first.where}: {err.reason}{detail}") from None
        lines.append(f"{path}: fields {', '.join(options.used_fields())} present")
    return lines
