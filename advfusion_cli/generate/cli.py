"""The `generate` command's glue: read inputs, load the run, generate, print.

Standard output holds the generations and nothing else, so the command pipes: one
generation is printed followed by a newline; several (more files, `--per-file`, `-n`) are
separated by one empty line, in input order and sample order. `--json` prints one JSON
record per generation instead. Progress and warnings go to standard error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape


def _stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def format_plain(texts: list[str]) -> str:
    """Each generation followed by a newline, consecutive generations split by an empty line."""
    return "\n".join(text + "\n" for text in texts)


def format_json(records) -> str:
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)


def run_generate(
    *,
    run: str,
    task: str | None,
    inputs: list[str],
    source_language: str | None,
    target_language: str | None,
    per_file: bool,
    decoding: dict,
    as_json: bool,
    quiet: bool,
    workdir: Path | None,
) -> None:
    from advfusion_cli.generate.api import Generator, check_decoding
    from advfusion_cli.generate.inputs import read_inputs
    from advfusion_cli.inference.generation import AUTHORS_MAX_NEW_TOKENS
    from advfusion_cli.workflows.runs import DEFAULT_WORKDIR

    console = _stderr_console()

    def status(message: str) -> None:
        if not quiet:
            console.print(f"[dim]{escape(message)}[/dim]")

    # Everything that can be wrong is checked before the model loads: the run, the decoding
    # flags, the input and its kind for the task.
    generator = Generator(run, task=task, workdir=workdir or DEFAULT_WORKDIR, status=status)
    check_decoding(**decoding)
    items = []
    for source in read_inputs(inputs):
        items += generator.prompts(
            source,
            source_language=source_language,
            target_language=target_language,
            per_file=per_file,
        )
    generator.loaded  # noqa: B018 - load now, so progress reads in order
    status(
        f"generating {len(items)} prompt(s) x {decoding.get('n', 1)} sample(s) with "
        f"{generator.method} ({generator.task}, {generator.target})"
    )
    result = generator.run(items, **decoding)
    for note in result.notes:
        console.print(f"[yellow]warning:[/yellow] {escape(note.message)}")
    if decoding.get("max_new_tokens") is None and result.max_new_tokens < AUTHORS_MAX_NEW_TOKENS:
        status(
            f"generated at most {result.max_new_tokens} new tokens per sample (what the "
            "model's positions leave after the prompt; --max-new-tokens sets it)"
        )
    output = format_json(result.records) if as_json else format_plain(result.texts)
    sys.stdout.write(output)
    sys.stdout.flush()
