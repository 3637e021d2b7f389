"""Parsing the rows of a large JSON Lines file in worker processes, in file order.

Rendering a CommitPackFT record (a `difflib` unified diff of two whole files) costs about a
quarter of a millisecond of pure Python, so 50,000 records are ~12 s on one core. For files
past PARALLEL_MIN_BYTES, `parsed_rows` cuts the file into line-aligned byte ranges (counting
lines as it goes, so every row keeps its line number) and hands the ranges to a pool (one
worker per core, forked: nothing to import again) that reads its range, decodes the JSON and
runs the task's `parse`. Results come back in file order, so examples, their order, drop
counts and the first error under `--strict` are exactly those of the sequential path. At
most a few ranges are in flight at a time: the file is never held in memory whole.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from advfusion_cli.data.records import Diagnostics, RecordError
from advfusion_cli.data.sources import RawRow, iter_rows, json_line

T = TypeVar("T")

PARALLEL_MIN_BYTES = 32 * 1024 * 1024  # smaller files: starting workers costs more than it saves
CHUNK_BYTES = 2 * 1024 * 1024
IN_FLIGHT_PER_WORKER = 3


def _parse_line(path: Path, number: int, raw: bytes, parse: Callable[[RawRow], T]):
    """("ok", parse result) or ("bad", reason, detail, where): what `iter_rows` + parse do."""
    try:
        return ("ok", parse(RawRow(json_line(raw), path, number)))
    except RecordError as err:
        return ("bad", err.reason, err.detail, f"{path}:{number}")


def _parse_range(path: Path, parse: Callable[[RawRow], T], offset: int, size: int, line: int):
    """Parse the lines in bytes [offset, offset + size) of `path`; the first is line `line`."""
    with path.open("rb") as handle:
        handle.seek(offset)
        block = handle.read(size)
    results = []
    for number, raw in enumerate(block.split(b"\n"), start=line):
        if raw.strip():
            results.append(_parse_line(path, number, raw, parse))
    return results


def _line_ranges(path: Path) -> Iterator[tuple[int, int, int]]:
    """(offset, size, first line number) of consecutive ranges of whole lines."""
    offset, line = 0, 1
    with path.open("rb") as handle:
        while True:
            block = handle.read(CHUNK_BYTES)
            if not block:
                return
            if not block.endswith(b"\n"):
                block += handle.readline()  # finish the last line (or reach the end)
            yield offset, len(block), line
            offset += len(block)
            line += block.count(b"\n")


def _workers() -> int:
    return min(os.cpu_count() or 1, 8)


def _use_pool(path: Path) -> bool:
    if path.suffix != ".jsonl" or _workers() < 2:
        return False
    if "fork" not in multiprocessing.get_all_start_methods():
        return False  # spawning would re-import torch in every worker: not worth it
    try:
        if path.stat().st_size < PARALLEL_MIN_BYTES:
            return False
        with path.open("rb") as handle:
            head = handle.read(4096).lstrip()
    except OSError:
        return False
    return not head.startswith(b"[")  # a JSON array: iter_rows reads it whole


def parsed_rows(path: Path, parse: Callable[[RawRow], T], diagnostics: Diagnostics) -> Iterator[T]:
    """`parse(row)` for every row of `path`, in order; unreadable lines and RecordErrors go
    to `diagnostics` (raising under strict), as reading with `iter_rows` does."""
    if not _use_pool(path):
        for row in iter_rows(path, diagnostics):
            try:
                yield parse(row)
            except RecordError as err:
                diagnostics.malformed(err, row.where)
        return
    yield from _pooled(path, parse, diagnostics)


def _pooled(path: Path, parse: Callable[[RawRow], Any], diagnostics: Diagnostics) -> Iterator:
    from concurrent.futures import ProcessPoolExecutor

    workers = _workers()
    # Forked workers would print the tokenizers library's fork warning when the parent has
    # tokenized already; they never tokenize, so its parallelism is switched off for them.
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            pending: deque = deque()
            try:
                for offset, size, line in _line_ranges(path):
                    pending.append(pool.submit(_parse_range, path, parse, offset, size, line))
                    if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                        yield from _settle(pending.popleft().result(), diagnostics)
                while pending:
                    yield from _settle(pending.popleft().result(), diagnostics)
            finally:
                for future in pending:
                    future.cancel()
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def _settle(results: list[tuple], diagnostics: Diagnostics) -> Iterator:
    for result in results:
        if result[0] == "ok":
            yield result[1]
        else:
            _, reason, detail, where = result
            diagnostics.malformed(RecordError(reason, detail), where)
