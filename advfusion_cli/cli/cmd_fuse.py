"""`advfusion fuse`: AdapterFusion over the language adapters, trained on the target language."""

from __future__ import annotations

from advfusion_cli.cli.app import app
from advfusion_cli.workflows import cli_common as c


@app.command("fuse")
def fuse_command(
    target: c.TargetOpt = None,
    langs: c.FusedLangsOpt = None,
    kind: c.FusedKindOpt = None,
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
    """Train AdapterFusion for the target language over frozen language adapters (missing adapters are trained first unless --no-train-missing)."""
    from advfusion_cli.workflows.fuse import fuse

    flags = c.common_flags(model, data, task, quantization, workdir, seed) | {
        "training.report_to": report_to,
        "method.name": "adapterfusion",
        "method.adapter_kind": c.check_kind(kind, c.FUSION_ADAPTER_KINDS),
        "data.target": target,
        "data.languages": langs,
    }
    resolved = c.resolve(spec, preset, set_, flags | c.cache_flags(no_cache))
    c.run_and_report(fuse, resolved, dry_run, force=force, train_missing=train_missing)
