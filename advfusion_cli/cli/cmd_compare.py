"""`advfusion compare`: train what is missing, evaluate every method on the same items, one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advfusion_cli.cli import eval_options as e
from advfusion_cli.cli.app import app
from advfusion_cli.compare.options import DEFAULT_METHODS
from advfusion_cli.evaluate.paths import folder_option
from advfusion_cli.workflows import cli_common as c


@app.command("compare")
def compare_command(
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            help="Comma-separated: lora, compacter, task-adapter, adapterfusion(-compacter), "
            "advfusion(-compacter), base (frozen base: the floor), base-1shot (one example in "
            "the prompt).",
        ),
    ] = ",".join(DEFAULT_METHODS),
    target: Annotated[
        str | None, typer.Option("--target", help="Target language (default ruby).")
    ] = None,
    langs: Annotated[
        str | None,
        typer.Option("--langs", help="Languages the fusions fuse (default all)."),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Training seeds, e.g. 0,1,2 (default the spec's seed)."),
    ] = None,
    vary: Annotated[
        str | None,
        typer.Option(
            "--vary",
            help="Run every method at each value of one setting, e.g. quantization=4bit,none "
            "or training.lr=1e-3,5e-3; adds a column.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split to evaluate on.")] = "test",
    limit: Annotated[
        int | None, typer.Option("--limit", help="Evaluate on this many items (seeded).")
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", help="Candidates per item (pass@k needs n >= k; MultiPL-E: 20)."),
    ] = None,
    temperature: e.TemperatureOpt = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Nucleus sampling mass (MultiPL-E: 0.95).")
    ] = None,
    top_k: e.TopKOpt = 0,
    batch_size: e.BatchSizeOpt = 8,
    max_new_tokens: e.MaxNewTokensOpt = 512,
    execute: e.ExecuteOpt = True,
    workers: e.WorkersOpt = None,
    benchmark: Annotated[
        str | None,
        typer.Option(
            "--benchmark",
            help="Evaluate every run on a public benchmark instead of the task's test split: "
            "multipl-e (language: --lang, default the target).",
        ),
    ] = None,
    lang: Annotated[
        str | None, typer.Option("--lang", help="--benchmark: the MultiPL-E language.")
    ] = None,
    dataset: Annotated[
        str, typer.Option("--dataset", help="--benchmark: humaneval or mbpp.")
    ] = "humaneval",
    benchmark_data: Annotated[
        str | None,
        typer.Option(
            "--benchmark-data",
            help="--benchmark: a MultiPL-E folder/JSONL or hub:nuprl/MultiPL-E[@rev] (default "
            "the hub at the pinned revision); --data stays the training data.",
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="Metrics shown in the table (all are in results.*)."),
    ] = None,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")] = 1000,
    # str, not Path: Path('') would silently become '.', the current folder.
    out: Annotated[
        str | None,
        typer.Option(
            "--out", help="Results folder (default <workdir>/compare/<task>-<target>-<hash>)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Evaluate again (finished training runs are still reused)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs and their state; train nothing.")
    ] = False,
    model: c.ModelOpt = None,
    data: c.DataOpt = None,
    task: c.TaskOpt = None,
    quantization: c.QuantOpt = None,
    spec: c.SpecOpt = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one spec key for every run (training.lr=1e-4), or for one method's "
            "runs (compacter:method.reduction_factor=24). Repeatable.",
        ),
    ] = None,
    preset: c.PresetOpt = None,
    workdir: c.WorkdirOpt = None,
    no_cache: c.NoCacheOpt = False,
    report_to: c.ReportToOpt = None,
    launcher: Annotated[
        str | None,
        typer.Option(
            "--launcher",
            help="Run each stage as its own job: local (subprocesses here, up to "
            "--max-parallel) or slurm (submitted with dependencies; needs pip install "
            "'advfusion\\[cluster]'). Default: every stage in this process.",
        ),
    ] = None,
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", help="--launcher local: stages at once.")
    ] = 1,
    resources: Annotated[
        Path | None,
        typer.Option(
            "--resources",
            help="YAML of each stage kind's resources for --launcher slurm (gpus, cpus, mem, "
            "time, partition, account, signal, sbatch, setup; see docs/workflows.md).",
        ),
    ] = None,
    status: Annotated[
        bool,
        typer.Option("--status", help="Show this comparison's jobs (--launcher) and their states."),
    ] = False,
) -> None:
    """Train whatever is missing (reusing finished runs), evaluate every method on the same test items, and print one table with noise verdicts; writes results.json/.csv/.md and PNG plots."""
    from advfusion_cli.compare.cli import run_compare
    from advfusion_cli.spec.yaml_io import check_spec_file

    if spec is not None:
        check_spec_file(spec)
    options = dict(
        methods=methods,
        langs=langs,
        seeds=seeds,
        vary=vary,
        split=split,
        limit=limit,
        benchmark=dict(benchmark=benchmark, lang=lang, dataset=dataset, data=benchmark_data),
        decoding=dict(
            n=n,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
        ),
        execute=execute,
        workers=workers,
        metrics=metrics,
        resamples=resamples,
        out=None if out is None else folder_option(out, "--out"),
        force=force,
        flags=c.common_flags(model, data, task, quantization, workdir, None)
        | {"data.target": target}
        | c.cache_flags(no_cache),
        spec_path=spec,
        sets=set_,
        preset=preset,
    )
    lists = any("," in (value or "") for value in (model, task, target))
    if launcher is not None or status or lists:
        from advfusion_cli.grid.cli import compare_grid

        compare_grid(
            options,
            model=model,
            task=task,
            target=target,
            launcher=launcher,
            max_parallel=max_parallel,
            resources_path=resources,
            status=status,
            dry_run=dry_run,
            report_to=report_to,
        )
        return
    if resources is not None:
        from advfusion_cli.errors import UserError

        raise UserError("--resources applies to --launcher local|slurm; add --launcher.")
    run_compare(dry_run=dry_run, report_to=report_to, **options)
