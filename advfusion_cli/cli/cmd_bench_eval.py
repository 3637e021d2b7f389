"""`advfusion bench eval`: evaluation throughput on 1 and N processes, and execution overlap."""

from __future__ import annotations

from pathlib import Path

import typer

from advfusion_cli.cli.cmd_bench import bench_app


@bench_app.command("eval")
def bench_eval(
    processes: int = typer.Option(2, "--processes", help="N: compared with one process."),
    task: str = typer.Option("code-generation", "--task", help="Task of the evaluation."),
    target: str = typer.Option("python", "--target", help="Language evaluated."),
    limit: int = typer.Option(64, "--limit", help="Test items."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="New tokens per item."),
    batch_size: int = typer.Option(4, "--batch-size", help="Prompts per batch."),
    model: str = typer.Option(None, "--model", help="Base model (default: the embedded one)."),
    workers: int = typer.Option(None, "--workers", help="Sandbox processes per process."),
    overlap: bool = typer.Option(
        True, "--overlap/--no-overlap", help="Also measure execution overlapped with generation."
    ),
    work: Path = typer.Option(None, "--work", help="Keep the evaluations here (default: temp)."),
    json_path: Path = typer.Option(None, "--json", help="Also write the results to this file."),
) -> None:
    """Items/s and tokens/s of `advfusion evaluate` on one process and on N (accelerate
    launch, items split), the speed-up, and generation + execution apart vs overlapped."""
    import json
    import shutil
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from advfusion_cli.bench.eval_scale import EvalBenchSettings, eval_bench
    from advfusion_cli.cli.cmd_bench import check_json_path
    from advfusion_cli.errors import UserError

    if processes < 2:
        raise UserError(f"--processes must be >= 2 (it is compared with one), got {processes}.")
    sizes = (("--limit", limit), ("--max-new-tokens", max_new_tokens), ("--batch-size", batch_size))
    for name, value in sizes:
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}.")
    if json_path is not None:
        check_json_path(json_path)
    settings = EvalBenchSettings(
        processes, task, target, limit, max_new_tokens, batch_size, model, workers
    )
    root = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="bench-eval-"))
    errors = Console(stderr=True)
    try:
        result = eval_bench(
            settings, root, overlap and task == "code-generation", lambda t: errors.print(t)
        )
    finally:
        if work is None:
            shutil.rmtree(root, ignore_errors=True)

    console = Console(width=120) if not Console().is_terminal else Console()
    table = Table(
        title=f"Evaluation throughput: {task} -> {target}, {limit} items, "
        f"{max_new_tokens} new tokens, batch {batch_size}"
    )
    columns = ("processes", "threads each", "items", "new tokens", "generation s")
    for column in (*columns, "items/s", "tokens/s"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        table.add_row(
            str(row["processes"]),
            str(row["threads"] or "default"),
            str(row["items"]),
            f"{row['new_tokens']:,}",
            f"{row['generation_s']:.2f}",
            f"{row['items_per_s']:.2f}",
            f"{row['tokens_per_s']:,.0f}",
        )
    console.print(table)
    same = "identical" if result["identical_predictions"] else "DIFFERENT"
    console.print(
        f"speed-up with {processes} processes: {result['speedup']:.2f}x the items/s of the "
        f"faster one-process run (predictions {same} in every run)"
    )
    if result["overlap"] is not None:
        o = result["overlap"]
        console.print(
            f"overlap: generation alone {o['generation_only_s']:.2f} s + execution alone "
            f"{o['execution_only_s']:.2f} s ({o['programs_run']} programs) = {o['sum_s']:.2f} s; "
            f"overlapped {o['overlapped_s']:.2f} s ({o['overlapped_s'] / o['sum_s']:.2f}x of "
            "the sum)"
        )
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1))
        console.print(f"results written to {json_path}")
