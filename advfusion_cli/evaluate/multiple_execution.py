"""Execute MultiPL-E programs: in parallel, each distinct program once, resumable.

Programs are keyed by the SHA-256 of (language, program): identical completions of one
problem (common at low temperature) run once. Each result is appended to
`executions.partial.jsonl` in the evaluation folder as soon as it is known, one fsync'd line,
so a killed evaluation executes only what is missing when it is run again; a torn last line
is ignored. Programs run in a process pool (the sandbox's setup must not run from threads).

This module imports no torch: pool workers start fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

EXECUTIONS_FILE = "executions.partial.jsonl"


def program_key(language: str, program: str) -> str:
    payload = json.dumps([language, program], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "replace")).hexdigest()


def _run_one(language: str, program: str) -> dict:
    from advfusion_cli.sandbox.multiple_languages import MULTIPL_E_LANGUAGES
    from advfusion_cli.sandbox.multiple_runner import run_multiple_program

    return run_multiple_program(MULTIPL_E_LANGUAGES[language], program)


class ExecutionJournal:
    """program key -> result, read back from and appended to EXECUTIONS_FILE."""

    def __init__(self, folder: Path | None) -> None:
        self.path = None if folder is None else folder / EXECUTIONS_FILE
        self.results: dict[str, dict] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_bytes().split(b"\n"):
                try:
                    row = json.loads(line)
                    self.results[row["key"]] = row["result"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from a kill mid-write
        self.resumed = len(self.results)

    def add(self, key: str, result: dict) -> None:
        self.results[key] = result
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": key, "result": result}, ensure_ascii=False) + "\n"
        with self.path.open("ab") as handle:
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def execute_programs(
    language: str,
    programs: Sequence[str],
    journal: ExecutionJournal,
    *,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], int]:
    """The result of every program (in order) and how many sandbox runs were needed.

    `on_progress(done, total)` follows the runs actually made (distinct, not journaled).
    """
    keys = [program_key(language, program) for program in programs]
    pending: dict[str, str] = {}
    for key, program in zip(keys, programs, strict=True):
        if key not in journal.results and key not in pending:
            pending[key] = program
    total = len(pending)
    if on_progress is not None:
        on_progress(0, total)
    workers = max(1, workers or default_workers())
    if total and (workers == 1 or total == 1):
        for done, (key, program) in enumerate(pending.items(), start=1):
            journal.add(key, _run_one(language, program))
            if on_progress is not None:
                on_progress(done, total)
    elif total:
        # spawn: a forked copy of a process holding torch threads is not safe to run code in.
        context = get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, total), mp_context=context) as pool:
            futures = {
                pool.submit(_run_one, language, program): key for key, program in pending.items()
            }
            for done, future in enumerate(as_completed(futures), start=1):
                journal.add(futures[future], future.result())
                if on_progress is not None:
                    on_progress(done, total)
    results = []
    for key, program in zip(keys, programs, strict=True):
        # The journal keys on the program's digest; the stored text is this program's.
        results.append({**journal.results[key], "program": program})
    return results, total
