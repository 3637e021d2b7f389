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


def fused_model(name: str, adapter_dirs: dict[str, Path], checkpointing: bool = False):
    """The tiny base with the adapters fused, only the fusion layers trainable."""
    model = build_tiny_model("llama")
    model.train()
    torch.manual_seed(1)  # the fusion layers' initialisation draws from the global RNG
    return setup_fusion(model, method(name), adapter_dirs, gradient_checkpointing=checkpointing)


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
