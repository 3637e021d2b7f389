"""The full recipe behind the shipped model: pretrain, score the floor and the gate, write the card.

`advfusion pretrain-base` calls `build_base_model`; its card records the command line that
reproduces it (`regenerate_command`), so the README never goes stale by hand.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from advfusion_cli.pretrain.card import write_card
from advfusion_cli.pretrain.corpus import describe_mix
from advfusion_cli.pretrain.embedded import EMBEDDED_MODEL_ID
from advfusion_cli.pretrain.floor import FloorSettings, check_gate, evaluate_base, gate_rule
from advfusion_cli.pretrain.train import (
    PretrainConfig,
    PretrainResult,
    folder_size,
    pretrain_base,
    run_provenance,
)

# CLI flag -> dotted PretrainConfig field; the same table builds configs and the command line.
CLI_FIELDS: dict[str, str] = {
    "--seed": "seed",
    "--steps": "steps",
    "--batch-size": "batch_size",
    "--seq-len": "seq_len",
    "--lr": "lr",
    "--warmup-steps": "warmup_steps",
    "--vocab-size": "vocab_size",
    "--threads": "threads",
    "--hidden-size": "shape.hidden_size",
    "--layers": "shape.num_layers",
    "--heads": "shape.num_heads",
    "--kv-heads": "shape.num_kv_heads",
    "--intermediate-size": "shape.intermediate_size",
    "--max-positions": "shape.max_positions",
    "--task-share": "mix.task_token_share",
    "--target-task-keep": "mix.target_task_keep",
    "--max-task-examples": "mix.max_task_examples_per_language",
    "--heldout-docs": "heldout.documents_per_language",
}
ALWAYS_WRITTEN = ("--steps", "--seed")


def get_field(config: PretrainConfig, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def config_from_overrides(overrides: dict[str, object]) -> PretrainConfig:
    """A PretrainConfig from {dotted field: value}; None values keep the default."""
    nested: dict[str, dict] = {}
    flat: dict[str, object] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        if "." in dotted:
            head, tail = dotted.split(".", 1)
            nested.setdefault(head, {})[tail] = value
        else:
            flat[dotted] = value
    return PretrainConfig(**flat, **nested)


def regenerate_command(
    config: PretrainConfig, out_dir: str, evaluate: bool, eval_items: int
) -> str:
    """The `advfusion pretrain-base` line that rebuilds a model with this config."""
    default = PretrainConfig()
    args = ["advfusion", "pretrain-base", "--out", out_dir]
    for flag, dotted in CLI_FIELDS.items():
        value = get_field(config, dotted)
        if flag in ALWAYS_WRITTEN or value != get_field(default, dotted):
            args += [flag, str(value)]
    if not evaluate:
        args.append("--no-evaluate")
    elif eval_items != FloorSettings().items_per_task:
        args += ["--eval-items", str(eval_items)]
    return shlex.join(args)


def _architecture(config: PretrainConfig) -> dict:
    return {"model_type": "llama", **config.shape.model_dump(), "tie_word_embeddings": True}


def build_card(
    result: PretrainResult,
    config: PretrainConfig,
    command: str,
    vocab_size: int,
    floor: dict | None,
    gate: dict | None,
) -> dict:
    corpus = result.corpus_stats
    return {
        "model_id": EMBEDDED_MODEL_ID,
        "architecture": _architecture(config),
        "parameters": result.parameters,
        "dtype": "float32",
        "size_bytes": folder_size(result.out_dir),
        "tokenizer": {"type": "byte-level BPE", "vocab_size": vocab_size},
        "corpus": {
            "languages": list(config.mix.languages),
            "target_language": config.mix.target_language,
            "documents": corpus["documents"],
            "total_tokens": corpus["total_tokens"],
            "task_formatted_share": round(corpus["task_formatted_share"], 4),
            "tokens_by_kind_language": corpus["tokens_by_kind_language"],
            "mix_description": describe_mix(config.mix),
            "packing": result.packing_stats,
        },
        "training": {
            "steps": config.steps,
            "batch_size": config.batch_size,
            "seq_len": config.seq_len,
            "lr": config.lr,
            "warmup_steps": config.warmup_steps,
            "min_lr_ratio": config.min_lr_ratio,
            "weight_decay": config.weight_decay,
            "seed": config.seed,
            "tokens": result.train_tokens,
            "tokens_per_second": round(result.tokens_per_second, 1),
            "minutes": round(result.train_seconds / 60, 2),
            "total_minutes": round(result.seconds / 60, 2),
            "final_loss": result.final_loss,
            "loss_curve": result.loss_curve,
        },
        "heldout": {
            "documents_per_language": config.heldout.documents_per_language,
            "seed": config.heldout.seed,
            "max_length": config.heldout.max_length,
        },
        "heldout_perplexity": {k: round(v, 4) for k, v in result.heldout_perplexity.items()},
        "floor": floor,
        "gate": gate,
        "command": command,
        "provenance": run_provenance(config),
    }


def build_base_model(
    out_dir: Path,
    config: PretrainConfig,
    evaluate: bool = True,
    eval_items: int = 100,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Pretrain into `out_dir`, score floor and gate when `evaluate`, write the card; returns it."""
    result = pretrain_base(out_dir, config, log=log)
    floor = gate = None
    if evaluate:
        model = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
        target = config.mix.target_language
        floor_settings = FloorSettings(split="test", items_per_task=eval_items)
        floor = {
            "split": floor_settings.split,
            "items_per_task": eval_items,
            "max_new_tokens": floor_settings.max_new_tokens,
            "scores": evaluate_base(model, tokenizer, [target], floor_settings, log=log),
        }
        gate_settings = FloorSettings(split="validation", items_per_task=eval_items)
        gate_scores = evaluate_base(
            model, tokenizer, list(config.mix.languages), gate_settings, log=log
        )
        passed, checks = check_gate(gate_scores, target)
        gate = {
            "split": gate_settings.split,
            "rule": gate_rule(target),
            "scores": gate_scores,
            "passed": passed,
            "checks": checks,
        }
        log(f"gate {'passed' if passed else 'FAILED'}: {' '.join(checks)}")
    card = build_card(
        result,
        config,
        command or regenerate_command(config, str(out_dir), evaluate, eval_items),
        vocab_size=len(AutoTokenizer.from_pretrained(str(out_dir))),
        floor=floor,
        gate=gate,
    )
    write_card(out_dir, card)
    return card
