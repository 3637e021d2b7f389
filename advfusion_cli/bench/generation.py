"""Greedy generation throughput: batched vs one prompt at a time, with and without a fusion.

Evaluation generates a completion for every test prompt; batching the prompts is what makes
that affordable (issue goal: batched >= 5x the tokens/s of one prompt at a time). Prompts are
random token ids of one length, and every completion is forced to its full length
(`min_new_tokens`), so both modes generate exactly the same number of tokens.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from advfusion_cli.bench.measure import time_calls
from advfusion_cli.engine import AdapterConfig, attach_host

MODES = ("batched", "one-at-a-time")


@dataclass(frozen=True)
class GenerationSettings:
    prompts: int = 16
    prompt_tokens: int = 32
    new_tokens: int = 32
    fusion_adapters: int = 6  # N of the fused variant


def _generate(model: nn.Module, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy completions of exactly `new_tokens` tokens for prompts (P, L) -> (P, new_tokens)."""
    output = model.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=2,
    )
    return output[:, prompts.shape[1] :]


def _runner(
    model: nn.Module, prompts: torch.Tensor, new_tokens: int, mode: str
) -> Callable[[], None]:
    if mode == "batched":
        return lambda: _generate(model, prompts, new_tokens)

    def one_at_a_time() -> None:
        for row in prompts.split(1):  # (1, L) each
            _generate(model, row, new_tokens)

    return one_at_a_time


def _fuse(model: nn.Module, n_adapters: int, adapter_dtype: torch.dtype) -> Callable[[], None]:
    host = attach_host(model, adapter_dtype=adapter_dtype)
    names = [f"lang{i}" for i in range(n_adapters)]
    for name in names:
        host.add_adapter(name, AdapterConfig.task_adapter())
    host.fuse(names)
    return host.detach


def generation_bench(
    model: nn.Module,
    prompts: torch.Tensor,
    settings: GenerationSettings,
    *,
    rounds: int,
    adapter_dtype: torch.dtype,
    sync: Callable[[], None],
    seed: int = 0,
) -> dict:
    """tokens/s per (variant, mode) and the batched speed-up of each variant."""
    was_training = model.training
    model.eval()
    variants = ["base", f"adapterfusion-{settings.fusion_adapters}"]
    tokens = prompts.shape[0] * settings.new_tokens
    seconds: dict[tuple[str, str], list[float]] = {(v, m): [] for v in variants for m in MODES}
    try:
        # Warm-up round first (first calls pay for lazy initialisation), then timed rounds;
        # the variant order flips every round so slow drift hits both alike.
        for round_index in range(rounds + 1):
            order = variants if round_index % 2 == 0 else variants[::-1]
            for variant in order:
                torch.manual_seed(seed)
                teardown = (
                    _fuse(model, settings.fusion_adapters, adapter_dtype)
                    if variant != "base"
                    else (lambda: None)
                )
                try:
                    for mode in MODES:
                        run = _runner(model, prompts, settings.new_tokens, mode)
                        if round_index == 0:
                            _check_length(model, prompts, settings.new_tokens)
                            run()
                            continue
                        seconds[(variant, mode)] += time_calls(run, 1, sync).wall
                finally:
                    teardown()
    finally:
        model.train(was_training)
    rows = []
    for (variant, mode), values in seconds.items():
        median = statistics.median(values)
        rows.append(
            {
                "variant": variant,
                "mode": mode,
                "median_s": median,
                "min_s": min(values),
                "tokens": tokens,
                "tokens_per_s": tokens / median,
            }
        )
    speedup = {}
    for variant in variants:
        rate = {r["mode"]: r["tokens_per_s"] for r in rows if r["variant"] == variant}
        speedup[variant] = rate["batched"] / rate["one-at-a-time"]
    return {
        "prompts": prompts.shape[0],
        "prompt_tokens": prompts.shape[1],
        "new_tokens": settings.new_tokens,
        "rows": rows,
        "batched_speedup": speedup,
    }


def _check_length(model: nn.Module, prompts: torch.Tensor, new_tokens: int) -> None:
    produced = _generate(model, prompts[:1], new_tokens).shape[1]
    if produced != new_tokens:
        raise RuntimeError(f"generation produced {produced} tokens, expected {new_tokens}")
