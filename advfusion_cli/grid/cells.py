"""A grid's cells: one comparison (CompareRequest) per model × task × target.

compare's own flags make one cell; comma lists in its --model/--task/--target, or the lists of a
grid spec, make every combination. Methods and seeds stay inside each cell (compare's lists).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from advfusion_cli.compare.workflow import CompareRequest
from advfusion_cli.errors import UserError
from advfusion_cli.grid.spec import GridSpec

AXES = ("models", "tasks", "targets", "methods", "seeds")


@dataclass(frozen=True)
class Cell:
    model: str | None  # None: the spec's (compare's default)
    task: str | None
    target: str | None
    request: CompareRequest


def split_list(value: str | None) -> list[str | None]:
    """`a,b` -> [a, b]; None -> [None] (the default, one value)."""
    if value is None:
        return [None]
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or [None]


def expand(
    models: list[str | None],
    tasks: list[str | None],
    targets: list[str | None],
    options: dict,
) -> list[Cell]:
    """Every combination, each a CompareRequest built from compare's `options` (build_request's
    keyword arguments) with that cell's model, task and target as flags."""
    from advfusion_cli.compare.cli import build_request

    cells = []
    seen: set[tuple] = set()
    for model, task, target in itertools.product(models, tasks, targets):
        if (model, task, target) in seen:
            raise UserError(f"The grid lists the cell ({model}, {task}, {target}) twice.")
        seen.add((model, task, target))
        flags = {**options["flags"], "data.target": target}
        flags["model.name_or_path"] = model if model is not None else flags["model.name_or_path"]
        flags["data.task"] = task if task is not None else flags["data.task"]
        cells.append(Cell(model, task, target, build_request(**{**options, "flags": flags})))
    return cells


def grid_options(grid: GridSpec, name: str) -> tuple[list, list, list, dict]:
    """(models, tasks, targets, build_request options) of a grid spec; an empty list is one
    line saying the grid expands to nothing."""
    from advfusion_cli.compare.options import DEFAULT_METHODS
    from advfusion_cli.workflows import cli_common as c

    for axis in AXES:
        if getattr(grid, axis) == []:
            raise UserError(
                f"{name}: {axis} is an empty list, so the grid expands to no jobs; list at "
                f"least one value or leave '{axis}' out for the default."
            )
    evaluation = grid.evaluation
    options = dict(
        methods=",".join(grid.methods or DEFAULT_METHODS),
        langs=",".join(grid.langs) if grid.langs else None,
        seeds=",".join(str(seed) for seed in grid.seeds) if grid.seeds else None,
        vary=grid.vary,
        split=evaluation.split,
        limit=evaluation.limit,
        decoding=dict(
            n=evaluation.n,
            temperature=evaluation.temperature,
            top_p=evaluation.top_p,
            top_k=evaluation.top_k,
            batch_size=evaluation.batch_size,
            max_new_tokens=evaluation.max_new_tokens,
        ),
        execute=evaluation.execute,
        workers=evaluation.workers,
        metrics=",".join(evaluation.metrics) if evaluation.metrics else None,
        resamples=evaluation.resamples,
        out=None,
        force=False,
        flags=c.common_flags(None, grid.data, None, grid.quantization, grid.workdir, None)
        | c.cache_flags(grid.no_cache),
        spec_path=Path(grid.spec) if grid.spec else None,
        sets=list(grid.set),
        preset=grid.preset,
    )
    return (
        list(grid.models or [None]),
        list(grid.tasks or [None]),
        list(grid.targets or [None]),
        options,
    )
