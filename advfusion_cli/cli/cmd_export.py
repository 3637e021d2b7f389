"""`advfusion export`: a finished run in the `adapters` library's layout or peft's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.workflows import cli_common as c


@app.command("export")
def export_command(
    out: Annotated[
        Path,
        typer.Argument(help="Folder to write (created; must be new or empty).", show_default=False),
    ],
    run: Annotated[
        str,
        typer.Option(
            "--run",
            help="A run folder, a run id, or method/target in the workdir (e.g. advfusion/ruby).",
            show_default=False,
        ),
    ],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="adapters (task adapter, Compacter, AdapterFusion, AdvFusion) or peft (LoRA).",
            show_default=False,
        ),
    ],
    weights: Annotated[
        str,
        typer.Option("--weights", help="safetensors (default) or bin (torch.save state dicts)."),
    ] = "safetensors",
    workdir: c.WorkdirOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the output folder if it is not empty.")
    ] = False,
) -> None:
    """Export a finished run for the `adapters` library (adapter or adapter setup with its fusion) or peft (LoRA), with a README.md model card."""
    from rich.console import Console

    from advfusion_cli.interop.exporter import export_run

    result = export_run(run, format_, out, workdir=workdir, weights=weights, force=force)
    console = Console(highlight=False, width=160)
    console.print(f"Exported {result.what} to {result.folder} ({format_} layout):", markup=False)
    for name in result.files:
        console.print(f"  {name}", markup=False)
