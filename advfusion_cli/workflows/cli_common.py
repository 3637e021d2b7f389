"""What the three training commands share: their common flags, spec resolution and output.

Flags are the highest layer of the job spec (defaults < preset < --spec file < --set <
flags); a flag that is not given leaves the lower layers alone. Progress goes to stderr,
the plan (`--dry-run`) and the final summary table to stdout.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from advfusion_cli.errors import unknown_name_error

if TYPE_CHECKING:
    from advfusion_cli.spec.schema import JobSpec

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Base model: hub id (Qwen/Qwen2.5-Coder-1.5B) or folder; default the shipped "
        "tiny model (advfusion/tiny-code).",
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="Data source: testbed (default), hub:<dataset id> or a folder."),
]
TaskOpt = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="commit-message, code-generation, code-translation or custom (data.custom in --spec).",
    ),
]
QuantOpt = Annotated[
    str | None, typer.Option("--quantization", help="Base weights: none, 8bit or 4bit (NF4).")
]
SpecOpt = Annotated[
    Path | None, typer.Option("--spec", help="A YAML job spec (see `advfusion validate`).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one spec key, e.g. --set training.lr=1e-4 (repeatable)."),
]
PresetOpt = Annotated[
    str | None, typer.Option("--preset", help="Named settings: testbed (default) or paper.")
]
WorkdirOpt = Annotated[
    Path | None,
    typer.Option("--workdir", help="Folder of adapters and runs (default ./advfusion-runs)."),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of init, data order, dropout.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Retrain even if a finished run with this spec exists.")
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the resolved spec and the plan, load nothing, exit."),
]
NoCacheOpt = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Tokenize the data again and keep nothing: skip the prepared-data cache "
        "(output.use_data_cache=false).",
    ),
]
TrainMissingOpt = Annotated[
    bool,
    typer.Option(
        "--train-missing/--no-train-missing",
        help="Train language adapters missing from the workdir first (default), or stop with "
        "the command that trains them.",
    ),
]
ReportToOpt = Annotated[
    str | None,
    typer.Option(
        "--report-to",
        help="Experiment trackers, comma-separated: tensorboard, wandb, mlflow (or none).",
    ),
]
# The two fusion commands (fuse, adv-fuse).
TargetOpt = Annotated[str | None, typer.Option("--target", help="Target language (default ruby).")]
FusedLangsOpt = Annotated[
    str | None,
    typer.Option("--langs", help="Comma-separated languages to fuse (default all)."),
]
FusedKindOpt = Annotated[
    str | None,
    typer.Option("--kind", help="Kind of the fused adapters: task-adapter or compacter."),
]

FUSION_ADAPTER_KINDS = ("task-adapter", "compacter")


def check_kind(kind: str | None, allowed: tuple[str, ...]) -> str | None:
    """The adapter kind flag, canonical, or a one-line error with did-you-mean."""
    if kind is None:
        return None
    value = kind.strip().lower().replace("_", "-")
    if value not in allowed:
        raise unknown_name_error("adapter kind", kind, allowed)
    return value


def common_flags(
    model: str | None,
    data: str | None,
    task: str | None,
    quantization: str | None,
    workdir: Path | None,
    seed: int | None,
) -> dict[str, object]:
    return {
        "model.name_or_path": model,
        "data.source": data,
        "data.task": task,
        "model.quantization": quantization,
        "output.workdir": workdir,
        "training.seed": seed,
    }


def cache_flags(no_cache: bool) -> dict[str, object]:
    """--no-cache as a flag layer; without it the spec's output.use_data_cache stands."""
    return {"output.use_data_cache": False if no_cache else None}


def resolve(
    spec_path: Path | None,
    preset: str | None,
    sets: list[str] | None,
    flags: dict,
    check_fusion_inputs: bool = True,
) -> JobSpec:
    """The job spec from all layers; the flags' None values leave lower layers alone."""
    from advfusion_cli.spec.loading import resolve_spec

    if spec_path is not None:
        from advfusion_cli.spec.yaml_io import check_spec_file

        check_spec_file(spec_path)  # missing, or a directory: named either way
    return resolve_spec(spec_path, preset, sets or [], flags, check_fusion_inputs)


def method_named(spec_path: Path | None, sets: list[str] | None) -> bool:
    """Whether the spec file or a --set chooses the method (else the command's default)."""
    from advfusion_cli.spec.yaml_io import read_yaml_file

    if any(item.split("=", 1)[0].strip() in ("method", "method.name") for item in sets or []):
        return True
    if spec_path is None or not spec_path.is_file():
        return False
    values, _ = read_yaml_file(spec_path)
    return "method" in values


