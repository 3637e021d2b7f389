"""`advfusion data show`: rendered prompts/targets and the counts of a task's data."""

from __future__ import annotations

from pathlib import Path

import typer

from advfusion_cli.cli.app import app

data_app = typer.Typer(help="Inspect task data: prompts, targets, counts, dropped records.")
app.add_typer(data_app, name="data")


@data_app.command("show")
def show(
    task: str = typer.Option(
        None,
        "--task",
        help="commit-message (default), code-generation, code-translation or custom (--spec).",
    ),
    source: str = typer.Option(
        None, "--source", help="'testbed' (default), 'hub:<dataset id>' or a local file/folder."
    ),
    spec: Path = typer.Option(
        None, "--spec", help="A job spec: show its data (task, source, data.custom, split seed)."
    ),
    sets: list[str] = typer.Option(
        None, "--set", help="With --spec: override one key, e.g. --set data.target=go."
    ),
    lang: list[str] = typer.Option(
        None, "--lang", help="Target language(s), any spelling (repeat for several); default all."
    ),
    n: int = typer.Option(3, "-n", "--num", min=0, help="How many examples to print."),
    split: str = typer.Option(
        None,
        "--split",
        help="Split to print examples from (default train, or the first split present).",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Stop at the first malformed record (file:line) instead of counting it.",
    ),
    plain: bool = typer.Option(False, "--plain", help="Print examples as plain text, no panels."),
    tokenizer: str = typer.Option(
        None, "--tokenizer", help="Tokenizer (path or hub id): also count prompts cut and dropped."
    ),
    max_prompt_tokens: int = typer.Option(4096, help="Prompt budget for --tokenizer."),
    max_target_tokens: int = typer.Option(4096, help="Target budget for --tokenizer."),
    max_total_tokens: int = typer.Option(8192, help="Prompt + target budget for --tokenizer."),
) -> None:
    """Print N rendered examples of one split and a table of counts per language and split."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    from advfusion_cli.data import load_task
    from advfusion_cli.data.splits import canonical_split
    from advfusion_cli.data.stats import stats_tables
    from advfusion_cli.errors import UserError
    from advfusion_cli.spec.schema import DataSpec, normalize_source

    # The same rules as the spec's data.source and data.max_*_tokens, before any loading.
    if source is not None:
        try:
            normalize_source(source)
        except ValueError as err:
            raise UserError(f"--source {source!r}: {err}") from None
    for option, key, value in (
        ("--max-prompt-tokens", "max_prompt_tokens", max_prompt_tokens),
        ("--max-target-tokens", "max_target_tokens", max_target_tokens),
        ("--max-total-tokens", "max_total_tokens", max_total_tokens),
    ):
        least = min(m.ge for m in DataSpec.model_fields[key].metadata if hasattr(m, "ge"))
        if value < least:
            raise UserError(f"{option} must be >= {least}, got {value}.")

    task, source, options = _task_and_source(task, source, spec, sets)
    wanted = canonical_split(split) if split is not None else None
    data = load_task(task, source, lang or None, "all", strict=strict, **options)
    if wanted is None:  # held-out folders often have only a test split: show what is there
        present = data.stats.splits_present()
        wanted = "train" if "train" in present or not present else present[0]
    examples = data.split(wanted)
    if not examples:
        present = ", ".join(data.stats.splits_present())
        raise UserError(
            f"Split '{wanted}' has no {task} examples in {source} (present: {present})."
        )

    if tokenizer:
        _count_truncation(
            tokenizer,
            examples,
            data.stats,
            max_prompt_tokens=max_prompt_tokens,
            max_target_tokens=max_target_tokens,
            max_total_tokens=max_total_tokens,
        )

    console = Console(highlight=False)
    for example in examples[:n]:
        title = f"{example.id} · {example.language} · {example.split}"
        if example.source_language:
            title += f" · from {example.source_language}"
        if plain:
            # emoji=False: ids such as "MultilingualTrans:train:0" hold ":train:" (an emoji code)
            console.print(f"=== {title}", markup=False, emoji=False)
            console.print("--- prompt", markup=False)
            console.out(example.prompt, end="")
            console.print("--- target", markup=False)
            console.out(example.target)
        else:
            console.print(
                Panel(Text(example.prompt), title=Text(f"prompt · {title}"), title_align="left")
            )
            console.print(Panel(Text(example.target), title="target", title_align="left"))
    for table in stats_tables(data.stats):
        console.print(table)


def _task_and_source(task, source, spec, sets) -> tuple[str, str, dict]:
    """(task, source, loader options): from the flags alone, or the spec's data section with
    the flags on top (the same precedence as every other command)."""
    from advfusion_cli.errors import UserError

    if spec is None:
        if sets:
            raise UserError("--set needs --spec (it overrides a key of that spec).")
        if task is not None and task.strip().lower() == "custom":
            raise UserError("--task custom: the task is defined in a spec; pass --spec SPEC.yaml.")
        return task or "commit-message", source or "testbed", {}
    from advfusion_cli.workflows.cli_common import resolve
    from advfusion_cli.workflows.task_data import task_options

    job = resolve(spec, None, sets, {"data.task": task, "data.source": source}, False)
    return job.data.task, job.data.source, task_options(job.data)


def _count_truncation(name: str, examples, stats, **budgets: int) -> None:
    """Encode the shown split so the tables report prompts cut and examples dropped."""
    from transformers import AutoTokenizer

    from advfusion_cli.data.encoding import encode_examples
    from advfusion_cli.errors import UserError

    try:
        loaded = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise UserError(f"Could not load tokenizer '{name}': {err}".splitlines()[0]) from err
    trainable = [e for e in examples if e.target]  # problem-only rows have nothing to train on
    encode_examples(loaded, trainable, stats=stats, **budgets)
