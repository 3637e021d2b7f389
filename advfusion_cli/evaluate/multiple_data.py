"""MultiPL-E problems from a local copy (a folder of `<dataset>-<ext>.jsonl` files or one
JSONL file) or from the hub's `nuprl/MultiPL-E` at a pinned revision, through `datasets`.

A problem is one row in the benchmark's columns (name, language, prompt, doctests, original,
prompt_terminology, tests, stop_tokens). Problems keep the dataset's order; `--limit N` takes
the first N, so every method and every harness scores the same problems.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.data.benchmark_guard import MULTIPL_E_HUB_ID, is_multiple_row
from advfusion_cli.errors import UserError
from advfusion_cli.sandbox.multiple_languages import MultiplELanguage, resolve_multiple_language

DATASETS = ("humaneval", "mbpp")
DEFAULT_SOURCE = f"hub:{MULTIPL_E_HUB_ID}"
# A commit of the hub's Parquet export of nuprl/MultiPL-E (files <config>/test/0000.parquet):
# `datasets` >= 4 runs no loading scripts, and the dataset's own revisions before its export
# (bigcode-evaluation-harness pins d23b094346c5dbda1080a74bb2a24c18adbf7409) are one.
# Another revision: hub:nuprl/MultiPL-E@<revision>.
DEFAULT_REVISION = "d80c9f4095f4779d22d7bc406cf1ef8396fb4505"


@dataclass(frozen=True)
class Problem:
    name: str
    language: str  # the row's own language value
    prompt: str
    tests: str
    stop_tokens: tuple[str, ...]
    extra: dict = field(default_factory=dict)  # doctests, original, prompt_terminology

    def program(self, completion: str) -> str:
        """What the official harness runs: prompt, completion, a newline, the tests."""
        return self.prompt + completion + "\n" + self.tests


@dataclass(frozen=True)
class LoadedProblems:
    problems: list[Problem]
    source: dict  # what to record: kind, source, config, revision, file(s), sha256


def problem_from_row(row: dict, where: str) -> Problem:
    if not is_multiple_row(row):
        missing = sorted({"name", "prompt", "tests", "stop_tokens"} - set(row))
        raise UserError(f"{where}: not a MultiPL-E row (missing {', '.join(missing)}).")
    stops = row["stop_tokens"]
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise UserError(f"{where}: stop_tokens must be a list of strings.")
    extra = {k: row[k] for k in ("doctests", "original", "prompt_terminology") if k in row}
    return Problem(
        name=str(row["name"]),
        language=str(row.get("language", "")),
        prompt=str(row["prompt"]),
        tests=str(row["tests"]),
        stop_tokens=tuple(stops),
        extra=extra,
    )


def _read_jsonl(path: Path) -> list[Problem]:
    problems = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"Cannot read MultiPL-E file '{path}': {err}.") from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"{path}:{number}: not valid JSON ({err}).") from err
        problems.append(problem_from_row(row, f"{path}:{number}"))
    return problems


def _check_language(problems: list[Problem], row: MultiplELanguage, where: str) -> None:
    for problem in problems:
        if not problem.language:
            continue
        try:
            found = resolve_multiple_language(problem.language).ext
        except UserError:
            found = problem.language
        if found != row.ext:
            raise UserError(
                f"{where}: problem {problem.name} is in language '{problem.language}', not "
                f"{row.ext} (--lang)."
            )


def digest(problems: list[Problem]) -> str:
    """SHA-256 of the problems as scored (names, prompts, tests, stops) in order."""
    text = json.dumps(
        [[p.name, p.prompt, p.tests, list(p.stop_tokens)] for p in problems], ensure_ascii=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _load_path(path: Path, dataset: str, row: MultiplELanguage) -> tuple[list[Problem], dict]:
    if path.is_dir():
        file = path / f"{dataset}-{row.ext}.jsonl"
        if not file.is_file():
            present = sorted(p.name for p in path.glob("*.jsonl"))
            raise UserError(
                f"--data '{path}' has no {file.name} (has: {', '.join(present) or 'no .jsonl'})."
            )
    elif path.is_file():
        file = path
    else:
        raise UserError(f"--data '{path}' does not exist.")
    problems = _read_jsonl(file)
    _check_language(problems, row, str(file))
    return problems, {"kind": "path", "source": str(path), "file": str(file.resolve())}


def parse_hub_source(source: str) -> tuple[str, str]:
    """'hub:<id>[@<revision>]' -> (id, revision); the pinned revision when none is given."""
    text = source[len("hub:") :].strip()
    hub_id, _, revision = text.partition("@")
    if not hub_id:
        raise UserError("--data 'hub:' needs a dataset id, e.g. hub:nuprl/MultiPL-E.")
    return hub_id, revision.strip() or DEFAULT_REVISION


def _load_hub(source: str, dataset: str, row: MultiplELanguage) -> tuple[list[Problem], dict]:
    hub_id, revision = parse_hub_source(source)
    config = f"{dataset}-{row.ext}"
    from datasets import load_dataset

    # A revision that declares its configs is read by config name; a Parquet export (one
    # folder per config) by folder. The first way that works is recorded.
    attempts = (("config", {"name": config}), ("data_dir", {"data_dir": config}))
    reasons = []
    for how, selector in attempts:
        try:
            table = load_dataset(hub_id, revision=revision, split="test", **selector)
        except Exception as err:  # network, unknown config/revision, a script datasets refuses
            reasons.append(" ".join(str(err).split())[:200])
            continue
        problems = [problem_from_row(dict(r), f"{hub_id}/{config}") for r in table]
        record = {"kind": "hub", "source": hub_id, "config": config, "revision": revision}
        return problems, {**record, "read_by": how}
    raise UserError(
        f"Cannot load {hub_id} {config} at revision {revision}: {reasons[0]} (offline? give a "
        f"local copy with --data PATH, or another revision with --data hub:{hub_id}@REVISION)."
    )


def load_problems(
    source: str | None, dataset: str, language: str, limit: int | None
) -> LoadedProblems:
    """The first `limit` problems (all when None) of `dataset` in `language`."""
    if dataset not in DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, got '{dataset}'.")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}.")
    row = resolve_multiple_language(language)
    source = source or DEFAULT_SOURCE
    if source.startswith("hub:"):
        problems, record = _load_hub(source, dataset, row)
    else:
        problems, record = _load_path(Path(source).expanduser(), dataset, row)
    if not problems:
        raise UserError(f"--data '{source}' holds no {dataset}-{row.ext} problems.")
    names = [p.name for p in problems]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise UserError(f"--data '{source}': problem name '{duplicate}' appears twice.")
    total = len(problems)
    problems = problems if limit is None else problems[:limit]
    record.update(
        dataset=dataset,
        language=row.ext,
        problems_total=total,
        problems=len(problems),
        problems_sha256=digest(problems),
    )
    return LoadedProblems(problems, record)
