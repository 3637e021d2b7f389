"""The glue of `advfusion grid`, `compare --launcher` and `advfusion status`: plan the graph,
print it (--dry-run), run it in process / locally / on SLURM, report the jobs' states."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from advfusion_cli.errors import UserError
from advfusion_cli.grid import state
from advfusion_cli.grid.cells import Cell
from advfusion_cli.grid.graph import Graph
from advfusion_cli.grid.spec import ResourcePlan, Resources


def console() -> Console:
    from advfusion_cli.compare.cli import stdout_console

    return stdout_console()


def describe_resources(resources: Resources) -> str:
    parts = []
    if resources.gpus is not None:
        parts.append(f"gpus {resources.gpus}")
    if resources.cpus is not None:
        parts.append(f"cpus {resources.cpus}")
    for key in ("mem", "time", "partition", "account", "signal"):
        value = getattr(resources, key)
        if value is not None:
            parts.append(f"{key} {value}")
    parts += list(resources.sbatch or ())
    if resources.setup:
        parts.append(f"setup: {'; '.join(resources.setup)}")
    return ", ".join(parts)


def dry_run_table(graph: Graph, launcher: str | None) -> Table:
    """Every stage: what it is, what it waits for, what it asks for, and whether it runs."""
    from advfusion_cli.grid.launch import _submission_groups

    arrays = {}
    if launcher == "slurm":
        for number, group in enumerate(_submission_groups(graph.todo())):
            if len(group) > 1:
                for index, stage in enumerate(group):
                    arrays[stage.name] = f"array {number}[{index}]"
    title = f"grid {graph.name}: {len(graph.todo())} of {len(graph.stages)} stages to run"
    table = Table(title=title + " (dry run)", title_justify="left")
    for column in ("stage", "kind", "what", "after", "resources", "state"):
        table.add_column(column, overflow="fold")
    for stage in graph.stages.values():
        after = [dep for dep in stage.deps if not graph.stages[dep].done]
        where = arrays.get(stage.name)
        run = "done (not run again)" if stage.done else "to run" + (f", {where}" if where else "")
        resources = describe_resources(stage.resources) if not stage.done else ""
        table.add_row(stage.name, stage.kind, stage.label, "\n".join(after), resources, run)
    return table


def run_graph(
    cells: list[Cell],
    resources: ResourcePlan,
    *,
    launcher: str | None,
    dry_run: bool,
    max_parallel: int,
    name: str | None = None,
) -> None:
    """Plan the grid's job graph and run it with `launcher` (local or slurm)."""
    import typer

    from advfusion_cli.grid import graph as graphs
    from advfusion_cli.grid.launch import require_submitit, run_local, submit_slurm

    out = console()
    if launcher is not None:
        require_submitit(launcher)  # before any planning: one line naming the extra
    if max_parallel < 1:
        raise UserError(f"--max-parallel must be >= 1, got {max_parallel}.")
    graph = graphs.build(cells, resources, name)
    if dry_run:
        out.print(dry_run_table(graph, launcher))
        out.print(f"Grid folder: {graph.folder}. Nothing was submitted (--dry-run).")
        return
    todo = graph.todo()
    graphs.save(graph, launcher)
    if not todo:
        out.print(f"Every stage of grid {graph.name} is done; nothing to run.", markup=False)
        _print_results(graph, out)
        return

    def say(line: str) -> None:
        out.print(line, markup=False, highlight=False, soft_wrap=True)

    if launcher == "slurm":
        outcome = submit_slurm(graph, say)
        say(
            f"Submitted {len(outcome.submitted)} job(s) for grid {graph.name} "
            f"({len(graph.stages) - len(todo)} stage(s) already done). "
            f"Follow them with: advfusion status {graph.folder.parent.parent}"
        )
        return
    from advfusion_cli.grid.launch import environment_note

    say(
        f"grid {graph.name}: {len(todo)} stage(s) to run, up to {max_parallel} at once "
        f"({environment_note()}); logs in {graph.folder / 'logs'}"
    )
    try:
        outcome = run_local(graph, max_parallel, say)
    except KeyboardInterrupt:
        say("Interrupted; running stages were stopped. Run the same command again to resume.")
        raise typer.Exit(130) from None
    if not outcome.ok:
        say(
            f"{len(outcome.failed)} stage(s) failed, {len(outcome.not_run)} not run "
            f"(they need a failed one); {len(outcome.done)} done. Fix the cause and run the "
            "same command again: only the stages not done run. "
            f"Details: advfusion status {graph.folder.parent.parent}"
        )
        raise typer.Exit(1)
    _print_results(graph, out)


