"""`advfusion bench sandbox`: MultiPL-E programs per second, sandboxed against plain."""

from __future__ import annotations

from pathlib import Path

import typer

from advfusion_cli.cli.cmd_bench import bench_app


@bench_app.command("sandbox")
def bench_sandbox(
    langs: str = typer.Option(
        "lua,rkt,ml,r,pl,php,sh,js,rb,py,cpp",
        "--langs",
        help="MultiPL-E languages, comma-separated (missing toolchains are listed as skipped).",
    ),
    programs: int = typer.Option(40, "--programs", help="Programs per language and path."),
    workers: int = typer.Option(None, "--workers", help="Parallel programs (default: cores)."),
    json_path: Path = typer.Option(None, "--json", help="Also write the rows to this file."),
) -> None:
    """Programs per second through the sandbox and through a plain subprocess (the official
    harness's way), at the same parallelism, per language; goal: sandbox >= 0.7x plain."""
    import json
    import os

    from rich.console import Console
    from rich.table import Table

    from advfusion_cli.bench.sandbox import GOAL_RATIO, PROGRAMS, measure
    from advfusion_cli.cli.cmd_bench import check_json_path
    from advfusion_cli.errors import UserError
    from advfusion_cli.sandbox.multiple_languages import resolve_multiple_language

    chosen = [resolve_multiple_language(n).ext for n in langs.split(",") if n.strip()]
    missing = [ext for ext in chosen if ext not in PROGRAMS]
    if not chosen or missing:
        raise UserError(
            f"--langs: no bench program for {', '.join(missing) or 'nothing'}; "
            f"choose from {', '.join(PROGRAMS)}."
        )
    if programs < 1:
        raise UserError(f"--programs must be >= 1, got {programs}.")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}.")
    if json_path is not None:
        check_json_path(json_path)
    errors = Console(stderr=True)
    rows = measure(chosen, programs, workers, log=lambda m: errors.print(f"[dim]{m}[/]"))
    table = Table(title=f"MultiPL-E execution, {workers} workers (goal: sandbox >= {GOAL_RATIO}x)")
    for column in ("language", "plain prog/s", "sandbox prog/s", "ratio", "goal", "passed"):
        table.add_column(column, justify="right" if column != "language" else "left")
    for row in rows:
        if "skipped" in row:
            table.add_row(row["language"], "-", "-", "-", "-", row["skipped"])
            continue
        table.add_row(
            row["language"],
            f"{row['plain_per_s']:.1f}",
            f"{row['sandbox_per_s']:.1f}",
            f"{row['ratio']:.2f}x",
            "met" if row["goal_met"] else "MISSED",
            f"{row['passed']['plain']}/{row['passed']['sandbox']} of {row['programs']}",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    console.print(table)
    if json_path is not None:
        json_path.write_text(json.dumps({"sandbox": rows}, indent=2) + "\n")
        console.print(f"results written to {json_path}")
