"""`advfusion adv-fuse`: AdvFusion - fusion trained with the target adapter masked, then restored."""

from __future__ import annotations

from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.workflows import cli_common as c


@app.command("adv-fuse")
def adv_fuse_command(
    target: c.TargetOpt = None,
    langs: c.FusedLangsOpt = None,
    kind: c.FusedKindOpt = None,
    mask_mode: Annotated[
        str | None,
        typer.Option(
            "--mask-mode",
            help="Phase 1: zero (target adapter zeroed, a null slot; authors) or remove "
            "(its softmax slot removed).",
        ),
    ] = None,
    phase1_data: Annotated[
        str | None,
        typer.Option(
            "--phase1-data",
            help="Phase-1 data: target (authors' code) or all languages (original paper).",
        ),
    ] = None,
    reset_optimizer: Annotated[
        bool | None,
        typer.Option(
            "--reset-optimizer/--keep-optimizer",
            help="Fresh optimizer state for phase 2 (default: keep it, as the authors do).",
        ),
    ] = None,
    train_missing: c.TrainMissingOpt = True,
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
    """Train AdvFusion for the target language: phase 1 with its adapter masked, phase 2 restored (missing adapters are trained first unless --no-train-missing)."""
    from advfusion_cli.workflows.adv_fuse import adv_fuse

    flags = c.common_flags(model, data, task, quantization, workdir, seed) | {
        "training.report_to": report_to,
        "method.name": "advfusion",
        "method.adapter_kind": c.check_kind(kind, c.FUSION_ADAPTER_KINDS),
        "method.mask_mode": mask_mode,
        "method.phase1_data": phase1_data,
        "method.reset_optimizer_between_phases": reset_optimizer,
        "data.target": target,
        "data.languages": langs,
    }
    resolved = c.resolve(spec, preset, set_, flags | c.cache_flags(no_cache))
    c.run_and_report(adv_fuse, resolved, dry_run, force=force, train_missing=train_missing)
