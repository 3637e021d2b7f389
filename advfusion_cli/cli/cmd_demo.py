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
    from advfusion_cli.compare.options import parse_methods, parse_seeds
    from advfusion_cli.spec.names import canonical_task

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
        extra_sets=tuple(set_ or ()),
    )
    with interrupts_explained():
        result = run_demo(settings)
    console = stdout_console()
    print_result(result, console)
    console.print(f"Demo finished in {result.elapsed_s / 60:.1f} min. Next:", markup=False)
    for line in next_steps(result, settings):
        console.print(f"  {line}", markup=False)
