"""`advfusion demo`: the whole pipeline on the embedded default, one command, one display."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.compare.demo import DEMO_METHODS, DEMO_WORKDIR, DemoSettings

_DEFAULTS = DemoSettings()


@app.command("demo")
def demo_command(
    task: Annotated[
        str,
        typer.Option(
            "--task", help="code-generation (pass@k), code-translation or commit-message."
        ),
    ] = _DEFAULTS.task,
    target: Annotated[
        str | None, typer.Option("--target", help="Target language (default ruby).")
    ] = None,
    methods: Annotated[str, typer.Option("--methods", help="Methods to compare.")] = ",".join(
        DEMO_METHODS
    ),
    seeds: Annotated[str, typer.Option("--seeds", help="Training seeds, e.g. 0,1.")] = "0",
    limit: Annotated[int, typer.Option("--limit", help="Test items.")] = _DEFAULTS.limit,
    steps: Annotated[
        int, typer.Option("--steps", help="Optimizer steps per training stage.")
    ] = _DEFAULTS.steps,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="New tokens per answer.")
    ] = _DEFAULTS.max_new_tokens,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Prompts per generation batch.")
    ] = _DEFAULTS.batch_size,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the demo's runs and results go.")
    ] = DEMO_WORKDIR,
    model: Annotated[
        str | None, typer.Option("--model", help="Base model (default the shipped tiny model).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one spec key (training.lr=1e-3), or one method's "
            "(compacter:method.reduction_factor=24). Repeatable.",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline on the shipped tiny model: adapters for every testbed language, AdapterFusion and AdvFusion, the LoRA/Compacter/task-adapter baselines, evaluation (pass@k) and the comparison table with plots; under 10 minutes on a 2-core CPU."""
    from advfusion_cli.compare.cli import interrupts_explained, print_result, stdout_console
    from advfusion_cli.compare.demo import next_steps, run_demo

    settings = _checked_settings(
        task, target, methods, seeds, limit, steps, max_new_tokens, batch_size, workdir, model, set_
    )
    with interrupts_explained():
        result = run_demo(settings)
    console = stdout_console()
    print_result(result, console)
    console.print(f"Demo finished in {result.elapsed_s / 60:.1f} min. Next:", markup=False)
    for line in next_steps(result, settings):
        console.print(f"  {line}", markup=False)


def _checked_settings(
    task, target, methods, seeds, limit, steps, max_new_tokens, batch_size, workdir, model, sets
) -> DemoSettings:
    """The demo's settings, every option and --set checked before any work or output: a
    mistake ends in one error line naming the option."""
    from advfusion_cli.compare.demo import demo_request
    from advfusion_cli.compare.options import parse_methods, parse_seeds
    from advfusion_cli.compare.training import job_spec
    from advfusion_cli.compare.workflow import plan_jobs, reference_spec
    from advfusion_cli.errors import UserError
    from advfusion_cli.spec.names import TESTBED_LANGUAGES, canonical_language, canonical_task

    for option, value in (
        ("--steps", steps),
        ("--limit", limit),
        ("--batch-size", batch_size),
        ("--max-new-tokens", max_new_tokens),
    ):
        if value < 1:
            raise UserError(f"{option} must be >= 1, got {value}.")
    if target is not None:
        try:
            target = canonical_language(target)
        except UserError as err:
            raise UserError(f"--target: {err}") from None
        data_set = any(item.split("=", 1)[0].strip().startswith("data.") for item in sets or ())
        if target not in TESTBED_LANGUAGES and not data_set:
            raise UserError(
                f"--target '{target}': the demo's testbed has {', '.join(TESTBED_LANGUAGES)}."
            )
    settings = DemoSettings(
        task=canonical_task(task),
        target=target,
        methods=tuple(parse_methods(methods)),
        seeds=tuple(parse_seeds(seeds)),
        limit=limit,
        steps=steps,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        workdir=workdir,
        model=model,
        extra_sets=tuple(sets or ()),
    )
    # Resolve every job's spec now (cheap, loads nothing), as `compare --dry-run` does.
    request = demo_request(settings)
    base = reference_spec(request)
    for job in plan_jobs(request, list(settings.seeds)):
        job_spec(job, base.data.target, request.languages, request.inputs, request.vary)
    return settings