def _print_results(graph: Graph, out: Console) -> None:
    summary = graph.folder / "summary.md"
    if summary.is_file():
        out.print(summary.read_text(), markup=False, highlight=False)
    for cell in graph.cells:
        out.print(f"Results in {cell['results']}", markup=False, highlight=False)
    out.print(f"Grid summary: {summary}, {graph.folder / 'summary.csv'}", markup=False)


def run_in_process(cells: list[Cell], name: str | None = None) -> None:
    """Every cell's comparison in this process, one after another, then the grid summary."""
    from advfusion_cli.compare.cli import interrupts_explained, print_result
    from advfusion_cli.compare.workflow import prepare
    from advfusion_cli.grid.graph import task_label
    from advfusion_cli.grid.summary import write_summary
    from advfusion_cli.workflows.runs import Workdir, identity_hash

    out = console()
    summaries = []
    for cell in cells:
        base, _, _, _, folder = prepare(cell.request)  # every cell checked before any work
        summaries.append(
            {
                "model": base.model.name_or_path,
                "task": task_label(base, cell.request),
                "target": base.data.target,
                "results": str(folder),
                "workdir": str(base.output.workdir),
            }
        )
    from advfusion_cli.compare.workflow import compare

    with interrupts_explained():
        for cell in cells:
            print_result(compare(cell.request), out)
    workdir = Workdir(Path(summaries[0]["workdir"])).root
    grid_name = name or "grid-" + identity_hash(sorted(c["results"] for c in summaries))
    paths = write_summary(workdir / "grids" / grid_name, summaries)
    out.print(paths[0].read_text(), markup=False, highlight=False)
    out.print(f"Grid summary: {', '.join(str(p) for p in paths)}", markup=False)


# ---- status ----------------------------------------------------------------------------------


def find_grids(workdir: Path) -> list[Path]:
    """Grid folders under a workdir (or the grid folder itself), oldest first."""
    if (workdir / state.GRAPH_FILE).is_file():
        return [workdir]
    found = [p.parent for p in (workdir / "grids").glob(f"*/{state.GRAPH_FILE}")]
    return sorted(found, key=lambda p: (p / state.GRAPH_FILE).stat().st_mtime)


def stage_states(folder: Path) -> list[dict]:
    """Each stage of a grid with its state now: pending, running, done, failed (with the last
    error line), not-run (a stage it needs failed), requeued or interrupted."""
    from advfusion_cli.grid.launch import queued_jobs

    graph = state.read_graph(folder)
    rows = []
    by_name: dict[str, dict] = {}
    slurm_ids = []
    for stage in graph["stages"]:
        record = state.read_state(folder, stage["name"])
        if record is None:
            current = state.DONE if stage["done_when_planned"] else state.PENDING
            record = {"state": current}
        row = {**stage, "record": record, "state": record["state"]}
        if record.get("launcher") == "slurm" and record["state"] in (
            state.SUBMITTED,
            state.RUNNING,
            state.REQUEUED,
        ):
            slurm_ids.append(str(record.get("job_id")))
        rows.append(row)
        by_name[stage["name"]] = row
    # Slurm's own view: a job that left the queue without writing "done" or "failed" was
    # killed from outside (out of memory, cancelled, node failure).
    queued = queued_jobs(slurm_ids) if slurm_ids and shutil.which("squeue") else None
    for row in rows:
        record = row["record"]
        if row["state"] in (state.PENDING, state.SUBMITTED, state.REQUEUED):
            blocked = [
                d for d in row["deps"] if by_name[d]["state"] in (state.FAILED, state.NOT_RUN)
            ]
            if blocked:
                row["state"] = state.NOT_RUN
                row["record"] = {**record, "needs": blocked[0]}
                continue
        if (
            queued is not None
            and record.get("launcher") == "slurm"
            and row["state"] in (state.SUBMITTED, state.RUNNING)
            and str(record.get("job_id")) not in queued
        ):
            last = state.last_error_line(Path(record["log"])) if record.get("log") else ""
            row["state"] = state.FAILED
            row["record"] = {
                **record,
                "error": "the job left the queue without finishing" + (f": {last}" if last else ""),
            }
    return rows


def status_table(folder: Path) -> tuple[Table, dict[str, int]]:
    rows = stage_states(folder)
    table = Table(title=f"grid {folder.name} ({folder})", title_justify="left")
    for column in ("stage", "kind", "state", "job", "detail", "log"):
        table.add_column(column, overflow="fold")
    counts: dict[str, int] = {}
    for row in rows:
        record = row["record"]
        shown = {state.SUBMITTED: state.PENDING}.get(row["state"], row["state"])
        counts[shown] = counts.get(shown, 0) + 1
        detail = ""
        if shown == state.FAILED:
            detail = record.get("error") or ""
        elif shown == state.NOT_RUN:
            detail = f"needs {record.get('needs')}, which did not finish"
        elif shown == state.DONE:
            detail = row["output"]
        log = record.get("log") or ""
        if not log and shown not in (state.DONE, state.PENDING):
            log = str(state.log_file(folder, row["name"]))
        table.add_row(row["name"], row["kind"], shown, str(record.get("job_id") or ""), detail, log)
    return table, counts


