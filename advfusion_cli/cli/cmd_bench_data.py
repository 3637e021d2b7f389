"""`advfusion bench data`: preparing CommitPackFT-size data, cached and uncached, side by side.

`advfusion bench-data` is the same command under its first name (hidden, kept for scripts)."""

from __future__ import annotations

from pathlib import Path

import typer

from advfusion_cli.cli.app import app
from advfusion_cli.cli.cmd_bench import bench_app


def _sizes(text: str) -> tuple[int, ...]:
    from advfusion_cli.errors import UserError

    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(n < 10 for n in sizes):
        raise UserError(f"--sizes must list record counts >= 10 (e.g. 10000,50000), got '{text}'.")
    return tuple(dict.fromkeys(sizes))


@bench_app.command("data")
def bench_data(
    sizes: str = typer.Option(
        "10000,50000,100000", "--sizes", help="Records per folder, comma-separated."
    ),
    seed_from: str = typer.Option(
        "testbed",
        "--from",
        help="Records to repeat: 'testbed' or a CommitPackFT-layout folder (data/<lang>/...).",
    ),
    lang: str = typer.Option("ruby", "--lang", help="The language of the folders written."),
    modes: str = typer.Option(
        "old,cold,warm", "--modes", help="old (previous uncached path), cold, warm (cache)."
    ),
    tokenizer: str = typer.Option(
        None, "--tokenizer", help="Tokenizer folder or hub id (default: the embedded tiny-code)."
    ),
    work: Path = typer.Option(
        None, "--work", help="Folder for the generated data and caches (default: a temp folder)."
    ),
    json_path: Path = typer.Option(None, "--json", help="Also write the rows to this file."),
) -> None:
    """Cold, warm and previous-path preparation time and peak RSS of one language's training
    data, for CommitPackFT-layout folders of each size (each measurement in its own process)."""
    import json
    import shutil
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from advfusion_cli.bench.data import MODES, goal_checks, measure, write_commitpack_folder
    from advfusion_cli.cli.cmd_bench import check_json_path
    from advfusion_cli.data.languages import canonical_language
    from advfusion_cli.errors import UserError

    counts = _sizes(sizes)
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise UserError(f"--modes must be some of {', '.join(MODES)}, got '{modes}'.")
    if json_path is not None:
        check_json_path(json_path)
    language = canonical_language(lang)
    if seed_from == "testbed":
        from advfusion_cli.testbed import ensure_testbed

        seed = Path(ensure_testbed("commit-message"))
    else:
        seed = Path(seed_from).expanduser()
        if not seed.is_dir():
            raise UserError(f"--from {seed_from}: no such folder.")
    if tokenizer is None:
        tokenizer = str(Path(__file__).resolve().parents[1] / "assets" / "tiny-code")
    root = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="bench-data-"))
    errors = Console(stderr=True)
    rows = []
    try:
        for n in counts:
            folder = root / f"commits-{n}"
            shutil.rmtree(folder, ignore_errors=True)
            size = write_commitpack_folder(seed, language, n, folder)
            cache = root / f"cache-{n}"
            shutil.rmtree(cache, ignore_errors=True)
            for mode in chosen:
                errors.print(f"[dim]{n} records ({size / 2**20:.0f} MB): {mode}[/]")
                row = measure(mode, folder, language, cache, tokenizer)
                rows.append({"records": n, "megabytes": size / 2**20, **row})
    finally:
        if work is None:
            shutil.rmtree(root, ignore_errors=True)

    table = Table(title=f"Data preparation: CommitPackFT {language}, from {seed_from}")
    columns = (
        "records",
        "MB",
        "path",
        "wall s",
        "CPU s",
        "peak RSS MB",
        "worker RSS MB",
        "train/validation",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        if "error" in row:
            table.add_row(str(row["records"]), "", row["mode"], "error", "", row["error"], "", "")
            continue
        table.add_row(
            f"{row['records']:,}",
            f"{row['megabytes']:.0f}",
            row["mode"],
            f"{row['seconds']:.1f}",
            f"{row['cpu_seconds']:.1f}",
            f"{row['peak_rss_mb']:.0f}",
            f"{row['worker_peak_rss_mb']:.0f}" if row["worker_peak_rss_mb"] else "-",
            f"{row['features']['train']}/{row['features']['validation']}",
        )
    console = Console(width=120) if not Console().is_terminal else Console()
    console.print(table)
    for line in goal_checks(rows):
        console.print(line)
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1))
        console.print(f"results written to {json_path}")
    if any("error" in row for row in rows):
        raise typer.Exit(1)


app.command("bench-data", hidden=True)(bench_data)
