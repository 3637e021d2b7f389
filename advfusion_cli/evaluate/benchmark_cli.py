"""The `evaluate --benchmark multipl-e` glue: flags -> request -> evaluate or score -> lines.

Two modes: `--run R|base` generates with the run (or the base model) and executes; without
`--run`, `--completions DIR` executes and scores completion files made elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from advfusion_cli.errors import UserError

BENCHMARKS = ("multipl-e",)


def _check_flags(benchmark, run, lang, completions, out) -> None:
    if benchmark is None:
        given = "--completions" if completions is not None else "--lang"
        raise UserError(f"{given} needs --benchmark multipl-e.")
    if benchmark.strip().lower() not in BENCHMARKS:
        raise UserError(f"--benchmark must be one of {', '.join(BENCHMARKS)}, got '{benchmark}'.")
    if completions is not None:
        if run is not None:
            raise UserError(
                "--completions scores completions made elsewhere; it takes no --run (give one "
                "or the other)."
            )
        if out is None:
            raise UserError("--completions needs --out (the folder the results are written to).")
        return
    if run is None:
        raise UserError("--benchmark multipl-e needs --run R|base, or --completions DIR.")
    if lang is None:
        raise UserError("--benchmark multipl-e needs --lang (e.g. lua, rkt, ml, r, pl, rb).")


def run_benchmark(
    *,
    benchmark: str | None,
    run: str | None,
    lang: str | None,
    dataset: str,
    data: str | None,
    completions: str | None,
    limit: int | None,
    decoding: dict,
    execute: bool,
    workers: int | None,
    autocast: bool,
    out: Path | None,
    force: bool,
    base_flags: dict,
    spec_path: Path | None,
    sets: list[str] | None,
    preset: str | None,
) -> None:
    from advfusion_cli.evaluate.multiple import (
        BenchmarkRequest,
        evaluate_benchmark,
        protocol_decoding,
        score_completion_files,
        summary_lines,
    )
    from advfusion_cli.evaluate.progress import RichEvalProgress

    _check_flags(benchmark, run, lang, completions, out)
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}.")
    from advfusion_cli.evaluate.processes import EvalWorld

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    world = EvalWorld.current()
    if completions is not None and not world.is_main:
        return  # scoring files made elsewhere generates nothing to split: the main process does it
    if completions is not None:
        result = score_completion_files(
            Path(completions).expanduser(),
            language=lang,
            out=out,
            workers=workers,
            force=force,
            progress=RichEvalProgress(),
        )
    else:
        from advfusion_cli.evaluate.cli import run_and_spec

        request = BenchmarkRequest(
            language=lang,
            dataset=dataset,
            data=data,
            limit=limit,
            decoding=protocol_decoding(decoding),
            execute=execute,
            workers=workers,
            autocast=autocast,
            force=force,
        )
        # A run is evaluated with the model it was trained on, whatever its task was.
        ref, spec = run_and_spec(
            run,
            base_flags,
            spec_path,
            preset,
            sets,
            trained_with="the model it was trained on",
            free_flags=("data.source",),
        )
        result = evaluate_benchmark(ref, request, spec=spec, out=out, progress=RichEvalProgress())
        if not world.is_main:  # `accelerate launch`: the main process reports
            return
    if result.reused:
        console.print(f"Reusing the evaluation in {result.folder} (pass --force to redo it).")
    for line in summary_lines(result.record, result.folder):
        console.print(line)
