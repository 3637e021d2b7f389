"""`advfusion evaluate`: score a finished run (or the frozen base) on a test split."""

from __future__ import annotations

from typing import Annotated

import typer

from advfusion_cli.cli import eval_options as e
from advfusion_cli.cli.app import app
from advfusion_cli.evaluate.paths import folder_option
from advfusion_cli.workflows import cli_common as c


@app.command("evaluate")
def evaluate_command(
    ctx: typer.Context,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="A run folder, a run id, method/target in the workdir (e.g. advfusion/ruby), "
            "or base / base-1shot (the frozen base, without / with one example in the prompt).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split to score.")] = "test",
    limit: Annotated[
        int | None, typer.Option("--limit", help="Score this many items (seeded selection).")
    ] = None,
    sample_seed: Annotated[
        int, typer.Option("--sample-seed", help="Seed of the item selection.")
    ] = 0,
    n: Annotated[
        int | None,
        typer.Option("--n", help="Candidates per item (pass@k needs n >= k; MultiPL-E: 20)."),
    ] = None,
    temperature: e.TemperatureOpt = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Nucleus sampling mass (MultiPL-E: 0.95).")
    ] = None,
    top_k: e.TopKOpt = 0,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    batch_size: e.BatchSizeOpt = 8,
    max_new_tokens: e.MaxNewTokensOpt = 512,
    benchmark: Annotated[
        str | None,
        typer.Option(
            "--benchmark",
            help="Evaluate on a public benchmark instead of the task's test split: multipl-e "
            "(with --lang; --data is then a MultiPL-E folder/JSONL or hub:nuprl/MultiPL-E[@rev]).",
        ),
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option("--lang", help="--benchmark: the MultiPL-E language (lua, rkt, ml, r, ...)."),
    ] = None,
    dataset: Annotated[
        str, typer.Option("--dataset", help="--benchmark: humaneval or mbpp.")
    ] = "humaneval",
    completions: Annotated[
        str | None,
        typer.Option(
            "--completions",
            help="--benchmark without --run: execute and score MultiPL-E completion files "
            "(<name>.json[.gz]) made elsewhere, as given; needs --out.",
        ),
    ] = None,
    execute: e.ExecuteOpt = True,
    workers: e.WorkersOpt = None,
    autocast: Annotated[
        bool,
        typer.Option(
            "--autocast/--no-autocast",
            help="CUDA: generate in the training compute dtype (bf16 autocast); "
            "--no-autocast runs adapters and fusion in fp32. CPU never autocasts.",
        ),
    ] = True,
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
    report_to: Annotated[
        str | None,
        typer.Option(
            "--report-to",
            help="Also log the scores (and a fusion's attention heatmap) to these trackers: "
            "tensorboard, wandb, mlflow; a run's scores join its training curves.",
        ),
    ] = None,
) -> None:
    """Generate on a split (greedy, 512 new tokens by default), score with the paper's metrics (and pass@k for code generation), write predictions.jsonl and metrics.json."""
    # n and top_p stay None here: a benchmark fills in its own protocol's values.
    decoding = dict(
        n=n,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    if benchmark is not None or completions is not None or lang is not None:
        from advfusion_cli.evaluate.benchmark_cli import run_benchmark

        run_benchmark(
            benchmark=benchmark,
            run=run,
            lang=lang,
            dataset=dataset,
            data=data,
            completions=completions,
            limit=limit,
            decoding=decoding,
            execute=execute,
            workers=workers,
            autocast=autocast,
            out=None if out is None else folder_option(out, "--out"),
            force=force,
            base_flags=c.common_flags(model, None, task, quantization, workdir, None),
            spec_path=spec,
            sets=set_,
            preset=preset,
        )
        return
    if run is None:  # optional only for --benchmark --completions: otherwise click's own error
        from advfusion_cli.cli.app import _click_class

        raise _click_class("UsageError")("Missing option '--run'.", ctx=ctx)
    from advfusion_cli.evaluate.cli import run_evaluate

    run_evaluate(
        run=run,
        split=split,
        limit=limit,
        sample_seed=sample_seed,
        decoding={**decoding, "n": 1 if n is None else n, "top_p": 1.0 if top_p is None else top_p},
        execute=execute,
        workers=workers,
        autocast=autocast,
        out=None if out is None else folder_option(out, "--out"),
        force=force,
        base_flags=c.common_flags(model, data, task, quantization, workdir, None)
        | {"data.target": target},
        spec_path=spec,
        sets=set_,
        preset=preset,
        report_to=report_to,
    )
