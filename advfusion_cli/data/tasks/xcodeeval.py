"""xCodeEval program_synthesis rows in either layout, as (split, row, problem, solution).

Materialised rows carry the 21 fields `load_dataset("NTU-NLP-sg/xCodeEval",
"program_synthesis")` returns (lists and tests JSON-encoded); the raw files hold solution
rows with 8 fields, joined by `src_uid` with problem_descriptions.jsonl and unittest_db.json
(`{src_uid: [{"input", "output": [...]}]}`). Rows without a language or code are problems
only, as evaluation rows are.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advfusion_cli.data.languages import normalize_language
from advfusion_cli.data.records import Diagnostics, RecordError, optional_str, require_str
from advfusion_cli.data.sources import (
    ROW_SUFFIXES,
    RawRow,
    data_files,
    files_in,
    iter_rows,
    read_json_object,
)
from advfusion_cli.data.splits import SPLITS, split_of_name

_SPLIT_FOLDERS = {
    "train": ("train",),
    "validation": ("validation", "valid", "val"),
    "test": ("test",),
}
Tests = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Problem:
    src_uid: str
    description: str
    input_spec: str
    output_spec: str
    notes: str
    sample_inputs: tuple[str, ...]
    sample_outputs: tuple[str, ...]
    tests: Tests


def _string_list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):  # materialised rows keep lists JSON-encoded
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as err:
            raise RecordError(f"invalid JSON in field '{name}'", err.msg) from err
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"wrong type for field '{name}'", "expected a list of strings")
    return tuple(value)


def parse_tests(value: Any, name: str = "hidden_unit_tests") -> Tests:
    """`[{"input": str, "output": [str, ...]}]` (or its JSON string) -> ((stdin, outputs), ...)."""
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as err:
            raise RecordError(f"invalid JSON in field '{name}'", err.msg) from err
    if not isinstance(value, list):
        raise RecordError(f"wrong type for field '{name}'", "expected a list of tests")
    tests = []
    for test in value:
        if not isinstance(test, dict) or not isinstance(test.get("input"), str):
            raise RecordError(f"wrong type for field '{name}'", "a test lacks a string 'input'")
        outputs = test.get("output")
        if isinstance(outputs, str):
            outputs = [outputs]
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise RecordError(f"wrong type for field '{name}'", "'output' must be strings")
        tests.append((test["input"], tuple(outputs)))
    return tuple(tests)


def _problem_from_materialised(data: dict[str, Any]) -> Problem:
    return Problem(
        src_uid=require_str(data, "src_uid", allow_empty=False),
        description=require_str(data, "prob_desc_description"),
        input_spec=optional_str(data, "prob_desc_input_spec"),
        output_spec=optional_str(data, "prob_desc_output_spec"),
        notes=optional_str(data, "prob_desc_notes"),
        sample_inputs=_string_list(data.get("prob_desc_sample_inputs"), "prob_desc_sample_inputs"),
        sample_outputs=_string_list(
            data.get("prob_desc_sample_outputs"), "prob_desc_sample_outputs"
        ),
        tests=parse_tests(data.get("hidden_unit_tests")),
    )


def _problem_from_raw(data: dict[str, Any], unittests: dict[str, Any]) -> Problem:
    src_uid = require_str(data, "src_uid", allow_empty=False)
    return Problem(
        src_uid=src_uid,
        description=require_str(data, "description"),
        input_spec=optional_str(data, "input_spec"),
        output_spec=optional_str(data, "output_spec"),
        notes=optional_str(data, "notes"),
        sample_inputs=_string_list(data.get("sample_inputs"), "sample_inputs"),
        sample_outputs=_string_list(data.get("sample_outputs"), "sample_outputs"),
        tests=parse_tests(unittests.get(src_uid), f"unittest_db[{src_uid}]"),
    )


@dataclass(frozen=True)
class Solution:
    language: str | None  # None: a problem-only (evaluation) row
    code: str
    code_uid: str
    exec_outcome: str


def parse_solution(data: dict[str, Any]) -> Solution:
    code = optional_str(data, "source_code")
    names = [optional_str(data, "lang_cluster"), optional_str(data, "lang")]
    named = [n for n in names if n.strip()]
    language = None
    if named:
        language = next((normalize_language(n) for n in named if normalize_language(n)), None)
        if language is None:
            raise RecordError(f"unknown language '{named[0]}'")
        if not code.strip():
            raise RecordError("empty target")
    return Solution(
        language, code, optional_str(data, "code_uid"), optional_str(data, "exec_outcome")
    )


# ---- layouts ---------------------------------------------------------------------------


def _split_files(root: Path, split: str) -> list[Path]:
    """Row files of one split: `<split>.jsonl` or a `<split>/` folder of files, any alias."""
    found: list[Path] = []
    for name in _SPLIT_FOLDERS[split]:
        found += data_files(root, name)
        found += files_in(root / name)
        found += files_in(root / "program_synthesis" / name)
    return found


def iter_xcodeeval(
    root: Path, splits: tuple[str, ...], problems_split: str, diagnostics: Diagnostics
) -> Iterator[tuple[str, RawRow, Problem | None, Solution | None, RecordError | None]]:
    """(split, row, problem, solution, error) for every row of `splits`; a bare problem bank
    (descriptions, no solution files) yields its problems under `problems_split`."""
    if root.is_file():
        split = split_of_name(root.stem) or "train"
        per_split = {split: [root]} if split in splits else {}
        problems = None
    else:
        per_split = {split: _split_files(root, split) for split in splits}
        problems = (
            _raw_problems(root, diagnostics)
            if (root / "problem_descriptions.jsonl").is_file()
            else None
        )
    if problems is not None and not any(_split_files(root, s) for s in SPLITS):
        # a bare problem bank: every problem is an evaluation row of `problems_split`
        if problems_split in splits:
            for row, problem in problems.values():
                yield problems_split, row, problem, Solution(None, "", "", ""), None
        return
    for split, files in per_split.items():
        for path in files:
            for row in iter_rows(path, diagnostics):
                try:
                    if problems is None:
                        problem = _problem_from_materialised(row.data)
                    else:
                        uid = require_str(row.data, "src_uid", allow_empty=False)
                        if uid not in problems:
                            raise RecordError("src_uid not in problem_descriptions")
                        problem = problems[uid][1]
                    yield split, row, problem, parse_solution(row.data), None
                except RecordError as err:
                    yield split, row, None, None, err


def _raw_problems(root: Path, diagnostics: Diagnostics) -> dict[str, tuple[RawRow, Problem]]:
    """problem_descriptions.jsonl joined with unittest_db.json by src_uid."""
    tests_path = root / "unittest_db.json"
    unittests = read_json_object(tests_path) if tests_path.is_file() else {}
    problems: dict[str, tuple[RawRow, Problem]] = {}
    for row in iter_rows(root / "problem_descriptions.jsonl", diagnostics):
        try:
            problem = _problem_from_raw(row.data, unittests)
        except RecordError as err:
            diagnostics.malformed(err, row.where)
            continue
        problems[problem.src_uid] = (row, problem)
    return problems


# ---- hub files -------------------------------------------------------------------------

METADATA_FILES = ("problem_descriptions.jsonl", "unittest_db.json")
TASK_FOLDER = "program_synthesis"


def _split_of_folder(name: str) -> str | None:
    return next((s for s, names in _SPLIT_FOLDERS.items() if name.lower() in names), None)


def file_language(path: str) -> str | None:
    """The one language a row file holds by its name (a `<split>/<Language>/` folder or a
    `train_<Language>_000.jsonl` stem), or None for a mixed-language shard."""
    parts = path.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    for token in [*parts[2:-1], *re.split(r"[_\-]", stem)]:
        language = normalize_language(token) if not token.isdigit() else None
        if language is not None:
            return language
    return None


def select_hub_files(
    listing: list[str], splits: tuple[str, ...], languages: frozenset[str] | None
) -> list[str]:
    """The files of a hub listing that a load of `splits` x `languages` reads.

    The problem descriptions and unit tests, and the `program_synthesis/<split>/` row files
    of `splits`; a file named after one language is taken only if that language is wanted.
    Mixed-language shards (the official train layout, `train_000.jsonl` ...
    `train_110.jsonl`) cannot be told apart by name and are all taken.
    """
    wanted = set(splits)
    chosen = [f for f in listing if f in METADATA_FILES]
    for path in listing:
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != TASK_FOLDER or _split_of_folder(parts[1]) not in wanted:
            continue
        if not parts[-1].endswith(ROW_SUFFIXES):
            continue
        language = file_language(path)
        if language is not None and languages is not None and language not in languages:
            continue
        chosen.append(path)
    return sorted(chosen)


# ---- validation carved out of train ------------------------------------------------------


def carved_problems(src_uids: set[str], fraction: float, seed: int) -> set[str]:
    """The problems whose solutions form the validation split (grouped: all or none of a
    problem's solutions), chosen by a seeded hash of `src_uid` alone.

    A hash, not a shuffle of the problems read: loading one language or several gives every
    language the same held-out problems, so no problem validated in one language is trained
    on in another. If the hash picks none of a small set, the lowest-hash problem is taken.
    """
    if fraction <= 0 or len(src_uids) < 2:
        return set()

    def position(uid: str) -> float:
        digest = hashlib.sha256(f"{seed}:{uid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)

    carved = {uid for uid in src_uids if position(uid) < fraction}
    if not carved:
        carved = {min(src_uids, key=position)}
    if len(carved) == len(src_uids):
        carved.discard(max(carved, key=position))  # train keeps at least one problem
    return carved