def status_records(folder: Path) -> list[dict]:
    """`status --json`: one record per stage."""
    records = []
    for row in stage_states(folder):
        record = row["record"]
        shown = {state.SUBMITTED: state.PENDING}.get(row["state"], row["state"])
        records.append(
            {
                "stage": row["name"],
                "kind": row["kind"],
                "label": row["label"],
                "state": shown,
                "job_id": record.get("job_id"),
                "error": record.get("error") if shown == state.FAILED else None,
                "needs": record.get("needs") if shown == state.NOT_RUN else None,
                "deps": row["deps"],
                "log": record.get("log"),
                "output": row["output"],
            }
        )
    return records


def print_status(workdir: Path, grid_name: str | None = None, as_json: bool = False) -> None:
    out = console()
    if not workdir.exists():
        raise UserError(f"Workdir '{workdir}' does not exist.")
    grids = find_grids(workdir)
    if grid_name is not None:
        grids = [g for g in grids if g.name == grid_name]
        if not grids:
            from advfusion_cli.errors import unknown_name_error

            raise unknown_name_error("grid", grid_name, [g.name for g in find_grids(workdir)])
    if not grids:
        raise UserError(
            f"No grid in '{workdir}' (looked for {workdir}/grids/*/{state.GRAPH_FILE}); grids "
            "are made by `advfusion grid` and `advfusion compare --launcher local|slurm`."
        )
    folder = grids[-1]
    if as_json:
        import json

        grid = {"grid": folder.name, "folder": str(folder), "stages": status_records(folder)}
        print(json.dumps(grid, indent=1))
        return
    table, counts = status_table(folder)
    out.print(table)
    order = (state.DONE, state.RUNNING, state.PENDING, state.FAILED, state.NOT_RUN)
    listed = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    listed += [f"{n} {s}" for s, n in counts.items() if s not in order]
    out.print(", ".join(listed), markup=False)
    others = [g.name for g in grids[:-1]]
    if others:
        out.print(f"Other grids here: {', '.join(others)} (--grid NAME)", markup=False)


# ---- compare --launcher ----------------------------------------------------------------------


def load_resources(path: Path) -> ResourcePlan:
    from advfusion_cli.grid.spec import parse_resources
    from advfusion_cli.spec.yaml_io import read_yaml_file

    if not path.is_file():
        raise UserError(f"--resources: file not found: {path}")
    values, lines = read_yaml_file(path)
    return parse_resources(values, str(path), lines)


def compare_grid(
    options: dict,
    *,
    model: str | None,
    task: str | None,
    target: str | None,
    launcher: str | None,
    max_parallel: int,
    resources_path: Path | None,
    status: bool,
    dry_run: bool,
    report_to: str | None,
) -> None:
    """compare with --launcher, --status or comma lists in --model/--task/--target: its
    comparison(s) as a grid (one cell without lists)."""
    from advfusion_cli.grid.cells import expand, split_list
    from advfusion_cli.grid.graph import grid_folder
    from advfusion_cli.grid.launch import check_launcher, require_submitit
    from advfusion_cli.workflows import tracking

    launcher = check_launcher(launcher)
    if launcher is not None and not status:
        require_submitit(launcher)
    if report_to is not None:
        trackers = tracking.parse_report_to(report_to)
        tracking.check_installed(trackers, "--report-to")
        options = {**options, "flags": {**options["flags"], "training.report_to": trackers}}
    resources = load_resources(resources_path) if resources_path else ResourcePlan()
    cells = expand(split_list(model), split_list(task), split_list(target), options)
    if len(cells) > 1 and options.get("out") is not None:
        raise UserError(
            "--out names one results folder, but the lists in --model/--task/--target make "
            f"{len(cells)} comparisons (each gets its own folder); drop --out."
        )
    if status:
        folder = grid_folder(cells)
        if not (folder / state.GRAPH_FILE).is_file():
            raise UserError(
                f"This comparison has no jobs yet (no {folder / state.GRAPH_FILE}); start them "
                "with --launcher local or --launcher slurm."
            )
        print_status(folder)
        return
    if launcher is None and not dry_run:
        run_in_process(cells)
        return
    run_graph(cells, resources, launcher=launcher, dry_run=dry_run, max_parallel=max_parallel)
