"""Evaluation throughput on 1 and N processes, and execution overlapped with generation.

Each measurement is a real `advfusion evaluate --run base` in its own process(es), on the
same items: one process started directly, then N under `accelerate launch` (one model copy
per process, items split). Throughput is read from what the evaluation recorded: its items
and new tokens over `timings.generation_s` (from the main process's first batch to every
process's results gathered; model loading and start-up are not in it).

Overlap (tasks whose candidates run, e.g. code generation): the N-process evaluation with
execution on, against generation alone (the throughput run, --no-execute) plus the same
candidates executed alone afterwards (`execute_candidates`, what evaluation did before
execution overlapped). Overlap works when the first is below the sum.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.errors import UserError


@dataclass(frozen=True)
class EvalBenchSettings:
    processes: int = 2
    task: str = "code-generation"
    target: str = "python"
    limit: int = 64
    max_new_tokens: int = 128
    batch_size: int = 4
    model: str | None = None  # None: the embedded model
    workers: int | None = None  # sandbox processes per evaluation process


def _evaluate_args(settings: EvalBenchSettings, out: Path, workdir: Path, execute: bool):
    args = ["evaluate", "--run", "base", "--task", settings.task, "--target", settings.target]
    args += ["--limit", str(settings.limit), "--max-new-tokens", str(settings.max_new_tokens)]
    args += ["--batch-size", str(settings.batch_size), "--out", str(out)]
    args += ["--workdir", str(workdir), "--execute" if execute else "--no-execute"]
    if settings.model:
        args += ["--model", settings.model]
    if settings.workers:
        args += ["--workers", str(settings.workers)]
    return args


def launch_command(processes: int, args: list[str]) -> list[str]:
    """`advfusion ARGS` on `processes` processes: directly for one, else accelerate launch
    (GPUs: one per process; CPU: a gloo group)."""
    if processes == 1:
        return [sys.executable, "-m", "advfusion_cli", *args]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launcher += ["--num_processes", str(processes), "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*launcher, "-m", "advfusion_cli", *args]


def _run(processes: int, args: list[str], log, threads: int | None) -> float:
    """Wall seconds of one launch; `threads`: OMP_NUM_THREADS of each process (None: as
    the environment says, torch's default for one process)."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    done = subprocess.run(launch_command(processes, args), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"bench eval: the evaluation on {processes} process(es) failed: {tail}")
    seconds = time.perf_counter() - started
    log(f"{processes} process(es), threads {threads or 'default'}: {seconds:.1f} s wall")
    return seconds


def _measured(folder: Path, processes: int, wall_s: float, threads: int | None) -> dict:
    record = json.loads((folder / "metrics.json").read_text())
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    tokens = sum(sum(row["new_tokens"]) for row in rows)
    seconds = record["timings"]["generation_s"]
    return {
        "processes": processes,
        "threads": threads,
        "items": record["n_items"],
        "new_tokens": tokens,
        "generation_s": seconds,
        "execution_tail_s": record["timings"].get("execution_s", 0.0),
        "wall_s": round(wall_s, 3),
        "items_per_s": record["n_items"] / seconds,
        "tokens_per_s": tokens / seconds,
        "scores": record["scores"],
    }


def _execute_alone(folder: Path, settings: EvalBenchSettings) -> tuple[float, int]:
    """The evaluation's candidates executed after the fact, as before overlap: seconds, runs."""
    from advfusion_cli.evaluate.cli import base_spec
    from advfusion_cli.evaluate.examples import select_items
    from advfusion_cli.evaluate.execution import ExecutionCache, execute_candidates

    record = json.loads((folder / "metrics.json").read_text())
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    flags = {
        "data.task": settings.task,
        "data.target": settings.target,
        "model.name_or_path": settings.model,
        "output.workdir": str(folder.parent / "work"),
    }
    spec = base_spec(None, None, None, flags)
    items = select_items(spec.data, settings.target, record["split"], record["limit"])
    by_id = {item.id: item for item in items}
    tested = [row for row in rows if by_id[row["id"]].tests]
    cache = ExecutionCache()
    started = time.perf_counter()
    execute_candidates(
        settings.target,
        [by_id[row["id"]].tests for row in tested],
        [row.get("predictions", [row["prediction"]]) for row in tested],
        cache=cache,
        workers=settings.workers,
    )
    return time.perf_counter() - started, cache.runs


def eval_bench(settings: EvalBenchSettings, root: Path, overlap: bool, log=print) -> dict:
    """Throughput on 1 and N processes, speed-up; with `overlap`, the overlap measurement."""
    if settings.processes < 2:
        raise UserError(f"--processes must be >= 2, got {settings.processes}.")
    workdir = root / "work"
    cores = os.cpu_count() or 1
    per_process = max(1, cores // settings.processes)
    # One process twice: torch's default threads (what a plain run gets; on a busy CPU its
    # threads can contend badly) and `per_process` threads (what each of the N gets).
    runs = [(1, None), (1, per_process), (settings.processes, per_process)]
    rows = []
    for processes, threads in runs:
        out = root / f"generate-{processes}-{threads or 'default'}"
        args = _evaluate_args(settings, out, workdir, execute=False)
        wall = _run(processes, args, log, threads)
        rows.append(_measured(out, processes, wall, threads))
    many = rows[-1]
    best_one = max(rows[:-1], key=lambda row: row["items_per_s"])
    outputs = [(root / f"generate-{p}-{t or 'default'}" / "predictions.jsonl") for p, t in runs]
    result = {
        "settings": settings.__dict__,
        "rows": rows,
        # against the faster of the one-process runs: the conservative ratio
        "speedup": many["items_per_s"] / best_one["items_per_s"],
        "identical_predictions": len({path.read_bytes() for path in outputs}) == 1,
        "overlap": None,
    }
    if overlap:
        out = root / f"execute-{settings.processes}"
        args = _evaluate_args(settings, out, workdir, execute=True)
        wall = _run(settings.processes, args, log, per_process)
        overlapped = _measured(out, settings.processes, wall, per_process)
        alone_s, programs = _execute_alone(outputs[-1].parent, settings)
        total = overlapped["generation_s"] + overlapped["execution_tail_s"]
        result["overlap"] = {
            "generation_only_s": many["generation_s"],
            "execution_only_s": round(alone_s, 3),
            "sum_s": round(many["generation_s"] + alone_s, 3),
            "overlapped_s": round(total, 3),
            "programs_run": programs,
            # the text metrics of the run with execution equal generation alone's
            "same_scores": all(overlapped["scores"][k] == v for k, v in many["scores"].items()),
        }
    return result