def resolve_adapter_spec(
    spec_path: Path | None,
    preset: str | None,
    sets: list[str] | None,
    flags: dict,
    kind: str | None,
    langs: str | None,
) -> JobSpec:
    """train-adapters' spec: --kind, else the spec's own adapter method, else task-adapter.

    A spec written for a fusion trains the adapters that fusion needs (its adapter kind and
    settings), so `train-adapters --spec advfusion.yaml` prepares `adv-fuse --spec advfusion.yaml`.
    """
    from advfusion_cli.workflows.stages import adapter_method_of

    flags = {**flags, "data.languages": langs}
    if kind is not None or not method_named(spec_path, sets):
        return resolve(spec_path, preset, sets, {**flags, "method.name": kind or "task-adapter"})
    if langs:  # the fusion's target is irrelevant to its adapters; keep the spec valid
        flags["data.target"] = langs.split(",")[0].strip()
    # Only the fusion's adapter settings matter here: one language is fine.
    resolved = resolve(spec_path, preset, sets, flags, check_fusion_inputs=False)
    return resolved.model_copy(update={"method": adapter_method_of(resolved)})


def _format_seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def summary_table(result) -> Table:
    """One row per run: what it is, trained/resumed/reused, size, time, loss, where saved."""
    from advfusion_cli.workflows import stages
    from advfusion_cli.workflows.progress import format_memory

    table = Table(title=f"advfusion {result.plan.command}", title_justify="left")
    for column in (
        "run",
        "result",
        "trainable params",
        "time",
        "best eval loss",
        "peak memory",
        "saved to",
    ):
        table.add_column(column, overflow="fold")
    for stored in result.plan.reused_adapters:
        table.add_row(
            f"{stored.language} adapter", "reused (store)", "-", "-", "-", "-", str(stored.folder)
        )
    for outcome in result.outcomes:
        run_plan = outcome.plan
        name = (
            f"{run_plan.language} {run_plan.spec.method.name}"
            if run_plan.role == "adapter"
            else f"{stages.method_label(run_plan.spec)} -> {run_plan.spec.data.target}"
        )
        state = (
            "reused (finished earlier)"
            if outcome.reused
            else ("resumed + finished" if outcome.resumed else "trained")
        )
        params = (
            f"{outcome.trainable_params:,} / {outcome.total_params:,}"
            if outcome.total_params
            else "-"
        )
        loss = "-" if outcome.best_eval_loss is None else f"{outcome.best_eval_loss:.4f}"
        saved = str(run_plan.run.path)
        if outcome.store is not None:
            saved += f"\nadapter: {outcome.store}"
        table.add_row(
            f"{name}\n{run_plan.run.id}",
            state,
            params,
            _format_seconds(outcome.elapsed_s) if outcome.elapsed_s else "-",
            loss,
            format_memory(outcome.peak_memory_mb) if outcome.peak_memory_mb else "-",
            saved,
        )
    return table


@contextmanager
def interrupts_explained(also: str = ""):
    """Ctrl-C: say where the interrupted run's checkpoint is and exit 130 (a rerun resumes).
    A stop signal (or the stop file): the same, and exit EXIT_REQUEUE (75) for the scheduler.
    Another process's failure: one line naming it (that process printed the error), exit 1.
    `also` adds what else a rerun does, e.g. "; finished runs and evaluations are reused"."""
    from advfusion_cli.errors import EXIT_INTERRUPTED, EXIT_REQUEUE
    from advfusion_cli.workflows.process_group import PeerFailed
    from advfusion_cli.workflows.progress import stderr_console
    from advfusion_cli.workflows.trainer import TrainingInterrupted

    try:
        yield
    except TrainingInterrupted as stop:
        if stop.requeue:
            why = f"stopped by {stop.signal}" if stop.signal else "stopped by another process"
            stderr_console().print(
                f"Interrupted ({why}): run {stop.run.id} stopped after step {stop.step} of "
                f"phase '{stop.phase}'; a checkpoint is saved in {stop.run.checkpoints}. "
                f"Exiting with code {EXIT_REQUEUE} (requeue): the same command resumes{also}."
            )
            raise typer.Exit(EXIT_REQUEUE) from None
        stderr_console().print(
            f"Interrupted: run {stop.run.id} stopped after step {stop.step} of phase "
            f"'{stop.phase}'; a checkpoint is saved in {stop.run.checkpoints}. "
            f"Run the same command again to resume{also}."
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        stderr_console().print("Interrupted. Run the same command again to resume.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except PeerFailed as failed:  # the error itself is printed once, by its own process
        stderr_console().print(
            f"Stopped: process {failed.failure.rank} of this launch failed (its error is "
            "printed above; the run's status.json records it)."
        )
        raise typer.Exit(1) from None


def run_and_report(workflow, spec, dry_run: bool, **options) -> None:
    """Run a workflow function; print its plan (dry run) or its summary; Ctrl-C -> exit 130,
    a stop signal -> exit 75 (interrupts_explained)."""
    from advfusion_cli.workflows.plan import render

    out = Console(highlight=False)
    if not out.is_terminal:  # logs and pipes: wide enough that paths stay on one line
        out = Console(highlight=False, width=160)
    if int(os.environ.get("RANK", "0")) != 0:  # accelerate launch: only the main process prints
        out = Console(quiet=True)
    with interrupts_explained():
        result = workflow(spec, dry_run=dry_run, **options)
    if dry_run:
        render(result.plan, out)
        return
    out.print(summary_table(result))
