"""`advfusion generate`: a trained run on your own diff, source file or problem statement."""

from __future__ import annotations

from typing import Annotated

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.workflows import cli_common as c


@app.command("generate")
def generate_command(
    run: Annotated[
        str,
        typer.Option(
            "--run",
            help="A run folder, a run id, method/target in the workdir (e.g. advfusion/ruby), "
            "a comparison folder or its results.json, or best (the newest comparison's best "
            "run; best/ruby for a target).",
        ),
    ],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Input files (- = standard input); standard input when none is given.",
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="commit-message, code-translation, code-generation or custom (default: the run's).",
        ),
    ] = None,
    source_language: Annotated[
        str | None,
        typer.Option(
            "--from", help="code-translation: the input's language (default: from its extension)."
        ),
    ] = None,
    target_language: Annotated[
        str | None,
        typer.Option("--to", help="code-translation: the output language (default: the run's)."),
    ] = None,
    per_file: Annotated[
        bool,
        typer.Option(
            "--per-file", help="commit-message: one message per file of the diff, not one in all."
        ),
    ] = False,
    n: Annotated[int, typer.Option("-n", "--n", help="Samples per input.")] = 1,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature", help="Sample at this temperature (default: greedy; 1.0 with -n > 1)."
        ),
    ] = None,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Top-k filter; 0 = none.")] = 0,
    seed: Annotated[
        int, typer.Option("--seed", help="Sampling seed (same seed, same output).")
    ] = 0,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-new-tokens",
            help="New tokens per sample (default: 512, the authors', or what the model's "
            "positions leave).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per batch.")] = 8,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON record per generation: id, prompt, prediction, ..."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="No progress on stderr (warnings still).")
    ] = False,
    workdir: c.WorkdirOpt = None,
) -> None:
    """Generate from a diff (commit message), a source file (translation) or a problem statement (code), printing only the generated text on stdout."""
    from advfusion_cli.generate.cli import run_generate

    run_generate(
        run=run,
        task=task,
        inputs=inputs or [],
        source_language=source_language,
        target_language=target_language,
        per_file=per_file,
        decoding=dict(
            n=n,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        ),
        as_json=as_json,
        quiet=quiet,
        workdir=workdir,
    )
