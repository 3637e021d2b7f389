"""`advfusion grid` (every model × task × target comparison of a grid spec), `advfusion status`
(its jobs' states) and the hidden `advfusion grid-stage` that a grid job runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advfusion_cli.cli.app import app

LauncherOpt = Annotated[
    str | None,
    typer.Option(
        "--launcher",
        help="local: the stages as subprocesses here; slurm: submitted as SLURM jobs "
        "(needs submitit: pip install 'advfusion\\[cluster]'). Default: in this process.",
    ),
]
MaxParallelOpt = Annotated[
    int,
    typer.Option("--max-parallel", help="--launcher local: stages at once (one GPU each)."),
]


@app.command("grid")
def grid_command(
    spec: Annotated[
        Path,
        typer.Option("--spec", help="Grid spec (YAML): models, tasks, targets, methods, seeds."),
    ],
    launcher: LauncherOpt = None,
    max_parallel: MaxParallelOpt = 1,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the jobs, their dependencies and resources."),
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show the grid's jobs and their states.")
    ] = False,
) -> None:
    """Run every comparison of a grid (models × tasks × targets, each with its methods × seeds) in process, as local subprocesses or as SLURM jobs; writes each comparison's results and a grid summary (methods × languages)."""
    from advfusion_cli.grid.cells import expand, grid_options
    from advfusion_cli.grid.cli import print_status, run_graph, run_in_process
    from advfusion_cli.grid.launch import check_launcher
    from advfusion_cli.grid.spec import load_grid

    launcher = check_launcher(launcher)
    grid = load_grid(spec)
    models, tasks, targets, options = grid_options(grid, str(spec))
    cells = expand(models, tasks, targets, options)
    if status:
        from advfusion_cli.grid.graph import grid_folder

        folder = grid_folder(cells, grid.name)
        print_status(folder.parent.parent, folder.name)
        return
    if launcher is None and not dry_run:
        run_in_process(cells, grid.name)
        return
    run_graph(
        cells,
        grid.resources,
        launcher=launcher,
        dry_run=dry_run,
        max_parallel=max_parallel,
        name=grid.name,
    )


@app.command("status")
def status_command(
    workdir: Annotated[
        Path,
        typer.Argument(help="The workdir of the grid (or a grid folder, <workdir>/grids/NAME)."),
    ],
    grid: Annotated[
        str | None,
        typer.Option("--grid", help="Which grid of the workdir (default the latest launched)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the stages' states as JSON instead.")
    ] = False,
) -> None:
    """A table of a grid's jobs: pending, running, done, failed (with the last error line) or not run (a stage they need failed), and where their logs are."""
    from advfusion_cli.grid.cli import print_status

    print_status(workdir, grid, as_json)


@app.command("grid-stage", hidden=True)
def grid_stage_command(
    stage_file: Annotated[Path, typer.Argument(help="A grid stage file (stages/<name>.pkl).")],
) -> None:
    """Run one stage of a grid (what a grid job runs; not for direct use)."""
    from advfusion_cli.compare.cli import interrupts_explained
    from advfusion_cli.grid.worker import execute, load_payload

    payload = load_payload(stage_file)
    with interrupts_explained():
        execute(payload)
