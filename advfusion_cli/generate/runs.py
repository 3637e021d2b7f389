"""Which trained run `--run` means: a run folder or id, `method/target`, or a comparison's best.

Run folders, run ids and `method/target` go through advfusion_cli.inference.resolve (the
same rules as `evaluate`). A comparison is named by its folder or results.json, or by
`best` / `best/<target>`: the newest comparison in `<workdir>/compare/` (for that target and
task). Its best run is the trained method with the highest mean of the comparison's headline
metric (the first column of its table: corpus BLEU-4, pass@1, ...), and among that method's
seeds the run that scored highest; the frozen-base rows are not runs and never chosen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.errors import UserError
from advfusion_cli.workflows.runs import RunDir, Workdir

RESULTS_FILE = "results.json"
BEST = "best"


@dataclass(frozen=True)
class ResolvedRun:
    run: RunDir
    how: str = ""  # how a comparison's best was chosen; empty for a run named directly


def _read_results(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except OSError as err:
        raise UserError(
            f"Cannot read comparison results '{path}': {err.strerror or err}."
        ) from None
    except ValueError:
        raise UserError(f"Comparison results '{path}' are not valid JSON.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise UserError(f"'{path}' is not a comparison's results.json (no rows).")
    if not all(isinstance(row, dict) for row in payload["rows"]):
        raise UserError(
            f"'{path}' is not a valid comparison's results.json: a row is not a mapping."
        )
    for row in payload["rows"]:
        for key, kind in (("metrics", dict), ("runs", list)):
            if row.get(key) is not None and not isinstance(row[key], kind):
                raise UserError(
                    f"'{path}' is not a valid comparison's results.json: a row's '{key}' is "
                    f"not a {'mapping' if kind is dict else 'list'}."
                )
        if any(not isinstance(entry, dict) for entry in row.get("runs") or []):
            raise UserError(
                f"'{path}' is not a valid comparison's results.json: a run entry is not a mapping."
            )
    if not isinstance(payload.get("table_metrics") or [], list):
        raise UserError(
            f"'{path}' is not a valid comparison's results.json: 'table_metrics' is not a list."
        )
    return payload


def _run_of(entry: dict, results: Path) -> RunDir | None:
    """A row's run: by id next to the comparison (<workdir>/compare/<name>/), else as recorded."""
    run_id = entry.get("run_id")
    if not isinstance(run_id, str):
        return None
    beside = Workdir(results.parent.parent.parent).run(run_id)
    if beside.path.is_dir():
        return beside
    recorded = entry.get("run_dir")
    return RunDir(Path(recorded)) if isinstance(recorded, str) else beside


def best_of_compare(results: Path) -> ResolvedRun:
    """The best trained run of a comparison (see the module docstring)."""
    from advfusion_cli.inference.resolve import require_finished

    payload = _read_results(results)
    metrics = payload.get("table_metrics") or []
    if not metrics:
        raise UserError(
            f"Comparison '{results.parent}' has no table metrics to pick a best run by."
        )
    headline = metrics[0]
    best: tuple[float, str, dict] | None = None
    for row in payload["rows"]:
        cell = (row.get("metrics") or {}).get(headline) or {}
        if not isinstance(cell, dict):
            raise UserError(
                f"'{results}' is not a valid comparison's results.json: the {headline} cell of "
                f"{row.get('method', '?')} is not a mapping."
            )
        runs = [r for r in row.get("runs") or [] if isinstance(r.get("run_id"), str)]
        if not runs or not isinstance(cell.get("mean"), int | float):
            continue  # the frozen base, or a method without this metric
        per_seed = cell.get("per_seed") or []
        if not isinstance(per_seed, list):
            per_seed = []
        scored = [
            (per_seed[i] if i < len(per_seed) and per_seed[i] is not None else cell["mean"], r)
            for i, r in enumerate(runs)
        ]
        top = max(scored, key=lambda pair: pair[0])[1]  # first of equals: the comparison's order
        if best is None or cell["mean"] > best[0]:
            best = (cell["mean"], row.get("method", "?"), top)
    if best is None:
        raise UserError(
            f"Comparison '{results.parent}' has no trained run scored on {headline} "
            "(only the frozen base?); pass a run with --run."
        )
    mean, method, entry = best
    run = _run_of(entry, results)
    if run is None:
        raise UserError(f"Comparison '{results.parent}' does not record the run of {method}.")
    require_finished(run)
    how = f"best of comparison {results.parent.name}: {method} ({headline} {mean:.4g})"
    return ResolvedRun(run, how)


def latest_compare(workdir: Path, target: str | None, task: str | None) -> Path:
    """results.json of the newest comparison in the workdir for `target` and `task`."""
    folder = Workdir(Path(workdir)).root / "compare"
    found: list[tuple[str, Path]] = []
    for results in sorted(folder.glob(f"*/{RESULTS_FILE}")) if folder.is_dir() else []:
        payload = _read_results(results)  # a damaged results.json is named, not skipped
        if target is not None and payload.get("target") != target:
            continue
        if task is not None and payload.get("task") != task:
            continue
        found.append((str(payload.get("created", "")), results))
    if not found:
        kind = f"{task} comparison" if task else "comparison"
        scope = f" for '{target}'" if target else ""
        raise UserError(
            f"No {kind}{scope} in {folder}; run `advfusion compare` first or pass a run."
        )
    return max(found, key=lambda pair: pair[0])[1]


def _compare_results(path: Path) -> Path | None:
    """results.json when `path` names a comparison (its folder or the file), else None."""
    if path.is_file() and path.name == RESULTS_FILE:
        return path
    if path.is_dir() and (path / RESULTS_FILE).is_file() and not (path / "job.yaml").exists():
        return path / RESULTS_FILE
    return None


def resolve_generation_run(
    run: str | Path | RunDir, workdir: Path, task: str | None
) -> ResolvedRun:
    """The finished run `--run` names; the frozen base (`base`) is not a run and is refused."""
    from advfusion_cli.inference.resolve import require_finished, resolve_run

    if isinstance(run, RunDir):
        return ResolvedRun(require_finished(run))
    text = str(run).strip()
    results = _compare_results(Path(text).expanduser())
    if results is not None:
        return best_of_compare(results)
    head, _, target = text.partition("/")
    if head.lower() == BEST:
        from advfusion_cli.spec.names import canonical_language

        language = canonical_language(target) if target else None
        return best_of_compare(latest_compare(workdir, language, task))
    ref = resolve_run(text, workdir, task=task)
    if ref.run is None:
        raise UserError(
            f"'{text}' is the frozen base model, not a trained run; generate needs a run "
            "(a run folder, a run id, method/target such as advfusion/ruby, or best)."
        )
    return ResolvedRun(ref.run)
