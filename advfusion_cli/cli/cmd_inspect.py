"""`advfusion inspect`: a run's summary, its evaluations and its fusion heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.workflows import cli_common as c


@app.command("inspect")
def inspect_command(
    run: Annotated[
        str, typer.Argument(help="A run folder, a run id or method/target (e.g. advfusion/ruby).")
    ],
    split: Annotated[
        str, typer.Option("--split", help="Split for the fusion heatmap if none is recorded.")
    ] = "test",
    limit: Annotated[
        int, typer.Option("--limit", help="Items for the heatmap if none is recorded.")
    ] = 100,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Heatmap image file (default <run>/inspect/fusion-attention.png, replaced on "
            "each inspect). The extension picks the format (png, pdf, svg, ...; none: .png); "
            "a folder is refused, and so is an existing file unless --overwrite.",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file.")
    ] = False,
    workdir: c.WorkdirOpt = None,
) -> None:
    """Show a run's summary (what it is, cost, evaluations) and draw its fusion heatmap (layer x language)."""
    from advfusion_cli.compare.cli import stdout_console
    from advfusion_cli.compare.inspect_run import attention_table, inspect_run, summary_table
    from advfusion_cli.errors import UserError
    from advfusion_cli.evaluate.paths import check_image_file
    from advfusion_cli.inference.resolve import resolve_run
    from advfusion_cli.workflows.runs import DEFAULT_WORKDIR

    if out is not None:
        out = check_image_file(out, "--out", overwrite=overwrite)
    ref = resolve_run(run, workdir or DEFAULT_WORKDIR)
    if ref.is_base:
        raise UserError("'base' is not a run: inspect takes a run folder, run id or method/target.")
    found = inspect_run(ref.run, split=split, limit=limit, out=out)
    console = stdout_console()
    console.print(summary_table(found))
    if found.attention is not None:
        console.print(attention_table(found.attention, found.spec.data.target))
