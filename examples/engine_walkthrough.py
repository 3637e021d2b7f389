"""AdvFusion engine walkthrough on a tiny random code LLM (no downloads, CPU, a few seconds).

Loads a Llama-style model in 4-bit NF4, trains three language adapters for a few steps, fuses
them (AdapterFusion), runs the two AdvFusion phases (target adapter masked, then restored),
reads the fusion attention per layer and adapter, and saves/reloads everything.

    .venv/bin/python examples/engine_walkthrough.py

With a real model, replace the folder by a hub id such as "Qwen/Qwen2.5-Coder-1.5B".
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.utils import logging as transformers_logging

from advfusion_cli.engine import (
    AdapterConfig,
    FusionConfig,
    attach_host,
    count_parameters,
    load_model,
)

LANGUAGES = ["python", "java", "ruby"]
TARGET = "ruby"  # the language the fused model is trained for
VOCAB = 256


def save_tiny_base(folder: Path) -> Path:
    """A 2-layer Llama-style model with random weights, saved like a downloaded checkpoint."""
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def language_batch(language: str, generator: torch.Generator) -> torch.Tensor:
    """Stand-in 'code' for each language: token ids drawn from that language's own range."""
    offset = 3 + 80 * LANGUAGES.index(language)
    return torch.randint(offset, offset + 80, (4, 16), generator=generator)


def train(model, params, batches, steps: int, extra_loss=None) -> float:
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        input_ids = next(batches)
        loss = model(input_ids=input_ids, labels=input_ids).loss
        if extra_loss is not None:
            loss = loss + extra_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


def batches_of(language: str, seed: int):
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield language_batch(language, generator)


def quiet_libraries() -> None:
    """Keep the output to what the walkthrough does: no progress bars, no CPU-kernel hints."""
    transformers_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def main() -> None:
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="advfusion-walkthrough-") as folder:
        walkthrough(Path(folder))


def walkthrough(workdir: Path) -> None:
    base_dir = save_tiny_base(workdir / "tiny-base")

    print("1. Load the base in 4-bit NF4 (double quantization, fp32 compute on CPU)")
    model = load_model(base_dir, quantization="4bit")
    host = attach_host(model)
    print(
        f"   {model.config.model_type}, {host.num_layers} layers, adapters in {host.adapter_dtype}"
    )

    print("2. Train one task adapter per language (base frozen)")
    for seed, language in enumerate(LANGUAGES):
        host.add_adapter(language, AdapterConfig.task_adapter(), language=language)
        params = host.freeze_for_adapter_training(language)
        loss = train(model, params, batches_of(language, seed), steps=10)
        trainable, total = count_parameters(model)
        print(f"   {language:6s} loss {loss:.3f}  trainable {trainable:,} of {total:,}")

    print(f"3. Fuse the three adapters; AdvFusion phase 1: mask the target ({TARGET})")
    host.fuse(LANGUAGES, FusionConfig())
    host.mask(TARGET)
    params = host.freeze_for_fusion_training()
    loss = train(model, params, batches_of(TARGET, 10), 10, host.fusion_regularization)
    print(f"   fusion loss {loss:.3f} with masked {host.masked}")

    print("4. AdvFusion phase 2: restore the target adapter and train the fusion again")
    host.unmask(TARGET)
    loss = train(model, params, batches_of(TARGET, 11), 10, host.fusion_regularization)
    print(f"   fusion loss {loss:.3f}")

    print("5. Fusion attention on target-language input (mean over tokens)")
    with torch.no_grad(), host.record_fusion_attention() as record:
        model(language_batch(TARGET, torch.Generator().manual_seed(99)))
    attention = record.mean()  # (layers, places, adapters)
    print("   layer place  " + "  ".join(f"{name:>6s}" for name in record.adapter_names))
    for layer in range(attention.shape[0]):
        for p, place in enumerate(record.place_names):
            row = "  ".join(f"{value:6.3f}" for value in attention[layer, p].tolist())
            print(f"   {layer:5d} {place:5s}  {row}")

    print("6. Save adapters and fusion; reload them into a fresh 4-bit base")
    for language in LANGUAGES:
        host.save_adapter(language, workdir / "adapters" / language)
    host.save_fusion(workdir / "fusion")
    probe = language_batch(TARGET, torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model(probe).logits
    fresh = load_model(base_dir, quantization="4bit")
    fresh_host = attach_host(fresh)
    for language in LANGUAGES:
        fresh_host.load_adapter(workdir / "adapters" / language)
    fresh_host.load_fusion(workdir / "fusion")
    with torch.no_grad():
        same = torch.equal(fresh(probe).logits, expected)
    print(f"   reloaded logits identical: {same}")
    for path in sorted((workdir / "adapters" / TARGET).iterdir()) + sorted(
        (workdir / "fusion").iterdir()
    ):
        print(f"   {path.relative_to(workdir)}  ({path.stat().st_size:,} bytes)")

    host.detach()
    print("7. Detached: the base model's projections are back to plain 4-bit layers")
    print(f"   {type(model.model.layers[0].mlp.down_proj).__name__}")


if __name__ == "__main__":
    main()
