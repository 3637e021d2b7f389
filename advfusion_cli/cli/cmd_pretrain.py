"""`advfusion pretrain-base`: regenerate the embedded tiny code model from scratch."""

from __future__ import annotations

import typer

from advfusion_cli.cli.app import app


@app.command("pretrain-base")
def pretrain_base_command(
    out: str = typer.Option("tiny-code", "--out", help="Folder to write the model into."),
    steps: int = typer.Option(None, "--steps", min=1, help="Optimizer steps [2000]."),
    seed: int = typer.Option(None, "--seed", help="Seed of corpus, packing, init, order [0]."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Windows per step [2]."),
    seq_len: int = typer.Option(None, "--seq-len", min=16, help="Window length [1024]."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate [2e-3]."),
    warmup_steps: int = typer.Option(None, "--warmup-steps", min=0, help="Warmup steps [80]."),
    vocab_size: int = typer.Option(None, "--vocab-size", help="BPE vocabulary size [2048]."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch CPU threads [2]."),
    hidden_size: int = typer.Option(None, "--hidden-size", help="Model width [192]."),
    layers: int = typer.Option(None, "--layers", min=1, help="Decoder layers [4]."),
    heads: int = typer.Option(None, "--heads", min=1, help="Attention heads [6]."),
    kv_heads: int = typer.Option(None, "--kv-heads", min=1, help="Key/value heads [2]."),
    intermediate_size: int = typer.Option(None, "--intermediate-size", help="MLP width [512]."),
    max_positions: int = typer.Option(None, "--max-positions", help="Longest sequence [1024]."),
    task_share: float = typer.Option(
        None, "--task-share", help="Share of corpus text that is task-formatted [0.6]."
    ),
    target_task_keep: float = typer.Option(
        None, "--target-task-keep", help="Share of target-language task documents kept [0.02]."
    ),
    max_task_examples: int = typer.Option(
        None, "--max-task-examples", help="Cap on task examples per task and language (tiny runs)."
    ),
    heldout_docs: int = typer.Option(
        None, "--heldout-docs", min=1, help="Held-out programs per language for perplexity [40]."
    ),
    evaluate: bool = typer.Option(
        True, "--evaluate/--no-evaluate", help="Score the floor and the gate into the card."
    ),
    eval_items: int = typer.Option(100, "--eval-items", min=1, help="Items per task and language."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the model files in a folder that already has them."
    ),
) -> None:
    """Pretrain the tiny base model on the testbed corpus and write a loadable model folder."""
    from pydantic import ValidationError
    from rich.console import Console

    from advfusion_cli.errors import UserError
    from advfusion_cli.evaluate.paths import check_output_folder
    from advfusion_cli.pretrain.recipe import CLI_FIELDS, build_base_model, config_from_overrides

    given = locals()
    overrides = {
        dotted: given[flag.lstrip("-").replace("-", "_")] for flag, dotted in CLI_FIELDS.items()
    }
    try:
        config = config_from_overrides(overrides)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        prefix = f"bad value for '{where}': " if where else ""
        raise UserError(f"pretrain-base: {prefix}{message}") from err
    out = check_output_folder(out, "--out")  # before any training, not after it
    if (out / "model.safetensors").exists() and not overwrite:
        raise UserError(f"--out {out} already holds a model; pass --overwrite to replace it.")

    console = Console(highlight=False)
    card = build_base_model(
        out, config, evaluate=evaluate, eval_items=eval_items, log=lambda line: console.print(line)
    )
    ppl = ", ".join(f"{k} {v:.2f}" for k, v in card["heldout_perplexity"].items())
    console.print(
        f"wrote {out}: {card['parameters']:,} parameters, {card['size_bytes'] / 1e6:.1f} MB, "
        f"{card['training']['tokens']:,} tokens in {card['training']['minutes']:.1f} min; "
        f"held-out perplexity {ppl}"
    )
