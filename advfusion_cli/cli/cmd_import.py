"""`advfusion import`: adapters saved by the `adapters` library or peft, into the workdir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.workflows import cli_common as c


def _names(value: str | None) -> dict[str, str]:
    """--names python_adapter=python,java_adapter=java -> {adapter name: language}."""
    from advfusion_cli.errors import UserError

    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        name, sep, language = item.partition("=")
        if not sep or not name.strip() or not language.strip():
            raise UserError(f"--names: '{item}' is not NAME=LANGUAGE.")
        mapping[name.strip()] = language.strip()
    return mapping


@app.command("import")
def import_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="An `adapters` adapter folder (adapter_config.json + adapter.safetensors or "
            "pytorch_adapter.bin), an adapter setup folder (adapter_setup.json, its adapters "
            "and fusion), or a peft LoRA folder.",
            show_default=False,
        ),
    ],
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="The base model the adapters were trained on (hub id or folder).",
            show_default=False,
        ),
    ],
    as_: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Language of a single adapter (default its saved name), or a setup's fusion "
            "target.",
        ),
    ] = None,
    names: Annotated[
        str | None,
        typer.Option("--names", help="Setup adapters whose names are not languages: NAME=LANG,..."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="What a setup's fusion is recorded as: adapterfusion (default) or advfusion.",
        ),
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option(
            "--format", help="Refuse anything but this layout: adapters or peft (default: detect)."
        ),
    ] = None,
    task: c.TaskOpt = None,
    quantization: c.QuantOpt = None,
    workdir: c.WorkdirOpt = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an adapter already in the store slot."),
    ] = False,
) -> None:
    """Import adapters from the AdapterHub `adapters` library or peft as finished runs, usable by fuse, adv-fuse, evaluate, generate and export."""
    from rich.console import Console

    from advfusion_cli.errors import unknown_name_error
    from advfusion_cli.interop.detect import FORMATS
    from advfusion_cli.interop.importer import FUSION_METHODS, ImportOptions, import_path

    if format_ is not None and format_ not in FORMATS:
        raise unknown_name_error("format", format_, FORMATS)
    if method is not None and method not in FUSION_METHODS:
        raise unknown_name_error("fusion method", method, FUSION_METHODS)
    options = ImportOptions(
        base=base,
        language=as_,
        task=task,
        workdir=workdir,
        quantization=quantization,
        method=method,
        names=_names(names),
        expected_format=format_,
        force=force,
    )
    result = import_path(path, options)
    out = Console(highlight=False, width=160)
    out.print(f"Imported {result.source} onto {result.base.describe()}:", markup=False)
    for imported in result.runs:
        state = "already imported, reused" if imported.reused else "imported"
        out.print(f"  {imported.what}: run {imported.run.id} ({state})", markup=False)
        if imported.store is not None:
            out.print(f"    adapter store: {imported.store}", markup=False)
        for note in imported.notes:
            out.print(f"    note: {note}", markup=False)
    last = result.runs[-1]
    out.print(f"Use it: advfusion evaluate --run {last.run.path}", markup=False)
