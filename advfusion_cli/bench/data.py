"""Data preparation at real size: the prepared-data cache next to the previous uncached path.

`write_commitpack_folder` makes a CommitPackFT-layout folder of N records by repeating the
records of a seed folder (the testbed by default, or any CommitPackFT-layout folder such as
the real-schema samples) with new `commit` ids, subjects and repositories, so every record
is distinct and the repository-grouped split sees many groups. `measure` runs one way of
preparing a training stage's data (the plan's counts, then train and validation features of
one language) in a fresh process, so each gets its own peak RSS:

- `old`: the previous path, a sequential load (the standard library's difflib, no worker
  processes) + per-example `encode_examples` into Python lists;
- `cold`: the cache on an empty cache folder (load, batched tokenizing, Arrow written);
- `warm`: the same again, read back from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("old", "cold", "warm")
DEFAULT_SIZES = (10_000, 50_000, 100_000)
# goals on the 2-core machine (issue 12), for the 50k size and the 100k/50k memory growth
GOALS = {"cold_s": 30.0, "warm_s": 3.0, "peak_rss_mb": 1024.0, "rss_growth": 1.15}


def _seed_rows(seed: Path, language: str) -> list[dict]:
    from advfusion_cli.data.languages import commitpack_config

    path = seed / "data" / commitpack_config(language) / "data.jsonl"
    if not path.is_file():
        path = seed / commitpack_config(language) / "data.jsonl"
    if not path.is_file():
        from advfusion_cli.errors import UserError

        raise UserError(f"--from {seed}: no CommitPackFT file for '{language}' ({path}).")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_commitpack_folder(seed: Path, language: str, records: int, out: Path) -> int:
    """`out/data/<config>/data.jsonl` with `records` rows made from the seed's rows; bytes."""
    from advfusion_cli.data.languages import commitpack_config

    rows = _seed_rows(seed, language)
    folder = out / "data" / commitpack_config(language)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "data.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(records):
            row = dict(rows[i % len(rows)])
            copy = i // len(rows)
            row["commit"] = hashlib.sha1(f"{row['commit']}-{i}".encode()).hexdigest()
            row["subject"] = f"{row['subject']} ({copy})"
            row["repos"] = f"{row.get('repos') or 'org/repo'}-{copy % 97}"
            handle.write(json.dumps(row) + "\n")
    return (folder / "data.jsonl").stat().st_size


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _prepare(mode: str, source: Path, language: str, cache: Path, tokenizer_path: str) -> dict:
    """One preparation in this process: what a training run does before its first step."""
    import difflib

    from advfusion_cli.data import row_pool
    from advfusion_cli.data.tasks import commit_message

    saved = row_pool.PARALLEL_MIN_BYTES, commit_message.unified_diff
    if mode == "old":  # the first version: one core, the standard library's difflib
        row_pool.PARALLEL_MIN_BYTES = float("inf")
        commit_message.unified_diff = difflib.unified_diff
    try:
        return _prepare_once(mode, source, language, cache, tokenizer_path)
    finally:
        row_pool.PARALLEL_MIN_BYTES, commit_message.unified_diff = saved


def _prepare_once(mode: str, source: Path, language: str, cache: Path, tokenizer_path: str):
    from transformers import AutoTokenizer

    from advfusion_cli.data.cache import PreparedCache
    from advfusion_cli.data.encoding import encode_examples
    from advfusion_cli.spec.schema import DataSpec
    from advfusion_cli.workflows.task_data import (
        StageEncoder,
        count_examples,
        load_examples,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    data = DataSpec(
        task="commit-message", source=str(source), languages=[language], target=language
    )
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    if mode == "old":
        counts = count_examples(data, [language])
        features = {
            split: encode_examples(
                tokenizer,
                load_examples(data, language, split),
                max_prompt_tokens=data.max_prompt_tokens,
                max_target_tokens=data.max_target_tokens,
                max_total_tokens=data.max_total_tokens,
            )
            for split in ("train", "validation")
        }
        sizes = {split: len(rows) for split, rows in features.items()}
    else:
        store = PreparedCache(cache)
        counts = count_examples(data, [language], store)
        stage = StageEncoder(data, tokenizer, store).stage([language], [language])
        sizes = {"train": len(stage.train), "validation": len(stage.eval)}
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the largest worker process (parsing or tokenizing) that ran, 0 when none did
    worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "mode": mode,
        "seconds": seconds,
        # CPU seconds of this process and its tokenizing workers: on a shared machine the
        # wall clock also counts waiting for other users' processes
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_kb / 1024,
        "worker_peak_rss_mb": worker_kb / 1024,
        "examples": counts[language],
        "features": sizes,
    }


def measure(mode: str, source: Path, language: str, cache: Path, tokenizer: str) -> dict:
    """`_prepare` in a fresh Python process (its own peak RSS); the result as a dict."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
    )
    command = [sys.executable, "-m", "advfusion_cli.bench.data", mode, str(source)]
    command += [language, str(cache), tokenizer]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"mode": mode, "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def goal_checks(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's goals, for the sizes measured: one line each, 'ok' or 'MISSED'."""
    by = {(r["records"], r["mode"]): r for r in rows if "error" not in r}
    lines = []
    if (50_000, "cold") in by:
        cold, warm = by[(50_000, "cold")], by.get((50_000, "warm"))
        checks = [("cold", cold["seconds"], GOALS["cold_s"], "s")]
        if warm:
            checks.append(("warm", warm["seconds"], GOALS["warm_s"], "s"))
        peak = max(by[(50_000, m)]["peak_rss_mb"] for m in ("cold", "warm") if (50_000, m) in by)
        checks.append(("peak RSS", peak, GOALS["peak_rss_mb"], " MB"))
        for name, value, goal, unit in checks:
            verdict = "ok" if value <= goal else "MISSED"
            lines.append(f"50k {name}: {value:.1f}{unit} (goal <= {goal:g}{unit}) {verdict}")
    if (50_000, "cold") in by and (100_000, "cold") in by:
        growth = by[(100_000, "cold")]["peak_rss_mb"] / by[(50_000, "cold")]["peak_rss_mb"]
        verdict = "ok" if growth <= GOALS["rss_growth"] else "MISSED"
        lines.append(f"100k/50k peak RSS (cold): {growth:.2f}x (goal <= 1.15x) {verdict}")
    return lines


if __name__ == "__main__":  # the worker `measure` starts: mode source language cache tokenizer
    mode, source, language, cache, tokenizer = sys.argv[1:6]
    print(json.dumps(_prepare(mode, Path(source), language, Path(cache), tokenizer)))
