"""Run every generated program against its stdin/stdout tests in the sandbox, for pass@k.

Each candidate is one sandboxed `run_tests` call (compiled once, one isolated process per
test, stop at the first failing test). Identical programs are run once: a cache keyed by
language, source and tests is shared by every evaluation in the process, so greedy outputs
that several methods agree on cost nothing the second time. Candidates run in a process
pool (the sandbox's setup must not run from threads).

This module imports no torch: pool workers start fast.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

EMPTY = "empty"  # an empty candidate fails without running


@dataclass
class ItemExecution:
    """The n candidates of one problem: how many passed every test, and each one's status."""

    n: int
    passed: int
    statuses: list[str]

    def to_dict(self) -> dict:
        return {"n": self.n, "passed": self.passed, "statuses": self.statuses}


@dataclass
class ExecutionCache:
    """(language, source, tests) digest -> status; shared by the evaluations of one process."""

    results: dict[str, str] = field(default_factory=dict)
    runs: int = 0  # sandbox calls actually made
    hits: int = 0


def _digest(language: str, source: str, tests: Sequence) -> str:
    payload = json.dumps([language, source, tests], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8", "replace")).hexdigest()


def _run_candidate(language: str, source: str, tests: list) -> str:
    """One candidate in the sandbox: "passed" or the first failure's status."""
    from advfusion_cli.sandbox.programs import run_tests

    return run_tests(language, source, [(stdin, tuple(out)) for stdin, out in tests]).status


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def execute_candidates(
    language: str,
    tests_per_item: Sequence[Sequence[tuple[str, Sequence[str]]]],
    candidates_per_item: Sequence[Sequence[str]],
    *,
    cache: ExecutionCache | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[ItemExecution | None]:
    """One ItemExecution per item (None for an item without tests).

    `on_progress(done, total)` follows the sandbox runs actually needed (cache misses).
    """
    cache = cache if cache is not None else ExecutionCache()
    workers = workers or default_workers()
    pending: dict[str, tuple[str, list]] = {}
    keys: list[list[str] | None] = []
    for tests, candidates in zip(tests_per_item, candidates_per_item, strict=True):
        if not tests:
            keys.append(None)
            continue
        plain_tests = [[stdin, list(outputs)] for stdin, outputs in tests]
        item_keys = []
        for source in candidates:
            if not source.strip():
                item_keys.append(EMPTY)
                continue
            key = _digest(language, source, plain_tests)
            item_keys.append(key)
            if key in cache.results:
                cache.hits += 1
            elif key not in pending:
                pending[key] = (source, plain_tests)
        keys.append(item_keys)
    _run_pending(language, pending, cache, workers, on_progress)
    results: list[ItemExecution | None] = []
    for item_keys in keys:
        if item_keys is None:
            results.append(None)
            continue
        statuses = [EMPTY if key == EMPTY else cache.results[key] for key in item_keys]
        results.append(ItemExecution(len(statuses), statuses.count("passed"), statuses))
    return results


def _run_pending(
    language: str,
    pending: dict[str, tuple[str, list]],
    cache: ExecutionCache,
    workers: int,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    if not pending:
        return
    total = len(pending)
    cache.runs += total
    if on_progress is not None:
        on_progress(0, total)
    if workers == 1 or total == 1:
        for done, (key, (source, tests)) in enumerate(pending.items(), start=1):
            cache.results[key] = _run_candidate(language, source, tests)
            if on_progress is not None:
                on_progress(done, total)
        return
    # spawn: a forked copy of a process holding torch threads is not safe to run code in.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {
            key: pool.submit(_run_candidate, language, source, tests)
            for key, (source, tests) in pending.items()
        }
        for done, (key, future) in enumerate(futures.items(), start=1):
            cache.results[key] = future.result()
            if on_progress is not None:
                on_progress(done, total)
