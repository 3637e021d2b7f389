"""`advfusion validate SPEC.yaml`: check a job spec without loading weights or data."""

from __future__ import annotations

from pathlib import Path

import typer

from advfusion_cli.cli.app import app


@app.command("validate")
def validate(
    spec: Path | None = typer.Argument(
        None, help="Job spec YAML; omitted = defaults, preset and --set only.", show_default=False
    ),
    sets: list[str] = typer.Option(
        [], "--set", help="Override one key, e.g. --set training.lr=1e-4 (repeatable)."
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Named settings under the spec: testbed (default) or paper."
    ),
    print_spec: bool = typer.Option(
        False, "--print-spec", help="Also print the resolved spec as YAML."
    ),
) -> None:
    """Check a spec's keys, types, ranges, names and paths; print "ok" and a summary.

    Precedence: defaults < preset < spec file < --set < command flags.

    Nothing is loaded: hub ids are checked for their form only, local paths must exist."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from advfusion_cli.spec import check_paths, dump_spec, resolve_spec, summary_rows

    job = resolve_spec(spec, preset=preset, sets=sets)
    check_paths(job)
    checked = _check_custom_records(job)

    console = Console(highlight=False)
    console.print("[green]ok[/green]" + (f" {escape(str(spec))}" if spec else ""), soft_wrap=True)
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    for label, value in summary_rows(job):
        table.add_row(label, value)
    console.print(table)
    for line in checked:
        console.print(escape(line), soft_wrap=True)
    if print_spec:
        console.out(dump_spec(job), end="")


def _check_custom_records(job) -> list[str]:
    """A custom task: the template's fields against each record file's first record."""
    if job.data.custom is None:
        return []
    from advfusion_cli.data.tasks.custom import CustomTaskOptions, check_first_records

    options = CustomTaskOptions(**job.data.custom.loader_options(job.data.split_seed))
    return check_first_records(Path(job.data.source).expanduser(), options)
