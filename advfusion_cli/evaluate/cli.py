"""The `evaluate` command's glue: flags -> run reference and request -> evaluate -> table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from advfusion_cli.errors import UserError

BASE_ONLY_FLAGS = {
    "model.name_or_path": "--model",
    "data.source": "--data",
    "model.quantization": "--quantization",
    "data.target": "--target",
}


def base_spec(spec_path: Path | None, preset: str | None, sets: list[str] | None, flags: dict):
    """The base model's spec from the usual layers; the method is irrelevant (no adapter)."""
    from advfusion_cli.workflows import cli_common

    return cli_common.resolve(spec_path, preset, sets, {**flags, "method.name": "task-adapter"})


def run_and_spec(
    run: str,
    base_flags: dict,
    spec_path: Path | None,
    preset: str | None,
    sets: list[str] | None,
    *,
    trained_with: str = "the model and data it was trained on",
    free_flags: tuple[str, ...] = (),
):
    """(the run `--run` names, the base model's spec for `--run base`, else None). A trained
    run keeps what it was trained with: base-only flags given with it (other than
    `free_flags`) are one line naming them."""
    from advfusion_cli.inference.resolve import resolve_run
    from advfusion_cli.workflows.runs import DEFAULT_WORKDIR

    workdir = base_flags.get("output.workdir") or DEFAULT_WORKDIR
    ref = resolve_run(run, workdir, task=base_flags.get("data.task"))
    if ref.is_base:
        return ref, base_spec(spec_path, preset, sets, base_flags)
    given = [
        flag
        for key, flag in BASE_ONLY_FLAGS.items()
        if key not in free_flags and base_flags.get(key) is not None
    ]
    if spec_path is not None or sets or preset:
        given.append("--spec/--set/--preset")
    if given:
        raise UserError(
            f"{', '.join(given)} only apply to --run base; run '{ref.run.id}' is evaluated "
            f"with {trained_with}."
        )
    return ref, None


def run_evaluate(
    *,
    run: str,
    split: str,
    limit: int | None,
    sample_seed: int,
    decoding: dict,
    execute: bool,
    workers: int | None,
    out: Path | None,
    autocast: bool = True,
    force: bool,
    base_flags: dict,
    spec_path: Path | None,
    sets: list[str] | None,
    preset: str | None,
    report_to: str | None = None,
) -> None:
    from advfusion_cli.evaluate.processes import EvalWorld
    from advfusion_cli.evaluate.progress import RichEvalProgress
    from advfusion_cli.evaluate.report import evaluation_table
    from advfusion_cli.evaluate.workflow import EvalRequest, evaluate
    from advfusion_cli.inference.generation import DecodingSettings
    from advfusion_cli.workflows import tracking
    from advfusion_cli.workflows.runs import DEFAULT_WORKDIR

    trackers = tracking.parse_report_to(report_to)
    tracking.check_installed(trackers, "--report-to")  # before any work
    settings = DecodingSettings(**decoding)
    request = EvalRequest(
        split=split,
        limit=limit,
        seed=sample_seed,
        decoding=settings,
        execute=execute,
        workers=workers,
        autocast=autocast,
        force=force,
    )
    ref, spec = run_and_spec(run, base_flags, spec_path, preset, sets)
    result = evaluate(ref, request, spec=spec, out=out, progress=RichEvalProgress())
    if not EvalWorld.current().is_main:  # `accelerate launch`: the main process reports
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    if result.reused:
        console.print(f"Reusing the evaluation in {result.folder} (pass --force to redo it).")
    console.print(evaluation_table(result.record, result.folder))
    if trackers:
        from advfusion_cli.workflows.tracking_results import report_evaluation

        if spec is not None:
            workdir = spec.output.workdir
        else:
            workdir = base_flags.get("output.workdir") or DEFAULT_WORKDIR
        report_evaluation(trackers, result.folder, result.record, ref.run, workdir)
        console.print(f"Reported to {', '.join(trackers)}.")
