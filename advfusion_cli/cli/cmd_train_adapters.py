"""`advfusion train-adapters`: one adapter per language (task adapter, Compacter or LoRA)."""

from __future__ import annotations

from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.workflows import cli_common as c

ADAPTER_KINDS = ("task-adapter", "compacter", "lora")


@app.command("train-adapters")
def train_adapters_command(
    langs: Annotated[
        str | None,
        typer.Option("--langs", help="Comma-separated languages, e.g. java,python (default all)."),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="task-adapter (default), compacter or lora."),
    ] = None,
    model: c.ModelOpt = None,
    data: c.DataOpt = None,
    task: c.TaskOpt = None,
    quantization: c.QuantOpt = None,
    spec: c.SpecOpt = None,
    set_: c.SetOpt = None,
    preset: c.PresetOpt = None,
    workdir: c.WorkdirOpt = None,
    seed: c.SeedOpt = None,
    report_to: c.ReportToOpt = None,
    force: c.ForceOpt = False,
    dry_run: c.DryRunOpt = False,
    no_cache: c.NoCacheOpt = False,
) -> None:
    """Train one adapter per language on the frozen base; with one language and --kind this is the single-language baseline (e.g. --langs ruby --kind lora)."""
    from advfusion_cli.workflows.train_adapters import train_adapters

    resolved = c.resolve_adapter_spec(
        spec,
        preset,
        set_,
        c.common_flags(model, data, task, quantization, workdir, seed)
        | c.cache_flags(no_cache)
        | {"training.report_to": report_to},
        kind=c.check_kind(kind, ADAPTER_KINDS),
        langs=langs,
    )
    c.run_and_report(train_adapters, resolved, dry_run, force=force)
