"""A grid's comparisons as one job graph: a stage per training run, evaluation and table.

    per cell (model, task, target), per job (method × seed × --vary value) of compare:
        adapter stages   one per language adapter the job trains (one run id = one stage,
                         shared by every job and cell that needs it)
        fusion stage     after the adapter stages it fuses
        evaluate stage   after its training stage (the base: no training)
    table stage          per cell, after its evaluations (compare's results.json/.csv/.md)
    summary stage        after every table: the grid summary (methods × languages)

Stages are planned exactly as compare plans its runs (compare.workflow.prepare, then the
workflows' plans), so a stage's run id is the run compare would train, and a stage whose
result is already in the workdir is marked done and not run again.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from advfusion_cli.grid import state
from advfusion_cli.grid.cells import Cell
from advfusion_cli.grid.job import SUMMARY
from advfusion_cli.grid.spec import ResourcePlan, Resources
from advfusion_cli.workflows.runs import Workdir, identity_hash


@dataclass
class Stage:
    name: str  # unique in the grid, a file name
    kind: str  # adapter | fusion | evaluate | table | summary
    label: str  # what a person reads: "task-adapter java (seed 0)"
    output: str  # where its result lands: run folder, evaluation folder, results folder
    done: bool  # its result is already in the workdir
    deps: list[str] = field(default_factory=list)
    model: str = ""  # the base model (adapters of one base form one job array)
    payload: dict = field(default_factory=dict)  # what grid.worker runs
    resources: Resources = field(default_factory=Resources)


@dataclass
class Graph:
    folder: Path  # <workdir>/grids/<name>
    stages: dict[str, Stage]  # in dependency order: every stage after its dependencies
    cells: list[dict]  # model, task, target, results folder of each comparison

    @property
    def name(self) -> str:
        return self.folder.name

    def todo(self) -> list[Stage]:
        return [stage for stage in self.stages.values() if not stage.done]

    def dependants(self, name: str) -> list[str]:
        """Every stage that needs `name`, directly or through others, in graph order."""
        needed = {name}
        found = []
        for stage in self.stages.values():
            if any(dep in needed for dep in stage.deps):
                needed.add(stage.name)
                found.append(stage.name)
        return found


def build(cells: list[Cell], resources: ResourcePlan, name: str | None = None) -> Graph:
    """Plan every cell; nothing is loaded or trained (the workflows' dry-run planning)."""
    from advfusion_cli.compare.workflow import prepare

    stages: dict[str, Stage] = {}
    summaries = []
    workdirs = set()
    for cell in cells:
        request = cell.request
        base, seeds, jobs, specs, folder = prepare(request)
        workdirs.add(Path(base.output.workdir))
        evaluations = []
        for job, spec in zip(jobs, specs, strict=True):
            training, run = _training_stages(stages, job, spec)
            evaluations.append(_evaluation_stage(stages, job, spec, run, request, training))
        table_request = dataclasses.replace(
            request, evaluation=dataclasses.replace(request.evaluation, force=False)
        )
        table = Stage(
            name=f"table-{folder.name}",
            kind="table",
            label=f"table {task_label(base, request)} -> {base.data.target} ({_model_label(base)})",
            output=str(folder),
            done=(folder / "results.json").is_file()
            and all(stages[dep].done for dep in evaluations),
            deps=evaluations,
            model=base.model.name_or_path,
            payload={"kind": "table", "request": table_request},
        )
        _add(stages, table)
        summaries.append(
            {
                "model": base.model.name_or_path,
                "task": task_label(base, request),
                "target": base.data.target,
                "results": str(folder),
                "table": table.name,
            }
        )
    if len(workdirs) != 1:
        listed = ", ".join(sorted(str(w) for w in workdirs))
        raise _error(f"The grid's comparisons use different workdirs ({listed}); use one.")
    (workdir,) = workdirs
    folder = _grid_folder(workdir, [c["results"] for c in summaries], name)
    tables = [c["table"] for c in summaries]
    outputs = [folder / "summary.md", folder / "summary.csv"]
    stages[SUMMARY] = Stage(
        name=SUMMARY,
        kind="summary",
        label=f"grid summary ({len(summaries)} comparison{'s' if len(summaries) > 1 else ''})",
        output=str(outputs[0]),
        done=all(p.is_file() for p in outputs) and all(stages[t].done for t in tables),
        deps=tables,
        payload={"kind": "summary", "cells": summaries, "folder": str(folder)},
    )
    for stage in stages.values():
        stage.resources = resources.for_kind(stage.kind)
    return Graph(folder, stages, summaries)


def _grid_folder(workdir: Path, results: list[str], name: str | None) -> Path:
    """<workdir>/grids/<name>; unnamed grids are named by their comparisons' folders."""
    return Workdir(workdir).root / "grids" / (name or "grid-" + identity_hash(sorted(results)))


def grid_folder(cells: list[Cell], name: str | None = None) -> Path:
    """The folder `build` gives these cells, worked out without planning them (for status)."""
    from advfusion_cli.compare.workflow import compare_folder, reference_spec

    results, workdir = [], None
    for cell in cells:
        base = reference_spec(cell.request)
        seeds = list(cell.request.seeds) if cell.request.seeds else [base.training.seed]
        results.append(str(compare_folder(cell.request, base, seeds)))
        workdir = Path(base.output.workdir)
    return _grid_folder(workdir, results, name)


def _error(message: str):
    from advfusion_cli.errors import UserError

    return UserError(message)


def task_label(base, request) -> str:
    """The task a comparison's table reports on: the task trained on, and the benchmark its
    runs are evaluated on where there is one."""
    benchmark = request.benchmark
    if benchmark is None:
        return base.data.task
    return f"{base.data.task}, evaluated on MultiPL-E {benchmark.dataset}-{benchmark.language}"


def _model_label(spec) -> str:
    return Path(spec.model.name_or_path).name or spec.model.name_or_path


def _add(stages: dict[str, Stage], stage: Stage) -> str:
    """Add a stage once (the same run needed by several jobs is one stage)."""
    stages.setdefault(stage.name, stage)
    return stage.name


def _training_stages(stages: dict[str, Stage], job, spec):
    """The stages that train `job`'s run: its adapter, or the fusion after the adapters it
    fuses that are not in the store yet. Returns (the training stage's name, its run)."""
    from advfusion_cli.workflows.plan import REUSE, plan_adapters, plan_fusion

    if job.is_base:
        return None, None
    if spec.is_fusion:
        plan = plan_fusion("compare", spec, False, train_missing=True)
    else:
        plan = plan_adapters("compare", spec, False)
    adapter_names = []
    for run_plan in plan.runs:
        if run_plan.role == "adapter":
            method = run_plan.spec.method.name
            label = f"{method} {run_plan.language} (seed {run_plan.spec.training.seed})"
            adapter_names.append(
                _add(
                    stages,
                    Stage(
                        name=run_plan.run.id,
                        kind="adapter",
                        label=f"{label}, {_model_label(spec)}",
                        output=str(run_plan.run.path),
                        done=run_plan.state == REUSE,
                        model=spec.model.name_or_path,
                        payload={"kind": "adapter", "spec": run_plan.spec},
                    ),
                )
            )
    last = plan.runs[-1]
    if last.role == "adapter":
        return adapter_names[-1], last.run
    name = _add(
        stages,
        Stage(
            name=last.run.id,
            kind="fusion",
            label=f"{job.method} -> {spec.data.target} (seed {spec.training.seed}), "
            f"{_model_label(spec)}",
            output=str(last.run.path),
            done=last.state == REUSE,
            deps=adapter_names,
            model=spec.model.name_or_path,
            payload={"kind": "fusion", "spec": spec},
        ),
    )
    return name, last.run


def _evaluation_stage(stages, job, spec, run, request, training: str | None) -> str:
    from advfusion_cli.evaluate.workflow import evaluation_folder, read_evaluation
    from advfusion_cli.inference.resolve import RunRef

    target = spec.data.target
    ref = RunRef(job.method, run, target)
    if request.benchmark is not None:
        from advfusion_cli.evaluate.multiple import benchmark_evaluation_state

        folder, done = benchmark_evaluation_state(ref, request.benchmark, spec)
    else:
        folder = evaluation_folder(ref, spec, request.evaluation)
        done = not request.evaluation.force and read_evaluation(folder) is not None
    owner = run.id if run is not None else folder.parent.name
    return _add(
        stages,
        Stage(
            name=f"eval-{owner}-{folder.name}",
            kind="evaluate",
            label=f"evaluate {job.method} -> {target}"
            + (
                f" on MultiPL-E {request.benchmark.dataset}-{request.benchmark.language}"
                if request.benchmark is not None
                else ""
            )
            + (f" (seed {job.seed})" if run is not None else "")
            + f", {_model_label(spec)}",
            output=str(folder),
            done=done and (training is None or stages[training].done),
            deps=[training] if training else [],
            model=spec.model.name_or_path,
            payload={
                "kind": "evaluate",
                "method": job.method,
                "run_id": run.id if run is not None else None,
                "target": target,
                "spec": spec,
                "evaluation": request.evaluation,
                "benchmark": request.benchmark,
            },
        ),
    )


def save(graph: Graph, launcher: str) -> None:
    """grid.json (read by `advfusion status`) and one payload file per stage to run."""
    folder = graph.folder
    for name in ("stages", "state", "logs"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    state.write_graph(
        folder,
        {
            "format_version": 1,
            "name": graph.name,
            "updated": state.now_iso(),
            "launcher": launcher,
            "cells": graph.cells,
            "stages": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "label": s.label,
                    "output": s.output,
                    "deps": s.deps,
                    "done_when_planned": s.done,
                    "resources": s.resources.model_dump(exclude_none=True),
                }
                for s in graph.stages.values()
            ],
        },
    )
    for stage in graph.stages.values():  # done since (in this grid or by another command)
        record = state.read_state(folder, stage.name)
        if stage.done and record is not None and record.get("state") != state.DONE:
            state.update_state(folder, stage.name, state.DONE, error=None, needs=None)
    for stage in graph.todo():
        path = state.stage_file(folder, stage.name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(pickle.dumps(stage.payload))
        tmp.replace(path)
