"""Pretrain the embedded tiny code model from scratch: corpus → tokenizer → packing → AdamW.

The whole recipe is this one loop so that `advfusion pretrain-base` regenerates the shipped
folder from nothing but the testbed generator and a seed.
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import GenerationConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from advfusion_cli import __version__
from advfusion_cli.data.encoding import encode_example
from advfusion_cli.errors import UserError
from advfusion_cli.pretrain.corpus import PretrainCorpus, PretrainMix, build_pretraining_corpus
from advfusion_cli.pretrain.heldout import HeldoutSample, heldout_perplexity
from advfusion_cli.pretrain.model import TinyModelShape, build_model, count_parameters
from advfusion_cli.pretrain.packing import PackedWindows, pack_documents
from advfusion_cli.pretrain.schedule import warmup_cosine_lr
from advfusion_cli.pretrain.tokenizer import train_code_tokenizer


class PretrainConfig(BaseModel):
    """Every setting of a pretraining run; saved as `pretrain_config.json` beside the model."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seeds corpus shuffling, packing, init and batch order.")
    steps: int = Field(2000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(2, ge=1, description="Windows per optimizer step.")
    seq_len: int = Field(1024, ge=16, description="Window length in tokens.")
    lr: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(80, ge=0, description="Linear warmup steps.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a share of peak.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay on matrices only.")
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary incl. 256 bytes.")
    threads: int = Field(2, ge=1, description="torch CPU threads.")
    log_every: int = Field(25, ge=1, description="Steps between log lines.")
    shape: TinyModelShape = Field(default_factory=TinyModelShape)
    mix: PretrainMix = Field(default_factory=PretrainMix)
    heldout: HeldoutSample = Field(default_factory=HeldoutSample)

    @model_validator(mode="after")
    def _windows_fit_positions(self) -> PretrainConfig:
        if self.seq_len > self.shape.max_positions:
            raise ValueError(
                f"seq_len {self.seq_len} is longer than shape.max_positions "
                f"{self.shape.max_positions}"
            )
        return self


@dataclass
class PretrainResult:
    out_dir: Path
    parameters: int
    size_bytes: int
    train_tokens: int
    corpus_stats: dict
    packing_stats: dict
    seconds: float  # whole run: corpus, tokenizer, packing, training, saving, perplexity
    train_seconds: float
    tokens_per_second: float
    final_loss: float
    heldout_perplexity: dict[str, float]
    loss_curve: list[tuple[int, float]] = field(default_factory=list)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _tokenize_corpus(corpus: PretrainCorpus, tokenizer: PreTrainedTokenizerFast) -> list[list[int]]:
    """Token ids per document, each ending in EOS.

    Task documents go through the same `encode_example` as fine-tuning (prompt and target
    tokenized apart, then joined), so the token boundary at the end of the prompt is the
    one the model meets at generation time.
    """
    eos = tokenizer.eos_token_id
    return [
        encode_example(tokenizer, doc.example)["input_ids"]
        if doc.example is not None
        else tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"] + [eos]
        for doc in corpus.documents
    ]


def _token_shares(corpus: PretrainCorpus, token_lists: list[list[int]]) -> dict[str, dict]:
    """Tokens per (kind, language) — the mix as the model actually sees it."""
    by_group: dict[str, int] = {}
    for doc, ids in zip(corpus.documents, token_lists, strict=True):
        key = f"{doc.kind}/{doc.language}"
        by_group[key] = by_group.get(key, 0) + len(ids)
    total = sum(by_group.values())
    task = sum(n for key, n in by_group.items() if not key.startswith("source/"))
    return {
        "tokens_by_kind_language": dict(sorted(by_group.items())),
        "total_tokens": total,
        "task_formatted_share": task / max(1, total),
    }


def _optimizer(model: LlamaForCausalLM, config: PretrainConfig) -> torch.optim.AdamW:
    # Decay matrices only; norms (1-D) stay undecayed, the usual GPT recipe.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )


def _train_loop(
    model: LlamaForCausalLM,
    windows: PackedWindows,
    config: PretrainConfig,
    log: Callable[[str], None],
) -> tuple[list[tuple[int, float]], int, float]:
    """Returns the loss curve, real tokens trained on, and seconds spent."""
    optimizer = _optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    n_windows = windows.input_ids.size(0)
    order = torch.randperm(n_windows, generator=generator)
    cursor = 0
    curve: list[tuple[int, float]] = []
    tokens_seen = 0
    running = 0.0
    start = time.perf_counter()
    model.train()
    for step in range(config.steps):
        if cursor + config.batch_size > n_windows:  # a new epoch, reshuffled
            order = torch.randperm(n_windows, generator=generator)
            cursor = 0
        index = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        lr = warmup_cosine_lr(
            step, config.steps, config.lr, config.warmup_steps, config.min_lr_ratio
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        out = model(
            input_ids=windows.input_ids[index],  # (B, T)
            attention_mask=windows.attention_mask[index],
            labels=windows.labels[index],
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += int(windows.attention_mask[index].sum())
        running += out.loss.item()
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            span = (step % config.log_every) + 1
            mean_loss = running / span
            running = 0.0
            curve.append((step + 1, round(mean_loss, 4)))
            elapsed = time.perf_counter() - start
            log(
                f"step {step + 1}/{config.steps} loss {mean_loss:.4f} lr {lr:.2e} "
                f"tokens {tokens_seen} {tokens_seen / elapsed:.0f} tok/s {elapsed:.0f}s"
            )
    model.eval()
    return curve, tokens_seen, time.perf_counter() - start


def _generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    # Greedy, as the authors evaluate; 512 new tokens at most.
    return GenerationConfig(
        do_sample=False,
        max_new_tokens=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pretrain_base(
    out_dir: Path, config: PretrainConfig, log: Callable[[str], None] = print
) -> PretrainResult:
    """Build the corpus, train the tokenizer and model, save a loadable model folder."""
    torch.set_num_threads(config.threads)
    hf_logging.disable_progress_bar()
    _seed_everything(config.seed)
    wall_start = time.perf_counter()

    corpus = build_pretraining_corpus(config.mix, seed=config.seed)
    log(f"corpus: {len(corpus.documents)} documents ({corpus.describe()})")
    tokenizer = train_code_tokenizer(
        (doc.text for doc in corpus.documents),
        vocab_size=config.vocab_size,
        model_max_length=config.shape.max_positions,
    )
    log(f"tokenizer: {len(tokenizer)} tokens")
    token_lists = _tokenize_corpus(corpus, tokenizer)
    shares = _token_shares(corpus, token_lists)
    windows = pack_documents(token_lists, config.seq_len, tokenizer.pad_token_id, config.seed)
    if windows.input_ids.size(0) == 0:
        longest = max((len(ids) for ids in token_lists), default=0)
        raise UserError(
            f"--seq-len {config.seq_len} is shorter than every corpus document "
            f"({windows.skipped_too_long} skipped, the longest has {longest} tokens); documents "
            "are packed whole, never split, so pass a larger --seq-len."
        )
    packing_stats = {
        "seq_len": config.seq_len,
        "windows": int(windows.input_ids.size(0)),
        "documents": windows.n_documents,
        "skipped_too_long": windows.skipped_too_long,
        "fill_rate": round(windows.fill_rate(), 4),
    }
    log(
        f"packing: {packing_stats['windows']} windows of {config.seq_len}, "
        f"fill {packing_stats['fill_rate']:.1%}, skipped {windows.skipped_too_long} too long; "
        f"task-formatted share {shares['task_formatted_share']:.1%} of "
        f"{shares['total_tokens']} tokens"
    )

    _seed_everything(config.seed)
    model = build_model(config.shape, tokenizer)
    n_params = count_parameters(model)
    log(f"model: {n_params} parameters")
    curve, tokens_seen, seconds = _train_loop(model, windows, config, log)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "pretrain_config.json").write_text(json.dumps(config.model_dump(), indent=2) + "\n")

    reloaded = LlamaForCausalLM.from_pretrained(str(out_dir), dtype=torch.float32)
    perplexity = heldout_perplexity(reloaded, tokenizer, config.heldout)
    log("held-out perplexity: " + ", ".join(f"{k} {v:.3f}" for k, v in perplexity.items()))
    return PretrainResult(
        out_dir=out_dir,
        parameters=n_params,
        size_bytes=folder_size(out_dir),
        train_tokens=tokens_seen,
        corpus_stats={**corpus.stats(), **shares},
        packing_stats=packing_stats,
        seconds=time.perf_counter() - wall_start,
        train_seconds=seconds,
        tokens_per_second=tokens_seen / max(seconds, 1e-9),
        final_loss=curve[-1][1] if curve else float("nan"),
        heldout_perplexity=perplexity,
        loss_curve=curve,
    )


def run_provenance(config: PretrainConfig) -> dict:
    """Versions and hardware recorded in the card."""
    import tokenizers
    import transformers

    return {
        "advfusion": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} CPU, {config.threads} torch threads",
    }
