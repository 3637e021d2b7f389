"""Execution overlapped with generation: finished candidates run while the next batches generate.

A `CandidateFeed` is handed each item's candidates as soon as its batch is generated
(`submit`), works on them in the background, and gives every submitted item's result at the
end (`results`). Generation never waits for it except at the very end. The evaluation does
not know what a feed does with candidates: `SandboxFeed` runs them against the item's
stdin/stdout tests for pass@k; a benchmark with its own program assembly and verdicts plugs
in another feed with the same three methods. Results must pickle: on several processes each
one's feed runs its own share, and the results travel to the main process with the
generations.

`SandboxFeed` keeps `execute_candidates`'s rules exactly (so the table ends the same): one
sandbox run per distinct (language, source, tests), empty candidates fail without running,
the shared `ExecutionCache` answers programs already run, and a spawned process pool runs
the rest (the sandbox's setup must not run from threads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Protocol

from advfusion_cli.evaluate.execution import (
    EMPTY,
    ExecutionCache,
    ItemExecution,
    _digest,
    _run_candidate,
)


class CandidateFeed(Protocol):
    """Where finished candidates go; results are keyed by item index."""

    def submit(self, index: int, candidates: Sequence[str]) -> None: ...

    def results(self) -> dict[int, object]:
        """Wait for everything submitted; item index -> its result (picklable)."""
        ...

    def close(self) -> None:
        """Stop the background work (also after a failure); idempotent."""
        ...


class SandboxFeed:
    """Runs each submitted item's candidates against its tests in a process pool."""

    def __init__(
        self,
        language: str,
        tests_by_index: dict[int, Sequence[tuple[str, Sequence[str]]]],
        *,
        workers: int,
        cache: ExecutionCache | None = None,
        on_executed: Callable[[int], None] | None = None,
    ):
        self.language = language
        self.tests = {
            i: [[stdin, list(out)] for stdin, out in t] for i, t in tests_by_index.items()
        }
        self.workers = max(1, workers)
        self.cache = cache if cache is not None else ExecutionCache()
        self.on_executed = on_executed  # (programs run) after each sandbox run finishes
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[str, Future] = {}
        self._keys: dict[int, list[str]] = {}

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a forked copy of a process holding torch threads is not safe to run code in
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context("spawn")
            )
        return self._pool

    def submit(self, index: int, candidates: Sequence[str]) -> None:
        tests = self.tests.get(index)
        if not tests:
            return  # no tests: nothing to execute (the item has no pass@k)
        keys = []
        for source in candidates:
            if not source.strip():
                keys.append(EMPTY)
                continue
            key = _digest(self.language, source, tests)
            keys.append(key)
            if key in self.cache.results:
                self.cache.hits += 1
            elif key not in self._running:
                future = self._start().submit(_run_candidate, self.language, source, tests)
                if self.on_executed is not None:
                    future.add_done_callback(lambda _: self.on_executed(1))
                self._running[key] = future
        self._keys[index] = keys

    def results(self) -> dict[int, ItemExecution]:
        for key, future in self._running.items():
            self.cache.results[key] = future.result()
        self.cache.runs += len(self._running)
        self._running = {}
        self.close()
        out = {}
        for index, keys in self._keys.items():
            statuses = [EMPTY if key == EMPTY else self.cache.results[key] for key in keys]
            out[index] = ItemExecution(len(statuses), statuses.count("passed"), statuses)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class ProgramFeed:
    """MultiPL-E's feed: each submitted item's programs (prompt + completion + tests) run in
    the sandbox with the official rules, each distinct program once.

    `programs_for(index, candidates)` builds an item's programs; `known` holds results from
    an earlier attempt's execution journal (those programs are not run again). Results are
    item index -> {program key: result} for the programs this feed ran; the main process
    adds them to the execution journal and scores (evaluate/multiple.py).
    """

    def __init__(
        self,
        language: str,
        programs_for: Callable[[int, Sequence[str]], list[str]],
        *,
        known: dict | None = None,
        workers: int,
        on_executed: Callable[[int], None] | None = None,
    ):
        self.language = language
        self.programs_for = programs_for
        self.known = known or {}
        self.workers = max(1, workers)
        self.on_executed = on_executed
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[str, tuple[int, Future]] = {}  # key -> (first item, future)

    def submit(self, index: int, candidates: Sequence[str]) -> None:
        from advfusion_cli.evaluate.multiple_execution import _run_one, program_key

        for program in self.programs_for(index, candidates):
            key = program_key(self.language, program)
            if key in self.known or key in self._running:
                continue
            if self._pool is None:  # spawn: see SandboxFeed
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=get_context("spawn")
                )
            future = self._pool.submit(_run_one, self.language, program)
            if self.on_executed is not None:
                future.add_done_callback(lambda _: self.on_executed(1))
            self._running[key] = (index, future)

    def results(self) -> dict[int, dict[str, dict]]:
        out: dict[int, dict[str, dict]] = {}
        for key, (index, future) in self._running.items():
            out.setdefault(index, {})[key] = future.result()
        self._running = {}
        self.close()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
