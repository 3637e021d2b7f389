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
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
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
        from advfusion_cli.evaluate.cli import BASE_ONLY_FLAGS, base_spec
        from advfusion_cli.inference.resolve import resolve_run
        from advfusion_cli.workflows.runs import DEFAULT_WORKDIR

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
        workdir = base_flags.get("output.workdir") or DEFAULT_WORKDIR
        ref = resolve_run(run, workdir, task=base_flags.get("data.task"))
        spec = None
        if ref.is_base:
            spec = base_spec(spec_path, preset, sets, base_flags)
        else:
            # A run is evaluated with the model it was trained on, whatever its task was.
            given = [
                flag
                for key, flag in BASE_ONLY_FLAGS.items()
                if key != "data.source" and base_flags.get(key) is not None
            ]
            if spec_path is not None or sets or preset:
                given.append("--spec/--set/--preset")
            if given:
                raise UserError(
                    f"{', '.join(given)} only apply to --run base; run '{ref.run.id}' is "
                    "evaluated with the model it was trained on."
                )
        result = evaluate_benchmark(ref, request, spec=spec, out=out, progress=RichEvalProgress())
    if result.reused:
        console.print(f"Reusing the evaluation in {result.folder} (pass --force to redo it).")
    for line in summary_lines(result.record, result.folder):
        console.print(line)
