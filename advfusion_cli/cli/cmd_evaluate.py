"""`advfusion evaluate`: score a finished run (or the frozen base) on a test split."""

from __future__ import annotations

from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.evaluate.paths import folder_option
from advfusion_cli.workflows import cli_common as c


@app.command("evaluate")
def evaluate_command(
    run: Annotated[
        str,
        typer.Option(
            "--run",
            help="A run folder, a run id, method/target in the workdir (e.g. advfusion/ruby), "
            "or base / base-1shot (the frozen base, without / with one example in the prompt).",
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="Split to score.")] = "test",
    limit: Annotated[
        int | None, typer.Option("--limit", help="Score this many items (seeded selection).")
    ] = None,
    sample_seed: Annotated[
        int, typer.Option("--sample-seed", help="Seed of the item selection.")
    ] = 0,
    n: Annotated[int, typer.Option("--n", help="Candidates per item (pass@k needs n >= k).")] = 1,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", help="Sample at this temperature (default: greedy)."),
    ] = None,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Top-k filter; 0 = none.")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per batch.")] = 8,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="New tokens per candidate (authors: 512).")
    ] = 512,
    execute: Annotated[
        bool,
        typer.Option(
            "--execute/--no-execute", help="Run code-generation candidates in the sandbox."
        ),
    ] = True,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Sandbox processes (default up to 4).")
    ] = None,
    # str, not Path: Path('') would silently become '.', the current folder.
    out: Annotated[
        str | None, typer.Option("--out", help="Write here instead of <run>/evals/...")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Evaluate again even if this evaluation exists.")
    ] = False,
    target: Annotated[
        str | None, typer.Option("--target", help="base only: language to evaluate.")
    ] = None,
    model: c.ModelOpt = None,
    data: c.DataOpt = None,
    task: c.TaskOpt = None,
    quantization: c.QuantOpt = None,
    spec: c.SpecOpt = None,
    set_: c.SetOpt = None,
    preset: c.PresetOpt = None,
    workdir: c.WorkdirOpt = None,
) -> None:
    """Generate on a split (greedy, 512 new tokens by default), score with the paper's metrics (and pass@k for code generation), write predictions.jsonl and metrics.json."""
    from advfusion_cli.errors import UserError
    from advfusion_cli.evaluate.cli import run_evaluate

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}.")
    run_evaluate(
        run=run,
        split=split,
        limit=limit,
        sample_seed=sample_seed,
        decoding=dict(
            n=n,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
        ),
        execute=execute,
        workers=workers,
        out=None if out is None else folder_option(out, "--out"),
        force=force,
        base_flags=c.common_flags(model, data, task, quantization, workdir, None)
        | {"data.target": target},
        spec_path=spec,
        sets=set_,
        preset=preset,
    )
