"""A fusion trained the same way on one process, under DDP and under FSDP (tests/test_sharding*).

Everything here is deterministic and identical on every process: a tiny llama, three
language adapters with seeded random weights (so every slot contributes), equal-length
random token rows (no padding: a mean over the global batch equals the mean of the
per-process means, which is what DDP and FSDP average). `train()` runs the project's own
Trainer and phase schedules; only the model preparation differs between the modes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import build_tiny_model

from advfusion_cli.data.encoding import Collator
from advfusion_cli.engine import AdapterConfig, attach_host
from advfusion_cli.spec.methods import AdapterFusionMethod, AdvFusionMethod
from advfusion_cli.workflows.adv_fuse import advfusion_phases
from advfusion_cli.workflows.execute import causal_lm_loss
from advfusion_cli.workflows.methods import setup_fusion
from advfusion_cli.workflows.runs import RunDir
from advfusion_cli.workflows.train_adapters import single_phase
from advfusion_cli.workflows.trainer import LoopSettings, Phase, Trainer

LANGUAGES = ("java", "go", "ruby")
TARGET = "ruby"
GLOBAL_BATCH = 4
STEPS = 4  # per phase
ROWS, LENGTH = 16, 12


def write_adapters(folder: Path) -> dict[str, Path]:
    """Three task adapters with seeded random (non-zero) weights, saved as the store does."""
    model = build_tiny_model("llama")
    host = attach_host(model)
    generator = torch.Generator().manual_seed(7)
    dirs = {}
    for language in LANGUAGES:
        host.add_adapter(language, AdapterConfig.task_adapter(reduction_factor=4))
        with torch.no_grad():
            for param in host.adapter_parameters(language):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
        dirs[language] = host.save_adapter(language, folder / language, language=language)
    return dirs


def method(name: str):
    if name == "adapterfusion":
        return AdapterFusionMethod(temperature=True, regularization_weight=0.05)
    return AdvFusionMethod(temperature=True, regularization_weight=0.05, mask_mode="zero")


def fused_model(
    name: str, adapter_dirs: dict[str, Path], checkpointing: bool = False, sharded: bool = False
):
    """The tiny base with the adapters fused, only the fusion layers trainable (sharded: the
    fusion built on the meta device, as an FSDP run builds it)."""
    model = build_tiny_model("llama")
    model.train()
    torch.manual_seed(1)  # the fusion layers' initialisation draws from the global RNG
    return setup_fusion(
        model, method(name), adapter_dirs, gradient_checkpointing=checkpointing, sharded=sharded
    )


def examples(seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(3, 128, (ROWS, LENGTH), generator=generator).tolist()
    return [
        {
            "input_ids": row,
            "attention_mask": [1] * LENGTH,
            "labels": row,
            "completion_mask": [0] * (LENGTH // 2) + [1] * (LENGTH - LENGTH // 2),
        }
        for row in rows
    ]


def phases(name: str, world: int) -> list[Phase]:
    settings = LoopSettings(
        learning_rate=2e-2,
        total_steps=STEPS,
        batch_size=GLOBAL_BATCH // world,
        grad_accumulation=1,
        warmup_ratio=0.0,
        max_grad_norm=0.02,  # below the gradient norms here (about 0.09): clipping acts
        eval_every=2,
        save_every=2,
        eval_batch_size=2,  # 5 eval rows over 2 processes: 2 batches on one, 1 on the other
        keep_best=False,
        seed=3,
        optimizer="adamw",
    )
    count = 2 if name == "advfusion" else 1
    return [
        Phase(f"phase{i + 1}", examples(10 + i), examples(20 + i)[:5], settings)
        for i in range(count)
    ]


def schedule(name: str):
    if name == "advfusion":
        return advfusion_phases(TARGET, method(name))
    return single_phase


def trainer(accelerator, prepared, trainable, run: Path, layout=None, stop=None, loss=None):
    return Trainer(
        accelerator,
        prepared,
        trainable.params,
        loss or causal_lm_loss,
        Collator(pad_token_id=0),
        RunDir(run),
        extra_loss=trainable.extra_loss,
        stop=stop,
        extra_state=trainable.extra_state,
        load_extra_state=trainable.load_extra_state,
        sharding=layout,
    )


def probe_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(99)
    ids = torch.randint(3, 128, (2, 10), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def fusion_weights(trainable) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainable.params.items()}


# ---- one global batch, however it is split (tests/test_global_batch.py) -------------------

SPLIT_METHODS = ("task-adapter", "lora", "adapterfusion", "advfusion")
SPLIT_GLOBAL_BATCH = 8
SPLIT_ROWS = 32  # 4 steps of 8: one epoch


def split_method(name: str):
    """The methods with the fusion temperature schedule off: it advances per forward (the
    authors' adapters library), so accumulation would change it, not the loss weighting."""
    from advfusion_cli.spec.methods import LoraMethod, TaskAdapterMethod

    if name == "task-adapter":
        return TaskAdapterMethod(reduction_factor=4)
    if name == "lora":
        return LoraMethod(r=4, alpha=8.0, dropout=0.0)
    if name == "adapterfusion":
        return AdapterFusionMethod(temperature=False, regularization_weight=0.05)
    return AdvFusionMethod(temperature=False, regularization_weight=0.05, mask_mode="zero")


def split_trainable(name: str, adapter_dirs: dict[str, Path], sharded: bool = False):
    """The model of one split run, initialised identically in every process and every run."""
    from advfusion_cli.workflows.methods import setup_adapter, setup_lora

    model = build_tiny_model("llama")
    model.train()
    torch.manual_seed(1)  # new adapter / LoRA / fusion weights draw from the global RNG
    if name == "task-adapter":
        return setup_adapter(model, split_method(name), TARGET)
    if name == "lora":
        return setup_lora(model, split_method(name))
    return setup_fusion(model, split_method(name), adapter_dirs, sharded=sharded)


def split_examples(seed: int) -> list[dict]:
    """Rows of 6 to 20 tokens whose targets are the completion only (prompts of 2 to 12
    tokens): micro-batches of the same step hold very different target counts."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(SPLIT_ROWS):
        length = int(torch.randint(6, 21, (1,), generator=generator))
        prompt = min(length - 1, int(torch.randint(2, 13, (1,), generator=generator)))
        ids = torch.randint(3, 128, (length,), generator=generator).tolist()
        rows.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * length,
                "labels": [-100] * prompt + ids[prompt:],
                "completion_mask": [0] * prompt + [1] * (length - prompt),
            }
        )
    return rows


def split_phases(name: str, batch_size: int, grad_accumulation: int) -> list[Phase]:
    settings = LoopSettings(
        learning_rate=2e-2,
        total_steps=STEPS,
        batch_size=batch_size,
        grad_accumulation=grad_accumulation,
        max_grad_norm=None,  # clipping would hide a wrongly scaled gradient
        eval_every=None,  # the last step evaluates
        eval_batch_size=3,
        keep_best=False,
        seed=5,
        optimizer="adamw",
    )
    count = 2 if name == "advfusion" else 1
    return [
        Phase(f"phase{i + 1}", split_examples(51 + i), split_examples(40 + i)[:5], settings)
        for i in range(count)
    ]


def split_schedule(name: str):
    if name == "advfusion":
        return advfusion_phases(TARGET, split_method(name))
    return single_phase
