"""`advfusion bench`: training-step ratios to the frozen base, peak memory and generation speed."""

from __future__ import annotations

from pathlib import Path

import typer

from advfusion_cli.cli.app import app


def _counts(text: str) -> tuple[int, ...]:
    from advfusion_cli.errors import UserError

    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(
            f"--n-adapters must be comma-separated integers (e.g. 3,6,12), got '{text}'."
        ) from None
    if not counts or any(n < 1 for n in counts):
        raise UserError(f"--n-adapters must list positive integers (e.g. 3,6,12), got '{text}'.")
    return tuple(dict.fromkeys(counts))  # keep order, drop repeats


def check_json_path(path: Path) -> None:
    """--json must name a file whose folder can be written (an existing file is replaced)."""
    from advfusion_cli.errors import UserError
    from advfusion_cli.evaluate.paths import check_output_folder

    if not str(path).strip() or str(path).strip() == "." or path.is_dir():
        raise UserError(f"--json '{path}' is a folder; give a file (e.g. {path / 'bench.json'}).")
    folder = path.parent if str(path.parent) != "." else Path.cwd()
    check_output_folder(folder, f"--json '{path}': the folder")


def out_of_memory(settings, err: BaseException) -> str:
    shapes = settings.shapes
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return (
        f"Out of memory on {settings.device} for the bench model (--hidden {shapes.hidden}, "
        f"--layers {shapes.layers}, --intermediate {shapes.intermediate}, --vocab "
        f"{shapes.vocab}, --batch {shapes.batch}, --seq {shapes.seq}): {first[:200]}. "
        "Try smaller sizes."
    )


# `advfusion bench` measures training steps; `advfusion bench data` (cmd_bench_data.py)
# measures data preparation. The group's callback is the step bench, run when no
# subcommand is given.
bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    hidden: int = typer.Option(256, "--hidden", help="Hidden size of the random Llama."),
    layers: int = typer.Option(4, "--layers", help="Decoder layers."),
    heads: int = typer.Option(4, "--heads", help="Attention heads."),
    kv_heads: int = typer.Option(None, "--kv-heads", help="Key/value heads (default: --heads)."),
    intermediate: int = typer.Option(512, "--intermediate", help="MLP intermediate size."),
    vocab: int = typer.Option(2048, "--vocab", help="Vocabulary size."),
    batch: int = typer.Option(8, "--batch", help="Sequences per training step."),
    seq: int = typer.Option(256, "--seq", help="Tokens per sequence."),
    n_adapters: str = typer.Option("3,6,12", "--n-adapters", help="Fusion sizes N, e.g. 3,6,12."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads."),
    steps: int = typer.Option(5, "--steps", help="Timed steps per configuration per round."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed steps after each set-up."),
    rounds: int = typer.Option(3, "--rounds", help="Rounds over all configurations."),
    quantization: str = typer.Option("none", "--quantization", help="Base weights: none or 4bit."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="Base dtype: float32, bfloat16, float16; auto: bf16 GPU, fp32 CPU."
    ),
    adapter_dtype: str = typer.Option(
        "float32", "--adapter-dtype", help="Dtype of trained modules (the workflows use float32)."
    ),
    autocast: str = typer.Option(
        "auto", "--autocast", help="bf16 autocast of the forward: on, off, auto (on for CUDA)."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N; auto: cuda if any."),
    query_rank: int = typer.Option(
        64, "--query-rank", help="Rank of the low-rank query/key variant (0: skip it)."
    ),
    generation: bool = typer.Option(
        True, "--generation/--no-generation", help="Also measure generation throughput."
    ),
    gen_prompts: int = typer.Option(16, "--gen-prompts", help="Prompts generated per round."),
    gen_prompt_tokens: int = typer.Option(32, "--gen-prompt-tokens", help="Tokens per prompt."),
    gen_new_tokens: int = typer.Option(32, "--gen-new-tokens", help="New tokens per prompt."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure peak memory."),
    floor: str = typer.Option(
        "first-place",
        "--floor",
        help="Where the frozen base's backward starts: first-place (layer 0's attention "
        "output, where the first adapter sits) or embeddings.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of weights, batch and prompts."),
    json_path: Path = typer.Option(
        None, "--json", help="Also write the results to this file (replaced if it exists)."
    ),
) -> None:
    """Measure every method's training step side by side, as ratios to the frozen base.
    `advfusion bench data` measures data preparation instead."""
    if ctx.invoked_subcommand is not None:
        return
    import torch
    from rich.console import Console

    from advfusion_cli.bench import (
        BenchSettings,
        BenchShapes,
        GenerationSettings,
        render,
        run_bench,
        write_json,
    )
    from advfusion_cli.errors import UserError

    if json_path is not None:
        check_json_path(json_path)  # before the benchmark, not after it
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_gpu = device.startswith("cuda")
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu else "float32"
    if autocast not in ("on", "off", "auto"):
        raise UserError(f"--autocast must be on, off or auto, got '{autocast}'.")
    for name, value in (
        ("--gen-prompts", gen_prompts),
        ("--gen-prompt-tokens", gen_prompt_tokens),
        ("--gen-new-tokens", gen_new_tokens),
    ):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}.")
    settings = BenchSettings(
        shapes=BenchShapes(
            hidden=hidden,
            layers=layers,
            heads=heads,
            kv_heads=kv_heads,
            intermediate=intermediate,
            vocab=vocab,
            batch=batch,
            seq=seq,
        ),
        n_adapters=_counts(n_adapters),
        threads=threads,
        steps=steps,
        warmup=warmup,
        rounds=rounds,
        quantization=quantization,
        dtype=dtype,
        adapter_dtype=adapter_dtype,
        autocast=autocast == "on" or (autocast == "auto" and on_gpu),
        device=device,
        query_rank=query_rank or None,
        generation=(
            GenerationSettings(gen_prompts, gen_prompt_tokens, gen_new_tokens)
            if generation
            else None
        ),
        memory=memory,
        floor=floor,
        seed=seed,
    )
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # pipes and files: do not squeeze the tables to 80 columns
    errors = Console(stderr=True)
    try:
        results = run_bench(settings, progress=lambda message: errors.print(f"[dim]{message}[/]"))
    except (torch.OutOfMemoryError, MemoryError) as err:
        raise UserError(out_of_memory(settings, err)) from None
    except RuntimeError as err:
        if "can't allocate memory" not in str(err) and "out of memory" not in str(err).lower():
            raise
        raise UserError(out_of_memory(settings, err)) from None
    render(results, console)
    if json_path is not None:
        write_json(results, json_path)
        console.print(f"results written to {json_path}")
    failed = [row["name"] for row in results["training"] if "error" in row]
    if failed:
        errors.print(f"error: {len(failed)} configuration(s) failed: {', '.join(failed)}")
        raise typer.Exit(1)
